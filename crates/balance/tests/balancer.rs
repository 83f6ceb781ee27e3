//! Behaviour tests for the balancer: uniform choice, failover rounds, backoff bounds and
//! growth, stability rules, determinism, and a property test over random event streams.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use core::time::Duration;

use flotilla_balance::{
    BackoffConfig, Balancer, Decision, Error, MAX_SERVERS, backoff_ceiling, pick_uniform,
};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MS: Duration = Duration::from_millis(1);

/// The server a `Connect` decision names; panics (test failure) on anything else.
fn expect_connect(decision: Decision) -> usize {
    match decision {
        Decision::Connect(server) => server,
        other => panic!("expected Connect, got {other:?}"),
    }
}

/// The instant a `WaitUntil` decision names; panics (test failure) on anything else.
fn expect_wait(decision: Decision) -> Duration {
    match decision {
        Decision::WaitUntil(until) => until,
        other => panic!("expected WaitUntil, got {other:?}"),
    }
}

/// Chi-square statistic of `counts` against equal expected counts.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&count| {
            let diff = count as f64 - expected;
            diff * diff / expected
        })
        .sum()
}

#[test]
fn first_pick_is_uniform_over_100k_clients() {
    const CLIENTS: u64 = 100_000;
    const SERVERS: usize = 10;
    let mut counts = [0u64; SERVERS];
    for seed in 0..CLIENTS {
        // Spread the seeds the way independent clients would have them.
        let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut balancer = Balancer::new(SERVERS, BackoffConfig::default(), seed).unwrap();
        counts[expect_connect(balancer.poll(Duration::ZERO))] += 1;
    }
    let n = CLIENTS as f64;
    let p = 1.0 / SERVERS as f64;
    let expected = n * p;
    let sd = (n * p * (1.0 - p)).sqrt();
    for (server, &count) in counts.iter().enumerate() {
        let deviation = (count as f64 - expected).abs();
        assert!(
            deviation < 5.0 * sd,
            "server {server}: {count} clients, expected {expected} +- {sd}"
        );
    }
    // Relative sd of a share is sqrt((K-1)/N) = 0.95% here; the observed spread agrees.
    let relative_sd = ((SERVERS as f64 - 1.0) / n).sqrt();
    assert!((relative_sd - sd / expected).abs() < 1e-12);
    // 9 degrees of freedom: P(chi2 > 33.72) = 1e-4.
    let chi2 = chi_square(&counts);
    assert!(chi2 < 33.72, "chi-square {chi2} for counts {counts:?}");
    // And not suspiciously perfect either (P(chi2 < 0.9) is about 0.0004).
    assert!(chi2 > 0.9, "chi-square {chi2} for counts {counts:?}");
}

#[test]
fn failover_pick_is_uniform_over_the_other_servers() {
    const CLIENTS: u64 = 100_000;
    const SERVERS: usize = 10;
    let mut pairs = [[0u64; SERVERS]; SERVERS];
    for seed in 0..CLIENTS {
        let mut balancer = Balancer::new(SERVERS, BackoffConfig::default(), seed).unwrap();
        let first = expect_connect(balancer.poll(Duration::ZERO));
        balancer.on_failure(first, Duration::ZERO);
        let second = expect_connect(balancer.poll(Duration::ZERO));
        assert_ne!(
            first, second,
            "seed {seed}: failover picked the failed server"
        );
        pairs[first][second] += 1;
    }
    let counts: Vec<u64> = (0..SERVERS)
        .flat_map(|first| {
            (0..SERVERS)
                .filter(move |&second| second != first)
                .map(move |second| (first, second))
        })
        .map(|(first, second)| pairs[first][second])
        .collect();
    assert_eq!(counts.len(), 90);
    // 89 degrees of freedom: P(chi2 > 147) is about 1e-4.
    let chi2 = chi_square(&counts);
    assert!(
        chi2 < 147.0,
        "chi-square {chi2} over the 90 (first, second) pairs"
    );
}

