#!/usr/bin/env bash
# Runs every flotilla-wire fuzz target for ${FUZZ_SECONDS:-15} seconds each. Seeds in
# seeds/ (one valid frame of every type and direction, written by
# `cargo run -p flotilla-wire --example fuzz_seeds -- seeds`) start the corpus.
# The runner (cargo-fuzz install, corpus and seeds folders) is scripts/fuzz-targets.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../../../scripts/fuzz-targets.sh" "$here" decode
