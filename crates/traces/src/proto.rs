//! OTLP protobuf: the trace messages of `opentelemetry-proto`, decoding into [`Span`]s, and re-encoding as OTLP/JSON.
//!
//! The messages are declared here with `prost` derives (field numbers from
//! `opentelemetry/proto/{common,resource,trace,collector/trace}/v1/*.proto`)
//! instead of depending on the `opentelemetry-proto` crate: its generated
//! types come with `tonic` (and so `tokio`/`hyper`) which this pure crate must
//! not pull in, and the subset for traces is about a hundred lines with no
//! `protoc` build step. Unknown fields (entity refs, newer additions) are
//! skipped by prost, as protobuf requires.

use serde_json::{json, Map, Value as Json};

use crate::classify::{AttrValue, SpanAttrs};
use crate::model::{id_from_bytes, Interner, Span, SpanKind};
use crate::{DecodeError, DecodeStats};

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// Spans grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ExportTraceServiceResponse` (what a receiver answers).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    /// Set when some spans were rejected.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    /// Spans rejected.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `opentelemetry.proto.trace.v1.ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The resource (its `service.name` names the service).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Spans grouped by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    /// Schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.resource.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Resource attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.trace.v1.ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The instrumentation scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// Spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<ProtoSpan>,
    /// Schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.common.v1.InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Scope name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Scope version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Scope attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.trace.v1.Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSpan {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C tracestate.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// Trace flags and the is-remote bits.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    /// Span name.
    #[prost(string, tag = "5")]
    pub name: String,
    /// Span kind (OTLP numbering).
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start, Unix ns.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, Unix ns.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    /// Events.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    /// Dropped events.
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    /// Links.
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<Link>,
    /// Dropped links.
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    /// Status.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Span.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// When, Unix ns.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Event name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `Span.Link`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Link {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C tracestate.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// Attributes.
    #[prost(message, repeated, tag = "4")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "5")]
    pub dropped_attributes_count: u32,
    /// Flags.
    #[prost(fixed32, tag = "6")]
    pub flags: u32,
}

/// `opentelemetry.proto.trace.v1.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `opentelemetry.proto.common.v1.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

/// The `AnyValue` oneof.
pub mod any_value {
    /// One of the value kinds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// String.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// Bool.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// Int64.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// Double.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// Array.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// Map.
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// Bytes.
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

/// `opentelemetry.proto.common.v1.ArrayValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// Values.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `opentelemetry.proto.common.v1.KeyValueList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    /// Entries.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// Decodes one protobuf `ExportTraceServiceRequest`.
pub fn decode_request(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    <ExportTraceServiceRequest as prost::Message>::decode(bytes)
        .map_err(|e| DecodeError::Proto(e.to_string()))
}

fn attr_value(v: &AnyValue) -> AttrValue<'_> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        _ => AttrValue::Other,
    }
}

/// Appends the spans of a decoded request to `out` (invalid ids counted in `stats`).
pub fn request_spans(
    request: &ExportTraceServiceRequest,
    interner: &mut Interner,
    out: &mut Vec<Span>,
    stats: &mut DecodeStats,
) {
    for rs in &request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| {
                r.attributes
                    .iter()
                    .find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) if kv.key == "service.name" => {
                            Some(s.as_str())
                        }
                        _ => None,
                    })
            })
            .unwrap_or("unknown_service");
        let service = interner.intern(service);
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let trace_id = id_from_bytes(&s.trace_id, 16).filter(|id| *id != 0);
                let span_id = id_from_bytes(&s.span_id, 8).filter(|id| *id != 0);
                let (Some(trace_id), Some(span_id)) = (trace_id, span_id) else {
                    stats.invalid(format!(
                        "span {:?}: trace_id/span_id must be 16/8 bytes, got {}/{}",
                        s.name,
                        s.trace_id.len(),
                        s.span_id.len()
                    ));
                    continue;
                };
                let parent_id = if s.parent_span_id.is_empty() {
                    None
                } else {
                    match id_from_bytes(&s.parent_span_id, 8) {
                        Some(0) => None,
                        Some(p) => Some(p as u64),
                        None => {
                            stats.invalid(format!(
                                "span {:?}: parent_span_id must be 8 bytes, got {}",
                                s.name,
                                s.parent_span_id.len()
                            ));
                            continue;
                        }
                    }
                };
                let mut attrs = SpanAttrs::default();
                for kv in &s.attributes {
                    if let Some(v) = &kv.value {
                        attrs.offer(&kv.key, attr_value(v));
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
                    kind: SpanKind::from_otlp(i64::from(s.kind)),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    error: s.status.as_ref().is_some_and(|st| st.code == 2) || attrs.error,
                    wait_hint: attrs.wait_hint,
                    peer,
                    retry: attrs.retry,
                });
            }
        }
    }
}

/// Counts the spans of a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn any_json(v: &AnyValue) -> Json {
    use base64::Engine as _;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!({"stringValue": s}),
        Some(any_value::Value::BoolValue(b)) => json!({"boolValue": b}),
        Some(any_value::Value::IntValue(i)) => json!({"intValue": i.to_string()}),
        Some(any_value::Value::DoubleValue(d)) => {
            if d.is_finite() {
                json!({"doubleValue": d})
            } else {
                json!({"doubleValue": d.to_string()})
            }
        }
        Some(any_value::Value::ArrayValue(a)) => {
            json!({"arrayValue": {"values": a.values.iter().map(any_json).collect::<Vec<_>>()}})
        }
        Some(any_value::Value::KvlistValue(l)) => {
            json!({"kvlistValue": {"values": kvs_json(&l.values)}})
        }
        Some(any_value::Value::BytesValue(b)) => {
            json!({"bytesValue": base64::engine::general_purpose::STANDARD.encode(b)})
        }
        None => json!({}),
    }
}

