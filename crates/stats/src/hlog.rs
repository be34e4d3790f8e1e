//! The HdrHistogram interval log text format (`.hlog`), as written by Java's
//! `HistogramLogWriter` and read by HdrHistogram's own tools: V2 compressed
//! histograms, base64 encoded, one line per interval.
//!
//! Writing produces strings; reading takes a string. The caller owns the file.

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::Histogram;

/// Interval maxima are written in milliseconds (histogram values are microseconds).
pub const MAX_VALUE_DIVISOR: f64 = 1_000.0;

/// The legend line that precedes interval lines.
pub const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// Errors from reading an interval log.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    /// A line could not be parsed as an interval.
    #[error("line {line}: {what}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
}

/// Largest decompressed histogram accepted (bytes). A real interval of a
/// chokepoint run decompresses to a few KiB; Java's with 5 significant
/// digits over an hour of nanoseconds to a few MiB.
pub const MAX_DECODED_BYTES: usize = 16 << 20;
/// Most counts a decoded histogram may allocate (32 MiB of `u64`).
pub const MAX_COUNTS: u64 = 1 << 22;

/// The `hdrhistogram` crate's cookies (base | 0x10 for 8-byte words).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// Bytes of a V2 header before its payload.
const V2_HEADER: usize = 40;

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Length of the counts array `Histogram::new_with_bounds(low, high, digits)`
/// allocates (an upper bound; `digits` at most 5).
fn counts_len(low: u64, high: u64, digits: u32) -> u64 {
    let sub_bucket_count = (2 * 10u64.pow(digits)).next_power_of_two();
    let unit_magnitude = 63 - low.max(1).leading_zeros();
    let mut smallest_untrackable = u128::from(sub_bucket_count) << unit_magnitude;
    let mut buckets = 1u64;
    while smallest_untrackable <= u128::from(high) {
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    (buckets + 1) * (sub_bucket_count / 2)
}

/// Decodes one encoded histogram (V2, or V2 compressed as in interval logs)
/// after checking that what its header declares is plausible: the payload
/// present, the counts array bounded. The `hdrhistogram` deserializer
/// allocates whatever a header declares, so a 600-byte line could otherwise
/// demand gigabytes (found by fuzzing `interval_log`).
pub fn decode_histogram(
    bytes: &[u8],
    deserializer: &mut Deserializer,
) -> Result<Histogram, String> {
    let inner: std::borrow::Cow<'_, [u8]> = match be_u32(bytes, 0) {
        Some(V2_COMPRESSED_COOKIE) => {
            use std::io::Read as _;
            let declared = be_u32(bytes, 4).ok_or("truncated header")? as usize;
            let compressed = &bytes[8..(8 + declared).min(bytes.len())];
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(compressed)
                .take(MAX_DECODED_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad compressed histogram: {e}"))?;
            if out.len() > MAX_DECODED_BYTES {
                return Err(format!(
                    "histogram decompresses to more than {MAX_DECODED_BYTES} bytes"
                ));
            }
            out.into()
        }
        Some(V2_COOKIE) => bytes.into(),
        _ => return Err("not a V2 histogram (bad cookie)".into()),
    };
    if be_u32(&inner, 0) != Some(V2_COOKIE) {
        return Err("not a V2 histogram (bad inner cookie)".into());
    }
    let payload = be_u32(&inner, 4).ok_or("truncated header")? as usize;
    if payload > inner.len().saturating_sub(V2_HEADER) {
        return Err(format!(
            "header declares a {payload}-byte payload, {} present",
            inner.len().saturating_sub(V2_HEADER)
        ));
    }
    let digits = be_u32(&inner, 12).ok_or("truncated header")?;
    let low = be_u64(&inner, 16).ok_or("truncated header")?;
    let high = be_u64(&inner, 24).ok_or("truncated header")?;
    if digits > 5 {
        return Err(format!("{digits} significant digits (at most 5)"));
    }
    if counts_len(low, high, digits) > MAX_COUNTS {
        return Err(format!(
            "histogram bounds {low}..{high} with {digits} digits need more than {MAX_COUNTS} counts"
        ));
    }
    deserializer
        .deserialize(&mut &inner[..])
        .map_err(|e| format!("bad histogram: {e:?}"))
}

/// The header of a log whose interval timestamps count seconds from `start_epoch_s`.
pub fn header(start_epoch_s: f64, tool: &str) -> String {
    format!(
        "#[Logged with {tool}]\n#[Histogram log format version 1.3]\n\
         #[StartTime: {start_epoch_s:.3} (seconds since epoch)]\n\
         #[BaseTime: {start_epoch_s:.3} (seconds since epoch)]\n\
         #[MaxValueDivisor: {MAX_VALUE_DIVISOR:.3}]\n{LEGEND}\n"
    )
}

/// One interval line (with its trailing newline) for the histogram of
/// `[start_s, start_s + length_s)`, seconds relative to the log's base time.
pub fn interval_line(h: &Histogram, start_s: f64, length_s: f64) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    let mut line = format!(
        "{start_s:.3},{length_s:.3},{:.3},",
        h.max() as f64 / MAX_VALUE_DIVISOR
    );
    base64::engine::general_purpose::STANDARD.encode_string(&bytes, &mut line);
    line.push('\n');
    line
}

