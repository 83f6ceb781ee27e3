//! The tokio shell: sockets, timers and write batching around one [`Frontend`] machine.
//!
//! Design:
//!
//! - **A thread of its own**: everything below but the game links' keep-alive thread
//!   runs on a single-threaded tokio runtime on the front-end's thread, whatever runtime
//!   the caller has, so handing a frame from a reader to the event loop never wakes
//!   another thread.
//! - **One event-loop task owns the [`Frontend`]** and every connection's outbound queue.
//!   It receives `Event`s from a bounded channel, feeds them to the machine, turns the
//!   machine's outputs into queue operations, and flushes.
//! - **One small reader task per connection** (client or game server) waits for
//!   readability, reads into its [`Decoder`]'s buffer (allocated lazily, 4 KiB for a
//!   client, 64 KiB for a game link, released
//!   whenever no partial frame is pending, also after a stale readiness), and sends whole
//!   frames to the event loop. A read shorter than the space offered clears the readiness
//!   (no second `recv` that would find nothing). A full channel stops reading: TCP pushes
//!   back on the peer.
//! - **Writes are batched**: outbound frames (`Bytes`, shared between observers) are
//!   appended to a per-connection queue; after the loop has drained up to
//!   [`EVENTS_PER_TURN`] events, each connection with new data is flushed with one
//!   non-blocking `sendmsg` of up to [`IOVECS_PER_WRITE`] frames per syscall, in passes
//!   of [`FLUSH_STEP`] connections: between steps the readers run and their events are
//!   taken, so a batch arriving during a long fan-out joins the queues not yet written
//!   in that pass (the others get it in the next pass) rather than waiting for the
//!   whole pass to end; this halves the fan-out latency when writing is the bottleneck.
//!   An observer that is already queued for writing is not given each new batch: just
//!   before its connection is written the loop feeds the machine
//!   [`Input::ClientWriting`], and the machine adds every batch committed since, joined
//!   in one buffer (shared by the observers at the same position). Under load the work
//!   per observer follows its writes, not the batches.
//!   Under load many batches accumulate between flushes: a turn ends early (and flushes)
//!   only past [`FRAMES_PER_FLUSH`] queued frames or once one connection holds
//!   [`QUEUE_BYTES_PER_FLUSH`], so one syscall carries many frames (on loopback a
//!   `writev` costs about the same whatever it carries); an idle loop has a one-event
//!   turn and writes at once. Readers hand frames over with `try_send`, which does not
//!   spend their cooperative budget, so a burst read from the game link reaches the loop
//!   in one turn. Only when a socket would block is a tiny waiter task spawned to report
//!   writability; until then the machine's send budget (fed by
//!   [`Input::ClientDrained`]) decides what is dropped for a slow observer.
//! - **Game servers**: one task per configured address connects (with a timeout),
//!   hands the socket to the event loop, reads until the link ends, and reconnects with
//!   exponential backoff and full jitter. Each link's keep-alive (its `GameLinkKeeper`)
//!   sits beside its outbound queue, shared with a thread of its own that pings a quiet
//!   link and closes a silent one however long the event loop is held ([`uplink`]).
//!
//! Per idle client connection the shell holds an `Arc<TcpStream>` (tokio's registration),
//! a parked reader task with an empty decoder, an empty `VecDeque` and the session
//! machine (whose subscriptions share the replica's world id rather than the receive
//! buffer the `Subscribe` frame came in): about 3.5 KiB in user space (measured by
//! `flotilla bench connections`).

// The tokio shell around the front-end's machines: it reads the clock and the OS's
// randomness for them and sleeps until their deadlines.
#![allow(clippy::disallowed_methods)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flotilla_wire::{Decoder, ErrorCode, FrontendToClient, Message, RawFrame, WireError};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::FrontendConfig;
use crate::edge::{
    GameConnector, Handshake, LayerError, ListenerKind, OutLayers, ReadLayers, TlsServer,
    WebSettings,
};
use crate::error::FrontendError;
use crate::frontend::{CloseReason, Frontend, Input, Output, Stats};
use crate::ids::{ConnId, GameId, IdBuildHasher};

mod refusal;
mod uplink;
use uplink::{GameLinkShared, KeepAliveThread};

/// Events the event loop handles per turn before it flushes.
pub const EVENTS_PER_TURN: usize = 1024;

/// Machine outputs after which the event loop moves them to the connections' queues
/// mid-turn (writing only past [`FRAMES_PER_FLUSH`]).
pub const OUTPUTS_PER_PUMP: usize = 4096;

/// Frames written per `writev` call at most (Linux takes up to 1024).
pub const IOVECS_PER_WRITE: usize = 512;

/// Connections written per step of a flush pass; between steps the loop lets the
/// readers run and takes the events they delivered, so a batch that arrives while a
/// fan-out to thousands of observers is being written reaches the observers not yet
/// written in the same pass instead of waiting for the whole pass to end.
pub const FLUSH_STEP: usize = 64;

/// Frames per `writev` below which a flush uses a small iovec array.
const SMALL_WRITE_IOVECS: usize = 32;

/// Frames queued (over all connections) after which the event loop flushes mid-turn:
/// bounds the memory a turn of fan-out holds (about 40 bytes a frame: the frames' bytes
/// are shared) while letting each connection's `writev` carry many batches under load.
/// On loopback a `writev` costs about the same whatever it carries (most of it is the
/// receiver's wake-up), so with 10,000 observers the number of frames per call decides
/// the throughput.
pub const FRAMES_PER_FLUSH: usize = 2 * 1024 * 1024;

/// Bytes queued for one connection after which the event loop flushes mid-turn (or half
/// the send budget if that is smaller), so that batching never pushes a connection past
/// its send budget.
pub const QUEUE_BYTES_PER_FLUSH: usize = 64 * 1024;

/// Capacity of the channel from reader tasks to the event loop.
const CHANNEL_CAPACITY: usize = 8192;

/// Bytes reserved for one socket read of a client.
const READ_CHUNK: usize = 4096;

/// Bytes reserved for one socket read of a game-server link (it carries every batch).
const GAME_READ_CHUNK: usize = 64 * 1024;

/// How long a closing connection may take to write its last frames.
const LINGER: Duration = Duration::from_secs(2);

/// How often the event loop tells the machine the wall-clock time
/// ([`Input::WallClock`]: the expiry of join tokens), so that a stepped system clock is
/// followed.
const WALL_CLOCK_EVERY: Duration = Duration::from_secs(30);

/// The wall-clock time: milliseconds since the Unix epoch.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Shared counters of a running front-end.
#[derive(Debug, Default)]
pub struct ServerStats {
    machine: Mutex<Stats>,
    accepted: AtomicU64,
    write_calls: AtomicU64,
    bytes_written: AtomicU64,
    game_connects: AtomicU64,
    game_bytes_queued: AtomicU64,
    client_read_pauses: AtomicU64,
    refused: AtomicU64,
    refused_per_ip: AtomicU64,
    refused_penalized: AtomicU64,
    client_cap: AtomicU64,
    handshake_failures: AtomicU64,
    web_requests: AtomicU64,
    clients_gone: AtomicU64,
    clients_vanished: AtomicU64,
    memory_trims: AtomicU64,
    game_links_silent: AtomicU64,
}

/// A copy of a running front-end's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The machine's counters (connections, frames, batches, resyncs, bytes queued...).
    pub machine: Stats,
    /// Client connections accepted since start.
    pub accepted: u64,
    /// `writev` calls made (clients and game servers).
    pub write_calls: u64,
    /// Bytes written to sockets (clients and game servers).
    pub bytes_written: u64,
    /// Successful connections to game servers since start.
    pub game_connects: u64,
    /// Bytes queued for the fullest game-server link (not yet written), at the last turn.
    pub game_bytes_queued: u64,
    /// Times client reading was paused because a game-server link was full.
    pub client_read_pauses: u64,
    /// Client connections refused with `Overloaded`: the client cap was reached, or the
    /// process ran out of file descriptors (answered through a spare descriptor).
    pub refused: u64,
    /// Of those, connections refused because their IP address held
    /// [`max_clients_per_ip`](crate::FrontendConfig::max_clients_per_ip) already.
    pub refused_per_ip: u64,
    /// Of those, connections refused because their address flooded inputs recently
    /// ([`input_flood_penalty`](crate::FrontendConfig::input_flood_penalty)).
    pub refused_penalized: u64,
    /// The client cap in force: `max_clients`, or less when the process's file-descriptor
    /// limit is lower (see [`client_cap`]).
    pub client_cap: u64,
    /// Connections of the TLS and WebSocket listeners whose handshake failed (TLS, HTTP,
    /// timeout) or that found [`MAX_HANDSHAKES`](crate::edge::MAX_HANDSHAKES) running.
    pub handshake_failures: u64,
    /// Web requests answered (the observer page, the front-end list).
    pub web_requests: u64,
    /// Client connections whose reader ended (closed by either side).
    pub clients_gone: u64,
    /// Of those, connections the kernel gave up because the client's TCP acknowledged
    /// nothing for [`client_transport_timeout`](crate::FrontendConfig::client_transport_timeout):
    /// clients that vanished without closing.
    pub clients_vanished: u64,
    /// Times free heap memory was given back to the OS after connections closed
    /// (glibc `malloc_trim`, at most every 2 s and only after 32 connections ended).
    pub memory_trims: u64,
    /// Game links the keep-alive thread closed because their game server was silent for
    /// the timeout (with nothing of it waiting unread).
    pub game_links_silent: u64,
}

impl ServerStats {
    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            machine: *self
                .machine
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            accepted: self.accepted.load(Ordering::Relaxed),
            write_calls: self.write_calls.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            game_connects: self.game_connects.load(Ordering::Relaxed),
            game_bytes_queued: self.game_bytes_queued.load(Ordering::Relaxed),
            client_read_pauses: self.client_read_pauses.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            refused_per_ip: self.refused_per_ip.load(Ordering::Relaxed),
            refused_penalized: self.refused_penalized.load(Ordering::Relaxed),
            client_cap: self.client_cap.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            web_requests: self.web_requests.load(Ordering::Relaxed),
            clients_gone: self.clients_gone.load(Ordering::Relaxed),
            clients_vanished: self.clients_vanished.load(Ordering::Relaxed),
            memory_trims: self.memory_trims.load(Ordering::Relaxed),
            game_links_silent: self.game_links_silent.load(Ordering::Relaxed),
        }
    }
}

/// What reader tasks, the acceptor and the game connectors tell the event loop.
#[derive(Debug)]
enum Event {
    /// A client joined: its socket, its layers (TLS, WebSocket) and the handle whose drop
    /// (with the connection's queue) stops its reader even while client reading is paused.
    ClientConnected(
        ConnId,
        Arc<TcpStream>,
        Option<Box<OutLayers>>,
        oneshot::Sender<()>,
    ),
    /// A WebSocket control frame to answer with (a pong).
    ClientControl(ConnId, Bytes),
    /// A layered connection's bytes were refused: send this (a WebSocket close frame, or
    /// nothing) and close it.
    ClientAbort(ConnId, Option<Bytes>),
    /// rustls holds records to send for this connection.
    TlsPending(Peer),
    ClientFrame(ConnId, RawFrame),
    ClientMalformed(ConnId, WireError),
    ClientClosed(ConnId),
    /// A game link is up: its queue and keeper, shared with the keep-alive thread.
    GameConnected(GameId, Arc<GameLinkShared>),
    GameFrame(GameId, RawFrame),
    GameMalformed(GameId, WireError),
    GameClosed(GameId),
    Writable(Peer),
}

