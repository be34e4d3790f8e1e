//! Load profiles the schedule follows: stages with linear ramps, and shards
//! (one generator's share of a load split across several).
//!
//! A [`Ramp`] is a piecewise-linear load over time: a rate in requests per
//! second for the open model, a number of connections for the closed model.
//! For the open model the schedule places arrival `u` (0, 1, 2, ... plus a
//! phase) where the integral of the rate reaches `u`: an inhomogeneous
//! arrival process, evenly spaced in "arrival time" rather than in clock time.
//! For the closed model, connection (lane) `l` sends while the load is at
//! least `l + 1`.
//!
//! A [`Shard`] takes every N-th arrival (open model) or every N-th lane
//! (closed model) of the whole load, so N shards started together send
//! exactly what one generator would have sent.

/// One stage: the load ramps linearly to `target` over `duration_ns`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Length of the stage (nanoseconds).
    pub duration_ns: u64,
    /// Load at the end of the stage (requests per second, or connections).
    pub target: f64,
}

/// A piecewise-linear load: from `start` at time zero, each stage ramps to its
/// target; after the last stage the load holds at the last target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ramp {
    /// Load at time zero.
    pub start: f64,
    /// Stages in order.
    pub stages: Vec<Stage>,
}

/// Loads closer than this to a lane's level count as reaching it (float
/// interpolation must not lose a connection at the end of a ramp).
const LEVEL_EPSILON: f64 = 1e-9;

/// One linear piece, in seconds from time zero.
#[derive(Debug, Clone, Copy)]
struct Piece {
    t0: f64,
    length: f64,
    from: f64,
    to: f64,
}

impl Piece {
    fn value_at(&self, t: f64) -> f64 {
        if self.length <= 0.0 {
            return self.to;
        }
        let frac = ((t - self.t0) / self.length).clamp(0.0, 1.0);
        self.from + (self.to - self.from) * frac
    }

    /// The integral of the load over the whole piece.
    fn area(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.length
    }
}

impl Ramp {
    /// Checks that every value is finite and not negative and that the load
    /// is positive somewhere.
    pub fn validate(&self) -> Result<(), String> {
        let values = std::iter::once(self.start).chain(self.stages.iter().map(|s| s.target));
        for v in values {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "stage loads must be finite and not negative, got {v}"
                ));
            }
        }
        if self.peak() <= 0.0 {
            return Err("every stage has zero load".into());
        }
        Ok(())
    }

    /// Sum of the stage durations (nanoseconds).
    pub fn total_ns(&self) -> u64 {
        self.stages.iter().map(|s| s.duration_ns).sum()
    }

    /// The highest load anywhere in the ramp.
    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start, f64::max)
    }

    /// The load once the last stage is over.
    pub fn last(&self) -> f64 {
        self.stages.last().map_or(self.start, |s| s.target)
    }

    fn pieces(&self) -> impl Iterator<Item = Piece> + '_ {
        let mut t0 = 0.0;
        let mut from = self.start;
        self.stages.iter().map(move |s| {
            let length = s.duration_ns as f64 / 1e9;
            let piece = Piece {
                t0,
                length,
                from,
                to: s.target,
            };
            t0 += length;
            from = s.target;
            piece
        })
    }

    /// The load `t_ns` after time zero.
    pub fn at(&self, t_ns: u64) -> f64 {
        let t = t_ns as f64 / 1e9;
        self.pieces()
            .find(|p| t < p.t0 + p.length)
            .map_or(self.last(), |p| p.value_at(t))
    }

    /// Open model: the integral of the rate from time zero to `t_ns`, the
    /// number of arrivals expected by then.
    pub fn arrivals_until(&self, t_ns: u64) -> f64 {
        let t = t_ns as f64 / 1e9;
        let mut total = 0.0;
        for p in self.pieces() {
            if t >= p.t0 + p.length {
                total += p.area();
            } else {
                let v = p.value_at(t);
                return total + (p.from + v) / 2.0 * (t - p.t0);
            }
        }
        total + self.last() * (t - self.total_ns() as f64 / 1e9)
    }

    /// Open model: nanoseconds after time zero at which the integral of the
    /// rate reaches `u`; `None` when it never does (the load drops to zero).
    pub fn time_of_arrival(&self, u: f64) -> Option<f64> {
        let mut before = 0.0;
        for p in self.pieces() {
            let area = p.area();
            if u < before + area {
                let x = (u - before).max(0.0);
                // Solve from·τ + (to - from)/(2·length)·τ² = x for the smallest τ ≥ 0,
                // in the form that stays accurate when the slope is tiny.
                let a = (p.to - p.from) / (2.0 * p.length);
                let b = p.from;
                let root = (b * b + 4.0 * a * x).max(0.0).sqrt();
                let tau = if x <= 0.0 { 0.0 } else { 2.0 * x / (b + root) };
                return Some((p.t0 + tau.clamp(0.0, p.length)) * 1e9);
            }
            before += area;
        }
        let last = self.last();
        if last <= 0.0 {
            return None;
        }
        Some((self.total_ns() as f64 / 1e9 + (u - before) / last) * 1e9)
    }

    /// Closed model: the first time, at or after `from_ns`, at which the load
    /// is at least `level`; `None` when it never is again.
    pub fn first_at_least(&self, level: f64, from_ns: u64) -> Option<u64> {
        let exact = level;
        let level = level - LEVEL_EPSILON;
        let from = from_ns as f64 / 1e9;
        for p in self.pieces() {
            let end = p.t0 + p.length;
            if end <= from {
                continue;
            }
            let begin = from.max(p.t0);
            let v_begin = p.value_at(begin);
            if v_begin >= level {
                return Some(from_ns.max((begin * 1e9).round() as u64));
            }
            if p.to >= level && p.to > p.from {
                let t = p.t0 + (exact - p.from) / (p.to - p.from) * p.length;
                return Some(from_ns.max((t.max(begin) * 1e9).round() as u64));
            }
        }
        (self.last() >= level).then(|| from_ns.max(self.total_ns()))
    }
}

