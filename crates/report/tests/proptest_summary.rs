//! Property: `summary.json` round-trips. What `run` writes, `compare`,
//! `check` and `history` read back with the same numbers and names, whatever
//! the names contain; the text report renders any summary without panicking.

use std::collections::BTreeMap;

use chokepoint_report::{LatencyMs, RequestSummary, RunSummary, WarmupSummary, RUN_SCHEMA};
use proptest::prelude::*;

/// Finite, non-negative, from sub-microsecond to hours, sometimes exact zero.
fn ms() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0f64..1.0, 0.0f64..1e7]
}

fn latency() -> impl Strategy<Value = LatencyMs> {
    (any::<u32>(), prop::collection::vec(ms(), 9)).prop_map(|(count, v)| LatencyMs {
        count: u64::from(count),
        min: v[0],
        mean: v[1],
        stdev: v[2],
        p50: v[3],
        p90: v[4],
        p95: v[5],
        p99: v[6],
        p99_9: v[7],
        max: v[8],
    })
}

/// Counts up to 2^48 (a run of 10^14 requests): sums of them cannot overflow.
/// Counts near u64::MAX are not realistic and overflow `error_count()`'s sum.
fn count() -> impl Strategy<Value = u64> {
    0u64..1 << 48
}

fn errors() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "connect",
            "timeout",
            "tls",
            "io",
            "protocol",
            "status_4xx",
            "status_5xx",
        ])
        .prop_map(String::from),
        count(),
        0..7,
    )
}

/// Request names and targets come from users and targets: anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        any::<String>(),
        Just("<script>alert(1)</script>\"'&\\\n\t\u{0}".to_string()),
    ]
}

fn summary() -> impl Strategy<Value = RunSummary> {
    (
        (
            name(),
            prop::option::of(0.001f64..1e7),
            prop::option::of(1u64..100_000),
        ),
        (count(), count(), errors(), count(), 0.0f64..=1.0),
        (
            latency(),
            latency(),
            prop::collection::btree_map(name(), (count(), count(), errors(), latency()), 0..4),
        ),
        (
            0.0f64..1e6,
            0.0f64..1e6,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        prop::option::of((0.0f64..1e4, count(), latency())),
        prop::collection::vec("[0-9a-f]{32}", 0..3),
    )
        .prop_map(
            |(
                (target, rate, concurrency),
                (requests, ok, errors, dropped, error_rate),
                (latency_ms, service_time_ms, by_request),
                (duration_s, throughput_rps, interrupted, http2, insecure),
                warmup,
                slow_trace_ids,
            )| RunSummary {
                schema: RUN_SCHEMA.to_string(),
                tool_version: "0.1.0".into(),
                target,
                model: if rate.is_some() { "open" } else { "closed" }.into(),
                rate_target: rate,
                concurrency,
                arrival: rate.map(|_| "poisson".to_string()),
                max_connections: rate.map(|_| 10_000),
                started_at: "2026-01-01T00:00:00Z".into(),
                duration_s,
                requests,
                ok,
                errors,
                dropped,
                error_rate,
                throughput_rps,
                latency_ms,
                service_time_ms,
                phases_ms: [("connect".to_string(), LatencyMs::default())].into(),
                by_request: by_request
                    .into_iter()
                    .map(|(name, (requests, ok, errors, latency_ms))| {
                        (
                            name,
                            RequestSummary {
                                requests,
                                ok,
                                errors,
                                latency_ms,
                            },
                        )
                    })
                    .collect(),
                mean_in_flight: throughput_rps / 1e3,
                slow_trace_ids,
                interrupted,
                warmup: warmup.map(|(duration_s, requests, latency_ms)| WarmupSummary {
                    duration_s,
                    requests,
                    ok: requests / 2,
                    errors: BTreeMap::new(),
                    latency_ms,
                }),
                http2,
                tls_verification_disabled: insecure,
                timeout_s: 30.0,
                ..RunSummary::default()
            },
        )
}

/// Equal, with floats equal to within parsing precision (serde_json parses
/// floats best-effort by default: the last binary digit may differ).
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            }
        },
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn summary_json_round_trips(s in summary()) {
        let text = serde_json::to_string_pretty(&s).unwrap();
        let back: RunSummary = serde_json::from_str(&text).unwrap();
        // Names, counts and flags exactly; floats to parsing precision.
        prop_assert_eq!(&back.target, &s.target);
        prop_assert_eq!(back.by_request.keys().collect::<Vec<_>>(), s.by_request.keys().collect::<Vec<_>>());
        prop_assert_eq!(back.requests, s.requests);
        prop_assert_eq!(&back.errors, &s.errors);
        prop_assert_eq!(back.interrupted, s.interrupted);
        prop_assert_eq!(back.tls_verification_disabled, s.tls_verification_disabled);
        let (a, b) = (serde_json::to_value(&s).unwrap(), serde_json::to_value(&back).unwrap());
        prop_assert!(close(&a, &b), "{}\nvs\n{}", a, b);
        // Reading twice changes nothing more.
        let again: RunSummary = serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
        prop_assert!(close(&b, &serde_json::to_value(&again).unwrap()));
    }

    #[test]
    fn any_summary_renders_as_text(s in summary()) {
        let text = chokepoint_report::text::render_run(&s);
        prop_assert!(!text.is_empty());
    }
}
