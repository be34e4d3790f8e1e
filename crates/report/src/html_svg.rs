//! Inline SVG charts for the HTML report: line charts (linear or the
//! HdrHistogram "1/(1−p)" log axis), horizontal bar charts. Every label is
//! escaped; charts carry a `<title>` and axis titles with units.

use std::fmt::Write as _;

use crate::markup::xml_escape as esc;

/// Series colours (colour-blind friendly, Okabe–Ito).
pub const PALETTE: &[&str] = &[
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#555555",
];

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y); non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// CSS colour.
    pub color: String,
    /// Dashed line.
    pub dashed: bool,
    /// Draw markers at the points.
    pub markers: bool,
}

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XScale {
    /// Linear.
    Linear,
    /// x is a quantile p; plotted at log10(1/(1−p)), labelled as percentiles.
    Percentile,
}

/// A vertical marker line.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Where.
    pub x: f64,
    /// Label.
    pub label: String,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Accessible title.
    pub title: String,
    /// X axis title with unit.
    pub x_label: String,
    /// Y axis title with unit.
    pub y_label: String,
    /// X mapping.
    pub x_scale: XScale,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// Lines.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
}

const W: f64 = 640.0;
const H: f64 = 300.0;
const L: f64 = 64.0;
const R: f64 = 16.0;
const T: f64 = 34.0;
const B: f64 = 48.0;

fn nice_step(span: f64, target_ticks: f64) -> f64 {
    let raw = span / target_ticks;
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let n = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// A number for an axis tick.
pub fn tick_text(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches(".0").to_string()
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn px(x: f64) -> f64 {
    x.log10().max(-12.0)
}

fn percentile_x(p: f64) -> f64 {
    let p = p.clamp(0.0, 0.999_999_9);
    (1.0 / (1.0 - p)).log10()
}

impl LineChart {
    /// Renders the chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let tx = |x: f64| match self.x_scale {
            XScale::Linear => x,
            XScale::Percentile => percentile_x(x),
        };
        let ty = |y: f64| if self.y_log { px(y.max(1e-3)) } else { y };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.y_log || *y > 0.0))
            .map(|(x, y)| (tx(x), ty(y)))
            .collect();
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
            t = esc(&self.title)
        );
        let _ = write!(
            s,
            r#"<text class="ct" x="{L}" y="20">{}</text>"#,
            esc(&self.title)
        );
        if pts.is_empty() {
            let _ = write!(
                s,
                r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
                W / 2.0,
                H / 2.0
            );
            return s;
        }
        let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        for m in &self.markers {
            x0 = x0.min(tx(m.x));
            x1 = x1.max(tx(m.x));
        }
        let (mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
            (a.min(*y), b.max(*y))
        });
        if !self.y_log {
            y0 = y0.min(0.0);
        }
        if (x1 - x0).abs() < 1e-12 {
            x1 = x0 + 1.0;
        }
        if (y1 - y0).abs() < 1e-12 {
            y1 = y0 + 1.0;
        }
        if self.y_log {
            y0 = y0.floor();
            y1 = y1.ceil();
        } else {
            let step = nice_step(y1 - y0, 5.0);
            y1 = (y1 / step).ceil() * step;
        }
        let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
        let sy = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
        // Grid and y ticks.
        let mut yticks = Vec::new();
        if self.y_log {
            let mut e = y0;
            while e <= y1 + 1e-9 {
                yticks.push((e, tick_text(10f64.powf(e))));
                e += 1.0;
            }
        } else {
            let step = nice_step(y1 - y0, 5.0);
            let mut v = (y0 / step).ceil() * step;
            while v <= y1 + step * 1e-6 {
                yticks.push((v, tick_text(v)));
                v += step;
            }
        }
        for (v, label) in &yticks {
            let y = sy(*v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{L}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                W - R,
                L - 6.0,
                y + 4.0,
                esc(label)
            );
        }
        // X ticks.
        let mut xticks = Vec::new();
        match self.x_scale {
            XScale::Linear => {
                let step = nice_step(x1 - x0, 6.0);
                let mut v = (x0 / step).ceil() * step;
                while v <= x1 + step * 1e-6 {
                    xticks.push((v, tick_text(v)));
                    v += step;
                }
            }
            XScale::Percentile => {
                for (p, label) in [
                    (0.0, "0%"),
                    (0.5, "50%"),
                    (0.9, "90%"),
                    (0.99, "99%"),
                    (0.999, "99.9%"),
                    (0.9999, "99.99%"),
                    (0.99999, "99.999%"),
                ] {
                    let x = percentile_x(p);
                    if x >= x0 - 1e-9 && x <= x1 + 1e-9 {
                        xticks.push((x, label.to_string()));
                    }
                }
            }
        }
        for (v, label) in &xticks {
            let x = sx(*v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{}"/><text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                H - B,
                H - B + 16.0,
                esc(label)
            );
        }
        let _ = write!(
            s,
            r#"<line class="axis" x1="{L}" x2="{}" y1="{b}" y2="{b}"/><line class="axis" x1="{L}" x2="{L}" y1="{T}" y2="{b}"/>"#,
            W - R,
            b = H - B
        );
        let _ = write!(
            s,
            r#"<text class="al" x="{}" y="{}" text-anchor="middle">{}</text><text class="al" transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (L + W - R) / 2.0,
            H - 10.0,
            esc(&self.x_label),
            (T + H - B) / 2.0,
            esc(&self.y_label)
        );
        for m in &self.markers {
            let x = sx(tx(m.x));
            let _ = write!(
                s,
                r##"<line class="marker" x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{}"/><text class="mlabel" x="{:.1}" y="{}">{}</text>"##,
                H - B,
                x + 4.0,
                T + 12.0,
                esc(&m.label)
            );
        }
        for ser in &self.series {
            let path: Vec<String> = ser
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.y_log || *y > 0.0))
                .map(|(x, y)| format!("{:.1},{:.1}", sx(tx(*x)), sy(ty(*y))))
                .collect();
            if path.is_empty() {
                continue;
            }
            let dash = if ser.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                esc(&ser.color),
                path.join(" "),
                esc(&ser.name)
            );
            if ser.markers {
                for p in &path {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = write!(
                        s,
                        r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                        esc(&ser.color)
                    );
                }
            }
        }
        // Legend.
        let mut lx = L + 8.0;
        for ser in &self.series {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{}" width="12" height="3" fill="{}"/><text class="legend" x="{:.1}" y="{}">{}</text>"#,
                T + 2.0,
                esc(&ser.color),
                lx + 16.0,
                T + 7.0,
                esc(&ser.name)
            );
            lx += 26.0 + 6.5 * ser.name.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }
}

