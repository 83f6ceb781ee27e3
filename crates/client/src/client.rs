//! [`Client`]: one connection to one front-end, the tokio shell ([`crate::shell`]) of a
//! [`ClientMachine`] that does not fail over ([`ClientMachineConfig::reconnect`] off).
//!
//! The machine holds the session (token, subscriptions, replicas), the handshake, the
//! keep-alive (probe a front-end not heard from, ping when quiet, close on silence:
//! PROTOCOL.md section 7) and the resubscribe timers; the shell reads, writes, sleeps
//! until the machine's next deadline and delivers events with backpressure (an `Output`
//! or `Unsubscribed` event that finds the application's queue full waits, and the socket
//! is not read meanwhile, so TCP pushes back on the front-end).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use flotilla_conn::KeepAliveConfig;
use flotilla_wire::WorldId;
use flotilla_world::{Position, Replica};
use tokio::net::{ToSocketAddrs, lookup_host};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::events::{ClientEvents, DisconnectReason};
use crate::failover::FailoverPolicy;
use crate::machine::{ClientInput, ClientMachine, ClientMachineConfig};
use crate::session::{ClientSession, WorldCounters};
use crate::shell::{FirstOutcome, Shared, ShellConfig, attempt_error, lock};

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

/// The machine settings of a connection made with `config`.
pub(crate) fn machine_config(config: &ClientConfig, reconnect: bool) -> ClientMachineConfig {
    ClientMachineConfig {
        client_name: config.client_name.clone(),
        session_token: config.session_token.clone(),
        join_tokens: config.join_tokens.clone(),
        mode: config.mode,
        resubscribe: config.resubscribe,
        keep_alive: client_keep_alive(config),
        connect_timeout: config.connect_timeout,
        handshake_timeout: config.idle_timeout,
        max_frame_len: config.max_frame_len,
        reconnect,
        ..ClientMachineConfig::default()
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
    shared: Arc<Shared>,
    session_token: Bytes,
    resumed: bool,
    server_id: String,
    peer: SocketAddr,
    events: std::sync::Mutex<Option<ClientEvents>>,
}

impl Client {
    /// Connects to the front-end at `addr` (the first address it resolves to), says hello
    /// (with `config.session_token` if set) and waits for its welcome. Call from within a
    /// tokio runtime.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let addr = lookup_host(addr).await?.next().ok_or_else(|| {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the address resolves to nothing",
            ))
        })?;
        let seed = flotilla_balance::seed_from_os_entropy()
            .map_err(|error| ClientError::Io(std::io::Error::other(error.to_string())))?;
        let mut machine_config = machine_config(&config, false);
        machine_config.failover = FailoverPolicy {
            max_failed_rounds: Some(1),
            ..FailoverPolicy::default()
        };
        let mut machine = ClientMachine::new(1, machine_config, seed)?;
        machine.set_labels(vec![addr.to_string()]);
        let (shared, events) = crate::shell::start(
            machine,
            ShellConfig {
                addresses: vec![addr],
                resolver: None,
                max_queued_bytes: config.max_queued_bytes,
                event_queue: config.event_queue,
                tls: config.tls.clone(),
            },
        );
        match shared.first_outcome().await {
            FirstOutcome::Welcomed {
                session_token,
                resumed,
                server_id,
                addr,
            } => Ok(Self {
                shared,
                session_token,
                resumed,
                server_id,
                peer: addr,
                events: std::sync::Mutex::new(Some(ClientEvents { receiver: events })),
            }),
            FirstOutcome::Ended {
                reason, attempt, ..
            } => Err(attempt_error(attempt, &reason)),
        }
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
        &self.session_token
    }

    /// True when the front-end recognised the token of the hello and resumed the session.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The front-end's id from its welcome.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The front-end's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Runs `read` on the session state (token, subscriptions, replicas), under the
    /// client's lock: keep it short.
    pub fn with_session<R>(&self, read: impl FnOnce(&ClientSession) -> R) -> R {
        read(lock(&self.shared.state).machine.session())
    }

    /// True until the connection ends.
    pub fn is_connected(&self) -> bool {
        let state = lock(&self.shared.state);
        state.machine.ended().is_none() && state.machine.connected_to().is_some()
    }

    /// Watches `world`: the front-end answers with a snapshot (or, with `since`, only what
    /// is missing), then live batches. `None` resumes from the position already held, if
    /// any.
    pub fn subscribe(&self, world: WorldId, since: Option<Position>) -> Result<(), ClientError> {
        self.feed_connected(ClientInput::Subscribe(world, since))
    }

    /// Stops watching `world` and drops its replica.
    pub fn unsubscribe(&self, world: &WorldId) -> Result<(), ClientError> {
        self.feed_connected(ClientInput::Unsubscribe(world.clone()))
    }

    /// Sends `payload` to the game server of `world` (it arrives with this session's id).
    pub fn send_input(
        &self,
        world: &WorldId,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.feed_connected(ClientInput::SendInput {
            world: world.clone(),
            payload: payload.into(),
        })
    }

    /// Feeds `input` while the connection is up; `NotConnected` once it has ended.
    fn feed_connected(&self, input: ClientInput) -> Result<(), ClientError> {
        let mut state = lock(&self.shared.state);
        if state.machine.ended().is_some() || state.machine.connected_to().is_none() {
            return Err(ClientError::NotConnected);
        }
        self.shared.feed(&mut state, input);
        Ok(())
    }

    /// Runs `read` on the replica of `world` (full mode; under the client's lock: keep it
    /// short).
    pub fn with_replica<R>(&self, world: &WorldId, read: impl FnOnce(&Replica) -> R) -> Option<R> {
        lock(&self.shared.state)
            .machine
            .session()
            .replica(world)
            .map(read)
    }

    /// The digest of the replica of `world`, once it has a snapshot.
    pub fn digest(&self, world: &WorldId) -> Option<u64> {
        lock(&self.shared.state).machine.session().digest(world)
    }

    /// The value of `key` in the replica of `world`.
    pub fn get(&self, world: &WorldId, key: &[u8]) -> Option<Bytes> {
        lock(&self.shared.state).machine.session().get(world, key)
    }

    /// True while `world` waits for its game server to come back (see
    /// [`ClientEvent::Resubscribing`](crate::ClientEvent::Resubscribing)); its replica
    /// keeps the last state meanwhile.
    pub fn is_waiting(&self, world: &WorldId) -> bool {
        lock(&self.shared.state).machine.session().is_waiting(world)
    }

    /// The last position seen for `world`.
    pub fn position(&self, world: &WorldId) -> Option<Position> {
        lock(&self.shared.state).machine.session().position(world)
    }

    /// The receive counters of `world` (kept in both replica modes).
    pub fn counters(&self, world: &WorldId) -> Option<WorldCounters> {
        lock(&self.shared.state).machine.session().counters(world)
    }

    /// Connection counters.
    pub fn stats(&self) -> ClientStats {
        let shared = &self.shared;
        ClientStats {
            frames_received: lock(&shared.state).machine.frames_received(),
            bytes_received: shared.bytes_received.load(Ordering::Relaxed),
            frames_sent: shared.sent.frames.load(Ordering::Relaxed),
            bytes_sent: shared.sent.bytes.load(Ordering::Relaxed),
            events_dropped: shared.events_dropped.load(Ordering::Relaxed),
        }
    }

    /// Why the connection ended, once it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        lock(&self.shared.state).machine.ended().cloned()
    }

    /// Closes the connection (after writing what is queued). A `Disconnected{Closed}`
    /// event follows.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until the connection has ended and its events were handed over (returns at
    /// once on later calls).
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(Option::is_some).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.close();
    }
}
