//! Wait-versus-run rules and the attributes the analysis reads (dependency identity, retries).
//!
//! A span is **waiting** (time spent queued for a resource, not doing work) when:
//!
//! 1. its attribute `chokepoint.wait` is `true` (the lab sets it on every
//!    waiting span); `chokepoint.wait = false` forces *running*; otherwise
//! 2. its name, split into lowercase words at punctuation, spaces and
//!    camelCase boundaries, contains one of [`WAIT_WORDS`] (`db.pool.acquire`,
//!    `lock.wait`, `email.queue.wait`, `cache.wait`, `stall.wait`,
//!    `Semaphore.acquire`, `retry backoff`, `sleep`), or one of the word pairs
//!    in [`WAIT_PAIRS`] (`HikariPool.getConnection`, `queue time`).
//!
//! Everything else is running. The rules are deliberately about names and one
//! attribute only: OpenTelemetry's semantic conventions have no span-level
//! "waiting" marker (pool waits are metrics there, `db.client.connection.wait_time`).

/// Words that make an operation name a waiting one.
pub const WAIT_WORDS: &[&str] = &[
    "wait",
    "waiting",
    "waits",
    "acquire",
    "acquiring",
    "blocked",
    "queued",
    "backoff",
    "sleep",
    "throttle",
    "throttled",
    "stall",
];

/// Consecutive word pairs that make an operation name a waiting one.
pub const WAIT_PAIRS: &[(&str, &str)] = &[
    ("get", "connection"),
    ("checkout", "connection"),
    ("queue", "time"),
    ("queue", "delay"),
];

/// Splits a name into lowercase words at non-alphanumerics and lower→upper case changes
/// (`HikariPool.getConnection` → `hikari pool get connection`). The diagnosis' name
/// rules split the same way, with this function.
pub fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether an operation name, by the name rules alone, is a waiting step.
pub fn is_wait_name(name: &str) -> bool {
    let w = words(name);
    w.iter().any(|word| WAIT_WORDS.contains(&word.as_str()))
        || w.windows(2).any(|pair| {
            WAIT_PAIRS
                .iter()
                .any(|(a, b)| pair[0] == *a && pair[1] == *b)
        })
}

/// An attribute value as decoders see it.
#[derive(Clone, Copy, Debug)]
pub enum AttrValue<'a> {
    /// String.
    Str(&'a str),
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Floating point.
    Double(f64),
    /// Arrays, maps, bytes: not used by the analysis.
    Other,
}

/// Dependency-identity attributes, most specific first.
pub const PEER_KEYS: &[&str] = &[
    "peer.service",
    "db.system.name",
    "db.system",
    "rpc.service",
    "messaging.system",
    "server.address",
    "net.peer.name",
    "http.host",
];

/// What the analysis keeps from a span's attributes.
#[derive(Debug, Default, Clone)]
pub struct SpanAttrs {
    /// `chokepoint.wait`.
    pub wait_hint: Option<bool>,
    /// Best dependency identity seen so far: (priority in [`PEER_KEYS`], value).
    pub peer: Option<(usize, String)>,
    /// `server.port` / `net.peer.port`, appended to an address identity.
    pub port: Option<i64>,
    /// A retry marker: `http.request.resend_count` > 0, or any `*retry*`/`*resend*` key with a true or positive value.
    pub retry: bool,
    /// `error = true` (OpenTracing/Jaeger) or `otel.status_code = ERROR`.
    pub error: bool,
    /// `span.kind` (Jaeger tags).
    pub kind: Option<crate::SpanKind>,
}

impl SpanAttrs {
    /// Looks at one attribute.
    pub fn offer(&mut self, key: &str, value: AttrValue<'_>) {
        match (key, value) {
            ("chokepoint.wait", AttrValue::Bool(b)) => self.wait_hint = Some(b),
            ("chokepoint.wait", AttrValue::Str(s)) => {
                self.wait_hint = Some(s.eq_ignore_ascii_case("true"))
            }
            ("server.port" | "net.peer.port", AttrValue::Int(p)) => self.port = Some(p),
            ("error", AttrValue::Bool(true)) => self.error = true,
            ("error", AttrValue::Str(s)) if s.eq_ignore_ascii_case("true") => self.error = true,
            ("otel.status_code", AttrValue::Str(s)) if s.eq_ignore_ascii_case("error") => {
                self.error = true
            }
            ("span.kind", AttrValue::Str(s)) => self.kind = Some(crate::SpanKind::from_name(s)),
            _ => {
                if let Some(rank) = PEER_KEYS.iter().position(|k| *k == key) {
                    if let AttrValue::Str(s) = value {
                        if !s.is_empty() && self.peer.as_ref().map_or(true, |(r, _)| rank < *r) {
                            self.peer = Some((rank, s.to_string()));
                        }
                    }
                } else if key.contains("retry") || key.contains("resend") {
                    match value {
                        AttrValue::Int(n) if n > 0 => self.retry = true,
                        AttrValue::Bool(true) => self.retry = true,
                        AttrValue::Str(s) if s.parse::<i64>().is_ok_and(|n| n > 0) => {
                            self.retry = true
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The dependency identity: `peer.service` etc., or `address:port` for an address key.
    pub fn peer_name(&self) -> Option<String> {
        let (rank, value) = self.peer.as_ref()?;
        let is_address =
            PEER_KEYS[*rank] == "server.address" || PEER_KEYS[*rank] == "net.peer.name";
        Some(match (is_address, self.port) {
            (true, Some(port)) => format!("{value}:{port}"),
            _ => value.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_names() {
        for name in [
            "db.pool.acquire",
            "lock.wait",
            "email.queue.wait",
            "cache.wait",
            "stall.wait",
            "HikariPool.getConnection",
            "Semaphore.acquire",
            "retry backoff",
            "queue_time",
        ] {
            assert!(is_wait_name(name), "{name} should be waiting");
        }
        for name in [
            "db.query",
            "lock.hold",
            "POST /checkout",
            "email.enqueue",
            "email.process",
            "cache.load",
            "inventory.update",
            "GET /orders",
            "awaitable_thing",
        ] {
            assert!(!is_wait_name(name), "{name} should be running");
        }
    }

    #[test]
    fn attributes_reduce() {
        let mut a = SpanAttrs::default();
        a.offer("server.address", AttrValue::Str("10.0.0.1"));
        a.offer("server.port", AttrValue::Int(5432));
        assert_eq!(a.peer_name().as_deref(), Some("10.0.0.1:5432"));
        a.offer("peer.service", AttrValue::Str("payment"));
        assert_eq!(a.peer_name().as_deref(), Some("payment"));
        a.offer("db.system", AttrValue::Str("sqlite"));
        assert_eq!(a.peer_name().as_deref(), Some("payment"));
        a.offer("http.request.resend_count", AttrValue::Int(0));
        assert!(!a.retry);
        a.offer("http.request.resend_count", AttrValue::Int(2));
        assert!(a.retry);
        a.offer("chokepoint.wait", AttrValue::Bool(true));
        assert_eq!(a.wait_hint, Some(true));
    }
}
