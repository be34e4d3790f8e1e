//! The checkout service: shared state, HTTP routes and the handlers for each endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use rusqlite::params;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch, RwLock};

use crate::cache::{Cache, Key, Outcome};
use crate::config::LabConfig;
use crate::db::{Db, Product};
use crate::deps::{CallError, DepClient};
use crate::stats::{Counters, LabStats};
use crate::telemetry::{end, set_attr, set_error, wait_attr, Service, Telemetry};
use crate::LabError;

/// Inventory stock, updated on every checkout.
pub(crate) enum Inventory {
    /// One shared lock around the whole table (the planted contention).
    Locked(Arc<tokio::sync::Mutex<LockedStock>>),
    /// One atomic per product (`--fix lock-free`).
    Atomic(Vec<AtomicI64>),
}

const INITIAL_STOCK: i64 = 1_000_000;

/// The stock table behind the shared lock.
pub(crate) struct LockedStock {
    stock: Vec<i64>,
    /// When the previous holder let go: a waiter's hold is timed from the
    /// moment the lock was handed to it, not from when its task got to run.
    released_at: Instant,
}

impl Inventory {
    pub fn new(products: usize, lock_free: bool) -> Inventory {
        if lock_free {
            Inventory::Atomic(
                (0..products)
                    .map(|_| AtomicI64::new(INITIAL_STOCK))
                    .collect(),
            )
        } else {
            Inventory::Locked(Arc::new(tokio::sync::Mutex::new(LockedStock {
                stock: vec![INITIAL_STOCK; products],
                released_at: Instant::now(),
            })))
        }
    }
}

/// An email waiting in the async queue.
pub(crate) struct EmailJob {
    pub body: String,
    pub parent: Context,
    pub enqueued_at: SystemTime,
}

/// Everything the handlers share.
pub(crate) struct Lab {
    pub config: LabConfig,
    pub telemetry: Arc<Telemetry>,
    pub counters: Arc<Counters>,
    pub db: Db,
    pub catalogue: Vec<Product>,
    pub deps: Arc<DepClient>,
    pub payment_addr: SocketAddr,
    pub email_addr: SocketAddr,
    pub cache: Cache,
    pub inventory: Inventory,
    /// Write-held during a stop-the-world pause; requests pass it at safepoints.
    pub stall_gate: Option<Arc<RwLock<()>>>,
    pub email_tx: Option<mpsc::Sender<EmailJob>>,
    pub leak: Mutex<Vec<Box<[u8]>>>,
}

/// The checkout service's routes.
pub(crate) fn router(lab: Arc<Lab>) -> Router {
    Router::new()
        .route("/checkout", post(checkout))
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/orders", get(orders))
        .route("/health", get(health))
        .route("/lab/config", get(lab_config))
        .route("/lab/stats", get(lab_stats))
        .fallback(not_found)
        .with_state(lab)
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_bytes(status: StatusCode, bytes: Bytes) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Why a request failed, mapped to a status code.
enum Failure {
    BadRequest(String),
    NotFound(String),
    Dependency(String),
    Internal(String),
}

impl From<LabError> for Failure {
    fn from(e: LabError) -> Failure {
        Failure::Internal(e.to_string())
    }
}

impl Failure {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Failure::Dependency(m) => (StatusCode::BAD_GATEWAY, m),
            Failure::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        json_response(status, json!({ "error": msg }))
    }
}

