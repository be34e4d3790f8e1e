//! `chokepoint demo`: the method on the built-in lab. Today: plant a
//! bottleneck, take a baseline, apply the lab's fix, re-run under the same
//! load and validate the difference with statistics. (Isolation and diagnosis
//! join as their commands land.)

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use chokepoint_engine::{Arrival, Limits, LoadModel, RequestSpec, RunConfig, StopSignal, Target};
use chokepoint_lab::{LabConfig, LabHandle};
use chokepoint_report::text::{fmt_count, fmt_ms};
use chokepoint_stats::bootstrap::RunLatency;
use chokepoint_stats::compare::{self, CompareConfig, LatencyComparison, Verdict};
use clap::Args;
use serde_json::json;

use crate::args::Plan;
use crate::run_cmd::{execute, Executed, EXIT_INTERRUPTED};
use crate::{signals, units, Failure};

/// Flags of `chokepoint demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Planted bottleneck: pool-exhaustion, sync-email, payment-tail, n-plus-one,
    /// missing-index, lock-contention, cache-stampede, stalls, leak or healthy.
    #[arg(long, default_value = "pool-exhaustion", value_name = "NAME")]
    scenario: String,
    /// Shorter runs (about 15 s in all).
    #[arg(long)]
    quick: bool,
    /// Offered load [default: 70% of the lab's analytic capacity, or 50/s].
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    rate: Option<f64>,
    /// Keep both runs (baseline/ and fixed/ run directories) in DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON document (schema chokepoint.demo.v1) instead of the story.
    #[arg(long)]
    json: bool,
}

struct Story {
    json: bool,
}

impl Story {
    fn say(&self, text: &str) {
        if !self.json {
            crate::print_stdout(text);
        }
    }
}

/// Runs the demo; returns the exit code.
pub fn run(args: DemoArgs) -> Result<i32, Failure> {
    let names = LabConfig::scenario_names();
    let info = LabConfig::scenario_info(&args.scenario).ok_or_else(|| {
        Failure::Usage(format!(
            "unknown scenario `{}`; valid: {}",
            args.scenario,
            names.join(", ")
        ))
    })?;
    let planted = LabConfig::scenario(&args.scenario).expect("every listed scenario has a config");
    let story = Story { json: args.json };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the lab runtime: {e}")))?;
    let stop = StopSignal::new();
    signals::stop_on_signals(&stop);
    let quiet = args.json || !std::io::stderr().is_terminal();

    let rate = args.rate.unwrap_or_else(|| {
        planted
            .capacity_rps()
            .map_or(50.0, |c| (0.7 * c).round().max(1.0))
    });
    let (warmup, duration) = if args.quick {
        (Duration::from_secs(1), Duration::from_secs(5))
    } else {
        (Duration::from_secs(2), Duration::from_secs(12))
    };

    story.say(&format!(
        "chokepoint demo · scenario `{}`\n  planted: {}\n\n",
        info.name, info.description
    ));

    // Step 1: baseline.
    let lab = start_lab(&runtime, planted.clone())?;
    story.say(&format!(
        "Baseline: {} {} at {} req/s (Poisson arrivals), {} s measured after {} s warmup\n  lab: {} (checkout service, SQLite pool, payment and email dependencies)\n\n",
        info.method,
        info.path,
        rate,
        duration.as_secs(),
        warmup.as_secs(),
        lab.base_url()
    ));
    let plan = demo_plan(&lab, info.method, info.path, rate, warmup, duration)?;
    let before = execute(
        &plan,
        args.out.as_ref().map(|d| d.join("baseline")).as_deref(),
        quiet,
        true,
        &stop,
    )?;
    runtime.block_on(lab.shutdown());
    story.say(&indent(&chokepoint_report::text::render_run(
        &before.summary,
    )));
    if stop.is_stopped() {
        return Ok(EXIT_INTERRUPTED);
    }

    let Some(fix) = info.fix else {
        story.say("\nNothing is planted in `healthy`: there is no fix to validate.\n");
        if args.json {
            crate::print_stdout(&format!(
                "{}\n",
                json!({"schema": "chokepoint.demo.v1", "scenario": info.name, "baseline": before.summary})
            ));
        }
        return Ok(0);
    };

    // Fix, re-run under the same load, validate.
    let fixed_config = planted.with_fix(fix);
    let lab = start_lab(&runtime, fixed_config)?;
    story.say(&format!(
        "\nFix and validate: apply `{fix}` and re-run under the same load\n\n"
    ));
    let plan = demo_plan(&lab, info.method, info.path, rate, warmup, duration)?;
    let after = execute(
        &plan,
        args.out.as_ref().map(|d| d.join("fixed")).as_deref(),
        quiet,
        true,
        &stop,
    )?;
    runtime.block_on(lab.shutdown());
    if stop.is_stopped() {
        return Ok(EXIT_INTERRUPTED);
    }
    let config = CompareConfig::default();
    let comparison = compare::compare_latency(&latency_of(&before), &latency_of(&after), &config)
        .map_err(|e| Failure::Usage(format!("comparison failed: {e}")))?;
    story.say(&render_comparison(
        &before,
        &after,
        &comparison,
        &fix.to_string(),
    ));
    if args.json {
        let metrics: Vec<_> = comparison
            .metrics
            .iter()
            .map(|m| {
                json!({
                    "metric": m.metric.name(),
                    "before_ms": m.before_us / 1000.0,
                    "after_ms": m.after_us / 1000.0,
                    "delta_pct": m.delta_pct,
                    "ci_pct": m.ci_pct.map(|c| [c.low, c.high]),
                    "p_value": m.p_value,
                    "verdict": m.verdict.name(),
                })
            })
            .collect();
        crate::print_stdout(&format!(
            "{}\n",
            json!({
                "schema": "chokepoint.demo.v1",
                "scenario": info.name,
                "planted": info.description,
                "fix": fix.to_string(),
                "rate": rate,
                "baseline": before.summary,
                "fixed": after.summary,
                "comparison": {"metrics": metrics, "verdict": comparison.verdict.name()},
            })
        ));
    }
    Ok(0)
}

