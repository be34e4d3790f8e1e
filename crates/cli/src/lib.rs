//! The `chokepoint` command line: argument parsing, command dispatch, and the
//! glue that turns engine results into files and reports.
//!
//! Only this crate knows about flags; `report` owns the output shapes; the
//! engine, stats and lab crates know nothing of either.

pub mod args;
pub mod budgets;
pub mod check_cmd;
pub mod compare_cmd;
pub mod completions;
pub mod curl;
pub mod demo_cmd;
pub mod diagnose_cmd;
pub mod har;
pub mod history_cmd;
pub mod html_out;
pub mod k8s_cmd;
pub mod lab_cmd;
pub mod merge_cmd;
pub mod metrics;
pub mod otlp_receiver;
pub mod output;
pub mod run_cmd;
pub mod rundir;
pub mod scenario;
pub mod scenario_cmd;
pub mod shard;
pub mod signals;
pub mod soak_cmd;
pub mod stress_cmd;
pub mod totals;
pub mod traces_cmd;
pub mod units;
pub mod watch;

use std::io::Write;

/// Why a command failed: decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or bad input: exit 2 with one line.
    Usage(String),
}

/// Prints to stdout; a closed pipe (`| head`) ends the process quietly.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}
