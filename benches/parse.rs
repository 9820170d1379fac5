//! Criterion version of `tickring bench parse`, plus the measurement behind
//! the book representation (`src/book/mod.rs`, the NB on `BookSide`).
//!
//! `cargo bench --bench parse` (all), `cargo bench --bench parse -- book/`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tickring::bench::parse::{cases, default_fixtures, load, CountSink, Runner};
use tickring::book::Book;
use tickring::event::{Event, EventKind, Exchange, Side};
use tickring::feed::{Feed, FeedConfig, VecSink};

fn parse(c: &mut Criterion) {
    let dir = default_fixtures();
    let mut g = c.benchmark_group("parse");
    for case in cases() {
        let lines = load(&dir, &case).expect("fixtures");
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function(BenchmarkId::new(case.name, "tickring"), |b| {
            let mut runner = Runner::new(&case);
            let mut sink = CountSink::default();
            b.iter(|| {
                if case.fresh_per_pass {
                    runner = Runner::new(&case);
                }
                runner.pass(&lines, &mut sink)
            })
        });
        g.bench_function(BenchmarkId::new(case.name, "serde_json"), |b| {
            b.iter(|| {
                for l in &lines {
                    black_box((case.baseline)(black_box(l)));
                }
            })
        });
    }
    g.finish();
}

/// Replays the Coinbase level2 session's book events into (a) the sorted
/// `Vec` sides tickring uses and (b) a `BTreeMap` per side.
fn book(c: &mut Criterion) {
    let dir = default_fixtures();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "coinbase_level2")
        .unwrap();
    let lines = load(&dir, &case).expect("fixtures");
    let mut feed = Feed::new(Exchange::Coinbase, FeedConfig::discovering());
    let mut sink = VecSink::default();
    for l in &lines {
        feed.on_frame(l, 0, &mut sink).unwrap();
    }
    let events: Vec<Event> = sink.events;
    let n = feed.instruments().len();
    let mut g = c.benchmark_group("book");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("sorted_vec", |b| {
        b.iter(|| {
            let mut books = vec![Book::new(); n];
            for ev in &events {
                books[ev.instrument as usize].apply(ev);
            }
            black_box(
                books
                    .iter()
                    .filter_map(|b| b.best_bid())
                    .map(|(p, _)| p)
                    .sum::<i64>(),
            )
        })
    });
    g.bench_function("btreemap", |b| {
        b.iter(|| {
            let mut books: Vec<[BTreeMap<i64, i64>; 2]> = vec![Default::default(); n];
            for ev in &events {
                let bk = &mut books[ev.instrument as usize];
                let side = (ev.side == Side::Ask as u8) as usize;
                match ev.kind() {
                    Some(EventKind::SnapshotBegin) => bk.iter_mut().for_each(BTreeMap::clear),
                    Some(EventKind::BookSet) => {
                        bk[side].insert(ev.price, ev.qty);
                    }
                    Some(EventKind::BookDelete) => {
                        bk[side].remove(&ev.price);
                    }
                    _ => {}
                }
            }
            black_box(
                books
                    .iter()
                    .filter_map(|b| b[0].last_key_value())
                    .map(|(p, _)| *p)
                    .sum::<i64>(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, parse, book);
criterion_main!(benches);
