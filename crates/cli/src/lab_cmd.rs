//! `chokepoint lab`: run the checkout lab service (owned by the lab work; placeholder).

/// Flags of `chokepoint lab`.
#[derive(clap::Args, Debug)]
pub struct LabArgs {}

/// Runs the lab until stopped.
pub fn run(_args: LabArgs) -> anyhow::Result<i32> {
    anyhow::bail!("the lab is not built yet")
}
