"""Issue 4, fleet state, against the real thing: live connection counts across load
balancers, and drain/maint with a deadline (agent/fleet.h).

Every test runs real processes: redis-server, /usr/sbin/haproxy with the reference
config rendered by scripts/render-haproxy.py, agent/stickyd reading HAProxy's stats
socket, WebSocket echo servers (wsserver.py) and WebSocket clients (python3-websockets).

What the tests add to the reference config, and why:
- HAProxy's close lines go to a UDP relay in this process, which forwards them to
  the agent's syslog port. The relay records every line, so a test can replay one
  (duplicate close) or drop one (a lost datagram) - the same UDP path as in
  production, with a lossy hop the test controls.
- Two response headers expose the agent's answer to the client (X-Sticky-Action,
  X-Sticky-Draining), so a test sees hit/new/repin and the draining flag at the
  client instead of in a debug log.
- Fast health checks (inter 200ms) and short agent periods (refresh, resync,
  heartbeat), so everything converges in seconds.
The truth the counts are held to is HAProxy's own `show stat` scur, read here.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import LOOPBACK, wait_until

BE = "be_ws"
PREFIX = "sticky:"
KP = harness.rkey("", BE, PREFIX)
CHANNEL = PREFIX + "events"
STICKYCTL = Path(os.environ.get("STICKYCTL", harness.REPO / "agent" / "stickyctl"))

# Inserted after the reference config's use-server line.
EXPOSE_DECISION = (
    "    # test only: the agent's answer, visible to the client\n"
    "    http-response set-header X-Sticky-Action %[var(txn.sticky.action)]"
    " if { var(txn.sticky.action) -m found }\n"
    "    http-response set-header X-Sticky-Draining %[var(txn.sticky.draining)]"
    " if { var(txn.sticky.draining) -m found }\n")


# ---- the lossy syslog hop ------------------------------------------------------

class UdpRelay:
    """HAProxy -> here -> the agent's UDP syslog port. Records every datagram;
    drops them while `drop` is set. Registered in the ProcGroup so it stops with
    the test (it has the Proc methods the group calls)."""

    def __init__(self, name, target):
        self.name = name
        self.target = target                      # (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.drop = False
        self.lines = []                           # (bytes, forwarded)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def _run(self):
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                fwd = not self.drop
                self.lines.append((data, fwd))
            if fwd:
                out.sendto(data, self.target)
        out.close()

    def closes(self):
        """The close lines seen so far (bytes), in arrival order."""
        with self.lock:
            return [d for d, _ in self.lines if b"stickyd: uid=" in d]

    def send_again(self, line):
        """Replay a line to the agent, exactly as HAProxy sent it."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(line, self.target)

    def stop(self, timeout=5.0):
        self._stop.set()
        self._thread.join(timeout)
        self.sock.close()

    kill = stop

    def log_tail(self, lines=300):
        with self.lock:
            return "\n".join("%s %r" % ("fwd " if f else "DROP", d)
                             for d, f in self.lines[-lines:])


def line_uid(line):
    text = line.decode(errors="replace")
    return text.split("uid=", 1)[1].split()[0]


# ---- one test's cluster -----------------------------------------------------------

class Lb(harness.Lb):
    def __init__(self, name, haproxy, stickyd, relay):
        super().__init__(name, haproxy, stickyd)
        self.relay = relay

    def scur(self):
        """HAProxy's own current sessions per server of BE (zeros included)."""
        return self.haproxy.scur(BE)


class Fleet:
    """One Redis, `servers` WebSocket servers and `instances` load balancers
    (HAProxy + stickyd lb1, lb2, ...), built from the reference config."""

    def __init__(self, procs, instances=1, servers=3, refresh="200ms", resync="500ms",
                 heartbeat="2s", log_level="info", haproxy_first=False, syslog="udp"):
        self.procs = procs
        self.redis = procs.redis()
        self.r = self.redis.client()
        self.ws = procs.ws_servers(servers)
        secret = harness.write_secret(procs.workdir / "fleet-secret.key")
        self.lbs = []
        for i in range(1, instances + 1):
            name = "lb%d" % i
            h = procs.haproxy("haproxy-" + name)
            s = procs.stickyd("stickyd-" + name, start=False, redis_port=self.redis.port,
                              instance=name, secret_file=secret, stats_socket=h.stats_socket,
                              syslog_udp=True, syslog_tcp=(syslog == "tcp"),
                              log_level=log_level,
                              extra={"haproxy": {"refresh": refresh, "resync": resync,
                                                 "heartbeat_ttl": heartbeat},
                                     # these tests watch session events: ask for them
                                     "events": {"sessions": True}})
            relay = procs.add(UdpRelay("relay-" + name, (LOOPBACK, s.syslog_udp_port)))
            # tcp: HAProxy's ring, octet-counted, straight to the agent
            h.render(harness.lb_spec(
                name, self.ws, s, backend=BE,
                syslog=({"transport": "udp", "addr": relay.addr} if syslog == "udp" else
                        {"transport": "tcp", "addr": s.syslog_tcp_addr}),
                check_inter="200ms"))
            h.add_after_use_server(EXPOSE_DECISION)
            # haproxy_first: the agent's first look at HAProxy succeeds; by default
            # it fails and is retried within a second (hapi's backoff)
            for p in ((h, s) if haproxy_first else (s, h)):
                p.start()
            self.lbs.append(Lb(name, h, s, relay))
        for lb in self.lbs:
            lb.wait_up(self.ws, BE, 15)

    @property
    def lb(self):
        return self.lbs[0]

    def conns(self):
        return harness.hash_ints(self.r, KP + "conns")

    def share(self, inst):
        return harness.hash_ints(self.r, KP + "i:" + inst)

    def record(self, sid):
        return harness.session_record(self.r, sid, BE)

    def record_is(self, sid, server):
        return harness.record_is(self.r, sid, server, BE)

    def set_state(self, server, value):
        harness.set_server_state(self.r, server, value, BE)


