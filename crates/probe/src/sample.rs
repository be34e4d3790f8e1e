//! From cumulative counters to per-second rates, and from rates to a
//! USE-style summary (utilization, saturation, errors per resource).

use crate::read::{CgroupCounters, PressureCounters, ProcessCounters};

/// Counters read at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Snapshot {
    /// Seconds since the probe started.
    pub t_s: f64,
    /// The watched process (`None`: not watched, or gone).
    pub process: Option<ProcessCounters>,
    /// The watched cgroup.
    pub cgroup: Option<CgroupCounters>,
    /// Machine-wide pressure stall information.
    pub pressure: PressureCounters,
}

/// One interval (about a second) between two snapshots. Rates are per second
/// of wall time; gauges (RSS, fds, threads) are the values at the end.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Seconds since the probe started, at the end of the interval.
    pub t_s: f64,
    /// Interval length in seconds.
    pub interval_s: f64,
    /// User CPU, in cores (1.0 = one CPU busy the whole interval).
    pub cpu_user: Option<f64>,
    /// System CPU, in cores.
    pub cpu_system: Option<f64>,
    /// Run-queue delay: seconds threads waited for a CPU per second.
    pub run_queue_delay: Option<f64>,
    /// Voluntary context switches per second (blocking: I/O, locks, sleeps).
    pub ctx_voluntary_per_s: Option<f64>,
    /// Involuntary context switches per second (preempted: CPU contention).
    pub ctx_involuntary_per_s: Option<f64>,
    /// Resident set size (bytes).
    pub rss_bytes: Option<u64>,
    /// Open file descriptors.
    pub fds: Option<u64>,
    /// Open-file soft limit.
    pub fd_limit: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Storage bytes read per second.
    pub read_bytes_per_s: Option<f64>,
    /// Storage bytes written per second.
    pub write_bytes_per_s: Option<f64>,
    /// Fraction of time some task waited for CPU (machine PSI).
    pub psi_cpu_some: Option<f64>,
    /// Fraction of time some task waited for memory.
    pub psi_memory_some: Option<f64>,
    /// Fraction of time all tasks waited for memory.
    pub psi_memory_full: Option<f64>,
    /// Fraction of time some task waited for I/O.
    pub psi_io_some: Option<f64>,
    /// Fraction of time all tasks waited for I/O.
    pub psi_io_full: Option<f64>,
    /// Cgroup CPU, in cores.
    pub cgroup_cpu: Option<f64>,
    /// Fraction of the cgroup's CPU periods that were throttled.
    pub cgroup_throttled_fraction: Option<f64>,
    /// Seconds throttled per second.
    pub cgroup_throttled: Option<f64>,
    /// Cgroup memory (`memory.current`).
    pub cgroup_memory_bytes: Option<u64>,
    /// CPUs allowed by the cgroup's `cpu.max`.
    pub cgroup_cpu_limit: Option<f64>,
}

fn per_s(now: Option<f64>, before: Option<f64>, dt: f64) -> Option<f64> {
    match (now, before) {
        (Some(a), Some(b)) if dt > 0.0 => Some(((a - b) / dt).max(0.0)),
        _ => None,
    }
}

fn per_s_u(now: Option<u64>, before: Option<u64>, dt: f64) -> Option<f64> {
    per_s(now.map(|v| v as f64), before.map(|v| v as f64), dt)
}

