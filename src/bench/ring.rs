//! `tickring bench ring`: the ring's one-way latency, burst throughput and
//! writer cost, measured in the same run and by the same harness as the
//! core-to-core floor and peer IPC paths.
//!
//! | path        | where                        | built           |
//! |-------------|------------------------------|-----------------|
//! | `tickring`  | writer and reader processes  | always          |
//! | `floor`     | two threads, one cache line  | always          |
//! | `rtrb`      | two threads                  | `bench-peers`   |
//! | `crossbeam` | two threads                  | `bench-peers`   |
//! | `disruptor` | two threads                  | `bench-peers`   |
//! | `iceoryx2`  | two processes                | `bench-peers`   |
//! | `uds`       | two processes                | always          |
//!
//! Reader processes are this same binary re-executed
//! (`std::env::current_exe()`) with the hidden `bench ring --child SPEC`
//! argument; SPEC (JSON) carries the clock calibration, so both processes
//! convert TSC ticks with the same rate.
//!
//! Paths that are not built are left out of `results` and listed in
//! `skipped` with the reason.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::harness::{
    read_count, read_latency, send_cost_paced, spawn_placed, write_burst, write_paced, BurstReport,
    Ctl, CtlMap, PacedReport, Pacing, Polled, ReaderReport, Rx, Tx,
};
use super::hist::{
    fmt_rate, BenchReport, Clock, ClockChoice, ClockInfo, ClockSource, LatencyHist, LatencyResult,
    Skipped, Target,
};
use super::peers::{self, IoxPlace};
use super::{BenchError, Placement};
use crate::event::Event;
use crate::ring::{
    Backing, Poll, Reader, ReaderOptions, StartAt, Writer, WriterOptions, DEFAULT_HUGE_PAGE_SIZE,
};

/// Every path, in the order of the results.
pub const PATHS: [&str; 7] = [
    "tickring",
    "floor",
    "rtrb",
    "crossbeam",
    "disruptor",
    "iceoryx2",
    "uds",
];

/// Options of one `tickring bench ring` run.
#[derive(Clone, Debug)]
pub struct RingBenchConfig {
    /// Time spent on each path (latency and throughput together).
    pub duration: Duration,
    /// Most readers attached while measuring the writer's cost (it is
    /// measured with 0, 1 and this many).
    pub readers: usize,
    /// Core of the writer (this process's main thread); `None`: no pinning.
    pub writer_core: Option<usize>,
    /// Core of the reader(s).
    pub reader_core: Option<usize>,
    /// Run writer and readers as SCHED_RR at this priority.
    pub rt_prio: Option<i32>,
    /// Slots of the rings and queues (a power of two).
    pub capacity: u64,
    pub clock: ClockChoice,
    /// Pause between latency samples: random in `gap .. 2 * gap`.
    pub gap_ns: u64,
    /// Put tickring's rings on huge pages in this hugetlbfs mount (in a
    /// private subdirectory); `None`: 4 KiB pages in /dev/shm.
    pub hugepages: Option<PathBuf>,
    /// Measure only these paths (empty: all).
    pub only: Vec<String>,
    /// Print progress on stderr.
    pub progress: bool,
}

impl Default for RingBenchConfig {
    fn default() -> Self {
        RingBenchConfig {
            duration: Duration::from_secs(3),
            readers: 4,
            writer_core: Some(0),
            reader_core: Some(1),
            rt_prio: None,
            capacity: 1 << 16,
            clock: ClockChoice::Auto,
            gap_ns: 1_000,
            hugepages: None,
            only: Vec::new(),
            progress: false,
        }
    }
}

/// What a reader child process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    /// [`read_latency`].
    Latency,
    /// [`read_count`].
    Count,
}

/// Which path a reader child process reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Transport {
    Ring { path: PathBuf },
    Uds { path: PathBuf },
    Iceoryx2 { place: IoxPlace },
}

/// Everything a reader child process needs, passed as JSON in `--child`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ChildSpec {
    mode: Mode,
    transport: Transport,
    ctl: PathBuf,
    clock: ClockInfo,
    placement: Placement,
}

impl Tx for Writer {
    #[inline(always)]
    fn send(&mut self, ev: &Event) -> bool {
        self.publish(ev);
        true
    }
}

impl Rx for Reader {
    #[inline(always)]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        match self.poll() {
            Poll::Event(ev) => {
                f(&ev);
                Polled::Got(1)
            }
            Poll::Empty | Poll::WriterRestarted { .. } => Polled::Empty,
            Poll::Overrun { lost } => Polled::Lost(lost),
            Poll::WriterGone(_) => Polled::Closed,
        }
    }
}

