//! The SQLite database: schema, seeding, and a small async-acquire connection pool.
//!
//! Why not r2d2: its `get()` blocks a thread while waiting, so under saturation
//! every waiting request would pin one of tokio's blocking threads (up to 512)
//! just to sleep in a queue, and the wait would be invisible to the runtime.
//! Here waiting is an async, FIFO-fair semaphore acquire (`db.pool.acquire`),
//! and only a request that holds a connection occupies a blocking thread
//! (`db.query`), so at most `pool_size` blocking threads do database work.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::SeedSize;
use crate::stats::Counters;
use crate::telemetry::{end, set_error, wait_attr, Service, Telemetry};
use crate::LabError;

/// A product as the catalogue knows it (loaded once at start; prices never change).
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub price_cents: i64,
}

/// Creates the schema and seeds it deterministically. Returns the catalogue.
pub(crate) fn create_and_seed(
    path: &Path,
    seed: SeedSize,
    missing_index: bool,
) -> Result<Vec<Product>, rusqlite::Error> {
    let conn = open(path)?;
    conn.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
         CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, total_cents INTEGER NOT NULL,
                              created_at INTEGER NOT NULL, payment_ref TEXT NOT NULL);
         CREATE TABLE order_items (order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
                                   qty INTEGER NOT NULL, price_cents INTEGER NOT NULL);",
    )?;
    // Recursive CTEs keep seeding inside SQLite: 200k orders take well under a second.
    conn.execute_batch("BEGIN")?;
    conn.execute(
        "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
         INSERT INTO customers (id, name, email)
         SELECT x, 'Customer ' || x, 'customer' || x || '@example.test' FROM seq",
        params![seed.customers],
    )?;
    conn.execute(
        "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
         INSERT INTO products (id, name, price_cents)
         SELECT x, 'Product ' || x, 199 + (x * 7919) % 9800 FROM seq",
        params![seed.products],
    )?;
    if seed.orders > 0 {
        conn.execute(
            "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
             INSERT INTO orders (id, user_id, total_cents, created_at, payment_ref)
             SELECT x, (x * 7919) % ?2 + 1, 0, 1700000000 + x * 60, 'seed-' || x FROM seq",
            params![seed.orders, seed.customers],
        )?;
        conn.execute(
            "INSERT INTO order_items (order_id, product_id, qty, price_cents)
             SELECT t.order_id, t.product_id, t.qty, p.price_cents
             FROM (SELECT o.id AS order_id,
                          (o.id * 31 + k.k * 17 + (o.id / 7) * (o.id / 7)) % ?1 + 1 AS product_id,
                          1 + (o.id + k.k) % 3 AS qty
                   FROM orders o, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) k
                   WHERE k.k < 1 + o.id % 3) t
             JOIN products p ON p.id = t.product_id",
            params![seed.products],
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX order_items_order_id ON order_items(order_id);
         CREATE INDEX order_items_product_qty ON order_items(product_id, qty);
         UPDATE orders SET total_cents =
             (SELECT SUM(qty * price_cents) FROM order_items i WHERE i.order_id = orders.id);",
    )?;
    if !missing_index {
        conn.execute_batch("CREATE INDEX orders_user_id ON orders(user_id);")?;
    }
    conn.execute_batch("COMMIT; ANALYZE;")?;
    let mut stmt = conn.prepare("SELECT price_cents FROM products ORDER BY id")?;
    let products = stmt
        .query_map([], |row| {
            Ok(Product {
                price_cents: row.get(0)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(products)
}

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    // Connections share the file through the OS page cache (mmap) instead of
    // each keeping its own copy of hot pages: 64 connections stay cheap.
    conn.pragma_update(None, "mmap_size", 256_i64 << 20)?;
    conn.pragma_update(None, "cache_size", -2_000)?;
    Ok(conn)
}

/// A fixed-size pool of SQLite connections with an async, FIFO-fair acquire.
#[derive(Debug)]
pub(crate) struct Pool {
    permits: Arc<Semaphore>,
    /// Idle connections with the instant each was returned.
    idle: Mutex<Vec<(Connection, Instant)>>,
    size: usize,
}

/// A checked-out connection; returns to the pool on drop.
pub(crate) struct PooledConn {
    conn: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push((conn, Instant::now()));
            }
        }
    }
}

