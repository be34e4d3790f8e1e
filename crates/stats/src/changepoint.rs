//! Change-point detection over a history of runs (for example P99 per run,
//! oldest first): E-divisive means with a Student's t significance test and a
//! minimum segment length, following Apache Otava (formerly Hunter; Fleming
//! et al., "Hunter: Using Change Point Detection to Hunt for Performance
//! Regressions", ICPE 2023) on top of Matteson and James's E-divisive.
//!
//! 1. **Split.** Sliding windows of `window_len` points (step half a window).
//!    In each window, repeatedly take the segment split (τ, κ) that maximises
//!    the energy divergence Q̂ between `x[start..τ]` and `x[τ..κ]`, and keep τ
//!    while Student's t-test between the two sides of τ in its segment gives
//!    p ≤ 10 × `max_p_value` (a relaxed first pass: "weak" change points).
//! 2. **Merge.** Repeatedly drop the weakest change point, re-testing its
//!    neighbours against their new, longer segments, until every change point
//!    has p ≤ `max_p_value`, a magnitude of at least `min_magnitude_pct` and
//!    segments of at least `min_segment_len` runs on both sides.
//!
//! ```
//! use chokepoint_stats::changepoint::{detect_change_points, latest_regression, ChangePointConfig};
//! let mut p99 = vec![100.0, 102.0, 99.0, 101.0, 100.0, 98.0, 101.0, 100.0];
//! p99.extend([130.0, 131.0, 129.0, 132.0]); // a regression landed at index 8
//! let config = ChangePointConfig::default();
//! let points = detect_change_points(&p99, &config).unwrap();
//! assert_eq!(points.len(), 1);
//! assert_eq!(points[0].index, 8);
//! assert!(latest_regression(&points, &config).is_some());
//! ```

use crate::significance::{student_t_test, SampleMoments};

/// Which direction of change is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Larger values are worse (latency, error rate).
    HigherIsWorse,
    /// Smaller values are worse (throughput).
    LowerIsWorse,
}

/// Settings of change-point detection. `Default`: p ≤ 0.001, segments of at
/// least 3 runs, changes of at least 5%, windows of 50 runs, higher is worse.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePointConfig {
    /// Largest p-value of the t-test for a change point to be kept.
    pub max_p_value: f64,
    /// Fewest runs on each side of a change point (>= 2). A change at the
    /// end of the history is reported once this many runs show it, so a
    /// single slow run never alarms.
    pub min_segment_len: usize,
    /// Smallest relative change in percent: the larger of |after/before - 1|
    /// and |before/after - 1|, as Otava measures magnitude.
    pub min_magnitude_pct: f64,
    /// Length of the split step's sliding windows (>= 2 × min_segment_len).
    pub window_len: usize,
    /// Which direction [`latest_regression`] treats as a regression.
    pub direction: Direction,
}

impl Default for ChangePointConfig {
    fn default() -> Self {
        ChangePointConfig {
            max_p_value: 0.001,
            min_segment_len: 3,
            min_magnitude_pct: 5.0,
            window_len: 50,
            direction: Direction::HigherIsWorse,
        }
    }
}

impl ChangePointConfig {
    /// Checks every field; [`detect_change_points`] calls this first.
    pub fn validate(&self) -> Result<(), ChangePointError> {
        let invalid = |field: &'static str, reason: String| {
            Err(ChangePointError::InvalidConfig { field, reason })
        };
        if !(self.max_p_value > 0.0 && self.max_p_value < 1.0) {
            return invalid(
                "max_p_value",
                format!("must be strictly between 0 and 1, got {}", self.max_p_value),
            );
        }
        if self.min_segment_len < 2 {
            return invalid(
                "min_segment_len",
                format!("must be at least 2, got {}", self.min_segment_len),
            );
        }
        if !(self.min_magnitude_pct >= 0.0 && self.min_magnitude_pct.is_finite()) {
            return invalid(
                "min_magnitude_pct",
                format!(
                    "must be a finite percentage >= 0, got {}",
                    self.min_magnitude_pct
                ),
            );
        }
        if self.window_len < 2 * self.min_segment_len {
            return invalid(
                "window_len",
                format!(
                    "must be at least 2 × min_segment_len = {}, got {}",
                    2 * self.min_segment_len,
                    self.window_len
                ),
            );
        }
        Ok(())
    }
}

/// Errors of change-point detection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangePointError {
    /// A series value is NaN or infinite.
    #[error("series value at index {index} is not a finite number ({value})")]
    NonFinite {
        /// Position in the series.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A [`ChangePointConfig`] field is out of range.
    #[error("invalid change-point setting `{field}`: {reason}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
}

