//! OTLP/JSON and Jaeger JSON decoding into [`Span`]s.
//!
//! OTLP/JSON follows the OTLP specification's JSON encoding: lowerCamelCase
//! field names (the proto snake_case names are accepted too), trace and span
//! ids as hex (base64 accepted, as a generic proto3 JSON encoder writes them),
//! 64-bit integers as strings or numbers, enums as integers or names. Unknown
//! fields are ignored. Strings are borrowed from the input where possible, so
//! a span costs no allocation beyond interning new names.
//!
//! Jaeger JSON is the UI's download / query API format:
//! `{"data": [{"traceID", "spans": [...], "processes": {...}}]}` with
//! microsecond times and `references` (CHILD_OF / FOLLOWS_FROM).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;

use crate::classify::{AttrValue, SpanAttrs};
use crate::model::{parse_id_hex, Interner, Span, SpanKind};
use crate::{DecodeError, DecodeStats};

/// One JSON document: OTLP (`resourceSpans`) or Jaeger (`data`).
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default, rename = "resourceSpans", alias = "resource_spans")]
    resource_spans: Option<Vec<ResourceSpans<'a>>>,
    #[serde(borrow, default)]
    data: Option<Vec<JaegerTrace<'a>>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
    #[serde(
        borrow,
        default,
        rename = "scopeSpans",
        alias = "scope_spans",
        alias = "instrumentationLibrarySpans"
    )]
    scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(borrow, default)]
    spans: Vec<OtlpSpan<'a>>,
}

#[derive(Deserialize)]
struct OtlpSpan<'a> {
    #[serde(borrow, default, rename = "traceId", alias = "trace_id")]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default, rename = "spanId", alias = "span_id")]
    span_id: Cow<'a, str>,
    #[serde(borrow, default, rename = "parentSpanId", alias = "parent_span_id")]
    parent_span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(default, deserialize_with = "de_kind")]
    kind: SpanKind,
    #[serde(
        default,
        rename = "startTimeUnixNano",
        alias = "start_time_unix_nano",
        deserialize_with = "de_u64"
    )]
    start: u64,
    #[serde(
        default,
        rename = "endTimeUnixNano",
        alias = "end_time_unix_nano",
        deserialize_with = "de_u64"
    )]
    end: u64,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    status: Option<OtlpStatus>,
}

#[derive(Deserialize)]
struct OtlpStatus {
    #[serde(default, deserialize_with = "de_status_code")]
    code: i64,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow, default)]
    value: Option<AnyValue<'a>>,
}

#[derive(Deserialize)]
struct AnyValue<'a> {
    #[serde(borrow, default, rename = "stringValue", alias = "string_value")]
    string_value: Option<Cow<'a, str>>,
    #[serde(default, rename = "boolValue", alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(
        default,
        rename = "intValue",
        alias = "int_value",
        deserialize_with = "de_opt_i64"
    )]
    int_value: Option<i64>,
    #[serde(default, rename = "doubleValue", alias = "double_value")]
    double_value: Option<f64>,
    #[serde(default, rename = "arrayValue", alias = "array_value")]
    _array: Option<IgnoredAny>,
    #[serde(default, rename = "kvlistValue", alias = "kvlist_value")]
    _kvlist: Option<IgnoredAny>,
}

impl AnyValue<'_> {
    fn as_attr(&self) -> AttrValue<'_> {
        if let Some(s) = &self.string_value {
            AttrValue::Str(s)
        } else if let Some(b) = self.bool_value {
            AttrValue::Bool(b)
        } else if let Some(i) = self.int_value {
            AttrValue::Int(i)
        } else if let Some(d) = self.double_value {
            AttrValue::Double(d)
        } else {
            AttrValue::Other
        }
    }
}

#[derive(Deserialize)]
struct JaegerTrace<'a> {
    #[serde(borrow, default)]
    spans: Vec<JaegerSpan<'a>>,
    #[serde(borrow, default)]
    processes: HashMap<Cow<'a, str>, JaegerProcess<'a>>,
}

