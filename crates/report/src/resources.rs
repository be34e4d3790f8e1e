//! The target's resources during a run (`resources` in `summary.json`, one
//! object per stress step, `resources.csv`), and their USE-style text table.
//!
//! Field names are public contract: `cpu_seconds`, `cpu_per_request_ms` and
//! `peak_rss_bytes` are what `compare` reads for a cost delta.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What the probe measured over a measured window. Figures the probe could
/// not read are `null`, and `notes` says why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Watched process id (`--watch-pid`).
    pub pid: Option<u32>,
    /// Its command name.
    pub process: Option<String>,
    /// Watched cgroup v2 directory (`--watch-cgroup`).
    pub cgroup: Option<String>,
    /// Sampling intervals (about one per second).
    pub samples: u64,
    /// Seconds covered by the samples.
    pub duration_s: f64,
    /// CPUs the target could use: the cgroup's `cpu.max` limit, else the machine's.
    pub cpus_available: Option<f64>,
    /// User + system CPU seconds of the process (of the cgroup when only
    /// `--watch-cgroup` is given).
    pub cpu_seconds: Option<f64>,
    /// User CPU seconds.
    pub cpu_user_seconds: Option<f64>,
    /// System CPU seconds.
    pub cpu_system_seconds: Option<f64>,
    /// Mean CPU in cores (cpu_seconds / duration_s).
    pub cpu_cores_mean: Option<f64>,
    /// Highest one-second CPU, in cores.
    pub cpu_cores_peak: Option<f64>,
    /// CPU milliseconds per completed request (cpu_seconds / requests).
    pub cpu_per_request_ms: Option<f64>,
    /// Seconds the process's threads waited runnable for a CPU (schedstat).
    pub run_queue_delay_seconds: Option<f64>,
    /// Run-queue delay per CPU-second used: > 0.1 means threads wait noticeably for a CPU.
    pub run_queue_delay_per_cpu_second: Option<f64>,
    /// Voluntary context switches (blocking on I/O, locks, sleeps).
    pub voluntary_ctx_switches: Option<u64>,
    /// Involuntary context switches (preemptions: CPU contention).
    pub involuntary_ctx_switches: Option<u64>,
    /// RSS at the first sample.
    pub rss_start_bytes: Option<u64>,
    /// RSS at the last sample.
    pub rss_end_bytes: Option<u64>,
    /// Highest RSS sampled.
    pub peak_rss_bytes: Option<u64>,
    /// Open file descriptors at the first sample.
    pub fds_start: Option<u64>,
    /// Open file descriptors at the last sample.
    pub fds_end: Option<u64>,
    /// Most open file descriptors sampled.
    pub peak_fds: Option<u64>,
    /// The process's open-file soft limit.
    pub fd_limit: Option<u64>,
    /// Most threads sampled.
    pub peak_threads: Option<u64>,
    /// Bytes read from storage.
    pub io_read_bytes: Option<u64>,
    /// Bytes written to storage.
    pub io_write_bytes: Option<u64>,
    /// Machine PSI: % of time some task waited for CPU.
    pub psi_cpu_some_pct: Option<f64>,
    /// Machine PSI: % of time some task waited for memory.
    pub psi_memory_some_pct: Option<f64>,
    /// Machine PSI: % of time every task waited for memory.
    pub psi_memory_full_pct: Option<f64>,
    /// Machine PSI: % of time some task waited for I/O.
    pub psi_io_some_pct: Option<f64>,
    /// Machine PSI: % of time every task waited for I/O.
    pub psi_io_full_pct: Option<f64>,
    /// Cgroup CPU seconds (`cpu.stat` usage_usec).
    pub cgroup_cpu_seconds: Option<f64>,
    /// Cgroup seconds throttled by its CPU quota.
    pub cgroup_throttled_seconds: Option<f64>,
    /// % of the cgroup's CPU periods that were throttled.
    pub cgroup_throttled_pct: Option<f64>,
    /// CPUs allowed by the cgroup's `cpu.max`.
    pub cgroup_cpu_limit: Option<f64>,
    /// Highest cgroup `memory.current`.
    pub cgroup_peak_memory_bytes: Option<u64>,
    /// Resources judged saturated (e.g. `cpu`), each with the numbers behind it.
    pub saturated: Vec<SaturatedResource>,
    /// USE table: per resource, utilization, saturation and errors in words and numbers.
    #[serde(rename = "use")]
    pub use_table: Vec<UseRow>,
    /// Why some figures are missing.
    pub notes: Vec<String>,
}

