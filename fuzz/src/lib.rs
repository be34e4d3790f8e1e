//! What each fuzz target checks, one function per target.
//!
//! Shared by the `cargo fuzz` targets (`fuzz_targets/*.rs`, nightly) and by
//! the stable regression test `crates/cli/tests/fuzz_corpus.rs`, which feeds
//! every file of `fuzz/corpus/<target>/` through the same function. Besides
//! "no panic, no unbounded allocation", each check asserts a property that
//! must hold for any input (round trips, agreement between decoders).

use chokepoint_traces::{Analysis, Config, Selection};

/// What a target checks for one input.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("units", units),
    ("scenario_toml", scenario_toml),
    ("budgets_toml", budgets_toml),
    ("otlp_json", otlp_json),
    ("jaeger_json", jaeger_json),
    ("otlp_protobuf", otlp_protobuf),
    ("interval_log", interval_log),
    ("http1_head", http1_head),
    ("http1_chunked", http1_chunked),
    ("run_summary", run_summary),
    ("har", har),
    ("curl", curl),
    ("merge_log", merge_log),
];

/// Durations, rates, percentages and headers as typed on the command line.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = chokepoint::units::parse_duration(text) {
        assert!(d.as_secs_f64() <= 1e9, "{text:?} gave {d:?}");
    }
    if let Ok(rate) = chokepoint::units::parse_rate(text) {
        assert!(
            rate.is_finite() && rate > 0.0 && rate <= 1e7,
            "{text:?} gave {rate}"
        );
    }
    if let Ok(p) = chokepoint::units::parse_percent(text) {
        assert!((0.0..=1.0).contains(&p), "{text:?} gave {p}");
    }
    if let Ok((name, value)) = chokepoint::units::parse_header(text) {
        assert!(
            !name.is_empty() && !value.contains(['\r', '\n']),
            "{text:?}"
        );
    }
}

/// Scenario files (`run scenario.toml`).
pub fn scenario_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chokepoint::scenario::parse(text);
    }
}

/// Budget files (`check --budget`).
pub fn budgets_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chokepoint::budgets::parse(text);
    }
}

fn analyze_json(data: &[u8]) {
    let mut analysis = Analysis::new(Config::default(), Selection::default());
    if analysis.push_json(data).is_ok() {
        let outcome = analysis.finish();
        let _ = outcome.report;
    }
}

/// OTLP/JSON documents (files, `traces listen` bodies) through a whole analysis.
pub fn otlp_json(data: &[u8]) {
    analyze_json(data);
}

/// Jaeger JSON downloads: the same decoder entry, seeded with Jaeger documents.
pub fn jaeger_json(data: &[u8]) {
    analyze_json(data);
}

/// OTLP protobuf (files, receiver bodies): decoded and analysed; and the
/// receiver's re-encoding to OTLP/JSON must decode back to the same spans.
pub fn otlp_protobuf(data: &[u8]) {
    let mut analysis = Analysis::new(Config::default(), Selection::default());
    let Ok(n_proto) = analysis.push_protobuf(data) else {
        return;
    };
    let _ = analysis.finish();
    let request = chokepoint_traces::proto::decode_request(data).expect("decoded once already");
    let json = chokepoint_traces::proto::request_to_json(&request);
    let mut again = Analysis::new(Config::default(), Selection::default());
    let n_json = again
        .push_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded OTLP/JSON does not decode: {e}\n{json}"));
    assert_eq!(
        n_proto, n_json,
        "spans via protobuf vs via its JSON: {json}"
    );
}

/// HdrHistogram interval logs (`compare`, `check`, `merge` read them): what
/// reads must write back and read the same.
pub fn interval_log(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(intervals) = chokepoint_stats::hlog::read(text) else {
        return;
    };
    let mut again = chokepoint_stats::hlog::header(0.0, "fuzz");
    for i in &intervals {
        again.push_str(&chokepoint_stats::hlog::interval_line(
            &i.histogram,
            i.start_s,
            i.length_s,
        ));
    }
    let reread = chokepoint_stats::hlog::read(&again).expect("a written log reads back");
    assert_eq!(intervals.len(), reread.len());
    for (a, b) in intervals.iter().zip(&reread) {
        assert_eq!(a.histogram.len(), b.histogram.len());
        assert_eq!(a.histogram.max(), b.histogram.max());
    }
}

/// The HTTP/1.1 response head parser of the hot path: a complete head lies
/// inside the input and parses the same from exactly its own bytes.
pub fn http1_head(data: &[u8]) {
    if let Ok(Some((status, len))) = chokepoint_engine::fuzz_parse_head(data) {
        assert!(len <= data.len());
        assert!(status <= 999);
        assert_eq!(
            chokepoint_engine::fuzz_parse_head(&data[..len]),
            Ok(Some((status, len)))
        );
    }
}

/// The chunked decoder: the result is the same whatever the read boundaries
/// (the first byte picks the piece size), and never claims more than it got.
pub fn http1_chunked(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let whole = chokepoint_engine::fuzz_decode_chunked(body, body.len().max(1));
    let piece = usize::from(first % 16) + 1;
    let pieces = chokepoint_engine::fuzz_decode_chunked(body, piece);
    assert_eq!(whole, pieces, "piece size {piece}");
    if let Ok((used, _)) = whole {
        assert!(used <= body.len());
    }
}

/// `summary.json` as `compare`, `check` and `history` read it: what reads,
/// writes back and reads the same (floats to within parsing precision:
/// serde_json parses them best-effort, the last binary digit may differ).
pub fn run_summary(data: &[u8]) {
    if let Ok(summary) = serde_json::from_slice::<chokepoint_report::RunSummary>(data) {
        let text = serde_json::to_string(&summary).expect("a summary serializes");
        let again: chokepoint_report::RunSummary =
            serde_json::from_str(&text).expect("a written summary reads back");
        let (a, b) = (
            serde_json::to_value(&summary).expect("a summary is JSON"),
            serde_json::to_value(&again).expect("a summary is JSON"),
        );
        assert!(json_close(&a, &b), "{a}\nvs\n{b}");
    }
}

/// Equal JSON values, floats equal to within 4 ULP-ish (relative 1e-15).
fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                _ => false,
            },
        },
        (Array(x), Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// HAR recordings (`run recording.har`), both with and without static files.
pub fn har(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let options = chokepoint::har::HarOptions {
        exclude_static: flags & 1 == 1,
        origin: None,
    };
    let _ = chokepoint::har::convert(text, &options);
}

/// curl command lines as pasted (`scenario from-curl`): shell splitting, then flags.
pub fn curl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(words) = chokepoint::curl::split_words(text) {
        let _ =
            chokepoint::curl::parse(&words, std::path::Path::new("/nonexistent-chokepoint-fuzz"));
    }
}

/// Interval logs of any HdrHistogram writer as `merge` reads them (a killed
/// run directory holding only `latency.hlog`, merged with `--force`).
pub fn merge_log(data: &[u8]) {
    let root = std::env::temp_dir().join(format!("chokepoint-fuzz-merge-{}", std::process::id()));
    let (dir, out) = (root.join("in"), root.join("out"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("latency.hlog"), data).expect("write the log");
    if let Ok(summary) = chokepoint::merge_cmd::merge(&[dir], &out, true) {
        // What merge wrote, merge reads again with the same counts.
        let again =
            chokepoint::merge_cmd::merge(std::slice::from_ref(&out), &root.join("again"), true);
        if let Ok(again) = again {
            assert_eq!(again.latency_ms.count, summary.latency_ms.count);
        }
        let _ = std::fs::remove_dir_all(root.join("again"));
    }
}
