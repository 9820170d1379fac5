//! One connection's state machine, free of io_uring: the event loop feeds it
//! completions (connected, bytes, EOF, timer) and carries out what it asks
//! for (bytes in `tx_queue`, a state of `TearingDown`).
//!
//! ```text
//! Connecting ─connect ok─▶ Handshaking ─101 / response head─▶ Open ─close frame─▶ Closing ─EOF/timeout─▶ TearingDown ─ops=0─▶ freed
//!      └──────────────── any error, EOF, timeout ──────────────────────────────────────────────▶ TearingDown
//! ```
//! `Handshaking` covers the TLS handshake and the HTTP exchange (WebSocket
//! upgrade or GET response head); the request is written into rustls before
//! its handshake completes and goes out right after it.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::http::{self, BodyDecoder, ResponseHead, Url};
use super::ws::{self, OpCode, Role, WsEvent, WsReader};
use super::{
    CloseReason, ConnId, Ctx, Handler, HttpResponse, Initiator, Message, NetConfig, NetError, Stage,
};

/// Largest response head accepted (upgrade or GET).
const MAX_HEAD: usize = 16 * 1024;
/// A connection whose unsent bytes exceed this is failed (the peer stopped reading).
pub(crate) const MAX_TX_QUEUE: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Connecting,
    Handshaking,
    Open,
    Closing,
    TearingDown,
}

pub(crate) struct WsProto {
    /// Expected `Sec-WebSocket-Accept`.
    accept: String,
    reader: WsReader,
    /// Payload of the latest unanswered ping (RFC 6455 5.5.3 allows
    /// answering only the most recent).
    pong_due: Option<Vec<u8>>,
    /// A close frame to send: (code, reason); `None` code = empty close.
    close_due: Option<(Option<u16>, String)>,
    /// We sent our close frame.
    close_sent: bool,
    /// The peer's close frame arrived.
    peer_close_seen: bool,
}

pub(crate) struct HttpProto {
    resp: Option<(ResponseHead, BodyDecoder)>,
    max_body: usize,
}

pub(crate) enum Proto {
    Ws(WsProto),
    Http(HttpProto),
}

/// The protocol side: everything but the transport.
pub(crate) struct App {
    pub(crate) id: u64,
    pub(crate) host: String,
    pub(crate) state: State,
    pub(crate) proto: Proto,
    /// Bytes of the response head received so far (handshaking only).
    head: Vec<u8>,
    /// How the connection ends; the first reason set wins.
    pub(crate) reason: Option<CloseReason>,
    /// The HTTP response was handed to the handler already.
    pub(crate) reported: bool,
    /// TLS still handshaking (for error stages).
    tls_handshaking: bool,
}

impl App {
    fn stage(&self) -> Stage {
        match (self.state, &self.proto) {
            (State::Connecting, _) => Stage::Connect,
            (State::Handshaking, _) if self.tls_handshaking => Stage::TlsHandshake,
            (State::Handshaking, Proto::Ws(_)) => Stage::WsHandshake,
            (_, Proto::Http(_)) => Stage::HttpResponse,
            (State::Open, _) => Stage::Open,
            _ => Stage::Closing,
        }
    }

    /// Fails the connection at once (no close handshake).
    pub(crate) fn fail(&mut self, e: NetError) {
        if self.state != State::TearingDown {
            if self.reason.is_none() {
                self.reason = Some(CloseReason::Error(e));
            }
            self.state = State::TearingDown;
        }
    }

