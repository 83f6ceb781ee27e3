//! The balancer: a sans-I/O state machine that says which server to connect to, and when.
//!
//! The shell (the code that owns sockets and timers) drives it with three calls:
//! [`Balancer::poll`] to learn what to do now, [`Balancer::on_connected`] and
//! [`Balancer::on_failure`] to report what happened. Time is a [`Duration`] since any
//! monotonic origin the shell likes; randomness comes from a seeded [`SmallRng`] the
//! balancer owns, so the same seed and the same `(now, event)` sequence replay the same
//! decisions (on the same platform and `rand` version).
//!
//! # Policy
//!
//! * **Uniform first pick.** Every client holds the same server list and picks uniformly
//!   at random; with N clients over K servers each server's share has a relative standard
//!   deviation of `sqrt((K-1)/N)`.
//! * **Rounds.** A round is a pass over the server list. After server `i` fails, the next
//!   pick is uniform among the servers not yet tried in the round, so `i` is never picked
//!   again while another server is untried, and every server is tried at most once per
//!   round.
//! * **Backoff between rounds.** When every server has failed in a round, the next round
//!   starts after a full-jitter delay drawn from `[0, min(cap, base * 2^k)]`, where `k` is
//!   the number of consecutive failed rounds *before* this one (0 for the first backoff,
//!   so its ceiling is `base`). With `immediate_failovers: false` the balancer instead
//!   backs off after every failure, with `k` = consecutive failures - 1.
//! * **Stable connections.** A connection that stayed up at least
//!   [`BackoffConfig::stable_after`] resets everything: losing it counts as the first
//!   failure of a fresh round (immediate failover to another server, no backoff, unless
//!   there is only one server, which then gets a first-level backoff). A connection lost
//!   sooner counts like a failed attempt in the current round, so a server that accepts
//!   and drops at once cannot cause a hot reconnect loop.
//!
//! Stability is judged from timestamps: by [`Balancer::on_failure`] when the connection
//! is lost, or by [`Balancer::poll`] once `now >= connected_at + stable_after`. Until
//! then [`Balancer::consecutive_failures`] still reports the failures that led up to the
//! connection.

use core::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::backoff::BackoffConfig;
use crate::error::Error;
use crate::round::Round;

/// The longest server list a [`Balancer`] accepts (2^20). The balancer keeps two
/// `usize` per server.
pub const MAX_SERVERS: usize = 1 << 20;

/// What the shell should do now, as answered by [`Balancer::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Connect to this server (an index into the shared server list), then report the
    /// outcome with [`Balancer::on_connected`] or [`Balancer::on_failure`]. Repeated by
    /// every `poll` until the outcome is reported: treat it as "an attempt to this server
    /// should be in progress", not as "start another attempt".
    Connect(usize),
    /// Do nothing until this instant (same origin as `now`), then poll again.
    WaitUntil(Duration),
    /// Connected to this server: nothing to do. Report a loss with [`Balancer::on_failure`].
    Connected(usize),
}

/// Where the balancer is in its connect / fail / wait cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next poll picks a server and answers `Connect`.
    ReadyToPick,
    /// An attempt to `server` was asked for and its outcome is not known yet.
    Connecting {
        /// The server being tried.
        server: usize,
    },
    /// Connected to `server` since `since`.
    Connected {
        /// The server connected to.
        server: usize,
        /// When the connection was reported.
        since: Duration,
    },
    /// Backing off: the next attempt may start at `until`.
    Waiting {
        /// End of the backoff delay.
        until: Duration,
    },
}

/// Client-side random balancing over a fixed list of `server_count` servers, with
/// failover rounds and exponential backoff with full jitter. See the module docs for the
/// policy.
///
/// ```
/// use core::time::Duration;
/// use flotilla_balance::{BackoffConfig, Balancer, Decision};
///
/// let mut balancer = Balancer::new(3, BackoffConfig::default(), 42)?;
/// let now = Duration::ZERO;
/// let Decision::Connect(first) = balancer.poll(now) else { unreachable!() };
/// balancer.on_failure(first, now);
/// // Immediate failover to another, untried server.
/// let Decision::Connect(second) = balancer.poll(now) else { unreachable!() };
/// assert_ne!(first, second);
/// balancer.on_connected(second, now);
/// assert_eq!(balancer.poll(now), Decision::Connected(second));
/// # Ok::<(), flotilla_balance::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Balancer {
    /// Backoff and failover settings.
    config: BackoffConfig,
    /// The seeded generator behind every random choice.
    rng: SmallRng,
    /// Servers not yet tried in the current round.
    round: Round,
    /// Where the balancer is in its cycle.
    state: State,
    /// Failures since the last stable connection (saturating).
    consecutive_failures: u32,
    /// Rounds in which every server failed, since the last stable connection (saturating).
    failed_rounds: u32,
    /// Events that did not match the current attempt or connection (saturating).
    ignored_events: u64,
}

impl Balancer {
    /// A balancer over `server_count` servers whose random choices all come from `seed`.
    ///
    /// Give every client its own seed (see `seed_from_os_entropy` with the `std`
    /// feature); never derive seeds from the clock, or clients started together would
    /// pick together. Fails with [`Error::NoServers`] for 0 servers and
    /// [`Error::TooManyServers`] above [`MAX_SERVERS`].
    pub fn new(server_count: usize, config: BackoffConfig, seed: u64) -> Result<Self, Error> {
        if server_count == 0 {
            return Err(Error::NoServers);
        }
        if server_count > MAX_SERVERS {
            return Err(Error::TooManyServers {
                count: server_count,
                max: MAX_SERVERS,
            });
        }
        Ok(Balancer {
            config,
            rng: SmallRng::seed_from_u64(seed),
            round: Round::new(server_count),
            state: State::ReadyToPick,
            consecutive_failures: 0,
            failed_rounds: 0,
            ignored_events: 0,
        })
    }

