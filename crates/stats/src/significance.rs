//! Significance tests and the special functions behind them: normal and
//! Student's t distributions, two-proportion z-test, Welch's t-test, a Poisson
//! rate test and the Mann-Whitney U test computed over histogram buckets.
//!
//! Everything here is implemented from the textbook formulas (Numerical Recipes
//! style incomplete gamma / beta functions, Lanczos log-gamma) so the crate needs
//! no maths dependency; accuracy is about 1e-12 relative in the ranges we use,
//! which the unit tests check against published values.

use crate::Histogram;

/// Relative accuracy the series and continued fractions iterate to.
const EPS: f64 = 1e-15;
/// Smallest magnitude kept in the modified Lentz continued fraction.
const FPMIN: f64 = 1e-300;
/// Iteration cap of the series and continued fractions; large parameters
/// (degrees of freedom in the millions) converge in O(sqrt(a)) steps.
const MAX_ITER: usize = 200_000;

/// Natural logarithm of the gamma function for `x > 0` (Lanczos, g = 7, n = 9).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized lower incomplete gamma function P(a, x).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        gamma_series(a, x)
    } else {
        1.0 - gamma_continued_fraction(a, x)
    }
}

/// Regularized upper incomplete gamma function Q(a, x) = 1 - P(a, x), accurate
/// in the far tail.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_series(a, x)
    } else {
        gamma_continued_fraction(a, x)
    }
}

fn gamma_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut sum = 1.0 / a;
    let mut del = sum;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if del.abs() < sum.abs() * EPS {
            break;
        }
    }
    sum * (-x + a * x.ln() - ln_gamma(a)).exp()
}

fn gamma_continued_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / FPMIN;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = b + an / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Regularized incomplete beta function I_x(a, b).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if a.is_nan() || b.is_nan() || x.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_bt = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let bt = ln_bt.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - bt * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < FPMIN {
        d = FPMIN;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < FPMIN {
            d = FPMIN;
        }
        c = 1.0 + aa / c;
        if c.abs() < FPMIN {
            c = FPMIN;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Complementary error function.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x >= 0.0 {
        gamma_q(0.5, x * x)
    } else {
        1.0 + gamma_p(0.5, x * x)
    }
}

/// Standard normal cumulative distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Two-sided p-value of a standard normal statistic: P(|Z| >= |z|).
pub fn normal_two_sided_p(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// Standard normal quantile Φ⁻¹(p) for `0 < p < 1` (bisection refined to
/// double precision; NaN outside the open interval).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    invert_monotone(normal_cdf, p, -40.0, 40.0)
}

/// Student's t cumulative distribution function with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Two-sided p-value of a Student's t statistic: P(|T| >= |t|).
pub fn student_t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    beta_inc(df / 2.0, 0.5, df / (df + t * t)).min(1.0)
}

/// Student's t quantile for `0 < p < 1`.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    // The t distribution with df >= 1 has its 1e-12 quantiles inside ±1e7.
    invert_monotone(|t| student_t_cdf(t, df), p, -1e7, 1e7)
}

