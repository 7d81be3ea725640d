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
import re
import secrets
import time

import pytest

import harness
from harness import (agent_stats, hash_ints, lb_spec, rkey, session_record, wait_until,
                     write_secret, ws_open)
from test_assign import mint_sid, mint_v2, server_tag


def server_cookie(c, server, backend="be_ws"):
    """HAProxy's fallback cookie value for server: its tag as text (agent/sid.h)."""
    import base64
    secret = c.secret_file.read_bytes().rstrip(b"\n")
    return base64.urlsafe_b64encode(server_tag(secret, server, backend)).decode().rstrip("=")

BE = "be_ws"
KP = rkey("", BE)
# Short agent periods, so counts settle within a second or two.
AGENT_TIMING = {"redis": {"timeout": "20ms"}, "haproxy": dict(harness.FAST_PERIODS)}
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

class Lb(harness.Lb):
    def __init__(self, name, haproxy, stickyd, spec):
        super().__init__(name, haproxy, stickyd)
        self.spec = spec


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
        spec = lb_spec(name, self.ws, s, {"transport": "udp", "addr": s.syslog_udp_addr}, BE)
        lb = Lb(name, h, s, spec)
        self.render(lb)
        s.start()
        h.start()
        return lb

    def render(self, lb):
        """Render lb.spec, then add the diagnostic headers after use-server."""
        lb.haproxy.render(lb.spec)
        lb.haproxy.add_after_use_server(DIAG_RULES)

    def wait_ready(self, timeout=15.0):
        harness.wait_fleet_ready(self.r, self.lbs, self.ws, BE, timeout)

    # Redis views
    def conns(self):
        return hash_ints(self.r, KP + "conns")

    def record(self, sid):
        return session_record(self.r, sid, BE)

    def record_is(self, sid, server):
        return harness.record_is(self.r, sid, server, BE)


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
    """SIGUSR1 makes the agent log every counter; returns {name: value} for names
    (a KeyError if the agent has no such counter)."""
    st = agent_stats(agent)
    return {n: st[n] for n in names}


# ---- 1. one client, many reconnects -----------------------------------------

def test_reconnects_keep_their_server_and_the_cookie_is_set_once(procs):
    c = Cluster(procs)
    lb = c.lbs[0]
    first = ws_open(lb.ws_url)
    assert action(first) == "new", first.headers
    sid = first.cookie()
    # the session cookie, and HAProxy's own fallback cookie naming the server's tag
    assert sid and len(first.set_cookies) == 2, first.set_cookies
    assert first.cookie("stickysrv") == server_cookie(c, first.server)
    assert c.record_is(sid, first.server)
    jar = first.jar()
    for i in range(20):
        again = ws_open(lb.ws_url, cookie=jar)
        assert again.server == first.server, (i, again)
        assert again.set_cookies == [], (i, again.set_cookies)   # issued once
        assert action(again) == "hit", (i, again.headers)
        # HAProxy's cookie is its own business ("indirect"): the server never sees it
        assert again.hello["cookie"] == "stickysid=" + sid
    rec = c.record(sid)
    assert rec["server"] == first.server and rec["inst"] == lb.name, rec


# ---- 2. spread by live connections; a new server catches up ------------------

def assert_even(counts, names, total, tol=0.10):
    even = total / len(names)
    for n in names:
        assert abs(counts.get(n, 0) - even) <= tol * even, (n, counts)


def live_everywhere(c, servers):
    """{server: n} as the servers themselves, HAProxy (scur) and Redis (conns) see it,
    or None while they disagree."""
    own = {w.name: server_live(w) for w in servers}
    scur = {r["svname"]: int(r["scur"]) for r in c.lbs[0].haproxy.show_stat()
            if r["pxname"] == BE and r["svname"] in own}
    return own if own == scur == c.conns() else None


