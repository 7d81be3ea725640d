# shellcheck shell=bash
# lib.sh - shell helpers shared by run.sh, ws_bench.sh and upgrade_bench.sh (sourced, never
# run). It owns the temp dir, the list of started processes and the trap that stops them
# even on failure; it starts nothing by itself and talks to 127.0.0.1 only.
# Kept in one place so the three scripts stop processes, find ports and print host load
# the same way.
#
#   bench_init NAME        make $TMP (stickyd-NAME.XXXXXX) and install the traps
#   PIDS+=("$pid")         (or bench_track PID) have the trap stop a process
#   bench_stop PID [TENTHS] SIGTERM, then SIGKILL after TENTHS x 0.1 s (default 30)
#   bench_header TITLE [NOTE] the section header with the host's cores and load average
#   listen_port PID        the TCP port PID listens on (it was started on port 0)
#   pid_ticks PID          CPU time (user + system) PID used so far, in clock ticks

PIDS=()   # every process started, in start order; the trap stops them in reverse

bench_track() {
    PIDS+=("$1")
}

# SIGTERM lets stickyd drain (and redis-server exit cleanly); whatever is still there
# after TENTHS tenths of a second is killed. A process already gone is fine. The pid
# leaves PIDS (its index is unset, so PIDS[i] still matches a parallel NAMES[i]): the
# trap must never signal a pid the system has since given to someone else.
bench_stop() {
    local pid=$1 tenths=${2:-30} i
    [ -n "$pid" ] || return 0
    if kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < tenths; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do
        [ "${PIDS[i]}" != "$pid" ] || unset 'PIDS[i]'
    done
}

bench_cleanup() {
    local idx=("${!PIDS[@]}") i
    for ((i = ${#idx[@]} - 1; i >= 0; i--)); do
        bench_stop "${PIDS[${idx[i]}]}"
    done
    rm -rf "$TMP"
}

bench_init() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/stickyd-$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# The load average is printed with every section: the machine is shared, and a figure
# taken while neighbours were busy must be read as such.
bench_header() {
    printf '\n=== %s ===\n' "$1"
    printf 'host: %s cores, load average %s%s\n' "$(nproc)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "${2:+ $2}"
}

# Prints the port (empty if PID exits or does not listen within 5 s): port 0 lets the
# kernel pick a free port, read back here from the listening socket.
listen_port() {
    local pid=$1 port=""
    for _ in $(seq 1 100); do
        port=$(ss -Hltnp 2>/dev/null | awk -v p="pid=$pid," \
            'index($0, p) { n = split($4, a, ":"); print a[n]; exit }')
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "$port"
}

# Fields counted after the last ')' (the command name may hold spaces): 12 utime, 13 stime.
pid_ticks() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
