//! The tokio shell: one connection to one front-end, driving a [`ClientSession`].
//!
//! Connection logic (socket, handshake, keep-alive, reader and writer tasks) is kept apart
//! from session state (token, subscriptions, replicas in [`ClientSession`]): the session
//! sits behind an `Arc<Mutex<_>>` that a connection only borrows. Failover
//! ([`FleetClient`](crate::FleetClient)) keeps that session, picks another front-end at
//! random, runs [`handshake`] there with the same session (its hello carries the token) and
//! lets [`ClientSession::resume_subscriptions`] re-subscribe every world with its last
//! position.
//!
//! The reader task owns three duties besides decoding: the keep-alive (the connection's
//! [`flotilla_conn::KeepAlive`] machine, held by the outbox: whole frames received count
//! as heard, every push as sent; the reader sleeps until its deadline and sends the ping
//! or closes for silence it asks for; the client's side also probes a front-end it has not
//! heard from, so a client that keeps sending inputs still hears its front-end within the
//! idle timeout), the resubscribe timer of worlds whose game server went away
//! (the session says when), and backpressure: an `Output` or `Unsubscribed` event that
//! finds the application's event queue full is never dropped; the reader waits for room
//! and reads nothing meanwhile, so TCP pushes back on the front-end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use flotilla_conn::{Clock, KeepAliveAction, KeepAliveConfig};
use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message, WorldId};
use flotilla_world::{Position, Replica};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::{ClientEvent, ClientEvents, DisconnectReason, is_lossless};
use crate::session::{ClientSession, Fatal, HandshakeError, WorldCounters};
use flotilla_link::outbox::{FrameKind, LinkCounters, Outbox, PushError, run_writer};

/// Bytes reserved in the receive buffer before each read.
const READ_RESERVE: usize = 8 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters of one client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Replica notifications dropped because the event queue was full (outputs and
    /// unsubscribes are never dropped for a full queue; they wait), plus events of any kind
    /// after the application dropped its [`ClientEvents`].
    pub events_dropped: u64,
}

/// What the handshake learned.
#[derive(Debug, Clone)]
struct Welcome {
    session_token: Bytes,
    resumed: bool,
    server_id: String,
}

/// State shared by the handle and the connection's tasks.
#[derive(Debug)]
struct Inner {
    session: Arc<Mutex<ClientSession>>,
    outbox: Arc<Outbox>,
    connected: AtomicBool,
    close_requested: Notify,
    /// Why the connection ended, once it has (set before the `Disconnected` event).
    ended: watch::Sender<Option<DisconnectReason>>,
    events: mpsc::Sender<ClientEvent>,
    events_dropped: AtomicU64,
    /// `events_dropped` when the connection ended (set before `ended`): every drop but the
    /// final `Disconnected`'s.
    events_dropped_before_end: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    sent: Arc<LinkCounters>,
}

/// How [`Inner::deliver`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Every event was queued (or dropped) without waiting.
    Promptly,
    /// The queue was full and the reader waited for the application.
    AfterWaiting,
    /// The application asked to close while the reader waited.
    CloseRequested,
}

impl Inner {
    /// Queues `event`, dropping it if the queue is full or gone.
    fn emit(&self, event: ClientEvent) {
        if self.events.try_send(event).is_err() {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues `events` in order; a lossless one that finds the queue full waits for room
    /// (or for a close request), the others are dropped when it is full.
    async fn deliver(&self, events: Vec<ClientEvent>) -> Delivery {
        let mut delivery = Delivery::Promptly;
        for event in events {
            if !is_lossless(&event) {
                self.emit(event);
                continue;
            }
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Closed(_)) => {
                    self.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(event)) => {
                    delivery = Delivery::AfterWaiting;
                    tokio::select! {
                        sent = self.events.send(event) => {
                            if sent.is_err() {
                                self.events_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        () = self.close_requested.notified() => return Delivery::CloseRequested,
                    }
                }
            }
        }
        delivery
    }

    fn send(&self, message: &ClientToFrontend) -> Result<(), ClientError> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(ClientError::NotConnected);
        }
        self.outbox
            .push(message.encode_to_bytes(), FrameKind::Other)
            .map_err(|error| match error {
                PushError::Closed => ClientError::NotConnected,
                PushError::Overloaded => ClientError::Overloaded,
            })
    }
}

