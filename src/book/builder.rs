//! The book builder: applies book messages to per-instrument books, checks
//! them the way each exchange allows, forwards the events that are safe to
//! publish, and reports every gap, checksum failure, resync and recovery as
//! a status [`Event`].

use std::mem;

use super::checksum::{kraken_crc32, WireFormat};
use super::Book;
use crate::event::{Event, EventKind, Exchange, StatusCode};
use crate::feed::{BookUpdate, Sink};

/// How the builder checks books.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuilderConfig {
    /// Verify checksums where the exchange sends them (Kraken).
    pub verify_checksums: bool,
    /// Truncate books to the subscribed depth after every message where the
    /// exchange asks for it (Kraken). Only tests turn this off.
    pub truncate: bool,
    /// Binance diffs held while waiting for a REST snapshot, in events; past
    /// this the oldest held diffs are dropped (and counted).
    pub max_buffered_events: usize,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        BuilderConfig {
            verify_checksums: true,
            truncate: true,
            max_buffered_events: 1 << 20,
        }
    }
}

/// Whether a book can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// No snapshot applied yet. On Binance the diffs are held back until
    /// the snapshot comes; elsewhere they are applied to a partial book.
    AwaitingSnapshot,
    /// Built from a snapshot and every message since.
    Valid,
    /// A gap or checksum failure broke it; a resync was requested.
    Invalid,
}

/// Counters of the builder, over all instruments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookStats {
    pub snapshots: u64,
    /// Book update messages applied (snapshots not included).
    pub updates: u64,
    pub checksum_ok: u64,
    pub checksum_failed: u64,
    /// Checksums not verified because the book was already invalid and
    /// waiting for its resync snapshot.
    pub checksum_skipped: u64,
    /// Gap status events seen (from the adapter) or raised (Binance).
    pub gaps: u64,
    /// Resyncs started (a valid or partial book found broken).
    pub resyncs: u64,
    /// Times a book became crossed.
    pub crossed: u64,
    /// Binance diffs dropped as older than the snapshot or buffer overflow.
    pub dropped: u64,
}

/// One instrument's book and its sync state.
#[derive(Clone, Debug)]
pub struct BookState {
    pub book: Book,
    pub state: SyncState,
    /// Binance: the last update id applied (`lastUpdateId`, then each `u`).
    pub last_id: Option<u64>,
    /// Binance: the next diff must straddle `last_id + 1`.
    awaiting_first_diff: bool,
    /// A snapshot (or resubscription) was asked for and has not come yet.
    resync_requested: bool,
    crossed: bool,
    /// Binance diffs held until the snapshot comes: events, then
    /// (metadata, start, end) into `buffer`.
    buffer: Vec<Event>,
    buffer_meta: Vec<(BookUpdate, usize, usize)>,
}

impl BookState {
    fn new() -> BookState {
        BookState {
            book: Book::new(),
            state: SyncState::AwaitingSnapshot,
            last_id: None,
            awaiting_first_diff: false,
            resync_requested: false,
            crossed: false,
            buffer: Vec::new(),
            buffer_meta: Vec::new(),
        }
    }
}

/// Books for every instrument of one feed.
pub struct BookBuilder {
    exchange: Exchange,
    cfg: BuilderConfig,
    books: Vec<BookState>,
    /// Instruments whose book must be resynced (drained by the pipeline,
    /// which turns them into the feed's actions).
    pub(crate) pending_resync: Vec<u16>,
    pub stats: BookStats,
}

impl BookBuilder {
    pub fn new(exchange: Exchange, cfg: BuilderConfig) -> BookBuilder {
        BookBuilder {
            exchange,
            cfg,
            books: Vec::new(),
            pending_resync: Vec::new(),
            stats: BookStats::default(),
        }
    }

    /// The book of `instrument`, if any message for it was seen.
    pub fn get(&self, instrument: u16) -> Option<&BookState> {
        self.books.get(instrument as usize)
    }

    /// All books, indexed by instrument id.
    pub fn books(&self) -> &[BookState] {
        &self.books
    }

    fn state(&mut self, id: u16) -> &mut BookState {
        let i = id as usize;
        if self.books.len() <= i {
            self.books.resize_with(i + 1, BookState::new);
        }
        &mut self.books[i]
    }

