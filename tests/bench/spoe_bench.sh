#!/usr/bin/env bash
# spoe_bench.sh - the "SPOE through HAProxy" section of `make bench` (called by
# tests/bench/run.sh; runs alone as well once `make` has built agent/stickyd).
#
# On every HAProxy of the matrix (scripts/haproxy-matrix.sh: Debian's 2.6 and each 3.x
# built from ../shared/haproxy): wrk (1 thread, 50 keep-alive connections) -> HAProxy
# (nbthread 1) whose frontend sends one SPOE message per request ("ping", which the
# agent answers with one set-var, txn.bench.pong) and answers the request itself
# (http-request return: no backend server, so HAProxy and the agent are all there is
# to measure). A request the agent did not answer in time gets a 503, so wrk's
# "Non-2xx" count shows every miss. The same HAProxy binary with the same frontend and
# no SPOE filter is measured in the same run, alternating in short rounds (paired: both
# see the same background load on a shared machine).
# Figures: req/s with the agent and without, their ratio, and CPU per request of the
# agent (stickyd) and of HAProxy from /proc/<pid>/stat (CPU time, not wall time).
# Figures only: nothing is asserted (the machine is shared).
#
# Environment: BENCH_SECONDS (5) measured per side per version, in rounds of 1 s (wrk
# takes whole seconds); BENCH_WARMUP (1) s per side; SPOE_BENCH_CONNS (50); HAPROXY_BINS
# (the binaries, instead of the matrix).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
STICKYD=${STICKYD:-$ROOT/agent/stickyd}
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${SPOE_BENCH_CONNS:-50}
WRK=${WRK:-/usr/bin/wrk}

for bin in "$STICKYD" "$WRK"; do
    [ -x "$bin" ] || { echo "spoe_bench: $bin is missing; run 'make bench'" >&2; exit 2; }
done

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_init spoebench  # $TMP, and the trap that stops every PIDS entry

matrix=$("$ROOT/scripts/haproxy-matrix.sh")
bench_header "SPOE through HAProxy: one message per request, stickyd vs no agent" \
    "(shared machine: other work may be running)"
echo "measured: wrk -t1 -c$CONNS (keep-alive) -> HAProxy nbthread 1 -> 'http-request return'"
echo "  with the agent: + filter spoe, send-spoe-group per request: NOTIFY 'ping' (no args)"
echo "  -> stickyd -> ACK with one set-var (txn.bench.pong); no answer in 1 s = 503."
echo "  plain: the same frontend without the filter. $SECS rounds of 1 s alternate plain /"
echo "  agent (+$WARMUP s warm-up each); CPU time from /proc/PID/stat, per request."

# ---- the agent: the built-in ping handler, no Redis --------------------------------
mkdir -p "$TMP/agent"
printf '{"listen": "127.0.0.1:0", "log_level": "info", "redis": {"unix": "%s"}}\n' \
    "$TMP/agent/no-redis.sock" >"$TMP/agent/stickyd.json"
"$STICKYD" --config "$TMP/agent/stickyd.json" >"$TMP/agent/stickyd.log" 2>&1 &
AGENT_PID=$!
bench_track "$AGENT_PID"
AGENT_PORT=$(listen_port "$AGENT_PID")
if [ -z "$AGENT_PORT" ]; then
    echo "spoe_bench: stickyd did not start; its log:" >&2
    cat "$TMP/agent/stickyd.log" >&2
    exit 1
fi

cat >"$TMP/bench.spoe" <<EOF
[bench]
spoe-agent bench-agent
    groups ping-grp
    option var-prefix bench
    option set-on-error error
    no option async
    timeout hello 1s
    timeout idle 30s
    timeout processing 1s
    use-backend agents
spoe-message ping
    args
spoe-group ping-grp
    messages ping
EOF

# write_cfg FILE PORT SOCKET WITH_AGENT(0|1)
write_cfg() {
    local spoe_lines="" agents=""
    if [ "$4" = 1 ]; then
        spoe_lines="    filter spoe engine bench config $TMP/bench.spoe
    http-request send-spoe-group bench ping-grp
    http-request return status 503 if !{ var(txn.bench.pong) -m found }"
        agents="backend agents
    mode tcp
    balance roundrobin
    option spop-check
    timeout connect 1s
    timeout server 1m
    server agent1 127.0.0.1:$AGENT_PORT check inter 1s rise 1 fall 2"
    fi
    cat >"$1" <<EOF
global
    nbthread 1
    maxconn 4096
    stats socket $3 mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s
frontend fe
    bind 127.0.0.1:$2
$spoe_lines
    http-request return status 200 content-type text/plain string ok
$agents
EOF
}

agent_up() {
    echo "show stat" | socat -t 2 - "UNIX-CONNECT:$1" \
        | awk -F, '$1 == "agents" && $2 == "agent1" && $18 ~ /^UP/ { ok = 1 } END { exit !ok }'
}

# wrk_run PORT SECONDS -> "requests non2xx"; fails when wrk got nothing through.
wrk_run() {
    "$WRK" -t1 -c"$CONNS" -d"${2}s" "http://127.0.0.1:$1/" | awk '
        / requests in / { req = $1 } /Non-2xx/ { bad = $NF }
        END { printf "%d %d\n", req, bad; exit (req > 0) ? 0 : 1 }'
}

ticks() { pid_ticks "$AGENT_PID"; }

