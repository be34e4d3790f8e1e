//! Shards and `chokepoint merge` through the real binary: four shard
//! processes against one server on 127.0.0.1:0 started together, merged
//! exactly, compared with one generator at the total rate; membership checks;
//! a killed shard; interval logs read and written by the Python
//! `hdrhistogram` package.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chokepoint_stats::{hlog, new_histogram, summarize, Histogram};
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// 80% of requests answer at once, 20% after 20 ms (by arrival order, so any
/// split of the arrivals sees the same mix).
fn two_speed_server() -> Server {
    let n = Arc::new(AtomicU64::new(0));
    http_server(handler(move |_req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if i.is_multiple_of(5) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            text(200, "ok")
        }
    }))
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&read(&dir.join("summary.json"))).unwrap()
}

fn log_total(path: &Path) -> Histogram {
    let mut total = new_histogram();
    for i in hlog::read(&read(path)).unwrap() {
        total.add(&i.histogram).unwrap();
    }
    total
}

fn start_at(after: Duration) -> String {
    let t = SystemTime::now() + after;
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    // Whole seconds, RFC 3339 with Z, the way the k8s manifests write it.
    humantime_like(secs)
}

fn humantime_like(epoch: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs `chokepoint merge` and returns (exit code, stdout, stderr).
fn merge(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["merge"];
    all.extend_from_slice(args);
    let out = chokepoint(&all, LIMIT);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_shard(
    url: &str,
    rate: &str,
    duration: &str,
    shard: &str,
    at: &str,
    out: &Path,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "run",
            url,
            "--rate",
            rate,
            "-z",
            duration,
            "--shard",
            shard,
            "--start-at",
            at,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python_hdrh() -> Option<&'static str> {
    let found = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import hdrh.log"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the Python hdrhistogram package (.ci/run installs it)"
        );
        eprintln!(
            "\n\n!!!!! SKIPPED the Python hdrhistogram interoperability checks: `import hdrh` failed.\n\
             !!!!! Run `pip install hdrhistogram` (see .ci/run).\n\n"
        );
    }
    found
}

/// Reads a log with Python's `HistogramLogReader`; prints total count and P50/P99 (µs).
const PY_READ: &str = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
total = HdrHistogram(1, 3600 * 1000 * 1000, 3)
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 1000 * 1000, 3))
n = 0
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    total.add(h)
    n += 1
print(n, total.get_total_count(), total.get_value_at_percentile(50), total.get_value_at_percentile(99))
"#;

/// Rewrites a log with Python's `HistogramLogWriter` (absolute timestamps, no BaseTime).
const PY_REWRITE: &str = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 1000 * 1000, 3))
with open(sys.argv[2], "w") as out:
    writer = HistogramLogWriter(out)
    writer.output_comment("[Logged with the Python hdrhistogram package]")
    writer.output_log_format_version()
    writer.output_legend()
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        writer.output_interval_histogram(h, max_value_unit_ratio=1000.0)
"#;

