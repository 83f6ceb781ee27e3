#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one: installs what it needs
# (real peers from Debian, cargo-fuzz), then runs, in order:
#   1. cargo fmt --check
#   2. cargo clippy --workspace --all-targets --release -- -D warnings
#   3. cargo test --workspace --release   (unit, property, loopback and real-peer tests)
#   4. the fuzz targets, briefly (FUZZ_SECONDS each, default 10)
#   5. the demos, end to end (`flotilla demo --json`, `flotilla logger-demo --json`), checked
# One build profile (release) serves the tests and the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "install real peers (rsyslog, syslog-ng, nats-server, dnsmasq) and python3"
bash scripts/install-peers.sh
# The demo checks below are small python3 scripts.
if ! command -v python3 >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null; }
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (release, all targets, -D warnings)"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo test --workspace --release"
cargo test --workspace --release

step "fuzz targets (${FUZZ_SECONDS:-10}s each)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
for run in crates/*/fuzz/run.sh; do
    bash "$run"
done

step "demo, end to end (front-ends) and the logger demo"
summary=$(cargo run --release --quiet -- demo --duration 3 --bots 10 --observers 100 --json)
echo "$summary"
python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
assert s["clients"] == 110 and s["replicas_in_sync"] == s["clients"], s
assert len(s["clients_per_frontend"]) == 3, s
assert s["batches_delivered"] > 0 and s["outputs_received"] == 10, s
# Half-way through, fe-1 is shut down: every client it carried fails over to another
# front-end and resumes its session, within a second or two; none is left behind.
f = s["failover"]
assert f["frontend"] == "fe-1" and f["clients_on_it"] == s["clients_per_frontend"]["fe-1"], s
assert f["reconnected"] == f["clients_on_it"] == f["resumed"] <= f["lost"], s
assert f["outage_ms_max"] < 2000, s
end = s["clients_per_frontend_at_end"]
assert "fe-1" not in end and sum(end.values()) == s["clients"], s
sent = list(s["game_batches_sent_per_frontend"].values())
# Each remaining front-end gets each batch once, whatever its number of observers.
assert len(sent) == 2 and max(sent) <= s["batches_committed"] and min(sent) >= 0.8 * max(sent), s
assert s["boot_messages"] >= 1, s
print("demo: ok")
PY
summary=$(cargo run --release --quiet -- logger-demo --duration 3 --json)
echo "$summary"
python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
need = ["boot_received", "error_received", "crash_received", "failed_over"]
missing = [k for k in need if not s.get(k)]
assert not missing, f"logger demo summary lacks {missing}: {s}"
assert s["bad_frames"] == 0, s
print("logger-demo: ok")
PY

step "all green in $((SECONDS - started)) s"
