//! Target resource sampling for chokepoint: what the system under test spends
//! while it is loaded.
//!
//! Once a second a [`Probe`] thread reads the watched process's counters
//! (`/proc/PID/stat`, `statm`, `io`, `limits`, `fd/`, and per thread
//! `task/*/schedstat` and `task/*/status`), a cgroup v2's `cpu.stat`,
//! `cpu.max` and `memory.current`, and the machine's pressure stall
//! information (`/proc/pressure/{cpu,memory,io}`), and turns successive
//! readings into per-second [`Rates`] and running [`Totals`]. Memory is
//! constant: only the previous reading and the totals are kept.
//!
//! Missing files (not Linux, no permission, the process gone) never fail a
//! run: the affected figures are `None` and a note says why.
//!
//! ```no_run
//! use chokepoint_probe::{Probe, ProbeTarget};
//! use std::time::Duration;
//! let target = ProbeTarget { pid: Some(std::process::id()), cgroup: None };
//! let probe = Probe::start(target, Duration::from_secs(1), None, true).unwrap();
//! std::thread::sleep(Duration::from_secs(2));
//! let report = probe.stop();
//! println!("{:?} CPU seconds, notes: {:?}", report.totals.cpu_s(), report.notes);
//! ```
#![deny(missing_docs)]

pub mod read;
pub mod sample;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use read::{CgroupCounters, Fs, PressureCounters, ProcessCounters};
pub use sample::{Rates, Snapshot, Totals};

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTarget {
    /// A process (all its threads).
    pub pid: Option<u32>,
    /// A cgroup v2 directory: absolute, or relative to `/sys/fs/cgroup`.
    pub cgroup: Option<PathBuf>,
}

impl ProbeTarget {
    /// Nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.pid.is_none() && self.cgroup.is_none()
    }
}

/// Why probing cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The process does not exist (or `/proc` is not available).
    #[error("no process {pid} (nothing at /proc/{pid}/stat)")]
    NoSuchProcess {
        /// The pid given.
        pid: u32,
    },
    /// The cgroup directory is not a readable cgroup v2.
    #[error("{path}: {why}")]
    Cgroup {
        /// The path tried.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The sampling thread could not start.
    #[error("cannot start the probe thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where cgroup v2 hierarchies are mounted (the unified one of a hybrid setup too).
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// Resolves a cgroup path: absolute as given, relative under the cgroup v2 roots.
pub fn resolve_cgroup(path: &Path) -> Result<PathBuf, ProbeError> {
    let candidates: Vec<PathBuf> = if path.is_absolute() {
        vec![path.to_path_buf()]
    } else {
        CGROUP_ROOTS
            .iter()
            .map(|root| Path::new(root).join(path))
            .collect()
    };
    for dir in &candidates {
        if dir.join("cpu.stat").is_file() {
            return Ok(dir.clone());
        }
    }
    let tried = candidates
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(ProbeError::Cgroup {
        path: path.display().to_string(),
        why: format!("not a cgroup v2 directory (no cpu.stat in {tried})"),
    })
}

/// Takes readings and turns successive ones into rates; used by [`Probe`],
/// usable directly for one-off measurements.
pub struct Sampler {
    target: ProbeTarget,
    cgroup_dir: Option<PathBuf>,
    fs: Fs,
    origin: Instant,
    previous: Option<Snapshot>,
    notes: BTreeSet<String>,
    process_seen: bool,
    process_gone_noted: bool,
}

impl Sampler {
    /// Checks the target exists (the process, the cgroup's `cpu.stat`).
    pub fn new(target: &ProbeTarget) -> Result<Sampler, ProbeError> {
        let fs = Fs::default();
        if let Some(pid) = target.pid {
            if !read::process_exists(&fs, pid) {
                return Err(ProbeError::NoSuchProcess { pid });
            }
        }
        let cgroup_dir = target.cgroup.as_deref().map(resolve_cgroup).transpose()?;
        Ok(Sampler {
            target: target.clone(),
            cgroup_dir,
            fs,
            origin: Instant::now(),
            previous: None,
            notes: BTreeSet::new(),
            process_seen: false,
            process_gone_noted: false,
        })
    }

    /// The watched process's command name, when it has one.
    pub fn process_name(&self) -> Option<String> {
        self.target
            .pid
            .and_then(|pid| read::process_name(&self.fs, pid))
    }

    /// The resolved cgroup directory.
    pub fn cgroup_dir(&self) -> Option<&Path> {
        self.cgroup_dir.as_deref()
    }

    /// Reads every counter now.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut notes = Vec::new();
        let t_s = self.origin.elapsed().as_secs_f64();
        let process = self.target.pid.and_then(|pid| {
            let p = read::process(&self.fs, pid, &mut notes);
            if p.is_some() {
                self.process_seen = true;
            } else if self.process_seen && !self.process_gone_noted {
                self.process_gone_noted = true;
                notes.push(read::Note(format!(
                    "process {pid} exited (or became unreadable) {t_s:.0} s after sampling started; later seconds have no process figures"
                )));
            }
            p
        });
        let cgroup = self
            .cgroup_dir
            .as_deref()
            .and_then(|dir| read::cgroup(dir, &mut notes));
        let pressure = read::pressure(&self.fs.proc.join("pressure"), false, &mut notes);
        for n in notes {
            if self.notes.len() < 64 {
                self.notes.insert(n.0);
            }
        }
        Snapshot {
            t_s,
            process,
            cgroup,
            pressure,
        }
    }

    /// Reads now and returns the interval since the previous reading (`None` the first time).
    pub fn next_rates(&mut self) -> Option<Rates> {
        let now = self.snapshot();
        let rates = self.previous.as_ref().map(|b| Rates::between(b, &now));
        self.previous = Some(now);
        rates
    }

    /// Forgets the previous reading and restarts the clock: the next interval starts now.
    pub fn rebase(&mut self) {
        self.origin = Instant::now();
        self.previous = None;
        let now = self.snapshot();
        self.previous = Some(now);
    }

    /// Why some figures are missing, one line each.
    pub fn notes(&self) -> Vec<String> {
        self.notes.iter().cloned().collect()
    }
}

