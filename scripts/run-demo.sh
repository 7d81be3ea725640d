#!/usr/bin/env bash
# run-demo.sh - `make run`: the local demonstration of stickyd, on 127.0.0.1 only.
#
# Starts, in one temp dir: redis-server, three WebSocket echo servers (ws1..ws3,
# each says which server it is), HAProxy with the reference config (rendered by
# scripts/render-haproxy.py, plain-HTTP cookie variant) and stickyd (secret file
# generated here, HAProxy's stats socket, the syslog close-line listener). Then it
# shows affinity at work (scripts/demo-client.py) and keeps running until Ctrl-C.
# A trap stops everything and removes the temp dir on Ctrl-C, TERM and exit.
#
# Environment:
#   DEMO_ONESHOT=1   run the demonstration, then stop and exit (0 on success)
#   DEMO_PORT=8080   HAProxy's frontend; DEMO_WS_PORTS="9001 9002 9003";
#   DEMO_AGENT_PORT=12345  DEMO_SYSLOG_PORT=5514 (UDP)  DEMO_REDIS_PORT=6379
# A default port already taken falls back to a free one (said so); a port set
# explicitly in the environment that is taken is an error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
STICKYD=$ROOT/agent/stickyd
STICKYCTL=$ROOT/agent/stickyctl
ONESHOT=${DEMO_ONESHOT:-0}

for bin in "$STICKYD" "$STICKYCTL" "$HAPROXY" "$REDIS_SERVER" /usr/bin/redis-cli "$PY"; do
    [ -x "$bin" ] || { echo "run-demo: $bin is missing (run 'make run')" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/stickyd-demo.XXXXXX)
PIDS=()      # pid of every process started here, in start order
NAMES=()
SLEEP_PID=""

cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    if [ -n "$SLEEP_PID" ]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
    echo
    echo "run-demo: stopping everything"
    # Reverse order: the agent leaves the cluster (removes its share) while Redis is up.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        # stickyd drains within 2 s; anything still there after 3 s is killed
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "run-demo: stopped ${NAMES[i]} (pid $pid)"
    done
    rm -rf "$TMP"
    echo "run-demo: removed $TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "run-demo: $*" >&2
    exit 1
}

# port_free tcp|udp PORT: true when 127.0.0.1:PORT can be bound now.
port_free() {
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[2])))
except OSError:
    sys.exit(1)
EOF
}

# free_port tcp|udp: a port the kernel hands out now (bind 0, read it back).
free_port() {
    "$PY" -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}

# pick_port WHAT tcp|udp DEFAULT [EXPLICIT]: the port to use for WHAT.
pick_port() {
    local what=$1 kind=$2 def=$3 explicit=${4:-}
    if [ -n "$explicit" ]; then
        port_free "$kind" "$explicit" || die "$what: 127.0.0.1:$explicit ($kind) is taken"
        echo "$explicit"
    elif port_free "$kind" "$def"; then
        echo "$def"
    else
        local p
        p=$(free_port "$kind")
        echo "run-demo: $what: default port $def is taken, using $p instead" >&2
        echo "$p"
    fi
}

