#!/bin/bash
# Prepare the real-client tests (crates/cli/tests/clients.rs): install
# containerd and podman from Debian, and build a busybox image offline from
# scripts/make-bundle.sh's rootfs. No registry is contacted.
#
# Usage: scripts/clients-setup.sh [OUTDIR]      (default /var/cache/hako-clients)
# Writes OUTDIR/busybox.tar, a docker-archive tagged $IMAGE_REF that both
# `ctr image import` and `podman load` read, OUTDIR/oci, an OCI layout of
# the same image, and OUTDIR/pause.tar ($PAUSE_REF, the CRI sandbox image). Idempotent: the image is rebuilt only when this script or
# make-bundle.sh changed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/cache/hako-clients}
IMAGE_REF=localhost/hako-busybox:latest
PAUSE_REF=localhost/hako-pause:latest

# Test processes may run this concurrently: one at a time.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

# containerd 1.6 (ctr, containerd-shim-runc-v2, the CRI plugin),
# containernetworking-plugins (the CRI test's pod network), docker.io 20.10
# (dockerd for crates/cli/tests/docker.rs), podman 4.3 (conmon,
# containers-common), skopeo and umoci to build the image, busybox for it.
pkgs=(containerd podman conmon skopeo umoci busybox-static docker.io containernetworking-plugins)
bash "$here/apt-install.sh" -q "${pkgs[@]}"
# The Debian packages enable system services; the tests start private
# daemons and never use those, and on a machine without systemd they are
# simply not running.

stamp=$(cat "$0" "$here/make-bundle.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$out/busybox.tar" ] && [ -f "$out/pause.tar" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi

work=$(mktemp -d /var/tmp/hako-clients-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

bash "$here/make-bundle.sh" "$work/bundle" >/dev/null 2>"$work/make-bundle.log" || {
    cat "$work/make-bundle.log" >&2
    exit 1
}

# An OCI layout with one layer holding the rootfs. umoci unpack/repack
# computes the layer as a diff, so copy the rootfs into an unpacked bundle.
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --image "$layout:latest" "$work/unpacked" >/dev/null
cp -a "$work/bundle/rootfs/." "$work/unpacked/rootfs/"
umoci repack --image "$layout:latest" "$work/unpacked" >/dev/null
umoci config --image "$layout:latest" \
    --os linux --architecture "$(dpkg --print-architecture)" \
    --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir / >/dev/null
# The CRI test's sandbox ("pause") image: the same layer, an entrypoint
# that sleeps until SIGTERM, as registry.k8s.io/pause does.
umoci config --image "$layout:latest" --tag pause \
    --config.entrypoint /bin/sh --config.entrypoint -c \
    --config.entrypoint "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done" \
    --clear=config.cmd >/dev/null
umoci gc --layout "$layout"

skopeo --insecure-policy copy -q "oci:$layout:latest" "docker-archive:$work/busybox.tar:$IMAGE_REF"
skopeo --insecure-policy copy -q "oci:$layout:pause" "docker-archive:$work/pause.tar:$PAUSE_REF"
mkdir -p "$out"
rm -rf "$out/oci" "$out/stamp"
mv "$work/busybox.tar" "$out/busybox.tar"
mv "$work/pause.tar" "$out/pause.tar"
mv "$layout" "$out/oci"
echo "$stamp" > "$out/stamp"
echo "clients-setup: image $IMAGE_REF in $out/busybox.tar" >&2
