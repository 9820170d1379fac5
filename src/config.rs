//! Feed (collector) configuration: `/etc/tickring/feeds/<name>.toml`.
//!
//! Parsing refuses unknown keys; [`FeedFileConfig::load`] then checks every
//! value, and each error names the file, the key and what was expected, so
//! `tickring validate` and the collector refuse a bad config before
//! anything starts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::event::Exchange;
use crate::instrument::{Instrument, MAX_SYMBOL_LEN};
use crate::ring::{self, Backing};

/// A config error: the file, the key (dotted path) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(
                f,
                "{}: `{}`: {}",
                self.file.display(),
                self.key,
                self.problem
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedFileConfig {
    /// `coinbase`, `coinbase-advanced`, `kraken` or `binance`.
    pub exchange: String,
    /// The exchange's own symbols (`BTC-USD`, `BTC/USD`, `BTCUSDT`).
    pub symbols: Vec<String>,
    /// `trades`, `book`, `bbo`, `heartbeat`.
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// WebSocket URL; defaults to the exchange's public endpoint.
    pub endpoint: Option<String>,
    /// Base URL of the exchange's REST API (Binance depth snapshots).
    pub rest_endpoint: Option<String>,
    /// PEM file of CA certificates to trust instead of the system store.
    pub tls_ca_file: Option<PathBuf>,
    /// Book levels kept and published per side.
    #[serde(default = "default_depth")]
    pub book_depth: u16,
    /// Largest WebSocket message accepted, bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Per-symbol decimal scales; symbols not listed get `default_scale`.
    #[serde(default)]
    pub instruments: BTreeMap<String, ScaleConfig>,
    #[serde(default = "default_scale")]
    pub default_scale: ScaleConfig,
    pub ring: RingConfig,
    #[serde(default)]
    pub cpu: CpuConfig,
    #[serde(default)]
    pub io_uring: UringConfig,
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    #[serde(default)]
    pub liveness: LivenessConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    pub price_scale: u8,
    pub qty_scale: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    pub name: String,
    /// Slots; a power of two.
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    /// `auto` (huge pages when available, else /dev/shm), `hugepages`, `shm`.
    #[serde(default = "default_backing")]
    pub backing: String,
    /// Directory for `hugepages`/`shm` backing (defaults to the standard ones).
    pub dir: Option<PathBuf>,
    /// Huge page size in bytes.
    #[serde(default = "default_huge_page")]
    pub huge_page_size: u64,
    #[serde(default = "yes")]
    pub lock_memory: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// Core the hot loop is pinned to; unpinned when absent.
    pub core: Option<usize>,
    /// SCHED_FIFO priority 1-99 for the hot thread; normal scheduling when absent.
    pub sched_fifo_priority: Option<i32>,
    /// Core for the housekeeping thread (metrics, heartbeat, watchdog).
    pub housekeeping_core: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UringConfig {
    #[serde(default)]
    pub sqpoll: bool,
    pub sqpoll_core: Option<u32>,
    #[serde(default = "default_queue_depth")]
    pub queue_depth: u32,
    /// Use provided buffers and multishot receive when the kernel has them.
    #[serde(default = "yes")]
    pub multishot: bool,
    /// Spin on the completion queue instead of sleeping in io_uring_enter:
    /// saves the scheduler wake-up (tens of microseconds) on every message,
    /// and keeps the hot core at 100% all the time. Only on a dedicated
    /// (isolated) core: needs `cpu.core`.
    #[serde(default)]
    pub busy_poll: bool,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            sqpoll: false,
            sqpoll_core: None,
            queue_depth: default_queue_depth(),
            multishot: true,
            busy_poll: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    #[serde(default = "default_backoff_initial")]
    pub initial_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub max_ms: u64,
    /// Random spread added to each wait, as a percentage of it (0-100).
    #[serde(default = "default_jitter")]
    pub jitter_percent: u8,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            initial_ms: default_backoff_initial(),
            max_ms: default_backoff_max(),
            jitter_percent: default_jitter(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// No message at all (heartbeats included) for this long -> reconnect.
    #[serde(default = "default_silence")]
    pub silence_timeout_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            silence_timeout_ms: default_silence(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the /health, /ready, /metrics endpoint; none when absent.
    pub listen: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some("127.0.0.1:9101".into()),
        }
    }
}

fn default_channels() -> Vec<String> {
    vec!["trades".into(), "book".into(), "heartbeat".into()]
}
fn default_depth() -> u16 {
    10
}
fn default_max_frame() -> usize {
    16 << 20
}
fn default_scale() -> ScaleConfig {
    ScaleConfig {
        price_scale: 8,
        qty_scale: 8,
    }
}
fn default_capacity() -> u64 {
    1 << 16
}
fn default_backing() -> String {
    "auto".into()
}
fn default_huge_page() -> u64 {
    ring::DEFAULT_HUGE_PAGE_SIZE
}
fn default_queue_depth() -> u32 {
    256
}
fn default_backoff_initial() -> u64 {
    250
}
fn default_backoff_max() -> u64 {
    30_000
}
fn default_jitter() -> u8 {
    20
}
fn default_silence() -> u64 {
    10_000
}
fn yes() -> bool {
    true
}

/// A channel a feed can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelName {
    Trades,
    Book,
    Bbo,
    Heartbeat,
}

