"""Slow start, fleet-wide connection caps and reconnect storms (issue 13), end to end:
real HAProxy 2.6, real Redis, two load balancers (each an HAProxy with its own
stickyd), real WebSocket servers and clients.

1. A fourth server added under load ramps: its live count, relative to a full
   weight peer's, follows the configured ramp (Redis time from the moment the
   agents recorded it usable) within +-10 %, and no existing session moves.
2. A server killed with 300 clients: their reconnects land on the others within
   every server's fleet-wide cap (one from stickyd's limits, one from HAProxy's
   own maxconn on the server line), none is refused while there is room, and under
   policy affinity no pinned client moves, even onto a server at its cap.
3. Every server full: a new client gets a clean 503 at once (no hang) and is
   served once room returns.
"""
import asyncio
import json
import subprocess
import time

import websockets

import harness
from harness import lb_spec, wait_until
from test_e2e_affinity import (AGENT_TIMING, BE, KP, Cluster, Lb, action, by_server,
                               server_live)


class LimitsCluster(Cluster):
    """The e2e cluster, its agents configured with `limits` (agent/config.c) and its
    HAProxy servers optionally with their own maxconn (server name -> n)."""

    def __init__(self, procs, limits, instances=2, servers=3, haproxy_maxconn=None,
                 backend_spec=None):
        self.limits = limits
        self.haproxy_maxconn = haproxy_maxconn or {}
        self.backend_spec = backend_spec or {}
        super().__init__(procs, instances=instances, servers=servers)

    def _lb(self, name):
        h = self.procs.haproxy("haproxy-" + name)
        extra = dict(AGENT_TIMING)
        # a storm's arbitrations on a shared machine: Redis gets 200 ms, not 20 (caps
        # rest on the fleet view, which an unanswered arbitration's fallback has only
        # as of its last refresh)
        extra["redis"] = {"timeout": "200ms"}
        extra["limits"] = self.limits
        extra["metrics"] = {"listen": "%s:%d" % (harness.LOOPBACK, harness.free_port())}
        s = self.procs.stickyd("stickyd-" + name, start=False, redis_port=self.redis.port,
                               instance=name, secret_file=self.secret_file,
                               stats_socket=h.stats_socket, extra=extra)
        spec = lb_spec(name, self.ws, s, {"transport": "udp", "addr": s.syslog_udp_addr}, BE)
        spec["backends"][0].update(self.backend_spec)
        for srv in spec["backends"][0]["servers"]:
            if srv["name"] in self.haproxy_maxconn:
                srv["maxconn"] = self.haproxy_maxconn[srv["name"]]
        lb = Lb(name, h, s, spec)
        self.render(lb)
        s.start()
        h.start()
        return lb

    def redis_ms(self):
        sec, usec = self.r.time()
        return sec * 1000 + usec // 1000


def stickyctl(agent, *args):
    """agent/stickyctl with this agent's config (its Redis, its limits)."""
    p = subprocess.run([str(harness.REPO / "agent" / "stickyctl"), "--config",
                        str(agent.config_path)] + list(args), capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


def status_rows(agent):
    """stickyctl status's table rows: {server: (state text, conns text)}."""
    rows = {}
    for line in stickyctl(agent, "status", BE).splitlines()[2:]:
        cells = [x for x in line.split("  ") if x.strip()]
        rows[cells[0].strip()] = (cells[1].strip(), cells[2].strip())
    return rows


def metric(agent, name, server):
    """One per-server gauge from the agent's /metrics."""
    status, _, body = harness.http_get("http://%s/metrics" % agent.config["metrics"]["listen"])
    assert status == 200
    want = 'stickyd_%s{backend="%s",server="%s"} ' % (name, BE, server)
    for line in body.decode().splitlines():
        if line.startswith(want):
            return int(line[len(want):])
    raise AssertionError("no %s in /metrics" % want)


def open_jars(pool, urls_jars, timeout=15.0):
    """Open one WebSocket per (url, cookie) concurrently, all at once (a reconnect
    storm). Returns a list of WsConn or the exception each raised."""
    async def go():
        return await asyncio.gather(*[harness._ws_connect(u, j, None, timeout)
                                      for u, j in urls_jars], return_exceptions=True)
    out = []
    for res in pool._run(go(), timeout=timeout + 10):
        if isinstance(res, BaseException):
            out.append(res)
            continue
        ws, r = res
        c = harness.WsConn(pool, ws, r)
        pool._conns.append(c)
        out.append(c)
    return out


def status_of(exc):
    """The HTTP status a refused handshake got (websockets' InvalidStatusCode)."""
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None),
                                                        "status_code", None)


