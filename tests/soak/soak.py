#!/usr/bin/python3
"""soak.py - `make soak`: a long run of churn against an ASan + UBSan stickyd.

One real redis-server, three WebSocket servers, one HAProxy rendered by
scripts/render-haproxy.py with its stickyd (build/san/stickyd, the sanitizer
build), for SOAK_SECONDS (default 1800). The load, in rounds:
  - connection churn: waves of WebSockets opened through HAProxy (new sessions, and
    reconnects with the cookie the agent issued, which must land on the same server
    while nothing failed), each echoed once and closed;
  - reconnects of the agent to Redis: redis-server restarted (empty) every
    SOAK_REDIS_EVERY seconds;
  - HAProxy reloads (-x/-sf, the agent's SPOP connections and runtime API redone)
    every SOAK_RELOAD_EVERY seconds, and an agent SIGHUP now and then.
The agent's RSS and open descriptors are sampled every round. At the end (after a
quiet period with nothing open) it asserts:
  - flat RSS: the last quarter's median is within max(10 %, 8 MiB) of the median
    of the second quarter (the first quarter is warm-up: pools, ASan's quarantine);
  - no descriptor growth: at the end, after the last wave closed and the agent
    settled, no more descriptors than the first half's peak, plus 2 (HAProxy's SPOE
    keeps a varying number of connections, more while an old process drains);
  - the agent never died, and no sanitizer report (ASan, UBSan, LeakSanitizer at
    exit: the agent is stopped with SIGTERM and must exit 0) was written;
  - the churn worked: most waves' sessions were assigned and reconnects stuck.
Prints the figures (and writes them as JSON to build/soak/figures.json).
"""
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAN_STICKYD = REPO / "build" / "san" / "stickyd"
os.environ.setdefault("STICKYD", str(SAN_STICKYD))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402  (after STICKYD is set: harness reads it at import)

