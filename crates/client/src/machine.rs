//! The fleet client as one sans-I/O machine: client-side random balancing, the handshake,
//! keep-alive, session resume and replicas, with the workspace's contract
//! ([`flotilla_conn::Machine`]).
//!
//! It composes the machines the tokio [`FleetClient`](crate::FleetClient) is built from:
//! [`Failover`] (which front-end, when, backoff), [`ClientSession`] (token, subscriptions,
//! replicas), [`KeepAlive`] (the client's side of PROTOCOL.md section 7) and the wire
//! [`Decoder`]. Its shell only opens the connections it asks for
//! ([`ClientOutput::Connect`]), writes what it asks to send, feeds the bytes read, and
//! sleeps until [`ClientMachine::poll_timeout`]. The simulator (`flotilla-sim`) drives
//! thousands of them over a virtual network.
//!
//! Front-ends are indices into the list the machine was made for. One connection at a time:
//! a new `Connect` is only asked for after the previous connection was reported
//! [`ClientInput::Closed`] (or failed), and the machine asks its shell to close a connection
//! it gives up on ([`ClientOutput::Close`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use flotilla_conn::{Instant, KeepAlive, KeepAliveAction, KeepAliveConfig, Machine, Timeout};
use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message, WorldId};

use crate::events::ClientEvent;
use crate::failover::{Failover, FailoverPolicy, Step};
use crate::session::{ClientSession, Fatal, HandshakeError, ReplicaMode};

/// The settings of a [`ClientMachine`].
#[derive(Debug, Clone)]
pub struct ClientMachineConfig {
    /// The name given in the hello.
    pub client_name: String,
    /// Replicas or counters only.
    pub mode: ReplicaMode,
    /// The client's keep-alive (default: probe after 0.5 s unheard, ping after 2 s without
    /// sending, close after 1.5 s of silence).
    pub keep_alive: KeepAliveConfig,
    /// A connection not established within this is a failed attempt.
    pub connect_timeout: Duration,
    /// A `Welcome` not received within this after connecting is a failed attempt.
    pub handshake_timeout: Duration,
    /// Frames larger than this from the front-end are a protocol error.
    pub max_frame_len: usize,
    /// Inputs kept while between front-ends; more are refused.
    pub max_queued_inputs: usize,
    /// When to reconnect, and when to give up.
    pub failover: FailoverPolicy,
}

impl Default for ClientMachineConfig {
    fn default() -> Self {
        Self {
            client_name: "flotilla-client".to_owned(),
            mode: ReplicaMode::Full,
            keep_alive: KeepAliveConfig::probing(
                flotilla_wire::CLIENT_PING_INTERVAL,
                flotilla_wire::CLIENT_QUIET_PING_INTERVAL,
                flotilla_wire::CLIENT_IDLE_TIMEOUT,
            ),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: flotilla_wire::CLIENT_IDLE_TIMEOUT,
            max_frame_len: flotilla_wire::DEFAULT_MAX_FRAME_LEN,
            max_queued_inputs: 1024,
            failover: FailoverPolicy::default(),
        }
    }
}

/// What happens to a [`ClientMachine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientInput {
    /// The connection asked for with [`ClientOutput::Connect`] is established.
    Connected,
    /// It could not be established (refused, unreachable).
    ConnectFailed,
    /// Bytes read from the current connection (any chunking).
    Received(Bytes),
    /// The current connection ended (EOF, reset).
    Closed,
    /// The application subscribes to a world (kept across front-ends).
    Subscribe(WorldId),
    /// The application sends an input for a world (queued while between front-ends).
    SendInput {
        /// The world.
        world: WorldId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// The instant from [`ClientMachine::poll_timeout`] has come.
    Timeout,
}

impl From<Timeout> for ClientInput {
    fn from(_: Timeout) -> Self {
        ClientInput::Timeout
    }
}

