"""sticky-assign against a real redis-server and real agent/stickyd processes.

Speaks SPOP directly (spop_client.py), so every decision rule can be driven
from its inputs (cookie, key, Redis conns/state, the static server list) and
checked against its outputs (ACK vars, the session record in Redis). Expected
servers are computed from the algorithms documented in agent/affinity.h and
agent/sid.h, transcribed independently below, never hard-coded.
"""
import base64
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import signal
import time

import pytest

import harness
from harness import agent_stats, session_record, set_server_state, wait_until
from spop_client import SpopClient

BE = "be_ws"
MSG = "sticky-assign"
PREFIX = "sticky:"
M64 = (1 << 64) - 1


# ---- independent transcriptions of the documented formats -----------------

def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def mint_sid(secret, nonce=None):
    """A "1" id as agent/sid.h documents it."""
    nonce = nonce if nonce is not None else os.urandom(16)
    tag = hmac.new(secret, b"stickyd-sid-v1\x00" + nonce, hashlib.sha256).digest()[:16]
    return "1" + b64url(nonce + tag)


def key_id(secret, key):
    return "k" + b64url(hmac.new(secret, b"key\x00" + key, hashlib.sha256).digest()[:18])


def hrw_hash(ident, server):
    z = 0xCBF29CE484222325
    for b in ident.encode() + b"\x00" + server.encode():
        z ^= b
        z = (z * 0x100000001B3) & M64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return z


def hrw_first(ident, servers):
    """The first server in HRW order (hash descending, then name)."""
    return sorted(servers, key=lambda s: (-hrw_hash(ident, s), s))[0]


def hrw_weighted(ident, weights):
    """The weighted rendezvous choice among {server: weight > 0}."""
    def score(s):
        h = hrw_hash(ident, s)
        u = ((h >> 12) + 0.5) / float(1 << 52)
        return (-weights[s] / math.log(u), h)
    return max((s for s in weights if weights[s] > 0), key=score)


# ---- fixtures and helpers ---------------------------------------------------

class Cluster:
    """One Redis and N agents sharing a secret, a static server list."""

    def __init__(self, procs, servers, agents=1, redis_timeout="100ms", ttl="1h",
                 log_level="debug"):
        self.procs = procs
        self.redis = procs.redis()
        self.r = self.redis.client()
        self.secret_file = procs.workdir / "assign-secret.key"
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        self.secret = self.secret_file.read_bytes()[:-1]
        self.servers = servers
        self.agents = []
        for i in range(1, agents + 1):
            a = procs.stickyd(name="agent%d" % i, redis_port=self.redis.port,
                              backends={BE: servers}, secret_file=self.secret_file,
                              instance="agent%d" % i, syslog_udp=False, log_level=log_level,
                              extra={"redis": {"timeout": redis_timeout},
                                     "session": {"ttl": ttl}})
            self.agents.append(a)
        self.clients = [self.connect(a) for a in self.agents]
        for c in self.clients:
            wait_until(lambda c=c: assign(c, sid=None)["action"] == "new", timeout=10,
                       what="agent connected to Redis")
        self.r.flushall()

    def connect(self, agent):
        c = SpopClient("127.0.0.1", agent.port)
        c.hello()
        return c

    def record(self, sid):
        return session_record(self.r, sid, BE)

    def rkey(self, sid):
        return harness.rkey("s:" + sid, BE, PREFIX)

    def set_load(self, loads):
        """Live connections per server, as the fleet module keeps them: the
        `conns` sum and a fresh share of a fake instance (so a resync that
        recomputes `conns` from the shares finds the same numbers)."""
        kp = "%s{%s}:" % (PREFIX, BE)
        now = int(time.time() * 1000)
        p = self.r.pipeline()
        p.delete(kp + "conns", kp + "i:loadgen")
        for s, n in loads.items():
            p.hset(kp + "conns", s, n)
            p.hset(kp + "i:loadgen", s, n)
        p.zadd(kp + "insts", {"loadgen": now + 3600 * 1000})
        p.execute()

    def set_state(self, server, value):
        set_server_state(self.r, server, value, BE)

    def close(self):
        for c in self.clients:
            c.close()

    def stats(self, i=0):
        """The agent's counters, from the lines SIGUSR1 writes to its log."""
        return agent_stats(self.agents[i])


