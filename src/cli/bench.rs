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
    /// WebSocket fan-out under load: N clients on loopback, publish ->
    /// receive latency, /health latency, message rate and CPU, per rate.
    Gateway(GatewayArgs),
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// WebSocket clients to connect.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Instruments the events are spread over.
    #[arg(long, default_value_t = 100)]
    pub instruments: usize,
    /// Instruments each client subscribes to (trades).
    #[arg(long, default_value_t = 1)]
    pub subs: usize,
    /// Events published per second, one measurement step per value.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000,3000")]
    pub rates: Vec<u64>,
    /// Seconds measured per step (after --warmup).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// The gateway's per-client queue, messages.
    #[arg(long, default_value_t = 4096)]
    pub client_queue: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
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
        BenchCommand::Gateway(args) => gateway_cmd(args),
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

fn gateway_cmd(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    use crate::bench::gateway;
    let opts = gateway::Options {
        clients: args.clients,
        instruments: args.instruments,
        subs_per_client: args.subs,
        rates: args.rates.clone(),
        seconds: args.seconds,
        warmup: args.warmup,
        client_queue: args.client_queue,
        exe: std::env::current_exe().context("finding the tickring binary")?,
    };
    let steps = gateway::run(&opts, &mut |s| eprintln!("bench gateway: {s}"))
        .context("gateway benchmark")?;
    // The last rate that met the target, and the first that did not.
    let met = steps.iter().take_while(|s| s.meets_target().is_ok()).last();
    let broke = steps.iter().find(|s| s.meets_target().is_err());
    let verdict = match (met, broke) {
        (Some(m), None) => format!(
            "target met at every rate up to {} events/s ({:.0} messages/s to {} clients)",
            m.rate,
            m.messages_per_s(),
            args.clients
        ),
        (Some(m), Some(b)) => format!(
            "target met up to {} events/s ({:.0} messages/s); at {} events/s: {}",
            m.rate,
            m.messages_per_s(),
            b.rate,
            b.meets_target().unwrap_err()
        ),
        (None, Some(b)) => format!(
            "target not met at {} events/s: {}",
            b.rate,
            b.meets_target().unwrap_err()
        ),
        (None, None) => "no step ran".into(),
    };
    let mut out = io::stdout().lock();
    if args.json {
        let pj = |p: &gateway::Percentiles| json!({"count": p.count, "p50": p.p50, "p90": p.p90, "p99": p.p99, "p999": p.p999, "max": p.max});
        let rs: Vec<_> = steps
            .iter()
            .map(|s| {
                json!({
                    "rate": s.rate,
                    "seconds": s.seconds,
                    "published": s.published,
                    "expected": s.expected,
                    "received": s.received,
                    "messages_per_s": s.messages_per_s().round(),
                    "latency_us": pj(&s.latency),
                    "health_us": pj(&s.health),
                    "health_failures": s.health_failures,
                    "gateway_cpu_percent": s.gateway_cpu.round(),
                    "bench_cpu_percent": s.bench_cpu.round(),
                    "dropped_slow": s.dropped_slow,
                    "ring_overruns": s.ring_overruns,
                    "clients_connected": s.clients_connected,
                    "gateway_age_p50_le_us": s.gateway_age_p50_le,
                    "gateway_age_p99_le_us": s.gateway_age_p99_le,
                    "meets_target": s.meets_target().is_ok(),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "clients": args.clients,
                "instruments": args.instruments,
                "subs_per_client": args.subs,
                "steps": rs,
                "verdict": verdict,
            })
        )?;
    } else {
        writeln!(
            out,
            "{} clients, {} instruments, {} subscription(s) each; latency = ring publish -> client receive",
            args.clients, args.instruments, args.subs
        )?;
        writeln!(
            out,
            "{:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>11} {:>8} {:>8} {:>7}",
            "ev/s",
            "msg/s",
            "delivered",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "health p50",
            "health p99",
            "gw cpu",
            "gen cpu",
            "dropped"
        )?;
        for s in &steps {
            writeln!(
                out,
                "{:>8} {:>10.0} {:>9.2}% {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>9.0} {:>11.0} {:>11.0} {:>7.0}% {:>7.0}% {:>7} {:>9}",
                s.rate,
                s.messages_per_s(),
                if s.expected == 0 { 100.0 } else { s.received as f64 * 100.0 / s.expected as f64 },
                s.latency.p50,
                s.latency.p90,
                s.latency.p99,
                s.latency.p999,
                s.latency.max,
                s.health.p50,
                s.health.p99,
                s.gateway_cpu,
                s.bench_cpu,
                s.dropped_slow,
                format!("<={:.0}us", s.gateway_age_p99_le)
            )?;
        }
        writeln!(out, "{verdict}")?;
    }
    Ok(ExitCode::SUCCESS)
}
