//! The server thread: a current-thread tokio runtime that accepts
//! connections, answers REST, upgrades to WebSocket and runs one task per
//! connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::capture::KeyId;
use super::faults;
use super::http::{self, Head, HeadError};
use super::protocol::{Session, SubChange};
use super::{ConnCounters, ConnInfo, Pace, SendRecord, Shared, StartError, TlsFiles};
use crate::event::Exchange;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Market messages written between flushes at `Pace::Max` without a send hook.
const MAX_BATCH: usize = 256;

pub(crate) fn tls_acceptor(t: &TlsFiles) -> Result<TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_err = |what: String| StartError::Tls {
        file: t.cert.clone(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| StartError::Tls {
        file: t.key.clone(),
        what: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            cert_err(format!(
                "certificate and key do not make a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Resolves once the server is told to stop (or its handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn run(
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tickring replay: cannot use the listening socket: {e}");
                return;
            }
        };
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tasks.spawn(handle(shared.clone(), tcp, peer, tls.clone(), stop.clone()));
                    }
                    // EMFILE and friends: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
        drop(listener);
        // Connections see the stop and send their Close frames.
        let _ = timeout(CLOSE_GRACE * 2, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    });
}

async fn handle(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        Some(acc) => match timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
            Ok(Ok(s)) => serve(shared, s, peer, stop).await,
            _ => {
                shared.counters.refused.fetch_add(1, Relaxed);
            }
        },
        None => serve(shared, tcp, peer, stop).await,
    }
}

/// Reads request heads until a WebSocket upgrade (then runs the connection)
/// or until the client is done with REST.
async fn serve<S>(shared: Arc<Shared>, mut s: S, peer: SocketAddr, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = loop {
            match http::parse_head(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    shared.counters.refused.fetch_add(1, Relaxed);
                    let why = match e {
                        HeadError::Malformed(m) => m,
                        HeadError::TooLarge => "request head too large".into(),
                    };
                    let body = format!(
                        r#"{{"code":-1,"msg":{}}}"#,
                        serde_json::to_string(&why).unwrap_or_default()
                    );
                    let _ = s
                        .write_all(&http::response(400, "Bad Request", &body, true))
                        .await;
                    return;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                biased;
                _ = stopped(&mut stop) => return,
                r = timeout(IDLE_HTTP_TIMEOUT, s.read(&mut chunk)) => match r {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                },
            };
            buf.extend_from_slice(&chunk[..n]);
        };
        if head.is_websocket_upgrade() {
            upgrade(shared, s, peer, head, buf, stop).await;
            return;
        }
        let close = head.wants_close();
        let reply = rest(&shared, &head, close);
        if s.write_all(&reply).await.is_err() || close {
            return;
        }
        shared
            .counters
            .rest_bytes
            .fetch_add(reply.len() as u64, Relaxed);
        buf.drain(..head.len);
    }
}

