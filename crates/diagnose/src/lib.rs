//! Diagnosis for chokepoint: evidence → ranked constraints → fix plan.
//!
//! [`diagnose`] takes whatever [`Evidence`] there is (a baseline run, a
//! capacity search, a soak, trace analyses) and returns a [`Diagnosis`]: the
//! constraints it can show, ranked by how much of the user-visible tail they
//! explain, each with its class, the numbers it rests on (which measurement,
//! which threshold, which trace share), a confidence, and a fix plan — quick
//! wins first, then structural moves — with the expected effect where it can
//! be estimated (Amdahl on the tail's critical path; Little's law and Erlang C
//! for pool sizing). When evidence is missing it says what to measure next.
//!
//! **Invariant: this crate is pure.** No I/O (no files, sockets, clocks or
//! environment), no HTTP, no tokio, no JSON shapes: callers convert what they
//! read into the plain-data [`evidence`] structs. It works from measurements
//! only: operations are recognised by generic word rules ([`names`]) and the
//! traces crate's wait classification, never by the name of a particular
//! service, scenario or lab setting.
//!
//! ```
//! use chokepoint_diagnose::{diagnose, Evidence, ConstraintClass};
//! use chokepoint_diagnose::evidence::{OperationTime, TraceEvidence};
//!
//! let traces = TraceEvidence {
//!     traces: 2_000, n_p50: 800, n_tail: 20,
//!     mean_ms_p50: 4.0, mean_ms_tail: 60.0,
//!     operations: vec![
//!         OperationTime { service: "shop".into(), operation: "HikariPool.getConnection".into(),
//!             wait: true, ms_p50: 0.1, ms_p99: 52.0, share_p50: 0.03, share_p99: 0.87 },
//!         OperationTime { service: "shop".into(), operation: "SELECT orders".into(),
//!             wait: false, ms_p50: 3.0, ms_p99: 3.2, share_p50: 0.75, share_p99: 0.05 },
//!     ],
//!     ..TraceEvidence::default()
//! };
//! let d = diagnose(&Evidence { traces: vec![traces], ..Evidence::default() });
//! assert_eq!(d.constraints[0].class, ConstraintClass::Queueing);
//! assert!(d.constraints[0].fixes[0].action.contains("pool"));
//! ```
#![deny(missing_docs)]

pub mod evidence;
pub mod names;
pub mod queueing;
mod rules;

use serde::Serialize;

pub use evidence::Evidence;

/// What kind of constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintClass {
    /// Requests queue for a fixed-capacity resource (connection pool, worker pool, semaphore, queue).
    Queueing,
    /// Requests serialise on a lock.
    LockContention,
    /// A dependency is slow, or has a long tail.
    SlowDependency,
    /// Work the response does not need (a notification, an audit write) runs on the request path.
    SynchronousNonCritical,
    /// One query per item instead of one for all.
    NPlusOne,
    /// A query is slow everywhere (missing index, full scan).
    SlowQuery,
    /// The service's CPU is saturated.
    CpuSaturation,
    /// Stop-the-world pauses delay everything in flight (GC-like).
    PeriodicStalls,
    /// Memory grows with every request (a leak).
    MemoryGrowth,
    /// Connections are set up per request (no keep-alive or pooling).
    ConnectionSetup,
    /// The slowest of many parallel calls sets the latency.
    FanOutAmplification,
    /// Cache misses recompute on the request path, concurrently.
    CacheStampede,
    /// Independent calls run one after another.
    SequentialCalls,
    /// Failed calls are retried on the request path.
    Retries,
}

