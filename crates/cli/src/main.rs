//! The `lambdamesh` binary: thin wiring of the library crates into subcommands shaped like Consul's
//! (`server`, `agent -dev`, `services`, `config`, `intention`, `acl`, ...) plus `lambda` for the
//! local Lambda platform. Business logic lives in the libraries; this crate parses flags, sets up
//! logging and signals, and maps errors to exit codes.

mod args;
mod client_cmd;
mod connect_cmd;
mod lambda;
mod migrate;
mod registrator_cmd;
mod server_cmd;
mod signals;
mod table;
mod up;

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
    /// List the members of the cluster.
    Members(client_cmd::MembersArgs),
    /// Write, read, list and delete config entries.
    #[command(subcommand)]
    Config(client_cmd::ConfigCommand),
    /// Create, check, get, list, match and delete intentions.
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
    /// Start a whole topology from one file (server, platform, services, sidecars, gateways,
    /// functions, registrator, config entries, intentions); Ctrl-C stops it.
    Up(up::UpArgs),
    /// Stop a topology started with `up` (also one whose `up` was killed).
    Down(up::DownArgs),
    /// Show a topology's parts and entry points (exit 0 up, 1 starting, 3 not running).
    Status(up::StatusArgs),
    /// Print the logs of a topology's parts.
    Logs(up::LogsArgs),
    /// Move a service's traffic to another step by step, judged by the Envoys' figures, rolling
    /// back at once when a threshold is crossed.
    Migrate(migrate::MigrateArgs),
    /// Internal: run a command that dies with its parent (used by `up`).
    #[command(hide = true, name = "up-exec")]
    UpExec(up::UpExecArgs),
}

fn main() -> std::process::ExitCode {
    let argv = registrator_cmd::bootstrap_argv(
        std::env::args_os(),
        std::env::var_os("AWS_LAMBDA_RUNTIME_API"),
    );
    let cli = Cli::parse_from(args::normalize(argv));
    init_tracing();
    match cli.command {
        // Client commands are blocking HTTP calls and need no async runtime. `connect envoy`
        // ends by exec'ing Envoy, so it does that from the process's only thread: Envoy then
        // keeps what a supervisor set on this process (a parent-death signal is per thread, and
        // is lost when another thread execs).
        Command::Services(cmd) => exit_code(client_cmd::services(cmd)),
        Command::Catalog(cmd) => exit_code(client_cmd::catalog(cmd)),
        Command::Members(args) => exit_code(client_cmd::members(args)),
        Command::Config(cmd) => exit_code(client_cmd::config(cmd)),
        Command::Intention(cmd) => exit_code(client_cmd::intention(cmd)),
        Command::Acl(cmd) => exit_code(client_cmd::acl(cmd)),
        Command::Connect(cmd) => exit_code(connect_cmd::run(cmd)),
        Command::Server(args) | Command::Agent(args) => {
            run_async(Threads::All, server_cmd::run(args))
        }
        // The local Lambda platform runs on one thread: an invoke is a chain of hand-offs
        // between the caller's connection, the sandbox's Runtime API and back, and on a
        // multi-thread runtime each hand-off may cross threads (a futex wake-up per step,
        // measured ~0.08 ms per invoke). Its blocking work runs on the blocking pool.
        Command::Lambda(cmd) => {
            let threads = match cmd {
                lambda::LambdaCommand::Serve(_) => Threads::One,
                _ => Threads::All,
            };
            run_async(threads, lambda::run(cmd))
        }
        Command::Registrator(cmd) => run_async(Threads::All, registrator_cmd::run(cmd)),
        // `up` starts every child from this, the main, thread: a parent-death signal fires
        // when the thread that forked exits, so no worker thread may fork.
        Command::Up(args) => exit_code(up::up(args)),
        Command::Migrate(args) => exit_code(migrate::migrate(args)),
        Command::Down(args) => exit_code(up::down(args)),
        Command::Status(args) => exit_code(up::status(args)),
        Command::Logs(args) => exit_code(up::logs(args)),
        Command::UpExec(args) => exit_code(up::exec_supervised(args.ppid, &args.argv)),
    }
}

/// How many threads a command's async runtime gets.
enum Threads {
    One,
    All,
}

fn run_async(
    threads: Threads,
    command: impl std::future::Future<Output = anyhow::Result<u8>>,
) -> std::process::ExitCode {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::All => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(command);
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
            eprintln!("{}", error_line(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// The one line a failed command prints. Commands word their failures as Consul's CLI does
/// (`Error parsing FILE: ...`, `Failed to decode ...`), and those are printed as they are; any
/// other error gets an `Error: ` prefix, so no line reads `Error: Error parsing`.
fn error_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.starts_with("Error") || text.starts_with("Failed") {
        text
    } else {
        format!("Error: {text}")
    }
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

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn errors_carry_one_prefix() {
        let parse = anyhow::anyhow!("invalid HCL").context("Error parsing api.hcl");
        assert_eq!(error_line(&parse), "Error parsing api.hcl: invalid HCL");
        let failed = anyhow::anyhow!("x").context("Failed ACL bootstrapping");
        assert_eq!(error_line(&failed), "Failed ACL bootstrapping: x");
        let bare = anyhow::anyhow!("exactly one of -id or a file must be given");
        assert_eq!(
            error_line(&bare),
            "Error: exactly one of -id or a file must be given"
        );
    }
}
