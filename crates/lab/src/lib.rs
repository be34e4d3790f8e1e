//! The checkout lab: a real service with bottlenecks to plant and fix.
//!
//! [`start`] runs, inside the caller's tokio runtime, a checkout service
//! (axum, SQLite through a connection pool, an inventory lock, a product
//! cache) plus its two dependencies, a payment gateway and an email service,
//! as separate HTTP servers on loopback. Knobs in [`LabConfig`] plant one
//! bottleneck each; a [`Fix`] removes it. Every request yields an
//! OpenTelemetry trace with waiting split from running (`db.pool.acquire`
//! vs `db.query`, `lock.wait` vs `lock.hold`, ...). `docs/lab.md` states the
//! analytic behaviour of every knob.
//!
//! Nothing global is installed: several labs can run in one process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chokepoint_lab::LabError> {
//! use chokepoint_lab::{recommended_fix, start, LabConfig};
//!
//! let config = LabConfig::scenario("pool-exhaustion").unwrap();
//! let lab = start(config.clone()).await?;
//! println!("{} can do {:?} req/s", lab.base_url(), lab.capacity_rps());
//! lab.shutdown().await;
//!
//! let fixed = config.with_fix(recommended_fix("pool-exhaustion").unwrap());
//! let lab = start(fixed).await?;
//! lab.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod cache;
mod config;
mod db;
mod deps;
mod service;
mod stats;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::sync::{mpsc, watch, RwLock};
use tokio::task::JoinHandle;

pub use config::{
    fmt_duration, parse_duration, parse_size, recommended_fix, Capacity, CapacityBound, Fix,
    LabConfig, LatencyDist, ScenarioInfo, SeedSize, Stall, TraceConfig, DEFAULT_TRACE_QUEUE,
    FIX_SYNTAX, MAX_POOL_SIZE, MAX_SAMPLED_LATENCY, SCENARIOS,
};
pub use stats::{rss_bytes, LabStats};

use crate::cache::Cache;
use crate::db::{Db, Pool};
use crate::deps::{start_dependency, DepClient};
use crate::service::{email_worker, router, stall_loop, Inventory, Lab};
use crate::stats::Counters;
use crate::telemetry::{Service, Telemetry};

