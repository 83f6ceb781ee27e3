#!/usr/bin/env bash
# Runs the named cargo-fuzz targets of one fuzz folder for ${FUZZ_SECONDS:-15} seconds each:
#   bash scripts/fuzz-targets.sh crates/<crate>/fuzz TARGET...
# The one runner behind every crates/*/fuzz/run.sh. Installs cargo-fuzz if it is missing.
# Exits non-zero if a target crashes or fails to build (the input is left in artifacts/).
# A target's corpus starts from seeds/<target>/ if that folder exists, else from seeds/;
# the grown corpus goes to corpus/<target>/ (git-ignored).
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz uses.
set -euo pipefail
cd "$1"
shift
seconds="${FUZZ_SECONDS:-15}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in "$@"; do
    seeds="seeds/${target}"
    [[ -d "$seeds" ]] || seeds=seeds
    echo "run.sh: fuzzing ${target} for ${seconds}s" >&2
    mkdir -p "corpus/${target}"
    cargo fuzz run "${target}" "corpus/${target}" "$seeds" -- -max_total_time="${seconds}" -print_final_stats=1
done
echo "run.sh: all $# fuzz targets ran ${seconds}s without findings" >&2
