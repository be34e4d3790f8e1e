//! `chokepoint check` output: the `chokepoint.check.v1` JSON shape (one result
//! per budget line) and its text, Markdown (CI job summary) and JUnit XML
//! renderings. The JUnit file has one `<testcase>` per budget line, with the
//! attributes GitHub, GitLab and Jenkins read.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::markup::{md_cell, xml_escape};

/// The schema identifier of a check report.
pub const CHECK_SCHEMA: &str = "chokepoint.check.v1";

/// Outcome of one budget line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The budget holds.
    Pass,
    /// The budget is broken.
    Fail,
    /// The budget could not be evaluated (no baseline, too little data); does not fail the check.
    Skipped,
}

impl Status {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skipped => "SKIP",
        }
    }
}

/// One budget line and what the run showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetResult {
    /// `overall`, `request.NAME` or `regression`.
    pub section: String,
    /// The key: `p99`, `max`, `mean`, `error_rate`, `min_throughput`, or for
    /// `regression` the compared metric (`p50`, `p99`, `throughput`, ...).
    pub metric: String,
    /// The budget as a sentence: `p99 <= 200ms`.
    pub budget: String,
    /// Line of the budget in the file (1-based).
    pub line: usize,
    /// The measured value, formatted (`123 ms`, `0.25%`, `+12.0% (CI ...)`).
    pub actual: Option<String>,
    /// The limit as a number in `unit`.
    pub limit_value: f64,
    /// The measured value as a number in `unit`.
    pub actual_value: Option<f64>,
    /// Unit of the two values: `ms`, `percent` or `rps`.
    pub unit: String,
    /// Pass, fail or skipped.
    pub status: Status,
    /// Why it failed or was skipped; empty when it passed.
    pub message: String,
}

impl BudgetResult {
    /// The test-case name: `overall p99 <= 200ms`.
    pub fn name(&self) -> String {
        format!("{} {}", self.section, self.budget)
    }
}

/// A whole check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Always [`CHECK_SCHEMA`].
    pub schema: String,
    /// chokepoint version that checked.
    pub tool_version: String,
    /// The checked run (path as given).
    pub run: String,
    /// The budget file (path as given).
    pub budget_file: String,
    /// The baseline run, when given.
    pub baseline: Option<String>,
    /// One per budget line, in file order.
    pub results: Vec<BudgetResult>,
    /// Budgets that held.
    pub passed: usize,
    /// Budgets that broke.
    pub failed: usize,
    /// Budgets not evaluated.
    pub skipped: usize,
    /// `pass` when nothing failed, else `fail`.
    pub status: String,
    /// Remarks about the inputs (comparability with the baseline, ...).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// Builds the report and its counts.
    pub fn new(
        run: String,
        budget_file: String,
        baseline: Option<String>,
        results: Vec<BudgetResult>,
        notes: Vec<String>,
    ) -> Self {
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        let (passed, failed, skipped) = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skipped),
        );
        CheckReport {
            schema: CHECK_SCHEMA.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run,
            budget_file,
            baseline,
            results,
            passed,
            failed,
            skipped,
            status: if failed == 0 { "pass" } else { "fail" }.to_string(),
            notes,
        }
    }

    fn summary_line(&self) -> String {
        format!(
            "{} budget{}: {} passed, {} failed, {} skipped",
            self.results.len(),
            if self.results.len() == 1 { "" } else { "s" },
            self.passed,
            self.failed,
            self.skipped
        )
    }
}

