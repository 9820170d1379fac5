//! `tickring bench ...`: throughput and latency benchmarks.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::bench::parse;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Messages per second per core of each feed adapter on the bundled
    /// captures, next to a serde_json baseline.
    Parse(ParseArgs),
}

#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Print `{"results": [{"name", "messages_per_s", "baseline_messages_per_s"}]}`.
    #[arg(long)]
    pub json: bool,
    /// Fixtures directory (default: $TICKRING_FIXTURES, else ../shared/fixtures
    /// beside the source tree).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Seconds to measure each adapter and each baseline.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Parse(args) => parse_cmd(args),
    }
}

fn parse_cmd(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let dir = args.fixtures.unwrap_or_else(parse::default_fixtures);
    let min = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    let results =
        parse::run_all(&dir, min, args.only.as_deref()).context("running the parse benchmark")?;
    let mut out = io::stdout().lock();
    if args.json {
        let rs: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "messages_per_s": r.messages_per_s.round(),
                    "baseline_messages_per_s": r.baseline_messages_per_s.round(),
                })
            })
            .collect();
        writeln!(out, "{}", json!({ "results": rs }))?;
    } else {
        writeln!(
            out,
            "{:<24} {:>14} {:>14} {:>8}",
            "case", "msg/s", "serde_json", "ratio"
        )?;
        for r in &results {
            writeln!(
                out,
                "{:<24} {:>14.0} {:>14.0} {:>7.1}x",
                r.name,
                r.messages_per_s,
                r.baseline_messages_per_s,
                r.messages_per_s / r.baseline_messages_per_s
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
