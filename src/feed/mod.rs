//! Exchange feed adapters: bytes in, events out, no I/O.
//!
//! Each adapter turns one WebSocket text frame (one JSON message) into
//! normalized [`Event`]s and *actions* for whoever owns the sockets. The
//! caller drives it with [`Feed::on_frame`]:
//!
//! ```text
//! io_uring recv ──bytes──▶ Feed::on_frame(bytes, recv_ts, &mut sink)
//!                              ├─ sink.event(&Event)              trades, BBO, status
//!                              ├─ sink.book(&BookUpdate, &[Event]) one book message of one instrument
//!                              └─ sink.action(Action)             send / fetch snapshot / reconnect
//! ```
//!
//! A frame is parsed completely (and validated) before anything reaches the
//! sink, so a malformed message never half-applies to a book. Instrument ids
//! are `u16` indexes into the instrument list the adapter is built with (the
//! ring's instrument table holds the same list in the same order).
//!
//! Books are not kept here: [`crate::book::Pipeline`] puts a
//! [`crate::book::BookBuilder`] between the adapter and the ring, so the
//! collector and `tickring book` build books with the same code.

pub mod binance;
pub mod coinbase;
pub mod coinbase_advanced;
pub mod json;
pub mod kraken;

use std::collections::HashMap;
use std::fmt;

use crate::event::{flags, Event, EventKind, Exchange, Side, StatusCode, NO_INSTRUMENT};
use crate::fixed::{self, FixedError};
use crate::instrument::{Instrument, InstrumentError};
use json::{IntError, JsonError, Str, TimestampError};

/// Default largest frame an adapter accepts (a Coinbase Exchange level2
/// snapshot of a busy product is a few MB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 << 20;

/// Default scale (decimal places) of prices and quantities for instruments
/// discovered from the feed.
pub const DEFAULT_SCALE: u8 = 8;

/// How an adapter is set up.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The instruments, in ring-table order: the event's `instrument` is an
    /// index into this list.
    pub instruments: Vec<Instrument>,
    /// `Some((price_scale, qty_scale))`: a symbol not in `instruments` is
    /// appended with these scales (offline tools such as `tickring book`).
    /// `None`: messages for unknown symbols are counted
    /// ([`FeedStats::unknown_instrument`]) and skipped.
    pub discover: Option<(u8, u8)>,
    /// Frames longer than this are refused with [`FeedError::FrameTooLarge`].
    pub max_frame_len: usize,
    /// Book depth to subscribe to where the exchange asks for one (Kraken).
    pub book_depth: u16,
}

impl FeedConfig {
    /// A config with a fixed instrument list.
    pub fn new(instruments: Vec<Instrument>) -> FeedConfig {
        FeedConfig {
            instruments,
            discover: None,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            book_depth: 10,
        }
    }

    /// A config that discovers instruments from the feed at the default scale.
    pub fn discovering() -> FeedConfig {
        FeedConfig {
            discover: Some((DEFAULT_SCALE, DEFAULT_SCALE)),
            ..FeedConfig::new(Vec::new())
        }
    }
}

/// Why a frame was refused. Every variant names the field (a path such as
/// `data[].bids[].price`) or the limit involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedError {
    /// The frame is longer than [`FeedConfig::max_frame_len`].
    FrameTooLarge { len: usize, max: usize },
    /// The frame is not valid JSON; `field` is where the scanner was.
    Json {
        field: &'static str,
        error: JsonError,
    },
    /// A field the message type requires is absent.
    MissingField { field: &'static str },
    /// A field appears twice in one object.
    DuplicateField { field: &'static str },
    /// A field holds a value of the wrong kind or range.
    BadValue {
        field: &'static str,
        reason: ValueError,
    },
    /// More instruments than a `u16` id can name.
    TooManyInstruments,
}

/// What was wrong with a field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueError {
    /// A price or quantity that does not fit the instrument's scale.
    Fixed(FixedError),
    /// An id or counter that is not a u64.
    Int(IntError),
    /// A timestamp that is not exact ISO-8601 UTC.
    Timestamp(TimestampError),
    /// Text that is none of the values the protocol defines.
    UnexpectedText(String),
    /// A millisecond timestamp too large for ns in an i64.
    TimestampRange,
    /// A discovered instrument that cannot be described.
    Instrument(InstrumentError),
    /// A quantity below zero.
    NegativeQuantity,
}

