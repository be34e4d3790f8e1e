//! The planted leak is real retained memory: process RSS grows by about
//! requests x leak_per_request, and with `--fix no-leak` it does not.
//! Its own test binary, so no other test's allocations move this process's RSS.

mod common;

use chokepoint_lab::{rss_bytes, start, Fix, LabConfig};
use common::{closed_loop, small_config};
use std::time::Duration;

const LEAK: u64 = 256 << 10;
const REQUESTS: u64 = 400;

/// Runs REQUESTS checkouts; returns (RSS growth, bytes the lab says it leaked).
async fn rss_growth(config: LabConfig) -> (i64, u64) {
    let lab = start(config).await.unwrap();
    // Warm up connections, allocator arenas and SQLite caches first.
    closed_loop(
        lab.addr(),
        "POST",
        "/checkout",
        4,
        Duration::ZERO,
        Duration::from_secs(5),
        50,
    )
    .await;
    let before = rss_bytes().expect("RSS readable on Linux") as i64;
    let leaked_before = lab.stats().leaked_bytes;
    let load = closed_loop(
        lab.addr(),
        "POST",
        "/checkout",
        4,
        Duration::ZERO,
        Duration::from_secs(20),
        REQUESTS,
    )
    .await;
    assert_eq!(load.errors, 0);
    assert_eq!(load.measured, REQUESTS, "every request completed in time");
    let after = rss_bytes().unwrap() as i64;
    let leaked = lab.stats().leaked_bytes - leaked_before;
    lab.shutdown().await;
    (after - before, leaked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_grows_rss_and_no_leak_does_not() {
    let mut config = small_config();
    config.leak_per_request = LEAK;

    let (fixed_growth, fixed_leaked) = rss_growth(config.clone().with_fix(Fix::NoLeak)).await;
    let (leak_growth, leaked) = rss_growth(config).await;
    let expected = (LEAK * REQUESTS) as i64; // 100 MiB
    eprintln!(
        "RSS growth: leak {} MiB (expected {} MiB), no-leak {} MiB",
        leak_growth >> 20,
        expected >> 20,
        fixed_growth >> 20
    );
    assert_eq!(fixed_leaked, 0);
    assert_eq!(leaked, LEAK * REQUESTS);
    assert!(
        leak_growth >= expected * 8 / 10,
        "leak grew RSS by only {leak_growth} bytes"
    );
    assert!(
        fixed_growth < expected / 4,
        "no-leak grew RSS by {fixed_growth} bytes"
    );
}
