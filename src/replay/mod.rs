//! `tickring replay`: an exchange simulator that serves real captures.
//!
//! A [`ReplayServer`] listens on one TCP port (plain, or TLS with rustls),
//! speaks one exchange's WebSocket protocol (subscribe, acks, errors,
//! heartbeats, ping/pong) and serves the capture's market messages for each
//! connection's subscriptions, byte for byte as recorded. For Binance the
//! same port also answers the REST depth snapshot
//! `GET /api/v3/depth?symbol=X&limit=N`.
//!
//! # Serving model
//!
//! - A capture is loaded once ([`capture::Capture`]); each connection keeps
//!   its own subscriptions and its own position in the capture.
//! - The first subscription of a connection starts a *lane* at the first
//!   message of the capture. A later subscription that adds new streams
//!   starts a new lane for them, again at the beginning (so a late
//!   subscriber still gets its snapshot); lanes are merged by due time.
//! - Pacing ([`Pace`]): `Recorded` keeps the exchange timestamps' spacing
//!   (measured from the lane's start), `Max` sends as fast as the socket
//!   takes, `PerSecond(n)` sends n market messages a second per connection.
//! - Looping (`looping`): at the end of the capture a lane starts its next
//!   *lap* at the first message again. What a client sees at a lap boundary:
//!   - Kraken: the recorded snapshot again (`type: snapshot`), which replaces
//!     the client's book; every checksum stays valid because the lines are
//!     unchanged. (The exchange itself re-sends a snapshot only on
//!     resubscribe; a client must accept a snapshot at any time anyway.)
//!   - Coinbase Exchange: the level2 `snapshot`s again, which reset the
//!     books; `match`/`ticker` `sequence` numbers go back to the recorded ones.
//!   - Coinbase Advanced: `sequence_num` continues upward: lap `k` adds
//!     `k * (max - min + 1)` to the recorded numbers, so recorded gaps stay
//!     gaps and the lap boundary is not one.
//!   - Binance: depth diffs' `U`/`u` are raised by `k * span` on lap `k`
//!     (`span = last u - first U + 2` per symbol), so the first diff of a lap
//!     is a forward gap: the client resyncs from REST as Binance documents,
//!     and the REST snapshot's `lastUpdateId` is raised by the highest lap any
//!     connection has reached, which makes it line up with the diffs.
//! - Fault injection ([`Faults`]) counts the market messages of each
//!   connection from 1 (dropped ones included) and applies to every connection.
//!
//! # Send timestamps
//!
//! [`ReplayConfig::on_send`] is called after each market message has been
//! written to the socket (the write flushed), with a [`SendRecord`] holding
//! the connection id, the message's 1-based number on the connection, its
//! capture index and `send_ns` ([`crate::time::now_ns`], CLOCK_REALTIME).
//! With a hook set, every message is flushed on its own so the timestamp is
//! the time its bytes reached the kernel; without one, `Max` pacing batches
//! writes. An end-to-end benchmark matches the n-th message it receives
//! on a connection with the n-th record of that connection.

pub mod capture;
pub mod faults;
mod http;
pub mod protocol;
pub mod rfc3339;
mod server;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use capture::{Capture, LoadError, LoadErrorKind, MarketMsg, StreamKey};

use crate::event::Exchange;

/// How fast market messages are served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The spacing of the recorded exchange timestamps.
    Recorded,
    /// As fast as the socket takes them.
    Max,
    /// This many market messages per second per connection.
    PerSecond(u32),
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Pace, String> {
        match s {
            "recorded" => Ok(Pace::Recorded),
            "max" => Ok(Pace::Max),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Pace::PerSecond(n)),
                _ => Err(format!(
                    "pace `{s}`: expected `recorded`, `max` or a number of messages per second > 0"
                )),
            },
        }
    }
}

