//! `chokepoint compare` through the real binary: synthetic run directories
//! drawn from known distributions, and two real runs against a real server.

mod support;
mod synthetic;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use synthetic::{write_run, Spec};

const LIMIT: Duration = Duration::from_secs(60);

fn compare(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, LIMIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn compare_json(before: &Path, after: &Path, extra: &[&str], code: i32) -> Value {
    let (b, a) = (before.to_str().unwrap(), after.to_str().unwrap());
    let mut args = vec![b, a, "--json"];
    args.extend_from_slice(extra);
    let (got, stdout, stderr) = compare(&args);
    assert_eq!(
        got, code,
        "compare {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["latency"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {report}"))
}

/// Two independent draws of the same distribution: nothing is called a
/// change, and --fail-on-regression passes.
#[test]
fn same_distribution_is_no_significant_change() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    write_run(
        &b,
        &Spec {
            seed: 11,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 12,
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &["--fail-on-regression"], 0);
    assert_eq!(r["schema"], "chokepoint.compare.v1");
    assert_eq!(r["verdict"], "no_significant_change", "{r:#}");
    assert_eq!(r["comparable"], true);
    assert_eq!(r["regressed"], json!([]));
    assert_eq!(r["latency"]["method_before"]["kind"], "interval_blocks");
    assert_eq!(r["latency"]["method_before"]["blocks"], 20);
    assert_eq!(r["latency"]["samples_before"], 10_000);
    for m in ["p50", "p90", "p95", "p99", "mean"] {
        let row = metric(&r, m);
        let ci = &row["ci_pct"];
        assert!(
            f(&ci["low"]) <= f(&row["delta_pct"]) && f(&row["delta_pct"]) <= f(&ci["high"]),
            "{m}: the interval contains the point estimate: {row}"
        );
        assert!(f(&row["delta_pct"]).abs() < 5.0, "{m}: {row}");
    }
    assert_eq!(r["throughput"]["test"], "interval_welch");
    assert_eq!(r["error_rate"]["verdict"], "no_significant_change");
}