def live(ws_servers):
    return {w.name: server_live(w) for w in ws_servers}


# ---- 1. slow start ----------------------------------------------------------------

RAMP_S = 8.0


def test_a_server_added_under_load_ramps_and_nothing_else_moves(procs, ws_pool):
    c = LimitsCluster(procs, {BE: {"slowstart": "%ds" % RAMP_S}})
    lbs = c.lbs
    base = []
    for i in range(15):  # 150 clients over the two load balancers, 10 at a time
        base += ws_pool.open_many(lbs[i % 2].ws_url, 10)
    seen = by_server(base)
    wait_until(lambda: live(c.ws) == seen and c.conns() == seen, 10,
               what="counts to settle at %s" % seen)
    print("\nbefore: %s" % seen)
    pins = {x.cookie(): x.server for x in base}

    # slow start saw the first three servers come up with the cluster: they ramped
    # together (the same share each, so no effect); let that ramp end first
    first = max(int(c.r.hget(KP + "state", w.name).split(":")[1]) for w in c.ws)
    wait_until(lambda: c.redis_ms() > first + RAMP_S * 1000, RAMP_S + 5,
               what="the first servers' ramp to end")
    ws4 = procs.ws_server("ws4")
    for lb in lbs:
        for cmd in ("add server %s/ws4 %s weight 100 check inter 500ms rise 1 fall 2"
                    % (BE, ws4.addr), "enable health %s/ws4" % BE, "enable server %s/ws4" % BE):
            out = lb.haproxy.cmd(cmd).strip()
            assert out in ("", "New server registered."), (cmd, out)
    for lb in lbs:
        lb.haproxy.wait_server_status(BE, "ws4", "UP")
    # the first agent to see it up recorded the moment, on Redis time
    wait_until(lambda: (c.r.hget(KP + "state", "ws4") or "").startswith("ready:")
               and c.r.hget(KP + "state", "ws4") != "ready:0", 10,
               what="the ramp's start recorded in Redis")
    since = int(c.r.hget(KP + "state", "ws4").split(":")[1])
    for ws in c.ws:  # the old servers: recorded when slow start first saw them, long done
        v = c.r.hget(KP + "state", ws.name)
        assert v.startswith("ready:") and int(v.split(":")[1]) < since, (ws.name, v)

    # new clients at a steady pace over the ramp and a little after: 4 every 200 ms
    samples = []  # (seconds into the ramp, ws4's live count / a full-weight peer's)
    new = []
    t_end = since + (RAMP_S + 1.5) * 1000
    k = 0
    while c.redis_ms() < t_end:
        tick = time.monotonic()
        got = ws_pool.open_many(lbs[k % 2].ws_url, 4)
        k += 1
        assert all(action(x.result) == "new" for x in got), [x.result.headers for x in got]
        new += got
        if k == 20:  # 4 s in: the operator sees the ramp
            rows = status_rows(lbs[0].stickyd)
            print("stickyctl status: %s" % rows)
            pct = int(rows["ws4"][0].split("slow start ")[1].split(" %")[0])
            t = (c.redis_ms() - since) / RAMP_S / 10
            assert rows["ws4"][0].startswith("ready, slow start") and abs(pct - t) <= 10, rows
            assert rows["ws1"][0] == "ready", rows
            js = json.loads(stickyctl(lbs[1].stickyd, "status", BE, "--json"))
            w4 = [x for x in js["backends"][0]["servers"] if x["name"] == "ws4"][0]
            assert w4["ramp_since_ms"] == since and w4["slowstart_ms"] == RAMP_S * 1000, w4
            assert 0 < w4["ramp_pct"] < 100, w4
            m4 = metric(lbs[0].stickyd, "server_slowstart_percent", "ws4")
            assert abs(m4 - pct) <= 5 and metric(lbs[0].stickyd, "server_slowstart_percent",
                                                  "ws1") == 100, m4
        if k % 5 == 0:  # every second: the servers' own counts, on Redis' clock
            now = c.redis_ms()
            n = live(c.ws + [ws4])
            peers = sum(n[w.name] for w in c.ws) / len(c.ws)
            samples.append(((now - since) / 1000.0, n["ws4"] / peers, dict(n), len(new)))
        time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))
    print("new: %s" % by_server(new))
    bad = []
    ramp = lambda x: min(1.0, max(0.0, x / RAMP_S))
    peers = lambda m: sum(m[w.name] for w in c.ws) / len(c.ws)
    for i, (t, ratio, n, made) in enumerate(samples):
        # the count a decision saw is up to one view old (batch + refresh): judge the
        # sample against the ramp anywhere in the last 250 ms
        print("t=%5.2fs ws4/peer %.3f ramp %.3f %s" % (t, ratio, ramp(t), n))
        if not (ramp(t - 0.25) - 0.10 <= ratio <= ramp(t) + 0.10):
            bad.append(("load", t, ratio, ramp(t)))
        # its share of the new sessions in each two-second bucket (40 sessions): what
        # holding that ramped share of the load takes (ramp x a peer's count, then and
        # now), +-10 %
        if i >= 2 and i % 2 == 0:
            pt, _, pn, pmade = samples[i - 2]
            expect = (ramp(t) * peers(n) - ramp(pt) * peers(pn)) / (made - pmade)
            share = (n["ws4"] - pn["ws4"]) / (made - pmade)
            print("  %.1f-%.1fs: new sessions to ws4 %.2f, the ramp says %.2f"
                  % (pt, t, share, expect))
            if abs(share - expect) > 0.10:
                bad.append(("new", t, share, expect))
    assert len(samples) >= int(RAMP_S), samples
    assert not bad, bad
    # nothing else moved: every old tunnel is alive where it was, and reconnecting
    # with its cookie lands there again (a hit, not a repin)
    assert all(x.server == pins[x.cookie()] for x in base)
    assert all(x.echo("still") == "still" for x in base[::10])
    for x in base[::15]:
        again = harness.ws_open(lbs[1].ws_url, cookie=x.jar())
        assert again.server == x.server and action(again) == "hit", (x.server, again)


