#!/bin/bash
# The real-hosts stage (issue 12): hako's cgroup and runtime integration
# tests inside a Debian 12 VM with systemd 252 as PID 1 and cgroup2 only,
# the hosts most users run (the development machine is hybrid, without
# systemd). scripts/test.sh runs this after the host tests; it can also run
# alone: `bash scripts/vm-tests.sh [PACKAGE/TEST[@NAME][:systemd]...]`
# (default: the cgroup crate's root tests, hako-runc's cgroup operations
# (runc_ops) with the cgroupfs driver and again with the systemd driver
# (`:systemd` sets HAKO_TEST_CGROUP_DRIVER=systemd), the systemd driver's
# own tests with the engine and the clients (systemd), the engine's
# integration tests whose kernel side differs there (engine, see
# vm_engine below), which use the systemd cgroup manager
# by default, and checkpoint/restore with CRIU under both drivers).
# `@NAME[,NAME…]` runs only the tests whose names contain one of them.
#
# The test binaries are built here and copied into the VM at the same
# absolute paths, with the scripts and fixtures they use, and run there
# with --include-ignored (they are root tests) and their output on the
# console, so the runner's checks for ignored or skipped tests apply.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# Where cargo puts this target's builds (.cargo/config.toml names the
# target), and the tests' scratch space (CARGO_TARGET_TMPDIR).
tdir="$repo/target/x86_64-unknown-linux-gnu"
# Test files as PACKAGE/TEST (cargo's -p and --test).
tests=("$@")
# The engine's tests there are the ones whose kernel side differs on such
# a host (cgroup2 with the systemd manager, limits and stats, restarts and
# health checks in scopes, rootless with delegation, CRIU's checkpoints,
# recovery after a reboot); the rest run on the development host only, to
# keep the stage within CI's time (TCG runs them about ten times slower).
vm_engine=checkpoint_and_restore,flags_env_volumes,update_changes_limits,detached_logs,restart_policies,health_checks,stats_stream,after_a_reboot,userns_maps,userns_auto
[ ${#tests[@]} -gt 0 ] || tests=(hako-cgroups/root_kernel hako-cli/runc_ops hako-cli/runc_ops:systemd hako-cli/systemd "hako-cli/engine@$vm_engine" hako-cli/rootless hako-cli/checkpoint hako-cli/checkpoint:systemd)

exes=()
for entry in "${tests[@]}"; do
    t=${entry%%:*}
    t=${t%%@*}
    mapfile -t -O "${#exes[@]}" exes < <(cargo test -p "${t%%/*}" --test "${t#*/}" --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["executable"])')
done
[ ${#exes[@]} -eq ${#tests[@]} ] || { echo "vm-tests: could not build ${tests[*]}" >&2; exit 1; }
cargo build -p hako-cli >/dev/null 2>&1

payload=$(mktemp -d /var/tmp/hako-vm-payload.XXXXXX)
trap 'rm -rf "$payload"' EXIT
# A TERM or INT ends the script through its EXIT trap (bash skips it otherwise).
trap 'exit 143' TERM
trap 'exit 130' INT
put() { mkdir -p "$payload$(dirname "$1")" && cp -a "$1" "$payload$1"; }
put "$repo/scripts"
put "$repo/crates/cli/tests/fixtures"
put "$tdir/debug/hako"
put "$tdir/debug/hako-runc"
for e in "${exes[@]}"; do put "$e"; done
# The engine tests' static fixture programs, built here where the tests
# look for them first (CARGO_TARGET_TMPDIR/fixtures): the VM has no
# compiler.
mkdir -p "$tdir/tmp/fixtures"
for c in "$repo"/crates/cli/tests/fixtures/*.c; do
    out="$tdir/tmp/fixtures/$(basename "$c" .c)"
    [ "$out" -nt "$c" ] || gcc -static -O2 -o "$out" "$c"
done
put "$tdir/tmp/fixtures"

mkdir -p "$payload/hako-vm"
{
    echo '#!/bin/bash'
    echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root'
    echo "cd '$repo'"
    echo 'echo "hako-vm: kernel $(uname -r), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup), PID 1 is $(cat /proc/1/comm), $(systemctl --version | head -1)"'
    echo 'rc=0'
    # CRIU works on this kernel: the checkpoint tests must not fall back
    # to checking only the error they give where it does not.
    echo 'export HAKO_TEST_CRIU=required'
    # systemd's D-Bus API (the systemd driver's tests use it) is there once
    # PID 1 joined the system bus: wait for it, with a deadline (counted in
    # tries: the VM's clock may jump while it boots).
    # The VM has no NIC (the tests need no network), but pasta (rootless
    # networking) needs an interface with a default route to copy, as any
    # networked host has: a dummy one, with an address from TEST-NET-1.
    echo 'ip link add hakoext type dummy && ip addr add 192.0.2.2/24 dev hakoext && ip link set hakoext up && ip route add default via 192.0.2.1 || echo "hako-vm: no dummy interface"'
    echo 'for try in $(seq 120); do'
    echo '    busctl --timeout=5 --system call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping >/dev/null 2>&1 && break'
    echo '    [ "$try" = 120 ] && { echo "hako-vm: systemd is not on the bus"; rc=1; }'
    echo '    sleep 1'
    echo 'done'
    # Who sends which signal to whom (the kernel's signal_generate event),
    # shown for a failing test binary: a process of hako's that died
    # without a word is named here with its killer.
    echo 'tr=/sys/kernel/tracing; [ -d $tr/events ] || mount -t tracefs tracefs $tr 2>/dev/null'
    echo 'if [ -w $tr/events/signal/signal_generate/filter ]; then echo 4096 > $tr/buffer_size_kb; echo "sig != 17 && sig != 28" > $tr/events/signal/signal_generate/filter; echo 1 > $tr/events/signal/signal_generate/enable; else tr=; fi'
    echo 'failed() {'
    echo '    echo "hako-vm: $1 failed; the journal since it started (without the rootless tests'"'"' noise):"'
    echo '    journalctl -b --no-pager -o short-monotonic 2>/dev/null | awk -v t0="$2" '"'"'{ s = $0; sub(/^\[ */, "", s) } s + 0 >= t0'"'"' | grep -vE "failed to set xattr on upper|No external routable|entered (blocking|disabled|forwarding) state|promiscuous mode|link becomes ready|user(add|del)\\[" | tail -n 200'
    echo '    [ -n "$tr" ] && { echo "hako-vm: signals (but SIGCHLD, SIGWINCH) sent to hako processes meanwhile:"; grep "comm=hako " $tr/trace | tail -n 200; }'
    echo '}'
    for i in "${!exes[@]}"; do
        e=${exes[$i]}
        env=
        case "${tests[$i]}" in *:systemd) env="HAKO_TEST_CGROUP_DRIVER=systemd " ;; esac
        filter=
        if [[ ${tests[$i]} == *@* ]]; then
            f=${tests[$i]#*@}
            f=${f%%:*}
            IFS=, read -ra names <<<"$f"
            for n in "${names[@]}"; do filter+=" '$n'"; done
        fi
        echo "echo 'hako-vm: running ${env}$(basename "$e")'"
        # Tests named v1_* need cgroup v1 hierarchies, which this host has
        # none of: they run on the hybrid development host; here they are
        # filtered out (and counted as such), never reported as passed.
        echo 't0=$(cut -d" " -f1 /proc/uptime); [ -n "$tr" ] && echo > $tr/trace'
        # A binary still running after HAKO_VM_TEST_LIMIT seconds (default
        # 600; the slowest takes 150 here) hangs: its threads' kernel stacks
        # and every process are shown, then it is killed, so the stage
        # fails saying where it stood.
        echo "${env}'$e' --include-ignored --test-threads=2 --color never --skip v1_${filter} & pid=\$!"
        echo "( sleep ${HAKO_VM_TEST_LIMIT:-600}; kill -0 \$pid 2>/dev/null || exit 0; echo 'hako-vm: $(basename "$e") has run for ${HAKO_VM_TEST_LIMIT:-600} s: its threads, and every process'; for t in /proc/\$pid/task/*; do echo \"== \$t \$(cat \$t/comm) \$(cat \$t/wchan)\"; cat \$t/stack; done; ps -eo pid,ppid,stat,wchan:30,etimes,args --forest; kill -KILL \$pid ) & dog=\$!"
        echo "wait \$pid || { rc=1; failed '${env}$(basename "$e")' \$t0; }"
        echo 'kill $dog 2>/dev/null; wait $dog 2>/dev/null'
    done
    echo 'echo "HAKO-VM-EXIT=$rc"'
    echo 'sync'
    echo 'poweroff -f'
} > "$payload/hako-vm/run-inside.sh"

echo "vm-tests: ${tests[*]} in a Debian 12 systemd VM (cgroup2 only)" >&2
bash scripts/vm/run.sh "$payload"
