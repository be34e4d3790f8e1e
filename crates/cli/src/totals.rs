//! `totals.hlog`: the whole run's other histograms (service time, phases,
//! schedule lag, warmup latency, latency per request name) as a tagged
//! HdrHistogram log, written beside `latency.hlog` so that `chokepoint merge`
//! recomputes every percentile of `summary.json` from merged histograms,
//! never from averaged percentiles. Readable by HdrHistogram's own tools
//! (`Tag=` lines).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use chokepoint_engine::RunResult;
use chokepoint_stats::{hlog, new_histogram, Histogram};
use hdrhistogram::serialization::Deserializer;

use crate::args::Plan;

/// File name in a run directory.
pub const TOTALS_FILE: &str = "totals.hlog";

/// Tags of the whole-run histograms (request names follow as `request:NAME`).
pub const TAGS: [&str; 7] = [
    "service",
    "connect",
    "tls",
    "ttfb",
    "receive",
    "schedule_lag",
    "warmup",
];

/// Tag of one request name's latency: `request:` and the name with
/// separators (`,`, whitespace, `%`) percent-encoded.
pub fn request_tag(name: &str) -> String {
    let mut out = String::from("request:");
    for c in name.chars() {
        if c == ',' || c == '%' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The request name of a `request:` tag.
pub fn request_name(tag: &str) -> Option<String> {
    let enc = tag.strip_prefix("request:")?;
    let mut bytes = Vec::new();
    let raw = enc.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let Some(b) = enc
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                bytes.push(b);
                i += 3;
                continue;
            }
        }
        bytes.push(raw[i]);
        i += 1;
    }
    String::from_utf8(bytes).ok()
}

/// The text of a totals log for these histograms.
pub fn render(start_epoch_s: f64, duration_s: f64, histograms: &[(String, &Histogram)]) -> String {
    let mut text = hlog::header(start_epoch_s, "chokepoint totals");
    for (tag, h) in histograms {
        text.push_str("Tag=");
        text.push_str(tag);
        text.push(',');
        text.push_str(&hlog::interval_line(h, 0.0, duration_s));
    }
    text
}

/// Writes `totals.hlog` for a finished run into `dir`.
pub fn write(dir: &Path, plan: &Plan, result: &RunResult) -> Result<(), String> {
    let m = &result.measured;
    let mut list: Vec<(String, &Histogram)> = vec![
        ("service".into(), &m.service),
        ("connect".into(), &m.connect),
        ("tls".into(), &m.tls),
        ("ttfb".into(), &m.ttfb),
        ("receive".into(), &m.receive),
        ("schedule_lag".into(), &m.schedule_lag),
        ("warmup".into(), &result.warmup.latency),
    ];
    for (idx, spec) in plan.config.requests.iter().enumerate() {
        if idx < m.by_request.len() {
            list.push((request_tag(&spec.name), m.request_latency(idx)));
        }
    }
    let epoch = result
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let text = render(epoch, result.duration.as_secs_f64(), &list);
    let path = dir.join(TOTALS_FILE);
    std::fs::write(&path, text).map_err(|e| format!("--out {}: {e}", path.display()))
}

/// Reads a totals log: histograms by tag (repeated tags add up). `Ok(None)`
/// when the file does not exist.
pub fn read(path: &Path) -> Result<Option<BTreeMap<String, Histogram>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    let complete = text.ends_with('\n');
    let n_lines = text.lines().count();
    for (idx, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), idx + 1);
        let partial = idx + 1 == n_lines && !complete;
        let Some(rest) = line.strip_prefix("Tag=") else {
            continue;
        };
        let parsed = (|| {
            let (tag, rest) = rest.split_once(',')?;
            let payload = rest.splitn(4, ',').nth(3)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .ok()?;
            let h: Histogram = hlog::decode_histogram(&bytes, &mut deserializer).ok()?;
            Some((tag.to_string(), h))
        })();
        match parsed {
            Some((tag, h)) => {
                out.entry(tag)
                    .or_insert_with(new_histogram)
                    .add(&h)
                    .map_err(|e| format!("{at}: cannot add the histogram: {e:?}"))?;
            }
            None if partial => break,
            None => return Err(format!("{at}: not a tagged interval line")),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tags_round_trip() {
        for name in ["GET /products?page=2", "a,b", "100%", "naïve name"] {
            let tag = request_tag(name);
            assert!(!tag.contains([' ', ',']), "{tag}");
            assert_eq!(request_name(&tag).as_deref(), Some(name));
        }
    }

    #[test]
    fn totals_round_trip_and_tolerate_a_truncated_tail() {
        let mut a = new_histogram();
        a.record(1_000).unwrap();
        a.record(2_000).unwrap();
        let mut b = new_histogram();
        b.record(50).unwrap();
        let text = render(
            1.7e9,
            10.0,
            &[("service".into(), &a), (request_tag("GET /x"), &b)],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOTALS_FILE);
        std::fs::write(&path, &text).unwrap();
        let read_back = read(&path).unwrap().unwrap();
        assert_eq!(read_back["service"].len(), 2);
        assert_eq!(read_back["request:GET%20/x"].len(), 1);
        std::fs::write(&path, &text[..text.len() - 10]).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len(), 1);
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
    }
}