/// Faults injected into every connection. Message numbers count the market
/// messages of one connection from 1 (the dropped one included).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Skip the Nth market message.
    pub drop_nth: Option<u64>,
    /// Corrupt the Nth: Kraken: one digit of a level's `qty` changes so the
    /// checksum fails; Binance depth / Coinbase Advanced: the update ids /
    /// `sequence_num` are raised by one (a sequence gap); otherwise the first
    /// price or size string becomes negative.
    pub corrupt_nth: Option<u64>,
    /// Send a Close frame (1000) after N market messages and hang up.
    pub close_after: Option<u64>,
    /// After N market messages send nothing more (no heartbeats, pings or
    /// pongs either; client messages are no longer read) but keep the socket
    /// open until the server stops.
    pub silent_after: Option<u64>,
    /// Replace the Nth by an oversized text frame of `oversize_bytes` bytes
    /// (a valid JSON object `{"oversize":"xxx…"}`).
    pub oversize_nth: Option<u64>,
    pub oversize_bytes: usize,
    /// Send the Nth as a text frame that is not valid UTF-8.
    pub invalid_utf8_nth: Option<u64>,
    /// Send the Nth cut in half (broken JSON).
    pub broken_json_nth: Option<u64>,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.drop_nth.is_some()
            || self.corrupt_nth.is_some()
            || self.close_after.is_some()
            || self.silent_after.is_some()
            || self.oversize_nth.is_some()
            || self.invalid_utf8_nth.is_some()
            || self.broken_json_nth.is_some()
    }
}

/// PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One market message written to a socket (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct SendRecord {
    pub conn_id: u64,
    /// 1-based number of the message among the market messages of the connection.
    pub n: u64,
    /// Index in [`Capture::msgs`].
    pub capture_index: usize,
    pub lap: u64,
    /// Payload bytes of the frame.
    pub bytes: usize,
    /// CLOCK_REALTIME ns right after the frame was flushed to the socket.
    pub send_ns: i64,
}

/// The send-timestamp hook: called on the server thread; keep it short.
pub type SendHook = Arc<dyn Fn(&SendRecord) + Send + Sync>;

/// Everything a [`ReplayServer`] needs.
#[derive(Clone)]
pub struct ReplayConfig {
    pub exchange: Exchange,
    pub files: Vec<PathBuf>,
    /// Address to bind; port 0 picks a free port ([`ReplayServer::local_addr`]).
    pub listen: SocketAddr,
    pub pace: Pace,
    pub looping: bool,
    pub tls: Option<TlsFiles>,
    /// Binance REST depth snapshots, one JSON answer per line, and the
    /// symbol of each line in order (a REST answer names no symbol).
    pub snapshot: Option<PathBuf>,
    pub snapshot_symbols: Vec<String>,
    pub faults: Faults,
    /// Kraken and Coinbase heartbeat period (the exchanges use 1 s).
    pub heartbeat_interval: Duration,
    /// Binance server ping period (Binance uses 20 s); `None` sends none.
    pub ping_interval: Option<Duration>,
    /// Close a Binance connection whose pong is this late (Binance: 1 min).
    pub pong_timeout: Duration,
    pub on_send: Option<SendHook>,
}

impl ReplayConfig {
    /// A config with the exchanges' own defaults: recorded pace, no loop,
    /// no TLS, 1 s heartbeats, Binance pings every 20 s (others none).
    pub fn new(exchange: Exchange, files: Vec<PathBuf>, listen: SocketAddr) -> ReplayConfig {
        ReplayConfig {
            exchange,
            files,
            listen,
            pace: Pace::Recorded,
            looping: false,
            tls: None,
            snapshot: None,
            snapshot_symbols: Vec::new(),
            faults: Faults::default(),
            heartbeat_interval: Duration::from_secs(1),
            ping_interval: (exchange == Exchange::Binance).then(|| Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(60),
            on_send: None,
        }
    }
}

impl fmt::Debug for ReplayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayConfig")
            .field("exchange", &self.exchange)
            .field("files", &self.files)
            .field("listen", &self.listen)
            .field("pace", &self.pace)
            .field("looping", &self.looping)
            .field("tls", &self.tls)
            .field("snapshot", &self.snapshot)
            .field("faults", &self.faults)
            .field("on_send", &self.on_send.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    Load(LoadError),
    /// A `--snapshot` problem: file, 1-based line (0: whole file), what.
    Snapshot {
        file: PathBuf,
        line: usize,
        what: String,
    },
    /// The TLS certificate or key could not be used.
    Tls {
        file: PathBuf,
        what: String,
    },
    Bind(SocketAddr, std::io::Error),
    Runtime(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Load(e) => write!(f, "capture {e}"),
            StartError::Snapshot { file, line, what } if *line > 0 => {
                write!(f, "snapshot {} line {line}: {what}", file.display())
            }
            StartError::Snapshot { file, what, .. } => {
                write!(f, "snapshot {}: {what}", file.display())
            }
            StartError::Tls { file, what } => write!(f, "TLS {}: {what}", file.display()),
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Runtime(e) => write!(f, "cannot start the server thread: {e}"),
        }
    }
}

/// Display already names the cause (file, line, OS error), so `source` is
/// left empty: an `anyhow` chain printed with `{:#}` says it once.
impl std::error::Error for StartError {}

