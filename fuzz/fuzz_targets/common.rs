//! The body shared by the adapter fuzz targets.

use tickring::book::{BuilderConfig, Pipeline};
use tickring::event::{EventKind, Exchange, Side};
use tickring::feed::{FeedConfig, VecSink};

/// Frames (one per input line) through `exchange`'s adapter and the book
/// builder: no panic, every event well formed, every book ordered. A line
/// starting with `!` is a REST snapshot for instrument 0 (Binance).
pub fn run(exchange: Exchange, data: &[u8]) {
    let mut p = Pipeline::new(exchange, FeedConfig::discovering(), BuilderConfig::default());
    let mut sink = VecSink::default();
    for line in data.split(|&b| b == b'\n') {
        let _ = match line.strip_prefix(b"!") {
            Some(body) => p.on_rest_snapshot(0, body, 0, &mut sink),
            None => p.on_frame(line, 0, &mut sink),
        };
    }
    for ev in &sink.events {
        assert!(EventKind::from_u8(ev.kind).is_some());
        assert!(Side::from_u8(ev.side).is_some());
        assert_eq!(ev.exchange, exchange as u8);
    }
    for st in p.books.books() {
        let b: Vec<i64> = st.book.bids.iter().map(|(p, _)| p).collect();
        assert!(b.windows(2).all(|w| w[0] > w[1]), "bids out of order");
        let a: Vec<i64> = st.book.asks.iter().map(|(p, _)| p).collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]), "asks out of order");
        assert!(st.book.bids.iter().chain(st.book.asks.iter()).all(|(_, q)| q > 0));
    }
}
