//! BEFORE vs AFTER comparison of two runs: latency percentiles and mean with
//! bootstrap confidence intervals of the change, throughput, and error rate,
//! each with a verdict that needs both significance and a minimum effect.
//!
//! ```
//! use chokepoint_stats::bootstrap::RunLatency;
//! use chokepoint_stats::compare::{compare_latency, CompareConfig, LatencyMetric, Verdict};
//! let mut before = chokepoint_stats::new_histogram();
//! let mut after = chokepoint_stats::new_histogram();
//! for i in 0..5_000u64 {
//!     before.record(1_000 + i % 500).unwrap();
//!     after.record(1_500 + i % 750).unwrap(); // 50% slower everywhere
//! }
//! let cmp = compare_latency(
//!     &RunLatency::total_only(&before),
//!     &RunLatency::total_only(&after),
//!     &CompareConfig::default(),
//! )
//! .unwrap();
//! let p99 = cmp.metric(LatencyMetric::P99).unwrap();
//! assert_eq!(p99.verdict, Verdict::Regressed);
//! // 5,000 samples are too few for P99.9 (10,000 needed).
//! let p999 = cmp.metric(LatencyMetric::P99_9).unwrap();
//! assert!(matches!(p999.verdict, Verdict::InsufficientData { .. }));
//! ```

use crate::bootstrap::{
    bootstrap_with, interval_blocks_unavailable, replicate_quantile, BootstrapConfig,
    BootstrapMethod, RunBootstrap, RunLatency, Scheme,
};
use crate::significance::{
    mann_whitney_u, normal_quantile, poisson_rate_test, student_t_quantile, two_proportion_z_test,
    welch_t_test, MannWhitney, SampleMoments,
};

/// A latency statistic that `compare` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyMetric {
    /// 50th percentile.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P99_9,
    /// Arithmetic mean.
    Mean,
}

impl LatencyMetric {
    /// Every metric, in report order.
    pub const ALL: [LatencyMetric; 6] = [
        LatencyMetric::P50,
        LatencyMetric::P90,
        LatencyMetric::P95,
        LatencyMetric::P99,
        LatencyMetric::P99_9,
        LatencyMetric::Mean,
    ];

    /// The quantile in [0, 1] of a percentile metric; `None` for the mean.
    pub fn quantile(self) -> Option<f64> {
        match self {
            LatencyMetric::P50 => Some(0.50),
            LatencyMetric::P90 => Some(0.90),
            LatencyMetric::P95 => Some(0.95),
            LatencyMetric::P99 => Some(0.99),
            LatencyMetric::P99_9 => Some(0.999),
            LatencyMetric::Mean => None,
        }
    }

    /// The key used in `summary.json`: `p50`, `p90`, `p95`, `p99`, `p99_9`, `mean`.
    pub fn name(self) -> &'static str {
        match self {
            LatencyMetric::P50 => "p50",
            LatencyMetric::P90 => "p90",
            LatencyMetric::P95 => "p95",
            LatencyMetric::P99 => "p99",
            LatencyMetric::P99_9 => "p99_9",
            LatencyMetric::Mean => "mean",
        }
    }

    /// Parses a [`name`](Self::name) (also accepts `p99.9` and `p999`).
    pub fn from_name(name: &str) -> Option<LatencyMetric> {
        match name {
            "p50" => Some(LatencyMetric::P50),
            "p90" => Some(LatencyMetric::P90),
            "p95" => Some(LatencyMetric::P95),
            "p99" => Some(LatencyMetric::P99),
            "p99_9" | "p99.9" | "p999" => Some(LatencyMetric::P99_9),
            "mean" => Some(LatencyMetric::Mean),
            _ => None,
        }
    }

    /// Fewest samples a run needs for this metric to get a verdict: enough
    /// that at least `min_tail_samples` lie beyond the quantile (P99.9 with
    /// the default 10 needs 10,000; P99 1,000; P95 200; P90 100). The median
    /// and the mean need twice `min_tail_samples`.
    pub fn min_samples(self, min_tail_samples: u64) -> u64 {
        let beyond = 1.0 - self.quantile().unwrap_or(0.5);
        // The small tolerance absorbs 1 - 0.9 = 0.09999999999999998.
        ((min_tail_samples as f64 / beyond) - 1e-6).ceil().max(1.0) as u64
    }
}

