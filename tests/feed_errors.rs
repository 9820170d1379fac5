//! Bad input gives a typed error naming the field; nothing reaches the
//! sink from a refused frame; unknown messages are counted and skipped.

use tickring::event::{Exchange, StatusCode};
use tickring::feed::json::JsonErrorKind;
use tickring::feed::{Channel, Feed, FeedConfig, FeedError, FrameKind, ValueError, VecSink};
use tickring::fixed::FixedError;
use tickring::instrument::Instrument;

fn feed(ex: Exchange) -> Feed {
    Feed::new(ex, FeedConfig::discovering())
}

fn err(ex: Exchange, frame: &str) -> FeedError {
    let mut f = feed(ex);
    let mut sink = VecSink::default();
    let e = f.on_frame(frame.as_bytes(), 0, &mut sink).unwrap_err();
    assert!(sink.events.is_empty() && sink.books.is_empty(), "{frame}");
    assert_eq!(f.stats().errors, 1);
    e
}

const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1789295134226,"s":"BTCUSDT","t":388510,"p":"76745.19000000","q":"0.00065000","T":1789295134225,"m":false,"M":true}}"#;

#[test]
fn malformed_json_names_the_field_and_offset() {
    let cut = &TRADE[..TRADE.len() - 5];
    match err(Exchange::Binance, cut) {
        FeedError::Json { error, .. } => assert_eq!(error.kind, JsonErrorKind::Eof),
        e => panic!("{e:?}"),
    }
    let bad = TRADE.replace("\"p\":\"76745.19000000\"", "\"p\":76745.19.0");
    let e = err(Exchange::Binance, &bad);
    assert!(matches!(e, FeedError::Json { field: "p", .. }), "{e:?}");
    assert!(e.to_string().contains("field `p`"), "{e}");
    let e = err(Exchange::Binance, &format!("{TRADE} x"));
    assert!(matches!(
        e,
        FeedError::Json { error, .. } if error.kind == JsonErrorKind::TrailingCharacters
    ));
}

#[test]
fn missing_and_duplicate_fields_are_named() {
    let no_price = TRADE.replace("\"p\":\"76745.19000000\",", "");
    assert_eq!(
        err(Exchange::Binance, &no_price),
        FeedError::MissingField { field: "p" }
    );
    let twice = TRADE.replace("\"q\":", "\"q\":\"1\",\"q\":");
    assert_eq!(
        err(Exchange::Binance, &twice),
        FeedError::DuplicateField { field: "q" }
    );
    let kraken = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.5}],"asks":[],"checksum":1,"timestamp":"2026-08-16T23:37:05.376419Z"}]}"#;
    assert_eq!(
        err(Exchange::Kraken, kraken),
        FeedError::MissingField {
            field: "data[].bids[].qty"
        }
    );
}

#[test]
fn numbers_that_overflow_or_need_rounding_are_refused() {
    let big = TRADE.replace("76745.19000000", "922337203685.0");
    assert_eq!(
        err(Exchange::Binance, &big),
        FeedError::BadValue {
            field: "p",
            reason: ValueError::Fixed(FixedError::Overflow)
        }
    );
    let fine = TRADE.replace("0.00065000", "0.000650001");
    assert_eq!(
        err(Exchange::Binance, &fine),
        FeedError::BadValue {
            field: "q",
            reason: ValueError::Fixed(FixedError::TooPrecise {
                needed: 9,
                scale: 8
            })
        }
    );
    let exp = r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":5.147e-1,"qty":1,"ord_type":"limit","trade_id":1,"timestamp":"2023-09-25T07:48:36.925533Z"}]}"#;
    assert_eq!(
        err(Exchange::Kraken, exp),
        FeedError::BadValue {
            field: "data[].price",
            reason: ValueError::Fixed(FixedError::Syntax)
        }
    );
    let neg = r#"{"type":"l2update","product_id":"A-B","changes":[["buy","1.0","-2"]],"time":"2021-04-17T16:43:37.075687Z"}"#;
    assert_eq!(
        err(Exchange::Coinbase, neg),
        FeedError::BadValue {
            field: "changes[][2]",
            reason: ValueError::NegativeQuantity
        }
    );
    let id = TRADE.replace("388510", "18446744073709551616");
    assert!(matches!(
        err(Exchange::Binance, &id),
        FeedError::BadValue { field: "t", .. }
    ));
}

