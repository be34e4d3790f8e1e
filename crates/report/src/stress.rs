//! `chokepoint stress` output: the `chokepoint.stress.v1` JSON shape and its
//! text report. Field names are public contract (PRODUCT.md): add, never rename.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::resources::{render_resources, Resources};
use crate::summary::LatencyMs;
use crate::text::fmt_ms;

/// The schema identifier of a stress report.
pub const STRESS_SCHEMA: &str = "chokepoint.stress.v1";

/// A whole capacity search (or concurrency sweep).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StressReport {
    /// Always [`STRESS_SCHEMA`].
    pub schema: String,
    /// chokepoint version.
    pub tool_version: String,
    /// Target (credentials redacted).
    pub target: String,
    /// `rate` (open-model capacity search) or `concurrency` (closed-model sweep).
    pub mode: String,
    /// Latency objectives as given, e.g. `p99<200ms`.
    pub slo: Vec<String>,
    /// Largest tolerated error rate per step (0..1).
    pub error_budget: f64,
    /// Smallest achieved/offered ratio for a passing step (0.98).
    pub min_achieved_ratio: f64,
    /// Measured seconds per step.
    pub step_duration_s: f64,
    /// Warmup seconds before each step's measured window.
    pub warmup_s: f64,
    /// Highest rate (or concurrency) the search was allowed.
    pub max_rate: Option<f64>,
    /// Every step, in the order run.
    pub steps: Vec<StressStep>,
    /// Highest offered rate that passed (sweep: highest throughput that passed).
    pub capacity_rps: Option<f64>,
    /// The bracket around the capacity.
    pub bracket: Bracket,
    /// Where latency starts to climb (see `knee_method`).
    pub knee_rps: Option<f64>,
    /// How the knee was found.
    pub knee_method: String,
    /// What broke first: `latency`, `errors`, `throughput`, or a saturated
    /// resource (`cpu`, `memory`, `fds`, `io`); `null` when nothing failed.
    pub failed_first: Option<String>,
    /// The numbers behind `failed_first`.
    pub failed_first_detail: Option<String>,
    /// The saturation verdict, in words and numbers.
    pub verdict: String,
    /// The plateau analysis behind the verdict, when throughput plateaued.
    pub saturation: Option<Saturation>,
    /// The USL fit (`--sweep concurrency`).
    pub usl: Option<UslReport>,
    /// Stopped early (Ctrl-C); the report covers the steps measured.
    pub interrupted: bool,
    /// Caveats (too few points, generator limits, ...).
    pub notes: Vec<String>,
}

/// The rates around the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Bracket {
    /// Highest passing rate.
    pub passed_rps: Option<f64>,
    /// Lowest failing rate above it (`null`: nothing failed up to the maximum).
    pub failed_rps: Option<f64>,
}

/// One step of the search.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StressStep {
    /// 1-based order.
    pub index: u32,
    /// `grow` (geometric), `bisect`, `overload` (one step beyond the first
    /// failure, to characterize the saturation), or `sweep` (concurrency).
    pub phase: String,
    /// Offered open-model rate (`null` in a concurrency sweep).
    pub offered_rps: Option<f64>,
    /// Closed-model concurrency (sweep only).
    pub concurrency: Option<u64>,
    /// Completed requests per second of the measured window.
    pub achieved_rps: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Errors over requests.
    pub error_rate: f64,
    /// Open-model arrivals never sent.
    pub dropped: u64,
    /// Latency from the intended send time.
    pub latency_ms: LatencyMs,
    /// Service time from the actual send.
    pub service_time_ms: LatencyMs,
    /// Little's law L = X · W (W: mean service time).
    pub mean_in_flight: f64,
    /// Every criterion held.
    pub passed: bool,
    /// Criteria broken: `latency`, `errors`, `throughput`.
    pub failed: Vec<String>,
    /// What each broken criterion measured, e.g. `p99 412 ms > 200 ms`.
    pub failed_detail: Vec<String>,
    /// The target's resources during the step (with `--watch-pid`/`--watch-cgroup`).
    pub resources: Option<Resources>,
    /// The step's run directory (with `--out`).
    pub dir: Option<String>,
    /// The step was cut short by Ctrl-C.
    pub interrupted: bool,
}

/// The plateau: throughput stopped following the offered load.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saturation {
    /// Highest throughput measured in any step.
    pub plateau_rps: f64,
    /// Mean latency at the lowest load measured.
    pub low_load_latency_ms: f64,
    /// Mean latency in the most loaded step.
    pub saturated_latency_ms: f64,
    /// Concurrency the plateau implies: L = X · W with W the low-load mean latency
    /// (an upper bound on the slots of the limiting resource: requests may hold it
    /// for only part of their time).
    pub slots: f64,
}

