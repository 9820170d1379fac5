//! Each kind of bad or unlucky client gets its defined answer, and the
//! gateway keeps serving everyone else: invalid and unknown subscriptions
//! (error message, connection stays open), oversized client messages
//! (close 1009), missing or wrong tokens (401, same answer), too many
//! clients (503), and a client too slow to read (close 1008, counted).

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn start(dir: &TempDir, feed: &SynthFeed, extra: &str) -> Gateway {
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]\n{extra}", feed.writer.path().display()),
    );
    gw.wait_json("/ready", "the ring", |v| v["rings"][0]["open"] == true);
    gw
}

fn subscribe(ws: &mut Ws, channels: &[&str], instruments: &[&str]) -> serde_json::Value {
    send_json(
        ws,
        &json!({"op": "subscribe", "channels": channels, "instruments": instruments}),
    );
    recv_control(ws)
}

/// Reads until a trade with exchange sequence `seq` arrives; returns how
/// many trades came.
fn read_trades_until(ws: &mut Ws, seq: u64) -> u64 {
    let mut n = 0;
    loop {
        let v = recv_json(ws);
        if v["kind"] == "trade" {
            n += 1;
            if v["seq"] == seq {
                return n;
            }
        }
    }
}

#[test]
fn invalid_requests_get_an_error_naming_the_problem_and_the_connection_stays_open() {
    let dir = TempDir::new("invalid");
    let mut feed = SynthFeed::new(dir.path(), "f", 1 << 12);
    let gw = start(&dir, &feed, "");
    gw.wait_instruments(2);
    let mut ws = ws_connect(gw.addr, &[]).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "invalid request"),
        (json!({"op": "subscrib", "channels": ["trades"], "instruments": ["*"]}).to_string(), "op: unknown operation \"subscrib\""),
        (json!({"op": "subscribe", "channels": ["trade"], "instruments": ["*"]}).to_string(), "channels[0]: unknown channel \"trade\""),
        (json!({"op": "subscribe", "channels": [], "instruments": ["*"]}).to_string(), "channels: needs at least one"),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": []}).to_string(), "instruments: needs at least one"),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": ["BTC-USD"]}).to_string(), "instruments[0]: \"BTC-USD\" is not an instrument"),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": ["nyse:IBM"]}).to_string(), "unknown exchange \"nyse\""),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": ["coinbase:BTC-USD", "coinbase:DOGE-USD"]}).to_string(), "instruments[1]: unknown instrument \"coinbase:DOGE-USD\""),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": ["*"], "extra": 1}).to_string(), "unknown field `extra`"),
        (json!({"op": "subscribe", "channels": ["trades"], "instruments": ["*"], "id": [1]}).to_string(), "id: must be a number or a string"),
    ];
    for (req, want) in &cases {
        ws.send(Message::text(req.clone())).unwrap();
        let r = recv_control(&mut ws);
        assert_eq!(r["type"], "error", "{req} -> {r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(want), "{req}: {e:?} lacks {want:?}");
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let r = recv_control(&mut ws);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("binary messages are not accepted"),
        "{r}"
    );
    // Nothing was applied by the refused requests (the second one named a
    // known instrument): still no events. Now a good one, with an id.
    send_json(
        &mut ws,
        &json!({"op": "subscribe", "id": "s1", "channels": ["trades"], "instruments": ["coinbase:BTC-USD"]}),
    );
    let ack = recv_control(&mut ws);
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["id"], "s1");
    assert_eq!(ack["matched"], json!(["coinbase:BTC-USD"]));
    feed.trade(1, 1); // kraken: not subscribed
    feed.trade(0, 2);
    let v = recv_json(&mut ws);
    assert_eq!(v["kind"], "trade");
    assert_eq!(v["symbol"], "BTC-USD");
    assert_eq!(v["seq"], 2);
    send_json(&mut ws, &json!({"op": "ping", "id": 9}));
    assert_eq!(recv_control(&mut ws), json!({"type": "pong", "id": 9}));
    assert_eq!(gw.metric("tickring_gateway_invalid_requests_total"), 11.0);
    // Unknown instruments over REST too.
    let r = http_get(gw.addr, "/v1/book/coinbase/DOGE-USD", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert!(
        r.body
            .contains("unknown instrument \\\"coinbase:DOGE-USD\\\""),
        "{}",
        r.body
    );
    let r = http_get(gw.addr, "/v1/book/coinbase/BTC-USD?depth=0", &[]).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("depth"), "{}", r.body);
}