    /// Like [`Balancer::new`], seeded from the operating system's random source.
    #[cfg(feature = "std")]
    pub fn with_os_entropy(server_count: usize, config: BackoffConfig) -> Result<Self, Error> {
        Balancer::new(server_count, config, crate::seed_from_os_entropy()?)
    }

    /// What to do at `now`: connect somewhere, wait, or nothing (connected).
    ///
    /// Picks a server (consuming randomness) only when a new attempt starts; polling again
    /// before the outcome is reported returns the same `Connect`. A `WaitUntil` whose
    /// instant has passed turns into a `Connect` on this call.
    #[must_use]
    pub fn poll(&mut self, now: Duration) -> Decision {
        match self.state {
            State::Connecting { server } => Decision::Connect(server),
            State::Connected { server, since } => {
                if self.is_stable(since, now) {
                    self.clear_failures();
                }
                Decision::Connected(server)
            }
            State::Waiting { until } if now < until => Decision::WaitUntil(until),
            State::Waiting { .. } | State::ReadyToPick => {
                let server = self.round.pick(&mut self.rng);
                self.state = State::Connecting { server };
                Decision::Connect(server)
            }
        }
    }

    /// Reports that a connection to `server` is established at `now`.
    ///
    /// Accepted for any in-range server, even one the balancer did not ask for (the shell
    /// knows where it is connected). The failure counters are cleared once the connection
    /// proves stable (see [`BackoffConfig::stable_after`]). Out-of-range indices and a
    /// repeated report for the current connection are ignored (counted in
    /// [`Balancer::ignored_events`]).
    pub fn on_connected(&mut self, server: usize, now: Duration) {
        let already_connected =
            matches!(self.state, State::Connected { server: current, .. } if current == server);
        if server >= self.server_count() || already_connected {
            self.ignore_event();
            return;
        }
        self.state = State::Connected { server, since: now };
    }

    /// Reports that the attempt to `server` failed, or that the established connection to
    /// `server` was lost, at `now`.
    ///
    /// Only counts for the current attempt or connection; a report about any other server
    /// (a late report about an older connection, or an out-of-range index) is ignored and
    /// counted in [`Balancer::ignored_events`].
    pub fn on_failure(&mut self, server: usize, now: Duration) {
        let stable_loss = match self.state {
            State::Connecting { server: current } if current == server => false,
            State::Connected {
                server: current,
                since,
            } if current == server => self.is_stable(since, now),
            _ => {
                self.ignore_event();
                return;
            }
        };
        if stable_loss {
            self.clear_failures();
        }
        self.round.mark_tried(server);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let round_failed = self.round.is_exhausted();
        if round_failed {
            self.failed_rounds = self.failed_rounds.saturating_add(1);
            self.round.reset();
        }
        let backoff_exponent = if self.config.immediate_failovers {
            round_failed.then(|| self.failed_rounds - 1)
        } else {
            Some(self.consecutive_failures - 1)
        };
        self.state = match backoff_exponent {
            Some(exponent) => State::Waiting {
                until: now.saturating_add(self.config.delay(&mut self.rng, exponent)),
            },
            None => State::ReadyToPick,
        };
    }

    /// The server currently being tried or connected to; `None` while backing off or
    /// before the first poll.
    pub fn current(&self) -> Option<usize> {
        match self.state {
            State::Connecting { server } | State::Connected { server, .. } => Some(server),
            State::ReadyToPick | State::Waiting { .. } => None,
        }
    }

    /// The server currently connected to, if any.
    pub fn connected(&self) -> Option<usize> {
        match self.state {
            State::Connected { server, .. } => Some(server),
            _ => None,
        }
    }

    /// Failures (attempts and unstable losses) since the last stable connection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Rounds in which every server failed, since the last stable connection.
    pub fn consecutive_failed_rounds(&self) -> u32 {
        self.failed_rounds
    }

    /// How many servers are still untried in the current round.
    pub fn untried_in_round(&self) -> usize {
        self.round.untried_count()
    }

    /// Whether `server` is still untried in the current round (false when out of range).
    pub fn is_untried(&self, server: usize) -> bool {
        self.round.is_untried(server)
    }

    /// How many servers the balancer chooses among.
    pub fn server_count(&self) -> usize {
        self.round.len()
    }

    /// The settings this balancer was built with.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Reports that did not match the current attempt or connection and were ignored.
    pub fn ignored_events(&self) -> u64 {
        self.ignored_events
    }

    /// Whether a connection made at `since` counts as stable at `now`.
    fn is_stable(&self, since: Duration, now: Duration) -> bool {
        now.checked_sub(since)
            .is_some_and(|up| up >= self.config.stable_after)
    }

    /// Forgets past failures after a stable connection: fresh round, no backoff.
    fn clear_failures(&mut self) {
        self.round.reset();
        self.consecutive_failures = 0;
        self.failed_rounds = 0;
    }

    /// Counts an event that was ignored.
    fn ignore_event(&mut self) {
        self.ignored_events = self.ignored_events.saturating_add(1);
    }
}
