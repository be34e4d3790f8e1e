//! Lab configuration: knobs, fixes, latency distributions, scenario presets and the analytic capacity.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::LabError;

/// How long a dependency (payment gateway, email service) takes to answer.
///
/// Text syntax (see [`LatencyDist::from_str`]): `5ms` or `fixed:5ms`,
/// `uniform:5ms..20ms`, `lognormal:20ms:p99=200ms` (median, then P99).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatencyDist {
    /// Always the same latency.
    Fixed(Duration),
    /// Uniform between `low` and `high` (inclusive).
    Uniform {
        /// Smallest latency.
        low: Duration,
        /// Largest latency.
        high: Duration,
    },
    /// Log-normal with the given median and 99th percentile: a long tail.
    LogNormal {
        /// Median (P50) latency.
        median: Duration,
        /// 99th percentile latency; must be at least the median.
        p99: Duration,
    },
}

/// Longest latency a distribution ever yields, so a log-normal tail stays finite.
pub const MAX_SAMPLED_LATENCY: Duration = Duration::from_secs(60);

/// z-score of the 99th percentile of the standard normal distribution.
const Z_P99: f64 = 2.326_347_874;

impl LatencyDist {
    /// Draws one latency.
    pub fn sample(&self) -> Duration {
        match *self {
            LatencyDist::Fixed(d) => d,
            LatencyDist::Uniform { low, high } => {
                let span = high.saturating_sub(low).as_secs_f64();
                low + Duration::from_secs_f64(span * fastrand::f64())
            }
            LatencyDist::LogNormal { median, .. } => {
                let sigma = self.sigma();
                // Box-Muller: two uniforms in (0, 1] give one standard normal.
                let u1 = 1.0 - fastrand::f64();
                let u2 = fastrand::f64();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let secs = median.as_secs_f64() * (sigma * z).exp();
                Duration::from_secs_f64(secs.min(MAX_SAMPLED_LATENCY.as_secs_f64()))
            }
        }
    }

    /// The log-normal shape parameter (0 for the other distributions).
    fn sigma(&self) -> f64 {
        match *self {
            LatencyDist::LogNormal { median, p99 } if !median.is_zero() => {
                (p99.as_secs_f64() / median.as_secs_f64()).ln() / Z_P99
            }
            _ => 0.0,
        }
    }

    /// The analytic mean latency.
    pub fn mean(&self) -> Duration {
        match *self {
            LatencyDist::Fixed(d) => d,
            LatencyDist::Uniform { low, high } => (low + high) / 2,
            LatencyDist::LogNormal { median, .. } => {
                let s = self.sigma();
                Duration::from_secs_f64(median.as_secs_f64() * (s * s / 2.0).exp())
            }
        }
    }

    /// The analytic quantile `q` (0 < q < 1) of the latency.
    pub fn quantile(&self, q: f64) -> Duration {
        let q = q.clamp(1e-9, 1.0 - 1e-9);
        match *self {
            LatencyDist::Fixed(d) => d,
            LatencyDist::Uniform { low, high } => {
                low + Duration::from_secs_f64(high.saturating_sub(low).as_secs_f64() * q)
            }
            LatencyDist::LogNormal { median, .. } => {
                let z = standard_normal_quantile(q);
                Duration::from_secs_f64(median.as_secs_f64() * (self.sigma() * z).exp())
            }
        }
    }
}

/// Inverse CDF of the standard normal (Acklam's rational approximation, |error| < 1.2e-9).
fn standard_normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p_low = 0.02425;
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -standard_normal_quantile(1.0 - p)
    }
}

impl fmt::Display for LatencyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyDist::Fixed(d) => write!(f, "fixed:{}", fmt_duration(*d)),
            LatencyDist::Uniform { low, high } => {
                write!(f, "uniform:{}..{}", fmt_duration(*low), fmt_duration(*high))
            }
            LatencyDist::LogNormal { median, p99 } => {
                write!(
                    f,
                    "lognormal:{}:p99={}",
                    fmt_duration(*median),
                    fmt_duration(*p99)
                )
            }
        }
    }
}

impl FromStr for LatencyDist {
    type Err = LabError;

