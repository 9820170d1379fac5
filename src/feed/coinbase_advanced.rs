//! Coinbase Advanced Trade (`wss://advanced-trade-ws.coinbase.com`).
//!
//! Messages: `l2_data` (events of type `snapshot`/`update` with `updates`
//! whose `side` is `bid`/`offer`), `market_trades`, `heartbeats`,
//! `subscriptions`, and `{"type":"error"}`. `sequence_num` counts per
//! connection across all channels: any jump is a gap for every book on the
//! connection (reported as a `Gap` status event per book, before the
//! message's own events); an older `sequence_num` is a stale message and is
//! skipped. The trade `side` is taken as the maker's side, as on the
//! Exchange feed, so the taker is the opposite side.

use crate::event::{EventKind, Exchange, Side, StatusCode, NO_INSTRUMENT};
use crate::feed::json::{Scanner, Str};
use crate::feed::{
    fixed_str, js, missing, once, opposite, push_json_list, qty_str, side_of, snapshot_marker,
    u64_field, unexpected, Action, Channel, Common, FeedConfig, FeedError, FrameInfo, FrameKind,
    Sink,
};

/// The Coinbase Advanced Trade adapter.
pub struct AdvancedAdapter {
    pub(crate) c: Common,
    /// Last `sequence_num` seen on this connection.
    last_seq: Option<u64>,
    /// Instruments with a book on this connection (level2 data seen or
    /// subscribed).
    has_book: Vec<bool>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Chan {
    L2,
    Trades,
    Heartbeats,
    Subscriptions,
    Other,
}

impl AdvancedAdapter {
    pub fn new(config: FeedConfig) -> AdvancedAdapter {
        AdvancedAdapter {
            c: Common::new(Exchange::CoinbaseAdvanced, config),
            last_seq: None,
            has_book: Vec::new(),
        }
    }

    /// Forgets the connection's sequence (call on reconnect).
    pub fn reset_connection(&mut self) {
        self.last_seq = None;
    }

    fn mark_book(&mut self, id: u16) {
        let i = id as usize;
        if self.has_book.len() <= i {
            self.has_book.resize(i + 1, false);
        }
        self.has_book[i] = true;
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
        let mut it = js("(message)", sc.object())?;
        let mut chan = None;
        let mut seq = None;
        let mut ts = 0i64;
        let mut events_raw = None;
        let mut done = None;
        let mut typ: Option<Str> = None;
        let mut seen = 0u32;
        while let Some(k) = js("(message)", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"channel" => {
                    once(&mut seen, 1, "channel")?;
                    let s = js("channel", sc.string())?;
                    chan = Some(match s.raw {
                        b"l2_data" => Chan::L2,
                        b"market_trades" => Chan::Trades,
                        b"heartbeats" => Chan::Heartbeats,
                        b"subscriptions" => Chan::Subscriptions,
                        _ => Chan::Other,
                    });
                }
                b"sequence_num" => {
                    once(&mut seen, 2, "sequence_num")?;
                    let n = js("sequence_num", sc.number())?;
                    seq = Some(u64_field("sequence_num", n)?);
                }
                b"timestamp" => {
                    once(&mut seen, 4, "timestamp")?;
                    let s = js("timestamp", sc.string())?;
                    ts = self.c.ts_cached("timestamp", &s)?;
                }
                b"events" => {
                    once(&mut seen, 8, "events")?;
                    match (chan, seq) {
                        // Fast path (Coinbase's order): everything the
                        // events need is known, parse them in place.
                        (Some(ch), Some(n)) if seen & 4 != 0 && ch != Chan::Other => {
                            done = Some(self.body(&mut sc, ch, n, ts)?);
                        }
                        _ => events_raw = Some(js("events", sc.raw_value())?),
                    }
                }
                b"type" => {
                    once(&mut seen, 16, "type")?;
                    typ = Some(js("type", sc.string())?);
                }
                _ => js("(message)", sc.skip_value())?,
            }
        }
        js("(message)", sc.finish())?;

        if typ.is_some_and(|t| t.raw == b"error") {
            self.c.groups.clear();
            self.c
                .status(NO_INSTRUMENT, StatusCode::SubscribeFailed, 0, 0);
            return Ok(FrameKind::Rejected);
        }
        let (kind, gap) = match done {
            Some(d) => d,
            None => {
                let Some(chan) = chan else {
                    return Ok(FrameKind::Unknown);
                };
                if chan == Chan::Other {
                    return Ok(FrameKind::Unknown);
                }
                let seq = seq.ok_or(missing("sequence_num"))?;
                let events = events_raw.ok_or(missing("events"))?;
                self.body(&mut Scanner::new(events), chan, seq, ts)?
            }
        };
        if kind == FrameKind::Stale {
            self.c.stats.stale += 1;
            return Ok(kind);
        }
        // Only now, with the whole message valid, commit the sequence.
        if gap {
            self.c.stats.gaps += 1;
        }
        self.last_seq = seq;
        Ok(kind)
    }

