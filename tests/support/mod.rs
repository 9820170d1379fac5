//! Shared helpers of the `collector_*` tests: the collector binary as a
//! child process (killed on drop), per-test directories under /dev/shm
//! (removed on drop), replay servers on 127.0.0.1 port 0, a ring drain, a
//! tiny HTTP client for /ready and /metrics, an in-process oracle (the same
//! `book::Pipeline` fed the messages the replay server says it sent) and
//! bounded polling. Nothing here sleeps and hopes: every wait polls a
//! condition until a deadline and fails with the collector's log.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tickring::book::{BuilderConfig, Pipeline};
use tickring::event::{flags, Event, EventKind, Exchange, StatusCode, NO_INSTRUMENT};
use tickring::feed::{Action, FeedConfig, Sink};
use tickring::instrument::Instrument;
use tickring::replay::{Pace, ReplayConfig, ReplayServer, SendRecord};
use tickring::ring::books::{BookReader, BookSnapshot};
use tickring::ring::{Poll, Reader, ReaderOptions};

/// Upper bound of every wait in these tests. Generous: the machine is
/// shared and busy; a test that passes takes a small fraction of it.
pub const WAIT: Duration = Duration::from_secs(30);

/// Binance REST snapshots of the capture, in the order of the file's lines.
pub const BINANCE_SNAPSHOT_SYMBOLS: [&str; 4] = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"];