/// Settings of a comparison. `Default` gives the documented defaults: 95%
/// confidence, 5% minimum effect, 10 samples beyond a quantile, 2,000 seeded
/// resamples.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// Confidence level of the intervals and the test, in (0, 1).
    pub confidence: f64,
    /// Smallest change, in percent, that can be called a regression or an
    /// improvement however significant it is.
    pub min_effect_pct: f64,
    /// Samples that must lie beyond a quantile for it to get a verdict.
    pub min_tail_samples: u64,
    /// Resampling settings.
    pub bootstrap: BootstrapConfig,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            confidence: 0.95,
            min_effect_pct: 5.0,
            min_tail_samples: 10,
            bootstrap: BootstrapConfig::default(),
        }
    }
}

impl CompareConfig {
    /// Checks every field; the comparison functions call this first.
    pub fn validate(&self) -> Result<(), CompareError> {
        let invalid = |field: &'static str, reason: String| {
            Err(CompareError::InvalidConfig { field, reason })
        };
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return invalid(
                "confidence",
                format!("must be strictly between 0 and 1, got {}", self.confidence),
            );
        }
        if !(self.min_effect_pct >= 0.0 && self.min_effect_pct.is_finite()) {
            return invalid(
                "min_effect_pct",
                format!(
                    "must be a finite percentage >= 0, got {}",
                    self.min_effect_pct
                ),
            );
        }
        if self.min_tail_samples == 0 {
            return invalid("min_tail_samples", "must be at least 1".to_string());
        }
        if self.bootstrap.resamples < 100 {
            return invalid(
                "resamples",
                format!("must be at least 100, got {}", self.bootstrap.resamples),
            );
        }
        Ok(())
    }
}

/// Errors of the comparison functions: only bad settings or impossible
/// counts; thin data is a [`Verdict::InsufficientData`], not an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// A [`CompareConfig`] field is out of range.
    #[error("invalid comparison setting `{field}`: {reason}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// Counts that cannot be, such as more errors than requests.
    #[error("invalid counts for {side}: {reason}")]
    InvalidCounts {
        /// `before` or `after`.
        side: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The outcome for one metric (or for a whole comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Significantly better by at least the minimum effect.
    Improved,
    /// Significantly worse by at least the minimum effect.
    Regressed,
    /// Not significant, or smaller than the minimum effect.
    NoSignificantChange,
    /// Too little data to decide; `reason` says what is missing.
    InsufficientData {
        /// Human-readable reason, e.g. "p99_9 needs at least 10000 samples ...".
        reason: String,
    },
}

impl Verdict {
    /// Combines per-metric verdicts: any regression makes a regression, else
    /// any improvement an improvement, else any decided metric no change;
    /// when nothing could be decided, insufficient data.
    pub fn combine<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Verdict {
        let (mut regressed, mut improved, mut decided) = (false, false, false);
        for v in verdicts {
            match v {
                Verdict::Regressed => regressed = true,
                Verdict::Improved => improved = true,
                Verdict::NoSignificantChange => decided = true,
                Verdict::InsufficientData { .. } => {}
            }
        }
        if regressed {
            Verdict::Regressed
        } else if improved {
            Verdict::Improved
        } else if decided {
            Verdict::NoSignificantChange
        } else {
            Verdict::InsufficientData {
                reason: "no metric had enough data for a verdict".to_string(),
            }
        }
    }

    /// Short stable name: `improved`, `regressed`, `no_significant_change`,
    /// `insufficient_data`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::NoSignificantChange => "no_significant_change",
            Verdict::InsufficientData { .. } => "insufficient_data",
        }
    }
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceInterval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Confidence level in (0, 1).
    pub confidence: f64,
}

