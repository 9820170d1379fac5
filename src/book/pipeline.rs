//! An adapter and a book builder wired together: the one path from exchange
//! bytes to published events, shared by the collector and `tickring book`.

use super::{BookBuilder, BuilderConfig};
use crate::event::Event;
use crate::event::Exchange;
use crate::feed::{Action, BookUpdate, Feed, FeedConfig, FeedError, FrameInfo, FrameKind, Sink};

/// Feed adapter + book builder. Events reach `out` only after the builder
/// has seen them (Binance diffs may be held until their snapshot), followed
/// by the builder's status events and the actions the I/O owner must take
/// (including resyncs turned into the exchange's own requests).
pub struct Pipeline {
    pub feed: Feed,
    pub books: BookBuilder,
}

/// Routes the adapter's output through the builder to `out`.
struct Tee<'a, S> {
    books: &'a mut BookBuilder,
    out: &'a mut S,
}

impl<S: Sink> Sink for Tee<'_, S> {
    #[inline]
    fn event(&mut self, ev: &Event) {
        self.books.on_event(ev, self.out);
    }
    #[inline]
    fn book(&mut self, update: &BookUpdate, events: &[Event]) {
        self.books.on_book(update, events, self.out);
    }
    fn action(&mut self, action: Action) {
        self.out.action(action);
    }
}

impl Pipeline {
    pub fn new(exchange: Exchange, feed: FeedConfig, books: BuilderConfig) -> Pipeline {
        Pipeline {
            feed: Feed::new(exchange, feed),
            books: BookBuilder::new(exchange, books),
        }
    }

    /// One WebSocket frame received at `recv_ts`.
    #[inline]
    pub fn on_frame<S: Sink>(
        &mut self,
        frame: &[u8],
        recv_ts: i64,
        out: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        let r = self.feed.on_frame(
            frame,
            recv_ts,
            &mut Tee {
                books: &mut self.books,
                out,
            },
        );
        self.flush_resyncs(out);
        r
    }

    /// A REST depth snapshot for `instrument` (Binance; the body carries no
    /// symbol). Other exchanges get their snapshots in-band: `Unknown`.
    pub fn on_rest_snapshot<S: Sink>(
        &mut self,
        instrument: u16,
        body: &[u8],
        recv_ts: i64,
        out: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        let r = match &mut self.feed {
            Feed::Binance(a) => a.on_rest_snapshot(
                instrument,
                body,
                recv_ts,
                &mut Tee {
                    books: &mut self.books,
                    out,
                },
            ),
            _ => Ok(FrameInfo {
                kind: FrameKind::Unknown,
                events: 0,
            }),
        };
        self.flush_resyncs(out);
        r
    }

    /// Turns the builder's resync requests into the exchange's requests.
    fn flush_resyncs<S: Sink>(&mut self, out: &mut S) {
        if self.books.pending_resync.is_empty() {
            return;
        }
        for id in self.books.pending_resync.drain(..) {
            for a in self.feed.resync_actions(id) {
                out.action(a);
            }
        }
    }
}