# ---- 2. a server dies with 300 clients -----------------------------------------------

def test_a_dead_servers_300_clients_land_within_every_cap_and_pins_stay(procs, ws_pool):
    # caps: ws1 and ws2 from the agents' limits, ws3 from HAProxy's own server maxconn
    caps = {"ws1": 100, "ws2": 120, "ws3": 200}
    c = LimitsCluster(procs, {BE: {"policy": "affinity", "slack": 20,
                                   "servers": {"ws1": {"maxconn": 100},
                                               "ws2": {"maxconn": 120}}}},
                      servers=4, haproxy_maxconn={"ws3": 200})
    lbs = c.lbs
    ws4 = c.ws[3]
    # ws4 takes 300 clients alone (the others in maintenance), then the others 20 each
    for w in c.ws[:3]:
        harness.set_server_state(c.r, w.name, "maint")
    for lb in lbs:
        for w in c.ws[:3]:
            lb.haproxy.wait_server_status(BE, w.name, "MAINT", exact=False)
    doomed = []
    for i in range(30):
        doomed += ws_pool.open_many(lbs[i % 2].ws_url, 10)
    assert by_server(doomed) == {"ws4": 300}
    for w in c.ws[:3]:
        harness.set_server_state(c.r, w.name, None)
    for lb in lbs:
        for w in c.ws[:3]:
            lb.haproxy.wait_server_status(BE, w.name, "UP")
    wait_until(lambda: c.conns().get("ws4") == 300, 10, what="ws4's 300 counted")
    pinned = []
    for i in range(6):
        pinned += ws_pool.open_many(lbs[i % 2].ws_url, 10)
    before = by_server(pinned)  # least loaded: about 20 each (two agents, one view apart)
    assert set(before) == set(caps) and all(15 <= v <= 25 for v in before.values()), before
    wait_until(lambda: c.conns() == dict(before, ws4=300), 10, what="counts to settle")

    ws4.kill()
    for lb in lbs:
        lb.haproxy.wait_server_status(BE, "ws4", "DOWN", exact=False)
    time.sleep(0.5)  # both agents' views have it down (refresh 200 ms)
    t0 = time.monotonic()
    storm = open_jars(ws_pool, [(lbs[i % 2].ws_url, x.jar()) for i, x in enumerate(doomed)])
    t_storm = time.monotonic() - t0
    refused = [e for e in storm if isinstance(e, BaseException)]
    assert not refused, refused[:5]  # room for 360: none refused
    got = by_server(storm)
    print("\n300 reconnects in %.2fs: %s" % (t_storm, got))
    assert sum(got.values()) == 300 and "ws4" not in got
    # repinned by Redis' arbitration; an arbitration Redis could not answer within
    # redis.timeout (20 ms here) in the storm falls back to the hash, caps still kept
    acts = [action(x.result) for x in storm]
    print("actions: %s" % {a: acts.count(a) for a in set(acts)})
    assert set(acts) <= {"repin", "fallback"} and acts.count("repin") >= 250, acts
    wait_until(lambda: live(c.ws[:3]) == {k: got[k] + before[k] for k in caps}, 10,
               what="the servers' own counts")
    n = live(c.ws[:3])
    print("live: %s caps %s" % (n, caps))
    # Within every cap. Two agents decide between two views of each other's opens:
    # each uses only its share of a server's room, minus what the others may still be
    # placing (agent/affinity.h), which keeps them together at the cap; what that
    # estimate can miss is one view window's worth of the other agent's opens near
    # the cap (seen: 0 in most runs, 1 in about one in ten, with this storm of 300 in
    # 0.15 s; HAProxy's own maxconn is the per-balancer hard stop).
    for k, cap in caps.items():
        assert n[k] <= cap + 2, (k, n, caps)
    # spread by remaining room, never poured onto the least loaded: the most room
    # took the most, and every survivor took some
    room = {k: caps[k] - before[k] for k in caps}
    print("room before the storm %s" % room)
    assert all(got[k] > 0 for k in caps), got
    assert got["ws3"] == max(got.values()), (got, room)
    # the pinned 60 never moved
    assert all(x.echo("here") == "here" for x in pinned)
    assert all(x.server in caps for x in pinned)
    # fill ws1 (the fewest live) to its cap with new clients: exactly to it, the rest
    # elsewhere
    extra = []
    while live(c.ws[:1])["ws1"] < caps["ws1"] and len(extra) < 80:
        extra.append(ws_pool.open(lbs[len(extra) % 2].ws_url))
        wait_until(lambda: sum(c.conns().values()) == 360 + len(extra), 5, what="counted")
        time.sleep(0.25)  # both agents' views have it (refresh 200 ms)
        n = live(c.ws[:3])
        assert all(n[k] <= caps[k] for k in caps), (n, by_server(extra))
    assert all(action(x.result) == "new" for x in extra)
    n = live(c.ws[:3])
    assert n["ws1"] == caps["ws1"], (n, by_server(extra))
    # the operator sees every cap, from the config (ws1, ws2) or from HAProxy (ws3)
    rows = status_rows(lbs[0].stickyd)
    print("stickyctl status: %s" % rows)
    assert {k: rows[k][1] for k in caps} == {k: "%d/%d" % (n[k], caps[k]) for k in caps}, rows
    assert {k: metric(lbs[1].stickyd, "server_maxconn", k) for k in caps} == caps
    # affinity: a pinned client of the full ws1 reconnects onto ws1 all the same (up to
    # the cap + 20 %), while a new client goes elsewhere
    for x in [p for p in pinned if p.server == "ws1"][:5]:
        jar = x.jar()
        x.close()
        wait_until(lambda: c.conns()["ws1"] < caps["ws1"], 5, what="the close counted")
        extra.append(ws_pool.open(lbs[0].ws_url, cookie=jar))
        assert extra[-1].server == "ws1" and action(extra[-1].result) == "hit", extra[-1].result
    wait_until(lambda: c.conns()["ws1"] == caps["ws1"], 5, what="ws1 full again")
    time.sleep(0.5)  # in both agents' views
    fresh = harness.ws_open(lbs[1].ws_url)
    assert fresh.server != "ws1" and action(fresh) == "new", fresh


