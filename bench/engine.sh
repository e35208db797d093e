#!/bin/bash
# The engine next to podman (with crun, its default runtime), in one run:
# `run --rm … true` without a network and on each one's default bridge,
# `exec` into a running container, timed by hyperfine with the commands
# alternated; then a pull of a 5-layer, 40 MiB image (random bytes, so
# nothing compresses) from a loopback registry into empty stores.
#
#   sudo bash bench/engine.sh [RUNS]      (default 30 runs each)
#
# Installs hyperfine, podman, crun and docker-registry from Debian if
# missing. podman gets private stores; hako a private data root, bridge
# and nft table. Everything is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
bash scripts/setup.sh hyperfine podman crun >/dev/null
bash scripts/clients-setup.sh >/dev/null
cargo build --release -q -p hako-cli --bin hako
hako=$PWD/target/x86_64-unknown-linux-gnu/release/hako
work=$(mktemp -d /tmp/hako-engine-bench.XXXXXX)
source bench/crun-hugetlb.sh
cat > "$work/hako.toml" <<'T'
[network]
default_bridge = "hkbench0"
default_subnet = "10.93.0.0/24"
T
export HAKO_DATA_DIR=$work/hako/data HAKO_RUN_DIR=$work/hako/run HAKO_NFT_TABLE=hako_bench
export HAKO_CONFIG=$work/hako.toml
cat > "$work/containers.conf" <<'C'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "crun"
C
podman_had_bridge=$(ip -br link show podman0 >/dev/null 2>&1 && echo 1 || echo 0)
# The command line hyperfine runs (no shell function there).
pod="env CONTAINERS_CONF=$work/containers.conf podman --root $work/proot --runroot $work/prun --cgroup-manager cgroupfs --events-backend file"
cleanup() {
    "$hako" ps -aq 2>/dev/null | xargs -r "$hako" rm -f >/dev/null 2>&1 || true
    $pod rm -f -a >/dev/null 2>&1 || true
    $pod system reset -f >/dev/null 2>&1 || true
    bash scripts/test-registry.sh stop "$work/registry" >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work" | sort -r | xargs -r umount -l 2>/dev/null || true
    ip link del hkbench0 2>/dev/null || true
    nft delete table inet hako_bench 2>/dev/null || true
    [ "$podman_had_bridge" = 1 ] || ip link del podman0 2>/dev/null || true
    # netavark leaves its iptables-nft base chains behind: remove its
    # tables when nothing but netavark's chains is in them (as the clients
    # test does).
    local t chains
    for t in nat filter; do
        chains=$(nft list table ip "$t" 2>/dev/null | awk '$1 == "chain" {print $2}')
        echo "$chains" | grep -q NETAVARK || continue
        echo "$chains" | grep -vqE '^(NETAVARK.*|POSTROUTING|PREROUTING|OUTPUT|FORWARD)$' ||
            nft delete table ip "$t" 2>/dev/null || true
    done
    for d in /sys/fs/cgroup/*/libpod_parent; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

bash scripts/make-bundle.sh "$work/bundle" >/dev/null 2>&1
"$hako" import "$work/bundle/rootfs" busybox >/dev/null
$pod load -q -i /var/cache/hako-clients/busybox.tar >/dev/null
$pod tag localhost/hako-busybox:latest busybox >/dev/null
"$hako" run -d --name bench-exec --network none busybox sleep 36000 >/dev/null
$pod run -d --name bench-exec --network none busybox sleep 36000 >/dev/null
# Each bridge made once before timing (podman's and hako's first run
# creates it).
"$hako" run --rm busybox true
$pod run --rm busybox true

echo "== $("$hako" --version); $(podman --version); $(crun --version | head -1)"
echo "== $(nproc) cores, kernel $(uname -r), $runs runs each"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" \
    -n "hako run --rm --network none" "$hako run --rm --network none busybox true" \
    -n "podman run --rm --network none" "$pod run --rm --network none busybox true" \
    -n "hako run --rm (bridge)" "$hako run --rm busybox true" \
    -n "podman run --rm (bridge)" "$pod run --rm busybox true" \
    -n "hako exec" "$hako exec bench-exec true" \
    -n "podman exec" "$pod exec bench-exec true" >/dev/null

# Pull: 5 layers of 8 MiB of random bytes, built and pushed by hako.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash scripts/test-registry.sh start "$work/registry" "$port" >/dev/null 2>&1
ctx=$work/ctx
mkdir -p "$ctx"
echo "FROM scratch" > "$ctx/Containerfile"
for i in 1 2 3 4 5; do
    head -c 8M /dev/urandom > "$ctx/l$i"
    echo "COPY l$i /l$i" >> "$ctx/Containerfile"
done
img=127.0.0.1:$port/bench/five:latest
"$hako" build -q -t "$img" "$ctx" >/dev/null
"$hako" push "$img" >/dev/null 2>&1
"$hako" rmi "$img" >/dev/null
hyperfine --runs 10 --export-json "$work/pull.json" \
    --prepare "$hako rmi -f $img >/dev/null 2>&1; $hako image prune -f >/dev/null 2>&1; sync" \
    -n "hako pull" "$hako pull $img" \
    --prepare "$pod rmi -f $img >/dev/null 2>&1; sync" \
    -n "podman pull" "$pod pull -q --tls-verify=false $img" >/dev/null

python3 - "$work/run.json" "$work/pull.json" <<'PY'
import json, sys
r = {}
for f in sys.argv[1:]:
    r.update({x["command"]: x for x in json.load(open(f))["results"]})
print("| command | hako median (ms) | podman median (ms) | hako/podman |")
print("|---|---|---|---|")
for what in ["run --rm --network none", "run --rm (bridge)", "exec", "pull"]:
    h, p = r[f"hako {what}"]["median"] * 1000, r[f"podman {what}"]["median"] * 1000
    print(f"| `{what}` | {h:.1f} | {p:.1f} | {h / p:.2f} |")
PY
