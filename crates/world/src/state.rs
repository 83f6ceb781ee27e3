//! The authoritative world (game-server side) and its per-tick transactions.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{ChangeBatch, ENTRY_OVERHEAD_BYTES, Position, Snapshot};
use crate::digest::digest_entries;
use crate::ring::{BatchRing, CatchUp};

/// The authoritative state of one world: a sorted map plus `(epoch, seq)`.
///
/// Only [`Transaction::commit`] changes it, and each non-empty commit advances `seq` by one
/// and returns the [`ChangeBatch`] to publish.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WorldState {
    epoch: u64,
    seq: u64,
    entries: BTreeMap<Bytes, Bytes>,
    entry_bytes: usize,
}

impl WorldState {
    /// An empty world starting a new history `epoch` at seq 0.
    ///
    /// Choose a new epoch every time a history starts (each process start, each reload):
    /// random, or derived from the time, passed in by the caller.
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            seq: 0,
            entries: BTreeMap::new(),
            entry_bytes: 0,
        }
    }

    /// A world starting a new history `epoch` at seq 0 with the given entries (for example
    /// state reloaded from storage). A key given twice keeps its last value.
    pub fn with_entries<I, K, V>(epoch: u64, entries: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Bytes>,
        V: Into<Bytes>,
    {
        let mut world = Self::new(epoch);
        for (key, value) in entries {
            world.insert(key.into(), value.into());
        }
        world
    }

    /// The current history.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The seq of the last committed batch (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The current `(epoch, seq)`.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the world holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.entries.get(key)
    }

    /// The committed entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.entries.iter()
    }

    /// Starts a transaction. Changes become visible (and get a seq) only on
    /// [`Transaction::commit`]; dropping the transaction discards them.
    pub fn begin(&mut self) -> Transaction<'_> {
        Transaction {
            world: self,
            pending: BTreeMap::new(),
        }
    }

    /// A snapshot of the committed state (clones `Bytes` handles, not the bytes).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            epoch: self.epoch,
            seq: self.seq,
            entries: self
                .entries
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        }
    }

    /// The stable digest of `(epoch, seq, sorted entries)`; see [`digest_entries`].
    pub fn digest(&self) -> u64 {
        digest_entries(self.epoch, self.seq, self.entries.iter())
    }

    /// Approximate memory held by the entries (lengths plus
    /// [`ENTRY_OVERHEAD_BYTES`] per entry).
    pub fn approx_bytes(&self) -> usize {
        self.entry_bytes
    }

    /// The resume answer for a subscriber that last saw `from`, using `ring` (a ring the
    /// caller fills with this world's committed batches). Same rule as
    /// [`Replica::catch_up`](crate::Replica::catch_up); never answers
    /// [`CatchUp::Pending`].
    pub fn catch_up(&self, ring: &BatchRing, from: Position) -> CatchUp {
        match ring.batches_since(self.position(), from) {
            Some(batches) if batches.is_empty() => CatchUp::UpToDate,
            Some(batches) => CatchUp::Batches(batches),
            None => CatchUp::Snapshot(Arc::new(self.snapshot())),
        }
    }

    fn insert(&mut self, key: Bytes, value: Bytes) {
        let value_len = value.len();
        let key_len = key.len();
        match self.entries.insert(key, value) {
            Some(old) => {
                self.entry_bytes = self.entry_bytes - old.len() + value_len;
            }
            None => self.entry_bytes += key_len + value_len + ENTRY_OVERHEAD_BYTES,
        }
    }
}

/// The changes of one tick, applied atomically by [`commit`](Transaction::commit).
///
/// Within a transaction the last write to a key wins (a key set ten times in a tick is
/// sent once). Writes that change nothing (setting the current value, removing an absent
/// key) are dropped at commit.
#[derive(Debug)]
pub struct Transaction<'w> {
    world: &'w mut WorldState,
    /// `Some(value)`: upsert; `None`: remove.
    pending: BTreeMap<Bytes, Option<Bytes>>,
}

impl Transaction<'_> {
    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.pending.insert(key.into(), Some(value.into()));
    }

    /// Removes `key` (a no-op at commit if the key does not exist).
    pub fn remove(&mut self, key: impl Into<Bytes>) {
        self.pending.insert(key.into(), None);
    }

    /// The value of `key` as this transaction would leave it.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        match self.pending.get(key) {
            Some(pending) => pending.as_ref(),
            None => self.world.get(key),
        }
    }

    /// The number of keys written so far in this transaction.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Applies the changes. Returns the batch (with `seq + 1`, upserts and removes sorted
    /// by key) or `None` when nothing actually changed, in which case `seq` stays as is.
    pub fn commit(self) -> Option<ChangeBatch> {
        let world = self.world;
        let mut upserts = Vec::new();
        let mut removes = Vec::new();
        for (key, change) in self.pending {
            match change {
                Some(value) => {
                    if world.entries.get(&key) != Some(&value) {
                        world.insert(key.clone(), value.clone());
                        upserts.push((key, value));
                    }
                }
                None => {
                    if let Some(old) = world.entries.remove(&key) {
                        world.entry_bytes -= key.len() + old.len() + ENTRY_OVERHEAD_BYTES;
                        removes.push(key);
                    }
                }
            }
        }
        if upserts.is_empty() && removes.is_empty() {
            return None;
        }
        // A u64 seq at one batch per microsecond lasts 584,000 years: wrapping is moot.
        world.seq = world.seq.wrapping_add(1);
        Some(ChangeBatch {
            epoch: world.epoch,
            seq: world.seq,
            upserts,
            removes,
        })
    }
}