impl ConfidenceInterval {
    /// True when zero lies outside the interval.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// One latency metric, BEFORE vs AFTER.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    /// The metric.
    pub metric: LatencyMetric,
    /// BEFORE value in microseconds.
    pub before_us: f64,
    /// AFTER value in microseconds.
    pub after_us: f64,
    /// Change in percent, (after / before - 1) · 100; `None` when BEFORE is 0.
    pub delta_pct: Option<f64>,
    /// Bootstrap percentile interval of `delta_pct`; `None` with insufficient data.
    pub ci_pct: Option<ConfidenceInterval>,
    /// Two-sided bootstrap p-value of "no change"; `None` with insufficient data.
    pub p_value: Option<f64>,
    /// Whether the interval excludes zero.
    pub significant: bool,
    /// Higher latency is worse: `Regressed` means slower.
    pub verdict: Verdict,
}

/// The latency part of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyComparison {
    /// One entry per metric, in [`LatencyMetric::ALL`] order.
    pub metrics: Vec<MetricComparison>,
    /// Samples in the BEFORE total histogram.
    pub samples_before: u64,
    /// Samples in the AFTER total histogram.
    pub samples_after: u64,
    /// Resampling scheme used for BEFORE (AFTER always uses the same kind).
    pub method_before: BootstrapMethod,
    /// Resampling scheme used for AFTER.
    pub method_after: BootstrapMethod,
    /// Resamples drawn per run.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Confidence level used.
    pub confidence: f64,
    /// Minimum effect used, in percent.
    pub min_effect_pct: f64,
    /// Mann-Whitney U over the buckets (informative only: it assumes
    /// independent samples); `None` when a run is empty.
    pub distribution_shift: Option<MannWhitney>,
    /// [`Verdict::combine`] of the metric verdicts.
    pub verdict: Verdict,
}

impl LatencyComparison {
    /// The entry of one metric.
    pub fn metric(&self, metric: LatencyMetric) -> Option<&MetricComparison> {
        self.metrics.iter().find(|m| m.metric == metric)
    }
}

/// Compares latency of two runs for every [`LatencyMetric`].
///
/// Both runs are bootstrapped by interval blocks when both bring at least
/// `min_blocks` non-empty intervals that add up to their totals, otherwise
/// both i.i.d. (the reason is in `method_*`). Each metric's change is
/// significant when the bootstrap interval of the change excludes zero; its
/// verdict is `Regressed`/`Improved` only when it is also at least
/// `min_effect_pct`, and `InsufficientData` when either run has fewer than
/// [`LatencyMetric::min_samples`] samples or BEFORE is 0 µs.
pub fn compare_latency(
    before: &RunLatency<'_>,
    after: &RunLatency<'_>,
    config: &CompareConfig,
) -> Result<LatencyComparison, CompareError> {
    config.validate()?;
    let metrics = LatencyMetric::ALL;
    let (scheme_before, scheme_after) = match (
        interval_blocks_unavailable(before, &config.bootstrap),
        interval_blocks_unavailable(after, &config.bootstrap),
    ) {
        (None, None) => (Scheme::Blocks, Scheme::Blocks),
        (reason_before, reason_after) => {
            let reason = match (reason_before, reason_after) {
                (Some(b), Some(a)) if a == b => format!("both runs: {b}"),
                (Some(b), Some(a)) => format!("BEFORE: {b}; AFTER: {a}"),
                (Some(b), None) => format!("BEFORE: {b} (AFTER is resampled the same way)"),
                (None, Some(a)) => format!("AFTER: {a} (BEFORE is resampled the same way)"),
                (None, None) => unreachable!("handled above"),
            };
            (Scheme::Iid(reason.clone()), Scheme::Iid(reason))
        }
    };
    let boot_before = bootstrap_with(before, &metrics, &config.bootstrap, 1, scheme_before);
    let boot_after = bootstrap_with(after, &metrics, &config.bootstrap, 2, scheme_after);
    let compared: Vec<MetricComparison> = metrics
        .iter()
        .enumerate()
        .map(|(i, &metric)| compare_metric(metric, i, &boot_before, &boot_after, config))
        .collect();
    let verdict = Verdict::combine(compared.iter().map(|m| &m.verdict));
    Ok(LatencyComparison {
        metrics: compared,
        samples_before: boot_before.samples,
        samples_after: boot_after.samples,
        method_before: boot_before.method,
        method_after: boot_after.method,
        resamples: config.bootstrap.resamples,
        seed: config.bootstrap.seed,
        confidence: config.confidence,
        min_effect_pct: config.min_effect_pct,
        distribution_shift: mann_whitney_u(before.total, after.total),
        verdict,
    })
}

