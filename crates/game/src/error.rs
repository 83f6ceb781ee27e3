//! The one error type of the game-server SDK.

use flotilla_wire::{SessionId, WireError, WorldId};

/// What went wrong in a [`GameServer`](crate::GameServer) call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GameError {
    /// Binding or accepting on the listening socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The world is not hosted here (never added, or removed).
    #[error("world {0} is not hosted by this game server")]
    UnknownWorld(WorldId),
    /// `add_world` for a world that is already hosted (use `WorldHandle::set_info` to
    /// change its description).
    #[error("world {0} is already hosted by this game server")]
    WorldExists(WorldId),
    /// World ids starting with `$` are reserved for worlds published by front-ends.
    #[error("world id {0} is reserved for front-ends (starts with `$`)")]
    ReservedWorldId(WorldId),
    /// No connected front-end carries this session (never seen, closed, or its front-end
    /// went away).
    #[error("session {0:?} is not connected through any front-end")]
    UnknownSession(SessionId),
    /// The front-end carrying the session is closing or exceeded its send budget.
    #[error("the front-end link of session {0:?} is closing")]
    LinkClosing(SessionId),
    /// One entry of a commit could not fit in a frame of the configured maximum length;
    /// nothing of the transaction was applied.
    #[error(
        "entry with a {key_len}-byte key and a {value_len}-byte value exceeds the maximum frame length {max_frame_len}"
    )]
    EntryTooLarge {
        /// The key's length.
        key_len: usize,
        /// The value's length.
        value_len: usize,
        /// The configured maximum frame length.
        max_frame_len: usize,
    },
    /// A world description (`add_world`, `set_info`) or an output payload
    /// (`send_output`) would make a frame longer than the configured maximum, which the
    /// front-ends would refuse by closing the whole link; nothing was sent or changed.
    #[error("{what} makes a {frame_len}-byte frame, over the maximum frame length {max_frame_len}")]
    FrameTooLarge {
        /// What was too large: "world info" or "output payload".
        what: &'static str,
        /// The length of the frame it would make (type byte + body).
        frame_len: usize,
        /// The configured maximum frame length.
        max_frame_len: usize,
    },
    /// A frame could not be encoded (for example an oversized output payload).
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
}
