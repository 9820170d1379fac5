//! Ring readers and the fan-out to WebSocket clients.
//!
//! Each ring has its own reader thread (a [`Worker`], plain `std::thread`,
//! no async runtime) that polls the ring with a short spin-then-sleep
//! backoff. The worker owns the ring's subscription index (instrument id ->
//! clients per channel), renders each event to JSON once, and pushes the
//! shared text into every subscribed client's bounded queue with
//! `try_send`: it never waits for a client. A client whose queue is full is
//! marked evicted (counted once) and its task closes the connection; no
//! other client notices.
//!
//! Book subscriptions start with a snapshot from the ring's book region,
//! taken by the worker between two polls so that it lines up exactly with
//! the stream: the client gets the snapshot with `ring_seq = R` and then
//! every book event of the instrument with `ring_seq >= R`, in the same
//! queue, in order. A snapshot older than the worker's position is used
//! only if the worker saw no book event of that instrument since `R`;
//! otherwise the worker waits (a few ms) for the writer's next snapshot.
//!
//! Client tasks talk to workers through [`Hub`]: a command channel per
//! worker, plus a registry of every client's subscriptions so a ring that
//! appears later (directory discovery, a restarted collector) gets them.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Notify};

use super::metrics::Metrics;
use super::pattern::Pattern;
use crate::event::{Event, EventKind, StatusCode, NO_INSTRUMENT};
use crate::instrument::Instrument;
use crate::render::{json_escape_into, write_event_json};
use crate::ring::books::{BookReader, BookSnapshot};
use crate::ring::layout::writer_state;
use crate::ring::{GoneReason, Poll, Reader, ReaderOptions, StartAt, WriterStatus};
use crate::time::now_ns;

/// Channel bits of a subscription.
pub const TRADES: u8 = 1;
pub const BOOK: u8 = 2;
pub const BBO: u8 = 4;
pub const STATUS: u8 = 8;
pub const CHANNELS: [(&str, u8); 4] = [
    ("trades", TRADES),
    ("book", BOOK),
    ("bbo", BBO),
    ("status", STATUS),
];

pub fn channel_bit(name: &str) -> Option<u8> {
    CHANNELS.iter().find(|(n, _)| *n == name).map(|&(_, b)| b)
}

pub fn channel_names(mask: u8) -> Vec<&'static str> {
    CHANNELS
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|&(n, _)| n)
        .collect()
}

/// How long a book subscription waits for a snapshot that lines up with
/// the stream before it is answered with an error.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// One message for a client: JSON text shared by every recipient, and the
/// event's publish time (0 for replies and notices) for the age histogram.
#[derive(Clone)]
pub struct Out {
    pub text: Utf8Bytes,
    pub publish_ts: i64,
}

impl Out {
    pub fn notice(text: String) -> Out {
        Out {
            text: Utf8Bytes::from(text),
            publish_ts: 0,
        }
    }
}

/// A WebSocket client as the workers see it: a bounded queue and flags.
pub struct Client {
    pub id: u64,
    tx: mpsc::Sender<Out>,
    /// Set when the client left or was evicted: workers stop sending.
    gone: AtomicBool,
    evicted: AtomicBool,
    /// Woken once when the client is evicted.
    pub evict: Notify,
    metrics: Arc<Metrics>,
}

impl Client {
    pub fn new(id: u64, queue: usize, metrics: Arc<Metrics>) -> (Arc<Client>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(queue);
        let c = Client {
            id,
            tx,
            gone: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            metrics,
        };
        (Arc::new(c), rx)
    }

    /// Queues `out` without waiting. A full queue evicts the client (the
    /// first time, counted in `dropped_slow`). False when the message was
    /// not queued.
    #[inline]
    pub fn push(&self, out: Out) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.evict_slow();
                false
            }
            Err(TrySendError::Closed(_)) => {
                self.gone.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    fn evict_slow(&self) {
        self.gone.store(true, Ordering::Relaxed);
        if !self.evicted.swap(true, Ordering::AcqRel) {
            self.metrics.dropped_slow.fetch_add(1, Ordering::Relaxed);
            self.evict.notify_one();
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    pub fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// The client task is ending: workers drop it at their next look.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }
}

/// Counters kept per ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingCounter {
    Events,
    Trades,
    BookEvents,
    Bbo,
    Status,
    Overruns,
    Lost,
    Gaps,
    Resyncs,
    ChecksumFailures,
    Crossed,
    WriterRestarts,
}
const N_COUNTERS: usize = 12;

/// A ring's book region, reopened when the collector replaces the file.
#[derive(Default)]
pub struct BookSource {
    ring_path: Option<PathBuf>,
    reader: Option<BookReader>,
    ident: Option<(u64, u64)>,
}

impl BookSource {
    fn set_ring(&mut self, p: &Path) {
        if self.ring_path.as_deref() != Some(p) {
            *self = BookSource {
                ring_path: Some(p.to_owned()),
                ..BookSource::default()
            };
        }
    }

    /// The current book reader; `Err` says why there is none.
    pub fn get(&mut self) -> Result<&BookReader, String> {
        let Some(ring) = &self.ring_path else {
            return Err("the ring is not open".into());
        };
        let path = crate::ring::books::books_path(ring);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("no book region {}: {e}", path.display()))?;
        let ident = (meta.dev(), meta.ino());
        if self.ident != Some(ident) || self.reader.is_none() {
            self.reader = None;
            let r = BookReader::open(ring).map_err(|e| e.to_string())?;
            self.reader = Some(r);
            self.ident = Some(ident);
        }
        Ok(self.reader.as_ref().expect("just opened"))
    }
}

