//! The driver: one [`Frontend`] owns every machine of a front-end in ID-indexed maps and
//! moves messages between them.
//!
//! Feed it [`Input`]s with [`Frontend::handle`] (each with `now`, the time since the
//! front-end started), then take its [`Output`]s with [`Frontend::poll_output`] until
//! `None`. It never touches a socket, a clock or a thread, and draws randomness only from
//! its seed, so the same `(now, input)` stream always yields the same outputs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use flotilla_conn::{Deadlines, Instant, KeepAliveConfig, Machine, Timeout};
use flotilla_wire::{
    ErrorCode, FrameType, FrontendToClient, FrontendToGame, GameToFrontend, Message, RawFrame,
    SessionId, WireError, WorldId,
};
use flotilla_world::Position;

use crate::config::FrontendConfig;
use crate::directory::Directory;
use crate::error::FrontendError;
use crate::factory::{Factory, FactoryEvent};
use crate::game_link::{GameLink, GameLinkEvent};
use crate::ids::{ConnId, GameId, IdBuildHasher, SeededRng};
use crate::replica::{
    BatchOutcome, ReplicaMachine, Serve, SnapshotProgress, SubscriberState, TopUp,
};
use crate::router::{Router, WorldChange};
use crate::session::{JOIN_BURST, JOINS_PER_SECOND, Offer, Session, SessionEvent, Traffic};

/// Why the front-end closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CloseReason {
    /// A protocol error; an `Error` frame with this code was sent first.
    Protocol(ErrorCode),
    /// The peer sent an `Error` frame with this code.
    PeerError(ErrorCode),
    /// The peer was silent past the idle timeout (`Error{Timeout}` was sent first).
    IdleTimeout,
    /// The session resumed on another connection of this front-end.
    SessionMoved,
    /// It sent inputs past its budget (`Error{Overloaded}` was sent first); the shell
    /// refuses its address for a while
    /// ([`input_flood_penalty`](crate::FrontendConfig::input_flood_penalty)).
    InputRate,
}

/// Something that happened to the front-end, fed to [`Frontend::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A client connected.
    ClientConnected(ConnId),
    /// A whole frame arrived from a client.
    ClientFrame(ConnId, RawFrame),
    /// The client's bytes could not be framed (oversize length, unknown type): the
    /// decoder's error.
    ClientMalformed(ConnId, WireError),
    /// This many bytes were written to the connection's socket. Report 0 when the socket
    /// proved writable with nothing left to write (a congested connection whose queue was
    /// discarded recovers only on this).
    ClientDrained(ConnId, usize),
    /// The shell is about to write the connection's queue. The machine first adds, as
    /// [`Output::SendToClient`]s to take and queue before writing, the change batches
    /// its subscriptions are owed: a live observer is sent one batch at once, and the
    /// batches that follow until its connection is written are added here in one piece
    /// (see [`SubscriberState::Queued`]). A shell feeds it for every connection it writes
    /// after queuing frames for it (once per write attempt is enough; more are harmless).
    /// Without it, an observer gets only the first batch of each run.
    ClientWriting(ConnId),
    /// This many bytes were discarded from the connection's queue after
    /// [`Output::DropQueuedBatches`] (not written: no resync yet).
    ClientDiscarded(ConnId, usize),
    /// The client's connection is gone (EOF, reset).
    ClientClosed(ConnId),
    /// A connection to a game server is established.
    GameConnected(GameId),
    /// A whole frame arrived from a game server.
    GameFrame(GameId, RawFrame),
    /// The game server's bytes could not be framed.
    GameMalformed(GameId, WireError),
    /// The game-server connection is gone.
    GameClosed(GameId),
    /// This many bytes left the game link's queue (written, or discarded after a write
    /// error). Lets the machine close a link that stays over
    /// [`max_game_queued_bytes`](FrontendConfig::max_game_queued_bytes) with nothing
    /// written (see [`game_idle_timeout`](FrontendConfig::game_idle_timeout)).
    GameDrained(GameId, usize),
    /// The shell stopped reading every client (a game link's queue is full): until
    /// [`Input::ClientReadingResumed`], clients are not timed out for silence.
    ClientReadingPaused,
    /// The shell reads clients again: the time they were not read counts as activity.
    ClientReadingResumed,
    /// At this input's `now` the wall clock (UTC) reads `unix_millis` milliseconds since
    /// the Unix epoch. The machine keeps the offset and derives the wall-clock time of
    /// every later `now` from it, for the expiry of join tokens; it never reads a clock.
    /// Feed it before the first client connects and again now and then (every 30 s,
    /// say), so that a stepped system clock is followed. Until the first one, a front-end with
    /// [`join_keys`](FrontendConfig::join_keys) refuses every token (it cannot tell
    /// whether one expired).
    WallClock {
        /// Milliseconds since the Unix epoch, at this input's `now`.
        unix_millis: u64,
    },
    /// The instant [`Frontend::poll_timeout`] asked for has come (keep-alive pings and
    /// silence, stalled game links, idle replicas' grace period). Feeding it early is
    /// harmless.
    Timeout,
}

impl From<Timeout> for Input {
    fn from(_: Timeout) -> Self {
        Input::Timeout
    }
}

/// Something the shell must do, taken from [`Frontend::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// Queue `bytes` (one or more whole frames) for the client and report them with
    /// [`Input::ClientDrained`] once written. `droppable` frames (change batches and
    /// snapshots) may be discarded on [`Output::DropQueuedBatches`].
    SendToClient {
        /// The connection.
        conn: ConnId,
        /// The frames.
        bytes: Bytes,
        /// True for change batches and snapshots, which a slow connection may lose (it is
        /// resynced with a fresh snapshot once it drains).
        droppable: bool,
    },
    /// The connection is past its send budget: discard its queued droppable frames that
    /// are not partly written, and report their bytes with [`Input::ClientDiscarded`].
    DropQueuedBatches(ConnId),
    /// Write what is queued for the client (the last frame may be an `Error`), then close
    /// it. The front-end has already forgotten the connection.
    CloseClient(ConnId, CloseReason),
    /// Send `bytes` (one whole frame) to the game server.
    SendToGame(GameId, Bytes),
    /// Write what is queued for the game server, then close the link (the shell
    /// reconnects with backoff). The front-end has already forgotten it.
    CloseGame(GameId, CloseReason),
}