# ---- 3. everything full -----------------------------------------------------------------

def test_all_full_gets_a_clean_503_and_is_served_when_room_returns(procs, ws_pool):
    c = LimitsCluster(procs, {BE: {"maxconn": 20}}, servers=2)
    lbs = c.lbs
    held = []
    for i in range(4):
        held += ws_pool.open_many(lbs[i % 2].ws_url, 10)
    assert by_server(held) == {"ws1": 20, "ws2": 20}, by_server(held)
    wait_until(lambda: c.conns() == {"ws1": 20, "ws2": 20}, 10, what="counts")
    time.sleep(0.5)  # and both agents' views (refreshed every 200 ms when idle)
    for i in range(6):
        t0 = time.monotonic()
        try:
            harness.ws_open(lbs[i % 2].ws_url, timeout=5)
            raise AssertionError("a client got in past every cap")
        except websockets.exceptions.InvalidStatusCode as e:
            assert status_of(e) == 503, e
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a timeout
    assert live(c.ws) == {"ws1": 20, "ws2": 20}
    # a client that left gets its own place back, with its pin
    srv, jar = held[0].server, held[0].jar()
    held[0].close()
    wait_until(lambda: sum(c.conns().values()) == 39, 10, what="the close counted")
    time.sleep(0.5)
    again = ws_pool.open(lbs[1].ws_url, cookie=jar)
    assert again.server == srv and action(again.result) == "hit"
    # room returns: 5 leave, 5 new clients are served
    for x in held[1:6]:
        x.close()
    wait_until(lambda: sum(c.conns().values()) == 35, 10, what="closes counted")
    time.sleep(0.5)  # the room is in both agents' views (refreshed every 200 ms when idle)
    back = [ws_pool.open(lbs[0].ws_url) for i in range(5)]
    assert all(action(x.result) == "new" for x in back)
    wait_until(lambda: c.conns() == {"ws1": 20, "ws2": 20}, 10, what="full again")
    time.sleep(0.5)
    try:
        harness.ws_open(lbs[0].ws_url, timeout=5)
        raise AssertionError("a client got in past every cap")
    except websockets.exceptions.InvalidStatusCode as e:
        assert status_of(e) == 503, e