def test_spread_by_live_connections_and_a_new_server_catches_up(procs, ws_pool):
    """300 clients kept open are spread evenly (+-10 %) by live counts; a fourth
    server added through HAProxy's runtime API (`add server`, which the agent
    picks up at its next refresh) takes the next 100 new sessions, then the
    spread is even again."""
    c = Cluster(procs)
    lb = c.lbs[0]
    names = [w.name for w in c.ws]
    t0 = time.monotonic()
    conns = open_batches(ws_pool, lb.ws_url, 300)
    t_open = time.monotonic() - t0
    assert all(action(x.result) == "new" for x in conns)
    seen = by_server(conns)
    # The servers' own counts, HAProxy's and the cluster's (Redis) equal what
    # the clients saw once the last opens are counted.
    wait_until(lambda: live_everywhere(c, c.ws) == seen, 10,
               what="servers, scur and conns to equal %s" % seen)
    print("\n300 clients (10 at a time) in %.2fs: %s" % (t_open, seen))
    assert_even(seen, names, 300)

    ws4 = procs.ws_server("ws4")
    h = lb.haproxy
    for cmd in ("add server %s/ws4 %s weight 100 check inter 500ms rise 1 fall 2"
                % (BE, ws4.addr), "enable health %s/ws4" % BE, "enable server %s/ws4" % BE):
        out = h.cmd(cmd).strip()
        assert out in ("", "New server registered."), (cmd, out)
    h.wait_server_status(BE, "ws4", "UP")
    wait_until(lambda: "ws4" in c.r.hkeys(KP + "servers"), 10, what="the agent to see ws4")
    t0 = time.monotonic()
    more = open_batches(ws_pool, lb.ws_url, 100)
    t_more = time.monotonic() - t0
    got = by_server(more)
    print("next 100 in %.2fs: %s" % (t_more, got))
    assert got.get("ws4", 0) >= 90, got
    total = dict(seen)
    for k, v in got.items():
        total[k] = total.get(k, 0) + v
    wait_until(lambda: live_everywhere(c, c.ws + [ws4]) == total, 10,
               what="servers, scur and conns to equal %s" % total)
    # Caught up: the next sessions go to all four again, and the totals stay
    # within two batches of each other (each batch is decided on one snapshot).
    last = open_batches(ws_pool, lb.ws_url, 40)
    got = by_server(last)
    for k, v in got.items():
        total[k] += v
    print("next 40: %s, totals %s" % (got, total))
    assert len(got) >= 3 and max(total.values()) - min(total.values()) <= 20, (got, total)
    assert all(x.echo("still here") == "still here" for x in conns[:3] + more[:3] + last[:3])


def test_a_server_added_by_reload_catches_up(procs, ws_pool):
    """The documented reload path: render the config with a fourth server and
    reload HAProxy with -x/-sf. The old process keeps its 60 tunnels, so the new
    server should take the next sessions until it catches up."""
    c = Cluster(procs)
    lb = c.lbs[0]
    old = open_batches(ws_pool, lb.ws_url, 60)
    seen = by_server(old)
    wait_until(lambda: live_everywhere(c, c.ws) == seen, 10, what="counts to settle")
    ws4 = procs.ws_server("ws4")
    lb.spec["backends"][0]["servers"].append({"name": "ws4", "addr": ws4.addr, "weight": 100})
    c.render(lb)
    lb.haproxy.reload()
    lb.haproxy.wait_server_status(BE, "ws4", "UP")
    wait_until(lambda: "ws4" in c.r.hkeys(KP + "servers"), 10, what="the agent to see ws4")
    # Once the agent has resynced from the new process, the cluster should still
    # count the 60 tunnels open on the old one (observed: {}).
    after = int(time.time() * 1000) + 600
    wait_until(lambda: c.r.zscore(KP + "insts", lb.name) > after, 10,
               what="a resync after the reload")
    counted = c.conns()
    more = open_batches(ws_pool, lb.ws_url, 20)
    got = by_server(more)
    print("\nafter the reload: conns %s while %s are open; next 20: %s" % (counted, seen, got))
    assert all(x.echo("old process") == "old process" for x in old[:3])
    assert counted == seen, counted
    assert got.get("ws4", 0) >= 18, got


# ---- 5. Redis killed, then restarted ------------------------------------------