#[test]
fn pick_uniform_is_uniform_and_rejects_zero() {
    let mut rng = SmallRng::seed_from_u64(99);
    assert_eq!(pick_uniform(&mut rng, 0), Err(Error::NoServers));
    assert_eq!(pick_uniform(&mut rng, 1), Ok(0));
    let mut counts = [0u64; 3];
    for _ in 0..30_000 {
        counts[pick_uniform(&mut rng, 3).unwrap()] += 1;
    }
    // 2 degrees of freedom: P(chi2 > 18.42) = 1e-4.
    let chi2 = chi_square(&counts);
    assert!(chi2 < 18.42, "chi-square {chi2} for {counts:?}");
    let huge = usize::MAX;
    assert!(pick_uniform(&mut rng, huge).unwrap() < huge);
}

#[test]
fn every_server_is_tried_once_per_round_then_backoff_within_bounds() {
    let config = BackoffConfig::default();
    for servers in 1..=12 {
        for seed in 0..50 {
            let mut balancer = Balancer::new(servers, config, seed).unwrap();
            let mut now = Duration::from_secs(1000);
            for round in 0..12u32 {
                let mut tried = vec![false; servers];
                for attempt in 0..servers {
                    assert_eq!(balancer.untried_in_round(), servers - attempt);
                    let server = expect_connect(balancer.poll(now));
                    assert!(server < servers);
                    assert!(
                        !tried[server],
                        "server {server} tried twice in round {round}"
                    );
                    assert!(balancer.is_untried(server));
                    assert_eq!(balancer.current(), Some(server));
                    tried[server] = true;
                    now += MS;
                    balancer.on_failure(server, now);
                    if attempt + 1 < servers {
                        // Immediate failover: no waiting inside a round.
                        assert!(!balancer.is_untried(server));
                        assert_eq!(balancer.current(), None);
                    }
                }
                assert!(
                    tried.iter().all(|&t| t),
                    "a server was skipped in round {round}"
                );
                assert_eq!(balancer.consecutive_failed_rounds(), round + 1);
                assert_eq!(
                    balancer.consecutive_failures(),
                    (round + 1) * u32::try_from(servers).unwrap()
                );
                // The next round waits between now and now + min(cap, base * 2^round).
                let until = match balancer.poll(now) {
                    Decision::WaitUntil(until) => until,
                    // A zero delay (possible, if unlikely) starts the next round at once.
                    Decision::Connect(_) => now,
                    other => panic!("expected a backoff, got {other:?}"),
                };
                assert!(until >= now);
                assert!(until <= now + backoff_ceiling(config.base, config.cap, round));
                assert!(until <= now + config.cap);
                if until > now {
                    // Polling before the deadline keeps waiting.
                    assert_eq!(
                        balancer.poll(until - Duration::from_nanos(1)),
                        Decision::WaitUntil(until)
                    );
                }
                now = until;
            }
        }
    }
}

#[test]
fn backoff_delays_grow_with_failed_rounds_and_never_exceed_cap() {
    const CLIENTS: u64 = 2_000;
    const ROUNDS: usize = 12;
    const SERVERS: usize = 3;
    let config = BackoffConfig::default();
    let mut sums = [0f64; ROUNDS];
    let mut maxima = [Duration::ZERO; ROUNDS];
    for seed in 0..CLIENTS {
        let mut balancer = Balancer::new(SERVERS, config, seed).unwrap();
        let mut now = Duration::ZERO;
        for round in 0..ROUNDS {
            for _ in 0..SERVERS {
                let server = expect_connect(balancer.poll(now));
                balancer.on_failure(server, now);
            }
            let until = match balancer.poll(now) {
                Decision::WaitUntil(until) => until,
                Decision::Connect(_) => panic!("a zero delay is vanishingly unlikely here"),
                Decision::Connected(server) => panic!("connected to {server} without being told"),
            };
            let delay = until - now;
            assert!(delay <= config.cap);
            sums[round] += delay.as_secs_f64();
            maxima[round] = maxima[round].max(delay);
            now = until;
        }
    }
    let mut previous_mean = 0.0;
    for (round, &sum) in sums.iter().enumerate() {
        let mean = sum / CLIENTS as f64;
        let ceiling = config.ceiling(u32::try_from(round).unwrap()).as_secs_f64();
        // Full jitter: uniform on [0, ceiling], mean ceiling / 2 (standard error ~0.65%).
        let expected = ceiling / 2.0;
        assert!(
            (mean - expected).abs() < 0.05 * ceiling,
            "round {round}: mean delay {mean}s, expected about {expected}s"
        );
        assert!(maxima[round].as_secs_f64() <= ceiling);
        // The largest of 2000 draws sits close to the ceiling: the whole range is used.
        assert!(maxima[round].as_secs_f64() > 0.99 * ceiling);
        if ceiling < config.cap.as_secs_f64() {
            assert!(
                mean > previous_mean * 1.5,
                "round {round}: delays did not grow"
            );
        }
        previous_mean = mean;
    }
}

