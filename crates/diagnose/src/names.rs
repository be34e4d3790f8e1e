//! Generic name rules: what kind of step an operation is, from the words of
//! its span name and service (split like the traces crate splits them: at
//! punctuation, spaces and camelCase boundaries, lowercased).
//!
//! The rules name *kinds of resources* the way instrumentation libraries name
//! them (`HikariPool.getConnection`, `db.pool.acquire`, `mutex.lock`,
//! `SELECT orders`, `cache.load`, `smtp.send`); they never name a particular
//! service. The table is in `docs/diagnose.md`.

/// Splits a name into lowercase words, as the traces crate does.
pub use chokepoint_traces::classify::words;

fn has_any(words: &[String], set: &[&str]) -> bool {
    words.iter().any(|w| set.contains(&w.as_str()))
}

/// Words of a mutual-exclusion wait.
pub const LOCK_WORDS: &[&str] = &[
    "lock",
    "locked",
    "locking",
    "mutex",
    "latch",
    "monitor",
    "synchronized",
    "rwlock",
    "futex",
    "spinlock",
];
/// Words of a stop-the-world pause.
pub const PAUSE_WORDS: &[&str] = &["stall", "pause", "gc", "safepoint", "stw", "freeze"];
/// Words of a bounded pool, queue or worker set.
pub const POOL_WORDS: &[&str] = &[
    "pool",
    "connection",
    "connections",
    "conn",
    "acquire",
    "acquiring",
    "semaphore",
    "permit",
    "worker",
    "workers",
    "thread",
    "executor",
    "queue",
    "queued",
    "slot",
    "throttle",
    "throttled",
];
/// Words of a cache.
pub const CACHE_WORDS: &[&str] = &["cache", "cached", "memo", "memoize"];
/// Words of filling a cache entry (on a miss).
pub const FILL_WORDS: &[&str] = &[
    "load",
    "loader",
    "fill",
    "miss",
    "compute",
    "recompute",
    "refresh",
    "populate",
    "rebuild",
    "revalidate",
];
/// Words of a database statement.
pub const DB_WORDS: &[&str] = &[
    "db",
    "sql",
    "query",
    "select",
    "insert",
    "update",
    "delete",
    "statement",
    "execute",
    "postgres",
    "postgresql",
    "mysql",
    "sqlite",
    "mongo",
    "mongodb",
    "cassandra",
    "jdbc",
];
/// Words of work that a response does not need to wait for: notifications
/// and other side effects.
pub const SIDE_EFFECT_WORDS: &[&str] = &[
    "email",
    "emails",
    "mail",
    "mailer",
    "smtp",
    "notifier",
    "notify",
    "notification",
    "notifications",
    "sms",
    "push",
    "webhook",
    "audit",
    "analytics",
    "telemetry",
    "track",
    "tracking",
    "send",
    "publish",
    "emit",
];

/// The kind of step an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Waiting for a mutual-exclusion lock.
    LockWait,
    /// Waiting out a stop-the-world pause.
    PauseWait,
    /// Waiting for a cache entry another request is filling.
    CacheWait,
    /// Waiting for a slot of a bounded pool, queue or worker set (also any other wait).
    PoolWait,
    /// Filling a cache entry.
    CacheFill,
    /// A database statement.
    Database,
    /// Work in another service (a dependency).
    Dependency,
    /// Anything else: the service's own work.
    Compute,
}

/// Classifies one operation. `wait` is the traces crate's wait-versus-run
/// verdict; `remote` says the operation belongs to a service the entry
/// service calls.
pub fn step_kind(service: &str, operation: &str, wait: bool, remote: bool) -> StepKind {
    let w = words(operation);
    if wait {
        if has_any(&w, LOCK_WORDS) {
            StepKind::LockWait
        } else if has_any(&w, PAUSE_WORDS) {
            StepKind::PauseWait
        } else if has_any(&w, CACHE_WORDS) {
            StepKind::CacheWait
        } else {
            StepKind::PoolWait
        }
    } else if has_any(&w, CACHE_WORDS) && has_any(&w, FILL_WORDS) {
        StepKind::CacheFill
    } else if remote {
        StepKind::Dependency
    } else if has_any(&w, DB_WORDS) || has_any(&words(service), DB_WORDS) {
        StepKind::Database
    } else {
        StepKind::Compute
    }
}

/// Whether a dependency's name says it is a side effect (notification, audit, ...).
pub fn is_side_effect(service: &str, operation: &str) -> bool {
    has_any(&words(operation), SIDE_EFFECT_WORDS) || has_any(&words(service), SIDE_EFFECT_WORDS)
}

/// What a waiting step most likely waits for, in words for the report.
pub fn resource_noun(operation: &str) -> &'static str {
    let w = words(operation);
    if has_any(&w, &["connection", "connections", "conn"])
        || (has_any(&w, &["pool"]) && has_any(&w, DB_WORDS))
    {
        "connection pool"
    } else if has_any(&w, &["pool"]) {
        "pool"
    } else if has_any(&w, &["semaphore", "permit"]) {
        "semaphore"
    } else if has_any(&w, &["worker", "workers", "thread", "executor"]) {
        "worker pool"
    } else if has_any(&w, &["queue", "queued"]) {
        "queue"
    } else {
        "fixed-capacity resource"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_common_instrumentation_classify() {
        let k = |op: &str, wait: bool| step_kind("svc", op, wait, false);
        assert_eq!(k("HikariPool.getConnection", true), StepKind::PoolWait);
        assert_eq!(k("db.pool.acquire", true), StepKind::PoolWait);
        assert_eq!(k("Semaphore.acquire", true), StepKind::PoolWait);
        assert_eq!(k("mutex.lock wait", true), StepKind::LockWait);
        assert_eq!(k("inventory lock.wait", true), StepKind::LockWait);
        assert_eq!(k("gc.pause wait", true), StepKind::PauseWait);
        assert_eq!(k("cache.wait", true), StepKind::CacheWait);
        assert_eq!(k("cache.load", false), StepKind::CacheFill);
        assert_eq!(k("productCacheRefresh", false), StepKind::CacheFill);
        assert_eq!(k("SELECT orders", false), StepKind::Database);
        assert_eq!(k("render template", false), StepKind::Compute);
        assert_eq!(
            step_kind("billing", "POST /charge", false, true),
            StepKind::Dependency
        );
        assert!(is_side_effect("mailer", "POST /v1/messages"));
        assert!(is_side_effect("notifier", "sendWelcomeEmail"));
        assert!(!is_side_effect("billing", "POST /charge"));
        assert_eq!(resource_noun("HikariPool.getConnection"), "connection pool");
        assert_eq!(resource_noun("db.pool.acquire"), "connection pool");
        assert_eq!(resource_noun("executor.queue.wait"), "worker pool");
    }
}
