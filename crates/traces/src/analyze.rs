//! One trace: repair, tree, critical path (CRISP-style), network gaps and per-trace detector findings.
//!
//! The critical path is the chain of work the root's end waited on. From a
//! span's end (its *cursor*), take the synchronous child that finished last
//! (at or before the cursor, with [`AnalysisConfig::skew_ns`] of allowance for
//! clock skew), walk into it, then move the cursor to that child's start and
//! repeat with the children that finished before it: children that
//! overlapped an already chosen one ran in parallel with it and are not on the
//! path. Time on the path not covered by a chosen child is the span's own
//! *self time*. Children are clamped to their parent's window. Asynchronous
//! children are never on the blocking path: CONSUMER spans, children of
//! PRODUCER spans, FOLLOWS_FROM references, and children that start after
//! their parent ended. The walk is iterative (no recursion), so a
//! million-deep chain cannot overflow the stack.
//!
//! Repairs, each counted in [`TraceAnomalies`]: duplicate span ids (first
//! kept), negative durations (end set to start), parents that point to
//! themselves or into a cycle (those spans are unreachable from a root and
//! left out), spans whose parent is missing (the longest one becomes the
//! root; the others are counted), children outside their parent (clamped).

use crate::model::{is_wait, Interner, Span, SpanKind, Sym, TraceId};

/// A (service, operation) pair.
pub type OpKey = (Sym, Sym);

/// Tunables of the per-trace analysis.
#[derive(Clone, Debug)]
pub struct AnalysisConfig {
    /// Clock-skew allowance (ns): a child may end this much after the cursor and still count as before it.
    pub skew_ns: u64,
    /// Fewest sequential sibling calls of one operation that count as N+1.
    pub n_plus_one_min: usize,
    /// Fewest overlapping sibling calls of one operation that count as a fan-out.
    pub fan_out_min: usize,
    /// A fan-out is amplified when its slowest call takes this many times its median one.
    pub fan_out_ratio: f64,
    /// Sequential calls to distinct dependencies are noted in a trace when running
    /// them in parallel would save at least this much (ns); whether that matters is
    /// decided over all traces ([`crate::AggregateConfig::sequential_min_fraction`]).
    pub sequential_min_saving_ns: u64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            skew_ns: 500_000,
            n_plus_one_min: 5,
            fan_out_min: 3,
            fan_out_ratio: 2.0,
            sequential_min_saving_ns: 100_000,
        }
    }
}

/// What was wrong with a trace's spans, and what was done about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceAnomalies {
    /// Spans dropped because an earlier span had the same id.
    pub duplicate_span_ids: u64,
    /// Spans whose end was before their start (end set to start).
    pub negative_durations: u64,
    /// Spans whose parent id is not in the trace (other than the chosen root).
    pub missing_parents: u64,
    /// Spans with no parent id besides the chosen root.
    pub extra_roots: u64,
    /// Spans unreachable from any root (their parent chain loops).
    pub cycle_spans: u64,
    /// Synchronous children that started before or ended after their parent by more than the skew allowance (clamped).
    pub clock_skew: u64,
    /// Children left off the blocking path as asynchronous.
    pub async_spans: u64,
    /// Traces with no usable root at all.
    pub rootless: u64,
}

impl TraceAnomalies {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &TraceAnomalies) {
        self.duplicate_span_ids += other.duplicate_span_ids;
        self.negative_durations += other.negative_durations;
        self.missing_parents += other.missing_parents;
        self.extra_roots += other.extra_roots;
        self.cycle_spans += other.cycle_spans;
        self.clock_skew += other.clock_skew;
        self.async_spans += other.async_spans;
        self.rootless += other.rootless;
    }
}

/// What a detector found in one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Many sequential sibling calls of the same operation.
    NPlusOne,
    /// Sequential calls to distinct dependencies that could overlap.
    SequentialIndependent,
    /// Parallel sibling calls whose slowest one dominates.
    FanOut,
    /// Repeated attempts after a failure (or marked as retries).
    Retry,
    /// Spans with status ERROR.
    Error,
}

impl FindingKind {
    /// The `kind` name in `chokepoint.traces.v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NPlusOne => "n_plus_one",
            FindingKind::SequentialIndependent => "sequential_independent",
            FindingKind::FanOut => "fan_out",
            FindingKind::Retry => "retry",
            FindingKind::Error => "error",
        }
    }
}

