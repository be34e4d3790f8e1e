//! The one schedule abstraction: it hands out *slots*, each with the time the
//! request was intended to be sent, for every load model.
//!
//! Connections claim slots in order. In the open model a slot's intended time
//! is fixed by the arrival process, whether or not a connection is free then;
//! latency is measured from it, so waiting for a busy connection counts
//! (no coordinated omission). In the closed model a slot is due the moment it
//! is claimed. The backlog of an overloaded open-model run is implicit in the
//! schedule's position: it costs no memory however long the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// How open-model arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Evenly spaced: one request every `1/rate` seconds.
    Uniform,
    /// Exponentially distributed gaps with mean `1/rate` (a Poisson process).
    Poisson,
}

/// Which load model drives a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// Constant arrival rate, independent of response times.
    Open {
        /// Requests per second.
        rate: f64,
        /// Gap distribution.
        arrival: Arrival,
        /// Upper bound on concurrent connections (or HTTP/2 streams).
        max_connections: usize,
    },
    /// A fixed number of connections, each sending its next request when the previous completes.
    Closed {
        /// Number of connections.
        concurrency: usize,
    },
}

/// When the schedule ends. `None` fields do not limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Warmup before the measured window (nanoseconds).
    pub warmup_ns: u64,
    /// Length of the measured window (nanoseconds).
    pub duration_ns: Option<u64>,
    /// Number of measured requests.
    pub max_requests: Option<u64>,
}

/// One claimed request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Intended send time on the engine clock (ns).
    pub intended_ns: u64,
    /// The slot falls in the warmup period and is reported separately.
    pub warmup: bool,
}

struct State {
    /// Offset of the next open-model arrival from the start (ns, fractional).
    next_offset_ns: f64,
    /// Open-model slots handed out so far.
    index: u64,
    measured_issued: u64,
    rng: fastrand::Rng,
}

/// A thread-safe schedule shared by every connection of a run.
pub struct Schedule {
    model: LoadModel,
    limits: Limits,
    start_ns: AtomicU64,
    state: Mutex<State>,
    /// Intended time of the next unclaimed open-model slot (for the connection spawner).
    next_due_ns: AtomicU64,
    stopped: AtomicBool,
    exhausted: AtomicBool,
    /// Closed model: measured slots handed out (lock-free path).
    closed_issued: AtomicU64,
}

impl Schedule {
    /// A schedule that has not started yet; `start` fixes time zero.
    pub fn new(model: LoadModel, limits: Limits, seed: u64) -> Self {
        Schedule {
            model,
            limits,
            start_ns: AtomicU64::new(0),
            state: Mutex::new(State {
                next_offset_ns: 0.0,
                index: 0,
                measured_issued: 0,
                rng: fastrand::Rng::with_seed(seed),
            }),
            next_due_ns: AtomicU64::new(u64::MAX),
            stopped: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            closed_issued: AtomicU64::new(0),
        }
    }

    /// Fixes time zero (engine clock, ns). The first open-model slot is due then.
    pub fn start(&self, start_ns: u64) {
        self.start_ns.store(start_ns, Ordering::Release);
        self.next_due_ns.store(start_ns, Ordering::Release);
    }

    /// Time zero, or 0 before `start`.
    pub fn start_ns(&self) -> u64 {
        self.start_ns.load(Ordering::Acquire)
    }

    /// The load model.
    pub fn model(&self) -> LoadModel {
        self.model
    }

    /// Start of the measured window (after warmup).
    pub fn measured_start_ns(&self) -> u64 {
        self.start_ns() + self.limits.warmup_ns
    }

    /// The schedule begins with a warmup period.
    pub fn has_warmup(&self) -> bool {
        self.limits.warmup_ns > 0
    }

    /// Stops handing out slots (Ctrl-C, SIGTERM).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// No more slots will be handed out (stopped, or a limit was reached).
    pub fn is_done(&self) -> bool {
        self.is_stopped() || self.exhausted.load(Ordering::Acquire)
    }

    /// Intended time of the next unclaimed open-model slot, `u64::MAX` when none.
    pub fn next_due_ns(&self) -> u64 {
        self.next_due_ns.load(Ordering::Acquire)
    }

