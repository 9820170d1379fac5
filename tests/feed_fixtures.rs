//! Every fixture line through its adapter: zero errors, and the events
//! agree with a naive oracle that extracts the same fields with
//! `serde_json::Value` (and `RawValue` for Kraken's bare numbers).

mod feed_support;

use feed_support::{fixtures, lines};

use serde_json::Value;
use tickring::event::{Event, EventKind, Exchange, Side};
use tickring::feed::{Feed, FeedConfig, FrameKind, VecSink};
use tickring::fixed;

/// Which adapter reads a fixture file.
fn exchange_of(file: &str) -> Exchange {
    if file.starts_with("kraken/") {
        Exchange::Kraken
    } else if file.starts_with("binance/") {
        Exchange::Binance
    } else if file.starts_with("coinbase/advanced") {
        Exchange::CoinbaseAdvanced
    } else {
        Exchange::Coinbase
    }
}

#[test]
fn every_fixture_file_parses_with_zero_errors() {
    let mut files = Vec::new();
    for dir in ["kraken", "coinbase", "binance"] {
        for e in std::fs::read_dir(fixtures().join(dir)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".jsonl") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    assert_eq!(files.len(), 20, "{files:?}");
    for file in &files {
        let ex = exchange_of(file);
        let mut feed = Feed::new(ex, FeedConfig::discovering());
        let mut sink = VecSink::default();
        let mut kinds = Vec::new();
        for (i, l) in lines(file).iter().enumerate() {
            let r = if file.ends_with("depth_snapshot_rest.jsonl") {
                // A REST answer names no symbol: give each its own instrument.
                let Feed::Binance(b) = &mut feed else {
                    unreachable!()
                };
                b.on_rest_snapshot(0, l.as_bytes(), 0, &mut sink)
            } else {
                feed.on_frame(l.as_bytes(), 0, &mut sink)
            };
            match r {
                Ok(info) => kinds.push(info.kind),
                Err(e) => panic!("{file}:{}: {e}", i + 1),
            }
        }
        assert_eq!(feed.stats().errors, 0, "{file}");
        // Only our own outgoing requests are messages no adapter reads.
        let unknown = kinds.iter().filter(|k| **k == FrameKind::Unknown).count();
        if file.contains("subscribe_requests") {
            assert_eq!(unknown, kinds.len(), "{file}");
        } else {
            assert_eq!(unknown, 0, "{file}: {kinds:?}");
        }
    }
}

/// What the oracle expects for one level or trade.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Expect {
    kind: EventKind,
    side: Side,
    price: i64,
    qty: i64,
    seq: u64,
}

fn px(v: &Value) -> i64 {
    fixed::parse(v.as_str().expect("decimal string").as_bytes(), 8).unwrap()
}

fn level(side: Side, price: i64, qty: i64) -> Expect {
    Expect {
        kind: if qty == 0 {
            EventKind::BookDelete
        } else {
            EventKind::BookSet
        },
        side,
        price,
        qty,
        seq: 0,
    }
}

/// The adapter's level/trade/BBO events as `Expect`s (markers and status left out).
fn got(events: &[Event], keep_seq: bool) -> Vec<Expect> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.kind(),
                Some(
                    EventKind::BookSet | EventKind::BookDelete | EventKind::Trade | EventKind::Bbo
                )
            )
        })
        .map(|e| Expect {
            kind: e.kind().unwrap(),
            side: e.side().unwrap(),
            price: e.price,
            qty: e.qty,
            seq: if keep_seq || e.kind() == Some(EventKind::Trade) {
                e.seq
            } else {
                0
            },
        })
        .collect()
}

/// Runs `file` through a fresh adapter and compares each line's events
/// with `oracle(line)`; returns how many events were compared.
fn check(file: &str, keep_seq: bool, oracle: impl Fn(&str) -> Vec<Expect>) -> usize {
    let mut feed = Feed::new(exchange_of(file), FeedConfig::discovering());
    let mut n = 0;
    for (i, l) in lines(file).iter().enumerate() {
        let mut sink = VecSink::default();
        feed.on_frame(l.as_bytes(), 0, &mut sink)
            .unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
        let mut ours = got(&sink.events, keep_seq);
        let mut theirs = oracle(l);
        // The oracle's maps do not keep key order (bids vs asks): compare sorted.
        ours.sort_by_key(|e| (e.side as u8, e.price, e.qty, e.seq, e.kind as u8));
        theirs.sort_by_key(|e| (e.side as u8, e.price, e.qty, e.seq, e.kind as u8));
        assert_eq!(ours, theirs, "{file}:{}", i + 1);
        n += ours.len();
    }
    n
}

