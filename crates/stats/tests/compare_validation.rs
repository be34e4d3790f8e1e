//! Validates the comparison statistics themselves on synthetic runs drawn from
//! known distributions: false-alarm rate of A/A pairs, detection power for a
//! planted regression, the minimum effect, insufficient data, and degenerate
//! input. Every draw is seeded, so every figure below is reproducible; the
//! figures quoted in docs/statistics.md come from `cargo test -p
//! chokepoint-stats --test compare_validation -- --nocapture`.

use chokepoint_stats::bootstrap::{
    bootstrap_run, BootstrapConfig, BootstrapMethod, Rng, RunLatency,
};
use chokepoint_stats::compare::{
    compare_error_rate, compare_latency, compare_throughput, CompareConfig, CompareError,
    ErrorCounts, LatencyComparison, LatencyMetric, RateTest, ThroughputSample, Verdict,
};
use chokepoint_stats::{new_histogram, Histogram};

/// A synthetic run: per-second interval histograms and their total.
struct Run {
    total: Histogram,
    intervals: Vec<Histogram>,
}

/// How to draw a synthetic run.
#[derive(Clone, Copy)]
struct Shape {
    seconds: usize,
    per_second: usize,
    /// Median latency in µs of the log-normal.
    median_us: f64,
    /// Sigma of the log-normal (0.5: P99 ≈ 3.2 × median).
    sigma: f64,
    /// Sigma of a per-second log-normal slowdown shared by all requests of
    /// that second: the "noisy machine" (0 = independent requests).
    per_second_noise: f64,
    /// Every sample is multiplied by this.
    scale: f64,
    /// Samples above `tail_from_us` are stretched: t + (x - t) · tail_stretch.
    tail_from_us: f64,
    tail_stretch: f64,
}

impl Shape {
    fn iid(n: usize) -> Shape {
        Shape {
            seconds: 1,
            per_second: n,
            median_us: 10_000.0,
            sigma: 0.5,
            per_second_noise: 0.0,
            scale: 1.0,
            tail_from_us: f64::INFINITY,
            tail_stretch: 1.0,
        }
    }

    fn noisy(seconds: usize, per_second: usize, noise: f64) -> Shape {
        Shape {
            seconds,
            per_second,
            per_second_noise: noise,
            ..Shape::iid(0)
        }
    }

    /// Stretches the tail above the distribution's own P90 so that its P99
    /// rises by `pct` percent while P50 stays put.
    fn p99_up(self, pct: f64) -> Shape {
        let q = |z: f64| self.median_us * (self.sigma * z).exp();
        let (p90, p99) = (q(1.281_551_565_5), q(2.326_347_874));
        let target = p99 * (1.0 + pct / 100.0);
        Shape {
            tail_from_us: p90,
            tail_stretch: (target - p90) / (p99 - p90),
            ..self
        }
    }

    fn scaled(self, factor: f64) -> Shape {
        Shape {
            scale: factor,
            ..self
        }
    }

    fn draw(&self, rng: &mut Rng) -> Run {
        let mut total = new_histogram();
        let mut intervals = Vec::with_capacity(self.seconds);
        for _ in 0..self.seconds {
            let mut h = new_histogram();
            let slowdown = (self.per_second_noise * rng.normal()).exp();
            for _ in 0..self.per_second {
                let mut x = self.median_us * (self.sigma * rng.normal()).exp() * slowdown;
                if x > self.tail_from_us {
                    x = self.tail_from_us + (x - self.tail_from_us) * self.tail_stretch;
                }
                let us = (x * self.scale).round().max(1.0) as u64;
                // Recording twice is cheaper than Histogram::add in debug builds.
                h.saturating_record(us);
                total.saturating_record(us);
            }
            intervals.push(h);
        }
        Run { total, intervals }
    }
}

/// How a comparison should see the runs.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    TotalOnly,
    Intervals,
}

/// The only caller of `compare_latency` in this file.
fn compare(before: &Run, after: &Run, how: Use, config: &CompareConfig) -> LatencyComparison {
    compare_latency(&view(before, how), &view(after, how), config).expect("valid config")
}

