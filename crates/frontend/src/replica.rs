//! The replica machine: one per watched world.
//!
//! It holds the world's [`Replica`], applies the snapshots and change batches that come
//! from upstream (keeping each batch's received frame in the ring, so it is never
//! re-encoded), knows the state of each subscriber (waiting for the first snapshot, live,
//! or to be resynced), and answers a new or resuming subscriber with ring batches or a
//! snapshot. Sending is the [`Frontend`](crate::Frontend)'s job: it walks
//! [`subscribers_mut`](ReplicaMachine::subscribers_mut) with the one shared frame.
//!
//! A live subscriber gets a new batch at once, and is then [`SubscriberState::Queued`]:
//! the batches that follow, until its connection is written, are not queued one by one
//! but added in one piece just before the write ([`top_up`](ReplicaMachine::top_up)).
//! Under load, when a front-end's writes fall many batches behind its reads, this makes
//! the work per observer proportional to its writes, not to the batches; and an observer
//! written late in a pass still gets everything committed until then. The joined batches
//! are shared by every subscriber topped up from the same position.
//!
//! Frames given to the machine are kept (in the ring, as the encoded snapshot, as parts
//! of a snapshot being received) and so are the keys and values decoded from them: the
//! caller passes frames in allocations of their own
//! ([`RawFrame::to_compact`](flotilla_wire::RawFrame::to_compact)), not slices of a large
//! read buffer, so that the ring's byte limit bounds the memory it actually holds.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use flotilla_wire::{
    PartOutcome, SNAPSHOT_ENTRY_OVERHEAD_BYTES, SnapshotAssembler, SnapshotPart, WireError, WorldId,
};
use flotilla_world::{
    ApplyOutcome, CatchUp, ChangeBatch, Position, RecentBatch, Replica, ReplicaConfig, RingLimits,
    Snapshot,
};

use crate::ids::{ConnId, GameId, IdBuildHasher};

/// Where one subscriber of a world stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SubscriberState {
    /// Subscribed before the replica had any state: gets the first snapshot.
    Pending,
    /// Has everything the replica applied queued: the next batch is sent at once.
    Live,
    /// Has the batches up to this position queued, and its connection is to be written
    /// soon (the shell writes every connection it queued a frame for): the batches after
    /// it are added in one piece just before that write ([`ReplicaMachine::top_up`]).
    Queued(Position),
    /// Its batches were dropped (slow connection): gets a fresh snapshot once its
    /// connection drains, and no batches until then.
    NeedsResync,
}

/// What to send a subscriber right away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// Nothing: it is up to date (or will be resynced later). Live batches follow.
    Nothing,
    /// The replica has no state yet: the first snapshot will be sent when it arrives.
    Pending,
    /// A snapshot: one or more `Snapshot` frames in one buffer, then live batches.
    Snapshot(Bytes),
    /// Exactly the missing batches' frames, oldest first, then live batches.
    Batches(Vec<Bytes>),
}

/// What [`ReplicaMachine::top_up`] adds for a subscriber whose connection is about to be
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopUp {
    /// Nothing is owed (it is live, pending, to be resynced, or at the latest position).
    Nothing,
    /// The change batch frames after its position, joined, oldest first.
    Batches {
        /// The frames, the upstream bytes unchanged.
        frames: Bytes,
        /// How many batches they are.
        count: u64,
    },
    /// The batches it is owed left the ring (or their epoch ended): a snapshot of the
    /// latest state instead.
    Snapshot(Bytes),
}

/// Joined runs of ring batches, from some position to the replica's current one, shared
/// by the subscribers topped up from the same position. Emptied whenever the replica's
/// position moves.
#[derive(Debug, Default)]
struct Tails {
    /// The replica's position the runs end at.
    at: Option<Position>,
    /// `(seq after which the run starts, batches in it, the joined frames)`.
    runs: Vec<(u64, u64, Bytes)>,
    /// Bytes of `runs`.
    bytes: usize,
}

/// At most this many joined runs are kept per world (subscribers at other positions get a
/// run of their own, not kept).
const MAX_TAIL_RUNS: usize = 32;

/// What [`ReplicaMachine::apply_snapshot_part`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotProgress {
    /// A part of a multi-frame snapshot: more to come.
    Incomplete,
    /// The snapshot is complete and applied; send these frames (the upstream bytes,
    /// unchanged) to every pending and live subscriber.
    Applied(Bytes),
    /// A leftover part of a snapshot this machine no longer waits for (it was re-created
    /// or its host changed while the parts were in flight): ignored. A fresh snapshot
    /// follows the machine's own subscription.
    Stale,
}