# ---- 4. a per-server new-session rate -------------------------------------------------

def test_new_rate_paces_a_server_and_the_rest_go_to_the_next(procs, ws_pool):
    """limits new_rate on ws1 (6 new sessions/s across the fleet, 3 per agent): a
    burst of 60 new clients in about 2 s, through both load balancers, gives ws1 at
    most its rate (plus one second's bucket), the rest to ws2, none refused."""
    c = LimitsCluster(procs, {BE: {"servers": {"ws1": {"new_rate": 6}}}}, servers=2)
    lbs = c.lbs
    time.sleep(1.2)  # full buckets
    t0 = time.monotonic()
    got = []
    for i in range(12):
        got += ws_pool.open_many(lbs[i % 2].ws_url, 5)
        time.sleep(0.15)
    dt = time.monotonic() - t0
    n = by_server(got)
    print("\n60 new clients in %.2fs: %s" % (dt, n))
    assert sum(n.values()) == 60 and all(action(x.result) == "new" for x in got)
    # 6/s over dt plus a bucket of one second on each agent (3 each)
    assert n.get("ws1", 0) <= int(6 * dt) + 6 + 1, (n, dt)
    assert n.get("ws1", 0) >= 3, n  # paced, not shut out
    assert n["ws2"] >= 60 - int(6 * dt) - 7, n


# ---- 5. everything full, when_full queue -----------------------------------------------

