//! The Universal Scalability Law (Gunther): X(N) = λN / (1 + σ(N−1) + κN(N−1)),
//! fitted by bounded non-linear least squares.
//!
//! σ is contention (the serialized fraction: queueing for a shared resource),
//! κ is coherency (pairwise crosstalk: the cost of keeping shared state
//! consistent, which makes throughput *fall* past N* = sqrt((1−σ)/κ)).
//!
//! Fitting: λ is linear given (σ, κ), so it is profiled out in closed form; a
//! grid over σ ∈ [0, 1] and κ ∈ {0} ∪ [1e-8, 1] (log-spaced) finds the basin,
//! then Levenberg–Marquardt on all three parameters (steps clamped to the
//! bounds) polishes it. Standard errors come from s²(JᵀJ)⁻¹ at the optimum;
//! intervals are ±t(0.975, n−3)·SE, clipped to the bounds.

use crate::significance::student_t_quantile;

/// One measured point: N concurrent clients gave `throughput` completions per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UslPoint {
    /// Concurrency N (≥ 1).
    pub n: f64,
    /// Measured throughput X(N).
    pub throughput: f64,
}

/// What limits scaling over the measured range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UslClass {
    /// Throughput at the largest N measured is still ≥ 90% of linear scaling.
    NearLinear,
    /// The contention term σ(N−1) dominates at the largest N: queueing for a shared resource.
    ContentionLimited,
    /// The coherency term κN(N−1) dominates: crosstalk that makes throughput fall past N*.
    CoherencyLimited,
}

impl UslClass {
    /// Stable name for JSON: `near-linear`, `contention-limited`, `coherency-limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            UslClass::NearLinear => "near-linear",
            UslClass::ContentionLimited => "contention-limited",
            UslClass::CoherencyLimited => "coherency-limited",
        }
    }
}

/// A fitted USL.
#[derive(Debug, Clone, PartialEq)]
pub struct UslFit {
    /// Single-client throughput λ (X(1)).
    pub lambda: f64,
    /// Contention σ ∈ [0, 1].
    pub sigma: f64,
    /// Coherency κ ≥ 0.
    pub kappa: f64,
    /// Standard errors of λ, σ, κ (`None` with fewer than 4 points or a singular fit).
    pub se_lambda: Option<f64>,
    /// Standard error of σ.
    pub se_sigma: Option<f64>,
    /// Standard error of κ.
    pub se_kappa: Option<f64>,
    /// 95% interval for σ (±t·SE, clipped to [0, 1]).
    pub sigma_ci: Option<(f64, f64)>,
    /// 95% interval for κ (±t·SE, clipped at 0).
    pub kappa_ci: Option<(f64, f64)>,
    /// Coefficient of determination of the fit.
    pub r2: f64,
    /// Peak concurrency N* = sqrt((1−σ)/κ) (`None` when κ = 0: no peak, throughput only flattens).
    pub n_star: Option<f64>,
    /// Peak throughput X(N*), or the asymptote λ/σ when κ = 0 and σ > 0 (`None` when linear).
    pub x_max: Option<f64>,
    /// Points fitted.
    pub points: usize,
    /// Largest N measured.
    pub n_max: f64,
    /// Throughput at the largest N as a fraction of linear scaling λN.
    pub efficiency_at_n_max: f64,
    /// What limits scaling.
    pub class: UslClass,
}

impl UslFit {
    /// Throughput the fit predicts at concurrency `n`.
    pub fn predict(&self, n: f64) -> f64 {
        usl(self.lambda, self.sigma, self.kappa, n)
    }
}

/// X(N) for given parameters.
pub fn usl(lambda: f64, sigma: f64, kappa: f64, n: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// Why no fit was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UslError {
    /// Fewer than three distinct concurrency levels with positive throughput.
    #[error(
        "the USL needs at least 3 distinct concurrency levels with positive throughput (got {0})"
    )]
    TooFewPoints(usize),
}