# start NAME CMD...: run CMD in the background, in its own session (so Ctrl-C
# reaches only this script, which then stops everything in order), log in $TMP.
start() {
    local name=$1; shift
    setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
    PIDS+=("$!")
    NAMES+=("$name")
    printf 'run-demo: started %-8s pid %-7s (log %s)\n' "$name" "$!" "$TMP/$name.log"
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds; fail with the logs.
wait_for() {
    local what=$1 secs=$2 i pid n; shift 2
    for ((n = 0; n < secs * 10; n++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        for i in "${!PIDS[@]}"; do
            pid=${PIDS[i]}
            kill -0 "$pid" 2>/dev/null && continue
            echo "run-demo: ${NAMES[i]} (pid $pid) exited; its log:" >&2
            tail -20 "$TMP/${NAMES[i]}.log" >&2
            exit 1
        done
        sleep 0.1
    done
    echo "run-demo: timed out waiting for $what; logs:" >&2
    for i in "${!NAMES[@]}"; do
        echo "--- ${NAMES[i]}" >&2
        tail -5 "$TMP/${NAMES[i]}.log" >&2
    done
    exit 1
}

read -r -a WS_DEFAULTS <<<"${DEMO_WS_PORTS:-9001 9002 9003}"
[ "${#WS_DEFAULTS[@]}" -eq 3 ] || die "DEMO_WS_PORTS needs three ports"
explicit_ws() { if [ -n "${DEMO_WS_PORTS:-}" ]; then echo "$1"; fi; }

HA_PORT=$(pick_port "HAProxy frontend" tcp 8080 "${DEMO_PORT:-}")
REDIS_PORT=$(pick_port "redis-server" tcp 6379 "${DEMO_REDIS_PORT:-}")
AGENT_PORT=$(pick_port "stickyd SPOP" tcp 12345 "${DEMO_AGENT_PORT:-}")
SYSLOG_PORT=$(pick_port "stickyd syslog" udp 5514 "${DEMO_SYSLOG_PORT:-}")
WS_PORTS=()
for i in 0 1 2; do
    WS_PORTS+=("$(pick_port "ws$((i + 1))" tcp "${WS_DEFAULTS[i]}" \
        "$(explicit_ws "${WS_DEFAULTS[i]}")")")
done
STATS_SOCK=$TMP/haproxy.sock

echo "run-demo: working directory $TMP"

# ---- Redis ------------------------------------------------------------------
mkdir -p "$TMP/redis"
start redis "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$TMP/redis" --daemonize no --protected-mode yes
wait_for "redis-server" 10 /usr/bin/redis-cli -p "$REDIS_PORT" ping

# ---- the three WebSocket servers ------------------------------------------------
for i in 0 1 2; do
    start "ws$((i + 1))" "$PY" "$ROOT/tests/integration/wsserver.py" --name "ws$((i + 1))" \
        --host 127.0.0.1 --port "${WS_PORTS[i]}"
done
for i in 0 1 2; do
    wait_for "ws$((i + 1))" 15 grep -q "listening on" "$TMP/ws$((i + 1)).log"
done

# A fresh HMAC secret for the session ids, readable by us only (HAProxy's fallback
# cookie carries the servers' tags under it too, so it comes before the config).
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TMP/secret.key")

# ---- HAProxy, reference config -------------------------------------------------------
SERVERS="ws1=127.0.0.1:${WS_PORTS[0]},ws2=127.0.0.1:${WS_PORTS[1]},ws3=127.0.0.1:${WS_PORTS[2]}"
"$PY" "$ROOT/scripts/render-haproxy.py" --spec "$ROOT/haproxy-conf/demo-topology.json" \
    --out "$TMP/haproxy-conf" --bind "127.0.0.1:$HA_PORT" \
    --backend "be_ws:$SERVERS" \
    --agent "127.0.0.1:$AGENT_PORT" --syslog-udp "127.0.0.1:$SYSLOG_PORT" \
    --stats-socket "$STATS_SOCK" --no-cookie-secure --instance demo-lb1 \
    --secret-file "$TMP/secret.key" \
    --spoe-path "$TMP/haproxy-conf/stickyd.spoe" --haproxy "$HAPROXY" >/dev/null \
    || die "scripts/render-haproxy.py failed"
start haproxy "$HAPROXY" -db -f "$TMP/haproxy-conf/haproxy.cfg"
wait_for "HAProxy's stats socket" 10 test -S "$STATS_SOCK"

# ---- stickyd ----------------------------------------------------------------------------
cat >"$TMP/stickyd.json" <<EOF
{
  "listen": "127.0.0.1:$AGENT_PORT",
  "log_level": "info",
  "instance": "demo-lb1",
  "redis": {"host": "127.0.0.1", "port": $REDIS_PORT},
  "session": {"ttl": "24h", "secret_file": "$TMP/secret.key"},
  "haproxy": {"stats_socket": "unix:$STATS_SOCK", "refresh": "1s", "resync": "5s"},
  "syslog": {"udp": "127.0.0.1:$SYSLOG_PORT"}
}
EOF
"$STICKYD" --check-config --config "$TMP/stickyd.json" >/dev/null \
    || die "stickyd rejected $TMP/stickyd.json"
start stickyd "$STICKYD" --config "$TMP/stickyd.json"

# Ready when HAProxy's health check reaches the agent (a real SPOP HELLO) and the
# agent has published the three servers it read from HAProxy into Redis.
agent_up() {
    echo "show stat" | socat -t 2 - "UNIX-CONNECT:$STATS_SOCK" \
        | awk -F, '$1 == "stickyd_agents" && $2 == "agent1" && $18 ~ /^UP/ { ok = 1 }
                   END { exit !ok }'
}
servers_known() {
    [ "$(/usr/bin/redis-cli -p "$REDIS_PORT" HLEN 'sticky:{be_ws}:servers')" = 3 ]
}
wait_for "HAProxy to see stickyd UP" 20 agent_up
wait_for "stickyd to publish be_ws's servers" 20 servers_known

cat <<EOF

================================================================================
 stickyd demo is up (everything on 127.0.0.1; files in $TMP)

   WebSocket:  ws://127.0.0.1:$HA_PORT/ws        (HAProxy -> ws1/ws2/ws3)
   servers:    ws1 :${WS_PORTS[0]}   ws2 :${WS_PORTS[1]}   ws3 :${WS_PORTS[2]}
   stickyd:    SPOP 127.0.0.1:$AGENT_PORT, syslog udp 127.0.0.1:$SYSLOG_PORT
               config $TMP/stickyd.json
   Redis:      redis-cli -p $REDIS_PORT
   HAProxy:    echo "show stat" | socat - UNIX-CONNECT:$STATS_SOCK
   operators:  agent/stickyctl --redis 127.0.0.1:$REDIS_PORT status be_ws
================================================================================

EOF

"$PY" "$ROOT/scripts/demo-client.py" --url "ws://127.0.0.1:$HA_PORT/ws" \
    --redis-port "$REDIS_PORT" --stickyctl "$STICKYCTL" \
    || die "the demonstration failed (logs in $TMP are removed on exit; see above)"

if [ "$ONESHOT" = 1 ]; then
    echo "run-demo: DEMO_ONESHOT=1: done"
    exit 0
fi

cat <<EOF

Try it yourself (in another terminal):
  /usr/bin/python3 -m websockets ws://127.0.0.1:$HA_PORT/ws
  curl -si -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \\
       -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' --max-time 1 http://127.0.0.1:$HA_PORT/ws
  agent/stickyctl --redis 127.0.0.1:$REDIS_PORT watch
  agent/stickyctl --redis 127.0.0.1:$REDIS_PORT drain be_ws ws2 --deadline 1m

Running until Ctrl-C (which stops everything and removes $TMP).
EOF

# Stay up; if any part dies, say which and stop the rest.
while true; do
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
            echo "run-demo: ${NAMES[i]} (pid ${PIDS[i]}) exited; its log:" >&2
            tail -20 "$TMP/${NAMES[i]}.log" >&2
            exit 1
        fi
    done
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
done
