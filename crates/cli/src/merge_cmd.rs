//! `chokepoint merge DIR... --out DIR`: combines shard run directories into
//! one, exactly. Interval histograms of the same wall-clock second add up and
//! every percentile is recomputed from merged histograms (never averaged);
//! counts add up. Before merging it checks that the shards belong together
//! (same scenario fingerprint and shard count, every index once) and says
//! what is missing. It accepts truncated logs and shards that were killed
//! (only `shard.json`, `latency.hlog` and `timeseries.csv`), and interval
//! logs written by other HdrHistogram implementations (Java, Python).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chokepoint_report::{
    LatencyMs, MergeSummary, RequestSummary, RunSummary, WarmupSummary, RUN_SCHEMA,
};
use chokepoint_stats::{hlog, new_histogram, summarize, Histogram};
use clap::Args;
use hdrhistogram::serialization::Deserializer;

use crate::output::{HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE};
use crate::shard::{read_card, ShardCard, SHARD_FILE};
use crate::totals::{self, TOTALS_FILE};
use crate::Failure;

/// Flags of `chokepoint merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard run directories (`run --shard I/N --out DIR`), or a directory
    /// holding them as subdirectories.
    #[arg(value_name = "DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// Write the merged run directory here (summary.json, latency.hlog, timeseries.csv, totals.hlog).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Merge even when the runs are not all the shards of one test (missing
    /// shards, other scenarios, plain runs or bare interval logs); the
    /// summary's `merged.notes` say what did not match.
    #[arg(long)]
    force: bool,
    /// Print the merged summary JSON on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// Wait up to DUR for every shard's summary.json before merging (the
    /// Kubernetes merge Job starts with the shards); then merge what is there.
    #[arg(long, value_name = "DUR", value_parser = crate::units::parse_duration)]
    wait: Option<std::time::Duration>,
}

/// Seconds in a year: interval timestamps below StartTime minus this are
/// relative (the HdrHistogram log convention).
const YEAR_S: f64 = 365.0 * 24.0 * 3600.0;

/// One input directory.
struct Source {
    dir: PathBuf,
    summary: Option<RunSummary>,
    card: Option<ShardCard>,
}

impl Source {
    fn shown(&self) -> String {
        self.dir.display().to_string()
    }

    /// `(index, count, fingerprint)` when the run was a shard.
    fn identity(&self) -> Option<(u32, u32, String)> {
        if let Some(s) = &self.summary {
            if let Some(shard) = &s.shard {
                return Some((
                    shard.index,
                    shard.count,
                    s.scenario_fingerprint.clone().unwrap_or_default(),
                ));
            }
        }
        self.card
            .as_ref()
            .map(|c| (c.index, c.count, c.fingerprint.clone()))
    }
}

/// One interval of a log, in absolute (epoch) seconds.
struct Entry {
    abs_start: f64,
    length: f64,
    histogram: Histogram,
}

/// Streams the intervals of an HdrHistogram log (any writer): headers
/// (`StartTime`, `BaseTime`), untagged interval lines, a truncated last line.
struct LogReader {
    path: PathBuf,
    reader: BufReader<File>,
    line_no: usize,
    start: Option<f64>,
    base: Option<f64>,
    deserializer: Deserializer,
    done: bool,
    /// The last line was cut short (a killed writer) and was left out.
    truncated: bool,
    skipped_tagged: usize,
}