impl ChannelName {
    pub fn parse(s: &str) -> Option<ChannelName> {
        Some(match s {
            "trades" => ChannelName::Trades,
            "book" => ChannelName::Book,
            "bbo" => ChannelName::Bbo,
            "heartbeat" => ChannelName::Heartbeat,
            _ => return None,
        })
    }
}

/// A feed config that passed every check, with defaults resolved.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub file: PathBuf,
    pub exchange: Exchange,
    pub instruments: Vec<Instrument>,
    pub channels: Vec<ChannelName>,
    pub endpoint: String,
    pub rest_endpoint: String,
    pub tls_ca_file: Option<PathBuf>,
    pub book_depth: u16,
    pub max_frame_bytes: usize,
    pub ring_name: String,
    pub ring_capacity: u64,
    pub backing: Backing,
    pub lock_memory: bool,
    pub cpu: CpuConfig,
    pub io_uring: UringConfig,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub jitter_percent: u8,
    pub silence_timeout: Duration,
    pub metrics_listen: Option<SocketAddr>,
}

/// The exchange's public WebSocket endpoint.
pub fn default_endpoint(ex: Exchange) -> &'static str {
    match ex {
        Exchange::Coinbase => "wss://ws-feed.exchange.coinbase.com",
        Exchange::CoinbaseAdvanced => "wss://advanced-trade-ws.coinbase.com",
        Exchange::Kraken => "wss://ws.kraken.com/v2",
        Exchange::Binance => "wss://stream.binance.com:9443/stream",
    }
}

/// The exchange's public REST base URL.
pub fn default_rest_endpoint(ex: Exchange) -> &'static str {
    match ex {
        Exchange::Coinbase => "https://api.exchange.coinbase.com",
        Exchange::CoinbaseAdvanced => "https://api.coinbase.com",
        Exchange::Kraken => "https://api.kraken.com",
        Exchange::Binance => "https://api.binance.com",
    }
}

/// Book depths Kraken's v2 `book` channel accepts.
pub const KRAKEN_DEPTHS: [u16; 5] = [10, 25, 100, 500, 1000];