/// Sends frames on one connection: what a [`FleetClient`](crate::FleetClient) keeps of the
/// connection in use, to send subscribes and inputs through it.
#[derive(Debug, Clone)]
pub(crate) struct LinkSender {
    inner: Arc<Inner>,
}

impl LinkSender {
    /// Queues `message`; fails once the connection is closing or over its send budget.
    pub(crate) fn send(&self, message: &ClientToFrontend) -> Result<(), ClientError> {
        self.inner.send(message)
    }

    /// True until the connection ends.
    pub(crate) fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }
}

/// A connection to one front-end, with a local replica of each subscribed world.
///
/// ```no_run
/// # async fn run() -> Result<(), flotilla_client::ClientError> {
/// use flotilla_client::{Client, ClientConfig, ClientEvent};
/// use flotilla_wire::WorldId;
///
/// let client = Client::connect("127.0.0.1:7100", ClientConfig::default()).await?;
/// let mut events = client.take_events().expect("first take");
/// let arena = WorldId::new("arena-1")?;
/// client.subscribe(arena.clone(), None)?;
/// while let Some(event) = events.recv().await {
///     if let ClientEvent::BatchApplied { world, .. } = event {
///         println!("{world}: digest {:?}", client.digest(&world));
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Dropping the client closes the connection.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
    welcome: Welcome,
    peer: SocketAddr,
    events: Mutex<Option<ClientEvents>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Client {
    /// Connects to the front-end at `addr`, says hello (with `config.session_token` if
    /// set) and waits for its welcome. Call from within a tokio runtime.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let stream = timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connect"))??;
        let session = ClientSession::new(
            config.mode,
            config.client_name.clone(),
            config.session_token.clone(),
        );
        Self::over_stream(stream, Arc::new(Mutex::new(session)), config).await
    }

    /// Runs the handshake over an already connected `stream` for `session` (a new one, or
    /// one kept from a lost connection: its worlds are re-subscribed from their last
    /// positions). This is the seam the failover logic builds on. The session's resubscribe
    /// policy is set from `config.resubscribe` (jitter seeded from OS entropy).
    pub async fn over_stream(
        stream: TcpStream,
        session: Arc<Mutex<ClientSession>>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::open(stream, session, config, |_, _| {}).await
    }

    /// [`over_stream`](Self::over_stream), calling `attach` with a [`LinkSender`] for the
    /// new connection and the front-end's id right after the resume subscribes are queued,
    /// under the session lock: whoever changes the session under that lock and then sends
    /// through the attached sender can neither miss this connection nor be sent twice.
    pub(crate) async fn open(
        stream: TcpStream,
        session: Arc<Mutex<ClientSession>>,
        config: ClientConfig,
        attach: impl FnOnce(&LinkSender, &str),
    ) -> Result<Self, ClientError> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let seed = if config.resubscribe.enabled {
            flotilla_balance::seed_from_os_entropy()
                .map_err(|error| ClientError::Io(std::io::Error::other(error.to_string())))?
        } else {
            0
        };
        lock(&session).set_resubscribe_policy(config.resubscribe, seed);
        let (mut read_half, mut write_half) = stream.into_split();
        let mut decoder = Decoder::new(config.max_frame_len);
        let welcome = handshake(
            &mut read_half,
            &mut write_half,
            &mut decoder,
            &session,
            &config,
        )
        .await?;

        let sent = Arc::new(LinkCounters::default());
        let goodbye = ClientToFrontend::Error {
            code: ErrorCode::Overloaded,
            text: "client send queue over budget".to_owned(),
        };
        // The client's side of PROTOCOL.md section 7: ping when quiet, probe a front-end
        // not heard from (a client that keeps sending still hears it), close on silence.
        let outbox = Arc::new(Outbox::new(
            config.max_queued_bytes,
            goodbye.encode_to_bytes(),
            Arc::clone(&sent),
            Clock::process(),
            client_keep_alive(&config),
        ));
        let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
        let inner = Arc::new(Inner {
            session,
            outbox: Arc::clone(&outbox),
            connected: AtomicBool::new(true),
            close_requested: Notify::new(),
            ended: watch::Sender::new(None),
            events: events_tx,
            events_dropped: AtomicU64::new(0),
            events_dropped_before_end: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            sent,
        });
        {
            // Resume: re-subscribe every world already in the session.
            let mut session = lock(&inner.session);
            for message in &session.resume_subscriptions() {
                inner.send(message)?;
            }
            attach(
                &LinkSender {
                    inner: Arc::clone(&inner),
                },
                &welcome.server_id,
            );
        }
        let writer = tokio::spawn(run_writer(write_half, outbox));
        let reader = tokio::spawn(read_loop(Arc::clone(&inner), read_half, decoder, writer));
        Ok(Self {
            inner,
            welcome,
            peer,
            events: Mutex::new(Some(ClientEvents {
                receiver: events_rx,
            })),
            reader: Mutex::new(Some(reader)),
        })
    }

    /// The event queue. Returns it once; `None` afterwards. Events are queued from the
    /// start, bounded by [`ClientConfig::event_queue`]. Outputs and unsubscribes are never
    /// dropped: an application that receives outputs must read its events, or the client
    /// stops reading the socket once the queue is full.
    pub fn take_events(&self) -> Option<ClientEvents> {
        lock(&self.events).take()
    }

    /// The session token the front-end gave (keep it to resume elsewhere).
    pub fn session_token(&self) -> &Bytes {
        &self.welcome.session_token
    }

    /// True when the front-end recognised the token of the hello and resumed the session.
    pub fn resumed(&self) -> bool {
        self.welcome.resumed
    }

    /// The front-end's id from its welcome.
    pub fn server_id(&self) -> &str {
        &self.welcome.server_id
    }

    /// The front-end's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The session state (token, subscriptions, replicas), shareable with a later
    /// connection.
    pub fn session(&self) -> Arc<Mutex<ClientSession>> {
        Arc::clone(&self.inner.session)
    }

    /// True until the connection ends.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Watches `world`: the front-end answers with a snapshot (or, with `since`, only what
    /// is missing), then live batches. `None` resumes from the position already held, if
    /// any.
    pub fn subscribe(&self, world: WorldId, since: Option<Position>) -> Result<(), ClientError> {
        let message = lock(&self.inner.session).subscribe(world, since);
        self.inner.send(&message)
    }

    /// Stops watching `world` and drops its replica.
    pub fn unsubscribe(&self, world: &WorldId) -> Result<(), ClientError> {
        let message = lock(&self.inner.session).unsubscribe(world);
        match message {
            Some(message) => self.inner.send(&message),
            None => Ok(()),
        }
    }

    /// Sends `payload` to the game server of `world` (it arrives with this session's id).
    pub fn send_input(
        &self,
        world: &WorldId,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.inner.send(&ClientToFrontend::Input {
            world: world.clone(),
            payload: payload.into(),
        })
    }

    /// Runs `read` on the replica of `world` (full mode; under the session lock: keep it
    /// short).
    pub fn with_replica<R>(&self, world: &WorldId, read: impl FnOnce(&Replica) -> R) -> Option<R> {
        lock(&self.inner.session).replica(world).map(read)
    }

    /// The digest of the replica of `world`, once it has a snapshot.
    pub fn digest(&self, world: &WorldId) -> Option<u64> {
        lock(&self.inner.session).digest(world)
    }

    /// The value of `key` in the replica of `world`.
    pub fn get(&self, world: &WorldId, key: &[u8]) -> Option<Bytes> {
        lock(&self.inner.session).get(world, key)
    }

    /// True while `world` waits for its game server to come back (see
    /// [`ClientEvent::Resubscribing`]); its replica keeps the last state meanwhile.
    pub fn is_waiting(&self, world: &WorldId) -> bool {
        lock(&self.inner.session).is_waiting(world)
    }

    /// The last position seen for `world`.
    pub fn position(&self, world: &WorldId) -> Option<Position> {
        lock(&self.inner.session).position(world)
    }

    /// The receive counters of `world` (kept in both replica modes).
    pub fn counters(&self, world: &WorldId) -> Option<WorldCounters> {
        lock(&self.inner.session).counters(world)
    }

    /// Connection counters.
    pub fn stats(&self) -> ClientStats {
        let inner = &self.inner;
        ClientStats {
            frames_received: inner.frames_received.load(Ordering::Relaxed),
            bytes_received: inner.bytes_received.load(Ordering::Relaxed),
            frames_sent: inner.sent.frames.load(Ordering::Relaxed),
            bytes_sent: inner.sent.bytes.load(Ordering::Relaxed),
            events_dropped: inner.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Watches the end of the connection: `Some(reason)` once it has ended (as soon as it
    /// stops reading, before what is queued has been written).
    pub(crate) fn ended(&self) -> watch::Receiver<Option<DisconnectReason>> {
        self.inner.ended.subscribe()
    }

    /// Events this connection dropped before it ended (see [`ClientStats::events_dropped`]),
    /// without its final `Disconnected`; final once [`ended`](Self::ended) says so.
    pub(crate) fn events_dropped_before_end(&self) -> u64 {
        self.inner.events_dropped_before_end.load(Ordering::Acquire)
    }

    /// Closes the connection (after writing what is queued). A `Disconnected{Closed}`
    /// event follows.
    pub fn close(&self) {
        self.inner.close_requested.notify_one();
    }

    /// Waits until the connection has ended (returns at once on later calls).
    pub async fn closed(&self) {
        let reader = lock(&self.reader).take();
        if let Some(reader) = reader {
            let _ = reader.await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.close_requested.notify_one();
    }
}

/// Sends the session's hello and reads until the welcome; frames after it stay in
/// `decoder`.
async fn handshake(
    read_half: &mut OwnedReadHalf,
    write_half: &mut tokio::net::tcp::OwnedWriteHalf,
    decoder: &mut Decoder,
    session: &Mutex<ClientSession>,
    config: &ClientConfig,
) -> Result<Welcome, ClientError> {
    let hello = lock(session).hello().encode_to_bytes();
    let deadline = Instant::now() + config.idle_timeout;
    timeout(config.idle_timeout, write_half.write_all(&hello))
        .await
        .map_err(|_| ClientError::Timeout("sending hello"))??;
    loop {
        if let Some(message) = decoder.next_message::<FrontendToClient>()? {
            return match lock(session).on_handshake(message) {
                Ok(welcomed) => Ok(Welcome {
                    session_token: welcomed.session_token,
                    resumed: welcomed.resumed,
                    server_id: welcomed.server_id,
                }),
                Err(HandshakeError::Refused { code, text }) => {
                    Err(ClientError::Refused { code, text })
                }
                Err(HandshakeError::UnsupportedVersion(version)) => {
                    Err(ClientError::UnsupportedVersion(version))
                }
                Err(HandshakeError::Unexpected(frame)) => Err(ClientError::UnexpectedFrame {
                    frame,
                    during: "before Welcome",
                }),
            };
        }
        decoder.buffer_mut().reserve(READ_RESERVE);
        let read = tokio::time::timeout_at(deadline, read_half.read_buf(decoder.buffer_mut()))
            .await
            .map_err(|_| ClientError::Timeout("waiting for Welcome"))??;
        if read == 0 {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "front-end closed during the handshake",
            )));
        }
    }
}

