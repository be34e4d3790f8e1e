//! Trace tests: the OTLP/JSON lines file holds every step's span, linked parent to child,
//! across the dependency servers, inside the trace the client's `traceparent` named.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chokepoint_lab::{start, Fix, LabConfig};
use common::{small_config, Conn};
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    kind: i64,
    start: u128,
    end: u128,
    attributes: HashMap<String, Value>,
}

/// Runs one checkout with a `traceparent` and returns every exported span.
async fn traced_checkout(config: LabConfig) -> Vec<Span> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let mut config = config;
    config.trace.trace_file = Some(file.clone());
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let r = conn
        .send("POST", "/checkout", "", &[("traceparent", &traceparent)])
        .await;
    assert_eq!(r.status, 200);
    // An async email finishes after the response; let the worker run.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lab.stats().emails_sent < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = lab.shutdown().await;
    assert_eq!(stats.spans_dropped, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut spans = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).expect("each line is one JSON request");
        for rs in request["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
                .expect("service.name");
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    let attributes = s["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
                        .collect();
                    spans.push(Span {
                        service: service.clone(),
                        trace_id: s["traceId"].as_str().unwrap().to_string(),
                        span_id: s["spanId"].as_str().unwrap().to_string(),
                        parent: s["parentSpanId"].as_str().map(String::from),
                        name: s["name"].as_str().unwrap().to_string(),
                        kind: s["kind"].as_i64().unwrap(),
                        start: s["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                        end: s["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                        attributes,
                    });
                }
            }
        }
    }
    assert_eq!(spans.len() as u64, stats.spans_exported);
    spans
}

fn find<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {service}/{name} in {spans:#?}");
    found[0]
}

fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        child.parent.as_deref(),
        Some(parent.span_id.as_str()),
        "{} should be a child of {}",
        child.name,
        parent.name
    );
    assert!(
        child.start >= parent.start,
        "{} starts inside {}",
        child.name,
        parent.name
    );
}

