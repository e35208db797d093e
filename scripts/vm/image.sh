#!/bin/bash
# Build (once, cached) the Debian 12 systemd VM that the real-hosts tests
# run in: cgroup2 only, systemd 252 as PID 1, Debian's 6.1 cloud kernel.
# Everything comes from Debian's packages: mmdebstrap for the root
# filesystem, the kernel from its .deb, busybox for a small initramfs.
#
# Usage: scripts/vm/image.sh            prints the cache directory holding
#   vmlinuz and base.cpio: the whole root filesystem as an initramfs,
#   started through /hako-init (scripts/vm/init).
# The cache key is a hash of this script, so editing it rebuilds.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${HAKO_VM_CACHE:-/var/cache/hako-vm}

bash "$here/../apt-install.sh" -q mmdebstrap qemu-system-x86 cpio busybox-static

key=$(cat "$0" "$here/init" "$here/hako-vm-tests.service" | sha256sum | cut -c1-16)
out="$cache_root/$key"
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

# What the tests inside use: systemd and D-Bus (the systemd cgroup driver),
# a user session for rootless (dbus-user-session, libpam-systemd, uidmap),
# the runtimes and clients the tests compare with or drive (podman,
# containerd, runc, crun, criu), busybox for bundles.
pkgs=(
    systemd systemd-sysv dbus dbus-user-session libpam-systemd
    kmod iproute2 nftables iptables libseccomp2 busybox-static util-linux procps
    podman containerd runc crun conmon uidmap criu containernetworking-plugins
    skopeo umoci docker-registry ca-certificates passt slirp4netns fuse-overlayfs
    linux-image-cloud-amd64
)
work=$(mktemp -d /var/tmp/hako-vm-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "vm: building the image in $out (several minutes, once)" >&2
# Hooks run on the host with the root filesystem in "$1". /tmp is kept as
# it is at boot (tmp.mount masked, and a tmpfiles rule that creates it
# instead of emptying it): the test payload may live under /tmp (a CI clone
# in /tmp/x). dbus.service runs as Type=simple: in this VM (TCG, the root
# in an initramfs) dbus-daemon's readiness notification never reached
# systemd, so dbus stayed "activating", PID 1 never joined the bus, and
# systemd's D-Bus API (the systemd cgroup driver's) timed out; the daemon
# itself serves from the start.
mmdebstrap --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$(IFS=,; echo "${pkgs[*]}")" \
    --customize-hook='chroot "$1" depmod -a "$(ls "$1/lib/modules" | head -1)"' \
    --customize-hook='systemctl --root="$1" mask serial-getty@ttyS0.service getty@tty1.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
        systemd-timesyncd.service containerd.service docker.service podman.socket tmp.mount' \
    --customize-hook='echo "d /tmp 1777 root root -" > "$1/etc/tmpfiles.d/tmp.conf"' \
    --customize-hook='mkdir -p "$1/etc/systemd/system/dbus.service.d" && printf "[Service]\nType=simple\n" > "$1/etc/systemd/system/dbus.service.d/hako-vm.conf"' \
    --customize-hook='chroot "$1" useradd -m -s /bin/bash hakouser' \
    --customize-hook='mkdir -p "$1/var/lib/systemd/linger" && touch "$1/var/lib/systemd/linger/hakouser"' \
    --customize-hook='echo hako-vm > "$1/etc/hostname"' \
    --customize-hook='copy-in '"$here"'/hako-vm-tests.service /etc/systemd/system' \
    --customize-hook='systemctl --root="$1" enable hako-vm-tests.service' \
    --customize-hook='cp "$1"/boot/vmlinuz-* '"$work"'/vmlinuz' \
    bookworm "$work/rootfs.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >&2

# The initramfs is the whole root filesystem (cpio keeps no xattrs; the
# image needs none: newuidmap/newgidmap are setuid in Debian), with our
# /hako-init (scripts/vm/init) as the kernel's rdinit.
mkdir "$work/root"
tar -xpf "$work/rootfs.tar" -C "$work/root"
rm "$work/rootfs.tar"
install -m 755 "$here/init" "$work/root/hako-init"
(cd "$work/root" && find . | cpio -o -H newc --quiet) > "$work/base.cpio"
rm -rf "$work/root"

rm -rf "$out"
mkdir -p "$out"
mv "$work/vmlinuz" "$work/base.cpio" "$out/"
touch "$out/done"
# Older images (other keys) are no longer used.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
echo "$out"
