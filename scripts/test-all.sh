#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one: installs what it needs
# (real peers from Debian, cargo-fuzz), then runs, in order:
#   1. cargo fmt --check
#   2. cargo clippy --workspace --all-targets --release -- -D warnings (machine crates
#      also ban reading the clock, the OS's randomness, sleeping: their clippy.toml)
#   2b. the no_std machine crates built for x86_64-unknown-none; no tokio in machine crates
#   3. cargo test --workspace --release   (unit, property, loopback and real-peer tests)
#   4. the fuzz targets, briefly (FUZZ_SECONDS each, default 10)
#   5. the demos, end to end (`flotilla demo --json` with its failover, logd's fleet view
#      and alerts; `flotilla logger-demo --json`), checked
#   6. a small `flotilla bench logd` (the harness against rsyslog and ripgrep), checked
#   7. a small `flotilla bench connections` (idle observers on the default keep-alive,
#      the front-end's memory per connection within 8 KiB), checked
#   8. a small `flotilla bench bigfinal --floor` (observers of one world over 2 front-end
#      processes: all subscribed, no game link lost, every batch delivered, every
#      replica converged to the game's final state; then the same observers against 2
#      floor writers: all subscribed and converged, writes counted), checked
# One build profile (release) serves the tests and the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One line per step as it starts, and one as it ends with its time and verdict; a
# failing step says so (with its time) before the script exits.
current=""
step_started=$SECONDS
end_step() {
    if [[ -n "$current" ]]; then
        printf '<== ok (%d s): %s\n' "$((SECONDS - step_started))" "$current"
    fi
}
step() {
    end_step
    current="$*"
    step_started=$SECONDS
    printf '\n==> %s\n' "$current"
}
trap 'status=$?; if [[ $status -ne 0 && -n "$current" ]]; then printf "<== FAILED (%d s): %s\n" "$((SECONDS - step_started))" "$current"; fi' EXIT
started=$SECONDS

step "install real peers (rsyslog, syslog-ng, nats-server, dnsmasq, ripgrep, SeaweedFS) and python3"
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

step "machine crates: built without std (x86_64-unknown-none, core + alloc) and free of tokio"
# The sans-I/O crates must stay usable on a unikernel's own network stack: the no_std ones
# are built for a target that has no std at all, and none of them may pull in tokio.
if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
    rustup target add x86_64-unknown-none
fi
cargo build --release --target x86_64-unknown-none --no-default-features \
    -p flotilla-syslog -p flotilla-relp -p flotilla-balance -p flotilla-conn -p flotilla-logger-core
for crate in flotilla-conn flotilla-logger-core flotilla-syslog flotilla-relp flotilla-balance flotilla-wire flotilla-world; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -q '^tokio '; then
        echo "$crate depends on tokio: machine crates do no I/O" >&2
        exit 1
    fi
done

step "cargo test --workspace --release"
cargo test --workspace --release