/// What [`ReplicaMachine::apply_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied: send this frame (the upstream bytes, unchanged) to every live subscriber.
    Forward(Bytes),
    /// Already had it, or a resync is already under way: nothing to send.
    Ignored,
    /// The replica lost track (gap, other epoch, no snapshot yet): subscribe upstream
    /// again from this position.
    Resubscribe(Option<Position>),
}

/// The machine of one watched world.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplicaMachine {
    world: WorldId,
    host: Option<GameId>,
    replica: Replica,
    subscribers: HashMap<ConnId, SubscriberState, IdBuildHasher>,
    assembler: SnapshotAssembler,
    /// The frames of the snapshot being received, joined and forwarded once complete.
    snapshot_parts: Vec<Bytes>,
    /// Bytes of `snapshot_parts`.
    snapshot_parts_bytes: usize,
    encoded_snapshot: Option<(Position, Bytes)>,
    resync_requested: bool,
    max_frame_len: usize,
    /// Not part of a checkpoint: rebuilt from the ring on demand.
    #[serde(skip)]
    tails: Tails,
}

impl ReplicaMachine {
    /// A machine for `world` fed by game server `host` (`None` for worlds the front-end
    /// publishes itself, such as the directory).
    pub fn new(
        world: WorldId,
        host: Option<GameId>,
        ring: RingLimits,
        max_frame_len: usize,
    ) -> Self {
        Self {
            world,
            host,
            replica: Replica::new(ReplicaConfig { ring }),
            subscribers: HashMap::default(),
            assembler: SnapshotAssembler::new(),
            snapshot_parts: Vec::new(),
            snapshot_parts_bytes: 0,
            encoded_snapshot: None,
            resync_requested: false,
            max_frame_len,
            tails: Tails::default(),
        }
    }

    /// The world.
    pub fn world(&self) -> &WorldId {
        &self.world
    }

    /// The game server this world comes from.
    pub fn host(&self) -> Option<GameId> {
        self.host
    }

    /// Moves the world to another game server (it moved or was re-announced). A snapshot
    /// half received from the previous host is dropped.
    pub fn set_host(&mut self, host: Option<GameId>) {
        if host != self.host {
            self.assembler.reset();
            self.clear_snapshot_parts();
        }
        self.host = host;
    }

    /// Refuses upstream snapshots past `max_bytes` (the front-end's
    /// [`max_snapshot_bytes`](crate::FrontendConfig::max_snapshot_bytes)): keys, values and
    /// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`] per entry, and while parts are being collected
    /// the part frames held plus that overhead per entry.
    pub fn set_max_snapshot_bytes(&mut self, max_bytes: usize) {
        self.assembler = SnapshotAssembler::with_max_bytes(max_bytes);
        self.clear_snapshot_parts();
    }

    /// Forgets the frames of a half-received snapshot.
    fn clear_snapshot_parts(&mut self) {
        self.snapshot_parts.clear();
        self.snapshot_parts_bytes = 0;
    }

    /// Bytes held for a half-received snapshot: its part frames (which hold the keys and
    /// values) plus the in-memory overhead of its entries.
    pub fn snapshot_bytes_held(&self) -> usize {
        self.snapshot_parts_bytes.saturating_add(
            self.assembler
                .partial_entries()
                .saturating_mul(SNAPSHOT_ENTRY_OVERHEAD_BYTES),
        )
    }

    /// The replica (state, position, ring).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The number of subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// True when no connection subscribes.
    pub fn has_no_subscribers(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// The state of one subscriber.
    pub fn subscriber(&self, conn: ConnId) -> Option<SubscriberState> {
        self.subscribers.get(&conn).copied()
    }

    /// Every subscriber and its state, for fan-out.
    pub fn subscribers_mut(&mut self) -> impl Iterator<Item = (&ConnId, &mut SubscriberState)> {
        self.subscribers.iter_mut()
    }

    /// Every subscriber's connection.
    pub fn subscriber_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.subscribers.keys().copied()
    }

