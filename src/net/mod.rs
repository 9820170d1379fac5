//! Network transport for the collector: ONE io_uring instance, on one
//! thread, drives TCP connects, TLS (rustls, sans-IO over the io_uring
//! buffers), WebSocket clients (RFC 6455), one-shot HTTP(S) GETs (the Binance
//! depth snapshot) and timers.
//!
//! ```text
//!  EventLoop::run ── submit_and_wait ── CQEs ──▶ Conn state machine ──▶ Handler callbacks
//!        ▲                                   connecting → handshaking → open → closing → closed
//!        └──────── commands (send, close, connect, GET, timers) ◀── Ctx ◀──┘
//! ```
//!
//! * [`EventLoop::new`] probes the kernel ([`Features`]): SQPOLL (when
//!   configured), a provided-buffer ring and multishot receive when the
//!   kernel has them and the config allows, plain `recv` into per-connection
//!   buffers otherwise. The caller logs [`EventLoop::features`].
//! * The caller implements [`Handler`]; callbacks get a [`Ctx`] to send
//!   frames, close, open connections, start GETs and arm timers. Those are
//!   queued and carried out as soon as the callback returns.
//! * A received message is handed to [`Handler::on_message`] as a slice of
//!   the receive buffer (plain `ws://`) or of rustls' decrypt buffer
//!   (`wss://`) when the frame lies in one chunk: no copy. `recv_ts` is
//!   `crate::time::now_ns()` read once when the batch of completions that
//!   carried the bytes was reaped.
//! * Every failure ends in exactly one [`Handler::on_close`] (WebSocket) or
//!   [`Handler::on_http_response`] (GET) carrying a [`NetError`] that names
//!   the stage; nothing panics on peer input. Reconnecting is the caller's
//!   policy: call [`Ctx::connect_ws`] again (after a backoff timer).
//! * DNS: the host is resolved with a blocking `getaddrinfo` (std's
//!   `ToSocketAddrs`) when a connect command is carried out, i.e. at
//!   (re)connect time, never on the data path. Addresses are tried in order.

mod conn;
mod eventloop;
pub mod http;
pub mod tls;
mod uring;
pub mod ws;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use eventloop::{Ctx, EventLoop, RunExit, Stats};
pub use tls::RootSource;
pub use uring::{Features, SetupError};

/// Loop-wide configuration. `Default` is the production setting minus
/// SQPOLL (which burns a kernel thread per ring: opt in, with
/// `sqpoll_cpu` set to a housekeeping or sibling core).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Submission queue entries (the completion queue gets twice that).
    pub sq_entries: u32,
    /// Ask for a kernel submission-polling thread (`IORING_SETUP_SQPOLL`).
    pub sqpoll: bool,
    /// Milliseconds the SQPOLL thread spins before sleeping.
    pub sqpoll_idle_ms: u32,
    /// CPU to pin the SQPOLL thread to.
    pub sqpoll_cpu: Option<u32>,
    /// Never sleep in the kernel: poll for completions (one non-blocking
    /// `io_uring_enter` per turn, which also runs pending task work) and
    /// spin until one arrives. For a thread pinned to a dedicated core.
    pub busy_poll: bool,
    /// Use a provided-buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19+) for receives.
    pub provided_buffers: bool,
    /// Use multishot receive (6.0+); needs `provided_buffers`.
    pub multishot_recv: bool,
    /// Buffers in the provided-buffer ring (a power of two).
    pub buf_count: u16,
    /// Size of each receive buffer (ring buffer or per-connection buffer).
    pub buf_size: u32,
    /// Largest WebSocket message accepted (a single frame, or all fragments
    /// of one message). Larger: [`ws::WsError::MessageTooBig`], close 1009.
    pub max_message: usize,
    /// Check that text messages are UTF-8 (RFC 6455 8.1; close 1007 if not).
    pub validate_utf8: bool,
    /// Largest HTTP response body accepted by [`Ctx::http_get`].
    pub max_http_body: usize,
    /// Connect + TLS + WebSocket upgrade must finish within this.
    pub handshake_timeout: Duration,
    /// After sending a close frame, wait this long for the peer's close.
    pub close_timeout: Duration,
    /// A whole HTTP GET must finish within this.
    pub http_timeout: Duration,
    /// Trust anchors for `wss://` and `https://`.
    pub roots: RootSource,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            sq_entries: 256,
            sqpoll: false,
            sqpoll_idle_ms: 1000,
            sqpoll_cpu: None,
            busy_poll: false,
            provided_buffers: true,
            multishot_recv: true,
            buf_count: 64,
            buf_size: 64 * 1024,
            max_message: 16 << 20,
            validate_utf8: true,
            max_http_body: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            http_timeout: Duration::from_secs(30),
            roots: RootSource::System,
        }
    }
}

impl NetConfig {
    /// The fallback path forced: no SQPOLL, no provided buffers, no
    /// multishot; one plain `recv` per connection at a time.
    pub fn plain(mut self) -> Self {
        self.sqpoll = false;
        self.provided_buffers = false;
        self.multishot_recv = false;
        self
    }
}

/// A WebSocket connection, valid until its [`Handler::on_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A one-shot HTTP GET, valid until its [`Handler::on_http_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId(pub u64);

/// A timer armed with [`Ctx::set_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Per-connection options for [`Ctx::connect_ws`] / [`Ctx::http_get`].
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Extra request headers (e.g. an API key, `Origin`).
    pub headers: Vec<(String, String)>,
}

