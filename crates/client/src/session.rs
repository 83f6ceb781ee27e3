//! The client's session state, sans-I/O: session token, subscriptions, one replica (or
//! lean counters) per world. Frames in, events and replies out; no socket, no clock.
//!
//! This is the part that survives a connection: failover
//! ([`FleetClient`](crate::FleetClient)) keeps the same [`ClientSession`], opens a
//! connection to another front-end, sends
//! [`hello`](ClientSession::hello) (which carries the token) and then
//! [`resume_subscriptions`](ClientSession::resume_subscriptions) (one `Subscribe` per world
//! with the last position seen).
//!
//! It also outlives a game-server blip: when the front-end ends a subscription with
//! `Unavailable` (or `UnknownWorld` for a world it had been serving), the world's replica
//! and last position are kept, the world is marked waiting, and a `Subscribe{since}` is due
//! after a full-jitter backoff ([`ResubscribePolicy`]). The shell asks
//! [`next_resubscribe_at`](ClientSession::next_resubscribe_at) when to wake up and sends
//! what [`due_resubscribes`](ClientSession::due_resubscribes) returns; time and the random
//! seed are passed in.

use flotilla_conn::Instant;
use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_wire::{
    ClientToFrontend, ErrorCode, FrameType, FrontendToClient, PROTOCOL_VERSION, PartOutcome,
    SnapshotAssembler, WireError, WorldId,
};
use flotilla_world::{ApplyOutcome, Position, Replica, ReplicaConfig};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::config::ResubscribePolicy;
use crate::events::ClientEvent;

/// How a client keeps the worlds it watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaMode {
    /// A full [`Replica`] per world (snapshot + batches), with digests.
    #[default]
    Full,
    /// No replica: only per-world counters and the last position (lean observers for
    /// benchmarks). Never asks for a resync.
    CountOnly,
}

/// Per-world receive counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorldCounters {
    /// Whole snapshots received (a multi-part snapshot counts once).
    pub snapshots: u64,
    /// Change batches received (applied or not).
    pub batches: u64,
    /// Change batches applied to the replica (or, in count-only mode, that followed the
    /// previous position).
    pub applied: u64,
    /// Frame bytes received for this world (snapshots and batches).
    pub bytes: u64,
    /// Times the client lost track (gap, other epoch) and asked for a fresh snapshot.
    pub resyncs: u64,
    /// When the last snapshot or batch arrived.
    pub last_received: Option<Instant>,
}

/// One subscribed world.
#[derive(Debug)]
struct WorldView {
    replica: Option<Replica>,
    assembler: SnapshotAssembler,
    position: Option<Position>,
    /// A resubscribe without `since` was sent: ignore batches until the snapshot.
    awaiting_snapshot: bool,
    /// The front-end ended the subscription (game server unavailable) and the world has
    /// not answered a resubscribe yet.
    waiting: bool,
    /// Resubscribes scheduled since the world last answered (the backoff exponent).
    resubscribe_attempts: u32,
    /// When the next resubscribe is due, if one is scheduled.
    resubscribe_at: Option<Instant>,
    counters: WorldCounters,
}

impl WorldView {
    fn new(mode: ReplicaMode) -> Self {
        Self {
            replica: (mode == ReplicaMode::Full).then(|| Replica::new(ReplicaConfig::CLIENT)),
            assembler: SnapshotAssembler::new(),
            position: None,
            awaiting_snapshot: false,
            waiting: false,
            resubscribe_attempts: 0,
            resubscribe_at: None,
            counters: WorldCounters::default(),
        }
    }

    /// The `Subscribe` that (re)starts this view: `since` defaults to the last position.
    fn subscribe_message(&mut self, world: WorldId, since: Option<Position>) -> ClientToFrontend {
        self.assembler.reset();
        self.resubscribe_at = None;
        let since = since.or(self.position);
        self.awaiting_snapshot = since.is_none();
        ClientToFrontend::Subscribe { world, since }
    }

    /// A snapshot part or a batch arrived: once the resubscribe is out, the world answered.
    fn on_data(&mut self) {
        if self.resubscribe_at.is_none() {
            self.waiting = false;
            self.resubscribe_attempts = 0;
        }
    }
}