#[derive(Deserialize)]
struct JaegerProcess<'a> {
    #[serde(borrow, default, rename = "serviceName")]
    service_name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JaegerSpan<'a> {
    #[serde(borrow, default, rename = "traceID")]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default, rename = "spanID")]
    span_id: Cow<'a, str>,
    #[serde(borrow, default, rename = "parentSpanID")]
    parent_span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "operationName")]
    operation_name: Cow<'a, str>,
    #[serde(borrow, default)]
    references: Vec<JaegerRef<'a>>,
    #[serde(default, rename = "startTime", deserialize_with = "de_u64")]
    start_us: u64,
    #[serde(default, deserialize_with = "de_i64")]
    duration: i64,
    #[serde(borrow, default)]
    tags: Vec<JaegerTag<'a>>,
    #[serde(borrow, default, rename = "processID")]
    process_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    process: Option<JaegerProcess<'a>>,
}

#[derive(Deserialize)]
struct JaegerRef<'a> {
    #[serde(borrow, default, rename = "refType")]
    ref_type: Cow<'a, str>,
    #[serde(borrow, default, rename = "spanID")]
    span_id: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JaegerTag<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default)]
    value: serde_json::Value,
}

/// Decodes one JSON document (an OTLP `ExportTraceServiceRequest` or a Jaeger
/// download) and appends its spans to `out`. Invalid spans (bad ids) are
/// skipped and counted in `stats`; a document of the wrong shape is an error.
pub fn decode_json(
    bytes: &[u8],
    interner: &mut Interner,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) -> Result<(), DecodeError> {
    let top: Top<'_> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    match (top.resource_spans, top.data) {
        (Some(rs), _) => {
            otlp_spans(rs, interner, out, stats);
            Ok(())
        }
        (None, Some(traces)) => {
            jaeger_spans(traces, interner, out, stats);
            Ok(())
        }
        (None, None) => Err(DecodeError::Shape(
            "expected the field `resourceSpans` (OTLP/JSON) or `data` (Jaeger JSON)".into(),
        )),
    }
}

fn otlp_spans(
    resource_spans: Vec<ResourceSpans<'_>>,
    interner: &mut Interner,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) {
    for rs in resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| {
                r.attributes.iter().find_map(|kv| match &kv.value {
                    Some(AnyValue {
                        string_value: Some(s),
                        ..
                    }) if kv.key == "service.name" => Some(s.as_ref()),
                    _ => None,
                })
            })
            .unwrap_or("unknown_service");
        let service = interner.intern(service);
        for ss in rs.scope_spans {
            for s in ss.spans {
                let trace_id = parse_id_hex(&s.trace_id, 16).filter(|id| *id != 0);
                let span_id = parse_id_hex(&s.span_id, 8).filter(|id| *id != 0);
                let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                    stats.invalid(format!(
                        "span {:?}: traceId/spanId must be 32/16 hex digits, got {:?}/{:?}",
                        s.name, s.trace_id, s.span_id
                    ));
                    continue;
                };
                let parent_id = match s.parent_span_id.as_deref() {
                    None | Some("") => None,
                    Some(p) => match parse_id_hex(p, 8) {
                        Some(0) => None,
                        Some(id) => Some(id as u64),
                        None => {
                            stats.invalid(format!(
                                "span {:?}: parentSpanId must be 16 hex digits, got {p:?}",
                                s.name
                            ));
                            continue;
                        }
                    },
                };
                let mut attrs = SpanAttrs::default();
                for kv in &s.attributes {
                    if let Some(v) = &kv.value {
                        attrs.offer(&kv.key, v.as_attr());
                    }
                }
                let peer = attrs.peer_name().map(|p| interner.intern(&p));
                out.push(Span {
                    trace_id,
                    span_id: span_id as u64,
                    parent_id,
                    follows_from: false,
                    service,
                    name: interner.intern(&s.name),
                    kind: s.kind,
                    start_ns: s.start,
                    end_ns: s.end,
                    error: s.status.is_some_and(|st| st.code == 2) || attrs.error,
                    wait_hint: attrs.wait_hint,
                    peer,
                    retry: attrs.retry,
                });
            }
        }
    }
}

