#!/bin/bash
# Install what hako's build and tests need on a Debian machine (idempotent).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# dbus-daemon: a private bus for the systemd driver's D-Bus client tests.
# protobuf-compiler: the CRI test client (crates/cli/tests/cri.rs) is generated
# from Kubernetes' .proto files at build time.
# criu: checkpoint/restore (crates/cli/tests/checkpoint.rs).
pkgs=(busybox-static libseccomp-dev pkg-config iproute2 nftables util-linux passt slirp4netns uidmap fuse-overlayfs protobuf-compiler dbus-daemon criu)
# Extra packages a caller needs (benchmarks, client tests) come as arguments.
pkgs+=("$@")

bash "$(dirname "$0")/apt-install.sh" -q "${pkgs[@]}"
# Rootless networking (pasta) opens /dev/net/tun as the user: udev makes it
# 0666 on a normal boot; a machine without udev may have it 0600.
# fuse-overlayfs (rootless roots where configured) opens /dev/fuse: the same.
for dev in /dev/net/tun /dev/fuse; do
    if [ -c "$dev" ] && [ "$(stat -c %a "$dev")" != 666 ]; then
        chmod 0666 "$dev"
    fi
done
# An unprivileged user for the rootless tests.
id -u hakotest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin hakotest
command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required" >&2; exit 1; }
