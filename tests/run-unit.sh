#!/usr/bin/env bash
# Run every unit-test binary given; print each one's tally and a grand total.
set -u
pass=0; fail=0; status=0
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^[a-z_]*: [0-9]* passed, [0-9]* failed$' || true
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
  p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  [ -n "$p" ] || p=0; [ -n "$f" ] || f=0
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "$t: exited $rc"; fi
  [ $rc -ne 0 ] && status=1
  echo "$(basename "$t"): $p passed, $f failed"
  pass=$((pass + p)); fail=$((fail + f))
done
echo "${TIER:-unit}: $pass passed, $fail failed"
exit $status
