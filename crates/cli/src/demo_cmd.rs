//! `chokepoint demo`: the whole method on the built-in lab, as a short story
//! with numbers. The lab runs in this process with a planted bottleneck; each
//! step is the real command a user would type (this same binary, run as a
//! child process, so its CPU and memory are not the lab's):
//!
//! baseline (`run --trace-propagate --watch-pid`) → `stress` → `traces
//! analyze` → `diagnose` → apply the lab fix the diagnosis recommends → re-run
//! under the same load → `compare` → `budgets.toml` from the validated run →
//! `check`.
//!
//! The demo (not the diagnosis) knows the lab: which constraint was planted
//! and how a fix type maps onto a lab `Fix`. Exit 0 only when the diagnosis
//! named the planted constraint first and the fix validated as a significant
//! improvement (for `healthy`: when the diagnosis found nothing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chokepoint_diagnose::{Constraint, ConstraintClass, Diagnosis, FixType};
use chokepoint_engine::StopSignal;
use chokepoint_lab::{Fix, LabConfig, LabHandle, ScenarioInfo};
use chokepoint_report::compare::CompareReport;
use chokepoint_report::html::{Report, StoryStep};
use chokepoint_report::stress::StressReport;
use chokepoint_report::text::fmt_ms;
use clap::Args;
use serde_json::{json, Value};

use crate::diagnose_cmd::{self, Inputs};
use crate::html_out;
use crate::run_cmd::EXIT_INTERRUPTED;
use crate::rundir::{self, RunFiles};
use crate::{signals, units, Failure};

/// Flags of `chokepoint demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Planted bottleneck: pool-exhaustion, sync-email, payment-tail, n-plus-one,
    /// missing-index, lock-contention, cache-stampede, stalls, leak or healthy.
    #[arg(long, default_value = "pool-exhaustion", value_name = "NAME")]
    scenario: String,
    /// Shorter steps (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Offered load of the baseline and the re-run [default: the scenario's traffic].
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    rate: Option<f64>,
    /// Keep every step's files (run directories, stress, traces, diagnosis,
    /// comparison, budgets.toml, report.html) in DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON document (schema chokepoint.demo.v1) instead of the story.
    #[arg(long)]
    json: bool,
    /// I/O of the demo's load runs (as `run --io`).
    #[arg(long, value_enum, value_name = "KIND", default_value = "auto")]
    io: crate::args::IoName,
}

/// The constraint each scenario plants (ground truth: the demo's knowledge, not the diagnosis').
fn planted_class(scenario: &str) -> Option<ConstraintClass> {
    Some(match scenario {
        "pool-exhaustion" => ConstraintClass::Queueing,
        "sync-email" => ConstraintClass::SynchronousNonCritical,
        "payment-tail" => ConstraintClass::SlowDependency,
        "n-plus-one" => ConstraintClass::NPlusOne,
        "missing-index" => ConstraintClass::SlowQuery,
        "lock-contention" => ConstraintClass::LockContention,
        "cache-stampede" => ConstraintClass::CacheStampede,
        "stalls" => ConstraintClass::PeriodicStalls,
        "leak" => ConstraintClass::MemoryGrowth,
        _ => return None,
    })
}

/// The scenario's production-like traffic (requests per second).
fn default_rate(info: &ScenarioInfo, planted: &LabConfig) -> f64 {
    match info.name {
        "cache-stampede" => 200.0,
        "leak" | "healthy" => 100.0,
        "n-plus-one" | "missing-index" => 40.0,
        "payment-tail" => 60.0,
        _ => planted
            .capacity_rps()
            .map_or(50.0, |c| (0.7 * c).round().max(1.0)),
    }
}

