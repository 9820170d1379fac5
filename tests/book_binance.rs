//! Binance books: diffs held until the REST snapshot, update ids chained,
//! a hole -> gap + resync (a new REST snapshot).

mod feed_support;

use feed_support::lines;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tickring::book::{BuilderConfig, Pipeline, SyncState};
use tickring::event::{Exchange, StatusCode};
use tickring::feed::{Action, FeedConfig, VecSink};
use tickring::fixed;

/// `(price, qty)` levels, best first.
type Levels = Vec<(i64, i64)>;

const SYMBOLS: [&str; 4] = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"];

fn snapshots() -> HashMap<&'static str, String> {
    SYMBOLS
        .into_iter()
        .zip(lines("binance/depth_snapshot_rest.jsonl"))
        .collect()
}

/// Runs the diffs, answering each snapshot request from the REST captures
/// (each served once, as `tickring book` does).
fn run(diffs: &[String]) -> (Pipeline, VecSink, Vec<String>) {
    let mut snaps = snapshots();
    let mut p = Pipeline::new(
        Exchange::Binance,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    let mut fetched = Vec::new();
    for (i, l) in diffs.iter().enumerate() {
        p.on_frame(l.as_bytes(), 0, &mut sink)
            .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        while let Some(a) = sink.actions.pop() {
            let Action::FetchSnapshot { instrument, path } = a else {
                panic!("unexpected {a:?}")
            };
            let sym = p.feed.instruments()[instrument as usize].symbol.clone();
            assert_eq!(path, format!("/api/v3/depth?symbol={sym}&limit=1000"));
            fetched.push(sym.clone());
            if let Some(body) = snaps.remove(sym.as_str()) {
                p.on_rest_snapshot(instrument, body.as_bytes(), 0, &mut sink)
                    .unwrap();
            }
        }
    }
    (p, sink, fetched)
}

fn id(p: &Pipeline, sym: &str) -> u16 {
    p.feed
        .instruments()
        .iter()
        .position(|i| i.symbol == sym)
        .unwrap() as u16
}

/// Snapshot + the diffs after it, applied naively to maps.
fn naive(sym: &str) -> (Levels, Levels) {
    let snap: Value = serde_json::from_str(&snapshots()[sym]).unwrap();
    let last = snap["lastUpdateId"].as_u64().unwrap();
    let mut sides = [BTreeMap::new(), BTreeMap::new()];
    let px = |v: &Value| fixed::parse(v.as_str().unwrap().as_bytes(), 8).unwrap();
    let apply = |sides: &mut [BTreeMap<i64, i64>; 2], key: usize, lv: &Value| {
        for x in lv.as_array().unwrap() {
            let (p, q) = (px(&x[0]), px(&x[1]));
            if q == 0 {
                sides[key].remove(&p);
            } else {
                sides[key].insert(p, q);
            }
        }
    };
    apply(&mut sides, 0, &snap["bids"]);
    apply(&mut sides, 1, &snap["asks"]);
    for l in lines("binance/combined_depth_100ms.jsonl") {
        let v: Value = serde_json::from_str(&l).unwrap();
        let d = &v["data"];
        if d["s"] != sym || d["u"].as_u64().unwrap() <= last {
            continue;
        }
        apply(&mut sides, 0, &d["b"]);
        apply(&mut sides, 1, &d["a"]);
    }
    let [b, a] = sides;
    (b.into_iter().rev().collect(), a.into_iter().collect())
}

#[test]
fn four_books_sync_with_zero_gaps() {
    let (p, sink, fetched) = run(&lines("binance/combined_depth_100ms.jsonl"));
    let s = p.books.stats;
    assert_eq!((s.gaps, s.resyncs, s.snapshots), (0, 0, 4));
    assert_eq!(
        fetched.len(),
        4,
        "one snapshot request per book: {fetched:?}"
    );
    assert!(!sink
        .events
        .iter()
        .any(|e| e.status_code() == Some(StatusCode::Gap)));
    for sym in SYMBOLS {
        let st = p.books.get(id(&p, sym)).unwrap();
        assert_eq!(st.state, SyncState::Valid, "{sym}");
        let (bids, asks) = naive(sym);
        assert_eq!(st.book.bids.iter().collect::<Vec<_>>(), bids, "{sym}");
        assert_eq!(st.book.asks.iter().collect::<Vec<_>>(), asks, "{sym}");
    }
    // The last applied update id of NKNUSDT is the last diff's `u`.
    let last_u = lines("binance/combined_depth_100ms.jsonl")
        .iter()
        .filter(|l| l.contains("\"NKNUSDT\""))
        .rev()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]["u"]
                .as_u64()
                .unwrap()
        })
        .next()
        .unwrap();
    assert_eq!(
        p.books.get(id(&p, "NKNUSDT")).unwrap().last_id,
        Some(last_u)
    );
}