    fn status<S: Sink>(
        &self,
        out: &mut S,
        id: u16,
        code: StatusCode,
        recv_ts: i64,
        seq: u64,
        qty: i64,
    ) {
        let mut ev = Event::status(self.exchange, id, code);
        ev.recv_ts = recv_ts;
        ev.seq = seq;
        ev.qty = qty;
        out.event(&ev);
    }

    /// A non-book event from the adapter: forwarded; a `Gap` invalidates
    /// the instrument's book and starts a resync.
    pub fn on_event<S: Sink>(&mut self, ev: &Event, out: &mut S) {
        out.event(ev);
        if ev.kind == EventKind::Status as u8
            && ev.status == StatusCode::Gap as u16
            && (ev.instrument as usize) < crate::event::NO_INSTRUMENT as usize
        {
            self.stats.gaps += 1;
            self.invalidate(ev.instrument, ev.recv_ts, out);
        }
    }

    /// Marks the book broken and requests a resync once.
    fn invalidate<S: Sink>(&mut self, id: u16, recv_ts: i64, out: &mut S) {
        let binance = self.exchange == Exchange::Binance;
        let st = self.state(id);
        if binance {
            // A Binance book restarts from a REST snapshot: hold diffs again.
            st.book.clear();
            st.state = SyncState::AwaitingSnapshot;
            st.last_id = None;
        } else {
            st.state = SyncState::Invalid;
        }
        if !st.resync_requested {
            st.resync_requested = true;
            self.stats.resyncs += 1;
            self.pending_resync.push(id);
            self.status(out, id, StatusCode::ResyncStarted, recv_ts, 0, 0);
        }
    }

    /// One book message from the adapter.
    pub fn on_book<S: Sink>(&mut self, upd: &BookUpdate, events: &[Event], out: &mut S) {
        if self.exchange == Exchange::Binance {
            self.binance(upd, events, out);
        } else {
            self.apply_checked(upd, events, out);
        }
    }

    /// Kraken and Coinbase: apply, truncate, verify the checksum, report.
    fn apply_checked<S: Sink>(&mut self, upd: &BookUpdate, events: &[Event], out: &mut S) {
        let id = upd.instrument;
        let recv_ts = events.first().map_or(0, |e| e.recv_ts);
        let cfg = self.cfg;
        if upd.snapshot {
            self.stats.snapshots += 1;
        } else {
            self.stats.updates += 1;
        }
        let st = self.state(id);
        for ev in events {
            st.book.apply(ev);
        }
        if cfg.truncate && upd.depth > 0 {
            st.book.truncate(upd.depth as usize);
        }
        out.book(upd, events);
        // A book already known broken is not checked again until the
        // resync's snapshot: one corruption is one ChecksumFailed, not one
        // per update while the resync is under way.
        let verify = cfg.verify_checksums && (upd.snapshot || st.state != SyncState::Invalid);
        if upd.checksum.is_some() && cfg.verify_checksums && !verify {
            self.stats.checksum_skipped += 1;
        }
        let st = self.state(id);
        let mut ok = true;
        if let (Some(expected), true) = (upd.checksum, verify) {
            let got = kraken_crc32(
                &st.book,
                WireFormat {
                    price_scale: upd.price_scale,
                    qty_scale: upd.qty_scale,
                    price_decimals: upd.price_decimals,
                    qty_decimals: upd.qty_decimals,
                },
            );
            if got == expected {
                self.stats.checksum_ok += 1;
            } else {
                self.stats.checksum_failed += 1;
                ok = false;
                self.status(
                    out,
                    id,
                    StatusCode::ChecksumFailed,
                    recv_ts,
                    expected as u64,
                    got as i64,
                );
            }
        }
        if !ok {
            self.invalidate(id, recv_ts, out);
        } else if upd.snapshot {
            let st = self.state(id);
            st.state = SyncState::Valid;
            st.resync_requested = false;
            self.status(out, id, StatusCode::BookValid, recv_ts, 0, 0);
        }
        self.check_crossed(id, recv_ts, out);
    }

