//! `chokepoint check RUN --budget budgets.toml`: the Keep-it-fixed step in CI.
//! Evaluates every budget line against a run (and `[regression]` against
//! `--baseline` with compare's statistics), writes JUnit XML and a Markdown
//! job summary on request, and exits 0 (all hold), 1 (any broke) or 2 (bad input).

use std::path::PathBuf;

use chokepoint_report::check::{self as shape, BudgetResult, CheckReport, Status};
use chokepoint_report::compare::CompareReport;
use chokepoint_report::text::fmt_ms;
use chokepoint_report::{LatencyMs, RunSummary};
use chokepoint_stats::Histogram;
use clap::Args;

use crate::budgets::{self, Budget, LatencyStat, Limit, RegressionMetric};
use crate::compare_cmd;
use crate::rundir;
use crate::Failure;

/// Flags of `chokepoint check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The run to check: a directory written by `run --out`, or its summary.json.
    #[arg(value_name = "RUN")]
    run: PathBuf,
    /// The budget file (TOML; see docs/budgets.md).
    #[arg(long, value_name = "FILE")]
    budget: PathBuf,
    /// A baseline run for the `[regression]` budgets.
    #[arg(long, value_name = "RUN")]
    baseline: Option<PathBuf>,
    /// Write JUnit XML (one test case per budget line) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a Markdown job summary to FILE (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Print the results as JSON (schema chokepoint.check.v1) instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the command; returns the exit code.
