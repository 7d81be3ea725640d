#!/usr/bin/env bash
# The benchmarks behind `make bench` (which builds everything first; this script
# builds nothing). Each section starts what it needs on 127.0.0.1 only, in one temp
# dir, prints a header and its figures, and everything is stopped by the trap even
# on failure. Figures only: nothing here asserts a speed (the machine is shared).
#
# To add a section: write a `section_<name>` function below the last one, using
# bench_header / agent_start / agent_report / agent_stop, and add <name> to SECTIONS
# at the bottom.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STICKYD=${STICKYD:-$ROOT/agent/stickyd}
SPOP_BENCH=${SPOP_BENCH:-$ROOT/build/bench/spop_bench}
BENCH_SECONDS=${BENCH_SECONDS:-5}   # measured seconds per run
BENCH_WARMUP=${BENCH_WARMUP:-1}     # warm-up seconds per run, not measured

for bin in "$STICKYD" "$SPOP_BENCH"; do
    [ -x "$bin" ] || { echo "bench: $bin is missing; run 'make bench'" >&2; exit 2; }
done

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_init bench  # $TMP; PIDS: every process a section started (redis-server...: add yours)
AGENT_PID=""
AGENT_PORT=""

# ---- helpers shared by every section (bench_header comes from lib.sh) ------------

# agent_start NAME [JSON members...]: start stickyd on a free loopback port with a
# minimal configuration plus the given top-level JSON members (e.g. '"redis": {...}').
# Sets AGENT_PID and AGENT_PORT. Without a "redis" member, Redis points at a socket
# path that does not exist, so this bench never touches anyone's Redis.
agent_start() {
    local name=$1; shift
    local dir=$TMP/$name
    mkdir -p "$dir"
    local extra=""
    local member
    for member in "$@"; do extra="$extra, $member"; done
    case "$extra" in
        *'"redis"'*) ;;
        *) extra="$extra, \"redis\": {\"unix\": \"$dir/no-redis.sock\"}" ;;
    esac
    printf '{"listen": "127.0.0.1:0", "log_level": "warn"%s}\n' "$extra" >"$dir/stickyd.json"
    "$STICKYD" --config "$dir/stickyd.json" >"$dir/stickyd.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    AGENT_PORT=$(listen_port "$AGENT_PID")
    if [ -z "$AGENT_PORT" ]; then
        echo "bench: stickyd did not start listening; its log:" >&2
        cat "$dir/stickyd.log" >&2
        exit 1
    fi
    echo "agent: stickyd pid $AGENT_PID on 127.0.0.1:$AGENT_PORT"
}

# Total CPU seconds (utime + stime) and peak RSS of the running agent.
agent_report() {
    local tck hwm
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
        echo "agent totals: stickyd pid $AGENT_PID is gone (crashed?)"
        return 1
    fi
    tck=$(getconf CLK_TCK)
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGENT_PID/status")
    # fields counted after the last ')' (the command name may hold spaces): 12 utime, 13 stime
    sed 's/.*) //' "/proc/$AGENT_PID/stat" | awk -v tck="$tck" -v hwm="$hwm" '{
        printf "agent totals: CPU %.2f s (user %.2f s, system %.2f s) since start, " \
               "peak RSS %.1f MiB\n", ($12 + $13) / tck, $12 / tck, $13 / tck, hwm / 1024 }'
}

# Stop the agent gracefully (SIGTERM drains; SIGKILL after 5 s).
agent_stop() {
    bench_stop "$AGENT_PID" 50
    AGENT_PID=""
}

# spop BENCH-ARGS...: spop_bench against the current agent, with its CPU/RSS.
spop() {
    "$SPOP_BENCH" -H 127.0.0.1 -p "$AGENT_PORT" -P "$AGENT_PID" \
        -t "$BENCH_SECONDS" -w "$BENCH_WARMUP" "$@"
}

# ---- section: SPOP engine, no-op handler ---------------------------------------
# The engine alone: NOTIFY frames carrying a message no handler knows ("noop"), which
# the agent ACKs harmlessly. Targets on a 2-core machine, generator included:
# >= 250,000 NOTIFY->ACK/s closed loop, p99 < 1 ms at 50,000/s open loop.
section_spop_noop() {
    bench_header "SPOP engine: no-op handler (no Redis)"
    agent_start spop_noop
    local rc=0
    local out=$TMP/spop_noop/figures
    echo "--- closed loop: 4 connections x 20 in flight, ${BENCH_SECONDS} s ---"
    spop -c 4 -d 20 -m noop -M -l closed. | tee -a "$out" | grep -v '^closed\.' || rc=1
    echo "--- open loop: 50,000 NOTIFY/s over 4 connections, ${BENCH_SECONDS} s ---"
    spop -c 4 -d 20 -m noop -r 50000 -M -l open. | tee -a "$out" | grep -v '^open\.' || rc=1
    # Compared, not asserted: on a shared machine a miss is a figure to look at.
    awk -F= '$1 == "closed.rate" { r = $2 } $1 == "open.p99_us" { p = $2 }
        END { rv = (r >= 250000) ? "met" : "MISSED"; pv = (p < 1000) ? "met" : "MISSED"
              printf "vs targets: closed loop %d/s (target >= 250000: %s), ", r, rv
              printf "open loop p99 %.0f us (target < 1000: %s)\n", p, pv }' "$out"
    agent_report || rc=1
    agent_stop
    if [ -s "$TMP/spop_noop/stickyd.log" ]; then
        echo "agent log (warnings and errors; Redis and secret warnings are expected here):"
        sed 's/^/  /' "$TMP/spop_noop/stickyd.log" | tail -20
    fi
    return $rc
}

# ---- (new sections go above this line) ---------------------------------------------

SECTIONS=${BENCH_SECTIONS:-"spop_noop"}
status=0
for s in $SECTIONS; do
    "section_$s" || status=1
done
[ "${BENCH_WS:-1}" = 0 ] || "$ROOT/tests/bench/ws_bench.sh" || status=1  # BENCH_WS=0 skips
[ "${BENCH_UPGRADE:-1}" = 0 ] || "$ROOT/tests/bench/upgrade_bench.sh" || status=1  # BENCH_UPGRADE=0 skips
[ "${BENCH_METRICS:-1}" = 0 ] || "$ROOT/tests/bench/metrics_bench.sh" || status=1  # BENCH_METRICS=0
# BENCH_SPOE=0 skips; on every HAProxy of the matrix (scripts/haproxy-matrix.sh)
[ "${BENCH_SPOE:-1}" = 0 ] || "$ROOT/tests/bench/spoe_bench.sh" || status=1
exit $status
