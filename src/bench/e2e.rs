//! `tickring bench e2e`: wire-to-ring one-way latency on loopback.
//!
//! One replay server ([`crate::replay`]) serves a real capture, paced so
//! that frames go out one at a time (single-message latency, not
//! queueing), and stamps each frame right after it is flushed to the socket
//! ([`SendRecord::send_ns`]). Three consumers of the same frames are
//! measured, one after the other, each against a fresh server:
//!
//! | name | what reads the socket | visible when |
//! |---|---|---|
//! | `tickring` | the real collector (`tickring collect`, a child process, pinned) | a pinned reader spinning on [`Reader::poll`] sees the frame's first event |
//! | `socket_floor` | a non-blocking TCP socket spinning on `recv` after a minimal WebSocket handshake; no parsing | the `recv` that completed the frame returns |
//! | `tokio_baseline` | [`baseline`]: tokio + tokio-tungstenite + serde_json, publishing to a ring | as for `tickring` |
//!
//! One-way latency = visible − send, both CLOCK_REALTIME on the same host.
//! Frames are matched to send records by order per connection, checked by
//! a fingerprint of the frame (the first market event, or the payload's
//! length and CRC-32 for the floor) so a frame that produced no event
//! cannot shift the pairing ([`match_frames`]).
//!
//! Caveat that holds for all three paths alike: the server stamps
//! `send_ns` *after* its `write` returned, and on loopback the kernel may
//! already have delivered the bytes by then, so a spinning reader on
//! another core can see a frame a little before its send stamp. Such
//! samples count as 0 and are reported (`clamped_negative`).

pub mod baseline;
pub mod floor;

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::book::{BuilderConfig, Pipeline};
use crate::event::{Event, EventKind, Exchange};
use crate::feed::{Action, BookUpdate, Channel, Feed, FeedConfig, Sink};
use crate::instrument::Instrument;
use crate::replay::{Pace, ReplayConfig, ReplayServer, SendRecord, StartError};
use crate::ring::{Poll, Reader, ReaderOptions, RingError, StartAt};
use crate::time::now_ns;

/// Names of the measured paths, in report order.
pub const TICKRING: &str = "tickring";
pub const SOCKET_FLOOR: &str = "socket_floor";
pub const TOKIO_BASELINE: &str = "tokio_baseline";

/// Scales of every instrument in the benchmark (the collector's default).
const SCALE: u8 = 8;
/// How far ahead of the expected send record a frame may match (frames
/// whose records were lost in between are counted as missed).
const LOOKAHEAD: usize = 32;
/// Waiting for the consumer to connect, subscribe and show a first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// A publish->visible p99 above this means the reader was descheduled.
const DESCHEDULED_NS: u64 = 50_000;
/// Sends closer than this to the previous one count as back to back.
const BACK_TO_BACK_NS: i64 = 100_000;
/// Extra reading time after the window so its last frames are seen.
const GRACE: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    /// `Kraken` (book channel, depth 10, CRC-32 checked) or `Binance`
    /// (`bookTicker`, 4 symbols).
    pub exchange: Exchange,
    pub fixtures: PathBuf,
    /// Measured time per path, in total over the rounds.
    pub duration: Duration,
    /// The paths take turns this many times (each round measures
    /// `duration / rounds` per path, in a rotating order), so that a change
    /// of the host's load during the run hits every path alike.
    pub rounds: u32,
    /// Time per path and round between the first frame and the measured window.
    pub warmup: Duration,
    /// Market messages per second the server sends.
    pub rate: u32,
    /// Run under SCHED_FIFO: the reader at this priority, the collector
    /// and the tokio baseline one above, the replay server two above (so
    /// a woken collector cannot preempt the server between its `write` and
    /// its send stamp on a shared core). `None`: normal scheduling.
    pub rt_priority: Option<i32>,
    /// The collector busy-polls its completion queue (`[io_uring]
    /// busy_poll`) instead of sleeping in the kernel.
    pub busy_poll: bool,
    /// The `tickring` binary run as `tickring collect` (normally this one).
    pub exe: PathBuf,
}

/// Why the benchmark could not run. Each names what it was doing.
#[derive(Debug)]
pub enum E2eError {
    /// The options make no sense (e.g. an exchange without a capture here).
    Options(String),
    /// The replay server did not start.
    Replay(StartError),
    /// A ring could not be created or opened.
    Ring(RingError),
    /// A system call failed while `doing` something.
    Io { doing: String, source: io::Error },
    /// Something did not happen in time.
    Timeout {
        waiting_for: String,
        after: Duration,
    },
    /// The collector child exited before the end: how, and its last log lines.
    CollectorExited { status: String, log_tail: String },
    /// A peer said something unexpected (handshake, framing).
    Protocol(String),
    /// The tokio baseline collector failed.
    Baseline(String),
}

impl E2eError {
    pub(crate) fn io(doing: impl Into<String>, source: io::Error) -> E2eError {
        E2eError::Io {
            doing: doing.into(),
            source,
        }
    }
}

impl fmt::Display for E2eError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E2eError::Options(s) => f.write_str(s),
            E2eError::Replay(e) => write!(f, "replay server: {e}"),
            E2eError::Ring(e) => write!(f, "ring: {e}"),
            E2eError::Io { doing, source } => write!(f, "{doing}: {source}"),
            E2eError::Timeout { waiting_for, after } => {
                write!(f, "no {waiting_for} within {:.1} s", after.as_secs_f64())
            }
            E2eError::CollectorExited { status, log_tail } => {
                write!(
                    f,
                    "the collector exited early ({status}); its log ends:\n{log_tail}"
                )
            }
            E2eError::Protocol(s) => f.write_str(s),
            E2eError::Baseline(s) => write!(f, "tokio baseline: {s}"),
        }
    }
}

impl std::error::Error for E2eError {}

/// Which core runs what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The replay server's thread.
    pub server: usize,
    /// The collector's hot thread / the tokio baseline's thread.
    pub collector: usize,
    /// The spinning reader (and the spinning socket of `socket_floor`).
    pub reader: usize,
}

impl Layout {
    /// Spreads the three roles over the cores this process may use. With
    /// two cores the server shares the collector's core (the collector
    /// waits in the kernel while the server works, and the reader must not
    /// share a core with anything, since it spins).
    pub fn for_cores(cores: &[usize]) -> Result<Layout, E2eError> {
        match cores {
            [] | [_] => Err(E2eError::Options(format!(
                "the end-to-end benchmark needs at least 2 cores (a spinning reader and the rest); this process may use {}",
                cores.len()
            ))),
            [a, b] => Ok(Layout {
                server: *a,
                collector: *a,
                reader: *b,
            }),
            [a, b, c, ..] => Ok(Layout {
                server: *a,
                collector: *b,
                reader: *c,
            }),
        }
    }

    pub fn shared(&self) -> bool {
        self.server == self.collector
    }

    pub fn describe(&self) -> String {
        if self.shared() {
            format!(
                "replay server and collector share core {} (only 2 cores), reader spins on core {}",
                self.server, self.reader
            )
        } else {
            format!(
                "replay server on core {}, collector on core {}, reader spins on core {}",
                self.server, self.collector, self.reader
            )
        }
    }
}

