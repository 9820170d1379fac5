//! `tickring bench gateway`: the gateway under load.
//!
//! The bench process creates a ring, starts `tickring gateway` as a child
//! process on loopback, and then plays two parts:
//!
//! - a publisher thread writing trades into the ring at a set rate, round
//!   robin over `instruments`, each stamped with its publish time;
//! - a load generator (its own thread, one tokio current-thread runtime)
//!   holding `clients` WebSocket connections (source addresses spread over
//!   127.0.0.2..., 5000 per address), each subscribed to the trades of
//!   `subs_per_client` instruments; for every message it records
//!   `receive time - publish_ts` in an HdrHistogram;
//! - a prober timing `GET /health` on a new connection every 10 ms.
//!
//! For each rate it warms up, then measures for `seconds`: publish-to-
//! receive latency, `/health` latency, messages delivered per second
//! (against the number expected from the subscriptions), and the CPU time
//! of the gateway and of the bench process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::event::{Event, EventKind, Exchange, Side};
use crate::instrument::Instrument;
use crate::net::ws::{encode_frame, OpCode, Role, WsEvent, WsReader};
use crate::ring::{Backing, Writer, WriterOptions};
use crate::time::now_ns;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub clients: usize,
    pub instruments: usize,
    pub subs_per_client: usize,
    /// Events per second published, one measurement step each.
    pub rates: Vec<u64>,
    pub seconds: f64,
    pub warmup: f64,
    /// The gateway's per-client queue.
    pub client_queue: usize,
    /// The `tickring` binary to start the gateway from.
    pub exe: PathBuf,
}

/// Percentiles of one histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The measurements of one rate.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub rate: u64,
    pub seconds: f64,
    pub published: u64,
    /// Messages the subscriptions should have brought in the window.
    pub expected: u64,
    pub received: u64,
    /// Publish -> client receive, us.
    pub latency: Percentiles,
    /// `GET /health` round trip on a new connection, us.
    pub health: Percentiles,
    pub health_failures: u64,
    /// CPU time over wall time, percent of one core.
    pub gateway_cpu: f64,
    pub bench_cpu: f64,
    /// Clients the gateway dropped as too slow during the step.
    pub dropped_slow: u64,
    pub ring_overruns: u64,
    pub clients_connected: u64,
    /// The gateway's own view: event age when handed to a client socket
    /// (from its `/metrics` histogram), as the bucket bound that holds the
    /// 50th / 99th percentile, us. Tells the gateway's share of the
    /// latency from the load generator's.
    pub gateway_age_p50_le: f64,
    pub gateway_age_p99_le: f64,
}

