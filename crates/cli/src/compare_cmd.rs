//! `chokepoint compare BEFORE AFTER`: the Validate step. Reads two run
//! directories, checks that their conditions are comparable, and compares
//! latency, throughput and error rate with `chokepoint_stats::compare`.

use std::path::{Path, PathBuf};

use chokepoint_report::compare::{
    self as shape, CompareReport, CompareSettings, CostRow, CostSection, Difference, ErrorRateRow,
    LatencySection, RunRef, ThroughputRow, COMPARE_SCHEMA,
};
use chokepoint_report::RunSummary;
use chokepoint_stats::bootstrap::{BootstrapConfig, RunLatency};
use chokepoint_stats::compare::{
    compare_error_rate, compare_latency, compare_throughput, CompareConfig, ErrorCounts,
    ThroughputSample, Verdict,
};
use clap::Args;

use crate::rundir::{self, LatencyLog, RunFiles};
use crate::{units, Failure};

/// Flags of `chokepoint compare`.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// The BEFORE run: a directory written by `run --out`, or its summary.json.
    #[arg(value_name = "BEFORE")]
    before: PathBuf,
    /// The AFTER run, likewise.
    #[arg(value_name = "AFTER")]
    after: PathBuf,
    /// Smallest change that can be called a regression or an improvement.
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = parse_min_effect)]
    min_effect: f64,
    /// Confidence level of the intervals and tests (`95%` or `0.95`).
    #[arg(long, value_name = "LEVEL", default_value = "95%", value_parser = parse_confidence)]
    confidence: f64,
    /// Exit 2 when the runs' conditions differ (target, load, duration, version, ...).
    #[arg(long)]
    strict: bool,
    /// Exit 1 when any metric regressed.
    #[arg(long)]
    fail_on_regression: bool,
    /// Print the comparison as JSON (schema chokepoint.compare.v1) instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the comparison as Markdown to FILE (`-` prints it instead of the text).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Bootstrap resamples per run (at least 1000).
    #[arg(long, value_name = "N", default_value_t = 2_000, value_parser = parse_resamples)]
    resamples: usize,
    /// Seed of the resampling [default: a fixed seed, so results are reproducible].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Also write report.html (before/after overlays and the comparison) into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `--min-effect`: `5%` or `5`, in percent.
pub fn parse_min_effect(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage; write e.g. 5%"))?;
    if !(0.0..=1000.0).contains(&value) {
        return Err(format!("`{text}` must be between 0% and 1000%"));
    }
    Ok(value)
}

/// `--confidence`: `95%` or `0.95`, as a fraction in (0.5, 1).
pub fn parse_confidence(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(_) => units::parse_percent(t)
            .map_err(|_| format!("`{text}` is not a confidence level; write e.g. 95% or 0.95"))?,
        None => t
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is not a confidence level; write e.g. 95% or 0.95"))?,
    };
    if !(0.5..1.0).contains(&value) {
        return Err(format!(
            "confidence `{text}` must be at least 50% and below 100%"
        ));
    }
    Ok(value)
}

fn parse_resamples(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    if !(1_000..=1_000_000).contains(&n) {
        return Err(format!(
            "resamples must be between 1000 and 1000000, got {n}"
        ));
    }
    Ok(n)
}

/// A run loaded for comparison.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// Its summary and location.
    pub files: RunFiles,
    /// Its interval log.
    pub latency: LatencyLog,
    /// Per-second request rates from `timeseries.csv`, when present.
    pub interval_rps: Option<Vec<f64>>,
}

/// Loads a run directory (or summary path) with its interval log; errors
/// start with `side` (`BEFORE`, `AFTER`, `baseline`).
pub fn load(path: &Path, side: &str) -> Result<LoadedRun, String> {
    let files = rundir::open(path).map_err(|e| format!("{side}: {e}"))?;
    let latency = files.latency().map_err(|e| format!("{side}: {e}"))?;
    let interval_rps = files.interval_rps().map_err(|e| format!("{side}: {e}"))?;
    Ok(LoadedRun {
        files,
        latency,
        interval_rps,
    })
}