fn view(r: &Run, how: Use) -> RunLatency<'_> {
    match how {
        Use::TotalOnly => RunLatency {
            total: &r.total,
            intervals: &[],
        },
        Use::Intervals => RunLatency {
            total: &r.total,
            intervals: &r.intervals,
        },
    }
}

/// Rates over many comparisons, per metric.
#[derive(Default, Debug)]
struct Rates {
    trials: usize,
    significant: [usize; 6],
    regressed: [usize; 6],
    improved: [usize; 6],
}

impl Rates {
    fn add(&mut self, c: &LatencyComparison) {
        self.trials += 1;
        for (i, m) in c.metrics.iter().enumerate() {
            self.significant[i] += m.significant as usize;
            self.regressed[i] += (m.verdict == Verdict::Regressed) as usize;
            self.improved[i] += (m.verdict == Verdict::Improved) as usize;
        }
    }

    fn rate(&self, counts: &[usize; 6], metric: LatencyMetric) -> f64 {
        let i = LatencyMetric::ALL
            .iter()
            .position(|m| *m == metric)
            .unwrap();
        counts[i] as f64 / self.trials as f64
    }

    fn print(&self, label: &str) {
        eprintln!("{label} ({} pairs):", self.trials);
        for (i, m) in LatencyMetric::ALL.iter().enumerate() {
            let pct = |c: usize| 100.0 * c as f64 / self.trials as f64;
            eprintln!(
                "  {:6} significant {:5.1}%  regressed {:5.1}%  improved {:5.1}%",
                m.name(),
                pct(self.significant[i]),
                pct(self.regressed[i]),
                pct(self.improved[i])
            );
        }
    }
}

fn run_pairs(
    pairs: usize,
    seed: u64,
    before: Shape,
    after: Shape,
    how: Use,
    config: &CompareConfig,
) -> Rates {
    let mut rng = Rng::new(seed);
    let mut rates = Rates::default();
    for _ in 0..pairs {
        let b = before.draw(&mut rng);
        let a = after.draw(&mut rng);
        rates.add(&compare(&b, &a, how, config));
    }
    rates
}

fn quick_config() -> CompareConfig {
    // 1,000 resamples: the minimum the product promises, and what keeps the
    // hundreds of comparisons below fast in a debug build.
    CompareConfig {
        bootstrap: BootstrapConfig {
            resamples: 1_000,
            ..BootstrapConfig::default()
        },
        ..Default::default()
    }
}

#[test]
fn aa_pairs_of_independent_samples_rarely_differ() {
    // 200 A/A pairs, 20,000 log-normal samples each (enough for P99.9).
    let rates = run_pairs(
        200,
        11,
        Shape::iid(20_000),
        Shape::iid(20_000),
        Use::TotalOnly,
        &quick_config(),
    );
    rates.print("A/A, independent samples, i.i.d. bootstrap");
    for m in LatencyMetric::ALL {
        let regressed = rates.rate(&rates.regressed, m);
        let significant = rates.rate(&rates.significant, m);
        assert!(
            regressed <= 0.05,
            "{}: false regressed {regressed}",
            m.name()
        );
        // A calibrated 95% interval excludes zero 5% of the time; 200 pairs
        // put the observed rate within about ±3 points of that.
        assert!(
            significant <= 0.09,
            "{}: significant {significant}",
            m.name()
        );
    }
}

#[test]
fn aa_pairs_on_a_noisy_machine_need_the_interval_bootstrap() {
    // 30 s runs, 1,000 requests a second, each second slowed by its own
    // log-normal factor (sigma 5%): samples within a second are not
    // independent. The i.i.d. bootstrap then calls noise a change; resampling
    // whole seconds does not.
    let shape = Shape::noisy(30, 1_000, 0.05);
    let config = quick_config();
    let (mut blocks, mut iid) = (Rates::default(), Rates::default());
    let mut rng = Rng::new(12);
    for _ in 0..100 {
        let (b, a) = (shape.draw(&mut rng), shape.draw(&mut rng));
        blocks.add(&compare(&b, &a, Use::Intervals, &config));
        iid.add(&compare(&b, &a, Use::TotalOnly, &config));
    }
    blocks.print("A/A, noisy machine, interval bootstrap");
    iid.print("A/A, noisy machine, i.i.d. bootstrap");
    for m in LatencyMetric::ALL {
        assert!(
            blocks.rate(&blocks.regressed, m) <= 0.05,
            "{}: blocks false regressed",
            m.name()
        );
        assert!(
            blocks.rate(&blocks.significant, m) <= 0.12,
            "{}: blocks significant",
            m.name()
        );
    }
    assert!(
        iid.rate(&iid.significant, LatencyMetric::P50) >= 0.3,
        "the i.i.d. bootstrap should be fooled here"
    );
}

