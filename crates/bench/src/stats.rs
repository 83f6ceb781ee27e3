//! Latency percentiles: an hdrhistogram in nanoseconds, mergeable across processes.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The largest latency recorded, in nanoseconds (larger values are clamped): 60 s.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds with 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // Constant bounds (1 ns .. 60 s, 3 significant digits): a valid configuration
        // whatever the input, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one latency (clamped to 1 ns ..= [`MAX_LATENCY_NS`]).
    pub fn record(&mut self, nanos: u64) {
        let _ = self.histogram.record(nanos.clamp(1, MAX_LATENCY_NS));
    }

    /// Records `count` samples of one latency.
    pub fn record_n(&mut self, nanos: u64, count: u64) {
        let _ = self
            .histogram
            .record_n(nanos.clamp(1, MAX_LATENCY_NS), count);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let _ = self.histogram.add(&other.histogram);
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.histogram.reset();
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The recorded values as `(value_ns, count)` pairs, for sending across processes.
    pub fn to_buckets(&self) -> Vec<(u64, u64)> {
        self.histogram
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// A histogram from [`to_buckets`](Self::to_buckets) output.
    pub fn from_buckets(buckets: &[(u64, u64)]) -> Self {
        let mut histogram = Self::new();
        for &(value, count) in buckets {
            histogram.record_n(value, count);
        }
        histogram
    }

    /// The summary in microseconds.
    pub fn percentiles(&self) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        if self.histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: self.histogram.len(),
            p50_us: us(self.histogram.value_at_quantile(0.50)),
            p90_us: us(self.histogram.value_at_quantile(0.90)),
            p99_us: us(self.histogram.value_at_quantile(0.99)),
            p999_us: us(self.histogram.value_at_quantile(0.999)),
            max_us: us(self.histogram.max()),
            mean_us: self.histogram.mean() / 1000.0,
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// `numerator / denominator`, or an error if the denominator is not positive.
pub fn ratio(numerator: f64, denominator: f64) -> Result<f64, BenchError> {
    if denominator > 0.0 {
        Ok(numerator / denominator)
    } else {
        Err(BenchError::Protocol(
            "no samples to compute a ratio from".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = LatencyHistogram::new();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p90_us - 900.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() <= 1.0, "{p:?}");
    }

    #[test]
    fn buckets_round_trip_and_merge() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for i in 0..500u64 {
            a.record(10_000 + i);
            b.record(1_000_000 + i * 7);
        }
        let back = LatencyHistogram::from_buckets(&a.to_buckets());
        assert_eq!(back.percentiles(), a.percentiles());
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        let p = a.percentiles();
        assert!(p.p50_us < 11.0 && p.p99_us > 1000.0, "{p:?}");
    }

    #[test]
    fn empty_and_clamped() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.percentiles(), Percentiles::default());
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.count(), 2);
        assert!(h.percentiles().max_us >= 59_000_000.0);
        h.reset();
        assert_eq!(h.count(), 0);
        assert!(ratio(1.0, 0.0).is_err());
        assert_eq!(ratio(3.0, 2.0).unwrap(), 1.5);
    }
}