    /// Parses `5ms`, `fixed:5ms`, `uniform:5ms..20ms` or `lognormal:20ms:p99=200ms`.
    fn from_str(text: &str) -> Result<Self, LabError> {
        let bad = |why: &str| {
            LabError::InvalidValue {
            what: "latency distribution",
            value: text.to_string(),
            expected: format!(
                "{why}; expected `5ms`, `fixed:5ms`, `uniform:5ms..20ms` or `lognormal:20ms:p99=200ms`"
            ),
        }
        };
        let text_trim = text.trim();
        let (kind, rest) = match text_trim.split_once(':') {
            Some((kind, rest)) => (kind, rest),
            None => ("fixed", text_trim),
        };
        match kind {
            "fixed" => Ok(LatencyDist::Fixed(
                parse_duration(rest).map_err(|_| bad("bad duration"))?,
            )),
            "uniform" => {
                let (low, high) = rest
                    .split_once("..")
                    .ok_or_else(|| bad("uniform needs LOW..HIGH"))?;
                let low = parse_duration(low).map_err(|_| bad("bad low duration"))?;
                let high = parse_duration(high).map_err(|_| bad("bad high duration"))?;
                if high < low {
                    return Err(bad("uniform HIGH is below LOW"));
                }
                Ok(LatencyDist::Uniform { low, high })
            }
            "lognormal" => {
                let (median, p99) = rest
                    .split_once(":p99=")
                    .ok_or_else(|| bad("lognormal needs MEDIAN:p99=DUR"))?;
                let median = parse_duration(median).map_err(|_| bad("bad median duration"))?;
                let p99 = parse_duration(p99).map_err(|_| bad("bad p99 duration"))?;
                if median.is_zero() || p99 < median {
                    return Err(bad("lognormal needs 0 < MEDIAN <= P99"));
                }
                Ok(LatencyDist::LogNormal { median, p99 })
            }
            _ => Err(bad("unknown distribution kind")),
        }
    }
}

/// Parses a duration such as `250ms`, `10s`, `5m`, `0ms` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, LabError> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|_| LabError::InvalidValue {
        what: "duration",
        value: text.to_string(),
        expected: "a duration such as 250ms, 10s or 5m".to_string(),
    })
}

/// Formats a duration compactly: `10ms`, `1.5s`, `250us`.
pub fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0ms".to_string()
    } else if nanos % 1_000_000_000 == 0 {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// Parses a byte size: `4096`, `64KiB`, `1MiB`, `10KB`, `2MB`.
pub fn parse_size(text: &str) -> Result<u64, LabError> {
    let bad = || LabError::InvalidValue {
        what: "size",
        value: text.to_string(),
        expected: "a byte count such as 4096, 64KiB or 1MiB".to_string(),
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// A fix that removes one planted bottleneck (`--fix NAME[=VALUE]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// `pool=N`: resize the connection pool to N connections.
    Pool(usize),
    /// `async-email`: hand the email to an in-process queue served by workers.
    AsyncEmail,
    /// `payment-timeout=DUR`: time out the payment call and fall back to a deferred charge.
    PaymentTimeout(Duration),
    /// `join`: load a user's orders with one JOIN instead of N+1 queries.
    Join,
    /// `index`: create the `orders(user_id)` index.
    Index,
    /// `lock-free`: update inventory with atomics instead of under a shared lock.
    LockFree,
    /// `single-flight`: one cache fill per key; concurrent misses wait for it.
    SingleFlight,
    /// `no-stall`: no stop-the-world pauses.
    NoStall,
    /// `no-leak`: release the per-request allocation.
    NoLeak,
}

/// The spellings `--fix` accepts, for error messages and help.
pub const FIX_SYNTAX: &[&str] = &[
    "pool=N",
    "async-email",
    "payment-timeout=DUR",
    "join",
    "index",
    "lock-free",
    "single-flight",
    "no-stall",
    "no-leak",
];

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fix::Pool(n) => write!(f, "pool={n}"),
            Fix::AsyncEmail => f.write_str("async-email"),
            Fix::PaymentTimeout(d) => write!(f, "payment-timeout={}", fmt_duration(*d)),
            Fix::Join => f.write_str("join"),
            Fix::Index => f.write_str("index"),
            Fix::LockFree => f.write_str("lock-free"),
            Fix::SingleFlight => f.write_str("single-flight"),
            Fix::NoStall => f.write_str("no-stall"),
            Fix::NoLeak => f.write_str("no-leak"),
        }
    }
}