impl Lab {
    /// Starts the server span of an incoming request, joining its `traceparent`.
    fn server_span(
        &self,
        headers: &HeaderMap,
        method: &'static str,
        route: &'static str,
    ) -> Context {
        let parent = self.telemetry.extract(headers);
        self.telemetry.start(
            Service::Checkout,
            format!("{method} {route}"),
            SpanKind::Server,
            &parent,
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route),
            ],
        )
    }

    fn finish(&self, cx: &Context, resp: &Response) {
        let status = resp.status();
        set_attr(
            cx,
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        );
        if status.is_server_error() {
            set_error(cx, status.to_string());
        }
        end(cx);
    }

    /// A stop-the-world safepoint: blocks while a pause is in progress.
    async fn safepoint(&self, cx: &Context) {
        if let Some(gate) = &self.stall_gate {
            let started = SystemTime::now();
            let t0 = Instant::now();
            drop(gate.read().await);
            if t0.elapsed() >= Duration::from_millis(1) {
                self.telemetry
                    .record_wait(Service::Checkout, "stall.wait", cx, started);
            }
        }
    }

    fn random_cart(&self) -> CheckoutRequest {
        let customers = i64::from(self.config.seed.customers);
        let products = self.catalogue.len() as i64;
        let n = fastrand::usize(1..=3);
        CheckoutRequest {
            user_id: fastrand::i64(1..=customers),
            items: (0..n)
                .map(|_| CartItem {
                    product_id: fastrand::i64(1..=products),
                    qty: fastrand::i64(1..=3),
                })
                .collect(),
        }
    }

    fn validate(&self, cart: &CheckoutRequest) -> Result<i64, Failure> {
        let customers = i64::from(self.config.seed.customers);
        if !(1..=customers).contains(&cart.user_id) {
            return Err(Failure::BadRequest(format!(
                "user_id {} does not exist (valid: 1..={customers})",
                cart.user_id
            )));
        }
        if cart.items.is_empty() || cart.items.len() > 50 {
            return Err(Failure::BadRequest(
                "items must hold 1 to 50 entries".to_string(),
            ));
        }
        let mut total = 0_i64;
        for item in &cart.items {
            let product = usize::try_from(item.product_id - 1)
                .ok()
                .and_then(|i| self.catalogue.get(i))
                .ok_or_else(|| {
                    Failure::BadRequest(format!(
                        "product_id {} does not exist (valid: 1..={})",
                        item.product_id,
                        self.catalogue.len()
                    ))
                })?;
            if !(1..=100).contains(&item.qty) {
                return Err(Failure::BadRequest(format!(
                    "qty {} for product_id {} is out of range (valid: 1..=100)",
                    item.qty, item.product_id
                )));
            }
            total += product.price_cents * item.qty;
        }
        Ok(total)
    }

    async fn checkout(&self, cx: &Context, body: &Bytes) -> Result<serde_json::Value, Failure> {
        self.safepoint(cx).await;
        let cart = if body.iter().all(|b| b.is_ascii_whitespace()) {
            self.random_cart()
        } else {
            serde_json::from_slice::<CheckoutRequest>(body).map_err(|e| {
                Failure::BadRequest(format!(
                    "invalid checkout body: {e}; expected {{\"user_id\": N, \"items\": [{{\"product_id\": N, \"qty\": N}}]}}"
                ))
            })?
        };
        let validate_cx = self.telemetry.start(
            Service::Checkout,
            "cart.validate",
            SpanKind::Internal,
            cx,
            vec![KeyValue::new("cart.items", cart.items.len() as i64)],
        );
        let validated = self.validate(&cart);
        if let Err(Failure::BadRequest(msg)) = &validated {
            set_error(&validate_cx, msg.clone());
        }
        end(&validate_cx);
        let total = validated?;

        // Payment gateway.
        self.safepoint(cx).await;
        self.counters.payments.fetch_add(1, Ordering::Relaxed);
        let charge = json!({ "user_id": cart.user_id, "amount_cents": total }).to_string();
        let (payment_ref, payment_state) = match self
            .deps
            .post(
                "payment",
                self.payment_addr,
                "/charge",
                charge,
                cx,
                self.config.payment_timeout,
            )
            .await
        {
            Ok(body) => {
                let reference = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("ref").and_then(|r| r.as_str().map(String::from)))
                    .unwrap_or_else(|| "unknown".to_string());
                (reference, "charged")
            }
            Err(CallError::Timeout) => {
                // Fallback: accept the order, capture the payment later.
                self.counters
                    .payment_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                (format!("deferred-{}", fastrand::u64(..)), "deferred")
            }
            Err(CallError::Failed(why)) => {
                return Err(Failure::Dependency(format!("payment gateway: {why}")));
            }
        };

        // Order write: one pooled connection, held `db_hold` longer.
        self.safepoint(cx).await;
        let hold = self.config.db_hold;
        let user_id = cart.user_id;
        let items: Vec<(i64, i64, i64)> = cart
            .items
            .iter()
            .map(|i| {
                let price = self.catalogue[(i.product_id - 1) as usize].price_cents;
                (i.product_id, i.qty, price)
            })
            .collect();
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let payment_ref_db = payment_ref.clone();
        let order_id = self
            .db
            .step(cx, move |step| {
                step.query("INSERT INTO orders", hold, move |conn| {
                    let tx = rusqlite::Transaction::new_unchecked(
                        conn,
                        rusqlite::TransactionBehavior::Immediate,
                    )?;
                    tx.execute(
                        "INSERT INTO orders (user_id, total_cents, created_at, payment_ref) VALUES (?1, ?2, ?3, ?4)",
                        params![user_id, total, created_at, payment_ref_db],
                    )?;
                    let order_id = tx.last_insert_rowid();
                    {
                        let mut stmt = tx.prepare_cached(
                            "INSERT INTO order_items (order_id, product_id, qty, price_cents) VALUES (?1, ?2, ?3, ?4)",
                        )?;
                        for (product_id, qty, price) in &items {
                            stmt.execute(params![order_id, product_id, qty, price])?;
                        }
                    }
                    tx.commit()?;
                    Ok(order_id)
                })
            })
            .await?;

        // Confirmation email.
        self.safepoint(cx).await;
        let email = json!({
            "to": format!("customer{user_id}@example.test"),
            "subject": format!("Order {order_id} confirmed"),
        })
        .to_string();
        let email_state = match &self.email_tx {
            Some(tx) => {
                let enqueue_cx = self.telemetry.start(
                    Service::Checkout,
                    "email.enqueue",
                    SpanKind::Producer,
                    cx,
                    vec![KeyValue::new("messaging.destination.name", "email")],
                );
                let job = EmailJob {
                    body: email,
                    parent: enqueue_cx.clone(),
                    enqueued_at: SystemTime::now(),
                };
                let state = match tx.try_send(job) {
                    Ok(()) => {
                        self.counters.emails_queued.fetch_add(1, Ordering::Relaxed);
                        "queued"
                    }
                    Err(_) => {
                        self.counters.emails_dropped.fetch_add(1, Ordering::Relaxed);
                        set_error(&enqueue_cx, "email queue full");
                        "dropped"
                    }
                };
                end(&enqueue_cx);
                state
            }
            None => {
                match self
                    .deps
                    .post("email", self.email_addr, "/send", email, cx, None)
                    .await
                {
                    Ok(_) => {
                        self.counters.emails_sent.fetch_add(1, Ordering::Relaxed);
                        "sent"
                    }
                    Err(e) => {
                        self.counters.email_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(Failure::Dependency(format!("email service: {e}")));
                    }
                }
            }
        };

        // Inventory.
        self.safepoint(cx).await;
        self.update_inventory(cx, &cart.items).await?;

        // The planted leak: the allocation happens either way; only the fix releases it.
        let leak = self.config.leak_per_request as usize;
        if leak > 0 {
            let buf = vec![0xA5_u8; leak].into_boxed_slice();
            let leaked = self.counters.leaked_bytes.load(Ordering::Relaxed);
            if !self.config.leak_fixed && leaked + leak as u64 <= self.config.leak_cap {
                if let Ok(mut kept) = self.leak.lock() {
                    kept.push(buf);
                    self.counters
                        .leaked_bytes
                        .fetch_add(leak as u64, Ordering::Relaxed);
                }
            } else {
                std::hint::black_box(&buf);
            }
        }

        Ok(json!({
            "order_id": order_id,
            "user_id": user_id,
            "total_cents": total,
            "payment": payment_state,
            "payment_ref": payment_ref,
            "email": email_state,
        }))
    }

    async fn update_inventory(&self, cx: &Context, items: &[CartItem]) -> Result<(), Failure> {
        let update_cx = self.telemetry.start(
            Service::Checkout,
            "inventory.update",
            SpanKind::Internal,
            cx,
            Vec::new(),
        );
        match &self.inventory {
            Inventory::Atomic(stock) => {
                for item in items {
                    if let Some(slot) = stock.get((item.product_id - 1) as usize) {
                        if slot.fetch_sub(item.qty, Ordering::Relaxed) - item.qty < 0 {
                            slot.fetch_add(INITIAL_STOCK, Ordering::Relaxed);
                        }
                    }
                }
            }
            Inventory::Locked(lock) => {
                let wait_cx = self.telemetry.start(
                    Service::Checkout,
                    "lock.wait",
                    SpanKind::Internal,
                    &update_cx,
                    vec![wait_attr(), KeyValue::new("lock.name", "inventory")],
                );
                let t0 = Instant::now();
                let mut stock = lock.clone().lock_owned().await;
                let acquired_at = stock.released_at.max(t0);
                self.counters
                    .lock_wait_us
                    .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                end(&wait_cx);
                let hold_cx = self.telemetry.start(
                    Service::Checkout,
                    "lock.hold",
                    SpanKind::Internal,
                    &update_cx,
                    vec![KeyValue::new("lock.name", "inventory")],
                );
                for item in items {
                    if let Some(slot) = stock.stock.get_mut((item.product_id - 1) as usize) {
                        *slot -= item.qty;
                        if *slot < 0 {
                            *slot += INITIAL_STOCK;
                        }
                    }
                }
                let hold = self.config.lock_hold;
                if hold.is_zero() {
                    stock.released_at = Instant::now();
                    drop(stock);
                } else {
                    // The critical section lasts `hold` in all (the update and the
                    // thread hop included) and the guard is released on the blocking
                    // thread at the deadline, so capacity is 1 / lock_hold minus only
                    // the next waiter's wake-up. A blocking sleep is precise; the
                    // async timer rounds up to 1ms.
                    let deadline = acquired_at + hold;
                    tokio::task::spawn_blocking(move || {
                        crate::db::sleep_until(deadline);
                        stock.released_at = Instant::now();
                        drop(stock);
                    })
                    .await
                    .map_err(|e| Failure::Internal(e.to_string()))?;
                }
                end(&hold_cx);
            }
        }
        end(&update_cx);
        Ok(())
    }

    async fn bestsellers(&self, cx: &Context) -> Result<(Bytes, Outcome), Failure> {
        self.cache
            .get_or_load(Key::Bestsellers, &self.telemetry, cx, || async {
                self.counters.cache_loads.fetch_add(1, Ordering::Relaxed);
                let load_cx = self.telemetry.start(
                    Service::Checkout,
                    "cache.load",
                    SpanKind::Internal,
                    cx,
                    vec![KeyValue::new("cache.key", "bestsellers")],
                );
                let total = self.catalogue.len();
                let out = self
                    .db
                    .step(&load_cx, move |step| {
                        step.query("SELECT bestsellers", Duration::ZERO, move |conn| {
                            let mut stmt = conn.prepare_cached(
                                "SELECT p.id, p.name, p.price_cents, s.sold
                                 FROM (SELECT product_id, SUM(qty) AS sold FROM order_items
                                       GROUP BY product_id ORDER BY sold DESC LIMIT 20) s
                                 JOIN products p ON p.id = s.product_id ORDER BY s.sold DESC",
                            )?;
                            let rows = stmt
                                .query_map([], |r| {
                                    Ok(json!({
                                        "id": r.get::<_, i64>(0)?,
                                        "name": r.get::<_, String>(1)?,
                                        "price_cents": r.get::<_, i64>(2)?,
                                        "units_sold": r.get::<_, i64>(3)?,
                                    }))
                                })?
                                .collect::<Result<Vec<_>, _>>()?;
                            Ok(Bytes::from(
                                json!({"bestsellers": rows, "total_products": total}).to_string(),
                            ))
                        })
                    })
                    .await;
                end(&load_cx);
                out
            })
            .await
            .map_err(Failure::from)
    }

    async fn product(&self, cx: &Context, id: i64) -> Result<(Bytes, Outcome), Failure> {
        if usize::try_from(id - 1)
            .ok()
            .and_then(|i| self.catalogue.get(i))
            .is_none()
        {
            return Err(Failure::NotFound(format!("product {id} does not exist")));
        }
        self.cache
            .get_or_load(Key::Product(id), &self.telemetry, cx, || async {
                self.counters.cache_loads.fetch_add(1, Ordering::Relaxed);
                let load_cx = self.telemetry.start(
                    Service::Checkout,
                    "cache.load",
                    SpanKind::Internal,
                    cx,
                    vec![KeyValue::new("cache.key", format!("product:{id}"))],
                );
                let out = self
                    .db
                    .step(&load_cx, move |step| {
                        step.query("SELECT product", Duration::ZERO, move |conn| {
                            let mut stmt = conn.prepare_cached(
                                "SELECT id, name, price_cents,
                                        (SELECT COALESCE(SUM(qty), 0) FROM order_items WHERE product_id = ?1)
                                 FROM products WHERE id = ?1",
                            )?;
                            let v = stmt.query_row(params![id], |r| {
                                Ok(json!({
                                    "id": r.get::<_, i64>(0)?,
                                    "name": r.get::<_, String>(1)?,
                                    "price_cents": r.get::<_, i64>(2)?,
                                    "units_sold": r.get::<_, i64>(3)?,
                                }))
                            })?;
                            Ok(Bytes::from(v.to_string()))
                        })
                    })
                    .await;
                end(&load_cx);
                out
            })
            .await
            .map_err(Failure::from)
    }

    async fn orders(
        &self,
        cx: &Context,
        user_id: i64,
    ) -> Result<(serde_json::Value, u64), Failure> {
        let n_plus_one = self.config.n_plus_one;
        let (orders, queries) = self
            .db
            .step(cx, move |step| {
                let mut queries = 1_u64;
                let orders = if n_plus_one {
                    let rows = step.query("SELECT orders", Duration::ZERO, |conn| {
                        let mut stmt = conn.prepare_cached(
                            "SELECT id, user_id, total_cents, created_at FROM orders
                             WHERE user_id = ?1 ORDER BY id DESC LIMIT 100",
                        )?;
                        let rows = stmt
                            .query_map(params![user_id], |r| {
                                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                            })?
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(rows)
                    })?;
                    let mut out = Vec::with_capacity(rows.len());
                    for (id, customer_id, total, created_at) in rows {
                        queries += 1;
                        let name = step.query("SELECT customer", Duration::ZERO, |conn| {
                            conn.prepare_cached("SELECT name FROM customers WHERE id = ?1")?
                                .query_row(params![customer_id], |r| r.get::<_, String>(0))
                        })?;
                        out.push(json!({"id": id, "total_cents": total, "created_at": created_at, "customer": name}));
                    }
                    out
                } else {
                    step.query("SELECT orders JOIN customers", Duration::ZERO, |conn| {
                        let mut stmt = conn.prepare_cached(
                            "SELECT o.id, o.total_cents, o.created_at, c.name FROM orders o
                             JOIN customers c ON c.id = o.user_id
                             WHERE o.user_id = ?1 ORDER BY o.id DESC LIMIT 100",
                        )?;
                        let rows = stmt
                            .query_map(params![user_id], |r| {
                                Ok(json!({
                                    "id": r.get::<_, i64>(0)?,
                                    "total_cents": r.get::<_, i64>(1)?,
                                    "created_at": r.get::<_, i64>(2)?,
                                    "customer": r.get::<_, String>(3)?,
                                }))
                            })?
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(rows)
                    })?
                };
                Ok((orders, queries))
            })
            .await?;
        Ok((json!({"user_id": user_id, "orders": orders}), queries))
    }
}