#[test]
fn oversized_client_message_closes_with_1009_and_others_keep_streaming() {
    let dir = TempDir::new("big");
    let mut feed = SynthFeed::new(dir.path(), "f", 1 << 12);
    let gw = start(&dir, &feed, "max_request_bytes = 1024");
    let mut other = ws_connect(gw.addr, &[]).unwrap();
    assert_eq!(
        subscribe(&mut other, &["trades"], &["*"])["type"],
        "subscribed"
    );
    let mut big = ws_connect(gw.addr, &[]).unwrap();
    big.send(Message::text("x".repeat(4096))).unwrap();
    let close = loop {
        match big.read() {
            Ok(Message::Close(f)) => break f.expect("a close frame with a code"),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(close.code, CloseCode::Size);
    assert!(
        close.reason.contains("limit is 1024 bytes"),
        "{}",
        close.reason
    );
    assert_eq!(
        gw.metric("tickring_gateway_clients_closed_too_big_total"),
        1.0
    );
    feed.trade(0, 7);
    assert_eq!(read_trades_until(&mut other, 7), 1);
}

#[test]
fn tokens_guard_v1_with_one_answer_for_missing_and_wrong() {
    let dir = TempDir::new("auth");
    let mut feed = SynthFeed::new(dir.path(), "f", 1 << 12);
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# ops team\nfirst-token-0123456789\nsecond-token-abcdefghij\n",
    )
    .unwrap();
    let gw = start(
        &dir,
        &feed,
        &format!("tokens_file = \"{}\"", tokens.display()),
    );
    let good = [("Authorization", "Bearer second-token-abcdefghij")];
    let r = http_get(gw.addr, "/v1/instruments", &good).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["instruments"].as_array().unwrap().len(), 2);

    let missing = http_get(gw.addr, "/v1/instruments", &[]).unwrap();
    let wrong = http_get(
        gw.addr,
        "/v1/instruments",
        &[("Authorization", "Bearer first-token-01234567890")],
    )
    .unwrap();
    let basic = http_get(
        gw.addr,
        "/v1/feeds",
        &[("Authorization", "Basic Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ==")],
    )
    .unwrap();
    for r in [&missing, &wrong, &basic] {
        assert_eq!(r.status, 401);
        assert_eq!(r.body, r#"{"error":"unauthorized"}"#);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    for path in ["/health", "/ready", "/metrics"] {
        let r = http_get(gw.addr, path, &[]).unwrap();
        assert_ne!(r.status, 401, "{path} must stay open");
    }
    match ws_connect(gw.addr, &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("WebSocket without a token: {:?}", other.map(|_| ())),
    }
    let mut ws = ws_connect(gw.addr, &good).unwrap();
    assert_eq!(
        subscribe(&mut ws, &["trades"], &["kraken:*"])["type"],
        "subscribed"
    );
    feed.trade(1, 3);
    assert_eq!(read_trades_until(&mut ws, 3), 1);
    assert_eq!(
        gw.metric("tickring_gateway_requests_refused_total{reason=\"unauthorized\"}"),
        4.0
    );
}

#[test]
fn too_many_clients_get_503_and_the_others_are_served() {
    let dir = TempDir::new("many");
    let mut feed = SynthFeed::new(dir.path(), "f", 1 << 12);
    let gw = start(&dir, &feed, "max_clients = 3");
    let mut clients: Vec<Ws> = (0..3).map(|_| ws_connect(gw.addr, &[]).unwrap()).collect();
    for c in clients.iter_mut() {
        assert_eq!(
            subscribe(c, &["trades"], &["coinbase:BTC-USD"])["type"],
            "subscribed"
        );
    }
    match ws_connect(gw.addr, &[]) {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(
                body.contains("too many clients: this gateway serves at most 3"),
                "{body}"
            );
        }
        other => panic!("4th client: {:?}", other.map(|_| ())),
    }
    feed.trade(0, 11);
    for c in clients.iter_mut() {
        assert_eq!(read_trades_until(c, 11), 1);
    }
    // A client that leaves frees its place.
    let mut gone = clients.pop().unwrap();
    gone.close(None).unwrap();
    while gone.read().is_ok() {}
    gw.wait_json("/v1/status", "a free place", |v| {
        v["gateway"]["clients"] == 2
    });
    let mut again = ws_connect(gw.addr, &[]).unwrap();
    assert_eq!(
        subscribe(&mut again, &["trades"], &["*"])["type"],
        "subscribed"
    );
    assert_eq!(
        gw.metric("tickring_gateway_requests_refused_total{reason=\"max_clients\"}"),
        1.0
    );
}