/// Percentiles of one latency distribution, in ns.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.50),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            p9999_ns: h.value_at_quantile(0.9999),
            max_ns: h.max(),
        })
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits, auto-resizing: exact enough for ns to s.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// Where the time of a ring path went (p50/p99 of each stage).
#[derive(Clone, Debug, PartialEq)]
pub struct Stages {
    /// Server's send stamp -> the consumer's receive stamp (`Event::recv_ts`).
    pub wire_to_recv: Percentiles,
    /// `recv_ts` -> `publish_ts` (parse, book, publish).
    pub recv_to_publish: Percentiles,
    /// `publish_ts` -> the reader saw the event.
    pub publish_to_visible: Percentiles,
}

/// The result of one path.
#[derive(Clone, Debug)]
pub struct PathResult {
    pub name: &'static str,
    /// Single-message latency: the samples that did not wait behind the
    /// previous message (`None` when there were none).
    pub latency: Option<Percentiles>,
    /// Every sample, the `queued` ones included.
    pub all_samples: Option<Percentiles>,
    /// Market messages the server sent in the measured window.
    pub sent: u64,
    /// Of those, how many were never seen by the reader.
    pub missed: u64,
    /// Frames seen that match no market message (control frames for the
    /// floor; must be 0 for the ring paths).
    pub unmatched_frames: u64,
    /// Samples sent before the previous message became visible (or while
    /// the reader napped after it): queueing, not single-message latency;
    /// left out of `latency`, kept in `all_samples`. The server's timer
    /// ticks once a millisecond, so some messages leave back to back.
    pub queued: u64,
    /// Messages the server sent less than 100 µs after the previous one
    /// (its pacing, not the consumer's doing).
    pub back_to_back: u64,
    /// Samples that were visible before their send stamp (counted as 0).
    pub clamped_negative: u64,
    /// Ring paths: the time split by the events' own stamps.
    pub stages: Option<Stages>,
    /// Events lost to ring overruns (must be 0).
    pub ring_lost: u64,
    /// Connections the servers accepted (one per round unless the
    /// consumer reconnected).
    pub connections: u64,
    /// Messages the consumer refused as malformed (must be 0).
    pub parse_errors: u64,
}

/// One target of the issue and whether it was met.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: &'static str,
    pub description: &'static str,
    /// The measured ratio, `None` when a path had no samples.
    pub ratio: Option<f64>,
    pub limit: f64,
    pub pass: bool,
}

/// Everything `tickring bench e2e` reports.
#[derive(Clone, Debug)]
pub struct E2eReport {
    pub exchange: Exchange,
    pub capture: String,
    pub rate: u32,
    pub duration: Duration,
    pub rounds: u32,
    pub warmup: Duration,
    pub rt_priority: Option<i32>,
    pub busy_poll: bool,
    pub layout: Layout,
    pub kernel: String,
    /// io_uring features the collector reported (`/metrics`).
    pub io_uring: Vec<(String, bool)>,
    pub results: Vec<PathResult>,
    pub targets: Vec<Target>,
    /// Things a reader of the numbers should know (load, noise).
    pub notes: Vec<String>,
}

/// The capture each exchange is benchmarked with, and its channel.
struct Scenario {
    file: &'static str,
    channel: Channel,
    channel_name: &'static str,
    /// Path of the WebSocket URL (what the real endpoints use).
    path: &'static str,
}

fn scenario(ex: Exchange) -> Result<Scenario, E2eError> {
    match ex {
        Exchange::Kraken => Ok(Scenario {
            file: "kraken/v2_book.jsonl",
            channel: Channel::Book,
            channel_name: "book",
            path: "/v2",
        }),
        Exchange::Binance => Ok(Scenario {
            file: "binance/combined_bookTicker.jsonl",
            channel: Channel::Bbo,
            channel_name: "bbo",
            path: "/stream",
        }),
        other => Err(E2eError::Options(format!(
            "--exchange {other}: the end-to-end benchmark runs kraken (book) or binance (bookTicker)"
        ))),
    }
}

/// Runs the three paths and compares them.
pub fn run(opts: &E2eOptions) -> Result<E2eReport, E2eError> {
    if opts.rate == 0 {
        return Err(E2eError::Options("--rate must be at least 1".into()));
    }
    if opts.rounds == 0 {
        return Err(E2eError::Options("--rounds must be at least 1".into()));
    }
    if let Some(p) = opts.rt_priority {
        if !(1..=97).contains(&p) {
            return Err(E2eError::Options(format!(
                "--rt-priority {p}: expected 1..=97 (the server runs 2 above)"
            )));
        }
        // Refuse up front rather than measure something else than asked.
        set_scheduling(Some(p))?;
        set_scheduling(None)?;
    }
    let sc = scenario(opts.exchange)?;
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let layout = Layout::for_cores(&cores)?;
    let tmp = TempDir::create()?;
    let capture_file = opts.fixtures.join(sc.file);
    let ctx = Ctx {
        opts,
        sc: &sc,
        layout: &layout,
        tmp: &tmp,
        capture_file: capture_file.clone(),
        runs: std::cell::Cell::new(0),
    };
    let mut io_uring = Vec::new();
    let runs = (|| {
        let mut runs: [Option<PathRun>; 3] = [None, None, None];
        for round in 0..opts.rounds as usize {
            for k in 0..3 {
                // Rotate the order so no path always runs first or last.
                let which = (round + k) % 3;
                let run = match which {
                    0 => ctx.run_tickring(&mut io_uring)?,
                    1 => ctx.run_floor()?,
                    _ => ctx.run_baseline()?,
                };
                match &mut runs[which] {
                    Some(acc) => acc.merge(run),
                    slot => *slot = Some(run),
                }
            }
        }
        Ok::<_, E2eError>(runs)
    })();
    // Whatever happened, this thread may use every core it had again, at
    // normal priority.
    pin_to_cores(&cores);
    let _ = set_scheduling(None);
    let results: Vec<PathResult> = runs?
        .into_iter()
        .zip([TICKRING, SOCKET_FLOOR, TOKIO_BASELINE])
        .filter_map(|(run, name)| run.map(|r| r.into_result(name)))
        .collect();
    let targets = targets(&results);
    let mut notes = Vec::new();
    // The ring costs the reader well under a microsecond; a p99 far above
    // that means the reader was off its core, and the tails measure the host.
    for r in &results {
        if let Some(st) = &r.stages {
            if st.publish_to_visible.p99_ns > DESCHEDULED_NS {
                notes.push(format!(
                    "{}: publish->visible p99 is {:.0} µs: the reader lost its core to other tasks, so the tails measure this host's load, not the paths (use --rt-priority, or an idle core)",
                    r.name,
                    st.publish_to_visible.p99_ns as f64 / 1e3
                ));
            }
        }
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let one = load.split_whitespace().next().unwrap_or("?");
        notes.push(format!(
            "1-minute load average {one} on {} cores: other processes share these cores",
            cores.len()
        ));
    }
    Ok(E2eReport {
        exchange: opts.exchange,
        capture: sc.file.to_string(),
        rate: opts.rate,
        duration: opts.duration,
        rounds: opts.rounds,
        warmup: opts.warmup,
        rt_priority: opts.rt_priority,
        busy_poll: opts.busy_poll,
        layout,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        io_uring,
        results,
        targets,
        notes,
    })
}