impl ConstraintClass {
    /// Stable snake_case name (JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintClass::Queueing => "queueing",
            ConstraintClass::LockContention => "lock_contention",
            ConstraintClass::SlowDependency => "slow_dependency",
            ConstraintClass::SynchronousNonCritical => "synchronous_non_critical",
            ConstraintClass::NPlusOne => "n_plus_one",
            ConstraintClass::SlowQuery => "slow_query",
            ConstraintClass::CpuSaturation => "cpu_saturation",
            ConstraintClass::PeriodicStalls => "periodic_stalls",
            ConstraintClass::MemoryGrowth => "memory_growth",
            ConstraintClass::ConnectionSetup => "connection_setup",
            ConstraintClass::FanOutAmplification => "fan_out_amplification",
            ConstraintClass::CacheStampede => "cache_stampede",
            ConstraintClass::SequentialCalls => "sequential_calls",
            ConstraintClass::Retries => "retries",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            ConstraintClass::Queueing => "queueing at a fixed-capacity resource",
            ConstraintClass::LockContention => "lock contention",
            ConstraintClass::SlowDependency => "slow dependency",
            ConstraintClass::SynchronousNonCritical => "synchronous non-critical work",
            ConstraintClass::NPlusOne => "N+1 queries",
            ConstraintClass::SlowQuery => "slow query (missing index, full scan)",
            ConstraintClass::CpuSaturation => "CPU saturation",
            ConstraintClass::PeriodicStalls => "periodic stalls (stop-the-world pauses)",
            ConstraintClass::MemoryGrowth => "memory growth (leak)",
            ConstraintClass::ConnectionSetup => "connection set-up cost",
            ConstraintClass::FanOutAmplification => "fan-out tail amplification",
            ConstraintClass::CacheStampede => "cache stampede",
            ConstraintClass::SequentialCalls => "sequential independent calls",
            ConstraintClass::Retries => "retries on the request path",
        }
    }
}

/// A fix type, named as engineers know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixType {
    /// Keep answers (or coalesce concurrent fills) instead of recomputing them.
    Caching,
    /// One call for many items (JOIN, `IN (...)`, bulk APIs).
    Batching,
    /// Take work off the request path (queue + workers).
    Async,
    /// Bound queues; push back on callers instead of queueing without limit.
    Backpressure,
    /// Query and index changes.
    QueryIndex,
    /// Fewer parallel calls per request; hedged requests.
    FanOutReduction,
    /// Size a pool or worker set for the load (Little's law).
    PoolSizing,
    /// Time out slow calls, with a fallback.
    Timeouts,
    /// Stop calling a failing dependency for a while.
    CircuitBreaker,
    /// Isolate resources per caller or endpoint.
    Bulkhead,
    /// Refuse excess load early (429/503) to protect latency.
    LoadShedding,
    /// Redesign the hot path (shorter critical sections, lock-free structures, less work).
    HotPathRedesign,
    /// Run independent calls concurrently.
    Parallelize,
    /// Reuse connections (keep-alive, client pooling).
    ConnectionReuse,
    /// Release or bound what each request retains.
    BoundMemory,
    /// Shorten or remove stop-the-world pauses (GC tuning, spreading periodic work).
    PauseTuning,
    /// Add CPUs or instances.
    ScaleOut,
}

impl FixType {
    /// Stable snake_case name (JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            FixType::Caching => "caching",
            FixType::Batching => "batching",
            FixType::Async => "async",
            FixType::Backpressure => "backpressure",
            FixType::QueryIndex => "query_index",
            FixType::FanOutReduction => "fan_out_reduction",
            FixType::PoolSizing => "pool_sizing",
            FixType::Timeouts => "timeouts",
            FixType::CircuitBreaker => "circuit_breaker",
            FixType::Bulkhead => "bulkhead",
            FixType::LoadShedding => "load_shedding",
            FixType::HotPathRedesign => "hot_path_redesign",
            FixType::Parallelize => "parallelize",
            FixType::ConnectionReuse => "connection_reuse",
            FixType::BoundMemory => "bound_memory",
            FixType::PauseTuning => "pause_tuning",
            FixType::ScaleOut => "scale_out",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            FixType::Caching => "caching",
            FixType::Batching => "batching",
            FixType::Async => "async",
            FixType::Backpressure => "backpressure",
            FixType::QueryIndex => "query/index change",
            FixType::FanOutReduction => "fan-out reduction",
            FixType::PoolSizing => "pool sizing",
            FixType::Timeouts => "timeouts",
            FixType::CircuitBreaker => "circuit breaker",
            FixType::Bulkhead => "bulkhead",
            FixType::LoadShedding => "load shedding",
            FixType::HotPathRedesign => "hot-path redesign",
            FixType::Parallelize => "parallelize",
            FixType::ConnectionReuse => "connection reuse",
            FixType::BoundMemory => "bound memory",
            FixType::PauseTuning => "pause tuning",
            FixType::ScaleOut => "scale out",
        }
    }
}