def assign(c, sid=None, key=None, backend=BE, inst="haproxy-1", **extra):
    args = {"backend": backend, "sid": sid, "inst": inst, "uid": "uid-%d" % time.monotonic_ns(),
            "src": ipaddress.ip_address("192.0.2.7")}
    if key is not None:
        args["key"] = key
    args.update(extra)
    return c.notify(MSG, args)


@pytest.fixture
def cluster(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1, "ws3": 1})
    yield cl
    cl.close()


@pytest.fixture
def cluster2(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1, "ws3": 1}, agents=2)
    yield cl
    cl.close()


# ---- rules 1 and 4: new, then hit ------------------------------------------

def test_new_then_hit_updates_record(cluster):
    c = cluster.clients[0]
    v = assign(c, sid=None)
    assert v["action"] == "new"
    assert v["set_cookie"] == 1 and v["draining"] == 0
    sid = v["sid"]
    assert len(sid) == 44 and sid[0] == "1"
    assert v["server"] in cluster.servers
    rec = cluster.record(sid)
    assert rec["server"] == v["server"]
    assert rec["reconnects"] == "0" and rec["inst"] == "haproxy-1"
    assert rec["created"] == rec["seen"]
    ttl = cluster.r.pttl(cluster.rkey(sid))
    assert 0 < ttl <= 3600 * 1000

    cluster.r.pexpire(cluster.rkey(sid), 50000)  # the hit must slide it back up
    for n in range(1, 4):
        h = assign(c, sid=sid, inst="haproxy-2")
        assert h == {"server": v["server"], "sid": sid, "set_cookie": 0, "action": "hit",
                     "draining": 0}
        rec = cluster.record(sid)
        assert rec["reconnects"] == str(n) and rec["inst"] == "haproxy-2"
        assert int(rec["seen"]) >= int(rec["created"])
    assert cluster.r.pttl(cluster.rkey(sid)) > 50000


def test_new_goes_to_least_loaded(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 10, "ws2": 3, "ws3": 7})
    got = {assign(c)["server"] for _ in range(15)}
    assert got == {"ws2"}
    cluster.set_load({"ws1": 2, "ws2": 3, "ws3": 7})
    got = {assign(c)["server"] for _ in range(15)}
    assert got == {"ws1"}


def test_weights_scale_load_and_zero_takes_nothing(procs):
    cl = Cluster(procs, {"ws1": 4, "ws2": 1, "ws3": 2, "ws4": 0})
    try:
        c = cl.clients[0]
        # load = conns / weight: ws1 8/4 = 2, ws2 3/1 = 3, ws3 5/2 = 2.5, ws4 weight 0
        cl.set_load({"ws1": 8, "ws2": 3, "ws3": 5, "ws4": 0})
        assert {assign(c)["server"] for _ in range(15)} == {"ws1"}
        cl.set_load({"ws1": 12, "ws2": 3, "ws3": 5, "ws4": 0})  # 3, 3, 2.5
        assert {assign(c)["server"] for _ in range(15)} == {"ws3"}
        # equal loads: the HRW order of the sid decides, never the weight-0 server
        cl.set_load({"ws1": 4, "ws2": 1, "ws3": 2, "ws4": 0})
        seen = set()
        for _ in range(40):
            v = assign(c)
            # ws4 (weight 0) is not a candidate; among the others the first in
            # the sid's HRW order wins the tie
            assert v["server"] == hrw_first(v["sid"], ["ws1", "ws2", "ws3"])
            seen.add(v["server"])
        assert len(seen) > 1
    finally:
        cl.close()


