//! Flags shared by every command that generates load (`run`, later `stress`
//! and `soak`), and their validation into one engine configuration.

use std::path::PathBuf;
use std::time::Duration;

use chokepoint_engine::{Arrival, Limits, LoadModel, RequestSpec, RunConfig, Target};
use clap::Args;

use crate::scenario::{self, ArrivalName};
use crate::units;

/// Where requests go and what they look like.
#[derive(Args, Debug, Clone, Default)]
pub struct RequestArgs {
    /// Target URL (http:// or https://) or a scenario file (.toml).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// HTTP method (default GET, or POST when a body is given).
    #[arg(short = 'X', long = "method", value_name = "METHOD")]
    pub method: Option<String>,
    /// Request header "Name: value" (repeatable); added to every request.
    #[arg(short = 'H', long = "header", value_name = "K: V", value_parser = units::parse_header)]
    pub headers: Vec<(String, String)>,
    /// Request body.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "STR",
        conflicts_with = "data_file"
    )]
    pub data: Option<String>,
    /// Request body read from a file.
    #[arg(long = "data-file", value_name = "PATH")]
    pub data_file: Option<PathBuf>,
}

/// How connections behave.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// Per-request timeout, covering connect, TLS and the whole response [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration)]
    pub timeout: Option<Duration>,
    /// Open a new connection for every request (sends `Connection: close`).
    #[arg(long = "no-keepalive")]
    pub no_keepalive: bool,
    /// Speak HTTP/2 (prior knowledge on http://, ALPN on https://).
    #[arg(long)]
    pub http2: bool,
    /// Skip TLS certificate verification (the report says so).
    #[arg(long)]
    pub insecure: bool,
    /// Send a W3C traceparent with every request; keep the slowest requests' trace ids.
    #[arg(long = "trace-propagate")]
    pub trace_propagate: bool,
    /// Generator threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Load model and limits.
#[derive(Args, Debug, Clone, Default)]
pub struct LoadArgs {
    /// Open model: constant arrival rate (500, 500/s, 30/m).
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Open-model arrival spacing.
    #[arg(long, value_enum, value_name = "KIND")]
    pub arrival: Option<ArrivalName>,
    /// Closed model: N connections, each sending when its previous request completes [default: 50].
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<u64>,
    /// Measured duration [default: 10s, or unlimited with --requests].
    #[arg(short = 'z', long, value_name = "DUR", value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Number of measured requests.
    #[arg(short = 'n', long = "requests", value_name = "N")]
    pub requests: Option<u64>,
    /// Warmup before the measured window, reported separately.
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration)]
    pub warmup: Option<Duration>,
    /// Open model: most concurrent connections [default: 10000].
    #[arg(long = "max-connections", value_name = "N")]
    pub max_connections: Option<u64>,
    /// Seed for arrival gaps, request mix and trace ids.
    #[arg(long, value_name = "N", hide = true)]
    pub seed: Option<u64>,
}

/// A validated plan: the engine configuration plus what reports need to say about it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the engine runs.
    pub config: RunConfig,
    /// The target as the user gave it (redacted in reports).
    pub target_display: String,
    /// Expected measured duration, for progress display.
    pub expected_duration: Option<Duration>,
}

