//! Pure statistics for chokepoint: latency histograms, their summaries, and the
//! HdrHistogram interval-log text format.
//!
//! This crate does no I/O and knows nothing about HTTP, tokio or files: callers
//! hand it histograms and strings, it hands back numbers and strings.
//!
//! ```
//! use chokepoint_stats::{new_histogram, summarize};
//! let mut h = new_histogram();
//! for us in [900u64, 1_000, 1_100, 50_000] {
//!     h.saturating_record(us);
//! }
//! let s = summarize(&h);
//! assert_eq!(s.count, 4);
//! assert!(s.max_ms >= 49.9);
//! ```
#![deny(missing_docs)]

pub mod hlog;
mod summary;

pub use summary::{new_histogram, summarize, Summary, MICROS_PER_MILLI};

/// A latency histogram: values are microseconds.
pub type Histogram = hdrhistogram::Histogram<u64>;
pub mod bootstrap;
pub mod changepoint;
pub mod compare;
pub mod drift;
pub mod knee;
pub mod significance;
pub mod usl;
