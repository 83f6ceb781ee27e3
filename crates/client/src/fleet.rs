//! The fleet client: one session over a list of front-ends, with random balancing and
//! failover.
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
//! Every decision (which front-end, when, when to resolve the list, when to give up, the
//! handshake, keep-alive, resubscribes, the inputs queued between front-ends) is the
//! sans-I/O [`ClientMachine`](crate::ClientMachine) ([`Failover`](crate::Failover) and
//! [`ClientSession`](crate::ClientSession) inside), the same machine the simulator runs;
//! its tokio shell (`shell.rs`, shared with [`Client`](crate::Client)) only resolves
//! names, connects sockets, reads, writes, sleeps and delivers events. The session (token,
//! subscriptions, replicas) lives across connections in the machine.
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
//! ([`ClientEvent::FrontendsResolved`](crate::ClientEvent::FrontendsResolved)); the pick stays uniform over the current list. A
//! resolution that fails or finds no address keeps the last good list
//! ([`ClientEvent::ResolveFailed`](crate::ClientEvent::ResolveFailed), [`FleetStats::resolve_failures`]); before the first
//! good list it counts as a failed round (backoff, [`FailoverPolicy::max_failed_rounds`]),
//! and [`FleetClient::connect`] fails with [`ClientError::Unresolved`] once they are used
//! up. The connection in use is never dropped because its front-end left DNS: DNS only
//! steers the next pick.
//!
//! One event stream spans every connection: the usual events, plus
//! [`ClientEvent::FrontendLost`](crate::ClientEvent::FrontendLost), [`ClientEvent::ConnectFailed`](crate::ClientEvent::ConnectFailed),
//! [`ClientEvent::Reconnected`](crate::ClientEvent::Reconnected) and, with DNS, [`ClientEvent::ResolveFailed`](crate::ClientEvent::ResolveFailed) and
//! [`ClientEvent::FrontendsResolved`](crate::ClientEvent::FrontendsResolved); [`ClientEvent::Disconnected`](crate::ClientEvent::Disconnected) comes once, at the
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

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_wire::WorldId;
use flotilla_world::{Position, Replica};