#[test]
fn four_shards_merge_exactly_and_match_one_generator() {
    let server = two_speed_server();
    let url = server.url("/");
    let dir = tempdir();
    let single = dir.path().join("single");
    // One generator at the total rate.
    let s = run_json(
        &[
            &url,
            "--rate",
            "400",
            "-z",
            "3s",
            "--out",
            single.to_str().unwrap(),
        ],
        0,
        LIMIT,
    );
    assert_eq!(s["requests"], 1200, "{s}");

    // Four shards at a quarter each, started together.
    let at = start_at(Duration::from_secs(3));
    let shards: Vec<_> = (0..4)
        .map(|i| dir.path().join(format!("shard-{i}")))
        .collect();
    let children: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(i, out)| spawn_shard(&url, "400", "3s", &format!("{i}/4"), &at, out))
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        wait_ok(c, &format!("shard {i}"));
    }
    let mut fingerprint = None;
    for (i, shard) in shards.iter().enumerate() {
        let s = summary(shard);
        assert_eq!(s["requests"], 300, "shard {i}: rate/4 for 3 s\n{s}");
        assert_eq!(s["errors"], serde_json::json!({}), "shard {i}");
        assert_eq!(s["rate_target"], 100.0);
        assert_eq!(s["shard"]["index"], i as u64);
        assert_eq!(s["shard"]["count"], 4);
        let skew = f(&s["shard"]["start_skew_ms"]);
        assert!(
            (0.0..250.0).contains(&skew),
            "shard {i} started {skew} ms after --start-at"
        );
        let fp = s["scenario_fingerprint"].as_str().unwrap().to_string();
        assert_eq!(
            fingerprint.get_or_insert(fp.clone()),
            &fp,
            "one fingerprint for all shards"
        );
        assert!(shard.join("shard.json").is_file() && shard.join("totals.hlog").is_file());
    }

    let merged = dir.path().join("merged");
    let mut args: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend(["--out", merged.to_str().unwrap(), "--json"]);
    let (code, stdout, stderr) = merge(&args);
    assert_eq!(code, 0, "{stderr}");
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(m, summary(&merged), "--json prints what summary.json holds");
    // Counts are exact.
    assert_eq!(m["requests"], 1200);
    assert_eq!(m["ok"], 1200);
    assert_eq!(m["latency_ms"]["count"], 1200);
    assert_eq!(m["rate_target"], 400.0);
    assert_eq!(m["merged"]["shards"], serde_json::json!([0, 1, 2, 3]));
    assert_eq!(m["merged"]["notes"], serde_json::json!([]), "{m}");
    assert!(f(&m["merged"]["start_spread_ms"]) < 250.0, "{m}");
    assert_eq!(m["by_request"]["default"]["requests"], 1200);
    assert_eq!(
        m["service_time_ms"]["count"], 1200,
        "service time merged from totals.hlog"
    );

    // Exact: the merged percentiles are those of the sum of the shards' histograms.
    let mut sum = new_histogram();
    for shard in &shards {
        sum.add(log_total(&shard.join("latency.hlog"))).unwrap();
    }
    let merged_log = log_total(&merged.join("latency.hlog"));
    assert_eq!(merged_log.len(), 1200);
    let exact = summarize(&sum);
    for (key, want) in [
        ("p50", exact.p50_ms),
        ("p99", exact.p99_ms),
        ("max", exact.max_ms),
    ] {
        assert_eq!(f(&m["latency_ms"][key]), want, "{key}");
    }
    assert_eq!(summarize(&merged_log), exact);

    // Merged arrivals are evenly spread: every full second holds about a third.
    let rows: Vec<Vec<f64>> = read(&merged.join("timeseries.csv"))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let full: Vec<f64> = rows.iter().filter(|r| r[1] > 50.0).map(|r| r[1]).collect();
    assert!(full.len() >= 3, "{rows:?}");
    for n in &full[..3] {
        assert!((n - 400.0).abs() <= 40.0, "per-second counts {full:?}");
    }

    // And they agree with one generator at the total rate.
    for key in ["p50", "p90", "p99"] {
        let (a, b) = (f(&m["latency_ms"][key]), f(&s["latency_ms"][key]));
        let tolerance = if key == "p50" { 2.0 } else { 0.25 * b.max(a) };
        eprintln!("{key}: merged {a:.3} ms, single generator {b:.3} ms");
        assert!(
            (a - b).abs() <= tolerance,
            "{key}: merged {a} vs single {b}"
        );
    }

    // compare and check read the merged directory like any run.
    let out = chokepoint(
        &[
            "compare",
            single.to_str().unwrap(),
            merged.to_str().unwrap(),
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Membership: a missing shard, a shard of another test.
    let (code, _, stderr) = merge(&[
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        shards[3].to_str().unwrap(),
        "--out",
        dir.path().join("m2").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("shard 2 of 4 is missing"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let other = dir.path().join("other");
    let s = run_json(
        &[
            &url,
            "--rate",
            "800",
            "-z",
            "1s",
            "--shard",
            "2/4",
            "--out",
            other.to_str().unwrap(),
        ],
        0,
        LIMIT,
    );
    assert_eq!(s["shard"]["index"], 2);
    let (code, _, stderr) = merge(&[
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        other.to_str().unwrap(),
        shards[3].to_str().unwrap(),
        "--out",
        dir.path().join("m3").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("fingerprint") && stderr.contains("other"),
        "{stderr}"
    );
    let (code, _, stderr) = merge(&[
        shards[0].to_str().unwrap(),
        shards[0].to_str().unwrap(),
        "--out",
        dir.path().join("m4").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("appears twice"), "{stderr}");
    // A parent directory stands for the shard directories in it.
    let parent = dir.path().join("parent");
    std::fs::create_dir(&parent).unwrap();
    for (i, shard) in shards.iter().enumerate() {
        std::fs::rename(shard, parent.join(format!("shard-{i}"))).unwrap();
    }
    let merged_again = parent.join("merged");
    let (code, _, stderr) = merge(&[
        parent.to_str().unwrap(),
        "--out",
        merged_again.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&merged_again)["latency_ms"], m["latency_ms"]);

    // The Python hdrhistogram package reads our log and writes one we merge.
    let Some(py) = python_hdrh() else { return };
    let out = Command::new(py)
        .args(["-c", PY_READ, single.join("latency.hlog").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let single_summary = summary(&single);
    assert!(fields[0] >= 3.0, "intervals {fields:?}");
    assert_eq!(fields[1], 1200.0, "Python's total count");
    for (i, key) in [(2, "p50"), (3, "p99")] {
        let ours = f(&single_summary["latency_ms"][key]) * 1000.0;
        assert!(
            (fields[i] - ours).abs() <= ours * 0.002 + 1.0,
            "{key}: Python {} µs, ours {ours} µs",
            fields[i]
        );
    }
    // Rewrite shard 1's log with Python's writer; the merge is unchanged.
    let log = parent.join("shard-1").join("latency.hlog");
    let rewritten = dir.path().join("python.hlog");
    let out = Command::new(py)
        .args([
            "-c",
            PY_REWRITE,
            log.to_str().unwrap(),
            rewritten.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&rewritten);
    assert!(
        !text.contains("BaseTime") && text.contains("Python"),
        "{text}"
    );
    std::fs::copy(&rewritten, &log).unwrap();
    let merged_py = dir.path().join("merged-python");
    let (code, _, stderr) = merge(&[
        parent.to_str().unwrap(),
        "--out",
        merged_py.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mp = summary(&merged_py);
    assert_eq!(
        mp["latency_ms"], m["latency_ms"],
        "merging a Python-written log changes nothing"
    );
    assert_eq!(mp["merged"]["notes"], serde_json::json!([]), "{mp}");
}

#[test]
fn a_killed_shard_is_merged_from_what_it_left() {
    let server = two_speed_server();
    let url = server.url("/");
    let dir = tempdir();
    let at = start_at(Duration::from_secs(2));
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let done = spawn_shard(&url, "100", "5s", "0/2", &at, &a);
    let mut killed = spawn_shard(&url, "100", "5s", "1/2", &at, &b);
    // Both start within 2 s; kill shard 1 hard about two seconds into its run.
    std::thread::sleep(Duration::from_millis(3500));
    killed.kill().unwrap();
    killed.wait().unwrap();
    wait_ok(done, "shard 0");
    assert!(!b.join("summary.json").exists() && b.join("shard.json").exists());
    // A line cut short, as a crash mid-write leaves it.
    let mut log = read(&b.join("latency.hlog"));
    let last = log.lines().last().unwrap().to_string();
    log.push_str(&last[..last.len() / 2]);
    std::fs::write(b.join("latency.hlog"), log).unwrap();
    let csv_requests: u64 = read(&b.join("timeseries.csv"))
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(csv_requests > 0);

    let merged = dir.path().join("merged");
    let (code, stdout, stderr) = merge(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("no summary.json"), "{stdout}");
    let m = summary(&merged);
    let sa = summary(&a);
    assert_eq!(u(&m["requests"]), u(&sa["requests"]) + csv_requests);
    assert_eq!(m["interrupted"], true);
    let notes = m["merged"]["notes"].to_string();
    assert!(notes.contains("cut short"), "{notes}");
    assert_eq!(
        u(&m["latency_ms"]["count"]),
        log_total(&merged.join("latency.hlog")).len(),
        "summary and log agree (compare and check rely on it)"
    );
}

#[test]
fn bad_shard_input_is_one_line_and_exit_2() {
    let dir = tempdir();
    for (args, expected) in [
        (
            vec!["http://127.0.0.1:1/", "--shard", "4/4"],
            "expected I/N",
        ),
        (vec!["http://127.0.0.1:1/", "--shard", "x"], "expected I/N"),
        (
            vec!["http://127.0.0.1:1/", "--start-at", "2020-01-01T00:00:00Z"],
            "ago; give a time in the future",
        ),
        (
            vec!["http://127.0.0.1:1/", "--start-at", "soon"],
            "RFC 3339",
        ),
        (
            vec!["http://127.0.0.1:1/", "-c", "3", "--shard", "3/4"],
            "shard 3 would have none",
        ),
    ] {
        let mut all = vec!["run", "--quiet"];
        all.extend(args.iter());
        let out = chokepoint(&all, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // --wait polls (bounded) for the missing shard, then says what is missing.
    let lonely = dir.path().join("waiting").join("shard-0");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::write(
        lonely.join("shard.json"),
        r#"{"schema": "chokepoint.shard.v1", "index": 0, "count": 2, "fingerprint": "fnv1a64:0", "target": "http://x/", "model": "open"}"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, _, stderr) = merge(&[
        dir.path().join("waiting").to_str().unwrap(),
        "--out",
        dir.path().join("w").to_str().unwrap(),
        "--wait",
        "2s",
    ]);
    let waited = started.elapsed();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("shard 1 of 2 is missing"), "{stderr}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, stderr) = merge(&[
        empty.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("neither a run directory"), "{stderr}");
    std::fs::write(
        empty.join("latency.hlog"),
        "#[StartTime: 1 (seconds since epoch)]\n1.0,1.0,x,@@@\n",
    )
    .unwrap();
    let (code, _, stderr) = merge(&[
        empty.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("latency.hlog:2: not an interval line"),
        "{stderr}"
    );
}
