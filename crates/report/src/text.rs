//! The text report of a run: the headline numbers a user checks first.

use std::fmt::Write as _;

use crate::summary::{LatencyMs, RunSummary};

/// Formats milliseconds with a unit that keeps three significant digits.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// Formats a count with thousands separators.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Minimum samples beyond a percentile before it is shown without a warning.
const MIN_TAIL_SAMPLES: f64 = 10.0;

/// Renders the full text report.
pub fn render_run(s: &RunSummary) -> String {
    let mut out = String::new();
    let model = match (s.rate_target, s.concurrency) {
        (Some(rate), _) => format!(
            "open model, {} req/s offered ({})",
            trim_float(rate),
            s.arrival.as_deref().unwrap_or("uniform")
        ),
        (None, Some(c)) => format!("closed model, {c} connections"),
        _ => s.model.clone(),
    };
    let _ = writeln!(out, "chokepoint run {}", s.target);
    let mut window = format!("{model} · {:.1} s measured", s.duration_s);
    if let Some(w) = &s.warmup {
        let _ = write!(
            window,
            " after {:.1} s warmup ({} requests excluded)",
            w.duration_s,
            fmt_count(w.requests)
        );
    }
    if s.http2 {
        window.push_str(" · HTTP/2");
    }
    if !s.io.is_empty() {
        let polled = match s.io_polled_share {
            Some(share) if share > 0.0 => format!(" (polled receives {:.0}%)", share * 100.0),
            _ => String::new(),
        };
        let _ = write!(
            window,
            " · {}{polled}, {} thread{}",
            s.io,
            s.threads,
            if s.threads == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(out, "{window}");
    if s.tls_verification_disabled {
        let _ = writeln!(
            out,
            "warning: TLS certificate verification was OFF (--insecure)"
        );
    }
    if s.interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED: partial results, everything measured until the stop"
        );
    }
    let _ = writeln!(out);

    let errors = s.error_count();
    let _ = writeln!(
        out,
        "  Requests    {} completed · {} ok · {} errors ({:.2}%) · {} req/s",
        fmt_count(s.requests),
        fmt_count(s.ok),
        fmt_count(errors),
        100.0 * s.error_rate,
        trim_float((s.throughput_rps * 10.0).round() / 10.0)
    );
    if errors > 0 {
        let kinds: Vec<String> = s
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {}", fmt_count(*n)))
            .collect();
        let _ = writeln!(out, "  Errors      {}", kinds.join(" · "));
    }
    if s.dropped > 0 {
        let _ = writeln!(
            out,
            "  Dropped     {} arrivals never sent: all {} connections were busy until the window ended (at most {} allowed; fewer while the target's fastest responses show that more would only queue)",
            fmt_count(s.dropped),
            s.peak_connections,
            s.max_connections.unwrap_or(0)
        );
    }
    if let Some(rate) = s.rate_target {
        if s.duration_s > 0.0 && s.throughput_rps < 0.99 * rate && !s.interrupted {
            let _ = writeln!(
                out,
                "  Note        achieved {:.1}% of the offered rate: the target (or its connections) could not keep up",
                100.0 * s.throughput_rps / rate
            );
        }
    }
    let _ = writeln!(out);

    let basis = if s.rate_target.is_some() {
        "latency is measured from the intended send time (no coordinated omission)"
    } else {
        "closed model: latency equals service time"
    };
    let _ = writeln!(out, "  Latency     {basis}");
    let _ = writeln!(
        out,
        "              {:>10}  {:>10}  {:>12}",
        "latency", "service", "samples ≥ pct"
    );
    let l = &s.latency_ms;
    let v = &s.service_time_ms;
    let rows: [(&str, f64, f64, f64); 5] = [
        ("p50", l.p50, v.p50, 0.5),
        ("p90", l.p90, v.p90, 0.1),
        ("p95", l.p95, v.p95, 0.05),
        ("p99", l.p99, v.p99, 0.01),
        ("p99.9", l.p99_9, v.p99_9, 0.001),
    ];
    for (name, lat, svc, tail) in rows {
        let beyond = l.count as f64 * tail;
        let warn = if l.count > 0 && beyond < MIN_TAIL_SAMPLES {
            "  too few samples to trust"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    {name:<8}  {:>10}  {:>10}  {:>12}{warn}",
            fmt_ms(lat),
            fmt_ms(svc),
            fmt_count(beyond.floor() as u64)
        );
    }
    let _ = writeln!(
        out,
        "    {:<8}  {:>10}  {:>10}",
        "max",
        fmt_ms(l.max),
        fmt_ms(v.max)
    );
    let _ = writeln!(
        out,
        "    {:<8}  {:>10}  {:>10}   ± {} sd",
        "mean",
        fmt_ms(l.mean),
        fmt_ms(v.mean),
        fmt_ms(l.stdev)
    );
    let _ = writeln!(out, "    samples   {}", fmt_count(l.count));
    let _ = writeln!(out);

    let phase = |name: &str| s.phases_ms.get(name).copied().unwrap_or_default();
    let phase_text = |p: LatencyMs| {
        if p.count == 0 {
            "-".to_string()
        } else {
            format!("p50 {} p99 {}", fmt_ms(p.p50), fmt_ms(p.p99))
        }
    };
    let connect = phase("connect");
    let _ = writeln!(
        out,
        "  Phases      connect {} ({} new connections) · tls {}",
        phase_text(connect),
        fmt_count(connect.count),
        phase_text(phase("tls"))
    );
    let _ = writeln!(
        out,
        "              first byte {} · receive {}",
        phase_text(phase("ttfb")),
        phase_text(phase("receive"))
    );
    let _ = writeln!(
        out,
        "  In flight   {:.2} mean at the target (Little's law: {} req/s × {} service) · peak {} connections",
        s.mean_in_flight,
        trim_float((s.throughput_rps * 10.0).round() / 10.0),
        fmt_ms(s.service_time_ms.mean),
        s.peak_connections
    );
    if s.rate_target.is_some() && s.schedule_lag_ms.count > 0 {
        let _ = writeln!(
            out,
            "  Send lag    p50 {} · p99 {} (actual send minus intended: generator lag and waiting for a connection)",
            fmt_ms(s.schedule_lag_ms.p50),
            fmt_ms(s.schedule_lag_ms.p99)
        );
    }
    if s.by_request.len() > 1 {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<20} {:>10} {:>10} {:>8} {:>10} {:>10}",
            "Request", "completed", "ok", "errors", "p50", "p99"
        );
        for (name, r) in &s.by_request {
            let errors: u64 = r.errors.values().sum();
            let _ = writeln!(
                out,
                "  {:<20} {:>10} {:>10} {:>8} {:>10} {:>10}",
                truncate(name, 20),
                fmt_count(r.requests),
                fmt_count(r.ok),
                fmt_count(errors),
                fmt_ms(r.latency_ms.p50),
                fmt_ms(r.latency_ms.p99)
            );
        }
    }
    if !s.slow_trace_ids.is_empty() {
        let _ = writeln!(out);
        let shown: Vec<&str> = s
            .slow_trace_ids
            .iter()
            .take(3)
            .map(String::as_str)
            .collect();
        let _ = writeln!(
            out,
            "  Slow traces {} kept (slowest first): {}",
            s.slow_trace_ids.len(),
            shown.join(", ")
        );
    }
    out
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_three_significant_digits() {
        assert_eq!(fmt_ms(0.123), "123 µs");
        assert_eq!(fmt_ms(1.234), "1.23 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(123.4), "123 ms");
        assert_eq!(fmt_ms(1234.0), "1.23 s");
        assert_eq!(fmt_count(1234567), "1,234,567");
    }

    #[test]
    fn report_warns_about_thin_tails_and_interruptions() {
        let s = RunSummary {
            target: "http://x/".into(),
            interrupted: true,
            concurrency: Some(2),
            latency_ms: LatencyMs {
                count: 500,
                ..LatencyMs::default()
            },
            ..RunSummary::default()
        };
        let text = render_run(&s);
        assert!(text.contains("INTERRUPTED"));
        assert!(text.contains("closed model, 2 connections"));
        let p999 = text
            .lines()
            .find(|l| l.trim_start().starts_with("p99.9"))
            .unwrap();
        assert!(p999.contains("too few samples"), "{p999}");
        let p50 = text
            .lines()
            .find(|l| l.trim_start().starts_with("p50"))
            .unwrap();
        assert!(!p50.contains("too few"), "{p50}");
    }
}
