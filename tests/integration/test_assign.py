"""sticky-assign against a real redis-server and real agent/stickyd processes.

Speaks SPOP directly (spop_client.py), so every decision rule can be driven
from its inputs (cookie, key, Redis conns/state, the static server list) and
checked against its outputs (ACK vars, the session record in Redis). Expected
servers and cookies are computed from the formats documented in
agent/affinity.h, agent/sid.h and agent/model.h, transcribed independently
below, never hard-coded.
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
from harness import (agent_stats, record_id, session_record, set_server_state, wait_record,
                     wait_until)
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


def server_tag(secret, server, backend=BE):
    return hmac.new(secret, b"stickyd-srv-v1\x00" + backend.encode() + b"\x00" + server.encode(),
                    hashlib.sha256).digest()[:4]


def mint_v2(secret, server, rid=None, issued=None, kind=1, backend=BE):
    """A "2" cookie as agent/sid.h documents it: kind, rid, issued, tag, MAC."""
    rid = rid if rid is not None else os.urandom(16)
    issued = int(time.time()) if issued is None else issued
    body = bytes([kind]) + rid + issued.to_bytes(4, "big") + server_tag(secret, server, backend)
    mac = hmac.new(secret, b"stickyd-sid-v2\x00" + body, hashlib.sha256).digest()[:16]
    return "2" + b64url(body + mac)


def cookie_parts(sid):
    """(kind, rid, issued, tag) of a "2" cookie."""
    raw = base64.urlsafe_b64decode(sid[1:] + "=" * (-len(sid[1:]) % 4))
    return raw[0], raw[1:17], int.from_bytes(raw[17:21], "big"), raw[21:25]


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
                 log_level="debug", refresh="1h"):
        self.procs = procs
        self.redis = procs.redis()
        self.r = self.redis.client()
        self.secret_file = procs.workdir / "assign-secret.key"
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        self.secret = self.secret_file.read_bytes()[:-1]
        self.servers = servers
        self.agents = []
        for i in range(1, agents + 1):
            # haproxy.refresh also paces the fleet view's refresh (the ledger's
            # empty batches): short, so a load or state set here is seen at once
            a = procs.stickyd(name="agent%d" % i, redis_port=self.redis.port,
                              backends={BE: servers}, secret_file=self.secret_file,
                              instance="agent%d" % i, syslog_udp=False, log_level=log_level,
                              extra={"redis": {"timeout": redis_timeout},
                                     "session": {"ttl": ttl, "refresh": refresh},
                                     "haproxy": {"refresh": "50ms"}})
            self.agents.append(a)
        self.clients = [self.connect(a) for a in self.agents]
        for c in self.clients:
            wait_until(lambda c=c: assign(c, sid=mint_sid(self.secret))["action"] == "new",
                       timeout=10, what="agent connected to Redis")
        self.r.flushall()
        self.sync()

    def connect(self, agent):
        c = SpopClient("127.0.0.1", agent.port)
        c.hello()
        return c

    def sync(self):
        """Let every agent's fleet view (loads, states, Redis' clock) catch up."""
        time.sleep(0.25)

    def record(self, sid):
        return session_record(self.r, sid, BE)

    def record_is(self, sid, server):
        return harness.record_is(self.r, sid, server, BE)

    def rkey(self, sid):
        return harness.rkey("s:" + record_id(sid), BE, PREFIX)

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
        self.sync()

    def set_state(self, server, value):
        set_server_state(self.r, server, value, BE)
        self.sync()

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


def assert_cookie_for(cl, v, server):
    """v's sid is a "2" cookie that names server, signed with the cluster's secret."""
    sid = v["sid"]
    assert len(sid) == 56 and sid[0] == "2", sid
    kind, rid, issued, tag = cookie_parts(sid)
    assert tag == server_tag(cl.secret, server)
    assert abs(issued - time.time()) < 5
    assert sid == mint_v2(cl.secret, server, rid=rid, issued=issued, kind=kind)
    return rid


# ---- rules: new, then hit from the cookie ----------------------------------

def test_new_then_hit_from_the_cookie_and_the_record(cluster):
    c = cluster.clients[0]
    v = assign(c, sid=None)
    assert v["action"] == "new"
    assert v["set_cookie"] == 1 and v["draining"] == 0
    assert v["server"] in cluster.servers
    rid = assert_cookie_for(cluster, v, v["server"])
    sid = v["sid"]
    assert record_id(sid) == "2" + b64url(rid)
    rec = wait_record(cluster.r, sid)  # written by the ledger, after the answer
    assert rec["server"] == v["server"] and rec["inst"] == "agent1" and not rec["moved"]
    assert rec["created"] == rec["seen"]
    ttl = cluster.r.pttl(cluster.rkey(sid))
    assert 0 < ttl <= 3600 * 1000
    for _ in range(3):
        h = assign(c, sid=sid, inst="haproxy-2", srvck=v["srvtag"])
        assert h == {"server": v["server"], "sid": sid, "set_cookie": 0, "action": "hit",
                     "draining": 0}
    # HAProxy's own fallback cookie is rewritten when it does not name the server
    assert v["srvtag"] == b64url(server_tag(cluster.secret, v["server"]))
    assert assign(c, sid=sid, srvck="XXXXXX")["srvtag"] == v["srvtag"]
    # a young cookie's hit costs Redis no write to the record (no TTL refresh)
    time.sleep(0.1)
    assert cluster.record(sid) == rec
    st = cluster.stats()
    assert st["decision_local"] >= 4 and st["decision_hit"] >= 3


def test_an_old_cookie_is_reissued_and_its_record_renewed(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1}, refresh="1s")
    try:
        c = cl.clients[0]
        v = assign(c)
        rec = wait_record(cl.r, v["sid"])
        time.sleep(1.2)
        h = assign(c, sid=v["sid"])
        assert h["action"] == "hit" and h["server"] == v["server"] and h["set_cookie"] == 1
        assert h["sid"] != v["sid"] and record_id(h["sid"]) == record_id(v["sid"])
        assert_cookie_for(cl, h, v["server"])
        wait_until(lambda: cl.record(v["sid"])["seen"] > rec["seen"], timeout=5,
                   what="record renewed")
        assert cl.record(v["sid"])["created"] == rec["created"]
    finally:
        cl.close()


def test_new_goes_to_least_loaded(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 100, "ws2": 30, "ws3": 70})
    got = {assign(c)["server"] for _ in range(15)}
    assert got == {"ws2"}
    cluster.set_load({"ws1": 20, "ws2": 30, "ws3": 70})
    got = {assign(c)["server"] for _ in range(5)}
    assert got == {"ws1"}


def test_a_client_haproxy_placed_stays_where_haproxy_put_it(cluster):
    """No session cookie, but HAProxy's own (its fallback while the agent was
    away): the new session stays on that server, so nothing placed without the
    agent - a Socket.IO handshake half done - is moved when it comes back."""
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 50, "ws3": 50})
    tag = b64url(server_tag(cluster.secret, "ws3"))
    v = assign(c, srvck=tag)
    assert (v["action"], v["server"]) == ("new", "ws3") and "srvtag" not in v
    assert_cookie_for(cluster, v, "ws3")
    for junk in ("", "AAAAAA", "!!", tag + "x", b64url(server_tag(b"other secret 0123", "ws3"))):
        assert assign(c, srvck=junk)["server"] == "ws1", junk  # least loaded
    cluster.set_state("ws3", "maint")  # ... unless that server may not keep sessions
    assert assign(c, srvck=tag)["server"] == "ws1"


def test_new_sessions_see_each_other_at_once(cluster):
    """The agent counts its own new sessions in its view before Redis hears of
    them: a burst spreads instead of piling onto one server."""
    c = cluster.clients[0]
    got = [assign(c, upgrade="websocket")["server"] for _ in range(30)]
    assert {s: got.count(s) for s in cluster.servers} == {"ws1": 10, "ws2": 10, "ws3": 10}


def test_weights_scale_load_and_zero_takes_nothing(procs):
    cl = Cluster(procs, {"ws1": 4, "ws2": 1, "ws3": 2, "ws4": 0})
    try:
        c = cl.clients[0]
        # load = conns / weight: ws1 80/4 = 20, ws2 30/1 = 30, ws3 50/2 = 25, ws4 weight 0
        cl.set_load({"ws1": 80, "ws2": 30, "ws3": 50, "ws4": 0})
        assert {assign(c)["server"] for _ in range(15)} == {"ws1"}
        cl.set_load({"ws1": 120, "ws2": 30, "ws3": 50, "ws4": 0})  # 30, 30, 25
        assert {assign(c)["server"] for _ in range(15)} == {"ws3"}
        # equal loads: the HRW order of the record id decides, never weight 0
        cl.set_load({"ws1": 400, "ws2": 100, "ws3": 200, "ws4": 0})
        seen = set()
        for _ in range(40):
            v = assign(c)  # no upgrade arg: nothing counted, the loads stay equal
            assert v["server"] == hrw_first(record_id(v["sid"]), ["ws1", "ws2", "ws3"])
            seen.add(v["server"])
        assert len(seen) > 1
    finally:
        cl.close()


def test_tie_break_identical_on_two_agents(cluster2):
    """A "1" cookie with no record is decided by Redis, and both agents would
    pick the same server: the first in HRW order of its record id."""
    a, b = cluster2.clients
    cluster2.set_load({"ws1": 5, "ws2": 5, "ws3": 5})
    chosen = set()
    for _ in range(30):
        sid = mint_sid(cluster2.secret)
        va = assign(a, sid=sid)
        assert va["action"] == "new" and va["set_cookie"] == 1
        assert record_id(va["sid"]) == record_id(sid)  # a "1" cookie keeps its record id
        cluster2.r.delete(cluster2.rkey(sid))
        vb = assign(b, sid=sid)
        assert vb["action"] == "new" and vb["server"] == va["server"]
        assert va["server"] == hrw_first(record_id(sid), cluster2.servers)
        chosen.add(va["server"])
    assert len(chosen) > 1  # ties are really spread by the hash


# ---- draining, maint, removed -------------------------------------------------

def _pin(cluster, c):
    v = assign(c)
    assert v["action"] == "new"
    wait_record(cluster.r, v["sid"])
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
    # past the deadline the session moves, once, and its cookie says so
    cluster.set_state(srv, "drain:%d" % (now - 1000))
    v = assign(c, sid=sid)
    assert v["action"] == "repin" and v["server"] != srv and v["draining"] == 0
    assert v["set_cookie"] == 1 and record_id(v["sid"]) == record_id(sid)
    assert_cookie_for(cluster, v, v["server"])
    assert cluster.record_is(sid, v["server"])
    again = assign(c, sid=v["sid"])
    assert (again["action"], again["server"], again["set_cookie"]) == ("hit", v["server"], 0)
    # the old cookie (another tab) is re-pinned the same way, by Redis
    old = assign(c, sid=sid)
    assert (old["action"], old["server"]) == ("hit", v["server"])


def test_repin_on_maint_and_removed_server(cluster):
    c = cluster.clients[0]
    sid, srv = _pin(cluster, c)
    cluster.set_state(srv, "maint")
    v = assign(c, sid=sid)
    assert v["action"] == "repin" and v["server"] != srv
    cluster.set_state(srv, None)
    v2 = assign(c, sid=v["sid"])
    assert (v2["action"], v2["server"]) == ("hit", v["server"])
    # a cookie naming a server the backend no longer has (another cluster's tag)
    gone = mint_v2(cluster.secret, "ws-gone", rid=cookie_parts(sid)[1])
    cluster.r.set(cluster.rkey(sid), "ws-gone 1 1 - x")
    v3 = assign(c, sid=gone)
    assert v3["action"] == "repin" and v3["server"] in cluster.servers
    assert cluster.record_is(sid, v3["server"])


def test_repin_goes_to_least_loaded(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 50, "ws3": 50})
    sid, srv = _pin(cluster, c)
    assert srv == "ws1"
    cluster.set_load({"ws1": 0, "ws2": 9, "ws3": 4})
    cluster.set_state("ws1", "maint")
    assert assign(c, sid=sid)["server"] == "ws3"


def test_a_lost_record_is_adopted_on_the_cookies_server(cluster):
    """Redis lost the record (restart, failover): the cookie still says where
    the session lives, and the record is re-created there."""
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 50, "ws3": 50})
    sid, srv = _pin(cluster, c)
    cluster.set_load({"ws1": 90, "ws2": 0, "ws3": 50})  # hash and least-loaded disagree
    cluster.r.delete(cluster.rkey(sid))
    v = assign(c, sid=sid)
    assert (v["action"], v["server"], v["sid"]) == ("hit", srv, sid)
    assert wait_record(cluster.r, sid)["server"] == srv


def test_a_cookie_past_the_ttl_is_not_adopted(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1, "ws3": 1}, ttl="60s")
    try:
        c = cl.clients[0]
        cl.set_load({"ws1": 100, "ws2": 0, "ws3": 100})
        old = mint_v2(cl.secret, "ws1", issued=int(time.time()) - 61)
        v = assign(c, sid=old)
        assert v["action"] == "new" and v["server"] == "ws2"  # Redis decided, not the tag
        assert record_id(v["sid"]) == record_id(old) and v["set_cookie"] == 1
    finally:
        cl.close()


def test_expired_record_of_a_legacy_cookie_keeps_its_id(cluster):
    c = cluster.clients[0]
    sid = mint_sid(cluster.secret)
    v = assign(c, sid=sid)
    assert v["action"] == "new" and record_id(v["sid"]) == record_id(sid)
    assert v["set_cookie"] == 1 and len(v["sid"]) == 56  # reissued in the new format
    assert cluster.record_is(sid, v["server"])


def test_legacy_records_are_carried_over(cluster):
    """A session pinned before the upgrade ("1" cookie, hash record) keeps its
    server and gets a "2" cookie; the old record is renamed."""
    c = cluster.clients[0]
    sid = mint_sid(cluster.secret)
    old_key = harness.rkey("s:" + sid, BE, PREFIX)
    cluster.r.hset(old_key, mapping={"server": "ws3", "created": "1700000000000",
                                     "seen": "1700000000000", "reconnects": "4", "inst": "x"})
    cluster.r.pexpire(old_key, 3600 * 1000)
    v = assign(c, sid=sid)
    assert (v["action"], v["server"], v["set_cookie"]) == ("hit", "ws3", 1)
    assert_cookie_for(cluster, v, "ws3")
    assert not cluster.r.exists(old_key)
    rec = cluster.record(sid)
    assert rec["server"] == "ws3" and rec["created"] == 1700000000000
    assert assign(c, sid=v["sid"])["action"] == "hit"


def test_an_operators_move_wins_over_the_cookie(cluster2):
    a, b = cluster2.clients
    sid, srv = _pin(cluster2, a)
    target = next(s for s in sorted(cluster2.servers) if s != srv)
    # what stickyctl move writes (without its event): the record, flagged 'm'
    rec = cluster2.record(sid)
    cluster2.r.set(cluster2.rkey(sid), "%s %d %d m %s" % (target, rec["created"], rec["seen"],
                                                        rec["inst"]), keepttl=True)
    # the first connection still follows the cookie and learns of the move...
    assert assign(b, sid=sid)["server"] == srv
    # ...the next one goes where the operator said, with a cookie that says so
    v = wait_until(lambda: (lambda v: v if v["server"] == target else None)(
        assign(b, sid=sid)), timeout=5, what="move applied")
    assert v["set_cookie"] == 1 and v["action"] == "hit"
    assert_cookie_for(cluster2, v, target)
    wait_until(lambda: not cluster2.record(sid)["moved"], timeout=5, what="move consumed")
    assert assign(a, sid=v["sid"])["server"] == target


# ---- ids: forged cookies, keys -------------------------------------------------

def test_forged_cookies_are_replaced(cluster):
    c = cluster.clients[0]
    cluster.set_load({"ws1": 0, "ws2": 100, "ws3": 100})
    good = mint_v2(cluster.secret, "ws3")
    tampered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    forged = [
        "ws3",
        tampered,
        good[:-1],
        good + "A",
        mint_v2(b"another cluster's secret", "ws3"),
        mint_sid(b"another cluster's secret"),
        "2" + "A" * 55,
        key_id(cluster.secret, b"user-1"),
        "x" * 300,
        "1" + "/" * 43,
        "../../etc",
    ]
    before = cluster.stats()
    for f in forged:
        v = assign(c, sid=f)
        assert v["action"] == "new", f
        assert v["set_cookie"] == 1 and v["sid"] != f and len(v["sid"]) == 56
        assert v["server"] == "ws1"  # least loaded, never what the cookie names
    time.sleep(0.2)
    for f in forged:
        assert not cluster.r.exists(harness.rkey("s:" + f, BE, PREFIX))
    # the genuine article (minted here from the documented format) is accepted,
    # and its tag - bound by the MAC - names its server
    v = assign(c, sid=good)
    assert (v["action"], v["server"], v["sid"], v["set_cookie"]) == ("hit", "ws3", good, 0)
    time.sleep(0.2)
    assert len(cluster.r.keys("*:s:*")) == 1 + len(forged)
    after = cluster.stats()
    assert after["sid_invalid"] - before["sid_invalid"] == len(forged)
    assert after["sid_minted"] - before["sid_minted"] == len(forged)
    assert after["decision_new"] - before["decision_new"] == len(forged)
    assert after["decision_hit"] - before["decision_hit"] == 1


def test_key_affinity_follows_key_not_cookie(cluster2):
    a, b = cluster2.clients
    kid = key_id(cluster2.secret, b"user-42")
    v1 = assign(a, sid=None, key="user-42")
    assert v1["action"] == "new" and v1["set_cookie"] == 1
    kind, rid, _, _ = cookie_parts(v1["sid"])
    assert kind == 2  # the key's cookie: its rid is the key's MAC
    assert rid == hmac.new(cluster2.secret, b"key\x00user-42", hashlib.sha256).digest()[:16]
    assert cluster2.record_is(kid, v1["server"])
    v2 = assign(b, sid=mint_v2(cluster2.secret, "ws1"), key="user-42")
    assert (v2["action"], v2["server"]) == ("hit", v1["server"])
    # other key types are hashed as their text
    v3 = assign(a, key=ipaddress.ip_address("198.51.100.9"))
    assert cluster2.record(key_id(cluster2.secret, b"198.51.100.9"))["server"] == v3["server"]
    v4 = assign(b, key="198.51.100.9")
    assert (v4["action"], v4["server"]) == ("hit", v3["server"])
    # a NULL key falls back to the cookie
    v5 = assign(a, sid=None, key=None)
    assert cookie_parts(v5["sid"])[0] == 1 and v5["set_cookie"] == 1


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
    wait_until(lambda: record_id(v["sid"])[:10] in cluster.agents[0].log_text(), timeout=5,
               what="log")
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
    """Whatever Redis must arbitrate - a session without a record, a key, a
    cookie whose server went away - racing agents give one answer."""
    a, b = cluster2.clients
    for rnd in range(60):
        # loads that keep changing the least-loaded choice between rounds
        cluster2.r.hset(harness.rkey("conns", BE, PREFIX),
                        mapping={"ws1": rnd % 3, "ws2": (rnd + 1) % 3, "ws3": (rnd + 2) % 3})
        if rnd % 3 == 0:
            sid = mint_sid(cluster2.secret)
            va, vb = _both(a, b, sid=sid)
            rid = record_id(sid)
        elif rnd % 3 == 1:
            key = "race-key-%d" % rnd
            va, vb = _both(a, b, key=key)
            rid = key_id(cluster2.secret, key.encode())
        else:
            cookie = mint_v2(cluster2.secret, "ws-gone")
            va, vb = _both(a, b, sid=cookie)
            rid = record_id(cookie)
        assert sorted([va["action"], vb["action"]]) == ["hit", "new"], (va, vb)
        assert va["server"] == vb["server"]
        assert cluster2.record_is(rid, va["server"])
    assert len(cluster2.r.keys("*:s:*")) == 60


# ---- Redis unavailable ----------------------------------------------------------

def _pipelined(c, sids):
    fids = [c.send_notify([(MSG, {"backend": BE, "sid": s})]) for s in sids]
    return [c.recv_ack(f) for f in fids]


def test_redis_hung_killed_restarted(cluster2):
    a, b = cluster2.clients
    red = cluster2.redis
    weights = {s: w for s, w in cluster2.servers.items()}
    # loads on which least-loaded and the hash disagree, for some sessions at least
    cluster2.set_load({"ws1": 0, "ws2": 40, "ws3": 40})
    pinned = {}
    for _ in range(6):
        v = assign(a)
        pinned[v["sid"]] = v["server"]
    legacy = [mint_sid(cluster2.secret) for _ in range(20)]  # decided only by Redis

    # hung: tagged cookies keep their server at once; the rest get the hash
    os.kill(red.pid, signal.SIGSTOP)
    try:
        # a stuck request would hit the client's 5 s socket timeout and fail
        ra = _pipelined(a, list(pinned) + legacy)
        rb = _pipelined(b, list(pinned) + legacy)
    finally:
        os.kill(red.pid, signal.SIGCONT)
    for (s, srv), va, vb in zip(pinned.items(), ra, rb):
        assert (va["action"], va["server"], va["sid"]) == ("hit", srv, s)
        assert (vb["action"], vb["server"], vb["sid"]) == ("hit", srv, s)
    fallbacks = {}
    for s, va, vb in zip(legacy, ra[len(pinned):], rb[len(pinned):]):
        assert va["action"] == vb["action"] == "fallback"
        assert va["server"] == vb["server"] == hrw_weighted(record_id(s), weights)
        # the cookie names the hashed server: that is where the client stays
        assert va["set_cookie"] == 1 and record_id(va["sid"]) == record_id(s)
        assert_cookie_for(cluster2, va, va["server"])
        fallbacks[va["sid"]] = va["server"]

    # back: every answer given during the stall holds, on both agents
    for s, srv in list(pinned.items()) + list(fallbacks.items()):
        assert assign(b, sid=s)["server"] == srv
        assert assign(a, sid=s)["server"] == srv
    for s, srv in fallbacks.items():  # and Redis learnt them: no late write moved them
        assert wait_record(cluster2.r, s, server=srv)

    # killed: the same, and new sessions still get their least-loaded server
    red.kill()
    for s, srv in pinned.items():
        assert assign(b, sid=s)["server"] == srv
    va = assign(a, sid=None)
    assert va["action"] == "new" and va["set_cookie"] == 1
    vb = assign(b, sid=va["sid"])
    assert (vb["action"], vb["server"], vb["set_cookie"]) == ("hit", va["server"], 0)
    ra = _pipelined(a, legacy)
    rb = _pipelined(b, legacy)
    assert [v["server"] for v in ra] == [v["server"] for v in rb]
    assert all(v["action"] == "fallback" for v in ra + rb)

    # restarted empty: every pin holds, and the records come back from the cookies
    red.start()
    for c in (a, b):
        wait_until(lambda c=c: assign(c, sid=mint_sid(cluster2.secret))["action"] == "new",
                   timeout=15, what="recovery after restart")
    for s, srv in pinned.items():
        assert assign(b, sid=s)["server"] == srv
        assert wait_record(cluster2.r, s, server=srv)
    for ag in cluster2.agents:
        assert ag.alive


def test_no_redis_at_start_then_redis_appears(procs):
    """An agent started before its Redis still places new sessions and keeps
    cookies on their servers, then uses Redis once it answers."""
    import harness
    port = harness.free_port()
    secret_file = procs.workdir / "s.key"
    secret_file.write_text("0123456789abcdef0123\n")
    ag = procs.stickyd(name="early", redis_port=port, backends={BE: {"ws1": 1, "ws2": 3}},
                       secret_file=secret_file, syslog_udp=False,
                       extra={"redis": {"timeout": "50ms"}})
    secret = b"0123456789abcdef0123"
    with SpopClient("127.0.0.1", ag.port) as c:
        c.hello()
        v = assign(c)
        assert v["action"] == "new"
        assert assign(c, sid=v["sid"])["server"] == v["server"]
        old = mint_sid(secret)
        v = assign(c, sid=old)
        assert v["action"] == "fallback"
        assert v["server"] == hrw_weighted(record_id(old), {"ws1": 1, "ws2": 3})
        procs.redis(port=port)
        wait_until(lambda: assign(c, sid=mint_sid(secret))["action"] == "new", timeout=15,
                   what="Redis noticed")


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
        moved = wait_until(lambda: (lambda v: v if v["action"] == "repin" else None)(
            assign(c, sid=sid)), timeout=10, what="agent sees MAINT")
        assert moved["server"] in others
        assert session_record(stack.redis.client(), sid, BE)["server"] == moved["server"]
        lb.haproxy.cmd("set server %s/%s state ready" % (BE, srv))
        wait_until(lambda: assign(c)["server"] == srv, timeout=10, what="back in service")
        assert assign(c, sid=moved["sid"])["server"] == moved["server"]  # the new pin holds


def test_websocket_upgrades_through_haproxy(stack):
    """The whole path: HAProxy sends sticky-assign on the upgrade, applies the
    server and the cookie the agent chose."""
    url = stack.lbs[0].ws_url
    first = harness.ws_open(url)
    sid = first.cookie()
    assert sid is not None and len(sid) == 56 and sid[0] == "2"
    rec = wait_record(stack.redis.client(), sid, BE)
    assert rec["server"] == first.server
    for _ in range(5):
        again = harness.ws_open(url, cookie=sid)
        assert again.server == first.server
        assert again.cookie() is None  # no new cookie for a valid young one
    forged = harness.ws_open(url, cookie="2" + "A" * 55)
    assert forged.cookie() not in (None, "2" + "A" * 55)


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
        # an old cookie still verifies, keeps its pin, and is re-signed
        v = assign(c2, sid=sid)
        assert (v["action"], v["server"], v["set_cookie"]) == ("hit", srv, 1)
        assert record_id(v["sid"]) == record_id(sid)
        kind, rid, issued, tag = cookie_parts(v["sid"])
        assert tag == server_tag(new_secret, srv)
        assert v["sid"] == mint_v2(new_secret, srv, rid=rid, issued=issued)
        # new ids are signed with the new secret
        fresh = assign(c2)
        kind, rid, issued, _ = cookie_parts(fresh["sid"])
        assert fresh["sid"] == mint_v2(new_secret, fresh["server"], rid=rid, issued=issued)
        # a key's record moves to its new id and keeps its server
        kv2 = assign(c2, key="rotating-user")
        assert (kv2["action"], kv2["server"]) == ("hit", kv["server"])
        assert cl.record(key_id(new_secret, b"rotating-user"))["server"] == kv["server"]
        assert not cl.r.exists(cl.rkey(key_id(old_secret, b"rotating-user")))

    # the old secret dropped: old cookies are strangers now
    agent.update_config(session={"secret_file": str(cl.secret_file),
                                 "previous_secret_file": None, "ttl": "1h"})
    agent.restart()
    with cl.connect(agent) as c3:
        wait_until(lambda: assign(c3)["action"] in ("new", "hit"), timeout=10, what="agent up")
        v = assign(c3, sid=sid)
        assert v["action"] == "new" and record_id(v["sid"]) != record_id(sid)
        assert v["set_cookie"] == 1


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
    fresh = assign(c)
    kind, rid, issued, _ = cookie_parts(fresh["sid"])
    assert fresh["sid"] == mint_v2(new_secret, fresh["server"], rid=rid, issued=issued)
    v = assign(c, sid=sid)
    assert (v["action"], v["server"]) == ("hit", srv)
    cl.close()


# ---- requests in flight when their connection or the agent goes away --------------

def test_inflight_decisions_survive_peer_close_and_shutdown(procs):
    cl = Cluster(procs, {"ws1": 1, "ws2": 1}, agents=1, redis_timeout="2s")
    agent, red = cl.agents[0], cl.redis
    os.kill(red.pid, signal.SIGSTOP)  # every arbitration now waits on Redis
    try:
        # 1. HAProxy's connection closes with decisions pending: orphaned
        c = cl.connect(agent)
        for _ in range(10):
            c.send_notify([(MSG, {"backend": BE, "sid": mint_sid(cl.secret)})])
        time.sleep(0.2)  # let the agent read them and send the EVALSHAs
        c.close()
        cl.clients = []
        # 2. the agent keeps serving: a fresh connection gets its (late) answers
        c2 = cl.connect(agent)
        fid = c2.send_notify([(MSG, {"backend": BE, "sid": mint_sid(cl.secret)})])
        assert assign(c2)["action"] == "new"  # a new session never waits
    finally:
        os.kill(red.pid, signal.SIGCONT)
    v = c2.recv_ack(fid)
    assert v["action"] in ("new", "fallback")

    # 3. SIGTERM while decisions wait on a hung Redis: a clean exit
    os.kill(red.pid, signal.SIGSTOP)
    try:
        for _ in range(10):
            c2.send_notify([(MSG, {"backend": BE, "sid": mint_sid(cl.secret)})])
        time.sleep(0.2)
        agent.signal(signal.SIGTERM)
        agent.popen.wait(10)
    finally:
        os.kill(red.pid, signal.SIGCONT)
    c2.close()
    assert agent.popen.returncode == 0
    assert "stickyd exiting (status 0)" in agent.log_text()


def test_late_arbitrations_write_nothing(procs):
    """An arbitration that reaches Redis after the agent answered without it
    (a stall longer than redis.timeout) is refused by the script: the answer
    given - and the cookie - stay the truth, and the pending work is bounded."""
    cl = Cluster(procs, {"ws1": 1, "ws2": 1, "ws3": 1}, redis_timeout="30ms")
    try:
        c = cl.clients[0]
        cl.set_load({"ws1": 0, "ws2": 50, "ws3": 50})
        legacy = [mint_sid(cl.secret) for _ in range(40)]
        cl.r.execute_command("CLIENT", "PAUSE", "600", "WRITE")
        got = _pipelined(c, legacy)
        time.sleep(0.8)
        assert all(v["action"] == "fallback" for v in got)
        for s, v in zip(legacy, got):
            # the record, if any, names the server the client was answered
            rec = wait_record(cl.r, s, server=v["server"])
            assert rec["server"] == v["server"]
    finally:
        cl.close()


def test_the_arbitration_script_refuses_to_run_past_its_deadline(cluster):
    """decide.lua itself: a deadline in Redis time already passed writes nothing."""
    import subprocess
    text = subprocess.run([str(harness.STICKYD), "--dump-assign-script"], check=True,
                          stdout=subprocess.PIPE, timeout=10).stdout.decode()
    rec = cluster.rkey(mint_sid(cluster.secret))
    now_ms = int(cluster.r.time()[0]) * 1000
    # ARGV: deadline, TTL, instance, choice, carried legacy value ('' none), servers
    late = cluster.r.eval(text, 2, rec, rec, now_ms - 1, 3600000, "lbX", "ws1", "", "ws1")
    assert late == ["late"] and not cluster.r.exists(rec)
    ok = cluster.r.eval(text, 2, rec, rec, now_ms + 60000, 3600000, "lbX", "ws1", "", "ws1")
    assert ok == ["new", "ws1"] and cluster.r.get(rec).startswith("ws1 ")
    # no deadline (0: the agent knows no Redis clock yet) runs as well
    assert cluster.r.eval(text, 2, rec, rec, 0, 3600000, "lbX", "ws2", "", "ws1") == [
        "hit", "ws1", 0]
    # a legacy record read by the agent from its own slot (a Redis Cluster) is
    # carried over when there is no record, and a record there wins over it
    other = cluster.rkey(mint_sid(cluster.secret))
    got = cluster.r.eval(text, 2, other, other, 0, 3600000, "lbX", "ws1",
                         "ws2 1700000000000 1700000000000 - lbOld", "ws1", "ws2")
    assert got == ["hit", "ws2", 0] and cluster.r.get(other).startswith("ws2 1700000000000 ")
    assert cluster.r.eval(text, 2, other, other, 0, 3600000, "lbX", "ws1",
                          "ws3 1 1 - lbOld", "ws1", "ws2", "ws3") == ["hit", "ws2", 0]


def test_dump_assign_script_is_the_script_the_agent_runs(cluster):
    """The benchmark feeds `stickyd --dump-assign-script` to redis-benchmark: it
    must be byte-for-byte the script the agent loaded."""
    import subprocess
    import harness
    text = subprocess.run([str(harness.STICKYD), "--dump-assign-script"], check=True,
                          stdout=subprocess.PIPE, timeout=10).stdout
    sha = hashlib.sha1(text).hexdigest()
    assign(cluster.clients[0], sid=mint_sid(cluster.secret))  # an arbitration loads it
    assert cluster.r.script_exists(sha) == [True]
