//! The rules: evidence → constraints (with evidence items and confidence),
//! fix plans with expected effects, what-if answers, and what to measure next.
//! Thresholds are constants here and tabled in `docs/diagnose.md`.

use std::collections::BTreeSet;

use crate::evidence::{Evidence, OperationTime, RunEvidence, StressEvidence, TraceEvidence};
use crate::names::{self, StepKind};
use crate::queueing::{fan_out_slow_share, littles_law_in_flight, MmcQueue};
use crate::{
    Confidence, Constraint, ConstraintClass, Diagnosis, Effect, EvidenceItem, FixStep, FixType,
    Horizon, Level, NextStep, Prediction,
};

/// A waiting step is material from this much time per slow request...
pub const WAIT_MIN_MS: f64 = 2.0;
/// ... and this share of the tail's critical path.
pub const WAIT_MIN_SHARE: f64 = 0.15;
/// A dependency is material from this much time per slow request...
pub const DEP_MIN_MS: f64 = 5.0;
/// ... and this share of the tail's critical path.
pub const DEP_MIN_SHARE: f64 = 0.2;
/// A dependency that is not slow for the typical request (under [`DEP_MIN_MS`] or
/// [`DEP_MIN_SHARE`] at P50) is blamed for the tail only when its share of the
/// tail's critical path exceeds its share of the typical request's by this much:
/// what is *different* about slow requests. When every step of slow requests is
/// slower in proportion (CPU contention on the host, a busy scheduler), no
/// dependency's share grows and none is named.
pub const DEP_TAIL_EXCESS: f64 = 0.1;
/// Fewer traces than this in the tail group make trace verdicts low-confidence,
/// and a dependency slow only in the tail is then not named at all (its share
/// of a handful of slow traces is noise as often as not).
pub const MIN_TAIL_TRACES: u64 = 10;
/// A dependency has a long tail when its tail time is this many times its P50 time.
pub const HEAVY_TAIL_RATIO: f64 = 3.0;
/// A query is slow everywhere from this much time per typical request...
pub const QUERY_MIN_MS: f64 = 3.0;
/// ... and this share of the typical request's critical path.
pub const QUERY_MIN_SHARE: f64 = 0.3;
/// An N+1 (or sequential-calls) finding is material from this saving per affected trace...
pub const DETECTOR_MIN_SAVING_MS: f64 = 2.0;
/// ... and this share of all critical-path time.
pub const DETECTOR_MIN_SHARE: f64 = 0.1;
/// A step happens "only in the tail" when its P50 time is below this fraction of its tail time.
pub const TAIL_ONLY_RATIO: f64 = 0.25;
/// Memory growth is material from this much over the run...
pub const RSS_MIN_GROWTH_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// ... and this much per request.
pub const RSS_MIN_BYTES_PER_REQUEST: f64 = 1024.0;
/// ... when the Mann–Kendall p-value is below this.
pub const RSS_MAX_P: f64 = 0.01;
/// ... and when its 95% interval is at most this wide relative to the slope (steady growth).
pub const RSS_MAX_CI_WIDTH: f64 = 0.6;
/// Capacity below this multiple of today's load counts as a constraint now.
pub const HEADROOM_MIN: f64 = 1.5;
/// New connections per request above this share mean no connection reuse.
pub const NEW_CONNECTION_SHARE: f64 = 0.5;
/// Connection set-up is material from this share of the mean latency.
pub const CONNECT_MIN_SHARE: f64 = 0.2;
/// Pool sizing target: this many times today's rate.
pub const SIZING_LOAD_FACTOR: f64 = 2.0;
/// Pool sizing: utilisation at most this at the target rate...
pub const SIZING_MAX_UTILISATION: f64 = 0.8;
/// ... and at most this share of requests waiting (Erlang C).
pub const SIZING_MAX_P_WAIT: f64 = 0.05;

struct Ctx<'e> {
    ev: &'e Evidence,
    /// Client-measured P99 (ms) of the baseline.
    p99: Option<f64>,
    p50: Option<f64>,
    /// Today's rate.
    rate: Option<f64>,
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn rate_text(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0} req/s")
    } else {
        format!("{r:.1} req/s")
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// The next "nice" value (1, 2, 5 × 10ᵏ) at or above `x`.
fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= x * 0.999 {
            return m * mag;
        }
    }
    10.0 * mag
}

fn item(
    source: &str,
    measurement: impl Into<String>,
    value: f64,
    unit: &str,
    threshold: Option<String>,
    text: impl Into<String>,
) -> EvidenceItem {
    EvidenceItem {
        source: source.into(),
        measurement: measurement.into(),
        value,
        unit: unit.into(),
        threshold,
        text: text.into(),
    }
}

fn multiplier(level: Level) -> f64 {
    match level {
        Level::High => 1.0,
        Level::Medium => 0.85,
        Level::Low => 0.6,
    }
}

impl Ctx<'_> {
    fn run(&self) -> Option<&RunEvidence> {
        self.ev.run.as_ref()
    }

    fn stress(&self) -> Option<&StressEvidence> {
        self.ev.stress.as_ref()
    }

    /// Amdahl on the tail's critical path: removing `removed_ms` of a slow
    /// request's critical path (whose server-side mean is `tail_ms`).
    fn amdahl(&self, t: &TraceEvidence, removed_ms: f64, what: &str) -> Option<Effect> {
        let tail_ms = t.mean_ms_tail;
        if tail_ms <= 0.0 || removed_ms <= 0.0 {
            return None;
        }
        let share = (removed_ms / tail_ms).clamp(0.0, 1.0);
        let before = self.p99.unwrap_or(tail_ms);
        let floor = self.p50.unwrap_or(0.0);
        let after = (before * (1.0 - share)).max(floor);
        Some(Effect {
            metric: "p99_ms".into(),
            before,
            after,
            method: format!(
                "Amdahl on the tail's critical path: {what} removes {} of a slow request's {} ({}), so P99 {} × (1 − {:.2}) ≈ {} (never below today's P50)",
                fmt_ms(removed_ms),
                fmt_ms(tail_ms),
                pct(share),
                fmt_ms(before),
                share,
                fmt_ms(after)
            ),
        })
    }
}

fn trace_confidence(t: &TraceEvidence, share: f64, reasons: &mut Vec<String>) -> Level {
    if t.n_tail < MIN_TAIL_TRACES {
        reasons.push(format!(
            "only {} traces in the tail group: shares rest on few samples",
            t.n_tail
        ));
        return Level::Low;
    }
    if share >= 0.5 {
        reasons.push(format!(
            "{} of the tail's critical path, over {} slow traces",
            pct(share),
            t.n_tail
        ));
        Level::High
    } else {
        reasons.push(format!(
            "{} of the tail's critical path, over {} slow traces",
            pct(share),
            t.n_tail
        ));
        Level::Medium
    }
}

fn raise(level: Level) -> Level {
    match level {
        Level::Low => Level::Medium,
        _ => Level::High,
    }
}

/// Services the entry service calls (servers of client→server gaps), and the entry services.
fn remote_services(t: &TraceEvidence) -> (BTreeSet<String>, BTreeSet<String>) {
    let servers: BTreeSet<String> = t.network.iter().map(|n| n.server.clone()).collect();
    let mut entry: BTreeSet<String> = t
        .network
        .iter()
        .map(|n| n.client.clone())
        .filter(|c| !servers.contains(c))
        .collect();
    if entry.is_empty() {
        // No client→server pairs: the service with the most operations is the entry.
        let mut counts: Vec<(usize, &str)> = Vec::new();
        for op in &t.operations {
            match counts.iter_mut().find(|(_, s)| *s == op.service) {
                Some((n, _)) => *n += 1,
                None => counts.push((1, &op.service)),
            }
        }
        if let Some((_, s)) = counts.iter().max_by_key(|(n, _)| *n) {
            entry.insert(s.to_string());
        }
    }
    let remote = t
        .operations
        .iter()
        .map(|o| o.service.clone())
        .filter(|s| !entry.contains(s))
        .collect();
    (remote, entry)
}

struct Used {
    ops: BTreeSet<(String, String)>,
}

impl Used {
    fn take(&mut self, op: &OperationTime) {
        self.ops.insert((op.service.clone(), op.operation.clone()));
    }
    fn has(&self, op: &OperationTime) -> bool {
        self.ops
            .contains(&(op.service.clone(), op.operation.clone()))
    }
}

/// The holding time of a connection pool: the typical request's database time.
fn db_time_ms(t: &TraceEvidence, remote: &BTreeSet<String>) -> f64 {
    t.operations
        .iter()
        .filter(|o| {
            !o.wait
                && names::step_kind(&o.service, &o.operation, false, remote.contains(&o.service))
                    == StepKind::Database
        })
        .map(|o| o.ms_p50)
        .sum()
}

