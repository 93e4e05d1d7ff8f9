//! `lambdamesh lambda ...`: the local Lambda platform's server and its human CLI.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum LambdaCommand {
    /// Run the local Lambda platform.
    Serve,
}

pub async fn run(cmd: LambdaCommand) -> anyhow::Result<u8> {
    match cmd {
        LambdaCommand::Serve => anyhow::bail!("lambda serve is not built yet"),
    }
}
