//! Reading the kernel's counters: `/proc/PID/*`, cgroup v2 files and
//! `/proc/pressure/*`. Parsers take the file text (so they are testable
//! without a kernel); readers return `None` when a file is missing or
//! unreadable, and the caller notes why.

use std::path::{Path, PathBuf};

/// Cumulative counters of one process (all threads).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessCounters {
    /// User CPU seconds (`/proc/PID/stat` utime, dead threads included).
    pub user_s: f64,
    /// System CPU seconds (stime).
    pub system_s: f64,
    /// Seconds threads spent runnable but waiting for a CPU (sum of
    /// `/proc/PID/task/*/schedstat` field 2; live threads only).
    pub run_delay_s: Option<f64>,
    /// Voluntary context switches (live threads, `/proc/PID/task/*/status`).
    pub voluntary_ctxt: Option<u64>,
    /// Involuntary context switches (preemptions).
    pub involuntary_ctxt: Option<u64>,
    /// Resident set size in bytes (`/proc/PID/statm` × page size).
    pub rss_bytes: u64,
    /// Threads (`/proc/PID/stat` num_threads).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: Option<u64>,
    /// Soft limit on open files (`/proc/PID/limits`).
    pub fd_limit: Option<u64>,
    /// Bytes read from storage (`/proc/PID/io` read_bytes).
    pub read_bytes: Option<u64>,
    /// Bytes written to storage (`/proc/PID/io` write_bytes).
    pub write_bytes: Option<u64>,
}

/// Cumulative counters of a cgroup v2.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CgroupCounters {
    /// `cpu.stat` usage_usec, in seconds.
    pub usage_s: f64,
    /// `cpu.stat` user_usec, in seconds.
    pub user_s: f64,
    /// `cpu.stat` system_usec, in seconds.
    pub system_s: f64,
    /// `cpu.stat` nr_periods (present when a CPU quota applies).
    pub nr_periods: Option<u64>,
    /// `cpu.stat` nr_throttled.
    pub nr_throttled: Option<u64>,
    /// `cpu.stat` throttled_usec, in seconds.
    pub throttled_s: Option<f64>,
    /// `memory.current` in bytes.
    pub memory_bytes: Option<u64>,
    /// CPUs allowed by `cpu.max` (quota / period); `None` when unlimited or absent.
    pub cpu_limit: Option<f64>,
}

/// Cumulative stall time (seconds) from pressure stall information.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PressureCounters {
    /// Some task waited for CPU.
    pub cpu_some_s: Option<f64>,
    /// Some task waited for memory.
    pub memory_some_s: Option<f64>,
    /// Every non-idle task waited for memory.
    pub memory_full_s: Option<f64>,
    /// Some task waited for I/O.
    pub io_some_s: Option<f64>,
    /// Every non-idle task waited for I/O.
    pub io_full_s: Option<f64>,
}

/// Where the kernel's files live (a different root makes the readers testable).
#[derive(Debug, Clone)]
pub struct Fs {
    /// Usually `/proc`.
    pub proc: PathBuf,
    /// Page size in bytes.
    pub page_size: u64,
    /// Clock ticks per second (`USER_HZ`).
    pub ticks_per_s: f64,
}

impl Default for Fs {
    fn default() -> Self {
        Fs {
            proc: PathBuf::from("/proc"),
            page_size: page_size(),
            ticks_per_s: ticks_per_second(),
        }
    }
}

fn page_size() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            return v as u64;
        }
    }
    4096
}

fn ticks_per_second() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if v > 0 {
            return v as f64;
        }
    }
    100.0
}

/// Most threads whose per-thread files are read each second (a process with
/// more is summed over the first ones only, and the note says so).
pub const MAX_THREADS_READ: usize = 4096;

/// Why a reading is incomplete; the probe keeps the first of each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note(pub String);

fn read(path: &Path, notes: &mut Vec<Note>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "not present".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            notes.push(Note(format!("{}: {why}", path.display())));
            None
        }
    }
}

