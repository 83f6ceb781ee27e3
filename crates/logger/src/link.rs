//! Connections to one collector, one per transport, driven with blocking sockets
//! from the sender thread (never from the application's threads).
//!
//! A [`Link`] takes records from the front of the sender's batch, encodes and
//! frames them, and writes many messages per system call. It reports how many
//! messages it *delivered*: written to the socket for UDP, Unix, TCP and TLS;
//! acknowledged by the collector for RELP.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_relp::client::{ClientConfig as RelpConfig, ClientSession, Event as RelpEvent};
use rustls::pki_types::ServerName;

use crate::Error;
use crate::config::{Collector, Format, StreamFraming, Transport};
use crate::encode::Encoder;
use crate::record::Record;

/// Largest number of bytes gathered before one write.
const WRITE_CHUNK: usize = 256 * 1024;

/// Prepared, reusable per-collector settings (TLS configuration is loaded once).
pub(crate) struct Target {
    /// The collector.
    pub collector: Collector,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    /// Loads what the collector needs (CA certificates for TLS); errors are loud.
    pub fn prepare(collector: Collector) -> Result<Self, Error> {
        let tls = match &collector.transport {
            Transport::Tls { ca, server_name } => {
                let pem = std::fs::read(ca)
                    .map_err(|e| Error::Tls(format!("reading CA file {}: {e}", ca.display())))?;
                let mut roots = rustls::RootCertStore::empty();
                let mut count = 0;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert =
                        cert.map_err(|e| Error::Tls(format!("CA file {}: {e}", ca.display())))?;
                    roots.add(cert).map_err(|e| {
                        Error::Tls(format!("CA file {}: bad certificate: {e}", ca.display()))
                    })?;
                    count += 1;
                }
                if count == 0 {
                    return Err(Error::Tls(format!(
                        "CA file {} holds no PEM certificate",
                        ca.display()
                    )));
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Tls(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = ServerName::try_from(server_name.clone()).map_err(|e| {
                    Error::Tls(format!("server name {server_name:?} is invalid: {e}"))
                })?;
                Some((Arc::new(config), name))
            }
            _ => None,
        };
        Ok(Self { collector, tls })
    }
}

/// An open connection to one collector.
pub(crate) enum Link {
    /// Connected UDP socket.
    Udp(UdpSocket, usize),
    /// Connected Unix datagram socket.
    Unix(UnixDatagram, usize),
    /// TCP stream.
    Tcp(TcpStream, StreamFraming),
    /// TLS stream.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// RELP session over TCP.
    Relp(Box<RelpLink>),
}

/// The state of a RELP connection.
pub(crate) struct RelpLink {
    stream: TcpStream,
    session: ClientSession,
    read_buf: Vec<u8>,
    /// Messages settled (acknowledged or refused) on this session so far.
    acked: u64,
    /// How many of `acked` were already reported as delivered.
    reported: u64,
    /// Last time an acknowledgement arrived or nothing was outstanding.
    last_progress: Instant,
    /// A collector that acknowledges nothing for this long while messages are
    /// outstanding is treated as failed (it may keep TCP open and stall).
    ack_timeout: Duration,
}

/// What one [`Link::send`] did: how many messages were delivered (also when it
/// then failed: those must still be counted), and whether the link still works.
pub(crate) struct Sent {
    /// Messages delivered by this call.
    pub delivered: u64,
    /// `Err` when the link failed and must be dropped.
    pub result: io::Result<()>,
}

impl Sent {
    fn ok(delivered: u64) -> Self {
        Self {
            delivered,
            result: Ok(()),
        }
    }