/// What the machine's shell must do, or tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Open a connection to front-end `index` of the list; report
    /// [`ClientInput::Connected`] or [`ClientInput::ConnectFailed`].
    Connect(usize),
    /// Write these bytes (whole frames) to the current connection.
    Send(Bytes),
    /// Close the current connection (after writing what was asked before); do not report
    /// it as `Closed`.
    Close,
    /// The handshake with front-end `frontend` succeeded.
    Welcomed {
        /// The front-end's index.
        frontend: usize,
        /// Its id from the `Welcome`.
        server_id: String,
        /// True when it recognised the session (the session moved here).
        resumed: bool,
        /// How long the client was without a front-end, for a reconnection.
        after: Option<Duration>,
    },
    /// The established connection to `frontend` was lost.
    Lost {
        /// The front-end's index.
        frontend: usize,
        /// Why, in words.
        reason: String,
    },
    /// An attempt to reach `frontend` failed.
    ConnectFailed {
        /// The front-end's index.
        frontend: usize,
        /// Why, in words.
        reason: String,
    },
    /// Every front-end failed for the policy's number of rounds: the machine stopped.
    GaveUp {
        /// Consecutive failed rounds.
        failed_rounds: u32,
    },
    /// A data event of the session (snapshots, batches, outputs, unsubscribes).
    Event(ClientEvent),
}

/// The phase of the current connection.
#[derive(Debug)]
enum Phase {
    Connecting { deadline: Instant },
    AwaitingWelcome { deadline: Instant },
    Open,
}

#[derive(Debug)]
struct Connection {
    frontend: usize,
    phase: Phase,
    decoder: Decoder,
    keep_alive: KeepAlive,
}

/// A fleet client, sans-I/O. See the module docs.
#[derive(Debug)]
pub struct ClientMachine {
    config: ClientMachineConfig,
    failover: Failover,
    session: ClientSession,
    connection: Option<Connection>,
    /// Back off until then (from the failover machine).
    wait_until: Option<Instant>,
    gave_up: bool,
    queued_inputs: VecDeque<ClientToFrontend>,
    outputs: VecDeque<ClientOutput>,
    inputs_refused: u64,
}

impl ClientMachine {
    /// A client of `frontend_count` front-ends whose random choices all come from `seed`
    /// (give every client its own). It asks to connect on its first input or timeout.
    pub fn new(
        frontend_count: usize,
        config: ClientMachineConfig,
        seed: u64,
    ) -> Result<Self, crate::ClientError> {
        let failover = Failover::new(frontend_count, config.failover, seed)?;
        let mut session = ClientSession::new(config.mode, config.client_name.clone(), None);
        session.set_resubscribe_policy(crate::ResubscribePolicy::default(), seed.rotate_left(17));
        Ok(Self {
            config,
            failover,
            session,
            connection: None,
            wait_until: Some(Instant::ZERO),
            gave_up: false,
            queued_inputs: VecDeque::new(),
            outputs: VecDeque::new(),
            inputs_refused: 0,
        })
    }

    /// The session (token, replicas, positions).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// The failover machine (counters: reconnects, failed attempts, losses).
    pub fn failover(&self) -> &Failover {
        &self.failover
    }

    /// The front-end of the open connection, once welcomed.
    pub fn connected_to(&self) -> Option<usize> {
        self.connection
            .as_ref()
            .filter(|c| matches!(c.phase, Phase::Open))
            .map(|c| c.frontend)
    }

    /// Inputs refused because the queue between front-ends was full.
    pub fn inputs_refused(&self) -> u64 {
        self.inputs_refused
    }

