//! `chokepoint scenario from-har FILE` and `chokepoint scenario from-curl
//! 'curl ...'`: write a scenario file (TOML, `docs/scenario.md`) from what
//! users already have. Credentials are kept in the file (a replay needs
//! them); messages only name the headers that hold them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::Failure;

/// `chokepoint scenario ...`.
#[derive(Args, Debug)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Subcommand, Debug)]
enum ScenarioCommand {
    /// Write a scenario from a HAR recording: one request per distinct request,
    /// weighted by how often it was recorded.
    #[command(
        name = "from-har",
        after_help = "Examples:\n  chokepoint scenario from-har recording.har > scenario.toml\n  chokepoint scenario from-har recording.har --exclude-static --out scenario.toml\n  chokepoint scenario from-har recording.har --origin https://api.example.com --json\n\nA scenario has one origin: the busiest is kept unless --origin names another;\nwhat was left out is listed on stderr."
    )]
    FromHar(FromHarArgs),
    /// Write a scenario from a curl command line (-X -H -d --data-binary @file -u -k ...).
    #[command(
        name = "from-curl",
        after_help = "Examples:\n  chokepoint scenario from-curl 'curl -X POST https://api.example.com/orders -H \"Content-Type: application/json\" -d @order.json'\n  chokepoint scenario from-curl --out order.toml -- curl -u alice:secret -k https://localhost:8443/api\n\nThe command may be one quoted argument or the words after `--`."
    )]
    FromCurl(FromCurlArgs),
}

#[derive(Args, Debug)]
struct FromHarArgs {
    /// The HAR file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Leave out images, fonts, stylesheets, scripts and media.
    #[arg(long = "exclude-static")]
    exclude_static: bool,
    /// Keep the requests to this origin (https://host[:port]) instead of the busiest.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct FromCurlArgs {
    /// The curl command as one quoted argument.
    #[arg(value_name = "CURL", required_unless_present = "words")]
    command: Option<String>,
    /// The curl command as words after `--`.
    #[arg(last = true, value_name = "WORDS")]
    words: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// Write the scenario to FILE instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the scenario as JSON instead of TOML.
    #[arg(long)]
    json: bool,
}

/// A scenario file as written (the subset of the format these commands produce).
#[derive(Debug, Serialize)]
pub struct ScenarioFile {
    /// Origin.
    pub base_url: String,
    /// TLS verification off (`-k`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// HTTP/2.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,
    /// Headers shared by every request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The requests.
    #[serde(rename = "request")]
    pub requests: Vec<ScenarioRequest>,
}

/// One `[[request]]` as written.
#[derive(Debug, Serialize)]
pub struct ScenarioRequest {
    /// Name.
    pub name: String,
    /// Method.
    pub method: String,
    /// Path (absolute on the origin).
    pub path: String,
    /// Headers of this request only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Inline body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Body file (absolute path) for bodies that are not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    /// Weight.
    pub weight: u32,
}

impl ScenarioFile {
    /// Moves headers that every request sends with the same value to the top.
    fn hoist_common_headers(&mut self) {
        let Some(first) = self.requests.first() else {
            return;
        };
        let common: Vec<(String, String)> = first
            .headers
            .iter()
            .filter(|(k, v)| self.requests.iter().all(|r| r.headers.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if self.requests.len() < 2 {
            return;
        }
        for (k, v) in common {
            for r in &mut self.requests {
                r.headers.remove(&k);
            }
            self.headers.insert(k, v);
        }
    }

    /// Names of headers holding credentials, for messages (never their values).
    fn secret_headers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .keys()
            .chain(self.requests.iter().flat_map(|r| r.headers.keys()))
            .filter(|k| chokepoint_report::redact::is_secret_header(k))
            .cloned()
            .collect();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        names
    }

    /// TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("scenarios serialize to TOML")
    }
}

