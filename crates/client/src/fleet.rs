//! The fleet client (tokio shell): one session over a list of front-ends, with random
//! balancing and failover.
//!
//! A [`FleetClient`] holds the list every client of the fleet holds ([`FrontendSource`]:
//! built in, or every A and AAAA record of one DNS name), connects to a
//! front-end picked uniformly at random and, whenever that connection fails (closed,
//! reset, ping/idle timeout, `Error{Overloaded}`, `Error{ShuttingDown}`, ...), connects to
//! another one picked at random and resumes there: the hello carries the session token
//! (the front-end resumes the session and tells the game server it moved) and every world
//! is re-subscribed from its last position, so a replica continues with the missing
//! batches when the new front-end still has them in its ring, or with a snapshot.
//!
//! The decisions (which front-end, when, when to resolve the list, when to give up) are
//! the sans-I/O [`Failover`] machine; this shell only resolves names, connects sockets,
//! sleeps and forwards events. The session
//! ([`ClientSession`]: token, subscriptions, replicas) is shared by every connection in
//! turn.
//!
//! While between front-ends:
//! - reads (`digest`, `get`, `with_replica`, `position`) answer from the replicas, which
//!   keep their last state;
//! - `subscribe` / `unsubscribe` change the session; the next connection resumes it;
//! - `send_input` queues the input, up to [`FleetConfig::max_pending_inputs`] inputs and
//!   [`FleetConfig::max_pending_input_bytes`] payload bytes, and sends the queue in order
//!   right after the next hello and resubscribes; past the bound it fails with
//!   [`ClientError::InputQueueFull`] (counted in [`FleetStats::inputs_refused`]). Inputs
//!   still queued when the client gives up or is closed are counted in
//!   [`FleetStats::inputs_discarded`]. An input accepted while connected is sent at most
//!   once: it is lost, with no error and no counter, when the connection it was written to
//!   dies before the front-end forwarded it (a silent death is noticed only after the idle
//!   timeout, 1.5 s by default, and every input written meanwhile is lost). Inputs are
//!   never resent, so never duplicated.
//!
//! # Front-ends from DNS
//!
//! With [`FrontendSource::Dns`] ([`FleetConfig::from_dns`]) the list is every A and AAAA
//! record of one name, each with the configured port, asked of the system's name servers
//! or of explicit ones ([`DnsFrontends`]). The name is resolved at connect and again at
//! the start of every failover round (after a lost front-end, and after a round in which
//! every front-end failed, once its backoff is over), each resolution bounded by
//! [`DnsFrontends::timeout`]. So front-ends added to DNS start getting clients as clients
//! fail over or connect, and front-ends removed from DNS are no longer picked, without
//! restarting anything. A list with other addresses replaces the old one
//! ([`ClientEvent::FrontendsResolved`]); the pick stays uniform over the current list. A
//! resolution that fails or finds no address keeps the last good list
//! ([`ClientEvent::ResolveFailed`], [`FleetStats::resolve_failures`]); before the first
//! good list it counts as a failed round (backoff, [`FailoverPolicy::max_failed_rounds`]),
//! and [`FleetClient::connect`] fails with [`ClientError::Unresolved`] once they are used
//! up. The connection in use is never dropped because its front-end left DNS: DNS only
//! steers the next pick.
//!
//! One event stream spans every connection: the usual events, plus
//! [`ClientEvent::FrontendLost`], [`ClientEvent::ConnectFailed`],
//! [`ClientEvent::Reconnected`] and, with DNS, [`ClientEvent::ResolveFailed`] and
//! [`ClientEvent::FrontendsResolved`]; [`ClientEvent::Disconnected`] comes once, at the
//! very end.
//!
//! Failover never waits for the application's notification events. Outputs and
//! unsubscribes are never dropped: while the queue is full they wait, and the connection
//! that carries them stops reading once its own queue is full too (backpressure on that
//! connection only; a connection that reads nothing notices the end of its front-end only
//! once the application takes events). When a connection ends, what it still had queued
//! waits in the fleet client, in order, and the failover goes on; the next connection's
//! events follow once those are taken. Every other event (replica notifications and the
//! failover ones above) is queued without waiting: behind the waiting outputs if any (at
//! most [`ClientConfig::event_queue`] of them, and at least 64), and dropped when the
//! queue is full, counted in [`FleetStats::events_dropped`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use flotilla_wire::{ClientToFrontend, WorldId};
use flotilla_world::{Position, Replica};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::client::{Client, LinkSender};
use crate::config::ClientConfig;
use crate::dns::{DnsFrontends, DnsResolver};
use crate::error::ClientError;
use crate::events::{ClientEvent, ClientEvents, DisconnectReason, is_lossless};
use crate::failover::{Failover, FailoverPolicy, Step};
use crate::session::{ClientSession, WorldCounters};

