//! The ring across real processes: one writer, several readers, a slow
//! reader, a killed writer, a restarted writer, and files a reader must
//! refuse.
//!
//! Child processes are this same test binary re-executed with
//! `TICKRING_TEST_ROLE` set; it then runs the ignored test
//! `child_process_entry`, which acts out the role and reports on stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tickring::event::{Event, EventKind, Exchange, Side};
use tickring::instrument::Instrument;
use tickring::ring::{
    Backing, GoneReason, Poll, Reader, ReaderOptions, RingError, StartAt, Writer, WriterOptions,
};

/// A directory under /dev/shm for one test, removed on drop (also when the
/// test fails).
struct TempShm(PathBuf);

impl TempShm {
    fn new(tag: &str) -> TempShm {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = PathBuf::from(format!(
            "/dev/shm/tickring-test-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempShm(p)
    }

    fn opts(&self, capacity: u64) -> WriterOptions {
        WriterOptions {
            backing: Backing::Shm {
                dir: self.0.clone(),
            },
            capacity,
            lock_memory: false,
        }
    }
}

impl Drop for TempShm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop (so a failing test leaves none behind).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn event(n: u64) -> Event {
    Event {
        kind: EventKind::Trade as u8,
        exchange: Exchange::Binance as u8,
        side: if n % 2 == 0 { Side::Bid } else { Side::Ask } as u8,
        instrument: 0,
        price: (n * 3) as i64,
        qty: (n * 5 + 1) as i64,
        exch_ts: n as i64,
        seq: n,
        ..Event::default()
    }
}

fn spawn_role(role: &str, env: &[(&str, String)]) -> ChildGuard {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("TICKRING_TEST_ROLE", role)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(cmd.spawn().expect("spawn child"))
}

/// Reads the child's stdout until a line containing `prefix`; returns the
/// line from `prefix` on.
fn wait_line(child: &mut ChildGuard, prefix: &str) -> String {
    let out = child.0.stdout.as_mut().unwrap();
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("child exited before printing {prefix:?}");
        }
        // libtest prints "test child_process_entry ... " before the child's
        // first line, without a newline.
        if let Some(i) = line.find(prefix) {
            return line[i..].trim_end().to_owned();
        }
    }
}

fn env_u64(k: &str) -> u64 {
    std::env::var(k).unwrap().parse().unwrap()
}

/// Role dispatch for re-executed children. In a normal run (no role) this
/// test is ignored.
#[test]
#[ignore = "entry point of child processes spawned by the other tests"]
fn child_process_entry() {
    let role = std::env::var("TICKRING_TEST_ROLE").expect("run by the multi-process tests only");
    let path = PathBuf::from(std::env::var("TICKRING_RING").unwrap());
    match role.as_str() {
        "reader" => child_reader(&path),
        "writer-hold" => child_writer_hold(&path),
        other => panic!("unknown role {other}"),
    }
}

/// Reads until `TICKRING_TOTAL` sequences are accounted for (received or
/// lost), checking order and contents; sleeps 1 ms every
/// `TICKRING_SLOW_EVERY` events when set. Prints `result received lost`.
fn child_reader(path: &Path) {
    let total = env_u64("TICKRING_TOTAL");
    let slow_every = std::env::var("TICKRING_SLOW_EVERY")
        .ok()
        .map(|v| v.parse::<u64>().unwrap());
    let mut r = Reader::open(path, &ReaderOptions::default()).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let (mut received, mut lost, mut overruns) = (0u64, 0u64, 0u64);
    let mut expected_next = r.position();
    let deadline = Instant::now() + Duration::from_secs(120);
    while received + lost < total {
        assert!(
            Instant::now() < deadline,
            "reader timed out at {received}+{lost}"
        );
        match r.poll() {
            Poll::Event(ev) => {
                assert_eq!(ev.ring_seq, expected_next, "out of order");
                assert_eq!(ev, {
                    let mut e = event(ev.ring_seq);
                    e.ring_seq = ev.ring_seq;
                    e
                });
                expected_next += 1;
                received += 1;
                if slow_every.is_some_and(|k| received % k == 0) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Poll::Overrun { lost: n } => {
                let pos = r.position();
                // The position jumped by exactly what was reported lost.
                assert_eq!(pos - expected_next, n);
                expected_next = pos;
                lost += n;
                overruns += 1;
            }
            Poll::Empty | Poll::WriterGone(_) => std::hint::spin_loop(),
            Poll::WriterRestarted { .. } => panic!("unexpected restart"),
        }
    }
    println!("result {received} {lost} {overruns}");
}

/// Creates (or reopens) the ring, publishes `TICKRING_TOTAL` events
/// starting at `TICKRING_FIRST`, prints `ready EPOCH`, then heartbeats
/// until killed or until stdin closes.
fn child_writer_hold(path: &Path) {
    let dir = path.parent().unwrap().to_owned();
    let name = path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".ring")
        .to_owned();
    let opts = WriterOptions {
        backing: Backing::Shm { dir },
        capacity: env_u64("TICKRING_CAPACITY"),
        lock_memory: false,
    };
    let mut w = Writer::create(&name, &opts).unwrap();
    let first = env_u64("TICKRING_FIRST");
    for n in first..first + env_u64("TICKRING_TOTAL") {
        w.publish(&event(n));
    }
    println!("ready {}", w.epoch());
    std::io::stdout().flush().unwrap();
    let hb = w.heartbeat_handle();
    std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = std::io::stdin().read_line(&mut buf);
        std::process::exit(0);
    });
    loop {
        hb.beat();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Creates a writer right after this process dropped the previous one.
/// Other tests of this binary fork children; a child holds a copy of the
/// lock descriptor between fork and exec, so the flock may outlive the
/// dropped writer by a moment.
fn create_after_drop(name: &str, opts: &WriterOptions) -> Writer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Writer::create(name, opts) {
            Err(RingError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other.unwrap(),
        }
    }
}