/// Book state of one instrument as the feed's status events tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BookHealth {
    #[default]
    Unknown,
    Valid,
    Resyncing,
}

impl BookHealth {
    pub fn name(self) -> &'static str {
        match self {
            BookHealth::Unknown => "unknown",
            BookHealth::Valid => "valid",
            BookHealth::Resyncing => "resyncing",
        }
    }
}

/// What `/v1/feeds` shows of a ring, refreshed by its worker 4 times a second.
#[derive(Clone, Debug, Default)]
pub struct FeedStatus {
    pub path: Option<PathBuf>,
    pub error: Option<String>,
    pub writer: Option<WriterStatus>,
    /// Per second over the last full second: events, trades, book events, status events.
    pub rates: [f64; 4],
    /// From the feed's Connected/Disconnected status events.
    pub connected: Option<bool>,
    pub reconnects: u64,
    /// (qualified name, book health) per instrument id.
    pub instruments: Vec<(String, BookHealth)>,
    /// Read age (read time - publish time) over the last second: p50, p99, max (ns), count.
    pub read_age: Option<(u64, u64, u64, u64)>,
}

/// One ring as the HTTP side sees it: counters, directory, book region.
pub struct RingState {
    pub name: String,
    /// Listed in the config (else discovered in a `ring_dir`).
    pub configured: bool,
    counters: [AtomicU64; N_COUNTERS],
    open: AtomicBool,
    writer_alive: AtomicBool,
    /// Publish time of the last event read, or of the writer's heartbeat,
    /// whichever is newer (ns since the epoch; 0 = never).
    fresh_ns: AtomicI64,
    last_publish_ts: AtomicI64,
    /// The writer's last heartbeat (ns since the epoch; 0 = never seen).
    heartbeat_ns: AtomicI64,
    /// Events published but not yet read by this worker, and the ring's
    /// capacity, both sampled by the worker's housekeeping (0 = not open).
    lag: AtomicU64,
    capacity: AtomicU64,
    pub instruments: RwLock<Vec<Instrument>>,
    pub books: Mutex<BookSource>,
    pub feed: Mutex<FeedStatus>,
}

impl RingState {
    fn new(name: String, configured: bool) -> RingState {
        RingState {
            name,
            configured,
            counters: Default::default(),
            open: AtomicBool::new(false),
            writer_alive: AtomicBool::new(false),
            fresh_ns: AtomicI64::new(0),
            last_publish_ts: AtomicI64::new(0),
            heartbeat_ns: AtomicI64::new(0),
            lag: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            instruments: RwLock::new(Vec::new()),
            books: Mutex::new(BookSource::default()),
            feed: Mutex::new(FeedStatus::default()),
        }
    }

    #[inline]
    fn bump(&self, c: RingCounter, n: u64) {
        self.counters[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn counter(&self, c: RingCounter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    pub fn writer_alive(&self) -> bool {
        self.writer_alive.load(Ordering::Relaxed)
    }

    /// Age of the last event read (by publish time), if any.
    pub fn last_event_age_ns(&self) -> Option<i64> {
        match self.last_publish_ts.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ns() - t),
        }
    }

    /// Age of the newest sign of life: last event or writer heartbeat.
    pub fn freshness_age_ns(&self) -> Option<i64> {
        match self.fresh_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ns() - t),
        }
    }

    /// Age of the writer's heartbeat as this reader last saw it, if any.
    pub fn writer_heartbeat_age_ns(&self) -> Option<i64> {
        match self.heartbeat_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ns() - t),
        }
    }

    /// (events behind the writer, ring capacity) at the last housekeeping,
    /// while the ring is open.
    pub fn lag(&self) -> Option<(u64, u64)> {
        match self.capacity.load(Ordering::Relaxed) {
            0 => None,
            c => Some((self.lag.load(Ordering::Relaxed), c)),
        }
    }

    /// Records what the reader sees of the writer and its own position.
    fn sample_reader(&self, heartbeat_ns: i64, lag: u64, capacity: u64) {
        self.touch(heartbeat_ns);
        self.heartbeat_ns.store(heartbeat_ns, Ordering::Relaxed);
        self.lag.store(lag, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Reads the writer's status through `reader` and records it: heartbeat,
    /// this reader's lag, the capacity, and whether the writer is running.
    fn observe(&self, reader: &Reader) -> WriterStatus {
        let st = reader.writer_status();
        self.sample_reader(
            st.heartbeat_ns,
            reader.cursor().saturating_sub(reader.position()),
            reader.capacity(),
        );
        self.writer_alive.store(
            st.gone.is_none() && st.state == writer_state::RUNNING,
            Ordering::Relaxed,
        );
        st
    }

    fn touch(&self, ts: i64) {
        self.fresh_ns.fetch_max(ts, Ordering::Relaxed);
    }

    /// Instrument `name` (`exchange:symbol`) in this ring: id and definition.
    pub fn find(&self, name: &str) -> Option<(u16, Instrument)> {
        let insts = self.instruments.read().unwrap_or_else(|e| e.into_inner());
        insts
            .iter()
            .position(|i| {
                let (ex, sym) = name.split_once(':').unwrap_or(("", ""));
                i.exchange.name() == ex && i.symbol == sym
            })
            .map(|id| (id as u16, insts[id].clone()))
    }
}

/// Renders a book snapshot as JSON: `{"type":"snapshot", ...}` on the
/// stream (`tag` set), without `type` for REST.
pub fn write_snapshot_json(
    out: &mut String,
    tag: bool,
    ring: &str,
    inst: &Instrument,
    snap: &BookSnapshot,
    region_depth: u32,
    limit: usize,
) {
    use std::fmt::Write as _;
    out.push('{');
    if tag {
        out.push_str("\"type\":\"snapshot\",");
    }
    out.push_str("\"ring\":\"");
    json_escape_into(out, ring);
    let _ = write!(
        out,
        "\",\"exchange\":\"{}\",\"symbol\":\"",
        inst.exchange.name()
    );
    json_escape_into(out, &inst.symbol);
    let _ = write!(
        out,
        "\",\"ring_seq\":{},\"exch_seq\":{},\"ts\":{},\"valid\":{},\"depth\":{}",
        snap.ring_seq, snap.exch_seq, snap.ts, snap.valid, region_depth
    );
    for (name, side) in [("bids", &snap.bids), ("asks", &snap.asks)] {
        let _ = write!(out, ",\"{name}\":[");
        for (i, &(p, q)) in side.iter().take(limit).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("[\"");
            crate::fixed::write_canonical(out, p, inst.price_scale);
            out.push_str("\",\"");
            crate::fixed::write_canonical(out, q, inst.qty_scale);
            out.push_str("\"]");
        }
        out.push(']');
    }
    out.push('}');
}