fn json_attr(value: &serde_json::Value) -> AttrValue<'_> {
    match value {
        serde_json::Value::String(s) => AttrValue::Str(s),
        serde_json::Value::Bool(b) => AttrValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        _ => AttrValue::Other,
    }
}

/// Jaeger ids are hex of 16 or 32 digits, sometimes without leading zeros.
fn jaeger_id(text: &str, bytes: usize) -> Option<u128> {
    if text.is_empty() || text.len() > bytes * 2 {
        return None;
    }
    let padded = format!("{text:0>width$}", width = bytes * 2);
    parse_id_hex(&padded, bytes)
}

fn jaeger_spans(
    traces: Vec<JaegerTrace<'_>>,
    interner: &mut Interner,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) {
    for trace in traces {
        for s in trace.spans {
            let trace_id = jaeger_id(&s.trace_id, 16).filter(|id| *id != 0);
            let span_id = jaeger_id(&s.span_id, 8).filter(|id| *id != 0);
            let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                stats.invalid(format!(
                    "span {:?}: traceID/spanID must be hex, got {:?}/{:?}",
                    s.operation_name, s.trace_id, s.span_id
                ));
                continue;
            };
            // The first reference is the parent; FOLLOWS_FROM means it does not block it.
            let (parent, follows_from) = match s.references.first() {
                Some(r) => (
                    jaeger_id(&r.span_id, 8).map(|id| id as u64),
                    r.ref_type.eq_ignore_ascii_case("FOLLOWS_FROM"),
                ),
                None => (
                    s.parent_span_id
                        .as_deref()
                        .and_then(|p| jaeger_id(p, 8))
                        .map(|id| id as u64),
                    false,
                ),
            };
            let service = s
                .process
                .as_ref()
                .map(|p| p.service_name.as_ref())
                .or_else(|| {
                    s.process_id
                        .as_deref()
                        .and_then(|id| trace.processes.get(id))
                        .map(|p| p.service_name.as_ref())
                })
                .unwrap_or("unknown_service");
            let mut attrs = SpanAttrs::default();
            for tag in &s.tags {
                attrs.offer(&tag.key, json_attr(&tag.value));
            }
            let peer = attrs.peer_name().map(|p| interner.intern(&p));
            let start_ns = s.start_us.saturating_mul(1000);
            let end_ns = if s.duration < 0 {
                // Keep the inversion visible to the analysis, which counts and fixes it.
                start_ns.saturating_sub(s.duration.unsigned_abs().saturating_mul(1000))
            } else {
                start_ns.saturating_add((s.duration as u64).saturating_mul(1000))
            };
            out.push(Span {
                trace_id,
                span_id: span_id as u64,
                parent_id: parent.filter(|p| *p != 0),
                follows_from,
                service: interner.intern(service),
                name: interner.intern(&s.operation_name),
                kind: attrs.kind.unwrap_or_default(),
                start_ns,
                end_ns,
                error: attrs.error,
                wait_hint: attrs.wait_hint,
                peer,
                retry: attrs.retry,
            });
        }
    }
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an unsigned integer or a string of digits")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("negative time {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v >= 0.0 && v.is_finite() {
            Ok(v as u64)
        } else {
            Err(E::custom(format!("invalid time {v}")))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.parse()
            .map_err(|_| E::custom(format!("expected digits, got {v:?}")))
    }
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor)
}

struct I64Visitor;

impl Visitor<'_> for I64Visitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string of digits")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Ok(v as i64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.parse()
            .map_err(|_| E::custom(format!("expected an integer, got {v:?}")))
    }
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(I64Visitor)
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(I64Visitor).map(Some)
}

struct KindVisitor;

