#!/bin/bash
# hako's test command: lint, unit tests, root integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Integration tests start real containers; two at a time on two cores.
cargo test --workspace -- --test-threads=2
