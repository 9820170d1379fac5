//! End to end on loopback, one test per exchange: replay server (library,
//! `Pace::Max`, no loop) -> `tickring collect` (the real binary, a child
//! process) -> ring + book region -> a reader in this process.
//!
//! Each test checks that
//! - every market message the server sent became the events the
//!   collector's pipeline makes of it (the same `book::Pipeline`, run here
//!   on the texts the server reports having sent, in that order), and the
//!   counts the capture itself implies (trades, snapshots, book messages);
//! - the final books, read from the book region and rebuilt from the ring's
//!   events, equal `tickring book --json` on the same capture and depth;
//! - `/metrics` agrees with the server: messages and bytes received equal
//!   what the server sent on the connection, events published equal the
//!   ring's cursor, nothing refused, no reconnect;
//! - SIGTERM stops it with status 0 and the ring says "stopped".

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tickring::event::{Event, EventKind, Exchange, StatusCode};

struct Case {
    exchange: Exchange,
    files: &'static [&'static str],
    symbols: &'static [&'static str],
    /// Path appended to the server URL (Binance combined streams).
    path: &'static str,
    /// The capture `tickring book` rebuilds the books from.
    book_input: &'static str,
    binance: bool,
    /// The capture has a gap the collector resyncs from.
    resyncs: bool,
    capacity: u64,
    depth: u16,
    /// Extra config tables.
    tables: &'static str,
}

/// What the capture files say the collector must publish.
#[derive(Debug, Default)]
struct Expect {
    trades: usize,
    snapshots: usize,
    /// Book messages that changed a book (one `LAST_IN_MESSAGE` book event each).
    book_messages: usize,
}

