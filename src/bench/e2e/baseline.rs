//! `tokio_baseline`: the collector most users would write first.
//!
//! A tokio current-thread runtime on one pinned thread, a tokio-tungstenite
//! client, `serde_json` into owned structs (numbers kept as text: `String`,
//! or the raw JSON text where Kraken sends bare numbers; never `f64`),
//! converted into [`Event`]s with [`crate::fixed`] and published to a ring
//! with [`Writer::publish`], stamped like the collector stamps its events
//! (`recv_ts` when the message came out of the WebSocket stream,
//! `publish_ts` once per message). It keeps no books and checks no
//! checksums: less work than the collector does per message.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::E2eError;
use crate::bench::parse::{BinanceBookTicker, Combined, KrakenBookMsg, KrakenLevel};
use crate::event::{flags, Event, EventKind, Exchange, Side};
use crate::instrument::Instrument;
use crate::ring::{Backing, Writer, WriterOptions};
use crate::time::now_ns;

/// What the baseline connects to and where it publishes.
#[derive(Clone, Debug)]
pub struct BaselineConfig {
    /// `Kraken` or `Binance`.
    pub exchange: Exchange,
    pub addr: SocketAddr,
    /// `ws://ADDR/PATH`.
    pub url: String,
    /// Text frames sent once the WebSocket is open.
    pub subscribe: Vec<String>,
    pub instruments: Vec<Instrument>,
    /// The ring goes to `ring_dir/ring_name.ring` (plain shared memory).
    pub ring_dir: PathBuf,
    pub ring_name: String,
    /// Core the runtime's thread is pinned to.
    pub core: Option<usize>,
    /// SCHED_FIFO priority of the runtime's thread (as the collector's
    /// `cpu.sched_fifo_priority`); normal scheduling when `None`.
    pub fifo_priority: Option<i32>,
}

/// What the baseline counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BaselineStats {
    /// Market messages turned into events.
    pub messages: u64,
    pub events: u64,
    /// Messages that are no market data (acks, heartbeats, status).
    pub other: u64,
    /// Market messages refused (malformed).
    pub errors: u64,
}

