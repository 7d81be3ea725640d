"""Redis behind Sentinel (issue 11): real redis-sentinel 7.0, a primary and one
replica, three Sentinels, all on loopback.

Two load balancers (real HAProxy, each with its stickyd) find the master through
the Sentinels only: their redis.host/port point at a port nothing listens on.
The primary is SIGKILLed while real WebSocket clients keep upgrading through both
load balancers; the tests measure when the Sentinels switch the master and when
each agent follows, and check that no upgrade failed, that pinned clients kept
their server, and that the counts in the new master are right within one resync.
stickyctl is run against the same Sentinels, before and after a failover.
"""
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import LOOPBACK, Proc, free_port, lb_spec, wait_until, write_secret
from test_e2e_affinity import AGENT_TIMING, BE, DIAG_RULES, KP, Lb, action

REDIS_SENTINEL = os.environ.get("REDIS_SENTINEL", "/usr/bin/redis-sentinel")
STICKYCTL = Path(os.environ.get("STICKYCTL", harness.REPO / "agent" / "stickyctl"))
MASTER = "mymaster"
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000
RESYNC_S = 0.5  # harness.FAST_PERIODS["resync"]


class Sentinel(Proc):
    """A redis-sentinel on a free loopback port, monitoring MASTER at
    master_port with quorum 2 and short timings (a failover takes ~1-3 s)."""

    def __init__(self, workdir, name, master_port, password=None):
        super().__init__(name, workdir)
        self.port = free_port()
        self.password = password
        self.conf = self.workdir / (name + ".conf")  # Sentinel rewrites it: its own file
        lines = [
            "port %d" % self.port,
            "bind %s" % LOOPBACK,
            "dir %s" % self.workdir,
            "logfile \"\"",
            "sentinel monitor %s %s %d 2" % (MASTER, LOOPBACK, master_port),
            "sentinel down-after-milliseconds %s %d" % (MASTER, DOWN_AFTER_MS),
            "sentinel failover-timeout %s %d" % (MASTER, FAILOVER_TIMEOUT_MS),
            "sentinel parallel-syncs %s 1" % MASTER,
        ]
        if password:
            lines.append("requirepass %s" % password)
        self.conf.write_text("\n".join(lines) + "\n")
        self.argv = [REDIS_SENTINEL, self.conf]

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def client(self, **kw):
        import redis
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", 5)
        if self.password:
            kw.setdefault("password", self.password)
        return redis.Redis(host=LOOPBACK, port=self.port, **kw)

    def ready(self):
        try:
            return self.client().ping()
        except Exception:  # noqa: BLE001 - not up yet
            return False


class SentinelSet:
    """A primary, one replica and three Sentinels that all know each other."""

    def __init__(self, procs, sentinel_password=None):
        self.procs = procs
        self.primary = procs.redis("redis-a")
        self.replica = procs.add(harness.Redis(procs.workdir, "redis-b"))
        self.replica.argv += ["--replicaof", LOOPBACK, str(self.primary.port)]
        self.replica.start()
        wait_until(lambda: self.replica.client().info("replication")
                   .get("master_link_status") == "up", 10, what="the replica to sync")
        self.sentinels = [procs.add(Sentinel(procs.workdir, "sentinel%d" % i,
                                             self.primary.port, sentinel_password)).start()
                          for i in range(1, 4)]
        self.wait_settled()

    def wait_settled(self, timeout=20.0):
        """Every Sentinel sees the other two and a replica: a failover can happen."""
        def ok():
            for s in self.sentinels:
                c = s.client()
                if len(c.sentinel_sentinels(MASTER)) != 2 or not c.sentinel_slaves(MASTER):
                    return False
            return True
        wait_until(ok, timeout, interval=0.2, what="the Sentinels to find each other")

    @property
    def addrs(self):
        return [s.addr for s in self.sentinels]

    def master_port(self):
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)
        return int(port)


def follows(agent, port, since=0):
    """The agent logged its command connection to 127.0.0.1:port after offset since."""
    return re.search(r"redis: connected to %s:%d " % (re.escape(LOOPBACK), port),
                     agent.log_text()[since:]) is not None


