//! Flags shared by every command that generates load (`run`, later `stress`
//! and `soak`), and their validation into one engine configuration.

use std::path::PathBuf;
use std::time::Duration;

use chokepoint_engine::{
    Arrival, Limits, LoadModel, Ramp, RequestSpec, RunConfig, Shard, Stage, Target,
};
use clap::Args;

use crate::scenario::{self, ArrivalName, Stages};
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
    /// Generator threads [default: as the load needs (one per 100 connections or
    /// 50,000 req/s), at most one per core, at most half the cores for a loopback target].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// I/O for plain-text HTTP/1.1: io_uring where the kernel offers it, else
    /// epoll (`auto`); TLS and HTTP/2 always use epoll.
    #[arg(long, value_enum, value_name = "KIND", default_value = "auto")]
    pub io: IoName,
}

/// `--io` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoName {
    /// io_uring when available, else epoll.
    #[default]
    Auto,
    /// tokio's epoll reactor.
    Epoll,
    /// io_uring, or fail to start.
    #[value(name = "io_uring", alias = "uring")]
    Uring,
}

impl IoName {
    /// The engine's I/O mode for this flag value.
    pub fn mode(self) -> chokepoint_engine::IoMode {
        match self {
            IoName::Auto => chokepoint_engine::IoMode::Auto,
            IoName::Epoll => chokepoint_engine::IoMode::Epoll,
            IoName::Uring => chokepoint_engine::IoMode::Uring,
        }
    }
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
    /// Open model: most concurrent connections [default: 10000; fewer while the
    /// target's fastest responses show more would only queue: 32 x rate x fastest, at least 100].
    #[arg(long = "max-connections", value_name = "N")]
    pub max_connections: Option<u64>,
    /// Seed for arrival gaps, request mix and trace ids.
    #[arg(long, value_name = "N", hide = true)]
    pub seed: Option<u64>,
}

/// Scaling out and shaping the load over time (`chokepoint run` only).
#[derive(Args, Debug, Clone, Default)]
pub struct ScaleArgs {
    /// Run generator I of N (0-based): the open model sends every N-th arrival
    /// of --rate, the closed model every N-th of the -c connections. Merge the
    /// shards' --out directories with `chokepoint merge`.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Start the schedule at this wall-clock time (RFC 3339, e.g.
    /// 2025-06-01T12:00:00Z), so shards on several machines start together.
    #[arg(long = "start-at", value_name = "TIME")]
    pub start_at: Option<String>,
    /// Stages with linear ramps, DURATION:TARGET,... : rates with a unit ramp
    /// the open model (30s:100/s,1m:1000/s), bare numbers ramp connections
    /// (30s:10,1m:50). Ramps start from --rate / -c (default 0); the stages
    /// set the duration.
    #[arg(long, value_name = "DUR:TARGET,...")]
    pub stages: Option<String>,
}

