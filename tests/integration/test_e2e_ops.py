"""End-to-end operations: real HAProxy 2.6, real Redis, real stickyd agents, real
WebSocket servers (wsserver.py) and real WebSocket clients (python3-websockets).

Scenarios (issue 5):
  drain        new clients avoid a drained server, pinned ones keep it until the
               deadline and move on reconnect after it; with close-at-deadline the
               agent has HAProxy shut the remaining sockets so every client moves
  kill         a WebSocket server SIGKILLed: its clients reconnect (bounded attempts)
               and are re-pinned to healthy servers
  two LBs      two HAProxys, each with its agent, one Redis: a client alternating
               between them keeps its server; `conns` is the sum of both scur
  reload       HAProxy reloaded (-x -sf): open sockets keep echoing on the old
               process, pins survive, counts stay equal to the live sockets (the
               old process's included, though only the new one's scur is visible)
  socket.io    Engine.IO polling handshake then the upgrade land on one server
  resync       a resync never resets a share from a view older than the opens
               counted since (conns never dips below the live sockets)

Agent periods are short (refresh 200ms, resync 500ms, heartbeat 2s) and server
health checks fast (inter 200ms), so every wait is a bounded poll of a few seconds.
"""
import subprocess
import time

import harness
from harness import LOOPBACK, REPO, agent_stats, http_get, wait_until

BE = "be_ws"
PREFIX = "sticky:"
STICKYCTL = REPO / "agent" / "stickyctl"

FAST_AGENT = {"extra": {"haproxy": dict(harness.FAST_PERIODS)}}
FAST_CHECKS = {"check_inter": "200ms", "agent_check_inter": "200ms"}


# ---- helpers ------------------------------------------------------------------

def make_stack(procs, instances=1, socketio=False):
    st = procs.stack(instances=instances, socketio=socketio, spec=dict(FAST_CHECKS),
                     stickyd=dict(FAST_AGENT))
    st.wait_agents_up()
    st.wait_servers_up()
    r = st.redis.client()
    # The agents are up for HAProxy once they answer SPOP; wait until each has
    # also joined the cluster in Redis (its first resync), so decisions see counts.
    wait_until(lambda: {lb.name for lb in st.lbs} <= set(r.zrange(key("insts"), 0, -1)),
               timeout=10, what="agents registered in Redis")
    return st, r


def key(suffix):
    return harness.rkey(suffix, BE, PREFIX)


def nonzero(d):
    return {k: v for k, v in d.items() if v != 0}


def conns(r, suffix="conns"):
    """A counts hash as {server: int} (absent servers are 0)."""
    return nonzero(harness.hash_ints(r, key(suffix)))


def scur(h):
    """HAProxy's current sessions per server of BE, zeros dropped."""
    return nonzero(h.scur(BE))


def tally(servers):
    out = {}
    for s in servers:
        out[s] = out.get(s, 0) + 1
    return out


def pin_of(r, sid):
    """The server a session's record names, once the agent's batched write has
    created it (None if it never does)."""
    try:
        return harness.wait_record(r, sid, BE, timeout=2)["server"]
    except TimeoutError:
        return None


def pin_is(r, sid, server):
    """The record names server (within the batched writer's delay)."""
    return harness.record_is(r, sid, server, BE)


