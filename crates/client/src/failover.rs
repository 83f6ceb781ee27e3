//! The failover decisions of a [`FleetClient`](crate::FleetClient), sans-I/O: which
//! front-end to connect to next, when, when to resolve the front-end list again, and when
//! to give up.
//!
//! [`Failover`] wraps the shared [`flotilla_balance::Balancer`] (uniform random pick from a
//! well-seeded generator, failover rounds, full-jitter exponential backoff between failed
//! rounds) and adds what a client needs on top: a limit on failed rounds, the length of
//! each outage (for [`ClientEvent::Reconnected`](crate::ClientEvent::Reconnected)), the
//! counters, and a front-end list that can change. Time is a [`Duration`] since an origin
//! the shell picks; the seed is passed in. The shell (sockets, timers, DNS) asks
//! [`Failover::poll`] what to do and reports what happened with [`Failover::on_connected`],
//! [`Failover::on_connect_failed`], [`Failover::on_lost`] and, for a list that comes from
//! a resolver, [`Failover::on_list_replaced`], [`Failover::on_list_unchanged`] and
//! [`Failover::on_resolve_failed`].
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
//!
//! # A list that changes (DNS)
//!
//! A machine made with [`Failover::resolving`] starts without a list and answers
//! [`Step::Resolve`] at the start of every round: first, after each lost connection, and
//! after each failed round (once its backoff is over), so front-ends added to or removed
//! from DNS are picked up without restarting the client. Inside a round the list stays
//! put, so each front-end is still tried at most once per round. The shell reports the
//! outcome:
//!
//! - [`Failover::on_list_replaced`]: the first list, or one with other addresses. The
//!   next pick is uniform over the new list, in a fresh round (every front-end of the new
//!   list untried). What the client has been through survives: the counters, the failed
//!   rounds in a row (for [`FailoverPolicy::max_failed_rounds`]), the backoff level (the
//!   next failed round waits as long as it would have on the old list) and a backoff
//!   already under way.
//! - [`Failover::on_list_unchanged`]: the same addresses; nothing changes.
//! - [`Failover::on_resolve_failed`]: the last good list is kept; without one (never
//!   resolved) the round counts as a failed round: backoff, then [`Step::Resolve`] again,
//!   and [`Step::GiveUp`] after [`FailoverPolicy::max_failed_rounds`].
//!
//! [`Failover::on_list_replaced`] also works on a machine over a fixed list (made with
//! [`Failover::new`], which never answers [`Step::Resolve`]).

use std::time::Duration;

use flotilla_balance::{BackoffConfig, Balancer, Decision};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::error::ClientError;

/// Mixed into the seed of the machine's own generator (which seeds the balancers of later
/// lists and draws the backoff of rounds without a list), so that it does not repeat the
/// first balancer's draws.
const OWN_GENERATOR_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// When and how often a [`FleetClient`](crate::FleetClient) reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Backoff between failed rounds and the stability threshold. Default: 100 ms base,
    /// 5 s cap, immediate failover inside a round, stable after 5 s.
    pub backoff: BackoffConfig,
    /// Give up after this many rounds in a row in which every front-end failed, or in
    /// which a front-end list could not be resolved at all (`Some(0)` counts as 1);
    /// `None`: retry forever (the application sees each failure as a
    /// [`ClientEvent::ConnectFailed`](crate::ClientEvent::ConnectFailed) or
    /// [`ClientEvent::ResolveFailed`](crate::ClientEvent::ResolveFailed)). Default
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
    /// Resolve the front-end list (only from a machine made with [`Failover::resolving`],
    /// at the start of a round), then report with [`Failover::on_list_replaced`],
    /// [`Failover::on_list_unchanged`] or [`Failover::on_resolve_failed`]. Repeated by
    /// every poll until the outcome is reported.
    Resolve,
    /// Stop trying: this many rounds in a row failed on every front-end (or without a
    /// list). Final.
    GiveUp {
        /// Consecutive failed rounds.
        failed_rounds: u32,
    },
}