fn header_seconds(line: &str, key: &str) -> Option<f64> {
    let rest = line.strip_prefix("#[")?.trim_start().strip_prefix(key)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

impl LogReader {
    fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{}: not found (every shard writes its interval log there)",
                    path.display()
                )
            } else {
                format!("{}: cannot read: {e}", path.display())
            }
        })?;
        Ok(LogReader {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line_no: 0,
            start: None,
            base: None,
            deserializer: Deserializer::new(),
            done: false,
            truncated: false,
            skipped_tagged: 0,
        })
    }

    fn next(&mut self) -> Result<Option<Entry>, String> {
        let mut line = String::new();
        while !self.done {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(|e| {
                format!(
                    "{}:{}: cannot read: {e}",
                    self.path.display(),
                    self.line_no + 1
                )
            })?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_no += 1;
            let complete = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() || text.starts_with('"') {
                continue;
            }
            if text.starts_with('#') {
                if let Some(s) = header_seconds(text, "StartTime") {
                    self.start = Some(s);
                } else if let Some(b) = header_seconds(text, "BaseTime") {
                    self.base = Some(b);
                }
                continue;
            }
            if text.starts_with("Tag=") {
                self.skipped_tagged += 1;
                continue;
            }
            match self.parse_interval(text) {
                Ok(entry) => return Ok(Some(entry)),
                Err(_) if !complete => {
                    self.truncated = true;
                    self.done = true;
                }
                Err(what) => {
                    return Err(format!("{}:{}: {what}", self.path.display(), self.line_no))
                }
            }
        }
        Ok(None)
    }

    fn parse_interval(&mut self, text: &str) -> Result<Entry, String> {
        let mut fields = text.splitn(4, ',');
        let mut number = |name: &str| {
            fields
                .next()
                .and_then(|f| f.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("not an interval line (bad {name})"))
        };
        let timestamp = number("start timestamp")?;
        let length = number("interval length")?;
        let _max = number("interval max")?;
        let payload = fields.next().ok_or("not an interval line (no histogram)")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|e| format!("bad base64: {e}"))?;
        // Checked decoding: a header may not make the reader allocate gigabytes.
        let histogram: Histogram = hlog::decode_histogram(&bytes, &mut self.deserializer)?;
        // The HdrHistogram convention: without StartTime the first timestamp
        // is the start; without BaseTime, timestamps more than a year before
        // the start are relative to it, others absolute.
        let start = *self.start.get_or_insert(timestamp);
        let base = *self.base.get_or_insert(if timestamp < start - YEAR_S {
            start
        } else {
            0.0
        });
        Ok(Entry {
            abs_start: base + timestamp,
            length,
            histogram,
        })
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: MergeArgs) -> Result<i32, Failure> {
    if let Some(limit) = args.wait {
        wait_for_shards(&args.dirs, &args.out, limit);
    }
    let merged = merge(&args.dirs, &args.out, args.force).map_err(Failure::Usage)?;
    let json = serde_json::to_string_pretty(&merged).expect("summaries serialize");
    if args.json {
        crate::print_stdout(&format!("{json}\n"));
    } else {
        if let Some(m) = &merged.merged {
            let mut head = format!(
                "merged {} run(s) into {} (measured windows started within {:.0} ms)\n",
                m.sources.len(),
                args.out.display(),
                m.start_spread_ms
            );
            for note in &m.notes {
                head.push_str(&format!("note: {note}\n"));
            }
            head.push('\n');
            crate::print_stdout(&head);
        }
        crate::print_stdout(&chokepoint_report::text::render_run(&merged));
    }
    Ok(0)
}

