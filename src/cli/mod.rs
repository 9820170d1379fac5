//! The `tickring` command line: one binary, one subcommand per job.

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod replay;

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
    /// Exchange simulator: serve capture files over an exchange's WebSocket protocol.
    Replay(replay::ReplayArgs),
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
        Command::Replay(args) => replay::run(args),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
