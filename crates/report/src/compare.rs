//! `chokepoint compare` output: the `chokepoint.compare.v1` JSON shape, built
//! from the statistics crate's comparison results, and its text and Markdown
//! renderings. Field names are public contract: add, never rename.

use std::fmt::Write as _;

use chokepoint_stats::bootstrap::BootstrapMethod;
use chokepoint_stats::compare::{
    ConfidenceInterval, ErrorRateComparison, LatencyComparison, MetricComparison, RateTest,
    ThroughputComparison, Verdict,
};
use serde::{Deserialize, Serialize};

use crate::markup::{md_cell, pct_signed, pp_signed, pvalue};
use crate::text::{fmt_count, fmt_ms};

/// The schema identifier of a comparison.
pub const COMPARE_SCHEMA: &str = "chokepoint.compare.v1";

/// A whole comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Always [`COMPARE_SCHEMA`].
    pub schema: String,
    /// chokepoint version that compared.
    pub tool_version: String,
    /// The BEFORE run.
    pub before: RunRef,
    /// The AFTER run.
    pub after: RunRef,
    /// Statistical settings used.
    pub settings: CompareSettings,
    /// True when no comparability difference was found.
    pub comparable: bool,
    /// What differs between the runs' conditions (target, load, duration, ...).
    pub differences: Vec<Difference>,
    /// Latency percentiles and mean.
    pub latency: LatencySection,
    /// Throughput (higher is better).
    pub throughput: ThroughputRow,
    /// Error rate (lower is better).
    pub error_rate: ErrorRateRow,
    /// The target's resource cost per request, when both runs carry a
    /// `resources` object (from `--watch-pid`); `null` otherwise.
    pub cost: Option<CostSection>,
    /// Anything worth knowing about the inputs (fallbacks, partial files).
    pub notes: Vec<String>,
    /// Names of the metrics whose verdict is `regressed` (`p99`, `throughput`, `error_rate`, ...).
    pub regressed: Vec<String>,
    /// Names of the metrics whose verdict is `improved`.
    pub improved: Vec<String>,
    /// Overall: `regressed` if anything regressed, else `improved` if anything
    /// improved, else `no_significant_change`, else `insufficient_data`.
    pub verdict: String,
}

/// Identifies one compared run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRef {
    /// The path given on the command line.
    pub path: String,
    /// Target URL.
    pub target: String,
    /// Start of the measured window (RFC 3339).
    pub started_at: String,
    /// `open` or `closed`.
    pub model: String,
    /// Offered rate (open model).
    pub rate_target: Option<f64>,
    /// Connections (closed model).
    pub concurrency: Option<u64>,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Latency samples (responses) in the interval log.
    pub latency_samples: u64,
    /// chokepoint version that measured.
    pub tool_version: String,
}

/// Settings of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// Confidence level of intervals and tests, in (0, 1).
    pub confidence: f64,
    /// Smallest change in percent that can be a regression or improvement.
    pub min_effect_pct: f64,
    /// Bootstrap resamples per run.
    pub resamples: usize,
    /// Seed of the resampling (same inputs and seed, same numbers).
    pub seed: u64,
    /// Samples needed beyond a quantile for a verdict.
    pub min_tail_samples: u64,
}

/// One comparability difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// What differs: `target`, `model`, `rate_target`, `concurrency`,
    /// `arrival`, `duration_s`, `tool_version`, `http2`, `requests_mix`, `interrupted`.
    pub field: String,
    /// BEFORE's value, as text.
    pub before: String,
    /// AFTER's value, as text.
    pub after: String,
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Confidence level in (0, 1).
    pub confidence: f64,
}

impl From<ConfidenceInterval> for Interval {
    fn from(c: ConfidenceInterval) -> Self {
        Interval {
            low: c.low,
            high: c.high,
            confidence: c.confidence,
        }
    }
}