    /// Claims the next slot; `now_ns` is the caller's current clock reading.
    /// `None` when the schedule is over.
    pub fn next(&self, now_ns: u64) -> Option<Slot> {
        if self.is_done() {
            return None;
        }
        let start = self.start_ns();
        let warmup_end = start + self.limits.warmup_ns;
        let end = self.limits.duration_ns.map(|d| warmup_end + d);
        if let LoadModel::Closed { .. } = self.model {
            // Due now: no shared state to update unless requests are counted.
            if end.is_some_and(|end| now_ns >= end) {
                return self.exhaust();
            }
            let warmup = now_ns < warmup_end;
            if !warmup {
                if let Some(max) = self.limits.max_requests {
                    if self.closed_issued.fetch_add(1, Ordering::AcqRel) >= max {
                        return self.exhaust();
                    }
                }
            }
            return Some(Slot {
                intended_ns: now_ns,
                warmup,
            });
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let intended_ns = match self.model {
            LoadModel::Closed { .. } => now_ns,
            LoadModel::Open { .. } => start + state.next_offset_ns as u64,
        };
        if end.is_some_and(|end| intended_ns >= end || now_ns >= end) {
            // The window is over; late open-model slots still unsent are dropped
            // (counted by `dropped`), so a run ends on time however slow the target.
            return self.exhaust();
        }
        let warmup = intended_ns < warmup_end;
        if !warmup {
            if self
                .limits
                .max_requests
                .is_some_and(|max| state.measured_issued >= max)
            {
                return self.exhaust();
            }
            state.measured_issued += 1;
        }
        if let LoadModel::Open { rate, arrival, .. } = self.model {
            let mean_gap_ns = 1e9 / rate;
            state.index += 1;
            state.next_offset_ns = match arrival {
                // From the index, not by accumulation, so rounding never adds a slot.
                Arrival::Uniform => state.index as f64 * 1e9 / rate,
                // Inverse transform of an exponential; 1 - u is in (0, 1].
                Arrival::Poisson => {
                    state.next_offset_ns - (1.0 - state.rng.f64()).ln() * mean_gap_ns
                }
            };
            self.next_due_ns
                .store(start + state.next_offset_ns as u64, Ordering::Release);
        }
        Some(Slot {
            intended_ns,
            warmup,
        })
    }

    /// Open-model arrivals of the measured window that were never sent because
    /// the window ended while they waited for a free connection.
    pub fn dropped(&self) -> u64 {
        let LoadModel::Open { rate, arrival, .. } = self.model else {
            return 0;
        };
        let Some(duration) = self.limits.duration_ns else {
            return 0;
        };
        if self.is_stopped() {
            return 0;
        }
        let end_offset = (self.limits.warmup_ns + duration) as f64;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mean_gap_ns = 1e9 / rate;
        let mut offset = state.next_offset_ns;
        let mut index = state.index;
        let mut issued = state.measured_issued;
        let mut dropped = 0;
        while offset < end_offset && self.limits.max_requests.is_none_or(|max| issued < max) {
            if offset >= self.limits.warmup_ns as f64 {
                dropped += 1;
                issued += 1;
            }
            index += 1;
            offset = match arrival {
                Arrival::Uniform => index as f64 * 1e9 / rate,
                Arrival::Poisson => offset - (1.0 - state.rng.f64()).ln() * mean_gap_ns,
            };
        }
        dropped
    }

    fn exhaust(&self) -> Option<Slot> {
        self.exhausted.store(true, Ordering::Release);
        self.next_due_ns.store(u64::MAX, Ordering::Release);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rate: f64, arrival: Arrival) -> LoadModel {
        LoadModel::Open {
            rate,
            arrival,
            max_connections: 10,
        }
    }

    #[test]
    fn uniform_slots_are_evenly_spaced_and_end_with_the_window() {
        let limits = Limits {
            warmup_ns: 0,
            duration_ns: Some(1_000_000_000),
            max_requests: None,
        };
        let s = Schedule::new(open(100.0, Arrival::Uniform), limits, 1);
        s.start(1_000);
        let slots: Vec<_> = std::iter::from_fn(|| s.next(0)).collect();
        assert_eq!(slots.len(), 100);
        assert_eq!(slots[0].intended_ns, 1_000);
        assert_eq!(slots[1].intended_ns - slots[0].intended_ns, 10_000_000);
        assert!(s.is_done());
    }

    #[test]
    fn uniform_rounding_never_adds_a_slot() {
        for rate in [300.0, 7.0, 333.0, 20_000.0, 99_999.0] {
            let limits = Limits {
                warmup_ns: 0,
                duration_ns: Some(2_000_000_000),
                max_requests: None,
            };
            let s = Schedule::new(open(rate, Arrival::Uniform), limits, 1);
            s.start(0);
            let n = std::iter::from_fn(|| s.next(0)).count();
            assert_eq!(n as f64, (2.0 * rate).ceil(), "rate {rate}");
        }
    }

    #[test]
    fn poisson_gaps_have_the_right_mean_and_spread() {
        let limits = Limits {
            max_requests: Some(100_000),
            ..Limits::default()
        };
        let s = Schedule::new(open(1_000.0, Arrival::Poisson), limits, 7);
        s.start(0);
        let times: Vec<u64> = std::iter::from_fn(|| s.next(0).map(|x| x.intended_ns)).collect();
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean / 1e6 - 1.0).abs() < 0.02, "mean gap {mean}");
        // Exponential: standard deviation equals the mean.
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.03,
            "cv {}",
            var.sqrt() / mean
        );
    }

    #[test]
    fn warmup_slots_are_marked_and_not_counted_against_max_requests() {
        let limits = Limits {
            warmup_ns: 50_000_000,
            duration_ns: None,
            max_requests: Some(10),
        };
        let s = Schedule::new(open(100.0, Arrival::Uniform), limits, 1);
        s.start(0);
        let slots: Vec<_> = std::iter::from_fn(|| s.next(0)).collect();
        assert_eq!(slots.iter().filter(|x| x.warmup).count(), 5);
        assert_eq!(slots.iter().filter(|x| !x.warmup).count(), 10);
    }

    #[test]
    fn slots_still_unsent_when_the_window_ends_are_dropped_and_counted() {
        let limits = Limits {
            warmup_ns: 0,
            duration_ns: Some(1_000_000_000),
            max_requests: None,
        };
        let s = Schedule::new(open(100.0, Arrival::Uniform), limits, 1);
        s.start(0);
        for _ in 0..40 {
            assert!(s.next(0).is_some());
        }
        assert!(s.next(1_000_000_000).is_none(), "the window is over");
        assert_eq!(s.dropped(), 60);
    }

    #[test]
    fn closed_slots_are_due_when_claimed_and_stop_ends_them() {
        let s = Schedule::new(LoadModel::Closed { concurrency: 1 }, Limits::default(), 1);
        s.start(0);
        assert_eq!(s.next(42).unwrap().intended_ns, 42);
        s.stop();
        assert!(s.next(43).is_none());
    }
}