/// The entry point of a reader child process (`bench ring --child SPEC`):
/// opens its path, prints `ready`, reads, prints `report JSON`.
pub fn child_main(spec_json: &str) -> Result<(), BenchError> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process: a
    // reader spinning on a core must not outlive a killed benchmark.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let spec: ChildSpec = serde_json::from_str(spec_json)
        .map_err(|e| BenchError::Config(format!("bad --child spec: {e}")))?;
    for e in spec.placement.apply() {
        eprintln!("tickring bench reader process: {e}");
    }
    let clock = Clock::from_info(&spec.clock);
    let ctl = CtlMap::open(&spec.ctl)
        .map_err(|e| BenchError::io(format!("mapping {}", spec.ctl.display()), e))?;
    match &spec.transport {
        Transport::Ring { path } => {
            let opts = ReaderOptions {
                start: StartAt::Newest,
                lock_memory: true,
                ..ReaderOptions::default()
            };
            let mut rx = Reader::open(path, &opts)?;
            serve(&mut rx, spec.mode, &clock, ctl.ctl())
        }
        Transport::Uds { path } => {
            let mut rx = peers::uds::UdsRx::bind(path)
                .map_err(|e| BenchError::io(format!("binding {}", path.display()), e))?;
            let r = serve(&mut rx, spec.mode, &clock, ctl.ctl());
            let _ = std::fs::remove_file(path);
            r
        }
        #[cfg(feature = "bench-peers")]
        Transport::Iceoryx2 { place } => {
            let mut rx = peers::iox::IoxRx::open(place).map_err(BenchError::Child)?;
            serve(&mut rx, spec.mode, &clock, ctl.ctl())
        }
        #[cfg(not(feature = "bench-peers"))]
        Transport::Iceoryx2 { .. } => Err(BenchError::Config(
            "iceoryx2 is not built into this binary (feature bench-peers)".into(),
        )),
    }
}

fn serve<R: Rx>(rx: &mut R, mode: Mode, clock: &Clock, ctl: &Ctl) -> Result<(), BenchError> {
    let mut out = std::io::stdout().lock();
    let io = |e| BenchError::io("writing to the parent", e);
    writeln!(out, "ready").map_err(io)?;
    out.flush().map_err(io)?;
    let rep = match mode {
        Mode::Latency => read_latency(rx, clock, ctl),
        Mode::Count => read_count(rx, clock, ctl),
    };
    let line = serde_json::to_string(&rep).expect("a report serializes");
    writeln!(out, "report {line}").map_err(io)?;
    out.flush().map_err(io)
}

/// A reader child process; killed on drop unless it finished.
struct ChildProc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl ChildProc {
    fn spawn(spec: &ChildSpec) -> Result<ChildProc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let json = serde_json::to_string(spec).expect("a spec serializes");
        let mut child = Command::new(&exe)
            .args(["bench", "ring", "--child", &json])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(ChildProc { child, out })
    }

    /// Reads lines until one starts with `prefix`; returns the rest.
    fn line(&mut self, prefix: &str) -> Result<String, String> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.out.read_line(&mut line) {
                Ok(0) => {
                    let status = self.child.wait().map_err(|e| e.to_string())?;
                    return Err(format!(
                        "reader process exited ({status}) before {prefix:?}"
                    ));
                }
                Ok(_) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(e) => return Err(format!("reading from the reader process: {e}")),
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        self.line("ready").map(drop)
    }

    fn report(mut self) -> Result<ReaderReport, String> {
        let json = self.line("report ")?;
        let _ = self.child.wait();
        serde_json::from_str(&json).map_err(|e| format!("bad report from reader: {e}"))
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private directory for one run's ring files, sockets and control
/// file, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> Result<RunDir, BenchError> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        RunDir::create_in(&base)
    }

    fn create_in(base: &Path) -> Result<RunDir, BenchError> {
        let p = base.join(format!(
            "tickring-bench-{}-{}",
            std::process::id(),
            crate::time::monotonic_ns()
        ));
        std::fs::create_dir_all(&p)
            .map_err(|e| BenchError::io(format!("creating {}", p.display()), e))?;
        Ok(RunDir(p))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run's shared state.
struct Env<'a> {
    cfg: &'a RingBenchConfig,
    clock: Clock,
    dir: &'a Path,
    /// Private directory in the hugetlbfs mount, with `--hugepages`.
    huge_dir: Option<&'a Path>,
    ctl_path: PathBuf,
    ctl: &'a Ctl,
    /// Counter for unique file names.
    n: u32,
}