fn is_wait(span: &Span) -> bool {
    span.attributes.get("chokepoint.wait") == Some(&serde_json::json!({"boolValue": true}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_checkout_trace_has_every_step_and_joins_the_client_trace() {
    let mut config = small_config();
    config.lock_hold = Duration::from_millis(2);
    let spans = traced_checkout(config).await;
    assert!(
        spans.iter().all(|s| s.trace_id == TRACE_ID),
        "one trace: the client's"
    );

    let root = find(&spans, "checkout", "POST /checkout");
    assert_eq!(root.kind, 2);
    assert_eq!(root.parent.as_deref(), Some(CLIENT_SPAN));
    assert_eq!(
        root.attributes["http.response.status_code"],
        serde_json::json!({"intValue": "200"})
    );

    for name in ["cart.validate", "db.pool.acquire", "inventory.update"] {
        assert_child(find(&spans, "checkout", name), root);
    }
    let acquire = find(&spans, "checkout", "db.pool.acquire");
    assert!(is_wait(acquire));
    let query = find(&spans, "checkout", "db.query");
    assert_child(query, root);
    assert!(!is_wait(query));
    assert!(query.start >= acquire.end, "the query runs after the wait");

    let update = find(&spans, "checkout", "inventory.update");
    let lock_wait = find(&spans, "checkout", "lock.wait");
    let lock_hold = find(&spans, "checkout", "lock.hold");
    assert_child(lock_wait, update);
    assert_child(lock_hold, update);
    assert!(is_wait(lock_wait) && !is_wait(lock_hold));
    assert!(
        lock_hold.end - lock_hold.start >= 2_000_000,
        "hold lasts lock_hold"
    );

    for (service, route) in [("payment", "POST /charge"), ("email", "POST /send")] {
        let client = find(&spans, "checkout", route);
        assert_eq!(client.kind, 3);
        assert_child(client, root);
        let server = find(&spans, service, route);
        assert_eq!(server.kind, 2);
        assert_child(server, client);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_email_trace_splits_enqueue_queue_wait_and_processing() {
    let spans = traced_checkout(small_config().with_fix(Fix::AsyncEmail)).await;
    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID));
    let root = find(&spans, "checkout", "POST /checkout");
    let enqueue = find(&spans, "checkout", "email.enqueue");
    assert_eq!(enqueue.kind, 4);
    assert_child(enqueue, root);
    let queue_wait = find(&spans, "checkout", "email.queue.wait");
    assert!(is_wait(queue_wait));
    assert_child(queue_wait, enqueue);
    let process = find(&spans, "checkout", "email.process");
    assert_eq!(process.kind, 5);
    assert_child(process, enqueue);
    let client = find(&spans, "checkout", "POST /send");
    assert_child(client, process);
    assert_child(find(&spans, "email", "POST /send"), client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traceparent_each_request_starts_its_own_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let mut config = small_config();
    config.trace.trace_file = Some(file.clone());
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    for _ in 0..3 {
        assert_eq!(conn.send("POST", "/checkout", "", &[]).await.status, 200);
    }
    lab.shutdown().await;
    let text = std::fs::read_to_string(&file).unwrap();
    let mut roots = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    if s["name"] == "POST /checkout" {
                        assert!(s.get("parentSpanId").is_none());
                        roots.push(s["traceId"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    roots.sort();
    roots.dedup();
    assert_eq!(roots.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_export_posts_json_to_v1_traces() {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::sync::{Arc, Mutex};

    // A tiny OTLP/HTTP receiver on loopback that records what it gets.
    let received: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = received.clone();
    let server = tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let ctype = req.headers()["content-type"].to_str().unwrap().to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        sink.lock().unwrap().push((path, ctype, v));
                        Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"{}"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let mut config = small_config();
    config.trace.otlp_endpoint = Some(format!("http://{addr}"));
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    assert_eq!(conn.send("POST", "/checkout", "", &[]).await.status, 200);
    lab.shutdown().await;
    server.abort();
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "the receiver got at least one export");
    let (path, ctype, body) = &got[0];
    assert_eq!(path, "/v1/traces");
    assert_eq!(ctype, "application/json");
    assert!(body["resourceSpans"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
}

/// Reads every span of a trace file (service, name, parent, attributes).
fn read_spans(path: &std::path::Path) -> Vec<Span> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut spans = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).unwrap();
        for rs in request["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"][0]["value"]["stringValue"]
                .as_str()
                .unwrap()
                .to_string();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    spans.push(Span {
                        service: service.clone(),
                        trace_id: s["traceId"].as_str().unwrap().to_string(),
                        span_id: s["spanId"].as_str().unwrap().to_string(),
                        parent: s["parentSpanId"].as_str().map(String::from),
                        name: s["name"].as_str().unwrap().to_string(),
                        kind: s["kind"].as_i64().unwrap(),
                        start: s["startTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                        end: s["endTimeUnixNano"].as_str().unwrap().parse().unwrap(),
                        attributes: s["attributes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
                            .collect(),
                    });
                }
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_plus_one_and_stalls_show_in_traces() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let mut config = small_config();
    config.n_plus_one = true;
    config.stall = Some(chokepoint_lab::Stall {
        every: Duration::from_millis(200),
        pause: Duration::from_millis(100),
    });
    config.trace.trace_file = Some(file.clone());
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    let r = conn.send("GET", "/orders?user_id=4", "", &[]).await;
    assert_eq!(r.status, 200);
    let until = std::time::Instant::now() + Duration::from_millis(600);
    let mut n = 0;
    while std::time::Instant::now() < until && n < 2_000 {
        assert_eq!(conn.send("POST", "/checkout", "", &[]).await.status, 200);
        n += 1;
    }
    let stats = lab.shutdown().await;
    let spans = read_spans(&file);

    let orders = find(&spans, "checkout", "GET /orders");
    let queries = spans
        .iter()
        .filter(|s| s.name == "db.query" && s.parent.as_deref() == Some(orders.span_id.as_str()))
        .count();
    assert_eq!(queries, 11, "1 orders query + 10 customer queries");

    let stall_waits: Vec<&Span> = spans.iter().filter(|s| s.name == "stall.wait").collect();
    assert!(stats.stalls >= 2, "{}", stats.stalls);
    assert!(!stall_waits.is_empty(), "a request waited for a pause");
    assert!(stall_waits.iter().all(|s| is_wait(s)));
}

// One thread: the exporter cannot drain while the request path runs, so a
// one-span queue overflows deterministically.
#[tokio::test(flavor = "current_thread")]
async fn a_full_export_queue_drops_and_counts_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.trace.trace_file = Some(dir.path().join("spans.jsonl"));
    config.trace.queue_capacity = 1;
    let lab = start(config).await.unwrap();
    let mut conn = Conn::open(lab.addr()).await;
    for _ in 0..5 {
        assert_eq!(conn.send("POST", "/checkout", "", &[]).await.status, 200);
    }
    let stats = lab.shutdown().await;
    // 5 checkouts make ~55 spans, several between two exporter turns.
    assert!(stats.spans_dropped > 0, "{stats:?}");
    assert!(stats.spans_exported > 0, "{stats:?}");
}
