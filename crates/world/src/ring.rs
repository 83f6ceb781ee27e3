//! The bounded ring of recent batches and the resume rule built on it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{ChangeBatch, Position, Snapshot};

/// The bounds of a [`BatchRing`]: it never holds more than `max_batches` batches **nor**
/// more than `max_bytes` bytes (by [`RecentBatch::approx_bytes`]); the oldest batches are
/// evicted first. A single batch larger than `max_bytes` is not kept at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RingLimits {
    /// The maximum number of batches kept.
    pub max_batches: usize,
    /// The maximum approximate bytes kept.
    pub max_bytes: usize,
}

impl RingLimits {
    /// Keep nothing (clients, which never serve catch-up).
    pub const NONE: RingLimits = RingLimits {
        max_batches: 0,
        max_bytes: 0,
    };
}

impl Default for RingLimits {
    /// 256 batches (12.8 s at 20 ticks/s) and 1 MiB.
    fn default() -> Self {
        Self {
            max_batches: 256,
            max_bytes: 1 << 20,
        }
    }
}

/// A batch kept for catch-up, optionally with its encoded wire frame so the front-end
/// sends the same bytes again instead of re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecentBatch {
    /// The decoded batch.
    pub batch: Arc<ChangeBatch>,
    /// The batch's encoded frame (opaque to this crate), if the caller attached one.
    pub encoded: Option<Bytes>,
}

impl RecentBatch {
    /// A batch without an encoded frame.
    pub fn new(batch: Arc<ChangeBatch>) -> Self {
        Self {
            batch,
            encoded: None,
        }
    }

    /// A batch with its encoded frame.
    pub fn with_encoded(batch: Arc<ChangeBatch>, encoded: Bytes) -> Self {
        Self {
            batch,
            encoded: Some(encoded),
        }
    }

    /// Approximate memory charged to this entry: the batch's
    /// [`approx_bytes`](ChangeBatch::approx_bytes) plus the encoded frame's length. When
    /// the batch's values are zero-copy slices of the frame this counts them twice: an
    /// upper bound, on purpose.
    pub fn approx_bytes(&self) -> usize {
        self.batch.approx_bytes() + self.encoded.as_ref().map_or(0, Bytes::len)
    }
}

/// What a subscriber that last saw some position needs to be current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing: the subscriber has everything (same epoch, seq at or past ours). Live
    /// batches follow; a subscriber ahead of us ignores the ones it already has.
    UpToDate,
    /// Exactly the missing batches, oldest first, ending at the current seq.
    Batches(Vec<RecentBatch>),
    /// A snapshot: the subscriber's position is of another epoch, or older than the ring.
    Snapshot(Arc<Snapshot>),
    /// The replica has no state yet (no snapshot received): wait for it.
    Pending,
}

/// A bounded ring of the most recent, contiguous batches of one world.
///
/// The ring always holds a contiguous run of one epoch: pushing a batch that does not
/// follow the last one (other epoch, or a gap) clears it first.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BatchRing {
    limits: RingLimits,
    entries: VecDeque<(RecentBatch, usize)>,
    bytes: usize,
}

impl BatchRing {
    /// An empty ring with these limits.
    pub fn new(limits: RingLimits) -> Self {
        Self {
            limits,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The ring's limits.
    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// The number of batches held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no batch is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held (sum of [`RecentBatch::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// The position of the oldest batch held.
    pub fn first(&self) -> Option<Position> {
        self.entries
            .front()
            .map(|(entry, _)| entry.batch.position())
    }

    /// The position of the newest batch held.
    pub fn last(&self) -> Option<Position> {
        self.entries.back().map(|(entry, _)| entry.batch.position())
    }

    /// The held batches, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &RecentBatch> {
        self.entries.iter().map(|(entry, _)| entry)
    }

    /// Drops every batch.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Appends a batch, clearing the ring first if it does not directly follow the newest
    /// one, then evicts the oldest batches until both limits hold.
    pub fn push(&mut self, entry: RecentBatch) {
        let follows = match self.last() {
            None => true,
            Some(last) => {
                last.epoch == entry.batch.epoch && last.seq.checked_add(1) == Some(entry.batch.seq)
            }
        };
        if !follows {
            self.clear();
        }
        let size = entry.approx_bytes();
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > self.limits.max_batches || self.bytes > self.limits.max_bytes {
            match self.entries.pop_front() {
                Some((_, size)) => self.bytes -= size,
                None => break,
            }
        }
    }

    /// The resume rule. `current` is the position of the world the ring belongs to;
    /// `from` is the last position the subscriber saw.
    ///
    /// - other epoch: `None` (a snapshot is needed);
    /// - same epoch, `from.seq >= current.seq`: `Some(empty)` (up to date);
    /// - same epoch, the ring ends at `current` and holds every batch after `from.seq`:
    ///   `Some(those batches)`, oldest first;
    /// - otherwise `None`.
    pub fn batches_since(&self, current: Position, from: Position) -> Option<Vec<RecentBatch>> {
        if from.epoch != current.epoch {
            return None;
        }
        if from.seq >= current.seq {
            return Some(Vec::new());
        }
        if self.last() != Some(current) {
            return None;
        }
        let first = self.first()?;
        let next_needed = from.seq + 1; // from.seq < current.seq, so no overflow
        if next_needed < first.seq {
            return None;
        }
        let skip = usize::try_from(next_needed - first.seq).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .map(|(entry, _)| entry.clone())
                .collect(),
        )
    }
}

impl Default for BatchRing {
    fn default() -> Self {
        Self::new(RingLimits::default())
    }
}
