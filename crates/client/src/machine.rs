//! The client as one sans-I/O machine: client-side random balancing, the handshake,
//! keep-alive, session resume, replicas and the inputs queued between front-ends, with
//! the workspace's contract ([`flotilla_conn::Machine`]).
//!
//! It composes [`Failover`] (which front-end, when, backoff, when to resolve a DNS list),
//! [`ClientSession`] (token, subscriptions, replicas), [`KeepAlive`] (the client's side of
//! PROTOCOL.md section 7) and the wire [`Decoder`]. Every rule of the client lives here or
//! in those; the shells only move bytes and time:
//! - the tokio shell behind [`Client`](crate::Client) (one front-end, no failover:
//!   [`ClientMachineConfig::reconnect`] off) and [`FleetClient`](crate::FleetClient)
//!   (a list of front-ends) opens the connections it asks for
//!   ([`ClientOutput::Connect`]), writes what it asks to send, feeds the bytes read,
//!   resolves the DNS list when asked ([`ClientOutput::Resolve`]) and sleeps until
//!   [`ClientMachine::poll_timeout`];
//! - the simulator (`flotilla-sim`) drives thousands of them over a virtual network.
//!
//! Front-ends are indices into the current list. One connection at a time: a new
//! `Connect` is only asked for after the previous connection was reported
//! [`ClientInput::Closed`] (or failed), and the machine asks its shell to close a
//! connection it gives up on ([`ClientOutput::Close`]). It ends once
//! ([`ClientOutput::Ended`]): closed by the application, out of failover rounds, told that
//! its session was resumed on another connection (`Error{SessionMoved}`: its token is in
//! use elsewhere, and failing over would push that holder off in turn), or (without
//! `reconnect`) when its one connection ends.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use flotilla_conn::{Instant, KeepAlive, KeepAliveAction, KeepAliveConfig, Machine, Timeout};
use flotilla_wire::{
    ClientToFrontend, Decoder, ErrorCode, FrameType, FrontendToClient, Message, WorldId,
};
use flotilla_world::Position;

use crate::ResubscribePolicy;
use crate::error::ClientError;
use crate::events::{ClientEvent, DisconnectReason};
use crate::failover::{Failover, FailoverPolicy, Step};
use crate::session::{ClientSession, Fatal, HandshakeError, ReplicaMode};

/// The settings of a [`ClientMachine`].
#[derive(Debug, Clone)]
pub struct ClientMachineConfig {
    /// The name given in the hello.
    pub client_name: String,
    /// A session token to resume on the first connection.
    pub session_token: Option<Bytes>,
    /// Join tokens presented (`Join`) after every `Welcome`, before the resubscribes.
    pub join_tokens: Vec<Bytes>,
    /// Replicas or counters only.
    pub mode: ReplicaMode,
    /// When a world whose game server went away is resubscribed.
    pub resubscribe: ResubscribePolicy,
    /// The client's keep-alive (default: probe after 0.5 s unheard, ping after 20 s
    /// without sending, close after 1.5 s of silence).
    pub keep_alive: KeepAliveConfig,
    /// A connection not established within this is a failed attempt.
    pub connect_timeout: Duration,
    /// A `Welcome` not received within this after connecting is a failed attempt.
    pub handshake_timeout: Duration,
    /// Frames larger than this from the front-end are a protocol error.
    pub max_frame_len: usize,
    /// Inputs kept while between front-ends; more are refused.
    pub max_queued_inputs: usize,
    /// Payload bytes kept while between front-ends; more are refused.
    pub max_queued_input_bytes: usize,
    /// When to reconnect, and when to give up.
    pub failover: FailoverPolicy,
    /// Fail over to another front-end when a connection fails or ends. Off: one
    /// connection; the machine ends with it (or with its failed attempt).
    pub reconnect: bool,
}