/// Counters of one front-end, for status lines and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Client connections open now.
    pub connections: u64,
    /// Game links that completed their handshake.
    pub games_ready: u64,
    /// Replica machines of game worlds alive now (idle ones in their grace period included).
    pub replicas: u64,
    /// Frames received from clients.
    pub client_frames_in: u64,
    /// Sends queued for clients (one snapshot of several parts counts once).
    pub client_sends: u64,
    /// Frames received from game servers.
    pub game_frames_in: u64,
    /// Frames sent to game servers.
    pub game_frames_out: u64,
    /// Change batches queued for clients (one per observer per batch, whether sent alone
    /// or joined with others in a top-up).
    pub batches_forwarded: u64,
    /// Change batch frames not sent to congested connections.
    pub batches_dropped: u64,
    /// Times a connection crossed its send budget (its queued batches were dropped).
    pub congestions: u64,
    /// Times an observer that was behind had its queued batches replaced by one snapshot
    /// of the world's latest state, because they outweighed it
    /// ([`coalesce_above`](FrontendConfig::coalesce_above)): the latest state wins, fewer
    /// bytes are written under load, and the replica converges all the same.
    pub coalesced: u64,
    /// Snapshots sent in place of batches an observer missed: to a congested connection
    /// once it drained, or before a write when the batches it was owed had left the ring.
    pub resyncs: u64,
    /// Client inputs forwarded to a game server.
    pub inputs_routed: u64,
    /// Client inputs for a world no game server hosts (each answered with `Unsubscribed`)
    /// or for a world of the front-end's own (`$directory`: not answered).
    pub inputs_dropped: u64,
    /// Game outputs delivered to a session.
    pub outputs_routed: u64,
    /// Game outputs for a session not on this front-end.
    pub outputs_dropped: u64,
    /// Connections closed for a protocol error (client or game side).
    pub protocol_errors: u64,
    /// Bytes handed to the shell for clients and not yet reported drained.
    pub bytes_queued: u64,
    /// Game links closed with `Error{Overloaded}` because they stayed over
    /// `max_game_queued_bytes` with nothing written (the game server stopped reading).
    pub game_links_stalled: u64,
    /// Worlds whose game link was lost and that were kept, with their observers, waiting
    /// for a game server to announce them again
    /// ([`game_resume_grace`](crate::FrontendConfig::game_resume_grace)).
    pub worlds_kept_after_game_loss: u64,
    /// Of those, worlds announced again in time and resubscribed upstream from their
    /// replica's position (their observers were never unsubscribed).
    pub worlds_resumed: u64,
    /// Worlds waiting for their game server now.
    pub worlds_waiting_for_game: u64,
    /// Connections closed with `Error{SessionMoved}` because their session was resumed
    /// on another connection (of this front-end, or of another one, told by a game
    /// server's `SessionMoved`).
    pub sessions_taken_over: u64,
    /// Client connections closed for sending inputs past their budget
    /// ([`max_inputs_per_second`](crate::FrontendConfig::max_inputs_per_second)), or
    /// `Join`s past theirs ([`JOINS_PER_SECOND`](crate::JOINS_PER_SECOND)).
    pub clients_closed_for_input_rate: u64,
    /// `Join`s answered `Joined`: a grant recorded on their connection.
    pub joins_accepted: u64,
    /// `Join`s answered `Refused` (malformed, expired, not signed by a configured key,
    /// too many on one connection, or the wall-clock time not known yet).
    pub joins_refused: u64,
    /// Inputs refused (answered `Refused{Input, NotAllowed}`, never forwarded) because
    /// their connection holds no unexpired player token for the world
    /// ([`join_keys`](crate::FrontendConfig::join_keys) set).
    pub inputs_not_allowed: u64,
    /// Subscribes refused (`Unsubscribed{NotAllowed}`) for want of a token, with
    /// [`anonymous_observers`](crate::FrontendConfig::anonymous_observers) off.
    pub subscribes_not_allowed: u64,
}

type SessionMap = HashMap<ConnId, Session, IdBuildHasher>;

/// How long an observer's queue must have waited unwritten before its batches may be
/// coalesced ([`FrontendConfig::coalesce_above`]): batches that arrive together and are
/// written together in the same turn are not the sign of an observer falling behind, and
/// a reader that keeps up gets every one of them. A front-end that keeps up writes within
/// a few milliseconds; one whose pass over its observers takes longer than this is behind,
/// and its observers are better served the latest state than batches that waited. (It
/// was 100 ms: at 20,000 observers, batches up to 100 ms old were written as they were,
/// and lag p99 was 117-141 ms instead of 83-92 ms; BENCHMARKS.md.)
pub const COALESCE_AFTER_WAITING: std::time::Duration = std::time::Duration::from_millis(20);

/// Mutable access to what sending to clients needs, split from the machines.
struct Outbox<'a> {
    sessions: &'a mut SessionMap,
    outputs: &'a mut VecDeque<Output>,
    stats: &'a mut Stats,
    send_budget: usize,
    max_queued_bytes: usize,
    /// See [`FrontendConfig::coalesce_above`] (0: never).
    coalesce_above: usize,
    now: Instant,
    congested: &'a mut Vec<ConnId>,
    coalesced: &'a mut Vec<ConnId>,
    overloaded: &'a mut Vec<ConnId>,
}

impl Outbox<'_> {
    /// Offers `bytes` to `conn`'s send budget and queues them if accepted.
    fn send(&mut self, conn: ConnId, bytes: Bytes, traffic: Traffic) -> Offer {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Offer::Dropped {
                newly_congested: false,
            };
        };
        let len = bytes.len();
        let offer = session.offer(len, traffic, self.send_budget, self.max_queued_bytes);
        match offer {
            Offer::Accepted => {
                session.note_sent(self.now);
                self.stats.bytes_queued += len as u64;
                self.stats.client_sends += 1;
                let droppable = matches!(
                    traffic,
                    Traffic::Batch | Traffic::Snapshot | Traffic::CatchUp
                );
                if traffic == Traffic::Batch {
                    self.stats.batches_forwarded += 1;
                }
                self.outputs.push_back(Output::SendToClient {
                    conn,
                    bytes,
                    droppable,
                });
            }
            Offer::Dropped { .. } => self.stats.batches_dropped += 1,
            Offer::Overloaded => self.overloaded.push(conn),
        }
        offer
    }

    /// The queue size past which a subscriber of `machine` that is behind has its queued
    /// batches replaced by the latest state (`usize::MAX`: coalescing is off): at least a
    /// fresh snapshot, so what a replacement drops outweighs what it queues (but for a
    /// frame already partly written, which stays).
    fn coalesce_at(&self, machine: &ReplicaMachine) -> usize {
        match self.coalesce_above {
            0 => usize::MAX,
            above => above.max(machine.snapshot_len_hint()),
        }
    }

    /// True when `conn` is behind (its queue has waited unwritten for
    /// [`COALESCE_AFTER_WAITING`]) and its queue, with `len` more bytes, would hold more
    /// than `coalesce_at` (and no more than its budget: past that it is congested).
    fn should_coalesce(&self, conn: ConnId, len: usize, coalesce_at: usize) -> bool {
        self.sessions.get(&conn).is_some_and(|session| {
            let queued = session.queued_bytes().saturating_add(len);
            !session.is_congested()
                && session.unwritten_since().is_some_and(|since| {
                    self.now.saturating_duration_since(since) >= COALESCE_AFTER_WAITING
                })
                && queued > coalesce_at
                && queued <= self.send_budget
        })
    }

    /// Sends one batch frame to every live subscriber of `machine` that is caught up (a
    /// queued one gets it in its top-up, before its connection is written); they are
    /// queued at the batch's position afterwards. Connections that cross their budget
    /// are collected in `congested`; a subscriber that is behind with a queue that
    /// outweighs a fresh snapshot ([`should_coalesce`](Self::should_coalesce)) is
    /// collected in `coalesced` instead: its queued batches are replaced by the world's
    /// latest state (this batch included), see [`Stats::coalesced`].
    fn fan_out_batch(&mut self, machine: &mut ReplicaMachine, frame: &Bytes) {
        let coalesce_at = self.coalesce_at(machine);
        let position = machine.replica().position();
        for (conn, state) in machine.subscribers_mut() {
            match *state {
                SubscriberState::Live => {}
                SubscriberState::Queued(_) | SubscriberState::Pending => continue,
                SubscriberState::NeedsResync => {
                    self.stats.batches_dropped += 1;
                    continue;
                }
            }
            if self.should_coalesce(*conn, frame.len(), coalesce_at) {
                self.coalesced.push(*conn);
                continue;
            }
            match self.send(*conn, frame.clone(), Traffic::Batch) {
                Offer::Accepted => {
                    if let Some(position) = position {
                        *state = SubscriberState::Queued(position);
                    }
                }
                Offer::Dropped { newly_congested } => {
                    *state = SubscriberState::NeedsResync;
                    if newly_congested {
                        self.congested.push(*conn);
                    }
                }
                Offer::Overloaded => {}
            }
        }
    }

    /// Adds what `conn`'s subscription to `machine` is owed before its connection is
    /// written ([`ReplicaMachine::top_up`]), or, when that would make a queue that is
    /// behind outweigh a fresh snapshot, collects it in `coalesced`.
    fn top_up(&mut self, machine: &mut ReplicaMachine, conn: ConnId) {
        let coalesce_at = self.coalesce_at(machine);
        let (bytes, traffic, count) = match machine.top_up(conn) {
            TopUp::Nothing => return,
            TopUp::Batches { frames, count } => (frames, Traffic::Batch, count),
            TopUp::Snapshot(frames) => (frames, Traffic::CatchUp, 0),
        };
        if traffic == Traffic::Batch && self.should_coalesce(conn, bytes.len(), coalesce_at) {
            self.coalesced.push(conn);
            return;
        }
        match self.send(conn, bytes, traffic) {
            Offer::Accepted if traffic == Traffic::CatchUp => self.stats.resyncs += 1,
            // `send` counted one.
            Offer::Accepted => self.stats.batches_forwarded += count.saturating_sub(1),
            Offer::Dropped { newly_congested } => {
                // `send` counted one (a snapshot in place of batches counts as one).
                self.stats.batches_dropped += count.saturating_sub(1);
                machine.mark_needs_resync(conn);
                if newly_congested {
                    self.congested.push(conn);
                }
            }
            Offer::Overloaded => {}
        }
    }

    /// Sends a complete snapshot to every pending and live subscriber of `machine`.
    fn fan_out_snapshot(&mut self, machine: &mut ReplicaMachine, frames: &Bytes) {
        for (conn, state) in machine.subscribers_mut() {
            if *state == SubscriberState::NeedsResync {
                continue;
            }
            *state = SubscriberState::Live;
            self.send(*conn, frames.clone(), Traffic::Snapshot);
        }
    }
}

