//! `chokepoint history add|list|check`: run summaries kept in SQLite, and
//! change-point detection over them (`chokepoint_stats::changepoint`) so a
//! regression that landed a few runs ago is found even when each single run
//! looked within its budget.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chokepoint_report::history::{
    self as shape, ChangePointRow, HistoryCheck, HistoryEntry, HistoryList, SeriesPoint,
    HISTORY_SCHEMA,
};
use chokepoint_report::RunSummary;
use chokepoint_stats::changepoint::{
    detect_change_points, latest_regression, ChangePointConfig, Direction,
};
use clap::{Args, Subcommand};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{rundir, Failure};

/// `PRAGMA application_id` of a history database ("CHKP"): tells ours from other SQLite files.
const APPLICATION_ID: i64 = 0x4348_4B50;

/// Flags of `chokepoint history`.
#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Subcommand, Debug, Clone)]
enum HistoryCommand {
    /// Store a run's summary in the history database (created when missing).
    Add(AddArgs),
    /// List the stored runs, oldest first.
    List(ListArgs),
    /// Find change points in a metric over the stored runs; exit 1 when the latest is a regression.
    Check(CheckArgs),
}

#[derive(Args, Debug, Clone)]
struct AddArgs {
    /// The run: a directory written by `run --out`, or its summary.json.
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// The SQLite history database.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// A label for the run (commit, build number, ...).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Print JSON (`{"schema", "db", "id", "added"}`) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct ListArgs {
    /// The SQLite history database.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Only runs against this target URL.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Print JSON (schema chokepoint.history.v1).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct CheckArgs {
    /// The SQLite history database.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// The metric: p50, p90, p95, p99, p99_9, max, mean, error_rate or throughput.
    #[arg(long, value_name = "NAME", default_value = "p99")]
    metric: String,
    /// Use this request name's statistics instead of the overall ones.
    #[arg(long, value_name = "NAME")]
    request: Option<String>,
    /// Only runs against this target URL.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Smallest change that counts (Otava's magnitude).
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = crate::compare_cmd::parse_min_effect)]
    min_change: f64,
    /// Largest p-value of the t-test for a change point.
    #[arg(long, value_name = "P", default_value_t = 0.001)]
    max_p_value: f64,
    /// Print JSON (schema chokepoint.history.v1).
    #[arg(long)]
    json: bool,
}

/// Runs the command; returns the exit code.
pub fn run(args: HistoryArgs) -> Result<i32, Failure> {
    match args.command {
        HistoryCommand::Add(a) => add(a),
        HistoryCommand::List(a) => list(a),
        HistoryCommand::Check(a) => check(a),
    }
    .map_err(Failure::Usage)
}

fn db_error(db: &Path, e: rusqlite::Error) -> String {
    format!("history database {}: {e}", db.display())
}