step "fuzz targets (${FUZZ_SECONDS:-10}s each)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
# The fuzzers' own output (thousands of lines) goes to a file, shown only on failure.
mkdir -p target/fuzz-logs
for run in crates/*/fuzz/run.sh; do
    crate=$(basename "$(dirname "$(dirname "$run")")")
    log="target/fuzz-logs/${crate}.log"
    if bash "$run" >"$log" 2>&1; then
        echo "fuzz ${crate}: $(tail -n 1 "$log")"
    else
        cat "$log" >&2
        echo "fuzz ${crate}: FAILED (the whole output above, and in $log)" >&2
        exit 1
    fi
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
# ...as the game server sees it too: the same sessions, now through another front-end,
# and the moved bots' player entities kept.
assert f["resumed_at_game"] == f["clients_on_it"], s
assert f["bots_kept_entity"] == f["bots_on_it"], s
assert f["outage_ms_max"] < 2000, s
end = s["clients_per_frontend_at_end"]
assert "fe-1" not in end and sum(end.values()) == s["clients"], s
sent = list(s["game_batches_sent_per_frontend"].values())
# Each remaining front-end gets each batch once, whatever its number of observers.
assert len(sent) == 2 and max(sent) <= s["batches_committed"] and min(sent) >= 0.8 * max(sent), s
assert s["boot_messages"] >= 1, s
# Every role logged to the demo's logd; the printed query is ready to run.
logd = s["logd"]
assert logd["records"] > 0 and logd["records"] == sum(logd["per_app"].values()), s
for app in ("flotilla-game", "flotilla-frontend", "flotilla-client"):
    assert logd["per_app"].get(app, 0) > 0, (app, logd)
# logd's fleet view and built-in alerts: fe-1 (shut down, its logger stopped with it) is
# silent, game-2 (a `flotilla game --crash-after` process beside the fleet) crashed on
# purpose, every other role is up; HeartbeatStopped and ServiceCrashed fired for them,
# once each, and nothing else did. The page's URL is in the summary.
rows = {(r["host"], r["app"]): r for r in logd["fleet"]}
assert rows[("fe-1", "flotilla-frontend")]["state"] == "silent", logd["fleet"]
g2 = rows[("game-2", "flotilla-game")]
assert g2["state"] == "crashed" and g2["crashes"] == 1 and "on purpose" in g2["last_crash"], g2
assert s["crashed_game"]["host"] == "game-2" and s["crashed_game"]["exit_code"] == 101, s
up = [k for k in rows if k not in (("fe-1", "flotilla-frontend"), ("game-2", "flotilla-game"))]
assert ("game-1", "flotilla-game") in up and ("fe-2", "flotilla-frontend") in up, logd["fleet"]
assert all(rows[k]["state"] == "up" for k in up), logd["fleet"]
want = [("HeartbeatStopped", "fe-1", "flotilla-frontend"), ("ServiceCrashed", "game-2", "flotilla-game")]
for kind in ("firing", "recent"):
    got = sorted((a["name"], a["labels"]["host"], a["labels"]["app"]) for a in logd["alerts"][kind])
    assert got == want, (kind, logd["alerts"])
assert logd["page"].startswith("http://") and logd["page"].endswith("/"), logd
assert s["ok"] is True and s["problems"] == [] and s["interrupted_at_seconds"] is None, s
print("demo: ok")
PY
query=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["logd"]["query"])' "$summary")
data_dir=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["logd"]["data_dir"])' "$summary")
found=$($query --json | wc -l)
echo "demo's query ($query): $found records"
[[ $found -gt 0 ]] || { echo "the demo's ready-to-run query found nothing" >&2; exit 1; }
rm -rf "$data_dir"
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

step "flotilla bench logd, small (the harness end to end: loggen, rsyslog, RELP, ripgrep)"
report=$(cargo run --release --quiet -- bench logd --seconds 1 --rounds 1 --messages 200000 --relp-messages 5000 --queries 2 --fleet-services 1000 --fleet-seconds 2 --fleet-rounds 1 --crashes 5 --json)
echo "$report"
python3 - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["ingest_logd"]["stored"] == r["ingest_logd"]["sent"] > 0, r
assert r["ingest_rsyslog"]["stored"] == r["ingest_rsyslog"]["sent"] > 0, r
assert r["relp_logd"]["stored"] >= r["relp_logd"]["acked"] == 5000, r
assert r["query_messages"] == 200000 and len(r["logd_query_ms"]) == 2, r
print("bench logd: ok (figures of a small run; BENCHMARKS.md has the full one)")
PY

step "flotilla bench connections, small (idle observers on the default keep-alive; <= 8 KiB each)"
report=$(cargo run --release --quiet -- bench connections --count 5000 --json)
echo "$report"
python3 - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
# Every observer subscribed and still connected after idling on the default keep-alive
# (PROTOCOL.md section 7), and the front-end's own memory per connection within 8 KiB.
assert r["subscribed"] == r["open_at_end"] == r["count"] == 5000, r
assert r["private_dirty_per_connection"] <= 8192 and r["meets_target"], r
print("bench connections: ok (%.0f bytes per connection at 5,000; BENCHMARKS.md has 15,000)"
      % r["private_dirty_per_connection"])
PY

step "flotilla bench bigfinal --floor, small (observers of one world over 2 front-end processes, then 2 floor writers)"
# Coalescing off: every batch must reach every observer (coalescing is tested in the
# front-end's machine tests, where the queue that backs up is under the test's control).
report=$(cargo run --release --quiet -- bench bigfinal --observers 2000 --frontends 2 --seconds 2 --coalesce-above 0 --floor --json)
echo "$report"
python3 - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["subscribed"] == r["observers"] == 2000, r
assert r["game_links_lost"] == 0 and r["closed_connections"] == 0, r
assert r["committed"] > 0 and r["delivered_ratio"] >= 0.999, r
# Every observer's replica ends equal to the game's state.
assert r["converged"] == r["subscribed"], r
# The concentrator: a front-end link costs the game server what it costs with one observer.
assert r["game_bytes_per_link_per_second"] is not None, r
assert r["game_bytes_per_link_per_second_one_observer"] is not None, r
ratio = r["game_bytes_per_link_per_second"] / r["game_bytes_per_link_per_second_one_observer"]
assert 0.8 <= ratio <= 1.25, (ratio, r)
# Each front-end's writes and CPU per write are counted.
assert all(f["writes_per_second"] > 0 and f["cpu_us_per_write"] > 0 for f in r["per_frontend"]), r
# The floor: the same observers against writers that only send the latest state.
floor = r["floor"]
assert floor["subscribed"] == 2000 and floor["converged"] == 2000, floor
assert floor["lag"]["count"] > 0 and floor["state_age"]["count"] > 0, floor
assert len(floor["writes_per_second"]) == 2 and all(w > 0 for w in floor["writes_per_second"]), floor
print("bench bigfinal: ok (figures of a small run; BENCHMARKS.md has the large ones)")
PY

end_step
current=""
printf '\n==> all green in %d s\n' "$((SECONDS - started))"
