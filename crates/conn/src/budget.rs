//! A rate budget (token bucket): at most `per_second` events a second on average, with
//! bursts of up to `burst`. The front-end gives every client connection one for its
//! inputs, so that one flooder cannot take the loop from everyone else.

use crate::Instant;

/// Thousandths of a token: the bucket refills in these, so slow rates lose nothing to
/// rounding.
const MILLI: u64 = 1_000;

/// A token bucket, full at first. Time comes in as the `now` of each call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RateBudget {
    per_second: u64,
    capacity_milli: u64,
    tokens_milli: u64,
    refilled_at: Instant,
}

impl RateBudget {
    /// A full budget of `burst` events, refilled at `per_second` (0 refills nothing after
    /// the burst), from `now`.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let capacity_milli = u64::from(burst.max(1)) * MILLI;
        Self {
            per_second: u64::from(per_second),
            capacity_milli,
            tokens_milli: capacity_milli,
            refilled_at: now,
        }
    }

    /// Takes one event's token at `now`: false when the budget is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens_milli >= MILLI {
            self.tokens_milli -= MILLI;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        if now <= self.refilled_at || self.tokens_milli >= self.capacity_milli {
            self.refilled_at = self.refilled_at.max(now);
            return;
        }
        let elapsed_ns = (now - self.refilled_at).as_nanos();
        // per_second tokens a second = per_second milli-tokens a millisecond.
        let earned =
            u64::try_from(elapsed_ns.saturating_mul(u128::from(self.per_second)) / 1_000_000)
                .unwrap_or(u64::MAX);
        if earned == 0 {
            return; // keep `refilled_at`: the fraction is earned on a later call
        }
        self.tokens_milli = (self.tokens_milli.saturating_add(earned)).min(self.capacity_milli);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::ZERO;
        let mut budget = RateBudget::new(100, 10, start);
        assert!((0..10).all(|_| budget.take(start)));
        assert!(!budget.take(start));
        // 100 a second: one more every 10 ms.
        assert!(!budget.take(start + Duration::from_millis(9)));
        assert!(budget.take(start + Duration::from_millis(10)));
        assert!(!budget.take(start + Duration::from_millis(10)));
        // A long pause refills up to the burst, not more.
        let later = start + Duration::from_secs(60);
        assert!((0..10).all(|_| budget.take(later)));
        assert!(!budget.take(later));
    }

    #[test]
    fn slow_rates_accumulate_fractions() {
        let start = Instant::ZERO;
        let mut budget = RateBudget::new(1, 1, start);
        assert!(budget.take(start));
        // Many calls in between do not lose the fractions earned.
        for ms in (100..1000).step_by(100) {
            assert!(!budget.take(start + Duration::from_millis(ms)));
        }
        assert!(budget.take(start + Duration::from_millis(1000)));
    }
}
