//! The one schedule abstraction: it hands out *slots*, each with the time the
//! request was intended to be sent, for every load model.
//!
//! Connections claim slots in order. In the open model a slot's intended time
//! is fixed by the arrival process, whether or not a connection is free then;
//! latency is measured from it, so waiting for a busy connection counts
//! (no coordinated omission). In the closed model a slot is due the moment it
//! is claimed. The backlog of an overloaded open-model run is implicit in the
//! schedule's position: it costs no memory however long the run.
//!
//! Stages and shards live here too ([`crate::profile`]): an open-model ramp
//! moves the arrivals (an inhomogeneous arrival process), a closed-model ramp
//! delays each connection's ("lane's") slots until the load reaches it, and a
//! shard's arrivals carry a phase so that shards interleave evenly.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::profile::Ramp;

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
    /// Offset of the next open-model arrival from the start (ns, fractional;
    /// infinite when there is none).
    next_offset_ns: f64,
    /// Position of the next arrival in arrival units (the integral of the rate).
    next_u: f64,
    /// Open-model slots handed out so far.
    index: u64,
    measured_issued: u64,
    rng: fastrand::Rng,
}

/// A thread-safe schedule shared by every connection of a run.
pub struct Schedule {
    model: LoadModel,
    limits: Limits,
    /// Stages: the load changes over time (open: rate, closed: connections).
    ramp: Option<Ramp>,
    /// Open model: position of the first arrival in arrival units (shards).
    phase: f64,
    /// Closed model with a ramp: lanes that will never be active again.
    retired: AtomicUsize,
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
            ramp: None,
            phase: 0.0,
            retired: AtomicUsize::new(0),
            start_ns: AtomicU64::new(0),
            state: Mutex::new(State {
                next_offset_ns: 0.0,
                next_u: 0.0,
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

    /// The load follows `ramp` (stages) instead of staying constant. Open
    /// model: the ramp's values are rates; the model's `rate` should be its
    /// peak (it sizes connections). Closed model: the values are connections;
    /// the model's `concurrency` is the number of lanes.
    pub fn with_ramp(mut self, ramp: Option<Ramp>) -> Self {
        self.ramp = ramp;
        self.reset_position();
        self
    }

    /// Open model: the first arrival comes `phase` arrivals late (0 ≤ phase < 1),
    /// so that shards' arrivals interleave.
    pub fn with_phase(mut self, phase: f64) -> Self {
        self.phase = if phase.is_finite() {
            phase.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.reset_position();
        self
    }

    fn reset_position(&mut self) {
        let phase = self.phase;
        let offset = self.offset_ns(phase);
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        state.next_u = phase;
        state.next_offset_ns = offset;
    }

    /// Offset from the start (ns) of the arrival at position `u`; infinite when never.
    fn offset_ns(&self, u: f64) -> f64 {
        match (self.model, &self.ramp) {
            (_, Some(ramp)) => ramp.time_of_arrival(u).unwrap_or(f64::INFINITY),
            (LoadModel::Open { rate, .. }, None) => u * 1e9 / rate,
            (LoadModel::Closed { .. }, None) => 0.0,
        }
    }

    /// Position of the arrival after the one at `u`, the `index`-th.
    fn next_position(&self, index: u64, u: f64, rng: &mut fastrand::Rng) -> f64 {
        match self.model {
            // From the index, not by accumulation, so rounding never adds a slot.
            LoadModel::Open {
                arrival: Arrival::Uniform,
                ..
            } => index as f64 + self.phase,
            // Unit-mean exponential gaps in arrival units (inverse transform; 1 - u is in (0, 1]).
            LoadModel::Open {
                arrival: Arrival::Poisson,
                ..
            } => u - (1.0 - rng.f64()).ln(),
            LoadModel::Closed { .. } => u,
        }
    }

    /// Fixes time zero (engine clock, ns). The first open-model slot is due
    /// then (or later: a shard's phase, a ramp starting at zero).
    pub fn start(&self, start_ns: u64) {
        self.start_ns.store(start_ns, Ordering::Release);
        let first = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_offset_ns;
        let due = if first.is_finite() {
            start_ns.saturating_add(first as u64)
        } else {
            u64::MAX
        };
        self.next_due_ns.store(due, Ordering::Release);
    }

    /// Closed model: whether connection `lane` has work at time zero (a ramp
    /// may start it later; it then connects when it starts).
    pub fn lane_starts_active(&self, lane: usize) -> bool {
        match (&self.ramp, self.model) {
            (Some(ramp), LoadModel::Closed { .. }) => {
                ramp.first_at_least(lane as f64 + 1.0, 0) == Some(0)
            }
            _ => true,
        }
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
        self.next_lane(0, now_ns)
    }

    /// Claims the next slot for connection `lane` (0-based, in spawn order);
    /// only a closed-model ramp tells lanes apart. `None` when the schedule is
    /// over for this lane.
    pub fn next_lane(&self, lane: usize, now_ns: u64) -> Option<Slot> {
        if self.is_done() {
            return None;
        }
        let start = self.start_ns();
        let warmup_end = start + self.limits.warmup_ns;
        let end = self.limits.duration_ns.map(|d| warmup_end + d);
        if let LoadModel::Closed { concurrency } = self.model {
            // Due now: no shared state to update unless requests are counted.
            if end.is_some_and(|end| now_ns >= end) {
                return self.exhaust();
            }
            let mut intended_ns = now_ns;
            if let Some(ramp) = &self.ramp {
                // A lane sends while the load is at least its number + 1; otherwise
                // its slot is due when the ramp reaches it.
                match ramp.first_at_least(lane as f64 + 1.0, now_ns.saturating_sub(start)) {
                    Some(at) if end.is_none_or(|end| start + at < end) => {
                        intended_ns = intended_ns.max(start + at);
                    }
                    _ => return self.retire_lane(concurrency),
                }
            }
            let warmup = intended_ns < warmup_end;
            if !warmup {
                if let Some(max) = self.limits.max_requests {
                    if self.closed_issued.fetch_add(1, Ordering::AcqRel) >= max {
                        return self.exhaust();
                    }
                }
            }
            return Some(Slot {
                intended_ns,
                warmup,
            });
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.next_offset_ns.is_finite() {
            // The ramp's rate fell to zero for good: no arrival will ever come.
            return self.exhaust();
        }
        let intended_ns = start + state.next_offset_ns as u64;
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
        state.index += 1;
        let State {
            index, next_u, rng, ..
        } = &mut *state;
        let u = self.next_position(*index, *next_u, rng);
        state.next_u = u;
        state.next_offset_ns = self.offset_ns(u);
        let due = if state.next_offset_ns.is_finite() {
            start.saturating_add(state.next_offset_ns as u64)
        } else {
            u64::MAX
        };
        self.next_due_ns.store(due, Ordering::Release);
        Some(Slot {
            intended_ns,
            warmup,
        })
    }

    /// Open-model arrivals of the measured window that were never sent because
    /// the window ended while they waited for a free connection.
    pub fn dropped(&self) -> u64 {
        let LoadModel::Open { .. } = self.model else {
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
        let mut offset = state.next_offset_ns;
        let mut u = state.next_u;
        let mut index = state.index;
        let mut issued = state.measured_issued;
        let mut dropped = 0;
        while offset < end_offset && self.limits.max_requests.is_none_or(|max| issued < max) {
            if offset >= self.limits.warmup_ns as f64 {
                dropped += 1;
                issued += 1;
            }
            index += 1;
            u = self.next_position(index, u, &mut state.rng);
            offset = self.offset_ns(u);
        }
        dropped
    }

    /// A closed-model lane that the ramp will never need again leaves; the
    /// schedule is over when the last one has.
    fn retire_lane(&self, lanes: usize) -> Option<Slot> {
        if self.retired.fetch_add(1, Ordering::AcqRel) + 1 >= lanes {
            return self.exhaust();
        }
        None
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

    fn window(secs: u64) -> Limits {
        Limits {
            warmup_ns: 0,
            duration_ns: Some(secs * 1_000_000_000),
            max_requests: None,
        }
    }

    fn stages(start: f64, stages: &[(u64, f64)]) -> Ramp {
        Ramp {
            start,
            stages: stages
                .iter()
                .map(|&(secs, target)| crate::profile::Stage {
                    duration_ns: secs * 1_000_000_000,
                    target,
                })
                .collect(),
        }
    }

    #[test]
    fn shards_interleave_into_the_single_generator_schedule() {
        let whole = Schedule::new(open(1_000.0, Arrival::Uniform), window(1), 1);
        whole.start(0);
        let expected: Vec<u64> =
            std::iter::from_fn(|| whole.next(0).map(|s| s.intended_ns)).collect();
        let mut merged = Vec::new();
        for i in 0..4 {
            let part = crate::Shard::new(i, 4)
                .unwrap()
                .split(open(1_000.0, Arrival::Uniform), None)
                .unwrap();
            let s = Schedule::new(part.load, window(1), 1).with_phase(part.arrival_phase);
            s.start(0);
            let mine: Vec<u64> = std::iter::from_fn(|| s.next(0).map(|x| x.intended_ns)).collect();
            assert_eq!(mine.len(), 250, "shard {i}");
            merged.extend(mine);
        }
        merged.sort_unstable();
        assert_eq!(merged.len(), expected.len());
        for (a, b) in merged.iter().zip(&expected) {
            assert!(a.abs_diff(*b) <= 1, "{a} vs {b}");
        }
    }

    #[test]
    fn open_ramp_places_arrivals_by_the_integral_of_the_rate() {
        // 0 → 100/s over 2 s (100 arrivals), then 100/s for 1 s (100 more).
        let ramp = stages(0.0, &[(2, 100.0), (1, 100.0)]);
        let s = Schedule::new(open(100.0, Arrival::Uniform), window(3), 1).with_ramp(Some(ramp));
        s.start(0);
        let times: Vec<u64> = std::iter::from_fn(|| s.next(0).map(|x| x.intended_ns)).collect();
        assert_eq!(times.len(), 200);
        let in_first_second = times.iter().filter(|&&t| t < 1_000_000_000).count();
        assert_eq!(in_first_second, 25, "a quarter of the ramp's arrivals");
        let last_gap = times[199] - times[198];
        assert!(last_gap.abs_diff(10_000_000) < 1_000, "{last_gap}");
        // Gaps shrink while the rate grows.
        assert!(times[2] - times[1] > times[60] - times[59]);
    }

    #[test]
    fn poisson_ramp_follows_the_rate() {
        let ramp = stages(0.0, &[(10, 2_000.0)]);
        let s = Schedule::new(open(2_000.0, Arrival::Poisson), window(10), 3).with_ramp(Some(ramp));
        s.start(0);
        let times: Vec<u64> = std::iter::from_fn(|| s.next(0).map(|x| x.intended_ns)).collect();
        // Expected 10,000 arrivals, 1/4 of them in the first half.
        assert!(
            (times.len() as f64 - 10_000.0).abs() < 400.0,
            "{}",
            times.len()
        );
        let first_half = times.iter().filter(|&&t| t < 5_000_000_000).count() as f64;
        assert!(
            (first_half / times.len() as f64 - 0.25).abs() < 0.02,
            "{first_half}"
        );
    }

    #[test]
    fn closed_ramp_starts_and_retires_lanes() {
        // 0 → 4 connections over 4 s, then down to 0 over 4 s.
        let ramp = stages(0.0, &[(4, 4.0), (4, 0.0)]);
        let s =
            Schedule::new(LoadModel::Closed { concurrency: 4 }, window(8), 1).with_ramp(Some(ramp));
        s.start(0);
        assert!(!s.lane_starts_active(0));
        // Lane 2 is due when the load reaches 3 (t = 3 s).
        assert_eq!(s.next_lane(2, 0).unwrap().intended_ns, 3_000_000_000);
        assert_eq!(
            s.next_lane(0, 2_000_000_000).unwrap().intended_ns,
            2_000_000_000
        );
        // At 6 s the load is 2: lane 3 is never needed again.
        assert!(s.next_lane(3, 6_000_000_000).is_none());
        assert!(!s.is_done(), "other lanes go on");
        assert_eq!(
            s.next_lane(1, 6_000_000_000).unwrap().intended_ns,
            6_000_000_000
        );
        assert!(s.next_lane(2, 6_000_000_000).is_none());
        assert!(s.next_lane(1, 7_000_000_000).is_none());
        assert!(s.next_lane(0, 7_500_000_000).is_none());
        assert!(s.is_done(), "the last lane ends the schedule");
    }
}