impl Visitor<'_> for KindVisitor {
    type Value = SpanKind;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a span kind (integer or SPAN_KIND_* name)")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpanKind, E> {
        Ok(SpanKind::from_otlp(v as i64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpanKind, E> {
        Ok(SpanKind::from_otlp(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SpanKind, E> {
        Ok(SpanKind::from_name(v))
    }
}

fn de_kind<'de, D: Deserializer<'de>>(d: D) -> Result<SpanKind, D::Error> {
    d.deserialize_any(KindVisitor)
}

struct StatusVisitor;

impl Visitor<'_> for StatusVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status code (integer or STATUS_CODE_* name)")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        Ok(v as i64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        Ok(match v {
            "STATUS_CODE_OK" => 1,
            "STATUS_CODE_ERROR" => 2,
            _ => 0,
        })
    }
}

fn de_status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(StatusVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> (Vec<Span>, Interner, DecodeStats) {
        let mut interner = Interner::new();
        let mut out = Vec::new();
        let mut stats = DecodeStats::default();
        decode_json(text.as_bytes(), &mut interner, &mut out, &mut stats).unwrap();
        (out, interner, stats)
    }

    #[test]
    fn otlp_json_spans() {
        let (spans, i, stats) = decode(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
            "scopeSpans":[{"scope":{"name":"x"},"spans":[
              {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","parentSpanId":"",
               "name":"db.pool.acquire","kind":1,"startTimeUnixNano":"1000","endTimeUnixNano":"5000",
               "attributes":[{"key":"chokepoint.wait","value":{"boolValue":true}},{"key":"n","value":{"intValue":"5"}}]},
              {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b8","parentSpanId":"00f067aa0ba902b7",
               "name":"POST /charge","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":2000,"endTimeUnixNano":"3000",
               "attributes":[{"key":"peer.service","value":{"stringValue":"payment"}}],"status":{"code":2,"message":"timeout"}},
              {"traceId":"zz","spanId":"00f067aa0ba902b9","name":"bad"}
            ]}]}]}"#,
        );
        assert_eq!(spans.len(), 2);
        assert_eq!(stats.invalid_spans, 1);
        assert_eq!(i.resolve(spans[0].service), "checkout");
        assert_eq!(spans[0].parent_id, None);
        assert_eq!(spans[0].wait_hint, Some(true));
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (1000, 5000));
        assert_eq!(spans[1].kind, SpanKind::Client);
        assert_eq!(spans[1].parent_id, Some(0x00f067aa0ba902b7));
        assert!(spans[1].error);
        assert_eq!(i.resolve(spans[1].peer.unwrap()), "payment");
    }

    #[test]
    fn jaeger_json_spans() {
        let (spans, i, _) = decode(
            r#"{"data":[{"traceID":"abc","spans":[
              {"traceID":"abc","spanID":"1","operationName":"GET /","references":[],"startTime":1000,"duration":50,
               "tags":[{"key":"span.kind","type":"string","value":"server"}],"processID":"p1"},
              {"traceID":"abc","spanID":"2","operationName":"send","references":[{"refType":"FOLLOWS_FROM","traceID":"abc","spanID":"1"}],
               "startTime":1010,"duration":-5,"tags":[{"key":"error","type":"bool","value":true}],"processID":"p2"}
            ],"processes":{"p1":{"serviceName":"web","tags":[]},"p2":{"serviceName":"mailer"}}}]}"#,
        );
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].trace_id, 0xabc);
        assert_eq!(spans[0].kind, SpanKind::Server);
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (1_000_000, 1_050_000));
        assert_eq!(i.resolve(spans[1].service), "mailer");
        assert!(spans[1].follows_from && spans[1].error);
        assert!(spans[1].end_ns < spans[1].start_ns);
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let mut i = Interner::new();
        let mut out = Vec::new();
        let mut st = DecodeStats::default();
        for bad in [
            "{}",
            "[1,2]",
            "{\"resourceSpans\": 5}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"-1\"}]}]}]}",
            "{",
        ] {
            assert!(
                decode_json(bad.as_bytes(), &mut i, &mut out, &mut st).is_err(),
                "{bad}"
            );
        }
    }
}