/// The text report.
pub fn render_text(r: &CheckReport) -> String {
    let mut out = String::new();
    let baseline = r
        .baseline
        .as_deref()
        .map_or(String::new(), |b| format!(" (baseline {b})"));
    let _ = writeln!(
        out,
        "chokepoint check {} against {}{baseline}",
        r.run, r.budget_file
    );
    let width = r
        .results
        .iter()
        .map(|x| x.name().chars().count())
        .max()
        .unwrap_or(0);
    for x in &r.results {
        let name = x.name();
        let pad = width.saturating_sub(name.chars().count());
        let mut line = format!("  {}  {name}{}", x.status.label(), " ".repeat(pad));
        if let Some(actual) = &x.actual {
            let _ = write!(line, "  actual {actual}");
        }
        if !x.message.is_empty() {
            let _ = write!(line, "  ({}:{}: {})", r.budget_file, x.line, x.message);
        }
        let _ = writeln!(out, "{line}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let _ = writeln!(
        out,
        "{} → {}",
        r.summary_line(),
        r.status.to_ascii_uppercase()
    );
    out
}

/// A Markdown job summary (GitHub `$GITHUB_STEP_SUMMARY`, GitLab, PR comments).
pub fn render_markdown(r: &CheckReport) -> String {
    let mut out = String::new();
    let icon = if r.failed == 0 { "✅" } else { "❌" };
    let _ = writeln!(
        out,
        "## {icon} chokepoint check: {}\n",
        md_cell(&r.summary_line())
    );
    let baseline = r.baseline.as_deref().map_or(String::new(), |b| {
        format!(", baseline `{}`", b.replace('`', "'"))
    });
    let _ = writeln!(
        out,
        "Run `{}` against `{}`{baseline}.\n",
        r.run.replace('`', "'"),
        r.budget_file.replace('`', "'")
    );
    let _ = writeln!(out, "| | budget | actual | line | details |");
    let _ = writeln!(out, "|---|---|---|---:|---|");
    for x in &r.results {
        let mark = match x.status {
            Status::Pass => "✅",
            Status::Fail => "❌",
            Status::Skipped => "⏭️",
        };
        let _ = writeln!(
            out,
            "| {mark} | {} | {} | {} | {} |",
            md_cell(&x.name()),
            md_cell(x.actual.as_deref().unwrap_or("-")),
            x.line,
            md_cell(&x.message)
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out);
        for n in &r.notes {
            let _ = writeln!(out, "- {}", md_cell(n));
        }
    }
    out
}

/// JUnit XML: one `<testsuite>`, one `<testcase>` per budget line, with
/// `<failure>` or `<skipped>` children. All text is escaped.
pub fn render_junit(r: &CheckReport, timestamp: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="chokepoint check" tests="{}" failures="{}" errors="0" skipped="{}" time="0">"#,
        r.results.len(),
        r.failed,
        r.skipped
    );
    let _ = writeln!(
        out,
        r#"  <testsuite name="{}" tests="{}" failures="{}" errors="0" skipped="{}" time="0" timestamp="{}">"#,
        xml_escape(&format!("chokepoint budgets: {}", r.run)),
        r.results.len(),
        r.failed,
        r.skipped,
        xml_escape(timestamp)
    );
    for x in &r.results {
        let classname = format!("chokepoint.budgets.{}", x.section);
        let _ = write!(
            out,
            r#"    <testcase name="{}" classname="{}" file="{}" line="{}" time="0""#,
            xml_escape(&x.name()),
            xml_escape(&classname),
            xml_escape(&r.budget_file),
            x.line
        );
        let details = format!(
            "{}:{}: {}\nactual: {}\n",
            r.budget_file,
            x.line,
            x.name(),
            x.actual.as_deref().unwrap_or("-")
        );
        match x.status {
            Status::Pass => {
                let _ = writeln!(out, "/>");
            }
            Status::Fail => {
                let _ = writeln!(out, ">");
                let _ = writeln!(
                    out,
                    r#"      <failure message="{}" type="budget">{}{}</failure>"#,
                    xml_escape(&x.message),
                    xml_escape(&details),
                    xml_escape(&x.message)
                );
                let _ = writeln!(out, "    </testcase>");
            }
            Status::Skipped => {
                let _ = writeln!(out, ">");
                let _ = writeln!(
                    out,
                    r#"      <skipped message="{}"/>"#,
                    xml_escape(&x.message)
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(
            out,
            "    <system-out>{}</system-out>",
            xml_escape(&r.notes.join("\n"))
        );
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}