impl Env<'_> {
    fn duration_ns(&self) -> f64 {
        self.cfg.duration.as_secs_f64() * 1e9
    }

    /// Pacing for a latency measurement of `ns` in total.
    fn pacing(&self, ns: f64) -> Pacing {
        let warmup_ns = (ns * 0.1).min(200e6);
        Pacing {
            warmup_ns,
            measure_ns: ns - warmup_ns,
            gap_ns: self.cfg.gap_ns as f64,
            ack_timeout_ns: 50e6,
        }
    }

    fn spec(&self, mode: Mode, transport: Transport) -> ChildSpec {
        ChildSpec {
            mode,
            transport,
            ctl: self.ctl_path.clone(),
            clock: self.clock.info(),
            placement: self.reader(),
        }
    }

    /// Where reader threads and processes run.
    fn reader(&self) -> Placement {
        Placement {
            core: self.cfg.reader_core,
            rt_prio: self.cfg.rt_prio,
        }
    }

    fn fresh_name(&mut self, tag: &str) -> String {
        self.n += 1;
        format!("{tag}-{}", self.n)
    }

    fn writer(&mut self, tag: &str) -> Result<Writer, String> {
        let name = self.fresh_name(tag);
        Writer::create(
            &name,
            &WriterOptions {
                backing: match self.huge_dir {
                    Some(dir) => Backing::HugePages {
                        dir: dir.to_owned(),
                        page_size: DEFAULT_HUGE_PAGE_SIZE,
                    },
                    None => Backing::Shm {
                        dir: self.dir.to_owned(),
                    },
                },
                capacity: self.cfg.capacity,
                lock_memory: true,
            },
        )
        .map_err(|e| e.to_string())
    }

    fn progress(&self, what: &str) {
        if self.cfg.progress {
            eprintln!("tickring bench ring: {what}");
        }
    }
}

/// Runs the benchmark and returns its report (not printed).
pub fn run(cfg: &RingBenchConfig) -> Result<BenchReport, BenchError> {
    if cfg.duration.is_zero() {
        return Err(BenchError::Config("--duration must be positive".into()));
    }
    if !cfg.capacity.is_power_of_two() || cfg.capacity < 2 {
        return Err(BenchError::Config(format!(
            "--capacity {} is not a power of two >= 2",
            cfg.capacity
        )));
    }
    for name in &cfg.only {
        if !PATHS.contains(&name.as_str()) {
            return Err(BenchError::Config(format!(
                "--only: unknown path {name:?} (known: {})",
                PATHS.join(", ")
            )));
        }
    }
    let (clock, clock_warning) = Clock::new(cfg.clock);
    let mut report = BenchReport::new("ring", &clock);
    report.warnings.extend(clock_warning);
    if let Some(load) = report.host.load_avg_1m {
        if load > report.host.cpus as f64 {
            report.warnings.push(format!(
                "load average {load:.2} on {} cpus: other processes preempt the writer and \
                 the readers, so the tails measure the scheduler and starved readers make the \
                 writer-cost comparison meaningless; rerun on a quiet machine{}",
                report.host.cpus,
                if cfg.rt_prio.is_none() {
                    " or with --realtime PRIO"
                } else {
                    ""
                }
            ));
        }
    }
    if report.host.cpus < 2 {
        report.warnings.push(format!(
            "only {} cpu: writer and reader share it, latencies measure the scheduler",
            report.host.cpus
        ));
    }
    let writer = Placement {
        core: cfg.writer_core,
        rt_prio: cfg.rt_prio,
    };
    let reader = Placement {
        core: cfg.reader_core,
        rt_prio: cfg.rt_prio,
    };
    for e in writer.apply() {
        report.warnings.push(format!("writer {e}"));
    }
    // Try from a scratch thread: the readers (threads and child
    // processes) place themselves the same way.
    if let Ok(errs) = std::thread::spawn(move || reader.apply()).join() {
        for e in errs {
            report.warnings.push(format!("readers {e}"));
        }
    }
    if cfg.writer_core.is_some() && cfg.writer_core == cfg.reader_core {
        report
            .warnings
            .push("writer and reader pinned to the same core".into());
    }
    report.extra.insert(
        "cores".into(),
        json!({"writer": cfg.writer_core, "reader": cfg.reader_core, "rt_prio": cfg.rt_prio}),
    );
    report.extra.insert("gap_ns".into(), json!(cfg.gap_ns));
    report.extra.insert(
        "duration_per_path_s".into(),
        json!(cfg.duration.as_secs_f64()),
    );

    let dir = RunDir::create()?;
    let huge_dir = match &cfg.hugepages {
        Some(mount) => Some(RunDir::create_in(mount)?),
        None => None,
    };
    let ctl_path = dir.0.join("ctl");
    let ctl_map = CtlMap::open(&ctl_path)
        .map_err(|e| BenchError::io(format!("creating {}", ctl_path.display()), e))?;
    let mut env = Env {
        cfg,
        clock,
        dir: &dir.0,
        huge_dir: huge_dir.as_ref().map(|d| d.0.as_path()),
        ctl_path,
        ctl: ctl_map.ctl(),
        n: 0,
    };
    let selected = |name: &str| cfg.only.is_empty() || cfg.only.iter().any(|o| o == name);
    let mut writer_cost = None;
    for name in PATHS {
        if !selected(name) {
            continue;
        }
        env.progress(&format!("measuring {name}"));
        env.ctl.reset();
        let outcome = match name {
            "tickring" => tickring(&mut env).map(|(r, cost)| {
                writer_cost = Some(cost);
                r
            }),
            "floor" => Ok(floor(&env)),
            "uds" => uds(&mut env),
            other => peer(&mut env, other),
        };
        match outcome {
            Ok(r) => report.results.push(r),
            Err(reason) => report.skipped.push(Skipped {
                name: name.to_owned(),
                reason,
            }),
        }
    }
    if let Some(cost) = &writer_cost {
        report.extra.insert("writer_cost".into(), json!(cost));
    }
    report.targets = targets(&report, writer_cost.as_deref());
    Ok(report)
}