def stickyctl(redis_port, *args):
    p = subprocess.run([str(STICKYCTL), "--redis", "%s:%d" % (LOOPBACK, redis_port)]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    return p.stdout.decode(errors="replace")


def drain(redis, server, deadline_s, close=False):
    """Drain `server` with a deadline `deadline_s` from now; returns the deadline as
    time.time(). Through stickyctl (which also sends the change event)."""
    args = ["drain", BE, server, "--deadline", "%ds" % deadline_s]
    if close:
        args.append("--close-at-deadline")
    stickyctl(redis.port, *args)
    raw = redis.client().hget(key("state"), server)
    parts = raw.split(":")
    assert parts[0] == "drain" and (parts[2:] == ["close"]) == close, raw
    return int(parts[1]) / 1000.0


def reconnect(url, cookie, attempts=5, pause=0.1):
    """A client's reconnect loop: retry a failed handshake up to `attempts` times.
    Returns (WsResult, attempts used); raises after the last failure."""
    last = None
    for i in range(1, attempts + 1):
        try:
            return harness.ws_open(url, cookie=cookie, timeout=3.0), i
        except Exception as e:  # noqa: BLE001 - refused, reset, bad status ...
            last = e
            time.sleep(pause)
    raise AssertionError("no successful reconnect in %d attempts: %r" % (attempts, last))


def open_spread(pool, url, n, servers):
    """Open n WebSockets with no cookie: the agent spreads them by live counts,
    so every one of `servers` gets some (asserted: a test needs clients everywhere)."""
    out = []
    for _ in range(n):
        out.append(pool.open(url))
    got = tally(c.server for c in out)
    assert set(got) == set(servers), got
    return out


# ---- 9. Socket.IO: polling handshake, then the upgrade, on one server -----------

def test_socketio_polling_then_upgrade_same_server(procs):
    st, r = make_stack(procs, socketio=True)
    lb = st.lbs[0]
    for _ in range(3):      # three independent Engine.IO clients
        status, hdrs, body = http_get(lb.haproxy.url + "/socket.io/?EIO=4&transport=polling")
        assert status == 200, body
        server = hdrs["X-Server"]
        sid = harness.parse_cookie(hdrs.get_all("Set-Cookie"))
        assert sid and len(sid) == 56, hdrs.get_all("Set-Cookie")
        assert pin_is(r, sid, server)
        jar = harness.cookie_jar(None, hdrs.get_all("Set-Cookie"))
        # more polls with the cookies: same server, no new cookie
        for _ in range(3):
            status, h2, _ = http_get(lb.haproxy.url + "/socket.io/?EIO=4&transport=polling",
                                     headers={"Cookie": jar})
            assert status == 200 and h2["X-Server"] == server
            assert harness.parse_cookie(h2.get_all("Set-Cookie")) is None
        # the upgrade, with the cookie: same server, which sees the cookie
        ws = harness.ws_open(lb.ws_url + "socket.io/?EIO=4&transport=websocket", cookie=jar)
        assert ws.server == server
        assert ws.hello["path"].startswith("/socket.io/")
        assert "stickysid=" + sid in (ws.hello["cookie"] or "")
        assert ws.cookie() is None
        assert pin_is(r, sid, server)
    # Polling requests hold no tunnel and log no close line: only the 3 upgrades
    # were counted open, and all 3 were closed again by their log lines.
    # (counted by the agent's batched writer, a few ms after each decision)
    wait_until(lambda: agent_stats(lb.stickyd)["conn_opened_events"] == 3, timeout=5,
               what="the 3 tunnels counted open")
    wait_until(lambda: agent_stats(lb.stickyd)["conn_closed_events"] == 3, timeout=5,
               what="the 3 tunnels closed")
    st_ = agent_stats(lb.stickyd)
    assert st_["conn_opened_events"] == 3, st_
    assert r.hlen(key("o:" + lb.name)) == 0
    # Each upgrade landed on the agent's choice, so it cost one SPOE exchange:
    # sticky-established is only sent when HAProxy used another server.
    # 3 clients x (1 + 3 polls + 1 upgrade) sticky-assign NOTIFYs, nothing more.
    assert agent_stats(lb.stickyd)["notify"] == 15


# ---- 3. drain: with a deadline, and with close-at-deadline ----------------------

def test_drain_deadline_and_close_at_deadline(procs, ws_pool):
    """Two servers drained at once for 3 s: `keep` without close, `gone` with
    close-at-deadline; the third takes every new session."""
    st, r = make_stack(procs)
    lb = st.lbs[0]
    names = [w.name for w in st.ws]
    clients = open_spread(ws_pool, lb.ws_url, 9, names)
    keep, gone = sorted(tally(c.server for c in clients).items(),
                        key=lambda kv: (-kv[1], kv[0]))[0:2]
    keep, gone = keep[0], gone[0]
    third = (set(names) - {keep, gone}).pop()
    on = {s: [c for c in clients if c.server == s] for s in names}

    t_keep = drain(st.redis, keep, 3)
    t_gone = drain(st.redis, gone, 3, close=True)
    # applied to HAProxy too (plain load-balanced traffic avoids them)
    lb.haproxy.wait_server_status(BE, keep, "DRAIN", timeout=5)
    lb.haproxy.wait_server_status(BE, gone, "DRAIN", timeout=5)

    # before the deadline: new clients avoid both, pinned clients keep theirs
    assert time.time() < min(t_keep, t_gone), "the machine is too slow for a 3s deadline"
    fresh = [harness.ws_open(lb.ws_url) for _ in range(6)]
    assert {f.server for f in fresh} == {third}, fresh
    for s in (keep, gone):
        again = harness.ws_open(lb.ws_url, cookie=on[s][0].cookie())
        assert again.server == s
    assert time.time() < min(t_keep, t_gone), "checks ran past the deadline: inconclusive"
    for c in clients:
        assert c.echo("before") == "before"

    # after the deadline: every socket on `gone` is closed by HAProxy within seconds
    wait_until(lambda: all(c.closed for c in on[gone]), timeout=t_gone - time.time() + 5,
               interval=0.05, what="sockets on the close-at-deadline server to close")
    closed_after = time.time() - t_gone
    assert closed_after >= 0, "closed %.2fs before the deadline" % -closed_after
    assert "shutdown sessions server %s/%s" % (BE, gone) in lb.stickyd.log_text()
    # ... they reconnect with their cookie and land elsewhere, re-pinned
    for c in on[gone]:
        res, n = reconnect(lb.ws_url, c.cookie())
        assert res.server != gone and n == 1, (res, n)
        assert pin_is(r, c.cookie(), res.server)

    # `keep` had no close: its sockets still echo past the deadline ...
    wait_until(lambda: time.time() > t_keep + 0.3, timeout=10, what="keep's deadline")
    for c in on[keep] + on[third]:
        assert not c.closed and c.echo("after") == "after"
    # ... and a reconnect after the deadline is re-pinned away from it
    for c in on[keep]:
        res = harness.ws_open(lb.ws_url, cookie=c.cookie())
        assert res.server not in (keep, gone), res
        assert pin_is(r, c.cookie(), res.server)
    print("drain: close-at-deadline sockets closed %.2fs after the deadline" % closed_after)


# ---- 4. a WebSocket server killed ----------------------------------------------

def test_killed_server_clients_repinned(procs, ws_pool):
    st, r = make_stack(procs)
    lb = st.lbs[0]
    names = [w.name for w in st.ws]
    clients = open_spread(ws_pool, lb.ws_url, 9, names)
    victim = st.ws[1]
    doomed = [c for c in clients if c.server == victim.name]
    healthy = [c for c in clients if c.server != victim.name]
    sids = {c.cookie() for c in doomed}
    assert len(doomed) >= 2 and len(sids) == len(doomed)
    before = agent_stats(lb.stickyd)

    victim.kill()   # SIGKILL: the kernel resets its sockets, HAProxy closes the clients'
    wait_until(lambda: all(c.closed for c in doomed), timeout=5,
               what="the killed server's clients to be disconnected")
    # The first reconnects at once, as a real client would: HAProxy may not have
    # marked the server DOWN yet (the agent still says "hit"): its retry with
    # redispatch lands elsewhere and sticky-established corrects the pin.
    early, late = doomed[:1], doomed[1:]
    for c in early:
        res, n = reconnect(lb.ws_url, c.cookie())
        assert res.server != victim.name and n <= 2, (res, n)
        wait_until(lambda: pin_of(r, c.cookie()) == res.server, timeout=3,
                   what="pin corrected to the server really used")
    # Once the health checks have marked it DOWN, the agent re-pins (action repin).
    lb.haproxy.wait_server_status(BE, victim.name, "DOWN", timeout=5)
    for c in late:
        res, n = reconnect(lb.ws_url, c.cookie())
        assert res.server != victim.name and n == 1, (res, n)
        assert pin_is(r, c.cookie(), res.server)
    after = agent_stats(lb.stickyd)
    assert after["decision_repin"] - before["decision_repin"] >= len(late), (before, after)

    # No loop: every moved client keeps its new server, one attempt each time.
    for c in doomed:
        pinned = pin_of(r, c.cookie())
        for _ in range(3):
            res, n = reconnect(lb.ws_url, c.cookie())
            assert (res.server, n) == (pinned, 1)
    # The healthy servers' clients never noticed.
    for c in healthy:
        assert not c.closed and c.echo("still here") == "still here"
        assert pin_is(r, c.cookie(), c.server)
    # Counts follow: nothing is left counted on the dead server.
    wait_until(lambda: victim.name not in conns(r) and conns(r) == scur(lb.haproxy),
               timeout=5, what="conns without the dead server, equal to scur")


# ---- 7. two HAProxys, two agents, one Redis ------------------------------------

def test_two_lbs_same_server_and_cluster_counts(procs, ws_pool):
    st, r = make_stack(procs, instances=2)
    lb1, lb2 = st.lbs
    # A client alternating between the load balancers keeps its server.
    for i in range(6):
        first = harness.ws_open((lb1 if i % 2 else lb2).ws_url)
        sid = first.cookie()
        assert sid and pin_is(r, sid, first.server)
        for j in range(6):
            lb = lb1 if (i + j) % 2 == 0 else lb2
            res = harness.ws_open(lb.ws_url, cookie=sid)
            assert res.server == first.server, (i, j, lb.name, res)
            assert res.cookie() is None

    # Live sockets through both: conns is the cluster-wide sum, each share its own.
    via1 = [ws_pool.open(lb1.ws_url) for _ in range(5)]
    via2 = [ws_pool.open(lb2.ws_url) for _ in range(4)]
    # a pinned client opening through the other LB counts there
    via2.append(ws_pool.open(lb2.ws_url, cookie=via1[0].cookie()))
    assert via2[-1].server == via1[0].server
    live1, live2 = tally(c.server for c in via1), tally(c.server for c in via2)
    total = tally(c.server for c in via1 + via2)

    def settled():
        s1, s2 = scur(lb1.haproxy), scur(lb2.haproxy)
        return (s1 == live1 and s2 == live2 and conns(r, "i:lb1") == live1
                and conns(r, "i:lb2") == live2 and conns(r) == total)
    wait_until(settled, timeout=5, what="shares = each scur, conns = their sum")
    # ... and it holds across resyncs (both agents beat after this point)
    t0 = time.time() * 1000
    wait_until(lambda: min(r.zscore(key("insts"), "lb1"), r.zscore(key("insts"), "lb2")) > t0,
               timeout=5, what="a resync of both agents")
    assert settled(), (scur(lb1.haproxy), scur(lb2.haproxy), conns(r))
    # new sessions balance by the cluster-wide counts: the next one goes to the
    # least-loaded server overall, whichever LB it comes through
    least = min(total.get(n, 0) for n in (w.name for w in st.ws))
    nxt = harness.ws_open(lb1.ws_url)
    assert total.get(nxt.server, 0) == least, (total, nxt)

    # closes through either LB are subtracted from the same sum
    for c in via1[:2] + via2[:2]:
        ws_pool.close(c)
    live1, live2 = tally(c.server for c in via1[2:]), tally(c.server for c in via2[2:])
    total = tally(c.server for c in via1[2:] + via2[2:])
    wait_until(settled, timeout=5, what="counts after closes")


# ---- 8. HAProxy reload ---------------------------------------------------------

def reload_with_sockets(procs, ws_pool):
    """A stack with six live WebSockets (two per server), then `haproxy -x <sock>
    -sf <old pid>`; returns once the new process answers on the stats socket."""
    st, r = make_stack(procs)
    lb = st.lbs[0]
    h = lb.haproxy
    clients = open_spread(ws_pool, lb.ws_url, 6, [w.name for w in st.ws])
    live = tally(c.server for c in clients)
    wait_until(lambda: conns(r) == live == scur(h), timeout=5, what="counts before the reload")
    old_pid = h.pid
    h.reload()
    assert h.pid != old_pid
    # The stats socket's listener is handed over (-x) like the others: once the old
    # process has stopped listening, the new one answers there, at scur 0.
    wait_until(lambda: "Pid: %d\n" % h.pid in h.cmd("show info"), timeout=5,
               what="the new process on the stats socket")
    return st, r, lb, clients


def wait_resyncs(r, inst="lb1", periods=3):
    """Until `inst` has beaten `periods` resync periods (500ms) after now."""
    t0 = time.time() * 1000
    wait_until(lambda: r.zscore(key("insts"), inst) > t0 + 500 * (periods - 0.5), timeout=10,
               what="%d resyncs of %s" % (periods, inst))


def test_reload_keeps_sockets_and_pins(procs, ws_pool):
    st, r, lb, old = reload_with_sockets(procs, ws_pool)
    # the old process keeps the upgraded tunnels: they still echo
    for c in old:
        assert not c.closed and c.echo("across the reload") == "across the reload"
    # pins survive: reconnects (through the new process) land on the same server,
    # and held open they are counted by the new process's scur
    again = [ws_pool.open(lb.ws_url, cookie=c.cookie()) for c in old[:3]]
    for a, c in zip(again, old):
        assert a.server == c.server and a.cookie() is None
    new_live = tally(a.server for a in again)
    wait_until(lambda: scur(lb.haproxy) == new_live, timeout=5, what="new process scur")
    # closing the old tunnels ends them on the old process; the others stay up
    for c in old:
        ws_pool.close(c)
    for a in again:
        assert a.echo("still") == "still"
    # once the old tunnels are gone, counts are exactly the new process's sockets
    wait_resyncs(r)
    wait_until(lambda: conns(r) == new_live == conns(r, "i:lb1"), timeout=5,
               what="conns = the new process's live sockets")


def test_reload_counts_include_old_process_tunnels(procs, ws_pool):
    """What "right" means after a reload: conns = every live socket of this
    instance, the old process's included (they still load their servers), though
    the stats socket now shows only the new process's scur. The agent adds the
    open tunnels of its HAProxy's older, still running processes (their unique-ids
    end in the process's pid) to the share at each resync."""
    st, r, lb, old = reload_with_sockets(procs, ws_pool)
    old_pid = lb.haproxy.stopped_popens[-1].pid
    new = [ws_pool.open(lb.ws_url) for _ in range(3)]
    live = tally(c.server for c in old + new)
    wait_resyncs(r)
    print("reload: conns=%s share=%s scur(new)=%s live=%s"
          % (conns(r), conns(r, "i:lb1"), scur(lb.haproxy), live))
    assert conns(r) == live == conns(r, "i:lb1")
    assert scur(lb.haproxy) == tally(c.server for c in new)   # why it takes more than scur
    # new sessions are balanced by those totals: the least-loaded server overall
    nxt = ws_pool.open(lb.ws_url)
    assert live.get(nxt.server, 0) == min(live.get(w.name, 0) for w in st.ws), (live, nxt)
    new.append(nxt)
    # the old tunnels close: the old process exits with its last one, and the
    # counts are the new process's sockets alone
    for c in old:
        ws_pool.close(c)
    wait_until(lambda: lb.haproxy.stopped_popens[-1].poll() is not None, timeout=10,
               what="the old process (pid %d) to exit after its last tunnel" % old_pid)
    live = tally(c.server for c in new)
    wait_resyncs(r)
    assert conns(r) == live == scur(lb.haproxy)
    for c in new:
        assert c.echo("new") == "new"


# ---- counts between refreshes ---------------------------------------------------

def test_resync_never_wipes_fresh_opens(procs, ws_pool):
    """The agent's HAProxy view is refreshed every 2s here and its counts resynced
    every 300ms: a resync must not reset the share from a view older than the
    opens it has counted since (conns would dip below the live sockets until the
    next refresh, and new sessions would pile onto the busiest servers)."""
    st = procs.stack(instances=1, spec=dict(FAST_CHECKS), stickyd={"extra": {"haproxy": {
        "refresh": "2s", "resync": "300ms", "heartbeat_ttl": "5s"}}})
    st.wait_agents_up()
    st.wait_servers_up()
    r = st.redis.client()
    lb = st.lbs[0]
    wait_until(lambda: r.zscore(key("insts"), "lb1"), timeout=10, what="agent joined")
    live = []
    for wave in range(2):
        live += [ws_pool.open(lb.ws_url) for _ in range(3)]
        want = tally(c.server for c in live)
        wait_until(lambda: conns(r) == want, timeout=5, what="opens counted")
        dips = []
        end = time.monotonic() + 2.3  # past the next refresh, several resyncs
        while time.monotonic() < end:
            got = conns(r)
            if got != want:
                dips.append(got)
            time.sleep(0.02)
        assert not dips, "wave %d: live %s, conns seen %s" % (wave, want, dips[:5])
    assert scur(lb.haproxy) == want == conns(r, "i:lb1")