impl fmt::Display for FeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FeedError::Json { field, error } => write!(f, "field `{field}`: {error}"),
            FeedError::MissingField { field } => write!(f, "missing field `{field}`"),
            FeedError::DuplicateField { field } => write!(f, "duplicate field `{field}`"),
            FeedError::BadValue { field, reason } => write!(f, "field `{field}`: {reason}"),
            FeedError::TooManyInstruments => {
                write!(f, "more than {} instruments", NO_INSTRUMENT)
            }
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Fixed(e) => write!(f, "{e}"),
            ValueError::Int(e) => write!(f, "{e}"),
            ValueError::Timestamp(e) => write!(f, "{e}"),
            ValueError::UnexpectedText(t) => write!(f, "unexpected value {t:?}"),
            ValueError::TimestampRange => f.write_str("timestamp out of range"),
            ValueError::Instrument(e) => write!(f, "{e}"),
            ValueError::NegativeQuantity => f.write_str("negative quantity"),
        }
    }
}

impl std::error::Error for FeedError {}

/// What kind of message a frame was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Trade,
    BookSnapshot,
    BookUpdate,
    /// Top of book (`bookTicker`, `ticker`).
    Bbo,
    Heartbeat,
    /// Connection or system status.
    Status,
    /// A subscription acknowledgement.
    Subscribed,
    /// The exchange refused a subscription or request.
    Rejected,
    Pong,
    /// A message type the adapter does not know: counted and skipped.
    Unknown,
    /// A known message that only concerned instruments not in the list.
    Skipped,
    /// A message older than one already seen (duplicate or reordered):
    /// counted in [`FeedStats::stale`] and skipped.
    Stale,
}

/// What [`Feed::on_frame`] made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub kind: FrameKind,
    /// Events handed to the sink (book events included).
    pub events: u32,
}

/// Counters an adapter keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub frames: u64,
    pub errors: u64,
    /// Frames of a type the adapter does not know.
    pub unknown: u64,
    /// Messages (or parts) skipped because their symbol is not in the list.
    pub unknown_instrument: u64,
    /// Sequence gaps detected by the adapter.
    pub gaps: u64,
    /// Messages older than one already seen (duplicate or reordered).
    pub stale: u64,
}

/// One exchange book message for one instrument, as metadata next to its
/// events (`SnapshotBegin`/`BookSet`/`BookDelete`/`SnapshotEnd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookUpdate {
    pub instrument: u16,
    /// The events replace the whole book.
    pub snapshot: bool,
    /// Binance diff: first update id `U` (0 elsewhere).
    pub first_id: u64,
    /// Binance: last update id `u` of a diff or `lastUpdateId` of a REST
    /// snapshot; Coinbase Advanced: `sequence_num` (0 elsewhere).
    pub last_id: u64,
    /// Kraken: the CRC-32 the book must have after this message.
    pub checksum: Option<u32>,
    /// Truncate each side to this many levels after applying (0: never).
    pub depth: u16,
    pub price_scale: u8,
    pub qty_scale: u8,
    /// Decimals the exchange writes prices/quantities with (Kraken: fixed
    /// per pair), so that a checksum over the wire text can be recomputed
    /// from the integers.
    pub price_decimals: u8,
    pub qty_decimals: u8,
}

/// Something the I/O owner must do for the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this text frame on the feed's WebSocket.
    Send(String),
    /// GET `path` (e.g. `/api/v3/depth?symbol=BTCUSDT&limit=1000`) from the
    /// exchange's REST host and hand the body to
    /// [`crate::book::Pipeline::on_rest_snapshot`] for `instrument`.
    FetchSnapshot { instrument: u16, path: String },
    /// Close the connection, reconnect and resubscribe.
    Reconnect,
}

/// Receives what an adapter produces.
pub trait Sink {
    /// A trade, BBO or status event.
    fn event(&mut self, ev: &Event);
    /// The events of one book message for one instrument. The default
    /// forwards them one by one to [`Sink::event`].
    fn book(&mut self, update: &BookUpdate, events: &[Event]) {
        let _ = update;
        for ev in events {
            self.event(ev);
        }
    }
    /// Something the I/O owner must do.
    fn action(&mut self, action: Action);
}

/// A sink that keeps everything (tests, tools).
#[derive(Default, Debug)]
pub struct VecSink {
    pub events: Vec<Event>,
    pub books: Vec<BookUpdate>,
    pub actions: Vec<Action>,
}

