//! The gateway's HTTP side: REST answers, readiness that follows the
//! rings, Prometheus metrics clean under `promtool check metrics`, origin
//! checks, ring discovery, `tickring validate` on a gateway config.

mod gateway_support;

use std::process::Command;

use gateway_support::*;
use serde_json::json;
use tickring::event::{Event, Exchange, StatusCode};
use tickring::ring::books::SnapshotMeta;

fn status_event(feed: &mut SynthFeed, id: u16, code: StatusCode) {
    let mut ev = Event::status(Exchange::Coinbase, id, code);
    ev.publish_ts = tickring::time::now_ns();
    feed.writer.publish(&ev);
}

#[test]
fn rest_endpoints_describe_instruments_books_and_feeds() {
    let dir = TempDir::new("rest");
    let mut feed = SynthFeed::new(dir.path(), "cb", 1 << 12);
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]", feed.writer.path().display()),
    );
    gw.wait_instruments(2);
    let v = http_get(gw.addr, "/v1/instruments", &[]).unwrap().json();
    assert_eq!(
        v["instruments"][1],
        json!({"name": "kraken:ETH/USD", "exchange": "kraken", "symbol": "ETH/USD",
               "price_scale": 2, "qty_scale": 8, "ring": "cb", "id": 1})
    );

    // A book as the collector publishes it: levels at the instrument's scales.
    let seq = feed.writer.next_seq();
    feed.books.publish(
        1,
        SnapshotMeta {
            ring_seq: seq,
            exch_seq: 77,
            ts: 5,
            valid: true,
        },
        [(300_012, 150_000_000), (300_000, 1)],
        [(300_050, 2_500_000_000)],
    );
    // The symbol has a slash: both the encoded and the plain form work.
    for path in [
        "/v1/book/kraken/ETH%2FUSD?depth=1",
        "/v1/book/kraken/ETH/USD?depth=1",
    ] {
        let b = http_get(gw.addr, path, &[]).unwrap().json();
        assert_eq!(
            b,
            json!({"ring": "cb", "exchange": "kraken", "symbol": "ETH/USD", "ring_seq": seq,
                   "exch_seq": 77, "ts": 5, "valid": true, "depth": 10,
                   "bids": [["3000.12", "1.5"]], "asks": [["3000.5", "25"]]}),
            "{path}"
        );
    }
    let b = http_get(gw.addr, "/v1/book/kraken/ETH%2FUSD", &[])
        .unwrap()
        .json();
    assert_eq!(b["bids"].as_array().unwrap().len(), 2);

    // Feed status from the events: rates, gaps, resyncs, book health.
    status_event(
        &mut feed,
        tickring::event::NO_INSTRUMENT,
        StatusCode::Connected,
    );
    status_event(&mut feed, 0, StatusCode::Gap);
    status_event(&mut feed, 0, StatusCode::ResyncStarted);
    status_event(&mut feed, 1, StatusCode::BookValid);
    for n in 0..500 {
        feed.trade(0, n);
    }
    gw.wait_json("/v1/feeds", "feed status", |v| {
        let f = &v["feeds"][0];
        f["totals"]["trades"] == 500 && f["instruments"][1]["book"] == "valid"
    });
    let f = http_get(gw.addr, "/v1/feeds", &[]).unwrap().json()["feeds"][0].clone();
    assert_eq!(f["ring"], "cb");
    assert_eq!(f["open"], true);
    assert_eq!(f["writer"]["alive"], true);
    assert_eq!(f["writer"]["state"], "running");
    assert_eq!(f["writer"]["pid"], std::process::id());
    assert_eq!(f["writer"]["epoch"], 1);
    assert_eq!(f["connection"], "connected");
    assert_eq!(f["totals"]["gaps"], 1);
    assert_eq!(f["totals"]["resyncs"], 1);
    assert_eq!(
        f["instruments"][0],
        json!({"name": "coinbase:BTC-USD", "book": "resyncing"})
    );
    assert!(f["last_event_age_s"].as_f64().unwrap() >= 0.0);
    assert!(f["rates"]["events_per_s"].is_number());
}

