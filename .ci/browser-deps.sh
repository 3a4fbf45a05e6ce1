#!/usr/bin/env bash
# Install what the browser tests (tests/browser) need from Debian's packages:
# chromium at /usr/bin/chromium, fonts for legible screenshots, and graphviz's
# `dot`, which draws the pipeline graph (the panel's graph view and
# `cellcache status --graph`; without it they fall back to a text list).
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
DOT="${CELLCACHE_DOT:-/usr/bin/dot}"
# Another apt (unattended-upgrades, a parallel job) may hold the lock: wait for it this long, not fail.
APT_LOCK_WAIT="${CELLCACHE_APT_LOCK_WAIT:-600}"

log() { printf 'browser-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot() { log "$*"; exit 3; }

packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium)
# A sans and a monospace font: without any font chromium renders boxes.
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'ok installed' \
    || packages+=(fonts-dejavu-core)
[ -x "$DOT" ] || packages+=(graphviz)

if [ "${#packages[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    # Fonts or dot alone only make screenshots uglier or the graph a list: the tests can still run.
    [ -x "$CHROMIUM" ] && { log "${packages[*]} missing (screenshots may show boxes, the graph a list); not root, not installing"; exit 0; }
    cannot "$CHROMIUM is missing and installing ${packages[*]} needs root"
fi
command -v apt-get >/dev/null || cannot "$CHROMIUM is missing and apt-get is not here to install ${packages[*]}"

export DEBIAN_FRONTEND=noninteractive
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# apt-get waits for a held lock itself with DPkg::Lock::Timeout (apt >= 1.9); on older apt the
# option is ignored, so also wait here while another apt or dpkg process runs.
apt_busy() {
    command -v fuser >/dev/null && fuser /var/lib/dpkg/lock-frontend /var/lib/apt/lists/lock >/dev/null 2>&1 && return 0
    pgrep -x 'apt|apt-get|dpkg|unattended-upgr' >/dev/null 2>&1
}
waited=0
while apt_busy; do
    [ "$waited" -ge "$APT_LOCK_WAIT" ] && die "another apt or dpkg has held the lock for ${APT_LOCK_WAIT}s"
    [ "$waited" -eq 0 ] && log "another apt or dpkg is running; waiting for it (up to ${APT_LOCK_WAIT}s)"
    sleep 2
    waited=$((waited + 2))
done
apt_get() { apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@"; }

# Output is kept and shown only on failure: quiet on success.
if ! apt_get update >"$out" 2>&1; then
    cat "$out" >&2
    die "apt-get update failed"
fi
if ! apt_get install -y --no-install-recommends "${packages[@]}" >"$out" 2>&1; then
    cat "$out" >&2
    die "apt-get install ${packages[*]} failed"
fi

[ -x "$CHROMIUM" ] || die "$CHROMIUM still missing after installing ${packages[*]}"
# The Debian wrapper prints a harmless '[: ...: unexpected operator' when
# findmnt lists /dev/shm twice; only the exit status and version line matter.
"$CHROMIUM" --version 2>/dev/null | grep -qi chromium \
    || die "$CHROMIUM is installed but does not run (chromium --version failed)"