def positive(d):
    return {k: v for k, v in d.items() if v > 0}


def counts_match(fleet, lbs=None, total=None):
    """conns == the sum of the HAProxies' scur, each share == its HAProxy's scur.
    Returns the conns dict when it holds (and sums to total, if given)."""
    lbs = fleet.lbs if lbs is None else lbs
    want = {}
    for lb in lbs:
        sc = positive(lb.scur())
        if fleet.share(lb.name) != sc:
            return None
        for k, v in sc.items():
            want[k] = want.get(k, 0) + v
    got = fleet.conns()
    if got != want or any(v < 0 for v in got.values()):
        return None
    if total is not None and sum(got.values()) != total:
        return None
    return got


def action(conn):
    return conn.result.headers.get("X-Sticky-Action")


def draining(conn):
    return conn.result.headers.get("X-Sticky-Draining")


def open_on(pool, lb, server, n=1, tries=12):
    """Open new sessions one at a time, all kept open (new sessions go to the least
    loaded server, so they take turns), until n of them are on `server`.
    Returns (the n WsConns on server, the others)."""
    on, others = [], []
    for _ in range(tries):
        c = pool.open(lb.ws_url)
        (on if c.server == server else others).append(c)
        if len(on) == n:
            return on, others
    raise AssertionError("%d of %d new sessions landed on %s" % (len(on), tries, server))


