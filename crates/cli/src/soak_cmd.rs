//! `chokepoint soak`: one long open-model run in constant memory, aggregated
//! into windows (default one minute), with drift detection (Theil–Sen slope +
//! Mann–Kendall test) on P99, error rate and the target's RSS and fds, and
//! detection of periodic stalls from per-second slow-request counts.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use chokepoint_engine::{IntervalReport, Observer, StopSignal};
use chokepoint_report::resources::fmt_bytes;
use chokepoint_report::soak::{
    fmt_p, render_soak, Drift, SoakReport, SoakWindow, StallReport, SOAK_SCHEMA,
};
use chokepoint_report::text::fmt_ms;
use chokepoint_stats::drift::{find_stalls, trend, SecondCounts, StallConfig};
use chokepoint_stats::{new_histogram, summarize, Histogram};
use clap::Args;

use crate::args::{self, ConnectionArgs, LoadArgs, RequestArgs};
use crate::run_cmd::EXIT_INTERRUPTED;
use crate::scenario::ArrivalName;
use crate::watch::{ArmOnStart, Watch, WatchArgs};
use crate::{signals, units, Failure};

/// Flags of `chokepoint soak`.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Constant offered rate (open model); required.
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    rate: Option<f64>,
    /// Measured duration.
    #[arg(short = 'z', long, value_name = "DUR", value_parser = units::parse_duration, default_value = "1h")]
    duration: Duration,
    /// Aggregation window of the drift statistics.
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration, default_value = "1m")]
    window: Duration,
    /// Warmup before the measured window (excluded from every statistic).
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration)]
    warmup: Option<Duration>,
    /// Open-model arrival spacing.
    #[arg(long, value_enum, value_name = "KIND")]
    arrival: Option<ArrivalName>,
    /// Most concurrent connections [default: 10000].
    #[arg(long = "max-connections", value_name = "N")]
    max_connections: Option<u64>,
    /// Significance level of the trend tests.
    #[arg(long = "alpha", value_name = "P", default_value_t = 0.01)]
    alpha: f64,
    /// Exit 1 when a drift, leak or stall is found.
    #[arg(long = "fail-on-drift")]
    fail_on_drift: bool,
    #[command(flatten)]
    watch: WatchArgs,
    /// Write the run directory (summary.json, latency.hlog, timeseries.csv,
    /// resources.csv) plus soak.json into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the chokepoint.soak.v1 JSON on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
}

/// Most windows kept; beyond it adjacent windows merge pairwise (constant memory).
pub const MAX_WINDOWS: usize = 1024;
/// Most seconds of per-second counts kept for stall detection (a day).
pub const MAX_SECONDS: usize = 86_400;
/// Seconds of per-second medians behind the running latency baseline.
const BASELINE_SECONDS: usize = 60;

/// Stall threshold for a baseline median (µs): 4× the median, and at least 20 ms above it.
pub fn stall_threshold_us(baseline_p50_us: u64) -> u64 {
    (baseline_p50_us * 4).max(baseline_p50_us + 20_000)
}

/// Aggregates the engine's seconds into windows and stall counts.
struct Aggregator {
    window_s: f64,
    latest: Option<chokepoint_probe::Latest>,
    // the open window
    hist: Histogram,
    window_start_s: f64,
    window_len_s: f64,
    requests: u64,
    errors: u64,
    // finished windows, merged pairwise past MAX_WINDOWS
    windows: Vec<SoakWindow>,
    merge: u64,
    pending: Option<(SoakWindow, u64)>,
    // stalls
    seconds: VecDeque<SecondCounts>,
    seconds_dropped: u64,
    recent_p50: VecDeque<u64>,
    threshold_us: u64,
    max_ms: f64,
    connections: u64,
}

impl Aggregator {
    fn new(window: Duration, latest: Option<chokepoint_probe::Latest>) -> Self {
        Aggregator {
            window_s: window.as_secs_f64(),
            latest,
            hist: new_histogram(),
            window_start_s: 0.0,
            window_len_s: 0.0,
            requests: 0,
            errors: 0,
            windows: Vec::new(),
            merge: 1,
            pending: None,
            seconds: VecDeque::new(),
            seconds_dropped: 0,
            recent_p50: VecDeque::new(),
            threshold_us: 0,
            max_ms: 0.0,
            connections: 0,
        }
    }

    fn close_window(&mut self) {
        if let Some(w) = self.take_window() {
            self.push(w);
        }
    }

