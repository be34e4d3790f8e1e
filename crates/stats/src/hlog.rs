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
        let histogram: Histogram = match deserializer.deserialize(&mut bytes.as_slice()) {
            Ok(h) => h,
            Err(_) if is_partial_tail => break,
            Err(e) => return Err(malformed(format!("bad histogram: {e:?}"))),
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
}