#[test]
fn one_dropped_diff_is_a_gap_and_fetches_a_new_snapshot() {
    let mut ls = lines("binance/combined_depth_100ms.jsonl");
    // Drop the 10th NKNUSDT diff (well after the snapshot).
    let idx = ls
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"NKNUSDT\""))
        .nth(9)
        .unwrap()
        .0;
    let dropped: Value = serde_json::from_str(&ls.remove(idx)).unwrap();
    let first_missing = dropped["data"]["U"].as_u64().unwrap();
    let (p, sink, fetched) = run(&ls);
    assert_eq!(p.books.stats.gaps, 1);
    assert_eq!(p.books.stats.resyncs, 1);
    let nkn = id(&p, "NKNUSDT");
    let gap = sink
        .events
        .iter()
        .find(|e| e.status_code() == Some(StatusCode::Gap))
        .unwrap();
    assert_eq!((gap.instrument, gap.seq), (nkn, first_missing));
    assert!(sink
        .events
        .iter()
        .any(|e| e.status_code() == Some(StatusCode::ResyncStarted) && e.instrument == nkn));
    // A second snapshot was asked for NKNUSDT (none left to serve here).
    assert_eq!(fetched.iter().filter(|s| *s == "NKNUSDT").count(), 2);
    assert_eq!(p.books.get(nkn).unwrap().state, SyncState::AwaitingSnapshot);
    for sym in ["BLZETH", "LRCBTC", "RUNEEUR"] {
        assert_eq!(p.books.get(id(&p, sym)).unwrap().state, SyncState::Valid);
    }
}

#[test]
fn diffs_older_than_the_snapshot_are_dropped_and_the_first_must_straddle() {
    let snap = &snapshots()["NKNUSDT"];
    let last: u64 = serde_json::from_str::<Value>(snap).unwrap()["lastUpdateId"]
        .as_u64()
        .unwrap();
    let diff = |first: u64, last: u64| {
        format!(
            r#"{{"stream":"nknusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":{first},"u":{last},"b":[["0.1","1"]],"a":[]}}}}"#
        )
    };
    let mut p = Pipeline::new(
        Exchange::Binance,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    // Held until the snapshot: one too old, one straddling, one chained.
    for (u0, u1) in [(last - 5, last), (last - 1, last + 2), (last + 3, last + 3)] {
        p.on_frame(diff(u0, u1).as_bytes(), 0, &mut sink).unwrap();
    }
    assert_eq!(sink.books.len(), 0, "nothing published before the snapshot");
    assert!(matches!(
        sink.actions[..],
        [Action::FetchSnapshot { instrument: 0, .. }]
    ));
    p.on_rest_snapshot(0, snap.as_bytes(), 0, &mut sink)
        .unwrap();
    assert_eq!(p.books.stats.dropped, 1);
    assert_eq!(p.books.stats.updates, 2);
    assert_eq!(p.books.get(0).unwrap().last_id, Some(last + 3));
    // Snapshot first, then the two diffs that follow it.
    assert!(sink.books[0].snapshot);
    assert_eq!(sink.books.len(), 3);

    // A snapshot newer than every held diff's start: the first diff does not straddle.
    let mut p = Pipeline::new(
        Exchange::Binance,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    p.on_frame(diff(last + 5, last + 6).as_bytes(), 0, &mut sink)
        .unwrap();
    p.on_rest_snapshot(0, snap.as_bytes(), 0, &mut sink)
        .unwrap();
    assert_eq!(p.books.stats.gaps, 1);
    assert_eq!(p.books.get(0).unwrap().state, SyncState::AwaitingSnapshot);
}

#[test]
fn an_empty_diff_still_advances_the_update_ids() {
    let snap = &snapshots()["NKNUSDT"];
    let last: u64 = serde_json::from_str::<Value>(snap).unwrap()["lastUpdateId"]
        .as_u64()
        .unwrap();
    let mut p = Pipeline::new(
        Exchange::Binance,
        FeedConfig::discovering(),
        BuilderConfig::default(),
    );
    let mut sink = VecSink::default();
    p.on_frame(
        br#"{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":1,"u":1,"b":[],"a":[]}"#,
        0,
        &mut sink,
    )
    .unwrap();
    p.on_rest_snapshot(0, snap.as_bytes(), 0, &mut sink)
        .unwrap();
    for (u0, u1) in [(last + 1, last + 1), (last + 2, last + 2)] {
        let m =
            format!(r#"{{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":{u0},"u":{u1},"b":[],"a":[]}}"#);
        p.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
    }
    assert_eq!(p.books.stats.gaps, 0);
    assert_eq!(p.books.get(0).unwrap().last_id, Some(last + 2));
}