/// Reads one process; `None` when it no longer exists (or its `stat` is unreadable).
pub fn process(fs: &Fs, pid: u32, notes: &mut Vec<Note>) -> Option<ProcessCounters> {
    let dir = fs.proc.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (utime, stime, threads) = parse_stat(&stat)?;
    let statm = read(&dir.join("statm"), notes);
    let rss_pages = statm.as_deref().and_then(parse_statm_rss).unwrap_or(0);
    let mut c = ProcessCounters {
        user_s: utime as f64 / fs.ticks_per_s,
        system_s: stime as f64 / fs.ticks_per_s,
        rss_bytes: rss_pages * fs.page_size,
        threads,
        ..ProcessCounters::default()
    };
    match std::fs::read_dir(dir.join("fd")) {
        Ok(entries) => c.fds = Some(entries.count() as u64),
        Err(e) => notes.push(Note(format!(
            "{}: {}",
            dir.join("fd").display(),
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                "permission denied".to_string()
            } else {
                e.to_string()
            }
        ))),
    }
    c.fd_limit = read(&dir.join("limits"), notes)
        .as_deref()
        .and_then(parse_fd_limit);
    if let Some(io) = read(&dir.join("io"), notes) {
        c.read_bytes = parse_key_value(&io, "read_bytes");
        c.write_bytes = parse_key_value(&io, "write_bytes");
    }
    match std::fs::read_dir(dir.join("task")) {
        Ok(entries) => {
            let (mut delay_ns, mut vol, mut invol) = (0u64, 0u64, 0u64);
            let (mut have_delay, mut have_ctxt) = (false, false);
            let mut seen = 0usize;
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_THREADS_READ {
                    notes.push(Note(format!(
                        "pid {pid}: more than {MAX_THREADS_READ} threads; run-queue delay and context switches cover the first {MAX_THREADS_READ}"
                    )));
                    break;
                }
                let task = entry.path();
                // A thread may exit between listing and reading: skip it quietly.
                if let Some(ns) = std::fs::read_to_string(task.join("schedstat"))
                    .ok()
                    .as_deref()
                    .and_then(parse_schedstat_delay_ns)
                {
                    delay_ns += ns;
                    have_delay = true;
                }
                if let Ok(status) = std::fs::read_to_string(task.join("status")) {
                    if let (Some(v), Some(i)) = (
                        parse_status_field(&status, "voluntary_ctxt_switches"),
                        parse_status_field(&status, "nonvoluntary_ctxt_switches"),
                    ) {
                        vol += v;
                        invol += i;
                        have_ctxt = true;
                    }
                }
            }
            if have_delay {
                c.run_delay_s = Some(delay_ns as f64 / 1e9);
            } else {
                notes.push(Note(format!(
                    "pid {pid}: no readable /proc/{pid}/task/*/schedstat (kernel without sched_info); run-queue delay not sampled"
                )));
            }
            if have_ctxt {
                c.voluntary_ctxt = Some(vol);
                c.involuntary_ctxt = Some(invol);
            }
        }
        Err(e) => notes.push(Note(format!("{}: {e}", dir.join("task").display()))),
    }
    Some(c)
}

/// Whether `/proc/PID` exists.
pub fn process_exists(fs: &Fs, pid: u32) -> bool {
    fs.proc.join(pid.to_string()).join("stat").exists()
}

