//! Smoke tests: every benchmark at a tiny size, on loopback, with real worker processes.
//!
//! The workers are this crate's `flotilla-bench-worker` binary (Cargo builds it for the
//! integration tests and passes its path in `CARGO_BIN_EXE_flotilla-bench-worker`); the
//! `flotilla` binary runs the same worker code as `flotilla bench worker …`.

use std::time::Duration;

use flotilla_bench::lean::Protocol;
use flotilla_bench::transport::Transport;
use flotilla_bench::{
    ConnectionsConfig, FailoverBenchConfig, FailureMode, FanoutConfig, FloodConfig, HopConfig,
    Placement, WorkerLauncher, run_connections, run_failover, run_fanout, run_flood, run_hop,
};

fn launcher() -> WorkerLauncher {
    WorkerLauncher::new(env!("CARGO_BIN_EXE_flotilla-bench-worker"), Vec::new())
}

#[test]
fn hop_measures_both_paths_in_both_placements() {
    let cpus_before = flotilla_bench::affinity::allowed_cpus().unwrap();
    let report = run_hop(
        &HopConfig {
            requests: 200,
            warmup: 20,
            payload_len: 64,
            rounds: 4,
            placements: vec![Placement::OneCore, Placement::Free],
        },
        &launcher(),
    )
    .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["bench"], "hop");
    assert_eq!(json["judged_on"], "one-core");
    assert_eq!(report.runs.len(), 2);
    assert_eq!(json["runs"][0]["placement"], "one-core");
    assert!(report.runs[0].cpu.is_some());
    assert_eq!(json["runs"][1]["placement"], "free");
    assert_eq!(report.runs[1].cpu, None);
    assert_eq!(report.meets_targets, report.runs[0].meets_targets);
    for run in &report.runs {
        assert_eq!(run.direct.count, 200);
        assert_eq!(run.via_frontend.count, 200);
        assert!(run.direct.p50_us > 0.0 && run.via_frontend.p50_us > 0.0);
        // Both paths were measured (whether the hop costs what it should is the
        // benchmark's verdict, not this test's: beside other tests on 2 cores any ratio
        // can come out).
        assert!(run.ratio_p50.is_finite() && run.ratio_p50 > 0.0, "{run:?}");
        assert!(run.ratio_p99.is_finite() && run.ratio_p99 > 0.0);
        assert_eq!(run.rounds, 4);
        assert_eq!(run.per_round.len(), 4);
        assert_eq!(run.per_round.iter().map(|r| r.requests).sum::<usize>(), 200);
        assert!(run.per_round.iter().all(|r| r.ratio_p50 > 0.0));
        assert!(run.median_ratio_p50 > 0.0 && run.median_ratio_p99 > 0.0);
    }
    // The pinning ended with the run: this thread may use the same CPUs as before.
    assert_eq!(
        flotilla_bench::affinity::allowed_cpus().unwrap(),
        cpus_before
    );
}

#[test]
fn flood_measures_the_player_unloaded_and_under_both_floods() {
    let report = run_flood(
        &FloodConfig {
            requests: 300,
            warmup: 50,
            ..FloodConfig::default()
        },
        &launcher(),
    )
    .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["bench"], "flood");
    let names: Vec<&str> = report.phases.iter().map(|p| p.flooder.as_str()).collect();
    assert_eq!(names, ["unloaded", "flat-out", "paced"]);
    for phase in &report.phases {
        assert_eq!(phase.round_trip.count, 300, "{phase:?}");
        assert!(phase.round_trip.p50_us > 0.0);
    }
    assert_eq!(report.phases[0].flood_inputs, 0);
    // The flat-out flooder went past its budget: closed, then refused, again and again.
    assert!(report.phases[1].flooder_closed > 0, "{report:?}");
    assert!(report.phases[2].flood_inputs > 0, "{report:?}");
    // The paced flooder stays within its budget: never closed.
    assert_eq!(report.phases[2].flooder_closed, 0, "{report:?}");
    assert!(report.p99_ratio_flat_out > 0.0 && report.p99_ratio_paced > 0.0);
}

