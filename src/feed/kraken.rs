//! Kraken WebSocket v2 (`wss://ws.kraken.com/v2`).
//!
//! Messages: `status` (with a `connection_id` above 2^53, kept exact),
//! subscribe/unsubscribe acknowledgements (`success: false` carries an
//! `error`), `book` snapshot/update with a CRC-32 `checksum`, `trade`,
//! `ticker` (BBO), `heartbeat`, `pong`. Prices and quantities are bare JSON
//! numbers; the adapter reads their text, never a float, and records how
//! many decimals the pair is written with so the book builder can recompute
//! the checksum over the text as sent.

use crate::event::{EventKind, Exchange, Side, StatusCode, NO_INSTRUMENT};
use crate::feed::json::{Scanner, Str};
use crate::feed::{
    fixed_field, js, missing, once, push_json_list, qty_field, snapshot_marker, u64_field,
    unexpected, wire_decimals, Action, Channel, Common, FeedConfig, FeedError, FrameInfo,
    FrameKind, Sink, ValueError,
};

/// Per-instrument protocol state.
#[derive(Clone, Copy, Debug, Default)]
struct PerInstrument {
    /// Subscribed book depth from the ack (0: not acknowledged yet).
    depth: u16,
    /// Decimals the pair's prices / quantities are sent with (largest seen
    /// since the last snapshot).
    price_decimals: u8,
    qty_decimals: u8,
}

/// The Kraken v2 adapter.
pub struct KrakenAdapter {
    pub(crate) c: Common,
    per: Vec<PerInstrument>,
    /// `connection_id` from the last `status` message (exact u64).
    pub connection_id: Option<u64>,
    /// `system` from the last `status` message (`online`, `maintenance`, ...).
    pub system: String,
}

/// Which top-level message a frame is, from `channel` / `method`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chan {
    Book,
    Trade,
    Ticker,
    Heartbeat,
    Status,
    Other,
}

impl KrakenAdapter {
    pub fn new(config: FeedConfig) -> KrakenAdapter {
        KrakenAdapter {
            c: Common::new(Exchange::Kraken, config),
            per: Vec::new(),
            connection_id: None,
            system: String::new(),
        }
    }

    fn per(&mut self, id: u16) -> &mut PerInstrument {
        let i = id as usize;
        if self.per.len() <= i {
            self.per.resize(i + 1, PerInstrument::default());
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
        let mut it = js("(message)", sc.object())?;
        let mut chan: Option<Chan> = None;
        let mut typ: Option<Str> = None;
        let mut data_raw: Option<&[u8]> = None;
        let mut data_done: Option<FrameKind> = None;
        let mut method: Option<Str> = None;
        let mut success: Option<bool> = None;
        let mut result_raw: Option<&[u8]> = None;
        let mut error: Option<Str> = None;
        let mut err_symbol: Option<Str> = None;
        let mut seen = 0u32;
        while let Some(k) = js("(message)", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"channel" => {
                    once(&mut seen, 1, "channel")?;
                    let s = js("channel", sc.string())?;
                    chan = Some(match s.raw {
                        b"book" => Chan::Book,
                        b"trade" => Chan::Trade,
                        b"ticker" => Chan::Ticker,
                        b"heartbeat" => Chan::Heartbeat,
                        b"status" => Chan::Status,
                        _ => Chan::Other,
                    });
                }
                b"type" => {
                    once(&mut seen, 2, "type")?;
                    typ = Some(js("type", sc.string())?);
                }
                b"data" => {
                    once(&mut seen, 4, "data")?;
                    // Fast path: channel and type already known (the order
                    // Kraken sends); otherwise keep the text for later.
                    match (chan, typ) {
                        (Some(ch), Some(t)) if ch != Chan::Other => {
                            data_done = Some(self.data(&mut sc, ch, &t)?);
                        }
                        _ => data_raw = Some(js("data", sc.raw_value())?),
                    }
                }
                b"method" => {
                    once(&mut seen, 8, "method")?;
                    method = Some(js("method", sc.string())?);
                }
                b"success" => {
                    once(&mut seen, 16, "success")?;
                    success = Some(js("success", sc.boolean())?);
                }
                b"result" => {
                    once(&mut seen, 32, "result")?;
                    result_raw = Some(js("result", sc.raw_value())?);
                }
                b"error" => {
                    once(&mut seen, 64, "error")?;
                    error = Some(js("error", sc.string())?);
                }
                b"symbol" => {
                    once(&mut seen, 128, "symbol")?;
                    err_symbol = Some(js("symbol", sc.string())?);
                }
                _ => js("(message)", sc.skip_value())?,
            }
        }
        js("(message)", sc.finish())?;

        if let Some(m) = method {
            return self.method_reply(&m, success, result_raw, error, err_symbol);
        }
        if let Some(k) = data_done {
            return Ok(k);
        }
        let Some(ch) = chan else {
            return Ok(FrameKind::Unknown);
        };
        match ch {
            Chan::Heartbeat => Ok(FrameKind::Heartbeat),
            Chan::Other => Ok(FrameKind::Unknown),
            _ => {
                let t = typ.ok_or(missing("type"))?;
                let raw = data_raw.ok_or(missing("data"))?;
                let mut sc = Scanner::new(raw);
                self.data(&mut sc, ch, &t)
            }
        }
    }

