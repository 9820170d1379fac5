//! Events as text: the JSON objects of `tickring tail --json` (the gateway
//! sends the same field names) and the one-line human form.

use std::fmt::Write;

use crate::event::{Event, EventKind, Exchange, Side, StatusCode};
use crate::fixed;
use crate::instrument::Instrument;

/// Appends `ev` as one JSON object (no newline) to `out`.
///
/// Fields: `kind`, `exchange`, `symbol`, `side` (`bid`/`ask` for book
/// events, the taker's `buy`/`sell` for trades), `price` and `qty` as
/// canonical decimal strings, `exch_ts`, `recv_ts`, `publish_ts` (ns since
/// the Unix epoch), `seq` (the exchange's sequence or trade id), `ring_seq`,
/// `flags`, and `status` for status events. `symbol` is null and prices are
/// raw integers when the instrument is unknown.
pub fn write_event_json(out: &mut String, ev: &Event, inst: Option<&Instrument>) {
    let kind = ev.kind();
    let _ = write!(
        out,
        "{{\"kind\":\"{}\",\"exchange\":\"{}\",\"symbol\":",
        kind.map(EventKind::name).unwrap_or("unknown"),
        Exchange::from_u8(ev.exchange)
            .map(Exchange::name)
            .unwrap_or("unknown"),
    );
    match inst {
        Some(i) => {
            out.push('"');
            json_escape_into(out, &i.symbol);
            out.push('"');
        }
        None => out.push_str("null"),
    }
    let side = ev.side().unwrap_or(Side::None);
    let side_name = if kind == Some(EventKind::Trade) {
        side.taker_name()
    } else {
        side.name()
    };
    let _ = write!(out, ",\"side\":\"{side_name}\"");
    if kind == Some(EventKind::Status) {
        let _ = write!(
            out,
            ",\"status\":\"{}\"",
            ev.status_code().map(StatusCode::name).unwrap_or("unknown")
        );
    }
    out.push_str(",\"price\":\"");
    match inst {
        Some(i) => fixed::write_canonical(out, ev.price, i.price_scale),
        None => {
            let _ = write!(out, "{}", ev.price);
        }
    }
    out.push_str("\",\"qty\":\"");
    match inst {
        Some(i) => fixed::write_canonical(out, ev.qty, i.qty_scale),
        None => {
            let _ = write!(out, "{}", ev.qty);
        }
    }
    let _ = write!(
        out,
        "\",\"exch_ts\":{},\"recv_ts\":{},\"publish_ts\":{},\"seq\":{},\"ring_seq\":{},\"flags\":{}}}",
        ev.exch_ts, ev.recv_ts, ev.publish_ts, ev.seq, ev.ring_seq, ev.flags
    );
}

/// Appends `ev` as one human-readable line (no newline) to `out`.
pub fn write_event_line(out: &mut String, ev: &Event, inst: Option<&Instrument>) {
    let kind = ev.kind();
    let side = ev.side().unwrap_or(Side::None);
    let _ = write!(
        out,
        "{:>10} {:<14} {:<17} {:<12}",
        ev.ring_seq,
        kind.map(EventKind::name).unwrap_or("unknown"),
        Exchange::from_u8(ev.exchange)
            .map(Exchange::name)
            .unwrap_or("-"),
        inst.map(|i| i.symbol.as_str()).unwrap_or("-"),
    );
    if kind == Some(EventKind::Status) {
        let _ = write!(
            out,
            " {} seq={} n={}",
            ev.status_code().map(StatusCode::name).unwrap_or("unknown"),
            ev.seq,
            ev.qty
        );
        return;
    }
    let side_name = if kind == Some(EventKind::Trade) {
        side.taker_name()
    } else {
        side.name()
    };
    let (p, q) = match inst {
        Some(i) => (
            fixed::format(ev.price, i.price_scale),
            fixed::format(ev.qty, i.qty_scale),
        ),
        None => (ev.price.to_string(), ev.qty.to_string()),
    };
    let _ = write!(out, " {side_name:<4} {p:>16} {q:>18} seq={}", ev.seq);
}

/// Escapes `s` for a JSON string body.
pub fn json_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{flags, EventKind};

    #[test]
    fn trade_json_has_readable_fields_and_exact_decimals() {
        let inst = Instrument::new(Exchange::Kraken, "BTC/USD", 8, 8).unwrap();
        let ev = Event {
            ring_seq: 3,
            kind: EventKind::Trade as u8,
            exchange: Exchange::Kraken as u8,
            side: Side::Ask as u8,
            flags: flags::LAST_IN_MESSAGE,
            price: 6_280_250_000_000,
            qty: 5_100,
            exch_ts: 1,
            recv_ts: 2,
            publish_ts: 3,
            seq: 77,
            ..Event::default()
        };
        let mut s = String::new();
        write_event_json(&mut s, &ev, Some(&inst));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["kind"], "trade");
        assert_eq!(v["exchange"], "kraken");
        assert_eq!(v["symbol"], "BTC/USD");
        assert_eq!(v["side"], "sell");
        assert_eq!(v["price"], "62802.5");
        assert_eq!(v["qty"], "0.000051");
        assert_eq!(v["seq"], 77);
        assert_eq!(v["ring_seq"], 3);
        assert_eq!(v["recv_ts"], 2);
    }

    #[test]
    fn unknown_instrument_gives_null_symbol_and_raw_integers() {
        let ev = Event {
            kind: EventKind::BookSet as u8,
            exchange: Exchange::Binance as u8,
            side: Side::Bid as u8,
            price: 12,
            qty: 5,
            ..Event::default()
        };
        let mut s = String::new();
        write_event_json(&mut s, &ev, None);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["symbol"], serde_json::Value::Null);
        assert_eq!(v["side"], "bid");
        assert_eq!(v["price"], "12");
    }
}
