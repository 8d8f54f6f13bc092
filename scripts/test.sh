#!/usr/bin/env bash
# The project's one test command: format check, lints, and every test, with a real
# S3-compatible server (s3s-fs, installed once by scripts/s3-server.sh) on 127.0.0.1.
# Usage: ./scripts/test.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    if ! "$@" >/dev/null 2>&1; then
        echo "missing tool: '$*' failed; install the Rust toolchain with rustfmt and clippy" >&2
        exit 1
    fi
}
need cargo --version
need cargo fmt --version
need cargo clippy --version

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "== benchmarks, once each as a smoke test (timings are not checked here)"
cargo test --locked --benches

echo "== S3 test server"
# shellcheck source=scripts/s3-server.sh
source scripts/s3-server.sh
s3_install
S3_DIR="$(mktemp -d)"
trap 's3_stop; rm -rf "$S3_DIR"' EXIT
s3_start "$S3_DIR/store"

echo "== cargo test (every end-to-end test body runs on a local and an S3 repository)"
cargo test --locked --lib --bins --tests
