//! The flotilla wire protocol, sans-I/O: frames, messages and an incremental decoder.
//!
//! Bytes in, messages out; messages in, bytes out. No sockets, clocks or threads: the
//! shells (front-end, game-server SDK, client) own the I/O. The byte layout of every frame,
//! the handshake and the session rules are specified in `PROTOCOL.md` at the repository
//! root.
//!
//! - Framing: `u32` big-endian length (type byte + body), `u8` frame type, body. Frames are
//!   limited to a configurable size ([`DEFAULT_MAX_FRAME_LEN`] by default).
//! - One enum per link direction: [`ClientToFrontend`], [`FrontendToClient`],
//!   [`FrontendToGame`], [`GameToFrontend`], all implementing [`Message`]. Frame type codes
//!   form one code space ([`FrameType`]); a frame type used in several directions has the
//!   same body everywhere, and decoding checks the direction.
//! - [`Decoder`]: bytes in arbitrary chunks in, [`RawFrame`]s out; a malformed frame is a
//!   [`WireError`] whose [`code`](WireError::code) goes into the `Error` frame sent before
//!   closing that one connection.
//! - Join tokens ([`JoinToken`], [`JoinClaims`]): the format of the operator's signed
//!   permission to play or watch one world, carried by the `Join` frame; the signature
//!   (Ed25519) is checked by the front-end, which holds the keys.
//! - Zero copy: decoded keys, values and payloads are slices of the received frame.
//! - Encode once, send many: [`change_batch_frame`] makes one `Bytes` that is cloned for
//!   every observer, and a game server's `ChangeBatch`/`Snapshot` frame is byte for byte a
//!   valid front-end-to-client frame, so a front-end forwards [`RawFrame::as_bytes`]
//!   unchanged.
//!
//! ```
//! use bytes::BytesMut;
//! use flotilla_wire::{Decoder, FrontendToClient, GameToFrontend, Message, WorldId};
//! use flotilla_world::WorldState;
//!
//! // A game server commits a tick and encodes the batch once.
//! let mut world = WorldState::new(1);
//! let mut tx = world.begin();
//! tx.set("ship/1", "10,20");
//! let batch = tx.commit().unwrap();
//! let arena = WorldId::new("arena-1").unwrap();
//! let frame = flotilla_wire::change_batch_frame(&arena, &batch);
//!
//! // The front-end decodes it (arriving in two chunks) ...
//! let mut decoder = Decoder::default();
//! decoder.feed(&frame[..3]);
//! assert!(decoder.next_frame().unwrap().is_none());
//! decoder.feed(&frame[3..]);
//! let raw = decoder.next_frame().unwrap().unwrap();
//! let GameToFrontend::ChangeBatch { world: id, batch: decoded } = GameToFrontend::decode(&raw).unwrap()
//! else { panic!("not a batch") };
//! assert_eq!((id, &decoded), (arena.clone(), &batch));
//!
//! // ... and forwards the very same bytes to every observer.
//! let forwarded = raw.into_bytes();
//! let client_view = FrontendToClient::decode(&flotilla_wire::RawFrame::parse(forwarded, 1 << 20).unwrap()).unwrap();
//! assert_eq!(client_view, FrontendToClient::ChangeBatch { world: arena, batch });
//! ```
#![forbid(unsafe_code)]

mod body;
mod error;
mod frame;
mod join;
mod message;
mod world_id;

use std::time::Duration;

pub use body::{
    PartOutcome, SnapshotAssembler, SnapshotPart, change_batch_frame, encode_change_batch,
    encode_snapshot,
};
pub use bytes;
pub use error::{ErrorCode, WireError};
pub use frame::{DECODER_GROW_STEP, Decoder, Direction, FrameType, RawFrame};
pub use join::{
    JOIN_SIGNATURE_LEN, JOIN_SIGNING_CONTEXT, JOIN_TOKEN_VERSION, JoinClaims, JoinToken,
    MAX_JOIN_SUBJECT_LEN, MAX_JOIN_TOKEN_LEN, Role, join_token_from_text, join_token_to_text,
};
pub use message::{
    ClientToFrontend, FrontendToClient, FrontendToGame, GameToFrontend, Message, SessionId,
};
pub use world_id::WorldId;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The 4 bytes that open every hello body: `FLTL`.
pub const MAGIC: &[u8; 4] = b"FLTL";

/// The frame header: 4 bytes of length, 1 byte of type.
pub const HEADER_LEN: usize = 5;