/// Commands from client tasks to a worker.
enum Cmd {
    Subscribe {
        client: Arc<Client>,
        subs: Vec<(Pattern, u8)>,
        /// Signalled once the subscription is active in this ring.
        done: Option<oneshot::Sender<()>>,
    },
    Unsubscribe {
        client: u64,
        patterns: Vec<Pattern>,
        mask: u8,
        done: Option<oneshot::Sender<()>>,
    },
    Remove {
        client: u64,
    },
}

/// Where a worker finds its ring file.
#[derive(Clone, Debug)]
pub enum RingLocation {
    /// A name or path from the config, resolved at each open attempt.
    Configured(String),
    /// A file found in a `ring_dir`.
    Path(PathBuf),
}

/// Knobs of the ring workers.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub idle_sleep: Duration,
}

struct WorkerHandle {
    state: Arc<RingState>,
    tx: std_mpsc::Sender<Cmd>,
}

/// A client and its subscriptions (pattern, channel bits).
type Registered = (Arc<Client>, Vec<(Pattern, u8)>);

#[derive(Default)]
struct HubInner {
    workers: Vec<WorkerHandle>,
    /// Every client's subscriptions, replayed to rings that appear later.
    registry: HashMap<u64, Registered>,
    threads: Vec<JoinHandle<()>>,
}

/// The meeting point of client tasks and ring workers.
pub struct Hub {
    inner: Mutex<HubInner>,
    pub metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    opts: WorkerOptions,
    next_client: AtomicU64,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, opts: WorkerOptions) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::new(HubInner::default()),
            metrics,
            shutdown: Arc::new(AtomicBool::new(false)),
            opts,
            next_client: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts a reader thread for ring `name`. Existing subscriptions are
    /// handed to it. No-op when a ring of that name is already served.
    pub fn add_ring(
        &self,
        name: &str,
        location: RingLocation,
        configured: bool,
    ) -> std::io::Result<()> {
        let mut inner = self.lock();
        if inner.workers.iter().any(|w| w.state.name == name) {
            return Ok(());
        }
        let state = Arc::new(RingState::new(name.to_owned(), configured));
        let (tx, rx) = std_mpsc::channel();
        for (client, subs) in inner.registry.values() {
            let _ = tx.send(Cmd::Subscribe {
                client: client.clone(),
                subs: subs.clone(),
                done: None,
            });
        }
        let worker = Worker::new(
            state.clone(),
            location,
            rx,
            self.shutdown.clone(),
            &self.opts,
        );
        let t = std::thread::Builder::new()
            .name(format!("ring-{name}"))
            .spawn(move || worker.run())?;
        inner.threads.push(t);
        inner.workers.push(WorkerHandle { state, tx });
        Ok(())
    }

    pub fn has_ring(&self, name: &str) -> bool {
        self.lock().workers.iter().any(|w| w.state.name == name)
    }

    /// Every ring, in the order they were added.
    pub fn rings(&self) -> Vec<Arc<RingState>> {
        self.lock()
            .workers
            .iter()
            .map(|w| w.state.clone())
            .collect()
    }

    /// Rings holding instrument `name`, with its id there.
    pub fn find_instrument(&self, name: &str) -> Vec<(Arc<RingState>, u16, Instrument)> {
        self.rings()
            .into_iter()
            .filter_map(|r| r.find(name).map(|(id, i)| (r.clone(), id, i)))
            .collect()
    }

    /// Registers `subs` for `client` in every ring. The receivers complete
    /// once each ring's reader applied it: events published afterwards
    /// reach the client.
    pub fn subscribe(
        &self,
        client: &Arc<Client>,
        subs: Vec<(Pattern, u8)>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        let entry = inner
            .registry
            .entry(client.id)
            .or_insert_with(|| (client.clone(), Vec::new()));
        for (p, m) in &subs {
            match entry.1.iter_mut().find(|(q, _)| q == p) {
                Some((_, mask)) => *mask |= m,
                None => entry.1.push((p.clone(), *m)),
            }
        }
        let mut waits = Vec::new();
        for w in &inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx
                .send(Cmd::Subscribe {
                    client: client.clone(),
                    subs: subs.clone(),
                    done: Some(tx),
                })
                .is_ok()
            {
                waits.push(rx);
            }
        }
        waits
    }

    /// Removes the channels in `mask` from every instrument matching
    /// `patterns`, and forgets those patterns; same completion as
    /// [`Hub::subscribe`].
    pub fn unsubscribe(
        &self,
        client: u64,
        patterns: Vec<Pattern>,
        mask: u8,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        if let Some((_, subs)) = inner.registry.get_mut(&client) {
            for (p, m) in subs.iter_mut() {
                if patterns.contains(p) {
                    *m &= !mask;
                }
            }
            subs.retain(|(_, m)| *m != 0);
        }
        let mut waits = Vec::new();
        for w in &inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx
                .send(Cmd::Unsubscribe {
                    client,
                    patterns: patterns.clone(),
                    mask,
                    done: Some(tx),
                })
                .is_ok()
            {
                waits.push(rx);
            }
        }
        waits
    }

    pub fn remove(&self, client: u64) {
        let mut inner = self.lock();
        inner.registry.remove(&client);
        for w in &inner.workers {
            let _ = w.tx.send(Cmd::Remove { client });
        }
    }

    /// Stops the reader threads and waits for them.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.lock().threads);
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Scans `dir` for `*.ring` files and serves each one not yet served.
pub fn discover(hub: &Hub, dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("ring") {
            continue;
        }
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if crate::ring::check_name(stem).is_err() || hub.has_ring(stem) {
            continue;
        }
        let _ = hub.add_ring(stem, RingLocation::Path(p.clone()), false);
    }
}

