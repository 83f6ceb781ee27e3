//! A follower copy of a world (front-end or client side).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::batch::{ChangeBatch, ENTRY_OVERHEAD_BYTES, Position, Snapshot};
use crate::digest::digest_entries;
use crate::error::WorldError;
use crate::ring::{BatchRing, CatchUp, RecentBatch, RingLimits};

/// How a [`Replica`] is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaConfig {
    /// Bounds of the ring of recent batches used for catch-up. Clients, which never serve
    /// catch-up, use [`RingLimits::NONE`].
    pub ring: RingLimits,
}

impl ReplicaConfig {
    /// A replica that keeps no recent batches (client side).
    pub const CLIENT: ReplicaConfig = ReplicaConfig {
        ring: RingLimits::NONE,
    };
}

/// What [`Replica::apply_batch`] did with a batch it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The batch was the next one: applied and kept in the ring.
    Applied,
    /// The batch's seq is at or below the replica's (a duplicate, or a subscriber that
    /// resumed ahead of its new front-end): ignored. Do not forward it.
    AlreadyHad,
}

/// A follower copy of one world: snapshot + batches in, state, snapshots and catch-up out.
///
/// Keys and values are **copied** into the replica's own map (one allocation each), so a
/// long-lived value never pins a large receive buffer it was sliced from. Batches kept in
/// the ring are kept as given (typically zero-copy slices of their frame), and are
/// short-lived.
#[derive(Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Replica {
    synced: bool,
    epoch: u64,
    seq: u64,
    entries: BTreeMap<Bytes, Bytes>,
    entry_bytes: usize,
    ring: BatchRing,
    /// Derived from the entries on demand; not part of a checkpoint.
    #[cfg_attr(feature = "serde", serde(skip))]
    snapshot_cache: OnceLock<Arc<Snapshot>>,
}

impl Replica {
    /// An empty replica waiting for its first snapshot.
    pub fn new(config: ReplicaConfig) -> Self {
        Self {
            synced: false,
            epoch: 0,
            seq: 0,
            entries: BTreeMap::new(),
            entry_bytes: 0,
            ring: BatchRing::new(config.ring),
            snapshot_cache: OnceLock::new(),
        }
    }

    /// True once a snapshot has been applied.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The current history (0 before the first snapshot).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The seq of the last batch applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The current `(epoch, seq)`, or `None` before the first snapshot. A client sends this
    /// in its subscribe to resume.
    pub fn position(&self) -> Option<Position> {
        self.synced.then_some(Position {
            epoch: self.epoch,
            seq: self.seq,
        })
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the replica holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.entries.get(key)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.entries.iter()
    }

    /// The ring of recent batches.
    pub fn ring(&self) -> &BatchRing {
        &self.ring
    }

