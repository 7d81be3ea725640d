#!/usr/bin/env bash
# Build one upstream HAProxy release from a source tarball, for the test matrix.
# Verifies the tarball against the SHA256SUMS beside it, builds it outside the clone
# and caches the binary under ${XDG_CACHE_HOME:-$HOME/.cache}/stickyd/haproxy/
# <version>-<first 12 hex of the sha256>/haproxy, so a second run (or CI run) reuses it.
#
# Usage: scripts/build-haproxy.sh <haproxy-X.Y.Z.tar.gz>
# Prints the binary's path on stdout (build log goes to a file next to it).
# The reference configuration needs OpenSSL only (no regex, no Lua, no compression),
# so the build is TARGET=linux-glibc USE_OPENSSL=1; build deps: build-essential and
# libssl-dev (scripts/install-deps.sh).
set -euo pipefail

tarball=${1:?usage: build-haproxy.sh <haproxy-X.Y.Z.tar.gz>}
[ -f "$tarball" ] || { echo "build-haproxy: no such file: $tarball" >&2; exit 1; }
dir=$(cd "$(dirname "$tarball")" && pwd)
name=$(basename "$tarball")
ver=${name#haproxy-}
ver=${ver%.tar.gz}

# The checksum must be listed and must match: a tarball nobody vouched for is not built.
sums="$dir/SHA256SUMS"
[ -f "$sums" ] || { echo "build-haproxy: $sums missing" >&2; exit 1; }
want=$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1 }' "$sums")
[ -n "$want" ] || { echo "build-haproxy: $name is not listed in $sums" >&2; exit 1; }
have=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$have" != "$want" ]; then
  echo "build-haproxy: checksum mismatch for $name: $have, expected $want" >&2
  exit 1
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/stickyd/haproxy/$ver-${want:0:12}
bin=$cache/haproxy
if [ -x "$bin" ] && "$bin" -v >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$cache/build.log
start=$(date +%s)
echo "build-haproxy: building HAProxy $ver (log: $log)" >&2
tar -xzf "$tarball" -C "$work" --strip-components=1
if ! make -C "$work" -j"${HAPROXY_BUILD_JOBS:-2}" TARGET=linux-glibc USE_OPENSSL=1 \
    >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "build-haproxy: HAProxy $ver failed to build (log: $log)" >&2
  exit 1
fi
# Install atomically: a concurrent or interrupted run never sees half a binary.
cp "$work/haproxy" "$cache/haproxy.tmp.$$"
mv -f "$cache/haproxy.tmp.$$" "$bin"
echo "build-haproxy: HAProxy $ver built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
