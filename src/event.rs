//! The fixed-size market-data event that travels through the ring.
//!
//! One [`Event`] is one 64-byte cache line. Its first word is the ring
//! sequence number, which the ring fills in on publish and uses as the
//! slot's seqlock word; the other 56 bytes are the payload written by the
//! collector. Prices and quantities are exact fixed-point integers whose
//! decimal scale is a property of the instrument (see
//! [`crate::instrument::Instrument`]); there is no binary float anywhere on
//! the path.

use std::fmt;

/// What an event says. Stored as `u8` in [`Event::kind`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A trade. `side` is the taker's (aggressor's) side, `price`/`qty` the
    /// fill, `seq` the exchange's trade id.
    Trade = 1,
    /// A book level now has quantity `qty` at `price` on `side` (`qty > 0`).
    BookSet = 2,
    /// The book level at `price` on `side` is gone.
    BookDelete = 3,
    /// The levels that follow, up to [`EventKind::SnapshotEnd`], replace the
    /// instrument's whole book.
    SnapshotBegin = 4,
    /// End of a snapshot begun by [`EventKind::SnapshotBegin`]; the book is
    /// consistent again.
    SnapshotEnd = 5,
    /// Feed or book status; `status` holds a [`StatusCode`].
    Status = 6,
    /// Best bid or offer from a top-of-book channel (e.g. Binance
    /// `bookTicker`), one event per side. Not a book change.
    Bbo = 7,
}

impl EventKind {
    pub fn from_u8(v: u8) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Trade,
            2 => EventKind::BookSet,
            3 => EventKind::BookDelete,
            4 => EventKind::SnapshotBegin,
            5 => EventKind::SnapshotEnd,
            6 => EventKind::Status,
            7 => EventKind::Bbo,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Trade => "trade",
            EventKind::BookSet => "book_set",
            EventKind::BookDelete => "book_delete",
            EventKind::SnapshotBegin => "snapshot_begin",
            EventKind::SnapshotEnd => "snapshot_end",
            EventKind::Status => "status",
            EventKind::Bbo => "bbo",
        }
    }
}

/// The venue an event came from. Stored as `u8` in [`Event::exchange`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exchange {
    /// Coinbase Exchange feed (`ws-feed.exchange.coinbase.com`).
    Coinbase = 1,
    /// Coinbase Advanced Trade (`advanced-trade-ws.coinbase.com`).
    CoinbaseAdvanced = 2,
    /// Kraken WebSocket v2.
    Kraken = 3,
    /// Binance spot.
    Binance = 4,
}

impl Exchange {
    pub const ALL: [Exchange; 4] = [
        Exchange::Coinbase,
        Exchange::CoinbaseAdvanced,
        Exchange::Kraken,
        Exchange::Binance,
    ];

    pub fn from_u8(v: u8) -> Option<Exchange> {
        Some(match v {
            1 => Exchange::Coinbase,
            2 => Exchange::CoinbaseAdvanced,
            3 => Exchange::Kraken,
            4 => Exchange::Binance,
            _ => return None,
        })
    }

    /// The name used on the command line, in configs and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Coinbase => "coinbase",
            Exchange::CoinbaseAdvanced => "coinbase-advanced",
            Exchange::Kraken => "kraken",
            Exchange::Binance => "binance",
        }
    }

    pub fn from_name(s: &str) -> Option<Exchange> {
        Exchange::ALL.into_iter().find(|e| e.name() == s)
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Side of a book level or of a trade's taker. Stored as `u8` in [`Event::side`].
///
/// For book events `Bid`/`Ask`; for trades the side of the *taker*
/// (aggressor): `Bid` means the taker bought, `Ask` that the taker sold.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    None = 0,
    Bid = 1,
    Ask = 2,
}

impl Side {
    pub fn from_u8(v: u8) -> Option<Side> {
        Some(match v {
            0 => Side::None,
            1 => Side::Bid,
            2 => Side::Ask,
            _ => return None,
        })
    }

    /// Book side name (`bid`/`ask`); for trades see [`Side::taker_name`].
    pub fn name(self) -> &'static str {
        match self {
            Side::None => "none",
            Side::Bid => "bid",
            Side::Ask => "ask",
        }
    }

    /// Taker side name for trades (`buy`/`sell`).
    pub fn taker_name(self) -> &'static str {
        match self {
            Side::None => "none",
            Side::Bid => "buy",
            Side::Ask => "sell",
        }
    }
}

