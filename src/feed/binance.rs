//! Binance spot (`wss://stream.binance.com:9443`).
//!
//! Streams `<sym>@trade`, `<sym>@aggTrade`, `<sym>@depth@100ms` (diffs with
//! first/last update ids `U`/`u`), `<sym>@bookTicker`, raw or inside the
//! combined-stream envelope `{"stream": ..., "data": ...}`; replies to
//! `SUBSCRIBE` requests (`{"result":null,"id":1}` or `{"error":{...}}`); and
//! the REST `GET /api/v3/depth` snapshot through
//! [`BinanceAdapter::on_rest_snapshot`]. `m: true` means the buyer was the
//! maker, so the taker sold.

use crate::event::{EventKind, Exchange, Side, StatusCode, NO_INSTRUMENT};
use crate::feed::json::{Scanner, Str};
use crate::feed::{
    fixed_str, js, missing, ms_field, once, pair_levels, push_json_list, qty_str, snapshot_marker,
    stamp_group, u64_field, Action, Channel, Common, FeedConfig, FeedError, FrameInfo, FrameKind,
    Sink,
};

/// The Binance adapter.
pub struct BinanceAdapter {
    pub(crate) c: Common,
}

/// What the `e` field (or the shape) says the payload is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Trade,
    AggTrade,
    Depth,
    BookTicker,
    Other,
}

