//! `chokepoint stress`: the capacity search (open model: grow the rate
//! geometrically until a step fails, then bisect) and the concurrency sweep
//! (closed model at N = 1, 2, 4, ... with a Universal Scalability Law fit).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use chokepoint_engine::StopSignal;
use chokepoint_report::redact::redact_url;
use chokepoint_report::stress::{
    render_stress, sig, trim, Bracket, Saturation, StressReport, StressStep, UslReport,
    STRESS_SCHEMA,
};
use chokepoint_report::LatencyMs;
use chokepoint_stats::knee::{find_knee, KNEE_METHOD};
use chokepoint_stats::usl::{self, UslClass, UslPoint};
use clap::{Args, ValueEnum};

use crate::args::{self, ConnectionArgs, LoadArgs, RequestArgs};
use crate::run_cmd::EXIT_INTERRUPTED;
use crate::scenario::ArrivalName;
use crate::units;
use crate::watch::{execute_watched, WatchArgs};
use crate::{signals, Failure};

/// What `--sweep` varies.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKind {
    /// Closed model at N = 1, 2, 4, 8, ... connections, with a USL fit.
    Concurrency,
}

/// Flags of `chokepoint stress`.
#[derive(Args, Debug, Clone)]
pub struct StressArgs {
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Latency objective a step must meet, e.g. "p99<200ms" (metrics p50, p90,
    /// p95, p99, p99.9, max, mean; `<` or `<=`); repeatable or comma-separated.
    #[arg(long, value_name = "SLO", value_parser = parse_slo_list)]
    slo: Vec<Vec<Slo>>,
    /// Highest rate to try [default: 100000/s].
    #[arg(long = "max-rate", value_name = "RATE", value_parser = units::parse_rate)]
    max_rate: Option<f64>,
    /// With --sweep concurrency: the most connections (N = 1, 2, 4, ... up to this).
    #[arg(long = "max-concurrency", value_name = "N", default_value_t = 64)]
    max_concurrency: u64,
    /// First rate of the geometric search.
    #[arg(long = "start-rate", value_name = "RATE", value_parser = units::parse_rate, default_value = "10")]
    start_rate: f64,
    /// Factor between successive rates while growing.
    #[arg(long, value_name = "FACTOR", default_value_t = 2.0)]
    growth: f64,
    /// Stop bisecting when the bracket is this narrow (relative to the passing rate).
    #[arg(long, value_name = "PCT", value_parser = units::parse_percent, default_value = "5%")]
    precision: f64,
    /// Measured duration of each step.
    #[arg(long = "step-duration", value_name = "DUR", value_parser = units::parse_duration, default_value = "10s")]
    step_duration: Duration,
    /// Largest error rate a passing step may have.
    #[arg(long = "error-budget", value_name = "PCT", value_parser = units::parse_percent, default_value = "1%")]
    error_budget: f64,
    /// Warmup before each step's measured window (excluded from its statistics).
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Most steps in all (the search stops there).
    #[arg(long = "max-steps", value_name = "N", default_value_t = 20)]
    max_steps: u32,
    /// Instead of searching a rate, sweep concurrency and fit the USL.
    #[arg(long, value_enum, value_name = "WHAT")]
    sweep: Option<SweepKind>,
    /// Open-model arrival spacing.
    #[arg(long, value_enum, value_name = "KIND")]
    arrival: Option<ArrivalName>,
    /// Open model: most concurrent connections per step [default: 10000].
    #[arg(long = "max-connections", value_name = "N")]
    max_connections: Option<u64>,
    #[command(flatten)]
    watch: WatchArgs,
    /// Keep every step as a run directory (DIR/step-NN-...) plus DIR/stress.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the chokepoint.stress.v1 JSON on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
}

/// A latency objective: `metric < limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Which latency statistic.
    pub metric: SloMetric,
    /// Limit in milliseconds.
    pub limit_ms: f64,
    /// `<=` rather than `<`.
    pub inclusive: bool,
}

/// The latency statistics an objective can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloMetric {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P99_9,
    /// Largest.
    Max,
    /// Mean.
    Mean,
}

impl SloMetric {
    fn name(self) -> &'static str {
        match self {
            SloMetric::P50 => "p50",
            SloMetric::P90 => "p90",
            SloMetric::P95 => "p95",
            SloMetric::P99 => "p99",
            SloMetric::P99_9 => "p99.9",
            SloMetric::Max => "max",
            SloMetric::Mean => "mean",
        }
    }

    fn of(self, l: &LatencyMs) -> f64 {
        match self {
            SloMetric::P50 => l.p50,
            SloMetric::P90 => l.p90,
            SloMetric::P95 => l.p95,
            SloMetric::P99 => l.p99,
            SloMetric::P99_9 => l.p99_9,
            SloMetric::Max => l.max,
            SloMetric::Mean => l.mean,
        }
    }
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}{}ms",
            self.metric.name(),
            if self.inclusive { "<=" } else { "<" },
            trim(self.limit_ms)
        )
    }
}