impl Pool {
    /// Opens `size` connections to `path`.
    pub fn open(path: &Path, size: usize) -> Result<Arc<Pool>, rusqlite::Error> {
        let now = Instant::now();
        let conns = (0..size)
            .map(|_| open(path).map(|c| (c, now)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Pool {
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(conns),
            size,
        }))
    }

    /// Configured size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Connections currently checked out.
    pub fn in_use(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits for a connection; also returns when it was given back by its
    /// previous user (the moment this waiter was, in effect, granted it).
    async fn acquire(self: &Arc<Self>) -> Result<(PooledConn, Instant), LabError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LabError::Internal("database pool closed".into()))?;
        let (conn, released_at) = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .ok_or_else(|| LabError::Internal("pool permit without a connection".into()))?;
        let pooled = PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        };
        Ok((pooled, released_at))
    }
}

/// Everything a database step needs on its blocking thread.
pub(crate) struct Db {
    pub pool: Arc<Pool>,
    pub telemetry: Arc<Telemetry>,
    pub counters: Arc<Counters>,
    pub rtt: Duration,
}

/// Handed to a step's closure: runs statements as `db.query` spans.
pub(crate) struct StepCx<'a> {
    conn: &'a Connection,
    acquired_at: Instant,
    telemetry: &'a Telemetry,
    counters: &'a Counters,
    parent: &'a Context,
    rtt: Duration,
}

impl StepCx<'_> {
    /// Runs one statement batch `f` as a `db.query` span. With a non-zero `hold`
    /// (`--db-hold`), the span lasts until the connection has been held `hold`
    /// (plus one round trip) in all, the statement's own work included, so the
    /// step takes exactly `rtt + hold` and capacity is `pool_size / (rtt + hold)`.
    pub fn query<T>(
        &self,
        statement: &'static str,
        hold: Duration,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        let cx = self.telemetry.start(
            Service::Checkout,
            "db.query",
            SpanKind::Client,
            self.parent,
            vec![
                KeyValue::new("db.system", "sqlite"),
                KeyValue::new("db.statement", statement),
            ],
        );
        self.counters.db_queries.fetch_add(1, Ordering::Relaxed);
        if !self.rtt.is_zero() {
            std::thread::sleep(self.rtt);
        }
        let result = f(self.conn);
        if !hold.is_zero() {
            sleep_until(self.acquired_at + self.rtt + hold);
        }
        if let Err(e) = &result {
            set_error(&cx, e.to_string());
        }
        end(&cx);
        result
    }
}

impl Db {
    /// One database step: wait for a connection (`db.pool.acquire`), then run `f`
    /// on a blocking thread while holding it.
    pub async fn step<T, F>(&self, parent: &Context, f: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce(&StepCx<'_>) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let started = SystemTime::now();
        let wait_start = Instant::now();
        let acquire_cx = self.telemetry.start(
            Service::Checkout,
            "db.pool.acquire",
            SpanKind::Internal,
            parent,
            vec![
                wait_attr(),
                KeyValue::new("db.pool.size", self.pool.size() as i64),
            ],
        );
        let acquired = self.pool.acquire().await;
        end(&acquire_cx);
        let (conn, released_at) = acquired?;
        // The hold is timed from the hand-over, not from when this task got to run.
        let acquired_at = released_at.max(wait_start);
        let waited = started.elapsed().unwrap_or_default();
        self.counters
            .pool_wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        let telemetry = self.telemetry.clone();
        let counters = self.counters.clone();
        let parent = parent.clone();
        let rtt = self.rtt;
        tokio::task::spawn_blocking(move || {
            let cx = StepCx {
                conn: &conn,
                acquired_at,
                telemetry: &telemetry,
                counters: &counters,
                parent: &parent,
                rtt,
            };
            let out = f(&cx);
            drop(conn);
            out
        })
        .await
        .map_err(|e| LabError::Internal(format!("database task failed: {e}")))?
        .map_err(LabError::Database)
    }
}

/// Blocks the current (blocking-pool) thread until `deadline`, to within a few
/// microseconds: the OS sleep overshoots by ~50-100us (timer slack), which would
/// bias a 5ms hold by 2%, so the last stretch yields instead of sleeping.
pub(crate) fn sleep_until(deadline: Instant) {
    const SPIN: Duration = Duration::from_micros(150);
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    let remaining = deadline - now;
    if remaining > SPIN {
        std::thread::sleep(remaining - SPIN);
    }
    while Instant::now() < deadline {
        std::thread::yield_now();
    }
}
