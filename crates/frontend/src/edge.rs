//! The front-end at the edge: client links over TLS, WebSocket and WebSocket over TLS, and
//! the browser observer page.
//!
//! The event loop ([`crate::server`]) writes raw frames with one vectored `sendmsg` per
//! connection. A layered connection keeps that path:
//!
//! - **WebSocket** (RFC 6455, [`flotilla_ws`]): at flush time, the frames about to be
//!   written are wrapped in *one* binary message (one header in front of the same shared
//!   frame bytes, so fan-out stays zero-copy). A message always covers whole frames, so a
//!   slow observer's queued batches can still be dropped between messages. Control frames
//!   the front-end answers (a pong) go out between messages.
//! - **TLS** (rustls): the connection's `rustls::Connection` is shared by its reader
//!   task and the event loop (both on the front-end's one thread, so the lock is never
//!   contended). The event loop writes the same iovecs into rustls's plaintext writer
//!   (bounded by rustls's buffer limit, like a socket's send buffer) and writes the
//!   records to the socket; the reader feeds received records in and takes plaintext out.
//!
//! A layered listener's handshake (TLS, then the HTTP upgrade) runs in a task of its own
//! with a deadline, before the connection reaches the event loop; at most
//! [`MAX_HANDSHAKES`] run at once, [`MAX_HANDSHAKES_PER_IP`] from one address. An HTTP
//! request that is not an upgrade is answered by the small web server here: the observer
//! page (`/`, `/flotilla.js`) and the front-end list it balances over (`/frontends`).
//!
//! The certificate and key are read from PEM files at start and again on
//! [`FrontendServer::reload_tls`](crate::FrontendServer::reload_tls) (`flotilla frontend`
//! calls it on SIGHUP); connections already open keep the configuration they started with.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use crate::error::FrontendError;

/// The observer page served at `/`.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// The page's protocol, replica and drawing code, served at `/flotilla.js`.
pub const FLOTILLA_JS: &str = include_str!("../web/flotilla.js");

/// Handshakes (TLS, HTTP upgrade) running at once per front-end; connections past it are
/// closed at once (a handshake flood must not take every descriptor).
pub const MAX_HANDSHAKES: usize = 1024;

/// Handshakes running at once from one address; past it that address's new connections
/// are closed at once (so one address cannot hold every handshake place).
pub const MAX_HANDSHAKES_PER_IP: usize = 32;

/// How long a connection may take to finish its TLS handshake and HTTP request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Plaintext (bytes of frames) rustls holds encrypted for one connection beyond what the
/// socket took: the TLS counterpart of a socket's send buffer.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Bytes reserved for one socket read on a layered connection.
const LAYERED_READ_CHUNK: usize = 4096;

/// The largest plaintext one WebSocket message carries (frames are never split across
/// messages; one frame alone may be larger).
const MAX_WS_MESSAGE: usize = 256 * 1024;

/// Where a front-end's TLS certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The front-end's client listeners besides raw TCP, and what its web page is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Raw frames over TLS (`tls://HOST:PORT`). Needs [`tls`](Self::tls).
    pub tls_listen: Option<SocketAddr>,
    /// WebSocket (`ws://HOST:PORT/ws`) and the observer page (`http://HOST:PORT/`).
    pub ws_listen: Option<SocketAddr>,
    /// WebSocket over TLS (`wss://HOST:PORT/ws`) and the page over HTTPS. Needs
    /// [`tls`](Self::tls).
    pub wss_listen: Option<SocketAddr>,
    /// The certificate and key of the TLS listeners.
    pub tls: Option<TlsFiles>,
    /// The front-ends the page balances over (`ws://` or `wss://` URLs), served at
    /// `/frontends`. Empty: the front-end the page was loaded from, alone.
    pub web_frontends: Vec<String>,
    /// The world the page watches unless its URL says otherwise (`?world=`).
    pub web_world: Option<String>,
    /// Dial the game servers over TLS (`None`: plain TCP).
    pub game_tls: Option<GameTls>,
}

impl EdgeConfig {
    /// Checks that every TLS listener has a certificate.
    pub fn validate(&self) -> Result<(), FrontendError> {
        if (self.tls_listen.is_some() || self.wss_listen.is_some()) && self.tls.is_none() {
            return Err(FrontendError::InvalidConfig(
                "a TLS listener (--tls-listen, --wss) needs --tls-cert and --tls-key",
            ));
        }
        Ok(())
    }
}