/// The writer's cost per publish with `readers` busy readers attached.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriterCost {
    pub readers: usize,
    /// Median over chunks of 4096 publishes, ns.
    pub ns_per_publish: f64,
    /// Publishes per second over the whole burst.
    pub publish_rate_per_s: f64,
    /// Events per second the first reader received (None without readers).
    pub reader_received_per_s: Option<f64>,
    /// Share of the published events the readers lost to overruns (mean).
    pub reader_lost_fraction: Option<f64>,
    /// One publish at a time with a 1-2 us pause between them (a feed's
    /// normal regime): median and p99 time of the call, ns, including one
    /// clock read.
    pub paced_p50_ns: u64,
    pub paced_p99_ns: u64,
}

/// Latency (one reader process) and writer cost with 0, 1 and N readers.
fn tickring(env: &mut Env) -> Result<(LatencyResult, Vec<WriterCost>), String> {
    let d = env.duration_ns();
    // Latency: a paced stream, writer here, reader in a child process.
    let mut writer = env.writer("latency")?;
    let ring_path = writer.path().to_owned();
    let ring_warnings = writer.warnings().to_vec();
    let huge = writer.huge_pages();
    let mut child = ChildProc::spawn(&env.spec(
        Mode::Latency,
        Transport::Ring {
            path: ring_path.clone(),
        },
    ))?;
    child.wait_ready()?;
    let paced = write_paced(&mut writer, &env.clock, env.ctl, &env.pacing(d));
    let rep = child.report()?;
    drop(writer);
    let _ = std::fs::remove_file(&ring_path);

    // The same ring with the reader as a thread of this process, so it
    // compares like for like with rtrb, crossbeam and disruptor.
    let threads = tickring_in_process(env)?;

    // Writer cost and burst throughput.
    let mut counts = vec![0, 1, env.cfg.readers];
    counts.dedup();
    let mut costs = Vec::new();
    for k in counts {
        env.progress(&format!(
            "measuring tickring writer cost with {k} reader(s)"
        ));
        env.ctl.reset();
        let mut writer = env.writer("cost")?;
        let path = writer.path().to_owned();
        let mut readers = Vec::new();
        for _ in 0..k {
            let mut c =
                ChildProc::spawn(&env.spec(Mode::Count, Transport::Ring { path: path.clone() }))?;
            c.wait_ready()?;
            readers.push(c);
        }
        // A short warm-up burst so the timed one starts in steady state.
        write_burst(&mut writer, &env.clock, env.ctl, 20e6, false);
        let paced = send_cost_paced(&mut writer, &env.clock, d / 4.0, env.cfg.gap_ns as f64);
        let burst = write_burst(&mut writer, &env.clock, env.ctl, d / 2.0, true);
        let reports: Vec<ReaderReport> = readers
            .into_iter()
            .map(ChildProc::report)
            .collect::<Result<_, _>>()?;
        drop(writer);
        let _ = std::fs::remove_file(&path);
        costs.push(writer_cost(k, &burst, &paced, &reports, &env.clock));
    }

    let mut r = latency_result("tickring", &rep, &paced);
    r.method = Some(format!(
        "one-way, writer and reader in 2 processes ({} slots on {}); in_process: the same ring \
         with the reader as a thread, like rtrb/crossbeam/disruptor",
        env.cfg.capacity,
        if huge {
            "2 MiB huge pages"
        } else {
            "4 KiB pages in /dev/shm: 1 event in 64 starts a new page, a TLB miss on both sides \
             (--hugepages DIR to avoid)"
        },
    ));
    r.extra.insert("huge_pages".into(), json!(huge));
    r.extra.insert(
        "in_process".into(),
        json!({
            "p50_ns": threads.p50_ns,
            "p99_ns": threads.p99_ns,
            "p999_ns": threads.p999_ns,
            "p9999_ns": threads.p9999_ns,
            "max_ns": threads.max_ns,
            "count": threads.count,
        }),
    );
    r.extra.insert("transport".into(), json!("processes"));
    if let Some(c1) = costs.iter().find(|c| c.readers == 1) {
        r.throughput_per_s = c1.reader_received_per_s;
        r.extra.insert(
            "reader_lost_fraction".into(),
            json!(c1.reader_lost_fraction),
        );
    }
    if let Some(c0) = costs.iter().find(|c| c.readers == 0) {
        r.extra
            .insert("publish_rate_per_s".into(), json!(c0.publish_rate_per_s));
    }
    r.note = Some(
        "throughput = events/s one busy reader received while the writer published in a tight \
         loop (the ring never waits for readers; the rest were overwritten)"
            .into(),
    );
    if !ring_warnings.is_empty() {
        r.extra.insert("ring_warnings".into(), json!(ring_warnings));
    }
    Ok((r, costs))
}

