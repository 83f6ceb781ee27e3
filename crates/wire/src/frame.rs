//! Framing: frame types, link directions, raw frames and the incremental decoder.
//!
//! A frame is `length: u32 big-endian` (counting the type byte and the body, not itself),
//! `type: u8`, then the body.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::WireError;
use crate::{DEFAULT_MAX_FRAME_LEN, HEADER_LEN};

/// The direction of a link a frame travels on. Each direction has its own message enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to front-end ([`ClientToFrontend`](crate::ClientToFrontend)).
    ClientToFrontend,
    /// Front-end to client ([`FrontendToClient`](crate::FrontendToClient)).
    FrontendToClient,
    /// Front-end to game server ([`FrontendToGame`](crate::FrontendToGame)).
    FrontendToGame,
    /// Game server to front-end ([`GameToFrontend`](crate::GameToFrontend)).
    GameToFrontend,
}

macro_rules! frame_types {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => [$($dir:ident),+] ),+ $(,)?) => {
        /// The type byte of a frame. One code space for all links: a code means the same
        /// frame (same body layout) wherever it is allowed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum FrameType {
            $( $(#[$doc])* $name = $code, )+
        }

        impl FrameType {
            /// The frame type of a type byte, if assigned.
            pub fn from_u8(code: u8) -> Option<FrameType> {
                match code {
                    $( $code => Some(FrameType::$name), )+
                    _ => None,
                }
            }

            /// True when this frame type may travel in `direction`.
            pub fn allowed(self, direction: Direction) -> bool {
                match self {
                    $( FrameType::$name => matches!(direction, $(Direction::$dir)|+), )+
                }
            }

            /// Every assigned frame type.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$name),+];
        }
    };
}

frame_types! {
    /// 0x01 client hello: magic, version, optional session token, client name.
    Hello = 0x01 => [ClientToFrontend],
    /// 0x02 welcome to a client: version, session token, resumed flag, server id.
    Welcome = 0x02 => [FrontendToClient],
    /// 0x03 keep-alive probe: nonce.
    Ping = 0x03 => [ClientToFrontend, FrontendToClient, FrontendToGame, GameToFrontend],
    /// 0x04 keep-alive answer: the ping's nonce.
    Pong = 0x04 => [ClientToFrontend, FrontendToClient, FrontendToGame, GameToFrontend],
    /// 0x05 fatal error: code and text, then the sender closes.
    Error = 0x05 => [ClientToFrontend, FrontendToClient, FrontendToGame, GameToFrontend],
    /// 0x10 subscribe to a world, optionally resuming from a position.
    Subscribe = 0x10 => [ClientToFrontend, FrontendToGame],
    /// 0x11 unsubscribe from a world.
    Unsubscribe = 0x11 => [ClientToFrontend, FrontendToGame],
    /// 0x12 snapshot (or one part of a snapshot) of a world.
    Snapshot = 0x12 => [FrontendToClient, GameToFrontend],
    /// 0x13 change batch of a world.
    ChangeBatch = 0x13 => [FrontendToClient, GameToFrontend],
    /// 0x14 input from a client to a world's game server.
    Input = 0x14 => [ClientToFrontend],
    /// 0x15 output from a world's game server to this client.
    Output = 0x15 => [FrontendToClient],
    /// 0x16 the front-end ended a subscription (world removed, unknown, not allowed).
    Unsubscribed = 0x16 => [FrontendToClient],
    /// 0x17 a client presents a join token (see [`JoinToken`](crate::JoinToken)).
    Join = 0x17 => [ClientToFrontend],
    /// 0x18 the front-end accepted a join token: world, role, expiry.
    Joined = 0x18 => [FrontendToClient],
    /// 0x19 the front-end refused a client's `Join` or `Input` (not fatal).
    Refused = 0x19 => [FrontendToClient],
    /// 0x20 front-end hello to a game server: magic, version, front-end id.
    GameHello = 0x20 => [FrontendToGame],
    /// 0x21 game server welcome: version, server id.
    GameWelcome = 0x21 => [GameToFrontend],
    /// 0x22 the game server hosts a world (or updates its description).
    WorldAdded = 0x22 => [GameToFrontend],
    /// 0x23 the game server no longer hosts a world.
    WorldRemoved = 0x23 => [GameToFrontend],
    /// 0x24 a session's input forwarded to the game server.
    SessionInput = 0x24 => [FrontendToGame],
    /// 0x25 output for one session, from the game server.
    SessionOutput = 0x25 => [GameToFrontend],
    /// 0x26 a client session opened (or moved) on this front-end.
    SessionOpened = 0x26 => [FrontendToGame],
    /// 0x27 a client session closed on this front-end.
    SessionClosed = 0x27 => [FrontendToGame],
    /// 0x28 the session was opened on another front-end: close its connection here.
    SessionMoved = 0x28 => [GameToFrontend],
    /// 0x29 a session this front-end carries, announced when its game link comes up.
    SessionHeld = 0x29 => [FrontendToGame],
}