#[test]
fn kraken_book_and_trade_match_the_oracle() {
    #[derive(serde::Deserialize)]
    struct Msg {
        data: Vec<Data>,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        #[serde(default)]
        bids: Vec<Lvl>,
        #[serde(default)]
        asks: Vec<Lvl>,
        side: Option<String>,
        price: Option<Box<serde_json::value::RawValue>>,
        qty: Option<Box<serde_json::value::RawValue>>,
        trade_id: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Lvl {
        price: Box<serde_json::value::RawValue>,
        qty: Box<serde_json::value::RawValue>,
    }
    let raw = |r: &serde_json::value::RawValue| fixed::parse(r.get().as_bytes(), 8).unwrap();
    let oracle = |l: &str| -> Vec<Expect> {
        let m: Msg = serde_json::from_str(l).unwrap();
        let mut out = Vec::new();
        for d in m.data {
            for (side, lv) in [(Side::Bid, &d.bids), (Side::Ask, &d.asks)] {
                out.extend(lv.iter().map(|x| level(side, raw(&x.price), raw(&x.qty))));
            }
            if let (Some(s), Some(p), Some(q)) = (&d.side, &d.price, &d.qty) {
                out.push(Expect {
                    kind: EventKind::Trade,
                    side: if s == "buy" { Side::Bid } else { Side::Ask },
                    price: raw(p),
                    qty: raw(q),
                    seq: d.trade_id.unwrap(),
                });
            }
        }
        out
    };
    assert_eq!(check("kraken/v2_book.jsonl", false, oracle), 249);
    assert_eq!(check("kraken/v2_trade.jsonl", false, oracle), 2);
}

#[test]
fn binance_streams_match_the_oracle() {
    let oracle = |l: &str| -> Vec<Expect> {
        let v: Value = serde_json::from_str(l).unwrap();
        let d = &v["data"];
        let mut out = Vec::new();
        match d["e"].as_str() {
            Some("trade") | Some("aggTrade") => out.push(Expect {
                kind: EventKind::Trade,
                // m: the buyer was the maker, so the taker sold.
                side: if d["m"].as_bool().unwrap() {
                    Side::Ask
                } else {
                    Side::Bid
                },
                price: px(&d["p"]),
                qty: px(&d["q"]),
                seq: d[if d["e"] == "trade" { "t" } else { "a" }]
                    .as_u64()
                    .unwrap(),
            }),
            Some("depthUpdate") => {
                let u = d["u"].as_u64().unwrap();
                for (side, key) in [(Side::Bid, "b"), (Side::Ask, "a")] {
                    for p in d[key].as_array().unwrap() {
                        let mut e = level(side, px(&p[0]), px(&p[1]));
                        e.seq = u;
                        out.push(e);
                    }
                }
            }
            None => {
                for (side, p, q) in [(Side::Bid, "b", "B"), (Side::Ask, "a", "A")] {
                    out.push(Expect {
                        kind: EventKind::Bbo,
                        side,
                        price: px(&d[p]),
                        qty: px(&d[q]),
                        seq: d["u"].as_u64().unwrap(),
                    });
                }
            }
            Some(other) => panic!("unexpected {other}"),
        }
        out
    };
    let mut n = 0;
    for f in [
        "binance/trade.jsonl",
        "binance/combined_aggTrade.jsonl",
        "binance/combined_depth_100ms.jsonl",
        "binance/combined_bookTicker.jsonl",
        "binance/testnet_combined_trade_bookTicker_depth.jsonl",
    ] {
        n += check(f, true, oracle);
    }
    assert_eq!(n, 629);
}

#[test]
fn binance_rest_snapshots_match_the_oracle() {
    for (i, l) in lines("binance/depth_snapshot_rest.jsonl")
        .iter()
        .enumerate()
    {
        let v: Value = serde_json::from_str(l).unwrap();
        let mut feed = tickring::feed::binance::BinanceAdapter::new(FeedConfig::new(vec![
            tickring::instrument::Instrument::new(Exchange::Binance, "X", 8, 8).unwrap(),
        ]));
        let mut sink = VecSink::default();
        feed.on_rest_snapshot(0, l.as_bytes(), 0, &mut sink)
            .unwrap();
        assert_eq!(sink.books.len(), 1);
        assert_eq!(sink.books[0].last_id, v["lastUpdateId"].as_u64().unwrap());
        assert!(sink.books[0].snapshot);
        let mut want = Vec::new();
        for (side, key) in [(Side::Bid, "bids"), (Side::Ask, "asks")] {
            for p in v[key].as_array().unwrap() {
                want.push(level(side, px(&p[0]), px(&p[1])));
            }
        }
        let ours: Vec<Expect> = got(&sink.events, false);
        assert_eq!(ours, want, "line {}", i + 1);
        assert_eq!(
            sink.events.first().unwrap().kind(),
            Some(EventKind::SnapshotBegin)
        );
        assert_eq!(
            sink.events.last().unwrap().kind(),
            Some(EventKind::SnapshotEnd)
        );
    }
}

#[test]
fn coinbase_exchange_matches_the_oracle() {
    let oracle = |l: &str| -> Vec<Expect> {
        let v: Value = serde_json::from_str(l).unwrap();
        let mut out = Vec::new();
        match v["type"].as_str().unwrap() {
            "snapshot" => {
                for (side, key) in [(Side::Bid, "bids"), (Side::Ask, "asks")] {
                    for p in v[key].as_array().unwrap() {
                        out.push(level(side, px(&p[0]), px(&p[1])));
                    }
                }
            }
            "l2update" => {
                for c in v["changes"].as_array().unwrap() {
                    let side = if c[0] == "buy" { Side::Bid } else { Side::Ask };
                    out.push(level(side, px(&c[1]), px(&c[2])));
                }
            }
            "match" | "last_match" => out.push(Expect {
                kind: EventKind::Trade,
                // `side` is the maker's: the taker is the other side.
                side: if v["side"] == "buy" {
                    Side::Ask
                } else {
                    Side::Bid
                },
                price: px(&v["price"]),
                qty: px(&v["size"]),
                seq: v["trade_id"].as_u64().unwrap(),
            }),
            "ticker" => {
                for (side, key) in [(Side::Bid, "best_bid"), (Side::Ask, "best_ask")] {
                    out.push(Expect {
                        kind: EventKind::Bbo,
                        side,
                        price: px(&v[key]),
                        qty: 0,
                        seq: v["sequence"].as_u64().unwrap(),
                    });
                }
            }
            _ => {}
        }
        out
    };
    assert!(check("coinbase/exchange_level2.jsonl", false, oracle) > 9719);
    assert_eq!(check("coinbase/exchange_matches.jsonl", false, oracle), 107);
    assert_eq!(check("coinbase/exchange_ticker.jsonl", true, oracle), 214);
}

#[test]
fn coinbase_advanced_matches_the_oracle() {
    let oracle = |l: &str| -> Vec<Expect> {
        let v: Value = serde_json::from_str(l).unwrap();
        let seq = v["sequence_num"].as_u64().unwrap();
        let mut out = Vec::new();
        for ev in v["events"].as_array().unwrap() {
            for u in ev["updates"].as_array().into_iter().flatten() {
                let side = if u["side"] == "bid" {
                    Side::Bid
                } else {
                    Side::Ask
                };
                let mut e = level(side, px(&u["price_level"]), px(&u["new_quantity"]));
                e.seq = seq;
                out.push(e);
            }
            for t in ev["trades"].as_array().into_iter().flatten() {
                out.push(Expect {
                    kind: EventKind::Trade,
                    side: if t["side"] == "BUY" {
                        Side::Ask
                    } else {
                        Side::Bid
                    },
                    price: px(&t["price"]),
                    qty: px(&t["size"]),
                    seq: t["trade_id"].as_str().unwrap().parse().unwrap(),
                });
            }
        }
        out
    };
    assert_eq!(check("coinbase/advanced_l2_data.jsonl", true, oracle), 133);
    assert_eq!(
        check("coinbase/advanced_market_trades.jsonl", true, oracle),
        1
    );
}
