//! The collector's command line: `tickring validate` refuses each kind of
//! bad config naming the file and the key (the details are unit-tested in
//! `src/config.rs`), `tickring collect` refuses the same before creating
//! anything, and SIGTERM stops a running collector with status 0 leaving
//! the ring's writer "stopped".

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::*;
use tickring::event::{Exchange, StatusCode};
use tickring::ring::GoneReason;

fn tickring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(args)
        .output()
        .expect("running tickring")
}

/// A config that passes, for the cases below to break one key at a time.
fn good(dir: &TestDir) -> String {
    let mut cfg = FeedToml::new(Exchange::Kraken, &["BTC/USD"], "ws://127.0.0.1:9/v2".into());
    cfg.tables = "\n[liveness]\nsilence_timeout_ms = 1000\n".into();
    cfg.render(dir)
}

#[test]
fn validate_accepts_a_good_config_and_refuses_each_bad_one_naming_the_key() {
    let dir = TestDir::new("validate");
    let text = good(&dir);
    let path = dir.write("good.toml", &text);
    let out = tickring(&["validate", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("ok: kraken feed, 1 symbol(s) [BTC/USD]"),
        "{stdout}"
    );

    // (what the good config says, what to say instead, key, problem)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "exchange = \"kraken\"",
            "exchange = \"mtgox\"",
            "`exchange`",
            "unknown exchange",
        ),
        (
            "endpoint = \"ws://127.0.0.1:9/v2\"",
            "endpoint = \"http://127.0.0.1:9/v2\"",
            "`endpoint`",
            "not a ws:// or wss:// URL",
        ),
        (
            "book_depth = 10",
            "book_depth = 15",
            "`book_depth`",
            "Kraken accepts depths",
        ),
        (
            "capacity = 65536",
            "capacity = 1000",
            "`ring.capacity`",
            "not a power of two",
        ),
        (
            "backing = \"shm\"",
            "backing = \"floppy\"",
            "`ring.backing`",
            "expected \"auto\", \"hugepages\" or \"shm\"",
        ),
        (
            "listen = \"127.0.0.1:0\"",
            "listen = \"localhost\"",
            "`metrics.listen`",
            "not an address",
        ),
        (
            "max_ms = 100",
            "max_ms = 5",
            "`reconnect.max_ms`",
            "below reconnect.initial_ms",
        ),
        (
            "silence_timeout_ms = 1000",
            "silence_timeout_ms = 10",
            "`liveness.silence_timeout_ms`",
            "below 100",
        ),
        (
            "book_depth = 10",
            "book_depth = 10\ntls_ca_file = \"/nonexistent/ca.pem\"",
            "`tls_ca_file`",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "book_depth = 10",
            "book_depth = 10\nbookdepth = 10",
            "bookdepth",
            "unknown field",
        ),
        (
            "capacity = 65536",
            "capacity = \"lots\"",
            "ring.capacity",
            "invalid type",
        ),
    ];
    for (i, (from, to, key, problem)) in cases.iter().enumerate() {
        assert!(text.contains(from), "{from} not in\n{text}");
        let bad = dir.write(&format!("bad{i}.toml"), &text.replacen(from, to, 1));
        let bad = bad.to_str().unwrap();
        let out = tickring(&["validate", "--config", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {out:?}");
        assert!(out.stdout.is_empty(), "{to}: {out:?}");
        for want in [bad, key, problem] {
            assert!(stderr.contains(want), "{to}: {want:?} not in {stderr}");
        }
    }

    // `collect` refuses the same config before it creates anything.
    let bad = dir.write(
        "bad-collect.toml",
        &text.replacen("capacity = 65536", "capacity = 1000", 1),
    );
    let out = tickring(&["collect", "--config", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("`ring.capacity`"), "{stderr}");
    assert!(!dir.ring().exists());
}

/// SIGTERM must end the collector this fast (systemd waits for it, and
/// the unit's stop must not need a SIGKILL): well above what a clean stop
/// takes (a tick, a close handshake bounded at 500 ms, two thread joins).
const STOP_WITHIN: Duration = Duration::from_secs(1);

/// Stops `col` with SIGTERM and checks the exit and the ring it leaves.
fn assert_clean_stop(col: &mut Collector, dir: &TestDir) {
    let mut ring = RingLog::open(&dir.ring());
    let st = col
        .terminate(STOP_WITHIN)
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", col.log()));
    assert!(st.success(), "{st}:\n{}", col.log());
    let out = tickring(&["stat", "--json", dir.ring().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stat["writer"]["state"], "stopped", "{stat}");
    assert_eq!(stat["writer"]["alive"], false, "{stat}");
    // A reader is told the writer stopped cleanly (not died).
    ring.drain();
    assert_eq!(
        ring.reader().writer_status().gone,
        Some(GoneReason::Stopped)
    );
    assert_eq!(ring.count_status(StatusCode::WriterStopping), 1);
}

#[test]
fn sigterm_stops_a_streaming_collector_with_status_0() {
    let (server, _sent) = replay(
        Exchange::Kraken,
        &["kraken/v2_session_book_d10.jsonl"],
        |_| {},
    );
    let dir = TestDir::new("sigterm");
    let cfg = FeedToml::new(
        Exchange::Kraken,
        &["BTC/USD"],
        format!("{}/v2", server.url()),
    );
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    col.wait_for("/ready 200", |c| c.ready().0 == 200);
    assert_clean_stop(&mut col, &dir);
    assert!(col.log().contains("collector stopped"), "{}", col.log());
    // It unsubscribed and closed the WebSocket cleanly.
    let conns = server.connections();
    assert_eq!(conns.len(), 1);
    assert!(conns[0].client_messages >= 2, "{conns:?}");
}

#[test]
fn sigterm_stops_a_collector_whose_exchange_went_silent() {
    // The peer answers neither the unsubscribe nor the close.
    let (_server, _sent) = replay(
        Exchange::Kraken,
        &["kraken/v2_session_book_d10.jsonl"],
        |c| c.faults.silent_after = Some(5),
    );
    let dir = TestDir::new("sigterm-silent");
    let cfg = FeedToml::new(
        Exchange::Kraken,
        &["BTC/USD"],
        format!("{}/v2", _server.url()),
    );
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    col.wait_for("5 messages", |c| c.metrics().messages() >= 5);
    assert_clean_stop(&mut col, &dir);
}

#[test]
fn sigterm_stops_a_collector_that_cannot_connect() {
    // A port nobody listens on: connection refused, backoff, retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TestDir::new("sigterm-noconn");
    let cfg = FeedToml::new(
        Exchange::Kraken,
        &["BTC/USD"],
        format!("ws://127.0.0.1:{port}/v2"),
    );
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    col.wait_for("two refused connections", |c| {
        c.metrics().get("tickring_collector_reconnects_total") >= 2
    });
    assert_clean_stop(&mut col, &dir);
}
