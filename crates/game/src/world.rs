//! Hosted worlds: the handle the game loop holds, its per-tick transaction, and the
//! subscribe/catch-up logic that sends a world to a front-end.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use flotilla_wire::{GameToFrontend, Message, WorldId, change_batch_frame, encode_snapshot};
use flotilla_world::{BatchRing, Position, RecentBatch, Snapshot, WorldState};

use crate::error::GameError;
use crate::events::FrontendId;
use crate::machine::{SubscribeFrame, subscribe_frames};
use crate::server::{Link, Shared, lock};
use flotilla_link::outbox::FrameKind;

/// Bytes of a `ChangeBatch` frame besides one entry's key and value, with room to spare:
/// header, world id (up to 255 + 2), epoch, seq, counts and the entry's length prefixes.
const BATCH_OVERHEAD: usize = 320;

/// One hosted world: its id and its lockable state.
#[derive(Debug)]
pub(crate) struct WorldCell {
    pub(crate) id: WorldId,
    pub(crate) core: Mutex<WorldCore>,
}

/// A hosted world's state, ring of recent batches and subscribed front-ends.
#[derive(Debug)]
pub(crate) struct WorldCore {
    pub(crate) state: WorldState,
    pub(crate) ring: BatchRing,
    pub(crate) info: Bytes,
    pub(crate) subscribers: BTreeMap<FrontendId, Arc<Link>>,
    pub(crate) removed: bool,
}

impl WorldCore {
    /// Queues the current state as a (possibly multi-part) snapshot to `link`.
    fn send_snapshot(&self, id: &WorldId, snapshot: &Snapshot, link: &Link, max_frame_len: usize) {
        let mut out = BytesMut::new();
        match encode_snapshot(id, snapshot, max_frame_len, &mut out) {
            Ok(frames) => {
                let _ = link
                    .outbox
                    .push_frames(out.freeze(), FrameKind::Snapshot, frames as u64);
            }
            Err(error) => log::error!("world {id}: snapshot cannot be encoded: {error}"),
        }
    }
}

/// A handle to one hosted world, for the game loop. Cheap to clone; `Send + Sync`.
///
/// Each tick: [`begin`](Self::begin) a transaction, `set`/`remove` keys, then
/// [`commit`](GameTransaction::commit): the batch is encoded **once** and the same bytes
/// are queued once for each front-end subscribed to the world, however many observers
/// those front-ends serve.
#[derive(Debug, Clone)]
pub struct WorldHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cell: Arc<WorldCell>,
}

impl WorldHandle {
    /// The world's id.
    pub fn id(&self) -> &WorldId {
        &self.cell.id
    }

    /// Starts this tick's transaction. Nothing is locked until `commit`.
    pub fn begin(&self) -> GameTransaction<'_> {
        GameTransaction {
            handle: self,
            pending: BTreeMap::new(),
        }
    }

    /// The world's current `(epoch, seq)`.
    pub fn position(&self) -> Position {
        lock(&self.cell.core).state.position()
    }

    /// The stable digest of the committed state (compare with replicas' digests).
    pub fn digest(&self) -> u64 {
        lock(&self.cell.core).state.digest()
    }

    /// The committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        lock(&self.cell.core).state.get(key).cloned()
    }

    /// A snapshot of the committed state.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.cell.core).state.snapshot()
    }

    /// Runs `read` on the committed state (under the world's lock: keep it short).
    pub fn with_state<R>(&self, read: impl FnOnce(&WorldState) -> R) -> R {
        read(&lock(&self.cell.core).state)
    }

    /// True while the world is hosted (not removed).
    pub fn is_hosted(&self) -> bool {
        !lock(&self.cell.core).removed
    }

    /// The number of front-ends subscribed to this world.
    pub fn subscriber_count(&self) -> usize {
        lock(&self.cell.core).subscribers.len()
    }

    /// Changes the world's description and announces it again (`WorldAdded`) to every
    /// front-end.
    pub fn set_info(&self, info: Bytes) -> Result<(), GameError> {
        let added = GameToFrontend::WorldAdded {
            world: self.cell.id.clone(),
            info: info.clone(),
        }
        .encode_to_bytes();
        crate::server::check_frame_len(&added, "world info", self.shared.config.max_frame_len)?;
        let registry = lock(&self.shared.registry);
        {
            let mut core = lock(&self.cell.core);
            if core.removed {
                return Err(GameError::UnknownWorld(self.cell.id.clone()));
            }
            core.info = info;
        }
        for link in registry.frontends.values() {
            let _ = link.outbox.push(added.clone(), FrameKind::Other);
        }
        Ok(())
    }
}