/// The failover state machine of one fleet client. See the module docs for the policy.
#[derive(Debug, Clone)]
pub struct Failover {
    policy: FailoverPolicy,
    max_failed_rounds: Option<u32>,
    /// The balancer over the current list; `None` until a resolving machine gets its
    /// first list.
    balancer: Option<Balancer>,
    /// Seeds the balancers of later lists and draws the backoff of rounds without a list.
    rng: SmallRng,
    /// The list comes from a resolver: answer `Resolve` at the start of every round.
    resolving: bool,
    /// A round is starting and the list has not been resolved for it yet.
    resolve_due: bool,
    /// Failed rounds in a row counted before the current balancer (on earlier lists, or
    /// without any list), since the last stable connection.
    carried_rounds: u32,
    /// Failures in a row counted before the current balancer, likewise.
    carried_failures: u32,
    /// A backoff that must end before anything else is tried (after a round without a
    /// list, or carried over from the balancer of the previous list).
    hold_until: Option<Duration>,
    /// When the current connection was established.
    connected_since: Option<Duration>,
    gave_up: bool,
    /// When the last established connection was lost, while not connected again.
    lost_at: Option<Duration>,
    reconnects: u64,
    failed_attempts: u64,
    losses: u64,
    resolve_failures: u64,
    list_replacements: u64,
}

impl Failover {
    /// A machine over a fixed list of `frontend_count` front-ends whose random choices all
    /// come from `seed` (give every client its own, from OS entropy; never from the
    /// clock). It never answers [`Step::Resolve`].
    pub fn new(
        frontend_count: usize,
        policy: FailoverPolicy,
        seed: u64,
    ) -> Result<Self, ClientError> {
        let balancer = Balancer::new(frontend_count, policy.backoff, seed).map_err(|error| {
            ClientError::InvalidConfig {
                setting: "front-end list",
                reason: error.to_string(),
            }
        })?;
        let mut machine = Self::resolving(policy, seed);
        machine.balancer = Some(balancer);
        machine.resolving = false;
        machine.resolve_due = false;
        Ok(machine)
    }

    /// A machine whose list comes from a resolver (every A/AAAA record of a DNS name): it
    /// starts without a list and answers [`Step::Resolve`] at the start of every round
    /// (see the module docs). Its random choices all come from `seed`.
    pub fn resolving(policy: FailoverPolicy, seed: u64) -> Self {
        Self {
            policy,
            max_failed_rounds: policy.max_failed_rounds.map(|rounds| rounds.max(1)),
            balancer: None,
            rng: SmallRng::seed_from_u64(seed ^ OWN_GENERATOR_SALT),
            resolving: true,
            resolve_due: true,
            carried_rounds: 0,
            carried_failures: 0,
            hold_until: None,
            connected_since: None,
            gave_up: false,
            lost_at: None,
            reconnects: 0,
            failed_attempts: 0,
            losses: 0,
            resolve_failures: 0,
            list_replacements: 0,
        }
    }

    /// What to do at `now`.
    #[must_use]
    pub fn poll(&mut self, now: Duration) -> Step {
        let failed_rounds = self.consecutive_failed_rounds();
        let connected = self.connected();
        let exhausted = self
            .max_failed_rounds
            .is_some_and(|max| failed_rounds >= max);
        if self.gave_up || (exhausted && connected.is_none()) {
            self.gave_up = true;
            return Step::GiveUp { failed_rounds };
        }
        if connected.is_some() {
            if self.has_carried_failures() && self.is_stable(now) {
                self.forget_carried_failures();
            }
        } else {
            if let Some(until) = self.hold_until {
                if now < until {
                    return Step::WaitUntil(until);
                }
                self.hold_until = None;
            }
            if self.resolve_due {
                return Step::Resolve;
            }
        }
        let Some(balancer) = self.balancer.as_mut() else {
            // Not reached: without a list a resolve is always due.
            self.resolve_due = true;
            return Step::Resolve;
        };
        match balancer.poll(now) {
            Decision::Connect(server) => Step::Connect(server),
            Decision::WaitUntil(until) => Step::WaitUntil(until),
            Decision::Connected(server) => Step::Connected(server),
        }
    }

