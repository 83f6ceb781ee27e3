//! The opening handshake (RFC 6455 §4): HTTP/1.1 upgrade request and `101` response, for
//! both sides, plus plain HTTP responses for requests that are not upgrades.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::WsError;

/// The longest request (or response) head accepted, in bytes, final blank line included.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// The most header lines a request or response head may have.
pub const MAX_HEADERS: usize = 32;

/// The GUID RFC 6455 §1.3 appends to the key before hashing it.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed `GET` request head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The request target as sent (path and query), e.g. `/ws?world=arena`.
    pub path: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The `Sec-WebSocket-Key`: `Some` exactly when the request is a valid WebSocket
    /// upgrade. Answer it with [`upgrade_response`].
    pub websocket_key: Option<String>,
    /// The `Origin` header (browsers send it; check it against the allowed origins).
    pub origin: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `X-Forwarded-For` header (set by a proxy in front of the server).
    pub forwarded_for: Option<String>,
    /// The subprotocols of `Sec-WebSocket-Protocol`, in the client's order (none is
    /// selected by [`upgrade_response`]).
    pub protocols: Vec<String>,
}

impl Request {
    /// Whether this request is a valid WebSocket upgrade (it has a key).
    #[must_use]
    pub fn is_upgrade(&self) -> bool {
        self.websocket_key.is_some()
    }
}

/// Parses an HTTP/1.x request head at the start of `buf` (up to [`MAX_HEADERS`] headers).
///
/// `Ok(None)`: the head is incomplete, call again with more bytes. `Ok(Some((request,
/// consumed)))`: `consumed` bytes form the head; bytes after it belong to the body or, after
/// an upgrade, to the WebSocket frame stream.
///
/// A request that does not ask to upgrade (no `Upgrade: websocket` header and no
/// `Sec-WebSocket-Key`) is a plain request with `websocket_key: None`. A request that does
/// ask but gets the handshake wrong is an error whose [`WsError::http_status`] is the
/// answer: 400, or 426 for a version other than 13. Only `GET` is accepted (otherwise
/// [`WsError::MethodNotAllowed`], answer 405); a head longer than [`MAX_REQUEST_HEAD`] is
/// [`WsError::HeadTooLarge`].
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, WsError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(window).map_err(WsError::MalformedHttp)? {
        httparse::Status::Complete(consumed) => consumed,
        httparse::Status::Partial if buf.len() >= MAX_REQUEST_HEAD => {
            return Err(WsError::HeadTooLarge);
        }
        httparse::Status::Partial => return Ok(None),
    };
    if request.method != Some("GET") {
        return Err(WsError::MethodNotAllowed);
    }
    let mut parsed = Request {
        path: request.path.unwrap_or("/").to_owned(),
        ..Request::default()
    };
    let mut asks_upgrade = false;
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut version: Option<&[u8]> = None;
    let mut key: Option<&[u8]> = None;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("upgrade") {
            if has_token(value, "websocket") {
                asks_upgrade = true;
                upgrade_websocket = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            asks_upgrade = true;
            key.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            parsed.protocols.extend(
                tokens(value)
                    .filter(|token| !token.is_empty())
                    .map(|token| String::from_utf8_lossy(token).into_owned()),
            );
        } else if name.eq_ignore_ascii_case("host") {
            set_once(&mut parsed.host, value);
        } else if name.eq_ignore_ascii_case("origin") {
            set_once(&mut parsed.origin, value);
        } else if name.eq_ignore_ascii_case("user-agent") {
            set_once(&mut parsed.user_agent, value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            set_once(&mut parsed.forwarded_for, value);
        }
    }
    if !asks_upgrade {
        return Ok(Some((parsed, consumed)));
    }
    if request.version != Some(1) {
        return Err(WsError::UpgradeNeedsHttp11);
    }
    if !upgrade_websocket {
        return Err(WsError::MissingUpgradeWebsocket);
    }
    if !connection_upgrade {
        return Err(WsError::MissingConnectionUpgrade);
    }
    match version.map(<[u8]>::trim_ascii) {
        None => return Err(WsError::MissingWebSocketVersion),
        Some(b"13") => {}
        Some(_) => return Err(WsError::UnsupportedWebSocketVersion),
    }
    let key = key
        .map(<[u8]>::trim_ascii)
        .filter(|key| is_valid_key(key))
        .ok_or(WsError::InvalidWebSocketKey)?;
    parsed.websocket_key = Some(String::from_utf8_lossy(key).into_owned());
    Ok(Some((parsed, consumed)))
}

/// Whether `key` is the base64 of exactly 16 bytes (RFC 6455 §4.2.1 item 5).
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && BASE64.decode_slice(key, &mut decoded) == Ok(16)
}

/// Stores a header value the first time the header occurs; later occurrences are ignored.
fn set_once(slot: &mut Option<String>, value: &[u8]) {
    if slot.is_none() {
        *slot = Some(String::from_utf8_lossy(value.trim_ascii()).into_owned());
    }
}

