//! Loading capture files: one JSON message per line, kept byte for byte.
//!
//! Each line is classified once at load time (which exchange channel and
//! symbol it belongs to, its exchange timestamp, the sequence numbers the
//! server may have to rewrite) with small serde structs that name only the
//! fields needed; every other field, prices and quantities included, is
//! skipped by serde without being converted to anything (no binary float ever
//! sees a price). The served text is the line itself, never a re-serialised
//! value.
//!
//! Control messages recorded in the capture (acks, `subscriptions`, status,
//! heartbeats, pongs) are not served: the server generates its own. They are
//! counted in [`Capture::control_lines`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::rfc3339;
use crate::event::Exchange;

/// Why a capture file could not be loaded. Names the file and the 1-based line.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based line number; 0 for errors about the whole file.
    pub line: usize,
    pub kind: LoadErrorKind,
}

#[derive(Debug)]
pub enum LoadErrorKind {
    Io(std::io::Error),
    /// The line is not JSON of the expected shape (serde's message).
    Json(String),
    /// A market message lacks a field the server needs (e.g. its symbol).
    MissingField(&'static str),
    /// The line does not look like a message of the chosen exchange.
    NotThisExchange(&'static str),
    /// The files together hold no market message at all.
    NoMarketMessages,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, " line {}", self.line)?;
        }
        match &self.kind {
            LoadErrorKind::Io(e) => write!(f, ": {e}"),
            LoadErrorKind::Json(e) => write!(f, ": not a JSON message of the expected shape: {e}"),
            LoadErrorKind::MissingField(field) => {
                write!(f, ": market message without the `{field}` field")
            }
            LoadErrorKind::NotThisExchange(why) => write!(f, ": {why}"),
            LoadErrorKind::NoMarketMessages => f.write_str(": no market message in the capture"),
        }
    }
}

/// Display names the cause; `source` stays empty so chains say it once.
impl std::error::Error for LoadError {}

/// Index of a (channel, symbol) stream in [`Capture::keys`].
pub type KeyId = u32;

/// A subscribable stream: the exchange's channel name as a client subscribes
/// to it (`book`, `level2`, `matches`, `depth`, ...) and the symbol as the
/// exchange spells it (`BTC/USD`, `BAND-GBP`, `nknusdt` — Binance stream
/// names use lower case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub channel: String,
    pub symbol: String,
}

/// One market message of the capture.
#[derive(Clone, Debug)]
pub struct MarketMsg {
    /// The line as recorded, byte for byte.
    pub text: Utf8Bytes,
    /// Binance: the text of the `data` value (what `/ws` serves) when the
    /// line is a combined-stream envelope, else the line itself.
    pub raw: Utf8Bytes,
    /// Binance: the recorded stream name of an envelope line.
    pub stream: Option<Box<str>>,
    pub key: KeyId,
    /// Exchange timestamp in ns since the epoch; a message without one takes
    /// the previous message's (or the file's first one).
    pub ts_ns: i64,
    /// A book snapshot (Kraken `type: snapshot`, Coinbase `snapshot`).
    pub snapshot: bool,
    /// Coinbase Exchange `sequence` / Advanced `sequence_num` / Binance depth `U`.
    pub seq: Option<u64>,
    /// Coinbase `trade_id` / Binance depth `u`.
    pub seq2: Option<u64>,
    /// Which `--file` (0-based) and line (1-based) it came from.
    pub file: u16,
    pub line: u32,
}

/// A loaded capture: the market messages of one exchange in serving order.
#[derive(Debug)]
pub struct Capture {
    pub exchange: Exchange,
    pub msgs: Vec<MarketMsg>,
    pub keys: Vec<StreamKey>,
    key_ids: HashMap<StreamKey, KeyId>,
    /// Every symbol that has at least one market message.
    pub symbols: BTreeSet<String>,
    /// Recorded control messages, not served (the server makes its own).
    pub control_lines: u64,
    /// Blank lines, skipped.
    pub blank_lines: u64,
    /// Kraken: the book depth the capture was recorded at (from the recorded
    /// ack, else from the snapshot's level count). `None` without a book.
    pub kraken_depth: Option<u32>,
    /// Binance: per lower-case symbol, `last u - first U + 2` of its depth
    /// diffs: the update-id offset added per loop lap (see `docs` in mod.rs).
    pub binance_span: HashMap<String, u64>,
    /// Coinbase Advanced: `max - min + 1` of `sequence_num`, the per-lap offset.
    pub advanced_span: u64,
    /// Coinbase Exchange: per product, the first `sequence` and `trade_id`
    /// seen, for heartbeats sent before any message of the product.
    pub coinbase_first: HashMap<String, (u64, u64)>,
}

