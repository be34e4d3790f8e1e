//! Scenario files (TOML): a base URL, named weighted requests, and a load
//! section. The format is documented in `docs/scenario.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::units;

/// A parsed scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Origin (and base path) every request path is resolved against.
    pub base_url: String,
    /// Headers added to every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How to load the target; command-line flags override it.
    #[serde(default)]
    pub load: Load,
    /// The requests, mixed by weight.
    #[serde(rename = "request")]
    pub requests: Vec<Request>,
}

/// The `[load]` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Open model: arrival rate (`"200/s"` or a number).
    #[serde(default, deserialize_with = "rate")]
    pub rate: Option<f64>,
    /// `uniform` (default) or `poisson`.
    #[serde(default)]
    pub arrival: Option<ArrivalName>,
    /// Closed model: connections.
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// Measured duration.
    #[serde(default, deserialize_with = "duration")]
    pub duration: Option<Duration>,
    /// Warmup before the measured window.
    #[serde(default, deserialize_with = "duration")]
    pub warmup: Option<Duration>,
    /// Measured request count.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Per-request timeout.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Open-model connection cap.
    #[serde(default)]
    pub max_connections: Option<u64>,
}

/// Arrival process names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalName {
    /// Evenly spaced arrivals.
    Uniform,
    /// Exponential gaps (Poisson process).
    Poisson,
}

/// One `[[request]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Name in per-request statistics (default: `METHOD path`).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method (default GET, or POST with a body).
    #[serde(default)]
    pub method: Option<String>,
    /// Path resolved against `base_url` (default: the base URL itself).
    #[serde(default)]
    pub path: String,
    /// Headers for this request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Inline body.
    #[serde(default)]
    pub body: Option<String>,
    /// Body read from a file, relative to the scenario file.
    #[serde(default)]
    pub body_file: Option<String>,
    /// Relative weight in the mix (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum RateValue {
        Number(f64),
        Text(String),
    }
    match RateValue::deserialize(d)? {
        RateValue::Number(n) => units::parse_rate(&n.to_string()).map(Some),
        RateValue::Text(t) => units::parse_rate(&t).map(Some),
    }
    .map_err(serde::de::Error::custom)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    units::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A request resolved from the file: body loaded, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRequest {
    /// Unique name.
    pub name: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers (scenario-wide first, then the request's own).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Weight.
    pub weight: u32,
}

/// Reads and validates a scenario file. Errors are one line naming the file,
/// the line and column (syntax and field errors) or the field (semantic errors).
pub fn load(path: &Path) -> Result<(Scenario, Vec<ResolvedRequest>), String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read scenario {shown}: {e}"))?;
    let scenario = parse(&text).map_err(|e| format!("{shown}:{e}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let requests = resolve(&scenario, dir).map_err(|e| format!("{shown}: {e}"))?;
    Ok((scenario, requests))
}

/// Parses scenario text; errors start with `line:column:`.
pub fn parse(text: &str) -> Result<Scenario, String> {
    toml::from_str::<Scenario>(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        let message = e.message().trim().replace('\n', " ");
        format!("{line}:{col}: {message}")
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn resolve(s: &Scenario, dir: &Path) -> Result<Vec<ResolvedRequest>, String> {
    if s.requests.is_empty() {
        return Err("no [[request]] defined".into());
    }
    if s.load.rate.is_some() && s.load.concurrency.is_some() {
        return Err(
            "[load]: set either `rate` (open model) or `concurrency` (closed model), not both"
                .into(),
        );
    }
    if s.load.concurrency == Some(0) {
        return Err("[load] concurrency: must be at least 1".into());
    }
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, r) in s.requests.iter().enumerate() {
        let which = format!(
            "request #{} ({})",
            i + 1,
            r.name.as_deref().unwrap_or(&r.path)
        );
        let body = match (&r.body, &r.body_file) {
            (Some(_), Some(_)) => {
                return Err(format!("{which}: set `body` or `body_file`, not both"))
            }
            (Some(b), None) => b.clone().into_bytes(),
            (None, Some(f)) => {
                let p = dir.join(f);
                std::fs::read(&p)
                    .map_err(|e| format!("{which} body_file: cannot read {}: {e}", p.display()))?
            }
            (None, None) => Vec::new(),
        };
        let method = r
            .method
            .clone()
            .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_string())
            .to_ascii_uppercase();
        let name = r.name.clone().unwrap_or_else(|| {
            format!("{method} {}", if r.path.is_empty() { "/" } else { &r.path })
        });
        if !names.insert(name.clone()) {
            return Err(format!(
                "{which} name: `{name}` is used twice; names must be unique"
            ));
        }
        let mut headers: Vec<(String, String)> = s
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.extend(r.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, v) in &headers {
            units::parse_header(&format!("{k}: {v}"))
                .map_err(|e| format!("{which} headers: {e}"))?;
        }
        out.push(ResolvedRequest {
            name,
            method,
            path: r.path.clone(),
            headers,
            body,
            weight: r.weight,
        });
    }
    if out.iter().all(|r| r.weight == 0) {
        return Err("every request has weight 0".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
base_url = "http://127.0.0.1:8080"
headers = { Accept = "application/json" }

[load]
rate = "200/s"
arrival = "poisson"
duration = "30s"
warmup = "5s"

[[request]]
name = "checkout"
path = "/checkout"
body = '{"user_id": 1}'
weight = 3

[[request]]
path = "/products"
"#;

    #[test]
    fn parses_a_full_scenario() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.load.rate, Some(200.0));
        assert_eq!(s.load.arrival, Some(ArrivalName::Poisson));
        assert_eq!(s.load.duration, Some(Duration::from_secs(30)));
        let r = resolve(&s, Path::new(".")).unwrap();
        assert_eq!(r[0].method, "POST");
        assert_eq!(r[0].weight, 3);
        assert_eq!(r[1].name, "GET /products");
        assert_eq!(
            r[1].headers,
            vec![("Accept".to_string(), "application/json".to_string())]
        );
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = parse("base_url = \"http://x\"\n[load]\nrat = 5\n[[request]]\npath=\"/\"\n")
            .unwrap_err();
        assert!(err.starts_with("3:1:"), "{err}");
        assert!(err.contains("unknown field `rat`"), "{err}");
        let err =
            parse("base_url = \"http://x\"\n[load]\nduration = \"10 parsecs\"\n[[request]]\n")
                .unwrap_err();
        assert!(err.starts_with("3:"), "{err}");
        assert!(err.contains("unknown duration unit"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let s = parse("base_url = \"http://x\"\n[load]\nrate = 5\nconcurrency = 2\n[[request]]\n")
            .unwrap();
        assert!(resolve(&s, Path::new("."))
            .unwrap_err()
            .contains("not both"));
        let s =
            parse("base_url = \"http://x\"\n[[request]]\nname=\"a\"\n[[request]]\nname=\"a\"\n")
                .unwrap();
        assert!(resolve(&s, Path::new("."))
            .unwrap_err()
            .contains("used twice"));
    }
}