/// One finding in one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceFinding {
    /// Which detector.
    pub kind: FindingKind,
    /// The span whose children showed it.
    pub parent: OpKey,
    /// The operation involved (for sequential calls: the first one).
    pub op: OpKey,
    /// Dependencies called one after another (sequential calls only).
    pub deps: Vec<Sym>,
    /// Calls involved (N+1: the sequential chain; fan-out: the width; retry: the retries).
    pub count: u32,
    /// Time of the calls involved, added (ns).
    pub ns: u64,
    /// Of which on the critical path (ns).
    pub path_ns: u64,
    /// Time the fix would save on this trace (ns): N+1 all but one call, sequential
    /// sum minus max, fan-out max minus median, retry the failed attempts.
    pub saving_ns: u64,
    /// Duration of the parent span (ns).
    pub parent_ns: u64,
}

/// Network gap between a client span and the server span it caused.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkGap {
    /// Client service.
    pub client: Sym,
    /// Server service.
    pub server: Sym,
    /// Client duration minus server duration (ns).
    pub gap_ns: u64,
    /// The client's self time on the critical path (ns): the gap's share of the latency.
    pub path_ns: u64,
}

/// Critical-path time of one (service, operation) in one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathItem {
    /// Service and operation.
    pub key: OpKey,
    /// Self time on the critical path (ns).
    pub ns: u64,
    /// Whether the operation is a waiting one.
    pub wait: bool,
}

/// Everything the aggregation needs from one trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: TraceId,
    /// Spans in the trace (after removing duplicates).
    pub spans: u64,
    /// The root's duration (ns): the trace's latency.
    pub duration_ns: u64,
    /// The root span's (service, operation), when there is a root.
    pub root: Option<OpKey>,
    /// Self time on the critical path per operation; sums to `duration_ns`.
    pub path: Vec<PathItem>,
    /// Client→server gaps.
    pub gaps: Vec<NetworkGap>,
    /// Detector findings.
    pub findings: Vec<TraceFinding>,
    /// Repairs made.
    pub anomalies: TraceAnomalies,
}

const NONE: u32 = u32::MAX;