    /// The `events` of a message with sequence number `seq`: a stale
    /// message is skipped; a gap is reported (for the books that existed
    /// before this message) ahead of the message's own events. Returns the
    /// frame kind and whether there was a gap; commits nothing.
    fn body(
        &mut self,
        sc: &mut Scanner<'_>,
        chan: Chan,
        seq: u64,
        ts: i64,
    ) -> Result<(FrameKind, bool), FeedError> {
        if self.last_seq.is_some_and(|last| seq <= last) {
            js("events", sc.skip_value())?;
            return Ok((FrameKind::Stale, false));
        }
        let gap = match self.last_seq {
            Some(last) if seq > last + 1 => Some((last + 1, seq - last - 1)),
            _ => None,
        };
        if let Some((first, count)) = gap {
            for id in 0..self.has_book.len() {
                if self.has_book[id] {
                    let n = count.min(i64::MAX as u64) as i64;
                    self.c.status(id as u16, StatusCode::Gap, first, n);
                }
            }
        }
        let kind = match chan {
            Chan::L2 => self.l2_events(sc, seq, ts)?,
            Chan::Trades => self.trade_events(sc, seq)?,
            Chan::Subscriptions => self.subscriptions(sc)?,
            Chan::Heartbeats | Chan::Other => {
                js("events", sc.skip_value())?;
                FrameKind::Heartbeat
            }
        };
        Ok((kind, gap.is_some()))
    }

    /// `[{"type":"update","product_id":..,"updates":[..]}, ...]`
    fn l2_events(
        &mut self,
        sc: &mut Scanner<'_>,
        seq: u64,
        ts: i64,
    ) -> Result<FrameKind, FeedError> {
        let mut arr = js("events", sc.array())?;
        let mut kind = FrameKind::Skipped;
        while js("events", sc.next_elem(&mut arr))? {
            let mut it = js("events[]", sc.object())?;
            let mut snapshot = None;
            let mut inst: Option<Option<u16>> = None;
            let mut deferred = None;
            let mut seen = 0u32;
            let mut opened = false;
            while let Some(k) = js("events[]", sc.next_key(&mut it))? {
                match &*k.decoded() {
                    b"type" => {
                        once(&mut seen, 1, "events[].type")?;
                        let s = js("events[].type", sc.string())?;
                        snapshot = Some(match s.raw {
                            b"snapshot" => true,
                            b"update" => false,
                            _ => return Err(unexpected("events[].type", &s)),
                        });
                    }
                    b"product_id" => {
                        once(&mut seen, 2, "events[].product_id")?;
                        let s = js("events[].product_id", sc.string())?;
                        inst = Some(
                            self.c
                                .instruments
                                .lookup("events[].product_id", &s.decoded())?,
                        );
                    }
                    b"updates" => {
                        once(&mut seen, 4, "events[].updates")?;
                        match (snapshot, inst) {
                            (Some(snap), Some(Some(id))) => {
                                self.open(id, snap, seq, ts);
                                opened = true;
                                self.updates(sc, id, snap, seq)?;
                            }
                            (_, Some(None)) => js("events[].updates", sc.skip_value())?,
                            _ => deferred = Some(js("events[].updates", sc.raw_value())?),
                        }
                    }
                    _ => js("events[]", sc.skip_value())?,
                }
            }
            let snap = snapshot.ok_or(missing("events[].type"))?;
            let Some(id) = inst.ok_or(missing("events[].product_id"))? else {
                continue;
            };
            if !opened {
                self.open(id, snap, seq, ts);
                match deferred {
                    Some(raw) => self.updates(&mut Scanner::new(raw), id, snap, seq)?,
                    None => return Err(missing("events[].updates")),
                }
            }
            if snap {
                snapshot_marker(&mut self.c, EventKind::SnapshotEnd, id, ts, seq);
            }
            self.c.close_group();
            self.mark_book(id);
            kind = if snap {
                FrameKind::BookSnapshot
            } else {
                FrameKind::BookUpdate
            };
        }
        Ok(kind)
    }

