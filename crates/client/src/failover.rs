//! The failover decisions of a [`FleetClient`](crate::FleetClient), sans-I/O: which
//! front-end to connect to next, when, and when to give up.
//!
//! [`Failover`] wraps the shared [`flotilla_balance::Balancer`] (uniform random pick from a
//! well-seeded generator, failover rounds, full-jitter exponential backoff between failed
//! rounds) and adds what a client needs on top: a limit on failed rounds, the length of
//! each outage (for [`ClientEvent::Reconnected`](crate::ClientEvent::Reconnected)) and the
//! counters. Time is a [`Duration`] since an origin the shell picks; the seed is passed
//! in. The shell (sockets, timers) asks [`Failover::poll`] what to do and reports what
//! happened with [`Failover::on_connected`], [`Failover::on_connect_failed`] and
//! [`Failover::on_lost`].
//!
//! Policy, inherited from the balancer:
//!
//! - the first pick is uniform over the list (every client holds the same list);
//! - after a failure (a connect or handshake that failed, or a lost connection: closed,
//!   reset, timed out, `Error{Overloaded}`, `Error{ShuttingDown}`) the next pick is uniform
//!   over the front-ends not yet tried in the current round, so the one that just failed
//!   is not picked again while another is untried;
//! - once every front-end failed in a round, the next round starts after a delay drawn
//!   from `[0, min(cap, base * 2^k)]` (`k` = failed rounds before this one);
//! - a connection that stayed up [`BackoffConfig::stable_after`] wipes the slate: losing it
//!   starts a fresh round without delay.
//!
//! On top: after [`FailoverPolicy::max_failed_rounds`] failed rounds in a row,
//! [`Failover::poll`] answers [`Step::GiveUp`] for good (`None`: never give up).

use std::time::Duration;

use flotilla_balance::{BackoffConfig, Balancer, Decision};

use crate::error::ClientError;

/// When and how often a [`FleetClient`](crate::FleetClient) reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Backoff between failed rounds and the stability threshold. Default: 100 ms base,
    /// 5 s cap, immediate failover inside a round, stable after 5 s.
    pub backoff: BackoffConfig,
    /// Give up after this many rounds in a row in which every front-end failed (`Some(0)`
    /// counts as 1); `None`: retry forever (the application sees each failure as a
    /// [`ClientEvent::ConnectFailed`](crate::ClientEvent::ConnectFailed)). Default
    /// `Some(10)`: about ten seconds of a fleet that is entirely down with the default
    /// backoff.
    pub max_failed_rounds: Option<u32>,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(5),
                immediate_failovers: true,
                stable_after: Duration::from_secs(5),
            },
            max_failed_rounds: Some(10),
        }
    }
}

/// What the shell should do now, as answered by [`Failover::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connect to this front-end (an index into the list) and say hello, then report with
    /// [`Failover::on_connected`] or [`Failover::on_connect_failed`]. Repeated by every
    /// poll until the outcome is reported.
    Connect(usize),
    /// Back off: do nothing until this instant (same origin as `now`), then poll again.
    WaitUntil(Duration),
    /// Connected to this front-end: nothing to do until it is lost ([`Failover::on_lost`]).
    Connected(usize),
    /// Stop trying: this many rounds in a row failed on every front-end. Final.
    GiveUp {
        /// Consecutive failed rounds.
        failed_rounds: u32,
    },
}

/// The failover state machine of one fleet client. See the module docs for the policy.
#[derive(Debug, Clone)]
pub struct Failover {
    balancer: Balancer,
    max_failed_rounds: Option<u32>,
    gave_up: bool,
    /// When the last established connection was lost, while not connected again.
    lost_at: Option<Duration>,
    reconnects: u64,
    failed_attempts: u64,
    losses: u64,
}

impl Failover {
    /// A machine over `frontend_count` front-ends whose random choices all come from
    /// `seed` (give every client its own, from OS entropy; never from the clock).
    pub fn new(
        frontend_count: usize,
        policy: FailoverPolicy,
        seed: u64,
    ) -> Result<Self, ClientError> {
        let balancer = Balancer::new(frontend_count, policy.backoff, seed)
            .map_err(|error| ClientError::InvalidConfig(format!("front-end list: {error}")))?;
        Ok(Self {
            balancer,
            max_failed_rounds: policy.max_failed_rounds.map(|rounds| rounds.max(1)),
            gave_up: false,
            lost_at: None,
            reconnects: 0,
            failed_attempts: 0,
            losses: 0,
        })
    }

    /// What to do at `now`.
    #[must_use]
    pub fn poll(&mut self, now: Duration) -> Step {
        let failed_rounds = self.balancer.consecutive_failed_rounds();
        let exhausted = self
            .max_failed_rounds
            .is_some_and(|max| failed_rounds >= max);
        if self.gave_up || (exhausted && self.balancer.connected().is_none()) {
            self.gave_up = true;
            return Step::GiveUp { failed_rounds };
        }
        match self.balancer.poll(now) {
            Decision::Connect(server) => Step::Connect(server),
            Decision::WaitUntil(until) => Step::WaitUntil(until),
            Decision::Connected(server) => Step::Connected(server),
        }
    }