/// What a run says about its shard and stages beyond the engine configuration.
#[derive(Debug, Clone, Default)]
pub struct ScaleInfo {
    /// `(index, count)` when this run is one shard of several.
    pub shard: Option<(u32, u32)>,
    /// Fingerprint of the whole scenario (shards of one test share it).
    pub fingerprint: String,
    /// The whole load's stages: `(start_s, duration_s, from, to)`.
    pub stages: Vec<(f64, f64, f64, f64)>,
    /// The agreed start time, as given and parsed.
    pub start_at: Option<(String, std::time::SystemTime)>,
    /// What converting the target left out (HAR recordings), for stderr.
    pub notes: Vec<String>,
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
/// Scenario stages are refused here: they belong to `run` ([`plan_scaled`]).
pub fn plan(request: &RequestArgs, conn: &ConnectionArgs, load: &LoadArgs) -> Result<Plan, String> {
    plan_scaled(request, conn, load, None).map(|(plan, _)| plan)
}

/// Whether a target names a file of requests rather than a URL.
fn is_file_target(target: &str, suffix: &str) -> bool {
    target.to_ascii_lowercase().ends_with(suffix)
        || (!target.contains("://") && std::path::Path::new(target).is_file())
}

/// [`plan`] with `run`'s shard, start time and stages (`scale`); `None` for
/// commands that shape the load themselves (`stress`, `soak`).
pub fn plan_scaled(
    request: &RequestArgs,
    conn: &ConnectionArgs,
    load: &LoadArgs,
    scale: Option<&ScaleArgs>,
) -> Result<(Plan, ScaleInfo), String> {
    let is_har = request.target.to_ascii_lowercase().ends_with(".har");
    let is_scenario = !is_har && is_file_target(&request.target, ".toml");
    let mut file_stages = None;
    let mut har_notes = Vec::new();
    let mut file_connection = (false, false);
    let (target, mut requests, file_load) = if is_har {
        let converted = crate::har::load(
            std::path::Path::new(&request.target),
            &crate::har::HarOptions::default(),
        )?;
        let target =
            Target::parse(&converted.base_url).map_err(|e| format!("{}: {e}", request.target))?;
        har_notes = converted.notes.clone();
        (target, converted.specs(), scenario::Load::default())
    } else if is_scenario {
        let (scenario, requests) = scenario::load(std::path::Path::new(&request.target))?;
        file_connection = (scenario.insecure, scenario.http2);
        file_stages = scenario
            .stages()
            .map_err(|e| format!("{}: {e}", request.target))?;
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
                "`{}` is neither a URL (http://... or https://...) nor a scenario file (.toml) nor a HAR recording (.har)",
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
    if (is_scenario || is_har)
        && (request.data.is_some() || request.data_file.is_some() || request.method.is_some())
    {
        return Err("-X, -d and --data-file apply to URL targets; set method and body per request in the scenario".into());
    }
    for r in &mut requests {
        r.headers.extend(request.headers.iter().cloned());
    }

    let stages = match (scale.and_then(|s| s.stages.as_deref()), file_stages) {
        (Some(text), _) => Some(Stages::parse_flag(text)?),
        (None, Some(_)) if scale.is_none() => {
            return Err(format!(
                "{}: stages apply to `chokepoint run`; this command shapes the load itself",
                request.target
            ))
        }
        (None, file) => file,
    };
    if let Some(st) = &stages {
        if load.duration.is_some() || file_load.duration.is_some() {
            return Err(format!(
                "stages set the duration (their sum, {}); drop --duration / [load] duration",
                humantime::format_duration(st.total())
            ));
        }
        if st.open && load.concurrency.is_some() {
            return Err("the stages ramp a rate (open model); -c does not apply (a bare number in --stages is a number of connections)".into());
        }
        if !st.open && load.rate.is_some() {
            return Err("the stages ramp connections (closed model); --rate does not apply (write rates with a unit in --stages, e.g. 30s:100/s)".into());
        }
    }
    let staged_open = stages.as_ref().map(|s| s.open);

    let rate = load.rate.or(
        if load.concurrency.is_some() || staged_open == Some(false) {
            None
        } else {
            file_load.rate
        },
    );
    let concurrency = load
        .concurrency
        .or(if load.rate.is_some() || staged_open == Some(true) {
            None
        } else {
            file_load.concurrency
        });
    let arrival = load.arrival.or(file_load.arrival);
    let open = staged_open.unwrap_or(rate.is_some());
    if arrival.is_some() && !open {
        return Err("--arrival applies to the open model; give --rate too".into());
    }
    let max_connections = load
        .max_connections
        .or(file_load.max_connections)
        .unwrap_or(10_000);
    if load.max_connections.is_some() && !open {
        return Err("--max-connections applies to the open model; give --rate too (use -c for the closed model)".into());
    }
    let arrival = match arrival.unwrap_or(ArrivalName::Uniform) {
        ArrivalName::Uniform => Arrival::Uniform,
        ArrivalName::Poisson => Arrival::Poisson,
    };
    let max_connections_usize = usize::try_from(max_connections).unwrap_or(usize::MAX);
    let ramp = stages.as_ref().map(|st| Ramp {
        start: if st.open {
            rate.unwrap_or(0.0)
        } else {
            concurrency.unwrap_or(0) as f64
        },
        stages: st
            .stages
            .iter()
            .map(|(d, target)| Stage {
                duration_ns: d.as_nanos() as u64,
                target: *target,
            })
            .collect(),
    });
    let model = match (&ramp, rate, concurrency) {
        (Some(r), _, _) if open => LoadModel::Open {
            rate: r.peak(),
            arrival,
            max_connections: max_connections_usize,
        },
        (Some(r), _, _) => LoadModel::Closed {
            concurrency: r.peak().floor() as usize,
        },
        (None, Some(rate), None) => LoadModel::Open {
            rate,
            arrival,
            max_connections: max_connections_usize,
        },
        (None, None, c) => LoadModel::Closed {
            concurrency: usize::try_from(c.unwrap_or(50)).unwrap_or(usize::MAX),
        },
        (None, Some(_), Some(_)) => {
            return Err("give either --rate (open model) or -c (closed model), not both".into())
        }
    };
    if let Some(r) = &ramp {
        if r.peak() <= 0.0 || matches!(model, LoadModel::Closed { concurrency: 0 }) {
            return Err("the stages never reach any load (every target is 0)".into());
        }
    } else if matches!(model, LoadModel::Closed { concurrency: 0 }) {
        return Err("-c must be at least 1".into());
    }
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    let max_requests = load.requests.or(file_load.requests);
    if max_requests == Some(0) {
        return Err("-n must be at least 1".into());
    }
    let warmup = load.warmup.or(file_load.warmup).unwrap_or(Duration::ZERO);
    let duration = match &stages {
        Some(st) => {
            if warmup >= st.total() {
                return Err(format!(
                    "--warmup {} is not shorter than the stages ({}); warmup is the first part of the stages",
                    humantime::format_duration(warmup),
                    humantime::format_duration(st.total())
                ));
            }
            Some(st.total() - warmup)
        }
        None => load
            .duration
            .or(file_load.duration)
            .or(if max_requests.is_some() {
                None
            } else {
                Some(Duration::from_secs(10))
            }),
    };
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

    // Request names go into every report; `METHOD path?query` names must not
    // carry credentials there (the requests sent keep their query).
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let names = chokepoint_report::redact::redact_request_names(&names);
    for (r, name) in requests.iter_mut().zip(names) {
        r.name = name;
    }
    let mut config = RunConfig::new(target, model);
    config.requests = requests;
    config.limits = Limits {
        warmup_ns: warmup.as_nanos() as u64,
        duration_ns: duration.map(|d| d.as_nanos() as u64),
        max_requests,
    };
    config.timeout = timeout;
    config.keepalive = !conn.no_keepalive;
    config.http2 = conn.http2 || file_connection.1;
    config.insecure = conn.insecure || file_connection.0;
    config.trace_propagate = conn.trace_propagate;
    config.threads = conn.threads.unwrap_or(0);
    config.io = conn.io.mode();
    if let Some(seed) = load.seed {
        config.seed = seed;
    }
    config.ramp = ramp.clone();

    let shard = scale.and_then(|s| s.shard);
    let mut info = ScaleInfo {
        shard,
        fingerprint: crate::shard::fingerprint(&crate::shard::FingerprintInput {
            config: &config,
            stages: &stages.as_ref().map(Stages::canonical).unwrap_or_default(),
            shards: shard.map_or(1, |(_, n)| n),
        }),
        stages: Vec::new(),
        start_at: None,
        notes: har_notes,
    };
    if let Some(r) = &ramp {
        let mut t = 0.0;
        let mut from = r.start;
        for s in &r.stages {
            let d = s.duration_ns as f64 / 1e9;
            info.stages.push((t, d, from, s.target));
            t += d;
            from = s.target;
        }
    }
    if let Some((index, count)) = shard {
        let part = Shard::new(index, count)
            .ok_or_else(|| format!("--shard {index}/{count}: index out of range"))?
            .split(config.load, config.ramp.as_ref())
            .map_err(|e| format!("--shard {index}/{count}: {e}"))?;
        config.load = part.load;
        config.ramp = part.ramp;
        config.arrival_phase = part.arrival_phase;
        // Independent arrival gaps and request mixes per shard.
        config.seed ^= u64::from(index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    if let Some(text) = scale.and_then(|s| s.start_at.as_deref()) {
        let at = crate::shard::parse_rfc3339(text)?;
        crate::shard::check_start_at(at, std::time::SystemTime::now(), text)?;
        config.start_at = Some(at);
        info.start_at = Some((text.to_string(), at));
    }
    let target_display = if is_scenario || is_har {
        format!("{}{}", config.target.origin(), config.target.base_path)
    } else {
        request.target.clone()
    };
    Ok((
        Plan {
            config,
            target_display,
            expected_duration: duration,
        },
        info,
    ))
}