/// Why a message was refused.
#[derive(Debug)]
pub enum ParseError {
    Json(serde_json::Error),
    /// A number that is not an exact decimal at the instrument's scale.
    BadNumber {
        field: &'static str,
        text: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "json: {e}"),
            ParseError::BadNumber { field, text } => {
                write!(f, "`{field}`: {text:?} is not an exact decimal")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Symbol -> (ring instrument id, price scale, quantity scale).
pub struct Instruments {
    map: HashMap<String, (u16, u8, u8)>,
}

impl Instruments {
    /// Ids are positions in `list` (the ring registers them in that order).
    pub fn new(list: &[Instrument]) -> Instruments {
        Instruments {
            map: list
                .iter()
                .enumerate()
                .map(|(i, ins)| {
                    (
                        ins.symbol.clone(),
                        (i as u16, ins.price_scale, ins.qty_scale),
                    )
                })
                .collect(),
        }
    }

    fn get(&self, symbol: &str) -> Option<(u16, u8, u8)> {
        self.map.get(symbol).copied()
    }
}

/// Enough of any message to tell market data from the rest.
#[derive(Deserialize)]
struct Probe {
    channel: Option<String>,
    stream: Option<String>,
}

fn number(field: &'static str, text: &str, scale: u8) -> Result<i64, ParseError> {
    crate::fixed::parse(text.as_bytes(), scale).map_err(|_| ParseError::BadNumber {
        field,
        text: text.to_string(),
    })
}

/// One message into events (appended to `out`). `Ok(false)`: not market
/// data. The last event of the message carries `LAST_IN_MESSAGE`.
pub fn parse_frame(
    exchange: Exchange,
    text: &[u8],
    instruments: &Instruments,
    recv_ts: i64,
    out: &mut Vec<Event>,
) -> Result<bool, ParseError> {
    let start = out.len();
    let market = match exchange {
        Exchange::Kraken => kraken(text, instruments, recv_ts, out)?,
        Exchange::Binance => binance(text, instruments, recv_ts, out)?,
        _ => false,
    };
    if out.len() > start {
        if let Some(last) = out.last_mut() {
            last.flags |= flags::LAST_IN_MESSAGE;
        }
    }
    Ok(market)
}

fn kraken(
    text: &[u8],
    instruments: &Instruments,
    recv_ts: i64,
    out: &mut Vec<Event>,
) -> Result<bool, ParseError> {
    let msg: KrakenBookMsg = match serde_json::from_slice(text) {
        Ok(m) => m,
        Err(e) => {
            // Heartbeats, status and acks are not book messages; a book
            // message, or anything that is not JSON, is an error.
            return match serde_json::from_slice::<Probe>(text) {
                Ok(p) if p.channel.as_deref() != Some("book") => Ok(false),
                _ => Err(ParseError::Json(e)),
            };
        }
    };
    if msg.channel != "book" {
        return Ok(false);
    }
    let snapshot = msg.typ == "snapshot";
    for book in &msg.data {
        let Some((id, ps, qs)) = instruments.get(&book.symbol) else {
            continue;
        };
        let exch_ts = crate::replay::rfc3339::parse_ns(&book.timestamp).unwrap_or(0);
        for (side, levels) in [(Side::Bid, &book.bids), (Side::Ask, &book.asks)] {
            for KrakenLevel { price, qty } in levels {
                let price = number("price", price.get(), ps)?;
                let qty = number("qty", qty.get(), qs)?;
                out.push(Event {
                    kind: if qty == 0 {
                        EventKind::BookDelete
                    } else {
                        EventKind::BookSet
                    } as u8,
                    exchange: Exchange::Kraken as u8,
                    side: side as u8,
                    flags: if snapshot { flags::SNAPSHOT } else { 0 },
                    instrument: id,
                    exch_ts,
                    recv_ts,
                    price,
                    qty,
                    ..Event::default()
                });
            }
        }
    }
    Ok(true)
}

fn binance(
    text: &[u8],
    instruments: &Instruments,
    recv_ts: i64,
    out: &mut Vec<Event>,
) -> Result<bool, ParseError> {
    let msg: Combined<BinanceBookTicker> = match serde_json::from_slice(text) {
        Ok(m) => m,
        Err(e) => {
            return match serde_json::from_slice::<Probe>(text) {
                Ok(p) if p.stream.is_none() => Ok(false),
                _ => Err(ParseError::Json(e)),
            };
        }
    };
    let t = &msg.data;
    let Some((id, ps, qs)) = instruments.get(&t.s) else {
        return Ok(true);
    };
    for (side, p, q) in [(Side::Bid, &t.b, &t.bid_qty), (Side::Ask, &t.a, &t.ask_qty)] {
        out.push(Event {
            kind: EventKind::Bbo as u8,
            exchange: Exchange::Binance as u8,
            side: side as u8,
            instrument: id,
            recv_ts,
            price: number("price", p, ps)?,
            qty: number("qty", q, qs)?,
            seq: t.u,
            ..Event::default()
        });
    }
    Ok(true)
}

/// The baseline collector running on its own thread.
pub struct Baseline {
    ring_path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<BaselineStats, String>>>,
}

impl Baseline {
    /// Creates the ring, starts the thread and returns once the ring
    /// exists (the connection is made on the thread).
    pub fn start(cfg: BaselineConfig, within: Duration) -> Result<Baseline, E2eError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tokio-baseline".into())
            .spawn(move || run(cfg, ready_tx, stop_rx))
            .map_err(|e| E2eError::io("starting the tokio baseline thread", e))?;
        let mut b = Baseline {
            ring_path: PathBuf::new(),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(within) {
            Ok(path) => {
                b.ring_path = path;
                Ok(b)
            }
            Err(_) => {
                b.check_alive()?;
                Err(E2eError::Timeout {
                    waiting_for: "ring from the tokio baseline".into(),
                    after: within,
                })
            }
        }
    }

    pub fn ring_path(&self) -> &Path {
        &self.ring_path
    }

    /// An error once the thread has ended (it only ends when stopped).
    pub fn check_alive(&mut self) -> Result<(), E2eError> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let why = match self.thread.take().map(JoinHandle::join) {
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => "its thread panicked".into(),
                _ => "it stopped early".into(),
            };
            return Err(E2eError::Baseline(why));
        }
        Ok(())
    }