/// How a run's latency was resampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    /// `interval_blocks` (whole seconds resampled: run-to-run noise counted)
    /// or `iid` (single requests resampled).
    pub kind: String,
    /// Blocks resampled (`interval_blocks`).
    pub blocks: Option<usize>,
    /// Consecutive intervals joined per block (`interval_blocks`).
    pub intervals_per_block: Option<usize>,
    /// Why the interval bootstrap was not used (`iid`).
    pub fallback_reason: Option<String>,
}

impl From<&BootstrapMethod> for Method {
    fn from(m: &BootstrapMethod) -> Self {
        match m {
            BootstrapMethod::IntervalBlocks {
                blocks,
                intervals_per_block,
            } => Method {
                kind: "interval_blocks".into(),
                blocks: Some(*blocks),
                intervals_per_block: Some(*intervals_per_block),
                fallback_reason: None,
            },
            BootstrapMethod::Iid { fallback_reason } => Method {
                kind: "iid".into(),
                blocks: None,
                intervals_per_block: None,
                fallback_reason: fallback_reason.clone(),
            },
        }
    }
}

impl Method {
    fn describe(&self) -> String {
        match (self.kind.as_str(), self.blocks, self.intervals_per_block) {
            ("interval_blocks", Some(b), Some(1)) => format!("{b} one-second intervals"),
            ("interval_blocks", Some(b), Some(k)) => format!("{b} blocks of {k} s"),
            _ => "single requests (i.i.d.)".to_string(),
        }
    }
}

/// The latency part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySection {
    /// Resampling of BEFORE.
    pub method_before: Method,
    /// Resampling of AFTER.
    pub method_after: Method,
    /// Samples in BEFORE.
    pub samples_before: u64,
    /// Samples in AFTER.
    pub samples_after: u64,
    /// p50, p90, p95, p99, p99_9, mean, in that order.
    pub metrics: Vec<LatencyRow>,
    /// Mann-Whitney U over the buckets (informative only: assumes independent samples).
    pub distribution_shift: Option<DistributionShift>,
    /// Combined latency verdict.
    pub verdict: String,
}

/// One latency metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// `p50`, `p90`, `p95`, `p99`, `p99_9` or `mean`.
    pub metric: String,
    /// BEFORE, milliseconds.
    pub before_ms: f64,
    /// AFTER, milliseconds.
    pub after_ms: f64,
    /// (after / before - 1) · 100.
    pub delta_pct: Option<f64>,
    /// Bootstrap interval of `delta_pct`.
    pub ci_pct: Option<Interval>,
    /// Bootstrap p-value of "no change".
    pub p_value: Option<f64>,
    /// The interval excludes 0.
    pub significant: bool,
    /// `improved`, `regressed`, `no_significant_change` or `insufficient_data`.
    pub verdict: String,
    /// Why, for `insufficient_data`.
    pub reason: Option<String>,
}

impl From<&MetricComparison> for LatencyRow {
    fn from(m: &MetricComparison) -> Self {
        LatencyRow {
            metric: m.metric.name().to_string(),
            before_ms: m.before_us / 1000.0,
            after_ms: m.after_us / 1000.0,
            delta_pct: finite(m.delta_pct),
            ci_pct: m.ci_pct.map(Interval::from),
            p_value: finite(m.p_value),
            significant: m.significant,
            verdict: m.verdict.name().to_string(),
            reason: reason(&m.verdict),
        }
    }
}

/// Mann-Whitney U summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistributionShift {
    /// Probability that a random AFTER request is slower than a random BEFORE one.
    pub prob_after_slower: f64,
    /// Two-sided p-value (assumes independence: informative only).
    pub p_value: f64,
}

