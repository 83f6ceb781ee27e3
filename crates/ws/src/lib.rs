//! Sans-I/O WebSocket (RFC 6455), the parts a flotilla front-end needs to carry its binary
//! protocol to browsers: the opening handshake, frame encoding and a streaming decoder.
//!
//! No sockets, clocks or tasks: bytes in, values and bytes out. The front-end's tokio shell
//! (and the Rust test clients and benchmarks) do the I/O.
//!
//! - Server handshake: [`parse_request`] reads an HTTP/1.1 request head (`Ok(None)` until it
//!   is complete); [`Request::websocket_key`] is `Some` for a valid upgrade, answered with
//!   [`upgrade_response`] ([`accept_key`] computes `Sec-WebSocket-Accept`). Plain requests
//!   and refused upgrades are answered with [`http_response`]; the error's
//!   [`WsError::http_status`] says which status (400, 405, 426, 431).
//! - Client handshake: [`client_key`], [`client_request`], [`parse_response`].
//! - Frames: [`Opcode`], [`encode_header`] (7/16/64-bit lengths, optional mask),
//!   [`apply_mask`], and the conveniences [`server_frame`], [`client_frame`] and
//!   [`close_payload`].
//! - [`FrameDecoder`]: for a [`Role`], takes bytes in arbitrary pieces and appends the
//!   payload of every binary message to one byte stream (message boundaries are dropped:
//!   the front-end's own framing runs inside), returning Ping, Pong and Close frames as
//!   [`Control`]s. Text messages, wrong masking, reserved bits, bad control frames and bad
//!   fragmentation are [`WsError`]s whose [`close_code`](WsError::close_code) goes into the
//!   Close frame sent before closing. An idle decoder holds no heap memory.
//!
//! No extension (such as permessage-deflate) and no subprotocol is ever negotiated.
//!
//! ```
//! use flotilla_ws::{
//!     Control, FrameDecoder, Opcode, Role, client_frame, client_key, client_request,
//!     parse_request, parse_response, upgrade_response,
//! };
//!
//! // The client asks to upgrade; the server accepts.
//! let key = client_key([42; 16]);
//! let request = client_request("game.example:8080", "/ws", &key);
//! let (parsed, head_len) = parse_request(&request)?.expect("complete head");
//! assert_eq!(head_len, request.len());
//! let server_key = parsed.websocket_key.expect("a valid upgrade");
//! let response = upgrade_response(&server_key);
//! assert_eq!(parse_response(&response, &key)?, Some(response.len()));
//!
//! // The client sends two binary frames and a ping; the server gets one byte stream.
//! let mut wire = client_frame(Opcode::Binary, b"hello, ", [1, 2, 3, 4]);
//! wire.extend(client_frame(Opcode::Ping, b"t=1", [5, 6, 7, 8]));
//! wire.extend(client_frame(Opcode::Binary, b"world", [9, 10, 11, 12]));
//! let mut decoder = FrameDecoder::new(Role::Server, 16);
//! let (mut data, mut controls) = (Vec::new(), Vec::new());
//! for piece in wire.chunks(5) {
//!     decoder.decode(piece, &mut data, &mut controls)?;
//! }
//! assert_eq!(data, b"hello, world");
//! assert_eq!(controls, [Control::Ping(b"t=1".to_vec())]);
//! # Ok::<(), flotilla_ws::WsError>(())
//! ```
#![forbid(unsafe_code)]

mod decoder;
mod error;
mod frame;
mod handshake;

pub use decoder::{Control, DEFAULT_MAX_PENDING_CONTROLS, FrameDecoder, Role};
pub use error::WsError;
pub use frame::{
    MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode, apply_mask, client_frame, close_payload,
    encode_header, server_frame,
};
pub use handshake::{
    MAX_HEADERS, MAX_REQUEST_HEAD, Request, accept_key, client_key, client_request, http_response,
    parse_request, parse_response, upgrade_response,
};

/// Close status codes (RFC 6455 §7.4.1) for Close frames.
pub mod close_code {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: the peer sent a kind of data this endpoint does not accept (text here).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1007: a message's content is invalid (e.g. a Close reason that is not UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: the peer broke this endpoint's policy (e.g. a ping flood).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a peer may send `code` in a Close frame: 1000-1003, 1007-1014 (1012-1014
    /// registered after RFC 6455) and the application ranges 3000-4999. 1004-1006 and 1015
    /// are reserved for local use and never sent.
    #[must_use]
    pub fn may_be_received(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}
