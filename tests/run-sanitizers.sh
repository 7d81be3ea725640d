#!/usr/bin/env bash
# The sanitizer tier: every unit test and every C integration driver, built with
# ASan + UBSan into build/san/ (make sanitize builds them), run on Debian's HAProxy
# (scripts/haproxy-matrix.sh's first line), with the drivers that start an agent
# pointed at the sanitized agent (STICKYD_BIN). A sanitizer report anywhere fails
# the tier: in a test binary (non-zero exit) or in a process it started (reports go
# to files under a temporary log_path, which must stay empty: an agent the driver
# kills at the end cannot fail the driver through its exit status). Each binary runs
# in a session of its own, killed as a whole once the binary exits: a driver that a
# sanitizer stops at once leaves no redis-server or agent behind.
set -u
cd "$(dirname "$0")/.."
logs=$(mktemp -d /tmp/stickyd-san.XXXXXX)
trap 'rm -rf "$logs"' EXIT
mkdir "$logs/reports" "$logs/out"
export ASAN_OPTIONS="detect_leaks=1:allow_user_segv_handler=1:log_path=$logs/reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export STICKYD_BIN=build/san/stickyd
if [ -z "${HAPROXY:-}" ]; then
    HAPROXY=$(scripts/haproxy-matrix.sh | head -1 | awk '{print $2}')
    export HAPROXY
fi
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(build/san/tests/test_* build/san/itests/test_*)
pass=0; fail=0; status=0
for t in "${bins[@]}"; do
    name=$(basename "$(dirname "$t")")/$(basename "$t")
    out="$logs/out/$(basename "$t")"
    before=$(ls "$logs/reports" | wc -l)
    setsid "$t" >"$out" 2>&1 &
    pid=$!
    wait $pid
    rc=$?
    kill -KILL -- -$pid 2>/dev/null
    grep -v '^[a-z_]*: [0-9]* passed, [0-9]* failed$' "$out" | grep -v '^$' | tail -20
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    p=$(printf '%s' "$line" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
    f=$(printf '%s' "$line" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
    p=${p:-0}; f=${f:-0}
    new=$(( $(ls "$logs/reports" | wc -l) - before ))
    if [ $rc -ne 0 ] || [ $new -gt 0 ]; then
        [ "$f" -gt 0 ] || f=1
        echo "$name: exit status $rc, $new sanitizer report(s)"
        status=1
    fi
    echo "$name (ASan+UBSan): $p passed, $f failed"
    pass=$((pass + p)); fail=$((fail + f))
done
for r in "$logs"/reports/*; do
    [ -e "$r" ] || continue
    echo "--- $(basename "$r")"
    head -40 "$r"
done
echo "sanitizers: $pass passed, $fail failed"
exit $status
