//! The set of servers not yet tried in the current round, with uniform random picks.
//!
//! A lazy Fisher–Yates shuffle: `order` is always a permutation of the server indices and
//! its first `untried` entries are exactly the servers still untried in this round.
//! Picking, marking a server as tried and starting a new round are all O(1).

use alloc::vec::Vec;

use rand::Rng;

use crate::pick_uniform;

/// Which servers are still untried in the current round.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    /// A permutation of `0..len`; `order[..untried]` are the untried servers.
    order: Vec<usize>,
    /// `position[server]` is the index of `server` in `order`.
    position: Vec<usize>,
    /// How many servers are still untried.
    untried: usize,
}

impl Round {
    /// A fresh round over `server_count` servers, all untried.
    pub(crate) fn new(server_count: usize) -> Self {
        Round {
            order: (0..server_count).collect(),
            position: (0..server_count).collect(),
            untried: server_count,
        }
    }

    /// How many servers there are in total.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Starts a new round: every server is untried again.
    pub(crate) fn reset(&mut self) {
        self.untried = self.order.len();
    }

    /// Whether every server has been tried in this round.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.untried == 0
    }

    /// How many servers are still untried in this round.
    pub(crate) fn untried_count(&self) -> usize {
        self.untried
    }

    /// Whether `server` is still untried in this round (false for out-of-range indices).
    pub(crate) fn is_untried(&self, server: usize) -> bool {
        self.position
            .get(server)
            .is_some_and(|&pos| pos < self.untried)
    }

    /// Records that `server` has been tried in this round. Idempotent; ignores
    /// out-of-range indices.
    pub(crate) fn mark_tried(&mut self, server: usize) {
        let Some(&pos) = self.position.get(server) else {
            return;
        };
        if pos >= self.untried {
            return;
        }
        let last = self.untried - 1;
        let Some(&moved) = self.order.get(last) else {
            return;
        };
        // Both indices are below `untried <= order.len()`.
        self.order.swap(pos, last);
        if let Some(slot) = self.position.get_mut(moved) {
            *slot = pos;
        }
        if let Some(slot) = self.position.get_mut(server) {
            *slot = last;
        }
        self.untried = last;
    }

    /// Picks a server uniformly at random among the untried ones, starting a new round
    /// first if every server has been tried. Does not mark the pick as tried.
    ///
    /// The round is never empty (the balancer rejects an empty server list), so the
    /// fallbacks to server 0 below are unreachable; they keep this code panic-free.
    pub(crate) fn pick<R: Rng + ?Sized>(&mut self, rng: &mut R) -> usize {
        if self.is_exhausted() {
            self.reset();
        }
        let index = pick_uniform(rng, self.untried).unwrap_or(0);
        self.order.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn picks_cover_every_server_once_per_round() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut round = Round::new(7);
        for _ in 0..5 {
            let mut seen = [false; 7];
            for _ in 0..7 {
                let server = round.pick(&mut rng);
                assert!(round.is_untried(server));
                assert!(!seen[server], "server {server} picked twice in one round");
                seen[server] = true;
                round.mark_tried(server);
            }
            assert!(round.is_exhausted());
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn mark_tried_is_idempotent_and_ignores_out_of_range() {
        let mut round = Round::new(3);
        round.mark_tried(1);
        round.mark_tried(1);
        round.mark_tried(99);
        assert_eq!(round.untried_count(), 2);
        assert!(!round.is_untried(1));
        assert!(round.is_untried(0) && round.is_untried(2));
        assert!(!round.is_untried(99));
        round.reset();
        assert_eq!(round.untried_count(), 3);
        assert!(round.is_untried(1));
    }
}
