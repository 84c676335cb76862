//! A latency histogram recorded with atomics only (prometheus-client's own histogram takes a
//! mutex per observation). Fixed bucket bounds in whole microseconds, exported in seconds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the latency buckets, in microseconds: 1-2-5 steps from 1 us to 5 s. The
/// exported `le` labels are these values in seconds; a `+Inf` bucket follows.
pub const LATENCY_BOUNDS_US: [u64; 22] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

#[derive(Debug)]
struct Inner {
    /// Bucket bounds in nanoseconds (so classification is an integer comparison).
    bounds_ns: Vec<u64>,
    /// One count per bound, then the +Inf bucket; not cumulative.
    counts: Vec<AtomicU64>,
    /// Sum of all observations in nanoseconds (wraps after 584 years of total latency).
    sum_ns: AtomicU64,
}

/// A histogram of durations; cloning shares the counts.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Arc<Inner>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new(&LATENCY_BOUNDS_US)
    }
}

impl LatencyHistogram {
    /// A histogram with the given bounds (microseconds, strictly increasing).
    pub fn new(bounds_us: &[u64]) -> LatencyHistogram {
        debug_assert!(bounds_us.windows(2).all(|w| w[0] < w[1]));
        LatencyHistogram {
            inner: Arc::new(Inner {
                bounds_ns: bounds_us
                    .iter()
                    .map(|us| us.saturating_mul(1_000))
                    .collect(),
                counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration: two relaxed atomic additions.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.inner.bounds_ns.partition_point(|&b| b < ns);
        self.inner.counts[i].fetch_add(1, Relaxed);
        self.inner.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Observations so far (the sum of the buckets).
    pub fn count(&self) -> u64 {
        self.inner.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.inner.sum_ns.load(Relaxed))
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Read the buckets once and derive the count from them, so `_count` always equals the
        // +Inf bucket even while other threads observe.
        let inner = &self.inner;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        for (i, c) in inner.counts.iter().enumerate() {
            let bound = inner
                .bounds_ns
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            buckets.push((bound, c.load(Relaxed)));
        }
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.sum_ns.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_upper_limits() {
        let h = LatencyHistogram::new(&[1, 10]);
        for ns in [0, 1_000, 1_001, 10_000, 10_001, u64::MAX] {
            h.observe(Duration::from_nanos(ns));
        }
        h.observe(Duration::MAX);
        let counts: Vec<u64> = h.inner.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, vec![2, 2, 3]);
        assert_eq!(h.count(), 7);
    }
}
