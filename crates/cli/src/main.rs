//! The `lambdamesh` binary: thin wiring of the library crates into subcommands shaped like Consul's
//! (`server`, `agent -dev`, `services`, `config`, `intention`, `acl`, ...) plus `lambda` for the
//! local Lambda platform. Business logic lives in the libraries; this crate parses flags, sets up
//! logging and signals, and maps errors to exit codes.

mod args;
mod client_cmd;
mod connect_cmd;
mod lambda;
mod registrator_cmd;
mod server_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lambdamesh",
    version,
    about = "Serverless functions as first-class members of a service mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control-plane server (durable state in -data-dir).
    Server(server_cmd::ServerArgs),
    /// Run an agent; with -dev, a throw-away single-node server for development.
    Agent(server_cmd::ServerArgs),
    /// Register and deregister services with the local agent.
    #[command(subcommand)]
    Services(client_cmd::ServicesCommand),
    /// Read the catalog.
    #[command(subcommand)]
    Catalog(client_cmd::CatalogCommand),
    /// Write, read, list and delete config entries.
    #[command(subcommand)]
    Config(client_cmd::ConfigCommand),
    /// Create, check and delete intentions.
    #[command(subcommand)]
    Intention(client_cmd::IntentionCommand),
    /// Run Envoy for a sidecar proxy or a gateway.
    #[command(subcommand)]
    Connect(connect_cmd::ConnectCommand),
    /// ACL system commands.
    #[command(subcommand)]
    Acl(client_cmd::AclCommand),
    /// The local AWS-compatible Lambda platform (Lambda API, Runtime/Extensions API, SSM, events).
    #[command(subcommand)]
    Lambda(lambda::LambdaCommand),
    /// Keep the mesh in step with tagged Lambda functions (full sync, daemon, or Lambda function).
    #[command(subcommand)]
    Registrator(registrator_cmd::RegistratorCommand),
}

fn main() -> std::process::ExitCode {
    let argv = registrator_cmd::bootstrap_argv(
        std::env::args_os(),
        std::env::var_os("AWS_LAMBDA_RUNTIME_API"),
    );
    let cli = Cli::parse_from(args::normalize(argv));
    init_tracing();
    // `connect envoy` ends by exec'ing Envoy. It runs before any runtime thread exists, so the
    // exec happens on the process's only thread: Envoy then keeps what a supervisor set on this
    // process (a parent-death signal is per thread, and is lost when another thread execs).
    let command = match cli.command {
        Command::Connect(cmd) => return exit_code(connect_cmd::run(cmd)),
        other => other,
    };
    // The local Lambda platform runs on one thread: an invoke is a chain of hand-offs between
    // the caller's connection, the sandbox's Runtime API and back, and on a multi-thread runtime
    // each hand-off may cross threads (a futex wake-up per step, measured ~0.08 ms per invoke).
    // Its blocking work runs on the blocking pool. Everything else uses all cores.
    let mut builder = if matches!(command, Command::Lambda(lambda::LambdaCommand::Serve(_))) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Server(args) => server_cmd::run(args).await,
            Command::Agent(args) => server_cmd::run(args).await,
            Command::Services(cmd) => blocking(move || client_cmd::services(cmd)).await,
            Command::Catalog(cmd) => blocking(move || client_cmd::catalog(cmd)).await,
            Command::Config(cmd) => blocking(move || client_cmd::config(cmd)).await,
            Command::Intention(cmd) => blocking(move || client_cmd::intention(cmd)).await,
            Command::Acl(cmd) => blocking(move || client_cmd::acl(cmd)).await,
            // Handled above, without a runtime.
            Command::Connect(_) => Ok(0),
            Command::Lambda(cmd) => lambda::run(cmd).await,
            Command::Registrator(cmd) => registrator_cmd::run(cmd).await,
        }
    });
    // Every command has finished its own work (servers have drained) by now. A blocking call
    // still in flight, such as the registrator daemon's 20 s SQS long poll on a SIGTERM, must
    // not hold the exit: dropping the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    exit_code(result)
}

fn exit_code(result: anyhow::Result<u8>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Client commands use a blocking HTTP client; keep them off the async workers.
async fn blocking(f: impl FnOnce() -> anyhow::Result<u8> + Send + 'static) -> anyhow::Result<u8> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("command panicked: {e}"))?
}

fn init_tracing() {
    // LOG_LEVEL is the registrator's variable (as the Go registrator's); LAMBDAMESH_LOG wins.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAMBDAMESH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