    /// Reports that the handshake with `frontend` succeeded at `now`. Returns the length of
    /// the outage when this ends one (a reconnection), `None` for the first connection.
    pub fn on_connected(&mut self, frontend: usize, now: Duration) -> Option<Duration> {
        if frontend >= self.balancer.server_count() {
            return None;
        }
        self.balancer.on_connected(frontend, now);
        let outage = self.lost_at.take().map(|lost| now.saturating_sub(lost));
        if outage.is_some() {
            self.reconnects = self.reconnects.saturating_add(1);
        }
        outage
    }

    /// Reports that connecting to `frontend` (TCP connect or handshake) failed at `now`.
    /// Ignored unless `frontend` is the attempt in progress.
    pub fn on_connect_failed(&mut self, frontend: usize, now: Duration) {
        if self.balancer.current() != Some(frontend) || self.balancer.connected().is_some() {
            return;
        }
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.balancer.on_failure(frontend, now);
    }

    /// Reports that the established connection to `frontend` was lost at `now` (any
    /// reason). Ignored unless connected to `frontend`.
    pub fn on_lost(&mut self, frontend: usize, now: Duration) {
        if self.balancer.connected() != Some(frontend) {
            return;
        }
        self.losses = self.losses.saturating_add(1);
        self.lost_at = Some(now);
        self.balancer.on_failure(frontend, now);
    }

    /// The front-end connected to, if any.
    pub fn connected(&self) -> Option<usize> {
        self.balancer.connected()
    }