class SentinelCluster:
    """Two load balancers whose agents reach Redis through the Sentinels only."""

    def __init__(self, procs, ss, instances=2, sentinel_password=None, sentinel_addrs=None):
        self.procs, self.ss = procs, ss
        self.ws = procs.ws_servers(3)
        self.secret_file = write_secret(procs.workdir / "sentinel-secret.key")
        dead = free_port()  # redis.host/port lead nowhere: only the Sentinels count
        redis_cfg = dict(AGENT_TIMING["redis"], sentinels=sentinel_addrs or ss.addrs,
                         master_name=MASTER)
        if sentinel_password:
            redis_cfg["sentinel_password"] = sentinel_password
        self.agent_extra = {"redis": redis_cfg, "haproxy": AGENT_TIMING["haproxy"]}
        self.lbs = []
        for i in range(1, instances + 1):
            name = "lb%d" % i
            h = procs.haproxy("haproxy-" + name)
            s = procs.stickyd("stickyd-" + name, start=False, redis_port=dead, instance=name,
                              secret_file=self.secret_file, stats_socket=h.stats_socket,
                              extra=self.agent_extra)
            spec = lb_spec(name, self.ws, s, {"transport": "udp", "addr": s.syslog_udp_addr}, BE)
            lb = Lb(name, h, s, spec)
            h.render(spec)
            h.add_after_use_server(DIAG_RULES)
            s.start()
            h.start()
            self.lbs.append(lb)
        self.wait_ready()

    def r(self):
        """A client on the current master (as the Sentinels say)."""
        return harness.Redis(self.procs.workdir, "probe", self.ss.master_port()).client()

    def wait_ready(self, timeout=15.0):
        harness.wait_fleet_ready(self.r, self.lbs, self.ws, BE, timeout)

    def counts_right(self):
        want = {}
        for lb in self.lbs:
            for s, n in lb.haproxy.scur(BE).items():
                if n:
                    want[s] = want.get(s, 0) + n
        got = {s: n for s, n in harness.hash_ints(self.r(), KP + "conns").items() if n}
        return got == want


@pytest.fixture
def sentinels(procs):
    return SentinelSet(procs)


class SwitchWatch(threading.Thread):
    """When a Sentinel announced +switch-master (time.monotonic()), and its words."""

    def __init__(self, sentinel):
        super().__init__(daemon=True)
        self.p = sentinel.client(socket_timeout=30).pubsub()
        self.p.subscribe("+switch-master")
        self.p.get_message(timeout=5)  # the subscribe confirmation: listening from here
        self.t, self.msg = None, None
        self.start()

    def run(self):
        for m in self.p.listen():
            if m["type"] == "message":
                self.t, self.msg = time.monotonic(), m["data"]
                return


class Upgrader(threading.Thread):
    """New and returning clients, alternating over the load balancers, as fast as
    they go until stopped. Every failure (no 101, no hello, a returning client on
    another server) is kept with the time it happened."""

    def __init__(self, lbs, returning):
        super().__init__(daemon=True)
        self.lbs, self.returning = lbs, list(returning)
        self.stop_evt = threading.Event()
        self.failures, self.answers, self.n = [], {}, 0
        self.fresh = []  # (time, jar, server) of each new client

    def run(self):
        i = 0
        while not self.stop_evt.is_set():
            lb = self.lbs[i % len(self.lbs)]
            jar, srv = self.returning[i % len(self.returning)] if i % 2 else (None, None)
            try:
                r = harness.ws_open(lb.ws_url, cookie=jar, timeout=5.0)
                a = action(r) or "none:" + (r.headers.get("X-Sticky-Error") or "")
                self.answers[a] = self.answers.get(a, 0) + 1
                if srv is not None and r.server != srv:
                    self.failures.append((time.monotonic(), "moved %s -> %s (%s)"
                                          % (srv, r.server, a)))
                if r.server is None:
                    self.failures.append((time.monotonic(), "no server: %r" % r))
                elif jar is None:
                    self.fresh.append((time.monotonic(), r.jar(), r.server))
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                self.failures.append((time.monotonic(), "%s: %r" % (lb.name, e)))
            self.n += 1
            i += 1

    def stop(self):
        self.stop_evt.set()
        self.join(30)


