#!/usr/bin/env bash
# upgrade_bench.sh - what one WebSocket upgrade costs Redis and the agents, and what a
# reconnect storm does, with two agents (two load balancers) sharing one Redis.
# Called by tests/bench/run.sh (BENCH_UPGRADE=0 skips it), or alone once `make bench`
# built the tools. Everything runs on 127.0.0.1 in one temp dir; the trap stops it.
# Figures only: the targets are compared, never asserted (the machine is shared).
#
#   1. cost per upgrade at fixed rates (UPGRADE_RATES, default "1000 5000" upgrades/s in
#      all, half on each agent): sticky-assign with the upgrade arg (90 % returning
#      sessions, spop_bench -k 90), and for each upgrade its close line one second
#      later on the agent's syslog port, as HAProxy sends it when the tunnel ends.
#      Redis' and the agents' CPU (utime + stime from /proc) over the measured window,
#      minus what they spend idle over the same time (measured first): per upgrade.
#   2. reconnect storm: both agents as fast as they are driven (closed loop), every
#      session returning, which saturates the box: the share of answers that kept the
#      session's server, decisions/s (so how long 100k reconnects take), CPU per upgrade;
#      then the same storm while redis-benchmark keeps Redis itself saturated.
#   3. Redis memory per session record (1M records of the real shape).
# With STICKYD_BASE=/path/to/an/older/stickyd, sections 1 and 2 also run that binary,
# in the same run, for a ratio (build one from an older commit in a scratch worktree).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
STICKYD=${STICKYD:-$ROOT/agent/stickyd}
SPOP_BENCH=${SPOP_BENCH:-$ROOT/build/bench/spop_bench}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
SECS=${BENCH_SECONDS:-5}
WARMUP=${BENCH_WARMUP:-1}
RATES=${UPGRADE_RATES:-"1000 5000"}
STORM=${STORM_RATE:-20000}  # reconnects/s of the storm, both agents together
RECORDS=${UPGRADE_RECORDS:-1000000}

for bin in "$STICKYD" "$SPOP_BENCH" "$REDIS_SERVER"; do
    [ -x "$bin" ] || { echo "upgrade_bench: $bin is missing; run 'make bench'" >&2; exit 2; }
done

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_init upgrade-bench

read -r P_REDIS P_A P_B P_SA P_SB < <("$PY" -c '
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM if i >= 3 else socket.SOCK_STREAM)
         for i in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

cpu_ns() {  # CPU time of each pid in ns (schedstat: finer than /proc/PID/stat's ticks)
    local p
    for p in "$@"; do
        awk '{ print $1 }' "/proc/$p/schedstat" 2>/dev/null || echo 0
    done | tr '\n' ' '
}

wait_port() {
    for _ in $(seq 1 100); do
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    echo "upgrade_bench: nothing listens on $1" >&2
    return 1
}

mkdir -p "$TMP/redis"
"$REDIS_SERVER" --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$TMP/redis" --daemonize no --protected-mode yes --logfile "$TMP/redis.log" &
REDIS_PID=$!
bench_track "$REDIS_PID"
wait_port "$P_REDIS"
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TMP/secret.key")

# agents BIN: start two agents (instances lbA and lbB) on the shared Redis.
AGENT_PIDS=()
agents() {
    local bin=$1 name port sport i
    AGENT_PIDS=()
    for i in 0 1; do
        name=$([ $i = 0 ] && echo lbA || echo lbB)
        port=$([ $i = 0 ] && echo "$P_A" || echo "$P_B")
        sport=$([ $i = 0 ] && echo "$P_SA" || echo "$P_SB")
        cat >"$TMP/$name.json" <<EOF
{"listen": "127.0.0.1:$port", "log_level": "info", "instance": "$name",
 "redis": {"host": "127.0.0.1", "port": $P_REDIS},
 "session": {"secret_file": "$TMP/secret.key"},
 "syslog": {"udp": "127.0.0.1:$sport"},
 "backends": {"be_ws": {"servers": {"ws1": {}, "ws2": {}, "ws3": {}}}}}
EOF
        "$bin" --config "$TMP/$name.json" >"$TMP/$name.log" 2>&1 &
        AGENT_PIDS+=($!)
        bench_track "$!"
        wait_port "$port"
    done
    sleep 1
}

agents_stop() {
    local p
    for p in "${AGENT_PIDS[@]}"; do bench_stop "$p"; done
    /usr/bin/redis-cli -p "$P_REDIS" flushall >/dev/null
}

