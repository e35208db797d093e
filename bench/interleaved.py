#!/usr/bin/env python3
"""Container start, interleaved: `RUNTIME run` of /bin/true on one busybox
bundle, the runtimes taking turns run by run so that load changes hit them
alike. The order is shuffled every round. Reports the median wall time, the
median CPU time (user + sys of the runtime and everything it waited for)
and the median peak RSS of each (in a pass of its own, under GNU time,
whose wait4 sees the runtime alone: a child forked from this Python
would count Python's pages).

    sudo python3 bench/interleaved.py RUNS NAME=BINARY [NAME=BINARY ...]

e.g. a hako-runc before and after a change, beside crun:

    sudo python3 bench/interleaved.py 400 before=/tmp/old/hako-runc \\
        after=target/x86_64-unknown-linux-gnu/release/hako-runc crun=crun

GAP_MS=N in the environment waits N ms before each start, for isolated
starts: back to back, the kernel's cgroup migration lock is mostly still
in its writer state from the last start and a migration skips its RCU
wait (docs/benchmarks.md, "The measured floor").
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

runs = int(sys.argv[1])
rts = dict(a.split("=", 1) for a in sys.argv[2:])
here = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp(prefix="hako-bench-")
try:
    subprocess.run(["bash", f"{here}/../scripts/make-bundle.sh", f"{work}/bundle"],
                   stderr=subprocess.DEVNULL, check=True)
    cfg = f"{work}/bundle/config.json"
    c = json.load(open(cfg))
    c["process"]["args"] = ["/bin/true"]
    json.dump(c, open(cfg, "w"))
    res = {k: {"wall": [], "cpu": [], "rss": []} for k in rts}
    warmup = 10
    # A new order every round: the runtime that goes right after another
    # pays for the kernel's asynchronous teardown of that one's container
    # (cgroup release in kworkers), so a fixed order biased the results by
    # up to 0.5 ms (measured: one binary under two names, 2026-12-04).
    rng = random.Random(1)
    order = list(rts.items())
    gap = float(os.environ.get("GAP_MS", "0")) / 1000
    for i in range(runs + warmup):
        rng.shuffle(order)
        for k, b in order:
            time.sleep(gap)
            t0 = time.perf_counter()
            p = subprocess.Popen([b, "--root", f"{work}/state-{k}", "run", "-b", f"{work}/bundle", f"c-{k}"])
            _, status, ru = os.wait4(p.pid, 0)
            t1 = time.perf_counter()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{k} exited with {os.waitstatus_to_exitcode(status)}")
            if i >= warmup:
                res[k]["wall"].append((t1 - t0) * 1000)
                res[k]["cpu"].append((ru.ru_utime + ru.ru_stime) * 1000)
    for i in range(20):
        rng.shuffle(order)
        for k, b in order:
            out = f"{work}/rss"
            subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out, b, "--root", f"{work}/state-{k}",
                            "run", "-b", f"{work}/bundle", f"c-{k}"], check=True)
            res[k]["rss"].append(int(open(out).read().split()[-1]) / 1024)
    last = list(rts)[-1]
    base = {m: statistics.median(res[last][m]) for m in ("wall", "cpu")}
    print(f"| runtime | wall median (ms) | cpu median (ms) | peak RSS (MiB) | wall vs {last} | cpu vs {last} |")
    print("|---|---|---|---|---|---|")
    for k in rts:
        w = statistics.median(res[k]["wall"])
        u = statistics.median(res[k]["cpu"])
        m = statistics.median(res[k]["rss"])
        print(f"| {k} | {w:.2f} | {u:.2f} | {m:.1f} | {w / base['wall']:.2f}× | {u / base['cpu']:.2f}× |")
finally:
    shutil.rmtree(work, ignore_errors=True)
