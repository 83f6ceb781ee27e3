//! The listeners: UDP, TCP (RFC 6587 framing detected per frame), TLS (RFC 5425) and
//! RELP, each a tokio task per socket or connection, handing [`Record`]s to the store.
//!
//! Rules every listener follows:
//! - **Nothing is dropped silently.** A frame longer than `max_frame` is stored cut to its
//!   first `max_frame` bytes and flagged truncated (for TCP and TLS the rest of that frame
//!   is skipped: MSG-LEN octets for octet counting, through the next LF for LF framing;
//!   a connection that closes inside a frame leaves what arrived, flagged truncated).
//!   Whatever does not parse as syslog is stored as it came and flagged unparsed.
//! - **Back-pressure, not unbounded memory.** Stream listeners wait for room in the store's
//!   queue before reading more (so senders are slowed by TCP flow control); RELP
//!   acknowledges a message only after the fsync that covers it. UDP cannot be slowed: a
//!   datagram that finds the queue full is dropped and counted (`udp_dropped`).
//! - **One bad client harms nobody else.** Each connection has its own task, buffer and
//!   frame decoder; a protocol error closes that connection only.

// An I/O shell (the listeners): it runs a task per connection and backs off.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_relp::{RelpServerConfig, RelpServerEvent, RelpServerSession};
use flotilla_syslog::{FrameDecoder, Framing};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::record::{FLAG_TRUNCATED, Record, Source, Transport, now_nanos};
use crate::store::Ingest;

/// One listener to start, from a `--listen` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// `udp://ADDR`
    Udp(SocketAddr),
    /// `tcp://ADDR`
    Tcp(SocketAddr),
    /// `tls://ADDR?cert=PEM&key=PEM[&client_ca=PEM]`
    Tls {
        /// Address.
        addr: SocketAddr,
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
        /// When set, clients must present a certificate signed by this CA (PEM).
        client_ca: Option<PathBuf>,
    },
    /// `relp://ADDR`
    Relp(SocketAddr),
}

impl ListenSpec {
    /// Parses one URL.
    pub fn parse(url: &str) -> Result<ListenSpec, Error> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Config(format!("listener {url:?}: expected SCHEME://ADDR")))?;
        let (addr, params) = rest.split_once('?').unwrap_or((rest, ""));
        let addr: SocketAddr = addr.parse().map_err(|_| {
            Error::Config(format!(
                "listener {url:?}: {addr:?} is not IP:PORT (e.g. 127.0.0.1:5514 or [::1]:5514)"
            ))
        })?;
        let mut cert = None;
        let mut key = None;
        let mut client_ca = None;
        for (k, v) in form_urlencoded::parse(params.as_bytes()) {
            match (scheme, k.as_ref()) {
                ("tls", "cert") => cert = Some(PathBuf::from(v.as_ref())),
                ("tls", "key") => key = Some(PathBuf::from(v.as_ref())),
                ("tls", "client_ca") => client_ca = Some(PathBuf::from(v.as_ref())),
                _ => {
                    return Err(Error::Config(format!(
                        "listener {url:?}: unknown parameter {k:?}"
                    )));
                }
            }
        }
        match scheme {
            "udp" => Ok(ListenSpec::Udp(addr)),
            "tcp" => Ok(ListenSpec::Tcp(addr)),
            "relp" => Ok(ListenSpec::Relp(addr)),
            "tls" => Ok(ListenSpec::Tls {
                addr,
                cert: cert.ok_or_else(|| {
                    Error::Config(format!("listener {url:?}: tls needs cert=PEM"))
                })?,
                key: key
                    .ok_or_else(|| Error::Config(format!("listener {url:?}: tls needs key=PEM")))?,
                client_ca,
            }),
            _ => Err(Error::Config(format!(
                "listener {url:?}: unknown scheme {scheme:?} (udp, tcp, tls, relp)"
            ))),
        }
    }

    /// Parses a comma-separated list of URLs.
    pub fn parse_list(urls: &str) -> Result<Vec<ListenSpec>, Error> {
        urls.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(ListenSpec::parse)
            .collect()
    }

    fn scheme(&self) -> &'static str {
        match self {
            ListenSpec::Udp(_) => "udp",
            ListenSpec::Tcp(_) => "tcp",
            ListenSpec::Tls { .. } => "tls",
            ListenSpec::Relp(_) => "relp",
        }
    }
}

