//! Price-level order books kept from feed events, and the builder that
//! validates them per exchange (Kraken CRC-32, Binance snapshot + diff sync,
//! Coinbase sequence gaps and crossed books).
//!
//! [`Pipeline`] is the one place where an adapter's output meets the books:
//! the collector and `tickring book` both drive a `Pipeline`, so they build
//! the same books from the same bytes.

mod builder;
pub mod checksum;
mod pipeline;

pub use builder::{BookBuilder, BookState, BookStats, BuilderConfig, SyncState};
pub use pipeline::Pipeline;

use crate::event::{Event, EventKind, Side};

/// One price level: fixed-point price and quantity at the instrument's scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    /// Sort key: the price for bids, `!price` for asks, so that on both
    /// sides the best level has the largest key and sits at the end.
    key: i64,
    qty: i64,
}

/// How many levels from the top a lookup scans linearly before falling
/// back to binary search.
const LINEAR_SCAN: usize = 16;

/// One side of a book.
///
// NB: a sorted `Vec` with the *best* level at the end: most updates touch
// the top few levels, so a short linear scan from the end finds them and an
// insert or delete there moves only the few levels above it; top-N
// iteration is a slice walk. Measured with `cargo bench --bench parse --
// ^book/` replaying the events of the 9729 Coinbase level2 messages (10
// products, snapshots included): 1.66 ms for this layout against 3.93 ms
// for a `BTreeMap<i64, i64>` per side (criterion medians on the shared
// 2-core dev machine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookSide {
    ask: bool,
    levels: Vec<Level>,
    /// Snapshot levels were appended unsorted (see [`BookSide::push_snapshot`]).
    unsorted: bool,
}

impl BookSide {
    fn new(side: Side) -> BookSide {
        BookSide {
            ask: side == Side::Ask,
            levels: Vec::new(),
            unsorted: false,
        }
    }

    #[inline(always)]
    fn key(&self, price: i64) -> i64 {
        if self.ask {
            !price
        } else {
            price
        }
    }

    #[inline(always)]
    fn price(&self, key: i64) -> i64 {
        self.key(key)
    }

    /// Index of `key`, or where it would be inserted.
    #[inline]
    fn find(&self, key: i64) -> Result<usize, usize> {
        let n = self.levels.len();
        let lo = n.saturating_sub(LINEAR_SCAN);
        for i in (lo..n).rev() {
            let k = self.levels[i].key;
            if k == key {
                return Ok(i);
            }
            if k < key {
                return Err(i + 1);
            }
        }
        self.levels[..lo].binary_search_by_key(&key, |l| l.key)
    }

    /// Appends a snapshot level without keeping the order; the side is
    /// sorted by [`BookSide::finish_snapshot`] (or the next `set`/`remove`).
    ///
    // NB: exchanges send snapshots best level first, which for a Vec with
    // the best level at the end means inserting every level at the front:
    // quadratic in the depth (the 10 Coinbase level2 snapshots took most of
    // the replay's time). Appending and sorting once is O(n log n).
    #[inline]
    pub fn push_snapshot(&mut self, price: i64, qty: i64) {
        if qty != 0 {
            let key = self.key(price);
            self.levels.push(Level { key, qty });
            self.unsorted = true;
        }
    }

    /// Sorts the levels appended by [`BookSide::push_snapshot`]; a price
    /// given twice keeps its last quantity.
    pub fn finish_snapshot(&mut self) {
        if !self.unsorted {
            return;
        }
        self.unsorted = false;
        // Stable: equal keys stay in arrival order, so the last one wins.
        self.levels.sort_by_key(|l| l.key);
        self.levels.dedup_by(|later, kept| {
            if later.key == kept.key {
                kept.qty = later.qty;
                true
            } else {
                false
            }
        });
    }

    /// Sets the quantity at `price` (0 removes the level).
    #[inline]
    pub fn set(&mut self, price: i64, qty: i64) {
        self.finish_snapshot();
        if qty == 0 {
            self.remove(price);
            return;
        }
        let key = self.key(price);
        match self.find(key) {
            Ok(i) => self.levels[i].qty = qty,
            Err(i) => self.levels.insert(i, Level { key, qty }),
        }
    }

