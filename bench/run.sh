#!/bin/bash
# Container start, side by side: `RUNTIME run` of /bin/true on one busybox
# bundle with hako-runc, crun and runc, timed by hyperfine.
#
#   sudo bash bench/run.sh [RUNS]      (default 200 runs per runtime)
#
# Needs root. Installs hyperfine, runc and crun from Debian if missing.
# On a hybrid host, hugetlb gets a v1 hierarchy of its own for crun (see
# bench/crun-hugetlb.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}

bash scripts/setup.sh hyperfine runc crun
cargo build --release -q -p hako-cli --no-default-features --bin hako-runc
hako=$PWD/target/x86_64-unknown-linux-gnu/release/hako-runc

work=$(mktemp -d /tmp/hako-bench.XXXXXX)
source bench/crun-hugetlb.sh
cleanup() {
    for rt in "$hako" crun runc; do
        "$rt" --root "$work/state-$(basename "$rt")" list -q 2>/dev/null | while read -r id; do
            "$rt" --root "$work/state-$(basename "$rt")" delete -f "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT

bash scripts/make-bundle.sh "$work/bundle" 2>/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"), indent=2)
PY

echo "== versions"
"$hako" --version; crun --version | head -1; runc --version | head -1
echo "== $(nproc) cores, kernel $(uname -r), $runs runs each"

cd "$work/bundle"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/result.json" \
    -n hako-runc "$hako --root $work/state-hako-runc run -b $work/bundle hb" \
    -n crun "crun --root $work/state-crun run -b $work/bundle cb" \
    -n runc "runc --root $work/state-runc run -b $work/bundle rb"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
crun = r["crun"]["median"]
print("\n| runtime | median (ms) | mean ± σ (ms) | vs crun (median) |")
print("|---|---|---|---|")
for name in ("hako-runc", "crun", "runc"):
    x = r[name]
    print(f"| {name} | {x['median']*1000:.2f} | {x['mean']*1000:.2f} ± {x['stddev']*1000:.2f} | {x['median']/crun:.2f}× |")
PY