    /// Reconnections after a lost connection (not counting the first connection).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Connect or handshake attempts that failed.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts
    }

    /// Established connections that were lost.
    pub fn losses(&self) -> u64 {
        self.losses
    }

    /// Rounds in a row in which every front-end failed (reset by a stable connection).
    pub fn consecutive_failed_rounds(&self) -> u32 {
        self.balancer.consecutive_failed_rounds()
    }

    /// Whether `frontend` is still untried in the current round.
    pub fn is_untried(&self, frontend: usize) -> bool {
        self.balancer.is_untried(frontend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(max_failed_rounds: Option<u32>) -> FailoverPolicy {
        FailoverPolicy {
            backoff: BackoffConfig {
                base: 100 * MS,
                cap: 400 * MS,
                immediate_failovers: true,
                stable_after: 1000 * MS,
            },
            max_failed_rounds,
        }
    }

    fn connect_step(machine: &mut Failover, now: Duration) -> usize {
        match machine.poll(now) {
            Step::Connect(frontend) => frontend,
            other => panic!("expected Connect at {now:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_first_pick_is_uniform_over_the_list() {
        // 30,000 seeded machines over 5 front-ends: chi-square with 4 degrees of freedom
        // stays below 18.47 (p = 0.001) for a fair pick; deterministic seeds, so no flake.
        const FRONTENDS: usize = 5;
        const CLIENTS: u64 = 30_000;
        let mut counts = [0u64; FRONTENDS];
        for seed in 0..CLIENTS {
            let mut machine = Failover::new(FRONTENDS, policy(None), seed).unwrap();
            counts[connect_step(&mut machine, Duration::ZERO)] += 1;
        }
        let expected = CLIENTS as f64 / FRONTENDS as f64;
        let chi_square: f64 = counts
            .iter()
            .map(|&count| (count as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi_square < 18.47,
            "counts {counts:?}, chi-square {chi_square}"
        );
        // And the failover pick after losing front-end 0 is uniform over the other four.
        let mut counts = [0u64; FRONTENDS];
        for seed in 0..CLIENTS {
            let mut machine = Failover::new(FRONTENDS, policy(None), seed).unwrap();
            machine.on_connected(0, Duration::ZERO);
            machine.on_lost(0, 2000 * MS);
            counts[connect_step(&mut machine, 2000 * MS)] += 1;
        }
        assert_eq!(counts[0], 0, "the lost front-end is not picked again");
        let expected = CLIENTS as f64 / (FRONTENDS - 1) as f64;
        let chi_square: f64 = counts[1..]
            .iter()
            .map(|&count| (count as f64 - expected).powi(2) / expected)
            .sum();
        // 3 degrees of freedom, p = 0.001.
        assert!(
            chi_square < 16.27,
            "counts {counts:?}, chi-square {chi_square}"
        );
    }

    #[test]
    fn a_lost_frontend_is_replaced_by_another_at_once_and_the_outage_is_measured() {
        let mut machine = Failover::new(3, policy(Some(2)), 7).unwrap();
        let first = connect_step(&mut machine, Duration::ZERO);
        assert_eq!(
            machine.on_connected(first, 10 * MS),
            None,
            "first connection"
        );
        assert_eq!(machine.poll(20 * MS), Step::Connected(first));
        // Lost before it was stable (1 s): still an immediate failover, to another one.
        machine.on_lost(first, 500 * MS);
        assert_eq!(machine.losses(), 1);
        let second = connect_step(&mut machine, 500 * MS);
        assert_ne!(second, first);
        // That one refuses: the third is tried at once, still no backoff.
        machine.on_connect_failed(second, 510 * MS);
        let third = connect_step(&mut machine, 510 * MS);
        assert!(third != first && third != second);
        assert_eq!(machine.on_connected(third, 530 * MS), Some(30 * MS));
        assert_eq!((machine.reconnects(), machine.failed_attempts()), (1, 1));
        assert_eq!(machine.connected(), Some(third));
        // Reports about other front-ends are ignored.
        machine.on_lost(first, 600 * MS);
        machine.on_connect_failed(second, 600 * MS);
        assert_eq!(machine.poll(600 * MS), Step::Connected(third));
        assert_eq!((machine.losses(), machine.failed_attempts()), (1, 1));
    }

    #[test]
    fn a_stable_connection_wipes_the_slate() {
        let mut machine = Failover::new(2, policy(Some(1)), 3).unwrap();
        let first = connect_step(&mut machine, Duration::ZERO);
        machine.on_connect_failed(first, Duration::ZERO);
        let second = connect_step(&mut machine, Duration::ZERO);
        assert_ne!(first, second);
        machine.on_connected(second, Duration::ZERO);
        assert_eq!(machine.poll(2000 * MS), Step::Connected(second));
        assert_eq!(machine.consecutive_failed_rounds(), 0);
        // Stable for 2 s: losing it starts a fresh round (the earlier failure is forgotten),
        // in which the lost front-end counts as tried: the other one comes first, at once.
        machine.on_lost(second, 2000 * MS);
        assert_eq!(connect_step(&mut machine, 2000 * MS), first);
        machine.on_connect_failed(first, 2000 * MS);
        // A whole round failed: with max 1 failed round, give up.
        assert_eq!(machine.poll(2000 * MS), Step::GiveUp { failed_rounds: 1 });
        assert_eq!(machine.poll(9000 * MS), Step::GiveUp { failed_rounds: 1 });
    }

    #[test]
    fn failed_rounds_back_off_with_jitter_then_give_up() {
        for seed in 0..50 {
            let mut machine = Failover::new(3, policy(Some(3)), seed).unwrap();
            let mut now = Duration::ZERO;
            for round in 0..3u32 {
                let mut tried = Vec::new();
                for _ in 0..3 {
                    let frontend = connect_step(&mut machine, now);
                    assert!(!tried.contains(&frontend), "each front-end once per round");
                    tried.push(frontend);
                    machine.on_connect_failed(frontend, now);
                }
                assert_eq!(machine.consecutive_failed_rounds(), round + 1);
                if round == 2 {
                    break;
                }
                match machine.poll(now) {
                    Step::WaitUntil(until) => {
                        let ceiling = (100 * MS) * (1 << round);
                        assert!(until <= now + ceiling, "round {round}: {until:?}");
                        if until > now {
                            assert_eq!(
                                machine.poll(until - Duration::from_nanos(1)),
                                Step::WaitUntil(until)
                            );
                        }
                        now = until;
                    }
                    // A zero delay is possible (full jitter includes 0).
                    Step::Connect(_) => {}
                    other => panic!("seed {seed}: unexpected {other:?}"),
                }
            }
            assert_eq!(machine.poll(now), Step::GiveUp { failed_rounds: 3 });
            assert_eq!(machine.failed_attempts(), 9);
        }
    }

    #[test]
    fn retrying_forever_never_gives_up_and_the_backoff_stays_capped() {
        let mut machine = Failover::new(2, policy(None), 11).unwrap();
        let mut now = Duration::ZERO;
        for _ in 0..200 {
            match machine.poll(now) {
                Step::Connect(frontend) => machine.on_connect_failed(frontend, now),
                Step::WaitUntil(until) => {
                    assert!(until <= now + 400 * MS, "capped at 400 ms");
                    now = until;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(machine.consecutive_failed_rounds() >= 50);
        // Then the fleet comes back.
        let frontend = loop {
            match machine.poll(now) {
                Step::Connect(frontend) => break frontend,
                Step::WaitUntil(until) => now = until,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(
            machine.on_connected(frontend, now),
            None,
            "never connected before"
        );
        assert_eq!(machine.reconnects(), 0);
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert!(matches!(
            Failover::new(0, FailoverPolicy::default(), 1),
            Err(ClientError::InvalidConfig(_))
        ));
    }
}
