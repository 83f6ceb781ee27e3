//! The observer engine of a worker process: many connections multiplexed by a few
//! threads, each with one `mio` poll and one large read buffer, decoding with the lean
//! readers. The same code serves flotilla front-ends and nats-server.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol as SocketProtocol, SockAddr, Socket, Type};

use crate::BenchError;
use crate::lean::{LeanEvent, Protocol, StreamBuffer, unix_now_ns};
use crate::stats::LatencyHistogram;
use crate::transport::{Layers, Transport};

/// Bytes read per `read` call.
const READ_BUFFER: usize = 256 * 1024;

/// How often flotilla observers send a keep-alive ping: what a client of PROTOCOL.md
/// section 7 sends while it receives a live world (one ping after 20 s without sending;
/// it hears its front-end all the time, so it never probes).
pub(crate) const KEEPALIVE_EVERY: Duration = flotilla_wire::CLIENT_QUIET_PING_INTERVAL;

/// How often, while measuring, each thread samples the age of every observer's newest
/// state.
pub const AGE_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Connections opened per turn of the poll loop while connecting.
const CONNECTS_PER_TURN: usize = 32;

/// Tries per connection before it counts as failed.
const CONNECT_TRIES: u32 = 5;

/// What the observers of one worker process do.
#[derive(Debug, Clone)]
pub(crate) struct ObserverSettings {
    pub protocol: Protocol,
    pub server: SocketAddr,
    pub target: String,
    pub count: usize,
    pub threads: usize,
    pub source_ips: Vec<Ipv4Addr>,
    /// How the connections reach the server (flotilla: TCP, TLS, WebSocket).
    pub transport: Transport,
    /// The authority that signs the server's TLS certificate (TLS transports).
    pub ca: Option<std::path::PathBuf>,
    /// How often each connection pings (flotilla; [`KEEPALIVE_EVERY`] by the protocol).
    pub ping_every: Duration,
    /// Each thread polls its connections at most this often (zero: whenever anything
    /// arrives). A worker stands in for thousands of devices on other machines; woken
    /// for every few arrivals, it makes the *server* pay, since on loopback the sender's
    /// write runs the receiver's TCP and wakes its thread, a cost a device elsewhere
    /// never puts on a front-end. Pacing the polls leaves the wake-ups out and adds at
    /// most this much to each measured lag.
    pub poll_every: Duration,
}

/// What a worker's observers saw during one measurement window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObserverReport {
    /// Changes delivered to all observers of the worker.
    pub delivered: u64,
    /// flotilla snapshots after the first one (resyncs of slow observers).
    pub resyncs: u64,
    /// Error frames / `-ERR` lines received.
    pub server_errors: u64,
    /// Connections closed (by the server) since the worker started.
    pub closed: u64,
    /// Seconds between start and stop.
    pub measured_seconds: f64,
    /// Publish-to-receive latencies, `(ns, count)` buckets (batches, and snapshots that
    /// carry a timestamped state).
    pub histogram: Vec<(u64, u64)>,
    /// flotilla snapshots in the window that carried a timestamped state (resyncs, and
    /// batches coalesced into the latest state by the front-end).
    pub states: u64,
    /// At the window's end, the newest publish timestamp each observer had seen:
    /// `(timestamp ns, observers)`, 0 for observers that saw none. With one key changing,
    /// an observer whose newest timestamp is the last commit's holds the world's state.
    #[serde(default)]
    pub latest_seen: Vec<(u64, u64)>,
    /// The age of the newest state each observer held (now minus its publish time),
    /// sampled over every observer every [`AGE_SAMPLE_EVERY`] in the window, `(ns,
    /// count)` buckets: how stale the observers' replicas were, deliveries or not.
    #[serde(default)]
    pub state_age: Vec<(u64, u64)>,
}