    /// Reports that the handshake with `frontend` succeeded at `now`. Returns the length of
    /// the outage when this ends one (a reconnection), `None` for the first connection.
    pub fn on_connected(&mut self, frontend: usize, now: Duration) -> Option<Duration> {
        let balancer = self.balancer.as_mut()?;
        if frontend >= balancer.server_count() {
            return None;
        }
        balancer.on_connected(frontend, now);
        self.connected_since = Some(now);
        let outage = self.lost_at.take().map(|lost| now.saturating_sub(lost));
        if outage.is_some() {
            self.reconnects = self.reconnects.saturating_add(1);
        }
        outage
    }

    /// Reports that connecting to `frontend` (TCP connect or handshake) failed at `now`.
    /// Ignored unless `frontend` is the attempt in progress.
    pub fn on_connect_failed(&mut self, frontend: usize, now: Duration) {
        let Some(balancer) = self.balancer.as_mut() else {
            return;
        };
        if balancer.current() != Some(frontend) || balancer.connected().is_some() {
            return;
        }
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        balancer.on_failure(frontend, now);
        // Every front-end untried again: the round failed and a new one starts.
        if balancer.untried_in_round() == balancer.server_count() {
            self.start_round(now);
        }
    }

    /// Reports that the established connection to `frontend` was lost at `now` (any
    /// reason). Ignored unless connected to `frontend`.
    pub fn on_lost(&mut self, frontend: usize, now: Duration) {
        if self.connected() != Some(frontend) {
            return;
        }
        if self.has_carried_failures() && self.is_stable(now) {
            self.forget_carried_failures();
        }
        self.losses = self.losses.saturating_add(1);
        self.lost_at = Some(now);
        self.connected_since = None;
        if let Some(balancer) = self.balancer.as_mut() {
            balancer.on_failure(frontend, now);
        }
        self.start_round(now);
    }

    /// Reports a new front-end list of `frontend_count` addresses at `now`: the first one
    /// resolved, or one whose addresses differ from the last. The next pick is uniform
    /// over the new list in a fresh round; counters, failed rounds in a row, the backoff
    /// level and a backoff under way carry over (see the module docs). An attempt in
    /// progress is forgotten (report a new list only between attempts); ignored while
    /// connected (the indices of the current connection refer to the old list). Fails
    /// for an empty or oversized list, leaving the machine as it was.
    pub fn on_list_replaced(
        &mut self,
        frontend_count: usize,
        now: Duration,
    ) -> Result<(), ClientError> {
        if self.connected().is_some() {
            return Ok(());
        }
        let (old_rounds, old_failures) = self.balancer.as_ref().map_or((0, 0), |old| {
            (old.consecutive_failed_rounds(), old.consecutive_failures())
        });
        let carried_rounds = self.carried_rounds.saturating_add(old_rounds);
        let carried_failures = self.carried_failures.saturating_add(old_failures);
        let level = self.backoff_level(carried_rounds, carried_failures);
        // The new balancer starts at the backoff level reached: with base' = ceiling(level),
        // min(cap, base' * 2^k) = min(cap, base * 2^(level + k)).
        let backoff = BackoffConfig {
            base: self.policy.backoff.ceiling(level),
            ..self.policy.backoff
        };
        let balancer =
            Balancer::new(frontend_count, backoff, self.rng.next_u64()).map_err(|error| {
                ClientError::InvalidConfig {
                    setting: "front-end list",
                    reason: error.to_string(),
                }
            })?;
        if let Some(old) = self.balancer.as_mut()
            && let Decision::WaitUntil(until) = old.poll(now)
        {
            self.hold(until);
        }
        self.balancer = Some(balancer);
        self.carried_rounds = carried_rounds;
        self.carried_failures = carried_failures;
        self.resolve_due = false;
        self.list_replacements = self.list_replacements.saturating_add(1);
        Ok(())
    }