def test_redis_outage_keeps_every_pin_on_every_agent_and_recovers(procs, ws_pool):
    c = Cluster(procs, instances=2)
    lb1, lb2 = c.lbs
    pinned = ws_open(lb1.ws_url)
    sid = pinned.cookie()
    assert action(pinned) == "new" and sid
    live = open_batches(ws_pool, lb1.ws_url, 3) + open_batches(ws_pool, lb2.ws_url, 3)

    c.redis.kill()
    # The pinned client keeps its server on both agents, at once: the cookie's tag
    # names it, and Redis is not asked.
    took = []
    for lb in (lb1, lb2, lb1, lb2):
        t0 = time.monotonic()
        r = ws_open(lb.ws_url, cookie=sid)
        took.append(1000 * (time.monotonic() - t0))
        assert action(r) == "hit", r.headers
        assert r.server == pinned.server and r.cookie() is None, r
    print("\nupgrades with Redis down (ms): %s" % " ".join("%.0f" % t for t in took))
    # New clients during the outage get a signed cookie and a server; the other
    # load balancer sends them to the same one when they reconnect there.
    outage = []
    for i in range(4):
        lb, other = (lb1, lb2) if i % 2 == 0 else (lb2, lb1)
        first = ws_open(lb.ws_url)
        new_sid = first.cookie()
        assert action(first) == "new" and new_sid, first.headers
        again = ws_open(other.ws_url, cookie=new_sid)
        assert action(again) == "hit" and again.server == first.server, again
        assert again.cookie() is None
        outage.append((new_sid, first.server))
    # Sockets opened during the outage are live too (counted after the restart).
    live += open_batches(ws_pool, lb2.ws_url, 2)
    assert all(action(x.result) == "new" for x in live[-2:])

    c.redis.start()                       # same port, empty (no persistence)
    # Every session kept its server, and its record comes back from its cookie.
    for s, srv in [(sid, pinned.server)] + outage:
        for lb in (lb2, lb1):
            r = ws_open(lb.ws_url, cookie=s)
            assert (action(r), r.server) == ("hit", srv), r.headers
        assert c.record_is(s, srv)

    # Counts recover: conns equals the sockets really open, per server, after a
    # resync (the opens during the outage were never counted, Redis lost the rest).
    want_live = by_server(live)
    wait_until(lambda: c.conns() == want_live
               and {w.name: server_live(w) for w in c.ws} == {
                   w.name: want_live.get(w.name, 0) for w in c.ws},
               10, what="conns to equal the live sockets %s" % want_live)
    assert set(c.r.zrange(KP + "insts", 0, -1)) == {"lb1", "lb2"}
    assert all(x.echo("through") == "through" for x in live)


# ---- 6. the agent killed, then restarted ---------------------------------------

def test_agent_crash_keeps_affinity_in_haproxy_and_affinity_resumes(procs, ws_pool):
    c = Cluster(procs)
    lb = c.lbs[0]
    h = lb.haproxy
    # Six sessions on all three servers (held open one after the other, so
    # least-loaded spreads them), then closed: their clients keep their cookies.
    first = open_batches(ws_pool, lb.ws_url, 6, batch=1)
    assert all(action(x.result) == "new" for x in first)
    pins = [(x.jar(), x.server) for x in first]
    assert len({s for _, s in pins}) == 3, pins
    for x in first:
        x.close()
    held = open_batches(ws_pool, lb.ws_url, 3)

    lb.stickyd.kill()                             # SIGKILL: no goodbye
    took = []

    def upgrade(cookie=None):
        t0 = time.monotonic()
        r = ws_open(lb.ws_url, cookie=cookie)
        took.append(time.monotonic() - t0)
        assert r.server in {w.name for w in c.ws}
        assert r.cookie() is None and action(r) is None, r.headers
        assert r.headers.get("X-Sticky-Error") is not None, r.headers
        return r
    # At once (HAProxy has not noticed yet) and once the check marks it DOWN,
    # every returning client lands on its server: HAProxy's own cookie says which.
    for jar, srv in pins[:3]:
        assert upgrade(jar).server == srv
    upgrade()
    h.wait_server_status("stickyd_agents", "agent1", "DOWN")
    for jar, srv in pins:
        assert upgrade(jar).server == srv
    # New clients: HAProxy balances by itself (leastconn): sockets held open one
    # after the other end up on more than one server, each with its cookie.
    balanced = open_batches(ws_pool, lb.ws_url, 6, batch=1)
    assert all(x.cookie() is None and action(x.result) is None for x in balanced)
    assert len(by_server(balanced)) > 1, by_server(held + balanced)
    for x in balanced:
        assert x.cookie("stickysrv") == server_cookie(c, x.server)
    # and they come back to where HAProxy put them
    for x in balanced[:3]:
        assert upgrade(x.jar()).server == x.server
    assert all(x.echo("alive") == "alive" for x in held)
    print("\n" + " ".join("%.0f" % (1000 * t) for t in took))
    print("upgrades without the agent: %d, max %.0f ms, mean %.0f ms (SPOE timeout 500 ms)"
          % (len(took), 1000 * max(took), 1000 * sum(took) / len(took)))

    lb.stickyd.start()
    h.wait_server_status("stickyd_agents", "agent1", "UP")
    for jar, srv in pins:
        r = wait_until(lambda jar=jar: (lambda x: x if action(x) else None)(
            ws_open(lb.ws_url, cookie=jar)), 10, interval=0.1, what="the agent to answer")
        assert action(r) == "hit" and r.server == srv and r.set_cookies == [], (srv, r.headers)


