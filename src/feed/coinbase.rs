//! Coinbase Exchange feed (`wss://ws-feed.exchange.coinbase.com`).
//!
//! Messages: `subscriptions`, `level2`/`level2_batch` (`snapshot` then
//! `l2update`), `match`/`last_match` (the `side` is the *maker's*, so the
//! taker is the opposite side), `heartbeat`, `ticker` (BBO), `error`.
//!
//! Gaps: `level2` carries no sequence numbers, so gaps are found per product
//! from the trades: `trade_id` must grow by one from match to match, a
//! heartbeat's `last_trade_id` must not run ahead of the last match seen,
//! and `sequence` must only grow (an older one is a stale message and is
//! skipped). A gap is reported as a `Gap` status event; the book builder
//! then resyncs the product's book by resubscribing.

use crate::event::{EventKind, Exchange, Side, StatusCode, NO_INSTRUMENT};
use crate::feed::json::{Scanner, Str};
use crate::feed::{
    fixed_str, js, missing, once, opposite, pair_levels, push_json_list, qty_str, side_of,
    snapshot_marker, stamp_group, u64_field, Action, Channel, Common, FeedConfig, FeedError,
    FrameInfo, FrameKind, Sink,
};

/// Per-product gap-detection state.
#[derive(Clone, Copy, Debug, Default)]
struct PerProduct {
    last_trade_id: Option<u64>,
    last_sequence: Option<u64>,
}

/// The Coinbase Exchange adapter.
pub struct CoinbaseAdapter {
    pub(crate) c: Common,
    per: Vec<PerProduct>,
    /// Scratch for the products named in a `subscriptions` reply.
    subscribed: Vec<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Type {
    Snapshot,
    L2Update,
    Match,
    LastMatch,
    Heartbeat,
    Ticker,
    Subscriptions,
    Error,
    Other,
}

/// A book array: parsed on the spot when type and product are known, kept
/// as text otherwise.
#[derive(Clone, Copy, Default)]
enum Arr<'a> {
    #[default]
    None,
    Parsed,
    Raw(&'a [u8]),
}

#[derive(Default)]
struct Fields<'a> {
    typ: Option<Type>,
    product: Option<Option<u16>>,
    time: Option<Str<'a>>,
    sequence: Option<&'a [u8]>,
    trade_id: Option<&'a [u8]>,
    last_trade_id: Option<&'a [u8]>,
    side: Option<Str<'a>>,
    size: Option<Str<'a>>,
    price: Option<Str<'a>>,
    best_bid: Option<Str<'a>>,
    best_ask: Option<Str<'a>>,
    best_bid_size: Option<Str<'a>>,
    best_ask_size: Option<Str<'a>>,
    bids: Arr<'a>,
    asks: Arr<'a>,
    changes: Arr<'a>,
    channels: Option<&'a [u8]>,
    seen: u32,
    /// The book group of this message is open in `Common`.
    group_open: bool,
}

const SNAP_BIDS: (&str, &str, &str) = ("bids", "bids[][0]", "bids[][1]");
const SNAP_ASKS: (&str, &str, &str) = ("asks", "asks[][0]", "asks[][1]");

impl CoinbaseAdapter {
    pub fn new(config: FeedConfig) -> CoinbaseAdapter {
        CoinbaseAdapter {
            c: Common::new(Exchange::Coinbase, config),
            per: Vec::new(),
            subscribed: Vec::new(),
        }
    }

