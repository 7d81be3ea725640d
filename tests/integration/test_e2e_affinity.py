"""End-to-end affinity: real HAProxy 2.6, real Redis, real stickyd agents, real
WebSocket servers and clients (issue 5).

Each test builds its own cluster on free loopback ports: one redis-server, the
WebSocket echo servers of wsserver.py (each says its name in its first message),
and one or two load balancers, each an HAProxy rendered by
scripts/render-haproxy.py with its own stickyd reading that HAProxy's runtime
API. The only change to the rendered reference config is two response headers
(X-Sticky-Action, X-Sticky-Error) that show the client what the agent decided,
so a test can tell `new` from `hit` from `fallback` from "no answer at all".

Scenarios: one client reconnecting (1), 300 clients spread by live counts and a
fourth server catching up (2), Redis killed and restarted (5), the agent killed
and restarted (6), forged cookies (10).
"""
import asyncio
import re
import secrets
import signal
import time

import pytest
import websockets

import harness
from harness import LOOPBACK, free_port, wait_until, write_secret, ws_open
from test_assign import hrw_weighted, mint_sid

BE = "be_ws"
KP = "sticky:{%s}:" % BE
# Short agent periods, so counts settle within a second or two.
AGENT_TIMING = {
    "redis": {"timeout": "20ms"},
    "haproxy": {"refresh": "200ms", "resync": "500ms", "heartbeat_ttl": "2s"},
}
# Test-only lines added to the rendered backend: the agent's answer, as the
# client sees it. action is absent when the agent did not answer (then error is
# set by `option set-on-error error`).
DIAG_RULES = (
    "    http-response set-header X-Sticky-Action %[var(txn.sticky.action)]"
    " if { var(txn.sticky.action) -m found }\n"
    "    http-response set-header X-Sticky-Error %[var(txn.sticky.error)]"
    " if { var(txn.sticky.error) -m found }\n"
)


# ---- the cluster -----------------------------------------------------------

class Lb:
    def __init__(self, name, haproxy, stickyd, spec):
        self.name, self.haproxy, self.stickyd, self.spec = name, haproxy, stickyd, spec

    @property
    def ws_url(self):
        return self.haproxy.ws_url + "/"


class Cluster:
    """Redis, `servers` WebSocket servers in backend be_ws, and `instances` load
    balancers (HAProxy + its stickyd) sharing Redis and the session secret."""

    def __init__(self, procs, instances=1, servers=3):
        self.procs = procs
        self.redis = procs.redis()
        self.r = self.redis.client()
        self.ws = procs.ws_servers(servers)
        self.secret_file = write_secret(procs.workdir / "e2e-secret.key")
        self.secret = self.secret_file.read_bytes().strip()
        self.lbs = [self._lb("lb%d" % i) for i in range(1, instances + 1)]
        self.wait_ready()

    def _lb(self, name):
        h = self.procs.haproxy("haproxy-" + name)
        s = self.procs.stickyd("stickyd-" + name, start=False, redis_port=self.redis.port,
                               instance=name, secret_file=self.secret_file,
                               stats_socket=h.stats_socket, extra=AGENT_TIMING)
        spec = {
            "bind": "%s:%d" % (LOOPBACK, free_port()),
            "instance": name,
            "backends": [{"name": BE, "servers": [
                {"name": w.name, "addr": w.addr, "weight": 100} for w in self.ws]}],
            "agents": [s.addr],
            "syslog": {"transport": "udp", "addr": s.syslog_udp_addr},
            "cookie": {"name": "stickysid", "secure": False},
            # The agent answers within redis.timeout; the SPOE budget is only the
            # ceiling HAProxy waits for a dead or stuck agent.
            "processing_timeout": "500ms",
            "check_inter": "500ms",
            "agent_check_inter": "500ms",
        }
        lb = Lb(name, h, s, spec)
        self.render(lb)
        s.start()
        h.start()
        return lb

    def render(self, lb):
        """Render lb.spec, then add the diagnostic headers after use-server."""
        h = lb.haproxy
        h.render(lb.spec)
        text = h.cfg_path.read_text()
        anchor = "use-server %[var(txn.sticky.server)] if { var(txn.sticky.server) -m found }\n"
        assert anchor in text, "the reference config changed: update DIAG_RULES' anchor"
        h.write_cfg(text.replace(anchor, anchor + DIAG_RULES), port=h.port)

    def wait_ready(self, timeout=15.0):
        """HAProxy sees every server and agent UP; every agent has its servers view
        from HAProxy and a live heartbeat in Redis (it wrote :servers and :insts)."""
        names = {w.name for w in self.ws}
        for lb in self.lbs:
            lb.haproxy.wait_server_status("stickyd_agents", "agent1", "UP", timeout)
            for w in self.ws:
                lb.haproxy.wait_server_status(BE, w.name, "UP", timeout)
        wait_until(lambda: names <= set(self.r.hkeys(KP + "servers"))
                   and {lb.name for lb in self.lbs} <= set(self.r.zrange(KP + "insts", 0, -1)),
                   timeout, what="agents to publish their servers and heartbeat")

    # Redis views
    def conns(self):
        return {k: int(v) for k, v in self.r.hgetall(KP + "conns").items()}

    def record(self, sid):
        return self.r.hgetall(KP + "s:" + sid)


def action(res):
    return res.headers.get("X-Sticky-Action")


def server_live(ws):
    """The live WebSocket count the server itself reports ("... (N live)" log lines)."""
    m = re.findall(r"^wsserver \S+: (?:open|close) .*\((\d+) live\)$", ws.log_text(), re.M)
    return int(m[-1]) if m else 0


def open_batches(pool, url, n, batch=10, cookie=None):
    """n WebSockets kept open, opened `batch` at a time (each batch concurrently)."""
    out = []
    while len(out) < n:
        out += pool.open_many(url, min(batch, n - len(out)), cookie=cookie)
    return out


def by_server(conns):
    out = {}
    for c in conns:
        out[c.server] = out.get(c.server, 0) + 1
    return out


def usr1_counters(agent, names):
    """SIGUSR1 makes the agent log every counter; returns {name: value} for names."""
    before = len(agent.log_text())
    agent.signal(signal.SIGUSR1)

    def parsed():
        text = agent.log_text()[before:]
        found = {}
        for n in names:
            m = re.search(r"\b%s[ =:]+(\d+)" % re.escape(n), text)
            if m is None:
                return None
            found[n] = int(m.group(1))
        return found
    return wait_until(parsed, 5, what="the counter dump")


# ---- 1. one client, many reconnects -----------------------------------------

def test_reconnects_keep_their_server_and_the_cookie_is_set_once(procs):
    c = Cluster(procs)
    lb = c.lbs[0]
    first = ws_open(lb.ws_url)
    assert action(first) == "new", first.headers
    sid = first.cookie()
    assert sid and len(first.set_cookies) == 1, first.set_cookies
    assert c.record(sid)["server"] == first.server
    for i in range(20):
        again = ws_open(lb.ws_url, cookie=sid)
        assert again.server == first.server, (i, again)
        assert again.set_cookies == [], (i, again.set_cookies)   # issued once
        assert action(again) == "hit", (i, again.headers)
        assert again.hello["cookie"] == "stickysid=" + sid
    rec = c.record(sid)
    assert rec["server"] == first.server and rec["reconnects"] == "20", rec
    assert rec["inst"] == lb.name
