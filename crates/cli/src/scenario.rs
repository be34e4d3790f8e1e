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
    /// Skip TLS certificate verification (as `--insecure`; the report says so).
    #[serde(default)]
    pub insecure: bool,
    /// Speak HTTP/2 (as `--http2`).
    #[serde(default)]
    pub http2: bool,
    /// Stages (also accepted inside `[load]`): the load ramps linearly to
    /// each stage's target over its duration.
    #[serde(default)]
    pub stages: Option<Vec<StageSpec>>,
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
    /// Stages: the load ramps linearly to each stage's target over its duration.
    #[serde(default)]
    pub stages: Option<Vec<StageSpec>>,
}

/// One entry of `stages`: ramp to `rate` (open model) or `concurrency`
/// (closed model) over `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Length of the stage.
    #[serde(deserialize_with = "required_duration")]
    pub duration: Duration,
    /// Rate at the end of the stage (`"100/s"`, a number; 0 allowed).
    #[serde(default, deserialize_with = "stage_rate")]
    pub rate: Option<f64>,
    /// Connections at the end of the stage (0 allowed).
    #[serde(default)]
    pub concurrency: Option<u64>,
}

fn required_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    units::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A stage rate: like `rate`, but zero (the end of a ramp down) is allowed.
pub fn parse_stage_rate(text: &str) -> Result<f64, String> {
    let number = text.split('/').next().unwrap_or("").trim();
    if number.parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    units::parse_rate(text)
}

fn stage_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum RateValue {
        Number(f64),
        Text(String),
    }
    match RateValue::deserialize(d)? {
        RateValue::Number(n) => parse_stage_rate(&n.to_string()).map(Some),
        RateValue::Text(t) => parse_stage_rate(&t).map(Some),
    }
    .map_err(serde::de::Error::custom)
}

/// Stages after validation: one model for all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// Rates (open model) or connections (closed model).
    pub open: bool,
    /// `(duration, target)` in order.
    pub stages: Vec<(Duration, f64)>,
}