    /// Reports that resolving gave the same addresses as the last list: nothing changes.
    /// Without a list (none resolved yet) it counts as a failed resolution.
    pub fn on_list_unchanged(&mut self, now: Duration) {
        if self.balancer.is_none() {
            self.on_resolve_failed(now);
        } else {
            self.resolve_due = false;
        }
    }

    /// Reports that resolving the list failed or gave no address at `now`. The last good
    /// list is kept; without one, the round counts as a failed round (backoff, then
    /// [`Step::Resolve`] again, or [`Step::GiveUp`]).
    pub fn on_resolve_failed(&mut self, now: Duration) {
        self.resolve_failures = self.resolve_failures.saturating_add(1);
        if self.balancer.is_some() {
            self.resolve_due = false;
            return;
        }
        self.resolve_due = true;
        self.carried_rounds = self.carried_rounds.saturating_add(1);
        self.carried_failures = self.carried_failures.saturating_add(1);
        let exponent = self
            .backoff_level(self.carried_rounds, self.carried_failures)
            .saturating_sub(1);
        let delay = self.policy.backoff.delay(&mut self.rng, exponent);
        self.hold(now.saturating_add(delay));
    }

    /// The front-end connected to, if any.
    pub fn connected(&self) -> Option<usize> {
        self.balancer.as_ref().and_then(Balancer::connected)
    }

