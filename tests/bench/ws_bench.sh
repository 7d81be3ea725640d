#!/usr/bin/env bash
# ws_bench.sh - the WebSocket upgrade section of `make bench` (called by tests/bench/run.sh;
# runs alone as well once `make bench` has built build/bench/ws_bench and ws_backend).
#
# Upgrades per second and upgrade latency through HAProxy with stickyd (the reference
# config, rendered by scripts/render-haproxy.py: one SPOE round trip per upgrade, Redis,
# the close line over syslog) against the same HAProxy binary with its own
# "cookie SRV insert indirect nocache" stickiness and no agent, in the same run, on
# the same backend servers. Everything (redis-server, ws_backend, two HAProxys, stickyd)
# is started here on 127.0.0.1 in one temp dir and stopped by the trap.
# Figures only: the targets are compared, not asserted (the machine is shared).
#
# Each run alternates between the two HAProxys in short slices (a paired comparison:
# both see the same background load, which on a shared machine moves a lot).
# Environment: BENCH_SECONDS (5) measured on each side per run, BENCH_WARMUP (1),
# WS_BENCH_CONNS (50) upgrades in flight, WS_BENCH_RATES ("200 1000") upgrades/s of
# the fixed-rate runs, WS_BENCH_SLICE (0.5) seconds per slice, WS_BENCH_REPEAT (1) runs
# of each kind (the summary shows medians).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
STICKYD=${STICKYD:-$ROOT/agent/stickyd}
WS_BENCH=${WS_BENCH:-$ROOT/build/bench/ws_bench}
WS_BACKEND=${WS_BACKEND:-$ROOT/build/bench/ws_backend}
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${WS_BENCH_CONNS:-50}
RATES=${WS_BENCH_RATES:-200 1000}

for bin in "$STICKYD" "$WS_BENCH" "$WS_BACKEND" "$HAPROXY" "$REDIS_SERVER"; do
    [ -x "$bin" ] || { echo "ws_bench: $bin is missing; run 'make bench'" >&2; exit 2; }
done

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_init wsbench  # $TMP, and the trap that stops every PIDS entry
NAMES=()            # NAMES[i] started PIDS[i]: its log is $TMP/NAME.log

start() {
    local name=$1; shift
    "$@" >"$TMP/$name.log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
}

wait_for() {
    local what=$1 n i; shift
    for ((n = 0; n < 200; n++)); do
        "$@" >/dev/null 2>&1 && return 0
        for i in "${!PIDS[@]}"; do
            kill -0 "${PIDS[i]}" 2>/dev/null && continue
            echo "ws_bench: ${NAMES[i]} exited; its log:" >&2
            tail -20 "$TMP/${NAMES[i]}.log" >&2
            exit 1
        done
        sleep 0.1
    done
    echo "ws_bench: timed out waiting for $what" >&2
    for i in "${!NAMES[@]}"; do
        echo "--- ${NAMES[i]}" >&2
        tail -5 "$TMP/${NAMES[i]}.log" >&2
    done
    exit 1
}

# Free loopback ports, all asked for at once so the kernel hands out distinct ones.
read -r P_REDIS P_AGENT P_SYSLOG P_HA_AGENT P_HA_PLAIN P_WS1 P_WS2 P_WS3 < <("$PY" -c '
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM if i == 2 else socket.SOCK_STREAM)
         for i in range(8)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

# show_stat SOCKET BACKEND SERVER: true when HAProxy has that server UP.
server_up() {
    echo "show stat" | socat -t 2 - "UNIX-CONNECT:$1" \
        | awk -F, -v b="$2" -v s="$3" '$1 == b && $2 == s && $18 ~ /^UP/ { ok = 1 }
                                        END { exit !ok }'
}

bench_header "WebSocket upgrades through HAProxy: stickyd (reference config) vs cookie insert" \
    "(shared machine: other work may be running)"
printf 'haproxy %s, redis-server %s\n' "$("$HAPROXY" -v | awk 'NR == 1 { print $3 }')" \
    "$("$REDIS_SERVER" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"