impl Rates {
    /// The interval from `before` to `now`.
    pub fn between(before: &Snapshot, now: &Snapshot) -> Rates {
        let dt = now.t_s - before.t_s;
        let mut r = Rates {
            t_s: now.t_s,
            interval_s: dt,
            ..Rates::default()
        };
        if let Some(p) = &now.process {
            r.rss_bytes = Some(p.rss_bytes);
            r.fds = p.fds;
            r.fd_limit = p.fd_limit;
            r.threads = Some(p.threads);
            if let Some(b) = &before.process {
                r.cpu_user = per_s(Some(p.user_s), Some(b.user_s), dt);
                r.cpu_system = per_s(Some(p.system_s), Some(b.system_s), dt);
                r.run_queue_delay = per_s(p.run_delay_s, b.run_delay_s, dt);
                r.ctx_voluntary_per_s = per_s_u(p.voluntary_ctxt, b.voluntary_ctxt, dt);
                r.ctx_involuntary_per_s = per_s_u(p.involuntary_ctxt, b.involuntary_ctxt, dt);
                r.read_bytes_per_s = per_s_u(p.read_bytes, b.read_bytes, dt);
                r.write_bytes_per_s = per_s_u(p.write_bytes, b.write_bytes, dt);
            }
        }
        let (a, b) = (&now.pressure, &before.pressure);
        let frac = |x: Option<f64>, y: Option<f64>| per_s(x, y, dt).map(|v| v.min(1.0));
        r.psi_cpu_some = frac(a.cpu_some_s, b.cpu_some_s);
        r.psi_memory_some = frac(a.memory_some_s, b.memory_some_s);
        r.psi_memory_full = frac(a.memory_full_s, b.memory_full_s);
        r.psi_io_some = frac(a.io_some_s, b.io_some_s);
        r.psi_io_full = frac(a.io_full_s, b.io_full_s);
        if let Some(c) = &now.cgroup {
            r.cgroup_memory_bytes = c.memory_bytes;
            r.cgroup_cpu_limit = c.cpu_limit;
            if let Some(p) = &before.cgroup {
                r.cgroup_cpu = per_s(Some(c.usage_s), Some(p.usage_s), dt);
                r.cgroup_throttled = per_s(c.throttled_s, p.throttled_s, dt);
                if let (Some(np), Some(nt), Some(bp), Some(bt)) =
                    (c.nr_periods, c.nr_throttled, p.nr_periods, p.nr_throttled)
                {
                    let periods = np.saturating_sub(bp);
                    r.cgroup_throttled_fraction = Some(if periods > 0 {
                        nt.saturating_sub(bt) as f64 / periods as f64
                    } else {
                        0.0
                    });
                }
            }
        }
        r
    }

    /// CPU in cores (user + system).
    pub fn cpu(&self) -> Option<f64> {
        match (self.cpu_user, self.cpu_system) {
            (Some(u), Some(s)) => Some(u + s),
            _ => None,
        }
    }
}

/// A running total over intervals: sums, means and peaks, in constant memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    /// Intervals added.
    pub samples: u64,
    /// Wall time covered (sum of interval lengths).
    pub duration_s: f64,
    /// User CPU seconds.
    pub cpu_user_s: Option<f64>,
    /// System CPU seconds.
    pub cpu_system_s: Option<f64>,
    /// Highest CPU of one interval, in cores.
    pub cpu_peak_cores: Option<f64>,
    /// Seconds threads waited for a CPU.
    pub run_queue_delay_s: Option<f64>,
    /// Voluntary context switches.
    pub ctx_voluntary: Option<f64>,
    /// Involuntary context switches.
    pub ctx_involuntary: Option<f64>,
    /// RSS at the first interval.
    pub rss_first_bytes: Option<u64>,
    /// RSS at the last interval.
    pub rss_last_bytes: Option<u64>,
    /// Highest RSS.
    pub rss_peak_bytes: Option<u64>,
    /// Open fds at the first interval.
    pub fds_first: Option<u64>,
    /// Open fds at the last interval.
    pub fds_last: Option<u64>,
    /// Most open fds.
    pub fds_peak: Option<u64>,
    /// Open-file limit.
    pub fd_limit: Option<u64>,
    /// Most threads.
    pub threads_peak: Option<u64>,
    /// Storage bytes read.
    pub read_bytes: Option<f64>,
    /// Storage bytes written.
    pub write_bytes: Option<f64>,
    /// Seconds some task waited for CPU (machine).
    pub psi_cpu_some_s: Option<f64>,
    /// Seconds some task waited for memory.
    pub psi_memory_some_s: Option<f64>,
    /// Seconds all tasks waited for memory.
    pub psi_memory_full_s: Option<f64>,
    /// Seconds some task waited for I/O.
    pub psi_io_some_s: Option<f64>,
    /// Seconds all tasks waited for I/O.
    pub psi_io_full_s: Option<f64>,
    /// Cgroup CPU seconds.
    pub cgroup_cpu_s: Option<f64>,
    /// Cgroup seconds throttled.
    pub cgroup_throttled_s: Option<f64>,
    /// Mean fraction of throttled periods (interval-weighted).
    pub cgroup_throttled_fraction: Option<f64>,
    /// Highest cgroup memory.
    pub cgroup_memory_peak_bytes: Option<u64>,
    /// CPUs allowed by the cgroup.
    pub cgroup_cpu_limit: Option<f64>,
}