def test_tie_break_identical_on_two_agents(cluster2):
    a, b = cluster2.clients
    cluster2.set_load({"ws1": 5, "ws2": 5, "ws3": 5})
    chosen = set()
    for _ in range(30):
        sid = mint_sid(cluster2.secret)
        va = assign(a, sid=sid)
        assert va["action"] == "new" and va["set_cookie"] == 0 and va["sid"] == sid
        cluster2.r.delete(cluster2.rkey(sid))
        vb = assign(b, sid=sid)
        assert vb["action"] == "new" and vb["server"] == va["server"]
        assert va["server"] == hrw_first(sid, cluster2.servers)
        chosen.add(va["server"])
    assert len(chosen) > 1  # ties are really spread by the hash


# ---- rule 2 and 3: draining, maint, removed -----------------------------------

def _pin(cluster, c):
    v = assign(c)
    assert v["action"] == "new"
    return v["sid"], v["server"]


def test_draining_hit_before_deadline_then_repin_after(cluster):
    c = cluster.clients[0]
    sid, srv = _pin(cluster, c)
    now = int(time.time() * 1000)
    cluster.set_state(srv, "drain:%d" % (now + 600000))
    v = assign(c, sid=sid)
    assert (v["action"], v["server"], v["draining"]) == ("hit", srv, 1)
    cluster.set_state(srv, "drain:0")
    v = assign(c, sid=sid)
    assert (v["action"], v["server"], v["draining"]) == ("hit", srv, 1)
    cluster.set_state(srv, "drain:%d:close" % (now + 600000))
    assert assign(c, sid=sid)["draining"] == 1
    # new sessions never land on a draining server
    assert all(assign(c)["server"] != srv for _ in range(20))
    # past the deadline the session moves, once
    cluster.set_state(srv, "drain:%d" % (now - 1000))
    v = assign(c, sid=sid)
    assert v["action"] == "repin" and v["server"] != srv and v["draining"] == 0
    assert v["sid"] == sid and v["set_cookie"] == 0
    rec = cluster.record(sid)
    assert rec["server"] == v["server"] and rec["reconnects"] == "4"  # 3 hits + the repin
    again = assign(c, sid=sid)
    assert (again["action"], again["server"]) == ("hit", v["server"])


def test_repin_on_maint_and_removed_server(cluster):
    c = cluster.clients[0]
    sid, srv = _pin(cluster, c)
    cluster.set_state(srv, "maint")
    v = assign(c, sid=sid)
    assert v["action"] == "repin" and v["server"] != srv
    cluster.set_state(srv, None)
    v2 = assign(c, sid=sid)
    assert (v2["action"], v2["server"]) == ("hit", v["server"])
    # a record naming a server the backend no longer has
    cluster.r.hset(cluster.rkey(sid), "server", "ws-gone")
    v3 = assign(c, sid=sid)
    assert v3["action"] == "repin" and v3["server"] in cluster.servers
    assert cluster.record(sid)["server"] == v3["server"]


def test_repin_goes_to_least_loaded(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 50, "ws3": 50})
    sid, srv = _pin(cluster, c)
    assert srv == "ws1"
    cluster.set_load({"ws1": 0, "ws2": 9, "ws3": 4})
    cluster.set_state("ws1", "maint")
    assert assign(c, sid=sid)["server"] == "ws3"


def test_expired_record_keeps_sid(cluster):
    c = cluster.clients[0]
    sid, _ = _pin(cluster, c)
    cluster.r.pexpire(cluster.rkey(sid), 1)
    wait_until(lambda: not cluster.r.exists(cluster.rkey(sid)), timeout=5, what="expiry")
    v = assign(c, sid=sid)
    assert v["action"] == "new" and v["sid"] == sid and v["set_cookie"] == 0
    assert cluster.record(sid)["server"] == v["server"]


# ---- ids: forged cookies, keys -------------------------------------------------

