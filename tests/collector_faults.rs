//! Faults the replay server injects, and what the collector (the real
//! binary) makes of them: the right status events in the ring, a resync or
//! a reconnect, books valid again afterwards (book region and /ready), bad
//! input counted in `tickring_collector_parse_errors_total`, and a
//! collector that is still running at the end.
//!
//! Faults apply to every connection of a server, so a fault that kills the
//! connection would kill each reconnect too. Those tests stop the faulty
//! server once the reconnect is seen and start a healthy one on the same
//! port: the collector's next reconnect must then end with valid books
//! equal to `tickring book` on the capture.

mod support;

use std::time::Duration;

use support::*;
use tickring::event::{Exchange, StatusCode};
use tickring::replay::{Capture, Faults, ReplayConfig, ReplayServer};

const KRAKEN: &str = "kraken/v2_session_book_d10.jsonl";
/// Market messages in the Kraken session (1 snapshot + 117 updates).
const KRAKEN_MSGS: u64 = 118;
/// The faults hit this market message of each connection: an update well
/// after the snapshot.
const NTH: u64 = 40;
/// The update whose first non-zero level the replay server corrupts. Not
/// every update will do: in some (message 40 is one) that level is pushed
/// below the subscribed depth by the same message, is truncated away, and
/// the checksum (over the top 10) still matches.
const CORRUPT_NTH: u64 = 20;

fn quick(c: &mut ReplayConfig) {
    c.heartbeat_interval = Duration::from_millis(100);
}

fn kraken_server(faults: Faults) -> (ReplayServer, SendLog) {
    replay(Exchange::Kraken, &[KRAKEN], |c| {
        quick(c);
        c.faults = faults;
    })
}

fn kraken_config(server: &ReplayServer) -> FeedToml {
    let mut cfg = FeedToml::new(
        Exchange::Kraken,
        &["BTC/USD"],
        format!("{}/v2", server.url()),
    );
    cfg.capacity = 1 << 14;
    cfg
}

/// The collector's book of every instrument equals `tickring book` on the
/// capture: in the book region (valid) and rebuilt from the ring's events.
fn assert_books_match_offline(
    dir: &TestDir,
    ring: &RingLog,
    cfg: &FeedToml,
    input: &str,
    col: &Collector,
) {
    let depth = cfg.book_depth as usize;
    let offline = offline_books(cfg.exchange, input, depth, false);
    let rebuilt = books_from_events(&ring.events);
    for (id, ins) in cfg.instruments().iter().enumerate() {
        let (state, bids, asks) = &offline[&ins.symbol];
        assert_eq!(state, "valid");
        let snap = book_snapshot(&dir.ring(), id as u16);
        assert!(snap.valid, "{}: {}", ins.symbol, col.log());
        assert_eq!(&levels_text(&snap.bids, ins), bids, "{} bids", ins.symbol);
        assert_eq!(&levels_text(&snap.asks, ins), asks, "{} asks", ins.symbol);
        let (rb, ra) = rebuilt[&(id as u16)].top(depth);
        assert_eq!((rb, ra), (snap.bids, snap.asks), "{} rebuilt", ins.symbol);
    }
}

fn wait_ready(col: &mut Collector) {
    col.wait_for("/ready 200", |c| c.ready().0 == 200);
}