    /// How many front-ends the current list has (0 before a resolving machine's first).
    pub fn frontend_count(&self) -> usize {
        self.balancer.as_ref().map_or(0, Balancer::server_count)
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

    /// Resolutions of the list that failed or gave no address.
    pub fn resolve_failures(&self) -> u64 {
        self.resolve_failures
    }

    /// Times the list was replaced (the first resolved list counts).
    pub fn list_replacements(&self) -> u64 {
        self.list_replacements
    }

    /// Rounds in a row in which every front-end failed, or no list could be resolved
    /// (reset by a stable connection).
    pub fn consecutive_failed_rounds(&self) -> u32 {
        let current = self
            .balancer
            .as_ref()
            .map_or(0, Balancer::consecutive_failed_rounds);
        self.carried_rounds.saturating_add(current)
    }

    /// Whether `frontend` is still untried in the current round.
    pub fn is_untried(&self, frontend: usize) -> bool {
        self.balancer
            .as_ref()
            .is_some_and(|balancer| balancer.is_untried(frontend))
    }

    /// A new round starts at `now` (after a loss, or a round in which every front-end
    /// failed): a resolving machine resolves the list again, after the backoff if any.
    fn start_round(&mut self, now: Duration) {
        if !self.resolving {
            return;
        }
        self.resolve_due = true;
        // Learn the balancer's backoff now, so the list is resolved when it is over (a
        // `Connect` here is a pick made early; a new list discards it).
        if let Some(balancer) = self.balancer.as_mut()
            && let Decision::WaitUntil(until) = balancer.poll(now)
        {
            self.hold(until);
        }
    }

    /// Waits at least until `until` before the next step.
    fn hold(&mut self, until: Duration) {
        self.hold_until = Some(self.hold_until.map_or(until, |held| held.max(until)));
    }

    /// The exponent the backoff has reached after these failures (failed rounds, or
    /// failures when the balancer backs off after every failure).
    fn backoff_level(&self, rounds: u32, failures: u32) -> u32 {
        if self.policy.backoff.immediate_failovers {
            rounds
        } else {
            failures
        }
    }

    fn has_carried_failures(&self) -> bool {
        self.carried_rounds > 0 || self.carried_failures > 0
    }

    /// Whether the current connection counts as stable at `now`.
    fn is_stable(&self, now: Duration) -> bool {
        self.connected_since.is_some_and(|since| {
            now.checked_sub(since)
                .is_some_and(|up| up >= self.policy.backoff.stable_after)
        })
    }

    /// A stable connection wipes the slate: forgets the failures carried from earlier
    /// lists and puts the balancer back on the unscaled backoff, keeping the connection.
    fn forget_carried_failures(&mut self) {
        self.carried_rounds = 0;
        self.carried_failures = 0;
        let Some(old) = self.balancer.as_ref() else {
            return;
        };
        let connection = old.connected().zip(self.connected_since);
        if let Ok(mut balancer) =
            Balancer::new(old.server_count(), self.policy.backoff, self.rng.next_u64())
        {
            if let Some((frontend, since)) = connection {
                balancer.on_connected(frontend, since);
            }
            self.balancer = Some(balancer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Pearson's chi-square of `counts` against the same `expected` count in each cell.
    fn pearson_chi_square(counts: &[u64], expected: f64) -> f64 {
        counts
            .iter()
            .map(|&count| (count as f64 - expected).powi(2) / expected)
            .sum()
    }

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
        let chi_square = pearson_chi_square(&counts, CLIENTS as f64 / FRONTENDS as f64);
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
        let chi_square = pearson_chi_square(&counts[1..], CLIENTS as f64 / (FRONTENDS - 1) as f64);
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
            Err(ClientError::InvalidConfig { .. })
        ));
    }

    /// Answers the machine's `Resolve` with a list of `count` front-ends.
    fn resolve_to(machine: &mut Failover, count: usize, now: Duration) {
        assert_eq!(
            machine.poll(now),
            Step::Resolve,
            "a resolve is due at {now:?}"
        );
        machine.on_list_replaced(count, now).unwrap();
    }

    #[test]
    fn a_resolving_machine_asks_for_its_list_first_then_picks_uniformly_over_it() {
        const FRONTENDS: usize = 3;
        const CLIENTS: u64 = 30_000;
        let mut counts = [0u64; FRONTENDS];
        for seed in 0..CLIENTS {
            let mut machine = Failover::resolving(policy(None), seed);
            assert_eq!(machine.frontend_count(), 0);
            assert_eq!(machine.poll(Duration::ZERO), Step::Resolve);
            assert_eq!(
                machine.poll(Duration::ZERO),
                Step::Resolve,
                "until reported"
            );
            machine.on_list_replaced(FRONTENDS, Duration::ZERO).unwrap();
            counts[connect_step(&mut machine, Duration::ZERO)] += 1;
            assert_eq!(machine.list_replacements(), 1);
        }
        let chi_square = pearson_chi_square(&counts, CLIENTS as f64 / FRONTENDS as f64);
        // 2 degrees of freedom, p = 0.001.
        assert!(
            chi_square < 13.82,
            "counts {counts:?}, chi-square {chi_square}"
        );
    }

    #[test]
    fn a_new_list_after_a_loss_replaces_the_old_one_and_the_counters_survive() {
        // 3 front-ends, then the lost one leaves DNS and two others join: 4 front-ends.
        let mut picked = [0u64; 4];
        for seed in 0..4000 {
            let mut machine = Failover::resolving(policy(Some(3)), seed);
            resolve_to(&mut machine, 3, Duration::ZERO);
            let first = connect_step(&mut machine, Duration::ZERO);
            assert_eq!(machine.on_connected(first, 10 * MS), None);
            assert_eq!(machine.poll(20 * MS), Step::Connected(first));
            // Lost: the new round starts with a resolve, at once.
            machine.on_lost(first, 100 * MS);
            resolve_to(&mut machine, 4, 100 * MS);
            assert_eq!(machine.frontend_count(), 4);
            let next = connect_step(&mut machine, 100 * MS);
            picked[next] += 1;
            assert_eq!(machine.on_connected(next, 130 * MS), Some(30 * MS));
            assert_eq!(
                (
                    machine.losses(),
                    machine.reconnects(),
                    machine.list_replacements()
                ),
                (1, 1, 2)
            );
        }
        // Uniform over the new list: every index, including the new one (3), about 1000.
        assert!(
            picked.iter().all(|&count| (800..1200).contains(&count)),
            "{picked:?}"
        );
    }

    #[test]
    fn the_same_list_keeps_the_round_so_the_lost_frontend_comes_last() {
        for seed in 0..200 {
            let mut machine = Failover::resolving(policy(None), seed);
            resolve_to(&mut machine, 3, Duration::ZERO);
            let first = connect_step(&mut machine, Duration::ZERO);
            machine.on_connected(first, Duration::ZERO);
            machine.on_lost(first, 100 * MS);
            assert_eq!(machine.poll(100 * MS), Step::Resolve);
            machine.on_list_unchanged(100 * MS);
            assert_eq!(machine.list_replacements(), 1);
            let second = connect_step(&mut machine, 100 * MS);
            assert_ne!(second, first, "seed {seed}");
            // Inside a round no resolve is asked for.
            machine.on_connect_failed(second, 110 * MS);
            let third = connect_step(&mut machine, 110 * MS);
            assert!(third != first && third != second);
        }
    }

    #[test]
    fn a_failed_resolution_keeps_the_last_list() {
        let mut machine = Failover::resolving(policy(Some(2)), 5);
        resolve_to(&mut machine, 2, Duration::ZERO);
        let first = connect_step(&mut machine, Duration::ZERO);
        machine.on_connected(first, Duration::ZERO);
        machine.on_lost(first, 100 * MS);
        assert_eq!(machine.poll(100 * MS), Step::Resolve);
        machine.on_resolve_failed(100 * MS);
        assert_eq!(machine.resolve_failures(), 1);
        assert_eq!(machine.consecutive_failed_rounds(), 0, "not a failed round");
        assert_eq!(machine.frontend_count(), 2);
        // Straight on to the other front-end of the kept list.
        assert_eq!(connect_step(&mut machine, 100 * MS), 1 - first);
    }

    #[test]
    fn without_a_list_failed_resolutions_are_failed_rounds_with_backoff_then_give_up() {
        for seed in 0..50 {
            let mut machine = Failover::resolving(policy(Some(3)), seed);
            let mut now = Duration::ZERO;
            for round in 0..3u32 {
                assert_eq!(
                    machine.poll(now),
                    Step::Resolve,
                    "seed {seed} round {round}"
                );
                machine.on_resolve_failed(now);
                assert_eq!(machine.consecutive_failed_rounds(), round + 1);
                if round == 2 {
                    break;
                }
                match machine.poll(now) {
                    Step::WaitUntil(until) => {
                        let ceiling = (100 * MS) * (1 << round);
                        assert!(until > now && until <= now + ceiling, "{until:?}");
                        assert_eq!(
                            machine.poll(until - Duration::from_nanos(1)),
                            Step::WaitUntil(until)
                        );
                        now = until;
                    }
                    // Full jitter can draw 0: resolve again at once.
                    Step::Resolve => {}
                    other => panic!("seed {seed}: unexpected {other:?}"),
                }
            }
            assert_eq!(machine.poll(now), Step::GiveUp { failed_rounds: 3 });
            assert_eq!(machine.resolve_failures(), 3);
            assert_eq!(machine.failed_attempts(), 0);
        }
        // A list that never changed from "nothing" is no list either.
        let mut machine = Failover::resolving(policy(Some(1)), 1);
        machine.on_list_unchanged(Duration::ZERO);
        assert_eq!(
            machine.poll(Duration::ZERO),
            Step::GiveUp { failed_rounds: 1 }
        );
    }

    #[test]
    fn after_a_failed_round_the_backoff_comes_before_the_resolve_and_carries_over_a_new_list() {
        let mut longest_second_wait = Duration::ZERO;
        for seed in 0..200 {
            let mut machine = Failover::resolving(policy(Some(3)), seed);
            let mut now = Duration::ZERO;
            resolve_to(&mut machine, 2, now);
            for _ in 0..2 {
                let frontend = connect_step(&mut machine, now);
                machine.on_connect_failed(frontend, now);
            }
            assert_eq!(machine.consecutive_failed_rounds(), 1);
            // First the backoff of the failed round (ceiling 100 ms), then the resolve.
            if let Step::WaitUntil(until) = machine.poll(now) {
                assert!(until <= now + 100 * MS);
                now = until;
            }
            // Other addresses: a fresh round over them, but the failed round counts.
            resolve_to(&mut machine, 2, now);
            assert_eq!(machine.consecutive_failed_rounds(), 1);
            for _ in 0..2 {
                let frontend = connect_step(&mut machine, now);
                machine.on_connect_failed(frontend, now);
            }
            assert_eq!(machine.consecutive_failed_rounds(), 2);
            // The second backoff has the second level's ceiling (200 ms), as on one list.
            match machine.poll(now) {
                Step::WaitUntil(until) => {
                    assert!(until <= now + 200 * MS, "seed {seed}: {until:?}");
                    longest_second_wait = longest_second_wait.max(until - now);
                    now = until;
                }
                Step::Resolve => {}
                other => panic!("seed {seed}: unexpected {other:?}"),
            }
            resolve_to(&mut machine, 3, now);
            for _ in 0..3 {
                let frontend = connect_step(&mut machine, now);
                machine.on_connect_failed(frontend, now);
            }
            // Three failed rounds over three lists: give up, as configured.
            assert_eq!(machine.poll(now), Step::GiveUp { failed_rounds: 3 });
            assert_eq!(machine.failed_attempts(), 7);
        }
        assert!(
            longest_second_wait > 150 * MS,
            "the second backoff used the first level: {longest_second_wait:?}"
        );
    }

    #[test]
    fn a_stable_connection_forgets_the_failures_of_earlier_lists() {
        let mut machine = Failover::resolving(policy(Some(2)), 9);
        resolve_to(&mut machine, 1, Duration::ZERO);
        let only = connect_step(&mut machine, Duration::ZERO);
        machine.on_connect_failed(only, Duration::ZERO);
        let mut now = Duration::ZERO;
        if let Step::WaitUntil(until) = machine.poll(now) {
            now = until;
        }
        resolve_to(&mut machine, 2, now);
        assert_eq!(machine.consecutive_failed_rounds(), 1);
        let frontend = connect_step(&mut machine, now);
        machine.on_connected(frontend, now);
        // Not stable yet: the failed round still counts.
        assert_eq!(machine.poll(now + 500 * MS), Step::Connected(frontend));
        assert_eq!(machine.consecutive_failed_rounds(), 1);
        // Stable (1 s): the slate is clean, the connection kept.
        assert_eq!(machine.poll(now + 1500 * MS), Step::Connected(frontend));
        assert_eq!(machine.consecutive_failed_rounds(), 0);
        // Losing it starts a fresh round: resolve, then the other front-end at once.
        machine.on_lost(frontend, now + 2000 * MS);
        machine.on_list_unchanged(now + 2000 * MS);
        assert_eq!(connect_step(&mut machine, now + 2000 * MS), 1 - frontend);
    }

    #[test]
    fn a_fixed_list_machine_never_resolves_but_takes_a_new_list() {
        let mut machine = Failover::new(2, policy(None), 4).unwrap();
        let first = connect_step(&mut machine, Duration::ZERO);
        machine.on_connected(first, Duration::ZERO);
        machine.on_lost(first, 100 * MS);
        let next = connect_step(&mut machine, 100 * MS);
        assert_ne!(next, first, "no Resolve step, the failover goes on");
        // The attempt fails too (a failed round: backoff); the application swaps in a list
        // of 5, and the backoff under way still applies.
        machine.on_connect_failed(next, 110 * MS);
        machine.on_list_replaced(5, 110 * MS).unwrap();
        assert_eq!(machine.frontend_count(), 5);
        let mut now = 110 * MS;
        if let Step::WaitUntil(until) = machine.poll(now) {
            assert!(until <= now + 100 * MS);
            now = until;
        }
        assert!(connect_step(&mut machine, now) < 5);
        assert_eq!(machine.consecutive_failed_rounds(), 1);
        assert_eq!((machine.losses(), machine.failed_attempts()), (1, 1));
    }

    #[test]
    fn an_unusable_list_is_refused_and_a_list_while_connected_is_ignored() {
        let mut machine = Failover::resolving(policy(None), 2);
        assert!(matches!(
            machine.on_list_replaced(0, Duration::ZERO),
            Err(ClientError::InvalidConfig { .. })
        ));
        assert_eq!(machine.poll(Duration::ZERO), Step::Resolve, "still no list");
        machine.on_list_replaced(3, Duration::ZERO).unwrap();
        let first = connect_step(&mut machine, Duration::ZERO);
        machine.on_connected(first, Duration::ZERO);
        assert!(machine.on_list_replaced(0, 10 * MS).is_ok(), "ignored");
        machine.on_list_replaced(7, 10 * MS).unwrap();
        assert_eq!(machine.frontend_count(), 3);
        assert_eq!(machine.poll(20 * MS), Step::Connected(first));
    }

    proptest::proptest! {
        /// Whatever happens (connects that succeed or fail, losses, lists that change,
        /// stay or fail to resolve, time passing), the machine only ever names a
        /// front-end of the current list, never waits into the past, and gives up only
        /// after the configured number of failed rounds.
        #[test]
        fn steps_always_stay_within_the_current_list(
            seed in proptest::prelude::any::<u64>(),
            resolving in proptest::prelude::any::<bool>(),
            outcomes in proptest::collection::vec(0u8..8, 1..300),
        ) {
            let mut machine = if resolving {
                Failover::resolving(policy(Some(4)), seed)
            } else {
                Failover::new(3, policy(Some(4)), seed).unwrap()
            };
            let mut now = Duration::ZERO;
            for outcome in outcomes {
                match machine.poll(now) {
                    Step::Connect(frontend) => {
                        proptest::prop_assert!(frontend < machine.frontend_count());
                        if outcome < 3 {
                            machine.on_connected(frontend, now);
                        } else {
                            machine.on_connect_failed(frontend, now);
                        }
                    }
                    Step::Connected(frontend) => {
                        proptest::prop_assert!(frontend < machine.frontend_count());
                        now += Duration::from_millis(u64::from(outcome) * 300);
                        if outcome % 2 == 0 {
                            machine.on_lost(frontend, now);
                        }
                    }
                    Step::WaitUntil(until) => {
                        proptest::prop_assert!(until > now);
                        now = until;
                    }
                    Step::Resolve => {
                        proptest::prop_assert!(resolving);
                        match outcome {
                            0..=2 => machine.on_list_replaced(usize::from(outcome) + 1, now).unwrap(),
                            3..=5 => machine.on_list_unchanged(now),
                            _ => machine.on_resolve_failed(now),
                        }
                    }
                    Step::GiveUp { failed_rounds } => {
                        proptest::prop_assert!(failed_rounds >= 4);
                        proptest::prop_assert_eq!(machine.poll(now), Step::GiveUp { failed_rounds });
                        break;
                    }
                }
                now += Duration::from_millis(1);
            }
        }
    }
}
