//! Coinbase books: the Exchange level2 session never crosses; gaps found
//! from trade ids and `sequence_num` resync the books.

mod feed_support;

use feed_support::lines;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tickring::book::{BuilderConfig, Pipeline, SyncState};
use tickring::event::{Event, Exchange, StatusCode};
use tickring::feed::{Action, FeedConfig, FrameKind, VecSink};
use tickring::fixed;

fn pipeline(ex: Exchange) -> Pipeline {
    Pipeline::new(ex, FeedConfig::discovering(), BuilderConfig::default())
}

fn run(ex: Exchange, ls: &[String]) -> (Pipeline, VecSink) {
    let mut p = pipeline(ex);
    let mut sink = VecSink::default();
    for (i, l) in ls.iter().enumerate() {
        p.on_frame(l.as_bytes(), 0, &mut sink)
            .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
    }
    (p, sink)
}

fn with_status(events: &[Event], code: StatusCode) -> Vec<Event> {
    events
        .iter()
        .filter(|e| e.status_code() == Some(code))
        .copied()
        .collect()
}

fn sym(p: &Pipeline, id: u16) -> &str {
    &p.feed.instruments()[id as usize].symbol
}

#[test]
fn level2_session_never_crosses_a_book_and_equals_a_naive_replay() {
    let ls = lines("coinbase/exchange_level2.jsonl");
    let mut p = pipeline(Exchange::Coinbase);
    let mut sink = VecSink::default();
    for l in &ls {
        p.on_frame(l.as_bytes(), 0, &mut sink).unwrap();
        for st in p.books.books() {
            assert_eq!(st.book.crossed(), None, "after {l}");
        }
    }
    let s = p.books.stats;
    assert_eq!(
        (s.snapshots, s.updates, s.crossed, s.gaps),
        (10, 9719, 0, 0)
    );
    assert!(with_status(&sink.events, StatusCode::BookCrossed).is_empty());
    assert_eq!(with_status(&sink.events, StatusCode::BookValid).len(), 10);

    // The naive replay: one map per side and product.
    let px = |v: &Value| fixed::parse(v.as_str().unwrap().as_bytes(), 8).unwrap();
    let mut books: HashMap<String, [BTreeMap<i64, i64>; 2]> = HashMap::new();
    for l in &ls {
        let v: Value = serde_json::from_str(l).unwrap();
        let b = books
            .entry(v["product_id"].as_str().unwrap().into())
            .or_default();
        let mut set = |side: usize, p: i64, q: i64| {
            if q == 0 {
                b[side].remove(&p);
            } else {
                b[side].insert(p, q);
            }
        };
        if v["type"] == "snapshot" {
            for (side, key) in [(0, "bids"), (1, "asks")] {
                for x in v[key].as_array().unwrap() {
                    set(side, px(&x[0]), px(&x[1]));
                }
            }
        } else {
            for c in v["changes"].as_array().unwrap() {
                set(if c[0] == "buy" { 0 } else { 1 }, px(&c[1]), px(&c[2]));
            }
        }
    }
    assert_eq!(books.len(), 10);
    for (i, st) in p.books.books().iter().enumerate() {
        let [b, a] = &books[sym(&p, i as u16)];
        assert_eq!(st.state, SyncState::Valid);
        assert_eq!(
            st.book.bids.iter().collect::<Vec<_>>(),
            b.iter().rev().map(|(&p, &q)| (p, q)).collect::<Vec<_>>()
        );
        assert_eq!(
            st.book.asks.iter().collect::<Vec<_>>(),
            a.iter().map(|(&p, &q)| (p, q)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_crossing_update_is_reported_once() {
    let mut p = pipeline(Exchange::Coinbase);
    let mut sink = VecSink::default();
    for m in [
        r#"{"type":"snapshot","product_id":"X-Y","bids":[["10.0","1"]],"asks":[["11.0","1"]]}"#,
        r#"{"type":"l2update","product_id":"X-Y","changes":[["buy","11.5","2"]],"time":"2021-04-17T16:43:37.075687Z"}"#,
        r#"{"type":"l2update","product_id":"X-Y","changes":[["buy","11.6","2"]],"time":"2021-04-17T16:43:37.075687Z"}"#,
    ] {
        p.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
    }
    let crossed = with_status(&sink.events, StatusCode::BookCrossed);
    assert_eq!(crossed.len(), 1);
    assert_eq!(crossed[0].price, 1_150_000_000, "best bid");
    assert_eq!(crossed[0].qty, 1_100_000_000, "best ask");
    assert_eq!(p.books.stats.crossed, 1);
}

#[test]
fn exchange_matches_have_no_gap_and_taker_sides() {
    let (p, sink) = run(
        Exchange::Coinbase,
        &lines("coinbase/exchange_matches.jsonl"),
    );
    assert_eq!(p.books.stats.gaps, 0);
    assert_eq!(p.feed.stats().stale, 0);
    let trades: Vec<&Event> = sink.events.iter().filter(|e| e.kind == 1).collect();
    assert_eq!(trades.len(), 107);
    // First line: maker side "sell" -> the taker bought.
    assert_eq!(trades[0].side, tickring::event::Side::Bid as u8);
    assert_eq!(trades[0].exch_ts, 1_618_677_810_244_075_000);
}

#[test]
fn a_dropped_match_is_a_gap_that_resyncs_the_product() {
    let mut ls = lines("coinbase/exchange_matches.jsonl");
    let idx = ls
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"SKL-USD\"") && l.contains("\"type\":\"match\""))
        .nth(5)
        .unwrap()
        .0;
    let dropped: Value = serde_json::from_str(&ls.remove(idx)).unwrap();
    let (p, sink) = run(Exchange::Coinbase, &ls);
    let gaps = with_status(&sink.events, StatusCode::Gap);
    assert_eq!(gaps.len(), 1);
    assert_eq!(sym(&p, gaps[0].instrument), "SKL-USD");
    assert_eq!(gaps[0].seq, dropped["trade_id"].as_u64().unwrap());
    assert_eq!(gaps[0].qty, 1);
    assert_eq!(
        with_status(&sink.events, StatusCode::ResyncStarted).len(),
        1
    );
    assert_eq!(
        sink.actions,
        [
            Action::Send(
                r#"{"type":"unsubscribe","product_ids":["SKL-USD"],"channels":["level2_batch"]}"#
                    .into()
            ),
            Action::Send(
                r#"{"type":"subscribe","product_ids":["SKL-USD"],"channels":["level2_batch"]}"#
                    .into()
            ),
        ]
    );
}

#[test]
fn heartbeat_ahead_of_the_last_match_is_a_gap_and_old_sequences_are_stale() {
    let mut p = pipeline(Exchange::Coinbase);
    let mut sink = VecSink::default();
    let m = r#"{"type":"match","trade_id":10,"side":"buy","size":"1","price":"2","product_id":"BTC-USD","sequence":50,"time":"2021-04-17T16:43:37.067586Z"}"#;
    p.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
    let hb = r#"{"type":"heartbeat","last_trade_id":13,"product_id":"BTC-USD","sequence":60,"time":"2021-04-17T16:43:38.067586Z"}"#;
    assert_eq!(
        p.on_frame(hb.as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::Heartbeat
    );
    let gaps = with_status(&sink.events, StatusCode::Gap);
    assert_eq!((gaps.len(), gaps[0].seq, gaps[0].qty), (1, 11, 3));
    // The same match again (sequence 50 < 60): stale, skipped, counted.
    assert_eq!(
        p.on_frame(m.as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::Stale
    );
    assert_eq!(p.feed.stats().stale, 1);
}

#[test]
fn advanced_fixture_gaps_are_reported_for_every_book_on_the_connection() {
    let (p, sink) = run(
        Exchange::CoinbaseAdvanced,
        &lines("coinbase/advanced_l2_data.jsonl"),
    );
    let gaps: Vec<(&str, u64, i64)> = with_status(&sink.events, StatusCode::Gap)
        .iter()
        .map(|e| (sym(&p, e.instrument), e.seq, e.qty))
        .collect();
    // sequence_num 1-4, then 12 (5..=11 missing: only BTC-USD had a book),
    // then 21 -> 23 (22 is the market_trades message kept in another file).
    assert_eq!(
        gaps,
        [("BTC-USD", 5, 7), ("BTC-USD", 22, 1), ("ETH-USD", 22, 1)]
    );
    assert_eq!(p.books.stats.gaps, 3);
    // One resync per book: BTC-USD's is still pending at the second gap.
    assert_eq!(p.books.stats.resyncs, 2);
    assert_eq!(
        with_status(&sink.events, StatusCode::ResyncStarted).len(),
        2
    );
    assert!(sink.actions.contains(&Action::Send(
        r#"{"type":"subscribe","product_ids":["ETH-USD"],"channel":"level2"}"#.into()
    )));
}

#[test]
fn a_skipped_sequence_num_is_a_gap_for_every_book() {
    let ls = lines("coinbase/advanced_l2_data.jsonl");
    // sequence_num 12..=21 are contiguous; both books exist from 13 on.
    let mut sub: Vec<String> = ls[4..14].to_vec();
    let removed: Value = serde_json::from_str(&sub.remove(5)).unwrap();
    assert_eq!(removed["sequence_num"], 17);
    let (p, sink) = run(Exchange::CoinbaseAdvanced, &sub);
    let mut gaps: Vec<(&str, u64, i64)> = with_status(&sink.events, StatusCode::Gap)
        .iter()
        .map(|e| (sym(&p, e.instrument), e.seq, e.qty))
        .collect();
    gaps.sort();
    assert_eq!(gaps, [("BTC-USD", 17, 1), ("ETH-USD", 17, 1)]);
    assert_eq!(p.feed.stats().gaps, 1);
    // The gap statuses come before the events of the message that revealed it.
    let first_gap = sink
        .events
        .iter()
        .position(|e| e.status_code() == Some(StatusCode::Gap))
        .unwrap();
    assert!(sink.events[first_gap + 2..].iter().any(|e| e.seq == 18));
    assert!(sink.events[..first_gap].iter().all(|e| e.seq != 18));
}

#[test]
fn advanced_stale_sequence_is_skipped() {
    let ls = lines("coinbase/advanced_l2_data.jsonl");
    let mut p = pipeline(Exchange::CoinbaseAdvanced);
    let mut sink = VecSink::default();
    p.on_frame(ls[1].as_bytes(), 0, &mut sink).unwrap();
    let n = sink.events.len();
    assert_eq!(
        p.on_frame(ls[0].as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::Stale
    );
    assert_eq!(sink.events.len(), n);
}

#[test]
fn advanced_snapshot_makes_the_book_valid() {
    let snap = r#"{"channel":"l2_data","client_id":"","timestamp":"2026-09-30T02:39:53.690696234Z","sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-09-30T02:39:53.495541Z","price_level":"83000.5","new_quantity":"1.5"},{"side":"offer","event_time":"2026-09-30T02:39:53.495541Z","price_level":"83001","new_quantity":"0.25"}]}]}"#;
    let mut p = pipeline(Exchange::CoinbaseAdvanced);
    let mut sink = VecSink::default();
    assert_eq!(
        p.on_frame(snap.as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::BookSnapshot
    );
    let st = p.books.get(0).unwrap();
    assert_eq!(st.state, SyncState::Valid);
    assert_eq!(st.book.best_bid(), Some((8_300_050_000_000, 150_000_000)));
    assert_eq!(st.book.best_ask(), Some((8_300_100_000_000, 25_000_000)));
    assert_eq!(with_status(&sink.events, StatusCode::BookValid).len(), 1);
}
