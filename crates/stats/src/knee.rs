//! The knee of a latency-versus-load curve: where latency starts to climb.
//!
//! Method: Kneedle (Satopää, Albrecht, Irwin, Raghavan, 2011). Both axes are
//! normalized to [0, 1]; for a rising, convex curve (flat, then a hockey
//! stick) the knee is the point farthest *below* the chord from the first to
//! the last point, i.e. the maximum of `x_norm − y_norm`. No knee is reported
//! when latency never climbs (last/first below `min_rise`) or when the curve
//! is not convex anywhere (the maximum difference is not positive).

/// A knee found on a curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knee {
    /// Index of the knee point in the input (sorted by x).
    pub index: usize,
    /// Load at the knee.
    pub x: f64,
    /// Latency at the knee.
    pub y: f64,
    /// Normalized distance below the chord (0..1): how pronounced the knee is.
    pub strength: f64,
}

/// The method's one-line description, for reports.
pub const KNEE_METHOD: &str =
    "Kneedle: the point farthest below the chord of the normalized latency-vs-load curve";

/// Finds the knee of `(load, latency)` points; they are sorted by load first.
/// `min_rise`: the largest latency must be at least this multiple of the
/// smallest (e.g. 1.5) for any knee to exist.
pub fn find_knee(points: &[(f64, f64)], min_rise: f64) -> Option<Knee> {
    let mut pts: Vec<(usize, f64, f64)> = points
        .iter()
        .enumerate()
        .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
        .map(|(i, (x, y))| (i, *x, *y))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    pts.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (x_min, x_max) = (pts[0].1, pts[pts.len() - 1].1);
    let y_min = pts.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let y_max = pts.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    if x_max <= x_min || y_max <= y_min || y_max < min_rise * y_min.max(f64::MIN_POSITIVE) {
        return None;
    }
    let mut best: Option<Knee> = None;
    for &(index, x, y) in &pts {
        let xn = (x - x_min) / (x_max - x_min);
        let yn = (y - y_min) / (y_max - y_min);
        let d = xn - yn;
        let better = match best {
            None => true,
            Some(b) => d > b.strength,
        };
        if d > 0.0 && better {
            best = Some(Knee {
                index,
                x,
                y,
                strength: d,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(points: &[(f64, f64)]) -> Option<f64> {
        find_knee(points, 1.5).map(|k| k.x)
    }

    #[test]
    fn hockey_stick_knee_is_the_last_flat_point() {
        // M/M/1-like: W = S / (1 − ρ), capacity 400.
        let pts: Vec<(f64, f64)> = [25.0, 50.0, 100.0, 200.0, 300.0, 350.0, 380.0, 395.0]
            .iter()
            .map(|&x| (x, 10.0 / (1.0 - x / 400.0)))
            .collect();
        let knee = check(&pts).unwrap();
        assert!((300.0..=380.0).contains(&knee), "{knee}");
    }

    #[test]
    fn geometric_search_with_an_overload_step() {
        let pts = [
            (50.0, 12.0),
            (100.0, 12.5),
            (200.0, 13.0),
            (400.0, 16.0),
            (800.0, 1900.0),
            (600.0, 1400.0),
            (500.0, 900.0),
            (450.0, 500.0),
        ];
        assert_eq!(check(&pts), Some(400.0));
    }

    #[test]
    fn flat_or_concave_curves_have_no_knee() {
        assert_eq!(
            check(&[(1.0, 10.0), (2.0, 10.5), (4.0, 11.0), (8.0, 12.0)]),
            None
        );
        // Concave (latency jumps first, then flattens): never below the chord.
        assert_eq!(
            check(&[(1.0, 10.0), (2.0, 50.0), (3.0, 55.0), (4.0, 58.0)]),
            None
        );
        assert_eq!(check(&[(1.0, 10.0), (2.0, 100.0)]), None);
    }

    #[test]
    fn input_order_does_not_matter() {
        let sorted = [(1.0, 5.0), (2.0, 5.2), (3.0, 5.5), (4.0, 9.0), (5.0, 30.0)];
        let mut shuffled = sorted;
        shuffled.swap(0, 4);
        shuffled.swap(1, 3);
        let a = find_knee(&sorted, 1.5).unwrap();
        let b = find_knee(&shuffled, 1.5).unwrap();
        assert_eq!((a.x, a.y), (b.x, b.y));
        assert_eq!(shuffled[b.index], (b.x, b.y));
    }
}