impl Sink for VecSink {
    fn event(&mut self, ev: &Event) {
        self.events.push(*ev);
    }
    fn book(&mut self, update: &BookUpdate, events: &[Event]) {
        self.books.push(*update);
        self.events.extend_from_slice(events);
    }
    fn action(&mut self, action: Action) {
        self.actions.push(action);
    }
}

/// What to subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Trades,
    Book,
    /// Top of book.
    Bbo,
    /// Exchange heartbeats (where they must be asked for).
    Heartbeat,
}

/// The adapter for one exchange.
#[allow(clippy::large_enum_variant)]
pub enum Feed {
    Coinbase(coinbase::CoinbaseAdapter),
    CoinbaseAdvanced(coinbase_advanced::AdvancedAdapter),
    Kraken(kraken::KrakenAdapter),
    Binance(binance::BinanceAdapter),
}

impl Feed {
    pub fn new(exchange: Exchange, config: FeedConfig) -> Feed {
        match exchange {
            Exchange::Coinbase => Feed::Coinbase(coinbase::CoinbaseAdapter::new(config)),
            Exchange::CoinbaseAdvanced => {
                Feed::CoinbaseAdvanced(coinbase_advanced::AdvancedAdapter::new(config))
            }
            Exchange::Kraken => Feed::Kraken(kraken::KrakenAdapter::new(config)),
            Exchange::Binance => Feed::Binance(binance::BinanceAdapter::new(config)),
        }
    }

    pub fn exchange(&self) -> Exchange {
        match self {
            Feed::Coinbase(_) => Exchange::Coinbase,
            Feed::CoinbaseAdvanced(_) => Exchange::CoinbaseAdvanced,
            Feed::Kraken(_) => Exchange::Kraken,
            Feed::Binance(_) => Exchange::Binance,
        }
    }

    /// Parses one frame received at `recv_ts` (ns since the epoch) and hands
    /// its events and actions to `sink`. On error nothing reached the sink.
    #[inline]
    pub fn on_frame<S: Sink>(
        &mut self,
        frame: &[u8],
        recv_ts: i64,
        sink: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        match self {
            Feed::Coinbase(a) => a.on_frame(frame, recv_ts, sink),
            Feed::CoinbaseAdvanced(a) => a.on_frame(frame, recv_ts, sink),
            Feed::Kraken(a) => a.on_frame(frame, recv_ts, sink),
            Feed::Binance(a) => a.on_frame(frame, recv_ts, sink),
        }
    }

    /// The messages that subscribe to `channels` for every instrument.
    pub fn subscribe_messages(&self, channels: &[Channel]) -> Vec<String> {
        match self {
            Feed::Coinbase(a) => a.subscribe_messages(channels, true),
            Feed::CoinbaseAdvanced(a) => a.subscribe_messages(channels, true),
            Feed::Kraken(a) => a.subscribe_messages(channels, true),
            Feed::Binance(a) => a.subscribe_messages(channels, true),
        }
    }

    /// The messages that undo [`Feed::subscribe_messages`].
    pub fn unsubscribe_messages(&self, channels: &[Channel]) -> Vec<String> {
        match self {
            Feed::Coinbase(a) => a.subscribe_messages(channels, false),
            Feed::CoinbaseAdvanced(a) => a.subscribe_messages(channels, false),
            Feed::Kraken(a) => a.subscribe_messages(channels, false),
            Feed::Binance(a) => a.subscribe_messages(channels, false),
        }
    }

    /// The actions that get a fresh book for `instrument` (resubscribe, or
    /// fetch a REST snapshot on Binance).
    pub fn resync_actions(&self, instrument: u16) -> Vec<Action> {
        match self {
            Feed::Coinbase(a) => a.resync_actions(instrument),
            Feed::CoinbaseAdvanced(a) => a.resync_actions(instrument),
            Feed::Kraken(a) => a.resync_actions(instrument),
            Feed::Binance(a) => a.resync_actions(instrument),
        }
    }

    /// The instrument list (grown by discovery if enabled).
    pub fn instruments(&self) -> &[Instrument] {
        &self.common().instruments.list
    }

    pub fn stats(&self) -> FeedStats {
        self.common().stats
    }