fn start_lab(runtime: &tokio::runtime::Runtime, config: LabConfig) -> Result<LabHandle, Failure> {
    runtime
        .block_on(chokepoint_lab::start(config))
        .map_err(|e| Failure::Usage(format!("cannot start the lab: {e}")))
}

fn demo_plan(
    lab: &LabHandle,
    method: &str,
    path: &str,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<Plan, Failure> {
    let url = format!("{}{}", lab.base_url(), path);
    let target = Target::parse(&url).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut config = RunConfig::new(
        target,
        LoadModel::Open {
            rate,
            arrival: Arrival::Poisson,
            max_connections: 2_000,
        },
    );
    config.requests = vec![RequestSpec {
        name: format!("{method} {path}"),
        method: method.to_string(),
        path: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        weight: 1,
    }];
    config.limits = Limits {
        warmup_ns: warmup.as_nanos() as u64,
        duration_ns: Some(duration.as_nanos() as u64),
        max_requests: None,
    };
    config.timeout = Duration::from_secs(10);
    Ok(Plan {
        config,
        target_display: url,
        expected_duration: Some(duration),
    })
}

fn latency_of(run: &Executed) -> RunLatency<'_> {
    RunLatency {
        total: &run.result.measured.latency,
        intervals: &run.intervals,
    }
}

fn render_comparison(
    before: &Executed,
    after: &Executed,
    c: &LatencyComparison,
    fix: &str,
) -> String {
    let mut notes = Vec::new();
    let mut out = format!(
        "  {:<8} {:>10} {:>10} {:>9}   {:<22} {}\n",
        "metric", "before", "after", "change", "95% CI of the change", "verdict"
    );
    for m in &c.metrics {
        let change = m.delta_pct.map_or("-".to_string(), |d| format!("{d:+.1}%"));
        let ci = m.ci_pct.map_or("-".to_string(), |ci| {
            format!("[{:+.1}%, {:+.1}%]", ci.low, ci.high)
        });
        let verdict = match &m.verdict {
            Verdict::InsufficientData { reason } => {
                notes.push(format!("{}: {reason}", m.metric.name()));
                "insufficient data*".to_string()
            }
            v => v.name().replace('_', " "),
        };
        out.push_str(&format!(
            "  {:<8} {:>10} {:>10} {:>9}   {:<22} {}\n",
            m.metric.name(),
            fmt_ms(m.before_us / 1000.0),
            fmt_ms(m.after_us / 1000.0),
            change,
            ci,
            verdict
        ));
    }
    let (b, a) = (&before.summary, &after.summary);
    out.push_str(&format!(
        "  {:<8} {:>10} {:>10}\n  {:<8} {:>10} {:>10}\n",
        "req/s",
        format!("{:.1}", b.throughput_rps),
        format!("{:.1}", a.throughput_rps),
        "errors",
        fmt_count(b.error_count()),
        fmt_count(a.error_count())
    ));
    for note in &notes {
        out.push_str(&format!("  * {note}\n"));
    }
    // Headline: the highest percentile with enough samples to judge.
    let judged = c.metrics.iter().rev().find(|m| {
        m.metric.quantile().is_some() && !matches!(m.verdict, Verdict::InsufficientData { .. })
    });
    let headline = match (c.verdict.clone(), judged) {
        (Verdict::Improved, Some(m)) => format!(
            "\nVerdict: the fix `{fix}` is a significant improvement: {} {} → {} ({}), beyond noise at 95% confidence.\n",
            m.metric.name().to_uppercase().replace('_', "."),
            fmt_ms(m.before_us / 1000.0),
            fmt_ms(m.after_us / 1000.0),
            m.delta_pct.map_or("-".into(), |d| format!("{d:+.1}%"))
        ),
        (Verdict::Regressed, _) => format!("\nVerdict: the fix `{fix}` made latency significantly worse.\n"),
        (Verdict::NoSignificantChange, _) => {
            format!("\nVerdict: no significant latency change from `{fix}` (its effect is elsewhere, or within noise).\n")
        }
        (Verdict::InsufficientData { reason }, _) => format!("\nVerdict: not enough data to judge `{fix}`: {reason}.\n"),
        (Verdict::Improved, None) => format!("\nVerdict: the fix `{fix}` is a significant improvement.\n"),
    };
    out.push_str(&headline);
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