/// How long a closing connection may take to flush before the fleet client moves on.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The fewest notifications kept behind outputs that wait for the application's queue
/// (at least [`ClientConfig::event_queue`] are).
const MIN_BACKLOG_NOTIFICATIONS: usize = 64;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a [`FleetClient`] takes its front-end list from: the same list for every client
/// of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendSource {
    /// A fixed list of addresses (built in, or configured).
    List(Vec<SocketAddr>),
    /// Every A and AAAA record of one DNS name, with a port; resolved at connect and at the
    /// start of every failover round.
    Dns(DnsFrontends),
}

impl From<Vec<SocketAddr>> for FrontendSource {
    fn from(addresses: Vec<SocketAddr>) -> Self {
        Self::List(addresses)
    }
}

impl From<DnsFrontends> for FrontendSource {
    fn from(dns: DnsFrontends) -> Self {
        Self::Dns(dns)
    }
}

/// Settings of a [`FleetClient`].
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The front-ends: a fixed list of addresses, or every A/AAAA record of one DNS name.
    pub frontends: FrontendSource,
    /// Settings of each connection (name, replica mode, keep-alive, timeouts, queues).
    /// `session_token` resumes an earlier session on the first connection.
    pub client: ClientConfig,
    /// When to reconnect and when to give up.
    pub failover: FailoverPolicy,
    /// Seed of the random choice of front-ends. `None` (the default): drawn from the
    /// operating system. Set it only for reproducible tests.
    pub seed: Option<u64>,
    /// The most inputs queued while between front-ends. Default 1024.
    pub max_pending_inputs: usize,
    /// The most payload bytes queued while between front-ends. Default 256 KiB.
    pub max_pending_input_bytes: usize,
}

impl FleetConfig {
    /// A configuration over the fixed list `frontends` with the default settings.
    pub fn new(frontends: Vec<SocketAddr>) -> Self {
        Self::from_source(frontends)
    }

    /// A configuration over every A and AAAA record of `name`, with `port`, asked of the
    /// system's name servers, with the default settings (see [`DnsFrontends`] for other
    /// name servers and the resolution timeout).
    pub fn from_dns(name: impl Into<String>, port: u16) -> Self {
        Self::from_source(DnsFrontends::new(name, port))
    }

    /// A configuration over `frontends` (a list of addresses or a [`DnsFrontends`]) with
    /// the default settings.
    pub fn from_source(frontends: impl Into<FrontendSource>) -> Self {
        Self {
            frontends: frontends.into(),
            client: ClientConfig::default(),
            failover: FailoverPolicy::default(),
            seed: None,
            max_pending_inputs: 1024,
            max_pending_input_bytes: 256 * 1024,
        }
    }
}

/// Counters of a [`FleetClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetStats {
    /// Reconnections after a lost front-end.
    pub reconnects: u64,
    /// Connect or handshake attempts that failed.
    pub failed_attempts: u64,
    /// Established connections that were lost.
    pub connection_losses: u64,
    /// Inputs queued while between front-ends (sent after the reconnection).
    pub inputs_queued: u64,
    /// Inputs refused because the queue was full ([`ClientError::InputQueueFull`]).
    pub inputs_refused: u64,
    /// Queued inputs discarded because the client gave up or was closed.
    pub inputs_discarded: u64,
    /// Events dropped because the application's event queue was full: replica
    /// notifications (by the fleet client or by the connection in use), `ConnectFailed`,
    /// `ResolveFailed`, `FrontendsResolved`, and also `FrontendLost` and `Reconnected`
    /// (failover never waits for the application). Plus events of any kind after the
    /// application dropped its [`ClientEvents`], and outputs still waiting for room when
    /// the client ended. Outputs and unsubscribes are never dropped for a full queue.
    pub events_dropped: u64,
    /// DNS resolutions of the front-end list that failed or found no address
    /// ([`ClientEvent::ResolveFailed`]).
    pub resolve_failures: u64,
    /// Front-end lists resolved with other addresses than before, the first one included
    /// ([`ClientEvent::FrontendsResolved`]).
    pub frontend_list_changes: u64,
}

/// The connection in use, and what waits for the next one.
#[derive(Debug, Default)]
struct Link {
    /// Sends on the connection in use; `None` between front-ends.
    sender: Option<LinkSender>,
    /// The address and server id of the front-end in use.
    frontend: Option<(SocketAddr, String)>,
    /// Inputs waiting for the next connection, oldest first.
    pending: VecDeque<(WorldId, Bytes)>,
    /// Their payload bytes.
    pending_bytes: usize,
    /// The client has ended: nothing more is sent or queued.
    ended: bool,
}

