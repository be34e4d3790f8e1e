//! Parsing the units users type: durations (`250ms`, `10s`, `5m`, `2h`),
//! rates (`500`, `500/s`, `30/m`) and percentages (`0.1%`).

use std::time::Duration;

/// Parses a duration with a unit: `us`, `ms`, `s`, `m`, `h` (fractions allowed: `1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit; write e.g. 250ms, 10s, 5m or 2h"))?;
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 250ms, 10s, 5m or 2h"))?;
    let seconds_per_unit = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}`; use ms, s, m or h"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("duration `{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a rate in requests per second: `500`, `500/s`, `30/m`, `2/h`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, per) = match t.split_once('/') {
        Some((n, unit)) => (n.trim(), unit.trim()),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a rate; write e.g. 500, 500/s or 30/m"))?;
    let divisor = match per {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown rate unit `/{other}` in `{text}`; use /s, /m or /h"
            ))
        }
    };
    let rate = value / divisor;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("rate `{text}` must be positive"));
    }
    if rate > 10_000_000.0 {
        return Err(format!("rate `{text}` is beyond 10,000,000 req/s"));
    }
    Ok(rate)
}

/// Parses a percentage into a fraction: `0.1%` → 0.001.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let number = t
        .strip_suffix('%')
        .ok_or_else(|| format!("`{text}` is not a percentage; write e.g. 0.1%"))?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage; write e.g. 0.1%"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("percentage `{text}` must be between 0% and 100%"));
    }
    Ok(value / 100.0)
}

/// Parses a `Name: value` header.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header `{text}` must look like `Name: value`"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("header `{text}` has an invalid name"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!("header `{name}` has a line break in its value"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10x")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500").unwrap(), 500.0);
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert_eq!(parse_rate("30/m").unwrap(), 0.5);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("5/d").is_err());
        assert!(parse_rate("abc").is_err());
    }

    #[test]
    fn percents_and_headers() {
        assert_eq!(parse_percent("0.1%").unwrap(), 0.001);
        assert!(parse_percent("0.1").is_err());
        assert!(parse_percent("120%").is_err());
        assert_eq!(
            parse_header("X-A: b: c").unwrap(),
            ("X-A".into(), "b: c".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }
}