    fn common(&self) -> &Common {
        match self {
            Feed::Coinbase(a) => &a.c,
            Feed::CoinbaseAdvanced(a) => &a.c,
            Feed::Kraken(a) => &a.c,
            Feed::Binance(a) => &a.c,
        }
    }
}

// ---------------------------------------------------------------------------
// Shared adapter machinery.

/// Symbol -> instrument id lookup, with optional discovery.
#[derive(Debug)]
pub(crate) struct Instruments {
    pub(crate) list: Vec<Instrument>,
    index: HashMap<Box<[u8]>, u16>,
    discover: Option<(u8, u8)>,
    exchange: Exchange,
}

/// Up to this many instruments, a linear scan beats hashing the symbol.
const LINEAR_LOOKUP_MAX: usize = 8;

impl Instruments {
    fn new(exchange: Exchange, list: Vec<Instrument>, discover: Option<(u8, u8)>) -> Self {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, ins)| (ins.symbol.as_bytes().into(), i as u16))
            .collect();
        Instruments {
            list,
            index,
            discover,
            exchange,
        }
    }

    /// The id of `symbol`, discovering it if enabled; `Ok(None)` when unknown.
    #[inline]
    pub(crate) fn lookup(
        &mut self,
        field: &'static str,
        symbol: &[u8],
    ) -> Result<Option<u16>, FeedError> {
        if self.list.len() <= LINEAR_LOOKUP_MAX {
            if let Some(i) = self.list.iter().position(|i| i.symbol.as_bytes() == symbol) {
                return Ok(Some(i as u16));
            }
        } else if let Some(&i) = self.index.get(symbol) {
            return Ok(Some(i));
        }
        let Some((ps, qs)) = self.discover else {
            return Ok(None);
        };
        if self.list.len() >= NO_INSTRUMENT as usize {
            return Err(FeedError::TooManyInstruments);
        }
        let sym = std::str::from_utf8(symbol).map_err(|_| FeedError::BadValue {
            field,
            reason: ValueError::UnexpectedText(String::from_utf8_lossy(symbol).into_owned()),
        })?;
        let ins = Instrument::new(self.exchange, sym, ps, qs).map_err(|e| FeedError::BadValue {
            field,
            reason: ValueError::Instrument(e),
        })?;
        let id = self.list.len() as u16;
        self.index.insert(symbol.into(), id);
        self.list.push(ins);
        Ok(Some(id))
    }

    #[inline]
    pub(crate) fn scales(&self, id: u16) -> (u8, u8) {
        let i = &self.list[id as usize];
        (i.price_scale, i.qty_scale)
    }
}

/// A run of events in [`Common::events`], with its book metadata if it is a
/// book message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group {
    pub(crate) book: Option<BookUpdate>,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

/// State every adapter has: instruments, scratch buffers, counters.
pub(crate) struct Common {
    pub(crate) exchange: Exchange,
    pub(crate) instruments: Instruments,
    pub(crate) max_frame_len: usize,
    pub(crate) book_depth: u16,
    pub(crate) stats: FeedStats,
    /// Events of the frame being parsed; emitted only once it all parsed.
    pub(crate) events: Vec<Event>,
    pub(crate) groups: Vec<Group>,
    pub(crate) actions: Vec<Action>,
    pub(crate) recv_ts: i64,
    /// The `YYYY-MM-DDTHH` start of the last timestamp parsed and its
    /// seconds since the epoch (`None`: nothing cached).
    ts_hour: Option<([u8; json::ISO8601_DATE_HOUR_LEN], i64)>,
}

impl Common {
    pub(crate) fn new(exchange: Exchange, cfg: FeedConfig) -> Common {
        Common {
            exchange,
            instruments: Instruments::new(exchange, cfg.instruments, cfg.discover),
            max_frame_len: cfg.max_frame_len,
            book_depth: cfg.book_depth,
            stats: FeedStats::default(),
            events: Vec::with_capacity(256),
            groups: Vec::with_capacity(8),
            actions: Vec::new(),
            recv_ts: 0,
            ts_hour: None,
        }
    }

    /// Starts a frame: size check and scratch reset.
    #[inline]
    pub(crate) fn begin(&mut self, frame: &[u8], recv_ts: i64) -> Result<(), FeedError> {
        self.stats.frames += 1;
        self.events.clear();
        self.groups.clear();
        self.actions.clear();
        self.recv_ts = recv_ts;
        if frame.len() > self.max_frame_len {
            self.stats.errors += 1;
            return Err(FeedError::FrameTooLarge {
                len: frame.len(),
                max: self.max_frame_len,
            });
        }
        Ok(())
    }

