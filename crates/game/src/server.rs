//! The game server: shared registry of worlds, front-end links and sessions, the accept
//! loop, and the public [`GameServer`] handle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use flotilla_wire::{ErrorCode, GameToFrontend, Message, SessionId, WorldId};
use flotilla_world::{BatchRing, WorldState};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, watch};

use crate::config::GameConfig;
use crate::error::GameError;
use crate::events::{FrontendId, GameEvent, GameEvents, InputGauge};
use crate::machine::FrontendLink;
use crate::machine::SessionRegistry;
use crate::stats::{FrontendStats, GameStats};
use crate::world::{WorldCell, WorldCore, WorldHandle};
use flotilla_link::outbox::{FrameKind, LinkCounters, Outbox};

/// Locks a mutex, carrying on if a panicking task poisoned it (the data stays consistent:
/// every critical section here leaves it valid at each step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One connected front-end.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: FrontendId,
    pub(crate) name: String,
    pub(crate) peer: SocketAddr,
    pub(crate) outbox: Arc<Outbox>,
}

/// The mutable registry: worlds, front-ends, sessions. Lock order: registry, then a world.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) worlds: BTreeMap<WorldId, Arc<WorldCell>>,
    pub(crate) frontends: BTreeMap<FrontendId, Arc<Link>>,
    pub(crate) sessions: SessionRegistry,
}

/// Everything the tasks of one server share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: GameConfig,
    pub(crate) registry: Mutex<Registry>,
    events: mpsc::UnboundedSender<GameEvent>,
    pub(crate) inputs: Arc<InputGauge>,
    events_dropped: AtomicU64,
    pub(crate) totals: Arc<LinkCounters>,
    pub(crate) batches_committed: AtomicU64,
    next_frontend: AtomicU64,
}

impl Shared {
    /// Queues an event for the game. Never dropped while the game holds its
    /// [`GameEvents`] (inputs are bounded by the links waiting for room, see
    /// [`InputGauge`]); counted as dropped only once the receiver is gone.
    pub(crate) fn emit(&self, event: GameEvent) {
        let is_input = matches!(event, GameEvent::Input { .. });
        if is_input {
            self.inputs.queued();
        }
        if self.events.send(event).is_err() {
            if is_input {
                self.inputs.taken();
            }
            let dropped = self.events_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                log::warn!(
                    "game event queue: dropped {} events (receiver gone)",
                    dropped + 1
                );
            }
        }
    }

    /// A new front-end id.
    pub(crate) fn next_frontend_id(&self) -> FrontendId {
        FrontendId(self.next_frontend.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Registers a front-end that completed its handshake: queues `GameWelcome` and a
    /// `WorldAdded` per hosted world (under the registry lock, so no announcement is
    /// missed or reordered).
    pub(crate) fn register(&self, link: Arc<Link>, machine: &FrontendLink) {
        let welcome = machine.welcome(&self.config.server_id);
        let mut registry = lock(&self.registry);
        let _ = link.outbox.push(welcome, FrameKind::Other);
        for cell in registry.worlds.values() {
            let info = lock(&cell.core).info.clone();
            let added = GameToFrontend::WorldAdded {
                world: cell.id.clone(),
                info,
            };
            let _ = link.outbox.push(added.encode_to_bytes(), FrameKind::Other);
        }
        registry.frontends.insert(link.id, link);
    }

    /// Forgets a front-end whose link closed: its subscriptions, and its sessions (each
    /// reported closed).
    pub(crate) fn unregister(&self, id: FrontendId) {
        let closed = {
            let mut registry = lock(&self.registry);
            if registry.frontends.remove(&id).is_none() {
                return;
            }
            for cell in registry.worlds.values() {
                lock(&cell.core).subscribers.remove(&id);
            }
            registry.sessions.frontend_lost(id)
        };
        for session in closed {
            self.emit(GameEvent::SessionClosed { session });
        }
        self.emit(GameEvent::FrontendDisconnected { frontend: id });
    }

    /// Queues one frame to every connected front-end.
    fn broadcast(&self, registry: &Registry, frame: &Bytes) {
        for link in registry.frontends.values() {
            let _ = link.outbox.push(frame.clone(), FrameKind::Other);
        }
    }
}

/// A game server: hosts worlds and serves the front-ends that connect to it.
///
/// ```no_run
/// # async fn run() -> Result<(), flotilla_game::GameError> {
/// use flotilla_game::{GameConfig, GameServer};
/// use flotilla_wire::WorldId;
///
/// let server = GameServer::bind("127.0.0.1:7000", GameConfig::default()).await?;
/// let arena = WorldId::new("arena-1")?;
/// let world = server.add_world(arena, r#"{"kind":"arena"}"#.into())?;
/// let mut ticks = tokio::time::interval(std::time::Duration::from_millis(50));
/// for tick in 0u64..100 {
///     ticks.tick().await;
///     let mut tx = world.begin();
///     tx.set("tick", tick.to_string());
///     tx.commit()?; // one ChangeBatch, encoded once, sent once per subscribed front-end
/// }
/// # Ok(()) }
/// ```
///
/// Dropping the `GameServer` (or calling [`shutdown`](Self::shutdown)) stops accepting and
/// closes every front-end link with `Error{ShuttingDown}`.
#[derive(Debug)]
pub struct GameServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    events: Mutex<Option<GameEvents>>,
}