impl Step {
    pub fn messages_per_s(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    /// Whether the step meets the target: p99 < 1 ms for events and
    /// `/health`, nothing dropped.
    pub fn meets_target(&self) -> Result<(), String> {
        if self.dropped_slow > 0 || self.ring_overruns > 0 {
            return Err(format!(
                "{} clients dropped, {} ring overruns",
                self.dropped_slow, self.ring_overruns
            ));
        }
        if self.health_failures > 0 {
            return Err(format!("{} /health probes failed", self.health_failures));
        }
        // Losses show above (dropped, overruns); this catches a client
        // that silently stopped receiving. Deliveries are counted in the
        // window, so messages in flight at its edges make a small difference.
        if (self.received as f64) < self.expected as f64 * 0.99 {
            return Err(format!(
                "delivered {} of {} expected messages",
                self.received, self.expected
            ));
        }
        if self.latency.p99 >= 1000.0 {
            return Err(format!("event p99 {:.0} us", self.latency.p99));
        }
        if self.health.p99 >= 1000.0 {
            return Err(format!("/health p99 {:.0} us", self.health.p99));
        }
        Ok(())
    }
}

/// Why the bench could not run.
#[derive(Debug)]
pub enum BenchError {
    Io {
        doing: String,
        source: std::io::Error,
    },
    Setup(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Io { doing, source } => write!(f, "{doing}: {source}"),
            BenchError::Setup(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for BenchError {}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let doing = doing.into();
    move |source| BenchError::Io { doing, source }
}

/// The gateway child, killed on drop; its scratch directory removed.
struct Scratch {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Counters shared by the load generator's tasks and the main thread.
#[derive(Default)]
struct GenShared {
    connected: AtomicUsize,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    measuring: AtomicBool,
    received: AtomicU64,
    stop: AtomicBool,
    first_error: Mutex<Option<String>>,
}

/// Runs every step and returns their measurements. `progress` gets one
/// line per phase (to stderr in the CLI).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Vec<Step>, BenchError> {
    if opts.clients == 0 || opts.instruments == 0 || opts.subs_per_client == 0 {
        return Err(BenchError::Setup(
            "clients, instruments and subs per client must be at least 1".into(),
        ));
    }
    if opts.subs_per_client > opts.instruments {
        return Err(BenchError::Setup(
            "subs per client cannot exceed the number of instruments".into(),
        ));
    }
    let limits = crate::gateway::raise_nofile_limit();
    if let Some((soft, _)) = limits {
        if (soft as usize) < opts.clients + 256 {
            return Err(BenchError::Setup(format!(
                "open files limit {soft} is too low for {} clients: raise it (ulimit -n)",
                opts.clients
            )));
        }
    }
    let dir = PathBuf::from(format!("/dev/shm/tickring-bench-gw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        child: None,
    };

    // The ring and its instruments.
    let mut writer = Writer::create(
        "bench",
        &WriterOptions {
            backing: Backing::Shm { dir: dir.clone() },
            capacity: 1 << 20,
            lock_memory: false,
        },
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut names = Vec::new();
    for i in 0..opts.instruments {
        let inst = Instrument::new(Exchange::Coinbase, &format!("BENCH-{i}"), 2, 8)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        writer
            .register_instrument(&inst)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        names.push(inst.qualified_name());
    }
    // Who subscribes to what: client c takes instruments (c*S + j) mod K.
    let mut recipients = vec![0u64; opts.instruments];
    let mut subs: Vec<Vec<usize>> = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let s: Vec<usize> = (0..opts.subs_per_client)
            .map(|j| (c * opts.subs_per_client + j) % opts.instruments)
            .collect();
        for &i in &s {
            recipients[i] += 1;
        }
        subs.push(s);
    }

    // The gateway, on a free loopback port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
        l.local_addr().map_err(io("finding a free port"))?.port()
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nrings = [\"{}\"]\nmax_clients = {}\nclient_queue = {}\n",
            writer.path().display(),
            opts.clients + 64,
            opts.client_queue
        ),
    )
    .map_err(io("writing the gateway config"))?;
    let log = std::fs::File::create(dir.join("gateway.log")).map_err(io("creating the log"))?;
    let child = Command::new(&opts.exe)
        .args(["gateway", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(io(format!("starting {}", opts.exe.display())))?;
    let gw_pid = child.id();
    scratch.child = Some(child);
    wait_healthy(addr, &dir)?;
    progress(&format!("gateway pid {gw_pid} on {addr}"));

    // The publisher: trades at the current rate until told to stop.
    let rate = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let pub_stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (rate, published, stop) = (rate.clone(), published.clone(), pub_stop.clone());
        let k = opts.instruments;
        std::thread::Builder::new()
            .name("bench-publisher".into())
            .spawn(move || publish_loop(writer, k, &rate, &published, &stop))
            .map_err(io("starting the publisher"))?
    };

    // The load generator.
    let shared = Arc::new(GenShared::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let generator = {
        let (shared, hist) = (shared.clone(), hist.clone());
        std::thread::Builder::new()
            .name("bench-clients".into())
            .spawn(move || generator_thread(addr, subs, names, shared, hist))
            .map_err(io("starting the load generator"))?
    };
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    while shared.subscribed.load(Ordering::Acquire) + shared.failed.load(Ordering::Acquire)
        < opts.clients
    {
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(BenchError::Setup(
                "clients did not all subscribe in 300 s".into(),
            ));
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            progress(&format!(
                "connecting: {} connected, {} subscribed",
                shared.connected.load(Ordering::Relaxed),
                shared.subscribed.load(Ordering::Relaxed)
            ));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed = shared.failed.load(Ordering::Acquire);
    if failed > 0 {
        let e = shared
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return Err(BenchError::Setup(format!(
            "{failed} of {} clients could not subscribe (first error: {})",
            opts.clients,
            e.unwrap_or_default()
        )));
    }
    progress(&format!(
        "{} clients subscribed in {:.1} s",
        opts.clients,
        t0.elapsed().as_secs_f64()
    ));

    // The /health prober.
    let probing = Arc::new(AtomicBool::new(false));
    let probe_stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Mutex::new((new_hist(), 0u64)));
    let prober = {
        let (probing, stop, health) = (probing.clone(), probe_stop.clone(), health.clone());
        std::thread::Builder::new()
            .name("bench-health".into())
            .spawn(move || probe_loop(addr, &probing, &stop, &health))
            .map_err(io("starting the prober"))?
    };

    let mut steps = Vec::new();
    for &r in &opts.rates {
        rate.store(r, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(opts.warmup));
        let m0 = scrape(addr);
        let pub0 = published.load(Ordering::Relaxed);
        hist.lock().unwrap_or_else(|e| e.into_inner()).reset();
        {
            let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
            h.0.reset();
            h.1 = 0;
        }
        shared.received.store(0, Ordering::Relaxed);
        let cpu0 = (cpu_ns(gw_pid), cpu_ns(std::process::id()));
        let w0 = Instant::now();
        shared.measuring.store(true, Ordering::Release);
        probing.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_secs_f64(opts.seconds));
        shared.measuring.store(false, Ordering::Release);
        probing.store(false, Ordering::Release);
        let wall = w0.elapsed().as_secs_f64();
        let cpu1 = (cpu_ns(gw_pid), cpu_ns(std::process::id()));
        let pub1 = published.load(Ordering::Relaxed);
        // The generator merges its records every 5 ms.
        std::thread::sleep(Duration::from_millis(30));
        let m1 = scrape(addr);
        // Event k goes to instrument k mod K.
        let expected: u64 = (pub0..pub1)
            .map(|k| recipients[(k % opts.instruments as u64) as usize])
            .sum();
        let lat = Percentiles::of(&hist.lock().unwrap_or_else(|e| e.into_inner()));
        let (hp, hfail) = {
            let h = health.lock().unwrap_or_else(|e| e.into_inner());
            (Percentiles::of(&h.0), h.1)
        };
        let d = |k: &str| m1.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0);
        let age_le = |q: f64| -> f64 {
            let key = |b: &str| format!("tickring_gateway_event_age_seconds_bucket{{le=\"{b}\"}}");
            let total = d(&key("+Inf"));
            if total <= 0.0 {
                return f64::NAN;
            }
            for &ns in crate::gateway::metrics::AGE_BOUNDS_NS.iter() {
                if d(&key(&crate::gateway::metrics::secs(ns))) >= q * total {
                    return ns as f64 / 1000.0;
                }
            }
            f64::INFINITY
        };
        let step = Step {
            rate: r,
            seconds: wall,
            published: pub1 - pub0,
            expected,
            received: shared.received.load(Ordering::Relaxed),
            latency: lat,
            health: hp,
            health_failures: hfail,
            gateway_cpu: pct(cpu0.0, cpu1.0, wall),
            bench_cpu: pct(cpu0.1, cpu1.1, wall),
            dropped_slow: d("tickring_gateway_clients_dropped_slow_total") as u64,
            ring_overruns: d("tickring_gateway_ring_overruns_total{ring=\"bench\"}") as u64,
            clients_connected: m1.get("tickring_gateway_clients").copied().unwrap_or(0.0) as u64,
            gateway_age_p50_le: age_le(0.5),
            gateway_age_p99_le: age_le(0.99),
        };
        progress(&format!(
            "rate {r}/s: {:.0} msg/s, p99 {:.0} us, /health p99 {:.0} us, gateway cpu {:.0}%",
            step.messages_per_s(),
            step.latency.p99,
            step.health.p99,
            step.gateway_cpu
        ));
        let broke = step.dropped_slow > 0;
        steps.push(step);
        if broke {
            progress("clients were dropped: stopping the sweep");
            break;
        }
    }

    probe_stop.store(true, Ordering::Relaxed);
    pub_stop.store(true, Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let _ = publisher.join();
    let _ = generator.join();
    if let Some(c) = scratch.child.as_mut() {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if matches!(c.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(steps)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn pct(a: Option<u64>, b: Option<u64>, wall: f64) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9 / wall * 100.0,
        _ => f64::NAN,
    }
}

/// User + system CPU time of a process, ns.
fn cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

fn wait_healthy(addr: SocketAddr, dir: &Path) -> Result<(), BenchError> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if health_once(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    Err(BenchError::Setup(format!(
        "the gateway did not answer /health: {log}"
    )))
}

fn health_once(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::with_capacity(256);
    s.read_to_end(&mut buf)?;
    if buf.starts_with(b"HTTP/1.1 200") && buf.ends_with(b"ok\n") {
        Ok(())
    } else {
        Err(std::io::Error::other("unexpected answer"))
    }
}

fn probe_loop(
    addr: SocketAddr,
    probing: &AtomicBool,
    stop: &AtomicBool,
    health: &Mutex<(Histogram<u64>, u64)>,
) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        if !probing.load(Ordering::Acquire) {
            continue;
        }
        let t = Instant::now();
        let r = health_once(addr);
        let ns = t.elapsed().as_nanos() as u64;
        let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(()) => {
                let _ = h.0.record(ns.max(1));
            }
            Err(_) => h.1 += 1,
        }
    }
}

fn publish_loop(
    mut writer: Writer,
    instruments: usize,
    rate: &AtomicU64,
    published: &AtomicU64,
    stop: &AtomicBool,
) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and changes only
    // this thread's timer slack (1 us, for accurate pacing).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
    let mut n: u64 = 0;
    let mut t0 = Instant::now();
    let mut sent_at_t0 = 0u64;
    let mut cur_rate = 0;
    while !stop.load(Ordering::Relaxed) {
        let r = rate.load(Ordering::Relaxed);
        if r != cur_rate {
            cur_rate = r;
            t0 = Instant::now();
            sent_at_t0 = n;
        }
        if r == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // Events due by now at this rate.
        let due = sent_at_t0 + (t0.elapsed().as_secs_f64() * r as f64) as u64;
        while n < due {
            let inst = (n % instruments as u64) as usize;
            let ev = Event {
                kind: EventKind::Trade as u8,
                exchange: Exchange::Coinbase as u8,
                side: Side::Bid as u8,
                flags: crate::event::flags::LAST_IN_MESSAGE,
                instrument: inst as u16,
                price: 6_000_000 + (n % 1000) as i64,
                qty: 1_000_000,
                seq: n,
                exch_ts: now_ns(),
                publish_ts: now_ns(),
                ..Event::default()
            };
            writer.publish(&ev);
            n += 1;
        }
        published.store(n, Ordering::Relaxed);
        // Sleep until the next event is due (at most 1 ms).
        let next = sent_at_t0 + (t0.elapsed().as_secs_f64() * r as f64) as u64;
        if next <= n {
            let gap = Duration::from_secs_f64(1.0 / r as f64).min(Duration::from_millis(1));
            std::thread::sleep(gap);
        }
        writer.heartbeat();
    }
}

/// The load generator's thread: one current-thread runtime, one task per client.
fn generator_thread(
    addr: SocketAddr,
    subs: Vec<Vec<usize>>,
    names: Vec<String>,
    shared: Arc<GenShared>,
    hist: Arc<Mutex<Histogram<u64>>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            *shared.first_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            shared.failed.store(subs.len(), Ordering::Release);
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    // Records go to a thread-local histogram, merged into the shared one
    // every few ms (the main thread resets and reads the shared one).
    let mine = Rc::new(RefCell::new(new_hist()));
    local.block_on(&rt, async move {
        let gate = Rc::new(tokio::sync::Semaphore::new(256));
        let n = subs.len();
        for (i, s) in subs.into_iter().enumerate() {
            let req = subscribe_request(&s, &names);
            let (shared, gate, mine) = (shared.clone(), gate.clone(), mine.clone());
            // 5000 connections per source address: far from the ~28000
            // ephemeral ports of each.
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i / 5000) as u8);
            tokio::task::spawn_local(async move {
                if let Err(e) = client(addr, src, req, &shared, &gate, &mine).await {
                    let mut fe = shared.first_error.lock().unwrap_or_else(|e| e.into_inner());
                    if fe.is_none() {
                        *fe = Some(e);
                    }
                    drop(fe);
                    shared.failed.fetch_add(1, Ordering::AcqRel);
                }
            });
        }
        let _ = n;
        let mut last_measuring = false;
        while !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let measuring = shared.measuring.load(Ordering::Acquire);
            let mut m = mine.borrow_mut();
            if measuring || last_measuring {
                let mut h = hist.lock().unwrap_or_else(|e| e.into_inner());
                let _ = h.add(&*m);
            }
            m.reset();
            last_measuring = measuring;
        }
    });
}

