//! The one error type of this crate, and the error codes carried by `Error` frames.

use crate::frame::{Direction, FrameType};

/// Why bytes could not be decoded (or a snapshot reassembled).
///
/// Every variant is fatal for the connection it came from: the shell sends an `Error`
/// frame with [`WireError::code`] and closes that one connection. Nothing else is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix announces a frame longer than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced length (type byte + body).
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The length prefix is 0: a frame needs at least its type byte.
    #[error("empty frame (length 0)")]
    EmptyFrame,
    /// The bytes end before the frame does (one-shot parsing with
    /// [`RawFrame::parse`](crate::RawFrame::parse)).
    #[error("incomplete frame: only {len} bytes")]
    IncompleteFrame {
        /// How many bytes there were.
        len: usize,
    },
    /// The frame type byte is not assigned.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A known frame type that is not allowed on this link in this direction.
    #[error("frame type {frame_type:?} is not allowed from {direction:?}")]
    UnexpectedFrameType {
        /// The frame's type.
        frame_type: FrameType,
        /// The link direction it was decoded for.
        direction: Direction,
    },
    /// The body ended before a field was complete.
    #[error("{frame_type:?} frame truncated in field `{field}`")]
    Truncated {
        /// The frame's type.
        frame_type: FrameType,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes were left after the last field of the body.
    #[error("{frame_type:?} frame has {count} trailing bytes")]
    TrailingBytes {
        /// The frame's type.
        frame_type: FrameType,
        /// How many bytes were left.
        count: usize,
    },
    /// A varint is longer than 10 bytes, overflows 64 bits, or is not minimally encoded.
    #[error("bad varint in field `{field}`")]
    BadVarint {
        /// The field being read.
        field: &'static str,
    },
    /// An integer does not fit its field (for example a version above `u32::MAX`).
    #[error("value out of range in field `{field}`")]
    OutOfRange {
        /// The field being read.
        field: &'static str,
    },
    /// A text field is not valid UTF-8.
    #[error("invalid UTF-8 in field `{field}`")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A tag byte (option, bool, snapshot part) has an unassigned value.
    #[error("bad tag {tag} in field `{field}`")]
    BadTag {
        /// The field being read.
        field: &'static str,
        /// The tag byte found.
        tag: u8,
    },
    /// A world id is empty or longer than [`MAX_WORLD_ID_LEN`](crate::MAX_WORLD_ID_LEN).
    #[error("world id of {len} bytes (must be 1..={max})", max = crate::MAX_WORLD_ID_LEN)]
    BadWorldId {
        /// The id's length in bytes.
        len: usize,
    },
    /// A hello does not start with the protocol magic: not a flotilla peer.
    #[error("bad magic in hello: not a flotilla peer")]
    BadMagic,
    /// Snapshot parts arrived out of order (see [`SnapshotAssembler`](crate::SnapshotAssembler)).
    #[error("snapshot parts out of order: {reason}")]
    SnapshotOutOfOrder {
        /// What was wrong.
        reason: &'static str,
    },
    /// A join token (its bytes or its text form) is not well formed; the fields of its
    /// payload report as the other variants do, with field names starting `token.`.
    #[error("bad join token: {reason}")]
    BadJoinToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A join token of a version this crate does not read.
    #[error("join token version {0} is not supported (version 1 is)")]
    JoinTokenVersion(u8),
    /// A multi-part snapshot grew past the assembler's limit
    /// ([`SnapshotAssembler::with_max_bytes`](crate::SnapshotAssembler::with_max_bytes)).
    #[error("snapshot of more than {max} bytes (at least {bytes})")]
    SnapshotTooLarge {
        /// Bytes counted so far (keys, values and the per-entry overhead
        /// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`](crate::SNAPSHOT_ENTRY_OVERHEAD_BYTES); a
        /// receiver may also count the frames it holds).
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

impl WireError {
    /// The code to put in the `Error` frame sent before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnexpectedFrameType { .. } => ErrorCode::UnexpectedFrame,
            WireError::SnapshotTooLarge { .. } => ErrorCode::Overloaded,
            _ => ErrorCode::Malformed,
        }
    }
}

/// The code of an `Error` frame (a `u16` on the wire). `Error` frames are followed by a
/// close; the same codes also explain an `Unsubscribed` frame, which is not fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ErrorCode {
    /// 1: a frame could not be decoded.
    Malformed,
    /// 2: the peer's protocol version is not supported.
    UnsupportedVersion,
    /// 3: a well-formed frame that is not allowed here or now (wrong direction, or before
    /// the handshake).
    UnexpectedFrame,
    /// 4: a frame exceeded the maximum frame size.
    FrameTooLarge,
    /// 5: no such world.
    UnknownWorld,
    /// 6: the server is full: try another front-end.
    Overloaded,
    /// 7: the peer was silent past the keep-alive timeout.
    Timeout,
    /// 8: the server is shutting down: reconnect elsewhere.
    ShuttingDown,
    /// 9: an internal error of the sender.
    Internal,
    /// 10: the request is not allowed for this session.
    NotAllowed,
    /// 11: the upstream game server of this world went away.
    Unavailable,
    /// 12: this connection's session was resumed on another connection (of this or
    /// another front-end); this one is closed.
    SessionMoved,
    /// Any other code (sent by a newer peer); kept as is.
    Other(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::UnexpectedFrame => 3,
            ErrorCode::FrameTooLarge => 4,
            ErrorCode::UnknownWorld => 5,
            ErrorCode::Overloaded => 6,
            ErrorCode::Timeout => 7,
            ErrorCode::ShuttingDown => 8,
            ErrorCode::Internal => 9,
            ErrorCode::NotAllowed => 10,
            ErrorCode::Unavailable => 11,
            ErrorCode::SessionMoved => 12,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a number on the wire (unassigned numbers give [`ErrorCode::Other`]).
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnexpectedFrame,
            4 => ErrorCode::FrameTooLarge,
            5 => ErrorCode::UnknownWorld,
            6 => ErrorCode::Overloaded,
            7 => ErrorCode::Timeout,
            8 => ErrorCode::ShuttingDown,
            9 => ErrorCode::Internal,
            10 => ErrorCode::NotAllowed,
            11 => ErrorCode::Unavailable,
            12 => ErrorCode::SessionMoved,
            other => ErrorCode::Other(other),
        }
    }
}