/// The changes of one tick. Last write to a key wins; writes that change nothing are
/// dropped at commit. Dropping the transaction discards it.
#[derive(Debug)]
pub struct GameTransaction<'h> {
    handle: &'h WorldHandle,
    /// `Some(value)`: upsert; `None`: remove.
    pending: BTreeMap<Bytes, Option<Bytes>>,
}

impl GameTransaction<'_> {
    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.pending.insert(key.into(), Some(value.into()));
    }

    /// Removes `key` (nothing is sent if it does not exist).
    pub fn remove(&mut self, key: impl Into<Bytes>) {
        self.pending.insert(key.into(), None);
    }

    /// The value of `key` as this transaction would leave it.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        match self.pending.get(key) {
            Some(pending) => pending.clone(),
            None => self.handle.get(key),
        }
    }

    /// The number of keys written so far.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Applies the changes atomically. Returns the new position, or `None` when nothing
    /// changed (no batch, seq unchanged).
    ///
    /// The batch is encoded once, kept in the world's ring (for resuming front-ends) and
    /// queued once per subscribed front-end. A batch too large for one frame is replaced,
    /// for every subscriber, by a multi-part snapshot of the new state.
    ///
    /// Fails without applying anything if the world was removed or one entry alone cannot
    /// fit in a frame.
    pub fn commit(self) -> Result<Option<Position>, GameError> {
        let shared = &self.handle.shared;
        let cell = &self.handle.cell;
        let max_frame_len = shared.config.max_frame_len;
        for (key, value) in &self.pending {
            let value_len = value.as_ref().map_or(0, Bytes::len);
            if key.len() + value_len + BATCH_OVERHEAD > max_frame_len {
                return Err(GameError::EntryTooLarge {
                    key_len: key.len(),
                    value_len,
                    max_frame_len,
                });
            }
        }
        let mut core = lock(&cell.core);
        if core.removed {
            return Err(GameError::UnknownWorld(cell.id.clone()));
        }
        let mut tx = core.state.begin();
        for (key, change) in self.pending {
            match change {
                Some(value) => tx.set(key, value),
                None => tx.remove(key),
            }
        }
        let Some(batch) = tx.commit() else {
            return Ok(None);
        };
        shared.batches_committed.fetch_add(1, Ordering::Relaxed);
        let position = batch.position();
        let frame = change_batch_frame(&cell.id, &batch);
        if frame.len().saturating_sub(4) > max_frame_len {
            log::warn!(
                "world {}: batch {} is {} bytes, over the frame limit: sending a snapshot instead",
                cell.id,
                batch.seq,
                frame.len()
            );
            core.ring.clear();
            let snapshot = core.state.snapshot();
            for link in core.subscribers.values() {
                core.send_snapshot(&cell.id, &snapshot, link, max_frame_len);
            }
            return Ok(Some(position));
        }
        core.ring
            .push(RecentBatch::with_encoded(Arc::new(batch), frame.clone()));
        for link in core.subscribers.values() {
            let _ = link.outbox.push(frame.clone(), FrameKind::Batch);
        }
        Ok(Some(position))
    }
}

/// Handles a front-end's `Subscribe`: registers it and sends what it is missing (the
/// ring's batches, or a snapshot), or `WorldRemoved` if the world is not hosted.
pub(crate) fn subscribe(
    shared: &Shared,
    link: &Arc<Link>,
    world: WorldId,
    since: Option<Position>,
) {
    let cell = lock(&shared.registry).worlds.get(&world).cloned();
    let removed_frame = || {
        GameToFrontend::WorldRemoved {
            world: world.clone(),
        }
        .encode_to_bytes()
    };
    let Some(cell) = cell else {
        let _ = link.outbox.push(removed_frame(), FrameKind::Other);
        return;
    };
    let mut core = lock(&cell.core);
    if core.removed {
        let _ = link.outbox.push(removed_frame(), FrameKind::Other);
        return;
    }
    core.subscribers.insert(link.id, Arc::clone(link));
    match subscribe_frames(
        &world,
        &core.state,
        &core.ring,
        since,
        shared.config.max_frame_len,
    ) {
        Ok(frames) => {
            for frame in frames {
                let _ = match frame {
                    SubscribeFrame::Batch(bytes) => link.outbox.push(bytes, FrameKind::Batch),
                    SubscribeFrame::Snapshot(bytes, frames) => {
                        link.outbox
                            .push_frames(bytes, FrameKind::Snapshot, frames as u64)
                    }
                };
            }
        }
        Err(error) => log::error!("world {world}: snapshot cannot be encoded: {error}"),
    }
}

/// Handles a front-end's `Unsubscribe`.
pub(crate) fn unsubscribe(shared: &Shared, frontend: FrontendId, world: &WorldId) {
    let cell = lock(&shared.registry).worlds.get(world).cloned();
    if let Some(cell) = cell {
        lock(&cell.core).subscribers.remove(&frontend);
    }
}