/// A value of the one-letter fields `a`/`b` that mean different things per
/// stream: strings in `bookTicker`, arrays in `depthUpdate`, ids in `trade`.
#[derive(Clone, Copy, Default)]
enum Ab<'a> {
    #[default]
    None,
    Str(Str<'a>),
    /// Levels already parsed into events (fast path).
    Parsed,
    /// Levels kept as text until the symbol is known.
    Raw(&'a [u8]),
    /// A number (aggTrade's aggregate id `a`, trade's order ids).
    Num(&'a [u8]),
    Other,
}

/// The fields of one payload object, as slices of the frame.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<Kind>,
    symbol: Option<Option<u16>>,
    event_time: Option<&'a [u8]>,
    first_id: Option<&'a [u8]>,
    last_id: Option<&'a [u8]>,
    trade_id: Option<&'a [u8]>,
    trade_time: Option<&'a [u8]>,
    price: Option<Str<'a>>,
    qty: Option<Str<'a>>,
    maker: Option<bool>,
    bid: Ab<'a>,
    ask: Ab<'a>,
    bid_qty: Option<Str<'a>>,
    ask_qty: Option<Str<'a>>,
    // Envelope / replies.
    has_data: bool,
    has_result: bool,
    has_error: bool,
    seen: u32,
    group_open: bool,
}

const DEPTH_BIDS: (&str, &str, &str) = ("b", "b[][0]", "b[][1]");
const DEPTH_ASKS: (&str, &str, &str) = ("a", "a[][0]", "a[][1]");
const REST_BIDS: (&str, &str, &str) = ("bids", "bids[][0]", "bids[][1]");
const REST_ASKS: (&str, &str, &str) = ("asks", "asks[][0]", "asks[][1]");

impl BinanceAdapter {
    pub fn new(config: FeedConfig) -> BinanceAdapter {
        BinanceAdapter {
            c: Common::new(Exchange::Binance, config),
        }
    }

    /// See [`crate::feed::Feed::on_frame`].
    pub fn on_frame<S: Sink>(
        &mut self,
        frame: &[u8],
        recv_ts: i64,
        sink: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        self.c.begin(frame, recv_ts)?;
        let r = self.parse(frame);
        self.c.end(r, sink)
    }

    fn parse(&mut self, frame: &[u8]) -> Result<FrameKind, FeedError> {
        let mut sc = Scanner::new(frame);
        let mut f = Fields::default();
        self.object(&mut sc, &mut f, true)?;
        js("(message)", sc.finish())?;
        self.finish(&mut f)
    }

    /// Reads one object's fields into `f`; at top level `data` recurses.
    fn object<'a>(
        &mut self,
        sc: &mut Scanner<'a>,
        f: &mut Fields<'a>,
        top: bool,
    ) -> Result<(), FeedError> {
        let mut it = js("(message)", sc.object())?;
        while let Some(k) = js("(message)", sc.next_key(&mut it))? {
            let key = k.decoded();
            match &*key {
                b"e" => {
                    once(&mut f.seen, 1, "e")?;
                    let s = js("e", sc.string())?;
                    f.kind = Some(match s.raw {
                        b"trade" => Kind::Trade,
                        b"aggTrade" => Kind::AggTrade,
                        b"depthUpdate" => Kind::Depth,
                        b"bookTicker" => Kind::BookTicker,
                        _ => Kind::Other,
                    });
                }
                b"s" => {
                    once(&mut f.seen, 2, "s")?;
                    let s = js("s", sc.string())?;
                    f.symbol = Some(self.c.instruments.lookup("s", &s.decoded())?);
                }
                b"E" => f.event_time = Some(num(sc, &mut f.seen, 4, "E")?),
                b"U" => f.first_id = Some(num(sc, &mut f.seen, 8, "U")?),
                b"u" => f.last_id = Some(num(sc, &mut f.seen, 16, "u")?),
                b"t" => f.trade_id = Some(num(sc, &mut f.seen, 32, "t")?),
                b"T" => f.trade_time = Some(num(sc, &mut f.seen, 64, "T")?),
                b"p" => {
                    once(&mut f.seen, 128, "p")?;
                    f.price = Some(js("p", sc.string())?);
                }
                b"q" => {
                    once(&mut f.seen, 256, "q")?;
                    f.qty = Some(js("q", sc.string())?);
                }
                b"m" => {
                    once(&mut f.seen, 512, "m")?;
                    f.maker = Some(js("m", sc.boolean())?);
                }
                b"b" => {
                    once(&mut f.seen, 1024, "b")?;
                    f.bid = self.ab(sc, f, Side::Bid)?;
                }
                b"a" => {
                    once(&mut f.seen, 2048, "a")?;
                    f.ask = self.ab(sc, f, Side::Ask)?;
                }
                b"B" => {
                    once(&mut f.seen, 4096, "B")?;
                    f.bid_qty = Some(js("B", sc.string())?);
                }
                b"A" => {
                    once(&mut f.seen, 8192, "A")?;
                    f.ask_qty = Some(js("A", sc.string())?);
                }
                b"data" if top => {
                    once(&mut f.seen, 1 << 14, "data")?;
                    f.has_data = true;
                    if sc.peek() == Some(b'{') {
                        self.object(sc, f, false)?;
                    } else {
                        js("data", sc.skip_value())?;
                    }
                }
                b"result" if top => {
                    f.has_result = true;
                    js("result", sc.skip_value())?;
                }
                b"error" if top => {
                    f.has_error = true;
                    js("error", sc.skip_value())?;
                }
                _ => js("(message)", sc.skip_value())?,
            }
        }
        Ok(())
    }

    /// Reads an `a`/`b` value by its shape.
    #[inline]
    fn ab<'a>(
        &mut self,
        sc: &mut Scanner<'a>,
        f: &mut Fields<'a>,
        side: Side,
    ) -> Result<Ab<'a>, FeedError> {
        let (field, names) = if side == Side::Bid {
            ("b", DEPTH_BIDS)
        } else {
            ("a", DEPTH_ASKS)
        };
        match sc.peek() {
            Some(b'"') => Ok(Ab::Str(js(field, sc.string())?)),
            Some(b'[') => {
                // Fast path: a depth update whose symbol is already known.
                if let (Some(Kind::Depth), Some(sym)) = (f.kind, f.symbol) {
                    let Some(id) = sym else {
                        js(field, sc.skip_value())?;
                        return Ok(Ab::Parsed);
                    };
                    if !f.group_open {
                        let upd = self.c.book_update(id, false);
                        self.c.open_group(Some(upd));
                        f.group_open = true;
                    }
                    pair_levels(&mut self.c, sc, id, side, false, 0, names)?;
                    Ok(Ab::Parsed)
                } else {
                    Ok(Ab::Raw(js(field, sc.raw_value())?))
                }
            }
            Some(b'-' | b'0'..=b'9') => Ok(Ab::Num(js(field, sc.number())?)),
            _ => {
                js(field, sc.skip_value())?;
                Ok(Ab::Other)
            }
        }
    }

    fn finish(&mut self, f: &mut Fields<'_>) -> Result<FrameKind, FeedError> {
        if f.has_error {
            self.c
                .status(NO_INSTRUMENT, StatusCode::SubscribeFailed, 0, 0);
            return Ok(FrameKind::Rejected);
        }
        if f.has_result && f.kind.is_none() && !f.has_data {
            return Ok(FrameKind::Subscribed);
        }
        let kind = match f.kind {
            Some(k) => k,
            // bookTicker has no `e`: recognise it by its fields.
            None if f.last_id.is_some() && matches!(f.bid, Ab::Str(_)) => Kind::BookTicker,
            None => return Ok(FrameKind::Unknown),
        };
        if kind == Kind::Other {
            return Ok(FrameKind::Unknown);
        }
        let id = match f.symbol.ok_or(missing("s"))? {
            Some(id) => id,
            None => return Ok(FrameKind::Skipped),
        };
        let (ps, qs) = self.c.instruments.scales(id);
        match kind {
            Kind::Trade | Kind::AggTrade => {
                let (id_field, tid) = if kind == Kind::Trade {
                    ("t", f.trade_id)
                } else {
                    ("a", ab_num(&f.ask))
                };
                let tid = u64_field(id_field, tid.ok_or(missing(id_field))?)?;
                let price = fixed_str("p", &f.price.ok_or(missing("p"))?, ps)?;
                let qty = qty_str("q", &f.qty.ok_or(missing("q"))?, qs)?;
                let maker = f.maker.ok_or(missing("m"))?;
                let ts = match (f.trade_time, f.event_time) {
                    (Some(t), _) => ms_field("T", t)?,
                    (None, Some(e)) => ms_field("E", e)?,
                    (None, None) => 0,
                };
                let mut ev = self.c.ev(EventKind::Trade, id);
                // `m`: the buyer was the maker, so the taker sold.
                ev.side = if maker { Side::Ask } else { Side::Bid } as u8;
                ev.price = price;
                ev.qty = qty;
                ev.seq = tid;
                ev.exch_ts = ts;
                self.c.open_group(None);
                self.c.push(ev);
                self.c.close_group();
                Ok(FrameKind::Trade)
            }
            Kind::BookTicker => {
                let u = u64_field("u", f.last_id.ok_or(missing("u"))?)?;
                let ts = match f.event_time {
                    Some(e) => ms_field("E", e)?,
                    None => 0,
                };
                let Ab::Str(b) = f.bid else {
                    return Err(missing("b"));
                };
                let Ab::Str(a) = f.ask else {
                    return Err(missing("a"));
                };
                let bq = f.bid_qty.ok_or(missing("B"))?;
                let aq = f.ask_qty.ok_or(missing("A"))?;
                let bid = self.bbo(
                    id,
                    Side::Bid,
                    fixed_str("b", &b, ps)?,
                    qty_str("B", &bq, qs)?,
                );
                let ask = self.bbo(
                    id,
                    Side::Ask,
                    fixed_str("a", &a, ps)?,
                    qty_str("A", &aq, qs)?,
                );
                self.c.open_group(None);
                for mut ev in [bid, ask] {
                    ev.seq = u;
                    ev.exch_ts = ts;
                    self.c.push(ev);
                }
                self.c.close_group();
                Ok(FrameKind::Bbo)
            }
            Kind::Depth => {
                let first = u64_field("U", f.first_id.ok_or(missing("U"))?)?;
                let last = u64_field("u", f.last_id.ok_or(missing("u"))?)?;
                let ts = match f.event_time {
                    Some(e) => ms_field("E", e)?,
                    None => 0,
                };
                if !f.group_open {
                    let upd = self.c.book_update(id, false);
                    self.c.open_group(Some(upd));
                    f.group_open = true;
                }
                self.depth_side(f.bid, id, Side::Bid, DEPTH_BIDS)?;
                self.depth_side(f.ask, id, Side::Ask, DEPTH_ASKS)?;
                stamp_group(&mut self.c, ts, last);
                if let Some(b) = self.c.group_book() {
                    b.first_id = first;
                    b.last_id = last;
                }
                // A diff with no level still advances the update ids; its
                // (empty) group is kept so that the book builder sees it.
                self.c.close_group();
                Ok(FrameKind::BookUpdate)
            }
            Kind::Other => Ok(FrameKind::Unknown),
        }
    }

    #[inline]
    fn bbo(&self, id: u16, side: Side, price: i64, qty: i64) -> crate::event::Event {
        let mut ev = self.c.ev(EventKind::Bbo, id);
        ev.side = side as u8;
        ev.price = price;
        ev.qty = qty;
        ev
    }

    /// The `b` or `a` levels of a depth update, unless parsed on the spot.
    #[inline]
    fn depth_side(
        &mut self,
        ab: Ab<'_>,
        id: u16,
        side: Side,
        names: (&'static str, &'static str, &'static str),
    ) -> Result<(), FeedError> {
        match ab {
            Ab::Parsed => Ok(()),
            Ab::Raw(raw) => pair_levels(
                &mut self.c,
                &mut Scanner::new(raw),
                id,
                side,
                false,
                0,
                names,
            ),
            Ab::None => Err(missing(names.0)),
            Ab::Str(_) | Ab::Num(_) | Ab::Other => Err(FeedError::BadValue {
                field: names.0,
                reason: crate::feed::ValueError::UnexpectedText("not an array of levels".into()),
            }),
        }
    }

    /// Parses a REST `GET /api/v3/depth` answer for `instrument` (the
    /// answer does not name its symbol) and hands it to `sink` as a snapshot.
    pub fn on_rest_snapshot<S: Sink>(
        &mut self,
        instrument: u16,
        body: &[u8],
        recv_ts: i64,
        sink: &mut S,
    ) -> Result<FrameInfo, FeedError> {
        self.c.begin(body, recv_ts)?;
        let r = self.rest_snapshot(instrument, body);
        self.c.end(r, sink)
    }

    fn rest_snapshot(&mut self, id: u16, body: &[u8]) -> Result<FrameKind, FeedError> {
        if id as usize >= self.c.instruments.list.len() {
            return Ok(FrameKind::Skipped);
        }
        let mut sc = Scanner::new(body);
        let mut it = js("(snapshot)", sc.object())?;
        let upd = self.c.book_update(id, true);
        self.c.open_group(Some(upd));
        snapshot_marker(&mut self.c, EventKind::SnapshotBegin, id, 0, 0);
        let mut last = None;
        let mut seen = 0u32;
        while let Some(k) = js("(snapshot)", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"lastUpdateId" => {
                    once(&mut seen, 1, "lastUpdateId")?;
                    let n = js("lastUpdateId", sc.number())?;
                    last = Some(u64_field("lastUpdateId", n)?);
                }
                b"bids" => {
                    once(&mut seen, 2, "bids")?;
                    pair_levels(&mut self.c, &mut sc, id, Side::Bid, true, 0, REST_BIDS)?;
                }
                b"asks" => {
                    once(&mut seen, 4, "asks")?;
                    pair_levels(&mut self.c, &mut sc, id, Side::Ask, true, 0, REST_ASKS)?;
                }
                _ => js("(snapshot)", sc.skip_value())?,
            }
        }
        js("(snapshot)", sc.finish())?;
        let last = last.ok_or(missing("lastUpdateId"))?;
        if seen & 2 == 0 {
            return Err(missing("bids"));
        }
        if seen & 4 == 0 {
            return Err(missing("asks"));
        }
        snapshot_marker(&mut self.c, EventKind::SnapshotEnd, id, 0, 0);
        stamp_group(&mut self.c, 0, last);
        if let Some(b) = self.c.group_book() {
            b.last_id = last;
        }
        self.c.close_group();
        Ok(FrameKind::BookSnapshot)
    }

    /// A `SUBSCRIBE` (or `UNSUBSCRIBE`) request for every instrument.
    pub fn subscribe_messages(&self, channels: &[Channel], subscribe: bool) -> Vec<String> {
        let mut streams = Vec::new();
        for ins in &self.c.instruments.list {
            let sym = ins.symbol.to_ascii_lowercase();
            for ch in channels {
                match ch {
                    Channel::Trades => streams.push(format!("{sym}@trade")),
                    Channel::Book => streams.push(format!("{sym}@depth@100ms")),
                    Channel::Bbo => streams.push(format!("{sym}@bookTicker")),
                    Channel::Heartbeat => {}
                }
            }
        }
        if streams.is_empty() {
            return Vec::new();
        }
        let (method, id) = if subscribe {
            ("SUBSCRIBE", 1)
        } else {
            ("UNSUBSCRIBE", 2)
        };
        let mut s = format!("{{\"method\":\"{method}\",\"params\":[");
        push_json_list(&mut s, streams.iter().map(String::as_str));
        s.push_str(&format!("],\"id\":{id}}}"));
        vec![s]
    }

    /// A Binance book resyncs from a REST snapshot.
    pub fn resync_actions(&self, instrument: u16) -> Vec<Action> {
        match self.c.instruments.list.get(instrument as usize) {
            Some(ins) => vec![Action::FetchSnapshot {
                instrument,
                path: format!("/api/v3/depth?symbol={}&limit=1000", ins.symbol),
            }],
            None => Vec::new(),
        }
    }
}

/// Reads a number field (marking it seen).
#[inline(always)]
fn num<'a>(
    sc: &mut Scanner<'a>,
    seen: &mut u32,
    bit: u32,
    field: &'static str,
) -> Result<&'a [u8], FeedError> {
    once(seen, bit, field)?;
    js(field, sc.number())
}

/// The number text of an `a` field (aggTrade's aggregate id).
fn ab_num<'a>(ab: &Ab<'a>) -> Option<&'a [u8]> {
    match ab {
        Ab::Num(n) => Some(n),
        _ => None,
    }
}
