//! Shared by the gateway tests: a collector stand-in that runs captures
//! through the real `Pipeline` and publishes events and book snapshots the
//! way the collector does, a gateway child process started with a socket
//! passed the way systemd passes it, and small HTTP and WebSocket clients.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tickring::book::{BuilderConfig, Pipeline, SyncState};
use tickring::event::{Event, Exchange};
use tickring::feed::{Action, FeedConfig, Sink};
use tickring::ring::books::{BookWriter, SnapshotMeta};
use tickring::ring::{Backing, Writer, WriterOptions};

pub fn fixtures() -> PathBuf {
    match std::env::var_os("TICKRING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// A directory under /dev/shm for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = PathBuf::from(format!(
            "/dev/shm/tickring-gwtest-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one capture line produced.
#[derive(Default)]
struct Collect {
    events: Vec<Event>,
    actions: Vec<Action>,
}

impl Sink for Collect {
    fn event(&mut self, ev: &Event) {
        self.events.push(*ev);
    }
    fn action(&mut self, a: Action) {
        self.actions.push(a);
    }
}

/// A collector stand-in: capture lines -> Pipeline -> ring + book region.
pub struct Collector {
    pub writer: Writer,
    pub books: BookWriter,
    pub pipe: Pipeline,
    registered: usize,
    /// Binance REST answers by symbol, served once when the pipeline asks.
    pub rest: HashMap<String, Vec<u8>>,
    /// Every event published, with its ring sequence.
    pub published: Vec<Event>,
    exchange: Exchange,
}

impl Collector {
    pub fn new(dir: &Path, name: &str, exchange: Exchange, capacity: u64, depth: u32) -> Collector {
        let writer = Writer::create(
            name,
            &WriterOptions {
                backing: Backing::Shm {
                    dir: dir.to_owned(),
                },
                capacity,
                lock_memory: false,
            },
        )
        .unwrap();
        let books = BookWriter::create(writer.path(), 1024, depth).unwrap();
        // The same set-up as `tickring book`: discovered instruments at the
        // default scales.
        let pipe = Pipeline::new(
            exchange,
            FeedConfig::discovering(),
            BuilderConfig::default(),
        );
        Collector {
            writer,
            books,
            pipe,
            registered: 0,
            rest: HashMap::new(),
            published: Vec::new(),
            exchange,
        }
    }

    pub fn ring_path(&self) -> PathBuf {
        self.writer.path().to_owned()
    }

    /// Registers instruments the pipeline discovered (same ids in the ring).
    fn register_new(&mut self) {
        let insts = self.pipe.feed.instruments().to_vec();
        for (i, inst) in insts.iter().enumerate().skip(self.registered) {
            // Pre-registered instruments come back with the same id.
            let id = self.writer.register_instrument(inst).unwrap();
            assert_eq!(id as usize, i, "ring and pipeline ids must agree");
        }
        self.registered = insts.len();
    }

    /// Publishes events and then the snapshot of every book they touched,
    /// stamped with the ring's next sequence (as the collector does).
    fn publish(&mut self, events: Vec<Event>) {
        self.register_new();
        let mut touched = BTreeSet::new();
        for mut ev in events {
            ev.publish_ts = tickring::time::now_ns();
            let seq = self.writer.publish(&ev);
            ev.ring_seq = seq;
            self.published.push(ev);
            if ev.instrument != tickring::event::NO_INSTRUMENT {
                touched.insert(ev.instrument);
            }
        }
        let depth = self.books.depth() as usize;
        for id in touched {
            let Some(st) = self.pipe.books.get(id) else {
                continue;
            };
            let meta = SnapshotMeta {
                ring_seq: self.writer.next_seq(),
                exch_seq: st.last_id.unwrap_or(0),
                ts: tickring::time::now_ns(),
                valid: st.state == SyncState::Valid,
            };
            self.books.publish(
                id,
                meta,
                st.book.bids.iter().take(depth),
                st.book.asks.iter().take(depth),
            );
        }
    }

    /// One capture line through the pipeline, published.
    pub fn frame(&mut self, line: &[u8]) {
        let mut sink = Collect::default();
        let _ = self
            .pipe
            .on_frame(line, tickring::time::now_ns(), &mut sink);
        self.publish(std::mem::take(&mut sink.events));
        // Serve the REST snapshots the line asked for (Binance).
        while let Some(a) = sink.actions.pop() {
            if let Action::FetchSnapshot { instrument, .. } = a {
                let sym = self.pipe.feed.instruments()[instrument as usize]
                    .symbol
                    .clone();
                if let Some(body) = self.rest.remove(&sym) {
                    let mut s2 = Collect::default();
                    let _ = self.pipe.on_rest_snapshot(instrument, &body, 0, &mut s2);
                    self.publish(s2.events);
                    sink.actions.extend(s2.actions);
                }
            }
        }
    }

    pub fn lines(file: &Path) -> Vec<Vec<u8>> {
        let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        BufReader::new(f)
            .split(b'\n')
            .map(|l| {
                let mut l = l.unwrap();
                while matches!(l.last(), Some(b'\r')) {
                    l.pop();
                }
                l
            })
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Registers, in discovery order, every instrument the capture holds,
    /// as the collector registers its configured symbols before it
    /// connects (a dry run of the same pipeline finds them).
    /// Returns how many there are.
    pub fn preregister(&mut self, lines: &[Vec<u8>]) -> usize {
        let mut dry = Pipeline::new(
            self.exchange,
            FeedConfig::discovering(),
            BuilderConfig::default(),
        );
        let mut sink = Collect::default();
        for l in lines {
            let _ = dry.on_frame(l, 0, &mut sink);
        }
        for inst in dry.feed.instruments() {
            self.writer.register_instrument(inst).unwrap();
        }
        dry.feed.instruments().len()
    }

    /// The feed's "connected" status event (connection-wide).
    pub fn connected(&mut self) {
        let mut ev = Event::status(
            self.exchange,
            tickring::event::NO_INSTRUMENT,
            tickring::event::StatusCode::Connected,
        );
        ev.publish_ts = tickring::time::now_ns();
        self.writer.publish(&ev);
    }

    /// A status event marking the end of a test's data.
    pub fn marker(&mut self) -> u64 {
        let mut ev = Event::status(
            Exchange::Coinbase,
            tickring::event::NO_INSTRUMENT,
            tickring::event::StatusCode::Subscribed,
        );
        ev.seq = 424242;
        ev.publish_ts = tickring::time::now_ns();
        self.writer.publish(&ev)
    }
}

/// A gateway child process serving a socket passed the way systemd does.
pub struct Gateway {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub listener: TcpListener,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tickring")
}

/// Spawns `tickring gateway --config cfg` with `listener` as fd 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` set to the child's own pid, as systemd
/// does after fork: a pre_exec hook moves the socket to fd 3, writes the
/// pid into an environment block prepared before the fork, and execs the
/// gateway with it (std would otherwise install its own copy of the
/// environment after the hook). stderr goes to `log`.
pub fn spawn_activated(listener: &TcpListener, cfg: &Path, log: &Path) -> Child {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let fd = listener.as_raw_fd();
    let err = std::fs::File::create(log).unwrap();
    let prog = CString::new(bin()).unwrap();
    let args: Vec<CString> = ["tickring", "gateway", "--config", cfg.to_str().unwrap()]
        .iter()
        .map(|a| CString::new(*a).unwrap())
        .collect();
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| k != "LISTEN_PID" && k != "LISTEN_FDS" && k != "LISTEN_FDNAMES")
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            e.push(0);
            e
        })
        .collect();
    env.push(b"LISTEN_FDS=1\0".to_vec());
    // Room for any pid; the hook writes the digits and the NUL.
    env.push(b"LISTEN_PID=0000000000\0".to_vec());
    let pid_entry = env.last_mut().unwrap().as_mut_ptr() as usize;
    let envp: Vec<usize> = env
        .iter()
        .map(|e| e.as_ptr() as usize)
        .chain(std::iter::once(0))
        .collect();
    let argv: Vec<usize> = args
        .iter()
        .map(|a| a.as_ptr() as usize)
        .chain(std::iter::once(0))
        .collect();
    let (prog_p, argv_p, envp_p) = (
        prog.as_ptr() as usize,
        argv.as_ptr() as usize,
        envp.as_ptr() as usize,
    );
    let mut cmd = Command::new(bin());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
    // SAFETY: between fork and exec the hook only calls async-signal-safe
    // functions (dup2, fcntl, getpid, execve) and writes digits into a
    // buffer allocated before the fork (the child's copy of it); every
    // pointer it uses stays alive in the parent until spawn() returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let e = pid_entry as *mut u8;
            let key = b"LISTEN_PID=".len();
            let mut digits = [0u8; 10];
            let (mut n, mut v) = (0, libc::getpid() as u32);
            loop {
                digits[n] = b'0' + (v % 10) as u8;
                n += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for k in 0..n {
                *e.add(key + k) = digits[n - 1 - k];
            }
            *e.add(key + n) = 0;
            libc::execve(
                prog_p as *const libc::c_char,
                argv_p as *const *const libc::c_char,
                envp_p as *const *const libc::c_char,
            );
            Err(std::io::Error::last_os_error())
        });
    }
    let child = cmd.spawn().unwrap();
    drop((prog, args, env, envp, argv));
    child
}

