#!/bin/bash
# Two hako builds side by side: `run --rm --network none busybox true` and
# `exec` into a running container, alternated by hyperfine, with a private
# data root (the busybox image imported from scripts/make-bundle.sh).
#
#   sudo bash bench/engine-ab.sh BEFORE AFTER [RUNS]     (default 40 runs)
#   sudo bash bench/cgroup2-view.sh bash bench/engine-ab.sh BEFORE AFTER
set -euo pipefail
before=$(realpath "${1:?usage: engine-ab.sh BEFORE AFTER [RUNS]}")
after=$(realpath "${2:?usage: engine-ab.sh BEFORE AFTER [RUNS]}")
runs=${3:-40}
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup.sh" hyperfine >/dev/null
w=$(mktemp -d /tmp/hako-engine-ab.XXXXXX)
export HAKO_DATA_DIR=$w/data HAKO_RUN_DIR=$w/run HAKO_NFT_TABLE=hako_ab
cleanup() {
    "$after" ps -aq 2>/dev/null | xargs -r "$after" rm -f >/dev/null 2>&1 || true
    rm -rf "$w"
}
trap cleanup EXIT
bash "$here/scripts/make-bundle.sh" "$w/bundle" >/dev/null 2>&1
"$after" import "$w/bundle/rootfs" busybox >/dev/null
"$after" run -d --name ab-exec --network none busybox sleep 3600 >/dev/null
hyperfine -N --warmup 3 --runs "$runs" --export-json "$w/r.json" \
    -n "run before" "$before run --rm --network none busybox true" \
    -n "run after" "$after run --rm --network none busybox true" \
    -n "exec before" "$before exec ab-exec true" \
    -n "exec after" "$after exec ab-exec true" >/dev/null
python3 - "$w/r.json" <<'PY'
import json, sys
print("| command | median (ms) | mean ± σ (ms) |")
print("|---|---|---|")
for x in json.load(open(sys.argv[1]))["results"]:
    print(f"| {x['command']} | {x['median']*1000:.1f} | {x['mean']*1000:.1f} ± {x['stddev']*1000:.1f} |")
PY