fn queue_model(ctx: &Ctx<'_>, servers: Option<u32>, service_ms: Option<f64>) -> Option<MmcQueue> {
    let s = service_ms.filter(|s| *s > 0.0)? / 1000.0;
    let c = match servers {
        Some(c) => c,
        None => {
            let plateau = ctx.stress()?.plateau.as_ref()?.plateau_rps;
            ((plateau * s).round() as u32).max(1)
        }
    };
    let q = MmcQueue {
        servers: c,
        service_s: s,
    };
    // The model must explain today's load: a queue at or beyond 100% would not have served it.
    match ctx.rate {
        Some(r) if !q.stable(r) => None,
        _ => Some(q),
    }
}

fn what_if(ctx: &Ctx<'_>, q: &MmcQueue, what: &str) -> Vec<Prediction> {
    let (Some(rate), Some(p99)) = (ctx.rate, ctx.p99) else {
        return Vec::new();
    };
    let model = format!(
        "M/M/c (Erlang C) for the {what}: c = {} servers, mean holding time {} (Poisson arrivals, exponential holding times, FIFO; holding times that vary less than exponential ones wait less, so this is a conservative bound). P99 ≈ today's P99 − modelled P99 wait today + modelled P99 wait at the new rate",
        q.servers,
        fmt_ms(q.service_s * 1000.0)
    );
    let wait_now = q.wait_quantile_s(rate, 0.99) * 1000.0;
    [1.5, 2.0]
        .iter()
        .map(|f| {
            let r = rate * f;
            let wait = q.wait_quantile_s(r, 0.99) * 1000.0;
            let value = wait
                .is_finite()
                .then(|| (p99 - wait_now).max(ctx.p50.unwrap_or(0.0)) + wait);
            let text = match value {
                Some(v) => format!(
                    "at {f}× today's load ({}), P99 ≈ {} ({} utilised, {} of requests wait)",
                    rate_text(r),
                    fmt_ms(v),
                    pct(q.utilisation(r)),
                    pct(q.p_wait(r))
                ),
                None => format!(
                    "at {f}× today's load ({}), the {what} is over capacity ({} utilised): the queue grows without bound and P99 is limited only by timeouts",
                    rate_text(r),
                    pct(q.utilisation(r))
                ),
            };
            Prediction {
                question: format!("P99 at {f}× today's load"),
                load_factor: Some(*f),
                rate_rps: Some(r),
                value,
                unit: "ms".into(),
                model: model.clone(),
                text,
            }
        })
        .collect()
}

fn sizing(ctx: &Ctx<'_>, service_ms: f64, noun: &str) -> Option<(u32, Prediction)> {
    let rate = ctx.rate?;
    if service_ms <= 0.0 {
        return None;
    }
    let target = rate * SIZING_LOAD_FACTOR;
    let s = service_ms / 1000.0;
    let busy = littles_law_in_flight(target, s);
    let c = MmcQueue::servers_for(target, s, SIZING_MAX_UTILISATION, SIZING_MAX_P_WAIT);
    let text = format!(
        "for {} ({SIZING_LOAD_FACTOR}× today's load), Little's law gives L = λ·S = {} × {} = {busy:.1} {noun} slots busy on average; Erlang C says {c} keep utilisation ≤ {} and fewer than {} of requests waiting",
        rate_text(target),
        rate_text(target),
        fmt_ms(service_ms),
        pct(SIZING_MAX_UTILISATION),
        pct(SIZING_MAX_P_WAIT)
    );
    Some((
        c,
        Prediction {
            question: format!("{noun} size for {}", rate_text(target)),
            load_factor: Some(SIZING_LOAD_FACTOR),
            rate_rps: Some(target),
            value: Some(c as f64),
            unit: "slots".into(),
            model: "Little's law (L = λ·S) and M/M/c (Erlang C)".into(),
            text,
        },
    ))
}

fn plateau_items(ctx: &Ctx<'_>) -> Vec<EvidenceItem> {
    let Some(s) = ctx.stress() else {
        return Vec::new();
    };
    let Some(p) = &s.plateau else {
        return Vec::new();
    };
    vec![item(
        "stress",
        "throughput plateau",
        p.plateau_rps,
        "req/s",
        Some("achieved ≥ 5% short of offered while mean latency ≥ 1.5× the low-load mean".into()),
        format!(
            "throughput plateaus at {} while mean latency grows {} → {}: a fixed-capacity resource of at most about {:.0} slots (L = X·W)",
            rate_text(p.plateau_rps),
            fmt_ms(p.low_load_latency_ms),
            fmt_ms(p.saturated_latency_ms),
            p.slots
        ),
    )]
}

