//! Reading run directories written by `run --out`: `summary.json`,
//! `latency.hlog` and `timeseries.csv`, for `compare`, `check` and `history`.
//! Every error is one line naming the file (and line/column where there is one).

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

/// The measured window's latency from `latency.hlog`: per-second interval
/// histograms and their sum (microseconds).
#[derive(Debug, Clone)]
pub struct LatencyLog {
    /// Sum of the intervals.
    pub total: Histogram,
    /// One histogram per interval, oldest first.
    pub intervals: Vec<Histogram>,
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
    /// summary counted (so the files belong to the same run).
    pub fn latency(&self) -> Result<LatencyLog, String> {
        let path = self.file(HLOG_FILE);
        let shown = path.display();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{shown}: not found (the interval log written by `run --out` beside summary.json)")
            } else {
                format!("{shown}: cannot read: {e}")
            }
        })?;
        let intervals = hlog::read(&text).map_err(|e| match e {
            hlog::HlogError::Malformed { line, what } => format!("{shown}:{line}: {what}"),
        })?;
        let mut total = new_histogram();
        let mut histograms = Vec::with_capacity(intervals.len());
        for interval in intervals {
            total
                .add(&interval.histogram)
                .map_err(|e| format!("{shown}: cannot add intervals: {e:?}"))?;
            histograms.push(interval.histogram);
        }
        let expected = self.summary.latency_ms.count;
        if total.len() != expected {
            return Err(format!(
                "{shown}: holds {} latency samples but {} counts {expected} (files from different runs, or a truncated log)",
                total.len(),
                self.file(SUMMARY_FILE).display()
            ));
        }
        Ok(LatencyLog {
            total,
            intervals: histograms,
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
    fn json_errors_lead_with_line_and_column() {
        let e = serde_json::from_str::<serde_json::Value>("{\n  \"a\": ,\n}").unwrap_err();
        let p = Path::new("x/summary.json");
        let text = json_error(&p.display(), &e);
        assert!(text.starts_with("x/summary.json:2:8: "), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }
}
