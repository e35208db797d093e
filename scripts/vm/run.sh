#!/bin/bash
# Boot the systemd VM (scripts/vm/image.sh) with a payload and run it.
#
# Usage: scripts/vm/run.sh PAYLOAD_DIR
#   PAYLOAD_DIR is copied into the VM's root as is (keep host paths, so
#   test binaries find what they were built against), and must hold
#   hako-vm/run-inside.sh, which a systemd unit runs after boot with its
#   output on the serial console. Its last line is HAKO-VM-EXIT=<code>.
# The console streams to stdout; the exit code is the payload's (1 when
# the marker never came: a boot failure, the timeout (HAKO_VM_TIMEOUT
# seconds, default 1500) or a console silent for HAKO_VM_IDLE seconds).
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
: > "$log"
mon="$work/monitor.sock"
# A command to QEMU's monitor (its socket), e.g. a key press for the guest.
monitor() {
    python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
time.sleep(0.5)' "$mon" "$1" >/dev/null 2>&1 || true
}
# A guest whose console says nothing for HAKO_VM_IDLE seconds (default
# 660; a test binary prints within seconds, its harness says when a test
# has run for 60, and vm-tests.sh's own watchdog speaks at 600) is stuck: its kernel is asked, by SysRq through
# the emulated keyboard, for the tasks that are blocked and what every
# CPU runs, so the console shows why; then the VM is ended.
idle=${HAKO_VM_IDLE:-660}
(
    last=-1 quiet=0
    while sleep 10; do
        size=$(stat -c %s "$log" 2>/dev/null || echo 0)
        if [ "$size" = "$last" ]; then quiet=$((quiet + 10)); else quiet=0 last=$size; fi
        if [ "$quiet" -ge "$idle" ]; then
            echo "vm: no console output for $idle s: the guest's blocked tasks and CPUs (SysRq w, l), then the end" >&2
            for k in w l; do monitor "sendkey alt-sysrq-$k"; sleep 10; done
            monitor quit
            break
        fi
    done
) &
dog=$!
set +e
timeout "${HAKO_VM_TIMEOUT:-1500}" qemu-system-x86_64 \
    -accel tcg -cpu max -smp 2 -m 4096 \
    -nographic -no-reboot -nic none -device virtio-rng-pci \
    -monitor "unix:$mon,server=on,wait=off" \
    -kernel "$img/vmlinuz" -initrd "$work/initrd" \
    -append "console=ttyS0 rdinit=/hako-init systemd.unified_cgroup_hierarchy=1 panic=-1 random.trust_cpu=on loglevel=4 systemd.show_status=false sysrq_always_enabled" \
    </dev/null 2>&1 | tee "$log" | stdbuf -oL tr -d '\r'
set -e
kill "$dog" 2>/dev/null || true
wait "$dog" 2>/dev/null || true
code=$(grep -a -o 'HAKO-VM-EXIT=[0-9]*' "$log" | tail -1 | cut -d= -f2)
if [ -z "$code" ]; then
    echo "vm: no exit marker from the VM (boot failure or timeout); the console's end:" >&2
    tail -n 40 "$log" | tr -d '\r' >&2
    exit 1
fi
exit "$code"