    /// Stops the runtime (closing the WebSocket) and returns its counts.
    pub fn stop(&mut self) -> Result<BaselineStats, E2eError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(stats))) => Ok(stats),
            Some(Ok(Err(e))) => Err(E2eError::Baseline(e)),
            Some(Err(_)) => Err(E2eError::Baseline("its thread panicked".into())),
            None => Err(E2eError::Baseline("already stopped".into())),
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    cfg: BaselineConfig,
    ready: mpsc::Sender<PathBuf>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<BaselineStats, String> {
    if let Some(core) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
    // Set explicitly either way: the thread inherited its creator's policy.
    super::set_scheduling(cfg.fifo_priority).map_err(|e| e.to_string())?;
    let opts = WriterOptions {
        backing: Backing::Shm {
            dir: cfg.ring_dir.clone(),
        },
        capacity: 1 << 16,
        lock_memory: true,
    };
    let mut writer = Writer::create(&cfg.ring_name, &opts).map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    for ins in &cfg.instruments {
        ids.push(writer.register_instrument(ins).map_err(|e| e.to_string())?);
    }
    // Ring ids are handed out in registration order.
    debug_assert!(ids.iter().enumerate().all(|(i, &id)| i == id as usize));
    let _ = ready.send(writer.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the runtime: {e}"))?;
    rt.block_on(session(&cfg, &mut writer, stop))
}

async fn session(
    cfg: &BaselineConfig,
    writer: &mut Writer,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<BaselineStats, String> {
    let tcp = tokio::net::TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", cfg.addr))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async(cfg.url.as_str(), tcp)
        .await
        .map_err(|e| format!("WebSocket handshake with {}: {e}", cfg.url))?;
    for s in &cfg.subscribe {
        ws.send(Message::text(s.clone()))
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
    }
    let instruments = Instruments::new(&cfg.instruments);
    let mut stats = BaselineStats::default();
    let mut events = Vec::with_capacity(64);
    loop {
        let msg = tokio::select! {
            _ = &mut stop => {
                let _ = ws.close(None).await;
                break;
            }
            m = ws.next() => m,
        };
        let recv_ts = now_ns();
        let bytes: &[u8] = match &msg {
            Some(Ok(Message::Text(t))) => t.as_bytes(),
            Some(Ok(Message::Binary(b))) => b,
            // tungstenite answers pings by itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => return Err(format!("reading: {e}")),
        };
        events.clear();
        match parse_frame(cfg.exchange, bytes, &instruments, recv_ts, &mut events) {
            Ok(true) => {
                stats.messages += 1;
                if events.is_empty() {
                    continue;
                }
                let publish_ts = now_ns();
                for ev in &mut events {
                    ev.publish_ts = publish_ts;
                    writer.publish(ev);
                }
                stats.events += events.len() as u64;
            }
            Ok(false) => stats.other += 1,
            Err(_) => stats.errors += 1,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::default_fixtures;

    fn lines(file: &str) -> Vec<Vec<u8>> {
        std::fs::read(default_fixtures().join(file))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn kraken_book_messages_become_level_events_at_exact_scale() {
        let ins = [Instrument::new(Exchange::Kraken, "BTC/USD", 8, 8).unwrap()];
        let idx = Instruments::new(&ins);
        let mut n = 0;
        for l in lines("kraken/v2_book.jsonl") {
            let mut out = Vec::new();
            assert!(parse_frame(Exchange::Kraken, &l, &idx, 7, &mut out).unwrap());
            assert!(!out.is_empty());
            assert!(out.last().unwrap().flags & flags::LAST_IN_MESSAGE != 0);
            assert!(out.iter().all(|e| e.recv_ts == 7 && e.exch_ts > 0));
            n += 1;
        }
        assert_eq!(n, 118);
        let mut out = Vec::new();
        let first = &lines("kraken/v2_book.jsonl")[0];
        parse_frame(Exchange::Kraken, first, &idx, 0, &mut out).unwrap();
        // {"price":62802.5,"qty":0.02987767}: the first bid of the snapshot.
        assert_eq!(out[0].price, 6_280_250_000_000);
        assert_eq!(out[0].qty, 2_987_767);
        assert_eq!(out[0].flags & flags::SNAPSHOT, flags::SNAPSHOT);
    }

    #[test]
    fn control_messages_are_not_market_data_and_broken_book_messages_are_errors() {
        let ins = [Instrument::new(Exchange::Kraken, "BTC/USD", 8, 8).unwrap()];
        let idx = Instruments::new(&ins);
        let mut out = Vec::new();
        for l in lines("kraken/v2_control.jsonl") {
            assert!(!parse_frame(Exchange::Kraken, &l, &idx, 0, &mut out).unwrap());
        }
        assert!(out.is_empty());
        let broken = br#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1e5,"qty":1}],"asks":[],"checksum":1,"timestamp":"2026-08-16T23:37:05.377468Z"}]}"#;
        assert!(matches!(
            parse_frame(Exchange::Kraken, broken, &idx, 0, &mut out),
            Err(ParseError::BadNumber { field: "price", .. })
        ));
        let cut = br#"{"channel":"book","type":"update","data":[{"symbol""#;
        assert!(matches!(
            parse_frame(Exchange::Kraken, cut, &idx, 0, &mut out),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn binance_book_ticker_becomes_two_bbo_events_with_the_update_id() {
        let syms = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"];
        let ins: Vec<_> = syms
            .iter()
            .map(|s| Instrument::new(Exchange::Binance, s, 8, 8).unwrap())
            .collect();
        let idx = Instruments::new(&ins);
        let all = lines("binance/combined_bookTicker.jsonl");
        for l in &all {
            let mut out = Vec::new();
            assert!(parse_frame(Exchange::Binance, l, &idx, 0, &mut out).unwrap());
            assert_eq!(out.len(), 2);
        }
        let mut out = Vec::new();
        parse_frame(Exchange::Binance, &all[0], &idx, 0, &mut out).unwrap();
        // "u":499869768,"b":"0.35210000","B":"672.00000000"
        assert_eq!(out[0].seq, 499_869_768);
        assert_eq!(out[0].price, 35_210_000);
        assert_eq!(out[0].qty, 67_200_000_000);
        assert_eq!(out[1].side, Side::Ask as u8);
        let ack = br#"{"result":null,"id":1}"#;
        assert!(!parse_frame(Exchange::Binance, ack, &idx, 0, &mut out).unwrap());
    }
}
