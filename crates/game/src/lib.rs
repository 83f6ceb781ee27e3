//! The flotilla game-server SDK (tokio).
//!
//! A game server owns worlds (keyed maps with an epoch and a seq, see `flotilla-world`)
//! and serves the front-ends that dial it, speaking the front-end <-> game-server link of
//! `PROTOCOL.md` (`flotilla-wire`).
//!
//! - [`GameServer::bind`] listens; each front-end connection does the
//!   `GameHello`/`GameWelcome` handshake, gets a `WorldAdded` per hosted world, and is kept
//!   alive with pings after a quiet interval and closed after an idle timeout.
//! - [`GameServer::add_world`] / [`remove_world`](GameServer::remove_world) host worlds and
//!   announce them to every front-end, now and later. Each world starts a fresh history
//!   with a random epoch from OS entropy.
//! - The game loop commits one transaction per tick on a [`WorldHandle`]:
//!   `let mut tx = world.begin(); tx.set(k, v); tx.commit()?;`. Each commit's
//!   `ChangeBatch` is **encoded once** and the same bytes are queued **once per subscribed
//!   front-end** (the front-ends fan out to observers), and kept in a bounded ring.
//! - A front-end's `Subscribe{world, since}` gets exactly the missing batches from the ring
//!   when it can, otherwise a (possibly multi-part) snapshot, then live batches.
//! - Inputs and session changes arrive as [`GameEvent`]s ([`GameServer::take_events`]);
//!   [`GameServer::send_output`] routes an output through the front-end that most recently
//!   carried the session.
//!
//! The rules live in sans-I/O machines ([`machine`]): a link's handshake, pings and
//! keep-alive ([`machine::FrontendLink`]), which front-end carries each session
//! ([`machine::SessionRegistry`]) and what a subscribing front-end is sent
//! ([`machine::subscribe_frames`]); the simulator runs the same machines.
//!
//! Design: per front-end link, one reader task (decode, keep-alive deadline, subscribe,
//! route inputs) and one writer task draining an outbox: every frame queued since the last
//! write goes out in one gathered write (up to 64 KiB per syscall). Worlds, links and
//! sessions live in a registry behind a mutex; each world has its own mutex, so commits of
//! different worlds do not contend. Logs go through the `log` facade.
#![forbid(unsafe_code)]

mod config;
mod connection;
mod error;
mod events;
pub mod machine;
mod server;
mod stats;
mod world;

pub use config::GameConfig;
pub use error::GameError;
pub use events::{FrontendId, GameEvent, GameEvents};
pub use server::GameServer;
pub use stats::{FrontendStats, GameStats};
pub use world::{GameTransaction, WorldHandle};

pub use flotilla_wire::{SessionId, WorldId};
pub use flotilla_world::Position;
