//! Connections to one collector, one per transport, driven with blocking sockets
//! from the sender thread (never from the application's threads).
//!
//! A [`Link`] takes records from the front of the sender's batch, encodes and
//! frames them, and writes many messages per system call. It reports how many
//! messages it *delivered*, and what that means ([`Delivery`]):
//! - RELP: **acknowledged** by the collector (its `rsp 200`);
//! - TCP and TLS: **taken by the collector's TCP**: every byte of the message was
//!   acknowledged by the peer's TCP (`tcpi_bytes_acked`, see `flotilla-tcpinfo`). A
//!   written message waits in the link's [`InFlight`] queue until then; when the
//!   connection fails, what its TCP did not take goes back to the front of the batch
//!   and is sent again on the next connection (what the collector's TCP took but the
//!   collector never read is lost with it: TCP cannot tell). Where the system cannot
//!   tell (not Linux), a written message counts as **written**, and says so;
//! - UDP and Unix datagrams: **sent**, without feedback; a message longer than the
//!   datagram limit is cut and counted as truncated.
//!
//! Every connection attempt has one deadline, `connect_timeout` from its start,
//! covering name resolution (see [`crate::resolve`]), the TCP connect, the TLS
//! handshake or the RELP `open`.
//!
//! Mutual TLS: when the collector asks for a client certificate, the configured
//! one is sent (or none). A TLS 1.3 server judges the client certificate only
//! after the client's side of the handshake is complete, and rsyslog's GnuTLS
//! driver checks it after the handshake in any version; either way a refused
//! client learns it only from an alert or a closed connection afterwards. So
//! when a certificate was asked for, the link waits for that verdict up to
//! [`CLIENT_AUTH_VERDICT_WAIT`] (within the connect deadline) before it counts as
//! connected: a refusal is then a failed connection attempt, and no message is
//! written into a connection the collector is about to close. A collector that
//! stays quiet for that long is taken to have accepted.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla_relp::client::{
    RelpClientConfig as RelpConfig, RelpClientEvent as RelpEvent, RelpClientSession,
};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;

use crate::Error;
use crate::config::{ClientIdentity, Collector, Format, StreamFraming, Transport};
use crate::encode::Encoder;
use crate::record::Record;
use crate::resolve::{Lookup, Resolver};

/// Longest wait, after a TLS handshake in which the collector asked for a client
/// certificate, for the collector to refuse it (see the module docs).
pub(crate) const CLIENT_AUTH_VERDICT_WAIT: Duration = Duration::from_millis(300);

/// Largest number of bytes gathered before one write.
const WRITE_CHUNK: usize = 256 * 1024;

/// Prepared, reusable per-collector settings (TLS configuration is loaded once)
/// and the collector's name-resolution state.
pub(crate) struct Target {
    /// The collector.
    pub collector: Collector,
    tls: Option<TlsSettings>,
    lookup: Lookup,
}

impl Target {
    /// Loads what the collector needs (CA certificates and client certificate for
    /// TLS); errors are loud.
    pub fn prepare(collector: Collector) -> Result<Self, Error> {
        let tls = tls_client_config(&collector.transport)?;
        Ok(Self {
            collector,
            tls,
            lookup: Lookup::default(),
        })
    }
}

/// A TLS collector's client configuration.
pub(crate) struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    client_auth: Arc<ClientAuthProbe>,
}

/// Presents the configured client certificate (if any) and notes that the
/// collector asked for one, so the link knows to wait for the verdict.
#[derive(Debug)]
struct ClientAuthProbe {
    identity: Option<Arc<CertifiedKey>>,
    /// Set when the collector sent a CertificateRequest in the current handshake.
    requested: AtomicBool,
}

impl ResolvesClientCert for ClientAuthProbe {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}

