//! Drift over time: Theil–Sen slopes, the Mann–Kendall trend test, and
//! periodic-stall detection from per-second counts (the maths behind `soak`).
//!
//! Theil–Sen is the median of all pairwise slopes: robust to outliers (a
//! third of the points can be wild before it moves). Mann–Kendall asks whether
//! later values tend to exceed earlier ones more often than chance allows; its
//! p-value is exact (no ties, n ≤ 50, from the distribution of inversions) or
//! the usual normal approximation with the ties correction. Both assume
//! independent residuals: autocorrelated series (a slow oscillation) make the
//! test overconfident, which is why callers also demand a minimum effect size.

use crate::significance::{normal_quantile, normal_two_sided_p};

/// A robust linear trend with its significance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Points used.
    pub n: usize,
    /// Theil–Sen slope: median pairwise slope, in y units per x unit.
    pub slope: f64,
    /// Lower end of the slope's confidence interval (Sen's method).
    pub slope_low: f64,
    /// Upper end of the slope's confidence interval.
    pub slope_high: f64,
    /// Intercept: median of `y - slope * x`.
    pub intercept: f64,
    /// Mann–Kendall S: concordant minus discordant pairs.
    pub s: i64,
    /// Kendall's tau: S over the number of pairs (−1..1).
    pub tau: f64,
    /// Two-sided p-value of "no monotonic trend".
    pub p_value: f64,
    /// The p-value is exact (no ties, n ≤ 50) rather than the normal approximation.
    pub exact: bool,
}

/// Largest series for which the exact Mann–Kendall distribution is computed.
pub const EXACT_MAX_N: usize = 50;

/// Fits a Theil–Sen trend with a Mann–Kendall test at confidence `confidence`
/// (e.g. 0.95) for the slope interval. `None` with fewer than 3 usable points
/// (non-finite values are skipped) or when every x is equal.
pub fn trend(x: &[f64], y: &[f64], confidence: f64) -> Option<Trend> {
    let points: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (*a, *b))
        .collect();
    let n = points.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            let (xi, yi) = points[i];
            let (xj, yj) = points[j];
            let dx = xj - xi;
            let dy = yj - yi;
            // Mann–Kendall orders by x (time); pairs are taken in x order.
            let sign_x = sign(dx);
            s += sign_x * sign(dy);
            if dx != 0.0 {
                slopes.push(dy / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let slope = median_sorted(&slopes);
    let mut residuals: Vec<f64> = points.iter().map(|(a, b)| b - slope * a).collect();
    residuals.sort_by(f64::total_cmp);
    let intercept = median_sorted(&residuals);

    let var_s = mann_kendall_variance(&points);
    let ties = has_ties(&points);
    let (p_value, exact) = if !ties && n <= EXACT_MAX_N {
        (exact_two_sided_p(n, s), true)
    } else {
        let z = if var_s <= 0.0 {
            0.0
        } else if s > 0 {
            (s as f64 - 1.0) / var_s.sqrt()
        } else if s < 0 {
            (s as f64 + 1.0) / var_s.sqrt()
        } else {
            0.0
        };
        (normal_two_sided_p(z).clamp(0.0, 1.0), false)
    };

    // Sen's confidence interval: ranks (N' ∓ C)/2 of the sorted slopes.
    let z = normal_quantile(0.5 + confidence.clamp(0.0, 0.9999) / 2.0);
    let c = z * var_s.max(0.0).sqrt();
    let m = slopes.len() as f64;
    let lower_rank = ((m - c) / 2.0).floor().max(1.0) as usize;
    let upper_rank = ((m + c) / 2.0).ceil() as usize + 1;
    let slope_low = slopes[lower_rank.min(slopes.len()) - 1];
    let slope_high = slopes[upper_rank.clamp(1, slopes.len()) - 1];

    let pairs = (n * (n - 1) / 2) as f64;
    Some(Trend {
        n,
        slope,
        slope_low,
        slope_high,
        intercept,
        s,
        tau: s as f64 / pairs,
        p_value,
        exact,
    })
}

fn sign(v: f64) -> i64 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn has_ties(points: &[(f64, f64)]) -> bool {
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    ys.sort_by(f64::total_cmp);
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    ys.windows(2).any(|w| w[0] == w[1]) || xs.windows(2).any(|w| w[0] == w[1])
}

/// Var(S) with the correction for tied groups of y.
fn mann_kendall_variance(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    ys.sort_by(f64::total_cmp);
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < ys.len() {
        let mut j = i + 1;
        while j < ys.len() && ys[j] == ys[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        tie_term += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term) / 18.0
}

/// Exact two-sided P(|S| ≥ |s|) under H0 for n distinct values: S = pairs − 2·inversions,
/// and the number of permutations with k inversions follows the Mahonian numbers.
fn exact_two_sided_p(n: usize, s: i64) -> f64 {
    let pairs = n * (n - 1) / 2;
    // Probability distribution of the inversion count, built one element at a time.
    let mut dist = vec![0.0f64; pairs + 1];
    dist[0] = 1.0;
    let mut max_k = 0;
    for m in 1..=n {
        // Adding the m-th element adds 0..m-1 inversions, each equally likely.
        let mut next = vec![0.0f64; pairs + 1];
        let mut window = 0.0;
        for k in 0..=(max_k + m - 1).min(pairs) {
            if k <= max_k {
                window += dist[k];
            }
            if k >= m && k - m <= max_k {
                window -= dist[k - m];
            }
            next[k] = window / m as f64;
        }
        max_k = (max_k + m - 1).min(pairs);
        dist = next;
    }
    let target = s.unsigned_abs() as usize;
    let mut p = 0.0;
    for (k, prob) in dist.iter().enumerate() {
        let s_k = pairs as i64 - 2 * k as i64;
        if s_k.unsigned_abs() as usize >= target {
            p += prob;
        }
    }
    p.clamp(0.0, 1.0)
}

/// What counts as a stall second and as a periodic pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StallConfig {
    /// A second is a stall second when at least this fraction of its requests were slow…
    pub min_slow_fraction: f64,
    /// …and at least this many.
    pub min_slow_requests: u64,
    /// Stall events needed before calling them periodic.
    pub min_events: usize,
    /// Largest coefficient of variation of the gaps between events for "periodic".
    pub max_gap_cv: f64,
}

impl Default for StallConfig {
    fn default() -> Self {
        StallConfig {
            min_slow_fraction: 0.02,
            min_slow_requests: 3,
            // Random slow seconds have gaps with a CV near 1 (exponential); five
            // events with a CV under 0.25 are very unlikely without a cause.
            min_events: 5,
            max_gap_cv: 0.25,
        }
    }
}

/// One second of a run: completed requests and how many of them were slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecondCounts {
    /// Requests completed in the second.
    pub requests: u64,
    /// Of those, requests slower than the caller's stall threshold.
    pub slow: u64,
}