/// The targets: tickring p99 <= 2x the socket floor's, and at
/// least 2x lower than the tokio baseline's.
pub fn targets(results: &[PathResult]) -> Vec<Target> {
    let p99 = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.latency.as_ref())
            .map(|l| l.p99_ns.max(1) as f64)
    };
    let (t, f, b) = (p99(TICKRING), p99(SOCKET_FLOOR), p99(TOKIO_BASELINE));
    let vs_floor = t.zip(f).map(|(t, f)| t / f);
    let vs_base = t.zip(b).map(|(t, b)| b / t);
    vec![
        Target {
            name: "tickring_p99_vs_socket_floor",
            description: "tickring p99 / socket_floor p99 <= 2",
            ratio: vs_floor,
            limit: 2.0,
            pass: vs_floor.is_some_and(|r| r <= 2.0),
        },
        Target {
            name: "tokio_baseline_p99_vs_tickring",
            description: "tokio_baseline p99 / tickring p99 >= 2",
            ratio: vs_base,
            limit: 2.0,
            pass: vs_base.is_some_and(|r| r >= 2.0),
        },
    ]
}

/// Shared state of one run.
struct Ctx<'a> {
    opts: &'a E2eOptions,
    sc: &'a Scenario,
    layout: &'a Layout,
    tmp: &'a TempDir,
    capture_file: PathBuf,
    /// Numbers the path runs: each gets a directory (ring, config, log)
    /// of its own, so no run reopens the ring of an earlier one.
    runs: std::cell::Cell<u32>,
}

impl Ctx<'_> {
    fn run_dir(&self, path: &str) -> Result<TempDir, E2eError> {
        let n = self.runs.get();
        self.runs.set(n + 1);
        self.tmp.sub(&format!("{n}-{path}"))
    }
}

/// A replay server with a send-record hook, started on the server core.
struct Served {
    server: ReplayServer,
    records: Arc<Mutex<Vec<SendRecord>>>,
    instruments: Vec<Instrument>,
}

impl Ctx<'_> {
    fn start_server(&self) -> Result<Served, E2eError> {
        let o = self.opts;
        let cap = (u64::from(o.rate)
            * (o.duration + o.warmup + FIRST_FRAME_TIMEOUT)
                .as_secs()
                .max(1))
        .min(10_000_000) as usize;
        let records = Arc::new(Mutex::new(Vec::with_capacity(cap)));
        let sink = records.clone();
        let mut cfg = ReplayConfig::new(
            o.exchange,
            vec![self.capture_file.clone()],
            SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        cfg.pace = Pace::PerSecond(o.rate);
        cfg.looping = true;
        cfg.on_send = Some(Arc::new(move |r: &SendRecord| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(*r);
        }));
        // The server thread inherits this thread's affinity and scheduling.
        let rt = o.rt_priority;
        pin(self.layout.server);
        set_scheduling(rt.map(|p| p + 2))?;
        let server = ReplayServer::start(cfg).map_err(E2eError::Replay);
        pin(self.layout.reader);
        set_scheduling(rt)?;
        let server = server?;
        let instruments = server
            .capture()
            .symbols
            .iter()
            .map(|s| {
                let sym = match o.exchange {
                    Exchange::Binance => s.to_ascii_uppercase(),
                    _ => s.clone(),
                };
                Instrument::new(o.exchange, &sym, SCALE, SCALE)
                    .map_err(|e| E2eError::Options(format!("capture symbol: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Served {
            server,
            records,
            instruments,
        })
    }

    fn url(&self, server: &ReplayServer) -> String {
        format!("{}{}", server.url(), self.sc.path)
    }

    fn plan(&self) -> Plan {
        Plan {
            first_deadline: now_ns() + FIRST_FRAME_TIMEOUT.as_nanos() as i64,
            warmup_ns: self.opts.warmup.as_nanos() as i64,
            duration_ns: (self.opts.duration / self.opts.rounds).as_nanos() as i64,
            nap: self.opts.rt_priority.map(|_| {
                // A fifth of the gap between messages, at most 200 µs.
                (Duration::from_secs(1) / self.opts.rate / 5).min(Duration::from_micros(200))
            }),
        }
    }

    fn feed_config(&self, instruments: &[Instrument]) -> FeedConfig {
        let mut fc = FeedConfig::new(instruments.to_vec());
        fc.book_depth = 10;
        fc
    }

    /// `tickring`: the collector binary as a child, pinned, into a ring in
    /// the temporary directory.
    fn run_tickring(&self, io_uring: &mut Vec<(String, bool)>) -> Result<PathRun, E2eError> {
        let served = self.start_server()?;
        let dir = self.run_dir(TICKRING)?;
        let ring_name = "e2e-tickring";
        let config = dir.path.join("tickring-collector.toml");
        let text = self.collector_config(&served, ring_name, &dir.path);
        std::fs::write(&config, text)
            .map_err(|e| E2eError::io(format!("writing {}", config.display()), e))?;
        let log = dir.path.join("tickring-collector.log");
        // A child inherits its creator's scheduling: spawn it at normal
        // priority (the collector raises its own hot thread).
        set_scheduling(None)?;
        let child = CollectorChild::spawn(&self.opts.exe, &config, &log);
        set_scheduling(self.opts.rt_priority)?;
        let mut child = child?;
        let metrics = child.announced_metrics(FIRST_FRAME_TIMEOUT)?;
        let ring_path = dir.path.join(format!("{ring_name}.ring"));
        let mut reader =
            wait_for_ring(&ring_path, FIRST_FRAME_TIMEOUT, &mut || child.check_alive())?;
        let plan = self.plan();
        let spun = spin_ring(&mut reader, &plan, &mut || child.check_alive())?;
        // What the collector itself reports: io_uring features, parse errors.
        let mut parse_errors = 0;
        if let Ok(text) = http_get(metrics, "/metrics") {
            *io_uring = parse_features(&text);
            parse_errors = metric_sum(&text, "tickring_collector_parse_errors_total");
        }
        child.stop();
        let conns = served.server.connections().len() as u64;
        let records = take_records(served);
        let mut pipeline = Pipeline::new(
            records.exchange,
            self.feed_config(&records.instruments),
            BuilderConfig::default(),
        );
        let mut out = Vec::new();
        let expected = expected_ring_fps(&records.capture_texts, |text| {
            out.clear();
            let _ = pipeline.on_frame(text, 0, &mut Keep(&mut out));
            first_market_fp(&out)
        });
        let mut r = ring_run(plan.nap, &spun, &records.list, &expected, conns);
        r.parse_errors = parse_errors;
        Ok(r)
    }

    /// The collector's config: the server's URL, a ring in the temporary
    /// directory, the layout's cores, metrics on a free port.
    fn collector_config(&self, served: &Served, ring_name: &str, dir: &Path) -> String {
        let symbols: Vec<String> = served
            .instruments
            .iter()
            .map(|i| format!("{:?}", i.symbol))
            .collect();
        let l = self.layout;
        format!(
            "# written by `tickring bench e2e`\n\
             exchange = \"{ex}\"\n\
             symbols = [{syms}]\n\
             channels = [\"{ch}\"]\n\
             endpoint = \"{url}\"\n\
             rest_endpoint = \"http://{addr}\"\n\
             book_depth = 10\n\
             default_scale = {{ price_scale = {SCALE}, qty_scale = {SCALE} }}\n\
             [ring]\nname = \"{ring_name}\"\nbacking = \"shm\"\ndir = {dir:?}\ncapacity = 65536\n\
             [cpu]\ncore = {core}\nhousekeeping_core = {hk}\n{fifo}\
             [io_uring]\nbusy_poll = {busy}\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            ex = self.opts.exchange.name(),
            syms = symbols.join(", "),
            ch = self.sc.channel_name,
            url = self.url(&served.server),
            addr = served.server.local_addr(),
            dir = dir.display().to_string(),
            core = l.collector,
            hk = l.server,
            busy = self.opts.busy_poll,
            fifo = match self.opts.rt_priority {
                Some(p) => format!("sched_fifo_priority = {}\n", p + 1),
                None => String::new(),
            },
        )
    }

    /// `socket_floor`: a plain socket spinning on a non-blocking `recv`.
    fn run_floor(&self) -> Result<PathRun, E2eError> {
        let served = self.start_server()?;
        let feed = Feed::new(self.opts.exchange, self.feed_config(&served.instruments));
        let subs = feed.subscribe_messages(&[self.sc.channel]);
        let addr = served.server.local_addr();
        let mut conn = floor::FloorConn::connect(addr, self.sc.path, &subs, FIRST_FRAME_TIMEOUT)?;
        let plan = self.plan();
        let spun = conn.spin(&plan)?;
        drop(conn);
        let conns = served.server.connections().len() as u64;
        let records = take_records(served);
        // A frame's fingerprint: its length and CRC-32, of whichever form
        // (envelope or bare) of the message the server sent.
        let fps: Vec<Option<u64>> = records
            .list
            .iter()
            .map(|r| {
                let (text, raw) = &records.capture_texts[r.capture_index];
                [text, raw]
                    .into_iter()
                    .find(|t| t.len() == r.bytes)
                    .map(|t| floor::fingerprint(t))
            })
            .collect();
        // Frames that are no market message (acks, heartbeats, status) are
        // the server's control messages: not measured.
        let market: std::collections::HashSet<u64> = fps.iter().flatten().copied().collect();
        let frame_fps: Vec<Option<u64>> = spun
            .frames
            .iter()
            .map(|f| f.fp.filter(|fp| market.contains(fp)))
            .collect();
        let m = match_frames(&frame_fps, &fps);
        let mut acc = Accumulator::new(spun.window, &records.list, &fps, plan.nap);
        for &(fi, ri) in &m.pairs {
            acc.sample(ri, spun.frames[fi].visible_ns, None);
        }
        Ok(acc.finish(m.unmatched, 0, conns))
    }

    /// `tokio_baseline`: tokio + tokio-tungstenite + serde_json into a ring.
    fn run_baseline(&self) -> Result<PathRun, E2eError> {
        let served = self.start_server()?;
        let feed = Feed::new(self.opts.exchange, self.feed_config(&served.instruments));
        let dir = self.run_dir(TOKIO_BASELINE)?;
        let cfg = baseline::BaselineConfig {
            exchange: self.opts.exchange,
            addr: served.server.local_addr(),
            url: self.url(&served.server),
            subscribe: feed.subscribe_messages(&[self.sc.channel]),
            instruments: served.instruments.clone(),
            ring_dir: dir.path.clone(),
            ring_name: "e2e-tokio-baseline".into(),
            core: Some(self.layout.collector),
            fifo_priority: self.opts.rt_priority.map(|p| p + 1),
        };
        let mut base = baseline::Baseline::start(cfg, FIRST_FRAME_TIMEOUT)?;
        let mut reader = Reader::open(
            base.ring_path(),
            &ReaderOptions {
                start: StartAt::Oldest,
                ..ReaderOptions::default()
            },
        )
        .map_err(E2eError::Ring)?;
        let plan = self.plan();
        let spun = spin_ring(&mut reader, &plan, &mut || base.check_alive())?;
        let stats = base.stop()?;
        let conns = served.server.connections().len() as u64;
        let records = take_records(served);
        let idx = baseline::Instruments::new(&records.instruments);
        let mut out = Vec::new();
        let expected = expected_ring_fps(&records.capture_texts, |text| {
            out.clear();
            let _ = baseline::parse_frame(records.exchange, text, &idx, 0, &mut out);
            first_market_fp(&out)
        });
        let mut r = ring_run(plan.nap, &spun, &records.list, &expected, conns);
        r.parse_errors = stats.errors;
        Ok(r)
    }
}
// ---------------------------------------------------------------------------
// Reading, matching, summarising.

/// When a spinning reader stops: the window starts `warmup` after the first
/// market frame and lasts `duration`; reading goes on for [`GRACE`] more.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Absolute CLOCK_REALTIME ns by which a first frame must be seen.
    pub first_deadline: i64,
    pub warmup_ns: i64,
    pub duration_ns: i64,
    /// Under SCHED_FIFO, the reader sleeps this long after each frame
    /// (while no message is due), so the other tasks of its core run in
    /// short slices instead of the kernel's RT throttling stalling the
    /// reader for up to 50 ms a second.
    pub nap: Option<Duration>,
}

impl Plan {
    /// The measured window and the end of reading, given the first frame.
    pub(crate) fn window(&self, first_ns: i64) -> ((i64, i64), i64) {
        let start = first_ns + self.warmup_ns;
        let end = start + self.duration_ns;
        ((start, end), end + GRACE.as_nanos() as i64)
    }
}

/// A frame as a ring reader saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingFrame {
    pub visible_ns: i64,
    pub recv_ts: i64,
    pub publish_ts: i64,
    /// Fingerprint of the frame's first market event (`None`: status only).
    pub fp: Option<u64>,
}