    /// Replaces the whole state with `snapshot` (any epoch, any seq: a snapshot may come at
    /// any time, for example when a slow subscriber is resynced). The ring is cleared
    /// unless the snapshot is at exactly the replica's current position.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let same_position = self.synced && snapshot.epoch == self.epoch && snapshot.seq == self.seq;
        if !same_position {
            self.ring.clear();
        }
        self.entries.clear();
        self.entry_bytes = 0;
        for (key, value) in &snapshot.entries {
            self.upsert(key, value);
        }
        self.epoch = snapshot.epoch;
        self.seq = snapshot.seq;
        self.synced = true;
        self.snapshot_cache = OnceLock::new();
    }

    /// Applies the next batch (see [`apply_recent`](Self::apply_recent)).
    pub fn apply_batch(&mut self, batch: ChangeBatch) -> Result<ApplyOutcome, WorldError> {
        self.apply_recent(RecentBatch::new(Arc::new(batch)))
    }

    /// Applies the next batch together with its encoded frame, which the ring keeps for
    /// catch-up so the frame is never encoded twice.
    ///
    /// - before any snapshot: [`WorldError::NotSynced`];
    /// - other epoch: [`WorldError::EpochMismatch`];
    /// - seq at or below the replica's: ignored, `Ok(ApplyOutcome::AlreadyHad)`;
    /// - seq past the next one: [`WorldError::Gap`];
    /// - otherwise applied (removes, then upserts), kept in the ring,
    ///   `Ok(ApplyOutcome::Applied)`.
    ///
    /// On error the replica is unchanged; the caller resyncs it from a snapshot.
    pub fn apply_recent(&mut self, entry: RecentBatch) -> Result<ApplyOutcome, WorldError> {
        let batch = &entry.batch;
        if !self.synced {
            return Err(WorldError::NotSynced {
                epoch: batch.epoch,
                seq: batch.seq,
            });
        }
        if batch.epoch != self.epoch {
            return Err(WorldError::EpochMismatch {
                expected: self.epoch,
                got: batch.epoch,
            });
        }
        if batch.seq <= self.seq {
            return Ok(ApplyOutcome::AlreadyHad);
        }
        let expected = self.seq + 1; // self.seq < batch.seq <= u64::MAX
        if batch.seq != expected {
            return Err(WorldError::Gap {
                expected,
                got: batch.seq,
            });
        }
        for key in &batch.removes {
            if let Some((key, value)) = self.entries.remove_entry(key.as_ref()) {
                self.entry_bytes -= key.len() + value.len() + ENTRY_OVERHEAD_BYTES;
            }
        }
        for (key, value) in &batch.upserts {
            self.upsert(key, value);
        }
        self.seq = batch.seq;
        self.snapshot_cache = OnceLock::new();
        self.ring.push(entry);
        Ok(ApplyOutcome::Applied)
    }

    /// The current state as a snapshot, or `None` before the first snapshot. Built once per
    /// position and shared: many subscribers resyncing at the same seq cost one snapshot.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        if !self.synced {
            return None;
        }
        Some(Arc::clone(self.snapshot_cache.get_or_init(|| {
            Arc::new(Snapshot {
                epoch: self.epoch,
                seq: self.seq,
                entries: self
                    .entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            })
        })))
    }

    /// The resume rule for a subscriber that last saw `from`:
    ///
    /// - no state yet: [`CatchUp::Pending`];
    /// - same epoch and `from.seq >= seq`: [`CatchUp::UpToDate`];
    /// - same epoch and every batch after `from.seq` still in the ring:
    ///   [`CatchUp::Batches`] with exactly those, oldest first;
    /// - otherwise (other epoch, or older than the ring): [`CatchUp::Snapshot`].
    ///
    /// A new subscriber with no position should simply get [`snapshot`](Self::snapshot).
    pub fn catch_up(&self, from: Position) -> CatchUp {
        let Some(current) = self.position() else {
            return CatchUp::Pending;
        };
        match self.ring.batches_since(current, from) {
            Some(batches) if batches.is_empty() => CatchUp::UpToDate,
            Some(batches) => CatchUp::Batches(batches),
            None => self.snapshot().map_or(CatchUp::Pending, CatchUp::Snapshot),
        }
    }

    /// The stable digest of `(epoch, seq, sorted entries)`, equal to
    /// [`WorldState::digest`](crate::WorldState::digest) of an authority at the same state.
    pub fn digest(&self) -> u64 {
        digest_entries(self.epoch, self.seq, self.entries.iter())
    }

    /// Approximate memory held: entries, the ring, and the cached snapshot if any.
    pub fn approx_bytes(&self) -> usize {
        let cached = self.snapshot_cache.get().map_or(0, |snapshot| {
            snapshot.entries.len() * 2 * std::mem::size_of::<Bytes>()
        });
        self.entry_bytes + self.ring.approx_bytes() + cached + std::mem::size_of::<Self>()
    }

    fn upsert(&mut self, key: &Bytes, value: &Bytes) {
        let value = Bytes::copy_from_slice(value);
        match self.entries.get_mut(key.as_ref()) {
            Some(slot) => {
                self.entry_bytes = self.entry_bytes - slot.len() + value.len();
                *slot = value;
            }
            None => {
                self.entry_bytes += key.len() + value.len() + ENTRY_OVERHEAD_BYTES;
                self.entries.insert(Bytes::copy_from_slice(key), value);
            }
        }
    }
}