/// Live counters of one connection (updated by the server thread).
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub market_messages: AtomicU64,
    pub market_bytes: AtomicU64,
    pub control_messages: AtomicU64,
    /// Payload bytes of every data frame sent (market + control + faults).
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub faults_injected: AtomicU64,
    pub client_messages: AtomicU64,
    pub client_errors: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs_received: AtomicU64,
    pub laps: AtomicU64,
    pub closed: AtomicBool,
}

/// One connection as the server saw it.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub peer: SocketAddr,
    /// The request path of the WebSocket upgrade (`/stream?streams=...`).
    pub path: String,
    pub counters: ConnCounters,
}

/// A copy of one connection's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnStats {
    pub id: u64,
    pub peer: SocketAddr,
    pub path: String,
    /// Market messages sent (faulty ones included, dropped ones not).
    pub market_messages: u64,
    pub market_bytes: u64,
    /// Generated messages sent: acks, subscriptions, errors, heartbeats, pongs, status.
    pub control_messages: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub faults_injected: u64,
    pub client_messages: u64,
    /// Client requests that got an error reply.
    pub client_errors: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    /// Completed loop laps (over all lanes).
    pub laps: u64,
    pub closed: bool,
}

impl ConnInfo {
    pub fn stats(&self) -> ConnStats {
        let c = &self.counters;
        ConnStats {
            id: self.id,
            peer: self.peer,
            path: self.path.clone(),
            market_messages: c.market_messages.load(Relaxed),
            market_bytes: c.market_bytes.load(Relaxed),
            control_messages: c.control_messages.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            faults_injected: c.faults_injected.load(Relaxed),
            client_messages: c.client_messages.load(Relaxed),
            client_errors: c.client_errors.load(Relaxed),
            pings_sent: c.pings_sent.load(Relaxed),
            pongs_received: c.pongs_received.load(Relaxed),
            laps: c.laps.load(Relaxed),
            closed: c.closed.load(Relaxed),
        }
    }
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub connections: AtomicU64,
    pub rest_requests: AtomicU64,
    pub rest_bytes: AtomicU64,
    /// Connections refused before the WebSocket opened (bad HTTP, TLS failure).
    pub refused: AtomicU64,
    /// Highest loop lap any lane has reached (Binance REST snapshots follow it).
    pub max_lap: AtomicU64,
}

/// State shared between the handle and the server thread.
pub(crate) struct Shared {
    pub capture: Capture,
    pub config: ReplayConfig,
    pub rest: http::RestSnapshots,
    pub conns: Mutex<Vec<Arc<ConnInfo>>>,
    pub counters: ServerCounters,
}

/// A running replay server. [`ReplayServer::stop`] (or drop) closes every
/// connection with a Close frame (1001) and joins the server thread.
pub struct ReplayServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    stop_tx: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl ReplayServer {
    /// Loads the capture (and snapshots, certificate), binds the port and
    /// starts serving on a thread of its own. Returns once the port is bound.
    pub fn start(config: ReplayConfig) -> Result<ReplayServer, StartError> {
        let capture = Capture::load(config.exchange, &config.files).map_err(StartError::Load)?;
        let rest = match &config.snapshot {
            Some(p) => http::RestSnapshots::load(p, &config.snapshot_symbols, &capture)?,
            None => http::RestSnapshots::default(),
        };
        let tls = match &config.tls {
            Some(t) => Some(server::tls_acceptor(t)?),
            None => None,
        };
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.listen, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let shared = Arc::new(Shared {
            capture,
            config,
            rest,
            conns: Mutex::new(Vec::new()),
            counters: ServerCounters::default(),
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let is_tls = tls.is_some();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tickring-replay".into())
            .spawn(move || server::run(runtime, sh, listener, tls, stop_rx))
            .map_err(StartError::Runtime)?;
        Ok(ReplayServer {
            shared,
            addr,
            tls: is_tls,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR` or `wss://ADDR` (no path).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "wss" } else { "ws" }, self.addr)
    }

    pub fn capture(&self) -> &Capture {
        &self.shared.capture
    }

    /// Counters of every connection accepted so far (closed ones included),
    /// in accept order.
    pub fn connections(&self) -> Vec<ConnStats> {
        let conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.iter().map(|c| c.stats()).collect()
    }

    pub fn counters(&self) -> &ServerCounters {
        &self.shared.counters
    }

    /// Stops accepting, closes every connection (Close 1001, at most ~1 s
    /// grace) and joins the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
