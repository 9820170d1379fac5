//! `tickring replay` against an independent client: the Python `websockets`
//! library (tests/python/replay_client.py), for each exchange. Starts the
//! built binary on a free port, runs the client, then stops the server with
//! SIGTERM and expects exit status 0.
//!
//! Needs the venv made by `tests/python/setup.sh`; without it the tests fail
//! with that instruction, unless `TICKRING_SKIP_PYTHON=1` (then they print
//! SKIPPED and pass).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    std::env::var_os("TICKRING_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

/// The venv's python, or `None` when the Python tests are to be skipped.
fn python() -> Option<PathBuf> {
    if std::env::var("TICKRING_SKIP_PYTHON").as_deref() == Ok("1") {
        println!("SKIPPED: Python client tests (TICKRING_SKIP_PYTHON=1)");
        return None;
    }
    let cache = std::env::var_os("TICKRING_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/tickring-ci"));
    let py = cache.join("venv/bin/python");
    assert!(
        py.exists(),
        "no Python venv at {}: run tests/python/setup.sh first (or set TICKRING_SKIP_PYTHON=1 to skip these tests)",
        py.display()
    );
    Some(py)
}

/// A `tickring replay` child process, killed on drop if still running.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[String]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickring"))
            .arg("replay")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tickring replay");
        let stdout = child.stdout.take().expect("stdout");
        // The first stdout line names the bound address; the pipe is
        // drained by a thread so the server never blocks on it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("tickring replay did not report its address: {err}");
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// SIGTERM, then the exit status (waits at most 10 s).
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < end,
                "tickring replay did not exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(py: &Path, exchange: &str, url: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/replay_client.py");
    let mut child = Command::new(py)
        .arg(&script)
        .args([exchange, url])
        .arg(fixtures())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the Python client");
    let end = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python client for {exchange} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    print!("{out}");
    assert!(
        status.success() && out.contains(&format!("PASS {exchange}")),
        "Python client for {exchange} failed ({status}):\n{out}\n{err}"
    );
}

fn file(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn check_exchange(exchange: &str, files: &[&str], extra: &[&str]) {
    let Some(py) = python() else { return };
    let mut args: Vec<String> = vec![
        "--exchange".into(),
        exchange.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--pace".into(),
        "max".into(),
        "--heartbeat-ms".into(),
        "100".into(),
    ];
    for f in files {
        args.push("--file".into());
        args.push(file(f));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = Server::start(&args);
    run_client(&py, exchange, &server.url);
    let status = server.stop();
    assert!(
        status.success(),
        "tickring replay exited with {status} on SIGTERM"
    );
}

#[test]
fn python_client_kraken() {
    check_exchange("kraken", &["kraken/v2_session_book_d10.jsonl"], &[]);
}

#[test]
fn python_client_coinbase() {
    check_exchange(
        "coinbase",
        &[
            "coinbase/exchange_level2.jsonl",
            "coinbase/exchange_matches.jsonl",
        ],
        &[],
    );
}

#[test]
fn python_client_coinbase_advanced() {
    check_exchange(
        "coinbase-advanced",
        &[
            "coinbase/advanced_l2_data.jsonl",
            "coinbase/advanced_market_trades.jsonl",
        ],
        &[],
    );
}

#[test]
fn python_client_binance() {
    let snap = file("binance/depth_snapshot_rest.jsonl");
    check_exchange(
        "binance",
        &["binance/combined_depth_100ms.jsonl"],
        &[
            "--snapshot",
            &snap,
            "--snapshot-symbols",
            "NKNUSDT,BLZETH,LRCBTC,RUNEEUR",
            "--ping-interval-secs",
            "1",
        ],
    );
}