    /// The open window's figures (None when it is empty); a new window opens.
    fn take_window(&mut self) -> Option<SoakWindow> {
        if self.window_len_s <= 0.0 {
            return None;
        }
        let s = summarize(&self.hist);
        let latest = self.latest.as_ref().and_then(|l| l.get());
        let w = SoakWindow {
            start_s: self.window_start_s,
            duration_s: self.window_len_s,
            requests: self.requests,
            errors: self.errors,
            error_rate: if self.requests > 0 {
                self.errors as f64 / self.requests as f64
            } else {
                0.0
            },
            rps: self.requests as f64 / self.window_len_s,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
            max_ms: s.max_ms,
            rss_bytes: latest.and_then(|r| r.rss_bytes),
            fds: latest.and_then(|r| r.fds),
            connections: self.connections,
        };
        self.hist.reset();
        self.window_start_s += self.window_len_s;
        self.window_len_s = 0.0;
        self.requests = 0;
        self.errors = 0;
        Some(w)
    }

    /// Adds a window, merging `merge` raw windows into one entry.
    fn push(&mut self, w: SoakWindow) {
        let (acc, n) = match self.pending.take() {
            None => (w, 1),
            Some((acc, n)) => (merge_windows(&acc, &w, n), n + 1),
        };
        if n < self.merge {
            self.pending = Some((acc, n));
            return;
        }
        self.windows.push(acc);
        if self.windows.len() >= MAX_WINDOWS {
            self.windows = self
                .windows
                .chunks(2)
                .map(|c| {
                    if c.len() == 2 {
                        merge_windows(&c[0], &c[1], self.merge)
                    } else {
                        c[0]
                    }
                })
                .collect();
            self.merge *= 2;
        }
    }

    fn finish(&mut self) {
        // A tail shorter than half a window (the last report of a run that
        // ended a moment after a window closed) joins the window before it
        // rather than standing as a drift point of its own.
        if let Some(w) = self.take_window() {
            if w.duration_s < 0.5 * self.window_s {
                if let Some((acc, n)) = self.pending.take() {
                    self.pending = Some((merge_windows(&acc, &w, n), n));
                } else if let Some(last) = self.windows.last_mut() {
                    *last = merge_windows(last, &w, 1);
                } else {
                    self.push(w);
                }
            } else {
                self.push(w);
            }
        }
        if let Some((w, _)) = self.pending.take() {
            self.windows.push(w);
        }
    }
}

/// Merges window `b` into `a`, where `a` already holds `n` raw windows and `b`
/// as many or fewer: counts add; percentiles are averaged weighted by requests
/// (an approximation: the exact ones are in latency.hlog).
fn merge_windows(a: &SoakWindow, b: &SoakWindow, _n: u64) -> SoakWindow {
    let requests = a.requests + b.requests;
    let weight = |x: f64, y: f64| {
        if requests == 0 {
            (x + y) / 2.0
        } else {
            (x * a.requests as f64 + y * b.requests as f64) / requests as f64
        }
    };
    let duration_s = a.duration_s + b.duration_s;
    SoakWindow {
        start_s: a.start_s,
        duration_s,
        requests,
        errors: a.errors + b.errors,
        error_rate: if requests > 0 {
            (a.errors + b.errors) as f64 / requests as f64
        } else {
            0.0
        },
        rps: requests as f64 / duration_s.max(1e-9),
        p50_ms: weight(a.p50_ms, b.p50_ms),
        p99_ms: weight(a.p99_ms, b.p99_ms),
        max_ms: a.max_ms.max(b.max_ms),
        rss_bytes: b.rss_bytes.or(a.rss_bytes),
        fds: b.fds.or(a.fds),
        connections: b.connections,
    }
}

