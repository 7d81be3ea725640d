"""Affinity when Redis is slow, down, empty or saturated, and when the agent dies.

Real processes: two HAProxy 2.6 load balancers, each with its own stickyd, one
redis-server (started with --enable-debug-command local, so DEBUG SLEEP stalls
it for real), three WebSocket servers, real WebSocket clients. Loads are made
unequal on purpose (a fake instance's share in Redis), so that least-loaded,
the hash and the pin name different servers and a lucky tie cannot hide a
wrong answer. Every client that had a server must come back to it: 100 %.
"""
import os
import signal
import subprocess
import threading
import time

import pytest

import harness
from harness import wait_until
from spop_client import SpopClient
from test_assign import mint_sid
from test_e2e_affinity import KP, Cluster, action

BE = "be_ws"


def unequal_loads(c, loads):
    """A fake, long-lived instance holding `loads` connections: every agent's view
    (and every resync, which keeps live instances' shares) includes it."""
    now = int(time.time() * 1000)
    p = c.r.pipeline()
    p.hset(KP + "i:loadgen", mapping=loads)
    for s, n in loads.items():
        p.hincrby(KP + "conns", s, n)
    p.zadd(KP + "insts", {"loadgen": now + 3600 * 1000})
    p.execute()
    time.sleep(1.2)  # one fleet-view refresh on each agent


def returning(c, clients, label):
    """Each (jar, server) reconnects once on each load balancer: 100 % must keep
    their server. Returns the updated jars."""
    out = []
    for i, (jar, srv) in enumerate(clients):
        for lb in (c.lbs[i % 2], c.lbs[(i + 1) % 2]):
            r = harness.ws_open(lb.ws_url, cookie=jar)
            assert r.server == srv, (label, i, lb.name, srv, r, r.headers)
            jar = r.jar(jar)
        out.append((jar, srv))
    return out


def counts_equal_scur(c):
    """conns in Redis == the sum of both HAProxies' scur (the fake instance aside)."""
    def ok():
        want = {}
        for lb in c.lbs:
            for s, n in lb.haproxy.scur(BE).items():
                if n:
                    want[s] = want.get(s, 0) + n
        fake = harness.hash_ints(c.r, KP + "i:loadgen")
        got = {s: n - fake.get(s, 0) for s, n in c.conns().items()}
        got = {s: n for s, n in got.items() if n}
        return got == want
    wait_until(ok, 15, what="conns to equal the HAProxies' scur")


@pytest.fixture
def fleet(procs):
    c = Cluster(procs, instances=2)
    unequal_loads(c, {"ws1": 0, "ws2": 40, "ws3": 80})
    return c


def test_redis_stall_every_client_returns_to_the_server_it_was_answered(fleet, ws_pool):
    c = fleet
    lb1, lb2 = c.lbs
    before = [harness.ws_open(c.lbs[i % 2].ws_url) for i in range(20)]
    pinned = [(r.jar(), r.server) for r in before]
    stall = c.redis.client(socket_timeout=10)
    t = threading.Thread(target=lambda: stall.execute_command("DEBUG", "SLEEP", "1.5"))
    t.start()
    time.sleep(0.05)
    during, held = [], []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.3:       # new clients while Redis sleeps
        lb = c.lbs[i % 2]
        r = harness.ws_open(lb.ws_url)
        assert action(r) == "new", r.headers  # answered at once, from the agent's view
        during.append((r.jar(), r.server))
        i += 1
    held = [ws_pool.open(c.lbs[k % 2].ws_url) for k in range(6)]
    # and returning clients during the stall keep their server
    pinned = returning(c, pinned[:10], "returning, stalled") + pinned[10:]
    t.join()
    assert len(during) >= 20, len(during)
    spread = {s: sum(1 for _, x in during if x == s) for s in ("ws1", "ws2", "ws3")}
    print("\n%d new clients answered during a 1.5 s DEBUG SLEEP; spread %s"
          % (len(during), spread))
    # every one of them, and the clients pinned before, come back where they were
    returning(c, during, "answered during the stall")
    returning(c, pinned, "pinned before the stall")
    # Redis learnt the same: each record names the server its client was answered
    for jar, srv in during:
        sid = jar.split("stickysid=")[1].split(";")[0]
        assert c.record_is(sid, srv)
    assert all(h.echo("x") == "x" for h in held)
    counts_equal_scur(c)


