//! `chokepoint history` output: the `chokepoint.history.v1` JSON shapes of
//! `history list` and `history check`, and their text renderings.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::text::{fmt_count, fmt_ms};

/// The schema identifier of history output.
pub const HISTORY_SCHEMA: &str = "chokepoint.history.v1";

/// One stored run, as `history list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Row id in the database (stable, increasing).
    pub id: i64,
    /// When it was added (RFC 3339).
    pub added_at: String,
    /// Start of the run's measured window (RFC 3339).
    pub started_at: String,
    /// The label given to `history add` (commit, build number, ...).
    pub label: Option<String>,
    /// Target URL.
    pub target: String,
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Errors over requests, in percent.
    pub error_pct: f64,
    /// Latency P50, milliseconds.
    pub p50_ms: f64,
    /// Latency P99, milliseconds.
    pub p99_ms: f64,
}

/// `history list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryList {
    /// Always [`HISTORY_SCHEMA`].
    pub schema: String,
    /// The database path.
    pub db: String,
    /// Oldest first.
    pub runs: Vec<HistoryEntry>,
}

/// One run of the series that `history check` examined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Row id.
    pub id: i64,
    /// Label.
    pub label: Option<String>,
    /// Start of the run.
    pub started_at: String,
    /// The metric's value (unit in [`HistoryCheck::unit`]).
    pub value: f64,
}

/// A change point found in the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePointRow {
    /// Position in the series of the first run of the new segment.
    pub index: usize,
    /// Row id of that run.
    pub id: i64,
    /// Its label.
    pub label: Option<String>,
    /// Its start time.
    pub started_at: String,
    /// Mean of the segment before.
    pub mean_before: f64,
    /// Mean of the segment after.
    pub mean_after: f64,
    /// Runs in the segment before.
    pub len_before: usize,
    /// Runs in the segment after.
    pub len_after: usize,
    /// (after / before - 1) · 100.
    pub change_pct: Option<f64>,
    /// Student's t-test p-value.
    pub p_value: f64,
    /// `regression` or `improvement`, given which direction is worse for the metric.
    pub kind: String,
}

/// `history check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryCheck {
    /// Always [`HISTORY_SCHEMA`].
    pub schema: String,
    /// The database path.
    pub db: String,
    /// `p50`, `p90`, `p95`, `p99`, `p99_9`, `max`, `mean`, `error_rate` or `throughput`.
    pub metric: String,
    /// Per-request series, when `--request` was given.
    pub request: Option<String>,
    /// Unit of the values: `ms`, `percent` or `rps`.
    pub unit: String,
    /// `higher_is_worse` or `lower_is_worse`.
    pub direction: String,
    /// Settings: max p-value, min segment length, min magnitude in percent.
    pub max_p_value: f64,
    /// Fewest runs on each side of a change point.
    pub min_segment_len: usize,
    /// Smallest change, percent.
    pub min_magnitude_pct: f64,
    /// The runs examined, oldest first.
    pub series: Vec<SeriesPoint>,
    /// Every change point, oldest first.
    pub change_points: Vec<ChangePointRow>,
    /// The last change point when it is a significant regression.
    pub latest_regression: Option<ChangePointRow>,
    /// `regression` (exit 1) or `ok`.
    pub status: String,
    /// Remarks (runs skipped, mixed targets, too short a history).
    pub notes: Vec<String>,
}

fn value_text(v: f64, unit: &str) -> String {
    match unit {
        "ms" => fmt_ms(v),
        "percent" => format!("{v:.3}%"),
        _ => format!("{v:.1}/s"),
    }
}

fn label_text(label: &Option<String>) -> String {
    label.as_deref().map_or(String::new(), |l| {
        format!(" \"{}\"", l.replace(['\n', '\r'], " "))
    })
}

/// The text of `history list`.
pub fn render_list(l: &HistoryList) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} runs in {}", l.runs.len(), l.db);
    if l.runs.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "  {:>5}  {:<24}  {:<16}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}  target",
        "id", "started", "label", "requests", "req/s", "errors", "p50", "p99"
    );
    for r in &l.runs {
        let label: String = r.label.as_deref().unwrap_or("-").chars().take(16).collect();
        let _ = writeln!(
            out,
            "  {:>5}  {:<24}  {:<16}  {:>9}  {:>9.1}  {:>7.2}%  {:>10}  {:>10}  {}",
            r.id,
            r.started_at,
            label.replace(['\n', '\r'], " "),
            fmt_count(r.requests),
            r.throughput_rps,
            r.error_pct,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p99_ms),
            r.target
        );
    }
    out
}

/// The text of `history check`.
pub fn render_check(c: &HistoryCheck) -> String {
    let mut out = String::new();
    let what = match &c.request {
        Some(r) => format!("{} of request `{r}`", c.metric),
        None => c.metric.clone(),
    };
    let _ = writeln!(
        out,
        "history check: {what} over {} runs in {}",
        c.series.len(),
        c.db
    );
    let _ = writeln!(
        out,
        "  change points: E-divisive means, t-test p ≤ {}, segments ≥ {} runs, change ≥ {}%",
        c.max_p_value, c.min_segment_len, c.min_magnitude_pct
    );
    if c.change_points.is_empty() {
        let _ = writeln!(out, "  no change point");
    }
    for p in &c.change_points {
        let _ = writeln!(
            out,
            "  {:<11} at run #{}{} ({}): {} → {} ({}), p = {:.2e}, {} runs before, {} after",
            p.kind,
            p.id,
            label_text(&p.label),
            p.started_at,
            value_text(p.mean_before, &c.unit),
            value_text(p.mean_after, &c.unit),
            p.change_pct.map_or("-".into(), |x| format!("{x:+.1}%")),
            p.p_value,
            p.len_before,
            p.len_after
        );
    }
    for n in &c.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    match &c.latest_regression {
        Some(p) => {
            let _ = writeln!(
                out,
                "REGRESSION: the latest {} runs are {} worse than the {} before, since run #{}{}",
                p.len_after,
                p.change_pct.map_or("-".into(), |x| format!("{x:+.1}%")),
                p.len_before,
                p.id,
                label_text(&p.label)
            );
        }
        None => {
            let _ = writeln!(out, "OK: the latest segment is not a regression");
        }
    }
    out
}