/// State shared by the handle and the driver task.
#[derive(Debug)]
struct Shared {
    /// The session, shared by every connection in turn. Lock order: session, then link.
    session: Arc<Mutex<ClientSession>>,
    link: Mutex<Link>,
    /// The application's event queue; `None` once the client has ended, so that the
    /// receiver sees the end after the final `Disconnected`. Lock order: backlog, then
    /// events.
    events: Mutex<Option<mpsc::Sender<ClientEvent>>>,
    /// Events waiting for room in the application's queue: an output or unsubscribe that
    /// found it full, and what came after it.
    backlog: Mutex<Backlog>,
    close: watch::Sender<bool>,
    done: watch::Sender<bool>,
    origin: Instant,
    max_pending_inputs: usize,
    max_pending_input_bytes: usize,
    reconnects: AtomicU64,
    failed_attempts: AtomicU64,
    connection_losses: AtomicU64,
    inputs_queued: AtomicU64,
    inputs_refused: AtomicU64,
    inputs_discarded: AtomicU64,
    events_dropped: AtomicU64,
    resolve_failures: AtomicU64,
    frontend_list_changes: AtomicU64,
    /// The front-end list in use (for [`FleetClient::frontends`]).
    frontend_list: Mutex<Vec<SocketAddr>>,
}