/// One complete, framed but not yet decoded frame: the exact bytes received.
///
/// [`as_bytes`](Self::as_bytes) is the whole frame (length prefix included), ready to be
/// forwarded unchanged: a game server's `ChangeBatch` or `Snapshot` frame is byte for byte
/// a valid front-end-to-client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    bytes: Bytes,
    frame_type: FrameType,
}

impl RawFrame {
    /// Parses exactly one whole frame from `bytes` (no more, no less).
    pub fn parse(bytes: Bytes, max_frame_len: usize) -> Result<RawFrame, WireError> {
        let mut decoder = Decoder::new(max_frame_len);
        decoder.feed(&bytes);
        match decoder.next_frame()? {
            Some(frame) if decoder.buffered_len() == 0 => Ok(frame),
            Some(frame) => Err(WireError::TrailingBytes {
                frame_type: frame.frame_type,
                count: decoder.buffered_len(),
            }),
            None => Err(WireError::IncompleteFrame { len: bytes.len() }),
        }
    }

    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// The whole frame, length prefix included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole frame, length prefix included.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The body (after the length and type), sharing the frame's memory.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN.min(self.bytes.len())..)
    }

    /// The whole frame's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of this frame in an allocation of its own, exactly its length.
    ///
    /// A frame from a [`Decoder`] shares the (much larger) buffer it was read into, and so
    /// does everything decoded from it: a receiver that keeps a frame, or keys and values
    /// decoded from it, past the current read should keep those of the copy, so that a
    /// small frame does not pin a whole read buffer.
    pub fn to_compact(&self) -> RawFrame {
        RawFrame {
            bytes: Bytes::copy_from_slice(&self.bytes),
            frame_type: self.frame_type,
        }
    }

    /// Always false: a frame holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The most bytes the decoder reserves at once for a frame still arriving.
pub const DECODER_GROW_STEP: usize = 16 << 10;

/// The incremental frame decoder of one connection: bytes in (in any chunks), frames out.
///
/// Frames come out as [`RawFrame`]s that share the decoder's buffer (no copy); decode them
/// with [`Message::decode`](crate::Message::decode) or use
/// [`next_message`](Self::next_message). After the first error the decoder is poisoned and
/// returns that error again: the connection must be closed.
///
/// An idle decoder holds no allocation until bytes arrive; call
/// [`release_idle_buffer`](Self::release_idle_buffer) when a connection goes quiet.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_frame_len: usize,
    poisoned: Option<WireError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    /// A decoder accepting frames of up to `max_frame_len` bytes (type byte + body).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len,
            poisoned: None,
        }
    }

    /// The maximum frame length accepted.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the maximum frame length for the frames still to come (for example a small
    /// limit until the handshake, a larger one after it).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len;
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The receive buffer, to read from a socket straight into it (for example with
    /// `read_buf`). Bytes appended here are decoded like fed ones.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Frees the receive buffer's memory if no partial frame is pending. Returns true if
    /// the buffer is now empty.
    pub fn release_idle_buffer(&mut self) -> bool {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            true
        } else {
            false
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error.
    ///
    /// Oversize lengths and unknown frame types are reported as soon as the header has
    /// arrived, before the body.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, WireError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        let Some(prefix) = self.buf.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok()) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(prefix);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(self.poison(WireError::EmptyFrame));
        }
        if len > self.max_frame_len {
            return Err(self.poison(WireError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            }));
        }
        let Some(code) = self.buf.get(HEADER_LEN - 1).copied() else {
            return Ok(None);
        };
        let Some(frame_type) = FrameType::from_u8(code) else {
            return Err(self.poison(WireError::UnknownFrameType(code)));
        };
        let total = 4 + len;
        if self.buf.len() < total {
            // Grow toward the rest of this frame a step at a time: a peer announcing a large
            // frame pins memory only as fast as it actually sends bytes.
            let missing = total - self.buf.len();
            self.buf.reserve(missing.min(DECODER_GROW_STEP));
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        Ok(Some(RawFrame { bytes, frame_type }))
    }

    /// The next complete frame decoded as message type `M`.
    pub fn next_message<M: crate::Message>(&mut self) -> Result<Option<M>, WireError> {
        let Some(frame) = self.next_frame()? else {
            return Ok(None);
        };
        M::decode(&frame)
            .map(Some)
            .map_err(|error| self.poison(error))
    }

    fn poison(&mut self, error: WireError) -> WireError {
        self.poisoned = Some(error.clone());
        error
    }
}

