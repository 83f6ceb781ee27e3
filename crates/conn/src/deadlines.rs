//! A lazy min-heap of per-key deadlines: how a machine holding many connections answers
//! `poll_timeout` without a periodic scan.
//!
//! The rule that makes it lazy: a connection's deadline only moves *later* through
//! activity (a frame received or sent pushes its keep-alive deadlines back), so an entry
//! in the heap is never later than the true deadline. When an entry comes due, the owner
//! looks at the connection: if its true deadline is still ahead, it re-schedules it there;
//! if it is due, it acts and re-schedules the next one. A deadline that moves *earlier*
//! (a new connection, a pause lifted) is scheduled again, and the older entry is skipped
//! when it comes up because it no longer matches the key's current entry.
//!
//! Each key has at most one live entry, tracked by the owner as the instant it was
//! scheduled at (`Option<Instant>` stored next to the connection).

use alloc::collections::BinaryHeap;
use core::cmp::Reverse;

use crate::Instant;

/// Deadlines of many keys (connection ids), earliest first.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Deadlines<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for Deadlines<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy> Deadlines<K> {
    /// No deadlines.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }

    /// Schedules `key` at `at` unless its live entry (`scheduled`) is already at or before
    /// `at`; updates `scheduled`. Call with the key's true next deadline whenever it may
    /// have moved earlier.
    pub fn schedule(&mut self, key: K, at: Option<Instant>, scheduled: &mut Option<Instant>) {
        let Some(at) = at else { return };
        if scheduled.is_some_and(|current| current <= at) {
            return;
        }
        *scheduled = Some(at);
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry's instant (possibly stale: then it is skipped when popped, so
    /// the owner is woken early, never late).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the next entry due at `now`: its key and the instant it was scheduled at. The
    /// owner checks it against the key's live entry with [`Deadlines::is_live`]: a stale
    /// entry (the key is gone, or was scheduled again earlier) is ignored.
    pub fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((at, key))| (key, at))
            }
            _ => None,
        }
    }

    /// True when an entry popped at `at` is the key's live one (`scheduled`); clears
    /// `scheduled` then, so the owner schedules the key's next deadline afresh.
    pub fn is_live(at: Instant, scheduled: &mut Option<Instant>) -> bool {
        if *scheduled == Some(at) {
            *scheduled = None;
            true
        } else {
            false
        }
    }

    /// Entries in the heap, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry is left.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops every entry when stale ones outnumber the live ones by far, so a heap whose
    /// keys came and went does not keep their memory; the owner then re-schedules every
    /// live key (`live` of them) with a cleared `scheduled`. Returns true if it did.
    pub fn compact_if_sparse(&mut self, live: usize) -> bool {
        if self.heap.len() > 1024 && self.heap.len() > live.saturating_mul(4) {
            self.heap = BinaryHeap::new();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn entries_come_due_in_order_and_stale_ones_are_skipped() {
        let mut deadlines = Deadlines::new();
        let mut a = None;
        let mut b = None;
        deadlines.schedule(1u32, Some(Instant::from_millis(200)), &mut a);
        deadlines.schedule(2u32, Some(Instant::from_millis(100)), &mut b);
        // A later deadline for a key already scheduled earlier adds nothing.
        deadlines.schedule(1u32, Some(Instant::from_millis(300)), &mut a);
        assert_eq!(deadlines.len(), 2);
        // An earlier one replaces it; the old entry goes stale.
        deadlines.schedule(1u32, Some(Instant::from_millis(50)), &mut a);
        assert_eq!(deadlines.next(), Some(Instant::from_millis(50)));
        assert_eq!(deadlines.pop_due(Instant::from_millis(40)), None);
        let (key, at) = deadlines.pop_due(Instant::from_millis(250)).unwrap();
        assert_eq!(key, 1);
        assert!(Deadlines::<u32>::is_live(at, &mut a));
        let (key, at) = deadlines.pop_due(Instant::from_millis(250)).unwrap();
        assert_eq!(key, 2);
        assert!(Deadlines::<u32>::is_live(at, &mut b));
        let (key, at) = deadlines.pop_due(Instant::from_millis(250)).unwrap();
        assert_eq!(key, 1);
        assert!(
            !Deadlines::<u32>::is_live(at, &mut a),
            "the stale 200 ms entry"
        );
        assert!(deadlines.is_empty());
    }

    proptest! {
        /// Against a model: whatever the schedule calls, every key whose latest requested
        /// deadline is due pops as live exactly once, and no key pops live early.
        #[test]
        fn it_never_fires_late_or_early(ops in proptest::collection::vec((0u8..8, 0u64..1000), 1..200)) {
            let mut deadlines = Deadlines::new();
            let mut scheduled: BTreeMap<u8, Option<Instant>> = BTreeMap::new();
            let mut want: BTreeMap<u8, Instant> = BTreeMap::new();
            for (key, at) in ops {
                let at = Instant::from_millis(at);
                let slot = scheduled.entry(key).or_default();
                deadlines.schedule(key, Some(at), slot);
                let earliest = want.get(&key).map_or(at, |w| (*w).min(at));
                want.insert(key, earliest);
            }
            let mut fired: Vec<(u8, Instant)> = Vec::new();
            while let Some((key, at)) = deadlines.pop_due(Instant::MAX) {
                let slot = scheduled.entry(key).or_default();
                if Deadlines::<u8>::is_live(at, slot) {
                    fired.push((key, at));
                }
            }
            let expected: Vec<(u8, Instant)> = {
                let mut v: Vec<(u8, Instant)> = want.into_iter().collect();
                v.sort_by_key(|(k, at)| (*at, *k));
                v
            };
            fired.sort_by_key(|(k, at)| (*at, *k));
            prop_assert_eq!(fired, expected);
        }
    }
}
