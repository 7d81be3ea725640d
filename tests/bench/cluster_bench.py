#!/usr/bin/python3
"""cluster_bench.py - Redis CPU per upgrade on a standalone Redis and on a 3 + 3 Redis
Cluster, and how a backend's session records spread over the cluster's masters.

Run alone after `make all build/bench/spop_bench` (/usr/bin/python3; it uses the
integration harness to start real redis-server, redis-cli --cluster create and stickyd
on loopback, in one temp dir, all stopped at the end). Figures only: nothing asserted
(the machine is shared), except that the runs answered.

  1. per topology (standalone, cluster): two agents (instances lbA, lbB, static servers
     ws1..ws3 in be_ws) driven by spop_bench at RATE upgrades/s in all for SECS, 90 %
     returning sessions, each upgrade's close line a second later on the agent's syslog
     port; Redis CPU = used_cpu_sys + used_cpu_user from INFO (summed over the masters
     in the cluster) over the window, minus the same window idle, per upgrade answered;
     the agents' CPU from /proc likewise. The cluster is run without replicas too, as
     the standalone Redis has none (a master's CPU includes feeding its replica).
  2. SESSIONS new sessions in one backend (all new, at RATE): the records each master
     holds (SCAN of sticky:be_ws:s:* per master) against a third of them.

Environment: BENCH_SECONDS (5), UPGRADE_RATE (4000), CLUSTER_SESSIONS (100000).
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import harness  # noqa: E402

SPOP_BENCH = ROOT / "build" / "bench" / "spop_bench"
SECS = float(os.environ.get("BENCH_SECONDS", "5"))
RATE = int(os.environ.get("UPGRADE_RATE", "4000"))
SESSIONS = int(os.environ.get("CLUSTER_SESSIONS", "100000"))
SERVERS = {"be_ws": ["ws1", "ws2", "ws3"]}


def proc_cpu_s(pid):
    """utime + stime of pid, seconds (/proc)."""
    f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(nodes):
    """used_cpu_sys + used_cpu_user of each node (seconds), as a list."""
    out = []
    for n in nodes:
        info = n.client().info("cpu")
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


def closer(rate, secs, prefix, port, stop):
    """The close line of upgrade n (uid PREFIX-n, sent at n / RATE s) a second later."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic() + 1.0
    n = 1
    while not stop.is_set():
        due = t0 + n / rate
        if due - t0 > secs:
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        line = "<134>stickyd: uid=%s-%d be=be_ws srv=x st=101 sid=-" % (prefix, n)
        s.sendto(line.encode(), ("127.0.0.1", port))
        n += 1


