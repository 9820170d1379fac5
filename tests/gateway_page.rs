//! The status page in a real browser: headless Chromium (Debian's
//! `chromium`) loads `/` from a gateway fed by live events (a real capture
//! replayed at a steady pace through the collector's pipeline, and a
//! WebSocket client streaming from it), and the page's numbers change as
//! events flow. A screenshot is kept as an artifact:
//! `target/test-artifacts/gateway-status-page.png`.

mod browser;
mod gateway_support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::Browser;
use gateway_support::*;
use serde_json::json;
use tickring::event::Exchange;

fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts").join(name)
}

#[test]
fn status_page_shows_live_feeds_latency_and_top_of_book() {
    // Fail (not skip) without a browser, saying what to install.
    browser::chromium_path();
    let dir = TempDir::new("page");
    let mut col = Collector::new(dir.path(), "coinbase", Exchange::Coinbase, 1 << 18, 50);
    let lines = Collector::lines(&fixtures().join("coinbase/exchange_level2.jsonl"));
    col.preregister(&lines);
    let gw = Gateway::start(
        dir.path(),
        &format!(
            "rings = [\"{}\"]\nstatus_instruments = [\"coinbase:SKL-USD\", \"coinbase:DASH-BTC\", \"coinbase:BAND-BTC\"]",
            col.ring_path().display()
        ),
    );
    gw.wait_instruments(10);
    // As the collector does once its WebSocket is up.
    col.connected();

    // Live events: the capture at ~400 messages/s, for as long as the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let publisher = std::thread::spawn(move || {
        let t0 = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            if s2.load(Ordering::Relaxed) || t0.elapsed() > Duration::from_secs(90) {
                break;
            }
            col.frame(l);
            if i % 4 == 3 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    // A WebSocket client, so the page has send latencies to show.
    let addr = gw.addr;
    let s3 = stop.clone();
    let streamer = std::thread::spawn(move || {
        let mut ws = ws_connect(addr, &[]).unwrap();
        send_json(
            &mut ws,
            &json!({"op": "subscribe", "channels": ["book"], "instruments": ["coinbase:*"]}),
        );
        while !s3.load(Ordering::Relaxed) {
            if ws.read().is_err() {
                break;
            }
        }
    });

    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("http://{}/", gw.addr));
    let ready = "document.getElementById('conn').textContent === 'live' && \
                 document.querySelector('#feeds tbody tr .events-total') !== null && \
                 document.querySelectorAll('#tob tbody tr[data-instrument]').length === 3";
    b.wait_for(ready, "the page to show live data", Duration::from_secs(30));
    let events = |b: &mut Browser| -> u64 {
        let t = b.eval("document.querySelector('#feeds tbody tr .events-total').textContent");
        t.as_str().unwrap().replace(',', "").parse().unwrap()
    };
    let first = events(&mut b);
    let sent_first = b.eval("document.getElementById('sent-total').textContent");
    // The page refreshes itself: the numbers move while events flow.
    let t0 = Instant::now();
    let second = loop {
        std::thread::sleep(Duration::from_millis(300));
        let n = events(&mut b);
        if n > first {
            break n;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "events total stuck at {first}"
        );
    };
    assert!(second > first);
    b.wait_for(
        &format!("document.getElementById('sent-total').textContent !== {sent_first}"),
        "messages sent to change",
        Duration::from_secs(20),
    );
    // Feed state, latency percentiles and plot, top of book.
    let row = b.eval("document.querySelector('#feeds tbody tr').innerText");
    let row = row.as_str().unwrap();
    assert!(row.contains("coinbase") && row.contains("running"), "{row}");
    b.wait_for(
        "document.getElementById('age-p99').textContent.includes('s')",
        "event age percentiles",
        Duration::from_secs(20),
    );
    let bars = b.eval("document.querySelectorAll('#age-plot rect').length");
    assert_eq!(bars, json!(20), "one bar per latency bucket");
    let tob = b.wait_for(
        "(() => { const r = document.querySelector('#tob tbody tr[data-instrument=\"coinbase:SKL-USD\"]'); \
           return r && r.querySelector('.bid').textContent !== '–' && r.innerText; })()",
        "the top of book of SKL-USD",
        Duration::from_secs(30),
    );
    assert!(tob.as_str().unwrap().contains("coinbase:SKL-USD"), "{tob}");
    // Let a few more refreshes land so the screenshot shows a busy page.
    std::thread::sleep(Duration::from_millis(1500));
    let shot = artifact("gateway-status-page.png");
    b.screenshot(&shot);
    eprintln!(
        "events total {first} -> {second}; screenshot {}",
        shot.display()
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    drop(gw);
    streamer.join().unwrap();
}