/// A change point: the series behaves differently from `index` on.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePoint {
    /// First index of the new segment.
    pub index: usize,
    /// Mean of the segment before (from the previous change point).
    pub mean_before: f64,
    /// Mean of the segment after (up to the next change point).
    pub mean_after: f64,
    /// Sample standard deviation of the segment before.
    pub stddev_before: f64,
    /// Sample standard deviation of the segment after.
    pub stddev_after: f64,
    /// Runs in the segment before.
    pub len_before: usize,
    /// Runs in the segment after.
    pub len_after: usize,
    /// (mean_after / mean_before - 1) · 100; `None` when mean_before is 0.
    pub change_pct: Option<f64>,
    /// Student's t statistic of after vs before.
    pub t_statistic: f64,
    /// Two-sided p-value of the t-test.
    pub p_value: f64,
}

impl ChangePoint {
    /// Otava's magnitude in percent: max(|after/before - 1|, |before/after - 1|),
    /// with a ratio over a zero mean counted as 0.
    pub fn magnitude_pct(&self) -> f64 {
        let rel = |num: f64, den: f64| {
            if den == 0.0 {
                0.0
            } else {
                (num / den - 1.0).abs()
            }
        };
        rel(self.mean_after, self.mean_before).max(rel(self.mean_before, self.mean_after)) * 100.0
    }
}

/// Finds the change points of `series` (oldest first), sorted by index.
/// Series shorter than 2 × `min_segment_len` have none.
pub fn detect_change_points(
    series: &[f64],
    config: &ChangePointConfig,
) -> Result<Vec<ChangePoint>, ChangePointError> {
    config.validate()?;
    if let Some((index, &value)) = series.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ChangePointError::NonFinite { index, value });
    }
    let m = config.min_segment_len;
    if series.len() < 2 * m {
        return Ok(Vec::new());
    }
    let p = config.max_p_value;
    let first_pass_p = if p < 0.05 {
        p * 10.0
    } else if p < 0.5 {
        p * 2.0
    } else {
        p
    };
    let weak = split(series, config.window_len, m, first_pass_p);
    Ok(merge(series, weak, config))
}

/// The latest segment's change point when it is a regression in
/// `config.direction` (the detector already made it significant and large
/// enough); `None` otherwise.
pub fn latest_regression<'a>(
    change_points: &'a [ChangePoint],
    config: &ChangePointConfig,
) -> Option<&'a ChangePoint> {
    let last = change_points.iter().max_by_key(|c| c.index)?;
    let worse = match config.direction {
        Direction::HigherIsWorse => last.mean_after > last.mean_before,
        Direction::LowerIsWorse => last.mean_after < last.mean_before,
    };
    (worse
        && last.p_value <= config.max_p_value
        && last.magnitude_pct() >= config.min_magnitude_pct)
        .then_some(last)
}

/// Split step: weak change points from E-divisive in sliding windows.
fn split(x: &[f64], window_len: usize, m: usize, p_threshold: f64) -> Vec<usize> {
    let n = x.len();
    let step = (window_len / 2).max(1);
    let mut found: Vec<usize> = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + window_len).min(n);
        let new_points = e_divisive(x, start, end, m, p_threshold);
        let last_new = new_points.last().copied().unwrap_or(0);
        for cp in new_points {
            if !found.contains(&cp) {
                found.push(cp);
            }
        }
        if end == n {
            break;
        }
        start = last_new.max(start + step);
    }
    found.sort_unstable();
    found
}

/// Hierarchical E-divisive over `x[start..end]`: returns absolute indices.
fn e_divisive(x: &[f64], start: usize, end: usize, m: usize, p_threshold: f64) -> Vec<usize> {
    let mut cps: Vec<usize> = Vec::new();
    loop {
        let mut bounds = vec![start];
        bounds.extend(cps.iter().copied());
        bounds.push(end);
        let best = bounds
            .windows(2)
            .filter_map(|w| {
                best_split(&x[w[0]..w[1]], m).map(|(tau, q)| (w[0], w[1], w[0] + tau, q))
            })
            .max_by(|a, b| a.3.total_cmp(&b.3));
        let Some((seg_start, seg_end, tau, _)) = best else {
            break;
        };
        let test = student_t_test(
            SampleMoments::of(&x[seg_start..tau]),
            SampleMoments::of(&x[tau..seg_end]),
        );
        if test.p_value > p_threshold {
            break;
        }
        cps.push(tau);
        cps.sort_unstable();
    }
    cps
}