impl LatencySection {
    /// Converts the statistics crate's result.
    pub fn from_comparison(c: &LatencyComparison) -> Self {
        LatencySection {
            method_before: Method::from(&c.method_before),
            method_after: Method::from(&c.method_after),
            samples_before: c.samples_before,
            samples_after: c.samples_after,
            metrics: c.metrics.iter().map(LatencyRow::from).collect(),
            distribution_shift: c.distribution_shift.map(|m| DistributionShift {
                prob_after_slower: m.prob_after_slower,
                p_value: m.p_value,
            }),
            verdict: c.verdict.name().to_string(),
        }
    }
}

/// Throughput, BEFORE vs AFTER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// Requests per second.
    pub before_rps: f64,
    /// Requests per second.
    pub after_rps: f64,
    /// Change in percent.
    pub delta_pct: Option<f64>,
    /// Interval of `delta_pct`.
    pub ci_pct: Option<Interval>,
    /// Two-sided p-value.
    pub p_value: Option<f64>,
    /// p < 1 - confidence.
    pub significant: bool,
    /// `interval_welch` (per-second rates) or `poisson_counts`.
    pub test: String,
    /// Verdict (`regressed` means lower throughput).
    pub verdict: String,
    /// Why, for `insufficient_data`.
    pub reason: Option<String>,
}

impl From<&ThroughputComparison> for ThroughputRow {
    fn from(t: &ThroughputComparison) -> Self {
        ThroughputRow {
            before_rps: t.before_rps,
            after_rps: t.after_rps,
            delta_pct: finite(t.delta_pct),
            ci_pct: t.ci_pct.map(Interval::from),
            p_value: finite(t.p_value),
            significant: t.significant,
            test: match t.test {
                RateTest::IntervalWelch { .. } => "interval_welch".into(),
                RateTest::PoissonCounts => "poisson_counts".into(),
            },
            verdict: t.verdict.name().to_string(),
            reason: reason(&t.verdict),
        }
    }
}

/// Error rate, BEFORE vs AFTER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRateRow {
    /// BEFORE errors / requests, in percent.
    pub before_pct: f64,
    /// AFTER errors / requests, in percent.
    pub after_pct: f64,
    /// BEFORE errors.
    pub before_errors: u64,
    /// AFTER errors.
    pub after_errors: u64,
    /// AFTER - BEFORE in percentage points.
    pub delta_pp: f64,
    /// Newcombe interval of `delta_pp`.
    pub ci_pp: Option<Interval>,
    /// Relative change in percent (none when BEFORE had no errors).
    pub relative_change_pct: Option<f64>,
    /// Two-proportion z-test p-value.
    pub p_value: Option<f64>,
    /// p < 1 - confidence.
    pub significant: bool,
    /// Verdict (`regressed` means more errors).
    pub verdict: String,
    /// Why, for `insufficient_data`.
    pub reason: Option<String>,
}

impl ErrorRateRow {
    /// Converts the statistics crate's result, with the raw counts.
    pub fn from_comparison(e: &ErrorRateComparison, before_errors: u64, after_errors: u64) -> Self {
        ErrorRateRow {
            before_pct: e.before_rate * 100.0,
            after_pct: e.after_rate * 100.0,
            before_errors,
            after_errors,
            delta_pp: e.delta_pp,
            ci_pp: e.ci_pp.map(Interval::from),
            relative_change_pct: finite(e.relative_change_pct),
            p_value: finite(Some(e.p_value)),
            significant: e.significant,
            verdict: e.verdict.name().to_string(),
            reason: reason(&e.verdict),
        }
    }
}

/// The target's resource cost, BEFORE vs AFTER (single values per run: no
/// significance test).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CostSection {
    /// Target CPU time per completed request, milliseconds.
    pub cpu_ms_per_request: Option<CostRow>,
    /// Target peak resident memory, bytes.
    pub peak_rss_bytes: Option<CostRow>,
    /// What could not be computed and why.
    pub notes: Vec<String>,
}

/// One cost figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// BEFORE.
    pub before: f64,
    /// AFTER.
    pub after: f64,
    /// Change in percent; none when BEFORE is 0.
    pub delta_pct: Option<f64>,
}

