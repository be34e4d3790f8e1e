//! The `chokepoint` binary: argument parsing, command dispatch, output glue.

mod lab_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "chokepoint", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the checkout lab service.
    Lab(lab_cmd::LabArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => lab_cmd::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}
