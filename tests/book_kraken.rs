//! Kraken v2 books: CRC-32 after every message, truncation to the
//! subscribed depth, checksum failure -> resync.

mod feed_support;

use feed_support::lines;
use std::collections::BTreeMap;

use tickring::book::{BuilderConfig, Pipeline, SyncState};
use tickring::event::{Event, Exchange, StatusCode};
use tickring::feed::{Action, FeedConfig, VecSink};
use tickring::fixed;

/// `(price, qty)` levels, best first.
type Levels = Vec<(i64, i64)>;

fn run(lines: &[String], cfg: BuilderConfig) -> (Pipeline, VecSink) {
    let mut p = Pipeline::new(Exchange::Kraken, FeedConfig::discovering(), cfg);
    let mut sink = VecSink::default();
    for (i, l) in lines.iter().enumerate() {
        p.on_frame(l.as_bytes(), 0, &mut sink)
            .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
    }
    (p, sink)
}

fn statuses(events: &[Event]) -> Vec<(StatusCode, u16)> {
    events
        .iter()
        .filter_map(|e| e.status_code().map(|c| (c, e.instrument)))
        .filter(|(c, _)| *c != StatusCode::Subscribed)
        .collect()
}

#[test]
fn all_118_checksums_verify_with_truncation() {
    let (p, sink) = run(&lines("kraken/v2_book.jsonl"), BuilderConfig::default());
    let s = p.books.stats;
    assert_eq!((s.checksum_ok, s.checksum_failed), (118, 0));
    assert_eq!((s.snapshots, s.updates, s.resyncs), (1, 117, 0));
    assert_eq!(statuses(&sink.events), [(StatusCode::BookValid, 0)]);
    assert_eq!(p.books.get(0).unwrap().state, SyncState::Valid);
    assert!(sink.actions.is_empty());

    // The whole session (status, ack, heartbeats interleaved) gives the same.
    let (p2, _) = run(
        &lines("kraken/v2_session_book_d10.jsonl"),
        BuilderConfig::default(),
    );
    assert_eq!(p2.books.stats.checksum_ok, 118);
    assert_eq!(p2.books.get(0).unwrap().book, p.books.get(0).unwrap().book);
    let Some(tickring::feed::Feed::Kraken(k)) = Some(&p2.feed) else {
        panic!()
    };
    assert_eq!(k.connection_id, Some(769_405_522_530_892_351));
}

#[test]
fn checksums_that_need_truncation_fail_without_it() {
    let cfg = BuilderConfig {
        truncate: false,
        ..BuilderConfig::default()
    };
    let (p, _) = run(&lines("kraken/v2_book.jsonl"), cfg);
    // The first update that needs truncation fails; the book then waits for
    // its resync snapshot (never answered in an offline replay) and the
    // remaining checksums are counted as skipped, not failed again.
    assert_eq!(p.books.stats.checksum_failed, 1);
    assert_eq!(p.books.stats.resyncs, 1);
    assert_eq!(p.books.get(0).unwrap().state, SyncState::Invalid);
    let s = p.books.stats;
    assert_eq!(s.checksum_ok + s.checksum_failed + s.checksum_skipped, 118);
    assert!(s.checksum_skipped > 0);
}

#[derive(serde::Deserialize)]
struct Msg {
    channel: String,
    #[serde(rename = "type", default)]
    typ: String,
    #[serde(default)]
    data: Vec<Data>,
}

#[derive(serde::Deserialize)]
struct Data {
    bids: Vec<Lvl>,
    asks: Vec<Lvl>,
}

/// Bare numbers kept as their text, never through f64.
#[derive(serde::Deserialize)]
struct Lvl {
    price: Box<serde_json::value::RawValue>,
    qty: Box<serde_json::value::RawValue>,
}

