//! The `lambdamesh` binary: thin wiring of the library crates into subcommands shaped like Consul's
//! (`server`, `agent -dev`, `services`, `config`, `intention`, `acl`, ...) plus `lambda` for the
//! local Lambda platform. Business logic lives in the libraries; this crate parses flags, sets up
//! logging and signals, and maps errors to exit codes.

mod args;
mod lambda;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "lambdamesh", version, about = "Serverless functions as first-class members of a service mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The local AWS-compatible Lambda platform (Lambda API, Runtime/Extensions API, SSM, events).
    #[command(subcommand)]
    Lambda(lambda::LambdaCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(args::normalize(std::env::args_os()));
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Lambda(cmd) => lambda::run(cmd).await,
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAMBDAMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