/// The default maximum frame length (type byte + body): 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

/// The default limit of one reassembled snapshot's memory (keys, values and
/// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`] per entry): 256 MiB.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: usize = 256 << 20;

/// Bytes charged per snapshot entry on top of its key and value when a
/// [`SnapshotAssembler`] enforces its limit: at least the in-memory cost of one entry (a
/// key and a value `Bytes`, 32 bytes each on 64-bit targets), so that entries with empty
/// keys and values (2 bytes on the wire) cannot hold unbounded memory.
pub const SNAPSHOT_ENTRY_OVERHEAD_BYTES: usize = 64;

/// Recommended maximum frame length of a client's frames to its front-end: 64 KiB.
pub const CLIENT_MAX_FRAME_LEN: usize = 64 << 10;

/// Recommended maximum length of a client's first frame (its `Hello`): 4 KiB.
pub const HELLO_MAX_FRAME_LEN: usize = 4 << 10;

/// The longest world id, in bytes.
pub const MAX_WORLD_ID_LEN: usize = 255;

/// Recommended: a client pings its front-end after this long without *receiving*
/// anything (unless a ping is already out), so that a healthy front-end is heard from
/// (its `Pong`, if nothing else) at least this often.
pub const CLIENT_PING_INTERVAL: Duration = Duration::from_millis(500);

/// Recommended: a client also pings after this long without *sending* anything, so that
/// the front-end's frame-silence backstop ([`FRONTEND_CLIENT_IDLE_TIMEOUT`], 60 s) is fed.
/// A front-end learns that a client vanished from its own kernel
/// ([`FRONTEND_CLIENT_TRANSPORT_TIMEOUT`]), so a client receiving a stream sends one ping
/// every 20 s and nothing more.
pub const CLIENT_QUIET_PING_INTERVAL: Duration = Duration::from_secs(20);

/// Recommended: a client gives its front-end up (and fails over to another) after this
/// long without receiving anything: three missed pings. Short, because a client must be
/// carrying on elsewhere within a second or two of its front-end dying, and a front-end
/// that dies with its machine or behind a partition sends no reset: silence is all the
/// client gets.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Recommended: a front-end pings a client after this long without sending it anything.
/// Its kernel watches the connection meanwhile ([`FRONTEND_CLIENT_TRANSPORT_TIMEOUT`]),
/// and a client that needs to hear its front-end sooner probes it
/// ([`CLIENT_PING_INTERVAL`]): the ping only keeps a quiet connection's frames flowing
/// through proxies and middleboxes. (2 s until the kernel took over watching clients: at
/// 100,000 observers the deadlines of those pings cost a front-end more than the pings.)
pub const FRONTEND_PING_INTERVAL: Duration = Duration::from_secs(20);

/// Recommended: a front-end's kernel sends the first TCP keep-alive probe on a client
/// connection after this long without traffic (then one a second), so that a client that
/// vanished from a quiet connection is noticed within [`FRONTEND_CLIENT_TRANSPORT_TIMEOUT`]
/// of it, about 8 s after it vanished.
pub const FRONTEND_CLIENT_PROBE_AFTER: Duration = Duration::from_secs(2);

/// Recommended: a front-end closes a client connection that has not sent its `Hello`
/// this long after it was accepted.
pub const FRONTEND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(6);

/// Recommended: a front-end's kernel closes a client connection whose TCP has gone this
/// long without acknowledging anything: data the front-end sent (`TCP_USER_TIMEOUT`), or,
/// on a quiet connection, TCP keep-alive probes (the first after
/// [`FRONTEND_CLIENT_PROBE_AFTER`] of quiet, then one a second). A client that vanished (its
/// machine died, its network went away) is so noticed in about 6 s at no cost to the
/// front-end's process or to a client that is alive: the acknowledgements are TCP's own.
pub const FRONTEND_CLIENT_TRANSPORT_TIMEOUT: Duration = Duration::from_secs(6);

/// Recommended: a front-end closes a welcomed client connection after this long without
/// receiving a frame. A backstop for what the kernel cannot see (a client behind a proxy
/// whose TCP answers for it): the vanished client is found by
/// [`FRONTEND_CLIENT_TRANSPORT_TIMEOUT`], long before.
pub const FRONTEND_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Recommended: a front-end and a game server ping each other after this long without
/// sending anything.
pub const GAME_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Recommended: a front-end or game server closes their link after this long without
/// receiving anything.
pub const GAME_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
