//! The values that travel: change batches, snapshots and stream positions.

use bytes::Bytes;

use crate::digest::digest_entries;

/// Bytes charged per entry on top of its key and value lengths in memory accounting
/// (`approx_bytes`): roughly two `Bytes` handles plus a share of a map node.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// A position in a world's history: the last `(epoch, seq)` a subscriber has seen.
///
/// Not ordered on purpose: seqs of different epochs do not compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Position {
    /// The history the seq belongs to.
    pub epoch: u64,
    /// The seq of the last batch applied (0: the state before the first batch).
    pub seq: u64,
}

/// One committed change of a world: the step from `seq - 1` to `seq` within `epoch`.
///
/// Applying a batch removes the keys in `removes` first, then inserts or replaces the
/// `upserts` in order (so a key listed in both ends up upserted; batches made by
/// [`WorldState`](crate::WorldState) never list a key twice).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ChangeBatch {
    /// The history this batch belongs to.
    pub epoch: u64,
    /// The seq this batch brings the world to.
    pub seq: u64,
    /// Keys set to a new value.
    pub upserts: Vec<(Bytes, Bytes)>,
    /// Keys removed.
    pub removes: Vec<Bytes>,
}

impl ChangeBatch {
    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removes.is_empty()
    }

    /// The position a replica reaches by applying this batch.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Approximate memory held by this batch: key and value lengths plus
    /// [`ENTRY_OVERHEAD_BYTES`] per entry.
    pub fn approx_bytes(&self) -> usize {
        let upserts: usize = self
            .upserts
            .iter()
            .map(|(key, value)| key.len() + value.len() + ENTRY_OVERHEAD_BYTES)
            .sum();
        let removes: usize = self
            .removes
            .iter()
            .map(|key| key.len() + ENTRY_OVERHEAD_BYTES)
            .sum();
        upserts + removes + std::mem::size_of::<Self>()
    }
}

/// The whole state of a world at `(epoch, seq)`.
///
/// `entries` are sorted by key with unique keys when made by this crate. A snapshot read
/// from the network may break that rule; [`Replica::apply_snapshot`](crate::Replica::apply_snapshot)
/// accepts it anyway (the last entry of a duplicated key wins).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// The history this snapshot belongs to.
    pub epoch: u64,
    /// The seq of the last batch included.
    pub seq: u64,
    /// Every `(key, value)` of the world, sorted by key.
    pub entries: Vec<(Bytes, Bytes)>,
}

impl Snapshot {
    /// The position of this snapshot.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// The digest of this snapshot (equal to the digest of the world it was taken from
    /// when the entries are sorted and unique).
    pub fn digest(&self) -> u64 {
        digest_entries(
            self.epoch,
            self.seq,
            self.entries.iter().map(|(key, value)| (key, value)),
        )
    }

    /// Approximate memory held by this snapshot (see [`ENTRY_OVERHEAD_BYTES`]).
    pub fn approx_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, value)| key.len() + value.len() + ENTRY_OVERHEAD_BYTES)
            .sum::<usize>()
            + std::mem::size_of::<Self>()
    }
}