/// Reads the fields of one frame body, each a zero-copy slice of the frame.
pub(crate) struct Reader {
    buf: Bytes,
    frame_type: FrameType,
}

impl Reader {
    pub(crate) fn new(frame: &RawFrame) -> Self {
        Self::over(frame.body(), frame.frame_type)
    }

    /// A reader over `buf`, a field of a frame of type `frame_type` (a join token inside a
    /// `Join`): its errors name that frame type.
    pub(crate) fn over(buf: Bytes, frame_type: FrameType) -> Self {
        Self { buf, frame_type }
    }

    fn truncated(&self, field: &'static str) -> WireError {
        WireError::Truncated {
            frame_type: self.frame_type,
            field,
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        if self.buf.is_empty() {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u64_be(&mut self, field: &'static str) -> Result<u64, WireError> {
        if self.buf.len() < 8 {
            return Err(self.truncated(field));
        }
        Ok(self.buf.get_u64())
    }

    pub(crate) fn raw(&mut self, len: usize, field: &'static str) -> Result<Bytes, WireError> {
        if self.buf.len() < len {
            return Err(self.truncated(field));
        }
        Ok(self.buf.split_to(len))
    }

    /// An unsigned LEB128 varint: at most 10 bytes, minimal, fits 64 bits.
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for index in 0..10u32 {
            let byte = self.u8(field)?;
            let payload = u64::from(byte & 0x7f);
            if index == 9 && byte > 1 {
                return Err(WireError::BadVarint { field });
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(WireError::BadVarint { field });
                }
                return Ok(value);
            }
        }
        Err(WireError::BadVarint { field })
    }

    pub(crate) fn varint_u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        u32::try_from(self.varint(field)?).map_err(|_| WireError::OutOfRange { field })
    }

    pub(crate) fn varint_u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        u16::try_from(self.varint(field)?).map_err(|_| WireError::OutOfRange { field })
    }

    /// A count of items each at least `min_item_len` bytes long, checked against the bytes
    /// left so a lying count cannot make us preallocate.
    pub(crate) fn count(
        &mut self,
        min_item_len: usize,
        field: &'static str,
    ) -> Result<usize, WireError> {
        let count = self.varint(field)?;
        let count = usize::try_from(count).map_err(|_| self.truncated(field))?;
        if count.saturating_mul(min_item_len) > self.buf.len() {
            return Err(self.truncated(field));
        }
        Ok(count)
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len).map_err(|_| self.truncated(field))?;
        self.raw(len, field)
    }

    /// Length-prefixed UTF-8 text.
    pub(crate) fn text(&mut self, field: &'static str) -> Result<String, WireError> {
        let bytes = self.bytes(field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 { field })
    }

    /// A 0/1 tag byte.
    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::BadTag { field, tag }),
        }
    }

    /// Fails if bytes are left.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                frame_type: self.frame_type,
                count: self.buf.len(),
            })
        }
    }
}
