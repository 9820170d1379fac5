//! `tickring demo` as a newcomer runs it: every feed becomes ready, and
//! everything it created is gone when it stops.

use std::process::Command;

#[test]
fn demo_brings_every_feed_to_ready_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("tickring-demo-test-{}", std::process::id()));
    let ring_dir = format!("/dev/shm/tickring-demo-test-{}", std::process::id());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args([
            "demo",
            "--duration",
            "10",
            "--summary-every",
            "2",
            "--ring-dir",
            &ring_dir,
            "--listen",
            &listen,
        ])
        .env("TMPDIR", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("status page http://{listen}/")),
        "gateway not started:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&ring_dir);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for ring in [
        "demo-coinbase.ring",
        "demo-kraken.ring",
        "demo-binance.ring",
    ] {
        assert!(stdout.contains(ring), "{ring} not announced:\n{stdout}");
    }
    // At some summary line, every feed was ready with all its books valid.
    let all_ready = stdout.lines().any(|l| {
        l.contains("coinbase:")
            && l.contains("books 10/10 valid, ready")
            && l.contains("books 1/1 valid, ready")
            && l.contains("books 4/4 valid, ready")
    });
    assert!(
        all_ready,
        "no summary with every feed ready:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("demo stopped; rings and configs removed"),
        "{stdout}"
    );
    assert!(
        !std::path::Path::new(&ring_dir).exists(),
        "{ring_dir} left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