    /// The `data` array of a channel message.
    fn data(&mut self, sc: &mut Scanner<'_>, ch: Chan, typ: &Str) -> Result<FrameKind, FeedError> {
        let snapshot = match typ.raw {
            b"snapshot" => true,
            b"update" => false,
            _ => return Err(unexpected("type", typ)),
        };
        let mut arr = js("data", sc.array())?;
        let mut any_known = false;
        let mut any = false;
        while js("data", sc.next_elem(&mut arr))? {
            any = true;
            any_known |= match ch {
                Chan::Book => self.book_obj(sc, snapshot)?,
                Chan::Trade => self.trade_obj(sc)?,
                Chan::Ticker => self.ticker_obj(sc)?,
                Chan::Status => {
                    self.status_obj(sc)?;
                    true
                }
                Chan::Heartbeat | Chan::Other => {
                    js("data[]", sc.skip_value())?;
                    true
                }
            };
        }
        if any && !any_known {
            return Ok(FrameKind::Skipped);
        }
        Ok(match ch {
            Chan::Book if snapshot => FrameKind::BookSnapshot,
            Chan::Book => FrameKind::BookUpdate,
            Chan::Trade => FrameKind::Trade,
            Chan::Ticker => FrameKind::Bbo,
            Chan::Status => FrameKind::Status,
            Chan::Heartbeat => FrameKind::Heartbeat,
            Chan::Other => FrameKind::Unknown,
        })
    }

