#!/bin/bash
# Image builds, side by side: the same two-stage Containerfile (COPY of a
# context of 300 files, RUN steps, COPY --from, metadata) built by
# `hako build` and by Debian's `buildah bud`, cold (--no-cache) and fully
# cached, timed by hyperfine in one run. The base image comes from a
# loopback registry (scripts/test-registry.sh) and is pulled by both
# before timing, so no pull is timed.
#
#   sudo bash bench/build.sh [RUNS]      (default 10 runs each)
#
# Installs hyperfine, buildah and crun from Debian if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
bash scripts/setup.sh hyperfine buildah crun >/dev/null
cargo build --release -q -p hako-cli --bin hako
work=$(mktemp -d /tmp/hako-buildbench.XXXXXX)
source bench/crun-hugetlb.sh
bud() { buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay "$@"; }
cleanup() {
    bud rm -a >/dev/null 2>&1 || true
    bud rmi -a -f >/dev/null 2>&1 || true
    umount -R "$work/buildah/root/overlay" 2>/dev/null || true
    bash scripts/test-registry.sh stop "$work/registry" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash scripts/test-registry.sh start "$work/registry" "$port" >/dev/null 2>&1
base=127.0.0.1:$port/busybox:latest

ctx=$work/ctx
mkdir -p "$ctx/src/lib"
for i in $(seq 1 300); do printf 'file %s\n' "$i" > "$ctx/src/lib/f$i.txt"; done
head -c 4M /dev/urandom > "$ctx/src/blob.bin"
cat > "$ctx/src/build.sh" <<'EOF'
#!/bin/sh
set -e
cat lib/*.txt | sort > /out/all.txt
sha256sum blob.bin > /out/blob.sum
wc -l < /out/all.txt
EOF
cat > "$ctx/Containerfile" <<EOF
FROM $base AS build
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && sh ./build.sh
RUN for i in \$(seq 1 100); do echo "line \$i"; done > /out/lines.txt

FROM $base
ENV APP=/app
COPY --from=build /out/ /app/out/
COPY src/lib/ /app/lib/
RUN chmod -R a+rX /app && ls /app/lib | wc -l > /app/count
LABEL org.example.bench=build
USER 1000
WORKDIR /app
CMD ["cat", "/app/out/blob.sum"]
EOF

export HAKO_DATA_DIR=$work/hako/data HAKO_RUN_DIR=$work/hako/run
hako=$(pwd)/target/x86_64-unknown-linux-gnu/release/hako
"$hako" pull "$base" >/dev/null
bud pull --tls-verify=false "$base" >/dev/null
# One build each first (caches warm for the cached rows; not timed).
"$hako" build -q --network none "$ctx" >/dev/null
bud bud -q --layers --network none --tls-verify=false "$ctx" >/dev/null

echo "== $("$hako" --version); $(buildah --version); $(crun --version | head -1)"
echo "== $(nproc) cores, kernel $(uname -r), $runs runs each"
hyperfine --warmup 1 --runs "$runs" --export-json "$work/result.json" \
    -n "hako cold" "$hako build -q --no-cache --network none $ctx" \
    -n "buildah cold" "buildah --root $work/buildah/root --runroot $work/buildah/run --storage-driver overlay bud -q --layers --no-cache --network none $ctx" \
    -n "hako cached" "$hako build -q --network none $ctx" \
    -n "buildah cached" "buildah --root $work/buildah/root --runroot $work/buildah/run --storage-driver overlay bud -q --layers --network none $ctx"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
print("\n| build of bench/build.sh's Containerfile | median (ms) | mean ± σ (ms) | vs buildah |")
print("|---|---|---|---|")
for kind in ("cold", "cached"):
    b = r[f"buildah {kind}"]["median"]
    for tool in ("hako", "buildah"):
        x = r[f"{tool} {kind}"]
        print(f"| {tool} {kind} | {x['median']*1000:.0f} | {x['mean']*1000:.0f} ± {x['stddev']*1000:.0f} | {x['median']/b:.2f}× |")
PY