def drive(agents, rate, secs, returning, closes=True, tag="x"):
    """spop_bench on each agent (half the rate each) for 1 s warm-up + secs; returns
    (upgrades answered in the measured window, measure) where measure(before/after)
    is taken by the caller around the window through the returned events."""
    half = max(1, rate // len(agents))
    benches, stop, threads = [], threading.Event(), []
    for i, a in enumerate(agents):
        pfx = "%s%s%d" % (tag, "ab"[i], int(time.time() * 1000) % 100000)
        benches.append(subprocess.Popen(
            [str(SPOP_BENCH), "-H", "127.0.0.1", "-p", str(a.port), "-c", "4", "-d", "20",
             "-t", str(secs), "-w", "1", "-m", "sticky-assign", "-k", str(returning),
             "-r", str(half), "-a", "backend=str:be_ws", "-a", "sid=sid:",
             "-a", "inst=str:lb" + "ab"[i], "-a", "uid=str:%s-%%n" % pfx,
             "-a", "upgrade=str:websocket", "-a", "src=ipv4:%n", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        if closes:
            t = threading.Thread(target=closer, args=(half, secs + 1, pfx,
                                                      a.syslog_udp_port, stop), daemon=True)
            t.start()
            threads.append(t)
    return benches, stop, threads


def finish(benches, stop, threads):
    rate = 0.0
    for b in benches:
        out, _ = b.communicate(timeout=120)
        m = re.search(r"^rate=([0-9.]+)", out, re.M)
        if b.returncode not in (0, 1) or not m:
            raise RuntimeError("spop_bench failed:\n" + out)
        rate += float(m.group(1))
    stop.set()
    for t in threads:
        t.join(5)
    return rate


def measure(agents, nodes, rate, secs, returning, tag):
    """Idle window, then the driven window: Redis and agent CPU per upgrade."""
    pids = [a.pid for a in agents]
    c0, a0 = redis_cpu(nodes), sum(proc_cpu_s(p) for p in pids)
    time.sleep(secs)
    c1, a1 = redis_cpu(nodes), sum(proc_cpu_s(p) for p in pids)
    idle_r = [y - x for x, y in zip(c0, c1)]
    idle_a = a1 - a0
    benches, stop, threads = drive(agents, rate, secs, returning, tag=tag)
    time.sleep(1.0)  # spop_bench's warm-up
    c0, a0 = redis_cpu(nodes), sum(proc_cpu_s(p) for p in pids)
    time.sleep(secs)
    c1, a1 = redis_cpu(nodes), sum(proc_cpu_s(p) for p in pids)
    answered = finish(benches, stop, threads)
    n = answered * secs
    per = [1e6 * ((y - x) - i) / n for x, y, i in zip(c0, c1, idle_r)]
    return {"rate": answered, "redis_us": sum(per), "per_node_us": per,
            "agents_us": 1e6 * ((a1 - a0) - idle_a) / n,
            "redis_busy": sum(y - x for x, y in zip(c0, c1)) / secs}


def start_agents(procs, redis_cfg, secret):
    agents = []
    for name in ("lbA", "lbB"):
        agents.append(procs.stickyd("stickyd-" + name, instance=name, backends=SERVERS,
                                    secret_file=secret, log_level="warn",
                                    extra={"redis": dict(redis_cfg, timeout="20ms")}))
    time.sleep(1.5)  # connected, map read, first heartbeat
    return agents


def records_per_master(masters):
    out = {}
    for m in masters:
        cl = m.client()
        out[m.port] = sum(1 for _ in cl.scan_iter(match="sticky:be_ws:s:*", count=5000))
    return out


def main():
    for p in (harness.STICKYD, SPOP_BENCH):
        if not Path(p).exists():
            sys.exit("cluster_bench: %s is missing; run 'make all build/bench/spop_bench'" % p)
    tmp = Path(tempfile.mkdtemp(prefix="stickyd-cluster-bench."))
    procs = harness.ProcGroup(tmp)
    secret = harness.write_secret(tmp / "secret.key")
    print("=== Redis CPU per upgrade, standalone vs a 3 + 3 Redis Cluster (SPOP level) ===")
    print("two agents, %d upgrades/s in all, %.0f s measured after 1 s warm-up, 90 %% "
          "returning, close lines a second later; idle subtracted; %d cores, load %s"
          % (RATE, SECS, os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
    results = {}
    try:
        r = procs.redis("redis-standalone")
        agents = start_agents(procs, {"host": "127.0.0.1", "port": r.port}, secret)
        results["standalone"] = measure(agents, [r], RATE, SECS, 90, "s")
        results["standalone, all new"] = measure(agents, [r], RATE, SECS, 0, "sn")
        for a in agents:
            a.stop()
        r.stop()

        # without replicas first: what the cluster itself costs, replication apart
        rc = procs.redis_cluster(replicas=0, name="rc0")
        agents = start_agents(procs, {"cluster": True, "nodes": rc.seeds}, secret)
        results["cluster, no replicas"] = measure(agents, rc.masters(), RATE, SECS, 90, "c0")
        for a in agents:
            a.stop()
        for n in rc.nodes:
            n.stop()

        rc = procs.redis_cluster()
        agents = start_agents(procs, {"cluster": True, "nodes": rc.seeds}, secret)
        masters = rc.masters()
        results["cluster"] = measure(agents, masters, RATE, SECS, 90, "c")
        results["cluster, all new"] = measure(agents, masters, RATE, SECS, 0, "cn")
        for name, x in results.items():
            print("%-22s %7.0f upgrades/s  redis %6.1f us/upgrade  agents %6.1f us/upgrade"
                  "  (redis busy %.0f%% of a core)"
                  % (name, x["rate"], x["redis_us"], x["agents_us"], 100 * x["redis_busy"]))
            if len(x["per_node_us"]) > 1:
                print("%-22s per master: %s us/upgrade (the busiest one bounds the rate)"
                      % ("", " + ".join("%.1f" % v for v in sorted(x["per_node_us"],
                                                                     reverse=True))))
        print("(the cluster's masters each feed one replica, the standalone Redis none: "
              "\"no replicas\" shows the cluster without that)")
        for kind in ("", ", all new"):
            s, c = results["standalone" + kind], results["cluster" + kind]
            print("cluster / standalone%s: redis CPU per upgrade x%.2f (summed over 3 masters),"
                  " busiest master x%.2f, agents x%.2f"
                  % (kind, c["redis_us"] / s["redis_us"], max(c["per_node_us"]) / s["redis_us"],
                     c["agents_us"] / s["agents_us"]))

        # 2. SESSIONS new sessions in one backend over the masters
        for m in masters:
            m.client().execute_command("FLUSHALL")
        secs = max(1.0, SESSIONS / RATE - 1)  # plus spop_bench's 1 s warm-up
        benches, stop, threads = drive(agents, RATE, secs, 0, closes=False, tag="d")
        answered = finish(benches, stop, threads) * secs
        time.sleep(1.0)  # the last batches land
        per = records_per_master(masters)
        total = sum(per.values())
        print("--- %d new sessions in one backend (about %.0f answered in the measured "
              "window, plus the warm-up): records per master ---" % (total, answered))
        for port, n in sorted(per.items()):
            print("master :%d  %7d records  %5.1f %% (a third: 33.3 %%; %+.1f %% of a third)"
                  % (port, n, 100.0 * n / total, 100.0 * (n - total / 3) / (total / 3)))
        slot = masters[0].client().execute_command("CLUSTER", "KEYSLOT", "sticky:{be_ws}:conns")
        print("the backend's counts, states and instances (sticky:{be_ws}:*) are slot %s, "
              "on one master" % slot)
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
