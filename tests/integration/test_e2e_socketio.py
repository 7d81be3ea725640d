"""Real Socket.IO 4 through the Socket.IO reference config, with the agent up and down.

Three real socket.io 4.8 servers (Node.js, tests/integration/sio/server.js) behind
HAProxy 2.6 rendered with `render-haproxy.py --socketio`, and real socket.io-client
4.8 clients (sio/clients.js) that do what a browser does: the Engine.IO polling
handshake (several HTTP requests that must reach one server), then the upgrade to
WebSocket, keeping their cookies. The npm packages are pinned by
sio/package-lock.json and installed by `make test` under build/sio.
"""
import json
import os
import shutil
import subprocess

import pytest

import harness
from harness import LOOPBACK, Proc, free_port, lb_spec, tcp_accepts, wait_until

BE = "be_ws"
SIO = harness.REPO / "tests" / "integration" / "sio"
NODE_MODULES = harness.REPO / "build" / "sio" / "node_modules"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (NODE_MODULES / "socket.io").is_dir(),
    reason="node or the pinned socket.io packages are missing (make test installs them)")


class SioServer(Proc):
    def __init__(self, workdir, name):
        super().__init__(name, workdir)
        self.port = free_port()
        self.argv = [NODE, SIO / "server.js", name, self.port]

    def start(self, timeout=10.0):
        os.environ["NODE_PATH"] = str(NODE_MODULES)
        return super().start(timeout)

    def ready(self):
        return tcp_accepts(self.port)

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)


def clients(url, n, timeout_ms=8000):
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    p = subprocess.run([NODE, str(SIO / "clients.js"), url, str(n), str(timeout_ms)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=120)
    out = p.stdout.decode(errors="replace").strip().splitlines()
    assert p.returncode == 0 and out, p.stdout
    return json.loads(out[-1])


@pytest.fixture
def sio(procs):
    red = procs.redis()
    servers = [procs.add(SioServer(procs.workdir, "sio%d" % i)).start() for i in (1, 2, 3)]
    secret = harness.write_secret(procs.workdir / "sio-secret.key")
    h = procs.haproxy("haproxy-lb1")
    s = procs.stickyd("stickyd-lb1", start=False, redis_port=red.port, instance="lb1",
                      secret_file=secret, stats_socket=h.stats_socket,
                      extra={"haproxy": dict(harness.FAST_PERIODS)})
    h.render(lb_spec("lb1", servers, s, {"transport": "udp", "addr": s.syslog_udp_addr}, BE,
                     socketio=True, check_inter="200ms", agent_check_inter="200ms"))
    s.start()
    h.start()
    lb = harness.Lb("lb1", h, s)
    lb.wait_up(servers, BE, 15)
    return lb, servers


def test_socketio_clients_connect_and_upgrade_with_the_agent_up_and_down(sio):
    lb, servers = sio
    url = lb.haproxy.url
    up = clients(url, 100)
    print("\nagent up:   %s" % up)
    assert up["connected"] == 100 and up["upgraded"] == 100 and up["split"] == 0, up
    assert len(up["servers"]) == 3, up  # the agent spread them

    lb.stickyd.kill()
    lb.haproxy.wait_server_status("stickyd_agents", "agent1", "DOWN", timeout=10)
    down = clients(url, 100)
    print("agent down: %s" % down)
    # HAProxy's own fallback cookie keeps each handshake's polls on one server
    assert down["connected"] >= 99 and down["upgraded"] >= 99, down
    assert down["split"] == 0, down

    lb.stickyd.start()
    lb.haproxy.wait_server_status("stickyd_agents", "agent1", "UP", timeout=10)
    again = clients(url, 30)
    assert again["connected"] == 30 and again["upgraded"] == 30, again