#[test]
fn planted_twenty_percent_p99_increase_is_detected() {
    let before = Shape::iid(20_000);
    let rates = run_pairs(
        50,
        13,
        before,
        before.p99_up(20.0),
        Use::TotalOnly,
        &quick_config(),
    );
    rates.print("P99 +20% (tail above P90 stretched), 20,000 samples, i.i.d.");
    assert!(
        rates.rate(&rates.regressed, LatencyMetric::P99) >= 0.9,
        "power at P99"
    );
    assert!(
        rates.rate(&rates.regressed, LatencyMetric::P50) <= 0.05,
        "P50 did not change"
    );
    assert_eq!(rates.rate(&rates.improved, LatencyMetric::P99), 0.0);

    let noisy = Shape::noisy(30, 1_000, 0.05);
    let rates = run_pairs(
        50,
        14,
        noisy,
        noisy.p99_up(20.0),
        Use::Intervals,
        &quick_config(),
    );
    rates.print("P99 +20%, noisy machine, 30 s x 1,000/s, interval bootstrap");
    assert!(
        rates.rate(&rates.regressed, LatencyMetric::P99) >= 0.8,
        "power at P99 on a noisy machine"
    );
}

#[test]
fn a_two_percent_change_is_not_a_regression_even_when_significant() {
    let mut rng = Rng::new(15);
    let before = Shape::iid(200_000).draw(&mut rng);
    let after = Shape::iid(200_000).scaled(1.02).draw(&mut rng);
    let c = compare(&before, &after, Use::TotalOnly, &quick_config());
    let p50 = c.metric(LatencyMetric::P50).unwrap();
    assert!(
        p50.significant,
        "2% at 200,000 samples is significant: {p50:?}"
    );
    assert!((p50.delta_pct.unwrap() - 2.0).abs() < 1.0, "{p50:?}");
    for m in &c.metrics {
        assert_eq!(
            m.verdict,
            Verdict::NoSignificantChange,
            "{}: below the 5% minimum effect",
            m.metric.name()
        );
    }
    assert_eq!(c.verdict, Verdict::NoSignificantChange);
}

#[test]
fn p99_9_from_2000_samples_is_insufficient_data() {
    let mut rng = Rng::new(16);
    let before = Shape::iid(2_000).draw(&mut rng);
    let after = Shape::iid(2_000).scaled(1.5).draw(&mut rng);
    let c = compare(&before, &after, Use::TotalOnly, &quick_config());
    let p999 = c.metric(LatencyMetric::P99_9).unwrap();
    match &p999.verdict {
        Verdict::InsufficientData { reason } => {
            assert!(
                reason.contains("10000") && reason.contains("2000"),
                "{reason}"
            )
        }
        other => panic!("expected insufficient data, got {other:?}"),
    }
    assert!(p999.ci_pct.is_none() && p999.p_value.is_none());
    // P99 needs 1,000 samples: decided, and 50% slower is a regression.
    assert_eq!(
        c.metric(LatencyMetric::P99).unwrap().verdict,
        Verdict::Regressed
    );
    assert_eq!(c.verdict, Verdict::Regressed);
}

