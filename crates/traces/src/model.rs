//! The normalized span every input format is decoded into, and the string interner behind it.
//!
//! A [`Span`] is small plain data (about 72 bytes): ids as integers, service
//! and operation names as [`Sym`]bols into an [`Interner`], times as Unix
//! nanoseconds, and only the attributes the analysis uses, already reduced
//! (the wait hint, the dependency a call goes to, the retry marker).

use std::collections::HashMap;

use crate::classify;

/// A W3C trace id (16 bytes, big-endian).
pub type TraceId = u128;
/// A span id (8 bytes, big-endian); 0 is "no span".
pub type SpanId = u64;

/// An interned string (index into an [`Interner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

/// OpenTelemetry span kind (OTLP numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    /// Kind not given (0).
    #[default]
    Unspecified,
    /// In-process work (1).
    Internal,
    /// Handles a remote request (2).
    Server,
    /// Makes a remote request (3).
    Client,
    /// Hands a message to a queue (4); what consumes it runs asynchronously.
    Producer,
    /// Processes a message (5), asynchronously to its producer.
    Consumer,
}

impl SpanKind {
    /// From the OTLP integer (unknown values are `Unspecified`).
    pub fn from_otlp(value: i64) -> SpanKind {
        match value {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// From a name: `SPAN_KIND_SERVER` (proto enum names) or `server` (Jaeger's `span.kind` tag).
    pub fn from_name(name: &str) -> SpanKind {
        let lower = name.trim_start_matches("SPAN_KIND_").to_ascii_lowercase();
        match lower.as_str() {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP integer.
    pub fn as_otlp(self) -> i64 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }
}

/// One span, normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// Trace id (never 0 for a decoded span).
    pub trace_id: TraceId,
    /// Span id (never 0 for a decoded span).
    pub span_id: SpanId,
    /// Parent span id; `None` for a root.
    pub parent_id: Option<SpanId>,
    /// The parent reference is FOLLOWS_FROM (Jaeger): the span does not block its parent.
    pub follows_from: bool,
    /// `service.name` of the resource (or Jaeger process).
    pub service: Sym,
    /// The span name (Jaeger `operationName`).
    pub name: Sym,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds (may be before `start_ns` in bad input; the analysis counts and fixes that).
    pub end_ns: u64,
    /// Status ERROR (OTLP status code 2, Jaeger/OpenTracing `error=true`).
    pub error: bool,
    /// An explicit wait hint from attributes (`chokepoint.wait`); `None` leaves it to the name rules.
    pub wait_hint: Option<bool>,
    /// What a call goes to, from attributes (`peer.service`, `server.address`, `db.system`, ...).
    pub peer: Option<Sym>,
    /// Attributes mark this span as a retry (`http.request.resend_count` > 0 and friends).
    pub retry: bool,
}

impl Span {
    /// End minus start, 0 when negative.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Interned strings with per-string facts computed once (is this operation name a waiting one?).
#[derive(Debug, Default, Clone)]
pub struct Interner {
    strings: Vec<Box<str>>,
    wait_name: Vec<bool>,
    map: HashMap<Box<str>, Sym>,
}

/// Most distinct strings kept; beyond it every new string becomes [`Interner::OVERFLOW`].
pub const MAX_INTERNED: usize = 1 << 20;

impl Interner {
    /// The symbol every string maps to once the interner is full.
    pub const OVERFLOW: &'static str = "(too many distinct names)";

    /// An empty interner.
    pub fn new() -> Interner {
        Interner::default()
    }

    /// The symbol of `s`, adding it when new.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(sym) = self.map.get(s) {
            return *sym;
        }
        let s = if self.strings.len() >= MAX_INTERNED {
            if let Some(sym) = self.map.get(Self::OVERFLOW) {
                return *sym;
            }
            Self::OVERFLOW
        } else {
            s
        };
        let sym = Sym(self.strings.len() as u32);
        self.strings.push(s.into());
        self.wait_name.push(classify::is_wait_name(s));
        self.map.insert(s.into(), sym);
        sym
    }

    /// The string of `sym` (empty for a symbol from another interner).
    pub fn resolve(&self, sym: Sym) -> &str {
        self.strings.get(sym.0 as usize).map_or("", |s| s)
    }

    /// Whether `sym`, as an operation name, names a waiting step (see [`classify`]).
    pub fn is_wait_name(&self, sym: Sym) -> bool {
        self.wait_name.get(sym.0 as usize).copied().unwrap_or(false)
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// Whether `span` is a waiting span: its explicit hint, else the name rules.
pub fn is_wait(span: &Span, interner: &Interner) -> bool {
    span.wait_hint
        .unwrap_or_else(|| interner.is_wait_name(span.name))
}

/// Parses 32 (trace) or 16 (span) lowercase/uppercase hex digits; also accepts
/// the base64 form a generic proto3 JSON encoder writes (24 or 12 characters).
pub fn parse_id_hex(text: &str, bytes: usize) -> Option<u128> {
    if text.len() == bytes * 2 {
        let mut v: u128 = 0;
        for c in text.bytes() {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | u128::from(d);
        }
        return Some(v);
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    id_from_bytes(&decoded, bytes)
}

/// Big-endian id from raw bytes of exactly `bytes` length.
pub fn id_from_bytes(raw: &[u8], bytes: usize) -> Option<u128> {
    if raw.len() != bytes {
        return None;
    }
    Some(raw.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)))
}

/// Lowercase hex of a trace id (32 digits).
pub fn trace_id_hex(id: TraceId) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_hex_and_base64() {
        assert_eq!(
            parse_id_hex("4bf92f3577b34da6a3ce929d0e0e4736", 16),
            Some(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(
            parse_id_hex("00f067aa0ba902b7", 8),
            Some(0x00f067aa0ba902b7)
        );
        // base64 of 00f067aa0ba902b7
        assert_eq!(parse_id_hex("APBnqgupArc=", 8), Some(0x00f067aa0ba902b7));
        assert_eq!(parse_id_hex("xyz", 8), None);
        assert_eq!(parse_id_hex("00f067aa0ba902bz", 8), None);
    }

    #[test]
    fn interner_is_stable_and_bounded_in_meaning() {
        let mut i = Interner::new();
        let a = i.intern("db.pool.acquire");
        let b = i.intern("db.query");
        assert_eq!(i.intern("db.pool.acquire"), a);
        assert_eq!(i.resolve(b), "db.query");
        assert!(i.is_wait_name(a));
        assert!(!i.is_wait_name(b));
    }
}
