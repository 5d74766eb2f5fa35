//! A latency histogram that can also be read back: Prometheus scrapes it as
//! a histogram, and a node hands its bucket counts over the links so the
//! admin page can draw a p99 without a Prometheus of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds, in seconds, of the buckets: 1 ms doubling to 16.384 s.
/// One more bucket counts what took longer.
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];

/// How many counts [`Latency::counts`] returns: the buckets and the one beyond.
pub const LATENCY_COUNTS: usize = LATENCY_BUCKETS.len() + 1;

/// Times, in a Prometheus histogram and in counts per bucket.
pub struct Latency {
    histogram: Histogram,
    counts: [AtomicU64; LATENCY_COUNTS],
}

impl Default for Latency {
    fn default() -> Self {
        Self { histogram: Histogram::new(LATENCY_BUCKETS), counts: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Latency {
    /// Counts one time, in seconds.
    pub fn observe(&self, seconds: f64) {
        self.histogram.observe(seconds);
        let bucket = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Times counted since the start, per bucket (not cumulative): bucket
    /// `i` counts those up to `LATENCY_BUCKETS[i]`, the last those beyond.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// What Prometheus scrapes.
    pub(crate) fn histogram(&self) -> Histogram {
        self.histogram.clone()
    }
}

/// The time below which `quantile` (0..1) of the times in `counts` (as
/// [`Latency::counts`] gives them) fell, interpolated within its bucket as
/// Prometheus's `histogram_quantile` does; `None` when nothing was counted.
/// Past the last bound it is that bound: the buckets say no more.
pub fn quantile(counts: &[u64], quantile: f64) -> Option<f64> {
    // Counts may come from another node: add without overflowing.
    let total = counts.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
    if total == 0 {
        return None;
    }
    let rank = quantile.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, count) in counts.iter().enumerate() {
        if below.saturating_add(*count) as f64 >= rank && *count > 0 {
            let Some(upper) = LATENCY_BUCKETS.get(i) else {
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            return Some(lower + (upper - lower) * (rank - below as f64) / *count as f64);
        }
        below = below.saturating_add(*count);
    }
    LATENCY_BUCKETS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_counted_in_the_first_bucket_that_holds_it() {
        let latency = Latency::default();
        for seconds in [0.0005, 0.001, 0.0011, 0.5, 99.0] {
            latency.observe(seconds);
        }
        let counts = latency.counts();
        assert_eq!(counts.len(), LATENCY_COUNTS);
        assert_eq!((counts[0], counts[1], counts[9], counts[15]), (2, 1, 1, 1));
        assert_eq!(counts.iter().sum::<u64>(), 5);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t_seconds", "t", latency.histogram());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("t_seconds_count 5"), "{text}");
    }

    #[test]
    fn the_quantile_is_interpolated_within_its_bucket() {
        assert_eq!(quantile(&[0; LATENCY_COUNTS], 0.99), None);
        let mut counts = [0u64; LATENCY_COUNTS];
        counts[0] = 99; // up to 1 ms
        counts[3] = 1; // 4..8 ms
        assert!((quantile(&counts, 0.99).unwrap() - 0.001).abs() < 1e-12);
        assert!((quantile(&counts, 1.0).unwrap() - 0.008).abs() < 1e-12);
        assert!((quantile(&counts, 0.995).unwrap() - 0.006).abs() < 1e-12);
        counts[LATENCY_COUNTS - 1] = 1000;
        assert_eq!(quantile(&counts, 0.99), Some(16.384));
    }

    #[test]
    fn garbage_counts_give_no_panic() {
        assert_eq!(quantile(&[], 0.99), None);
        assert!(quantile(&[1; 40], 0.99).is_some());
        assert!(quantile(&[u64::MAX; LATENCY_COUNTS], 0.99).is_some_and(|s| s <= 0.001));
        assert_eq!(quantile(&[1; LATENCY_COUNTS], f64::NAN), Some(16.384));
    }
}
