//! `tickring bench parse`: messages per second per core of each feed
//! adapter on the bundled captures, next to a baseline that parses the same
//! messages with `serde_json` into plain owned structs (numbers kept as
//! `String`, or as raw JSON text where the exchange sends bare numbers;
//! never `f64`), the way a typical user would.

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{BuilderConfig, Pipeline};
use crate::event::{Event, Exchange};
use crate::feed::{Action, BookUpdate, Feed, FeedConfig, Sink};

/// One benchmark: a capture file and how to run it.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub exchange: Exchange,
    /// Path under the fixtures directory.
    pub file: &'static str,
    /// Run the whole [`Pipeline`] (books, Kraken CRC-32), not just the adapter.
    pub books: bool,
    /// Sequence-checked feeds see a replayed message as stale: start each
    /// pass over the file with a fresh adapter.
    pub fresh_per_pass: bool,
    /// The `serde_json` baseline for one message; `true` when it parsed.
    pub baseline: fn(&[u8]) -> bool,
}

/// The measured rates of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseResult {
    pub name: &'static str,
    pub messages_per_s: f64,
    pub baseline_messages_per_s: f64,
}

/// Every case, in report order.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "binance_trade",
            exchange: Exchange::Binance,
            file: "binance/trade.jsonl",
            books: false,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<Combined<BinanceTrade>>(b).is_ok(),
        },
        Case {
            name: "binance_depth",
            exchange: Exchange::Binance,
            file: "binance/combined_depth_100ms.jsonl",
            books: false,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<Combined<BinanceDepth>>(b).is_ok(),
        },
        Case {
            name: "binance_book_ticker",
            exchange: Exchange::Binance,
            file: "binance/combined_bookTicker.jsonl",
            books: false,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<Combined<BinanceBookTicker>>(b).is_ok(),
        },
        Case {
            name: "kraken_book",
            exchange: Exchange::Kraken,
            file: "kraken/v2_book.jsonl",
            books: false,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<KrakenBookMsg>(b).is_ok(),
        },
        Case {
            name: "kraken_book_crc",
            exchange: Exchange::Kraken,
            file: "kraken/v2_book.jsonl",
            books: true,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<KrakenBookMsg>(b).is_ok(),
        },
        Case {
            name: "coinbase_level2",
            exchange: Exchange::Coinbase,
            file: "coinbase/exchange_level2.jsonl",
            books: false,
            fresh_per_pass: false,
            baseline: |b| serde_json::from_slice::<CoinbaseMsg>(b).is_ok(),
        },
        Case {
            name: "coinbase_matches",
            exchange: Exchange::Coinbase,
            file: "coinbase/exchange_matches.jsonl",
            books: false,
            fresh_per_pass: true,
            baseline: |b| serde_json::from_slice::<CoinbaseMsg>(b).is_ok(),
        },
        Case {
            name: "coinbase_advanced_l2",
            exchange: Exchange::CoinbaseAdvanced,
            file: "coinbase/advanced_l2_data.jsonl",
            books: false,
            fresh_per_pass: true,
            baseline: |b| serde_json::from_slice::<AdvancedL2Msg>(b).is_ok(),
        },
    ]
}

