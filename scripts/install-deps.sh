#!/usr/bin/env bash
# Install what stickyd needs to build, test and run, from Debian's packages only.
# Idempotent: does nothing (and needs no network) when everything is present.
# Usage: scripts/install-deps.sh [--check]   (--check: exit 1 if something is missing)
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev
  libev-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler libjansson-dev libssl-dev
  haproxy redis-server redis-tools redis-sentinel openssl
  python3 python3-pytest python3-websockets python3-redis
  procps iproute2 socat wrk faketime
  libmicrohttpd-dev libsystemd-dev
  prometheus systemd man-db groff-base strace
  debhelper dpkg-dev lintian
)
# Node.js runs the real Socket.IO servers and clients of the end-to-end tests (their
# npm packages come from the registry, pinned by tests/integration/sio/package-lock.json).
# A machine that already has node and npm (another packaging of them) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing packages: ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Packages only: the services they would start are not used (tests start their own).
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts redis-server (and haproxy, prometheus) as system services on install
# where an init system runs; stop them so they hold no port the tests use.
for svc in redis-server haproxy prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