/// Opens (creating when missing) a database for writing.
fn open_for_write(db: &Path) -> Result<Connection, String> {
    let conn = Connection::open(db).map_err(|e| db_error(db, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| db_error(db, e))?;
    let id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| db_error(db, e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| db_error(db, e))?;
    if id != APPLICATION_ID && tables > 0 {
        return Err(format!(
            "history database {}: not a chokepoint history database (it is another SQLite file)",
            db.display()
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         CREATE TABLE IF NOT EXISTS runs (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             added_at TEXT NOT NULL,
             started_at TEXT NOT NULL,
             label TEXT,
             target TEXT NOT NULL,
             tool_version TEXT NOT NULL,
             summary TEXT NOT NULL,
             UNIQUE (started_at, target)
         );"
    ))
    .map_err(|e| db_error(db, e))?;
    Ok(conn)
}

/// Opens an existing database read-only.
fn open_for_read(db: &Path) -> Result<Connection, String> {
    if !db.exists() {
        return Err(format!(
            "history database {}: not found (create it with `chokepoint history add RUN --db {}`)",
            db.display(),
            db.display()
        ));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(db, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| db_error(db, e))?;
    let id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| db_error(db, e))?;
    if id != APPLICATION_ID {
        return Err(format!(
            "history database {}: not a chokepoint history database",
            db.display()
        ));
    }
    Ok(conn)
}

fn add(args: AddArgs) -> Result<i32, String> {
    let run = rundir::open(&args.run)?;
    let s = &run.summary;
    let conn = open_for_write(&args.db)?;
    let existing: Option<i64> = conn
        .query_row(
            "SELECT id FROM runs WHERE started_at = ?1 AND target = ?2",
            (&s.started_at, &s.target),
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| db_error(&args.db, e))?;
    let report = |id: i64, added: bool| {
        serde_json::json!({
            "schema": HISTORY_SCHEMA,
            "db": args.db.display().to_string(),
            "id": id,
            "added": added,
        })
    };
    if let Some(id) = existing {
        if args.json {
            crate::print_stdout(&format!("{}\n", report(id, false)));
        } else {
            crate::print_stdout(&format!(
                "run {} is already in {} as #{id}\n",
                run.given,
                args.db.display()
            ));
        }
        return Ok(0);
    }
    let json = serde_json::to_string(&run.raw).expect("JSON values serialize");
    let added_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    conn.execute(
        "INSERT INTO runs (added_at, started_at, label, target, tool_version, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            &added_at,
            &s.started_at,
            &args.label,
            &s.target,
            &s.tool_version,
            &json,
        ),
    )
    .map_err(|e| db_error(&args.db, e))?;
    let id = conn.last_insert_rowid();
    if args.json {
        crate::print_stdout(&format!("{}\n", report(id, true)));
        return Ok(0);
    }
    let label = args
        .label
        .as_deref()
        .map_or(String::new(), |l| format!(" \"{l}\""));
    crate::print_stdout(&format!(
        "added run #{id}{label} to {} ({} requests, p99 {:.3} ms)\n",
        args.db.display(),
        s.requests,
        s.latency_ms.p99
    ));
    Ok(0)
}

/// One stored row.
struct Stored {
    id: i64,
    added_at: String,
    started_at: String,
    label: Option<String>,
    target: String,
    summary: Result<RunSummary, String>,
}

fn stored_runs(db: &Path, target: Option<&str>) -> Result<Vec<Stored>, String> {
    let conn = open_for_read(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, added_at, started_at, label, target, summary FROM runs
             WHERE ?1 IS NULL OR target = ?1 ORDER BY id",
        )
        .map_err(|e| db_error(db, e))?;
    let rows = stmt
        .query_map([target], |r| {
            let summary: String = r.get(5)?;
            Ok(Stored {
                id: r.get(0)?,
                added_at: r.get(1)?,
                started_at: r.get(2)?,
                label: r.get(3)?,
                target: r.get(4)?,
                summary: serde_json::from_str::<RunSummary>(&summary).map_err(|e| e.to_string()),
            })
        })
        .map_err(|e| db_error(db, e))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| db_error(db, e))
}

fn list(args: ListArgs) -> Result<i32, String> {
    let runs = stored_runs(&args.db, args.target.as_deref())?;
    let entries = runs
        .into_iter()
        .map(|r| {
            let s = r.summary.unwrap_or_default();
            HistoryEntry {
                id: r.id,
                added_at: r.added_at,
                started_at: r.started_at,
                label: r.label,
                target: r.target,
                requests: s.requests,
                throughput_rps: s.throughput_rps,
                error_pct: s.error_rate * 100.0,
                p50_ms: s.latency_ms.p50,
                p99_ms: s.latency_ms.p99,
            }
        })
        .collect();
    let out = HistoryList {
        schema: HISTORY_SCHEMA.to_string(),
        db: args.db.display().to_string(),
        runs: entries,
    };
    if args.json {
        let json = serde_json::to_string_pretty(&out).expect("reports serialize");
        crate::print_stdout(&format!("{json}\n"));
    } else {
        crate::print_stdout(&shape::render_list(&out));
    }
    Ok(0)
}

/// The metric's value for one run, in its unit; `None` when the run lacks it.
fn metric_value(s: &RunSummary, metric: &str, request: Option<&str>) -> Option<f64> {
    let (latency, requests, errors) = match request {
        Some(name) => {
            let r = s.by_request.get(name)?;
            (r.latency_ms, r.requests, r.errors.values().sum::<u64>())
        }
        None => (s.latency_ms, s.requests, s.error_count()),
    };
    let l = &latency;
    match metric {
        "error_rate" => (requests > 0).then(|| errors as f64 * 100.0 / requests as f64),
        "throughput" => (s.duration_s > 0.0).then(|| requests as f64 / s.duration_s),
        _ if l.count == 0 => None,
        "p50" => Some(l.p50),
        "p90" => Some(l.p90),
        "p95" => Some(l.p95),
        "p99" => Some(l.p99),
        "p99_9" => Some(l.p99_9),
        "max" => Some(l.max),
        "mean" => Some(l.mean),
        _ => None,
    }
}

const METRICS: [&str; 9] = [
    "p50",
    "p90",
    "p95",
    "p99",
    "p99_9",
    "max",
    "mean",
    "error_rate",
    "throughput",
];

