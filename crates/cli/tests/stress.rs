//! `chokepoint stress` against the lab as ground truth: the capacity search
//! finds pool_size / db_hold and names the queueing; the concurrency sweep's
//! USL fit finds contention behind a lock. Plus bad input and Ctrl-C.
//!
//! The capacity tests run one at a time (a shared lock) and, like the lab's own
//! capacity tests, retry up to three times: outside CPU load on the shared
//! 2-core machine can only lower throughput, so one run within tolerance
//! shows the search works.

mod stress_support;
mod support;

use std::sync::Mutex;
use std::time::Duration;

use stress_support::{json_of, Lab};
use support::{f, u};

/// Capacity measurements do not share the machine with each other.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn stress_finds_the_pool_capacity_and_names_the_queueing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // pool 4, hold 10 ms: capacity = 4 / 0.010 s = 400 req/s.
    let lab = Lab::start(&["--pool-size", "4", "--db-hold", "10ms"]);
    let analytic = 400.0;
    let pid = lab.pid.to_string();
    let mut last = None;
    for attempt in 1..=3 {
        let dir = support::tempdir();
        let out = dir.path().join("stress");
        let out_s = out.to_str().unwrap().to_string();
        let url = lab.checkout();
        let args = [
            "stress",
            url.as_str(),
            "-X",
            "POST",
            "--slo",
            "p99<200ms",
            "--step-duration",
            "2s",
            "--warmup",
            "500ms",
            "--start-rate",
            "50",
            "--precision",
            "5%",
            "--watch-pid",
            pid.as_str(),
            "--out",
            out_s.as_str(),
            "--json",
            "--quiet",
        ];
        let r = json_of(&args, 0, Duration::from_secs(150));
        let capacity = f(&r["capacity_rps"]);
        eprintln!(
            "attempt {attempt}: capacity {capacity} req/s (analytic {analytic}), bracket {}, knee {}, failed first {}\nverdict: {}",
            r["bracket"], r["knee_rps"], r["failed_first"], r["verdict"]
        );
        if (capacity - analytic).abs() > 0.15 * analytic {
            last = Some(r);
            continue;
        }
        assert_eq!(r["schema"], "chokepoint.stress.v1");
        assert_eq!(r["mode"], "rate");
        let steps = r["steps"].as_array().unwrap();
        assert!(steps.len() >= 4, "{r}");
        for s in steps {
            for key in [
                "offered_rps",
                "achieved_rps",
                "latency_ms",
                "errors",
                "passed",
            ] {
                assert!(s.get(key).is_some(), "step lacks {key}: {s}");
            }
            // Every step kept as a run directory, with the target's resources.
            let step_dir = std::path::Path::new(s["dir"].as_str().unwrap());
            assert!(step_dir.join("summary.json").is_file(), "{s}");
            assert!(step_dir.join("resources.csv").is_file(), "{s}");
            assert!(f(&s["resources"]["cpu_seconds"]) > 0.0, "{s}");
            assert_eq!(u(&s["resources"]["pid"]), lab.pid as u64);
        }
        assert!(out.join("stress.json").is_file());
        // The bracket: passed at the capacity, failed just above it.
        let failed = f(&r["bracket"]["failed_rps"]);
        assert!(failed > capacity && failed <= capacity * 1.06, "{r}");
        // What broke first is the throughput (or latency queueing behind it), not errors.
        let first = r["failed_first"].as_str().unwrap();
        assert!(["throughput", "latency"].contains(&first), "{r}");
        // The plateau and the queueing are named, with numbers.
        let verdict = r["verdict"].as_str().unwrap();
        assert!(verdict.contains("throughput plateaus at"), "{verdict}");
        assert!(
            verdict.contains("queue for a fixed-capacity resource"),
            "{verdict}"
        );
        assert!(verdict.contains("L = X·W"), "{verdict}");
        let plateau = f(&r["saturation"]["plateau_rps"]);
        assert!((plateau - analytic).abs() <= 0.15 * analytic, "{r}");
        // The lab's CPU is not what saturates: the verdict points at a pool or lock.
        assert!(
            verdict.contains("look for a pool, lock or queue"),
            "{verdict}"
        );
        // The knee sits at or below the first failing rate.
        let knee = f(&r["knee_rps"]);
        assert!(knee <= failed && knee >= 0.4 * analytic, "{r}");
        return;
    }
    panic!(
        "capacity not within 15% of {analytic} req/s in 3 attempts; last: {}",
        last.unwrap()
    );
}