/// A resource at its limit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SaturatedResource {
    /// `cpu`, `memory`, `fds`, `io`.
    pub resource: String,
    /// The numbers behind the judgement.
    pub evidence: String,
    /// `target` (the watched process or cgroup uses it up) or `machine` (other
    /// work on the machine competes for it: measurements may understate capacity).
    #[serde(default)]
    pub cause: String,
}

/// One row of the USE table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UseRow {
    /// `cpu`, `memory`, `file descriptors`, `disk I/O`, `scheduling`.
    pub resource: String,
    /// How busy it was.
    pub utilization: String,
    /// How much work waited for it.
    pub saturation: String,
    /// Errors attributable to it.
    pub errors: String,
}

/// Formats bytes with a binary unit.
pub fn fmt_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", units[unit])
    } else if v.abs() < 10.0 {
        format!("{v:.2} {}", units[unit])
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

/// Renders the resources section of a text report.
pub fn render_resources(r: &Resources) -> String {
    let mut out = String::new();
    let mut who = Vec::new();
    if let Some(pid) = r.pid {
        who.push(match &r.process {
            Some(name) => format!("pid {pid} ({name})"),
            None => format!("pid {pid}"),
        });
    }
    if let Some(cg) = &r.cgroup {
        who.push(format!("cgroup {cg}"));
    }
    let _ = writeln!(
        out,
        "\nTarget resources ({}; {} samples over {:.0} s)",
        who.join(", "),
        r.samples,
        r.duration_s
    );
    if let Some(ms) = r.cpu_per_request_ms {
        let _ = writeln!(
            out,
            "  cost        {ms:.3} ms CPU per request{}",
            r.peak_rss_bytes
                .map(|b| format!(", peak RSS {}", fmt_bytes(b as f64)))
                .unwrap_or_default()
        );
    }
    let width = r
        .use_table
        .iter()
        .map(|row| row.resource.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<40}  {:<44}  errors",
        "resource", "utilization", "saturation"
    );
    for row in &r.use_table {
        let _ = writeln!(
            out,
            "  {:<width$}  {:<40}  {:<44}  {}",
            row.resource, row.utilization, row.saturation, row.errors
        );
    }
    for s in &r.saturated {
        if s.cause == "machine" {
            let _ = writeln!(
                out,
                "  CONTENDED {} (by other work on the machine): {}",
                s.resource, s.evidence
            );
        } else {
            let _ = writeln!(out, "  SATURATED {}: {}", s.resource, s.evidence);
        }
    }
    for note in &r.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

/// Header of `resources.csv` (one row per probe interval; empty cells were not readable).
pub const CSV_HEADER: &str = "second,interval_s,cpu_user_cores,cpu_system_cores,run_queue_delay,ctx_voluntary_per_s,ctx_involuntary_per_s,rss_bytes,fds,threads,read_bytes_per_s,write_bytes_per_s,psi_cpu_some,psi_memory_some,psi_io_some,cgroup_cpu_cores,cgroup_throttled_fraction,cgroup_memory_bytes\n";

/// One `resources.csv` row.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CsvRow {
    /// Seconds from the start of the measured window to the end of the interval.
    pub second: f64,
    /// Interval length.
    pub interval_s: f64,
    /// The other columns in header order, `None` for an empty cell.
    pub values: [Option<f64>; 16],
}

impl CsvRow {
    /// The CSV line, with its newline.
    pub fn to_csv(&self) -> String {
        let mut line = format!("{:.3},{:.3}", self.second, self.interval_s);
        for v in self.values {
            line.push(',');
            if let Some(v) = v {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    let _ = write!(line, "{v:.0}");
                } else {
                    let _ = write!(line, "{v:.4}");
                }
            }
        }
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_csv_format() {
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(1536.0), "1.50 KiB");
        assert_eq!(fmt_bytes(52.0 * 1024.0 * 1024.0), "52.0 MiB");
        let mut row = CsvRow {
            second: 1.0,
            interval_s: 1.0,
            ..CsvRow::default()
        };
        row.values[0] = Some(0.25);
        row.values[5] = Some(1024.0);
        let line = row.to_csv();
        assert_eq!(line.matches(',').count(), CSV_HEADER.matches(',').count());
        assert!(line.starts_with("1.000,1.000,0.2500,,,,,1024,"), "{line}");
    }

    #[test]
    fn resources_deserialize_from_a_partial_object() {
        let r: Resources =
            serde_json::from_str(r#"{"cpu_seconds": 1.5, "peak_rss_bytes": 1000}"#).unwrap();
        assert_eq!(r.cpu_seconds, Some(1.5));
        assert_eq!(r.peak_rss_bytes, Some(1000));
        assert!(r.use_table.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("use").is_some());
        assert!(json.get("cpu_per_request_ms").is_some());
    }
}
