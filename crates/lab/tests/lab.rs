//! Functional tests of the lab over real loopback sockets: endpoints, knobs and their fixes, traces.

mod common;

use std::time::{Duration, Instant};

use chokepoint_lab::{start, Fix, LabConfig, LatencyDist, SeedSize, Stall};
use common::{closed_loop, request, small_config, Conn};

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_and_bad_input_is_400() {
    let lab = start(small_config()).await.unwrap();
    let addr = lab.addr();

    let health = request(addr, "GET", "/health", "").await;
    assert_eq!(health.status, 200);

    let random = request(addr, "POST", "/checkout", "").await;
    assert_eq!(random.status, 200, "{:?}", random.body);
    let v = random.json();
    assert_eq!(v["payment"], "charged");
    assert_eq!(v["email"], "sent");
    assert!(v["order_id"].as_i64().unwrap() > 5_000);

    let explicit = request(
        addr,
        "POST",
        "/checkout",
        r#"{"user_id": 7, "items": [{"product_id": 3, "qty": 2}]}"#,
    )
    .await;
    assert_eq!(explicit.status, 200);
    assert_eq!(explicit.json()["user_id"], 7);

    for bad in [
        "{",
        r#"{"user_id": 7}"#,
        r#"{"user_id": 0, "items": [{"product_id": 3, "qty": 2}]}"#,
        r#"{"user_id": 7, "items": [{"product_id": 999999, "qty": 2}]}"#,
        r#"{"user_id": 7, "items": [{"product_id": 3, "qty": 0}]}"#,
        r#"{"user_id": 7, "items": []}"#,
    ] {
        let r = request(addr, "POST", "/checkout", bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().len() > 5, "{bad}");
    }

    let products = request(addr, "GET", "/products", "").await;
    assert_eq!(products.status, 200);
    assert_eq!(products.json()["bestsellers"].as_array().unwrap().len(), 20);
    let one = request(addr, "GET", "/products/5", "").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], 5);
    assert_eq!(request(addr, "GET", "/products/0", "").await.status, 404);
    assert_eq!(request(addr, "GET", "/products/abc", "").await.status, 400);

    let orders = request(addr, "GET", "/orders?user_id=3", "").await;
    assert_eq!(orders.status, 200);
    assert_eq!(orders.json()["orders"].as_array().unwrap().len(), 10);
    assert_eq!(
        request(addr, "GET", "/orders?user_id=x", "").await.status,
        400
    );
    assert_eq!(request(addr, "GET", "/orders", "").await.status, 200);

    let config = request(addr, "GET", "/lab/config", "").await.json();
    assert_eq!(config["pool_size"], 16);
    assert!(config["capacity_rps"].is_null());
    let stats = request(addr, "GET", "/lab/stats", "").await.json();
    assert_eq!(stats["checkouts"], 2);
    assert_eq!(stats["checkout_errors"], 6);
    assert_eq!(request(addr, "GET", "/nope", "").await.status, 404);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_email_costs_its_latency_and_async_email_removes_it() {
    let mut config = small_config();
    config.email_latency = LatencyDist::Fixed(MS(40));
    let lab = start(config.clone()).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    for _ in 0..8 {
        let r = conn.send("POST", "/checkout", "", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["email"], "sent");
        assert!(r.latency >= MS(40), "sync checkout took {:?}", r.latency);
    }
    lab.shutdown().await;

    let lab = start(config.with_fix(Fix::AsyncEmail)).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    let mut latencies = Vec::new();
    for _ in 0..8 {
        let r = conn.send("POST", "/checkout", "", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["email"], "queued");
        latencies.push(r.latency);
    }
    latencies.sort();
    assert!(latencies[4] < MS(20), "async median {:?}", latencies[4]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.stats().emails_sent < 8 && Instant::now() < deadline {
        tokio::time::sleep(MS(20)).await;
    }
    assert_eq!(
        lab.stats().emails_sent,
        8,
        "the workers deliver every queued email"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_timeout_caps_latency_with_a_deferred_charge() {
    let mut config = small_config();
    config.payment_latency = LatencyDist::Fixed(MS(300));
    let lab = start(config.clone()).await.unwrap();
    let r = request(lab.addr(), "POST", "/checkout", "").await;
    assert_eq!(r.json()["payment"], "charged");
    assert!(r.latency >= MS(300), "{:?}", r.latency);
    lab.shutdown().await;

    let lab = start(config.with_fix(Fix::PaymentTimeout(MS(50))))
        .await
        .unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    for _ in 0..3 {
        let r = conn.send("POST", "/checkout", "", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["payment"], "deferred");
        assert!(
            r.latency >= MS(50) && r.latency < MS(250),
            "{:?}",
            r.latency
        );
    }
    assert_eq!(lab.stats().payment_timeouts, 3);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_issues_a_query_per_order_and_join_issues_one() {
    let mut config = small_config();
    config.n_plus_one = true;
    // 5000 orders over 500 customers: exactly 10 orders each.
    let lab = start(config.clone()).await.unwrap();
    let before = lab.stats().db_queries;
    let r = request(lab.addr(), "GET", "/orders?user_id=3", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-lab-queries"], "11");
    assert_eq!(r.json()["orders"].as_array().unwrap().len(), 10);
    assert_eq!(lab.stats().db_queries - before, 11);
    lab.shutdown().await;

    let lab = start(config.with_fix(Fix::Join)).await.unwrap();
    let before = lab.stats().db_queries;
    let r = request(lab.addr(), "GET", "/orders?user_id=3", "").await;
    assert_eq!(r.headers["x-lab-queries"], "1");
    assert_eq!(r.json()["orders"].as_array().unwrap().len(), 10);
    assert_eq!(r.json()["orders"][0]["customer"], "Customer 3");
    assert_eq!(lab.stats().db_queries - before, 1);
    lab.shutdown().await;
}

async fn median_orders_latency(config: LabConfig) -> Duration {
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    let mut latencies = Vec::new();
    for user in 1..=25 {
        let r = conn
            .send("GET", &format!("/orders?user_id={}", user * 37), "", &[])
            .await;
        assert_eq!(r.status, 200);
        latencies.push(r.latency);
    }
    lab.shutdown().await;
    latencies.sort();
    latencies[latencies.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_index_makes_orders_measurably_slower() {
    let mut config = small_config();
    config.seed = SeedSize {
        customers: 2_000,
        products: 200,
        orders: 100_000,
    };
    config.missing_index = true;
    let slow = median_orders_latency(config.clone()).await;
    let fast = median_orders_latency(config.with_fix(Fix::Index)).await;
    assert!(
        slow > fast * 3 && slow > MS(1),
        "missing index {slow:?} vs index {fast:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_pause_every_request_and_no_stall_removes_them() {
    let mut config = small_config();
    config.stall = Some(Stall {
        every: MS(400),
        pause: MS(150),
    });
    let lab = start(config.clone()).await.unwrap();
    let load = closed_loop(lab.addr(), "POST", "/checkout", 2, MS(0), MS(1_300), 3_000).await;
    assert_eq!(load.errors, 0);
    assert!(
        load.quantile(1.0) >= MS(100),
        "max {:?}",
        load.quantile(1.0)
    );
    assert!(lab.stats().stalls >= 2, "{:?}", lab.stats().stalls);
    lab.shutdown().await;

    let lab = start(config.with_fix(Fix::NoStall)).await.unwrap();
    let load = closed_loop(lab.addr(), "POST", "/checkout", 2, MS(0), MS(800), 3_000).await;
    assert_eq!(lab.stats().stalls, 0);
    assert!(
        load.quantile(0.99) < MS(60),
        "p99 {:?}",
        load.quantile(0.99)
    );
    lab.shutdown().await;
}

async fn concurrent_product_reads(config: LabConfig) -> (u64, Vec<u16>) {
    let lab = start(config).await.unwrap();
    let addr = lab.addr();
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(Conn::open(addr).await);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.send("GET", "/products", "", &[]).await.status }))
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let loads = lab.stats().cache_loads;
    lab.shutdown().await;
    (loads, statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_collapses_a_stampede_to_one_load() {
    let mut config = small_config();
    config.seed.orders = 40_000;
    config.stampede = true;
    let (stampede_loads, statuses) = concurrent_product_reads(config.clone()).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let (single_loads, statuses) =
        concurrent_product_reads(config.with_fix(Fix::SingleFlight)).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(single_loads, 1);
    assert!(stampede_loads >= 4, "stampede loads {stampede_loads}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_entries_expire_after_ttl() {
    let mut config = small_config();
    config.cache_ttl = MS(150);
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    let first = conn.send("GET", "/products/9", "", &[]).await;
    assert_eq!(first.headers["x-lab-cache"], "miss");
    let second = conn.send("GET", "/products/9", "", &[]).await;
    assert_eq!(second.headers["x-lab-cache"], "hit");
    tokio::time::sleep(MS(200)).await;
    let third = conn.send("GET", "/products/9", "", &[]).await;
    assert_eq!(third.headers["x-lab-cache"], "miss");
    assert_eq!(lab.stats().cache_loads, 2);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_endpoint_reports_knobs_and_capacity() {
    let mut config = LabConfig::scenario("pool-exhaustion").unwrap();
    config.seed = small_config().seed;
    let lab = start(config).await.unwrap();
    assert_eq!(lab.capacity_rps(), Some(200.0));
    let v = request(lab.addr(), "GET", "/lab/config", "").await.json();
    assert_eq!(v["pool_size"], 4);
    assert_eq!(v["db_hold"], "20ms");
    assert_eq!(v["capacity_rps"], 200.0);
    assert_eq!(v["capacity_bound"], "pool");
    assert_eq!(v["listen"], lab.addr().to_string());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_at_once_get_no_errors() {
    let mut config = small_config();
    config.pool_size = 4;
    let lab = start(config).await.unwrap();
    let load = closed_loop(
        lab.addr(),
        "POST",
        "/checkout",
        128,
        MS(0),
        MS(1_000),
        4_000,
    )
    .await;
    let stats = lab.shutdown().await;
    assert_eq!(load.errors, 0);
    assert_eq!(stats.checkout_errors, 0);
    assert!(stats.checkouts >= 100, "{}", stats.checkouts);
    eprintln!("128 connections: {:.0} req/s", load.throughput());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_and_its_fix_serve_their_request() {
    for name in LabConfig::scenario_names() {
        let info = LabConfig::scenario_info(name).unwrap();
        let mut planted = LabConfig::scenario(name).unwrap();
        planted.seed = small_config().seed;
        let mut configs = vec![planted.clone()];
        if let Some(fix) = chokepoint_lab::recommended_fix(name) {
            configs.push(planted.with_fix(fix));
        }
        for config in configs {
            let lab = start(config.clone()).await.unwrap();
            let r = request(lab.addr(), info.method, info.path, "").await;
            assert_eq!(r.status, 200, "{name} {:?}: {:?}", config.fixes, r.body);
            let served = request(lab.addr(), "GET", "/lab/config", "").await.json();
            assert_eq!(
                served["capacity_rps"].as_f64(),
                config.capacity_rps(),
                "{name}"
            );
            lab.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_labs_run_side_by_side_in_one_process() {
    let mut traced = small_config();
    let dir = tempfile::tempdir().unwrap();
    traced.trace.trace_file = Some(dir.path().join("a.jsonl"));
    let (a, b) = tokio::join!(
        start(traced),
        start(small_config().with_fix(Fix::AsyncEmail))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.addr(), b.addr());
    assert_eq!(
        request(a.addr(), "POST", "/checkout", "").await.json()["email"],
        "sent"
    );
    assert_eq!(
        request(b.addr(), "POST", "/checkout", "").await.json()["email"],
        "queued"
    );
    let (sa, sb) = tokio::join!(a.shutdown(), b.shutdown());
    assert_eq!((sa.checkouts, sb.checkouts), (1, 1));
    assert!(sa.spans_exported > 0);
    assert_eq!(
        sb.spans_exported, 0,
        "b exports nothing: tracing is per lab"
    );
}