impl Capture {
    pub fn key_id(&self, channel: &str, symbol: &str) -> Option<KeyId> {
        self.key_ids
            .get(&StreamKey {
                channel: channel.to_string(),
                symbol: symbol.to_string(),
            })
            .copied()
    }

    /// Does any market message of the capture belong to `symbol`?
    pub fn has_symbol(&self, symbol: &str) -> bool {
        self.symbols.contains(symbol)
    }

    /// Timestamp of the first and last message.
    pub fn time_span(&self) -> (i64, i64) {
        (
            self.msgs.first().map_or(0, |m| m.ts_ns),
            self.msgs.last().map_or(0, |m| m.ts_ns),
        )
    }

    /// Loads and merges capture files. One file: file order. Several files:
    /// a k-way merge that always takes the file whose next message has the
    /// earliest exchange timestamp (ties: the earlier `--file`). Each file's
    /// own order is kept even where its timestamps go backwards (Coinbase's
    /// `last_match` messages do), so the result is in timestamp order
    /// wherever the files themselves are.
    pub fn load(exchange: Exchange, files: &[PathBuf]) -> Result<Capture, LoadError> {
        let mut per_file = Vec::with_capacity(files.len());
        let mut cap = Capture {
            exchange,
            msgs: Vec::new(),
            keys: Vec::new(),
            key_ids: HashMap::new(),
            symbols: BTreeSet::new(),
            control_lines: 0,
            blank_lines: 0,
            kraken_depth: None,
            binance_span: HashMap::new(),
            advanced_span: 0,
            coinbase_first: HashMap::new(),
        };
        let mut kraken_recorded_depth = None;
        let mut kraken_snapshot_levels = 0usize;
        for (fi, path) in files.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|e| LoadError {
                file: path.clone(),
                line: 0,
                kind: LoadErrorKind::Io(e),
            })?;
            let mut msgs = Vec::new();
            for (li, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    cap.blank_lines += 1;
                    continue;
                }
                let err = |kind| LoadError {
                    file: path.clone(),
                    line: li + 1,
                    kind,
                };
                let class = classify(exchange, line).map_err(err)?;
                let c = match class {
                    Class::Control { kraken_depth } => {
                        cap.control_lines += 1;
                        if kraken_depth.is_some() {
                            kraken_recorded_depth = kraken_depth;
                        }
                        continue;
                    }
                    Class::Market(c) => c,
                };
                kraken_snapshot_levels = kraken_snapshot_levels.max(c.snapshot_levels);
                let key = cap.intern(&c.channel, &c.symbol);
                cap.symbols.insert(c.symbol.clone());
                let raw = match c.raw_range {
                    Some((a, b)) => Utf8Bytes::from(&line[a..b]),
                    None => Utf8Bytes::from(line),
                };
                msgs.push(MarketMsg {
                    text: Utf8Bytes::from(line),
                    raw,
                    stream: c.stream.map(String::into_boxed_str),
                    key,
                    ts_ns: c.ts_ns.unwrap_or(i64::MIN),
                    snapshot: c.snapshot,
                    seq: c.seq,
                    seq2: c.seq2,
                    file: fi as u16,
                    line: (li + 1) as u32,
                });
            }
            // Messages without a timestamp take the previous one's, leading
            // ones the file's first known timestamp.
            let first = msgs
                .iter()
                .map(|m| m.ts_ns)
                .find(|&t| t != i64::MIN)
                .unwrap_or(0);
            let mut last = first;
            for m in &mut msgs {
                if m.ts_ns == i64::MIN {
                    m.ts_ns = last;
                } else {
                    last = m.ts_ns;
                }
            }
            per_file.push(msgs);
        }
        cap.msgs = if per_file.len() == 1 {
            per_file.pop().unwrap_or_default()
        } else {
            merge_by_time(per_file)
        };
        if cap.msgs.is_empty() {
            return Err(LoadError {
                file: files.first().cloned().unwrap_or_default(),
                line: 0,
                kind: LoadErrorKind::NoMarketMessages,
            });
        }
        if exchange == Exchange::Kraken
            && (kraken_snapshot_levels > 0 || kraken_recorded_depth.is_some())
        {
            cap.kraken_depth = kraken_recorded_depth.or_else(|| {
                [10u32, 25, 100, 500, 1000]
                    .into_iter()
                    .find(|&d| d as usize >= kraken_snapshot_levels)
            });
        }
        cap.compute_spans();
        Ok(cap)
    }

    fn intern(&mut self, channel: &str, symbol: &str) -> KeyId {
        let k = StreamKey {
            channel: channel.to_string(),
            symbol: symbol.to_string(),
        };
        if let Some(&id) = self.key_ids.get(&k) {
            return id;
        }
        let id = self.keys.len() as KeyId;
        self.keys.push(k.clone());
        self.key_ids.insert(k, id);
        id
    }

    fn compute_spans(&mut self) {
        match self.exchange {
            Exchange::Binance => {
                let mut range: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
                for m in &self.msgs {
                    let k = &self.keys[m.key as usize];
                    if k.channel != "depth" {
                        continue;
                    }
                    if let (Some(first), Some(last)) = (m.seq, m.seq2) {
                        let e = range.entry(&k.symbol).or_insert((first, last));
                        e.0 = e.0.min(first);
                        e.1 = e.1.max(last);
                    }
                }
                self.binance_span = range
                    .into_iter()
                    .map(|(s, (a, b))| (s.to_string(), b.saturating_sub(a) + 2))
                    .collect();
            }
            Exchange::CoinbaseAdvanced => {
                let seqs = self.msgs.iter().filter_map(|m| m.seq);
                let (lo, hi) = seqs.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
                self.advanced_span = if lo <= hi { hi - lo + 1 } else { 0 };
            }
            Exchange::Coinbase => {
                for m in &self.msgs {
                    let sym = &self.keys[m.key as usize].symbol;
                    let e = self.coinbase_first.entry(sym.clone()).or_insert((0, 0));
                    if e.0 == 0 {
                        e.0 = m.seq.unwrap_or(0);
                    }
                    if e.1 == 0 {
                        e.1 = m.seq2.unwrap_or(0);
                    }
                }
            }
            Exchange::Kraken => {}
        }
    }
}