fn parse_result(line: &str) -> (u64, u64, u64) {
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

#[test]
fn every_reader_that_keeps_up_sees_every_event_in_order() {
    let tmp = TempShm::new("keepup");
    // Capacity above the event count: no reader can be lapped, whatever
    // the scheduler does on a 2-core machine, so every reader must get
    // every event.
    let total = 100_000u64;
    let mut w = Writer::create("keepup", &tmp.opts(1 << 17)).unwrap();
    let path = w.path().to_owned();
    let env = [
        ("TICKRING_RING", path.display().to_string()),
        ("TICKRING_TOTAL", total.to_string()),
    ];
    let mut readers: Vec<_> = (0..3).map(|_| spawn_role("reader", &env)).collect();
    for r in &mut readers {
        wait_line(r, "ready");
    }
    for n in 0..total {
        w.publish(&event(n));
    }
    for r in &mut readers {
        let (received, lost, overruns) = parse_result(&wait_line(r, "result"));
        assert_eq!((received, lost, overruns), (total, 0, 0));
        assert!(r.0.wait().unwrap().success());
    }
}

#[test]
fn slow_reader_overruns_add_up_exactly_to_what_it_missed() {
    let tmp = TempShm::new("slow");
    let total = 50_000u64;
    let mut w = Writer::create("slow", &tmp.opts(1024)).unwrap();
    let path = w.path().to_owned();
    let mut fast = spawn_role(
        "reader",
        &[
            ("TICKRING_RING", path.display().to_string()),
            ("TICKRING_TOTAL", total.to_string()),
        ],
    );
    let mut slow = spawn_role(
        "reader",
        &[
            ("TICKRING_RING", path.display().to_string()),
            ("TICKRING_TOTAL", total.to_string()),
            ("TICKRING_SLOW_EVERY", "100".to_string()),
        ],
    );
    wait_line(&mut fast, "ready");
    wait_line(&mut slow, "ready");
    // Publish at roughly 5 M/s in bursts of 500 so the slow reader (which
    // naps 1 ms every 100 events) falls behind by more than a lap.
    for chunk in 0..total / 500 {
        for n in chunk * 500..(chunk + 1) * 500 {
            w.publish(&event(n));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let (received, lost, overruns) = parse_result(&wait_line(&mut slow, "result"));
    assert!(overruns > 0, "the slow reader was never lapped");
    assert!(lost > 0);
    assert_eq!(received + lost, total);
    let (f_received, f_lost, _) = parse_result(&wait_line(&mut fast, "result"));
    assert_eq!(f_received + f_lost, total);
}

#[test]
fn killed_writer_is_reported_gone_and_a_new_writer_is_a_restart() {
    let tmp = TempShm::new("kill");
    let path = tmp.0.join("kill.ring");
    let env = |first: u64| {
        [
            ("TICKRING_RING", path.display().to_string()),
            ("TICKRING_CAPACITY", "1024".to_string()),
            ("TICKRING_FIRST", first.to_string()),
            ("TICKRING_TOTAL", "10".to_string()),
        ]
    };
    let mut w1 = spawn_role("writer-hold", &env(0));
    assert_eq!(wait_line(&mut w1, "ready"), "ready 1");
    let opts = ReaderOptions {
        start: StartAt::Oldest,
        stale_after: Duration::from_millis(200),
        lock_memory: false,
    };
    let mut r = Reader::open(&path, &opts).unwrap();
    let mut got = 0;
    let quiet_until = Instant::now() + Duration::from_millis(600);
    // A quiet but live writer (heartbeating, pid alive) is never "gone",
    // even well past the staleness limit.
    while Instant::now() < quiet_until {
        match r.poll() {
            Poll::Event(ev) => {
                assert_eq!(ev.seq, got);
                got += 1;
            }
            Poll::Empty => std::thread::sleep(Duration::from_micros(50)),
            other => panic!("live writer reported as {other:?}"),
        }
    }
    assert_eq!(got, 10);

    let pid = w1.0.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    w1.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        assert!(
            Instant::now() < deadline,
            "killed writer never reported gone"
        );
        match r.poll() {
            Poll::WriterGone(reason) => break reason,
            Poll::Empty => std::thread::sleep(Duration::from_micros(200)),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(gone, GoneReason::Died { pid });
    // Reported once, then quiet.
    for _ in 0..10_000 {
        assert_eq!(r.poll(), Poll::Empty);
    }

    // A new writer on the same file: a restart, with the sequence going on.
    let mut w2 = spawn_role("writer-hold", &env(10));
    assert_eq!(wait_line(&mut w2, "ready"), "ready 2");
    assert_eq!(r.poll(), Poll::WriterRestarted { epoch: 2 });
    for n in 10..20 {
        match r.poll() {
            Poll::Event(ev) => {
                assert_eq!(ev.seq, n);
                assert_eq!(ev.ring_seq, n);
            }
            other => panic!("expected event {n}, got {other:?}"),
        }
    }
    // Closing stdin makes the second writer exit without dropping its Writer
    // (process::exit): that is a death too, not a clean stop.
    drop(w2.0.stdin.take());
    w2.0.wait().unwrap();
}

#[test]
fn clean_close_is_reported_as_stopped() {
    let tmp = TempShm::new("stop");
    let mut w = Writer::create("stop", &tmp.opts(64)).unwrap();
    let path = w.path().to_owned();
    w.publish(&event(0));
    let mut r = Reader::open(&path, &ReaderOptions::default()).unwrap();
    assert!(matches!(r.poll(), Poll::Event(_)));
    w.close();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline);
        match r.poll() {
            Poll::WriterGone(reason) => {
                assert_eq!(reason, GoneReason::Stopped);
                break;
            }
            Poll::Empty => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_second_writer_is_refused_while_the_first_lives() {
    let tmp = TempShm::new("busy");
    let _w = Writer::create("busy", &tmp.opts(64)).unwrap();
    match Writer::create("busy", &tmp.opts(64)) {
        Err(RingError::Busy { pid, path }) => {
            assert_eq!(pid, Some(std::process::id()));
            assert!(path.ends_with("busy.ring"));
        }
        Err(e) => panic!("expected Busy, got {e}"),
        Ok(_) => panic!("expected Busy, got a second writer"),
    }
}

#[test]
fn instruments_resolve_in_other_readers_and_keep_their_ids() {
    let tmp = TempShm::new("inst");
    let mut w = Writer::create("inst", &tmp.opts(64)).unwrap();
    let btc = Instrument::new(Exchange::Kraken, "BTC/USD", 1, 8).unwrap();
    let eth = Instrument::new(Exchange::Kraken, "ETH/USD", 2, 8).unwrap();
    assert_eq!(w.register_instrument(&btc).unwrap(), 0);
    assert_eq!(w.register_instrument(&eth).unwrap(), 1);
    assert_eq!(w.register_instrument(&btc).unwrap(), 0);
    let other_scale = Instrument::new(Exchange::Kraken, "BTC/USD", 2, 8).unwrap();
    let err = w.register_instrument(&other_scale).unwrap_err().to_string();
    assert!(
        err.contains("kraken:BTC/USD") && err.contains("price scale 1"),
        "{err}"
    );
    let mut r = Reader::open(w.path(), &ReaderOptions::default()).unwrap();
    assert_eq!(r.instruments(), &[btc.clone(), eth]);
    // A writer reopening the file keeps the table.
    let path = w.path().to_owned();
    drop(w);
    let mut w2 = create_after_drop("inst", &tmp.opts(64));
    assert_eq!(w2.register_instrument(&btc).unwrap(), 0);
    assert_eq!(
        Reader::open(&path, &ReaderOptions::default())
            .unwrap()
            .instruments()
            .len(),
        2
    );
}

/// Writes a valid ring file, then lets `mangle` damage a copy of it.
fn mangled_copy(tmp: &TempShm, name: &str, mangle: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut w = Writer::create(name, &tmp.opts(64)).unwrap();
    w.publish(&event(1));
    let mut bytes = std::fs::read(w.path()).unwrap();
    mangle(&mut bytes);
    let p = tmp.0.join(format!("{name}-mangled.ring"));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn open_err(p: &Path) -> String {
    match Reader::open(p, &ReaderOptions::default()) {
        Ok(_) => panic!("{} was accepted", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_foreign_and_wrong_version_files_are_refused_with_the_reason() {
    let tmp = TempShm::new("bad");
    let p = mangled_copy(&tmp, "tiny", |b| b.truncate(100));
    let e = open_err(&p);
    assert!(
        e.contains(&p.display().to_string()) && e.contains("too small: 100 bytes"),
        "{e}"
    );

    let p = mangled_copy(&tmp, "half", |b| {
        let n = b.len() / 2;
        b.truncate(n)
    });
    let e = open_err(&p);
    assert!(
        e.contains(&p.display().to_string()) && e.contains("size mismatch"),
        "{e}"
    );

    let p = mangled_copy(&tmp, "foreign", |b| b[..8].copy_from_slice(b"NOTARING"));
    let e = open_err(&p);
    assert!(e.contains("not a tickring ring: magic"), "{e}");

    let p = mangled_copy(&tmp, "version", |b| {
        b[8..12].copy_from_slice(&99u32.to_le_bytes())
    });
    let e = open_err(&p);
    assert!(e.contains("unknown layout version 99"), "{e}");

    let p = mangled_copy(&tmp, "capacity", |b| {
        b[16..24].copy_from_slice(&128u64.to_le_bytes())
    });
    let e = open_err(&p);
    assert!(
        e.contains("size mismatch") && e.contains("128 slots"),
        "{e}"
    );

    let p = mangled_copy(&tmp, "notpow2", |b| {
        b[16..24].copy_from_slice(&48u64.to_le_bytes())
    });
    let e = open_err(&p);
    assert!(e.contains("capacity 48 is not a power of two"), "{e}");

    let p = mangled_copy(&tmp, "slotsize", |b| {
        b[12..16].copy_from_slice(&128u32.to_le_bytes())
    });
    let e = open_err(&p);
    assert!(e.contains("slot size is 128 bytes"), "{e}");

    // The CLI says the same and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(["stat", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("slot size is 128 bytes") && stderr.contains(p.to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn a_writer_with_another_capacity_retires_the_old_file() {
    let tmp = TempShm::new("retire");
    let w = Writer::create("retire", &tmp.opts(64)).unwrap();
    let path = w.path().to_owned();
    let r = Reader::open(&path, &ReaderOptions::default()).unwrap();
    drop(w);
    let w2 = create_after_drop("retire", &tmp.opts(128));
    assert_eq!(w2.capacity(), 128);
    // The old mapping learns its file is finished; the path now holds the new ring.
    assert_eq!(r.writer_status().gone, Some(GoneReason::Retired));
    assert_eq!(
        Reader::open(&path, &ReaderOptions::default())
            .unwrap()
            .capacity(),
        128
    );
}

#[test]
fn tail_json_and_stat_json_show_the_ring() {
    let tmp = TempShm::new("cli");
    let mut w = Writer::create("cli", &tmp.opts(256)).unwrap();
    let id = w
        .register_instrument(&Instrument::new(Exchange::Binance, "BTCUSDT", 2, 8).unwrap())
        .unwrap();
    for n in 0..5u64 {
        let mut ev = event(n);
        ev.instrument = id;
        ev.price = 7_674_519 + n as i64;
        ev.qty = 65_000;
        w.publish(&ev);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(["tail", w.path().to_str().unwrap(), "--json", "--count", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["symbol"], "BTCUSDT");
    assert_eq!(lines[0]["price"], "76745.19");
    assert_eq!(lines[0]["qty"], "0.00065");
    assert_eq!(lines[0]["side"], "buy");
    assert_eq!(lines[1]["side"], "sell");
    assert_eq!(lines[4]["seq"], 4);

    let out = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args(["stat", w.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["capacity"], 256);
    assert_eq!(v["cursor"], 5);
    assert_eq!(v["page_size"], 4096);
    assert_eq!(v["writer"]["pid"], std::process::id());
    assert_eq!(v["writer"]["state"], "running");
    assert_eq!(v["writer"]["epoch"], 1);
    assert_eq!(v["instruments"][0]["symbol"], "BTCUSDT");
}

#[test]
fn tail_exits_quietly_on_a_broken_pipe() {
    let tmp = TempShm::new("pipe");
    let mut w = Writer::create("pipe", &tmp.opts(1 << 12)).unwrap();
    for n in 0..4000 {
        w.publish(&event(n));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickring"))
        .args([
            "tail",
            w.path().to_str().unwrap(),
            "--json",
            "--count",
            "4000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