class Watch:
    """`stickyctl watch --json` in the background: the events as an operator sees them."""

    def __init__(self, redis):
        self.events = []
        self.p = subprocess.Popen([str(STICKYCTL), "--redis", "%s:%d" % (LOOPBACK, redis.port),
                                   "watch", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                  text=True)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    def find(self, **want):
        # events name sessions by record id; a test may give the cookie
        if "sid" in want:
            want = dict(want, sid=harness.record_id(want["sid"]))
        return [e for e in list(self.events) if all(e.get(k) == v for k, v in want.items())]

    def wait(self, timeout=5.0, **want):
        return wait_until(lambda: self.find(**want), timeout, what="event %r" % (want,))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


@pytest.fixture
def watch_factory():
    """make(fleet): a stickyctl watch on the fleet's Redis, returned once subscribed
    (before that, events would be missed)."""
    made = []

    def make(fleet):
        if not STICKYCTL.exists():
            pytest.fail("%s is not built: run make" % STICKYCTL)
        w = Watch(fleet.redis)
        made.append(w)
        wait_watching(w, fleet)
        return w
    yield make
    for w in made:
        w.stop()


def wait_watching(watch, fleet):
    """stickyctl watch is subscribed once a published probe reaches it."""
    def seen():
        fleet.r.publish(CHANNEL, b"probe")   # not an event: shown as unknown, or skipped
        return fleet.r.pubsub_numsub(CHANNEL)[0][1] >= 2  # the agent + the watcher
    wait_until(seen, 5, what="stickyctl watch subscribed")


# ---- 1. counts ----------------------------------------------------------------------

def test_counts_follow_opens_and_closes_and_ignore_duplicate_closes(procs, ws_pool):
    """Counts kept by events only: the resync is set far away (30s), so what
    matches HAProxy here was counted by sticky-established (+1) and by the close
    lines (-1), once per unique-id."""
    fleet = Fleet(procs, resync="30s", heartbeat="60s")
    lb = fleet.lb
    conns = [ws_pool.open(lb.ws_url) for _ in range(6)]
    assert {c.server for c in conns} == {"ws1", "ws2", "ws3"}  # least-connections spread
    got = wait_until(lambda: counts_match(fleet, total=6), 5, what="conns == scur (6 open)")
    assert got == {"ws1": 2, "ws2": 2, "ws3": 2}
    assert fleet.r.hlen(KP + "o:lb1") == 6
    st0 = lb.stats()
    assert st0["conn_opened_events"] == 6

    for c in conns[:2]:
        ws_pool.close(c)
    wait_until(lambda: len(lb.relay.closes()) == 2, 5, what="two close lines")
    wait_until(lambda: counts_match(fleet, total=4), 5, what="conns == scur (4 open)")
    assert fleet.r.hlen(KP + "o:lb1") == 4
    st1 = lb.stats()
    assert st1["conn_closed_events"] == 2 and st1["conn_close_duplicates"] == 0

    # The same datagrams again (a syslog relay retrying): counted once only.
    for line in lb.relay.closes():
        lb.relay.send_again(line)
    wait_until(lambda: lb.stats()["conn_close_duplicates"] == 2, 5, what="duplicates seen")
    assert counts_match(fleet, total=4)
    assert lb.stats()["conn_closed_events"] == 2

    # Close everything, replay every close line: nothing goes below zero.
    for c in conns[2:]:
        ws_pool.close(c)
    wait_until(lambda: len(lb.relay.closes()) == 6, 5, what="six close lines")
    wait_until(lambda: counts_match(fleet, total=0) is not None, 5, what="conns empty")
    for line in lb.relay.closes():
        lb.relay.send_again(line)
    wait_until(lambda: lb.stats()["conn_close_duplicates"] == 8, 5, what="all replays seen")
    assert fleet.r.hgetall(KP + "conns") == {}
    assert fleet.r.hgetall(KP + "i:lb1") == {}
    assert fleet.r.hlen(KP + "o:lb1") == 0
    # A forged close for a uid that was never open changes nothing either.
    lb.relay.send_again(b"<134>x: stickyd: uid=never-opened be=be_ws srv=ws1 st=101 sid=-")
    wait_until(lambda: lb.stats()["conn_close_duplicates"] == 9, 5, what="forged close seen")
    assert fleet.r.hgetall(KP + "conns") == {}


# ---- 2. a lost close line ------------------------------------------------------------

def test_lost_close_line_is_corrected_by_the_resync(procs, ws_pool):
    fleet = Fleet(procs, resync="1s", heartbeat="3s")
    lb = fleet.lb
    conns = [ws_pool.open(lb.ws_url) for _ in range(4)]
    wait_until(lambda: counts_match(fleet, total=4), 5, what="conns == scur (4 open)")
    uids_before = set(fleet.r.hkeys(KP + "o:lb1"))

    lb.relay.drop = True                      # the datagram is lost on the way
    victim = conns[0]
    ws_pool.close(victim)
    wait_until(lambda: len(lb.relay.closes()) == 1, 5, what="the close line (dropped)")
    lost = lb.relay.closes()[0]
    lb.relay.drop = False
    assert line_uid(lost) in uids_before
    assert lb.stats()["conn_closed_events"] == 0
    # The agent never heard of this close: only the resync from scur can fix it.
    wait_until(lambda: counts_match(fleet, total=3), 4, what="conns == scur after resync")
    assert line_uid(lost) in fleet.r.hkeys(KP + "o:lb1")   # the event path never saw it
    assert lb.stats()["conn_closed_events"] == 0
    # The surviving connections still close normally afterwards.
    ws_pool.close(conns[1])
    wait_until(lambda: counts_match(fleet, total=2), 4, what="conns == scur (2 open)")

    # The lost uid stays in the open map; the map must still expire some day
    # (its TTL is set when it is created and never extended), or every lost
    # close line would stay in Redis for as long as the agent runs.
    ttl1, t1 = fleet.r.pttl(KP + "o:lb1"), time.monotonic()
    assert 0 < ttl1 <= 86400000
    n = lb.stats()["resyncs"]
    ws_pool.open(lb.ws_url)
    wait_until(lambda: lb.stats()["resyncs"] >= n + 2, 5, what="two resyncs")
    ttl2, t2 = fleet.r.pttl(KP + "o:lb1"), time.monotonic()
    assert 0 < ttl2 <= ttl1 - (t2 - t1) * 1000 + 100, (ttl1, ttl2, t2 - t1)


# ---- 3. instances dying and leaving -----------------------------------------------------

def test_killed_instance_share_expires_terminated_instance_leaves_at_once(procs, ws_pool):
    fleet = Fleet(procs, instances=2, resync="500ms", heartbeat="3s")
    lb1, lb2 = fleet.lbs
    for _ in range(3):
        ws_pool.open(lb1.ws_url)
    for _ in range(2):
        ws_pool.open(lb2.ws_url)
    wait_until(lambda: counts_match(fleet, total=5), 5, what="conns == scur1 + scur2")
    # An upgrade counted by sticky-assign adds to the instance's share but does not
    # list the instance: its first resync (500 ms here) does. The matrix caught the
    # opens finishing before lb2's first resync on 3.3 (2 runs in 5).
    wait_until(lambda: set(fleet.r.zrange(KP + "insts", 0, -1)) == {"lb1", "lb2"}, 3,
               what="both instances listed")

    # stickyctl status --json shows the same numbers as the HAProxies.
    if STICKYCTL.exists():
        def status_ok():
            p = subprocess.run([str(STICKYCTL), "--redis", "127.0.0.1:%d" % fleet.redis.port,
                                "status", BE, "--json"], capture_output=True, text=True,
                               timeout=10)
            assert p.returncode == 0, p.stderr
            doc = json.loads(p.stdout)
            be = next(b for b in doc["backends"] if b["name"] == BE)
            s1, s2 = lb1.scur(), lb2.scur()
            for s in be["servers"]:
                n = s1.get(s["name"], 0) + s2.get(s["name"], 0)
                if s["conns"] != n or s["per_instance"] != {"lb1": s1.get(s["name"], 0),
                                                            "lb2": s2.get(s["name"], 0)}:
                    return None
            return be["total_conns"] == 5
        wait_until(status_ok, 5, what="stickyctl status --json == scur")

    # SIGKILL: no goodbye. The share stays until its heartbeat expires, then lb1's
    # resync drops it and recomputes conns from the live shares alone.
    lb2.stickyd.kill()
    assert fleet.r.pttl(KP + "i:lb2") > 0
    wait_until(lambda: counts_match(fleet, lbs=[lb1], total=3)
               and not fleet.r.exists(KP + "i:lb2")
               and fleet.r.zscore(KP + "insts", "lb2") is None,
               3 + 0.5 + 3, what="the killed instance's share to leave conns")
    assert lb2.scur() and sum(lb2.scur().values()) == 2   # its tunnels are still up

    # Back again: its share is rebuilt from its HAProxy's scur.
    lb2.stickyd.start()
    wait_until(lambda: counts_match(fleet, total=5), 5, what="lb2 rejoined")

    # SIGTERM: fleet_leave removes the share at once, long before its TTL would.
    ttl_ms = fleet.r.pttl(KP + "i:lb2")
    assert ttl_ms > 0
    t0 = time.monotonic()
    lb2.stickyd.signal(signal.SIGTERM)
    wait_until(lambda: counts_match(fleet, lbs=[lb1], total=3)
               and not fleet.r.exists(KP + "i:lb2"), ttl_ms / 1000.0,
               what="the terminated instance's share to leave conns")
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert elapsed_ms < ttl_ms, "gone by expiry, not by fleet_leave"
    assert fleet.r.zscore(KP + "insts", "lb2") is None
    wait_until(lambda: not lb2.stickyd.alive, 5, what="lb2 agent exit")
    assert lb2.stickyd.popen.returncode == 0


# ---- 4..6. drain --------------------------------------------------------------------

def admin_state(h, server):
    """srv_admin_state of `show servers state` for BE/server."""
    lines = h.cmd("show servers state %s" % BE).splitlines()
    header = next(l for l in lines if l.startswith("# be_id"))[2:].split()
    for l in lines:
        f = l.split()
        if len(f) == len(header):
            row = dict(zip(header, f))
            if row["srv_name"] == server:
                return int(row["srv_admin_state"])
    raise KeyError(server)


def test_drain_without_deadline(procs, ws_pool):
    fleet = Fleet(procs, instances=2)
    lb = fleet.lb
    (c2,), _ = open_on(ws_pool, lb, "ws2")
    sid2 = c2.cookie()
    assert sid2 and fleet.record_is(sid2, "ws2")

    subprocess.run(["redis-cli", "-p", str(fleet.redis.port), "HSET", KP + "state", "ws2",
                    "drain:0"], check=True, capture_output=True, timeout=10)
    for each in fleet.lbs:                                 # every agent, its own HAProxy
        each.haproxy.wait_server_status(BE, "ws2", "DRAIN", timeout=3)
    assert admin_state(lb.haproxy, "ws2") & 0x08          # SRV_ADMF_FDRAIN: the CLI's drain

    news = [ws_pool.open(lb.ws_url) for _ in range(6)]
    assert all(c.server != "ws2" and action(c) == "new" for c in news), news
    again = ws_pool.open(lb.ws_url, cookie=sid2)          # a reconnect of the pinned session
    assert (again.server, action(again), draining(again)) == ("ws2", "hit", "1")
    assert c2.echo("still here") == "still here"          # drained, not cut
    assert fleet.record_is(sid2, "ws2")

    fleet.set_state("ws2", None)
    for each in fleet.lbs:
        each.haproxy.wait_server_status(BE, "ws2", "UP", timeout=3)
    assert admin_state(lb.haproxy, "ws2") & 0x18 == 0
    # the agent's own view of the state refreshes on its ledger's period, apart from
    # the poll that just set HAProxy UP: the next reconnect within that period says so
    back = harness.wait_until(
        lambda: (lambda c: c if draining(c) == "0" else None)(
            ws_pool.open(lb.ws_url, cookie=sid2)),
        timeout=2, interval=0.1, what="a reconnect no longer draining")
    assert (back.server, action(back), draining(back)) == ("ws2", "hit", "0")


def test_drain_with_deadline_repins_after_it(procs, ws_pool, watch_factory):
    fleet = Fleet(procs)
    lb = fleet.lb
    watch = watch_factory(fleet)
    (c2,), _ = open_on(ws_pool, lb, "ws2")
    sid2 = c2.cookie()
    watch.wait(kind="session-assigned", sid=sid2, server="ws2")

    deadline = int(time.time() * 1000) + 2500
    fleet.set_state("ws2", "drain:%d" % deadline)
    lb.haproxy.wait_server_status(BE, "ws2", "DRAIN", timeout=3)
    before = ws_pool.open(lb.ws_url, cookie=sid2)
    assert time.time() * 1000 < deadline, "the machine was too slow to test before the deadline"
    assert (before.server, action(before), draining(before)) == ("ws2", "hit", "1")
    # Hits publish nothing: the one event of this session so far is its assignment.
    # Barrier: the agent publishes in order on one connection, so once a later new
    # session's event has arrived, an event of the hit would have arrived too.
    marker = ws_pool.open(lb.ws_url)
    watch.wait(kind="session-assigned", sid=marker.cookie())
    assert [e["kind"] for e in watch.find(sid=sid2)] == ["session-assigned"]

    time.sleep(max(0.0, deadline / 1000.0 - time.time()) + 0.05)   # the deadline itself
    after = ws_pool.open(lb.ws_url, cookie=sid2)
    assert after.server != "ws2" and action(after) == "repin", after
    assert fleet.record_is(sid2, after.server)
    ev = watch.wait(kind="session-repinned", sid=sid2)[0]
    assert (ev["from_server"], ev["server"], ev["reason"]) == ("ws2", after.server,
                                                               "drain-deadline")
    # no close was asked for: the connections opened before stay up, on ws2
    assert not c2.closed and c2.echo("x") == "x"
    assert lb.haproxy.server_status(BE, "ws2") == "DRAIN"
    again = ws_pool.open(lb.ws_url, cookie=sid2)
    assert (again.server, action(again)) == (after.server, "hit")


def test_drain_close_at_deadline_cuts_and_repins(procs, ws_pool):
    """Two load balancers: each agent cuts the tunnels of its own HAProxy."""
    fleet = Fleet(procs, instances=2)
    lb, lb2 = fleet.lbs
    on2, others = open_on(ws_pool, lb, "ws2", n=2)
    sids = [c.cookie() for c in on2]
    via2 = ws_pool.open(lb2.ws_url, cookie=sids[0])     # the same session, other LB
    assert (via2.server, action(via2)) == ("ws2", "hit")
    on2.append(via2)
    wait_until(lambda: counts_match(fleet) and fleet.conns().get("ws2") == 3, 5,
               what="three counted on ws2")

    deadline = int(time.time() * 1000) + 1500
    fleet.set_state("ws2", "drain:%d:close" % deadline)
    for each in fleet.lbs:
        each.haproxy.wait_server_status(BE, "ws2", "DRAIN", timeout=3)
    assert not any(c.closed for c in on2)
    wait_until(lambda: all(c.closed for c in on2), 1.5 + 3,
               what="ws2's WebSockets closed at the deadline")
    assert time.time() * 1000 >= deadline, "closed before the deadline"
    for each in fleet.lbs:
        assert "shutdown sessions server be_ws/ws2" in each.stickyd.log_text()
    assert all(not c.closed and c.echo("y") == "y" for c in others)
    for sid, via in zip(sids, fleet.lbs):
        c = ws_pool.open(via.ws_url, cookie=sid)
        assert c.server != "ws2" and action(c) == "repin", c
    wait_until(lambda: counts_match(fleet) is not None and "ws2" not in fleet.conns()
               and lb.scur()["ws2"] == 0 and lb2.scur()["ws2"] == 0, 5,
               what="ws2 empty in both HAProxies and in Redis")


# ---- 7. a dead WebSocket server ---------------------------------------------------------

def test_killed_server_sessions_repin_to_healthy_servers(procs, ws_pool, watch_factory):
    fleet = Fleet(procs)
    lb = fleet.lb
    watch = watch_factory(fleet)
    on2, others = open_on(ws_pool, lb, "ws2", n=2)
    sids = [c.cookie() for c in on2]
    ws2 = next(w for w in fleet.ws if w.name == "ws2")

    ws2.kill()
    wait_until(lambda: all(c.closed for c in on2), 5, what="clients of ws2 cut")
    lb.haproxy.wait_server_status(BE, "ws2", "DOWN", timeout=5)
    # the agent's view of HAProxy (published in Redis at each resync) says down
    wait_until(lambda: (fleet.r.hget(KP + "servers", "ws2") or "").endswith(" down"), 5,
               what="the agent to see ws2 down")
    for sid in sids:
        c = ws_pool.open(lb.ws_url, cookie=sid)
        assert c.server in ("ws1", "ws3") and action(c) == "repin", c
        assert fleet.record_is(sid, c.server)
        ev = watch.wait(kind="session-repinned", sid=sid)[0]
        assert (ev["from_server"], ev["reason"]) == ("ws2", "down")
    news = [ws_pool.open(lb.ws_url) for _ in range(4)]
    assert all(c.server in ("ws1", "ws3") and action(c) == "new" for c in news), news
    total = len(others) + 2 + 4
    wait_until(lambda: counts_match(fleet, total=total) and "ws2" not in fleet.conns(), 5,
               what="counts without ws2")


# ---- 8. sticky-established corrects a pin ---------------------------------------------

def test_established_corrects_a_pin_haproxy_did_not_follow(procs, ws_pool, watch_factory):
    """Pinned to ws1, but ws1 refuses connections while HAProxy still thinks it is
    UP (its health checks disabled): the agent answers hit ws1, HAProxy's connect
    fails, retries, redispatches to another server, and sticky-established tells
    the agent which server really took the tunnel."""
    fleet = Fleet(procs)
    lb = fleet.lb
    watch = watch_factory(fleet)
    (c1,), others = open_on(ws_pool, lb, "ws1")
    sid = c1.cookie()
    for c in [c1] + others:
        ws_pool.close(c)
    assert lb.haproxy.cmd("disable health %s/ws1" % BE).strip() == ""
    next(w for w in fleet.ws if w.name == "ws1").kill()
    assert lb.haproxy.server_status(BE, "ws1") == "no check"   # in use, not checked

    c = ws_pool.open(lb.ws_url, cookie=sid, timeout=15)
    assert c.server in ("ws2", "ws3"), c
    assert action(c) == "hit"                     # the agent's answer was ws1 ...
    assert fleet.record_is(sid, c.server)  # ... and the pin follows reality
    ev = watch.wait(kind="session-repinned", sid=sid)[0]
    assert (ev["from_server"], ev["server"], ev["reason"]) == ("ws1", c.server, "corrected")
    assert "pin corrected" in lb.stickyd.log_text()
    # the count went to the server that took it
    wait_until(lambda: counts_match(fleet, total=1) == {c.server: 1}, 5,
               what="counted on the real server")
    # the 101 carried a cookie that names the real server: the client goes there
    fixed = c.cookie()
    assert fixed is not None and harness.record_id(fixed) == harness.record_id(sid)
    nxt = ws_pool.open(lb.ws_url, cookie=fixed)
    assert (nxt.server, action(nxt)) == (c.server, "hit")


# ---- 9. stickyctl ------------------------------------------------------------------

def test_stickyctl_drain_is_applied_through_the_change_event(procs, ws_pool):
    """The agent refreshes its HAProxy view only every 30 minutes here, so a state
    reaching HAProxy within seconds came through the pub/sub change event."""
    if not STICKYCTL.exists():
        pytest.fail("%s is not built: run make" % STICKYCTL)
    fleet = Fleet(procs, refresh="30m", resync="30s", heartbeat="60s", haproxy_first=True)
    lb = fleet.lb
    # the agent's one look at HAProxy, published by its first resync
    wait_until(lambda: fleet.r.hlen(KP + "servers") == 3, 5, what="the agent's view")
    conns = [ws_pool.open(lb.ws_url) for _ in range(3)]
    assert {c.server for c in conns} == {"ws1", "ws2", "ws3"}

    def ctl(*args):
        p = subprocess.run([str(STICKYCTL), "--redis", "127.0.0.1:%d" % fleet.redis.port]
                           + list(args), capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    received = lb.stats()["events_received"]
    out = ctl("drain", BE, "ws2", "--deadline", "10m", "--close-at-deadline")
    assert "NOT published" not in out
    lb.haproxy.wait_server_status(BE, "ws2", "DRAIN", timeout=3)
    assert lb.stats()["events_received"] > received
    assert fleet.r.hget(KP + "state", "ws2").endswith(":close")
    assert all(not c.closed for c in conns)      # the deadline is 10 minutes away

    ctl("undrain", BE, "ws2")
    lb.haproxy.wait_server_status(BE, "ws2", "UP", timeout=3)
    ctl("maint", BE, "ws3")
    lb.haproxy.wait_server_status(BE, "ws3", "MAINT", timeout=3)
    ctl("ready", BE, "ws3")
    lb.haproxy.wait_server_status(BE, "ws3", "UP", timeout=3)

    def status_ok():
        doc = json.loads(ctl("status", BE, "--json"))
        be = next(b for b in doc["backends"] if b["name"] == BE)
        sc = lb.scur()
        return all(s["conns"] == sc.get(s["name"], 0) for s in be["servers"]) and \
            be["total_conns"] == sum(sc.values()) == 3
    wait_until(status_ok, 5, what="stickyctl status --json == HAProxy scur")


def test_tcp_backend_of_the_agents_is_not_counted(procs):
    """The reference config's stickyd_agents backend (mode tcp, spop on 3.1+: HAProxy's SPOE
    connections to the agent) is in the agent's HAProxy view, but carries no
    WebSocket: no fleet key of it in Redis, no entry in stickyctl status, only
    be_ws, through resyncs and through the goodbye at SIGTERM."""
    if not STICKYCTL.exists():
        pytest.fail("%s is not built: run make" % STICKYCTL)
    fleet = Fleet(procs)
    lb = fleet.lb
    modes = {(row["pxname"], row["svname"]): row["mode"] for row in lb.haproxy.show_stat()}
    # The case under test is real: a non-http backend in the view. 3.1+ turns a
    # "mode tcp" backend used by an SPOE engine into "mode spop" (README, versions).
    assert modes[("stickyd_agents", "agent1")] in ("tcp", "spop")
    assert modes[(BE, "ws1")] == "http"
    agents_keys = "%s{stickyd_agents}:*" % PREFIX

    # Two full resync passes after a reset of be_ws's servers key: each pass would
    # have written the agents backend's keys before the reappearance seen here.
    for _ in range(2):
        fleet.r.delete(KP + "servers")
        wait_until(lambda: fleet.r.hlen(KP + "servers") == 3, 5, what="be_ws resynced")
    assert list(fleet.r.scan_iter(agents_keys)) == []

    p = subprocess.run([str(STICKYCTL), "--redis", "127.0.0.1:%d" % fleet.redis.port, "status",
                        "--json"], capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert [b["name"] for b in json.loads(p.stdout)["backends"]] == [BE]

    lb.stickyd.stop()
    assert fleet.r.zscore(KP + "insts", "lb1") is None   # the goodbye ran...
    assert list(fleet.r.scan_iter(agents_keys)) == []   # ...for be_ws only


def test_agent_started_before_haproxy_fills_its_view_soon(procs):
    """The agent starts before its HAProxy (Fleet's default order) and refreshes its
    view only every 30 minutes: the failed first look is retried within a second
    (100 ms doubling up to 1 s), not 30 minutes later, so be_ws's servers reach
    Redis as soon as HAProxy answers."""
    fleet = Fleet(procs, refresh="30m")
    lb = fleet.lb
    wait_until(lambda: fleet.r.hlen(KP + "servers") == 3, 10, what="the agent's view")
    log = lb.stickyd.log_text()
    assert "(logged once until it changes)" in log      # the first look failed...
    assert "runtime API answering again" in log         # ...and a retry succeeded


# ---- restarts and HTTP/2 -----------------------------------------------------------

def test_state_cleared_while_the_agent_was_down_is_applied_after_restart(procs):
    """Drained through Redis, the agent crashes, the operator undrains meanwhile:
    the restarted agent must take its HAProxy out of DRAIN (it cannot remember
    having drained it, but the cluster state is the authority)."""
    fleet = Fleet(procs)
    lb = fleet.lb
    fleet.set_state("ws2", "drain:0")
    lb.haproxy.wait_server_status(BE, "ws2", "DRAIN", timeout=3)
    lb.stickyd.kill()
    fleet.set_state("ws2", None)
    assert fleet.r.hgetall(KP + "a:lb1") == {"ws2": "drain"}   # what it set survives it
    lb.stickyd.start()
    lb.haproxy.wait_server_status(BE, "ws2", "UP", timeout=3)
    wait_until(lambda: fleet.r.hgetall(KP + "a:lb1") == {}, 3, what="the record cleared")

    # An operator's own drain on the HAProxy CLI is not the agent's to undo.
    assert lb.haproxy.cmd("set server %s/ws3 state drain" % BE).strip() == ""
    lb.haproxy.wait_server_status(BE, "ws3", "DRAIN", timeout=3)
    n = lb.stats()["resyncs"]
    wait_until(lambda: lb.stats()["resyncs"] >= n + 2, 5, what="two resyncs (and refreshes)")
    assert lb.haproxy.server_status(BE, "ws3") == "DRAIN"


def test_http2_websocket_is_counted_open_and_closed(procs):
    """RFC 8441: HAProxy's h2 mux turns the extended CONNECT into the same upgrade,
    so the open (sticky-established on 101) and the close line (st=101) pair up
    exactly as over HTTP/1.1. The resync is far away: the events alone count."""
    fleet = Fleet(procs, resync="30s", heartbeat="60s")
    lb = fleet.lb
    res = harness.h2_ws_open(lb.haproxy.port)
    assert res.status == 200 and res.server in ("ws1", "ws2", "ws3"), res
    wait_until(lambda: len(lb.relay.closes()) == 1, 5, what="the h2 stream's close line")
    assert b" st=101 " in lb.relay.closes()[0]
    st = wait_until(lambda: (lambda x: x if x["conn_closed_events"] == 1 else None)(lb.stats()),
                    5, what="the close counted")
    assert st["conn_opened_events"] == 1
    assert fleet.r.hgetall(KP + "conns") == {} and fleet.r.hlen(KP + "o:lb1") == 0


def test_counts_rebuilt_after_redis_loses_everything(procs, ws_pool):
    """Redis restarted empty (no persistence): the next resyncs rebuild every
    share and conns from HAProxy's scur; closes of tunnels whose open was lost
    are ignored (no negative count) and the resync keeps counts right."""
    fleet = Fleet(procs, resync="500ms", heartbeat="2s")
    lb = fleet.lb
    conns = [ws_pool.open(lb.ws_url) for _ in range(4)]
    wait_until(lambda: counts_match(fleet, total=4), 5, what="conns == scur (4 open)")

    fleet.redis.kill()
    fleet.redis.start()
    wait_until(lambda: counts_match(fleet, total=4), 5, what="counts rebuilt from scur")
    assert fleet.r.hlen(KP + "o:lb1") == 0        # the opens before the restart are gone
    st = lb.stats()
    ws_pool.close(conns[0])
    wait_until(lambda: lb.stats()["conn_close_duplicates"] == st["conn_close_duplicates"] + 1,
               5, what="the close of a forgotten open")
    wait_until(lambda: counts_match(fleet, total=3), 5, what="conns == scur (3 open)")
    # and new tunnels are counted by events again
    ws_pool.open(lb.ws_url)
    wait_until(lambda: counts_match(fleet, total=4) and fleet.r.hlen(KP + "o:lb1") == 1, 5,
               what="a new open counted")


def test_close_lines_over_tcp_ring(procs, ws_pool):
    """The ring transport (render --syslog-tcp): close lines reach the agent over
    TCP, octet-counted, and are counted exactly like the UDP ones."""
    fleet = Fleet(procs, resync="30s", heartbeat="60s", syslog="tcp")
    lb = fleet.lb
    conns = [ws_pool.open(lb.ws_url) for _ in range(3)]
    wait_until(lambda: counts_match(fleet, total=3), 5, what="conns == scur (3 open)")
    for c in conns[:2]:
        ws_pool.close(c)
    wait_until(lambda: counts_match(fleet, total=1), 5, what="conns == scur (1 open)")
    st = lb.stats()
    assert (st["conn_opened_events"], st["conn_closed_events"]) == (3, 2)


def test_maint_repins_pinned_sessions_with_reason(procs, ws_pool, watch_factory):
    fleet = Fleet(procs)
    lb = fleet.lb
    watch = watch_factory(fleet)
    (c3,), _ = open_on(ws_pool, lb, "ws3")
    sid = c3.cookie()
    fleet.set_state("ws3", "maint")
    lb.haproxy.wait_server_status(BE, "ws3", "MAINT", timeout=3)
    assert c3.echo("z") == "z"               # maint stops new traffic, not the tunnels
    c = ws_pool.open(lb.ws_url, cookie=sid)
    assert c.server in ("ws1", "ws2") and action(c) == "repin", c
    ev = watch.wait(kind="session-repinned", sid=sid)[0]
    assert (ev["from_server"], ev["server"], ev["reason"]) == ("ws3", c.server, "maint")
    fleet.set_state("ws3", None)
    lb.haproxy.wait_server_status(BE, "ws3", "UP", timeout=3)


def test_heartbeat_shorter_than_two_resyncs_is_refused(tmp_path):
    """With heartbeat_ttl <= resync a live instance's heartbeat expires between
    its own resyncs, and the others drop its share from conns over and over
    (seen: 2 instances, resync 2s, heartbeat 1s: conns wrong in 29 of 50 samples).
    The configuration is refused instead, with the position of the key."""
    for body, where in (('{"haproxy": {"resync": "2s", "heartbeat_ttl": "3s"}}', ":1:"),
                        ('{"haproxy": {"resync": "20s"}}', ":1:")):
        cfg = tmp_path / "c.json"
        cfg.write_text(body + "\n")
        p = subprocess.run([str(harness.STICKYD), "--check-config", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 1, (body, p.stdout, p.stderr)
        assert "must be at least twice haproxy.resync" in p.stderr and where in p.stderr
    cfg.write_text('{"haproxy": {"resync": "2s", "heartbeat_ttl": "4s"}}\n')
    p = subprocess.run([str(harness.STICKYD), "--check-config", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr


def test_sigterm_exits_even_when_redis_is_gone(procs, ws_pool):
    """The goodbye cannot be delivered: SIGTERM still ends the agent promptly
    (the goodbye fails at its store deadline, the drain timer bounds the rest)."""
    fleet = Fleet(procs)
    lb = fleet.lb
    ws_pool.open(lb.ws_url)
    wait_until(lambda: counts_match(fleet, total=1), 5, what="one counted")
    fleet.redis.kill()
    lb.stickyd.signal(signal.SIGTERM)
    wait_until(lambda: not lb.stickyd.alive, 5, what="the agent to exit")
    assert lb.stickyd.popen.returncode == 0
