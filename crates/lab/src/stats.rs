//! Live counters of a running lab and their snapshot, [`LabStats`] (also served as `GET /lab/stats`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Monotonic counters updated on the request path (relaxed atomics: cheap, eventually exact).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub checkouts: AtomicU64,
    pub checkout_errors: AtomicU64,
    pub product_requests: AtomicU64,
    pub order_requests: AtomicU64,
    pub db_queries: AtomicU64,
    pub pool_wait_us: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_loads: AtomicU64,
    pub payments: AtomicU64,
    pub payment_timeouts: AtomicU64,
    pub emails_sent: AtomicU64,
    pub emails_queued: AtomicU64,
    pub emails_dropped: AtomicU64,
    pub email_errors: AtomicU64,
    pub lock_wait_us: AtomicU64,
    pub stalls: AtomicU64,
    pub leaked_bytes: AtomicU64,
}

/// A snapshot of a lab's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LabStats {
    /// `POST /checkout` requests answered 200.
    pub checkouts: u64,
    /// `POST /checkout` requests answered with an error status.
    pub checkout_errors: u64,
    /// `GET /products` and `GET /products/{id}` requests.
    pub product_requests: u64,
    /// `GET /orders` requests.
    pub order_requests: u64,
    /// SQL statement batches run (each is one `db.query` span).
    pub db_queries: u64,
    /// Total time spent waiting for a pooled connection, microseconds.
    pub pool_wait_us: u64,
    /// Connections checked out right now.
    pub pool_in_use: u64,
    /// Product cache hits.
    pub cache_hits: u64,
    /// Product cache fills (database loads).
    pub cache_loads: u64,
    /// Payment calls made.
    pub payments: u64,
    /// Payment calls that timed out and fell back to a deferred charge.
    pub payment_timeouts: u64,
    /// Emails delivered to the email service.
    pub emails_sent: u64,
    /// Emails handed to the async queue.
    pub emails_queued: u64,
    /// Emails dropped because the queue was full.
    pub emails_dropped: u64,
    /// Email calls that failed.
    pub email_errors: u64,
    /// Total time spent waiting for the inventory lock, microseconds.
    pub lock_wait_us: u64,
    /// Stop-the-world pauses so far.
    pub stalls: u64,
    /// Bytes retained by the planted leak.
    pub leaked_bytes: u64,
    /// Resident set size of the whole process (Linux `/proc/self/statm`), when known.
    pub rss_bytes: Option<u64>,
    /// Spans handed to the exporter.
    pub spans_exported: u64,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: u64,
    /// Failed file writes or OTLP posts.
    pub trace_export_errors: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LabStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LabStats {
            checkouts: g(&self.checkouts),
            checkout_errors: g(&self.checkout_errors),
            product_requests: g(&self.product_requests),
            order_requests: g(&self.order_requests),
            db_queries: g(&self.db_queries),
            pool_wait_us: g(&self.pool_wait_us),
            pool_in_use: 0,
            cache_hits: g(&self.cache_hits),
            cache_loads: g(&self.cache_loads),
            payments: g(&self.payments),
            payment_timeouts: g(&self.payment_timeouts),
            emails_sent: g(&self.emails_sent),
            emails_queued: g(&self.emails_queued),
            emails_dropped: g(&self.emails_dropped),
            email_errors: g(&self.email_errors),
            lock_wait_us: g(&self.lock_wait_us),
            stalls: g(&self.stalls),
            leaked_bytes: g(&self.leaked_bytes),
            rss_bytes: rss_bytes(),
            spans_exported: 0,
            spans_dropped: 0,
            trace_export_errors: 0,
        }
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux only).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

fn page_size() -> u64 {
    // Every Linux target Rust supports for this lab uses 4 KiB base pages except
    // some aarch64/ppc64 kernels; read the real value from the aux vector file when present.
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(16).find_map(|entry| {
                let key = u64::from_ne_bytes(entry[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(entry[8..].try_into().ok()?);
                (key == 6).then_some(value) // AT_PAGESZ
            })
        })
        .unwrap_or(4096)
}