impl Stages {
    /// Total length.
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|(d, _)| *d).sum()
    }

    /// A canonical text form (`30s:100/s,1m:1000/s` or `30s:10,1m:50`), for
    /// fingerprints and messages.
    pub fn canonical(&self) -> String {
        self.stages
            .iter()
            .map(|(d, t)| {
                let d = format!("{}ms", d.as_millis());
                if self.open {
                    format!("{d}:{t}/s")
                } else {
                    format!("{d}:{t}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Validates scenario stage entries; `at` names where they came from.
    pub fn from_specs(specs: &[StageSpec], at: &str) -> Result<Stages, String> {
        if specs.is_empty() {
            return Err(format!("{at}: give at least one stage"));
        }
        let mut open = None;
        let mut stages = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let which = format!("{at}[{}]", i + 1);
            let (is_open, target) = match (s.rate, s.concurrency) {
                (Some(r), None) => (true, r),
                (None, Some(c)) => (false, c as f64),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{which}: set `rate` (open model) or `concurrency` (closed model), not both"
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "{which}: set `rate` (open model) or `concurrency` (closed model)"
                    ))
                }
            };
            if open.is_some_and(|o| o != is_open) {
                return Err(format!(
                    "{which}: every stage must use the same model (all `rate` or all `concurrency`)"
                ));
            }
            open = Some(is_open);
            stages.push((s.duration, target));
        }
        Stages::checked(open.unwrap_or(true), stages, at)
    }

    /// Parses the flag form: `DUR:RATE,...` where a rate has a unit (`100/s`,
    /// open model) and a bare number is a number of connections (closed model).
    pub fn parse_flag(text: &str) -> Result<Stages, String> {
        let at = "--stages";
        let mut open = None;
        let mut stages = Vec::new();
        for (i, part) in text.split(',').enumerate() {
            let part = part.trim();
            let (dur, target) = part.split_once(':').ok_or_else(|| {
                format!("{at} entry {} `{part}`: expected DURATION:TARGET such as 30s:100/s (rate) or 30s:50 (connections)", i + 1)
            })?;
            let duration = units::parse_duration(dur)
                .map_err(|e| format!("{at} entry {} `{part}`: {e}", i + 1))?;
            let is_open = target.contains('/');
            let value = if is_open {
                parse_stage_rate(target)
            } else {
                target.trim().parse::<u64>().map(|c| c as f64).map_err(|_| {
                    format!("`{target}` is neither a rate with a unit (100/s) nor a number of connections")
                })
            }
            .map_err(|e| format!("{at} entry {} `{part}`: {e}", i + 1))?;
            if open.is_some_and(|o| o != is_open) {
                return Err(format!(
                    "{at} entry {} `{part}`: every stage must be a rate (100/s) or every stage a number of connections",
                    i + 1
                ));
            }
            open = Some(is_open);
            stages.push((duration, value));
        }
        Stages::checked(open.unwrap_or(true), stages, at)
    }

    fn checked(open: bool, stages: Vec<(Duration, f64)>, at: &str) -> Result<Stages, String> {
        let s = Stages { open, stages };
        if s.total().is_zero() {
            return Err(format!("{at}: the stages last zero seconds in total"));
        }
        if s.stages.len() > 1_000 {
            return Err(format!("{at}: at most 1000 stages"));
        }
        Ok(s)
    }
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
    if s.stages.is_some() && s.load.stages.is_some() {
        return Err("set `stages` at the top or in [load], not both".into());
    }
    if let Some(specs) = &s.stages {
        Stages::from_specs(specs, "stages")?;
    }
    if let Some(specs) = &s.load.stages {
        Stages::from_specs(specs, "[load] stages")?;
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

impl Scenario {
    /// The validated stages, wherever they were set.
    pub fn stages(&self) -> Result<Option<Stages>, String> {
        match (&self.stages, &self.load.stages) {
            (Some(specs), _) => Stages::from_specs(specs, "stages").map(Some),
            (None, Some(specs)) => Stages::from_specs(specs, "[load] stages").map(Some),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_at_the_top_or_in_load() {
        let s = parse(
            "base_url = \"http://x\"\nstages = [{duration = \"30s\", rate = \"100/s\"}, {duration = \"1m\", rate = 0}]\n[[request]]\n",
        )
        .unwrap();
        let st = s.stages().unwrap().unwrap();
        assert!(st.open);
        assert_eq!(
            st.stages,
            vec![
                (Duration::from_secs(30), 100.0),
                (Duration::from_secs(60), 0.0)
            ]
        );
        let s = parse("base_url = \"http://x\"\n[load]\nstages = [{duration = \"10s\", concurrency = 5}]\n[[request]]\n").unwrap();
        assert_eq!(
            s.stages().unwrap().unwrap().stages,
            vec![(Duration::from_secs(10), 5.0)]
        );
        let err = parse(
            "base_url = \"http://x\"\nstages = [{duration = \"10s\", rat = 5}]\n[[request]]\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("2:") && err.contains("unknown field `rat`"),
            "{err}"
        );
        let s = parse("base_url = \"http://x\"\nstages = [{duration = \"10s\", rate = 5}, {duration = \"1s\", concurrency = 2}]\n[[request]]\n").unwrap();
        let err = resolve(&s, Path::new(".")).unwrap_err();
        assert!(
            err.contains("stages[2]: every stage must use the same model"),
            "{err}"
        );
    }

    #[test]
    fn stage_flags() {
        let st = Stages::parse_flag("30s:100/s, 1m:1000/s").unwrap();
        assert_eq!(st.canonical(), "30000ms:100/s,60000ms:1000/s");
        let st = Stages::parse_flag("10s:5,10s:0").unwrap();
        assert!(!st.open);
        for bad in ["30s", "30s:abc", "30s:100/s,10s:5", "0s:5", "x:5"] {
            assert!(
                Stages::parse_flag(bad).unwrap_err().starts_with("--stages"),
                "{bad}"
            );
        }
    }

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