fn trace_constraints(
    ctx: &Ctx<'_>,
    t: &TraceEvidence,
    out: &mut Vec<Constraint>,
    notes: &mut Vec<String>,
) {
    let (remote, _entry) = remote_services(t);
    let mut used = Used {
        ops: BTreeSet::new(),
    };
    let src = "traces";
    let kind = |o: &OperationTime| {
        names::step_kind(
            &o.service,
            &o.operation,
            o.wait,
            remote.contains(&o.service),
        )
    };

    // Detectors first: they carry their own saving.
    for f in &t.findings {
        let material = f.mean_saving_ms >= DETECTOR_MIN_SAVING_MS
            && f.critical_path_share >= DETECTOR_MIN_SHARE;
        match f.kind.as_str() {
            "n_plus_one" if material => {
                let mut reasons = Vec::new();
                let share = (f.mean_saving_ms / t.mean_ms_tail.max(1e-9)).min(1.0);
                let mut level = trace_confidence(t, f.critical_path_share, &mut reasons);
                if f.fraction >= 0.5 {
                    level = raise(level);
                    reasons.push(format!("in {} of all traces", pct(f.fraction)));
                }
                let expected = ctx.amdahl(t, f.mean_saving_ms, "one batched query");
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::NPlusOne,
                    resource: Some(f.operation.clone()),
                    title: format!(
                        "{} runs {} {:.0}× one after another per request (N+1)",
                        f.parent_operation, f.operation, f.mean_count
                    ),
                    tail_share: Some(share),
                    tail_ms: Some(f.mean_saving_ms),
                    score: share * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence: vec![
                        item(src, format!("n_plus_one detector: {} calls per trace", f.operation), f.mean_count, "calls", Some("≥ 5 sequential sibling calls".into()), f.message.clone()),
                        item(src, "critical-path share of those calls", f.critical_path_share, "share", Some(format!("≥ {DETECTOR_MIN_SHARE}")), format!("the calls are {} of all critical-path time; batching saves ~{} per affected request", pct(f.critical_path_share), fmt_ms(f.mean_saving_ms))),
                    ],
                    fixes: vec![
                        FixStep { fix: FixType::Batching, horizon: Horizon::QuickWin, action: format!("load the {} items with one query (a JOIN, or WHERE id IN (...)) instead of one per item", f.mean_count.round()), expected, setting: None },
                        FixStep { fix: FixType::Caching, horizon: Horizon::Structural, action: "cache the per-item lookups that repeat across requests".into(), expected: None, setting: None },
                    ],
                    predictions: Vec::new(),
                });
                for o in &t.operations {
                    if o.operation == f.operation && o.service == f.service {
                        used.take(o);
                    }
                }
            }
            "sequential_independent"
                if material
                    && f.mean_saving_ms >= DEP_MIN_MS
                    && f.mean_saving_ms >= DEP_MIN_SHARE * t.mean_ms_tail =>
            {
                let mut reasons = Vec::new();
                let level = trace_confidence(t, f.critical_path_share, &mut reasons);
                let share = (f.mean_saving_ms / t.mean_ms_tail.max(1e-9)).min(1.0);
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::SequentialCalls,
                    resource: Some(f.parent_operation.clone()),
                    title: format!(
                        "{} calls independent dependencies one after another",
                        f.parent_operation
                    ),
                    tail_share: Some(share),
                    tail_ms: Some(f.mean_saving_ms),
                    score: share * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence: vec![item(
                        src,
                        "sequential_independent detector saving",
                        f.mean_saving_ms,
                        "ms",
                        Some(format!("≥ {DETECTOR_MIN_SAVING_MS} ms")),
                        f.message.clone(),
                    )],
                    fixes: vec![FixStep {
                        fix: FixType::Parallelize,
                        horizon: Horizon::QuickWin,
                        action: "issue the independent calls concurrently and wait for all".into(),
                        expected: ctx.amdahl(t, f.mean_saving_ms, "running the calls concurrently"),
                        setting: None,
                    }],
                    predictions: Vec::new(),
                });
            }
            "fan_out" if f.critical_path_share >= DETECTOR_MIN_SHARE => {
                let mut reasons = Vec::new();
                let level = trace_confidence(t, f.critical_path_share, &mut reasons);
                let share = (f.mean_saving_ms / t.mean_ms_tail.max(1e-9)).min(1.0);
                let n = f.mean_count.max(1.0);
                let amplified = fan_out_slow_share(0.99, n);
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::FanOutAmplification,
                    resource: Some(f.operation.clone()),
                    title: format!("{} fans out {:.0}× to {} and waits for the slowest", f.parent_operation, n, f.operation),
                    tail_share: Some(share),
                    tail_ms: Some(f.mean_saving_ms),
                    score: share * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence: vec![item(src, "fan_out detector: slowest minus median call", f.mean_saving_ms, "ms", Some("slowest ≥ 2× the median of ≥ 3 parallel calls".into()), f.message.clone())],
                    fixes: vec![
                        FixStep { fix: FixType::Timeouts, horizon: Horizon::QuickWin, action: "time out stragglers and answer with partial results, or hedge: re-send a call still pending after the calls' P95".into(), expected: ctx.amdahl(t, f.mean_saving_ms, "cutting the straggler"), setting: None },
                        FixStep { fix: FixType::FanOutReduction, horizon: Horizon::Structural, action: "call fewer backends per request (coarser partitions, a precomputed aggregate)".into(), expected: None, setting: None },
                    ],
                    predictions: vec![Prediction {
                        question: format!("share of requests held up by at least one call beyond its P99, with {n:.0} parallel calls"),
                        load_factor: None,
                        rate_rps: None,
                        value: Some(amplified),
                        unit: "share".into(),
                        model: "fan-out amplification 1 − pⁿ with p = 0.99 (independent calls)".into(),
                        text: format!("1 − 0.99^{n:.0} = {}: a request waits for the slowest of {n:.0} calls, so the calls' P99 becomes the request's P{:.0}", pct(amplified), (1.0 - amplified) * 100.0),
                    }],
                });
            }
            "retry" if f.critical_path_share >= DETECTOR_MIN_SHARE => {
                let mut reasons = Vec::new();
                let level = trace_confidence(t, f.critical_path_share, &mut reasons);
                let share = (f.mean_saving_ms / t.mean_ms_tail.max(1e-9)).min(1.0);
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::Retries,
                    resource: Some(f.operation.clone()),
                    title: format!("{} is retried on the request path", f.operation),
                    tail_share: Some(share),
                    tail_ms: Some(f.mean_saving_ms),
                    score: share * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence: vec![item(src, "retry detector: failed attempts", f.mean_saving_ms, "ms", None, f.message.clone())],
                    fixes: vec![
                        FixStep { fix: FixType::CircuitBreaker, horizon: Horizon::QuickWin, action: "open a circuit breaker when the dependency fails, and cap retries with a retry budget and jittered backoff".into(), expected: None, setting: None },
                        FixStep { fix: FixType::Timeouts, horizon: Horizon::QuickWin, action: "give the whole call (all attempts) one deadline".into(), expected: None, setting: None },
                    ],
                    predictions: Vec::new(),
                });
            }
            _ => {}
        }
    }

    // Cache fills on the tail's critical path that the typical request does not have.
    let cache_ops: Vec<&OperationTime> = t
        .operations
        .iter()
        .filter(|o| matches!(kind(o), StepKind::CacheFill | StepKind::CacheWait) && o.ms_p99 > 0.0)
        .collect();
    let cache_in_tail_only = cache_ops
        .iter()
        .any(|o| o.ms_p50 < TAIL_ONLY_RATIO * o.ms_p99 || kind(o) == StepKind::CacheWait);
    if !cache_ops.is_empty() && cache_in_tail_only {
        // Everything that happens only in the tail rides on the fill (its queries, its pool waits).
        let tail_only: Vec<&OperationTime> = t
            .operations
            .iter()
            .filter(|o| {
                !used.has(o)
                    && !remote.contains(&o.service)
                    && o.ms_p50 < TAIL_ONLY_RATIO * o.ms_p99
                    && matches!(
                        kind(o),
                        StepKind::CacheFill
                            | StepKind::CacheWait
                            | StepKind::Database
                            | StepKind::PoolWait
                    )
            })
            .collect();
        let ms: f64 = tail_only.iter().map(|o| o.ms_p99 - o.ms_p50).sum();
        let share: f64 = tail_only.iter().map(|o| o.share_p99).sum::<f64>().min(1.0);
        if ms >= WAIT_MIN_MS && share >= WAIT_MIN_SHARE {
            let mut reasons = Vec::new();
            let level = trace_confidence(t, share, &mut reasons);
            let names: Vec<String> = tail_only.iter().map(|o| o.operation.clone()).collect();
            let fill = cache_ops[0].operation.clone();
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::CacheStampede,
                resource: Some(fill.clone()),
                title: format!(
                    "slow requests refill the cache themselves ({fill}): {} per slow request that typical requests do not pay",
                    fmt_ms(ms)
                ),
                tail_share: Some(share),
                tail_ms: Some(ms),
                score: share * multiplier(level),
                confidence: Confidence { level, reasons },
                evidence: vec![item(
                    src,
                    format!("tail-only critical-path time in {}", names.join(", ")),
                    ms,
                    "ms",
                    Some(format!("P50 time < {TAIL_ONLY_RATIO}× tail time; ≥ {WAIT_MIN_MS} ms and ≥ {WAIT_MIN_SHARE} of the tail")),
                    format!(
                        "the slowest requests spend {} ({} of their critical path) filling the cache, the typical request ~0: misses recompute on the request path, concurrently after each expiry",
                        fmt_ms(ms),
                        pct(share)
                    ),
                )],
                fixes: vec![
                    FixStep { fix: FixType::Caching, horizon: Horizon::QuickWin, action: "single-flight the fill: concurrent misses of one key wait for one computation (request coalescing)".into(), expected: ctx.amdahl(t, ms * 0.5, "coalescing concurrent fills (about half, assumed)"), setting: None },
                    FixStep { fix: FixType::Caching, horizon: Horizon::Structural, action: "serve stale while revalidating in the background, and add jitter to TTLs so keys do not expire together".into(), expected: ctx.amdahl(t, ms, "refreshing off the request path"), setting: None },
                ],
                predictions: Vec::new(),
            });
            for o in tail_only {
                used.take(o);
            }
        }
    }

    // Waiting steps.
    for o in &t.operations {
        if used.has(o) || !o.wait || o.ms_p99 < WAIT_MIN_MS || o.share_p99 < WAIT_MIN_SHARE {
            continue;
        }
        let k = kind(o);
        let mut reasons = Vec::new();
        let mut level = trace_confidence(t, o.share_p99, &mut reasons);
        let base_item = item(
            src,
            format!(
                "tail critical-path share of {} ({})",
                o.operation, o.service
            ),
            o.share_p99,
            "share",
            Some(format!("≥ {WAIT_MIN_SHARE} and ≥ {WAIT_MIN_MS} ms")),
            format!(
                "slow requests wait {} in {} ({} of their critical path); typical requests {} ({})",
                fmt_ms(o.ms_p99),
                o.operation,
                pct(o.share_p99),
                fmt_ms(o.ms_p50),
                pct(o.share_p50)
            ),
        );
        let removed = ctx.amdahl(
            t,
            o.ms_p99,
            &format!("removing the wait in {}", o.operation),
        );
        used.take(o);
        match k {
            StepKind::PauseWait => {
                let mut evidence = vec![base_item];
                if let Some(s) = ctx
                    .ev
                    .soak
                    .as_ref()
                    .and_then(|s| s.stalls.as_ref())
                    .filter(|s| s.periodic)
                {
                    level = Level::High;
                    reasons.push("soak found the same stalls recurring periodically".into());
                    evidence.push(item(
                        "soak",
                        "periodic stall events",
                        s.events as f64,
                        "events",
                        Some("≥ 5 events with gap CV ≤ 0.25".into()),
                        format!(
                            "{} stall events in {} s, period {}",
                            s.events,
                            s.seconds,
                            s.period_s.map_or("≤ 1 s".into(), |p| format!("{p:.1} s"))
                        ),
                    ));
                }
                if let Some(spikes) = ctx.run().and_then(spike_seconds) {
                    evidence.push(spikes);
                }
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::PeriodicStalls,
                    resource: Some(o.operation.clone()),
                    title: format!("stop-the-world pauses hold requests in {} ({} per slow request)", o.operation, fmt_ms(o.ms_p99)),
                    tail_share: Some(o.share_p99),
                    tail_ms: Some(o.ms_p99),
                    score: o.share_p99 * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence,
                    fixes: vec![
                        FixStep { fix: FixType::PauseTuning, horizon: Horizon::QuickWin, action: "find what stops the world (GC or safepoint logs, a periodic job, compaction) and shorten it: a low-pause collector, a smaller heap or allocation rate, periodic work spread out".into(), expected: removed, setting: None },
                        FixStep { fix: FixType::HotPathRedesign, horizon: Horizon::Structural, action: "move the periodic work out of the serving process, or make it incremental".into(), expected: None, setting: None },
                    ],
                    predictions: Vec::new(),
                });
            }
            StepKind::LockWait => {
                let mut evidence = vec![base_item];
                let hold_ms = t
                    .operations
                    .iter()
                    .filter(|h| {
                        !h.wait
                            && names::words(&h.operation)
                                .iter()
                                .any(|w| names::LOCK_WORDS.contains(&w.as_str()))
                    })
                    .map(|h| h.ms_p50)
                    .sum::<f64>();
                let plateau = plateau_items(ctx);
                if !plateau.is_empty() {
                    level = Level::High;
                    reasons
                        .push("stress shows a throughput plateau (a serialised resource)".into());
                    evidence.extend(plateau);
                }
                if let Some(u) = ctx
                    .stress()
                    .and_then(|s| s.usl.as_ref())
                    .filter(|u| u.class == "contention-limited")
                {
                    level = Level::High;
                    reasons.push(format!(
                        "the USL fit is contention-limited (σ = {:.2})",
                        u.sigma
                    ));
                    evidence.push(item(
                        "stress",
                        "USL contention σ",
                        u.sigma,
                        "",
                        None,
                        format!(
                            "USL σ = {:.2}: a serialised fraction caps throughput near λ/σ",
                            u.sigma
                        ),
                    ));
                }
                let hold = (hold_ms > 0.0).then_some(hold_ms).or_else(|| {
                    ctx.stress()
                        .and_then(|s| s.plateau.as_ref())
                        .map(|p| 1000.0 / p.plateau_rps)
                });
                let predictions = queue_model(ctx, Some(1), hold)
                    .map(|q| what_if(ctx, &q, "lock"))
                    .unwrap_or_default();
                let capacity_note = hold
                    .map(|h| {
                        format!(
                            " One holder at a time for {}: at most {} through it.",
                            fmt_ms(h),
                            rate_text(1000.0 / h)
                        )
                    })
                    .unwrap_or_default();
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::LockContention,
                    resource: Some(o.operation.clone()),
                    title: format!("requests serialise on a lock: {} per slow request in {}", fmt_ms(o.ms_p99), o.operation),
                    tail_share: Some(o.share_p99),
                    tail_ms: Some(o.ms_p99),
                    score: o.share_p99 * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence,
                    fixes: vec![
                        FixStep { fix: FixType::HotPathRedesign, horizon: Horizon::QuickWin, action: format!("take the shared lock out of the hot path: atomic or lock-free updates, or per-key locks (striping) so requests for different keys never wait for each other; at least move work out of the critical section.{capacity_note}"), expected: removed, setting: None },
                        FixStep { fix: FixType::Backpressure, horizon: Horizon::QuickWin, action: "bound the wait (try-lock with a deadline) and shed what cannot be served in time".into(), expected: None, setting: None },
                        FixStep { fix: FixType::HotPathRedesign, horizon: Horizon::Structural, action: "partition the state (one owner per shard) or use optimistic concurrency".into(), expected: None, setting: None },
                    ],
                    predictions,
                });
            }
            StepKind::CacheWait => {
                // Waiting for another request's fill without a fill in the tail: still the cache's cost.
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::CacheStampede,
                    resource: Some(o.operation.clone()),
                    title: format!("slow requests wait for cache fills ({} in {})", fmt_ms(o.ms_p99), o.operation),
                    tail_share: Some(o.share_p99),
                    tail_ms: Some(o.ms_p99),
                    score: o.share_p99 * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence: vec![base_item],
                    fixes: vec![FixStep { fix: FixType::Caching, horizon: Horizon::QuickWin, action: "serve stale while revalidating in the background, so no request waits for a fill".into(), expected: removed, setting: None }],
                    predictions: Vec::new(),
                });
            }
            _ => {
                let noun = names::resource_noun(&o.operation);
                let mut evidence = vec![base_item];
                let plateau = plateau_items(ctx);
                if !plateau.is_empty() {
                    level = Level::High;
                    reasons.push(
                        "stress shows a throughput plateau (a fixed-capacity resource)".into(),
                    );
                    evidence.extend(plateau);
                }
                let db_ms = db_time_ms(t, &remote);
                let hold = (noun == "connection pool" && db_ms > 0.0).then_some(db_ms);
                if let Some(h) = hold {
                    evidence.push(item(src, "holding time (database time of a typical request)", h, "ms", None, format!("a typical request holds a connection for about {} (its database statements at P50)", fmt_ms(h))));
                }
                let model = queue_model(ctx, None, hold);
                let predictions = model
                    .as_ref()
                    .map(|q| what_if(ctx, q, noun))
                    .unwrap_or_default();
                let sized = hold.and_then(|h| sizing(ctx, h, noun));
                let mut fixes = Vec::new();
                let (setting, size_text) = match (&sized, &model) {
                    (Some((c, p)), Some(q)) => (Some(*c as f64), format!("grow the {noun} from about {} to {c}: {}", q.servers, p.text)),
                    (Some((c, p)), None) => (Some(*c as f64), format!("size the {noun} to {c}: {}", p.text)),
                    _ => (None, format!("size the {noun} by Little's law: slots = target rate × holding time (measure the holding time: trace the work done while holding a slot)")),
                };
                fixes.push(FixStep {
                    fix: FixType::PoolSizing,
                    horizon: Horizon::QuickWin,
                    action: format!("{size_text}; check that what sits behind the {noun} can take that much concurrency, or the queue moves there"),
                    expected: removed,
                    setting,
                });
                fixes.push(FixStep { fix: FixType::Backpressure, horizon: Horizon::QuickWin, action: format!("bound the wait for the {noun} (an acquire timeout) and shed what cannot be served in time instead of queueing without limit"), expected: None, setting: None });
                fixes.push(FixStep { fix: FixType::HotPathRedesign, horizon: Horizon::Structural, action: format!("hold the {noun} for less time: only around the statement, not around slow work (capacity = slots ÷ holding time)"), expected: None, setting: None });
                fixes.push(FixStep { fix: FixType::Bulkhead, horizon: Horizon::Structural, action: format!("separate {noun}s per endpoint or tenant so one slow path cannot take every slot"), expected: None, setting: None });
                let mut preds = predictions;
                if let Some((_, p)) = sized {
                    preds.push(p);
                }
                out.push(Constraint {
                    rank: 0,
                    class: ConstraintClass::Queueing,
                    resource: Some(o.operation.clone()),
                    title: format!(
                        "requests queue for a {noun}: {} per slow request in {}",
                        fmt_ms(o.ms_p99),
                        o.operation
                    ),
                    tail_share: Some(o.share_p99),
                    tail_ms: Some(o.ms_p99),
                    score: o.share_p99 * multiplier(level),
                    confidence: Confidence { level, reasons },
                    evidence,
                    fixes,
                    predictions: preds,
                });
            }
        }
    }

    // Dependencies, per remote service.
    let mut uniform = Vec::new();
    for svc in &remote {
        let ops: Vec<&OperationTime> = t
            .operations
            .iter()
            .filter(|o| &o.service == svc && !used.has(o))
            .collect();
        if ops.is_empty() {
            continue;
        }
        let ms_p50: f64 = ops.iter().map(|o| o.ms_p50).sum();
        let ms_p99: f64 = ops.iter().map(|o| o.ms_p99).sum();
        let share_p99: f64 = ops.iter().map(|o| o.share_p99).sum::<f64>().min(1.0);
        let share_p50: f64 = ops.iter().map(|o| o.share_p50).sum::<f64>().min(1.0);
        if ms_p99 < DEP_MIN_MS || share_p99 < DEP_MIN_SHARE {
            continue;
        }
        let slow_typically = ms_p50 >= DEP_MIN_MS && share_p50 >= DEP_MIN_SHARE;
        let tail_grows = share_p99 >= share_p50 + DEP_TAIL_EXCESS;
        let shares = || {
            format!(
                "{} per slow request, {} of their critical path against {} of a typical request's",
                fmt_ms(ms_p99),
                pct(share_p99),
                pct(share_p50)
            )
        };
        if !slow_typically && !tail_grows {
            uniform.push(format!("{svc}: {}", shares()));
            continue;
        }
        if !slow_typically && t.n_tail < MIN_TAIL_TRACES {
            notes.push(format!(
                "{}: {svc} is slower in the tail ({}), but only {} slow traces show it: too few to name it; collect more traces (a longer run, or more sampling)",
                t.source,
                shares(),
                t.n_tail
            ));
            continue;
        }
        let top = ops
            .iter()
            .max_by(|a, b| a.ms_p99.total_cmp(&b.ms_p99))
            .expect("non-empty");
        let op_name = top.operation.clone();
        let mut reasons = Vec::new();
        let level = trace_confidence(t, share_p99, &mut reasons);
        let heavy = ms_p50 > 0.0 && ms_p99 >= HEAVY_TAIL_RATIO * ms_p50;
        let evidence = vec![
            item(src, format!("tail critical-path share of {svc}"), share_p99, "share", Some(format!("≥ {DEP_MIN_SHARE} and ≥ {DEP_MIN_MS} ms")), format!("slow requests spend {} in {svc} ({op_name}), {} of their critical path; typical requests {} ({})", fmt_ms(ms_p99), pct(share_p99), fmt_ms(ms_p50), pct(share_p50))),
            item(src, format!("{svc}: tail time over P50 time"), if ms_p50 > 0.0 { ms_p99 / ms_p50 } else { 0.0 }, "×", Some(format!("≥ {HEAVY_TAIL_RATIO} is a long tail")), if heavy { format!("its tail is {:.1}× its typical time: a long-tailed dependency", ms_p99 / ms_p50) } else { "slow for every request, not only in the tail".to_string() }),
        ];
        for o in &ops {
            used.take(o);
        }
        let all_removed = ctx.amdahl(t, ms_p99, &format!("taking {svc} off the request path"));
        if names::is_side_effect(svc, &op_name) {
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::SynchronousNonCritical,
                resource: Some(format!("{svc} / {op_name}")),
                title: format!("the response waits for {svc} ({op_name}), a side effect it does not need: {} per slow request", fmt_ms(ms_p99)),
                tail_share: Some(share_p99),
                tail_ms: Some(ms_p99),
                score: share_p99 * multiplier(level),
                confidence: Confidence { level, reasons },
                evidence,
                fixes: vec![
                    FixStep { fix: FixType::Async, horizon: Horizon::QuickWin, action: format!("make the {svc} call asynchronous: enqueue it and answer at once; a worker pool delivers (a bounded queue with a dead-letter or retry policy)"), expected: all_removed, setting: None },
                    FixStep { fix: FixType::Timeouts, horizon: Horizon::QuickWin, action: format!("until then, time out the {svc} call (about {}) so its tail cannot hold responses", fmt_ms(nice_ceil(4.0 * ms_p50.max(1.0)))), expected: None, setting: Some(nice_ceil(4.0 * ms_p50.max(1.0))) },
                    FixStep { fix: FixType::Bulkhead, horizon: Horizon::Structural, action: format!("give {svc} its own workers and queue bound so a slow {svc} never takes request threads"), expected: None, setting: None },
                ],
                predictions: Vec::new(),
            });
        } else {
            let timeout = nice_ceil(4.0 * ms_p50.max(1.0));
            let fixes = if heavy {
                vec![
                    FixStep { fix: FixType::Timeouts, horizon: Horizon::QuickWin, action: format!("time out {op_name} at about {} (≈ 4× its typical {}) with a fallback (defer, retry later, a cached answer)", fmt_ms(timeout), fmt_ms(ms_p50)), expected: ctx.amdahl(t, (ms_p99 - timeout).max(0.0), &format!("a {} timeout", fmt_ms(timeout))), setting: Some(timeout) },
                    FixStep { fix: FixType::CircuitBreaker, horizon: Horizon::QuickWin, action: format!("open a circuit breaker when {svc} is slow or failing, so requests fail over fast"), expected: None, setting: None },
                    FixStep { fix: FixType::FanOutReduction, horizon: Horizon::Structural, action: format!("hedge: send a second request to {svc} when the first is slower than its P95"), expected: None, setting: None },
                    FixStep { fix: FixType::Async, horizon: Horizon::Structural, action: format!("if the response does not need {svc}'s answer, take the call off the request path"), expected: all_removed, setting: None },
                ]
            } else {
                vec![
                    FixStep { fix: FixType::Caching, horizon: Horizon::QuickWin, action: format!("cache {svc}'s answers where they repeat"), expected: None, setting: None },
                    FixStep { fix: FixType::Async, horizon: Horizon::Structural, action: format!("if the response does not need {svc}'s answer, take the call off the request path"), expected: all_removed, setting: None },
                    FixStep { fix: FixType::Timeouts, horizon: Horizon::QuickWin, action: format!("time out {op_name} at about {} so an outage of {svc} cannot hold every request", fmt_ms(timeout)), expected: None, setting: Some(timeout) },
                ]
            };
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::SlowDependency,
                resource: Some(format!("{svc} / {op_name}")),
                title: if heavy {
                    format!(
                        "{svc} ({op_name}) has a long tail: {} per slow request vs {} typically",
                        fmt_ms(ms_p99),
                        fmt_ms(ms_p50)
                    )
                } else {
                    format!(
                        "{svc} ({op_name}) is slow for every request: {}",
                        fmt_ms(ms_p99)
                    )
                },
                tail_share: Some(share_p99),
                tail_ms: Some(ms_p99),
                score: share_p99 * multiplier(level),
                confidence: Confidence { level, reasons },
                evidence,
                fixes,
                predictions: Vec::new(),
            });
        }
    }

    if !uniform.is_empty() {
        notes.push(format!(
            "{}: no dependency named: slow requests are slower at every step in proportion, none takes a larger share of them than of a typical request ({}); a host-wide cause (CPU contention, scheduling) fits this better than any one dependency",
            t.source,
            uniform.join("; ")
        ));
    }

    // Slow queries: slow for the typical request too (a missing index is slow everywhere).
    for o in &t.operations {
        if used.has(o) || kind(o) != StepKind::Database {
            continue;
        }
        let typical = o.ms_p50 >= QUERY_MIN_MS && o.share_p50 >= QUERY_MIN_SHARE;
        if !typical || o.ms_p99 < QUERY_MIN_MS {
            continue;
        }
        let mut reasons = Vec::new();
        let level = trace_confidence(t, o.share_p99.max(o.share_p50), &mut reasons);
        let share = o.share_p99.max(0.0);
        out.push(Constraint {
            rank: 0,
            class: ConstraintClass::SlowQuery,
            resource: Some(o.operation.clone()),
            title: format!("{} is slow for every request: {} of a typical request's {}", o.operation, fmt_ms(o.ms_p50), fmt_ms(t.mean_ms_p50)),
            tail_share: Some(share),
            tail_ms: Some(o.ms_p99),
            score: share * multiplier(level),
            confidence: Confidence { level, reasons },
            evidence: vec![item(src, format!("P50 critical-path share of {}", o.operation), o.share_p50, "share", Some(format!("≥ {QUERY_MIN_SHARE} and ≥ {QUERY_MIN_MS} ms at P50")), format!("the typical request spends {} in {} ({}), slow requests {} ({}): slow everywhere, as a full scan is", fmt_ms(o.ms_p50), o.operation, pct(o.share_p50), fmt_ms(o.ms_p99), pct(o.share_p99)))],
            fixes: vec![
                FixStep { fix: FixType::QueryIndex, horizon: Horizon::QuickWin, action: format!("EXPLAIN the statements of {}: add the index their WHERE/JOIN columns need (a scan costs in proportion to the table), select only needed columns", o.operation), expected: ctx.amdahl(t, 0.9 * o.ms_p99, "an index (90% of the query time, assumed)"), setting: None },
                FixStep { fix: FixType::Caching, horizon: Horizon::Structural, action: "cache or precompute results that many requests read".into(), expected: None, setting: None },
            ],
            predictions: Vec::new(),
        });
        used.take(o);
    }
}