impl Default for ClientMachineConfig {
    fn default() -> Self {
        Self {
            client_name: "flotilla-client".to_owned(),
            session_token: None,
            join_tokens: Vec::new(),
            mode: ReplicaMode::Full,
            resubscribe: ResubscribePolicy::default(),
            keep_alive: KeepAliveConfig::probing(
                flotilla_wire::CLIENT_PING_INTERVAL,
                flotilla_wire::CLIENT_QUIET_PING_INTERVAL,
                flotilla_wire::CLIENT_IDLE_TIMEOUT,
            ),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: flotilla_wire::CLIENT_IDLE_TIMEOUT,
            max_frame_len: flotilla_wire::DEFAULT_MAX_FRAME_LEN,
            max_queued_inputs: 1024,
            max_queued_input_bytes: 256 * 1024,
            failover: FailoverPolicy::default(),
            reconnect: true,
        }
    }
}

/// What happens to a [`ClientMachine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientInput {
    /// The connection asked for with [`ClientOutput::Connect`] is established.
    Connected,
    /// It could not be established (refused, unreachable): why, in words.
    ConnectFailed(String),
    /// Bytes read from the current connection (any chunking).
    Received(Bytes),
    /// The current connection ended: the front-end closed it (EOF).
    Closed,
    /// The current connection failed (reading or writing): why, in words.
    Failed(String),
    /// The shell stopped reading the connection (the application's queue is full): the
    /// front-end's silence does not count meanwhile.
    ReadingPaused,
    /// The shell reads the connection again.
    ReadingResumed,
    /// The application subscribes to a world (kept across front-ends), from `since` or
    /// from the position already held.
    Subscribe(WorldId, Option<Position>),
    /// The application stops watching a world.
    Unsubscribe(WorldId),
    /// The application sends an input for a world (queued while between front-ends, up to
    /// the bounds; see [`ClientMachine::input_refusal`]).
    SendInput {
        /// The world.
        world: WorldId,
        /// Opaque to the front-end.
        payload: Bytes,
    },
    /// The application closes the client.
    Close,
    /// The list asked for with [`ClientOutput::Resolve`] has other addresses: these
    /// (their names, for errors), in the order the indices refer to.
    ListReplaced(Vec<String>),
    /// It has the same addresses as before.
    ListUnchanged,
    /// Resolving it failed: why, in words.
    ResolveFailed(String),
    /// The instant from [`ClientMachine::poll_timeout`] has come.
    Timeout,
}

impl From<Timeout> for ClientInput {
    fn from(_: Timeout) -> Self {
        ClientInput::Timeout
    }
}

/// Why an attempt to reach a front-end failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The connection could not be made, or failed during the handshake.
    Io(String),
    /// It took too long: `"connect"` or `"waiting for Welcome"`.
    Timeout(&'static str),
    /// The front-end answered the hello with an `Error`.
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The `Welcome` is of a version this client does not speak.
    UnsupportedVersion(u32),
    /// A frame other than `Welcome` or `Error` came first.
    UnexpectedFrame(FrameType),
    /// The front-end's bytes are not valid protocol.
    Protocol(String),
    /// The front-end closed the connection before its welcome.
    ClosedEarly,
}

