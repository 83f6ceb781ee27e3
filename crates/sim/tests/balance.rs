//! The balance, shown: the real choice code under several ways of choosing.

use flotilla_sim::{BalanceScenario, render_svg, run_balance};

#[test]
fn os_seeded_random_choice_balances_within_four_sigma_and_so_does_its_failover() {
    for seed in 1..=5u64 {
        let report = run_balance(&BalanceScenario {
            seed,
            ..BalanceScenario::default()
        })
        .unwrap();
        let os = &report.strategies[0];
        assert_eq!(os.name, "os-seeded");
        assert!(os.settled.within_4_sigma, "seed {seed}: {:?}", os.settled);
        assert!(
            os.after_kill.within_4_sigma,
            "seed {seed}: {:?}",
            os.after_kill
        );
        assert_eq!(os.settled.per_server.iter().sum::<usize>(), 12_000);
        assert_eq!(os.after_kill.per_server[os.killed], 0);
        assert_eq!(os.after_kill.per_server.iter().sum::<usize>(), 12_000);
        // Seeding from the clock or caching DNS answers does not balance at all.
        let time = &report.strategies[1];
        let dns = &report.strategies[2];
        assert!(
            time.settled.worst_sigma > 4.0,
            "seed {seed}: {:?}",
            time.settled
        );
        assert!(
            dns.settled.worst_sigma > 4.0,
            "seed {seed}: {:?}",
            dns.settled
        );
        assert!(
            dns.after_kill.worst_sigma > 4.0,
            "seed {seed}: {:?}",
            dns.after_kill
        );
        let two = &report.strategies[3];
        assert!(
            two.settled.max_over_mean < 1.01,
            "seed {seed}: {:?}",
            two.settled
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_report_and_a_chart() {
    let scenario = BalanceScenario {
        seed: 9,
        clients: 2_000,
        ..BalanceScenario::default()
    };
    let first = run_balance(&scenario).unwrap();
    assert_eq!(first, run_balance(&scenario).unwrap());
    let svg = render_svg(&first).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
    assert!(svg.contains("os-seeded") && svg.contains("dns-round-robin"));
    assert!(
        run_balance(&BalanceScenario {
            servers: 1,
            ..scenario
        })
        .is_err()
    );
}
