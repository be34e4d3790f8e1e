//! Measures the figures quoted in docs/lab.md: seeding time at the default size,
//! the cost of the missing `orders(user_id)` index on `GET /orders`, the cost of
//! one bestseller cache fill, and what span export costs `POST /checkout`.
//!
//! `cargo run -p chokepoint-lab --example lab_figures` (loopback only, ~1 minute).

use std::time::{Duration, Instant};

use chokepoint_lab::{start, Fix, LabConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

async fn latencies(config: LabConfig, label: &str, path: fn(u32) -> String) -> Vec<Duration> {
    let t0 = Instant::now();
    let lab = start(config).await.expect("lab starts");
    println!("{label}: started (seeded) in {:?}", t0.elapsed());
    let stream = tokio::net::TcpStream::connect(lab.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    for i in 0..200_u32 {
        let req = http::Request::get(path(i))
            .header("host", lab.addr().to_string())
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let t = Instant::now();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await.unwrap();
        latencies.push(t.elapsed());
    }
    lab.shutdown().await;
    latencies.sort();
    latencies
}

fn show(label: &str, v: &[Duration]) {
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label} p50 {:?}  p90 {:?}  p99 {:?}  (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        v.len()
    );
}

/// Closed loop: 16 connections, 3 s of `POST /checkout`; returns requests per second.
async fn checkout_throughput(config: LabConfig) -> f64 {
    let lab = start(config).await.expect("lab starts");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for _ in 0..16 {
        let addr = lab.addr();
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut done = 0_u64;
            while Instant::now() < deadline && done < 100_000 {
                let req = http::Request::post("/checkout")
                    .header("host", addr.to_string())
                    .body(Full::new(bytes::Bytes::new()))
                    .unwrap();
                sender.ready().await.unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                let _ = resp.into_body().collect().await.unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let stats = lab.shutdown().await;
    println!(
        "  spans exported {}, dropped {}",
        stats.spans_exported, stats.spans_dropped
    );
    total as f64 / 3.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let missing = LabConfig::scenario("missing-index").unwrap();
    let orders = |i: u32| format!("/orders?user_id={}", 1 + (i * 47) % 10_000);
    let slow = latencies(missing.clone(), "missing-index", orders).await;
    let fast = latencies(missing.with_fix(Fix::Index), "index", orders).await;
    show("missing-index: GET /orders", &slow);
    show("index: GET /orders", &fast);
    // A zero TTL makes every GET /products a cache fill: the cost one stampede load adds.
    let uncached = LabConfig {
        cache_ttl: Duration::ZERO,
        ..LabConfig::default()
    };
    let fills = latencies(uncached, "ttl=0", |_| "/products".to_string()).await;
    show("cache fill: GET /products", &fills);

    let dir = std::env::temp_dir().join(format!("lab-figures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let small = chokepoint_lab::SeedSize {
        customers: 1_000,
        products: 100,
        orders: 10_000,
    };
    let untraced = LabConfig {
        seed: small,
        ..LabConfig::default()
    };
    let mut traced = untraced.clone();
    traced.trace.trace_file = Some(dir.join("spans.jsonl"));
    let off = checkout_throughput(untraced).await;
    println!("tracing off: POST /checkout {off:.0} req/s (16 connections)");
    let on = checkout_throughput(traced).await;
    println!("trace file:  POST /checkout {on:.0} req/s (16 connections)");
    let _ = std::fs::remove_dir_all(&dir);
}