/// Analyzes one trace's spans (all with the same trace id; reordered in place).
pub fn analyze_trace(
    trace_id: TraceId,
    spans: &mut Vec<Span>,
    interner: &Interner,
    cfg: &AnalysisConfig,
) -> TraceSummary {
    let mut out = TraceSummary {
        trace_id,
        ..TraceSummary::default()
    };
    let an = &mut out.anomalies;
    // 1. Duplicates: keep the first occurrence of each span id.
    spans.sort_by_key(|s| s.span_id);
    let before = spans.len();
    spans.dedup_by_key(|s| s.span_id);
    an.duplicate_span_ids = (before - spans.len()) as u64;
    let n = spans.len();
    out.spans = n as u64;
    if n == 0 {
        an.rootless = 1;
        return out;
    }
    // 2. Negative durations.
    for s in spans.iter_mut() {
        if s.end_ns < s.start_ns {
            an.negative_durations += 1;
            s.end_ns = s.start_ns;
        }
    }
    // 3. Parents.
    let mut parent = vec![NONE; n];
    let mut candidate = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_id {
            Some(p) if p != s.span_id => match spans.binary_search_by_key(&p, |x| x.span_id) {
                Ok(j) => parent[i] = j as u32,
                Err(_) => candidate.push(i as u32),
            },
            // Its own parent: a one-span cycle, unreachable, counted below.
            Some(_) => {}
            None => candidate.push(i as u32),
        }
    }
    // 4. Children (CSR).
    let mut offsets = vec![0u32; n + 1];
    for &p in &parent {
        if p != NONE {
            offsets[p as usize + 1] += 1;
        }
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut children = vec![0u32; offsets[n] as usize];
    for (i, &p) in parent.iter().enumerate() {
        if p != NONE {
            children[fill[p as usize] as usize] = i as u32;
            fill[p as usize] += 1;
        }
    }
    let kids = |i: usize| offsets[i] as usize..offsets[i + 1] as usize;
    // 5. The root: a true root (no parent id) before a span whose parent is missing; then the longest.
    let root = candidate.iter().copied().max_by(|&a, &b| {
        let (sa, sb) = (&spans[a as usize], &spans[b as usize]);
        (
            sa.parent_id.is_none(),
            sa.duration_ns(),
            std::cmp::Reverse(sa.start_ns),
        )
            .cmp(&(
                sb.parent_id.is_none(),
                sb.duration_ns(),
                std::cmp::Reverse(sb.start_ns),
            ))
    });
    let Some(root) = root else {
        an.rootless = 1;
        an.cycle_spans = n as u64;
        return out;
    };
    let root = root as usize;
    for &c in &candidate {
        if c as usize != root {
            if spans[c as usize].parent_id.is_some() {
                an.missing_parents += 1;
            } else {
                an.extra_roots += 1;
            }
        }
    }
    // 6. Reachability from every candidate; windows and async marks below the root.
    let mut reached = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<u32> = candidate.clone();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut reached[i as usize], true) {
            continue;
        }
        order.push(i);
        stack.extend(children[kids(i as usize)].iter().copied());
    }
    an.cycle_spans += reached.iter().filter(|r| !**r).count() as u64;
    // Effective windows (clamped for synchronous children), in parents-before-children order.
    let mut eff_start: Vec<u64> = spans.iter().map(|s| s.start_ns).collect();
    let mut eff_end: Vec<u64> = spans.iter().map(|s| s.end_ns).collect();
    let mut is_async = vec![false; n];
    let skew = cfg.skew_ns;
    for &i in &order {
        let i = i as usize;
        let p = parent[i];
        if p == NONE {
            continue;
        }
        let (ps, pe) = (eff_start[p as usize], eff_end[p as usize]);
        let (s, pspan) = (&spans[i], &spans[p as usize]);
        if s.kind == SpanKind::Consumer
            || pspan.kind == SpanKind::Producer
            || s.follows_from
            || s.start_ns > pe.saturating_add(skew)
        {
            is_async[i] = true;
            an.async_spans += 1;
            continue;
        }
        if s.start_ns.saturating_add(skew) < ps || s.end_ns > pe.saturating_add(skew) {
            an.clock_skew += 1;
        }
        let st = s.start_ns.clamp(ps, pe);
        eff_start[i] = st;
        eff_end[i] = s.end_ns.clamp(st, pe);
    }
    // Children latest-ending first, for the walk.
    for i in 0..n {
        children[kids(i)].sort_unstable_by(|&a, &b| eff_end[b as usize].cmp(&eff_end[a as usize]));
    }
    // 7. The critical path.
    let mut self_ns = vec![0u64; n];
    let mut portion_ns = vec![0u64; n];
    struct Frame {
        span: u32,
        cursor: u64,
        pos: u32,
    }
    let mut frames = vec![Frame {
        span: root as u32,
        cursor: eff_end[root],
        pos: offsets[root],
    }];
    portion_ns[root] = eff_end[root] - eff_start[root];
    while let Some(top) = frames.len().checked_sub(1) {
        let i = frames[top].span as usize;
        let end = offsets[i + 1];
        let mut next = None;
        while frames[top].pos < end {
            let c = children[frames[top].pos as usize] as usize;
            frames[top].pos += 1;
            let cursor = frames[top].cursor;
            if cursor <= eff_start[i] {
                break;
            }
            if is_async[c] || eff_end[c] > cursor.saturating_add(skew) {
                continue;
            }
            let c_end = eff_end[c].min(cursor);
            if eff_start[c] >= c_end {
                continue;
            }
            self_ns[i] += cursor - c_end;
            frames[top].cursor = eff_start[c];
            portion_ns[c] = c_end - eff_start[c];
            next = Some(Frame {
                span: c as u32,
                cursor: c_end,
                pos: offsets[c],
            });
            break;
        }
        match next {
            Some(f) => frames.push(f),
            None => {
                let f = frames.pop().expect("non-empty");
                self_ns[i] += f.cursor.saturating_sub(eff_start[i]);
            }
        }
    }
    out.duration_ns = eff_end[root] - eff_start[root];
    out.root = Some((spans[root].service, spans[root].name));
    // Per-operation self time on the path.
    let mut items: Vec<PathItem> = (0..n)
        .filter(|&i| self_ns[i] > 0)
        .map(|i| PathItem {
            key: (spans[i].service, spans[i].name),
            ns: self_ns[i],
            wait: is_wait(&spans[i], interner),
        })
        .collect();
    items.sort_unstable_by_key(|it| it.key);
    items.dedup_by(|b, a| {
        if a.key == b.key {
            a.ns += b.ns;
            a.wait |= b.wait;
            true
        } else {
            false
        }
    });
    out.path = items;
    // 8. Network gaps and detectors, over every reached span.
    let mut scratch: Vec<u32> = Vec::new();
    for &p in &order {
        let p = p as usize;
        let pspan = &spans[p];
        if pspan.error {
            out.findings.push(TraceFinding {
                kind: FindingKind::Error,
                parent: parent_key(spans, &parent, p),
                op: (pspan.service, pspan.name),
                deps: Vec::new(),
                count: 1,
                ns: pspan.duration_ns(),
                path_ns: portion_ns[p],
                saving_ns: 0,
                parent_ns: 0,
            });
        }
        let range = kids(p);
        if range.is_empty() {
            continue;
        }
        if pspan.kind == SpanKind::Client {
            if let Some(&srv) = children[range.clone()]
                .iter()
                .find(|&&c| spans[c as usize].kind == SpanKind::Server && !is_async[c as usize])
            {
                let srv = srv as usize;
                let client_ns = eff_end[p] - eff_start[p];
                let server_ns = eff_end[srv] - eff_start[srv];
                out.gaps.push(NetworkGap {
                    client: pspan.service,
                    server: spans[srv].service,
                    gap_ns: client_ns.saturating_sub(server_ns),
                    path_ns: self_ns[p],
                });
            }
        }
        if range.len() < 2
            && !children[range.clone()]
                .iter()
                .any(|&c| spans[c as usize].retry)
        {
            continue;
        }
        scratch.clear();
        scratch.extend(
            children[range]
                .iter()
                .copied()
                .filter(|&c| !is_async[c as usize]),
        );
        let parent_op = (pspan.service, pspan.name);
        let parent_ns = eff_end[p] - eff_start[p];
        sibling_findings(
            &scratch,
            spans,
            &eff_start,
            &eff_end,
            &portion_ns,
            parent_op,
            parent_ns,
            cfg,
            &mut out.findings,
        );
    }
    out
}