#[test]
fn concurrency_sweep_fits_contention_behind_a_lock() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One lock held 5 ms per checkout: throughput cannot pass 200 req/s.
    let lab = Lab::start(&["--lock-hold", "5ms"]);
    let mut last = None;
    for attempt in 1..=3 {
        let url = lab.checkout();
        let r = json_of(
            &[
                "stress",
                url.as_str(),
                "-X",
                "POST",
                "--sweep",
                "concurrency",
                "--max-concurrency",
                "32",
                "--step-duration",
                "2s",
                "--warmup",
                "500ms",
                "--json",
                "--quiet",
            ],
            0,
            Duration::from_secs(120),
        );
        let usl = &r["usl"];
        eprintln!("attempt {attempt}: usl {usl}");
        let clients: Vec<u64> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| u(&s["concurrency"]))
            .collect();
        assert_eq!(clients, [1, 2, 4, 8, 16, 32], "{r}");
        for key in ["sigma", "kappa", "lambda", "n_star", "x_max", "r2"] {
            assert!(usl.get(key).is_some(), "usl lacks {key}: {usl}");
        }
        let sigma = f(&usl["sigma"]);
        let sigma_low = f(&usl["sigma_ci"][0]);
        let x_max = f(&usl["x_max"]);
        let ok = sigma > 0.2
            && sigma_low > 0.0
            && usl["class"] == "contention-limited"
            && (x_max - 200.0).abs() <= 0.25 * 200.0;
        if !ok {
            last = Some(r);
            continue;
        }
        assert_eq!(u(&usl["points"]), 6);
        assert!(
            usl["prediction"]
                .as_str()
                .unwrap()
                .contains("serialize on a shared resource"),
            "{usl}"
        );
        let verdict = r["verdict"].as_str().unwrap();
        assert!(verdict.contains("contention-limited"), "{verdict}");
        return;
    }
    panic!("no clear contention in 3 attempts; last: {}", last.unwrap());
}

fn one_line_exit_2(args: &[&str], must_name: &str) {
    let out = support::chokepoint(args, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = format!(
        "chokepoint {args:?}\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {shown}");
    assert!(stderr.contains(must_name), "{shown}");
    assert!(!stderr.contains("panicked"), "{shown}");
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    // Nothing listens on port 9; validation must fail before any load.
    let url = "http://127.0.0.1:9/";
    one_line_exit_2(&["stress", url, "--slo", "p99<<200"], "p99<<200");
    one_line_exit_2(&["stress", url, "--slo", "p98<200ms"], "unknown metric");
    one_line_exit_2(&["stress", url, "--slo", "p99<200"], "p99<200");
    one_line_exit_2(&["stress", url, "--growth", "1"], "--growth");
    one_line_exit_2(
        &["stress", url, "--max-rate", "5", "--start-rate", "10"],
        "--max-rate",
    );
    one_line_exit_2(
        &["stress", url, "--sweep", "concurrency", "--max-rate", "5"],
        "--max-concurrency",
    );
    one_line_exit_2(&["stress", url, "--watch-pid", "999999999"], "no process");
    one_line_exit_2(
        &["stress", url, "--watch-cgroup", "no/such/cgroup"],
        "--watch-cgroup",
    );
    one_line_exit_2(&["stress", "not-a-url"], "not-a-url");
    one_line_exit_2(&["soak", url, "--rate", "10", "--window", "0s"], "--window");
    one_line_exit_2(
        &[
            "soak",
            url,
            "--rate",
            "10",
            "--duration",
            "5s",
            "--window",
            "10s",
        ],
        "--window",
    );
    one_line_exit_2(&["soak", url], "--rate");
    one_line_exit_2(&["run", url, "--watch-pid", "999999999"], "no process");
}

#[cfg(unix)]
#[test]
fn ctrl_c_keeps_the_steps_measured() {
    let server = support::http_server(support::handler(|_req| async { support::text(200, "ok") }));
    let url = server.url("/");
    for cmd in [
        vec![
            "stress",
            url.as_str(),
            "--start-rate",
            "20",
            "--step-duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
            "--quiet",
        ],
        vec![
            "soak",
            url.as_str(),
            "--rate",
            "20",
            "--duration",
            "60s",
            "--window",
            "1s",
            "--json",
            "--quiet",
        ],
    ] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args(&cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(3500));
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let started = std::time::Instant::now();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let shown = format!(
            "{cmd:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(15), "{shown}");
        assert_eq!(out.status.code(), Some(130), "{shown}");
        let r: serde_json::Value = serde_json::from_str(&stdout).expect(&shown);
        assert_eq!(r["interrupted"], true, "{shown}");
        if cmd[0] == "stress" {
            let steps = r["steps"].as_array().unwrap();
            assert!(steps.len() >= 2, "{shown}");
            assert!(u(&steps[0]["requests"]) > 0, "{shown}");
            assert!(
                r["verdict"].as_str().unwrap().contains("interrupted"),
                "{shown}"
            );
        } else {
            assert!(u(&r["summary"]["requests"]) >= 40, "{shown}");
            assert!(!r["windows"].as_array().unwrap().is_empty(), "{shown}");
        }
    }
}