const SLO_SYNTAX: &str =
    "expected METRIC<DURATION such as p99<200ms (metrics: p50, p90, p95, p99, p99.9, max, mean)";

/// Parses one objective: `p99<200ms`, `p99.9<=1s`, `mean<50ms`.
pub fn parse_slo(text: &str) -> Result<Slo, String> {
    let t = text.trim();
    let (name, rest, inclusive) = if let Some((n, r)) = t.split_once("<=") {
        (n, r, true)
    } else if let Some((n, r)) = t.split_once('<') {
        (n, r, false)
    } else {
        return Err(format!("`{text}`: {SLO_SYNTAX}"));
    };
    let metric = match name.trim().to_ascii_lowercase().as_str() {
        "p50" | "median" => SloMetric::P50,
        "p90" => SloMetric::P90,
        "p95" => SloMetric::P95,
        "p99" => SloMetric::P99,
        "p99.9" | "p999" | "p99_9" => SloMetric::P99_9,
        "max" => SloMetric::Max,
        "mean" => SloMetric::Mean,
        other => return Err(format!("`{text}`: unknown metric `{other}`; {SLO_SYNTAX}")),
    };
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with(['<', '=', '>']) {
        return Err(format!("`{text}`: {SLO_SYNTAX}"));
    }
    let limit = units::parse_duration(rest).map_err(|e| format!("`{text}`: {e}"))?;
    if limit.is_zero() {
        return Err(format!("`{text}`: the limit must be longer than zero"));
    }
    Ok(Slo {
        metric,
        limit_ms: limit.as_secs_f64() * 1000.0,
        inclusive,
    })
}

fn parse_slo_list(text: &str) -> Result<Vec<Slo>, String> {
    text.split(',').map(parse_slo).collect()
}

/// What a step must meet.
#[derive(Debug, Clone)]
pub struct Criteria {
    /// Latency objectives.
    pub slo: Vec<Slo>,
    /// Largest error rate.
    pub error_budget: f64,
    /// Smallest achieved/offered (open model only).
    pub min_achieved_ratio: f64,
}

/// Smallest achieved/offered ratio of a passing open-model step.
pub const MIN_ACHIEVED_RATIO: f64 = 0.98;

/// A criterion's verdict on one step: (name, detail, severity = measured/limit).
type Broken = (&'static str, String, f64);

/// Judges a step; returns the broken criteria.
pub fn judge(step: &StressStep, criteria: &Criteria) -> Vec<Broken> {
    let mut broken = Vec::new();
    if let Some(offered) = step.offered_rps {
        let need = criteria.min_achieved_ratio * offered;
        if step.achieved_rps < need {
            broken.push((
                "throughput",
                format!(
                    "achieved {:.1} < {}% of {} req/s{}",
                    step.achieved_rps,
                    trim(criteria.min_achieved_ratio * 100.0),
                    trim(offered),
                    if step.dropped > 0 {
                        format!(" ({} arrivals dropped)", step.dropped)
                    } else {
                        String::new()
                    }
                ),
                need / step.achieved_rps.max(1e-9),
            ));
        }
    }
    if step.requests == 0 {
        broken.push(("throughput", "no request completed".into(), f64::INFINITY));
    }
    if step.error_rate > criteria.error_budget {
        let kinds: Vec<String> = step
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        broken.push((
            "errors",
            format!(
                "errors {:.2}% > {}% ({})",
                step.error_rate * 100.0,
                trim(criteria.error_budget * 100.0),
                kinds.join(", ")
            ),
            step.error_rate / criteria.error_budget.max(1e-9),
        ));
    }
    for slo in &criteria.slo {
        if step.latency_ms.count == 0 {
            continue;
        }
        let value = slo.metric.of(&step.latency_ms);
        let ok = if slo.inclusive {
            value <= slo.limit_ms
        } else {
            value < slo.limit_ms
        };
        if !ok {
            broken.push((
                "latency",
                format!(
                    "{} {} {} {}",
                    slo.metric.name(),
                    chokepoint_report::text::fmt_ms(value),
                    if slo.inclusive { ">" } else { "≥" },
                    chokepoint_report::text::fmt_ms(slo.limit_ms)
                ),
                value / slo.limit_ms,
            ));
        }
    }
    broken
}

struct Search<'a> {
    args: &'a StressArgs,
    criteria: Criteria,
    stop: StopSignal,
    steps: Vec<StressStep>,
    show_progress: bool,
    notes: Vec<String>,
    watch_lost: bool,
}

