#!/usr/bin/env bash
# Fuzzes cairn's decoders with cargo-fuzz (libFuzzer, nightly Rust), then minimises each
# corpus so that the normal test suite can replay it in seconds (tests/fuzz_replay.rs).
#
#   scripts/fuzz.sh [--time SECONDS] [TARGET...]
#
# Runs each TARGET (default: all of them, see `cargo fuzz list` in fuzz/) for SECONDS
# (default 600) and prints one line per target: its run time and executions. Inputs that
# crash a target are left in fuzz/artifacts/TARGET/; once the defect is fixed, copy them
# to fuzz/regressions/TARGET/ so that the replay test keeps them. Two runs of this script
# with different targets use both cores.
#
# Needs a nightly toolchain (CAIRN_FUZZ_TOOLCHAIN, default `nightly`); installs cargo-fuzz
# at the version below when it is missing. Not part of CI, which has stable Rust only.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
toolchain=${CAIRN_FUZZ_TOOLCHAIN:-nightly}
seconds=600
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --time) seconds=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) targets+=("$1") ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cd "$root/fuzz"
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

# Seeds from cairn's own encoders, so that every corpus starts from valid objects.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
(cd "$root" && cargo run --locked -q --example fuzz_seeds -- "$seeds")

logs=$root/fuzz/target/logs
mkdir -p "$logs"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    cp -n "$seeds/$t"/* "corpus/$t/" 2>/dev/null || true
    status=0
    # 2 GiB of memory: more is a defect (an allocation sized by hostile input).
    cargo "+$toolchain" fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$logs/$t.log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    if [ "$status" -ne 0 ]; then
        echo "$t: FAILED after ${seconds}s or less, $execs executions; see $logs/$t.log and fuzz/artifacts/$t/"
        continue
    fi
    cargo "+$toolchain" fuzz cmin "$t" "corpus/$t" >>"$logs/$t.log" 2>&1
    echo "$t: ${seconds}s, $execs executions, $(ls "corpus/$t" | wc -l) inputs kept"
done