/// What a spinning reader collected.
pub(crate) struct Spun<F> {
    pub frames: Vec<F>,
    /// Send stamps in `[start, end)` are measured.
    pub window: (i64, i64),
    pub ring_lost: u64,
}

fn is_market(ev: &Event) -> bool {
    !matches!(ev.kind(), Some(EventKind::Status) | None)
}

/// The identity of an event, without its timestamps of this run and
/// without the instrument id (which is per ring).
pub(crate) fn event_fingerprint(ev: &Event) -> u64 {
    let mut h = Fnv::new();
    h.u64(u64::from(ev.kind));
    h.u64(u64::from(ev.side));
    h.u64(ev.exch_ts as u64);
    h.u64(ev.price as u64);
    h.u64(ev.qty as u64);
    h.u64(ev.seq);
    h.finish()
}

/// FNV-1a over 64-bit words: a fingerprint, not a defence against anyone.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Spins on `reader` until the plan's end; each new frame (a new
/// `(recv_ts, publish_ts)` pair: the collector stamps both once per
/// message) is stamped when its first event shows up.
fn spin_ring(
    reader: &mut Reader,
    plan: &Plan,
    alive: &mut dyn FnMut() -> Result<(), E2eError>,
) -> Result<Spun<RingFrame>, E2eError> {
    let mut frames: Vec<RingFrame> = Vec::with_capacity(1 << 16);
    let mut key = (i64::MIN, i64::MIN);
    let mut end = plan.first_deadline;
    let mut window = (i64::MAX, i64::MAX);
    let mut started = false;
    let mut ring_lost = 0u64;
    let mut idle = 0u32;
    let mut napped = 0usize;
    loop {
        match reader.poll() {
            Poll::Event(ev) => {
                if (ev.recv_ts, ev.publish_ts) != key {
                    let now = now_ns();
                    key = (ev.recv_ts, ev.publish_ts);
                    frames.push(RingFrame {
                        visible_ns: now,
                        recv_ts: ev.recv_ts,
                        publish_ts: ev.publish_ts,
                        fp: None,
                    });
                    if now >= end {
                        break;
                    }
                }
                if is_market(&ev) {
                    let f = frames.last_mut().expect("a frame was pushed above");
                    if f.fp.is_none() {
                        f.fp = Some(event_fingerprint(&ev));
                        if !started {
                            started = true;
                            (window, end) = plan.window(f.visible_ns);
                        }
                    }
                }
            }
            Poll::Empty => {
                if let (Some(nap), true) = (plan.nap, frames.len() > napped) {
                    // The frame's events are all read: nap before the next.
                    napped = frames.len();
                    std::thread::sleep(nap);
                }
                idle = idle.wrapping_add(1);
                if idle % 1024 == 0 {
                    if now_ns() >= end {
                        break;
                    }
                    if idle % (1 << 20) == 0 {
                        alive()?;
                    }
                }
            }
            Poll::Overrun { lost } => ring_lost += lost,
            Poll::WriterRestarted { .. } => {}
            Poll::WriterGone(reason) => {
                alive()?;
                return Err(E2eError::Protocol(format!(
                    "the ring's writer went away during the run ({reason:?})"
                )));
            }
        }
    }
    if !started {
        alive()?;
        return Err(E2eError::Timeout {
            waiting_for: "market event in the ring".into(),
            after: FIRST_FRAME_TIMEOUT,
        });
    }
    Ok(Spun {
        frames,
        window,
        ring_lost,
    })
}