/// What handling one frame produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// Events for the application.
    pub events: Vec<ClientEvent>,
    /// Frames to send back (pongs, resync subscribes).
    pub replies: Vec<ClientToFrontend>,
}

/// A front-end's `Welcome`, as [`ClientSession::on_handshake`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcomed {
    /// The session's token (kept by the session for the next hello).
    pub session_token: Bytes,
    /// True when the front-end recognised the token: the session moved here.
    pub resumed: bool,
    /// The front-end's id.
    pub server_id: String,
}

/// Why a handshake failed ([`ClientSession::on_handshake`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The front-end answered the hello with `Error`.
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The `Welcome` is of a version this client does not speak.
    UnsupportedVersion(u32),
    /// A frame other than `Welcome` or `Error` came first.
    Unexpected(flotilla_wire::FrameType),
}

/// A fatal condition from the front-end: the connection must close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// The front-end sent `Error` (it closes after it).
    Peer {
        /// The error code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The front-end broke the protocol: send `Error` with this error's code and close.
    Protocol(WireError),
    /// A frame not allowed after the handshake (a second `Welcome`).
    Unexpected(&'static str),
}

/// The client side of one session: token, subscriptions and replicas.
#[derive(Debug)]
pub struct ClientSession {
    mode: ReplicaMode,
    client_name: String,
    token: Option<Bytes>,
    worlds: BTreeMap<WorldId, WorldView>,
    resubscribe: ResubscribePolicy,
    rng: SmallRng,
}

impl ClientSession {
    /// A new session (no token yet), or one resuming with `token` from an earlier
    /// `Welcome`. Resubscribing after a game-server blip is off until
    /// [`set_resubscribe_policy`](Self::set_resubscribe_policy) (a [`Client`](crate::Client)
    /// sets it from [`ClientConfig::resubscribe`](crate::ClientConfig::resubscribe)).
    pub fn new(mode: ReplicaMode, client_name: impl Into<String>, token: Option<Bytes>) -> Self {
        Self {
            mode,
            client_name: client_name.into(),
            token,
            worlds: BTreeMap::new(),
            resubscribe: ResubscribePolicy::DISABLED,
            rng: SmallRng::seed_from_u64(0),
        }
    }

    /// Sets how worlds whose game server went away are resubscribed; `seed` drives the
    /// backoff jitter (take it from OS entropy, never the clock, so that clients do not
    /// retry in lock-step).
    pub fn set_resubscribe_policy(&mut self, policy: ResubscribePolicy, seed: u64) {
        self.resubscribe = policy;
        self.rng = SmallRng::seed_from_u64(seed);
    }

    /// The resubscribe policy.
    pub fn resubscribe_policy(&self) -> ResubscribePolicy {
        self.resubscribe
    }

    /// The replica mode.
    pub fn mode(&self) -> ReplicaMode {
        self.mode
    }

    /// The `Hello` to open a connection with (carries the token if there is one).
    pub fn hello(&self) -> ClientToFrontend {
        ClientToFrontend::Hello {
            version: PROTOCOL_VERSION,
            session_token: self.token.clone(),
            client_name: self.client_name.clone(),
        }
    }

    /// Records the token of a `Welcome`.
    pub fn on_welcome(&mut self, token: Bytes) {
        self.token = Some(token);
    }

    /// The handshake's rule (PROTOCOL.md section 2) for the front-end's first frame, for
    /// every client shell: a `Welcome` of a version this client speaks keeps its token and
    /// says whether the session was resumed; an `Error` is a refusal; anything else is a
    /// protocol error.
    pub fn on_handshake(&mut self, message: FrontendToClient) -> Result<Welcomed, HandshakeError> {
        match message {
            FrontendToClient::Welcome {
                version,
                session_token,
                resumed,
                server_id,
            } => {
                flotilla_conn::negotiate_version(version, PROTOCOL_VERSION..=PROTOCOL_VERSION)
                    .map_err(|_| HandshakeError::UnsupportedVersion(version))?;
                self.on_welcome(session_token.clone());
                Ok(Welcomed {
                    session_token,
                    resumed,
                    server_id,
                })
            }
            FrontendToClient::Error { code, text } => Err(HandshakeError::Refused { code, text }),
            other => Err(HandshakeError::Unexpected(
                flotilla_wire::Message::frame_type(&other),
            )),
        }
    }

    /// The session token, once welcomed.
    pub fn session_token(&self) -> Option<&Bytes> {
        self.token.as_ref()
    }

    /// Starts watching `world` and returns the `Subscribe` to send. `since` defaults to
    /// the position already held for that world (a resumed subscription).
    pub fn subscribe(&mut self, world: WorldId, since: Option<Position>) -> ClientToFrontend {
        let mode = self.mode;
        self.worlds
            .entry(world.clone())
            .or_insert_with(|| WorldView::new(mode))
            .subscribe_message(world, since)
    }

    /// True while `world` waits for its game server: the front-end ended the subscription
    /// with `Unavailable` and the world has not answered a resubscribe yet. The replica
    /// keeps its last state meanwhile.
    pub fn is_waiting(&self, world: &WorldId) -> bool {
        self.worlds.get(world).is_some_and(|view| view.waiting)
    }

    /// When the earliest scheduled resubscribe is due, if any.
    pub fn next_resubscribe_at(&self) -> Option<Instant> {
        self.worlds
            .values()
            .filter_map(|view| view.resubscribe_at)
            .min()
    }

    /// The `Subscribe{since: last position}` of every world whose resubscribe is due at
    /// `now`, to send.
    pub fn due_resubscribes(&mut self, now: Instant) -> Vec<ClientToFrontend> {
        self.worlds
            .iter_mut()
            .filter(|(_, view)| view.resubscribe_at.is_some_and(|at| at <= now))
            .map(|(world, view)| view.subscribe_message(world.clone(), None))
            .collect()
    }

    /// Stops watching `world`; returns the `Unsubscribe` to send if it was watched.
    pub fn unsubscribe(&mut self, world: &WorldId) -> Option<ClientToFrontend> {
        self.worlds
            .remove(world)
            .map(|_| ClientToFrontend::Unsubscribe {
                world: world.clone(),
            })
    }

    /// One `Subscribe` per watched world with its last position: what a reconnected client
    /// sends to its new front-end to resume (the failover seam).
    pub fn resume_subscriptions(&mut self) -> Vec<ClientToFrontend> {
        let worlds: Vec<(WorldId, Option<Position>)> = self
            .worlds
            .iter()
            .map(|(world, view)| (world.clone(), view.position))
            .collect();
        worlds
            .into_iter()
            .map(|(world, since)| self.subscribe(world, since))
            .collect()
    }

    /// The worlds watched.
    pub fn worlds(&self) -> impl Iterator<Item = &WorldId> {
        self.worlds.keys()
    }

    /// The replica of `world` (full mode, once subscribed).
    pub fn replica(&self, world: &WorldId) -> Option<&Replica> {
        self.worlds
            .get(world)
            .and_then(|view| view.replica.as_ref())
    }

    /// The digest of the replica of `world`, once it has a snapshot.
    pub fn digest(&self, world: &WorldId) -> Option<u64> {
        self.replica(world)
            .filter(|replica| replica.is_synced())
            .map(Replica::digest)
    }

    /// The value of `key` in the replica of `world`.
    pub fn get(&self, world: &WorldId, key: &[u8]) -> Option<Bytes> {
        self.replica(world)
            .and_then(|replica| replica.get(key).cloned())
    }

    /// The last position seen for `world` (what a resume sends as `since`).
    pub fn position(&self, world: &WorldId) -> Option<Position> {
        self.worlds.get(world).and_then(|view| view.position)
    }

    /// The receive counters of `world`.
    pub fn counters(&self, world: &WorldId) -> Option<WorldCounters> {
        self.worlds.get(world).map(|view| view.counters)
    }

    /// Handles one decoded frame of `frame_len` bytes that arrived at `now`.
    pub fn handle(
        &mut self,
        message: FrontendToClient,
        frame_len: usize,
        now: Instant,
    ) -> Result<Handled, Fatal> {
        let mut handled = Handled::default();
        match message {
            FrontendToClient::Welcome { .. } => return Err(Fatal::Unexpected("second Welcome")),
            FrontendToClient::Ping { nonce } => {
                handled.replies.push(ClientToFrontend::Pong { nonce });
            }
            FrontendToClient::Pong { .. } => {}
            FrontendToClient::Snapshot {
                world,
                part,
                snapshot,
            } => {
                let Some(view) = self.worlds.get_mut(&world) else {
                    return Ok(handled); // late frame of an unsubscribed world
                };
                view.on_data();
                view.counters.bytes += frame_len as u64;
                view.counters.last_received = Some(now);
                // Leftover parts of a snapshot sent before a resubscribe (which reset the
                // assembler) are stale, not a protocol error: the fresh snapshot follows.
                let whole = match view
                    .assembler
                    .offer(part, snapshot)
                    .map_err(Fatal::Protocol)?
                {
                    PartOutcome::Complete(snapshot) => Some(snapshot),
                    PartOutcome::Incomplete => None,
                    PartOutcome::Stale => {
                        log::debug!("world {world}: ignored a stale snapshot part");
                        None
                    }
                };
                if let Some(snapshot) = whole {
                    let position = snapshot.position();
                    if let Some(replica) = view.replica.as_mut() {
                        replica.apply_snapshot(snapshot);
                    }
                    view.position = Some(position);
                    view.awaiting_snapshot = false;
                    view.counters.snapshots += 1;
                    handled.events.push(ClientEvent::SnapshotApplied {
                        world,
                        position,
                        received: now,
                    });
                }
            }
            FrontendToClient::ChangeBatch { world, batch } => {
                let Some(view) = self.worlds.get_mut(&world) else {
                    return Ok(handled);
                };
                view.on_data();
                view.counters.batches += 1;
                view.counters.bytes += frame_len as u64;
                view.counters.last_received = Some(now);
                let position = batch.position();
                match view.replica.as_mut() {
                    None => {
                        let follows = view.position.is_some_and(|at| {
                            at.epoch == position.epoch
                                && at.seq.checked_add(1) == Some(position.seq)
                        });
                        if follows {
                            view.counters.applied += 1;
                        }
                        view.position = Some(position);
                        handled.events.push(ClientEvent::BatchApplied {
                            world,
                            position,
                            received: now,
                        });
                    }
                    Some(_) if view.awaiting_snapshot => {}
                    Some(replica) => match replica.apply_batch(batch) {
                        Ok(ApplyOutcome::Applied) => {
                            view.counters.applied += 1;
                            view.position = Some(position);
                            handled.events.push(ClientEvent::BatchApplied {
                                world,
                                position,
                                received: now,
                            });
                        }
                        Ok(ApplyOutcome::AlreadyHad) => {}
                        Err(error) => {
                            log::debug!("world {world}: lost track ({error}), resyncing");
                            view.counters.resyncs += 1;
                            view.awaiting_snapshot = true;
                            view.assembler.reset();
                            handled.replies.push(ClientToFrontend::Subscribe {
                                world: world.clone(),
                                since: None,
                            });
                            handled.events.push(ClientEvent::Resyncing { world });
                        }
                    },
                }
            }
            FrontendToClient::Output { world, payload } => {
                handled.events.push(ClientEvent::Output { world, payload });
            }
            FrontendToClient::Unsubscribed { world, code, text } => {
                let enabled = self.resubscribe.enabled;
                let policy = self.resubscribe;
                let resubscribe = self.worlds.get_mut(&world).filter(|view| {
                    enabled
                        && match code {
                            ErrorCode::Unavailable => true,
                            // Also the answer to a resubscribe while no game server hosts
                            // the world yet; for a world never served it ends the watch.
                            ErrorCode::UnknownWorld => view.waiting || view.position.is_some(),
                            _ => false,
                        }
                });
                match resubscribe {
                    Some(view) => {
                        let ceiling = flotilla_balance::backoff_ceiling(
                            policy.base,
                            policy.cap,
                            view.resubscribe_attempts,
                        );
                        let delay = flotilla_balance::full_jitter(&mut self.rng, ceiling);
                        view.resubscribe_attempts = view.resubscribe_attempts.saturating_add(1);
                        view.waiting = true;
                        view.resubscribe_at = Some(now.checked_add(delay).unwrap_or(now));
                        log::debug!(
                            "world {world}: unsubscribed ({code:?}: {text}), resubscribing in {delay:?}"
                        );
                        handled.events.push(ClientEvent::Resubscribing {
                            world,
                            code,
                            attempt: view.resubscribe_attempts,
                            delay,
                        });
                    }
                    None => {
                        self.worlds.remove(&world);
                        handled
                            .events
                            .push(ClientEvent::Unsubscribed { world, code, text });
                    }
                }
            }
            FrontendToClient::Joined {
                world,
                role,
                expires_unix,
            } => handled.events.push(ClientEvent::Joined {
                world,
                role,
                expires_unix,
            }),
            FrontendToClient::Refused {
                request,
                world,
                code,
                text,
            } => match (request, world) {
                (FrameType::Join, world) => {
                    log::warn!("join token refused: {code:?}: {text}");
                    handled
                        .events
                        .push(ClientEvent::JoinRefused { world, code, text });
                }
                (FrameType::Input, Some(world)) => {
                    handled
                        .events
                        .push(ClientEvent::InputRefused { world, code, text });
                }
                (request, world) => {
                    log::debug!("front-end refused {request:?} ({world:?}): {code:?}: {text}");
                }
            },
            FrontendToClient::Error { code, text } => return Err(Fatal::Peer { code, text }),
        }
        Ok(handled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use flotilla_wire::{Decoder, SnapshotPart};
    use flotilla_world::WorldState;

    fn arena() -> WorldId {
        WorldId::new("arena").unwrap()
    }

    /// `state`'s snapshot as client frames of at most 512 bytes, decoded.
    fn parts(state: &WorldState) -> Vec<FrontendToClient> {
        let mut out = BytesMut::new();
        flotilla_wire::encode_snapshot(&arena(), &state.snapshot(), 512, &mut out).unwrap();
        let mut decoder = Decoder::default();
        decoder.feed(&out);
        std::iter::from_fn(|| decoder.next_message().unwrap()).collect()
    }

    fn unsubscribed(code: ErrorCode) -> FrontendToClient {
        FrontendToClient::Unsubscribed {
            world: arena(),
            code,
            text: "test".to_owned(),
        }
    }

    /// A session watching `arena` with a snapshot of `state` applied, resubscribing with a
    /// 100 ms base and a 400 ms cap.
    fn synced_session(state: &WorldState, now: Instant) -> ClientSession {
        let mut session = ClientSession::new(ReplicaMode::Full, "c", None);
        session.set_resubscribe_policy(
            ResubscribePolicy {
                enabled: true,
                base: std::time::Duration::from_millis(100),
                cap: std::time::Duration::from_millis(400),
            },
            7,
        );
        session.subscribe(arena(), None);
        for part in parts(state) {
            session.handle(part, 100, now).unwrap();
        }
        assert_eq!(session.position(&arena()), Some(state.position()));
        session
    }

    #[test]
    fn unavailable_keeps_the_replica_and_resubscribes_with_backoff() {
        let mut state = WorldState::new(5);
        let mut tx = state.begin();
        tx.set("a", "1");
        tx.commit().unwrap();
        let start = Instant::from_millis(1_000);
        let mut session = synced_session(&state, start);
        let mut now = start;
        // Unavailable, then UnknownWorld while the game server is not back: backoff grows
        // up to the cap; the replica and position stay.
        for attempt in 1..=6u32 {
            let code = if attempt == 1 {
                ErrorCode::Unavailable
            } else {
                ErrorCode::UnknownWorld
            };
            let handled = session.handle(unsubscribed(code), 20, now).unwrap();
            let delay = match &handled.events[..] {
                [
                    ClientEvent::Resubscribing {
                        world,
                        code: got,
                        attempt: got_attempt,
                        delay,
                    },
                ] => {
                    assert_eq!((world, *got, *got_attempt), (&arena(), code, attempt));
                    *delay
                }
                other => panic!("unexpected {other:?}"),
            };
            let ceiling = std::time::Duration::from_millis(100 << (attempt - 1).min(2));
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} > {ceiling:?}"
            );
            assert!(handled.replies.is_empty());
            assert!(session.is_waiting(&arena()));
            assert_eq!(session.replica(&arena()).unwrap().digest(), state.digest());
            assert_eq!(session.position(&arena()), Some(state.position()));
            let due = session.next_resubscribe_at().unwrap();
            assert_eq!(due, now + delay);
            if !delay.is_zero() {
                assert!(session.due_resubscribes(now).is_empty());
            }
            assert_eq!(
                session.due_resubscribes(due),
                vec![ClientToFrontend::Subscribe {
                    world: arena(),
                    since: Some(state.position()),
                }]
            );
            assert_eq!(session.next_resubscribe_at(), None);
            now = due;
        }
        // The world is back in a new history: its snapshot ends the wait.
        let mut back = WorldState::new(6);
        let mut tx = back.begin();
        tx.set("b", "2");
        tx.commit().unwrap();
        for part in parts(&back) {
            session.handle(part, 100, now).unwrap();
        }
        assert!(!session.is_waiting(&arena()));
        assert_eq!(session.replica(&arena()).unwrap().digest(), back.digest());
        // The backoff starts over.
        let handled = session
            .handle(unsubscribed(ErrorCode::Unavailable), 20, now)
            .unwrap();
        assert!(matches!(
            &handled.events[..],
            [ClientEvent::Resubscribing { attempt: 1, .. }]
        ));
        // Unsubscribing gives up the wait.
        session.unsubscribe(&arena());
        assert_eq!(session.next_resubscribe_at(), None);
        assert!(!session.is_waiting(&arena()));
    }

    #[test]
    fn other_codes_unknown_worlds_and_a_disabled_policy_end_the_subscription() {
        let mut state = WorldState::new(5);
        let mut tx = state.begin();
        tx.set("a", "1");
        tx.commit().unwrap();
        let now = Instant::from_millis(1_000);
        let ended = |session: &mut ClientSession, code: ErrorCode| {
            let handled = session.handle(unsubscribed(code), 20, now).unwrap();
            assert!(
                matches!(&handled.events[..], [ClientEvent::Unsubscribed { code: got, .. }] if *got == code),
                "{code:?}: {:?}",
                handled.events
            );
            assert!(session.replica(&arena()).is_none());
            assert_eq!(session.next_resubscribe_at(), None);
        };
        let mut session = synced_session(&state, now);
        ended(&mut session, ErrorCode::NotAllowed);
        // A world the front-end never served (a typo): UnknownWorld ends the watch.
        let mut session = ClientSession::new(ReplicaMode::Full, "c", None);
        session.set_resubscribe_policy(ResubscribePolicy::default(), 1);
        session.subscribe(arena(), None);
        ended(&mut session, ErrorCode::UnknownWorld);
        // Resubscribing disabled (the default of a bare session).
        let mut session = ClientSession::new(ReplicaMode::Full, "c", None);
        session.subscribe(arena(), None);
        for part in parts(&state) {
            session.handle(part, 100, now).unwrap();
        }
        ended(&mut session, ErrorCode::Unavailable);
    }

    #[test]
    fn leftover_snapshot_parts_after_a_resubscribe_are_ignored() {
        let mut state = WorldState::new(9);
        let mut tx = state.begin();
        for key in 0..20 {
            tx.set(format!("k{key:03}"), format!("{key:0100}"));
        }
        tx.commit().unwrap();
        let parts = parts(&state);
        assert!(parts.len() >= 3);
        assert!(matches!(
            parts[0],
            FrontendToClient::Snapshot {
                part: SnapshotPart::First,
                ..
            }
        ));
        let now = Instant::from_millis(1_000);
        let mut session = ClientSession::new(ReplicaMode::Full, "c", None);
        session.subscribe(arena(), None);
        session.handle(parts[0].clone(), 100, now).unwrap();
        // Unsubscribe and subscribe again while the rest is in flight.
        session.unsubscribe(&arena());
        session.subscribe(arena(), None);
        for part in &parts[1..] {
            let handled = session.handle(part.clone(), 100, now).unwrap();
            assert!(handled.events.is_empty());
        }
        // The snapshot answering the new subscription applies.
        let mut applied = Vec::new();
        for part in &parts {
            applied.extend(session.handle(part.clone(), 100, now).unwrap().events);
        }
        assert!(matches!(
            &applied[..],
            [ClientEvent::SnapshotApplied { position, .. }] if *position == state.position()
        ));
        assert_eq!(session.replica(&arena()).unwrap().digest(), state.digest());
    }
}