/// Seconds whose P99 spikes far above the run's typical median: corroborates pauses.
fn spike_seconds(run: &RunEvidence) -> Option<EvidenceItem> {
    let rows: Vec<_> = run.seconds.iter().filter(|s| s.requests > 0).collect();
    if rows.len() < 5 {
        return None;
    }
    let mut p50s: Vec<f64> = rows.iter().map(|r| r.p50_ms).collect();
    p50s.sort_by(f64::total_cmp);
    let median = p50s[p50s.len() / 2];
    let threshold = (4.0 * median).max(median + 20.0);
    let spikes = rows.iter().filter(|r| r.max_ms >= threshold).count();
    let share = spikes as f64 / rows.len() as f64;
    (share >= 0.5).then(|| {
        item(
            "run",
            "seconds with a latency spike",
            share,
            "share",
            Some(format!("max ≥ {} (4× the median second's P50, and +20 ms)", fmt_ms(threshold))),
            format!("{spikes} of {} seconds have a request slower than {}: pauses recur at least every couple of seconds", rows.len(), fmt_ms(threshold)),
        )
    })
}

fn memory_constraint(ctx: &Ctx<'_>, out: &mut Vec<Constraint>) {
    let mut evidence = Vec::new();
    let mut reasons = Vec::new();
    let mut level = None;
    let mut growth_per_s = None;
    if let Some(soak) = &ctx.ev.soak {
        if let Some(d) = soak
            .drifts
            .iter()
            .find(|d| d.metric == "rss_bytes" && d.significant && d.slope_per_hour > 0.0)
        {
            level = Some(Level::High);
            reasons.push(format!(
                "soak: RSS trend significant (p = {:.2e}) and material",
                d.p_value
            ));
            growth_per_s = Some(d.slope_per_hour / 3600.0);
            evidence.push(item(
                "soak",
                "RSS slope (Theil–Sen)",
                d.slope_per_hour,
                "bytes/hour",
                Some("Mann–Kendall p < α, change ≥ 5% of median and ≥ 8 MiB".into()),
                format!(
                    "RSS grows {}/hour ({} over the soak, p = {:.2e})",
                    mib(d.slope_per_hour),
                    mib(d.change_over_run),
                    d.p_value
                ),
            ));
        }
    }
    if let Some(run) = ctx.run() {
        if let Some(r) = &run.resources {
            if r.rss_series.len() >= 5 {
                let (x, y): (Vec<f64>, Vec<f64>) = r.rss_series.iter().copied().unzip();
                if let Some(tr) = chokepoint_stats::drift::trend(&x, &y, 0.95) {
                    let span = x.last().copied().unwrap_or(0.0) - x.first().copied().unwrap_or(0.0);
                    let over_run = tr.slope * span;
                    let per_request = if run.throughput_rps > 0.0 {
                        tr.slope / run.throughput_rps
                    } else {
                        0.0
                    };
                    let material = tr.p_value < RSS_MAX_P
                        && over_run >= RSS_MIN_GROWTH_BYTES
                        && per_request >= RSS_MIN_BYTES_PER_REQUEST
                        && tr.slope_low > 0.0
                        // Steady: a leak at a constant rate grows in a straight line (a tight
                        // slope interval); pages of a mapped file or a warming cache come in steps.
                        && (tr.slope_high - tr.slope_low) / tr.slope <= RSS_MAX_CI_WIDTH;
                    if material {
                        level = Some(level.map_or(Level::Medium, raise));
                        reasons.push(format!(
                            "run: RSS rises steadily (Mann–Kendall p = {:.1e}) by {} over {:.0} s",
                            tr.p_value,
                            mib(over_run),
                            span
                        ));
                        growth_per_s = growth_per_s.or(Some(tr.slope));
                        evidence.push(item("run", "RSS slope (Theil–Sen, per-second samples)", tr.slope, "bytes/s", Some(format!("p < {RSS_MAX_P}, ≥ {} over the run, ≥ {} per request", mib(RSS_MIN_GROWTH_BYTES), "1 KiB")), format!("RSS grows {}/s (95% CI {}–{}) at {}: about {:.0} KiB retained per request", mib(tr.slope), mib(tr.slope_low), mib(tr.slope_high), rate_text(run.throughput_rps), per_request / 1024.0)));
                    }
                }
            }
        }
    }
    let Some(level) = level else { return };
    let per_s = growth_per_s.unwrap_or(0.0);
    out.push(Constraint {
        rank: 0,
        class: ConstraintClass::MemoryGrowth,
        resource: Some("resident memory".into()),
        title: format!("memory grows with every request: {}/s, {}/hour, until the process is killed", mib(per_s), mib(per_s * 3600.0)),
        tail_share: None,
        tail_ms: None,
        score: 0.9 * multiplier(level),
        confidence: Confidence { level, reasons },
        evidence,
        fixes: vec![
            FixStep { fix: FixType::BoundMemory, horizon: Horizon::QuickWin, action: "find what each request retains (a heap profile: heaptrack, jemalloc prof, pprof, a heap dump diffed over time) and release it, or bound it (a capped cache with eviction)".into(), expected: Some(Effect { metric: "rss_growth_bytes_per_s".into(), before: per_s, after: 0.0, method: "a leak fixed leaves RSS flat at a constant rate".into() }), setting: None },
            FixStep { fix: FixType::LoadShedding, horizon: Horizon::Structural, action: "until fixed: memory limits with restarts before the limit, so the process is recycled, not OOM-killed under load".into(), expected: None, setting: None },
        ],
        predictions: Vec::new(),
    });
}