    fn per(&mut self, id: u16) -> &mut PerProduct {
        let i = id as usize;
        if self.per.len() <= i {
            self.per.resize(i + 1, PerProduct::default());
        }
        &mut self.per[i]
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
        let mut it = js("(message)", sc.object())?;
        while let Some(k) = js("(message)", sc.next_key(&mut it))? {
            let key = k.decoded();
            match &*key {
                b"type" => {
                    once(&mut f.seen, 1, "type")?;
                    let s = js("type", sc.string())?;
                    f.typ = Some(match s.raw {
                        b"snapshot" => Type::Snapshot,
                        b"l2update" => Type::L2Update,
                        b"match" => Type::Match,
                        b"last_match" => Type::LastMatch,
                        b"heartbeat" => Type::Heartbeat,
                        b"ticker" => Type::Ticker,
                        b"subscriptions" => Type::Subscriptions,
                        b"error" => Type::Error,
                        _ => Type::Other,
                    });
                    self.ensure_open(&mut f);
                }
                b"product_id" => {
                    once(&mut f.seen, 2, "product_id")?;
                    let s = js("product_id", sc.string())?;
                    let id = self.c.instruments.lookup("product_id", &s.decoded())?;
                    f.product = Some(id);
                    self.ensure_open(&mut f);
                }
                b"time" => f.time = Some(string(&mut sc, &mut f.seen, 4, "time")?),
                b"sequence" => f.sequence = Some(number(&mut sc, &mut f.seen, 8, "sequence")?),
                b"trade_id" => f.trade_id = Some(number(&mut sc, &mut f.seen, 16, "trade_id")?),
                b"last_trade_id" => {
                    f.last_trade_id = Some(number(&mut sc, &mut f.seen, 32, "last_trade_id")?)
                }
                b"side" => f.side = Some(string(&mut sc, &mut f.seen, 64, "side")?),
                b"size" => f.size = Some(string(&mut sc, &mut f.seen, 128, "size")?),
                b"price" => f.price = Some(string(&mut sc, &mut f.seen, 256, "price")?),
                b"best_bid" => f.best_bid = Some(string(&mut sc, &mut f.seen, 512, "best_bid")?),
                b"best_ask" => f.best_ask = Some(string(&mut sc, &mut f.seen, 1024, "best_ask")?),
                b"best_bid_size" => {
                    f.best_bid_size = Some(string(&mut sc, &mut f.seen, 2048, "best_bid_size")?)
                }
                b"best_ask_size" => {
                    f.best_ask_size = Some(string(&mut sc, &mut f.seen, 4096, "best_ask_size")?)
                }
                b"bids" => {
                    once(&mut f.seen, 8192, "bids")?;
                    f.bids = self.arr(&mut sc, &mut f, Side::Bid)?;
                }
                b"asks" => {
                    once(&mut f.seen, 16384, "asks")?;
                    f.asks = self.arr(&mut sc, &mut f, Side::Ask)?;
                }
                b"changes" => {
                    once(&mut f.seen, 32768, "changes")?;
                    f.changes = self.arr(&mut sc, &mut f, Side::None)?;
                }
                b"channels" => {
                    once(&mut f.seen, 65536, "channels")?;
                    f.channels = Some(js("channels", sc.raw_value())?);
                }
                _ => js("(message)", sc.skip_value())?,
            }
        }
        js("(message)", sc.finish())?;
        self.finish(&mut f)
    }

    /// Opens the book group once type and product are both known.
    fn ensure_open(&mut self, f: &mut Fields<'_>) {
        if f.group_open {
            return;
        }
        let snapshot = match f.typ {
            Some(Type::Snapshot) => true,
            Some(Type::L2Update) => false,
            _ => return,
        };
        let Some(Some(id)) = f.product else { return };
        let upd = self.c.book_update(id, snapshot);
        self.c.open_group(Some(upd));
        if snapshot {
            snapshot_marker(&mut self.c, EventKind::SnapshotBegin, id, 0, 0);
        }
        f.group_open = true;
    }

