//! `chokepoint check` through the real binary: budgets against synthetic runs
//! of known latency and a real run, JUnit XML parsed by a real XML parser,
//! Markdown, exit codes, and malformed budget files.

mod support;
mod synthetic;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;
use synthetic::{write_run, Spec};

const LIMIT: Duration = Duration::from_secs(60);

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str]) -> Checked {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, LIMIT);
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check_json(run: &Path, budget: &Path, extra: &[&str], code: i32) -> Value {
    let (r, b) = (run.to_str().unwrap(), budget.to_str().unwrap());
    let mut args = vec![r, "--budget", b, "--json"];
    args.extend_from_slice(extra);
    let c = check(&args);
    assert_eq!(
        c.code, code,
        "check {args:?}\nstdout:\n{}\nstderr:\n{}",
        c.stdout, c.stderr
    );
    serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", c.stdout))
}

fn result<'a>(report: &'a Value, section: &str, metric: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["section"] == section && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {section} {metric} in {report:#}"))
}

/// Two requests, half each: `checkout` log-normal with median 10 ms and sigma
/// 0.5 (P95 16.9 ms, P99 31.9 ms), the other with median 5 ms. The mixture has
/// P50 7.07 ms, P75 10.8 ms and P99 28.0 ms.
fn known_run(dir: &Path, seed: u64) -> std::path::PathBuf {
    let run = dir.join(format!("run{seed}"));
    write_run(
        &run,
        &Spec {
            seed,
            error_rate: 0.01,
            requests: vec![("checkout".into(), 1.0), ("search <&\"'>".into(), 0.5)],
            ..Spec::default()
        },
    );
    run
}

/// Budgets that hold and budgets that break, overall and per request; the
/// JUnit file has one test case per budget line and parses as XML.
#[test]
fn budgets_pass_and_fail_with_junit_and_markdown() {
    let dir = tempdir();
    let run = known_run(dir.path(), 1);
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(
        &budgets,
        r#"# latency ceilings
[overall]
p50 = "12ms"
p99 = "25ms"          # breaks: P99 is about 28 ms
p75 = "20ms"
error_rate = "0.5%"   # breaks: 1% errors
min_throughput = "400/s"

[request.checkout]
p95 = "30ms"

[request."search <&\"'>"]
p99 = "10ms"          # breaks: half of 31.9 ms
"#,
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let md = dir.path().join("summary.md");
    let r = check_json(
        &run,
        &budgets,
        &[
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            md.to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(r["schema"], "chokepoint.check.v1");
    assert_eq!(r["status"], "fail");
    assert_eq!((u(&r["passed"]), u(&r["failed"])), (4, 3), "{r:#}");
    let p99 = result(&r, "overall", "p99");
    assert_eq!(p99["status"], "fail");
    assert_eq!(u(&p99["line"]), 4);
    assert!((f(&p99["actual_value"]) - 28.0).abs() < 2.0, "{p99}");
    assert!(p99["message"]
        .as_str()
        .unwrap()
        .contains("over the budget of 25ms"));
    let p75 = result(&r, "overall", "p75");
    assert_eq!(p75["status"], "pass");
    // P75 is not in summary.json: it is read from latency.hlog.
    assert!((f(&p75["actual_value"]) - 10.8).abs() < 0.6, "{p75}");
    let errors = result(&r, "overall", "error_rate");
    assert_eq!(errors["status"], "fail");
    assert!((f(&errors["actual_value"]) - 1.0).abs() < 0.3, "{errors}");
    assert_eq!(result(&r, "overall", "min_throughput")["status"], "pass");
    assert_eq!(result(&r, "request.checkout", "p95")["status"], "pass");
    assert_eq!(result(&r, "request.search <&\"'>", "p99")["status"], "fail");

    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("7"));
    assert_eq!(root.attribute("failures"), Some("3"));
    let cases: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 7);
    for case in &cases {
        assert!(case
            .attribute("classname")
            .unwrap()
            .starts_with("chokepoint.budgets."));
        assert!(case.attribute("name").is_some());
    }
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(
        failed,
        [
            "overall p99 <= 25ms",
            "overall error_rate <= 0.5%",
            "request.search <&\"'> p99 <= 10ms"
        ],
        "names are escaped in the file and come back intact"
    );
    let p99_case = cases
        .iter()
        .find(|c| c.attribute("name") == Some("overall p99 <= 25ms"))
        .unwrap();
    assert_eq!(p99_case.attribute("line"), Some("4"));

    let markdown = read(&md);
    assert!(
        markdown.starts_with("## ❌ chokepoint check: 7 budgets: 4 passed, 3 failed"),
        "{markdown}"
    );
    assert!(
        markdown.contains("search &lt;&amp;\"'&gt;"),
        "HTML is escaped: {markdown}"
    );

    // The text report names the failing lines with file:line.
    let c = check(&[run.to_str().unwrap(), "--budget", budgets.to_str().unwrap()]);
    assert_eq!(c.code, 1);
    assert!(
        c.stdout.contains("FAIL  overall p99 <= 25ms"),
        "{}",
        c.stdout
    );
    assert!(c.stdout.contains("budgets.toml:4: p99 is"), "{}", c.stdout);
    assert!(
        c.stdout
            .ends_with("7 budgets: 4 passed, 3 failed, 0 skipped → FAIL\n"),
        "{}",
        c.stdout
    );
}

/// All budgets hold: exit 0 and a JUnit file without failures.
#[test]
fn all_budgets_hold() {
    let dir = tempdir();
    let run = known_run(dir.path(), 2);
    let budgets = dir.path().join("ok.toml");
    std::fs::write(
        &budgets,
        "[overall]\np99 = \"100ms\"\nmax = \"2s\"\nmean = \"15ms\"\nerror_rate = \"5%\"\n",
    )
    .unwrap();
    let junit = dir.path().join("ok.xml");
    let r = check_json(&run, &budgets, &["--junit", junit.to_str().unwrap()], 0);
    assert_eq!(r["status"], "pass");
    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));
    assert!(!xml.contains("<failure"));
}

