//! The self-contained HTML report (`report.html`): one file, no external
//! assets (inline CSS and SVG, no script), readable offline. It renders from
//! the output shapes only (`RunSummary`, `timeseries.csv` rows, the stress,
//! soak and compare reports, a trace analysis' tail rows, the diagnosis), so
//! a report can be made again from files on disk.
//!
//! Every piece of target-provided text (URLs, request names, span and service
//! names, error kinds, notes, paths) goes through [`esc`]: a hostile name can
//! never inject markup.

use std::fmt::Write as _;

use chokepoint_diagnose::{Diagnosis, Horizon, Level};

use crate::compare::CompareReport;
use crate::html_svg::{BarChart, BarGroup, LineChart, Marker, Series, XScale, PALETTE};
use crate::markup::xml_escape;
use crate::soak::SoakReport;
use crate::stress::StressReport;
use crate::timeseries::Row;
use crate::RunSummary;

/// Escapes text for HTML (character data and attribute values).
pub fn esc(text: &str) -> String {
    xml_escape(text)
}

/// One run to draw.
#[derive(Debug, Clone)]
pub struct RunPanel<'a> {
    /// `baseline`, `after the fix`, ...
    pub label: String,
    /// Its summary.
    pub summary: &'a RunSummary,
    /// Its `timeseries.csv` rows.
    pub seconds: Vec<Row>,
    /// The percentile spectrum from its total histogram: (quantile, ms).
    pub spectrum: Vec<(f64, f64)>,
}

/// One operation of a trace analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Waiting span.
    pub wait: bool,
    /// Mean critical-path ms per trace, P50 group.
    pub ms_p50: f64,
    /// The same, tail group.
    pub ms_p99: f64,
}

/// A trace analysis to draw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TracePanel {
    /// Traces analysed.
    pub traces: u64,
    /// Mean duration, P50 group (ms).
    pub mean_ms_p50: f64,
    /// Mean duration, tail group (ms).
    pub mean_ms_tail: f64,
    /// Traces in the tail group.
    pub n_tail: u64,
    /// Operations, largest tail contribution first.
    pub rows: Vec<TraceRow>,
    /// Detector sentences.
    pub detectors: Vec<String>,
}

/// One step of a story (the demo's walk through the method).
#[derive(Debug, Clone, PartialEq)]
pub struct StoryStep {
    /// `1 · Baseline`.
    pub title: String,
    /// What it found, one line each.
    pub lines: Vec<String>,
    /// Passed / failed, when the step is a check.
    pub ok: Option<bool>,
}

/// Everything a report may show; absent parts are left out.
#[derive(Debug, Clone, Default)]
pub struct Report<'a> {
    /// Page title.
    pub title: String,
    /// One line under it (the target, the command).
    pub subtitle: String,
    /// Headline figures: (label, value, note). Empty: taken from the first run.
    pub tiles: Vec<(String, String, String)>,
    /// A verdict banner: (text, good?).
    pub banner: Option<(String, bool)>,
    /// The demo's steps.
    pub story: Vec<StoryStep>,
    /// Runs (two: drawn as before/after overlays).
    pub runs: Vec<RunPanel<'a>>,
    /// A comparison.
    pub compare: Option<&'a CompareReport>,
    /// A capacity search or sweep.
    pub stress: Option<&'a StressReport>,
    /// A soak.
    pub soak: Option<&'a SoakReport>,
    /// A trace analysis.
    pub traces: Option<TracePanel>,
    /// A diagnosis.
    pub diagnosis: Option<&'a Diagnosis>,
    /// Footer text (tool and version).
    pub footer: String,
}