    /// Ends a frame: on success hands everything to the sink, in order.
    #[inline]
    pub(crate) fn end<S: Sink>(
        &mut self,
        result: Result<FrameKind, FeedError>,
        sink: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        let kind = match result {
            Ok(k) => k,
            Err(e) => {
                self.stats.errors += 1;
                return Err(e);
            }
        };
        match kind {
            FrameKind::Unknown => self.stats.unknown += 1,
            FrameKind::Skipped => self.stats.unknown_instrument += 1,
            _ => {}
        }
        for g in &self.groups {
            let evs = &self.events[g.start as usize..g.end as usize];
            match &g.book {
                Some(b) => sink.book(b, evs),
                None => evs.iter().for_each(|e| sink.event(e)),
            }
        }
        for a in self.actions.drain(..) {
            sink.action(a);
        }
        Ok(FrameInfo {
            kind,
            events: self.events.len() as u32,
        })
    }

    /// [`ts_field`], reusing the date and hour of the previous timestamp
    /// when they are the same (they usually are: the calendar arithmetic is
    /// then skipped).
    #[inline]
    pub(crate) fn ts_cached(&mut self, field: &'static str, s: &Str<'_>) -> Result<i64, FeedError> {
        const N: usize = json::ISO8601_DATE_HOUR_LEN;
        let bad = |e| FeedError::BadValue {
            field,
            reason: ValueError::Timestamp(e),
        };
        if s.escaped || s.raw.len() < N {
            return ts_field(field, s);
        }
        let t = s.raw;
        let hour_s = match self.ts_hour {
            Some((prefix, h)) if prefix[..] == t[..N] => h,
            _ => {
                let h = json::iso8601_date_hour_s(t).map_err(bad)?;
                let mut prefix = [0u8; N];
                prefix.copy_from_slice(&t[..N]);
                self.ts_hour = Some((prefix, h));
                h
            }
        };
        json::iso8601_tail_ns(t, hour_s).map_err(bad)
    }

    /// Opens a group of events (one message for one instrument, or a run of trades).
    #[inline]
    pub(crate) fn open_group(&mut self, book: Option<BookUpdate>) {
        let at = self.events.len() as u32;
        self.groups.push(Group {
            book,
            start: at,
            end: at,
        });
    }

    /// Closes the last group; flags its last event `LAST_IN_MESSAGE`.
    /// An empty group is dropped unless it is a book message (an empty
    /// Binance diff still advances the update ids).
    #[inline]
    pub(crate) fn close_group(&mut self) {
        let end = self.events.len() as u32;
        if let Some(g) = self.groups.last_mut() {
            g.end = end;
            if g.start == g.end {
                if g.book.is_none() {
                    self.groups.pop();
                }
            } else {
                self.events[end as usize - 1].flags |= flags::LAST_IN_MESSAGE;
            }
        }
    }

    /// The open group's book metadata.
    #[inline]
    pub(crate) fn group_book(&mut self) -> Option<&mut BookUpdate> {
        self.groups.last_mut().and_then(|g| g.book.as_mut())
    }

    #[inline]
    pub(crate) fn push(&mut self, ev: Event) {
        self.events.push(ev);
    }

    /// A new event with the common fields filled in.
    #[inline]
    pub(crate) fn ev(&self, kind: EventKind, instrument: u16) -> Event {
        Event {
            kind: kind as u8,
            exchange: self.exchange as u8,
            instrument,
            recv_ts: self.recv_ts,
            ..Event::default()
        }
    }

    /// A status event, as its own group.
    pub(crate) fn status(&mut self, instrument: u16, code: StatusCode, seq: u64, qty: i64) {
        let mut ev = Event::status(self.exchange, instrument, code);
        ev.recv_ts = self.recv_ts;
        ev.seq = seq;
        ev.qty = qty;
        self.open_group(None);
        self.push(ev);
        self.close_group();
    }

    /// A book metadata record for `instrument` with its scales filled in.
    #[inline]
    pub(crate) fn book_update(&self, instrument: u16, snapshot: bool) -> BookUpdate {
        let (price_scale, qty_scale) = self.instruments.scales(instrument);
        BookUpdate {
            instrument,
            snapshot,
            first_id: 0,
            last_id: 0,
            checksum: None,
            depth: 0,
            price_scale,
            qty_scale,
            price_decimals: price_scale,
            qty_decimals: qty_scale,
        }
    }
}

