//! Budget files (TOML) for `chokepoint check`: latency ceilings, an error-rate
//! ceiling and a minimum throughput, overall and per request name, plus
//! regression limits against a baseline. The format is in `docs/budgets.md`.
//! Every error is one line: `FILE:LINE:COLUMN: [section] key: what was expected`.

use std::collections::BTreeMap;
use std::path::Path;

use chokepoint_stats::compare::LatencyMetric;
use serde::Deserialize;
use toml::Spanned;

use crate::units;

/// A latency statistic a ceiling applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyStat {
    /// One of the summary's own keys: `p50`, `p90`, `p95`, `p99`, `p99_9`, `max`, `mean`.
    Summary(&'static str),
    /// Any other percentile (overall only: read from `latency.hlog`), as a quantile in (0, 1).
    Quantile(f64),
}

/// What one budget line limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// Latency must not exceed `ceiling_ms`.
    Latency {
        /// The statistic.
        stat: LatencyStat,
        /// The ceiling in milliseconds.
        ceiling_ms: f64,
    },
    /// Errors over requests must not exceed this fraction.
    ErrorRate(f64),
    /// Throughput must be at least this many requests per second.
    MinThroughput(f64),
}

/// One budget line of `[overall]` or `[request.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The key as written (`p99`, `error_rate`, `min_throughput`).
    pub key: String,
    /// The value as written (`200ms`, `0.1%`, `100/s`).
    pub written: String,
    /// 1-based line of the key.
    pub line: usize,
    /// The parsed limit.
    pub limit: Limit,
}

/// A `[request.NAME]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBudgets {
    /// The request name.
    pub name: String,
    /// 1-based line of the section header.
    pub line: usize,
    /// Its budget lines.
    pub budgets: Vec<Budget>,
}

/// A metric a `[regression]` section watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegressionMetric {
    /// A latency statistic (`p50` ... `p99_9`, `mean`).
    Latency(LatencyMetric),
    /// Throughput (a decrease is a regression).
    Throughput,
    /// Error rate.
    ErrorRate,
}

impl RegressionMetric {
    /// The name as written in budgets and reports.
    pub fn name(self) -> &'static str {
        match self {
            RegressionMetric::Latency(m) => m.name(),
            RegressionMetric::Throughput => "throughput",
            RegressionMetric::ErrorRate => "error_rate",
        }
    }
}

/// The `[regression]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// 1-based line of `max_increase` (or of the section when defaulted).
    pub line: usize,
    /// Largest allowed significant worsening, percent.
    pub max_increase_pct: f64,
    /// The value as written.
    pub max_increase_written: String,
    /// Watched metrics, each with its line.
    pub metrics: Vec<(RegressionMetric, usize)>,
    /// Confidence of the comparison (default 0.95).
    pub confidence: f64,
}

/// A parsed budget file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budgets {
    /// `[overall]`.
    pub overall: Vec<Budget>,
    /// `[request.NAME]` sections, in name order.
    pub requests: Vec<RequestBudgets>,
    /// `[regression]`.
    pub regression: Option<Regression>,
}

impl Budgets {
    /// Whether any overall budget needs the interval log (a percentile the summary lacks).
    pub fn needs_latency_log(&self) -> bool {
        self.overall.iter().any(|b| {
            matches!(
                b.limit,
                Limit::Latency {
                    stat: LatencyStat::Quantile(_),
                    ..
                }
            )
        })
    }
}

type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    overall: Option<Spanned<Table>>,
    #[serde(default)]
    request: Option<BTreeMap<Spanned<String>, Spanned<Table>>>,
    #[serde(default)]
    regression: Option<Spanned<Table>>,
}

/// Reads and validates a budget file; errors name the file, line and column.
pub fn load(path: &Path) -> Result<Budgets, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read budgets {shown}: {e}"))?;
    parse(&text).map_err(|e| format!("{shown}:{e}"))
}