impl From<AttemptError> for ClientError {
    fn from(error: AttemptError) -> Self {
        match error {
            AttemptError::Io(text) => ClientError::Io(std::io::Error::other(text)),
            AttemptError::Timeout(what) => ClientError::Timeout(what),
            AttemptError::Refused { code, text } => ClientError::Refused { code, text },
            AttemptError::UnsupportedVersion(version) => ClientError::UnsupportedVersion(version),
            AttemptError::UnexpectedFrame(frame) => ClientError::UnexpectedFrame {
                frame,
                during: "before Welcome",
            },
            AttemptError::Protocol(text) => {
                ClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, text))
            }
            AttemptError::ClosedEarly => ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "front-end closed during the handshake",
            )),
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", ClientError::from(self.clone()))
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
    /// Resolve the front-end list; report [`ClientInput::ListReplaced`],
    /// [`ClientInput::ListUnchanged`] or [`ClientInput::ResolveFailed`].
    Resolve,
    /// The handshake with front-end `frontend` succeeded.
    Welcomed {
        /// The front-end's index.
        frontend: usize,
        /// Its id from the `Welcome`.
        server_id: String,
        /// The session token it gave.
        session_token: Bytes,
        /// True when it recognised the session (the session moved here).
        resumed: bool,
        /// How long the client was without a front-end, for a reconnection.
        after: Option<Duration>,
    },
    /// The established connection to `frontend` was lost.
    Lost {
        /// The front-end's index.
        frontend: usize,
        /// Why.
        reason: DisconnectReason,
    },
    /// An attempt to reach `frontend` failed.
    ConnectFailed {
        /// The front-end's index.
        frontend: usize,
        /// Why.
        error: AttemptError,
        /// Consecutive rounds in which every front-end failed, so far.
        failed_rounds: u32,
    },
    /// The machine stopped for good: closed by the application, out of failover rounds
    /// ([`DisconnectReason::GaveUp`]), its session resumed elsewhere
    /// (`PeerError{SessionMoved}`), or its one connection ended (without `reconnect`).
    Ended {
        /// Why.
        reason: DisconnectReason,
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

/// Why a connection ends: what the application is told for an established one, what the
/// attempt failed with otherwise.
struct Ending {
    reason: DisconnectReason,
    attempt: AttemptError,
}

impl Ending {
    fn both(reason: DisconnectReason, attempt: AttemptError) -> Self {
        Self { reason, attempt }
    }
}

/// A client, sans-I/O. See the module docs.
#[derive(Debug)]
pub struct ClientMachine {
    config: ClientMachineConfig,
    failover: Failover,
    session: ClientSession,
    connection: Option<Connection>,
    /// Back off until then (from the failover machine).
    wait_until: Option<Instant>,
    /// A resolution was asked for and not answered yet.
    resolving: bool,
    ended: Option<DisconnectReason>,
    /// Names of the front-ends, for errors (`front-end N` until the shell gives them).
    labels: Vec<String>,
    /// The last connect or handshake error, with its front-end.
    last_error: String,
    queued_inputs: VecDeque<(WorldId, Bytes)>,
    queued_input_bytes: usize,
    reading_paused: bool,
    frames_received: u64,
    inputs_queued: u64,
    inputs_refused: u64,
    inputs_discarded: u64,
    outputs: VecDeque<ClientOutput>,
}

impl ClientMachine {
    /// A client of `frontend_count` front-ends whose random choices all come from `seed`
    /// (give every client its own). It asks to connect on its first input or timeout.
    pub fn new(
        frontend_count: usize,
        config: ClientMachineConfig,
        seed: u64,
    ) -> Result<Self, ClientError> {
        let failover = Failover::new(frontend_count, config.failover, seed)?;
        Ok(Self::with_failover(failover, config, seed))
    }

    /// A client whose front-end list is resolved by its shell: it asks with
    /// [`ClientOutput::Resolve`] first and at the start of every failover round.
    pub fn resolving(config: ClientMachineConfig, seed: u64) -> Self {
        let failover = Failover::resolving(config.failover, seed);
        Self::with_failover(failover, config, seed)
    }

    fn with_failover(failover: Failover, config: ClientMachineConfig, seed: u64) -> Self {
        let mut session = ClientSession::new(
            config.mode,
            config.client_name.clone(),
            config.session_token.clone(),
        );
        session.set_resubscribe_policy(config.resubscribe, seed.rotate_left(17));
        let labels = (0..failover.frontend_count())
            .map(|i| format!("front-end {i}"))
            .collect();
        Self {
            config,
            failover,
            session,
            connection: None,
            wait_until: Some(Instant::ZERO),
            resolving: false,
            ended: None,
            labels,
            last_error: "no attempt made".to_owned(),
            queued_inputs: VecDeque::new(),
            queued_input_bytes: 0,
            reading_paused: false,
            frames_received: 0,
            inputs_queued: 0,
            inputs_refused: 0,
            inputs_discarded: 0,
            outputs: VecDeque::new(),
        }
    }

    /// Names the front-ends of the list (their addresses), for error texts.
    pub fn set_labels(&mut self, labels: Vec<String>) {
        self.labels = labels;
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

    /// Why the machine ended, once it has.
    pub fn ended(&self) -> Option<&DisconnectReason> {
        self.ended.as_ref()
    }

    /// True once the machine gave up (ran out of failover rounds).
    pub fn gave_up(&self) -> bool {
        matches!(self.ended, Some(DisconnectReason::GaveUp { .. }))
    }

    /// Whole frames received from front-ends.
    pub fn frames_received(&self) -> u64 {
        self.frames_received
    }

    /// Inputs queued while between front-ends.
    pub fn inputs_queued(&self) -> u64 {
        self.inputs_queued
    }

    /// Inputs refused because the queue between front-ends was full.
    pub fn inputs_refused(&self) -> u64 {
        self.inputs_refused
    }

    /// Queued inputs discarded because the machine ended first.
    pub fn inputs_discarded(&self) -> u64 {
        self.inputs_discarded
    }

    /// `Err(ClientError::InputQueueFull)` when an input of `len` payload bytes would be
    /// refused now (between front-ends, with the queue at a bound);
    /// `Err(ClientError::NotConnected)` once the machine ended.
    pub fn input_refusal(&self, len: usize) -> Result<(), ClientError> {
        if self.ended.is_some() {
            return Err(ClientError::NotConnected);
        }
        if self.connected_to().is_some() {
            return Ok(());
        }
        let full = self.queued_inputs.len() >= self.config.max_queued_inputs
            || self.queued_input_bytes.saturating_add(len) > self.config.max_queued_input_bytes;
        if full {
            return Err(ClientError::InputQueueFull {
                inputs: self.queued_inputs.len(),
                bytes: self.queued_input_bytes,
            });
        }
        Ok(())
    }

    fn send(&mut self, now: Instant, message: &ClientToFrontend) {
        if let Some(connection) = self.connection.as_mut() {
            self.outputs
                .push_back(ClientOutput::Send(message.encode_to_bytes()));
            connection.keep_alive.on_sent(now);
        }
    }

    /// Ends the current connection: a lost one or a failed attempt, reported to the
    /// failover machine (or ending the machine without `reconnect`).
    fn drop_connection(&mut self, now: Instant, ending: Ending, close: bool) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if close {
            self.outputs.push_back(ClientOutput::Close);
        }
        let frontend = connection.frontend;
        let lost = matches!(connection.phase, Phase::Open);
        if lost {
            self.failover.on_lost(frontend, now.as_duration());
            self.outputs.push_back(ClientOutput::Lost {
                frontend,
                reason: ending.reason.clone(),
            });
        } else {
            self.failover.on_connect_failed(frontend, now.as_duration());
            let label = self
                .labels
                .get(frontend)
                .cloned()
                .unwrap_or_else(|| format!("front-end {frontend}"));
            self.last_error = format!("{label}: {}", ending.attempt);
            self.outputs.push_back(ClientOutput::ConnectFailed {
                frontend,
                error: ending.attempt,
                failed_rounds: self.failover.consecutive_failed_rounds(),
            });
        }
        self.wait_until = Some(now);
        if !self.config.reconnect {
            let reason = if lost {
                ending.reason
            } else {
                DisconnectReason::GaveUp {
                    failed_rounds: 1,
                    last_error: self.last_error.clone(),
                }
            };
            self.end(reason);
        }
    }

    /// Closes with `Error{code}` first (a protocol error of the front-end).
    fn fail(&mut self, now: Instant, code: ErrorCode, text: String, attempt: AttemptError) {
        self.send(
            now,
            &ClientToFrontend::Error {
                code,
                text: text.clone(),
            },
        );
        let ending = Ending::both(DisconnectReason::Protocol(text), attempt);
        self.drop_connection(now, ending, true);
    }

    /// Closes for bytes from the front-end that are not valid protocol.
    fn fail_protocol(&mut self, now: Instant, error: &flotilla_wire::WireError) {
        let text = error.to_string();
        self.fail(
            now,
            error.code(),
            text.clone(),
            AttemptError::Protocol(text),
        );
    }

    /// Stops for good: what is queued is discarded, and the shell is told once.
    fn end(&mut self, reason: DisconnectReason) {
        if self.ended.is_some() {
            return;
        }
        self.inputs_discarded += self.queued_inputs.len() as u64;
        self.queued_inputs.clear();
        self.queued_input_bytes = 0;
        self.wait_until = None;
        self.resolving = false;
        self.ended = Some(reason.clone());
        self.outputs.push_back(ClientOutput::Ended { reason });
    }

    /// Asks the failover machine what to do when there is no connection.
    fn step(&mut self, now: Instant) {
        if self.ended.is_some() || self.connection.is_some() || self.resolving {
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
                let last_error = self.last_error.clone();
                self.end(DisconnectReason::GaveUp {
                    failed_rounds,
                    last_error,
                });
            }
            Step::Resolve => {
                self.wait_until = None;
                self.resolving = true;
                self.outputs.push_back(ClientOutput::Resolve);
            }
            // Not reached without a connection.
            Step::Connected(_) => self.wait_until = None,
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
                Err(error) => return self.fail_protocol(now, &error),
            };
            // A whole frame proves the front-end alive (PROTOCOL.md section 7): bytes that
            // never complete one do not.
            connection.keep_alive.on_received(now);
            self.frames_received += 1;
            let message = match FrontendToClient::decode(&frame) {
                Ok(message) => message,
                Err(error) => return self.fail_protocol(now, &error),
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
                    let reason = DisconnectReason::PeerError {
                        code,
                        text: text.clone(),
                    };
                    let ending = Ending::both(reason.clone(), AttemptError::Refused { code, text });
                    self.drop_connection(now, ending, true);
                    if code == ErrorCode::SessionMoved {
                        // Someone else resumed this session (its token is in use
                        // elsewhere): taking it back would only push them off in turn.
                        self.end(reason);
                    }
                    return;
                }
                Err(Fatal::Protocol(error)) => return self.fail_protocol(now, &error),
                Err(Fatal::Unexpected(what)) => {
                    return self.fail(
                        now,
                        ErrorCode::UnexpectedFrame,
                        what.to_owned(),
                        AttemptError::Protocol(what.to_owned()),
                    );
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
                if self.reading_paused {
                    connection.keep_alive.pause();
                }
                let frontend = connection.frontend;
                let after = self.failover.on_connected(frontend, now.as_duration());
                // Grants belong to the connection: the tokens go first, so that the
                // subscribes and inputs that follow are allowed.
                for token in self.config.join_tokens.clone() {
                    self.send(now, &ClientToFrontend::Join { token });
                }
                for message in self.session.resume_subscriptions() {
                    self.send(now, &message);
                }
                while let Some((world, payload)) = self.queued_inputs.pop_front() {
                    self.queued_input_bytes = self.queued_input_bytes.saturating_sub(payload.len());
                    self.send(now, &ClientToFrontend::Input { world, payload });
                }
                self.outputs.push_back(ClientOutput::Welcomed {
                    frontend,
                    server_id: welcomed.server_id,
                    session_token: welcomed.session_token,
                    resumed: welcomed.resumed,
                    after,
                });
            }
            Err(HandshakeError::Refused { code, text }) => {
                let ending = Ending::both(
                    DisconnectReason::PeerError {
                        code,
                        text: text.clone(),
                    },
                    AttemptError::Refused { code, text },
                );
                self.drop_connection(now, ending, true);
            }
            Err(HandshakeError::UnsupportedVersion(version)) => self.fail(
                now,
                ErrorCode::UnsupportedVersion,
                format!("protocol version {version} is not supported"),
                AttemptError::UnsupportedVersion(version),
            ),
            Err(HandshakeError::Unexpected(frame)) => self.fail(
                now,
                ErrorCode::UnexpectedFrame,
                format!("{frame:?} before Welcome"),
                AttemptError::UnexpectedFrame(frame),
            ),
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if let Some(connection) = self.connection.as_mut() {
            match connection.phase {
                Phase::Connecting { deadline } if deadline <= now => {
                    let ending =
                        Ending::both(DisconnectReason::Timeout, AttemptError::Timeout("connect"));
                    return self.drop_connection(now, ending, true);
                }
                Phase::AwaitingWelcome { deadline } if deadline <= now => {
                    let ending = Ending::both(
                        DisconnectReason::Timeout,
                        AttemptError::Timeout("waiting for Welcome"),
                    );
                    return self.drop_connection(now, ending, true);
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
                        let ending = Ending::both(
                            DisconnectReason::Timeout,
                            AttemptError::Timeout("waiting for Welcome"),
                        );
                        return self.drop_connection(now, ending, true);
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

    fn on_resolved(&mut self, now: Instant, outcome: ClientInput) {
        if !self.resolving {
            return;
        }
        self.resolving = false;
        match outcome {
            ClientInput::ListReplaced(labels) => {
                match self
                    .failover
                    .on_list_replaced(labels.len(), now.as_duration())
                {
                    Ok(()) => self.labels = labels,
                    Err(error) => {
                        self.last_error = format!("resolving: {error}");
                        self.failover.on_resolve_failed(now.as_duration());
                    }
                }
            }
            ClientInput::ListUnchanged => self.failover.on_list_unchanged(now.as_duration()),
            ClientInput::ResolveFailed(error) => {
                self.last_error = format!("resolving: {error}");
                self.failover.on_resolve_failed(now.as_duration());
            }
            _ => {}
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
            ClientInput::ConnectFailed(error) => {
                let ending =
                    Ending::both(DisconnectReason::Io(error.clone()), AttemptError::Io(error));
                self.drop_connection(now, ending, false);
            }
            ClientInput::Received(bytes) => self.on_received(now, &bytes),
            ClientInput::Closed => {
                let ending = Ending::both(DisconnectReason::PeerClosed, AttemptError::ClosedEarly);
                self.drop_connection(now, ending, false);
            }
            ClientInput::Failed(error) => {
                let ending =
                    Ending::both(DisconnectReason::Io(error.clone()), AttemptError::Io(error));
                self.drop_connection(now, ending, false);
            }
            ClientInput::ReadingPaused => {
                self.reading_paused = true;
                if let Some(connection) = self.connection.as_mut() {
                    connection.keep_alive.pause();
                }
            }
            ClientInput::ReadingResumed => {
                self.reading_paused = false;
                if let Some(connection) = self.connection.as_mut() {
                    connection.keep_alive.resume(now);
                }
            }
            ClientInput::Subscribe(world, since) => {
                if self.ended.is_none() {
                    let message = self.session.subscribe(world, since);
                    if self.connected_to().is_some() {
                        self.send(now, &message);
                    }
                }
            }
            ClientInput::Unsubscribe(world) => {
                if let Some(message) = self.session.unsubscribe(&world)
                    && self.connected_to().is_some()
                {
                    self.send(now, &message);
                }
            }
            ClientInput::SendInput { world, payload } => {
                if self.ended.is_some() {
                    // Refused with NotConnected by the shell; nothing to count.
                } else if self.connected_to().is_some() {
                    self.send(now, &ClientToFrontend::Input { world, payload });
                } else if self.input_refusal(payload.len()).is_ok() {
                    self.queued_input_bytes += payload.len();
                    self.queued_inputs.push_back((world, payload));
                    self.inputs_queued += 1;
                } else {
                    self.inputs_refused += 1;
                }
            }
            ClientInput::Close => {
                if self.ended.is_none() {
                    if self.connection.take().is_some() {
                        self.outputs.push_back(ClientOutput::Close);
                    }
                    self.end(DisconnectReason::Closed);
                }
            }
            resolved @ (ClientInput::ListReplaced(_)
            | ClientInput::ListUnchanged
            | ClientInput::ResolveFailed(_)) => self.on_resolved(now, resolved),
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

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{Role, bytes::BytesMut};

    fn frames(outputs: &[ClientOutput]) -> Vec<ClientToFrontend> {
        let mut decoder = Decoder::new(1 << 20);
        for output in outputs {
            if let ClientOutput::Send(bytes) = output {
                decoder.feed(bytes);
            }
        }
        std::iter::from_fn(|| decoder.next_message().unwrap()).collect()
    }

    fn drain(machine: &mut ClientMachine) -> Vec<ClientOutput> {
        std::iter::from_fn(|| machine.poll_output()).collect()
    }

    #[test]
    fn join_tokens_go_first_after_every_welcome_and_their_answers_are_events() {
        let tokens = vec![Bytes::from_static(b"t1"), Bytes::from_static(b"t2")];
        let config = ClientMachineConfig {
            join_tokens: tokens.clone(),
            ..ClientMachineConfig::default()
        };
        let mut machine = ClientMachine::new(2, config, 1).unwrap();
        let arena = WorldId::new("arena").unwrap();
        let at = Instant::from_millis;
        machine.handle(at(0), ClientInput::Subscribe(arena.clone(), None));
        machine.handle(
            at(0),
            ClientInput::SendInput {
                world: arena.clone(),
                payload: Bytes::from_static(b"J"),
            },
        );
        for round in 0..2u64 {
            drain(&mut machine);
            machine.handle(at(round * 10_000), ClientInput::Connected);
            let hello = frames(&drain(&mut machine));
            assert!(matches!(&hello[..], [ClientToFrontend::Hello { .. }]));
            let mut welcome = BytesMut::new();
            FrontendToClient::Welcome {
                version: 1,
                session_token: Bytes::from_static(b"s"),
                resumed: round > 0,
                server_id: "fe".into(),
            }
            .encode(&mut welcome);
            machine.handle(at(round * 10_000), ClientInput::Received(welcome.freeze()));
            let sent = frames(&drain(&mut machine));
            let joins: Vec<_> = tokens
                .iter()
                .map(|token| ClientToFrontend::Join {
                    token: token.clone(),
                })
                .collect();
            assert_eq!(&sent[..2], &joins[..], "round {round}: {sent:?}");
            assert!(
                matches!(sent[2], ClientToFrontend::Subscribe { .. }),
                "{sent:?}"
            );
            if round == 0 {
                assert!(
                    matches!(sent[3], ClientToFrontend::Input { .. }),
                    "{sent:?}"
                );
            }
            // The answers become events.
            let mut answers = BytesMut::new();
            FrontendToClient::Joined {
                world: arena.clone(),
                role: Role::Player,
                expires_unix: 9,
            }
            .encode(&mut answers);
            FrontendToClient::Refused {
                request: FrameType::Join,
                world: None,
                code: ErrorCode::NotAllowed,
                text: "malformed".into(),
            }
            .encode(&mut answers);
            FrontendToClient::Refused {
                request: FrameType::Input,
                world: Some(arena.clone()),
                code: ErrorCode::NotAllowed,
                text: "no token".into(),
            }
            .encode(&mut answers);
            machine.handle(
                at(round * 10_000 + 1),
                ClientInput::Received(answers.freeze()),
            );
            let events: Vec<_> = drain(&mut machine)
                .into_iter()
                .filter_map(|output| match output {
                    ClientOutput::Event(event) => Some(event),
                    _ => None,
                })
                .collect();
            assert_eq!(
                events,
                vec![
                    ClientEvent::Joined {
                        world: arena.clone(),
                        role: Role::Player,
                        expires_unix: 9
                    },
                    ClientEvent::JoinRefused {
                        world: None,
                        code: ErrorCode::NotAllowed,
                        text: "malformed".into()
                    },
                    ClientEvent::InputRefused {
                        world: arena.clone(),
                        code: ErrorCode::NotAllowed,
                        text: "no token".into()
                    },
                ]
            );
            // The connection is lost: the next one presents the tokens again.
            machine.handle(at(round * 10_000 + 2), ClientInput::Closed);
            machine.handle(at(round * 10_000 + 5_000), ClientInput::Timeout);
        }
    }
}