/// The replica machine of `world`: the directory's or a game world's.
fn machine_of<'a>(
    factory: &'a mut Factory,
    directory: &'a mut Directory,
    world: &WorldId,
) -> Option<&'a mut ReplicaMachine> {
    if *world == WorldId::DIRECTORY {
        Some(directory.machine_mut())
    } else {
        factory.get_mut(world)
    }
}

/// A copy of `world` in an allocation of its own: ids decoded from a frame share the
/// buffer the frame was read into, which a long-lived id would keep alive.
fn compact_world_id(world: WorldId) -> WorldId {
    WorldId::new(world.as_str()).unwrap_or(world)
}

/// The HMAC key of session tokens, with the secret it was made from (a checkpoint carries
/// the secret and makes the key again).
#[derive(Debug)]
struct TokenMac {
    secret: crate::config::TokenKey,
    key: ring::hmac::Key,
}

impl TokenMac {
    fn new(secret: &crate::config::TokenKey) -> Self {
        Self {
            secret: secret.clone(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        }
    }
}

impl serde::Serialize for TokenMac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.secret.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for TokenMac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::config::TokenKey::deserialize(d).map(|secret| Self::new(&secret))
    }
}

/// Bytes of the session id at the start of a token.
const TOKEN_ID_LEN: usize = 8;
/// A token: the session id and its HMAC-SHA256 tag.
const TOKEN_LEN: usize = TOKEN_ID_LEN + 32;

/// A session token: the session id (8 bytes, big-endian) and `HMAC-SHA256(key, id)`.
fn make_token(key: &ring::hmac::Key, session: SessionId) -> Bytes {
    let id = session.0.to_be_bytes();
    let tag = ring::hmac::sign(key, &id);
    let mut token = Vec::with_capacity(TOKEN_LEN);
    token.extend_from_slice(&id);
    token.extend_from_slice(tag.as_ref());
    Bytes::from(token)
}

/// The session id of a token made by [`make_token`] with the same key (on any front-end
/// of the fleet), or `None` if its tag does not verify (checked in constant time).
fn verify_token(key: &ring::hmac::Key, token: &[u8]) -> Option<SessionId> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let (id, tag) = token.split_at(TOKEN_ID_LEN);
    ring::hmac::verify(key, id, tag).ok()?;
    let id: [u8; TOKEN_ID_LEN] = id.try_into().ok()?;
    Some(SessionId(u64::from_be_bytes(id)))
}

/// Why `session` may not act in `world` at `unix_now` (for a refusal's text).
fn not_allowed_text(session: &Session, world: &WorldId, unix_now: Option<u64>) -> String {
    match session.grant_for(world) {
        None => format!("no join token for {world} on this connection"),
        Some(grant) if !grant.is_valid_at(unix_now) => {
            format!("the join token for {world} has expired")
        }
        Some(grant) => format!("the join token for {world} is an {} token", grant.role),
    }
}

/// Capacity of the output queue kept once it is empty; a larger one is freed.
const OUTPUTS_KEPT_CAPACITY: usize = 4096;

/// All the machines of one front-end, and the queue of outputs for its shell.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Frontend {
    config: FrontendConfig,
    token_key: TokenMac,
    rng: SeededRng,
    sessions: SessionMap,
    links: HashMap<GameId, GameLink, IdBuildHasher>,
    router: Router,
    factory: Factory,
    directory: Directory,
    outputs: VecDeque<Output>,
    stats: Stats,
    congested: Vec<ConnId>,
    /// Connections whose queued batches are to be replaced by the latest state (see
    /// [`FrontendConfig::coalesce_above`]), at the end of the fan-out.
    #[serde(default)]
    coalesced: Vec<ConnId>,
    /// Connections past their hard limit, closed at the end of the input.
    overloaded: Vec<ConnId>,
    /// True while the shell does not read clients (between
    /// [`Input::ClientReadingPaused`] and [`Input::ClientReadingResumed`]).
    client_reading_paused: bool,
    /// The sessions' keep-alive deadlines (a lazy heap: see [`Deadlines`]).
    deadlines: Deadlines<ConnId>,
    /// A client's keep-alive until its `Welcome`: no pings, closed after the handshake
    /// timeout.
    client_keep_alive: KeepAliveConfig,
    /// A welcomed client's keep-alive: pings when quiet, closed after the frame-silence
    /// backstop.
    open_client_keep_alive: KeepAliveConfig,
    /// Worlds whose game link was lost, kept until the instant given for a game server to
    /// announce them again (see [`FrontendConfig::game_resume_grace`]).
    orphans: BTreeMap<WorldId, Instant>,
    /// The wall clock's offset from `now`: Unix-epoch milliseconds at `now` = zero, from
    /// the last [`Input::WallClock`] (`None` before the first).
    unix_offset_millis: Option<i64>,
}

impl Frontend {
    /// A front-end with no connections. `seed` drives session ids, tokens, and the
    /// directory's epoch (the shell draws it from the operating system).
    pub fn new(config: &FrontendConfig, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let directory = Directory::new(rng.next_u64(), config.ring, config.max_frame_len);
        let router = Router::with_hash_key(rng.next_u64());
        let mut factory = Factory::new(config.ring, config.max_frame_len);
        factory.set_max_snapshot_bytes(config.max_snapshot_bytes);
        factory.set_grace_period(config.replica_grace_period);
        Self {
            config: config.clone(),
            token_key: TokenMac::new(&config.token_key),
            rng,
            sessions: HashMap::default(),
            links: HashMap::default(),
            router,
            factory,
            directory,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            congested: Vec::new(),
            coalesced: Vec::new(),
            overloaded: Vec::new(),
            client_reading_paused: false,
            deadlines: Deadlines::new(),
            client_keep_alive: KeepAliveConfig::new(
                config.client_ping_interval,
                config.client_handshake_timeout,
            ),
            open_client_keep_alive: KeepAliveConfig::new(
                config.client_ping_interval,
                config.client_idle_timeout,
            ),
            orphans: BTreeMap::new(),
            unix_offset_millis: None,
        }
    }