    /// `bids`/`asks` (side given) or `changes` (`Side::None`).
    fn arr<'a>(
        &mut self,
        sc: &mut Scanner<'a>,
        f: &mut Fields<'a>,
        side: Side,
    ) -> Result<Arr<'a>, FeedError> {
        let field = match side {
            Side::Bid => "bids",
            Side::Ask => "asks",
            Side::None => "changes",
        };
        let wanted = match side {
            Side::None => Type::L2Update,
            _ => Type::Snapshot,
        };
        match (f.typ, f.product) {
            (Some(t), Some(Some(id))) if t == wanted => {
                self.ensure_open(f);
                self.book_array(sc, id, side)?;
                Ok(Arr::Parsed)
            }
            _ => Ok(Arr::Raw(js(field, sc.raw_value())?)),
        }
    }

    fn book_array(&mut self, sc: &mut Scanner<'_>, id: u16, side: Side) -> Result<(), FeedError> {
        match side {
            Side::Bid => pair_levels(&mut self.c, sc, id, side, true, 0, SNAP_BIDS),
            Side::Ask => pair_levels(&mut self.c, sc, id, side, true, 0, SNAP_ASKS),
            Side::None => self.changes(sc, id),
        }
    }

    /// `[["sell","0.00001306","660.5"], ...]`
    fn changes(&mut self, sc: &mut Scanner<'_>, id: u16) -> Result<(), FeedError> {
        const F: &str = "changes";
        let (ps, qs) = self.c.instruments.scales(id);
        let mut arr = js(F, sc.array())?;
        while js(F, sc.next_elem(&mut arr))? {
            let mut t = js(F, sc.array())?;
            let mut vals: [Option<Str>; 3] = [None; 3];
            for v in &mut vals {
                if !js(F, sc.next_elem(&mut t))? {
                    return Err(missing("changes[][]"));
                }
                *v = Some(js(F, sc.string())?);
            }
            while js(F, sc.next_elem(&mut t))? {
                js(F, sc.skip_value())?;
            }
            let [Some(s), Some(p), Some(q)] = vals else {
                return Err(missing("changes[][]"));
            };
            let side = side_of("changes[][0]", &s)?;
            let price = fixed_str("changes[][1]", &p, ps)?;
            let qty = qty_str("changes[][2]", &q, qs)?;
            let ev = crate::feed::level_event(&self.c, id, side, price, qty, false);
            self.c.push(ev);
        }
        Ok(())
    }

    fn finish(&mut self, f: &mut Fields<'_>) -> Result<FrameKind, FeedError> {
        let typ = f.typ.ok_or(missing("type"))?;
        match typ {
            Type::Other => return Ok(FrameKind::Unknown),
            Type::Error => {
                self.c
                    .status(NO_INSTRUMENT, StatusCode::SubscribeFailed, 0, 0);
                return Ok(FrameKind::Rejected);
            }
            Type::Subscriptions => return self.subscriptions(f.channels),
            _ => {}
        }
        let id = match f.product.ok_or(missing("product_id"))? {
            Some(id) => id,
            None => return Ok(FrameKind::Skipped),
        };
        let ts = match &f.time {
            Some(t) => self.c.ts_cached("time", t)?,
            None => 0,
        };
        match typ {
            Type::Snapshot | Type::L2Update => {
                let snapshot = typ == Type::Snapshot;
                self.ensure_open(f);
                let arrays: &[(Arr, Side, &str)] = if snapshot {
                    &[(f.bids, Side::Bid, "bids"), (f.asks, Side::Ask, "asks")]
                } else {
                    &[(f.changes, Side::None, "changes")]
                };
                for &(a, side, field) in arrays {
                    match a {
                        Arr::Parsed => {}
                        Arr::Raw(raw) => self.book_array(&mut Scanner::new(raw), id, side)?,
                        Arr::None => return Err(missing(field)),
                    }
                }
                if snapshot {
                    snapshot_marker(&mut self.c, EventKind::SnapshotEnd, id, 0, 0);
                }
                stamp_group(&mut self.c, ts, 0);
                self.c.close_group();
                Ok(if snapshot {
                    FrameKind::BookSnapshot
                } else {
                    FrameKind::BookUpdate
                })
            }
            Type::Match | Type::LastMatch => {
                let tid = u64_field("trade_id", f.trade_id.ok_or(missing("trade_id"))?)?;
                let seq = match f.sequence {
                    Some(s) => Some(u64_field("sequence", s)?),
                    None => None,
                };
                let maker = side_of("side", &f.side.ok_or(missing("side"))?)?;
                let (ps, qs) = self.c.instruments.scales(id);
                let price = fixed_str("price", &f.price.ok_or(missing("price"))?, ps)?;
                let qty = qty_str("size", &f.size.ok_or(missing("size"))?, qs)?;
                if !self.check_sequence(id, seq) {
                    return Ok(FrameKind::Stale);
                }
                let p = *self.per(id);
                match p.last_trade_id {
                    Some(last) if tid <= last => {
                        self.c.stats.stale += 1;
                        return Ok(FrameKind::Stale);
                    }
                    Some(last) if tid > last + 1 => self.gap(id, last + 1, tid - last - 1),
                    _ => {}
                }
                self.per(id).last_trade_id = Some(tid);
                let mut ev = self.c.ev(EventKind::Trade, id);
                ev.side = opposite(maker) as u8;
                ev.price = price;
                ev.qty = qty;
                ev.seq = tid;
                ev.exch_ts = ts;
                self.c.open_group(None);
                self.c.push(ev);
                self.c.close_group();
                Ok(FrameKind::Trade)
            }
            Type::Heartbeat => {
                let seq = match f.sequence {
                    Some(s) => Some(u64_field("sequence", s)?),
                    None => None,
                };
                let last_tid = match f.last_trade_id {
                    Some(s) => Some(u64_field("last_trade_id", s)?),
                    None => None,
                };
                if !self.check_sequence(id, seq) {
                    return Ok(FrameKind::Stale);
                }
                if let (Some(hb), Some(last)) = (last_tid, self.per(id).last_trade_id) {
                    if hb > last {
                        self.gap(id, last + 1, hb - last);
                        self.per(id).last_trade_id = Some(hb);
                    }
                }
                Ok(FrameKind::Heartbeat)
            }
            Type::Ticker => {
                let seq = match f.sequence {
                    Some(s) => u64_field("sequence", s)?,
                    None => 0,
                };
                let (ps, qs) = self.c.instruments.scales(id);
                let (Some(bb), Some(ba)) = (f.best_bid, f.best_ask) else {
                    return Err(missing(if f.best_bid.is_none() {
                        "best_bid"
                    } else {
                        "best_ask"
                    }));
                };
                self.c.open_group(None);
                for (side, p, q, pf, qf) in [
                    (Side::Bid, bb, f.best_bid_size, "best_bid", "best_bid_size"),
                    (Side::Ask, ba, f.best_ask_size, "best_ask", "best_ask_size"),
                ] {
                    let mut ev = self.c.ev(EventKind::Bbo, id);
                    ev.side = side as u8;
                    ev.price = fixed_str(pf, &p, ps)?;
                    // The 2021 ticker has no sizes: 0 means "not given".
                    ev.qty = match q {
                        Some(q) => qty_str(qf, &q, qs)?,
                        None => 0,
                    };
                    ev.seq = seq;
                    ev.exch_ts = ts;
                    self.c.push(ev);
                }
                self.c.close_group();
                Ok(FrameKind::Bbo)
            }
            Type::Other | Type::Error | Type::Subscriptions => Ok(FrameKind::Unknown),
        }
    }

    /// `false` (and counted) when `seq` is not newer than the last one seen
    /// for the product.
    fn check_sequence(&mut self, id: u16, seq: Option<u64>) -> bool {
        let Some(seq) = seq else { return true };
        let p = self.per(id);
        if p.last_sequence.is_some_and(|last| seq <= last) {
            self.c.stats.stale += 1;
            return false;
        }
        p.last_sequence = Some(seq);
        true
    }

    fn gap(&mut self, id: u16, first_missing: u64, count: u64) {
        self.c.stats.gaps += 1;
        self.c.status(
            id,
            StatusCode::Gap,
            first_missing,
            count.min(i64::MAX as u64) as i64,
        );
    }

    /// `{"type":"subscriptions","channels":[{"name":..,"product_ids":[..]}]}`
    fn subscriptions(&mut self, channels: Option<&[u8]>) -> Result<FrameKind, FeedError> {
        const F: &str = "channels";
        let raw = channels.ok_or(missing(F))?;
        let mut sc = Scanner::new(raw);
        self.subscribed.clear();
        let mut arr = js(F, sc.array())?;
        while js(F, sc.next_elem(&mut arr))? {
            // Older replies list bare channel names.
            if sc.peek() == Some(b'"') {
                js(F, sc.skip_value())?;
                continue;
            }
            let mut it = js(F, sc.object())?;
            while let Some(k) = js(F, sc.next_key(&mut it))? {
                if &*k.decoded() == b"product_ids" {
                    let mut ids = js("channels[].product_ids", sc.array())?;
                    while js("channels[].product_ids", sc.next_elem(&mut ids))? {
                        let s = js("channels[].product_ids[]", sc.string())?;
                        let id = self
                            .c
                            .instruments
                            .lookup("channels[].product_ids[]", &s.decoded())?;
                        if let Some(id) = id {
                            if !self.subscribed.contains(&id) {
                                self.subscribed.push(id);
                            }
                        }
                    }
                } else {
                    js(F, sc.skip_value())?;
                }
            }
        }
        for i in 0..self.subscribed.len() {
            let id = self.subscribed[i];
            self.c.status(id, StatusCode::Subscribed, 0, 0);
        }
        Ok(FrameKind::Subscribed)
    }

    /// Subscribe (or unsubscribe) message for every product.
    pub fn subscribe_messages(&self, channels: &[Channel], subscribe: bool) -> Vec<String> {
        let syms: Vec<&str> = self
            .c
            .instruments
            .list
            .iter()
            .map(|i| i.symbol.as_str())
            .collect();
        request(&syms, channels, subscribe).into_iter().collect()
    }

    /// Unsubscribe and resubscribe the product's book: a fresh snapshot follows.
    pub fn resync_actions(&self, instrument: u16) -> Vec<Action> {
        crate::feed::resubscribe_book(&self.c, instrument, |syms, sub| {
            request(syms, &[Channel::Book], sub)
        })
    }
}