/// A connection of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Client(ConnId),
    Game(GameId),
}

/// A running front-end: listening for clients, connected to its game servers.
///
/// The front-end runs on a thread of its own with a single-threaded tokio runtime: the
/// event loop, the readers and the acceptor hand frames to each other without waking
/// another thread (no futex on the latency path), whatever runtime the caller uses.
#[derive(Debug)]
pub struct FrontendServer {
    local_addr: SocketAddr,
    edge_addrs: EdgeAddrs,
    tls: Option<Arc<TlsServer>>,
    stats: Arc<ServerStats>,
    shutdown: watch::Sender<bool>,
    finished: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The addresses of the layered listeners.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EdgeAddrs {
    tls: Option<SocketAddr>,
    ws: Option<SocketAddr>,
    wss: Option<SocketAddr>,
}

/// Every listener a front-end accepts clients on.
struct Listeners {
    raw: Acceptor,
    edge: Vec<(ListenerKind, Acceptor)>,
    /// The same listening sockets (descriptors of their own), for the kernel filter that
    /// drops the penalized addresses' connection attempts ([`refusal`]).
    filtered: Vec<std::net::TcpListener>,
    tls: Option<Arc<TlsServer>>,
    /// Dials the game links over TLS, if asked.
    game_tls: Option<GameConnector>,
}

/// Gives the heap memory freed by closed connections back to the operating system.
///
/// glibc's allocator keeps freed blocks in the middle of its heaps mapped: after a burst
/// (thousands of connections holding partial 64 KiB frames, or queues of pongs for
/// clients that flood pings without reading) a front-end stayed at the burst's peak once
/// every one of them was gone. So, at most every [`MemoryTrim::EVERY`] and only after at
/// least [`MemoryTrim::AFTER_CLOSED`] client connections ended since the last time, a
/// blocking-pool thread runs `malloc_trim` ([`flotilla_memtrim`]). A steady front-end
/// never trims; the event loop itself never waits for it except on the allocator's lock
/// while a heap is walked.
#[derive(Debug, Default)]
struct MemoryTrim {
    gone_at_last: u64,
}

impl MemoryTrim {
    /// The least time between two trims.
    const EVERY: Duration = Duration::from_secs(2);
    /// Client connections that must have ended since the last trim.
    const AFTER_CLOSED: u64 = 32;

    async fn run(mut self, stats: Arc<ServerStats>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Self::EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let gone = stats.clients_gone.load(Ordering::Relaxed);
            if gone.saturating_sub(self.gone_at_last) < Self::AFTER_CLOSED {
                continue;
            }
            self.gone_at_last = gone;
            if tokio::task::spawn_blocking(flotilla_memtrim::release_free_memory)
                .await
                .unwrap_or(false)
            {
                stats.memory_trims.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Connections flushed between two checks of the machine's deadlines during a pass.
const DEADLINE_CHECK_EVERY: usize = 256;

/// Pending connections the kernel queues before the acceptor takes them.
const LISTEN_BACKLOG: i32 = 4096;

/// File descriptors the client cap leaves for everything else: the listener, the
/// runtime's epoll and wake-up descriptors, stdio, log and recording files, the spare
/// descriptor, sockets still lingering after their close.
pub const FD_RESERVE: u64 = 256;

/// File descriptors reserved per configured game server (its link, and a reconnect's
/// socket while the old one closes).
pub const FD_RESERVE_PER_GAME: u64 = 4;

/// The most client connections a front-end accepts: `max_clients`, or fewer when the
/// process's file-descriptor limit (`fd_limit`; `None`: unlimited) could not hold them
/// and still leave [`FD_RESERVE`] plus [`FD_RESERVE_PER_GAME`] per game server. So a client
/// past the cap is always answered `Overloaded`, and a lost game link can always be dialled
/// again. At least 1.
pub fn client_cap(max_clients: usize, fd_limit: Option<u64>, game_servers: usize) -> usize {
    let Some(limit) = fd_limit else {
        return max_clients.max(1);
    };
    let reserve = FD_RESERVE + FD_RESERVE_PER_GAME * game_servers as u64;
    let room = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    max_clients.min(room).max(1)
}

/// Raises this process's soft file-descriptor limit to the hard one (a process holding a
/// socket per client needs it) and returns the limit then in force (`None`: unlimited).
/// A refusal leaves the limit as it was.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            log::debug!("raising the file-descriptor limit: {error}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Binds the client listener with a deep accept queue (a burst of thousands of
/// connections must not overflow it: the kernel would drop SYNs and clients retry
/// after a second).
fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl FrontendServer {
    /// Validates `config`, binds the client listener, starts connecting to the game
    /// servers and starts serving on the front-end's own thread.
    pub async fn bind(config: FrontendConfig) -> Result<Self, FrontendError> {
        config.validate()?;
        config.edge.validate()?;
        let bind = |addr: SocketAddr| {
            bind_listener(addr).map_err(|source| FrontendError::Bind { addr, source })
        };
        let listener = bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let tls = match &config.edge.tls {
            Some(files) => Some(Arc::new(TlsServer::load(files)?)),
            None => None,
        };
        let mut edge_listeners = Vec::new();
        let mut edge_addrs = EdgeAddrs::default();
        for (kind, addr, slot) in [
            (
                ListenerKind::Tls,
                config.edge.tls_listen,
                &mut edge_addrs.tls,
            ),
            (ListenerKind::Ws, config.edge.ws_listen, &mut edge_addrs.ws),
            (
                ListenerKind::Wss,
                config.edge.wss_listen,
                &mut edge_addrs.wss,
            ),
        ] {
            if let Some(addr) = addr {
                let listener = bind(addr)?;
                *slot = Some(listener.local_addr()?);
                edge_listeners.push((kind, listener));
            }
        }
        let seed = match config.seed {
            Some(seed) => seed,
            None => flotilla_balance::seed_from_os_entropy()
                .map_err(|error| FrontendError::Entropy(error.to_string()))?,
        };
        let recorder = match &config.record {
            Some(settings) => Some(crate::record::Recorder::create(settings, &config, seed)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A descriptor kept per listener for one purpose: when the process is out of them
        // (something besides clients used up the reserve), the acceptor closes it for a
        // moment so that the waiting client can be accepted and told `Overloaded` instead
        // of hanging.
        let acceptor = |listener: std::net::TcpListener| -> io::Result<Acceptor> {
            // Register the socket with the front-end's own runtime.
            let _context = runtime.enter();
            Ok(Acceptor {
                listener: TcpListener::from_std(listener)?,
                spare: std::fs::File::open("/dev/null").ok(),
                out_of_descriptors_logged: false,
                watch: TransportWatch::of(&config),
            })
        };
        let mut filtered = vec![listener.try_clone()?];
        for (_, listener) in &edge_listeners {
            filtered.push(listener.try_clone()?);
        }
        let listeners = Listeners {
            filtered,
            raw: acceptor(listener)?,
            edge: edge_listeners
                .into_iter()
                .map(|(kind, listener)| Ok((kind, acceptor(listener)?)))
                .collect::<io::Result<_>>()?,
            tls: tls.clone(),
            game_tls: match &config.edge.game_tls {
                Some(settings) => Some(GameConnector::new(settings)?),
                None => None,
            },
        };
        let stats = Arc::new(ServerStats::default());
        let fd_limit = raise_descriptor_limit();
        let cap = client_cap(config.max_clients, fd_limit, config.game_servers.len());
        stats.client_cap.store(cap as u64, Ordering::Relaxed);
        let capped_by = if cap < config.max_clients {
            format!(
                " (the file-descriptor limit is {}, and {} are kept for the listener, game \
                 links and closes)",
                fd_limit.unwrap_or_default(),
                FD_RESERVE + FD_RESERVE_PER_GAME * config.game_servers.len() as u64
            )
        } else {
            String::new()
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (finished_tx, finished) = oneshot::channel();
        log::info!(
            "front-end {} listening on {local_addr}, game servers {:?}, at most {cap} \
             clients{capped_by}",
            config.server_id,
            config.game_servers
        );
        let config_id = config.server_id.clone();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("frontend-{}", config.server_id))
            .spawn(move || {
                // Spawned, not run as the `block_on` future: a woken task runs straight
                // away, while waking the `block_on` future costs a driver poll first.
                let served = runtime.spawn(serve(
                    config,
                    seed,
                    recorder,
                    listeners,
                    thread_stats,
                    shutdown_rx,
                ));
                let _ = runtime.block_on(served);
                // Ends what is left (lingering closes) with the runtime.
                drop(runtime);
                let _ = finished_tx.send(());
            })?;
        if edge_addrs != EdgeAddrs::default() {
            log::info!(
                "front-end {} also listening: TLS {:?}, WebSocket {:?}, WebSocket over TLS {:?}",
                config_id,
                edge_addrs.tls,
                edge_addrs.ws,
                edge_addrs.wss
            );
        }
        Ok(Self {
            local_addr,
            edge_addrs,
            tls,
            stats,
            shutdown,
            finished: Some(finished),
            thread: Some(thread),
        })
    }

    /// The address clients connect to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the TLS listener listens (`tls://`), if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.edge_addrs.tls
    }

    /// Where the WebSocket listener (and the observer page) listens, if there is one.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.edge_addrs.ws
    }

    /// Where the WebSocket-over-TLS listener listens, if there is one.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.edge_addrs.wss
    }

    /// Reads the TLS certificate and key files again; connections accepted from now on
    /// use them (open ones keep theirs). An error leaves the current ones in use.
    pub fn reload_tls(&self) -> Result<(), FrontendError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Err(FrontendError::InvalidConfig("no TLS listener to reload")),
        }
    }

    /// The counters, for status lines.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops accepting, tells every client `Error{ShuttingDown}`, closes all connections
    /// and waits for the front-end's thread to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(finished) = self.finished.take() {
            let _ = finished.await;
        }
        if let Some(thread) = self.thread.take() {
            // It has sent `finished`: only the thread's exit is left.
            let _ = thread.join();
        }
    }
}

