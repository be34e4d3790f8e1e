//! `chokepoint history` through the real binary: a real SQLite file, runs
//! added one by one like a CI pipeline would, change points on synthetic
//! series (a step, a spike, flat noise), and unreadable databases.

mod support;
mod synthetic;

use std::path::Path;
use std::time::Duration;

use chokepoint_stats::bootstrap::Rng;
use serde_json::Value;
use support::*;
use synthetic::{write_run, Spec};

const LIMIT: Duration = Duration::from_secs(60);

fn history(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, LIMIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Small runs (the series value is what matters): P99 of a log-normal
/// scales with its median, so `median_ms` sets each run's P99.
fn add_series(dir: &Path, db: &Path, medians: &[f64], seed0: u64) {
    for (i, &median) in medians.iter().enumerate() {
        let run = dir.join(format!("run{}", seed0 + i as u64));
        write_run(
            &run,
            &Spec {
                seed: seed0 + i as u64,
                seconds: 2,
                per_second: 1_000,
                median_ms: median,
                ..Spec::default()
            },
        );
        let label = format!("commit-{i}");
        let (code, stdout, stderr) = history(&[
            "add",
            run.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--label",
            &label,
        ]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(
            stdout.starts_with(&format!("added run #{}", i + 1)),
            "{stdout}"
        );
    }
}

fn check_json(db: &Path, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["check", "--db", db.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (got, stdout, stderr) = history(&args);
    assert_eq!(
        got, code,
        "history {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn noisy(n: usize, level: f64, noise: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| level * (1.0 + noise * rng.normal()))
        .collect()
}

/// A +25% step after run 12 of 20: found at run #13 ("commit-12"), with the
/// means on both sides, and the latest segment is a regression (exit 1).
#[test]
fn a_step_is_found_at_the_right_run_and_alarms() {
    let dir = tempdir();
    let db = dir.path().join("perf.sqlite");
    let mut medians = noisy(12, 10.0, 0.01, 1);
    medians.extend(noisy(8, 12.5, 0.01, 2));
    add_series(dir.path(), &db, &medians, 100);

    let (code, list, _) = history(&["list", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(list.starts_with("20 runs in "), "{list}");
    assert!(list.contains("commit-19"), "{list}");

    let r = check_json(&db, &[], 1);
    assert_eq!(r["schema"], "chokepoint.history.v1");
    assert_eq!(r["metric"], "p99");
    assert_eq!(r["status"], "regression");
    assert_eq!(r["series"].as_array().unwrap().len(), 20);
    let points = r["change_points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{r:#}");
    let p = &points[0];
    assert_eq!(u(&p["index"]), 12);
    assert_eq!(p["label"], "commit-12");
    assert_eq!(u(&p["id"]), 13);
    assert_eq!(p["kind"], "regression");
    assert!((f(&p["change_pct"]) - 25.0).abs() < 5.0, "{p}");
    // P99 of a log-normal with sigma 0.5 is 3.2 × the median.
    assert!((f(&p["mean_before"]) - 31.9).abs() < 2.0, "{p}");
    assert_eq!(r["latest_regression"]["label"], "commit-12");

    let (code, text, _) = history(&["check", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        text.contains("regression  at run #13 \"commit-12\""),
        "{text}"
    );
    assert!(
        text.contains("REGRESSION: the latest 8 runs are +"),
        "{text}"
    );

    // The median moved as much; the error rate did not move at all.
    assert_eq!(
        check_json(&db, &["--metric", "p50"], 1)["status"],
        "regression"
    );
    let e = check_json(&db, &["--metric", "error_rate"], 0);
    assert!(e["change_points"].as_array().unwrap().is_empty(), "{e:#}");
}

/// One slow run, a flat noisy history, and an improvement: no alarm.
#[test]
fn spikes_noise_and_improvements_do_not_alarm() {
    let dir = tempdir();
    let spike_db = dir.path().join("spike.sqlite");
    let mut medians = noisy(15, 10.0, 0.02, 3);
    medians[9] = 30.0;
    add_series(dir.path(), &spike_db, &medians, 200);
    let r = check_json(&spike_db, &[], 0);
    assert!(r["change_points"].as_array().unwrap().is_empty(), "{r:#}");
    assert_eq!(r["status"], "ok");

    let flat_db = dir.path().join("flat.sqlite");
    add_series(dir.path(), &flat_db, &noisy(15, 10.0, 0.03, 4), 300);
    let r = check_json(&flat_db, &[], 0);
    assert!(r["change_points"].as_array().unwrap().is_empty(), "{r:#}");

    let better_db = dir.path().join("better.sqlite");
    let mut medians = noisy(8, 10.0, 0.01, 5);
    medians.extend(noisy(6, 7.0, 0.01, 6));
    add_series(dir.path(), &better_db, &medians, 400);
    let r = check_json(&better_db, &[], 0);
    let points = r["change_points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{r:#}");
    assert_eq!(points[0]["kind"], "improvement");
    assert!(r["latest_regression"].is_null());
    // For throughput lower is worse; these runs all ran at the same rate.
    let t = check_json(&better_db, &["--metric", "throughput"], 0);
    assert_eq!(t["direction"], "lower_is_worse");
}

/// Adding the same run twice keeps one row; --request uses that request's
/// numbers; a too-short history says so and passes.
#[test]
fn idempotent_add_requests_and_short_histories() {
    let dir = tempdir();
    let db = dir.path().join("h.sqlite");
    let run = dir.path().join("run");
    write_run(
        &run,
        &Spec {
            seconds: 2,
            per_second: 200,
            requests: vec![("checkout".into(), 1.0), ("search".into(), 0.5)],
            ..Spec::default()
        },
    );
    let d = db.to_str().unwrap();
    for expected in ["added run #1", "already in"] {
        let (code, stdout, _) = history(&["add", run.to_str().unwrap(), "--db", d]);
        assert_eq!(code, 0);
        assert!(stdout.contains(expected), "{stdout}");
    }
    let (code, added, _) = history(&["add", run.to_str().unwrap(), "--db", d, "--json"]);
    assert_eq!(code, 0);
    let added: Value = serde_json::from_str(&added).unwrap();
    assert_eq!((u(&added["id"]), &added["added"]), (1, &Value::Bool(false)));
    let (_, list, _) = history(&["list", "--db", d, "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    let r = check_json(&db, &["--request", "search", "--metric", "p50"], 0);
    let overall = check_json(&db, &["--metric", "p50"], 0);
    let (search, all) = (
        f(&r["series"][0]["value"]),
        f(&overall["series"][0]["value"]),
    );
    assert!(
        search < all * 0.9,
        "search is the faster request: {search} vs {all}"
    );
    assert!(
        r["notes"][0].as_str().unwrap().contains("needs at least 6"),
        "{r:#}"
    );
    let r = check_json(&db, &["--request", "nope"], 0);
    assert!(r["series"].as_array().unwrap().is_empty());
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap()
            .contains("no request `nope`"),
        "{r:#}"
    );
}

fn expect_bad(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = history(args);
    assert_eq!(code, 2, "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"));
}

/// Missing, corrupt and foreign databases: one line, exit 2.
#[test]
fn unreadable_databases_are_one_line_errors() {
    let dir = tempdir();
    let missing = dir.path().join("missing.sqlite");
    expect_bad(
        &["list", "--db", missing.to_str().unwrap()],
        "not found (create it with",
    );
    assert!(!missing.exists(), "reading never creates a database");

    let corrupt = dir.path().join("corrupt.sqlite");
    std::fs::write(&corrupt, vec![0x5au8; 8192]).unwrap();
    expect_bad(
        &["list", "--db", corrupt.to_str().unwrap()],
        "corrupt.sqlite: file is not a database",
    );
    expect_bad(
        &["check", "--db", corrupt.to_str().unwrap()],
        "file is not a database",
    );
    let run = dir.path().join("run");
    write_run(
        &run,
        &Spec {
            seconds: 1,
            per_second: 10,
            ..Spec::default()
        },
    );
    expect_bad(
        &[
            "add",
            run.to_str().unwrap(),
            "--db",
            corrupt.to_str().unwrap(),
        ],
        "file is not a database",
    );

    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('x');")
        .unwrap();
    expect_bad(
        &["list", "--db", foreign.to_str().unwrap()],
        "not a chokepoint history database",
    );
    expect_bad(
        &[
            "add",
            run.to_str().unwrap(),
            "--db",
            foreign.to_str().unwrap(),
        ],
        "not a chokepoint history database",
    );

    let db = dir.path().join("ok.sqlite");
    history(&["add", run.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    expect_bad(
        &["check", "--db", db.to_str().unwrap(), "--metric", "p42"],
        "--metric `p42`: unknown metric",
    );
    expect_bad(
        &["add", "/nonexistent/run", "--db", db.to_str().unwrap()],
        "/nonexistent/run",
    );
}
