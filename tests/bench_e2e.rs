//! `tickring bench e2e --json`: the shape of the report and the sanity of
//! its numbers (never their speed). Each run starts replay servers on
//! 127.0.0.1, a collector child and a tokio thread; all stop by themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    match std::env::var_os("TICKRING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// One benchmark at a time: each pins a spinning reader to a core.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_e2e(extra: &[&str]) -> Value {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args([
            "bench",
            "e2e",
            "--json",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ])
        .args(extra)
        .arg("--fixtures")
        .arg(fixtures())
        .output()
        .expect("running tickring");
    assert!(
        out.status.success(),
        "bench e2e failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn check_report(v: &Value, exchange: &str) {
    assert_eq!(v["exchange"], exchange);
    let results = v["results"].as_array().expect("results is an array");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tickring", "socket_floor", "tokio_baseline"]);
    for r in results {
        let name = r["name"].as_str().unwrap();
        let p: Vec<u64> = ["p50_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns"]
            .iter()
            .map(|k| {
                r[*k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: {k} is not a number: {r}"))
            })
            .collect();
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "{name}: percentiles out of order: {p:?}"
        );
        assert!(p[4] > 0, "{name}: max is 0");
        assert!(r["throughput_per_s"].is_null(), "{name}: {r}");
        let samples = r["samples"].as_u64().unwrap();
        let sent = r["sent"].as_u64().unwrap();
        assert!(samples > 0, "{name}: no samples: {r}");
        assert!(
            samples <= sent,
            "{name}: more samples than messages sent: {r}"
        );
        let queued = r["queued"].as_u64().unwrap();
        assert_eq!(
            samples + queued + r["missed"].as_u64().unwrap(),
            sent,
            "{name}: every message sent in the window is a sample, queued or missed: {r}"
        );
        assert_eq!(r["all_samples"]["count"], samples + queued, "{name}: {r}");
        // Every frame of the ring paths must be one the server sent.
        if name != "socket_floor" {
            assert_eq!(r["unmatched_frames"], 0, "{name}: {r}");
            assert_eq!(r["ring_lost"], 0, "{name}: {r}");
            assert_eq!(r["parse_errors"], 0, "{name}: {r}");
            let st = &r["stages"];
            for k in ["wire_to_recv", "recv_to_publish", "publish_to_visible"] {
                assert!(st[k]["p50_ns"].is_u64(), "{name}: stage {k}: {st}");
            }
        }
    }
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for t in targets {
        assert!(t["pass"].is_boolean(), "{t}");
        assert!(t["ratio"].is_number(), "{t}");
    }
    let features = v["io_uring_features"].as_object().unwrap();
    assert!(
        features.contains_key("multishot_recv"),
        "the collector's io_uring features are reported: {features:?}"
    );
}

#[test]
fn bench_e2e_json_reports_three_paths_with_ordered_percentiles() {
    let v = run_e2e(&[]);
    check_report(&v, "kraken");
}

#[test]
fn bench_e2e_runs_on_binance_book_ticker() {
    let v = run_e2e(&["--exchange", "binance"]);
    check_report(&v, "binance");
}

/// Each round's collector once reopened the ring of the round before, and
/// the reader paired those stale events with the new round's messages.
#[test]
fn later_rounds_do_not_read_the_rings_of_earlier_rounds() {
    let v = run_e2e(&["--rounds", "2"]);
    check_report(&v, "kraken");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["connections"], 2, "one connection per round: {r}");
    }
}

#[test]
fn bench_e2e_refuses_an_exchange_it_has_no_scenario_for() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args([
            "bench",
            "e2e",
            "--exchange",
            "coinbase",
            "--duration",
            "0.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kraken") && err.contains("binance"), "{err}");
}