def test_forged_cookies_are_replaced(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 100, "ws3": 100})
    good = mint_sid(cluster.secret)
    tampered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    forged = [
        "ws3",
        tampered,
        good[:-1],
        good + "A",
        mint_sid(b"another cluster's secret"),
        "1" + "A" * 43,
        key_id(cluster.secret, b"user-1"),
        "x" * 300,
        "1" + "/" * 43,
        "../../etc",
    ]
    before = cluster.stats()
    for f in forged:
        v = assign(c, sid=f)
        assert v["action"] == "new", f
        assert v["set_cookie"] == 1 and v["sid"] != f and len(v["sid"]) == 44
        assert v["server"] == "ws1"  # least loaded, never what the cookie names
        assert not cluster.r.exists(cluster.rkey(f))
    # the genuine article (minted here from the documented format) is accepted
    v = assign(c, sid=good)
    assert v["action"] == "new" and v["sid"] == good and v["set_cookie"] == 0
    # a valid-looking cookie still never picks the server: only Redis does
    cluster.r.hset(cluster.rkey(good), "server", "ws3")
    assert assign(c, sid=good)["server"] == "ws3"
    assert len(cluster.r.keys("*:s:*")) == 1 + len(forged)
    after = cluster.stats()
    assert after["sid_invalid"] - before["sid_invalid"] == len(forged)
    assert after["sid_minted"] - before["sid_minted"] == len(forged)
    assert after["decision_new"] - before["decision_new"] == len(forged) + 1
    assert after["decision_hit"] - before["decision_hit"] == 1


def test_key_affinity_follows_key_not_cookie(cluster2):
    a, b = cluster2.clients
    kid = key_id(cluster2.secret, b"user-42")
    v1 = assign(a, sid=None, key="user-42")
    assert v1["action"] == "new" and v1["sid"] == kid and v1["set_cookie"] == 0
    v2 = assign(b, sid=mint_sid(cluster2.secret), key="user-42")
    assert (v2["action"], v2["server"], v2["sid"]) == ("hit", v1["server"], kid)
    # other key types are hashed as their text
    v3 = assign(a, key=ipaddress.ip_address("198.51.100.9"))
    assert v3["sid"] == key_id(cluster2.secret, b"198.51.100.9")
    v4 = assign(b, key="198.51.100.9")
    assert (v4["action"], v4["server"]) == ("hit", v3["server"])
    # a NULL key falls back to the cookie
    v5 = assign(a, sid=None, key=None)
    assert v5["sid"][0] == "1" and v5["set_cookie"] == 1


# ---- malformed input -------------------------------------------------------------

def test_malformed_messages_answer_none(cluster):
    c = cluster.clients[0]
    cases = [
        ([("sid", None)], "missing backend"),
        ([("backend", "")], "missing backend"),
        ([("backend", 42)], "bad backend"),
        ([("backend", None)], "bad backend"),
        ([("backend", BE), ("sid", 7)], "bad sid"),
        ([("backend", BE), ("sid", True)], "bad sid"),
        ([("backend", BE), ("key", True)], "bad key"),
        ([("backend", "no-such-backend")], "unknown backend"),
        ([("backend", "b" * 200)], "unknown backend"),
        ([], "missing backend"),
    ]
    for args, reason in cases:
        v = c.notify(MSG, args)
        assert v["action"] == "none", args
        assert v["reason"] == reason, args
        assert "server" not in v
    # still serving
    assert assign(c)["action"] == "new"
    # a unique-id with a line break cannot forge a log line
    v = assign(c, uid="x\n2099-01-01T00:00:00.000Z err FORGED")
    assert v["action"] == "new"
    wait_until(lambda: v["sid"][:8] in cluster.agents[0].log_text(), timeout=5, what="log")
    assert not any(l.startswith("2099") for l in cluster.agents[0].log_text().splitlines())


def test_no_usable_server_answers_none(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1})
    try:
        c = cl.clients[0]
        sid, srv = _pin(cl, c)
        cl.set_state("ws1", "maint")
        cl.set_state("ws2", "drain:0")
        v = assign(c)
        assert v["action"] == "none" and v["reason"] == "no usable server"
        # a session pinned to the draining server still gets it
        if srv == "ws2":
            assert assign(c, sid=sid)["action"] == "hit"
        else:
            assert assign(c, sid=sid)["action"] == "none"
    finally:
        cl.close()


# ---- atomicity across agents ------------------------------------------------------

def _both(ca, cb, **kw):
    """Send the same decision to two agents at once, then read both ACKs."""
    fa = ca.send_notify([(MSG, dict(backend=BE, inst="a", **kw))])
    fb = cb.send_notify([(MSG, dict(backend=BE, inst="b", **kw))])
    return ca.recv_ack(fa), cb.recv_ack(fb)


