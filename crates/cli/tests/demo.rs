//! `chokepoint demo` end to end: the lab in-process, a baseline, the fix, the validation.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn demo_validates_the_pool_fix_with_statistics() {
    let out = chokepoint(&["demo", "--quick", "--json"], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["schema"], "chokepoint.demo.v1");
    assert_eq!(d["scenario"], "pool-exhaustion");
    assert_eq!(d["fix"], "pool=64");
    // 70% of the analytic capacity (4 connections / 20 ms = 200 req/s).
    assert_eq!(f(&d["rate"]), 140.0);
    let before = &d["baseline"];
    let after = &d["fixed"];
    assert!(u(&before["requests"]) > 500, "{before}");
    assert_eq!(u(&before["ok"]), u(&before["requests"]));
    // Queueing for the pool shows in the tail, not the median.
    assert!(
        f(&before["latency_ms"]["p95"]) > 1.3 * f(&after["latency_ms"]["p95"]),
        "{d}"
    );
    assert_eq!(
        d["comparison"]["verdict"], "improved",
        "{}",
        d["comparison"]
    );
    let p95 = d["comparison"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "p95")
        .unwrap();
    assert_eq!(p95["verdict"], "improved", "{p95}");
    assert!(
        f(&p95["ci_pct"][1]) < 0.0,
        "the whole interval is an improvement: {p95}"
    );
}

#[test]
fn demo_rejects_unknown_scenarios_listing_the_valid_ones() {
    let out = chokepoint(&["demo", "--scenario", "nope"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown scenario `nope`")
            && stderr.contains("pool-exhaustion")
            && stderr.contains("healthy"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1);
}
