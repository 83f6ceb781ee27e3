//! The client's session state, sans-I/O: session token, subscriptions, one replica (or
//! lean counters) per world. Frames in, events and replies out; no socket, no clock.
//!
//! This is the part that survives a connection: failover (next issue) keeps the same
//! [`ClientSession`], opens a connection to another front-end, sends
//! [`hello`](ClientSession::hello) (which carries the token) and then
//! [`resume_subscriptions`](ClientSession::resume_subscriptions) (one `Subscribe` per world
//! with the last position seen).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use flotilla_wire::{
    ClientToFrontend, ErrorCode, FrontendToClient, PROTOCOL_VERSION, PartOutcome,
    SnapshotAssembler, WireError, WorldId,
};
use flotilla_world::{ApplyOutcome, Position, Replica, ReplicaConfig};

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
    counters: WorldCounters,
}

/// What handling one frame produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// Events for the application.
    pub events: Vec<ClientEvent>,
    /// Frames to send back (pongs, resync subscribes).
    pub replies: Vec<ClientToFrontend>,
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
}

impl ClientSession {
    /// A new session (no token yet), or one resuming with `token` from an earlier
    /// `Welcome`.
    pub fn new(mode: ReplicaMode, client_name: impl Into<String>, token: Option<Bytes>) -> Self {
        Self {
            mode,
            client_name: client_name.into(),
            token,
            worlds: BTreeMap::new(),
        }
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

    /// The session token, once welcomed.
    pub fn session_token(&self) -> Option<&Bytes> {
        self.token.as_ref()
    }

    /// Starts watching `world` and returns the `Subscribe` to send. `since` defaults to
    /// the position already held for that world (a resumed subscription).
    pub fn subscribe(&mut self, world: WorldId, since: Option<Position>) -> ClientToFrontend {
        let mode = self.mode;
        let view = self
            .worlds
            .entry(world.clone())
            .or_insert_with(|| WorldView {
                replica: (mode == ReplicaMode::Full).then(|| Replica::new(ReplicaConfig::CLIENT)),
                assembler: SnapshotAssembler::new(),
                position: None,
                awaiting_snapshot: false,
                counters: WorldCounters::default(),
            });
        view.assembler.reset();
        let since = since.or(view.position);
        view.awaiting_snapshot = since.is_none();
        ClientToFrontend::Subscribe { world, since }
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
                self.worlds.remove(&world);
                handled
                    .events
                    .push(ClientEvent::Unsubscribed { world, code, text });
            }
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
        let now = Instant::now();
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