def test_two_agents_race_one_pin(cluster2):
    a, b = cluster2.clients
    # loads that keep changing the least-loaded choice between rounds
    for rnd in range(60):
        cluster2.set_load({"ws1": rnd % 3, "ws2": (rnd + 1) % 3, "ws3": (rnd + 2) % 3})
        if rnd % 2 == 0:
            sid = mint_sid(cluster2.secret)
            va, vb = _both(a, b, sid=sid)
            rid = sid
        else:
            key = "race-key-%d" % rnd
            va, vb = _both(a, b, key=key)
            rid = key_id(cluster2.secret, key.encode())
        assert sorted([va["action"], vb["action"]]) == ["hit", "new"], (va, vb)
        assert va["server"] == vb["server"] and va["sid"] == vb["sid"] == rid
        rec = cluster2.record(rid)
        assert rec["server"] == va["server"] and rec["reconnects"] == "1"
    assert len(cluster2.r.keys("*:s:*")) == 60


# ---- Redis unavailable ----------------------------------------------------------

def _pipelined(c, sids):
    fids = [c.send_notify([(MSG, {"backend": BE, "sid": s})]) for s in sids]
    return [c.recv_ack(f) for f in fids]


def test_redis_hung_killed_restarted(cluster2):
    a, b = cluster2.clients
    red = cluster2.redis
    weights = {s: w for s, w in cluster2.servers.items()}
    sids = [mint_sid(cluster2.secret) for _ in range(20)]
    pinned = {s: assign(a, sid=s)["server"] for s in sids[:5]}

    # hung: every answer comes from the deadline path
    os.kill(red.pid, signal.SIGSTOP)
    try:
        # a stuck request would hit the client's 5 s socket timeout and fail
        ra = _pipelined(a, sids)
        rb = _pipelined(b, sids)
    finally:
        os.kill(red.pid, signal.SIGCONT)
    for s, va, vb in zip(sids, ra, rb):
        assert va["action"] == vb["action"] == "fallback"
        assert va["server"] == vb["server"] == hrw_weighted(s, weights)
        assert va["sid"] == s and va["set_cookie"] == 0

    # back: the pins are still there
    wait_until(lambda: assign(a, sid=sids[0])["action"] == "hit", timeout=10,
               what="agent a back on Redis")
    for s, srv in pinned.items():
        assert assign(b, sid=s)["server"] == srv

    # killed: fallback at once, minted ids included
    red.kill()
    va = assign(a, sid=None)
    assert va["action"] == "fallback" and va["set_cookie"] == 1
    assert va["server"] == hrw_weighted(va["sid"], weights)
    vb = assign(b, sid=va["sid"])
    assert (vb["action"], vb["server"], vb["set_cookie"]) == ("fallback", va["server"], 0)
    ra = _pipelined(a, sids)
    rb = _pipelined(b, sids)
    assert [v["server"] for v in ra] == [v["server"] for v in rb]
    assert all(v["action"] == "fallback" for v in ra + rb)

    # restarted (empty): normal decisions resume by themselves on both agents
    red.start()
    for c in (a, b):
        wait_until(lambda c=c: assign(c)["action"] == "new", timeout=15,
                   what="recovery after restart")
    v = assign(a, sid=sids[7])
    assert v["action"] == "new" and v["sid"] == sids[7]
    assert (assign(b, sid=sids[7])["action"]) == "hit"
    for ag in cluster2.agents:
        assert ag.alive


def test_no_redis_at_start_then_redis_appears(procs):
    """An agent started before its Redis answers with fallback, then recovers."""
    import harness
    port = harness.free_port()
    secret_file = procs.workdir / "s.key"
    secret_file.write_text("0123456789abcdef0123\n")
    ag = procs.stickyd(name="early", redis_port=port, backends={BE: {"ws1": 1, "ws2": 3}},
                       secret_file=secret_file, syslog_udp=False,
                       extra={"redis": {"timeout": "50ms"}})
    with SpopClient("127.0.0.1", ag.port) as c:
        c.hello()
        v = assign(c)
        assert v["action"] == "fallback"
        assert v["server"] == hrw_weighted(v["sid"], {"ws1": 1, "ws2": 3})
        procs.redis(port=port)
        wait_until(lambda: assign(c)["action"] == "new", timeout=15, what="Redis noticed")