fn headers_map(headers: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        match map.get_mut(k) {
            // Repeated headers (two Cookie lines) are joined as HTTP allows.
            Some(existing) => {
                let sep = if k.eq_ignore_ascii_case("cookie") {
                    "; "
                } else {
                    ", "
                };
                existing.push_str(sep);
                existing.push_str(v);
            }
            None => {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    map
}

/// Runs the command; returns the exit code.
pub fn run(args: ScenarioArgs) -> Result<i32, Failure> {
    let (scenario, notes, output) = match args.command {
        ScenarioCommand::FromHar(a) => {
            let converted = crate::har::load(
                &a.file,
                &crate::har::HarOptions {
                    exclude_static: a.exclude_static,
                    origin: a.origin.clone(),
                },
            )
            .map_err(Failure::Usage)?;
            if converted.requests.is_empty() {
                return Err(Failure::Usage(format!(
                    "{}: no request left to write ({})",
                    a.file.display(),
                    converted.notes.join("; ")
                )));
            }
            let mut s = ScenarioFile {
                base_url: converted.base_url.clone(),
                insecure: false,
                http2: false,
                headers: BTreeMap::new(),
                requests: converted
                    .requests
                    .iter()
                    .map(|r| ScenarioRequest {
                        name: r.name.clone(),
                        method: r.method.clone(),
                        path: r.path.clone(),
                        headers: headers_map(&r.headers),
                        body: (!r.body.is_empty()).then(|| r.body.clone()),
                        body_file: None,
                        weight: r.count,
                    })
                    .collect(),
            };
            s.hoist_common_headers();
            (s, converted.notes, a.output)
        }
        ScenarioCommand::FromCurl(a) => {
            let words = match &a.command {
                Some(text) => {
                    if !a.words.is_empty() {
                        return Err(Failure::Usage(
                            "give the curl command as one quoted argument or as words after `--`, not both".into(),
                        ));
                    }
                    crate::curl::split_words(text)
                        .map_err(|e| Failure::Usage(format!("curl command: {e}")))?
                }
                None => a.words.clone(),
            };
            let r = crate::curl::parse(&words, Path::new("."))
                .map_err(|e| Failure::Usage(format!("curl command: {e}")))?;
            let target = chokepoint_engine::Target::parse(&r.url)
                .map_err(|e| Failure::Usage(format!("curl command: {e}")))?;
            let path_and_query = r
                .url
                .split_once("://")
                .and_then(|(_, rest)| rest.find(['/', '?']).map(|i| rest[i..].to_string()))
                .unwrap_or_else(|| "/".into());
            let path_and_query = if path_and_query.starts_with('?') {
                format!("/{path_and_query}")
            } else {
                path_and_query
            };
            let (body, body_file) = match String::from_utf8(r.body.clone()) {
                Ok(text) => ((!text.is_empty()).then_some(text), None),
                Err(_) => match &r.body_file {
                    Some(path) => {
                        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                        (None, Some(abs.display().to_string()))
                    }
                    None => {
                        return Err(Failure::Usage(
                            "curl command: the body is not UTF-8 text; pass it with --data-binary @FILE".into(),
                        ))
                    }
                },
            };
            let name = format!(
                "{} {}",
                r.method,
                path_and_query.split('?').next().unwrap_or("/")
            );
            let s = ScenarioFile {
                base_url: format!("{}/", target.origin()),
                insecure: r.insecure,
                http2: r.http2,
                headers: BTreeMap::new(),
                requests: vec![ScenarioRequest {
                    name,
                    method: r.method.clone(),
                    path: path_and_query,
                    headers: headers_map(&r.headers),
                    body,
                    body_file,
                    weight: 1,
                }],
            };
            (s, Vec::new(), a.output)
        }
    };
    let text = if output.json {
        serde_json::to_string_pretty(&scenario).expect("scenarios serialize") + "\n"
    } else {
        scenario.to_toml()
    };
    for note in &notes {
        eprintln!("note: {note}");
    }
    let secrets = scenario.secret_headers();
    if !secrets.is_empty() {
        eprintln!(
            "note: the scenario keeps credentials in {} (needed to replay; reports never print them): keep the file private",
            secrets.join(", ")
        );
    }
    match &output.out {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))?;
            let weights: u32 = scenario.requests.iter().map(|r| r.weight).sum();
            eprintln!(
                "wrote {}: {} requests ({} recorded) for {}",
                path.display(),
                scenario.requests.len(),
                weights,
                chokepoint_report::redact::redact_url(&scenario.base_url)
            );
        }
        None => crate::print_stdout(&text),
    }
    Ok(0)
}