struct BookSub {
    client: Arc<Client>,
    /// Book events below this ring sequence are already in the client's snapshot.
    from_seq: u64,
}

#[derive(Default)]
struct InstSubs {
    trades: Vec<Arc<Client>>,
    bbo: Vec<Arc<Client>>,
    status: Vec<Arc<Client>>,
    book: Vec<BookSub>,
}

struct Sub {
    client: Arc<Client>,
    pattern: Pattern,
    mask: u8,
}

struct Pending {
    client: Arc<Client>,
    id: u16,
    since: Instant,
}

enum SnapTry {
    Ready(String, u64),
    NotYet,
    Unavailable(String),
}

/// "No book event of this instrument seen".
const NONE_SEEN: u64 = u64::MAX;

/// A ring's reader thread.
struct Worker {
    state: Arc<RingState>,
    location: RingLocation,
    cmds: std_mpsc::Receiver<Cmd>,
    shutdown: Arc<AtomicBool>,
    idle_sleep: Duration,
    reader: Option<Reader>,
    path: Option<PathBuf>,
    subs: Vec<Sub>,
    insts: Vec<Instrument>,
    names: Vec<String>,
    index: Vec<InstSubs>,
    /// Clients with a status subscription on any instrument of the ring:
    /// they also get connection-wide status events.
    status_any: Vec<Arc<Client>>,
    pending: Vec<Pending>,
    /// Ring sequence of the last book event seen per instrument id.
    last_book_seq: Vec<u64>,
    /// The first ring sequence not yet handed to subscribers: a snapshot
    /// taken now must be followed by events from here on.
    next_dispatch: u64,
    health: Vec<BookHealth>,
    connected: Option<bool>,
    reconnects: u64,
    scratch: String,
    read_age: hdrhistogram::Histogram<u64>,
    last_rates_at: Instant,
    last_counts: [u64; 4],
    rates: [f64; 4],
    last_age: Option<(u64, u64, u64, u64)>,
    open_error: Option<String>,
}