    /// Adds (or re-adds) `conn`, which last saw `since`, and says what to send it now.
    /// A `congested` connection is not served now: it is resynced once it drains.
    pub fn subscribe(&mut self, conn: ConnId, since: Option<Position>, congested: bool) -> Serve {
        if !self.replica.is_synced() {
            self.subscribers.insert(conn, SubscriberState::Pending);
            return Serve::Pending;
        }
        if congested {
            self.subscribers.insert(conn, SubscriberState::NeedsResync);
            return Serve::Nothing;
        }
        let serve = match since.map(|from| self.replica.catch_up(from)) {
            None | Some(CatchUp::Snapshot(_)) => self.snapshot_serve(),
            Some(CatchUp::UpToDate) => Serve::Nothing,
            Some(CatchUp::Pending) => Serve::Pending,
            Some(CatchUp::Batches(batches)) => {
                let frames: Option<Vec<Bytes>> =
                    batches.into_iter().map(|recent| recent.encoded).collect();
                match frames {
                    Some(frames) => Serve::Batches(frames),
                    // Every batch is kept with its frame; if one were not, a snapshot
                    // is always correct.
                    None => self.snapshot_serve(),
                }
            }
        };
        let state = if serve == Serve::Pending {
            SubscriberState::Pending
        } else {
            SubscriberState::Live
        };
        self.subscribers.insert(conn, state);
        serve
    }

    /// Removes `conn`; true if it was subscribed.
    pub fn unsubscribe(&mut self, conn: ConnId) -> bool {
        self.subscribers.remove(&conn).is_some()
    }

    /// Marks a live subscriber whose queued batches were dropped: it gets no batches until
    /// [`resync`](Self::resync).
    pub fn mark_needs_resync(&mut self, conn: ConnId) {
        if let Some(state @ (SubscriberState::Live | SubscriberState::Queued(_))) =
            self.subscribers.get_mut(&conn)
        {
            *state = SubscriberState::NeedsResync;
        }
    }

    /// The snapshot to resync a subscriber marked [`SubscriberState::NeedsResync`] with,
    /// now that its connection drained; it is live again. `None` if it needs none.
    pub fn resync(&mut self, conn: ConnId) -> Option<Bytes> {
        if self.subscribers.get(&conn) != Some(&SubscriberState::NeedsResync) {
            return None;
        }
        let serve = self.snapshot_serve();
        let (state, frames) = match serve {
            Serve::Snapshot(frames) => (SubscriberState::Live, Some(frames)),
            _ => (SubscriberState::Pending, None),
        };
        self.subscribers.insert(conn, state);
        frames
    }

    /// The world's latest state for a live subscriber whose queued frames are being
    /// replaced by it (coalescing), which is then live (caught up); `None` for one that is
    /// not live (pending: its first snapshot is on its way; to be resynced: it gets one
    /// once it drains).
    pub fn latest_state(&mut self, conn: ConnId) -> Option<Bytes> {
        if !matches!(
            self.subscribers.get(&conn),
            Some(SubscriberState::Live | SubscriberState::Queued(_))
        ) {
            return None;
        }
        match self.snapshot_serve() {
            Serve::Snapshot(frames) => {
                self.subscribers.insert(conn, SubscriberState::Live);
                Some(frames)
            }
            _ => None,
        }
    }

    /// What a [`SubscriberState::Queued`] subscriber is owed now that its connection is
    /// about to be written: the batches after its position, joined (and shared with the
    /// other subscribers at that position), or a snapshot when they left the ring. It is
    /// live afterwards. Anything else is owed nothing.
    pub fn top_up(&mut self, conn: ConnId) -> TopUp {
        let Some(state) = self.subscribers.get_mut(&conn) else {
            return TopUp::Nothing;
        };
        let SubscriberState::Queued(from) = *state else {
            return TopUp::Nothing;
        };
        *state = SubscriberState::Live;
        let Some(current) = self.replica.position() else {
            // The replica lost its state: the next snapshot goes to every subscriber.
            return TopUp::Nothing;
        };
        if from.epoch == current.epoch && from.seq >= current.seq {
            return TopUp::Nothing;
        }
        if let Some((count, frames)) = self.tail_since(current, from) {
            return TopUp::Batches { frames, count };
        }
        match self.snapshot_serve() {
            Serve::Snapshot(frames) => TopUp::Snapshot(frames),
            _ => {
                self.subscribers.insert(conn, SubscriberState::Pending);
                TopUp::Nothing
            }
        }
    }