fn rest(shared: &Shared, head: &Head, close: bool) -> Vec<u8> {
    let (route, query) = head.path.split_once('?').unwrap_or((&head.path, ""));
    if head.method != "GET" {
        return http::response(
            405,
            "Method Not Allowed",
            r#"{"code":-1,"msg":"only GET"}"#,
            close,
        );
    }
    if shared.config.exchange == Exchange::Binance && route == "/api/v3/depth" {
        shared.counters.rest_requests.fetch_add(1, Relaxed);
        let lap = shared.counters.max_lap.load(Relaxed);
        let cap = &shared.capture;
        let (status, reason, body) = shared.rest.depth(query, |sym| {
            lap * cap.binance_span.get(sym).copied().unwrap_or(0)
        });
        return http::response(status, reason, &body, close);
    }
    if route == "/" || route == "/health" {
        return http::response(
            426,
            "Upgrade Required",
            r#"{"msg":"this is a WebSocket endpoint"}"#,
            close,
        );
    }
    http::response(404, "Not Found", r#"{"code":-1,"msg":"not found"}"#, close)
}

async fn upgrade<S>(
    shared: Arc<Shared>,
    mut s: S,
    peer: SocketAddr,
    head: Head,
    buf: Vec<u8>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = head.header("sec-websocket-key");
    let version_ok = head.header("sec-websocket-version") == Some("13");
    let Some(key) = key.filter(|_| version_ok && head.method == "GET") else {
        shared.counters.refused.fetch_add(1, Relaxed);
        let _ = s
            .write_all(&http::response(
                400,
                "Bad Request",
                r#"{"msg":"a WebSocket upgrade needs GET, Sec-WebSocket-Key and Sec-WebSocket-Version: 13"}"#,
                true,
            ))
            .await;
        return;
    };
    let accept = derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    // Registered before the 101 goes out, so a client that sees its
    // handshake complete also sees its connection in `connections()`.
    let id = shared.counters.connections.fetch_add(1, Relaxed) + 1;
    let info = Arc::new(ConnInfo {
        id,
        peer,
        path: head.path.clone(),
        counters: ConnCounters::default(),
    });
    shared
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(info.clone());
    if s.write_all(resp.as_bytes()).await.is_err() || s.flush().await.is_err() {
        info.counters.closed.store(true, Relaxed);
        return;
    }
    let leftover = buf[head.len..].to_vec();
    let mut cfg = WebSocketConfig::default();
    // Client requests are small; a big one is a client bug.
    cfg.max_message_size = Some(1 << 20);
    cfg.max_frame_size = Some(1 << 20);
    let ws = WebSocketStream::from_partially_read(s, leftover, Role::Server, Some(cfg)).await;
    let (write, read) = ws.split();
    let mut conn = Conn::new(&shared, info.clone());
    conn.run(write, read, &head.path, stop).await;
    info.counters.closed.store(true, Relaxed);
}

/// A contiguous run through the capture for some of the connection's streams.
struct Lane {
    /// Per key: 0 not served, 1 served, 2 served without snapshots.
    want: Vec<u8>,
    /// Next message index to look at.
    pos: usize,
    lap: u64,
    /// Recorded pace: the instant the lane's first message was due, and that
    /// message's exchange timestamp.
    origin: Option<(Instant, i64)>,
    /// Nothing left to serve (end without loop, or no wanted message at all).
    idle: bool,
    served: u64,
}

impl Lane {
    fn wants_any(&self) -> bool {
        self.want.iter().any(|&w| w != 0)
    }
}

enum Flow {
    Continue,
    /// Close cleanly with this code and stop.
    Close(CloseCode),
    /// Stop without another frame (socket gone).
    Gone,
    /// Go silent: keep the socket, send nothing.
    Silent,
}

struct Conn<'a> {
    sh: &'a Shared,
    info: Arc<ConnInfo>,
    session: Session,
    lanes: Vec<Lane>,
    /// Binance: the stream name the client asked for, per key.
    names: HashMap<KeyId, String>,
    /// Market messages counted so far (dropped ones included).
    n: u64,
    rate_next: Instant,
    rate_period: Duration,
    /// Recorded pace: ns a lap takes (capture span plus one mean gap).
    lap_ns: i64,
    next_heartbeat: Instant,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
}

type Writer<S> = SplitSink<WebSocketStream<S>, Message>;
type Reader<S> = SplitStream<WebSocketStream<S>>;