/// The body of `POST /checkout`.
#[derive(Debug, Deserialize)]
struct CheckoutRequest {
    user_id: i64,
    items: Vec<CartItem>,
}

#[derive(Debug, Deserialize)]
struct CartItem {
    product_id: i64,
    qty: i64,
}

async fn checkout(State(lab): State<Arc<Lab>>, headers: HeaderMap, body: Bytes) -> Response {
    let cx = lab.server_span(&headers, "POST", "/checkout");
    let resp = match lab.checkout(&cx, &body).await {
        Ok(v) => {
            lab.counters.checkouts.fetch_add(1, Ordering::Relaxed);
            json_response(StatusCode::OK, v)
        }
        Err(f) => {
            lab.counters.checkout_errors.fetch_add(1, Ordering::Relaxed);
            f.into_response()
        }
    };
    lab.finish(&cx, &resp);
    resp
}

async fn products(State(lab): State<Arc<Lab>>, headers: HeaderMap) -> Response {
    let cx = lab.server_span(&headers, "GET", "/products");
    lab.counters
        .product_requests
        .fetch_add(1, Ordering::Relaxed);
    lab.safepoint(&cx).await;
    let resp = match lab.bestsellers(&cx).await {
        Ok((bytes, outcome)) => cached_response(&lab, &cx, bytes, outcome),
        Err(f) => f.into_response(),
    };
    lab.finish(&cx, &resp);
    resp
}