    /// The ring's batches after `from` up to `current`, joined: `(count, frames)`; `None`
    /// when they are not all in the ring (another epoch, or older than it).
    fn tail_since(&mut self, current: Position, from: Position) -> Option<(u64, Bytes)> {
        if self.tails.at != Some(current) {
            self.tails = Tails {
                at: Some(current),
                ..Tails::default()
            };
        }
        if let Some((_, count, frames)) = self
            .tails
            .runs
            .iter()
            .find(|(after, _, _)| from.epoch == current.epoch && *after == from.seq)
        {
            return Some((*count, frames.clone()));
        }
        let batches = self.replica.ring().batches_since(current, from)?;
        let mut joined = BytesMut::with_capacity(
            batches
                .iter()
                .map(|recent| recent.encoded.as_ref().map_or(0, Bytes::len))
                .sum(),
        );
        for recent in &batches {
            joined.extend_from_slice(recent.encoded.as_ref()?);
        }
        let frames = joined.freeze();
        let count = batches.len() as u64;
        if self.tails.runs.len() < MAX_TAIL_RUNS
            && self.tails.bytes + frames.len() <= self.replica.ring().limits().max_bytes
        {
            self.tails.bytes += frames.len();
            self.tails.runs.push((from.seq, count, frames.clone()));
        }
        Some((count, frames))
    }

