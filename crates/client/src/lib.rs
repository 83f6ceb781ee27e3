//! The flotilla Rust client SDK (tokio): one connection to one front-end ([`Client`]), or
//! a session kept across a fleet of front-ends with random balancing and failover
//! ([`FleetClient`]).
//!
//! - [`Client::connect`] says `Hello` and keeps the session token of the `Welcome`;
//!   keep-alive answers pings, pings after a quiet interval (nothing sent, or nothing
//!   received with no ping out), and closes after an idle timeout (defaults from
//!   `flotilla-wire`).
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
//! - Join tokens ([`ClientConfig::join_tokens`]): the operator's signed permissions to
//!   play (send inputs) or watch a world, presented after every `Welcome` where the
//!   front-ends check them; answered with [`ClientEvent::Joined`] or
//!   [`ClientEvent::JoinRefused`], and an input the front-end refuses is
//!   [`ClientEvent::InputRefused`].
//! - [`ReplicaMode::CountOnly`] keeps no replica, only per-world [`WorldCounters`] and
//!   receive timestamps: lean observers for fan-out benchmarks.
//!
//! # Fleets: random balancing and failover
//!
//! [`FleetClient::connect`] takes the list of front-end addresses every client of the fleet
//! holds ([`FleetConfig`], [`FrontendSource`]: a fixed list, or every A and AAAA record of
//! one DNS name with a port, [`FleetConfig::from_dns`]), picks one uniformly at random
//! (OS-seeded, or
//! [`FleetConfig::seed`] for tests) and keeps one session ([`ClientSession`]: token,
//! subscriptions, last positions, replicas) across connections. On any failure of the
//! connection in use (closed, reset, ping/idle timeout, `Error{Overloaded}` or
//! `Error{ShuttingDown}` from the front-end) it picks another front-end at random (not the
//! one that just failed while another is untried), says hello with the session token (the
//! front-end resumes the session and the game server sees it move) and re-subscribes every
//! world from its last position: only the missing batches come back when the new
//! front-end has them in its ring, a snapshot otherwise. Connect failures move on to
//! another front-end at once; after a round in which every front-end failed it backs off
//! (full jitter) and gives up after [`FailoverPolicy::max_failed_rounds`] rounds (or never).
//!
//! A DNS list ([`DnsFrontends`]: the system's name servers from `/etc/resolv.conf`, or
//! explicit ones) is resolved at connect and again at the start of every failover round,
//! each resolution asking the name servers (nothing cached, whatever the records' TTL)
//! and bounded by [`DnsFrontends::timeout`], so front-ends added to or removed
//! from DNS are picked up without restarting the client
//! ([`ClientEvent::FrontendsResolved`]). A failed or empty resolution keeps the last good
//! list ([`ClientEvent::ResolveFailed`], [`FleetStats::resolve_failures`]); before the
//! first good list it is a failed round, and `connect` ends with
//! [`ClientError::Unresolved`] once [`FailoverPolicy::max_failed_rounds`] are used up.
//!
//! - The same read and write API as [`Client`] (`subscribe`, `unsubscribe`, `send_input`,
//!   `with_replica`, `digest`, `get`, `position`, `is_waiting`, `take_events`, `close`,
//!   `closed`), plus [`FleetClient::frontend_addr`], [`FleetClient::server_id`] and
//!   [`FleetStats`] (reconnects, failed attempts, ...).
//! - One event stream across connections, with [`ClientEvent::FrontendLost`],
//!   [`ClientEvent::ConnectFailed`] and [`ClientEvent::Reconnected`] (`resumed`, outage
//!   length), plus [`ClientEvent::FrontendsResolved`] and [`ClientEvent::ResolveFailed`]
//!   for a DNS list; [`ClientEvent::Disconnected`] only at the very end (closed, or
//!   [`DisconnectReason::GaveUp`]). Failover never waits for the application: those
//!   events are dropped when its queue is full (counted in [`FleetStats`]); only outputs
//!   and unsubscribes wait, holding back the connection that carries them.
//! - Inputs sent between front-ends are queued up to a bound and sent right after the next
//!   hello; past the bound `send_input` fails with [`ClientError::InputQueueFull`], and the
//!   queue is counted as discarded if the client ends first (see [`FleetStats`]). An input
//!   written to a connection is sent at most once: it is lost, uncounted, when that
//!   connection dies before the front-end forwarded it (a silent death is noticed after
//!   the idle timeout, 1.5 s by default).
//!
//! # One machine, one shell
//!
//! [`Client`] and [`FleetClient`] are the same tokio shell around the same sans-I/O
//! [`ClientMachine`] (`handle(now, input)`, `poll_output()`, `poll_timeout()`): the
//! handshake, keep-alive, session and replicas ([`ClientSession`]), failover
//! ([`Failover`] over [`flotilla_balance::Balancer`], with [`Step::Resolve`] for a DNS
//! list) and the inputs queued between front-ends are all in the machine; a `Client` is
//! the machine over one front-end without failover
//! ([`ClientMachineConfig::reconnect`] off). The shell only connects, resolves, reads,
//! writes, sleeps until the machine's next deadline and delivers events; the simulator
//! (`flotilla-sim`) drives the very same machine over a virtual network.
#![forbid(unsafe_code)]

mod client;
mod config;
mod dns;
mod error;
mod events;
mod failover;
mod fleet;
mod machine;
mod session;
mod shell;
mod tls;

pub use client::{Client, ClientStats};
pub use config::{ClientConfig, ResubscribePolicy};
pub use dns::{DnsFrontends, NameServers};
pub use error::ClientError;
pub use events::{ClientEvent, ClientEvents, DisconnectReason};
pub use failover::{Failover, FailoverPolicy, Step};
pub use fleet::{FleetClient, FleetConfig, FleetStats, FrontendSource};
pub use machine::{AttemptError, ClientInput, ClientMachine, ClientMachineConfig, ClientOutput};
pub use session::{
    ClientSession, Fatal, Handled, HandshakeError, ReplicaMode, Welcomed, WorldCounters,
};
pub use tls::ClientTls;

pub use flotilla_wire::{ErrorCode, Role, WorldId, join_token_from_text};
pub use flotilla_world::Position;
