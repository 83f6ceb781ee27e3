//! The four message enums, one per link direction, and the [`Message`] trait they share.

use bytes::{BufMut, Bytes, BytesMut};
use flotilla_world::{ChangeBatch, Position, Snapshot};

use crate::MAGIC;
use crate::body::{
    SnapshotPart, frame, put_bytes, put_change_batch_body, put_code_text, put_nonce,
    put_snapshot_body, put_subscribe, put_varint, read_change_batch, read_code_text, read_nonce,
    read_snapshot, read_subscribe, read_world,
};
use crate::error::{ErrorCode, WireError};
use crate::frame::{Direction, FrameType, RawFrame, Reader};
use crate::join::Role;
use crate::world_id::WorldId;

/// The id of a client session on the front-end <-> game-server link. Stable across
/// front-ends: a resumed session keeps its id, so the game server sees the session move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionId(pub u64);

/// A message of one link direction: encodes to and decodes from frames.
pub trait Message: Sized {
    /// The direction this message type travels in.
    const DIRECTION: Direction;

    /// The frame type this message is encoded as.
    fn frame_type(&self) -> FrameType;

    /// Appends this message as one whole frame (length prefix included).
    fn encode(&self, out: &mut BytesMut);

    /// This message as one frame in shareable bytes (encode once, clone per receiver).
    fn encode_to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes a frame. Byte fields (keys, values, payloads, tokens) are zero-copy slices of
    /// the frame. Fails on a frame type not allowed in [`Self::DIRECTION`] and on any
    /// malformed body.
    fn decode(frame: &RawFrame) -> Result<Self, WireError>;
}

/// Checks the direction and returns a reader over the body.
fn reader_for(frame: &RawFrame, direction: Direction) -> Result<Reader, WireError> {
    let frame_type = frame.frame_type();
    if !frame_type.allowed(direction) {
        return Err(WireError::UnexpectedFrameType {
            frame_type,
            direction,
        });
    }
    Ok(Reader::new(frame))
}

fn read_magic(reader: &mut Reader) -> Result<(), WireError> {
    let magic = reader.raw(MAGIC.len(), "magic")?;
    if magic.as_ref() == MAGIC {
        Ok(())
    } else {
        Err(WireError::BadMagic)
    }
}

/// Frames a client sends to a front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientToFrontend {
    /// The first frame of a connection.
    Hello {
        /// The protocol version the client speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
        version: u32,
        /// The token of a session to resume (from an earlier `Welcome`), if any.
        session_token: Option<Bytes>,
        /// A free-form name for logs.
        client_name: String,
    },
    /// Keep-alive probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Keep-alive answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Watch a world, resuming from `since` if given.
    Subscribe {
        /// The world.
        world: WorldId,
        /// The last position seen (from an earlier connection), if any.
        since: Option<Position>,
    },
    /// Stop watching a world.
    Unsubscribe {
        /// The world.
        world: WorldId,
    },
    /// Input for a world's game server.
    Input {
        /// The world.
        world: WorldId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// Presents a join token (the operator's permission to play or watch one world),
    /// answered with `Joined` or `Refused`.
    Join {
        /// The token's bytes ([`JoinToken`](crate::JoinToken) decodes them).
        token: Bytes,
    },
    /// A fatal error; the client closes after sending it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
}

impl Message for ClientToFrontend {
    const DIRECTION: Direction = Direction::ClientToFrontend;

    fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello { .. } => FrameType::Hello,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::Subscribe { .. } => FrameType::Subscribe,
            Self::Unsubscribe { .. } => FrameType::Unsubscribe,
            Self::Input { .. } => FrameType::Input,
            Self::Join { .. } => FrameType::Join,
            Self::Error { .. } => FrameType::Error,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        let frame_type = self.frame_type();
        match self {
            Self::Hello {
                version,
                session_token,
                client_name,
            } => frame(out, frame_type, |out| {
                out.put_slice(MAGIC);
                put_varint(out, u64::from(*version));
                match session_token {
                    None => out.put_u8(0),
                    Some(token) => {
                        out.put_u8(1);
                        put_bytes(out, token);
                    }
                }
                put_bytes(out, client_name.as_bytes());
            }),
            Self::Ping { nonce } | Self::Pong { nonce } => {
                frame(out, frame_type, |out| put_nonce(out, *nonce))
            }
            Self::Subscribe { world, since } => {
                frame(out, frame_type, |out| put_subscribe(out, world, *since))
            }
            Self::Unsubscribe { world } => {
                frame(out, frame_type, |out| put_bytes(out, world.as_bytes()))
            }
            Self::Input { world, payload } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_bytes(out, payload);
            }),
            Self::Join { token } => frame(out, frame_type, |out| put_bytes(out, token)),
            Self::Error { code, text } => {
                frame(out, frame_type, |out| put_code_text(out, *code, text))
            }
        }
    }

    fn decode(frame: &RawFrame) -> Result<Self, WireError> {
        let mut reader = reader_for(frame, Self::DIRECTION)?;
        let message = match frame.frame_type() {
            FrameType::Hello => {
                read_magic(&mut reader)?;
                let version = reader.varint_u32("version")?;
                let session_token = if reader.flag("session_token")? {
                    Some(reader.bytes("session_token")?)
                } else {
                    None
                };
                let client_name = reader.text("client_name")?;
                Self::Hello {
                    version,
                    session_token,
                    client_name,
                }
            }
            FrameType::Ping => Self::Ping {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Pong => Self::Pong {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Subscribe => {
                let (world, since) = read_subscribe(&mut reader)?;
                Self::Subscribe { world, since }
            }
            FrameType::Unsubscribe => Self::Unsubscribe {
                world: read_world(&mut reader)?,
            },
            FrameType::Input => Self::Input {
                world: read_world(&mut reader)?,
                payload: reader.bytes("payload")?,
            },
            FrameType::Join => Self::Join {
                token: reader.bytes("token")?,
            },
            FrameType::Error => {
                let (code, text) = read_code_text(&mut reader)?;
                Self::Error { code, text }
            }
            frame_type => return Err(unexpected(frame_type, Self::DIRECTION)),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// Frames a front-end sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendToClient {
    /// The answer to `Hello`.
    Welcome {
        /// The protocol version of this connection.
        version: u32,
        /// The token to resume this session later, on any front-end.
        session_token: Bytes,
        /// True when the hello's token was recognised and the session resumed.
        resumed: bool,
        /// The front-end's id, for logs.
        server_id: String,
    },
    /// Keep-alive probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Keep-alive answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// A snapshot (or part of one) of a subscribed world; may come at any time and
    /// replaces the client's copy (resync).
    Snapshot {
        /// The world.
        world: WorldId,
        /// Which part of the snapshot this frame carries.
        part: SnapshotPart,
        /// The state (or this part's entries).
        snapshot: Snapshot,
    },
    /// The next change batch of a subscribed world.
    ChangeBatch {
        /// The world.
        world: WorldId,
        /// The batch.
        batch: ChangeBatch,
    },
    /// Output from a world's game server to this client.
    Output {
        /// The world.
        world: WorldId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// The front-end ended a subscription (not fatal for the connection).
    Unsubscribed {
        /// The world.
        world: WorldId,
        /// Why (for example [`ErrorCode::UnknownWorld`]).
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
    /// The answer to an accepted `Join`: this connection may act as `role` in `world`
    /// until `expires_unix`.
    Joined {
        /// The token's world.
        world: WorldId,
        /// The token's role.
        role: Role,
        /// The token's expiry, in seconds since the Unix epoch.
        expires_unix: u64,
    },
    /// The front-end refused a client's request (not fatal for the connection): a `Join`
    /// whose token it does not accept, or an `Input` the session may not send.
    Refused {
        /// The frame type of the request refused ([`FrameType::Join`] or
        /// [`FrameType::Input`]).
        request: FrameType,
        /// The world concerned (none for a token too damaged to name one).
        world: Option<WorldId>,
        /// Why (flotilla sends [`ErrorCode::NotAllowed`]).
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
    /// A fatal error; the front-end closes after sending it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
}

impl Message for FrontendToClient {
    const DIRECTION: Direction = Direction::FrontendToClient;

    fn frame_type(&self) -> FrameType {
        match self {
            Self::Welcome { .. } => FrameType::Welcome,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::Snapshot { .. } => FrameType::Snapshot,
            Self::ChangeBatch { .. } => FrameType::ChangeBatch,
            Self::Output { .. } => FrameType::Output,
            Self::Unsubscribed { .. } => FrameType::Unsubscribed,
            Self::Joined { .. } => FrameType::Joined,
            Self::Refused { .. } => FrameType::Refused,
            Self::Error { .. } => FrameType::Error,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        let frame_type = self.frame_type();
        match self {
            Self::Welcome {
                version,
                session_token,
                resumed,
                server_id,
            } => frame(out, frame_type, |out| {
                put_varint(out, u64::from(*version));
                put_bytes(out, session_token);
                out.put_u8(u8::from(*resumed));
                put_bytes(out, server_id.as_bytes());
            }),
            Self::Ping { nonce } | Self::Pong { nonce } => {
                frame(out, frame_type, |out| put_nonce(out, *nonce))
            }
            Self::Snapshot {
                world,
                part,
                snapshot,
            } => frame(out, frame_type, |out| {
                put_snapshot_body(out, world, *part, snapshot)
            }),
            Self::ChangeBatch { world, batch } => frame(out, frame_type, |out| {
                put_change_batch_body(out, world, batch)
            }),
            Self::Output { world, payload } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_bytes(out, payload);
            }),
            Self::Unsubscribed { world, code, text } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_code_text(out, *code, text);
            }),
            Self::Joined {
                world,
                role,
                expires_unix,
            } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                out.put_u8(role.to_u8());
                out.put_u64(*expires_unix);
            }),
            Self::Refused {
                request,
                world,
                code,
                text,
            } => frame(out, frame_type, |out| {
                out.put_u8(*request as u8);
                match world {
                    None => out.put_u8(0),
                    Some(world) => {
                        out.put_u8(1);
                        put_bytes(out, world.as_bytes());
                    }
                }
                put_code_text(out, *code, text);
            }),
            Self::Error { code, text } => {
                frame(out, frame_type, |out| put_code_text(out, *code, text))
            }
        }
    }

    fn decode(frame: &RawFrame) -> Result<Self, WireError> {
        let mut reader = reader_for(frame, Self::DIRECTION)?;
        let message = match frame.frame_type() {
            FrameType::Welcome => Self::Welcome {
                version: reader.varint_u32("version")?,
                session_token: reader.bytes("session_token")?,
                resumed: reader.flag("resumed")?,
                server_id: reader.text("server_id")?,
            },
            FrameType::Ping => Self::Ping {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Pong => Self::Pong {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Snapshot => {
                let (world, part, snapshot) = read_snapshot(&mut reader)?;
                Self::Snapshot {
                    world,
                    part,
                    snapshot,
                }
            }
            FrameType::ChangeBatch => {
                let (world, batch) = read_change_batch(&mut reader)?;
                Self::ChangeBatch { world, batch }
            }
            FrameType::Output => Self::Output {
                world: read_world(&mut reader)?,
                payload: reader.bytes("payload")?,
            },
            FrameType::Unsubscribed => {
                let world = read_world(&mut reader)?;
                let (code, text) = read_code_text(&mut reader)?;
                Self::Unsubscribed { world, code, text }
            }
            FrameType::Joined => {
                let world = read_world(&mut reader)?;
                let tag = reader.u8("role")?;
                let role = Role::from_u8(tag).ok_or(WireError::BadTag { field: "role", tag })?;
                Self::Joined {
                    world,
                    role,
                    expires_unix: reader.u64_be("expires")?,
                }
            }
            FrameType::Refused => {
                let tag = reader.u8("request")?;
                // A request a client can make (v1 refuses `Join` and `Input` only).
                let request = FrameType::from_u8(tag)
                    .filter(|t| t.allowed(Direction::ClientToFrontend))
                    .ok_or(WireError::BadTag {
                        field: "request",
                        tag,
                    })?;
                let world = if reader.flag("world")? {
                    Some(read_world(&mut reader)?)
                } else {
                    None
                };
                let (code, text) = read_code_text(&mut reader)?;
                Self::Refused {
                    request,
                    world,
                    code,
                    text,
                }
            }
            FrameType::Error => {
                let (code, text) = read_code_text(&mut reader)?;
                Self::Error { code, text }
            }
            frame_type => return Err(unexpected(frame_type, Self::DIRECTION)),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// Frames a front-end sends to a game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendToGame {
    /// The first frame of a connection.
    Hello {
        /// The protocol version the front-end speaks.
        version: u32,
        /// The front-end's id, for logs.
        frontend_id: String,
    },
    /// Keep-alive probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Keep-alive answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Send this world's state and changes to this front-end, resuming from `since` if
    /// given (after a reconnect).
    Subscribe {
        /// The world.
        world: WorldId,
        /// The front-end replica's last position, if any.
        since: Option<Position>,
    },
    /// Stop sending this world.
    Unsubscribe {
        /// The world.
        world: WorldId,
    },
    /// A session's input.
    Input {
        /// The world.
        world: WorldId,
        /// The session that sent it.
        session: SessionId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// A session opened on this front-end (new, or resumed from another front-end).
    SessionOpened {
        /// The session.
        session: SessionId,
        /// The client's name from its hello.
        client_name: String,
    },
    /// A session this front-end carries, announced when its link to the game server comes
    /// up (not a resume): registered if the game server does not know it; if another
    /// front-end carries it now, the game server answers `SessionMoved`.
    SessionHeld {
        /// The session.
        session: SessionId,
        /// The client's name from its hello.
        client_name: String,
    },
    /// A session closed on this front-end.
    SessionClosed {
        /// The session.
        session: SessionId,
    },
    /// A fatal error; the front-end closes after sending it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
}

impl Message for FrontendToGame {
    const DIRECTION: Direction = Direction::FrontendToGame;

    fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello { .. } => FrameType::GameHello,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::Subscribe { .. } => FrameType::Subscribe,
            Self::Unsubscribe { .. } => FrameType::Unsubscribe,
            Self::Input { .. } => FrameType::SessionInput,
            Self::SessionOpened { .. } => FrameType::SessionOpened,
            Self::SessionHeld { .. } => FrameType::SessionHeld,
            Self::SessionClosed { .. } => FrameType::SessionClosed,
            Self::Error { .. } => FrameType::Error,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        let frame_type = self.frame_type();
        match self {
            Self::Hello {
                version,
                frontend_id,
            } => frame(out, frame_type, |out| {
                out.put_slice(MAGIC);
                put_varint(out, u64::from(*version));
                put_bytes(out, frontend_id.as_bytes());
            }),
            Self::Ping { nonce } | Self::Pong { nonce } => {
                frame(out, frame_type, |out| put_nonce(out, *nonce))
            }
            Self::Subscribe { world, since } => {
                frame(out, frame_type, |out| put_subscribe(out, world, *since))
            }
            Self::Unsubscribe { world } => {
                frame(out, frame_type, |out| put_bytes(out, world.as_bytes()))
            }
            Self::Input {
                world,
                session,
                payload,
            } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_varint(out, session.0);
                put_bytes(out, payload);
            }),
            Self::SessionOpened {
                session,
                client_name,
            }
            | Self::SessionHeld {
                session,
                client_name,
            } => frame(out, frame_type, |out| {
                put_varint(out, session.0);
                put_bytes(out, client_name.as_bytes());
            }),
            Self::SessionClosed { session } => {
                frame(out, frame_type, |out| put_varint(out, session.0))
            }
            Self::Error { code, text } => {
                frame(out, frame_type, |out| put_code_text(out, *code, text))
            }
        }
    }

    fn decode(frame: &RawFrame) -> Result<Self, WireError> {
        let mut reader = reader_for(frame, Self::DIRECTION)?;
        let message = match frame.frame_type() {
            FrameType::GameHello => {
                read_magic(&mut reader)?;
                Self::Hello {
                    version: reader.varint_u32("version")?,
                    frontend_id: reader.text("frontend_id")?,
                }
            }
            FrameType::Ping => Self::Ping {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Pong => Self::Pong {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Subscribe => {
                let (world, since) = read_subscribe(&mut reader)?;
                Self::Subscribe { world, since }
            }
            FrameType::Unsubscribe => Self::Unsubscribe {
                world: read_world(&mut reader)?,
            },
            FrameType::SessionInput => Self::Input {
                world: read_world(&mut reader)?,
                session: SessionId(reader.varint("session")?),
                payload: reader.bytes("payload")?,
            },
            FrameType::SessionOpened => Self::SessionOpened {
                session: SessionId(reader.varint("session")?),
                client_name: reader.text("client_name")?,
            },
            FrameType::SessionHeld => Self::SessionHeld {
                session: SessionId(reader.varint("session")?),
                client_name: reader.text("client_name")?,
            },
            FrameType::SessionClosed => Self::SessionClosed {
                session: SessionId(reader.varint("session")?),
            },
            FrameType::Error => {
                let (code, text) = read_code_text(&mut reader)?;
                Self::Error { code, text }
            }
            frame_type => return Err(unexpected(frame_type, Self::DIRECTION)),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// Frames a game server sends to a front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameToFrontend {
    /// The answer to `Hello`.
    Welcome {
        /// The protocol version of this connection.
        version: u32,
        /// The game server's id, for logs.
        server_id: String,
    },
    /// Keep-alive probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// Keep-alive answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// This server hosts `world` (sent for each world after `Welcome`, and whenever a world
    /// appears or its description changes).
    WorldAdded {
        /// The world.
        world: WorldId,
        /// The world's description, opaque to the front-end: the directory value.
        info: Bytes,
    },
    /// This server no longer hosts `world` (also the answer to a subscribe to an unknown
    /// world).
    WorldRemoved {
        /// The world.
        world: WorldId,
    },
    /// A snapshot (or part of one) of a subscribed world.
    Snapshot {
        /// The world.
        world: WorldId,
        /// Which part of the snapshot this frame carries.
        part: SnapshotPart,
        /// The state (or this part's entries).
        snapshot: Snapshot,
    },
    /// The next change batch of a subscribed world.
    ChangeBatch {
        /// The world.
        world: WorldId,
        /// The batch.
        batch: ChangeBatch,
    },
    /// Output for one session.
    Output {
        /// The world.
        world: WorldId,
        /// The session to deliver it to.
        session: SessionId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// The session was opened on another front-end (a resume there): this front-end
    /// closes its connection with `Error{SessionMoved}`, if it still has one.
    SessionMoved {
        /// The session.
        session: SessionId,
    },
    /// A fatal error; the game server closes after sending it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        text: String,
    },
}

impl Message for GameToFrontend {
    const DIRECTION: Direction = Direction::GameToFrontend;

    fn frame_type(&self) -> FrameType {
        match self {
            Self::Welcome { .. } => FrameType::GameWelcome,
            Self::Ping { .. } => FrameType::Ping,
            Self::Pong { .. } => FrameType::Pong,
            Self::WorldAdded { .. } => FrameType::WorldAdded,
            Self::WorldRemoved { .. } => FrameType::WorldRemoved,
            Self::Snapshot { .. } => FrameType::Snapshot,
            Self::ChangeBatch { .. } => FrameType::ChangeBatch,
            Self::Output { .. } => FrameType::SessionOutput,
            Self::SessionMoved { .. } => FrameType::SessionMoved,
            Self::Error { .. } => FrameType::Error,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        let frame_type = self.frame_type();
        match self {
            Self::Welcome { version, server_id } => frame(out, frame_type, |out| {
                put_varint(out, u64::from(*version));
                put_bytes(out, server_id.as_bytes());
            }),
            Self::Ping { nonce } | Self::Pong { nonce } => {
                frame(out, frame_type, |out| put_nonce(out, *nonce))
            }
            Self::WorldAdded { world, info } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_bytes(out, info);
            }),
            Self::WorldRemoved { world } => {
                frame(out, frame_type, |out| put_bytes(out, world.as_bytes()))
            }
            Self::Snapshot {
                world,
                part,
                snapshot,
            } => frame(out, frame_type, |out| {
                put_snapshot_body(out, world, *part, snapshot)
            }),
            Self::ChangeBatch { world, batch } => frame(out, frame_type, |out| {
                put_change_batch_body(out, world, batch)
            }),
            Self::Output {
                world,
                session,
                payload,
            } => frame(out, frame_type, |out| {
                put_bytes(out, world.as_bytes());
                put_varint(out, session.0);
                put_bytes(out, payload);
            }),
            Self::SessionMoved { session } => {
                frame(out, frame_type, |out| put_varint(out, session.0))
            }
            Self::Error { code, text } => {
                frame(out, frame_type, |out| put_code_text(out, *code, text))
            }
        }
    }

    fn decode(frame: &RawFrame) -> Result<Self, WireError> {
        let mut reader = reader_for(frame, Self::DIRECTION)?;
        let message = match frame.frame_type() {
            FrameType::GameWelcome => Self::Welcome {
                version: reader.varint_u32("version")?,
                server_id: reader.text("server_id")?,
            },
            FrameType::Ping => Self::Ping {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::Pong => Self::Pong {
                nonce: read_nonce(&mut reader)?,
            },
            FrameType::WorldAdded => Self::WorldAdded {
                world: read_world(&mut reader)?,
                info: reader.bytes("info")?,
            },
            FrameType::WorldRemoved => Self::WorldRemoved {
                world: read_world(&mut reader)?,
            },
            FrameType::Snapshot => {
                let (world, part, snapshot) = read_snapshot(&mut reader)?;
                Self::Snapshot {
                    world,
                    part,
                    snapshot,
                }
            }
            FrameType::ChangeBatch => {
                let (world, batch) = read_change_batch(&mut reader)?;
                Self::ChangeBatch { world, batch }
            }
            FrameType::SessionOutput => Self::Output {
                world: read_world(&mut reader)?,
                session: SessionId(reader.varint("session")?),
                payload: reader.bytes("payload")?,
            },
            FrameType::SessionMoved => Self::SessionMoved {
                session: SessionId(reader.varint("session")?),
            },
            FrameType::Error => {
                let (code, text) = read_code_text(&mut reader)?;
                Self::Error { code, text }
            }
            frame_type => return Err(unexpected(frame_type, Self::DIRECTION)),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// A frame type allowed in `direction` by the table but not handled: cannot happen when
/// the table and the decoders agree (tests check they do), reported rather than panicking.
fn unexpected(frame_type: FrameType, direction: Direction) -> WireError {
    WireError::UnexpectedFrameType {
        frame_type,
        direction,
    }
}