/// Frames paired with send records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matching {
    /// (frame index, record index), both increasing.
    pub pairs: Vec<(usize, usize)>,
    /// Frames with a fingerprint that matched no record.
    pub unmatched: u64,
}

/// Pairs frames with send records in order. A frame's fingerprint must
/// equal its record's; when it does not, the next [`LOOKAHEAD`] records
/// are tried (records in between were never seen: the consumer dropped or
/// merged them). Frames without a fingerprint (control messages, status
/// events) and records without one (messages that yield no event) are
/// skipped.
pub fn match_frames(frames: &[Option<u64>], records: &[Option<u64>]) -> Matching {
    let mut m = Matching::default();
    let mut next = 0usize;
    for (fi, fp) in frames.iter().enumerate() {
        let Some(fp) = fp else { continue };
        let end = (next + LOOKAHEAD).min(records.len());
        match (next..end).find(|&ri| records[ri] == Some(*fp)) {
            Some(ri) => {
                m.pairs.push((fi, ri));
                next = ri + 1;
            }
            None => m.unmatched += 1,
        }
    }
    m
}

/// Builds the latency histograms of the samples in a window.
struct Accumulator<'a> {
    window: (i64, i64),
    records: &'a [SendRecord],
    fps: &'a [Option<u64>],
    seen: Vec<bool>,
    /// Latency of each seen record (to tell queued samples).
    lat: Vec<i64>,
    /// Single-message samples (see [`PathResult::queued`]).
    hist: Histogram<u64>,
    /// Every sample, queued ones included.
    all: Histogram<u64>,
    stages: [Histogram<u64>; 3],
    has_stages: bool,
    clamped: u64,
    queued: u64,
    /// The reader's nap after each frame, ns.
    nap_ns: i64,
}

impl<'a> Accumulator<'a> {
    fn new(
        window: (i64, i64),
        records: &'a [SendRecord],
        fps: &'a [Option<u64>],
        nap: Option<Duration>,
    ) -> Self {
        Accumulator {
            window,
            records,
            fps,
            seen: vec![false; records.len()],
            lat: vec![i64::MIN; records.len()],
            hist: new_histogram(),
            all: new_histogram(),
            stages: [new_histogram(), new_histogram(), new_histogram()],
            has_stages: false,
            clamped: 0,
            queued: 0,
            nap_ns: nap.map_or(0, |n| n.as_nanos() as i64),
        }
    }

    fn in_window(&self, ri: usize) -> bool {
        let s = self.records[ri].send_ns;
        s >= self.window.0 && s < self.window.1
    }

    /// Record `ri` became visible at `visible`; `stamps` are the ring
    /// frame's `(recv_ts, publish_ts)`.
    fn sample(&mut self, ri: usize, visible: i64, stamps: Option<(i64, i64)>) {
        self.seen[ri] = true;
        let send = self.records[ri].send_ns;
        let lat = visible - send;
        self.lat[ri] = lat;
        if !self.in_window(ri) {
            return;
        }
        if lat < 0 {
            self.clamped += 1;
        }
        let _ = self.all.record(lat.max(0) as u64);
        // Sent before the previous message was visible (or while the
        // reader napped after it): it waited behind it. Pairs come in
        // record order, so the previous latency is known by now.
        if ri > 0 && self.lat[ri - 1] != i64::MIN {
            let gap = send - self.records[ri - 1].send_ns;
            if gap < self.lat[ri - 1] + self.nap_ns {
                self.queued += 1;
                return;
            }
        }
        let _ = self.hist.record(lat.max(0) as u64);
        if let Some((recv, publish)) = stamps {
            self.has_stages = true;
            for (h, v) in
                self.stages
                    .iter_mut()
                    .zip([recv - send, publish - recv, visible - publish])
            {
                let _ = h.record(v.max(0) as u64);
            }
        }
    }

    fn finish(self, unmatched_frames: u64, ring_lost: u64, connections: u64) -> PathRun {
        let mut sent = 0;
        let mut missed = 0;
        let mut back_to_back = 0;
        for ri in 0..self.records.len() {
            if !self.in_window(ri) || self.fps[ri].is_none() {
                continue;
            }
            sent += 1;
            if !self.seen[ri] {
                missed += 1;
            }
            if ri > 0 && self.records[ri].send_ns - self.records[ri - 1].send_ns < BACK_TO_BACK_NS {
                back_to_back += 1;
            }
        }
        PathRun {
            hist: self.hist,
            all: self.all,
            stages: self.has_stages.then_some(self.stages),
            sent,
            missed,
            unmatched_frames,
            queued: self.queued,
            back_to_back,
            clamped_negative: self.clamped,
            ring_lost,
            connections,
            parse_errors: 0,
        }
    }
}

/// One path's measurements in one round; the rounds of a path merge.
pub(crate) struct PathRun {
    hist: Histogram<u64>,
    all: Histogram<u64>,
    /// send->recv, recv->publish, publish->visible (ring paths).
    stages: Option<[Histogram<u64>; 3]>,
    sent: u64,
    missed: u64,
    unmatched_frames: u64,
    queued: u64,
    back_to_back: u64,
    clamped_negative: u64,
    ring_lost: u64,
    connections: u64,
    parse_errors: u64,
}