impl<'a> Conn<'a> {
    fn new(sh: &'a Shared, info: Arc<ConnInfo>) -> Conn<'a> {
        let now = Instant::now();
        let (t0, t1) = sh.capture.time_span();
        let n = sh.capture.msgs.len() as i64;
        let mean_gap = if n > 1 {
            (t1 - t0) / (n - 1)
        } else {
            1_000_000_000
        };
        let rate_period = match sh.config.pace {
            Pace::PerSecond(r) => Duration::from_nanos(1_000_000_000 / r.max(1) as u64),
            _ => Duration::ZERO,
        };
        Conn {
            sh,
            info,
            session: Session::new(sh.config.exchange),
            lanes: Vec::new(),
            names: HashMap::new(),
            n: 0,
            rate_next: now,
            rate_period,
            lap_ns: (t1 - t0 + mean_gap).max(1_000_000),
            next_heartbeat: now + sh.config.heartbeat_interval,
            next_ping: sh.config.ping_interval.map(|p| now + p),
            pong_deadline: None,
        }
    }

    fn counters(&self) -> &ConnCounters {
        &self.info.counters
    }

    async fn run<S>(
        &mut self,
        mut write: Writer<S>,
        mut read: Reader<S>,
        path: &str,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut flow = self.open(&mut write, path).await;
        while matches!(flow, Flow::Continue) {
            let wake = self.next_wake();
            flow = tokio::select! {
                biased;
                _ = stopped(&mut stop) => Flow::Close(CloseCode::Away),
                m = read.next() => self.on_client(&mut write, m).await,
                _ = sleep_until(wake) => tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => Flow::Close(CloseCode::Away),
                    f = self.on_timer(&mut write) => f,
                },
            };
        }
        match flow {
            Flow::Close(code) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(""),
                };
                let _ = timeout(CLOSE_GRACE, write.send(Message::Close(Some(frame)))).await;
                // Let the client answer the close before the socket drops.
                let _ = timeout(CLOSE_GRACE, async {
                    while let Some(Ok(_)) = read.next().await {}
                })
                .await;
            }
            Flow::Silent => {
                let _ = write.flush().await;
                stopped(&mut stop).await;
            }
            Flow::Gone | Flow::Continue => {}
        }
    }

    async fn open<S>(&mut self, write: &mut Writer<S>, path: &str) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        for m in self.session.on_open(self.info.id) {
            if !self.send_control(write, m).await {
                return Flow::Gone;
            }
        }
        let out = self.session.on_path(&self.sh.capture, path);
        self.apply(out.changes);
        if write.flush().await.is_err() {
            return Flow::Gone;
        }
        Flow::Continue
    }

    fn next_wake(&mut self) -> Instant {
        let now = Instant::now();
        let mut wake = self.next_heartbeat;
        if let Some(p) = self.next_ping {
            wake = wake.min(p);
        }
        if let Some(d) = self.pong_deadline {
            wake = wake.min(d);
        }
        if let Some((_, _, due)) = self.pick(now) {
            wake = wake.min(due);
        }
        wake
    }

    async fn send_control<S>(&mut self, write: &mut Writer<S>, text: String) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let len = text.len() as u64;
        if write.feed(Message::text(text)).await.is_err() {
            return false;
        }
        let c = self.counters();
        c.control_messages.fetch_add(1, Relaxed);
        c.bytes.fetch_add(len, Relaxed);
        true
    }

    async fn on_client<S>(
        &mut self,
        write: &mut Writer<S>,
        m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let text = match m {
            None | Some(Err(_)) => return Flow::Gone,
            Some(Ok(Message::Text(t))) => t.as_str().to_string(),
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(Message::Pong(_))) => {
                self.counters().pongs_received.fetch_add(1, Relaxed);
                self.pong_deadline = None;
                return Flow::Continue;
            }
            // tungstenite queued the pong; flush it now.
            Some(Ok(Message::Ping(_))) => {
                return if write.flush().await.is_ok() {
                    Flow::Continue
                } else {
                    Flow::Gone
                };
            }
            // tungstenite answers the close itself.
            Some(Ok(Message::Close(_))) => {
                let _ = write.flush().await;
                return Flow::Gone;
            }
            Some(Ok(Message::Frame(_))) => return Flow::Continue,
        };
        self.counters().client_messages.fetch_add(1, Relaxed);
        let out = self
            .session
            .on_text(&self.sh.capture, &text, crate::time::now_ns());
        self.counters()
            .client_errors
            .fetch_add(out.errors as u64, Relaxed);
        for r in out.replies {
            if !self.send_control(write, r).await {
                return Flow::Gone;
            }
        }
        if write.flush().await.is_err() {
            return Flow::Gone;
        }
        self.apply(out.changes);
        Flow::Continue
    }

    /// Applies subscription changes to the lanes (see the module docs of
    /// `replay` for the lane model).
    fn apply(&mut self, changes: Vec<SubChange>) {
        let nkeys = self.sh.capture.keys.len();
        let mut fresh: Vec<(KeyId, u8)> = Vec::new();
        for c in changes {
            match c {
                SubChange::Add {
                    key,
                    snapshot,
                    name,
                } => {
                    if let Some(name) = name {
                        self.names.insert(key, name);
                    }
                    if self.lanes.iter().any(|l| l.want[key as usize] != 0) {
                        continue;
                    }
                    fresh.push((key, if snapshot { 1 } else { 2 }));
                }
                SubChange::Remove { key } => {
                    for l in &mut self.lanes {
                        l.want[key as usize] = 0;
                    }
                    self.names.remove(&key);
                }
            }
        }
        self.lanes.retain(Lane::wants_any);
        if fresh.is_empty() {
            return;
        }
        // Join a lane that has not served anything yet, else start a new one.
        let idx = match self.lanes.iter().position(|l| l.served == 0 && l.lap == 0) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    want: vec![0; nkeys],
                    pos: 0,
                    lap: 0,
                    origin: None,
                    idle: false,
                    served: 0,
                });
                self.lanes.len() - 1
            }
        };
        let lane = &mut self.lanes[idx];
        lane.pos = 0;
        lane.origin = None;
        lane.idle = false;
        for (k, w) in fresh {
            lane.want[k as usize] = w;
        }
    }

    /// Moves lane `i` to its next wanted message; returns its index.
    fn advance(&mut self, i: usize) -> Option<usize> {
        let msgs = &self.sh.capture.msgs;
        let looping = self.sh.config.looping;
        let lane = &mut self.lanes[i];
        if lane.idle {
            return None;
        }
        let mut scanned = 0usize;
        loop {
            if lane.pos >= msgs.len() {
                if !looping || lane.served == 0 && lane.lap > 0 {
                    lane.idle = true;
                    return None;
                }
                lane.pos = 0;
                lane.lap += 1;
                self.info.counters.laps.fetch_add(1, Relaxed);
                self.sh.counters.max_lap.fetch_max(lane.lap, Relaxed);
            }
            if scanned > msgs.len() {
                lane.idle = true;
                return None;
            }
            let m = &msgs[lane.pos];
            match lane.want[m.key as usize] {
                1 => return Some(lane.pos),
                2 if !m.snapshot => return Some(lane.pos),
                _ => {}
            }
            lane.pos += 1;
            scanned += 1;
        }
    }

    /// The next market message to send: (lane, message index, due instant).
    fn pick(&mut self, now: Instant) -> Option<(usize, usize, Instant)> {
        let mut best: Option<(usize, usize, Instant, (u64, usize))> = None;
        for i in 0..self.lanes.len() {
            let Some(idx) = self.advance(i) else { continue };
            let lane = &mut self.lanes[i];
            let due = match self.sh.config.pace {
                Pace::Max => now,
                Pace::PerSecond(_) => self.rate_next,
                Pace::Recorded => {
                    let ts = self.sh.capture.msgs[idx].ts_ns;
                    let (origin, base) = *lane.origin.get_or_insert((now, ts));
                    let off = ts - base + lane.lap as i64 * self.lap_ns;
                    origin + Duration::from_nanos(off.max(0) as u64)
                }
            };
            let order = (lane.lap, idx);
            if best.as_ref().is_none_or(|b| (due, order) < (b.2, b.3)) {
                best = Some((i, idx, due, order));
            }
        }
        best.map(|(l, i, d, _)| (l, i, d))
    }

    async fn on_timer<S>(&mut self, write: &mut Writer<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let now = Instant::now();
        if let Some(d) = self.pong_deadline {
            if now >= d {
                return Flow::Close(CloseCode::Policy);
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.sh.config.heartbeat_interval;
            for h in self
                .session
                .heartbeats(&self.sh.capture, crate::time::now_ns())
            {
                if !self.send_control(write, h).await {
                    return Flow::Gone;
                }
            }
        }
        if let (Some(p), Some(every)) = (self.next_ping, self.sh.config.ping_interval) {
            if now >= p {
                self.next_ping = Some(now + every);
                let payload = (crate::time::now_ns() / 1_000_000).to_string();
                if write
                    .feed(Message::Ping(payload.into_bytes().into()))
                    .await
                    .is_err()
                {
                    return Flow::Gone;
                }
                self.counters().pings_sent.fetch_add(1, Relaxed);
                if self.pong_deadline.is_none() {
                    self.pong_deadline = Some(now + self.sh.config.pong_timeout);
                }
            }
        }
        let per_message_flush = self.sh.config.on_send.is_some();
        let mut sent = 0usize;
        while sent < MAX_BATCH {
            let Some((lane, idx, due)) = self.pick(now) else {
                break;
            };
            if due > now {
                break;
            }
            let flow = self.send_market(write, lane, idx, per_message_flush).await;
            sent += 1;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        if write.flush().await.is_err() {
            return Flow::Gone;
        }
        Flow::Continue
    }

    /// The text of message `idx` as this connection serves it on lap `lap`.
    fn market_text(&self, idx: usize, lap: u64) -> (Utf8Bytes, Option<u64>) {
        let cap = &self.sh.capture;
        let m = &cap.msgs[idx];
        let key = &cap.keys[m.key as usize];
        match cap.exchange {
            Exchange::Binance => {
                let offset = if key.channel == "depth" && lap > 0 {
                    lap * cap.binance_span.get(&key.symbol).copied().unwrap_or(0)
                } else {
                    0
                };
                let asked = self.names.get(&m.key);
                let base: Utf8Bytes = if !self.session.combined {
                    m.raw.clone()
                } else if m.stream.is_some()
                    && (asked.is_none() || asked.map(String::as_str) == m.stream.as_deref())
                {
                    m.text.clone()
                } else {
                    let name = asked
                        .cloned()
                        .unwrap_or_else(|| format!("{}@{}", key.symbol, key.channel));
                    Utf8Bytes::from(format!(
                        r#"{{"stream":{},"data":{}}}"#,
                        serde_json::to_string(&name).unwrap_or_default(),
                        m.raw.as_str()
                    ))
                };
                if offset == 0 {
                    return (base, None);
                }
                match faults::bump_u64_fields(&base, &["U", "u"], offset) {
                    Some(t) => (Utf8Bytes::from(t), None),
                    None => (base, None),
                }
            }
            Exchange::CoinbaseAdvanced => {
                let offset = lap * cap.advanced_span;
                let seq = m.seq.map(|s| s + offset);
                if offset == 0 {
                    return (m.text.clone(), seq);
                }
                match faults::bump_u64_fields(&m.text, &["sequence_num"], offset) {
                    Some(t) => (Utf8Bytes::from(t), seq),
                    None => (m.text.clone(), m.seq),
                }
            }
            _ => (m.text.clone(), None),
        }
    }

    fn corrupt(&self, idx: usize, text: &str) -> Option<String> {
        let cap = &self.sh.capture;
        let m = &cap.msgs[idx];
        match cap.exchange {
            Exchange::Kraken => faults::kraken_corrupt_qty(text),
            Exchange::Binance if cap.keys[m.key as usize].channel == "depth" => {
                faults::bump_u64_fields(text, &["U", "u"], 1)
            }
            Exchange::CoinbaseAdvanced => faults::bump_u64_fields(text, &["sequence_num"], 1),
            _ => None,
        }
        .or_else(|| faults::negate_first_decimal_string(text))
    }

    async fn send_market<S>(
        &mut self,
        write: &mut Writer<S>,
        lane_i: usize,
        idx: usize,
        flush: bool,
    ) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let lap = self.lanes[lane_i].lap;
        {
            let lane = &mut self.lanes[lane_i];
            lane.pos = idx + 1;
            lane.served += 1;
        }
        if self.rate_period > Duration::ZERO {
            let now = Instant::now();
            self.rate_next += self.rate_period;
            // Do not burst to catch up after a stall of more than a second.
            if self.rate_next + Duration::from_secs(1) < now {
                self.rate_next = now;
            }
        }
        self.n += 1;
        let n = self.n;
        let f = &self.sh.config.faults;
        let (text, seq_sent) = self.market_text(idx, lap);
        let c = &self.info.counters;
        let msg = if f.drop_nth == Some(n) {
            c.dropped.fetch_add(1, Relaxed);
            None
        } else if f.corrupt_nth == Some(n) {
            c.faults_injected.fetch_add(1, Relaxed);
            Some(Message::text(
                self.corrupt(idx, &text)
                    .unwrap_or_else(|| faults::broken_json(&text)),
            ))
        } else if f.oversize_nth == Some(n) {
            c.faults_injected.fetch_add(1, Relaxed);
            Some(Message::text(faults::oversize(f.oversize_bytes)))
        } else if f.invalid_utf8_nth == Some(n) {
            c.faults_injected.fetch_add(1, Relaxed);
            let frame = Frame::message(faults::invalid_utf8(&text), OpCode::Data(Data::Text), true);
            Some(Message::Frame(frame))
        } else if f.broken_json_nth == Some(n) {
            c.faults_injected.fetch_add(1, Relaxed);
            Some(Message::text(faults::broken_json(&text)))
        } else {
            Some(Message::Text(text))
        };
        if let Some(msg) = msg {
            let len = match &msg {
                Message::Text(t) => t.len(),
                Message::Frame(fr) => fr.payload().len(),
                _ => 0,
            };
            if write.feed(msg).await.is_err() {
                return Flow::Gone;
            }
            if flush && write.flush().await.is_err() {
                return Flow::Gone;
            }
            let c = &self.info.counters;
            c.market_messages.fetch_add(1, Relaxed);
            c.market_bytes.fetch_add(len as u64, Relaxed);
            c.bytes.fetch_add(len as u64, Relaxed);
            if let Some(hook) = &self.sh.config.on_send {
                hook(&SendRecord {
                    conn_id: self.info.id,
                    n,
                    capture_index: idx,
                    lap,
                    bytes: len,
                    send_ns: crate::time::now_ns(),
                });
            }
        }
        let m = &self.sh.capture.msgs[idx];
        self.session.on_served(&self.sh.capture, m, seq_sent);
        if f.close_after == Some(n) {
            return Flow::Close(CloseCode::Normal);
        }
        if f.silent_after == Some(n) {
            return Flow::Silent;
        }
        Flow::Continue
    }
}
