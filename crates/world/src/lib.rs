//! The flotilla world state model: pure data structures, no I/O.
//!
//! A *world* is a keyed map (`key -> value`, both opaque [`Bytes`]) with an **epoch** and a
//! **sequence number**:
//!
//! - each committed [`ChangeBatch`] (upserts and removes) has `seq + 1`;
//! - the epoch is chosen by the authority (the game server) whenever a new history starts
//!   (for example at every start of the process: random or time-derived), so a subscriber
//!   resuming from `(epoch, seq)` never mistakes a new history for the old one.
//!
//! The pieces:
//!
//! - [`WorldState`]: the authoritative world (game-server side). Mutate it in a
//!   [`Transaction`] (`begin`, `set`, `remove`, `commit`); each non-empty commit yields the
//!   [`ChangeBatch`] to publish.
//! - [`Replica`]: a follower (front-end or client side). Applies a [`Snapshot`] and then
//!   batches, keeps a bounded [`BatchRing`] of recent batches (optionally with their encoded
//!   wire frames, so a front-end encodes each batch once), and answers the resume question
//!   with [`Replica::catch_up`].
//! - [`BatchRing`]: the bounded ring of recent batches (bounded by count **and** bytes),
//!   usable on its own next to a [`WorldState`] on the game-server side.
//! - [`digest`](WorldState::digest): a stable 64-bit digest of `(epoch, seq, sorted
//!   entries)` for comparing replicas in tests and demos.
//!
//! ```
//! use flotilla_world::{Position, Replica, ReplicaConfig, WorldState, CatchUp};
//!
//! let mut world = WorldState::new(7);
//! let mut replica = Replica::new(ReplicaConfig::default());
//! replica.apply_snapshot(world.snapshot());
//!
//! let mut tx = world.begin();
//! tx.set("player/1", "x=3,y=4");
//! let batch = tx.commit().expect("one change");
//! assert_eq!((batch.epoch, batch.seq), (7, 1));
//!
//! replica.apply_batch(batch).unwrap();
//! assert_eq!(replica.digest(), world.digest());
//!
//! // A subscriber that saw seq 0 of epoch 7 gets exactly the missing batch.
//! match replica.catch_up(Position { epoch: 7, seq: 0 }) {
//!     CatchUp::Batches(batches) => assert_eq!(batches.len(), 1),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
#![forbid(unsafe_code)]

mod batch;
mod digest;
mod error;
mod replica;
mod ring;
mod state;

pub use batch::{ChangeBatch, ENTRY_OVERHEAD_BYTES, Position, Snapshot};
pub use bytes::Bytes;
pub use digest::digest_entries;
pub use error::WorldError;
pub use replica::{ApplyOutcome, Replica, ReplicaConfig};
pub use ring::{BatchRing, CatchUp, RecentBatch, RingLimits};
pub use state::{Transaction, WorldState};