/// [regression] against a baseline: a 30% slower run fails p50 and p99; the
/// same distribution passes; without --baseline the lines are skipped.
#[test]
fn regression_budgets_use_compare_statistics() {
    let dir = tempdir();
    let base = dir.path().join("base");
    let same = dir.path().join("same");
    let slow = dir.path().join("slow");
    write_run(
        &base,
        &Spec {
            seed: 10,
            ..Spec::default()
        },
    );
    write_run(
        &same,
        &Spec {
            seed: 11,
            ..Spec::default()
        },
    );
    write_run(
        &slow,
        &Spec {
            seed: 12,
            median_ms: 13.0,
            ..Spec::default()
        },
    );
    let budgets = dir.path().join("reg.toml");
    std::fs::write(
        &budgets,
        "[regression]\nmax_increase = \"10%\"\nmetrics = [\"p50\", \"p99\", \"p99_9\", \"throughput\"]\n",
    )
    .unwrap();
    let b = base.to_str().unwrap();
    let r = check_json(&slow, &budgets, &["--baseline", b], 1);
    let p50 = result(&r, "regression", "p50");
    assert_eq!(p50["status"], "fail", "{p50}");
    assert!(
        p50["message"]
            .as_str()
            .unwrap()
            .contains("beyond the allowed 10%"),
        "{p50}"
    );
    assert!((f(&p50["actual_value"]) - 30.0).abs() < 6.0, "{p50}");
    assert_eq!(result(&r, "regression", "p99")["status"], "fail");
    assert_eq!(result(&r, "regression", "throughput")["status"], "pass");

    let r = check_json(&same, &budgets, &["--baseline", b], 0);
    assert_eq!(u(&r["failed"]), 0, "{r:#}");

    // A 30% slowdown is within a 50% allowance.
    std::fs::write(
        &budgets,
        "[regression]\nmax_increase = \"50%\"\nmetrics = [\"p50\"]\n",
    )
    .unwrap();
    check_json(&slow, &budgets, &["--baseline", b], 0);

    let r = check_json(&slow, &budgets, &[], 0);
    let skipped = result(&r, "regression", "p50");
    assert_eq!(skipped["status"], "skipped");
    assert_eq!(skipped["message"], "no --baseline RUN given");
}

/// Thin data in a regression budget is skipped with the reason, not failed.
#[test]
fn thin_regression_data_is_skipped_with_its_reason() {
    let dir = tempdir();
    let base = dir.path().join("base");
    let run = dir.path().join("run");
    write_run(
        &base,
        &Spec {
            seed: 20,
            seconds: 10,
            per_second: 100,
            ..Spec::default()
        },
    );
    write_run(
        &run,
        &Spec {
            seed: 21,
            seconds: 10,
            per_second: 100,
            ..Spec::default()
        },
    );
    let budgets = dir.path().join("thin.toml");
    std::fs::write(
        &budgets,
        "[regression]\nmax_increase = \"10%\"\nmetrics = [\"p99_9\"]\n",
    )
    .unwrap();
    let junit = dir.path().join("thin.xml");
    let r = check_json(
        &run,
        &budgets,
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        0,
    );
    let p999 = result(&r, "regression", "p99_9");
    assert_eq!(p999["status"], "skipped");
    assert!(
        p999["message"]
            .as_str()
            .unwrap()
            .contains("needs at least 10000 samples"),
        "{p999}"
    );
    let xml = read(&junit);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("skipped"), Some("1"));
    assert!(doc.descendants().any(|n| n.has_tag_name("skipped")));
}