#[test]
fn single_server_backs_off_then_reconnects_to_it() {
    let config = BackoffConfig::default();
    let mut balancer = Balancer::new(1, config, 5).unwrap();
    let mut now = Duration::from_secs(3);
    for failure in 0..20u32 {
        assert_eq!(balancer.poll(now), Decision::Connect(0));
        balancer.on_failure(0, now);
        assert_eq!(balancer.consecutive_failures(), failure + 1);
        assert_eq!(balancer.consecutive_failed_rounds(), failure + 1);
        let until = match balancer.poll(now) {
            Decision::WaitUntil(until) => until,
            Decision::Connect(0) => now,
            other => panic!("expected a backoff, got {other:?}"),
        };
        assert!(until <= now + config.ceiling(failure));
        assert!(until <= now + config.cap);
        now = until;
    }
    assert_eq!(balancer.poll(now), Decision::Connect(0));
    balancer.on_connected(0, now);
    assert_eq!(balancer.poll(now), Decision::Connected(0));
    assert_eq!(balancer.connected(), Some(0));
}

#[test]
fn stable_connection_resets_failures_and_fails_over_at_once() {
    let config = BackoffConfig::default();
    for seed in 0..200 {
        let mut balancer = Balancer::new(4, config, seed).unwrap();
        let mut now = Duration::ZERO;
        // Two failed rounds.
        for _ in 0..2 {
            for _ in 0..4 {
                let server = expect_connect(balancer.poll(now));
                balancer.on_failure(server, now);
            }
            now = match balancer.poll(now) {
                Decision::WaitUntil(until) => until,
                _ => now,
            };
        }
        assert_eq!(balancer.consecutive_failed_rounds(), 2);
        let server = expect_connect(balancer.poll(now));
        balancer.on_connected(server, now);
        assert_eq!(balancer.poll(now), Decision::Connected(server));
        // Not yet judged stable: the history is kept.
        assert_eq!(balancer.consecutive_failed_rounds(), 2);
        now += config.stable_after;
        assert_eq!(balancer.poll(now), Decision::Connected(server));
        assert_eq!(balancer.consecutive_failures(), 0);
        assert_eq!(balancer.consecutive_failed_rounds(), 0);
        assert_eq!(balancer.untried_in_round(), 4);
        // Losing a stable connection: immediate failover elsewhere, no backoff.
        now += Duration::from_secs(60);
        balancer.on_failure(server, now);
        assert_eq!(balancer.consecutive_failures(), 1);
        let next = expect_connect(balancer.poll(now));
        assert_ne!(next, server);
    }
}

#[test]
fn stable_loss_is_judged_without_an_intermediate_poll() {
    let config = BackoffConfig::default();
    let mut balancer = Balancer::new(2, config, 11).unwrap();
    let first = expect_connect(balancer.poll(Duration::ZERO));
    balancer.on_failure(first, Duration::ZERO);
    let second = expect_connect(balancer.poll(Duration::ZERO));
    balancer.on_connected(second, Duration::ZERO);
    // Lost exactly at the stability threshold: counts as stable.
    balancer.on_failure(second, config.stable_after);
    assert_eq!(balancer.consecutive_failures(), 1);
    assert_eq!(balancer.consecutive_failed_rounds(), 0);
    assert_eq!(balancer.poll(config.stable_after), Decision::Connect(first));
}