    fn failed(delivered: u64, error: io::Error) -> Self {
        Self {
            delivered,
            result: Err(error),
        }
    }
}

/// Reusable buffers for the sender.
#[derive(Default)]
pub(crate) struct Scratch {
    /// One encoded message.
    pub message: Vec<u8>,
    /// Many framed messages, written at once.
    pub out: Vec<u8>,
}

fn connect_tcp(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn resolve_one(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing"))
}

impl Link {
    /// Opens a connection to `target`. `relp_session` is the RELP session that
    /// survives reconnects (its unacknowledged messages are resent).
    pub fn connect(
        target: &Target,
        connect_timeout: Duration,
        write_timeout: Duration,
        relp_session: &mut Option<ClientSession>,
    ) -> io::Result<Link> {
        let address = target.collector.address.as_str();
        match &target.collector.transport {
            Transport::Udp { max_size } => {
                let peer = resolve_one(address)?;
                let local: SocketAddr = if peer.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(peer)?;
                sock.set_write_timeout(Some(write_timeout))?;
                Ok(Link::Udp(sock, *max_size))
            }
            Transport::Unix { max_size } => {
                let sock = UnixDatagram::unbound()?;
                sock.connect(address)?;
                sock.set_write_timeout(Some(write_timeout))?;
                Ok(Link::Unix(sock, *max_size))
            }
            Transport::Tcp { framing } => {
                let s = connect_tcp(address, connect_timeout)?;
                s.set_write_timeout(Some(write_timeout))?;
                Ok(Link::Tcp(s, *framing))
            }
            Transport::Tls { .. } => {
                let Some((config, name)) = &target.tls else {
                    return Err(io::Error::other("TLS collector without TLS settings"));
                };
                let deadline = Instant::now() + connect_timeout;
                let mut sock = connect_tcp(address, connect_timeout)?;
                sock.set_write_timeout(Some(write_timeout))?;
                let mut conn = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(io::Error::other)?;
                // One deadline for the whole handshake: a server trickling bytes
                // cannot hold the sender longer than `connect_timeout`.
                while conn.is_handshaking() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ));
                    }
                    sock.set_read_timeout(Some(left))?;
                    conn.complete_io(&mut sock)?;
                }
                Ok(Link::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
            }
            Transport::Relp { window } => {
                let stream = connect_tcp(address, connect_timeout)?;
                stream.set_write_timeout(Some(write_timeout))?;
                let mut session = match relp_session.take() {
                    Some(session) => session,
                    None => ClientSession::new(RelpConfig {
                        window: *window,
                        capacity: window.saturating_mul(2),
                        software: format!("flotilla-logger,{}", env!("CARGO_PKG_VERSION")),
                        ..RelpConfig::default()
                    })
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
                };
                session.connect();
                let mut link = RelpLink {
                    stream,
                    session,
                    read_buf: vec![0; 64 * 1024],
                    acked: 0,
                    reported: 0,
                    last_progress: Instant::now(),
                    ack_timeout: write_timeout,
                };
                let opened = link.open(connect_timeout);
                match opened {
                    Ok(()) => Ok(Link::Relp(Box::new(link))),
                    Err(e) => {
                        link.session.connection_lost();
                        *relp_session = Some(link.session);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Sends records from the front of `batch`, removing the ones handed over.
    /// Reports how many messages were delivered (for RELP: acknowledged, which may
    /// include messages handed over earlier), even when the link then failed.
    pub fn send(
        &mut self,
        batch: &mut VecDeque<Record>,
        encoder: &mut Encoder,
        format: Format,
        scratch: &mut Scratch,
    ) -> Sent {
        match self {
            Link::Udp(sock, max) => {
                let max = *max;
                send_datagrams(batch, encoder, format, scratch, max, |m| sock.send(m))
            }
            Link::Unix(sock, max) => {
                let max = *max;
                send_datagrams(batch, encoder, format, scratch, max, |m| sock.send(m))
            }
            Link::Tcp(stream, framing) => {
                let framing = *framing;
                write_stream(stream, batch, encoder, format, framing, scratch)
            }
            Link::Tls(stream) => write_stream(
                stream.as_mut(),
                batch,
                encoder,
                format,
                StreamFraming::OctetCounting,
                scratch,
            ),
            Link::Relp(link) => link.send(batch, encoder, format, scratch),
        }
    }

    /// Messages handed to the collector but not yet acknowledged (RELP only).
    pub fn unacknowledged(&self) -> usize {
        match self {
            Link::Relp(link) => link.session.unacked_count(),
            _ => 0,
        }
    }

    /// Waits up to `timeout` for acknowledgements (RELP); reports how many arrived.
    pub fn wait_acks(&mut self, timeout: Duration) -> Sent {
        match self {
            Link::Relp(link) => match link.read_acks(Some(timeout)) {
                Ok(()) => Sent::ok(link.take_delivered()),
                Err(e) => Sent::failed(link.take_delivered(), e),
            },
            _ => Sent::ok(0),
        }
    }

    /// Closes gracefully: TLS close_notify, RELP `close`. Returns the RELP session
    /// so that its unacknowledged messages survive. Returns the messages whose
    /// acknowledgements arrived while closing.
    pub fn close(self, relp_session: &mut Option<ClientSession>) -> u64 {
        match self {
            Link::Tls(mut stream) => {
                stream.conn.send_close_notify();
                let _ = stream.flush();
                0
            }
            Link::Relp(mut link) => {
                let mut out = Vec::new();
                link.session.close(&mut out);
                let _ = link.stream.write_all(&out);
                let _ = link.read_acks(Some(Duration::from_millis(200)));
                let delivered = link.take_delivered();
                link.session.connection_lost();
                *relp_session = Some(link.session);
                delivered
            }
            Link::Udp(..) | Link::Unix(..) | Link::Tcp(..) => 0,
        }
    }

    /// Gives the RELP session back after a broken connection, so that its
    /// unacknowledged messages are resent on the next connection.
    pub fn abandon(self, relp_session: &mut Option<ClientSession>) {
        if let Link::Relp(mut link) = self {
            link.session.connection_lost();
            *relp_session = Some(link.session);
        }
    }
}

/// Sends one datagram per record, truncated to `max` bytes.
fn send_datagrams(
    batch: &mut VecDeque<Record>,
    encoder: &mut Encoder,
    format: Format,
    scratch: &mut Scratch,
    max: usize,
    mut send: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Sent {
    let mut sent = 0;
    while let Some(record) = batch.front() {
        scratch.message.clear();
        encoder.encode(record, format, &mut scratch.message);
        truncate_utf8(&mut scratch.message, max);
        if let Err(e) = send(&scratch.message) {
            return Sent::failed(sent, e);
        }
        batch.pop_front();
        sent += 1;
    }
    Sent::ok(sent)
}

/// Encodes and frames records into chunks of up to [`WRITE_CHUNK`] bytes and
/// writes each chunk with one call. Records leave `batch` only once their chunk is
/// written *and flushed* (for TLS, rustls buffers until flushed), so a failed
/// write leaves them for the next collector.
fn write_stream<W: Write>(
    stream: &mut W,
    batch: &mut VecDeque<Record>,
    encoder: &mut Encoder,
    format: Format,
    framing: StreamFraming,
    scratch: &mut Scratch,
) -> Sent {
    let mut delivered = 0;
    while !batch.is_empty() {
        scratch.out.clear();
        let mut in_chunk = 0;
        for record in batch.iter() {
            scratch.message.clear();
            encoder.encode(record, format, &mut scratch.message);
            frame(&scratch.message, framing, &mut scratch.out);
            in_chunk += 1;
            if scratch.out.len() >= WRITE_CHUNK {
                break;
            }
        }
        if let Err(e) = stream.write_all(&scratch.out).and_then(|()| stream.flush()) {
            return Sent::failed(delivered, e);
        }
        batch.drain(..in_chunk);
        delivered += in_chunk as u64;
    }
    Sent::ok(delivered)
}

/// Frames one message for a stream transport (RFC 6587).
fn frame(message: &[u8], framing: StreamFraming, out: &mut Vec<u8>) {
    match framing {
        StreamFraming::OctetCounting => flotilla_syslog::encode_octet_counted(message, out),
        StreamFraming::LineFeed => {
            // An LF inside a message would split it: documented rule, LF -> space.
            out.extend(message.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            out.push(b'\n');
        }
    }
}

/// Cuts `bytes` to at most `max` bytes without splitting a UTF-8 sequence.
fn truncate_utf8(bytes: &mut Vec<u8>, max: usize) {
    if bytes.len() <= max {
        return;
    }
    let mut cut = max;
    // Step back over continuation bytes (10xxxxxx) so a multi-byte char is not split.
    while cut > 0 && cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    bytes.truncate(cut);
}

impl RelpLink {
    /// Sends the `open` offer and waits for the collector's answer.
    fn open(&mut self, timeout: Duration) -> io::Result<()> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        self.stream.write_all(&out)?;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(event) = self.session.poll_event() {
                match event {
                    RelpEvent::Opened => {
                        // The session now resends what the previous connection left.
                        out.clear();
                        self.session.poll_transmit(&mut out);
                        self.stream.write_all(&out)?;
                        return Ok(());
                    }
                    RelpEvent::ServerClosed => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "RELP server closed the session",
                        ));
                    }
                    other => self.count(&other),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "RELP open not answered",
                ));
            }
            self.read_once(Some(deadline - now))?;
        }
    }

