//! The tokio shell of [`ClientMachine`]: the one driver behind both [`Client`](crate::Client)
//! and [`FleetClient`](crate::FleetClient).
//!
//! The machine decides everything (which front-end, the handshake, keep-alive, failover,
//! resubscribes, the inputs queued between front-ends); this shell only:
//! - opens the connection it asks for (TCP, with `TCP_NODELAY`), and resolves the DNS list
//!   when it asks;
//! - writes what it asks to send through an [`Outbox`] and a writer task (a send queue
//!   over its budget closes the connection with `Error{Overloaded}`);
//! - reads the socket and feeds the bytes, sleeps until the machine's next deadline (bytes
//!   already waiting are read first: a starved process wakes with its timer and its socket
//!   ready at once, and that is not the front-end's silence);
//! - delivers the machine's events to the application, with backpressure.
//!
//! Application calls (subscribe, send an input, close) take the machine's lock, feed it,
//! and handle its outputs right there, so a subscribe or an input is in the connection's
//! queue when the call returns; the driver task does the same after each read and timer.
//!
//! # Events and backpressure
//! Outputs and unsubscribes are never dropped: one that finds the application's queue full
//! waits in a backlog, in order with what comes after it, and the driver stops reading the
//! socket until the application makes room (the machine is told, so that the time not
//! read is not the front-end's silence). Every other event (replica notifications,
//! failover notices) is queued without waiting: behind the backlog if there is one (at
//! most [`ClientConfig::event_queue`](crate::ClientConfig::event_queue) of them, and at
//! least 64), and dropped when the queue is full (counted). The machine's failover never
//! waits for the application.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_conn::{Clock, KeepAliveConfig, Machine};
use flotilla_link::outbox::{FrameKind, LinkCounters, Outbox, run_writer};
use flotilla_link::stream::{LinkReader, LinkStream};
use flotilla_wire::{ClientToFrontend, ErrorCode, Message};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::dns::DnsResolver;
use crate::error::ClientError;
use crate::events::{ClientEvent, DisconnectReason, is_lossless};
use crate::machine::{AttemptError, ClientInput, ClientMachine, ClientOutput};

/// How long a closing connection may take to flush before it is cut.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The fewest notifications kept behind outputs that wait for the application's queue.
const MIN_BACKLOG_NOTIFICATIONS: usize = 64;

/// Bytes reserved in the receive buffer before each read.
const READ_RESERVE: usize = 8 * 1024;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the shell needs besides the machine.
pub(crate) struct ShellConfig {
    /// The front-end list the machine's indices refer to (empty until resolved).
    pub(crate) addresses: Vec<SocketAddr>,
    /// Resolves the list when the machine asks; `None` for a fixed list.
    pub(crate) resolver: Option<DnsResolver>,
    /// The send budget of each connection.
    pub(crate) max_queued_bytes: usize,
    /// The application's event queue.
    pub(crate) event_queue: usize,
    /// TLS for every connection, if the front-ends are `tls://`.
    pub(crate) tls: Option<crate::ClientTls>,
}

/// The connection in use, as the application sees it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// Which connection (a new one each `Connect`).
    generation: u64,
    pub(crate) addr: SocketAddr,
    /// Set once the TCP connection is up.
    outbox: Option<Arc<Outbox>>,
    /// From the welcome.
    pub(crate) server_id: Option<String>,
}

/// The first outcome, for `connect` to return.
#[derive(Debug, Clone)]
pub(crate) enum FirstOutcome {
    /// Welcomed: token, resumed, server id, address.
    Welcomed {
        session_token: Bytes,
        resumed: bool,
        server_id: String,
        addr: SocketAddr,
    },
    /// The machine ended before any welcome; the last attempt's error, if any.
    Ended {
        reason: DisconnectReason,
        attempt: Option<AttemptError>,
        last_resolve_error: Option<String>,
    },
}

/// The machine and what the shell keeps next to it, under one lock.
pub(crate) struct State {
    pub(crate) machine: ClientMachine,
    pub(crate) addresses: Vec<SocketAddr>,
    pub(crate) current: Option<Current>,
    next_generation: u64,
    /// A `Connect` not started yet by the driver: generation and address.
    connect_asked: Option<(u64, SocketAddr)>,
    resolve_asked: bool,
    pub(crate) first: Option<FirstOutcome>,
    last_attempt_error: Option<AttemptError>,
    last_resolve_error: Option<String>,
}

