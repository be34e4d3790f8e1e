//! `chokepoint lab` as a real process: bad knobs exit 2 naming the valid ones; a good
//! invocation prints `listening on http://ADDR` first, serves, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chokepoint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
}

fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let out = chokepoint()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chokepoint");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_knob_or_fix_exits_2_listing_the_valid_ones() {
    for (args, must_name) in [
        (vec!["lab", "--bogus"], "--pool-size"),
        (vec!["lab", "--pool-size", "4", "--bogus=3"], "--db-hold"),
        (vec!["lab", "--fix", "bogus"], "single-flight"),
        (vec!["lab", "--fix", "pool=0"], "pool=N"),
        (vec!["lab", "--scenario", "nope"], "pool-exhaustion"),
        (vec!["lab", "--payment-latency", "weird:1ms"], "lognormal"),
        (
            vec!["lab", "--stall-every", "100ms", "--stall-for", "200ms"],
            "stall-for",
        ),
    ] {
        let (code, stdout, stderr) = run_to_end(&args);
        let shown = format!(
            "chokepoint {}\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        assert_eq!(code, 2, "{shown}");
        assert!(stdout.is_empty(), "{shown}");
        assert!(stderr.contains(must_name), "{shown}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {shown}");
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the lab");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[cfg(unix)]
#[test]
fn lab_prints_its_address_first_serves_and_stops_on_sigterm() {
    let mut child = chokepoint()
        .args([
            "lab",
            "--orders",
            "2000",
            "--scenario",
            "lock-contention",
            "--fix",
            "lock-free",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chokepoint lab");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("no first line within 60s");
        }
    };
    let addr = first
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "binds loopback by default: {addr}"
    );

    let health = http_get(&addr, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let config = http_get(&addr, "/lab/config");
    assert!(config.contains("\"lock_free\":true"), "{config}");
    assert!(config.contains("\"fixes\":[\"lock-free\"]"), "{config}");

    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the lab did not stop within 15s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}