impl Gateway {
    /// Writes `[gateway]` + `body` as the config and starts the gateway on
    /// a fresh loopback socket. The config's `listen` points at an address
    /// that cannot be bound, so a gateway that ignored the passed socket
    /// would fail instead of passing by accident.
    pub fn start(dir: &Path, body: &str) -> Gateway {
        let cfg = dir.join("gateway.toml");
        std::fs::write(
            &cfg,
            format!("[gateway]\nlisten = \"192.0.2.1:9\"\n{body}\n"),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = dir.join("gateway.log");
        let child = spawn_activated(&listener, &cfg, &log);
        let g = Gateway {
            child: Some(child),
            addr,
            listener,
            config: cfg,
            log,
        };
        g.wait_healthy();
        g
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_healthy(&self) {
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http_get(self.addr, "/health", &[]) {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "gateway not healthy: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `path` until `pred` holds on its JSON body (bounded).
    pub fn wait_json(&self, path: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let t0 = Instant::now();
        loop {
            if let Ok(r) = http_get(self.addr, path, &[]) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) {
                    if pred(&v) {
                        return;
                    }
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; log: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `/v1/instruments` lists `n` instruments.
    pub fn wait_instruments(&self, n: usize) {
        self.wait_json("/v1/instruments", "instruments", |v| {
            v["instruments"].as_array().map(|a| a.len()) == Some(n)
        });
    }

    pub fn metric(&self, line_prefix: &str) -> f64 {
        let r = http_get(self.addr, "/metrics", &[]).unwrap();
        r.body
            .lines()
            .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {line_prefix} in {}", r.body))
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                panic!("gateway did not stop on SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` with `Connection: close` and extra headers.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |w: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, w.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("header not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("chunk"))?;
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            rest = &rest[nl + 2..];
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n + 2..];
        }
        body = out;
    }
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Opens `/v1/stream` with optional extra headers.
pub fn ws_connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/v1/stream").into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let s = TcpStream::connect(addr).map_err(tungstenite::Error::Io)?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client(req, s).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            tungstenite::Error::Io(std::io::Error::other("handshake interrupted"))
        }
    })?;
    Ok(ws)
}

pub fn send_json(ws: &mut Ws, v: &serde_json::Value) {
    ws.send(tungstenite::Message::text(v.to_string())).unwrap();
}

/// The next text message as JSON (panics on close or timeout).
pub fn recv_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// Next control message (`type` field), skipping events.
pub fn recv_control(ws: &mut Ws) -> serde_json::Value {
    loop {
        let v = recv_json(ws);
        if v.get("type").is_some() {
            return v;
        }
    }
}

/// A ring with synthetic instruments for tests that need events, not books.
pub struct SynthFeed {
    pub writer: Writer,
    pub books: BookWriter,
}

impl SynthFeed {
    /// Ring `name` in `dir` with instruments `coinbase:BTC-USD` (id 0) and
    /// `kraken:ETH/USD` (id 1), and an (empty) book region.
    pub fn new(dir: &Path, name: &str, capacity: u64) -> SynthFeed {
        let mut writer = Writer::create(
            name,
            &WriterOptions {
                backing: Backing::Shm {
                    dir: dir.to_owned(),
                },
                capacity,
                lock_memory: false,
            },
        )
        .unwrap();
        for (ex, sym) in [
            (Exchange::Coinbase, "BTC-USD"),
            (Exchange::Kraken, "ETH/USD"),
        ] {
            let i = tickring::instrument::Instrument::new(ex, sym, 2, 8).unwrap();
            writer.register_instrument(&i).unwrap();
        }
        let books = BookWriter::create(writer.path(), 16, 10).unwrap();
        SynthFeed { writer, books }
    }

    /// Publishes a trade on instrument `id`; returns its ring sequence.
    pub fn trade(&mut self, id: u16, n: u64) -> u64 {
        let ev = Event {
            kind: tickring::event::EventKind::Trade as u8,
            exchange: if id == 0 {
                Exchange::Coinbase as u8
            } else {
                Exchange::Kraken as u8
            },
            side: tickring::event::Side::Bid as u8,
            flags: tickring::event::flags::LAST_IN_MESSAGE,
            instrument: id,
            price: 6_000_000 + (n % 1000) as i64,
            qty: 1_000_000 + n as i64,
            seq: n,
            publish_ts: tickring::time::now_ns(),
            ..Event::default()
        };
        self.writer.publish(&ev)
    }
}

/// Milliseconds since the Unix epoch (unique-enough names).
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}