def test_redis_killed_then_restarted_empty_every_pin_holds(procs, ws_pool):
    c = Cluster(procs, instances=2)
    unequal_loads(c, {"ws1": 0, "ws2": 4, "ws3": 8})
    # held open, so the counts move and the sessions spread over the servers
    held = [ws_pool.open(c.lbs[i % 2].ws_url) for i in range(30)]
    clients = [(h.jar(), h.server) for h in held]
    assert len({s for _, s in clients}) == 3, clients

    c.redis.kill()
    clients = returning(c, clients, "Redis killed")
    st = harness.agent_stats(c.lbs[0].stickyd)
    assert st["decision_hit"] >= 30 and st["decision_fallback"] == 0, st

    c.redis.start()  # same port, empty: no persistence, or a failover that lost writes
    wait_until(lambda: c.r.ping(), 10, what="Redis back")
    clients = returning(c, clients, "Redis restarted empty")
    # the records come back from the cookies (adopted, not rebalanced)
    for jar, srv in clients:
        sid = jar.split("stickysid=")[1].split(";")[0]
        assert c.record_is(sid, srv), (sid, srv)
    clients = returning(c, clients, "the reconnect after that")
    unequal_loads(c, {"ws1": 0, "ws2": 4, "ws3": 8})  # Redis forgot the fake share too
    assert all(h.echo("x") == "x" for h in held)
    counts_equal_scur(c)


def test_agent_killed_returning_clients_keep_their_server(fleet):
    """Plain WebSocket clients with the agent down: HAProxy's own cookie (the
    server's tag) keeps them where they were; the agent's answer always wins."""
    c = fleet
    clients = []
    for i in range(12):
        r = harness.ws_open(c.lbs[i % 2].ws_url)
        clients.append((r.jar(), r.server))
    for lb in c.lbs:
        lb.stickyd.kill()
    for lb in c.lbs:
        lb.haproxy.wait_server_status("stickyd_agents", "agent1", "DOWN")
    for i, (jar, srv) in enumerate(clients):
        for lb in c.lbs:
            r = harness.ws_open(lb.ws_url, cookie=jar)
            assert r.server == srv and action(r) is None, (i, srv, r)
    for lb in c.lbs:
        lb.stickyd.start()
        lb.haproxy.wait_server_status("stickyd_agents", "agent1", "UP")
    # the agent is back: an operator's move wins over HAProxy's cookie
    jar, srv = clients[0]
    sid = jar.split("stickysid=")[1].split(";")[0]
    target = next(s for s in ("ws1", "ws2", "ws3") if s != srv)
    p = subprocess.run([str(harness.REPO / "agent" / "stickyctl"), "--redis", "127.0.0.1:%d" % c.redis.port,
                        "move", BE, sid, target], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode == 0, p.stdout
    r = wait_until(lambda: (lambda x: x if x.server == target else None)(
        harness.ws_open(c.lbs[0].ws_url, cookie=jar)), 5, what="the move followed")
    assert action(r) == "hit" and r.cookie("stickysrv") is not None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ,
                    reason="ASan's quarantine keeps freed memory: RSS says nothing there")
def test_memory_stays_flat_during_a_long_stall(procs):
    """Decisions at a high rate while Redis hangs (SIGSTOP): every answer comes
    at once (cookie, view or hash), the work queued for Redis is bounded, and the
    agent's memory stops growing once the bounds are reached."""
    red = procs.redis()
    secret_file = procs.workdir / "s.key"
    harness.write_secret(secret_file)
    secret = secret_file.read_bytes().rstrip(b"\n")
    ag = procs.stickyd(name="agent", redis_port=red.port, backends={BE: ["ws1", "ws2", "ws3"]},
                       secret_file=secret_file, syslog_udp=False,
                       extra={"redis": {"timeout": "20ms"}})
    c = SpopClient("127.0.0.1", ag.port)
    c.hello()
    msg = "sticky-assign"

    def burst(n, k0):
        fids = []
        for k in range(n):
            args = {"backend": BE, "uid": "u-%d" % (k0 + k), "upgrade": "websocket",
                    "sid": mint_sid(secret) if k % 2 else None}
            fids.append(c.send_notify([(msg, args)]))
        return [c.recv_ack(f) for f in fids]
    wait_until(lambda: burst(1, 0)[0]["action"] == "new", 10, what="agent up")
    os.kill(red.pid, signal.SIGSTOP)
    try:
        samples, sent, k = [], 0, 1
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:
            acks = burst(200, k)
            k += 200
            sent += len(acks)
            assert all(a["action"] in ("new", "fallback") for a in acks), acks[:3]
            samples.append((time.monotonic() - t0, rss_kb(ag.pid)))
    finally:
        os.kill(red.pid, signal.SIGCONT)
    st = harness.agent_stats(ag)
    early = [kb for t, kb in samples if 1.5 <= t < 2.5]
    late = [kb for t, kb in samples if t >= 5.0]
    print("\n%d decisions in 6 s of a hung Redis; RSS %d kB at 2 s, %d kB at 6 s (peak %d);"
          " shed %d, ledger dropped %d" % (sent, early[0], late[-1],
                                           max(kb for _, kb in samples), st["redis_shed"],
                                           st["ledger_dropped"]))
    assert sent > 10000, sent
    assert st["redis_shed"] > 0 and st["ledger_dropped"] > 0, st  # the bounds were reached
    assert max(late) - min(early) < 3 * 1024, samples             # ... and held
    assert max(kb for _, kb in samples) < 60 * 1024, samples
    wait_until(lambda: burst(1, 10 ** 7)[0]["action"] == "new", 15, what="recovery")
    c.close()