fn parent_key(spans: &[Span], parent: &[u32], i: usize) -> OpKey {
    match parent[i] {
        NONE => (spans[i].service, spans[i].name),
        p => (spans[p as usize].service, spans[p as usize].name),
    }
}

#[allow(clippy::too_many_arguments)]
fn sibling_findings(
    siblings: &[u32],
    spans: &[Span],
    eff_start: &[u64],
    eff_end: &[u64],
    portion_ns: &[u64],
    parent_op: OpKey,
    parent_ns: u64,
    cfg: &AnalysisConfig,
    findings: &mut Vec<TraceFinding>,
) {
    let skew = cfg.skew_ns;
    let dur = |i: u32| eff_end[i as usize] - eff_start[i as usize];
    let mut by_op: Vec<u32> = siblings.to_vec();
    by_op.sort_unstable_by_key(|&i| {
        let s = &spans[i as usize];
        (s.service, s.name, eff_start[i as usize])
    });
    // Same-operation groups: N+1, fan-out, retries.
    for group in by_op.chunk_by(|&a, &b| {
        let (x, y) = (&spans[a as usize], &spans[b as usize]);
        (x.service, x.name) == (y.service, y.name)
    }) {
        let first = &spans[group[0] as usize];
        let op = (first.service, first.name);
        let marked_retries = group.iter().filter(|&&i| spans[i as usize].retry).count();
        if group.len() < 2 && marked_retries == 0 {
            continue;
        }
        // Longest sequential chain (each starts after the previous ended).
        let mut chain = 0usize;
        let mut last_end = 0u64;
        for &i in group {
            if chain == 0 || eff_start[i as usize].saturating_add(skew) >= last_end {
                chain += 1;
                last_end = eff_end[i as usize];
            }
        }
        let total: u64 = group.iter().map(|&i| dur(i)).sum();
        let on_path: u64 = group.iter().map(|&i| portion_ns[i as usize]).sum();
        if chain >= cfg.n_plus_one_min {
            let mean = total / group.len() as u64;
            findings.push(TraceFinding {
                kind: FindingKind::NPlusOne,
                parent: parent_op,
                op,
                deps: Vec::new(),
                count: chain as u32,
                ns: total,
                path_ns: on_path,
                saving_ns: total.saturating_sub(mean),
                parent_ns,
            });
        }
        // Retries: attempts after a failed attempt, or marked as retries.
        let mut retries = 0u32;
        let mut wasted = 0u64;
        for w in group.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if spans[a].error && eff_start[b].saturating_add(skew) >= eff_end[a] {
                retries += 1;
                wasted += dur(w[0]);
            }
        }
        let retries = retries.max(marked_retries as u32);
        if retries > 0 {
            findings.push(TraceFinding {
                kind: FindingKind::Retry,
                parent: parent_op,
                op,
                deps: Vec::new(),
                count: retries,
                ns: total,
                path_ns: on_path,
                saving_ns: wasted,
                parent_ns,
            });
        }
        // Fan-out: most calls in flight at once, and how much the slowest one dominates.
        if group.len() >= cfg.fan_out_min {
            let mut events: Vec<(u64, i32)> = group
                .iter()
                .flat_map(|&i| [(eff_start[i as usize], 1), (eff_end[i as usize], -1)])
                .collect();
            events.sort_unstable();
            let (mut cur, mut width) = (0i32, 0i32);
            for (_, d) in events {
                cur += d;
                width = width.max(cur);
            }
            if width as usize >= cfg.fan_out_min {
                let mut durs: Vec<u64> = group.iter().map(|&i| dur(i)).collect();
                durs.sort_unstable();
                let max = *durs.last().expect("non-empty");
                let median = durs[durs.len() / 2];
                if max as f64 >= cfg.fan_out_ratio * median.max(1) as f64 {
                    findings.push(TraceFinding {
                        kind: FindingKind::FanOut,
                        parent: parent_op,
                        op,
                        deps: Vec::new(),
                        count: width as u32,
                        ns: total,
                        path_ns: on_path,
                        saving_ns: max - median,
                        parent_ns,
                    });
                }
            }
        }
    }
    // Sequential calls to distinct dependencies.
    let mut calls: Vec<(u32, Sym)> = siblings
        .iter()
        .filter_map(|&i| {
            let s = &spans[i as usize];
            let dep = s.peer.or((s.kind == SpanKind::Client).then_some(s.name))?;
            Some((i, dep))
        })
        .collect();
    if calls.len() < 2 {
        return;
    }
    calls.sort_unstable_by_key(|&(i, _)| eff_start[i as usize]);
    let mut run: Vec<(u32, Sym)> = Vec::new();
    let mut flush = |run: &mut Vec<(u32, Sym)>| {
        if run.len() >= 2 {
            let durs: Vec<u64> = run.iter().map(|&(i, _)| dur(i)).collect();
            let sum: u64 = durs.iter().sum();
            let max = durs.iter().copied().max().unwrap_or(0);
            let saving = sum - max;
            if saving >= cfg.sequential_min_saving_ns {
                let first = &spans[run[0].0 as usize];
                findings.push(TraceFinding {
                    kind: FindingKind::SequentialIndependent,
                    parent: parent_op,
                    op: (first.service, first.name),
                    deps: run.iter().map(|&(_, d)| d).collect(),
                    count: run.len() as u32,
                    ns: sum,
                    path_ns: run.iter().map(|&(i, _)| portion_ns[i as usize]).sum(),
                    saving_ns: saving,
                    parent_ns,
                });
            }
        }
        run.clear();
    };
    for &(i, dep) in &calls {
        let follows = run.last().is_some_and(|&(prev, _)| {
            eff_start[i as usize].saturating_add(skew) >= eff_end[prev as usize]
        });
        let distinct = !run.iter().any(|&(_, d)| d == dep);
        if !(follows && distinct) {
            flush(&mut run);
        }
        run.push((i, dep));
    }
    flush(&mut run);
}
