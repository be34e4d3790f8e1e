//! `chokepoint completions bash|zsh|fish` (clap_complete) and `chokepoint
//! man` (clap_mangen): both are generated from the same clap definitions
//! as the parser, so they never fall out of date.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::Failure;

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// Bash (source it, or put it in /etc/bash_completion.d/).
    Bash,
    /// Zsh (put it in a directory on $fpath as `_chokepoint`).
    Zsh,
    /// Fish (put it in ~/.config/fish/completions/chokepoint.fish).
    Fish,
}

/// Flags of `chokepoint completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

/// Flags of `chokepoint man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write chokepoint.1 and one page per command (chokepoint-run.1, ...)
    /// into DIR instead of printing chokepoint.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script for `command` (the whole CLI).
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<i32, Failure> {
    let mut buf = Vec::new();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "chokepoint", &mut buf);
    crate::print_stdout(&String::from_utf8_lossy(&buf));
    Ok(0)
}

fn render(command: clap::Command) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut buf)
        .map_err(|e| Failure::Usage(format!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// Prints (or writes) the man pages of `command`.
pub fn man(args: ManArgs, command: clap::Command) -> Result<i32, Failure> {
    let Some(dir) = args.out else {
        crate::print_stdout(&String::from_utf8_lossy(&render(command)?));
        return Ok(0);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Usage(format!("--out {}: {e}", dir.display())))?;
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::Usage(format!("--out {}: {e}", path.display())))
    };
    let mut command = command;
    command.build();
    for sub in command.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        let name = format!("chokepoint-{}", sub.get_name());
        // clap keeps names as `&'static str`; this runs once per command of a short-lived process.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        let page = sub.clone().name(static_name).bin_name(static_name);
        write(&format!("{name}.1"), render(page)?)?;
    }
    write("chokepoint.1", render(command)?)?;
    Ok(0)
}