SECONDS = int(os.environ.get("SOAK_SECONDS", "1800"))
REDIS_EVERY = float(os.environ.get("SOAK_REDIS_EVERY", "120"))
RELOAD_EVERY = float(os.environ.get("SOAK_RELOAD_EVERY", "90"))
HUP_EVERY = float(os.environ.get("SOAK_HUP_EVERY", "300"))
WAVE = int(os.environ.get("SOAK_WAVE", "40"))
PAUSE = float(os.environ.get("SOAK_PAUSE", "0.2"))  # between waves: a steady load, not a flood


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    if not Path(os.environ["STICKYD"]).exists():
        sys.exit("soak: %s is not built (make build/san/stickyd)" % os.environ["STICKYD"])
    out_dir = REPO / "build" / "soak"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stickyd-soak."))
    san_logs = work / "sanitizer"
    san_logs.mkdir()
    # the agent inherits these: reports go to files (the check below), a small
    # quarantine so that RSS measures the agent, not ASan's delayed frees
    os.environ["ASAN_OPTIONS"] = ("detect_leaks=1:quarantine_size_mb=16:malloc_context_size=10:"
                                  "log_path=%s/asan" % san_logs)
    os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % san_logs
    group = harness.ProcGroup(work)
    figures = {"seconds": SECONDS}
    ok = False
    try:
        st = group.stack(instances=1, servers=3,
                         stickyd={"extra": {"haproxy": dict(harness.FAST_PERIODS)}})
        lb = st.lbs[0]
        lb.wait_up(st.ws)
        agent = lb.stickyd
        pid = agent.pid
        samples = []  # (t, rss KiB, fds)
        t0 = time.monotonic()
        end = t0 + SECONDS
        next_redis, next_reload, next_hup = t0 + REDIS_EVERY, t0 + RELOAD_EVERY, t0 + HUP_EVERY
        waves = opened = failed = reconnects = stuck = fell_back = 0
        redis_restarts = reloads = hups = 0
        cpu0 = cpu_s(pid)
        with harness.WsPool() as pool:
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_redis:
                    st.redis.restart()
                    redis_restarts += 1
                    next_redis = now + REDIS_EVERY
                if now >= next_reload:
                    lb.haproxy.reload()
                    reloads += 1
                    next_reload = now + RELOAD_EVERY
                if now >= next_hup:
                    agent.reload()
                    hups += 1
                    next_hup = now + HUP_EVERY
                # a wave: new sessions, then the same clients back with their cookies
                try:
                    conns = pool.open_many(lb.ws_url, WAVE, timeout=10)
                except Exception:  # noqa: BLE001 - a wave during a restart may fail
                    failed += 1
                    conns = []
                opened += len(conns)
                jars = []
                for c in conns:
                    try:
                        c.echo("x")
                        jars.append((c.jar(), c.server))
                    except Exception:  # noqa: BLE001
                        failed += 1
                    pool.close(c)
                for jar, server in jars[: WAVE // 2]:
                    if not jar:
                        fell_back += 1
                        continue
                    try:
                        c = pool.open(lb.ws_url, cookie=jar, timeout=5)
                    except Exception:  # noqa: BLE001
                        failed += 1
                        continue
                    reconnects += 1
                    stuck += c.server == server
                    pool.close(c)
                waves += 1
                time.sleep(PAUSE)
                if not agent.alive:
                    raise RuntimeError("the agent died:\n" + agent.log_tail(80))
                samples.append((time.monotonic() - t0, rss_kib(pid), nfds(pid)))
                if waves % 20 == 0:
                    t, r, n = samples[-1]
                    print("soak: %5.0fs  rss %6.1f MiB  fds %3d  waves %d  sessions %d  "
                          "reconnects %d  redis restarts %d  reloads %d" %
                          (t, r / 1024, n, waves, opened, reconnects, redis_restarts, reloads),
                          flush=True)
            pool.close_all()
        n = len(samples)
        # HAProxy's SPOE keeps a varying number of connections to the agent (more while
        # an old process drains after a reload): the bound is the first half's peak,
        # reached again and again by then; a leak per reload or restart passes it
        warm_fds = max(s[2] for s in samples[: max(1, n // 2)])
        # quiet: every tunnel closed, the agent's SPOP idle connections and Redis settle
        deadline = time.monotonic() + 30
        time.sleep(5)
        while nfds(pid) > warm_fds + 2 and time.monotonic() < deadline:
            time.sleep(1)
        cpu1 = cpu_s(pid)
        end_rss, end_fds = rss_kib(pid), nfds(pid)
        q2 = [s[1] for s in samples[n // 4: n // 2]] or [samples[0][1]]
        q4 = [s[1] for s in samples[3 * n // 4:]] or [end_rss]
        figures.update({
            "waves": waves, "sessions": opened, "reconnects": reconnects,
            "reconnects_same_server": stuck, "no_cookie": fell_back, "failed_ops": failed,
            "redis_restarts": redis_restarts, "haproxy_reloads": reloads, "agent_sighups": hups,
            "rss_kib_first": samples[0][1], "rss_kib_q2_median": statistics.median(q2),
            "rss_kib_q4_median": statistics.median(q4), "rss_kib_end": end_rss,
            "rss_kib_max": max(s[1] for s in samples),
            "fds_first": samples[0][2], "fds_first_half_max": warm_fds, "fds_end": end_fds,
            "fds_max": max(s[2] for s in samples), "agent_cpu_s": round(cpu1 - cpu0, 1),
        })
        agent.stop(timeout=30)  # SIGTERM: a graceful exit, then LeakSanitizer's check
        figures["agent_exit"] = agent.popen.returncode
        reports = sorted(p.name for p in san_logs.iterdir())
        figures["sanitizer_reports"] = reports
        problems = []
        grow = figures["rss_kib_q4_median"] - figures["rss_kib_q2_median"]
        if grow > max(0.10 * figures["rss_kib_q2_median"], 8 * 1024):
            problems.append("RSS grew %d KiB (second-quarter median %d, last-quarter %d)" %
                            (grow, figures["rss_kib_q2_median"], figures["rss_kib_q4_median"]))
        if end_fds > warm_fds + 2:
            problems.append("descriptors grew: at most %d in the first half, %d at the end" %
                            (warm_fds, end_fds))
        if reports:
            for name in reports:
                print("--- %s\n%s" % (name, (san_logs / name).read_text(errors="replace")[:4000]))
            problems.append("sanitizer reports: %s" % ", ".join(reports))
        if figures["agent_exit"] not in (0, None) and not reports:
            problems.append("the agent exited %s on SIGTERM" % figures["agent_exit"])
        if opened < waves * WAVE // 2:
            problems.append("only %d sessions in %d waves of %d" % (opened, waves, WAVE))
        if reconnects and stuck < 0.9 * reconnects:
            problems.append("only %d of %d reconnects kept their server" % (stuck, reconnects))
        print(json.dumps(figures, indent=2))
        (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
        if problems:
            print("soak: FAILED: " + "; ".join(problems))
        else:
            print("soak: passed")
            ok = True
    finally:
        try:
            group.stop_all()
        except Exception as e:  # noqa: BLE001
            print("soak: cleanup: %s" % e)
        if ok and os.environ.get("KEEP_SOAK") is None:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("soak: logs kept in %s" % work)
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