    /// Applies one upstream `Snapshot` frame (`frame` is its exact bytes). Parts are
    /// collected until the last one; then the replica takes the snapshot. Parts without
    /// their first part are [`SnapshotProgress::Stale`] (never an error: they are what a
    /// re-created machine sees of a snapshot sent to its predecessor). The only error is a
    /// snapshot past the byte limit (counting the entries and the part frames held), after
    /// which the half-received snapshot is dropped.
    pub fn apply_snapshot_part(
        &mut self,
        frame: Bytes,
        part: SnapshotPart,
        snapshot: Snapshot,
    ) -> Result<SnapshotProgress, WireError> {
        if part == SnapshotPart::Whole || part == SnapshotPart::First {
            self.clear_snapshot_parts();
        }
        let snapshot = match self.assembler.offer(part, snapshot) {
            Ok(PartOutcome::Complete(snapshot)) => snapshot,
            Ok(PartOutcome::Incomplete) => {
                self.snapshot_parts_bytes = self.snapshot_parts_bytes.saturating_add(frame.len());
                self.snapshot_parts.push(frame);
                let held = self.snapshot_bytes_held();
                let max = self.assembler.max_bytes();
                if held > max {
                    self.assembler.reset();
                    self.clear_snapshot_parts();
                    return Err(WireError::SnapshotTooLarge { bytes: held, max });
                }
                return Ok(SnapshotProgress::Incomplete);
            }
            Ok(PartOutcome::Stale) => {
                log::debug!(
                    "world {}: ignored a stale snapshot part",
                    self.world.as_str()
                );
                self.clear_snapshot_parts();
                return Ok(SnapshotProgress::Stale);
            }
            Err(error) => {
                self.clear_snapshot_parts();
                return Err(error);
            }
        };
        self.snapshot_parts.push(frame);
        self.snapshot_parts_bytes = 0;
        let parts = std::mem::take(&mut self.snapshot_parts);
        let frames = match parts.as_slice() {
            [single] => single.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for part in many {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        };
        let position = snapshot.position();
        self.replica.apply_snapshot(snapshot);
        self.encoded_snapshot = Some((position, frames.clone()));
        self.resync_requested = false;
        Ok(SnapshotProgress::Applied(frames))
    }

    /// Applies one upstream `ChangeBatch` frame (`frame` is its exact bytes, kept in the
    /// ring and forwarded as is).
    pub fn apply_batch(&mut self, frame: Bytes, batch: ChangeBatch) -> BatchOutcome {
        let recent = RecentBatch::with_encoded(Arc::new(batch), frame.clone());
        match self.replica.apply_recent(recent) {
            Ok(ApplyOutcome::Applied) => {
                self.resync_requested = false;
                BatchOutcome::Forward(frame)
            }
            Ok(ApplyOutcome::AlreadyHad) => BatchOutcome::Ignored,
            Err(error) => {
                log::debug!(
                    "world {}: {error}: resubscribing upstream",
                    self.world.as_str()
                );
                if self.resync_requested {
                    BatchOutcome::Ignored
                } else {
                    self.resync_requested = true;
                    BatchOutcome::Resubscribe(self.replica.position())
                }
            }
        }
    }

    /// About the bytes a fresh snapshot of the world takes: the last one encoded, or the
    /// replica's own size when none was.
    pub fn snapshot_len_hint(&self) -> usize {
        match &self.encoded_snapshot {
            Some((_, frames)) => frames.len(),
            None => self.replica.approx_bytes(),
        }
    }

    /// The current snapshot as frames, encoded once per position and shared.
    fn snapshot_serve(&mut self) -> Serve {
        let Some(position) = self.replica.position() else {
            return Serve::Pending;
        };
        if let Some((cached, frames)) = &self.encoded_snapshot
            && *cached == position
        {
            return Serve::Snapshot(frames.clone());
        }
        let Some(snapshot) = self.replica.snapshot() else {
            return Serve::Pending;
        };
        let mut out = BytesMut::new();
        match flotilla_wire::encode_snapshot(&self.world, &snapshot, self.max_frame_len, &mut out) {
            Ok(_) => {
                let frames = out.freeze();
                self.encoded_snapshot = Some((position, frames.clone()));
                Serve::Snapshot(frames)
            }
            Err(error) => {
                log::error!(
                    "world {}: cannot encode a snapshot: {error}",
                    self.world.as_str()
                );
                Serve::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{Decoder, FrontendToClient, GameToFrontend, Message, RawFrame};
    use flotilla_world::WorldState;

    fn world() -> WorldId {
        WorldId::new("arena").unwrap()
    }

    /// Feeds a game's world into the machine as frames, like the front-end does.
    fn feed_snapshot(machine: &mut ReplicaMachine, state: &WorldState) -> SnapshotProgress {
        let frame = GameToFrontend::Snapshot {
            world: world(),
            part: SnapshotPart::Whole,
            snapshot: state.snapshot(),
        }
        .encode_to_bytes();
        let raw = RawFrame::parse(frame.clone(), 1 << 20).unwrap();
        let GameToFrontend::Snapshot { part, snapshot, .. } = GameToFrontend::decode(&raw).unwrap()
        else {
            panic!()
        };
        machine.apply_snapshot_part(frame, part, snapshot).unwrap()
    }

    fn commit(machine: &mut ReplicaMachine, state: &mut WorldState, key: &str) -> BatchOutcome {
        let mut tx = state.begin();
        tx.set(key.to_owned(), "v");
        let batch = tx.commit().unwrap();
        let frame = flotilla_wire::change_batch_frame(&world(), &batch);
        machine.apply_batch(frame, batch)
    }

    fn decode_all(bytes: &Bytes) -> Vec<FrontendToClient> {
        let mut decoder = Decoder::default();
        decoder.feed(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.next_message().unwrap() {
            out.push(message);
        }
        out
    }

    #[test]
    fn subscribers_before_the_first_snapshot_are_pending() {
        let mut machine =
            ReplicaMachine::new(world(), Some(GameId(1)), RingLimits::default(), 1 << 20);
        assert_eq!(machine.subscribe(ConnId(1), None, false), Serve::Pending);
        let state = WorldState::with_entries(5, [("a", "1")]);
        let SnapshotProgress::Applied(frames) = feed_snapshot(&mut machine, &state) else {
            panic!()
        };
        assert_eq!(
            machine.subscriber(ConnId(1)),
            Some(SubscriberState::Pending)
        );
        let messages = decode_all(&frames);
        assert!(
            matches!(&messages[..], [FrontendToClient::Snapshot { snapshot, .. }] if snapshot.epoch == 5)
        );
    }

    #[test]
    fn catch_up_serves_ring_batches_snapshots_or_nothing() {
        let mut machine =
            ReplicaMachine::new(world(), Some(GameId(1)), RingLimits::default(), 1 << 20);
        let mut state = WorldState::new(7);
        feed_snapshot(&mut machine, &state);
        let mut forwarded = Vec::new();
        for key in ["a", "b", "c"] {
            let BatchOutcome::Forward(frame) = commit(&mut machine, &mut state, key) else {
                panic!()
            };
            forwarded.push(frame);
        }
        // Resume at seq 1 of the same epoch: exactly batches 2 and 3, the very bytes received.
        let serve = machine.subscribe(ConnId(1), Some(Position { epoch: 7, seq: 1 }), false);
        assert_eq!(serve, Serve::Batches(forwarded[1..].to_vec()));
        assert_eq!(machine.subscriber(ConnId(1)), Some(SubscriberState::Live));
        // Up to date: nothing.
        assert_eq!(
            machine.subscribe(ConnId(2), Some(Position { epoch: 7, seq: 3 }), false),
            Serve::Nothing
        );
        // Other epoch: a snapshot at the current position.
        let Serve::Snapshot(frames) =
            machine.subscribe(ConnId(3), Some(Position { epoch: 1, seq: 3 }), false)
        else {
            panic!()
        };
        let [FrontendToClient::Snapshot { snapshot, .. }] = &decode_all(&frames)[..] else {
            panic!()
        };
        assert_eq!(snapshot.digest(), state.digest());
        // A second snapshot request at the same position shares the same encoded bytes.
        let Serve::Snapshot(again) = machine.subscribe(ConnId(4), None, false) else {
            panic!()
        };
        assert_eq!(again.as_ptr(), frames.as_ptr());
    }

    #[test]
    fn duplicate_batches_are_ignored_and_gaps_resubscribe_once() {
        let mut machine =
            ReplicaMachine::new(world(), Some(GameId(1)), RingLimits::default(), 1 << 20);
        let mut state = WorldState::new(7);
        feed_snapshot(&mut machine, &state);
        let mut tx = state.begin();
        tx.set("a", "1");
        let first = tx.commit().unwrap();
        let frame = flotilla_wire::change_batch_frame(&world(), &first);
        assert!(matches!(
            machine.apply_batch(frame.clone(), first.clone()),
            BatchOutcome::Forward(_)
        ));
        assert_eq!(machine.apply_batch(frame, first), BatchOutcome::Ignored);
        // Skip seq 2: a gap.
        let mut tx = state.begin();
        tx.set("b", "1");
        tx.commit().unwrap();
        let mut tx = state.begin();
        tx.set("c", "1");
        let third = tx.commit().unwrap();
        let frame = flotilla_wire::change_batch_frame(&world(), &third);
        assert_eq!(
            machine.apply_batch(frame.clone(), third.clone()),
            BatchOutcome::Resubscribe(Some(Position { epoch: 7, seq: 1 }))
        );
        assert_eq!(machine.apply_batch(frame, third), BatchOutcome::Ignored);
        // A snapshot brings it back.
        feed_snapshot(&mut machine, &state);
        assert_eq!(machine.replica().digest(), state.digest());
    }

    #[test]
    fn resync_gives_a_snapshot_only_to_marked_subscribers() {
        let mut machine =
            ReplicaMachine::new(world(), Some(GameId(1)), RingLimits::default(), 1 << 20);
        let mut state = WorldState::new(7);
        feed_snapshot(&mut machine, &state);
        machine.subscribe(ConnId(1), None, false);
        machine.subscribe(ConnId(2), None, false);
        commit(&mut machine, &mut state, "x");
        machine.mark_needs_resync(ConnId(1));
        assert_eq!(
            machine.subscriber(ConnId(1)),
            Some(SubscriberState::NeedsResync)
        );
        assert_eq!(machine.resync(ConnId(2)), None);
        let frames = machine.resync(ConnId(1)).unwrap();
        let [FrontendToClient::Snapshot { snapshot, .. }] = &decode_all(&frames)[..] else {
            panic!()
        };
        assert_eq!((snapshot.seq, snapshot.digest()), (1, state.digest()));
        assert_eq!(machine.subscriber(ConnId(1)), Some(SubscriberState::Live));
        // A congested connection that subscribes waits for its resync.
        assert_eq!(machine.subscribe(ConnId(3), None, true), Serve::Nothing);
        assert_eq!(
            machine.subscriber(ConnId(3)),
            Some(SubscriberState::NeedsResync)
        );
    }

    #[test]
    fn multi_part_snapshots_are_joined_and_forwarded_unchanged() {
        let mut machine = ReplicaMachine::new(world(), Some(GameId(1)), RingLimits::default(), 200);
        let entries: Vec<(String, String)> = (0..20)
            .map(|i| (format!("key-{i:02}"), "x".repeat(20)))
            .collect();
        let state = WorldState::with_entries(3, entries);
        let mut out = BytesMut::new();
        let parts =
            flotilla_wire::encode_snapshot(&world(), &state.snapshot(), 200, &mut out).unwrap();
        assert!(parts > 1);
        let all = out.freeze();
        let mut decoder = Decoder::new(200);
        decoder.feed(&all);
        let mut result = None;
        while let Some(raw) = decoder.next_frame().unwrap() {
            let GameToFrontend::Snapshot { part, snapshot, .. } =
                GameToFrontend::decode(&raw).unwrap()
            else {
                panic!()
            };
            result = Some(
                machine
                    .apply_snapshot_part(raw.into_bytes(), part, snapshot)
                    .unwrap(),
            );
        }
        assert_eq!(result, Some(SnapshotProgress::Applied(all)));
        assert_eq!(machine.replica().digest(), state.digest());
    }
}
