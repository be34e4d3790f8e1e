//! Cost of recording one finished request: every histogram it touches
//! (latency, service, ttfb, receive, schedule lag, per-request latency) and
//! its counters. Target (issue 3): under 50 ns.
//!
//! `cargo bench -p chokepoint-engine --bench record`

use std::hint::black_box;
use std::sync::Mutex;

use chokepoint_engine::{Stats, Timings};
use criterion::{criterion_group, criterion_main, Criterion};

/// Realistic spread of values, so records do not all hit one bucket.
fn samples() -> Vec<Timings> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..4096)
        .map(|_| {
            // Latencies from ~50 µs to ~50 ms, log-uniform.
            let latency_ns = (50_000.0 * 1000f64.powf(rng.f64())) as u64;
            let lag_ns = rng.u64(0..20_000);
            let start = 1_000_000_000;
            Timings {
                intended_ns: start,
                sent_ns: start + lag_ns,
                written_ns: start + lag_ns,
                first_byte_ns: start + lag_ns + latency_ns * 9 / 10,
                end_ns: start + lag_ns + latency_ns,
                bytes_received: 120,
                bytes_sent: 80,
                ..Timings::default()
            }
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let samples = samples();
    let mut stats = Stats::new(1);
    let mut i = 0;
    c.bench_function("record one request (all histograms)", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            stats.record(0, black_box(&samples[i]), Ok(()), None);
        })
    });
    // As the engine does it: behind the thread's (uncontended) mutex.
    let locked = Mutex::new(Stats::new(1));
    c.bench_function("record one request behind the thread's mutex", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            locked
                .lock()
                .unwrap()
                .record(0, black_box(&samples[i]), Ok(()), None);
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