    fn check_crossed<S: Sink>(&mut self, id: u16, recv_ts: i64, out: &mut S) {
        let st = self.state(id);
        match st.book.crossed() {
            Some((bid, ask)) if !st.crossed => {
                st.crossed = true;
                self.stats.crossed += 1;
                // price = best bid, qty = best ask (see StatusCode::BookCrossed).
                let mut ev = Event::status(self.exchange, id, StatusCode::BookCrossed);
                ev.recv_ts = recv_ts;
                ev.price = bid;
                ev.qty = ask;
                out.event(&ev);
            }
            Some(_) => {}
            None => st.crossed = false,
        }
    }

    /// Binance: hold diffs until the REST snapshot, then apply the ones that
    /// follow it, checking that update ids chain without a hole.
    fn binance<S: Sink>(&mut self, upd: &BookUpdate, events: &[Event], out: &mut S) {
        let id = upd.instrument;
        let recv_ts = events.first().map_or(0, |e| e.recv_ts);
        if upd.snapshot {
            self.stats.snapshots += 1;
            let st = self.state(id);
            st.book.clear();
            for ev in events {
                st.book.apply(ev);
            }
            st.last_id = Some(upd.last_id);
            st.awaiting_first_diff = true;
            st.state = SyncState::Valid;
            st.resync_requested = false;
            st.crossed = false;
            let buffer = mem::take(&mut st.buffer);
            let mut meta = mem::take(&mut st.buffer_meta);
            out.book(upd, events);
            self.status(out, id, StatusCode::BookValid, recv_ts, upd.last_id, 0);
            for &(m, s, e) in &meta {
                if self.state(id).state == SyncState::Valid {
                    self.binance_diff(&m, &buffer[s..e], out);
                } else {
                    self.hold(&m, &buffer[s..e]);
                }
            }
            // Give the buffers back for reuse (unless a resync refilled them).
            let st = self.state(id);
            if st.buffer_meta.is_empty() {
                let mut buffer = buffer;
                buffer.clear();
                meta.clear();
                st.buffer = buffer;
                st.buffer_meta = meta;
            }
            self.check_crossed(id, recv_ts, out);
            return;
        }
        let st = self.state(id);
        match st.state {
            SyncState::Valid => {
                self.binance_diff(upd, events, out);
                self.check_crossed(id, recv_ts, out);
            }
            SyncState::AwaitingSnapshot | SyncState::Invalid => {
                if !st.resync_requested {
                    // First sight of this book: fetch its snapshot.
                    st.resync_requested = true;
                    self.pending_resync.push(id);
                }
                self.hold(upd, events);
            }
        }
    }

    fn hold(&mut self, upd: &BookUpdate, events: &[Event]) {
        let max = self.cfg.max_buffered_events;
        let st = self.state(upd.instrument);
        if st.buffer.len() + events.len() > max {
            let n = st.buffer_meta.len() as u64;
            st.buffer.clear();
            st.buffer_meta.clear();
            self.stats.dropped += n;
        }
        let st = self.state(upd.instrument);
        let start = st.buffer.len();
        st.buffer.extend_from_slice(events);
        st.buffer_meta.push((*upd, start, st.buffer.len()));
    }

    /// One diff on a synced Binance book.
    fn binance_diff<S: Sink>(&mut self, upd: &BookUpdate, events: &[Event], out: &mut S) {
        let id = upd.instrument;
        let recv_ts = events.first().map_or(0, |e| e.recv_ts);
        let st = self.state(id);
        let last = st.last_id.unwrap_or(0);
        if upd.last_id <= last {
            // Older than the book: already contained in the snapshot.
            self.stats.dropped += 1;
            return;
        }
        let next = last + 1;
        let chained = if st.awaiting_first_diff {
            upd.first_id <= next
        } else {
            upd.first_id == next
        };
        if !chained {
            let missing = upd.first_id.saturating_sub(next) as i64;
            self.stats.gaps += 1;
            self.status(out, id, StatusCode::Gap, recv_ts, next, missing);
            self.invalidate(id, recv_ts, out);
            // The diff that revealed the gap may follow the next snapshot.
            self.hold(upd, events);
            return;
        }
        for ev in events {
            st.book.apply(ev);
        }
        st.last_id = Some(upd.last_id);
        st.awaiting_first_diff = false;
        self.stats.updates += 1;
        out.book(upd, events);
    }
}