/// Reads every certificate of a PEM file (at least one).
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::Tls(format!("reading {what} file {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{what} file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{what} file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads a client certificate chain and its private key, checking they match.
fn load_identity(
    identity: &ClientIdentity,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, Error> {
    let chain = read_certificates(&identity.cert, "client certificate")?;
    let key_path = &identity.key;
    let pem = std::fs::read(key_path).map_err(|e| {
        Error::Tls(format!(
            "reading client key file {}: {e}",
            key_path.display()
        ))
    })?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::Tls(format!("client key file {}: {e}", key_path.display())))?
        .ok_or_else(|| {
            Error::Tls(format!(
                "client key file {} holds no PEM private key",
                key_path.display()
            ))
        })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        Error::Tls(format!(
            "client certificate {} and key {} do not go together: {e}",
            identity.cert.display(),
            key_path.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

/// Builds the rustls client configuration of a TLS transport (`None` for the
/// others): trusted CAs, server name, optional client certificate.
pub(crate) fn tls_client_config(transport: &Transport) -> Result<Option<TlsSettings>, Error> {
    let Transport::Tls {
        ca,
        server_name,
        client,
    } = transport
    else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca, "CA")? {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("CA file {}: bad certificate: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let identity = client
        .as_ref()
        .map(|identity| load_identity(identity, &provider))
        .transpose()?;
    let client_auth = Arc::new(ClientAuthProbe {
        identity,
        requested: AtomicBool::new(false),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(client_auth.clone());
    let name = ServerName::try_from(server_name.clone())
        .map_err(|e| Error::Tls(format!("server name {server_name:?} is invalid: {e}")))?;
    Ok(Some(TlsSettings {
        config: Arc::new(config),
        name,
        client_auth,
    }))
}

/// An open connection to one collector.
pub(crate) enum Link {
    /// Connected UDP socket.
    Udp(UdpSocket, usize),
    /// Connected Unix datagram socket.
    Unix(UnixDatagram, usize),
    /// TCP stream, and what it wrote that its peer's TCP has not taken yet.
    Tcp(CountedStream, StreamFraming, InFlight),
    /// TLS stream, and what it wrote that its peer's TCP has not taken yet.
    Tls(
        Box<rustls::StreamOwned<rustls::ClientConnection, CountedStream>>,
        InFlight,
    ),
    /// RELP session over TCP.
    Relp(Box<RelpLink>),
}

/// The state of a RELP connection.
pub(crate) struct RelpLink {
    stream: TcpStream,
    session: RelpClientSession,
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

/// What "delivered" means for a message, by the link that delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Acknowledged by the collector (RELP).
    Acknowledged,
    /// Every byte acknowledged by the collector's TCP (TCP, TLS).
    TakenByTcp,
    /// Written to a stream socket; the system cannot tell what the peer's TCP took.
    Written,
    /// Sent as a datagram (UDP, Unix): no feedback exists.
    Sent,
}

/// What one [`Link::send`] did: how many messages were delivered (also when it
/// then failed: those must still be counted), and whether the link still works.
pub(crate) struct Sent {
    /// Messages delivered by this call.
    pub delivered: u64,
    /// What delivered means for them.
    pub kind: Delivery,
    /// Datagrams cut to the transport's limit (UDP, Unix).
    pub truncated: u64,
    /// `Err` when the link failed and must be dropped.
    pub result: io::Result<()>,
}

impl Sent {
    fn ok(kind: Delivery, delivered: u64) -> Self {
        Self {
            delivered,
            kind,
            truncated: 0,
            result: Ok(()),
        }
    }

    fn failed(kind: Delivery, delivered: u64, error: io::Error) -> Self {
        Self {
            delivered,
            kind,
            truncated: 0,
            result: Err(error),
        }
    }
}

/// A TCP stream that counts the bytes written to it (for TLS: handshake and records
/// included), so that a message's end can be placed in the stream and compared with
/// what the peer's TCP acknowledged.
pub(crate) struct CountedStream {
    stream: TcpStream,
    written: u64,
}

impl CountedStream {
    fn new(stream: TcpStream) -> Self {
        Self { stream, written: 0 }
    }
}

impl Read for CountedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for CountedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Messages written to a stream whose bytes the peer's TCP has not all acknowledged
/// yet, oldest first, each with the stream offset at which it ends.
pub(crate) struct InFlight {
    /// `tcpi_bytes_acked` right after the connection opened; `None` when the system
    /// cannot tell (then a written message counts as [`Delivery::Written`]).
    baseline: Option<u64>,
    records: VecDeque<(u64, Record)>,
    /// Messages the peer's TCP took on this connection: if the collector then resets
    /// it, it may not have read them.
    taken: u64,
    /// Last time the peer's TCP took something, or nothing was waiting.
    last_progress: Instant,
    /// A peer that takes nothing for this long while messages wait is a failed link.
    stall_timeout: Duration,
}

impl InFlight {
    fn new(stream: &TcpStream, stall_timeout: Duration) -> Self {
        Self {
            baseline: flotilla_tcpinfo::bytes_acked(stream).ok(),
            records: VecDeque::new(),
            taken: 0,
            last_progress: Instant::now(),
            stall_timeout,
        }
    }

    fn kind(&self) -> Delivery {
        match self.baseline {
            Some(_) => Delivery::TakenByTcp,
            None => Delivery::Written,
        }
    }

    /// Removes the messages whose every byte the peer's TCP acknowledged; returns how
    /// many.
    fn settle(&mut self, stream: &TcpStream) -> u64 {
        let Some(baseline) = self.baseline else {
            return 0;
        };
        let Ok(now_acked) = flotilla_tcpinfo::bytes_acked(stream) else {
            return 0;
        };
        let acked = now_acked.saturating_sub(baseline);
        let mut taken = 0;
        while self.records.front().is_some_and(|(end, _)| *end <= acked) {
            self.records.pop_front();
            taken += 1;
        }
        if taken > 0 || self.records.is_empty() {
            self.last_progress = Instant::now();
        }
        self.taken += taken;
        taken
    }

    /// Whether the peer's TCP took nothing for too long while messages waited.
    fn stalled(&self) -> bool {
        !self.records.is_empty() && self.last_progress.elapsed() > self.stall_timeout
    }

    /// Puts what the peer's TCP did not take back at the front of `batch`, in order;
    /// returns how many.
    fn give_back(&mut self, batch: &mut VecDeque<Record>) -> u64 {
        let mut given = 0;
        while let Some((_, record)) = self.records.pop_back() {
            batch.push_front(record);
            given += 1;
        }
        given
    }
}

/// What a link's end says about what the collector's TCP took on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Messages whose delivery became known while ending.
    pub delivered: u64,
    /// Messages the collector's TCP took on a connection the collector then reset: a
    /// collector closes with a reset when it leaves data unread, so it may not have read
    /// these (counted in `delivered` earlier or now).
    pub maybe_unread: u64,
    /// Messages given back to the batch, to be sent again on the next connection.
    pub given_back: u64,
}

/// Whether an error means the peer reset the connection (`NotConnected`: a connection
/// this side opened is gone, which only a reset does before this side closes).
fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// Ends a stream gracefully: says so (FIN) and waits up to `wait` for the collector to
/// close its side. Returns whether it reset the connection instead (it left data unread).
fn ends_with_reset(stream: &TcpStream, wait: Duration) -> bool {
    if let Err(e) = stream.shutdown(std::net::Shutdown::Write) {
        return is_reset(&e);
    }
    let until = Instant::now() + wait;
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => return is_reset(&e),
        }
    }
}

/// Checks a stream whose peer is not expected to send anything: `Ok` while it is open
/// (whatever it sent is ignored), an error once it closed or failed.
fn check_open(stream: &TcpStream) -> io::Result<()> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.set_nonblocking(true)?;
    let mut probe = [0u8; 1];
    let peeked = stream.peek(&mut probe);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the collector closed the connection",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
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

/// Resolves `address` and connects to the first address that answers, all
/// before `deadline`.
fn connect_tcp(
    lookup: &mut Lookup,
    resolver: &Resolver,
    address: &str,
    deadline: Instant,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for addr in lookup.resolve(resolver, address, deadline)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {address} timed out"),
            ));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// After a handshake in which the collector asked for a client certificate,
/// waits up to [`CLIENT_AUTH_VERDICT_WAIT`] (and at most until `deadline`) for the
/// collector to refuse it: a fatal alert, a close or a reset fails the attempt;
/// silence, or session tickets, count as acceptance.
fn await_client_auth_verdict(
    conn: &mut rustls::ClientConnection,
    sock: &mut CountedStream,
    deadline: Instant,
) -> io::Result<()> {
    let refused = |why: String| {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the collector refused the TLS client: {why}"),
        )
    };
    let until = deadline.min(Instant::now() + CLIENT_AUTH_VERDICT_WAIT);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        sock.stream.set_read_timeout(Some(left))?;
        match conn.read_tls(sock) {
            Ok(0) => {
                return Err(refused(
                    "it closed the connection after the handshake".into(),
                ));
            }
            Ok(_) => {
                let state = conn
                    .process_new_packets()
                    .map_err(|e| refused(e.to_string()))?;
                if state.peer_has_closed() {
                    return Err(refused("it closed the session after the handshake".into()));
                }
                let unexpected = state.plaintext_bytes_to_read();
                if unexpected > 0 {
                    // A syslog collector sends no data; discard whatever came.
                    let mut sink = vec![0; unexpected];
                    conn.reader().read_exact(&mut sink)?;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(refused(e.to_string())),
        }
    }
}

impl Link {
    /// Opens a connection to `target`. `relp_session` is the RELP session that
    /// survives reconnects (its unacknowledged messages are resent).
    pub fn connect(
        target: &mut Target,
        resolver: &Resolver,
        connect_timeout: Duration,
        write_timeout: Duration,
        relp_session: &mut Option<RelpClientSession>,
    ) -> io::Result<Link> {
        let deadline = Instant::now() + connect_timeout;
        let address = target.collector.address.as_str();
        let lookup = &mut target.lookup;
        match &target.collector.transport {
            Transport::Udp { max_size } => {
                let peer = lookup
                    .resolve(resolver, address, deadline)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing")
                    })?;
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
                let s = connect_tcp(lookup, resolver, address, deadline)?;
                s.set_write_timeout(Some(write_timeout))?;
                let in_flight = InFlight::new(&s, write_timeout);
                Ok(Link::Tcp(CountedStream::new(s), *framing, in_flight))
            }
            Transport::Tls { .. } => {
                let Some(tls) = &target.tls else {
                    return Err(io::Error::other("TLS collector without TLS settings"));
                };
                let sock = connect_tcp(lookup, resolver, address, deadline)?;
                sock.set_write_timeout(Some(write_timeout))?;
                // Before the handshake: its bytes count in what the peer's TCP takes.
                let in_flight = InFlight::new(&sock, write_timeout);
                let mut sock = CountedStream::new(sock);
                let mut conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                    .map_err(io::Error::other)?;
                tls.client_auth.requested.store(false, Ordering::Relaxed);
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
                    sock.stream.set_read_timeout(Some(left))?;
                    conn.complete_io(&mut sock)?;
                }
                if tls.client_auth.requested.load(Ordering::Relaxed) {
                    await_client_auth_verdict(&mut conn, &mut sock, deadline)?;
                }
                Ok(Link::Tls(
                    Box::new(rustls::StreamOwned::new(conn, sock)),
                    in_flight,
                ))
            }
            Transport::Relp { window } => {
                let stream = connect_tcp(lookup, resolver, address, deadline)?;
                stream.set_write_timeout(Some(write_timeout))?;
                let mut session = match relp_session.take() {
                    Some(session) => session,
                    None => RelpClientSession::new(RelpConfig {
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
                let opened = link.open(deadline);
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
            Link::Tcp(stream, framing, in_flight) => {
                let framing = *framing;
                let written = write_stream(
                    stream,
                    |s| s.written,
                    true,
                    batch,
                    in_flight,
                    encoder,
                    format,
                    framing,
                    scratch,
                );
                settle_stream(&stream.stream, in_flight, written)
            }
            Link::Tls(stream, in_flight) => {
                let written = write_stream(
                    stream.as_mut(),
                    |s| s.sock.written,
                    false,
                    batch,
                    in_flight,
                    encoder,
                    format,
                    StreamFraming::OctetCounting,
                    scratch,
                );
                settle_stream(&stream.sock.stream, in_flight, written)
            }
            Link::Relp(link) => link.send(batch, encoder, format, scratch),
        }
    }

    /// For a RELP link: how many messages its session has sent again after a reconnect
    /// (the session lives across connections, so the count is its whole life's).
    pub fn relp_resent(&self) -> Option<u64> {
        match self {
            Link::Relp(link) => Some(link.session.stats().resent),
            _ => None,
        }
    }

    /// What a delivery on this link means.
    pub fn delivery(&self) -> Delivery {
        match self {
            Link::Relp(_) => Delivery::Acknowledged,
            Link::Tcp(_, _, in_flight) | Link::Tls(_, in_flight) => in_flight.kind(),
            Link::Udp(..) | Link::Unix(..) => Delivery::Sent,
        }
    }

    /// Messages handed to the collector and not yet acknowledged: by the collector
    /// (RELP), or by its TCP (TCP, TLS).
    pub fn unacknowledged(&self) -> usize {
        match self {
            Link::Relp(link) => link.session.unacked_count(),
            Link::Tcp(_, _, in_flight) | Link::Tls(_, in_flight) => in_flight.records.len(),
            Link::Udp(..) | Link::Unix(..) => 0,
        }
    }

    /// Waits up to `timeout` for acknowledgements (RELP: the collector's; TCP, TLS:
    /// its TCP's); reports how many messages they settled.
    pub fn wait_acks(&mut self, timeout: Duration) -> Sent {
        match self {
            Link::Relp(link) => match link.read_acks(Some(timeout)) {
                Ok(()) => Sent::ok(Delivery::Acknowledged, link.take_delivered()),
                Err(e) => Sent::failed(Delivery::Acknowledged, link.take_delivered(), e),
            },
            Link::Tcp(stream, _, in_flight) => wait_stream_acks(&stream.stream, in_flight, timeout),
            Link::Tls(stream, in_flight) => {
                wait_stream_acks(&stream.sock.stream, in_flight, timeout)
            }
            Link::Udp(..) | Link::Unix(..) => Sent::ok(Delivery::Sent, 0),
        }
    }

    /// Closes gracefully: TLS close_notify, RELP `close`. Returns the RELP session
    /// so that its unacknowledged messages survive. Reports the messages whose
    /// acknowledgements arrived while closing (RELP: the collector's; TCP, TLS: its
    /// TCP's, waited for up to 200 ms), and for TCP and TLS whether the collector
    /// closed in turn (it read everything) or reset the connection (it may not have
    /// read what its TCP took), waited for up to 500 ms.
    pub fn close(self, relp_session: &mut Option<RelpClientSession>) -> Ended {
        let linger = Duration::from_millis(500);
        match self {
            Link::Tls(mut stream, mut in_flight) => {
                let sent = wait_stream_acks(
                    &stream.sock.stream,
                    &mut in_flight,
                    Duration::from_millis(200),
                );
                stream.conn.send_close_notify();
                let _ = stream.flush();
                let reset = ends_with_reset(&stream.sock.stream, linger);
                Ended {
                    delivered: sent.delivered,
                    maybe_unread: if reset { in_flight.taken } else { 0 },
                    given_back: 0,
                }
            }
            Link::Tcp(stream, _, mut in_flight) => {
                let sent =
                    wait_stream_acks(&stream.stream, &mut in_flight, Duration::from_millis(200));
                let reset = ends_with_reset(&stream.stream, linger);
                Ended {
                    delivered: sent.delivered,
                    maybe_unread: if reset { in_flight.taken } else { 0 },
                    given_back: 0,
                }
            }
            Link::Relp(mut link) => {
                let mut out = Vec::new();
                link.session.close(&mut out);
                let _ = link.stream.write_all(&out);
                let _ = link.read_acks(Some(Duration::from_millis(200)));
                let delivered = link.take_delivered();
                link.session.connection_lost();
                *relp_session = Some(link.session);
                Ended {
                    delivered,
                    maybe_unread: 0,
                    given_back: 0,
                }
            }
            Link::Udp(..) | Link::Unix(..) => Ended::default(),
        }
    }

    /// After a broken connection (`error`): gives the RELP session back, so that its
    /// unacknowledged messages are resent on the next connection; puts what a TCP or
    /// TLS collector's TCP did not take back at the front of `batch`. Reports the
    /// messages found taken after all (the count survives the connection) and, when
    /// the collector reset the connection, those its TCP took on it.
    pub fn abandon(
        self,
        relp_session: &mut Option<RelpClientSession>,
        batch: &mut VecDeque<Record>,
        error: &io::Error,
    ) -> Ended {
        let (stream, mut in_flight) = match self {
            Link::Relp(mut link) => {
                link.session.connection_lost();
                *relp_session = Some(link.session);
                return Ended::default();
            }
            Link::Tcp(stream, _, in_flight) => (stream.stream, in_flight),
            Link::Tls(stream, in_flight) => (stream.sock.stream, in_flight),
            Link::Udp(..) | Link::Unix(..) => return Ended::default(),
        };
        let delivered = in_flight.settle(&stream);
        let given_back = in_flight.give_back(batch);
        Ended {
            delivered,
            maybe_unread: if is_reset(error) { in_flight.taken } else { 0 },
            given_back,
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
    let mut truncated = 0;
    while let Some(record) = batch.front() {
        scratch.message.clear();
        encoder.encode(record, format, &mut scratch.message);
        let cut = scratch.message.len() > max;
        truncate_utf8(&mut scratch.message, max);
        if let Err(e) = send(&scratch.message) {
            let mut failed = Sent::failed(Delivery::Sent, sent, e);
            failed.truncated = truncated;
            return failed;
        }
        batch.pop_front();
        sent += 1;
        truncated += u64::from(cut);
    }
    let mut ok = Sent::ok(Delivery::Sent, sent);
    ok.truncated = truncated;
    ok
}

/// Encodes and frames records into chunks of up to [`WRITE_CHUNK`] bytes and
/// writes each chunk with one call. Records leave `batch` only once their chunk is
/// written *and flushed* (for TLS, rustls buffers until flushed), so a failed
/// write leaves them for the next collector; they then wait in `in_flight` with the
/// stream offset at which they end (`exact_ends`: each its own, as for plain TCP;
/// otherwise the chunk's end, as TLS records do not map bytes one to one). Where the
/// system cannot tell what the peer's TCP took, they count as written at once.
///
/// Returns how many counted as written at once, and the write's error.
#[allow(clippy::too_many_arguments)]
fn write_stream<W: Write>(
    stream: &mut W,
    written: impl Fn(&W) -> u64,
    exact_ends: bool,
    batch: &mut VecDeque<Record>,
    in_flight: &mut InFlight,
    encoder: &mut Encoder,
    format: Format,
    framing: StreamFraming,
    scratch: &mut Scratch,
) -> (u64, io::Result<()>) {
    let tracked = in_flight.baseline.is_some();
    let mut counted = 0;
    let mut ends: Vec<u64> = Vec::new();
    while !batch.is_empty() {
        scratch.out.clear();
        ends.clear();
        let start = written(stream);
        let mut in_chunk = 0;
        for record in batch.iter() {
            scratch.message.clear();
            encoder.encode(record, format, &mut scratch.message);
            frame(&scratch.message, framing, &mut scratch.out);
            ends.push(start + scratch.out.len() as u64);
            in_chunk += 1;
            if scratch.out.len() >= WRITE_CHUNK {
                break;
            }
        }
        if let Err(e) = stream.write_all(&scratch.out).and_then(|()| stream.flush()) {
            return (counted, Err(e));
        }
        let chunk_end = written(stream);
        for (record, end) in batch.drain(..in_chunk).zip(ends.iter()) {
            if tracked {
                let end = if exact_ends { *end } else { chunk_end };
                in_flight.records.push_back((end, record));
            } else {
                counted += 1;
            }
        }
    }
    (counted, Ok(()))
}

/// After a write: counts what the peer's TCP took (and, where the system cannot tell,
/// what was written), and fails a link whose peer took nothing for too long.
fn settle_stream(
    stream: &TcpStream,
    in_flight: &mut InFlight,
    (written, result): (u64, io::Result<()>),
) -> Sent {
    let kind = in_flight.kind();
    let delivered = written + in_flight.settle(stream);
    match result {
        Err(e) => Sent::failed(kind, delivered, e),
        Ok(()) if in_flight.stalled() => Sent::failed(kind, delivered, stall_error(in_flight)),
        Ok(()) => Sent::ok(kind, delivered),
    }
}

fn stall_error(in_flight: &InFlight) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the collector's TCP took nothing for {:.1} s ({} messages waiting): it stopped reading",
            in_flight.stall_timeout.as_secs_f64(),
            in_flight.records.len()
        ),
    )
}

/// Waits up to `timeout` for the peer's TCP to take what waits, checking every
/// millisecond; fails when the connection closed or stalled.
fn wait_stream_acks(stream: &TcpStream, in_flight: &mut InFlight, timeout: Duration) -> Sent {
    let kind = in_flight.kind();
    let until = Instant::now() + timeout;
    let mut delivered = 0;
    loop {
        delivered += in_flight.settle(stream);
        if in_flight.records.is_empty() {
            return Sent::ok(kind, delivered);
        }
        if let Err(e) = check_open(stream) {
            delivered += in_flight.settle(stream);
            return Sent::failed(kind, delivered, e);
        }
        if in_flight.stalled() {
            return Sent::failed(kind, delivered, stall_error(in_flight));
        }
        let now = Instant::now();
        if now >= until {
            return Sent::ok(kind, delivered);
        }
        std::thread::sleep((until - now).min(Duration::from_millis(1)));
    }
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
    /// Sends the `open` offer and waits for the collector's answer until `deadline`.
    fn open(&mut self, deadline: Instant) -> io::Result<()> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        self.stream.write_all(&out)?;
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
        if !scratch.out.is_empty()
            && let Err(e) = self.stream.write_all(&scratch.out)
        {
            return Sent::failed(Delivery::Acknowledged, self.take_delivered(), e);
        }
        // Collect whatever acknowledgements are already there, without waiting.
        match self.read_acks(None) {
            Ok(()) => Sent::ok(Delivery::Acknowledged, self.take_delivered()),
            Err(e) => Sent::failed(Delivery::Acknowledged, self.take_delivered(), e),
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