/// The Universal Scalability Law fit of a concurrency sweep.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UslReport {
    /// Contention σ.
    pub sigma: f64,
    /// Coherency κ.
    pub kappa: f64,
    /// Single-client throughput λ (req/s).
    pub lambda: f64,
    /// Peak concurrency sqrt((1−σ)/κ) (`null` when κ = 0).
    pub n_star: Option<f64>,
    /// Peak (or asymptotic) throughput.
    pub x_max: Option<f64>,
    /// Coefficient of determination.
    pub r2: f64,
    /// Standard error of σ.
    pub sigma_se: Option<f64>,
    /// Standard error of κ.
    pub kappa_se: Option<f64>,
    /// Standard error of λ.
    pub lambda_se: Option<f64>,
    /// 95% interval of σ.
    pub sigma_ci: Option<[f64; 2]>,
    /// 95% interval of κ.
    pub kappa_ci: Option<[f64; 2]>,
    /// Points fitted.
    pub points: usize,
    /// `near-linear`, `contention-limited` or `coherency-limited`.
    pub class: String,
    /// What the fit predicts, in words.
    pub prediction: String,
    /// Why the fit should be read with care (e.g. fewer than 6 points).
    pub warning: Option<String>,
}

/// Renders the stress report as text.
pub fn render_stress(r: &StressReport) -> String {
    let mut out = String::new();
    let what = if r.mode == "concurrency" {
        "concurrency sweep (closed model)"
    } else {
        "capacity search (open model)"
    };
    let _ = writeln!(out, "chokepoint stress {} · {what}", r.target);
    let mut criteria = r.slo.clone();
    criteria.push(format!("errors ≤ {}%", trim(r.error_budget * 100.0)));
    if r.mode != "concurrency" {
        criteria.push(format!(
            "achieved ≥ {}% of offered",
            trim(r.min_achieved_ratio * 100.0)
        ));
    }
    let _ = writeln!(
        out,
        "criteria: {} · {:.1} s per step{}",
        criteria.join(", "),
        r.step_duration_s,
        if r.warmup_s > 0.0 {
            format!(" after {:.1} s warmup", r.warmup_s)
        } else {
            String::new()
        }
    );
    if r.interrupted {
        let _ = writeln!(out, "INTERRUPTED: the report covers the steps measured");
    }
    let _ = writeln!(
        out,
        "\n  step  {:>10}  {:>10}  {:>9}  {:>9}  {:>9}  {:>7}  {:>9}  result",
        if r.mode == "concurrency" {
            "clients"
        } else {
            "offered/s"
        },
        "achieved/s",
        "p50",
        "p99",
        "max",
        "errors",
        "in flight"
    );
    for s in &r.steps {
        let load = match (s.offered_rps, s.concurrency) {
            (_, Some(c)) => c.to_string(),
            (Some(rate), None) => trim(rate),
            _ => "-".into(),
        };
        let result = if s.passed {
            "pass".to_string()
        } else {
            format!("FAIL {}", s.failed_detail.join("; "))
        };
        let _ = writeln!(
            out,
            "  {:>4}  {:>10}  {:>10.1}  {:>9}  {:>9}  {:>9}  {:>6.2}%  {:>9.1}  {result}{}",
            s.index,
            load,
            s.achieved_rps,
            fmt_ms(s.latency_ms.p50),
            fmt_ms(s.latency_ms.p99),
            fmt_ms(s.latency_ms.max),
            s.error_rate * 100.0,
            s.mean_in_flight,
            if s.interrupted { " (interrupted)" } else { "" }
        );
    }
    let _ = writeln!(out);
    match (r.capacity_rps, r.bracket.failed_rps) {
        (Some(c), Some(f)) => {
            let _ = writeln!(
                out,
                "capacity    {} req/s (passed at {}, failed at {})",
                trim(c),
                trim(r.bracket.passed_rps.unwrap_or(c)),
                trim(f)
            );
        }
        (Some(c), None) => {
            let _ = writeln!(
                out,
                "capacity    at least {} req/s (nothing failed up to the maximum tested)",
                trim(c)
            );
        }
        (None, Some(f)) => {
            let _ = writeln!(
                out,
                "capacity    below {} req/s (the lowest step tested failed)",
                trim(f)
            );
        }
        (None, None) => {
            let _ = writeln!(out, "capacity    unknown (no step completed)");
        }
    }
    match r.knee_rps {
        Some(k) => {
            let _ = writeln!(out, "knee        {} req/s ({})", trim(k), r.knee_method);
        }
        None => {
            let _ = writeln!(
                out,
                "knee        none found (latency did not climb enough; {})",
                r.knee_method
            );
        }
    }
    if let Some(first) = &r.failed_first {
        let _ = writeln!(
            out,
            "failed first {first}{}",
            r.failed_first_detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "verdict     {}", r.verdict);
    if let Some(u) = &r.usl {
        let _ = writeln!(out, "\nUniversal Scalability Law fit ({} points)", u.points);
        let ci = |ci: Option<[f64; 2]>| {
            ci.map(|[a, b]| format!(" (95% CI {} .. {})", sig(a), sig(b)))
                .unwrap_or_default()
        };
        let _ = writeln!(out, "  σ (contention) = {}{}", sig(u.sigma), ci(u.sigma_ci));
        let _ = writeln!(out, "  κ (coherency)  = {}{}", sig(u.kappa), ci(u.kappa_ci));
        let _ = writeln!(out, "  λ (one client) = {:.1} req/s", u.lambda);
        let _ = writeln!(out, "  R² = {:.4} · class: {}", u.r2, u.class);
        if let Some(n) = u.n_star {
            let _ = writeln!(out, "  N* = {n:.1}");
        }
        if let Some(x) = u.x_max {
            let _ = writeln!(out, "  X_max = {x:.1} req/s");
        }
        let _ = writeln!(out, "  {}", u.prediction);
        if let Some(w) = &u.warning {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
    if let Some(res) = r
        .steps
        .iter()
        .rev()
        .find_map(|s| s.resources.as_ref().map(|res| (s, res)))
    {
        let (step, res) = res;
        let _ = write!(
            out,
            "\nStep {} ({}) · ",
            step.index,
            step.offered_rps
                .map(|o| format!("{} req/s offered", trim(o)))
                .or(step.concurrency.map(|c| format!("{c} clients")))
                .unwrap_or_default()
        );
        out.push_str(render_resources(res).trim_start_matches('\n'));
    }
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// A rate without needless decimals.
pub fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Three significant digits (small parameters like κ need scientific notation).
pub fn sig(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 0.001 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_capacity_knee_and_usl() {
        let r = StressReport {
            schema: STRESS_SCHEMA.into(),
            target: "http://x/".into(),
            mode: "rate".into(),
            slo: vec!["p99<200ms".into()],
            error_budget: 0.01,
            min_achieved_ratio: 0.98,
            step_duration_s: 2.0,
            steps: vec![
                StressStep {
                    index: 1,
                    phase: "grow".into(),
                    offered_rps: Some(400.0),
                    achieved_rps: 399.0,
                    passed: true,
                    ..StressStep::default()
                },
                StressStep {
                    index: 2,
                    phase: "grow".into(),
                    offered_rps: Some(800.0),
                    achieved_rps: 401.0,
                    passed: false,
                    failed: vec!["throughput".into()],
                    failed_detail: vec!["achieved 401 < 98% of 800".into()],
                    ..StressStep::default()
                },
            ],
            capacity_rps: Some(400.0),
            bracket: Bracket {
                passed_rps: Some(400.0),
                failed_rps: Some(800.0),
            },
            knee_rps: Some(400.0),
            knee_method: "kneedle".into(),
            failed_first: Some("throughput".into()),
            verdict: "throughput plateaus".into(),
            usl: Some(UslReport {
                sigma: 0.5,
                kappa: 0.0001,
                points: 4,
                class: "contention-limited".into(),
                prediction: "flattens".into(),
                warning: Some("only 4 points".into()),
                ..UslReport::default()
            }),
            ..StressReport::default()
        };
        let text = render_stress(&r);
        assert!(text.contains("capacity    400 req/s (passed at 400, failed at 800)"));
        assert!(text.contains("FAIL achieved 401 < 98% of 800"));
        assert!(text.contains("knee        400 req/s"));
        assert!(text.contains("κ (coherency)  = 1.00e-4"));
        assert!(text.contains("warning: only 4 points"));
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "steps",
            "capacity_rps",
            "knee_rps",
            "failed_first",
            "verdict",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let step = &json["steps"][0];
        for key in [
            "offered_rps",
            "achieved_rps",
            "latency_ms",
            "errors",
            "passed",
        ] {
            assert!(step.get(key).is_some(), "{key}");
        }
        for key in ["sigma", "kappa", "lambda", "n_star", "x_max", "r2"] {
            assert!(json["usl"].get(key).is_some(), "{key}");
        }
    }
}