fn run_constraints(ctx: &Ctx<'_>, out: &mut Vec<Constraint>) {
    let Some(run) = ctx.run() else { return };
    // Connection set-up on every request.
    if let Some(connect) = &run.connect {
        let share_new = if run.requests > 0 {
            run.connections_opened as f64 / run.requests as f64
        } else {
            0.0
        };
        let cost_share = if run.latency.mean > 0.0 {
            connect.mean * share_new.min(1.0) / run.latency.mean
        } else {
            0.0
        };
        if share_new >= NEW_CONNECTION_SHARE
            && cost_share >= CONNECT_MIN_SHARE
            && connect.mean >= 0.2
        {
            let level = if cost_share >= 0.4 {
                Level::High
            } else {
                Level::Medium
            };
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::ConnectionSetup,
                resource: Some("connection set-up".into()),
                title: format!("{} of requests open a new connection: connect costs {} of a mean {}", pct(share_new.min(1.0)), fmt_ms(connect.mean), fmt_ms(run.latency.mean)),
                tail_share: Some(cost_share.min(1.0)),
                tail_ms: Some(connect.p99),
                score: cost_share.min(1.0) * multiplier(level),
                confidence: Confidence { level, reasons: vec![format!("{} new connections for {} requests", run.connections_opened, run.requests)] },
                evidence: vec![item("run", "connections opened per request", share_new, "share", Some(format!("≥ {NEW_CONNECTION_SHARE} and connect ≥ {} of the mean latency", pct(CONNECT_MIN_SHARE))), format!("{} connections for {} requests; connect mean {}, P99 {}", run.connections_opened, run.requests, fmt_ms(connect.mean), fmt_ms(connect.p99)))],
                fixes: vec![
                    FixStep { fix: FixType::ConnectionReuse, horizon: Horizon::QuickWin, action: "keep connections alive and pool them in the client (and TLS session resumption)".into(), expected: Some(Effect { metric: "mean_ms".into(), before: run.latency.mean, after: (run.latency.mean - connect.mean * share_new.min(1.0)).max(0.0), method: "the connect phase disappears for reused connections".into() }), setting: None },
                ],
                predictions: Vec::new(),
            });
        }
    }
    // CPU saturated at today's load.
    if let Some(r) = &run.resources {
        if r.cpu_saturated {
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::CpuSaturation,
                resource: Some("cpu".into()),
                title: format!(
                    "the target's CPU is saturated at today's load ({} of {} CPUs)",
                    r.cpu_cores_mean.map_or("?".into(), |c| format!("{c:.2}")),
                    r.cpus_available.map_or("?".into(), |c| format!("{c:.0}"))
                ),
                tail_share: None,
                tail_ms: None,
                score: 0.95,
                confidence: Confidence {
                    level: Level::High,
                    reasons: vec!["the probe measured the target's own CPU at its limit".into()],
                },
                evidence: vec![item(
                    "run",
                    "target CPU cores (mean)",
                    r.cpu_cores_mean.unwrap_or(0.0),
                    "cores",
                    Some("≥ 90% of the CPUs available, or ≥ 10% of periods throttled".into()),
                    "the target used its CPUs fully during the baseline",
                )],
                fixes: cpu_fixes(),
                predictions: Vec::new(),
            });
        }
    }
}

