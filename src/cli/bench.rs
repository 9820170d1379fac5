//! `tickring bench ...`: latency and throughput benchmarks. Results print
//! as a table, or with `--json` as one object whose `results` array has
//! one entry per measured path (see [`crate::bench::hist`]).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::bench::hist::ClockChoice;
use crate::bench::ring::{self, RingBenchConfig};

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