    /// Counts settled messages: acknowledged ones, and refused ones (a RELP
    /// server refuses only for permanent errors; they are not resent).
    fn count(&mut self, event: &RelpEvent) {
        match event {
            RelpEvent::Acked { count, .. } => self.acked += *count,
            RelpEvent::Rejected { .. } => self.acked += 1,
            _ => {}
        }
    }

    fn send(
        &mut self,
        batch: &mut VecDeque<Record>,
        encoder: &mut Encoder,
        format: Format,
        scratch: &mut Scratch,
    ) -> Sent {
        if self.session.unacked_count() == 0 {
            self.last_progress = Instant::now();
        }
        while let Some(record) = batch.front() {
            if self.session.free_capacity() == 0 {
                break;
            }
            scratch.message.clear();
            encoder.encode(record, format, &mut scratch.message);
            match self.session.send(scratch.message.clone()) {
                Ok(_) => {}
                Err(flotilla_relp::Error::QueueFull { .. }) => break,
                Err(flotilla_relp::Error::MessageTooLarge { max, .. }) => {
                    // Documented rule: an oversize message is cut at the end (as RFC
                    // 5424 receivers do), never left to block the queue.
                    let mut cut = scratch.message.clone();
                    truncate_utf8(&mut cut, max);
                    if self.session.send(cut).is_err() {
                        self.acked += 1; // settled: it can never be sent
                    }
                }
                Err(_) => self.acked += 1,
            }
            batch.pop_front();
        }
        scratch.out.clear();
        self.session.poll_transmit(&mut scratch.out);
        if !scratch.out.is_empty() {
            if let Err(e) = self.stream.write_all(&scratch.out) {
                return Sent::failed(self.take_delivered(), e);
            }
        }
        // Collect whatever acknowledgements are already there, without waiting.
        match self.read_acks(None) {
            Ok(()) => Sent::ok(self.take_delivered()),
            Err(e) => Sent::failed(self.take_delivered(), e),
        }
    }