impl Shared {
    /// Time since the origin, for the failover machine.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn is_closing(&self) -> bool {
        *self.close.borrow()
    }

    /// Installs the connection just welcomed (called under the session lock, after the
    /// resume subscribes) and sends the inputs queued meanwhile.
    fn attach(&self, sender: &LinkSender, addr: SocketAddr, server_id: &str) {
        let mut link = lock(&self.link);
        while let Some((world, payload)) = link.pending.pop_front() {
            let bytes = payload.len();
            let message = ClientToFrontend::Input { world, payload };
            if sender.send(&message).is_err() {
                // The new connection is already failing: keep the rest for the next one.
                if let ClientToFrontend::Input { world, payload } = message {
                    link.pending.push_front((world, payload));
                }
                break;
            }
            link.pending_bytes = link.pending_bytes.saturating_sub(bytes);
        }
        link.sender = Some(sender.clone());
        link.frontend = Some((addr, server_id.to_owned()));
    }

    /// Forgets the connection in use.
    fn detach(&self) {
        let mut link = lock(&self.link);
        link.sender = None;
        link.frontend = None;
    }

    /// Copies the machine's counters for [`FleetClient::stats`].
    fn publish(&self, machine: &Failover) {
        self.reconnects
            .store(machine.reconnects(), Ordering::Relaxed);
        self.failed_attempts
            .store(machine.failed_attempts(), Ordering::Relaxed);
        self.connection_losses
            .store(machine.losses(), Ordering::Relaxed);
        self.resolve_failures
            .store(machine.resolve_failures(), Ordering::Relaxed);
        self.frontend_list_changes
            .store(machine.list_replacements(), Ordering::Relaxed);
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

    /// Queues `event` for the application without waiting. With an empty backlog it goes
    /// straight into the queue: an output or unsubscribe that finds it full starts the
    /// backlog, a notification is dropped (counted). Behind a backlog it waits its turn
    /// (a notification only while the backlog holds fewer than its limit; dropped
    /// otherwise).
    fn enqueue(&self, backlog: &mut Backlog, event: ClientEvent) {
        if !backlog.is_empty() {
            if !backlog.push_back(event) {
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
                backlog.push_back(event);
            }
            Err(_) => {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues a notification of the fleet client without waiting (see
    /// [`enqueue`](Self::enqueue)).
    fn notify(&self, event: ClientEvent) {
        self.hand_over();
        let mut backlog = lock(&self.backlog);
        self.enqueue(&mut backlog, event);
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
}

/// Events waiting, in order, for room in the application's queue: first an output or
/// unsubscribe that found it full, then what came after it. Outputs and unsubscribes are
/// never refused (they are bounded by the connections' queues); notifications up to a
/// limit.
#[derive(Debug)]
struct Backlog {
    events: VecDeque<ClientEvent>,
    /// How many of `events` are notifications (neither outputs nor unsubscribes).
    notifications: usize,
    /// The most notifications kept.
    max_notifications: usize,
}

impl Backlog {
    fn new(max_notifications: usize) -> Self {
        Self {
            events: VecDeque::new(),
            notifications: 0,
            max_notifications,
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends `event`; false (not kept) for a notification past the limit.
    fn push_back(&mut self, event: ClientEvent) -> bool {
        if !is_lossless(&event) {
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
        if !is_lossless(&event) {
            self.notifications += 1;
        }
        self.events.push_front(event);
    }

    fn pop_front(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if !is_lossless(&event) {
            self.notifications = self.notifications.saturating_sub(1);
        }
        Some(event)
    }

    /// Empties the backlog; returns how many events it held.
    fn clear(&mut self) -> u64 {
        let count = self.events.len() as u64;
        self.events.clear();
        self.notifications = 0;
        count
    }
}

/// Returns once a close of the fleet client is requested.
async fn until_closing(close: &mut watch::Receiver<bool>) {
    let _ = close.wait_for(|closing| *closing).await;
}

/// Returns why a connection ended, once it has.
async fn end_of(ended: &mut watch::Receiver<Option<DisconnectReason>>) -> Option<DisconnectReason> {
    ended
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|reason| reason.clone())
}

/// The front-end list in use, and the resolver it comes from (DNS).
#[derive(Debug)]
struct Frontends {
    /// The current list (sorted when it comes from DNS); empty before the first resolution.
    addresses: Vec<SocketAddr>,
    /// `None` for a fixed list.
    resolver: Option<DnsResolver>,
}

/// A connection in use: the client, and which front-end it is on.
struct Established {
    client: Client,
    index: usize,
    addr: SocketAddr,
}

/// Why the fleet client stopped trying to connect.
enum Stop {
    /// The application closed it.
    Closed,
    /// Every front-end failed (or no list could be resolved) `failed_rounds` rounds in a
    /// row.
    GaveUp {
        failed_rounds: u32,
        last_error: String,
        /// The last resolution error, bare (for [`ClientError::Unresolved`]).
        last_resolve_error: Option<String>,
    },
}

/// A client of a fleet of front-ends: one session, random balancing, failover and resume.
///
/// ```no_run
/// # async fn run() -> Result<(), flotilla_client::ClientError> {
/// use flotilla_client::{ClientEvent, FleetClient, FleetConfig};
/// use flotilla_wire::WorldId;
///
/// let frontends = vec!["10.0.0.1:7400".parse().unwrap(), "10.0.0.2:7400".parse().unwrap()];
/// let client = FleetClient::connect(FleetConfig::new(frontends)).await?;
/// let mut events = client.take_events().expect("first take");
/// let arena = WorldId::new("arena-1")?;
/// client.subscribe(arena.clone(), None)?;
/// while let Some(event) = events.recv().await {
///     match event {
///         ClientEvent::FrontendLost { from, reason, .. } => println!("lost {from}: {reason:?}"),
///         ClientEvent::Reconnected { to, resumed, after, .. } => {
///             println!("now on {to} (resumed: {resumed}) after {after:?}")
///         }
///         ClientEvent::Disconnected { .. } => break,
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Dropping the client closes it.
#[derive(Debug)]
pub struct FleetClient {
    shared: Arc<Shared>,
    events: Mutex<Option<ClientEvents>>,
}

impl FleetClient {
    /// Connects to a front-end of `config.frontends` picked at random (trying others, with
    /// backoff between failed rounds, until one welcomes it or
    /// [`FailoverPolicy::max_failed_rounds`] is reached: [`ClientError::GaveUp`]), then
    /// keeps a connection up until [`close`](Self::close). Call from within a tokio
    /// runtime.
    ///
    /// With [`FrontendSource::Dns`] the name is resolved first (each resolution bounded by
    /// [`DnsFrontends::timeout`]); a name that never resolves to an address ends with
    /// [`ClientError::Unresolved`] after [`FailoverPolicy::max_failed_rounds`] rounds, and
    /// unusable DNS settings (empty name, no name server, zero timeout) with
    /// [`ClientError::InvalidConfig`] at once.
    pub async fn connect(config: FleetConfig) -> Result<Self, ClientError> {
        if matches!(&config.frontends, FrontendSource::List(list) if list.is_empty()) {
            return Err(ClientError::InvalidConfig {
                setting: "front-end list",
                reason: "it is empty".to_owned(),
            });
        }
        let seed = match config.seed {
            Some(seed) => seed,
            None => flotilla_balance::seed_from_os_entropy()
                .map_err(|error| ClientError::Io(std::io::Error::other(error.to_string())))?,
        };
        let (mut machine, mut frontends) = match &config.frontends {
            FrontendSource::List(list) => (
                Failover::new(list.len(), config.failover, seed)?,
                Frontends {
                    addresses: list.clone(),
                    resolver: None,
                },
            ),
            FrontendSource::Dns(dns) => (
                Failover::resolving(config.failover, seed),
                Frontends {
                    addresses: Vec::new(),
                    resolver: Some(DnsResolver::new(dns)?),
                },
            ),
        };
        let session = ClientSession::new(
            config.client.mode,
            config.client.client_name.clone(),
            config.client.session_token.clone(),
        );
        let (events_tx, events_rx) = mpsc::channel(config.client.event_queue.max(1));
        let shared = Arc::new(Shared {
            session: Arc::new(Mutex::new(session)),
            link: Mutex::new(Link::default()),
            events: Mutex::new(Some(events_tx)),
            backlog: Mutex::new(Backlog::new(
                config.client.event_queue.max(MIN_BACKLOG_NOTIFICATIONS),
            )),
            close: watch::Sender::new(false),
            done: watch::Sender::new(false),
            origin: Instant::now(),
            max_pending_inputs: config.max_pending_inputs,
            max_pending_input_bytes: config.max_pending_input_bytes,
            reconnects: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            connection_losses: AtomicU64::new(0),
            inputs_queued: AtomicU64::new(0),
            inputs_refused: AtomicU64::new(0),
            inputs_discarded: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            resolve_failures: AtomicU64::new(0),
            frontend_list_changes: AtomicU64::new(0),
            frontend_list: Mutex::new(frontends.addresses.clone()),
        });
        let mut close = shared.close.subscribe();
        let first =
            match establish(&shared, &mut machine, &mut frontends, &config, &mut close).await {
                Ok((established, _)) => established,
                Err(stop) => {
                    lock(&shared.link).ended = true;
                    lock(&shared.events).take();
                    shared.done.send_replace(true);
                    return Err(match stop {
                        Stop::GaveUp {
                            failed_rounds,
                            last_error,
                            last_resolve_error,
                        } => match &frontends.resolver {
                            // Never had a list: the name is the problem, not the front-ends.
                            Some(resolver) if machine.frontend_count() == 0 => {
                                ClientError::Unresolved {
                                    name: resolver.name().to_owned(),
                                    failed_rounds,
                                    error: last_resolve_error.unwrap_or(last_error),
                                }
                            }
                            _ => ClientError::GaveUp {
                                failed_rounds,
                                last_error,
                            },
                        },
                        Stop::Closed => ClientError::NotConnected,
                    });
                }
            };
        tokio::spawn(drive(
            Arc::clone(&shared),
            machine,
            frontends,
            config,
            first,
            close,
        ));
        Ok(Self {
            shared,
            events: Mutex::new(Some(ClientEvents {
                receiver: events_rx,
            })),
        })
    }

    /// The event queue, across every connection. Returns it once; `None` afterwards.
    /// Outputs and unsubscribes are never dropped: while the queue is full the connection
    /// in use stops reading its socket. Other events that find it full are dropped
    /// ([`FleetStats::events_dropped`]); failover never waits for the application. The
    /// stream ends (`recv` gives `None`) after the final [`ClientEvent::Disconnected`].
    pub fn take_events(&self) -> Option<ClientEvents> {
        lock(&self.events).take()
    }

    /// Watches `world` (see [`Client::subscribe`]). Between front-ends the subscription is
    /// recorded and sent by the next connection. Fails once the client has ended.
    pub fn subscribe(&self, world: WorldId, since: Option<Position>) -> Result<(), ClientError> {
        let mut session = lock(&self.shared.session);
        let link = lock(&self.shared.link);
        if link.ended {
            return Err(ClientError::NotConnected);
        }
        let message = session.subscribe(world, since);
        if let Some(sender) = &link.sender {
            // A failing connection refuses; the next one resumes the subscription.
            let _ = sender.send(&message);
        }
        Ok(())
    }

    /// Stops watching `world` and drops its replica.
    pub fn unsubscribe(&self, world: &WorldId) -> Result<(), ClientError> {
        let mut session = lock(&self.shared.session);
        let link = lock(&self.shared.link);
        if let Some(message) = session.unsubscribe(world)
            && let Some(sender) = &link.sender
        {
            // A failing connection refuses; the next one will not resubscribe the world.
            let _ = sender.send(&message);
        }
        Ok(())
    }

    /// Sends `payload` to the game server of `world` (it arrives with this session's id).
    /// Between front-ends it is queued and sent after the next hello; a full queue gives
    /// [`ClientError::InputQueueFull`], an ended client [`ClientError::NotConnected`].
    pub fn send_input(
        &self,
        world: &WorldId,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let payload = payload.into();
        let mut link = lock(&self.shared.link);
        if link.ended {
            return Err(ClientError::NotConnected);
        }
        if let Some(sender) = &link.sender
            && link.pending.is_empty()
        {
            let message = ClientToFrontend::Input {
                world: world.clone(),
                payload: payload.clone(),
            };
            if sender.send(&message).is_ok() {
                return Ok(());
            }
        }
        let full = link.pending.len() >= self.shared.max_pending_inputs
            || link.pending_bytes.saturating_add(payload.len())
                > self.shared.max_pending_input_bytes;
        if full {
            self.shared.inputs_refused.fetch_add(1, Ordering::Relaxed);
            return Err(ClientError::InputQueueFull {
                inputs: link.pending.len(),
                bytes: link.pending_bytes,
            });
        }
        link.pending_bytes = link.pending_bytes.saturating_add(payload.len());
        link.pending.push_back((world.clone(), payload));
        self.shared.inputs_queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `read` on the replica of `world` (full mode; under the session lock: keep it
    /// short).
    pub fn with_replica<R>(&self, world: &WorldId, read: impl FnOnce(&Replica) -> R) -> Option<R> {
        lock(&self.shared.session).replica(world).map(read)
    }

    /// The digest of the replica of `world`, once it has a snapshot.
    pub fn digest(&self, world: &WorldId) -> Option<u64> {
        lock(&self.shared.session).digest(world)
    }

    /// The value of `key` in the replica of `world`.
    pub fn get(&self, world: &WorldId, key: &[u8]) -> Option<Bytes> {
        lock(&self.shared.session).get(world, key)
    }

    /// The last position seen for `world`.
    pub fn position(&self, world: &WorldId) -> Option<Position> {
        lock(&self.shared.session).position(world)
    }

    /// True while `world` waits for its game server to come back (see
    /// [`ClientEvent::Resubscribing`]).
    pub fn is_waiting(&self, world: &WorldId) -> bool {
        lock(&self.shared.session).is_waiting(world)
    }

    /// The receive counters of `world` (kept across connections).
    pub fn counters(&self, world: &WorldId) -> Option<WorldCounters> {
        lock(&self.shared.session).counters(world)
    }

    /// The session token of the last welcome (the session id is its first 8 bytes,
    /// big-endian; see PROTOCOL.md section 2).
    pub fn session_token(&self) -> Option<Bytes> {
        lock(&self.shared.session).session_token().cloned()
    }

    /// The address of the front-end in use; `None` between front-ends.
    pub fn frontend_addr(&self) -> Option<SocketAddr> {
        lock(&self.shared.link)
            .frontend
            .as_ref()
            .map(|(addr, _)| *addr)
    }

    /// The front-end list in use: the fixed list, or the last good list resolved from DNS
    /// (sorted).
    pub fn frontends(&self) -> Vec<SocketAddr> {
        lock(&self.shared.frontend_list).clone()
    }

    /// The id (from its welcome) of the front-end in use; `None` between front-ends.
    pub fn server_id(&self) -> Option<String> {
        lock(&self.shared.link)
            .frontend
            .as_ref()
            .map(|(_, id)| id.clone())
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.link)
            .sender
            .as_ref()
            .is_some_and(LinkSender::is_connected)
    }

    /// Counters: reconnections, failed attempts, lost connections, queued inputs, dropped
    /// events, DNS resolutions.
    pub fn stats(&self) -> FleetStats {
        let shared = &self.shared;
        FleetStats {
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            failed_attempts: shared.failed_attempts.load(Ordering::Relaxed),
            connection_losses: shared.connection_losses.load(Ordering::Relaxed),
            inputs_queued: shared.inputs_queued.load(Ordering::Relaxed),
            inputs_refused: shared.inputs_refused.load(Ordering::Relaxed),
            inputs_discarded: shared.inputs_discarded.load(Ordering::Relaxed),
            events_dropped: shared.events_dropped.load(Ordering::Relaxed),
            resolve_failures: shared.resolve_failures.load(Ordering::Relaxed),
            frontend_list_changes: shared.frontend_list_changes.load(Ordering::Relaxed),
        }
    }

    /// Closes the connection (after writing what is queued) and stops reconnecting. A
    /// `Disconnected{Closed}` event follows.
    pub fn close(&self) {
        self.shared.close.send_replace(true);
    }

    /// Waits until the client has ended (closed, or gave up reconnecting). Returns at once
    /// on later calls.
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// True once the client has ended.
    pub fn is_closed(&self) -> bool {
        *self.shared.done.borrow()
    }
}

impl Drop for FleetClient {
    fn drop(&mut self) {
        self.shared.close.send_replace(true);
    }
}

/// One attempt: TCP connect to `addr`, then the handshake for the shared session.
async fn attempt(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    config: &ClientConfig,
) -> Result<Client, ClientError> {
    let stream = timeout(config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout("connect"))??;
    let attached = Arc::clone(shared);
    Client::open(
        stream,
        Arc::clone(&shared.session),
        config.clone(),
        move |sender, server_id| attached.attach(sender, addr, server_id),
    )
    .await
}

/// Resolves the front-end list (when the machine asks) and reports the outcome to it.
/// Returns the error of a failed resolution (bare, without the name), or
/// `Err(Stop::Closed)` on a close.
async fn resolve(
    shared: &Shared,
    machine: &mut Failover,
    frontends: &mut Frontends,
    close: &mut watch::Receiver<bool>,
) -> Result<Option<String>, Stop> {
    let Some(resolver) = frontends.resolver.as_ref() else {
        // A fixed list never changes (and its machine does not ask).
        machine.on_list_unchanged(shared.now());
        return Ok(None);
    };
    let resolved = tokio::select! {
        resolved = resolver.resolve() => resolved,
        () = until_closing(close) => return Err(Stop::Closed),
    };
    let now = shared.now();
    let name = resolver.name().to_owned();
    let error = match resolved {
        Ok(addresses) if addresses == frontends.addresses => {
            machine.on_list_unchanged(now);
            None
        }
        Ok(addresses) => match machine.on_list_replaced(addresses.len(), now) {
            Ok(()) => {
                log::info!("fleet client: {name} resolves to {addresses:?}");
                frontends.addresses.clone_from(&addresses);
                lock(&shared.frontend_list).clone_from(&addresses);
                shared.publish(machine);
                shared.notify(ClientEvent::FrontendsResolved {
                    name: name.clone(),
                    frontends: addresses,
                });
                None
            }
            Err(error) => Some(error.to_string()),
        },
        Err(error) => Some(error),
    };
    let Some(error) = error else {
        return Ok(None);
    };
    machine.on_resolve_failed(now);
    shared.publish(machine);
    let kept = if frontends.addresses.is_empty() {
        "no list yet"
    } else {
        "keeping the last list"
    };
    log::warn!("fleet client: resolving {name}: {error} ({kept})");
    shared.notify(ClientEvent::ResolveFailed {
        name: name.clone(),
        error: error.clone(),
    });
    Ok(Some(error))
}

/// Connects to front-ends as the machine says (resolving the list when it asks) until one
/// welcomes the session; returns it with the outage it ended (for a reconnection).
async fn establish(
    shared: &Arc<Shared>,
    machine: &mut Failover,
    frontends: &mut Frontends,
    config: &FleetConfig,
    close: &mut watch::Receiver<bool>,
) -> Result<(Established, Option<Duration>), Stop> {
    let mut last_error = String::from("no attempt made");
    let mut last_resolve_error = None;
    loop {
        if shared.is_closing() {
            return Err(Stop::Closed);
        }
        match machine.poll(shared.now()) {
            Step::GiveUp { failed_rounds } => {
                return Err(Stop::GaveUp {
                    failed_rounds,
                    last_error,
                    last_resolve_error,
                });
            }
            Step::WaitUntil(at) => {
                tokio::select! {
                    () = sleep_until(shared.origin + at) => {}
                    () = until_closing(close) => return Err(Stop::Closed),
                }
            }
            Step::Connected(index) => {
                // Not reached (this runs only while not connected); recover by treating
                // the phantom connection as lost.
                machine.on_lost(index, shared.now());
            }
            Step::Resolve => {
                if let Some(error) = resolve(shared, machine, frontends, close).await? {
                    if let Some(resolver) = &frontends.resolver {
                        last_error = format!("resolving {}: {error}", resolver.name());
                    }
                    last_resolve_error = Some(error);
                }
            }
            Step::Connect(index) => {
                let Some(&addr) = frontends.addresses.get(index) else {
                    machine.on_connect_failed(index, shared.now());
                    continue;
                };
                let result = tokio::select! {
                    result = attempt(shared, addr, &config.client) => result,
                    () = until_closing(close) => return Err(Stop::Closed),
                };
                let now = shared.now();
                match result {
                    Ok(client) => {
                        let outage = machine.on_connected(index, now);
                        shared.publish(machine);
                        return Ok((
                            Established {
                                client,
                                index,
                                addr,
                            },
                            outage,
                        ));
                    }
                    Err(error) => {
                        machine.on_connect_failed(index, now);
                        shared.publish(machine);
                        last_error = format!("{addr}: {error}");
                        log::debug!("fleet client: connecting to {last_error}");
                        shared.notify(ClientEvent::ConnectFailed {
                            addr,
                            error: error.to_string(),
                            failed_rounds: machine.consecutive_failed_rounds(),
                        });
                    }
                }
            }
        }
    }
}

/// Forwards the events of the connection in use until it ends; returns why it ended, or
/// `None` when the application closed the fleet client.
///
/// An output or unsubscribe that finds the application's queue full waits in the backlog,
/// and nothing more is taken from the connection meanwhile (its reader stops reading once
/// its own queue is full): backpressure on this connection only. Its end is watched all
/// along, so a failover never waits for the application.
async fn run_connection(
    shared: &Shared,
    client: &Client,
    close: &mut watch::Receiver<bool>,
) -> Option<DisconnectReason> {
    let Some(mut events) = client.take_events() else {
        return Some(DisconnectReason::Protocol(
            "connection events taken".to_owned(),
        ));
    };
    // `None` once the client has ended (not reached while the driver runs).
    let queue = lock(&shared.events).clone()?;
    let mut ended = client.ended();
    let mut closing = false;
    let mut events_open = true;
    loop {
        let waiting = !shared.hand_over();
        tokio::select! {
            biased;
            () = until_closing(close), if !closing => {
                closing = true;
                client.close();
            }
            reason = end_of(&mut ended) => {
                // What the connection queued before it ended still goes out, in order.
                {
                    let mut backlog = lock(&shared.backlog);
                    while let Some(event) = events.try_recv() {
                        if !matches!(event, ClientEvent::Disconnected { .. }) {
                            shared.enqueue(&mut backlog, event);
                        }
                    }
                }
                shared.hand_over();
                shared
                    .events_dropped
                    .fetch_add(client.events_dropped_before_end(), Ordering::Relaxed);
                return if closing || shared.is_closing() {
                    None
                } else {
                    Some(reason.unwrap_or(DisconnectReason::Closed))
                };
            }
            room = queue.reserve(), if waiting => {
                if let Ok(permit) = room
                    && let Some(event) = lock(&shared.backlog).pop_front()
                {
                    permit.send(event);
                }
                // Err: the application dropped its queue; `hand_over` counts the drops.
            }
            event = events.recv(), if events_open && !waiting => match event {
                // Not reached while the client lives (it holds the sender).
                None => events_open = false,
                Some(ClientEvent::Disconnected { .. }) => {}
                // Handed over at the top of the loop.
                Some(event) => shared.enqueue(&mut lock(&shared.backlog), event),
            },
        }
    }
}

/// The driver: keeps a connection up, fails over, and ends the client.
async fn drive(
    shared: Arc<Shared>,
    mut machine: Failover,
    mut frontends: Frontends,
    config: FleetConfig,
    mut current: Established,
    mut close: watch::Receiver<bool>,
) {
    let final_reason = loop {
        let lost = run_connection(&shared, &current.client, &mut close).await;
        let server_id = current.client.server_id().to_owned();
        shared.detach();
        let Some(reason) = lost else {
            // Closed by the application: let the connection flush, bounded.
            let _ = timeout(CLOSE_GRACE, current.client.closed()).await;
            break DisconnectReason::Closed;
        };
        machine.on_lost(current.index, shared.now());
        shared.publish(&machine);
        log::info!(
            "fleet client: lost front-end {} ({server_id}): {reason:?}",
            current.addr
        );
        shared.notify(ClientEvent::FrontendLost {
            from: current.addr,
            server_id,
            reason,
        });
        match establish(&shared, &mut machine, &mut frontends, &config, &mut close).await {
            Ok((next, outage)) => {
                current = next;
                let event = ClientEvent::Reconnected {
                    to: current.addr,
                    server_id: current.client.server_id().to_owned(),
                    resumed: current.client.resumed(),
                    after: outage.unwrap_or_default(),
                };
                log::info!("fleet client: {event:?}");
                shared.notify(event);
            }
            Err(Stop::Closed) => break DisconnectReason::Closed,
            Err(Stop::GaveUp {
                failed_rounds,
                last_error,
                ..
            }) => {
                log::warn!(
                    "fleet client: gave up after {failed_rounds} failed rounds: {last_error}"
                );
                break DisconnectReason::GaveUp {
                    failed_rounds,
                    last_error,
                };
            }
        }
    };
    {
        let mut link = lock(&shared.link);
        link.ended = true;
        link.sender = None;
        link.frontend = None;
        let discarded = link.pending.len() as u64;
        link.pending.clear();
        link.pending_bytes = 0;
        shared
            .inputs_discarded
            .fetch_add(discarded, Ordering::Relaxed);
    }
    shared.end_events(final_reason);
    shared.done.send_replace(true);
}
