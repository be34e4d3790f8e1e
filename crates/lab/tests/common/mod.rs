//! Test helpers: a bounded closed-loop HTTP/1.1 load client and one-shot requests (loopback only).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use chokepoint_lab::{LabConfig, SeedSize};

/// A small, fast-to-seed configuration with quick dependencies.
pub fn small_config() -> LabConfig {
    LabConfig {
        seed: SeedSize {
            customers: 500,
            products: 100,
            orders: 5_000,
        },
        payment_latency: "fixed:0ms".parse().unwrap(),
        email_latency: "fixed:0ms".parse().unwrap(),
        ..LabConfig::default()
    }
}

/// One response.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub latency: Duration,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        assert!(addr.ip().is_loopback(), "tests only talk to loopback");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender, addr }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let t0 = Instant::now();
        self.sender.ready().await.expect("connection ready");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.sender.send_request(req))
            .await
            .expect("response within 30s")
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
            latency: t0.elapsed(),
        }
    }
}

/// One request on a fresh connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    Conn::open(addr).await.send(method, path, body, &[]).await
}

/// Result of a closed-loop run.
pub struct Load {
    /// Requests completed inside the measured window.
    pub measured: u64,
    /// Non-2xx responses anywhere in the run.
    pub errors: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Latencies of measured requests (bounded by `max_requests`).
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn throughput(&self) -> f64 {
        self.measured as f64 / self.window.as_secs_f64()
    }

    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

/// `concurrency` connections each looping `method path` for `warmup + measure`,
/// never more than `max_requests` requests in all.
pub async fn closed_loop(
    addr: SocketAddr,
    method: &'static str,
    path: &'static str,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    max_requests: u64,
) -> Load {
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + measure;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let issued = issued.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                let reply = conn.send(method, path, "", &[]).await;
                let done = Instant::now();
                if !(200..300).contains(&reply.status) {
                    errors += 1;
                }
                if done >= measure_from && done <= deadline {
                    latencies.push(reply.latency);
                }
            }
            (latencies, errors)
        }));
    }
    let mut load = Load {
        measured: 0,
        errors: 0,
        window: measure,
        latencies: Vec::new(),
    };
    for w in workers {
        let (lat, err) = w.await.expect("worker");
        load.measured += lat.len() as u64;
        load.errors += err;
        load.latencies.extend(lat);
    }
    load
}
