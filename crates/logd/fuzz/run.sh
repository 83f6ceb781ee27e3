#!/usr/bin/env bash
# Runs every flotilla-logd fuzz target for ${FUZZ_SECONDS:-15} seconds each. Seeds in
# seeds/ start the corpus.
# The runner (cargo-fuzz install, corpus and seeds folders) is scripts/fuzz-targets.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../../../scripts/fuzz-targets.sh" "$here" wal_decode segment_read stream_records relp_server archive_line