    /// True once the machine gave up.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    fn send(&mut self, now: Instant, message: &ClientToFrontend) {
        if let Some(connection) = self.connection.as_mut() {
            self.outputs
                .push_back(ClientOutput::Send(message.encode_to_bytes()));
            connection.keep_alive.on_sent(now);
        }
    }

    /// Ends the current connection: a lost one or a failed attempt, reported to the
    /// failover machine.
    fn drop_connection(&mut self, now: Instant, reason: String, close: bool) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if close {
            self.outputs.push_back(ClientOutput::Close);
        }
        let frontend = connection.frontend;
        if matches!(connection.phase, Phase::Open) {
            self.failover.on_lost(frontend, now.as_duration());
            self.outputs
                .push_back(ClientOutput::Lost { frontend, reason });
        } else {
            self.failover.on_connect_failed(frontend, now.as_duration());
            self.outputs
                .push_back(ClientOutput::ConnectFailed { frontend, reason });
        }
        self.wait_until = Some(now);
    }

    /// Closes with `Error{code}` first (a protocol error of the front-end).
    fn fail(&mut self, now: Instant, code: ErrorCode, text: String) {
        self.send(
            now,
            &ClientToFrontend::Error {
                code,
                text: text.clone(),
            },
        );
        self.drop_connection(now, format!("{code:?}: {text}"), true);
    }

    /// Asks the failover machine what to do when there is no connection.
    fn step(&mut self, now: Instant) {
        if self.gave_up || self.connection.is_some() {
            return;
        }
        match self.failover.poll(now.as_duration()) {
            Step::Connect(frontend) => {
                self.wait_until = None;
                self.connection = Some(Connection {
                    frontend,
                    phase: Phase::Connecting {
                        deadline: now + self.config.connect_timeout,
                    },
                    decoder: Decoder::new(self.config.max_frame_len),
                    keep_alive: KeepAlive::new(self.config.keep_alive, now),
                });
                self.outputs.push_back(ClientOutput::Connect(frontend));
            }
            Step::WaitUntil(until) => self.wait_until = Some(Instant::from_duration(until)),
            Step::GiveUp { failed_rounds } => {
                self.gave_up = true;
                self.wait_until = None;
                self.outputs
                    .push_back(ClientOutput::GaveUp { failed_rounds });
            }
            // Not reached without a connection; a resolving list is not used here.
            Step::Connected(_) | Step::Resolve => self.wait_until = None,
        }
    }

    fn on_received(&mut self, now: Instant, bytes: &[u8]) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        connection.decoder.feed(bytes);
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return;
            };
            let frame = match connection.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => return self.fail(now, error.code(), error.to_string()),
            };
            connection.keep_alive.on_received(now);
            let message = match FrontendToClient::decode(&frame) {
                Ok(message) => message,
                Err(error) => return self.fail(now, error.code(), error.to_string()),
            };
            if matches!(connection.phase, Phase::AwaitingWelcome { .. }) {
                self.on_handshake(now, message);
                continue;
            }
            match self.session.handle(message, frame.len(), now) {
                Ok(handled) => {
                    for reply in &handled.replies {
                        self.send(now, reply);
                    }
                    self.outputs
                        .extend(handled.events.into_iter().map(ClientOutput::Event));
                }
                Err(Fatal::Peer { code, text }) => {
                    return self.drop_connection(now, format!("{code:?}: {text}"), true);
                }
                Err(Fatal::Protocol(error)) => {
                    return self.fail(now, error.code(), error.to_string());
                }
                Err(Fatal::Unexpected(what)) => {
                    return self.fail(now, ErrorCode::UnexpectedFrame, what.to_owned());
                }
            }
        }
    }

    fn on_handshake(&mut self, now: Instant, message: FrontendToClient) {
        match self.session.on_handshake(message) {
            Ok(welcomed) => {
                let Some(connection) = self.connection.as_mut() else {
                    return;
                };
                connection.phase = Phase::Open;
                let frontend = connection.frontend;
                let after = self.failover.on_connected(frontend, now.as_duration());
                for message in self.session.resume_subscriptions() {
                    self.send(now, &message);
                }
                while let Some(input) = self.queued_inputs.pop_front() {
                    self.send(now, &input);
                }
                self.outputs.push_back(ClientOutput::Welcomed {
                    frontend,
                    server_id: welcomed.server_id,
                    resumed: welcomed.resumed,
                    after,
                });
            }
            Err(HandshakeError::Refused { code, text }) => {
                self.drop_connection(now, format!("{code:?}: {text}"), true);
            }
            Err(HandshakeError::UnsupportedVersion(version)) => self.fail(
                now,
                ErrorCode::UnsupportedVersion,
                format!("protocol version {version} is not supported"),
            ),
            Err(HandshakeError::Unexpected(frame)) => self.fail(
                now,
                ErrorCode::UnexpectedFrame,
                format!("{frame:?} before Welcome"),
            ),
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if let Some(connection) = self.connection.as_mut() {
            match connection.phase {
                Phase::Connecting { deadline } if deadline <= now => {
                    return self.drop_connection(now, "connect timed out".into(), true);
                }
                Phase::AwaitingWelcome { deadline } if deadline <= now => {
                    return self.drop_connection(now, "no Welcome in time".into(), true);
                }
                Phase::Open => match connection.keep_alive.poll(now) {
                    Some(KeepAliveAction::Ping { nonce }) => {
                        self.outputs.push_back(ClientOutput::Send(
                            ClientToFrontend::Ping { nonce }.encode_to_bytes(),
                        ));
                    }
                    Some(KeepAliveAction::Close { silent_for }) => {
                        let text = flotilla_conn::silence_text(silent_for);
                        self.send(
                            now,
                            &ClientToFrontend::Error {
                                code: ErrorCode::Timeout,
                                text: text.clone(),
                            },
                        );
                        return self.drop_connection(now, text, true);
                    }
                    None => {}
                },
                _ => {}
            }
            if matches!(connection.phase, Phase::Open)
                && self
                    .session
                    .next_resubscribe_at()
                    .is_some_and(|at| at <= now)
            {
                for message in self.session.due_resubscribes(now) {
                    self.send(now, &message);
                }
            }
        }
    }
}

