#!/usr/bin/env bash
# The project's one test command: format check, lints, and every test, with two real
# S3 servers on 127.0.0.1 (s3s-fs and moto, installed once by scripts/s3-server.sh) and
# the provider-quirk proxy (scripts/s3-quirk-proxy.py) that tests start in front of moto.
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

echo "== S3 test servers: s3s-fs, and moto (a second, independent implementation)"
# shellcheck source=scripts/s3-server.sh
source scripts/s3-server.sh
s3_install
moto_install
S3_DIR="$(mktemp -d)"
trap 's3_stop; moto_stop; rm -rf "$S3_DIR"' EXIT
s3_start "$S3_DIR/store"
moto_start "$S3_DIR/moto.log"

echo "== cargo test (every end-to-end test body runs on a local and an S3 repository)"
# Without the servers the S3 tests would pass without running (as on a fresh clone's
# plain `cargo test`); here they must run.
export CAIRN_TEST_REQUIRE_S3=1
cargo test --locked --lib --bins --tests