fn add(total: &mut Option<f64>, rate: Option<f64>, dt: f64) {
    if let Some(r) = rate {
        *total = Some(total.unwrap_or(0.0) + r * dt);
    }
}

fn peak_u(total: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *total = Some(total.map_or(v, |t| t.max(v)));
    }
}

impl Totals {
    /// Adds one interval.
    pub fn add(&mut self, r: &Rates) {
        let dt = r.interval_s;
        if dt <= 0.0 {
            return;
        }
        self.samples += 1;
        self.duration_s += dt;
        add(&mut self.cpu_user_s, r.cpu_user, dt);
        add(&mut self.cpu_system_s, r.cpu_system, dt);
        if let Some(c) = r.cpu() {
            self.cpu_peak_cores = Some(self.cpu_peak_cores.map_or(c, |p| p.max(c)));
        }
        add(&mut self.run_queue_delay_s, r.run_queue_delay, dt);
        add(&mut self.ctx_voluntary, r.ctx_voluntary_per_s, dt);
        add(&mut self.ctx_involuntary, r.ctx_involuntary_per_s, dt);
        if r.rss_bytes.is_some() {
            self.rss_first_bytes = self.rss_first_bytes.or(r.rss_bytes);
            self.rss_last_bytes = r.rss_bytes;
        }
        peak_u(&mut self.rss_peak_bytes, r.rss_bytes);
        if r.fds.is_some() {
            self.fds_first = self.fds_first.or(r.fds);
            self.fds_last = r.fds;
        }
        peak_u(&mut self.fds_peak, r.fds);
        self.fd_limit = r.fd_limit.or(self.fd_limit);
        peak_u(&mut self.threads_peak, r.threads);
        add(&mut self.read_bytes, r.read_bytes_per_s, dt);
        add(&mut self.write_bytes, r.write_bytes_per_s, dt);
        add(&mut self.psi_cpu_some_s, r.psi_cpu_some, dt);
        add(&mut self.psi_memory_some_s, r.psi_memory_some, dt);
        add(&mut self.psi_memory_full_s, r.psi_memory_full, dt);
        add(&mut self.psi_io_some_s, r.psi_io_some, dt);
        add(&mut self.psi_io_full_s, r.psi_io_full, dt);
        add(&mut self.cgroup_cpu_s, r.cgroup_cpu, dt);
        add(&mut self.cgroup_throttled_s, r.cgroup_throttled, dt);
        if let Some(f) = r.cgroup_throttled_fraction {
            // Running interval-weighted mean.
            let previous = self.cgroup_throttled_fraction.unwrap_or(0.0);
            let covered = self.duration_s - dt;
            self.cgroup_throttled_fraction =
                Some((previous * covered + f * dt) / self.duration_s.max(f64::MIN_POSITIVE));
        }
        peak_u(&mut self.cgroup_memory_peak_bytes, r.cgroup_memory_bytes);
        self.cgroup_cpu_limit = r.cgroup_cpu_limit.or(self.cgroup_cpu_limit);
    }