impl GameServer {
    /// Listens on `addr` and starts accepting front-end connections (in a spawned task:
    /// call from within a tokio runtime). Each world gets a fresh random epoch (from OS
    /// entropy) when added, so a restarted server never continues an old history.
    pub async fn bind(addr: impl ToSocketAddrs, config: GameConfig) -> Result<Self, GameError> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inputs = Arc::new(InputGauge::new(config.event_queue));
        let shared = Arc::new(Shared {
            config,
            registry: Mutex::new(Registry::default()),
            events: events_tx,
            inputs: Arc::clone(&inputs),
            events_dropped: AtomicU64::new(0),
            totals: Arc::new(LinkCounters::default()),
            batches_committed: AtomicU64::new(0),
            next_frontend: AtomicU64::new(0),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        log::info!(
            "game server {} listening on {local_addr}",
            shared.config.server_id
        );
        Ok(Self {
            shared,
            local_addr,
            shutdown,
            events: Mutex::new(Some(GameEvents {
                receiver: events_rx,
                inputs,
            })),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The event queue (inputs, sessions, front-ends). Returns it once; `None` afterwards.
    /// Events are queued from the start; inputs are bounded by [`GameConfig::event_queue`]
    /// (past it the links stop reading until the game takes some).
    pub fn take_events(&self) -> Option<GameEvents> {
        lock(&self.events).take()
    }

    /// Hosts a new world with description `info` (the directory value front-ends publish)
    /// and a fresh random epoch, and announces it (`WorldAdded`) to every connected
    /// front-end and every front-end that connects later.
    pub fn add_world(&self, id: WorldId, info: Bytes) -> Result<WorldHandle, GameError> {
        if id.is_reserved() {
            return Err(GameError::ReservedWorldId(id));
        }
        let added = GameToFrontend::WorldAdded {
            world: id.clone(),
            info: info.clone(),
        }
        .encode_to_bytes();
        check_frame_len(&added, "world info", self.shared.config.max_frame_len)?;
        let epoch = random_epoch()?;
        let mut registry = lock(&self.shared.registry);
        if registry.worlds.contains_key(&id) {
            return Err(GameError::WorldExists(id));
        }
        let cell = Arc::new(WorldCell {
            id: id.clone(),
            core: Mutex::new(WorldCore {
                state: WorldState::new(epoch),
                ring: BatchRing::new(self.shared.config.ring),
                info: info.clone(),
                subscribers: BTreeMap::new(),
                removed: false,
            }),
        });
        registry.worlds.insert(id, Arc::clone(&cell));
        self.shared.broadcast(&registry, &added);
        Ok(WorldHandle {
            shared: Arc::clone(&self.shared),
            cell,
        })
    }

    /// Stops hosting a world: announces `WorldRemoved` to every front-end; handles to it
    /// then fail with [`GameError::UnknownWorld`].
    pub fn remove_world(&self, id: &WorldId) -> Result<(), GameError> {
        let mut registry = lock(&self.shared.registry);
        let Some(cell) = registry.worlds.remove(id) else {
            return Err(GameError::UnknownWorld(id.clone()));
        };
        {
            let mut core = lock(&cell.core);
            core.removed = true;
            core.subscribers.clear();
            core.ring.clear();
        }
        let removed = GameToFrontend::WorldRemoved { world: id.clone() }.encode_to_bytes();
        self.shared.broadcast(&registry, &removed);
        Ok(())
    }

    /// A handle to a hosted world, to commit ticks to it.
    pub fn world(&self, id: &WorldId) -> Option<WorldHandle> {
        let registry = lock(&self.shared.registry);
        registry.worlds.get(id).map(|cell| WorldHandle {
            shared: Arc::clone(&self.shared),
            cell: Arc::clone(cell),
        })
    }

    /// The ids of the hosted worlds, sorted.
    pub fn world_ids(&self) -> Vec<WorldId> {
        lock(&self.shared.registry).worlds.keys().cloned().collect()
    }

    /// Sends `payload` to `session` as a `SessionOutput` for `world`, through the front-end
    /// that carries the session (its latest `SessionOpened`; an input only routes a
    /// session not known yet).
    pub fn send_output(
        &self,
        world: &WorldId,
        session: SessionId,
        payload: Bytes,
    ) -> Result<(), GameError> {
        let output = GameToFrontend::Output {
            world: world.clone(),
            session,
            payload,
        }
        .encode_to_bytes();
        check_frame_len(&output, "output payload", self.shared.config.max_frame_len)?;
        let link = {
            let registry = lock(&self.shared.registry);
            registry
                .sessions
                .frontend_of(session)
                .and_then(|frontend| registry.frontends.get(&frontend))
                .cloned()
        };
        let Some(link) = link else {
            return Err(GameError::UnknownSession(session));
        };
        link.outbox
            .push(output, FrameKind::Other)
            .map_err(|_| GameError::LinkClosing(session))
    }

    /// The front-end currently carrying `session`, if any.
    pub fn session_frontend(&self, session: SessionId) -> Option<FrontendId> {
        lock(&self.shared.registry).sessions.frontend_of(session)
    }

    /// Counters: per connected front-end, and totals since start.
    pub fn stats(&self) -> GameStats {
        let registry = lock(&self.shared.registry);
        let frontends = registry
            .frontends
            .values()
            .map(|link| {
                let subscriptions = registry
                    .worlds
                    .values()
                    .filter(|cell| lock(&cell.core).subscribers.contains_key(&link.id))
                    .count();
                FrontendStats {
                    frontend: link.id,
                    name: link.name.clone(),
                    peer: link.peer,
                    subscriptions,
                    batches_sent: link.outbox.counters.batches.load(Ordering::Relaxed),
                    snapshots_sent: link.outbox.counters.snapshots.load(Ordering::Relaxed),
                    frames_sent: link.outbox.counters.frames.load(Ordering::Relaxed),
                    bytes_sent: link.outbox.counters.bytes.load(Ordering::Relaxed),
                }
            })
            .collect();
        let totals = &self.shared.totals;
        GameStats {
            frontends,
            batches_committed: self.shared.batches_committed.load(Ordering::Relaxed),
            batches_sent: totals.batches.load(Ordering::Relaxed),
            snapshots_sent: totals.snapshots.load(Ordering::Relaxed),
            frames_sent: totals.frames.load(Ordering::Relaxed),
            bytes_sent: totals.bytes.load(Ordering::Relaxed),
            events_dropped: self.shared.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and closes every front-end link with `Error{ShuttingDown}` (the
    /// front-ends then tell their clients the worlds are unavailable).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A fresh epoch from OS entropy (never the clock alone), never 0.
fn random_epoch() -> Result<u64, GameError> {
    let epoch = getrandom::u64().map_err(|error| GameError::Io(std::io::Error::other(error)))?;
    Ok(epoch.max(1))
}

/// Accepts front-end connections until shutdown.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let id = shared.next_frontend_id();
                    tokio::spawn(crate::connection::serve(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        id,
                        shutdown.clone(),
                    ));
                }
                Err(error) => {
                    log::warn!("game server accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
    log::info!("game server {} stopped accepting", shared.config.server_id);
}

/// An `Error` frame for a front-end.
pub(crate) fn error_frame(code: ErrorCode, text: impl Into<String>) -> Bytes {
    GameToFrontend::Error {
        code,
        text: text.into(),
    }
    .encode_to_bytes()
}

/// Resolves once `shutdown` turns true or its sender is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Refuses an encoded frame (with its 4-byte length prefix) whose type byte and body are
/// longer than `max_frame_len`: the front-end would close the whole link on it.
pub(crate) fn check_frame_len(
    frame: &Bytes,
    what: &'static str,
    max_frame_len: usize,
) -> Result<(), GameError> {
    let frame_len = frame.len().saturating_sub(4);
    if frame_len > max_frame_len {
        return Err(GameError::FrameTooLarge {
            what,
            frame_len,
            max_frame_len,
        });
    }
    Ok(())
}