impl CostRow {
    /// A row with its change.
    pub fn new(before: f64, after: f64) -> Self {
        CostRow {
            before,
            after,
            delta_pct: (before > 0.0).then(|| (after / before - 1.0) * 100.0),
        }
    }
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

fn reason(v: &Verdict) -> Option<String> {
    match v {
        Verdict::InsufficientData { reason } => Some(reason.clone()),
        _ => None,
    }
}

/// A verdict name for people: `no_significant_change` → `no significant change`.
pub fn verdict_words(name: &str) -> String {
    name.replace('_', " ")
}

fn metric_label(name: &str) -> String {
    match name {
        "p99_9" => "p99.9".to_string(),
        "error_rate" => "error rate".to_string(),
        other => other.to_string(),
    }
}

fn methods_text(l: &LatencySection) -> String {
    let (b, a) = (l.method_before.describe(), l.method_after.describe());
    if a == b {
        b
    } else {
        format!("{b} (before) and {a} (after)")
    }
}

fn ci_text(ci: Option<Interval>, unit: &str) -> String {
    ci.map_or("-".to_string(), |c| {
        format!("[{:+.1}{unit}, {:+.1}{unit}]", c.low, c.high)
    })
}

fn load_text(r: &RunRef) -> String {
    match (r.rate_target, r.concurrency) {
        (Some(rate), _) => format!("open {rate} req/s"),
        (None, Some(c)) => format!("closed {c} conn"),
        _ => r.model.clone(),
    }
}

fn cost_cells(row: &CostRow, kind: &str) -> (String, String, String) {
    let fmt = |v: f64| match kind {
        "cpu" => format!("{v:.3} ms"),
        _ => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
    };
    (
        fmt(row.before),
        fmt(row.after),
        row.delta_pct.map_or("-".into(), pct_signed),
    )
}

/// The one-line overall conclusion.
pub fn headline(r: &CompareReport) -> String {
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| metric_label(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match r.verdict.as_str() {
        "regressed" if r.improved.is_empty() => format!("REGRESSED: {}", list(&r.regressed)),
        "regressed" => format!(
            "REGRESSED: {} (improved: {})",
            list(&r.regressed),
            list(&r.improved)
        ),
        "improved" => format!("IMPROVED: {}", list(&r.improved)),
        "no_significant_change" => format!(
            "no significant change (at {:.0}% confidence, minimum effect {}%)",
            r.settings.confidence * 100.0,
            r.settings.min_effect_pct
        ),
        _ => "insufficient data for any verdict".to_string(),
    }
}

/// The text report.
pub fn render_text(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "chokepoint compare");
    for (side, run) in [("BEFORE", &r.before), ("AFTER", &r.after)] {
        let _ = writeln!(
            out,
            "  {side:<7} {}  ({}, {}, {:.1} s, {} requests, started {})",
            run.path,
            run.target,
            load_text(run),
            run.duration_s,
            fmt_count(run.requests),
            run.started_at
        );
    }
    let _ = writeln!(out);
    if r.differences.is_empty() {
        let _ = writeln!(
            out,
            "Comparable: same target, load model, offered load, duration and tool version."
        );
    } else {
        let _ = writeln!(
            out,
            "NOT COMPARABLE: {} difference(s) in the conditions (a change may come from these):",
            r.differences.len()
        );
        for d in &r.differences {
            let _ = writeln!(out, "  {:<13} {}  →  {}", d.field, d.before, d.after);
        }
    }
    let _ = writeln!(out);
    let l = &r.latency;
    let conf = r.settings.confidence * 100.0;
    let _ = writeln!(
        out,
        "Latency (from intended send; {} vs {} samples; bootstrap of {}; {} resamples)",
        fmt_count(l.samples_before),
        fmt_count(l.samples_after),
        methods_text(l),
        fmt_count(r.settings.resamples as u64),
    );
    let ci_header = format!("{conf:.0}% CI of change");
    let _ = writeln!(
        out,
        "  {:<11} {:>10} {:>10} {:>9}  {:<20} {:>8}  verdict",
        "metric", "before", "after", "change", ci_header, "p"
    );
    let mut notes: Vec<String> = Vec::new();
    for m in &l.metrics {
        let verdict = match &m.reason {
            Some(reason) => {
                notes.push(format!("{}: {reason}", metric_label(&m.metric)));
                format!("{}*", verdict_words(&m.verdict))
            }
            None => verdict_words(&m.verdict),
        };
        let _ = writeln!(
            out,
            "  {:<11} {:>10} {:>10} {:>9}  {:<20} {:>8}  {}",
            metric_label(&m.metric),
            fmt_ms(m.before_ms),
            fmt_ms(m.after_ms),
            m.delta_pct.map_or("-".into(), pct_signed),
            ci_text(m.ci_pct, "%"),
            m.p_value.map_or("-".into(), pvalue),
            verdict
        );
    }
    let t = &r.throughput;
    let t_verdict = match &t.reason {
        Some(reason) => {
            notes.push(format!("throughput: {reason}"));
            format!("{}*", verdict_words(&t.verdict))
        }
        None => verdict_words(&t.verdict),
    };
    let _ = writeln!(
        out,
        "  {:<11} {:>10} {:>10} {:>9}  {:<20} {:>8}  {}",
        "throughput",
        format!("{:.1}/s", t.before_rps),
        format!("{:.1}/s", t.after_rps),
        t.delta_pct.map_or("-".into(), pct_signed),
        ci_text(t.ci_pct, "%"),
        t.p_value.map_or("-".into(), pvalue),
        t_verdict
    );
    let e = &r.error_rate;
    let e_verdict = match &e.reason {
        Some(reason) => {
            notes.push(format!("error rate: {reason}"));
            format!("{}*", verdict_words(&e.verdict))
        }
        None => verdict_words(&e.verdict),
    };
    let _ = writeln!(
        out,
        "  {:<11} {:>10} {:>10} {:>9}  {:<20} {:>8}  {}",
        "error rate",
        format!("{:.2}%", e.before_pct),
        format!("{:.2}%", e.after_pct),
        pp_signed(e.delta_pp),
        ci_text(e.ci_pp, "pp"),
        e.p_value.map_or("-".into(), pvalue),
        e_verdict
    );
    if let Some(cost) = &r.cost {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Target cost (one value per run: not tested for significance)"
        );
        if let Some(row) = &cost.cpu_ms_per_request {
            let (b, a, d) = cost_cells(row, "cpu");
            let _ = writeln!(out, "  {:<11} {b:>10} {a:>10} {d:>9}", "CPU/request");
        }
        if let Some(row) = &cost.peak_rss_bytes {
            let (b, a, d) = cost_cells(row, "rss");
            let _ = writeln!(out, "  {:<11} {b:>10} {a:>10} {d:>9}", "peak RSS");
        }
        for n in &cost.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    for n in &notes {
        let _ = writeln!(out, "  * {n}");
    }
    if let Some(reason) = &l.method_before.fallback_reason {
        let _ = writeln!(
            out,
            "  note: single requests were resampled because {reason}"
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Verdict: {}", headline(r));
    let _ = writeln!(
        out,
        "  (a verdict needs a significant change at {conf:.0}% confidence and at least {}% effect)",
        r.settings.min_effect_pct
    );
    out
}

/// The Markdown report (a CI job summary or a pull-request comment).
pub fn render_markdown(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## chokepoint compare: {}\n", md_cell(&headline(r)));
    let _ = writeln!(out, "| | run | target | load | duration | requests |");
    let _ = writeln!(out, "|---|---|---|---|---:|---:|");
    for (side, run) in [("before", &r.before), ("after", &r.after)] {
        let _ = writeln!(
            out,
            "| {side} | `{}` | {} | {} | {:.1} s | {} |",
            run.path.replace('`', "'"),
            md_cell(&run.target),
            md_cell(&load_text(run)),
            run.duration_s,
            fmt_count(run.requests)
        );
    }
    let _ = writeln!(out);
    if r.differences.is_empty() {
        let _ = writeln!(out, "Conditions are comparable.\n");
    } else {
        let _ = writeln!(out, "**Not comparable**: the conditions differ.\n");
        let _ = writeln!(out, "| field | before | after |");
        let _ = writeln!(out, "|---|---|---|");
        for d in &r.differences {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                md_cell(&d.field),
                md_cell(&d.before),
                md_cell(&d.after)
            );
        }
        let _ = writeln!(out);
    }
    let conf = r.settings.confidence * 100.0;
    let _ = writeln!(
        out,
        "| metric | before | after | change | {conf:.0}% CI | p | verdict |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|");
    let mut notes = Vec::new();
    let mut verdict_cell = |name: &str, verdict: &str, reason: &Option<String>| {
        let mark = match verdict {
            "regressed" => "❌ ",
            "improved" => "✅ ",
            _ => "",
        };
        if let Some(reason) = reason {
            notes.push(format!("{}: {reason}", metric_label(name)));
        }
        format!("{mark}{}", verdict_words(verdict))
    };
    let mut rows = Vec::new();
    for m in &r.latency.metrics {
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            metric_label(&m.metric),
            fmt_ms(m.before_ms),
            fmt_ms(m.after_ms),
            m.delta_pct.map_or("-".into(), pct_signed),
            ci_text(m.ci_pct, "%"),
            m.p_value.map_or("-".into(), pvalue),
            verdict_cell(&m.metric, &m.verdict, &m.reason)
        ));
    }
    let t = &r.throughput;
    rows.push(format!(
        "| throughput | {:.1}/s | {:.1}/s | {} | {} | {} | {} |",
        t.before_rps,
        t.after_rps,
        t.delta_pct.map_or("-".into(), pct_signed),
        ci_text(t.ci_pct, "%"),
        t.p_value.map_or("-".into(), pvalue),
        verdict_cell("throughput", &t.verdict, &t.reason)
    ));
    let e = &r.error_rate;
    rows.push(format!(
        "| error rate | {:.2}% | {:.2}% | {} | {} | {} | {} |",
        e.before_pct,
        e.after_pct,
        pp_signed(e.delta_pp),
        ci_text(e.ci_pp, "pp"),
        e.p_value.map_or("-".into(), pvalue),
        verdict_cell("error_rate", &e.verdict, &e.reason)
    ));
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    if let Some(cost) = &r.cost {
        let _ = writeln!(
            out,
            "\n| target cost (not tested for significance) | before | after | change |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        if let Some(row) = &cost.cpu_ms_per_request {
            let (b, a, d) = cost_cells(row, "cpu");
            let _ = writeln!(out, "| CPU per request | {b} | {a} | {d} |");
        }
        if let Some(row) = &cost.peak_rss_bytes {
            let (b, a, d) = cost_cells(row, "rss");
            let _ = writeln!(out, "| peak RSS | {b} | {a} | {d} |");
        }
        for n in &cost.notes {
            notes.push(n.clone());
        }
    }
    notes.extend(r.notes.iter().cloned());
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in &notes {
            let _ = writeln!(out, "- {}", md_cell(n));
        }
    }
    let _ = writeln!(
        out,
        "\nLatency from the intended send time; bootstrap of {}, {} resamples, seed {}. A verdict needs significance at {conf:.0}% and at least {}% effect.",
        methods_text(&r.latency),
        r.settings.resamples,
        r.settings.seed,
        r.settings.min_effect_pct
    );
    out
}
