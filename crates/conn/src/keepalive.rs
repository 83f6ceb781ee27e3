//! The keep-alive rule of every link (PROTOCOL.md section 7), written once.
//!
//! - **Ping after quiet**: a side that sent nothing for `ping_after_quiet` sends a `Ping`.
//! - **Probe the unheard** (the client's side): a side that heard nothing for
//!   `probe_after_unheard` also pings, unless a ping already went out since the last frame
//!   it received. So a client that keeps sending inputs still hears its front-end (the
//!   pong) well within its silence timeout, a front-end with nothing to say is not taken
//!   for dead, and a client that is receiving a stream sends nothing but the quiet-side
//!   ping its peer needs (traffic in either direction proves liveness: a client receiving
//!   batches does not ping twice a second).
//! - **Close after silence**: nothing received (any whole frame counts, not only `Pong`)
//!   for `close_after_silence` closes the connection. While the owner does not read the
//!   peer ([`KeepAlive::pause`]), its silence does not count.
//!
//! The machine is tiny and owned by a bigger one (a session, a link); the owner tells it
//! what was received and sent, asks [`KeepAlive::deadline`] for its next instant and
//! [`KeepAlive::poll`] what to do when it comes.

use core::time::Duration;

use crate::Instant;

/// The intervals of one side of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeepAliveConfig {
    /// Send a `Ping` after this long without sending anything (so that the peer's
    /// silence timer is fed). Zero disables pings (and probes).
    pub ping_after_quiet: Duration,
    /// Also ping after this long without receiving anything, unless a ping is already out
    /// since the last receive (the client's side of PROTOCOL.md section 7). `None`: no
    /// probes.
    pub probe_after_unheard: Option<Duration>,
    /// Close after this long without receiving anything. [`Duration::MAX`] never closes.
    pub close_after_silence: Duration,
}

impl KeepAliveConfig {
    /// A side that pings when quiet and closes on silence (front-ends, game servers).
    pub const fn new(ping_after_quiet: Duration, close_after_silence: Duration) -> Self {
        Self {
            ping_after_quiet,
            probe_after_unheard: None,
            close_after_silence,
        }
    }

    /// A side that also probes a peer it has not heard from for `probe_after_unheard`
    /// (clients: 0.5 s, with a quiet-side ping every 20 s).
    pub const fn probing(
        probe_after_unheard: Duration,
        ping_after_quiet: Duration,
        close_after_silence: Duration,
    ) -> Self {
        Self {
            ping_after_quiet,
            probe_after_unheard: Some(probe_after_unheard),
            close_after_silence,
        }
    }
}

/// What the owner must do now, from [`KeepAlive::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Send a `Ping` with this nonce (the machine counts it as sent).
    Ping {
        /// 1 for the first ping of the connection, then 2, 3, ...
        nonce: u64,
    },
    /// The peer was silent for `silent_for` (at least `close_after_silence`): close the
    /// connection (with `Error{Timeout}` first, PROTOCOL.md section 8).
    Close {
        /// How long nothing was received.
        silent_for: Duration,
    },
}

/// The text of the `Error{Timeout}` sent when closing for silence, the same on every link:
/// `nothing received for 1.5 s`.
pub fn silence_text(silent_for: Duration) -> alloc::string::String {
    alloc::format!("nothing received for {:.1} s", silent_for.as_secs_f64())
}

/// Keep-alive state of one side of one connection.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeepAlive {
    config: KeepAliveConfig,
    last_received: Instant,
    last_sent: Instant,
    /// A ping went out since the last receive (its pong is due).
    ping_out: bool,
    pings_sent: u64,
    paused: bool,
}

impl KeepAlive {
    /// A connection opened at `now` (counts as heard from and sent to).
    pub fn new(config: KeepAliveConfig, now: Instant) -> Self {
        Self {
            config,
            last_received: now,
            last_sent: now,
            ping_out: false,
            pings_sent: 0,
            paused: false,
        }
    }

    /// The intervals.
    pub fn config(&self) -> &KeepAliveConfig {
        &self.config
    }

    /// Changes the intervals (e.g. pings start once the handshake is done). The deadline
    /// may move earlier: an owner keeping a deadline heap schedules it again.
    pub fn set_config(&mut self, config: KeepAliveConfig) {
        self.config = config;
    }

