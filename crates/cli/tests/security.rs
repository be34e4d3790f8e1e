//! HTML reports escape all target-provided text: markup that would act if it
//! ran is fed through request names, request headers, trace service and span
//! names, span status messages, and hand-edited summaries (target, names,
//! error kinds); every `report.html` written (run, compare, soak, diagnose)
//! is loaded in headless Chromium, and nothing ran: no changed title, no
//! attribute set by a handler, no console message.

mod faults_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faults_support::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// What the payloads do when they run: the marker is built at run time
/// (String.fromCharCode), so it never appears in the page as text.
const MARKER: &str = "PWNED";
const JS_MARKER: &str = "String.fromCharCode(80,87,78,69,68)";

fn payloads() -> Vec<String> {
    vec![
        format!("<script>document.title={JS_MARKER};console.log({JS_MARKER})</script>"),
        format!("<img src=x onerror=\"document.documentElement.setAttribute('data-'+{JS_MARKER}.toLowerCase(),1);console.log({JS_MARKER})\">"),
        format!("\"><svg onload=\"console.log({JS_MARKER})\"></svg>"),
        format!("'></title></style><script>console.log({JS_MARKER})</script>"),
        format!("<a href=\"javascript:console.log({JS_MARKER})\" id=clickme>x</a>"),
    ]
}

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(c);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("headless Chromium is needed for the HTML escaping test: apt-get install -y chromium (.ci/run does)");
}

/// The DOM after load and Chromium's log (console messages included).
fn load_in_chromium(page: &Path, profile: &Path) -> (String, String) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=2000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> Measured {
    let m = run_measured(args, LIMIT);
    assert_eq!(m.code, Some(0), "{}", m.show());
    m
}

/// A scenario whose request names are the payloads.
fn hostile_scenario(dir: &Path, base: &str) -> PathBuf {
    let mut text = format!("base_url = \"{base}\"\n");
    for (i, p) in payloads().iter().enumerate() {
        text.push_str(&format!(
            "\n[[request]]\nname = {}\npath = \"/r{i}\"\nheaders = {{ X-Note = {} }}\n",
            toml_string(p),
            toml_string(p)
        ));
    }
    let path = dir.join("hostile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// OTLP/JSON spans whose service, span names and status messages are payloads.
fn hostile_spans(dir: &Path) -> PathBuf {
    let p = payloads();
    let mut lines = String::new();
    for t in 1..=40u64 {
        let slow = if t == 40 { 50 } else { 1 };
        let base = 1_700_000_000_000_000_000u64 + t * 1_000_000_000;
        let span = |id: u64, parent: Option<u64>, name: &str, kind: u64, start: u64, end: u64| {
            let mut s = serde_json::json!({
                "traceId": format!("{t:032x}"), "spanId": format!("{id:016x}"),
                "name": name, "kind": kind,
                "startTimeUnixNano": (base + start * 1_000_000).to_string(),
                "endTimeUnixNano": (base + end * 1_000_000).to_string(),
                "status": {"code": 2, "message": p[3]},
            });
            if let Some(parent) = parent {
                s["parentSpanId"] = serde_json::json!(format!("{parent:016x}"));
            }
            s
        };
        let doc = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": p[0]}}]},
            "scopeSpans": [{"spans": [
                span(1, None, &p[1], 2, 0, slow + 4),
                span(2, Some(1), &format!("pool.acquire {}", p[2]), 1, 1, 1 + slow),
                span(3, Some(1), &p[4], 3, 1 + slow, 3 + slow),
            ]}]
        }]});
        lines.push_str(&doc.to_string());
        lines.push('\n');
    }
    let path = dir.join("spans.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// Writes payloads into a run's summary.json where a shared or hand-edited
/// file could carry them: the target, a request name and an error kind.
fn poison_summary(run: &Path) {
    let path = run.join("summary.json");
    let mut s: serde_json::Value = serde_json::from_str(&read_file(&path)).unwrap();
    let p = payloads();
    s["target"] = serde_json::json!(format!("http://127.0.0.1:1/{}", p[0]));
    let by_request = s["by_request"].as_object_mut().unwrap();
    let (name, stats) = by_request
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    by_request.remove(&name);
    by_request.insert(p[1].clone(), stats);
    s["errors"] = serde_json::json!({ p[2].clone(): 0 });
    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap()).unwrap();
}

fn assert_nothing_ran(page: &Path, profile: &Path) {
    let html = read_file(page);
    for p in payloads() {
        assert!(
            !html.contains(&p),
            "{}: payload verbatim: {p}",
            page.display()
        );
    }
    let lower = html.to_ascii_lowercase();
    for tag in [
        "<script",
        "<img",
        "onerror=\"",
        "onload=\"",
        "href=\"javascript:",
    ] {
        assert!(
            !lower.contains(tag),
            "{}: `{tag}` in the page",
            page.display()
        );
    }
    let (dom, log) = load_in_chromium(page, profile);
    assert!(dom.contains("</html>"), "{}: no DOM: {log}", page.display());
    assert!(
        !dom.contains(MARKER) && !dom.to_ascii_lowercase().contains("data-pwned"),
        "{}: a payload ran (DOM)",
        page.display()
    );
    assert!(
        !log.contains(MARKER),
        "{}: a payload ran (console):\n{log}",
        page.display()
    );
    // The payloads are there, as text.
    assert!(
        dom.contains("&lt;script&gt;") || dom.contains("&lt;img"),
        "{}: the hostile text is not shown at all",
        page.display()
    );
}

#[test]
fn html_reports_escape_target_text_and_nothing_runs() {
    let server = http_server(handler(|_req| async { text(200, "ok") }));
    let dir = tempdir();
    let root = dir.path();
    let scenario = hostile_scenario(root, &server.url(""));
    let (a, b) = (root.join("a"), root.join("b"));
    for out in [&a, &b] {
        ok(&[
            "run",
            scenario.to_str().unwrap(),
            "--rate",
            "100",
            "-z",
            "2s",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    let soak = root.join("soak");
    ok(&[
        "soak",
        scenario.to_str().unwrap(),
        "--rate",
        "50",
        "-z",
        "3s",
        "--window",
        "1s",
        "--quiet",
        "--out",
        soak.to_str().unwrap(),
    ]);
    let spans = hostile_spans(root);
    let diagnosed = root.join("diagnosed");
    ok(&[
        "diagnose",
        "--run",
        a.to_str().unwrap(),
        "--traces",
        spans.to_str().unwrap(),
        "--out",
        diagnosed.to_str().unwrap(),
    ]);
    // Hand-edited summaries (a shared CI artifact, say) through compare.
    poison_summary(&b);
    let compared = root.join("compared");
    ok(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        compared.to_str().unwrap(),
    ]);
    let profile = root.join("chromium-profile");
    let mut pages = 0;
    for d in [&a, &soak, &diagnosed, &compared] {
        let page = d.join("report.html");
        assert!(page.is_file(), "no {}", page.display());
        assert_nothing_ran(&page, &profile);
        pages += 1;
    }
    assert_eq!(pages, 4);
}
