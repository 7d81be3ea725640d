#!/usr/bin/env bash
# run.sh <fuzz binary> <seconds> [seeds dir] - run a libFuzzer target for a bounded time.
#
# Copies the committed seed corpus (tests/fuzz/seeds_<name>/, derived from the unit
# vectors by make_seeds.py) into a temporary working corpus, fuzzes for
# <seconds> on one core, and prints "fuzz: 1 passed, 0 failed" or, on a crash
# or invariant failure, keeps the crashing input under build/fuzz/ and prints
# "fuzz: 0 passed, 1 failed" with a non-zero exit.
set -u
bin=${1:?usage: run.sh <fuzz binary> <seconds>}
secs=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
seeds=${3:-$here/seeds_spop}
name=$(basename "$bin")
[ -x "$bin" ] || { echo "run.sh: $bin is not executable"; echo "fuzz: 0 passed, 1 failed"; exit 1; }

work=$(mktemp -d /tmp/stickyd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/" 2>/dev/null || true
nseeds=$(ls "$work/corpus" | wc -l)

"$bin" -max_total_time="$secs" -max_len="${FUZZ_MAX_LEN:-4096}" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
rc=$?

execs=$(grep -E '^stat::number_of_executed_units' "$work/log" | awk '{print $2}')
cov=$(grep -oE 'cov: [0-9]+' "$work/log" | tail -1)
ncorp=$(ls "$work/corpus" | wc -l)
crash=$(ls "$work/artifacts" 2>/dev/null | head -1)
if [ $rc -eq 0 ] && [ -z "$crash" ]; then
    echo "$name: ${secs}s, ${execs:-?} executions, ${cov:-cov: ?}, corpus $nseeds -> $ncorp inputs"
    echo "fuzz: 1 passed, 0 failed"
    exit 0
fi
tail -40 "$work/log"
if [ -n "$crash" ]; then
    keep="$(dirname "$bin")/$crash"
    cp "$work/artifacts/$crash" "$keep"
    echo "$name: crashing input kept as $keep (reproduce: $bin $keep)"
fi
echo "$name: exit status $rc after ${execs:-?} executions"
echo "fuzz: 0 passed, 1 failed"
exit 1
