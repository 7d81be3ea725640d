#!/usr/bin/env bash
# The HAProxy binaries the HAProxy-facing tests and benchmarks run on: Debian's
# (2.6 on Debian 12) first, then one build of every upstream tarball found in the
# source directory (scripts/build-haproxy.sh verifies and caches each).
# Prints one "<version> <path>" line per binary on stdout. Without tarballs (a user's
# machine) it prints the system binary only, and says so in one line on stderr.
#
# Usage: scripts/haproxy-matrix.sh
# Environment: HAPROXY (system binary, /usr/sbin/haproxy), HAPROXY_SRC_DIR (tarballs,
# ../shared/haproxy next to the clone), HAPROXY_BINS (space-separated binaries: this
# list instead, nothing built, e.g. HAPROXY_BINS=/usr/sbin/haproxy for 2.6 alone).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SYS=${HAPROXY:-/usr/sbin/haproxy}
SRC=${HAPROXY_SRC_DIR:-$ROOT/../shared/haproxy}

# "HAProxy version 3.2.0-e134140d2 2025/05/28" -> 3.2.0; "2.6.12-1+deb12u4" -> 2.6.12
haproxy_version() {
    "$1" -v | awk 'NR == 1 { sub(/-.*/, "", $3); print $3 }'
}

if [ -n "${HAPROXY_BINS:-}" ]; then
    for bin in $HAPROXY_BINS; do
        echo "$(haproxy_version "$bin") $bin"
    done
    exit 0
fi
echo "$(haproxy_version "$SYS") $SYS"
shopt -s nullglob
tarballs=("$SRC"/haproxy-*.tar.gz)
if [ ${#tarballs[@]} -eq 0 ]; then
    echo "haproxy-matrix: no HAProxy tarballs in $SRC: HAProxy $(haproxy_version "$SYS") only" >&2
    exit 0
fi
# Oldest first: sort -V orders 3.0.11 before 3.2.0 before 3.3.0.
while read -r t; do
    bin=$("$ROOT/scripts/build-haproxy.sh" "$t")
    echo "$(haproxy_version "$bin") $bin"
done < <(printf '%s\n' "${tarballs[@]}" | sort -V)