/// State shared by the handle and the driver task.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Wakes the driver: a connect or resolve was asked for, or the machine ended.
    wake: Notify,
    /// The application's event queue; `None` once the client has ended (the receiver
    /// sees the end after the final `Disconnected`). Lock order: state, backlog, events.
    events: Mutex<Option<mpsc::Sender<ClientEvent>>>,
    backlog: Mutex<Backlog>,
    /// `Some(reason)` once the client has ended and its events are all handed over.
    pub(crate) done: watch::Sender<Option<DisconnectReason>>,
    /// Set once the first outcome (welcome, or the end) is known.
    first_known: watch::Sender<bool>,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    /// Written by every connection in turn.
    pub(crate) sent: Arc<LinkCounters>,
    max_queued_bytes: usize,
    clock: Clock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The machine's time: the process clock (events' receive times are on it too).
    pub(crate) fn now(&self) -> flotilla_conn::Instant {
        self.clock.now()
    }

    /// Feeds `input` to the machine and handles its outputs.
    pub(crate) fn feed(&self, state: &mut State, input: ClientInput) {
        let now = self.now();
        state.machine.handle(now, input);
        self.process(state);
    }

    /// Handles every output the machine has.
    fn process(&self, state: &mut State) {
        let mut wake = false;
        while let Some(output) = state.machine.poll_output() {
            match output {
                ClientOutput::Connect(index) => {
                    let Some(&addr) = state.addresses.get(index) else {
                        // Not reached: the machine's indices are into this list.
                        let now = self.now();
                        state
                            .machine
                            .handle(now, ClientInput::ConnectFailed("no such front-end".into()));
                        continue;
                    };
                    state.next_generation += 1;
                    let generation = state.next_generation;
                    state.current = Some(Current {
                        generation,
                        addr,
                        outbox: None,
                        server_id: None,
                    });
                    state.connect_asked = Some((generation, addr));
                    wake = true;
                }
                ClientOutput::Send(bytes) => {
                    if let Some(outbox) = state.current.as_ref().and_then(|c| c.outbox.as_ref()) {
                        // A refused push closes the outbox (with Error{Overloaded} when
                        // over budget); the writer's end ends the connection.
                        let _ = outbox.push(bytes, FrameKind::Other);
                    }
                }
                ClientOutput::Close => {
                    // The Lost or ConnectFailed that follows (if any) forgets the
                    // connection; the writer flushes what was asked before.
                    if let Some(outbox) = state.current.as_ref().and_then(|c| c.outbox.as_ref()) {
                        outbox.close(None);
                    }
                    state.connect_asked = None;
                    wake = true;
                }
                ClientOutput::Resolve => {
                    state.resolve_asked = true;
                    wake = true;
                }
                ClientOutput::Welcomed {
                    frontend: _,
                    server_id,
                    session_token,
                    resumed,
                    after,
                } => {
                    let Some(current) = state.current.as_mut() else {
                        continue;
                    };
                    current.server_id = Some(server_id.clone());
                    let addr = current.addr;
                    if state.first.is_none() {
                        state.first = Some(FirstOutcome::Welcomed {
                            session_token,
                            resumed,
                            server_id: server_id.clone(),
                            addr,
                        });
                        self.first_known.send_replace(true);
                    }
                    if let Some(after) = after {
                        let event = ClientEvent::Reconnected {
                            to: addr,
                            server_id,
                            resumed,
                            after,
                        };
                        log::info!("client: {event:?}");
                        self.notify(event);
                    }
                }
                ClientOutput::Lost {
                    frontend: _,
                    reason,
                } => {
                    if let Some(current) = state.current.take() {
                        if let Some(outbox) = &current.outbox {
                            // Ended by the peer or an error: nothing more to write.
                            outbox.close(None);
                        }
                        let server_id = current.server_id.unwrap_or_default();
                        log::info!(
                            "client: lost front-end {} ({server_id}): {reason:?}",
                            current.addr
                        );
                        if state.machine.ended().is_none() {
                            self.notify(ClientEvent::FrontendLost {
                                from: current.addr,
                                server_id,
                                reason,
                            });
                        }
                    }
                }
                ClientOutput::ConnectFailed {
                    frontend: _,
                    error,
                    failed_rounds,
                } => {
                    if let Some(current) = state.current.take() {
                        if let Some(outbox) = &current.outbox {
                            outbox.close(None);
                        }
                        log::debug!("client: connecting to {}: {error}", current.addr);
                        if state.machine.ended().is_none() {
                            self.notify(ClientEvent::ConnectFailed {
                                addr: current.addr,
                                error: error.to_string(),
                                failed_rounds,
                            });
                        }
                    }
                    state.connect_asked = None;
                    state.last_attempt_error = Some(error);
                }
                ClientOutput::Ended { reason } => {
                    if state.first.is_none() {
                        state.first = Some(FirstOutcome::Ended {
                            reason,
                            attempt: state.last_attempt_error.clone(),
                            last_resolve_error: state.last_resolve_error.clone(),
                        });
                        self.first_known.send_replace(true);
                    }
                    wake = true;
                }
                ClientOutput::Event(event) => {
                    let generation = state.current.as_ref().map(|c| c.generation);
                    let mut backlog = lock(&self.backlog);
                    self.enqueue(&mut backlog, event, generation);
                }
            }
        }
        if wake {
            self.wake.notify_one();
        }
    }

    /// Moves the backlog into the application's queue, in order, as far as there is room.
    /// True when the backlog is empty.
    fn hand_over(&self) -> bool {
        let mut backlog = lock(&self.backlog);
        let queue = lock(&self.events).clone();
        while let Some(event) = backlog.pop_front() {
            let sent = match &queue {
                Some(queue) => queue.try_send(event),
                None => Err(TrySendError::Closed(event)),
            };
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    backlog.push_front(event);
                    return false;
                }
                Err(TrySendError::Closed(_)) => {
                    self.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        true
    }

    /// Queues `event` for the application without waiting; `generation` is the
    /// connection it came from (`None` for the shell's own notifications). With an empty
    /// backlog it goes straight into the queue: an output or unsubscribe that finds it
    /// full starts the backlog (and that connection stops being read), a notification is
    /// dropped (counted). Behind a backlog, outputs and unsubscribes wait their turn, a
    /// connection's replica notifications are dropped (the replica is always readable),
    /// and the shell's failover notices wait while the backlog holds fewer than its limit.
    fn enqueue(&self, backlog: &mut Backlog, event: ClientEvent, generation: Option<u64>) {
        if !backlog.is_empty() {
            let kept = if generation.is_some() && !is_lossless(&event) {
                false
            } else {
                backlog.push_back(event, generation)
            };
            if !kept {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let sent = match lock(&self.events).as_ref() {
            Some(queue) => queue.try_send(event),
            None => Err(TrySendError::Closed(event)),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(event)) if is_lossless(&event) => {
                backlog.push_back(event, generation);
            }
            Err(_) => {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// True while connection `generation` has outputs or unsubscribes waiting for the
    /// application: it is not read until they are taken (backpressure on that connection
    /// only; a newer connection is read, its replica notifications dropped meanwhile).
    fn blocks_reading(&self, generation: Option<u64>) -> bool {
        let backlog = lock(&self.backlog);
        backlog.lossless > 0
            && generation.is_some()
            && backlog.last_lossless_generation == generation
    }

    /// Queues a notification without waiting (see [`enqueue`](Self::enqueue)).
    fn notify(&self, event: ClientEvent) {
        self.hand_over();
        let mut backlog = lock(&self.backlog);
        self.enqueue(&mut backlog, event, None);
    }

    /// Hands over what it can of the backlog, counts the rest as dropped, queues the final
    /// `Disconnected` (dropped if the queue is full) and ends the event stream.
    fn end_events(&self, reason: DisconnectReason) {
        self.hand_over();
        let left = lock(&self.backlog).clear();
        self.events_dropped.fetch_add(left, Ordering::Relaxed);
        let events = lock(&self.events).take();
        let queued = events.is_some_and(|events| {
            events
                .try_send(ClientEvent::Disconnected { reason })
                .is_ok()
        });
        if !queued {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until the first outcome is known, and returns it.
    pub(crate) async fn first_outcome(&self) -> FirstOutcome {
        let mut known = self.first_known.subscribe();
        let _ = known.wait_for(|known| *known).await;
        lock(&self.state)
            .first
            .clone()
            .unwrap_or(FirstOutcome::Ended {
                reason: DisconnectReason::Closed,
                attempt: None,
                last_resolve_error: None,
            })
    }

    /// Closes the client: the machine ends, and the driver hands over the rest.
    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        self.feed(&mut state, ClientInput::Close);
        self.wake.notify_one();
    }
}

/// Events waiting, in order, for room in the application's queue: first an output or
/// unsubscribe that found it full, then what came after it. Outputs and unsubscribes are
/// never refused (they are bounded by the reads of their connection, which stop
/// meanwhile); the shell's notifications up to a limit.
#[derive(Debug)]
struct Backlog {
    events: VecDeque<ClientEvent>,
    /// How many of `events` are notifications (neither outputs nor unsubscribes).
    notifications: usize,
    /// How many are outputs or unsubscribes.
    lossless: usize,
    /// The connection the last of those came from.
    last_lossless_generation: Option<u64>,
    /// The most notifications kept.
    max_notifications: usize,
}

impl Backlog {
    fn new(max_notifications: usize) -> Self {
        Self {
            events: VecDeque::new(),
            notifications: 0,
            lossless: 0,
            last_lossless_generation: None,
            max_notifications,
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends `event` from connection `generation`; false (not kept) for a notification
    /// past the limit.
    fn push_back(&mut self, event: ClientEvent, generation: Option<u64>) -> bool {
        if is_lossless(&event) {
            self.lossless += 1;
            self.last_lossless_generation = generation;
        } else {
            if self.notifications >= self.max_notifications {
                return false;
            }
            self.notifications += 1;
        }
        self.events.push_back(event);
        true
    }

    /// Puts back the event just taken.
    fn push_front(&mut self, event: ClientEvent) {
        if is_lossless(&event) {
            self.lossless += 1;
        } else {
            self.notifications += 1;
        }
        self.events.push_front(event);
    }

    fn pop_front(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if is_lossless(&event) {
            self.lossless = self.lossless.saturating_sub(1);
        } else {
            self.notifications = self.notifications.saturating_sub(1);
        }
        Some(event)
    }

    /// Empties the backlog; returns how many events it held.
    fn clear(&mut self) -> u64 {
        let count = self.events.len() as u64;
        self.events.clear();
        self.notifications = 0;
        self.lossless = 0;
        count
    }
}

/// Starts the shell of `machine`: returns the shared state and the application's event
/// queue; the driver task runs until the machine ends.
pub(crate) fn start(
    machine: ClientMachine,
    config: ShellConfig,
) -> (Arc<Shared>, mpsc::Receiver<ClientEvent>) {
    let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            machine,
            addresses: config.addresses,
            current: None,
            next_generation: 0,
            connect_asked: None,
            resolve_asked: false,
            first: None,
            last_attempt_error: None,
            last_resolve_error: None,
        }),
        wake: Notify::new(),
        events: Mutex::new(Some(events_tx)),
        backlog: Mutex::new(Backlog::new(
            config.event_queue.max(MIN_BACKLOG_NOTIFICATIONS),
        )),
        done: watch::Sender::new(None),
        first_known: watch::Sender::new(false),
        events_dropped: AtomicU64::new(0),
        bytes_received: AtomicU64::new(0),
        sent: Arc::new(LinkCounters::default()),
        max_queued_bytes: config.max_queued_bytes,
        clock: Clock::process(),
    });
    tokio::spawn(drive(Arc::clone(&shared), config.resolver, config.tls));
    (shared, events_rx)
}

type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<LinkStream>> + Send>>;
type ResolveFuture = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, String>> + Send>>;

/// Connects with `TCP_NODELAY` set, and runs the TLS handshake if asked.
async fn connect(addr: SocketAddr, tls: Option<crate::ClientTls>) -> std::io::Result<LinkStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        Some(tls) => tls.connect(stream).await,
        None => Ok(LinkStream::Plain(stream)),
    }
}

/// What one turn of the driver saw.
enum Turn {
    Woken,
    Connected(std::io::Result<LinkStream>),
    Resolved(Result<Vec<SocketAddr>, String>),
    Read(std::io::Result<usize>),
    WriterEnded(std::io::Result<()>),
    Deadline,
    Room,
}

/// What a read of the connection tells the machine: EOF, the bytes read (taken from
/// `buffer`), or the error.
fn read_input(shared: &Shared, read: std::io::Result<usize>, buffer: &mut BytesMut) -> ClientInput {
    match read {
        Ok(0) => ClientInput::Closed,
        Ok(count) => {
            shared
                .bytes_received
                .fetch_add(count as u64, Ordering::Relaxed);
            ClientInput::Received(buffer.split().freeze())
        }
        Err(error) => ClientInput::Failed(error.to_string()),
    }
}

/// Lets a writer flush what it was asked to write, then cuts it after [`CLOSE_GRACE`].
fn retire(writer: JoinHandle<std::io::Result<()>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let abort = writer.abort_handle();
        if tokio::time::timeout(CLOSE_GRACE, writer).await.is_err() {
            abort.abort();
        }
    })
}