/// One generator's share of a load split across `count` generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this generator.
    pub index: u32,
    /// Number of generators.
    pub count: u32,
}

/// What one shard runs: its own load, ramp and arrival phase.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLoad {
    /// This generator's load model (its own rate or connections).
    pub load: crate::LoadModel,
    /// This generator's ramp, when the load has stages.
    pub ramp: Option<Ramp>,
    /// Open model: offset of the first arrival, as a fraction of one arrival
    /// (0 ≤ phase < 1), so the shards' arrivals interleave evenly.
    pub arrival_phase: f64,
}

impl Shard {
    /// Generator `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// This shard's share of the whole `load` (and its `ramp`).
    ///
    /// Open model: the rate (and every stage's rate) divided by the count, and
    /// arrival phase `index / count`: shard `i` sends arrivals `i, i + N,
    /// i + 2N, ...` of the whole. Closed model: connections `i, i + N, ...` of
    /// the whole, so the first `C mod N` shards get one more; a connection of
    /// a ramp is active while the whole load is above its number.
    pub fn split(self, load: crate::LoadModel, ramp: Option<&Ramp>) -> Result<ShardLoad, String> {
        let n = f64::from(self.count);
        let i = f64::from(self.index);
        match load {
            crate::LoadModel::Open {
                rate,
                arrival,
                max_connections,
            } => Ok(ShardLoad {
                load: crate::LoadModel::Open {
                    rate: rate / n,
                    arrival,
                    max_connections: max_connections.div_ceil(self.count as usize).max(1),
                },
                ramp: ramp.map(|r| Ramp {
                    start: r.start / n,
                    stages: r
                        .stages
                        .iter()
                        .map(|s| Stage {
                            duration_ns: s.duration_ns,
                            target: s.target / n,
                        })
                        .collect(),
                }),
                arrival_phase: i / n,
            }),
            crate::LoadModel::Closed { concurrency } => {
                // Whole-load lane g = l·N + i is active while load ≥ g + 1, that
                // is while (load - i - 1)/N + 1 ≥ l + 1: a linear map of the load.
                let local = |whole: f64| (whole - i - 1.0) / n + 1.0;
                let (lanes, ramp) = match ramp {
                    Some(r) => {
                        let local_ramp = Ramp {
                            start: local(r.start),
                            stages: r
                                .stages
                                .iter()
                                .map(|s| Stage {
                                    duration_ns: s.duration_ns,
                                    target: local(s.target),
                                })
                                .collect(),
                        };
                        let lanes = (local_ramp.peak() + LEVEL_EPSILON).floor().max(0.0) as usize;
                        (lanes, Some(local_ramp))
                    }
                    None => {
                        let whole = concurrency;
                        let idx = self.index as usize;
                        let lanes = if whole > idx {
                            (whole - idx).div_ceil(self.count as usize)
                        } else {
                            0
                        };
                        (lanes, None)
                    }
                };
                if lanes == 0 {
                    return Err(format!(
                        "{concurrency} connections cannot be split into {} shards: shard {} would have none",
                        self.count, self.index
                    ));
                }
                Ok(ShardLoad {
                    load: crate::LoadModel::Closed { concurrency: lanes },
                    ramp,
                    arrival_phase: 0.0,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: f64, stages: &[(f64, f64)]) -> Ramp {
        Ramp {
            start,
            stages: stages
                .iter()
                .map(|&(secs, target)| Stage {
                    duration_ns: (secs * 1e9) as u64,
                    target,
                })
                .collect(),
        }
    }

    #[test]
    fn arrivals_integrate_the_rate() {
        // 0 → 100/s over 10 s (500 arrivals), then 100/s for 5 s (500 more).
        let r = ramp(0.0, &[(10.0, 100.0), (5.0, 100.0)]);
        assert!((r.arrivals_until(10_000_000_000) - 500.0).abs() < 1e-9);
        assert!((r.arrivals_until(15_000_000_000) - 1000.0).abs() < 1e-9);
        // Inverse: the 500th arrival is at the end of the ramp, the 125th at t = 5 s.
        assert!((r.time_of_arrival(500.0).unwrap() - 10e9).abs() < 1.0);
        assert!((r.time_of_arrival(125.0).unwrap() - 5e9).abs() < 1.0);
        for u in [0.0, 1.0, 17.3, 250.0, 499.9, 700.0, 1000.0, 1500.0] {
            let t = r.time_of_arrival(u).unwrap();
            assert!((r.arrivals_until(t as u64) - u).abs() < 1e-3, "u {u} t {t}");
        }
    }

    #[test]
    fn ramps_down_and_to_zero() {
        let r = ramp(1000.0, &[(2.0, 0.0)]);
        assert!((r.arrivals_until(2_000_000_000) - 1000.0).abs() < 1e-9);
        let t = r.time_of_arrival(750.0).unwrap();
        assert!((t - 1e9).abs() < 1.0, "{t}");
        assert_eq!(r.time_of_arrival(1000.5), None, "the load ended at zero");
    }

    #[test]
    fn closed_levels_are_reached_on_the_ramp() {
        let r = ramp(0.0, &[(10.0, 10.0), (10.0, 10.0), (5.0, 0.0)]);
        assert_eq!(r.first_at_least(1.0, 0), Some(1_000_000_000));
        assert_eq!(r.first_at_least(10.0, 0), Some(10_000_000_000));
        assert_eq!(r.first_at_least(10.0, 12_000_000_000), Some(12_000_000_000));
        // Lane 10 (level 10) drops out at 20 s and never comes back.
        assert_eq!(r.first_at_least(10.0, 21_000_000_000), None);
        assert_eq!(r.first_at_least(11.0, 0), None);
        assert!((r.at(22_500_000_000) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn open_shards_split_rate_and_interleave() {
        let load = crate::LoadModel::Open {
            rate: 1000.0,
            arrival: crate::Arrival::Uniform,
            max_connections: 10,
        };
        let s = Shard::new(3, 4).unwrap().split(load, None).unwrap();
        assert_eq!(
            s.load,
            crate::LoadModel::Open {
                rate: 250.0,
                arrival: crate::Arrival::Uniform,
                max_connections: 3
            }
        );
        assert_eq!(s.arrival_phase, 0.75);
        assert!(Shard::new(4, 4).is_none());
    }

    #[test]
    fn closed_shards_take_every_nth_connection() {
        let load = crate::LoadModel::Closed { concurrency: 10 };
        let lanes: Vec<usize> = (0..4)
            .map(
                |i| match Shard::new(i, 4).unwrap().split(load, None).unwrap().load {
                    crate::LoadModel::Closed { concurrency } => concurrency,
                    _ => unreachable!(),
                },
            )
            .collect();
        assert_eq!(lanes, [3, 3, 2, 2]);
        let err = Shard::new(3, 4)
            .unwrap()
            .split(crate::LoadModel::Closed { concurrency: 3 }, None)
            .unwrap_err();
        assert!(err.contains("shard 3 would have none"), "{err}");
        // With a ramp the active lanes of all shards add up to the whole at every time.
        let whole = ramp(0.0, &[(10.0, 10.0), (5.0, 3.0)]);
        let shards: Vec<Ramp> = (0..4)
            .map(|i| {
                Shard::new(i, 4)
                    .unwrap()
                    .split(crate::LoadModel::Closed { concurrency: 10 }, Some(&whole))
                    .unwrap()
                    .ramp
                    .unwrap()
            })
            .collect();
        for t in (0..=150).map(|x| x * 100_000_000u64) {
            let expected = (whole.at(t) + LEVEL_EPSILON).floor() as usize;
            let active: usize = shards
                .iter()
                .map(|r| {
                    (0..10)
                        .filter(|l| r.at(t) + LEVEL_EPSILON >= (l + 1) as f64)
                        .count()
                })
                .sum();
            assert_eq!(active, expected, "t = {t}");
        }
    }
}