impl FromStr for Fix {
    type Err = LabError;

    fn from_str(text: &str) -> Result<Self, LabError> {
        let text = text.trim();
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let unknown = || LabError::UnknownFix {
            value: text.to_string(),
        };
        let need_value = |expected: &str| LabError::InvalidValue {
            what: "fix",
            value: text.to_string(),
            expected: expected.to_string(),
        };
        let no_value = |fix: Fix| match value {
            None => Ok(fix),
            Some(_) => Err(need_value("no `=VALUE` for this fix")),
        };
        match name {
            "pool" => {
                let n = value
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| need_value("pool=N with N from 1 to 1024"))?;
                Ok(Fix::Pool(n))
            }
            "payment-timeout" => {
                let d = value
                    .ok_or_else(|| need_value("payment-timeout=DUR, e.g. payment-timeout=100ms"))
                    .and_then(parse_duration)?;
                if d.is_zero() {
                    return Err(need_value("a payment timeout above zero"));
                }
                Ok(Fix::PaymentTimeout(d))
            }
            "async-email" => no_value(Fix::AsyncEmail),
            "join" => no_value(Fix::Join),
            "index" => no_value(Fix::Index),
            "lock-free" => no_value(Fix::LockFree),
            "single-flight" => no_value(Fix::SingleFlight),
            "no-stall" => no_value(Fix::NoStall),
            "no-leak" => no_value(Fix::NoLeak),
            _ => Err(unknown()),
        }
    }
}

/// Largest accepted connection pool.
pub const MAX_POOL_SIZE: usize = 1024;

/// How many rows the database is seeded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedSize {
    /// Customers (users) 1..=customers.
    pub customers: u32,
    /// Products 1..=products.
    pub products: u32,
    /// Historic orders, each with 1 to 3 items.
    pub orders: u32,
}

impl Default for SeedSize {
    fn default() -> Self {
        SeedSize {
            customers: 10_000,
            products: 1_000,
            orders: 200_000,
        }
    }
}

/// A stop-the-world pause schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Period: one pause starts every `every`.
    pub every: Duration,
    /// Length of each pause.
    pub pause: Duration,
}

/// Where spans go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// OTLP/HTTP endpoint (`http://127.0.0.1:4318` or a full `.../v1/traces` URL); JSON encoding.
    pub otlp_endpoint: Option<String>,
    /// Append OTLP/JSON lines (one `ExportTraceServiceRequest` per line) to this file.
    pub trace_file: Option<PathBuf>,
    /// Spans buffered between the request path and the exporter; more are dropped and counted.
    pub queue_capacity: usize,
}

impl TraceConfig {
    /// Whether any export is configured (spans are only recorded then).
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.is_some() || self.trace_file.is_some()
    }
}

/// Default bound of the span export queue.
pub const DEFAULT_TRACE_QUEUE: usize = 16_384;

