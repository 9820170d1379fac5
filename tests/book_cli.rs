//! `tickring book --json` on each exchange's captures, through the built binary.

mod feed_support;

use feed_support::fixtures;
use std::process::{Command, Output};

use serde_json::Value;

fn tickring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(args)
        .output()
        .expect("running tickring")
}

fn book_json(exchange: &str, input: &str, extra: &[&str]) -> Value {
    let path = fixtures().join(input);
    let mut args = vec![
        "book",
        "--exchange",
        exchange,
        "--input",
        path.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = tickring(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn book<'a>(doc: &'a Value, symbol: &str) -> &'a Value {
    doc["books"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["symbol"] == symbol)
        .unwrap_or_else(|| panic!("no book {symbol}"))
}

fn top(b: &Value, side: &str) -> (String, String) {
    let l = &b[side][0];
    (l[0].as_str().unwrap().into(), l[1].as_str().unwrap().into())
}

#[test]
fn kraken_session_books_and_checksums() {
    let doc = book_json("kraken", "kraken/v2_session_book_d10.jsonl", &[]);
    let s = &doc["stats"];
    assert_eq!(s["messages"], 128);
    assert_eq!(s["checksum_ok"], 118);
    assert_eq!(s["checksum_failed"], 0);
    assert_eq!(s["updates"], 117);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["resyncs"], 0);
    let b = book(&doc, "BTC/USD");
    assert_eq!(b["bids"].as_array().unwrap().len(), 10);
    assert_eq!(b["asks"].as_array().unwrap().len(), 10);
    // Top of book after the last update, as the messages imply (see
    // tests/book_kraken.rs for the replay): canonical decimal text.
    assert_eq!(top(b, "bids"), ("62802.5".into(), "0.00849808".into()));
    assert_eq!(top(b, "asks"), ("62802.6".into(), "5.82123492".into()));
    // Bids best first (descending), asks best first (ascending).
    let prices = |side: &str| -> Vec<i64> {
        b[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| tickring::fixed::parse(l[0].as_str().unwrap().as_bytes(), 8).unwrap())
            .collect()
    };
    assert!(prices("bids").windows(2).all(|w| w[0] > w[1]));
    assert!(prices("asks").windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn binance_books_sync_from_rest_snapshots() {
    let snap = fixtures().join("binance/depth_snapshot_rest.jsonl");
    let doc = book_json(
        "binance",
        "binance/combined_depth_100ms.jsonl",
        &[
            "--snapshot",
            snap.to_str().unwrap(),
            "--snapshot-symbols",
            "NKNUSDT,BLZETH,LRCBTC,RUNEEUR",
            "--depth",
            "5",
        ],
    );
    let s = &doc["stats"];
    assert_eq!(s["messages"], 177);
    assert_eq!(s["gaps"], 0);
    assert_eq!(s["resyncs"], 0);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["snapshots"], 4);
    for sym in ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"] {
        let b = book(&doc, sym);
        assert_eq!(b["state"], "valid", "{sym}");
        assert_eq!(b["bids"].as_array().unwrap().len(), 5, "--depth 5");
    }
    assert_eq!(
        top(book(&doc, "NKNUSDT"), "bids"),
        ("0.3527".into(), "9602".into())
    );
    assert_eq!(
        top(book(&doc, "LRCBTC"), "asks"),
        ("0.00000638".into(), "2285".into())
    );
}

#[test]
fn binance_without_snapshots_holds_the_books() {
    let doc = book_json(
        "binance",
        "binance/testnet_combined_trade_bookTicker_depth.jsonl",
        &[],
    );
    assert_eq!(doc["stats"]["errors"], 0);
    assert!(doc["stats"]["trades"].as_u64().unwrap() > 0);
    let b = book(&doc, "BTCUSDT");
    assert_eq!(b["state"], "awaiting_snapshot");
    assert_eq!(b["bids"].as_array().unwrap().len(), 0);
}

#[test]
fn coinbase_level2_books() {
    let doc = book_json(
        "coinbase",
        "coinbase/exchange_level2.jsonl",
        &["--depth", "1"],
    );
    let s = &doc["stats"];
    assert_eq!(s["messages"], 9729);
    assert_eq!(s["updates"], 9719);
    assert_eq!(s["snapshots"], 10);
    assert_eq!(s["crossed"], 0);
    assert_eq!(s["errors"], 0);
    assert_eq!(doc["books"].as_array().unwrap().len(), 10);
    let b = book(&doc, "BAND-GBP");
    assert_eq!(top(b, "bids"), ("14.7366".into(), "27.57".into()));
    assert_eq!(top(b, "asks"), ("14.7664".into(), "12".into()));
    let trades = book_json("coinbase", "coinbase/exchange_matches.jsonl", &[]);
    assert_eq!(trades["stats"]["trades"], 107);
    assert_eq!(trades["stats"]["gaps"], 0);
}

#[test]
fn coinbase_advanced_reports_the_capture_gap() {
    let doc = book_json("coinbase-advanced", "coinbase/advanced_l2_data.jsonl", &[]);
    let s = &doc["stats"];
    assert_eq!(s["messages"], 15);
    assert_eq!(s["updates"], 15);
    assert_eq!(s["gaps"], 3);
    assert_eq!(s["resyncs"], 2);
    assert_eq!(s["errors"], 0);
    // No snapshot was kept in the capture: the books are partial.
    assert_eq!(book(&doc, "BTC-USD")["state"], "invalid");
    assert_eq!(top(book(&doc, "BTC-USD"), "asks").0, "83277.26");
}

#[test]
fn a_bad_line_names_the_file_and_line_and_is_counted() {
    let dir = std::env::temp_dir().join(format!("tickring-book-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.jsonl");
    let good = std::fs::read_to_string(fixtures().join("kraken/v2_book.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&path, format!("{first}\n{{\"channel\":\"book\",\n")).unwrap();
    let out = tickring(&[
        "book",
        "--exchange",
        "kraken",
        "--input",
        path.to_str().unwrap(),
        "--json",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", path.display())),
        "{stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["stats"]["errors"], 1);
    assert_eq!(doc["stats"]["messages"], 2);
    assert_eq!(doc["stats"]["checksum_ok"], 1);
}

#[test]
fn table_output_and_bad_arguments() {
    let path = fixtures().join("kraken/v2_book.jsonl");
    let out = tickring(&[
        "book",
        "--exchange",
        "kraken",
        "--input",
        path.to_str().unwrap(),
        "--depth",
        "2",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("BTC/USD (valid)\n"), "{text}");
    assert!(text.contains("62802.5"), "{text}");
    assert!(text.contains("checksum ok 118 failed 0"), "{text}");

    let out = tickring(&["book", "--exchange", "bitstamp", "--input", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown exchange"));
}
