#!/usr/bin/env bash
# Install what the browser tests (tests/browser) need from Debian's packages:
# chromium at /usr/bin/chromium and fonts for legible screenshots.
#
# Idempotent: does nothing (and prints nothing) when all is there.  Meant for
# a fresh Debian machine where we are root.  It never downloads a browser from
# anywhere else: no `playwright install`, which cannot work on this network.
set -euo pipefail

log() { printf 'browser-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
# A sans and a monospace font: without any font chromium renders boxes.
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'ok installed' \
    || packages+=(fonts-dejavu-core)

if [ "${#packages[@]}" -eq 0 ]; then
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${packages[*]}"
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian"

export DEBIAN_FRONTEND=noninteractive
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Output is kept and shown only on failure: quiet on success.
if ! apt-get update >"$out" 2>&1; then
    cat "$out" >&2
    die "apt-get update failed"
fi
if ! apt-get install -y --no-install-recommends "${packages[@]}" >"$out" 2>&1; then
    cat "$out" >&2
    die "apt-get install ${packages[*]} failed"
fi

[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after installing ${packages[*]}"
# The Debian wrapper prints a harmless '[: ...: unexpected operator' when
# findmnt lists /dev/shm twice; only the exit status and version line matter.
/usr/bin/chromium --version 2>/dev/null | grep -qi chromium \
    || die "/usr/bin/chromium is installed but does not run (chromium --version failed)"