/// The whole lab configuration: plain data, validated by [`LabConfig::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct LabConfig {
    /// Address of the checkout service (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// Database seed size.
    pub seed: SeedSize,
    /// Connections in the database pool (`--pool-size`).
    pub pool_size: usize,
    /// Extra time the `/checkout` order write keeps its connection (`--db-hold`).
    pub db_hold: Duration,
    /// Simulated network round trip added to every SQL statement batch (`--db-rtt`).
    pub db_rtt: Duration,
    /// Payment gateway latency (`--payment-latency`).
    pub payment_latency: LatencyDist,
    /// Payment call timeout with fallback to a deferred charge (`--fix payment-timeout=DUR`).
    pub payment_timeout: Option<Duration>,
    /// Email service latency (`--email-latency`).
    pub email_latency: LatencyDist,
    /// Send the email from a queue and worker pool instead of inline (`--fix async-email`).
    pub async_email: bool,
    /// Workers serving the email queue (`--email-workers`).
    pub email_workers: usize,
    /// Bound of the email queue; a full queue drops and counts (`--email-queue`).
    pub email_queue_capacity: usize,
    /// `/orders` loads each order's customer with its own query (`--n-plus-one`).
    pub n_plus_one: bool,
    /// No index on `orders(user_id)` (`--missing-index`).
    pub missing_index: bool,
    /// Time the inventory update holds the shared lock (`--lock-hold`).
    pub lock_hold: Duration,
    /// Update inventory with atomics, no lock (`--fix lock-free`).
    pub lock_free: bool,
    /// Time-to-live of product cache entries (`--cache-ttl`).
    pub cache_ttl: Duration,
    /// Every concurrent cache miss fills the cache itself (`--stampede`).
    pub stampede: bool,
    /// Stop-the-world pauses (`--stall-every`, `--stall-for`).
    pub stall: Option<Stall>,
    /// Bytes allocated per `/checkout` request and retained forever (`--leak-per-request`).
    pub leak_per_request: u64,
    /// The per-request allocation is released (`--fix no-leak`).
    pub leak_fixed: bool,
    /// Upper bound of leaked bytes, so a forgotten lab cannot take the machine down.
    pub leak_cap: u64,
    /// Fixes applied, in order, for display.
    pub fixes: Vec<Fix>,
    /// Trace export.
    pub trace: TraceConfig,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: SeedSize::default(),
            pool_size: 16,
            db_hold: Duration::ZERO,
            db_rtt: Duration::ZERO,
            payment_latency: LatencyDist::Fixed(Duration::from_millis(2)),
            payment_timeout: None,
            email_latency: LatencyDist::Fixed(Duration::from_millis(1)),
            async_email: false,
            email_workers: 128,
            email_queue_capacity: 10_000,
            n_plus_one: false,
            missing_index: false,
            lock_hold: Duration::ZERO,
            lock_free: false,
            cache_ttl: Duration::from_secs(10),
            stampede: false,
            stall: None,
            leak_per_request: 0,
            leak_fixed: false,
            leak_cap: 2 << 30,
            fixes: Vec::new(),
            trace: TraceConfig {
                queue_capacity: DEFAULT_TRACE_QUEUE,
                ..TraceConfig::default()
            },
        }
    }
}

/// Which resource bounds the analytic capacity of `POST /checkout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityBound {
    /// The database pool: `pool_size / (db_hold + db_rtt)`.
    Pool,
    /// The inventory lock: `1 / lock_hold`.
    Lock,
    /// Nothing planted bounds it analytically (CPU bound, not modelled).
    None,
}

impl CapacityBound {
    /// Stable lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityBound::Pool => "pool",
            CapacityBound::Lock => "lock",
            CapacityBound::None => "none",
        }
    }
}

/// The analytic capacity of `POST /checkout`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity {
    /// Requests per second; `None` when nothing planted bounds it.
    pub rps: Option<f64>,
    /// The binding resource.
    pub bound: CapacityBound,
    /// Fraction of time the service runs (1 - stall_for / stall_every).
    pub run_fraction: f64,
}

/// A scenario preset: one planted bottleneck, how to load it, and its fix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScenarioInfo {
    /// Stable name (`pool-exhaustion`, ...).
    pub name: &'static str,
    /// One sentence: what is planted.
    pub description: &'static str,
    /// HTTP method of the request that shows the bottleneck.
    pub method: &'static str,
    /// Path (with query) of that request; an empty-body POST /checkout buys a random cart.
    pub path: &'static str,
    /// The fix that removes it (`None` for `healthy`).
    pub fix: Option<Fix>,
}