# closer RATE SECS PREFIX PORT: the close line of upgrade n of spop_bench (uid
# PREFIX-n, sent at n / RATE s) one second after it, for SECS + 1 s.
closer() {
    "$PY" - "$@" <<'EOF' &
import socket, sys, time
rate, secs, prefix, port = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic() + 1.0
n = 1
while True:
    due = t0 + n / rate
    now = time.monotonic()
    if due - t0 > secs:
        break
    if due > now:
        time.sleep(due - now)
    line = "<134>stickyd: uid=%s-%d be=be_ws srv=x st=101 sid=-" % (prefix, n)
    s.sendto(line.encode(), ("127.0.0.1", port))
    n += 1
EOF
}

# drive LABEL RATE|closed RETURN%: both agents for WARMUP + SECS; the measured window's
# CPU ticks of redis and the two agents go to $TMP/LABEL.cpu, spop_bench's lines to .out.
drive() {
    local label=$1 rate=$2 ret=$3 half before after c1 c2 total=$((WARMUP + SECS))
    local rarg=()
    if [ "$rate" != closed ]; then
        half=$((rate / 2))
        rarg=(-r "$half")
    fi
    local pids=() i port pfx
    for i in 0 1; do
        port=$([ $i = 0 ] && echo "$P_A" || echo "$P_B")
        pfx=$([ $i = 0 ] && echo a || echo b)
        "$SPOP_BENCH" -H 127.0.0.1 -p "$port" -c 4 -d 20 -t "$total" -w 0 -m sticky-assign \
            -k "$ret" "${rarg[@]}" -a backend=str:be_ws -a sid=sid: -a inst=str:lb$pfx \
            -a uid=str:$pfx-%n -a upgrade=str:websocket -a src=ipv4:%n -q \
            >"$TMP/$label.$pfx.out" 2>&1 &
        pids+=($!)
        if [ "$rate" != closed ]; then
            closer "$half" "$total" "$pfx" "$([ $i = 0 ] && echo "$P_SA" || echo "$P_SB")"
            pids+=($!)
        fi
    done
    sleep "$WARMUP"
    before=$(cpu_ns "$REDIS_PID" "${AGENT_PIDS[@]}")
    sleep "$SECS"
    after=$(cpu_ns "$REDIS_PID" "${AGENT_PIDS[@]}")
    for i in "${pids[@]}"; do wait "$i" || true; done
    echo "$before" >"$TMP/$label.cpu"
    echo "$after" >>"$TMP/$label.cpu"
}

idle() {  # LABEL: the same window with no traffic
    local before after
    before=$(cpu_ns "$REDIS_PID" "${AGENT_PIDS[@]}")
    sleep "$SECS"
    after=$(cpu_ns "$REDIS_PID" "${AGENT_PIDS[@]}")
    printf '%s\n%s\n' "$before" "$after" >"$TMP/$1.cpu"
}