/// One group of a bar chart: a label and one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    /// Row label.
    pub label: String,
    /// One value per series (same order as `BarChart::series`).
    pub values: Vec<f64>,
    /// Highlight the label (e.g. a waiting span).
    pub highlight: bool,
}

/// A horizontal grouped bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Accessible title.
    pub title: String,
    /// Value axis title with unit.
    pub x_label: String,
    /// Series names and colours.
    pub series: Vec<(String, String)>,
    /// Rows.
    pub groups: Vec<BarGroup>,
}

impl BarChart {
    /// Renders the chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let row_h = 10.0 * self.series.len().max(1) as f64 + 10.0;
        let label_w = 210.0;
        let top = 44.0;
        let h = top + row_h * self.groups.len().max(1) as f64 + 40.0;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title><text class="ct" x="{L}" y="20">{t}</text>"#,
            t = esc(&self.title)
        );
        let max = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        if self.groups.is_empty() || max <= 0.0 {
            let _ = write!(
                s,
                r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
                W / 2.0,
                h / 2.0
            );
            return s;
        }
        let step = nice_step(max, 5.0);
        let top_v = (max / step).ceil() * step;
        let x0 = label_w;
        let x1 = W - R - 40.0;
        let sx = |v: f64| x0 + v / top_v * (x1 - x0);
        let mut v = 0.0;
        while v <= top_v + step * 1e-6 {
            let x = sx(v);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                h - 36.0,
                h - 22.0,
                tick_text(v)
            );
            v += step;
        }
        let _ = write!(
            s,
            r#"<text class="al" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            h - 6.0,
            esc(&self.x_label)
        );
        for (gi, g) in self.groups.iter().enumerate() {
            let y = top + gi as f64 * row_h;
            let label: String = if g.label.chars().count() > 30 {
                g.label.chars().take(29).collect::<String>() + "…"
            } else {
                g.label.clone()
            };
            let _ = write!(
                s,
                r#"<text class="{}" x="{:.1}" y="{:.1}" text-anchor="end"><title>{}</title>{}</text>"#,
                if g.highlight { "blab hl" } else { "blab" },
                x0 - 8.0,
                y + row_h / 2.0 + 2.0,
                esc(&g.label),
                esc(&label)
            );
            for (si, v) in g.values.iter().enumerate() {
                let color = self.series.get(si).map_or("#888", |s| s.1.as_str());
                let by = y + 4.0 + si as f64 * 10.0;
                let w = (sx(v.max(0.0)) - x0).max(0.5);
                let _ = write!(
                    s,
                    r#"<rect x="{x0}" y="{by:.1}" width="{w:.1}" height="8" fill="{}"><title>{}: {}</title></rect><text class="bval" x="{:.1}" y="{:.1}">{}</text>"#,
                    esc(color),
                    esc(self.series.get(si).map_or("", |s| s.0.as_str())),
                    tick_text(*v),
                    x0 + w + 4.0,
                    by + 7.5,
                    tick_text(*v)
                );
            }
        }
        let mut lx = x0;
        for (name, color) in &self.series {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="30" width="12" height="8" fill="{}"/><text class="legend" x="{:.1}" y="38">{}</text>"#,
                esc(color),
                lx + 16.0,
                esc(name)
            );
            lx += 30.0 + 6.5 * name.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_axes_labelled() {
        let chart = LineChart {
            title: "<script>alert(1)</script>".into(),
            x_label: "time (s)".into(),
            y_label: "latency (ms)".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: vec![Series {
                name: "p99 & <b>".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0)],
                color: PALETTE[0].into(),
                dashed: false,
                markers: true,
            }],
            markers: vec![],
        };
        let svg = chart.render();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("p99 &amp; &lt;b&gt;"));
        assert!(svg.contains("time (s)") && svg.contains("latency (ms)"));
    }

    #[test]
    fn percentile_axis_is_log_of_one_over_one_minus_p() {
        assert!((percentile_x(0.99) - 2.0).abs() < 1e-9);
        assert!((percentile_x(0.999) - 3.0).abs() < 1e-9);
        let chart = LineChart {
            title: "spectrum".into(),
            x_label: "percentile".into(),
            y_label: "ms".into(),
            x_scale: XScale::Percentile,
            y_log: true,
            series: vec![Series {
                name: "run".into(),
                points: vec![(0.0, 1.0), (0.5, 2.0), (0.99, 10.0), (0.999, 50.0)],
                color: PALETTE[0].into(),
                dashed: false,
                markers: false,
            }],
            markers: vec![],
        };
        let svg = chart.render();
        assert!(svg.contains(">99.9%<") && svg.contains(">50%<"), "{svg}");
    }
}
