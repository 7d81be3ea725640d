#!/usr/bin/env bash
# Integration and end-to-end tiers: the C drivers given as arguments (each
# starts the real servers it needs), then the pytest suites under
# tests/integration/ against real redis-server, haproxy and stickyd.
set -u
cd "$(dirname "$0")/.."
status=0
if [ $# -gt 0 ]; then
  TIER=integration tests/run-unit.sh "$@" || status=1
fi
if ls tests/integration/test_*.py >/dev/null 2>&1; then
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration ${PYTEST_ARGS:-} || status=1
fi
exit $status