#[test]
fn slow_client_is_closed_with_1008_counted_and_fast_clients_miss_nothing() {
    let dir = TempDir::new("slow");
    let mut feed = SynthFeed::new(dir.path(), "f", 1 << 20);
    // The queue holds more than the publisher ever runs ahead of the fast
    // client (1100 trades), so only the client that stops reading overflows.
    let gw = start(&dir, &feed, "client_queue = 2048");
    let mut slow = ws_connect(gw.addr, &[]).unwrap();
    assert_eq!(
        subscribe(&mut slow, &["trades"], &["*"])["type"],
        "subscribed"
    );
    let mut fast = ws_connect(gw.addr, &[]).unwrap();
    assert_eq!(
        subscribe(&mut fast, &["trades"], &["*"])["type"],
        "subscribed"
    );

    // The fast client reads in its own thread and checks it gets every
    // trade, in order.
    const N: u64 = 200_000;
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let got2 = got.clone();
    let reader = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < N {
            let v = recv_json(&mut fast);
            if v["kind"] == "trade" {
                assert_eq!(v["seq"], next, "fast client missed a trade");
                next += 1;
                got2.store(next, std::sync::atomic::Ordering::Release);
            }
        }
        fast
    });
    // The slow client reads nothing while the trades flow (far more than
    // its socket buffers and its queue hold) until it is evicted; then it
    // reads what was already on its socket and finds the close frame
    // saying why. It must start reading within the gateway's close grace
    // (5 s), or the gateway gives up on delivering the close frame: so it
    // watches the eviction counter instead of waiting for the publisher,
    // which on a loaded machine can take longer than that.
    let addr = gw.addr;
    let slow_reader = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while dropped_slow(addr) < 1.0 {
            assert!(t0.elapsed() < Duration::from_secs(120), "never evicted");
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            match slow.read() {
                Ok(Message::Close(f)) => break f.expect("a close frame with a code"),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    });
    // The publisher stays within 1000 trades of the fast client, whatever
    // the machine's speed.
    let mut n = 0;
    while n < N {
        if n >= got.load(std::sync::atomic::Ordering::Acquire) + 1000 {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        for _ in 0..100 {
            feed.trade((n % 2) as u16, n);
            n += 1;
        }
    }
    let _fast = reader.join().unwrap();
    assert_eq!(
        gw.metric("tickring_gateway_clients_dropped_slow_total"),
        1.0
    );
    let close = slow_reader.join().unwrap();
    assert_eq!(close.code, CloseCode::Policy);
    assert!(
        close
            .reason
            .contains("slow consumer: more than 2048 messages"),
        "{}",
        close.reason
    );
    gw.wait_json("/v1/status", "clients", |v| v["gateway"]["clients"] == 1);
}

/// `tickring_gateway_clients_dropped_slow_total`, read without a `Gateway`
/// handle (from another thread).
fn dropped_slow(addr: std::net::SocketAddr) -> f64 {
    let name = "tickring_gateway_clients_dropped_slow_total ";
    http_get(addr, "/metrics", &[])
        .ok()
        .and_then(|r| {
            r.body
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0.0)
}