/// Parses budget text; errors start with `line:column:`.
pub fn parse(text: &str) -> Result<Budgets, String> {
    let at = |offset: usize| {
        let (line, col) = line_col(text, offset);
        format!("{line}:{col}")
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let pos = e.span().map_or("1:1".to_string(), |s| at(s.start));
        let message = e.message().trim().replace('\n', " ");
        let message = message.replace(
            "expected one of `overall`, `request`, `regression`",
            "expected a section [overall], [request.NAME] or [regression]",
        );
        format!("{pos}: {message}")
    })?;
    let mut out = Budgets::default();
    if let Some(table) = raw.overall {
        out.overall = section(text, "overall", table.get_ref(), true)?;
    }
    for (name, table) in raw.request.unwrap_or_default() {
        let label = format!("request.{}", name.get_ref());
        let budgets = section(text, &label, table.get_ref(), false)?;
        out.requests.push(RequestBudgets {
            name: name.get_ref().clone(),
            line: line_col(text, name.span().start).0,
            budgets,
        });
    }
    if let Some(table) = raw.regression {
        out.regression = Some(regression(text, table.span().start, table.get_ref())?);
    }
    if out.overall.is_empty()
        && out.requests.iter().all(|r| r.budgets.is_empty())
        && out.regression.is_none()
    {
        return Err("1:1: no budgets: add an [overall], [request.NAME] or [regression] section (see docs/budgets.md)".into());
    }
    Ok(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Keys of `[overall]` and `[request.NAME]`, for messages.
const SECTION_KEYS: &str =
    "p50, p90, p95, p99, p99_9 (or any pNN / pNN_N), max, mean, error_rate, min_throughput";

fn section(text: &str, label: &str, table: &Table, overall: bool) -> Result<Vec<Budget>, String> {
    let mut out: Vec<Budget> = Vec::new();
    for (key, value) in table {
        let (line, col) = line_col(text, key.span().start);
        let name = key.get_ref().as_str();
        let fail = |offset: usize, what: String| {
            let (l, c) = line_col(text, offset);
            format!("{l}:{c}: [{label}] {name}: {what}")
        };
        let value_text = match value.get_ref() {
            toml::Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let limit = match name {
            "error_rate" => {
                let t = value_text.ok_or_else(|| {
                    fail(
                        value.span().start,
                        "expected a percentage string such as \"0.1%\"".into(),
                    )
                })?;
                Limit::ErrorRate(units::parse_percent(&t).map_err(|e| fail(value.span().start, e))?)
            }
            "min_throughput" => {
                let t = match value.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => {
                        return Err(fail(
                            value.span().start,
                            "expected a rate such as \"100/s\"".into(),
                        ))
                    }
                };
                Limit::MinThroughput(
                    units::parse_rate(&t).map_err(|e| fail(value.span().start, e))?,
                )
            }
            _ => {
                let stat =
                    latency_stat(name).map_err(|e| format!("{line}:{col}: [{label}] {e}"))?;
                if !overall && matches!(stat, LatencyStat::Quantile(_)) {
                    return Err(format!(
                        "{line}:{col}: [{label}] {name}: per-request budgets support p50, p90, p95, p99, p99_9, max and mean (the per-request summary has only these)"
                    ));
                }
                let t = value_text.ok_or_else(|| {
                    fail(
                        value.span().start,
                        "expected a duration string with a unit, such as \"200ms\"".into(),
                    )
                })?;
                let d = units::parse_duration(&t).map_err(|e| fail(value.span().start, e))?;
                Limit::Latency {
                    stat,
                    ceiling_ms: d.as_secs_f64() * 1000.0,
                }
            }
        };
        let written = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(dup) = out.iter().find(|b| same_limit(&b.limit, &limit)) {
            return Err(format!(
                "{line}:{col}: [{label}] {name}: the same budget as `{}` on line {}",
                dup.key, dup.line
            ));
        }
        out.push(Budget {
            key: name.to_string(),
            written,
            line,
            limit,
        });
    }
    out.sort_by_key(|b| b.line);
    Ok(out)
}

fn same_limit(a: &Limit, b: &Limit) -> bool {
    match (a, b) {
        (Limit::Latency { stat: x, .. }, Limit::Latency { stat: y, .. }) => {
            let q = |s: &LatencyStat| match s {
                LatencyStat::Summary(k) => LatencyMetric::from_name(k)
                    .and_then(LatencyMetric::quantile)
                    .map_or(k.to_string(), |q| format!("{q}")),
                LatencyStat::Quantile(q) => format!("{q}"),
            };
            q(x) == q(y)
        }
        (Limit::ErrorRate(_), Limit::ErrorRate(_)) => true,
        (Limit::MinThroughput(_), Limit::MinThroughput(_)) => true,
        _ => false,
    }
}

/// Parses a latency key: `max`, `mean`, `p50` ... `p99_9`, or any other
/// percentile `pNN`, `pNN_N...`, `pNN.N...`, `p999` (= 99.9), strictly between 0 and 100.
pub fn latency_stat(key: &str) -> Result<LatencyStat, String> {
    let unknown = || format!("{key}: unknown metric; expected one of {SECTION_KEYS}");
    match key {
        "max" | "mean" | "p50" | "p90" | "p95" | "p99" | "p99_9" => {
            let k: &'static str = match key {
                "max" => "max",
                "mean" => "mean",
                "p50" => "p50",
                "p90" => "p90",
                "p95" => "p95",
                "p99" => "p99",
                _ => "p99_9",
            };
            return Ok(LatencyStat::Summary(k));
        }
        _ => {}
    }
    let Some(rest) = key.strip_prefix('p') else {
        return Err(unknown());
    };
    let (int, frac) = match rest.split_once(['_', '.']) {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(unknown());
    }
    let percent: f64 = match frac {
        Some(f) => format!("{int}.{f}").parse().map_err(|_| unknown())?,
        // p999 = 99.9, p9999 = 99.99: the usual shorthand.
        None if int.len() > 2 && int.starts_with("99") => format!("{}.{}", &int[..2], &int[2..])
            .parse()
            .map_err(|_| unknown())?,
        None => int.parse().map_err(|_| unknown())?,
    };
    if !(percent > 0.0 && percent < 100.0) {
        return Err(format!(
            "{key}: bad percentile {percent}: it must be strictly between 0 and 100 (use `max` for the largest latency)"
        ));
    }
    if (percent - 99.9).abs() < 1e-9 {
        return Ok(LatencyStat::Summary("p99_9"));
    }
    Ok(LatencyStat::Quantile(percent / 100.0))
}

