//! The lab's dependencies: payment gateway and email service as separate HTTP servers, and the client that calls them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::LatencyDist;
use crate::telemetry::{end, set_attr, set_error, Service, Telemetry};
use crate::LabError;

struct DepState {
    service: Service,
    route: &'static str,
    latency: LatencyDist,
    telemetry: Arc<Telemetry>,
    served: AtomicU64,
}

/// A running dependency server.
pub(crate) struct DepServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Starts a dependency server on 127.0.0.1:0 answering `POST route` after `latency`.
pub(crate) async fn start_dependency(
    service: Service,
    route: &'static str,
    latency: LatencyDist,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<DepServer, LabError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|source| LabError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| LabError::Bind {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })?;
    let state = Arc::new(DepState {
        service,
        route,
        latency,
        telemetry,
        served: AtomicU64::new(0),
    });
    let app = Router::new()
        .route(route, post(serve_dependency))
        .route("/health", get(|| async { "ok" }))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
    });
    Ok(DepServer { addr, task })
}

async fn serve_dependency(State(state): State<Arc<DepState>>, headers: HeaderMap) -> String {
    let parent = state.telemetry.extract(&headers);
    let cx = state.telemetry.start(
        state.service,
        format!("POST {}", state.route),
        SpanKind::Server,
        &parent,
        vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", state.route),
            KeyValue::new("http.response.status_code", 200_i64),
        ],
    );
    let delay = state.latency.sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let n = state.served.fetch_add(1, Ordering::Relaxed) + 1;
    end(&cx);
    match state.service {
        Service::Payment => format!("{{\"ref\":\"pay_{n}\"}}"),
        _ => format!("{{\"id\":\"msg_{n}\"}}"),
    }
}

/// Why a dependency call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    Timeout,
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("timed out"),
            CallError::Failed(why) => f.write_str(why),
        }
    }
}

/// HTTP client for the dependencies (keep-alive pool, W3C `traceparent` injected).
pub(crate) struct DepClient {
    client: Client<HttpConnector, Full<Bytes>>,
    telemetry: Arc<Telemetry>,
}

impl DepClient {
    pub fn new(telemetry: Arc<Telemetry>) -> DepClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        DepClient { client, telemetry }
    }

    /// POSTs `body` to `http://addr{route}` inside a client span named `POST {route}`.
    pub async fn post(
        &self,
        peer: &'static str,
        addr: SocketAddr,
        route: &'static str,
        body: String,
        parent: &Context,
        timeout: Option<Duration>,
    ) -> Result<Bytes, CallError> {
        let cx = self.telemetry.start(
            Service::Checkout,
            format!("POST {route}"),
            SpanKind::Client,
            parent,
            vec![
                KeyValue::new("peer.service", peer),
                KeyValue::new("server.address", addr.ip().to_string()),
                KeyValue::new("server.port", i64::from(addr.port())),
                KeyValue::new("http.request.method", "POST"),
            ],
        );
        let call = self.send(addr, route, body, &cx);
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Timeout),
            },
            None => call.await,
        };
        match &result {
            Ok(_) => {}
            Err(CallError::Timeout) => set_error(&cx, "timeout"),
            Err(CallError::Failed(why)) => set_error(&cx, why.clone()),
        }
        end(&cx);
        result
    }

    async fn send(
        &self,
        addr: SocketAddr,
        route: &'static str,
        body: String,
        cx: &Context,
    ) -> Result<Bytes, CallError> {
        let uri = format!("http://{addr}{route}");
        let mut req = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Failed(e.to_string()))?;
        self.telemetry.inject(cx, req.headers_mut());
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let status = resp.status();
        set_attr(
            cx,
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        );
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError::Failed(format!("status {status}")));
        }
        Ok(body)
    }
}
