//! `--watch-pid` and `--watch-cgroup`: sampling the target's resources during
//! a run (the `probe` crate on its own thread), `resources.csv` in the run
//! directory, and the `resources` object of `summary.json` with its USE table.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chokepoint_engine::{IntervalReport, Observer, Stats, StopSignal};
use chokepoint_probe::{Probe, ProbeTarget, Rates, Totals};
use chokepoint_report::resources::{
    fmt_bytes, CsvRow, Resources, SaturatedResource, UseRow, CSV_HEADER,
};
use clap::Args;

use crate::args::Plan;
use crate::run_cmd::{execute_with, Executed};
use crate::Failure;

/// The per-second resource time series of a run directory.
pub const RESOURCES_FILE: &str = "resources.csv";

/// Flags naming what to sample.
#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Sample this process's resources every second (CPU, run-queue delay,
    /// context switches, RSS, fds, threads, I/O) plus machine pressure (PSI).
    #[arg(long = "watch-pid", value_name = "PID")]
    pub watch_pid: Option<u32>,
    /// Sample a cgroup v2 (cpu.stat usage and throttling, memory.current);
    /// absolute, or relative to /sys/fs/cgroup.
    #[arg(long = "watch-cgroup", value_name = "PATH")]
    pub watch_cgroup: Option<PathBuf>,
}

impl WatchArgs {
    /// What the probe watches.
    pub fn target(&self) -> ProbeTarget {
        ProbeTarget {
            pid: self.watch_pid,
            cgroup: self.watch_cgroup.clone(),
        }
    }

    /// Nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.target().is_empty()
    }
}

/// A running probe, armed when the measured window starts.
pub struct Watch {
    probe: Probe,
    pid: Option<u32>,
    cgroup: Option<String>,
}

impl Watch {
    /// Starts sampling (unarmed) when anything is watched; writes
    /// `resources.csv` into `out` when given. A missing process or cgroup is
    /// bad input.
    pub fn start(args: &WatchArgs, out: Option<&Path>) -> Result<Option<Watch>, Failure> {
        if args.is_empty() {
            return Ok(None);
        }
        let sink: Option<chokepoint_probe::Sink> = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
                let path = dir.join(RESOURCES_FILE);
                let mut file = File::create(&path)
                    .map(BufWriter::new)
                    .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
                file.write_all(CSV_HEADER.as_bytes())
                    .and_then(|_| file.flush())
                    .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
                let mut failed = false;
                Some(Box::new(move |r: &Rates| {
                    if failed {
                        return;
                    }
                    // Flushed every second like the other interval files; a write
                    // error stops the file, never the run.
                    failed = file
                        .write_all(csv_row(r).to_csv().as_bytes())
                        .and_then(|_| file.flush())
                        .is_err();
                }))
            }
            None => None,
        };
        let probe = Probe::start(args.target(), Duration::from_secs(1), sink, false).map_err(
            |e| match (&e, args.watch_pid) {
                (chokepoint_probe::ProbeError::NoSuchProcess { .. }, Some(pid)) => {
                    Failure::Usage(format!("--watch-pid {pid}: {e}"))
                }
                (chokepoint_probe::ProbeError::Cgroup { .. }, _) => {
                    Failure::Usage(format!("--watch-cgroup: {e}"))
                }
                _ => Failure::Usage(e.to_string()),
            },
        )?;
        let cgroup = probe.cgroup_dir().map(|d| d.display().to_string());
        Ok(Some(Watch {
            probe,
            pid: args.watch_pid,
            cgroup,
        }))
    }

    /// Starts counting (the measured window begins).
    pub fn arm(&self) {
        self.probe.arm();
    }

    /// The most recent one-second interval.
    pub fn latest(&self) -> Option<Rates> {
        self.probe.latest()
    }

    /// A handle that reads the most recent interval, independent of the watch's lifetime.
    pub fn latest_handle(&self) -> chokepoint_probe::Latest {
        self.probe.latest_handle()
    }

    /// Stops sampling and summarizes, with CPU per request over `requests`.
    pub fn finish(self, requests: u64) -> Resources {
        let name = self.probe.process_name().map(str::to_string);
        let report = self.probe.stop();
        resources(
            &report.totals,
            report.notes,
            requests,
            self.pid,
            name,
            self.cgroup,
        )
    }
}

