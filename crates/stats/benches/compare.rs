//! Timing of `compare_latency` on large runs, the figures quoted in
//! docs/statistics.md. Run with `cargo bench -p chokepoint-stats --bench compare`.
//!
//! A plain `harness = false` timer rather than criterion: one comparison
//! takes long enough (tens of milliseconds) for wall-clock medians of a few
//! repetitions to be stable, and it keeps the workspace's build light.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chokepoint_stats::bootstrap::{Rng, RunLatency};
use chokepoint_stats::changepoint::{detect_change_points, ChangePointConfig};
use chokepoint_stats::compare::{compare_latency, CompareConfig};
use chokepoint_stats::{new_histogram, Histogram};

/// `seconds` interval histograms of `per_second` log-normal latencies
/// (median 10 ms, sigma 0.5) and their total.
fn run(rng: &mut Rng, seconds: usize, per_second: usize) -> (Histogram, Vec<Histogram>) {
    let mut total = new_histogram();
    let mut intervals = Vec::with_capacity(seconds);
    for _ in 0..seconds {
        let mut h = new_histogram();
        for _ in 0..per_second {
            let us = (10_000.0 * (0.5 * rng.normal()).exp()) as u64;
            h.saturating_record(us.max(1));
        }
        total.add(&h).expect("auto-resizing histograms");
        intervals.push(h);
    }
    (total, intervals)
}

fn median_of(mut f: impl FnMut(), repetitions: usize) -> Duration {
    let mut times: Vec<Duration> = (0..repetitions)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut rng = Rng::new(1);
    let config = CompareConfig::default(); // 2,000 resamples
    for (seconds, per_second) in [(60, 16_667), (600, 1_667)] {
        let (before, before_iv) = run(&mut rng, seconds, per_second);
        let (after, after_iv) = run(&mut rng, seconds, per_second);
        let samples = before.len();
        let iid = median_of(
            || {
                black_box(
                    compare_latency(
                        &RunLatency::total_only(&before),
                        &RunLatency::total_only(&after),
                        &config,
                    )
                    .expect("valid config"),
                );
            },
            5,
        );
        let blocks = median_of(
            || {
                let b = RunLatency {
                    total: &before,
                    intervals: &before_iv,
                };
                let a = RunLatency {
                    total: &after,
                    intervals: &after_iv,
                };
                black_box(compare_latency(&b, &a, &config).expect("valid config"));
            },
            5,
        );
        println!(
            "compare_latency, {samples} samples per run, {seconds} intervals, {} resamples: \
             i.i.d. {iid:.1?}, interval blocks {blocks:.1?}",
            config.bootstrap.resamples
        );
    }
    let series: Vec<f64> = (0..1_000)
        .map(|i| 100.0 + (i / 250) as f64 * 10.0 + 2.0 * rng.normal())
        .collect();
    let cp = median_of(
        || {
            black_box(
                detect_change_points(&series, &ChangePointConfig::default()).expect("finite"),
            );
        },
        5,
    );
    println!("detect_change_points, 1,000 runs with 3 steps: {cp:.1?}");
}
