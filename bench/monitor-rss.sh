#!/bin/bash
# Resident memory of hako's per-container monitor next to podman's conmon,
# each holding one detached busybox container that prints a line every
# 200 ms (runtime: runc for podman, hako-runc's library for hako).
#
#   sudo bash bench/monitor-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh podman conmon runc >/dev/null
bash scripts/clients-setup.sh >/dev/null
cargo build --release -q
hako=$PWD/target/x86_64-unknown-linux-gnu/release/hako
work=$(mktemp -d /tmp/hako-rss.XXXXXX)
export HAKO_DATA_DIR=$work/data HAKO_RUN_DIR=$work/run HAKO_NFT_TABLE=hako_rss
cat > "$work/containers.conf" <<'C'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
C
pod() {
    CONTAINERS_CONF=$work/containers.conf podman --root "$work/proot" --runroot "$work/prun" \
        --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
cleanup() {
    "$hako" rm -f rss-hako >/dev/null 2>&1 || true
    pod rm -f rss-podman >/dev/null 2>&1 || true
    pod system reset -f >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work" | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
    # podman's own cgroup parent, left behind when empty.
    for d in /sys/fs/cgroup/*/libpod_parent; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}
trap cleanup EXIT
loop='while :; do echo tick; sleep 0.2; done'

bash scripts/make-bundle.sh "$work/bundle" 2>/dev/null
"$hako" import "$work/bundle/rootfs" busybox >/dev/null
"$hako" run -d --name rss-hako --network none busybox sh -c "$loop" >/dev/null
pod load -q -i /var/cache/hako-clients/busybox.tar >/dev/null
pod run -d --name rss-podman --network none localhost/hako-busybox:latest sh -c "$loop" >/dev/null
sleep 5

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
pss() { awk '/^Pss:/ {s += $2} END {print s}' "/proc/$1/smaps_rollup"; }
mon=$(pgrep -n -f "hako __monitor") || { echo "no hako monitor found" >&2; exit 1; }
con=$(pgrep -n conmon) || { echo "no conmon found" >&2; exit 1; }
echo "| process | RSS (kB) | PSS (kB) |"
echo "|---|---|---|"
echo "| hako monitor ($($hako --version 2>/dev/null | head -1)) | $(rss "$mon") | $(pss "$mon") |"
# The monitor's keeper (its parent, which collects the exit code should
# the monitor die) is a forked copy that only waits.
keeper=$(awk '{print $4}' "/proc/$mon/stat")
echo "| hako keeper (the monitor's parent) | $(rss "$keeper") | $(pss "$keeper") |"
echo "| conmon ($(conmon --version | head -1)) | $(rss "$con") | $(pss "$con") |"
