#!/usr/bin/env bash
# Integration and end-to-end tiers, on every HAProxy of the matrix
# (scripts/haproxy-matrix.sh: Debian's 2.6, then each 3.x built from ../shared/haproxy).
# On the first HAProxy: the C drivers given as arguments (each starts the real
# servers it needs), then every pytest suite under tests/integration/ against real
# redis-server, haproxy and stickyd. On each other HAProxy: the HAProxy-facing tiers
# only (MATRIX_C and MATRIX_PYTEST below), with HAPROXY= set to that binary.
# Each run opens with a banner naming its HAProxy, and the last lines say which
# version passed or failed.
set -u
cd "$(dirname "$0")/.."

# What talks to HAProxy: the runtime API driver, the SPOP tests behind HAProxy (and
# `haproxy -c` of every rendered reference file), the fleet tests and the end-to-end
# scenarios, the overload ones (the agent killed, HAProxy's fallback cookie) and real
# Socket.IO through the Socket.IO config, and Redis over TLS through the rendered
# listen section. test_assign, test_stickyctl, test_demo and
# the ops suites talk SPOP, Redis or HTTP directly or run the demo, the same on every
# version: first HAProxy only.
MATRIX_C="build/itests/test_hapi"
MATRIX_PYTEST="tests/integration/test_haproxy_spop.py tests/integration/test_fleet.py
    tests/integration/test_e2e_affinity.py tests/integration/test_e2e_ops.py
    tests/integration/test_e2e_overload.py tests/integration/test_e2e_socketio.py
    tests/integration/test_redis_tls.py"

matrix=$(scripts/haproxy-matrix.sh) || { echo "integration: no HAProxy matrix" >&2; exit 1; }
status=0
summary=()
first=1
while read -r ver bin; do
    rc=0
    if [ $first -eq 1 ]; then
        printf '\n=== integration on HAProxy %s (%s): every tier ===\n' "$ver" "$bin"
        c_tests=("$@")
        py_tests=(tests/integration)
    else
        printf '\n=== integration on HAProxy %s (%s): HAProxy-facing tiers ===\n' "$ver" "$bin"
        c_tests=()
        for t in $MATRIX_C; do
            [ ! -x "$t" ] || c_tests+=("$t")
        done
        read -r -a py_tests <<<"$(echo $MATRIX_PYTEST)"
    fi
    if [ ${#c_tests[@]} -gt 0 ]; then
        HAPROXY=$bin TIER="integration (HAProxy $ver)" tests/run-unit.sh "${c_tests[@]}" || rc=1
    fi
    # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words
    HAPROXY=$bin /usr/bin/python3 -m pytest -q -p no:cacheprovider "${py_tests[@]}" \
        ${PYTEST_ARGS:-} || rc=1
    if [ $rc -eq 0 ]; then
        summary+=("HAProxy $ver: passed")
    else
        summary+=("HAProxy $ver: FAILED")
        status=1
    fi
    first=0
done <<<"$matrix"
echo
for line in "${summary[@]}"; do
    echo "integration on $line"
done
exit $status
