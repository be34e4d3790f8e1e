//! `report.html` under `--out`: reads the files a command wrote (run
//! directories, `stress.json`, `soak.json`, a trace analysis) and hands their
//! shapes to `chokepoint_report::html`. Reading back from disk keeps one path
//! for every command, and a report can be made again from files alone.

use std::path::Path;

use chokepoint_diagnose::Diagnosis;
use chokepoint_report::compare::CompareReport;
use chokepoint_report::html::{self, Report, RunPanel, TracePanel, TraceRow};
use chokepoint_report::soak::SoakReport;
use chokepoint_report::stress::StressReport;
use chokepoint_report::timeseries::Row;
use chokepoint_stats::Histogram;
use serde_json::Value;

use crate::rundir::{self, RunFiles};
use crate::Failure;

/// File name of the report in an output directory.
pub const REPORT_FILE: &str = "report.html";

/// Quantiles of the spectrum: 0, then 1 − 10^(−k/20) while at least one sample lies beyond, then 1.
pub fn spectrum(h: &Histogram) -> Vec<(f64, f64)> {
    let n = h.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = vec![(0.0, h.min() as f64 / 1000.0)];
    let mut k = 1;
    loop {
        let q = 1.0 - 10f64.powf(-(k as f64) / 20.0);
        if (1.0 - q) * (n as f64) < 1.0 || k > 200 {
            break;
        }
        out.push((q, h.value_at_quantile(q) as f64 / 1000.0));
        k += 1;
    }
    let last_q = 1.0 - 1.0 / n as f64;
    if last_q > out.last().map_or(0.0, |p| p.0) {
        out.push((last_q, h.max() as f64 / 1000.0));
    }
    out
}

/// `timeseries.csv` as rows (empty when absent or unreadable: the report is best effort).
pub fn rows(run: &RunFiles) -> Vec<Row> {
    let path = run.file(crate::output::TIMESERIES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let Ok(parsed) = crate::diagnose_cmd::parse_csv(&text, &path.display().to_string()) else {
        return Vec::new();
    };
    parsed
        .iter()
        .map(|r| {
            let g = |k: &str| r.get(k).copied().unwrap_or(0.0);
            Row {
                second: g("second"),
                requests: g("requests") as u64,
                ok: g("ok") as u64,
                errors: g("errors") as u64,
                rps: g("rps"),
                p50_ms: g("p50_ms"),
                p90_ms: g("p90_ms"),
                p99_ms: g("p99_ms"),
                max_ms: g("max_ms"),
                in_flight: g("in_flight") as u64,
            }
        })
        .collect()
}

/// A run's panel: summary, time series, spectrum (from `latency.hlog`).
pub fn panel<'a>(label: &str, run: &'a RunFiles) -> RunPanel<'a> {
    let spectrum = run
        .latency()
        .map(|l| spectrum(&l.total))
        .unwrap_or_default();
    // The last, partial second would read as a drop in throughput.
    let mut seconds = rows(run);
    seconds.retain(|r| run.summary.duration_s - r.second >= 0.999);
    RunPanel {
        label: label.to_string(),
        summary: &run.summary,
        seconds,
        spectrum,
    }
}

