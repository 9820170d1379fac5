//! `tickring bench ...`: latency and throughput benchmarks. Results print
//! as a table, or with `--json` as one object whose `results` array has
//! one entry per measured path (see [`crate::bench::hist`]).

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::json;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::bench::hist::ClockChoice;
use crate::bench::ring::{self, RingBenchConfig};
use crate::event::Exchange;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// One-way latency, burst throughput and writer cost of the ring, next
    /// to the core-to-core cache-line floor and peer IPC paths (rtrb,
    /// crossbeam, disruptor, iceoryx2 with `--features bench-peers`; uds).
    Ring(RingArgs),
    /// Messages per second per core of each feed adapter on the bundled
    /// captures, next to a serde_json baseline.
    Parse(ParseArgs),
    /// Wire-to-ring one-way latency on loopback: the collector next to a
    /// spinning socket (the floor) and a tokio + tungstenite + serde_json
    /// collector, fed by the replay server.
    E2e(E2eArgs),
    /// Gateway under load: N WebSocket clients from a separate process;
    /// publish -> receive latency, /health latency, message rate and CPU, per rate.
    Gateway(GatewayArgs),
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
    /// The collector spins on its completion queue (`[io_uring] busy_poll`)
    /// instead of sleeping in the kernel. Meaningful only when its core is
    /// its own (3 or more cores; see the report's layout).
    #[arg(long)]
    pub busy_poll: bool,
    /// Fixtures directory (default: $TICKRING_FIXTURES, else ../shared/fixtures
    /// beside the source tree).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ClockArg {
    /// The TSC when it is invariant (constant_tsc, nonstop_tsc), else CLOCK_MONOTONIC.
    Auto,
    Tsc,
    Monotonic,
}

#[derive(Args, Debug)]
pub struct RingArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds spent on each path (latency and throughput); the whole run
    /// takes about 9 times this.
    #[arg(long, default_value_t = 3.0, value_name = "S")]
    pub duration: f64,
    /// Largest number of readers attached while measuring the writer's
    /// cost per publish (measured with 0, 1 and N).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub readers: usize,
    /// Core of the writer.
    #[arg(long, default_value_t = 0)]
    pub writer_core: usize,
    /// Core of the reader(s).
    #[arg(long, default_value_t = 1)]
    pub reader_core: usize,
    /// Do not pin writer and readers to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Run writer and readers in the real-time class (SCHED_RR) at this
    /// priority (1-99), so other processes on their cores cannot preempt
    /// them; needs root or CAP_SYS_NICE.
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(i32).range(1..=99))]
    pub realtime: Option<i32>,
    /// Slots of the ring and of the peers' queues (a power of two).
    #[arg(long, default_value_t = 1 << 16)]
    pub capacity: u64,
    /// Clock for latency stamps.
    #[arg(long, value_enum, default_value = "auto")]
    pub clock: ClockArg,
    /// Pause between latency samples: random between GAP and 2 x GAP ns.
    #[arg(long, default_value_t = 1000, value_name = "GAP")]
    pub gap_ns: u64,
    /// Put tickring's rings on 2 MiB huge pages in this hugetlbfs mount
    /// (e.g. /dev/hugepages; needs free reserved huge pages). Default: 4 KiB
    /// pages in /dev/shm.
    #[arg(long, value_name = "DIR")]
    pub hugepages: Option<std::path::PathBuf>,
    /// Measure only these paths (comma-separated: tickring, floor, rtrb,
    /// crossbeam, disruptor, iceoryx2, uds).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Internal: run as a reader process of a benchmark (JSON spec).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::Ring(a) => run_ring(a),
        BenchCommand::Parse(a) => parse_cmd(a),
        BenchCommand::E2e(a) => e2e_cmd(a),
        BenchCommand::Gateway(a) => gateway_cmd(a),
    }
}

fn run_ring(a: &RingArgs) -> anyhow::Result<()> {
    if let Some(spec) = &a.child {
        return ring::child_main(spec).context("benchmark reader process");
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 3600.0) {
        anyhow::bail!(
            "--duration {} must be between 0 and 3600 seconds",
            a.duration
        );
    }
    let cfg = RingBenchConfig {
        duration: Duration::from_secs_f64(a.duration),
        readers: a.readers.max(1),
        writer_core: (!a.no_pin).then_some(a.writer_core),
        reader_core: (!a.no_pin).then_some(a.reader_core),
        rt_prio: a.realtime,
        capacity: a.capacity,
        clock: match a.clock {
            ClockArg::Auto => ClockChoice::Auto,
            ClockArg::Tsc => ClockChoice::Tsc,
            ClockArg::Monotonic => ClockChoice::Monotonic,
        },
        gap_ns: a.gap_ns.max(1),
        hugepages: a.hugepages.clone(),
        only: a.only.clone(),
        progress: !a.json,
    };
    let report = ring::run(&cfg).context("tickring bench ring")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        report.write_json(&mut out)?;
    } else {
        ring::write_human(&report, &mut out)?;
    }
    out.flush()?;
    Ok(())
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
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
}

fn parse_cmd(args: &ParseArgs) -> anyhow::Result<()> {
    let dir = args
        .fixtures
        .clone()
        .unwrap_or_else(crate::bench::parse::default_fixtures);
    let min = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    let results = crate::bench::parse::run_all(&dir, min, args.only.as_deref())
        .context("running the parse benchmark")?;
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
    Ok(())
}

fn e2e_cmd(args: &E2eArgs) -> anyhow::Result<()> {
    let exchange = Exchange::from_name(&args.exchange)
        .with_context(|| format!("--exchange {:?}: expected kraken or binance", args.exchange))?;
    let secs = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v).with_context(|| format!("--{name} {v}: not a duration"))
    };
    let opts = crate::bench::e2e::E2eOptions {
        exchange,
        fixtures: args
            .fixtures
            .clone()
            .unwrap_or_else(crate::bench::parse::default_fixtures),
        duration: secs("duration", args.duration)?,
        rounds: args.rounds,
        rt_priority: args.rt_priority,
        busy_poll: args.busy_poll,
        warmup: secs("warmup", args.warmup)?,
        rate: args.rate,
        exe: std::env::current_exe().context("finding the tickring binary")?,
    };
    let report = crate::bench::e2e::run(&opts).context("running the end-to-end benchmark")?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(())
}

fn gateway_cmd(args: &GatewayArgs) -> anyhow::Result<()> {
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
    Ok(())
}
