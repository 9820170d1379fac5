//! `tickring book`: runs a capture file through a feed adapter and the book
//! builder (the same [`Pipeline`] the collector uses) and prints the books.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use crate::book::{BuilderConfig, Pipeline, SyncState};
use crate::event::{Event, EventKind, Exchange};
use crate::feed::{Action, FeedConfig, Sink};
use crate::fixed;

#[derive(Args, Debug)]
pub struct BookArgs {
    /// coinbase, coinbase-advanced, kraken or binance.
    #[arg(long, value_parser = parse_exchange)]
    pub exchange: Exchange,
    /// Capture file: one exchange message per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Binance REST depth answers, one per line (see --snapshot-symbols).
    #[arg(long, requires = "snapshot_symbols")]
    pub snapshot: Option<PathBuf>,
    /// The symbol of each --snapshot line, in order (a REST answer names none).
    #[arg(long, value_delimiter = ',', requires = "snapshot")]
    pub snapshot_symbols: Vec<String>,
    /// Levels per side to print (default: all).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Decimal places of prices for the discovered instruments.
    #[arg(long, default_value_t = crate::feed::DEFAULT_SCALE)]
    pub price_scale: u8,
    /// Decimal places of quantities for the discovered instruments.
    #[arg(long, default_value_t = crate::feed::DEFAULT_SCALE)]
    pub qty_scale: u8,
}

fn parse_exchange(s: &str) -> Result<Exchange, String> {
    Exchange::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Exchange::ALL.iter().map(|e| e.name()).collect();
        format!("unknown exchange {s:?} (one of {})", names.join(", "))
    })
}

/// Counts what reaches the ring side of the pipeline and keeps the actions.
#[derive(Default)]
struct CountingSink {
    trades: u64,
    actions: Vec<Action>,
}

impl Sink for CountingSink {
    fn event(&mut self, ev: &Event) {
        if ev.kind == EventKind::Trade as u8 {
            self.trades += 1;
        }
    }
    fn action(&mut self, action: Action) {
        self.actions.push(action);
    }
}

pub fn run(args: BookArgs) -> anyhow::Result<ExitCode> {
    for s in [args.price_scale, args.qty_scale] {
        if s > fixed::MAX_SCALE {
            bail!("scale {s} is larger than {}", fixed::MAX_SCALE);
        }
    }
    // REST snapshots by symbol, each served once when the pipeline asks.
    let mut snapshots: HashMap<String, Vec<u8>> = HashMap::new();
    if let Some(path) = &args.snapshot {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() != args.snapshot_symbols.len() {
            bail!(
                "{}: {} snapshot lines but {} --snapshot-symbols",
                path.display(),
                lines.len(),
                args.snapshot_symbols.len()
            );
        }
        for (sym, line) in args.snapshot_symbols.iter().zip(lines) {
            snapshots.insert(sym.clone(), line.as_bytes().to_vec());
        }
    }

    let mut cfg = FeedConfig::discovering();
    cfg.discover = Some((args.price_scale, args.qty_scale));
    let mut pipe = Pipeline::new(args.exchange, cfg, BuilderConfig::default());
    let mut sink = CountingSink::default();
    let file =
        fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let (mut messages, mut errors, mut lineno) = (0u64, 0u64, 0u64);
    let stderr = io::stderr();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", args.input.display()))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        messages += 1;
        if let Err(e) = pipe.on_frame(&line, 0, &mut sink) {
            errors += 1;
            let _ = writeln!(
                stderr.lock(),
                "tickring: {}:{lineno}: {e}",
                args.input.display()
            );
        }
        // Serve the snapshot requests the line caused (Binance).
        while let Some(action) = sink.actions.pop() {
            if let Action::FetchSnapshot { instrument, .. } = action {
                let sym = pipe.feed.instruments()[instrument as usize].symbol.clone();
                if let Some(body) = snapshots.remove(&sym) {
                    if let Err(e) = pipe.on_rest_snapshot(instrument, &body, 0, &mut sink) {
                        errors += 1;
                        let path = args.snapshot.as_ref().map(|p| p.display().to_string());
                        let _ = writeln!(
                            stderr.lock(),
                            "tickring: {} (snapshot of {sym}): {e}",
                            path.unwrap_or_default()
                        );
                    }
                }
            }
        }
    }

    let stats = pipe.books.stats;
    let feed_stats = pipe.feed.stats();
    let depth = args.depth.unwrap_or(usize::MAX);
    let mut out = io::stdout().lock();
    if args.json {
        let books: Vec<_> = pipe
            .feed
            .instruments()
            .iter()
            .enumerate()
            .filter_map(|(i, ins)| {
                let st = pipe.books.get(i as u16)?;
                let lv = |it: &mut dyn Iterator<Item = (i64, i64)>| -> Vec<[String; 2]> {
                    it.take(depth)
                        .map(|(p, q)| {
                            [
                                fixed::format(p, ins.price_scale),
                                fixed::format(q, ins.qty_scale),
                            ]
                        })
                        .collect()
                };
                Some(json!({
                    "symbol": ins.symbol,
                    "state": state_name(st.state),
                    "bids": lv(&mut st.book.bids.iter()),
                    "asks": lv(&mut st.book.asks.iter()),
                }))
            })
            .collect();
        let doc = json!({
            "books": books,
            "stats": {
                "messages": messages,
                "trades": sink.trades,
                "updates": stats.updates,
                "snapshots": stats.snapshots,
                "gaps": stats.gaps,
                "checksum_ok": stats.checksum_ok,
                "checksum_failed": stats.checksum_failed,
                "checksum_skipped": stats.checksum_skipped,
                "resyncs": stats.resyncs,
                "crossed": stats.crossed,
                "dropped": stats.dropped,
                "unknown": feed_stats.unknown,
                "stale": feed_stats.stale,
                "errors": errors,
            }
        });
        writeln!(out, "{doc}")?;
    } else {
        for (i, ins) in pipe.feed.instruments().iter().enumerate() {
            let Some(st) = pipe.books.get(i as u16) else {
                continue;
            };
            writeln!(out, "{} ({})", ins.symbol, state_name(st.state))?;
            writeln!(
                out,
                "{:>20} {:>20} | {:<20} {:<20}",
                "bid qty", "bid", "ask", "ask qty"
            )?;
            let bids: Vec<_> = st.book.bids.iter().take(depth).collect();
            let asks: Vec<_> = st.book.asks.iter().take(depth).collect();
            for r in 0..bids.len().max(asks.len()) {
                let f = |v: Option<&(i64, i64)>, price: bool| match v {
                    Some(&(p, _)) if price => fixed::format(p, ins.price_scale),
                    Some(&(_, q)) => fixed::format(q, ins.qty_scale),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "{:>20} {:>20} | {:<20} {:<20}",
                    f(bids.get(r), false),
                    f(bids.get(r), true),
                    f(asks.get(r), true),
                    f(asks.get(r), false)
                )?;
            }
            writeln!(out)?;
        }
        writeln!(
            out,
            "messages {messages}  trades {}  updates {}  snapshots {}  gaps {}  checksum ok {} failed {} skipped {}  resyncs {}  errors {errors}",
            sink.trades,
            stats.updates,
            stats.snapshots,
            stats.gaps,
            stats.checksum_ok,
            stats.checksum_failed,
            stats.checksum_skipped,
            stats.resyncs
        )?;
    }
    out.flush()?;
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn state_name(s: SyncState) -> &'static str {
    match s {
        SyncState::AwaitingSnapshot => "awaiting_snapshot",
        SyncState::Valid => "valid",
        SyncState::Invalid => "invalid",
    }
}