/// Settings shared by the listeners.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Longest frame kept whole; longer ones are truncated to this (and counted).
    pub max_frame: usize,
    /// Most stream connections open at once over all listeners; more are accepted and
    /// closed at once (counted as refused).
    pub max_connections: usize,
    /// Time a TLS client has to finish its handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            max_frame: 64 * 1024,
            max_connections: 16_000,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// The listener's URL (with the bound port).
    pub url: String,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    oversize_truncated: AtomicU64,
    frame_errors: AtomicU64,
    udp_dropped: AtomicU64,
    relp_acked: AtomicU64,
    tls_handshake_failures: AtomicU64,
    protocol_errors: AtomicU64,
}

/// A snapshot of [`ListenerStats`] (what `/api/stats` shows).
#[derive(Debug, Clone, Serialize)]
pub struct ListenerSnapshot {
    /// The listener's URL.
    pub url: String,
    /// Stream connections open now.
    pub connections_open: u64,
    /// Stream connections accepted since start.
    pub connections_total: u64,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: u64,
    /// Frames (messages) received.
    pub frames: u64,
    /// Bytes of frames received.
    pub bytes: u64,
    /// Frames cut to `max_frame`.
    pub oversize_truncated: u64,
    /// Frames the framing could not read (none with the keep-all policy; RELP protocol
    /// errors are counted in `protocol_errors`).
    pub frame_errors: u64,
    /// UDP datagrams dropped because the store's queue was full.
    pub udp_dropped: u64,
    /// RELP messages acknowledged (after their fsync).
    pub relp_acked: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: u64,
    /// Connections closed for a protocol error (RELP) or an I/O error.
    pub protocol_errors: u64,
}

impl ListenerStats {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> ListenerSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerSnapshot {
            url: self.url.clone(),
            connections_open: g(&self.connections_open),
            connections_total: g(&self.connections_total),
            connections_refused: g(&self.connections_refused),
            frames: g(&self.frames),
            bytes: g(&self.bytes),
            oversize_truncated: g(&self.oversize_truncated),
            frame_errors: g(&self.frame_errors),
            udp_dropped: g(&self.udp_dropped),
            relp_acked: g(&self.relp_acked),
            tls_handshake_failures: g(&self.tls_handshake_failures),
            protocol_errors: g(&self.protocol_errors),
        }
    }
}

/// The running listeners.
pub struct Listeners {
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<Arc<ListenerStats>>,
    addrs: Vec<(String, SocketAddr)>,
}

