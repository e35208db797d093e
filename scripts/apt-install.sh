#!/bin/bash
# Install the Debian packages given that are not installed yet (idempotent).
# Usage: scripts/apt-install.sh [-q] PKG...   (-q: apt's output is dropped)
#
# The one place the project's scripts install packages: tests run in
# parallel and several may need packages at once (the first CI run on a
# fresh machine installs them all), so installs are serialised by a lock
# of our own and wait for dpkg's lock when another apt holds it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
quiet=false
if [ "${1:-}" = -q ]; then
    quiet=true
    shift
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing() {
    local p
    for p in "$@"; do installed "$p" || echo "$p"; done
}
[ -n "$(missing "$@")" ] || exit 0

mkdir -p /run/lock
exec 9>/run/lock/hako-apt-install.lock
flock 9
# Another caller may have installed them while we waited.
mapfile -t need < <(missing "$@")
[ ${#need[@]} -gt 0 ] || exit 0
echo "installing ${need[*]}" >&2
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq)
run() { if $quiet; then "$@" >/dev/null 2>&1; else "$@" >&2; fi; }
# The machine's package lists first; refreshed only if they fall short.
if ! run "${apt[@]}" install "${need[@]}"; then
    run "${apt[@]}" update
    run "${apt[@]}" install "${need[@]}"
fi