fn run(case: Case, expect: Expect) {
    let (server, sent) = replay(case.exchange, case.files, |c| {
        if case.binance {
            binance_rest(c);
        }
    });
    let dir = TestDir::new(case.exchange.name());
    let mut cfg = FeedToml::new(
        case.exchange,
        case.symbols,
        format!("{}{}", server.url(), case.path),
    );
    cfg.capacity = case.capacity;
    cfg.book_depth = case.depth;
    cfg.tables = case.tables.to_string();
    if case.binance {
        cfg.rest_endpoint = Some(format!("http://{}", server.local_addr()));
    }
    let config = cfg.write(&dir);
    let mut col = Collector::start(&dir, &config);
    let mut ring = RingLog::open(&dir.ring());

    let all = server.capture().msgs.len() as u64;
    let (m, conn) = wait_settled(&mut col, &server, all, &mut ring, None);
    eprintln!("{}: server {conn:?}", case.exchange);

    // --- what the server sent, as the server counts it.
    assert_eq!(server.connections().len(), 1, "{}", col.log());
    if case.resyncs {
        // A resync resubscribes, and the server serves the product again.
        assert!(conn.market_messages > all, "{conn:?}");
    } else {
        assert_eq!(conn.market_messages, all, "every market message was sent");
    }
    assert_eq!(conn.dropped, 0);
    assert_eq!(conn.faults_injected, 0);
    // (wait_settled: messages and bytes received == sent on the connection.)
    assert_eq!(m.messages(), conn.market_messages + conn.control_messages);

    // --- the collector's own counters.
    let events = &ring.events.clone();
    assert_eq!(
        m.get("tickring_collector_events_published_total"),
        ring.cursor(),
        "events published == the ring's cursor"
    );
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 0);
    assert_eq!(m.get("tickring_collector_reconnects_total"), 0);
    assert_eq!(m.get("tickring_collector_unknown_messages_total"), 0);
    assert_eq!(
        m.get("tickring_collector_unknown_instrument_messages_total"),
        0
    );
    assert_eq!(m.get("tickring_collector_connection_up"), 1);
    assert_eq!(
        m.sum(
            "tickring_collector_connection_state",
            "state=\"subscribed\""
        ),
        1
    );
    // One latency sample per exchange message or REST answer that
    // published something (its events share one publish timestamp); none
    // for the collector's own connection events.
    let inputs: std::collections::BTreeSet<i64> = events
        .iter()
        .filter(|e| {
            !matches!(
                e.status_code(),
                Some(StatusCode::Connected | StatusCode::Disconnected | StatusCode::WriterStopping)
            )
        })
        .map(|e| e.publish_ts)
        .collect();
    assert_eq!(
        m.get("tickring_collector_receive_to_publish_seconds_count"),
        inputs.len() as u64
    );
    if case.tables.contains("busy_poll = true") {
        assert_eq!(
            m.sum(
                "tickring_collector_io_uring_feature",
                "feature=\"busy_poll\""
            ),
            1
        );
    }
    if case.tables.contains("multishot = false") {
        for f in ["multishot_recv", "provided_buffers"] {
            let label = format!("feature=\"{f}\"");
            assert_eq!(
                m.sum("tickring_collector_io_uring_feature", &label),
                0,
                "{f}"
            );
        }
    }
    assert_eq!(events[0].status_code(), Some(StatusCode::Connected));
    assert_eq!(ring.count_status(StatusCode::Connected), 1);
    assert_eq!(ring.count_status(StatusCode::Disconnected), 0);
    if case.binance {
        assert_eq!(m.get("tickring_collector_snapshot_fetches_total"), 4);
        assert_eq!(m.get("tickring_collector_snapshot_fetch_failures_total"), 0);
        assert_eq!(
            server
                .counters()
                .rest_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            4
        );
    }

    // --- every market message became the right events.
    let texts = sent_texts(&server, &sent, conn.id, conn.market_messages);
    assert_eq!(texts.len() as u64, conn.market_messages);
    let snapshots = if case.binance {
        binance_snapshots()
    } else {
        HashMap::new()
    };
    let want = oracle_events(
        case.exchange,
        cfg.instruments(),
        case.depth,
        &texts,
        &snapshots,
    );
    let got: Vec<Event> = events
        .iter()
        .copied()
        .filter(is_market_or_book_status)
        .collect();
    if case.binance {
        // REST answers arrive while diffs stream in: the interleaving across
        // symbols depends on timing, each symbol's own sequence does not.
        assert_eq!(per_instrument(&got), per_instrument(&want));
    } else {
        let g: Vec<Key> = got.iter().map(Key::of).collect();
        let w: Vec<Key> = want.iter().map(Key::of).collect();
        assert_eq!(g.len(), w.len(), "event counts");
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert_eq!(a, b, "event {i} of {}", g.len());
        }
    }
    let book_msgs = last_in_message(events, EventKind::BookSet)
        + last_in_message(events, EventKind::BookDelete)
        + last_in_message(events, EventKind::SnapshotEnd);
    eprintln!(
        "{}: {} events, {} compared, {book_msgs} book messages, statuses {:?}",
        case.exchange,
        events.len(),
        got.len(),
        ring.statuses()
    );
    assert_eq!(ring.count_kind(EventKind::Trade), expect.trades, "trades");
    assert_eq!(book_msgs, expect.book_messages, "book messages");
    assert_eq!(
        ring.count_kind(EventKind::SnapshotEnd),
        expect.snapshots,
        "snapshots"
    );
    for e in events {
        assert_eq!(e.exchange(), Some(case.exchange));
        assert!(e.recv_ts > 0 && e.publish_ts >= e.recv_ts, "{e:?}");
    }

    // --- final books: book region == rebuilt from events == tickring book.
    let depth = case.depth as usize;
    let offline = offline_books(case.exchange, case.book_input, depth, case.binance);
    let rebuilt = books_from_events(events);
    let instruments = cfg.instruments();
    let mut valid = 0;
    for (id, ins) in instruments.iter().enumerate() {
        let Some((state, bids, asks)) = offline.get(&ins.symbol) else {
            continue;
        };
        let snap = book_snapshot(&dir.ring(), id as u16);
        assert_eq!(
            snap.valid,
            state == "valid",
            "{}: region valid={} vs offline {state}",
            ins.symbol,
            snap.valid
        );
        valid += snap.valid as u64;
        assert_eq!(&levels_text(&snap.bids, ins), bids, "{} bids", ins.symbol);
        assert_eq!(&levels_text(&snap.asks, ins), asks, "{} asks", ins.symbol);
        let (rb, ra) = rebuilt[&(id as u16)].top(depth);
        assert_eq!(
            (rb, ra),
            (snap.bids.clone(), snap.asks.clone()),
            "{}",
            ins.symbol
        );
        assert!(snap.ring_seq <= ring.cursor());
    }
    assert_eq!(m.get("tickring_collector_books_valid"), valid);
    let (status, body) = col.ready();
    if valid as usize == instruments.len() {
        assert_eq!((status, body.as_str()), (200, "ready\n"));
    } else {
        assert_eq!(status, 503, "{body}");
    }

    // --- a clean stop.
    let st = col
        .terminate(Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert!(st.success(), "{st}\n{}", col.log());
    ring.drain();
    assert_eq!(
        ring.events.last().and_then(Event::status_code),
        Some(StatusCode::Disconnected)
    );
    assert_eq!(ring.count_status(StatusCode::WriterStopping), 1);
}