# ---- the parts --------------------------------------------------------------------
mkdir -p "$TMP/redis"
start redis "$REDIS_SERVER" --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$TMP/redis" --daemonize no --protected-mode yes --enable-debug-command local
start ws_backend "$WS_BACKEND" "ws1=$P_WS1" "ws2=$P_WS2" "ws3=$P_WS3"
wait_for redis /usr/bin/redis-cli -p "$P_REDIS" ping
wait_for ws_backend grep -q "ws3 listening" "$TMP/ws_backend.log"

# HAProxy + stickyd: the reference config, as `make run` renders it.
"$PY" "$ROOT/scripts/render-haproxy.py" --spec "$ROOT/haproxy-conf/demo-topology.json" \
    --out "$TMP/ha-agent" --bind "127.0.0.1:$P_HA_AGENT" \
    --backend "be_ws:ws1=127.0.0.1:$P_WS1,ws2=127.0.0.1:$P_WS2,ws3=127.0.0.1:$P_WS3" \
    --agent "127.0.0.1:$P_AGENT" --syslog-udp "127.0.0.1:$P_SYSLOG" \
    --stats-socket "$TMP/ha-agent.sock" --no-cookie-secure --instance bench-lb1 \
    --spoe-path "$TMP/ha-agent/stickyd.spoe" --haproxy "$HAPROXY" >/dev/null
start haproxy_agent "$HAPROXY" -db -f "$TMP/ha-agent/haproxy.cfg"

# The same HAProxy with its own cookie stickiness: same frontend, defaults, balance,
# health checks and servers; no SPOE filter, no close-line log, no agent.
cat >"$TMP/ha-plain.cfg" <<EOF
global
    stats socket $TMP/ha-plain.sock mode 600 level admin
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout tunnel 1h
    timeout client-fin 30s
    timeout server-fin 30s
    retries 2
    option redispatch
    option dontlognull
frontend fe_ws
    bind 127.0.0.1:$P_HA_PLAIN
    default_backend be_ws
backend be_ws
    balance leastconn
    cookie SRV insert indirect nocache httponly
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    default-server check inter 2s rise 1 fall 2
    server ws1 127.0.0.1:$P_WS1 weight 100 cookie s1
    server ws2 127.0.0.1:$P_WS2 weight 100 cookie s2
    server ws3 127.0.0.1:$P_WS3 weight 100 cookie s3
EOF
"$HAPROXY" -c -q -f "$TMP/ha-plain.cfg"
start haproxy_plain "$HAPROXY" -db -f "$TMP/ha-plain.cfg"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/secret.key"
cat >"$TMP/stickyd.json" <<EOF
{
  "listen": "127.0.0.1:$P_AGENT",
  "log_level": "info",
  "instance": "bench-lb1",
  "redis": {"host": "127.0.0.1", "port": $P_REDIS},
  "session": {"secret_file": "$TMP/secret.key"},
  "haproxy": {"stats_socket": "unix:$TMP/ha-agent.sock"},
  "syslog": {"udp": "127.0.0.1:$P_SYSLOG"}
}
EOF
start stickyd "$STICKYD" --config "$TMP/stickyd.json"
AGENT_PID=${PIDS[-1]}

wait_for "the agent UP in HAProxy" server_up "$TMP/ha-agent.sock" stickyd_agents agent1
for s in ws1 ws2 ws3; do
    wait_for "$s UP" server_up "$TMP/ha-agent.sock" be_ws "$s"
    wait_for "$s UP" server_up "$TMP/ha-plain.sock" be_ws "$s"
done
servers_known() {
    [ "$(/usr/bin/redis-cli -p "$P_REDIS" HLEN 'sticky:{be_ws}:servers')" = 3 ]
}
wait_for "stickyd to publish the servers" servers_known

echo "measured: ws_bench (1 thread, epoll) -> HAProxy -> ws_backend (C, 1 thread, 3 ports:"
echo "  ws1..ws3, answers 101 with the real Sec-WebSocket-Accept). One upgrade = TCP connect,"
echo "  GET Upgrade: websocket (+ Cookie for a returning client), the whole 101 header block"
echo "  read, a masked close frame sent, socket closed. Latency: connect() to end of 101 headers."
echo "  with stickyd, per upgrade: sticky-assign over SPOP (answered from the cookie's tag or"
echo "  the fleet view; the open, the record touch and the close line reach Redis in batches);"
echo "  sticky-established only when HAProxy used another server than the agent's choice."
echo "  Every process (generator, HAProxys, stickyd, redis, ws_backend) shares $(nproc) cores."

