//! Counters a game server exposes: what it sent to each front-end, and totals.

use std::net::SocketAddr;

use crate::events::FrontendId;

/// What was written to one connected front-end since it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendStats {
    /// Its id here.
    pub frontend: FrontendId,
    /// The id it gave in its hello.
    pub name: String,
    /// Its address.
    pub peer: SocketAddr,
    /// The worlds it is subscribed to.
    pub subscriptions: usize,
    /// `ChangeBatch` frames written (live and catch-up). With one subscribed world this is
    /// one per commit, whatever the number of observers behind the front-end.
    pub batches_sent: u64,
    /// Snapshots written (a multi-part snapshot counts once).
    pub snapshots_sent: u64,
    /// Frames written, of every type.
    pub frames_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
}

/// A game server's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameStats {
    /// Per connected front-end, by id.
    pub frontends: Vec<FrontendStats>,
    /// Non-empty commits over all worlds.
    pub batches_committed: u64,
    /// `ChangeBatch` frames written to all front-ends since start.
    pub batches_sent: u64,
    /// Snapshots written to all front-ends since start.
    pub snapshots_sent: u64,
    /// Frames written to all front-ends since start.
    pub frames_sent: u64,
    /// Bytes written to all front-ends since start.
    pub bytes_sent: u64,
    /// Events dropped because the event queue was full (or never taken and full).
    pub events_dropped: u64,
}