/// The comma-separated elements of a header value, with surrounding whitespace removed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
}

/// Whether the comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): base64 of
/// the SHA-1 of the key followed by the protocol's GUID.
#[must_use]
pub fn accept_key(key: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(context.finish().as_ref())
}

/// The `101 Switching Protocols` response accepting an upgrade request with this
/// `Sec-WebSocket-Key` (no subprotocol, no extension).
#[must_use]
pub fn upgrade_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\
         \r\n",
        accept_key(key)
    )
    .into_bytes()
}

/// A complete HTTP/1.1 response with `Content-Length` and `Connection: close`, for plain
/// requests and refused upgrades.
///
/// `Content-Type` is omitted when `content_type` is empty. `extra_headers` are written as
/// given (e.g. `("Sec-WebSocket-Version", "13")` with a 426, `("Allow", "GET")` with a 405);
/// they must not contain CR or LF.
#[must_use]
pub fn http_response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    head.push_str("Connection: close\r\n");
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    response
}

/// A `Sec-WebSocket-Key` for a client: the base64 of 16 random bytes supplied by the caller.
#[must_use]
pub fn client_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// A client's upgrade request for `ws://{host}{path}` with this key (see [`client_key`]).
#[must_use]
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    )
    .into_bytes()
}

/// Parses the server's response to [`client_request`] at the start of `buf`.
///
/// `Ok(None)`: incomplete, call again with more bytes. `Ok(Some(consumed))`: a `101` with
/// `Upgrade: websocket`, `Connection: upgrade` and the `Sec-WebSocket-Accept` matching
/// `key`; the frame stream starts `consumed` bytes into `buf`. Any other status is
/// [`WsError::UpgradeRefused`].
pub fn parse_response(buf: &[u8], key: &str) -> Result<Option<usize>, WsError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(window).map_err(WsError::MalformedHttp)? {
        httparse::Status::Complete(consumed) => consumed,
        httparse::Status::Partial if buf.len() >= MAX_REQUEST_HEAD => {
            return Err(WsError::HeadTooLarge);
        }
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(WsError::UpgradeRefused { status });
    }
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut accept: Option<&[u8]> = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= has_token(header.value, "websocket");
        } else if header.name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(header.value, "upgrade");
        } else if header.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept.get_or_insert(header.value);
        }
    }
    if !(upgrade_websocket && connection_upgrade) {
        return Err(WsError::MissingUpgradeHeaders);
    }
    match accept {
        Some(accept) if accept.trim_ascii() == accept_key(key).as_bytes() => Ok(Some(consumed)),
        _ => Err(WsError::WrongAcceptKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\n{extra}\r\n",
            extra = extra
        )
    }

    const GOOD_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn rfc_accept_key_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_rfc_upgrade_request() {
        let text = "GET /chat HTTP/1.1\r\n\
            Host: server.example.com\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Origin: http://example.com\r\n\
            Sec-WebSocket-Protocol: chat, superchat\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n\x02\x00";
        let (request, consumed) = parse_request(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(consumed, text.len() - 2);
        assert_eq!(request.path, "/chat");
        assert_eq!(request.host.as_deref(), Some("server.example.com"));
        assert_eq!(request.origin.as_deref(), Some("http://example.com"));
        assert_eq!(request.websocket_key.as_deref(), Some(KEY));
        assert_eq!(request.protocols, ["chat", "superchat"]);
        assert!(request.is_upgrade());
    }

    #[test]
    fn tokens_are_case_insensitive_and_comma_separated() {
        let text = upgrade(
            "upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n\
             sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\nsec-websocket-version: 13\r\n",
        );
        let (request, _) = parse_request(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(request.websocket_key.as_deref(), Some(KEY));
    }

    #[test]
    fn plain_get_is_not_an_upgrade() {
        let text = "GET /health HTTP/1.0\r\nUser-Agent: probe\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let (request, consumed) = parse_request(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(consumed, text.len());
        assert_eq!(request.path, "/health");
        assert_eq!(request.websocket_key, None);
        assert_eq!(request.user_agent.as_deref(), Some("probe"));
        assert_eq!(request.forwarded_for.as_deref(), Some("10.0.0.1"));
        assert!(!request.is_upgrade());
        // An upgrade to something else (h2c) is a plain request too.
        let text = upgrade("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n");
        let (request, _) = parse_request(text.as_bytes())
            .expect("valid")
            .expect("complete");
        assert!(!request.is_upgrade());
    }

    #[test]
    fn request_split_across_reads() {
        let text = upgrade(GOOD_HEADERS);
        let bytes = text.as_bytes();
        for end in 0..bytes.len() {
            assert_eq!(
                parse_request(&bytes[..end]),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        let (request, consumed) = parse_request(bytes).expect("valid").expect("complete");
        assert_eq!(consumed, bytes.len());
        assert_eq!(request.websocket_key.as_deref(), Some(KEY));
    }

    #[test]
    fn only_get() {
        let text = "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let error = parse_request(text.as_bytes()).expect_err("POST");
        assert_eq!(error, WsError::MethodNotAllowed);
        assert_eq!(error.http_status(), Some(405));
    }

    #[test]
    fn bad_upgrades() {
        let cases: [(String, WsError); 8] = [
            (
                upgrade(
                    "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                ),
                WsError::MissingConnectionUpgrade,
            ),
            (
                upgrade(
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                ),
                WsError::MissingUpgradeWebsocket,
            ),
            (
                upgrade(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                ),
                WsError::MissingWebSocketVersion,
            ),
            (
                upgrade(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
                ),
                WsError::UnsupportedWebSocketVersion,
            ),
            (
                upgrade(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
                ),
                WsError::InvalidWebSocketKey,
            ),
            (
                // 15 bytes once decoded.
                upgrade(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\nSec-WebSocket-Version: 13\r\n",
                ),
                WsError::InvalidWebSocketKey,
            ),
            (
                upgrade(
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !GhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                ),
                WsError::InvalidWebSocketKey,
            ),
            (
                upgrade(GOOD_HEADERS).replace("HTTP/1.1", "HTTP/1.0"),
                WsError::UpgradeNeedsHttp11,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_request(text.as_bytes()), Err(expected), "{text}");
        }
        assert_eq!(
            WsError::UnsupportedWebSocketVersion.http_status(),
            Some(426)
        );
    }

    #[test]
    fn malformed_and_oversized_heads() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(WsError::MalformedHttp(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse_request(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(WsError::MalformedHttp(httparse::Error::TooManyHeaders))
        );
        let long = format!(
            "GET / HTTP/1.1\r\nX-Long: {}\r\n",
            "a".repeat(MAX_REQUEST_HEAD)
        );
        assert_eq!(parse_request(long.as_bytes()), Err(WsError::HeadTooLarge));
        // Exactly the maximum is fine.
        let base = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
        let exact = format!(
            "GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_HEAD - base)
        );
        assert_eq!(exact.len(), MAX_REQUEST_HEAD);
        let (_, consumed) = parse_request(exact.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(consumed, MAX_REQUEST_HEAD);
    }

    #[test]
    fn upgrade_response_is_rfc_shaped() {
        let response = upgrade_response(KEY);
        assert_eq!(
            String::from_utf8(response.clone()).expect("ascii"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(parse_response(&response, KEY), Ok(Some(response.len())));
    }

    #[test]
    fn http_response_has_length_and_close() {
        let response = http_response(
            426,
            "Upgrade Required",
            "text/plain",
            b"use v13",
            &[("Sec-WebSocket-Version", "13")],
        );
        assert_eq!(
            String::from_utf8(response).expect("ascii"),
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\
             Connection: close\r\nSec-WebSocket-Version: 13\r\n\r\nuse v13"
        );
        let response = http_response(405, "Method Not Allowed", "", b"", &[("Allow", "GET")]);
        assert_eq!(
            String::from_utf8(response).expect("ascii"),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\
             Allow: GET\r\n\r\n"
        );
    }

    #[test]
    fn client_side_round_trip() {
        let key = client_key([7; 16]);
        assert_eq!(key.len(), 24);
        let request = client_request("localhost:8080", "/ws", &key);
        let (parsed, consumed) = parse_request(&request).expect("valid").expect("complete");
        assert_eq!(consumed, request.len());
        assert_eq!(parsed.host.as_deref(), Some("localhost:8080"));
        assert_eq!(parsed.path, "/ws");
        let server_key = parsed.websocket_key.expect("upgrade");
        assert_eq!(server_key, key);
        let mut response = upgrade_response(&server_key);
        let head_len = response.len();
        response.extend_from_slice(&[0x82, 0x00]);
        for end in 0..head_len {
            assert_eq!(parse_response(&response[..end], &key), Ok(None));
        }
        assert_eq!(parse_response(&response, &key), Ok(Some(head_len)));
        assert_eq!(
            parse_response(&response, &client_key([8; 16])),
            Err(WsError::WrongAcceptKey)
        );
    }

    #[test]
    fn bad_responses() {
        let refused = http_response(403, "Forbidden", "", b"", &[]);
        assert_eq!(
            parse_response(&refused, KEY),
            Err(WsError::UpgradeRefused { status: 403 })
        );
        let no_upgrade =
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            parse_response(no_upgrade, KEY),
            Err(WsError::MissingUpgradeHeaders)
        );
        let no_accept = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(parse_response(no_accept, KEY), Err(WsError::WrongAcceptKey));
        let long = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(MAX_REQUEST_HEAD));
        assert_eq!(
            parse_response(long.as_bytes(), KEY),
            Err(WsError::HeadTooLarge)
        );
        assert!(matches!(
            parse_response(b"HTTP/1.1 abc\r\n\r\n", KEY),
            Err(WsError::MalformedHttp(_))
        ));
    }
}