impl FeedFileConfig {
    /// Reads, parses and checks a feed config.
    pub fn load(path: &Path) -> Result<FeedSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<FeedSettings, ConfigError> {
        let raw: FeedFileConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: e.span().map(|s| key_at(text, s.start)).unwrap_or_default(),
            problem: e.message().to_owned(),
        })?;
        raw.check(path)
    }

    fn check(self, path: &Path) -> Result<FeedSettings, ConfigError> {
        let err = |key: &str, problem: String| ConfigError {
            file: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let exchange = Exchange::from_name(&self.exchange).ok_or_else(|| {
            err(
                "exchange",
                format!(
                    "unknown exchange {:?}; expected one of coinbase, coinbase-advanced, kraken, binance",
                    self.exchange
                ),
            )
        })?;
        if self.symbols.is_empty() {
            return Err(err("symbols", "needs at least one symbol".into()));
        }
        let mut instruments = Vec::new();
        for (i, s) in self.symbols.iter().enumerate() {
            let key = format!("symbols[{i}]");
            if s.is_empty() || s.len() > MAX_SYMBOL_LEN || s.bytes().any(|b| !b.is_ascii_graphic())
            {
                return Err(err(
                    &key,
                    format!(
                        "{s:?} is not a symbol (1-{MAX_SYMBOL_LEN} printable ASCII characters)"
                    ),
                ));
            }
            if self.symbols[..i].contains(s) {
                return Err(err(&key, format!("{s:?} is listed twice")));
            }
            let sc = self
                .instruments
                .get(s)
                .copied()
                .unwrap_or(self.default_scale);
            let inst = Instrument::new(exchange, s, sc.price_scale, sc.qty_scale)
                .map_err(|e| err(&format!("instruments.{s:?}"), e.to_string()))?;
            instruments.push(inst);
        }
        for name in self.instruments.keys() {
            if !self.symbols.contains(name) {
                return Err(err(
                    &format!("instruments.{name:?}"),
                    "scales given for a symbol that is not in `symbols`".into(),
                ));
            }
        }
        Instrument::new(
            exchange,
            "X",
            self.default_scale.price_scale,
            self.default_scale.qty_scale,
        )
        .map_err(|e| err("default_scale", e.to_string()))?;
        let mut channels = Vec::new();
        for (i, c) in self.channels.iter().enumerate() {
            let ch = ChannelName::parse(c).ok_or_else(|| {
                err(
                    &format!("channels[{i}]"),
                    format!("unknown channel {c:?}; expected trades, book, bbo or heartbeat"),
                )
            })?;
            if !channels.contains(&ch) {
                channels.push(ch);
            }
        }
        if channels.is_empty() {
            return Err(err("channels", "needs at least one channel".into()));
        }
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| default_endpoint(exchange).to_owned());
        if !(endpoint.starts_with("ws://") || endpoint.starts_with("wss://")) {
            return Err(err(
                "endpoint",
                format!("{endpoint:?} is not a ws:// or wss:// URL"),
            ));
        }
        crate::net::http::parse_url(&endpoint)
            .map_err(|e| err("endpoint", format!("{endpoint:?}: {e}")))?;
        let rest_endpoint = self
            .rest_endpoint
            .clone()
            .unwrap_or_else(|| default_rest_endpoint(exchange).to_owned());
        if !(rest_endpoint.starts_with("http://") || rest_endpoint.starts_with("https://")) {
            return Err(err(
                "rest_endpoint",
                format!("{rest_endpoint:?} is not an http:// or https:// URL"),
            ));
        }
        if let Some(ca) = &self.tls_ca_file {
            std::fs::File::open(ca)
                .map_err(|e| err("tls_ca_file", format!("cannot read {}: {e}", ca.display())))?;
        }
        if self.book_depth == 0 || self.book_depth > 1000 {
            return Err(err(
                "book_depth",
                format!("{} is not in 1..=1000", self.book_depth),
            ));
        }
        if exchange == Exchange::Kraken && !KRAKEN_DEPTHS.contains(&self.book_depth) {
            return Err(err(
                "book_depth",
                format!(
                    "Kraken accepts depths {KRAKEN_DEPTHS:?}, not {}",
                    self.book_depth
                ),
            ));
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > 1 << 30 {
            return Err(err(
                "max_frame_bytes",
                format!("{} is not in 1024..=1073741824", self.max_frame_bytes),
            ));
        }
        ring::check_name(&self.ring.name).map_err(|e| err("ring.name", e.to_string()))?;
        let cap = self.ring.capacity;
        if !cap.is_power_of_two() || !(64..=1 << 32).contains(&cap) {
            return Err(err(
                "ring.capacity",
                format!("{cap} is not a power of two between 64 and 4294967296"),
            ));
        }
        let hp = self.ring.huge_page_size;
        if !hp.is_power_of_two() || hp < 2 << 20 {
            return Err(err(
                "ring.huge_page_size",
                format!("{hp} is not a huge page size (2097152 or 1073741824)"),
            ));
        }
        let backing = match (self.ring.backing.as_str(), &self.ring.dir) {
            ("auto", None) => Backing::Auto { page_size: hp },
            ("auto", Some(_)) => {
                return Err(err(
                    "ring.dir",
                    "only with backing = \"hugepages\" or \"shm\"".into(),
                ))
            }
            ("hugepages", dir) => Backing::HugePages {
                dir: dir.clone().unwrap_or_else(|| ring::HUGEPAGE_DIR.into()),
                page_size: hp,
            },
            ("shm", dir) => Backing::Shm {
                dir: dir.clone().unwrap_or_else(|| ring::SHM_DIR.into()),
            },
            (other, _) => {
                return Err(err(
                    "ring.backing",
                    format!("{other:?}; expected \"auto\", \"hugepages\" or \"shm\""),
                ))
            }
        };
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        for (key, core) in [
            ("cpu.core", self.cpu.core),
            ("cpu.housekeeping_core", self.cpu.housekeeping_core),
        ] {
            if let Some(c) = core {
                if c >= ncpu {
                    return Err(err(
                        key,
                        format!("core {c} does not exist (this host has {ncpu})"),
                    ));
                }
            }
        }
        if let Some(p) = self.cpu.sched_fifo_priority {
            if !(1..=99).contains(&p) {
                return Err(err(
                    "cpu.sched_fifo_priority",
                    format!("{p} is not in 1..=99"),
                ));
            }
        }
        let q = self.io_uring.queue_depth;
        if !q.is_power_of_two() || !(8..=32768).contains(&q) {
            return Err(err(
                "io_uring.queue_depth",
                format!("{q} is not a power of two in 8..=32768"),
            ));
        }
        if let Some(c) = self.io_uring.sqpoll_core {
            if c as usize >= ncpu {
                return Err(err(
                    "io_uring.sqpoll_core",
                    format!("core {c} does not exist (this host has {ncpu})"),
                ));
            }
            if !self.io_uring.sqpoll {
                return Err(err(
                    "io_uring.sqpoll_core",
                    "set without io_uring.sqpoll = true".into(),
                ));
            }
        }
        if self.io_uring.busy_poll && self.cpu.core.is_none() {
            return Err(err(
                "io_uring.busy_poll",
                "needs cpu.core: an unpinned spinning loop takes a core from everything else"
                    .into(),
            ));
        }
        let r = &self.reconnect;
        if r.initial_ms == 0 {
            return Err(err("reconnect.initial_ms", "must be at least 1".into()));
        }
        if r.max_ms < r.initial_ms {
            return Err(err(
                "reconnect.max_ms",
                format!(
                    "{} is below reconnect.initial_ms ({})",
                    r.max_ms, r.initial_ms
                ),
            ));
        }
        if r.jitter_percent > 100 {
            return Err(err(
                "reconnect.jitter_percent",
                format!("{} is not in 0..=100", r.jitter_percent),
            ));
        }
        if self.liveness.silence_timeout_ms < 100 {
            return Err(err(
                "liveness.silence_timeout_ms",
                format!("{} is below 100", self.liveness.silence_timeout_ms),
            ));
        }
        let metrics_listen = match &self.metrics.listen {
            None => None,
            Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
                err(
                    "metrics.listen",
                    format!("{s:?} is not an address like 127.0.0.1:9101"),
                )
            })?),
        };
        Ok(FeedSettings {
            file: path.to_owned(),
            exchange,
            instruments,
            channels,
            endpoint,
            rest_endpoint,
            tls_ca_file: self.tls_ca_file,
            book_depth: self.book_depth,
            max_frame_bytes: self.max_frame_bytes,
            ring_name: self.ring.name,
            ring_capacity: cap,
            backing,
            lock_memory: self.ring.lock_memory,
            cpu: self.cpu,
            io_uring: self.io_uring,
            backoff_initial: Duration::from_millis(r.initial_ms),
            backoff_max: Duration::from_millis(r.max_ms),
            jitter_percent: r.jitter_percent,
            silence_timeout: Duration::from_millis(self.liveness.silence_timeout_ms),
            metrics_listen,
        })
    }
}