/// Maps the diagnosis' recommended fix onto the lab's knobs: the lab's
/// vocabulary lives here, in the demo, never in the diagnosis.
fn lab_fix(c: &Constraint) -> Option<(Fix, String)> {
    let resource = c.resource.clone().unwrap_or_default().to_lowercase();
    for step in &c.fixes {
        let fix = match (c.class, step.fix) {
            (ConstraintClass::Queueing, FixType::PoolSizing) => {
                let n = step.setting.unwrap_or(64.0).round().clamp(1.0, 1024.0) as usize;
                Some(Fix::Pool(n))
            }
            (ConstraintClass::LockContention, FixType::HotPathRedesign) => Some(Fix::LockFree),
            (ConstraintClass::SynchronousNonCritical, FixType::Async)
                if resource.contains("email") =>
            {
                Some(Fix::AsyncEmail)
            }
            (ConstraintClass::SlowDependency, FixType::Timeouts)
                if resource.contains("payment") =>
            {
                let ms = step.setting.unwrap_or(100.0).max(1.0);
                Some(Fix::PaymentTimeout(Duration::from_secs_f64(ms / 1000.0)))
            }
            (ConstraintClass::NPlusOne, FixType::Batching) => Some(Fix::Join),
            (ConstraintClass::SlowQuery, FixType::QueryIndex) => Some(Fix::Index),
            (ConstraintClass::CacheStampede, FixType::Caching) => Some(Fix::SingleFlight),
            (ConstraintClass::PeriodicStalls, FixType::PauseTuning) => Some(Fix::NoStall),
            (ConstraintClass::MemoryGrowth, FixType::BoundMemory) => Some(Fix::NoLeak),
            _ => None,
        };
        if let Some(f) = fix {
            let short = step.action.split(':').next().unwrap_or(&step.action);
            return Some((f, format!("{} ({short})", step.fix.label())));
        }
    }
    None
}

struct Timing {
    warmup: Duration,
    duration: Duration,
    step: Duration,
    max_steps: u32,
}

impl Timing {
    fn new(quick: bool) -> Timing {
        if quick {
            Timing {
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(6),
                step: Duration::from_secs(1),
                max_steps: 5,
            }
        } else {
            Timing {
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(15),
                step: Duration::from_secs(3),
                max_steps: 7,
            }
        }
    }
}

struct Story {
    json: bool,
    steps: Vec<StoryStep>,
}

impl Story {
    fn say(&self, text: &str) {
        if !self.json {
            crate::print_stdout(text);
        }
    }

    fn step(&mut self, title: &str, command: Option<&str>, lines: Vec<String>, ok: Option<bool>) {
        let mark = match ok {
            Some(true) => " ✔",
            Some(false) => " ✘",
            None => "",
        };
        let mut text = format!("\n{title}{mark}\n");
        if let Some(c) = command {
            text.push_str(&format!("  $ {c}\n"));
        }
        for l in &lines {
            text.push_str(&format!("  {l}\n"));
        }
        self.say(&text);
        let mut all = Vec::new();
        if let Some(c) = command {
            all.push(format!("$ {c}"));
        }
        all.extend(lines);
        self.steps.push(StoryStep {
            title: title.to_string(),
            lines: all,
            ok,
        });
    }
}

/// A child `chokepoint` command, bounded in time.
struct Child<'a> {
    exe: &'a Path,
    stop: &'a StopSignal,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    shown: String,
}

