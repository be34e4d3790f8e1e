//! Aggregation over many traces: critical-path shares around P50 versus at/beyond P99, and detector totals.
//!
//! Memory does not grow with the number of traces. Each trace is folded into
//! a *latency band* (bands are 2% wide on a log scale, so about 1,100 cover
//! 1 µs to 1 hour) that holds a count, a duration sum and critical-path time
//! per (service, operation). Percentiles are read from the band counts (to
//! within a band's 2%). The **P50 group** is every trace in the bands from
//! P40 to P60; the **tail group** the slowest 1% of traces (whole bands from
//! the slowest down until they hold at least 1% of the traces). With [`Selection::Explicit`] (a load test's client-measured slow
//! requests joined by trace id) the tail group is exactly those traces, and
//! the P50 group comes from the bands of the others.
//!
//! For each operation: `share_p50`/`share_p99` are its critical-path time
//! over the group's total critical-path time; its **contribution to the
//! tail** is its mean critical-path time per tail trace (how much of a slow
//! request's latency it is), and rows are sorted by it. The **extra** over
//! P50 (mean per tail trace minus mean per P50 trace) says what is different
//! about the slow traces: an operation that is slow everywhere (a missing
//! index) has a large contribution and a small extra; one that only slows
//! the tail (a stop-the-world pause) has both large.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::analyze::{FindingKind, OpKey, TraceAnomalies, TraceSummary};
use crate::model::{Interner, Sym, TraceId};

const BAND_LOG_BASE: f64 = 0.019_802_627_296_179_712; // ln(1.02)

fn band_of(ns: u64) -> i32 {
    ((ns.max(1) as f64).ln() / BAND_LOG_BASE).floor() as i32
}

/// How traces are put into the P50 and tail groups.
#[derive(Clone, Debug, Default)]
pub enum Selection {
    /// By the root span's duration.
    #[default]
    Duration,
    /// The tail is exactly these traces (trace id → client-measured latency, ns);
    /// the P50 group is chosen by duration among the others.
    Explicit(HashMap<TraceId, u64>),
    /// Both groups chosen by the client-measured latency of a load test: the
    /// tail is `tail`, the P50 group is `p50` (trace id → client latency, ns).
    Client {
        /// Requests at or beyond the client's P99.
        tail: HashMap<TraceId, u64>,
        /// Requests around the client's median.
        p50: HashMap<TraceId, u64>,
    },
}

/// Limits of the aggregation.
#[derive(Clone, Debug)]
pub struct AggregateConfig {
    /// Lower and upper percentile of the P50 group.
    pub p50_range: (f64, f64),
    /// Percentile where the tail group starts.
    pub tail_quantile: f64,
    /// Most distinct (service, operation) keys; the rest are folded into one `(other)` key.
    pub max_keys: usize,
    /// Most distinct detector findings kept.
    pub max_findings: usize,
    /// Slowest traces kept as examples.
    pub slowest_kept: usize,
    /// Sequential calls to distinct dependencies are reported when running them in
    /// parallel would save, on average over the traces showing them, at least this
    /// fraction of their parent's mean duration...
    pub sequential_min_fraction: f64,
    /// ...and at least this much (ns).
    pub sequential_min_saving_ns: f64,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            p50_range: (0.40, 0.60),
            tail_quantile: 0.99,
            max_keys: 10_000,
            max_findings: 10_000,
            slowest_kept: 10,
            sequential_min_fraction: 0.1,
            sequential_min_saving_ns: 1e6,
        }
    }
}

#[derive(Default, Clone)]
struct Band {
    count: u64,
    duration_ns: u128,
    wait_ns: u128,
    per_key: HashMap<u32, u128>,
}

