//! The flotilla front-end server: sans-I/O machines and the tokio shell that drives them.
//!
//! A front-end sits between clients and game servers. It terminates client connections,
//! routes each client's inputs to the game server hosting the world and the game server's
//! outputs back to the right client, keeps a replica of every watched world, and fans each
//! change batch out to any number of observers, forwarding the game server's frame bytes
//! unchanged (encode once, send many). The wire protocol is `PROTOCOL.md` at the
//! repository root.
//!
//! # Machines (sans-I/O)
//!
//! Every machine is driven only by inputs and by `now` (a [`flotilla_conn::Instant`] on the
//! shell's clock) passed in; randomness comes from a seed. [`Frontend`] implements the
//! workspace's [`flotilla_conn::Machine`] contract: its shell sleeps until
//! [`Frontend::poll_timeout`], with no periodic scan of the connections. Machines address
//! each other by IDs ([`ConnId`], [`GameId`], [`SessionId`](flotilla_wire::SessionId),
//! [`WorldId`](flotilla_wire::WorldId)), never by pointers, so a recorded `(now, input)`
//! stream replays a run exactly.
//!
//! - [`Session`]: one per client connection (handshake, keep-alive, subscriptions, send
//!   budget, the join tokens' grants).
//! - [`GameLink`]: one per game-server connection (handshake, keep-alive).
//! - [`ReplicaMachine`]: one per watched world (replica, catch-up, subscriber states).
//! - [`Router`]: which game server hosts which world, which connection holds which
//!   session.
//! - [`Factory`]: creates a world's replica machine on its first subscriber and destroys
//!   it a grace period after the last one left, emitting the upstream
//!   subscribe/unsubscribe.
//! - [`Directory`]: the `$directory` world, built from the game servers' announcements.
//! - [`Frontend`]: the driver that owns all of them in ID-indexed maps:
//!   [`Frontend::handle`] an [`Input`], then [`Frontend::poll_output`] the [`Output`]s.
//!
//! # Record and replay
//!
//! [`record`]: the shell can write every input it feeds the machine, with its `now`, and
//! a digest of the outputs it takes ([`record::Recorder`], `flotilla frontend --record
//! DIR`); [`record::replay`] re-runs a recording offline and checks every output.
//!
//! # Shell
//!
//! [`server::FrontendServer`] listens for clients, connects to game servers (reconnecting
//! with backoff), and drives one [`Frontend`] from a single event-loop task, batching
//! writes into vectored syscalls.
#![forbid(unsafe_code)]

mod config;
mod directory;
pub mod edge;
mod error;
mod factory;
mod frontend;
mod game_link;
mod ids;
pub mod join;
pub mod record;
mod replica;
mod router;
pub mod server;
mod session;

pub use config::{FrontendConfig, TokenKey};
pub use directory::Directory;
pub use edge::{EdgeConfig, GameTls, TlsFiles};
pub use error::FrontendError;
pub use factory::{Factory, FactoryEvent};
pub use frontend::{COALESCE_AFTER_WAITING, CloseReason, Frontend, Input, Output, Stats};
pub use game_link::{GameLink, GameLinkEvent, GameLinkKeeper, Heard, KeeperAction, LinkState};
pub use ids::{
    ConnId, GameId, IdBuildHasher, IdHasher, KeyedIdBuildHasher, KeyedIdHasher, SeededRng,
};
pub use join::{JoinKey, JoinSigner};
pub use replica::{BatchOutcome, ReplicaMachine, Serve, SnapshotProgress, SubscriberState, TopUp};
pub use router::{Router, WorldChange};
pub use server::{FrontendServer, ServerStats, StatsSnapshot, raise_descriptor_limit};
pub use session::{
    Grant, JOIN_BURST, JOINS_PER_SECOND, MAX_GRANTS_PER_CONNECTION, Offer, Session, SessionEvent,
    SessionPhase, Subscriptions, Traffic,
};
