//! What the client tells the application: replica updates, outputs, errors, disconnects,
//! and (for a [`FleetClient`](crate::FleetClient)) failovers between front-ends.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_conn::Instant;

use bytes::Bytes;
use flotilla_wire::{ErrorCode, Role, WorldId};
use flotilla_world::Position;
use tokio::sync::mpsc;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The front-end closed the connection.
    PeerClosed,
    /// The front-end was silent past the idle timeout.
    Timeout,
    /// The front-end sent a fatal `Error`.
    PeerError {
        /// The error code (for example `ShuttingDown` or `Overloaded`: try another one).
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The front-end broke the protocol; this client sent `Error` and closed.
    Protocol(String),
    /// Reading or writing the socket failed.
    Io(String),
    /// [`Client::close`](crate::Client::close) was called or the client was dropped.
    Closed,
    /// A [`FleetClient`](crate::FleetClient) gave up reconnecting: `failed_rounds` rounds in a
    /// row failed on every front-end of its list (see
    /// [`FailoverPolicy::max_failed_rounds`](crate::FailoverPolicy::max_failed_rounds)).
    GaveUp {
        /// Consecutive rounds in which every front-end failed.
        failed_rounds: u32,
        /// The last connect or handshake error.
        last_error: String,
    },
}

/// One thing that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A whole snapshot replaced the world's replica.
    SnapshotApplied {
        /// The world.
        world: WorldId,
        /// The replica's position now.
        position: Position,
        /// When its last frame was read, on the process clock
        /// ([`flotilla_conn::Clock::process`]).
        received: Instant,
    },
    /// The next change batch was applied (count-only mode: received).
    BatchApplied {
        /// The world.
        world: WorldId,
        /// The replica's position now (its seq is the batch's).
        position: Position,
        /// When the frame was read, on the process clock
        /// ([`flotilla_conn::Clock::process`]).
        received: Instant,
    },
    /// The replica lost track (a gap or another epoch); a fresh snapshot was requested.
    Resyncing {
        /// The world.
        world: WorldId,
    },
    /// Output from the world's game server to this session.
    Output {
        /// The world.
        world: WorldId,
        /// Opaque bytes from the game server.
        payload: Bytes,
    },
    /// The world's game server went away (`Unavailable`, or `UnknownWorld` while it is not
    /// back yet): the replica keeps its last state and the world is resubscribed from its
    /// last position after `delay` (see
    /// [`ClientConfig::resubscribe`](crate::ClientConfig::resubscribe)). The subscription
    /// goes on; a `SnapshotApplied` or `BatchApplied` follows once the world answers.
    Resubscribing {
        /// The world.
        world: WorldId,
        /// The code of the front-end's `Unsubscribed`.
        code: ErrorCode,
        /// Resubscribes scheduled since the world last answered (1 for the first).
        attempt: u32,
        /// The jittered delay before this resubscribe.
        delay: Duration,
    },
    /// The front-end ended a subscription for good (not allowed, world unknown, or game
    /// server unavailable with resubscribing disabled); the connection stays open.
    Unsubscribed {
        /// The world.
        world: WorldId,
        /// Why.
        code: ErrorCode,
        /// Detail.
        text: String,
    },
    /// The front-end accepted a join token ([`ClientConfig::join_tokens`]): this
    /// connection may act as `role` in `world` until `expires_unix`. Sent again after every
    /// failover (the tokens are presented on each new connection).
    ///
    /// [`ClientConfig::join_tokens`]: crate::ClientConfig::join_tokens
    Joined {
        /// The token's world.
        world: WorldId,
        /// Player or observer.
        role: Role,
        /// The token's expiry, in seconds since the Unix epoch.
        expires_unix: u64,
    },
    /// The front-end refused a join token (expired, not signed by a key it trusts,
    /// damaged: `text` says which); the connection stays open, without that grant.
    JoinRefused {
        /// The token's world, when the token could be read that far.
        world: Option<WorldId>,
        /// Why (`NotAllowed`).
        code: ErrorCode,
        /// Detail.
        text: String,
    },
    /// The front-end refused an input (it was not forwarded to the game server): the
    /// connection holds no unexpired player token for the world.
    InputRefused {
        /// The world.
        world: WorldId,
        /// Why (`NotAllowed`).
        code: ErrorCode,
        /// Detail.
        text: String,
    },
    /// The connection ended; no more events follow. For a
    /// [`FleetClient`](crate::FleetClient): the fleet client ended (closed, dropped, or
    /// [`DisconnectReason::GaveUp`]); losing one front-end is [`ClientEvent::FrontendLost`].
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// A [`FleetClient`](crate::FleetClient) lost its front-end and is failing over to
    /// another one picked at random. Inputs sent meanwhile are queued (see
    /// [`FleetConfig::max_pending_inputs`](crate::FleetConfig::max_pending_inputs)); the
    /// replicas keep their last state. [`ClientEvent::Reconnected`] follows, or
    /// `Disconnected` if the client gives up or is closed. Failover never waits for the
    /// application: this event is queued without waiting, after the outputs still waiting
    /// for room, and dropped when the event queue is full (counted in
    /// [`FleetStats::events_dropped`](crate::FleetStats)); `FleetClient::frontend_addr`
    /// and `FleetClient::stats` always tell the state.
    FrontendLost {
        /// The front-end's address.
        from: SocketAddr,
        /// The front-end's id from its welcome.
        server_id: String,
        /// Why the connection ended (`PeerError{ShuttingDown}`, `PeerClosed`, `Timeout`, ...).
        reason: DisconnectReason,
    },
    /// A [`FleetClient`](crate::FleetClient) could not connect to a front-end (refused,
    /// timed out, handshake failed); it tries another one, backing off after a round in
    /// which every front-end failed. A notification: dropped when the event queue is full.
    ConnectFailed {
        /// The front-end's address.
        addr: SocketAddr,
        /// What went wrong.
        error: String,
        /// Consecutive rounds in which every front-end failed, so far.
        failed_rounds: u32,
    },
    /// A [`FleetClient`](crate::FleetClient) whose front-ends come from DNS could not
    /// resolve its name (no answer in time, no such name, no A/AAAA record). It keeps the
    /// last good list; before the first one, the round counts as failed (backoff, and
    /// [`FailoverPolicy::max_failed_rounds`](crate::FailoverPolicy::max_failed_rounds)
    /// applies). Counted in [`FleetStats::resolve_failures`](crate::FleetStats). A
    /// notification: dropped when the event queue is full.
    ResolveFailed {
        /// The DNS name.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// A [`FleetClient`](crate::FleetClient) whose front-ends come from DNS resolved a list
    /// with other addresses than before (or its first one): from now on it picks among
    /// these. A notification: dropped when the event queue is full.
    FrontendsResolved {
        /// The DNS name.
        name: String,
        /// The new list, sorted.
        frontends: Vec<SocketAddr>,
    },
    /// A [`FleetClient`](crate::FleetClient) is connected again, with the same session
    /// when `resumed`; every world was re-subscribed from its last position (only the
    /// missing batches come back when the new front-end has them in its ring, a snapshot
    /// otherwise) and the inputs queued meanwhile were sent. Like
    /// [`ClientEvent::FrontendLost`], queued without waiting and dropped (counted) when the
    /// event queue is full.
    Reconnected {
        /// The new front-end's address.
        to: SocketAddr,
        /// The new front-end's id from its welcome.
        server_id: String,
        /// True when the front-end recognised the session token: same session id, and the
        /// game server sees the session move (`SessionOpened` from the new front-end).
        resumed: bool,
        /// Time from the loss of the previous front-end to this welcome.
        after: Duration,
    },
}

/// Events the application must see even when its queue is full: data from the game
/// server, the end of a subscription and the answers about join tokens and refused inputs
/// (the connection that carries them waits for room).
/// The rest are notifications about replicas (whose state the application can always
/// read), connect attempts and failovers (whose state the fleet client's accessors tell):
/// they never wait for the application.
pub(crate) fn is_lossless(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::Output { .. }
            | ClientEvent::Unsubscribed { .. }
            | ClientEvent::Joined { .. }
            | ClientEvent::JoinRefused { .. }
            | ClientEvent::InputRefused { .. }
    )
}

/// The receiving end of a client's events (taken once with
/// [`Client::take_events`](crate::Client::take_events)).
#[derive(Debug)]
pub struct ClientEvents {
    pub(crate) receiver: mpsc::Receiver<ClientEvent>,
}

impl ClientEvents {
    /// Waits for the next event; `None` once the connection is gone and all events read.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.receiver.try_recv().ok()
    }
}