impl Machine for ClientMachine {
    type Input = ClientInput;
    type Output = ClientOutput;

    fn handle(&mut self, now: Instant, input: ClientInput) {
        match input {
            ClientInput::Connected => {
                if let Some(connection) = self.connection.as_mut()
                    && matches!(connection.phase, Phase::Connecting { .. })
                {
                    connection.phase = Phase::AwaitingWelcome {
                        deadline: now + self.config.handshake_timeout,
                    };
                    connection.keep_alive = KeepAlive::new(self.config.keep_alive, now);
                    let hello = self.session.hello();
                    self.send(now, &hello);
                }
            }
            ClientInput::ConnectFailed => {
                self.drop_connection(now, "connection refused".into(), false);
            }
            ClientInput::Received(bytes) => self.on_received(now, &bytes),
            ClientInput::Closed => {
                self.drop_connection(now, "the front-end closed the connection".into(), false);
            }
            ClientInput::Subscribe(world) => {
                let message = self.session.subscribe(world, None);
                if self.connected_to().is_some() {
                    self.send(now, &message);
                }
            }
            ClientInput::SendInput { world, payload } => {
                let message = ClientToFrontend::Input { world, payload };
                if self.connected_to().is_some() {
                    self.send(now, &message);
                } else if self.queued_inputs.len() < self.config.max_queued_inputs {
                    self.queued_inputs.push_back(message);
                } else {
                    self.inputs_refused += 1;
                }
            }
            ClientInput::Timeout => self.on_timeout(now),
        }
        self.step(now);
    }

    fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let connection_deadline = self.connection.as_ref().and_then(|c| match c.phase {
            Phase::Connecting { deadline } | Phase::AwaitingWelcome { deadline } => Some(deadline),
            Phase::Open => {
                let resubscribe = self.session.next_resubscribe_at();
                match (c.keep_alive.deadline(), resubscribe) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        });
        match (connection_deadline, self.wait_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