# ---- with a real HAProxy ------------------------------------------------------------

def test_haproxy_drain_and_maint_seen_by_the_agent(stack):
    """States set on HAProxy itself (runtime API), not in Redis: the agent's
    view comes from HAProxy's stats socket."""
    lb = stack.lbs[0]
    with SpopClient("127.0.0.1", lb.stickyd.port) as c:
        c.hello()
        wait_until(lambda: assign(c)["action"] == "new", timeout=10, what="agent ready")
        v = assign(c)
        sid, srv = v["sid"], v["server"]
        others = sorted({w.name for w in stack.ws} - {srv})
        lb.haproxy.cmd("set server %s/%s state drain" % (BE, srv))
        wait_until(lambda: assign(c, sid=sid)["draining"] == 1, timeout=10,
                   what="agent sees DRAIN")
        h = assign(c, sid=sid)
        assert (h["action"], h["server"], h["draining"]) == ("hit", srv, 1)
        assert all(assign(c)["server"] in others for _ in range(20))
        lb.haproxy.cmd("set server %s/%s state maint" % (BE, srv))
        wait_until(lambda: assign(c, sid=sid)["action"] == "repin", timeout=10,
                   what="agent sees MAINT")
        moved = stack.redis.client().hget("%s{%s}:s:%s" % (PREFIX, BE, sid), "server")
        assert moved in others
        lb.haproxy.cmd("set server %s/%s state ready" % (BE, srv))
        wait_until(lambda: assign(c)["server"] == srv, timeout=10, what="back in service")
        assert assign(c, sid=sid)["server"] == moved  # the new pin holds


def test_websocket_upgrades_through_haproxy(stack):
    """The whole path: HAProxy sends sticky-assign on the upgrade, applies the
    server and the cookie the agent chose."""
    url = stack.lbs[0].ws_url
    first = harness.ws_open(url)
    sid = first.cookie()
    assert sid is not None and len(sid) == 44 and sid[0] == "1"
    rec = session_record(stack.redis.client(), sid, BE)
    assert rec["server"] == first.server
    for _ in range(5):
        again = harness.ws_open(url, cookie=sid)
        assert again.server == first.server
        assert again.cookie() is None  # no new cookie for a valid one
    forged = harness.ws_open(url, cookie="1" + "A" * 43)
    assert forged.cookie() not in (None, "1" + "A" * 43)


# ---- secret rotation ------------------------------------------------------------------

def test_secret_rotation_keeps_sessions(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1, "ws3": 1})
    c = cl.clients[0]
    old_secret = cl.secret
    sid, srv = _pin(cl, c)
    kv = assign(c, key="rotating-user")
    c.close()
    cl.clients = []

    # new secret, old one kept as previous; restart the agent on it
    agent = cl.agents[0]
    prev_file = procs.workdir / "assign-secret.prev"
    prev_file.write_bytes(old_secret + b"\n")
    new_secret = secrets.token_hex(32).encode()
    cl.secret_file.write_bytes(new_secret + b"\n")
    agent.update_config(session={"secret_file": str(cl.secret_file),
                                 "previous_secret_file": str(prev_file), "ttl": "1h"})
    agent.restart()
    with cl.connect(agent) as c2:
        wait_until(lambda: assign(c2)["action"] in ("new", "hit"), timeout=10, what="agent up")
        # an old cookie still verifies and keeps its pin, without a new cookie
        v = assign(c2, sid=sid)
        assert (v["action"], v["server"], v["sid"], v["set_cookie"]) == ("hit", srv, sid, 0)
        # new ids are signed with the new secret
        fresh = assign(c2)["sid"]
        assert fresh[:23] != mint_sid(old_secret, nonce=b"\0" * 16)[:23]
        nonce = base64.urlsafe_b64decode(fresh[1:] + "=")[:16]
        assert fresh == mint_sid(new_secret, nonce)
        # a key's record moves to its new id and keeps its server
        kv2 = assign(c2, key="rotating-user")
        assert kv2["sid"] == key_id(new_secret, b"rotating-user") != kv["sid"]
        assert (kv2["action"], kv2["server"]) == ("hit", kv["server"])
        assert not cl.r.exists(cl.rkey(kv["sid"]))

    # the old secret dropped: old cookies are strangers now
    agent.update_config(session={"secret_file": str(cl.secret_file),
                                 "previous_secret_file": None, "ttl": "1h"})
    agent.restart()
    with cl.connect(agent) as c3:
        wait_until(lambda: assign(c3)["action"] in ("new", "hit"), timeout=10, what="agent up")
        v = assign(c3, sid=sid)
        assert v["action"] == "new" and v["sid"] != sid and v["set_cookie"] == 1


