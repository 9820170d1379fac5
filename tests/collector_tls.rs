//! The collector over TLS: a test CA and server certificates made with
//! rcgen at run time (nothing committed), the replay server serving wss://
//! and https:// with them, and the collector trusting the CA through
//! `tls_ca_file`. A certificate for another name, or from a CA the config
//! does not trust, is refused: the collector keeps retrying, never reaches
//! "connected", and its log says why.

mod support;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use support::*;
use tickring::event::{Exchange, StatusCode};
use tickring::replay::TlsFiles;

/// A CA whose certificate is written to `<dir>/<name>-ca.pem`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &TestDir, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tickring test CA {name}"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.write(&format!("{name}-ca.pem"), &issuer.pem());
        Ca { issuer, pem }
    }

    /// A server certificate for `names` (IP addresses become IP SANs),
    /// written as `<dir>/<tag>.pem` + `.key`.
    fn server(&self, dir: &TestDir, tag: &str, names: &[&str]) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        TlsFiles {
            cert: dir.write(&format!("{tag}.pem"), &cert.pem()),
            key: dir.write(&format!("{tag}.key"), &key.serialize_pem()),
        }
    }
}

#[test]
fn tls_with_a_test_ca_streams_and_fetches_snapshots() {
    let dir = TestDir::new("tls");
    let ca = Ca::new(&dir, "good");
    let tls = ca.server(&dir, "server", &["127.0.0.1"]);
    let (server, _sent) = replay(
        Exchange::Binance,
        &["binance/combined_depth_100ms.jsonl"],
        |c| {
            binance_rest(c);
            c.tls = Some(tls);
        },
    );
    assert!(server.url().starts_with("wss://127.0.0.1:"));
    let mut cfg = FeedToml::new(
        Exchange::Binance,
        &BINANCE_SNAPSHOT_SYMBOLS,
        format!("{}/stream", server.url()),
    );
    cfg.rest_endpoint = Some(format!("https://{}", server.local_addr()));
    cfg.top = format!("tls_ca_file = {:?}\n", ca.pem.to_str().unwrap());
    cfg.capacity = 1 << 14;
    let mut col = Collector::start(&dir, &cfg.write(&dir));
    let mut ring = RingLog::open(&dir.ring());
    let all = server.capture().msgs.len() as u64;
    let (m, conn) = wait_settled(&mut col, &server, all, &mut ring, None);
    assert_eq!(conn.market_messages, all);
    assert_eq!(server.connections().len(), 1);
    // The four depth snapshots came over https from the same server.
    assert_eq!(m.get("tickring_collector_snapshot_fetches_total"), 4);
    assert_eq!(m.get("tickring_collector_snapshot_fetch_failures_total"), 0);
    assert_eq!(server.counters().rest_requests.load(Ordering::Relaxed), 4);
    col.wait_for("/ready 200", |c| c.ready().0 == 200);
    assert!(all_books_valid(&dir.ring(), 4));
    let offline = offline_books(
        Exchange::Binance,
        "binance/combined_depth_100ms.jsonl",
        10,
        true,
    );
    for (id, ins) in cfg.instruments().iter().enumerate() {
        let snap = book_snapshot(&dir.ring(), id as u16);
        let (_, bids, asks) = &offline[&ins.symbol];
        assert_eq!(&levels_text(&snap.bids, ins), bids, "{}", ins.symbol);
        assert_eq!(&levels_text(&snap.asks, ins), asks, "{}", ins.symbol);
    }
    assert_eq!(ring.count_status(StatusCode::Connected), 1);
    assert_eq!(ring.count_status(StatusCode::BookValid), 4);
    assert_eq!(m.get("tickring_collector_reconnects_total"), 0);
}

/// Starts a Kraken replay server with `tls` and a collector trusting
/// `ca_pem`; once three handshakes were refused, checks that the collector
/// never connected, is still retrying and logged `expect_in_log`.
fn refused(dir: &TestDir, tls: TlsFiles, ca_pem: &std::path::Path, expect_in_log: &[&str]) {
    let (server, _sent) = replay(
        Exchange::Kraken,
        &["kraken/v2_session_book_d10.jsonl"],
        |c| c.tls = Some(tls),
    );
    let mut cfg = FeedToml::new(
        Exchange::Kraken,
        &["BTC/USD"],
        format!("{}/v2", server.url()),
    );
    cfg.top = format!("tls_ca_file = {:?}\n", ca_pem.to_str().unwrap());
    let mut col = Collector::start(dir, &cfg.write(dir));
    let mut ring = RingLog::open(&dir.ring());
    col.wait_for("three refused TLS handshakes", |c| {
        c.metrics().get("tickring_collector_reconnects_total") >= 3
            && server.counters().refused.load(Ordering::Relaxed) >= 3
    });
    let log = col.log();
    for want in expect_in_log {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
    }
    let m = col.metrics();
    assert_ne!(
        m.sum(
            "tickring_collector_connection_state",
            "state=\"subscribed\""
        ),
        1
    );
    assert_eq!(m.messages(), 0);
    assert_eq!(m.get("tickring_collector_connection_up"), 0);
    // No WebSocket ever opened on the server, no Connected in the ring.
    assert!(
        server.connections().is_empty(),
        "{:?}",
        server.connections()
    );
    ring.drain();
    assert_eq!(ring.count_status(StatusCode::Connected), 0);
    assert!(!log.contains("connected; subscribing"), "{log}");
    assert_eq!(col.ready().0, 503);
    col.assert_running();
}

#[test]
fn tls_certificate_for_another_name_is_refused_and_retried() {
    let dir = TestDir::new("tls-name");
    let ca = Ca::new(&dir, "good");
    let tls = ca.server(&dir, "wrong-name", &["wrong.example"]);
    refused(
        &dir,
        tls,
        &ca.pem,
        &["TLS handshake", "not valid for name", "wrong.example"],
    );
}

#[test]
fn tls_certificate_from_an_untrusted_ca_is_refused_and_retried() {
    let dir = TestDir::new("tls-ca");
    let trusted = Ca::new(&dir, "trusted");
    let other = Ca::new(&dir, "other");
    let tls = other.server(&dir, "server", &["127.0.0.1"]);
    refused(&dir, tls, &trusted.pem, &["TLS handshake", "UnknownIssuer"]);
}