fn regression(text: &str, section_start: usize, table: &Table) -> Result<Regression, String> {
    let section_line = line_col(text, section_start).0;
    let mut out = Regression {
        line: section_line,
        max_increase_pct: f64::NAN,
        max_increase_written: String::new(),
        metrics: Vec::new(),
        confidence: 0.95,
    };
    let mut metrics_given = false;
    for (key, value) in table {
        let name = key.get_ref().as_str();
        let (line, col) = line_col(text, key.span().start);
        let fail = |offset: usize, what: String| {
            let (l, c) = line_col(text, offset);
            format!("{l}:{c}: [regression] {name}: {what}")
        };
        match name {
            "max_increase" => {
                let toml::Value::String(t) = value.get_ref() else {
                    return Err(fail(
                        value.span().start,
                        "expected a percentage string such as \"10%\"".into(),
                    ));
                };
                let pct = t
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite() && *p >= 0.0 && *p <= 1000.0)
                    .ok_or_else(|| {
                        fail(
                            value.span().start,
                            format!("`{t}` is not a percentage between 0% and 1000% such as \"10%\""),
                        )
                    })?;
                out.max_increase_pct = pct;
                out.max_increase_written = t.clone();
                out.line = line;
            }
            "confidence" => {
                let t = match value.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => {
                        return Err(fail(
                            value.span().start,
                            "expected a level such as \"95%\"".into(),
                        ))
                    }
                };
                out.confidence = crate::compare_cmd::parse_confidence(&t)
                    .map_err(|e| fail(value.span().start, e))?;
            }
            "metrics" => {
                metrics_given = true;
                let toml::Value::Array(items) = value.get_ref() else {
                    return Err(fail(
                        value.span().start,
                        "expected a list such as [\"p50\", \"p99\"]".into(),
                    ));
                };
                let value_line = line_col(text, value.span().start).0;
                for item in items {
                    let m = item
                        .as_str()
                        .and_then(|s| {
                            LatencyMetric::from_name(s)
                                .map(RegressionMetric::Latency)
                                .or(match s {
                                    "throughput" => Some(RegressionMetric::Throughput),
                                    "error_rate" => Some(RegressionMetric::ErrorRate),
                                    _ => None,
                                })
                        })
                        .ok_or_else(|| {
                            fail(
                                value.span().start,
                                format!(
                                    "unknown metric {item}; expected p50, p90, p95, p99, p99_9, mean, throughput or error_rate"
                                ),
                            )
                        })?;
                    if out.metrics.iter().any(|(x, _)| *x == m) {
                        return Err(fail(
                            value.span().start,
                            format!("{item} is listed twice"),
                        ));
                    }
                    out.metrics.push((m, value_line));
                }
            }
            _ => {
                return Err(format!(
                    "{line}:{col}: [regression] {name}: unknown key; expected max_increase, metrics or confidence"
                ))
            }
        }
    }
    if out.max_increase_pct.is_nan() {
        return Err(format!(
            "{section_line}:1: [regression]: missing `max_increase` (e.g. max_increase = \"10%\")"
        ));
    }
    if !metrics_given {
        out.metrics = vec![
            (RegressionMetric::Latency(LatencyMetric::P50), out.line),
            (RegressionMetric::Latency(LatencyMetric::P99), out.line),
        ];
    }
    if out.metrics.is_empty() {
        return Err(format!(
            "{}:1: [regression] metrics: the list is empty",
            out.line
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[overall]
p99 = "200ms"
p75 = "50ms"
error_rate = "0.1%"
min_throughput = "100/s"

[request.checkout]
p95 = "300ms"

[regression]
max_increase = "10%"
metrics = ["p50", "p99", "throughput"]
"#;

    #[test]
    fn parses_every_section() {
        let b = parse(GOOD).unwrap();
        assert_eq!(b.overall.len(), 4);
        assert_eq!(b.overall[0].key, "p99");
        assert_eq!(b.overall[0].line, 3);
        assert_eq!(
            b.overall[0].limit,
            Limit::Latency {
                stat: LatencyStat::Summary("p99"),
                ceiling_ms: 200.0
            }
        );
        assert_eq!(
            b.overall[1].limit,
            Limit::Latency {
                stat: LatencyStat::Quantile(0.75),
                ceiling_ms: 50.0
            }
        );
        assert_eq!(b.overall[2].limit, Limit::ErrorRate(0.001));
        assert_eq!(b.overall[3].limit, Limit::MinThroughput(100.0));
        assert!(b.needs_latency_log());
        assert_eq!(b.requests[0].name, "checkout");
        assert_eq!(b.requests[0].budgets[0].line, 9);
        let r = b.regression.unwrap();
        assert_eq!(r.max_increase_pct, 10.0);
        assert_eq!(r.metrics.len(), 3);
        assert_eq!(r.metrics[2].0, RegressionMetric::Throughput);
    }

    #[test]
    fn percentile_keys() {
        assert_eq!(latency_stat("p999").unwrap(), LatencyStat::Summary("p99_9"));
        assert_eq!(
            latency_stat("p99.9").unwrap(),
            LatencyStat::Summary("p99_9")
        );
        let LatencyStat::Quantile(q) = latency_stat("p99_99").unwrap() else {
            panic!("p99_99 is a custom quantile")
        };
        assert!((q - 0.9999).abs() < 1e-12, "{q}");
        assert!(latency_stat("p100").unwrap_err().contains("bad percentile"));
        assert!(latency_stat("p0").unwrap_err().contains("bad percentile"));
        assert!(latency_stat("p9x").unwrap_err().contains("unknown metric"));
        assert!(latency_stat("latency")
            .unwrap_err()
            .contains("unknown metric"));
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let e = err("[overall]\np99 = \"200ms\"\np98x = \"1s\"\n");
        assert!(e.starts_with("3:1: [overall] p98x: unknown metric"), "{e}");
        let e = err("[overall]\np99 = \"200 parsecs\"\n");
        assert!(e.starts_with("2:7: [overall] p99: "), "{e}");
        assert!(e.contains("unknown duration unit"), "{e}");
        let e = err("[overall]\np99 = 200\n");
        assert!(e.contains("with a unit"), "{e}");
        let e = err("[overall]\n\"p100\" = \"1s\"\n");
        assert!(e.starts_with("2:1: [overall] p100: bad percentile"), "{e}");
        let e = err("[overall]\nerror_rate = \"2\"\n");
        assert!(e.starts_with("2:14: [overall] error_rate:"), "{e}");
        let e = err("[overal]\np99 = \"1s\"\n");
        assert!(e.starts_with("1:2:"), "{e}");
        assert!(e.contains("[overall]"), "{e}");
        let e = err("[request.a]\np75 = \"1s\"\n");
        assert!(e.contains("per-request budgets support"), "{e}");
        let e = err("[regression]\nmetrics = [\"p99\"]\n");
        assert!(e.contains("missing `max_increase`"), "{e}");
        let e = err("[regression]\nmax_increase = \"10%\"\nmetrics = [\"p42\"]\n");
        assert!(
            e.starts_with("3:11: [regression] metrics: unknown metric"),
            "{e}"
        );
        let e = err("[overall]\np99_9 = \"1s\"\n\"p99.9\" = \"2s\"\n");
        assert!(e.contains("the same budget"), "{e}");
        let e = err("");
        assert!(e.contains("no budgets"), "{e}");
        let e = err("[overall\n");
        assert!(e.starts_with("1:"), "{e}");
    }
}