// ---------------------------------------------------------------------------
// Field helpers shared by the adapters.

/// Wraps a scanner error with the field it happened in.
#[inline]
pub(crate) fn js<T>(field: &'static str, r: Result<T, JsonError>) -> Result<T, FeedError> {
    r.map_err(|error| FeedError::Json { field, error })
}

#[inline]
pub(crate) fn missing(field: &'static str) -> FeedError {
    FeedError::MissingField { field }
}

#[inline]
pub(crate) fn unexpected(field: &'static str, s: &Str<'_>) -> FeedError {
    FeedError::BadValue {
        field,
        reason: ValueError::UnexpectedText(String::from_utf8_lossy(&s.decoded()).into_owned()),
    }
}

/// Decimal text -> fixed point at `scale`, naming the field on error.
#[inline]
pub(crate) fn fixed_field(field: &'static str, text: &[u8], scale: u8) -> Result<i64, FeedError> {
    fixed::parse(text, scale).map_err(|e| FeedError::BadValue {
        field,
        reason: ValueError::Fixed(e),
    })
}

/// A decimal carried in a JSON string (`"0.35210000"`).
#[inline]
pub(crate) fn fixed_str(field: &'static str, s: &Str<'_>, scale: u8) -> Result<i64, FeedError> {
    if s.escaped {
        fixed_field(field, &s.decoded(), scale)
    } else {
        fixed_field(field, s.raw, scale)
    }
}

/// A quantity: as [`fixed_field`], and never negative.
#[inline]
pub(crate) fn qty_field(field: &'static str, text: &[u8], scale: u8) -> Result<i64, FeedError> {
    nonneg(field, fixed_field(field, text, scale)?)
}

/// A quantity in a JSON string: as [`fixed_str`], and never negative.
#[inline]
pub(crate) fn qty_str(field: &'static str, s: &Str<'_>, scale: u8) -> Result<i64, FeedError> {
    nonneg(field, fixed_str(field, s, scale)?)
}

#[inline]
fn nonneg(field: &'static str, v: i64) -> Result<i64, FeedError> {
    if v < 0 {
        return Err(FeedError::BadValue {
            field,
            reason: ValueError::NegativeQuantity,
        });
    }
    Ok(v)
}

#[inline]
pub(crate) fn u64_field(field: &'static str, text: &[u8]) -> Result<u64, FeedError> {
    json::parse_u64(text).map_err(|e| FeedError::BadValue {
        field,
        reason: ValueError::Int(e),
    })
}

#[inline]
pub(crate) fn ts_field(field: &'static str, s: &Str<'_>) -> Result<i64, FeedError> {
    json::parse_iso8601_ns(&s.decoded()).map_err(|e| FeedError::BadValue {
        field,
        reason: ValueError::Timestamp(e),
    })
}

/// Milliseconds since the epoch (Binance) -> ns.
#[inline]
pub(crate) fn ms_field(field: &'static str, text: &[u8]) -> Result<i64, FeedError> {
    let ms = u64_field(field, text)?;
    i64::try_from(ms)
        .ok()
        .and_then(|v| v.checked_mul(1_000_000))
        .ok_or(FeedError::BadValue {
            field,
            reason: ValueError::TimestampRange,
        })
}

/// Marks `bit` as seen in `seen`, or fails with a duplicate-field error.
#[inline]
pub(crate) fn once(seen: &mut u32, bit: u32, field: &'static str) -> Result<(), FeedError> {
    if *seen & bit != 0 {
        return Err(FeedError::DuplicateField { field });
    }
    *seen |= bit;
    Ok(())
}

/// Number of digits after the point in a decimal text as sent (trailing
/// zeros included: Kraken's checksum covers them).
#[inline]
pub(crate) fn wire_decimals(text: &[u8]) -> u8 {
    match text.iter().position(|&b| b == b'.') {
        Some(p) => (text.len() - p - 1).min(u8::MAX as usize) as u8,
        None => 0,
    }
}

/// Appends `"a","b"` (JSON strings, escaped) joined by commas.
pub(crate) fn push_json_list<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    let mut first = true;
    for it in items {
        if !first {
            out.push(',');
        }
        first = false;
        // serde_json escapes exactly what JSON needs.
        out.push_str(&serde_json::to_string(it).unwrap_or_default());
    }
}