fn compare_metric(
    metric: LatencyMetric,
    index: usize,
    before: &RunBootstrap,
    after: &RunBootstrap,
    config: &CompareConfig,
) -> MetricComparison {
    let b = &before.metrics[index];
    let a = &after.metrics[index];
    let delta_pct = (b.point > 0.0).then(|| (a.point / b.point - 1.0) * 100.0);
    let mut out = MetricComparison {
        metric,
        before_us: b.point,
        after_us: a.point,
        delta_pct,
        ci_pct: None,
        p_value: None,
        significant: false,
        verdict: Verdict::NoSignificantChange,
    };
    let needed = metric.min_samples(config.min_tail_samples);
    let short = [("BEFORE", before.samples), ("AFTER", after.samples)]
        .into_iter()
        .filter(|(_, n)| *n < needed)
        .map(|(side, n)| format!("{side} has {n}"))
        .collect::<Vec<_>>();
    if !short.is_empty() {
        let beyond = if metric.quantile().is_some() {
            format!(" ({} beyond the quantile)", config.min_tail_samples)
        } else {
            String::new()
        };
        out.verdict = Verdict::InsufficientData {
            reason: format!(
                "{} needs at least {needed} samples{beyond}; {}",
                metric.name(),
                short.join(", ")
            ),
        };
        return out;
    }
    let Some(delta) = delta_pct else {
        out.verdict = Verdict::InsufficientData {
            reason: format!(
                "BEFORE {} is 0 µs, so a relative change is undefined",
                metric.name()
            ),
        };
        return out;
    };
    let mut deltas: Vec<f64> = b
        .values
        .iter()
        .zip(&a.values)
        .filter(|(vb, _)| **vb > 0.0)
        .map(|(vb, va)| (va / vb - 1.0) * 100.0)
        .filter(|d| d.is_finite())
        .collect();
    if deltas.len() * 2 < b.values.len().max(1) {
        out.verdict = Verdict::InsufficientData {
            reason: format!("BEFORE {} is 0 µs in most resamples", metric.name()),
        };
        return out;
    }
    deltas.sort_unstable_by(f64::total_cmp);
    let alpha = 1.0 - config.confidence;
    let ci = ConfidenceInterval {
        low: replicate_quantile(&deltas, alpha / 2.0),
        high: replicate_quantile(&deltas, 1.0 - alpha / 2.0),
        confidence: config.confidence,
    };
    let below = deltas.partition_point(|d| *d < 0.0);
    let at_or_below = deltas.partition_point(|d| *d <= 0.0);
    let ties = (at_or_below - below) as f64;
    let n = deltas.len() as f64;
    let lower_tail = (below as f64 + 0.5 * ties) / n;
    let upper_tail = ((deltas.len() - at_or_below) as f64 + 0.5 * ties) / n;
    out.p_value = Some((2.0 * lower_tail.min(upper_tail)).min(1.0));
    out.significant = ci.excludes_zero();
    out.ci_pct = Some(ci);
    out.verdict = decide(
        out.significant,
        delta,
        config.min_effect_pct,
        Direction::HigherIsWorse,
    );
    out
}

