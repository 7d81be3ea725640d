"""`make run`'s script (scripts/run-demo.sh) in its one-shot mode.

DEMO_ONESHOT=1 runs the whole demonstration (real redis-server, three WebSocket
servers, HAProxy with the reference config, stickyd) and exits. The test checks
what the demo claims: every reconnect with the cookie reached the first server, the
pin is in Redis, stickyctl shows the counts (and none once the clients closed); and
that the script leaves nothing behind: every process it started is gone and its temp
dir removed.
Ports are free ones picked here, so a demo someone is running does not interfere.
"""
import os
import re
import signal
import socket
import subprocess
import time

import harness

SCRIPT = harness.REPO / "scripts" / "run-demo.sh"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The script's children are reaped by the script, or by init once it exited:
    # a zombie waiting for that is not a leak, anything else still running is.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _run_demo(env_extra, timeout=120):
    env = dict(os.environ, DEMO_ONESHOT="1", **env_extra)
    p = subprocess.Popen([str(SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, cwd=str(harness.REPO), start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)      # the script's trap stops its children
        out, _ = p.communicate(timeout=20)
        raise AssertionError("run-demo.sh did not finish in %ds:\n%s"
                             % (timeout, out.decode(errors="replace")))
    return p.returncode, out.decode(errors="replace")


def test_demo_oneshot_same_server_and_clean_exit():
    ports = {
        "DEMO_PORT": str(harness.free_port()),
        "DEMO_REDIS_PORT": str(harness.free_port()),
        "DEMO_AGENT_PORT": str(harness.free_port()),
        "DEMO_SYSLOG_PORT": str(harness.free_port(socket.SOCK_DGRAM)),
        "DEMO_WS_PORTS": " ".join(str(harness.free_port()) for _ in range(3)),
    }
    rc, out = _run_demo(ports)
    assert rc == 0, out

    # Where it says to connect, on the port it was given.
    assert "ws://127.0.0.1:%s/ws" % ports["DEMO_PORT"] in out, out

    # The first connect got a cookie; the three reconnects with it hit the same server.
    first = re.search(r"^connect #1 \(new\) +-> server (\S+)$", out, re.M)
    assert first, out
    assert re.search(r"^    Set-Cookie: stickysid=2[A-Za-z0-9_-]{55};", out, re.M), out
    assert re.search(r"^    Set-Cookie: stickysrv=[A-Za-z0-9_-]{6};", out, re.M), out
    again = re.findall(r"^connect #[234] \(cookie\) +-> server (\S+) ", out, re.M)
    assert again == [first.group(1)] * 3, out
    assert "RESULT: same server every time: %s (4 of 4 connections)" % first.group(1) in out

    # The pin in Redis names that server; stickyctl printed the live counts.
    pin = re.search(r"GET 'sticky:\{be_ws\}:s:[^']+'\n    (\S+) \d+ \d+ - demo-lb1\n", out)
    assert pin and pin.group(1) == first.group(1), out
    assert re.search(r"backend be_ws: 3 servers, 3 live connections", out), out
    # ... and, once they closed, none (HAProxy's close lines reached the agent).
    closed = out.split("--- 5.", 1)
    assert len(closed) == 2 and "backend be_ws: 3 servers, 0 live connections" in closed[1], out

    # Nothing left behind: every started pid is gone, the temp dir removed.
    started = re.findall(r"^run-demo: started (\S+) +pid (\d+)", out, re.M)
    assert sorted(n for n, _ in started) == ["haproxy", "redis", "stickyd", "ws1", "ws2", "ws3"]
    for name, pid in started:
        assert "run-demo: stopped %s (pid %s)" % (name, pid) in out, out
    deadline = time.monotonic() + 5
    while any(_pid_alive(int(pid)) for _, pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [(n, pid) for n, pid in started if _pid_alive(int(pid))]
    assert not left, "processes left behind: %r" % left
    tmp = re.search(r"^run-demo: working directory (/tmp/stickyd-demo\.\S+)$", out, re.M)
    assert tmp, out
    assert not os.path.exists(tmp.group(1)), "temp dir left behind: %s" % tmp.group(1)
    assert "run-demo: removed %s" % tmp.group(1) in out


def test_demo_refuses_a_taken_explicit_port():
    """An explicitly requested port that is taken is a clear error, and even then
    nothing is left behind (nothing was started)."""
    with socket.socket() as s:
        s.bind((harness.LOOPBACK, 0))
        s.listen(1)
        taken = s.getsockname()[1]
        rc, out = _run_demo({"DEMO_PORT": str(taken)}, timeout=60)
    assert rc != 0, out
    assert "HAProxy frontend: 127.0.0.1:%d (tcp) is taken" % taken in out, out
    assert "run-demo: started" not in out, out