impl Listeners {
    /// Binds every listener (so that errors such as "address in use" come back here),
    /// then serves them on the current tokio runtime.
    pub async fn start(
        specs: &[ListenSpec],
        ingest: Ingest,
        options: ListenOptions,
    ) -> Result<Listeners, Error> {
        let options = Arc::new(options);
        let connection_slots = Arc::new(Semaphore::new(options.max_connections));
        let mut out = Listeners {
            tasks: Vec::new(),
            stats: Vec::new(),
            addrs: Vec::new(),
        };
        for spec in specs {
            let ctx = |e: std::io::Error| Error::io(format!("binding {}", spec_url(spec, None)), e);
            match spec {
                ListenSpec::Udp(addr) => {
                    let socket = bind_udp(*addr).map_err(ctx)?;
                    let local = socket.local_addr().map_err(ctx)?;
                    let stats = out.add(spec, local);
                    out.tasks.push(tokio::spawn(serve_udp(
                        socket,
                        ingest.clone(),
                        options.clone(),
                        stats,
                    )));
                }
                ListenSpec::Tcp(addr) | ListenSpec::Relp(addr) | ListenSpec::Tls { addr, .. } => {
                    let tls = match spec {
                        ListenSpec::Tls {
                            cert,
                            key,
                            client_ca,
                            ..
                        } => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
                            cert,
                            key,
                            client_ca.as_ref(),
                        )?))),
                        _ => None,
                    };
                    let listener = TcpListener::bind(addr).await.map_err(ctx)?;
                    let local = listener.local_addr().map_err(ctx)?;
                    let stats = out.add(spec, local);
                    let kind = match spec {
                        ListenSpec::Relp(_) => StreamKind::Relp,
                        ListenSpec::Tls { .. } => StreamKind::Tls,
                        _ => StreamKind::Tcp,
                    };
                    out.tasks.push(tokio::spawn(accept_loop(
                        listener,
                        kind,
                        tls,
                        ingest.clone(),
                        options.clone(),
                        stats,
                        connection_slots.clone(),
                    )));
                }
            }
        }
        Ok(out)
    }

    fn add(&mut self, spec: &ListenSpec, local: SocketAddr) -> Arc<ListenerStats> {
        let url = spec_url(spec, Some(local));
        let stats = Arc::new(ListenerStats {
            url: url.clone(),
            ..ListenerStats::default()
        });
        self.stats.push(stats.clone());
        self.addrs.push((url, local));
        stats
    }

    /// `(url, bound address)` of each listener, in the order given.
    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The bound address of the first listener of a scheme (`udp`, `tcp`, `tls`, `relp`).
    pub fn addr_of(&self, scheme: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(url, _)| url.starts_with(&format!("{scheme}://")))
            .map(|(_, a)| *a)
    }

    /// Counters of every listener.
    pub fn snapshot(&self) -> Vec<ListenerSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// A closure returning the counters as JSON (`{"listeners": [...]}`), for the HTTP API.
    pub fn stats_fn(&self) -> Arc<dyn Fn() -> serde_json::Value + Send + Sync> {
        let stats = self.stats.clone();
        Arc::new(move || {
            let list: Vec<ListenerSnapshot> = stats.iter().map(|s| s.snapshot()).collect();
            serde_json::json!({ "listeners": list })
        })
    }

    /// Stops accepting and closes every connection (unacknowledged RELP messages are
    /// resent by their clients; records already handed to the store are kept).
    pub fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spec_url(spec: &ListenSpec, local: Option<SocketAddr>) -> String {
    let addr = match spec {
        ListenSpec::Udp(a) | ListenSpec::Tcp(a) | ListenSpec::Relp(a) => *a,
        ListenSpec::Tls { addr, .. } => *addr,
    };
    format!("{}://{}", spec.scheme(), local.unwrap_or(addr))
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Room for bursts while the store catches up (the kernel caps it at rmem_max).
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn serve_udp(
    socket: UdpSocket,
    ingest: Ingest,
    options: Arc<ListenOptions>,
    stats: Arc<ListenerStats>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let received_at = now_nanos();
        let mut records = Vec::with_capacity(64);
        records.push(udp_record(&buf[..n], peer, received_at, &options, &stats));
        // Take what else is already there: one batch for the store.
        while records.len() < 512 {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => {
                    records.push(udp_record(&buf[..n], peer, received_at, &options, &stats))
                }
                Err(_) => break,
            }
        }
        let count = records.len() as u64;
        if ingest.try_submit(records).is_err() {
            stats.udp_dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
}

fn udp_record(
    datagram: &[u8],
    peer: SocketAddr,
    received_at: i64,
    options: &ListenOptions,
    stats: &ListenerStats,
) -> Record {
    // A datagram is one message; a trailing LF (some senders add one) is kept as sent.
    let truncated = datagram.len() > options.max_frame;
    let kept = &datagram[..datagram.len().min(options.max_frame)];
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(kept.len() as u64, Ordering::Relaxed);
    if truncated {
        stats.oversize_truncated.fetch_add(1, Ordering::Relaxed);
    }
    Record {
        received_at,
        source: Source {
            transport: Transport::Udp,
            addr: peer,
        },
        flags: if truncated { FLAG_TRUNCATED } else { 0 },
        raw: Bytes::copy_from_slice(kept),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Tcp,
    Tls,
    Relp,
}

async fn accept_loop(
    listener: TcpListener,
    kind: StreamKind,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ingest: Ingest,
    options: Arc<ListenOptions>,
    stats: Arc<ListenerStats>,
    slots: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.connections_total.fetch_add(1, Ordering::Relaxed);
        stats.connections_open.fetch_add(1, Ordering::Relaxed);
        let ingest = ingest.clone();
        let options = options.clone();
        let stats = stats.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = serve_connection(stream, peer, kind, tls, &ingest, &options, &stats).await;
            if let Err(e) = result {
                stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %peer, error = %e, "connection closed");
            }
            stats.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: StreamKind,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ingest: &Ingest,
    options: &ListenOptions,
    stats: &ListenerStats,
) -> Result<(), Error> {
    let source = |transport| Source {
        transport,
        addr: peer,
    };
    match (kind, tls) {
        (StreamKind::Tls, Some(acceptor)) => {
            let handshake =
                tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(stream)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::io("TLS handshake", e));
                }
                Err(_) => {
                    stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Config("TLS handshake timed out".into()));
                }
            };
            serve_syslog_stream(stream, source(Transport::Tls), ingest, options, stats).await
        }
        (StreamKind::Relp, _) => {
            serve_relp(stream, source(Transport::Relp), ingest, options, stats).await
        }
        _ => serve_syslog_stream(stream, source(Transport::Tcp), ingest, options, stats).await,
    }
}

