//! The flotilla Rust client SDK (tokio), minimal: one connection to one given front-end.
//!
//! - [`Client::connect`] says `Hello` and keeps the session token of the `Welcome`;
//!   keep-alive answers pings, pings after a quiet interval, and closes after an idle
//!   timeout (defaults from `flotilla-wire`).
//! - [`Client::subscribe`] / [`unsubscribe`](Client::unsubscribe) watch worlds; each keeps a
//!   local [`Replica`](flotilla_world::Replica) built from snapshots (multi-frame ones
//!   reassembled) and change batches, read with [`Client::digest`], [`Client::get`],
//!   [`Client::with_replica`]. A replica that loses track (gap, new epoch) asks for a fresh
//!   snapshot on its own.
//! - [`Client::send_input`] sends input to a world's game server; outputs, replica updates
//!   and the end of the connection arrive as [`ClientEvent`]s.
//! - When a front-end loses the game server of a watched world (`Unsubscribed{Unavailable}`)
//!   the client keeps the replica and its position and resubscribes from there after a
//!   jittered backoff ([`ResubscribePolicy`], on by default, [`ClientEvent::Resubscribing`]),
//!   so the replica is whole again once the game server is back.
//! - Outputs are never dropped: while the application's event queue is full the client
//!   stops reading its socket (backpressure).
//! - [`ReplicaMode::CountOnly`] keeps no replica, only per-world [`WorldCounters`] and
//!   receive timestamps: lean observers for fan-out benchmarks.
//!
//! Design for failover (next issue): the session state ([`ClientSession`]: token,
//! subscriptions, last positions, replicas) is sans-I/O and separate from the connection
//! (socket, reader and writer tasks). A `connect_any(list)` will keep one
//! `Arc<Mutex<ClientSession>>`, and on a failure pick another front-end at random and call
//! [`Client::over_stream`] with that same session: its hello carries the token and every
//! world is re-subscribed with `since` = its last position, so only missing batches (or a
//! snapshot) come back.
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod events;
mod session;

pub use client::{Client, ClientStats};
pub use config::{ClientConfig, ResubscribePolicy};
pub use error::ClientError;
pub use events::{ClientEvent, ClientEvents, DisconnectReason};
pub use session::{ClientSession, Fatal, Handled, ReplicaMode, WorldCounters};

pub use flotilla_wire::WorldId;
pub use flotilla_world::Position;