    /// A whole frame arrived at `now` (partial bytes do not count: a peer that trickles
    /// bytes without ever completing a frame is silent).
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
        self.ping_out = false;
    }

    /// A frame was sent (or queued for sending) at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// The owner stopped reading the peer: its silence no longer counts. A probing side
    /// then pings every `probe_after_unheard` instead of `ping_after_quiet`: it cannot
    /// hear its peer, and a write that fails is the only sign it gets of a peer that
    /// closed or reset the connection.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The owner reads the peer again at `now`: the time it was not read counts as heard.
    /// Moves the silence deadline earlier than while paused: the owner re-schedules.
    pub fn resume(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.last_received = self.last_received.max(now);
        }
    }

    /// When the peer was last heard from.
    pub fn last_received(&self) -> Instant {
        self.last_received
    }

    /// Pings sent so far.
    pub fn pings_sent(&self) -> u64 {
        self.pings_sent
    }

    fn pings_enabled(&self) -> bool {
        !self.config.ping_after_quiet.is_zero()
    }

    fn silence_deadline(&self) -> Option<Instant> {
        if self.paused {
            return None;
        }
        let at = self
            .last_received
            .checked_add(self.config.close_after_silence)?;
        (at != Instant::MAX).then_some(at)
    }

    fn ping_deadline(&self) -> Option<Instant> {
        if !self.pings_enabled() {
            return None;
        }
        let quiet_interval = match self.config.probe_after_unheard {
            Some(probe) if self.paused && !probe.is_zero() => {
                probe.min(self.config.ping_after_quiet)
            }
            _ => self.config.ping_after_quiet,
        };
        let quiet = self.last_sent + quiet_interval;
        match self.config.probe_after_unheard {
            Some(probe) if !self.ping_out && !probe.is_zero() => {
                Some(quiet.min(self.last_received + probe))
            }
            _ => Some(quiet),
        }
    }

    /// The next instant [`poll`](Self::poll) has something to do, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.silence_deadline(), self.ping_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What to do at `now`: close for silence (first), ping, or nothing.
    pub fn poll(&mut self, now: Instant) -> Option<KeepAliveAction> {
        if self.silence_deadline().is_some_and(|at| at <= now) {
            return Some(KeepAliveAction::Close {
                silent_for: now - self.last_received,
            });
        }
        if self.ping_deadline().is_some_and(|at| at <= now) {
            self.pings_sent += 1;
            self.last_sent = now;
            self.ping_out = true;
            return Some(KeepAliveAction::Ping {
                nonce: self.pings_sent,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_quiet_side_pings_and_a_silent_peer_is_closed() {
        let mut k = KeepAlive::new(KeepAliveConfig::new(2000 * MS, 6000 * MS), at(0));
        assert_eq!(k.deadline(), Some(at(2000)));
        assert_eq!(k.poll(at(1999)), None);
        assert_eq!(k.poll(at(2000)), Some(KeepAliveAction::Ping { nonce: 1 }));
        assert_eq!(k.deadline(), Some(at(4000)));
        k.on_sent(at(3000));
        assert_eq!(k.deadline(), Some(at(5000)));
        assert_eq!(k.poll(at(5000)), Some(KeepAliveAction::Ping { nonce: 2 }));
        assert_eq!(k.deadline(), Some(at(6000)));
        assert_eq!(
            k.poll(at(6100)),
            Some(KeepAliveAction::Close {
                silent_for: 6100 * MS
            })
        );
    }

    #[test]
    fn receiving_moves_the_silence_deadline_and_a_non_probing_side_does_not_ping_for_it() {
        let mut k = KeepAlive::new(KeepAliveConfig::new(2000 * MS, 6000 * MS), at(0));
        k.on_sent(at(1900));
        k.on_received(at(5000));
        assert_eq!(k.deadline(), Some(at(3900)));
        k.on_sent(at(3800));
        k.on_sent(at(5700));
        k.on_sent(at(7600));
        k.on_sent(at(9500));
        assert_eq!(k.deadline(), Some(at(11000)));
        assert!(matches!(
            k.poll(at(11000)),
            Some(KeepAliveAction::Close { .. })
        ));
    }

    #[test]
    fn a_paused_probing_side_pings_every_probe_interval_and_is_never_closed() {
        let mut k = KeepAlive::new(
            KeepAliveConfig::probing(500 * MS, 20_000 * MS, 1500 * MS),
            at(0),
        );
        k.on_received(at(100));
        k.pause();
        let mut pings = alloc::vec::Vec::new();
        for t in (100..=3_000).step_by(10) {
            match k.poll(at(t)) {
                Some(KeepAliveAction::Ping { .. }) => pings.push(t),
                Some(KeepAliveAction::Close { .. }) => panic!("closed while paused at {t}"),
                None => {}
            }
        }
        // A ping every 0.5 s of quiet (the first 0.5 s after the connection opened).
        assert_eq!(pings, [500, 1000, 1500, 2000, 2500, 3000]);
        // Reading again: the silence timer runs from the resume, and quiet pings are
        // 20 s apart again (a frame received re-arms the probe).
        k.resume(at(3_000));
        assert_eq!(k.deadline(), Some(at(4_500)));
        k.on_received(at(3_100));
        assert_eq!(k.deadline(), Some(at(3_600)));
        assert_eq!(k.poll(at(3_600)), Some(KeepAliveAction::Ping { nonce: 7 }));
        k.on_received(at(3_700));
        assert_eq!(k.deadline(), Some(at(4_200)));
        k.on_received(at(4_100));
        k.on_received(at(4_500));
        // Hearing the peer all the time, the next ping is the quiet one, 20 s after 3.6 s.
        for t in (4_600..23_600).step_by(100) {
            k.on_received(at(t));
        }
        assert_eq!(k.deadline(), Some(at(23_600)));
    }

    #[test]
    fn a_probing_side_that_keeps_sending_still_pings_once_per_unheard_interval() {
        let mut k = KeepAlive::new(
            KeepAliveConfig::probing(500 * MS, 2000 * MS, 1500 * MS),
            at(0),
        );
        // Sending all the time: the quiet-sending rule never fires, the probe does.
        k.on_sent(at(400));
        assert_eq!(k.deadline(), Some(at(500)));
        assert_eq!(k.poll(at(500)), Some(KeepAliveAction::Ping { nonce: 1 }));
        // A ping is out: no second probe before something is received.
        k.on_sent(at(900));
        k.on_sent(at(1300));
        assert_eq!(k.deadline(), Some(at(1500)));
        assert!(matches!(
            k.poll(at(1500)),
            Some(KeepAliveAction::Close { .. })
        ));
        // Had the pong come, the probe re-arms from it.
        let mut k = KeepAlive::new(
            KeepAliveConfig::probing(500 * MS, 2000 * MS, 1500 * MS),
            at(0),
        );
        k.on_sent(at(400));
        assert_eq!(k.poll(at(500)), Some(KeepAliveAction::Ping { nonce: 1 }));
        k.on_received(at(520));
        k.on_sent(at(900));
        assert_eq!(k.deadline(), Some(at(1020)));
    }

    #[test]
    fn a_side_that_keeps_hearing_its_peer_pings_only_to_feed_the_peers_silence_timer() {
        let mut k = KeepAlive::new(
            KeepAliveConfig::probing(500 * MS, 2000 * MS, 1500 * MS),
            at(0),
        );
        let mut pings = 0;
        // A batch every 100 ms for 10 s, nothing sent by the application.
        for t in (100..=10_000).step_by(100) {
            k.on_received(at(t));
            while let Some(KeepAliveAction::Ping { .. }) = k.poll(at(t)) {
                pings += 1;
            }
        }
        assert_eq!(pings, 5, "one ping per 2 s, not two a second");
    }

    #[test]
    fn paused_silence_does_not_count_and_resuming_counts_as_heard() {
        let mut k = KeepAlive::new(KeepAliveConfig::new(Duration::ZERO, 6000 * MS), at(0));
        k.pause();
        assert_eq!(
            k.deadline(),
            None,
            "pings are disabled and silence is paused"
        );
        assert_eq!(k.poll(at(60_000)), None);
        k.resume(at(60_000));
        assert_eq!(k.deadline(), Some(at(66_000)));
    }

    #[test]
    fn close_after_silence_of_max_never_closes() {
        let mut k = KeepAlive::new(KeepAliveConfig::new(Duration::ZERO, Duration::MAX), at(5));
        assert_eq!(k.deadline(), None);
        assert_eq!(k.poll(Instant::MAX), None);
    }
}
