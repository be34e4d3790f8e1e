//! Shards: `--shard I/N` and `--start-at` parsing, the scenario fingerprint
//! that tells `merge` which runs belong together, and `shard.json`, the
//! identity card a shard writes into its run directory before it starts (so
//! even a killed shard's files can be merged).

use std::path::Path;
use std::time::{Duration, SystemTime};

use chokepoint_engine::{LoadModel, RunConfig};
use serde::{Deserialize, Serialize};

/// A start time further in the past than this is refused (a stale manifest,
/// a clock that is off); closer ones start at once and record the skew.
pub const MAX_START_AT_PAST: Duration = Duration::from_secs(10);

/// The file a shard writes before its first request.
pub const SHARD_FILE: &str = "shard.json";

/// Parses `I/N` (0-based index of N generators).
pub fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!("--shard `{text}`: expected I/N with 0 <= I < N, e.g. 0/4 for the first of four")
    };
    let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
    let i: u32 = i.trim().parse().map_err(|_| bad())?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || i >= n {
        return Err(bad());
    }
    if n > 10_000 {
        return Err(format!("--shard `{text}`: at most 10000 shards"));
    }
    Ok((i, n))
}

/// Parses an RFC 3339 time: `2025-06-01T12:00:00Z`, with fractional seconds
/// and a `+hh:mm` / `-hh:mm` offset allowed.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    let bad = |why: &str| {
        format!("--start-at `{text}`: {why}; expected RFC 3339 such as 2025-06-01T12:00:00Z")
    };
    let (base, offset_s): (String, i64) = if let Some(stripped) = t.strip_suffix(['Z', 'z']) {
        (stripped.to_string(), 0)
    } else if t.len() > 6 && matches!(&t[t.len() - 6..t.len() - 5], "+" | "-") {
        let (base, offset) = t.split_at(t.len() - 6);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..]
            .split_once(':')
            .ok_or_else(|| bad("bad UTC offset"))?;
        let h: i64 = h.parse().map_err(|_| bad("bad UTC offset"))?;
        let m: i64 = m.parse().map_err(|_| bad("bad UTC offset"))?;
        if h > 23 || m > 59 {
            return Err(bad("bad UTC offset"));
        }
        (base.to_string(), sign * (h * 3600 + m * 60))
    } else {
        return Err(bad("no time zone (end with Z or an offset like +02:00)"));
    };
    if !base.contains(['T', 't']) {
        return Err(bad("no time of day"));
    }
    let local =
        humantime::parse_rfc3339_weak(&base.replace('t', "T")).map_err(|e| bad(&e.to_string()))?;
    // `local` read the wall-clock digits as UTC; the offset says how far they are ahead of UTC.
    let shift = Duration::from_secs(offset_s.unsigned_abs());
    Ok(if offset_s >= 0 {
        local - shift
    } else {
        local + shift
    })
}