/// `type` of each JSON line.
fn types(rel: &str) -> Vec<String> {
    fixture_lines(rel)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

/// The Kraken session (1 snapshot + 117 book updates) through the collector
/// with extra config `tables`: every message arrives, in order.
fn kraken_session(tables: &'static str) {
    let book_messages = fixture_lines("kraken/v2_book.jsonl").len();
    assert_eq!(book_messages, 118);
    run(
        Case {
            exchange: Exchange::Kraken,
            files: &["kraken/v2_session_book_d10.jsonl"],
            symbols: &["BTC/USD"],
            path: "/v2",
            book_input: "kraken/v2_session_book_d10.jsonl",
            binance: false,
            resyncs: false,
            capacity: 1 << 12,
            depth: 10,
            tables,
        },
        Expect {
            trades: 0,
            snapshots: 1,
            book_messages,
        },
    );
}

#[test]
fn kraken_session_arrives_whole() {
    kraken_session("");
}

#[test]
fn kraken_session_arrives_whole_on_the_plain_receive_path() {
    // No provided buffers, no multishot receive: one plain recv at a time.
    kraken_session("\n[io_uring]\nmultishot = false\n");
}

#[test]
fn kraken_session_arrives_whole_when_busy_polling() {
    // The hot loop never sleeps in io_uring_enter: it polls (running the
    // kernel's task work) and spins. Everything must still arrive, in order.
    kraken_session("\n[cpu]\ncore = 0\n[io_uring]\nbusy_poll = true\n");
}

#[test]
fn coinbase_level2_and_matches_arrive_whole() {
    let matches = types("coinbase/exchange_matches.jsonl")
        .iter()
        .filter(|t| *t == "match" || *t == "last_match")
        .count();
    assert_eq!(matches, 107);
    let level2 = types("coinbase/exchange_level2.jsonl");
    let snapshots = level2.iter().filter(|t| *t == "snapshot").count();
    assert_eq!(snapshots, 10);
    run(
        Case {
            exchange: Exchange::Coinbase,
            files: &[
                "coinbase/exchange_level2.jsonl",
                "coinbase/exchange_matches.jsonl",
            ],
            symbols: &[
                "BAND-GBP", "SKL-GBP", "NU-GBP", "YFI-BTC", "SKL-BTC", "CRV-EUR", "BAND-BTC",
                "DASH-BTC", "NMR-EUR", "SKL-USD",
            ],
            path: "",
            book_input: "coinbase/exchange_level2.jsonl",
            binance: false,
            resyncs: false,
            capacity: 1 << 20,
            depth: 10,
            tables: "",
        },
        Expect {
            trades: matches,
            snapshots,
            book_messages: level2.len(),
        },
    );
}

#[test]
fn coinbase_advanced_updates_and_trades_arrive_whole() {
    let trades: usize = fixture_lines("coinbase/advanced_market_trades.jsonl")
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["trades"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        })
        .sum();
    assert!(trades > 0);
    // The recorded gap (sequence_num 5-11) makes the collector resync the
    // book it had; the server serves that product again, and those
    // messages are older than the last seen: stale, no events.
    run(
        Case {
            exchange: Exchange::CoinbaseAdvanced,
            files: &[
                "coinbase/advanced_l2_data.jsonl",
                "coinbase/advanced_market_trades.jsonl",
            ],
            symbols: &["BTC-USD", "ETH-USD"],
            path: "",
            book_input: "coinbase/advanced_l2_data.jsonl",
            binance: false,
            resyncs: true,
            capacity: 1 << 12,
            depth: 10,
            tables: "",
        },
        Expect {
            trades,
            snapshots: 0,
            book_messages: fixture_lines("coinbase/advanced_l2_data.jsonl").len(),
        },
    );
}

#[test]
fn binance_depth_with_rest_snapshots_arrives_whole() {
    // Diffs older than their symbol's snapshot are dropped (Binance's
    // procedure); the rest and the 4 snapshots each change a book.
    let last_id: HashMap<String, u64> = BINANCE_SNAPSHOT_SYMBOLS
        .iter()
        .zip(fixture_lines("binance/depth_snapshot_rest.jsonl"))
        .map(|(s, l)| {
            let v: Value = serde_json::from_str(&l).unwrap();
            (s.to_string(), v["lastUpdateId"].as_u64().unwrap())
        })
        .collect();
    let applied = fixture_lines("binance/combined_depth_100ms.jsonl")
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["data"]["u"].as_u64().unwrap() > last_id[v["data"]["s"].as_str().unwrap()]
        })
        .count();
    assert!(applied > 100 && applied < 177, "{applied}");
    run(
        Case {
            exchange: Exchange::Binance,
            files: &["binance/combined_depth_100ms.jsonl"],
            symbols: &["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
            path: "/stream",
            book_input: "binance/combined_depth_100ms.jsonl",
            binance: true,
            resyncs: false,
            capacity: 1 << 14,
            depth: 10,
            tables: "",
        },
        Expect {
            trades: 0,
            snapshots: 4,
            book_messages: applied + 4,
        },
    );
}