impl PathRun {
    fn merge(&mut self, o: PathRun) {
        // Auto-resizing histograms of the same precision always add.
        let _ = self.hist.add(&o.hist);
        let _ = self.all.add(&o.all);
        match (&mut self.stages, o.stages) {
            (Some(a), Some(b)) => {
                for (a, b) in a.iter_mut().zip(b.iter()) {
                    let _ = a.add(b);
                }
            }
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
        self.sent += o.sent;
        self.missed += o.missed;
        self.unmatched_frames += o.unmatched_frames;
        self.queued += o.queued;
        self.back_to_back += o.back_to_back;
        self.clamped_negative += o.clamped_negative;
        self.ring_lost += o.ring_lost;
        self.connections += o.connections;
        self.parse_errors += o.parse_errors;
    }

    fn into_result(self, name: &'static str) -> PathResult {
        let stages = self.stages.and_then(|[a, b, c]| {
            Some(Stages {
                wire_to_recv: Percentiles::of(&a)?,
                recv_to_publish: Percentiles::of(&b)?,
                publish_to_visible: Percentiles::of(&c)?,
            })
        });
        PathResult {
            name,
            latency: Percentiles::of(&self.hist),
            all_samples: Percentiles::of(&self.all),
            sent: self.sent,
            missed: self.missed,
            unmatched_frames: self.unmatched_frames,
            queued: self.queued,
            back_to_back: self.back_to_back,
            clamped_negative: self.clamped_negative,
            stages,
            ring_lost: self.ring_lost,
            connections: self.connections,
            parse_errors: self.parse_errors,
        }
    }
}

/// Send records and the capture's texts, after the server stopped.
struct Records {
    exchange: Exchange,
    list: Vec<SendRecord>,
    /// Per capture index: (line as recorded, bare Binance `data` text).
    capture_texts: Vec<(Vec<u8>, Vec<u8>)>,
    instruments: Vec<Instrument>,
}

fn take_records(served: Served) -> Records {
    let exchange = served.server.capture().exchange;
    let capture_texts = served
        .server
        .capture()
        .msgs
        .iter()
        .map(|m| {
            (
                m.text.as_str().as_bytes().to_vec(),
                m.raw.as_str().as_bytes().to_vec(),
            )
        })
        .collect();
    served.server.stop();
    let mut list = std::mem::take(&mut *served.records.lock().unwrap_or_else(|e| e.into_inner()));
    list.sort_by_key(|r| (r.conn_id, r.n));
    Records {
        exchange,
        list,
        capture_texts,
        instruments: served.instruments,
    }
}

/// A sink that keeps the events of one frame.
struct Keep<'a>(&'a mut Vec<Event>);

impl Sink for Keep<'_> {
    fn event(&mut self, ev: &Event) {
        self.0.push(*ev);
    }
    fn book(&mut self, _update: &BookUpdate, events: &[Event]) {
        self.0.extend_from_slice(events);
    }
    fn action(&mut self, _action: Action) {}
}

fn first_market_fp(events: &[Event]) -> Option<u64> {
    events.iter().find(|e| is_market(e)).map(event_fingerprint)
}

/// Per capture index, the fingerprint `frame` gives the message's events,
/// running the capture once, in order (as the consumer saw its first lap;
/// later laps repeat the same lines).
fn expected_ring_fps(
    texts: &[(Vec<u8>, Vec<u8>)],
    mut frame: impl FnMut(&[u8]) -> Option<u64>,
) -> Vec<Option<u64>> {
    texts.iter().map(|(text, _)| frame(text)).collect()
}

fn ring_run(
    nap: Option<Duration>,
    spun: &Spun<RingFrame>,
    records: &[SendRecord],
    capture_fps: &[Option<u64>],
    connections: u64,
) -> PathRun {
    let fps: Vec<Option<u64>> = records
        .iter()
        .map(|r| capture_fps.get(r.capture_index).copied().flatten())
        .collect();
    let frame_fps: Vec<Option<u64>> = spun.frames.iter().map(|f| f.fp).collect();
    let m = match_frames(&frame_fps, &fps);
    let mut acc = Accumulator::new(spun.window, records, &fps, nap);
    for &(fi, ri) in &m.pairs {
        let f = &spun.frames[fi];
        acc.sample(ri, f.visible_ns, Some((f.recv_ts, f.publish_ts)));
    }
    acc.finish(m.unmatched, spun.ring_lost, connections)
}

// ---------------------------------------------------------------------------
// Processes, files, cores.

/// A directory of its own under /dev/shm (the rings, the collector's
/// config and log), removed with everything in it when dropped.
pub(crate) struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// A fresh directory `name` inside this one, removed when dropped.
    fn sub(&self, name: &str) -> Result<TempDir, E2eError> {
        let path = self.path.join(name);
        std::fs::create_dir(&path)
            .map_err(|e| E2eError::io(format!("creating {}", path.display()), e))?;
        Ok(TempDir { path })
    }

    fn create() -> Result<TempDir, E2eError> {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "tickring-bench-e2e-{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir(&path)
            .map_err(|e| E2eError::io(format!("creating {}", path.display()), e))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `tickring collect` as a child process. Dropping it stops it: SIGTERM,
/// then SIGKILL if it has not exited within 3 s.
struct CollectorChild {
    child: Child,
    log: PathBuf,
    stdout: Option<mpsc::Receiver<String>>,
    exited: bool,
}

impl CollectorChild {
    fn spawn(exe: &Path, config: &Path, log: &Path) -> Result<CollectorChild, E2eError> {
        let log_file = std::fs::File::create(log)
            .map_err(|e| E2eError::io(format!("creating {}", log.display()), e))?;
        let mut child = Command::new(exe)
            .arg("collect")
            .arg("--config")
            .arg(config)
            .arg("--announce")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| E2eError::io(format!("starting {} collect", exe.display()), e))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(CollectorChild {
            child,
            log: log.to_path_buf(),
            stdout: Some(rx),
            exited: false,
        })
    }

    /// The metrics address the collector prints with `--announce`.
    fn announced_metrics(&mut self, within: Duration) -> Result<SocketAddr, E2eError> {
        let rx = self
            .stdout
            .take()
            .expect("announced_metrics is called once");
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("metrics http://") {
                        return addr.trim().parse().map_err(|_| {
                            E2eError::Protocol(format!("the collector announced {line:?}"))
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check_alive()?;
                    if left.is_zero() {
                        return Err(E2eError::Timeout {
                            waiting_for: "metrics address from the collector".into(),
                            after: within,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the child is exiting.
                    std::thread::sleep(Duration::from_millis(200));
                    self.check_alive()?;
                    return Err(E2eError::Protocol(
                        "the collector closed its stdout without announcing its metrics address"
                            .into(),
                    ));
                }
            }
        }
    }

    /// An error naming the exit status and the log's tail once it exited.
    fn check_alive(&mut self) -> Result<(), E2eError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.exited = true;
                Err(E2eError::CollectorExited {
                    status: status.to_string(),
                    log_tail: log_tail(&self.log, 15),
                })
            }
            Err(e) => Err(E2eError::io("checking on the collector", e)),
        }
    }

    fn stop(&mut self) {
        if self.exited {
            return;
        }
        self.exited = true;
        crate::process::terminate(&mut self.child, Duration::from_secs(3));
    }
}