fn request(syms: &[&str], channels: &[Channel], subscribe: bool) -> Option<String> {
    let names: Vec<&str> = channels
        .iter()
        .map(|c| match c {
            Channel::Trades => "matches",
            // `level2` needs an authenticated connection; `level2_batch`
            // carries the same messages without one.
            Channel::Book => "level2_batch",
            Channel::Bbo => "ticker",
            Channel::Heartbeat => "heartbeat",
        })
        .collect();
    if names.is_empty() || syms.is_empty() {
        return None;
    }
    let typ = if subscribe {
        "subscribe"
    } else {
        "unsubscribe"
    };
    let mut s = format!("{{\"type\":\"{typ}\",\"product_ids\":[");
    push_json_list(&mut s, syms.iter().copied());
    s.push_str("],\"channels\":[");
    push_json_list(&mut s, names);
    s.push_str("]}");
    Some(s)
}

fn string<'a>(
    sc: &mut Scanner<'a>,
    seen: &mut u32,
    bit: u32,
    field: &'static str,
) -> Result<Str<'a>, FeedError> {
    once(seen, bit, field)?;
    js(field, sc.string())
}

fn number<'a>(
    sc: &mut Scanner<'a>,
    seen: &mut u32,
    bit: u32,
    field: &'static str,
) -> Result<&'a [u8], FeedError> {
    once(seen, bit, field)?;
    js(field, sc.number())
}