/// Everything a front-end runs, on its own runtime, until shutdown.
async fn serve(
    config: FrontendConfig,
    seed: u64,
    recorder: Option<crate::record::Recorder>,
    mut listeners: Listeners,
    stats: Arc<ServerStats>,
    shutdown_rx: watch::Receiver<bool>,
) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let clock = flotilla_conn::Clock::start();
    let keepers =
        match KeepAliveThread::start(&config.server_id, clock, Arc::clone(&stats), tx.clone()) {
            Ok(keepers) => Arc::new(keepers),
            Err(error) => {
                log::error!("cannot start the game links' keep-alive thread: {error}");
                return;
            }
        };
    let mut tasks = Vec::new();
    for (index, addr) in config.game_servers.iter().enumerate() {
        tasks.push(tokio::spawn(connect_game(
            GameDialer {
                index: index as u64,
                addr: addr.clone(),
                config: config.clone(),
                tls: listeners.game_tls.clone(),
                seed: seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                clock,
                keepers: Arc::clone(&keepers),
            },
            tx.clone(),
            Arc::clone(&stats),
            shutdown_rx.clone(),
        )));
    }
    let (pause_clients, pause_rx) = watch::channel(false);
    let penalties = Penalties::with_listeners(std::mem::take(&mut listeners.filtered));
    let gate = Arc::new(Gate::new(
        usize::try_from(stats.client_cap.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        config.max_clients_per_ip,
        penalties.clone(),
    ));
    let limits = ReadLimits {
        first_frame: config.max_hello_frame_len,
        frame: config.max_client_frame_len,
        pause: Some(pause_rx),
        chunk: READ_CHUNK,
    };
    tasks.push(tokio::spawn(accept_clients(
        listeners.raw,
        Arc::clone(&gate),
        limits.clone(),
        tx.clone(),
        Arc::clone(&stats),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(
        MemoryTrim::default().run(Arc::clone(&stats), shutdown_rx.clone()),
    ));
    let web = Arc::new(WebSettings {
        frontends: config.edge.web_frontends.clone(),
        world: config.edge.web_world.clone(),
    });
    for (kind, acceptor) in listeners.edge {
        tasks.push(tokio::spawn(accept_edge(
            acceptor,
            kind,
            listeners.tls.clone(),
            Arc::clone(&web),
            Arc::clone(&gate),
            ReadLimits {
                chunk: crate::edge::read_chunk(),
                ..limits.clone()
            },
            tx.clone(),
            Arc::clone(&stats),
            shutdown_rx.clone(),
        )));
    }
    let event_loop = EventLoop {
        frontend: Frontend::new(&config, seed),
        recorder,
        busy_poll: config.busy_poll,
        clock,
        clients: HashMap::default(),
        games: HashMap::default(),
        dirty: Vec::new(),
        dirty_games: Vec::new(),
        pass: Vec::new(),
        pass_at: 0,
        unflushed_frames: 0,
        flush_queue_bytes: QUEUE_BYTES_PER_FLUSH.min(config.send_budget / 2).max(1),
        full_queue: false,
        tx,
        stats,
        max_game_queued_bytes: config.max_game_queued_bytes,
        pause_clients,
        penalties,
        flood_penalty: config.input_flood_penalty,
    };
    event_loop.run(rx, shutdown_rx).await;
    for task in tasks {
        let _ = task.await;
    }
    // The last reference: dropping it stops and joins the keep-alive thread.
    drop(keepers);
}

/// A connection's outbound queue, owned by the event loop.
#[derive(Debug)]
struct OutQueue {
    stream: Arc<TcpStream>,
    frames: VecDeque<(Bytes, bool)>,
    /// Bytes of the front frame already written.
    offset: usize,
    waiting_writable: bool,
    /// True while the connection is in the event loop's list of queues to flush.
    dirty: bool,
    closing: bool,
    /// Bytes queued and not yet written (the front frame's unwritten part included).
    queued: usize,
    /// TLS and WebSocket, for a connection of a layered listener (see [`crate::edge`]).
    layers: Option<Box<OutLayers>>,
    /// A write failed with `ETIMEDOUT`: the kernel gave the peer up (see
    /// [`TransportWatch`]). The error is reported once, to whichever of the reader and the
    /// writer asks first, so a write that takes it counts the vanished client.
    timed_out: bool,
    /// Dropped with the queue: tells the connection's reader to stop, even while it waits
    /// for client reading to resume (else a closed connection's socket would stay open
    /// as long as a full game link pauses reading).
    _reader_stop: Option<oneshot::Sender<()>>,
}

impl OutQueue {
    fn new(
        stream: Arc<TcpStream>,
        layers: Option<Box<OutLayers>>,
        reader_stop: Option<oneshot::Sender<()>>,
    ) -> Self {
        Self {
            stream,
            frames: VecDeque::new(),
            offset: 0,
            waiting_writable: false,
            dirty: false,
            closing: false,
            queued: 0,
            layers,
            timed_out: false,
            _reader_stop: reader_stop,
        }
    }

    fn push(&mut self, bytes: Bytes, droppable: bool) {
        self.queued += bytes.len();
        self.frames.push_back((bytes, droppable));
    }

    /// Bytes at the front of the queue that must be written before anything is dropped:
    /// the rest of a WebSocket message in progress, or the partly written front frame.
    fn committed(&self) -> usize {
        match self.layers.as_deref().and_then(|layers| layers.ws.as_ref()) {
            Some(ws) => ws.message_left,
            None => usize::from(self.offset > 0),
        }
    }

    /// Discards queued droppable frames (not the partly written front one, nor those
    /// inside a WebSocket message already started); returns the bytes discarded.
    fn drop_droppable(&mut self) -> usize {
        let mut dropped = 0;
        let mut protected = self.committed();
        let mut first = true;
        let offset = self.offset;
        self.frames.retain(|(bytes, droppable)| {
            let unwritten = if first {
                bytes.len() - offset
            } else {
                bytes.len()
            };
            first = false;
            if protected > 0 {
                protected = protected.saturating_sub(unwritten.max(1));
                return true;
            }
            if *droppable {
                dropped += bytes.len();
                false
            } else {
                true
            }
        });
        self.queued = self.queued.saturating_sub(dropped);
        dropped
    }

    /// True while frames wait to be written: the machine's, or WebSocket control frames.
    fn has_frames(&self) -> bool {
        !self.frames.is_empty()
            || self
                .layers
                .as_deref()
                .and_then(|layers| layers.ws.as_ref())
                .is_some_and(|ws| !ws.control.is_empty())
    }

    /// True while bytes wait: queued frames, or TLS records rustls holds.
    fn has_pending(&self) -> bool {
        self.has_frames()
            || self
                .layers
                .as_deref()
                .and_then(|layers| layers.tls.as_ref())
                .is_some_and(|tls| crate::edge::lock(tls).wants_write())
    }

    /// Writes as much as the socket takes now, many frames per syscall. Returns the bytes
    /// of the machine's frames that left the queue (written, or discarded after a write
    /// error) and whether the socket would block.
    fn flush(&mut self, stats: &ServerStats) -> (usize, bool) {
        let mut total = 0;
        loop {
            if let Some(tls) = self
                .layers
                .as_deref()
                .and_then(|layers| layers.tls.as_ref())
            {
                let drained = crate::edge::drain_tls(&mut crate::edge::lock(tls), &self.stream);
                match drained {
                    Ok(0) => {}
                    Ok(written) => {
                        stats.write_calls.fetch_add(1, Ordering::Relaxed);
                        stats
                            .bytes_written
                            .fetch_add(written as u64, Ordering::Relaxed);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return (total, true);
                    }
                    Err(error) => {
                        log::debug!("TLS write failed: {error}");
                        self.timed_out |= error.kind() == io::ErrorKind::TimedOut;
                        total += self.discard_all();
                        break;
                    }
                }
            }
            if !self.has_frames() {
                break;
            }
            // A steady fan-out queues a few frames per turn: a small array then saves
            // clearing the large one for each of thousands of connections.
            let written = if self.frames.len() <= SMALL_WRITE_IOVECS {
                self.write_some::<SMALL_WRITE_IOVECS>()
            } else {
                self.write_some::<IOVECS_PER_WRITE>()
            };
            match written {
                Ok(0) => {
                    total += self.discard_all();
                    break;
                }
                Ok(written) => {
                    if self
                        .layers
                        .as_deref()
                        .is_none_or(|layers| layers.tls.is_none())
                    {
                        stats.write_calls.fetch_add(1, Ordering::Relaxed);
                        stats
                            .bytes_written
                            .fetch_add(written as u64, Ordering::Relaxed);
                    }
                    total += self.advance(written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return (total, true),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("write failed: {error}");
                    self.timed_out |= error.kind() == io::ErrorKind::TimedOut;
                    total += self.discard_all();
                    break;
                }
            }
        }
        (total, false)
    }

    /// One `writev` of up to `SLOTS` frames from the front of the queue (into rustls for a
    /// TLS connection; within the current message for a WebSocket).
    fn write_some<const SLOTS: usize>(&mut self) -> io::Result<usize> {
        let mut limit = usize::MAX;
        if let Some(ws) = self
            .layers
            .as_deref_mut()
            .and_then(|layers| layers.ws.as_mut())
        {
            let added = crate::edge::start_ws_message(ws, &mut self.frames, SLOTS);
            self.queued += added;
            limit = ws.message_left;
        }
        let mut slices = [IoSlice::new(&[]); SLOTS];
        let mut count = 0;
        let mut covered = 0usize;
        for (slot, (bytes, _)) in slices.iter_mut().zip(self.frames.iter()) {
            if covered >= limit {
                break;
            }
            let part = if count == 0 {
                bytes.get(self.offset..).unwrap_or_default()
            } else {
                bytes.as_ref()
            };
            let part = part.get(..limit - covered).unwrap_or(part);
            covered += part.len();
            *slot = IoSlice::new(part);
            count += 1;
        }
        let slices = slices.get(..count).unwrap_or_default();
        if let Some(tls) = self
            .layers
            .as_deref()
            .and_then(|layers| layers.tls.as_ref())
        {
            // Plaintext into rustls (bounded by its buffer limit); `flush` writes the
            // records. Nothing taken means its buffer is full: wait for the socket.
            return match std::io::Write::write_vectored(
                &mut crate::edge::lock(tls).writer(),
                slices,
            ) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                other => other,
            };
        }
        // `sendmsg`/`send` rather than `writev`/`write`: a socket call skips the VFS
        // layer's checks, which show in profiles at a million writes a second.
        let socket = socket2::SockRef::from(&*self.stream);
        if let [part] = slices {
            // One frame: a plain `send` (no iovec to import).
            return self.stream.try_io(Interest::WRITABLE, || socket.send(part));
        }
        self.stream
            .try_io(Interest::WRITABLE, || socket.send_vectored(slices))
    }

    /// Takes `written` bytes off the front of the queue; returns how many of them were the
    /// machine's (not WebSocket headers or control frames).
    fn advance(&mut self, mut written: usize) -> usize {
        let consumed = written;
        let mut overhead = 0;
        if let Some(ws) = self
            .layers
            .as_deref_mut()
            .and_then(|layers| layers.ws.as_mut())
        {
            overhead = consumed.min(ws.overhead_left);
            ws.overhead_left -= overhead;
            ws.message_left = ws.message_left.saturating_sub(consumed);
        }
        while written > 0 {
            let Some((front, _)) = self.frames.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if written >= left {
                written -= left;
                self.offset = 0;
                self.frames.pop_front();
            } else {
                self.offset += written;
                written = 0;
            }
        }
        self.queued = self.queued.saturating_sub(consumed);
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            // Give memory back once a burst is over.
            self.frames = VecDeque::new();
        }
        consumed - overhead
    }

    fn discard_all(&mut self) -> usize {
        let mut left: usize = self
            .frames
            .iter()
            .map(|(bytes, _)| bytes.len())
            .sum::<usize>()
            - self.offset;
        if let Some(ws) = self
            .layers
            .as_deref_mut()
            .and_then(|layers| layers.ws.as_mut())
        {
            left = left.saturating_sub(ws.overhead_left);
            *ws = crate::edge::WsOut::default();
        }
        self.frames = VecDeque::new();
        self.offset = 0;
        self.queued = 0;
        left
    }

    /// Queues a WebSocket control frame (a pong) to go out between messages.
    fn push_control(&mut self, frame: Bytes) {
        if let Some(ws) = self
            .layers
            .as_deref_mut()
            .and_then(|layers| layers.ws.as_mut())
        {
            ws.control.push_back(frame);
        }
    }

    /// Says goodbye at the TLS layer (close_notify) before the last flush.
    fn close_layers(&mut self) {
        if let Some(tls) = self
            .layers
            .as_deref()
            .and_then(|layers| layers.tls.as_ref())
        {
            crate::edge::lock(tls).send_close_notify();
        }
    }

    fn shutdown_socket(&self) {
        let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Both);
    }
}

