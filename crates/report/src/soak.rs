//! `chokepoint soak` output: the `chokepoint.soak.v1` JSON shape (windows,
//! drift per metric, stalls, verdicts) and its text report.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::resources::{fmt_bytes, render_resources};
use crate::summary::RunSummary;
use crate::text::fmt_ms;

/// The schema identifier of a soak report.
pub const SOAK_SCHEMA: &str = "chokepoint.soak.v1";

/// A whole soak.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakReport {
    /// Always [`SOAK_SCHEMA`].
    pub schema: String,
    /// chokepoint version.
    pub tool_version: String,
    /// Target (credentials redacted).
    pub target: String,
    /// Offered rate (req/s).
    pub rate: f64,
    /// Aggregation window (seconds) of `windows`.
    pub window_s: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// The whole run, as `summary.json`.
    pub summary: RunSummary,
    /// Per-window statistics (at most `MAX_WINDOWS`; adjacent windows are
    /// merged pairwise when a soak outgrows that, see `windows_merged`).
    pub windows: Vec<SoakWindow>,
    /// How many aggregation windows each entry of `windows` covers (1 unless merged).
    pub windows_merged: u64,
    /// Trend of each metric over time.
    pub drift: Vec<Drift>,
    /// Seconds where many requests were slow together.
    pub stalls: StallReport,
    /// Findings, one sentence each (empty when stable).
    pub verdicts: Vec<String>,
    /// `stable`, or the findings joined.
    pub verdict: String,
    /// No drift, leak or stall was found.
    pub stable: bool,
    /// Stopped early (Ctrl-C).
    pub interrupted: bool,
    /// Caveats.
    pub notes: Vec<String>,
}

/// One aggregation window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakWindow {
    /// Seconds from the start of the measured window.
    pub start_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Errors over requests.
    pub error_rate: f64,
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Largest latency (ms).
    pub max_ms: f64,
    /// Target RSS at the window's end (probed).
    pub rss_bytes: Option<u64>,
    /// Target open fds at the window's end (probed).
    pub fds: Option<u64>,
    /// chokepoint's own open connections at the window's end (each holds one
    /// fd in a local target: the fd drift is judged on `fds − connections`).
    pub connections: u64,
}

/// The trend of one metric: Theil–Sen slope with a Mann–Kendall test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Drift {
    /// `p99_ms`, `error_rate`, `rss_bytes`, `fds` (open fds minus chokepoint's own connections).
    pub metric: String,
    /// Unit of the metric (`ms`, `fraction`, `bytes`, `fds`).
    pub unit: String,
    /// Windows the trend rests on.
    pub points: usize,
    /// Theil–Sen slope, in units per hour.
    pub slope_per_hour: f64,
    /// 95% interval of the slope, per hour.
    pub slope_ci_per_hour: [f64; 2],
    /// Mann–Kendall two-sided p-value.
    pub p_value: f64,
    /// Kendall's tau (−1..1).
    pub tau: f64,
    /// Median of the metric over the run.
    pub median: f64,
    /// Slope × measured duration: the change the trend implies over this run.
    pub change_over_run: f64,
    /// Significant (p below the threshold) *and* large enough to matter.
    pub significant: bool,
    /// The finding in words, when significant.
    pub verdict: Option<String>,
}

/// Stalls: seconds in which many requests were slow together.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StallReport {
    /// A request slower than this (ms) counts as slow (relative to the running median).
    pub threshold_ms: f64,
    /// Seconds examined.
    pub seconds: usize,
    /// Seconds where at least 2% of requests (and at least 3) were slow.
    pub stall_seconds: usize,
    /// Stall events (adjacent stall seconds count once).
    pub events: usize,
    /// Events recur regularly.
    pub periodic: bool,
    /// The period (seconds), when periodic; 1 means "every second or more often".
    pub period_s: Option<f64>,
    /// Coefficient of variation of the gaps between events.
    pub gap_cv: Option<f64>,
    /// Events on the most common phase of the median gap's grid: a period
    /// is recognised though noise hid or added some events.
    pub in_phase: usize,
    /// Fraction of requests in stall seconds that were slow.
    pub slow_fraction_in_stalls: f64,
    /// Seconds (from the start) of the first stall events (at most 20).
    pub first_events_s: Vec<usize>,
    /// The finding in words.
    pub verdict: Option<String>,
}

