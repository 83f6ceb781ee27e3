//! The flotilla logger's sending policy, sans-I/O and `no_std` (`core` + `alloc`).
//!
//! The logger's sender thread does the I/O (connect, encode, write, read RELP
//! acknowledgements); every decision about *what to do when* is this machine's, so that a
//! logger core on a unikernel's own network stack (e.g. smoltcp) can reuse it:
//!
//! - which collector to try, when, and how long to back off: [`flotilla_balance::Balancer`]
//!   (random pick, failover within a round, full-jitter backoff between rounds);
//! - the crash report's bypass: a crash report waiting while backing off tries every
//!   collector once, now, starting at a random one ([`SenderAction::Connect`] with
//!   `bypass: true`);
//! - RELP hand-over: failing over from a RELP collector to one of another transport moves
//!   the RELP session's unacknowledged messages to the front of the new link
//!   (`hand_over_relp`), so nothing is stranded in a session that will never reconnect;
//! - the heartbeat ("up N s, D delivered, X dropped") every `heartbeat` period;
//! - the "dropped N messages" notice, at most once per `drop_report_every`, while
//!   connected;
//! - when to wait for RELP acknowledgements ([`SenderPolicy::should_wait_for_acks`]).
//!
//! It follows the workspace's contract ([`flotilla_conn::Machine`]): the shell feeds
//! [`SenderEvent`]s with `now`, takes [`SenderAction`]s, and sleeps until
//! [`poll_timeout`](flotilla_conn::Machine::poll_timeout).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use flotilla_balance::{BackoffConfig, Balancer, Decision};
use flotilla_conn::{Instant, Machine, Timeout};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// For each collector, in the configured order: true if it speaks RELP.
    pub relp: Vec<bool>,
    /// Backoff between failed rounds (see [`BackoffConfig`]).
    pub backoff: BackoffConfig,
    /// Send a heartbeat this often; `None`: never.
    pub heartbeat: Option<Duration>,
    /// At most one "dropped N messages" notice per this period.
    pub drop_report_every: Duration,
}

/// Why the policy refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The collector list is unusable (empty, or too long for the balancer).
    Collectors(flotilla_balance::Error),
}

impl core::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PolicyError::Collectors(error) => write!(f, "collector list: {error}"),
        }
    }
}

impl core::error::Error for PolicyError {}

/// What happened, as the shell reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderEvent {
    /// The instant from `poll_timeout` came.
    Timeout,
    /// Messages are waiting (in the batch, the queue, or unacknowledged in RELP): true, or
    /// nothing is (false). Reported on every turn of the shell's loop.
    Pending(bool),
    /// A crash report was put first in line: it must not wait out a backoff.
    CrashReport,
    /// The connection asked for is up.
    Connected(usize),
    /// It could not be made (name, connect, TLS, RELP open all count).
    ConnectFailed(usize),
    /// The established connection failed (write, read, acknowledgement timeout).
    LinkFailed(usize),
    /// Messages were delivered (written, or acknowledged for RELP).
    Delivered(u64),
    /// Messages dropped so far by the queue's policy (a running total).
    Dropped(u64),
}