impl Worker {
    fn new(
        state: Arc<RingState>,
        location: RingLocation,
        cmds: std_mpsc::Receiver<Cmd>,
        shutdown: Arc<AtomicBool>,
        opts: &WorkerOptions,
    ) -> Worker {
        Worker {
            state,
            location,
            cmds,
            shutdown,
            idle_sleep: opts.idle_sleep,
            reader: None,
            path: None,
            subs: Vec::new(),
            insts: Vec::new(),
            names: Vec::new(),
            index: Vec::new(),
            status_any: Vec::new(),
            pending: Vec::new(),
            last_book_seq: Vec::new(),
            next_dispatch: 0,
            health: Vec::new(),
            connected: None,
            reconnects: 0,
            scratch: String::with_capacity(512),
            read_age: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 2)
                .expect("valid histogram bounds"),
            last_rates_at: Instant::now(),
            last_counts: [0; 4],
            rates: [0.0; 4],
            last_age: None,
            open_error: None,
        }
    }

    fn run(mut self) {
        set_timer_slack_1us();
        let mut idle: u32 = 0;
        let mut last_hk = Instant::now() - Duration::from_secs(1);
        let mut last_open_try = Instant::now() - Duration::from_secs(1);
        let mut last_pending = Instant::now();
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            while let Ok(cmd) = self.cmds.try_recv() {
                self.command(cmd);
            }
            if self.reader.is_none() {
                if last_open_try.elapsed() >= Duration::from_millis(250) {
                    last_open_try = Instant::now();
                    self.try_open();
                }
                if self.reader.is_none() {
                    if last_hk.elapsed() >= Duration::from_millis(250) {
                        last_hk = Instant::now();
                        self.housekeeping();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
            let mut n = 0;
            while n < 4096 {
                let Some(reader) = self.reader.as_mut() else {
                    break;
                };
                match reader.poll() {
                    Poll::Event(ev) => {
                        n += 1;
                        self.on_event(&ev);
                    }
                    Poll::Empty => break,
                    Poll::Overrun { lost } => self.on_overrun(lost),
                    Poll::WriterRestarted { epoch } => self.on_restart(epoch),
                    Poll::WriterGone(reason) => self.on_gone(reason),
                }
            }
            if !self.pending.is_empty() && last_pending.elapsed() >= Duration::from_millis(1) {
                last_pending = Instant::now();
                self.resolve_pending();
            }
            if last_hk.elapsed() >= Duration::from_millis(250) {
                last_hk = Instant::now();
                self.housekeeping();
            }
            if n == 0 {
                idle = idle.saturating_add(1);
                // NB: spin briefly, then sleep 10, 20, 40 ... us up to
                // `idle_sleep` (200 us by default). A reader that spins
                // steals the core the client tasks need on a 2-core host;
                // a fixed 50 us sleep cost 26% of a core while idle here
                // (each wake ~13 us on this VM), the 200 us ceiling ~6%,
                // for at most 200 us added to the first event after a
                // quiet spell (timer slack is 1 us).
                if idle < 64 {
                    std::hint::spin_loop();
                } else {
                    let k = (idle - 64).min(16);
                    let us = (10u64 << k).min(self.idle_sleep.as_micros() as u64);
                    std::thread::sleep(Duration::from_micros(us.max(1)));
                }
            } else {
                idle = 0;
            }
        }
        self.state.open.store(false, Ordering::Relaxed);
    }

    fn resolve_path(&self) -> Result<PathBuf, String> {
        match &self.location {
            RingLocation::Path(p) => Ok(p.clone()),
            RingLocation::Configured(arg) => crate::ring::find_ring(arg).map_err(|e| e.to_string()),
        }
    }

    fn try_open(&mut self) {
        let path = match self.resolve_path() {
            Ok(p) => p,
            Err(e) => {
                self.open_error = Some(e);
                return;
            }
        };
        let opts = ReaderOptions {
            start: StartAt::Oldest,
            ..ReaderOptions::default()
        };
        let mut reader = match Reader::open(&path, &opts) {
            Ok(r) => r,
            Err(e) => {
                self.open_error = Some(e.to_string());
                return;
            }
        };
        self.open_error = None;
        // Warm up: read what the ring holds without sending it anywhere, to
        // learn which instruments had book events since each snapshot.
        self.insts.clear();
        self.names.clear();
        self.index.clear();
        self.health.clear();
        self.last_book_seq.clear();
        self.status_any.clear();
        for p in std::mem::take(&mut self.pending) {
            drop(p);
        }
        let end = reader.cursor();
        while reader.position() < end {
            match reader.poll() {
                Poll::Event(ev) => {
                    if is_book_kind(ev.kind) {
                        let id = ev.instrument as usize;
                        if self.last_book_seq.len() <= id {
                            self.last_book_seq.resize(id + 1, NONE_SEEN);
                        }
                        self.last_book_seq[id] = ev.ring_seq;
                    }
                    if ev.publish_ts > 0 {
                        self.state
                            .last_publish_ts
                            .store(ev.publish_ts, Ordering::Relaxed);
                        self.state.touch(ev.publish_ts);
                    }
                }
                Poll::Overrun { .. } | Poll::WriterRestarted { .. } => {}
                Poll::Empty | Poll::WriterGone(_) => break,
            }
        }
        self.state.observe(&reader);
        self.state
            .books
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_ring(&path);
        self.path = Some(path);
        self.next_dispatch = reader.position();
        self.reader = Some(reader);
        self.state.open.store(true, Ordering::Relaxed);
        self.refresh_instruments();
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Subscribe { client, subs, done } => {
                for (p, mask) in subs {
                    match self
                        .subs
                        .iter_mut()
                        .find(|s| s.client.id == client.id && s.pattern == p)
                    {
                        Some(s) => s.mask |= mask,
                        None => self.subs.push(Sub {
                            client: client.clone(),
                            pattern: p.clone(),
                            mask,
                        }),
                    }
                    for id in 0..self.names.len() {
                        if p.matches(&self.names[id]) {
                            self.add(id, &client, mask);
                        }
                    }
                }
                self.resolve_pending();
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Cmd::Unsubscribe {
                client,
                patterns,
                mask,
                done,
            } => {
                for s in self.subs.iter_mut() {
                    if s.client.id == client && patterns.contains(&s.pattern) {
                        s.mask &= !mask;
                    }
                }
                self.subs.retain(|s| s.mask != 0);
                for id in 0..self.names.len() {
                    if !patterns.iter().any(|p| p.matches(&self.names[id])) {
                        continue;
                    }
                    let e = &mut self.index[id];
                    let keep = |c: &Arc<Client>| c.id != client;
                    if mask & TRADES != 0 {
                        e.trades.retain(keep);
                    }
                    if mask & BBO != 0 {
                        e.bbo.retain(keep);
                    }
                    if mask & STATUS != 0 {
                        e.status.retain(keep);
                    }
                    if mask & BOOK != 0 {
                        e.book.retain(|b| b.client.id != client);
                        self.pending
                            .retain(|p| !(p.client.id == client && p.id as usize == id));
                    }
                }
                self.rebuild_status_any();
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Cmd::Remove { client } => {
                self.subs.retain(|s| s.client.id != client);
                for e in self.index.iter_mut() {
                    let keep = |c: &Arc<Client>| c.id != client;
                    e.trades.retain(keep);
                    e.bbo.retain(keep);
                    e.status.retain(keep);
                    e.book.retain(|b| b.client.id != client);
                }
                self.pending.retain(|p| p.client.id != client);
                self.status_any.retain(|c| c.id != client);
            }
        }
    }

    /// Adds `client` to instrument `id` for the channels in `mask`.
    fn add(&mut self, id: usize, client: &Arc<Client>, mask: u8) {
        let e = &mut self.index[id];
        let has = |v: &Vec<Arc<Client>>| v.iter().any(|c| c.id == client.id);
        if mask & TRADES != 0 && !has(&e.trades) {
            e.trades.push(client.clone());
        }
        if mask & BBO != 0 && !has(&e.bbo) {
            e.bbo.push(client.clone());
        }
        if mask & STATUS != 0 && !has(&e.status) {
            e.status.push(client.clone());
            if !has(&self.status_any) {
                self.status_any.push(client.clone());
            }
        }
        if mask & BOOK != 0
            && !e.book.iter().any(|b| b.client.id == client.id)
            && !self
                .pending
                .iter()
                .any(|p| p.client.id == client.id && p.id as usize == id)
        {
            self.pending.push(Pending {
                client: client.clone(),
                id: id as u16,
                since: Instant::now(),
            });
        }
    }

    fn rebuild_status_any(&mut self) {
        let mut all: Vec<Arc<Client>> = Vec::new();
        for e in &self.index {
            for c in &e.status {
                if !all.iter().any(|a| a.id == c.id) {
                    all.push(c.clone());
                }
            }
        }
        self.status_any = all;
    }

    fn refresh_instruments(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let known = self.insts.len();
        let all = reader.instruments();
        if all.len() <= known {
            return;
        }
        let new: Vec<Instrument> = all[known..].to_vec();
        {
            let mut dir = self
                .state
                .instruments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            dir.truncate(known);
            dir.extend(new.iter().cloned());
        }
        for inst in new {
            self.names.push(inst.qualified_name());
            self.insts.push(inst);
            self.index.push(InstSubs::default());
            self.health.push(BookHealth::Unknown);
        }
        if self.last_book_seq.len() < self.insts.len() {
            self.last_book_seq.resize(self.insts.len(), NONE_SEEN);
        }
        let mut adds = Vec::new();
        for s in &self.subs {
            for id in known..self.names.len() {
                if s.pattern.matches(&self.names[id]) {
                    adds.push((id, s.client.clone(), s.mask));
                }
            }
        }
        for (id, c, m) in adds {
            self.add(id, &c, m);
        }
        if !self.pending.is_empty() {
            self.resolve_pending();
        }
    }

    #[inline]
    fn on_event(&mut self, ev: &Event) {
        // Subscriptions resolved while handling this event (a new
        // instrument) must receive it.
        self.next_dispatch = ev.ring_seq;
        self.dispatch(ev);
        self.next_dispatch = ev.ring_seq + 1;
    }

    #[inline]
    fn dispatch(&mut self, ev: &Event) {
        let id = ev.instrument as usize;
        if id != NO_INSTRUMENT as usize && id >= self.insts.len() {
            self.refresh_instruments();
        }
        let st = &self.state;
        st.bump(RingCounter::Events, 1);
        if ev.publish_ts > 0 {
            st.last_publish_ts.store(ev.publish_ts, Ordering::Relaxed);
            st.touch(ev.publish_ts);
            let now = now_ns();
            let _ = self.read_age.record((now - ev.publish_ts).max(1) as u64);
        }
        let Some(kind) = EventKind::from_u8(ev.kind) else {
            return;
        };
        if is_book_kind(ev.kind) && id != NO_INSTRUMENT as usize {
            if self.last_book_seq.len() <= id {
                self.last_book_seq.resize(id + 1, NONE_SEEN);
            }
            self.last_book_seq[id] = ev.ring_seq;
        }
        let inst = self.insts.get(id);
        match kind {
            EventKind::Trade => {
                st.bump(RingCounter::Trades, 1);
                if let Some(e) = self.index.get_mut(id) {
                    fanout(&mut e.trades, &mut self.scratch, ev, inst);
                }
            }
            EventKind::Bbo => {
                st.bump(RingCounter::Bbo, 1);
                if let Some(e) = self.index.get_mut(id) {
                    fanout(&mut e.bbo, &mut self.scratch, ev, inst);
                }
            }
            EventKind::BookSet
            | EventKind::BookDelete
            | EventKind::SnapshotBegin
            | EventKind::SnapshotEnd => {
                st.bump(RingCounter::BookEvents, 1);
                if let Some(e) = self.index.get_mut(id) {
                    fanout_book(&mut e.book, &mut self.scratch, ev, inst);
                }
            }
            EventKind::Status => {
                st.bump(RingCounter::Status, 1);
                self.on_status(ev);
                let inst = self.insts.get(id);
                if id == NO_INSTRUMENT as usize {
                    fanout(&mut self.status_any, &mut self.scratch, ev, None);
                } else if let Some(e) = self.index.get_mut(id) {
                    fanout(&mut e.status, &mut self.scratch, ev, inst);
                }
            }
        }
    }

    fn on_status(&mut self, ev: &Event) {
        let id = ev.instrument as usize;
        let st = &self.state;
        let mut set = |h: BookHealth| {
            if let Some(x) = self.health.get_mut(id) {
                *x = h;
            }
        };
        match StatusCode::from_u16(ev.status) {
            Some(StatusCode::Connected) => {
                self.connected = Some(true);
                self.reconnects = ev.seq;
            }
            Some(StatusCode::Disconnected) | Some(StatusCode::WriterStopping) => {
                self.connected = Some(false);
            }
            Some(StatusCode::Gap) => st.bump(RingCounter::Gaps, 1),
            Some(StatusCode::ChecksumFailed) => st.bump(RingCounter::ChecksumFailures, 1),
            Some(StatusCode::ResyncStarted) => {
                st.bump(RingCounter::Resyncs, 1);
                set(BookHealth::Resyncing);
            }
            Some(StatusCode::BookValid) => set(BookHealth::Valid),
            Some(StatusCode::BookCrossed) => st.bump(RingCounter::Crossed, 1),
            _ => {}
        }
    }

    /// Every client subscribed to anything in this ring, once each.
    fn all_clients(&self) -> Vec<Arc<Client>> {
        let mut seen: HashMap<u64, Arc<Client>> = HashMap::new();
        for s in &self.subs {
            seen.entry(s.client.id).or_insert_with(|| s.client.clone());
        }
        seen.into_values().collect()
    }

    fn notify_all(&self, text: String) {
        let out = Out::notice(text);
        for c in self.all_clients() {
            c.push(out.clone());
        }
    }

    /// Book subscribers go back to waiting for a snapshot that lines up.
    fn resnapshot_all(&mut self) {
        let now = Instant::now();
        for (id, e) in self.index.iter_mut().enumerate() {
            for b in e.book.drain(..) {
                self.pending.push(Pending {
                    client: b.client,
                    id: id as u16,
                    since: now,
                });
            }
        }
    }

    fn on_overrun(&mut self, lost: u64) {
        self.state.bump(RingCounter::Overruns, 1);
        self.state.bump(RingCounter::Lost, lost);
        if let Some(r) = &self.reader {
            self.next_dispatch = r.position();
        }
        let mut s = String::new();
        s.push_str("{\"type\":\"overrun\",\"ring\":\"");
        json_escape_into(&mut s, &self.state.name);
        s.push_str(&format!("\",\"lost\":{lost}}}"));
        self.notify_all(s);
        self.resnapshot_all();
    }

    fn on_restart(&mut self, epoch: u64) {
        self.state.bump(RingCounter::WriterRestarts, 1);
        self.state.writer_alive.store(true, Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("{\"type\":\"writer_restarted\",\"ring\":\"");
        json_escape_into(&mut s, &self.state.name);
        s.push_str(&format!("\",\"epoch\":{epoch}}}"));
        self.notify_all(s);
        self.resnapshot_all();
    }

    fn on_gone(&mut self, reason: GoneReason) {
        self.state.writer_alive.store(false, Ordering::Relaxed);
        let why = match reason {
            GoneReason::Stopped => "stopped".to_owned(),
            GoneReason::Died { pid } => format!("died (pid {pid})"),
            GoneReason::Retired => "retired".to_owned(),
        };
        let mut s = String::new();
        s.push_str("{\"type\":\"writer_gone\",\"ring\":\"");
        json_escape_into(&mut s, &self.state.name);
        s.push_str("\",\"reason\":\"");
        json_escape_into(&mut s, &why);
        s.push_str("\"}");
        self.notify_all(s);
        if reason == GoneReason::Retired {
            // The file was replaced by one of another size: reopen by path.
            self.reader = None;
            self.state.open.store(false, Ordering::Relaxed);
        }
    }

    fn try_snapshot(&mut self, id: u16) -> SnapTry {
        if self.reader.is_none() {
            return SnapTry::NotYet;
        }
        let pos = self.next_dispatch;
        let last = self
            .last_book_seq
            .get(id as usize)
            .copied()
            .unwrap_or(NONE_SEEN);
        let mut books = self.state.books.lock().unwrap_or_else(|e| e.into_inner());
        let br = match books.get() {
            Ok(b) => b,
            Err(e) => {
                return SnapTry::Unavailable(format!(
                    "ring {:?} has no book snapshots: {e}",
                    self.state.name
                ))
            }
        };
        let depth = br.depth();
        let snap = br.read(id);
        drop(books);
        let inst = &self.insts[id as usize];
        // A snapshot behind the reader is used only if no book event of
        // the instrument was seen since it was taken. Events the reader
        // lost to an overrun are a full ring lap old: the writer published
        // the snapshots that follow them long ago.
        let (snap, from) = match snap {
            Some(s) if s.ring_seq >= pos => {
                let from = s.ring_seq;
                (s, from)
            }
            Some(s) if last == NONE_SEEN || last < s.ring_seq => (s, pos),
            // No book for this instrument yet: an empty one, marked invalid.
            None if last == NONE_SEEN => (
                BookSnapshot {
                    ring_seq: pos,
                    ..BookSnapshot::default()
                },
                pos,
            ),
            _ => return SnapTry::NotYet,
        };
        let mut text = String::with_capacity(256);
        write_snapshot_json(
            &mut text,
            true,
            &self.state.name,
            inst,
            &snap,
            depth,
            usize::MAX,
        );
        SnapTry::Ready(text, from)
    }

    fn resolve_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|p| {
            if p.client.is_gone() {
                return false;
            }
            match self.try_snapshot(p.id) {
                SnapTry::Ready(text, from) => {
                    if p.client.push(Out::notice(text)) {
                        self.index[p.id as usize].book.push(BookSub {
                            client: p.client.clone(),
                            from_seq: from,
                        });
                    }
                    false
                }
                SnapTry::NotYet if p.since.elapsed() < SNAPSHOT_TIMEOUT => true,
                SnapTry::NotYet => {
                    p.client.push(Out::notice(error_json(&format!(
                        "no book snapshot of {} lines up with the stream after {} s: \
                         the ring's writer has not published one; subscribe again later",
                        self.names[p.id as usize],
                        SNAPSHOT_TIMEOUT.as_secs()
                    ))));
                    false
                }
                SnapTry::Unavailable(why) => {
                    p.client.push(Out::notice(error_json(&format!(
                        "no book for {}: {why}",
                        self.names[p.id as usize]
                    ))));
                    false
                }
            }
        });
        // Subscriptions added while resolving (none today) are kept too.
        pending.append(&mut self.pending);
        self.pending = pending;
    }

    fn housekeeping(&mut self) {
        if self.reader.is_some() {
            self.refresh_instruments();
        }
        // Drop clients that left from quiet instruments' lists.
        for e in self.index.iter_mut() {
            e.trades.retain(|c| !c.is_gone());
            e.bbo.retain(|c| !c.is_gone());
            e.status.retain(|c| !c.is_gone());
            e.book.retain(|b| !b.client.is_gone());
        }
        self.status_any.retain(|c| !c.is_gone());
        let writer = self.reader.as_ref().map(|r| self.state.observe(r));
        let el = self.last_rates_at.elapsed();
        if el >= Duration::from_secs(1) {
            let counts = [
                self.state.counter(RingCounter::Events),
                self.state.counter(RingCounter::Trades),
                self.state.counter(RingCounter::BookEvents),
                self.state.counter(RingCounter::Status),
            ];
            for (i, c) in counts.iter().enumerate() {
                self.rates[i] = (c - self.last_counts[i]) as f64 / el.as_secs_f64();
            }
            self.last_counts = counts;
            self.last_rates_at = Instant::now();
            let h = &self.read_age;
            self.last_age = if h.is_empty() {
                None
            } else {
                Some((
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max(),
                    h.len(),
                ))
            };
            self.read_age.reset();
        }
        let fs = FeedStatus {
            path: self.path.clone(),
            error: self.open_error.clone(),
            writer,
            rates: self.rates,
            connected: self.connected,
            reconnects: self.reconnects,
            instruments: self
                .names
                .iter()
                .cloned()
                .zip(self.health.iter().copied())
                .collect(),
            read_age: self.last_age,
        };
        *self.state.feed.lock().unwrap_or_else(|e| e.into_inner()) = fs;
    }
}

fn is_book_kind(kind: u8) -> bool {
    matches!(
        EventKind::from_u8(kind),
        Some(EventKind::BookSet | EventKind::BookDelete)
            | Some(EventKind::SnapshotBegin | EventKind::SnapshotEnd)
    )
}

/// `{"type":"error","error":...}`.
pub fn error_json(msg: &str) -> String {
    let mut s = String::from("{\"type\":\"error\",\"error\":\"");
    json_escape_into(&mut s, msg);
    s.push_str("\"}");
    s
}

fn render(scratch: &mut String, ev: &Event, inst: Option<&Instrument>) -> Out {
    scratch.clear();
    write_event_json(scratch, ev, inst);
    Out {
        text: Utf8Bytes::from(scratch.as_str()),
        publish_ts: ev.publish_ts,
    }
}

/// Pushes `ev` to every client of `list`, rendering it once; drops the
/// clients that are gone or could not take it.
#[inline]
fn fanout(
    list: &mut Vec<Arc<Client>>,
    scratch: &mut String,
    ev: &Event,
    inst: Option<&Instrument>,
) {
    if list.is_empty() {
        return;
    }
    let out = render(scratch, ev, inst);
    let mut k = 0;
    while k < list.len() {
        if list[k].push(out.clone()) {
            k += 1;
        } else {
            list.swap_remove(k);
        }
    }
}

#[inline]
fn fanout_book(
    list: &mut Vec<BookSub>,
    scratch: &mut String,
    ev: &Event,
    inst: Option<&Instrument>,
) {
    if list.is_empty() {
        return;
    }
    let mut out: Option<Out> = None;
    let mut k = 0;
    while k < list.len() {
        let b = &list[k];
        if ev.ring_seq < b.from_seq {
            k += 1;
            continue;
        }
        let o = out.get_or_insert_with(|| render(scratch, ev, inst));
        if b.client.push(o.clone()) {
            k += 1;
        } else {
            list.swap_remove(k);
        }
    }
}

/// Asks the kernel to wake this thread's sleeps within 1 us of their
/// deadline (the default slack is 50 us), so the idle backoff adds little
/// latency.
fn set_timer_slack_1us() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer argument and
    // only changes the calling thread's timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_evicts_once_and_counts_once() {
        let m = Arc::new(Metrics::default());
        let (c, mut rx) = Client::new(1, 2, m.clone());
        assert!(c.push(Out::notice("a".into())));
        assert!(c.push(Out::notice("b".into())));
        assert!(!c.push(Out::notice("c".into())));
        assert!(!c.push(Out::notice("d".into())));
        assert!(c.was_evicted() && c.is_gone());
        assert_eq!(m.dropped_slow.load(Ordering::Relaxed), 1);
        assert_eq!(rx.try_recv().unwrap().text.as_str(), "a");
    }

    #[test]
    fn channel_bits_round_trip() {
        for (n, b) in CHANNELS {
            assert_eq!(channel_bit(n), Some(b));
            assert_eq!(channel_names(b), vec![n]);
        }
        assert_eq!(channel_bit("trade"), None);
        assert_eq!(channel_names(TRADES | STATUS), vec!["trades", "status"]);
    }

    #[test]
    fn metrics_export_writer_heartbeat_age_and_reader_lag_per_ring() {
        let st = Arc::new(RingState::new("k".into(), true));
        let m = Metrics::default();
        // Nothing seen yet: no samples (an absent series, not a fake 0).
        let text = m.render(std::slice::from_ref(&st));
        assert!(!text.contains("tickring_gateway_ring_writer_heartbeat_age_seconds{"));
        assert!(!text.contains("tickring_gateway_ring_reader_lag_events{"));

        st.open.store(true, Ordering::Relaxed);
        st.sample_reader(now_ns() - 5_000_000_000, 12, 65536);
        let text = m.render(std::slice::from_ref(&st));
        let value = |name: &str| -> f64 {
            let prefix = format!("{name}{{ring=\"k\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        let age = value("tickring_gateway_ring_writer_heartbeat_age_seconds");
        assert!((5.0..60.0).contains(&age), "heartbeat age {age}");
        assert_eq!(value("tickring_gateway_ring_reader_lag_events"), 12.0);
        assert_eq!(value("tickring_gateway_ring_capacity_events"), 65536.0);
    }
}