/// Arms the probe when the measured window starts and forwards everything to
/// an inner observer.
pub struct ArmOnStart<'w, 'o> {
    /// The probe to arm.
    pub watch: Option<&'w Watch>,
    /// Another observer (soak aggregation, live metrics).
    pub inner: Option<&'o mut dyn Observer>,
}

impl Observer for ArmOnStart<'_, '_> {
    fn interval(&mut self, report: &IntervalReport<'_>) {
        if let Some(o) = self.inner.as_mut() {
            o.interval(report);
        }
    }
    fn measured_start(&mut self, wall: SystemTime) {
        if let Some(w) = self.watch {
            w.arm();
        }
        if let Some(o) = self.inner.as_mut() {
            o.measured_start(wall);
        }
    }
    fn progress(&mut self, elapsed: Duration, totals: &Stats) {
        if let Some(o) = self.inner.as_mut() {
            o.progress(elapsed, totals);
        }
    }
}

/// Runs a plan like [`crate::run_cmd::execute`], sampling the watched target
/// over the measured window: `summary.json` gains `resources`, the run
/// directory `resources.csv`.
pub fn execute_watched(
    plan: &Plan,
    out: Option<&Path>,
    quiet: bool,
    watch: &WatchArgs,
    stop: &StopSignal,
    extra: Option<&mut dyn Observer>,
) -> Result<Executed, Failure> {
    let started = Watch::start(watch, out)?;
    let mut observer = ArmOnStart {
        watch: started.as_ref(),
        inner: extra,
    };
    let mut done = execute_with(plan, out, quiet, false, stop, Some(&mut observer))?;
    if let Some(w) = started {
        let resources = w.finish(done.result.measured.requests);
        attach(&mut done, out, resources)?;
    }
    Ok(done)
}

/// Adds `resources` to a finished run's summary (and its `summary.json`).
pub fn attach(
    done: &mut Executed,
    out: Option<&Path>,
    resources: Resources,
) -> Result<(), Failure> {
    done.summary.resources = Some(resources);
    done.json = serde_json::to_string_pretty(&done.summary).expect("summaries serialize");
    if let Some(dir) = out {
        let path = dir.join(crate::output::SUMMARY_FILE);
        std::fs::write(&path, &done.json)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
    }
    Ok(())
}

fn csv_row(r: &Rates) -> CsvRow {
    let u = |v: Option<u64>| v.map(|v| v as f64);
    CsvRow {
        second: r.t_s,
        interval_s: r.interval_s,
        values: [
            r.cpu_user,
            r.cpu_system,
            r.run_queue_delay,
            r.ctx_voluntary_per_s,
            r.ctx_involuntary_per_s,
            u(r.rss_bytes),
            u(r.fds),
            u(r.threads),
            r.read_bytes_per_s,
            r.write_bytes_per_s,
            r.psi_cpu_some,
            r.psi_memory_some,
            r.psi_io_some,
            r.cgroup_cpu,
            r.cgroup_throttled_fraction,
            u(r.cgroup_memory_bytes),
        ],
    }
}

/// CPU share at or above which the target's CPU counts as saturated.
pub const CPU_SATURATED: f64 = 0.9;
/// Run-queue delay per CPU-second at or above which threads are starved of CPU.
pub const RUN_QUEUE_SATURATED: f64 = 0.5;
/// Share of throttled CFS periods at or above which a cgroup quota saturates.
pub const THROTTLE_SATURATED: f64 = 0.1;
/// PSI share (memory some, I/O full) at or above which the resource saturates.
pub const PRESSURE_SATURATED: f64 = 0.1;