/// The trace panel of a `chokepoint.traces.v1` document.
pub fn trace_panel(v: &Value) -> TracePanel {
    let g = &v["groups"];
    TracePanel {
        traces: v["traces"].as_u64().unwrap_or(0),
        mean_ms_p50: g["mean_ms_p50"].as_f64().unwrap_or(0.0),
        mean_ms_tail: g["mean_ms_p99"].as_f64().unwrap_or(0.0),
        n_tail: g["n_p99"].as_u64().unwrap_or(0),
        rows: v["tail"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|t| TraceRow {
                        service: t["service"].as_str().unwrap_or("").to_string(),
                        operation: t["operation"].as_str().unwrap_or("").to_string(),
                        wait: t["wait"].as_bool().unwrap_or(false),
                        ms_p50: t["ms_p50"].as_f64().unwrap_or(0.0),
                        ms_p99: t["ms_p99"].as_f64().unwrap_or(0.0),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        detectors: v["detectors"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|x| x["message"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn footer() -> String {
    format!(
        "chokepoint {} · self-contained report: no scripts, no external assets",
        env!("CARGO_PKG_VERSION")
    )
}

/// Writes `report` as `dir/report.html`.
pub fn write(dir: &Path, report: &Report<'_>) -> Result<(), Failure> {
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, html::render(report))
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))
}

fn own_traces(run: &RunFiles) -> Option<TracePanel> {
    let text = std::fs::read_to_string(run.file(crate::traces_cmd::RUN_TRACES_FILE)).ok()?;
    serde_json::from_str::<Value>(&text)
        .ok()
        .map(|v| trace_panel(&v))
}

/// `run --out DIR`.
pub fn write_run_report(dir: &Path) -> Result<(), Failure> {
    let run = rundir::open(dir).map_err(Failure::Usage)?;
    let report = Report {
        title: "Load test".into(),
        subtitle: run_subtitle(&run),
        runs: vec![panel("run", &run)],
        traces: own_traces(&run),
        footer: footer(),
        ..Report::default()
    };
    write(dir, &report)
}

fn run_subtitle(run: &RunFiles) -> String {
    let s = &run.summary;
    let load = match (s.rate_target, s.concurrency) {
        (Some(r), _) => format!("open model, {r:.0} req/s"),
        (None, Some(c)) => format!("closed model, {c} connections"),
        _ => String::new(),
    };
    format!(
        "{} · {load} · {:.1} s measured · started {}",
        s.target, s.duration_s, s.started_at
    )
}

/// `stress --out DIR`.
pub fn write_stress_report(dir: &Path, stress: &StressReport) -> Result<(), Failure> {
    let tiles = vec![
        (
            "Capacity".to_string(),
            stress
                .capacity_rps
                .map_or("–".into(), |c| format!("{c:.0}/s")),
            "highest passing rate".to_string(),
        ),
        (
            "Knee".to_string(),
            stress.knee_rps.map_or("–".into(), |k| format!("{k:.0}/s")),
            "latency starts to climb".to_string(),
        ),
        (
            "Failed first".to_string(),
            stress.failed_first.clone().unwrap_or_else(|| "–".into()),
            format!("{} steps", stress.steps.len()),
        ),
    ];
    let report = Report {
        title: "Capacity search".into(),
        subtitle: format!("{} · mode {}", stress.target, stress.mode),
        tiles,
        stress: Some(stress),
        footer: footer(),
        ..Report::default()
    };
    write(dir, &report)
}

/// `soak --out DIR` (the directory is also a run directory).
pub fn write_soak_report(dir: &Path, soak: &SoakReport) -> Result<(), Failure> {
    let run = rundir::open(dir).ok();
    let report = Report {
        title: "Soak".into(),
        subtitle: format!(
            "{} · {:.0} req/s for {:.0} s",
            soak.target, soak.rate, soak.duration_s
        ),
        banner: Some((soak.verdict.clone(), soak.stable)),
        runs: run
            .as_ref()
            .map(|r| vec![panel("soak", r)])
            .unwrap_or_default(),
        soak: Some(soak),
        footer: footer(),
        ..Report::default()
    };
    write(dir, &report)
}

/// `compare BEFORE AFTER --out DIR`.
pub fn write_compare_report(
    dir: &Path,
    before: &RunFiles,
    after: &RunFiles,
    compare: &CompareReport,
) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
    let report = Report {
        title: "Before / after".into(),
        subtitle: format!("{} → {}", compare.before.path, compare.after.path),
        banner: Some((
            chokepoint_report::compare::headline(compare),
            compare.verdict == "improved",
        )),
        runs: vec![panel("before", before), panel("after", after)],
        compare: Some(compare),
        footer: footer(),
        ..Report::default()
    };
    write(dir, &report)
}

/// `diagnose --out DIR`.
pub fn write_diagnosis_report(
    dir: &Path,
    loaded: &crate::diagnose_cmd::Loaded,
    diagnosis: &Diagnosis,
) -> Result<(), Failure> {
    let report = Report {
        title: "Diagnosis".into(),
        subtitle: loaded
            .run
            .as_ref()
            .map(run_subtitle)
            .unwrap_or_else(|| diagnosis.evidence_used.join("; ")),
        banner: Some((diagnosis.headline.clone(), diagnosis.healthy)),
        runs: loaded
            .run
            .as_ref()
            .map(|r| vec![panel("baseline", r)])
            .unwrap_or_default(),
        traces: loaded.traces.first().map(trace_panel),
        stress: loaded.stress.as_ref(),
        soak: loaded.soak.as_ref(),
        diagnosis: Some(diagnosis),
        footer: footer(),
        ..Report::default()
    };
    write(dir, &report)
}

/// A report that cannot be written never fails the command that measured: a warning.
pub fn report_or_warn(result: Result<(), Failure>) {
    if let Err(Failure::Usage(e)) = result {
        eprintln!("warning: {REPORT_FILE} not written: {e}");
    }
}