/// The reports of several observer workers, summed.
#[derive(Debug, Default)]
pub struct ReportTotals {
    /// Every worker's latencies.
    pub histogram: LatencyHistogram,
    /// Deliveries.
    pub delivered: u64,
    /// Resyncs (snapshots after the first).
    pub resyncs: u64,
    /// Error frames received.
    pub server_errors: u64,
    /// Connections closed by the server.
    pub closed: u64,
    /// The longest measured window of a worker (seconds).
    pub measured_seconds: f64,
    /// Timestamped snapshots received.
    pub states: u64,
    /// The newest timestamp each observer had seen at the end: timestamp → observers.
    pub latest_seen: std::collections::BTreeMap<u64, u64>,
    /// Every worker's state-age samples.
    pub state_age: LatencyHistogram,
}

impl ReportTotals {
    /// Sums `reports`.
    pub fn of(reports: &[ObserverReport]) -> Self {
        let mut totals = Self::default();
        for report in reports {
            totals
                .histogram
                .merge(&LatencyHistogram::from_buckets(&report.histogram));
            totals.delivered += report.delivered;
            totals.resyncs += report.resyncs;
            totals.server_errors += report.server_errors;
            totals.closed += report.closed;
            totals.measured_seconds = totals.measured_seconds.max(report.measured_seconds);
            totals.states += report.states;
            for (stamp, observers) in &report.latest_seen {
                *totals.latest_seen.entry(*stamp).or_default() += observers;
            }
            totals
                .state_age
                .merge(&LatencyHistogram::from_buckets(&report.state_age));
        }
        totals
    }
}

#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    resyncs: u64,
    server_errors: u64,
    states: u64,
    histogram: LatencyHistogram,
    state_age: LatencyHistogram,
    /// The thread's last census (see `Shared::census`): timestamp → observers.
    latest_seen: std::collections::BTreeMap<u64, u64>,
    /// Which census `latest_seen` answers.
    census: u64,
}

#[derive(Debug, Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    attempted: AtomicUsize,
    connected: AtomicUsize,
    failed: AtomicUsize,
    subscribed: AtomicUsize,
    closed: AtomicUsize,
    /// Raised to ask every thread for the newest timestamp each of its observers saw.
    census: std::sync::atomic::AtomicU64,
    /// State ages are sampled while this is true (from the window's start until the
    /// world stops changing: after that, ages grow with no commit to miss).
    sampling: AtomicBool,
}

/// Counts of the connection phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ReadyCounts {
    /// Connections established.
    pub connected: usize,
    /// Connections whose subscription is confirmed.
    pub subscribed: usize,
    /// Connections that could not be established.
    pub failed: usize,
    /// Connections closed by the server.
    pub closed: usize,
}

impl ReadyCounts {
    /// Adds the `counts` a worker reported in `line` (absent counts add nothing).
    pub fn add_reported(&mut self, line: &serde_json::Value) -> Result<(), crate::BenchError> {
        let counts: ReadyCounts = line
            .get("counts")
            .cloned()
            .map(serde_json::from_value)
            .transpose()?
            .unwrap_or_default();
        self.connected += counts.connected;
        self.subscribed += counts.subscribed;
        self.failed += counts.failed;
        self.closed += counts.closed;
        Ok(())
    }
}

