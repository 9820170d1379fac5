//! Shared helpers for the net_* integration tests: loopback servers on std
//! threads (tungstenite, plain or rustls TLS; or raw), a test PKI made with
//! rcgen at run time (nothing committed), and a recording Handler.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tickring::net::{
    CloseReason, ConnId, ConnectOptions, Ctx, EventLoop, Handler, HttpResponse, Message, NetConfig,
    NetError, ReqId, RootSource, RunExit, TimerId,
};

/// Every test gives up after this (the loop's safety timer and the
/// servers' socket timeouts).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);
pub const SAFETY_TOKEN: u64 = u64::MAX;

pub trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}
pub type Stream = Box<dyn Rw>;
pub type Ws = tungstenite::WebSocket<Stream>;

/// A CA and a server certificate for `names`, made at test time.
pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    dir: PathBuf,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("tickring test CA {n}"));
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let srv_key = KeyPair::generate().unwrap();
        let srv_params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let srv_cert = srv_params.signed_by(&srv_key, &ca).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![srv_cert.der().clone(), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(srv_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let dir =
            std::env::temp_dir().join(format!("tickring-net-test-{}-{n}", std::process::id()));
        Pki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
            dir,
        }
    }

    /// Writes the CA to a temporary PEM file (removed on drop).
    pub fn ca_file(&self) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        let p = self.dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    pub fn config(&self, base: NetConfig) -> NetConfig {
        NetConfig {
            roots: RootSource::CaFile(self.ca_file()),
            ..base
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts one connection on 127.0.0.1 within TEST_TIMEOUT, optionally
/// wraps it in TLS, and runs `f` on it in a thread.
pub fn spawn_raw<F>(
    tls: Option<Arc<rustls::ServerConfig>>,
    f: F,
) -> (u16, JoinHandle<Result<(), String>>)
where
    F: FnOnce(Stream) -> Result<(), String> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let deadline = Instant::now() + TEST_TIMEOUT;
        let tcp: TcpStream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no client connected".into());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        tcp.set_nonblocking(false).unwrap();
        tcp.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TEST_TIMEOUT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let s: Stream = match tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let conn = rustls::ServerConnection::new(cfg).map_err(|e| e.to_string())?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        f(s)
    });
    (port, h)
}

/// A tungstenite server: accepts the upgrade, then runs `f`.
pub fn spawn_ws<F>(
    tls: Option<Arc<rustls::ServerConfig>>,
    f: F,
) -> (u16, JoinHandle<Result<(), String>>)
where
    F: FnOnce(&mut Ws) -> Result<(), String> + Send + 'static,
{
    spawn_raw(tls, move |s| {
        let mut ws = tungstenite::accept(s).map_err(|e| format!("server handshake: {e}"))?;
        f(&mut ws)
    })
}

/// Reads an HTTP request head from `s` (up to the empty line).
pub fn read_request(s: &mut Stream) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("eof before request end".into());
        }
        buf.push(b[0]);
    }
    String::from_utf8(buf).map_err(|e| e.to_string())
}

/// Everything the handler saw, in order.
#[derive(Debug)]
pub enum Ev {
    Open(ConnId),
    Msg {
        conn: ConnId,
        text: bool,
        data: Vec<u8>,
        ts: i64,
    },
    Pong(Vec<u8>),
    Close(ConnId, CloseReason),
    Timer(u64),
    Http(ReqId, Result<(u16, Vec<u8>), NetError>),
    SafetyTimeout,
}

/// A Handler that records events and lets the test react to each.
/// It stops the loop on close / HTTP response when `stop_on_end`.
pub struct Rec<F> {
    pub evs: Vec<Ev>,
    pub react: F,
    pub stop_on_end: bool,
}

impl<F: FnMut(&mut Ctx<'_>, &Ev)> Rec<F> {
    fn push(&mut self, ctx: &mut Ctx<'_>, ev: Ev) {
        (self.react)(ctx, &ev);
        self.evs.push(ev);
    }
}

impl<F: FnMut(&mut Ctx<'_>, &Ev)> Handler for Rec<F> {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.push(ctx, Ev::Open(conn));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let ev = Ev::Msg {
            conn,
            text: msg.text,
            data: msg.payload.to_vec(),
            ts: msg.recv_ts,
        };
        self.push(ctx, ev);
    }
    fn on_pong(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, payload: &[u8], _ts: i64) {
        self.push(ctx, Ev::Pong(payload.to_vec()));
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, reason: CloseReason) {
        self.push(ctx, Ev::Close(conn, reason));
        if self.stop_on_end {
            ctx.stop();
        }
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _t: TimerId, token: u64) {
        if token == SAFETY_TOKEN {
            self.evs.push(Ev::SafetyTimeout);
            ctx.stop();
        } else {
            self.push(ctx, Ev::Timer(token));
        }
    }
    fn on_http_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: ReqId,
        r: Result<HttpResponse<'_>, NetError>,
    ) {
        let r = r.map(|r| (r.status, r.body.to_vec()));
        self.push(ctx, Ev::Http(req, r));
        if self.stop_on_end {
            ctx.stop();
        }
    }
}

/// Connects to `url` on a fresh loop and records until the connection ends
/// (or the safety timeout).
pub fn run_ws<F: FnMut(&mut Ctx<'_>, &Ev)>(cfg: NetConfig, url: &str, react: F) -> Vec<Ev> {
    let mut ev = EventLoop::new(cfg).expect("io_uring setup");
    let mut rec = Rec {
        evs: Vec::new(),
        react,
        stop_on_end: true,
    };
    {
        let mut ctx = ev.ctx();
        ctx.connect_ws(url, ConnectOptions::default()).unwrap();
        ctx.set_timer(TEST_TIMEOUT, SAFETY_TOKEN);
    }
    let exit = ev.run(&mut rec).expect("run");
    assert_eq!(exit, RunExit::Stopped);
    rec.evs
}

/// Same for one HTTP GET.
pub fn run_get(cfg: NetConfig, url: &str) -> Result<(u16, Vec<u8>), NetError> {
    let mut ev = EventLoop::new(cfg).expect("io_uring setup");
    let mut rec = Rec {
        evs: Vec::new(),
        react: |_: &mut Ctx<'_>, _: &Ev| {},
        stop_on_end: true,
    };
    {
        let mut ctx = ev.ctx();
        ctx.http_get(url, ConnectOptions::default()).unwrap();
        ctx.set_timer(TEST_TIMEOUT, SAFETY_TOKEN);
    }
    ev.run(&mut rec).expect("run");
    match rec.evs.pop() {
        Some(Ev::Http(_, r)) => r,
        other => panic!("expected an HTTP response, got {other:?}"),
    }
}

/// The configurations every transport test runs on: the best path the
/// kernel offers, and the forced plain fallback.
pub fn configs() -> Vec<(&'static str, NetConfig)> {
    vec![
        ("default", NetConfig::default()),
        ("plain", NetConfig::default().plain()),
    ]
}

/// The data messages in `evs`.
pub fn messages(evs: &[Ev]) -> Vec<(bool, Vec<u8>)> {
    evs.iter()
        .filter_map(|e| match e {
            Ev::Msg { text, data, .. } => Some((*text, data.clone())),
            _ => None,
        })
        .collect()
}

/// The close reason in `evs` (panics if none).
pub fn close_reason(evs: &[Ev]) -> &CloseReason {
    evs.iter()
        .find_map(|e| match e {
            Ev::Close(_, r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no close event in {evs:?}"))
}

pub fn join(h: JoinHandle<Result<(), String>>) {
    h.join()
        .expect("server thread panicked")
        .expect("server scenario failed");
}
