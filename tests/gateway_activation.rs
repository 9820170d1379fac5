//! Socket activation: the gateway serves the listening socket it is passed
//! (fd 3, `LISTEN_FDS=1`, `LISTEN_PID` = its pid, as systemd passes it),
//! and restarting it under a stream of connection attempts refuses none:
//! the socket stays open in the hands of whoever passed it (here the test,
//! like systemd), attempts made while no gateway runs wait in the backlog,
//! and a stopping gateway answers every connection it already accepted.

mod gateway_support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_support::*;

const CLIENTS: usize = 4;
const RESTARTS: usize = 3;

#[test]
fn restarts_under_a_stream_of_connection_attempts_refuse_none() {
    let dir = TempDir::new("activation");
    let feed = SynthFeed::new(dir.path(), "f", 1 << 12);
    let cfg = dir.path().join("gateway.toml");
    // `listen` cannot be bound here: only the passed socket can work.
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nlisten = \"192.0.2.1:9\"\nrings = [\"{}\"]\ndrain_ms = 1000\n",
            feed.writer.path().display()
        ),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = |i: usize| dir.path().join(format!("gateway-{i}.log"));
    let mut child = spawn_activated(&listener, &cfg, &log(0));
    wait_up(addr);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // Each thread returns the (start, end) of its answered attempts.
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut spans = Vec::new();
                // Bounded: stops when told, or after 2 minutes at most.
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                    let start = Instant::now();
                    match http_get(addr, "/health", &[]) {
                        Ok(r) if r.status == 200 && r.body == "ok\n" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            spans.push((start, Instant::now()));
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("answer {r:?}")),
                        Err(e) => failures.lock().unwrap().push(format!("{e}")),
                    }
                }
                spans
            })
        })
        .collect();
    // When no gateway process was running.
    let mut gaps = Vec::new();

    for i in 1..=RESTARTS {
        // Let the stream run against the live gateway for a moment.
        let before = ok.load(Ordering::Relaxed);
        while ok.load(Ordering::Relaxed) < before + 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // systemd's restart: SIGTERM, wait for the exit, start again.
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "gateway exited with {status}: {}",
            std::fs::read_to_string(log(i - 1)).unwrap_or_default()
        );
        let gap_start = Instant::now();
        // A slow restart: attempts pile up in the backlog meanwhile.
        std::thread::sleep(Duration::from_millis(200));
        gaps.push((gap_start, Instant::now()));
        child = spawn_activated(&listener, &cfg, &log(i));
        wait_up(addr);
    }
    stop.store(true, Ordering::Relaxed);
    let spans: Vec<(Instant, Instant)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    // Attempts in flight while no gateway ran: begun before a gap ended
    // and answered after it began (by the next gateway, from the backlog).
    let while_down = spans
        .iter()
        .filter(|(s, e)| gaps.iter().any(|(gs, ge)| s < ge && e > gs))
        .count();
    eprintln!(
        "{ok} attempts answered, {while_down} of them in flight while no gateway ran; {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "refused or unanswered attempts: {failures:?}"
    );
    // The test did what it claims: attempts were made during the gaps.
    assert!(
        while_down >= RESTARTS,
        "only {while_down} attempts spanned a restart"
    );
}

fn wait_up(addr: SocketAddr) {
    let t0 = Instant::now();
    while http_get(addr, "/health", &[]).ok().map(|r| r.status) != Some(200) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "gateway did not come up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