/// Everything that can go wrong configuring or starting a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A knob value is out of range or malformed.
    #[error("invalid {what} `{value}`: {expected}")]
    InvalidValue {
        /// Which knob or value kind.
        what: &'static str,
        /// The offending text.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// `--fix` got a name that is not a fix.
    #[error("unknown fix `{value}`; valid fixes: {}", FIX_SYNTAX.join(", "))]
    UnknownFix {
        /// The offending text.
        value: String,
    },
    /// `--scenario` got a name that is not a scenario.
    #[error("unknown scenario `{name}`; valid scenarios: {}", LabConfig::scenario_names().join(", "))]
    UnknownScenario {
        /// The offending name.
        name: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The trace file cannot be opened.
    #[error("cannot open trace file {}: {source}", path.display())]
    TraceFile {
        /// The path asked for.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Other I/O (temporary directory, ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or a task that died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A running lab. Drop it to stop it abruptly; call [`LabHandle::shutdown`] to stop it gracefully.
pub struct LabHandle {
    addr: SocketAddr,
    config: LabConfig,
    lab: Arc<Lab>,
    front_stop: watch::Sender<bool>,
    back_stop: watch::Sender<bool>,
    front_tasks: Vec<JoinHandle<()>>,
    back_tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for LabHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LabHandle {
    /// Address the checkout service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The effective configuration (`listen` is the bound address).
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// Analytic capacity of `POST /checkout`, requests per second (`None`: not bounded by a planted knob).
    pub fn capacity_rps(&self) -> Option<f64> {
        self.config.capacity_rps()
    }

    /// Address of the payment gateway dependency.
    pub fn payment_addr(&self) -> SocketAddr {
        self.lab.payment_addr
    }

    /// Address of the email dependency.
    pub fn email_addr(&self) -> SocketAddr {
        self.lab.email_addr
    }

    /// A snapshot of the lab's counters (also `GET /lab/stats`).
    pub fn stats(&self) -> LabStats {
        self.lab.stats()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5s), stops the
    /// dependencies and workers, and flushes queued spans to the exporters.
    /// Returns the final counters (span export included).
    pub async fn shutdown(mut self) -> LabStats {
        let _ = self.front_stop.send(true);
        join_all(std::mem::take(&mut self.front_tasks)).await;
        let _ = self.back_stop.send(true);
        join_all(std::mem::take(&mut self.back_tasks)).await;
        self.lab.telemetry.shutdown().await;
        self.lab.stats()
    }
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        let _ = self.front_stop.send(true);
        let _ = self.back_stop.send(true);
    }
}

async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for mut task in tasks {
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts a lab inside the current tokio runtime (multi-thread recommended).
///
/// Seeds a fresh SQLite database in a temporary directory, starts the payment
/// and email servers on `127.0.0.1:0`, then the checkout service on
/// `config.listen`. Returns once all three accept connections.
pub async fn start(config: LabConfig) -> Result<LabHandle, LabError> {
    config.validate()?;
    let telemetry = Arc::new(Telemetry::new(&config.trace)?);
    let counters = Arc::new(Counters::default());
    let (front_stop, front_rx) = watch::channel(false);
    let (back_stop, back_rx) = watch::channel(false);

    let payment = start_dependency(
        Service::Payment,
        "/charge",
        config.payment_latency,
        telemetry.clone(),
        back_rx.clone(),
    )
    .await?;
    let email = start_dependency(
        Service::Email,
        "/send",
        config.email_latency,
        telemetry.clone(),
        back_rx.clone(),
    )
    .await?;
    let mut back_tasks = vec![payment.task, email.task];

    let dir = tempfile::Builder::new()
        .prefix("chokepoint-lab")
        .tempdir()?;
    let path = dir.path().join("lab.sqlite");
    let (seed, missing_index, pool_size) = (config.seed, config.missing_index, config.pool_size);
    let db_path = path.clone();
    let (catalogue, pool) = tokio::task::spawn_blocking(move || {
        let catalogue = db::create_and_seed(&db_path, seed, missing_index)?;
        let pool = Pool::open(&db_path, pool_size)?;
        Ok::<_, rusqlite::Error>((catalogue, pool))
    })
    .await
    .map_err(|e| LabError::Internal(format!("seeding task failed: {e}")))??;

    let deps = Arc::new(DepClient::new(telemetry.clone()));
    let stall_gate = config.stall.map(|_| Arc::new(RwLock::new(())));
    let email_rx = if config.async_email {
        let (tx, rx) = mpsc::channel(config.email_queue_capacity);
        Some((tx, Arc::new(tokio::sync::Mutex::new(rx))))
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| LabError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| LabError::Bind {
        addr: config.listen,
        source,
    })?;
    let mut effective = config.clone();
    effective.listen = addr;

    let lab = Arc::new(Lab {
        config: effective.clone(),
        telemetry: telemetry.clone(),
        counters: counters.clone(),
        db: Db {
            pool,
            telemetry: telemetry.clone(),
            counters: counters.clone(),
            rtt: config.db_rtt,
        },
        inventory: Inventory::new(catalogue.len(), config.lock_free),
        catalogue,
        deps: deps.clone(),
        payment_addr: payment.addr,
        email_addr: email.addr,
        cache: Cache::new(config.cache_ttl, !config.stampede),
        stall_gate: stall_gate.clone(),
        email_tx: email_rx.as_ref().map(|(tx, _)| tx.clone()),
        leak: Mutex::new(Vec::new()),
    });

    if let Some((_, rx)) = &email_rx {
        for _ in 0..config.email_workers {
            back_tasks.push(tokio::spawn(email_worker(
                rx.clone(),
                deps.clone(),
                telemetry.clone(),
                counters.clone(),
                email.addr,
                back_rx.clone(),
            )));
        }
    }

    let mut front_tasks = Vec::new();
    if let (Some(gate), Some(stall)) = (stall_gate, config.stall) {
        front_tasks.push(tokio::spawn(stall_loop(
            gate,
            stall.every,
            stall.pause,
            counters.clone(),
            front_rx.clone(),
        )));
    }
    let app = router(lab.clone());
    let mut serve_stop = front_rx.clone();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    front_tasks.push(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = serve_stop.wait_for(|stop| *stop).await;
            })
            .await;
    }));

    Ok(LabHandle {
        addr,
        config: effective,
        lab,
        front_stop,
        back_stop,
        front_tasks,
        back_tasks,
        _dir: dir,
    })
}