    /// Settled messages not yet reported as delivered (acknowledgements can
    /// arrive while opening, or just before a read fails).
    fn take_delivered(&mut self) -> u64 {
        let new = self.acked - self.reported;
        self.reported = self.acked;
        new
    }

    /// Reads and applies acknowledgements: with `None`, only what is already
    /// available; with a timeout, waits up to it for at least one read.
    fn read_acks(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let before = self.acked;
        match timeout {
            None => {
                self.stream.set_nonblocking(true)?;
                let result = loop {
                    match self.read_once(None) {
                        Ok(()) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                self.stream.set_nonblocking(false)?;
                result?;
            }
            Some(t) => match self.read_once(Some(t)) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            },
        }
        let mut server_closed = false;
        while let Some(event) = self.session.poll_event() {
            if matches!(event, RelpEvent::ServerClosed) {
                server_closed = true;
            }
            self.count(&event);
        }
        // A `rsp` may be due (e.g. to a server's frame): send it.
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        if !out.is_empty() {
            self.stream.write_all(&out)?;
        }
        if server_closed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "RELP server closed the session",
            ));
        }
        let now = Instant::now();
        if self.acked != before || self.session.unacked_count() == 0 {
            self.last_progress = now;
        } else if now.duration_since(self.last_progress) > self.ack_timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "RELP collector stopped acknowledging",
            ));
        }
        Ok(())
    }

    fn read_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if let Some(t) = timeout {
            self.stream
                .set_read_timeout(Some(t.max(Duration::from_millis(1))))?;
        }
        let n = self.stream.read(&mut self.read_buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "RELP collector closed the connection",
            ));
        }
        let data = self.read_buf.get(..n).unwrap_or(&[]);
        self.session
            .handle_input(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_whole() {
        let mut b = "aé€".as_bytes().to_vec(); // 1 + 2 + 3 bytes
        truncate_utf8(&mut b, 5);
        assert_eq!(b, "aé".as_bytes());
        let mut b = b"abc".to_vec();
        truncate_utf8(&mut b, 10);
        assert_eq!(b, b"abc");
    }

    #[test]
    fn lf_framing_replaces_inner_line_feeds() {
        let mut out = Vec::new();
        frame(b"a\nb", StreamFraming::LineFeed, &mut out);
        assert_eq!(out, b"a b\n");
        out.clear();
        frame(b"a\nb", StreamFraming::OctetCounting, &mut out);
        assert_eq!(out, b"3 a\nb");
    }
}