    /// The machine's whole state as bytes (postcard): every session, link, replica, queue,
    /// timer and counter, and the outputs not taken yet. [`Frontend::restore`] makes the
    /// same machine again: fed the same inputs, it gives the same outputs. Rotating
    /// recordings start each file with one.
    pub fn checkpoint(&self) -> Result<Vec<u8>, FrontendError> {
        postcard::to_stdvec(self)
            .map_err(|error| FrontendError::Record(format!("writing a checkpoint: {error}")))
    }

    /// The machine a [`checkpoint`](Frontend::checkpoint) was taken of.
    pub fn restore(checkpoint: &[u8]) -> Result<Self, FrontendError> {
        postcard::from_bytes(checkpoint)
            .map_err(|error| FrontendError::Record(format!("reading a checkpoint: {error}")))
    }

    /// The configuration.
    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// Handles one input at `now` (time since the front-end started). Outputs queue up
    /// for [`poll_output`](Self::poll_output).
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::ClientConnected(conn) => {
                let mut session = Session::new(conn, now, self.client_keep_alive);
                session.limit_inputs(
                    self.config.max_inputs_per_second,
                    self.config.input_burst,
                    now,
                );
                if self.client_reading_paused {
                    session.reading_paused();
                }
                self.deadlines
                    .schedule(conn, session.deadline(), &mut session.timer_at);
                self.sessions.insert(conn, session);
            }
            Input::ClientFrame(conn, frame) => {
                self.stats.client_frames_in += 1;
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return;
                };
                let event = session.handle_frame(now, &frame);
                self.on_session_event(now, conn, event);
            }
            Input::ClientMalformed(conn, error) => {
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return;
                };
                let event = session.handle_malformed(&error);
                self.on_session_event(now, conn, event);
            }
            Input::ClientWriting(conn) => self.top_up(now, conn),
            Input::ClientDrained(conn, bytes) => self.on_drained(now, conn, bytes),
            Input::ClientDiscarded(conn, bytes) => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    let before = session.queued_bytes();
                    session.discarded(bytes);
                    let released = before - session.queued_bytes();
                    self.stats.bytes_queued =
                        self.stats.bytes_queued.saturating_sub(released as u64);
                }
            }
            Input::ClientClosed(conn) => self.remove_session(now, conn),
            Input::GameConnected(game) => {
                let link = GameLink::new(game, now, self.config.game_idle_timeout);
                let hello = link.hello(&self.config.server_id);
                self.links.insert(game, link);
                self.send_game(now, game, hello);
            }
            Input::GameFrame(game, frame) => {
                self.stats.game_frames_in += 1;
                // Batches and snapshots (and keys and values decoded from them) are kept
                // in the replica past this input: give them an allocation of their own,
                // or each would pin the whole read buffer it arrived in.
                let frame = match frame.frame_type() {
                    FrameType::ChangeBatch | FrameType::Snapshot => frame.to_compact(),
                    _ => frame,
                };
                let Some(link) = self.links.get_mut(&game) else {
                    return;
                };
                let event = link.handle_frame(&frame);
                self.on_game_event(now, game, event, frame);
            }
            Input::GameMalformed(game, error) => {
                let Some(link) = self.links.get_mut(&game) else {
                    return;
                };
                let event = link.handle_malformed(&error);
                if let GameLinkEvent::Close {
                    reason,
                    error_frame,
                } = event
                {
                    self.close_game(now, game, reason, error_frame);
                }
            }
            Input::GameClosed(game) => self.remove_game(now, game),
            Input::GameDrained(game, bytes) => {
                if let Some(link) = self.links.get_mut(&game) {
                    link.drained(now, bytes, self.config.max_game_queued_bytes);
                }
            }
            Input::ClientReadingPaused => {
                if !self.client_reading_paused {
                    self.client_reading_paused = true;
                    for session in self.sessions.values_mut() {
                        session.reading_paused();
                    }
                }
            }
            Input::ClientReadingResumed => {
                if self.client_reading_paused {
                    self.client_reading_paused = false;
                    for (conn, session) in &mut self.sessions {
                        session.reading_resumed(now);
                        // The silence deadline is back, earlier than any entry.
                        self.deadlines
                            .schedule(*conn, session.deadline(), &mut session.timer_at);
                    }
                }
            }
            Input::WallClock { unix_millis } => {
                let unix = i64::try_from(unix_millis).unwrap_or(i64::MAX);
                let since_origin = i64::try_from(now.as_nanos() / 1_000_000).unwrap_or(i64::MAX);
                self.unix_offset_millis = Some(unix.saturating_sub(since_origin));
            }
            Input::Timeout => {
                if self.outputs.is_empty() && self.outputs.capacity() > OUTPUTS_KEPT_CAPACITY {
                    // Give a saturation peak's memory back.
                    self.outputs = VecDeque::new();
                }
                self.on_timeout(now);
            }
        }
        if !self.overloaded.is_empty() {
            self.close_overloaded(now);
        }
    }

    /// The next output for the shell, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        // The queue's capacity is kept here (a fan-out to 10,000 observers refills it at
        // once); a saturation peak's memory is given back on the next tick.
        self.outputs.pop_front()
    }

    /// Outputs waiting for [`poll_output`](Self::poll_output); a shell drains them once
    /// this grows large, so the queue never holds many turns of fan-out.
    pub fn pending_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Closes a connection that spent its input budget, with `Error{Overloaded}` saying so.
    fn close_input_flooder(&mut self, now: Instant, conn: ConnId) {
        self.stats.clients_closed_for_input_rate += 1;
        let text = format!(
            "more than {} inputs a second (bursts of {})",
            self.config.max_inputs_per_second, self.config.input_burst
        );
        self.close_overloaded_client(now, conn, text, CloseReason::InputRate);
    }

    /// Closes `conn` with `Error{Overloaded, text}` first.
    fn close_overloaded_client(
        &mut self,
        now: Instant,
        conn: ConnId,
        text: String,
        reason: CloseReason,
    ) {
        let frame = FrontendToClient::Error {
            code: ErrorCode::Overloaded,
            text,
        }
        .encode_to_bytes();
        self.close_client(now, conn, reason, Some(frame));
    }

    /// Closes the connections that went past their hard limit during the last input.
    fn close_overloaded(&mut self, now: Instant) {
        let mut overloaded = std::mem::take(&mut self.overloaded);
        for conn in overloaded.drain(..) {
            self.close_overloaded_client(
                now,
                conn,
                "too much unread output".to_owned(),
                CloseReason::Protocol(ErrorCode::Overloaded),
            );
        }
        if self.overloaded.is_empty() {
            self.overloaded = overloaded;
        }
    }

    /// The counters (gauges computed now).
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.sessions.len() as u64,
            games_ready: self.router.games().count() as u64,
            replicas: self.factory.len() as u64,
            worlds_waiting_for_game: self.orphans.len() as u64,
            ..self.stats
        }
    }

    /// The wall-clock time at `now`, in seconds since the Unix epoch, from the last
    /// [`Input::WallClock`]; `None` before the first.
    pub fn unix_time(&self, now: Instant) -> Option<u64> {
        let offset = self.unix_offset_millis?;
        let since_origin = i64::try_from(now.as_nanos() / 1_000_000).unwrap_or(i64::MAX);
        u64::try_from(offset.saturating_add(since_origin) / 1000).ok()
    }

    /// The session machine of a connection.
    pub fn session(&self, conn: ConnId) -> Option<&Session> {
        self.sessions.get(&conn)
    }

    /// The replica machine of a world (the directory's for `$directory`).
    pub fn replica(&self, world: &WorldId) -> Option<&ReplicaMachine> {
        if *world == WorldId::DIRECTORY {
            Some(self.directory.machine())
        } else {
            self.factory.get(world)
        }
    }

    /// The directory of worlds.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The routing tables.
    pub fn router(&self) -> &Router {
        &self.router
    }

    fn outbox(&mut self, now: Instant) -> (Outbox<'_>, &mut Factory, &mut Directory) {
        (
            Outbox {
                sessions: &mut self.sessions,
                outputs: &mut self.outputs,
                stats: &mut self.stats,
                send_budget: self.config.send_budget,
                max_queued_bytes: self.config.max_queued_bytes,
                coalesce_above: self.config.coalesce_above,
                now,
                congested: &mut self.congested,
                coalesced: &mut self.coalesced,
                overloaded: &mut self.overloaded,
            },
            &mut self.factory,
            &mut self.directory,
        )
    }

    fn send_client(&mut self, now: Instant, conn: ConnId, bytes: Bytes, traffic: Traffic) -> Offer {
        let (mut outbox, _, _) = self.outbox(now);
        let offer = outbox.send(conn, bytes, traffic);
        match offer {
            Offer::Overloaded => self.close_overloaded(now),
            Offer::Dropped {
                newly_congested: true,
            } => {
                self.congested.push(conn);
                self.handle_congestion();
            }
            _ => {}
        }
        offer
    }

    fn send_game(&mut self, now: Instant, game: GameId, bytes: Bytes) {
        let Some(link) = self.links.get_mut(&game) else {
            return;
        };
        link.note_sent(now, bytes.len(), self.config.max_game_queued_bytes);
        self.stats.game_frames_out += 1;
        self.outputs.push_back(Output::SendToGame(game, bytes));
    }

    fn on_session_event(&mut self, now: Instant, conn: ConnId, event: SessionEvent) {
        match event {
            SessionEvent::Nothing => {}
            SessionEvent::Reply(bytes) => {
                self.send_client(now, conn, bytes, Traffic::Control);
            }
            SessionEvent::Hello {
                session_token,
                client_name,
            } => self.open_session(now, conn, session_token, client_name),
            SessionEvent::Subscribe { world, since } => self.subscribe(now, conn, world, since),
            SessionEvent::Unsubscribe { world } => {
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return;
                };
                if session.remove_subscription(&world) {
                    self.detach(now, conn, &world);
                }
            }
            SessionEvent::Input { world, payload } => {
                let unix_now = self.unix_time(now);
                let Some(session) = self.sessions.get_mut(&conn) else {
                    return;
                };
                if !session.take_input(now) {
                    return self.close_input_flooder(now, conn);
                }
                let Some(session_id) = session.session_id() else {
                    return;
                };
                let reserved = world.as_str().starts_with('$');
                // With join keys, only a session holding an unexpired player token for the
                // world may send it inputs (a scan of a few grants, no allocation).
                if !reserved
                    && !self.config.join_keys.is_empty()
                    && !session.allows(&world, unix_now, true)
                {
                    let text = not_allowed_text(session, &world, unix_now);
                    self.stats.inputs_not_allowed += 1;
                    let frame = FrontendToClient::Refused {
                        request: FrameType::Input,
                        world: Some(world),
                        code: ErrorCode::NotAllowed,
                        text: format!("input dropped: {text}"),
                    }
                    .encode_to_bytes();
                    self.send_client(now, conn, frame, Traffic::Control);
                    return;
                }
                match self.router.route_input(session_id, world.clone(), payload) {
                    Some((game, frame)) => {
                        self.stats.inputs_routed += 1;
                        self.send_game(now, game, frame);
                    }
                    // A world of the front-end's own (`$directory`) takes no input: a
                    // client bug, counted, not answered (an `Unsubscribed` would end the
                    // client's subscription to a world that exists).
                    None if reserved => self.stats.inputs_dropped += 1,
                    // No game server hosts it: the input cannot be delivered, and the
                    // client is told so rather than left to believe it was.
                    None => {
                        self.stats.inputs_dropped += 1;
                        let frame = self.unhosted(world, "input dropped: ");
                        self.send_client(now, conn, frame, Traffic::Control);
                    }
                }
            }
            SessionEvent::Join { token } => self.join(now, conn, &token),
            SessionEvent::Close {
                reason,
                error_frame,
            } => self.close_client(now, conn, reason, error_frame),
        }
    }

    /// A `Join`: the token is checked ([`crate::join::verify`]) and, if accepted, its
    /// grant recorded on the connection; answered `Joined` or `Refused`. The connection
    /// stays open either way, unless it sends `Join`s past their budget.
    fn join(&mut self, now: Instant, conn: ConnId, token: &Bytes) {
        let unix_now = self.unix_time(now);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if !session.take_join(now) {
            self.stats.clients_closed_for_input_rate += 1;
            let text =
                format!("more than {JOINS_PER_SECOND} joins a second (bursts of {JOIN_BURST})");
            return self.close_overloaded_client(now, conn, text, CloseReason::InputRate);
        }
        let verdict =
            crate::join::verify(&self.config.join_keys, token, unix_now).and_then(|claims| {
                session
                    .grant(
                        claims.world.clone(),
                        claims.role,
                        claims.expires_unix,
                        unix_now,
                    )
                    .map(|()| claims.clone())
                    .map_err(|text| crate::join::Refusal {
                        world: Some(claims.world),
                        text: text.to_owned(),
                    })
            });
        let frame = match verdict {
            Ok(claims) => {
                log::debug!(
                    "{conn:?} joined {} as {} ({}) until {}",
                    claims.world,
                    claims.role,
                    claims.subject,
                    claims.expires_unix
                );
                self.stats.joins_accepted += 1;
                FrontendToClient::Joined {
                    world: claims.world,
                    role: claims.role,
                    expires_unix: claims.expires_unix,
                }
            }
            Err(refusal) => {
                log::debug!("{conn:?}: join refused: {}", refusal.text);
                self.stats.joins_refused += 1;
                FrontendToClient::Refused {
                    request: FrameType::Join,
                    world: refusal.world,
                    code: ErrorCode::NotAllowed,
                    text: refusal.text,
                }
            }
        }
        .encode_to_bytes();
        self.send_client(now, conn, frame, Traffic::Control);
    }

    /// The `Unsubscribed` answer about a world no game server hosts (to a `Subscribe`, or
    /// to an `Input` with `what` = "input dropped: "). Only a front-end that hears from a
    /// game server can say a world does not exist; one still connecting (or reconnecting)
    /// to its game servers says "try again" instead, so a client that subscribes early
    /// keeps waiting.
    fn unhosted(&self, world: WorldId, what: &str) -> Bytes {
        let (code, text) = if self.orphans.contains_key(&world) {
            (
                ErrorCode::Unavailable,
                "the world's game server is reconnecting",
            )
        } else if self.router.games().next().is_some() {
            (ErrorCode::UnknownWorld, "no game server hosts this world")
        } else {
            (ErrorCode::Unavailable, "no game server is connected yet")
        };
        FrontendToClient::Unsubscribed {
            world,
            code,
            text: format!("{what}{text}"),
        }
        .encode_to_bytes()
    }

    fn open_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        token: Option<Bytes>,
        client_name: String,
    ) {
        let resumed_id = token
            .as_ref()
            .and_then(|token| verify_token(&self.token_key.key, token));
        let (session_id, token, resumed) = match (resumed_id, token) {
            (Some(id), Some(token)) => (id, token, true),
            _ => {
                let id = SessionId(self.rng.next_u64());
                (id, make_token(&self.token_key.key, id), false)
            }
        };
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let welcome = session.open(
            session_id,
            token,
            resumed,
            &self.config.server_id,
            self.open_client_keep_alive,
        );
        self.send_client(now, conn, welcome, Traffic::Control);
        if let Some(old) = self.router.attach_session(session_id, conn) {
            log::info!("session {session_id:?} moved from {old:?} to {conn:?}");
            self.close_taken_over(now, old);
        }
        let games: Vec<GameId> = self.router.games().collect();
        for game in games {
            let frame = FrontendToGame::SessionOpened {
                session: session_id,
                client_name: client_name.clone(),
            }
            .encode_to_bytes();
            self.send_game(now, game, frame);
        }
    }

    fn subscribe(&mut self, now: Instant, conn: ConnId, world: WorldId, since: Option<Position>) {
        // The id decoded from the frame shares the connection's whole receive buffer:
        // keep the replica's copy (or a compact one) instead, so an idle subscription does
        // not pin kilobytes.
        let world = match self.replica(&world) {
            Some(machine) => machine.world().clone(),
            None => compact_world_id(world),
        };
        let unix_now = self.unix_time(now);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        // With join keys and no anonymous observers, watching a game world needs a token.
        if !self.config.join_keys.is_empty()
            && !self.config.anonymous_observers
            && !world.is_reserved()
            && !session.allows(&world, unix_now, false)
        {
            let text = not_allowed_text(session, &world, unix_now);
            self.stats.subscribes_not_allowed += 1;
            let frame = FrontendToClient::Unsubscribed {
                world,
                code: ErrorCode::NotAllowed,
                text,
            }
            .encode_to_bytes();
            self.send_client(now, conn, frame, Traffic::Control);
            return;
        }
        let congested = session.is_congested();
        let serve = if world == WorldId::DIRECTORY {
            session.add_subscription(world.clone());
            self.directory
                .machine_mut()
                .subscribe(conn, since, congested)
        } else {
            match self.router.host_of(&world) {
                Some(game) => {
                    session.add_subscription(world.clone());
                    let (event, serve) = self.factory.attach(&world, game, conn, since, congested);
                    if let Some(FactoryEvent::Created { game, frame, .. }) = event {
                        self.send_game(now, game, frame);
                    }
                    serve
                }
                // A world waiting for its game server to come back: served from its
                // replica, like the observers it kept.
                None if self.orphans.contains_key(&world) && self.factory.get(&world).is_some() => {
                    session.add_subscription(world.clone());
                    self.factory
                        .attach_existing(&world, conn, since, congested)
                        .unwrap_or(Serve::Pending)
                }
                None => {
                    let frame = self.unhosted(world, "");
                    self.send_client(now, conn, frame, Traffic::Control);
                    return;
                }
            }
        };
        match serve {
            Serve::Nothing | Serve::Pending => {}
            Serve::Snapshot(frames) => {
                self.send_client(now, conn, frames, Traffic::Snapshot);
            }
            Serve::Batches(frames) => {
                for frame in frames {
                    if let Offer::Dropped { .. } =
                        self.send_client(now, conn, frame, Traffic::Batch)
                    {
                        // Congested: the resync snapshot will cover the rest.
                        break;
                    }
                }
            }
        }
    }

    /// Removes `conn` from `world`'s machine; the machine is destroyed once it has had no
    /// subscriber for the grace period ([`Factory::detach`], [`Factory::reap`]).
    fn detach(&mut self, now: Instant, conn: ConnId, world: &WorldId) {
        if *world == WorldId::DIRECTORY {
            self.directory.machine_mut().unsubscribe(conn);
            return;
        }
        if let Some(FactoryEvent::Destroyed { game, frame, .. }) =
            self.factory.detach(world, conn, now)
        {
            self.send_game(now, game, frame);
        }
    }

    /// Closes `conn`, whose session was resumed on another connection (here or on another
    /// front-end), with `Error{SessionMoved}`: its client learns why (PROTOCOL.md
    /// section 2).
    fn close_taken_over(&mut self, now: Instant, conn: ConnId) {
        self.stats.sessions_taken_over += 1;
        let error = FrontendToClient::Error {
            code: ErrorCode::SessionMoved,
            text: "session resumed on another connection".to_owned(),
        }
        .encode_to_bytes();
        self.close_client(now, conn, CloseReason::SessionMoved, Some(error));
    }

    fn close_client(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: CloseReason,
        error_frame: Option<Bytes>,
    ) {
        if !self.sessions.contains_key(&conn) {
            return;
        }
        if let CloseReason::Protocol(_) = reason {
            self.stats.protocol_errors += 1;
        }
        if let Some(frame) = error_frame {
            self.outputs.push_back(Output::SendToClient {
                conn,
                bytes: frame,
                droppable: false,
            });
        }
        self.outputs.push_back(Output::CloseClient(conn, reason));
        self.remove_session(now, conn);
    }

    fn remove_session(&mut self, now: Instant, conn: ConnId) {
        let Some(mut session) = self.sessions.remove(&conn) else {
            return;
        };
        self.stats.bytes_queued = self
            .stats
            .bytes_queued
            .saturating_sub(session.queued_bytes() as u64);
        for world in session.take_subscriptions() {
            self.detach(now, conn, &world);
        }
        if let Some(id) = session.session_id()
            && self.router.detach_session(id, conn)
        {
            let games: Vec<GameId> = self.router.games().collect();
            for game in games {
                let frame = FrontendToGame::SessionClosed { session: id }.encode_to_bytes();
                self.send_game(now, game, frame);
            }
        }
    }

    fn on_drained(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        let watermark = self.config.resync_watermark();
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let before = session.queued_bytes();
        let recovered = session.drained(bytes, watermark);
        let released = before - session.queued_bytes();
        self.stats.bytes_queued = self.stats.bytes_queued.saturating_sub(released as u64);
        if !recovered {
            return;
        }
        let worlds: Vec<WorldId> = session.subscriptions().iter().cloned().collect();
        for world in worlds {
            let (mut outbox, factory, directory) = self.outbox(now);
            let Some(machine) = machine_of(factory, directory, &world) else {
                continue;
            };
            if let Some(frames) = machine.resync(conn) {
                outbox.stats.resyncs += 1;
                outbox.send(conn, frames, Traffic::Snapshot);
            }
        }
    }

    /// Adds what each of `conn`'s subscriptions is owed, before the shell writes it
    /// ([`Input::ClientWriting`]).
    fn top_up(&mut self, now: Instant, conn: ConnId) {
        let mut next = self
            .sessions
            .get(&conn)
            .and_then(|session| session.subscriptions().first().cloned());
        while let Some(world) = next {
            let (mut outbox, factory, directory) = self.outbox(now);
            if let Some(machine) = machine_of(factory, directory, &world) {
                outbox.top_up(machine, conn);
            }
            // The worlds one at a time (no list allocated per write).
            next = self
                .sessions
                .get(&conn)
                .and_then(|session| session.subscriptions().after(&world).cloned());
        }
        self.after_fan_out(now);
    }

    /// Handles the connections a fan-out found congested or to coalesce.
    fn after_fan_out(&mut self, now: Instant) {
        if !self.congested.is_empty() {
            self.handle_congestion();
        }
        if !self.coalesced.is_empty() {
            self.handle_coalesced(now);
        }
    }

    /// Connections whose queues outgrew a fresh snapshot: the shell drops their queued
    /// batches and snapshots (of every world: what is dropped is not told apart), and each
    /// live subscription of theirs gets its world's latest state in their place.
    fn handle_coalesced(&mut self, now: Instant) {
        let coalesced = std::mem::take(&mut self.coalesced);
        for conn in &coalesced {
            let Some(session) = self.sessions.get(conn) else {
                continue;
            };
            if session.is_congested() {
                continue; // resynced once it drains
            }
            let worlds: Vec<WorldId> = session.subscriptions().iter().cloned().collect();
            self.stats.coalesced += 1;
            self.outputs.push_back(Output::DropQueuedBatches(*conn));
            for world in worlds {
                let (mut outbox, factory, directory) = self.outbox(now);
                let Some(machine) = machine_of(factory, directory, &world) else {
                    continue;
                };
                if let Some(frames) = machine.latest_state(*conn) {
                    outbox.send(*conn, frames, Traffic::Snapshot);
                }
            }
        }
        self.coalesced = coalesced;
        self.coalesced.clear();
    }

    /// Connections that just crossed their budget: drop what the shell has queued and
    /// mark every subscription of theirs for a resync.
    fn handle_congestion(&mut self) {
        let congested = std::mem::take(&mut self.congested);
        for conn in &congested {
            let Some(session) = self.sessions.get(conn) else {
                continue;
            };
            self.stats.congestions += 1;
            self.outputs.push_back(Output::DropQueuedBatches(*conn));
            for world in session.subscriptions() {
                if let Some(machine) = machine_of(&mut self.factory, &mut self.directory, world) {
                    machine.mark_needs_resync(*conn);
                }
            }
        }
        self.congested = congested;
        self.congested.clear();
    }

    fn on_game_event(&mut self, now: Instant, game: GameId, event: GameLinkEvent, frame: RawFrame) {
        match event {
            GameLinkEvent::Nothing => {}
            GameLinkEvent::Welcomed => {
                self.router.add_game(game);
                for (session, conn) in self.router.sessions() {
                    let client_name = self
                        .sessions
                        .get(&conn)
                        .map(|s| s.client_name().to_owned())
                        .unwrap_or_default();
                    // Held, not opened: a link coming up is not a resume, and must not
                    // take a session back from a front-end its client moved to meanwhile.
                    let frame = FrontendToGame::SessionHeld {
                        session,
                        client_name,
                    }
                    .encode_to_bytes();
                    self.send_game(now, game, frame);
                }
            }
            GameLinkEvent::Message(message) => self.on_game_message(now, game, message, frame),
            GameLinkEvent::Close {
                reason,
                error_frame,
            } => self.close_game(now, game, reason, error_frame),
        }
    }

    fn on_game_message(
        &mut self,
        now: Instant,
        game: GameId,
        message: GameToFrontend,
        frame: RawFrame,
    ) {
        match message {
            GameToFrontend::WorldAdded { world, info } => {
                let world = compact_world_id(world);
                if world.is_reserved() {
                    log::warn!(
                        "game link {game:?} announced reserved world {}: ignored",
                        world.as_str()
                    );
                    return;
                }
                // Copied: the description is kept as long as it is announced, not the frame.
                let info = Bytes::copy_from_slice(&info);
                if let WorldChange::Moved { from, to } =
                    self.router.world_added(game, world.clone(), info)
                {
                    self.move_world(now, &world, from, to);
                }
                if self.orphans.contains_key(&world) {
                    self.resume_orphan(now, &world);
                }
                // The directory shows the host's description (a fallback's refresh
                // changes nothing there).
                self.update_directory(now, &world);
            }
            GameToFrontend::WorldRemoved { world } => {
                let change = self.router.world_removed(game, &world);
                if matches!(change, WorldChange::Removed | WorldChange::Moved { .. }) {
                    self.update_directory(now, &world);
                }
                if let WorldChange::Moved { from, to } = change {
                    self.fall_back(now, &world, from, to, "stopped announcing it");
                }
                let fed_by_game =
                    self.factory.get(&world).and_then(ReplicaMachine::host) == Some(game);
                if change == WorldChange::Removed || fed_by_game {
                    self.end_world(now, &world, ErrorCode::UnknownWorld, "world removed");
                }
            }
            GameToFrontend::Snapshot {
                world,
                part,
                snapshot,
            } => {
                let (mut outbox, factory, _) = self.outbox(now);
                let Some(machine) = factory.get_mut(&world).filter(|m| m.host() == Some(game))
                else {
                    return;
                };
                match machine.apply_snapshot_part(frame.into_bytes(), part, snapshot) {
                    Ok(SnapshotProgress::Applied(frames)) => {
                        outbox.fan_out_snapshot(machine, &frames)
                    }
                    Ok(SnapshotProgress::Incomplete | SnapshotProgress::Stale) => {}
                    Err(error) => {
                        let frame = FrontendToGame::Error {
                            code: error.code(),
                            text: error.to_string(),
                        }
                        .encode_to_bytes();
                        self.close_game(
                            now,
                            game,
                            CloseReason::Protocol(error.code()),
                            Some(frame),
                        );
                    }
                }
            }
            GameToFrontend::ChangeBatch { world, batch } => {
                let (mut outbox, factory, _) = self.outbox(now);
                let Some(machine) = factory.get_mut(&world).filter(|m| m.host() == Some(game))
                else {
                    return;
                };
                match machine.apply_batch(frame.into_bytes(), batch) {
                    BatchOutcome::Forward(frame) => {
                        outbox.fan_out_batch(machine, &frame);
                        self.after_fan_out(now);
                    }
                    BatchOutcome::Ignored => {}
                    BatchOutcome::Resubscribe(since) => {
                        let frame = FrontendToGame::Subscribe { world, since }.encode_to_bytes();
                        self.send_game(now, game, frame);
                    }
                }
            }
            GameToFrontend::Output {
                world,
                session,
                payload,
            } => match self.router.route_output(session, world, payload) {
                Some((conn, frame)) => {
                    self.stats.outputs_routed += 1;
                    self.send_client(now, conn, frame, Traffic::Output);
                }
                None => self.stats.outputs_dropped += 1,
            },
            GameToFrontend::SessionMoved { session } => {
                // Resumed on another front-end: this connection no longer carries it.
                if let Some(conn) = self.router.conn_of(session) {
                    log::info!("session {session:?} moved to another front-end: closing {conn:?}");
                    self.close_taken_over(now, conn);
                }
            }
            // Handshake, keep-alive and errors are the link machine's.
            GameToFrontend::Welcome { .. }
            | GameToFrontend::Ping { .. }
            | GameToFrontend::Pong { .. }
            | GameToFrontend::Error { .. } => {}
        }
    }

    /// Makes game server `game` feed `world`'s replica: it becomes the host and gets
    /// `Subscribe{since: the replica's position}` (the subscribers get what they missed).
    /// False when the world has no replica.
    fn feed_world_from(&mut self, now: Instant, world: &WorldId, game: GameId) -> bool {
        let Some(machine) = self.factory.get_mut(world) else {
            return false;
        };
        machine.set_host(Some(game));
        let since = machine.replica().position();
        let frame = FrontendToGame::Subscribe {
            world: world.clone(),
            since,
        }
        .encode_to_bytes();
        self.send_game(now, game, frame);
        true
    }

    /// A world moved from game server `from` to `to`: feed its replica from `to`.
    fn move_world(&mut self, now: Instant, world: &WorldId, from: GameId, to: GameId) {
        if !self.feed_world_from(now, world, to) {
            return;
        }
        self.send_game(
            now,
            from,
            FrontendToGame::Unsubscribe {
                world: world.clone(),
            }
            .encode_to_bytes(),
        );
    }

    /// A world's host `from` stopped announcing it and it fell back to `to`, another game
    /// server announcing it: the replica resubscribes upstream to `to` (its subscribers
    /// stay, and get what they missed from the new host).
    fn fall_back(&mut self, now: Instant, world: &WorldId, from: GameId, to: GameId, why: &str) {
        log::info!(
            "world {}: host game link {from:?} {why}; falling back to game link {to:?}",
            world.as_str()
        );
        self.move_world(now, world, from, to);
    }

    /// Makes `world`'s directory entry show its host's description, or removes it when no
    /// game server announces the world any more.
    fn update_directory(&mut self, now: Instant, world: &WorldId) {
        let batch = match self.router.host_info(world) {
            Some(info) => self.directory.set(world, info.clone()),
            None => self.directory.remove(world),
        };
        if let Some(batch) = batch {
            self.fan_out_directory(now, batch);
        }
    }

    fn fan_out_directory(&mut self, now: Instant, batch: Bytes) {
        let (mut outbox, _, directory) = self.outbox(now);
        outbox.fan_out_batch(directory.machine_mut(), &batch);
        self.after_fan_out(now);
    }

    /// Destroys `world`'s replica and tells its subscribers with `Unsubscribed{code}`.
    fn end_world(&mut self, now: Instant, world: &WorldId, code: ErrorCode, text: &str) {
        let Some(machine) = self.factory.destroy(world) else {
            return;
        };
        let frame = FrontendToClient::Unsubscribed {
            world: world.clone(),
            code,
            text: text.to_owned(),
        }
        .encode_to_bytes();
        let mut conns: Vec<ConnId> = machine.subscriber_conns().collect();
        conns.sort_unstable();
        for conn in conns {
            if let Some(session) = self.sessions.get_mut(&conn) {
                session.remove_subscription(world);
            }
            self.send_client(now, conn, frame.clone(), Traffic::Control);
        }
    }

    fn close_game(
        &mut self,
        now: Instant,
        game: GameId,
        reason: CloseReason,
        error_frame: Option<Bytes>,
    ) {
        if !self.links.contains_key(&game) {
            return;
        }
        if let CloseReason::Protocol(_) = reason {
            self.stats.protocol_errors += 1;
        }
        if let Some(frame) = error_frame {
            self.send_game(now, game, frame);
        }
        self.outputs.push_back(Output::CloseGame(game, reason));
        self.remove_game(now, game);
    }

    fn remove_game(&mut self, now: Instant, game: GameId) {
        if self.links.remove(&game).is_none() {
            return;
        }
        log::info!("game link {game:?} gone");
        let changes = self.router.remove_game(game);
        for (world, change) in &changes {
            if matches!(change, WorldChange::Removed | WorldChange::Moved { .. }) {
                self.update_directory(now, world);
            }
        }
        for (world, change) in &changes {
            if let WorldChange::Moved { from, to } = *change {
                self.fall_back(now, world, from, to, "is gone");
            }
        }
        // Replicas still fed by the lost game server are of worlds nobody announces now.
        // They wait, with their observers, for a game server to announce them again (the
        // link reconnects after a blip, or the server restarts); past the grace they end.
        let grace = self.config.game_resume_grace;
        for world in self.factory.worlds_of(game) {
            if grace.is_zero() {
                self.end_world(
                    now,
                    &world,
                    ErrorCode::Unavailable,
                    "game server unavailable",
                );
            } else if let Some(machine) = self.factory.get_mut(&world) {
                machine.set_host(None);
                self.orphans.insert(world, now + grace);
                self.stats.worlds_kept_after_game_loss += 1;
            }
        }
    }

    /// A game server (re)announced `world`, which waited for one since its game link was
    /// lost: its replica resubscribes upstream from its position, and its observers get
    /// what they missed (batches from the game server's ring, or a snapshot).
    fn resume_orphan(&mut self, now: Instant, world: &WorldId) {
        let Some(game) = self.router.host_of(world) else {
            return;
        };
        if self.orphans.remove(world).is_none() {
            return;
        }
        log::info!(
            "world {}: announced again by game link {game:?}; resubscribing",
            world.as_str()
        );
        if self.feed_world_from(now, world, game) {
            self.stats.worlds_resumed += 1;
        }
    }

    /// Ends the worlds that waited for a game server past the grace.
    fn expire_orphans(&mut self, now: Instant) {
        let expired: Vec<WorldId> = self
            .orphans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(world, _)| world.clone())
            .collect();
        for world in expired {
            self.orphans.remove(&world);
            self.end_world(
                now,
                &world,
                ErrorCode::Unavailable,
                "game server unavailable",
            );
        }
    }

    /// What is due at `now`: sessions' keep-alives (from the deadline heap, only those
    /// due), game links' keep-alives and stalls, idle replicas past their grace period.
    fn on_timeout(&mut self, now: Instant) {
        while let Some((conn, at)) = self.deadlines.pop_due(now) {
            let Some(session) = self.sessions.get_mut(&conn) else {
                continue; // closed since
            };
            if !Deadlines::<ConnId>::is_live(at, &mut session.timer_at) {
                continue; // scheduled again earlier; that entry was handled
            }
            let event = session.on_timeout(now);
            if event != SessionEvent::Nothing {
                self.on_session_event(now, conn, event);
            }
            if let Some(session) = self.sessions.get_mut(&conn) {
                self.deadlines
                    .schedule(conn, session.deadline(), &mut session.timer_at);
            }
        }
        if self.deadlines.compact_if_sparse(self.sessions.len()) {
            for (conn, session) in &mut self.sessions {
                session.timer_at = None;
                self.deadlines
                    .schedule(*conn, session.deadline(), &mut session.timer_at);
            }
        }
        let max_queued = self.config.max_game_queued_bytes;
        let mut events: Vec<(GameId, GameLinkEvent)> = Vec::new();
        for (game, link) in &mut self.links {
            if link.deadline(max_queued).is_some_and(|at| at <= now) {
                let event = link.on_timeout(now, max_queued);
                if event != GameLinkEvent::Nothing {
                    events.push((*game, event));
                }
            }
        }
        events.sort_unstable_by_key(|(game, _)| *game);
        for (game, event) in events {
            // A stalled link is the only thing a game link's timeout does.
            if let GameLinkEvent::Close {
                reason,
                error_frame,
            } = event
            {
                if reason == CloseReason::Protocol(ErrorCode::Overloaded) {
                    self.stats.game_links_stalled += 1;
                }
                self.close_game(now, game, reason, error_frame);
            }
        }
        for event in self.factory.reap(now) {
            if let FactoryEvent::Destroyed { game, frame, .. } = event {
                self.send_game(now, game, frame);
            }
        }
        self.expire_orphans(now);
    }

    /// When the front-end next needs [`Input::Timeout`]: the earliest of the sessions'
    /// deadlines (the heap's top, possibly a little early), the game links', the idle
    /// replicas' expiry and the end of the wait of worlds whose game link was lost. `None`
    /// when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let max_queued = self.config.max_game_queued_bytes;
        [
            self.deadlines.next(),
            self.links
                .values()
                .filter_map(|link| link.deadline(max_queued))
                .min(),
            self.factory.next_expiry(),
            self.orphans.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Machine for Frontend {
    type Input = Input;
    type Output = Output;

    fn handle(&mut self, now: Instant, input: Input) {
        Frontend::handle(self, now, input);
    }

    fn poll_output(&mut self) -> Option<Output> {
        Frontend::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Frontend::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests;