/// Read buffer of a stream connection.
const READ_BUF: usize = 16 * 1024;

/// Most bytes read from one connection into one batch.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Read buffer of a connection whose reads fill the small one.
const READ_BUF_BUSY: usize = 128 * 1024;

/// A stream connection whose reads come back within this time of each other with less
/// than [`COALESCE_BELOW`] bytes is streaming in small pieces: its task then waits this
/// long before each read, so that the kernel gathers its bytes into one bigger read, for
/// as long as each read brings at least [`COALESCE_KEEP`] bytes (and less than
/// [`MAX_BATCH_BYTES`]: a connection that far ahead is read at once).
///
/// Under loggen, two connections woke their tasks about 23,000 times a second with
/// ~5 KiB each, and the wake-ups cost more CPU than framing the bytes. Waiting a
/// millisecond (the store's group commit already waits up to 10 ms) reads ~64 KiB per
/// wake-up instead. A connection that is not streaming (its reads are further apart, or
/// bring little) is read as soon as its bytes arrive.
const COALESCE_WINDOW: Duration = Duration::from_millis(1);

/// See [`COALESCE_WINDOW`].
const COALESCE_BELOW: usize = 64 * 1024;

/// See [`COALESCE_WINDOW`].
const COALESCE_KEEP: usize = 4 * 1024;

/// Whether a stream connection's task waits before its next read ([`COALESCE_WINDOW`]):
/// a sans-I/O rule, fed the time and size of each read.
#[derive(Debug, Default)]
struct Coalescing {
    last_read: Option<std::time::Instant>,
    on: bool,
}

impl Coalescing {
    /// Notes a read of `taken` bytes at `now`; returns whether to wait before the next.
    fn after_read(&mut self, now: std::time::Instant, taken: usize) -> bool {
        let quick = self
            .last_read
            .is_some_and(|t| now.duration_since(t) < COALESCE_WINDOW);
        self.last_read = Some(now);
        self.on = if self.on {
            (COALESCE_KEEP..MAX_BATCH_BYTES).contains(&taken)
        } else {
            quick && taken < COALESCE_BELOW
        };
        self.on
    }
}

/// Decodes every complete frame in `decoder` into records sharing one buffer.
fn drain_frames(
    decoder: &mut FrameDecoder,
    finish: bool,
    source: Source,
    received_at: i64,
    stats: &ListenerStats,
) -> Vec<Record> {
    // Sized for everything buffered (the frames are most of it): no regrowth while the
    // frames are copied in.
    let mut data = Vec::with_capacity(decoder.buffered_len());
    let mut spans = Vec::with_capacity(decoder.buffered_len() / 128 + 1);
    loop {
        let next = if finish {
            decoder.finish()
        } else {
            decoder.next_frame()
        };
        match next {
            Some(Ok(frame)) => {
                let start = data.len();
                data.extend_from_slice(frame);
                spans.push((start, data.len(), decoder.last_frame_truncated()));
            }
            // Not produced with the keep-all policy; counted if it ever is.
            Some(Err(_)) => {
                stats.frame_errors.fetch_add(1, Ordering::Relaxed);
            }
            None => break,
        }
    }
    let data = Bytes::from(data);
    stats
        .frames
        .fetch_add(spans.len() as u64, Ordering::Relaxed);
    stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    spans
        .into_iter()
        .map(|(s, e, truncated)| {
            if truncated {
                stats.oversize_truncated.fetch_add(1, Ordering::Relaxed);
            }
            Record {
                received_at,
                source,
                flags: if truncated { FLAG_TRUNCATED } else { 0 },
                raw: data.slice(s..e),
            }
        })
        .collect()
}

