"""The SPOP engine against real HAProxy 2.6, and the reference configuration.

Part 1 (echo/ping): Debian's /usr/sbin/haproxy runs an SPOE engine whose agent
backend (with `option spop-check`) is agent/stickyd. Real HTTP requests go through
HAProxy; the agent's built-in `echo` handler sets one txn variable per arg and
`ping` sets `pong`, and HAProxy copies them into response headers. So a header
coming back proves: HELLO negotiated, NOTIFY decoded, ACK encoded and matched to
its stream, variables typed right. Then the agent is killed (HAProxy must keep
serving, without the header) and restarted (the echo must come back).

Part 2: scripts/render-haproxy.py, the single source of the reference config:
every variant passes `haproxy -c` with no warning, bad specs are refused, and the
committed haproxy-conf/ files are exactly its rendering of demo-topology.json.
"""
import concurrent.futures
import json
import re
import secrets
import signal
import subprocess

import pytest

import harness

SPOE = """\
[diag]
spoe-agent diag-agent
    groups echo-grp
    option var-prefix sticky
    option set-on-error error
    option continue-on-error
    no option async
    timeout hello 2s
    timeout idle 30s
    timeout processing 1s
    use-backend agents

# Two messages in one group: one NOTIFY frame, two handlers, one ACK.
spoe-message echo
    args value=req.hdr(x-probe) num=req.hdr_val(x-num) ip=src
spoe-message ping
    args

spoe-group echo-grp
    messages echo ping
"""

CFG = """\
global
    stats socket {sock} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend fe
    bind 127.0.0.1:{port}
    filter spoe engine diag config {spoe}
    http-request send-spoe-group diag echo-grp
    http-response set-header X-Echo %[var(txn.sticky.value)] if {{ var(txn.sticky.value) -m found }}
    http-response set-header X-Echo-Num %[var(txn.sticky.num)] if {{ var(txn.sticky.num) -m found }}
    http-response set-header X-Echo-Ip %[var(txn.sticky.ip)] if {{ var(txn.sticky.ip) -m found }}
    http-response set-header X-Pong %[var(txn.sticky.pong)] if {{ var(txn.sticky.pong) -m found }}
    http-response set-header X-Spoe-Error %[var(txn.sticky.error)] if {{ var(txn.sticky.error) -m found }}
    default_backend app

backend app
    server app1 {app}

backend agents
    mode tcp
    balance roundrobin
    option spop-check
    timeout connect 1s
    timeout server 1m
    server agent1 {agent} check inter 300ms rise 1 fall 1
"""


@pytest.fixture
def echo_setup(procs, stickyd_bin):
    """An app server, stickyd (with Redis, which it may want at start-up) and an
    HAProxy whose SPOE engine asks it `echo` and `ping` on every request."""
    app = procs.ws_server("app")
    r = procs.redis()
    agent = procs.stickyd(redis_port=r.port, backends={"app": ["app1"]})
    h = procs.haproxy()
    port = harness.free_port()
    spoe = h.conf_dir / "diag.spoe"
    spoe.write_text(SPOE)
    h.write_cfg(CFG.format(sock=h.stats_socket, port=port, spoe=spoe, app=app.addr,
                           agent=agent.addr), port=port)
    h.start()
    return h, agent


def probe(h, token, num):
    status, headers, body = h_get(h, {"X-Probe": token, "X-Num": str(num)})
    return status, headers, body


def h_get(h, headers):
    return harness.http_get(h.url + "/probe", headers=headers, timeout=10)


def assert_echoed(status, headers, body, token, num):
    assert status == 200, body
    assert json.loads(body)["server"] == "app"
    assert headers.get("X-Echo") == token
    assert headers.get("X-Echo-Num") == str(num)
    assert headers.get("X-Echo-Ip") == "127.0.0.1"
    assert headers.get("X-Pong") == "1"
    assert headers.get("X-Spoe-Error") is None


def test_agent_passes_spop_health_check(echo_setup):
    h, _agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    row = next(r for r in h.show_stat() if r["pxname"] == "agents" and r["svname"] == "agent1")
    # spop-check is a layer-7 check: HAPROXY-HELLO with "healthcheck", AGENT-HELLO back.
    assert row["check_status"] == "L7OK", row
    state = h.cmd("show servers state agents")
    assert " agent1 " in state


def test_echo_and_ping_reach_the_response(echo_setup):
    h, _agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    for i in range(5):
        token = secrets.token_urlsafe(12)
        # hdr_val parses a 32-bit int (HAProxy's side); negative ones too.
        num = secrets.randbelow(2 ** 31) - 2 ** 30
        assert_echoed(*probe(h, token, num), token, num)


def test_echo_of_a_large_value(echo_setup):
    """A value of several kB makes NOTIFY and ACK frames far larger than usual."""
    h, _agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    token = secrets.token_urlsafe(3000)[:4000]
    assert_echoed(*probe(h, token, 7), token, 7)