/// The task that owns the machine.
struct EventLoop {
    /// Addresses refused for flooding inputs, shared with the acceptor.
    penalties: Penalties,
    /// How long such an address is refused.
    flood_penalty: Duration,
    frontend: Frontend,
    /// Writes every input and a digest of the outputs (`--record`).
    recorder: Option<crate::record::Recorder>,
    /// How long to keep polling after traffic before sleeping.
    busy_poll: Duration,
    clock: flotilla_conn::Clock,
    clients: HashMap<ConnId, OutQueue, IdBuildHasher>,
    /// Game links: their queues are shared with the keep-alive thread ([`uplink`]).
    games: HashMap<GameId, Arc<GameLinkShared>, IdBuildHasher>,
    dirty: Vec<Peer>,
    /// Game links with frames to write. They are written first, at every step of the
    /// loop, never in a pass behind client fan-out: a game link whose pongs wait behind
    /// thousands of observers' writes is closed by its game server for silence, and losing
    /// it unsubscribes every observer of this front-end.
    dirty_games: Vec<Peer>,
    /// The queues of the flush pass in progress (written [`FLUSH_STEP`] at a time).
    pass: Vec<Peer>,
    /// How many of `pass` are written.
    pass_at: usize,
    /// Frames queued since the last flush.
    unflushed_frames: usize,
    /// A connection's queued bytes past which the loop flushes mid-turn.
    flush_queue_bytes: usize,
    /// True when a connection's queue reached `flush_queue_bytes` since the last flush.
    full_queue: bool,
    tx: mpsc::Sender<Event>,
    stats: Arc<ServerStats>,
    /// Past this many bytes queued for one game server, clients are not read.
    max_game_queued_bytes: usize,
    /// True while clients are not read.
    pause_clients: watch::Sender<bool>,
}

/// Warns (at most every 10 s) when a part of the event loop's turn took long enough to
/// delay keep-alives: past [`SLOW_TURN`], peers that wait for this loop's pings or pongs
/// (the game server closes a link silent for 3 s) are at risk.
#[derive(Debug, Default)]
struct SlowTurns {
    last_warning: Option<Instant>,
    since_warning: u64,
}

/// A turn part this long is reported.
const SLOW_TURN: Duration = Duration::from_millis(500);

impl SlowTurns {
    fn note(&mut self, what: &str, took: Duration) {
        if took < SLOW_TURN {
            return;
        }
        self.since_warning += 1;
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        log::warn!(
            "the event loop was held {took:?} by {what} ({} such turns since the last \
             warning): the process is short of CPU for its connections",
            self.since_warning
        );
        self.last_warning = Some(Instant::now());
        self.since_warning = 0;
    }
}

