#!/usr/bin/env bash
# Install what the browser tests (tests/browser) need from Debian's packages:
# chromium at /usr/bin/chromium and fonts for legible screenshots.
#
# Idempotent: does nothing (and prints nothing) when all is there.  It never
# downloads a browser from anywhere else: no `playwright install`, which cannot
# work on this network.
#
# Exit status: 0 when everything is there (or was installed); 3 when something
# is missing and cannot be installed here (not root, or no apt-get), so the
# caller can skip the browser tests (CELLCACHE_SKIP_BROWSER=1) instead of
# failing; 1 when an installation was tried and failed.
set -euo pipefail

CHROMIUM="${CELLCACHE_CHROMIUM:-/usr/bin/chromium}"  # overridable so the test of this script can fake its absence

log() { printf 'browser-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot() { log "$*"; exit 3; }

packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium)
# A sans and a monospace font: without any font chromium renders boxes.
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'ok installed' \
    || packages+=(fonts-dejavu-core)

if [ "${#packages[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    # Fonts alone only make screenshots uglier: the tests can still run.
    [ -x "$CHROMIUM" ] && { log "fonts-dejavu-core is missing (screenshots may show boxes); not root, not installing it"; exit 0; }
    cannot "$CHROMIUM is missing and installing ${packages[*]} needs root"
fi
command -v apt-get >/dev/null || cannot "$CHROMIUM is missing and apt-get is not here to install ${packages[*]}"

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

[ -x "$CHROMIUM" ] || die "$CHROMIUM still missing after installing ${packages[*]}"
# The Debian wrapper prints a harmless '[: ...: unexpected operator' when
# findmnt lists /dev/shm twice; only the exit status and version line matter.
"$CHROMIUM" --version 2>/dev/null | grep -qi chromium \
    || die "$CHROMIUM is installed but does not run (chromium --version failed)"