/// A running set of observer threads.
#[derive(Debug)]
pub(crate) struct ObserverPool {
    shared: Arc<Shared>,
    tallies: Vec<Arc<Mutex<Tally>>>,
    threads: Vec<JoinHandle<()>>,
    count: usize,
    started: Option<Instant>,
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ObserverPool {
    /// Starts the threads; each connects its share, then reads.
    pub fn start(settings: ObserverSettings) -> Result<Self, BenchError> {
        if settings.count == 0 || settings.threads == 0 || settings.source_ips.is_empty() {
            return Err(BenchError::InvalidConfig(
                "observers need a count, threads and a source address".into(),
            ));
        }
        let handshake = Arc::new(settings.protocol.handshake(&settings.target)?);
        let tls = match &settings.ca {
            Some(ca) => Some(crate::transport::client_config(ca)?),
            None => None,
        };
        let shared = Arc::new(Shared::default());
        let threads = settings.threads.min(settings.count);
        let mut tallies = Vec::new();
        let mut handles = Vec::new();
        for index in 0..threads {
            let share = settings.count / threads + usize::from(index < settings.count % threads);
            let tally = Arc::new(Mutex::new(Tally::default()));
            tallies.push(Arc::clone(&tally));
            let (shared, handshake, settings, tls) = (
                Arc::clone(&shared),
                Arc::clone(&handshake),
                settings.clone(),
                tls.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("observers-{index}"))
                .spawn(move || {
                    if let Err(error) = run_thread(
                        &settings,
                        index,
                        share,
                        &handshake,
                        tls.as_ref(),
                        &shared,
                        &tally,
                    ) {
                        eprintln!("observer thread {index}: {error}");
                    }
                })
                .map_err(BenchError::io("spawning an observer thread"))?;
            handles.push(handle);
        }
        Ok(Self {
            shared,
            tallies,
            threads: handles,
            count: settings.count,
            started: None,
        })
    }

    /// The connection counts so far.
    pub fn counts(&self) -> ReadyCounts {
        ReadyCounts {
            connected: self.shared.connected.load(Ordering::SeqCst),
            subscribed: self.shared.subscribed.load(Ordering::SeqCst),
            failed: self.shared.failed.load(Ordering::SeqCst),
            closed: self.shared.closed.load(Ordering::SeqCst),
        }
    }

    /// Waits until every connection was tried and every established one subscribed, or
    /// `timeout` passed; returns the counts.
    pub fn wait_ready(&self, timeout: Duration) -> ReadyCounts {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.counts();
            let attempted = self.shared.attempted.load(Ordering::SeqCst);
            let done =
                attempted >= self.count && counts.subscribed + counts.closed >= counts.connected;
            if done || Instant::now() >= deadline {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a measurement window: counters reset.
    pub fn start_measuring(&mut self) {
        for tally in &self.tallies {
            let mut tally = lock(tally);
            *tally = Tally::default();
        }
        self.shared.measuring.store(true, Ordering::SeqCst);
        self.shared.sampling.store(true, Ordering::SeqCst);
        self.started = Some(Instant::now());
    }

    /// The newest publish timestamp each observer has seen now: `(timestamp ns,
    /// observers)`, ascending. Every thread answers within one turn of its poll loop.
    pub fn census(&self) -> Vec<(u64, u64)> {
        let census = self.shared.census.fetch_add(1, Ordering::SeqCst) + 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && self
                .tallies
                .iter()
                .any(|tally| lock(tally).census != census)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut latest_seen = std::collections::BTreeMap::<u64, u64>::new();
        for tally in &self.tallies {
            let tally = lock(tally);
            if tally.census == census {
                for (stamp, observers) in &tally.latest_seen {
                    *latest_seen.entry(*stamp).or_default() += observers;
                }
            }
        }
        latest_seen.into_iter().collect()
    }

    /// Stops sampling state ages (the world stopped changing); deliveries are still
    /// counted until [`stop_measuring`](Self::stop_measuring).
    pub fn stop_sampling(&self) {
        self.shared.sampling.store(false, Ordering::SeqCst);
    }

    /// Ends the measurement window and returns what was seen in it, with a census of the
    /// newest timestamp every observer saw.
    pub fn stop_measuring(&mut self) -> ObserverReport {
        self.shared.measuring.store(false, Ordering::SeqCst);
        self.shared.sampling.store(false, Ordering::SeqCst);
        let latest_seen = self.census();
        let measured_seconds = self
            .started
            .take()
            .map(|started| started.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let mut report = ObserverReport {
            measured_seconds,
            closed: self.shared.closed.load(Ordering::SeqCst) as u64,
            ..ObserverReport::default()
        };
        let mut histogram = LatencyHistogram::new();
        let mut state_age = LatencyHistogram::new();
        for tally in &self.tallies {
            let tally = lock(tally);
            report.delivered += tally.delivered;
            report.resyncs += tally.resyncs;
            report.server_errors += tally.server_errors;
            report.states += tally.states;
            histogram.merge(&tally.histogram);
            state_age.merge(&tally.state_age);
        }
        report.latest_seen = latest_seen;
        report.state_age = state_age.to_buckets();
        report.histogram = histogram.to_buckets();
        report
    }
}

impl Drop for ObserverPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One observer connection.
struct Connection {
    stream: mio::net::TcpStream,
    buffer: StreamBuffer,
    subscribed: bool,
    /// The newest publish timestamp seen (batches and snapshots), 0 before any.
    latest_ns: u64,
    /// TLS and WebSocket, for those transports.
    layers: Option<Box<Layers>>,
}

impl Connection {
    /// Writes `bytes` (frames) through the connection's layers, best effort (a full
    /// socket drops a keep-alive; the bench's observers read far more than they write).
    fn send(&mut self, bytes: &[u8]) {
        match &mut self.layers {
            Some(layers) => {
                if let Ok(wrapped) = layers.wrap(bytes) {
                    let _ = self.stream.write(&wrapped);
                }
            }
            None => {
                let _ = self.stream.write(bytes);
            }
        }
    }
}

/// The source ports this process binds, in turn (see [`connect_from`]).
const SOURCE_PORTS: std::ops::Range<u32> = 10_000..65_000;

/// Connects to `server` from `source`, blocking. The source port is picked here, the next
/// of [`SOURCE_PORTS`] (each worker process has source addresses of its own), not by the
/// kernel: `bind` to port 0 searches the ephemeral range linearly in the ports in use,
/// which at tens of thousands of connections made connecting take a minute. A port in use
/// (a listener, a connection in TIME_WAIT) is skipped.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    static NEXT_PORT: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(SOURCE_PORTS.start);
    let span = SOURCE_PORTS.end - SOURCE_PORTS.start;
    let mut last_error = None;
    for _ in 0..64 {
        let offset = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(SOURCE_PORTS.start + offset).unwrap_or(u16::MAX);
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(SocketProtocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&SockAddr::from(SocketAddrV4::new(source, port))) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::AddrInUse => {
                last_error = Some(error);
                continue;
            }
            Err(error) => return Err(error),
        }
        match socket.connect_timeout(&SockAddr::from(server), Duration::from_secs(5)) {
            Ok(()) => {}
            // The 4-tuple is still in use (TIME_WAIT of an earlier run): another port.
            Err(error)
                if error.kind() == ErrorKind::AddrNotAvailable
                    || error.kind() == ErrorKind::AddrInUse =>
            {
                last_error = Some(error);
                continue;
            }
            Err(error) => return Err(error),
        }
        socket.set_nodelay(true)?;
        return Ok(socket.into());
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free source port")))
}

fn run_thread(
    settings: &ObserverSettings,
    index: usize,
    share: usize,
    handshake: &[u8],
    tls: Option<&Arc<rustls::ClientConfig>>,
    shared: &Shared,
    tally: &Mutex<Tally>,
) -> Result<(), BenchError> {
    let mut poll = Poll::new().map_err(BenchError::io("creating a poll"))?;
    let mut connections: Vec<Option<Connection>> = Vec::with_capacity(share);
    let protocol = settings.protocol;
    let keepalive = protocol.keepalive();
    let ping_every = settings.ping_every.max(Duration::from_millis(1));
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUFFER];
    // Each connection pings once every `ping_every`, the round spread over the
    // interval: clients' timers are their own, and a burst of every observer's ping at
    // once is not what a front-end meets.
    let mut keepalive_round = Instant::now();
    let mut keepalive_cursor = 0;
    let mut last_age_sample = Instant::now();
    let mut attempted = 0;
    let mut last_poll = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        // Connect in small steps between polls, so the connections made first are read
        // (and answer keep-alives) while the rest are still connecting.
        let connecting = attempted < share;
        for _ in 0..CONNECTS_PER_TURN.min(share - attempted) {
            let global = attempted * settings.threads + index;
            attempted += 1;
            connect_one(
                settings,
                global,
                handshake,
                tls,
                &poll,
                &mut connections,
                shared,
            );
        }
        let timeout = if connecting {
            Duration::ZERO
        } else {
            let since = last_poll.elapsed();
            if since < settings.poll_every {
                std::thread::sleep(settings.poll_every - since);
            }
            Duration::from_millis(100)
        };
        last_poll = Instant::now();
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(BenchError::io("polling")(error)),
        }
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let mut tally = lock(tally);
        let tally = &mut *tally;
        for event in events.iter() {
            let slot = event.token().0;
            let Some(Some(connection)) = connections.get_mut(slot) else {
                continue;
            };
            // A close that came with the last data raises no edge of its own: read on to
            // the end of the stream then, short reads or not.
            let closing = event.is_read_closed() || event.is_error();
            if let Some(reason) = read_connection(
                connection, protocol, &mut buf, closing, measuring, shared, tally,
            ) {
                if let Some(Some(mut gone)) = connections.get_mut(slot).map(Option::take) {
                    let _ = poll.registry().deregister(&mut gone.stream);
                }
                let closed_before = shared.closed.fetch_add(1, Ordering::SeqCst);
                if closed_before < 3 {
                    eprintln!("observer connection lost: {reason}");
                }
            }
        }
        if shared.sampling.load(Ordering::Relaxed) && last_age_sample.elapsed() >= AGE_SAMPLE_EVERY
        {
            last_age_sample = Instant::now();
            let now_ns = unix_now_ns();
            for connection in connections.iter().flatten() {
                if connection.latest_ns > 0 {
                    tally
                        .state_age
                        .record(now_ns.saturating_sub(connection.latest_ns));
                }
            }
        }
        let requested = shared.census.load(Ordering::SeqCst);
        if tally.census != requested {
            tally.latest_seen.clear();
            for connection in connections.iter().flatten() {
                *tally.latest_seen.entry(connection.latest_ns).or_default() += 1;
            }
            tally.census = requested;
        }
        if let Some(ping) = &keepalive {
            let into_round = keepalive_round.elapsed();
            let due = if into_round >= ping_every {
                connections.len()
            } else {
                (connections.len() as f64 * into_round.as_secs_f64() / ping_every.as_secs_f64())
                    as usize
            };
            for connection in connections
                .iter_mut()
                .take(due)
                .skip(keepalive_cursor)
                .flatten()
            {
                connection.send(ping);
            }
            keepalive_cursor = keepalive_cursor.max(due);
            if into_round >= ping_every {
                keepalive_round = Instant::now();
                keepalive_cursor = 0;
            }
        }
    }
    Ok(())
}