impl EventLoop {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>, mut shutdown: watch::Receiver<bool>) {
        // One timer, moved to the machine's next deadline (no periodic scan).
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut timer_at: Option<flotilla_conn::Instant> = None;
        let mut slow_turns = SlowTurns::default();
        let mut wall_clock_told: Option<Instant> = None;
        loop {
            let turn_started = Instant::now();
            // Before anything else (the first client), then every WALL_CLOCK_EVERY (judged
            // on the turn's own clock reading: no extra one per turn).
            if wall_clock_told.is_none_or(|at| turn_started.duration_since(at) >= WALL_CLOCK_EVERY)
            {
                wall_clock_told = Some(turn_started);
                let now = self.now();
                self.feed(
                    now,
                    Input::WallClock {
                        unix_millis: unix_millis(),
                    },
                );
            }
            let deadline = self.frontend.poll_timeout();
            if deadline != timer_at {
                timer_at = deadline;
                if let Some(at) = deadline {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(self.clock.to_std(at)));
                }
            }
            let mut handled_traffic = false;
            let flushing = self.pass_at < self.pass.len()
                || !self.dirty.is_empty()
                || !self.dirty_games.is_empty();
            if flushing {
                // Between steps of a pass: let the readers run (the runtime polls the
                // sockets first), then take what they delivered without waiting.
                let yielded = Instant::now();
                tokio::task::yield_now().await;
                slow_turns.note("the other tasks (readers, writers) ran", yielded.elapsed());
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                () = &mut timer, if timer_at.is_some() => {
                    // What the readers delivered before the deadline comes first: a frame
                    // waiting in the queue is not the peer's silence (a loop that fell
                    // behind must not close a game link that kept talking).
                    if !self.full_flush_due() {
                        handled_traffic |= self.handle_queued_events(&mut rx, None);
                    }
                    let now = self.now();
                    timer_at = None;
                    self.feed(now, Input::Timeout);
                }
                event = rx.recv(), if !self.full_flush_due() => {
                    let Some(event) = event else { break };
                    handled_traffic = self.handle_queued_events(&mut rx, Some(event));
                }
                _ = std::future::ready(()), if flushing => {}
            }
            let work_started = Instant::now();
            let left = if self.full_flush_due() {
                self.pump();
                false
            } else {
                self.flush_some(FLUSH_STEP)
            };
            self.apply_backpressure();
            slow_turns.note("a flush step", work_started.elapsed());
            *self
                .stats
                .machine
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = self.frontend.stats();
            // Stay awake a little after a short turn (a routed message, whose answer
            // comes back soon); a long turn (a fan-out to many observers) keeps the
            // CPU busy enough already and must not spend more of it spinning.
            // `yield_now` lets the runtime poll the sockets (without blocking) and run
            // the readers, which feed `rx`. Each spin also gives the core away
            // (`sched_yield`): a thread woken on this core (a game server or client
            // sharing it) runs at once instead of waiting for the spinner's time slice,
            // and on a core of its own the call returns at once.
            if handled_traffic
                && !left
                && !self.busy_poll.is_zero()
                && turn_started.elapsed() < self.busy_poll
            {
                let until = Instant::now() + self.busy_poll;
                while rx.is_empty() && Instant::now() < until {
                    std::thread::yield_now();
                    tokio::task::yield_now().await;
                }
            }
        }
        self.close_everything();
    }

    fn now(&self) -> flotilla_conn::Instant {
        self.clock.now()
    }

    /// Handles `first` (if any) and then what the readers queued, without waiting, up to
    /// [`EVENTS_PER_TURN`] events; stops early once a full flush is due. Returns whether
    /// it handled anything.
    fn handle_queued_events(
        &mut self,
        rx: &mut mpsc::Receiver<Event>,
        first: Option<Event>,
    ) -> bool {
        let mut handled = 0;
        if let Some(event) = first {
            self.on_event(event);
            handled += 1;
        }
        while handled < EVENTS_PER_TURN {
            if self.frontend.pending_outputs() >= OUTPUTS_PER_PUMP {
                // Move the fan-out to the connections' queues before the machine's queue
                // grows with many more batches; write only once many frames wait, so that
                // under load each `writev` carries many batches (an idle loop still writes
                // at once, at the end of its short turn).
                self.drain_outputs();
                if self.full_flush_due() {
                    // A full flush ends the turn: timers and the other tasks run before
                    // the next one.
                    break;
                }
            }
            match rx.try_recv() {
                Ok(event) => {
                    self.on_event(event);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        handled > 0
    }

    /// Feeds the machine one input (and records it with `--record`).
    fn feed(&mut self, now: flotilla_conn::Instant, input: Input) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.input(now, &input, &mut self.frontend);
        }
        self.frontend.handle(now, input);
    }

    /// Takes the machine's next output (and records it with `--record`).
    fn next_output(&mut self) -> Option<Output> {
        let output = self.frontend.poll_output()?;
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.output(&output);
        }
        Some(output)
    }

    /// Stops reading clients while a game server's queue is over its limit (their inputs
    /// would pile up in it), and resumes once every game queue is under half of it. TCP
    /// then pushes back on the clients; nothing is dropped. The machine is told, so it
    /// does not time clients out for a silence that is the front-end's own; and it closes
    /// a game link that stays over the limit with nothing written (`GameDrained` reports
    /// the writes), which ends the pause.
    fn apply_backpressure(&mut self) {
        let fullest = self
            .games
            .values()
            .map(|link| link.lock().queue.queued)
            .max()
            .unwrap_or(0);
        self.stats
            .game_bytes_queued
            .store(fullest as u64, Ordering::Relaxed);
        let paused = *self.pause_clients.borrow();
        if !paused && fullest > self.max_game_queued_bytes {
            self.stats
                .client_read_pauses
                .fetch_add(1, Ordering::Relaxed);
            self.pause_clients.send_replace(true);
            let now = self.now();
            self.feed(now, Input::ClientReadingPaused);
        } else if paused && fullest <= self.max_game_queued_bytes / 2 {
            self.pause_clients.send_replace(false);
            let now = self.now();
            self.feed(now, Input::ClientReadingResumed);
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = self.now();
        let input = match event {
            Event::ClientConnected(conn, stream, layers, reader_stop) => {
                self.clients
                    .insert(conn, OutQueue::new(stream, layers, Some(reader_stop)));
                Input::ClientConnected(conn)
            }
            Event::ClientControl(conn, frame) => {
                if let Some(queue) = self.clients.get_mut(&conn) {
                    queue.push_control(frame);
                    self.mark_dirty(Peer::Client(conn));
                }
                return;
            }
            Event::TlsPending(peer) => {
                self.mark_dirty(peer);
                return;
            }
            Event::ClientAbort(conn, goodbye) => {
                if let Some(queue) = self.clients.get_mut(&conn) {
                    if let Some(goodbye) = goodbye {
                        queue.push_control(goodbye);
                    }
                    queue.closing = true;
                    self.mark_dirty(Peer::Client(conn));
                }
                Input::ClientClosed(conn)
            }
            Event::ClientFrame(conn, frame) => Input::ClientFrame(conn, frame),
            Event::ClientMalformed(conn, error) => Input::ClientMalformed(conn, error),
            Event::ClientClosed(conn) => {
                // Shutting the socket down wakes a writability waiter still holding it, so
                // the descriptor is released now, not when a peer that never reads is gone.
                if let Some(queue) = self.clients.remove(&conn) {
                    queue.shutdown_socket();
                }
                Input::ClientClosed(conn)
            }
            Event::GameConnected(game, link) => {
                self.games.insert(game, link);
                Input::GameConnected(game)
            }
            Event::GameFrame(game, frame) => Input::GameFrame(game, frame),
            Event::GameMalformed(game, error) => Input::GameMalformed(game, error),
            Event::GameClosed(game) => {
                if let Some(link) = self.games.remove(&game) {
                    let mut out = link.lock();
                    out.closed = true;
                    out.queue.shutdown_socket();
                }
                Input::GameClosed(game)
            }
            Event::Writable(Peer::Game(game)) => {
                if let Some(link) = self.games.get(&game) {
                    link.lock().queue.waiting_writable = false;
                    self.mark_dirty(Peer::Game(game));
                }
                return;
            }
            Event::Writable(Peer::Client(conn)) => {
                if let Some(queue) = self.clients.get_mut(&conn) {
                    queue.waiting_writable = false;
                    self.mark_dirty(Peer::Client(conn));
                }
                return;
            }
        };
        self.feed(now, input);
    }

    /// Moves the machine's outputs into the connections' queues, without writing.
    fn drain_outputs(&mut self) {
        while let Some(output) = self.next_output() {
            self.apply(output);
        }
    }

    /// Applies the machine's outputs and flushes, until the machine has nothing more.
    fn pump(&mut self) {
        while self.flush_some(usize::MAX) {}
    }

    /// True when the queues must all be written before more events are read: too many
    /// frames wait, or one connection's queue reached its flush size.
    fn full_flush_due(&self) -> bool {
        self.unflushed_frames >= FRAMES_PER_FLUSH || self.full_queue
    }

    /// Applies the machine's outputs and flushes up to `limit` connections of the
    /// current pass over the dirty queues (starting the next pass when one ends).
    /// Returns whether flushing work is left.
    fn flush_some(&mut self, limit: usize) -> bool {
        self.drain_outputs();
        // One clock read per step, not per connection.
        let now = self.now();
        self.flush_games(now);
        let mut flushed = 0;
        loop {
            if self.pass_at >= self.pass.len() {
                self.pass.clear();
                self.pass_at = 0;
                self.drain_outputs();
                self.unflushed_frames = 0;
                self.full_queue = false;
                self.flush_games(now);
                if self.dirty.is_empty() {
                    return false;
                }
                // Queues that get new frames from now on join the next pass.
                std::mem::swap(&mut self.pass, &mut self.dirty);
            }
            if flushed >= limit {
                return true;
            }
            let Some(&peer) = self.pass.get(self.pass_at) else {
                continue;
            };
            self.pass_at += 1;
            self.flush(peer, now);
            flushed += 1;
            if flushed % DEADLINE_CHECK_EVERY == 0 {
                self.run_due_deadlines();
            }
        }
    }

    /// Feeds the machine `Timeout` when one of its deadlines has passed, and writes what
    /// that gives the game links at once. Called between steps of a long flush pass (a
    /// fan-out to tens of thousands of observers on a starved core can take seconds), so
    /// that the game link's keep-alive ping goes out on time: a game server that hears
    /// nothing for 3 s closes the link, and the front-end is not silent, only busy.
    fn run_due_deadlines(&mut self) {
        let now = self.now();
        if self.frontend.poll_timeout().is_some_and(|at| at <= now) {
            self.feed(now, Input::Timeout);
            self.drain_outputs();
            self.flush_games(now);
        }
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::SendToClient {
                conn,
                bytes,
                droppable,
            } => self.enqueue(Peer::Client(conn), bytes, droppable),
            Output::SendToGame(game, bytes) => self.enqueue_game(game, bytes),
            Output::DropQueuedBatches(conn) => {
                if let Some(queue) = self.clients.get_mut(&conn) {
                    let dropped = queue.drop_droppable();
                    let now = self.now();
                    self.feed(now, Input::ClientDiscarded(conn, dropped));
                }
            }
            Output::CloseClient(conn, reason) => {
                log::debug!("closing client {conn:?}: {reason:?}");
                if reason == CloseReason::InputRate
                    && !self.flood_penalty.is_zero()
                    && let Some(peer) = self
                        .clients
                        .get(&conn)
                        .and_then(|queue| queue.stream.peer_addr().ok())
                {
                    log::warn!(
                        "{} flooded inputs: refusing its connections for {:?}",
                        peer.ip(),
                        self.flood_penalty
                    );
                    self.penalties
                        .add(peer.ip(), Instant::now() + self.flood_penalty);
                }
                if let Some(queue) = self.clients.get_mut(&conn) {
                    queue.closing = true;
                    self.mark_dirty(Peer::Client(conn));
                }
            }
            Output::CloseGame(game, reason) => {
                log::warn!("closing game link {game:?}: {reason:?}");
                if let Some(link) = self.games.get(&game) {
                    link.lock().queue.closing = true;
                    self.mark_dirty(Peer::Game(game));
                }
            }
        }
    }

    fn enqueue(&mut self, peer: Peer, bytes: Bytes, droppable: bool) {
        let conn = match peer {
            Peer::Client(conn) => conn,
            Peer::Game(game) => return self.enqueue_game(game, bytes),
        };
        let flush_queue_bytes = self.flush_queue_bytes;
        let Some(queue) = self.clients.get_mut(&conn) else {
            return;
        };
        queue.push(bytes, droppable);
        self.unflushed_frames += 1;
        if queue.waiting_writable {
            return;
        }
        if queue.queued >= flush_queue_bytes {
            self.full_queue = true;
        }
        if !queue.dirty {
            queue.dirty = true;
            self.dirty.push(peer);
        }
    }

    /// Queues a frame for a game server (it counts as sent for the link's keeper) and
    /// marks the link for writing at this step.
    fn enqueue_game(&mut self, game: GameId, bytes: Bytes) {
        let now = self.now();
        let Some(link) = self.games.get(&game) else {
            return;
        };
        let mut out = link.lock();
        out.queue.push(bytes, false);
        out.keeper.on_sent(now);
        if !out.queue.waiting_writable && !out.queue.dirty {
            out.queue.dirty = true;
            self.dirty_games.push(Peer::Game(game));
        }
    }

    /// Puts `peer` in the list of queues to flush at the end of the turn (once).
    fn mark_dirty(&mut self, peer: Peer) {
        match peer {
            Peer::Client(conn) => {
                if let Some(queue) = self.clients.get_mut(&conn)
                    && !queue.dirty
                {
                    queue.dirty = true;
                    self.dirty.push(peer);
                }
            }
            Peer::Game(game) => {
                if let Some(link) = self.games.get(&game) {
                    let mut out = link.lock();
                    if !out.queue.dirty {
                        out.queue.dirty = true;
                        self.dirty_games.push(peer);
                    }
                }
            }
        }
    }

    /// Writes every game link's queue (see `dirty_games`), and reports what the
    /// keep-alive thread wrote for them since the last step.
    fn flush_games(&mut self, now: flotilla_conn::Instant) {
        while !self.dirty_games.is_empty() {
            for peer in std::mem::take(&mut self.dirty_games) {
                if let Peer::Game(game) = peer {
                    self.flush_game(game, now);
                }
            }
            // Writing reports drained bytes to the machine, which may queue more for a
            // game link (rarely): those go out now too.
            self.drain_outputs();
        }
        let written_by_keeper: Vec<(GameId, usize)> = self
            .games
            .iter()
            .filter_map(|(game, link)| {
                let drained = std::mem::take(&mut link.lock().drained_unreported);
                (drained > 0).then_some((*game, drained))
            })
            .collect();
        for (game, drained) in written_by_keeper {
            self.feed(now, Input::GameDrained(game, drained));
        }
    }

    /// Writes what a game link's queue holds and reports the bytes written at `now`; a
    /// closing link gets a bounded time for its last frames.
    fn flush_game(&mut self, game: GameId, now: flotilla_conn::Instant) {
        let Some(link) = self.games.get(&game) else {
            return;
        };
        let mut out = link.lock();
        out.queue.dirty = false;
        if out.queue.closing {
            drop(out);
            if let Some(link) = self.games.remove(&game) {
                let stats = Arc::clone(&self.stats);
                let mut out = link.lock();
                out.closed = true;
                out.queue.close_layers();
                let would_block = out.queue.waiting_writable || out.queue.flush(&stats).1;
                if would_block {
                    drop(out);
                    tokio::spawn(linger_game(link, stats));
                } else {
                    out.queue.shutdown_socket();
                }
            }
            return;
        }
        if out.queue.waiting_writable {
            return;
        }
        let (drained, would_block) = out.queue.flush(&self.stats);
        if would_block {
            out.queue.waiting_writable = true;
            let stream = Arc::clone(&out.queue.stream);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                if stream.writable().await.is_ok() {
                    let _ = tx.send(Event::Writable(Peer::Game(game))).await;
                }
            });
        }
        drop(out);
        if drained > 0 {
            self.feed(now, Input::GameDrained(game, drained));
        }
    }

    /// Writes what `peer`'s queue holds (taking it off the dirty list) and reports the
    /// bytes written to the machine at `now`.
    fn flush(&mut self, peer: Peer, now: flotilla_conn::Instant) {
        let conn = match peer {
            Peer::Client(conn) => conn,
            Peer::Game(game) => return self.flush_game(game, now),
        };
        let Some(queue) = self.clients.get(&conn) else {
            return;
        };
        if !queue.closing && !queue.waiting_writable {
            // The batches its observers are owed join the queue just before the write
            // (which follows at once: they do not make a full flush due).
            let full_queue = self.full_queue;
            self.feed(now, Input::ClientWriting(conn));
            self.drain_outputs();
            self.full_queue = full_queue;
        }
        // Borrows the queue and the counters apart (no `Arc` clone per connection).
        let Some(queue) = self.clients.get_mut(&conn) else {
            return;
        };
        queue.dirty = false;
        if queue.closing {
            let stats = Arc::clone(&self.stats);
            if let Some(mut queue) = self.clients.remove(&conn) {
                queue.close_layers();
                let would_block = queue.waiting_writable || queue.flush(&stats).1;
                if would_block {
                    // A peer that does not read gets a bounded time for its last frames.
                    tokio::spawn(linger(queue, stats));
                } else {
                    queue.shutdown_socket();
                }
            }
            return;
        }
        if queue.waiting_writable {
            return;
        }
        let (drained, would_block) = queue.flush(&self.stats);
        if std::mem::take(&mut queue.timed_out) {
            self.stats.clients_vanished.fetch_add(1, Ordering::Relaxed);
        }
        if would_block {
            queue.waiting_writable = true;
            let stream = Arc::clone(&queue.stream);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                if stream.writable().await.is_ok() {
                    let _ = tx.send(Event::Writable(peer)).await;
                }
            });
        }
        // Report writes, and a socket that took everything (even if that was nothing: a
        // congested connection whose batches were discarded recovers on it).
        if drained > 0 || !would_block {
            self.feed(now, Input::ClientDrained(conn, drained));
        }
    }

    fn close_everything(&mut self) {
        let goodbye = FrontendToClient::Error {
            code: ErrorCode::ShuttingDown,
            text: "front-end shutting down".to_owned(),
        }
        .encode_to_bytes();
        for (_, mut queue) in self.clients.drain() {
            queue.push(goodbye.clone(), false);
            queue.close_layers();
            let _ = queue.flush(&self.stats);
            queue.shutdown_socket();
        }
        for (_, link) in self.games.drain() {
            let mut out = link.lock();
            out.closed = true;
            out.queue.shutdown_socket();
        }
        if let Some(mut recorder) = self.recorder.take() {
            recorder.finish();
            match recorder.stopped() {
                Some(reason) => log::warn!("recording ended early: {reason}"),
                None => log::info!("recording complete: {} inputs", recorder.inputs()),
            }
        }
    }
}

