//! The `chokepoint` binary: parse, dispatch, print the error, choose the exit code.

use chokepoint::{demo_cmd, lab_cmd, run_cmd, Failure};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "chokepoint",
    version,
    about = "Find the bottleneck, prove the fix: load testing with evidence.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Baseline: load a URL or scenario and report what users get (P50..P99.9, errors, throughput).
    #[command(
        after_help = "Examples:\n  chokepoint run http://127.0.0.1:8080/ -c 50 -z 30s\n  chokepoint run http://127.0.0.1:8080/api --rate 2000 --warmup 5s --out results/\n  chokepoint run scenario.toml --json"
    )]
    Run(run_cmd::RunArgs),
    /// The whole method on the built-in lab: plant a bottleneck, baseline, fix, validate.
    #[command(
        after_help = "Examples:\n  chokepoint demo\n  chokepoint demo --scenario sync-email --quick\n  chokepoint demo --out demo-results/"
    )]
    Demo(demo_cmd::DemoArgs),
    /// Run the checkout lab service (a system under test with plantable bottlenecks).
    Lab(lab_cmd::LabArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(
                    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        2
                    } else {
                        0
                    },
                );
            }
            // One line: clap's first line names the problem; the rest is usage.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see --help)");
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(args),
        Command::Demo(args) => demo_cmd::run(args),
        Command::Lab(args) => lab_cmd::run(args).map_err(|e| Failure::Usage(format!("{e:#}"))),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    }
}