/// A book fault that the collector resyncs from without reconnecting:
/// runs the Kraken session with `faults`, waits for `statuses` (in order)
/// and valid books, and checks what every such fault must leave behind.
/// Returns the final metrics.
fn kraken_resync_case(faults: Faults, nth: u64, statuses: &[StatusCode]) -> (Metrics, RingLog) {
    let (server, _sent) = kraken_server(faults);
    let dir = TestDir::new("resync");
    let cfg = kraken_config(&server);
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    let mut ring = RingLog::open(&dir.ring());
    col.wait_for("the resync and valid books", |_| {
        ring.drain();
        ring.has_in_order(0, statuses) && all_books_valid(&dir.ring(), 1)
    });
    // The resync resubscribed: the server served the session again from
    // its snapshot on the same connection.
    let (m, conn) = wait_settled(&mut col, &server, KRAKEN_MSGS + nth, &mut ring, None);
    assert_eq!(server.connections().len(), 1);
    assert_eq!(conn.faults_injected + conn.dropped, 1, "{conn:?}");
    wait_ready(&mut col);
    assert_books_match_offline(&dir, &ring, &cfg, KRAKEN, &col);
    assert_eq!(m.get("tickring_collector_reconnects_total"), 0);
    assert_eq!(ring.count_status(StatusCode::Disconnected), 0);
    assert_eq!(m.get("tickring_collector_books_valid"), 1);
    col.assert_running();
    (m, ring)
}

#[test]
fn kraken_corrupted_level_fails_the_checksum_and_resyncs() {
    let (m, ring) = kraken_resync_case(
        Faults {
            corrupt_nth: Some(CORRUPT_NTH),
            ..Faults::default()
        },
        CORRUPT_NTH,
        &[
            StatusCode::BookValid,
            StatusCode::ChecksumFailed,
            StatusCode::ResyncStarted,
            StatusCode::BookValid,
        ],
    );
    // One resync. (Every update the old subscription still delivers before
    // the resubscription takes effect fails its checksum again, and each is
    // reported: the builder checks books that are already invalid.)
    let failed = m.get("tickring_collector_checksum_failures_total");
    assert!(failed >= 1);
    assert_eq!(ring.count_status(StatusCode::ChecksumFailed) as u64, failed);
    assert_eq!(m.get("tickring_collector_resyncs_total"), 1);
    assert_eq!(ring.count_status(StatusCode::ResyncStarted), 1);
    // The message parsed: a bad checksum is not a parse error.
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 0);
}

#[test]
fn kraken_broken_json_is_counted_and_the_missed_update_resyncs() {
    let (m, _ring) = kraken_resync_case(
        Faults {
            broken_json_nth: Some(NTH),
            ..Faults::default()
        },
        NTH,
        &[
            StatusCode::BookValid,
            StatusCode::ChecksumFailed,
            StatusCode::ResyncStarted,
            StatusCode::BookValid,
        ],
    );
    assert_eq!(m.parse_errors("json"), 1);
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 1);
    assert_eq!(m.get("tickring_collector_resyncs_total"), 1);
}

#[test]
fn coinbase_dropped_match_is_a_gap_and_the_book_resyncs() {
    // BAND-GBP alone: 472 level2 messages, matches with trade ids
    // 881613-881617. Drop 881615: the next match reveals the gap.
    let files = [
        "coinbase/exchange_level2.jsonl",
        "coinbase/exchange_matches.jsonl",
    ];
    let product = "BAND-GBP";
    let dropped_trade = 881_615;
    let cap = Capture::load(Exchange::Coinbase, &files.map(fx)).unwrap();
    let served: Vec<_> = cap
        .msgs
        .iter()
        .filter(|m| cap.keys[m.key as usize].symbol == product)
        .collect();
    let nth = 1 + served
        .iter()
        .position(|m| m.seq2 == Some(dropped_trade))
        .expect("the match in the capture") as u64;
    let (server, _sent) = replay(Exchange::Coinbase, &files, |c| {
        quick(c);
        c.faults.drop_nth = Some(nth);
    });
    let dir = TestDir::new("cb-drop");
    let mut cfg = FeedToml::new(Exchange::Coinbase, &[product], server.url());
    cfg.capacity = 1 << 16;
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    let mut ring = RingLog::open(&dir.ring());
    col.wait_for("the gap, the resync and a valid book", |_| {
        ring.drain();
        ring.has_in_order(
            0,
            &[
                StatusCode::BookValid,
                StatusCode::Gap,
                StatusCode::ResyncStarted,
                StatusCode::BookValid,
            ],
        ) && all_books_valid(&dir.ring(), 1)
    });
    let (m, conn) = wait_settled(&mut col, &server, served.len() as u64, &mut ring, None);
    assert_eq!(conn.dropped, 1);
    let gap = ring
        .events
        .iter()
        .find(|e| e.status_code() == Some(StatusCode::Gap))
        .unwrap();
    assert_eq!(
        (gap.seq, gap.qty),
        (dropped_trade, 1),
        "first missing, count"
    );
    assert_eq!(m.get("tickring_collector_gaps_total"), 1);
    assert_eq!(m.get("tickring_collector_resyncs_total"), 1);
    assert_eq!(m.get("tickring_collector_reconnects_total"), 0);
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 0);
    wait_ready(&mut col);
    // The resubscription served the product's level2 again from its
    // snapshot: the same final book as the capture gives offline.
    assert_books_match_offline(&dir, &ring, &cfg, "coinbase/exchange_level2.jsonl", &col);
    col.assert_running();
}