fn subscribe_request(insts: &[usize], names: &[String]) -> Vec<u8> {
    let list: Vec<String> = insts.iter().map(|&i| format!("\"{}\"", names[i])).collect();
    let text = format!(
        "{{\"op\":\"subscribe\",\"channels\":[\"trades\"],\"instruments\":[{}]}}",
        list.join(",")
    );
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        OpCode::Text,
        true,
        text.as_bytes(),
        Some([0x37, 0xfa, 0x21, 0x3d]),
    );
    out
}

/// `"publish_ts":<digits>` in an event message.
fn publish_ts(msg: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"publish_ts\":";
    let at = msg.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut v: i64 = 0;
    let mut any = false;
    for &b in &msg[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as i64)?;
        any = true;
    }
    any.then_some(v)
}

async fn client(
    addr: SocketAddr,
    src: Ipv4Addr,
    subscribe: Vec<u8>,
    shared: &GenShared,
    gate: &tokio::sync::Semaphore,
    hist: &RefCell<Histogram<u64>>,
) -> Result<(), String> {
    let mut stream = {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
            .map_err(|e| format!("binding {src}: {e}"))?;
        let mut stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connecting from {src}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let req = format!(
            "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream
    };
    // The 101 answer, then the subscription's reply.
    let mut buf = vec![0u8; 16 << 10];
    let mut have = 0;
    let head_end = loop {
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        have += n;
        if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if have == buf.len() {
            return Err("handshake answer too long".into());
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&buf[..head_end.min(200)])
        ));
    }
    stream
        .write_all(&subscribe)
        .await
        .map_err(|e| e.to_string())?;
    let mut ws = WsReader::new(Role::Client, 1 << 20, false);
    let mut subscribed = false;
    let mut first: Vec<u8> = buf[head_end..have].to_vec();
    loop {
        let chunk: &[u8] = if !first.is_empty() {
            &first
        } else {
            let n = tokio::select! {
                r = stream.read(&mut buf) => r.map_err(|e| e.to_string())?,
                _ = wait_stop(shared) => return Ok(()),
            };
            if n == 0 {
                return if shared.stop.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("the gateway closed the connection".into())
                };
            }
            &buf[..n]
        };
        let now = now_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let mut got = 0u64;
        let mut err = None;
        let mut h = hist.borrow_mut();
        let r = ws.feed(chunk, |ev| {
            match ev {
                WsEvent::Message { payload, .. } => {
                    if payload.starts_with(b"{\"kind\"") {
                        got += 1;
                        if measuring {
                            if let Some(ts) = publish_ts(payload) {
                                let _ = h.record((now - ts).max(1) as u64);
                            }
                        }
                    } else if payload.starts_with(b"{\"type\":\"subscribed\"") {
                        subscribed = true;
                    } else if payload.starts_with(b"{\"type\":\"error\"") {
                        err = Some(String::from_utf8_lossy(payload).into_owned());
                    }
                }
                WsEvent::Close(c) => {
                    err = Some(format!("closed by the gateway: {c:?}"));
                    return ControlFlow::Break(());
                }
                _ => {}
            }
            ControlFlow::Continue(())
        });
        drop(h);
        first.clear();
        r.map_err(|e| format!("{e:?}"))?;
        if let Some(e) = err {
            return Err(e);
        }
        if subscribed {
            subscribed = false;
            shared.subscribed.fetch_add(1, Ordering::AcqRel);
        }
        if measuring && got > 0 {
            shared.received.fetch_add(got, Ordering::Relaxed);
        }
    }
}