/// Merges per-file message lists, keeping each list's order (see [`Capture::load`]).
fn merge_by_time(files: Vec<Vec<MarketMsg>>) -> Vec<MarketMsg> {
    let total = files.iter().map(Vec::len).sum();
    let mut iters: Vec<std::iter::Peekable<std::vec::IntoIter<MarketMsg>>> = files
        .into_iter()
        .map(|f| f.into_iter().peekable())
        .collect();
    let mut out = Vec::with_capacity(total);
    loop {
        let mut best: Option<(usize, i64)> = None;
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(m) = it.peek() {
                if best.is_none_or(|(_, t)| m.ts_ns < t) {
                    best = Some((i, m.ts_ns));
                }
            }
        }
        match best.and_then(|(i, _)| iters[i].next()) {
            Some(m) => out.push(m),
            None => return out,
        }
    }
}

/// What [`classify`] found out about one line.
enum Class {
    Control { kraken_depth: Option<u32> },
    Market(Classified),
}

struct Classified {
    channel: String,
    symbol: String,
    ts_ns: Option<i64>,
    snapshot: bool,
    snapshot_levels: usize,
    seq: Option<u64>,
    seq2: Option<u64>,
    stream: Option<String>,
    /// Byte range of the Binance `data` value inside the line.
    raw_range: Option<(usize, usize)>,
}

impl Classified {
    fn new(channel: &str, symbol: String) -> Classified {
        Classified {
            channel: channel.to_string(),
            symbol,
            ts_ns: None,
            snapshot: false,
            snapshot_levels: 0,
            seq: None,
            seq2: None,
            stream: None,
            raw_range: None,
        }
    }
}

fn json<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, LoadErrorKind> {
    serde_json::from_str(line).map_err(|e| LoadErrorKind::Json(e.to_string()))
}

fn ts(text: Option<&str>) -> Option<i64> {
    text.and_then(rfc3339::parse_ns)
}

fn classify(exchange: Exchange, line: &str) -> Result<Class, LoadErrorKind> {
    match exchange {
        Exchange::Kraken => classify_kraken(line),
        Exchange::Coinbase => classify_coinbase(line),
        Exchange::CoinbaseAdvanced => classify_advanced(line),
        Exchange::Binance => classify_binance(line),
    }
}