/// A fault that fails the connection, on every connection of server A:
/// waits until the collector saw it and reconnected (`seen`), then swaps A
/// for a healthy server on the same port and checks the recovery. Returns
/// the metrics and the ring once books are valid again.
fn reconnect_case(
    faults: Faults,
    tweak: impl FnOnce(&mut FeedToml),
    seen: impl Fn(&Metrics) -> bool,
) -> (Metrics, RingLog, Collector, TestDir) {
    let (a, _sent) = kraken_server(faults);
    let dir = TestDir::new("reconnect");
    let mut cfg = kraken_config(&a);
    tweak(&mut cfg);
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    let mut ring = RingLog::open(&dir.ring());
    col.wait_for("the fault and a reconnect", |c| {
        ring.drain();
        seen(&c.metrics())
            && ring.has_in_order(
                0,
                &[
                    StatusCode::Connected,
                    StatusCode::BookValid,
                    StatusCode::Disconnected,
                    StatusCode::Connected,
                    StatusCode::BookValid,
                ],
            )
    });
    assert!(a.connections().len() >= 2, "{:?}", a.connections());
    col.assert_running();

    // Swap in a healthy server on the same address.
    let addr = a.local_addr();
    a.stop();
    col.wait_for("the collector to see the faulty server gone", |c| {
        c.metrics().get("tickring_collector_connection_up") == 0
    });
    let base = col.metrics();
    let (b, sent_b) = replay_at(Exchange::Kraken, &[KRAKEN], addr, quick);
    let (m, conn) = wait_settled(&mut col, &b, KRAKEN_MSGS, &mut ring, Some(&base));
    assert_eq!(b.connections().len(), 1);
    assert_eq!(conn.market_messages, KRAKEN_MSGS);
    assert_eq!(sent_texts(&b, &sent_b, conn.id, KRAKEN_MSGS).len(), 118);
    wait_ready(&mut col);
    assert_books_match_offline(&dir, &ring, &cfg, KRAKEN, &col);
    let connected = ring.count_status(StatusCode::Connected) as u64;
    assert!(connected >= 3, "A twice, then B");
    assert_eq!(
        ring.count_status(StatusCode::Disconnected) as u64,
        connected - 1
    );
    // Attempts that failed (connection refused while no server listened)
    // count as reconnects too.
    let reconnects = m.get("tickring_collector_reconnects_total");
    assert!(reconnects >= connected - 1);
    // Connected carries the reconnect count (attempts after the first).
    let last = ring
        .events
        .iter()
        .rfind(|e| e.status_code() == Some(StatusCode::Connected))
        .unwrap();
    assert_eq!(last.seq, reconnects);
    assert_eq!(m.get("tickring_collector_books_valid"), 1);
    col.assert_running();
    (m, ring, col, dir)
}

#[test]
fn connection_closed_mid_stream_reconnects_and_books_recover() {
    let (m, _ring, col, _dir) = reconnect_case(
        Faults {
            close_after: Some(NTH),
            ..Faults::default()
        },
        |_| {},
        |_| true,
    );
    assert!(col.log().contains("connection closed"), "{}", col.log());
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 0);
    assert_eq!(m.get("tickring_collector_silence_timeouts_total"), 0);
}