/// Combines flags (which win) with a scenario file's `[load]` section.
pub fn plan(request: &RequestArgs, conn: &ConnectionArgs, load: &LoadArgs) -> Result<Plan, String> {
    let is_scenario = request.target.ends_with(".toml")
        || (!request.target.contains("://") && std::path::Path::new(&request.target).is_file());
    let (target, mut requests, file_load) = if is_scenario {
        let (scenario, requests) = scenario::load(std::path::Path::new(&request.target))?;
        let target = Target::parse(&scenario.base_url)
            .map_err(|e| format!("{}: base_url: {e}", request.target))?;
        let specs: Vec<RequestSpec> = requests
            .into_iter()
            .map(|r| RequestSpec {
                name: r.name,
                method: r.method,
                path: r.path,
                headers: r.headers,
                body: r.body,
                weight: r.weight,
            })
            .collect();
        (target, specs, scenario.load)
    } else {
        if !request.target.contains("://") {
            return Err(format!(
                "`{}` is neither a URL (http://... or https://...) nor a scenario file (.toml)",
                request.target
            ));
        }
        let target = Target::parse(&request.target).map_err(|e| e.to_string())?;
        let body = match (&request.data, &request.data_file) {
            (Some(d), _) => d.clone().into_bytes(),
            (None, Some(path)) => {
                std::fs::read(path).map_err(|e| format!("--data-file {}: {e}", path.display()))?
            }
            (None, None) => Vec::new(),
        };
        let method = request
            .method
            .clone()
            .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into());
        let spec = RequestSpec {
            name: "default".into(),
            method,
            path: String::new(),
            headers: Vec::new(),
            body,
            weight: 1,
        };
        (target, vec![spec], scenario::Load::default())
    };
    if is_scenario
        && (request.data.is_some() || request.data_file.is_some() || request.method.is_some())
    {
        return Err("-X, -d and --data-file apply to URL targets; set method and body per request in the scenario".into());
    }
    for r in &mut requests {
        r.headers.extend(request.headers.iter().cloned());
    }

    let rate = load.rate.or(if load.concurrency.is_some() {
        None
    } else {
        file_load.rate
    });
    let concurrency = load.concurrency.or(if load.rate.is_some() {
        None
    } else {
        file_load.concurrency
    });
    let arrival = load.arrival.or(file_load.arrival);
    if arrival.is_some() && rate.is_none() {
        return Err("--arrival applies to the open model; give --rate too".into());
    }
    let max_connections = load
        .max_connections
        .or(file_load.max_connections)
        .unwrap_or(10_000);
    if load.max_connections.is_some() && rate.is_none() {
        return Err("--max-connections applies to the open model; give --rate too (use -c for the closed model)".into());
    }
    let model = match (rate, concurrency) {
        (Some(rate), None) => LoadModel::Open {
            rate,
            arrival: match arrival.unwrap_or(ArrivalName::Uniform) {
                ArrivalName::Uniform => Arrival::Uniform,
                ArrivalName::Poisson => Arrival::Poisson,
            },
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        },
        (None, c) => LoadModel::Closed {
            concurrency: usize::try_from(c.unwrap_or(50)).unwrap_or(usize::MAX),
        },
        (Some(_), Some(_)) => {
            return Err("give either --rate (open model) or -c (closed model), not both".into())
        }
    };
    if matches!(model, LoadModel::Closed { concurrency: 0 }) {
        return Err("-c must be at least 1".into());
    }
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    let max_requests = load.requests.or(file_load.requests);
    if max_requests == Some(0) {
        return Err("-n must be at least 1".into());
    }
    let duration = load
        .duration
        .or(file_load.duration)
        .or(if max_requests.is_some() {
            None
        } else {
            Some(Duration::from_secs(10))
        });
    if duration == Some(Duration::ZERO) {
        return Err("--duration must be longer than zero".into());
    }
    let timeout = conn
        .timeout
        .or(file_load.timeout)
        .unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        return Err("--timeout must be longer than zero".into());
    }
    let warmup = load.warmup.or(file_load.warmup).unwrap_or(Duration::ZERO);

    let mut config = RunConfig::new(target, model);
    config.requests = requests;
    config.limits = Limits {
        warmup_ns: warmup.as_nanos() as u64,
        duration_ns: duration.map(|d| d.as_nanos() as u64),
        max_requests,
    };
    config.timeout = timeout;
    config.keepalive = !conn.no_keepalive;
    config.http2 = conn.http2;
    config.insecure = conn.insecure;
    config.trace_propagate = conn.trace_propagate;
    config.threads = conn.threads.unwrap_or(0);
    if let Some(seed) = load.seed {
        config.seed = seed;
    }
    let target_display = if is_scenario {
        format!("{}{}", config.target.origin(), config.target.base_path)
    } else {
        request.target.clone()
    };
    Ok(Plan {
        config,
        target_display,
        expected_duration: duration,
    })
}