fn shell_word(a: &str) -> String {
    if a.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

impl Child<'_> {
    fn run(&self, args: &[String], limit: Duration) -> Result<Ran, Failure> {
        let shown = format!(
            "chokepoint {}",
            args.iter()
                .map(|a| shell_word(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = Command::new(self.exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Usage(format!("cannot start `{shown}`: {e}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut o) = stdout {
                let _ = std::io::Read::read_to_string(&mut o, &mut s);
            }
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut o) = stderr {
                let _ = std::io::Read::read_to_string(&mut o, &mut s);
            }
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Failure::Usage(format!("`{shown}`: {e}")))?
            {
                break status;
            }
            if Instant::now() > deadline || self.stop.is_stopped() {
                // Ask it to stop gracefully (it writes a partial report), then make sure.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
                let grace = Instant::now() + Duration::from_secs(15);
                while Instant::now() < grace {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let status = child.wait().map_err(|e| Failure::Usage(e.to_string()))?;
                if !self.stop.is_stopped() {
                    return Err(Failure::Usage(format!(
                        "`{shown}` did not finish within {} s",
                        limit.as_secs()
                    )));
                }
                break status;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Ran {
            code: status.code().unwrap_or(EXIT_INTERRUPTED),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
            shown,
        })
    }
}

fn expect_ok(ran: &Ran, codes: &[i32]) -> Result<(), Failure> {
    if codes.contains(&ran.code) {
        return Ok(());
    }
    let last = ran
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(Failure::Usage(format!(
        "`{}` exited {}: {last}",
        ran.shown, ran.code
    )))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(x.log10().floor());
    for m in [1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0] {
        if m * mag >= x {
            return m * mag;
        }
    }
    10.0 * mag
}

fn rss_trend(run: &RunFiles) -> Option<chokepoint_stats::drift::Trend> {
    let path = run.file(crate::watch::RESOURCES_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let rows = diagnose_cmd::parse_csv(&text, &s(&path)).ok()?;
    let (x, y): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter_map(|r| Some((*r.get("second")?, *r.get("rss_bytes")?)))
        .unzip();
    chokepoint_stats::drift::trend(&x, &y, 0.95)
}

fn level_name(l: chokepoint_diagnose::Level) -> &'static str {
    match l {
        chokepoint_diagnose::Level::High => "high",
        chokepoint_diagnose::Level::Medium => "medium",
        chokepoint_diagnose::Level::Low => "low",
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

/// Runs the demo; returns the exit code.
pub fn run(args: DemoArgs) -> Result<i32, Failure> {
    let started = Instant::now();
    let names = LabConfig::scenario_names();
    let info = LabConfig::scenario_info(&args.scenario).ok_or_else(|| {
        Failure::Usage(format!(
            "unknown scenario `{}`; valid: {}",
            args.scenario,
            names.join(", ")
        ))
    })?;
    let planted = LabConfig::scenario(&args.scenario).expect("every listed scenario has a config");
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Usage(format!("cannot find this program's path: {e}")))?;
    let (out, temporary) = match &args.out {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("chokepoint-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&out)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", out.display())))?;
    let result = walk(&args, info, &planted, &exe, &out, started);
    if temporary {
        let _ = std::fs::remove_dir_all(&out);
    }
    result
}

fn start_lab(runtime: &tokio::runtime::Runtime, config: LabConfig) -> Result<LabHandle, Failure> {
    runtime
        .block_on(chokepoint_lab::start(config))
        .map_err(|e| Failure::Usage(format!("cannot start the lab: {e}")))
}

#[allow(clippy::too_many_lines)]
fn walk(
    args: &DemoArgs,
    info: &ScenarioInfo,
    planted: &LabConfig,
    exe: &Path,
    out: &Path,
    started: Instant,
) -> Result<i32, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the lab runtime: {e}")))?;
    let stop = StopSignal::new();
    signals::stop_on_signals(&stop);
    let child = Child { exe, stop: &stop };
    let timing = Timing::new(args.quick);
    let rate = args.rate.unwrap_or_else(|| default_rate(info, planted));
    let pid = std::process::id().to_string();
    let mut story = Story {
        json: args.json,
        steps: Vec::new(),
    };
    let limit = |d: Duration| d + Duration::from_secs(60);
    story.say(&format!(
        "chokepoint demo · scenario `{}` (planted: {})\n  The lab is a checkout service (SQLite through a connection pool, payment and email\n  dependencies over HTTP, OpenTelemetry traces) running in this process. Traffic: {} {} at\n  {} req/s (Poisson arrivals). Every step below is a real chokepoint command; files in {}.\n",
        info.name,
        info.description,
        info.method,
        info.path,
        rate,
        out.display()
    ));

    let io = args.io.mode().as_str().to_string();
    let load_args = |url: &str, dir: &Path| -> Vec<String> {
        vec![
            "run".into(),
            url.into(),
            "-X".into(),
            info.method.into(),
            "--rate".into(),
            format!("{rate}"),
            "--arrival".into(),
            "poisson".into(),
            "-z".into(),
            secs(timing.duration),
            "--warmup".into(),
            secs(timing.warmup),
            "--timeout".into(),
            "10s".into(),
            "--trace-propagate".into(),
            "--io".into(),
            io.clone(),
            "--watch-pid".into(),
            pid.clone(),
            "--quiet".into(),
            "--out".into(),
            s(dir),
        ]
    };

    // 1. Baseline, with the lab exporting every span to a file.
    let base_dir = out.join("1-baseline");
    let _ = std::fs::remove_dir_all(&base_dir);
    std::fs::create_dir_all(&base_dir)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", base_dir.display())))?;
    let spans = base_dir.join("spans.jsonl");
    let mut traced = planted.clone();
    traced.trace.trace_file = Some(spans.clone());
    let lab = start_lab(&runtime, traced)?;
    let url = format!("{}{}", lab.base_url(), info.path);
    let ran = child.run(
        &load_args(&url, &base_dir),
        limit(timing.duration + timing.warmup),
    );
    runtime.block_on(lab.shutdown());
    let ran = ran?;
    if stop.is_stopped() || ran.code == EXIT_INTERRUPTED {
        return Ok(EXIT_INTERRUPTED);
    }
    expect_ok(&ran, &[0])?;
    let baseline = rundir::open(&base_dir).map_err(Failure::Usage)?;
    let b = &baseline.summary;
    let beyond = |count: u64, q: f64| ((1.0 - q) * count as f64).floor() as u64;
    story.step(
        "1 · Baseline: what do users get?",
        Some(&ran.shown),
        vec![format!(
            "P50 {} · P95 {} · P99 {} ({} samples beyond) · {:.1} req/s · {} errors of {}",
            fmt_ms(b.latency_ms.p50),
            fmt_ms(b.latency_ms.p95),
            fmt_ms(b.latency_ms.p99),
            beyond(b.latency_ms.count, 0.99),
            b.throughput_rps,
            b.error_count(),
            b.requests
        )],
        None,
    );

    // 2. Stress: capacity, knee, what saturates.
    let stress_dir = out.join("2-stress");
    let _ = std::fs::remove_dir_all(&stress_dir);
    let lab = start_lab(&runtime, planted.clone())?;
    let url = format!("{}{}", lab.base_url(), info.path);
    let stress_args: Vec<String> = vec![
        "stress".into(),
        url.clone(),
        "-X".into(),
        info.method.into(),
        "--start-rate".into(),
        format!("{}", (rate / 2.0).round().max(1.0)),
        "--max-rate".into(),
        format!("{}", (rate * 4.0).round()),
        "--step-duration".into(),
        secs(timing.step),
        "--warmup".into(),
        "500ms".into(),
        "--max-steps".into(),
        timing.max_steps.to_string(),
        "--precision".into(),
        "10%".into(),
        "--timeout".into(),
        "10s".into(),
        "--io".into(),
        io.clone(),
        "--watch-pid".into(),
        pid.clone(),
        "--quiet".into(),
        "--out".into(),
        s(&stress_dir),
    ];
    let stress_limit = (timing.step + Duration::from_secs(2)) * (timing.max_steps + 1);
    let ran = child.run(&stress_args, limit(stress_limit));
    runtime.block_on(lab.shutdown());
    let ran = ran?;
    if stop.is_stopped() || ran.code == EXIT_INTERRUPTED {
        return Ok(EXIT_INTERRUPTED);
    }
    expect_ok(&ran, &[0])?;
    let stress_text = std::fs::read_to_string(stress_dir.join("stress.json"))
        .map_err(|e| Failure::Usage(format!("{}: {e}", stress_dir.display())))?;
    let stress: StressReport = serde_json::from_str(&stress_text)
        .map_err(|e| Failure::Usage(format!("{}/stress.json: {e}", stress_dir.display())))?;
    let mut lines = vec![format!(
        "{} steps from {:.0} to {:.0} req/s: capacity {} · knee {} · failed first: {}",
        stress.steps.len(),
        (rate / 2.0).round(),
        stress
            .steps
            .iter()
            .filter_map(|st| st.offered_rps)
            .fold(0.0, f64::max),
        stress
            .capacity_rps
            .map_or("–".into(), |c| format!("{c:.0} req/s")),
        stress
            .knee_rps
            .map_or("–".into(), |k| format!("{k:.0} req/s")),
        stress
            .failed_first
            .as_deref()
            .unwrap_or("nothing up to the maximum")
    )];
    if !stress.verdict.is_empty() {
        lines.push(stress.verdict.clone());
    }
    story.step(
        "2 · Stress: at what load does it break, and what breaks first?",
        Some(&ran.shown),
        lines,
        None,
    );

    // 3. Traces: where slow requests wait.
    let traces_dir = out.join("3-traces");
    std::fs::create_dir_all(&traces_dir)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", traces_dir.display())))?;
    let traces_json = traces_dir.join("traces.json");
    let ran = child.run(
        &[
            "traces".into(),
            "analyze".into(),
            s(&spans),
            "--run".into(),
            s(&base_dir),
            "--json".into(),
        ],
        Duration::from_secs(120),
    )?;
    expect_ok(&ran, &[0])?;
    std::fs::write(&traces_json, &ran.stdout)
        .map_err(|e| Failure::Usage(format!("{}: {e}", traces_json.display())))?;
    let tv: Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| Failure::Usage(format!("traces analyze: {e}")))?;
    let mut lines = vec![format!(
        "{} traces: typical requests {} on the server, the slowest {} {} ({:.0}% waiting)",
        tv["traces"].as_u64().unwrap_or(0),
        fmt_ms(tv["groups"]["mean_ms_p50"].as_f64().unwrap_or(0.0)),
        tv["groups"]["n_p99"].as_u64().unwrap_or(0),
        fmt_ms(tv["groups"]["mean_ms_p99"].as_f64().unwrap_or(0.0)),
        tv["groups"]["wait_share_p99"].as_f64().unwrap_or(0.0) * 100.0
    )];
    if let Some(rows) = tv["tail"].as_array() {
        let top: Vec<String> = rows
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "{} / {}{} {:.0}%",
                    r["service"].as_str().unwrap_or(""),
                    r["operation"].as_str().unwrap_or(""),
                    if r["wait"].as_bool() == Some(true) {
                        " (wait)"
                    } else {
                        ""
                    },
                    r["share_p99"].as_f64().unwrap_or(0.0) * 100.0
                )
            })
            .collect();
        lines.push(format!("the tail's critical path: {}", top.join(", ")));
    }
    if let Some(d) = tv["detectors"].as_array().and_then(|d| d.first()) {
        lines.push(format!(
            "detector {}: {}",
            d["kind"].as_str().unwrap_or(""),
            d["message"].as_str().unwrap_or("")
        ));
    }
    story.step(
        "3 · Traces: where do slow requests wait?",
        Some(&ran.shown),
        lines,
        None,
    );

    // 4. Diagnose (in process: the same code as `chokepoint diagnose`).
    let diag_dir = out.join("4-diagnosis");
    std::fs::create_dir_all(&diag_dir)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", diag_dir.display())))?;
    let inputs = Inputs {
        run: Some(base_dir.clone()),
        stress: Some(stress_dir.clone()),
        soak: None,
        traces: vec![traces_json.clone()],
    };
    let loaded = diagnose_cmd::load(&inputs)?;
    let diagnosis = chokepoint_diagnose::diagnose(&loaded.evidence);
    let diag_json = diagnose_cmd::to_json(&diagnosis);
    std::fs::write(
        diag_dir.join(diagnose_cmd::DIAGNOSIS_FILE),
        serde_json::to_string_pretty(&diag_json).expect("json"),
    )
    .map_err(|e| Failure::Usage(format!("--out {}: {e}", diag_dir.display())))?;
    html_out::report_or_warn(html_out::write_diagnosis_report(
        &diag_dir, &loaded, &diagnosis,
    ));
    let expected = planted_class(info.name);
    let first = diagnosis.constraints.first();
    let named_first = match (expected, first) {
        (Some(e), Some(c)) => c.class == e,
        (None, None) => true,
        _ => false,
    };
    let mut lines = Vec::new();
    for c in diagnosis.constraints.iter().take(3) {
        lines.push(format!(
            "#{} {} ({} confidence): {}",
            c.rank,
            c.class.label(),
            level_name(c.confidence.level),
            c.title
        ));
        if c.rank == 1 {
            if let Some(f) = c.fixes.first() {
                lines.push(format!("   fix first: {} — {}", f.fix.label(), f.action));
                if let Some(e) = &f.expected {
                    lines.push(format!("   expected: {}", e.method));
                }
            }
            if let Some(p) = c.predictions.iter().find(|p| p.load_factor == Some(2.0)) {
                lines.push(format!("   what-if: {}", p.text));
            }
        }
    }
    if diagnosis.constraints.is_empty() {
        lines.push(diagnosis.headline.clone());
    }
    lines.push(match expected {
        Some(e) => format!(
            "planted: {} → {}",
            e.label(),
            if named_first {
                "named first"
            } else {
                "NOT named first"
            }
        ),
        None => format!(
            "planted: nothing → {}",
            if named_first {
                "no constraint invented"
            } else {
                "a constraint was invented"
            }
        ),
    });
    story.step(
        "4 · Diagnose: what is it constrained by, and which fix?",
        Some(&format!(
            "chokepoint diagnose --run {} --stress {} --traces {}",
            base_dir.display(),
            stress_dir.display(),
            traces_json.display()
        )),
        lines,
        Some(named_first),
    );

    let mut summary = json!({
        "schema": "chokepoint.demo.v1",
        "scenario": info.name,
        "planted": info.description,
        "rate": rate,
        "out": s(out),
        "baseline": serde_json::to_value(&baseline.summary).expect("json"),
        "stress": {
            "capacity_rps": stress.capacity_rps,
            "knee_rps": stress.knee_rps,
            "failed_first": stress.failed_first,
            "verdict": stress.verdict,
            "steps": stress.steps.len(),
        },
        "traces": {
            "traces": tv["traces"],
            "groups": tv["groups"],
            "top": tv["tail"].as_array().map(|t| t.iter().take(5).cloned().collect::<Vec<_>>()),
        },
        "diagnosis": diag_json,
        "expected_class": expected.map(|c| c.as_str()),
        "diagnosed_first": first.map(|c| c.class.as_str()),
        "named_planted_first": named_first,
    });

    // 5. Apply the fix the diagnosis recommends (healthy: nothing to fix).
    let fix = first.and_then(lab_fix);
    let Some((fix, because)) = fix else {
        let passed = expected.is_none() && diagnosis.healthy;
        let text = if passed {
            "Result: nothing is planted and the diagnosis found nothing: no bottleneck invented."
                .to_string()
        } else if first.is_some() {
            "Result: FAILED — the lab has no knob for the fix the diagnosis recommends first."
                .to_string()
        } else {
            "Result: FAILED — the diagnosis found no constraint, but one is planted.".to_string()
        };
        story.say(&format!("\n{text}\n"));
        summary["passed"] = json!(passed);
        summary["result"] = json!(text);
        finish_report(
            out,
            &story,
            &text,
            passed,
            &baseline,
            None,
            None,
            Some(&stress),
            &tv,
            &diagnosis,
        );
        summary["report"] = json!(s(&out.join(html_out::REPORT_FILE)));
        summary["wall_s"] = json!(started.elapsed().as_secs_f64());
        if args.json {
            crate::print_stdout(&format!("{summary}\n"));
        } else {
            story.say(&format!(
                "Report: {} ({:.0} s)\n",
                out.join(html_out::REPORT_FILE).display(),
                started.elapsed().as_secs_f64()
            ));
        }
        return Ok(if passed { 0 } else { 1 });
    };
    let recommended = info.fix;
    let same_fix =
        recommended.is_some_and(|r| std::mem::discriminant(&r) == std::mem::discriminant(&fix));
    story.step(
        &format!("5 · Fix: apply `{fix}` to the lab"),
        None,
        vec![format!("from the diagnosis: {because}")],
        None,
    );

    // 6. Re-run under the same load.
    let fixed_dir = out.join("5-fixed");
    let _ = std::fs::remove_dir_all(&fixed_dir);
    let lab = start_lab(&runtime, planted.clone().with_fix(fix))?;
    let url = format!("{}{}", lab.base_url(), info.path);
    let ran = child.run(
        &load_args(&url, &fixed_dir),
        limit(timing.duration + timing.warmup),
    );
    runtime.block_on(lab.shutdown());
    let ran = ran?;
    if stop.is_stopped() || ran.code == EXIT_INTERRUPTED {
        return Ok(EXIT_INTERRUPTED);
    }
    expect_ok(&ran, &[0])?;
    let fixed = rundir::open(&fixed_dir).map_err(Failure::Usage)?;
    let a = &fixed.summary;
    story.step(
        "6 · Re-run under the same load",
        Some(&ran.shown),
        vec![format!(
            "P50 {} · P95 {} · P99 {} · {:.1} req/s · {} errors of {}",
            fmt_ms(a.latency_ms.p50),
            fmt_ms(a.latency_ms.p95),
            fmt_ms(a.latency_ms.p99),
            a.throughput_rps,
            a.error_count(),
            a.requests
        )],
        None,
    );

    // 7. Compare: beyond noise?
    let cmp_dir = out.join("6-compare");
    let ran = child.run(
        &[
            "compare".into(),
            s(&base_dir),
            s(&fixed_dir),
            "--json".into(),
            "--out".into(),
            s(&cmp_dir),
        ],
        Duration::from_secs(120),
    )?;
    expect_ok(&ran, &[0])?;
    let cmp: CompareReport = serde_json::from_str(&ran.stdout)
        .map_err(|e| Failure::Usage(format!("compare --json: {e}")))?;
    let latency_improved = cmp.latency.verdict == "improved" && cmp.regressed.is_empty();
    let mut lines: Vec<String> = cmp
        .latency
        .metrics
        .iter()
        .filter(|m| m.verdict != "insufficient_data")
        .map(|m| {
            format!(
                "{:<5} {:>9} → {:>9}  {:>7}  95% CI {:<18} {}",
                m.metric,
                fmt_ms(m.before_ms),
                fmt_ms(m.after_ms),
                m.delta_pct.map_or("–".into(), |d| format!("{d:+.1}%")),
                m.ci_pct.map_or("–".into(), |c| format!(
                    "[{:+.1}%, {:+.1}%]",
                    c.low, c.high
                )),
                m.verdict.replace('_', " ")
            )
        })
        .collect();
    lines.push(chokepoint_report::compare::headline(&cmp));
    // Memory growth is validated on the memory, not on latency.
    let memory = expected == Some(ConstraintClass::MemoryGrowth)
        || first.is_some_and(|c| c.class == ConstraintClass::MemoryGrowth);
    let (validated, validation) = if memory {
        match (rss_trend(&baseline), rss_trend(&fixed)) {
            (Some(tb), Some(ta)) => {
                let ok = ta.slope_high < tb.slope_low;
                let text = format!(
                    "RSS growth {}/s (95% CI {}–{}) → {}/s (95% CI {}–{}): {}",
                    mib(tb.slope),
                    mib(tb.slope_low),
                    mib(tb.slope_high),
                    mib(ta.slope),
                    mib(ta.slope_low),
                    mib(ta.slope_high),
                    if ok {
                        "significantly lower (the intervals do not overlap)"
                    } else {
                        "not significantly lower"
                    }
                );
                lines.push(text.clone());
                (
                    ok,
                    json!({"kind": "rss_slope", "before_bytes_per_s": tb.slope, "before_ci": [tb.slope_low, tb.slope_high], "after_bytes_per_s": ta.slope, "after_ci": [ta.slope_low, ta.slope_high], "passed": ok, "text": text}),
                )
            }
            _ => (
                false,
                json!({"kind": "rss_slope", "passed": false, "text": "no RSS series (resources.csv)"}),
            ),
        }
    } else {
        (
            latency_improved,
            json!({"kind": "latency", "passed": latency_improved, "text": chokepoint_report::compare::headline(&cmp)}),
        )
    };
    story.step(
        "7 · Compare: did it really improve, beyond noise?",
        Some(&ran.shown),
        lines,
        Some(validated),
    );

    // 8. Budgets from the validated run, then check.
    let budgets = out.join("budgets.toml");
    let p50 = nice_ceil(a.latency_ms.p50 * 1.5);
    let p99 = nice_ceil(a.latency_ms.p99 * 1.5);
    let min_tp = (rate * 0.9).floor().max(1.0);
    let toml = format!(
        "# Budgets written by `chokepoint demo --scenario {}` from the validated run {}\n# (1.5x its P50 and P99, rounded up; 90% of the offered rate).\n\n[overall]\np50 = \"{}ms\"\np99 = \"{}ms\"\nerror_rate = \"1%\"\nmin_throughput = \"{}/s\"\n\n[regression]\nmax_increase = \"10%\"\nmetrics = [\"p50\", \"p99\"]\n",
        info.name,
        fixed_dir.display(),
        p50,
        p99,
        min_tp
    );
    std::fs::write(&budgets, &toml)
        .map_err(|e| Failure::Usage(format!("{}: {e}", budgets.display())))?;
    let ran = child.run(
        &[
            "check".into(),
            s(&fixed_dir),
            "--budget".into(),
            s(&budgets),
            "--baseline".into(),
            s(&base_dir),
            "--json".into(),
        ],
        Duration::from_secs(120),
    )?;
    expect_ok(&ran, &[0, 1])?;
    let check: Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| Failure::Usage(format!("check --json: {e}")))?;
    story.step(
        "8 · Keep it fixed: budgets.toml from the validated run, then check",
        Some(&ran.shown),
        vec![
            format!(
                "budgets: p50 ≤ {p50} ms, p99 ≤ {p99} ms, errors ≤ 1%, ≥ {min_tp}/s, no significant regression > 10% vs the baseline"
            ),
            format!(
                "{} passed, {} failed, {} skipped",
                check["passed"], check["failed"], check["skipped"]
            ),
        ],
        Some(ran.code == 0),
    );

    let passed = named_first && same_fix && validated;
    let text = if passed {
        format!(
            "Result: PASSED — the diagnosis named the planted constraint ({}) first, recommended `{fix}`, and the fix validated: {}.",
            expected.map_or("none", |e| e.label()),
            validation["text"].as_str().unwrap_or("")
        )
    } else {
        let mut why = Vec::new();
        if !named_first {
            why.push(format!(
                "the diagnosis named {} first, not {}",
                first.map_or("nothing", |c| c.class.label()),
                expected.map_or("nothing", |e| e.label())
            ));
        }
        if !same_fix {
            why.push(format!(
                "its fix `{fix}` is not the lab's fix for this scenario ({})",
                recommended.map_or("none".into(), |r| r.to_string())
            ));
        }
        if !validated {
            why.push(format!(
                "the fix did not validate: {}",
                validation["text"].as_str().unwrap_or("")
            ));
        }
        format!("Result: FAILED — {}.", why.join("; "))
    };
    story.say(&format!("\n{text}\n"));
    finish_report(
        out,
        &story,
        &text,
        passed,
        &baseline,
        Some(&fixed),
        Some(&cmp),
        Some(&stress),
        &tv,
        &diagnosis,
    );
    let metrics: Vec<Value> = cmp
        .latency
        .metrics
        .iter()
        .map(|m| {
            json!({
                "metric": m.metric,
                "before_ms": m.before_ms,
                "after_ms": m.after_ms,
                "delta_pct": m.delta_pct,
                "ci_pct": m.ci_pct.map(|c| [c.low, c.high]),
                "p_value": m.p_value,
                "verdict": m.verdict,
            })
        })
        .collect();
    summary["fix"] = json!(fix.to_string());
    summary["fix_from"] = json!(because);
    summary["lab_recommended_fix"] = json!(recommended.map(|r| r.to_string()));
    summary["fixed"] = serde_json::to_value(&fixed.summary).expect("json");
    summary["comparison"] = json!({
        "metrics": metrics,
        "verdict": cmp.latency.verdict,
        "overall": cmp.verdict,
        "improved": cmp.improved,
        "regressed": cmp.regressed,
    });
    summary["validation"] = validation;
    summary["budgets"] =
        json!({"file": s(&budgets), "p50_ms": p50, "p99_ms": p99, "min_throughput": min_tp});
    summary["check"] =
        json!({"exit": ran.code, "passed": check["passed"], "failed": check["failed"]});
    summary["passed"] = json!(passed);
    summary["result"] = json!(text);
    summary["report"] = json!(s(&out.join(html_out::REPORT_FILE)));
    summary["wall_s"] = json!(started.elapsed().as_secs_f64());
    if args.json {
        crate::print_stdout(&format!("{summary}\n"));
    } else {
        story.say(&format!(
            "Report: {} ({:.0} s)\n",
            out.join(html_out::REPORT_FILE).display(),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(if passed { 0 } else { 1 })
}

#[allow(clippy::too_many_arguments)]
fn finish_report(
    out: &Path,
    story: &Story,
    text: &str,
    passed: bool,
    baseline: &RunFiles,
    fixed: Option<&RunFiles>,
    cmp: Option<&CompareReport>,
    stress: Option<&StressReport>,
    traces: &Value,
    diagnosis: &Diagnosis,
) {
    let mut runs = vec![html_out::panel("baseline", baseline)];
    if let Some(f) = fixed {
        runs.push(html_out::panel("after the fix", f));
    }
    let b = &baseline.summary.latency_ms;
    let mut tiles = vec![(
        "P99 before".to_string(),
        fmt_ms(b.p99),
        format!("P50 {}", fmt_ms(b.p50)),
    )];
    if let Some(f) = fixed {
        let a = &f.summary.latency_ms;
        tiles.push((
            "P99 after".into(),
            fmt_ms(a.p99),
            format!("P50 {}", fmt_ms(a.p50)),
        ));
    }
    if let Some(c) = diagnosis.constraints.first() {
        tiles.push((
            "Constraint #1".into(),
            c.class.label().to_string(),
            format!("{} confidence", level_name(c.confidence.level)),
        ));
    }
    if let Some(s) = stress {
        tiles.push((
            "Capacity".into(),
            s.capacity_rps.map_or("–".into(), |c| format!("{c:.0}/s")),
            s.failed_first
                .clone()
                .map_or("nothing failed".into(), |f| format!("failed first: {f}")),
        ));
    }
    let report = Report {
        title: format!(
            "chokepoint demo: {}",
            baseline
                .summary
                .target
                .rsplit('/')
                .next()
                .map_or(String::new(), |p| format!("/{p}"))
        ),
        subtitle: format!(
            "{} · the lab with a planted bottleneck, diagnosed and fixed by chokepoint",
            baseline.summary.target
        ),
        tiles,
        banner: Some((text.to_string(), passed)),
        story: story.steps.clone(),
        runs,
        compare: cmp,
        stress,
        soak: None,
        traces: Some(html_out::trace_panel(traces)),
        diagnosis: Some(diagnosis),
        footer: format!("chokepoint {} demo", env!("CARGO_PKG_VERSION")),
    };
    html_out::report_or_warn(html_out::write(out, &report));
}