# report LABEL IDLE_LABEL: upgrades/s, CPU per upgrade (idle subtracted).
report() {
    local label=$1 idle=$2 rate
    [ -z "${UPGRADE_DEBUG:-}" ] || cat "$TMP/$label.cpu" "$TMP/$idle.cpu" >&2
    rate=$(cat "$TMP/$label.a.out" "$TMP/$label.b.out" | awk -F= '$1 == "rate" { r += $2 }
                                                                 END { print r + 0 }')
    awk -v secs="$SECS" -v label="$label" -v rate="$rate" '
        FILENAME == ARGV[1] { for (i = 1; i <= NF; i++) m[FNR, i] = $i; next }
        { for (i = 1; i <= NF; i++) z[FNR, i] = $i }
        END {
            n = rate * secs
            if (n <= 0) { printf "%-22s no upgrades answered\n", label; exit }
            r = (m[2, 1] - m[1, 1]) - (z[2, 1] - z[1, 1])
            g = (m[2, 2] - m[1, 2] + m[2, 3] - m[1, 3]) - (z[2, 2] - z[1, 2] + z[2, 3] - z[1, 3])
            printf "%-22s %7.0f upgrades/s  redis %6.1f us/upgrade  agents %6.1f us/upgrade" \
                "  (redis busy %.0f%%)\n", label, rate, r / 1e3 / n, g / 1e3 / n,
                100 * (m[2, 1] - m[1, 1]) / 1e9 / secs
        }' "$TMP/$label.cpu" "$TMP/$idle.cpu"
}

# answers LABEL: what both agents answered during the last run (their counters'
# deltas since the previous call): the share of returning sessions that kept their
# server, and what the bounded queues dropped.
answers() {
    local a
    for a in "${AGENT_PIDS[@]}"; do kill -USR1 "$a"; done
    sleep 0.3
    "$PY" - "$1" "$TMP/answers.prev" "$TMP/lbA.log" "$TMP/lbB.log" <<'EOF'
import json, os, re, sys
label, prev_path = sys.argv[1], sys.argv[2]
s = {}
for path in sys.argv[3:]:
    last = {}
    for m in re.finditer(r"stats: (\w+) (\d+)$", open(path).read(), re.M):
        last[m.group(1)] = int(m.group(2))     # the last dump holds the totals
    for k, v in last.items():
        s[k] = s.get(k, 0) + v
first = not os.path.exists(prev_path)
prev = {} if first else json.load(open(prev_path))
json.dump(s, open(prev_path, "w"))
if first:
    sys.exit(0)  # the baseline
d = {k: v - prev.get(k, 0) for k, v in s.items()}
ret = d.get("decision_hit", 0) + d.get("decision_repin", 0) + d.get("decision_fallback", 0)
print("%-22s answers: hit %d, new %d, repin %d, fallback %d; returning sessions that kept"
      " their server: %.2f%%; ledger ops dropped %d, requests shed %d"
      % ("", d.get("decision_hit", 0), d.get("decision_new", 0), d.get("decision_repin", 0),
         d.get("decision_fallback", 0), 100.0 * d.get("decision_hit", 0) / ret if ret else 0,
         d.get("ledger_dropped", 0), d.get("redis_shed", 0)))
EOF
}

section() {  # NAME BIN
    local name=$1 bin=$2 r
    agents "$bin"
    rm -f "$TMP/answers.prev"
    idle "$name.idle"
    answers "$name"
    for r in $RATES; do
        drive "$name.rate$r" "$r" 90
        report "$name.rate$r" "$name.idle"
        answers "$name.rate$r"
    done
    # a storm at what two HAProxies can send (STORM_RATE), while other clients keep
    # Redis saturated (redis-benchmark, pipelined); then as fast as the agents go
    redis-benchmark -p "$P_REDIS" -c 50 -P 16 -n 1000000000 -t get,set -q >/dev/null 2>&1 &
    local rb=$!
    sleep 0.5
    drive "$name.storm${STORM}_busy_redis" "$STORM" 100
    kill "$rb" 2>/dev/null || true
    wait "$rb" 2>/dev/null || true
    report "$name.storm${STORM}_busy_redis" "$name.idle"
    echo "  (its redis figure includes redis-benchmark's own load)"
    answers "$name.storm"
    drive "$name.storm_closed_loop" closed 100
    report "$name.storm_closed_loop" "$name.idle"
    answers "$name.closed"
    agents_stop
}

bench_header "Upgrade cost and reconnect storm: two agents, one Redis (SPOP level)" \
    "(shared machine: other work may be running)"
echo "each run: ${WARMUP}s warm-up + ${SECS}s measured; 90% returning at the fixed rates;"
echo "each upgrade's close line one second later; CPU from /proc, idle subtracted"
section current "$STICKYD"
if [ -n "${STICKYD_BASE:-}" ]; then
    section base "$STICKYD_BASE"
fi

# ---- 3. Redis memory per session record --------------------------------------------
echo "--- Redis memory per session: $RECORDS records of the real shape ---"
before=$(/usr/bin/redis-cli -p "$P_REDIS" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
"$PY" - "$RECORDS" <<'EOF' | /usr/bin/redis-cli -p "$P_REDIS" --pipe >/dev/null
import base64, os, sys, time
n = int(sys.argv[1])
now = int(time.time() * 1000)
out = sys.stdout.buffer
def cmd(*a):
    out.write(b"*%d\r\n" % len(a))
    for x in a:
        out.write(b"$%d\r\n%s\r\n" % (len(x), x))
for i in range(n):
    rid = b"2" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=")
    cmd(b"SET", b"sticky:{be_ws}:s:" + rid, b"ws%d %d %d - lb-%d" % (1 + i % 3, now, now, i % 2),
        b"PX", b"86400000")
EOF
after=$(/usr/bin/redis-cli -p "$P_REDIS" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
awk -v b="$before" -v a="$after" -v n="$RECORDS" \
    'BEGIN { printf "%.1f bytes per session (target <= 200; the hash record was 256.8)\n", (a - b) / n }'
