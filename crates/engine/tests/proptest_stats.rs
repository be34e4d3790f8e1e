//! Property: per-thread `Stats` merged by the coordinator equal one `Stats`
//! that recorded every request, whatever the split between threads.

use chokepoint_engine::{ErrorKind, Stats, Timings};
use proptest::prelude::*;

/// One finished request as a worker records it.
#[derive(Debug, Clone)]
struct Event {
    request_idx: usize,
    timings: Timings,
    result: Result<(), ErrorKind>,
    trace_id: Option<u128>,
    thread: usize,
}

const N_REQUESTS: usize = 3;

fn event() -> impl Strategy<Value = Event> {
    (
        0..N_REQUESTS,
        (
            0u64..1 << 40,
            0u64..50_000_000,
            0u64..2_000_000_000,
            0u64..2_000_000_000,
        ),
        (
            prop::option::of(0u64..1_000_000),
            prop::option::of(0u64..1_000_000),
            0u64..1 << 30,
            0u64..1 << 20,
        ),
        prop::option::of(0..ErrorKind::ALL.len()),
        prop::option::of(1u128..),
        0usize..4,
    )
        .prop_map(
            |(
                request_idx,
                (intended, lag, ttfb, receive),
                (connect, tls, rx, tx),
                err,
                trace_id,
                thread,
            )| {
                let sent = intended + lag;
                Event {
                    request_idx,
                    timings: Timings {
                        intended_ns: intended,
                        sent_ns: sent,
                        written_ns: sent,
                        first_byte_ns: sent + ttfb,
                        end_ns: sent + ttfb + receive,
                        connect_us: connect,
                        tls_us: tls,
                        bytes_received: rx,
                        bytes_sent: tx,
                    },
                    result: err.map_or(Ok(()), |i| Err(ErrorKind::ALL[i])),
                    trace_id,
                    thread,
                }
            },
        )
}

fn buckets(h: &chokepoint_stats::Histogram) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn same(a: &Stats, b: &Stats) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.requests, b.requests);
    prop_assert_eq!(a.ok, b.ok);
    prop_assert_eq!(a.errors.0, b.errors.0);
    prop_assert_eq!(a.bytes_received, b.bytes_received);
    prop_assert_eq!(a.bytes_sent, b.bytes_sent);
    prop_assert_eq!(a.connections_opened, b.connections_opened);
    for (x, y) in [
        (&a.latency, &b.latency),
        (&a.service, &b.service),
        (&a.connect, &b.connect),
        (&a.tls, &b.tls),
        (&a.ttfb, &b.ttfb),
        (&a.receive, &b.receive),
        (&a.schedule_lag, &b.schedule_lag),
    ] {
        prop_assert_eq!(buckets(x), buckets(y));
    }
    for (x, y) in a.by_request.iter().zip(&b.by_request) {
        prop_assert_eq!(x.requests, y.requests);
        prop_assert_eq!(x.ok, y.ok);
        prop_assert_eq!(x.errors.0, y.errors.0);
        prop_assert_eq!(buckets(&x.latency), buckets(&y.latency));
    }
    // The slowest 100 are the same latencies (ties may keep different ids).
    let lat =
        |s: &Stats| -> Vec<u64> { s.slow_traces.slowest_first().iter().map(|x| x.0).collect() };
    prop_assert_eq!(lat(a), lat(b));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merged_thread_stats_equal_one_recorder(events in prop::collection::vec(event(), 0..400)) {
        let mut union = Stats::new(N_REQUESTS);
        let mut threads: Vec<Stats> = (0..4).map(|_| Stats::new(N_REQUESTS)).collect();
        for e in &events {
            union.record(e.request_idx, &e.timings, e.result, e.trace_id);
            threads[e.thread].record(e.request_idx, &e.timings, e.result, e.trace_id);
        }
        let mut merged = Stats::new(N_REQUESTS);
        for t in &threads {
            merged.merge(t);
        }
        same(&merged, &union)?;
        // And a reset recorder merges like a fresh one (the coordinator reuses them).
        let mut reused = threads[0].clone();
        reused.reset();
        for t in &threads {
            reused.merge(t);
        }
        same(&reused, &union)?;
    }
}