impl From<Timeout> for SenderEvent {
    fn from(_: Timeout) -> Self {
        SenderEvent::Timeout
    }
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderAction {
    /// Connect to this collector, then report `Connected` or `ConnectFailed`.
    Connect {
        /// The collector's index.
        collector: usize,
        /// Move the RELP session's unacknowledged messages to the front of the batch
        /// first (failing over from RELP to another transport).
        hand_over_relp: bool,
        /// A crash report's bypass of the backoff: on failure the shell is asked for the
        /// next collector at once, until each was tried once.
        bypass: bool,
    },
    /// Queue a heartbeat message.
    Heartbeat {
        /// Time since the policy started.
        uptime: Duration,
        /// The heartbeat period (a log service tells "silent" from "quiet" by it).
        period: Duration,
    },
    /// Queue a "dropped N messages" notice.
    ReportDrops {
        /// Dropped since the last notice.
        count: u64,
        /// Dropped in all.
        total: u64,
    },
}

/// The sending policy of one logger.
#[derive(Debug, Clone)]
pub struct SenderPolicy {
    config: PolicyConfig,
    balancer: Balancer,
    rng: SmallRng,
    started: Instant,
    next_heartbeat: Option<Instant>,
    reported_dropped: u64,
    dropped_total: u64,
    last_drop_report: Option<Instant>,
    /// A crash report waits and nothing was delivered since.
    urgent: bool,
    /// The collectors still to try in a crash report's bypass.
    bypass_left: Vec<usize>,
    pending: bool,
    /// The collector being connected to, or connected.
    current: Option<usize>,
    connected: bool,
    /// The last collector connected to spoke RELP (its session may hold messages).
    last_was_relp: bool,
    /// Waiting for a backoff to end.
    wait_until: Option<Instant>,
    outputs: VecDeque<SenderAction>,
}

impl SenderPolicy {
    /// A policy started at `now`, its random choices from `seed`.
    pub fn new(config: PolicyConfig, seed: u64, now: Instant) -> Result<Self, PolicyError> {
        let balancer = Balancer::new(config.relp.len(), config.backoff, seed)
            .map_err(PolicyError::Collectors)?;
        Ok(Self {
            next_heartbeat: config.heartbeat.map(|period| now + period),
            rng: SmallRng::seed_from_u64(seed.rotate_left(29) ^ 0x5EED),
            config,
            balancer,
            started: now,
            reported_dropped: 0,
            dropped_total: 0,
            last_drop_report: None,
            urgent: false,
            bypass_left: Vec::new(),
            pending: false,
            current: None,
            connected: false,
            last_was_relp: false,
            wait_until: None,
            outputs: VecDeque::new(),
        })
    }

    /// The balancer (which collector is current, failures in a row).
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether to wait for RELP acknowledgements now: some are outstanding and either more
    /// messages wait (the window is what holds them back) or nothing else is left to do.
    pub fn should_wait_for_acks(unacked: usize, batch_empty: bool, queue_empty: bool) -> bool {
        unacked > 0 && (!batch_empty || queue_empty)
    }

    fn is_relp(&self, collector: usize) -> bool {
        self.config.relp.get(collector).copied().unwrap_or(false)
    }

    fn connect(&mut self, collector: usize, bypass: bool) {
        self.current = Some(collector);
        self.wait_until = None;
        let hand_over_relp = self.last_was_relp && !self.is_relp(collector);
        self.outputs.push_back(SenderAction::Connect {
            collector,
            hand_over_relp,
            bypass,
        });
    }

