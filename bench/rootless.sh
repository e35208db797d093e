#!/bin/bash
# Rootless start, side by side: `run --rm --network none busybox true` by an
# unprivileged user with subordinate ids, hako next to podman (crun), timed
# by hyperfine in one interleaved run.
#
#   sudo bash bench/rootless.sh [RUNS]      (default 30 runs each)
#
# Needs root to make the user (hakobench, with its own ranges), which it
# removes again at the end with everything of it. Installs hyperfine,
# podman, crun and uidmap from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
bash scripts/setup.sh hyperfine podman crun uidmap >/dev/null
cargo build --release -q -p hako-cli --bin hako
work=$(mktemp -d /tmp/hako-rlbench.XXXXXX)
chmod 755 "$work"
user=hakobench
source bench/crun-hugetlb.sh
cleanup() {
    pkill -KILL -U "$user" 2>/dev/null || true
    sleep 0.2
    userdel "$user" 2>/dev/null || true
    sed -i "/^$user:/d" /etc/subuid /etc/subgid
    rm -rf "$work"
}
trap cleanup EXIT
useradd -M -d "$work/home" -s /bin/sh "$user"
sed -i "/^$user:/d" /etc/subuid /etc/subgid
echo "$user:500000000:65536" >> /etc/subuid
echo "$user:500000000:65536" >> /etc/subgid
mkdir -p "$work/home/run"
cp target/x86_64-unknown-linux-gnu/release/hako "$work/hako"
bash scripts/make-bundle.sh "$work/bundle" >/dev/null 2>&1
tar -C "$work/bundle/rootfs" -cf "$work/rootfs.tar" .
chown -R "$user:" "$work/home" "$work/bundle" "$work/rootfs.tar"
chmod 700 "$work/home/run"

as_user() {
    setpriv --reuid="$user" --regid="$user" --init-groups env -i \
        PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$work/home" USER="$user" \
        XDG_RUNTIME_DIR="$work/home/run" XDG_DATA_HOME="$work/home/data" \
        XDG_CONFIG_HOME="$work/home/config" "$@"
}
pod="podman --cgroup-manager cgroupfs --events-backend file --runtime crun"
as_user "$work/hako" import "$work/bundle/rootfs" busybox >/dev/null
as_user $pod import "$work/rootfs.tar" localhost/busybox >/dev/null
# Both first runs make their user namespaces and caches: not timed.
as_user "$work/hako" run --rm --network none busybox true 2>/dev/null
as_user $pod run --rm --network none localhost/busybox true

echo "== $("$work/hako" --version); $(podman --version); $(crun --version | head -1)"
echo "== $(nproc) cores, kernel $(uname -r), $runs runs each, as $user"
env="setpriv --reuid=$user --regid=$user --init-groups env -i PATH=/usr/bin:/bin HOME=$work/home XDG_RUNTIME_DIR=$work/home/run XDG_DATA_HOME=$work/home/data XDG_CONFIG_HOME=$work/home/config"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/result.json" \
    -n "hako (rootless)" "$env $work/hako run --rm --network none busybox true" \
    -n "podman (rootless)" "$env $pod run --rm --network none localhost/busybox true"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
p = r["podman (rootless)"]["median"]
print("\n| rootless `run --rm --network none busybox true` | median (ms) | mean ± σ (ms) | vs podman |")
print("|---|---|---|---|")
for name in ("hako (rootless)", "podman (rootless)"):
    x = r[name]
    print(f"| {name} | {x['median']*1000:.1f} | {x['mean']*1000:.1f} ± {x['stddev']*1000:.1f} | {x['median']/p:.2f}× |")
PY
