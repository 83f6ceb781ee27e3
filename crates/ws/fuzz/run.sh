#!/usr/bin/env bash
# Runs every flotilla-ws fuzz target for ${FUZZ_SECONDS:-15} seconds each. Seeds in
# seeds/<target>/ (handshake heads and frame streams of both directions, written by
# `cargo run -p flotilla-ws --example fuzz_seeds -- crates/ws/fuzz/seeds`) start the corpus.
# The runner (cargo-fuzz install, corpus and seeds folders) is scripts/fuzz-targets.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../../../scripts/fuzz-targets.sh" "$here" upgrade frames