/// Which way is bad for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    HigherIsWorse,
    LowerIsWorse,
}

fn decide(significant: bool, delta_pct: f64, min_effect_pct: f64, direction: Direction) -> Verdict {
    if !significant || delta_pct.abs() < min_effect_pct || delta_pct == 0.0 {
        return Verdict::NoSignificantChange;
    }
    match (delta_pct > 0.0, direction) {
        (true, Direction::HigherIsWorse) | (false, Direction::LowerIsWorse) => Verdict::Regressed,
        _ => Verdict::Improved,
    }
}

/// The throughput of one run: completed requests over the measured window,
/// and optionally the rate of each full interval (requests per second).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThroughputSample {
    /// Completed requests (ok and errors) in the measured window.
    pub requests: u64,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// Requests per second of each full interval, oldest first; may be empty.
    pub interval_rps: Vec<f64>,
}

/// How a throughput change was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateTest {
    /// Welch's t on the log ratio of mean per-interval rates (interval-to-
    /// interval variation is the noise), used when both runs have at least 3
    /// intervals.
    IntervalWelch {
        /// Intervals of BEFORE.
        intervals_before: usize,
        /// Intervals of AFTER.
        intervals_after: usize,
    },
    /// Poisson counts on the log rate ratio (no interval data).
    PoissonCounts,
}

/// Throughput, BEFORE vs AFTER. Higher is better.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputComparison {
    /// BEFORE requests per second.
    pub before_rps: f64,
    /// AFTER requests per second.
    pub after_rps: f64,
    /// Change in percent; `None` when BEFORE is 0.
    pub delta_pct: Option<f64>,
    /// Interval of `delta_pct`; `None` when untestable.
    pub ci_pct: Option<ConfidenceInterval>,
    /// Two-sided p-value; `None` when untestable.
    pub p_value: Option<f64>,
    /// p-value below 1 - confidence.
    pub significant: bool,
    /// The test used.
    pub test: RateTest,
    /// `Regressed` means lower throughput.
    pub verdict: Verdict,
}