def test_concurrent_requests_get_their_own_answers(echo_setup):
    """Many streams in flight at once: each ACK must reach the stream that asked."""
    h, _agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    tokens = [(secrets.token_urlsafe(10), i * 1000 + 1) for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as ex:
        results = list(ex.map(lambda t: probe(h, *t), tokens))
    for (token, num), res in zip(tokens, results):
        assert_echoed(*res, token, num)


def test_haproxy_serves_without_the_agent_and_recovers(echo_setup):
    h, agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    token = secrets.token_urlsafe(8)
    assert_echoed(*probe(h, token, 1), token, 1)

    # A crash: SIGKILL, so HAProxy learns it from the socket, not from a goodbye.
    agent.kill()
    # At once (before the health check has noticed) and after it is marked DOWN,
    # requests are still served, just without the agent's variables.
    for phase in ("just killed", "marked down"):
        if phase == "marked down":
            h.wait_server_status("agents", "agent1", "DOWN")
        status, headers, body = probe(h, "gone", 2)
        assert status == 200, (phase, body)
        assert json.loads(body)["server"] == "app"
        assert headers.get("X-Echo") is None, phase
        assert headers.get("X-Pong") is None, phase
        # The failure is reported to the config through set-on-error.
        assert headers.get("X-Spoe-Error") is not None, (phase, dict(headers))

    # Same port again: the health check brings it back and the echo returns.
    agent.start()
    h.wait_server_status("agents", "agent1", "UP")
    token = secrets.token_urlsafe(8)
    harness.wait_until(lambda: probe(h, token, 3)[1].get("X-Echo") == token, timeout=10,
                       what="the echo to come back after the agent restart")
    assert_echoed(*probe(h, token, 3), token, 3)


def test_agent_sigterm_drains_without_failing_requests(echo_setup):
    """SIGTERM: the agent stops accepting and closes its HAProxy links; requests
    around it are all answered 200 (with or without the echo)."""
    h, agent = echo_setup
    h.wait_server_status("agents", "agent1", "UP")
    assert_echoed(*probe(h, "before", 4), "before", 4)
    agent.signal(signal.SIGTERM)
    agent.popen.wait(10)
    assert agent.popen.returncode == 0, agent.log_tail(30)
    for i in range(3):
        status, _headers, body = probe(h, "after", 5)
        assert status == 200, body


# ---- the reference configuration (scripts/render-haproxy.py) ------------------

def render(tmp_path, *args):
    return subprocess.run([harness.PYTHON, str(harness.RENDER), "--out", str(tmp_path), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)


BASE = ["--backend", "be_ws:ws1=127.0.0.1:9001,ws2=127.0.0.1:9002/50",
        "--stats-socket", "/tmp/stickyd-test.sock", "--instance", "lb1"]


@pytest.mark.parametrize("variant", [
    [],
    ["--socketio"],
    ["--syslog-tcp", "127.0.0.1:5515"],
    ["--no-syslog", "--no-cookie-secure"],
    ["--instance", "", "--affinity-key", "req.hdr(x-user-id)"],
    ["--backend", "be_chat@/chat:c1=127.0.0.1:9101", "--agent", "127.0.0.1:12345",
     "--agent", "127.0.0.1:12346"],
], ids=["plain", "socketio", "ring-tcp", "no-syslog", "key", "two-backends-two-agents"])
def test_render_variants_load_cleanly(tmp_path, variant):
    """Each variant renders and passes `haproxy -c` with no warning at all."""
    p = render(tmp_path, *(BASE + variant))
    assert p.returncode == 0, p.stdout.decode()
    cfg = (tmp_path / "haproxy.cfg").read_text()
    spoe = (tmp_path / "stickyd.spoe").read_text()
    assert "option spop-check" in cfg
    assert "use-server %[var(txn.sticky.server)]" in cfg
    assert "filter spoe engine stickyd config %s" % (tmp_path / "stickyd.spoe") in cfg
    assert "option var-prefix sticky" in spoe
    if "--no-cookie-secure" in variant:
        assert "Secure" not in cfg.split("Set-Cookie", 1)[1].split("\n", 1)[0]
    else:
        assert "HttpOnly; Secure; SameSite=None" in cfg
    if "--syslog-tcp" in variant:
        assert "log ring@stickyd_close" in cfg and "server stickyd 127.0.0.1:5515" in cfg
    # 3.3 made "balance random" the default: every backend names its algorithm, so
    # the same file balances alike on every version.
    sections = re.split(r"\n(?=\S)", cfg)
    backends = [sec for sec in sections if sec.startswith("backend ")]
    assert backends
    for sec in backends:
        assert re.search(r"^    balance \S+", sec, re.M), sec.split("\n", 1)[0]


@pytest.mark.parametrize("bad", [
    ["--backend", "be ws:ws1=127.0.0.1:9001"],
    ["--backend", "be_ws:ws1=nowhere"],
    ["--backend", "be_ws:ws1=127.0.0.1:9001/300"],
    ["--backend", "be_ws:ws1=127.0.0.1:9001,ws1=127.0.0.1:9002"],
    ["--stats-socket", "relative.sock"],
    ["--instance", "has space"],
    ["--processing-timeout", "fast"],
])
def test_render_refuses_bad_specs(tmp_path, bad):
    base = list(BASE)
    if bad[0] in base:
        i = base.index(bad[0])
        base[i:i + 2] = bad
    else:
        base += bad
    p = render(tmp_path, *base)
    assert p.returncode == 2, p.stdout.decode()
    assert not (tmp_path / "haproxy.cfg").exists()


def test_committed_reference_matches_its_rendering(tmp_path):
    """haproxy-conf/*.cfg and stickyd.spoe are the renderer's output: no drift."""
    spec = harness.REPO / "haproxy-conf" / "demo-topology.json"
    p = render(tmp_path, "--spec", str(spec))
    assert p.returncode == 0, p.stdout.decode()
    p = render(tmp_path, "--spec", str(spec), "--socketio", "--cfg-name", "haproxy-socketio.cfg")
    assert p.returncode == 0, p.stdout.decode()
    p = render(tmp_path, "--spec", str(spec), "--when-full", "queue", "--server-maxconn", "1000",
               "--cfg-name", "haproxy-queue.cfg")
    assert p.returncode == 0, p.stdout.decode()
    for name in ("haproxy.cfg", "haproxy-socketio.cfg", "haproxy-queue.cfg", "stickyd.spoe"):
        committed = (harness.REPO / "haproxy-conf" / name).read_text()
        assert (tmp_path / name).read_text() == committed, (
            "haproxy-conf/%s is out of date: re-render it with scripts/render-haproxy.py "
            "--spec haproxy-conf/demo-topology.json --out haproxy-conf" % name)


# ---- the reference configuration with the whole agent ---------------------------

def test_reference_config_pins_a_session_to_its_server(stack):
    """Through the rendered reference config: the first upgrade gets a session
    cookie on its 101, and every reconnect with it lands on the same server."""
    lb = stack.lbs[0]
    first = harness.ws_open(lb.ws_url)
    sid = first.cookie()
    assert sid, first.set_cookies
    assert "HttpOnly" in first.set_cookie and "Path=/" in first.set_cookie
    for _ in range(5):
        again = harness.ws_open(lb.ws_url, cookie=sid)
        assert again.server == first.server
        # The server sees the cookie the client sent.
        assert again.hello["cookie"] == "stickysid=" + sid


def test_reference_config_serves_when_the_agent_is_down(stack):
    """No agent: upgrades still succeed (leastconn decides) and no cookie is set."""
    lb = stack.lbs[0]
    lb.stickyd.kill()
    lb.haproxy.wait_server_status("stickyd_agents", "agent1", "DOWN")
    seen = set()
    for _ in range(6):
        r = harness.ws_open(lb.ws_url)
        assert r.server in {w.name for w in stack.ws}
        assert r.cookie() is None
        seen.add(r.server)
    assert len(seen) > 1  # balanced, not stuck on one server


def test_socketio_polling_and_upgrade_share_one_affinity(procs):
    """Socket.IO variant: the first long-polling request gets the cookie, later
    polls and the WebSocket upgrade carrying it reach the same server."""
    st = procs.stack(instances=1, socketio=True)
    st.wait_agents_up()
    st.wait_servers_up()
    lb = st.lbs[0]
    poll = lb.url + "socket.io/?EIO=4&transport=polling"
    status, headers, body = harness.http_get(poll)
    assert status == 200, body
    server = json.loads(body)["server"]
    sid = harness.parse_cookie(headers.get_all("Set-Cookie"))
    assert sid, headers.get_all("Set-Cookie")
    for _ in range(3):
        status, _h, body = harness.http_get(poll, headers={"Cookie": "stickysid=" + sid})
        assert status == 200 and json.loads(body)["server"] == server
    ws = harness.ws_open(lb.ws_url + "socket.io/?EIO=4&transport=websocket", cookie=sid)
    assert ws.server == server


def test_http2_websocket_takes_the_same_path(stack):
    """An HTTP/2 extended CONNECT (RFC 8441) is matched by the same upgrade rule:
    it gets the cookie on its 200 (HAProxy's 101) and sticks like HTTP/1.1 does."""
    lb = stack.lbs[0]
    first = harness.h2_ws_open(lb.haproxy.port, "/h2")
    assert first.status == 200, first
    sid = first.cookie()
    assert sid, first.headers
    for _ in range(3):
        again = harness.h2_ws_open(lb.haproxy.port, "/h2", cookie=sid)
        assert again.status == 200 and again.server == first.server
        assert again.cookie() is None  # a valid cookie is not set again
    h1 = harness.ws_open(lb.ws_url, cookie=sid)
    assert h1.server == first.server
