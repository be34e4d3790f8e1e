//! Seeded bootstrap of latency statistics straight from histogram buckets.
//!
//! Two resampling schemes, both reproducible from a seed and neither ever
//! expanding a histogram into its samples:
//!
//! * **Interval blocks** (preferred, used when a run brings enough per-second
//!   interval histograms): whole intervals are resampled with replacement, the
//!   cluster bootstrap. Requests within one second share that second's machine
//!   state (GC, noisy neighbours, CPU frequency), so they are not independent;
//!   resampling seconds keeps that dependence and so measures run-to-run noise
//!   that an i.i.d. bootstrap cannot see.
//! * **I.i.d. multinomial** (fallback, total histogram only): exactly a
//!   multinomial resample of the same total count over the buckets, drawn in
//!   O(log N) per resample through uniform order statistics: the k-th value of
//!   a resample is F⁻¹(U₍ₖ₎), and the order statistics U₍ₖ₎ of N uniforms are
//!   partial sums of independent gamma variates (Rényi's representation). The
//!   quantiles are exact draws; the resample mean adds, between the sampled
//!   ranks, the exact conditional mean and a normal term with the exact
//!   conditional variance of the values in between (documented in
//!   docs/statistics.md).

use crate::compare::LatencyMetric;
use crate::Histogram;

