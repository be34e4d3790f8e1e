//! Critical path, repairs and detectors on hand-made traces: one `check` helper per area.

use chokepoint_traces::{analyze_trace, AnalysisConfig, Interner, Span, SpanKind, TraceSummary};

const MS: u64 = 1_000_000;

/// A span in a test trace: (id, parent id or 0, "service/name", kind, start ms, end ms).
type Row = (u64, u64, &'static str, SpanKind, f64, f64);

fn build(rows: &[Row], interner: &mut Interner) -> Vec<Span> {
    rows.iter()
        .map(|&(id, parent, op, kind, start, end)| {
            let (service, name) = op.split_once('/').expect("service/name");
            Span {
                trace_id: 7,
                span_id: id,
                parent_id: (parent != 0).then_some(parent),
                follows_from: false,
                service: interner.intern(service),
                name: interner.intern(name),
                kind,
                start_ns: (start * MS as f64) as u64,
                end_ns: (end * MS as f64) as u64,
                error: false,
                wait_hint: None,
                peer: None,
                retry: false,
            }
        })
        .collect()
}

fn run(rows: &[Row], edit: impl FnOnce(&mut Vec<Span>, &mut Interner)) -> (TraceSummary, Interner) {
    let mut interner = Interner::new();
    let mut spans = build(rows, &mut interner);
    edit(&mut spans, &mut interner);
    let s = analyze_trace(7, &mut spans, &interner, &AnalysisConfig::default());
    (s, interner)
}

/// The critical path as "service/name=ms" sorted by name, plus its total.
fn path(s: &TraceSummary, i: &Interner) -> String {
    let mut items: Vec<String> = s
        .path
        .iter()
        .map(|p| {
            format!(
                "{}/{}={}{}",
                i.resolve(p.key.0),
                i.resolve(p.key.1),
                p.ns as f64 / MS as f64,
                if p.wait { "(wait)" } else { "" }
            )
        })
        .collect();
    items.sort();
    let total: u64 = s.path.iter().map(|p| p.ns).sum();
    assert_eq!(total, s.duration_ns, "the path covers the root exactly");
    items.join(" ")
}

fn check_path(rows: &[Row], expect: &str) {
    let (s, i) = run(rows, |_, _| {});
    assert_eq!(path(&s, &i), expect);
}

use SpanKind::{Client, Consumer, Internal, Producer, Server};

#[test]
fn sequential_children_and_self_time() {
    check_path(
        &[
            (1, 0, "web/GET /", Server, 0.0, 100.0),
            (2, 1, "web/db.pool.acquire", Internal, 10.0, 30.0),
            (3, 1, "web/db.query", Client, 40.0, 90.0),
        ],
        "web/GET /=30 web/db.pool.acquire=20(wait) web/db.query=50",
    );
}

#[test]
fn parallel_children_only_the_last_finishing_one() {
    check_path(
        &[
            (1, 0, "web/GET /", Server, 0.0, 100.0),
            (2, 1, "web/a", Client, 0.0, 80.0),
            (3, 1, "web/b", Client, 0.0, 50.0),
        ],
        "web/GET /=20 web/a=80",
    );
}

#[test]
fn children_that_finished_before_the_chosen_one_started() {
    // c is last; b finished when c started; a overlaps b, so it is off the path.
    check_path(
        &[
            (1, 0, "web/GET /", Server, 0.0, 100.0),
            (2, 1, "web/a", Internal, 0.0, 40.0),
            (3, 1, "web/b", Internal, 30.0, 60.0),
            (4, 1, "web/c", Internal, 60.0, 100.0),
        ],
        "web/GET /=30 web/b=30 web/c=40",
    );
}

#[test]
fn skew_allowance_keeps_slightly_overlapping_steps_sequential() {
    // b ends 0.2 ms after c starts: within the 0.5 ms allowance, so b is still before c.
    check_path(
        &[
            (1, 0, "web/GET /", Server, 0.0, 100.0),
            (3, 1, "web/b", Internal, 10.0, 50.2),
            (4, 1, "web/c", Internal, 50.0, 100.0),
        ],
        "web/GET /=10 web/b=40 web/c=50",
    );
}

#[test]
fn nested_client_server_and_network_gap() {
    let rows = [
        (1, 0, "checkout/POST /checkout", Server, 0.0, 100.0),
        (2, 1, "checkout/POST /send", Client, 10.0, 90.0),
        (3, 2, "email/POST /send", Server, 12.0, 86.0),
        (4, 3, "email/smtp.queue.wait", Internal, 20.0, 60.0),
    ];
    let (s, i) = run(&rows, |_, _| {});
    assert_eq!(
        path(&s, &i),
        "checkout/POST /checkout=20 checkout/POST /send=6 email/POST /send=34 email/smtp.queue.wait=40(wait)"
    );
    assert_eq!(s.gaps.len(), 1);
    assert_eq!(s.gaps[0].gap_ns, 6 * MS);
    assert_eq!(s.gaps[0].path_ns, 6 * MS);
    assert_eq!(i.resolve(s.gaps[0].server), "email");
}

#[test]
fn async_work_is_off_the_blocking_path() {
    let rows = [
        (1, 0, "checkout/POST /checkout", Server, 0.0, 20.0),
        (2, 1, "checkout/email.enqueue", Producer, 5.0, 6.0),
        (3, 2, "checkout/email.queue.wait", Internal, 6.0, 300.0),
        (4, 2, "checkout/email.process", Consumer, 300.0, 400.0),
        (5, 1, "checkout/audit.log", Internal, 25.0, 90.0), // starts after its parent ended
        (6, 1, "checkout/cache.refresh", Internal, 8.0, 19.0),
    ];
    let (s, i) = run(&rows, |spans, _| {
        // A FOLLOWS_FROM child is async even while its parent still runs.
        spans[5].follows_from = true;
    });
    assert_eq!(
        path(&s, &i),
        "checkout/POST /checkout=19 checkout/email.enqueue=1"
    );
    assert_eq!(s.anomalies.async_spans, 4);
    assert_eq!(s.duration_ns, 20 * MS);
}

#[test]
fn children_are_clamped_to_their_parent_and_skew_counted() {
    let (s, i) = run(
        &[
            (1, 0, "web/GET /", Server, 10.0, 100.0),
            (2, 1, "api/GET /x", Server, 5.0, 120.0),
        ],
        |_, _| {},
    );
    assert_eq!(path(&s, &i), "api/GET /x=90");
    assert_eq!(s.anomalies.clock_skew, 1);
}

#[test]
fn malformed_traces_are_repaired_and_counted() {
    let rows = [
        (1, 0, "web/GET /", Server, 0.0, 100.0),
        (2, 1, "web/a", Internal, 10.0, 20.0),
        (2, 1, "web/a-duplicate", Internal, 10.0, 90.0),
        (3, 1, "web/negative", Internal, 50.0, 40.0),
        (4, 99, "web/orphan", Internal, 0.0, 10.0), // parent 99 missing
        (5, 6, "web/cycle-a", Internal, 0.0, 10.0),
        (6, 5, "web/cycle-b", Internal, 0.0, 10.0),
        (7, 7, "web/self-parent", Internal, 0.0, 1.0),
    ];
    let (s, i) = run(&rows, |_, _| {});
    assert_eq!(s.anomalies.duplicate_span_ids, 1);
    assert_eq!(s.anomalies.negative_durations, 1);
    assert_eq!(s.anomalies.missing_parents, 1);
    assert_eq!(
        s.anomalies.cycle_spans, 3,
        "two in a loop and one its own parent"
    );
    assert_eq!(s.spans, 7);
    assert_eq!(path(&s, &i), "web/GET /=90 web/a=10");
}

#[test]
fn without_any_root_the_trace_is_rootless_not_a_panic() {
    let (s, _) = run(
        &[
            (5, 6, "web/cycle-a", Internal, 0.0, 10.0),
            (6, 5, "web/cycle-b", Internal, 0.0, 10.0),
        ],
        |_, _| {},
    );
    assert_eq!(s.anomalies.rootless, 1);
    assert!(s.root.is_none());
}

#[test]
fn a_remote_parent_root_is_the_root_without_complaint() {
    // The lab's server span has the load generator's (unexported) span as parent.
    let (s, i) = run(
        &[
            (1, 42, "checkout/POST /checkout", Server, 0.0, 10.0),
            (2, 1, "checkout/db.query", Client, 2.0, 8.0),
        ],
        |_, _| {},
    );
    assert_eq!(s.anomalies.missing_parents, 0);
    assert_eq!(
        path(&s, &i),
        "checkout/POST /checkout=4 checkout/db.query=6"
    );
}

#[test]
fn a_million_deep_chain_does_not_overflow() {
    let mut interner = Interner::new();
    let name = interner.intern("step");
    let n = 200_000u64;
    let mut spans: Vec<Span> = (1..=n)
        .map(|id| Span {
            trace_id: 1,
            span_id: id,
            parent_id: (id > 1).then_some(id - 1),
            follows_from: false,
            service: name,
            name,
            kind: Internal,
            start_ns: id,
            end_ns: 10 * n - id,
            error: false,
            wait_hint: None,
            peer: None,
            retry: false,
        })
        .collect();
    let s = analyze_trace(1, &mut spans, &interner, &AnalysisConfig::default());
    assert_eq!(s.path.iter().map(|p| p.ns).sum::<u64>(), s.duration_ns);
}

fn findings(rows: &[Row], edit: impl FnOnce(&mut Vec<Span>, &mut Interner)) -> Vec<String> {
    let (s, i) = run(rows, edit);
    let mut out: Vec<String> = s
        .findings
        .iter()
        .map(|f| {
            let deps: Vec<&str> = f.deps.iter().map(|d| i.resolve(*d)).collect();
            format!(
                "{} {}/{} count={} saving={}{}",
                f.kind.as_str(),
                i.resolve(f.op.0),
                i.resolve(f.op.1),
                f.count,
                f.saving_ns as f64 / MS as f64,
                if deps.is_empty() {
                    String::new()
                } else {
                    format!(" deps={}", deps.join(","))
                }
            )
        })
        .collect();
    out.sort();
    out
}

fn queries(n: u64, gap: f64) -> Vec<Row> {
    let mut rows = vec![(1, 0, "web/GET /orders", Server, 0.0, 100.0)];
    for k in 0..n {
        let start = 1.0 + k as f64 * (2.0 + gap);
        rows.push((10 + k, 1, "web/db.query", Client, start, start + 2.0));
    }
    rows
}

#[test]
fn n_plus_one_needs_enough_sequential_calls() {
    assert_eq!(
        findings(&queries(21, 0.1), |_, _| {}),
        ["n_plus_one web/db.query count=21 saving=40"]
    );
    assert!(findings(&queries(4, 0.1), |_, _| {}).is_empty());
    assert!(findings(&queries(1, 0.1), |_, _| {}).is_empty());
}

#[test]
fn fan_out_with_a_straggler() {
    let mut rows = vec![(1, 0, "web/GET /search", Server, 0.0, 100.0)];
    for k in 0..8 {
        let end = if k == 3 { 90.0 } else { 10.0 };
        rows.push((10 + k, 1, "web/shard.query", Client, 1.0, end));
    }
    assert_eq!(
        findings(&rows, |_, _| {}),
        ["fan_out web/shard.query count=8 saving=80"]
    );
    // The same fan-out without a straggler is fine.
    for r in rows.iter_mut().skip(1) {
        r.5 = 10.0;
    }
    assert!(findings(&rows, |_, _| {}).is_empty());
}

#[test]
fn retries_after_errors_and_marked_retries() {
    let rows = [
        (1, 0, "web/GET /", Server, 0.0, 100.0),
        (2, 1, "web/POST /charge", Client, 0.0, 30.0),
        (3, 1, "web/POST /charge", Client, 31.0, 60.0),
        (4, 1, "web/POST /charge", Client, 61.0, 70.0),
    ];
    let f = findings(&rows, |spans, _| {
        spans[1].error = true;
        spans[2].error = true;
    });
    assert_eq!(
        f,
        [
            "error web/POST /charge count=1 saving=0",
            "error web/POST /charge count=1 saving=0",
            "retry web/POST /charge count=2 saving=59"
        ]
    );
    let f = findings(&rows[..2], |spans, _| spans[1].retry = true);
    assert_eq!(f, ["retry web/POST /charge count=1 saving=0"]);
}

#[test]
fn sequential_calls_to_independent_dependencies() {
    let rows = [
        (1, 0, "web/GET /page", Server, 0.0, 100.0),
        (2, 1, "web/GET /user", Client, 1.0, 31.0),
        (3, 1, "web/GET /prices", Client, 32.0, 62.0),
        (4, 1, "web/GET /stock", Client, 63.0, 93.0),
    ];
    let set_peers = |spans: &mut Vec<Span>, i: &mut Interner| {
        spans[1].peer = Some(i.intern("users"));
        spans[2].peer = Some(i.intern("pricing"));
        spans[3].peer = Some(i.intern("inventory"));
    };
    assert_eq!(
        findings(&rows, set_peers),
        ["sequential_independent web/GET /user count=3 saving=60 deps=users,pricing,inventory"]
    );
    // Already parallel: nothing to report.
    let parallel = [
        rows[0],
        (2, 1, "web/GET /user", Client, 1.0, 31.0),
        (3, 1, "web/GET /prices", Client, 1.0, 31.0),
    ];
    assert!(findings(&parallel, |s, i| {
        s[1].peer = Some(i.intern("users"));
        s[2].peer = Some(i.intern("pricing"));
    })
    .is_empty());
}

#[test]
fn error_spans_are_findings() {
    let rows = [
        (1, 0, "web/GET /", Server, 0.0, 100.0),
        (2, 1, "web/POST /charge", Client, 0.0, 30.0),
    ];
    let f = findings(&rows, |spans, _| spans[1].error = true);
    assert_eq!(f, ["error web/POST /charge count=1 saving=0"]);
}
