//! Synthetic run directories: `summary.json`, `latency.hlog` and
//! `timeseries.csv` exactly as `run --out` writes them, with latencies drawn
//! from a known log-normal distribution (seeded), so compare, check and
//! history can be tested fast and against known truth.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use chokepoint_report::timeseries::{self, Row};
use chokepoint_report::{LatencyMs, RequestSummary, RunSummary, RUN_SCHEMA};
use chokepoint_stats::bootstrap::Rng;
use chokepoint_stats::{hlog, new_histogram, summarize, Histogram};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Measured seconds (one hlog interval each).
    pub seconds: usize,
    /// Requests per second.
    pub per_second: usize,
    /// Median latency in milliseconds.
    pub median_ms: f64,
    /// Log-normal sigma.
    pub sigma: f64,
    /// Fraction of requests answered with a 5xx (they still have a latency).
    pub error_rate: f64,
    /// Random seed.
    pub seed: u64,
    /// Target URL.
    pub target: String,
    /// Offered rate (open model) or `None` for a closed model with 10 connections.
    pub rate: Option<f64>,
    /// Request names with a latency multiplier, requests spread round-robin.
    pub requests: Vec<(String, f64)>,
    /// A `resources` object to put into summary.json.
    pub resources: Option<serde_json::Value>,
    /// Stretch the tail above P90 so that P99 rises by this fraction (0.2 =
    /// +20%) while P50 and P90 stay put.
    pub p99_increase: f64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seconds: 20,
            per_second: 500,
            median_ms: 10.0,
            sigma: 0.5,
            error_rate: 0.0,
            seed: 1,
            target: "http://127.0.0.1:8080/".into(),
            rate: Some(500.0),
            requests: vec![("default".into(), 1.0)],
            resources: None,
            p99_increase: 0.0,
        }
    }
}

fn latency_ms(l: &Histogram) -> LatencyMs {
    summarize(l).into()
}

/// Writes a run directory; returns its summary.
pub fn write_run(dir: &Path, spec: &Spec) -> RunSummary {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(spec.seed);
    let mut total = new_histogram();
    let mut by_name: Vec<(Histogram, u64, u64)> = spec
        .requests
        .iter()
        .map(|_| (new_histogram(), 0, 0))
        .collect();
    // Log-normal quantiles: median · e^(sigma · z).
    let q90 = spec.median_ms * (spec.sigma * 1.281_551_6).exp();
    let q99 = spec.median_ms * (spec.sigma * 2.326_347_9).exp();
    let stretch = ((1.0 + spec.p99_increase) * q99 - q90) / (q99 - q90);
    let mut log = hlog::header(1_700_000_000.0 + spec.seed as f64, "synthetic");
    let mut csv = String::from(timeseries::HEADER);
    let (mut requests, mut errors) = (0u64, 0u64);
    for second in 0..spec.seconds {
        let mut interval = new_histogram();
        let mut interval_errors = 0;
        for i in 0..spec.per_second {
            let which = i % spec.requests.len();
            let z = rng.normal();
            let mut ms = spec.median_ms * (spec.sigma * z).exp();
            if ms > q90 {
                ms = q90 + (ms - q90) * stretch;
            }
            let ms = ms * spec.requests[which].1;
            let us = (ms * 1000.0).max(1.0) as u64;
            interval.record(us).unwrap();
            by_name[which].0.record(us).unwrap();
            by_name[which].1 += 1;
            if rng.uniform() < spec.error_rate {
                interval_errors += 1;
                by_name[which].2 += 1;
            }
        }
        requests += spec.per_second as u64;
        errors += interval_errors;
        total.add(&interval).unwrap();
        log.push_str(&hlog::interval_line(&interval, second as f64, 1.0));
        let s = summarize(&interval);
        csv.push_str(
            &Row {
                second: second as f64,
                requests: spec.per_second as u64,
                ok: spec.per_second as u64 - interval_errors,
                errors: interval_errors,
                rps: spec.per_second as f64,
                p50_ms: s.p50_ms,
                p90_ms: s.p90_ms,
                p99_ms: s.p99_ms,
                max_ms: s.max_ms,
                in_flight: 3,
            }
            .to_csv(),
        );
    }
    let duration_s = spec.seconds as f64;
    let error_map = |n: u64| {
        let mut m = BTreeMap::new();
        if n > 0 {
            m.insert("status_5xx".to_string(), n);
        }
        m
    };
    let by_request = spec
        .requests
        .iter()
        .zip(&by_name)
        .map(|((name, _), (h, n, e))| {
            (
                name.clone(),
                RequestSummary {
                    requests: *n,
                    ok: n - e,
                    errors: error_map(*e),
                    latency_ms: latency_ms(h),
                },
            )
        })
        .collect();
    let latency = latency_ms(&total);
    let summary = RunSummary {
        schema: RUN_SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        target: spec.target.clone(),
        model: if spec.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        rate_target: spec.rate,
        concurrency: if spec.rate.is_some() { None } else { Some(10) },
        arrival: spec.rate.map(|_| "uniform".to_string()),
        started_at: format!(
            "2025-01-01T{:02}:{:02}:{:02}.000Z",
            (spec.seed / 3600) % 24,
            (spec.seed / 60) % 60,
            spec.seed % 60
        ),
        duration_s,
        requests,
        ok: requests - errors,
        errors: error_map(errors),
        error_rate: errors as f64 / requests.max(1) as f64,
        throughput_rps: requests as f64 / duration_s,
        latency_ms: latency,
        service_time_ms: latency,
        by_request,
        ..RunSummary::default()
    };
    let mut json = serde_json::to_value(&summary).unwrap();
    if let Some(resources) = &spec.resources {
        json["resources"] = resources.clone();
    }
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("latency.hlog"), log).unwrap();
    std::fs::write(dir.join("timeseries.csv"), csv).unwrap();
    summary
}