/// Checks a `--start-at` time against the clock: far in the past is an error.
pub fn check_start_at(at: SystemTime, now: SystemTime, given: &str) -> Result<(), String> {
    if let Ok(late) = now.duration_since(at) {
        if late > MAX_START_AT_PAST {
            return Err(format!(
                "--start-at {given} was {} ago; give a time in the future (all shards wait for it)",
                humantime::format_duration(Duration::from_secs(late.as_secs()))
            ));
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable hash (the standard library's is not stable across releases).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds bytes followed by a separator (so `ab`,`c` differs from `a`,`bc`).
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// What makes runs comparable as shards of one test: the whole load (not a
/// shard's part), the requests and the limits. Shard index, seed and
/// secret header values are left out (secrets must not leak through a hash
/// of a guessable value; shards differing only in a token still belong together).
pub struct FingerprintInput<'a> {
    /// The engine configuration of the whole load (before splitting).
    pub config: &'a RunConfig,
    /// Stages, as given (their text).
    pub stages: &'a str,
    /// Number of shards.
    pub shards: u32,
}

/// `fnv1a64:` and 16 hex digits.
pub fn fingerprint(input: &FingerprintInput<'_>) -> String {
    let c = input.config;
    let mut h = Fnv::default();
    h.field(c.target.origin().as_bytes())
        .field(c.target.base_path.as_bytes());
    for r in &c.requests {
        h.field(r.name.as_bytes())
            .field(r.method.as_bytes())
            .field(r.path.as_bytes())
            .field(&r.weight.to_le_bytes())
            .field(&Fnv::default().field(&r.body).finish().to_le_bytes());
        let mut headers: Vec<_> = r.headers.iter().collect();
        headers.sort();
        for (k, v) in headers {
            h.field(k.to_ascii_lowercase().as_bytes());
            if !chokepoint_report::redact::is_secret_header(k) {
                h.field(v.as_bytes());
            }
        }
    }
    match c.load {
        LoadModel::Open { rate, arrival, .. } => {
            h.field(b"open")
                .field(&rate.to_le_bytes())
                .field(format!("{arrival:?}").as_bytes());
        }
        LoadModel::Closed { concurrency } => {
            h.field(b"closed")
                .field(&(concurrency as u64).to_le_bytes());
        }
    }
    h.field(input.stages.as_bytes())
        .field(&c.limits.warmup_ns.to_le_bytes())
        .field(&c.limits.duration_ns.unwrap_or(0).to_le_bytes())
        .field(&c.limits.max_requests.unwrap_or(0).to_le_bytes())
        .field(&(c.timeout.as_nanos() as u64).to_le_bytes())
        .field(&[u8::from(c.http2), u8::from(c.keepalive)])
        .field(&input.shards.to_le_bytes());
    format!("fnv1a64:{:016x}", h.finish())
}

/// `shard.json`: who this shard is, written before the first request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardCard {
    /// Always `chokepoint.shard.v1`.
    pub schema: String,
    /// 0-based index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
    /// The scenario fingerprint shared by all shards of one test.
    pub fingerprint: String,
    /// The agreed start time (RFC 3339), when given.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Target (redacted).
    pub target: String,
    /// `open` or `closed`.
    pub model: String,
    /// This shard's offered rate (open model).
    #[serde(default)]
    pub rate_target: Option<f64>,
    /// This shard's connections (closed model).
    #[serde(default)]
    pub concurrency: Option<u64>,
}

/// Schema of `shard.json`.
pub const SHARD_SCHEMA: &str = "chokepoint.shard.v1";

/// Writes `shard.json` into `dir` (created if needed).
pub fn write_card(dir: &Path, card: &ShardCard) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
    let path = dir.join(SHARD_FILE);
    let json = serde_json::to_string_pretty(card).expect("shard cards serialize");
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads `shard.json` from `dir`; `Ok(None)` when there is none.
pub fn read_card(dir: &Path) -> Result<Option<ShardCard>, String> {
    let path = dir.join(SHARD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let card: ShardCard = serde_json::from_str(&text)
        .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    if card.schema != SHARD_SCHEMA {
        return Err(format!(
            "{}: field `schema` is `{}`, expected `{SHARD_SCHEMA}`",
            path.display(),
            card.schema
        ));
    }
    Ok(Some(card))
}

/// Before a run: notes on stderr, `shard.json` in the run directory, and a
/// line saying how long the shard waits for `--start-at`.
pub fn before_run(
    plan: &crate::args::Plan,
    scale: &crate::args::ScaleInfo,
    out: Option<&Path>,
    quiet: bool,
) -> Result<(), crate::Failure> {
    for note in &scale.notes {
        eprintln!("note: {note}");
    }
    if let (Some((index, count)), Some(dir)) = (scale.shard, out) {
        let (model, rate_target, concurrency) = match plan.config.load {
            LoadModel::Open { rate, .. } => ("open", Some(rate), None),
            LoadModel::Closed { concurrency } => ("closed", None, Some(concurrency as u64)),
        };
        write_card(
            dir,
            &ShardCard {
                schema: SHARD_SCHEMA.into(),
                index,
                count,
                fingerprint: scale.fingerprint.clone(),
                start_at: scale.start_at.as_ref().map(|(text, _)| text.clone()),
                target: chokepoint_report::redact::redact_url(&plan.target_display),
                model: model.into(),
                rate_target,
                concurrency,
            },
        )
        .map_err(crate::Failure::Usage)?;
    }
    if let Some((text, at)) = &scale.start_at {
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            if !quiet {
                eprintln!(
                    "waiting {} for --start-at {text}",
                    humantime::format_duration(Duration::from_secs(wait.as_secs()))
                );
            }
        }
    }
    Ok(())
}

/// After a run: shard, fingerprint and stages into the summary (rewritten in
/// the run directory), and `totals.hlog` beside it.
pub fn after_run(
    done: &mut crate::run_cmd::Executed,
    plan: &crate::args::Plan,
    scale: &crate::args::ScaleInfo,
    out: Option<&Path>,
) -> Result<(), crate::Failure> {
    let s = &mut done.summary;
    s.scenario_fingerprint = Some(scale.fingerprint.clone());
    s.shard = scale.shard.map(|(index, count)| {
        let start_skew_ms = scale.start_at.as_ref().map(|(_, at)| {
            // The schedule started `warmup` before the measured window.
            let schedule_start = done
                .result
                .started_at
                .checked_sub(done.result.warmup_duration)
                .unwrap_or(done.result.started_at);
            match schedule_start.duration_since(*at) {
                Ok(late) => late.as_secs_f64() * 1000.0,
                Err(early) => -early.duration().as_secs_f64() * 1000.0,
            }
        });
        chokepoint_report::ShardSummary {
            index,
            count,
            start_at: scale.start_at.as_ref().map(|(text, _)| text.clone()),
            start_skew_ms,
        }
    });
    s.stages = scale
        .stages
        .iter()
        .map(
            |&(start_s, duration_s, from, to)| chokepoint_report::StageSummary {
                start_s,
                duration_s,
                from,
                to,
            },
        )
        .collect();
    done.json = serde_json::to_string_pretty(&done.summary).expect("summaries serialize");
    if let Some(dir) = out {
        let path = dir.join(crate::output::SUMMARY_FILE);
        std::fs::write(&path, &done.json)
            .map_err(|e| crate::Failure::Usage(format!("--out {}: {e}", path.display())))?;
        crate::totals::write(dir, plan, &done.result).map_err(crate::Failure::Usage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs() {
        assert_eq!(parse_shard("0/4"), Ok((0, 4)));
        assert_eq!(parse_shard(" 3 / 4 "), Ok((3, 4)));
        for bad in ["4/4", "1/0", "x/4", "2", "-1/4", "1/4/5"] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.contains("expected I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn rfc3339_with_offsets() {
        let z = parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2025-06-01T14:00:00+02:00").unwrap(), z);
        assert_eq!(parse_rfc3339("2025-06-01T07:30:00-04:30").unwrap(), z);
        let frac = parse_rfc3339("2025-06-01T12:00:00.250Z").unwrap();
        assert_eq!(frac.duration_since(z).unwrap(), Duration::from_millis(250));
        for bad in [
            "2025-06-01T12:00:00",
            "2025-06-01Z",
            "tomorrow",
            "2025-13-01T00:00:00Z",
        ] {
            assert!(
                parse_rfc3339(bad).unwrap_err().contains("RFC 3339"),
                "{bad}"
            );
        }
    }

    #[test]
    fn start_at_far_in_the_past_is_refused() {
        let now = SystemTime::now();
        assert!(check_start_at(now - Duration::from_secs(5), now, "x").is_ok());
        assert!(check_start_at(now + Duration::from_secs(500), now, "x").is_ok());
        let e = check_start_at(now - Duration::from_secs(3600), now, "T").unwrap_err();
        assert!(e.contains("1h ago"), "{e}");
    }

    #[test]
    fn fnv_is_stable() {
        // Known FNV-1a 64 value of the empty input.
        assert_eq!(Fnv::default().finish(), 0xcbf2_9ce4_8422_2325);
        let a = Fnv::default().field(b"ab").field(b"c").finish();
        let b = Fnv::default().field(b"a").field(b"bc").finish();
        assert_ne!(a, b);
    }
}