/// Renders the soak report as text.
pub fn render_soak(r: &SoakReport, resources: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "chokepoint soak {}", r.target);
    let s = &r.summary;
    let _ = writeln!(
        out,
        "{} req/s offered · {:.0} s measured in {}-second windows · {} requests, {:.1} req/s, error rate {:.3}%",
        crate::stress::trim(r.rate),
        r.duration_s,
        crate::stress::trim(r.window_s * r.windows_merged.max(1) as f64),
        crate::text::fmt_count(s.requests),
        s.throughput_rps,
        s.error_rate * 100.0
    );
    let _ = writeln!(
        out,
        "latency: p50 {} · p99 {} · p99.9 {} · max {}",
        fmt_ms(s.latency_ms.p50),
        fmt_ms(s.latency_ms.p99),
        fmt_ms(s.latency_ms.p99_9),
        fmt_ms(s.latency_ms.max)
    );
    if r.interrupted {
        let _ = writeln!(out, "INTERRUPTED: the report covers what was measured");
    }
    let _ = writeln!(out, "\nDrift (Theil–Sen slope, Mann–Kendall test)");
    for d in &r.drift {
        let (slope, median) = match d.unit.as_str() {
            "ms" => (
                format!("{:+.2} ms/hour", d.slope_per_hour),
                fmt_ms(d.median),
            ),
            "bytes" => (
                format!("{}/hour", signed_bytes(d.slope_per_hour)),
                fmt_bytes(d.median),
            ),
            "fraction" => (
                format!("{:+.3} pp/hour", d.slope_per_hour * 100.0),
                format!("{:.3}%", d.median * 100.0),
            ),
            _ => (
                format!("{:+.1} {}/hour", d.slope_per_hour, d.unit),
                format!("{:.0}", d.median),
            ),
        };
        let _ = writeln!(
            out,
            "  {:<10}  median {:>10}  slope {:>18}  p = {:<8}  {}",
            d.metric,
            median,
            slope,
            fmt_p(d.p_value),
            d.verdict.as_deref().unwrap_or("no significant trend")
        );
    }
    let st = &r.stalls;
    let _ = writeln!(
        out,
        "\nStalls (a second with ≥ 2% of requests slower than {}): {} of {} seconds, {} events",
        fmt_ms(st.threshold_ms),
        st.stall_seconds,
        st.seconds,
        st.events
    );
    if let Some(v) = &st.verdict {
        let _ = writeln!(out, "  {v}");
    }
    let _ = writeln!(out, "\nverdict: {}", r.verdict);
    if resources {
        if let Some(res) = &s.resources {
            out.push_str(&render_resources(res));
        }
    }
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// A p-value for humans: `< 0.001` below that.
pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn signed_bytes(v: f64) -> String {
    let sign = if v < 0.0 { "-" } else { "+" };
    format!("{sign}{}", fmt_bytes(v.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_drift_and_stalls() {
        let r = SoakReport {
            schema: SOAK_SCHEMA.into(),
            target: "http://x/".into(),
            rate: 50.0,
            window_s: 5.0,
            windows_merged: 1,
            duration_s: 60.0,
            drift: vec![Drift {
                metric: "rss_bytes".into(),
                unit: "bytes".into(),
                slope_per_hour: 52.0 * 1024.0 * 1024.0,
                p_value: 0.0001,
                median: 100.0 * 1024.0 * 1024.0,
                significant: true,
                verdict: Some("RSS grows 52.0 MiB/hour: probable leak".into()),
                ..Drift::default()
            }],
            stalls: StallReport {
                threshold_ms: 25.0,
                events: 20,
                periodic: true,
                period_s: Some(3.0),
                verdict: Some("periodic stalls every 3.0 s".into()),
                ..StallReport::default()
            },
            verdict: "RSS grows".into(),
            ..SoakReport::default()
        };
        let text = render_soak(&r, true);
        assert!(text.contains("+52.0 MiB/hour"), "{text}");
        assert!(text.contains("p = < 0.001"), "{text}");
        assert!(text.contains("periodic stalls every 3.0 s"), "{text}");
    }
}