/// The comparison settings from user-level numbers.
pub fn config(
    confidence: f64,
    min_effect_pct: f64,
    resamples: usize,
    seed: Option<u64>,
) -> CompareConfig {
    let defaults = BootstrapConfig::default();
    CompareConfig {
        confidence,
        min_effect_pct,
        bootstrap: BootstrapConfig {
            resamples,
            seed: seed.unwrap_or(defaults.seed),
            ..defaults
        },
        ..CompareConfig::default()
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: CompareArgs) -> Result<i32, Failure> {
    let before = load(&args.before, "BEFORE").map_err(Failure::Usage)?;
    let after = load(&args.after, "AFTER").map_err(Failure::Usage)?;
    let config = config(args.confidence, args.min_effect, args.resamples, args.seed);
    let report = compare_runs(&before, &after, &config).map_err(Failure::Usage)?;
    if let Some(dir) = args.out.as_deref() {
        crate::html_out::write_compare_report(dir, &before.files, &after.files, &report)?;
    }
    let markdown_to_stdout = args.markdown.as_deref() == Some(Path::new("-"));
    if let Some(path) = args.markdown.as_deref().filter(|_| !markdown_to_stdout) {
        std::fs::write(path, shape::render_markdown(&report))
            .map_err(|e| Failure::Usage(format!("--markdown {}: {e}", path.display())))?;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&report).expect("reports serialize");
        crate::print_stdout(&format!("{json}\n"));
    } else if markdown_to_stdout {
        crate::print_stdout(&shape::render_markdown(&report));
    } else {
        crate::print_stdout(&shape::render_text(&report));
    }
    if args.strict && !report.differences.is_empty() {
        let list: Vec<String> = report
            .differences
            .iter()
            .map(|d| format!("{} {} → {}", d.field, d.before, d.after))
            .collect();
        return Err(Failure::Usage(format!(
            "--strict: the runs are not comparable: {}",
            list.join("; ")
        )));
    }
    if args.fail_on_regression && !report.regressed.is_empty() {
        eprintln!(
            "regression: {} (--fail-on-regression)",
            report.regressed.join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

/// Compares two loaded runs: the whole `chokepoint.compare.v1` report.
pub fn compare_runs(
    before: &LoadedRun,
    after: &LoadedRun,
    config: &CompareConfig,
) -> Result<CompareReport, String> {
    let (b, a) = (&before.files.summary, &after.files.summary);
    let latency = compare_latency(
        &RunLatency {
            total: &before.latency.total,
            intervals: &before.latency.intervals,
        },
        &RunLatency {
            total: &after.latency.total,
            intervals: &after.latency.intervals,
        },
        config,
    )
    .map_err(|e| format!("comparison: {e}"))?;
    let mut notes = Vec::new();
    let sample = |run: &LoadedRun, side: &str, notes: &mut Vec<String>| {
        if run.interval_rps.is_none() {
            notes.push(format!(
                "{side} has no timeseries.csv: throughput is tested on the counts (Poisson), which ignores second-to-second noise"
            ));
        }
        ThroughputSample {
            requests: run.files.summary.requests,
            duration_s: run.files.summary.duration_s,
            interval_rps: run.interval_rps.clone().unwrap_or_default(),
        }
    };
    let throughput = compare_throughput(
        &sample(before, "BEFORE", &mut notes),
        &sample(after, "AFTER", &mut notes),
        config,
    )
    .map_err(|e| format!("comparison: {e}"))?;
    let errors = |s: &RunSummary| ErrorCounts {
        requests: s.requests,
        errors: s.error_count().min(s.requests),
    };
    let error_rate =
        compare_error_rate(errors(b), errors(a), config).map_err(|e| format!("comparison: {e}"))?;
    for (side, s) in [("BEFORE", b), ("AFTER", a)] {
        if s.interrupted {
            notes.push(format!(
                "{side} was interrupted: it covers only {:.1} s",
                s.duration_s
            ));
        }
    }

    let mut regressed = Vec::new();
    let mut improved = Vec::new();
    let mut classify = |name: &str, v: &Verdict| match v {
        Verdict::Regressed => regressed.push(name.to_string()),
        Verdict::Improved => improved.push(name.to_string()),
        _ => {}
    };
    for m in &latency.metrics {
        classify(m.metric.name(), &m.verdict);
    }
    classify("throughput", &throughput.verdict);
    classify("error_rate", &error_rate.verdict);
    let verdict = Verdict::combine([&latency.verdict, &throughput.verdict, &error_rate.verdict]);
    let differences = differences(b, a);
    Ok(CompareReport {
        schema: COMPARE_SCHEMA.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        before: run_ref(before),
        after: run_ref(after),
        settings: CompareSettings {
            confidence: config.confidence,
            min_effect_pct: config.min_effect_pct,
            resamples: config.bootstrap.resamples,
            seed: config.bootstrap.seed,
            min_tail_samples: config.min_tail_samples,
        },
        comparable: differences.is_empty(),
        differences,
        latency: {
            let mut section = LatencySection::from_comparison(&latency);
            // Long logs arrive already joined into blocks (see rundir).
            for (method, run) in [
                (&mut section.method_before, before),
                (&mut section.method_after, after),
            ] {
                if let Some(k) = method.intervals_per_block.as_mut() {
                    *k *= run.latency.intervals_per_block;
                }
            }
            section
        },
        throughput: ThroughputRow::from(&throughput),
        error_rate: ErrorRateRow::from_comparison(&error_rate, b.error_count(), a.error_count()),
        cost: cost(&before.files, &after.files),
        notes,
        regressed,
        improved,
        verdict: verdict.name().to_string(),
    })
}

fn run_ref(run: &LoadedRun) -> RunRef {
    let s = &run.files.summary;
    RunRef {
        path: run.files.given.clone(),
        target: s.target.clone(),
        started_at: s.started_at.clone(),
        model: s.model.clone(),
        rate_target: s.rate_target,
        concurrency: s.concurrency,
        duration_s: s.duration_s,
        requests: s.requests,
        latency_samples: run.latency.total.len(),
        tool_version: s.tool_version.clone(),
    }
}

/// Durations further apart than this (relative) make runs not comparable.
const DURATION_TOLERANCE: f64 = 0.10;

/// What differs in the conditions of two runs.
pub fn differences(b: &RunSummary, a: &RunSummary) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |field: &str, before: String, after: String| {
        if before != after {
            out.push(Difference {
                field: field.to_string(),
                before,
                after,
            });
        }
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    differ("target", b.target.clone(), a.target.clone());
    differ("model", b.model.clone(), a.model.clone());
    differ(
        "rate_target",
        opt(b.rate_target.map(|r| format!("{r}/s"))),
        opt(a.rate_target.map(|r| format!("{r}/s"))),
    );
    differ(
        "concurrency",
        opt(b.concurrency.map(|c| c.to_string())),
        opt(a.concurrency.map(|c| c.to_string())),
    );
    differ("arrival", opt(b.arrival.clone()), opt(a.arrival.clone()));
    let longer = b.duration_s.max(a.duration_s);
    if longer > 0.0 && (b.duration_s - a.duration_s).abs() / longer > DURATION_TOLERANCE {
        differ(
            "duration_s",
            format!("{:.1} s", b.duration_s),
            format!("{:.1} s", a.duration_s),
        );
    }
    differ(
        "tool_version",
        b.tool_version.clone(),
        a.tool_version.clone(),
    );
    differ("http2", b.http2.to_string(), a.http2.to_string());
    let names = |s: &RunSummary| s.by_request.keys().cloned().collect::<Vec<_>>().join(", ");
    differ("requests_mix", names(b), names(a));
    differ(
        "interrupted",
        b.interrupted.to_string(),
        a.interrupted.to_string(),
    );
    out
}

/// The cost delta from the runs' `resources` objects (written with
/// `--watch-pid`): `resources.cpu_per_request_ms` (or `cpu_seconds`, target
/// CPU time during the measured window, over the requests) and
/// `resources.peak_rss_bytes`. Read from the untyped JSON so that only these
/// three public field names couple the two commands. `None` when neither run
/// has a `resources` object.
pub fn cost(before: &RunFiles, after: &RunFiles) -> Option<CostSection> {
    let resources = |f: &RunFiles| f.raw.get("resources").filter(|r| r.is_object()).cloned();
    let (rb, ra) = (resources(before), resources(after));
    let mut section = CostSection::default();
    let (rb, ra) = match (rb, ra) {
        (None, None) => return None,
        (b, a) if b.is_none() || a.is_none() => {
            let side = if a.is_none() { "AFTER" } else { "BEFORE" };
            section.notes.push(format!(
                "{side} has no target resource samples (run it with --watch-pid): cost not compared"
            ));
            return Some(section);
        }
        (b, a) => (b.unwrap_or_default(), a.unwrap_or_default()),
    };
    let number = |r: &serde_json::Value, key: &str| r.get(key).and_then(|v| v.as_f64());
    // The probe's own figure when present, else CPU seconds over requests.
    let cpu_per_request = |r: &serde_json::Value, requests: u64| {
        number(r, "cpu_per_request_ms").or_else(|| {
            number(r, "cpu_seconds")
                .filter(|_| requests > 0)
                .map(|c| c * 1000.0 / requests as f64)
        })
    };
    match (
        cpu_per_request(&rb, before.summary.requests),
        cpu_per_request(&ra, after.summary.requests),
    ) {
        (Some(b), Some(a)) => section.cpu_ms_per_request = Some(CostRow::new(b, a)),
        _ => section.notes.push(
            "CPU per request needs `resources.cpu_per_request_ms` (or `cpu_seconds` and at least one request) in both runs"
                .to_string(),
        ),
    }
    match (number(&rb, "peak_rss_bytes"), number(&ra, "peak_rss_bytes")) {
        (Some(b), Some(a)) => section.peak_rss_bytes = Some(CostRow::new(b, a)),
        _ => section
            .notes
            .push("peak RSS needs `resources.peak_rss_bytes` in both runs".to_string()),
    }
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert_eq!(parse_min_effect("5%").unwrap(), 5.0);
        assert_eq!(parse_min_effect("2.5").unwrap(), 2.5);
        assert!(parse_min_effect("five").is_err());
        assert!(parse_min_effect("-1%").is_err());
        assert_eq!(parse_confidence("95%").unwrap(), 0.95);
        assert_eq!(parse_confidence("0.99").unwrap(), 0.99);
        assert!(parse_confidence("100%").is_err());
        assert!(parse_confidence("30%").is_err());
        assert!(parse_confidence("high").is_err());
        assert!(parse_resamples("999").is_err());
        assert_eq!(parse_resamples("1000").unwrap(), 1000);
    }

    #[test]
    fn differences_name_each_condition() {
        let b = RunSummary {
            target: "http://127.0.0.1:1/".into(),
            model: "open".into(),
            rate_target: Some(100.0),
            duration_s: 10.0,
            tool_version: "0.1.0".into(),
            ..RunSummary::default()
        };
        assert!(differences(&b, &b).is_empty());
        let a = RunSummary {
            rate_target: Some(200.0),
            duration_s: 10.5,
            ..b.clone()
        };
        let d = differences(&b, &a);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].field, "rate_target");
        let a = RunSummary {
            duration_s: 20.0,
            tool_version: "0.2.0".into(),
            ..b.clone()
        };
        let fields: Vec<_> = differences(&b, &a).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["duration_s", "tool_version"]);
    }
}
