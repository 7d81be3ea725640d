#!/usr/bin/env bash
# metrics_bench.sh - what serving /metrics costs the decision path (issue 9).
#
# One redis-server (unix socket, no persistence) and one stickyd with metrics.listen,
# on 127.0.0.1 only, in a temp dir that the trap removes. spop_bench sends sticky-assign
# at a fixed open-loop rate (90 % returning sessions) while a scraper GETs /metrics at
#   none   no scraper
#   1hz    one scrape a second (Prometheus' default is one every 15 s)
#   flood  back to back on one keep-alive connection, as fast as the agent answers
# and prints, per run, the agent's CPU per decision (spop_bench's agent_us_per_req:
# the agent's whole CPU, scrapes included, over the decisions ACKed), the decision
# latency p50/p99/p99.9, and the scrapes served. Runs alternate (none, 1hz, flood,
# repeated BENCH_ROUNDS times) so that all three see the same machine load.
# Figures only: nothing is asserted (the machine is shared).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STICKYD=${STICKYD:-$ROOT/agent/stickyd}
SPOP_BENCH=${SPOP_BENCH:-$ROOT/build/bench/spop_bench}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
PYTHON=${PYTHON:-/usr/bin/python3}
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_WARMUP=${BENCH_WARMUP:-1}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
OPEN_RATE=${OPEN_RATE:-10000}

for bin in "$STICKYD" "$SPOP_BENCH"; do
    [ -x "$bin" ] || { echo "metrics_bench: $bin is missing; run 'make bench'" >&2; exit 2; }
done

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_init metrics-bench

"$REDIS_SERVER" --port 0 --unixsocket "$TMP/redis.sock" --save '' --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" &
PIDS+=("$!")
for _ in $(seq 1 100); do
    [ "$(redis-cli -s "$TMP/redis.sock" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/secret.key"
cat >"$TMP/stickyd.json" <<JSON
{"listen": "127.0.0.1:0", "log_level": "info", "instance": "bench",
 "redis": {"unix": "$TMP/redis.sock"},
 "session": {"secret_file": "$TMP/secret.key"},
 "metrics": {"listen": "127.0.0.1:0"},
 "backends": {"ws": {"servers": {"s1": {"weight": 1}, "s2": {"weight": 1},
                                 "s3": {"weight": 1}}}}}
JSON
"$STICKYD" --config "$TMP/stickyd.json" >"$TMP/stickyd.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
METRICS_PORT=""
for _ in $(seq 1 100); do
    METRICS_PORT=$(sed -n 's/.*metrics: serving .* (port \([0-9]*\)).*/\1/p' "$TMP/stickyd.log")
    [ -n "$METRICS_PORT" ] && break
    sleep 0.05
done
AGENT_PORT=$(sed -n 's/.*listening for SPOP on .* (port \([0-9]*\)).*/\1/p' "$TMP/stickyd.log")
[ -n "$METRICS_PORT" ] && [ -n "$AGENT_PORT" ] || {
    echo "metrics_bench: stickyd did not start:" >&2; cat "$TMP/stickyd.log" >&2; exit 1; }

# scraper MODE: GET /metrics (1hz, or flood) until killed; counts scrapes in $TMP/scrapes.
scraper() {
    "$PYTHON" - "$METRICS_PORT" "$1" "$TMP/scrapes" <<'PY' &
import http.client, os, sys, time
port, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
n, size = 0, 0
try:
    while True:
        c.request("GET", "/metrics")
        r = c.getresponse()
        size = len(r.read())
        n += 1
        with open(out + ".tmp", "w") as f:
            f.write("%d %d\n" % (n, size))
        os.replace(out + ".tmp", out)  # never seen half written
        if mode == "1hz":
            time.sleep(1.0)
except KeyboardInterrupt:
    pass
PY
    SCRAPER_PID=$!
    PIDS+=("$SCRAPER_PID")
}

bench_header "metrics: agent CPU per decision with and without a scraper" \
    "(sticky-assign, $OPEN_RATE/s open loop, 90 % returning, Redis on a unix socket)"
status=0
printf '%-6s %8s %10s %8s %8s %9s %9s %12s\n' run rate agent_us p50_us p99_us p999_us \
    scrapes scrape_bytes
for round in $(seq 1 "$BENCH_ROUNDS"); do
    for mode in none 1hz flood; do
        rm -f "$TMP/scrapes"
        SCRAPER_PID=""
        [ "$mode" = none ] || scraper "$mode"
        rc=0
        "$SPOP_BENCH" -H 127.0.0.1 -p "$AGENT_PORT" -P "$AGENT_PID" -t "$BENCH_SECONDS" \
            -w "$BENCH_WARMUP" -m sticky-assign -b ws -k 90 -r "$OPEN_RATE" -V action -q \
            >"$TMP/run.kv" 2>"$TMP/run.err" || rc=$?
        if [ "$rc" != 0 ]; then
            echo "metrics_bench: spop_bench exited $rc ($mode):" >&2
            cat "$TMP/run.err" >&2
            grep -E 'err|timeout' "$TMP/run.kv" >&2 || true
            status=1
        fi
        [ -z "$SCRAPER_PID" ] || bench_stop "$SCRAPER_PID" 5
        kv() { awk -F= -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' \
            "$TMP/run.kv"; }
        # the scraper rewrites the file after every scrape: it may be caught empty
        scrapes=0 bytes=0
        [ ! -s "$TMP/scrapes" ] || read -r scrapes bytes <"$TMP/scrapes" || true
        printf '%-6s %8s %10s %8s %8s %9s %9s %12s\n' "$mode" "$(kv rate)" \
            "$(kv agent_us_per_req)" "$(kv p50_us)" "$(kv p99_us)" "$(kv p999_us)" \
            "$scrapes" "$bytes"
        [ "$(kv var_action_fallback)" = 0 ] || echo "  (fallbacks: $(kv var_action_fallback))"
    done
done
grep -E ' (warn|error) ' "$TMP/stickyd.log" | sed 's/^/agent: /' | tail -5 || true
exit $status