/// Writes the last frames of a closing connection (bounded in time), then shuts it.
async fn linger(mut queue: OutQueue, stats: Arc<ServerStats>) {
    let _ = tokio::time::timeout(LINGER, async {
        while queue.has_pending() {
            if queue.stream.writable().await.is_err() {
                break;
            }
            let _ = queue.flush(&stats);
        }
    })
    .await;
    queue.shutdown_socket();
}

/// Writes the last frames of a closing game link (bounded in time), then shuts it.
async fn linger_game(link: Arc<GameLinkShared>, stats: Arc<ServerStats>) {
    let stream = Arc::clone(&link.lock().queue.stream);
    let _ = tokio::time::timeout(LINGER, async {
        while link.lock().queue.has_pending() {
            if stream.writable().await.is_err() {
                break;
            }
            let _ = link.lock().queue.flush(&stats);
        }
    })
    .await;
    link.lock().queue.shutdown_socket();
}

/// How a reader limits what it reads.
#[derive(Debug, Clone)]
struct ReadLimits {
    /// The largest first frame (a client's `Hello`).
    first_frame: usize,
    /// The largest frame after the first.
    frame: usize,
    /// While this is true, stop reading (backpressure from a full game link).
    pause: Option<watch::Receiver<bool>>,
    /// Bytes reserved for one read.
    chunk: usize,
}

/// What a layered reader tells the event loop besides frames.
enum LayerEvent {
    /// A control frame to answer with.
    Control(Bytes),
    /// rustls has records to send.
    TlsPending,
    /// The bytes were refused: send this (if anything) and close.
    Abort(Option<Bytes>),
}

/// Reads frames from `stream` until it ends, sending each to the event loop. A
/// connection of a layered listener passes its TLS and WebSocket state as `layers`; its
/// bytes are read into a buffer of their own and unwrapped into the frame decoder's.
// The arguments are the reader's parts (socket, limits, layers, stop) and the three
// ways its findings become events: grouping them would only move the list elsewhere.
#[allow(clippy::too_many_arguments)]
async fn read_frames(
    stream: &TcpStream,
    mut limits: ReadLimits,
    mut layers: Option<ReadLayers>,
    mut stop: Option<oneshot::Receiver<()>>,
    tx: &mpsc::Sender<Event>,
    mut frame_event: impl FnMut(RawFrame) -> Option<Event>,
    error_event: impl Fn(WireError) -> Event,
    layer_event: impl Fn(LayerEvent) -> Option<Event>,
) -> ReadEnd {
    let mut decoder = Decoder::new(limits.first_frame);
    let mut first = true;
    let mut raw = BytesMut::new();
    // Plaintext that came with the handshake, or that rustls already decrypted.
    let mut initial = layers.is_some();
    loop {
        if !initial {
            if let Some(pause) = limits.pause.as_mut()
                && *pause.borrow()
            {
                // A closed sender means the event loop is gone: the send below notices.
                // A connection closed meanwhile ends its reader (and its socket) at once.
                match stop.as_mut() {
                    Some(stop) => {
                        tokio::select! {
                            _ = pause.wait_for(|paused| !*paused) => {}
                            _ = stop => return ReadEnd::Closed,
                        }
                    }
                    None => {
                        let _ = pause.wait_for(|paused| !*paused).await;
                    }
                }
            }
            if stream.readable().await.is_err() {
                return ReadEnd::Closed;
            }
            let buffer = if layers.is_some() {
                &mut raw
            } else {
                decoder.buffer_mut()
            };
            if buffer.capacity() - buffer.len() < limits.chunk / 4 {
                buffer.reserve(limits.chunk);
            }
            let spare = buffer.capacity() - buffer.len();
            let mut read = 0;
            // A read shorter than the space offered emptied the socket: report it as
            // `WouldBlock` so tokio clears the readiness now, which saves the extra `recv`
            // that would only find nothing (data arriving later raises a new edge).
            let outcome = stream.try_io(Interest::READABLE, || {
                read = stream.try_read_buf(buffer)?;
                if read > 0 && read < spare {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match outcome {
                Ok(()) if read == 0 => return ReadEnd::Closed,
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock && read > 0 => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // The readiness was stale: do not park holding an empty buffer.
                    decoder.release_idle_buffer();
                    raw = BytesMut::new();
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                    log::debug!("read failed: {error} (the peer's TCP stopped answering)");
                    return ReadEnd::Vanished;
                }
                Err(error) => {
                    log::debug!("read failed: {error}");
                    return ReadEnd::Closed;
                }
            }
        }
        initial = false;
        let mut peer_closed = false;
        if let Some(layers) = layers.as_mut() {
            let unwrapped = layers.unwrap(&raw, decoder.buffer_mut(), stream);
            raw.clear();
            match unwrapped {
                Ok(unwrapped) => {
                    let mut events: Vec<Event> = unwrapped
                        .replies
                        .into_iter()
                        .filter_map(|reply| layer_event(LayerEvent::Control(reply)))
                        .collect();
                    if unwrapped.tls_pending {
                        events.extend(layer_event(LayerEvent::TlsPending));
                    }
                    for event in events {
                        if tx.send(event).await.is_err() {
                            return ReadEnd::LoopGone;
                        }
                    }
                    peer_closed = unwrapped.closed;
                }
                Err(error) => {
                    let goodbye = match error {
                        LayerError::Tls(text) => {
                            log::debug!("TLS error from a client: {text}");
                            None
                        }
                        LayerError::Ws(text, close) => {
                            log::debug!("WebSocket error from a client: {text}");
                            Some(close)
                        }
                    };
                    if let Some(event) = layer_event(LayerEvent::Abort(goodbye)) {
                        let _ = tx.send(event).await;
                    }
                    return ReadEnd::Malformed;
                }
            }
            if layers.is_idle() {
                raw = BytesMut::new();
            }
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if first {
                        first = false;
                        decoder.set_max_frame_len(limits.frame);
                    }
                    // `try_send` first: unlike `send`, it does not spend the task's
                    // cooperative budget, so a burst of frames reaches the event loop
                    // in one turn (many batches per `writev`) instead of 128 at a time.
                    let Some(event) = frame_event(frame) else {
                        continue;
                    };
                    match tx.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(event)) => {
                            if tx.send(event).await.is_err() {
                                return ReadEnd::LoopGone;
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return ReadEnd::LoopGone,
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = tx.send(error_event(error)).await;
                    return ReadEnd::Malformed;
                }
            }
        }
        decoder.release_idle_buffer();
        if peer_closed {
            return ReadEnd::Closed;
        }
    }
}

/// Why a reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// EOF or a socket error.
    Closed,
    /// The kernel gave the peer up: its TCP acknowledged nothing for the transport
    /// timeout (`ETIMEDOUT`; see [`TransportWatch`]).
    Vanished,
    /// Bytes that could not be framed (already reported).
    Malformed,
    /// The event loop is gone.
    LoopGone,
}

async fn read_client(
    conn: ConnId,
    stream: Arc<TcpStream>,
    limits: ReadLimits,
    layers: Option<ReadLayers>,
    stop: Option<oneshot::Receiver<()>>,
    tx: mpsc::Sender<Event>,
) -> ReadEnd {
    let end = read_frames(
        &stream,
        limits,
        layers,
        stop,
        &tx,
        |frame| Some(Event::ClientFrame(conn, frame)),
        |error| Event::ClientMalformed(conn, error),
        |event| {
            Some(match event {
                LayerEvent::Control(frame) => Event::ClientControl(conn, frame),
                LayerEvent::TlsPending => Event::TlsPending(Peer::Client(conn)),
                LayerEvent::Abort(goodbye) => Event::ClientAbort(conn, goodbye),
            })
        },
    )
    .await;
    // Let go of the socket before reporting, so the event loop's drop closes it.
    drop(stream);
    if matches!(end, ReadEnd::Closed | ReadEnd::Vanished) {
        let _ = tx.send(Event::ClientClosed(conn)).await;
    }
    end
}

/// Who may connect: the client cap, the per-address cap and the flood penalties, shared
/// by every listener (raw, TLS, WebSocket), with the connection ids they hand out.
#[derive(Debug)]
struct Gate {
    max_clients: usize,
    /// 0: no per-address cap.
    max_per_ip: usize,
    /// Addresses refused until an instant: they flooded inputs (see [`Penalties`]).
    penalties: Penalties,
    /// Client connections whose reader still runs.
    open: AtomicUsize,
    /// Open connections per address (only with a per-address cap).
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    next_conn: AtomicU64,
    /// `Error{Overloaded}` for a full front-end.
    full: Bytes,
    /// `Error{Overloaded}` for an address at its cap.
    crowded: Bytes,
}

/// A client connection let in by the [`Gate`]: counted until dropped (when its reader
/// ends).
#[derive(Debug)]
struct Ticket {
    gate: Arc<Gate>,
    ip: std::net::IpAddr,
    conn: ConnId,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        if self.gate.max_per_ip > 0 {
            let mut counts = lock_counts(&self.gate.per_ip);
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

impl Gate {
    fn new(max_clients: usize, max_per_ip: usize, penalties: Penalties) -> Self {
        let overloaded = |text: String| {
            FrontendToClient::Error {
                code: ErrorCode::Overloaded,
                text,
            }
            .encode_to_bytes()
        };
        Self {
            max_clients,
            max_per_ip,
            penalties,
            open: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            next_conn: AtomicU64::new(1),
            full: overloaded("front-end full: try another".to_owned()),
            crowded: overloaded(format!(
                "more than {max_per_ip} connections from your address"
            )),
        }
    }

    /// The refusal for an address that flooded inputs, while it is refused.
    fn penalty(&self, ip: std::net::IpAddr, stats: &ServerStats) -> Option<Bytes> {
        let remaining = self.penalties.remaining(ip, Instant::now())?;
        stats.refused.fetch_add(1, Ordering::Relaxed);
        stats.refused_penalized.fetch_add(1, Ordering::Relaxed);
        Some(
            FrontendToClient::Error {
                code: ErrorCode::Overloaded,
                text: format!(
                    "this address flooded inputs: refused for another {:.0} s",
                    remaining.as_secs_f64().ceil()
                ),
            }
            .encode_to_bytes(),
        )
    }

    /// Lets a connection from `ip` in, or gives the `Error{Overloaded}` frame refusing it.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, stats: &ServerStats) -> Result<Ticket, Bytes> {
        if self.open.load(Ordering::Relaxed) >= self.max_clients {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(self.full.clone());
        }
        if self.max_per_ip > 0 {
            let mut counts = lock_counts(&self.per_ip);
            let count = counts.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(self.crowded.clone());
            }
            *count += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            gate: Arc::clone(self),
            ip,
            conn: ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed)),
        })
    }
}

/// Addresses whose connection was closed for exceeding its input budget, refused until
/// the instant given ([`FrontendConfig::input_flood_penalty`]). The event loop adds them,
/// the acceptor checks and forgets the expired ones. IPv4 addresses are also refused by
/// the kernel, before any connection is accepted: the listeners' socket filter drops
/// their segments until the penalty ends ([`refusal`]).
#[derive(Debug, Clone, Default)]
struct Penalties {
    refused: Arc<Mutex<HashMap<std::net::IpAddr, Instant>>>,
    /// The listening sockets carrying the filter.
    listeners: Arc<Vec<std::net::TcpListener>>,
}

