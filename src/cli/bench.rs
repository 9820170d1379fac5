//! `tickring bench ...`: throughput and latency benchmarks.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::bench::{e2e, parse};
use crate::event::Exchange;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Messages per second per core of each feed adapter on the bundled
    /// captures, next to a serde_json baseline.
    Parse(ParseArgs),
    /// Wire-to-ring one-way latency on loopback: the collector next to a
    /// spinning socket (the floor) and a tokio + tungstenite + serde_json
    /// collector, fed by the replay server.
    E2e(E2eArgs),
}

#[derive(Args, Debug)]
pub struct E2eArgs {
    /// Print `{"results": [{"name", "p50_ns", "p99_ns", "p999_ns",
    /// "p9999_ns", "max_ns", "throughput_per_s", ...}], "targets": [...]}`.
    #[arg(long)]
    pub json: bool,
    /// Seconds measured per path, in total over the rounds.
    #[arg(long, default_value_t = 8.0)]
    pub duration: f64,
    /// The three paths take turns this many times (rotating order) so a
    /// change of the host's load hits them alike; histograms are merged.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// kraken (book, depth 10, CRC-32 checked) | binance (bookTicker).
    #[arg(long, default_value = "kraken")]
    pub exchange: String,
    /// Market messages per second. The replay server's timer ticks every
    /// millisecond: from about 700/s on, messages often leave back to back
    /// (`burst` in the report) and wait behind each other (`queued`).
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Seconds per path and round between the first frame and the measured window.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Run under SCHED_FIFO (needs CAP_SYS_NICE): the reader at P, the
    /// collectors at P+1, the replay server at P+2. Takes a core from
    /// everything else while it runs.
    #[arg(long, value_name = "P")]
    pub rt_priority: Option<i32>,
    /// Fixtures directory (default: $TICKRING_FIXTURES, else ../shared/fixtures
    /// beside the source tree).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
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
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Parse(args) => parse_cmd(args),
        BenchCommand::E2e(args) => e2e_cmd(args),
    }
}

fn parse_cmd(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let dir = args.fixtures.unwrap_or_else(parse::default_fixtures);
    let min = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    let results = parse::run_all(&dir, min).context("running the parse benchmark")?;
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

fn e2e_cmd(args: E2eArgs) -> anyhow::Result<ExitCode> {
    let exchange = Exchange::from_name(&args.exchange)
        .with_context(|| format!("--exchange {:?}: expected kraken or binance", args.exchange))?;
    let secs = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v).with_context(|| format!("--{name} {v}: not a duration"))
    };
    let opts = e2e::E2eOptions {
        exchange,
        fixtures: args.fixtures.unwrap_or_else(parse::default_fixtures),
        duration: secs("duration", args.duration)?,
        rounds: args.rounds,
        rt_priority: args.rt_priority,
        warmup: secs("warmup", args.warmup)?,
        rate: args.rate,
        exe: std::env::current_exe().context("finding the tickring binary")?,
    };
    let report = e2e::run(&opts).context("running the end-to-end benchmark")?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(ExitCode::SUCCESS)
}