#[test]
fn hop_without_placements_is_an_error() {
    let error = run_hop(
        &HopConfig {
            placements: Vec::new(),
            ..HopConfig::default()
        },
        &launcher(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("placement"), "{error}");
}

#[test]
fn fanout_against_nats_and_over_tls_and_websocket() {
    let report = run_fanout(
        &FanoutConfig {
            observers: vec![20],
            rate: Some(200),
            seconds: 1.0,
            warmup_seconds: 0.3,
            systems: vec![Protocol::Flotilla, Protocol::Nats],
            transports: vec![Transport::Tcp, Transport::Tls, Transport::Wss],
            ..FanoutConfig::default()
        },
        &launcher(),
    )
    .unwrap();
    // flotilla over three transports and NATS, each at a fixed rate and at saturation.
    assert_eq!(report.runs.len(), 8, "{report:?}");
    for run in &report.runs {
        assert_eq!(run.subscribed, 20, "{run:?}");
        assert!(run.delivered_per_second > 0.0, "{run:?}");
        assert!(run.latency.count > 0 && run.latency.p50_us > 0.0, "{run:?}");
        assert!(run.published_per_second > 0.0, "{run:?}");
        // Sampled from /proc at 100 ticks a second: a short run may round to 0.
        assert!(
            run.server_cpu_percent.is_finite() && run.server_cpu_percent >= 0.0,
            "{run:?}"
        );
    }
    // At a modest fixed rate every observer gets (nearly) every change.
    for run in report.runs.iter().filter(|r| r.offered_rate.is_some()) {
        assert!(run.delivery_ratio > 0.9, "{run:?}");
    }
    assert_eq!(report.comparisons.len(), 1);
    assert_eq!(report.transport_comparisons.len(), 2, "{report:?}");
    for comparison in &report.transport_comparisons {
        assert!(
            comparison.saturation_throughput_ratio > 0.0,
            "{comparison:?}"
        );
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["bench"], "fanout");
}

#[test]
fn connections_measures_memory_per_connection_over_every_transport() {
    for transport in Transport::ALL {
        let report = run_connections(
            &ConnectionsConfig {
                count: 200,
                per_process: 100,
                idle_seconds: 0.5,
                transport,
            },
            &launcher(),
        )
        .unwrap();
        assert_eq!(report.subscribed, 200, "{report:?}");
        assert_eq!(report.open_at_end, 200, "{report:?}");
        assert!(report.frontend_fds_added >= 190, "{report:?}");
        assert!(report.after.rss > 0 && report.before.rss > 0);
        assert!(report.private_dirty_per_connection.is_finite());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["bench"], "connections");
        assert_eq!(json["transport"], transport.name());
    }
}

#[test]
fn failover_moves_every_client_of_a_killed_or_frozen_frontend() {
    for (mode, idle) in [(FailureMode::Kill, None), (FailureMode::Hang, Some(800))] {
        let report = run_failover(
            &FailoverBenchConfig {
                clients: 40,
                frontends: 3,
                mode,
                client_ping_interval: idle.map(|_| Duration::from_millis(200)),
                client_idle_timeout: idle.map(Duration::from_millis),
                recovery_timeout: Duration::from_secs(10),
                ..FailoverBenchConfig::default()
            },
            &launcher(),
        )
        .unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["bench"], "failover");
        assert_eq!(report.clients, 40);
        assert_eq!(
            report.clients_per_frontend.iter().sum::<usize>(),
            40,
            "{report:?}"
        );
        assert!(report.clients_on_failed > 0, "{report:?}");
        let moved = report.clients_on_failed;
        assert_eq!(report.lost, moved, "{report:?}");
        assert_eq!(report.reconnected, moved, "{report:?}");
        assert_eq!(
            report.resumed, moved,
            "the fleet shares its token key: {report:?}"
        );
        assert_eq!(report.carried_on, moved, "{report:?}");
        assert_eq!(report.replicas_in_sync, 40, "{report:?}");
        assert_eq!(report.lost_elsewhere, 0, "{report:?}");
        assert_eq!(report.noticed.count, moved as u64);
        assert!(report.carried_on_after.p50_us >= report.noticed.p50_us);
        if mode == FailureMode::Hang {
            // Frozen: noticed only by the idle timeout, not before it.
            assert!(report.noticed.p50_us >= 700_000.0, "{report:?}");
        }
    }
}

#[test]
fn spread_counts_clients_per_frontend_before_and_after_a_kill() {
    let report = flotilla_bench::run_spread(
        &flotilla_bench::SpreadConfig {
            clients: 300,
            frontends: 3,
            processes: 2,
            ..flotilla_bench::SpreadConfig::default()
        },
        &launcher(),
    )
    .unwrap();
    // Every client counted once on a front-end, before and after.
    assert_eq!(report.clients_per_frontend.len(), 3, "{report:?}");
    assert_eq!(report.clients_per_frontend.iter().sum::<usize>(), 300);
    assert_eq!(report.clients_per_frontend_after.len(), 2, "{report:?}");
    assert_eq!(report.between_frontends_after, 0, "{report:?}");
    assert_eq!(report.clients_per_frontend_after.iter().sum::<usize>(), 300);
    assert_eq!(report.moved, report.clients_per_frontend[0]);
    assert!(report.recovery_seconds.is_some(), "{report:?}");
    // The σ figures are computed from those counts (the ±4σ verdict is the
    // benchmark's, judged on 12,000 clients).
    assert!(
        (report.spread_sigma_before
            - flotilla_bench::spread::worst_sigma(&report.clients_per_frontend))
        .abs()
            < 1e-9
    );
    assert!(report.spread_sigma_after.is_finite());
}