def test_agents_follow_a_failover_and_no_upgrade_fails(procs, sentinels, ws_pool):
    ss = sentinels
    c = SentinelCluster(procs, ss)
    old, new = ss.primary.port, ss.replica.port
    for lb in c.lbs:
        assert follows(lb.stickyd, old), lb.stickyd.log_tail(30)
    # sessions held open (so the counts mean something) and returning clients
    held = [ws_pool.open(c.lbs[i % 2].ws_url) for i in range(24)]
    assert len({h.server for h in held}) == 3, [h.server for h in held]
    pinned = []
    for i in range(12):
        r = harness.ws_open(c.lbs[i % 2].ws_url)
        assert action(r) == "new", r.headers
        pinned.append((r.jar(), r.server))
    wait_until(c.counts_right, 5, what="counts before the failover")
    # the replica has every record before the primary dies
    wait_until(lambda: ss.replica.client().dbsize() == ss.primary.client().dbsize(), 5,
               what="the replica to catch up")

    marks = [len(lb.stickyd.log_text()) for lb in c.lbs]
    switch = SwitchWatch(ss.sentinels[1])
    up = Upgrader(c.lbs, pinned)
    up.start()
    time.sleep(0.5)
    t_kill = time.monotonic()
    ss.primary.kill()
    # tunnels opened while there is no master: the counts must include them later
    held += [ws_pool.open(c.lbs[i % 2].ws_url) for i in range(6)]
    followed = {}

    def all_followed():
        for lb, mark in zip(c.lbs, marks):
            if lb.name not in followed and follows(lb.stickyd, new, mark):
                followed[lb.name] = time.monotonic()
        return len(followed) == len(c.lbs)
    wait_until(all_followed, 15, interval=0.01, what="both agents to follow the new master")
    switch.join(10)
    assert switch.t is not None, "no +switch-master within 15 s"
    assert switch.msg.split()[3:] == [LOOPBACK, str(new)], switch.msg
    up.stop()
    # counts right again within one resync of the agents following
    t_followed = max(followed.values())
    wait_until(c.counts_right, 10, interval=0.05, what="counts in the new master")
    settle = time.monotonic() - t_followed
    # and when the failover lost writes (asynchronous replication): made so here by
    # wrecking the promoted replica's counts, the next resync of each agent repairs them
    ss.replica.client().hincrby(KP + "conns", "ws1", 50)
    t_wreck = time.monotonic()
    wait_until(c.counts_right, 10, interval=0.02, what="counts repaired")
    repaired = time.monotonic() - t_wreck
    failover_s = switch.t - t_kill
    lags = {name: t - switch.t for name, t in followed.items()}
    print("\nfailover (kill -> +switch-master) %.2f s; agents followed %s s after it; "
          "%d upgrades meanwhile, answers %s"
          % (failover_s, {k: round(v, 3) for k, v in lags.items()}, up.n, up.answers))
    # followed within the failover time + 1 s, measured from the kill
    for name, t in followed.items():
        assert t - t_kill <= failover_s + 1.0, (name, t - t_kill, failover_s)
    assert up.failures == [], up.failures[:10]
    assert up.n >= 20, up.n
    # the new master answers decisions (not only the cookie or the hash)
    r = harness.ws_open(c.lbs[0].ws_url)
    assert action(r) == "new", r.headers
    # pinned clients keep their server on both load balancers, after it all, and so
    # do the clients first answered while there was no master
    during = [(jar, srv) for t, jar, srv in up.fresh if t_kill <= t <= min(followed.values())]
    assert len(during) >= 5, len(during)
    for jar, srv in pinned + during[:: max(1, len(during) // 20)]:
        for lb in c.lbs:
            r = harness.ws_open(lb.ws_url, cookie=jar)
            assert r.server == srv, (srv, r, r.headers)
    assert all(h.echo("x") == "x" for h in held)
    # the counters say it: the first master, then the new one
    for lb in c.lbs:
        st = harness.agent_stats(lb.stickyd)
        assert st["sentinel_master_changes"] == 2, st["sentinel_master_changes"]
        assert st["sentinel_discoveries"] >= 1, st["sentinel_discoveries"]
    print("counts right %.2f s after the last agent followed; lost writes repaired in "
          "%.2f s (resync %.1f s, refresh 0.2 s)" % (settle, repaired, RESYNC_S))
    # one resync period, then the HAProxy refresh it waits for, plus slack
    assert settle <= RESYNC_S + 0.2 + 1.0, settle
    assert repaired <= RESYNC_S + 0.2 + 1.0, repaired


def ctl(args, timeout=15):
    if not STICKYCTL.exists():
        pytest.fail("%s is not built: run `make agent/stickyctl`" % STICKYCTL)
    return subprocess.run([str(STICKYCTL)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout)


def test_stickyctl_through_the_sentinels_before_and_after_a_failover(procs, sentinels):
    ss = sentinels
    c = SentinelCluster(procs, ss, instances=1)
    lb = c.lbs[0]
    r = harness.ws_open(lb.ws_url)
    sid = r.cookie()
    srv = r.server
    harness.wait_record(c.r(), sid, BE, srv)
    cfgfile = lb.stickyd.config_path
    p = ctl(["-c", cfgfile, "lookup", BE, sid])
    assert p.returncode == 0, p.stderr
    assert srv in p.stdout, p.stdout
    # the same with flags only (no config file)
    flags = ["--sentinels", ",".join(ss.addrs), "--master-name", MASTER]
    p = ctl(flags + ["status", BE])
    assert p.returncode == 0, p.stderr
    assert all(w.name in p.stdout for w in c.ws), p.stdout
    # a master name the Sentinels do not monitor: a clear error, exit 4
    p = ctl(["--sentinels", ",".join(ss.addrs), "--master-name", "nosuch", "status"])
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "does not know a master named nosuch" in p.stderr, p.stderr
    print("\nunknown master: " + p.stderr.strip())
    # flags checked before connecting
    p = ctl(["--sentinels", ss.addrs[0], "status"])
    assert p.returncode == 2 and "needs --master-name" in p.stderr, p.stderr
    p = ctl(["--sentinels", "127.0.0.1:0", "--master-name", MASTER, "status"])
    assert p.returncode == 2 and "port must be 1..65535" in p.stderr, p.stderr
    # failover: stickyctl finds the new master (the record was replicated)
    harness.wait_record(ss.replica.client(), sid, BE, srv)  # replicated before the kill
    ss.primary.kill()
    wait_until(lambda: int(ss.sentinels[1].client().sentinel_get_master_addr_by_name(MASTER)[1])
               == ss.replica.port, 15, interval=0.1, what="the failover")
    # (a Sentinel that has not heard of the failover yet names the dead primary:
    # stickyctl asks again until its --timeout)
    p = ctl(["-c", cfgfile, "--timeout", "5s", "lookup", BE, sid])
    assert p.returncode == 0 and srv in p.stdout, (p.stdout, p.stderr)
    # the agent's pub/sub moved too: stickyctl's event on the new master reaches it
    wait_until(lambda: follows(lb.stickyd, ss.replica.port), 10, what="the agent to follow")
    wait_until(lambda: ctl(["-c", cfgfile, "maint", BE, c.ws[0].name]).stdout.find(
        "event sent to 1 subscriber") >= 0, 5, interval=0.2,
        what="the agent subscribed on the new master")
    haproxy = lb.haproxy
    haproxy.wait_server_status(BE, c.ws[0].name, "MAINT", 10, exact=False)
    assert ctl(["-c", cfgfile, "ready", BE, c.ws[0].name]).returncode == 0
    # --redis names one Redis: the file's Sentinels are not asked
    p = ctl(["-c", cfgfile, "--redis", "%s:%d" % (LOOPBACK, ss.replica.port), "lookup", BE, sid])
    assert p.returncode == 0 and srv in p.stdout, (p.stdout, p.stderr)
    p = ctl(["-c", cfgfile, "--redis", "%s:%d" % (LOOPBACK, ss.replica.port), "--master-name",
             MASTER, "status"])
    assert p.returncode == 2 and "exclude each other" in p.stderr, p.stderr
    # the first Sentinel dead: the next one answers
    ss.sentinels[0].kill()
    p = ctl(flags + ["lookup", BE, sid])
    assert p.returncode == 0 and srv in p.stdout, (p.stdout, p.stderr)
    # every Sentinel down: exit 4, naming what failed
    for s in ss.sentinels[1:]:
        s.kill()
    p = ctl(["-c", cfgfile, "-v", "--timeout", "1s", "status"])
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "master mymaster" in p.stderr and "Sentinel 127.0.0.1:" in p.stderr, p.stderr
    print("every Sentinel down: " + p.stderr.strip())


def test_sentinel_password_and_a_wrong_one(procs):
    ss = SentinelSet(procs, sentinel_password="s3ntinel")
    c = SentinelCluster(procs, ss, instances=1, sentinel_password="s3ntinel")
    r = harness.ws_open(c.lbs[0].ws_url)
    assert action(r) == "new", r.headers
    p = ctl(["-c", c.lbs[0].stickyd.config_path, "status", BE])
    assert p.returncode == 0, p.stderr
    env = dict(os.environ, STICKYD_REDIS_SENTINEL_PASSWORD="wrong")
    p = subprocess.run([str(STICKYCTL), "-c", str(c.lbs[0].stickyd.config_path), "status"],
                       capture_output=True, text=True, timeout=15, env=env)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "WRONGPASS" in p.stderr or "invalid username-password" in p.stderr, p.stderr
    print("\nwrong Sentinel password: " + p.stderr.strip())


def test_a_planned_failover_moves_the_agents_off_the_demoted_master(procs, sentinels):
    """SENTINEL FAILOVER: the old master stays up and becomes a replica (it answers
    writes with -READONLY, or drops its clients); the agents must end up on the
    new master, and no upgrade fails meanwhile."""
    ss = sentinels
    c = SentinelCluster(procs, ss)
    pinned = []
    for i in range(8):
        r = harness.ws_open(c.lbs[i % 2].ws_url)
        pinned.append((r.jar(), r.server))
    marks = [len(lb.stickyd.log_text()) for lb in c.lbs]
    switch = SwitchWatch(ss.sentinels[2])
    up = Upgrader(c.lbs, pinned)
    up.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert ss.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER) in (True, "OK")
    switch.join(15)
    assert switch.t is not None, "no +switch-master within 15 s"
    wait_until(lambda: all(follows(lb.stickyd, ss.replica.port, m)
                           for lb, m in zip(c.lbs, marks)), 10, interval=0.02,
               what="the agents to follow the promoted replica")
    t_follow = time.monotonic()
    time.sleep(0.5)
    up.stop()
    print("\nplanned failover: +switch-master %.2f s after SENTINEL FAILOVER, agents on the "
          "new master %.3f s after that; %d upgrades, answers %s"
          % (switch.t - t0, t_follow - switch.t, up.n, up.answers))
    assert t_follow - switch.t <= 1.0, t_follow - switch.t
    assert up.failures == [], up.failures[:10]
    # what the agents write now lands on the new master
    r = harness.ws_open(c.lbs[1].ws_url)
    assert action(r) == "new", r.headers
    harness.wait_record(ss.replica.client(), r.cookie(), BE, r.server)


def test_a_sentinel_naming_a_replica_is_not_believed(procs):
    """The ROLE check: a Sentinel told to monitor the replica's address names it
    as the master; the agent refuses it (and says so), keeps asking, and follows
    once the Sentinel names the real master."""
    primary = procs.redis("redis-a")
    replica = procs.add(harness.Redis(procs.workdir, "redis-b"))
    replica.argv += ["--replicaof", LOOPBACK, str(primary.port)]
    replica.start()
    s = procs.add(Sentinel(procs.workdir, "sentinel1", replica.port)).start()
    agent = procs.stickyd("stickyd-lb1", redis_port=free_port(), instance="lb1",
                          backends={BE: ["ws1", "ws2"]},
                          extra={"redis": {"sentinels": [s.addr], "master_name": MASTER},
                                 "haproxy": AGENT_TIMING["haproxy"]})
    wait_until(lambda: "127.0.0.1:%d is not a master (ROLE: slave)" % replica.port
               in agent.log_text(), 5, what="the agent to refuse the replica")
    assert not follows(agent, replica.port), agent.log_tail(20)
    p = ctl(["-c", agent.config_path, "status"])
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "is not a master (ROLE: slave)" in p.stderr, p.stderr
    # the Sentinel is corrected: the agent follows within its rediscovery
    sc = s.client()
    sc.execute_command("SENTINEL", "REMOVE", MASTER)
    sc.execute_command("SENTINEL", "MONITOR", MASTER, LOOPBACK, primary.port, 1)
    t0 = time.monotonic()
    wait_until(lambda: follows(agent, primary.port), 5, interval=0.02,
               what="the agent to follow the real master")
    print("\nfollowed the corrected Sentinel after %.2f s" % (time.monotonic() - t0))
    wait_until(lambda: "lb1" in primary.client().zrange(KP + "insts", 0, -1), 5,
               what="the agent's heartbeat on the real master")


def test_reload_keeps_the_sentinel_settings_and_says_a_restart_is_needed(procs):
    primary = procs.redis("redis-a")
    s = procs.add(Sentinel(procs.workdir, "sentinel1", primary.port)).start()
    agent = procs.stickyd("stickyd-lb1", redis_port=free_port(), instance="lb1",
                          backends={BE: ["ws1", "ws2"]},
                          extra={"redis": {"sentinels": [s.addr], "master_name": MASTER},
                                 "haproxy": AGENT_TIMING["haproxy"]})
    wait_until(lambda: follows(agent, primary.port), 5, what="the agent on the master")
    wait_until(lambda: primary.client().zscore(KP + "insts", "lb1"), 5,
               what="the agent's heartbeat")
    mark = len(agent.log_text())
    redis_cfg = dict(agent.config["redis"], sentinels=[s.addr, "127.0.0.1:1"],
                     master_name="other", timeout="300ms")
    agent.update_config(redis=redis_cfg)
    agent.reload()
    wait_until(lambda: "configuration reloaded" in agent.log_text()[mark:], 5,
               what="the reload")
    log = agent.log_text()[mark:]
    assert ("reload: redis.sentinels, master_name or the Sentinel credentials changed; this "
            "needs a restart (still following %s)" % MASTER) in log, log
    # still on the same master, still writing its heartbeat there
    assert "redis: the master is now" not in log, log
    before = primary.client().zscore(KP + "insts", "lb1") or 0
    wait_until(lambda: (primary.client().zscore(KP + "insts", "lb1") or 0) > before, 5,
               what="a heartbeat after the reload")
    # a bad Sentinel list is refused at reload, with its position
    agent.update_config(redis=dict(redis_cfg, sentinels=["127.0.0.1:1", "nowhere:26379"]))
    mark = len(agent.log_text())
    agent.reload()
    wait_until(lambda: "reload failed" in agent.log_text()[mark:], 5, what="the refusal")
    line = [ln for ln in agent.log_text()[mark:].splitlines() if "reload failed" in ln][0]
    assert re.search(r"stickyd-lb1\.json:\d+:\d+: redis\.sentinels\[1\]: 'nowhere' is not a "
                     r"numeric IPv4/IPv6 address", line), line


def test_agents_learn_the_other_sentinels_and_survive_the_configured_one(procs, sentinels,
                                                                         ws_pool):
    """Configured with one Sentinel only, the agents learn the two others from it
    (SENTINEL sentinels); with that one dead, they still find the new master after
    the primary dies, and no upgrade fails."""
    ss = sentinels
    c = SentinelCluster(procs, ss, sentinel_addrs=ss.addrs[:1])
    for lb in c.lbs:
        wait_until(lambda: lb.stickyd.log_text().count("sentinel: learned Sentinel") == 2, 5,
                   what="%s to learn the two other Sentinels" % lb.name)
        for a in ss.addrs[1:]:
            assert "learned Sentinel %s from %s" % (a, ss.addrs[0]) in lb.stickyd.log_text()
    pinned = []
    for i in range(8):
        r = harness.ws_open(c.lbs[i % 2].ws_url)
        pinned.append((r.jar(), r.server))
    marks = [len(lb.stickyd.log_text()) for lb in c.lbs]
    ss.sentinels[0].kill()
    switch = SwitchWatch(ss.sentinels[1])
    up = Upgrader(c.lbs, pinned)
    up.start()
    time.sleep(0.3)
    t_kill = time.monotonic()
    ss.primary.kill()
    wait_until(lambda: all(follows(lb.stickyd, ss.replica.port, m)
                           for lb, m in zip(c.lbs, marks)), 20, interval=0.02,
               what="the agents to follow through the learned Sentinels")
    t_follow = time.monotonic()
    up.stop()
    switch.join(10)
    assert switch.t is not None, "no +switch-master"
    print("\nwith the configured Sentinel dead: +switch-master %.2f s after the kill, agents on "
          "the new master %.2f s after it; %d upgrades, answers %s"
          % (switch.t - t_kill, t_follow - switch.t, up.n, up.answers))
    assert t_follow - t_kill <= (switch.t - t_kill) + 1.0
    assert up.failures == [], up.failures[:10]
    for jar, srv in pinned:
        r = harness.ws_open(c.lbs[0].ws_url, cookie=jar)
        assert r.server == srv, (srv, r, r.headers)