/// A small, fast, seedable generator (xoshiro256++ seeded through SplitMix64).
///
/// Implemented here rather than taken from a crate so that a seed gives the
/// same numbers on every platform and every future version of chokepoint.
#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            state: [next(), next(), next(), next()],
            spare_normal: None,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`). The
    /// multiply-shift map has a bias below n / 2⁶⁴, far under anything measurable.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A standard normal variate (Marsaglia's polar method).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        loop {
            let x = 2.0 * self.uniform() - 1.0;
            let y = 2.0 * self.uniform() - 1.0;
            let s = x * x + y * y;
            if s < 1.0 && s > 0.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(y * f);
                return x * f;
            }
        }
    }

    /// A Gamma(shape, 1) variate for `shape >= 1` (Marsaglia and Tsang 2000;
    /// exponential for shape 1). Shapes below 1 are treated as 1.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape <= 1.0 {
            return -self.uniform().ln();
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            let x2 = x * x;
            if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }
}

/// One run's latency as the bootstrap sees it: the total histogram of the
/// measured window and, when available, its per-second interval histograms
/// (oldest first) that add up to it. Values are microseconds.
#[derive(Debug, Clone, Copy)]
pub struct RunLatency<'a> {
    /// All samples of the measured window.
    pub total: &'a Histogram,
    /// Per-interval histograms whose sum is `total`; may be empty.
    pub intervals: &'a [Histogram],
}

impl<'a> RunLatency<'a> {
    /// A run known only by its total histogram (forces the i.i.d. bootstrap).
    pub fn total_only(total: &'a Histogram) -> RunLatency<'a> {
        RunLatency {
            total,
            intervals: &[],
        }
    }
}

/// The seed used when none is given: fixed, so two runs of `compare` on the
/// same files print the same intervals.
pub const DEFAULT_SEED: u64 = 0xC40C_E901_5EED_0005;

/// How many resamples to draw, from which seed, and when to resample
/// intervals instead of single samples.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// Number of bootstrap resamples (at least 1,000 is sensible).
    pub resamples: usize,
    /// Seed of every random draw: same inputs and seed, same result.
    pub seed: u64,
    /// Fewest non-empty intervals for the interval (block) bootstrap; below
    /// it the i.i.d. bootstrap is used.
    pub min_blocks: usize,
    /// Most blocks: longer runs join consecutive intervals into this many
    /// blocks (bounding memory and time for 24-hour soaks).
    pub max_blocks: usize,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            resamples: 2_000,
            seed: DEFAULT_SEED,
            min_blocks: 10,
            max_blocks: 120,
        }
    }
}

/// The resampling scheme a bootstrap used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapMethod {
    /// Whole interval blocks resampled with replacement.
    IntervalBlocks {
        /// Number of non-empty blocks resampled.
        blocks: usize,
        /// Consecutive intervals joined into one block.
        intervals_per_block: usize,
    },
    /// Multinomial resampling of the total histogram's samples.
    Iid {
        /// Why the interval bootstrap was not used.
        fallback_reason: Option<String>,
    },
}

/// Bootstrap replicates of one statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReplicates {
    /// The statistic.
    pub metric: LatencyMetric,
    /// Its value on the total histogram (µs), as the histogram reports it.
    pub point: f64,
    /// Its value on each resample (µs), in draw order.
    pub values: Vec<f64>,
}

/// The bootstrap of one run: replicates of each requested statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBootstrap {
    /// The scheme used.
    pub method: BootstrapMethod,
    /// Samples in the total histogram.
    pub samples: u64,
    /// One entry per requested metric, in request order.
    pub metrics: Vec<MetricReplicates>,
}

/// Value of a metric on a histogram, exactly as `hdrhistogram` reports it
/// (`value_at_quantile`, `mean`), in microseconds; 0 for an empty histogram.
pub fn point_value(h: &Histogram, metric: LatencyMetric) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    match metric.quantile() {
        Some(q) => h.value_at_quantile(q) as f64,
        None => h.mean(),
    }
}

/// The hdrhistogram rank of quantile `q` among `n` samples: the same
/// arithmetic as `Histogram::value_at_quantile`, so bootstrap values and
/// reported values agree.
fn rank_of(q: f64, n: u64) -> u64 {
    let k = (q.min(1.0) * n as f64).ceil() as u64;
    k.clamp(1, n.max(1))
}

/// Bootstraps `metrics` of one run, by interval blocks when the run has
/// enough intervals, else i.i.d. `stream` separates the random streams of
/// runs compared with the same seed. An empty run gives empty replicate lists.
pub fn bootstrap_run(
    run: &RunLatency<'_>,
    metrics: &[LatencyMetric],
    config: &BootstrapConfig,
    stream: u64,
) -> RunBootstrap {
    match interval_blocks_unavailable(run, config) {
        None => bootstrap_with(run, metrics, config, stream, Scheme::Blocks),
        Some(reason) => bootstrap_with(run, metrics, config, stream, Scheme::Iid(reason)),
    }
}

/// Why `run` cannot use the interval bootstrap under `config`, or `None`
/// when it can.
pub fn interval_blocks_unavailable(
    run: &RunLatency<'_>,
    config: &BootstrapConfig,
) -> Option<String> {
    if run.intervals.is_empty() {
        return Some("no interval histograms were given".to_string());
    }
    let non_empty = run.intervals.iter().filter(|h| !h.is_empty()).count();
    let min_blocks = config.min_blocks.max(2);
    if non_empty < min_blocks {
        return Some(format!(
            "only {non_empty} non-empty intervals; the interval bootstrap needs at least {min_blocks}"
        ));
    }
    let interval_samples: u64 = run.intervals.iter().map(|h| h.len()).sum();
    if interval_samples != run.total.len() {
        return Some(format!(
            "the intervals hold {} samples but the total histogram holds {}",
            interval_samples,
            run.total.len()
        ));
    }
    None
}

/// Which scheme `bootstrap_with` must use.
pub(crate) enum Scheme {
    /// Interval blocks; the caller has checked eligibility.
    Blocks,
    /// I.i.d., with the reason intervals were not used.
    Iid(String),
}

pub(crate) fn bootstrap_with(
    run: &RunLatency<'_>,
    metrics: &[LatencyMetric],
    config: &BootstrapConfig,
    stream: u64,
    scheme: Scheme,
) -> RunBootstrap {
    let samples = run.total.len();
    let mut rng = Rng::new(config.seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
    let points: Vec<f64> = metrics.iter().map(|m| point_value(run.total, *m)).collect();
    let (method, values) = match scheme {
        _ if samples == 0 => (
            BootstrapMethod::Iid {
                fallback_reason: Some("the run has no samples".to_string()),
            },
            vec![Vec::new(); metrics.len()],
        ),
        Scheme::Blocks => {
            let non_empty: Vec<&Histogram> =
                run.intervals.iter().filter(|h| !h.is_empty()).collect();
            let max_blocks = config.max_blocks.max(config.min_blocks).max(2);
            let per_block = non_empty.len().div_ceil(max_blocks);
            let blocks = BlockSet::new(run.total, &non_empty, per_block);
            let method = BootstrapMethod::IntervalBlocks {
                blocks: blocks.n_blocks,
                intervals_per_block: blocks.intervals_per_block,
            };
            (
                method,
                blocks.replicates(metrics, &points, config.resamples, &mut rng),
            )
        }
        Scheme::Iid(reason) => {
            let buckets = Buckets::from_histogram(run.total);
            let values = buckets.iid_replicates(metrics, config.resamples, &mut rng);
            (
                BootstrapMethod::Iid {
                    fallback_reason: Some(reason),
                },
                values,
            )
        }
    };
    let metrics = metrics
        .iter()
        .zip(points)
        .zip(values)
        .map(|((m, point), values)| MetricReplicates {
            metric: *m,
            point,
            values,
        })
        .collect();
    RunBootstrap {
        method,
        samples,
        metrics,
    }
}

/// Sorts replicate values and returns the `p`-quantile by linear
/// interpolation between order statistics (type 7); NaN when empty.
pub fn replicate_quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The recorded buckets of one histogram with prefix sums, in the form the
/// i.i.d. bootstrap needs.
struct Buckets {
    /// Highest equivalent value of each bucket (what quantiles report).
    values: Vec<f64>,
    /// Median equivalent value of each bucket (what the mean uses).
    mids: Vec<f64>,
    /// Cumulative counts, inclusive.
    cum: Vec<u64>,
    /// Prefix sums of mid × count, inclusive.
    sum1: Vec<f64>,
    /// Prefix sums of mid² × count, inclusive.
    sum2: Vec<f64>,
    total: u64,
}

impl Buckets {
    fn from_histogram(h: &Histogram) -> Buckets {
        let mut b = Buckets {
            values: Vec::new(),
            mids: Vec::new(),
            cum: Vec::new(),
            sum1: Vec::new(),
            sum2: Vec::new(),
            total: 0,
        };
        let (mut c, mut s1, mut s2) = (0u64, 0.0f64, 0.0f64);
        for v in h.iter_recorded() {
            let value = v.value_iterated_to();
            let count = v.count_at_value();
            let mid = h.median_equivalent(value) as f64;
            c += count;
            s1 += mid * count as f64;
            s2 += mid * mid * count as f64;
            b.values.push(h.highest_equivalent(value) as f64);
            b.mids.push(mid);
            b.cum.push(c);
            b.sum1.push(s1);
            b.sum2.push(s2);
        }
        b.total = c;
        b
    }

    /// The bucket a uniform number falls in: first j with cum[j] >= u·N.
    fn bucket_of(&self, u: f64) -> usize {
        first_reaching(&self.cum, u * self.total as f64)
    }

    /// ∫₀ᵘ Q(t) dt and ∫₀ᵘ Q(t)² dt for the quantile function Q of the
    /// bucket mids, given the bucket `j` that u falls in.
    fn integrals(&self, u: f64, j: usize) -> (f64, f64) {
        let n = self.total as f64;
        let (c0, s1, s2) = if j == 0 {
            (0, 0.0, 0.0)
        } else {
            (self.cum[j - 1], self.sum1[j - 1], self.sum2[j - 1])
        };
        let width = (u - c0 as f64 / n).max(0.0);
        let mid = self.mids[j];
        (s1 / n + mid * width, s2 / n + mid * mid * width)
    }

    fn iid_replicates(
        &self,
        metrics: &[LatencyMetric],
        resamples: usize,
        rng: &mut Rng,
    ) -> Vec<Vec<f64>> {
        let n = self.total;
        let want_mean = metrics.iter().any(|m| m.quantile().is_none());
        // The ranks whose order statistics are drawn: every requested
        // quantile's rank, and for the mean a geometric ladder towards both
        // ends, so that the sparse tails (where a normal approximation of the
        // values between two drawn ranks would be poor) are drawn exactly.
        let mut ranks: Vec<u64> = metrics
            .iter()
            .filter_map(|m| m.quantile())
            .map(|q| rank_of(q, n))
            .collect();
        if want_mean {
            let mut step = 1u64;
            while step <= n {
                ranks.push(step);
                ranks.push(n + 1 - step);
                step = step.saturating_mul(4);
            }
        }
        ranks.sort_unstable();
        ranks.dedup();
        let mut us = vec![0.0f64; ranks.len()];
        let mut buckets = vec![0usize; ranks.len()];
        let mut out = vec![Vec::with_capacity(resamples); metrics.len()];
        for _ in 0..resamples {
            let mut acc = 0.0;
            let mut prev = 0u64;
            for (i, &r) in ranks.iter().enumerate() {
                acc += rng.gamma((r - prev) as f64);
                us[i] = acc;
                prev = r;
            }
            let total = acc + rng.gamma((n + 1 - prev) as f64);
            for (i, u) in us.iter_mut().enumerate() {
                *u /= total;
                buckets[i] = self.bucket_of(*u);
            }
            let mean = if want_mean {
                self.resample_mean(&ranks, &us, &buckets, rng)
            } else {
                0.0
            };
            for (m, values) in metrics.iter().zip(out.iter_mut()) {
                let v = match m.quantile() {
                    Some(q) => {
                        let r = rank_of(q, n);
                        // ranks is sorted and holds r.
                        let i = ranks.binary_search(&r).unwrap_or(0);
                        self.values[buckets[i]]
                    }
                    None => mean,
                };
                values.push(v);
            }
        }
        out
    }

    /// The mean of a resample given its order statistics at `ranks`: the
    /// drawn values, plus for each gap of g ranks between two drawn ones the
    /// exact conditional mean of g uniforms between them mapped through Q, and
    /// a normal term with the exact conditional variance.
    fn resample_mean(&self, ranks: &[u64], us: &[f64], buckets: &[usize], rng: &mut Rng) -> f64 {
        let mut sum = 0.0;
        let (mut prev_rank, mut prev_u, mut prev_int) = (0u64, 0.0f64, (0.0f64, 0.0f64));
        let add_gap =
            |gap: u64, u_lo: f64, u_hi: f64, lo: (f64, f64), hi: (f64, f64), rng: &mut Rng| {
                if gap == 0 {
                    return 0.0;
                }
                let width = u_hi - u_lo;
                if width <= 0.0 {
                    return 0.0;
                }
                let m1 = (hi.0 - lo.0) / width;
                let m2 = (hi.1 - lo.1) / width;
                let var = (m2 - m1 * m1).max(0.0);
                let g = gap as f64;
                g * m1 + (g * var).sqrt() * rng.normal()
            };
        for i in 0..ranks.len() {
            let int = self.integrals(us[i], buckets[i]);
            sum += add_gap(ranks[i] - prev_rank - 1, prev_u, us[i], prev_int, int, rng);
            sum += self.mids[buckets[i]];
            prev_rank = ranks[i];
            prev_u = us[i];
            prev_int = int;
        }
        let end = (
            self.sum1[self.sum1.len() - 1] / self.total as f64,
            self.sum2[self.sum2.len() - 1] / self.total as f64,
        );
        sum += add_gap(self.total - prev_rank, prev_u, 1.0, prev_int, end, rng);
        sum / self.total as f64
    }
}

/// Interval histograms joined into blocks over a shared, sorted set of bucket
/// values, with per-block cumulative counts stored value-major so that one
/// probe of a binary search reads contiguous memory.
struct BlockSet {
    n_blocks: usize,
    intervals_per_block: usize,
    /// Highest equivalent value of each shared bucket.
    values: Vec<f64>,
    /// cum[j * n_blocks + b]: samples of block b at or below bucket j.
    cum: Vec<u64>,
    /// Samples in each block.
    counts: Vec<u64>,
    /// Sum of bucket mids × counts in each block.
    sums: Vec<f64>,
}

impl BlockSet {
    /// Joins `per_block` consecutive intervals per block. `total` supplies
    /// the shared bucket values when the intervals have its precision (the
    /// usual case); otherwise the union of their buckets is built.
    fn new(total: &Histogram, intervals: &[&Histogram], per_block: usize) -> BlockSet {
        let per_block = per_block.max(1);
        // (highest equivalent, median equivalent, count) of each block's
        // recorded buckets, ascending. hdrhistogram's iterator walks the whole
        // counts array, so each histogram is iterated exactly once.
        let recorded = |h: &Histogram| -> Vec<(u64, f64, u64)> {
            h.iter_recorded()
                .map(|v| {
                    let value = v.value_iterated_to();
                    (
                        h.highest_equivalent(value),
                        h.median_equivalent(value) as f64,
                        v.count_at_value(),
                    )
                })
                .collect()
        };
        let blocks: Vec<Vec<(u64, f64, u64)>> = intervals
            .chunks(per_block)
            .map(|chunk| {
                if chunk.len() == 1 {
                    return recorded(chunk[0]);
                }
                let mut merged = chunk[0].clone();
                for h in &chunk[1..] {
                    // Cannot fail: auto-resizing histograms grow to fit.
                    let _ = merged.add(*h);
                }
                recorded(&merged)
            })
            .collect();
        let mut keys: Vec<u64> = total
            .iter_recorded()
            .map(|v| total.highest_equivalent(v.value_iterated_to()))
            .collect();
        let mut positions = Vec::with_capacity(blocks.len());
        for block in &blocks {
            match positions_in(&keys, block) {
                Some(p) => positions.push(p),
                None => break,
            }
        }
        if positions.len() < blocks.len() {
            // Intervals with another precision than the total: share the
            // union of their bucket values instead.
            keys = blocks.iter().flat_map(|b| b.iter().map(|x| x.0)).collect();
            keys.sort_unstable();
            keys.dedup();
            positions = blocks
                .iter()
                .map(|b| positions_in(&keys, b).expect("keys hold every bucket"))
                .collect();
        }
        let n_blocks = blocks.len();
        let k = keys.len();
        let mut cum = vec![0u64; k * n_blocks];
        let mut counts = vec![0u64; n_blocks];
        let mut sums = vec![0.0f64; n_blocks];
        for (b, (block, pos)) in blocks.iter().zip(&positions).enumerate() {
            for (&(_, mid, c), &j) in block.iter().zip(pos) {
                cum[j * n_blocks + b] += c;
                counts[b] += c;
                sums[b] += mid * c as f64;
            }
        }
        for i in n_blocks..cum.len() {
            cum[i] += cum[i - n_blocks];
        }
        BlockSet {
            n_blocks,
            intervals_per_block: per_block,
            values: keys.iter().map(|&x| x as f64).collect(),
            cum,
            counts,
            sums,
        }
    }

    fn replicates(
        &self,
        metrics: &[LatencyMetric],
        points: &[f64],
        resamples: usize,
        rng: &mut Rng,
    ) -> Vec<Vec<f64>> {
        let b = self.n_blocks;
        // Resampling B of B clusters underestimates the variance by (B-1)/B;
        // widen each replicate's deviation from the point estimate to undo it.
        let inflate = (b as f64 / (b as f64 - 1.0).max(1.0)).sqrt();
        let k = self.values.len();
        let mut weights = vec![0u64; b];
        // The distinct blocks drawn and how often: two plain arrays, because
        // the dot products below are the hot loop (and must stay quick in
        // unoptimised test builds too).
        let mut chosen_idx: Vec<usize> = Vec::with_capacity(b);
        let mut chosen_w: Vec<u64> = Vec::with_capacity(b);
        let mut out = vec![Vec::with_capacity(resamples); metrics.len()];
        let quantiles: Vec<Option<f64>> = metrics.iter().map(|m| m.quantile()).collect();
        for _ in 0..resamples {
            weights.fill(0);
            for _ in 0..b {
                weights[rng.below(b as u64) as usize] += 1;
            }
            chosen_idx.clear();
            chosen_w.clear();
            for (i, &w) in weights.iter().enumerate() {
                if w > 0 {
                    chosen_idx.push(i);
                    chosen_w.push(w);
                }
            }
            let n = dot_u64(&self.counts, &chosen_idx, &chosen_w);
            for ((q, values), &point) in quantiles.iter().zip(out.iter_mut()).zip(points) {
                let raw = match q {
                    Some(q) => {
                        let rank = rank_of(*q, n);
                        // first j with Σ w·cum_b(j) >= rank
                        let (mut lo, mut hi) = (0usize, k - 1);
                        while lo < hi {
                            let mid = (lo + hi) / 2;
                            let row = &self.cum[mid * b..(mid + 1) * b];
                            if dot_u64(row, &chosen_idx, &chosen_w) >= rank {
                                hi = mid;
                            } else {
                                lo = mid + 1;
                            }
                        }
                        self.values[lo]
                    }
                    None => {
                        let mut sum = 0.0;
                        for (&i, &w) in chosen_idx.iter().zip(&chosen_w) {
                            sum += w as f64 * self.sums[i];
                        }
                        sum / n as f64
                    }
                };
                values.push(point + inflate * (raw - point));
            }
        }
        out
    }
}

/// Index in `keys` of each bucket of `block` (both ascending), or `None`
/// when a bucket value is missing from `keys`.
fn positions_in(keys: &[u64], block: &[(u64, f64, u64)]) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(block.len());
    let mut j = 0;
    for &(value, _, _) in block {
        while j < keys.len() && keys[j] < value {
            j += 1;
        }
        if j == keys.len() || keys[j] != value {
            return None;
        }
        out.push(j);
    }
    Some(out)
}

/// Σ w[t] · row[idx[t]].
fn dot_u64(row: &[u64], idx: &[usize], w: &[u64]) -> u64 {
    let mut sum = 0u64;
    let mut t = 0;
    while t < idx.len() {
        sum += w[t] * row[idx[t]];
        t += 1;
    }
    sum
}

/// First index j with `cum[j] as f64 >= target`, or the last index.
fn first_reaching(cum: &[u64], target: f64) -> usize {
    let (mut lo, mut hi) = (0usize, cum.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if cum[mid] as f64 >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_uniform_is_open() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let (x, y) = (a.uniform(), b.uniform());
            assert_eq!(x, y);
            assert!(x > 0.0 && x < 1.0);
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn gamma_and_normal_have_the_right_moments() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        for shape in [1.0, 3.0, 1000.0] {
            let xs: Vec<f64> = (0..n).map(|_| rng.gamma(shape)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(
                (mean - shape).abs() < 4.0 * (shape / n as f64).sqrt(),
                "shape {shape} mean {mean}"
            );
            assert!((var / shape - 1.0).abs() < 0.06, "shape {shape} var {var}");
        }
        let zs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = zs.iter().sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03);
    }

    #[test]
    fn rank_matches_hdrhistogram() {
        let mut h = crate::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let b = Buckets::from_histogram(&h);
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let r = rank_of(q, h.len());
            let j = b.cum.partition_point(|&c| c < r);
            assert_eq!(b.values[j] as u64, h.value_at_quantile(q), "q {q}");
        }
    }
}