/// The dotted key whose value starts at or encloses byte `pos` of a TOML
/// text: the last `key =` before `pos`, prefixed by its `[table]`.
pub(crate) fn key_at(text: &str, pos: usize) -> String {
    let before = &text[..pos.min(text.len())];
    let mut table = String::new();
    let mut key = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            key.clear();
        } else if let Some((k, _)) = t.split_once('=') {
            key = k.trim().to_owned();
        }
    }
    // The erroring line itself (pos may sit on the key).
    if let Some(line) = text[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
        .lines()
        .next()
    {
        if let Some((k, _)) = line.trim().split_once('=') {
            if !line.trim().starts_with('[') {
                key = k.trim().to_owned();
            }
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
exchange = "kraken"
symbols = ["BTC/USD", "ETH/USD"]
channels = ["book", "trades", "heartbeat"]
endpoint = "ws://127.0.0.1:9000/v2"
book_depth = 10

[instruments."BTC/USD"]
price_scale = 1
qty_scale = 8

[ring]
name = "kraken"
capacity = 65536
backing = "shm"

[reconnect]
initial_ms = 100
max_ms = 5000
"#;

    fn parse(text: &str) -> Result<FeedSettings, ConfigError> {
        FeedFileConfig::parse(Path::new("/etc/tickring/feeds/kraken.toml"), text)
    }

    #[test]
    fn good_config_resolves_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.exchange, Exchange::Kraken);
        assert_eq!(s.instruments[0].price_scale, 1);
        assert_eq!(s.instruments[1].price_scale, 8);
        assert_eq!(s.ring_capacity, 65536);
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(s.rest_endpoint, "https://api.kraken.com");
        assert!(matches!(s.backing, Backing::Shm { .. }));
    }

    fn refused(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn each_bad_value_is_refused_naming_the_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "exchange = \"kraken\"",
                "exchange = \"ftx\"",
                "exchange",
                "unknown exchange",
            ),
            (
                "symbols = [\"BTC/USD\", \"ETH/USD\"]",
                "symbols = []",
                "symbols",
                "at least one",
            ),
            (
                "symbols = [\"BTC/USD\", \"ETH/USD\"]",
                "symbols = [\"BTC/USD\", \"BTC/USD\"]",
                "symbols[1]",
                "twice",
            ),
            (
                "channels = [\"book\", \"trades\", \"heartbeat\"]",
                "channels = [\"book\", \"candles\"]",
                "channels[1]",
                "unknown channel",
            ),
            (
                "endpoint = \"ws://127.0.0.1:9000/v2\"",
                "endpoint = \"http://x\"",
                "endpoint",
                "not a ws://",
            ),
            (
                "book_depth = 10",
                "book_depth = 20",
                "book_depth",
                "Kraken accepts",
            ),
            (
                "name = \"kraken\"",
                "name = \"../etc\"",
                "ring.name",
                "invalid ring name",
            ),
            (
                "capacity = 65536",
                "capacity = 1000",
                "ring.capacity",
                "power of two",
            ),
            (
                "backing = \"shm\"",
                "backing = \"nvme\"",
                "ring.backing",
                "expected",
            ),
            (
                "max_ms = 5000",
                "max_ms = 50",
                "reconnect.max_ms",
                "below reconnect.initial_ms",
            ),
            (
                "price_scale = 1",
                "price_scale = 19",
                "instruments.\"BTC/USD\"",
                "scale 19",
            ),
        ];
        for (from, to, key, problem) in cases {
            assert!(GOOD.contains(from), "{from}");
            let e = refused(&GOOD.replace(from, to));
            assert_eq!(&e.key, key, "{e}");
            assert!(e.problem.contains(problem), "{e}");
            assert!(
                e.to_string().contains("/etc/tickring/feeds/kraken.toml"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_refused_with_their_name() {
        let e = refused(&GOOD.replace("book_depth = 10", "book_depth = 10\nbookdepth = 10"));
        assert_eq!(e.key, "bookdepth");
        assert!(e.problem.contains("unknown field `bookdepth`"), "{e}");
        let e = refused(&GOOD.replace("capacity = 65536", "capacity = \"big\""));
        assert_eq!(e.key, "ring.capacity");
        let e = refused(&GOOD.replace("[ring]\nname = \"kraken\"\n", "[ring]\n"));
        assert!(e.problem.contains("missing field `name`"), "{e}");
        let e = refused(&format!("{GOOD}\n[cpu]\ncore = 4096\n"));
        assert_eq!(e.key, "cpu.core");
        let e = refused(&format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n"));
        assert_eq!(e.key, "metrics.listen");
        let e = refused(&format!("{GOOD}\n[io_uring]\nqueue_depth = 100\n"));
        assert_eq!(e.key, "io_uring.queue_depth");
        let e = refused(&format!("{GOOD}\n[io_uring]\nbusy_poll = true\n"));
        assert_eq!(e.key, "io_uring.busy_poll");
        assert!(e.problem.contains("needs cpu.core"), "{e}");
        let ok = parse(&format!(
            "{GOOD}\n[cpu]\ncore = 0\n[io_uring]\nbusy_poll = true\n"
        ));
        assert!(ok.unwrap().io_uring.busy_poll);
        let e = refused(&format!("{GOOD}\n[cpu]\nsched_fifo_priority = 120\n"));
        assert_eq!(e.key, "cpu.sched_fifo_priority");
        let e = refused(&GOOD.replace(
            "endpoint = \"ws://127.0.0.1:9000/v2\"",
            "tls_ca_file = \"/nonexistent/ca.pem\"",
        ));
        assert_eq!(e.key, "tls_ca_file");
    }
}
