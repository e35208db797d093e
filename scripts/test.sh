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
# Root tests are #[ignore = "needs root"], so a plain `cargo test` as a user
# reports them as ignored, never as passed. Here, as root, every one runs
# (--include-ignored), --no-fail-fast shows every failure at once, and a
# test that was still ignored, or skipped itself, fails the run.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --include-ignored --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Each test binary's shared fixtures (a busybox bundle made once, kept in a
# static that is never dropped): every test process is gone now.
rm -rf /tmp/hako-test-bundle-* /tmp/hako-engine-bb-* /tmp/hako-engine-fixtures-*
# The real-hosts stage: the cgroup and runtime tests again, inside a Debian
# 12 VM with systemd as PID 1 and cgroup2 only (scripts/vm-tests.sh). Its
# output joins the log, so the checks below cover it too.
bash scripts/vm-tests.sh 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
if grep -Eq '^test result: .* [1-9][0-9]* ignored' "$log"; then
    echo "test.sh: some tests were ignored (see 'ignored' above): every test must run here" >&2
    status=1
fi
if grep -Eiq '^skipp(ed|ing)\b' "$log"; then
    echo "test.sh: some tests skipped themselves:" >&2
    grep -Ei '^skipp(ed|ing)\b' "$log" >&2
    status=1
fi
exit "$status"
