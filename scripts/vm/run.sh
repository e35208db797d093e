#!/bin/bash
# Boot the systemd VM (scripts/vm/image.sh) with a payload and run it.
#
# Usage: scripts/vm/run.sh PAYLOAD_DIR
#   PAYLOAD_DIR is copied into the VM's root as is (keep host paths, so
#   test binaries find what they were built against), and must hold
#   hako-vm/run-inside.sh, which a systemd unit runs after boot with its
#   output on the serial console. Its last line is HAKO-VM-EXIT=<code>.
# The console streams to stdout; the exit code is the payload's (1 when
# the marker never came: a boot failure or the timeout, HAKO_VM_TIMEOUT
# seconds, default 1500).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
payload=$(cd "$1" && pwd)
[ -f "$payload/hako-vm/run-inside.sh" ] || { echo "vm: $payload/hako-vm/run-inside.sh missing" >&2; exit 2; }
img=$(bash "$here/image.sh")

work=$(mktemp -d /var/tmp/hako-vm-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A TERM or INT ends the script through its EXIT trap (bash skips it otherwise).
trap 'exit 143' TERM
trap 'exit 130' INT
# The kernel unpacks the archives one after the other: the root
# filesystem, then the payload over it.
cp "$img/base.cpio" "$work/initrd"
# The kernel gives directories that exist already the mode and owner the
# appended archive has for them: the payload's must be the image's (its
# root came from mktemp -d, 0700, which locked every user but root out of
# /, and a CI clone under /tmp would make /tmp 0755).
chmod 0755 "$payload"
for d in tmp var/tmp; do
    if [ -d "$payload/$d" ]; then chmod 1777 "$payload/$d"; fi
done
(cd "$payload" && find . | cpio -o -H newc --quiet) >> "$work/initrd"

# TCG: KVM hangs in the firmware on the development machine. No NIC: the
# tests need none.
log="$work/console.log"
set +e
timeout "${HAKO_VM_TIMEOUT:-1500}" qemu-system-x86_64 \
    -accel tcg -cpu max -smp 2 -m 4096 \
    -nographic -no-reboot -nic none -device virtio-rng-pci \
    -kernel "$img/vmlinuz" -initrd "$work/initrd" \
    -append "console=ttyS0 rdinit=/hako-init systemd.unified_cgroup_hierarchy=1 panic=-1 random.trust_cpu=on loglevel=4 systemd.show_status=false" \
    </dev/null 2>&1 | tee "$log" | stdbuf -oL tr -d '\r'
set -e
code=$(grep -a -o 'HAKO-VM-EXIT=[0-9]*' "$log" | tail -1 | cut -d= -f2)
if [ -z "$code" ]; then
    echo "vm: no exit marker from the VM (boot failure or timeout); the console's end:" >&2
    tail -n 40 "$log" | tr -d '\r' >&2
    exit 1
fi
exit "$code"
