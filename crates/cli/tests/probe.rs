//! `chokepoint run --watch-pid` against the lab process: `summary.json` gains
//! `resources` (the names `compare` reads), the run directory `resources.csv`,
//! and the text report a USE table.

mod stress_support;
mod support;

use std::time::Duration;

use stress_support::Lab;
use support::{f, u};

#[test]
fn run_watches_the_target_process() {
    let lab = Lab::start(&[]);
    let dir = support::tempdir();
    let out = dir.path().join("run");
    let url = lab.checkout();
    let pid = lab.pid.to_string();
    let args = [
        "run",
        "--json",
        "--quiet",
        url.as_str(),
        "-X",
        "POST",
        "-c",
        "4",
        "-z",
        "3s",
        "--warmup",
        "500ms",
        "--watch-pid",
        pid.as_str(),
        "--out",
        out.to_str().unwrap(),
    ];
    let s = stress_support::json_of(&args, 0, Duration::from_secs(60));
    let r = &s["resources"];
    assert_eq!(u(&r["pid"]), lab.pid as u64, "{r}");
    assert_eq!(r["process"], "chokepoint", "{r}");
    // Armed at the start of the measured window: about 3 one-second samples.
    let samples = u(&r["samples"]);
    assert!((2..=5).contains(&samples), "{r}");
    assert!((f(&r["duration_s"]) - 3.0).abs() < 1.0, "{r}");
    let cpu = f(&r["cpu_seconds"]);
    assert!(cpu > 0.0, "{r}");
    let per_request = f(&r["cpu_per_request_ms"]);
    let requests = u(&s["requests"]) as f64;
    assert!((per_request - cpu * 1000.0 / requests).abs() < 1e-6, "{r}");
    assert!(u(&r["peak_rss_bytes"]) > 1 << 20, "{r}");
    assert!(u(&r["peak_fds"]) >= 4, "{r}");
    assert!(u(&r["peak_threads"]) >= 2, "{r}");
    assert!(r["run_queue_delay_seconds"].as_f64().is_some(), "{r}");
    let use_rows: Vec<&str> = r["use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        use_rows,
        [
            "cpu",
            "memory",
            "file descriptors",
            "disk I/O",
            "scheduling"
        ]
    );

    // The run directory: summary.json carries the same object; resources.csv one row a second.
    let on_disk: serde_json::Value =
        serde_json::from_str(&support::read(&out.join("summary.json"))).unwrap();
    assert_eq!(on_disk["resources"], s["resources"]);
    let csv = support::read(&out.join("resources.csv"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "second");
    assert!(header.contains(&"rss_bytes") && header.contains(&"cpu_user_cores"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() as u64 >= samples.min(3), "{csv}");
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{csv}");
        let rss: u64 = row[header.iter().position(|h| *h == "rss_bytes").unwrap()]
            .parse()
            .unwrap();
        assert!(rss > 1 << 20, "{csv}");
    }

    // The text report shows the cost and the USE table.
    let text_args: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--json" && *a != "--out" && !a.ends_with("/run"))
        .collect();
    let text = support::chokepoint(&text_args, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Target resources (pid"), "{stdout}");
    assert!(stdout.contains("ms CPU per request"), "{stdout}");
    assert!(stdout.contains("file descriptors"), "{stdout}");
}

#[test]
fn runs_without_a_probe_have_no_resources() {
    let server = support::http_server(support::handler(|_req| async { support::text(200, "ok") }));
    let s = support::run_json(
        &[&server.url("/"), "-c", "2", "-z", "1s"],
        0,
        Duration::from_secs(30),
    );
    assert!(s["resources"].is_null(), "{s}");
}