impl Drop for CollectorChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Opens the ring once its writer has created it.
fn wait_for_ring(
    path: &Path,
    within: Duration,
    alive: &mut dyn FnMut() -> Result<(), E2eError>,
) -> Result<Reader, E2eError> {
    let deadline = Instant::now() + within;
    let opts = ReaderOptions {
        start: StartAt::Oldest,
        ..ReaderOptions::default()
    };
    loop {
        // The writer renames a complete file into place: once the name
        // exists, it is a valid ring.
        if path.exists() {
            return Reader::open(path, &opts).map_err(E2eError::Ring);
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(E2eError::Timeout {
                waiting_for: format!("ring {}", path.display()),
                after: within,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1 (the collector's metrics endpoint).
fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    match body.split_once("\r\n\r\n") {
        Some((head, rest)) if head.starts_with("HTTP/1.1 200") => Ok(rest.to_string()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("GET {path}: unexpected answer"),
        )),
    }
}

/// `tickring_collector_io_uring_feature{...,feature="X"} 1` lines.
pub fn parse_features(metrics: &str) -> Vec<(String, bool)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("tickring_collector_io_uring_feature{"))
        .filter_map(|l| {
            let name = l.split("feature=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?;
            Some((name.to_string(), value.trim() == "1"))
        })
        .collect()
}

/// The sum of every sample of a metric (all label sets).
fn metric_sum(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Pins the calling thread to one core (best effort: a failure leaves it
/// unpinned, which the numbers will show).
fn pin(core: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

/// SCHED_FIFO at `priority` for the calling thread, or back to normal
/// scheduling with `None`. Threads it spawns inherit it.
pub(crate) fn set_scheduling(priority: Option<i32>) -> Result<(), E2eError> {
    let (policy, prio) = match priority {
        Some(p) => (libc::SCHED_FIFO, p),
        None => (libc::SCHED_OTHER, 0),
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid,
    // initialised sched_param.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(E2eError::io(
            format!("setting SCHED_FIFO priority {prio} (needs CAP_SYS_NICE)"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Lets the calling thread run on all of `cores` again.
fn pin_to_cores(cores: &[usize]) {
    // SAFETY: cpu_set_t is a plain bit array; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cores {
        // SAFETY: CPU_SET writes one bit of `set`; `c` comes from the
        // kernel's own list of this process's cores (< CPU_SETSIZE).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: sched_setaffinity on the calling thread (0) with a valid,
    // initialised set of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

// ---------------------------------------------------------------------------
// Output.

fn percentiles_json(p: Option<&Percentiles>) -> Value {
    match p {
        Some(p) => json!({
            "count": p.count,
            "min_ns": p.min_ns,
            "mean_ns": p.mean_ns.round() as u64,
            "p50_ns": p.p50_ns,
            "p99_ns": p.p99_ns,
            "p999_ns": p.p999_ns,
            "p9999_ns": p.p9999_ns,
            "max_ns": p.max_ns,
        }),
        None => Value::Null,
    }
}

impl E2eReport {
    /// `{"results": [{"name", "p50_ns", "p99_ns", "p999_ns", "p9999_ns",
    /// "max_ns", "throughput_per_s", ...}], "targets": [...], ...}`.
    /// `throughput_per_s` is null: the paced run measures latency only.
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let l = r.latency.as_ref();
                json!({
                    "name": r.name,
                    "p50_ns": l.map(|l| l.p50_ns),
                    "p99_ns": l.map(|l| l.p99_ns),
                    "p999_ns": l.map(|l| l.p999_ns),
                    "p9999_ns": l.map(|l| l.p9999_ns),
                    "max_ns": l.map(|l| l.max_ns),
                    "throughput_per_s": Value::Null,
                    "min_ns": l.map(|l| l.min_ns),
                    "mean_ns": l.map(|l| l.mean_ns.round() as u64),
                    "samples": l.map_or(0, |l| l.count),
                    "all_samples": percentiles_json(r.all_samples.as_ref()),
                    "sent": r.sent,
                    "missed": r.missed,
                    "unmatched_frames": r.unmatched_frames,
                    "queued": r.queued,
                    "back_to_back_sends": r.back_to_back,
                    "clamped_negative": r.clamped_negative,
                    "ring_lost": r.ring_lost,
                    "connections": r.connections,
                    "parse_errors": r.parse_errors,
                    "stages": r.stages.as_ref().map(|s| json!({
                        "wire_to_recv": percentiles_json(Some(&s.wire_to_recv)),
                        "recv_to_publish": percentiles_json(Some(&s.recv_to_publish)),
                        "publish_to_visible": percentiles_json(Some(&s.publish_to_visible)),
                    })),
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "ratio": t.ratio.map(|r| (r * 100.0).round() / 100.0),
                    "limit": t.limit,
                    "pass": t.pass,
                })
            })
            .collect();
        let features: serde_json::Map<String, Value> = self
            .io_uring
            .iter()
            .map(|(k, v)| (k.clone(), Value::Bool(*v)))
            .collect();
        json!({
            "benchmark": "e2e",
            "exchange": self.exchange.name(),
            "capture": self.capture,
            "rate_per_s": self.rate,
            "duration_s": self.duration.as_secs_f64(),
            "rounds": self.rounds,
            "rt_priority": self.rt_priority,
            "busy_poll": self.busy_poll,
            "warmup_s": self.warmup.as_secs_f64(),
            "layout": {
                "server_core": self.layout.server,
                "collector_core": self.layout.collector,
                "reader_core": self.layout.reader,
                "shared_core": self.layout.shared(),
                "note": self.layout.describe(),
            },
            "kernel": self.kernel,
            "io_uring_features": features,
            "results": results,
            "targets": targets,
            "notes": self.notes,
        })
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wire-to-ring one-way latency, {} ({}), {} msg/s, {:.1} s per path in {} rounds (each after {:.1} s warm-up)",
            self.exchange,
            self.capture,
            self.rate,
            self.duration.as_secs_f64(),
            self.rounds,
            self.warmup.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "layout: {}; {}",
            self.layout.describe(),
            match self.rt_priority {
                Some(p) => format!(
                    "SCHED_FIFO: reader {p}, collectors {}, server {}",
                    p + 1,
                    p + 2
                ),
                None => "normal scheduling (--rt-priority for SCHED_FIFO)".into(),
            }
        );
        let feats: Vec<String> = self
            .io_uring
            .iter()
            .map(|(k, v)| format!("{k}={}", if *v { "on" } else { "off" }))
            .collect();
        let _ = writeln!(
            s,
            "io_uring (kernel {}): {}",
            self.kernel,
            if feats.is_empty() {
                "not reported".to_string()
            } else {
                feats.join(" ")
            }
        );
        let _ = writeln!(
            s,
            "\n{:<16} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
            "path",
            "samples",
            "p50 µs",
            "p99 µs",
            "p99.9",
            "p99.99",
            "max µs",
            "missed",
            "queued",
            "burst"
        );
        for r in &self.results {
            match &r.latency {
                Some(l) => {
                    let _ = writeln!(
                        s,
                        "{:<16} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
                        r.name,
                        l.count,
                        us(l.p50_ns),
                        us(l.p99_ns),
                        us(l.p999_ns),
                        us(l.p9999_ns),
                        us(l.max_ns),
                        r.missed,
                        r.queued,
                        r.back_to_back
                    );
                }
                None => {
                    let _ = writeln!(s, "{:<16} no samples (sent {})", r.name, r.sent);
                }
            }
        }
        for r in &self.results {
            if let Some(st) = &r.stages {
                let _ = writeln!(
                    s,
                    "  {:<14} stages p50/p99 µs: send->recv {}/{}  recv->publish {}/{}  publish->visible {}/{}",
                    r.name,
                    us(st.wire_to_recv.p50_ns),
                    us(st.wire_to_recv.p99_ns),
                    us(st.recv_to_publish.p50_ns),
                    us(st.recv_to_publish.p99_ns),
                    us(st.publish_to_visible.p50_ns),
                    us(st.publish_to_visible.p99_ns),
                );
            }
            let mut odd = Vec::new();
            if r.clamped_negative > 0 {
                odd.push(format!(
                    "{} visible before the send stamp (counted 0)",
                    r.clamped_negative
                ));
            }
            if r.unmatched_frames > 0 {
                odd.push(format!("{} frames matched no message", r.unmatched_frames));
            }
            if r.ring_lost > 0 {
                odd.push(format!("{} events lost to overruns", r.ring_lost));
            }
            if r.parse_errors > 0 {
                odd.push(format!("{} parse errors", r.parse_errors));
            }
            if r.connections > u64::from(self.rounds) {
                odd.push(format!(
                    "{} connections in {} rounds (reconnected)",
                    r.connections, self.rounds
                ));
            }
            if !odd.is_empty() {
                let _ = writeln!(s, "  {:<14} {}", r.name, odd.join("; "));
            }
        }
        let _ = writeln!(
            s,
            "(percentiles of single messages; `queued` ones, sent before the previous was visible, are left out)"
        );
        let _ = writeln!(s);
        for t in &self.targets {
            let _ = writeln!(
                s,
                "{} {:<34} measured {}",
                if t.pass { "PASS" } else { "MISS" },
                t.description,
                t.ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "n/a".into())
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64, send_ns: i64, capture_index: usize) -> SendRecord {
        SendRecord {
            conn_id: 1,
            n,
            capture_index,
            lap: 0,
            bytes: 10,
            send_ns,
        }
    }

    #[test]
    fn matching_pairs_in_order_and_skips_control_frames() {
        let frames = [Some(1), None, Some(2), Some(3)];
        let records = [Some(1), Some(2), Some(3)];
        let m = match_frames(&frames, &records);
        assert_eq!(m.pairs, vec![(0, 0), (2, 1), (3, 2)]);
        assert_eq!(m.unmatched, 0);
    }

    #[test]
    fn a_message_that_never_showed_does_not_shift_the_pairing() {
        // Record 1 (fp 20) never became visible; frame 1 belongs to record 2.
        let frames = [Some(10), Some(30), Some(40)];
        let records = [Some(10), Some(20), Some(30), Some(40)];
        let m = match_frames(&frames, &records);
        assert_eq!(m.pairs, vec![(0, 0), (1, 2), (2, 3)]);
    }

    #[test]
    fn a_frame_no_record_explains_is_counted_not_paired() {
        let frames = [Some(10), Some(99), Some(20)];
        let records = [Some(10), Some(20)];
        let m = match_frames(&frames, &records);
        assert_eq!(m.pairs, vec![(0, 0), (2, 1)]);
        assert_eq!(m.unmatched, 1);
    }

    #[test]
    fn repeated_fingerprints_of_later_laps_pair_with_their_own_lap() {
        // A 2-message capture served twice: fps repeat, order decides.
        let frames = [Some(1), Some(2), Some(1), Some(2)];
        let records = [Some(1), Some(2), Some(1), Some(2)];
        let m = match_frames(&frames, &records);
        assert_eq!(m.pairs, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    #[test]
    fn accumulator_counts_window_misses_queueing_and_negative_samples() {
        let records = [
            rec(1, 1_000, 0),  // before the window
            rec(2, 10_000, 0), // visible 5 µs later
            rec(3, 11_000, 0), // sent while 2 was in flight: queued
            rec(4, 20_000, 0), // never seen: missed
            rec(5, 30_000, 0), // visible before its send stamp
            rec(6, 90_000, 0), // after the window
        ];
        let fps = vec![Some(1); records.len()];
        let mut acc = Accumulator::new((5_000, 50_000), &records, &fps, None);
        acc.sample(0, 2_000, None);
        acc.sample(1, 15_000, Some((12_000, 14_000)));
        acc.sample(2, 17_000, Some((16_000, 16_500)));
        acc.sample(4, 29_900, Some((29_800, 29_850)));
        acc.sample(5, 95_000, None);
        let r = acc.finish(0, 0, 1).into_result("x");
        assert_eq!(r.sent, 4);
        assert_eq!(r.missed, 1);
        assert_eq!(r.queued, 1);
        assert_eq!(r.clamped_negative, 1);
        // The queued sample (6 µs) counts in all_samples only.
        let l = r.latency.unwrap();
        assert_eq!(l.count, 2);
        assert_eq!(l.min_ns, 0);
        assert!(l.max_ns >= 5_000 && l.max_ns < 5_010, "{l:?}");
        let all = r.all_samples.unwrap();
        assert_eq!(all.count, 3);
        assert!(all.max_ns >= 6_000 && all.max_ns < 6_010, "{all:?}");
        let st = r.stages.unwrap();
        assert_eq!(st.wire_to_recv.count, 2);
    }

    #[test]
    fn rounds_merge_their_samples_and_counters() {
        let records = [rec(1, 10_000, 0), rec(2, 20_000, 0)];
        let fps = vec![Some(1); records.len()];
        let round = |lat: i64| {
            let mut acc = Accumulator::new((0, 50_000), &records, &fps, None);
            acc.sample(0, 10_000 + lat, Some((10_000, 10_000)));
            acc.finish(0, 0, 1)
        };
        let mut run = round(1_000);
        run.merge(round(3_000));
        let r = run.into_result("x");
        let l = r.latency.unwrap();
        assert_eq!(l.count, 2);
        assert_eq!(l.min_ns, 1_000);
        assert!(l.max_ns >= 3_000 && l.max_ns < 3_010, "{l:?}");
        assert_eq!((r.sent, r.missed, r.connections), (4, 2, 2));
        assert_eq!(r.stages.unwrap().publish_to_visible.count, 2);
    }

    #[test]
    fn layout_on_two_cores_shares_the_server_core_and_keeps_the_reader_alone() {
        let l = Layout::for_cores(&[0, 1]).unwrap();
        assert_eq!((l.server, l.collector, l.reader), (0, 0, 1));
        assert!(l.shared());
        let l = Layout::for_cores(&[2, 3, 5, 7]).unwrap();
        assert_eq!((l.server, l.collector, l.reader), (2, 3, 5));
        assert!(!l.shared());
        assert!(matches!(Layout::for_cores(&[0]), Err(E2eError::Options(_))));
    }

    #[test]
    fn io_uring_features_and_counters_are_read_from_metrics_text() {
        let text = "# HELP x\n\
            tickring_collector_io_uring_feature{feed=\"k\",exchange=\"kraken\",feature=\"sqpoll\"} 0\n\
            tickring_collector_io_uring_feature{feed=\"k\",exchange=\"kraken\",feature=\"multishot_recv\"} 1\n\
            tickring_collector_parse_errors_total{feed=\"k\",kind=\"json\"} 2\n\
            tickring_collector_parse_errors_total{feed=\"k\",kind=\"bad_value\"} 3\n\
            tickring_collector_parse_errors_totalx 9\n";
        assert_eq!(
            parse_features(text),
            vec![
                ("sqpoll".to_string(), false),
                ("multishot_recv".to_string(), true)
            ]
        );
        assert_eq!(metric_sum(text, "tickring_collector_parse_errors_total"), 5);
    }

    #[test]
    fn targets_compare_p99s() {
        let r = |name, p99| PathResult {
            name,
            latency: Some(Percentiles {
                count: 1,
                min_ns: 1,
                mean_ns: 1.0,
                p50_ns: 1,
                p99_ns: p99,
                p999_ns: p99,
                p9999_ns: p99,
                max_ns: p99,
            }),
            all_samples: None,
            back_to_back: 0,
            sent: 1,
            missed: 0,
            unmatched_frames: 0,
            queued: 0,
            clamped_negative: 0,
            stages: None,
            ring_lost: 0,
            connections: 1,
            parse_errors: 0,
        };
        let t = targets(&[
            r(TICKRING, 30_000),
            r(SOCKET_FLOOR, 10_000),
            r(TOKIO_BASELINE, 90_000),
        ]);
        assert!(!t[0].pass, "3x the floor misses");
        assert_eq!(t[0].ratio, Some(3.0));
        assert!(t[1].pass, "3x lower than the baseline passes");
        let t = targets(&[r(TICKRING, 15_000), r(SOCKET_FLOOR, 10_000)]);
        assert!(t[0].pass);
        assert!(!t[1].pass, "no baseline, no pass");
        assert_eq!(t[1].ratio, None);
    }
}