/// One decoded interval of a log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Seconds since the log's base time.
    pub start_s: f64,
    /// Length of the interval in seconds.
    pub length_s: f64,
    /// The interval's histogram (microseconds).
    pub histogram: Histogram,
}

/// Reads every interval of a log. A truncated last line (a crashed writer) is
/// ignored; any other malformed line is an error naming its line number.
pub fn read(text: &str) -> Result<Vec<Interval>, HlogError> {
    let mut out = Vec::new();
    let mut deserializer = Deserializer::new();
    let n_lines = text.lines().count();
    let complete = text.ends_with('\n');
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let is_partial_tail = line_no == n_lines && !complete;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('"') {
            continue;
        }
        let mut with_newline = String::with_capacity(trimmed.len() + 1);
        with_newline.push_str(trimmed);
        with_newline.push('\n');
        let parsed = IntervalLogIterator::new(with_newline.as_bytes()).next();
        let malformed = |what: String| HlogError::Malformed {
            line: line_no,
            what,
        };
        let entry = match parsed {
            Some(Ok(LogEntry::Interval(entry))) => entry,
            Some(Ok(_)) => continue,
            _ if is_partial_tail => break,
            _ => return Err(malformed("not an interval line".into())),
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(entry.encoded_histogram());
        let bytes = match decoded {
            Ok(bytes) => bytes,
            Err(_) if is_partial_tail => break,
            Err(e) => return Err(malformed(format!("bad base64: {e}"))),
        };
        let histogram: Histogram = match decode_histogram(&bytes, &mut deserializer) {
            Ok(h) => h,
            Err(_) if is_partial_tail => break,
            Err(e) => return Err(malformed(e)),
        };
        out.push(Interval {
            start_s: entry.start_timestamp().as_secs_f64(),
            length_s: entry.duration().as_secs_f64(),
            histogram,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_histogram;

    fn sample(values: &[u64]) -> Histogram {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn round_trip_keeps_counts_and_times() {
        let mut text = header(1_700_000_000.0, "test");
        text.push_str(&interval_line(&sample(&[100, 200, 300]), 0.0, 1.0));
        text.push_str(&interval_line(&sample(&[5_000]), 1.0, 1.0));
        let intervals = read(&text).unwrap();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[0].histogram.len(), 3);
        assert_eq!(intervals[1].start_s, 1.0);
        assert_eq!(intervals[1].histogram.max(), sample(&[5_000]).max());
    }

    #[test]
    fn truncated_tail_is_ignored() {
        let mut text = header(0.0, "test");
        text.push_str(&interval_line(&sample(&[100]), 0.0, 1.0));
        let second = interval_line(&sample(&[200]), 1.0, 1.0);
        text.push_str(&second[..second.len() / 2]);
        assert_eq!(read(&text).unwrap().len(), 1);
    }

    #[test]
    fn garbage_line_names_its_number() {
        let mut text = header(0.0, "test");
        text.push_str("not,an,interval,line\n");
        let err = read(&text).unwrap_err().to_string();
        assert!(err.starts_with("line 7:"), "{err}");
    }

    /// A V2 compressed line whose header declares `payload` bytes and the
    /// given bounds, with no payload at all.
    fn forged_line(payload: u32, digits: u32, low: u64, high: u64) -> String {
        use std::io::Write as _;
        let mut inner = Vec::new();
        inner.extend_from_slice(&V2_COOKIE.to_be_bytes());
        inner.extend_from_slice(&payload.to_be_bytes());
        inner.extend_from_slice(&0u32.to_be_bytes());
        inner.extend_from_slice(&digits.to_be_bytes());
        inner.extend_from_slice(&low.to_be_bytes());
        inner.extend_from_slice(&high.to_be_bytes());
        inner.extend_from_slice(&1.0f64.to_be_bytes());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&inner).unwrap();
        let compressed = z.finish().unwrap();
        let mut outer = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        outer.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        outer.extend_from_slice(&compressed);
        format!(
            "0.000,1.000,1.000,{}\n",
            base64::engine::general_purpose::STANDARD.encode(outer)
        )
    }

    #[test]
    fn forged_headers_are_refused_before_allocating() {
        let huge_payload = read(&forged_line(0x7fff_ffff, 3, 1, 2)).unwrap_err();
        assert!(
            huge_payload.to_string().contains("payload"),
            "{huge_payload}"
        );
        let huge_counts = read(&forged_line(0, 5, 1, u64::MAX)).unwrap_err();
        assert!(huge_counts.to_string().contains("counts"), "{huge_counts}");
        let digits = read(&forged_line(0, 4_000_000_000, 1, 2)).unwrap_err();
        assert!(digits.to_string().contains("digits"), "{digits}");
        // Our own histograms are far inside the bounds.
        assert!(counts_len(1, 60_000_000, 3) < 64 * 1024);
        // So is an hour of nanoseconds at 5 digits (Java's widest common setting).
        assert!(counts_len(1, 3_600_000_000_000, 5) <= MAX_COUNTS);
    }
}
