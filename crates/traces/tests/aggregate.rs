//! Aggregation through the public `Analysis` API: groups, shares, sorting, joins and caps.

use std::collections::HashMap;

use chokepoint_traces::{Analysis, Config, FindingKind, Report, Selection, Span, SpanKind};

const MS: u64 = 1_000_000;

/// Pushes `n` traces: root `GET /` with a waiting `pool.acquire` then a `db.query`;
/// `slow(i)` gives trace i's acquire time (ms), the query always takes 2 ms.
fn feed(a: &mut Analysis, n: u64, slow: impl Fn(u64) -> u64) {
    let (svc, root, acquire, query) = {
        let i = a.interner_mut();
        (
            i.intern("api"),
            i.intern("GET /"),
            i.intern("pool.acquire"),
            i.intern("db.query"),
        )
    };
    for t in 1..=n {
        let start = t * 1000 * MS;
        let wait = slow(t) * MS;
        let span = |id: u64, parent: Option<u64>, name, kind, s: u64, e: u64| Span {
            trace_id: u128::from(t),
            span_id: id,
            parent_id: parent,
            follows_from: false,
            service: svc,
            name,
            kind,
            start_ns: s,
            end_ns: e,
            error: false,
            wait_hint: None,
            peer: None,
            retry: false,
        };
        a.push_span(span(
            2,
            Some(1),
            acquire,
            SpanKind::Internal,
            start + MS,
            start + MS + wait,
        ));
        a.push_span(span(
            3,
            Some(1),
            query,
            SpanKind::Client,
            start + MS + wait,
            start + 3 * MS + wait,
        ));
        a.push_span(span(
            1,
            None,
            root,
            SpanKind::Server,
            start,
            start + 4 * MS + wait,
        ));
    }
}

fn report(selection: Selection, n: u64, slow: impl Fn(u64) -> u64) -> Report {
    let mut a = Analysis::new(Config::default(), selection);
    feed(&mut a, n, slow);
    a.finish().report
}

fn row<'a>(r: &'a Report, op: &str) -> &'a chokepoint_traces::TailRow {
    r.tail
        .iter()
        .find(|t| t.operation == op)
        .unwrap_or_else(|| panic!("no {op}"))
}

#[test]
fn tail_is_the_slowest_percent_and_sorted_by_tail_time() {
    // 1,000 traces; every 100th waits 50 ms instead of 1 ms.
    let r = report(
        Selection::Duration,
        1000,
        |t| if t % 100 == 0 { 50 } else { 1 },
    );
    assert_eq!(r.traces, 1000);
    assert_eq!(r.spans, 3000);
    assert_eq!(r.groups.n_tail, 10, "exactly the slowest 1%");
    assert_eq!(r.groups.n_p50, 990, "ties: the whole P40–P60 band");
    assert!((r.groups.mean_ns_tail - 54.0 * MS as f64).abs() < 1.0);
    assert_eq!(r.tail[0].operation, "pool.acquire");
    assert!(r.tail[0].wait);
    let acquire = row(&r, "pool.acquire");
    assert!((acquire.share_p99 - 50.0 / 54.0).abs() < 1e-9);
    assert!((acquire.share_p50 - 1.0 / 5.0).abs() < 1e-9);
    assert!((acquire.extra_ns - 49.0 * MS as f64).abs() < 1.0);
    assert!((acquire.extra_share - 1.0).abs() < 1e-9, "all of the extra");
    let query = row(&r, "db.query");
    assert!((query.extra_ns).abs() < 1.0);
    assert!((r.groups.wait_share_tail - 50.0 / 54.0).abs() < 1e-9);
}

#[test]
fn a_uniform_bottleneck_leads_the_tail_with_no_extra() {
    // Every trace waits 10 ms: the wait is most of the tail, and no different from P50.
    let r = report(Selection::Duration, 300, |_| 10);
    assert_eq!(r.tail[0].operation, "pool.acquire");
    assert!(r.tail[0].extra_ns.abs() < 1.0);
}

#[test]
fn explicit_selection_uses_the_given_traces_as_the_tail() {
    // The client saw traces 3 and 4 as slowest, though the server saw all alike.
    let ids: HashMap<u128, u64> = [(3u128, 90 * MS), (4, 110 * MS), (999_999, 1)].into();
    let r = report(Selection::Explicit(ids), 100, |_| 1);
    assert!(r.groups.by_client_latency);
    assert_eq!(r.groups.n_tail, 2, "the unknown id matches nothing");
    assert_eq!(r.groups.client_mean_ns_tail, Some(100.0 * MS as f64));
    assert!((r.groups.mean_ns_tail - 5.0 * MS as f64).abs() < 1.0);
    assert_eq!(r.traces, 100);
}

#[test]
fn findings_aggregate_over_traces() {
    let mut a = Analysis::new(Config::default(), Selection::Duration);
    let (svc, root, q) = {
        let i = a.interner_mut();
        (i.intern("api"), i.intern("GET /orders"), i.intern("SELECT"))
    };
    for t in 1..=10u64 {
        let start = t * 1000 * MS;
        let n = if t <= 4 { 6 } else { 1 };
        let mut spans = vec![Span {
            trace_id: u128::from(t),
            span_id: 1,
            parent_id: None,
            follows_from: false,
            service: svc,
            name: root,
            kind: SpanKind::Server,
            start_ns: start,
            end_ns: start + 100 * MS,
            error: false,
            wait_hint: None,
            peer: None,
            retry: false,
        }];
        for k in 0..n {
            let mut s = spans[0].clone();
            s.span_id = 10 + k;
            s.parent_id = Some(1);
            s.name = q;
            s.kind = SpanKind::Client;
            s.start_ns = start + (1 + 3 * k) * MS;
            s.end_ns = s.start_ns + 2 * MS;
            spans.push(s);
        }
        for s in spans {
            a.push_span(s);
        }
    }
    let r = a.finish().report;
    let n1: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::NPlusOne)
        .collect();
    assert_eq!(n1.len(), 1);
    assert_eq!((n1[0].traces, n1[0].max_count), (4, 6));
    assert!((n1[0].fraction - 0.4).abs() < 1e-9);
    assert!((n1[0].mean_saving_ns - 10.0 * MS as f64).abs() < 1.0);
    assert_eq!(n1[0].parent_operation, "GET /orders");
}

#[test]
fn operation_keys_are_capped() {
    let mut cfg = Config::default();
    cfg.aggregate.max_keys = 3;
    let mut a = Analysis::new(cfg, Selection::Duration);
    let svc = a.interner_mut().intern("api");
    for t in 1..=20u64 {
        let name = a.interner_mut().intern(&format!("op{t}"));
        a.push_span(Span {
            trace_id: u128::from(t),
            span_id: 1,
            parent_id: None,
            follows_from: false,
            service: svc,
            name,
            kind: SpanKind::Server,
            start_ns: t * MS,
            end_ns: t * MS + MS,
            error: false,
            wait_hint: None,
            peer: None,
            retry: false,
        });
    }
    let r = a.finish().report;
    assert_eq!(r.traces, 20);
    assert!(r.tail.len() <= 4, "3 keys and (other): {}", r.tail.len());
    assert!(r.tail.iter().any(|t| t.operation == "(other)"));
}