/// The command name of a process (`/proc/PID/comm`).
pub fn process_name(fs: &Fs, pid: u32) -> Option<String> {
    std::fs::read_to_string(fs.proc.join(pid.to_string()).join("comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a cgroup v2 directory; `None` when `cpu.stat` is unreadable.
pub fn cgroup(dir: &Path, notes: &mut Vec<Note>) -> Option<CgroupCounters> {
    let stat = read(&dir.join("cpu.stat"), notes)?;
    let usec = |key| parse_key_value(&stat, key).map(|v| v as f64 / 1e6);
    let mut c = CgroupCounters {
        usage_s: usec("usage_usec")?,
        user_s: usec("user_usec").unwrap_or(0.0),
        system_s: usec("system_usec").unwrap_or(0.0),
        nr_periods: parse_key_value(&stat, "nr_periods"),
        nr_throttled: parse_key_value(&stat, "nr_throttled"),
        throttled_s: usec("throttled_usec"),
        ..CgroupCounters::default()
    };
    if let Ok(text) = std::fs::read_to_string(dir.join("memory.current")) {
        c.memory_bytes = text.trim().parse().ok();
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cpu.max")) {
        c.cpu_limit = parse_cpu_max(&text);
    }
    Some(c)
}

/// Reads pressure stall information from `dir` (`/proc/pressure` for the
/// machine, or a cgroup directory's `*.pressure` files when `cgroup`).
pub fn pressure(dir: &Path, cgroup: bool, notes: &mut Vec<Note>) -> PressureCounters {
    let file = |name: &str| {
        if cgroup {
            dir.join(format!("{name}.pressure"))
        } else {
            dir.join(name)
        }
    };
    let cpu = read(&file("cpu"), notes);
    let memory = read(&file("memory"), notes);
    let io = read(&file("io"), notes);
    PressureCounters {
        cpu_some_s: cpu.as_deref().and_then(|t| parse_psi_total_s(t, "some")),
        memory_some_s: memory.as_deref().and_then(|t| parse_psi_total_s(t, "some")),
        memory_full_s: memory.as_deref().and_then(|t| parse_psi_total_s(t, "full")),
        io_some_s: io.as_deref().and_then(|t| parse_psi_total_s(t, "some")),
        io_full_s: io.as_deref().and_then(|t| parse_psi_total_s(t, "full")),
    }
}

/// `/proc/PID/stat`: (utime ticks, stime ticks, num_threads). The command name
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so field k is fields[k - 3].
    let field = |k: usize| fields.get(k - 3).and_then(|f| f.parse::<u64>().ok());
    Some((field(14)?, field(15)?, field(20)?))
}

/// `/proc/PID/statm`: resident pages (second field).
pub fn parse_statm_rss(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `/proc/PID/task/TID/schedstat`: run-queue wait in ns (second field).
pub fn parse_schedstat_delay_ns(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A `Name:\tvalue` line of `/proc/PID/status`.
pub fn parse_status_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// A `key value` line (cgroup `cpu.stat`, `/proc/PID/io` uses `key: value`).
pub fn parse_key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let k = parts.next()?.trim_end_matches(':');
        (k == key).then(|| parts.next()?.parse().ok())?
    })
}

/// The soft "Max open files" limit of `/proc/PID/limits`.
pub fn parse_fd_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `cpu.max`: "QUOTA PERIOD" or "max PERIOD" → CPUs allowed.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then_some(quota / period)
}

/// The cumulative `total=` (µs) of a PSI line (`some` or `full`), in seconds.
pub fn parse_psi_total_s(text: &str, kind: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(kind))?;
    let total = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?;
    total.parse::<u64>().ok().map(|us| us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let stat = "4242 (my (weird) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 7 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 75, 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_the_small_files() {
        assert_eq!(parse_statm_rss("765 421 393 5 0 123 0\n"), Some(421));
        assert_eq!(
            parse_schedstat_delay_ns("57500231 7470651 170\n"),
            Some(7_470_651)
        );
        let status =
            "Name:\tx\nThreads:\t3\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t4\n";
        assert_eq!(
            parse_status_field(status, "voluntary_ctxt_switches"),
            Some(10)
        );
        assert_eq!(
            parse_status_field(status, "nonvoluntary_ctxt_switches"),
            Some(4)
        );
        let io = "rchar: 6976\nwchar: 0\nread_bytes: 4096\nwrite_bytes: 8192\n";
        assert_eq!(parse_key_value(io, "read_bytes"), Some(4096));
        assert_eq!(parse_key_value(io, "write_bytes"), Some(8192));
        let cpu_stat = "usage_usec 2725019691\nuser_usec 2019504065\nsystem_usec 705515626\nnr_periods 10\nnr_throttled 3\nthrottled_usec 5000\n";
        assert_eq!(parse_key_value(cpu_stat, "nr_throttled"), Some(3));
        assert_eq!(parse_key_value(cpu_stat, "usage_usec"), Some(2_725_019_691));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                40000                files     \n";
        assert_eq!(parse_fd_limit(limits), Some(20_000));
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        let psi = "some avg10=3.76 avg60=7.21 avg300=19.63 total=460061755\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=12\n";
        assert_eq!(parse_psi_total_s(psi, "some"), Some(460.061755));
        assert_eq!(parse_psi_total_s(psi, "full"), Some(12e-6));
    }
}