/// The driver: connects, resolves, reads, sleeps and hands events over until the machine
/// ends; then lets the last connection flush (bounded) and ends the event stream.
async fn drive(shared: Arc<Shared>, resolver: Option<DnsResolver>, tls: Option<crate::ClientTls>) {
    let mut connecting: Option<(u64, ConnectFuture)> = None;
    let mut resolving: Option<ResolveFuture> = None;
    // The connection read: its generation, read half and writer.
    let mut generation: Option<u64> = None;
    let mut read_half: Option<LinkReader> = None;
    let mut writer: Option<JoinHandle<std::io::Result<()>>> = None;
    let mut retired: Vec<JoinHandle<()>> = Vec::new();
    let mut buffer = BytesMut::new();
    let mut paused = false;
    let final_reason = loop {
        // What the machine asked for since the last turn.
        let deadline = {
            let mut state = lock(&shared.state);
            if let Some((asked, addr)) = state.connect_asked.take() {
                connecting = Some((asked, Box::pin(connect(addr, tls.clone()))));
            }
            if std::mem::take(&mut state.resolve_asked) {
                resolving = match &resolver {
                    Some(resolver) => {
                        let resolver = resolver.clone();
                        Some(Box::pin(async move { resolver.resolve().await }))
                    }
                    None => {
                        // A fixed list never changes.
                        shared.feed(&mut state, ClientInput::ListUnchanged);
                        None
                    }
                };
            }
            let live = state.current.as_ref().map(|c| c.generation);
            if connecting.as_ref().is_some_and(|(g, _)| Some(*g) != live) {
                connecting = None;
            }
            if generation.is_some() && generation != live {
                generation = None;
                read_half = None;
                if let Some(old) = writer.take() {
                    retired.push(retire(old));
                }
            }
            retired.retain(|watchdog| !watchdog.is_finished());
            if let Some(reason) = state.machine.ended() {
                break reason.clone();
            }
            state.machine.poll_timeout()
        };
        let waiting = !shared.hand_over();
        let blocked = shared.blocks_reading(generation);
        if blocked != paused {
            paused = blocked;
            let mut state = lock(&shared.state);
            let input = if paused {
                ClientInput::ReadingPaused
            } else {
                ClientInput::ReadingResumed
            };
            shared.feed(&mut state, input);
            continue;
        }
        let wake_at = deadline.map(|at| tokio::time::Instant::from_std(shared.clock.to_std(at)));
        let queue = lock(&shared.events).clone();
        let can_read = read_half.is_some() && !blocked;
        if can_read {
            buffer.reserve(READ_RESERVE);
        }
        let turn = tokio::select! {
            () = shared.wake.notified() => Turn::Woken,
            stream = async {
                match connecting.as_mut() {
                    Some((_, future)) => future.await,
                    None => std::future::pending().await,
                }
            }, if connecting.is_some() => Turn::Connected(stream),
            list = async {
                match resolving.as_mut() {
                    Some(future) => future.await,
                    None => std::future::pending().await,
                }
            }, if resolving.is_some() => Turn::Resolved(list),
            read = async {
                match read_half.as_mut() {
                    Some(read_half) => read_half.read_buf(&mut buffer).await,
                    None => std::future::pending().await,
                }
            }, if can_read => Turn::Read(read),
            written = async {
                match writer.as_mut() {
                    Some(writer) => writer.await.unwrap_or_else(|error| Err(std::io::Error::other(error))),
                    None => std::future::pending().await,
                }
            }, if writer.is_some() => Turn::WriterEnded(written),
            () = tokio::time::sleep_until(wake_at.unwrap_or_else(tokio::time::Instant::now)),
                if wake_at.is_some() => Turn::Deadline,
            _room = async {
                match &queue {
                    Some(queue) => queue.reserve().await.map(drop).map_err(drop),
                    None => Err(()),
                }
            }, if waiting => Turn::Room,
        };
        let mut state = lock(&shared.state);
        match turn {
            Turn::Woken | Turn::Room => {}
            Turn::Connected(result) => {
                let Some((asked, _)) = connecting.take() else {
                    continue;
                };
                if state.current.as_ref().map(|c| c.generation) != Some(asked) {
                    continue;
                }
                match result {
                    Ok(stream) => {
                        let goodbye = ClientToFrontend::Error {
                            code: ErrorCode::Overloaded,
                            text: "client send queue over budget".to_owned(),
                        };
                        // The machine keeps the connection alive: the outbox never pings.
                        let outbox = Arc::new(Outbox::new(
                            shared.max_queued_bytes,
                            goodbye.encode_to_bytes(),
                            Arc::clone(&shared.sent),
                            shared.clock,
                            KeepAliveConfig::new(Duration::ZERO, Duration::MAX),
                        ));
                        let (reader, write_half) = stream.split();
                        writer = Some(tokio::spawn(run_writer(write_half, Arc::clone(&outbox))));
                        if let Some(current) = state.current.as_mut() {
                            current.outbox = Some(outbox);
                        }
                        generation = Some(asked);
                        read_half = Some(reader);
                        buffer.clear();
                        shared.feed(&mut state, ClientInput::Connected);
                    }
                    Err(error) => {
                        shared.feed(&mut state, ClientInput::ConnectFailed(error.to_string()));
                    }
                }
            }
            Turn::Resolved(result) => {
                resolving = None;
                let input = resolved_input(&shared, &mut state, resolver.as_ref(), result);
                shared.feed(&mut state, input);
            }
            Turn::Read(result) => {
                let input = read_input(&shared, result, &mut buffer);
                shared.feed(&mut state, input);
            }
            Turn::WriterEnded(result) => {
                // The writer ended on its own: a write failed, or the outbox closed itself
                // over its budget (after writing Error{Overloaded}). The connection is over.
                writer = None;
                read_half = None;
                let error = match result {
                    Ok(()) => "the send queue went over its budget".to_owned(),
                    Err(error) => error.to_string(),
                };
                shared.feed(&mut state, ClientInput::Failed(error));
            }
            Turn::Deadline => {
                // Bytes already waiting in the socket are not silence: they come first.
                if let Some(reader) = read_half.as_mut()
                    && !blocked
                {
                    buffer.reserve(READ_RESERVE);
                    match reader.try_read_buf(&mut buffer) {
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        result => {
                            let input = read_input(&shared, result, &mut buffer);
                            shared.feed(&mut state, input);
                            continue;
                        }
                    }
                }
                shared.feed(&mut state, ClientInput::Timeout);
            }
        }
    };
    // Let the last connections flush what they were asked to write, bounded.
    drop(read_half);
    if let Some(last) = writer.take() {
        retired.push(retire(last));
    }
    for watchdog in retired {
        let _ = watchdog.await;
    }
    shared.end_events(final_reason.clone());
    shared.done.send_replace(Some(final_reason));
}