# pace_counts -> "pace_on pace_holdoff": the agent's counters, from a SIGUSR1 dump
# (events_received is the last line of a dump: it is whole once that line is there).
pace_counts() {
    local log=$TMP/agent/stickyd.log n
    n=$(grep -c 'stats: events_received' "$log" || true)
    kill -USR1 "$AGENT_PID"
    for _ in $(seq 1 50); do
        [ "$(grep -c 'stats: events_received' "$log" || true)" -gt "$n" ] && break
        sleep 0.05
    done
    awk '/stats: pace_on / { on = $NF } /stats: pace_holdoff / { h = $NF }
         END { print on + 0, h + 0 }' "$log"
}
CLK_TCK=$(getconf CLK_TCK)
: >"$TMP/figures"
: >"$TMP/pacing"
rc=0
while read -r ver bin; do
    d=$TMP/ha-$ver
    mkdir -p "$d"
    read -r P_AGENT P_PLAIN < <("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
    write_cfg "$d/agent.cfg" "$P_AGENT" "$d/agent.sock" 1
    write_cfg "$d/plain.cfg" "$P_PLAIN" "$d/plain.sock" 0
    "$bin" -db -f "$d/agent.cfg" >"$d/agent.log" 2>&1 </dev/null &
    HA_AGENT=$!
    bench_track "$HA_AGENT"
    "$bin" -db -f "$d/plain.cfg" >"$d/plain.log" 2>&1 </dev/null &
    HA_PLAIN=$!
    bench_track "$HA_PLAIN"
    ok=0
    for _ in $(seq 1 100); do
        if agent_up "$d/agent.sock" 2>/dev/null; then ok=1; break; fi
        sleep 0.1
    done
    if [ $ok = 0 ]; then
        echo "spoe_bench: HAProxy $ver: the agent never came UP; HAProxy's log:" >&2
        tail -20 "$d/agent.log" >&2
        rc=1
        bench_stop "$HA_AGENT"; bench_stop "$HA_PLAIN"
        continue
    fi
    # One answered request first: the set-var really comes back through HAProxy.
    if ! "$PY" -c 'import sys, urllib.request as u
o = u.build_opener(u.ProxyHandler({}))
sys.exit(0 if o.open(sys.argv[1], timeout=5).status == 200 else 1)' \
        "http://127.0.0.1:$P_AGENT/" 2>/dev/null; then
        echo "spoe_bench: HAProxy $ver: a request through the agent failed" >&2
        rc=1
    fi
    wrk_run "$P_PLAIN" "$WARMUP" >/dev/null
    wrk_run "$P_AGENT" "$WARMUP" >/dev/null
    read -r on0 hold0 < <(pace_counts)
    for ((i = 0; i < SECS; i++)); do
        # wrk's figures: requests, non-2xx, then HAProxy's and the agent's CPU ticks
        b0=$(pid_ticks "$HA_PLAIN")
        read -r req bad < <(wrk_run "$P_PLAIN" 1)
        echo "$ver plain $req $bad $(( $(pid_ticks "$HA_PLAIN") - b0 )) 0" >>"$TMP/figures"
        a0=$(ticks); h0=$(pid_ticks "$HA_AGENT")
        read -r req bad < <(wrk_run "$P_AGENT" 1)
        echo "$ver agent $req $bad $(( $(pid_ticks "$HA_AGENT") - h0 )) $(( $(ticks) - a0 ))" \
            >>"$TMP/figures"
    done
    read -r on1 hold1 < <(pace_counts)
    echo "$ver: switched on $((on1 - on0)) times, backed off $((hold1 - hold0))" >>"$TMP/pacing"
    bench_stop "$HA_AGENT"
    bench_stop "$HA_PLAIN"
done <<<"$matrix"

echo "--- summary: $SECS s per side; CPU per request in us (CPU time / requests) ---"
awk -v tck="$CLK_TCK" -v secs="$SECS" '
{ v = $1; if (!(v in seen)) { seen[v] = 1; order[n++] = v }
  req[v, $2] += $3; bad[v, $2] += $4; hcpu[v, $2] += $5; acpu[v, $2] += $6 }
END {
    printf "%-8s %10s %10s %7s %12s %12s %12s %8s\n", "haproxy", "plain/s", "agent/s",
        "ratio", "stickyd/msg", "haproxy/req", "(plain)", "non-2xx"
    for (i = 0; i < n; i++) {
        v = order[i]; pr = req[v, "plain"]; ar = req[v, "agent"]
        ratio = (pr > 0) ? ar / pr : 0
        sd = (ar > 0) ? acpu[v, "agent"] * 1e6 / tck / ar : 0
        ha = (ar > 0) ? hcpu[v, "agent"] * 1e6 / tck / ar : 0
        hp = (pr > 0) ? hcpu[v, "plain"] * 1e6 / tck / pr : 0
        printf "%-8s %10d %10d %7.2f %10.2fus %10.2fus %10.2fus %8d\n", v, pr / secs,
            ar / secs, ratio, sd, ha, hp, bad[v, "agent"] + bad[v, "plain"]
    }
}' "$TMP/figures"
echo "stickyd pacing (agent/pace.h) during each version's runs:"
sed 's/^/  /' "$TMP/pacing"
if grep -q ' \(warn\|error\) ' "$TMP/agent/stickyd.log"; then
    echo "agent log (warnings and errors; the Redis warnings are expected here):"
    grep ' \(warn\|error\) ' "$TMP/agent/stickyd.log" | sed 's/^/  /' | tail -10
fi
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