/// The client's side of PROTOCOL.md section 7: probe a front-end not heard from for
/// `ping_interval`, ping after `quiet_ping_interval` without sending, close after
/// `idle_timeout` of silence. A zero `ping_interval` disables both pings.
fn client_keep_alive(config: &ClientConfig) -> KeepAliveConfig {
    if config.ping_interval.is_zero() {
        return KeepAliveConfig::new(std::time::Duration::ZERO, config.idle_timeout);
    }
    KeepAliveConfig::probing(
        config.ping_interval,
        config.quiet_ping_interval.max(config.ping_interval),
        config.idle_timeout,
    )
}

/// How the read loop ends: the reason, and an error frame to send first if any.
struct Ending {
    reason: DisconnectReason,
    error_frame: Option<Bytes>,
}

impl Ending {
    fn protocol(code: ErrorCode, text: String) -> Self {
        Self {
            error_frame: Some(
                ClientToFrontend::Error {
                    code,
                    text: text.clone(),
                }
                .encode_to_bytes(),
            ),
            reason: DisconnectReason::Protocol(text),
        }
    }

    fn plain(reason: DisconnectReason) -> Self {
        Self {
            reason,
            error_frame: None,
        }
    }
}

/// Reads, decodes and handles frames until the connection ends.
async fn read_loop(
    inner: Arc<Inner>,
    mut read_half: OwnedReadHalf,
    mut decoder: Decoder,
    mut writer: JoinHandle<std::io::Result<()>>,
) {
    let mut writer_done = false;
    let ending = loop {
        let drained = drain(&inner, &mut decoder);
        // The front-end is alive when it sends whole frames (PROTOCOL.md section 7): bytes
        // that never complete a frame do not move the deadline.
        let mut heard = drained.frames > 0;
        match inner.deliver(drained.events).await {
            Delivery::Promptly => {}
            // Not reading while the application catches up is not the peer's silence.
            Delivery::AfterWaiting => heard = true,
            Delivery::CloseRequested => break Ending::plain(DisconnectReason::Closed),
        }
        if heard {
            inner.outbox.on_received();
        }
        if let Some(ending) = drained.ending {
            break ending;
        }
        let resubscribe_at = lock(&inner.session)
            .next_resubscribe_at()
            .map(|at| Instant::from_std(Clock::process().to_std(at)));
        let keep_alive_at = inner.outbox.keep_alive_deadline().map(Instant::from_std);
        let far = keep_alive_at
            .or(resubscribe_at)
            .unwrap_or_else(Instant::now);
        decoder.buffer_mut().reserve(READ_RESERVE);
        tokio::select! {
            read = read_half.read_buf(decoder.buffer_mut()) => match read {
                Ok(0) => break Ending::plain(DisconnectReason::PeerClosed),
                Ok(count) => {
                    inner.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                }
                Err(error) => break Ending::plain(DisconnectReason::Io(error.to_string())),
            },
            () = sleep_until(keep_alive_at.unwrap_or(far)), if keep_alive_at.is_some() => {
                // Bytes already waiting in the socket are not silence (a starved process
                // wakes with its timer and its socket ready at once): they come first.
                match read_half.try_read_buf(decoder.buffer_mut()) {
                    Ok(0) => break Ending::plain(DisconnectReason::PeerClosed),
                    Ok(count) => {
                        inner.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                        continue;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => break Ending::plain(DisconnectReason::Io(error.to_string())),
                }
                match inner.outbox.poll_keep_alive() {
                    Some(KeepAliveAction::Ping { nonce }) => {
                        let ping = ClientToFrontend::Ping { nonce };
                        // A refused push closes the outbox; the writer's end ends this loop.
                        let _ = inner.outbox.push(ping.encode_to_bytes(), FrameKind::Other);
                    }
                    Some(KeepAliveAction::Close { silent_for }) => {
                        break Ending {
                            reason: DisconnectReason::Timeout,
                            error_frame: Some(ClientToFrontend::Error {
                                code: ErrorCode::Timeout,
                                text: flotilla_conn::silence_text(silent_for),
                            }.encode_to_bytes()),
                        };
                    }
                    None => {}
                }
            }
            () = sleep_until(resubscribe_at.unwrap_or(far)), if resubscribe_at.is_some() => {
                let due = lock(&inner.session).due_resubscribes(Clock::process().now());
                for message in &due {
                    // A refused push closes the outbox; the writer's end ends this loop.
                    let _ = inner.outbox.push(message.encode_to_bytes(), FrameKind::Other);
                }
            }
            written = &mut writer => {
                writer_done = true;
                break Ending::plain(match written {
                    Ok(Ok(())) => DisconnectReason::Closed,
                    Ok(Err(error)) => DisconnectReason::Io(error.to_string()),
                    Err(error) => DisconnectReason::Io(error.to_string()),
                });
            }
            () = inner.close_requested.notified() => break Ending::plain(DisconnectReason::Closed),
        }
    };
    inner.connected.store(false, Ordering::Release);
    log::debug!("client connection ending: {:?}", ending.reason);
    inner.outbox.close(ending.error_frame);
    // Published before the flush: a fleet client moves on at once (a dead host would hold
    // the flush for its whole bound).
    inner.events_dropped_before_end.store(
        inner.events_dropped.load(Ordering::Relaxed),
        Ordering::Release,
    );
    inner.ended.send_replace(Some(ending.reason.clone()));
    if !writer_done {
        let flush = tokio::time::timeout(std::time::Duration::from_secs(1), &mut writer);
        if flush.await.is_err() {
            writer.abort();
        }
    }
    inner.emit(ClientEvent::Disconnected {
        reason: ending.reason,
    });
}

/// What [`drain`] found: frames handled, events to deliver, and the end of the
/// connection if a frame called for it.
struct Drained {
    frames: usize,
    events: Vec<ClientEvent>,
    ending: Option<Ending>,
}

/// Handles every complete frame in the decoder (one session lock for the lot). The events
/// are bounded by what one read brought in.
fn drain(inner: &Inner, decoder: &mut Decoder) -> Drained {
    let now = Clock::process().now();
    let mut events = Vec::new();
    let mut frames = 0;
    let mut result = Ok(());
    {
        let mut session = lock(&inner.session);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    result = Err(Ending::protocol(error.code(), error.to_string()));
                    break;
                }
            };
            inner.frames_received.fetch_add(1, Ordering::Relaxed);
            frames += 1;
            let message = match FrontendToClient::decode(&frame) {
                Ok(message) => message,
                Err(error) => {
                    result = Err(Ending::protocol(error.code(), error.to_string()));
                    break;
                }
            };
            match session.handle(message, frame.len(), now) {
                Ok(handled) => {
                    for reply in &handled.replies {
                        let _ = inner.outbox.push(reply.encode_to_bytes(), FrameKind::Other);
                    }
                    events.extend(handled.events);
                }
                Err(Fatal::Peer { code, text }) => {
                    result = Err(Ending::plain(DisconnectReason::PeerError { code, text }));
                    break;
                }
                Err(Fatal::Protocol(error)) => {
                    result = Err(Ending::protocol(error.code(), error.to_string()));
                    break;
                }
                Err(Fatal::Unexpected(what)) => {
                    result = Err(Ending::protocol(
                        ErrorCode::UnexpectedFrame,
                        what.to_owned(),
                    ));
                    break;
                }
            }
        }
    }
    Drained {
        frames,
        events,
        ending: result.err(),
    }
}
