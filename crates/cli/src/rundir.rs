//! Reading run directories written by `run --out`: `summary.json`,
//! `latency.hlog` and `timeseries.csv`, for `compare`, `check` and `history`.
//! Every error is one line naming the file (and line/column where there is one).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chokepoint_report::{RunSummary, RUN_SCHEMA};
use chokepoint_stats::{hlog, new_histogram, Histogram};

use crate::output::{HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE};

/// A run's `summary.json`, parsed, with where it came from.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The path as the user gave it (a directory or a summary file).
    pub given: String,
    /// The directory holding the run's files.
    pub dir: PathBuf,
    /// The summary.
    pub summary: RunSummary,
    /// The same summary as untyped JSON (for objects other issues add, such as `resources`).
    pub raw: serde_json::Value,
}

/// Most interval histograms held while reading a log. A longer run's
/// non-empty intervals are joined, as they are read, into blocks of 2, 4,
/// 8 ... consecutive intervals, so a 24-hour soak holds no more histograms
/// than a 4-minute run (each is about 130 KiB). The comparison joins
/// intervals into at most 120 blocks anyway, so nothing it uses is lost.
pub const MAX_HELD_BLOCKS: usize = 240;

/// The measured window's latency from `latency.hlog`: interval histograms
/// (joined into blocks for long runs) and their sum (microseconds).
#[derive(Debug, Clone)]
pub struct LatencyLog {
    /// Sum of the intervals.
    pub total: Histogram,
    /// Non-empty intervals in order, each block joining `intervals_per_block`
    /// consecutive ones (the last block may join fewer).
    pub intervals: Vec<Histogram>,
    /// Consecutive intervals per entry of `intervals` (1 unless the run is long).
    pub intervals_per_block: usize,
}

/// Joins consecutive non-empty histograms into at most [`MAX_HELD_BLOCKS`] + 1
/// whole blocks (plus the one being filled), doubling the block length
/// whenever the limit is passed.
#[derive(Debug, Default)]
struct BlockJoiner {
    blocks: Vec<Histogram>,
    current: Option<Histogram>,
    in_current: usize,
    per_block: usize,
}

impl BlockJoiner {
    fn push(&mut self, h: Histogram) {
        if h.is_empty() {
            return;
        }
        let per_block = self.per_block.max(1);
        match self.current.as_mut() {
            Some(current) => current.add(&h).expect("auto-resizing histograms merge"),
            None => self.current = Some(h),
        }
        self.in_current += 1;
        if self.in_current >= per_block {
            self.blocks.extend(self.current.take());
            self.in_current = 0;
        }
        // Join once the count is even so that every block stays whole.
        if self.blocks.len() > MAX_HELD_BLOCKS && self.blocks.len().is_multiple_of(2) {
            let joined = std::mem::take(&mut self.blocks)
                .chunks(2)
                .map(|pair| {
                    let mut sum = pair[0].clone();
                    if let Some(second) = pair.get(1) {
                        sum.add(second).expect("auto-resizing histograms merge");
                    }
                    sum
                })
                .collect();
            self.blocks = joined;
            self.per_block = per_block * 2;
        }
    }

    fn finish(mut self) -> (Vec<Histogram>, usize) {
        self.blocks.extend(self.current.take());
        (self.blocks, self.per_block.max(1))
    }
}

/// Opens a run: `path` is a run directory or the path of its `summary.json`.
pub fn open(path: &Path) -> Result<RunFiles, String> {
    let given = path.display().to_string();
    let (dir, summary_path) = if path.is_dir() {
        (path.to_path_buf(), path.join(SUMMARY_FILE))
    } else {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        (dir, path.to_path_buf())
    };
    let shown = summary_path.display();
    let text = std::fs::read_to_string(&summary_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{shown}: not found (expected a run directory written by `chokepoint run --out DIR`, or its summary.json)"
            )
        } else {
            format!("{shown}: cannot read: {e}")
        }
    })?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_error(&shown, &e))?;
    let schema = raw.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if schema != RUN_SCHEMA {
        return Err(format!(
            "{shown}: field `schema` is `{schema}`, expected `{RUN_SCHEMA}` (not a chokepoint run summary)"
        ));
    }
    let summary: RunSummary = serde_json::from_str(&text).map_err(|e| json_error(&shown, &e))?;
    Ok(RunFiles {
        given,
        dir,
        summary,
        raw,
    })
}

fn json_error(shown: &std::path::Display<'_>, e: &serde_json::Error) -> String {
    let message = e.to_string();
    // serde_json appends " at line L column C"; we put the position first.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_string();
    format!("{shown}:{}:{}: {message}", e.line(), e.column())
}