fn median_u64(values: &VecDeque<u64>) -> u64 {
    let mut v: Vec<u64> = values.iter().copied().collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Observer for Aggregator {
    fn interval(&mut self, r: &IntervalReport<'_>) {
        let s = r.stats;
        // Stall bookkeeping: slow = beyond a threshold from the running median.
        if !s.latency.is_empty() {
            self.recent_p50.push_back(s.latency.value_at_quantile(0.5));
            if self.recent_p50.len() > BASELINE_SECONDS {
                self.recent_p50.pop_front();
            }
            self.max_ms = self.max_ms.max(s.latency.max() as f64 / 1000.0);
        }
        let threshold = stall_threshold_us(median_u64(&self.recent_p50));
        self.threshold_us = threshold;
        let slow = if s.latency.is_empty() || s.latency.max() <= threshold {
            0
        } else {
            s.latency.count_between(threshold + 1, s.latency.max())
        };
        // A second's count_between includes values equivalent to threshold+1; fine at 3 digits.
        self.seconds.push_back(SecondCounts {
            requests: s.latency.len(),
            slow,
        });
        if self.seconds.len() > MAX_SECONDS {
            self.seconds.pop_front();
            self.seconds_dropped += 1;
        }
        // Windows.
        self.hist
            .add(&s.latency)
            .expect("auto-resizing histograms merge");
        self.requests += s.requests;
        self.errors += s.errors.total();
        self.window_len_s += r.length_s;
        self.connections = r.connections as u64;
        if self.window_len_s + 1e-6 >= self.window_s {
            self.close_window();
        }
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: SoakArgs) -> Result<i32, Failure> {
    let Some(rate) = args.rate else {
        return Err(Failure::Usage(
            "soak needs --rate RATE: the constant offered rate (e.g. --rate 200)".into(),
        ));
    };
    if args.window < Duration::from_secs(1) {
        return Err(Failure::Usage(
            "--window must be at least 1s (statistics come once a second)".into(),
        ));
    }
    if args.window > args.duration {
        return Err(Failure::Usage(format!(
            "--window {:?} is longer than --duration {:?}",
            args.window, args.duration
        )));
    }
    if !(args.alpha > 0.0 && args.alpha < 0.5) {
        return Err(Failure::Usage("--alpha must be between 0 and 0.5".into()));
    }
    let load = LoadArgs {
        rate: Some(rate),
        arrival: args.arrival,
        duration: Some(args.duration),
        warmup: args.warmup,
        max_connections: args.max_connections,
        ..LoadArgs::default()
    };
    let plan = args::plan(&args.request, &args.connection, &load).map_err(Failure::Usage)?;
    let watch = Watch::start(&args.watch, args.out.as_deref())?;
    let stop = StopSignal::new();
    signals::stop_on_signals(&stop);

    let mut aggregator = Aggregator::new(args.window, watch.as_ref().map(Watch::latest_handle));
    let mut done = {
        let mut observer = ArmOnStart {
            watch: watch.as_ref(),
            inner: Some(&mut aggregator),
        };
        crate::run_cmd::execute_with(
            &plan,
            args.out.as_deref(),
            args.quiet || args.json,
            false,
            &stop,
            Some(&mut observer),
        )?
    };
    aggregator.finish();
    if let Some(w) = watch {
        let resources = w.finish(done.result.measured.requests);
        crate::watch::attach(&mut done, args.out.as_deref(), resources)?;
    }
    let report = analyse(&args, &aggregator, done.summary);
    let json = serde_json::to_string_pretty(&report).expect("reports serialize");
    if let Some(dir) = &args.out {
        let path = dir.join("soak.json");
        std::fs::write(&path, &json)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
        crate::html_out::report_or_warn(crate::html_out::write_soak_report(dir, &report));
    }
    if args.json {
        crate::print_stdout(&format!("{json}\n"));
    } else {
        crate::print_stdout(&render_soak(&report, true));
    }
    Ok(if report.interrupted {
        EXIT_INTERRUPTED
    } else if args.fail_on_drift && !report.stable {
        1
    } else {
        0
    })
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.01 {
        "p < 0.01".into()
    } else {
        format!("p = {}", fmt_p(p))
    }
}

/// Minimum windows for a trend test.
pub const MIN_WINDOWS: usize = 6;

fn analyse(
    args: &SoakArgs,
    agg: &Aggregator,
    summary: chokepoint_report::RunSummary,
) -> SoakReport {
    let mut notes = Vec::new();
    let windows = &agg.windows;
    // Windows shorter than half the nominal one (the last, partial) weigh too little to trust.
    let full: Vec<&SoakWindow> = windows
        .iter()
        .filter(|w| w.duration_s >= 0.5 * args.window.as_secs_f64() * agg.merge as f64)
        .collect();
    let hours = |w: &SoakWindow| (w.start_s + w.duration_s / 2.0) / 3600.0;
    let run_hours = summary.duration_s / 3600.0;
    let mut drift = Vec::new();
    let mut verdicts = Vec::new();
    if full.len() < MIN_WINDOWS {
        notes.push(format!(
            "only {} full windows: drift needs at least {MIN_WINDOWS} (a longer --duration or a shorter --window)",
            full.len()
        ));
    }
    type Metric<'m> = (&'m str, &'m str, Box<dyn Fn(&SoakWindow) -> Option<f64>>);
    let metrics: Vec<Metric<'_>> = vec![
        (
            "p99_ms",
            "ms",
            Box::new(|w: &SoakWindow| (w.requests > 0).then_some(w.p99_ms)),
        ),
        (
            "error_rate",
            "fraction",
            Box::new(|w: &SoakWindow| (w.requests > 0).then_some(w.error_rate)),
        ),
        (
            "rss_bytes",
            "bytes",
            Box::new(|w: &SoakWindow| w.rss_bytes.map(|v| v as f64)),
        ),
        // Each of our own connections holds an fd in a local target: only the rest can leak.
        (
            "fds",
            "fds",
            Box::new(|w: &SoakWindow| w.fds.map(|v| v.saturating_sub(w.connections) as f64)),
        ),
    ];
    for (metric, unit, value) in &metrics {
        let (x, y): (Vec<f64>, Vec<f64>) = full
            .iter()
            .filter_map(|w| value(w).map(|v| (hours(w), v)))
            .unzip();
        if y.len() < MIN_WINDOWS {
            continue;
        }
        let Some(t) = trend(&x, &y, 0.95) else {
            continue;
        };
        let mut sorted = y.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let change = t.slope * run_hours;
        // Significant and large enough to matter over this run.
        let material = match *metric {
            "p99_ms" => change >= (0.1 * median).max(1.0),
            "error_rate" => change >= 0.001,
            "rss_bytes" => change >= (0.05 * median).max(8.0 * 1024.0 * 1024.0),
            // Pools (keep-alive clients, accepted connections) grow in steps and
            // stop; a leak keeps going. A short soak cannot tell a small rise apart.
            _ => change >= (0.25 * median).max(16.0),
        };
        let significant = t.p_value < args.alpha && material;
        let verdict = significant.then(|| match *metric {
            "p99_ms" => format!(
                "P99 creeps {:+.0} ms/hour ({}; {} → {} over this run)",
                t.slope,
                p_text(t.p_value),
                fmt_ms(t.intercept + t.slope * x[0]),
                fmt_ms(t.intercept + t.slope * x[x.len() - 1])
            ),
            "error_rate" => format!(
                "error rate climbs {:+.2} percentage points/hour ({})",
                t.slope * 100.0,
                p_text(t.p_value)
            ),
            "rss_bytes" => format!(
                "RSS grows {}/hour: probable leak ({}; +{} over this run)",
                fmt_bytes(t.slope),
                p_text(t.p_value),
                fmt_bytes(change)
            ),
            _ => format!(
                "open file descriptors grow {:.0}/hour: probable descriptor leak ({}; +{change:.0} over this run)",
                t.slope,
                p_text(t.p_value)
            ),
        });
        if let Some(v) = &verdict {
            verdicts.push(v.clone());
        } else if t.p_value < args.alpha && change < 0.0 && *metric == "p99_ms" {
            notes.push(format!(
                "P99 improves over the run ({:+.0} ms/hour, {})",
                t.slope,
                p_text(t.p_value)
            ));
        }
        drift.push(Drift {
            metric: (*metric).into(),
            unit: (*unit).into(),
            points: t.n,
            slope_per_hour: t.slope,
            slope_ci_per_hour: [t.slope_low, t.slope_high],
            p_value: t.p_value,
            tau: t.tau,
            median,
            change_over_run: change,
            significant,
            verdict,
        });
    }
    if summary.resources.is_none() {
        notes.push("target not probed: RSS and fd drift need --watch-pid".into());
    }

    // Stalls.
    let seconds: Vec<SecondCounts> = agg.seconds.iter().copied().collect();
    let found = find_stalls(&seconds, &StallConfig::default());
    let offset = agg.seconds_dropped as usize;
    let mut stalls = StallReport {
        threshold_ms: agg.threshold_us as f64 / 1000.0,
        seconds: found.seconds,
        stall_seconds: found.stall_seconds,
        events: found.events,
        periodic: found.periodic,
        period_s: found.period_s(),
        gap_cv: found.gap_cv,
        in_phase: found.in_phase,
        slow_fraction_in_stalls: found.slow_fraction_in_stalls,
        first_events_s: found
            .event_starts
            .iter()
            .take(20)
            .map(|s| s + offset)
            .collect(),
        verdict: None,
    };
    let share = if found.seconds > 0 {
        found.stall_seconds as f64 / found.seconds as f64
    } else {
        0.0
    };
    let evidence = format!(
        "{} events in {} of {} seconds; {:.0}% of the requests in those seconds slower than {} (max {})",
        found.events,
        found.stall_seconds,
        found.seconds,
        found.slow_fraction_in_stalls * 100.0,
        fmt_ms(stalls.threshold_ms),
        fmt_ms(agg.max_ms)
    );
    if found.periodic {
        let v = if found.every_second {
            format!("periodic stalls in nearly every second (period ≤ 1 s): {evidence}")
        } else if found.regular_gaps {
            format!(
                "periodic stalls every {:.1} s (gaps vary by {:.0}%): {evidence}",
                found.median_gap_s.unwrap_or(0.0),
                found.gap_cv.unwrap_or(0.0) * 100.0
            )
        } else {
            format!(
                "periodic stalls every {:.1} s ({} of {} events on that beat; the others merged with noise or went unseen): {evidence}",
                found.median_gap_s.unwrap_or(0.0),
                found.in_phase,
                found.events
            )
        };
        stalls.verdict = Some(v.clone());
        verdicts.push(v);
    } else if share >= 0.1 {
        // Not a finding of its own: on a shared machine, outside CPU contention
        // makes slow seconds too. Periodicity is what points at the target.
        let v = format!("irregular slow seconds, not periodic: {evidence}");
        notes.push(v.clone());
        stalls.verdict = Some(v);
    } else if found.events > 0 {
        stalls.verdict = Some(format!("isolated slow seconds, not periodic: {evidence}"));
    }
    if agg.seconds_dropped > 0 {
        notes.push(format!(
            "stall detection covers the last {MAX_SECONDS} seconds of the run"
        ));
    }
    if agg.merge > 1 {
        notes.push(format!(
            "windows merged {}× to stay within {MAX_WINDOWS} (merged percentiles are request-weighted means; exact ones are in latency.hlog)",
            agg.merge
        ));
    }

    let stable = verdicts.is_empty();
    let checked: Vec<&str> = drift.iter().map(|d| d.metric.as_str()).collect();
    let verdict = if stable {
        format!(
            "stable: no significant drift in {} and no periodic stalls",
            if checked.is_empty() {
                "any metric (too few windows)".to_string()
            } else {
                checked.join(", ")
            }
        )
    } else {
        verdicts.join("; ")
    };
    SoakReport {
        schema: SOAK_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        target: summary.target.clone(),
        rate: args.rate.unwrap_or(0.0),
        window_s: args.window.as_secs_f64(),
        duration_s: summary.duration_s,
        interrupted: summary.interrupted,
        summary,
        windows: agg.windows.clone(),
        windows_merged: agg.merge,
        drift,
        stalls,
        verdicts,
        verdict,
        stable,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(i: u64) -> SoakWindow {
        SoakWindow {
            start_s: i as f64,
            duration_s: 1.0,
            requests: 10,
            p99_ms: i as f64,
            max_ms: i as f64,
            rss_bytes: Some(i),
            ..SoakWindow::default()
        }
    }

    #[test]
    fn windows_stay_bounded_by_pairwise_merging() {
        let mut agg = Aggregator::new(Duration::from_secs(1), None);
        for i in 0..(MAX_WINDOWS as u64 * 5) {
            agg.push(window(i));
        }
        agg.finish();
        assert!(agg.windows.len() <= MAX_WINDOWS, "{}", agg.windows.len());
        assert_eq!(agg.merge, 8);
        let total: u64 = agg.windows.iter().map(|w| w.requests).sum();
        assert_eq!(total, MAX_WINDOWS as u64 * 5 * 10);
        // Time stays ordered and contiguous.
        for pair in agg.windows.windows(2) {
            assert!((pair[0].start_s + pair[0].duration_s - pair[1].start_s).abs() < 1e-9);
        }
        let last = agg.windows.last().unwrap();
        assert_eq!(last.rss_bytes, Some(MAX_WINDOWS as u64 * 5 - 1));
    }

    #[test]
    fn a_short_tail_joins_the_last_window() {
        let mut agg = Aggregator::new(Duration::from_secs(5), None);
        for i in 0..3 {
            agg.push(window(i));
        }
        // The run's last report: 50 ms after the third window closed.
        agg.window_len_s = 0.05;
        agg.requests = 1;
        agg.finish();
        assert_eq!(agg.windows.len(), 3);
        let last = agg.windows.last().unwrap();
        assert!((last.duration_s - 1.05).abs() < 1e-9, "{last:?}");
        assert_eq!(last.requests, 11);
        // A tail of half a window or more stands as a window of its own.
        let mut agg = Aggregator::new(Duration::from_secs(2), None);
        agg.push(window(0));
        agg.window_len_s = 1.0;
        agg.finish();
        assert_eq!(agg.windows.len(), 2);
    }

    #[test]
    fn stall_threshold_is_relative_with_a_floor() {
        assert_eq!(stall_threshold_us(2_000), 22_000);
        assert_eq!(stall_threshold_us(50_000), 200_000);
    }
}
