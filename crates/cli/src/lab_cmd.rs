//! `chokepoint lab`: run the checkout lab service until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chokepoint_lab::{
    parse_duration, parse_size, Fix, LabConfig, LabError, LatencyDist, Stall, FIX_SYNTAX,
};

/// Every knob `chokepoint lab` accepts, for the unknown-knob message.
const KNOBS: &[&str] = &[
    "--listen",
    "--scenario",
    "--pool-size",
    "--db-hold",
    "--db-rtt",
    "--payment-latency",
    "--email-latency",
    "--email-workers",
    "--email-queue",
    "--n-plus-one",
    "--missing-index",
    "--lock-hold",
    "--cache-ttl",
    "--stampede",
    "--stall-every",
    "--stall-for",
    "--leak-per-request",
    "--customers",
    "--products",
    "--orders",
    "--fix",
    "--otlp-endpoint",
    "--trace-file",
    "--trace-queue",
    "--json",
];

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn dist_arg(text: &str) -> Result<LatencyDist, String> {
    text.parse::<LatencyDist>().map_err(|e| e.to_string())
}

fn fix_arg(text: &str) -> Result<Fix, String> {
    text.parse::<Fix>().map_err(|e| e.to_string())
}

fn size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

fn scenario_arg(text: &str) -> Result<String, String> {
    match LabConfig::scenario(text) {
        Some(_) => Ok(text.to_string()),
        None => Err(LabError::UnknownScenario {
            name: text.to_string(),
        }
        .to_string()),
    }
}

/// Flags of `chokepoint lab`. Planted-bottleneck knobs override `--scenario`; `--fix` applies last.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Durations: 250ms, 10s, 5m. Latency distributions: 5ms, fixed:5ms, \
uniform:5ms..20ms, lognormal:20ms:p99=200ms. Sizes: 4096, 64KiB, 1MiB.\n\
Fixes: pool=N, async-email, payment-timeout=DUR, join, index, lock-free, single-flight, no-stall, no-leak.\n\
Scenarios: healthy, pool-exhaustion, sync-email, payment-tail, n-plus-one, missing-index, \
lock-contention, cache-stampede, stalls, leak."
)]
pub struct LabArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Start from a scenario preset (other knobs override it).
    #[arg(long, value_name = "NAME", value_parser = scenario_arg)]
    scenario: Option<String>,
    /// Database connections in the pool [default: 16].
    #[arg(long, value_name = "N")]
    pool_size: Option<usize>,
    /// Time the /checkout order write holds its connection in all [default: 0].
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    db_hold: Option<Duration>,
    /// Simulated network round trip per SQL statement batch [default: 0].
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    db_rtt: Option<Duration>,
    /// Payment gateway latency distribution [default: fixed:2ms].
    #[arg(long, value_name = "DIST", value_parser = dist_arg)]
    payment_latency: Option<LatencyDist>,
    /// Email service latency distribution [default: fixed:1ms].
    #[arg(long, value_name = "DIST", value_parser = dist_arg)]
    email_latency: Option<LatencyDist>,
    /// Workers serving the async email queue, with --fix async-email [default: 128].
    #[arg(long, value_name = "N")]
    email_workers: Option<usize>,
    /// Bound of the async email queue; a full queue drops and counts [default: 10000].
    #[arg(long, value_name = "N")]
    email_queue: Option<usize>,
    /// Load each order's customer with its own query on GET /orders.
    #[arg(long)]
    n_plus_one: bool,
    /// Do not create the orders(user_id) index.
    #[arg(long)]
    missing_index: bool,
    /// Time the inventory update holds the shared lock [default: 0].
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    lock_hold: Option<Duration>,
    /// Time-to-live of product cache entries [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    cache_ttl: Option<Duration>,
    /// Every concurrent cache miss recomputes the entry (no single-flight).
    #[arg(long)]
    stampede: bool,
    /// Start a stop-the-world pause this often.
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    stall_every: Option<Duration>,
    /// Length of each pause (default 100ms when --stall-every is given).
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    stall_for: Option<Duration>,
    /// Bytes each checkout allocates and never frees [default: 0].
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    leak_per_request: Option<u64>,
    /// Seeded customers [default: 10000].
    #[arg(long, value_name = "N")]
    customers: Option<u32>,
    /// Seeded products [default: 1000].
    #[arg(long, value_name = "N")]
    products: Option<u32>,
    /// Seeded historic orders [default: 200000].
    #[arg(long, value_name = "N")]
    orders: Option<u32>,
    /// Apply a fix (repeatable).
    #[arg(long = "fix", value_name = "FIX", value_parser = fix_arg)]
    fixes: Vec<Fix>,
    /// Export spans over OTLP/HTTP (JSON) to this URL, e.g. http://127.0.0.1:4318.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Append spans to this file as OTLP/JSON lines.
    #[arg(long, value_name = "PATH")]
    trace_file: Option<PathBuf>,
    /// Spans buffered for export; more are dropped and counted [default: 16384].
    #[arg(long, value_name = "N")]
    trace_queue: Option<usize>,
    /// Print the effective configuration as JSON after the `listening on` line.
    #[arg(long)]
    json: bool,
    /// Anything clap does not recognise lands here, so the error can list the valid knobs.
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    unknown: Vec<String>,
}