/// The split τ of `z` maximising Q̂(z[..τ], z[τ..κ]) over κ, with at least
/// `m` (and 2) points on each side, by O(n²) running sums of |z_i - z_j|.
fn best_split(z: &[f64], m: usize) -> Option<(usize, f64)> {
    let len = z.len();
    let min_side = m.max(2);
    if len < 2 * min_side {
        return None;
    }
    // column[k] = Σ_{i<k} |z_i - z_k|
    let column: Vec<f64> = (0..len)
        .map(|k| z[..k].iter().map(|zi| (zi - z[k]).abs()).sum())
        .collect();
    // left[k] = Σ_{i<τ} |z_i - z_k| for the current τ
    let mut left = vec![0.0f64; len];
    let mut within_left = 0.0f64; // Σ_{i<k<τ} |z_i - z_k|
    let mut best: Option<(usize, f64)> = None;
    for tau in 1..len {
        // advance τ-1 -> τ
        within_left += left[tau - 1];
        let zt = z[tau - 1];
        for (k, l) in left.iter_mut().enumerate().skip(tau) {
            *l += (zt - z[k]).abs();
        }
        let n_left = tau;
        if n_left < min_side || len - tau < min_side {
            continue;
        }
        let nl = n_left as f64;
        let (mut between, mut within_right) = (0.0f64, 0.0f64);
        for kappa in tau + 1..=len {
            let k = kappa - 1;
            between += left[k];
            within_right += column[k] - left[k];
            let n_right = kappa - tau;
            if n_right < min_side {
                continue;
            }
            let nr = n_right as f64;
            let q = 2.0 / (nl + nr) * between
                - 2.0 * nr / ((nl + nr) * (nl - 1.0)) * within_left
                - 2.0 * nl / ((nl + nr) * (nr - 1.0)) * within_right;
            let better = match best {
                None => true,
                Some((_, best_q)) => q > best_q,
            };
            if better {
                best = Some((tau, q));
            }
        }
    }
    best
}

/// Merge step: drop weak change points until all are significant, large
/// enough and separated by at least `min_segment_len` runs.
fn merge(x: &[f64], mut cps: Vec<usize>, config: &ChangePointConfig) -> Vec<ChangePoint> {
    loop {
        let stats = describe(x, &cps);
        if stats.is_empty() {
            return stats;
        }
        let m = config.min_segment_len;
        // A segment shorter than m can only come from overlapping windows:
        // drop the weaker of the change points bounding it first.
        let short = stats
            .iter()
            .enumerate()
            .filter(|(_, c)| c.len_before < m || c.len_after < m)
            .max_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value));
        let weakest = match short {
            Some((i, _)) => i,
            None => {
                let (i, worst_p) = stats
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value))
                    .expect("stats is not empty");
                if worst_p.p_value > config.max_p_value {
                    i
                } else {
                    let (i, smallest) = stats
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.magnitude_pct().total_cmp(&b.1.magnitude_pct()))
                        .expect("stats is not empty");
                    if smallest.magnitude_pct() >= config.min_magnitude_pct {
                        return stats;
                    }
                    i
                }
            }
        };
        cps.remove(weakest);
    }
}

/// Statistics of each change point against its neighbouring segments.
fn describe(x: &[f64], cps: &[usize]) -> Vec<ChangePoint> {
    (0..cps.len())
        .map(|i| {
            let lo = if i == 0 { 0 } else { cps[i - 1] };
            let hi = if i + 1 == cps.len() {
                x.len()
            } else {
                cps[i + 1]
            };
            let index = cps[i];
            let before = SampleMoments::of(&x[lo..index]);
            let after = SampleMoments::of(&x[index..hi]);
            let test = student_t_test(before, after);
            ChangePoint {
                index,
                mean_before: before.mean,
                mean_after: after.mean,
                stddev_before: before.stddev,
                stddev_after: after.stddev,
                len_before: before.n,
                len_after: after.n,
                change_pct: (before.mean != 0.0).then(|| (after.mean / before.mean - 1.0) * 100.0),
                t_statistic: test.statistic,
                p_value: test.p_value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force Q̂ from the definition, to check the running sums.
    fn q_hat(x: &[f64], y: &[f64]) -> f64 {
        let (n, m) = (x.len() as f64, y.len() as f64);
        let between: f64 = x
            .iter()
            .flat_map(|a| y.iter().map(move |b| (a - b).abs()))
            .sum();
        let within = |s: &[f64]| -> f64 {
            let mut t = 0.0;
            for i in 0..s.len() {
                for j in i + 1..s.len() {
                    t += (s[i] - s[j]).abs();
                }
            }
            t
        };
        2.0 / (n + m) * between
            - 2.0 * m / ((n + m) * (n - 1.0)) * within(x)
            - 2.0 * n / ((n + m) * (m - 1.0)) * within(y)
    }

    #[test]
    fn running_sums_match_the_definition() {
        let z = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let (tau, q) = best_split(&z, 2).unwrap();
        let mut best = (0, f64::NEG_INFINITY);
        for t in 2..=z.len() - 2 {
            for k in t + 2..=z.len() {
                let v = q_hat(&z[..t], &z[t..k]);
                if v > best.1 {
                    best = (t, v);
                }
            }
        }
        assert_eq!(tau, best.0);
        assert!((q - best.1).abs() < 1e-9, "{q} vs {}", best.1);
    }
}