/// Unsubscribe then subscribe the book of one instrument (`request(symbols,
/// subscribe)` builds one message): the exchange answers with a fresh
/// snapshot. Nothing for an unknown instrument.
pub(crate) fn resubscribe_book(
    c: &Common,
    instrument: u16,
    request: impl Fn(&[&str], bool) -> Option<String>,
) -> Vec<Action> {
    let Some(ins) = c.instruments.list.get(instrument as usize) else {
        return Vec::new();
    };
    let syms = [ins.symbol.as_str()];
    [false, true]
        .into_iter()
        .filter_map(|subscribe| request(&syms, subscribe))
        .map(Action::Send)
        .collect()
}

/// Book side from `bid`/`buy` and `ask`/`sell`/`offer` spellings.
#[inline]
pub(crate) fn side_of(field: &'static str, s: &Str<'_>) -> Result<Side, FeedError> {
    match s.raw {
        b"buy" | b"bid" | b"BUY" => Ok(Side::Bid),
        b"sell" | b"ask" | b"offer" | b"SELL" => Ok(Side::Ask),
        _ => Err(unexpected(field, s)),
    }
}

/// The other side (maker side -> taker side).
#[inline]
pub(crate) fn opposite(side: Side) -> Side {
    match side {
        Side::Bid => Side::Ask,
        Side::Ask => Side::Bid,
        Side::None => Side::None,
    }
}

/// Pushes one book level event (`BookSet`, or `BookDelete` when qty is 0).
#[inline]
pub(crate) fn level_event(
    c: &Common,
    instrument: u16,
    side: Side,
    price: i64,
    qty: i64,
    snapshot: bool,
) -> Event {
    let kind = if qty == 0 {
        EventKind::BookDelete
    } else {
        EventKind::BookSet
    };
    let mut ev = c.ev(kind, instrument);
    ev.side = side as u8;
    ev.price = price;
    ev.qty = qty;
    if snapshot {
        ev.flags |= flags::SNAPSHOT;
    }
    ev
}

/// Pushes the `SnapshotBegin` (or `SnapshotEnd`) marker of a snapshot.
#[inline]
pub(crate) fn snapshot_marker(
    c: &mut Common,
    kind: EventKind,
    instrument: u16,
    exch_ts: i64,
    seq: u64,
) {
    let mut ev = c.ev(kind, instrument);
    ev.flags = flags::SNAPSHOT;
    ev.exch_ts = exch_ts;
    ev.seq = seq;
    c.push(ev);
}

/// `[["price","qty"], ...]` (Binance depth, Coinbase snapshots): pushes one
/// level event per pair. Elements after the second in a pair are ignored.
pub(crate) fn pair_levels(
    c: &mut Common,
    sc: &mut json::Scanner<'_>,
    instrument: u16,
    side: Side,
    snapshot: bool,
    seq: u64,
    (field, pf, qf): (&'static str, &'static str, &'static str),
) -> Result<(), FeedError> {
    let (ps, qs) = c.instruments.scales(instrument);
    let mut arr = js(field, sc.array())?;
    while js(field, sc.next_elem(&mut arr))? {
        let mut pair = js(field, sc.array())?;
        if !js(field, sc.next_elem(&mut pair))? {
            return Err(missing(pf));
        }
        let p = js(pf, sc.string())?;
        if !js(field, sc.next_elem(&mut pair))? {
            return Err(missing(qf));
        }
        let q = js(qf, sc.string())?;
        while js(field, sc.next_elem(&mut pair))? {
            js(field, sc.skip_value())?;
        }
        let price = fixed_str(pf, &p, ps)?;
        let qty = qty_str(qf, &q, qs)?;
        let mut ev = level_event(c, instrument, side, price, qty, snapshot);
        ev.seq = seq;
        c.push(ev);
    }
    Ok(())
}

/// Sets `exch_ts` (and `seq` when non-zero) on every event of the open group.
#[inline]
pub(crate) fn stamp_group(c: &mut Common, exch_ts: i64, seq: u64) {
    let start = c.groups.last().map_or(0, |g| g.start as usize);
    for ev in &mut c.events[start..] {
        ev.exch_ts = exch_ts;
        if seq != 0 {
            ev.seq = seq;
        }
    }
}
