//! The exchanges' subscribe protocols, as pure per-connection state
//! machines: client text in, reply texts and subscription changes out. No
//! I/O here, so each protocol is unit-tested without sockets.
//!
//! Generated control messages contain no prices, so they are built with
//! `format!` (field order as the exchanges send them) and strings escaped by
//! serde_json.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::capture::{binance_split_stream, Capture, KeyId, MarketMsg};
use super::rfc3339::format_micros;
use crate::event::Exchange;

/// A change to what the connection serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubChange {
    /// Start serving `key`; `snapshot: false` skips its snapshot messages
    /// (Kraken `"snapshot": false`). `name` is the Binance stream name the
    /// client asked for, used in the combined-stream envelope.
    Add {
        key: KeyId,
        snapshot: bool,
        name: Option<String>,
    },
    Remove {
        key: KeyId,
    },
}

/// What handling one client message produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub replies: Vec<String>,
    pub changes: Vec<SubChange>,
    /// The request was refused (an error reply was sent).
    pub errors: u32,
}

const KRAKEN_DEPTHS: [u64; 5] = [10, 25, 100, 500, 1000];
const KRAKEN_CHANNELS: [&str; 8] = [
    "book",
    "trade",
    "ticker",
    "ohlc",
    "instrument",
    "level3",
    "executions",
    "balances",
];
const COINBASE_CHANNELS: [&str; 12] = [
    "heartbeat",
    "status",
    "ticker",
    "ticker_batch",
    "level2",
    "level2_batch",
    "level2_50",
    "matches",
    "full",
    "level3",
    "auctionfeed",
    "rfq_matches",
];
const ADVANCED_CHANNELS: [&str; 9] = [
    "level2",
    "market_trades",
    "ticker",
    "ticker_batch",
    "heartbeats",
    "candles",
    "status",
    "user",
    "futures_balance_summary",
];

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The capture channel that serves a Coinbase Exchange subscription channel.
fn coinbase_data_channel(channel: &str) -> &str {
    match channel {
        "level2_batch" | "level2_50" => "level2",
        "ticker_batch" => "ticker",
        other => other,
    }
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Session {
    pub exchange: Exchange,
    /// Binance: wrap messages in the `{stream, data}` envelope (`/stream`
    /// endpoint, or `SET_PROPERTY combined true`).
    pub combined: bool,
    /// Kraken: (channel, symbol) -> (depth, snapshot).
    kraken: BTreeMap<(String, String), (Option<u64>, bool)>,
    /// Coinbase Exchange and Advanced: channel -> products, in request order.
    channels: Vec<(String, Vec<String>)>,
    /// Binance: subscribed stream names, in request order.
    binance: Vec<String>,
    /// Coinbase Advanced: the last `sequence_num` sent on this connection.
    pub advanced_last_seq: u64,
    advanced_heartbeat_counter: u64,
    /// Coinbase Exchange: per product, the last `sequence` and `trade_id` served.
    coinbase_last: HashMap<String, (u64, u64)>,
}

impl Session {
    pub fn new(exchange: Exchange) -> Session {
        Session {
            exchange,
            combined: false,
            kraken: BTreeMap::new(),
            channels: Vec::new(),
            binance: Vec::new(),
            advanced_last_seq: 0,
            advanced_heartbeat_counter: 0,
            coinbase_last: HashMap::new(),
        }
    }

    /// Messages sent as soon as the WebSocket is open (Kraken's `status`).
    pub fn on_open(&mut self, connection_id: u64) -> Vec<String> {
        match self.exchange {
            Exchange::Kraken => vec![format!(
                r#"{{"channel":"status","type":"update","data":[{{"version":"2.0.10","system":"online","api_version":"v2","connection_id":{connection_id}}}]}}"#
            )],
            _ => Vec::new(),
        }
    }

    /// Binance: the streams named in the URL (`/stream?streams=a/b`, `/ws/a`).
    pub fn on_path(&mut self, capture: &Capture, path: &str) -> Outcome {
        let mut out = Outcome::default();
        if self.exchange != Exchange::Binance {
            return out;
        }
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let mut names: Vec<String> = Vec::new();
        if route == "/stream" || route.starts_with("/stream/") {
            self.combined = true;
            for kv in query.split('&') {
                if let Some(v) = kv.strip_prefix("streams=") {
                    names.extend(v.split('/').filter(|s| !s.is_empty()).map(str::to_string));
                }
            }
        } else if let Some(rest) = route.strip_prefix("/ws/") {
            names.extend(
                rest.split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        }
        for n in names {
            self.binance_add(capture, &n, &mut out);
        }
        out
    }

    /// Is any channel subscribed (Kraken heartbeats start with the first one)?
    pub fn has_subscriptions(&self) -> bool {
        !self.kraken.is_empty() || !self.channels.is_empty() || !self.binance.is_empty()
    }

    /// Handles one text message from the client.
    pub fn on_text(&mut self, capture: &Capture, text: &str, now_ns: i64) -> Outcome {
        match self.exchange {
            Exchange::Kraken => self.kraken_text(capture, text, now_ns),
            Exchange::Coinbase => self.coinbase_text(capture, text),
            Exchange::CoinbaseAdvanced => self.advanced_text(capture, text, now_ns),
            Exchange::Binance => self.binance_text(capture, text),
        }
    }

    /// Notes a market message served (Coinbase heartbeats carry the product's
    /// last sequence and trade id; Advanced control messages the last
    /// `sequence_num`). `seq` is the number as sent (after lap rewriting).
    pub fn on_served(&mut self, capture: &Capture, msg: &MarketMsg, seq_sent: Option<u64>) {
        match self.exchange {
            Exchange::Coinbase => {
                let sym = &capture.keys[msg.key as usize].symbol;
                let first = capture.coinbase_first.get(sym).copied().unwrap_or((0, 0));
                let e = self.coinbase_last.entry(sym.clone()).or_insert(first);
                if let Some(s) = msg.seq {
                    e.0 = s;
                }
                if let Some(t) = msg.seq2 {
                    e.1 = t;
                }
            }
            Exchange::CoinbaseAdvanced => {
                if let Some(s) = seq_sent {
                    self.advanced_last_seq = s;
                }
            }
            _ => {}
        }
    }

    /// The periodic (once a second) heartbeat messages.
    pub fn heartbeats(&mut self, capture: &Capture, now_ns: i64) -> Vec<String> {
        match self.exchange {
            Exchange::Kraken if !self.kraken.is_empty() => {
                vec![r#"{"channel":"heartbeat"}"#.to_string()]
            }
            Exchange::Coinbase => {
                let Some((_, products)) = self.channels.iter().find(|(c, _)| c == "heartbeat")
                else {
                    return Vec::new();
                };
                let time = format_micros(now_ns);
                products
                    .iter()
                    .map(|p| {
                        let (seq, trade) = self
                            .coinbase_last
                            .get(p)
                            .or_else(|| capture.coinbase_first.get(p))
                            .copied()
                            .unwrap_or((0, 0));
                        format!(
                            r#"{{"type":"heartbeat","last_trade_id":{trade},"product_id":{},"sequence":{seq},"time":"{time}"}}"#,
                            q(p)
                        )
                    })
                    .collect()
            }
            Exchange::CoinbaseAdvanced if self.channels.iter().any(|(c, _)| c == "heartbeats") => {
                self.advanced_heartbeat_counter += 1;
                let time = format_micros(now_ns);
                vec![format!(
                    r#"{{"channel":"heartbeats","client_id":"","timestamp":"{time}","sequence_num":{},"events":[{{"current_time":"{}","heartbeat_counter":{}}}]}}"#,
                    self.advanced_last_seq,
                    time.replace('T', " ").replace('Z', " +0000 UTC"),
                    self.advanced_heartbeat_counter
                )]
            }
            _ => Vec::new(),
        }
    }

    // ---------------------------------------------------------------- Kraken

    fn kraken_text(&mut self, capture: &Capture, text: &str, now_ns: i64) -> Outcome {
        let mut out = Outcome::default();
        let time_in = format_micros(now_ns);
        let tail = |req_id: &Option<String>| {
            let mut t = format!(r#","time_in":"{time_in}","time_out":"{time_in}""#);
            if let Some(r) = req_id {
                t.push_str(&format!(r#","req_id":{r}"#));
            }
            t
        };
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                out.errors += 1;
                out.replies.push(format!(
                    r#"{{"error":"Malformed request","method":"error","success":false{}}}"#,
                    tail(&None)
                ));
                return out;
            }
        };
        let req_id = v.get("req_id").map(|r| r.to_string());
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        match method {
            "ping" => {
                out.replies
                    .push(format!(r#"{{"method":"pong"{}}}"#, tail(&req_id)));
                return out;
            }
            "subscribe" | "unsubscribe" => {}
            _ => {
                out.errors += 1;
                out.replies.push(format!(
                    r#"{{"error":"Method not found","method":{},"success":false{}}}"#,
                    q(method),
                    tail(&req_id)
                ));
                return out;
            }
        }
        let err = |out: &mut Outcome, msg: &str, symbol: Option<&str>| {
            out.errors += 1;
            let sym = symbol
                .map(|s| format!(r#","symbol":{}"#, q(s)))
                .unwrap_or_default();
            out.replies.push(format!(
                r#"{{"error":{},"method":"{method}","success":false{sym}{}}}"#,
                q(msg),
                tail(&req_id)
            ));
        };
        let params = v.get("params");
        let Some(channel) = params
            .and_then(|p| p.get("channel"))
            .and_then(Value::as_str)
        else {
            err(&mut out, "Missing field: params.channel", None);
            return out;
        };
        if !KRAKEN_CHANNELS.contains(&channel) {
            err(&mut out, &format!("Channel {channel} not supported"), None);
            return out;
        }
        let symbols: Vec<&str> = match params.and_then(|p| p.get("symbol")) {
            Some(Value::Array(a)) if a.iter().all(Value::is_string) && !a.is_empty() => {
                a.iter().filter_map(Value::as_str).collect()
            }
            _ => {
                err(
                    &mut out,
                    "Missing field: params.symbol (a non-empty array of strings)",
                    None,
                );
                return out;
            }
        };
        let snapshot = params
            .and_then(|p| p.get("snapshot"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let depth = if channel == "book" {
            let d = match params.and_then(|p| p.get("depth")) {
                None => 10,
                Some(d) => match d.as_u64() {
                    Some(d) => d,
                    None => {
                        err(&mut out, "Invalid depth: not an integer", None);
                        return out;
                    }
                },
            };
            if !KRAKEN_DEPTHS.contains(&d) {
                err(
                    &mut out,
                    &format!("Invalid depth {d}: must be one of 10, 25, 100, 500, 1000"),
                    None,
                );
                return out;
            }
            if method == "subscribe" {
                if let Some(cd) = capture.kraken_depth {
                    if d != cd as u64 {
                        err(&mut out, &format!("Unsupported depth {d}: this replay capture was recorded at depth {cd}"), None);
                        return out;
                    }
                }
            }
            Some(d)
        } else {
            None
        };
        for sym in symbols {
            let k = (channel.to_string(), sym.to_string());
            let key = capture.key_id(channel, sym);
            if method == "subscribe" {
                if !capture.has_symbol(sym) {
                    err(
                        &mut out,
                        &format!("Currency pair not supported {sym}"),
                        Some(sym),
                    );
                    continue;
                }
                if self.kraken.contains_key(&k) {
                    err(&mut out, "Already subscribed", Some(sym));
                    continue;
                }
                self.kraken.insert(k, (depth, snapshot));
                if let Some(key) = key {
                    out.changes.push(SubChange::Add {
                        key,
                        snapshot,
                        name: None,
                    });
                }
            } else {
                if self.kraken.remove(&k).is_none() {
                    err(&mut out, "Subscription Not Found", Some(sym));
                    continue;
                }
                if let Some(key) = key {
                    out.changes.push(SubChange::Remove { key });
                }
            }
            let mut result = format!(r#"{{"channel":{}"#, q(channel));
            if let Some(d) = depth {
                result.push_str(&format!(r#","depth":{d}"#));
            }
            if method == "subscribe" {
                result.push_str(&format!(r#","snapshot":{snapshot}"#));
            }
            result.push_str(&format!(r#","symbol":{}}}"#, q(sym)));
            out.replies.push(format!(
                r#"{{"method":"{method}","result":{result},"success":true{}}}"#,
                tail(&req_id)
            ));
        }
        out
    }

    // ------------------------------------------------------ Coinbase Exchange

    fn coinbase_error(out: &mut Outcome, message: &str, reason: &str) {
        out.errors += 1;
        out.replies.push(format!(
            r#"{{"type":"error","message":{},"reason":{}}}"#,
            q(message),
            q(reason)
        ));
    }

    fn coinbase_text(&mut self, capture: &Capture, text: &str) -> Outcome {
        let mut out = Outcome::default();
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                Self::coinbase_error(&mut out, "Failed to subscribe", "Malformed JSON");
                return out;
            }
        };
        let typ = v.get("type").and_then(Value::as_str).unwrap_or("");
        if typ != "subscribe" && typ != "unsubscribe" {
            Self::coinbase_error(
                &mut out,
                "Failed to subscribe",
                "Type has to be either subscribe or unsubscribe",
            );
            return out;
        }
        let strings = |v: Option<&Value>| -> Option<Vec<String>> {
            match v {
                None => Some(Vec::new()),
                Some(Value::Array(a)) => a.iter().map(|s| s.as_str().map(str::to_string)).collect(),
                Some(_) => None,
            }
        };
        let Some(top_products) = strings(v.get("product_ids")) else {
            Self::coinbase_error(
                &mut out,
                "Failed to subscribe",
                "product_ids must be an array of strings",
            );
            return out;
        };
        let Some(Value::Array(chans)) = v.get("channels") else {
            Self::coinbase_error(&mut out, "Failed to subscribe", "No channels provided");
            return out;
        };
        if chans.is_empty() {
            Self::coinbase_error(&mut out, "Failed to subscribe", "No channels provided");
            return out;
        }
        // Validate everything first: a refused request changes nothing.
        let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
        for c in chans {
            let (name, products) = match c {
                Value::String(s) => (s.clone(), top_products.clone()),
                Value::Object(o) => {
                    let Some(name) = o.get("name").and_then(Value::as_str) else {
                        Self::coinbase_error(
                            &mut out,
                            "Failed to subscribe",
                            "channel object without a name",
                        );
                        return out;
                    };
                    match strings(o.get("product_ids")) {
                        Some(p) if !p.is_empty() => (name.to_string(), p),
                        Some(_) => (name.to_string(), top_products.clone()),
                        None => {
                            Self::coinbase_error(
                                &mut out,
                                "Failed to subscribe",
                                "product_ids must be an array of strings",
                            );
                            return out;
                        }
                    }
                }
                _ => {
                    Self::coinbase_error(
                        &mut out,
                        "Failed to subscribe",
                        "channels must be strings or objects",
                    );
                    return out;
                }
            };
            if !COINBASE_CHANNELS.contains(&name.as_str()) {
                Self::coinbase_error(
                    &mut out,
                    "Failed to subscribe",
                    &format!("{name} is not a valid channel"),
                );
                return out;
            }
            if typ == "subscribe" {
                if products.is_empty() && name != "status" {
                    Self::coinbase_error(
                        &mut out,
                        "Failed to subscribe",
                        &format!("No product ids provided for channel {name}"),
                    );
                    return out;
                }
                if let Some(p) = products.iter().find(|p| !capture.has_symbol(p)) {
                    Self::coinbase_error(
                        &mut out,
                        "Failed to subscribe",
                        &format!("{p} is not a valid product"),
                    );
                    return out;
                }
            }
            wanted.push((name, products));
        }
        for (name, products) in wanted {
            let data_channel = coinbase_data_channel(&name).to_string();
            if typ == "subscribe" {
                let idx = match self.channels.iter().position(|(c, _)| *c == name) {
                    Some(i) => i,
                    None => {
                        self.channels.push((name.clone(), Vec::new()));
                        self.channels.len() - 1
                    }
                };
                for p in products {
                    if self.channels[idx].1.contains(&p) {
                        continue;
                    }
                    if let Some(key) = capture.key_id(&data_channel, &p) {
                        out.changes.push(SubChange::Add {
                            key,
                            snapshot: true,
                            name: None,
                        });
                    }
                    self.channels[idx].1.push(p);
                }
            } else if let Some(idx) = self.channels.iter().position(|(c, _)| *c == name) {
                let gone: Vec<String> = if products.is_empty() {
                    std::mem::take(&mut self.channels[idx].1)
                } else {
                    let (gone, keep) = self.channels[idx]
                        .1
                        .drain(..)
                        .partition(|p| products.contains(p));
                    self.channels[idx].1 = keep;
                    gone
                };
                for p in gone {
                    if let Some(key) = capture.key_id(&data_channel, &p) {
                        out.changes.push(SubChange::Remove { key });
                    }
                }
                if self.channels[idx].1.is_empty() {
                    self.channels.remove(idx);
                }
            }
        }
        // A product subscribed through two alias channels (level2 and
        // level2_batch) keeps being served while either remains.
        out.changes.retain(|c| match c {
            SubChange::Remove { key } => !self.channels.iter().any(|(n, ps)| {
                ps.iter()
                    .any(|p| capture.key_id(coinbase_data_channel(n), p) == Some(*key))
            }),
            _ => true,
        });
        let list: Vec<String> = self
            .channels
            .iter()
            .map(|(n, ps)| {
                let ps: Vec<String> = ps.iter().map(|p| q(p)).collect();
                format!(r#"{{"name":{},"product_ids":[{}]}}"#, q(n), ps.join(","))
            })
            .collect();
        out.replies.push(format!(
            r#"{{"type":"subscriptions","channels":[{}]}}"#,
            list.join(",")
        ));
        out
    }

    // --------------------------------------------------- Coinbase Advanced

    fn advanced_text(&mut self, capture: &Capture, text: &str, now_ns: i64) -> Outcome {
        let mut out = Outcome::default();
        let error = |out: &mut Outcome, message: &str| {
            out.errors += 1;
            out.replies
                .push(format!(r#"{{"type":"error","message":{}}}"#, q(message)));
        };
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                error(&mut out, "failure to parse message: malformed JSON");
                return out;
            }
        };
        let typ = v.get("type").and_then(Value::as_str).unwrap_or("");
        if typ != "subscribe" && typ != "unsubscribe" {
            error(&mut out, "type has to be either subscribe or unsubscribe");
            return out;
        }
        let Some(channel) = v.get("channel").and_then(Value::as_str) else {
            error(
                &mut out,
                "channel is required (one channel per subscribe message)",
            );
            return out;
        };
        if !ADVANCED_CHANNELS.contains(&channel) {
            error(
                &mut out,
                &format!("Failed to subscribe: {channel} is not a valid channel"),
            );
            return out;
        }
        let products: Vec<String> = match v.get("product_ids") {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(_) => {
                error(&mut out, "product_ids must be an array of strings");
                return out;
            }
        };
        let no_products = matches!(
            channel,
            "heartbeats" | "status" | "user" | "futures_balance_summary"
        );
        if typ == "subscribe" && !no_products {
            if products.is_empty() {
                error(
                    &mut out,
                    &format!("Failed to subscribe: product_ids required for channel {channel}"),
                );
                return out;
            }
            if let Some(p) = products.iter().find(|p| !capture.has_symbol(p)) {
                error(
                    &mut out,
                    &format!("Failed to subscribe: {p} is not a valid product"),
                );
                return out;
            }
        }
        let idx = self.channels.iter().position(|(c, _)| c == channel);
        if typ == "subscribe" {
            let idx = idx.unwrap_or_else(|| {
                self.channels.push((channel.to_string(), Vec::new()));
                self.channels.len() - 1
            });
            let listed = if no_products {
                vec![channel.to_string()]
            } else {
                products
            };
            for p in listed {
                if self.channels[idx].1.contains(&p) {
                    continue;
                }
                if let Some(key) = capture.key_id(channel, &p) {
                    out.changes.push(SubChange::Add {
                        key,
                        snapshot: true,
                        name: None,
                    });
                }
                self.channels[idx].1.push(p);
            }
        } else if let Some(idx) = idx {
            let gone: Vec<String> = if products.is_empty() || no_products {
                std::mem::take(&mut self.channels[idx].1)
            } else {
                let (gone, keep) = self.channels[idx]
                    .1
                    .drain(..)
                    .partition(|p| products.contains(p));
                self.channels[idx].1 = keep;
                gone
            };
            for p in gone {
                if let Some(key) = capture.key_id(channel, &p) {
                    out.changes.push(SubChange::Remove { key });
                }
            }
            if self.channels[idx].1.is_empty() {
                self.channels.remove(idx);
            }
        }
        let mut sorted: Vec<&(String, Vec<String>)> = self.channels.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let subs: Vec<String> = sorted
            .iter()
            .map(|(c, ps)| {
                let ps: Vec<String> = ps.iter().map(|p| q(p)).collect();
                format!("{}:[{}]", q(c), ps.join(","))
            })
            .collect();
        out.replies.push(format!(
            r#"{{"channel":"subscriptions","timestamp":"{}","sequence_num":{},"events":[{{"subscriptions":{{{}}}}}]}}"#,
            format_micros(now_ns),
            self.advanced_last_seq,
            subs.join(",")
        ));
        out
    }

    // --------------------------------------------------------------- Binance

    fn binance_add(&mut self, capture: &Capture, name: &str, out: &mut Outcome) {
        let name = name.to_string();
        if self.binance.contains(&name) {
            return;
        }
        if let Some((sym, kind)) = binance_split_stream(&name) {
            if let Some(key) = capture.key_id(&kind, &sym) {
                out.changes.push(SubChange::Add {
                    key,
                    snapshot: true,
                    name: Some(name.clone()),
                });
            }
        }
        self.binance.push(name);
    }

    fn binance_text(&mut self, capture: &Capture, text: &str) -> Outcome {
        let mut out = Outcome::default();
        let error = |out: &mut Outcome, code: i32, msg: &str, id: &str| {
            out.errors += 1;
            out.replies.push(format!(
                r#"{{"error":{{"code":{code},"msg":{}}},"id":{id}}}"#,
                q(msg)
            ));
        };
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                error(&mut out, 2, "Invalid request: expected an object", "null");
                return out;
            }
            Err(e) => {
                error(&mut out, 3, &format!("Invalid JSON: {e}"), "null");
                return out;
            }
        };
        let id = match v.get("id") {
            None | Some(Value::Null) => "null".to_string(),
            Some(i @ Value::Number(n)) if n.is_u64() => i.to_string(),
            Some(s @ Value::String(_)) => s.to_string(),
            Some(_) => {
                error(
                    &mut out,
                    2,
                    "Invalid request: request ID must be an unsigned integer",
                    "null",
                );
                return out;
            }
        };
        let Some(method) = v.get("method").and_then(Value::as_str) else {
            error(&mut out, 2, "Invalid request: missing field `method`", &id);
            return out;
        };
        let params = v.get("params");
        match method {
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                let names: Vec<&str> = match params {
                    Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                        a.iter().filter_map(Value::as_str).collect()
                    }
                    _ => {
                        error(&mut out, 2, "Invalid request: params must be an array of stream names", &id);
                        return out;
                    }
                };
                // Binance stream names are `<lower-case symbol>@<channel>` or
                // all-market `!<channel>@arr`.
                let invalid = |n: &&&str| {
                    !n.starts_with('!')
                        && (binance_split_stream(n).is_none()
                            || n.split('@').next().is_some_and(|s| s.bytes().any(|c| c.is_ascii_uppercase())))
                };
                if let Some(bad) = names.iter().find(invalid) {
                    error(&mut out, 2, &format!("Invalid request: invalid stream name `{bad}`"), &id);
                    return out;
                }
                for n in names {
                    if method == "SUBSCRIBE" {
                        self.binance_add(capture, n, &mut out);
                    } else if let Some(i) = self.binance.iter().position(|s| s == n) {
                        self.binance.remove(i);
                        if let Some((sym, kind)) = binance_split_stream(n) {
                            if let Some(key) = capture.key_id(&kind, &sym) {
                                // Another name for the same stream (depth vs
                                // depth@100ms) keeps it served.
                                let still = self.binance.iter().any(|o| {
                                    binance_split_stream(o).is_some_and(|(s, k)| s == sym && k == kind)
                                });
                                if !still {
                                    out.changes.push(SubChange::Remove { key });
                                }
                            }
                        }
                    }
                }
                out.replies.push(format!(r#"{{"result":null,"id":{id}}}"#));
            }
            "LIST_SUBSCRIPTIONS" => {
                let l: Vec<String> = self.binance.iter().map(|s| q(s)).collect();
                out.replies.push(format!(r#"{{"result":[{}],"id":{id}}}"#, l.join(",")));
            }
            "SET_PROPERTY" => match params.and_then(Value::as_array).map(Vec::as_slice) {
                Some([Value::String(p), Value::Bool(b)]) if p == "combined" => {
                    self.combined = *b;
                    out.replies.push(format!(r#"{{"result":null,"id":{id}}}"#));
                }
                _ => error(&mut out, 2, "Invalid request: unknown property", &id),
            },
            "GET_PROPERTY" => match params.and_then(Value::as_array).map(Vec::as_slice) {
                Some([Value::String(p)]) if p == "combined" => {
                    out.replies.push(format!(r#"{{"result":{},"id":{id}}}"#, self.combined));
                }
                _ => error(&mut out, 2, "Invalid request: unknown property", &id),
            },
            other => error(
                &mut out,
                2,
                &format!("Invalid request: unknown variant `{other}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"),
                &id,
            ),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::capture::fixtures_dir;

    fn cap(ex: Exchange, files: &[&str]) -> Capture {
        let files: Vec<_> = files.iter().map(|f| fixtures_dir().join(f)).collect();
        Capture::load(ex, &files).unwrap()
    }

    fn obj(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("reply is not JSON: {e}: {s}"))
    }

    #[test]
    fn kraken_subscribe_acks_per_symbol_and_refuses_unknown_ones() {
        let c = cap(Exchange::Kraken, &["kraken/v2_book.jsonl"]);
        let mut s = Session::new(Exchange::Kraken);
        let o = s.on_text(
            &c,
            r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD","XBT/EUR"],"depth":10},"req_id":7}"#,
            0,
        );
        assert_eq!(o.replies.len(), 2);
        let ok = obj(&o.replies[0]);
        assert_eq!(ok["success"], true);
        assert_eq!(ok["result"]["symbol"], "BTC/USD");
        assert_eq!(ok["result"]["depth"], 10);
        assert_eq!(ok["req_id"], 7);
        let bad = obj(&o.replies[1]);
        assert_eq!(bad["success"], false);
        assert_eq!(bad["symbol"], "XBT/EUR");
        assert!(bad["error"].as_str().unwrap().contains("XBT/EUR"));
        assert_eq!(
            o.changes,
            vec![SubChange::Add {
                key: 0,
                snapshot: true,
                name: None
            }]
        );
        assert_eq!(o.errors, 1);
        // Again: already subscribed.
        let o = s.on_text(
            &c,
            r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"]}}"#,
            0,
        );
        assert_eq!(obj(&o.replies[0])["success"], false);
        assert!(o.changes.is_empty());
        let o = s.on_text(&c, r#"{"method":"ping","req_id":42}"#, 0);
        let p = obj(&o.replies[0]);
        assert_eq!(
            (p["method"].as_str(), p["req_id"].as_u64()),
            (Some("pong"), Some(42))
        );
        assert_eq!(
            s.heartbeats(&c, 0),
            vec![r#"{"channel":"heartbeat"}"#.to_string()]
        );
        let o = s.on_text(&c, r#"{"method":"unsubscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10}}"#, 0);
        assert_eq!(obj(&o.replies[0])["success"], true);
        assert_eq!(o.changes, vec![SubChange::Remove { key: 0 }]);
    }

    #[test]
    fn kraken_refuses_bad_depth_and_a_depth_the_capture_does_not_have() {
        let c = cap(Exchange::Kraken, &["kraken/v2_book.jsonl"]);
        let mut s = Session::new(Exchange::Kraken);
        for d in ["7", "25", "\"x\""] {
            let o = s.on_text(&c, &format!(r#"{{"method":"subscribe","params":{{"channel":"book","symbol":["BTC/USD"],"depth":{d}}}}}"#), 0);
            assert_eq!(obj(&o.replies[0])["success"], false, "depth {d}");
            assert!(o.changes.is_empty());
        }
        let o = s.on_text(&c, "{nope", 0);
        assert_eq!(obj(&o.replies[0])["error"], "Malformed request");
    }

    #[test]
    fn coinbase_subscriptions_reply_and_errors() {
        let c = cap(
            Exchange::Coinbase,
            &[
                "coinbase/exchange_level2.jsonl",
                "coinbase/exchange_matches.jsonl",
            ],
        );
        let mut s = Session::new(Exchange::Coinbase);
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["BAND-GBP"],"channels":["level2","heartbeat",{"name":"matches","product_ids":["SKL-USD","BAND-GBP"]}]}"#,
            0,
        );
        let r = obj(&o.replies[0]);
        assert_eq!(r["type"], "subscriptions");
        assert_eq!(r["channels"][0]["name"], "level2");
        assert_eq!(r["channels"][2]["product_ids"][1], "BAND-GBP");
        assert_eq!(o.changes.len(), 3);
        let hb = s.heartbeats(&c, 0);
        assert_eq!(hb.len(), 1);
        let hb = obj(&hb[0]);
        assert_eq!(hb["product_id"], "BAND-GBP");
        assert_eq!(
            hb["last_trade_id"], 881_613,
            "first trade id seen in the capture"
        );
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["NOPE-USD"],"channels":["level2"]}"#,
            0,
        );
        let e = obj(&o.replies[0]);
        assert_eq!(e["type"], "error");
        assert!(e["reason"].as_str().unwrap().contains("NOPE-USD"));
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["BAND-GBP"],"channels":["level9"]}"#,
            0,
        );
        assert_eq!(obj(&o.replies[0])["type"], "error");
        let o = s.on_text(&c, r#"{"type":"unsubscribe","channels":["level2"]}"#, 0);
        assert_eq!(o.changes.len(), 1);
        assert!(matches!(o.changes[0], SubChange::Remove { .. }));
    }

    #[test]
    fn advanced_subscriptions_list_all_channels() {
        let c = cap(
            Exchange::CoinbaseAdvanced,
            &[
                "coinbase/advanced_l2_data.jsonl",
                "coinbase/advanced_market_trades.jsonl",
            ],
        );
        let mut s = Session::new(Exchange::CoinbaseAdvanced);
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
            0,
        );
        assert_eq!(o.changes.len(), 1);
        s.on_text(&c, r#"{"type":"subscribe","channel":"heartbeats"}"#, 0);
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}"#,
            0,
        );
        let r = obj(&o.replies[0]);
        assert_eq!(r["channel"], "subscriptions");
        let subs = &r["events"][0]["subscriptions"];
        assert_eq!(subs["heartbeats"][0], "heartbeats");
        assert_eq!(subs["level2"][0], "BTC-USD");
        assert_eq!(subs["market_trades"][0], "BTC-USD");
        assert_eq!(obj(&s.heartbeats(&c, 0)[0])["channel"], "heartbeats");
        let o = s.on_text(
            &c,
            r#"{"type":"subscribe","product_ids":["DOGE-USD"],"channel":"level2"}"#,
            0,
        );
        assert_eq!(obj(&o.replies[0])["type"], "error");
    }

    #[test]
    fn binance_url_streams_subscribe_and_errors() {
        let c = cap(Exchange::Binance, &["binance/combined_depth_100ms.jsonl"]);
        let mut s = Session::new(Exchange::Binance);
        let o = s.on_path(&c, "/stream?streams=nknusdt@depth@100ms/btcusdt@trade");
        assert!(s.combined);
        assert_eq!(o.changes.len(), 1);
        let o = s.on_text(
            &c,
            r#"{"method":"SUBSCRIBE","params":["lrcbtc@depth@100ms"],"id":3}"#,
            0,
        );
        assert_eq!(o.replies, vec![r#"{"result":null,"id":3}"#.to_string()]);
        assert_eq!(o.changes.len(), 1);
        let o = s.on_text(&c, r#"{"method":"LIST_SUBSCRIPTIONS","id":4}"#, 0);
        assert_eq!(obj(&o.replies[0])["result"][2], "lrcbtc@depth@100ms");
        let o = s.on_text(&c, r#"{"method":"SUBSCRIBE","params":"nope","id":5}"#, 0);
        assert_eq!(obj(&o.replies[0])["error"]["code"], 2);
        let o = s.on_text(&c, r#"{"method":"SUBSCRIB","params":[],"id":6}"#, 0);
        assert_eq!(obj(&o.replies[0])["id"], 6);
        let o = s.on_text(&c, "{]", 0);
        assert_eq!(obj(&o.replies[0])["error"]["code"], 3);
        let mut raw = Session::new(Exchange::Binance);
        raw.on_path(&c, "/ws/blzeth@depth");
        assert!(!raw.combined);
    }
}