fn machine_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Summarizes probe totals into the `resources` object with its USE table.
pub fn resources(
    t: &Totals,
    notes: Vec<String>,
    requests: u64,
    pid: Option<u32>,
    process: Option<String>,
    cgroup: Option<String>,
) -> Resources {
    let pct = |seconds: Option<f64>| t.fraction(seconds).map(|f| f * 100.0);
    let cpus_available = Some(t.cgroup_cpu_limit.unwrap_or_else(machine_cpus));
    // The process's CPU; with only a cgroup watched, the cgroup's.
    let (cpu_seconds, cpu_mean) = match t.cpu_s() {
        Some(c) => (Some(c), t.cpu_mean_cores()),
        None => (
            t.cgroup_cpu_s,
            t.cgroup_cpu_s
                .filter(|_| t.duration_s > 0.0)
                .map(|c| c / t.duration_s),
        ),
    };
    let mut r = Resources {
        pid,
        process,
        cgroup,
        samples: t.samples,
        duration_s: t.duration_s,
        cpus_available,
        cpu_seconds,
        cpu_user_seconds: t.cpu_user_s,
        cpu_system_seconds: t.cpu_system_s,
        cpu_cores_mean: cpu_mean,
        cpu_cores_peak: t.cpu_peak_cores,
        cpu_per_request_ms: cpu_seconds
            .filter(|_| requests > 0)
            .map(|c| c * 1000.0 / requests as f64),
        run_queue_delay_seconds: t.run_queue_delay_s,
        run_queue_delay_per_cpu_second: match (t.run_queue_delay_s, cpu_seconds) {
            (Some(d), Some(c)) if c > 0.0 => Some(d / c),
            _ => None,
        },
        voluntary_ctx_switches: t.ctx_voluntary.map(|v| v.round() as u64),
        involuntary_ctx_switches: t.ctx_involuntary.map(|v| v.round() as u64),
        rss_start_bytes: t.rss_first_bytes,
        rss_end_bytes: t.rss_last_bytes,
        peak_rss_bytes: t.rss_peak_bytes,
        fds_start: t.fds_first,
        fds_end: t.fds_last,
        peak_fds: t.fds_peak,
        fd_limit: t.fd_limit,
        peak_threads: t.threads_peak,
        io_read_bytes: t.read_bytes.map(|v| v.round() as u64),
        io_write_bytes: t.write_bytes.map(|v| v.round() as u64),
        psi_cpu_some_pct: pct(t.psi_cpu_some_s),
        psi_memory_some_pct: pct(t.psi_memory_some_s),
        psi_memory_full_pct: pct(t.psi_memory_full_s),
        psi_io_some_pct: pct(t.psi_io_some_s),
        psi_io_full_pct: pct(t.psi_io_full_s),
        cgroup_cpu_seconds: t.cgroup_cpu_s,
        cgroup_throttled_seconds: t.cgroup_throttled_s,
        cgroup_throttled_pct: t.cgroup_throttled_fraction.map(|f| f * 100.0),
        cgroup_cpu_limit: t.cgroup_cpu_limit,
        cgroup_peak_memory_bytes: t.cgroup_memory_peak_bytes,
        saturated: Vec::new(),
        use_table: Vec::new(),
        notes,
    };
    if t.samples == 0 {
        r.notes
            .push("no complete sampling interval (the measured window was too short)".into());
    }
    r.saturated = saturated(&r);
    r.use_table = use_table(&r);
    r
}

