//! The one error type of this crate, with the HTTP status or close code to answer it with.

use crate::close_code;

/// Why a handshake or a frame stream was refused.
///
/// Handshake errors ([`WsError::http_status`] is `Some`) are answered with an HTTP error
/// response and the connection is closed. Frame errors are answered with a Close frame
/// carrying [`WsError::close_code`] and the connection is closed. The type is small and
/// `Copy` so the frame decoder can keep the error it failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    // ---- handshake (server side) ----
    /// The bytes are not a well-formed HTTP/1.x request or response head.
    #[error("malformed HTTP head: {0}")]
    MalformedHttp(httparse::Error),
    /// The request or response head is longer than [`MAX_REQUEST_HEAD`](crate::MAX_REQUEST_HEAD).
    #[error("HTTP head longer than {} bytes", crate::MAX_REQUEST_HEAD)]
    HeadTooLarge,
    /// The request method is not `GET` (answer 405 Method Not Allowed).
    #[error("method not allowed (only GET)")]
    MethodNotAllowed,
    /// An upgrade request in HTTP/1.0: WebSocket needs HTTP/1.1.
    #[error("WebSocket upgrade needs HTTP/1.1")]
    UpgradeNeedsHttp11,
    /// An upgrade request whose `Upgrade` header lacks the `websocket` token.
    #[error("upgrade request without `Upgrade: websocket`")]
    MissingUpgradeWebsocket,
    /// An upgrade request whose `Connection` header lacks the `upgrade` token.
    #[error("upgrade request without `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// An upgrade request without a `Sec-WebSocket-Version` header.
    #[error("upgrade request without Sec-WebSocket-Version")]
    MissingWebSocketVersion,
    /// An upgrade request for a WebSocket version other than 13 (answer 426 Upgrade
    /// Required with `Sec-WebSocket-Version: 13`).
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    UnsupportedWebSocketVersion,
    /// An upgrade request whose `Sec-WebSocket-Key` is missing or is not the base64 of 16
    /// bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidWebSocketKey,

    // ---- handshake (client side) ----
    /// The server answered the upgrade request with a status other than 101.
    #[error("server refused the upgrade with status {status}")]
    UpgradeRefused {
        /// The HTTP status the server sent.
        status: u16,
    },
    /// The server's 101 response lacks `Upgrade: websocket` or `Connection: upgrade`.
    #[error("101 response without `Upgrade: websocket` and `Connection: upgrade`")]
    MissingUpgradeHeaders,
    /// The server's `Sec-WebSocket-Accept` is missing or does not match our key.
    #[error("missing or wrong Sec-WebSocket-Accept")]
    WrongAcceptKey,

    // ---- frames ----
    /// A Text message: this endpoint carries binary messages only (close code 1003).
    #[error("text messages are not supported (binary only)")]
    TextMessage,
    /// A server received an unmasked frame: clients must mask every frame (1002).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A client received a masked frame: servers must not mask (1002).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A frame with RSV1, RSV2 or RSV3 set: no extension was negotiated (1002).
    #[error("reserved bits set (0x{0:x}) without a negotiated extension")]
    ReservedBitsSet(u8),
    /// A frame with an opcode RFC 6455 does not define (1002).
    #[error("unknown opcode 0x{0:x}")]
    UnknownOpcode(u8),
    /// A control frame (Close, Ping, Pong) without FIN: control frames cannot be
    /// fragmented (1002).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame with a payload longer than 125 bytes (1002).
    #[error("control frame payload of {0} bytes (maximum 125)")]
    ControlFrameTooLong(u64),
    /// A Continuation frame when no fragmented message is open (1002).
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new Binary (or Text) frame while a fragmented message is still open (1002).
    #[error("new data frame while a fragmented message is unfinished")]
    UnfinishedMessage,
    /// A 64-bit payload length with the most significant bit set (1002).
    #[error("payload length has the most significant bit set")]
    PayloadLengthOverflow,
    /// A Close frame with a 1-byte payload: a code needs two (1002).
    #[error("close frame with a 1-byte payload")]
    CloseFrameTooShort,
    /// A Close frame with a code that may not be sent on the wire (1002).
    #[error("close frame with invalid code {0}")]
    InvalidCloseCode(u16),
    /// A Close frame whose reason is not UTF-8 (1007).
    #[error("close frame reason is not valid UTF-8")]
    InvalidCloseReason,
    /// More control frames arrived in one `decode` call than the decoder's limit allows
    /// (1008: a ping flood).
    #[error("more than {0} control frames pending")]
    TooManyControlFrames(u32),
}

impl WsError {
    /// The close code (RFC 6455 §7.4.1) to put in the Close frame answering this error.
    ///
    /// Handshake errors never reach the frame stage; they map to 1002 (protocol error).
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TextMessage => close_code::UNSUPPORTED_DATA,
            WsError::InvalidCloseReason => close_code::INVALID_PAYLOAD,
            WsError::TooManyControlFrames(_) => close_code::POLICY_VIOLATION,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// The HTTP status a server answers this error with, for errors of
    /// [`parse_request`](crate::parse_request); `None` for every other error.
    ///
    /// 405 for [`MethodNotAllowed`](WsError::MethodNotAllowed) (add `Allow: GET`), 426 for
    /// [`UnsupportedWebSocketVersion`](WsError::UnsupportedWebSocketVersion) (add
    /// `Sec-WebSocket-Version: 13`), 431 for [`HeadTooLarge`](WsError::HeadTooLarge), 400
    /// otherwise.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match self {
            WsError::MethodNotAllowed => Some(405),
            WsError::UnsupportedWebSocketVersion => Some(426),
            WsError::HeadTooLarge => Some(431),
            WsError::MalformedHttp(_)
            | WsError::UpgradeNeedsHttp11
            | WsError::MissingUpgradeWebsocket
            | WsError::MissingConnectionUpgrade
            | WsError::MissingWebSocketVersion
            | WsError::InvalidWebSocketKey => Some(400),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small() {
        assert!(std::mem::size_of::<WsError>() <= 16);
    }

    #[test]
    fn codes_and_statuses() {
        assert_eq!(WsError::TextMessage.close_code(), 1003);
        assert_eq!(WsError::InvalidCloseReason.close_code(), 1007);
        assert_eq!(WsError::TooManyControlFrames(3).close_code(), 1008);
        assert_eq!(WsError::UnmaskedFrame.close_code(), 1002);
        assert_eq!(WsError::MethodNotAllowed.http_status(), Some(405));
        assert_eq!(
            WsError::UnsupportedWebSocketVersion.http_status(),
            Some(426)
        );
        assert_eq!(WsError::InvalidWebSocketKey.http_status(), Some(400));
        assert_eq!(WsError::HeadTooLarge.http_status(), Some(431));
        assert_eq!(WsError::MaskedFrame.http_status(), None);
        assert_eq!(
            WsError::UpgradeRefused { status: 404 }.to_string(),
            "server refused the upgrade with status 404"
        );
    }
}