/// Every scenario, in a stable order.
pub const SCENARIOS: &[ScenarioInfo] = &[
    ScenarioInfo {
        name: "healthy",
        description: "nothing planted",
        method: "POST",
        path: "/checkout",
        fix: None,
    },
    ScenarioInfo {
        name: "pool-exhaustion",
        description: "4 database connections each held 20ms per checkout: capacity 200 req/s",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::Pool(64)),
    },
    ScenarioInfo {
        name: "sync-email",
        description: "the confirmation email (median 60ms, P99 250ms) is sent inline",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::AsyncEmail),
    },
    ScenarioInfo {
        name: "payment-tail",
        description: "the payment gateway has a long tail (median 20ms, P99 1s) and no timeout",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::PaymentTimeout(Duration::from_millis(100))),
    },
    ScenarioInfo {
        name: "n-plus-one",
        description: "/orders loads each order's customer with its own query (2ms round trip each)",
        method: "GET",
        path: "/orders",
        fix: Some(Fix::Join),
    },
    ScenarioInfo {
        name: "missing-index",
        description: "/orders scans the whole orders table: no index on orders(user_id)",
        method: "GET",
        path: "/orders",
        fix: Some(Fix::Index),
    },
    ScenarioInfo {
        name: "lock-contention",
        description: "the inventory update holds one shared lock for 5ms: capacity 200 req/s",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::LockFree),
    },
    ScenarioInfo {
        name: "cache-stampede",
        description: "the bestseller cache expires every second and every miss recomputes it",
        method: "GET",
        path: "/products",
        fix: Some(Fix::SingleFlight),
    },
    ScenarioInfo {
        name: "stalls",
        description: "a 150ms stop-the-world pause every second",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::NoStall),
    },
    ScenarioInfo {
        name: "leak",
        description: "every checkout retains 64KiB forever",
        method: "POST",
        path: "/checkout",
        fix: Some(Fix::NoLeak),
    },
];

/// The recommended fix of scenario `name` (`None` for `healthy` or an unknown name).
pub fn recommended_fix(name: &str) -> Option<Fix> {
    LabConfig::scenario_info(name).and_then(|s| s.fix)
}

