#!/usr/bin/env bash
# Runs every flotilla-ws fuzz target for ${FUZZ_SECONDS:-15} seconds each.
# Installs cargo-fuzz if it is missing. Exits non-zero if a target crashes or fails to build
# (the input is left in artifacts/). Seeds in seeds/<target>/ (handshake heads and frame
# streams of both directions, written by
# `cargo run -p flotilla-ws --example fuzz_seeds -- crates/ws/fuzz/seeds`) start the
# corpus; the grown corpus goes to corpus/ (git-ignored).
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz uses.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-15}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
targets=(upgrade frames)
for target in "${targets[@]}"; do
    echo "run.sh: fuzzing ${target} for ${seconds}s" >&2
    mkdir -p "corpus/${target}"
    cargo fuzz run "${target}" "corpus/${target}" "seeds/${target}" -- -max_total_time="${seconds}" -print_final_stats=1
done
echo "run.sh: all ${#targets[@]} fuzz targets ran ${seconds}s without findings" >&2
