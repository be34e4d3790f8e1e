//! chokepoint's output shapes and renderers.
//!
//! This crate owns the wire formats users and tools read: the `summary.json`
//! schema (`chokepoint.run.v1`), the `timeseries.csv` columns, and the text
//! report. It renders from those shapes, never from engine internals, so a
//! summary loaded from disk prints exactly like a fresh one.
#![deny(missing_docs)]

pub mod check;
pub mod compare;
pub mod history;
pub mod markup;
pub mod redact;
pub mod summary;
pub mod text;
pub mod timeseries;

pub use summary::{
    LatencyMs, MergeSummary, RequestSummary, RunSummary, ShardSummary, StageSummary, WarmupSummary,
    RUN_SCHEMA,
};
pub mod html;
pub mod html_svg;
pub mod resources;
pub mod soak;
pub mod stress;