# ---- 10. forged and tampered cookies --------------------------------------------

def flip_one_char(sid, pos=20):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    ch = alphabet[(alphabet.index(sid[pos]) + 1) % len(alphabet)]
    return sid[:pos] + ch + sid[pos + 1:]


def forged_sids(sid, target):
    """Cookies no agent of this fleet issued, by kind, for a record pinned to target:
    sid with one character changed, one made up, and one minted under another secret
    in each format (v2 names target)."""
    return {
        "tampered": flip_one_char(sid),
        "made-up": "2" + secrets.token_urlsafe(48)[:55],
        "other-secret": mint_v2(secrets.token_bytes(32), target),
        "legacy-other-secret": mint_sid(secrets.token_bytes(32)),
    }


def test_forged_cookies_get_a_fresh_session_never_the_forged_server(procs):
    c = Cluster(procs)
    lb = c.lbs[0]
    real = ws_open(lb.ws_url)
    sid = real.cookie()
    target = next(w.name for w in c.ws if w.name != real.server)
    # The target takes no new sessions (drain, no deadline), so a client can only
    # land there because a record says so: genuine pins to a draining server stay.
    c.r.hset(KP + "state", target, "drain:0")
    forged = forged_sids(sid, target)
    for name, fid in forged.items():
        assert fid != sid, name
        c.r.set(KP + "s:" + harness.record_id(fid), "%s 1 1 - forger" % target, px=3600000)
    # Control: a genuine session an operator moved to the target does land there
    # (its first connection learns the move, the next one follows it).
    c.r.set(KP + "s:" + harness.record_id(sid), "%s 1 1 m x" % target, px=3600000)
    ctl = wait_until(lambda: (lambda r: r if r.server == target else None)(
        ws_open(lb.ws_url, cookie=sid)), 5, what="the operator's move followed")
    assert action(ctl) == "hit", ctl.headers
    before = usr1_counters(lb.stickyd, ["sid_invalid"])["sid_invalid"]

    fresh_ids = set()
    for name, fid in forged.items():
        for i in range(3):
            r = ws_open(lb.ws_url, cookie=fid)
            new_sid = r.cookie()
            assert action(r) == "new", (name, r.headers)
            assert new_sid and new_sid != fid and new_sid not in fresh_ids, (name, r.set_cookies)
            assert r.server != target, (name, i, r)
            assert c.record_is(new_sid, r.server)
            fresh_ids.add(new_sid)
        # The forged record was never used or touched.
        rec = c.record(fid)
        assert rec["server"] == target and rec["inst"] == "forger", (name, rec)
    after = usr1_counters(lb.stickyd, ["sid_invalid"])["sid_invalid"]
    assert after - before == 3 * len(forged), (before, after)
    # And the fresh ids work as real ones.
    for fid in list(fresh_ids)[:2]:
        r = ws_open(lb.ws_url, cookie=fid)
        assert action(r) == "hit" and r.server == c.record(fid)["server"]