/// The book the messages imply: a map per side, truncated to 10 after
/// every message.
fn naive_book(lines: &[String]) -> (Levels, Levels) {
    let mut bids: BTreeMap<i64, i64> = BTreeMap::new();
    let mut asks: BTreeMap<i64, i64> = BTreeMap::new();
    for l in lines {
        let m: Msg = serde_json::from_str(l).unwrap();
        if m.channel != "book" {
            continue;
        }
        if m.typ == "snapshot" {
            bids.clear();
            asks.clear();
        }
        let d = &m.data[0];
        for (lvls, side) in [(&d.bids, &mut bids), (&d.asks, &mut asks)] {
            for lv in lvls {
                let p = fixed::parse(lv.price.get().as_bytes(), 8).unwrap();
                let q = fixed::parse(lv.qty.get().as_bytes(), 8).unwrap();
                if q == 0 {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
        while bids.len() > 10 {
            bids.pop_first();
        }
        while asks.len() > 10 {
            asks.pop_last();
        }
    }
    (bids.into_iter().rev().collect(), asks.into_iter().collect())
}

#[test]
fn final_book_equals_a_naive_replay() {
    let ls = lines("kraken/v2_book.jsonl");
    let (p, _) = run(&ls, BuilderConfig::default());
    let st = p.books.get(0).unwrap();
    let (bids, asks) = naive_book(&ls);
    assert_eq!(st.book.bids.iter().collect::<Vec<_>>(), bids);
    assert_eq!(st.book.asks.iter().collect::<Vec<_>>(), asks);
    assert_eq!(bids.len(), 10);
    assert_eq!(asks.len(), 10);
}

#[test]
fn altered_level_fails_the_checksum_and_resyncs() {
    let mut ls = lines("kraken/v2_book.jsonl");
    // Line 2 sets 62808.0 to 0.79607759; make it 0.79607758.
    assert!(ls[1].contains("\"qty\":0.79607759"));
    ls[1] = ls[1].replace("\"qty\":0.79607759", "\"qty\":0.79607758");
    let (mut p, mut sink) = run(&ls[..2], BuilderConfig::default());
    assert_eq!(p.books.stats.checksum_failed, 1);
    assert_eq!(p.books.stats.resyncs, 1);
    assert_eq!(
        statuses(&sink.events),
        [
            (StatusCode::BookValid, 0),
            (StatusCode::ChecksumFailed, 0),
            (StatusCode::ResyncStarted, 0)
        ]
    );
    let failed = sink
        .events
        .iter()
        .find(|e| e.status_code() == Some(StatusCode::ChecksumFailed))
        .unwrap();
    assert_eq!(failed.seq, 265_834_348, "the expected checksum");
    assert_ne!(failed.qty, 265_834_348, "the computed one");
    assert_eq!(p.books.get(0).unwrap().state, SyncState::Invalid);
    assert_eq!(
        sink.actions,
        [
            Action::Send(r#"{"method":"unsubscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10}}"#.into()),
            Action::Send(r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10,"snapshot":true}}"#.into()),
        ]
    );
    // The resubscription answers with a snapshot: the book recovers.
    sink.events.clear();
    p.on_frame(ls[0].as_bytes(), 0, &mut sink).unwrap();
    assert_eq!(statuses(&sink.events), [(StatusCode::BookValid, 0)]);
    assert_eq!(p.books.get(0).unwrap().state, SyncState::Valid);
    // Regression: the altered session used to report a ChecksumFailed for
    // every later update of the already-broken book. Now one corruption is
    // one failure; the updates until the resync snapshot are counted as
    // skipped, and only one resync is requested.
    let (p, more) = run(&ls, BuilderConfig::default());
    assert_eq!(p.books.stats.checksum_failed, 1);
    assert_eq!(p.books.stats.checksum_ok, 1);
    assert_eq!(p.books.stats.checksum_skipped, 118 - 2);
    assert_eq!(
        more.events
            .iter()
            .filter(|e| e.status_code() == Some(StatusCode::ChecksumFailed))
            .count(),
        1
    );
    assert_eq!(p.books.stats.resyncs, 1);
    assert_eq!(more.actions.len(), 2, "{:?}", more.actions);
}

#[test]
fn subscribe_request_matches_the_one_sent_in_the_capture() {
    let mut cfg = FeedConfig::new(vec![tickring::instrument::Instrument::new(
        Exchange::Kraken,
        "BTC/USD",
        1,
        8,
    )
    .unwrap()]);
    cfg.book_depth = 10;
    let feed = tickring::feed::Feed::new(Exchange::Kraken, cfg);
    let msgs = feed.subscribe_messages(&[tickring::feed::Channel::Book]);
    let sent: serde_json::Value =
        serde_json::from_str(&lines("kraken/v2_subscribe_requests.jsonl")[0]).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&msgs[0]).unwrap();
    assert_eq!(ours, sent);
}

#[test]
fn subscribe_rejection_is_a_status_event() {
    let mut p = Pipeline::new(
        Exchange::Kraken,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    let info = p
        .on_frame(
            br#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#,
            0,
            &mut sink,
        )
        .unwrap();
    assert_eq!(info.kind, tickring::feed::FrameKind::Rejected);
    assert_eq!(sink.events.len(), 1);
    assert_eq!(
        sink.events[0].status_code(),
        Some(StatusCode::SubscribeFailed)
    );
    assert_eq!(
        p.feed.instruments()[sink.events[0].instrument as usize].symbol,
        "XYZ/USD"
    );
}

#[test]
fn ack_depth_sets_the_truncation_depth() {
    let ack = br#"{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2026-08-16T23:37:04.334090Z","time_out":"2026-08-16T23:37:04.334135Z"}"#;
    let mut p = Pipeline::new(
        Exchange::Kraken,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    p.on_frame(ack, 0, &mut sink).unwrap();
    assert_eq!(sink.events[0].status_code(), Some(StatusCode::Subscribed));
    p.on_frame(lines("kraken/v2_book.jsonl")[0].as_bytes(), 0, &mut sink)
        .unwrap();
    assert_eq!(sink.books.last().unwrap().depth, 25);
}