/// The fixtures directory: `$TICKRING_FIXTURES`, else `../shared/fixtures`
/// next to the source tree.
pub fn default_fixtures() -> PathBuf {
    match std::env::var_os("TICKRING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// The non-empty lines of a case's capture.
pub fn load(fixtures: &Path, case: &Case) -> io::Result<Vec<Vec<u8>>> {
    let path = fixtures.join(case.file);
    let text = std::fs::read(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Counts events without keeping them.
#[derive(Default)]
pub struct CountSink {
    pub events: u64,
}

impl Sink for CountSink {
    #[inline]
    fn event(&mut self, ev: &Event) {
        black_box(ev);
        self.events += 1;
    }
    #[inline]
    fn book(&mut self, update: &BookUpdate, events: &[Event]) {
        black_box(update);
        self.events += black_box(events).len() as u64;
    }
    fn action(&mut self, action: Action) {
        black_box(action);
    }
}

/// What a case runs: the adapter alone or the pipeline.
#[allow(clippy::large_enum_variant)]
pub enum Runner {
    Feed(Feed),
    Pipeline(Box<Pipeline>),
}

impl Runner {
    pub fn new(case: &Case) -> Runner {
        if case.books {
            Runner::Pipeline(Box::new(Pipeline::new(
                case.exchange,
                FeedConfig::discovering(),
                BuilderConfig::default(),
            )))
        } else {
            Runner::Feed(Feed::new(case.exchange, FeedConfig::discovering()))
        }
    }

    /// One pass over `lines`; the number of messages that failed.
    #[inline]
    pub fn pass(&mut self, lines: &[Vec<u8>], sink: &mut CountSink) -> u64 {
        let mut errors = 0;
        for l in lines {
            let r = match self {
                Runner::Feed(f) => f.on_frame(l, 0, sink),
                Runner::Pipeline(p) => p.on_frame(l, 0, sink),
            };
            errors += r.is_err() as u64;
        }
        errors
    }
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes
    // it, and CLOCK_THREAD_CPUTIME_ID exists on every Linux kernel.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Rate of `f` (one pass over `n` messages per call), per second of this
/// thread's CPU time (so "per core", and not skewed by other processes
/// taking the core), over at least `min` of wall time.
fn rate(n: usize, min: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up caches and branch predictors.
    f();
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut passes = 0u64;
    loop {
        f();
        passes += 1;
        if start.elapsed() >= min {
            let cpu = (thread_cpu_ns() - cpu0).max(1) as f64 / 1e9;
            return (passes * n as u64) as f64 / cpu;
        }
    }
}

/// Measures one case: adapter rate and baseline rate, each over `min`.
pub fn measure(case: &Case, lines: &[Vec<u8>], min: Duration) -> ParseResult {
    let mut sink = CountSink::default();
    let mut runner = Runner::new(case);
    let messages_per_s = rate(lines.len(), min, || {
        if case.fresh_per_pass {
            runner = Runner::new(case);
        }
        black_box(runner.pass(lines, &mut sink));
    });
    let baseline = case.baseline;
    let baseline_messages_per_s = rate(lines.len(), min, || {
        for l in lines {
            black_box(baseline(black_box(l)));
        }
    });
    ParseResult {
        name: case.name,
        messages_per_s,
        baseline_messages_per_s,
    }
}

/// Runs every case (or those whose name contains `only`) against the
/// fixtures in `fixtures`.
pub fn run_all(fixtures: &Path, min: Duration, only: Option<&str>) -> io::Result<Vec<ParseResult>> {
    let mut out = Vec::new();
    for case in cases() {
        if only.is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let lines = load(fixtures, &case)?;
        out.push(measure(&case, &lines, min));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Baseline message types: what a typical serde user writes.

#[derive(Deserialize)]
pub struct Combined<T> {
    pub stream: String,
    pub data: T,
}

#[derive(Deserialize)]
pub struct BinanceTrade {
    pub e: String,
    #[serde(rename = "E")]
    pub event_time: u64,
    pub s: String,
    pub t: u64,
    pub p: String,
    pub q: String,
    #[serde(rename = "T")]
    pub trade_time: u64,
    pub m: bool,
}

#[derive(Deserialize)]
pub struct BinanceDepth {
    pub e: String,
    #[serde(rename = "E")]
    pub event_time: u64,
    pub s: String,
    #[serde(rename = "U")]
    pub first_update_id: u64,
    pub u: u64,
    pub b: Vec<(String, String)>,
    pub a: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub struct BinanceBookTicker {
    pub u: u64,
    pub s: String,
    pub b: String,
    #[serde(rename = "B")]
    pub bid_qty: String,
    pub a: String,
    #[serde(rename = "A")]
    pub ask_qty: String,
}

#[derive(Deserialize)]
pub struct KrakenBookMsg {
    pub channel: String,
    #[serde(rename = "type")]
    pub typ: String,
    pub data: Vec<KrakenBook>,
}

#[derive(Deserialize)]
pub struct KrakenBook {
    pub symbol: String,
    pub bids: Vec<KrakenLevel>,
    pub asks: Vec<KrakenLevel>,
    pub checksum: u32,
    pub timestamp: String,
}

/// Kraken sends bare numbers: kept as their raw text (the checksum needs it).
#[derive(Deserialize)]
pub struct KrakenLevel {
    pub price: Box<RawValue>,
    pub qty: Box<RawValue>,
}

#[allow(non_camel_case_types, dead_code)]
#[derive(Deserialize)]
#[serde(tag = "type")]
pub enum CoinbaseMsg {
    snapshot {
        product_id: String,
        bids: Vec<(String, String)>,
        asks: Vec<(String, String)>,
    },
    l2update {
        product_id: String,
        changes: Vec<(String, String, String)>,
        time: String,
    },
    #[serde(alias = "last_match")]
    r#match {
        trade_id: u64,
        side: String,
        size: String,
        price: String,
        product_id: String,
        sequence: u64,
        time: String,
    },
}

#[derive(Deserialize)]
pub struct AdvancedL2Msg {
    pub channel: String,
    pub timestamp: String,
    pub sequence_num: u64,
    pub events: Vec<AdvancedL2Event>,
}

#[derive(Deserialize)]
pub struct AdvancedL2Event {
    #[serde(rename = "type")]
    pub typ: String,
    pub product_id: String,
    pub updates: Vec<AdvancedL2Update>,
}

#[derive(Deserialize)]
pub struct AdvancedL2Update {
    pub side: String,
    pub event_time: String,
    pub price_level: String,
    pub new_quantity: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_and_its_baseline_parse_all_their_lines() {
        let dir = default_fixtures();
        for case in cases() {
            let lines = load(&dir, &case).unwrap();
            assert!(!lines.is_empty(), "{}", case.name);
            let mut runner = Runner::new(&case);
            let mut sink = CountSink::default();
            assert_eq!(runner.pass(&lines, &mut sink), 0, "{}", case.name);
            assert!(sink.events > 0, "{}", case.name);
            for l in &lines {
                assert!(
                    (case.baseline)(l),
                    "{}: {}",
                    case.name,
                    String::from_utf8_lossy(l)
                );
            }
        }
    }
}
