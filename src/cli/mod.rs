//! The `tickring` command line: one binary, one subcommand per job.

pub mod bench;
pub mod book;
pub mod collect;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod gateway;
pub mod manpage;
pub mod replay;
pub mod stat;
pub mod tail;
pub mod validate;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tickring",
    version,
    about = "Low-latency market data: exchange feeds into a shared-memory ring",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a ring's events as they arrive.
    Tail(tail::TailArgs),
    /// Show a ring's header, writer state, cursor, rate and instruments.
    Stat(stat::StatArgs),
    /// Run the collector of one feed: exchange WebSocket -> ring (systemd: tickring-collector@FEED).
    Collect(collect::CollectArgs),
    /// The whole pipeline on this machine, no exchange access needed: replay servers, collectors, rings.
    Demo(demo::DemoArgs),
    /// Check a config file and exit: non-zero, naming the file, key and problem, if it is bad.
    Validate(validate::ValidateArgs),
    /// Run a capture file through a feed adapter and the book builder and
    /// print the books.
    Book(book::BookArgs),
    /// Serve the rings over WebSocket and HTTP: streams, REST, health,
    /// metrics and a status page.
    Gateway(gateway::GatewayArgs),
    /// Latency and throughput benchmarks (HdrHistogram percentiles).
    Bench(bench::BenchArgs),
    /// Exchange simulator: serve capture files over an exchange's WebSocket protocol.
    Replay(Box<replay::ReplayArgs>),
    /// Check this host against what the configured collectors need; exit 1 if a check fails.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write the manual pages into a directory (used to build the packages).
    #[command(hide = true)]
    Man(manpage::ManArgs),
}

/// Entry point of the binary: runs the command and maps errors to an exit
/// code. Errors print with their whole chain (`{:#}`); a broken pipe on
/// stdout (e.g. `tickring tail ... | head`) exits 0 quietly.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tickring: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Tail(a) => tail::run(&a)?,
        Command::Stat(a) => stat::run(&a)?,
        Command::Validate(a) => validate::run(&a)?,
        Command::Collect(a) => collect::run(&a)?,
        Command::Demo(a) => demo::run(&a)?,
        Command::Book(args) => return book::run(args),
        Command::Gateway(a) => gateway::run(&a)?,
        Command::Bench(a) => bench::run(&a)?,
        Command::Replay(args) => return replay::run(*args),
        Command::Doctor(a) => return doctor::run(&a),
        Command::Completions(a) => completions::run(&a)?,
        Command::Man(a) => manpage::run(&a)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr (journald under systemd); `RUST_LOG` sets the level
/// (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