impl Penalties {
    /// Penalties whose IPv4 addresses `listeners` drop in the kernel.
    fn with_listeners(listeners: Vec<std::net::TcpListener>) -> Self {
        Self {
            refused: Arc::default(),
            listeners: Arc::new(listeners),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, Instant>> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts on the listeners the filter of the IPv4 addresses refused now (the latest
    /// penalties first, [`refusal::MAX_FILTERED`] at most), forgetting expired entries.
    fn refilter(&self) {
        if self.listeners.is_empty() {
            return;
        }
        let addrs: Vec<std::net::Ipv4Addr> = {
            let mut refused = self.lock();
            let now = Instant::now();
            refused.retain(|_, until| *until > now);
            let mut v4: Vec<(Instant, std::net::Ipv4Addr)> = refused
                .iter()
                .filter_map(|(ip, until)| match ip {
                    std::net::IpAddr::V4(v4) => Some((*until, *v4)),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect();
            v4.sort_unstable_by(|a, b| b.cmp(a));
            v4.into_iter()
                .take(refusal::MAX_FILTERED)
                .map(|(_, ip)| ip)
                .collect()
        };
        for listener in self.listeners.iter() {
            if let Err(error) = refusal::apply(listener, &addrs) {
                log::warn!(
                    "cannot filter refused addresses on a listener ({error}): they are \
                     refused after accepting instead"
                );
            }
        }
    }

    /// Refuses `ip` until `until`. Expired entries are forgotten when the map grows
    /// (many flooding addresses), not only when their address comes back.
    fn add(&self, ip: std::net::IpAddr, until: Instant) {
        const PRUNE_ABOVE: usize = 4096;
        // An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: it is an
        // IPv4 address, and the kernel filter can drop it.
        let ip = ip.to_canonical();
        let mut penalties = self.lock();
        if penalties.len() >= PRUNE_ABOVE {
            let now = Instant::now();
            penalties.retain(|_, refused_until| *refused_until > now);
        }
        penalties.insert(ip, until);
        drop(penalties);
        if ip.is_ipv4() && !self.listeners.is_empty() {
            self.refilter();
            // Off the filter when its time is up (the acceptor never sees it before).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let penalties = self.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
                    penalties.refilter();
                });
            }
        }
    }

    /// How long `ip` is still refused, if it is.
    fn remaining(&self, ip: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let ip = ip.to_canonical();
        let mut penalties = self.lock();
        let until = *penalties.get(&ip)?;
        if until <= now {
            penalties.remove(&ip);
            return None;
        }
        Some(until - now)
    }
}

/// Refuses a raw connection with `answer`: best effort, never waiting. Whatever the client
/// already sent is read first, so that closing does not reset the connection before it
/// reads the answer.
fn refuse_raw(stream: &TcpStream, answer: &[u8]) {
    let mut discard = [0u8; 512];
    let _ = stream.try_read(&mut discard);
    let _ = stream.try_write(answer);
}

/// Hands an admitted connection to the event loop and starts its reader (which holds the
/// ticket until it ends). False when the event loop is gone.
async fn start_client(
    ticket: Ticket,
    stream: TcpStream,
    out: Option<Box<OutLayers>>,
    read: Option<ReadLayers>,
    limits: ReadLimits,
    tx: &mpsc::Sender<Event>,
    stats: &Arc<ServerStats>,
) -> bool {
    let conn = ticket.conn;
    let stream = Arc::new(stream);
    let (stop_tx, stop) = oneshot::channel();
    if tx
        .send(Event::ClientConnected(
            conn,
            Arc::clone(&stream),
            out,
            stop_tx,
        ))
        .await
        .is_err()
    {
        return false;
    }
    let reader = read_client(conn, stream, limits, read, Some(stop), tx.clone());
    let stats = Arc::clone(stats);
    tokio::spawn(async move {
        if reader.await == ReadEnd::Vanished {
            stats.clients_vanished.fetch_add(1, Ordering::Relaxed);
        }
        drop(ticket);
        stats.clients_gone.fetch_add(1, Ordering::Relaxed);
    });
    true
}

/// Accepts from `listener` until shutdown, waiting `pause` after an error that is not
/// out-of-descriptors. Out of descriptors, the spare one is closed for a moment so that
/// the waiting client can be accepted and answered with `full`.
struct Acceptor {
    listener: TcpListener,
    spare: Option<std::fs::File>,
    out_of_descriptors_logged: bool,
    /// The kernel's watch over each accepted client (`None`: sockets left alone).
    watch: Option<TransportWatch>,
}

/// How the kernel watches a client connection for the front-end
/// ([`FrontendConfig::client_transport_timeout`]): TCP keep-alive probes on a quiet
/// connection, and on Linux `TCP_USER_TIMEOUT` on data left unacknowledged. A client that
/// vanished without a reset is then closed by the kernel (the next read fails with
/// `ETIMEDOUT`) and the front-end's process spends nothing on clients that are alive:
/// they need not send frames to prove it (PROTOCOL.md section 7).
#[derive(Debug, Clone)]
struct TransportWatch {
    timeout: Duration,
    /// The keep-alive probes' settings, worked out once (not at every accept).
    keepalive: socket2::TcpKeepalive,
}

impl TransportWatch {
    /// The watch `config` asks for: the first probe after
    /// [`FRONTEND_CLIENT_PROBE_AFTER`](flotilla_wire::FRONTEND_CLIENT_PROBE_AFTER) of
    /// quiet (or the transport timeout, if shorter, but at least 1 s), then one a second
    /// until `client_transport_timeout`.
    fn of(config: &FrontendConfig) -> Option<Self> {
        const INTERVAL: Duration = Duration::from_secs(1);
        let timeout = config.client_transport_timeout;
        if timeout.is_zero() {
            return None;
        }
        let quiet = flotilla_wire::FRONTEND_CLIENT_PROBE_AFTER
            .min(timeout)
            .max(INTERVAL);
        let probes = (timeout.saturating_sub(quiet).as_secs().max(1))
            .try_into()
            .unwrap_or(u32::MAX);
        Some(Self {
            timeout,
            keepalive: socket2::TcpKeepalive::new()
                .with_time(quiet)
                .with_interval(INTERVAL)
                .with_retries(probes),
        })
    }

    /// Puts the watch on an accepted client socket. A system that refuses an option
    /// leaves that socket to the frame-silence backstop (logged once per process).
    fn apply(&self, stream: &TcpStream) {
        let socket = socket2::SockRef::from(stream);
        // Each option on its own: one the system refuses does not cost the other.
        let mut result = socket.set_tcp_keepalive(&self.keepalive);
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        {
            let user_timeout = socket.set_tcp_user_timeout(Some(self.timeout));
            result = result.and(user_timeout);
        }
        if let Err(error) = result {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "cannot set TCP keep-alive or user timeout on client sockets ({error}): \
                     vanished clients are noticed only by the frame-silence backstop"
                );
            });
        }
    }
}

