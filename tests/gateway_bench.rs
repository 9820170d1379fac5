//! `tickring bench gateway` end to end on a small scale: it starts a
//! gateway, connects its clients, publishes, and reports what it measured.

mod gateway_support;

use std::process::Command;

use gateway_support::bin;

#[test]
fn bench_gateway_reports_latency_rates_and_cpu() {
    let out = Command::new(bin())
        .args([
            "bench",
            "gateway",
            "--clients",
            "60",
            "--instruments",
            "6",
            "--subs",
            "2",
            "--rates",
            "200",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clients"], 60);
    let s = &v["steps"][0];
    assert_eq!(s["rate"], 200);
    assert_eq!(s["clients_connected"], 60);
    assert_eq!(s["dropped_slow"], 0);
    // 60 clients x 2 subscriptions over 6 instruments: each event reaches 20.
    let published = s["published"].as_u64().unwrap();
    assert!(published > 50, "{s}");
    assert!(
        s["expected"].as_u64().unwrap() >= published * 20 - 20 * 6,
        "{s}"
    );
    assert!(s["received"].as_u64().unwrap() > 0, "{s}");
    let lat = &s["latency_us"];
    assert!(lat["count"].as_u64().unwrap() > 0);
    assert!(lat["p50"].as_f64().unwrap() <= lat["p99"].as_f64().unwrap());
    assert!(s["health_us"]["count"].as_u64().unwrap() > 10, "{s}");
    assert!(s["gateway_cpu_percent"].as_f64().unwrap() >= 0.0);
    assert!(v["verdict"].is_string());
}
