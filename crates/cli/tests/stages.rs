//! Stages (linear ramps) through the real binary: an open-model ramp puts
//! arrivals where the integral of the rate says, a closed-model ramp starts
//! connections in turn, and bad stages are one line with exit 2.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn per_second_requests(dir: &std::path::Path) -> Vec<u64> {
    read(&dir.join("timeseries.csv"))
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn open_ramp_follows_the_integral_of_the_rate() {
    let server = http_server(handler(|_req| async { text(200, "ok") }));
    let dir = tempdir();
    let out = dir.path().join("ramp");
    // 0 → 200/s over 2 s (200 arrivals: 50 then 150), then 200/s for 1 s.
    let s = run_json(
        &[
            &server.url("/"),
            "--stages",
            "2s:200/s,1s:200/s",
            "--out",
            out.to_str().unwrap(),
        ],
        0,
        LIMIT,
    );
    assert_eq!(s["requests"], 400, "{s}");
    assert_eq!(s["model"], "open");
    assert_eq!(s["rate_target"], 200.0, "the peak rate");
    assert_eq!(s["stages"][0]["from"], 0.0);
    assert_eq!(s["stages"][0]["to"], 200.0);
    assert_eq!(s["stages"][1]["start_s"], 2.0);
    let rows = per_second_requests(&out);
    assert!(rows.len() >= 3, "{rows:?}");
    for (got, want) in rows.iter().zip([50u64, 150, 200]) {
        assert!(
            got.abs_diff(want) <= 4,
            "per second {rows:?}, want 50, 150, 200"
        );
    }
}

#[test]
fn closed_ramp_starts_connections_in_turn() {
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (o, p) = (open.clone(), peak.clone());
    let server = http_server(handler(move |_req| {
        let now = o.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        let o = o.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            o.fetch_sub(1, Ordering::SeqCst);
            text(200, "ok")
        }
    }));
    let dir = tempdir();
    let out = dir.path().join("closed");
    // Scenario stages: 0 → 4 connections over 1 s, then 4 for 1 s.
    let scenario = dir.path().join("ramp.toml");
    std::fs::write(
        &scenario,
        format!(
            "base_url = \"{}\"\nstages = [{{duration = \"1s\", concurrency = 4}}, {{duration = \"1s\", concurrency = 4}}]\n[[request]]\nname = \"root\"\n",
            server.url("/")
        ),
    )
    .unwrap();
    let s = run_json(
        &[scenario.to_str().unwrap(), "--out", out.to_str().unwrap()],
        0,
        LIMIT,
    );
    assert_eq!(s["model"], "closed");
    assert_eq!(s["concurrency"], 4);
    assert_eq!(s["stages"].as_array().unwrap().len(), 2);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "never more than the ramp's peak"
    );
    assert!(u(&s["peak_connections"]) <= 4);
    let rows = per_second_requests(&out);
    // Lanes start at 0.25, 0.5, 0.75 and 1 s: the first second carries 1.5
    // connections on average, the second 4.
    assert!(rows.len() >= 2, "{rows:?}");
    let ratio = rows[0] as f64 / rows[1] as f64;
    assert!(
        (0.2..0.6).contains(&ratio),
        "first/second second {rows:?} ({ratio:.2}, want about 0.375)"
    );
}

#[test]
fn bad_stages_are_one_line_and_exit_2() {
    let dir = tempdir();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(
        &bad_file,
        "base_url = \"http://127.0.0.1:1/\"\nstages = [{duration = \"1s\", rate = \"10/s\"},\n  {duration = \"1 fortnight\", rate = 5}]\n[[request]]\n",
    )
    .unwrap();
    for (args, expected) in [
        (
            vec!["http://127.0.0.1:1/", "--stages", "30s:100/s", "-c", "5"],
            "-c does not apply",
        ),
        (
            vec!["http://127.0.0.1:1/", "--stages", "30s:5", "--rate", "5"],
            "--rate does not apply",
        ),
        (
            vec!["http://127.0.0.1:1/", "--stages", "30s:abc"],
            "--stages entry 1 `30s:abc`",
        ),
        (
            vec!["http://127.0.0.1:1/", "--stages", "30s:100/s", "-z", "5s"],
            "stages set the duration",
        ),
        (
            vec!["http://127.0.0.1:1/", "--stages", "1s:0/s"],
            "never reach any load",
        ),
        (
            vec![
                "http://127.0.0.1:1/",
                "--stages",
                "1s:5/s",
                "--warmup",
                "2s",
            ],
            "not shorter than the stages",
        ),
        (vec![bad_file.to_str().unwrap()], "bad.toml:3:"),
    ] {
        let mut all = vec!["run", "--quiet"];
        all.extend(args.iter());
        let out = chokepoint(&all, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // stress and soak shape the load themselves.
    let good = dir.path().join("staged.toml");
    std::fs::write(
        &good,
        "base_url = \"http://127.0.0.1:1/\"\nstages = [{duration = \"1s\", rate = \"10/s\"}]\n[[request]]\n",
    )
    .unwrap();
    let out = chokepoint(
        &[
            "soak",
            good.to_str().unwrap(),
            "--rate",
            "5",
            "-z",
            "2s",
            "--window",
            "1s",
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stages apply to `chokepoint run`"),
        "{stderr}"
    );
}