/// Quick win or structural move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Horizon {
    /// A configuration change or a small code change.
    QuickWin,
    /// A design change.
    Structural,
}

/// How sure the diagnosis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One weak signal.
    Low,
    /// One clear signal.
    Medium,
    /// Independent signals agree, or one signal far beyond its threshold.
    High,
}

/// A confidence with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confidence {
    /// The level.
    pub level: Level,
    /// Why.
    pub reasons: Vec<String>,
}

/// One number a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceItem {
    /// `run`, `stress`, `soak` or `traces`.
    pub source: String,
    /// What was measured (`tail critical-path share of db.pool.acquire`).
    pub measurement: String,
    /// The value.
    pub value: f64,
    /// Its unit (`ms`, `share`, `req/s`, `bytes/s`, ...).
    pub unit: String,
    /// The threshold it was judged against, in words (`≥ 0.15`).
    pub threshold: Option<String>,
    /// One sentence.
    pub text: String,
}

/// An estimated effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    /// Which metric (`p99_ms`, `capacity_rps`, `rss_growth_bytes_per_s`).
    pub metric: String,
    /// Today.
    pub before: f64,
    /// Predicted.
    pub after: f64,
    /// How it was estimated, with its assumptions.
    pub method: String,
}

/// One step of a fix plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixStep {
    /// The fix type.
    pub fix: FixType,
    /// Quick win or structural.
    pub horizon: Horizon,
    /// What to do, concretely.
    pub action: String,
    /// The expected effect, when it can be estimated.
    pub expected: Option<Effect>,
    /// A recommended setting (a pool size, a timeout in ms), when computed.
    pub setting: Option<f64>,
}

/// A what-if answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The question.
    pub question: String,
    /// Load relative to today (1.5, 2.0), when that is the question.
    pub load_factor: Option<f64>,
    /// Arrival rate the answer is for (req/s).
    pub rate_rps: Option<f64>,
    /// The answer (`None`: unbounded, beyond capacity).
    pub value: Option<f64>,
    /// Its unit.
    pub unit: String,
    /// The model and its assumptions.
    pub model: String,
    /// One sentence.
    pub text: String,
}

/// One constraint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Constraint {
    /// 1 = the constraint to fix first.
    pub rank: usize,
    /// The class.
    pub class: ConstraintClass,
    /// The operation or resource it is about, when known.
    pub resource: Option<String>,
    /// One sentence naming it.
    pub title: String,
    /// Share of the user-visible tail (P99 critical path) it explains, when known.
    pub tail_share: Option<f64>,
    /// Milliseconds of a slow request it explains, when known.
    pub tail_ms: Option<f64>,
    /// Ranking score (higher first): tail share for latency constraints; fixed
    /// weights for growth and saturation (see `docs/diagnose.md`).
    pub score: f64,
    /// How sure.
    pub confidence: Confidence,
    /// The numbers.
    pub evidence: Vec<EvidenceItem>,
    /// Quick wins first, then structural moves.
    pub fixes: Vec<FixStep>,
    /// What-if answers for this constraint.
    pub predictions: Vec<Prediction>,
}

/// What to measure next, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextStep {
    /// The situation (from the decision tree).
    pub situation: String,
    /// The command.
    pub command: String,
    /// What it would show.
    pub why: String,
}

/// The whole diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// One sentence.
    pub headline: String,
    /// No constraint found in the evidence.
    pub healthy: bool,
    /// Ranked constraints.
    pub constraints: Vec<Constraint>,
    /// What-if answers for the system as a whole (P99 at 1.5× and 2× load).
    pub predictions: Vec<Prediction>,
    /// What to measure next.
    pub measure_next: Vec<NextStep>,
    /// Which evidence was used.
    pub evidence_used: Vec<String>,
    /// Caveats.
    pub notes: Vec<String>,
}

/// Diagnoses the evidence. Never panics; empty evidence gives an empty
/// diagnosis with the first things to measure.
pub fn diagnose(evidence: &Evidence) -> Diagnosis {
    rules::diagnose(evidence)
}