impl Acceptor {
    /// The next connection, or `None` at shutdown.
    async fn next(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        full: &Bytes,
        stats: &ServerStats,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.changed() => return None,
            };
            match accepted {
                Ok(accepted) => {
                    let _ = accepted.0.set_nodelay(true);
                    if let Some(watch) = &self.watch {
                        watch.apply(&accepted.0);
                    }
                    return Some(accepted);
                }
                Err(error) if is_out_of_descriptors(&error) && self.spare.is_some() => {
                    if !self.out_of_descriptors_logged {
                        log::warn!(
                            "accept: out of file descriptors ({error}); refusing clients with \
                             Overloaded until some close"
                        );
                        self.out_of_descriptors_logged = true;
                    }
                    // Frees the descriptor for the accept below.
                    drop(self.spare.take());
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(50), self.listener.accept())
                            .await;
                    if let Ok(Ok((stream, _peer))) = accepted {
                        refuse_raw(&stream, full);
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    self.spare = std::fs::File::open("/dev/null").ok();
                }
                Err(error) => {
                    // Out of file descriptors without a spare, or similar: wait a little
                    // instead of spinning.
                    log::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Accepts raw-TCP clients.
async fn accept_clients(
    mut acceptor: Acceptor,
    gate: Arc<Gate>,
    limits: ReadLimits,
    tx: mpsc::Sender<Event>,
    stats: Arc<ServerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((stream, peer)) = acceptor.next(&mut shutdown, &gate.full, &stats).await {
        if let Some(refusal) = gate.penalty(peer.ip(), &stats) {
            refuse_raw(&stream, &refusal);
            continue;
        }
        match gate.admit(peer.ip(), &stats) {
            Ok(ticket) => {
                if !start_client(ticket, stream, None, None, limits.clone(), &tx, &stats).await {
                    return;
                }
            }
            Err(refusal) => refuse_raw(&stream, &refusal),
        }
    }
}

/// An address's place among the handshakes in progress, given back when dropped.
struct HandshakeSlot {
    per_ip: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = lock_counts(&self.per_ip);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Accepts clients of a layered listener (TLS, WebSocket, both): each handshake runs in
/// a task of its own (at most [`crate::edge::MAX_HANDSHAKES`] at once); an admitted link
/// then joins the event loop like a raw one. Web requests are answered by the handshake.
#[allow(clippy::too_many_arguments)]
async fn accept_edge(
    mut acceptor: Acceptor,
    kind: ListenerKind,
    tls: Option<Arc<TlsServer>>,
    web: Arc<WebSettings>,
    gate: Arc<Gate>,
    limits: ReadLimits,
    tx: mpsc::Sender<Event>,
    stats: Arc<ServerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(crate::edge::MAX_HANDSHAKES));
    // Handshakes in progress per address: one address holding connections open without
    // finishing them must not take every handshake place from the others.
    let per_ip: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    while let Some((stream, peer)) = acceptor.next(&mut shutdown, &gate.full, &stats).await {
        if gate.penalty(peer.ip(), &stats).is_some() {
            // Not worth a handshake: the flooder is dropped at once.
            continue;
        }
        let address_full = {
            let mut counts = lock_counts(&per_ip);
            let count = counts.entry(peer.ip()).or_insert(0);
            if *count >= crate::edge::MAX_HANDSHAKES_PER_IP {
                true
            } else {
                *count += 1;
                false
            }
        };
        if address_full {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let in_progress = HandshakeSlot {
            per_ip: Arc::clone(&per_ip),
            ip: peer.ip(),
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (tls, web, gate, limits, tx, stats) = (
            tls.clone(),
            Arc::clone(&web),
            Arc::clone(&gate),
            limits.clone(),
            tx.clone(),
            Arc::clone(&stats),
        );
        tokio::spawn(async move {
            let mut ticket = None;
            let outcome = crate::edge::handshake(stream, kind, tls, &web, || {
                ticket = Some(gate.admit(peer.ip(), &stats)?);
                Ok(())
            })
            .await;
            drop(permit);
            drop(in_progress);
            match outcome {
                Handshake::Client { stream, out, read } => {
                    if let Some(ticket) = ticket {
                        start_client(
                            ticket,
                            stream,
                            Some(Box::new(out)),
                            Some(read),
                            limits,
                            &tx,
                            &stats,
                        )
                        .await;
                    }
                }
                Handshake::Done { failed, served } => {
                    if failed {
                        stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    if served {
                        stats.web_requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}

/// The per-address connection counts (a poisoned lock still holds valid counts).
fn lock_counts(
    counts: &Mutex<HashMap<std::net::IpAddr, usize>>,
) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, usize>> {
    counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// True for the errors of a process (EMFILE) or system (ENFILE) out of file descriptors.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

/// Keeps one game server connected: connect, hand the socket to the event loop, read
/// until the link ends, back off (full jitter), again.
#[allow(clippy::too_many_arguments)]
/// What a game link's reader does with a frame: tells the link's keeper it heard the game
/// server; answers a ping at once (written now unless the event loop waits for the
/// socket); passes everything else to the event loop.
fn heard_from_game(
    link: &GameLinkShared,
    keepers: &KeepAliveThread,
    now: flotilla_conn::Instant,
    stats: &ServerStats,
    frame: RawFrame,
) -> Option<Event> {
    let welcome = frame.frame_type() == flotilla_wire::FrameType::GameWelcome;
    let mut out = link.lock();
    match out.keeper.on_frame(now, &frame) {
        crate::game_link::Heard::Forward => {
            if welcome {
                // Pings start now: the keep-alive thread's next deadline moved earlier.
                keepers.poke();
            }
            Some(Event::GameFrame(link.game(), frame))
        }
        crate::game_link::Heard::Answer(pong) => {
            if out.closed {
                return None;
            }
            out.queue.push(pong, false);
            out.keeper.on_sent(now);
            if out.queue.waiting_writable {
                return None;
            }
            let (drained, would_block) = out.queue.flush(stats);
            out.drained_unreported += drained;
            would_block.then_some(Event::Writable(Peer::Game(link.game())))
        }
        crate::game_link::Heard::Consumed => None,
    }
}

/// What one game server's connector needs.
struct GameDialer {
    /// The game server's place in the configuration (the high half of its links' ids).
    index: u64,
    addr: String,
    config: FrontendConfig,
    /// Dials over TLS, if asked.
    tls: Option<GameConnector>,
    /// Seeds the reconnect backoff's jitter.
    seed: u64,
    /// The event loop's clock (the keepers' time).
    clock: flotilla_conn::Clock,
    keepers: Arc<KeepAliveThread>,
}

async fn connect_game(
    dialer: GameDialer,
    tx: mpsc::Sender<Event>,
    stats: Arc<ServerStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let GameDialer {
        index,
        addr,
        config,
        tls,
        seed,
        clock: loop_clock,
        keepers,
    } = dialer;
    let keep_alive =
        flotilla_conn::KeepAliveConfig::new(config.game_ping_interval, config.game_idle_timeout);
    // When to dial is flotilla-balance's rule (one server, backoff after every failure
    // with full jitter, a connection up for 5 s counts as stable and clears it), the same
    // machine the clients and the logger fail over with.
    let clock = flotilla_conn::Clock::process();
    let backoff = flotilla_balance::BackoffConfig {
        base: config.reconnect_base,
        cap: config.reconnect_cap,
        immediate_failovers: false,
        stable_after: Duration::from_secs(5),
    };
    let mut balancer = match flotilla_balance::Balancer::new(1, backoff, seed) {
        Ok(balancer) => balancer,
        Err(error) => {
            log::error!("game server {addr}: cannot schedule connections: {error}");
            return;
        }
    };
    // Attempts that failed since the last connection: reported at 1, 2, 4, 8, ... so
    // that an unreachable game server is said at once and then ever more rarely.
    let mut failed_attempts: u64 = 0;
    let mut generation: u64 = 0;
    loop {
        match balancer.poll(clock.now().as_duration()) {
            flotilla_balance::Decision::WaitUntil(until) => {
                let at = clock.to_std(flotilla_conn::Instant::from_duration(until));
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            flotilla_balance::Decision::Connect(_) | flotilla_balance::Decision::Connected(_) => {}
        }
        let dial = async {
            let stream = TcpStream::connect(addr.as_str()).await?;
            let _ = stream.set_nodelay(true);
            match &tls {
                Some(connector) => {
                    let (stream, session) = connector.connect(stream).await?;
                    io::Result::Ok((stream, Some(session)))
                }
                None => Ok((stream, None)),
            }
        };
        let attempt = tokio::time::timeout(config.connect_timeout, dial);
        let connected = tokio::select! {
            connected = attempt => connected,
            _ = shutdown.changed() => return,
        };
        match connected {
            Ok(Ok((stream, session))) => {
                stats.game_connects.fetch_add(1, Ordering::Relaxed);
                let game = GameId((index << 32) | (generation & 0xffff_ffff));
                generation += 1;
                if failed_attempts > 0 {
                    log::warn!(
                        "connected to game server {addr} after {failed_attempts} failed attempts"
                    );
                } else {
                    log::info!("connected to game server {addr} as {game:?}");
                }
                failed_attempts = 0;
                balancer.on_connected(0, clock.now().as_duration());
                let stream = Arc::new(stream);
                let layers = session.clone().map(|session| {
                    Box::new(OutLayers {
                        tls: Some(session),
                        ws: None,
                    })
                });
                let link = GameLinkShared::new(
                    game,
                    OutQueue::new(Arc::clone(&stream), layers, None),
                    crate::game_link::GameLinkKeeper::new(loop_clock.now(), keep_alive),
                );
                keepers.add(&link);
                if tx
                    .send(Event::GameConnected(game, Arc::clone(&link)))
                    .await
                    .is_err()
                {
                    return;
                }
                let end = tokio::select! {
                    end = read_frames(
                        &stream,
                        ReadLimits {
                            first_frame: config.max_frame_len,
                            frame: config.max_frame_len,
                            pause: None,
                            chunk: GAME_READ_CHUNK,
                        },
                        session.map(|session| ReadLayers {
                            tls: Some(session),
                            ws: None,
                            leftover: Vec::new(),
                        }),
                        None,
                        &tx,
                        |frame| heard_from_game(&link, &keepers, loop_clock.now(), &stats, frame),
                        |error| Event::GameMalformed(game, error),
                        |event| Some(match event {
                            LayerEvent::TlsPending => Event::TlsPending(Peer::Game(game)),
                            LayerEvent::Control(_) | LayerEvent::Abort(_) => Event::GameClosed(game),
                        }),
                    ) => end,
                    _ = shutdown.changed() => return,
                };
                drop(stream);
                drop(link);
                log::warn!("lost game server {addr} ({game:?}): {end:?}");
                if end == ReadEnd::LoopGone || tx.send(Event::GameClosed(game)).await.is_err() {
                    return;
                }
                balancer.on_failure(0, clock.now().as_duration());
            }
            Ok(Err(error)) => {
                balancer.on_failure(0, clock.now().as_duration());
                failed_attempts += 1;
                if failed_attempts.is_power_of_two() {
                    log::warn!(
                        "cannot connect to game server {addr}: {error} (attempt \
                         {failed_attempts}; retrying with backoff)"
                    );
                }
            }
            Err(_) => {
                balancer.on_failure(0, clock.now().as_duration());
                failed_attempts += 1;
                if failed_attempts.is_power_of_two() {
                    log::warn!(
                        "connecting to game server {addr} timed out (attempt \
                         {failed_attempts}; retrying with backoff)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;

    #[test]
    fn a_penalized_address_is_refused_until_its_time_and_then_forgotten() {
        let penalties = Penalties::default();
        let now = Instant::now();
        let flooder: std::net::IpAddr = [127, 0, 0, 2].into();
        let other: std::net::IpAddr = [127, 0, 0, 3].into();
        penalties.add(flooder, now + Duration::from_secs(10));
        assert_eq!(
            penalties.remaining(flooder, now + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(penalties.remaining(other, now), None);
        assert_eq!(
            penalties.remaining(flooder, now + Duration::from_secs(10)),
            None
        );
        assert!(penalties.lock().is_empty(), "forgotten once expired");
        // An IPv4 client of a dual-stack listener is the same IPv4 address.
        let mapped: std::net::IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        penalties.add(mapped, now + Duration::from_secs(10));
        assert!(penalties.remaining([127, 0, 0, 9].into(), now).is_some());
        assert!(penalties.lock().keys().all(std::net::IpAddr::is_ipv4));
        penalties.lock().clear();
        // Many flooders: expired entries are dropped as the map grows.
        for n in 0..5000u32 {
            penalties.add(std::net::IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(penalties.lock().len() < 5000);
    }

    #[test]
    fn the_client_cap_leaves_descriptors_for_the_listener_and_game_links() {
        // 20,000 descriptors, 2 game servers: 20,000 - 256 - 8.
        assert_eq!(client_cap(100_000, Some(20_000), 2), 19_736);
        // A configured cap below the room is kept.
        assert_eq!(client_cap(5_000, Some(20_000), 2), 5_000);
        // No limit: the configured cap.
        assert_eq!(client_cap(100_000, None, 2), 100_000);
        // A limit smaller than the reserve still lets one client in.
        assert_eq!(client_cap(100_000, Some(100), 1), 1);
    }

    #[test]
    fn running_out_of_descriptors_is_recognised() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            rustix::io::Errno::MFILE.raw_os_error()
        )));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            rustix::io::Errno::NFILE.raw_os_error()
        )));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(
            rustix::io::Errno::CONNABORTED.raw_os_error()
        )));
    }

    #[tokio::test]
    async fn an_idle_client_connection_costs_well_under_8_kib_in_user_space() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream = Arc::new(server);
        let (tx, _rx) = mpsc::channel(1);
        // The parked reader task's state, the event loop's queue, the session machine.
        let (_pause, pause_rx) = watch::channel(false);
        let limits = ReadLimits {
            first_frame: 4096,
            frame: 1 << 16,
            pause: Some(pause_rx),
            chunk: READ_CHUNK,
        };
        let reader = read_client(ConnId(1), Arc::clone(&stream), limits, None, None, tx);
        let reader_bytes = std::mem::size_of_val(&reader);
        let queue_bytes = std::mem::size_of::<OutQueue>();
        let session_bytes = std::mem::size_of::<Session>();
        let total = reader_bytes + queue_bytes + session_bytes;
        assert!(reader_bytes < 2048, "reader future of {reader_bytes} bytes");
        // Map entries, the task header and tokio's registration add a few hundred bytes.
        assert!(total < 4096, "{total} bytes per idle connection");
        drop(reader);
        drop(client);
    }

    #[test]
    fn dropping_batches_keeps_control_frames_and_a_partly_written_front() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut queue = OutQueue::new(Arc::new(server), None, None);
            queue.push(Bytes::from_static(b"batch-0"), true);
            queue.push(Bytes::from_static(b"pong"), false);
            queue.push(Bytes::from_static(b"batch-1"), true);
            queue.advance(3);
            assert_eq!(queue.queued, 15);
            assert_eq!(queue.drop_droppable(), 7);
            assert_eq!(queue.queued, 8);
            let left: Vec<&[u8]> = queue.frames.iter().map(|(b, _)| b.as_ref()).collect();
            assert_eq!(left, vec![&b"batch-0"[..], &b"pong"[..]]);
            queue.advance(4 + 2);
            assert_eq!((queue.frames.len(), queue.offset, queue.queued), (1, 2, 2));
            assert_eq!(queue.discard_all(), 2);
        });
    }
}