/// Whether every shard of the test has finished (written its summary.json).
fn all_finished(dirs: &[PathBuf], out: &Path) -> Result<bool, String> {
    let sources = expand(dirs, out)?
        .iter()
        .map(|d| load_source(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut notes = Vec::new();
    Ok(sources.iter().all(|s| s.summary.is_some())
        && check_membership(&sources, false, &mut notes).is_ok())
}

/// Polls (every second, at most `limit`) until every shard has finished.
fn wait_for_shards(dirs: &[PathBuf], out: &Path, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    let mut next_note = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        if all_finished(dirs, out) == Ok(true) {
            return;
        }
        if std::time::Instant::now() >= next_note {
            eprintln!(
                "merge: waiting for every shard's summary.json (up to {})",
                humantime::format_duration(limit)
            );
            next_note += std::time::Duration::from_secs(60);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    eprintln!(
        "merge: waited {}; merging what is there",
        humantime::format_duration(limit)
    );
}

/// A directory written by `merge` (its summary has `merged`): an output, not a shard.
fn is_merged_run(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(SUMMARY_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("merged").is_some_and(|m| !m.is_null()))
}

fn looks_like_run(dir: &Path) -> bool {
    [SUMMARY_FILE, SHARD_FILE, HLOG_FILE]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The run directories named by the arguments: a directory that is not a
/// run itself stands for its subdirectories that are (minus `out`).
fn expand(dirs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>, String> {
    let out_canon = std::fs::canonicalize(out).ok();
    let mut list = Vec::new();
    for d in dirs {
        if !d.is_dir() {
            return Err(format!("{}: not a directory", d.display()));
        }
        if looks_like_run(d) {
            list.push(d.clone());
            continue;
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| format!("{}: cannot list: {e}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && looks_like_run(p))
            .filter(|p| std::fs::canonicalize(p).ok() != out_canon)
            .filter(|p| !is_merged_run(p))
            .collect();
        if children.is_empty() {
            return Err(format!(
                "{}: neither a run directory (summary.json, shard.json, latency.hlog) nor a directory of them",
                d.display()
            ));
        }
        children.sort();
        list.extend(children);
    }
    Ok(list)
}

fn load_source(dir: &Path) -> Result<Source, String> {
    let summary = if dir.join(SUMMARY_FILE).is_file() {
        Some(crate::rundir::open(dir)?.summary)
    } else {
        None
    };
    let card = read_card(dir)?;
    if summary.is_none() && card.is_none() && !dir.join(HLOG_FILE).is_file() {
        return Err(format!(
            "{}: no summary.json, shard.json or latency.hlog (not a run directory written by `chokepoint run --out`)",
            dir.display()
        ));
    }
    Ok(Source {
        dir: dir.to_path_buf(),
        summary,
        card,
    })
}

/// Checks that the sources are all the shards of one test. Problems are
/// errors, or notes with `force`.
fn check_membership(
    sources: &[Source],
    force: bool,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let ids: Vec<Option<(u32, u32, String)>> = sources.iter().map(Source::identity).collect();
    for (s, id) in sources.iter().zip(&ids) {
        if id.is_none() {
            problems.push(format!(
                "{}: not a shard (run it with --shard I/N)",
                s.shown()
            ));
        }
    }
    let shards: Vec<(&Source, u32, u32, &str)> = sources
        .iter()
        .zip(&ids)
        .filter_map(|(s, id)| id.as_ref().map(|(i, n, f)| (s, *i, *n, f.as_str())))
        .collect();
    if let Some(&(first, _, count, fingerprint)) = shards.first() {
        for &(s, i, n, f) in &shards[1..] {
            if n != count {
                problems.push(format!(
                    "{} is shard {i}/{n} but {} is one of {count}: shards of different tests",
                    s.shown(),
                    first.shown()
                ));
            } else if f != fingerprint {
                problems.push(format!(
                    "{} has scenario fingerprint {f} but {} has {fingerprint}: target, requests, load or limits differ",
                    s.shown(),
                    first.shown()
                ));
            }
        }
        let mut seen: BTreeMap<u32, &Source> = BTreeMap::new();
        for &(s, i, _, _) in &shards {
            if let Some(other) = seen.insert(i, s) {
                problems.push(format!(
                    "shard {i}/{count} appears twice: {} and {}",
                    other.shown(),
                    s.shown()
                ));
            }
        }
        let missing: Vec<String> = (0..count)
            .filter(|i| !seen.contains_key(i))
            .map(|i| i.to_string())
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "shard{} {} of {count} {} missing (have {} of fingerprint {fingerprint})",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                seen.keys()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    if force {
        notes.extend(problems);
        return Ok(());
    }
    Err(format!(
        "{}{}",
        problems.join("; "),
        "; pass --force to merge anyway"
    ))
}

/// One row of `timeseries.csv`: `(second, requests, ok, errors, in_flight)`.
type CsvCounts = (f64, u64, u64, u64, u64);

/// Per-second counts from a run's `timeseries.csv`.
fn read_timeseries(dir: &Path) -> Result<Option<Vec<CsvCounts>>, String> {
    let path = dir.join(TIMESERIES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("{}:1: missing column `{name}`", path.display()))
    };
    let cols = [
        col("second")?,
        col("requests")?,
        col("ok")?,
        col("errors")?,
        col("in_flight")?,
    ];
    let complete = text.ends_with('\n');
    let n = text.lines().count();
    let mut rows = Vec::new();
    for (idx, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: usize| fields.get(cols[i]).map(|f| f.trim());
        let parsed = (|| {
            Some((
                get(0)?.parse::<f64>().ok().filter(|v| v.is_finite())?,
                get(1)?.parse().ok()?,
                get(2)?.parse().ok()?,
                get(3)?.parse().ok()?,
                get(4)?.parse().ok()?,
            ))
        })();
        match parsed {
            Some(row) => rows.push(row),
            None if idx + 1 == n && !complete => break,
            None => {
                return Err(format!(
                    "{}:{}: not a time-series row",
                    path.display(),
                    idx + 1
                ))
            }
        }
    }
    Ok(Some(rows))
}

fn add(into: &mut Histogram, h: &Histogram, what: &str) -> Result<(), String> {
    into.add(h)
        .map_err(|e| format!("{what}: cannot add the histogram: {e:?}"))
}

fn latency(h: &Histogram) -> LatencyMs {
    summarize(h).into()
}

/// RFC 3339 of a log's start time. The time comes from the logs' headers and
/// may be anything: clamped to what RFC 3339 can write (1970 to year 9999),
/// since `Duration::from_secs_f64`, `SystemTime + Duration` and humantime's
/// `Display` all panic beyond that.
fn epoch_to_rfc3339(epoch_s: f64) -> String {
    const LAST_S: f64 = 253_402_300_799.0; // 9999-12-31T23:59:59Z
    let s = if epoch_s.is_nan() {
        0.0
    } else {
        epoch_s.clamp(0.0, LAST_S)
    };
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Per merged second: what the time series needs.
#[derive(Default, Clone, Copy)]
struct Second {
    length: f64,
    has_histogram: bool,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    samples: u64,
    requests: u64,
    ok: u64,
    errors: u64,
    in_flight: u64,
    has_counts: bool,
}

/// Merges `dirs` into `out`; returns the merged summary (also written there).
pub fn merge(dirs: &[PathBuf], out: &Path, force: bool) -> Result<RunSummary, String> {
    let dirs = expand(dirs, out)?;
    let sources = dirs
        .iter()
        .map(|d| load_source(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut notes = Vec::new();
    check_membership(&sources, force, &mut notes)?;

    // Open every log and peek at its first interval: the shards' origins.
    let mut readers = Vec::new();
    let mut peeks = Vec::new();
    let mut origins = Vec::new();
    for s in &sources {
        let mut r = LogReader::open(&s.dir.join(HLOG_FILE))?;
        let first = r.next()?;
        let origin = r
            .start
            .or(first.as_ref().map(|e| e.abs_start))
            .unwrap_or(f64::INFINITY);
        origins.push(origin);
        peeks.push(first);
        readers.push(r);
    }
    let base = origins
        .iter()
        .copied()
        .filter(|o| o.is_finite())
        .fold(f64::INFINITY, f64::min);
    if !base.is_finite() {
        return Err("no interval in any latency.hlog: nothing was measured".into());
    }
    let spread_ms = origins
        .iter()
        .filter(|o| o.is_finite())
        .map(|o| (o - base) * 1000.0)
        .fold(0.0, f64::max);
    let bucket_of = |e: &Entry| {
        ((e.abs_start - base) + e.length.min(1.0) / 2.0)
            .floor()
            .max(0.0) as i64
    };

    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let hlog_path = out.join(HLOG_FILE);
    let mut hlog_out = std::io::BufWriter::new(
        File::create(&hlog_path).map_err(|e| format!("{}: {e}", hlog_path.display()))?,
    );
    let write_err = |e: std::io::Error| format!("{}: {e}", hlog_path.display());
    hlog_out
        .write_all(
            hlog::header(
                base,
                concat!("chokepoint/", env!("CARGO_PKG_VERSION"), " merge"),
            )
            .as_bytes(),
        )
        .map_err(write_err)?;

    // A k-way merge by wall-clock second: logs are in time order, so memory
    // holds one interval per shard and one merged second, however long the run.
    let mut total = new_histogram();
    let mut per_source_samples = vec![0u64; sources.len()];
    let mut seconds: BTreeMap<i64, Second> = BTreeMap::new();
    let mut last_end = 0.0f64;
    while let Some(bucket) = peeks.iter().flatten().map(&bucket_of).min() {
        let mut h = new_histogram();
        let mut end = bucket as f64;
        for (i, reader) in readers.iter_mut().enumerate() {
            while let Some(e) = peeks[i].as_ref().filter(|e| bucket_of(e) == bucket) {
                add(&mut h, &e.histogram, &reader.path.display().to_string())?;
                per_source_samples[i] += e.histogram.len();
                end = end.max(e.abs_start - base + e.length);
                let next = reader.next()?;
                if let Some(n) = &next {
                    if bucket_of(n) < bucket {
                        return Err(format!(
                            "{}:{}: interval starts before the previous one (a log must be in time order)",
                            reader.path.display(),
                            reader.line_no
                        ));
                    }
                }
                peeks[i] = next;
            }
        }
        let length = (end - bucket as f64).clamp(0.0, 1.0);
        last_end = last_end.max(end);
        hlog_out
            .write_all(hlog::interval_line(&h, bucket as f64, length).as_bytes())
            .map_err(write_err)?;
        add(&mut total, &h, "merged log")?;
        let s = summarize(&h);
        seconds.insert(
            bucket,
            Second {
                length,
                has_histogram: true,
                p50: s.p50_ms,
                p90: s.p90_ms,
                p99: s.p99_ms,
                max: s.max_ms,
                samples: s.count,
                ..Second::default()
            },
        );
    }
    hlog_out.flush().map_err(write_err)?;
    for (r, s) in readers.iter().zip(&sources) {
        if r.truncated {
            notes.push(format!(
                "{}: the last line of latency.hlog was cut short (a killed shard?) and was left out",
                s.shown()
            ));
        }
        if r.skipped_tagged > 0 {
            notes.push(format!(
                "{}: {} tagged interval lines in latency.hlog were left out (only untagged lines are latency)",
                s.shown(),
                r.skipped_tagged
            ));
        }
    }

    // Counts, per source: from summary.json, or (killed shard) from the time
    // series, or (a bare log) from the histogram.
    let mut requests = 0u64;
    let mut ok = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut merged_rows: BTreeMap<i64, (u64, u64, u64, u64)> = BTreeMap::new();
    let mut duration_end = last_end;
    for (idx, s) in sources.iter().enumerate() {
        let offset = origins[idx] - base;
        let rows = read_timeseries(&s.dir)?;
        if let Some(rows) = &rows {
            for &(second, r, o, e, f) in rows {
                let bucket = (offset + second + 0.5).floor().max(0.0) as i64;
                let row = merged_rows.entry(bucket).or_default();
                row.0 += r;
                row.1 += o;
                row.2 += e;
                row.3 += f;
            }
        }
        match (&s.summary, &rows) {
            (Some(sum), _) => {
                requests += sum.requests;
                ok += sum.ok;
                for (k, v) in &sum.errors {
                    *errors.entry(k.clone()).or_default() += v;
                }
                duration_end = duration_end.max(offset + sum.duration_s);
                if per_source_samples[idx] != sum.latency_ms.count {
                    notes.push(format!(
                        "{}: latency.hlog holds {} latency samples but summary.json counts {} (a truncated log?); the merged latency is the logs'",
                        s.shown(),
                        per_source_samples[idx],
                        sum.latency_ms.count
                    ));
                }
            }
            (None, Some(rows)) => {
                let (r, o, e) = rows.iter().fold((0, 0, 0), |acc, row| {
                    (acc.0 + row.1, acc.1 + row.2, acc.2 + row.3)
                });
                requests += r;
                ok += o;
                if e > 0 {
                    *errors.entry("unknown".into()).or_default() += e;
                }
                notes.push(format!(
                    "{}: no summary.json (the shard was killed?): its counts come from timeseries.csv (error kinds unknown), its latency from latency.hlog",
                    s.shown()
                ));
            }
            (None, None) => {
                requests += per_source_samples[idx];
                ok += per_source_samples[idx];
                notes.push(format!(
                    "{}: a bare interval log: its {} samples count as successful requests",
                    s.shown(),
                    per_source_samples[idx]
                ));
            }
        }
    }
    for (bucket, (r, o, e, f)) in &merged_rows {
        let sec = seconds.entry(*bucket).or_default();
        sec.requests = *r;
        sec.ok = *o;
        sec.errors = *e;
        sec.in_flight = *f;
        sec.has_counts = true;
    }

    // The time series: one row per merged second.
    let csv_path = out.join(TIMESERIES_FILE);
    let mut csv = String::from(chokepoint_report::timeseries::HEADER);
    for (bucket, sec) in &seconds {
        let (r, o, e) = if sec.has_counts {
            (sec.requests, sec.ok, sec.errors)
        } else {
            (sec.samples, sec.samples, 0)
        };
        let length = if sec.has_histogram && sec.length > 0.0 {
            sec.length
        } else {
            1.0
        };
        csv.push_str(
            &chokepoint_report::timeseries::Row {
                second: *bucket as f64,
                requests: r,
                ok: o,
                errors: e,
                rps: r as f64 / length,
                p50_ms: sec.p50,
                p90_ms: sec.p90,
                p99_ms: sec.p99,
                max_ms: sec.max,
                in_flight: sec.in_flight,
            }
            .to_csv(),
        );
    }
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;

    // Whole-run histograms from the shards' totals.
    let mut merged_totals: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut without_totals = Vec::new();
    for s in &sources {
        match totals::read(&s.dir.join(TOTALS_FILE))? {
            Some(map) => {
                for (tag, h) in map {
                    add(
                        merged_totals.entry(tag).or_insert_with(new_histogram),
                        &h,
                        &s.shown(),
                    )?;
                }
            }
            None => without_totals.push(s.shown()),
        }
    }
    if !without_totals.is_empty() {
        notes.push(format!(
            "no totals.hlog in {}: service time, phases, schedule lag and per-request latency cover the other shards only",
            without_totals.join(", ")
        ));
    }
    let empty = new_histogram();
    let tag = |name: &str| merged_totals.get(name).unwrap_or(&empty);

    let summaries: Vec<&RunSummary> = sources.iter().filter_map(|s| s.summary.as_ref()).collect();
    let first = summaries.first().copied();
    let cards: Vec<&ShardCard> = sources.iter().filter_map(|s| s.card.as_ref()).collect();
    let sum_u = |f: fn(&RunSummary) -> u64| summaries.iter().map(|s| f(s)).sum::<u64>();
    let sum_opt = |f: fn(&RunSummary) -> Option<f64>| {
        let values: Vec<f64> = summaries.iter().filter_map(|s| f(s)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>())
    };
    let model = first
        .map(|s| s.model.clone())
        .or_else(|| cards.first().map(|c| c.model.clone()))
        .unwrap_or_else(|| "open".into());
    let mut rate_target = sum_opt(|s| s.rate_target);
    let mut concurrency = sum_opt(|s| s.concurrency.map(|c| c as f64)).map(|c| c as u64);
    for s in &sources {
        if let (None, Some(card)) = (&s.summary, &s.card) {
            if let Some(r) = card.rate_target {
                *rate_target.get_or_insert(0.0) += r;
            }
            if let Some(c) = card.concurrency {
                *concurrency.get_or_insert(0) += c;
            }
        }
    }
    for s in &summaries[..] {
        if first.is_some_and(|f| f.target != s.target || f.model != s.model) {
            notes.push(format!(
                "the runs differ in target or model ({} {} vs {} {})",
                s.target,
                s.model,
                first.map_or("", |f| f.target.as_str()),
                first.map_or("", |f| f.model.as_str())
            ));
            break;
        }
    }

    // By request name: counts from the summaries, latency from the totals.
    let mut by_request: BTreeMap<String, RequestSummary> = BTreeMap::new();
    for s in &summaries {
        for (name, r) in &s.by_request {
            let e = by_request.entry(name.clone()).or_default();
            e.requests += r.requests;
            e.ok += r.ok;
            for (k, v) in &r.errors {
                *e.errors.entry(k.clone()).or_default() += v;
            }
        }
    }
    for (name, r) in &mut by_request {
        r.latency_ms = latency(tag(&totals::request_tag(name)));
    }

    let warmup = {
        let with: Vec<&WarmupSummary> =
            summaries.iter().filter_map(|s| s.warmup.as_ref()).collect();
        (!with.is_empty()).then(|| {
            let mut w = WarmupSummary {
                duration_s: with.iter().map(|w| w.duration_s).fold(0.0, f64::max),
                latency_ms: latency(tag("warmup")),
                ..WarmupSummary::default()
            };
            for x in &with {
                w.requests += x.requests;
                w.ok += x.ok;
                for (k, v) in &x.errors {
                    *w.errors.entry(k.clone()).or_default() += v;
                }
            }
            w
        })
    };

    let duration_s = duration_end.max(0.0);
    let throughput_rps = if duration_s > 0.0 {
        requests as f64 / duration_s
    } else {
        0.0
    };
    let service = latency(tag("service"));
    let error_count: u64 = errors.values().sum();
    let fingerprint = sources
        .iter()
        .find_map(|s| s.identity().map(|(_, _, f)| f))
        .filter(|f| !f.is_empty());
    // Slowest trace ids: the shards' lists interleaved (each is slowest first).
    let mut slow_trace_ids = Vec::new();
    let lists: Vec<&Vec<String>> = summaries.iter().map(|s| &s.slow_trace_ids).collect();
    for i in 0..lists.iter().map(|l| l.len()).max().unwrap_or(0) {
        for l in &lists {
            if let Some(id) = l.get(i) {
                if slow_trace_ids.len() < chokepoint_engine::SLOW_TRACES_KEPT {
                    slow_trace_ids.push(id.clone());
                }
            }
        }
    }
    let merged = RunSummary {
        schema: RUN_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        target: first
            .map(|s| s.target.clone())
            .or_else(|| cards.first().map(|c| c.target.clone()))
            .unwrap_or_default(),
        model: model.clone(),
        rate_target: if model == "open" { rate_target } else { None },
        concurrency: if model == "closed" { concurrency } else { None },
        arrival: first.and_then(|s| s.arrival.clone()),
        max_connections: summaries
            .iter()
            .filter_map(|s| s.max_connections)
            .reduce(|a, b| a + b),
        started_at: epoch_to_rfc3339(base),
        duration_s,
        requests,
        ok,
        errors,
        dropped: sum_u(|s| s.dropped),
        error_rate: if requests > 0 {
            error_count as f64 / requests as f64
        } else {
            0.0
        },
        throughput_rps,
        latency_ms: latency(&total),
        service_time_ms: service,
        phases_ms: ["connect", "tls", "ttfb", "receive"]
            .iter()
            .map(|p| (p.to_string(), latency(tag(p))))
            .collect(),
        schedule_lag_ms: latency(tag("schedule_lag")),
        by_request,
        mean_in_flight: throughput_rps * service.mean / 1000.0,
        slow_trace_ids,
        interrupted: summaries.iter().any(|s| s.interrupted)
            || sources.iter().any(|s| s.summary.is_none()),
        warmup,
        bytes_received: sum_u(|s| s.bytes_received),
        bytes_sent: sum_u(|s| s.bytes_sent),
        connections_opened: sum_u(|s| s.connections_opened),
        peak_connections: sum_u(|s| s.peak_connections),
        http2: summaries.iter().any(|s| s.http2),
        tls_verification_disabled: summaries.iter().any(|s| s.tls_verification_disabled),
        timeout_s: summaries.iter().map(|s| s.timeout_s).fold(0.0, f64::max),
        scenario_fingerprint: fingerprint,
        stages: first.map(|s| s.stages.clone()).unwrap_or_default(),
        merged: Some(MergeSummary {
            sources: sources.iter().map(Source::shown).collect(),
            shards: sources
                .iter()
                .filter_map(|s| s.identity().map(|(i, _, _)| i))
                .collect(),
            start_spread_ms: spread_ms,
            notes,
        }),
        ..RunSummary::default()
    };

    // Totals of the merged run, so that merged runs merge again.
    let mut list: Vec<(String, &Histogram)> = Vec::new();
    for t in totals::TAGS {
        list.push((t.to_string(), tag(t)));
    }
    for name in merged.by_request.keys() {
        let t = totals::request_tag(name);
        list.push((t.clone(), tag(&t)));
    }
    let totals_path = out.join(TOTALS_FILE);
    std::fs::write(&totals_path, totals::render(base, duration_s, &list))
        .map_err(|e| format!("{}: {e}", totals_path.display()))?;
    let summary_path = out.join(SUMMARY_FILE);
    let json = serde_json::to_string_pretty(&merged).expect("summaries serialize");
    std::fs::write(&summary_path, json).map_err(|e| format!("{}: {e}", summary_path.display()))?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_any_writer() {
        assert_eq!(
            header_seconds(
                "#[StartTime: 1700000000.123 (seconds since epoch)]",
                "StartTime"
            ),
            Some(1_700_000_000.123)
        );
        assert_eq!(
            header_seconds(
                "#[StartTime: 1700000000.000000 (seconds since epoch), 2023-11-14 22:13:20]",
                "StartTime"
            ),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            header_seconds("#[BaseTime: 5.5 (seconds since epoch)]", "BaseTime"),
            Some(5.5)
        );
        assert_eq!(header_seconds("#[Logged with x]", "StartTime"), None);
    }

    /// Found by the `merge_log` fuzz target: a `StartTime` after year 9999
    /// made `merge` panic while writing `started_at`.
    #[test]
    fn start_times_beyond_rfc3339_are_clamped() {
        assert_eq!(
            epoch_to_rfc3339(1_700_000_000.5),
            "2023-11-14T22:13:20.500Z"
        );
        for s in [1_795_587_171_771.0, 1e300, f64::MAX, f64::INFINITY] {
            assert_eq!(epoch_to_rfc3339(s), "9999-12-31T23:59:59.000Z", "{s}");
        }
        for s in [-1.0, f64::NEG_INFINITY, f64::NAN] {
            assert_eq!(epoch_to_rfc3339(s), "1970-01-01T00:00:00.000Z", "{s}");
        }
    }
}