/// Connects observer number `global` of the worker (blocking), sends its handshake and
/// registers it with `poll`.
fn connect_one(
    settings: &ObserverSettings,
    global: usize,
    handshake: &[u8],
    tls: Option<&Arc<rustls::ClientConfig>>,
    poll: &Poll,
    connections: &mut Vec<Option<Connection>>,
    shared: &Shared,
) {
    let source = settings
        .source_ips
        .get(global % settings.source_ips.len())
        .copied()
        .unwrap_or(Ipv4Addr::LOCALHOST);
    let mut established = None;
    for attempt in 0..CONNECT_TRIES {
        match connect_from(source, settings.server) {
            Ok(stream) => {
                established = Some(stream);
                break;
            }
            Err(error) if attempt + 1 == CONNECT_TRIES => {
                eprintln!(
                    "observer connect from {source} to {}: {error}",
                    settings.server
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50 << attempt)),
        }
    }
    let Some(mut stream) = established else {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        shared.attempted.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let mut layers = None;
    let registered = Layers::open(&mut stream, settings.transport, tls)
        .and_then(|opened| {
            layers = opened;
            match &mut layers {
                Some(layers) => stream.write_all(&layers.wrap(handshake)?),
                None => stream.write_all(handshake),
            }
        })
        .and_then(|()| stream.set_nonblocking(true))
        .and_then(|()| {
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry()
                .register(&mut stream, Token(connections.len()), Interest::READABLE)
                .map(|()| stream)
        });
    match registered {
        Ok(stream) => {
            connections.push(Some(Connection {
                stream,
                buffer: StreamBuffer::default(),
                subscribed: false,
                latest_ns: 0,
                layers,
            }));
            shared.connected.fetch_add(1, Ordering::SeqCst);
        }
        Err(error) => {
            eprintln!("observer handshake: {error}");
            shared.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
    shared.attempted.fetch_add(1, Ordering::SeqCst);
}

/// Reads until the socket would block, or until a read shorter than `buf` (which
/// emptied it) unless the peer is `closing`; returns why the connection is gone, if it
/// is.
fn read_connection(
    connection: &mut Connection,
    protocol: Protocol,
    buf: &mut [u8],
    closing: bool,
    measuring: bool,
    shared: &Shared,
    tally: &mut Tally,
) -> Option<String> {
    let Connection {
        stream,
        buffer,
        subscribed,
        latest_ns,
        layers,
    } = connection;
    let mut frames = Vec::new();
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return Some("closed by the server".into()),
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return None,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Some(format!("read error: {error}")),
        };
        // A read shorter than the buffer emptied the socket: data arriving later raises
        // a new edge, so the `read` that would only find nothing is saved.
        let drained = n < buf.len() && !closing;
        let now_ns = unix_now_ns();
        let mut chunk = buf.get(..n).unwrap_or_default();
        if let Some(layers) = layers.as_mut() {
            frames.clear();
            match layers.unwrap(chunk, &mut frames) {
                Ok(reply) => {
                    if !reply.is_empty() {
                        let _ = stream.write(&reply);
                    }
                }
                Err(error) => return Some(format!("transport: {error}")),
            }
            chunk = &frames;
        }
        let mut on_event = |event: LeanEvent| match event {
            LeanEvent::Delivered { published_ns } => {
                *latest_ns = (*latest_ns).max(published_ns);
                if measuring {
                    tally.delivered += 1;
                    tally.histogram.record(now_ns.saturating_sub(published_ns));
                }
            }
            LeanEvent::Subscribed { published_ns } => {
                if let Some(published_ns) = published_ns {
                    *latest_ns = (*latest_ns).max(published_ns);
                }
                if !*subscribed {
                    *subscribed = true;
                    shared.subscribed.fetch_add(1, Ordering::SeqCst);
                } else if measuring && protocol == Protocol::Flotilla {
                    tally.resyncs += 1;
                    if let Some(published_ns) = published_ns {
                        // The latest state in place of batches: its age is this
                        // observer's lag as much as a batch's.
                        tally.states += 1;
                        tally.histogram.record(now_ns.saturating_sub(published_ns));
                    }
                }
            }
            LeanEvent::Reply(bytes) => match layers.as_mut() {
                Some(layers) => {
                    if let Ok(wrapped) = layers.wrap(&bytes) {
                        let _ = stream.write(&wrapped);
                    }
                }
                None => {
                    let _ = stream.write(&bytes);
                }
            },
            LeanEvent::ServerError => tally.server_errors += 1,
        };
        if let Err(error) = buffer.feed(protocol, chunk, &mut on_event) {
            return Some(format!("undecodable input: {error}"));
        }
        if drained {
            return None;
        }
    }
}
