//! WebSocket clients of the gateway rebuild the exact books that
//! `tickring book` builds from the same capture, and trades arrive as the
//! same JSON objects `tickring tail --json` prints.
//!
//! A collector stand-in runs each real capture through the same `Pipeline`
//! the collector uses and publishes its events into a ring and its books
//! into the book region, while a gateway child process serves the ring.
//! One client subscribes before the replay (it sees every event), another
//! joins halfway (it starts from a snapshot of the book region, then
//! deltas). Both are tungstenite clients: a different WebSocket library
//! from the server's.

mod gateway_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_support::*;
use serde_json::{json, Value};
use tickring::book::Book;
use tickring::event::{flags, Event, EventKind, Exchange, Side};
use tickring::fixed;

const SCALE: u8 = tickring::feed::DEFAULT_SCALE;

/// `tickring book --json` on a capture.
fn tickring_book(exchange: &str, file: &str, extra: &[&str]) -> Value {
    let path = fixtures().join(file);
    let out = Command::new(bin())
        .args(["book", "--exchange", exchange, "--input"])
        .arg(&path)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A client's book of one instrument and what part of it is exact.
struct ClientBook {
    book: Book,
    /// Worst snapshot price per side when the snapshot filled the region's
    /// depth: levels beyond it were not in the snapshot, so only levels at
    /// or better than it are known exactly. `None`: the side is complete.
    bid_limit: Option<i64>,
    ask_limit: Option<i64>,
    snapshot_seq: u64,
}

fn level(l: &Value) -> (i64, i64) {
    (
        fixed::parse(l[0].as_str().unwrap().as_bytes(), SCALE).unwrap(),
        fixed::parse(l[1].as_str().unwrap().as_bytes(), SCALE).unwrap(),
    )
}

/// Rebuilds books from a client's messages exactly as a user would: the
/// snapshot, then every book event; for Kraken the book is truncated to
/// the subscribed depth after each exchange message (as Kraken requires).
fn rebuild(msgs: &[Value], truncate: Option<usize>) -> HashMap<String, ClientBook> {
    let mut books: HashMap<String, ClientBook> = HashMap::new();
    for m in msgs {
        if m["type"] == "snapshot" {
            let key = m["symbol"].as_str().unwrap().to_owned();
            let depth = m["depth"].as_u64().unwrap() as usize;
            let mut book = Book::new();
            let bids: Vec<(i64, i64)> = m["bids"].as_array().unwrap().iter().map(level).collect();
            let asks: Vec<(i64, i64)> = m["asks"].as_array().unwrap().iter().map(level).collect();
            for &(p, q) in &bids {
                book.bids.set(p, q);
            }
            for &(p, q) in &asks {
                book.asks.set(p, q);
            }
            books.insert(
                key,
                ClientBook {
                    book,
                    bid_limit: (bids.len() >= depth).then(|| bids.last().unwrap().0),
                    ask_limit: (asks.len() >= depth).then(|| asks.last().unwrap().0),
                    snapshot_seq: m["ring_seq"].as_u64().unwrap(),
                },
            );
            continue;
        }
        let kind = match m["kind"].as_str() {
            Some("book_set") => EventKind::BookSet,
            Some("book_delete") => EventKind::BookDelete,
            Some("snapshot_begin") => EventKind::SnapshotBegin,
            Some("snapshot_end") => EventKind::SnapshotEnd,
            _ => continue,
        };
        let key = m["symbol"].as_str().unwrap();
        let cb = books
            .get_mut(key)
            .unwrap_or_else(|| panic!("book event for {key} before its snapshot: {m}"));
        let seq = m["ring_seq"].as_u64().unwrap();
        assert!(
            seq >= cb.snapshot_seq,
            "delta {seq} older than the snapshot {}",
            cb.snapshot_seq
        );
        let ev = Event {
            kind: kind as u8,
            side: match m["side"].as_str() {
                Some("bid") => Side::Bid as u8,
                Some("ask") => Side::Ask as u8,
                _ => Side::None as u8,
            },
            price: fixed::parse(m["price"].as_str().unwrap().as_bytes(), SCALE).unwrap(),
            qty: fixed::parse(m["qty"].as_str().unwrap().as_bytes(), SCALE).unwrap(),
            ..Event::default()
        };
        assert!(cb.book.apply(&ev));
        if kind == EventKind::SnapshotBegin {
            // The exchange resent the whole book: it is complete again.
            cb.bid_limit = None;
            cb.ask_limit = None;
        }
        let f = m["flags"].as_u64().unwrap() as u8;
        if let (Some(d), true) = (truncate, f & flags::LAST_IN_MESSAGE != 0) {
            cb.book.truncate(d);
        }
    }
    books
}

/// Compares a client's books with `tickring book --json`, level by level,
/// within the part the client knows exactly. Returns the levels compared.
fn compare(who: &str, client: &HashMap<String, ClientBook>, truth: &Value) -> usize {
    let mut compared = 0;
    for b in truth["books"].as_array().unwrap() {
        let sym = b["symbol"].as_str().unwrap();
        let cb = client
            .get(sym)
            .unwrap_or_else(|| panic!("{who}: no book for {sym}"));
        for (side, limit, mine) in [
            (
                "bids",
                cb.bid_limit,
                cb.book.bids.iter().collect::<Vec<_>>(),
            ),
            (
                "asks",
                cb.ask_limit,
                cb.book.asks.iter().collect::<Vec<_>>(),
            ),
        ] {
            let within = |p: i64| match limit {
                None => true,
                Some(l) if side == "bids" => p >= l,
                Some(l) => p <= l,
            };
            let want: Vec<(i64, i64)> = b[side]
                .as_array()
                .unwrap()
                .iter()
                .map(level)
                .filter(|l| within(l.0))
                .collect();
            let got: Vec<(i64, i64)> = mine.into_iter().filter(|l| within(l.0)).collect();
            assert_eq!(
                got, want,
                "{who}: {sym} {side} differ from tickring book (limit {limit:?})"
            );
            compared += want.len();
        }
    }
    compared
}

/// Reads a client's messages until the end marker.
fn read_until_marker(ws: &mut Ws) -> Vec<Value> {
    let mut msgs = Vec::new();
    loop {
        let v = recv_json(ws);
        if v["kind"] == "status" && v["seq"] == 424242 {
            return msgs;
        }
        if v["type"] == "error" {
            panic!("error from the gateway: {v}");
        }
        msgs.push(v);
    }
}

fn subscribe_all(addr: SocketAddr) -> (Ws, Value) {
    let mut ws = ws_connect(addr, &[]).unwrap();
    send_json(
        &mut ws,
        &json!({"op": "subscribe", "id": 1, "channels": ["book", "trades", "status"], "instruments": ["*"]}),
    );
    let ack = recv_control(&mut ws);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    (ws, ack)
}

struct Case {
    exchange: Exchange,
    file: &'static str,
    rest: Option<(&'static str, &'static [&'static str])>,
    truncate: Option<usize>,
    region_depth: u32,
    /// Minimum levels the late client must have compared (a real check).
    late_min_levels: usize,
}

fn run_case(case: Case) {
    let dir = TempDir::new("books");
    let mut col = Collector::new(
        dir.path(),
        "feed",
        case.exchange,
        1 << 20,
        case.region_depth,
    );
    if let Some((file, syms)) = case.rest {
        let lines = Collector::lines(&fixtures().join(file));
        for (s, l) in syms.iter().zip(lines) {
            col.rest.insert(s.to_string(), l);
        }
    }
    let gw = Gateway::start(
        dir.path(),
        &format!(
            "rings = [\"{}\"]\nclient_queue = 1048576",
            col.ring_path().display()
        ),
    );
    let lines = Collector::lines(&fixtures().join(case.file));
    let n_inst = col.preregister(&lines);
    gw.wait_instruments(n_inst);

    let (mut early, ack) = subscribe_all(gw.addr);
    assert_eq!(ack["matched"].as_array().unwrap().len(), n_inst, "{ack}");
    let early_reader = std::thread::spawn(move || read_until_marker(&mut early));

    let total = lines.len();
    let progress = Arc::new(AtomicUsize::new(0));
    let p2 = progress.clone();
    let publisher = std::thread::spawn(move || {
        for (i, l) in lines.iter().enumerate() {
            col.frame(l);
            p2.store(i + 1, Ordering::Release);
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        col
    });
    // Join halfway, while events keep flowing.
    while progress.load(Ordering::Acquire) < total / 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut late, ack) = subscribe_all(gw.addr);
    assert!(
        !ack["matched"].as_array().unwrap().is_empty(),
        "late client matched nothing: {ack}"
    );
    let late_reader = std::thread::spawn(move || read_until_marker(&mut late));
    let mut col = publisher.join().unwrap();
    col.marker();

    let early_msgs = early_reader.join().unwrap();
    let late_msgs = late_reader.join().unwrap();
    let extra: Vec<String> = match case.rest {
        Some((f, syms)) => vec![
            "--snapshot".into(),
            fixtures().join(f).display().to_string(),
            "--snapshot-symbols".into(),
            syms.join(","),
        ],
        None => vec![],
    };
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    let truth = tickring_book(case.exchange.name(), case.file, &extra);
    assert!(!truth["books"].as_array().unwrap().is_empty());

    let early_books = rebuild(&early_msgs, case.truncate);
    let n_early = compare("early client", &early_books, &truth);
    // The early client joined before any book existed: it knows every level.
    for (sym, cb) in &early_books {
        assert!(cb.bid_limit.is_none() && cb.ask_limit.is_none(), "{sym}");
    }
    let total_levels: usize = truth["books"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bids"].as_array().unwrap().len() + b["asks"].as_array().unwrap().len())
        .sum();
    assert_eq!(n_early, total_levels);

    let late_books = rebuild(&late_msgs, case.truncate);
    let n_late = compare("late client", &late_books, &truth);
    assert!(
        n_late >= case.late_min_levels,
        "late client compared only {n_late} levels"
    );
    // The late client really started from a non-empty snapshot.
    assert!(late_msgs
        .iter()
        .any(|m| m["type"] == "snapshot" && !m["bids"].as_array().unwrap().is_empty()));
    eprintln!(
        "{}: early client {} messages, {n_early} levels equal; late client {} messages, {n_late} levels equal",
        case.file,
        early_msgs.len(),
        late_msgs.len()
    );
}

#[test]
fn kraken_books_rebuilt_over_websocket_equal_tickring_book() {
    run_case(Case {
        exchange: Exchange::Kraken,
        file: "kraken/v2_session_book_d10.jsonl",
        rest: None,
        truncate: Some(10),
        region_depth: 25,
        late_min_levels: 20,
    });
}

#[test]
fn coinbase_level2_books_rebuilt_over_websocket_equal_tickring_book() {
    run_case(Case {
        exchange: Exchange::Coinbase,
        file: "coinbase/exchange_level2.jsonl",
        rest: None,
        truncate: None,
        region_depth: 200,
        late_min_levels: 1000,
    });
}

#[test]
fn binance_books_rebuilt_over_websocket_equal_tickring_book() {
    run_case(Case {
        exchange: Exchange::Binance,
        file: "binance/combined_depth_100ms.jsonl",
        rest: Some((
            "binance/depth_snapshot_rest.jsonl",
            &["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
        )),
        truncate: None,
        region_depth: 1000,
        late_min_levels: 100,
    });
}

#[test]
fn trades_arrive_as_the_json_of_tickring_tail() {
    let dir = TempDir::new("trades");
    let mut col = Collector::new(dir.path(), "cb", Exchange::Coinbase, 1 << 16, 10);
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]", col.ring_path().display()),
    );
    gw.wait_json("/ready", "ring open", |v| v["rings"][0]["open"] == true);
    let mut ws = ws_connect(gw.addr, &[]).unwrap();
    send_json(
        &mut ws,
        &json!({"op": "subscribe", "channels": ["trades", "status"], "instruments": ["coinbase:*"]}),
    );
    assert_eq!(recv_control(&mut ws)["type"], "subscribed");
    for l in Collector::lines(&fixtures().join("coinbase/exchange_matches.jsonl")) {
        col.frame(&l);
    }
    col.marker();
    let mut got = Vec::new();
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                let s = t.as_str().to_owned();
                if s.contains("\"seq\":424242") {
                    break;
                }
                if s.contains("\"kind\":\"trade\"") {
                    got.push(s);
                }
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    let n = col.published.len() + 1;
    drop(col);
    let out = Command::new(bin())
        .args(["tail", "--json", "--count", &n.to_string()])
        .arg(dir.path().join("cb.ring"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let want: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"trade\""))
        .map(str::to_owned)
        .collect();
    assert!(want.len() > 50, "only {} trades", want.len());
    assert_eq!(
        got, want,
        "the gateway's trade JSON differs from tickring tail --json"
    );
}
