#!/bin/bash
# hako's test command: lint, unit tests, root integration tests.
set -euo pipefail
# Root is needed (real containers); as another user, go through sudo and
# keep the caller's Rust toolchain.
if [ "$(id -u)" != 0 ]; then
    exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
        RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Integration tests start real containers; two at a time on two cores.
cargo test --workspace -- --test-threads=2