pid_of() {
    local i
    for i in "${!NAMES[@]}"; do
        if [ "${NAMES[i]}" = "$1" ]; then
            echo "${PIDS[i]}"
        fi
    done
}
# cpu_ticks PID...: utime + stime of each (fields 14, 15 of /proc/PID/stat; the command
# name in field 2 has no spaces here).
cpu_ticks() {
    local pid
    for pid in "$@"; do
        awk '{ printf "%d ", $14 + $15 }' "/proc/$pid/stat"
    done
}
CPU_NAMES=(haproxy_plain haproxy_agent stickyd redis ws_backend)
CPU_PIDS=()
for n in "${CPU_NAMES[@]}"; do
    CPU_PIDS+=("$(pid_of "$n")")
done
CLK_TCK=$(getconf CLK_TCK)

# run MIX ARGS...: one ws_bench run alternating between the two HAProxys every
# $SLICE s (so both see the same background load), $SECS s measured on each. Its
# key=value lines (plain.MIX.*, agent.MIX.*) and the CPU each process used in the
# measured window (MIX.cpu_ms_*) go into $TMP/figures.
run() {
    local mix=$1 before after i out
    shift
    "$WS_BENCH" -T "plain.$mix=$P_HA_PLAIN" -T "agent.$mix=$P_HA_AGENT" -c "$CONNS" \
        -t "$(awk -v s="$SECS" 'BEGIN { print 2 * s }')" -w "$WARMUP" -s "$SLICE" "$@" >"$TMP/run.out" &
    local bpid=$!
    sleep "$WARMUP"
    read -r -a before <<<"$(cpu_ticks "${CPU_PIDS[@]}")"
    wait "$bpid" || { cat "$TMP/run.out"; return 1; }
    read -r -a after <<<"$(cpu_ticks "${CPU_PIDS[@]}")"
    out=$(cat "$TMP/run.out")
    grep -v "^[a-z]*\.$mix\." <<<"$out" || true
    grep "^[a-z]*\.$mix\." <<<"$out" >>"$TMP/figures"
    for i in "${!CPU_NAMES[@]}"; do
        echo "cpu.$mix.${CPU_NAMES[i]}=$(( (after[i] - before[i]) * 1000 / CLK_TCK ))" \
            >>"$TMP/figures"
    done
}

SLICE=${WS_BENCH_SLICE:-0.5}
REPEAT=${WS_BENCH_REPEAT:-1}
echo "each run alternates plain / agent every $SLICE s: $SECS s measured on each (+$WARMUP s"
echo "  warm-up); upgrades are counted for the HAProxy they were started on."
rc=0
for ((rep = 1; rep <= REPEAT; rep++)); do
    if [ "$REPEAT" -gt 1 ]; then
        echo "=== repeat $rep of $REPEAT"
    fi
    echo "--- closed loop: $CONNS upgrades in flight, 100% new clients ---"
    run new -r 0 || rc=1
    echo "--- closed loop: $CONNS upgrades in flight, 90% returning clients ---"
    run ret90 -r 90 || rc=1
    for r in $RATES; do
        echo "--- fixed rate: $r upgrades/s, 90% returning clients ---"
        run "rate$r" -r 90 -R "$r" || rc=1
    done
    echo "--- reconnect storm: $CONNS in flight, 100% returning, Redis stalled 1 s in the middle ---"
    ( sleep "$(awk -v w="$WARMUP" -v s="$SECS" 'BEGIN { print w + s }')"
      /usr/bin/redis-cli -p "$P_REDIS" DEBUG SLEEP 1 >/dev/null ) &
    stall=$!
    run storm -r 100 || rc=1
    wait "$stall" || true
done

# The agent's own view of the same runs (SIGUSR1 logs every counter).
kill -USR1 "$AGENT_PID"
sleep 0.3
echo "stickyd counters after the runs:"
COUNTERS='decision_[a-z]+|sid_invalid|redis_timeouts|redis_errors|conn_[a-z]+_events|syslog_lines'
grep -oE "\b($COUNTERS)[=: ]+[0-9]+" \
    "$TMP/stickyd.log" | tail -12 | tr '\n' ' ' | sed 's/^/  /'