/// Receives every interval as it is measured (e.g. to append a CSV row).
pub type Sink = Box<dyn FnMut(&Rates) + Send>;

enum Command {
    Arm,
    Stop,
}

#[derive(Default)]
struct Shared {
    totals: Totals,
    latest: Option<Rates>,
    notes: Vec<String>,
}

/// A sampling thread: one reading per period until stopped.
pub struct Probe {
    commands: mpsc::Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
    process_name: Option<String>,
    cgroup_dir: Option<PathBuf>,
}

/// Reads a probe's most recent interval; stays valid after the probe stops.
#[derive(Clone)]
pub struct Latest(Arc<Mutex<Shared>>);

impl Latest {
    /// The most recent interval, if any.
    pub fn get(&self) -> Option<Rates> {
        self.0.lock().ok().and_then(|s| s.latest)
    }
}

/// What a probe measured, with notes on what it could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeReport {
    /// Totals over the armed period.
    pub totals: Totals,
    /// Why some figures are missing.
    pub notes: Vec<String>,
}

impl Probe {
    /// Starts sampling every `period`. Unless `armed`, readings only keep the
    /// baseline fresh until [`Probe::arm`] (the start of a measured window):
    /// nothing reaches the totals or the sink before.
    pub fn start(
        target: ProbeTarget,
        period: Duration,
        sink: Option<Sink>,
        armed: bool,
    ) -> Result<Probe, ProbeError> {
        let mut sampler = Sampler::new(&target)?;
        let process_name = sampler.process_name();
        let cgroup_dir = sampler.cgroup_dir().map(Path::to_path_buf);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread_shared = shared.clone();
        let period = period.max(Duration::from_millis(10));
        let thread = std::thread::Builder::new()
            .name("chokepoint-probe".into())
            .spawn(move || {
                let mut sink = sink;
                let mut armed = armed;
                sampler.rebase();
                let mut deadline = Instant::now() + period;
                let record = |rates: Rates, sink: &mut Option<Sink>, notes: Vec<String>| {
                    if let Ok(mut s) = thread_shared.lock() {
                        s.totals.add(&rates);
                        s.latest = Some(rates);
                        s.notes = notes;
                    }
                    if let Some(sink) = sink.as_mut() {
                        sink(&rates);
                    }
                };
                loop {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(Command::Arm) => {
                            if !armed {
                                armed = true;
                                sampler.rebase();
                                deadline = Instant::now() + period;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            deadline += period;
                            // Fell far behind (a suspended machine): skip, do not burst.
                            if deadline < Instant::now() {
                                deadline = Instant::now() + period;
                            }
                            if let Some(rates) = sampler.next_rates() {
                                if armed {
                                    record(rates, &mut sink, sampler.notes());
                                } else if let Ok(mut s) = thread_shared.lock() {
                                    s.latest = Some(rates);
                                }
                            }
                        }
                        Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            // The final partial interval, unless it is too short to mean much.
                            if armed {
                                if let Some(rates) = sampler.next_rates() {
                                    if rates.interval_s >= 0.05 {
                                        record(rates, &mut sink, sampler.notes());
                                    }
                                }
                            }
                            if let Ok(mut s) = thread_shared.lock() {
                                s.notes = sampler.notes();
                            }
                            break;
                        }
                    }
                }
            })?;
        Ok(Probe {
            commands: tx,
            shared,
            thread: Some(thread),
            process_name,
            cgroup_dir,
        })
    }

    /// Starts counting: the measured window begins now.
    pub fn arm(&self) {
        let _ = self.commands.send(Command::Arm);
    }

    /// The most recent interval.
    pub fn latest(&self) -> Option<Rates> {
        self.shared.lock().ok().and_then(|s| s.latest)
    }

    /// A cloneable reader of the most recent interval.
    pub fn latest_handle(&self) -> Latest {
        Latest(self.shared.clone())
    }

    /// Totals so far.
    pub fn totals(&self) -> Totals {
        self.shared
            .lock()
            .map(|s| s.totals.clone())
            .unwrap_or_default()
    }

    /// The watched process's command name.
    pub fn process_name(&self) -> Option<&str> {
        self.process_name.as_deref()
    }

    /// The resolved cgroup directory.
    pub fn cgroup_dir(&self) -> Option<&Path> {
        self.cgroup_dir.as_deref()
    }

    /// Stops sampling (after one last partial reading) and returns the totals.
    pub fn stop(mut self) -> ProbeReport {
        self.finish()
    }

    fn finish(&mut self) -> ProbeReport {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared
            .lock()
            .map(|s| ProbeReport {
                totals: s.totals.clone(),
                notes: s.notes.clone(),
            })
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.finish();
        }
    }
}