/// Turns a resolution into the machine's input, telling the application what changed.
fn resolved_input(
    shared: &Shared,
    state: &mut State,
    resolver: Option<&DnsResolver>,
    result: Result<Vec<SocketAddr>, String>,
) -> ClientInput {
    let name = resolver.map(|r| r.name().to_owned()).unwrap_or_default();
    match result {
        Ok(addresses) if addresses == state.addresses => ClientInput::ListUnchanged,
        Ok(addresses) if addresses.is_empty() => {
            resolve_failed(shared, state, name, "no address".to_owned())
        }
        Ok(addresses) => {
            if state.machine.connected_to().is_some() {
                // Not reached: the machine asks only between connections.
                return ClientInput::ListUnchanged;
            }
            log::info!("client: {name} resolves to {addresses:?}");
            state.addresses.clone_from(&addresses);
            let labels = addresses.iter().map(ToString::to_string).collect();
            shared.notify(ClientEvent::FrontendsResolved {
                name,
                frontends: addresses,
            });
            ClientInput::ListReplaced(labels)
        }
        Err(error) => resolve_failed(shared, state, name, error),
    }
}

fn resolve_failed(shared: &Shared, state: &mut State, name: String, error: String) -> ClientInput {
    let kept = if state.addresses.is_empty() {
        "no list yet"
    } else {
        "keeping the last list"
    };
    log::warn!("client: resolving {name}: {error} ({kept})");
    state.last_resolve_error = Some(error.clone());
    shared.notify(ClientEvent::ResolveFailed {
        name,
        error: error.clone(),
    });
    ClientInput::ResolveFailed(error)
}

/// Maps an attempt's error for `connect`.
pub(crate) fn attempt_error(
    attempt: Option<AttemptError>,
    reason: &DisconnectReason,
) -> ClientError {
    match attempt {
        Some(error) => error.into(),
        None => match reason {
            DisconnectReason::GaveUp {
                failed_rounds,
                last_error,
            } => ClientError::GaveUp {
                failed_rounds: *failed_rounds,
                last_error: last_error.clone(),
            },
            _ => ClientError::NotConnected,
        },
    }
}
