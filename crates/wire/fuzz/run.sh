#!/usr/bin/env bash
# Runs every fuzz target of flotilla-wire for ${FUZZ_SECONDS:-15} seconds each.
# Exits non-zero as soon as a target finds a crash (the input is left in artifacts/).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets a stable toolchain
# build with the sanitizer flags cargo-fuzz uses.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-15}"
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    echo "fuzzing ${target} for ${seconds}s"
    cargo fuzz run "${target}" -- -max_total_time="${seconds}"
done
echo "fuzzing: no crash"
