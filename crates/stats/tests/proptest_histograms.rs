//! Properties of the histograms and the interval log: merging equals
//! recording the union, and what `hlog` writes it reads back unchanged.

use chokepoint_stats::{hlog, new_histogram, Histogram};
use proptest::prelude::*;

/// Latencies in microseconds: mostly realistic, some far beyond the
/// histogram's initial 60 s bound (it auto-resizes), some at the extremes.
fn values() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            8 => 1u64..100_000,
            2 => 100_000u64..60_000_000,
            1 => 60_000_000u64..10_000_000_000,
            1 => Just(1u64),
        ],
        0..300,
    )
}

fn record(values: &[u64]) -> Histogram {
    let mut h = new_histogram();
    for &v in values {
        h.record(v).unwrap();
    }
    h
}

/// Every recorded bucket with its count: equal iff the histograms are.
fn buckets(h: &Histogram) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn same(a: &Histogram, b: &Histogram) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    prop_assert_eq!(buckets(a), buckets(b));
    if !a.is_empty() {
        prop_assert_eq!(a.min(), b.min());
        prop_assert_eq!(a.max(), b.max());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            prop_assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Per-thread histograms merged once a second must equal one histogram
    /// that saw every request: percentiles stay exact whatever the split.
    #[test]
    fn merging_equals_recording_the_union(parts in prop::collection::vec(values(), 1..6)) {
        let all: Vec<u64> = parts.iter().flatten().copied().collect();
        let mut merged = new_histogram();
        for part in &parts {
            merged.add(record(part)).unwrap();
        }
        same(&merged, &record(&all))?;
    }

    /// Merging is order independent (threads are collected in any order).
    #[test]
    fn merge_order_does_not_matter(a in values(), b in values(), c in values()) {
        let mut abc = record(&a);
        abc.add(record(&b)).unwrap();
        abc.add(record(&c)).unwrap();
        let mut cba = record(&c);
        cba.add(record(&b)).unwrap();
        cba.add(record(&a)).unwrap();
        same(&abc, &cba)?;
    }

    /// `interval_line` then `read` gives back each interval's histogram and times.
    #[test]
    fn hlog_write_read_round_trip(
        intervals in prop::collection::vec((values(), 0u32..100_000, 1u32..2_000), 0..8),
        epoch in 0u32..2_000_000_000,
    ) {
        let mut text = hlog::header(f64::from(epoch), "proptest");
        let mut expected = Vec::new();
        for (vals, start_ms, length_ms) in &intervals {
            let h = record(vals);
            let (start_s, length_s) = (f64::from(*start_ms) / 1e3, f64::from(*length_ms) / 1e3);
            text.push_str(&hlog::interval_line(&h, start_s, length_s));
            expected.push((h, start_s, length_s));
        }
        let read = hlog::read(&text).unwrap();
        prop_assert_eq!(read.len(), expected.len());
        for (got, (h, start_s, length_s)) in read.iter().zip(&expected) {
            same(&got.histogram, h)?;
            prop_assert!((got.start_s - start_s).abs() < 1e-3, "{} vs {}", got.start_s, start_s);
            prop_assert!((got.length_s - length_s).abs() < 1e-3, "{} vs {}", got.length_s, length_s);
        }
    }

    /// A log cut anywhere (a killed writer) still reads: every complete line
    /// before the cut, nothing invented.
    #[test]
    fn hlog_truncated_anywhere_reads_its_complete_lines(
        intervals in prop::collection::vec(values(), 1..6),
        cut in 0.0f64..1.0,
    ) {
        let mut text = hlog::header(1_700_000_000.0, "proptest");
        let mut ends = Vec::new();
        for (i, vals) in intervals.iter().enumerate() {
            text.push_str(&hlog::interval_line(&record(vals), i as f64, 1.0));
            ends.push(text.len());
        }
        let at = ((text.len() as f64) * cut) as usize;
        let truncated = &text[..at];
        let read = hlog::read(truncated).unwrap();
        let complete = ends.iter().filter(|&&end| end <= at).count();
        // A cut right before the newline leaves a whole interval without it.
        prop_assert!(
            read.len() == complete || read.len() == complete + 1,
            "{} intervals read, {} complete", read.len(), complete
        );
        for (got, vals) in read.iter().zip(&intervals) {
            same(&got.histogram, &record(vals))?;
        }
    }
}
