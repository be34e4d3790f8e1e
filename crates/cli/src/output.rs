//! Writing a run as it happens: `latency.hlog` and `timeseries.csv` appended
//! and flushed every second, plus the live progress line on a terminal.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chokepoint_engine::{IntervalReport, Observer, Stats};
use chokepoint_report::text::fmt_ms;
use chokepoint_report::timeseries::{self, Row};
use chokepoint_stats::{hlog, summarize};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The files of a run directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// Interval log.
pub const HLOG_FILE: &str = "latency.hlog";
/// Per-second time series.
pub const TIMESERIES_FILE: &str = "timeseries.csv";

/// Runs longer than this many seconds keep no interval histograms in memory.
pub const MAX_KEPT_INTERVALS: usize = 600;

/// Receives intervals from the engine and writes them out.
pub struct RunOutput {
    dir: Option<PathBuf>,
    hlog: Option<BufWriter<File>>,
    csv: Option<BufWriter<File>>,
    progress: Option<ProgressBar>,
    last_rps: f64,
    /// Latency histogram of every measured second, for in-process comparisons
    /// (bounded: dropped once a run outgrows `MAX_KEPT_INTERVALS` seconds).
    intervals: Vec<chokepoint_stats::Histogram>,
    keep_intervals: bool,
    /// The first write error; reported at the end instead of interrupting the run.
    pub io_error: Option<String>,
}

impl RunOutput {
    /// Prepares output: creates `dir` (when given) and the progress display (on a terminal, unless quiet).
    pub fn new(
        dir: Option<&Path>,
        quiet: bool,
        expected: Option<Duration>,
    ) -> Result<Self, String> {
        let mut out = RunOutput {
            dir: dir.map(Path::to_path_buf),
            hlog: None,
            csv: None,
            progress: None,
            last_rps: 0.0,
            intervals: Vec::new(),
            keep_intervals: false,
            io_error: None,
        };
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
            let open = |name: &str| {
                File::create(dir.join(name))
                    .map(BufWriter::new)
                    .map_err(|e| format!("--out {}: cannot create {name}: {e}", dir.display()))
            };
            let mut csv = open(TIMESERIES_FILE)?;
            csv.write_all(timeseries::HEADER.as_bytes())
                .and_then(|_| csv.flush())
                .map_err(|e| format!("--out {}: {e}", dir.display()))?;
            out.csv = Some(csv);
            out.hlog = Some(open(HLOG_FILE)?);
        }
        if !quiet && std::io::stderr().is_terminal() {
            let bar = match expected {
                Some(d) => ProgressBar::with_draw_target(
                    Some(d.as_millis() as u64),
                    ProgressDrawTarget::stderr(),
                ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if expected.is_some() {
                "{spinner} {elapsed:>4} / {len_s:>4} [{bar:30}] {msg}"
            } else {
                "{spinner} {elapsed:>4} {msg}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "len_s",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}s", state.len().unwrap_or(0) / 1000);
                    },
                )
                .progress_chars("=> ");
            bar.set_style(style);
            out.progress = Some(bar);
        }
        Ok(out)
    }

    fn note_error(&mut self, e: std::io::Error) {
        if self.io_error.is_none() {
            let dir = self
                .dir
                .as_deref()
                .map_or_else(String::new, |d| d.display().to_string());
            self.io_error = Some(format!("writing to {dir}: {e}"));
        }
    }

    /// Keeps every measured second's latency histogram in memory (for
    /// in-process comparisons of short runs; off by default).
    pub fn keep_intervals(&mut self) {
        self.keep_intervals = true;
    }

    /// The per-second latency histograms kept (empty when the run outgrew the bound).
    pub fn take_intervals(&mut self) -> Vec<chokepoint_stats::Histogram> {
        std::mem::take(&mut self.intervals)
    }

    /// Writes `summary.json` (when writing a directory) and clears the progress line.
    pub fn finish(&mut self, summary_json: &str) -> Result<(), String> {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        for w in [self.hlog.as_mut(), self.csv.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.flush() {
                self.io_error.get_or_insert_with(|| e.to_string());
            }
        }
        if let Some(dir) = &self.dir {
            std::fs::write(dir.join(SUMMARY_FILE), summary_json).map_err(|e| {
                format!("--out {}: cannot write {SUMMARY_FILE}: {e}", dir.display())
            })?;
        }
        match self.io_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Observer for RunOutput {
    fn measured_start(&mut self, wall: SystemTime) {
        let epoch_s = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Some(h) = self.hlog.as_mut() {
            let header = hlog::header(epoch_s, chokepoint_engine::USER_AGENT);
            if let Err(e) = h.write_all(header.as_bytes()).and_then(|_| h.flush()) {
                self.note_error(e);
            }
        }
    }

    fn interval(&mut self, r: &IntervalReport<'_>) {
        let s = r.stats;
        let latency = summarize(&s.latency);
        let rps = if r.length_s > 0.0 {
            s.requests as f64 / r.length_s
        } else {
            0.0
        };
        self.last_rps = rps;
        let row = Row {
            second: r.start_s,
            requests: s.requests,
            ok: s.ok,
            errors: s.errors.total(),
            rps,
            p50_ms: latency.p50_ms,
            p90_ms: latency.p90_ms,
            p99_ms: latency.p99_ms,
            max_ms: latency.max_ms,
            in_flight: r.in_flight,
        };
        if !self.keep_intervals {
        } else if r.index < MAX_KEPT_INTERVALS as u64 {
            self.intervals.push(s.latency.clone());
        } else {
            // Long runs are compared from their interval log on disk instead.
            self.intervals = Vec::new();
        }
        let line = hlog::interval_line(&s.latency, r.start_s, r.length_s);
        let mut result = Ok(());
        if let Some(h) = self.hlog.as_mut() {
            result = result.and(h.write_all(line.as_bytes()).and_then(|_| h.flush()));
        }
        if let Some(c) = self.csv.as_mut() {
            result = result.and(c.write_all(row.to_csv().as_bytes()).and_then(|_| c.flush()));
        }
        if let Err(e) = result {
            self.note_error(e);
        }
    }

    fn progress(&mut self, elapsed: Duration, totals: &Stats) {
        if let Some(bar) = &self.progress {
            bar.set_position(elapsed.as_millis() as u64);
            let p99 = if totals.latency.is_empty() {
                "-".to_string()
            } else {
                fmt_ms(totals.latency.value_at_quantile(0.99) as f64 / 1000.0)
            };
            bar.set_message(format!(
                "{:.0} req/s · {} errors · p99 {p99}",
                self.last_rps,
                totals.errors.total()
            ));
        }
    }
}