// Serde structs: only the fields the server needs. Fields not named here
// (prices, quantities, ...) are skipped by serde_json's `ignore_value`, which
// scans numbers without converting them.

#[derive(Deserialize)]
struct KrakenLine<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(rename = "type", borrow)]
    typ: Option<&'a str>,
    #[serde(borrow)]
    method: Option<&'a str>,
    result: Option<KrakenResult>,
    #[serde(default)]
    data: Vec<KrakenData>,
}

#[derive(Deserialize)]
struct KrakenResult {
    channel: Option<String>,
    depth: Option<u32>,
}

#[derive(Deserialize)]
struct KrakenData {
    symbol: Option<String>,
    timestamp: Option<String>,
    #[serde(default)]
    bids: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    asks: Vec<serde::de::IgnoredAny>,
}

fn classify_kraken(line: &str) -> Result<Class, LoadErrorKind> {
    let l: KrakenLine = json(line)?;
    if l.method.is_some() {
        let depth = l
            .result
            .filter(|r| r.channel.as_deref() == Some("book"))
            .and_then(|r| r.depth);
        return Ok(Class::Control {
            kraken_depth: depth,
        });
    }
    let channel = l.channel.ok_or(LoadErrorKind::NotThisExchange(
        "neither `channel` nor `method`: not a Kraken v2 message",
    ))?;
    if matches!(channel, "status" | "heartbeat" | "pong") {
        return Ok(Class::Control { kraken_depth: None });
    }
    let first = l.data.first().ok_or(LoadErrorKind::MissingField("data"))?;
    let symbol = first
        .symbol
        .clone()
        .ok_or(LoadErrorKind::MissingField("data[0].symbol"))?;
    let mut c = Classified::new(channel, symbol);
    c.snapshot = l.typ == Some("snapshot");
    if c.snapshot {
        c.snapshot_levels = first.bids.len().max(first.asks.len());
    }
    c.ts_ns = ts(l.data.iter().find_map(|d| d.timestamp.as_deref()));
    Ok(Class::Market(c))
}

#[derive(Deserialize)]
struct CoinbaseLine<'a> {
    #[serde(rename = "type", borrow)]
    typ: Option<&'a str>,
    product_id: Option<String>,
    #[serde(borrow)]
    time: Option<&'a str>,
    sequence: Option<u64>,
    trade_id: Option<u64>,
}

/// The Coinbase Exchange channel a message type belongs to; `None` for
/// control messages.
pub fn coinbase_channel_of(typ: &str) -> Option<&str> {
    Some(match typ {
        "snapshot" | "l2update" => "level2",
        "match" | "last_match" => "matches",
        "ticker" => "ticker",
        "received" | "open" | "done" | "change" | "activate" => "full",
        "heartbeat" | "subscriptions" | "error" | "status" => return None,
        other => other,
    })
}

fn classify_coinbase(line: &str) -> Result<Class, LoadErrorKind> {
    let l: CoinbaseLine = json(line)?;
    let typ = l.typ.ok_or(LoadErrorKind::NotThisExchange(
        "no `type` field: not a Coinbase Exchange message",
    ))?;
    let Some(channel) = coinbase_channel_of(typ) else {
        return Ok(Class::Control { kraken_depth: None });
    };
    let symbol = l
        .product_id
        .ok_or(LoadErrorKind::MissingField("product_id"))?;
    let mut c = Classified::new(channel, symbol);
    c.snapshot = typ == "snapshot";
    c.ts_ns = ts(l.time);
    c.seq = l.sequence;
    c.seq2 = l.trade_id;
    Ok(Class::Market(c))
}

#[derive(Deserialize)]
struct AdvancedLine<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    timestamp: Option<&'a str>,
    sequence_num: Option<u64>,
    #[serde(default)]
    events: Vec<AdvancedEvent>,
}

#[derive(Deserialize)]
struct AdvancedEvent {
    #[serde(rename = "type")]
    typ: Option<String>,
    product_id: Option<String>,
    #[serde(default)]
    trades: Vec<AdvancedProduct>,
    #[serde(default)]
    tickers: Vec<AdvancedProduct>,
}

#[derive(Deserialize)]
struct AdvancedProduct {
    product_id: Option<String>,
}