impl Band {
    fn add(&mut self, duration_ns: u64, path: &[(u32, u64, bool)]) {
        self.count += 1;
        self.duration_ns += u128::from(duration_ns);
        for &(k, ns, wait) in path {
            *self.per_key.entry(k).or_default() += u128::from(ns);
            if wait {
                self.wait_ns += u128::from(ns);
            }
        }
    }
    fn merge(&mut self, other: &Band) {
        self.count += other.count;
        self.duration_ns += other.duration_ns;
        self.wait_ns += other.wait_ns;
        for (k, v) in &other.per_key {
            *self.per_key.entry(*k).or_default() += v;
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FindingKey {
    kind: FindingKind,
    parent: OpKey,
    op: OpKey,
    deps: Vec<Sym>,
}

#[derive(Default, Clone)]
struct FindingAgg {
    traces: u64,
    count_sum: u64,
    count_max: u64,
    ns_sum: u128,
    path_ns_sum: u128,
    saving_sum: u128,
    parent_sum: u128,
    example: (u64, TraceId),
}

#[derive(Default, Clone)]
struct GapAgg {
    calls: u64,
    gap_sum: u128,
    path_sum: u128,
}

/// Folds trace summaries; [`Aggregator::report`] turns them into a [`Report`].
pub struct Aggregator {
    cfg: AggregateConfig,
    selection: Selection,
    keys: HashMap<OpKey, u32>,
    key_list: Vec<(Option<OpKey>, bool)>,
    bands: BTreeMap<i32, Band>,
    tail: Band,
    tail_client_ns: u128,
    /// The P50 group under [`Selection::Client`].
    p50_client: Band,
    findings: HashMap<FindingKey, FindingAgg>,
    findings_dropped: u64,
    gaps: HashMap<(Sym, Sym), GapAgg>,
    slowest: BinaryHeap<std::cmp::Reverse<(u64, TraceId)>>,
    traces: u64,
    spans: u64,
    anomalies: TraceAnomalies,
    scratch: Vec<(u32, u64, bool)>,
}

impl Aggregator {
    /// An empty aggregation.
    pub fn new(cfg: AggregateConfig, selection: Selection) -> Aggregator {
        Aggregator {
            cfg,
            selection,
            keys: HashMap::new(),
            key_list: Vec::new(),
            bands: BTreeMap::new(),
            tail: Band::default(),
            tail_client_ns: 0,
            p50_client: Band::default(),
            findings: HashMap::new(),
            findings_dropped: 0,
            gaps: HashMap::new(),
            slowest: BinaryHeap::new(),
            traces: 0,
            spans: 0,
            anomalies: TraceAnomalies::default(),
            scratch: Vec::new(),
        }
    }

    fn key(&mut self, key: OpKey, wait: bool) -> u32 {
        if let Some(&k) = self.keys.get(&key) {
            self.key_list[k as usize].1 |= wait;
            return k;
        }
        if self.key_list.len() >= self.cfg.max_keys {
            // The overflow key: the last slot, created once.
            if self.key_list.len() == self.cfg.max_keys {
                self.key_list.push((None, false));
            }
            return self.cfg.max_keys as u32;
        }
        let k = self.key_list.len() as u32;
        self.key_list.push((Some(key), wait));
        self.keys.insert(key, k);
        k
    }

    /// Adds one trace.
    pub fn add(&mut self, t: &TraceSummary) {
        self.spans += t.spans;
        self.anomalies.add(&t.anomalies);
        if t.root.is_none() {
            return;
        }
        self.traces += 1;
        let mut path = std::mem::take(&mut self.scratch);
        path.clear();
        for item in &t.path {
            let k = self.key(item.key, item.wait);
            path.push((k, item.ns, item.wait));
        }
        let (explicit, in_p50) = match &self.selection {
            Selection::Explicit(ids) => (ids.get(&t.trace_id).copied(), false),
            Selection::Client { tail, p50 } => (
                tail.get(&t.trace_id).copied(),
                p50.contains_key(&t.trace_id),
            ),
            Selection::Duration => (None, false),
        };
        match explicit {
            Some(client_ns) => {
                self.tail.add(t.duration_ns, &path);
                self.tail_client_ns += u128::from(client_ns);
            }
            None => {
                if in_p50 {
                    self.p50_client.add(t.duration_ns, &path);
                }
                self.bands
                    .entry(band_of(t.duration_ns))
                    .or_default()
                    .add(t.duration_ns, &path)
            }
        }
        self.scratch = path;
        for f in &t.findings {
            let key = FindingKey {
                kind: f.kind,
                parent: f.parent,
                op: f.op,
                deps: f.deps.clone(),
            };
            if !self.findings.contains_key(&key) && self.findings.len() >= self.cfg.max_findings {
                self.findings_dropped += 1;
                continue;
            }
            let agg = self.findings.entry(key).or_default();
            agg.traces += 1;
            agg.count_sum += u64::from(f.count);
            agg.count_max = agg.count_max.max(u64::from(f.count));
            agg.ns_sum += u128::from(f.ns);
            agg.path_ns_sum += u128::from(f.path_ns);
            agg.saving_sum += u128::from(f.saving_ns);
            agg.parent_sum += u128::from(f.parent_ns);
            if agg.traces == 1 || f.saving_ns > agg.example.0 {
                agg.example = (f.saving_ns, t.trace_id);
            }
        }
        for g in &t.gaps {
            let agg = self.gaps.entry((g.client, g.server)).or_default();
            agg.calls += 1;
            agg.gap_sum += u128::from(g.gap_ns);
            agg.path_sum += u128::from(g.path_ns);
        }
        self.slowest
            .push(std::cmp::Reverse((t.duration_ns, t.trace_id)));
        if self.slowest.len() > self.cfg.slowest_kept {
            self.slowest.pop();
        }
    }

    /// Duration at quantile `q` of the banded traces (the band's mean), and its band.
    fn quantile(&self, q: f64) -> Option<(i32, f64)> {
        let total: u64 = self.bands.values().map(|b| b.count).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64 - 1e-9).ceil() as u64).clamp(1, total);
        let mut cum = 0;
        for (&band, b) in &self.bands {
            cum += b.count;
            if cum >= rank {
                return Some((band, b.duration_ns as f64 / b.count as f64));
            }
        }
        None
    }

    /// The aggregated result.
    pub fn report(&self, interner: &Interner) -> Report {
        let (lo, hi) = self.cfg.p50_range;
        let mut p50 = Band::default();
        let mut tail = Band::default();
        let p50_ns = self.quantile(0.5).map_or(0.0, |q| q.1);
        if matches!(self.selection, Selection::Client { .. }) && self.p50_client.count > 0 {
            p50.merge(&self.p50_client);
        } else if let (Some((b_lo, _)), Some((b_hi, _))) = (self.quantile(lo), self.quantile(hi)) {
            for (_, b) in self.bands.range(b_lo..=b_hi) {
                p50.merge(b);
            }
        }
        let explicit = matches!(
            self.selection,
            Selection::Explicit(_) | Selection::Client { .. }
        );
        let (tail_from_ns, p99_ns);
        if explicit {
            tail.merge(&self.tail);
            tail_from_ns = None;
            p99_ns = None;
        } else {
            // The slowest (1 - q) of the traces: whole bands from the top until
            // there are enough (so ties at the median never flood the tail).
            let total: u64 = self.bands.values().map(|b| b.count).sum();
            let needed = ((1.0 - self.cfg.tail_quantile) * total as f64 - 1e-9)
                .ceil()
                .max(1.0) as u64;
            let mut lowest = None;
            for (&b, band) in self.bands.iter().rev() {
                if tail.count >= needed {
                    break;
                }
                tail.merge(band);
                lowest = Some(b);
            }
            tail_from_ns = lowest.map(|b| BAND_LOG_BASE.exp().powi(b) as u64);
            p99_ns = self.quantile(self.cfg.tail_quantile).map(|q| q.1);
        }
        let name = |k: u32| -> (String, String, bool) {
            match self.key_list.get(k as usize) {
                Some((Some((s, o)), wait)) => (
                    interner.resolve(*s).to_string(),
                    interner.resolve(*o).to_string(),
                    *wait,
                ),
                _ => ("(other)".into(), "(other)".into(), false),
            }
        };
        let mean = |b: &Band, v: u128| {
            if b.count > 0 {
                v as f64 / b.count as f64
            } else {
                0.0
            }
        };
        let share = |b: &Band, v: u128| {
            if b.duration_ns > 0 {
                v as f64 / b.duration_ns as f64
            } else {
                0.0
            }
        };
        let mut keys: Vec<u32> = p50
            .per_key
            .keys()
            .chain(tail.per_key.keys())
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let extra_ns = mean(&tail, tail.duration_ns) - mean(&p50, p50.duration_ns);
        let mut rows: Vec<TailRow> = keys
            .into_iter()
            .map(|k| {
                let v50 = p50.per_key.get(&k).copied().unwrap_or(0);
                let v99 = tail.per_key.get(&k).copied().unwrap_or(0);
                let (service, operation, wait) = name(k);
                let extra = mean(&tail, v99) - mean(&p50, v50);
                TailRow {
                    service,
                    operation,
                    wait,
                    share_p50: share(&p50, v50),
                    share_p99: share(&tail, v99),
                    mean_ns_p50: mean(&p50, v50),
                    mean_ns_p99: mean(&tail, v99),
                    extra_ns: extra,
                    extra_share: if extra_ns > 0.0 {
                        extra / extra_ns
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.mean_ns_p99
                .total_cmp(&a.mean_ns_p99)
                .then(b.extra_ns.total_cmp(&a.extra_ns))
                .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
        });
        let op = |k: OpKey| {
            (
                interner.resolve(k.0).to_string(),
                interner.resolve(k.1).to_string(),
            )
        };
        let total_path_ns: u128 =
            self.bands.values().map(|b| b.duration_ns).sum::<u128>() + self.tail.duration_ns;
        let traces = self.traces.max(1) as f64;
        let mut findings: Vec<Finding> = self
            .findings
            .iter()
            .filter(|(k, a)| {
                if k.kind != FindingKind::SequentialIndependent {
                    return true;
                }
                let saving = a.saving_sum as f64 / a.traces as f64;
                let parent = a.parent_sum as f64 / a.traces as f64;
                saving >= self.cfg.sequential_min_saving_ns
                    && saving >= self.cfg.sequential_min_fraction * parent
            })
            .map(|(k, a)| {
                let (service, operation) = op(k.op);
                let (parent_service, parent_operation) = op(k.parent);
                Finding {
                    kind: k.kind,
                    service,
                    operation,
                    parent_service,
                    parent_operation,
                    deps: k
                        .deps
                        .iter()
                        .map(|d| interner.resolve(*d).to_string())
                        .collect(),
                    traces: a.traces,
                    fraction: a.traces as f64 / traces,
                    mean_count: a.count_sum as f64 / a.traces as f64,
                    max_count: a.count_max,
                    mean_ns: a.ns_sum as f64 / a.traces as f64,
                    mean_saving_ns: a.saving_sum as f64 / a.traces as f64,
                    path_share: if total_path_ns > 0 {
                        a.path_ns_sum as f64 / total_path_ns as f64
                    } else {
                        0.0
                    },
                    example_trace_id: a.example.1,
                }
            })
            .collect();
        findings.sort_by(|a, b| {
            (b.mean_saving_ns * b.traces as f64)
                .total_cmp(&(a.mean_saving_ns * a.traces as f64))
                .then(b.traces.cmp(&a.traces))
                .then(a.kind.cmp(&b.kind))
                .then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
        });
        let mut network: Vec<GapRow> = self
            .gaps
            .iter()
            .map(|(&(c, s), a)| GapRow {
                client: interner.resolve(c).to_string(),
                server: interner.resolve(s).to_string(),
                calls: a.calls,
                mean_gap_ns: a.gap_sum as f64 / a.calls as f64,
                path_share: if total_path_ns > 0 {
                    a.path_sum as f64 / total_path_ns as f64
                } else {
                    0.0
                },
            })
            .collect();
        network.sort_by(|a, b| {
            b.path_share
                .total_cmp(&a.path_share)
                .then_with(|| (&a.client, &a.server).cmp(&(&b.client, &b.server)))
        });
        let mut slowest: Vec<(TraceId, u64)> =
            self.slowest.iter().map(|r| (r.0 .1, r.0 .0)).collect();
        slowest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Report {
            traces: self.traces,
            spans: self.spans,
            groups: Groups {
                by_client_latency: explicit,
                p50_ns,
                p99_ns,
                tail_from_ns,
                n_p50: p50.count,
                n_tail: tail.count,
                mean_ns_p50: mean(&p50, p50.duration_ns),
                mean_ns_tail: mean(&tail, tail.duration_ns),
                client_mean_ns_tail: explicit.then(|| mean(&tail, self.tail_client_ns)),
                wait_share_p50: share(&p50, p50.wait_ns),
                wait_share_tail: share(&tail, tail.wait_ns),
            },
            tail: rows,
            findings,
            findings_dropped: self.findings_dropped,
            network,
            anomalies: self.anomalies.clone(),
            slowest,
        }
    }
}

/// The P50 and tail groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Groups {
    /// The tail is the load test's slow requests joined by trace id.
    pub by_client_latency: bool,
    /// Median trace duration (ns, of the banded traces).
    pub p50_ns: f64,
    /// P99 trace duration (ns), by duration only.
    pub p99_ns: Option<f64>,
    /// Lower edge of the tail group's first band (ns), by duration only.
    pub tail_from_ns: Option<u64>,
    /// Traces in the P50 group.
    pub n_p50: u64,
    /// Traces in the tail group.
    pub n_tail: u64,
    /// Mean duration in the P50 group (ns).
    pub mean_ns_p50: f64,
    /// Mean duration in the tail group (ns).
    pub mean_ns_tail: f64,
    /// Mean client-measured latency of the tail group (ns), when joined to a load test.
    pub client_mean_ns_tail: Option<f64>,
    /// Share of critical-path time spent waiting, P50 group.
    pub wait_share_p50: f64,
    /// Share of critical-path time spent waiting, tail group.
    pub wait_share_tail: f64,
}

/// One operation's critical-path time, P50 versus tail.
#[derive(Clone, Debug, PartialEq)]
pub struct TailRow {
    /// Service.
    pub service: String,
    /// Operation (span name).
    pub operation: String,
    /// A waiting operation.
    pub wait: bool,
    /// Share of the P50 group's critical-path time.
    pub share_p50: f64,
    /// Share of the tail group's critical-path time.
    pub share_p99: f64,
    /// Mean critical-path time per trace, P50 group (ns).
    pub mean_ns_p50: f64,
    /// Mean critical-path time per trace, tail group (ns).
    pub mean_ns_p99: f64,
    /// `mean_ns_p99 - mean_ns_p50`: how much more of it a tail trace has (ns).
    pub extra_ns: f64,
    /// That, over the tail group's extra mean duration (tail mean minus P50 mean).
    pub extra_share: f64,
}

/// One detector finding, over all traces.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Which detector.
    pub kind: FindingKind,
    /// Service of the operation.
    pub service: String,
    /// The operation (sequential calls: the first).
    pub operation: String,
    /// Service of the parent span.
    pub parent_service: String,
    /// The parent span's operation.
    pub parent_operation: String,
    /// Dependencies called one after another (sequential calls).
    pub deps: Vec<String>,
    /// Traces showing it.
    pub traces: u64,
    /// Of all traces.
    pub fraction: f64,
    /// Mean calls involved per affected trace.
    pub mean_count: f64,
    /// Most calls involved in one trace.
    pub max_count: u64,
    /// Mean time of the calls involved per affected trace (ns).
    pub mean_ns: f64,
    /// Mean time a fix would save per affected trace (ns).
    pub mean_saving_ns: f64,
    /// Share of all critical-path time spent in the calls involved.
    pub path_share: f64,
    /// The affected trace with the largest saving.
    pub example_trace_id: TraceId,
}

/// Network gaps between a client span and its server span.
#[derive(Clone, Debug, PartialEq)]
pub struct GapRow {
    /// Client service.
    pub client: String,
    /// Server service.
    pub server: String,
    /// Client→server calls seen.
    pub calls: u64,
    /// Mean client duration minus server duration (ns).
    pub mean_gap_ns: f64,
    /// Share of all critical-path time spent in these gaps.
    pub path_share: f64,
}

/// The result of an analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Traces analyzed (with a root).
    pub traces: u64,
    /// Spans analyzed.
    pub spans: u64,
    /// The two groups compared.
    pub groups: Groups,
    /// Operations by contribution to the tail (`mean_ns_p99`), largest first.
    pub tail: Vec<TailRow>,
    /// Detector findings, largest total saving first.
    pub findings: Vec<Finding>,
    /// Findings not kept (over the cap of distinct findings).
    pub findings_dropped: u64,
    /// Client→server network gaps, largest share first.
    pub network: Vec<GapRow>,
    /// Repairs made to the input.
    pub anomalies: TraceAnomalies,
    /// Slowest traces: (id, duration ns), slowest first.
    pub slowest: Vec<(TraceId, u64)>,
}