/// Finds x in [lo, hi] with f(x) = target for an increasing f, by bisection.
fn invert_monotone(f: impl Fn(f64) -> f64, target: f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * mid.abs().max(1e-300) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The result of a two-sample test: a statistic, its p-value and the degrees
/// of freedom when the statistic follows Student's t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// The test statistic (t or z).
    pub statistic: f64,
    /// Degrees of freedom of a t statistic; `None` for a z statistic.
    pub degrees_of_freedom: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Mean, sample standard deviation and size of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleMoments {
    /// Number of observations.
    pub n: usize,
    /// Arithmetic mean (0 for an empty sample).
    pub mean: f64,
    /// Sample standard deviation with n - 1 in the denominator (0 when n < 2).
    pub stddev: f64,
}

impl SampleMoments {
    /// Computes the moments of `values` (two-pass, so large offsets do not
    /// cancel).
    pub fn of(values: &[f64]) -> SampleMoments {
        let n = values.len();
        if n == 0 {
            return SampleMoments {
                n,
                mean: 0.0,
                stddev: 0.0,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let stddev = if n < 2 {
            0.0
        } else {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        };
        SampleMoments { n, mean, stddev }
    }
}

/// Student's two-sample t-test with pooled variance (equal variances assumed),
/// the test Apache Otava applies to change-point candidates. Returns p = 1 when
/// there are no degrees of freedom, and p = 0 (or 1) when both samples have no
/// variance and their means differ (or not).
pub fn student_t_test(left: SampleMoments, right: SampleMoments) -> TestResult {
    let (n1, n2) = (left.n as f64, right.n as f64);
    let df = n1 + n2 - 2.0;
    if left.n == 0 || right.n == 0 || df <= 0.0 {
        return TestResult {
            statistic: 0.0,
            degrees_of_freedom: None,
            p_value: 1.0,
        };
    }
    let pooled_var = ((n1 - 1.0) * left.stddev.powi(2) + (n2 - 1.0) * right.stddev.powi(2)) / df;
    let se = (pooled_var * (1.0 / n1 + 1.0 / n2)).sqrt();
    let diff = right.mean - left.mean;
    t_result(diff, se, df)
}

/// Welch's two-sample t-test (unequal variances) with Welch-Satterthwaite
/// degrees of freedom.
pub fn welch_t_test(left: SampleMoments, right: SampleMoments) -> TestResult {
    if left.n < 2 || right.n < 2 {
        return TestResult {
            statistic: 0.0,
            degrees_of_freedom: None,
            p_value: 1.0,
        };
    }
    let (n1, n2) = (left.n as f64, right.n as f64);
    let v1 = left.stddev.powi(2) / n1;
    let v2 = right.stddev.powi(2) / n2;
    let se = (v1 + v2).sqrt();
    let df = if v1 + v2 > 0.0 {
        (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0))
    } else {
        n1 + n2 - 2.0
    };
    t_result(right.mean - left.mean, se, df)
}

fn t_result(diff: f64, se: f64, df: f64) -> TestResult {
    if !(diff.is_finite() && se.is_finite()) {
        return TestResult {
            statistic: 0.0,
            degrees_of_freedom: Some(df),
            p_value: 1.0,
        };
    }
    if se <= 0.0 {
        let p_value = if diff == 0.0 { 1.0 } else { 0.0 };
        let statistic = if diff == 0.0 {
            0.0
        } else {
            f64::INFINITY.copysign(diff)
        };
        return TestResult {
            statistic,
            degrees_of_freedom: Some(df),
            p_value,
        };
    }
    let t = diff / se;
    TestResult {
        statistic: t,
        degrees_of_freedom: Some(df),
        p_value: student_t_two_sided_p(t, df),
    }
}

/// Two-proportion z-test of `x1/n1` against `x2/n2` with the pooled proportion
/// under the null hypothesis. The statistic is positive when the second
/// proportion is larger. p = 1 when either sample is empty or both proportions
/// are 0 or both 1.
pub fn two_proportion_z_test(x1: u64, n1: u64, x2: u64, n2: u64) -> TestResult {
    let none = TestResult {
        statistic: 0.0,
        degrees_of_freedom: None,
        p_value: 1.0,
    };
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return none;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let pooled = (x1 + x2) / (n1 + n2);
    let var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if var <= 0.0 {
        return none;
    }
    let z = (x2 / n2 - x1 / n1) / var.sqrt();
    TestResult {
        statistic: z,
        degrees_of_freedom: None,
        p_value: normal_two_sided_p(z),
    }
}

/// Test of two Poisson rates `count1/exposure1` against `count2/exposure2` on
/// the log rate ratio, whose standard error is sqrt(1/count1 + 1/count2). The
/// statistic is positive when the second rate is larger. p = 1 when a count or
/// an exposure is zero.
pub fn poisson_rate_test(count1: u64, exposure1: f64, count2: u64, exposure2: f64) -> TestResult {
    let none = TestResult {
        statistic: 0.0,
        degrees_of_freedom: None,
        p_value: 1.0,
    };
    let usable = |exposure: f64| exposure > 0.0 && exposure.is_finite();
    if count1 == 0 || count2 == 0 || !usable(exposure1) || !usable(exposure2) {
        return none;
    }
    let log_ratio = ((count2 as f64 / exposure2) / (count1 as f64 / exposure1)).ln();
    let se = (1.0 / count1 as f64 + 1.0 / count2 as f64).sqrt();
    let z = log_ratio / se;
    TestResult {
        statistic: z,
        degrees_of_freedom: None,
        p_value: normal_two_sided_p(z),
    }
}

/// The Mann-Whitney U test of two latency histograms, computed over buckets:
/// all samples in one bucket are ties. The question it answers: is a random
/// AFTER sample slower than a random BEFORE sample more (or less) often than
/// not?
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the AFTER sample: pairs (before, after) with after >
    /// before, plus half the tied pairs.
    pub u_after: f64,
    /// Probability that a random AFTER sample is slower than a random BEFORE
    /// sample, ties counted half (the common-language effect size; 0.5 means
    /// no shift).
    pub prob_after_slower: f64,
    /// Normal-approximation z score, tie-corrected, with continuity correction.
    pub z: f64,
    /// Two-sided p-value. It assumes independent samples, which requests of a
    /// load test are not: with a million samples it flags shifts far smaller
    /// than the run-to-run noise, so it informs and never decides a verdict.
    pub p_value: f64,
}

/// Runs the Mann-Whitney U test over the recorded buckets of two histograms.
/// Buckets are matched by their highest equivalent value, so histograms with
/// the same precision share bucket boundaries exactly. `None` when either
/// histogram is empty.
pub fn mann_whitney_u(before: &Histogram, after: &Histogram) -> Option<MannWhitney> {
    let n1 = before.len();
    let n2 = after.len();
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let b: Vec<(u64, u64)> = before
        .iter_recorded()
        .map(|v| {
            (
                before.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect();
    let a: Vec<(u64, u64)> = after
        .iter_recorded()
        .map(|v| {
            (
                after.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect();
    let (mut i, mut j) = (0usize, 0usize);
    let mut before_below = 0u64;
    let mut u_after = 0.0f64;
    let mut tie_term = 0.0f64;
    while i < b.len() || j < a.len() {
        let vb = b.get(i).map(|x| x.0).unwrap_or(u64::MAX);
        let va = a.get(j).map(|x| x.0).unwrap_or(u64::MAX);
        let value = vb.min(va);
        let cb = if vb == value { b[i].1 } else { 0 };
        let ca = if va == value { a[j].1 } else { 0 };
        u_after += ca as f64 * (before_below as f64 + 0.5 * cb as f64);
        let t = (ca + cb) as f64;
        tie_term += t * t * t - t;
        before_below += cb;
        if vb == value {
            i += 1;
        }
        if va == value {
            j += 1;
        }
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let mean_u = n1f * n2f / 2.0;
    let var_u = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let prob_after_slower = u_after / (n1f * n2f);
    let (z, p_value) = if var_u > 0.0 {
        let diff = u_after - mean_u;
        let corrected = (diff.abs() - 0.5).max(0.0).copysign(diff);
        let z = corrected / var_u.sqrt();
        (z, normal_two_sided_p(z))
    } else {
        (0.0, 1.0)
    };
    Some(MannWhitney {
        u_after,
        prob_after_slower,
        z,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        let err = (got - want).abs() / want.abs().max(1e-300);
        assert!(err <= rel, "got {got:e}, want {want:e} (rel err {err:e})");
    }

    #[test]
    fn special_functions_match_published_values() {
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13);
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-13);
        close(ln_gamma(1e6), 12_815_504.569_147_61, 1e-12);
        close(normal_cdf(1.959_963_984_540_054), 0.975, 1e-13);
        close(normal_cdf(-1.0), 0.158_655_253_931_457_05, 1e-12);
        close(normal_cdf(-8.0), 6.220_960_574_271_785e-16, 1e-9);
        close(normal_cdf(-30.0), 4.906_713_927_148_187e-198, 1e-8);
        close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-12);
        close(normal_quantile(0.001), -3.090_232_306_167_813_5, 1e-12);
        // t distribution: published quantiles t(0.975; df).
        close(student_t_cdf(12.706_204_736_174_7, 1.0), 0.975, 1e-10);
        close(student_t_cdf(2.228_138_851_986_274, 10.0), 0.975, 1e-10);
        close(student_t_cdf(-3.385_184_866_829_304_5, 30.0), 0.001, 1e-9);
        close(student_t_quantile(0.975, 5.0), 2.570_581_835_636_314, 1e-10);
        close(student_t_cdf(1.96, 1e7), normal_cdf(1.96), 1e-7);
        close(beta_inc(2.0, 3.0, 0.4), 0.5248, 1e-12);
        assert!(normal_cdf(f64::NAN).is_nan());
        assert_eq!(normal_two_sided_p(0.0), 1.0);
    }

    #[test]
    fn t_tests_handle_textbook_and_degenerate_samples() {
        let a = SampleMoments::of(&[19.7, 20.1, 20.3, 19.9, 20.0]);
        let b = SampleMoments::of(&[21.0, 20.8, 21.3, 20.9, 21.1]);
        let t = student_t_test(a, b);
        assert!(t.statistic > 7.0 && t.p_value < 1e-4, "{t:?}");
        // scipy.stats.ttest_ind([1,2,3,4],[2,3,4,5,6]): |t| = 1.52752..., p = 0.170470...
        let r = student_t_test(
            SampleMoments::of(&[1., 2., 3., 4.]),
            SampleMoments::of(&[2., 3., 4., 5., 6.]),
        );
        close(r.statistic, 1.527_525_231_651_946_5, 1e-12);
        close(r.p_value, 0.170_470_660_787_053_8, 1e-9);
        let flat = SampleMoments::of(&[5.0; 4]);
        assert_eq!(student_t_test(flat, flat).p_value, 1.0);
        assert_eq!(
            student_t_test(flat, SampleMoments::of(&[6.0; 4])).p_value,
            0.0
        );
        assert_eq!(student_t_test(SampleMoments::of(&[]), flat).p_value, 1.0);
        assert_eq!(welch_t_test(SampleMoments::of(&[1.0]), flat).p_value, 1.0);
    }

    #[test]
    fn proportion_and_rate_tests() {
        // 50/1000 vs 80/1000 with the pooled proportion: z = 2.72109..., p = 0.0065066
        let r = two_proportion_z_test(50, 1000, 80, 1000);
        close(r.statistic, 2.721_095_431_170_472, 1e-12);
        close(r.p_value, 0.006_506_597_483_637_83, 1e-9);
        assert_eq!(two_proportion_z_test(0, 1000, 0, 1000).p_value, 1.0);
        assert_eq!(two_proportion_z_test(0, 0, 1, 10).p_value, 1.0);
        assert_eq!(poisson_rate_test(0, 1.0, 10, 1.0).p_value, 1.0);
        let same = poisson_rate_test(10_000, 10.0, 10_000, 10.0);
        assert_eq!(same.p_value, 1.0);
    }
}
