//! chokepoint's load engine.
//!
//! One [`Schedule`] hands out request slots with their intended send times for
//! every load model; each connection claims slots, waits for them on a
//! high-resolution timer, sends, and records — in a tokio task (TLS, HTTP/2,
//! or plain HTTP/1.1 without io_uring) or in a per-thread io_uring loop
//! (plain HTTP/1.1 where the kernel has one, see [`IoMode`]). Latency is measured
//! from the intended time (coordinated-omission free), service time from the
//! actual send. Measurements go into HDR histograms that the coordinator
//! collects once a second and hands to an [`Observer`]; nothing grows with run
//! length.
//!
//! The engine does network I/O and nothing else: no files, no flags, no JSON.
//!
//! ```no_run
//! use chokepoint_engine::*;
//! let config = RunConfig::new(
//!     Target::parse("http://127.0.0.1:8080/").unwrap(),
//!     LoadModel::Closed { concurrency: 10 },
//! );
//! let result = run(config, &mut NoObserver, &StopSignal::new()).unwrap();
//! println!("{} requests", result.measured.requests);
//! ```
#![deny(missing_docs)]

mod clock;
mod conn;
mod deadline;
mod h2;
mod http1;
mod profile;
mod recorder;
mod run;
mod schedule;
mod target;
mod timer;
mod tls;
#[cfg(target_os = "linux")]
mod uring;

pub use clock::now_ns;
#[doc(hidden)]
pub use http1::{fuzz_decode_chunked, fuzz_parse_head};
pub use profile::{Ramp, Shard, ShardLoad, Stage};
pub use recorder::{
    ErrorCounts, ErrorKind, RequestStats, SlowTraces, Stats, Timings, TraceSample,
    SLOW_TRACES_KEPT, TRACE_SAMPLE_BANDS, TRACE_SAMPLE_PER_BAND,
};
pub use run::{
    run, IntervalReport, IoMode, NoObserver, Observer, RunConfig, RunResult, StopSignal,
};
pub use schedule::{Arrival, Limits, LoadModel, Schedule, Slot};
pub use target::{RequestSpec, Scheme, Target};

/// Whether plain HTTP/1.1 can run over io_uring here (`IoMode::Auto` then
/// does); the reason when it cannot.
pub fn uring_available() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    return uring::available();
    #[cfg(not(target_os = "linux"))]
    Err("io_uring is Linux only".into())
}

/// The `User-Agent` sent unless the user sets one.
pub const USER_AGENT: &str = concat!("chokepoint/", env!("CARGO_PKG_VERSION"));

/// Why a run could not start. Failures *during* a run are counted, not returned.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The target URL is malformed.
    #[error("bad URL `{url}`: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve host `{host}`: {why}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's answer.
        why: String,
    },
    /// A request definition is invalid.
    #[error("request `{name}`: {why}")]
    BadRequest {
        /// The request's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The run configuration is inconsistent.
    #[error("{0}")]
    BadConfig(String),
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(String),
    /// The runtime could not start (threads, timers).
    #[error("cannot start the engine: {0}")]
    Runtime(#[from] std::io::Error),
}