fn cpu_fixes() -> Vec<FixStep> {
    vec![
        FixStep { fix: FixType::HotPathRedesign, horizon: Horizon::QuickWin, action: "profile the hot path under load (a flame graph: perf, async-profiler, pprof) and remove the largest self-time frames".into(), expected: None, setting: None },
        FixStep { fix: FixType::Caching, horizon: Horizon::QuickWin, action: "cache results that are computed again and again".into(), expected: None, setting: None },
        FixStep { fix: FixType::LoadShedding, horizon: Horizon::QuickWin, action: "shed load beyond capacity (429/503) so latency holds for the rest".into(), expected: None, setting: None },
        FixStep { fix: FixType::ScaleOut, horizon: Horizon::Structural, action: "add CPUs or instances (capacity grows with them only while nothing else is shared)".into(), expected: None, setting: None },
    ]
}

fn stress_constraints(ctx: &Ctx<'_>, out: &mut Vec<Constraint>, notes: &mut Vec<String>) {
    let Some(s) = ctx.stress() else { return };
    let headroom = match (
        s.capacity_rps.or(s.plateau.map(|p| p.plateau_rps)),
        ctx.rate,
    ) {
        (Some(c), Some(r)) if r > 0.0 => Some(c / r),
        _ => None,
    };
    let cpu_first = s.failed_first.as_deref() == Some("cpu");
    if let (Some(h), Some(cap)) = (headroom, s.capacity_rps) {
        if h >= HEADROOM_MIN {
            notes.push(format!(
                "capacity {} ({:.1}× today's load){}: no constraint at this load",
                rate_text(cap),
                h,
                if cpu_first { ", CPU-bound" } else { "" }
            ));
            return;
        }
    }
    if headroom.is_none() && s.failed_rps.is_none() {
        if let Some(max) = s.max_rate {
            notes.push(format!("stress found no limit up to {}", rate_text(max)));
        }
        return;
    }
    if cpu_first {
        out.push(Constraint {
            rank: 0,
            class: ConstraintClass::CpuSaturation,
            resource: Some("cpu".into()),
            title: format!(
                "CPU saturates first, at {}{}",
                s.capacity_rps.map_or("?".into(), rate_text),
                headroom.map_or(String::new(), |h| format!(" ({h:.1}× today's load)"))
            ),
            tail_share: None,
            tail_ms: None,
            score: 0.6,
            confidence: Confidence {
                level: Level::Medium,
                reasons: vec![
                    "stress: the target's CPU was saturated at the first failing step".into(),
                ],
            },
            evidence: vec![item(
                "stress",
                "capacity",
                s.capacity_rps.unwrap_or(0.0),
                "req/s",
                Some(format!("< {HEADROOM_MIN}× today's load")),
                s.verdict.clone(),
            )],
            fixes: cpu_fixes(),
            predictions: Vec::new(),
        });
    } else if let Some(p) = &s.plateau {
        // Only when no trace names the resource: traces attach the plateau to the waiting step.
        if !out.iter().any(|c| {
            matches!(
                c.class,
                ConstraintClass::Queueing | ConstraintClass::LockContention
            )
        }) {
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::Queueing,
                resource: None,
                title: format!("throughput plateaus at {}: requests queue for a fixed-capacity resource of at most about {:.0} slots", rate_text(p.plateau_rps), p.slots),
                tail_share: None,
                tail_ms: None,
                score: 0.5,
                confidence: Confidence { level: Level::Medium, reasons: vec!["stress shows a plateau; no trace names the resource".into()] },
                evidence: plateau_items(ctx),
                fixes: vec![
                    FixStep { fix: FixType::PoolSizing, horizon: Horizon::QuickWin, action: "find the pool, lock or queue in front of the work (traces: the waiting span) and size it by Little's law".into(), expected: None, setting: None },
                    FixStep { fix: FixType::Backpressure, horizon: Horizon::QuickWin, action: "bound the queue and shed excess instead of letting latency grow".into(), expected: None, setting: None },
                ],
                predictions: Vec::new(),
            });
        }
    }
}