    /// Removes the level at `price`; whether there was one.
    #[inline]
    pub fn remove(&mut self, price: i64) -> bool {
        self.finish_snapshot();
        match self.find(self.key(price)) {
            Ok(i) => {
                self.levels.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// The best level `(price, qty)`.
    #[inline]
    pub fn best(&self) -> Option<(i64, i64)> {
        debug_assert!(!self.unsorted, "snapshot not finished");
        self.levels.last().map(|l| (self.price(l.key), l.qty))
    }

    /// Levels `(price, qty)`, best first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        debug_assert!(!self.unsorted, "snapshot not finished");
        self.levels.iter().rev().map(|l| (self.price(l.key), l.qty))
    }

    /// Keeps the best `depth` levels.
    pub fn truncate(&mut self, depth: usize) {
        self.finish_snapshot();
        let n = self.levels.len();
        if n > depth {
            self.levels.drain(..n - depth);
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn clear(&mut self) {
        self.levels.clear();
        self.unsorted = false;
    }
}

/// A price-level book for one instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    pub bids: BookSide,
    pub asks: BookSide,
}

impl Default for Book {
    fn default() -> Self {
        Book::new()
    }
}

impl Book {
    pub fn new() -> Book {
        Book {
            bids: BookSide::new(Side::Bid),
            asks: BookSide::new(Side::Ask),
        }
    }

    /// The side for a [`Side`] value (`None` for `Side::None`).
    #[inline]
    pub fn side_mut(&mut self, side: Side) -> Option<&mut BookSide> {
        match side {
            Side::Bid => Some(&mut self.bids),
            Side::Ask => Some(&mut self.asks),
            Side::None => None,
        }
    }

    /// Applies one book event: `SnapshotBegin` clears, `BookSet` sets,
    /// `BookDelete` removes, `SnapshotEnd` sorts the snapshot's levels
    /// (which `BookSet`s flagged `SNAPSHOT` append); other kinds are ignored. Returns `false` for
    /// a level event with an invalid side.
    #[inline]
    pub fn apply(&mut self, ev: &Event) -> bool {
        match EventKind::from_u8(ev.kind) {
            Some(EventKind::SnapshotBegin) => {
                self.clear();
                true
            }
            Some(EventKind::SnapshotEnd) => {
                self.bids.finish_snapshot();
                self.asks.finish_snapshot();
                true
            }
            Some(EventKind::BookSet) => {
                let snapshot = ev.flags & crate::event::flags::SNAPSHOT != 0;
                match Side::from_u8(ev.side).and_then(|s| self.side_mut(s)) {
                    Some(side) if snapshot => side.push_snapshot(ev.price, ev.qty),
                    Some(side) => side.set(ev.price, ev.qty),
                    None => return false,
                }
                true
            }
            Some(EventKind::BookDelete) => {
                match Side::from_u8(ev.side).and_then(|s| self.side_mut(s)) {
                    Some(side) => {
                        side.remove(ev.price);
                    }
                    None => return false,
                }
                true
            }
            _ => true,
        }
    }

    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    pub fn best_bid(&self) -> Option<(i64, i64)> {
        self.bids.best()
    }

    pub fn best_ask(&self) -> Option<(i64, i64)> {
        self.asks.best()
    }

    /// `Some((best bid, best ask))` when the best bid is at or above the best ask.
    pub fn crossed(&self) -> Option<(i64, i64)> {
        match (self.best_bid(), self.best_ask()) {
            (Some((b, _)), Some((a, _))) if b >= a => Some((b, a)),
            _ => None,
        }
    }

    /// Keeps the best `depth` levels per side.
    pub fn truncate(&mut self, depth: usize) {
        self.bids.truncate(depth);
        self.asks.truncate(depth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_keep_best_first_order() {
        let mut b = Book::new();
        for (p, q) in [(100, 1), (102, 2), (101, 3)] {
            b.bids.set(p, q);
            b.asks.set(p + 10, q);
        }
        assert_eq!(
            b.bids.iter().collect::<Vec<_>>(),
            [(102, 2), (101, 3), (100, 1)]
        );
        assert_eq!(
            b.asks.iter().collect::<Vec<_>>(),
            [(110, 1), (111, 3), (112, 2)]
        );
        b.bids.set(101, 0);
        b.asks.set(110, 7);
        assert_eq!(b.best_bid(), Some((102, 2)));
        assert_eq!(b.best_ask(), Some((110, 7)));
        assert_eq!(b.bids.len(), 2);
        b.truncate(1);
        assert_eq!(b.bids.iter().collect::<Vec<_>>(), [(102, 2)]);
        assert_eq!(b.asks.iter().collect::<Vec<_>>(), [(110, 7)]);
        assert!(!b.bids.remove(5));
        assert_eq!(b.crossed(), None);
        b.bids.set(110, 1);
        assert_eq!(b.crossed(), Some((110, 110)));
    }

    #[test]
    fn deep_levels_use_binary_search_correctly() {
        let mut s = BookSide::new(Side::Ask);
        for p in (0..200).rev() {
            s.set(p * 2, p + 1);
        }
        for p in 0..200 {
            s.set(p * 2 + 1, 1);
        }
        let prices: Vec<i64> = s.iter().map(|(p, _)| p).collect();
        assert_eq!(prices, (0..400).collect::<Vec<_>>());
        for p in (0..400).step_by(3) {
            assert!(s.remove(p));
        }
        assert!(s.iter().all(|(p, _)| p % 3 != 0));
    }

    #[test]
    fn snapshot_levels_sort_once_and_the_last_quantity_wins() {
        let mut s = BookSide::new(Side::Bid);
        for (p, q) in [(10, 1), (30, 1), (20, 1), (30, 5), (5, 0)] {
            s.push_snapshot(p, q);
        }
        s.finish_snapshot();
        assert_eq!(s.iter().collect::<Vec<_>>(), [(30, 5), (20, 1), (10, 1)]);
        // A set before finish_snapshot sorts first.
        let mut a = BookSide::new(Side::Ask);
        a.push_snapshot(3, 1);
        a.push_snapshot(1, 1);
        a.set(2, 2);
        assert_eq!(a.iter().collect::<Vec<_>>(), [(1, 1), (2, 2), (3, 1)]);
    }

    #[test]
    fn extreme_prices_order_correctly() {
        let mut s = BookSide::new(Side::Ask);
        s.set(i64::MIN, 1);
        s.set(i64::MAX, 1);
        s.set(0, 1);
        assert_eq!(
            s.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            [i64::MIN, 0, i64::MAX]
        );
    }
}