#[test]
fn silent_exchange_times_out_once_per_connection_and_reconnects() {
    let (m, ring, col, _dir) = reconnect_case(
        Faults {
            silent_after: Some(NTH),
            ..Faults::default()
        },
        |c| {
            c.tables
                .push_str("\n[liveness]\nsilence_timeout_ms = 500\n")
        },
        |m| m.get("tickring_collector_silence_timeouts_total") >= 1,
    );
    // Regression: the silence check ran on every tick while the close
    // handshake with the silent peer was pending, counting (and logging)
    // one timeout per tick.
    let timeouts = m.get("tickring_collector_silence_timeouts_total");
    let connections = ring.count_status(StatusCode::Connected) as u64;
    assert!(
        timeouts >= 1 && timeouts < connections,
        "{timeouts} timeouts for {connections} connections (the last one healthy)"
    );
    assert_eq!(
        col.log().matches("went silent").count() as u64,
        timeouts,
        "{}",
        col.log()
    );
    assert_eq!(m.get("tickring_collector_parse_errors_total"), 0);
}

#[test]
fn oversized_frame_is_counted_and_the_collector_reconnects() {
    let (m, ring, col, _dir) = reconnect_case(
        Faults {
            oversize_nth: Some(NTH),
            oversize_bytes: 100_000,
            ..Faults::default()
        },
        |c| c.top.push_str("max_frame_bytes = 65536\n"),
        |m| m.parse_errors("frame_too_large") >= 1,
    );
    assert!(
        col.log().contains("exceeds the limit of 65536 bytes"),
        "{}",
        col.log()
    );
    let n = m.parse_errors("frame_too_large");
    assert!(n as usize <= ring.count_status(StatusCode::Disconnected));
    assert_eq!(m.get("tickring_collector_parse_errors_total"), n);
}

#[test]
fn invalid_utf8_is_counted_and_the_collector_reconnects() {
    let (m, ring, col, _dir) = reconnect_case(
        Faults {
            invalid_utf8_nth: Some(NTH),
            ..Faults::default()
        },
        |_| {},
        |m| m.parse_errors("invalid_utf8") >= 1,
    );
    assert!(col.log().contains("not valid UTF-8"), "{}", col.log());
    let n = m.parse_errors("invalid_utf8");
    assert!(n as usize <= ring.count_status(StatusCode::Disconnected));
    assert_eq!(m.get("tickring_collector_parse_errors_total"), n);
}

#[test]
fn refused_subscription_is_counted_once_per_refusal() {
    // The replay server refuses a pair it has no capture of, once per
    // channel (book and trade); the collector keeps the other book.
    let (server, _sent) = kraken_server(Faults::default());
    let dir = TestDir::new("refused-sub");
    let mut cfg = kraken_config(&server);
    cfg.symbols.push("DOGE/USD".into());
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    let mut ring = RingLog::open(&dir.ring());
    let (m, conn) = wait_settled(&mut col, &server, KRAKEN_MSGS, &mut ring, None);
    assert_eq!(conn.client_errors, 2, "{conn:?}");
    // Regression: each refusal was counted twice (once for the frame,
    // once for its SubscribeFailed status event).
    assert_eq!(m.get("tickring_collector_subscribe_rejections_total"), 2);
    assert_eq!(ring.count_status(StatusCode::SubscribeFailed), 2);
    assert_eq!(
        col.log().matches("the exchange refused a request").count(),
        2
    );
    assert_eq!(m.get("tickring_collector_books"), 2);
    assert_eq!(m.get("tickring_collector_books_valid"), 1);
    let (status, body) = col.ready();
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: 1 of 2 books valid\n")
    );
    assert!(book_snapshot(&dir.ring(), 0).valid);
    col.assert_running();
}