fn soak_constraints(ctx: &Ctx<'_>, out: &mut Vec<Constraint>, notes: &mut Vec<String>) {
    let Some(soak) = &ctx.ev.soak else { return };
    if let Some(st) = soak.stalls.as_ref().filter(|s| s.periodic) {
        if !out
            .iter()
            .any(|c| c.class == ConstraintClass::PeriodicStalls)
        {
            out.push(Constraint {
                rank: 0,
                class: ConstraintClass::PeriodicStalls,
                resource: None,
                title: format!("periodic stalls every {}: bursts of requests slower than {}", st.period_s.map_or("≤ 1 s".into(), |p| format!("{p:.1} s")), fmt_ms(st.threshold_ms)),
                tail_share: None,
                tail_ms: None,
                score: 0.7,
                confidence: Confidence { level: Level::Medium, reasons: vec![format!("{} events at regular intervals", st.events)] },
                evidence: vec![item("soak", "stall events", st.events as f64, "events", Some("≥ 5 events, gap CV ≤ 0.25".into()), format!("{} stall seconds in {}", st.stall_seconds, st.seconds))],
                fixes: vec![FixStep { fix: FixType::PauseTuning, horizon: Horizon::QuickWin, action: "find what stops the world on that period (GC, a scheduled job, compaction) and shorten or spread it".into(), expected: None, setting: None }],
                predictions: Vec::new(),
            });
        }
    }
    for d in soak
        .drifts
        .iter()
        .filter(|d| d.significant && d.metric == "p99_ms")
    {
        notes.push(format!(
            "soak: P99 creeps {:+.1} ms/hour (p = {:.2e}): look for growing queues, caches or data",
            d.slope_per_hour, d.p_value
        ));
    }
}

/// Same class and resource: one constraint, evidence joined, confidence raised.
fn merge(list: Vec<Constraint>) -> Vec<Constraint> {
    let mut out: Vec<Constraint> = Vec::new();
    for c in list {
        match out
            .iter_mut()
            .find(|o| o.class == c.class && o.resource == c.resource)
        {
            Some(o) => {
                o.evidence.extend(c.evidence);
                if c.score > o.score {
                    o.score = c.score;
                    o.tail_share = c.tail_share;
                    o.tail_ms = c.tail_ms;
                }
                o.confidence.level = raise(o.confidence.level.max(c.confidence.level));
                o.confidence.reasons.extend(c.confidence.reasons);
            }
            None => out.push(c),
        }
    }
    out
}

fn global_predictions(ctx: &Ctx<'_>, ranked: &[Constraint]) -> Vec<Prediction> {
    if let Some(c) = ranked.iter().find(|c| {
        c.predictions
            .iter()
            .any(|p| p.question.starts_with("P99 at"))
    }) {
        return c
            .predictions
            .iter()
            .filter(|p| p.question.starts_with("P99 at"))
            .cloned()
            .collect();
    }
    // Measured, not modelled: the stress curve at 1.5× and 2× today's rate.
    let (Some(rate), Some(s)) = (ctx.rate, ctx.stress()) else {
        return Vec::new();
    };
    let mut pts: Vec<(f64, f64)> = s
        .steps
        .iter()
        .filter_map(|p| p.offered_rps.map(|o| (o, p.latency.p99)))
        .filter(|(_, l)| *l > 0.0)
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if pts.len() < 2 {
        return Vec::new();
    }
    [1.5, 2.0]
        .iter()
        .map(|f| {
            let r = rate * f;
            let value = interpolate(&pts, r);
            let beyond_failure = s.failed_rps.is_some_and(|fr| r >= fr);
            Prediction {
                question: format!("P99 at {f}× today's load"),
                load_factor: Some(*f),
                rate_rps: Some(r),
                value,
                unit: "ms".into(),
                model: "measured: linear interpolation of the stress steps' P99 over offered rate (no queueing model: no resource was named)".into(),
                text: match value {
                    Some(v) => format!("at {f}× today's load ({}), stress measured P99 ≈ {}{}", rate_text(r), fmt_ms(v), if beyond_failure { " (beyond the capacity stress found)" } else { "" }),
                    None => format!("at {f}× today's load ({}): outside the rates stress measured", rate_text(r)),
                },
            }
        })
        .collect()
}

fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = pts.first()?;
    let last = pts.last()?;
    if x < first.0 || x > last.0 {
        return None;
    }
    pts.windows(2)
        .find(|w| x >= w[0].0 && x <= w[1].0)
        .map(|w| {
            let span = w[1].0 - w[0].0;
            if span <= 0.0 {
                w[1].1
            } else {
                w[0].1 + (w[1].1 - w[0].1) * (x - w[0].0) / span
            }
        })
}

