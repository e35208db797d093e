#!/usr/bin/env python3
"""Link order for hako-runc and hako: the functions their hot paths run, in
the order they first run them, written to crates/cli/order/BIN.txt, which
crates/cli/build.rs hands to the linker (--symbol-ordering-file) for
release builds.

Why: a start touches ~1 MiB of a binary's ~4.4 MiB of code, spread over
all of it; each page fault maps the 64 KiB around it (the kernel's
fault-around), so three quarters of the text ended up resident and its
faults were paid twice (the container's init re-faults what the runtime
touched). Laid out together, the start path's code is one contiguous
run (docs/benchmarks.md, "Link order and deferred verb parsers").

How: bench/order-trace.c single-steps each command below and every process
it forks, and records the first execution of every instruction in the
binary's text; the link map of the same build names the input section
(function) each address is in. The symbol names carry the compiler's
hashes, so the list is for this toolchain and Cargo.lock: after a Rust or
dependency update, run this again (it prints how much of the listed code
the new build still has). A stale list only costs the layout, never
correctness: the linker ignores names it does not find.

    sudo python3 bench/symbol-order.py     (a few minutes: single-stepping)
"""
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
rel = os.path.join(root, "target/x86_64-unknown-linux-gnu/release")
work = tempfile.mkdtemp(prefix="hako-order-")
env = dict(os.environ, HAKO_LINK_MAP=work)