#[test]
fn single_server_stable_loss_gets_a_first_level_backoff() {
    let config = BackoffConfig::default();
    let mut balancer = Balancer::new(1, config, 8).unwrap();
    let mut now = Duration::ZERO;
    for _ in 0..6 {
        assert_eq!(balancer.poll(now), Decision::Connect(0));
        balancer.on_failure(0, now);
        now = match balancer.poll(now) {
            Decision::WaitUntil(until) => until,
            _ => now,
        };
    }
    assert_eq!(balancer.poll(now), Decision::Connect(0));
    balancer.on_connected(0, now);
    now += Duration::from_secs(3600);
    balancer.on_failure(0, now);
    assert_eq!(balancer.consecutive_failed_rounds(), 1);
    let until = match balancer.poll(now) {
        Decision::WaitUntil(until) => until,
        Decision::Connect(0) => now,
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        until <= now + config.base,
        "a stable loss restarts the backoff at its base"
    );
}

#[test]
fn flapping_servers_back_off_instead_of_hot_looping() {
    let config = BackoffConfig::default();
    for servers in [1usize, 3] {
        for seed in 0..100 {
            let mut balancer = Balancer::new(servers, config, seed).unwrap();
            let mut now = Duration::ZERO;
            let mut attempts = 0u32;
            let mut backoffs = 0u32;
            // Every server accepts, then drops the connection 10 ms later.
            while now < Duration::from_secs(120) {
                match balancer.poll(now) {
                    Decision::Connect(server) => {
                        attempts += 1;
                        balancer.on_connected(server, now);
                        now += 10 * MS;
                        balancer.on_failure(server, now);
                    }
                    Decision::WaitUntil(until) => {
                        backoffs += 1;
                        now = until;
                    }
                    Decision::Connected(server) => panic!("still connected to {server}"),
                }
                // At most one round of flaps between two backoffs.
                assert!(attempts <= (backoffs + 1) * u32::try_from(servers).unwrap());
            }
            // Backoff grows to the 30 s cap: a hot loop would make about 12,000 attempts.
            assert!(
                attempts < 40 * u32::try_from(servers).unwrap(),
                "servers {servers} seed {seed}: {attempts} attempts in 120 s"
            );
            assert!(balancer.consecutive_failed_rounds() >= 4);
        }
    }
}

#[test]
fn without_immediate_failover_every_failure_backs_off() {
    let config = BackoffConfig {
        immediate_failovers: false,
        ..BackoffConfig::default()
    };
    let mut balancer = Balancer::new(5, config, 21).unwrap();
    let mut now = Duration::ZERO;
    let mut tried = Vec::new();
    for failure in 0..5u32 {
        let server = expect_connect(balancer.poll(now));
        assert!(
            !tried.contains(&server),
            "server {server} picked again within the round"
        );
        tried.push(server);
        balancer.on_failure(server, now);
        let until = match balancer.poll(now) {
            Decision::WaitUntil(until) => until,
            Decision::Connect(_) => panic!("a zero delay is vanishingly unlikely here"),
            Decision::Connected(server) => panic!("connected to {server} without being told"),
        };
        assert!(until <= now + config.ceiling(failure));
        now = until;
    }
    assert_eq!(balancer.consecutive_failed_rounds(), 1);
    assert_eq!(balancer.untried_in_round(), 5);
}

#[test]
fn connect_is_repeated_until_the_outcome_is_reported() {
    let mut balancer = Balancer::new(50, BackoffConfig::default(), 3).unwrap();
    let first = expect_connect(balancer.poll(Duration::ZERO));
    for step in 1..10 {
        assert_eq!(balancer.poll(step * MS), Decision::Connect(first));
    }
    // The repeats did not consume randomness: a twin that polled once agrees afterwards.
    let mut twin = Balancer::new(50, BackoffConfig::default(), 3).unwrap();
    assert_eq!(twin.poll(Duration::ZERO), Decision::Connect(first));
    balancer.on_failure(first, Duration::ZERO);
    twin.on_failure(first, Duration::ZERO);
    assert_eq!(balancer.poll(Duration::ZERO), twin.poll(Duration::ZERO));
}

