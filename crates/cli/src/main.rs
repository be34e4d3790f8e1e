//! The `chokepoint` binary: parse, dispatch, print the error, choose the exit code.

use chokepoint::{
    check_cmd, compare_cmd, completions, demo_cmd, diagnose_cmd, history_cmd, k8s_cmd, lab_cmd,
    merge_cmd, run_cmd, scenario_cmd, soak_cmd, stress_cmd, traces_cmd, Failure,
};
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
        after_help = "Examples:\n  chokepoint run http://127.0.0.1:8080/ -c 50 -z 30s\n  chokepoint run http://127.0.0.1:8080/api --rate 2000 --warmup 5s --out results/\n  chokepoint run scenario.toml --json\n  chokepoint run recording.har --rate 50 -z 1m\n  chokepoint run http://127.0.0.1:8080/ --stages 30s:100/s,1m:1000/s,10s:0/s\n  chokepoint run http://127.0.0.1:8080/ --rate 4000 --shard 1/4 --start-at 2025-06-01T12:00:00Z --out shard-1/"
    )]
    Run(run_cmd::RunArgs),
    /// The whole method on the built-in lab: plant a bottleneck, baseline, fix, validate.
    #[command(
        after_help = "Examples:\n  chokepoint demo\n  chokepoint demo --scenario sync-email --quick\n  chokepoint demo --out demo-results/"
    )]
    Demo(demo_cmd::DemoArgs),
    /// Run the checkout lab service (a system under test with plantable bottlenecks).
    #[command(
        after_help = "Examples:\n  chokepoint lab                        # prints `listening on http://127.0.0.1:PORT`\n  chokepoint lab --listen 127.0.0.1:8080\n  chokepoint lab --help                 # the knobs that plant bottlenecks (docs/lab.md)"
    )]
    Lab(lab_cmd::LabArgs),
    /// Validate: did AFTER really change from BEFORE, beyond noise, under comparable conditions?
    #[command(
        after_help = "Examples:\n  chokepoint compare before/ after/\n  chokepoint compare before/ after/ --fail-on-regression --strict\n  chokepoint compare before/ after/ --json\n  chokepoint compare before/ after/ --markdown comparison.md\n\nExit codes: 0 done, 1 a metric regressed (with --fail-on-regression), 2 bad input or (with --strict) runs not comparable."
    )]
    Compare(compare_cmd::CompareArgs),
    /// Keep it fixed: check a run against latency, error-rate, throughput and regression budgets.
    #[command(
        after_help = "Examples:\n  chokepoint check results/ --budget budgets.toml\n  chokepoint check results/ --budget budgets.toml --baseline main-results/ --junit budgets.xml --markdown \"$GITHUB_STEP_SUMMARY\"\n\nExit codes: 0 all budgets hold, 1 a budget failed, 2 bad input. Format: docs/budgets.md."
    )]
    Check(check_cmd::CheckArgs),
    /// Keep it fixed over time: store runs in SQLite and find change points.
    #[command(
        after_help = "Examples:\n  chokepoint history add results/ --db perf.sqlite --label \"$GIT_COMMIT\"\n  chokepoint history list --db perf.sqlite\n  chokepoint history check --db perf.sqlite --metric p99"
    )]
    History(history_cmd::HistoryArgs),
    /// Isolate: where requests wait, from OpenTelemetry traces (analyze files, or receive OTLP).
    #[command(
        after_help = "Examples:\n  chokepoint traces analyze spans.jsonl\n  chokepoint traces analyze spans.jsonl --run results/ --json\n  chokepoint traces listen --write spans.jsonl"
    )]
    Traces(traces_cmd::TracesArgs),
    /// Isolate: find the capacity (highest rate meeting an SLO), the knee and what saturates first; or sweep concurrency and fit the USL.
    #[command(
        after_help = "Examples:\n  chokepoint stress http://127.0.0.1:8080/ --slo \"p99<200ms\"\n  chokepoint stress http://127.0.0.1:8080/ --slo \"p99<200ms\" --step-duration 5s --watch-pid 1234 --out stress/\n  chokepoint stress http://127.0.0.1:8080/ --sweep concurrency --max-concurrency 64 --json"
    )]
    Stress(stress_cmd::StressArgs),
    /// Isolate: a long constant-rate run with drift detection (P99, errors, RSS, fds) and stall detection.
    #[command(
        after_help = "Examples:\n  chokepoint soak http://127.0.0.1:8080/ --rate 200 --duration 2h --watch-pid 1234\n  chokepoint soak http://127.0.0.1:8080/ --rate 50 --duration 60s --window 5s --json"
    )]
    Soak(soak_cmd::SoakArgs),
    /// Isolate and fix: combine run, stress, soak and trace evidence into ranked constraints and a fix plan.
    #[command(
        after_help = "Examples:\n  chokepoint diagnose --run base/ --traces spans.jsonl\n  chokepoint diagnose --run base/ --stress stress/ --soak soak/ --json\n  chokepoint diagnose --run base/ --out diagnosis/    # diagnosis.json + report.html"
    )]
    Diagnose(diagnose_cmd::DiagnoseArgs),
    /// Scale out: merge shard run directories exactly (histograms add, percentiles recomputed).
    #[command(
        after_help = "Examples:\n  chokepoint merge shard-0/ shard-1/ shard-2/ shard-3/ --out merged/\n  chokepoint merge results/ --out merged/ --json      # results/ holds the shard directories\n  chokepoint merge a/ b/ --out merged/ --force       # runs that are not shards of one test\n\nExit codes: 0 merged, 2 bad input or shards that do not belong together (the message says what is missing). See docs/distributed.md."
    )]
    Merge(merge_cmd::MergeArgs),
    /// Scale out: print Kubernetes manifests (Indexed Job of shards, merge Job) for a distributed run.
    #[command(
        after_help = "Examples:\n  chokepoint k8s --shards 4 --image registry.example.com/chokepoint:0.1 -- http://api.prod.svc:8080/ --rate 8000 -z 5m | kubectl apply -f -\n  chokepoint k8s --shards 8 --image IMG --namespace load --results-pvc shared-results -- scenario.toml\n\nApply at once: the shards start --start-delay (2m) after the manifests are printed. See docs/distributed.md."
    )]
    K8s(k8s_cmd::K8sArgs),
    /// Write scenario files from what you already have: HAR recordings, curl commands.
    #[command(
        after_help = "Examples:\n  chokepoint scenario from-har recording.har --exclude-static --out scenario.toml\n  chokepoint scenario from-curl 'curl -X POST https://api.example.com/orders -d @order.json -u alice:secret'\n\nFormat: docs/scenario.md."
    )]
    Scenario(scenario_cmd::ScenarioArgs),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(
        after_help = "Examples:\n  chokepoint completions bash > /etc/bash_completion.d/chokepoint\n  chokepoint completions zsh > \"${fpath[1]}/_chokepoint\"\n  chokepoint completions fish > ~/.config/fish/completions/chokepoint.fish"
    )]
    Completions(completions::CompletionsArgs),
    /// Print the man page (or write one page per command with --out DIR).
    #[command(
        after_help = "Examples:\n  chokepoint man | man -l -\n  chokepoint man --out /usr/local/share/man/man1/"
    )]
    Man(completions::ManArgs),
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
            eprintln!(
                "{} (see --help)",
                chokepoint_report::redact::redact_text(first)
            );
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(args),
        Command::Demo(args) => demo_cmd::run(args),
        Command::Lab(args) => lab_cmd::run(args).map_err(|e| Failure::Usage(format!("{e:#}"))),
        Command::Compare(args) => compare_cmd::run(args),
        Command::Check(args) => check_cmd::run(args),
        Command::History(args) => history_cmd::run(args),
        Command::Traces(args) => traces_cmd::run(args),
        Command::Stress(args) => stress_cmd::run(args),
        Command::Soak(args) => soak_cmd::run(args),
        Command::Diagnose(args) => diagnose_cmd::run(args),
        Command::Merge(args) => merge_cmd::run(args),
        Command::K8s(args) => k8s_cmd::run(args),
        Command::Scenario(args) => scenario_cmd::run(args),
        Command::Completions(args) => {
            completions::completions(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => completions::man(args, <Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(Failure::Usage(message)) => {
            // Errors quote URLs and headers as given: never their credentials.
            eprintln!(
                "error: {}",
                chokepoint_report::redact::redact_text(&message)
            );
            std::process::exit(2);
        }
    }
}