/// Stalls found in a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stalls {
    /// Seconds judged stall seconds.
    pub stall_seconds: usize,
    /// Seconds examined.
    pub seconds: usize,
    /// Stall events: runs of adjacent stall seconds count once (a pause that
    /// straddles a second boundary is one event).
    pub events: usize,
    /// Start second of each event (at most the first 10,000).
    pub event_starts: Vec<usize>,
    /// Median gap between event starts, in seconds.
    pub median_gap_s: Option<f64>,
    /// Coefficient of variation of the gaps.
    pub gap_cv: Option<f64>,
    /// Slow requests over all stall seconds / requests in them.
    pub slow_fraction_in_stalls: f64,
    /// Stall seconds in nearly every second (≥ 80%): pauses at least once a
    /// second, too frequent to separate at one-second resolution.
    pub every_second: bool,
    /// At least `min_events` events whose gaps vary by at most `max_gap_cv`.
    pub regular_gaps: bool,
    /// Events that fall on the median gap's grid (see [`find_stalls`]).
    pub in_phase: usize,
    /// Events recur at a regular interval (or in nearly every second).
    pub periodic: bool,
}

impl Stalls {
    /// The period in seconds when periodic (`1.0` means "every second or more often").
    pub fn period_s(&self) -> Option<f64> {
        if !self.periodic {
            None
        } else if self.every_second {
            Some(1.0)
        } else {
            self.median_gap_s
        }
    }
}

