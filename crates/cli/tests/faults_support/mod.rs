//! Support for the reliability tests: the real binary run with its peak RSS
//! measured, and checks that a run directory is complete and consistent.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a measured run of the binary left behind.
pub struct Measured {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak resident set size of the process (KiB): the last `VmHWM` read
    /// from `/proc/PID/status` while it ran (polled every 2 ms; the
    /// high-water mark is monotonic, so this misses at most the last 2 ms).
    /// `getrusage`/`wait4`'s `ru_maxrss` cannot be used: it includes the
    /// resident size of the (large) test process that forked the child.
    pub peak_rss_kib: u64,
    pub args: Vec<String>,
}

impl Measured {
    /// The command, exit status and output, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "chokepoint {:?}\nexit {:?} signal {:?} after {:?}, peak RSS {} KiB\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.signal,
            self.elapsed,
            self.peak_rss_kib,
            self.stdout,
            self.stderr
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.show()))
    }
}

/// A child being run and measured.
pub struct Running {
    pid: libc::pid_t,
    started: Instant,
    stdout: Pipe<std::process::ChildStdout>,
    stderr: Pipe<std::process::ChildStderr>,
    args: Vec<String>,
}

/// An output stream: collected in a thread, or handed to the test.
enum Pipe<P> {
    Collected(std::thread::JoinHandle<Vec<u8>>),
    Raw(Option<P>),
}

impl<P: Read + Send + 'static> Pipe<P> {
    fn finish(self) -> String {
        let bytes = match self {
            Pipe::Collected(handle) => handle.join().unwrap(),
            Pipe::Raw(Some(p)) => drain(p).join().unwrap(),
            Pipe::Raw(None) => b"(read by the test)".to_vec(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Starts the binary with piped output, collected as it comes.
pub fn spawn(args: &[&str]) -> Running {
    spawn_with(args, false)
}

/// Starts the binary; with `raw_pipes` its stdout and stderr are left for
/// [`Running::take_stdout`] and [`Running::take_stderr`] (whatever is not
/// taken is collected once the test waits).
// The child is reaped by `Running::wait` (waitpid), not through `Child`.
#[allow(clippy::zombie_processes)]
pub fn spawn_with(args: &[&str], raw_pipes: bool) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chokepoint");
    let (stdout, stderr) = if raw_pipes {
        (
            Pipe::Raw(child.stdout.take()),
            Pipe::Raw(child.stderr.take()),
        )
    } else {
        (
            Pipe::Collected(drain(child.stdout.take().unwrap())),
            Pipe::Collected(drain(child.stderr.take().unwrap())),
        )
    };
    // The child is reaped with waitpid below (polling its memory meanwhile), not through `Child`.
    Running {
        pid: child.id() as libc::pid_t,
        started: Instant::now(),
        stdout,
        stderr,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

impl Running {
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The child's stdout, when spawned with raw pipes.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        match &mut self.stdout {
            Pipe::Raw(p) => p.take().expect("stdout taken once"),
            Pipe::Collected(_) => panic!("spawn_with(.., true) to take stdout"),
        }
    }

    /// The child's stderr, when spawned with raw pipes.
    pub fn take_stderr(&mut self) -> std::process::ChildStderr {
        match &mut self.stderr {
            Pipe::Raw(p) => p.take().expect("stderr taken once"),
            Pipe::Collected(_) => panic!("spawn_with(.., true) to take stderr"),
        }
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the child to exit (killing it and panicking after `limit`),
    /// collecting its output and peak RSS.
    pub fn wait(self, limit: Duration) -> Measured {
        let mut timed_out = false;
        let mut peak_rss_kib = 0;
        let status = loop {
            peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(self.pid).unwrap_or(0));
            let mut status = 0;
            let flags = if timed_out { 0 } else { libc::WNOHANG };
            // SAFETY: waitpid on our own child with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if r == self.pid {
                break status;
            }
            assert!(
                r == 0,
                "waitpid failed: {}",
                std::io::Error::last_os_error()
            );
            if self.started.elapsed() > limit && !timed_out {
                timed_out = true;
                self.signal(libc::SIGKILL);
                continue;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        let measured = Measured {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
            elapsed,
            peak_rss_kib,
            args: self.args,
        };
        assert!(
            !timed_out,
            "did not finish within {limit:?}\n{}",
            measured.show()
        );
        measured
    }
}

/// The peak RSS of a running chokepoint (KiB); `None` before its `exec`
/// (the forked child still shares the test process's memory) or after exit.
pub fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() != "chokepoint" {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the binary to completion, measured.
pub fn run_measured(args: &[&str], limit: Duration) -> Measured {
    spawn(args).wait(limit)
}

/// Reads a file or panics naming it.
pub fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Checks that a finished run directory is complete: `summary.json` equals
/// the summary printed, `latency.hlog` parses whole (no truncated tail) with
/// one interval per second holding exactly the summary's latency samples, and
/// `timeseries.csv` has a row per interval adding up to the summary's counts.
pub fn assert_run_dir_complete(dir: &Path, summary: &serde_json::Value, context: &str) {
    let on_disk: serde_json::Value = serde_json::from_str(&read_file(&dir.join("summary.json")))
        .unwrap_or_else(|e| panic!("summary.json: {e}\n{context}"));
    assert_eq!(
        &on_disk, summary,
        "summary.json differs from stdout\n{context}"
    );
    let log = read_file(&dir.join("latency.hlog"));
    assert!(log.ends_with('\n'), "latency.hlog ends mid-line\n{context}");
    let intervals = chokepoint_stats::hlog::read(&log)
        .unwrap_or_else(|e| panic!("latency.hlog: {e:?}\n{context}"));
    let duration = summary["duration_s"].as_f64().unwrap();
    let expected_intervals = duration.ceil() as usize;
    assert!(
        intervals.len() + 1 >= expected_intervals && intervals.len() <= expected_intervals + 1,
        "{} intervals in latency.hlog for a {duration} s window\n{context}",
        intervals.len()
    );
    for pair in intervals.windows(2) {
        assert!(
            (pair[1].start_s - pair[0].start_s - 1.0).abs() < 1e-3,
            "intervals are not one second apart: {} then {}\n{context}",
            pair[0].start_s,
            pair[1].start_s
        );
    }
    let samples: u64 = intervals.iter().map(|i| i.histogram.len()).sum();
    assert_eq!(
        samples,
        summary["latency_ms"]["count"].as_u64().unwrap(),
        "latency.hlog samples vs summary\n{context}"
    );
    let csv = read_file(&dir.join("timeseries.csv"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (requests_col, errors_col) = (col("requests"), col("errors"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        intervals.len(),
        "timeseries.csv rows vs latency.hlog intervals\n{context}"
    );
    let sum = |i: usize| {
        rows.iter()
            .map(|r| r[i].parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        sum(requests_col),
        summary["requests"].as_u64().unwrap(),
        "timeseries.csv requests vs summary\n{context}"
    );
    let errors: u64 = summary["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        sum(errors_col),
        errors,
        "timeseries.csv errors vs summary\n{context}"
    );
}