impl LabConfig {
    /// Names of all scenarios, `healthy` first.
    pub fn scenario_names() -> Vec<&'static str> {
        SCENARIOS.iter().map(|s| s.name).collect()
    }

    /// Description, request and fix of scenario `name`.
    pub fn scenario_info(name: &str) -> Option<&'static ScenarioInfo> {
        SCENARIOS.iter().find(|s| s.name == name)
    }

    /// The configuration of scenario `name` (defaults plus the planted knobs).
    pub fn scenario(name: &str) -> Option<LabConfig> {
        let mut c = LabConfig::default();
        match name {
            "healthy" => {}
            "pool-exhaustion" => {
                c.pool_size = 4;
                c.db_hold = Duration::from_millis(20);
            }
            "sync-email" => {
                c.email_latency = LatencyDist::LogNormal {
                    median: Duration::from_millis(60),
                    p99: Duration::from_millis(250),
                };
            }
            "payment-tail" => {
                c.payment_latency = LatencyDist::LogNormal {
                    median: Duration::from_millis(20),
                    p99: Duration::from_secs(1),
                };
            }
            "n-plus-one" => {
                c.n_plus_one = true;
                c.db_rtt = Duration::from_millis(2);
            }
            "missing-index" => c.missing_index = true,
            "lock-contention" => c.lock_hold = Duration::from_millis(5),
            "cache-stampede" => {
                c.cache_ttl = Duration::from_secs(1);
                c.stampede = true;
            }
            "stalls" => {
                c.stall = Some(Stall {
                    every: Duration::from_secs(1),
                    pause: Duration::from_millis(150),
                });
            }
            "leak" => c.leak_per_request = 64 << 10,
            _ => return None,
        }
        Some(c)
    }

    /// This configuration with `fix` applied.
    pub fn with_fix(mut self, fix: Fix) -> LabConfig {
        self.apply_fix(fix);
        self
    }

    /// Applies `fix` in place.
    pub fn apply_fix(&mut self, fix: Fix) {
        match fix {
            Fix::Pool(n) => self.pool_size = n,
            Fix::AsyncEmail => self.async_email = true,
            Fix::PaymentTimeout(d) => self.payment_timeout = Some(d),
            Fix::Join => self.n_plus_one = false,
            Fix::Index => self.missing_index = false,
            Fix::LockFree => self.lock_free = true,
            Fix::SingleFlight => self.stampede = false,
            Fix::NoStall => self.stall = None,
            Fix::NoLeak => self.leak_fixed = true,
        }
        self.fixes
            .retain(|f| std::mem::discriminant(f) != std::mem::discriminant(&fix));
        self.fixes.push(fix);
    }

    /// Checks ranges; [`crate::start`] calls it.
    pub fn validate(&self) -> Result<(), LabError> {
        let invalid = |what: &'static str, value: String, expected: &str| {
            Err(LabError::InvalidValue {
                what,
                value,
                expected: expected.to_string(),
            })
        };
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return invalid(
                "pool size",
                self.pool_size.to_string(),
                "expected 1 to 1024",
            );
        }
        if !(1..=4096).contains(&self.email_workers) {
            return invalid(
                "email workers",
                self.email_workers.to_string(),
                "expected 1 to 4096",
            );
        }
        if self.email_queue_capacity == 0 {
            return invalid("email queue", "0".into(), "expected at least 1");
        }
        if self.seed.customers == 0 || self.seed.products == 0 {
            return invalid(
                "seed size",
                format!("{:?}", self.seed),
                "expected at least one customer and one product",
            );
        }
        if let Some(stall) = self.stall {
            if stall.every.is_zero() || stall.pause >= stall.every {
                return invalid(
                    "stall schedule",
                    format!(
                        "every {} for {}",
                        fmt_duration(stall.every),
                        fmt_duration(stall.pause)
                    ),
                    "expected 0 < stall-for < stall-every",
                );
            }
        }
        if self.trace.enabled() && self.trace.queue_capacity == 0 {
            return invalid("trace queue", "0".into(), "expected at least 1");
        }
        if let Some(url) = &self.trace.otlp_endpoint {
            if !url.starts_with("http://") {
                return invalid(
                    "OTLP endpoint",
                    url.clone(),
                    "expected an http:// URL such as http://127.0.0.1:4318",
                );
            }
        }
        Ok(())
    }

    /// The analytic capacity of `POST /checkout` (see docs/lab.md).
    pub fn capacity(&self) -> Capacity {
        let run_fraction = match self.stall {
            Some(s) if !s.every.is_zero() => {
                (1.0 - s.pause.as_secs_f64() / s.every.as_secs_f64()).max(0.0)
            }
            _ => 1.0,
        };
        let step = (self.db_hold + self.db_rtt).as_secs_f64();
        let pool = (step > 0.0).then(|| self.pool_size as f64 / step);
        let lock_secs = self.lock_hold.as_secs_f64();
        let lock = (!self.lock_free && lock_secs > 0.0).then(|| 1.0 / lock_secs);
        let (rps, bound) = match (pool, lock) {
            (Some(p), Some(l)) if l < p => (Some(l), CapacityBound::Lock),
            (Some(p), _) => (Some(p), CapacityBound::Pool),
            (None, Some(l)) => (Some(l), CapacityBound::Lock),
            (None, None) => (None, CapacityBound::None),
        };
        Capacity {
            rps: rps.map(|r| r * run_fraction),
            bound,
            run_fraction,
        }
    }

    /// Shorthand for `self.capacity().rps`.
    pub fn capacity_rps(&self) -> Option<f64> {
        self.capacity().rps
    }

    /// The effective knobs and capacity as JSON (what `GET /lab/config` returns).
    pub fn to_json(&self) -> serde_json::Value {
        let cap = self.capacity();
        let d = |d: Duration| serde_json::Value::String(fmt_duration(d));
        serde_json::json!({
            "listen": self.listen.to_string(),
            "seed": {
                "customers": self.seed.customers,
                "products": self.seed.products,
                "orders": self.seed.orders,
            },
            "pool_size": self.pool_size,
            "db_hold": d(self.db_hold),
            "db_rtt": d(self.db_rtt),
            "payment_latency": self.payment_latency.to_string(),
            "payment_timeout": self.payment_timeout.map(d),
            "email_latency": self.email_latency.to_string(),
            "async_email": self.async_email,
            "email_workers": self.email_workers,
            "email_queue_capacity": self.email_queue_capacity,
            "n_plus_one": self.n_plus_one,
            "missing_index": self.missing_index,
            "lock_hold": d(self.lock_hold),
            "lock_free": self.lock_free,
            "cache_ttl": d(self.cache_ttl),
            "stampede": self.stampede,
            "stall_every": self.stall.map(|s| d(s.every)),
            "stall_for": self.stall.map(|s| d(s.pause)),
            "leak_per_request": self.leak_per_request,
            "leak_fixed": self.leak_fixed,
            "fixes": self.fixes.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "tracing": self.trace.enabled(),
            "capacity_rps": cap.rps,
            "capacity_bound": cap.bound.as_str(),
            "run_fraction": cap.run_fraction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distributions() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("5ms", LatencyDist::Fixed(ms(5))),
            ("fixed:0ms", LatencyDist::Fixed(ms(0))),
            (
                "uniform:5ms..20ms",
                LatencyDist::Uniform {
                    low: ms(5),
                    high: ms(20),
                },
            ),
            (
                "lognormal:20ms:p99=200ms",
                LatencyDist::LogNormal {
                    median: ms(20),
                    p99: ms(200),
                },
            ),
        ] {
            let got: LatencyDist = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<LatencyDist>().unwrap(), want);
        }
        for bad in [
            "",
            "fast",
            "uniform:5ms",
            "uniform:20ms..5ms",
            "lognormal:20ms",
            "weird:1ms",
        ] {
            assert!(bad.parse::<LatencyDist>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lognormal_quantiles_match_parameters() {
        let d = LatencyDist::LogNormal {
            median: Duration::from_millis(20),
            p99: Duration::from_millis(200),
        };
        let p50 = d.quantile(0.5).as_secs_f64();
        let p99 = d.quantile(0.99).as_secs_f64();
        assert!((p50 - 0.020).abs() < 1e-6, "{p50}");
        assert!((p99 - 0.200).abs() < 1e-4, "{p99}");
        let mut samples: Vec<f64> = (0..20_000).map(|_| d.sample().as_secs_f64()).collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[10_000];
        assert!((median - 0.020).abs() < 0.002, "{median}");
    }

    #[test]
    fn parses_fixes() {
        assert_eq!("pool=8".parse::<Fix>().unwrap(), Fix::Pool(8));
        assert_eq!(
            "payment-timeout=100ms".parse::<Fix>().unwrap(),
            Fix::PaymentTimeout(Duration::from_millis(100))
        );
        for f in FIX_SYNTAX {
            let text = f.replace("=N", "=3").replace("=DUR", "=50ms");
            let fix: Fix = text.parse().unwrap();
            assert_eq!(fix.to_string(), text);
        }
        assert!(matches!(
            "bogus".parse::<Fix>(),
            Err(LabError::UnknownFix { .. })
        ));
        assert!("pool=0".parse::<Fix>().is_err());
        assert!("join=1".parse::<Fix>().is_err());
    }

    #[test]
    fn scenarios_and_fixes() {
        for name in LabConfig::scenario_names() {
            let c = LabConfig::scenario(name).unwrap();
            c.validate().unwrap();
            if let Some(fix) = recommended_fix(name) {
                let fixed = c.clone().with_fix(fix);
                assert_ne!(fixed, c, "{name}");
                fixed.validate().unwrap();
            }
        }
        assert!(LabConfig::scenario("nope").is_none());
        let pool = LabConfig::scenario("pool-exhaustion").unwrap();
        assert_eq!(pool.capacity_rps(), Some(200.0));
        assert_eq!(pool.capacity().bound, CapacityBound::Pool);
        let lock = LabConfig::scenario("lock-contention").unwrap();
        assert_eq!(lock.capacity_rps(), Some(200.0));
        assert_eq!(lock.clone().with_fix(Fix::LockFree).capacity_rps(), None);
        let mut stalls = pool.clone();
        stalls.stall = Some(Stall {
            every: Duration::from_secs(1),
            pause: Duration::from_millis(250),
        });
        assert_eq!(stalls.capacity_rps(), Some(150.0));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("lots").is_err());
    }
}