echo
if [ "$REPEAT" -gt 1 ]; then
    echo "--- summary: median of $REPEAT repeats (targets compared, not asserted) ---"
else
    echo "--- summary (targets compared, not asserted) ---"
fi
awk -F= -v rates="$RATES" -v conns="$CONNS" '
# key "plain.new.p99_us" -> every value it took (one per repeat)
{ n = cnt[$1]++; val[$1, n] = $2 + 0 }
function med(key,    n, i, j, t, a) {
    n = cnt[key]
    if (n == 0) return 0
    for (i = 0; i < n; i++) a[i] = val[key, i]
    for (i = 1; i < n; i++)
        for (j = i; j > 0 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return (n % 2) ? a[int(n / 2)] : (a[n / 2 - 1] + a[n / 2]) / 2
}
# CPU microseconds per upgrade of process proc, over the upgrades of side (or both)
function cpu(side, m, proc,    d) {
    d = (side == "both") ? med("plain." m ".done") + med("agent." m ".done") \
                         : med(side "." m ".done")
    return d > 0 ? med("cpu." m "." proc) * 1000 / d : 0
}
END {
    n = split("new ret90 storm", mix, " ")
    split("100% new clients|90% returning clients|storm, Redis stalled 1 s", name, "|")
    nr = split(rates, r, " ")
    for (i = 1; i <= nr; i++) {
        mix[n + i] = "rate" r[i]; rate_of[n + i] = r[i]
        name[n + i] = sprintf("90%% returning, %d/s", r[i])
    }
    n += nr
    printf "%-28s %10s %10s %6s %9s %9s %9s %9s %9s\n", "mix", "plain/s", "agent/s",
        "ratio", "plain p50", "agent p50", "plain p99", "agent p99", "p99 diff"
    for (i = 1; i <= n; i++) {
        m = mix[i]
        pr = med("plain." m ".rate"); ar = med("agent." m ".rate")
        ratio = pr > 0 ? ar / pr : 0
        pp50 = med("plain." m ".p50_us") / 1000; ap50 = med("agent." m ".p50_us") / 1000
        pp99 = med("plain." m ".p99_us") / 1000; ap99 = med("agent." m ".p99_us") / 1000
        d = ap99 - pp99
        printf "%-28s %10d %10d %6.2f %7.3fms %7.3fms %7.3fms %7.3fms %+7.3fms\n", name[i],
            pr, ar, ratio, pp50, ap50, pp99, ap99, d
        if (!(i in rate_of))
            printf "  rate ratio %.2f (target >= 0.80: %s)\n", ratio,
                (ratio >= 0.8) ? "met" : "MISSED"
        else
            printf "  the agent adds %+.3f ms at p99 at %d upgrades/s (target < 1 ms: %s)\n",
                d, rate_of[i], (d < 1) ? "met" : "MISSED"
        printf "  CPU per upgrade: plain haproxy %.0f us; with the agent haproxy %.0f us" \
            " + stickyd %.0f us + redis %.0f us (ws_backend, both: %.0f us)\n",
            cpu("plain", m, "haproxy_plain"), cpu("agent", m, "haproxy_agent"),
            cpu("agent", m, "stickyd"), cpu("agent", m, "redis"), cpu("both", m, "ws_backend")
        pe = med("plain." m ".errors"); ae = med("agent." m ".errors")
        if (pe + ae > 0) printf "  errors: plain %d, agent %d\n", pe, ae
        nc = med("agent." m ".new_without_cookie")
        if (nc > 0)
            printf "  agent: %d new clients got no cookie (no decision within the SPOE" \
                " timeout)\n", nc
        if (med("plain." m ".returning") + med("agent." m ".returning") > 0)
            printf "  returning clients on their first server: plain %d/%d, agent %d/%d\n",
                med("plain." m ".same_server"), med("plain." m ".returning"),
                med("agent." m ".same_server"), med("agent." m ".returning")
        ms = med("plain." m ".missed_starts") + med("agent." m ".missed_starts")
        if (ms > 0)
            printf "  starts missed (all %d slots busy): plain %d, agent %d\n", conns,
                med("plain." m ".missed_starts"), med("agent." m ".missed_starts")
    }
}' "$TMP/figures"
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