/// The Advanced Trade subscription channel of a message channel; `None` for
/// control messages.
pub fn advanced_channel_of(channel: &str) -> Option<&str> {
    Some(match channel {
        "l2_data" => "level2",
        "subscriptions" | "heartbeats" => return None,
        other => other,
    })
}

fn classify_advanced(line: &str) -> Result<Class, LoadErrorKind> {
    let l: AdvancedLine = json(line)?;
    let channel = l.channel.ok_or(LoadErrorKind::NotThisExchange(
        "no `channel` field: not a Coinbase Advanced Trade message",
    ))?;
    let Some(sub_channel) = advanced_channel_of(channel) else {
        return Ok(Class::Control { kraken_depth: None });
    };
    let symbol = l
        .events
        .iter()
        .find_map(|e| {
            e.product_id.clone().or_else(|| {
                e.trades
                    .iter()
                    .chain(&e.tickers)
                    .find_map(|t| t.product_id.clone())
            })
        })
        .ok_or(LoadErrorKind::MissingField("events[].product_id"))?;
    let mut c = Classified::new(sub_channel, symbol);
    c.snapshot = l
        .events
        .iter()
        .any(|e| e.typ.as_deref() == Some("snapshot"));
    c.ts_ns = ts(l.timestamp);
    c.seq = l.sequence_num;
    Ok(Class::Market(c))
}

#[derive(Deserialize)]
struct BinanceEnvelope<'a> {
    #[serde(borrow)]
    stream: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    // Recorded `{"result":null,"id":1}` acks.
    id: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct BinanceData<'a> {
    #[serde(borrow)]
    e: Option<&'a str>,
    #[serde(rename = "E")]
    big_e: Option<i64>,
    #[serde(borrow)]
    s: Option<&'a str>,
    #[serde(rename = "U")]
    big_u: Option<u64>,
    u: Option<u64>,
}

/// Splits a Binance stream name `btcusdt@depth@100ms` into the lower-case
/// symbol and the channel without its update speed (`depth`). `None` for a
/// name without `@`.
pub fn binance_split_stream(stream: &str) -> Option<(String, String)> {
    let (sym, rest) = stream.split_once('@')?;
    let kind = rest.split('@').next().unwrap_or(rest);
    if sym.is_empty() || kind.is_empty() {
        return None;
    }
    Some((sym.to_ascii_lowercase(), kind.to_string()))
}

fn classify_binance(line: &str) -> Result<Class, LoadErrorKind> {
    let env: BinanceEnvelope = json(line)?;
    let (data_text, raw_range) = match env.data {
        Some(raw) => {
            let text = raw.get();
            // `raw` borrows from `line`: its offset is a pointer difference.
            let start = text.as_ptr() as usize - line.as_ptr() as usize;
            (text, Some((start, start + text.len())))
        }
        None => {
            if env.id.is_some() {
                return Ok(Class::Control { kraken_depth: None });
            }
            (line, None)
        }
    };
    let d: BinanceData = json(data_text)?;
    let (symbol, channel) = match env.stream {
        Some(stream) => binance_split_stream(stream).ok_or(LoadErrorKind::NotThisExchange(
            "`stream` is not `<symbol>@<channel>`",
        ))?,
        None => {
            let sym =
                d.s.ok_or(LoadErrorKind::MissingField("s"))?
                    .to_ascii_lowercase();
            let kind = match d.e {
                Some("depthUpdate") => "depth",
                Some("24hrTicker") => "ticker",
                Some("24hrMiniTicker") => "miniTicker",
                Some(e) => e,
                None if d.u.is_some() => "bookTicker",
                None => return Err(LoadErrorKind::MissingField("e")),
            };
            (sym, kind.to_string())
        }
    };
    let mut c = Classified::new(&channel, symbol);
    c.ts_ns = d.big_e.map(|ms| ms.saturating_mul(1_000_000));
    if channel == "depth" {
        c.seq = d.big_u;
        c.seq2 = d.u;
    }
    c.stream = env.stream.map(str::to_string);
    c.raw_range = raw_range;
    Ok(Class::Market(c))
}