/// One-way latency of the ring with writer and reader as two threads of
/// this process (half the latency duration).
fn tickring_in_process(env: &mut Env) -> Result<LatencyResult, String> {
    env.ctl.reset();
    let mut writer = env.writer("threads")?;
    let path = writer.path().to_owned();
    let opts = ReaderOptions {
        start: StartAt::Newest,
        ..ReaderOptions::default()
    };
    let mut reader = Reader::open(&path, &opts).map_err(|e| e.to_string())?;
    let placement = env.reader();
    let (clock, ctl) = (env.clock, env.ctl);
    let pacing = env.pacing(env.duration_ns() / 2.0);
    let (paced, rep) = std::thread::scope(|s| {
        let h = spawn_placed(s, placement, move || read_latency(&mut reader, &clock, ctl));
        let p = write_paced(&mut writer, &clock, ctl, &pacing);
        (p, h.join())
    });
    drop(writer);
    let _ = std::fs::remove_file(&path);
    let rep = rep.map_err(|_| "tickring reader thread panicked".to_owned())?;
    Ok(latency_result("tickring_in_process", &rep, &paced))
}

fn writer_cost(
    readers: usize,
    burst: &BurstReport,
    paced: &LatencyHist,
    reps: &[ReaderReport],
    clock: &Clock,
) -> WriterCost {
    let lost_fraction = (!reps.is_empty()).then(|| {
        reps.iter()
            .map(|r| {
                let seen = r.total + r.lost;
                if seen == 0 {
                    1.0
                } else {
                    r.lost as f64 / seen as f64
                }
            })
            .sum::<f64>()
            / reps.len() as f64
    });
    WriterCost {
        readers,
        ns_per_publish: burst.median_ns().unwrap_or(f64::NAN),
        publish_rate_per_s: burst.rate(clock).unwrap_or(0.0),
        reader_received_per_s: reps.first().and_then(|r| r.rate(clock)),
        reader_lost_fraction: lost_fraction,
        paced_p50_ns: paced.percentile_ns(0.5),
        paced_p99_ns: paced.percentile_ns(0.99),
    }
}

/// A result from a latency reader's report and the paced writer's counts.
fn latency_result(name: &str, rep: &ReaderReport, paced: &PacedReport) -> LatencyResult {
    let mut r = rep
        .latency
        .clone()
        .unwrap_or_else(|| super::hist::LatencyHist::new().summary(name));
    r.name = name.to_owned();
    if paced.timeouts > 0 {
        r.extra.insert("ack_timeouts".into(), json!(paced.timeouts));
    }
    if paced.send_errors > 0 {
        r.extra
            .insert("send_errors".into(), json!(paced.send_errors));
    }
    if rep.lost > 0 {
        r.extra.insert("lost".into(), json!(rep.lost));
    }
    if rep.negative > 0 {
        r.extra
            .insert("negative_samples".into(), json!(rep.negative));
    }
    r
}

/// The floor as the issue defines it (ping-pong, round trip / 2), with the
/// same floor measured one way like every other path in `one_way`.
fn floor(env: &Env) -> LatencyResult {
    let p = env.pacing(env.duration_ns() / 2.0);
    let core = env.reader();
    let hist = peers::floor::measure(&env.clock, core, p.warmup_ns, p.measure_ns, p.gap_ns);
    let one_way =
        peers::floor::measure_one_way(&env.clock, core, p.warmup_ns, p.measure_ns, p.gap_ns);
    let mut r = hist.summary("floor");
    r.method = Some(
        "round trip / 2, 2 threads ping-ponging one cache line (AtomicU64); one_way: the same \
         line measured one way with stamps on both cores, as the other paths are"
            .into(),
    );
    r.extra.insert("transport".into(), json!("threads"));
    let ow = one_way.summary("floor_one_way");
    r.extra.insert(
        "one_way".into(),
        json!({
            "p50_ns": ow.p50_ns,
            "p99_ns": ow.p99_ns,
            "p999_ns": ow.p999_ns,
            "p9999_ns": ow.p9999_ns,
            "max_ns": ow.max_ns,
            "count": ow.count,
        }),
    );
    r
}

/// Order in which a child-process path creates its two ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The writer's end exists before the reader starts (a ring file).
    WriterFirst,
    /// The reader's end must exist before the writer connects (a socket).
    ReaderFirst,
}