fn expect_bad(run: &Path, budget_text: &str, needle: &str) {
    let dir = tempdir();
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(&budgets, budget_text).unwrap();
    let c = check(&[run.to_str().unwrap(), "--budget", budgets.to_str().unwrap()]);
    assert_eq!(
        c.code, 2,
        "{budget_text}\nstdout:\n{}\nstderr:\n{}",
        c.stdout, c.stderr
    );
    assert_eq!(c.stderr.lines().count(), 1, "one line: {}", c.stderr);
    assert!(
        c.stderr.contains("budgets.toml:"),
        "names the file: {}",
        c.stderr
    );
    assert!(
        c.stderr.contains(needle),
        "expected `{needle}` in: {}",
        c.stderr
    );
    assert!(c.stdout.is_empty(), "nothing checked: {}", c.stdout);
}

/// Malformed budget files: one line naming file, line, column and field; exit 2.
#[test]
fn malformed_budgets_are_one_line_errors() {
    let dir = tempdir();
    let run = known_run(dir.path(), 3);
    expect_bad(
        &run,
        "[overall]\np99 = \"200ms\"\nlatency = \"1s\"\n",
        "budgets.toml:3:1: [overall] latency: unknown metric",
    );
    expect_bad(
        &run,
        "[overall]\np99 = \"200 fortnights\"\n",
        "budgets.toml:2:7: [overall] p99: unknown duration unit",
    );
    expect_bad(
        &run,
        "[overall]\n\"p100\" = \"1s\"\n",
        "budgets.toml:2:1: [overall] p100: bad percentile",
    );
    expect_bad(
        &run,
        "[overall]\nerror_rate = 0.1\n",
        "[overall] error_rate: expected a percentage",
    );
    expect_bad(&run, "[overal]\np99 = \"1s\"\n", "budgets.toml:1:2:");
    expect_bad(&run, "[overall]\np99 = \"1s\n", "budgets.toml:2:");
    expect_bad(
        &run,
        "[request.nope]\np99 = \"1s\"\n",
        "budgets.toml:1: [request.nope]: the run has no request of that name (it has: checkout, search",
    );
    expect_bad(
        &run,
        "[regression]\nmax_increase = \"ten\"\n",
        "budgets.toml:2:16: [regression] max_increase",
    );
}

/// A budget file that does not exist, a run that does not exist: exit 2.
#[test]
fn missing_files_are_bad_input() {
    let dir = tempdir();
    let run = known_run(dir.path(), 4);
    let c = check(&[
        run.to_str().unwrap(),
        "--budget",
        "/nonexistent/budgets.toml",
    ]);
    assert_eq!(c.code, 2);
    assert!(
        c.stderr
            .contains("cannot read budgets /nonexistent/budgets.toml"),
        "{}",
        c.stderr
    );
    let budgets = dir.path().join("b.toml");
    std::fs::write(&budgets, "[overall]\np99 = \"1s\"\n").unwrap();
    let c = check(&["/nonexistent/run", "--budget", budgets.to_str().unwrap()]);
    assert_eq!(c.code, 2);
    assert!(
        c.stderr.starts_with("error: RUN: /nonexistent/run"),
        "{}",
        c.stderr
    );
}

/// The shipped example parses, and a real run against a real server passes it.
#[test]
fn example_budgets_against_a_real_run() {
    let server = http_server(handler(|_req| async { text(200, "ok") }));
    let dir = tempdir();
    let out = dir.path().join("real");
    run_json(
        &[
            &server.url("/"),
            "--rate",
            "200",
            "-z",
            "1500ms",
            "--out",
            out.to_str().unwrap(),
        ],
        0,
        LIMIT,
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/budgets.toml");
    // The example names a `checkout` request; a URL run has one request, `default`.
    let text = read(&example).replace("[request.checkout]", "[request.default]");
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(&budgets, text).unwrap();
    let r = check_json(&out, &budgets, &[], 0);
    assert_eq!(r["status"], "pass", "{r:#}");
    assert!(u(&r["passed"]) >= 4, "{r:#}");
    assert_eq!(
        u(&r["skipped"]),
        2,
        "regression lines without --baseline: {r:#}"
    );
}