/// What a [`EventKind::Status`] event reports. Stored as `u16` in
/// [`Event::status`]. Detail fields per code are documented on each variant.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// The feed connection is up (`seq` = reconnect count).
    Connected = 1,
    /// The exchange acknowledged a subscription for the instrument.
    Subscribed = 2,
    /// The feed connection is down (`seq` = reconnect count).
    Disconnected = 3,
    /// A sequence gap: `seq` = first missing sequence number, `qty` = how many
    /// are missing (0 when unknown).
    Gap = 4,
    /// A book checksum did not match: `seq` = expected, `qty` = computed.
    ChecksumFailed = 5,
    /// The instrument's book is invalid and a resync was requested.
    ResyncStarted = 6,
    /// The instrument's book is valid again after a resync.
    BookValid = 7,
    /// An update would have crossed the book (best bid >= best ask):
    /// `price` = best bid, `qty` = best ask (both at the instrument's price scale).
    BookCrossed = 8,
    /// The exchange rejected a subscription for the instrument.
    SubscribeFailed = 9,
    /// The writer is shutting down cleanly.
    WriterStopping = 10,
}

impl StatusCode {
    pub fn from_u16(v: u16) -> Option<StatusCode> {
        Some(match v {
            1 => StatusCode::Connected,
            2 => StatusCode::Subscribed,
            3 => StatusCode::Disconnected,
            4 => StatusCode::Gap,
            5 => StatusCode::ChecksumFailed,
            6 => StatusCode::ResyncStarted,
            7 => StatusCode::BookValid,
            8 => StatusCode::BookCrossed,
            9 => StatusCode::SubscribeFailed,
            10 => StatusCode::WriterStopping,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Connected => "connected",
            StatusCode::Subscribed => "subscribed",
            StatusCode::Disconnected => "disconnected",
            StatusCode::Gap => "gap",
            StatusCode::ChecksumFailed => "checksum_failed",
            StatusCode::ResyncStarted => "resync_started",
            StatusCode::BookValid => "book_valid",
            StatusCode::BookCrossed => "book_crossed",
            StatusCode::SubscribeFailed => "subscribe_failed",
            StatusCode::WriterStopping => "writer_stopping",
        }
    }
}

/// Bits of [`Event::flags`].
pub mod flags {
    /// The book event is part of a snapshot (between `SnapshotBegin` and `SnapshotEnd`).
    pub const SNAPSHOT: u8 = 1 << 0;
    /// Last event produced from one exchange message: a reader that applies
    /// events to a book sees a state the exchange published once it has
    /// applied an event with this flag.
    pub const LAST_IN_MESSAGE: u8 = 1 << 1;
}

/// Instrument id meaning "no instrument" (connection-wide status events).
pub const NO_INSTRUMENT: u16 = u16::MAX;

/// One market-data event: exactly one 64-byte cache line.
///
/// All fields are plain integers, so the type has no padding, no pointers
/// and no invalid bit patterns; that is what lets the ring copy it word by
/// word between processes (see [`crate::shm::ShmSafe`]).
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Event {
    /// Ring sequence number, assigned by the ring on publish (0-based,
    /// monotonic over the life of the ring file).
    pub ring_seq: u64,
    /// [`EventKind`] as `u8`.
    pub kind: u8,
    /// [`Exchange`] as `u8`.
    pub exchange: u8,
    /// [`Side`] as `u8`.
    pub side: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// Index into the ring's instrument table, or [`NO_INSTRUMENT`].
    pub instrument: u16,
    /// [`StatusCode`] as `u16` for status events, 0 otherwise.
    pub status: u16,
    /// Exchange timestamp, ns since the Unix epoch (0 when the exchange sent none).
    pub exch_ts: i64,
    /// When the bytes came off the socket, ns since the Unix epoch (CLOCK_REALTIME).
    pub recv_ts: i64,
    /// When the event was published into the ring, ns since the Unix epoch.
    pub publish_ts: i64,
    /// Price, fixed point at the instrument's price scale.
    pub price: i64,
    /// Quantity, fixed point at the instrument's quantity scale.
    pub qty: i64,
    /// The exchange's own sequence number or trade id (0 when none).
    pub seq: u64,
}

#[allow(clippy::assertions_on_constants, clippy::eq_op)]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Event>() == 64);
    assert!(align_of::<Event>() == 64);
    // No padding: every field starts where the previous one ends.
    assert!(offset_of!(Event, kind) == 8);
    assert!(offset_of!(Event, exchange) == 9);
    assert!(offset_of!(Event, side) == 10);
    assert!(offset_of!(Event, flags) == 11);
    assert!(offset_of!(Event, instrument) == 12);
    assert!(offset_of!(Event, status) == 14);
    assert!(offset_of!(Event, exch_ts) == 16);
    assert!(offset_of!(Event, recv_ts) == 24);
    assert!(offset_of!(Event, publish_ts) == 32);
    assert!(offset_of!(Event, price) == 40);
    assert!(offset_of!(Event, qty) == 48);
    assert!(offset_of!(Event, seq) == 56);
};