pub fn fixtures() -> PathBuf {
    std::env::var_os("TICKRING_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

pub fn fx(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

pub fn fixture_lines(rel: &str) -> Vec<String> {
    std::fs::read_to_string(fx(rel))
        .unwrap_or_else(|e| panic!("reading fixture {rel}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------------ dirs

/// A directory of its own under /dev/shm (ring, book region, config,
/// certificates, the collector's log), removed on drop, failures included.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!(
            "/dev/shm/tickring-ctest-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The ring file a config made by [`FeedToml`] in this dir writes.
    pub fn ring(&self) -> PathBuf {
        self.join("feed.ring")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------- config

/// A feed config for a test: ring in the test dir on /dev/shm, metrics on
/// an ephemeral loopback port, short reconnect backoffs.
pub struct FeedToml {
    pub exchange: Exchange,
    pub symbols: Vec<String>,
    pub endpoint: String,
    pub rest_endpoint: Option<String>,
    pub book_depth: u16,
    pub capacity: u64,
    /// Extra top-level keys (`max_frame_bytes = ...`, `tls_ca_file = ...`).
    pub top: String,
    /// Extra tables (`[liveness]` ...).
    pub tables: String,
}

impl FeedToml {
    pub fn new(exchange: Exchange, symbols: &[&str], endpoint: String) -> FeedToml {
        FeedToml {
            exchange,
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            endpoint,
            rest_endpoint: None,
            book_depth: 10,
            capacity: 1 << 16,
            top: String::new(),
            tables: String::new(),
        }
    }

    pub fn render(&self, dir: &TestDir) -> String {
        let syms: Vec<String> = self.symbols.iter().map(|s| format!("{s:?}")).collect();
        let mut t = format!(
            "exchange = \"{}\"\nsymbols = [{}]\nendpoint = {:?}\nbook_depth = {}\n",
            self.exchange.name(),
            syms.join(", "),
            self.endpoint,
            self.book_depth
        );
        if let Some(r) = &self.rest_endpoint {
            t.push_str(&format!("rest_endpoint = {r:?}\n"));
        }
        t.push_str(&self.top);
        t.push_str(&format!(
            "\n[ring]\nname = \"feed\"\nbacking = \"shm\"\ndir = {:?}\ncapacity = {}\nlock_memory = false\n",
            dir.path.to_str().unwrap(),
            self.capacity
        ));
        t.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
        t.push_str("\n[reconnect]\ninitial_ms = 20\nmax_ms = 100\njitter_percent = 0\n");
        t.push_str(&self.tables);
        t
    }

    pub fn write(&self, dir: &TestDir) -> PathBuf {
        dir.write("feed.toml", &self.render(dir))
    }

    /// The instruments the collector registers, in ring order.
    pub fn instruments(&self) -> Vec<Instrument> {
        self.symbols
            .iter()
            .map(|s| Instrument::new(self.exchange, s, 8, 8).unwrap())
            .collect()
    }
}

// -------------------------------------------------------------- collector

/// `tickring collect --config F --announce` as a child process; killed
/// (SIGKILL) and reaped on drop unless it already exited.
pub struct Collector {
    child: Option<Child>,
    pub metrics_addr: SocketAddr,
    log: PathBuf,
    pub exit: Option<ExitStatus>,
}

impl Collector {
    /// Starts the collector and waits for its metrics announcement.
    pub fn start(dir: &TestDir, config: &Path) -> Collector {
        let log = dir.join("collector.log");
        let err = File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickring"))
            .args(["collect", "--announce", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawning tickring collect");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Collector {
            child: Some(child),
            metrics_addr: "127.0.0.1:1".parse().unwrap(),
            log,
            exit: None,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("metrics http://") {
                        c.metrics_addr = a.trim().parse().unwrap();
                        return c;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(st) = c.try_exit() {
                        panic!("collector exited ({st}) before announcing:\n{}", c.log());
                    }
                }
                Err(_) => panic!(
                    "collector did not announce its metrics address:\n{}",
                    c.log()
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The collector's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(ch) = &mut self.child {
                if let Ok(Some(st)) = ch.try_wait() {
                    self.exit = Some(st);
                }
            }
        }
        self.exit
    }

    pub fn assert_running(&mut self) {
        if let Some(st) = self.try_exit() {
            panic!("the collector exited ({st}):\n{}", self.log());
        }
    }

    /// Sends SIGTERM and waits (bounded by `within`) for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.try_exit()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path)
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    pub fn ready(&self) -> (u16, String) {
        self.get("/ready")
    }

    /// Polls `cond` until it holds; fails with `what` and the collector log.
    pub fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&mut Collector) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if cond(self) {
                return;
            }
            if let Some(st) = self.try_exit() {
                panic!(
                    "collector exited ({st}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; collector log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut ch) = self.child.take() {
            if self.exit.is_none() {
                let _ = ch.kill();
            }
            let _ = ch.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds or [`WAIT`] passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------- HTTP

/// `GET path` on loopback: (status, body). Bounded by socket timeouts.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("reading {path} from {addr}: {e}"));
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, body.to_string())
}

/// Prometheus text, as `series -> value` (series = `name{labels}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub series: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (k, v) = line.rsplit_once(' ').expect("metric line");
            series.insert(k.to_string(), v.parse().expect("metric value"));
        }
        Metrics { series }
    }

    /// Sum of every series of metric `name` whose labels contain `label`
    /// (e.g. `kind="json"`; empty: all series).
    pub fn sum(&self, name: &str, label: &str) -> u64 {
        let prefix = format!("{name}{{");
        let mut found = false;
        let mut total = 0.0;
        for (k, v) in &self.series {
            if k.starts_with(&prefix) && k.contains(label) {
                found = true;
                total += v;
            }
        }
        assert!(found, "no metric {name} with {label:?}");
        total as u64
    }

    /// A metric with a single series (or the sum of its series).
    pub fn get(&self, name: &str) -> u64 {
        self.sum(name, "")
    }

    pub fn messages(&self) -> u64 {
        self.get("tickring_collector_messages_received_total")
    }

    pub fn parse_errors(&self, kind: &str) -> u64 {
        self.sum(
            "tickring_collector_parse_errors_total",
            &format!("kind=\"{kind}\""),
        )
    }
}

// ---------------------------------------------------------------- replay

/// What the replay server says it sent: the market messages of every
/// connection in the order they were written.
pub type SendLog = Arc<Mutex<Vec<SendRecord>>>;

/// Starts a replay server on 127.0.0.1 port 0 at `Pace::Max`, no loop,
/// recording every market message sent.
pub fn replay(
    ex: Exchange,
    files: &[&str],
    tweak: impl FnOnce(&mut ReplayConfig),
) -> (ReplayServer, SendLog) {
    replay_at(ex, files, "127.0.0.1:0".parse().unwrap(), tweak)
}

/// [`replay`] on a given address (a second server on the port of a stopped
/// one, so that the collector reconnects to it).
pub fn replay_at(
    ex: Exchange,
    files: &[&str],
    listen: SocketAddr,
    tweak: impl FnOnce(&mut ReplayConfig),
) -> (ReplayServer, SendLog) {
    let files = files.iter().map(|f| fx(f)).collect();
    let mut c = ReplayConfig::new(ex, files, listen);
    c.pace = Pace::Max;
    c.looping = false;
    let log: SendLog = Arc::default();
    let l = log.clone();
    c.on_send = Some(Arc::new(move |r: &SendRecord| {
        l.lock().unwrap().push(*r);
    }));
    tweak(&mut c);
    let deadline = Instant::now() + WAIT;
    loop {
        match ReplayServer::start(c.clone()) {
            Ok(s) => return (s, log),
            // Rebinding a just-released port can race with its release.
            Err(e) if Instant::now() < deadline && listen.port() != 0 => {
                eprintln!("replay server start: {e}; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("starting the replay server: {e}"),
        }
    }
}

/// Binance REST snapshot settings for [`replay`].
pub fn binance_rest(c: &mut ReplayConfig) {
    c.snapshot = Some(fx("binance/depth_snapshot_rest.jsonl"));
    c.snapshot_symbols = BINANCE_SNAPSHOT_SYMBOLS
        .iter()
        .map(|s| s.to_string())
        .collect();
}

/// Total data messages (market + control) the server sent on a connection.
pub fn sent_messages(s: &tickring::replay::ConnStats) -> u64 {
    s.market_messages + s.control_messages
}

/// Waits until the collector has received exactly what the server sent on
/// its current (last) connection and nothing moves any more: the server has
/// sent at least `min_market` market messages on it (all it sends without
/// a loop, when no resync makes it serve more), the collector's message and
/// byte counters equal the server's counters, the ring holds every event
/// the collector counted, and the market messages sent and the events
/// published stayed the same over three polls 50 ms apart (a resync's
/// re-served messages would show up in between).
///
/// `base`: the collector's metrics before this server's connection (its
/// counters are cumulative over connections); `None` for the first.
pub fn wait_settled(
    col: &mut Collector,
    server: &ReplayServer,
    min_market: u64,
    ring: &mut RingLog,
    base: Option<&Metrics>,
) -> (Metrics, tickring::replay::ConnStats) {
    let (base_msgs, base_bytes) = base.map_or((0, 0), |b| {
        (
            b.messages(),
            b.get("tickring_collector_received_bytes_total"),
        )
    });
    let deadline = Instant::now() + WAIT;
    let mut last: Option<(Metrics, tickring::replay::ConnStats)> = None;
    let mut stable = 0;
    loop {
        if let Some(st) = col.try_exit() {
            panic!("collector exited ({st}) before settling:\n{}", col.log());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the collector to receive everything the server sent \
             (server: {:?}); collector log:\n{}",
            server.connections(),
            col.log()
        );
        std::thread::sleep(Duration::from_millis(50));
        let Some(before) = server.connections().last().cloned() else {
            continue;
        };
        let m = col.metrics();
        let after = server.connections().last().cloned().unwrap();
        ring.drain();
        let consistent = before == after
            && before.market_messages >= min_market
            && m.messages() == base_msgs + sent_messages(&after)
            && m.get("tickring_collector_received_bytes_total") == base_bytes + after.bytes
            && ring.events.len() as u64 == m.get("tickring_collector_events_published_total");
        if !consistent {
            stable = 0;
            last = None;
            continue;
        }
        // Heartbeats keep coming; what must stand still is the market data.
        let same = last.as_ref().is_some_and(|(lm, lc)| {
            lc.id == after.id
                && lc.market_messages == after.market_messages
                && lm.get("tickring_collector_events_published_total")
                    == m.get("tickring_collector_events_published_total")
        });
        stable = if same { stable + 1 } else { 0 };
        last = Some((m, after));
        if stable >= 2 {
            return last.unwrap();
        }
    }
}

// ------------------------------------------------------------------ ring

/// Every event of a ring, read from the oldest on.
pub struct RingLog {
    reader: Reader,
    pub events: Vec<Event>,
    pub gone: bool,
}

impl RingLog {
    /// Opens the ring (the collector creates it before announcing).
    pub fn open(path: &Path) -> RingLog {
        let reader = Reader::open(path, &ReaderOptions::default())
            .unwrap_or_else(|e| panic!("opening the ring: {e}"));
        RingLog {
            reader,
            events: Vec::new(),
            gone: false,
        }
    }

    /// Reads everything published so far.
    pub fn drain(&mut self) -> &[Event] {
        loop {
            match self.reader.poll() {
                Poll::Event(e) => self.events.push(e),
                Poll::Empty => break,
                Poll::Overrun { lost } => panic!("the test reader lost {lost} events"),
                Poll::WriterRestarted { epoch } => panic!("unexpected writer restart {epoch}"),
                Poll::WriterGone(_) => {
                    self.gone = true;
                    break;
                }
            }
        }
        &self.events
    }

    pub fn reader(&mut self) -> &mut Reader {
        &mut self.reader
    }

    /// The ring's write cursor: events ever published.
    pub fn cursor(&self) -> u64 {
        self.reader.cursor()
    }

    /// The status codes in ring order: (instrument, code).
    pub fn statuses(&self) -> Vec<(u16, StatusCode)> {
        self.events
            .iter()
            .filter(|e| e.kind() == Some(EventKind::Status))
            .map(|e| (e.instrument, e.status_code().expect("known status code")))
            .collect()
    }

    pub fn count_status(&self, code: StatusCode) -> usize {
        self.statuses().iter().filter(|(_, c)| *c == code).count()
    }

    pub fn count_kind(&self, kind: EventKind) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind() == Some(kind))
            .count()
    }

    /// Whether `codes` occur in this order (not necessarily adjacent),
    /// for `instrument` (connection-wide codes match any instrument).
    pub fn has_in_order(&self, instrument: u16, codes: &[StatusCode]) -> bool {
        let mut it = self.statuses().into_iter();
        codes
            .iter()
            .all(|want| it.any(|(i, c)| c == *want && (i == instrument || i == NO_INSTRUMENT)))
    }
}

// ------------------------------------------------------------ book region

/// Every instrument's book-region snapshot is valid.
pub fn all_books_valid(ring: &Path, n: usize) -> bool {
    let Ok(r) = BookReader::open(ring) else {
        return false;
    };
    (0..n as u16).all(|id| r.read(id).is_some_and(|s| s.valid))
}

pub fn book_snapshot(ring: &Path, id: u16) -> BookSnapshot {
    BookReader::open(ring)
        .unwrap()
        .read(id)
        .unwrap_or_else(|| panic!("no snapshot of instrument {id}"))
}

/// Levels as the `tickring book --json` strings.
pub fn levels_text(levels: &[(i64, i64)], ins: &Instrument) -> Vec<[String; 2]> {
    levels
        .iter()
        .map(|&(p, q)| {
            [
                tickring::fixed::format(p, ins.price_scale),
                tickring::fixed::format(q, ins.qty_scale),
            ]
        })
        .collect()
}

/// Levels `(price, qty)`, best first.
pub type Levels = Vec<(i64, i64)>;

/// A book rebuilt by applying the ring's book events.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct EventBook {
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
}

impl EventBook {
    pub fn apply(&mut self, e: &Event) {
        let side = match e.side() {
            Some(tickring::event::Side::Bid) => &mut self.bids,
            Some(tickring::event::Side::Ask) => &mut self.asks,
            _ => {
                if e.kind() == Some(EventKind::SnapshotBegin) {
                    self.bids.clear();
                    self.asks.clear();
                }
                return;
            }
        };
        match e.kind() {
            Some(EventKind::SnapshotBegin) => {
                self.bids.clear();
                self.asks.clear();
            }
            Some(EventKind::BookSet) => {
                side.insert(e.price, e.qty);
            }
            Some(EventKind::BookDelete) => {
                side.remove(&e.price);
            }
            _ => {}
        }
    }

    /// The top `depth` levels of each side, best first: (bids, asks).
    pub fn top(&self, depth: usize) -> (Levels, Levels) {
        (
            self.bids
                .iter()
                .rev()
                .take(depth)
                .map(|(&p, &q)| (p, q))
                .collect(),
            self.asks
                .iter()
                .take(depth)
                .map(|(&p, &q)| (p, q))
                .collect(),
        )
    }
}

/// Books rebuilt from every book event of the ring, per instrument.
pub fn books_from_events(events: &[Event]) -> BTreeMap<u16, EventBook> {
    let mut out: BTreeMap<u16, EventBook> = BTreeMap::new();
    for e in events {
        if matches!(
            e.kind(),
            Some(EventKind::SnapshotBegin | EventKind::BookSet | EventKind::BookDelete)
        ) {
            out.entry(e.instrument).or_default().apply(e);
        }
    }
    out
}

// ------------------------------------------------------------ tickring book

/// `tickring book --json --depth N` on captures: symbol -> (state, bids, asks).
pub type OfflineBooks = BTreeMap<String, (String, Vec<[String; 2]>, Vec<[String; 2]>)>;

pub fn offline_books(exchange: Exchange, input: &str, depth: usize, binance: bool) -> OfflineBooks {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickring"));
    cmd.args(["book", "--json", "--exchange", exchange.name(), "--input"])
        .arg(fx(input))
        .args(["--depth", &depth.to_string()]);
    if binance {
        cmd.arg("--snapshot")
            .arg(fx("binance/depth_snapshot_rest.jsonl"))
            .arg("--snapshot-symbols")
            .arg(BINANCE_SNAPSHOT_SYMBOLS.join(","));
    }
    let out = cmd.output().expect("running tickring book");
    assert!(
        out.status.success(),
        "tickring book: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lv = |v: &serde_json::Value| -> Vec<[String; 2]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                [
                    l[0].as_str().unwrap().to_string(),
                    l[1].as_str().unwrap().to_string(),
                ]
            })
            .collect()
    };
    doc["books"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["symbol"].as_str().unwrap().to_string(),
                (
                    b["state"].as_str().unwrap().to_string(),
                    lv(&b["bids"]),
                    lv(&b["asks"]),
                ),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- oracle

/// The fields of an event that do not depend on when it was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub instrument: u16,
    pub kind: u8,
    pub status: u16,
    pub side: u8,
    pub flags: u8,
    pub price: i64,
    pub qty: i64,
    pub seq: u64,
    pub exch_ts: i64,
}

impl Key {
    pub fn of(e: &Event) -> Key {
        Key {
            instrument: e.instrument,
            kind: e.kind,
            status: e.status,
            side: e.side,
            flags: e.flags,
            price: e.price,
            qty: e.qty,
            seq: e.seq,
            exch_ts: e.exch_ts,
        }
    }
}

/// Market events and the book status events the builder derives from the
/// market messages (not connection-level ones, nor the replies to requests,
/// which the oracle does not see).
pub fn is_market_or_book_status(e: &Event) -> bool {
    match e.kind() {
        Some(EventKind::Status) => {
            matches!(
                e.status_code(),
                Some(
                    StatusCode::Gap
                        | StatusCode::ChecksumFailed
                        | StatusCode::ResyncStarted
                        | StatusCode::BookValid
                        | StatusCode::BookCrossed
                )
            ) && e.instrument != NO_INSTRUMENT
        }
        Some(_) => true,
        None => false,
    }
}

#[derive(Default)]
struct OracleSink {
    events: Vec<Event>,
    actions: Vec<Action>,
}

impl Sink for OracleSink {
    fn event(&mut self, ev: &Event) {
        self.events.push(*ev);
    }
    fn action(&mut self, action: Action) {
        self.actions.push(action);
    }
}

/// The events the collector's pipeline makes of `messages` (in this order),
/// with Binance REST snapshots answered at once from `snapshots` (symbol ->
/// body), as `tickring book` does. Only [`is_market_or_book_status`] events.
pub fn oracle_events(
    exchange: Exchange,
    instruments: Vec<Instrument>,
    book_depth: u16,
    messages: &[String],
    snapshots: &HashMap<String, String>,
) -> Vec<Event> {
    let mut fc = FeedConfig::new(instruments);
    fc.book_depth = book_depth;
    let mut pipe = Pipeline::new(exchange, fc, BuilderConfig::default());
    let mut sink = OracleSink::default();
    let mut served = std::collections::HashSet::new();
    for m in messages {
        let _ = pipe.on_frame(m.as_bytes(), 0, &mut sink);
        while let Some(a) = sink.actions.pop() {
            if let Action::FetchSnapshot { instrument, .. } = a {
                if !served.insert(instrument) {
                    continue;
                }
                let sym = pipe.feed.instruments()[instrument as usize].symbol.clone();
                if let Some(body) = snapshots.get(&sym) {
                    pipe.on_rest_snapshot(instrument, body.as_bytes(), 0, &mut sink)
                        .unwrap();
                }
            }
        }
    }
    sink.events.retain(is_market_or_book_status);
    sink.events
}

/// The texts of the market messages a connection was sent, in order.
/// Only the first `n` (what the connection's counters said when the test
/// compared them) when more were sent since.
pub fn sent_texts(server: &ReplayServer, log: &SendLog, conn_id: u64, n: u64) -> Vec<String> {
    let cap = server.capture();
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.conn_id == conn_id)
        .take(n as usize)
        .map(|r| {
            assert_eq!(r.lap, 0, "no loop in these tests");
            cap.msgs[r.capture_index].text.as_str().to_string()
        })
        .collect()
}

pub fn binance_snapshots() -> HashMap<String, String> {
    BINANCE_SNAPSHOT_SYMBOLS
        .iter()
        .map(|s| s.to_string())
        .zip(fixture_lines("binance/depth_snapshot_rest.jsonl"))
        .collect()
}

/// Events grouped per instrument, as [`Key`]s.
pub fn per_instrument(events: &[Event]) -> BTreeMap<u16, Vec<Key>> {
    let mut out: BTreeMap<u16, Vec<Key>> = BTreeMap::new();
    for e in events {
        out.entry(e.instrument).or_default().push(Key::of(e));
    }
    out
}

/// Events that close one exchange message (`LAST_IN_MESSAGE`), by kind.
pub fn last_in_message(events: &[Event], kind: EventKind) -> usize {
    events
        .iter()
        .filter(|e| e.kind() == Some(kind) && e.flags & flags::LAST_IN_MESSAGE != 0)
        .count()
}