fn saturated(r: &Resources) -> Vec<SaturatedResource> {
    let mut out = Vec::new();
    let cpus = r.cpus_available.unwrap_or(1.0);
    // The target uses the CPUs up (or its quota): its own capacity limit.
    let mut cpu_evidence = Vec::new();
    let cores = r.cpu_cores_mean;
    if let Some(c) = cores {
        if c >= CPU_SATURATED * cpus {
            cpu_evidence.push(format!(
                "{c:.2} of {cpus:.0} CPUs busy ({:.0}%)",
                100.0 * c / cpus
            ));
        }
    }
    if let Some(p) = r.cgroup_throttled_pct {
        if p >= THROTTLE_SATURATED * 100.0 {
            cpu_evidence.push(format!("cgroup throttled in {p:.0}% of CPU periods"));
        }
    }
    let run_queue = r
        .run_queue_delay_per_cpu_second
        .filter(|q| *q >= RUN_QUEUE_SATURATED);
    if !cpu_evidence.is_empty() {
        if let Some(q) = run_queue {
            cpu_evidence.push(format!(
                "threads waited {q:.2} s for a CPU per CPU-second used"
            ));
        }
        out.push(SaturatedResource {
            resource: "cpu".into(),
            evidence: cpu_evidence.join("; "),
            cause: "target".into(),
        });
    } else if let Some(q) = run_queue {
        // Threads wait for a CPU although the target uses little: other work
        // on the machine holds the CPUs.
        out.push(SaturatedResource {
            resource: "cpu".into(),
            evidence: format!(
                "threads waited {q:.2} s for a CPU per CPU-second used while the target used {} of {cpus:.0} CPUs{}",
                cores.map_or("n/a".into(), |c| format!("{c:.2}")),
                r.psi_cpu_some_pct
                    .map(|p| format!("; machine CPU pressure {p:.0}%"))
                    .unwrap_or_default()
            ),
            cause: "machine".into(),
        });
    }
    if let Some(p) = r.psi_memory_some_pct {
        if p >= PRESSURE_SATURATED * 100.0 {
            out.push(SaturatedResource {
                resource: "memory".into(),
                evidence: format!("tasks waited for memory {p:.0}% of the time (PSI)"),
                cause: "machine".into(),
            });
        }
    }
    if let (Some(peak), Some(limit)) = (r.peak_fds, r.fd_limit) {
        if limit > 0 && peak as f64 >= 0.9 * limit as f64 {
            out.push(SaturatedResource {
                resource: "fds".into(),
                evidence: format!("{peak} open file descriptors of a limit of {limit}"),
                cause: "target".into(),
            });
        }
    }
    if let Some(p) = r.psi_io_full_pct {
        if p >= PRESSURE_SATURATED * 100.0 {
            out.push(SaturatedResource {
                resource: "io".into(),
                evidence: format!("every task waited for I/O {p:.0}% of the time (PSI)"),
                cause: "machine".into(),
            });
        }
    }
    out
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

fn use_table(r: &Resources) -> Vec<UseRow> {
    let cpus = r.cpus_available.unwrap_or(1.0);
    let mut rows = Vec::new();
    let mut cpu_sat = vec![opt(r.run_queue_delay_per_cpu_second, |q| {
        format!("run-queue {:.3} s/CPU-s", q)
    })];
    if let Some(p) = r.psi_cpu_some_pct {
        cpu_sat.push(format!("machine PSI {p:.1}%"));
    }
    if let Some(p) = r.cgroup_throttled_pct {
        cpu_sat.push(format!("throttled {p:.1}%"));
    }
    rows.push(UseRow {
        resource: "cpu".into(),
        utilization: opt(r.cpu_cores_mean, |c| {
            format!(
                "{c:.2} of {cpus:.0} CPUs ({:.0}%), peak {}",
                100.0 * c / cpus,
                opt(r.cpu_cores_peak, |p| format!("{p:.2}"))
            )
        }),
        saturation: cpu_sat.join(", "),
        errors: "n/a".into(),
    });
    rows.push(UseRow {
        resource: "memory".into(),
        utilization: match (r.peak_rss_bytes, r.cgroup_peak_memory_bytes) {
            (Some(peak), _) => format!(
                "RSS {} → {} (peak {})",
                opt(r.rss_start_bytes, |b| fmt_bytes(b as f64)),
                opt(r.rss_end_bytes, |b| fmt_bytes(b as f64)),
                fmt_bytes(peak as f64)
            ),
            (None, Some(cg)) => format!("cgroup memory peak {}", fmt_bytes(cg as f64)),
            (None, None) => "n/a".into(),
        },
        saturation: opt(r.psi_memory_some_pct, |p| format!("machine PSI {p:.1}%")),
        errors: "n/a".into(),
    });
    rows.push(UseRow {
        resource: "file descriptors".into(),
        utilization: opt(r.peak_fds, |peak| match r.fd_limit {
            Some(limit) if limit > 0 => format!(
                "peak {peak} of {limit} ({:.1}%)",
                100.0 * peak as f64 / limit as f64
            ),
            _ => format!("peak {peak}"),
        }),
        saturation: "n/a".into(),
        errors: "n/a".into(),
    });
    let per_s = |b: Option<u64>| {
        opt(b, |b| {
            format!("{}/s", fmt_bytes(b as f64 / r.duration_s.max(1e-9)))
        })
    };
    rows.push(UseRow {
        resource: "disk I/O".into(),
        utilization: format!(
            "read {}, write {}",
            per_s(r.io_read_bytes),
            per_s(r.io_write_bytes)
        ),
        saturation: opt(r.psi_io_some_pct, |p| format!("machine PSI {p:.1}%")),
        errors: "n/a".into(),
    });
    let per_sec =
        |n: Option<u64>| opt(n, |n| format!("{:.0}/s", n as f64 / r.duration_s.max(1e-9)));
    rows.push(UseRow {
        resource: "scheduling".into(),
        utilization: format!("threads peak {}", opt(r.peak_threads, |t| t.to_string())),
        saturation: format!(
            "involuntary switches {} (preempted), voluntary {} (blocked)",
            per_sec(r.involuntary_ctx_switches),
            per_sec(r.voluntary_ctx_switches)
        ),
        errors: "n/a".into(),
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_needs_the_numbers() {
        let t = Totals {
            samples: 10,
            duration_s: 10.0,
            cpu_user_s: Some(15.0),
            cpu_system_s: Some(3.5),
            cgroup_cpu_limit: Some(2.0),
            fds_peak: Some(950),
            fd_limit: Some(1000),
            ..Totals::default()
        };
        let r = resources(&t, vec![], 1000, Some(1), None, None);
        assert_eq!(r.cpu_per_request_ms, Some(18.5));
        let names: Vec<&str> = r.saturated.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "fds"], "{:?}", r.saturated);
        assert!(r.saturated[0].evidence.contains("1.85 of 2 CPUs"));
        let calm = Totals {
            cpu_user_s: Some(2.0),
            cpu_system_s: Some(0.0),
            ..t
        };
        let r = resources(&calm, vec![], 0, Some(1), None, None);
        assert_eq!(r.cpu_per_request_ms, None);
        assert!(r.saturated.iter().all(|s| s.resource != "cpu"));
        assert_eq!(r.use_table.len(), 5);
        // Threads wait for a CPU although the target uses little: other work holds the CPUs.
        let contended = Totals {
            run_queue_delay_s: Some(3.0),
            psi_cpu_some_s: Some(9.0),
            ..calm
        };
        let r = resources(&contended, vec![], 10, Some(1), None, None);
        assert_eq!(r.saturated.len(), 2, "{:?}", r.saturated);
        assert_eq!(
            (
                r.saturated[0].resource.as_str(),
                r.saturated[0].cause.as_str()
            ),
            ("cpu", "machine")
        );
        assert!(r.saturated[0].evidence.contains("machine CPU pressure 90%"));
    }
}