#[test]
fn stale_and_out_of_range_reports_are_ignored() {
    let mut balancer = Balancer::new(3, BackoffConfig::default(), 4).unwrap();
    let server = expect_connect(balancer.poll(Duration::ZERO));
    let other = (server + 1) % 3;
    balancer.on_failure(other, Duration::ZERO);
    balancer.on_failure(3, Duration::ZERO);
    balancer.on_failure(usize::MAX, Duration::ZERO);
    balancer.on_connected(usize::MAX, Duration::ZERO);
    assert_eq!(balancer.ignored_events(), 4);
    assert_eq!(balancer.consecutive_failures(), 0);
    assert_eq!(balancer.poll(Duration::ZERO), Decision::Connect(server));
    balancer.on_connected(server, Duration::ZERO);
    balancer.on_connected(server, Duration::ZERO);
    assert_eq!(balancer.ignored_events(), 5);
    assert_eq!(balancer.connected(), Some(server));
    // A connection the shell made on its own is followed.
    balancer.on_connected(other, MS);
    assert_eq!(balancer.poll(MS), Decision::Connected(other));
    // Time going backwards is not a stable connection and does not panic.
    balancer.on_failure(other, Duration::ZERO);
    assert_eq!(balancer.consecutive_failures(), 1);
}

#[test]
fn same_seed_and_inputs_replay_the_same_decisions() {
    /// Drives a balancer with a scripted world (outcomes drawn from `script_seed`) and
    /// records every decision.
    fn run(balancer_seed: u64, script_seed: u64) -> Vec<(Duration, Decision)> {
        let mut balancer = Balancer::new(7, BackoffConfig::default(), balancer_seed).unwrap();
        let mut world = SmallRng::seed_from_u64(script_seed);
        let mut now = Duration::ZERO;
        let mut trace = Vec::new();
        for _ in 0..2_000 {
            let decision = balancer.poll(now);
            trace.push((now, decision));
            match decision {
                Decision::Connect(server) => {
                    now += Duration::from_millis(world.random_range(0..50));
                    if world.random_bool(0.3) {
                        balancer.on_connected(server, now);
                    } else {
                        balancer.on_failure(server, now);
                    }
                }
                Decision::Connected(server) => {
                    now += Duration::from_millis(world.random_range(0..10_000));
                    balancer.on_failure(server, now);
                }
                Decision::WaitUntil(until) => now = until,
            }
        }
        trace
    }
    for seed in 0..20 {
        assert_eq!(run(seed, 1000 + seed), run(seed, 1000 + seed));
    }
    assert_ne!(
        run(1, 77),
        run(2, 77),
        "different seeds should choose differently"
    );
}

#[test]
fn construction_errors_are_reported() {
    let config = BackoffConfig::default();
    assert_eq!(Balancer::new(0, config, 1).unwrap_err(), Error::NoServers);
    assert_eq!(
        Balancer::new(MAX_SERVERS + 1, config, 1).unwrap_err(),
        Error::TooManyServers {
            count: MAX_SERVERS + 1,
            max: MAX_SERVERS
        }
    );
    assert_eq!(
        Balancer::new(usize::MAX, config, 1)
            .unwrap_err()
            .to_string(),
        format!(
            "the server list has {} entries, more than the maximum of {MAX_SERVERS}",
            usize::MAX
        )
    );
    let big = Balancer::new(MAX_SERVERS, config, 1).unwrap();
    assert_eq!(big.server_count(), MAX_SERVERS);
    assert_eq!(Error::NoServers.to_string(), "the server list is empty");
}

#[cfg(feature = "std")]
#[test]
fn os_entropy_seeds_differ() {
    let a = flotilla_balance::seed_from_os_entropy().unwrap();
    let b = flotilla_balance::seed_from_os_entropy().unwrap();
    assert_ne!(a, b, "two 64-bit OS seeds collided");
    let mut balancer = Balancer::with_os_entropy(4, BackoffConfig::default()).unwrap();
    assert!(expect_connect(balancer.poll(Duration::ZERO)) < 4);
}

