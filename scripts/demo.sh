#!/bin/bash
# Build hako and run a container on a busybox bundle: it prints its hostname,
# its PID and its namespaces next to the host's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q
bundle=$(mktemp -d /tmp/hako-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
bash scripts/make-bundle.sh "$bundle" 2>/dev/null
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["hostname"] = "hako-demo"
c["process"]["args"] = ["sh", "-c",
    "echo \"hostname: $(hostname)\"; echo \"pid: $$\"; echo namespaces:;"
    " for n in cgroup ipc mnt net pid uts; do echo \"  $n $(readlink /proc/self/ns/$n)\"; done"]
json.dump(c, open(p, "w"), indent=2)
PY
echo "host namespaces:"
for n in cgroup ipc mnt net pid uts; do echo "  $n $(readlink /proc/self/ns/$n)"; done
echo "--- inside the container ---"
./target/release/hako-runc run -b "$bundle" "hako-demo-$$"
