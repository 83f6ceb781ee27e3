//! What the client tells the application: replica updates, outputs, errors, disconnects.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_wire::{ErrorCode, WorldId};
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
        /// When its last frame was read.
        received: Instant,
    },
    /// The next change batch was applied (count-only mode: received).
    BatchApplied {
        /// The world.
        world: WorldId,
        /// The replica's position now (its seq is the batch's).
        position: Position,
        /// When the frame was read.
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
    /// The connection ended; no more events follow.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
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
