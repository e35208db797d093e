#!/bin/bash
# Build hako and run a container with the engine: it prints its hostname,
# its PID and its namespaces next to the host's.
#
# The image is busybox from a registry when one is reachable, else one made
# offline from Debian's busybox-static (scripts/make-bundle.sh + hako import).
set -euo pipefail
# Root is needed (real containers); as another user, go through sudo and
# keep the caller's Rust toolchain.
if [ "$(id -u)" != 0 ]; then
    exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
        RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q
hako=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/hako

if ! $hako image inspect busybox >/dev/null 2>&1; then
    if timeout 5 bash -c '</dev/tcp/registry-1.docker.io/443' 2>/dev/null &&
        timeout 120 $hako pull busybox >/dev/null 2>&1; then
        echo "pulled busybox from Docker Hub"
    else
        echo "no registry reachable: making a busybox image from Debian's busybox-static"
        tmp=$(mktemp -d /tmp/hako-demo.XXXXXX)
        trap 'rm -rf "$tmp"' EXIT
        bash scripts/make-bundle.sh "$tmp" 2>/dev/null
        $hako import "$tmp/rootfs" busybox >/dev/null
    fi
fi

echo "host namespaces:"
for n in cgroup ipc mnt net pid uts; do echo "  $n $(readlink /proc/self/ns/$n)"; done
echo "--- inside the container (hako run --rm --hostname hako-demo busybox …) ---"
$hako run --rm --network none --hostname hako-demo busybox sh -c \
    'echo "hostname: $(hostname)"; echo "pid: $$"; echo namespaces:;
     for n in cgroup ipc mnt net pid uts; do echo "  $n $(readlink /proc/self/ns/$n)"; done'