/// The TLS configuration new connections get; replaced by [`TlsServer::reload`].
#[derive(Debug)]
pub(crate) struct TlsServer {
    files: TlsFiles,
    current: Mutex<Arc<rustls::ServerConfig>>,
}

impl TlsServer {
    /// Reads the certificate and key.
    pub(crate) fn load(files: &TlsFiles) -> Result<Self, FrontendError> {
        let config = server_config(files)?;
        Ok(Self {
            files: files.clone(),
            current: Mutex::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on success new connections use them.
    pub(crate) fn reload(&self) -> Result<(), FrontendError> {
        let config = server_config(&self.files)?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, FrontendError> {
    flotilla_link::stream::server_config_from_pem(&files.cert, &files.key)
        .map_err(|error| FrontendError::Tls(error.0))
}

/// TLS toward the game servers: the authorities that sign their certificates, and the
/// name the certificates must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameTls {
    /// The certificate authorities (PEM).
    pub ca: PathBuf,
    /// The name in the game servers' certificates (a DNS name or an IP address).
    pub server_name: String,
}

/// Dials game links over TLS.
#[derive(Clone)]
pub(crate) struct GameConnector {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for GameConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl GameConnector {
    /// Reads the authorities of `settings`.
    pub(crate) fn new(settings: &GameTls) -> Result<Self, FrontendError> {
        let config = flotilla_link::stream::client_config_from_ca_file(&settings.ca)
            .map_err(|error| FrontendError::Tls(error.0))?;
        let server_name = rustls::pki_types::ServerName::try_from(settings.server_name.clone())
            .map_err(|error| {
                FrontendError::Tls(format!(
                    "game server name {:?}: {error}",
                    settings.server_name
                ))
            })?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Runs the handshake over `stream`; the socket and the link's TLS session.
    pub(crate) async fn connect(&self, stream: TcpStream) -> io::Result<(TcpStream, SharedTls)> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await?;
        let (stream, conn) = stream.into_inner();
        Ok((
            stream,
            Arc::new(Mutex::new(rustls::Connection::Client(conn))),
        ))
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// Raw frames over TLS.
    Tls,
    /// HTTP and WebSocket.
    Ws,
    /// HTTP and WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    fn web(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// A TLS session shared by a connection's reader task and the event loop.
pub(crate) type SharedTls = Arc<Mutex<rustls::Connection>>;

/// Locks a connection's TLS session (a poisoned lock still holds a usable session: rustls
/// reports its own errors).
pub(crate) fn lock(tls: &SharedTls) -> MutexGuard<'_, rustls::Connection> {
    tls.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outbound side of a layered connection, kept by its queue in the event loop.
#[derive(Debug, Default)]
pub(crate) struct OutLayers {
    /// The TLS session, if any.
    pub tls: Option<SharedTls>,
    /// WebSocket framing state, if the connection is a WebSocket.
    pub ws: Option<WsOut>,
}

/// Where a WebSocket connection's outbound byte stream stands.
#[derive(Debug, Default)]
pub(crate) struct WsOut {
    /// Bytes of the message being written (header included) not yet written; 0 between
    /// messages.
    pub message_left: usize,
    /// Bytes at the front of the queue that are not the machine's frames (a message
    /// header, a control frame) and not yet written.
    pub overhead_left: usize,
    /// Control frames to send between messages (pongs).
    pub control: std::collections::VecDeque<Bytes>,
}

/// The inbound side of a layered connection, kept by its reader task.
pub(crate) struct ReadLayers {
    /// The TLS session, if any.
    pub tls: Option<SharedTls>,
    /// The WebSocket frame decoder, if the connection is a WebSocket.
    pub ws: Option<flotilla_ws::FrameDecoder>,
    /// Plaintext that arrived with the handshake, to handle before reading.
    pub leftover: Vec<u8>,
}

/// Writes to a non-blocking socket for rustls (`WouldBlock` when the socket is full).
pub(crate) struct SocketWriter<'a>(pub &'a TcpStream);

impl io::Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let socket = socket2::SockRef::from(self.0);
        self.0.try_io(Interest::WRITABLE, || socket.send(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let socket = socket2::SockRef::from(self.0);
        self.0
            .try_io(Interest::WRITABLE, || socket.send_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the TLS records rustls holds to the socket. Returns the bytes written, or
/// `WouldBlock` once the socket is full with records still held.
pub(crate) fn drain_tls(conn: &mut rustls::Connection, stream: &TcpStream) -> io::Result<usize> {
    let mut total = 0;
    while conn.wants_write() {
        match conn.write_tls(&mut SocketWriter(stream))? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            written => total += written,
        }
    }
    Ok(total)
}

/// What a layered reader made of the bytes it read.
#[derive(Debug, Default)]
pub(crate) struct Unwrapped {
    /// The peer closed (TLS close_notify, WebSocket Close).
    pub closed: bool,
    /// Control frames to answer, already framed (pongs).
    pub replies: Vec<Bytes>,
    /// rustls has records to send (a key update's answer, an alert).
    pub tls_pending: bool,
}

/// Why a layered connection's bytes are refused.
#[derive(Debug)]
pub(crate) enum LayerError {
    /// A TLS failure (rustls sent its alert if it could).
    Tls(String),
    /// A WebSocket protocol error, and the close frame that answers it.
    Ws(String, Bytes),
}

impl ReadLayers {
    /// Takes `raw` bytes from the socket (or none, to handle the handshake's leftover and
    /// the plaintext rustls already holds) through TLS and WebSocket, appending the frame
    /// bytes to `frames`.
    pub(crate) fn unwrap(
        &mut self,
        raw: &[u8],
        frames: &mut BytesMut,
        stream: &TcpStream,
    ) -> Result<Unwrapped, LayerError> {
        let mut out = Unwrapped::default();
        let mut plain = std::mem::take(&mut self.leftover);
        if let Some(tls) = &self.tls {
            let mut conn = lock(tls);
            let mut rest = raw;
            // One record batch at a time, its plaintext taken out at once: rustls bounds
            // the plaintext it holds (16 KiB), and a read may carry more.
            loop {
                if !rest.is_empty()
                    && let Err(error) = conn.read_tls(&mut rest)
                {
                    return Err(LayerError::Tls(error.to_string()));
                }
                let state = match conn.process_new_packets() {
                    Ok(state) => state,
                    Err(error) => {
                        // rustls queued its alert: send it before closing.
                        let _ = drain_tls(&mut conn, stream);
                        return Err(LayerError::Tls(error.to_string()));
                    }
                };
                flotilla_link::stream::take_plaintext(
                    conn.reader(),
                    state.plaintext_bytes_to_read(),
                    &mut plain,
                )
                .map_err(|error| LayerError::Tls(error.to_string()))?;
                if state.peer_has_closed() {
                    out.closed = true;
                }
                if rest.is_empty() {
                    break;
                }
            }
            out.tls_pending = conn.wants_write();
        } else {
            plain.extend_from_slice(raw);
        }
        match &mut self.ws {
            Some(decoder) => {
                let mut data = Vec::new();
                let mut controls = Vec::new();
                let decoded = decoder.decode(&plain, &mut data, &mut controls);
                frames.extend_from_slice(&data);
                for control in controls {
                    match control {
                        flotilla_ws::Control::Ping(payload) => out.replies.push(Bytes::from(
                            flotilla_ws::server_frame(flotilla_ws::Opcode::Pong, &payload),
                        )),
                        flotilla_ws::Control::Pong(_) => {}
                        flotilla_ws::Control::Close { .. } => out.closed = true,
                    }
                }
                if let Err(error) = decoded {
                    let close = flotilla_ws::server_frame(
                        flotilla_ws::Opcode::Close,
                        &flotilla_ws::close_payload(error.close_code(), ""),
                    );
                    return Err(LayerError::Ws(error.to_string(), Bytes::from(close)));
                }
            }
            None => frames.extend_from_slice(&plain),
        }
        Ok(out)
    }

    /// True when nothing is held between reads (buffers can be released).
    pub(crate) fn is_idle(&self) -> bool {
        self.leftover.is_empty() && self.ws.as_ref().is_none_or(|ws| ws.is_idle())
    }
}

/// Bytes reserved for one socket read of a layered connection.
pub(crate) const fn read_chunk() -> usize {
    LAYERED_READ_CHUNK
}

/// The stream of a connection during its handshake.
enum HandshakeStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl HandshakeStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.read(buf).await,
            Self::Tls(stream) => stream.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(stream) => stream.write_all(buf).await,
            Self::Tls(stream) => {
                stream.write_all(buf).await?;
                stream.flush().await
            }
        }
    }

    async fn close(mut self) {
        match &mut self {
            Self::Plain(stream) => {
                let _ = stream.shutdown().await;
            }
            Self::Tls(stream) => {
                let _ = stream.shutdown().await;
            }
        }
    }
}

/// What [`handshake`] did with a connection.
pub(crate) enum Handshake {
    /// A client link, ready for the event loop: the socket and its layers. `refuse` is
    /// called first: an answer it gives is sent through the layers and the connection
    /// closed.
    Client {
        /// The socket.
        stream: TcpStream,
        /// The event loop's half.
        out: OutLayers,
        /// The reader's half.
        read: ReadLayers,
    },
    /// The connection is done with: a web request answered, a refusal sent, a failed
    /// handshake (counted as such when `failed`).
    Done {
        /// True when it failed (TLS, HTTP, timeout).
        failed: bool,
        /// True when a web request was answered.
        served: bool,
    },
}

/// What the web server answers with besides the page.
#[derive(Debug, Clone)]
pub(crate) struct WebSettings {
    /// The front-ends the page balances over (empty: this one).
    pub frontends: Vec<String>,
    /// The world the page watches by default.
    pub world: Option<String>,
}

/// Runs a layered connection's handshake: TLS, then (on a web listener) the HTTP
/// request. Web requests are answered here. An upgrade or a TLS client link is offered to
/// `admit`, which answers `Err(frame)` to refuse it (the frame is sent through the layers).
pub(crate) async fn handshake(
    stream: TcpStream,
    kind: ListenerKind,
    tls: Option<Arc<TlsServer>>,
    web: &WebSettings,
    admit: impl FnOnce() -> Result<(), Bytes>,
) -> Handshake {
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake_inner(stream, kind, tls, web, admit),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Handshake::Done {
            failed: true,
            served: false,
        },
    }
}

async fn handshake_inner(
    stream: TcpStream,
    kind: ListenerKind,
    tls: Option<Arc<TlsServer>>,
    web: &WebSettings,
    admit: impl FnOnce() -> Result<(), Bytes>,
) -> Handshake {
    let failed = Handshake::Done {
        failed: true,
        served: false,
    };
    let mut stream = if kind.tls() {
        let Some(tls) = tls else {
            return failed;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        match acceptor.accept(stream).await {
            Ok(stream) => HandshakeStream::Tls(Box::new(stream)),
            Err(error) => {
                log::debug!("TLS handshake failed: {error}");
                return failed;
            }
        }
    } else {
        HandshakeStream::Plain(stream)
    };
    let mut leftover = Vec::new();
    let ws = if kind.web() {
        let mut head = Vec::with_capacity(1024);
        let (request, used) = loop {
            match flotilla_ws::parse_request(&head) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(error) => {
                    let (status, reason) = http_status(&error);
                    let body = format!("{error}\n");
                    let mut extra: Vec<(&str, &str)> = Vec::new();
                    if status == 426 {
                        extra.push(("Sec-WebSocket-Version", "13"));
                    }
                    let response = flotilla_ws::http_response(
                        status,
                        reason,
                        "text/plain; charset=utf-8",
                        body.as_bytes(),
                        &extra,
                    );
                    let _ = stream.write_all(&response).await;
                    stream.close().await;
                    return failed;
                }
            }
            let mut chunk = [0u8; 2048];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return failed,
                Ok(read) => head.extend_from_slice(chunk.get(..read).unwrap_or_default()),
            }
        };
        leftover.extend_from_slice(head.get(used..).unwrap_or_default());
        let Some(key) = request.websocket_key.clone() else {
            let response = web_response(&request, kind, web);
            let _ = stream.write_all(&response).await;
            stream.close().await;
            return Handshake::Done {
                failed: false,
                served: true,
            };
        };
        let _ = stream.write_all(&flotilla_ws::upgrade_response(&key)).await;
        true
    } else {
        false
    };
    if let Err(refusal) = admit() {
        let refusal = if ws {
            flotilla_ws::server_frame(flotilla_ws::Opcode::Binary, &refusal)
        } else {
            refusal.to_vec()
        };
        let _ = stream.write_all(&refusal).await;
        stream.close().await;
        return Handshake::Done {
            failed: false,
            served: false,
        };
    }
    let (stream, tls) = match stream {
        HandshakeStream::Plain(stream) => (stream, None),
        HandshakeStream::Tls(stream) => {
            let (stream, mut conn) = stream.into_inner();
            conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            (
                stream,
                Some(Arc::new(Mutex::new(rustls::Connection::Server(conn)))),
            )
        }
    };
    Handshake::Client {
        stream,
        out: OutLayers {
            tls: tls.clone(),
            ws: ws.then(WsOut::default),
        },
        read: ReadLayers {
            tls,
            ws: ws.then(|| {
                flotilla_ws::FrameDecoder::new(
                    flotilla_ws::Role::Server,
                    flotilla_ws::DEFAULT_MAX_PENDING_CONTROLS,
                )
            }),
            leftover,
        },
    }
}

/// The HTTP status that answers a request that could not be taken.
fn http_status(error: &flotilla_ws::WsError) -> (u16, &'static str) {
    match error.http_status() {
        Some(405) => (405, "Method Not Allowed"),
        Some(426) => (426, "Upgrade Required"),
        Some(431) => (431, "Request Header Fields Too Large"),
        _ => (400, "Bad Request"),
    }
}

/// Answers a web request that is not an upgrade.
fn web_response(request: &flotilla_ws::Request, kind: ListenerKind, web: &WebSettings) -> Vec<u8> {
    let path = request.path.split('?').next().unwrap_or_default();
    let page_headers: &[(&str, &str)] = &[
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        (
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
        ),
    ];
    match path {
        "/" | "/index.html" => flotilla_ws::http_response(
            200,
            "OK",
            "text/html; charset=utf-8",
            INDEX_HTML.as_bytes(),
            page_headers,
        ),
        "/flotilla.js" => flotilla_ws::http_response(
            200,
            "OK",
            "text/javascript; charset=utf-8",
            FLOTILLA_JS.as_bytes(),
            page_headers,
        ),
        "/frontends" => {
            let frontends = if web.frontends.is_empty() {
                let scheme = if kind.tls() { "wss" } else { "ws" };
                let host = request.host.as_deref().unwrap_or("localhost");
                vec![format!("{scheme}://{host}/ws")]
            } else {
                web.frontends.clone()
            };
            let body = serde_json::json!({
                "frontends": frontends,
                "world": web.world,
            })
            .to_string();
            flotilla_ws::http_response(
                200,
                "OK",
                "application/json",
                body.as_bytes(),
                &[("Cache-Control", "no-store")],
            )
        }
        _ => flotilla_ws::http_response(
            404,
            "Not Found",
            "text/plain; charset=utf-8",
            b"not found\n",
            &[],
        ),
    }
}

/// Starts a WebSocket message in front of `frames` if none is in progress: the header
/// goes to the front of the queue covering the frames that one `writev` of `slots` will
/// carry (or a queued control frame goes first). Returns the header's bytes added.
pub(crate) fn start_ws_message(
    ws: &mut WsOut,
    frames: &mut std::collections::VecDeque<(Bytes, bool)>,
    slots: usize,
) -> usize {
    if ws.message_left > 0 {
        return 0;
    }
    if let Some(control) = ws.control.pop_front() {
        let len = control.len();
        ws.message_left = len;
        ws.overhead_left = len;
        frames.push_front((control, false));
        return len;
    }
    let mut payload = 0usize;
    for (bytes, _) in frames.iter().take(slots.saturating_sub(1).max(1)) {
        if payload > 0 && payload + bytes.len() > MAX_WS_MESSAGE {
            break;
        }
        payload += bytes.len();
    }
    if payload == 0 {
        return 0;
    }
    let mut header = [0u8; flotilla_ws::MAX_HEADER_LEN];
    let len = flotilla_ws::encode_header(
        true,
        flotilla_ws::Opcode::Binary,
        payload as u64,
        None,
        &mut header,
    );
    let header = Bytes::copy_from_slice(header.get(..len).unwrap_or_default());
    ws.message_left = len + payload;
    ws.overhead_left = len;
    frames.push_front((header, false));
    len
}