impl RunFiles {
    /// Path of a file beside the summary.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads `latency.hlog` and checks that it holds exactly the samples the
    /// summary counted (so the files belong to the same run). The log is read
    /// line by line and long runs are joined into blocks as they are read, so
    /// memory stays bounded (see [`MAX_HELD_BLOCKS`]).
    pub fn latency(&self) -> Result<LatencyLog, String> {
        let path = self.file(HLOG_FILE);
        let shown = path.display();
        let file = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{shown}: not found (the interval log written by `run --out` beside summary.json)")
            } else {
                format!("{shown}: cannot read: {e}")
            }
        })?;
        let mut reader = std::io::BufReader::new(file);
        let mut total = new_histogram();
        let mut blocks = BlockJoiner::default();
        let mut line = String::new();
        let mut line_no = 0;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| format!("{shown}:{}: cannot read: {e}", line_no + 1))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            // One line at a time: a last line without its newline is a
            // truncated tail, which `hlog::read` tolerates.
            let intervals = hlog::read(&line).map_err(|e| match e {
                hlog::HlogError::Malformed { what, .. } => format!("{shown}:{line_no}: {what}"),
            })?;
            for interval in intervals {
                total
                    .add(&interval.histogram)
                    .map_err(|e| format!("{shown}:{line_no}: cannot add the interval: {e:?}"))?;
                blocks.push(interval.histogram);
            }
        }
        let expected = self.summary.latency_ms.count;
        if total.len() != expected {
            return Err(format!(
                "{shown}: holds {} latency samples but {} counts {expected} (files from different runs, or a truncated log)",
                total.len(),
                self.file(SUMMARY_FILE).display()
            ));
        }
        let (intervals, intervals_per_block) = blocks.finish();
        Ok(LatencyLog {
            total,
            intervals,
            intervals_per_block,
        })
    }

    /// Requests per second of each full second of `timeseries.csv` (the final
    /// partial second is left out). `Ok(None)` when the file is absent.
    pub fn interval_rps(&self) -> Result<Option<Vec<f64>>, String> {
        let path = self.file(TIMESERIES_FILE);
        let shown = path.display();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{shown}: cannot read: {e}")),
        };
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, h)| h).unwrap_or("");
        let columns: Vec<&str> = header.split(',').collect();
        let col = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("{shown}:1: missing column `{name}`"))
        };
        let (second_col, rps_col) = (col("second")?, col("rps")?);
        let mut rows = Vec::new();
        for (idx, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').collect();
            let number = |i: usize, name: &str| {
                fields
                    .get(i)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{shown}:{}: column `{name}` is not a number", idx + 1))
            };
            rows.push((number(second_col, "second")?, number(rps_col, "rps")?));
        }
        let duration = self.summary.duration_s;
        Ok(Some(
            rows.into_iter()
                .filter(|(second, _)| duration - second >= 0.999)
                .map(|(_, rps)| rps)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_logs_are_joined_into_bounded_blocks() {
        let mut joiner = BlockJoiner::default();
        let mut total = 0;
        for i in 0..1_000u64 {
            let mut h = new_histogram();
            h.record(100 + i).unwrap();
            h.record(200 + i).unwrap();
            total += 2;
            joiner.push(h);
            joiner.push(new_histogram()); // empty intervals are left out
            assert!(joiner.blocks.len() <= MAX_HELD_BLOCKS + 1);
        }
        let (blocks, per_block) = joiner.finish();
        // Joined at 242, 484 and 968 intervals: 125 whole blocks of 8.
        assert_eq!(per_block, 8);
        assert_eq!(blocks.len(), 125);
        assert_eq!(blocks.iter().map(|b| b.len()).sum::<u64>(), total);
        assert!(blocks.iter().all(|b| b.len() == 16));
        // Blocks keep their order: the first holds the first 8 intervals.
        assert_eq!(blocks[0].min(), 100);
        assert_eq!(blocks[0].max(), blocks[0].highest_equivalent(207));
    }

    #[test]
    fn short_logs_are_kept_as_they_are() {
        let mut joiner = BlockJoiner::default();
        for _ in 0..MAX_HELD_BLOCKS {
            let mut h = new_histogram();
            h.record(5).unwrap();
            joiner.push(h);
        }
        let (blocks, per_block) = joiner.finish();
        assert_eq!((blocks.len(), per_block), (MAX_HELD_BLOCKS, 1));
    }

    #[test]
    fn json_errors_lead_with_line_and_column() {
        let e = serde_json::from_str::<serde_json::Value>("{\n  \"a\": ,\n}").unwrap_err();
        let p = Path::new("x/summary.json");
        let text = json_error(&p.display(), &e);
        assert!(text.starts_with("x/summary.json:2:8: "), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }
}