const KAPPA_MAX: f64 = 1.0;

/// Fits the USL to the points (N ≥ 1, throughput > 0; others are ignored).
pub fn fit(points: &[UslPoint]) -> Result<UslFit, UslError> {
    let pts: Vec<UslPoint> = points
        .iter()
        .copied()
        .filter(|p| p.n >= 1.0 && p.throughput > 0.0 && p.n.is_finite() && p.throughput.is_finite())
        .collect();
    let mut distinct: Vec<f64> = pts.iter().map(|p| p.n).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return Err(UslError::TooFewPoints(distinct.len()));
    }

    // Grid over (σ, κ) with λ profiled out.
    let mut best = (f64::INFINITY, 0.0, 0.0, 0.0);
    let kappas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=80).map(|i| 10f64.powf(-8.0 + 8.0 * i as f64 / 80.0)))
        .collect();
    for si in 0..=200 {
        let sigma = si as f64 / 200.0;
        for &kappa in &kappas {
            let (lambda, ssr) = profile(&pts, sigma, kappa);
            if ssr < best.0 {
                best = (ssr, lambda, sigma, kappa);
            }
        }
    }
    let (_, mut lambda, mut sigma, mut kappa) = best;
    let mut ssr = ssr_of(&pts, lambda, sigma, kappa);

    // Levenberg–Marquardt with clamped steps.
    let mut damping = 1e-3;
    for _ in 0..200 {
        let (jtj, jtr) = normal_equations(&pts, lambda, sigma, kappa);
        let mut improved = false;
        for _ in 0..20 {
            let mut a = jtj;
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += damping * jtj[i][i].max(1e-300);
            }
            let Some(inv) = invert3(&a) else {
                damping *= 10.0;
                continue;
            };
            let step: Vec<f64> = (0..3)
                .map(|i| (0..3).map(|j| inv[i][j] * jtr[j]).sum())
                .collect();
            let cand = (
                (lambda + step[0]).max(1e-12),
                (sigma + step[1]).clamp(0.0, 1.0),
                (kappa + step[2]).clamp(0.0, KAPPA_MAX),
            );
            let cand_ssr = ssr_of(&pts, cand.0, cand.1, cand.2);
            if cand_ssr < ssr {
                let gain = ssr - cand_ssr;
                (lambda, sigma, kappa, ssr) = (cand.0, cand.1, cand.2, cand_ssr);
                damping = (damping / 3.0).max(1e-12);
                improved = gain > 1e-14 * ssr.max(1e-300);
                break;
            }
            damping *= 4.0;
        }
        if !improved {
            break;
        }
    }

    let n = pts.len();
    let mean = pts.iter().map(|p| p.throughput).sum::<f64>() / n as f64;
    let sst: f64 = pts.iter().map(|p| (p.throughput - mean).powi(2)).sum();
    let r2 = if sst > 0.0 { 1.0 - ssr / sst } else { 1.0 };

    let (mut se_lambda, mut se_sigma, mut se_kappa) = (None, None, None);
    let (mut sigma_ci, mut kappa_ci) = (None, None);
    if n > 3 {
        let (jtj, _) = normal_equations(&pts, lambda, sigma, kappa);
        let s2 = ssr / (n - 3) as f64;
        let t = student_t_quantile(0.975, (n - 3) as f64);
        if let Some(cov) = invert3(&jtj) {
            let se = |i: usize| (cov[i][i] * s2).max(0.0).sqrt();
            se_lambda = Some(se(0));
            se_sigma = Some(se(1));
            se_kappa = Some(se(2));
        } else if let Some(cov) = invert2(&[[jtj[0][0], jtj[0][1]], [jtj[1][0], jtj[1][1]]]) {
            // κ pinned at its bound with no information: report λ and σ only.
            se_lambda = Some((cov[0][0] * s2).max(0.0).sqrt());
            se_sigma = Some((cov[1][1] * s2).max(0.0).sqrt());
        }
        sigma_ci = se_sigma.map(|se| ((sigma - t * se).max(0.0), (sigma + t * se).min(1.0)));
        kappa_ci = se_kappa.map(|se| ((kappa - t * se).max(0.0), kappa + t * se));
    }

    let n_star = (kappa > 0.0).then(|| ((1.0 - sigma) / kappa).sqrt());
    let x_max = match n_star {
        Some(ns) => Some(usl(lambda, sigma, kappa, ns.max(1.0))),
        None if sigma > 0.0 => Some(lambda / sigma),
        None => None,
    };
    let n_max = *distinct.last().expect("at least 3");
    let efficiency_at_n_max = usl(lambda, sigma, kappa, n_max) / (lambda * n_max);
    let class = if efficiency_at_n_max >= 0.9 {
        UslClass::NearLinear
    } else if sigma * (n_max - 1.0) >= kappa * n_max * (n_max - 1.0) {
        UslClass::ContentionLimited
    } else {
        UslClass::CoherencyLimited
    };
    Ok(UslFit {
        lambda,
        sigma,
        kappa,
        se_lambda,
        se_sigma,
        se_kappa,
        sigma_ci,
        kappa_ci,
        r2,
        n_star,
        x_max,
        points: n,
        n_max,
        efficiency_at_n_max,
        class,
    })
}