const CSS: &str = r#"
:root{--ink:#1d2330;--muted:#5b6577;--line:#e3e7ee;--bg:#f5f7fa;--card:#fff;--accent:#0072B2;--good:#0a7d4f;--bad:#b42318;--warn:#b54708}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:linear-gradient(135deg,#0b1f3a,#17406d);color:#fff;padding:28px 40px 22px}
header h1{margin:0;font-size:26px;letter-spacing:.2px}header .sub{color:#c9d6ea;margin-top:4px;word-break:break-all}
.brand{font-size:12px;letter-spacing:2px;text-transform:uppercase;color:#8fb3e0;margin-bottom:6px}
.tiles{display:flex;gap:14px;flex-wrap:wrap;margin-top:18px}
.tile{background:rgba(255,255,255,.09);border:1px solid rgba(255,255,255,.16);border-radius:10px;padding:10px 16px;min-width:130px}
.tile .v{font-size:24px;font-weight:650}.tile .l{font-size:12px;color:#c9d6ea;text-transform:uppercase;letter-spacing:1px}.tile .n{font-size:12px;color:#9fb4d1}
main{max-width:1180px;margin:0 auto;padding:22px 28px 40px}
.banner{border-radius:10px;padding:14px 18px;margin:0 0 18px;font-weight:600;font-size:16px}
.banner.good{background:#e7f6ee;color:var(--good);border:1px solid #b7e4c9}.banner.bad{background:#fdecea;color:var(--bad);border:1px solid #f5c2bd}
section>svg.chart{max-width:820px;display:block}section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin-bottom:18px}
section h2{margin:0 0 12px;font-size:18px}section h3{margin:14px 0 6px;font-size:15px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px}
svg.chart{width:100%;height:auto;background:#fff}
svg .ct{font-size:13px;font-weight:600;fill:#1d2330}svg .tick{font-size:10.5px;fill:#5b6577}svg .al{font-size:11.5px;fill:#333}
svg .grid{stroke:#edf0f4}svg .axis{stroke:#9aa4b2}svg .legend{font-size:11px;fill:#333}svg .marker{stroke:#b54708;stroke-dasharray:4 3}
svg .mlabel{font-size:11px;fill:#b54708}svg .blab{font-size:11.5px;fill:#333}svg .blab.hl{fill:#b42318;font-weight:600}svg .bval{font-size:10px;fill:#5b6577}svg .empty{fill:#999}
table{border-collapse:collapse;width:100%;font-size:13.5px}th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{color:var(--muted);font-weight:600;background:#fafbfc}td:first-child,th:first-child{text-align:left}
.num{font-variant-numeric:tabular-nums}.good{color:var(--good)}.bad{color:var(--bad)}.muted{color:var(--muted)}
.story{counter-reset:s;list-style:none;padding:0;margin:0}.story li{padding:8px 0 8px 0;border-bottom:1px dashed var(--line)}
.story .t{font-weight:650;margin-bottom:3px}.story code{font-size:12px;color:#334}.story .ok{color:var(--good)}.story .no{color:var(--bad)}.story .ln{color:#39424f;margin-left:2px}
.constraint{border:1px solid var(--line);border-left:5px solid var(--accent);border-radius:10px;padding:12px 16px;margin:10px 0}
.constraint.first{border-left-color:#b42318;background:#fffafa}.rank{display:inline-block;background:#1d2330;color:#fff;border-radius:999px;padding:0 9px;font-size:12px;margin-right:8px}
.cls{font-size:12px;text-transform:uppercase;letter-spacing:1px;color:var(--muted)}.ttl{font-weight:650;margin:2px 0 6px}
.conf{font-size:12px;border-radius:6px;padding:1px 7px;margin-left:6px}.conf.high{background:#e7f6ee;color:var(--good)}.conf.medium{background:#fff4e5;color:var(--warn)}.conf.low{background:#f2f4f7;color:var(--muted)}
ul.ev{margin:4px 0 8px 18px;padding:0}ul.ev li{margin:2px 0}.src{font-size:11px;background:#eef2f7;border-radius:4px;padding:0 5px;color:#334;margin-right:4px}
ol.fix{margin:6px 0 4px 20px;padding:0}ol.fix li{margin:4px 0}.ftype{font-weight:650}.hz{font-size:11px;color:var(--muted);margin-left:4px}.exp{color:#0a5a8a;font-size:13px}
.pred{font-size:13.5px;color:#2c3440;margin:2px 0}.next li{margin:6px 0}code{background:#f2f4f7;border-radius:4px;padding:1px 5px;font-size:12.5px;word-break:break-all}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px}
"#;

fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "–".into()
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn tiles_for(s: &RunSummary) -> Vec<(String, String, String)> {
    let l = &s.latency_ms;
    let beyond = |q: f64| ((1.0 - q) * l.count as f64).floor() as u64;
    vec![
        ("P50".into(), fmt_ms(l.p50), format!("{} samples", l.count)),
        (
            "P99".into(),
            fmt_ms(l.p99),
            format!("{} beyond", beyond(0.99)),
        ),
        (
            "P99.9".into(),
            fmt_ms(l.p99_9),
            format!("{} beyond", beyond(0.999)),
        ),
        (
            "Throughput".into(),
            format!("{:.1}/s", s.throughput_rps),
            s.rate_target
                .map_or("closed model".into(), |r| format!("offered {r:.0}/s")),
        ),
        (
            "Errors".into(),
            format!("{:.2}%", s.error_rate * 100.0),
            format!("{} of {}", s.error_count(), s.requests),
        ),
    ]
}

/// Renders the whole page.
pub fn render(r: &Report<'_>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&r.title)
    );
    let _ = write!(
        h,
        "<header><div class=\"brand\">chokepoint report</div><h1>{}</h1><div class=\"sub\">{}</div>",
        esc(&r.title),
        esc(&r.subtitle)
    );
    let tiles = if r.tiles.is_empty() {
        r.runs
            .last()
            .map(|p| tiles_for(p.summary))
            .unwrap_or_default()
    } else {
        r.tiles.clone()
    };
    if !tiles.is_empty() {
        h.push_str("<div class=\"tiles\">");
        for (label, value, note) in &tiles {
            let _ = write!(
                h,
                "<div class=\"tile\" data-key=\"{}\"><div class=\"l\">{}</div><div class=\"v num\">{}</div><div class=\"n\">{}</div></div>",
                esc(label),
                esc(label),
                esc(value),
                esc(note)
            );
        }
        h.push_str("</div>");
    }
    h.push_str("</header><main>");
    if let Some((text, good)) = &r.banner {
        let _ = write!(
            h,
            "<div class=\"banner {}\" id=\"verdict\">{}</div>",
            if *good { "good" } else { "bad" },
            esc(text)
        );
    }
    // One banner naming every such run: an id appears once per page.
    let insecure: Vec<&str> = r
        .runs
        .iter()
        .filter(|p| p.summary.tls_verification_disabled)
        .map(|p| p.label.as_str())
        .collect();
    if !insecure.is_empty() {
        let _ = write!(
            h,
            "<div class=\"banner bad\" id=\"tls-warning\">TLS certificate verification was OFF (--insecure) in {}: the target's identity was not checked</div>",
            esc(&insecure.join(", "))
        );
    }
    if !r.story.is_empty() {
        story(&mut h, &r.story);
    }
    if let Some(d) = r.diagnosis {
        diagnosis(&mut h, d);
    }
    if let Some(c) = r.compare {
        compare(&mut h, c);
    }
    if !r.runs.is_empty() {
        runs(&mut h, &r.runs);
    }
    if let Some(t) = &r.traces {
        traces(&mut h, t);
    }
    if let Some(s) = r.stress {
        stress(&mut h, s);
    }
    if let Some(s) = r.soak {
        soak(&mut h, s);
    }
    let _ = writeln!(
        h,
        "</main><footer>{}</footer></body></html>",
        esc(&r.footer)
    );
    h
}

fn story(h: &mut String, steps: &[StoryStep]) {
    h.push_str("<section id=\"story\"><h2>The method, step by step</h2><ol class=\"story\">");
    for s in steps {
        let mark = match s.ok {
            Some(true) => "<span class=\"ok\">✔</span> ",
            Some(false) => "<span class=\"no\">✘</span> ",
            None => "",
        };
        let _ = write!(h, "<li><div class=\"t\">{mark}{}</div>", esc(&s.title));
        for l in &s.lines {
            match l.strip_prefix("$ ") {
                Some(cmd) => {
                    let _ = write!(h, "<div class=\"ln\"><code>$ {}</code></div>", esc(cmd));
                }
                None => {
                    let _ = write!(h, "<div class=\"ln\">{}</div>", esc(l));
                }
            }
        }
        h.push_str("</li>");
    }
    h.push_str("</ol></section>");
}

fn level(l: Level) -> &'static str {
    match l {
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
    }
}

fn diagnosis(h: &mut String, d: &Diagnosis) {
    let _ = write!(
        h,
        "<section id=\"diagnosis\"><h2>Diagnosis and fix plan</h2><p class=\"ttl\" id=\"diagnosis-headline\">{}</p>",
        esc(&d.headline)
    );
    for c in &d.constraints {
        let _ = write!(
            h,
            "<div class=\"constraint{}\" data-class=\"{}\"><div><span class=\"rank\">#{}</span><span class=\"cls\">{}</span><span class=\"conf {}\">{} confidence</span></div><div class=\"ttl\">{}</div><ul class=\"ev\">",
            if c.rank == 1 { " first" } else { "" },
            c.class.as_str(),
            c.rank,
            esc(c.class.label()),
            level(c.confidence.level),
            level(c.confidence.level),
            esc(&c.title)
        );
        for e in &c.evidence {
            let threshold = e
                .threshold
                .as_ref()
                .map(|t| format!(" <span class=\"muted\">(threshold {})</span>", esc(t)))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<li><span class=\"src\">{}</span>{}{threshold}</li>",
                esc(&e.source),
                esc(&e.text)
            );
        }
        h.push_str("</ul><div><b>Fix plan</b> <span class=\"muted\">(quick wins first)</span></div><ol class=\"fix\">");
        for f in &c.fixes {
            let hz = match f.horizon {
                Horizon::QuickWin => "quick win",
                Horizon::Structural => "structural",
            };
            let _ = write!(
                h,
                "<li><span class=\"ftype\">{}</span><span class=\"hz\">{hz}</span> — {}",
                esc(f.fix.label()),
                esc(&f.action)
            );
            if let Some(e) = &f.expected {
                let _ = write!(h, "<div class=\"exp\">Expected: {}</div>", esc(&e.method));
            }
            h.push_str("</li>");
        }
        h.push_str("</ol>");
        for p in &c.predictions {
            let _ = write!(
                h,
                "<div class=\"pred\">What-if: {} <span class=\"muted\">[{}]</span></div>",
                esc(&p.text),
                esc(&p.model)
            );
        }
        h.push_str("</div>");
    }
    if d.constraints.is_empty() {
        h.push_str("<p class=\"good\">No constraint found in the evidence.</p>");
    }
    for n in &d.notes {
        let _ = write!(h, "<div class=\"muted\">Note: {}</div>", esc(n));
    }
    if !d.measure_next.is_empty() {
        h.push_str("<h3>Measure next</h3><ul class=\"next\">");
        for n in &d.measure_next {
            let _ = write!(
                h,
                "<li><b>{}</b>: {}<br><code>{}</code></li>",
                esc(&n.situation),
                esc(&n.why),
                esc(&n.command)
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
}

fn compare(h: &mut String, c: &CompareReport) {
    let _ = write!(
        h,
        "<section id=\"compare\"><h2>Before / after</h2><p>Verdict: <b class=\"{}\">{}</b> <span class=\"muted\">({} → {}; {:.0}% confidence, minimum effect {:.0}%)</span></p>",
        match c.verdict.as_str() {
            "improved" => "good",
            "regressed" => "bad",
            _ => "muted",
        },
        esc(&c.verdict.replace('_', " ")),
        esc(&c.before.path),
        esc(&c.after.path),
        c.settings.confidence * 100.0,
        c.settings.min_effect_pct
    );
    h.push_str("<table><tr><th>metric</th><th>before</th><th>after</th><th>change</th><th>95% CI of change</th><th>p</th><th>verdict</th></tr>");
    for m in &c.latency.metrics {
        let class = match m.verdict.as_str() {
            "improved" => "good",
            "regressed" => "bad",
            _ => "muted",
        };
        let _ = write!(
            h,
            "<tr data-metric=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"{class}\">{}</td></tr>",
            esc(&m.metric),
            esc(&m.metric),
            fmt_ms(m.before_ms),
            fmt_ms(m.after_ms),
            m.delta_pct.map_or("–".into(), |d| format!("{d:+.1}%")),
            m.ci_pct
                .map_or("–".into(), |i| format!("[{:+.1}%, {:+.1}%]", i.low, i.high)),
            m.p_value.map_or("–".into(), crate::markup::pvalue),
            esc(&m.verdict.replace('_', " "))
        );
    }
    let t = &c.throughput;
    let _ = write!(
        h,
        "<tr><td>throughput</td><td class=\"num\">{:.1}/s</td><td class=\"num\">{:.1}/s</td><td class=\"num\">{}</td><td></td><td></td><td>{}</td></tr>",
        t.before_rps,
        t.after_rps,
        t.delta_pct.map_or("–".into(), |d| format!("{d:+.1}%")),
        esc(&t.verdict.replace('_', " "))
    );
    let e = &c.error_rate;
    let _ = write!(
        h,
        "<tr><td>error rate</td><td class=\"num\">{:.2}%</td><td class=\"num\">{:.2}%</td><td></td><td></td><td></td><td>{}</td></tr></table>",
        e.before_pct,
        e.after_pct,
        esc(&e.verdict.replace('_', " "))
    );
    for n in c
        .notes
        .iter()
        .chain(c.differences.iter().map(|_| &c.verdict).take(0))
    {
        let _ = write!(h, "<div class=\"muted\">Note: {}</div>", esc(n));
    }
    for d in &c.differences {
        let _ = write!(
            h,
            "<div class=\"muted\">Differs: {} {} → {}</div>",
            esc(&d.field),
            esc(&d.before),
            esc(&d.after)
        );
    }
    h.push_str("</section>");
}

fn series(name: String, color: usize, dashed: bool, points: Vec<(f64, f64)>) -> Series {
    Series {
        name,
        points,
        color: PALETTE[color % PALETTE.len()].into(),
        dashed,
        markers: false,
    }
}

fn runs(h: &mut String, panels: &[RunPanel<'_>]) {
    let overlay = panels.len() > 1;
    h.push_str("<section id=\"latency\"><h2>Latency</h2><div class=\"grid2\">");
    // Percentile spectrum.
    let spectrum = LineChart {
        title: "Percentile spectrum (from the intended send time)".into(),
        x_label: "percentile (log scale of 1/(1−p))".into(),
        y_label: "latency (ms, log)".into(),
        x_scale: XScale::Percentile,
        y_log: true,
        series: panels
            .iter()
            .enumerate()
            .map(|(i, p)| series(p.label.clone(), i, false, p.spectrum.clone()))
            .collect(),
        markers: vec![],
    };
    h.push_str(&spectrum.render());
    // Percentiles over time.
    let mut lines = Vec::new();
    for (i, p) in panels.iter().enumerate() {
        let prefix = if overlay {
            format!("{} ", p.label)
        } else {
            String::new()
        };
        let pts = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
            p.seconds
                .iter()
                .filter(|r| r.requests > 0)
                .map(|r| (r.second, f(r)))
                .collect()
        };
        if overlay {
            lines.push(series(format!("{prefix}p50"), i, true, pts(|r| r.p50_ms)));
            lines.push(series(format!("{prefix}p99"), i, false, pts(|r| r.p99_ms)));
        } else {
            lines.push(series("p50".into(), 0, false, pts(|r| r.p50_ms)));
            lines.push(series("p90".into(), 2, false, pts(|r| r.p90_ms)));
            lines.push(series("p99".into(), 1, false, pts(|r| r.p99_ms)));
            lines.push(series("max".into(), 6, true, pts(|r| r.max_ms)));
        }
    }
    let over_time = LineChart {
        title: "Latency percentiles per second".into(),
        x_label: "time into the measured window (s)".into(),
        y_label: "latency (ms)".into(),
        x_scale: XScale::Linear,
        y_log: false,
        series: lines,
        markers: vec![],
    };
    h.push_str(&over_time.render());
    // Throughput and errors.
    let mut tp = Vec::new();
    for (i, p) in panels.iter().enumerate() {
        let name = if overlay {
            format!("{} req/s", p.label)
        } else {
            "completed req/s".into()
        };
        tp.push(series(
            name,
            i,
            false,
            p.seconds.iter().map(|r| (r.second, r.rps)).collect(),
        ));
        if p.seconds.iter().any(|r| r.errors > 0) {
            tp.push(series(
                format!(
                    "{}errors/s",
                    if overlay {
                        format!("{} ", p.label)
                    } else {
                        String::new()
                    }
                ),
                1 + i * 2,
                true,
                p.seconds
                    .iter()
                    .map(|r| (r.second, r.errors as f64))
                    .collect(),
            ));
        }
    }
    let throughput = LineChart {
        title: "Throughput and errors per second".into(),
        x_label: "time into the measured window (s)".into(),
        y_label: "requests per second".into(),
        x_scale: XScale::Linear,
        y_log: false,
        series: tp,
        markers: vec![],
    };
    h.push_str(&throughput.render());
    // Phases.
    let names = ["connect", "tls", "ttfb", "receive"];
    let groups: Vec<BarGroup> = names
        .iter()
        .filter(|n| {
            panels
                .iter()
                .any(|p| p.summary.phases_ms.get(**n).is_some_and(|l| l.count > 0))
        })
        .map(|n| BarGroup {
            label: format!("{n} (mean)"),
            values: panels
                .iter()
                .map(|p| p.summary.phases_ms.get(*n).map_or(0.0, |l| l.mean))
                .collect(),
            highlight: false,
        })
        .collect();
    let phases = BarChart {
        title: "Phase breakdown (mean per request that had the phase)".into(),
        x_label: "milliseconds".into(),
        series: panels
            .iter()
            .enumerate()
            .map(|(i, p)| (p.label.clone(), PALETTE[i % PALETTE.len()].to_string()))
            .collect(),
        groups,
    };
    h.push_str(&phases.render());
    h.push_str("</div>");
    // Percentile table.
    h.push_str("<table><tr><th>run</th><th>requests</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>req/s</th><th>errors</th></tr>");
    for p in panels {
        let l = &p.summary.latency_ms;
        let _ = write!(
            h,
            "<tr data-run=\"{}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-p99=\"{:.3}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td></tr>",
            esc(&p.label),
            esc(&p.label),
            p.summary.requests,
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            l.p99,
            fmt_ms(l.p99),
            fmt_ms(l.p99_9),
            fmt_ms(l.max),
            p.summary.throughput_rps,
            esc(
                &p.summary
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
    }
    h.push_str("</table>");
    for p in panels {
        if p.summary.by_request.len() > 1 {
            let _ = write!(h, "<h3>Requests of {}</h3><table><tr><th>request</th><th>requests</th><th>p50</th><th>p99</th></tr>", esc(&p.label));
            for (name, r) in &p.summary.by_request {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(name),
                    r.requests,
                    fmt_ms(r.latency_ms.p50),
                    fmt_ms(r.latency_ms.p99)
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</section>");
}

fn traces(h: &mut String, t: &TracePanel) {
    let _ = write!(
        h,
        "<section id=\"traces\"><h2>Where slow requests wait</h2><p class=\"muted\">{} traces: typical requests (P40–P60) take {} on the server, the slowest {} take {}. Critical-path self time per request; waiting spans in red.</p>",
        t.traces,
        fmt_ms(t.mean_ms_p50),
        t.n_tail,
        fmt_ms(t.mean_ms_tail)
    );
    let chart = BarChart {
        title: "Critical path: P50 vs P99 (mean ms per request)".into(),
        x_label: "milliseconds on the critical path".into(),
        series: vec![
            ("P50 group".into(), PALETTE[5].into()),
            ("tail (≥ P99)".into(), PALETTE[1].into()),
        ],
        groups: t
            .rows
            .iter()
            .take(10)
            .map(|r| BarGroup {
                label: format!("{} / {}", r.service, r.operation),
                values: vec![r.ms_p50, r.ms_p99],
                highlight: r.wait,
            })
            .collect(),
    };
    h.push_str(&chart.render());
    if !t.detectors.is_empty() {
        h.push_str("<h3>Detectors</h3><ul>");
        for d in &t.detectors {
            let _ = write!(h, "<li>{}</li>", esc(d));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
}

fn stress(h: &mut String, s: &StressReport) {
    let _ = write!(
        h,
        "<section id=\"stress\"><h2>Capacity</h2><p><b>{}</b></p>",
        esc(&s.verdict)
    );
    let _ = write!(
        h,
        "<p class=\"muted\">capacity {} · knee {} · failed first: {}</p>",
        s.capacity_rps
            .map_or("–".into(), |c| format!("{c:.0} req/s")),
        s.knee_rps.map_or("–".into(), |k| format!("{k:.0} req/s")),
        esc(s.failed_first.as_deref().unwrap_or("nothing"))
    );
    h.push_str("<div class=\"grid2\">");
    let steps: Vec<_> = s.steps.iter().filter(|st| !st.interrupted).collect();
    if s.mode == "concurrency" {
        let measured: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|st| st.concurrency.map(|c| (c as f64, st.achieved_rps)))
            .collect();
        let mut lines = vec![Series {
            name: "measured".into(),
            points: measured.clone(),
            color: PALETTE[0].into(),
            dashed: false,
            markers: true,
        }];
        if let Some(u) = &s.usl {
            let max_n = measured.iter().map(|p| p.0).fold(1.0, f64::max);
            let fit: Vec<(f64, f64)> = (0..=60)
                .map(|k| {
                    let n = 1.0 + (max_n - 1.0) * k as f64 / 60.0;
                    (
                        n,
                        u.lambda * n / (1.0 + u.sigma * (n - 1.0) + u.kappa * n * (n - 1.0)),
                    )
                })
                .collect();
            lines.push(Series {
                name: format!("USL fit σ={:.3} κ={:.4}", u.sigma, u.kappa),
                points: fit,
                color: PALETTE[1].into(),
                dashed: true,
                markers: false,
            });
        }
        let chart = LineChart {
            title: "Throughput vs concurrency (USL)".into(),
            x_label: "concurrent connections N".into(),
            y_label: "throughput (req/s)".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: lines,
            markers: s
                .usl
                .as_ref()
                .and_then(|u| u.n_star)
                .filter(|n| *n <= measured.iter().map(|p| p.0).fold(1.0, f64::max))
                .map(|n| Marker {
                    x: n,
                    label: format!("N* ≈ {n:.0}"),
                })
                .into_iter()
                .collect(),
        };
        h.push_str(&chart.render());
    } else {
        let mut pts: Vec<(f64, f64, f64, f64)> = steps
            .iter()
            .filter_map(|st| {
                st.offered_rps
                    .map(|o| (o, st.achieved_rps, st.latency_ms.p99, st.latency_ms.p50))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let knee: Vec<Marker> = s
            .knee_rps
            .map(|k| Marker {
                x: k,
                label: format!("knee {k:.0}/s"),
            })
            .into_iter()
            .collect();
        let tp = LineChart {
            title: "Achieved vs offered throughput".into(),
            x_label: "offered rate (req/s)".into(),
            y_label: "achieved (req/s)".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: vec![
                Series {
                    name: "achieved".into(),
                    points: pts.iter().map(|p| (p.0, p.1)).collect(),
                    color: PALETTE[0].into(),
                    dashed: false,
                    markers: true,
                },
                Series {
                    name: "offered = achieved".into(),
                    points: pts.iter().map(|p| (p.0, p.0)).collect(),
                    color: PALETTE[6].into(),
                    dashed: true,
                    markers: false,
                },
            ],
            markers: knee.clone(),
        };
        h.push_str(&tp.render());
        let lat = LineChart {
            title: "Latency vs offered load".into(),
            x_label: "offered rate (req/s)".into(),
            y_label: "latency (ms, log)".into(),
            x_scale: XScale::Linear,
            y_log: true,
            series: vec![
                Series {
                    name: "p99".into(),
                    points: pts.iter().map(|p| (p.0, p.2)).collect(),
                    color: PALETTE[1].into(),
                    dashed: false,
                    markers: true,
                },
                Series {
                    name: "p50".into(),
                    points: pts.iter().map(|p| (p.0, p.3)).collect(),
                    color: PALETTE[0].into(),
                    dashed: false,
                    markers: true,
                },
            ],
            markers: knee,
        };
        h.push_str(&lat.render());
    }
    h.push_str("</div><table><tr><th>step</th><th>offered</th><th>N</th><th>achieved</th><th>p50</th><th>p99</th><th>errors</th><th>result</th></tr>");
    for st in &steps {
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}%</td><td class=\"{}\">{}</td></tr>",
            st.index,
            esc(&st.phase),
            st.offered_rps.map_or("–".into(), |o| format!("{o:.0}")),
            st.concurrency.map_or("–".into(), |c| c.to_string()),
            st.achieved_rps,
            fmt_ms(st.latency_ms.p50),
            fmt_ms(st.latency_ms.p99),
            st.error_rate * 100.0,
            if st.passed { "good" } else { "bad" },
            if st.passed {
                "pass".to_string()
            } else {
                esc(&st.failed_detail.join("; "))
            }
        );
    }
    h.push_str("</table>");
    for n in &s.notes {
        let _ = write!(h, "<div class=\"muted\">Note: {}</div>", esc(n));
    }
    h.push_str("</section>");
}

fn soak(h: &mut String, s: &SoakReport) {
    let _ = write!(
        h,
        "<section id=\"soak\"><h2>Drift over time</h2><p><b>{}</b></p><div class=\"grid2\">",
        esc(&s.verdict)
    );
    let mid = |w: &crate::soak::SoakWindow| w.start_s + w.duration_s / 2.0;
    let p99 = LineChart {
        title: "P99 per window".into(),
        x_label: "time (s)".into(),
        y_label: "latency (ms)".into(),
        x_scale: XScale::Linear,
        y_log: false,
        series: vec![
            series(
                "p99".into(),
                1,
                false,
                s.windows.iter().map(|w| (mid(w), w.p99_ms)).collect(),
            ),
            series(
                "p50".into(),
                0,
                false,
                s.windows.iter().map(|w| (mid(w), w.p50_ms)).collect(),
            ),
        ],
        markers: vec![],
    };
    h.push_str(&p99.render());
    let rss: Vec<(f64, f64)> = s
        .windows
        .iter()
        .filter_map(|w| w.rss_bytes.map(|b| (mid(w), b as f64 / (1024.0 * 1024.0))))
        .collect();
    let mem = LineChart {
        title: "Target RSS per window".into(),
        x_label: "time (s)".into(),
        y_label: "resident memory (MiB)".into(),
        x_scale: XScale::Linear,
        y_log: false,
        series: vec![series("RSS".into(), 2, false, rss)],
        markers: vec![],
    };
    h.push_str(&mem.render());
    h.push_str("</div>");
    for v in &s.verdicts {
        let _ = write!(h, "<div>{}</div>", esc(v));
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let mut summary = RunSummary {
            target: "http://x/<script>alert(1)</script>".into(),
            ..RunSummary::default()
        };
        summary
            .errors
            .insert("<img src=x onerror=alert(1)>".into(), 3);
        let panel = RunPanel {
            label: "<b>run</b>".into(),
            summary: &summary,
            seconds: vec![],
            spectrum: vec![],
        };
        let page = render(&Report {
            title: "t <script>".into(),
            subtitle: summary.target.clone(),
            runs: vec![panel],
            traces: Some(TracePanel {
                rows: vec![TraceRow {
                    service: "<svc>".into(),
                    operation: "\"><script>x</script>".into(),
                    wait: true,
                    ms_p50: 1.0,
                    ms_p99: 2.0,
                }],
                detectors: vec!["<iframe>".into()],
                ..TracePanel::default()
            }),
            ..Report::default()
        });
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<iframe>"), "{page}");
        assert!(!page.contains("<b>run"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }
}