/// Every latency 30% higher: p50..p99 regressed with intervals around +30%,
/// exit 1 with --fail-on-regression, and the text and Markdown say so.
#[test]
fn a_planted_slowdown_is_a_regression_and_fails_the_gate() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("before"), dir.path().join("after"));
    // 5,000 samples per run: enough for P99, not for P99.9.
    write_run(
        &b,
        &Spec {
            seed: 21,
            per_second: 250,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 22,
            per_second: 250,
            median_ms: 13.0,
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &["--fail-on-regression"], 1);
    assert_eq!(r["verdict"], "regressed");
    for m in ["p50", "p90", "p95", "p99", "mean"] {
        let row = metric(&r, m);
        assert_eq!(row["verdict"], "regressed", "{m}: {row}");
        let (low, high) = (f(&row["ci_pct"]["low"]), f(&row["ci_pct"]["high"]));
        // Truth is +30%; each run's sampling noise moves the estimate a little.
        // (P99 rests on 50 samples beyond it per run, so it wanders most.)
        assert!(low > 5.0 && high < 60.0 && low < high, "{m}: {row}");
        assert!((f(&row["delta_pct"]) - 30.0).abs() < 12.0, "{m}: {row}");
        assert!(f(&row["p_value"]) < 0.01);
    }
    let p999 = metric(&r, "p99_9");
    assert_eq!(p999["verdict"], "insufficient_data", "{p999}");
    assert!(
        p999["reason"].as_str().unwrap().contains("10000"),
        "the reason names the rule: {p999}"
    );
    assert!(r["regressed"].as_array().unwrap().contains(&json!("p99")));

    let md = dir.path().join("cmp.md");
    let (code, text, stderr) = compare(&[
        b.to_str().unwrap(),
        a.to_str().unwrap(),
        "--fail-on-regression",
        "--markdown",
        md.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}\n{stderr}");
    assert!(
        text.contains("Verdict: REGRESSED: p50, p90, p95, p99, mean"),
        "{text}"
    );
    assert!(text.contains("insufficient data*"), "{text}");
    assert!(stderr.contains("regression: p50"), "{stderr}");
    let markdown = read(&md);
    assert!(
        markdown.starts_with("## chokepoint compare: REGRESSED"),
        "{markdown}"
    );
    assert!(markdown.contains("| p99 |"), "{markdown}");
    assert!(markdown.contains("❌ regressed"), "{markdown}");

    // Without the gate the same comparison exits 0.
    let (code, _, _) = compare(&[b.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(code, 0);
}

/// The reverse direction is an improvement, which never fails the gate;
/// a minimum effect above the change turns it into no significant change.
#[test]
fn an_improvement_passes_and_min_effect_is_respected() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    write_run(
        &b,
        &Spec {
            seed: 31,
            median_ms: 13.0,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 32,
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &["--fail-on-regression"], 0);
    assert_eq!(r["verdict"], "improved");
    assert_eq!(metric(&r, "p50")["verdict"], "improved");
    let r = compare_json(&b, &a, &["--min-effect", "40%", "--confidence", "99%"], 0);
    assert_eq!(r["settings"]["min_effect_pct"], 40.0);
    assert_eq!(r["settings"]["confidence"], 0.99);
    assert_eq!(metric(&r, "p50")["verdict"], "no_significant_change");
    assert_eq!(metric(&r, "p50")["significant"], true);
    assert_eq!(f(&metric(&r, "p50")["ci_pct"]["confidence"]), 0.99);
}

/// More 5xx responses after: the error rate regresses (two-proportion test).
#[test]
fn an_error_rate_increase_is_a_regression() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    write_run(
        &b,
        &Spec {
            seed: 41,
            error_rate: 0.001,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 42,
            error_rate: 0.02,
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &["--fail-on-regression"], 1);
    assert_eq!(
        r["error_rate"]["verdict"], "regressed",
        "{:#}",
        r["error_rate"]
    );
    assert!(f(&r["error_rate"]["after_pct"]) > 1.5);
    assert_eq!(r["regressed"], json!(["error_rate"]));
}

/// Different conditions are listed; --strict turns them into exit 2.
#[test]
fn differing_conditions_are_listed_and_strict_refuses_them() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    write_run(
        &b,
        &Spec {
            seed: 51,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 52,
            rate: Some(800.0),
            seconds: 12,
            target: "http://127.0.0.1:9090/".into(),
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &[], 0);
    assert_eq!(r["comparable"], false);
    let fields: Vec<&str> = r["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["target", "rate_target", "duration_s"], "{r:#}");
    let (code, stdout, stderr) = compare(&[b.to_str().unwrap(), a.to_str().unwrap(), "--strict"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.contains("NOT COMPARABLE"), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--strict") && stderr.contains("rate_target 500/s → 800/s"),
        "{stderr}"
    );
}

/// `resources` objects in both summaries give a cost delta; in one only, a note.
#[test]
fn cost_delta_from_resources() {
    let dir = tempdir();
    let (b, a, n) = (
        dir.path().join("b"),
        dir.path().join("a"),
        dir.path().join("n"),
    );
    write_run(
        &b,
        &Spec {
            seed: 61,
            resources: Some(json!({"cpu_seconds": 10.0, "peak_rss_bytes": 100_000_000u64})),
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 62,
            resources: Some(
                json!({"cpu_seconds": 5.0, "cpu_per_request_ms": 0.5, "peak_rss_bytes": 150_000_000u64}),
            ),
            ..Spec::default()
        },
    );
    write_run(
        &n,
        &Spec {
            seed: 63,
            ..Spec::default()
        },
    );
    let r = compare_json(&b, &a, &[], 0);
    let cpu = &r["cost"]["cpu_ms_per_request"];
    // BEFORE: 10 CPU-seconds over 10,000 requests; AFTER: the probe's own figure.
    assert!((f(&cpu["before"]) - 1.0).abs() < 1e-9, "{cpu}");
    assert!((f(&cpu["after"]) - 0.5).abs() < 1e-9, "{cpu}");
    assert!((f(&cpu["delta_pct"]) + 50.0).abs() < 1e-9, "{cpu}");
    assert!((f(&r["cost"]["peak_rss_bytes"]["delta_pct"]) - 50.0).abs() < 1e-9);
    let (_, text, _) = compare(&[b.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(
        text.contains("CPU/request") && text.contains("-50.0%"),
        "{text}"
    );

    let r = compare_json(&b, &n, &[], 0);
    assert!(r["cost"]["cpu_ms_per_request"].is_null());
    assert!(
        r["cost"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("AFTER has no target resource samples"),
        "{r:#}"
    );
    let r = compare_json(&n, &n, &[], 0);
    assert!(
        r["cost"].is_null(),
        "no resources anywhere: no cost section"
    );
}

fn expect_bad_input(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = compare(args);
    assert_eq!(code, 2, "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Missing, corrupt and mismatched run files: one line naming the file (and
/// line/column where there is one), exit 2.
#[test]
fn bad_run_files_are_one_line_errors() {
    let dir = tempdir();
    let good = dir.path().join("good");
    write_run(
        &good,
        &Spec {
            seed: 71,
            seconds: 3,
            per_second: 50,
            ..Spec::default()
        },
    );
    let g = good.to_str().unwrap();
    let missing = dir.path().join("missing");
    expect_bad_input(&[g, missing.to_str().unwrap()], "AFTER: ");
    expect_bad_input(&[g, missing.to_str().unwrap()], "missing: not found");

    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(
        corrupt.join("summary.json"),
        "{\n  \"schema\": \"chokepoint.run.v1\",\n  oops\n}",
    )
    .unwrap();
    expect_bad_input(&[corrupt.to_str().unwrap(), g], "corrupt/summary.json:3:3:");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("summary.json"), "{\"schema\": \"k6.v1\"}").unwrap();
    expect_bad_input(
        &[g, foreign.to_str().unwrap()],
        "expected `chokepoint.run.v1`",
    );

    // A summary with the interval log of another run.
    let other = dir.path().join("other");
    write_run(
        &other,
        &Spec {
            seed: 72,
            seconds: 4,
            per_second: 50,
            ..Spec::default()
        },
    );
    let mixed = dir.path().join("mixed");
    write_run(
        &mixed,
        &Spec {
            seed: 73,
            seconds: 3,
            per_second: 50,
            ..Spec::default()
        },
    );
    std::fs::copy(other.join("latency.hlog"), mixed.join("latency.hlog")).unwrap();
    expect_bad_input(
        &[g, mixed.to_str().unwrap()],
        "holds 200 latency samples but",
    );

    // A garbage line in the interval log names its line.
    let garbage = dir.path().join("garbage");
    write_run(
        &garbage,
        &Spec {
            seed: 74,
            seconds: 3,
            per_second: 50,
            ..Spec::default()
        },
    );
    let mut log = read(&garbage.join("latency.hlog"));
    log.push_str("0.000,1.000,not base64 at all\n");
    std::fs::write(garbage.join("latency.hlog"), log).unwrap();
    expect_bad_input(&[g, garbage.to_str().unwrap()], "latency.hlog:10:");

    let no_log = dir.path().join("nolog");
    write_run(
        &no_log,
        &Spec {
            seed: 75,
            seconds: 3,
            per_second: 50,
            ..Spec::default()
        },
    );
    std::fs::remove_file(no_log.join("latency.hlog")).unwrap();
    expect_bad_input(&[no_log.to_str().unwrap(), g], "BEFORE: ");

    expect_bad_input(&[g, g, "--min-effect", "lots"], "--min-effect");
    expect_bad_input(&[g, g, "--confidence", "100%"], "confidence");
    expect_bad_input(&[g, g, "--resamples", "10"], "resamples");
}

/// The summary.json path works as well as the directory, and without
/// timeseries.csv throughput falls back to the Poisson test with a note.
#[test]
fn summary_paths_and_missing_timeseries() {
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    write_run(
        &b,
        &Spec {
            seed: 81,
            ..Spec::default()
        },
    );
    write_run(
        &a,
        &Spec {
            seed: 82,
            ..Spec::default()
        },
    );
    std::fs::remove_file(a.join("timeseries.csv")).unwrap();
    let r = compare_json(&b.join("summary.json"), &a.join("summary.json"), &[], 0);
    assert_eq!(r["throughput"]["test"], "poisson_counts");
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap()
            .contains("AFTER has no timeseries.csv"),
        "{r:#}"
    );
    let (code, md, _) = compare(&[b.to_str().unwrap(), a.to_str().unwrap(), "--markdown", "-"]);
    assert_eq!(code, 0);
    assert!(md.starts_with("## chokepoint compare"), "{md}");
}

/// Two real runs against a real server whose handler gets 4 ms slower: the
/// median regresses, P99.9 says it lacks data, the short runs fall back to
/// the i.i.d. bootstrap with the reason, and `--watch-pid` on the server's
/// process gives both summaries the `resources` behind the cost delta.
#[test]
fn two_real_runs_against_a_real_server() {
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = slow.clone();
    let server = http_server(handler(move |_req| {
        let slow = flag.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(if slow { 6 } else { 2 })).await;
            text(200, "ok")
        }
    }));
    let dir = tempdir();
    let (b, a) = (dir.path().join("b"), dir.path().join("a"));
    let url = server.url("/");
    // The server runs in this test process: watch it for the cost delta.
    let pid = std::process::id().to_string();
    for (out, is_slow) in [(&b, false), (&a, true)] {
        slow.store(is_slow, std::sync::atomic::Ordering::SeqCst);
        run_json(
            &[
                &url,
                "--rate",
                "200",
                "-z",
                "2s",
                "--watch-pid",
                &pid,
                "--out",
                out.to_str().unwrap(),
            ],
            0,
            LIMIT,
        );
    }
    let r = compare_json(&b, &a, &["--fail-on-regression"], 1);
    let p50 = metric(&r, "p50");
    assert_eq!(p50["verdict"], "regressed", "{r:#}");
    assert!(f(&p50["delta_pct"]) > 50.0, "{p50}");
    assert_eq!(metric(&r, "p99_9")["verdict"], "insufficient_data");
    assert_eq!(r["latency"]["method_before"]["kind"], "iid");
    assert!(
        r["latency"]["method_before"]["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("interval"),
        "{:#}",
        r["latency"]
    );
    assert_eq!(r["comparable"], true, "{:#}", r["differences"]);
    assert_eq!(
        u(&r["before"]["latency_samples"]),
        u(&r["before"]["requests"])
    );
    // Both runs carry the probe's `resources`: the cost delta is reported.
    let cost = &r["cost"];
    for side in ["before", "after"] {
        assert!(f(&cost["cpu_ms_per_request"][side]) > 0.0, "{cost}");
        assert!(f(&cost["peak_rss_bytes"][side]) > 1_048_576.0, "{cost}");
    }
    assert!(cost["notes"].as_array().unwrap().is_empty(), "{cost}");
}

/// The statistics, end to end through files and the binary (the maths alone
/// is validated in `crates/stats/tests`): 20 A/A pairs of 10,000 samples give
/// at most 2 false `regressed` verdicts (10%; nominal 5%), and a planted 20%
/// P99 increase with the median unchanged is found in at least 9 of 10 pairs
/// while P50 is never called regressed.
#[test]
fn false_alarms_and_power_through_the_binary() {
    let dir = tempdir();
    let pair = |i: u64, increase: f64| {
        let (b, a) = (
            dir.path().join(format!("b{i}_{increase}")),
            dir.path().join(format!("a{i}_{increase}")),
        );
        write_run(
            &b,
            &Spec {
                seed: 1_000 + 2 * i,
                ..Spec::default()
            },
        );
        write_run(
            &a,
            &Spec {
                seed: 1_001 + 2 * i,
                p99_increase: increase,
                ..Spec::default()
            },
        );
        compare_json(&b, &a, &["--resamples", "1000"], 0)
    };
    let false_alarms = (0..20)
        .filter(|&i| {
            pair(i, 0.0)["regressed"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
        .count();
    assert!(
        false_alarms <= 2,
        "{false_alarms} of 20 A/A pairs called a regression"
    );
    let (mut detected, mut p50_regressed) = (0, 0);
    for i in 0..10 {
        let r = pair(100 + i, 0.2);
        detected += usize::from(metric(&r, "p99")["verdict"] == "regressed");
        p50_regressed += usize::from(metric(&r, "p50")["verdict"] == "regressed");
    }
    println!("A/A false regressions: {false_alarms}/20; +20% P99 detected: {detected}/10");
    assert!(
        detected >= 9,
        "a +20% P99 was detected in {detected} of 10 pairs"
    );
    assert_eq!(p50_regressed, 0);
}
