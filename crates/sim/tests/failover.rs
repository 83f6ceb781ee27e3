//! The simulator's own tests: failover under many seeds, determinism, partitions and
//! silent deaths.

use std::time::Duration;

use flotilla_sim::{FailoverReport, FailoverScenario, run_failover};

fn scenario(seed: u64, clients: usize) -> FailoverScenario {
    let mut scenario = FailoverScenario {
        seed,
        ..FailoverScenario::default()
    };
    scenario.shape.clients = clients;
    scenario
}

fn run(scenario: &FailoverScenario) -> FailoverReport {
    run_failover(scenario).expect("a valid scenario")
}

/// Every client of a dead front-end is back within 2 s and every replica converged.
fn assert_carried_on(report: &FailoverReport, seed: u64) {
    assert_eq!(report.resumed, report.moved, "seed {seed}: {report:?}");
    assert!(
        report.without_frontend.max_ms < 2_000.0,
        "seed {seed}: {report:?}"
    );
    assert_eq!(
        report.replicas_converged, report.clients,
        "seed {seed}: {report:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run_event_for_event() {
    let scenario = scenario(42, 300);
    let first = run(&scenario);
    let second = run(&scenario);
    assert_eq!(first, second);
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&second).unwrap()
    );
    let other = run(&FailoverScenario {
        seed: 43,
        ..scenario
    });
    assert_ne!(first.event_digest, other.event_digest);
}

#[test]
fn clients_of_a_killed_front_end_resume_elsewhere_within_two_seconds() {
    for seed in 1..=8u64 {
        let report = run(&scenario(seed, 400));
        println!("{}", serde_json::to_string(&report).unwrap());
        assert_eq!(report.killed.len(), 1);
        assert!(report.moved > 40, "seed {seed}: {report:?}");
        assert_carried_on(&report, seed);
        assert_eq!(
            report.stranded + report.gave_up + report.other_losses,
            0,
            "seed {seed}: {report:?}"
        );
        // Only inputs written into the dying connections can be lost: at most one per
        // moved client (one input a second each).
        assert!(
            report.inputs_sent - report.inputs_received <= report.moved as u64,
            "seed {seed}: {report:?}"
        );
        // The game server heard of the dead link first (a reset), so each moved session
        // opened afresh there rather than moved.
        assert!(
            report.sessions_moved_upstream <= report.moved as u64,
            "seed {seed}"
        );
        assert_eq!(
            report
                .clients_per_frontend
                .iter()
                .map(|(_, n)| n)
                .sum::<usize>(),
            report.clients
        );
    }
}

#[test]
fn a_silent_machine_loss_is_noticed_by_silence_and_still_survived_within_two_seconds() {
    for seed in [3u64, 4, 5] {
        let mut scenario = scenario(seed, 300);
        scenario.shape.silent_kills = true;
        let report = run(&scenario);
        println!("{}", serde_json::to_string(&report).unwrap());
        assert!(report.moved > 0);
        // No reset: the client's 1.5 s silence timeout is what notices.
        assert!(report.noticed.p50_ms >= 1_000.0, "seed {seed}: {report:?}");
        assert_carried_on(&report, seed);
    }
}

#[test]
fn a_short_partition_is_ridden_out_and_a_long_one_moves_its_clients() {
    let mut short = scenario(11, 300);
    short.kill = 0;
    short.partition = 1;
    short.partition_for = Duration::from_millis(800);
    let report = run(&short);
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.other_losses, 0, "{report:?}");
    assert_eq!(report.replicas_converged, report.clients, "{report:?}");

    let mut long = short.clone();
    long.partition_for = Duration::from_secs(3);
    let report = run(&long);
    println!("{}", serde_json::to_string(&report).unwrap());
    assert!(report.other_losses > 0, "{report:?}");
    assert_eq!(report.gave_up, 0, "{report:?}");
    assert_eq!(report.replicas_converged, report.clients, "{report:?}");
}

#[test]
fn loss_and_jitter_slow_failover_but_lose_nothing() {
    let mut lossy = scenario(21, 300);
    lossy.shape.network.loss = 0.02;
    lossy.shape.network.jitter = std::time::Duration::from_millis(30);
    lossy.kill = 2;
    let report = run(&lossy);
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.resumed, report.moved, "{report:?}");
    assert_eq!(report.stranded, 0, "{report:?}");
    assert_eq!(report.replicas_converged, report.clients, "{report:?}");
}

#[test]
fn ten_thousand_clients_fail_over_deterministically() {
    let mut scenario = scenario(7, 10_000);
    scenario.kill = 1;
    let report = run(&scenario);
    assert!(report.moved > 1_500, "{report:?}");
    assert_eq!(report.resumed, report.moved, "{report:?}");
    assert_eq!(report.replicas_converged, report.clients, "{report:?}");
    assert!(report.without_frontend.max_ms < 2_000.0, "{report:?}");
    // Client-side random balancing: the moved clients spread over the survivors, each
    // within 10% of an even share.
    let even = report.clients as f64 / report.clients_per_frontend.len() as f64;
    for (frontend, clients) in &report.clients_per_frontend {
        assert!(
            (*clients as f64 - even).abs() < even * 0.1,
            "fe-{frontend}: {clients} clients, even share {even}"
        );
    }
}