def test_sighup_reloads_secrets(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1})
    c = cl.clients[0]
    sid, srv = _pin(cl, c)
    new_secret = secrets.token_hex(32).encode()
    prev_file = procs.workdir / "assign-secret.prev"
    prev_file.write_bytes(cl.secret + b"\n")
    cl.secret_file.write_bytes(new_secret + b"\n")
    agent = cl.agents[0]
    agent.update_config(session={"secret_file": str(cl.secret_file),
                                 "previous_secret_file": str(prev_file), "ttl": "1h"})
    agent.reload()
    wait_until(lambda: "configuration reloaded" in agent.log_text(), timeout=10, what="reload")
    fresh = assign(c)["sid"]
    nonce = base64.urlsafe_b64decode(fresh[1:] + "=")[:16]
    assert fresh == mint_sid(new_secret, nonce)
    assert assign(c, sid=sid)["action"] == "hit"
    cl.close()


# ---- requests in flight when their connection or the agent goes away --------------

def test_inflight_decisions_survive_peer_close_and_shutdown(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1}, agents=1, redis_timeout="2s")
    agent, red = cl.agents[0], cl.redis
    os.kill(red.pid, signal.SIGSTOP)  # every decision now waits on Redis
    try:
        # 1. HAProxy's connection closes with decisions pending: orphaned
        c = cl.connect(agent)
        for _ in range(10):
            c.send_notify([(MSG, {"backend": BE, "sid": None})])
        time.sleep(0.2)  # let the agent read them and send the EVALSHAs
        c.close()
        cl.clients = []
        # 2. the agent keeps serving: a fresh connection gets its (late) answers
        c2 = cl.connect(agent)
        fid = c2.send_notify([(MSG, {"backend": BE, "sid": None})])
    finally:
        os.kill(red.pid, signal.SIGCONT)
    v = c2.recv_ack(fid)
    assert v["action"] in ("new", "fallback")
    assert assign(c2)["action"] == "new"

    # 3. SIGTERM while decisions wait on a hung Redis: a clean exit
    os.kill(red.pid, signal.SIGSTOP)
    try:
        for _ in range(10):
            c2.send_notify([(MSG, {"backend": BE, "sid": None})])
        time.sleep(0.2)
        agent.signal(signal.SIGTERM)
        agent.popen.wait(10)
    finally:
        os.kill(red.pid, signal.SIGCONT)
    c2.close()
    assert agent.popen.returncode == 0
    assert "stickyd exiting (status 0)" in agent.log_text()


def test_dump_assign_script_is_the_script_the_agent_runs(cluster):
    """The benchmark feeds `stickyd --dump-assign-script` to redis-benchmark: it
    must be byte-for-byte the script the agent loaded."""
    import subprocess
    import harness
    text = subprocess.run([str(harness.STICKYD), "--dump-assign-script"], check=True,
                          stdout=subprocess.PIPE, timeout=10).stdout
    sha = hashlib.sha1(text).hexdigest()
    assign(cluster.clients[0])  # the agent has (re)loaded its script by now
    assert cluster.r.script_exists(sha) == [True]