/// Latency then throughput of a path whose reader is a child process.
fn process_path<T: Tx>(
    env: &mut Env,
    name: &str,
    order: Order,
    transport: &mut dyn FnMut(&mut Env, &str) -> Transport,
    make_tx: &mut dyn FnMut(&Transport) -> Result<T, String>,
) -> Result<LatencyResult, String> {
    let d = env.duration_ns();
    let mut run = |env: &mut Env,
                   mode: Mode,
                   tag: &str,
                   make_tx: &mut dyn FnMut(&Transport) -> Result<T, String>,
                   drive: &mut dyn FnMut(&mut T, &Env) -> DriveOut|
     -> Result<(DriveOut, ReaderReport), String> {
        env.ctl.reset();
        let t = transport(env, tag);
        let mut tx = if order == Order::WriterFirst {
            Some(make_tx(&t)?)
        } else {
            None
        };
        let mut child = ChildProc::spawn(&env.spec(mode, t.clone()))?;
        child.wait_ready()?;
        let mut tx = match tx.take() {
            Some(tx) => tx,
            None => make_tx(&t)?,
        };
        let out = drive(&mut tx, env);
        let rep = child.report()?;
        drop(tx);
        Ok((out, rep))
    };
    let lat_ns = d * 0.75;
    let (paced, lat) = run(env, Mode::Latency, "latency", make_tx, &mut |tx, env| {
        DriveOut::Paced(write_paced(tx, &env.clock, env.ctl, &env.pacing(lat_ns)))
    })?;
    let (burst, thr) = run(env, Mode::Count, "burst", make_tx, &mut |tx, env| {
        DriveOut::Burst(write_burst(tx, &env.clock, env.ctl, d * 0.25, true))
    })?;
    let (DriveOut::Paced(paced), DriveOut::Burst(burst)) = (paced, burst) else {
        unreachable!("each run returns what its drive function made");
    };
    let mut r = latency_result(name, &lat, &paced);
    r.throughput_per_s = thr.rate(&env.clock);
    r.extra.insert("transport".into(), json!("processes"));
    add_burst_extras(&mut r, &burst, &thr, &env.clock);
    Ok(r)
}

enum DriveOut {
    Paced(PacedReport),
    Burst(BurstReport),
}

fn add_burst_extras(r: &mut LatencyResult, burst: &BurstReport, thr: &ReaderReport, clock: &Clock) {
    r.extra
        .insert("writer_rate_per_s".into(), json!(burst.rate(clock)));
    let received = thr.total;
    if received < burst.sent {
        r.extra.insert(
            "burst_received_fraction".into(),
            json!(received as f64 / burst.sent.max(1) as f64),
        );
    }
}

fn uds(env: &mut Env) -> Result<LatencyResult, String> {
    let mut r = process_path(
        env,
        "uds",
        Order::ReaderFirst,
        &mut |env, tag| Transport::Uds {
            path: env.dir.join(format!("{}.sock", env.fresh_name(tag))),
        },
        &mut |t| match t {
            Transport::Uds { path } => peers::uds::UdsTx::connect(path)
                .map_err(|e| format!("connecting {}: {e}", path.display())),
            _ => unreachable!("uds transport"),
        },
    )?;
    r.method = Some(
        "one-way, 2 processes, one 64-byte datagram per event (blocking send, non-blocking recv busy-poll)"
            .into(),
    );
    Ok(r)
}

#[cfg(not(feature = "bench-peers"))]
fn peer(_env: &mut Env, _name: &str) -> Result<LatencyResult, String> {
    Err("not built: rebuild with `--features bench-peers` to measure it".into())
}

#[cfg(feature = "bench-peers")]
fn peer(env: &mut Env, name: &str) -> Result<LatencyResult, String> {
    use peers::threads;
    let cap = env.cfg.capacity as usize;
    match name {
        "rtrb" => thread_path(env, name, || threads::rtrb(cap)),
        "crossbeam" => thread_path(env, name, || threads::crossbeam(cap)),
        "disruptor" => thread_path(env, name, || threads::disruptor(cap)),
        "iceoryx2" => iceoryx2(env),
        other => Err(format!("unknown path {other}")),
    }
}

#[cfg(feature = "bench-peers")]
fn iceoryx2(env: &mut Env) -> Result<LatencyResult, String> {
    use peers::iox;
    let cap = env.cfg.capacity as usize;
    let mut places = Vec::new();
    let result = process_path(
        env,
        "iceoryx2",
        Order::WriterFirst,
        &mut |env, tag| {
            // Latency: a small buffer (one sample is in flight at a time);
            // burst: as deep as the other paths, oldest replaced when full.
            let buffer = if tag == "latency" { 16 } else { cap.min(4096) };
            let place = IoxPlace::new(env.dir, &env.fresh_name(tag), buffer);
            places.push(place.clone());
            Transport::Iceoryx2 { place }
        },
        &mut |t| match t {
            Transport::Iceoryx2 { place } => iox::IoxTx::create(place),
            _ => unreachable!("iceoryx2 transport"),
        },
    );
    let mut leftovers = Vec::new();
    for p in &places {
        leftovers.extend(iox::cleanup(p));
    }
    let mut r = result?;
    r.method = Some(
        "one-way, 2 processes, publish-subscribe with loan_uninit/write_payload/send, busy-poll receive"
            .into(),
    );
    if !leftovers.is_empty() {
        r.extra
            .insert("iceoryx2_leftovers_removed".into(), json!(leftovers));
    }
    Ok(r)
}

