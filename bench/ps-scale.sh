#!/bin/bash
# `ps -a` with many containers in the store: hako next to podman, each
# with N created (not running) busybox containers, timed by hyperfine.
#
#   sudo bash bench/ps-scale.sh [N]      (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
bash scripts/setup.sh hyperfine podman conmon runc >/dev/null
bash scripts/clients-setup.sh >/dev/null
cargo build --release -q -p hako-cli --bin hako
hako=$PWD/target/x86_64-unknown-linux-gnu/release/hako
work=$(mktemp -d /tmp/hako-ps.XXXXXX)
export HAKO_DATA_DIR=$work/data HAKO_RUN_DIR=$work/run HAKO_NFT_TABLE=hako_ps
pod() {
    podman --root "$work/proot" --runroot "$work/prun" --storage-driver vfs \
        --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
cleanup() {
    "$hako" ps -aq 2>/dev/null | xargs -r "$hako" rm -f >/dev/null 2>&1 || true
    pod rm -af >/dev/null 2>&1 || true
    pod system reset -f >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work" | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

bash scripts/make-bundle.sh "$work/bundle" >/dev/null 2>&1
"$hako" import "$work/bundle/rootfs" busybox >/dev/null
pod load -q -i /var/cache/hako-clients/busybox.tar >/dev/null
echo "creating $n containers with each" >&2
for i in $(seq "$n"); do
    "$hako" create --name "c$i" --network none busybox true >/dev/null
    pod create --name "c$i" --network none localhost/hako-busybox:latest true >/dev/null
done
[ "$("$hako" ps -aq | wc -l)" = "$n" ]
[ "$(pod ps -aq | wc -l)" = "$n" ]
hyperfine -N --warmup 3 --runs 30 \
    -n "hako ps -a ($n)" "$hako ps -a" \
    -n "podman ps -a ($n)" "podman --root $work/proot --runroot $work/prun --storage-driver vfs --cgroup-manager cgroupfs --events-backend file ps -a"