#[test]
fn ready_follows_the_rings_and_health_only_the_process() {
    let dir = TempDir::new("ready");
    let ring = dir.path().join("late.ring");
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]\nready_max_age_ms = 3000", ring.display()),
    );
    // The collector has not started: alive, not ready, and it says why.
    assert_eq!(http_get(gw.addr, "/health", &[]).unwrap().status, 200);
    let r = http_get(gw.addr, "/ready", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["rings"][0]["why"], "not open");

    let mut feed = SynthFeed::new(dir.path(), "late", 1 << 12);
    feed.trade(0, 1);
    gw.wait_json("/ready", "ready", |v| v["ready"] == true);
    assert_eq!(http_get(gw.addr, "/ready", &[]).unwrap().status, 200);

    // The collector stops: not ready any more.
    drop(feed);
    gw.wait_json("/ready", "not ready", |v| v["ready"] == false);
    let r = http_get(gw.addr, "/ready", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["rings"][0]["why"], "writer is not running");
    assert_eq!(http_get(gw.addr, "/health", &[]).unwrap().status, 200);
}

#[test]
fn metrics_pass_promtool_and_count_what_happened() {
    let promtool = which("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not installed: the metrics exposition cannot be checked. \
             Install the Debian package `prometheus` (apt-get install prometheus)."
        )
    });
    let dir = TempDir::new("metrics");
    let mut feed = SynthFeed::new(dir.path(), "m", 1 << 12);
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]", feed.writer.path().display()),
    );
    gw.wait_instruments(2);
    let mut ws = ws_connect(gw.addr, &[]).unwrap();
    send_json(
        &mut ws,
        &json!({"op": "subscribe", "channels": ["trades"], "instruments": ["*"]}),
    );
    assert_eq!(recv_control(&mut ws)["type"], "subscribed");
    for n in 0..100 {
        feed.trade((n % 2) as u16, n);
    }
    let mut got = 0;
    while got < 100 {
        if recv_json(&mut ws)["kind"] == "trade" {
            got += 1;
        }
    }
    gw.wait_json("/v1/status", "counters", |v| {
        v["gateway"]["messages_sent"].as_u64() >= Some(101)
    });
    let text = http_get(gw.addr, "/metrics", &[]).unwrap();
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let out = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        text.body
    );
    assert_eq!(gw.metric("tickring_gateway_clients"), 1.0);
    assert_eq!(
        gw.metric("tickring_gateway_ring_events_total{ring=\"m\"}"),
        100.0
    );
    // 100 trades + the subscription reply.
    assert_eq!(gw.metric("tickring_gateway_messages_sent_total"), 101.0);
    // Only events have an age: the histogram counted the 100 trades.
    assert_eq!(gw.metric("tickring_gateway_event_age_seconds_count"), 100.0);
    assert_eq!(
        gw.metric("tickring_gateway_event_age_seconds_bucket{le=\"+Inf\"}"),
        100.0
    );
    assert_eq!(
        gw.metric("tickring_gateway_ring_overruns_total{ring=\"m\"}"),
        0.0
    );
    assert_eq!(
        gw.metric("tickring_gateway_clients_dropped_slow_total"),
        0.0
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

#[test]
fn browser_origins_are_checked() {
    let dir = TempDir::new("origin");
    let feed = SynthFeed::new(dir.path(), "o", 1 << 12);
    let gw = Gateway::start(
        dir.path(),
        &format!(
            "rings = [\"{}\"]\nallowed_origins = [\"https://ops.example.com\"]",
            feed.writer.path().display()
        ),
    );
    let r = http_get(
        gw.addr,
        "/v1/instruments",
        &[("Origin", "https://evil.example")],
    )
    .unwrap();
    assert_eq!(r.status, 403);
    let r = http_get(
        gw.addr,
        "/v1/instruments",
        &[("Origin", "https://ops.example.com")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ops.example.com")
    );
    // The status page's own origin (same host) is always allowed.
    let own = format!("http://{}", gw.addr);
    assert_eq!(
        http_get(gw.addr, "/v1/status", &[("Origin", &own)])
            .unwrap()
            .status,
        200
    );
    match ws_connect(gw.addr, &[("Origin", "https://evil.example")]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("cross-origin WebSocket: {:?}", other.map(|_| ())),
    }
    assert_eq!(
        gw.metric("tickring_gateway_requests_refused_total{reason=\"origin\"}"),
        2.0
    );
}

#[test]
fn rings_appearing_in_ring_dir_are_served() {
    let dir = TempDir::new("discover");
    let rings = dir.path().join("rings");
    std::fs::create_dir_all(&rings).unwrap();
    let _a = SynthFeed::new(&rings, "first", 1 << 12);
    let gw = Gateway::start(dir.path(), &format!("ring_dir = \"{}\"", rings.display()));
    gw.wait_instruments(2);
    let mut b = SynthFeed::new(&rings, "second", 1 << 12);
    gw.wait_instruments(4);
    serves_a_new_ring(&gw, &mut b);
}

/// A packaged host scans both backings: a collector may land on huge pages
/// or on /dev/shm, and a directory that is not there yet is just empty.
#[test]
fn rings_are_discovered_in_every_listed_ring_dir() {
    let dir = TempDir::new("discover2");
    let huge = dir.path().join("huge");
    let shm = dir.path().join("shm");
    let later = dir.path().join("later");
    std::fs::create_dir_all(&huge).unwrap();
    std::fs::create_dir_all(&shm).unwrap();
    let _a = SynthFeed::new(&shm, "first", 1 << 12);
    let gw = Gateway::start(
        dir.path(),
        &format!(
            "ring_dir = [\"{}\", \"{}\", \"{}\"]",
            huge.display(),
            shm.display(),
            later.display()
        ),
    );
    gw.wait_instruments(2);
    std::fs::create_dir_all(&later).unwrap();
    let mut b = SynthFeed::new(&later, "second", 1 << 12);
    gw.wait_instruments(4);
    serves_a_new_ring(&gw, &mut b);
}

/// `first` is served already; `b` (ring `second`, kraken:ETH/USD) appeared
/// after the gateway started: its trades reach a subscriber.
fn serves_a_new_ring(gw: &Gateway, b: &mut SynthFeed) {
    let mut ws = ws_connect(gw.addr, &[]).unwrap();
    send_json(
        &mut ws,
        &json!({"op": "subscribe", "channels": ["trades"], "instruments": ["kraken:ETH/USD"]}),
    );
    let ack = recv_control(&mut ws);
    assert_eq!(ack["matched"], json!(["kraken:ETH/USD"]));
    b.trade(1, 99);
    let v = recv_json(&mut ws);
    assert_eq!(
        (v["kind"].clone(), v["seq"].clone()),
        (json!("trade"), json!(99))
    );
    let f = http_get(gw.addr, "/v1/feeds", &[]).unwrap().json();
    let names: Vec<&str> = f["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["ring"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"first") && names.contains(&"second"));
}

#[test]
fn status_page_and_assets_are_served_from_the_binary() {
    let dir = TempDir::new("page");
    let feed = SynthFeed::new(dir.path(), "p", 1 << 12);
    let gw = Gateway::start(
        dir.path(),
        &format!("rings = [\"{}\"]", feed.writer.path().display()),
    );
    let r = http_get(gw.addr, "/", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("<script src=\"/page/app.js\">"));
    // No resource from anywhere else.
    assert!(!r.body.contains("http://") && !r.body.contains("https://"));
    let js = http_get(gw.addr, "/page/app.js", &[]).unwrap();
    assert!(js.body.contains("/v1/status") && !js.body.contains("https://"));
    assert_eq!(
        http_get(gw.addr, "/page/style.css", &[]).unwrap().status,
        200
    );
    assert_eq!(http_get(gw.addr, "/nope", &[]).unwrap().status, 404);
    let r = http_get(gw.addr, "/v1/stream", &[]).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("WebSocket endpoint"), "{}", r.body);
}

#[test]
fn validate_accepts_a_gateway_config_and_names_the_key_of_a_bad_one() {
    let dir = TempDir::new("validate");
    let good = dir.path().join("gateway.toml");
    std::fs::write(
        &good,
        "[gateway]\nlisten = \"0.0.0.0:8080\"\nrings = [\"coinbase\", \"kraken\"]\nmax_clients = 500\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains(
            "ok: gateway on 0.0.0.0:8080, rings [coinbase, kraken], no auth, max 500 clients"
        ),
        "{s}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[gateway]\nrings = [\"coinbase\"]\nclient_queue = 0\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(
        e.contains(&format!(
            "{}: `gateway.client_queue`: 0 is not in 1..=1048576",
            bad.display()
        )),
        "{e}"
    );
    // The gateway refuses the same config at start, with the same words.
    let out = Command::new(bin())
        .args(["gateway", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("`gateway.client_queue`"));
}
