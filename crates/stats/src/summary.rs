//! Percentile summaries of microsecond histograms, in milliseconds.

use crate::Histogram;

/// Microseconds in a millisecond: histograms hold microseconds, reports show milliseconds.
pub const MICROS_PER_MILLI: f64 = 1_000.0;

/// Creates an empty latency histogram: 1 µs resolution, 3 significant digits,
/// 60 s initial range that grows automatically for longer values.
pub fn new_histogram() -> Histogram {
    let mut h =
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid");
    h.auto(true);
    h
}

/// The headline numbers of one latency distribution, in milliseconds.
///
/// `count` is the number of samples every percentile rests on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of recorded samples.
    pub count: u64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Standard deviation.
    pub stdev_ms: f64,
    /// 50th percentile.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p99_9_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Summarizes a microsecond histogram. An empty histogram gives all zeros.
pub fn summarize(h: &Histogram) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let ms = |us: u64| us as f64 / MICROS_PER_MILLI;
    Summary {
        count: h.len(),
        min_ms: ms(h.min()),
        mean_ms: h.mean() / MICROS_PER_MILLI,
        stdev_ms: h.stdev() / MICROS_PER_MILLI,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p99_9_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_summarizes_to_zero() {
        assert_eq!(summarize(&new_histogram()), Summary::default());
    }

    #[test]
    fn uniform_samples_give_expected_percentiles() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 10_000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
        assert!((s.p99_9_ms - 9.99).abs() < 0.01, "{s:?}");
        assert!((s.mean_ms - 5.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn values_beyond_initial_range_grow_the_histogram() {
        let mut h = new_histogram();
        h.record(2 * 3_600_000_000).unwrap();
        assert!(summarize(&h).max_ms > 7_000_000.0);
    }
}