/// A received WebSocket data message.
#[derive(Debug)]
pub struct Message<'a> {
    /// The whole message, unmasked; for text, UTF-8 when `validate_utf8`.
    pub payload: &'a [u8],
    pub text: bool,
    /// CLOCK_REALTIME ns when the completion carrying the last byte was reaped.
    pub recv_ts: i64,
}

/// A finished HTTP GET.
#[derive(Debug)]
pub struct HttpResponse<'a> {
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// CLOCK_REALTIME ns when the last byte of the body was reaped.
    pub recv_ts: i64,
}

/// Which side started a WebSocket close handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    Local,
    Peer,
}

/// Why a WebSocket connection ended.
#[derive(Debug)]
pub enum CloseReason {
    /// The close handshake completed (or the peer closed TCP after our close
    /// frame). `code` and `reason` are from the peer's close frame.
    Clean {
        initiator: Initiator,
        code: Option<u16>,
        reason: String,
    },
    /// Closed locally (`Ctx::close`, or the loop dropped) before it was open.
    Aborted,
    /// The connection failed.
    Error(NetError),
}

/// The connection stage an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    TlsHandshake,
    WsHandshake,
    Open,
    Closing,
    HttpResponse,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "TCP connect",
            Stage::TlsHandshake => "TLS handshake",
            Stage::WsHandshake => "WebSocket handshake",
            Stage::Open => "open connection",
            Stage::Closing => "close handshake",
            Stage::HttpResponse => "HTTP response",
        })
    }
}

/// A connection or request failure. Each variant names the host and stage.
#[derive(Debug)]
pub enum NetError {
    /// The URL could not be used (parsed, but e.g. wrong scheme for the call).
    Url(http::UrlError),
    /// getaddrinfo failed or returned nothing.
    Resolve { host: String, error: io::Error },
    /// socket()/connect() failed for every resolved address (the last error).
    Connect { addr: SocketAddr, error: io::Error },
    /// A socket operation failed on an established connection.
    Io {
        host: String,
        stage: Stage,
        op: &'static str,
        error: io::Error,
    },
    /// The TLS configuration for this connection could not be built.
    TlsSetup(tls::TlsSetupError),
    /// The host name is not a valid TLS server name.
    ServerName { host: String },
    /// TLS failed (including a certificate not valid for the host).
    Tls {
        host: String,
        stage: Stage,
        error: rustls::Error,
    },
    /// The server's answer to the WebSocket upgrade was refused.
    Handshake {
        host: String,
        error: http::HandshakeError,
    },
    /// The server broke RFC 6455 (or sent a message over the limit).
    Ws { host: String, error: ws::WsError },
    /// The HTTP response was malformed or over the limit.
    Http {
        host: String,
        error: http::HttpError,
    },
    /// The peer closed TCP (or TLS) unexpectedly.
    Eof { host: String, stage: Stage },
    /// A stage did not finish in time.
    Timeout {
        host: String,
        stage: Stage,
        after: Duration,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Url(e) => write!(f, "{e}"),
            NetError::Resolve { host, error } => write!(f, "resolving {host:?}: {error}"),
            NetError::Connect { addr, error } => write!(f, "connecting to {addr}: {error}"),
            NetError::Io {
                host,
                stage,
                op,
                error,
            } => write!(f, "{host}: {op} failed during {stage}: {error}"),
            NetError::TlsSetup(e) => write!(f, "{e}"),
            NetError::ServerName { host } => write!(f, "{host:?} is not a valid TLS server name"),
            NetError::Tls { host, stage, error } => {
                write!(f, "{host}: TLS error during {stage}: {error}")
            }
            NetError::Handshake { host, error } => write!(f, "{host}: {error}"),
            NetError::Ws { host, error } => write!(f, "{host}: {error}"),
            NetError::Http { host, error } => write!(f, "{host}: {error}"),
            NetError::Eof { host, stage } => {
                write!(f, "{host}: connection closed by the peer during {stage}")
            }
            NetError::Timeout { host, stage, after } => {
                write!(f, "{host}: {stage} did not finish within {after:?}")
            }
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Url(e) => Some(e),
            NetError::Resolve { error, .. }
            | NetError::Connect { error, .. }
            | NetError::Io { error, .. } => Some(error),
            NetError::TlsSetup(e) => Some(e),
            NetError::Tls { error, .. } => Some(error),
            NetError::Handshake { error, .. } => Some(error),
            NetError::Ws { error, .. } => Some(error),
            NetError::Http { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The caller's side of the loop. All callbacks run on the loop's thread;
/// none may block.
pub trait Handler {
    /// The WebSocket upgrade succeeded; the connection can send.
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId) {}
    /// A complete data message. `msg.payload` is only valid during the call.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>);
    /// A pong arrived (the loop answers pings itself).
    fn on_pong(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _payload: &[u8], _recv_ts: i64) {}
    /// The connection is gone (its fd closed, its buffers free).
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _reason: CloseReason) {}
    /// A timer armed with [`Ctx::set_timer`] expired.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>, _timer: TimerId, _token: u64) {}
    /// An HTTP GET finished (any status) or failed.
    fn on_http_response(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _req: ReqId,
        _result: Result<HttpResponse<'_>, NetError>,
    ) {
    }
}