    /// Locally requested close (`Ctx::close`).
    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        match (self.state, &mut self.proto) {
            (State::Open, Proto::Ws(w)) => {
                w.close_due = Some((Some(code), reason.to_string()));
                self.reason.get_or_insert(CloseReason::Clean {
                    initiator: Initiator::Local,
                    code: None,
                    reason: String::new(),
                });
                self.state = State::Closing;
            }
            (State::Closing | State::TearingDown, _) => {}
            _ => {
                self.reason.get_or_insert(CloseReason::Aborted);
                self.state = State::TearingDown;
            }
        }
    }

    /// The peer closed TCP (recv returned 0) or TLS (close_notify).
    pub(crate) fn on_eof<H: Handler>(&mut self, ts: i64, h: &mut H, ctx: &mut Ctx<'_>) {
        match self.state {
            State::TearingDown => {}
            State::Closing => self.state = State::TearingDown,
            _ => {
                if let (State::Open, Proto::Http(p)) = (self.state, &mut self.proto) {
                    if let Some((head, body)) = &mut p.resp {
                        match body.eof() {
                            Ok(()) => {
                                self.reported = true;
                                h.on_http_response(
                                    ctx,
                                    super::ReqId(self.id),
                                    Ok(HttpResponse {
                                        status: head.status,
                                        headers: &head.headers,
                                        body: body.body(),
                                        recv_ts: ts,
                                    }),
                                );
                                self.reason.get_or_insert(CloseReason::Aborted);
                                self.state = State::TearingDown;
                            }
                            Err(error) => {
                                let host = self.host.clone();
                                self.fail(NetError::Http { host, error });
                            }
                        }
                        return;
                    }
                }
                let (host, stage) = (self.host.clone(), self.stage());
                self.fail(NetError::Eof { host, stage });
            }
        }
    }

    /// Plaintext bytes from the peer (after TLS, if any).
    pub(crate) fn on_plain<H: Handler>(
        &mut self,
        mut data: &[u8],
        ts: i64,
        h: &mut H,
        ctx: &mut Ctx<'_>,
    ) {
        if self.state == State::Handshaking {
            let old = self.head.len();
            self.head
                .extend_from_slice(&data[..data.len().min(MAX_HEAD + 1)]);
            let parsed = http::parse_response_head(&self.head, MAX_HEAD);
            let head = match parsed {
                Ok(None) => return,
                Ok(Some(head)) => head,
                Err(error) => {
                    let host = self.host.clone();
                    return self.fail(match self.proto {
                        Proto::Ws(_) => NetError::Handshake {
                            host,
                            error: http::HandshakeError::Http(error),
                        },
                        Proto::Http(_) => NetError::Http { host, error },
                    });
                }
            };
            // The bytes after the head in this chunk belong to the body or
            // to the first frames.
            data = &data[head.head_len - old..];
            self.head = Vec::new();
            match &mut self.proto {
                Proto::Ws(w) => {
                    if let Err(error) = http::validate_upgrade(&head, &w.accept) {
                        let host = self.host.clone();
                        return self.fail(NetError::Handshake { host, error });
                    }
                    self.state = State::Open;
                    h.on_open(ctx, ConnId(self.id));
                    if self.state != State::Open || ctx.take_halt(self.id) {
                        return;
                    }
                }
                Proto::Http(p) => match BodyDecoder::for_response(&head, p.max_body) {
                    Ok(d) => {
                        p.resp = Some((head, d));
                        self.state = State::Open;
                    }
                    Err(error) => {
                        let host = self.host.clone();
                        return self.fail(NetError::Http { host, error });
                    }
                },
            }
        }
        if data.is_empty() {
            if let Proto::Http(_) = self.proto {
                // A body of length 0 is complete with the head.
                self.http_body(data, ts, h, ctx);
            }
            return;
        }
        match self.state {
            State::Open | State::Closing => {}
            _ => return,
        }
        match &mut self.proto {
            Proto::Ws(_) => self.ws_data(data, ts, h, ctx),
            Proto::Http(_) => self.http_body(data, ts, h, ctx),
        }
    }

    fn http_body<H: Handler>(&mut self, data: &[u8], ts: i64, h: &mut H, ctx: &mut Ctx<'_>) {
        let Proto::Http(p) = &mut self.proto else {
            return;
        };
        let Some((head, body)) = &mut p.resp else {
            return;
        };
        if self.reported {
            return;
        }
        if let Err(error) = body.feed(data) {
            let host = self.host.clone();
            return self.fail(NetError::Http { host, error });
        }
        if body.is_done() {
            self.reported = true;
            h.on_http_response(
                ctx,
                super::ReqId(self.id),
                Ok(HttpResponse {
                    status: head.status,
                    headers: &head.headers,
                    body: body.body(),
                    recv_ts: ts,
                }),
            );
            self.reason.get_or_insert(CloseReason::Aborted);
            self.state = State::TearingDown;
        }
    }

    fn ws_data<H: Handler>(&mut self, data: &[u8], ts: i64, h: &mut H, ctx: &mut Ctx<'_>) {
        let Proto::Ws(w) = &mut self.proto else {
            return;
        };
        if w.reader.is_closed() {
            return;
        }
        let id = self.id;
        let deliver = self.state == State::Open;
        let mut peer_close: Option<Option<(u16, String)>> = None;
        let pong_due = &mut w.pong_due;
        let res = w.reader.feed(data, |ev| match ev {
            WsEvent::Message { payload, text } => {
                if deliver {
                    h.on_message(
                        ctx,
                        ConnId(id),
                        Message {
                            payload,
                            text,
                            recv_ts: ts,
                        },
                    );
                    if ctx.take_halt(id) {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
            WsEvent::Ping(p) => {
                *pong_due = Some(p.to_vec());
                ControlFlow::Continue(())
            }
            WsEvent::Pong(p) => {
                h.on_pong(ctx, ConnId(id), p, ts);
                if ctx.take_halt(id) {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
            WsEvent::Close(c) => {
                peer_close = Some(c.map(|(c, r)| (c, r.to_string())));
                ControlFlow::Break(())
            }
        });
        if let Err(error) = res {
            // Fail with a close frame naming the problem (1002/1007/1009),
            // then wait for the peer's close or EOF.
            if !w.close_sent && w.close_due.is_none() {
                w.close_due = Some((Some(error.close_code()), error.to_string()));
            }
            let host = self.host.clone();
            if self.reason.is_none() || matches!(self.reason, Some(CloseReason::Clean { .. })) {
                self.reason = Some(CloseReason::Error(NetError::Ws { host, error }));
            }
            if self.state == State::Open {
                self.state = State::Closing;
            }
            return;
        }
        if let Some(c) = peer_close {
            w.peer_close_seen = true;
            let (code, reason) = match c {
                Some((code, r)) => (Some(code), r),
                None => (None, String::new()),
            };
            match self.state {
                State::Open => {
                    // Peer-initiated: echo its code (RFC 6455 5.5.1).
                    w.close_due = Some((code, String::new()));
                    self.reason = Some(CloseReason::Clean {
                        initiator: Initiator::Peer,
                        code,
                        reason,
                    });
                    self.state = State::Closing;
                }
                _ => {
                    // Our close was answered.
                    if let Some(CloseReason::Clean { initiator, .. }) = self.reason {
                        self.reason = Some(CloseReason::Clean {
                            initiator,
                            code,
                            reason,
                        });
                    }
                }
            }
        }
    }

    /// Both close frames have been exchanged (ours may still be queued).
    pub(crate) fn close_frames_exchanged(&self) -> bool {
        matches!(&self.proto, Proto::Ws(w) if w.close_sent && w.peer_close_seen)
    }

    /// A deadline timer fired.
    pub(crate) fn on_deadline(&mut self, cfg: &NetConfig) {
        let host = self.host.clone();
        match self.state {
            State::Connecting | State::Handshaking => {
                let stage = self.stage();
                let after = match self.proto {
                    Proto::Ws(_) => cfg.handshake_timeout,
                    Proto::Http(_) => cfg.http_timeout,
                };
                self.fail(NetError::Timeout { host, stage, after });
            }
            State::Open if matches!(self.proto, Proto::Http(_)) => {
                self.fail(NetError::Timeout {
                    host,
                    stage: Stage::HttpResponse,
                    after: cfg.http_timeout,
                });
            }
            State::Closing => {
                let answered = matches!(&self.proto, Proto::Ws(w) if w.peer_close_seen);
                if !answered && matches!(self.reason, Some(CloseReason::Clean { .. })) {
                    self.reason = Some(CloseReason::Error(NetError::Timeout {
                        host,
                        stage: Stage::Closing,
                        after: cfg.close_timeout,
                    }));
                }
                self.state = State::TearingDown;
            }
            _ => {}
        }
    }
}

/// A connection: protocol state plus transport (TLS, buffers, socket).
pub(crate) struct Conn {
    pub(crate) app: App,
    pub(crate) url: Url,
    pub(crate) gen: u32,
    pub(crate) tls: Option<Box<rustls::ClientConnection>>,
    pub(crate) tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Resolved addresses, tried in order.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) next_addr: usize,
    pub(crate) fd: i32,
    /// The address being connected to; referenced by the Connect SQE.
    pub(crate) sockaddr: Box<libc::sockaddr_storage>,
    pub(crate) sockaddr_len: libc::socklen_t,
    /// Receive buffer for the plain path (empty with the buffer ring).
    /// Referenced by the Recv SQE while `recv_armed`; never resized.
    pub(crate) rx: Vec<u8>,
    /// Bytes handed to the Send SQE in flight; untouched while `send_armed`.
    pub(crate) tx_inflight: Vec<u8>,
    /// Bytes of `tx_inflight` already sent (a short send resubmits the rest).
    pub(crate) tx_off: usize,
    /// Bytes waiting for the in-flight send to finish.
    pub(crate) tx_queue: Vec<u8>,
    /// Frame-encoding scratch (TLS path).
    enc: Vec<u8>,
    /// The request to write once connected.
    pub(crate) request: Vec<u8>,
    /// Operations in flight that reference this connection's memory.
    pub(crate) ops: u32,
    pub(crate) connect_armed: bool,
    pub(crate) recv_armed: bool,
    pub(crate) send_armed: bool,
    /// The recv in flight is multishot.
    pub(crate) recv_multishot: bool,
    /// Deadline timer: (timer slot, timer id) while armed.
    pub(crate) deadline: Option<(u32, u64)>,
    /// The state the deadline was armed for.
    pub(crate) deadline_for: Option<State>,
    /// shutdown(2) done and cancels issued.
    pub(crate) shut: bool,
}

impl Conn {
    pub(crate) fn new_ws(
        id: u64,
        url: Url,
        key: &str,
        headers: &[(String, String)],
        cfg: &NetConfig,
    ) -> Conn {
        let request = http::ws_upgrade_request(&url, key, headers);
        let proto = Proto::Ws(WsProto {
            accept: ws::accept_key(key),
            reader: WsReader::new(Role::Client, cfg.max_message, cfg.validate_utf8),
            pong_due: None,
            close_due: None,
            close_sent: false,
            peer_close_seen: false,
        });
        Conn::new(id, url, proto, request)
    }

    pub(crate) fn new_http(
        id: u64,
        url: Url,
        headers: &[(String, String)],
        cfg: &NetConfig,
    ) -> Conn {
        let request = http::get_request(&url, headers);
        let proto = Proto::Http(HttpProto {
            resp: None,
            max_body: cfg.max_http_body,
        });
        Conn::new(id, url, proto, request)
    }

    fn new(id: u64, url: Url, proto: Proto, request: Vec<u8>) -> Conn {
        Conn {
            app: App {
                id,
                host: url.host.clone(),
                state: State::Connecting,
                proto,
                head: Vec::new(),
                reason: None,
                reported: false,
                tls_handshaking: url.scheme.is_tls(),
            },
            url,
            gen: 0,
            tls: None,
            tls_config: None,
            addrs: Vec::new(),
            next_addr: 0,
            fd: -1,
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            sockaddr: Box::new(unsafe { std::mem::zeroed() }),
            sockaddr_len: 0,
            rx: Vec::new(),
            tx_inflight: Vec::new(),
            tx_off: 0,
            tx_queue: Vec::new(),
            enc: Vec::new(),
            request,
            ops: 0,
            connect_armed: false,
            recv_armed: false,
            send_armed: false,
            recv_multishot: false,
            deadline: None,
            deadline_for: None,
            shut: false,
        }
    }

    pub(crate) fn is_ws(&self) -> bool {
        matches!(self.app.proto, Proto::Ws(_))
    }

    /// TCP is connected: start TLS (if any) and queue the request.
    pub(crate) fn on_connected(&mut self) {
        self.app.state = State::Handshaking;
        let request = std::mem::take(&mut self.request);
        if let Some(cfg) = self.tls_config.clone() {
            let name = match rustls::pki_types::ServerName::try_from(self.url.host.clone()) {
                Ok(n) => n,
                Err(_) => {
                    let host = self.url.host.clone();
                    return self.app.fail(NetError::ServerName { host });
                }
            };
            let mut tls = match rustls::ClientConnection::new(cfg, name) {
                Ok(t) => Box::new(t),
                Err(error) => {
                    let host = self.url.host.clone();
                    let stage = Stage::TlsHandshake;
                    return self.app.fail(NetError::Tls { host, stage, error });
                }
            };
            // Buffered by rustls until the handshake completes.
            if let Err(error) = tls.writer().write_all(&request) {
                let host = self.url.host.clone();
                let stage = Stage::TlsHandshake;
                return self.app.fail(NetError::Io {
                    host,
                    stage,
                    op: "tls write",
                    error,
                });
            }
            self.tls = Some(tls);
            self.pull_tls();
        } else {
            self.app.tls_handshaking = false;
            self.tx_queue.extend_from_slice(&request);
        }
    }

    /// Moves the records rustls wants to send into `tx_queue`.
    fn pull_tls(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            while tls.wants_write() {
                if tls.write_tls(&mut self.tx_queue).is_err() {
                    break;
                }
            }
            self.app.tls_handshaking = tls.is_handshaking();
        }
    }

    /// Bytes from the socket.
    pub(crate) fn on_bytes<H: Handler>(
        &mut self,
        data: &[u8],
        ts: i64,
        h: &mut H,
        ctx: &mut Ctx<'_>,
    ) {
        if self.app.state == State::TearingDown {
            return;
        }
        let Some(tls) = self.tls.as_deref_mut() else {
            self.app.on_plain(data, ts, h, ctx);
            return;
        };
        let app = &mut self.app;
        let mut d = data;
        'outer: while !d.is_empty() {
            if let Err(error) = tls.read_tls(&mut d) {
                let (host, stage) = (app.host.clone(), app.stage());
                app.fail(NetError::Io {
                    host,
                    stage,
                    op: "tls read",
                    error,
                });
                break;
            }
            if let Err(error) = tls.process_new_packets() {
                let (host, stage) = (app.host.clone(), app.stage());
                app.fail(NetError::Tls { host, stage, error });
                break;
            }
            app.tls_handshaking = tls.is_handshaking();
            loop {
                let mut rd = tls.reader();
                match rd.fill_buf() {
                    Ok([]) => {
                        // close_notify: the peer ended the TLS session.
                        app.on_eof(ts, h, ctx);
                        break 'outer;
                    }
                    Ok(buf) => {
                        let n = buf.len();
                        app.on_plain(buf, ts, h, ctx);
                        rd.consume(n);
                        if app.state == State::TearingDown {
                            break 'outer;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(error) => {
                        let (host, stage) = (app.host.clone(), app.stage());
                        app.fail(NetError::Io {
                            host,
                            stage,
                            op: "tls read",
                            error,
                        });
                        break 'outer;
                    }
                }
            }
        }
        self.pull_tls();
    }

    /// Encodes one client frame (masked) into the transport.
    pub(crate) fn write_frame(&mut self, op: OpCode, payload: &[u8], mask: [u8; 4]) {
        match self.tls.as_deref_mut() {
            None => ws::encode_frame(&mut self.tx_queue, op, true, payload, Some(mask)),
            Some(tls) => {
                self.enc.clear();
                ws::encode_frame(&mut self.enc, op, true, payload, Some(mask));
                if tls.writer().write_all(&self.enc).is_err() {
                    let (host, stage) = (self.app.host.clone(), self.app.stage());
                    return self.app.fail(NetError::Io {
                        host,
                        stage,
                        op: "tls write",
                        error: std::io::ErrorKind::WriteZero.into(),
                    });
                }
                self.pull_tls();
            }
        }
    }

    /// Sends a data frame from the handler; `false` if the connection is not open.
    pub(crate) fn send_data(&mut self, op: OpCode, payload: &[u8], mask: [u8; 4]) -> bool {
        if self.app.state != State::Open {
            return false;
        }
        self.write_frame(op, payload, mask);
        true
    }

    /// Writes the pong / close frames the protocol side asked for.
    pub(crate) fn flush_control(&mut self, mut mask: impl FnMut() -> [u8; 4]) {
        let Proto::Ws(w) = &mut self.app.proto else {
            return;
        };
        let pong = if w.close_sent {
            None
        } else {
            w.pong_due.take()
        };
        let close = if w.close_sent {
            None
        } else {
            w.close_due.take()
        };
        if close.is_some() {
            w.close_sent = true;
        }
        if let Some(p) = pong {
            self.write_frame(OpCode::Pong, &p, mask());
        }
        if let Some((code, reason)) = close {
            let mut p = Vec::with_capacity(ws::MAX_CONTROL_PAYLOAD);
            if let Some(c) = code {
                p.extend_from_slice(&c.to_be_bytes());
                let mut end = reason.len().min(ws::MAX_CONTROL_PAYLOAD - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                p.extend_from_slice(&reason.as_bytes()[..end]);
            }
            self.write_frame(OpCode::Close, &p, mask());
            if let Some(tls) = self.tls.as_deref_mut() {
                tls.send_close_notify();
                self.pull_tls();
            }
        }
    }

    /// The handler's id for this connection.
    pub(crate) fn id(&self) -> u64 {
        self.app.id
    }
}