    fn open(&mut self, id: u16, snapshot: bool, seq: u64, ts: i64) {
        let mut upd = self.c.book_update(id, snapshot);
        upd.last_id = seq;
        self.c.open_group(Some(upd));
        if snapshot {
            snapshot_marker(&mut self.c, EventKind::SnapshotBegin, id, ts, seq);
        }
    }

    /// `[{"side":"bid","event_time":..,"price_level":..,"new_quantity":..}]`
    fn updates(
        &mut self,
        sc: &mut Scanner<'_>,
        id: u16,
        snapshot: bool,
        seq: u64,
    ) -> Result<(), FeedError> {
        const F: &str = "events[].updates[]";
        let (ps, qs) = self.c.instruments.scales(id);
        let mut arr = js(F, sc.array())?;
        while js(F, sc.next_elem(&mut arr))? {
            let mut it = js(F, sc.object())?;
            let (mut side, mut price, mut qty, mut ts) = (None, None, None, 0);
            let mut seen = 0u32;
            while let Some(k) = js(F, sc.next_key(&mut it))? {
                match &*k.decoded() {
                    b"side" => {
                        once(&mut seen, 1, "events[].updates[].side")?;
                        let s = js("events[].updates[].side", sc.string())?;
                        side = Some(match s.raw {
                            b"bid" => Side::Bid,
                            b"offer" | b"ask" => Side::Ask,
                            _ => return Err(unexpected("events[].updates[].side", &s)),
                        });
                    }
                    b"price_level" => {
                        once(&mut seen, 2, "events[].updates[].price_level")?;
                        let s = js("events[].updates[].price_level", sc.string())?;
                        price = Some(fixed_str("events[].updates[].price_level", &s, ps)?);
                    }
                    b"new_quantity" => {
                        once(&mut seen, 4, "events[].updates[].new_quantity")?;
                        let s = js("events[].updates[].new_quantity", sc.string())?;
                        qty = Some(qty_str("events[].updates[].new_quantity", &s, qs)?);
                    }
                    b"event_time" => {
                        once(&mut seen, 8, "events[].updates[].event_time")?;
                        let s = js("events[].updates[].event_time", sc.string())?;
                        ts = self.c.ts_cached("events[].updates[].event_time", &s)?;
                    }
                    _ => js(F, sc.skip_value())?,
                }
            }
            let side = side.ok_or(missing("events[].updates[].side"))?;
            let price = price.ok_or(missing("events[].updates[].price_level"))?;
            let qty = qty.ok_or(missing("events[].updates[].new_quantity"))?;
            let mut ev = crate::feed::level_event(&self.c, id, side, price, qty, snapshot);
            ev.exch_ts = ts;
            ev.seq = seq;
            self.c.push(ev);
        }
        Ok(())
    }

    /// `[{"type":"update","trades":[{..}]}]`
    fn trade_events(&mut self, sc: &mut Scanner<'_>, seq: u64) -> Result<FrameKind, FeedError> {
        let _ = seq;
        let mut arr = js("events", sc.array())?;
        let mut any = false;
        let mut known = false;
        self.c.open_group(None);
        while js("events", sc.next_elem(&mut arr))? {
            let mut it = js("events[]", sc.object())?;
            while let Some(k) = js("events[]", sc.next_key(&mut it))? {
                if &*k.decoded() != b"trades" {
                    js("events[]", sc.skip_value())?;
                    continue;
                }
                let mut trades = js("events[].trades", sc.array())?;
                while js("events[].trades", sc.next_elem(&mut trades))? {
                    any = true;
                    known |= self.trade(sc)?;
                }
            }
        }
        self.c.close_group();
        Ok(if any && !known {
            FrameKind::Skipped
        } else {
            FrameKind::Trade
        })
    }