pub fn run(args: CheckArgs) -> Result<i32, Failure> {
    let budget_file = args.budget.display().to_string();
    let budgets = budgets::load(&args.budget).map_err(Failure::Usage)?;
    let run = rundir::open(&args.run).map_err(|e| Failure::Usage(format!("RUN: {e}")))?;
    let total = if budgets.needs_latency_log() {
        Some(
            run.latency()
                .map_err(|e| {
                    Failure::Usage(format!(
                        "RUN: {e} (needed for the percentiles the summary lacks)"
                    ))
                })?
                .total,
        )
    } else {
        None
    };
    let mut results = Vec::new();
    for b in &budgets.overall {
        results.push(evaluate(
            "overall",
            b,
            &Measured::overall(&run.summary),
            total.as_ref(),
        ));
    }
    for section in &budgets.requests {
        let Some(r) = run.summary.by_request.get(&section.name) else {
            let names: Vec<&str> = run.summary.by_request.keys().map(String::as_str).collect();
            return Err(Failure::Usage(format!(
                "{budget_file}:{}: [request.{}]: the run has no request of that name (it has: {})",
                section.line,
                section.name,
                names.join(", ")
            )));
        };
        let measured = Measured {
            latency: r.latency_ms,
            requests: r.requests,
            errors: r.errors.values().sum(),
            throughput_rps: if run.summary.duration_s > 0.0 {
                r.requests as f64 / run.summary.duration_s
            } else {
                0.0
            },
        };
        let label = format!("request.{}", section.name);
        for b in &section.budgets {
            results.push(evaluate(&label, b, &measured, None));
        }
    }
    let mut notes = Vec::new();
    if let Some(regression) = &budgets.regression {
        results.extend(regressions(&args, regression, &mut notes)?);
    } else if args.baseline.is_some() {
        notes.push(
            "--baseline was given but the budget file has no [regression] section: nothing compared"
                .to_string(),
        );
    }
    let report = CheckReport::new(
        args.run.display().to_string(),
        budget_file,
        args.baseline.as_ref().map(|b| b.display().to_string()),
        results,
        notes,
    );
    if let Some(path) = &args.junit {
        std::fs::write(path, shape::render_junit(&report, &run.summary.started_at))
            .map_err(|e| Failure::Usage(format!("--junit {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, shape::render_markdown(&report))
            .map_err(|e| Failure::Usage(format!("--markdown {}: {e}", path.display())))?;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&report).expect("reports serialize");
        crate::print_stdout(&format!("{json}\n"));
    } else {
        crate::print_stdout(&shape::render_text(&report));
    }
    Ok(if report.failed == 0 { 0 } else { 1 })
}

/// What a budget section is checked against.
struct Measured {
    latency: LatencyMs,
    requests: u64,
    errors: u64,
    throughput_rps: f64,
}

impl Measured {
    fn overall(s: &RunSummary) -> Measured {
        Measured {
            latency: s.latency_ms,
            requests: s.requests,
            errors: s.error_count(),
            throughput_rps: s.throughput_rps,
        }
    }
}

fn evaluate(section: &str, b: &Budget, m: &Measured, total: Option<&Histogram>) -> BudgetResult {
    let mut result = BudgetResult {
        section: section.to_string(),
        metric: b.key.clone(),
        budget: String::new(),
        line: b.line,
        actual: None,
        limit_value: 0.0,
        actual_value: None,
        unit: String::new(),
        status: Status::Pass,
        message: String::new(),
    };
    match &b.limit {
        Limit::Latency { stat, ceiling_ms } => {
            result.budget = format!("{} <= {}", b.key, b.written);
            result.unit = "ms".into();
            result.limit_value = *ceiling_ms;
            if m.latency.count == 0 {
                result.status = Status::Fail;
                result.message = "no latency samples: no response was measured".into();
                return result;
            }
            let l = &m.latency;
            let (actual, beyond_fraction) = match stat {
                LatencyStat::Summary(key) => match *key {
                    "p50" => (l.p50, Some(0.5)),
                    "p90" => (l.p90, Some(0.1)),
                    "p95" => (l.p95, Some(0.05)),
                    "p99" => (l.p99, Some(0.01)),
                    "p99_9" => (l.p99_9, Some(0.001)),
                    "max" => (l.max, None),
                    _ => (l.mean, None),
                },
                LatencyStat::Quantile(q) => {
                    let h = total.expect("the interval log is read for custom percentiles");
                    (h.value_at_quantile(*q) as f64 / 1000.0, Some(1.0 - q))
                }
            };
            result.actual = Some(fmt_ms(actual));
            result.actual_value = Some(actual);
            let thin = beyond_fraction
                .map(|f| (l.count as f64 * f).floor() as u64)
                .filter(|beyond| *beyond < 10);
            if actual > *ceiling_ms {
                result.status = Status::Fail;
                result.message = format!(
                    "{} is {} over the budget of {}",
                    b.key,
                    fmt_ms(actual - ceiling_ms),
                    b.written
                );
            }
            if let Some(beyond) = thin {
                let note = format!(
                    "only {beyond} of {} samples lie beyond this percentile",
                    l.count
                );
                result.message = if result.message.is_empty() {
                    note
                } else {
                    format!("{}; {note}", result.message)
                };
            }
        }
        Limit::ErrorRate(max) => {
            result.budget = format!("error_rate <= {}", b.written);
            result.unit = "percent".into();
            result.limit_value = max * 100.0;
            if m.requests == 0 {
                result.status = Status::Fail;
                result.message = "no completed requests".into();
                return result;
            }
            let rate = m.errors as f64 / m.requests as f64;
            result.actual = Some(format!(
                "{:.3}% ({} of {})",
                rate * 100.0,
                m.errors,
                m.requests
            ));
            result.actual_value = Some(rate * 100.0);
            if rate > *max {
                result.status = Status::Fail;
                result.message = format!(
                    "error rate {:.3}% is above the budget of {}",
                    rate * 100.0,
                    b.written
                );
            }
        }
        Limit::MinThroughput(min) => {
            result.budget = format!("throughput >= {}", b.written);
            result.unit = "rps".into();
            result.limit_value = *min;
            result.actual = Some(format!("{:.1}/s", m.throughput_rps));
            result.actual_value = Some(m.throughput_rps);
            if m.throughput_rps < *min {
                result.status = Status::Fail;
                result.message = format!(
                    "throughput {:.1}/s is below the budget of {}",
                    m.throughput_rps, b.written
                );
            }
        }
    }
    result
}

fn regressions(
    args: &CheckArgs,
    regression: &budgets::Regression,
    notes: &mut Vec<String>,
) -> Result<Vec<BudgetResult>, Failure> {
    let sentence = |m: RegressionMetric| {
        let word = if m == RegressionMetric::Throughput {
            "decrease"
        } else {
            "increase"
        };
        format!(
            "{} {word} <= {} vs baseline",
            m.name(),
            regression.max_increase_written
        )
    };
    let blank = |m: RegressionMetric, line: usize| BudgetResult {
        section: "regression".into(),
        metric: m.name().to_string(),
        budget: sentence(m),
        line,
        actual: None,
        limit_value: regression.max_increase_pct,
        actual_value: None,
        unit: "percent".into(),
        status: Status::Skipped,
        message: String::new(),
    };
    let Some(baseline_path) = &args.baseline else {
        return Ok(regression
            .metrics
            .iter()
            .map(|&(m, line)| BudgetResult {
                message: "no --baseline RUN given".into(),
                ..blank(m, line)
            })
            .collect());
    };
    let baseline = compare_cmd::load(baseline_path, "baseline").map_err(Failure::Usage)?;
    let current = compare_cmd::load(&args.run, "RUN").map_err(Failure::Usage)?;
    let config = compare_cmd::config(
        regression.confidence,
        regression.max_increase_pct,
        2_000,
        None,
    );
    let report: CompareReport =
        compare_cmd::compare_runs(&baseline, &current, &config).map_err(Failure::Usage)?;
    for d in &report.differences {
        notes.push(format!(
            "baseline differs in {}: {} → {}",
            d.field, d.before, d.after
        ));
    }
    let conf = format!("{:.0}%", regression.confidence * 100.0);
    let mut out = Vec::new();
    for &(m, line) in &regression.metrics {
        let mut r = blank(m, line);
        let (delta, ci, verdict, reason, unit_word) = match m {
            RegressionMetric::Latency(lm) => {
                let row = report
                    .latency
                    .metrics
                    .iter()
                    .find(|x| x.metric == lm.name())
                    .expect("compare reports every latency metric");
                (
                    row.delta_pct,
                    row.ci_pct,
                    row.verdict.as_str(),
                    row.reason.clone(),
                    format!("{} → {}", fmt_ms(row.before_ms), fmt_ms(row.after_ms)),
                )
            }
            RegressionMetric::Throughput => {
                let t = &report.throughput;
                (
                    t.delta_pct,
                    t.ci_pct,
                    t.verdict.as_str(),
                    t.reason.clone(),
                    format!("{:.1}/s → {:.1}/s", t.before_rps, t.after_rps),
                )
            }
            RegressionMetric::ErrorRate => {
                let e = &report.error_rate;
                let delta =
                    e.relative_change_pct
                        .or(if e.delta_pp == 0.0 { Some(0.0) } else { None });
                (
                    delta,
                    None,
                    e.verdict.as_str(),
                    e.reason.clone(),
                    format!(
                        "{:.3}% → {:.3}%, {:+.3} pp",
                        e.before_pct, e.after_pct, e.delta_pp
                    ),
                )
            }
        };
        let ci_text = ci.map_or(String::new(), |c| {
            format!(", {conf} CI [{:+.1}%, {:+.1}%]", c.low, c.high)
        });
        let delta_text = delta.map_or("-".to_string(), |d| format!("{d:+.1}%"));
        r.actual = Some(format!("{delta_text} ({unit_word}{ci_text})"));
        r.actual_value = delta;
        match verdict {
            "regressed" => {
                r.status = Status::Fail;
                r.message = format!(
                    "{} regressed by {delta_text} vs the baseline, significant at {conf} and beyond the allowed {}",
                    m.name(),
                    regression.max_increase_written
                );
            }
            "insufficient_data" => {
                r.status = Status::Skipped;
                r.message = format!(
                    "insufficient data: {}",
                    reason.unwrap_or_else(|| "too few samples".into())
                );
            }
            _ => r.status = Status::Pass,
        }
        out.push(r);
    }
    Ok(out)
}
