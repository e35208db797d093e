#!/bin/bash
# Run a command as on a cgroup2-only host, on this hybrid one: in a private
# mount namespace whose /sys/fs/cgroup is the cgroup2 hierarchy alone (the
# v1 hierarchies stay mounted outside; their controllers are not offered).
# Runtimes then take their cgroup2-only paths (hako-runc and crun clone the
# init into its cgroup), so both can be compared here without a VM.
#
#   sudo bash bench/cgroup2-view.sh python3 bench/interleaved.py 300 \
#       before=/tmp/old/hako-runc after=target/x86_64-unknown-linux-gnu/release/hako-runc crun=crun
#
# Nothing is left behind: the namespace ends with the command.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: cgroup2-view.sh COMMAND [ARG...]" >&2; exit 2; }
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    exec "$@"
fi
exec unshare --mount --propagation private bash -c '
    set -e
    umount --lazy /sys/fs/cgroup
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    exec "$@"' cgroup2-view "$@"