/// Best λ for fixed (σ, κ) and the resulting sum of squared residuals.
fn profile(pts: &[UslPoint], sigma: f64, kappa: f64) -> (f64, f64) {
    let (mut xf, mut ff) = (0.0, 0.0);
    for p in pts {
        let f = usl(1.0, sigma, kappa, p.n);
        xf += p.throughput * f;
        ff += f * f;
    }
    let lambda = if ff > 0.0 { xf / ff } else { 0.0 };
    (lambda, ssr_of(pts, lambda, sigma, kappa))
}

fn ssr_of(pts: &[UslPoint], lambda: f64, sigma: f64, kappa: f64) -> f64 {
    pts.iter()
        .map(|p| (p.throughput - usl(lambda, sigma, kappa, p.n)).powi(2))
        .sum()
}

/// JᵀJ and Jᵀr for residuals r = X − model.
fn normal_equations(
    pts: &[UslPoint],
    lambda: f64,
    sigma: f64,
    kappa: f64,
) -> ([[f64; 3]; 3], [f64; 3]) {
    let mut jtj = [[0.0; 3]; 3];
    let mut jtr = [0.0; 3];
    for p in pts {
        let n = p.n;
        let d = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0);
        let model = lambda * n / d;
        let j = [
            n / d,
            -lambda * n * (n - 1.0) / (d * d),
            -lambda * n * n * (n - 1.0) / (d * d),
        ];
        let r = p.throughput - model;
        for a in 0..3 {
            jtr[a] += j[a] * r;
            for b in 0..3 {
                jtj[a][b] += j[a] * j[b];
            }
        }
    }
    (jtj, jtr)
}

fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let scale = m
        .iter()
        .enumerate()
        .map(|(i, row)| row[i].abs())
        .fold(1.0f64, |acc, v| acc * v.max(1e-300));
    if !det.is_finite() || det.abs() <= 1e-12 * scale {
        return None;
    }
    let c =
        |r1: usize, c1: usize, r2: usize, c2: usize| m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1];
    let inv = [
        [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
        [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
        [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
    ];
    Some(inv.map(|row| row.map(|v| v / det)))
}

fn invert2(m: &[[f64; 2]; 2]) -> Option<[[f64; 2]; 2]> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if !det.is_finite() || det.abs() <= 1e-12 * (m[0][0] * m[1][1]).abs().max(1e-300) {
        return None;
    }
    Some([
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::Rng;

    const LEVELS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0];

    fn points(lambda: f64, sigma: f64, kappa: f64, noise: f64, seed: u64) -> Vec<UslPoint> {
        let mut rng = Rng::new(seed);
        LEVELS
            .iter()
            .map(|&n| UslPoint {
                n,
                throughput: usl(lambda, sigma, kappa, n) * (1.0 + noise * rng.normal()),
            })
            .collect()
    }

    #[test]
    fn recovers_exact_parameters() {
        let f = fit(&points(1000.0, 0.05, 0.002, 0.0, 1)).unwrap();
        assert!((f.lambda - 1000.0).abs() < 1e-3, "{f:?}");
        assert!((f.sigma - 0.05).abs() < 1e-6, "{f:?}");
        assert!((f.kappa - 0.002).abs() < 1e-8, "{f:?}");
        assert!(f.r2 > 0.999_999, "{f:?}");
        let n_star = ((1.0 - 0.05) / 0.002f64).sqrt();
        assert!((f.n_star.unwrap() - n_star).abs() < 1e-3, "{f:?}");
        assert!((f.x_max.unwrap() - usl(1000.0, 0.05, 0.002, n_star)).abs() < 0.01);
        assert_eq!(f.class, UslClass::CoherencyLimited);
    }

    #[test]
    fn recovers_parameters_with_noise_inside_their_intervals() {
        let mut covered = 0;
        for seed in 0..20 {
            let f = fit(&points(500.0, 0.1, 0.0005, 0.02, seed)).unwrap();
            assert!((f.sigma - 0.1).abs() < 0.05, "{f:?}");
            assert!((f.kappa - 0.0005).abs() < 0.0004, "{f:?}");
            assert!(f.r2 > 0.97, "{f:?}");
            let (lo, hi) = f.sigma_ci.unwrap();
            if lo <= 0.1 && 0.1 <= hi {
                covered += 1;
            }
        }
        // A 95% interval should cover the truth in most of 20 fits.
        assert!(covered >= 15, "covered {covered}/20");
    }

    #[test]
    fn pure_contention_is_classified_as_such() {
        // A lock: one client gets 110/s, the plateau is 200/s (λ/σ): σ ≈ 0.55, κ = 0.
        let f = fit(&points(110.0, 0.55, 0.0, 0.01, 5)).unwrap();
        assert!((f.sigma - 0.55).abs() < 0.05, "{f:?}");
        // Noise leaves a small κ whose interval includes zero.
        assert!(f.kappa < 5e-4, "{f:?}");
        assert_eq!(f.kappa_ci.unwrap().0, 0.0, "{f:?}");
        assert_eq!(f.class, UslClass::ContentionLimited);
        assert!(f.sigma_ci.unwrap().0 > 0.3, "{f:?}");
        let x_max = f.x_max.unwrap();
        assert!((x_max - 200.0).abs() < 15.0, "{f:?}");
    }

    #[test]
    fn linear_scaling_is_near_linear() {
        let f = fit(&points(100.0, 0.0, 0.0, 0.01, 9)).unwrap();
        assert_eq!(f.class, UslClass::NearLinear, "{f:?}");
        assert!(f.sigma < 0.01 && f.kappa < 1e-4, "{f:?}");
    }

    #[test]
    fn too_few_points_is_an_error() {
        let p = |n, x| UslPoint { n, throughput: x };
        assert_eq!(
            fit(&[p(1.0, 10.0), p(2.0, 19.0), p(2.0, 18.0)]),
            Err(UslError::TooFewPoints(2))
        );
        assert_eq!(
            fit(&[p(1.0, 10.0), p(2.0, 0.0), p(4.0, 30.0)]),
            Err(UslError::TooFewPoints(2))
        );
        // Three points fit but carry no standard errors.
        let f = fit(&[p(1.0, 10.0), p(2.0, 18.0), p(4.0, 28.0)]).unwrap();
        assert!(f.se_sigma.is_none());
    }
}