#[test]
fn results_are_reproducible_from_the_seed() {
    let mut rng = Rng::new(17);
    let before = Shape::iid(5_000).draw(&mut rng);
    let after = Shape::iid(5_000).draw(&mut rng);
    let config = quick_config();
    let one = compare(&before, &after, Use::TotalOnly, &config);
    let two = compare(&before, &after, Use::TotalOnly, &config);
    assert_eq!(one, two);
    let other_seed = CompareConfig {
        bootstrap: BootstrapConfig {
            seed: 99,
            ..config.bootstrap.clone()
        },
        ..config.clone()
    };
    let three = compare(&before, &after, Use::TotalOnly, &other_seed);
    assert_ne!(one.metrics[0].ci_pct, three.metrics[0].ci_pct);
    assert_eq!(one.metrics[0].before_us, three.metrics[0].before_us);
}

#[test]
fn iid_bootstrap_matches_a_brute_force_multinomial_bootstrap() {
    // The order-statistic shortcut must give the same distribution as
    // literally drawing N samples from the buckets with replacement, also for
    // the mean of a heavy tail (sigma 1.2: P99 is 16 × the median).
    for (n, sigma, seed) in [(3_000, 0.5, 18), (1_000, 1.2, 19)] {
        let mut rng = Rng::new(seed);
        let run = Shape {
            sigma,
            ..Shape::iid(n)
        }
        .draw(&mut rng);
        let fast = bootstrap_run(
            &RunLatency::total_only(&run.total),
            &BRUTE_METRICS,
            &brute_config(),
            1,
        );
        assert!(matches!(fast.method, BootstrapMethod::Iid { .. }));
        let slow = brute_force_bootstrap(&run.total, 1_000, seed + 100);
        for (i, m) in BRUTE_METRICS.iter().enumerate() {
            let (f, b) = (describe(&fast.metrics[i].values), describe(&slow[i]));
            eprintln!(
                "n {n} sigma {sigma} {:5} fast {f:?}\n{:24} brute {b:?}",
                m.name(),
                ""
            );
            // 1,000 resamples estimate an sd to about ±5% (1 sigma) and a
            // 2.5% / 97.5% point to about ±0.15 sd, plus a bucket jump where
            // the heavy tail leaves few samples per bucket.
            assert!(
                (f.sd / b.sd - 1.0).abs() < 0.15,
                "{}: sd {} vs {}",
                m.name(),
                f.sd,
                b.sd
            );
            assert!((f.mean - b.mean).abs() < 0.3 * b.sd, "{}: mean", m.name());
            assert!(
                (f.q025 - b.q025).abs() < 0.6 * b.sd,
                "{}: 2.5% point",
                m.name()
            );
            assert!(
                (f.q975 - b.q975).abs() < 0.6 * b.sd,
                "{}: 97.5% point",
                m.name()
            );
        }
    }
}

const BRUTE_METRICS: [LatencyMetric; 4] = [
    LatencyMetric::P50,
    LatencyMetric::P90,
    LatencyMetric::P99,
    LatencyMetric::Mean,
];

fn brute_config() -> BootstrapConfig {
    BootstrapConfig {
        resamples: 1_000,
        ..BootstrapConfig::default()
    }
}

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug output and asserts
struct Spread {
    mean: f64,
    sd: f64,
    q025: f64,
    q975: f64,
}

fn describe(v: &[f64]) -> Spread {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    Spread {
        mean,
        sd,
        q025: at(0.025),
        q975: at(0.975),
    }
}

/// The textbook bootstrap: N draws with replacement per resample.
fn brute_force_bootstrap(h: &Histogram, resamples: usize, seed: u64) -> Vec<Vec<f64>> {
    let buckets: Vec<(u64, u64, u64)> = h
        .iter_recorded()
        .map(|v| {
            let value = v.value_iterated_to();
            (
                h.highest_equivalent(value),
                h.median_equivalent(value),
                v.count_at_value(),
            )
        })
        .collect();
    let n = h.len();
    let mut cum = Vec::new();
    let mut c = 0;
    for b in &buckets {
        c += b.2;
        cum.push(c);
    }
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); BRUTE_METRICS.len()];
    let mut counts = vec![0u64; buckets.len()];
    let mut rng = Rng::new(seed);
    for _ in 0..resamples {
        counts.iter_mut().for_each(|x| *x = 0);
        for _ in 0..n {
            let r = rng.below(n) + 1;
            counts[cum.partition_point(|&x| x < r)] += 1;
        }
        let mut resample = new_histogram();
        let mut sum = 0.0;
        for (b, &k) in buckets.iter().zip(&counts) {
            resample.record_n(b.0, k).unwrap();
            sum += b.1 as f64 * k as f64;
        }
        for (i, m) in BRUTE_METRICS.iter().enumerate() {
            out[i].push(match m.quantile() {
                Some(q) => resample.value_at_quantile(q) as f64,
                None => sum / n as f64,
            });
        }
    }
    out
}