async fn wait_stop(shared: &GenShared) {
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's metrics as name{labels} -> value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return out;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    for l in buf.lines() {
        if l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.rsplit_once(' ') {
            if let Ok(v) = v.parse() {
                out.insert(k.to_owned(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_ts_is_found_in_event_json() {
        let m = br#"{"kind":"trade","exchange":"coinbase","symbol":"X","side":"buy","price":"1","qty":"1","exch_ts":5,"recv_ts":0,"publish_ts":1700000000123456789,"seq":1,"ring_seq":2,"flags":2}"#;
        assert_eq!(publish_ts(m), Some(1_700_000_000_123_456_789));
        assert_eq!(publish_ts(b"{\"type\":\"subscribed\"}"), None);
    }

    #[test]
    fn a_step_meets_the_target_only_when_everything_does() {
        let ok = Step {
            seconds: 10.0,
            expected: 1000,
            received: 1000,
            latency: Percentiles {
                p99: 900.0,
                ..Percentiles::default()
            },
            health: Percentiles {
                p99: 500.0,
                ..Percentiles::default()
            },
            ..Step::default()
        };
        assert!(ok.meets_target().is_ok());
        let slow = Step {
            latency: Percentiles {
                p99: 1000.0,
                ..Percentiles::default()
            },
            ..ok.clone()
        };
        assert!(slow.meets_target().unwrap_err().contains("event p99"));
        let lossy = Step {
            received: 980,
            ..ok.clone()
        };
        assert!(lossy.meets_target().unwrap_err().contains("delivered 980"));
        let dropped = Step {
            dropped_slow: 1,
            ..ok
        };
        assert!(dropped.meets_target().is_err());
    }
}