    /// One `book` data object. Returns whether its symbol is known.
    fn book_obj(&mut self, sc: &mut Scanner<'_>, snapshot: bool) -> Result<bool, FeedError> {
        let mut it = js("data[]", sc.object())?;
        let mut inst: Option<Option<u16>> = None;
        let mut deferred: [Option<&[u8]>; 2] = [None, None];
        let mut checksum: Option<u32> = None;
        let mut ts = 0i64;
        let mut seen = 0u32;
        while let Some(k) = js("data[]", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"symbol" => {
                    once(&mut seen, 1, "data[].symbol")?;
                    let s = js("data[].symbol", sc.string())?;
                    let id = self.c.instruments.lookup("data[].symbol", &s.decoded())?;
                    if let Some(id) = id {
                        self.open_book(id, snapshot);
                    }
                    inst = Some(id);
                }
                b"bids" => {
                    once(&mut seen, 2, "data[].bids")?;
                    self.levels_or_defer(sc, inst, Side::Bid, snapshot, &mut deferred[0])?;
                }
                b"asks" => {
                    once(&mut seen, 4, "data[].asks")?;
                    self.levels_or_defer(sc, inst, Side::Ask, snapshot, &mut deferred[1])?;
                }
                b"checksum" => {
                    once(&mut seen, 8, "data[].checksum")?;
                    let n = js("data[].checksum", sc.number())?;
                    let v = u64_field("data[].checksum", n)?;
                    checksum = Some(u32::try_from(v).map_err(|_| FeedError::BadValue {
                        field: "data[].checksum",
                        reason: ValueError::Int(crate::feed::json::IntError::Overflow),
                    })?);
                }
                b"timestamp" => {
                    once(&mut seen, 16, "data[].timestamp")?;
                    let s = js("data[].timestamp", sc.string())?;
                    ts = self.c.ts_cached("data[].timestamp", &s)?;
                }
                _ => js("data[]", sc.skip_value())?,
            }
        }
        let id = match inst.ok_or(missing("data[].symbol"))? {
            Some(id) => id,
            None => return Ok(false),
        };
        if seen & 2 == 0 && snapshot {
            return Err(missing("data[].bids"));
        }
        if seen & 4 == 0 && snapshot {
            return Err(missing("data[].asks"));
        }
        for (i, side) in [(0, Side::Bid), (1, Side::Ask)] {
            if let Some(raw) = deferred[i] {
                let mut sub = Scanner::new(raw);
                self.levels(&mut sub, id, side, snapshot)?;
            }
        }
        let checksum = checksum.ok_or(missing("data[].checksum"))?;
        if snapshot {
            snapshot_marker(&mut self.c, EventKind::SnapshotEnd, id, ts, 0);
        }
        let start = self.c.groups.last().map_or(0, |g| g.start as usize);
        for ev in &mut self.c.events[start..] {
            ev.exch_ts = ts;
        }
        let p = self.per[id as usize];
        let depth = if p.depth != 0 {
            p.depth
        } else {
            self.c.book_depth
        };
        if let Some(b) = self.c.group_book() {
            b.checksum = Some(checksum);
            b.depth = depth;
            b.price_decimals = p.price_decimals;
            b.qty_decimals = p.qty_decimals;
        }
        self.c.close_group();
        Ok(true)
    }

    fn open_book(&mut self, id: u16, snapshot: bool) {
        if snapshot {
            let p = self.per(id);
            p.price_decimals = 0;
            p.qty_decimals = 0;
        } else {
            self.per(id);
        }
        let upd = self.c.book_update(id, snapshot);
        self.c.open_group(Some(upd));
        if snapshot {
            snapshot_marker(&mut self.c, EventKind::SnapshotBegin, id, 0, 0);
        }
    }

    fn levels_or_defer<'a>(
        &mut self,
        sc: &mut Scanner<'a>,
        inst: Option<Option<u16>>,
        side: Side,
        snapshot: bool,
        deferred: &mut Option<&'a [u8]>,
    ) -> Result<(), FeedError> {
        let field = if side == Side::Bid {
            "data[].bids"
        } else {
            "data[].asks"
        };
        match inst {
            Some(Some(id)) => self.levels(sc, id, side, snapshot),
            Some(None) => js(field, sc.skip_value()),
            None => {
                *deferred = Some(js(field, sc.raw_value())?);
                Ok(())
            }
        }
    }

    /// `[{"price":62802.5,"qty":0.02987767}, ...]`
    fn levels(
        &mut self,
        sc: &mut Scanner<'_>,
        id: u16,
        side: Side,
        snapshot: bool,
    ) -> Result<(), FeedError> {
        let (pf, qf) = if side == Side::Bid {
            ("data[].bids[].price", "data[].bids[].qty")
        } else {
            ("data[].asks[].price", "data[].asks[].qty")
        };
        let (ps, qs) = self.c.instruments.scales(id);
        let mut pd = self.per[id as usize].price_decimals;
        let mut qd = self.per[id as usize].qty_decimals;
        let mut arr = js(pf, sc.array())?;
        while js(pf, sc.next_elem(&mut arr))? {
            let mut it = js(pf, sc.object())?;
            let mut price = None;
            let mut qty = None;
            while let Some(k) = js(pf, sc.next_key(&mut it))? {
                match &*k.decoded() {
                    b"price" if price.is_none() => {
                        let t = js(pf, sc.number())?;
                        pd = pd.max(wire_decimals(t));
                        price = Some(fixed_field(pf, t, ps)?);
                    }
                    b"qty" if qty.is_none() => {
                        let t = js(qf, sc.number())?;
                        qd = qd.max(wire_decimals(t));
                        qty = Some(qty_field(qf, t, qs)?);
                    }
                    b"price" => return Err(FeedError::DuplicateField { field: pf }),
                    b"qty" => return Err(FeedError::DuplicateField { field: qf }),
                    _ => js(pf, sc.skip_value())?,
                }
            }
            let price = price.ok_or(missing(pf))?;
            let qty = qty.ok_or(missing(qf))?;
            let ev = crate::feed::level_event(&self.c, id, side, price, qty, snapshot);
            self.c.push(ev);
        }
        let p = &mut self.per[id as usize];
        p.price_decimals = pd;
        p.qty_decimals = qd;
        Ok(())
    }

    /// One `trade` data object; trades of one message form one group.
    fn trade_obj(&mut self, sc: &mut Scanner<'_>) -> Result<bool, FeedError> {
        let mut it = js("data[]", sc.object())?;
        let mut sym = None;
        let mut side = None;
        let mut price = None;
        let mut qty = None;
        let mut trade_id = None;
        let mut ts = 0;
        let mut seen = 0u32;
        while let Some(k) = js("data[]", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"symbol" => {
                    once(&mut seen, 1, "data[].symbol")?;
                    sym = Some(js("data[].symbol", sc.string())?);
                }
                b"side" => {
                    once(&mut seen, 2, "data[].side")?;
                    let s = js("data[].side", sc.string())?;
                    side = Some(match s.raw {
                        b"buy" => Side::Bid,
                        b"sell" => Side::Ask,
                        _ => return Err(unexpected("data[].side", &s)),
                    });
                }
                b"price" => {
                    once(&mut seen, 4, "data[].price")?;
                    price = Some(js("data[].price", sc.number())?);
                }
                b"qty" => {
                    once(&mut seen, 8, "data[].qty")?;
                    qty = Some(js("data[].qty", sc.number())?);
                }
                b"trade_id" => {
                    once(&mut seen, 16, "data[].trade_id")?;
                    let n = js("data[].trade_id", sc.number())?;
                    trade_id = Some(u64_field("data[].trade_id", n)?);
                }
                b"timestamp" => {
                    once(&mut seen, 32, "data[].timestamp")?;
                    let s = js("data[].timestamp", sc.string())?;
                    ts = self.c.ts_cached("data[].timestamp", &s)?;
                }
                _ => js("data[]", sc.skip_value())?,
            }
        }
        let sym = sym.ok_or(missing("data[].symbol"))?;
        let side = side.ok_or(missing("data[].side"))?;
        let price = price.ok_or(missing("data[].price"))?;
        let qty = qty.ok_or(missing("data[].qty"))?;
        let Some(id) = self.c.instruments.lookup("data[].symbol", &sym.decoded())? else {
            return Ok(false);
        };
        let (ps, qs) = self.c.instruments.scales(id);
        let mut ev = self.c.ev(EventKind::Trade, id);
        ev.side = side as u8;
        ev.price = fixed_field("data[].price", price, ps)?;
        ev.qty = qty_field("data[].qty", qty, qs)?;
        ev.seq = trade_id.unwrap_or(0);
        ev.exch_ts = ts;
        self.c.open_group(None);
        self.c.push(ev);
        self.c.close_group();
        Ok(true)
    }

    /// One `ticker` data object -> two BBO events.
    fn ticker_obj(&mut self, sc: &mut Scanner<'_>) -> Result<bool, FeedError> {
        let mut it = js("data[]", sc.object())?;
        let mut sym = None;
        let mut vals: [Option<&[u8]>; 4] = [None; 4];
        let mut ts = 0;
        const NAMES: [&str; 4] = [
            "data[].bid",
            "data[].bid_qty",
            "data[].ask",
            "data[].ask_qty",
        ];
        while let Some(k) = js("data[]", sc.next_key(&mut it))? {
            let slot = match &*k.decoded() {
                b"symbol" => {
                    sym = Some(js("data[].symbol", sc.string())?);
                    continue;
                }
                b"timestamp" => {
                    let s = js("data[].timestamp", sc.string())?;
                    ts = self.c.ts_cached("data[].timestamp", &s)?;
                    continue;
                }
                b"bid" => 0,
                b"bid_qty" => 1,
                b"ask" => 2,
                b"ask_qty" => 3,
                _ => {
                    js("data[]", sc.skip_value())?;
                    continue;
                }
            };
            if vals[slot].is_some() {
                return Err(FeedError::DuplicateField { field: NAMES[slot] });
            }
            vals[slot] = Some(js(NAMES[slot], sc.number())?);
        }
        let sym = sym.ok_or(missing("data[].symbol"))?;
        let mut v = [&b""[..]; 4];
        for i in 0..4 {
            v[i] = vals[i].ok_or(missing(NAMES[i]))?;
        }
        let Some(id) = self.c.instruments.lookup("data[].symbol", &sym.decoded())? else {
            return Ok(false);
        };
        let (ps, qs) = self.c.instruments.scales(id);
        self.c.open_group(None);
        for (side, pi) in [(Side::Bid, 0), (Side::Ask, 2)] {
            let mut ev = self.c.ev(EventKind::Bbo, id);
            ev.side = side as u8;
            ev.price = fixed_field(NAMES[pi], v[pi], ps)?;
            ev.qty = qty_field(NAMES[pi + 1], v[pi + 1], qs)?;
            ev.exch_ts = ts;
            self.c.push(ev);
        }
        self.c.close_group();
        Ok(true)
    }

    /// One `status` data object.
    fn status_obj(&mut self, sc: &mut Scanner<'_>) -> Result<(), FeedError> {
        let mut it = js("data[]", sc.object())?;
        while let Some(k) = js("data[]", sc.next_key(&mut it))? {
            match &*k.decoded() {
                b"connection_id" => {
                    let n = js("data[].connection_id", sc.number())?;
                    self.connection_id = Some(u64_field("data[].connection_id", n)?);
                }
                b"system" => {
                    let s = js("data[].system", sc.string())?;
                    self.system = String::from_utf8_lossy(&s.decoded()).into_owned();
                    if s.raw == b"maintenance" {
                        self.c.actions.push(Action::Reconnect);
                    }
                }
                _ => js("data[]", sc.skip_value())?,
            }
        }
        Ok(())
    }

    /// A reply to a request: subscribe/unsubscribe acks, pong.
    fn method_reply(
        &mut self,
        method: &Str,
        success: Option<bool>,
        result_raw: Option<&[u8]>,
        error: Option<Str>,
        err_symbol: Option<Str>,
    ) -> Result<FrameKind, FeedError> {
        match method.raw {
            b"pong" => return Ok(FrameKind::Pong),
            b"subscribe" | b"unsubscribe" => {}
            _ => return Ok(FrameKind::Unknown),
        }
        let subscribe = method.raw == b"subscribe";
        // A reply always says whether it succeeded; without `success` this is
        // a request (ours, echoed in a capture), not a reply.
        let Some(success) = success else {
            return Ok(FrameKind::Unknown);
        };
        // result: {"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"}
        let mut channel: Option<Str> = None;
        let mut symbol = err_symbol;
        let mut depth: Option<u16> = None;
        if let Some(raw) = result_raw {
            let mut sc = Scanner::new(raw);
            if sc.peek() == Some(b'{') {
                let mut it = js("result", sc.object())?;
                while let Some(k) = js("result", sc.next_key(&mut it))? {
                    match &*k.decoded() {
                        b"channel" => channel = Some(js("result.channel", sc.string())?),
                        b"symbol" => symbol = Some(js("result.symbol", sc.string())?),
                        b"depth" => {
                            let n = js("result.depth", sc.number())?;
                            let d = u64_field("result.depth", n)?;
                            depth = Some(d.min(u16::MAX as u64) as u16);
                        }
                        _ => js("result", sc.skip_value())?,
                    }
                }
            }
        }
        let id = match &symbol {
            Some(s) => self.c.instruments.lookup("result.symbol", &s.decoded())?,
            None => None,
        };
        if success {
            if let (Some(id), true) = (id, subscribe) {
                if channel.is_some_and(|c| c.raw == b"book") {
                    let d = depth.unwrap_or(self.c.book_depth);
                    self.per(id).depth = d;
                }
                self.c.status(id, StatusCode::Subscribed, 0, 0);
            }
            Ok(FrameKind::Subscribed)
        } else {
            let _ = error;
            self.c.status(
                id.unwrap_or(NO_INSTRUMENT),
                StatusCode::SubscribeFailed,
                0,
                0,
            );
            Ok(FrameKind::Rejected)
        }
    }

    /// Subscribe (or unsubscribe) messages for every instrument.
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
            .filter_map(|ch| self.request(*ch, &syms, subscribe))
            .collect()
    }

    fn request(&self, ch: Channel, syms: &[&str], subscribe: bool) -> Option<String> {
        let method = if subscribe {
            "subscribe"
        } else {
            "unsubscribe"
        };
        let mut s = format!("{{\"method\":\"{method}\",\"params\":{{\"channel\":");
        match ch {
            Channel::Book => s.push_str("\"book\""),
            Channel::Trades => s.push_str("\"trade\""),
            Channel::Bbo => s.push_str("\"ticker\""),
            // Kraken sends heartbeats on every connection with a subscription.
            Channel::Heartbeat => return None,
        }
        s.push_str(",\"symbol\":[");
        push_json_list(&mut s, syms.iter().copied());
        s.push(']');
        if ch == Channel::Book {
            s.push_str(&format!(",\"depth\":{}", self.c.book_depth));
        }
        if ch == Channel::Bbo {
            s.push_str(",\"event_trigger\":\"bbo\"");
        }
        if subscribe && ch != Channel::Trades {
            s.push_str(",\"snapshot\":true");
        }
        s.push_str("}}");
        Some(s)
    }

    /// Unsubscribe then subscribe the book of one instrument: Kraken answers
    /// with a fresh snapshot.
    pub fn resync_actions(&self, instrument: u16) -> Vec<Action> {
        crate::feed::resubscribe_book(&self.c, instrument, |syms, sub| {
            self.request(Channel::Book, syms, sub)
        })
    }
}