/// TCP and TLS: RFC 6587 frames, octet counting or LF decided per frame.
async fn serve_syslog_stream<S: AsyncRead + Unpin>(
    mut stream: S,
    source: Source,
    ingest: &Ingest,
    options: &ListenOptions,
    stats: &ListenerStats,
) -> Result<(), Error> {
    let mut decoder = FrameDecoder::new(Framing::Auto, options.max_frame).keep_all();
    let mut buf = vec![0u8; READ_BUF];
    let mut coalescing = Coalescing::default();
    let mut wait_before_read = false;
    loop {
        if wait_before_read {
            tokio::time::sleep(COALESCE_WINDOW).await;
        }
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // Keep what arrived before the error, then report it.
                let records = drain_frames(&mut decoder, true, source, now_nanos(), stats);
                ingest.submit(records).await?;
                return Err(Error::io("reading", e));
            }
        };
        let received_at = now_nanos();
        if n == 0 {
            let records = drain_frames(&mut decoder, true, source, received_at, stats);
            ingest.submit(records).await?;
            return Ok(());
        }
        let read_at = std::time::Instant::now();
        decoder.push(&buf[..n]);
        // Take what else is already readable (without waiting): a busy sender's bytes go
        // to the store in fewer, larger batches, which costs fewer thread wake-ups.
        let mut taken = n;
        let mut closed = false;
        while taken < MAX_BATCH_BYTES {
            match stream.read(&mut buf).now_or_never() {
                Some(Ok(0)) => {
                    closed = true;
                    break;
                }
                Some(Ok(more)) => {
                    decoder.push(&buf[..more]);
                    taken += more;
                }
                // An error shows again on the next read; nothing ready: submit now.
                Some(Err(_)) | None => break,
            }
        }
        wait_before_read = coalescing.after_read(read_at, taken);
        if closed {
            let records = drain_frames(&mut decoder, true, source, received_at, stats);
            ingest.submit(records).await?;
            return Ok(());
        }
        // A busy sender fills the buffer: read in bigger pieces (fewer, larger batches for
        // the store); an idle or slow one goes back to the small buffer.
        if n == buf.len() && buf.len() < READ_BUF_BUSY {
            buf.resize(READ_BUF_BUSY, 0);
        } else if n < READ_BUF / 4 && buf.len() > READ_BUF {
            buf.truncate(READ_BUF);
            buf.shrink_to_fit();
        }
        let records = drain_frames(&mut decoder, false, source, received_at, stats);
        // Waits while the store is behind: this connection stops reading meanwhile.
        ingest.submit(records).await?;
    }
}

/// A RELP batch's transaction numbers, resolved once the batch is durable.
type DurableWait = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Vec<u32>,
                    Result<Result<(), Error>, tokio::sync::oneshot::error::RecvError>,
                ),
            > + Send,
    >,
>;

/// RELP: each `syslog` command is acknowledged after the fsync that covers it.
async fn serve_relp<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    source: Source,
    ingest: &Ingest,
    options: &ListenOptions,
    stats: &ListenerStats,
) -> Result<(), Error> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut session = RelpServerSession::new(RelpServerConfig {
        // A bigger DATALEN is a protocol error for the session; logd truncates what it
        // keeps to max_frame like the other listeners.
        max_data_len: options.max_frame.max(128 * 1024) * 4,
        auto_ack: false,
        ..RelpServerConfig::default()
    })
    .map_err(|e| Error::Config(format!("RELP session: {e}")))?;
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::new();
    // Durability waits, completed in arrival order.
    let mut waiting: FuturesOrdered<DurableWait> = FuturesOrdered::new();
    let mut eof = false;
    loop {
        tokio::select! {
            biased;
            Some((txnrs, durable)) = waiting.next(), if !waiting.is_empty() => {
                match durable {
                    Ok(Ok(())) => {
                        for t in &txnrs {
                            session
                                .ack(*t)
                                .map_err(|e| Error::Config(format!("RELP ack: {e}")))?;
                        }
                        stats.relp_acked.fetch_add(txnrs.len() as u64, Ordering::Relaxed);
                    }
                    // Not durable (the store is closing): no answer; the client resends
                    // after reconnecting.
                    _ => return Err(Error::Closed),
                }
                out.clear();
                session.poll_transmit(&mut out);
                if !out.is_empty() {
                    writer.write_all(&out).await.map_err(|e| Error::io("writing RELP", e))?;
                }
                if session.is_closed() && waiting.is_empty() {
                    return Ok(());
                }
            }
            read = reader.read(&mut buf), if !eof && waiting.len() < 64 => {
                let n = read.map_err(|e| Error::io("reading RELP", e))?;
                if n == 0 {
                    eof = true;
                    if waiting.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
                let received_at = now_nanos();
                let input = session.handle_input(&buf[..n]);
                let mut records = Vec::new();
                let mut txnrs = Vec::new();
                while let Some(event) = session.poll_event() {
                    match event {
                        RelpServerEvent::Syslog { txnr, message } => {
                            let truncated = message.len() > options.max_frame;
                            let mut message = message;
                            message.truncate(options.max_frame);
                            stats.frames.fetch_add(1, Ordering::Relaxed);
                            stats.bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
                            if truncated {
                                stats.oversize_truncated.fetch_add(1, Ordering::Relaxed);
                            }
                            records.push(Record {
                                received_at,
                                source,
                                flags: if truncated { FLAG_TRUNCATED } else { 0 },
                                raw: Bytes::from(message),
                            });
                            txnrs.push(txnr);
                        }
                        RelpServerEvent::ProtocolError(e) => {
                            tracing::debug!(error = %e, "RELP protocol error");
                        }
                        _ => {}
                    }
                }
                if !records.is_empty() {
                    let rx = ingest.submit_durable(records).await?;
                    waiting.push_back(Box::pin(async move { (txnrs, rx.await) }));
                }
                // Answers that need no fsync (open, close, errors) go out now.
                out.clear();
                session.poll_transmit(&mut out);
                if !out.is_empty() {
                    writer.write_all(&out).await.map_err(|e| Error::io("writing RELP", e))?;
                }
                if let Err(e) = input {
                    // Records decoded before the error are kept; their acks are moot.
                    return Err(Error::Config(format!("RELP protocol error: {e}")));
                }
            }
        }
    }
}

