#!/usr/bin/env bash
# The project's one test command: format check, lints, and every test.
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

echo "== cargo test"
cargo test --locked --lib --bins --tests