/// Compares throughput: rates are requests / duration; the test is Welch's t
/// on per-interval rates when both runs have at least 3 of them, otherwise a
/// Poisson test on the counts (which ignores interval-to-interval noise and
/// so is optimistic).
pub fn compare_throughput(
    before: &ThroughputSample,
    after: &ThroughputSample,
    config: &CompareConfig,
) -> Result<ThroughputComparison, CompareError> {
    config.validate()?;
    let rate = |s: &ThroughputSample| {
        if s.duration_s > 0.0 && s.duration_s.is_finite() {
            s.requests as f64 / s.duration_s
        } else {
            0.0
        }
    };
    let (before_rps, after_rps) = (rate(before), rate(after));
    let delta_pct = (before_rps > 0.0).then(|| (after_rps / before_rps - 1.0) * 100.0);
    let clean = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .collect::<Vec<f64>>()
    };
    let (ib, ia) = (clean(&before.interval_rps), clean(&after.interval_rps));
    let use_intervals = ib.len() >= 3 && ia.len() >= 3;
    let test = if use_intervals {
        RateTest::IntervalWelch {
            intervals_before: ib.len(),
            intervals_after: ia.len(),
        }
    } else {
        RateTest::PoissonCounts
    };
    let mut out = ThroughputComparison {
        before_rps,
        after_rps,
        delta_pct,
        ci_pct: None,
        p_value: None,
        significant: false,
        test,
        verdict: Verdict::NoSignificantChange,
    };
    let unusable: Vec<String> = [("BEFORE", before, before_rps), ("AFTER", after, after_rps)]
        .iter()
        .filter(|(_, _, r)| *r <= 0.0)
        .map(|(side, s, _)| format!("{side} has {} requests in {} s", s.requests, s.duration_s))
        .collect();
    if !unusable.is_empty() {
        out.verdict = Verdict::InsufficientData {
            reason: format!("no throughput to compare: {}", unusable.join(", ")),
        };
        return Ok(out);
    }
    let alpha = 1.0 - config.confidence;
    // Both tests work on the log of the rate ratio, so the interval of the
    // percentage change is exp(log ratio ± q · se) - 1.
    let (log_ratio, se, p_value, q) = if use_intervals {
        let (mb, ma) = (SampleMoments::of(&ib), SampleMoments::of(&ia));
        if mb.mean <= 0.0 || ma.mean <= 0.0 {
            out.verdict = Verdict::InsufficientData {
                reason: "mean per-interval throughput is 0 in a run".to_string(),
            };
            return Ok(out);
        }
        // Delta method: var(log m) ≈ s² / (n m²); Welch on the scaled samples.
        let scaled_b = SampleMoments {
            n: mb.n,
            mean: mb.mean.ln(),
            stddev: mb.stddev / mb.mean,
        };
        let scaled_a = SampleMoments {
            n: ma.n,
            mean: ma.mean.ln(),
            stddev: ma.stddev / ma.mean,
        };
        let t = welch_t_test(scaled_b, scaled_a);
        let df = t.degrees_of_freedom.unwrap_or(1.0).max(1.0);
        let se = ((scaled_b.stddev.powi(2) / mb.n as f64)
            + (scaled_a.stddev.powi(2) / ma.n as f64))
            .sqrt();
        (
            (ma.mean / mb.mean).ln(),
            se,
            t.p_value,
            student_t_quantile(1.0 - alpha / 2.0, df),
        )
    } else {
        let t = poisson_rate_test(
            before.requests,
            before.duration_s,
            after.requests,
            after.duration_s,
        );
        let se = (1.0 / before.requests as f64 + 1.0 / after.requests as f64).sqrt();
        (
            (after_rps / before_rps).ln(),
            se,
            t.p_value,
            normal_quantile(1.0 - alpha / 2.0),
        )
    };
    let ci = ConfidenceInterval {
        low: ((log_ratio - q * se).exp() - 1.0) * 100.0,
        high: ((log_ratio + q * se).exp() - 1.0) * 100.0,
        confidence: config.confidence,
    };
    out.ci_pct = Some(ci);
    out.p_value = Some(p_value);
    out.significant = p_value < alpha;
    let delta = delta_pct.unwrap_or(0.0);
    out.verdict = decide(
        out.significant,
        delta,
        config.min_effect_pct,
        Direction::LowerIsWorse,
    );
    Ok(out)
}

/// Requests and failed requests of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorCounts {
    /// Completed requests, ok and errors.
    pub requests: u64,
    /// Requests that failed (any error kind).
    pub errors: u64,
}

/// Error rate, BEFORE vs AFTER. Lower is better.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRateComparison {
    /// BEFORE errors / requests, in [0, 1].
    pub before_rate: f64,
    /// AFTER errors / requests, in [0, 1].
    pub after_rate: f64,
    /// AFTER - BEFORE in percentage points.
    pub delta_pp: f64,
    /// Newcombe hybrid-score interval of `delta_pp` (good near 0 errors);
    /// `None` when a run has no requests.
    pub ci_pp: Option<ConfidenceInterval>,
    /// Relative change in percent; `None` when BEFORE has no errors.
    pub relative_change_pct: Option<f64>,
    /// Two-sided p-value of the pooled two-proportion z-test.
    pub p_value: f64,
    /// p-value below 1 - confidence.
    pub significant: bool,
    /// `Regressed` means more errors.
    pub verdict: Verdict,
}