/// Builds the TLS server configuration from PEM files.
fn tls_config(
    cert: &PathBuf,
    key: &PathBuf,
    client_ca: Option<&PathBuf>,
) -> Result<rustls::ServerConfig, Error> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
    };
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &read(cert)?[..])
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| Error::Config(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Config(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c = c.map_err(|e| Error::Config(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| Error::Config(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| Error::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Config(format!("TLS certificate/key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_urls() {
        let specs = ListenSpec::parse_list(
            "udp://127.0.0.1:5514, tcp://[::1]:5514,relp://0.0.0.0:2514,tls://127.0.0.1:6514?cert=/c.pem&key=/k.pem&client_ca=/ca.pem",
        )
        .unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0], ListenSpec::Udp("127.0.0.1:5514".parse().unwrap()));
        assert!(matches!(
            &specs[3],
            ListenSpec::Tls {
                client_ca: Some(_),
                ..
            }
        ));
        for bad in [
            "tcp://localhost:5514",
            "ftp://127.0.0.1:1",
            "tls://127.0.0.1:1?cert=/c.pem",
            "tcp://127.0.0.1:1?x=1",
            "127.0.0.1:5514",
        ] {
            assert!(ListenSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coalescing_waits_only_for_connections_that_stream_in_small_pieces() {
        let t0 = std::time::Instant::now();
        let at = |micros: u64| t0 + Duration::from_micros(micros);
        // A light sender: reads far apart never wait.
        let mut light = Coalescing::default();
        for i in 0..10 {
            assert!(!light.after_read(at(i * 5_000), 300), "read {i}");
        }
        // A streaming sender: the second quick, small read turns waiting on...
        let mut busy = Coalescing::default();
        assert!(!busy.after_read(at(0), 5_000));
        assert!(busy.after_read(at(40), 5_000));
        // ...it stays on while each read after a wait brings enough...
        assert!(busy.after_read(at(1_100), 60_000));
        assert!(busy.after_read(at(2_200), 200_000));
        // ...and goes off when the reads bring little (the sender slowed down) or too
        // much (the connection is far ahead: read it at once).
        assert!(!busy.after_read(at(3_300), 100));
        assert!(!busy.after_read(at(9_000), 100));
        let mut flooded = Coalescing::default();
        assert!(!flooded.after_read(at(0), 1_000));
        assert!(flooded.after_read(at(10), 1_000));
        assert!(!flooded.after_read(at(1_020), MAX_BATCH_BYTES));
        // Big reads in quick succession need no waiting: they are big already.
        let mut big = Coalescing::default();
        assert!(!big.after_read(at(0), COALESCE_BELOW));
        assert!(!big.after_read(at(10), COALESCE_BELOW));
    }
}