async fn product(
    State(lab): State<Arc<Lab>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let cx = lab.server_span(&headers, "GET", "/products/{id}");
    lab.counters
        .product_requests
        .fetch_add(1, Ordering::Relaxed);
    lab.safepoint(&cx).await;
    let resp = match id.parse::<i64>() {
        Err(_) => {
            Failure::BadRequest(format!("product id `{id}` is not an integer")).into_response()
        }
        Ok(id) => match lab.product(&cx, id).await {
            Ok((bytes, outcome)) => cached_response(&lab, &cx, bytes, outcome),
            Err(f) => f.into_response(),
        },
    };
    lab.finish(&cx, &resp);
    resp
}

fn cached_response(lab: &Lab, cx: &Context, bytes: Bytes, outcome: Outcome) -> Response {
    let label = match outcome {
        Outcome::Hit => "hit",
        Outcome::Joined => "joined",
        Outcome::Loaded => "miss",
    };
    if outcome != Outcome::Loaded {
        lab.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    set_attr(cx, KeyValue::new("cache.result", label));
    let mut resp = json_bytes(StatusCode::OK, bytes);
    resp.headers_mut()
        .insert("x-lab-cache", HeaderValue::from_static(label));
    resp
}

async fn orders(
    State(lab): State<Arc<Lab>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let cx = lab.server_span(&headers, "GET", "/orders");
    lab.counters.order_requests.fetch_add(1, Ordering::Relaxed);
    lab.safepoint(&cx).await;
    let customers = i64::from(lab.config.seed.customers);
    let user_id = match query.get("user_id") {
        None => Ok(fastrand::i64(1..=customers)),
        Some(text) => match text.parse::<i64>() {
            Ok(id) if (1..=customers).contains(&id) => Ok(id),
            _ => Err(Failure::BadRequest(format!(
                "user_id `{text}` is not a customer (valid: 1..={customers})"
            ))),
        },
    };
    let resp = match user_id {
        Err(f) => f.into_response(),
        Ok(user_id) => match lab.orders(&cx, user_id).await {
            Ok((value, queries)) => {
                set_attr(&cx, KeyValue::new("db.queries", queries as i64));
                let mut resp = json_response(StatusCode::OK, value);
                resp.headers_mut()
                    .insert("x-lab-queries", HeaderValue::from(queries));
                resp
            }
            Err(f) => f.into_response(),
        },
    };
    lab.finish(&cx, &resp);
    resp
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

async fn lab_config(State(lab): State<Arc<Lab>>) -> Response {
    let mut value = lab.config.to_json();
    if let Some(map) = value.as_object_mut() {
        map.insert("payment_addr".into(), json!(lab.payment_addr.to_string()));
        map.insert("email_addr".into(), json!(lab.email_addr.to_string()));
    }
    json_response(StatusCode::OK, value)
}

async fn lab_stats(State(lab): State<Arc<Lab>>) -> Response {
    let stats = lab.stats();
    json_response(
        StatusCode::OK,
        serde_json::to_value(stats).unwrap_or_else(|_| json!({})),
    )
}

async fn not_found() -> impl IntoResponse {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"error": "no such route; try POST /checkout, GET /products, GET /products/{id}, GET /orders?user_id=N, GET /health, GET /lab/config, GET /lab/stats"}),
    )
}