    /// User + system CPU seconds.
    pub fn cpu_s(&self) -> Option<f64> {
        match (self.cpu_user_s, self.cpu_system_s) {
            (Some(u), Some(s)) => Some(u + s),
            _ => None,
        }
    }

    /// Mean CPU in cores over the covered time.
    pub fn cpu_mean_cores(&self) -> Option<f64> {
        self.cpu_s()
            .filter(|_| self.duration_s > 0.0)
            .map(|c| c / self.duration_s)
    }

    /// Fraction of the covered time that `seconds` represents.
    pub fn fraction(&self, seconds: Option<f64>) -> Option<f64> {
        seconds
            .filter(|_| self.duration_s > 0.0)
            .map(|s| (s / self.duration_s).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: f64, user: f64, rss: u64, delay: f64) -> Snapshot {
        Snapshot {
            t_s: t,
            process: Some(ProcessCounters {
                user_s: user,
                system_s: user / 4.0,
                run_delay_s: Some(delay),
                voluntary_ctxt: Some((t * 100.0) as u64),
                involuntary_ctxt: Some((t * 10.0) as u64),
                rss_bytes: rss,
                threads: 4,
                fds: Some(10 + t as u64),
                fd_limit: Some(1024),
                read_bytes: Some(0),
                write_bytes: Some((t * 1000.0) as u64),
            }),
            cgroup: None,
            pressure: PressureCounters {
                cpu_some_s: Some(t * 0.25),
                ..PressureCounters::default()
            },
        }
    }

    #[test]
    fn rates_and_totals_telescope_to_counter_differences() {
        let snaps = [
            snap(0.0, 0.0, 100, 0.0),
            snap(1.0, 0.5, 200, 0.1),
            snap(2.0, 1.5, 150, 0.3),
            snap(2.5, 1.75, 300, 0.3),
        ];
        let mut totals = Totals::default();
        for w in snaps.windows(2) {
            totals.add(&Rates::between(&w[0], &w[1]));
        }
        let second = Rates::between(&snaps[1], &snaps[2]);
        assert_eq!(second.cpu_user, Some(1.0));
        assert_eq!(second.cpu(), Some(1.25));
        assert_eq!(second.ctx_voluntary_per_s, Some(100.0));
        assert_eq!(second.psi_cpu_some, Some(0.25));
        assert_eq!(totals.samples, 3);
        assert!((totals.duration_s - 2.5).abs() < 1e-12);
        assert!((totals.cpu_s().unwrap() - 1.75 * 1.25).abs() < 1e-9);
        assert!((totals.run_queue_delay_s.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(totals.rss_first_bytes, Some(200));
        assert_eq!(totals.rss_last_bytes, Some(300));
        assert_eq!(totals.rss_peak_bytes, Some(300));
        assert_eq!((totals.fds_first, totals.fds_peak), (Some(11), Some(12)));
        assert!((totals.write_bytes.unwrap() - 2500.0).abs() < 1e-6);
        assert!((totals.fraction(totals.psi_cpu_some_s).unwrap() - 0.25).abs() < 1e-9);
        assert!((totals.cpu_mean_cores().unwrap() - 1.75 * 1.25 / 2.5).abs() < 1e-9);
    }

    #[test]
    fn a_vanished_process_gives_no_rates() {
        let gone = Snapshot {
            t_s: 1.0,
            ..Snapshot::default()
        };
        let r = Rates::between(&snap(0.0, 0.0, 100, 0.0), &gone);
        assert_eq!((r.cpu_user, r.rss_bytes), (None, None));
        let mut totals = Totals::default();
        totals.add(&r);
        assert_eq!(totals.cpu_s(), None);
        assert_eq!(totals.samples, 1);
    }
}
