#!/usr/bin/env bash
# run-all.sh <seconds> <name>... - run every libFuzzer target build/fuzz/fuzz_<name> on its
# seed corpus tests/fuzz/seeds_<name>, sharing <seconds> between them: a quarter to
# the SPOP codec (the widest surface), the rest equally to the others (at least 2 s
# each). Every target runs even after one fails; prints a tally and fails if any did.
set -u
total=${1:?usage: run-all.sh <seconds> <name>...}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n_other=0
for name in "$@"; do
    [ "$name" = spop ] || n_other=$((n_other + 1))
done
pass=0; fail=0
for name in "$@"; do
    if [ "$name" = spop ]; then
        secs=$((total / 4))
    else
        secs=$(( (total - total / 4) / (n_other > 0 ? n_other : 1) ))
    fi
    [ "$secs" -ge 2 ] || secs=2
    max=4096
    case $name in hapi | config) max=16384 ;; esac
    if FUZZ_MAX_LEN=$max "$here/run.sh" "$root/build/fuzz/fuzz_$name" "$secs" "$here/seeds_$name"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