fn check(args: CheckArgs) -> Result<i32, String> {
    let metric = match args.metric.as_str() {
        "p99.9" | "p999" => "p99_9".to_string(),
        m => m.to_string(),
    };
    if !METRICS.contains(&metric.as_str()) {
        return Err(format!(
            "--metric `{}`: unknown metric; expected one of {}",
            args.metric,
            METRICS.join(", ")
        ));
    }
    if !(args.max_p_value > 0.0 && args.max_p_value < 1.0) {
        return Err(format!(
            "--max-p-value {}: must be strictly between 0 and 1",
            args.max_p_value
        ));
    }
    let (unit, direction) = match metric.as_str() {
        "error_rate" => ("percent", Direction::HigherIsWorse),
        "throughput" => ("rps", Direction::LowerIsWorse),
        _ => ("ms", Direction::HigherIsWorse),
    };
    let runs = stored_runs(&args.db, args.target.as_deref())?;
    let mut notes = Vec::new();
    let mut series = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let (mut unreadable, mut lacking) = (0, 0);
    for r in &runs {
        let Ok(s) = &r.summary else {
            unreadable += 1;
            continue;
        };
        let Some(value) = metric_value(s, &metric, args.request.as_deref()) else {
            lacking += 1;
            continue;
        };
        if !targets.contains(&r.target) {
            targets.push(r.target.clone());
        }
        series.push(SeriesPoint {
            id: r.id,
            label: r.label.clone(),
            started_at: r.started_at.clone(),
            value,
        });
    }
    if unreadable > 0 {
        notes.push(format!(
            "{unreadable} stored run(s) have a summary this version cannot read: left out"
        ));
    }
    if lacking > 0 {
        let what = match &args.request {
            Some(r) => format!("no request `{r}` or no {metric} value"),
            None => format!("no {metric} value (no responses)"),
        };
        notes.push(format!("{lacking} run(s) have {what}: left out"));
    }
    if targets.len() > 1 {
        notes.push(format!(
            "the series mixes {} targets ({}): use --target to check one",
            targets.len(),
            targets.join(", ")
        ));
    }
    let config = ChangePointConfig {
        max_p_value: args.max_p_value,
        min_magnitude_pct: args.min_change,
        direction,
        ..ChangePointConfig::default()
    };
    if series.len() < 2 * config.min_segment_len {
        notes.push(format!(
            "{} run(s) in the series: change-point detection needs at least {}",
            series.len(),
            2 * config.min_segment_len
        ));
    }
    let values: Vec<f64> = series.iter().map(|p| p.value).collect();
    let points = detect_change_points(&values, &config).map_err(|e| e.to_string())?;
    let latest = latest_regression(&points, &config).map(|c| c.index);
    let rows: Vec<ChangePointRow> = points
        .iter()
        .map(|c| {
            let worse = match direction {
                Direction::HigherIsWorse => c.mean_after > c.mean_before,
                Direction::LowerIsWorse => c.mean_after < c.mean_before,
            };
            let run = &series[c.index];
            ChangePointRow {
                index: c.index,
                id: run.id,
                label: run.label.clone(),
                started_at: run.started_at.clone(),
                mean_before: c.mean_before,
                mean_after: c.mean_after,
                len_before: c.len_before,
                len_after: c.len_after,
                change_pct: c.change_pct.filter(|x| x.is_finite()),
                p_value: c.p_value,
                kind: if worse { "regression" } else { "improvement" }.to_string(),
            }
        })
        .collect();
    let latest_row = latest.and_then(|i| rows.iter().find(|r| r.index == i).cloned());
    let out = HistoryCheck {
        schema: HISTORY_SCHEMA.to_string(),
        db: args.db.display().to_string(),
        metric,
        request: args.request.clone(),
        unit: unit.to_string(),
        direction: match direction {
            Direction::HigherIsWorse => "higher_is_worse",
            Direction::LowerIsWorse => "lower_is_worse",
        }
        .to_string(),
        max_p_value: config.max_p_value,
        min_segment_len: config.min_segment_len,
        min_magnitude_pct: config.min_magnitude_pct,
        series,
        change_points: rows,
        status: if latest_row.is_some() {
            "regression"
        } else {
            "ok"
        }
        .to_string(),
        latest_regression: latest_row,
        notes,
    };
    if args.json {
        let json = serde_json::to_string_pretty(&out).expect("reports serialize");
        crate::print_stdout(&format!("{json}\n"));
    } else {
        crate::print_stdout(&shape::render_check(&out));
    }
    Ok(if out.latest_regression.is_some() {
        1
    } else {
        0
    })
}