    /// Decides the next connection attempt when not connected and work is pending.
    fn step(&mut self, now: Instant) {
        if self.connected || self.current.is_some() || !self.pending {
            return;
        }
        if let Some(next) = self.bypass_left.pop() {
            return self.connect(next, true);
        }
        match self.balancer.poll(now.as_duration()) {
            Decision::Connect(collector) => self.connect(collector, false),
            Decision::WaitUntil(_) if self.urgent => {
                // A crash report does not wait out a backoff: every collector once, now,
                // starting at a random one.
                self.urgent = false;
                let n = self.config.relp.len();
                let start = self.rng.random_range(0..n.max(1));
                self.bypass_left = (0..n).map(|k| (start + k) % n).rev().collect();
                if let Some(next) = self.bypass_left.pop() {
                    self.connect(next, true);
                }
            }
            Decision::WaitUntil(until) => self.wait_until = Some(Instant::from_duration(until)),
            Decision::Connected(collector) => {
                // The balancer thinks a connection is up that is not: count it lost.
                self.balancer.on_failure(collector, now.as_duration());
                self.wait_until = Some(now);
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if let (Some(due), Some(period)) = (self.next_heartbeat, self.config.heartbeat)
            && due <= now
        {
            self.next_heartbeat = Some(now + period);
            self.outputs.push_back(SenderAction::Heartbeat {
                uptime: now - self.started,
                period,
            });
        }
        if self.connected && self.dropped_total > self.reported_dropped {
            let due = self
                .last_drop_report
                .map_or(now, |last| last + self.config.drop_report_every);
            if due <= now {
                let count = self.dropped_total - self.reported_dropped;
                self.reported_dropped = self.dropped_total;
                self.last_drop_report = Some(now);
                self.outputs.push_back(SenderAction::ReportDrops {
                    count,
                    total: self.dropped_total,
                });
            }
        }
    }
}

impl Machine for SenderPolicy {
    type Input = SenderEvent;
    type Output = SenderAction;

    fn handle(&mut self, now: Instant, event: SenderEvent) {
        match event {
            SenderEvent::Timeout => {}
            SenderEvent::Pending(pending) => self.pending = pending,
            SenderEvent::CrashReport => {
                self.urgent = true;
                self.pending = true;
            }
            SenderEvent::Connected(collector) => {
                if self.current == Some(collector) {
                    self.connected = true;
                    self.bypass_left.clear();
                    self.last_was_relp = self.is_relp(collector);
                    self.balancer.on_connected(collector, now.as_duration());
                }
            }
            SenderEvent::ConnectFailed(collector) | SenderEvent::LinkFailed(collector) => {
                if self.current == Some(collector) {
                    self.current = None;
                    self.connected = false;
                    self.balancer.on_failure(collector, now.as_duration());
                }
            }
            SenderEvent::Delivered(count) => {
                if count > 0 {
                    self.urgent = false;
                }
            }
            SenderEvent::Dropped(total) => self.dropped_total = self.dropped_total.max(total),
        }
        self.on_timers(now);
        self.step(now);
    }

    fn poll_output(&mut self) -> Option<SenderAction> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let drop_report =
            (self.connected && self.dropped_total > self.reported_dropped).then(|| {
                self.last_drop_report
                    .map_or(self.started, |last| last + self.config.drop_report_every)
            });
        [self.next_heartbeat, self.wait_until, drop_report]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn config(relp: Vec<bool>) -> PolicyConfig {
        PolicyConfig {
            relp,
            backoff: BackoffConfig::default(),
            heartbeat: Some(Duration::from_secs(10)),
            drop_report_every: Duration::from_secs(1),
        }
    }

    fn drain(policy: &mut SenderPolicy) -> Vec<SenderAction> {
        core::iter::from_fn(|| policy.poll_output()).collect()
    }

    #[test]
    fn nothing_is_dialled_until_there_is_something_to_send() {
        let mut policy = SenderPolicy::new(config(vec![false, false]), 1, ms(0)).unwrap();
        policy.handle(ms(0), SenderEvent::Timeout);
        assert!(drain(&mut policy).is_empty());
        assert_eq!(
            policy.poll_timeout(),
            Some(ms(10_000)),
            "the first heartbeat"
        );
        policy.handle(ms(5), SenderEvent::Pending(true));
        let actions = drain(&mut policy);
        assert!(matches!(
            actions[..],
            [SenderAction::Connect {
                bypass: false,
                hand_over_relp: false,
                ..
            }]
        ));
    }

    #[test]
    fn failover_tries_the_other_collector_then_backs_off() {
        let mut policy = SenderPolicy::new(config(vec![false, false]), 7, ms(0)).unwrap();
        policy.handle(ms(0), SenderEvent::Pending(true));
        let [
            SenderAction::Connect {
                collector: first, ..
            },
        ] = drain(&mut policy)[..]
        else {
            panic!("no connect")
        };
        policy.handle(ms(1), SenderEvent::ConnectFailed(first));
        let [
            SenderAction::Connect {
                collector: second, ..
            },
        ] = drain(&mut policy)[..]
        else {
            panic!("no failover")
        };
        assert_ne!(first, second, "another collector at once");
        policy.handle(ms(2), SenderEvent::ConnectFailed(second));
        assert!(drain(&mut policy).is_empty(), "a failed round backs off");
        let until = policy.poll_timeout().unwrap();
        assert!(until > ms(2) && until <= ms(102), "{until:?}");
    }

    #[test]
    fn a_crash_report_bypasses_the_backoff_and_tries_each_collector_once() {
        let mut policy = SenderPolicy::new(config(vec![false, false, false]), 3, ms(0)).unwrap();
        policy.handle(ms(0), SenderEvent::Pending(true));
        // Fail a whole round: the policy backs off.
        for t in 1..=3 {
            let [SenderAction::Connect { collector, .. }] = drain(&mut policy)[..] else {
                panic!("no connect at {t}")
            };
            policy.handle(ms(t), SenderEvent::ConnectFailed(collector));
        }
        assert!(drain(&mut policy).is_empty());
        policy.handle(ms(4), SenderEvent::CrashReport);
        let mut tried = Vec::new();
        for t in 5..8 {
            let [
                SenderAction::Connect {
                    collector,
                    bypass: true,
                    ..
                },
            ] = drain(&mut policy)[..]
            else {
                panic!("no bypass connect at {t}")
            };
            tried.push(collector);
            policy.handle(ms(t), SenderEvent::ConnectFailed(collector));
        }
        tried.sort_unstable();
        assert_eq!(tried, vec![0, 1, 2]);
        assert!(drain(&mut policy).is_empty(), "then the backoff again");
    }

    #[test]
    fn leaving_relp_for_another_transport_hands_its_unacknowledged_over() {
        let mut policy = SenderPolicy::new(config(vec![true, false]), 11, ms(0)).unwrap();
        policy.handle(ms(0), SenderEvent::Pending(true));
        let mut connected_relp = false;
        for t in 1..20 {
            match drain(&mut policy)[..] {
                [
                    SenderAction::Connect {
                        collector: 0,
                        hand_over_relp,
                        ..
                    },
                ] if !connected_relp => {
                    assert!(!hand_over_relp);
                    policy.handle(ms(t), SenderEvent::Connected(0));
                    connected_relp = true;
                    policy.handle(ms(t), SenderEvent::LinkFailed(0));
                }
                [
                    SenderAction::Connect {
                        collector: 1,
                        hand_over_relp,
                        ..
                    },
                ] => {
                    assert_eq!(hand_over_relp, connected_relp);
                    if connected_relp {
                        return;
                    }
                    policy.handle(ms(t), SenderEvent::ConnectFailed(1));
                }
                [SenderAction::Connect { collector, .. }] => {
                    policy.handle(ms(t), SenderEvent::ConnectFailed(collector));
                }
                _ => {
                    let at = policy.poll_timeout().unwrap();
                    policy.handle(at, SenderEvent::Timeout);
                }
            }
        }
        panic!("never failed over from RELP");
    }

    #[test]
    fn heartbeats_and_drop_notices_come_on_time() {
        let mut policy = SenderPolicy::new(config(vec![false]), 5, ms(0)).unwrap();
        policy.handle(ms(0), SenderEvent::Pending(true));
        drain(&mut policy);
        policy.handle(ms(1), SenderEvent::Connected(0));
        policy.handle(ms(2), SenderEvent::Dropped(10));
        assert_eq!(
            drain(&mut policy),
            vec![SenderAction::ReportDrops {
                count: 10,
                total: 10
            }]
        );
        policy.handle(ms(500), SenderEvent::Dropped(15));
        assert!(drain(&mut policy).is_empty(), "at most one notice a second");
        assert_eq!(policy.poll_timeout(), Some(ms(1002)));
        policy.handle(ms(1002), SenderEvent::Timeout);
        assert_eq!(
            drain(&mut policy),
            vec![SenderAction::ReportDrops {
                count: 5,
                total: 15
            }]
        );
        policy.handle(ms(10_000), SenderEvent::Timeout);
        assert_eq!(
            drain(&mut policy),
            vec![SenderAction::Heartbeat {
                uptime: Duration::from_secs(10),
                period: Duration::from_secs(10)
            }]
        );
        assert_eq!(policy.poll_timeout(), Some(ms(20_000)));
    }

    #[test]
    fn acks_are_awaited_when_the_window_holds_messages_back_or_nothing_else_is_left() {
        assert!(SenderPolicy::should_wait_for_acks(3, false, false));
        assert!(SenderPolicy::should_wait_for_acks(3, true, true));
        assert!(!SenderPolicy::should_wait_for_acks(3, true, false));
        assert!(!SenderPolicy::should_wait_for_acks(0, false, true));
    }
}