/// Latency then throughput of an in-process path (reader thread pinned to
/// the reader core, writer on this thread).
#[cfg(feature = "bench-peers")]
fn thread_path<T: Tx, R: Rx + Send>(
    env: &mut Env,
    name: &str,
    make: impl Fn() -> (T, R),
) -> Result<LatencyResult, String> {
    let d = env.duration_ns();
    let placement = env.reader();
    let clock = env.clock;
    let ctl = env.ctl;
    let reader = |mode: Mode, mut rx: R| match mode {
        Mode::Latency => read_latency(&mut rx, &clock, ctl),
        Mode::Count => read_count(&mut rx, &clock, ctl),
    };
    ctl.reset();
    let (mut tx, rx) = make();
    let (paced, lat) = std::thread::scope(|s| {
        let h = spawn_placed(s, placement, || reader(Mode::Latency, rx));
        let p = write_paced(&mut tx, &clock, ctl, &env.pacing(d * 0.75));
        (p, h.join())
    });
    drop(tx);
    let lat = lat.map_err(|_| format!("{name} reader thread panicked"))?;
    ctl.reset();
    let (mut tx, rx) = make();
    let (burst, thr) = std::thread::scope(|s| {
        let h = spawn_placed(s, placement, || reader(Mode::Count, rx));
        let b = write_burst(&mut tx, &clock, ctl, d * 0.25, true);
        (b, h.join())
    });
    drop(tx);
    let thr = thr.map_err(|_| format!("{name} reader thread panicked"))?;
    let mut r = latency_result(name, &lat, &paced);
    r.throughput_per_s = thr.rate(&clock);
    r.method = Some(format!(
        "one-way, 2 threads of 1 process (in-process by nature), bounded queue of {} events, spinning",
        env.cfg.capacity
    ));
    r.extra.insert("transport".into(), json!("threads"));
    add_burst_extras(&mut r, &burst, &thr, &clock);
    Ok(r)
}

