//! `report.html` in a real browser: real runs against a real server (with
//! hostile request names), `run --out`, `compare --out` and `diagnose --out`,
//! then headless Chromium (Debian's `chromium`, installed by `.ci/run`):
//! the page loads without console errors, the key numbers are in the DOM,
//! target-provided text stays text, and a screenshot is saved
//! (`target/tmp/report-compare.png`, printed).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const HOSTILE: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(c);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("headless Chromium is needed for the HTML report tests: apt-get install -y chromium (.ci/run does)");
}

/// Runs headless Chromium with `extra` flags on `page`; returns (stdout, stderr).
fn browse(page: &Path, extra: &[String], profile: &Path) -> (String, String) {
    let url = format!("file://{}", page.display());
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend_from_slice(extra);
    args.push(url);
    let mut child = Command::new(chromium())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
        })
        .collect()
}

fn scenario(dir: &Path, base: &str) -> PathBuf {
    let path = dir.join("hostile.toml");
    std::fs::write(
        &path,
        format!(
            "base_url = \"{base}\"\n\n[[request]]\nname = '{HOSTILE}'\npath = \"/fast\"\n\n[[request]]\nname = \"slow & <b>bold</b>\"\npath = \"/slow\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn compare_report_loads_in_chromium_with_numbers_escaped_text_and_a_screenshot() {
    let server = http_server(handler(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
        text(200, "ok")
    }));
    let dir = tempdir();
    let toml = scenario(dir.path(), &server.url("/"));
    let before = dir.path().join("before");
    let after = dir.path().join("after");
    for out in [&before, &after] {
        let o = chokepoint(
            &[
                "run",
                toml.to_str().unwrap(),
                "--rate",
                "200",
                "-z",
                "3s",
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.join("report.html").is_file());
    }
    let cmp = dir.path().join("cmp");
    let o = chokepoint(
        &[
            "compare",
            before.to_str().unwrap(),
            after.to_str().unwrap(),
            "--out",
            cmp.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let page = cmp.join("report.html");
    let html = read(&page);
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"), "a script in the page");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<img"), "the hostile name was not escaped");

    let profile = dir.path().join("chromium-profile");
    let (dom, stderr) = browse(&page, &["--dump-dom".into()], &profile);
    assert!(dom.contains("</html>"), "no DOM dumped: {stderr}");
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    // The key numbers, as the browser parsed them.
    let summary: serde_json::Value =
        serde_json::from_str(&read(&after.join("summary.json"))).unwrap();
    let p99 = f(&summary["latency_ms"]["p99"]);
    assert!(
        dom.contains(&format!("data-p99=\"{p99:.3}\"")),
        "P99 {p99} not in the DOM"
    );
    assert!(dom.contains("Percentile spectrum") && dom.contains("Before / after"));
    assert!(dom.contains("data-metric=\"p99\""));
    // Hostile text arrives as text: no element was made of it.
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;") || html.contains("&lt;img"));
    assert!(dom.contains("slow &amp; &lt;b&gt;bold&lt;/b&gt;"));

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-compare.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = browse(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2200".into(),
        ],
        &profile,
    );
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{stderr}"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a nearly empty screenshot: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn diagnosis_report_shows_the_constraint_and_the_fix_plan() {
    // A run whose summary and traces come from the real lab is the demo's
    // business; here: a run plus a trace analysis file with hostile span names.
    let server = http_server(handler(|_req| async move { text(200, "ok") }));
    let dir = tempdir();
    let run = dir.path().join("run");
    let o = chokepoint(
        &[
            "run",
            &server.url("/x"),
            "--rate",
            "100",
            "-z",
            "2s",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(0));
    let traces = dir.path().join("traces.json");
    std::fs::write(
        &traces,
        serde_json::json!({
            "schema": "chokepoint.traces.v1",
            "traces": 500, "spans": 2000,
            "groups": {"by": "trace_duration", "n_p50": 200, "n_p99": 12,
                       "mean_ms_p50": 3.0, "mean_ms_p99": 40.0,
                       "wait_share_p50": 0.05, "wait_share_p99": 0.8},
            "tail": [
                {"service": "api", "operation": format!("pool.acquire {HOSTILE}"), "wait": true,
                 "ms_p50": 0.1, "ms_p99": 33.0, "share_p50": 0.03, "share_p99": 0.82},
                {"service": "api", "operation": "SELECT items", "wait": false,
                 "ms_p50": 2.5, "ms_p99": 2.6, "share_p50": 0.8, "share_p99": 0.07}
            ],
            "detectors": [], "network": []
        })
        .to_string(),
    )
    .unwrap();
    let out = dir.path().join("diag");
    let o = chokepoint(
        &[
            "diagnose",
            "--run",
            run.to_str().unwrap(),
            "--traces",
            traces.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let page = out.join("report.html");
    let profile = dir.path().join("chromium-profile");
    let (dom, stderr) = browse(&page, &["--dump-dom".into()], &profile);
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    assert!(dom.contains("data-class=\"queueing\""), "{dom}");
    assert!(dom.contains("pool sizing") && dom.contains("Fix plan"));
    assert!(!dom.contains("<img") && !dom.contains("<script"));
}