/// Compares error rates with the two-proportion z-test. A significant change
/// is a regression or an improvement when BEFORE had no errors or the rate
/// moved by at least `min_effect_pct` of its BEFORE value.
pub fn compare_error_rate(
    before: ErrorCounts,
    after: ErrorCounts,
    config: &CompareConfig,
) -> Result<ErrorRateComparison, CompareError> {
    config.validate()?;
    for (side, c) in [("before", before), ("after", after)] {
        if c.errors > c.requests {
            return Err(CompareError::InvalidCounts {
                side,
                reason: format!("{} errors out of {} requests", c.errors, c.requests),
            });
        }
    }
    let rate = |c: ErrorCounts| {
        if c.requests == 0 {
            0.0
        } else {
            c.errors as f64 / c.requests as f64
        }
    };
    let (before_rate, after_rate) = (rate(before), rate(after));
    let test = two_proportion_z_test(before.errors, before.requests, after.errors, after.requests);
    let relative_change_pct = (before.errors > 0).then(|| (after_rate / before_rate - 1.0) * 100.0);
    let mut out = ErrorRateComparison {
        before_rate,
        after_rate,
        delta_pp: (after_rate - before_rate) * 100.0,
        ci_pp: None,
        relative_change_pct,
        p_value: test.p_value,
        significant: false,
        verdict: Verdict::NoSignificantChange,
    };
    if before.requests == 0 || after.requests == 0 {
        out.verdict = Verdict::InsufficientData {
            reason: "a run has no completed requests".to_string(),
        };
        return Ok(out);
    }
    let alpha = 1.0 - config.confidence;
    let z = normal_quantile(1.0 - alpha / 2.0);
    let (l1, u1) = wilson_interval(before.errors, before.requests, z);
    let (l2, u2) = wilson_interval(after.errors, after.requests, z);
    let d = after_rate - before_rate;
    out.ci_pp = Some(ConfidenceInterval {
        low: (d - ((after_rate - l2).powi(2) + (u1 - before_rate).powi(2)).sqrt()) * 100.0,
        high: (d + ((u2 - after_rate).powi(2) + (before_rate - l1).powi(2)).sqrt()) * 100.0,
        confidence: config.confidence,
    });
    out.significant = test.p_value < alpha;
    // With no BEFORE errors any significant increase counts as material.
    let effect = relative_change_pct.unwrap_or(if d != 0.0 { f64::INFINITY } else { 0.0 });
    let effect = if effect.is_infinite() && d < 0.0 {
        -effect
    } else {
        effect
    };
    out.verdict = decide(
        out.significant,
        effect,
        config.min_effect_pct,
        Direction::HigherIsWorse,
    );
    Ok(out)
}

/// Wilson score interval of a proportion x / n.
fn wilson_interval(x: u64, n: u64, z: f64) -> (f64, f64) {
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_samples_rule() {
        let n = |m: LatencyMetric| m.min_samples(10);
        assert_eq!(
            LatencyMetric::ALL.map(n),
            [20, 100, 200, 1_000, 10_000, 20],
            "p50 p90 p95 p99 p99.9 mean"
        );
    }

    #[test]
    fn verdict_combination() {
        use Verdict::*;
        let insufficient = InsufficientData {
            reason: String::new(),
        };
        assert_eq!(
            Verdict::combine(&[NoSignificantChange, Regressed, Improved]),
            Regressed
        );
        assert_eq!(
            Verdict::combine(&[NoSignificantChange, Improved, insufficient.clone()]),
            Improved
        );
        assert_eq!(
            Verdict::combine(&[insufficient.clone(), NoSignificantChange]),
            NoSignificantChange
        );
        assert!(matches!(
            Verdict::combine(&[insufficient]),
            InsufficientData { .. }
        ));
        assert!(matches!(Verdict::combine(&[]), InsufficientData { .. }));
    }

    #[test]
    fn metric_names_round_trip() {
        for m in LatencyMetric::ALL {
            assert_eq!(LatencyMetric::from_name(m.name()), Some(m));
        }
        assert_eq!(
            LatencyMetric::from_name("p99.9"),
            Some(LatencyMetric::P99_9)
        );
        assert_eq!(LatencyMetric::from_name("p42"), None);
    }
}