/// The targets of the issue, judged on this run's numbers.
fn targets(report: &BenchReport, cost: Option<&[WriterCost]>) -> Vec<Target> {
    let t = report.result("tickring");
    let f = report.result("floor");
    let mut out = Vec::new();
    let ratio =
        |a: Option<&LatencyResult>, b: Option<&LatencyResult>, pick: fn(&LatencyResult) -> u64| {
            match (a, b) {
                (Some(a), Some(b)) if pick(b) > 0 => {
                    Some((pick(a) as f64 / pick(b) as f64, pick(a), pick(b)))
                }
                _ => None,
            }
        };
    let skip_reason = |names: &[&str]| {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| report.result(n).is_none())
            .collect();
        format!("not measured: {}", missing.join(", "))
    };
    let r = ratio(t, f, |r| r.p50_ns);
    out.push(Target::ratio(
        "tickring p50 <= 1.2 x floor p50",
        r.map(|x| x.0),
        1.2,
        false,
        &r.map_or(skip_reason(&["tickring", "floor"]), |(_, a, b)| {
            format!("{a} ns vs {b} ns")
        }),
    ));
    let r = ratio(t, f, |r| r.p999_ns);
    out.push(Target::ratio(
        "tickring p99.9 <= 2 x floor p99.9",
        r.map(|x| x.0),
        2.0,
        false,
        &r.map_or(skip_reason(&["tickring", "floor"]), |(_, a, b)| {
            format!("{a} ns vs {b} ns")
        }),
    ));
    let ow = |r: &LatencyResult, key: &str| {
        r.extra
            .get("one_way")
            .and_then(|o| o.get(key))
            .and_then(|v| v.as_u64())
    };
    for (key, limit, label) in [("p50_ns", 1.2, "p50"), ("p999_ns", 2.0, "p99.9")] {
        let v = match (t, f) {
            (Some(t), Some(f)) => ow(f, key).filter(|&b| b > 0).map(|b| {
                let a = if key == "p50_ns" { t.p50_ns } else { t.p999_ns };
                (a as f64 / b as f64, a, b)
            }),
            _ => None,
        };
        out.push(Target::ratio(
            &format!("(same method) tickring {label} <= {limit} x one-way floor {label}"),
            v.map(|x| x.0),
            limit,
            false,
            &v.map_or(skip_reason(&["tickring", "floor"]), |(_, a, b)| {
                format!("{a} ns vs {b} ns")
            }),
        ));
    }
    for (peer, factor) in [
        ("iceoryx2", 3.0),
        ("rtrb", 1.5),
        ("crossbeam", 1.5),
        ("disruptor", 1.5),
    ] {
        let r = ratio(report.result(peer), t, |r| r.p50_ns);
        out.push(Target::ratio(
            &format!("tickring p50 at least {factor}x lower than {peer} p50"),
            r.map(|x| x.0),
            factor,
            true,
            &r.map_or(skip_reason(&["tickring", peer]), |(_, a, b)| {
                format!("{peer} {a} ns vs tickring {b} ns")
            }),
        ));
    }
    let c0 = cost.and_then(|c| c.iter().find(|c| c.readers == 0));
    // NB: judged on the median chunk (the writer's rate while it runs), not
    // on the whole burst, which on a shared machine includes the time other
    // processes took the writer's core; both are printed.
    out.push(Target::ratio(
        "tickring burst >= 100 M events/s (writer, 0 readers, median chunk), in M/s",
        c0.map(|c| 1e3 / c.ns_per_publish),
        100.0,
        true,
        &c0.map_or(skip_reason(&["tickring"]), |c| {
            format!(
                "{:.2} ns/publish; whole burst {}",
                c.ns_per_publish,
                fmt_rate(c.publish_rate_per_s)
            )
        }),
    ));
    type Pick = fn(&WriterCost) -> f64;
    let regimes: [(&str, Pick); 2] = [
        ("tight loop, median chunk", |c| c.ns_per_publish),
        ("paced, p50 of the call", |c| c.paced_p50_ns as f64),
    ];
    for (label, pick) in regimes {
        let spread = cost.and_then(|c| {
            let base = pick(c.iter().find(|c| c.readers == 0)?);
            let worst = c
                .iter()
                .filter(|c| c.readers > 0)
                .map(|c| (pick(c) / base - 1.0).abs())
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some((worst, c))
        });
        out.push(Target::ratio(
            &format!(
                "writer cost per publish within 10% from 0 to N readers ({label}; largest relative change)"
            ),
            spread.map(|s| s.0),
            0.10,
            false,
            &spread.map_or(skip_reason(&["tickring"]), |(_, c)| {
                c.iter()
                    .map(|c| format!("{} readers {:.2} ns", c.readers, pick(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ));
    }
    out
}

/// The human-readable report: the results table, the writer cost, how
/// it was measured, and the targets with PASS/MISS.
pub fn write_human(report: &BenchReport, out: &mut dyn Write) -> std::io::Result<()> {
    report.write_results(out)?;
    if let Some(cost) = report.extra.get("writer_cost") {
        if let Ok(cost) = serde_json::from_value::<Vec<WriterCost>>(cost.clone()) {
            writeln!(out)?;
            writeln!(
                out,
                "tickring writer cost per publish: paced (one publish every 1-2 us, time of the call incl. \
                 one clock read) and in a tight loop (median of 4096-publish chunks); the readers are \
                 busy-polling child processes all pinned to the reader core, so several readers \
                 take turns on it:"
            )?;
            for c in &cost {
                writeln!(
                    out,
                    "  {} reader(s): paced p50 {:>3} ns p99 {:>4} ns; tight loop {:>6.2} ns/publish ({:>10} while running, {:>10} over the whole burst){}",
                    c.readers,
                    c.paced_p50_ns,
                    c.paced_p99_ns,
                    c.ns_per_publish,
                    fmt_rate(1e9 / c.ns_per_publish),
                    fmt_rate(c.publish_rate_per_s),
                    match (c.reader_received_per_s, c.reader_lost_fraction) {
                        (Some(rx), Some(lost)) => format!(
                            "; first reader received {} ({:.0}% overwritten before read)",
                            fmt_rate(rx),
                            lost * 100.0
                        ),
                        _ => String::new(),
                    }
                )?;
            }
        }
    }
    if let Some(ip) = report
        .result("tickring")
        .and_then(|r| r.extra.get("in_process"))
    {
        let g = |k: &str| ip.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        writeln!(out)?;
        writeln!(
            out,
            "tickring with the reader as a thread of the writer's process: p50 {} ns, p99 {} ns, \
             p99.9 {} ns, p99.99 {} ns, max {} ns ({} samples)",
            g("p50_ns"),
            g("p99_ns"),
            g("p999_ns"),
            g("p9999_ns"),
            g("max_ns"),
            g("count")
        )?;
    }
    if let Some(ow) = report.result("floor").and_then(|r| r.extra.get("one_way")) {
        let g = |k: &str| ow.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        writeln!(
            out,
            "floor measured one way (stamps on both cores, like the other paths): p50 {} ns, \
             p99 {} ns, p99.9 {} ns, p99.99 {} ns, max {} ns ({} samples)",
            g("p50_ns"),
            g("p99_ns"),
            g("p999_ns"),
            g("p9999_ns"),
            g("max_ns"),
            g("count")
        )?;
    }
    let gap = report
        .extra
        .get("gap_ns")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    writeln!(out)?;
    writeln!(
        out,
        "latency = one event at a time on an idle path, stamped before send and after receive ({}); \
         the next event goes only after the reader acked the last one, plus a random {}-{} ns pause",
        match report.clock.source {
            ClockSource::Tsc => "TSC, calibration shared with the reader process",
            ClockSource::Monotonic => "CLOCK_MONOTONIC",
        },
        gap,
        gap * 2,
    )?;
    report.write_targets(out)
}