    fn trade(&mut self, sc: &mut Scanner<'_>) -> Result<bool, FeedError> {
        const F: &str = "events[].trades[]";
        let mut it = js(F, sc.object())?;
        let (mut sym, mut tid, mut price, mut size, mut side, mut ts) =
            (None, None, None, None, None, 0);
        let mut seen = 0u32;
        while let Some(k) = js(F, sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"product_id" => {
                    once(&mut seen, 1, "events[].trades[].product_id")?;
                    sym = Some(js("events[].trades[].product_id", sc.string())?);
                }
                b"trade_id" => {
                    once(&mut seen, 2, "events[].trades[].trade_id")?;
                    let s = js("events[].trades[].trade_id", sc.string())?;
                    tid = Some(u64_field("events[].trades[].trade_id", &s.decoded())?);
                }
                b"price" => {
                    once(&mut seen, 4, "events[].trades[].price")?;
                    price = Some(js("events[].trades[].price", sc.string())?);
                }
                b"size" => {
                    once(&mut seen, 8, "events[].trades[].size")?;
                    size = Some(js("events[].trades[].size", sc.string())?);
                }
                b"side" => {
                    once(&mut seen, 16, "events[].trades[].side")?;
                    let s = js("events[].trades[].side", sc.string())?;
                    side = Some(side_of("events[].trades[].side", &s)?);
                }
                b"time" => {
                    once(&mut seen, 32, "events[].trades[].time")?;
                    let s = js("events[].trades[].time", sc.string())?;
                    ts = self.c.ts_cached("events[].trades[].time", &s)?;
                }
                _ => js(F, sc.skip_value())?,
            }
        }
        let sym = sym.ok_or(missing("events[].trades[].product_id"))?;
        let tid = tid.ok_or(missing("events[].trades[].trade_id"))?;
        let price = price.ok_or(missing("events[].trades[].price"))?;
        let size = size.ok_or(missing("events[].trades[].size"))?;
        let maker = side.ok_or(missing("events[].trades[].side"))?;
        let Some(id) = self
            .c
            .instruments
            .lookup("events[].trades[].product_id", &sym.decoded())?
        else {
            return Ok(false);
        };
        let (ps, qs) = self.c.instruments.scales(id);
        let mut ev = self.c.ev(EventKind::Trade, id);
        ev.side = opposite(maker) as u8;
        ev.price = fixed_str("events[].trades[].price", &price, ps)?;
        ev.qty = qty_str("events[].trades[].size", &size, qs)?;
        ev.seq = tid;
        ev.exch_ts = ts;
        self.c.push(ev);
        Ok(true)
    }

    /// `[{"subscriptions":{"level2":["BTC-USD"],...}}]`
    fn subscriptions(&mut self, sc: &mut Scanner<'_>) -> Result<FrameKind, FeedError> {
        let mut arr = js("events", sc.array())?;
        while js("events", sc.next_elem(&mut arr))? {
            let mut it = js("events[]", sc.object())?;
            while let Some(k) = js("events[]", sc.next_key(&mut it))? {
                if &*k.decoded() != b"subscriptions" {
                    js("events[]", sc.skip_value())?;
                    continue;
                }
                let mut subs = js("events[].subscriptions", sc.object())?;
                while let Some(ch) = js("events[].subscriptions", sc.next_key(&mut subs))? {
                    let level2 = matches!(&*ch.decoded(), b"level2" | b"l2_data");
                    let mut ids = js("events[].subscriptions", sc.array())?;
                    while js("events[].subscriptions", sc.next_elem(&mut ids))? {
                        let s = js("events[].subscriptions[]", sc.string())?;
                        if !level2 {
                            continue;
                        }
                        if let Some(id) = self
                            .c
                            .instruments
                            .lookup("events[].subscriptions[]", &s.decoded())?
                        {
                            self.mark_book(id);
                            self.c.status(id, StatusCode::Subscribed, 0, 0);
                        }
                    }
                }
            }
        }
        Ok(FrameKind::Subscribed)
    }

    /// One message per channel (Advanced Trade takes one channel per request).
    pub fn subscribe_messages(&self, channels: &[Channel], subscribe: bool) -> Vec<String> {
        let syms: Vec<&str> = self
            .c
            .instruments
            .list
            .iter()
            .map(|i| i.symbol.as_str())
            .collect();
        channels
            .iter()
            .filter_map(|ch| request(&syms, *ch, subscribe))
            .collect()
    }

    /// Unsubscribe and resubscribe `level2` for the product: a snapshot follows.
    pub fn resync_actions(&self, instrument: u16) -> Vec<Action> {
        crate::feed::resubscribe_book(&self.c, instrument, |syms, sub| {
            request(syms, Channel::Book, sub)
        })
    }
}

fn request(syms: &[&str], ch: Channel, subscribe: bool) -> Option<String> {
    let typ = if subscribe {
        "subscribe"
    } else {
        "unsubscribe"
    };
    let name = match ch {
        Channel::Trades => "market_trades",
        Channel::Book => "level2",
        Channel::Heartbeat => {
            return Some(format!("{{\"type\":\"{typ}\",\"channel\":\"heartbeats\"}}"));
        }
        // The adapter does not parse `ticker`.
        Channel::Bbo => return None,
    };
    if syms.is_empty() {
        return None;
    }
    let mut s = format!("{{\"type\":\"{typ}\",\"product_ids\":[");
    push_json_list(&mut s, syms.iter().copied());
    s.push_str(&format!("],\"channel\":\"{name}\"}}"));
    Some(s)
}