/// Finds stall seconds and whether they recur periodically.
pub fn find_stalls(seconds: &[SecondCounts], config: &StallConfig) -> Stalls {
    let is_stall = |c: &SecondCounts| {
        c.requests > 0
            && c.slow >= config.min_slow_requests
            && c.slow as f64 >= config.min_slow_fraction * c.requests as f64
    };
    let mut out = Stalls {
        seconds: seconds.len(),
        ..Stalls::default()
    };
    let (mut slow, mut requests) = (0u64, 0u64);
    let mut previous = false;
    for (i, c) in seconds.iter().enumerate() {
        let stall = is_stall(c);
        if stall {
            out.stall_seconds += 1;
            slow += c.slow;
            requests += c.requests;
            if !previous {
                out.events += 1;
                if out.event_starts.len() < 10_000 {
                    out.event_starts.push(i);
                }
            }
        }
        previous = stall;
    }
    out.slow_fraction_in_stalls = if requests > 0 {
        slow as f64 / requests as f64
    } else {
        0.0
    };
    let active = seconds.iter().filter(|c| c.requests > 0).count();
    out.every_second = active >= 5 && out.stall_seconds as f64 >= 0.8 * active as f64;
    let gaps: Vec<f64> = out
        .event_starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64)
        .collect();
    if !gaps.is_empty() {
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        out.median_gap_s = Some(median_sorted(&sorted));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        out.gap_cv = Some(if mean > 0.0 { var.sqrt() / mean } else { 0.0 });
    }
    // Noise can hide a period's event (its slow second merges with a
    // neighbour's, or falls under the threshold) or add one, and either
    // breaks the gaps' regularity though the pauses still keep time. So
    // events also count as periodic when, on the grid of the median gap
    // (two seconds or more), the most common phase holds at least 80% of
    // them and at least half of the periods in the run have one: random slow
    // seconds spread over all phases, or are too few to fill the grid.
    if let Some(gap) = out.median_gap_s.filter(|g| *g >= 2.0) {
        let p = gap.round() as usize;
        out.in_phase = (0..p)
            .map(|phase| out.event_starts.iter().filter(|&&s| s % p == phase).count())
            .max()
            .unwrap_or(0);
    }
    let periods = out.seconds as f64 / out.median_gap_s.unwrap_or(f64::INFINITY);
    let in_phase = out.events >= config.min_events
        && out.in_phase as f64 >= 0.8 * out.event_starts.len() as f64
        && out.in_phase as f64 >= 0.5 * periods;
    out.regular_gaps =
        out.events >= config.min_events && out.gap_cv.is_some_and(|cv| cv <= config.max_gap_cv);
    out.periodic = out.every_second || out.regular_gaps || in_phase;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::Rng;

    fn check_trend(y: &[f64]) -> Trend {
        let x: Vec<f64> = (0..y.len()).map(|i| i as f64).collect();
        trend(&x, y, 0.95).expect("enough points")
    }

    #[test]
    fn theil_sen_recovers_a_slope_despite_outliers() {
        let mut rng = Rng::new(7);
        let mut y: Vec<f64> = (0..60)
            .map(|i| 100.0 + 2.5 * i as f64 + rng.normal())
            .collect();
        // A quarter of the points are wild.
        for i in (0..60).step_by(4) {
            y[i] += 500.0;
        }
        let t = check_trend(&y);
        assert!((t.slope - 2.5).abs() < 0.1, "{t:?}");
        assert!(t.slope_low <= t.slope && t.slope <= t.slope_high, "{t:?}");
        assert!(t.slope_low > 2.0 && t.slope_high < 3.0, "{t:?}");
        assert!(t.p_value < 1e-6, "{t:?}");
        assert!((t.intercept - 100.0).abs() < 3.0, "{t:?}");
    }

    #[test]
    fn flat_noise_is_not_significant_in_most_series() {
        let mut rng = Rng::new(11);
        let mut false_alarms = 0;
        for _ in 0..400 {
            let y: Vec<f64> = (0..30).map(|_| 50.0 + 5.0 * rng.normal()).collect();
            if check_trend(&y).p_value < 0.05 {
                false_alarms += 1;
            }
        }
        // 5% expected: 20 of 400; binomial sd ≈ 4.4.
        assert!((8..=34).contains(&false_alarms), "{false_alarms}");
    }

    #[test]
    fn exact_p_matches_known_values_and_the_normal_approximation() {
        // n = 4, perfectly increasing: S = 6, P(S = ±6) = 2/24.
        let t = check_trend(&[1.0, 2.0, 3.0, 4.0]);
        assert!(t.exact);
        assert_eq!(t.s, 6);
        assert!((t.p_value - 2.0 / 24.0).abs() < 1e-12, "{t:?}");
        // n = 5, S = 8 (one swap): P(|S| ≥ 8) = 2·(1 + 4)/120.
        let t = check_trend(&[1.0, 3.0, 2.0, 4.0, 5.0]);
        assert_eq!(t.s, 8);
        assert!((t.p_value - 10.0 / 120.0).abs() < 1e-12, "{t:?}");
        // Large n: exact and normal approximation agree.
        let mut rng = Rng::new(3);
        let y: Vec<f64> = (0..45).map(|i| 0.05 * i as f64 + rng.normal()).collect();
        let t = check_trend(&y);
        assert!(t.exact);
        let n = 45.0f64;
        let var = n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
        let z = (t.s.abs() as f64 - 1.0) / var.sqrt();
        let approx = normal_two_sided_p(z);
        assert!(
            (t.p_value - approx).abs() < 0.01 + 0.1 * approx,
            "{t:?} vs {approx}"
        );
    }

    #[test]
    fn ties_use_the_corrected_normal_approximation() {
        let t = check_trend(&[1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0]);
        assert!(!t.exact);
        assert!(t.s > 0 && t.p_value < 0.01, "{t:?}");
        let flat = check_trend(&[5.0; 12]);
        assert_eq!(flat.s, 0);
        assert_eq!(flat.slope, 0.0);
        assert!((flat.p_value - 1.0).abs() < 1e-12, "{flat:?}");
    }

    #[test]
    fn decreasing_series_have_negative_slope_and_tau() {
        let t = check_trend(&[9.0, 8.0, 8.5, 6.0, 5.0, 5.5, 3.0, 2.0]);
        assert!(t.slope < 0.0 && t.tau < 0.0 && t.p_value < 0.05, "{t:?}");
    }

    #[test]
    fn too_few_points_give_none() {
        assert!(trend(&[0.0, 1.0], &[1.0, 2.0], 0.95).is_none());
        assert!(trend(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 0.95).is_none());
        assert!(trend(&[0.0, 1.0, 2.0], &[1.0, f64::NAN, 3.0], 0.95).is_none());
    }

    fn seconds(pattern: impl Fn(usize) -> bool, n: usize) -> Vec<SecondCounts> {
        (0..n)
            .map(|i| SecondCounts {
                requests: 100,
                slow: if pattern(i) { 15 } else { 0 },
            })
            .collect()
    }

    #[test]
    fn periodic_stalls_report_their_period() {
        let s = find_stalls(&seconds(|i| i % 3 == 1, 30), &StallConfig::default());
        assert!(s.periodic, "{s:?}");
        assert_eq!(s.events, 10);
        assert_eq!(s.period_s(), Some(3.0));
        assert!((s.slow_fraction_in_stalls - 0.15).abs() < 1e-9);
        // A pause straddling a second boundary is one event, not two.
        let s = find_stalls(
            &seconds(|i| i % 5 == 0 || i == 11, 40),
            &StallConfig::default(),
        );
        assert!(s.periodic, "{s:?}");
        assert_eq!(s.period_s(), Some(5.0));
    }

    #[test]
    fn a_period_with_missed_and_extra_events_is_still_periodic() {
        // Soaks of a lab pausing 150 ms every 2 s on a machine with bursts of
        // host steal: some periods merged with noise or went unseen.
        for starts in [
            &[1, 4, 6, 8, 12, 14, 16, 18, 20, 28][..],
            &[1, 3, 9, 14, 19, 21, 23, 25, 27, 29],
            &[1, 3, 5, 7, 9, 11, 13, 25, 27],
        ] {
            let s = find_stalls(
                &seconds(|i| starts.contains(&i), 31),
                &StallConfig::default(),
            );
            assert!(s.gap_cv.unwrap() > 0.25, "{s:?}");
            assert!(s.periodic, "{starts:?}: {s:?}");
            assert_eq!(s.period_s(), Some(2.0), "{s:?}");
        }
    }

    #[test]
    fn random_slow_seconds_are_rarely_called_periodic() {
        let mut rng = Rng::new(5);
        for q in [0.1, 0.2, 0.3, 0.5] {
            let mut periodic = 0;
            for _ in 0..500 {
                let slow: Vec<bool> = (0..60).map(|_| rng.uniform() < q).collect();
                if find_stalls(&seconds(|i| slow[i], 60), &StallConfig::default()).periodic {
                    periodic += 1;
                }
            }
            assert!(periodic <= 10, "q = {q}: {periodic} of 500 called periodic");
        }
    }

    #[test]
    fn stalls_every_second_and_irregular_ones() {
        let s = find_stalls(&seconds(|_| true, 20), &StallConfig::default());
        assert!(s.periodic && s.every_second, "{s:?}");
        assert_eq!(s.period_s(), Some(1.0));
        let s = find_stalls(
            &seconds(|i| [1, 9, 11, 25, 39].contains(&i), 40),
            &StallConfig::default(),
        );
        assert_eq!(s.events, 5);
        assert!(!s.periodic, "{s:?}");
        let none = find_stalls(&seconds(|_| false, 20), &StallConfig::default());
        assert_eq!((none.events, none.periodic), (0, false));
        // One or two slow requests in a second are not a stall.
        let few = find_stalls(
            &[SecondCounts {
                requests: 10,
                slow: 2,
            }; 10],
            &StallConfig::default(),
        );
        assert_eq!(few.stall_seconds, 0);
    }
}