#[test]
fn bad_enums_and_timestamps_are_named() {
    let side = r#"{"type":"l2update","product_id":"A-B","changes":[["up","1.0","2"]],"time":"2021-04-17T16:43:37.075687Z"}"#;
    assert!(matches!(
        err(Exchange::Coinbase, side),
        FeedError::BadValue { field: "changes[][0]", reason: ValueError::UnexpectedText(t) } if t == "up"
    ));
    let ts = r#"{"type":"l2update","product_id":"A-B","changes":[],"time":"2021-04-17 16:43"}"#;
    assert!(matches!(
        err(Exchange::Coinbase, ts),
        FeedError::BadValue {
            field: "time",
            reason: ValueError::Timestamp(_)
        }
    ));
}

#[test]
fn timestamps_sharing_a_cached_hour_are_still_checked_and_exact() {
    let mut f = feed(Exchange::Coinbase);
    let mut sink = VecSink::default();
    let upd = |t: &str| {
        format!(
            r#"{{"type":"l2update","product_id":"A-B","changes":[["buy","1.0","2"]],"time":"{t}"}}"#
        )
    };
    for (t, ns) in [
        ("2021-04-17T16:43:37.075687Z", 1_618_677_817_075_687_000i64),
        ("2021-04-17T16:59:59.999999999Z", 1_618_678_799_999_999_999),
        ("2021-04-17T17:00:00Z", 1_618_678_800_000_000_000),
        ("2021-04-17T17:00:00+01:00", 1_618_675_200_000_000_000),
    ] {
        sink.events.clear();
        f.on_frame(upd(t).as_bytes(), 0, &mut sink).unwrap();
        assert_eq!(sink.events[0].exch_ts, ns, "{t}");
    }
    // Same date and hour as the cached one, broken minutes.
    let e = f
        .on_frame(upd("2021-04-17T17:61:00Z").as_bytes(), 0, &mut sink)
        .unwrap_err();
    assert!(matches!(
        e,
        FeedError::BadValue {
            field: "time",
            reason: ValueError::Timestamp(_)
        }
    ));
}

#[test]
fn frames_over_the_limit_are_refused() {
    let mut cfg = FeedConfig::discovering();
    cfg.max_frame_len = 64;
    let mut f = Feed::new(Exchange::Binance, cfg);
    let e = f
        .on_frame(TRADE.as_bytes(), 0, &mut VecSink::default())
        .unwrap_err();
    assert_eq!(
        e,
        FeedError::FrameTooLarge {
            len: TRADE.len(),
            max: 64
        }
    );
}

#[test]
fn unknown_types_and_symbols_are_counted_and_skipped() {
    let mut f = Feed::new(
        Exchange::Binance,
        FeedConfig::new(vec![
            Instrument::new(Exchange::Binance, "ETHUSDT", 8, 8).unwrap()
        ]),
    );
    let mut sink = VecSink::default();
    assert_eq!(
        f.on_frame(TRADE.as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::Skipped
    );
    let kline = r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{}}}"#;
    assert_eq!(
        f.on_frame(kline.as_bytes(), 0, &mut sink).unwrap().kind,
        FrameKind::Unknown
    );
    assert!(sink.events.is_empty());
    let s = f.stats();
    assert_eq!((s.unknown, s.unknown_instrument, s.errors), (1, 1, 0));
}

#[test]
fn fields_in_any_order_give_the_same_events() {
    let reordered = r#"{"data":{"b":[["0.35130000","6195.00000000"]],"a":[],"u":499869752,"U":499869750,"s":"NKNUSDT","E":1633998512068,"e":"depthUpdate"},"stream":"nknusdt@depth@100ms"}"#;
    let normal = r#"{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"]],"a":[]}}"#;
    let run = |m: &str| {
        let mut f = feed(Exchange::Binance);
        let mut sink = VecSink::default();
        f.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
        sink
    };
    let (a, b) = (run(reordered), run(normal));
    assert_eq!(a.events, b.events);
    assert_eq!(a.books, b.books);
    assert_eq!(a.books[0].first_id, 499_869_750);

    let kraken_normal = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":62802.5,"qty":0.1}],"asks":[],"checksum":7,"timestamp":"2026-08-16T23:37:05.376419Z"}]}"#;
    let kraken_reordered = r#"{"data":[{"timestamp":"2026-08-16T23:37:05.376419Z","checksum":7,"asks":[],"bids":[{"qty":0.1,"price":62802.5}],"symbol":"BTC/USD"}],"type":"update","channel":"book"}"#;
    let run_k = |m: &str| {
        let mut f = feed(Exchange::Kraken);
        let mut sink = VecSink::default();
        f.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
        sink
    };
    let (a, b) = (run_k(kraken_normal), run_k(kraken_reordered));
    assert_eq!(a.events, b.events);
    assert_eq!(a.books, b.books);
    assert_eq!(a.events.len(), 1);

    let cb_reordered = r#"{"time":"2021-04-17T16:43:37.075687Z","changes":[["sell","0.00001306","660.5"]],"product_id":"SKL-BTC","type":"l2update"}"#;
    let cb_normal = r#"{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660.5"]],"time":"2021-04-17T16:43:37.075687Z"}"#;
    let run_c = |m: &str| {
        let mut f = feed(Exchange::Coinbase);
        let mut sink = VecSink::default();
        f.on_frame(m.as_bytes(), 0, &mut sink).unwrap();
        sink
    };
    assert_eq!(run_c(cb_reordered).events, run_c(cb_normal).events);
}