#[test]
fn extreme_times_and_configs_do_not_overflow() {
    let config = BackoffConfig {
        base: Duration::MAX,
        cap: Duration::MAX,
        immediate_failovers: true,
        stable_after: Duration::MAX,
    };
    let mut balancer = Balancer::new(1, config, 2).unwrap();
    let now = Duration::MAX - Duration::from_secs(1);
    assert_eq!(balancer.poll(now), Decision::Connect(0));
    balancer.on_failure(0, now);
    let until = match balancer.poll(now) {
        Decision::WaitUntil(until) => until,
        Decision::Connect(0) => now,
        other => panic!("unexpected {other:?}"),
    };
    assert!(until >= now);
    assert_eq!(expect_wait(balancer.poll(now)), until);
    assert_eq!(balancer.poll(Duration::MAX), Decision::Connect(0));
}

/// One step of a random event stream for the property test.
#[derive(Debug, Clone)]
enum Step {
    /// Time moves forward by this many milliseconds.
    Advance(u64),
    /// The shell polls.
    Poll,
    /// The current attempt or connection succeeds / fails.
    CurrentConnected,
    /// The current attempt or connection fails.
    CurrentFailed,
    /// A report about an arbitrary index, possibly out of range or stale.
    Connected(usize),
    /// A failure report about an arbitrary index, possibly out of range or stale.
    Failed(usize),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..20_000).prop_map(Step::Advance),
        Just(Step::Poll),
        Just(Step::CurrentConnected),
        Just(Step::CurrentFailed),
        (0usize..20).prop_map(Step::Connected),
        prop_oneof![0usize..20, Just(usize::MAX)].prop_map(Step::Failed),
    ]
}

fn config_strategy() -> impl Strategy<Value = BackoffConfig> {
    let duration = prop_oneof![
        Just(Duration::ZERO),
        (0u64..100_000).prop_map(Duration::from_millis),
        Just(Duration::MAX),
    ];
    (duration.clone(), duration.clone(), any::<bool>(), duration).prop_map(
        |(base, cap, immediate_failovers, stable_after)| BackoffConfig {
            base,
            cap,
            immediate_failovers,
            stable_after,
        },
    )
}

proptest! {
    #[test]
    fn random_event_streams_stay_in_range(
        servers in 1usize..12,
        seed in any::<u64>(),
        config in config_strategy(),
        start in prop_oneof![Just(0u64), any::<u64>()],
        steps in proptest::collection::vec(step_strategy(), 0..200),
    ) {
        let mut balancer = Balancer::new(servers, config, seed).unwrap();
        let mut now = Duration::from_secs(start);
        let mut last_failure = None;
        for step in steps {
            match step {
                Step::Advance(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                Step::Poll => match balancer.poll(now) {
                    Decision::Connect(server) | Decision::Connected(server) => {
                        prop_assert!(server < servers);
                        prop_assert_eq!(balancer.current(), Some(server));
                    }
                    Decision::WaitUntil(until) => {
                        prop_assert!(until > now);
                        // A wait never extends past the cap after the failure that caused it.
                        let failed_at: Duration = last_failure.unwrap_or(now);
                        prop_assert!(until <= failed_at.saturating_add(config.cap));
                        prop_assert_eq!(balancer.current(), None);
                    }
                },
                Step::CurrentConnected => {
                    if let Some(server) = balancer.current() {
                        balancer.on_connected(server, now);
                    }
                }
                Step::CurrentFailed => {
                    if let Some(server) = balancer.current() {
                        balancer.on_failure(server, now);
                        last_failure = Some(now);
                    }
                }
                Step::Connected(server) => balancer.on_connected(server, now),
                Step::Failed(server) => {
                    let counted = balancer.current() == Some(server);
                    balancer.on_failure(server, now);
                    if counted {
                        last_failure = Some(now);
                    }
                }
            }
            prop_assert!(balancer.current().is_none_or(|server| server < servers));
            prop_assert!(balancer.connected().is_none_or(|server| server < servers));
            prop_assert!(balancer.untried_in_round() >= 1 && balancer.untried_in_round() <= servers);
            prop_assert_eq!(balancer.server_count(), servers);
        }
    }
}