impl Lab {
    /// Current counters.
    pub fn stats(&self) -> LabStats {
        let mut s = self.counters.snapshot();
        s.pool_in_use = self.db.pool.in_use() as u64;
        let t = &self.telemetry.counters;
        s.spans_exported = t.exported.load(Ordering::Relaxed);
        s.spans_dropped = t.dropped.load(Ordering::Relaxed);
        s.trace_export_errors = t.export_errors.load(Ordering::Relaxed);
        s
    }
}

/// One email worker: takes jobs from the shared queue until shutdown.
pub(crate) async fn email_worker(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<EmailJob>>>,
    deps: Arc<DepClient>,
    telemetry: Arc<Telemetry>,
    counters: Arc<Counters>,
    email_addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let job = {
            let mut rx = rx.lock().await;
            tokio::select! {
                job = rx.recv() => job,
                _ = stop.wait_for(|s| *s) => None,
            }
        };
        let Some(job) = job else { break };
        telemetry.record_wait(
            Service::Checkout,
            "email.queue.wait",
            &job.parent,
            job.enqueued_at,
        );
        let cx = telemetry.start(
            Service::Checkout,
            "email.process",
            SpanKind::Consumer,
            &job.parent,
            vec![KeyValue::new("messaging.destination.name", "email")],
        );
        match deps
            .post("email", email_addr, "/send", job.body, &cx, None)
            .await
        {
            Ok(_) => counters.emails_sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.email_errors.fetch_add(1, Ordering::Relaxed),
        };
        end(&cx);
    }
}

/// Pauses the whole service for `pause` every `every` by write-holding the gate.
pub(crate) async fn stall_loop(
    gate: Arc<RwLock<()>>,
    every: Duration,
    pause: Duration,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + every.saturating_sub(pause);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let guard = gate.write().await;
        counters.stalls.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        drop(guard);
        next += every;
    }
}