#[test]
fn escaped_strings_are_decoded() {
    let esc = TRADE
        .replace("\"BTCUSDT\"", "\"BTC\\u0055SDT\"")
        .replace("\"q\":", "\"\\u0071\":");
    let mut f = feed(Exchange::Binance);
    let mut sink = VecSink::default();
    f.on_frame(esc.as_bytes(), 0, &mut sink).unwrap();
    assert_eq!(f.instruments()[0].symbol, "BTCUSDT");
    assert_eq!(sink.events[0].qty, 65_000);
}

#[test]
fn replies_to_requests_are_recognised() {
    let mut f = feed(Exchange::Binance);
    let mut sink = VecSink::default();
    let ok = f
        .on_frame(br#"{"result":null,"id":1}"#, 0, &mut sink)
        .unwrap();
    assert_eq!(ok.kind, FrameKind::Subscribed);
    let bad = f
        .on_frame(
            br#"{"error":{"code":2,"msg":"Invalid request"},"id":1}"#,
            0,
            &mut sink,
        )
        .unwrap();
    assert_eq!(bad.kind, FrameKind::Rejected);
    assert_eq!(
        sink.events[0].status_code(),
        Some(StatusCode::SubscribeFailed)
    );

    let mut c = feed(Exchange::Coinbase);
    let r = c
        .on_frame(br#"{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}"#, 0, &mut sink)
        .unwrap();
    assert_eq!(r.kind, FrameKind::Rejected);
}

#[test]
fn subscribe_messages_for_each_exchange() {
    let ins = |ex, s: &str| Instrument::new(ex, s, 8, 8).unwrap();
    let all = [
        Channel::Trades,
        Channel::Book,
        Channel::Bbo,
        Channel::Heartbeat,
    ];

    let b = Feed::new(
        Exchange::Binance,
        FeedConfig::new(vec![ins(Exchange::Binance, "BTCUSDT")]),
    );
    assert_eq!(
        b.subscribe_messages(&all),
        [
            r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms","btcusdt@bookTicker"],"id":1}"#
        ]
    );
    assert!(b.unsubscribe_messages(&all)[0].starts_with(r#"{"method":"UNSUBSCRIBE""#));

    let c = Feed::new(
        Exchange::Coinbase,
        FeedConfig::new(vec![
            ins(Exchange::Coinbase, "BTC-USD"),
            ins(Exchange::Coinbase, "ETH-USD"),
        ]),
    );
    assert_eq!(
        c.subscribe_messages(&all),
        [
            r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","level2_batch","ticker","heartbeat"]}"#
        ]
    );

    let a = Feed::new(
        Exchange::CoinbaseAdvanced,
        FeedConfig::new(vec![ins(Exchange::CoinbaseAdvanced, "BTC-USD")]),
    );
    assert_eq!(
        a.subscribe_messages(&all),
        [
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}"#,
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
            r#"{"type":"subscribe","channel":"heartbeats"}"#,
        ]
    );

    let k = Feed::new(
        Exchange::Kraken,
        FeedConfig::new(vec![ins(Exchange::Kraken, "BTC/USD")]),
    );
    assert_eq!(
        k.subscribe_messages(&[Channel::Trades, Channel::Bbo]),
        [
            r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"]}}"#,
            r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"],"event_trigger":"bbo","snapshot":true}}"#,
        ]
    );
}

#[test]
fn kraken_maintenance_asks_for_a_reconnect() {
    let mut f = feed(Exchange::Kraken);
    let mut sink = VecSink::default();
    let m = br#"{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"maintenance","api_version":"v2","connection_id":18446744073709551615}]}"#;
    assert_eq!(f.on_frame(m, 0, &mut sink).unwrap().kind, FrameKind::Status);
    assert_eq!(sink.actions, [tickring::feed::Action::Reconnect]);
    let Feed::Kraken(k) = &f else { panic!() };
    assert_eq!(k.connection_id, Some(u64::MAX));
}
