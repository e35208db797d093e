#!/bin/bash
# hako at scale: N detached busybox containers started one after another
# (`run -d --network none … sleep`), with the start time of each and the
# memory hako keeps per container (the PSS of every hako process: the
# monitors and their keepers) after each; `ps -a` with them running and
# with M in the store; 20 `run --rm` at once against 20 one by one.
# Writes the series to OUT/scale.csv and plots them to OUT/scale.png.
# Before the first start and with all N running, the same probes: 20
# `run -d` (each removed before the next, so the count stays) and
# hako-runc beside crun (bench/interleaved.py, 100 runs each), so the
# start at 0 and at N is compared in medians of its own, and what the
# host's mount table costs every runtime is seen beside hako's.
#
#   sudo bash bench/scale.sh [N] [M] [OUT]   (default 200, 1000, docs/img)
#
# Installs gnuplot-nox and hyperfine from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
m=${2:-1000}
out=${3:-docs/img}
bash scripts/setup.sh gnuplot-nox hyperfine >/dev/null
cargo build --release -q -p hako-cli --bin hako --bin hako-runc
hako=$PWD/target/x86_64-unknown-linux-gnu/release/hako
runc=$PWD/target/x86_64-unknown-linux-gnu/release/hako-runc
source bench/crun-hugetlb.sh
work=$(mktemp -d /tmp/hako-scale.XXXXXX)
export HAKO_DATA_DIR=$work/data HAKO_RUN_DIR=$work/run HAKO_NFT_TABLE=hako_scale
cleanup() {
    "$hako" ps -aq 2>/dev/null | xargs -r "$hako" rm -f >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work" | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
bash scripts/make-bundle.sh "$work/bundle" >/dev/null 2>&1
"$hako" import "$work/bundle/rootfs" busybox >/dev/null
mkdir -p "$out"

# The PSS (kB) of every hako process: what the engine keeps running.
hako_pss() {
    local s=0 p
    for p in $(pgrep -x hako); do
        s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
    done
    echo "$s"
}
base=$(hako_pss)

# The median start of 20 `run -d`, each removed before the next.
probe() {
    local j t0 t1
    for j in $(seq 20); do
        t0=$(date +%s%N)
        "$hako" run -d --name probe --network none busybox sleep 36000 >/dev/null
        t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 ))
        "$hako" rm -f probe >/dev/null
    done | sort -n | awk '{v[NR] = $1} END {printf "%.1f", (v[10] + v[11]) / 2000}'
}
runtimes() {
    python3 bench/interleaved.py 100 hako-runc="$runc" crun=crun
}
probe0=$(probe)
runtimes0=$(runtimes)
echo "n,start_ms,hako_pss_kb" > "$work/scale.csv"
for i in $(seq "$n"); do
    t0=$(date +%s%N)
    "$hako" run -d --name "s$i" --network none busybox sleep 36000 >/dev/null
    t1=$(date +%s%N)
    echo "$i,$(( (t1 - t0) / 1000 )),$(( $(hako_pss) - base ))" >> "$work/scale.csv"
done
cp "$work/scale.csv" "$out/scale.csv"
echo "== $("$hako" --version); $(nproc) cores, kernel $(uname -r)"
python3 - "$work/scale.csv" "$n" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = int(sys.argv[2])
start = [int(r["start_ms"]) / 1000 for r in rows]
mem = [int(r["hako_pss_kb"]) for r in rows]
k = max(1, n // 10)
print(f"| {n} detached containers | value |")
print("|---|---|")
print(f"| start, median of the first {k} (ms) | {statistics.median(start[:k]):.1f} |")
print(f"| start, median of the last {k} (ms) | {statistics.median(start[-k:]):.1f} |")
print(f"| hako's PSS with {n} running, per container (KiB) | {mem[-1] / n:.0f} |")
PY
echo "| run -d, median of 20 with 0 running (ms) | $probe0 |"
echo "| run -d, median of 20 with $n running (ms) | $(probe) |"
echo "runtimes with 0 running:"
echo "$runtimes0"
echo "runtimes with $n running:"
runtimes
hyperfine -N --warmup 3 --runs 20 -n "ps -a ($n running)" "$hako ps -a" 2>/dev/null | grep -E "Time|ps -a"

# 20 at once against one by one.
par() {
    local t0 t1
    t0=$(date +%s%N)
    for j in $(seq 20); do "$hako" run --rm --network none busybox true & done
    wait
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}
seq_() {
    local t0 t1
    t0=$(date +%s%N)
    for j in $(seq 20); do "$hako" run --rm --network none busybox true; done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}
echo "| 20 × run --rm --network none | wall (ms) |"
echo "|---|---|"
echo "| one by one | $(seq_) |"
echo "| all at once | $(par) |"

"$hako" ps -aq | xargs -r "$hako" rm -f >/dev/null
for i in $(seq "$m"); do
    "$hako" create --name "c$i" --network none busybox true >/dev/null
done
hyperfine -N --warmup 3 --runs 20 -n "ps -a ($m created)" "$hako ps -a" 2>/dev/null | grep -E "Time|ps -a"

gnuplot <<EOF
set terminal pngcairo size 900,420 font ",10"
set output "$out/scale.png"
set datafile separator ","
set multiplot layout 1,2
set xlabel "containers running"
set ylabel "hako run -d (ms)"
set key off
plot "$work/scale.csv" every ::1 using 1:(\$2/1000.0) with points pt 7 ps 0.4
set ylabel "hako's PSS (MiB)"
plot "$work/scale.csv" every ::1 using 1:(\$3/1024.0) with lines lw 2
unset multiplot
EOF
echo "plot: $out/scale.png"
