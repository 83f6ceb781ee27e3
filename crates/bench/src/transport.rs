//! How a benchmark observer reaches its front-end: raw TCP, TLS, WebSocket, or WebSocket
//! over TLS. The handshakes run blocking when a connection opens; afterwards the observer
//! engine ([`crate::observe`]) reads and writes the socket itself and passes the bytes
//! through [`Layers`] (rustls and the client side of `flotilla-ws`), so every transport
//! is measured with the same lean reader.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_ws::{Control, FrameDecoder, Opcode, Role};
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The transport of the observers' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Raw frames over TCP.
    Tcp,
    /// Raw frames over TLS.
    Tls,
    /// WebSocket binary messages.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Every transport, raw TCP first.
    pub const ALL: [Transport; 4] = [Self::Tcp, Self::Tls, Self::Ws, Self::Wss];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    fn websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// The TLS client settings of observers: trust the benchmark's own authority.
pub(crate) fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, BenchError> {
    let pem = std::fs::read(ca).map_err(BenchError::io("reading the CA certificate"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(BenchError::io("parsing the CA certificate"))?;
        roots
            .add(cert)
            .map_err(|error| BenchError::InvalidConfig(format!("CA certificate: {error}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| BenchError::InvalidConfig(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS and WebSocket state of one observer connection.
pub(crate) struct Layers {
    tls: Option<rustls::ClientConnection>,
    websocket: Option<FrameDecoder>,
    /// Varies the masks of the frames sent.
    masks: u32,
}

impl Layers {
    /// Runs the handshakes of `transport` on the blocking, connected `stream` (TLS with
    /// `tls`, then the WebSocket upgrade to `/ws`). `None` for raw TCP.
    pub(crate) fn open(
        stream: &mut TcpStream,
        transport: Transport,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Option<Box<Self>>> {
        if transport == Transport::Tcp {
            return Ok(None);
        }
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut layers = Box::new(Self {
            tls: None,
            websocket: None,
            masks: 0x9e37_79b9,
        });
        if transport.tls() {
            let config = tls
                .ok_or_else(|| io::Error::other("a TLS transport needs --ca"))?
                .clone();
            let name =
                rustls_pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
            let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
            while conn.is_handshaking() {
                conn.complete_io(stream)?;
            }
            layers.tls = Some(conn);
        }
        if transport.websocket() {
            let key = flotilla_ws::client_key(*b"flotilla-bench-k");
            let host = stream.peer_addr()?.to_string();
            layers.send_plain(stream, &flotilla_ws::client_request(&host, "/ws", &key))?;
            let mut head = Vec::new();
            loop {
                let mut chunk = [0u8; 2048];
                let read = layers.read_plain(stream, &mut chunk)?;
                if read == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                head.extend_from_slice(chunk.get(..read).unwrap_or_default());
                match flotilla_ws::parse_response(&head, &key) {
                    Ok(Some(used)) if used == head.len() => break,
                    Ok(Some(_)) => {
                        return Err(io::Error::other("bytes after the upgrade response"));
                    }
                    Ok(None) => {}
                    Err(error) => return Err(io::Error::other(error.to_string())),
                }
            }
            layers.websocket = Some(FrameDecoder::new(
                Role::Client,
                flotilla_ws::DEFAULT_MAX_PENDING_CONTROLS,
            ));
        }
        stream.set_read_timeout(None)?;
        Ok(Some(layers))
    }

    /// Blocking read of plaintext (during the upgrade).
    fn read_plain(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(conn) => rustls::Stream::new(conn, stream).read(buf),
            None => stream.read(buf),
        }
    }

    /// Blocking write of plaintext (during the upgrade).
    fn send_plain(&mut self, stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(conn) => {
                let mut tls = rustls::Stream::new(conn, stream);
                tls.write_all(bytes)?;
                tls.flush()
            }
            None => stream.write_all(bytes),
        }
    }

    /// The bytes to put on the socket for the frames `bytes`: in a masked binary message,
    /// then encrypted, as the transport says.
    pub(crate) fn wrap(&mut self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let plain = if self.websocket.is_some() {
            self.masks = self.masks.rotate_left(5) ^ 0x85eb_ca6b;
            flotilla_ws::client_frame(Opcode::Binary, bytes, self.masks.to_be_bytes())
        } else {
            bytes.to_vec()
        };
        match &mut self.tls {
            Some(conn) => {
                conn.writer().write_all(&plain)?;
                let mut records = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut records)?;
                }
                Ok(records)
            }
            None => Ok(plain),
        }
    }

    /// Takes bytes read from the socket; appends the frames' bytes to `frames` and
    /// returns what to write back (pongs to WebSocket pings, TLS records).
    pub(crate) fn unwrap(&mut self, raw: &[u8], frames: &mut Vec<u8>) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        match &mut self.tls {
            Some(conn) => {
                let mut rest = raw;
                while !rest.is_empty() {
                    conn.read_tls(&mut rest).map_err(|e| e.to_string())?;
                    let state = conn.process_new_packets().map_err(|e| e.to_string())?;
                    flotilla_link::stream::take_plaintext(
                        conn.reader(),
                        state.plaintext_bytes_to_read(),
                        &mut plain,
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
            None => plain.extend_from_slice(raw),
        }
        let mut reply = Vec::new();
        match &mut self.websocket {
            Some(decoder) => {
                let mut controls = Vec::new();
                decoder
                    .decode(&plain, frames, &mut controls)
                    .map_err(|e| e.to_string())?;
                for control in controls {
                    match control {
                        Control::Ping(payload) => {
                            self.masks = self.masks.rotate_left(5) ^ 0x85eb_ca6b;
                            reply.extend(flotilla_ws::client_frame(
                                Opcode::Pong,
                                &payload,
                                self.masks.to_be_bytes(),
                            ));
                        }
                        Control::Pong(_) => {}
                        Control::Close { code, reason } => {
                            return Err(format!("closed by the server: {code:?} {reason}"));
                        }
                    }
                }
            }
            None => frames.extend_from_slice(&plain),
        }
        if let Some(conn) = &mut self.tls {
            if !reply.is_empty() {
                conn.writer().write_all(&reply).map_err(|e| e.to_string())?;
                reply.clear();
            }
            while conn.wants_write() {
                conn.write_tls(&mut reply).map_err(|e| e.to_string())?;
            }
        }
        Ok(reply)
    }
}