#[test]
fn degenerate_input_gives_verdicts_not_panics() {
    let config = quick_config();
    let empty = Run {
        total: new_histogram(),
        intervals: vec![],
    };
    let c = compare(&empty, &empty, Use::TotalOnly, &config);
    assert!(c
        .metrics
        .iter()
        .all(|m| matches!(m.verdict, Verdict::InsufficientData { .. })));
    assert!(matches!(c.verdict, Verdict::InsufficientData { .. }));
    assert!(c.distribution_shift.is_none());

    let mut flat = new_histogram();
    flat.record_n(5_000, 50_000).unwrap();
    let flat = Run {
        total: flat,
        intervals: vec![],
    };
    let c = compare(&flat, &flat, Use::TotalOnly, &config);
    for m in &c.metrics {
        assert_eq!(m.verdict, Verdict::NoSignificantChange, "{m:?}");
        assert_eq!(m.delta_pct, Some(0.0));
        assert!(!m.significant);
    }
    let c = compare(&empty, &flat, Use::TotalOnly, &config);
    assert!(c
        .metrics
        .iter()
        .all(|m| matches!(m.verdict, Verdict::InsufficientData { .. })));

    let mut zeros = new_histogram();
    zeros.record_n(0, 50_000).unwrap();
    let zeros = Run {
        total: zeros,
        intervals: vec![],
    };
    let c = compare(&zeros, &flat, Use::TotalOnly, &config);
    let p50 = c.metric(LatencyMetric::P50).unwrap();
    assert!(
        matches!(&p50.verdict, Verdict::InsufficientData { reason } if reason.contains("0 µs")),
        "{p50:?}"
    );

    // Intervals that do not add up to the total fall back to i.i.d., saying why.
    let mut rng = Rng::new(20);
    let run = Shape::noisy(12, 100, 0.0).draw(&mut rng);
    let broken = Run {
        total: run.total.clone(),
        intervals: run.intervals[..5].to_vec(),
    };
    let c = compare(&broken, &run, Use::Intervals, &config);
    match &c.method_before {
        BootstrapMethod::Iid {
            fallback_reason: Some(r),
        } => assert!(r.contains("BEFORE"), "{r}"),
        other => panic!("{other:?}"),
    }
    let c = compare(&run, &run, Use::Intervals, &config);
    assert_eq!(
        c.method_after,
        BootstrapMethod::IntervalBlocks {
            blocks: 12,
            intervals_per_block: 1
        }
    );

    let bad = CompareConfig {
        confidence: 1.5,
        ..config.clone()
    };
    let err = compare_latency(
        &RunLatency::total_only(&flat.total),
        &RunLatency::total_only(&flat.total),
        &bad,
    );
    assert!(matches!(
        err,
        Err(CompareError::InvalidConfig {
            field: "confidence",
            ..
        })
    ));
    let nan = CompareConfig {
        min_effect_pct: f64::NAN,
        ..config
    };
    let err = compare_latency(
        &RunLatency::total_only(&flat.total),
        &RunLatency::total_only(&flat.total),
        &nan,
    );
    assert!(err.is_err());
}

#[test]
fn long_runs_are_grouped_into_at_most_max_blocks() {
    let mut rng = Rng::new(21);
    let run = Shape::noisy(300, 20, 0.0).draw(&mut rng);
    let config = quick_config();
    let c = compare(&run, &run, Use::Intervals, &config);
    assert_eq!(
        c.method_before,
        BootstrapMethod::IntervalBlocks {
            blocks: 100,
            intervals_per_block: 3
        }
    );
}