def text_segment(binary):
    """(file offset, vaddr, size) of the executable LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[1], 16), int(f[2], 16), int(f[4], 16)
    sys.exit(f"{binary}: no executable segment")


def text_sections(mapfile):
    """Input sections of .text from an lld link map (-Map, --no-demangle):
    sorted [vaddr, size, first symbol]. The map's columns: VMA, LMA, size,
    alignment, then the output section, input section or symbol at
    increasing indentation (columns 49, 57 and 65)."""
    secs, out_sec = [], None
    for line in open(mapfile):
        f = line.split()
        if len(line) < 50 or f[0] == "VMA":
            continue
        if line[49] != " ":
            out_sec = f[-1]
        elif out_sec != ".text":
            continue
        elif line[57] != " ":
            secs.append([int(f[0], 16), int(f[2], 16), None])
        elif secs and secs[-1][2] is None:
            secs[-1][2] = line[65:].strip()
    secs = [s for s in secs if s[2]]
    secs.sort()
    return secs


def trace(binary, out, argv, run_env=None, attach=None):
    off, vaddr, size = text_segment(binary)
    cmd = [f"{work}/trace", out, os.path.realpath(binary), hex(off), hex(vaddr), hex(size)]
    cmd += ["--attach", "2", *map(str, attach)] if attach else ["--", binary, *argv]
    t0 = time.time()
    # stderr to a file, not a pipe: `create` leaves the container's init
    # holding it until `start`.
    with open(f"{out}.log", "w+") as log:
        # Tracer and traced on one CPU: each step's wake-up then stays on
        # it (3.7x faster here than across the two cores).
        cpu = min(os.sched_getaffinity(0))
        r = subprocess.run(cmd, env=run_env or env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=log,
                           preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        log.seek(0)
        said = log.read().strip().splitlines()
    print(f"  {os.path.basename(binary)} {' '.join(argv[2:] if argv and argv[0] == '--root' else argv)}: "
          f"{said[-1] if said else ''} ({time.time() - t0:.0f} s)", file=sys.stderr)
    if r.returncode != 0:
        sys.exit(f"traced command failed: {' '.join(argv)}")
    return out


def write_order(name, mapfile, traces, first=()):
    """The sections the traces run, in the order they first run them,
    after those whose names contain one of `first`."""
    secs = text_sections(mapfile)
    starts = [s[0] for s in secs]
    order, seen, size = [], set(), 0

    def take(sec):
        nonlocal size
        if sec[2] not in seen:
            seen.add(sec[2])
            order.append(sec[2])
            size += sec[1]

    for s in secs:
        if any(f in s[2] for f in first):
            take(s)
    for t in traces:
        for line in open(t):
            a = int(line, 16)
            i = bisect.bisect_right(starts, a) - 1
            if i >= 0 and a < secs[i][0] + secs[i][1]:
                take(secs[i])
    dest = os.path.join(root, "crates/cli/order", f"{name}.txt")
    if os.path.exists(dest):
        names = {s[2] for s in secs}
        old = open(dest).read().split()
        print(f"{dest}: the previous list's names in this build: "
              f"{sum(n in names for n in old)} of {len(old)}", file=sys.stderr)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write("".join(s + "\n" for s in order))
    total = sum(s[1] for s in secs)
    print(f"{dest}: {len(order)} sections, {size // 1024} KiB of {total // 1024} KiB of text", file=sys.stderr)


def bundle(path, args):
    subprocess.run(["bash", f"{root}/scripts/make-bundle.sh", path], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    cfg = f"{path}/config.json"
    c = json.load(open(cfg))
    c["process"]["args"] = args
    c["process"]["terminal"] = False
    json.dump(c, open(cfg, "w"))


def runc_traces(runc):
    """hako-runc: `run` (the benchmark), then the verbs containerd and
    Docker drive (create, start, state, exec, kill, delete)."""
    bundle(f"{work}/b-true", ["/bin/true"])
    bundle(f"{work}/b-sleep", ["/bin/sleep", "600"])
    st = ["--root", f"{work}/runc-state"]
    t = [trace(runc, f"{work}/runc-run", [*st, "run", "-b", f"{work}/b-true", "o1"])]
    t.append(trace(runc, f"{work}/runc-create", [*st, "create", "-b", f"{work}/b-sleep", "o2"]))
    for i, verb in enumerate([["start", "o2"], ["state", "o2"], ["exec", "o2", "/bin/true"],
                              ["kill", "o2", "KILL"]]):
        t.append(trace(runc, f"{work}/runc-{i}", [*st, *verb]))
    deadline = time.time() + 10
    while time.time() < deadline and '"stopped"' not in subprocess.run(
            [runc, *st, "state", "o2"], capture_output=True, text=True).stdout:
        time.sleep(0.05)
    t.append(trace(runc, f"{work}/runc-delete", [*st, "delete", "o2"]))
    return t


def engine_traces(hako):
    """hako: first what a detached container's keeper and monitor run while
    the container prints (attached to for two seconds), so that this code,
    which stays resident for a container's whole life, lies together at
    the head of the text: the monitor drops its start-up pages (`shrink`
    in crates/engine/src/monitor.rs) and faults back only these. Then
    `run --rm` without a network and on the default bridge (the
    benchmarks), a detached run, exec, ps and rm (everyday verbs), and a
    detached container traced through its monitor's end."""
    cfg = f"{work}/hako.toml"
    with open(cfg, "w") as f:
        f.write('[network]\ndefault_bridge = "hkorder0"\ndefault_subnet = "10.94.0.0/24"\n')
    e = dict(env, HAKO_DATA_DIR=f"{work}/data", HAKO_RUN_DIR=f"{work}/run",
             HAKO_NFT_TABLE="hako_order", HAKO_CONFIG=cfg)
    bundle(f"{work}/b-img", ["/bin/true"])
    subprocess.run([hako, "import", f"{work}/b-img/rootfs", "busybox"], env=e, check=True,
                   stdout=subprocess.DEVNULL)
    # Untimed first runs: the bridge and the image's caches are made once.
    subprocess.run([hako, "run", "--rm", "busybox", "true"], env=e, check=True)
    cid = subprocess.run([hako, "run", "-d", "--network", "none", "--name", "o-steady", "busybox", "sh", "-c",
                          "while :; do echo line; sleep 0.05; done"],
                         env=e, check=True, capture_output=True, text=True).stdout.strip()
    # Steady: the keeper and the monitor exist and the container's lines
    # reach its log.
    deadline, pids = time.time() + 10, []
    while time.time() < deadline:
        pids = subprocess.run(["pgrep", "-f", f"__monitor {cid}"], capture_output=True, text=True).stdout.split()
        logged = subprocess.run([hako, "logs", "o-steady"], env=e, capture_output=True, text=True).stdout
        if len(pids) == 2 and logged.count("line") >= 3:
            break
        time.sleep(0.05)
    else:
        sys.exit(f"expected a keeper and a monitor for {cid} and its output, found {pids}")
    t = [trace(hako, f"{work}/hako-steady", ["(steady monitor)"], run_env=e, attach=pids)]
    subprocess.run([hako, "rm", "-f", "o-steady"], env=e, check=True, stdout=subprocess.DEVNULL)
    t.append(trace(hako, f"{work}/hako-none", ["run", "--rm", "--network", "none", "busybox", "true"], run_env=e))
    t.append(trace(hako, f"{work}/hako-bridge", ["run", "--rm", "busybox", "true"], run_env=e))
    t.append(trace(hako, f"{work}/hako-d", ["run", "-d", "--network", "none", "--name", "o", "busybox",
                                            "sleep", "600"], run_env=e))
    for i, verb in enumerate([["exec", "o", "true"], ["ps"], ["rm", "-f", "o"]]):
        t.append(trace(hako, f"{work}/hako-{i}", verb, run_env=e))
    t.append(trace(hako, f"{work}/hako-monitor",
                   ["run", "-d", "--network", "none", "--name", "o-log", "busybox", "sh", "-c",
                    "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.1; done"],
                   run_env=dict(e, ORDER_TRACE_WAIT="1")))
    return t, e


def main():
    if os.geteuid() != 0:
        sys.exit("symbol-order.py: run as root")
    subprocess.run(["gcc", "-O2", "-o", f"{work}/trace", f"{here}/order-trace.c"], check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "hako-cli"], cwd=root, env=env, check=True)
    runc, hako = f"{rel}/hako-runc", f"{rel}/hako"
    print("tracing (single-stepping takes minutes)", file=sys.stderr)
    write_order("hako-runc", f"{work}/hako-runc.map", runc_traces(runc))
    e = None
    try:
        t, e = engine_traces(hako)
        # The monitor's shrink drops its text's pages from inside these
        # two: their code runs again right after, before the steady loop.
        write_order("hako", f"{work}/hako.map", t, first=("7monitor6shrink17h", "__madvise"))
    finally:
        if e:
            ids = subprocess.run([hako, "ps", "-aq"], env=e, capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run([hako, "rm", "-f", *ids], env=e, stdout=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", "hkorder0"], stderr=subprocess.DEVNULL)
        subprocess.run(["nft", "delete", "table", "inet", "hako_order"], stderr=subprocess.DEVNULL)


try:
    main()
finally:
    subprocess.run(["bash", "-c", f"findmnt -rn -o TARGET | grep '^{work}' | sort -r | xargs -r umount -l"],
                   stderr=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)
