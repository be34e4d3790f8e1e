//! Streaming assembly: spans in any order → complete traces, in bounded memory.
//!
//! Spans are grouped by trace id. A trace is complete once the stream's
//! *watermark* (the latest span end seen so far, in the data's own clock, so a
//! file replays exactly like a live stream) has moved [`AssemblerConfig::window_ns`]
//! past the trace's latest span end. Memory is capped three ways: pending
//! traces, pending spans in all, and spans per trace. Over a cap, the trace
//! idle the longest is completed early (counted); spans beyond the per-trace
//! cap are dropped (counted). Spans that arrive for a trace already completed
//! (recently, within a bounded memory of ids) are counted as late and dropped,
//! rather than becoming a second, partial copy of that trace.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use crate::model::{Span, TraceId};

/// Limits of the assembler.
#[derive(Clone, Debug)]
pub struct AssemblerConfig {
    /// A trace completes when the watermark is this far past its last span end (ns).
    pub window_ns: u64,
    /// Most traces pending at once.
    pub max_pending_traces: usize,
    /// Most spans pending at once, over all traces.
    pub max_pending_spans: usize,
    /// Most spans kept per trace.
    pub max_spans_per_trace: usize,
    /// How many completed trace ids are remembered to recognise late spans.
    pub remember_completed: usize,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            window_ns: 30_000_000_000,
            max_pending_traces: 200_000,
            max_pending_spans: 4_000_000,
            max_spans_per_trace: 100_000,
            remember_completed: 200_000,
        }
    }
}

/// Counters of the assembly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Spans accepted.
    pub spans: u64,
    /// Traces completed because a memory cap was reached, before their window passed.
    pub evicted_early: u64,
    /// Spans dropped because their trace already had the most spans allowed.
    pub spans_over_cap: u64,
    /// Spans dropped because their trace had already been completed.
    pub late_spans: u64,
}

struct Pending {
    spans: Vec<Span>,
    last_end: u64,
}

/// Groups spans into traces; see the module documentation.
pub struct Assembler {
    cfg: AssemblerConfig,
    pending: HashMap<TraceId, Pending>,
    /// (last end when pushed, trace): stale entries are skipped when popped.
    by_end: BinaryHeap<Reverse<(u64, TraceId)>>,
    pending_spans: usize,
    watermark: u64,
    completed: HashSet<TraceId>,
    completed_order: VecDeque<TraceId>,
    /// Counters so far.
    pub stats: AssemblyStats,
}

impl Assembler {
    /// An empty assembler.
    pub fn new(cfg: AssemblerConfig) -> Assembler {
        Assembler {
            cfg,
            pending: HashMap::new(),
            by_end: BinaryHeap::new(),
            pending_spans: 0,
            watermark: 0,
            completed: HashSet::new(),
            completed_order: VecDeque::new(),
            stats: AssemblyStats::default(),
        }
    }

    /// Traces pending now.
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    /// Adds a span; calls `done` with every trace this completes.
    pub fn push(&mut self, span: Span, done: &mut impl FnMut(TraceId, Vec<Span>)) {
        if self.completed.contains(&span.trace_id) {
            self.stats.late_spans += 1;
            return;
        }
        let end = span.end_ns.max(span.start_ns);
        let id = span.trace_id;
        let entry = self.pending.entry(id).or_insert_with(|| Pending {
            spans: Vec::new(),
            last_end: 0,
        });
        if entry.spans.len() >= self.cfg.max_spans_per_trace {
            self.stats.spans_over_cap += 1;
            return;
        }
        self.stats.spans += 1;
        entry.spans.push(span);
        self.pending_spans += 1;
        if end > entry.last_end {
            entry.last_end = end;
            self.by_end.push(Reverse((end, id)));
        }
        self.watermark = self.watermark.max(end);
        // Complete what the window has passed, then enforce the caps.
        let horizon = self.watermark.saturating_sub(self.cfg.window_ns);
        while let Some(&Reverse((end, id))) = self.by_end.peek() {
            let over = self.pending.len() > self.cfg.max_pending_traces
                || self.pending_spans > self.cfg.max_pending_spans;
            if end >= horizon && !over {
                break;
            }
            self.by_end.pop();
            let current = self.pending.get(&id).map(|p| p.last_end);
            if current != Some(end) {
                continue; // stale: the trace grew later or is gone
            }
            if end >= horizon {
                self.stats.evicted_early += 1;
            }
            self.complete(id, done);
        }
    }

    fn complete(&mut self, id: TraceId, done: &mut impl FnMut(TraceId, Vec<Span>)) {
        if let Some(p) = self.pending.remove(&id) {
            self.pending_spans -= p.spans.len();
            if self.cfg.remember_completed > 0 {
                if self.completed_order.len() >= self.cfg.remember_completed {
                    if let Some(old) = self.completed_order.pop_front() {
                        self.completed.remove(&old);
                    }
                }
                self.completed.insert(id);
                self.completed_order.push_back(id);
            }
            done(id, p.spans);
        }
    }

    /// Completes every pending trace (end of input), oldest first.
    pub fn finish(&mut self, done: &mut impl FnMut(TraceId, Vec<Span>)) {
        let mut ids: Vec<(u64, TraceId)> = self
            .pending
            .iter()
            .map(|(id, p)| (p.last_end, *id))
            .collect();
        ids.sort_unstable();
        for (_, id) in ids {
            self.complete(id, done);
        }
        self.by_end.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanKind, Sym};

    fn span(trace: u128, id: u64, start: u64, end: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            parent_id: None,
            follows_from: false,
            service: Sym(0),
            name: Sym(0),
            kind: SpanKind::Internal,
            start_ns: start,
            end_ns: end,
            error: false,
            wait_hint: None,
            peer: None,
            retry: false,
        }
    }

    #[test]
    fn traces_complete_by_window_and_late_spans_are_counted() {
        let mut a = Assembler::new(AssemblerConfig {
            window_ns: 100,
            ..Default::default()
        });
        let mut done = Vec::new();
        let mut sink = |id, spans: Vec<Span>| done.push((id, spans.len()));
        a.push(span(1, 1, 0, 10), &mut sink);
        a.push(span(1, 2, 5, 20), &mut sink);
        a.push(span(2, 1, 50, 60), &mut sink);
        a.push(span(3, 1, 100, 121), &mut sink); // watermark 121: trace 1 (last end 20) completes
        a.push(span(1, 3, 0, 5), &mut sink); // late
        a.finish(&mut sink);
        assert_eq!(done, vec![(1, 2), (2, 1), (3, 1)]);
        assert_eq!(a.stats.late_spans, 1);
        assert_eq!(a.stats.evicted_early, 0);
    }

    #[test]
    fn caps_bound_memory() {
        let mut a = Assembler::new(AssemblerConfig {
            max_pending_traces: 10,
            max_spans_per_trace: 3,
            ..Default::default()
        });
        let mut n_done = 0;
        let mut max_pending = 0;
        for t in 0..1000u128 {
            for s in 0..5u64 {
                a.push(span(t + 1, s + 1, 0, 10), &mut |_, _| n_done += 1);
            }
            max_pending = max_pending.max(a.pending_traces());
        }
        a.finish(&mut |_, _| n_done += 1);
        assert!(max_pending <= 11, "{max_pending}");
        assert_eq!(n_done, 1000);
        assert_eq!(a.stats.spans_over_cap, 2000);
        assert!(a.stats.evicted_early >= 989);
    }
}