#[test]
fn error_rate_comparison() {
    let config = CompareConfig::default();
    let check = |b: (u64, u64), a: (u64, u64)| {
        compare_error_rate(
            ErrorCounts {
                requests: b.0,
                errors: b.1,
            },
            ErrorCounts {
                requests: a.0,
                errors: a.1,
            },
            &config,
        )
    };
    let worse = check((100_000, 100), (100_000, 200)).unwrap();
    assert_eq!(worse.verdict, Verdict::Regressed);
    assert!((worse.delta_pp - 0.1).abs() < 1e-12);
    assert!(worse.ci_pp.unwrap().low > 0.0);
    assert_eq!(worse.relative_change_pct, Some(100.0));

    let same = check((100_000, 100), (100_000, 104)).unwrap();
    assert_eq!(same.verdict, Verdict::NoSignificantChange);

    let none = check((10_000, 0), (10_000, 0)).unwrap();
    assert_eq!(none.verdict, Verdict::NoSignificantChange);
    assert_eq!(none.p_value, 1.0);

    let from_zero = check((100_000, 0), (100_000, 30)).unwrap();
    assert_eq!(from_zero.verdict, Verdict::Regressed);
    let fixed = check((100_000, 30), (100_000, 0)).unwrap();
    assert_eq!(fixed.verdict, Verdict::Improved);

    assert!(matches!(
        check((0, 0), (10, 1)).unwrap().verdict,
        Verdict::InsufficientData { .. }
    ));
    assert!(matches!(
        check((10, 11), (10, 1)),
        Err(CompareError::InvalidCounts { side: "before", .. })
    ));

    // A/A: 500 pairs of 10,000 requests at a true 1% error rate.
    let mut rng = Rng::new(22);
    let mut false_alarms = 0;
    for _ in 0..500 {
        let draw = |rng: &mut Rng| (0..10_000).filter(|_| rng.uniform() < 0.01).count() as u64;
        let (b, a) = (draw(&mut rng), draw(&mut rng));
        false_alarms +=
            (check((10_000, b), (10_000, a)).unwrap().verdict == Verdict::Regressed) as usize;
    }
    eprintln!("error rate A/A: {false_alarms} false regressions in 500 pairs");
    assert!(false_alarms <= 25, "{false_alarms}");
}

#[test]
fn throughput_comparison() {
    let config = CompareConfig::default();
    let sample = |rps: &[f64]| ThroughputSample {
        requests: rps.iter().sum::<f64>() as u64,
        duration_s: rps.len() as f64,
        interval_rps: rps.to_vec(),
    };
    let before = sample(&[1000.0, 1010.0, 990.0, 1005.0, 995.0, 1000.0]);
    let slower = sample(&[800.0, 810.0, 790.0, 805.0, 795.0, 800.0]);
    let c = compare_throughput(&before, &slower, &config).unwrap();
    assert_eq!(c.verdict, Verdict::Regressed);
    assert!((c.delta_pct.unwrap() + 20.0).abs() < 0.01);
    assert!(matches!(
        c.test,
        RateTest::IntervalWelch {
            intervals_before: 6,
            intervals_after: 6
        }
    ));
    let ci = c.ci_pct.unwrap();
    assert!(ci.low < -20.0 && ci.high > -20.0 && ci.high < 0.0, "{ci:?}");

    let noisy = sample(&[1200.0, 800.0, 1100.0, 700.0, 1300.0, 900.0]);
    assert_eq!(
        compare_throughput(&before, &noisy, &config)
            .unwrap()
            .verdict,
        Verdict::NoSignificantChange
    );

    let faster = ThroughputSample {
        requests: 12_000,
        duration_s: 10.0,
        interval_rps: vec![],
    };
    let base = ThroughputSample {
        requests: 10_000,
        duration_s: 10.0,
        interval_rps: vec![],
    };
    let c = compare_throughput(&base, &faster, &config).unwrap();
    assert_eq!(c.test, RateTest::PoissonCounts);
    assert_eq!(c.verdict, Verdict::Improved);

    let idle = ThroughputSample {
        requests: 0,
        duration_s: 0.0,
        interval_rps: vec![],
    };
    assert!(matches!(
        compare_throughput(&idle, &base, &config).unwrap().verdict,
        Verdict::InsufficientData { .. }
    ));
}