impl LabArgs {
    /// Builds the validated lab configuration (stage two of flag parsing).
    fn to_config(&self) -> Result<LabConfig, LabError> {
        let mut c = match &self.scenario {
            Some(name) => LabConfig::scenario(name)
                .ok_or_else(|| LabError::UnknownScenario { name: name.clone() })?,
            None => LabConfig::default(),
        };
        c.listen = self.listen;
        if let Some(v) = self.pool_size {
            c.pool_size = v;
        }
        if let Some(v) = self.db_hold {
            c.db_hold = v;
        }
        if let Some(v) = self.db_rtt {
            c.db_rtt = v;
        }
        if let Some(v) = self.payment_latency {
            c.payment_latency = v;
        }
        if let Some(v) = self.email_latency {
            c.email_latency = v;
        }
        if let Some(v) = self.email_workers {
            c.email_workers = v;
        }
        if let Some(v) = self.email_queue {
            c.email_queue_capacity = v;
        }
        c.n_plus_one |= self.n_plus_one;
        c.missing_index |= self.missing_index;
        if let Some(v) = self.lock_hold {
            c.lock_hold = v;
        }
        if let Some(v) = self.cache_ttl {
            c.cache_ttl = v;
        }
        c.stampede |= self.stampede;
        match (self.stall_every, self.stall_for) {
            (Some(every), pause) => {
                c.stall = Some(Stall {
                    every,
                    pause: pause.unwrap_or(Duration::from_millis(100)),
                })
            }
            (None, Some(pause)) => match &mut c.stall {
                Some(stall) => stall.pause = pause,
                None => {
                    return Err(LabError::InvalidValue {
                        what: "stall schedule",
                        value: "--stall-for without --stall-every".into(),
                        expected: "give --stall-every too".into(),
                    })
                }
            },
            (None, None) => {}
        }
        if let Some(v) = self.leak_per_request {
            c.leak_per_request = v;
        }
        if let Some(v) = self.customers {
            c.seed.customers = v;
        }
        if let Some(v) = self.products {
            c.seed.products = v;
        }
        if let Some(v) = self.orders {
            c.seed.orders = v;
        }
        for fix in &self.fixes {
            c.apply_fix(*fix);
        }
        c.trace.otlp_endpoint = self.otlp_endpoint.clone();
        c.trace.trace_file = self.trace_file.clone();
        if let Some(v) = self.trace_queue {
            c.trace.queue_capacity = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Runs the lab until SIGINT or SIGTERM. Exit code 2 for bad knobs.
pub fn run(args: LabArgs) -> anyhow::Result<i32> {
    if let Some(first) = args.unknown.first() {
        eprintln!(
            "error: unknown lab knob `{first}`; valid knobs: {}; valid fixes: {}",
            KNOBS.join(" "),
            FIX_SYNTAX.join(", ")
        );
        return Ok(2);
    }
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(config, args.json))
}

async fn serve(config: LabConfig, json: bool) -> anyhow::Result<i32> {
    let lab = chokepoint_lab::start(config)
        .await
        .context("cannot start the lab")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", lab.base_url())?;
        if json {
            let mut value = lab.config().to_json();
            if let Some(map) = value.as_object_mut() {
                map.insert("payment_addr".into(), lab.payment_addr().to_string().into());
                map.insert("email_addr".into(), lab.email_addr().to_string().into());
            }
            writeln!(out, "{value}")?;
        }
        out.flush()?;
    }
    let capacity = match lab.capacity_rps() {
        Some(rps) => format!("{rps:.0} req/s"),
        None => "not bounded by a planted knob".to_string(),
    };
    eprintln!(
        "lab: payment http://{}, email http://{}, /checkout capacity {capacity}; Ctrl-C to stop",
        lab.payment_addr(),
        lab.email_addr()
    );
    wait_for_signal().await?;
    lab.shutdown().await;
    Ok(0)
}

/// Each client connection costs the lab up to five descriptors (its socket plus
/// both ends of the payment and email connections), so lift the soft limit.
#[cfg(unix)]
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
}