fn measure_next(ctx: &Ctx<'_>, constraints: &[Constraint]) -> Vec<NextStep> {
    let ev = ctx.ev;
    let target = ev
        .run
        .as_ref()
        .map(|r| r.target.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "URL".into());
    let rate = ctx.rate.map_or("R".to_string(), |r| format!("{r:.0}"));
    let mut out = Vec::new();
    let Some(run) = ev.run.as_ref() else {
        out.push(NextStep {
            situation: "users complain but dashboards look fine".into(),
            command: format!("chokepoint run {target} --rate R --warmup 5s -z 60s --out base/"),
            why: "a tail baseline from the intended send time (P99, P99.9 with their sample counts): averages hide what users get".into(),
        });
        return out;
    };
    let timeouts = run
        .errors
        .iter()
        .filter(|(k, _)| k == "timeout")
        .map(|(_, n)| *n)
        .sum::<u64>();
    if run.requests > 0 && timeouts as f64 / run.requests as f64 >= 0.001 {
        out.push(NextStep {
            situation: format!("timeouts are rising ({timeouts} in the baseline)"),
            command: format!("chokepoint stress {target} --slo \"p99<{:.0}ms\" --watch-pid PID --out stress/", run.latency.p99.max(1.0)),
            why: "dependency and capacity signals: which step saturates first, and whether the target's CPU or a resource in front of it is the limit".into(),
        });
    }
    if ev.traces.is_empty() {
        out.push(NextStep {
            situation: "P95/P99 are known; where slow requests wait is not".into(),
            command: format!("chokepoint run {target} --rate {rate} -z 30s --otlp-listen 127.0.0.1:4318 --out base/ && chokepoint diagnose --run base/ --traces base/spans.jsonl"),
            why: "traces split a slow request into waiting (pool, lock, queue) and running (query, dependency, CPU): the constraint by name".into(),
        });
    }
    if ev.stress.is_none()
        && !constraints
            .iter()
            .any(|c| c.class == ConstraintClass::MemoryGrowth)
    {
        out.push(NextStep {
            situation: "P95/P99 or cost rise with load".into(),
            command: format!("chokepoint stress {target} --slo \"p99<{:.0}ms\" --out stress/", (run.latency.p99 * 2.0).max(1.0)),
            why: "isolate: the capacity, the knee, what fails first, and a queueing model for 1.5× and 2× today's load".into(),
        });
    }
    if run.resources.is_none() && ev.soak.is_none() {
        out.push(NextStep {
            situation: "no resource figures (CPU, memory) for the target".into(),
            command: format!(
                "chokepoint run {target} --rate {rate} -z 60s --watch-pid PID --out base/"
            ),
            why: "CPU saturation and memory growth need the target's own counters".into(),
        });
    }
    if ev.soak.is_none() && constraints.is_empty() {
        out.push(NextStep {
            situation: "fine in a minute; unknown over hours".into(),
            command: format!(
                "chokepoint soak {target} --rate {rate} --duration 1h --watch-pid PID --out soak/"
            ),
            why: "drift (P99, errors, RSS, fds) and periodic stalls only show over time".into(),
        });
    }
    out.push(NextStep {
        situation: "incidents after releases".into(),
        command: "chokepoint compare before/ after/ && chokepoint check after/ --budget budgets.toml --baseline before/".into(),
        why: "validation beyond noise, and budgets in CI so the fix stays fixed".into(),
    });
    out
}

pub(crate) fn diagnose(ev: &Evidence) -> Diagnosis {
    let run = ev.run.as_ref();
    let ctx = Ctx {
        ev,
        p99: run.filter(|r| r.latency.count > 0).map(|r| r.latency.p99),
        p50: run.filter(|r| r.latency.count > 0).map(|r| r.latency.p50),
        rate: run
            .map(|r| r.offered_rps.unwrap_or(r.throughput_rps))
            .filter(|r| *r > 0.0),
    };
    let mut notes = Vec::new();
    let mut list = Vec::new();
    for t in &ev.traces {
        if t.traces == 0 {
            notes.push(format!("{}: no complete traces", t.source));
            continue;
        }
        if t.n_tail < MIN_TAIL_TRACES {
            notes.push(format!(
                "{}: only {} traces in the tail group; trace-based verdicts are low-confidence",
                t.source, t.n_tail
            ));
        }
        trace_constraints(&ctx, t, &mut list, &mut notes);
    }
    run_constraints(&ctx, &mut list);
    memory_constraint(&ctx, &mut list);
    stress_constraints(&ctx, &mut list, &mut notes);
    soak_constraints(&ctx, &mut list, &mut notes);
    let mut constraints = merge(list);
    constraints.sort_by(|a, b| b.score.total_cmp(&a.score));
    for (i, c) in constraints.iter_mut().enumerate() {
        c.rank = i + 1;
    }
    if let Some(r) = run {
        if r.error_rate >= 0.01 {
            notes.push(format!(
                "{:.1}% of baseline requests failed ({}): latency percentiles cover responses only",
                r.error_rate * 100.0,
                r.errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let predictions = global_predictions(&ctx, &constraints);
    let next = measure_next(&ctx, &constraints);
    let mut used = Vec::new();
    if let Some(r) = run {
        used.push(format!("run {}", r.source));
    }
    if let Some(s) = &ev.stress {
        used.push(format!("stress {}", s.source));
    }
    if let Some(s) = &ev.soak {
        used.push(format!("soak {}", s.source));
    }
    for t in &ev.traces {
        used.push(format!("traces {}", t.source));
    }
    let headline = match (constraints.first(), run) {
        (Some(c), _) => format!("{} ({}, {} confidence)", c.title, c.class.label(), level_name(c.confidence.level)),
        (None, Some(r)) if r.latency.count > 0 => format!(
            "no constraint found at {}: P50 {}, P99 {}; nothing waits, slows or grows beyond the thresholds",
            rate_text(ctx.rate.unwrap_or(r.throughput_rps)),
            fmt_ms(r.latency.p50),
            fmt_ms(r.latency.p99)
        ),
        _ if used.is_empty() => "no evidence: start with a tail baseline".to_string(),
        _ => "no constraint found in the evidence given".to_string(),
    };
    Diagnosis {
        headline,
        healthy: constraints.is_empty(),
        constraints,
        predictions,
        measure_next: next,
        evidence_used: used,
        notes,
    }
}

/// Lowercase name of a level.
pub(crate) fn level_name(l: Level) -> &'static str {
    match l {
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::NetworkGap;

    fn op(service: &str, operation: &str, ms: (f64, f64), share: (f64, f64)) -> OperationTime {
        OperationTime {
            service: service.into(),
            operation: operation.into(),
            wait: false,
            ms_p50: ms.0,
            ms_p99: ms.1,
            share_p50: share.0,
            share_p99: share.1,
        }
    }

    /// A checkout calling payment, with the given payment times and shares; the
    /// rest of the critical path is the checkout's own.
    fn traces(payment_ms: (f64, f64), payment_share: (f64, f64), tail_ms: f64) -> Evidence {
        let rest = |s: f64| 1.0 - s;
        Evidence {
            traces: vec![TraceEvidence {
                source: "t.json".into(),
                traces: 2000,
                n_p50: 200,
                n_tail: 20,
                mean_ms_p50: 6.0,
                mean_ms_tail: tail_ms,
                operations: vec![
                    op("payment", "POST /charge", payment_ms, payment_share),
                    op(
                        "checkout",
                        "POST /checkout",
                        (6.0 * rest(payment_share.0), tail_ms * rest(payment_share.1)),
                        (rest(payment_share.0), rest(payment_share.1)),
                    ),
                ],
                network: vec![NetworkGap {
                    client: "checkout".into(),
                    server: "payment".into(),
                    mean_gap_ms: 0.1,
                    critical_path_share: 0.01,
                }],
                ..TraceEvidence::default()
            }],
            ..Evidence::default()
        }
    }

    #[test]
    fn a_uniformly_slower_tail_names_no_dependency() {
        // Measured on the healthy lab with the host's CPU contended: payment is
        // 4x slower in slow requests, but so is everything else (its share falls).
        let d = diagnose(&traces((3.16, 12.7), (0.49, 0.39), 32.0));
        assert!(d.healthy, "{:?}", d.constraints);
        assert!(
            d.notes.iter().any(|n| n.contains("no dependency named")
                && n.contains("payment")
                && n.contains("CPU contention")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn a_dependency_whose_share_grows_in_the_tail_is_named() {
        // 1 ms typically, 40 ms in slow requests: the tail is this dependency.
        let d = diagnose(&traces((1.0, 40.0), (0.17, 0.8), 50.0));
        let first = d.constraints.first().expect("a constraint");
        assert_eq!(first.class, ConstraintClass::SlowDependency);
        assert!(first.title.contains("long tail"), "{}", first.title);
    }

    #[test]
    fn a_tail_only_dependency_seen_in_few_slow_traces_is_not_named() {
        // Measured on the healthy lab (fixed 2 ms payment), CPU contended: 7 slow
        // traces, payment 15.3 ms in them. Too few to tell from noise.
        let mut ev = traces((3.15, 15.3), (0.5, 0.76), 20.0);
        ev.traces[0].n_tail = 7;
        let d = diagnose(&ev);
        assert!(d.healthy, "{:?}", d.constraints);
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("payment is slower in the tail")
                    && n.contains("only 7 slow traces")),
            "{:?}",
            d.notes
        );
        // The same with enough slow traces is named.
        ev.traces[0].n_tail = 40;
        assert_eq!(diagnose(&ev).constraints.len(), 1);
    }

    #[test]
    fn a_dependency_slow_for_every_request_is_named_even_if_its_share_falls() {
        // 60 ms for every request (synchronous email in the lab): named although
        // slow requests add time elsewhere too.
        let d = diagnose(&traces((60.0, 70.0), (0.9, 0.7), 100.0));
        let first = d.constraints.first().expect("a constraint");
        assert_eq!(first.class, ConstraintClass::SlowDependency);
        assert!(first.title.contains("every request"), "{}", first.title);
    }
}