use crate::client::machine_config;
use crate::config::ClientConfig;
use crate::dns::{DnsFrontends, DnsResolver};
use crate::error::ClientError;
use crate::events::{ClientEvents, DisconnectReason};
use crate::failover::FailoverPolicy;
use crate::machine::{ClientInput, ClientMachine};
use crate::session::WorldCounters;
use crate::shell::{FirstOutcome, Shared, ShellConfig, lock};

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
    /// ([`ClientEvent::ResolveFailed`](crate::ClientEvent::ResolveFailed)).
    pub resolve_failures: u64,
    /// Front-end lists resolved with other addresses than before, the first one included
    /// ([`ClientEvent::FrontendsResolved`](crate::ClientEvent::FrontendsResolved)).
    pub frontend_list_changes: u64,
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
        let mut machine_config = machine_config(&config.client, true);
        machine_config.failover = config.failover;
        machine_config.max_queued_inputs = config.max_pending_inputs;
        machine_config.max_queued_input_bytes = config.max_pending_input_bytes;
        let (machine, addresses, resolver) = match &config.frontends {
            FrontendSource::List(list) => {
                let mut machine = ClientMachine::new(list.len(), machine_config, seed)?;
                machine.set_labels(list.iter().map(ToString::to_string).collect());
                (machine, list.clone(), None)
            }
            FrontendSource::Dns(dns) => (
                ClientMachine::resolving(machine_config, seed),
                Vec::new(),
                Some(DnsResolver::new(dns)?),
            ),
        };
        let name = resolver.as_ref().map(|r| r.name().to_owned());
        let (shared, events) = crate::shell::start(
            machine,
            ShellConfig {
                addresses,
                resolver,
                max_queued_bytes: config.client.max_queued_bytes,
                event_queue: config.client.event_queue,
                tls: config.client.tls.clone(),
            },
        );
        match shared.first_outcome().await {
            FirstOutcome::Welcomed { .. } => Ok(Self {
                shared,
                events: Mutex::new(Some(ClientEvents { receiver: events })),
            }),
            FirstOutcome::Ended {
                reason,
                last_resolve_error,
                ..
            } => Err(match reason {
                DisconnectReason::GaveUp {
                    failed_rounds,
                    last_error,
                } => match name {
                    // Never had a list: the name is the problem, not the front-ends.
                    Some(name) if lock(&shared.state).addresses.is_empty() => {
                        ClientError::Unresolved {
                            name,
                            failed_rounds,
                            error: last_resolve_error.unwrap_or(last_error),
                        }
                    }
                    _ => ClientError::GaveUp {
                        failed_rounds,
                        last_error,
                    },
                },
                _ => ClientError::NotConnected,
            }),
        }
    }

    /// The event queue, across every connection. Returns it once; `None` afterwards.
    /// Outputs and unsubscribes are never dropped: while the queue is full the connection
    /// in use stops reading its socket. Other events that find it full are dropped
    /// ([`FleetStats::events_dropped`]); failover never waits for the application. The
    /// stream ends (`recv` gives `None`) after the final [`ClientEvent::Disconnected`](crate::ClientEvent::Disconnected).
    pub fn take_events(&self) -> Option<ClientEvents> {
        lock(&self.events).take()
    }

    /// Watches `world` (see [`Client::subscribe`](crate::Client::subscribe)). Between
    /// front-ends the subscription is recorded and sent by the next connection. Fails once
    /// the client has ended.
    pub fn subscribe(&self, world: WorldId, since: Option<Position>) -> Result<(), ClientError> {
        let mut state = lock(&self.shared.state);
        if state.machine.ended().is_some() {
            return Err(ClientError::NotConnected);
        }
        self.shared
            .feed(&mut state, ClientInput::Subscribe(world, since));
        Ok(())
    }

    /// Stops watching `world` and drops its replica.
    pub fn unsubscribe(&self, world: &WorldId) -> Result<(), ClientError> {
        let mut state = lock(&self.shared.state);
        self.shared
            .feed(&mut state, ClientInput::Unsubscribe(world.clone()));
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
        let mut state = lock(&self.shared.state);
        let refusal = state.machine.input_refusal(payload.len());
        // The machine sends it, queues it, or counts the refusal.
        self.shared.feed(
            &mut state,
            ClientInput::SendInput {
                world: world.clone(),
                payload,
            },
        );
        refusal
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

    /// The last position seen for `world`.
    pub fn position(&self, world: &WorldId) -> Option<Position> {
        lock(&self.shared.state).machine.session().position(world)
    }

    /// True while `world` waits for its game server to come back (see
    /// [`ClientEvent::Resubscribing`](crate::ClientEvent::Resubscribing)).
    pub fn is_waiting(&self, world: &WorldId) -> bool {
        lock(&self.shared.state).machine.session().is_waiting(world)
    }

    /// The receive counters of `world` (kept across connections).
    pub fn counters(&self, world: &WorldId) -> Option<WorldCounters> {
        lock(&self.shared.state).machine.session().counters(world)
    }

    /// The session token of the last welcome (the session id is its first 8 bytes,
    /// big-endian; see PROTOCOL.md section 2).
    pub fn session_token(&self) -> Option<Bytes> {
        lock(&self.shared.state)
            .machine
            .session()
            .session_token()
            .cloned()
    }

    /// The address of the front-end in use; `None` between front-ends.
    pub fn frontend_addr(&self) -> Option<SocketAddr> {
        let state = lock(&self.shared.state);
        state.machine.connected_to()?;
        state.current.as_ref().map(|current| current.addr)
    }

    /// The front-end list in use: the fixed list, or the last good list resolved from DNS
    /// (sorted).
    pub fn frontends(&self) -> Vec<SocketAddr> {
        lock(&self.shared.state).addresses.clone()
    }

    /// The id (from its welcome) of the front-end in use; `None` between front-ends.
    pub fn server_id(&self) -> Option<String> {
        let state = lock(&self.shared.state);
        state.machine.connected_to()?;
        state
            .current
            .as_ref()
            .and_then(|current| current.server_id.clone())
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        let state = lock(&self.shared.state);
        state.machine.ended().is_none() && state.machine.connected_to().is_some()
    }

    /// Counters: reconnections, failed attempts, lost connections, queued inputs, dropped
    /// events, DNS resolutions.
    pub fn stats(&self) -> FleetStats {
        let state = lock(&self.shared.state);
        let machine = &state.machine;
        let failover = machine.failover();
        FleetStats {
            reconnects: failover.reconnects(),
            failed_attempts: failover.failed_attempts(),
            connection_losses: failover.losses(),
            inputs_queued: machine.inputs_queued(),
            inputs_refused: machine.inputs_refused(),
            inputs_discarded: machine.inputs_discarded(),
            events_dropped: self.shared.events_dropped.load(Ordering::Relaxed),
            resolve_failures: failover.resolve_failures(),
            frontend_list_changes: failover.list_replacements(),
        }
    }

    /// Closes the connection (after writing what is queued) and stops reconnecting. A
    /// `Disconnected{Closed}` event follows.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits until the client has ended (closed, or gave up reconnecting) and its events
    /// were handed over. Returns at once on later calls.
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(Option::is_some).await;
    }

    /// True once the client has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.done.borrow().is_some()
    }
}

impl Drop for FleetClient {
    fn drop(&mut self) {
        self.shared.close();
    }
}