def test_all_full_with_when_full_queue_waits_in_haproxys_queue_and_is_served(procs, ws_pool):
    """when_full queue: the agent names a server even when all are at their cap
    (txn.sticky.full = 1) and HAProxy's own maxconn on the server line (10, which
    the agent also reads as the fleet-wide cap: one load balancer here) queues the
    client; it is served as soon as a slot frees, well within timeout queue."""
    c = LimitsCluster(procs, {BE: {"when_full": "queue"}}, instances=1, servers=2,
                      haproxy_maxconn={"ws1": 10, "ws2": 10},
                      backend_spec={"when_full": "queue", "timeout_queue": "20s"})
    lb = c.lbs[0]
    held = ws_pool.open_many(lb.ws_url, 10) + ws_pool.open_many(lb.ws_url, 10)
    assert by_server(held) == {"ws1": 10, "ws2": 10}, by_server(held)
    wait_until(lambda: c.conns() == {"ws1": 10, "ws2": 10}, 10, what="counts")
    time.sleep(0.5)
    rows = status_rows(lb.stickyd)
    assert rows["ws1"][1] == "10/10" and rows["ws2"][1] == "10/10", rows  # HAProxy's maxconn

    async def late():
        t0 = time.monotonic()
        ws, res = await harness._ws_connect(lb.ws_url, None, None, 20)
        return ws, res, time.monotonic() - t0
    fut = asyncio.run_coroutine_threadsafe(late(), ws_pool._loop)
    time.sleep(1.5)
    assert not fut.done(), fut  # queued: neither refused nor served
    qcur = {r["svname"]: int(r["qcur"]) for r in lb.haproxy.show_stat()
            if r["pxname"] == BE and r["svname"] in ("ws1", "ws2")}
    assert sum(qcur.values()) == 1, qcur  # in the queue of the server the agent named
    where = [k for k, v in qcur.items() if v][0]
    leaving = [x for x in held if x.server == where][0]
    leaving.close()  # a slot frees there: the queued client is served
    ws, res, waited = fut.result(10)
    print("\nqueued client served after %.2fs on %s" % (waited, res.server))
    assert res.server == where and waited >= 1.5
    assert res.headers.get("X-Sticky-Action") == "new"
    wait_until(lambda: live(c.ws) == {"ws1": 10, "ws2": 10}, 10, what="full again")
    ws_pool._run(ws.close())


# ---- 6. policy balance -------------------------------------------------------------------

def test_policy_balance_moves_a_returning_client_off_a_full_server(procs, ws_pool):
    """policy balance: a returning client whose server is at its cap is re-pinned
    where there is room (a new cookie naming it), while under affinity (test 2) it
    would have stayed; its server never goes past the cap."""
    c = LimitsCluster(procs, {BE: {"policy": "balance", "servers": {"ws1": {"maxconn": 10}}}},
                      servers=2)
    lbs = c.lbs
    first = [ws_pool.open(lbs[i % 2].ws_url) for i in range(16)]
    while by_server(first).get("ws1", 0) < 10 and len(first) < 40:  # the last slots are
        time.sleep(0.25)  # shared between the agents: each in its own view
        first.append(ws_pool.open(lbs[len(first) % 2].ws_url))
    n = by_server(first)
    assert n["ws1"] == 10, n
    wait_until(lambda: c.conns() == n, 10, what="counts")
    # one ws1 client leaves, a newcomer takes its slot: ws1 is at its cap again
    gone = [x for x in first if x.server == "ws1"][0]
    jar, sid = gone.jar(), gone.cookie()
    gone.close()
    wait_until(lambda: c.conns()["ws1"] == 9, 10, what="the close counted")
    time.sleep(0.5)
    takers = []
    while live(c.ws[:1])["ws1"] < 10 and len(takers) < 20:  # newcomers take the slot
        takers.append(ws_pool.open(lbs[0].ws_url))
        assert action(takers[-1].result) == "new", takers[-1].result
        time.sleep(0.25)
    assert takers and takers[-1].server == "ws1", by_server(takers)
    wait_until(lambda: c.conns()["ws1"] == 10, 10, what="ws1 full")
    time.sleep(0.5)
    back = ws_pool.open(lbs[1].ws_url, cookie=jar)
    assert back.server == "ws2" and action(back.result) == "repin", back.result
    assert back.cookie() and back.cookie() != sid, back.set_cookie
    assert live(c.ws)["ws1"] == 10
    # its new cookie holds it on ws2 from now on
    again = harness.ws_open(lbs[0].ws_url, cookie=back.jar())
    assert again.server == "ws2" and action(again) == "hit", again
