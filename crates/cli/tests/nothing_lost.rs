//! Nothing measured is lost: a run killed with SIGKILL leaves an interval log
//! holding every complete second, which `merge` (and then `compare`) read;
//! SIGTERM stops a run like Ctrl-C: a partial report and exit 130.

mod faults_support;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use faults_support::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits until `path` holds at least `n` interval lines (bounded by `limit`).
fn wait_for_intervals(path: &Path, n: usize, limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(path)
            .map(|t| {
                t.lines()
                    .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                    .count()
            })
            .unwrap_or(0);
        if lines >= n {
            return lines;
        }
        assert!(
            started.elapsed() < limit,
            "only {lines} intervals in {} after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_to_kill(url: &str, out: &Path) -> Running {
    spawn(&[
        "run",
        url,
        "--rate",
        "200",
        "-z",
        "30s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn sigkill_leaves_every_complete_second_readable_by_merge_and_compare() {
    let server = http_server(handler(|_req| async { text(200, "ok") }));
    let dir = tempdir();
    let killed = dir.path().join("killed");
    let child = run_to_kill(&server.url("/"), &killed);
    let log = killed.join("latency.hlog");
    wait_for_intervals(&log, 3, Duration::from_secs(20));
    // Mid-second: the fourth interval is being measured, not yet written.
    std::thread::sleep(Duration::from_millis(500));
    let written_before_kill = wait_for_intervals(&log, 3, LIMIT);
    child.signal(libc::SIGKILL);
    let m = child.wait(LIMIT);
    assert_eq!(m.signal, Some(libc::SIGKILL), "{}", m.show());
    assert!(
        !killed.join("summary.json").exists(),
        "a killed run writes no summary"
    );

    // The log as it is on disk: every line whole, one interval per second,
    // each holding about a second of 200/s.
    let text = read_file(&log);
    assert!(text.ends_with('\n'), "the last interval line is whole");
    let intervals = chokepoint_stats::hlog::read(&text).unwrap();
    assert!(
        intervals.len() >= written_before_kill && intervals.len() >= 3,
        "{} intervals, {written_before_kill} seen before the kill",
        intervals.len()
    );
    for (i, interval) in intervals.iter().enumerate() {
        assert!((interval.start_s - i as f64).abs() < 1e-3, "interval {i}");
        assert!((interval.length_s - 1.0).abs() < 1e-3, "interval {i}");
        let n = interval.histogram.len();
        assert!((180..=220).contains(&n), "interval {i}: {n} samples");
    }
    let samples: u64 = intervals.iter().map(|i| i.histogram.len()).sum();
    let csv = read_file(&killed.join("timeseries.csv"));
    let csv_requests: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv.lines().count() - 1, intervals.len());
    assert_eq!(csv_requests, samples, "timeseries.csv agrees with the log");

    // `merge --force` turns the killed directory into a complete run directory.
    let merged = dir.path().join("merged");
    let out = run_measured(
        &[
            "merge",
            killed.to_str().unwrap(),
            "--force",
            "--json",
            "--out",
            merged.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{}", out.show());
    let s = out.json();
    assert_eq!(u(&s["latency_ms"]["count"]), samples, "{s}");
    assert_eq!(u(&s["requests"]), csv_requests, "{s}");
    let notes = s["merged"]["notes"].to_string();
    assert!(
        notes.contains("no summary.json"),
        "merge says where the counts came from: {notes}"
    );

    // `compare` reads the recovered run against a complete one.
    let whole = dir.path().join("whole");
    let m = run_measured(
        &[
            "run",
            &server.url("/"),
            "--rate",
            "200",
            "-z",
            "3s",
            "--quiet",
            "--out",
            whole.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(m.code, Some(0), "{}", m.show());
    let cmp = run_measured(
        &[
            "compare",
            whole.to_str().unwrap(),
            merged.to_str().unwrap(),
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(cmp.code, Some(0), "{}", cmp.show());
    let c = cmp.json();
    assert_eq!(c["schema"], "chokepoint.compare.v1", "{c}");

    // The killed directory itself: `compare` says what is missing, in one line.
    let direct = run_measured(
        &["compare", whole.to_str().unwrap(), killed.to_str().unwrap()],
        LIMIT,
    );
    assert_eq!(direct.code, Some(2), "{}", direct.show());
    assert!(direct.stderr.contains("summary.json"), "{}", direct.show());
    assert_eq!(direct.stderr.trim().lines().count(), 1, "{}", direct.show());
}

#[test]
fn sigterm_writes_a_partial_report_and_exits_130() {
    let server = http_server(handler(|_req| async { text(200, "ok") }));
    let dir = tempdir();
    let out = dir.path().join("partial");
    let child = spawn(&[
        "run",
        &server.url("/"),
        "--rate",
        "100",
        "-z",
        "30s",
        "--json",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    wait_for_intervals(&out.join("latency.hlog"), 2, Duration::from_secs(20));
    let signalled = Instant::now();
    child.signal(libc::SIGTERM);
    let m = child.wait(LIMIT);
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        signalled.elapsed()
    );
    assert_eq!(m.code, Some(130), "{}", m.show());
    assert!(m.stderr.contains("stopping"), "{}", m.show());
    let s = m.json();
    assert_eq!(s["interrupted"], true);
    assert!(u(&s["requests"]) >= 200, "{s}");
    assert_run_dir_complete(&out, &s, &m.show());
}
