//! Exponential backoff with full jitter, and the settings that drive it.
//!
//! The delay before retry number `k` (counting from 0) is drawn uniformly from
//! `[0, min(cap, base * 2^k)]` ("full jitter", from the AWS architecture blog post
//! "Exponential Backoff And Jitter"). Spreading every client's retry over the whole
//! interval, instead of sleeping the full ceiling, is what keeps a fleet of clients from
//! reconnecting in lock-step after a server restart. `2^k` saturates, so any exponent is
//! safe.

use core::time::Duration;

use rand::Rng;
use rand::distr::{Distribution, Uniform};

/// Nanoseconds in one second, for rebuilding a [`Duration`] from a `u128` count.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// How a [`Balancer`](crate::Balancer) spaces its connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first backoff delay; each further failed round doubles it. Default 100 ms.
    pub base: Duration,
    /// Largest ceiling a backoff delay can reach. Default 30 s.
    pub cap: Duration,
    /// `true` (the default): after a server fails, try a different untried server at
    /// once and back off only when every server has failed in the current round.
    /// `false`: back off after every single failure (exponent = consecutive failures - 1),
    /// still preferring servers not yet tried in the round.
    pub immediate_failovers: bool,
    /// A connection that stays up at least this long is "stable": losing it later starts
    /// a fresh round and clears the backoff. A connection lost sooner counts like a failed
    /// connection attempt in the current round, so a server that accepts and then drops
    /// at once cannot cause a hot reconnect loop. Default 5 s.
    pub stable_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            immediate_failovers: true,
            stable_after: Duration::from_secs(5),
        }
    }
}

impl BackoffConfig {
    /// The upper bound of the delay for backoff number `exponent` (0 for the first):
    /// `min(cap, base * 2^exponent)`, saturating.
    pub fn ceiling(&self, exponent: u32) -> Duration {
        backoff_ceiling(self.base, self.cap, exponent)
    }

    /// A full-jitter delay for backoff number `exponent`: uniform in `[0, ceiling(exponent)]`.
    pub fn delay<R: Rng + ?Sized>(&self, rng: &mut R, exponent: u32) -> Duration {
        full_jitter(rng, self.ceiling(exponent))
    }
}

/// `min(cap, base * 2^exponent)`, computed without overflow for every input.
pub fn backoff_ceiling(base: Duration, cap: Duration, exponent: u32) -> Duration {
    let base_nanos = base.as_nanos();
    let cap_nanos = cap.as_nanos();
    if base_nanos == 0 {
        return Duration::ZERO;
    }
    // `base_nanos << exponent` fits in a u128 only while the shift keeps the top bit.
    let scaled = if exponent < base_nanos.leading_zeros() {
        base_nanos << exponent
    } else {
        u128::MAX
    };
    duration_from_nanos(scaled.min(cap_nanos))
}

/// A delay drawn uniformly from `[0, ceiling]` (both ends included), at nanosecond
/// resolution and without modulo bias.
pub fn full_jitter<R: Rng + ?Sized>(rng: &mut R, ceiling: Duration) -> Duration {
    match Uniform::new_inclusive(0u128, ceiling.as_nanos()) {
        Ok(range) => duration_from_nanos(range.sample(rng)),
        // `0 <= ceiling` always holds, so the range is never empty.
        Err(_) => Duration::ZERO,
    }
}

/// Rebuilds a [`Duration`] from nanoseconds; callers pass at most some `Duration::as_nanos()`,
/// so the seconds always fit (saturates otherwise).
fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below one billion, which fits a u32.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn ceiling_doubles_then_caps() {
        let config = BackoffConfig::default();
        assert_eq!(config.ceiling(0), Duration::from_millis(100));
        assert_eq!(config.ceiling(1), Duration::from_millis(200));
        assert_eq!(config.ceiling(8), Duration::from_millis(25_600));
        assert_eq!(config.ceiling(9), Duration::from_secs(30));
        assert_eq!(config.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn ceiling_saturates_on_huge_values() {
        assert_eq!(
            backoff_ceiling(Duration::MAX, Duration::MAX, 0),
            Duration::MAX
        );
        assert_eq!(
            backoff_ceiling(Duration::MAX, Duration::MAX, 1),
            Duration::MAX
        );
        assert_eq!(
            backoff_ceiling(Duration::MAX, Duration::MAX, u32::MAX),
            Duration::MAX
        );
        let one_ns = Duration::from_nanos(1);
        // 2^40 ns is about 1100 s: above a 30 s cap even though 2^31 ns is not.
        assert_eq!(
            backoff_ceiling(one_ns, Duration::from_secs(30), 40),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff_ceiling(one_ns, Duration::MAX, 90),
            duration_from_nanos(1 << 90)
        );
        assert_eq!(backoff_ceiling(one_ns, Duration::MAX, 126), Duration::MAX);
        assert_eq!(
            backoff_ceiling(Duration::ZERO, Duration::MAX, 1000),
            Duration::ZERO
        );
        assert_eq!(
            backoff_ceiling(Duration::from_secs(1), Duration::ZERO, 3),
            Duration::ZERO
        );
    }

    #[test]
    fn jitter_stays_in_range_and_spreads() {
        let mut rng = SmallRng::seed_from_u64(7);
        let ceiling = Duration::from_millis(800);
        let mut below_half = 0u32;
        for _ in 0..10_000 {
            let delay = full_jitter(&mut rng, ceiling);
            assert!(delay <= ceiling);
            if delay < ceiling / 2 {
                below_half += 1;
            }
        }
        // Uniform: about half below the midpoint (binomial sd = 50).
        assert!(
            (4_700..=5_300).contains(&below_half),
            "below half: {below_half}"
        );
        assert_eq!(full_jitter(&mut rng, Duration::ZERO), Duration::ZERO);
        assert!(full_jitter(&mut rng, Duration::MAX) <= Duration::MAX);
    }
}