fn kvs_json(kvs: &[KeyValue]) -> Vec<Json> {
    kvs.iter()
        .map(|kv| {
            json!({"key": kv.key, "value": kv.value.as_ref().map(any_json).unwrap_or_else(|| json!({}))})
        })
        .collect()
}

fn span_json(s: &ProtoSpan) -> Json {
    let mut m = Map::new();
    m.insert("traceId".into(), hex(&s.trace_id).into());
    m.insert("spanId".into(), hex(&s.span_id).into());
    if !s.trace_state.is_empty() {
        m.insert("traceState".into(), s.trace_state.clone().into());
    }
    if !s.parent_span_id.is_empty() {
        m.insert("parentSpanId".into(), hex(&s.parent_span_id).into());
    }
    if s.flags != 0 {
        m.insert("flags".into(), s.flags.into());
    }
    m.insert("name".into(), s.name.clone().into());
    m.insert("kind".into(), s.kind.into());
    m.insert(
        "startTimeUnixNano".into(),
        s.start_time_unix_nano.to_string().into(),
    );
    m.insert(
        "endTimeUnixNano".into(),
        s.end_time_unix_nano.to_string().into(),
    );
    m.insert("attributes".into(), kvs_json(&s.attributes).into());
    if s.dropped_attributes_count > 0 {
        m.insert(
            "droppedAttributesCount".into(),
            s.dropped_attributes_count.into(),
        );
    }
    if !s.events.is_empty() {
        let events: Vec<Json> = s
            .events
            .iter()
            .map(|e| {
                json!({"timeUnixNano": e.time_unix_nano.to_string(), "name": e.name, "attributes": kvs_json(&e.attributes)})
            })
            .collect();
        m.insert("events".into(), events.into());
    }
    if !s.links.is_empty() {
        let links: Vec<Json> = s
            .links
            .iter()
            .map(|l| {
                json!({"traceId": hex(&l.trace_id), "spanId": hex(&l.span_id), "attributes": kvs_json(&l.attributes)})
            })
            .collect();
        m.insert("links".into(), links.into());
    }
    if let Some(st) = &s.status {
        let mut status = Map::new();
        if !st.message.is_empty() {
            status.insert("message".into(), st.message.clone().into());
        }
        if st.code != 0 {
            status.insert("code".into(), st.code.into());
        }
        m.insert("status".into(), status.into());
    }
    Json::Object(m)
}

/// The request as one line of OTLP/JSON (the OTLP specification's JSON encoding:
/// hex ids, int64 as strings, enums as integers).
pub fn request_to_json(request: &ExportTraceServiceRequest) -> String {
    let resource_spans: Vec<Json> = request
        .resource_spans
        .iter()
        .map(|rs| {
            let scope_spans: Vec<Json> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut m = Map::new();
                    if let Some(scope) = &ss.scope {
                        m.insert(
                            "scope".into(),
                            json!({"name": scope.name, "version": scope.version, "attributes": kvs_json(&scope.attributes)}),
                        );
                    }
                    m.insert(
                        "spans".into(),
                        ss.spans.iter().map(span_json).collect::<Vec<_>>().into(),
                    );
                    if !ss.schema_url.is_empty() {
                        m.insert("schemaUrl".into(), ss.schema_url.clone().into());
                    }
                    Json::Object(m)
                })
                .collect();
            let mut m = Map::new();
            if let Some(r) = &rs.resource {
                m.insert(
                    "resource".into(),
                    json!({"attributes": kvs_json(&r.attributes)}),
                );
            }
            m.insert("scopeSpans".into(), scope_spans.into());
            if !rs.schema_url.is_empty() {
                m.insert("schemaUrl".into(), rs.schema_url.clone().into());
            }
            Json::Object(m)
        })
        .collect();
    json!({ "resourceSpans": resource_spans }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn request() -> ExportTraceServiceRequest {
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("shop".into()),
                    )],
                    dropped_attributes_count: 0,
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![ProtoSpan {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                        parent_span_id: vec![],
                        name: "lock.wait".into(),
                        kind: 1,
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 20,
                        attributes: vec![kv(
                            "http.request.resend_count",
                            any_value::Value::IntValue(1),
                        )],
                        status: Some(Status {
                            message: "x".into(),
                            code: 2,
                        }),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn protobuf_round_trip_and_json() {
        let bytes = request().encode_to_vec();
        let decoded = decode_request(&bytes).unwrap();
        assert_eq!(decoded, request());
        let mut i = Interner::new();
        let mut out = Vec::new();
        let mut st = DecodeStats::default();
        request_spans(&decoded, &mut i, &mut out, &mut st);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].span_id, 0x0102030405060708);
        assert!(out[0].error && out[0].retry);
        assert_eq!(i.resolve(out[0].service), "shop");
        // The JSON rendering decodes to the same span.
        let json = request_to_json(&decoded);
        assert!(json.contains("\"traceId\":\"abababababababababababababababab\""));
        let mut again = Vec::new();
        crate::json::decode_json(json.as_bytes(), &mut i, &mut again, &mut st).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_request(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut bytes = request().encode_to_vec();
        bytes.truncate(bytes.len() - 3);
        assert!(decode_request(&bytes).is_err());
    }
}
