#!/usr/bin/env bash
# Install the Debian packages wspush needs, only those missing.
#   tests/deps.sh          build + run the server
#   tests/deps.sh --test   also everything the test suite uses
#   tests/deps.sh --list   print the build list, install nothing
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev lua5.4 libuv1-dev liburing-dev node-llhttp lua-cjson zlib1g-dev
      libssl-dev ca-certificates libhiredis-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(libcmocka-dev lua-busted python3 python3-websockets python3-pytest nodejs node-ws
         chromium procps curl valgrind clang libclang-rt-14-dev redis-server lua-check
         python3-prometheus-client dpkg-dev file nginx)
fi
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  # A package's postinst would start its daemon (nginx on port 80); the tests
  # run their own on free ports. policy-rc.d answering 101 tells invoke-rc.d
  # to start nothing: made for this install only, unless one is there already.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Their postinst also enabled the daemons for the next boot: a machine that
  # got them only for the tests should not serve port 80 or 6379 after a
  # reboot. Those installed before, the owner's, are left as they were.
  for svc in nginx redis-server; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null; then
      $SUDO systemctl disable --quiet "$svc" 2>/dev/null || true
    fi
  done
fi