enum Load {
    Rate(f64),
    Clients(u64),
}

impl Search<'_> {
    fn run_step(&mut self, load: Load, phase: &str) -> Result<Option<&StressStep>, Failure> {
        let index = self.steps.len() as u32 + 1;
        let a = self.args;
        let mut load_args = LoadArgs {
            duration: Some(a.step_duration),
            warmup: Some(a.warmup),
            ..LoadArgs::default()
        };
        let label = match load {
            Load::Rate(rate) => {
                load_args.rate = Some(rate);
                load_args.arrival = a.arrival;
                load_args.max_connections = a.max_connections;
                format!("rate-{}", trim(rate))
            }
            Load::Clients(n) => {
                load_args.concurrency = Some(n);
                format!("c-{n}")
            }
        };
        let plan = args::plan(&a.request, &a.connection, &load_args).map_err(Failure::Usage)?;
        let dir = a
            .out
            .as_ref()
            .map(|d| d.join(format!("step-{index:02}-{label}")));
        // A watched process that went away mid-search: go on without the probe.
        if !self.watch_lost
            && !a.watch.is_empty()
            && chokepoint_probe::Sampler::new(&a.watch.target()).is_err()
        {
            self.watch_lost = true;
            self.notes.push(format!(
                "the watched target was gone before step {index}: later steps have no resources"
            ));
        }
        let no_watch = WatchArgs::default();
        let watch = if self.watch_lost { &no_watch } else { &a.watch };
        let done = execute_watched(
            &plan,
            dir.as_deref(),
            a.quiet || a.json,
            watch,
            &self.stop,
            None,
        )?;
        let s = done.summary;
        let mut step = StressStep {
            index,
            phase: phase.into(),
            offered_rps: s.rate_target,
            concurrency: s.concurrency,
            achieved_rps: s.throughput_rps,
            duration_s: s.duration_s,
            requests: s.requests,
            ok: s.ok,
            errors: s.errors.clone(),
            error_rate: s.error_rate,
            dropped: s.dropped,
            latency_ms: s.latency_ms,
            service_time_ms: s.service_time_ms,
            mean_in_flight: s.mean_in_flight,
            passed: false,
            failed: Vec::new(),
            failed_detail: Vec::new(),
            resources: s.resources.clone(),
            dir: dir.map(|d| d.display().to_string()),
            interrupted: s.interrupted,
        };
        let broken = judge(&step, &self.criteria);
        step.passed = broken.is_empty() && !step.interrupted;
        for (name, detail, _) in &broken {
            if !step.failed.iter().any(|f| f == name) {
                step.failed.push((*name).to_string());
            }
            step.failed_detail.push(detail.clone());
        }
        if self.show_progress {
            eprintln!(
                "step {index:>2}  {:>12}  achieved {:>9.1}/s  p99 {:>9}  errors {:>6.2}%  {}",
                match (step.offered_rps, step.concurrency) {
                    (_, Some(c)) => format!("{c} clients"),
                    (Some(r), None) => format!("{}/s", trim(r)),
                    _ => String::new(),
                },
                step.achieved_rps,
                chokepoint_report::text::fmt_ms(step.latency_ms.p99),
                step.error_rate * 100.0,
                if step.passed {
                    "pass".to_string()
                } else {
                    format!("FAIL {}", step.failed_detail.join("; "))
                }
            );
        }
        if step.interrupted {
            self.steps.push(step);
            return Ok(None);
        }
        self.steps.push(step);
        Ok(self.steps.last())
    }

    fn budget_left(&self) -> bool {
        (self.steps.len() as u32) < self.args.max_steps && !self.stop.is_stopped()
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: StressArgs) -> Result<i32, Failure> {
    if !(args.growth > 1.0 && args.growth <= 100.0) {
        return Err(Failure::Usage(format!(
            "--growth {} must be above 1 (and at most 100)",
            args.growth
        )));
    }
    if args.precision <= 0.0 {
        return Err(Failure::Usage("--precision must be above 0%".into()));
    }
    if args.step_duration.is_zero() {
        return Err(Failure::Usage(
            "--step-duration must be longer than zero".into(),
        ));
    }
    if args.max_steps == 0 {
        return Err(Failure::Usage("--max-steps must be at least 1".into()));
    }
    if args.sweep.is_some()
        && (args.arrival.is_some() || args.max_connections.is_some() || args.max_rate.is_some())
    {
        return Err(Failure::Usage(
            "--arrival, --max-connections and --max-rate apply to the rate search; --sweep concurrency takes --max-concurrency"
                .into(),
        ));
    }
    if args.max_concurrency == 0 || args.max_concurrency > 100_000 {
        return Err(Failure::Usage(
            "--max-concurrency must be between 1 and 100000".into(),
        ));
    }
    let max_rate = args.max_rate;
    if args.sweep.is_none() && max_rate.is_some_and(|m| m < args.start_rate) {
        return Err(Failure::Usage(format!(
            "--max-rate {} is below --start-rate {}",
            trim(max_rate.unwrap_or(0.0)),
            trim(args.start_rate)
        )));
    }
    // Validate the target and flags once before any load (bad input exits 2 at once).
    let probe_load = LoadArgs {
        rate: Some(args.start_rate),
        duration: Some(args.step_duration),
        ..LoadArgs::default()
    };
    let plan = args::plan(&args.request, &args.connection, &probe_load).map_err(Failure::Usage)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
    }
    // A missing watched process or cgroup is bad input too: check before loading.
    if let Some(w) = crate::watch::Watch::start(&args.watch, None)? {
        w.finish(0);
    }
    let stop = StopSignal::new();
    signals::stop_on_signals(&stop);
    let criteria = Criteria {
        slo: args.slo.iter().flatten().copied().collect(),
        error_budget: args.error_budget,
        min_achieved_ratio: MIN_ACHIEVED_RATIO,
    };
    let mut search = Search {
        args: &args,
        criteria,
        stop: stop.clone(),
        steps: Vec::new(),
        show_progress: !args.quiet && !args.json && std::io::stderr().is_terminal(),
        notes: Vec::new(),
        watch_lost: false,
    };
    if search.criteria.slo.is_empty() {
        search
            .notes
            .push("no --slo given: steps are judged on errors and throughput only".into());
    }
    let mut report = match args.sweep {
        None => rate_search(&mut search, max_rate.unwrap_or(100_000.0))?,
        Some(SweepKind::Concurrency) => concurrency_sweep(&mut search, args.max_concurrency)?,
    };
    report.target = redact_url(&plan.target_display);
    report.interrupted = stop.is_stopped() || report.steps.iter().any(|s| s.interrupted);
    let json = serde_json::to_string_pretty(&report).expect("reports serialize");
    if let Some(dir) = &args.out {
        let path = dir.join("stress.json");
        std::fs::write(&path, &json)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
        crate::html_out::report_or_warn(crate::html_out::write_stress_report(dir, &report));
    }
    if args.json {
        crate::print_stdout(&format!("{json}\n"));
    } else {
        crate::print_stdout(&render_stress(&report));
    }
    Ok(if report.interrupted {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

fn base_report(search: &Search<'_>, mode: &str, max: f64) -> StressReport {
    let a = search.args;
    StressReport {
        schema: STRESS_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.into(),
        slo: search.criteria.slo.iter().map(Slo::to_string).collect(),
        error_budget: a.error_budget,
        min_achieved_ratio: if mode == "rate" {
            MIN_ACHIEVED_RATIO
        } else {
            0.0
        },
        step_duration_s: a.step_duration.as_secs_f64(),
        warmup_s: a.warmup.as_secs_f64(),
        max_rate: Some(max),
        knee_method: KNEE_METHOD.into(),
        ..StressReport::default()
    }
}

/// Rounds a rate to 3 significant digits (readable step rates).
fn round_rate(rate: f64) -> f64 {
    if rate <= 0.0 {
        return rate;
    }
    let magnitude = 10f64.powf(rate.log10().floor() - 2.0);
    (rate / magnitude).round() * magnitude
}

fn rate_search(search: &mut Search<'_>, max_rate: f64) -> Result<StressReport, Failure> {
    let a = search.args;
    let (mut last_pass, mut first_fail): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = a.start_rate.min(max_rate);
    // Grow geometrically until a step fails (or the maximum passes).
    while search.budget_left() {
        let Some(step) = search.run_step(Load::Rate(rate), "grow")? else {
            break;
        };
        if step.passed {
            last_pass = Some(rate);
            if rate >= max_rate {
                break;
            }
            rate = round_rate(rate * a.growth).min(max_rate);
        } else {
            first_fail = Some(rate);
            break;
        }
    }
    // The very first step failed: come down until one passes.
    if last_pass.is_none() {
        while let Some(fail) = first_fail {
            let lower = round_rate(fail / a.growth);
            if lower < 0.5 || !search.budget_left() {
                break;
            }
            let Some(step) = search.run_step(Load::Rate(lower), "grow")? else {
                break;
            };
            if step.passed {
                last_pass = Some(lower);
                break;
            }
            first_fail = Some(lower);
        }
    }
    // Bisect the bracket.
    while let (Some(pass), Some(fail)) = (last_pass, first_fail) {
        if (fail - pass) / pass <= a.precision || !search.budget_left() {
            break;
        }
        let mid = round_rate((pass + fail) / 2.0);
        if mid <= pass || mid >= fail {
            break;
        }
        let Some(step) = search.run_step(Load::Rate(mid), "bisect")? else {
            break;
        };
        if step.passed {
            last_pass = Some(mid);
        } else {
            first_fail = Some(mid);
        }
    }

    // Characterize the saturation: when no step went well past the first
    // failure, one overload step shows whether throughput plateaus (a
    // fixed-capacity resource) or collapses, and how latency responds.
    if let Some(fail) = first_fail {
        let highest = search
            .steps
            .iter()
            .filter_map(|s| s.offered_rps)
            .fold(0.0, f64::max);
        let overload = round_rate(fail * 1.5);
        if highest < 1.3 * fail && overload <= max_rate && search.budget_left() {
            if let Some(step) = search.run_step(Load::Rate(overload), "overload")? {
                if step.passed {
                    search.notes.push(format!(
                        "the overload step at {} req/s passed although {} req/s failed: the target's capacity varies between steps (noisy machine?)",
                        trim(overload),
                        trim(fail)
                    ));
                }
            }
        }
    }

    let mut report = base_report(search, "rate", max_rate);
    report.capacity_rps = last_pass;
    report.bracket = Bracket {
        passed_rps: last_pass,
        failed_rps: first_fail,
    };
    let curve: Vec<(f64, f64)> = search
        .steps
        .iter()
        .filter(|s| !s.interrupted && s.latency_ms.count > 0)
        .filter_map(|s| s.offered_rps.map(|o| (o, s.latency_ms.p99)))
        .collect();
    report.knee_rps = find_knee(&curve, 1.5).map(|k| k.x);
    analyse(search, &mut report);
    report.steps = std::mem::take(&mut search.steps);
    report.notes.append(&mut search.notes);
    Ok(report)
}

fn concurrency_sweep(search: &mut Search<'_>, max_clients: u64) -> Result<StressReport, Failure> {
    let mut n = 1u64;
    while n <= max_clients && search.budget_left() {
        if search.run_step(Load::Clients(n), "sweep")?.is_none() {
            break;
        }
        if n == max_clients {
            break;
        }
        n = (n * 2).min(max_clients);
    }
    let mut report = base_report(search, "concurrency", max_clients as f64);
    let done: Vec<&StressStep> = search.steps.iter().filter(|s| !s.interrupted).collect();
    report.capacity_rps = done
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.achieved_rps)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    report.bracket = Bracket {
        passed_rps: report.capacity_rps,
        failed_rps: done.iter().find(|s| !s.passed).map(|s| s.achieved_rps),
    };
    let curve: Vec<(f64, f64)> = done
        .iter()
        .filter(|s| s.latency_ms.count > 0)
        .filter_map(|s| s.concurrency.map(|c| (c as f64, s.latency_ms.p99)))
        .collect();
    report.knee_rps = find_knee(&curve, 1.5).and_then(|k| {
        done.iter()
            .find(|s| s.concurrency == Some(k.x as u64))
            .map(|s| s.achieved_rps)
    });
    report.knee_method = format!(
        "{KNEE_METHOD} (latency vs concurrency; reported as the throughput at that concurrency)"
    );
    let points: Vec<UslPoint> = done
        .iter()
        .filter_map(|s| {
            s.concurrency.map(|c| UslPoint {
                n: c as f64,
                throughput: s.achieved_rps,
            })
        })
        .collect();
    match usl::fit(&points) {
        Ok(fit) => report.usl = Some(usl_report(&fit)),
        Err(e) => search.notes.push(format!("no USL fit: {e}")),
    }
    analyse(search, &mut report);
    report.steps = std::mem::take(&mut search.steps);
    report.notes.append(&mut search.notes);
    Ok(report)
}

fn usl_report(fit: &usl::UslFit) -> UslReport {
    let mut warning = Vec::new();
    if fit.points < 6 {
        warning.push(format!(
            "only {} points: the fit (and above all κ) is weakly determined; measure at least 6 concurrency levels",
            fit.points
        ));
    }
    if fit.r2 < 0.9 {
        warning.push(format!(
            "R² = {:.2}: the USL describes these measurements poorly",
            fit.r2
        ));
    }
    let n_max = fit.n_max;
    let prediction = match fit.class {
        UslClass::NearLinear => format!(
            "throughput scales nearly linearly up to N = {n_max:.0} ({:.0}% of linear); {}",
            fit.efficiency_at_n_max * 100.0,
            match fit.n_star {
                Some(ns) if ns.is_finite() => format!(
                    "the fit places the peak at N* ≈ {ns:.0} ({:.0} req/s), beyond the range measured",
                    fit.x_max.unwrap_or(0.0)
                ),
                _ => "no peak is in sight in the range measured".into(),
            }
        ),
        UslClass::ContentionLimited => {
            let asymptote = if fit.sigma > 0.0 {
                fit.lambda / fit.sigma
            } else {
                f64::INFINITY
            };
            let n90 = if fit.sigma > 0.0 {
                // X(N) = 0.9·λ/σ  ⇔  N = 0.9(1−σ) / (σ(1 − 0.9)) with κ = 0.
                (0.9 * (1.0 - fit.sigma) / (0.1 * fit.sigma)).max(1.0)
            } else {
                f64::INFINITY
            };
            match fit.n_star.filter(|ns| ns.is_finite() && *ns <= 10.0 * n_max) {
                // A coherency term that matters within reach: there is a peak.
                Some(ns) => format!(
                    "contention: requests serialize on a shared resource (σ = {}); throughput peaks at about {:.0} req/s near N* ≈ {ns:.0} concurrent requests, and beyond that more concurrency lowers it (κ = {})",
                    sig(fit.sigma),
                    fit.x_max.unwrap_or(0.0),
                    sig(fit.kappa)
                ),
                None => format!(
                    "contention: requests serialize on a shared resource (σ = {}); throughput approaches λ/σ ≈ {asymptote:.0} req/s and reaches 90% of that by N ≈ {n90:.0}: more concurrency beyond that adds latency, not throughput",
                    sig(fit.sigma)
                ),
            }
        }
        UslClass::CoherencyLimited => {
            let ns = fit.n_star.unwrap_or(f64::INFINITY);
            format!(
                "coherency: beyond N* ≈ {ns:.0} concurrent requests, more concurrency lowers throughput (peak {:.0} req/s; at N = {:.0} the fit predicts {:.0} req/s)",
                fit.x_max.unwrap_or(0.0),
                2.0 * ns,
                fit.predict(2.0 * ns)
            )
        }
    };
    UslReport {
        sigma: fit.sigma,
        kappa: fit.kappa,
        lambda: fit.lambda,
        n_star: fit.n_star.filter(|n| n.is_finite()),
        x_max: fit.x_max,
        r2: fit.r2,
        sigma_se: fit.se_sigma,
        kappa_se: fit.se_kappa,
        lambda_se: fit.se_lambda,
        sigma_ci: fit.sigma_ci.map(|(a, b)| [a, b]),
        kappa_ci: fit.kappa_ci.map(|(a, b)| [a, b]),
        points: fit.points,
        class: fit.class.as_str().into(),
        prediction,
        warning: (!warning.is_empty()).then(|| warning.join("; ")),
    }
}

/// What failed first, the plateau, and the verdict in words.
fn analyse(search: &Search<'_>, report: &mut StressReport) {
    let steps: Vec<&StressStep> = search.steps.iter().filter(|s| !s.interrupted).collect();
    let load_of = |s: &StressStep| {
        s.offered_rps
            .or(s.concurrency.map(|c| c as f64))
            .unwrap_or(0.0)
    };
    let first_failure = steps
        .iter()
        .filter(|s| !s.passed)
        .min_by(|a, b| load_of(a).total_cmp(&load_of(b)));
    if let Some(step) = first_failure {
        let broken = judge(step, &search.criteria);
        let worst = broken
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(name, detail, _)| ((*name).to_string(), detail.clone()));
        let saturated = step
            .resources
            .as_ref()
            .and_then(|r| r.saturated.iter().find(|s| s.cause == "target").cloned());
        if let Some(contended) = step
            .resources
            .as_ref()
            .and_then(|r| r.saturated.iter().find(|s| s.cause == "machine"))
        {
            report.notes.push(format!(
                "{} contended by other work on the machine during step {} ({}): capacity may be understated",
                contended.resource, step.index, contended.evidence
            ));
        }
        let where_ = match (step.offered_rps, step.concurrency) {
            (_, Some(c)) => format!("at {c} clients"),
            (Some(r), None) => format!("at {} req/s", trim(r)),
            _ => String::new(),
        };
        match (saturated, worst) {
            (Some(sat), worst) => {
                report.failed_first = Some(sat.resource.clone());
                report.failed_first_detail = Some(format!(
                    "{} saturated {where_} ({}){}",
                    sat.resource,
                    sat.evidence,
                    worst.map(|(_, d)| format!("; {d}")).unwrap_or_default()
                ));
            }
            (None, Some((name, detail))) => {
                report.failed_first = Some(name);
                report.failed_first_detail = Some(format!("{detail} {where_}"));
            }
            (None, None) => {}
        }
    }

    // Plateau: the most loaded steps achieve about the same throughput while
    // the offered load (or concurrency) keeps growing and latency climbs.
    let lowest = steps
        .iter()
        .filter(|s| s.latency_ms.count > 0)
        .min_by(|a, b| load_of(a).total_cmp(&load_of(b)));
    let highest = steps
        .iter()
        .filter(|s| s.latency_ms.count > 0)
        .max_by(|a, b| load_of(a).total_cmp(&load_of(b)));
    let x_max = steps.iter().map(|s| s.achieved_rps).fold(0.0, f64::max);
    let plateau = match (lowest, highest) {
        (Some(lo), Some(hi)) if !std::ptr::eq(*lo, *hi) => {
            let w0 = lo.latency_ms.mean.max(lo.service_time_ms.mean);
            let saturated_load = match (hi.offered_rps, hi.concurrency) {
                // Open model: offered clearly above what came back.
                (Some(offered), _) => offered >= 1.05 * hi.achieved_rps,
                // Closed model: throughput stopped growing with clients.
                (None, Some(_)) => {
                    hi.achieved_rps < 0.75 * lo.achieved_rps * load_of(hi) / load_of(lo).max(1.0)
                }
                _ => false,
            };
            let grows = hi.latency_ms.mean >= 1.5 * w0;
            // A plateau, not a collapse: the highest step still delivers most
            // of the best throughput. Its achieved rate reads low even on a
            // flat plateau (it counts the drain after the window, and the
            // open model leaves arrivals unsent once its connections are all
            // queued at the target: 330 of 397 req/s against a 400 req/s pool
            // offered 800), hence 80%.
            (saturated_load && grows && hi.achieved_rps >= 0.8 * x_max && w0 > 0.0).then(|| {
                Saturation {
                    plateau_rps: x_max,
                    low_load_latency_ms: w0,
                    saturated_latency_ms: hi.latency_ms.mean,
                    slots: x_max * w0 / 1000.0,
                }
            })
        }
        _ => None,
    };
    report.saturation = plateau;

    let cpu_note = |s: Option<&&StressStep>| -> String {
        let Some(r) = s.and_then(|s| s.resources.as_ref()) else {
            return String::new();
        };
        match (
            r.saturated
                .iter()
                .find(|x| x.resource == "cpu" && x.cause == "target"),
            r.cpu_cores_mean,
        ) {
            (Some(sat), _) => format!("; the target's CPU is saturated ({}): the fixed-capacity resource is CPU", sat.evidence),
            (None, Some(c)) => format!(
                "; the target's CPU is not saturated ({c:.2} of {:.0} CPUs), so look for a pool, lock or queue in front of it",
                r.cpus_available.unwrap_or(1.0)
            ),
            _ => String::new(),
        }
    };
    let mut verdict = match (&plateau, report.failed_first.as_deref()) {
        (Some(p), _) => format!(
            "throughput plateaus at {:.0} req/s while latency grows (mean {} at low load → {} at the highest load): requests queue for a fixed-capacity resource of at most about {:.0} concurrent slots (L = X·W = {:.0} req/s × {} mean latency at low load; fewer if requests hold it for only part of that time){}",
            p.plateau_rps,
            chokepoint_report::text::fmt_ms(p.low_load_latency_ms),
            chokepoint_report::text::fmt_ms(p.saturated_latency_ms),
            p.slots.max(1.0),
            p.plateau_rps,
            chokepoint_report::text::fmt_ms(p.low_load_latency_ms),
            cpu_note(highest)
        ),
        (None, Some("errors")) => format!(
            "errors break the budget before throughput saturates ({}): the target fails or sheds load",
            report.failed_first_detail.clone().unwrap_or_default()
        ),
        (None, Some("latency")) => format!(
            "the latency objective breaks before throughput saturates ({}): queueing builds before the plateau; capacity under this objective is {}",
            report.failed_first_detail.clone().unwrap_or_default(),
            report
                .capacity_rps
                .map_or("below the lowest rate tested".into(), |c| format!("{} req/s", trim(c)))
        ),
        (None, Some("throughput")) => {
            let lag = first_failure.map(|s| (s.dropped, s.latency_ms.p99, s.service_time_ms.p99));
            match lag {
                Some((dropped, lat, svc)) if dropped > 0 || lat > 5.0 * svc.max(0.001) => format!(
                    "throughput falls short ({}) while service time stays low (p99 {} vs latency p99 {}): requests wait before they are sent — the generator or its connection limit (--max-connections), not the target, may be the limit",
                    report.failed_first_detail.clone().unwrap_or_default(),
                    chokepoint_report::text::fmt_ms(svc),
                    chokepoint_report::text::fmt_ms(lat)
                ),
                _ => format!(
                    "throughput falls short ({})",
                    report.failed_first_detail.clone().unwrap_or_default()
                ),
            }
        }
        (None, Some(resource)) => format!(
            "{resource} saturates first: {}",
            report.failed_first_detail.clone().unwrap_or_default()
        ),
        (None, None) => match report.capacity_rps {
            Some(c) if report.mode == "rate" => format!(
                "no criterion failed up to {} req/s: capacity is at least that",
                trim(c)
            ),
            Some(c) => format!(
                "no criterion failed up to the largest concurrency measured ({} req/s)",
                trim(c)
            ),
            None => "no step completed".into(),
        },
    };
    if let Some(u) = &report.usl {
        verdict.push_str(&format!(". USL: {} ({})", u.class, u.prediction));
    }
    if report.steps.iter().any(|s| s.interrupted) || search.steps.iter().any(|s| s.interrupted) {
        verdict = format!("interrupted after {} steps; {verdict}", search.steps.len());
    }
    report.verdict = verdict;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_syntax() {
        let s = parse_slo("p99<200ms").unwrap();
        assert_eq!(s.metric, SloMetric::P99);
        assert_eq!(s.limit_ms, 200.0);
        assert!(!s.inclusive);
        assert_eq!(s.to_string(), "p99<200ms");
        let s = parse_slo(" p99.9 <= 1s ").unwrap();
        assert_eq!(
            (s.metric, s.limit_ms, s.inclusive),
            (SloMetric::P99_9, 1000.0, true)
        );
        assert_eq!(parse_slo_list("p50<10ms,max<2s").unwrap().len(), 2);
        for bad in [
            "p99<<200",
            "p99",
            "p98<200ms",
            "p99<200",
            "p99<0ms",
            "<200ms",
            "p99>200ms",
        ] {
            let e = parse_slo(bad).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
    }

    fn step(offered: f64, achieved: f64, p99: f64, errors: u64, requests: u64) -> StressStep {
        StressStep {
            offered_rps: Some(offered),
            achieved_rps: achieved,
            requests,
            error_rate: errors as f64 / requests.max(1) as f64,
            errors: [("status_5xx".to_string(), errors)].into_iter().collect(),
            latency_ms: LatencyMs {
                count: requests,
                p99,
                ..LatencyMs::default()
            },
            ..StressStep::default()
        }
    }

    #[test]
    fn judging_names_each_broken_criterion() {
        let criteria = Criteria {
            slo: vec![parse_slo("p99<200ms").unwrap()],
            error_budget: 0.01,
            min_achieved_ratio: MIN_ACHIEVED_RATIO,
        };
        assert!(judge(&step(100.0, 99.0, 150.0, 0, 1000), &criteria).is_empty());
        let names =
            |s: &StressStep| -> Vec<&str> { judge(s, &criteria).iter().map(|b| b.0).collect() };
        assert_eq!(names(&step(100.0, 97.0, 150.0, 0, 1000)), ["throughput"]);
        assert_eq!(names(&step(100.0, 99.0, 200.0, 0, 1000)), ["latency"]);
        assert_eq!(names(&step(100.0, 99.0, 10.0, 11, 1000)), ["errors"]);
        let broken = judge(&step(800.0, 400.0, 900.0, 0, 1000), &criteria);
        assert_eq!(broken.len(), 2);
        assert!(
            broken[0].1.contains("achieved 400.0 < 98% of 800"),
            "{broken:?}"
        );
    }

    #[test]
    fn rates_round_to_three_digits() {
        assert_eq!(round_rate(1234.5), 1230.0);
        assert_eq!(round_rate(600.0), 600.0);
        assert!((round_rate(12.345) - 12.3).abs() < 1e-9);
    }
}