/// The default fixture directory: `$TICKRING_FIXTURES`, else
/// `<crate>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("TICKRING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(rel: &str) -> PathBuf {
        fixtures_dir().join(rel)
    }

    #[test]
    fn kraken_session_keeps_the_118_book_messages_and_counts_control() {
        let c = Capture::load(Exchange::Kraken, &[fx("kraken/v2_session_book_d10.jsonl")]).unwrap();
        assert_eq!(c.msgs.len(), 118);
        assert_eq!(c.control_lines, 10);
        assert_eq!(c.kraken_depth, Some(10));
        assert!(c.msgs[0].snapshot);
        assert_eq!(c.keys[c.msgs[0].key as usize].channel, "book");
        let book = std::fs::read_to_string(fx("kraken/v2_book.jsonl")).unwrap();
        for (m, line) in c.msgs.iter().zip(book.lines()) {
            assert_eq!(
                m.text.as_str(),
                line,
                "served text must be the recorded line"
            );
        }
    }

    #[test]
    fn kraken_depth_comes_from_the_snapshot_without_an_ack() {
        let c = Capture::load(Exchange::Kraken, &[fx("kraken/v2_book.jsonl")]).unwrap();
        assert_eq!(c.kraken_depth, Some(10));
        assert_eq!(c.control_lines, 0);
    }

    #[test]
    fn binance_envelope_raw_is_the_data_text() {
        let c = Capture::load(
            Exchange::Binance,
            &[fx("binance/combined_depth_100ms.jsonl")],
        )
        .unwrap();
        assert_eq!(c.msgs.len(), 177);
        let m = &c.msgs[0];
        assert!(m
            .text
            .starts_with("{\"stream\":\"nknusdt@depth@100ms\",\"data\":{"));
        assert!(m.raw.starts_with("{\"e\":\"depthUpdate\""));
        assert!(m.text.contains(m.raw.as_str()));
        assert_eq!(
            c.keys[m.key as usize],
            StreamKey {
                channel: "depth".into(),
                symbol: "nknusdt".into()
            }
        );
        assert_eq!((m.seq, m.seq2), (Some(499_869_750), Some(499_869_752)));
        assert_eq!(m.ts_ns, 1_633_998_512_068_000_000);
        assert!(c.binance_span["nknusdt"] > 2);
    }

    #[test]
    fn coinbase_merges_files_by_time_keeping_each_files_order() {
        let c = Capture::load(
            Exchange::Coinbase,
            &[
                fx("coinbase/exchange_level2.jsonl"),
                fx("coinbase/exchange_matches.jsonl"),
            ],
        )
        .unwrap();
        assert_eq!(c.msgs.len(), 9729 + 107);
        let mut last_line = [0u32; 2];
        for m in &c.msgs {
            assert!(m.line > last_line[m.file as usize]);
            last_line[m.file as usize] = m.line;
        }
        // The matches start 7 s before the first level2 update; the level2
        // snapshots (no `time`) take their file's first time.
        assert_eq!(c.msgs[0].file, 1);
        // Each product's level2 stream starts with its snapshot.
        let mut seen = std::collections::HashSet::new();
        for m in c.msgs.iter().filter(|m| m.file == 0) {
            if seen.insert(m.key) {
                assert!(
                    m.snapshot,
                    "line {} comes before its product's snapshot",
                    m.line
                );
            }
        }
        assert_eq!(c.symbols.len(), 10);
    }

    #[test]
    fn advanced_keeps_the_recorded_sequence_gap() {
        let c = Capture::load(
            Exchange::CoinbaseAdvanced,
            &[fx("coinbase/advanced_l2_data.jsonl")],
        )
        .unwrap();
        let seqs: Vec<u64> = c.msgs.iter().filter_map(|m| m.seq).collect();
        assert_eq!(&seqs[..5], &[1, 2, 3, 4, 12]);
        assert_eq!(c.advanced_span, 23);
        assert_eq!(c.keys[c.msgs[0].key as usize].channel, "level2");
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("tickring-replay-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.jsonl");
        std::fs::write(
            &p,
            "{\"channel\":\"heartbeat\"}\n{\"channel\":\"book\",\"data\":[{}]}\n",
        )
        .unwrap();
        let e = Capture::load(Exchange::Kraken, std::slice::from_ref(&p)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(
            e.kind,
            LoadErrorKind::MissingField("data[0].symbol")
        ));
        assert!(e.to_string().contains("bad.jsonl line 2"), "{e}");
        std::fs::write(&p, "{not json\n").unwrap();
        let e = Capture::load(Exchange::Kraken, std::slice::from_ref(&p)).unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::Json(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