/// Number of 64-bit payload words after `ring_seq`.
pub const PAYLOAD_WORDS: usize = 7;

impl Event {
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_u8(self.kind)
    }

    pub fn exchange(&self) -> Option<Exchange> {
        Exchange::from_u8(self.exchange)
    }

    pub fn side(&self) -> Option<Side> {
        Side::from_u8(self.side)
    }

    pub fn status_code(&self) -> Option<StatusCode> {
        StatusCode::from_u16(self.status)
    }

    /// A status event for `instrument` (or [`NO_INSTRUMENT`]).
    pub fn status(exchange: Exchange, instrument: u16, code: StatusCode) -> Event {
        Event {
            kind: EventKind::Status as u8,
            exchange: exchange as u8,
            instrument,
            status: code as u16,
            ..Event::default()
        }
    }

    /// The 56 payload bytes as words, in memory order.
    #[inline(always)]
    pub fn payload_words(&self) -> [u64; PAYLOAD_WORDS] {
        // SAFETY: `Event` is `repr(C)`, 64 bytes, with no padding (asserted
        // above) and only integer fields, so bytes 8..64 are initialized and
        // any 8-byte-aligned 8-byte window of them is a valid `u64`. The
        // pointer is 8-aligned (the struct is 64-aligned) and in bounds.
        unsafe {
            let base = (self as *const Event as *const u64).add(1);
            std::ptr::read(base as *const [u64; PAYLOAD_WORDS])
        }
    }

    /// Rebuilds an event from its ring sequence and payload words.
    #[inline(always)]
    pub fn from_words(ring_seq: u64, words: [u64; PAYLOAD_WORDS]) -> Event {
        let mut ev = Event {
            ring_seq,
            ..Event::default()
        };
        // SAFETY: as in `payload_words`: bytes 8..64 of `Event` are integer
        // fields with no padding, so every bit pattern is valid; the
        // destination is in bounds and 8-aligned.
        unsafe {
            let base = (&mut ev as *mut Event as *mut u64).add(1);
            std::ptr::write(base as *mut [u64; PAYLOAD_WORDS], words);
        }
        ev
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("ring_seq", &self.ring_seq)
            .field("kind", &self.kind().map(EventKind::name).unwrap_or("?"))
            .field(
                "exchange",
                &self.exchange().map(Exchange::name).unwrap_or("?"),
            )
            .field("side", &self.side)
            .field("flags", &self.flags)
            .field("instrument", &self.instrument)
            .field("status", &self.status)
            .field("exch_ts", &self.exch_ts)
            .field("recv_ts", &self.recv_ts)
            .field("publish_ts", &self.publish_ts)
            .field("price", &self.price)
            .field("qty", &self.qty)
            .field("seq", &self.seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_words_round_trip() {
        let ev = Event {
            ring_seq: 9,
            kind: EventKind::Trade as u8,
            exchange: Exchange::Kraken as u8,
            side: Side::Ask as u8,
            flags: flags::LAST_IN_MESSAGE,
            instrument: 7,
            status: 0,
            exch_ts: -1,
            recv_ts: 2,
            publish_ts: 3,
            price: 6_280_250_000_000,
            qty: 2_987_767,
            seq: u64::MAX,
        };
        let back = Event::from_words(9, ev.payload_words());
        assert_eq!(back, ev);
    }

    #[test]
    fn enums_round_trip_through_their_wire_values() {
        for e in Exchange::ALL {
            assert_eq!(Exchange::from_u8(e as u8), Some(e));
            assert_eq!(Exchange::from_name(e.name()), Some(e));
        }
        for k in 1..=7u8 {
            assert_eq!(EventKind::from_u8(k).unwrap() as u8, k);
        }
        assert_eq!(EventKind::from_u8(0), None);
        for c in 1..=10u16 {
            assert_eq!(StatusCode::from_u16(c).unwrap() as u16, c);
        }
    }
}
