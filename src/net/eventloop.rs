//! The event loop: owns the io_uring, the connections and the timers;
//! turns completions into state-machine steps and handler callbacks, and
//! handler commands into submissions.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, types::Timespec};

use super::conn::{Conn, State, MAX_TX_QUEUE};
use super::http::{self, Url};
use super::tls::{self, RootSource};
use super::uring::{decode_user_data, user_data, Features, Op, SetupError, Sqe, Uring};
use super::ws::OpCode;
use super::{
    CloseReason, ConnId, ConnectOptions, Handler, NetConfig, NetError, ReqId, Stage, TimerId,
};

/// Counters of the loop's work, for metrics. Monotonic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completions reaped.
    pub cqes: u64,
    /// Receive completions carrying data, and their bytes.
    pub recvs: u64,
    pub recv_bytes: u64,
    /// Send completions, and bytes sent.
    pub sends: u64,
    pub send_bytes: u64,
    /// Receives that found the buffer ring empty (`ENOBUFS`) and were re-armed.
    pub recv_no_buffers: u64,
    /// Receive submissions (a multishot receive counts once per arming).
    pub recv_submits: u64,
    /// Frames the handler asked to send on a connection that was not open
    /// (or no longer existed): dropped, counted here.
    pub sends_dropped: u64,
    /// Connections and requests started.
    pub connects: u64,
    /// Completions for a slot that no longer matched (should stay 0).
    pub stale_cqes: u64,
}

/// Why [`EventLoop::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// A handler called [`Ctx::stop`].
    Stopped,
    /// Nothing is in flight and nothing is queued: no connection, no timer,
    /// so nothing could ever happen again.
    Idle,
}

pub(crate) enum Cmd {
    ConnectWs {
        id: u64,
        url: Url,
        opts: ConnectOptions,
    },
    HttpGet {
        id: u64,
        url: Url,
        opts: ConnectOptions,
    },
    Send {
        conn: u64,
        op: OpCode,
        data: Vec<u8>,
    },
    Close {
        conn: u64,
        code: u16,
        reason: String,
    },
    SetTimer {
        id: u64,
        after: Duration,
        token: u64,
    },
    CancelTimer {
        id: u64,
    },
}

/// What a handler (or the caller, before [`EventLoop::run`]) can ask of the
/// loop. Requests are queued and carried out when the callback returns, in
/// order.
pub struct Ctx<'a> {
    cmds: &'a mut Vec<Cmd>,
    next_id: &'a mut u64,
    stop: &'a mut bool,
    /// A connection closed during this callback: stop decoding its data.
    halt: Option<u64>,
    features: &'a Features,
    stats: &'a Stats,
}

impl Ctx<'_> {
    fn id(&mut self) -> u64 {
        *self.next_id += 1;
        *self.next_id
    }

    /// Opens a WebSocket connection to a `ws://` or `wss://` URL. Its
    /// outcome arrives as [`Handler::on_open`] or [`Handler::on_close`].
    /// The host is resolved (blocking getaddrinfo) when the command is
    /// carried out.
    pub fn connect_ws(&mut self, url: &str, opts: ConnectOptions) -> Result<ConnId, NetError> {
        let url = http::parse_url(url).map_err(NetError::Url)?;
        if !url.scheme.is_ws() {
            return Err(NetError::Url(http::UrlError::Scheme(url.to_string())));
        }
        let id = self.id();
        self.cmds.push(Cmd::ConnectWs { id, url, opts });
        Ok(ConnId(id))
    }

    /// Starts a one-shot GET of an `http://` or `https://` URL on this
    /// loop. The result arrives as [`Handler::on_http_response`].
    pub fn http_get(&mut self, url: &str, opts: ConnectOptions) -> Result<ReqId, NetError> {
        let url = http::parse_url(url).map_err(NetError::Url)?;
        if url.scheme.is_ws() {
            return Err(NetError::Url(http::UrlError::Scheme(url.to_string())));
        }
        let id = self.id();
        self.cmds.push(Cmd::HttpGet { id, url, opts });
        Ok(ReqId(id))
    }

    /// Sends a text message (one frame, masked).
    pub fn send_text(&mut self, conn: ConnId, text: &str) {
        self.send(conn, OpCode::Text, text.as_bytes());
    }

    /// Sends a binary message (one frame, masked).
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) {
        self.send(conn, OpCode::Binary, data);
    }

    /// Sends a ping (payload truncated to 125 bytes); the answer arrives as
    /// [`Handler::on_pong`].
    pub fn send_ping(&mut self, conn: ConnId, payload: &[u8]) {
        let n = payload.len().min(super::ws::MAX_CONTROL_PAYLOAD);
        self.send(conn, OpCode::Ping, &payload[..n]);
    }

    fn send(&mut self, conn: ConnId, op: OpCode, data: &[u8]) {
        self.cmds.push(Cmd::Send {
            conn: conn.0,
            op,
            data: data.to_vec(),
        });
    }

    /// Starts the close handshake (or aborts a connection not yet open).
    /// Messages already received but not yet delivered are dropped.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        self.halt = Some(conn.0);
        self.cmds.push(Cmd::Close {
            conn: conn.0,
            code,
            reason: reason.to_string(),
        });
    }

    /// Arms a one-shot timer (an io_uring Timeout): [`Handler::on_timer`]
    /// gets `token` after `after`.
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let id = self.id();
        self.cmds.push(Cmd::SetTimer { id, after, token });
        TimerId(id)
    }

    /// Cancels a timer; no callback comes for it afterwards.
    pub fn cancel_timer(&mut self, timer: TimerId) {
        self.cmds.push(Cmd::CancelTimer { id: timer.0 });
    }

    /// Makes [`EventLoop::run`] return once the current batch of
    /// completions is handled. Connections stay open; `run` can be called again.
    pub fn stop(&mut self) {
        *self.stop = true;
    }

    /// The kernel features in use.
    pub fn features(&self) -> &Features {
        self.features
    }

    /// The loop's counters as of the start of this batch.
    pub fn stats(&self) -> &Stats {
        self.stats
    }

    /// Whether decoding of `conn`'s data should stop (it was closed in a callback).
    pub(crate) fn take_halt(&mut self, conn: u64) -> bool {
        if self.halt == Some(conn) {
            self.halt = None;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    User { token: u64 },
    Deadline { conn_slot: u32, conn_id: u64 },
}

struct TimerSlot {
    id: u64,
    gen: u32,
    /// Read by the kernel when the Timeout SQE is consumed; boxed so the
    /// address is stable, and kept until the timer's completion.
    ts: Box<Timespec>,
    kind: TimerKind,
    busy: bool,
    cancelled: bool,
}

/// One io_uring, its connections and timers. Not `Send`: create it on the
/// thread that runs it (the pinned collector thread).
pub struct EventLoop {
    uring: Uring,
    cfg: NetConfig,
    conns: Vec<Option<Conn>>,
    /// Generation of each connection slot, bumped on reuse.
    conn_gens: Vec<u32>,
    free_conns: Vec<u32>,
    timers: Vec<TimerSlot>,
    free_timers: Vec<u32>,
    cmds: Vec<Cmd>,
    next_id: u64,
    stop: bool,
    cqes: Vec<cqueue::Entry>,
    /// xorshift64* state for masking keys (seeded from the OS RNG).
    rng: u64,
    tls_configs: Vec<(RootSource, Arc<rustls::ClientConfig>)>,
    stats: Stats,
    _not_send: std::marker::PhantomData<*const ()>,
}

fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn mask(s: &mut u64) -> [u8; 4] {
    (next_rand(s) as u32).to_ne_bytes()
}

fn os_random(buf: &mut [u8]) {
    use ring::rand::SecureRandom;
    if ring::rand::SystemRandom::new().fill(buf).is_err() {
        // getrandom cannot fail on Linux >= 3.17; keep going with time.
        let t = crate::time::monotonic_ns().to_ne_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= t[i % 8];
        }
    }
}

fn fill_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in (that is its purpose).
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn tcp_socket(addr: &SocketAddr) -> io::Result<i32> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: `fd` is a socket we own; the option value points to a live
    // c_int of the given size. Failure (not a TCP socket) is harmless.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

fn close_fd(fd: i32) {
    if fd >= 0 {
        // SAFETY: the fd is owned by the connection and no operation in
        // flight uses it (callers check `ops == 0` or own it exclusively).
        unsafe { libc::close(fd) };
    }
}

/// Builds a `Ctx` from the loop's fields (a macro so the borrow checker sees
/// disjoint field borrows next to `self.conns`).
macro_rules! ctx {
    ($s:ident) => {
        Ctx {
            cmds: &mut $s.cmds,
            next_id: &mut $s.next_id,
            stop: &mut $s.stop,
            halt: None,
            features: &$s.uring.features,
            stats: &$s.stats,
        }
    };
}

impl EventLoop {
    /// Sets up the io_uring (probing the kernel, see [`Features`]).
    pub fn new(cfg: NetConfig) -> Result<EventLoop, SetupError> {
        let uring = Uring::new(&cfg)?;
        let mut seed = [0u8; 8];
        os_random(&mut seed);
        Ok(EventLoop {
            uring,
            cfg,
            conns: Vec::new(),
            conn_gens: Vec::new(),
            free_conns: Vec::new(),
            timers: Vec::new(),
            free_timers: Vec::new(),
            cmds: Vec::new(),
            next_id: 0,
            stop: false,
            cqes: Vec::with_capacity(256),
            rng: u64::from_ne_bytes(seed) | 1,
            tls_configs: Vec::new(),
            stats: Stats::default(),
            _not_send: std::marker::PhantomData,
        })
    }

    /// What the kernel offers and which path is in use (log this at start).
    pub fn features(&self) -> &Features {
        &self.uring.features
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A context for queueing work before (or between) [`EventLoop::run`] calls.
    pub fn ctx(&mut self) -> Ctx<'_> {
        ctx!(self)
    }

    /// Runs until a handler calls [`Ctx::stop`] or nothing is left to do.
    /// Errors are io_uring_enter failures only (connection failures go to
    /// the handler).
    pub fn run<H: Handler>(&mut self, h: &mut H) -> io::Result<RunExit> {
        self.stop = false;
        let mut cqes = std::mem::take(&mut self.cqes);
        let res = self.run_inner(h, &mut cqes);
        self.cqes = cqes;
        res
    }

    fn run_inner<H: Handler>(
        &mut self,
        h: &mut H,
        cqes: &mut Vec<cqueue::Entry>,
    ) -> io::Result<RunExit> {
        loop {
            self.apply_cmds(h)?;
            if self.stop {
                return Ok(RunExit::Stopped);
            }
            if self.uring.inflight == 0 {
                return Ok(RunExit::Idle);
            }
            if self.cfg.busy_poll {
                self.uring.submit_and_poll()?;
            } else {
                self.uring.submit_and_wait()?;
            }
            // One timestamp per reaped batch: when these completions were
            // seen, the closest we get to "when the bytes arrived".
            let ts = crate::time::now_ns();
            self.uring.reap(cqes);
            for cqe in cqes.iter() {
                self.dispatch(cqe.user_data(), cqe.result(), cqe.flags(), ts, h)?;
                self.apply_cmds(h)?;
            }
        }
    }

    fn find_conn(&self, id: u64) -> Option<u32> {
        self.conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.id() == id))
            .map(|i| i as u32)
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        if let Some((_, c)) = self.tls_configs.iter().find(|(r, _)| *r == self.cfg.roots) {
            return Ok(c.clone());
        }
        let c = tls::client_config(&self.cfg.roots).map_err(NetError::TlsSetup)?;
        self.tls_configs.push((self.cfg.roots.clone(), c.clone()));
        Ok(c)
    }

    fn apply_cmds<H: Handler>(&mut self, h: &mut H) -> io::Result<()> {
        while !self.cmds.is_empty() {
            let batch = std::mem::take(&mut self.cmds);
            for cmd in batch {
                self.apply(cmd, h)?;
            }
        }
        Ok(())
    }

    fn apply<H: Handler>(&mut self, cmd: Cmd, h: &mut H) -> io::Result<()> {
        match cmd {
            Cmd::ConnectWs { id, url, opts } => {
                let mut key = [0u8; 16];
                os_random(&mut key);
                let conn =
                    Conn::new_ws(id, url, &super::ws::base64(&key), &opts.headers, &self.cfg);
                self.start(conn, h)
            }
            Cmd::HttpGet { id, url, opts } => {
                let conn = Conn::new_http(id, url, &opts.headers, &self.cfg);
                self.start(conn, h)
            }
            Cmd::Send { conn, op, data } => {
                match self.find_conn(conn) {
                    Some(slot) => {
                        let c = self.conns[slot as usize].as_mut().expect("found");
                        if !c.send_data(op, &data, mask(&mut self.rng)) {
                            self.stats.sends_dropped += 1;
                        }
                        self.drive(slot, h)?;
                    }
                    None => self.stats.sends_dropped += 1,
                }
                Ok(())
            }
            Cmd::Close { conn, code, reason } => {
                if let Some(slot) = self.find_conn(conn) {
                    self.conns[slot as usize]
                        .as_mut()
                        .expect("found")
                        .app
                        .close(code, &reason);
                    self.drive(slot, h)?;
                }
                Ok(())
            }
            Cmd::SetTimer { id, after, token } => self
                .arm_timer(id, after, TimerKind::User { token })
                .map(drop),
            Cmd::CancelTimer { id } => {
                if let Some(slot) = self.timers.iter().position(|t| t.busy && t.id == id) {
                    self.cancel_timer_slot(slot as u32)?;
                }
                Ok(())
            }
        }
    }

    fn report_early<H: Handler>(&mut self, conn: &Conn, e: NetError, h: &mut H) {
        let mut ctx = ctx!(self);
        if conn.is_ws() {
            h.on_close(&mut ctx, ConnId(conn.id()), CloseReason::Error(e));
        } else {
            h.on_http_response(&mut ctx, ReqId(conn.id()), Err(e));
        }
    }

    /// Resolves, creates the socket, submits the connect, arms the deadline.
    fn start<H: Handler>(&mut self, mut conn: Conn, h: &mut H) -> io::Result<()> {
        self.stats.connects += 1;
        if conn.url.scheme.is_tls() {
            match self.tls_config() {
                Ok(c) => conn.tls_config = Some(c),
                Err(e) => {
                    self.report_early(&conn, e, h);
                    return Ok(());
                }
            }
        }
        // NB: blocking getaddrinfo, at (re)connect time only (documented in mod.rs).
        match (conn.url.host.as_str(), conn.url.port).to_socket_addrs() {
            Ok(a) => conn.addrs = a.collect(),
            Err(error) => {
                let host = conn.url.host.clone();
                self.report_early(&conn, NetError::Resolve { host, error }, h);
                return Ok(());
            }
        }
        if conn.addrs.is_empty() {
            let host = conn.url.host.clone();
            let error = io::Error::new(io::ErrorKind::NotFound, "no address");
            self.report_early(&conn, NetError::Resolve { host, error }, h);
            return Ok(());
        }
        if !self.uring.features.provided_buffers {
            conn.rx = vec![0u8; self.cfg.buf_size as usize];
        }
        let slot = match self.free_conns.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conn_gens.push(0);
                (self.conns.len() - 1) as u32
            }
        };
        self.conn_gens[slot as usize] = self.conn_gens[slot as usize].wrapping_add(1) & 0xFF_FFFF;
        conn.gen = self.conn_gens[slot as usize];
        let id = conn.id();
        let after = if conn.is_ws() {
            self.cfg.handshake_timeout
        } else {
            self.cfg.http_timeout
        };
        self.conns[slot as usize] = Some(conn);
        self.connect_next(slot)?;
        let t = self.arm_timer(
            self.next_id + 1,
            after,
            TimerKind::Deadline {
                conn_slot: slot,
                conn_id: id,
            },
        )?;
        self.next_id += 1;
        let c = self.conns[slot as usize].as_mut().expect("just inserted");
        c.deadline = Some(t);
        c.deadline_for = Some(State::Connecting);
        self.drive(slot, h)
    }

    /// Tries the connection's next resolved address.
    fn connect_next(&mut self, slot: u32) -> io::Result<()> {
        let c = self.conns[slot as usize].as_mut().expect("live slot");
        let mut last_err = None;
        while c.next_addr < c.addrs.len() {
            let addr = c.addrs[c.next_addr];
            c.next_addr += 1;
            match tcp_socket(&addr) {
                Ok(fd) => {
                    c.fd = fd;
                    c.sockaddr_len = fill_sockaddr(&addr, &mut c.sockaddr);
                    let ud = user_data(Op::Connect, c.gen, slot);
                    let sqe = Sqe::Connect {
                        fd,
                        addr: (&*c.sockaddr as *const libc::sockaddr_storage).cast(),
                        len: c.sockaddr_len,
                    };
                    // SAFETY: `sockaddr` is boxed in the connection, which
                    // is freed only when `ops` is back to zero (see
                    // `Uring::push`).
                    unsafe { self.uring.push(sqe, ud)? };
                    c.ops += 1;
                    c.connect_armed = true;
                    return Ok(());
                }
                Err(e) => last_err = Some((addr, e)),
            }
        }
        let (addr, error) = last_err.unwrap_or_else(|| {
            (
                c.addrs[c.addrs.len() - 1],
                io::Error::new(io::ErrorKind::NotConnected, "all addresses failed"),
            )
        });
        c.app.fail(NetError::Connect { addr, error });
        Ok(())
    }

    fn arm_timer(&mut self, id: u64, after: Duration, kind: TimerKind) -> io::Result<(u32, u64)> {
        let slot = match self.free_timers.pop() {
            Some(s) => s,
            None => {
                self.timers.push(TimerSlot {
                    id: 0,
                    gen: 0,
                    ts: Box::new(Timespec::new()),
                    kind,
                    busy: false,
                    cancelled: false,
                });
                (self.timers.len() - 1) as u32
            }
        };
        let t = &mut self.timers[slot as usize];
        debug_assert!(!t.busy);
        t.id = id;
        t.gen = t.gen.wrapping_add(1) & 0xFF_FFFF;
        *t.ts = Timespec::from(after);
        t.kind = kind;
        t.busy = true;
        t.cancelled = false;
        let ud = user_data(Op::Timer, t.gen, slot);
        let sqe = Sqe::Timer { ts: &*t.ts };
        // SAFETY: the Timespec is boxed in the slot, which is not reused
        // until this timer's completion is reaped (`busy`).
        unsafe { self.uring.push(sqe, ud)? };
        Ok((slot, id))
    }

    fn cancel_timer_slot(&mut self, slot: u32) -> io::Result<()> {
        let t = &mut self.timers[slot as usize];
        if !t.busy || t.cancelled {
            return Ok(());
        }
        t.cancelled = true;
        let target = user_data(Op::Timer, t.gen, slot);
        // SAFETY: TimeoutRemove references no memory.
        unsafe {
            self.uring
                .push(Sqe::TimerRemove { target }, user_data(Op::Cancel, 0, 0))
        }
    }

    /// Carries out what the connection's state asks for: control frames,
    /// deadlines, sends, receives, teardown and, at the end, freeing.
    fn drive<H: Handler>(&mut self, slot: u32, h: &mut H) -> io::Result<()> {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return Ok(());
        };
        let rng = &mut self.rng;
        c.flush_control(|| mask(rng));
        if c.tx_queue.len() > MAX_TX_QUEUE {
            let (host, stage) = (c.app.host.clone(), Stage::Open);
            c.app.fail(NetError::Io {
                host,
                stage,
                op: "send",
                error: io::Error::other(format!(
                    "{} bytes unsent: the peer stopped reading",
                    c.tx_queue.len()
                )),
            });
        }
        // Once both close frames are exchanged and ours is on the wire, end
        // the TCP connection ourselves rather than wait for the server's FIN
        // (RFC 6455 7.1.1 lets the client do so; nothing more can come).
        if c.app.state == State::Closing
            && c.app.close_frames_exchanged()
            && !c.send_armed
            && c.tx_queue.is_empty()
            && c.tx_off >= c.tx_inflight.len()
        {
            c.app.state = State::TearingDown;
        }
        let state = c.app.state;
        // Deadlines: the handshake one ends at Open (WebSocket; a GET keeps
        // its deadline to the end); Closing gets the close timeout.
        let mut cancel = None;
        let mut arm = None;
        match state {
            State::Open if c.is_ws() && c.deadline.is_some() => cancel = c.deadline.take(),
            State::Closing if c.deadline_for != Some(State::Closing) => {
                cancel = c.deadline.take();
                arm = Some(self.cfg.close_timeout);
            }
            State::TearingDown => cancel = c.deadline.take(),
            _ => {}
        }
        if let Some(after) = arm {
            c.deadline_for = Some(State::Closing);
            let id = c.id();
            let t = self.arm_timer(
                self.next_id + 1,
                after,
                TimerKind::Deadline {
                    conn_slot: slot,
                    conn_id: id,
                },
            )?;
            self.next_id += 1;
            self.conns[slot as usize].as_mut().expect("live").deadline = Some(t);
        }
        if let Some((tslot, _)) = cancel {
            self.cancel_timer_slot(tslot)?;
        }
        let c = self.conns[slot as usize].as_mut().expect("live");

        if state == State::TearingDown {
            if !c.shut {
                c.shut = true;
                if c.fd >= 0 {
                    // SAFETY: plain syscall on our own socket; it makes a
                    // pending receive complete (0) so the ops can drain.
                    unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
                }
                for (armed, op) in [
                    (c.connect_armed, Op::Connect),
                    (c.recv_armed, Op::Recv),
                    (c.send_armed, Op::Send),
                ] {
                    if armed {
                        let target = user_data(op, c.gen, slot);
                        // SAFETY: AsyncCancel references no memory.
                        unsafe {
                            self.uring
                                .push(Sqe::Cancel { target }, user_data(Op::Cancel, 0, 0))?
                        };
                    }
                }
            }
            let c = self.conns[slot as usize].as_mut().expect("live");
            if c.ops == 0 {
                self.free(slot, h);
            }
            return Ok(());
        }

        // Send: finish a short send first, then whatever queued up.
        if !c.send_armed && state != State::Connecting {
            if c.tx_inflight.is_empty() && !c.tx_queue.is_empty() {
                std::mem::swap(&mut c.tx_inflight, &mut c.tx_queue);
                c.tx_off = 0;
            }
            if c.tx_off < c.tx_inflight.len() {
                let rest = &c.tx_inflight[c.tx_off..];
                let sqe = Sqe::Send {
                    fd: c.fd,
                    buf: rest.as_ptr(),
                    len: rest.len().min(u32::MAX as usize) as u32,
                };
                // SAFETY: `tx_inflight` is not touched while `send_armed`,
                // and the connection is freed only when `ops` is zero.
                unsafe { self.uring.push(sqe, user_data(Op::Send, c.gen, slot))? };
                c.ops += 1;
                c.send_armed = true;
            }
        }
        // Receive.
        if !c.recv_armed && matches!(state, State::Handshaking | State::Open | State::Closing) {
            let f = &self.uring.features;
            let sqe = if f.multishot_recv {
                c.recv_multishot = true;
                Sqe::RecvMulti { fd: c.fd }
            } else if f.provided_buffers {
                c.recv_multishot = false;
                Sqe::RecvSelect {
                    fd: c.fd,
                    len: self.cfg.buf_size,
                }
            } else {
                c.recv_multishot = false;
                Sqe::Recv {
                    fd: c.fd,
                    buf: c.rx.as_mut_ptr(),
                    len: c.rx.len() as u32,
                }
            };
            // SAFETY: `rx` is never resized and not read while `recv_armed`;
            // buffer-ring memory lives as long as the Uring; the connection
            // is freed only when `ops` is zero.
            unsafe { self.uring.push(sqe, user_data(Op::Recv, c.gen, slot))? };
            c.ops += 1;
            c.recv_armed = true;
            self.stats.recv_submits += 1;
        }
        Ok(())
    }

    /// Closes the fd, reports the outcome, frees the slot.
    fn free<H: Handler>(&mut self, slot: u32, h: &mut H) {
        let mut conn = self.conns[slot as usize].take().expect("live");
        debug_assert_eq!(conn.ops, 0);
        close_fd(conn.fd);
        conn.fd = -1;
        self.free_conns.push(slot);
        let reason = conn.app.reason.take().unwrap_or(CloseReason::Aborted);
        let mut ctx = ctx!(self);
        if conn.is_ws() {
            h.on_close(&mut ctx, ConnId(conn.id()), reason);
        } else if !conn.app.reported {
            let err = match reason {
                CloseReason::Error(e) => e,
                _ => NetError::Eof {
                    host: conn.url.host.clone(),
                    stage: Stage::HttpResponse,
                },
            };
            h.on_http_response(&mut ctx, ReqId(conn.id()), Err(err));
        }
    }

    fn dispatch<H: Handler>(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        ts: i64,
        h: &mut H,
    ) -> io::Result<()> {
        self.stats.cqes += 1;
        let (op, gen, slot) = decode_user_data(ud);
        let bid = cqueue::buffer_select(flags);
        if op == Op::Timer as u8 {
            return self.on_timer(slot, gen, res, h);
        }
        if op == Op::Cancel as u8 {
            return Ok(());
        }
        let live = self
            .conns
            .get(slot as usize)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.gen == gen);
        if !live {
            self.stats.stale_cqes += 1;
            if let (Some(b), Some(br)) = (bid, self.uring.bufring.as_mut()) {
                br.recycle(b);
            }
            return Ok(());
        }
        let c = self.conns[slot as usize].as_mut().expect("live");
        if op == Op::Connect as u8 {
            c.ops -= 1;
            c.connect_armed = false;
            if c.app.state == State::Connecting {
                if res < 0 {
                    let addr = c.addrs[c.next_addr - 1];
                    close_fd(c.fd);
                    c.fd = -1;
                    if c.next_addr < c.addrs.len() {
                        self.connect_next(slot)?;
                    } else {
                        c.app.fail(NetError::Connect {
                            addr,
                            error: io::Error::from_raw_os_error(-res),
                        });
                    }
                } else {
                    c.on_connected();
                }
            }
        } else if op == Op::Send as u8 {
            c.ops -= 1;
            c.send_armed = false;
            if res < 0 {
                if c.app.state != State::TearingDown {
                    let (host, stage) = (c.app.host.clone(), Stage::Open);
                    c.app.fail(NetError::Io {
                        host,
                        stage,
                        op: "send",
                        error: io::Error::from_raw_os_error(-res),
                    });
                }
            } else {
                self.stats.sends += 1;
                self.stats.send_bytes += res as u64;
                c.tx_off += res as usize;
                if c.tx_off >= c.tx_inflight.len() {
                    c.tx_inflight.clear();
                    c.tx_off = 0;
                }
            }
        } else if op == Op::Recv as u8 {
            let more = c.recv_multishot && cqueue::more(flags);
            if !more {
                c.ops -= 1;
                c.recv_armed = false;
            }
            if res > 0 {
                self.stats.recvs += 1;
                self.stats.recv_bytes += res as u64;
                let n = res as usize;
                let mut ctx = ctx!(self);
                match (bid, self.uring.bufring.as_ref()) {
                    (Some(b), Some(br)) => {
                        c.on_bytes(br.data(b, n), ts, h, &mut ctx);
                    }
                    _ => {
                        let rx = std::mem::take(&mut c.rx);
                        c.on_bytes(&rx[..n.min(rx.len())], ts, h, &mut ctx);
                        c.rx = rx;
                    }
                }
            } else if res == 0 {
                let mut ctx = ctx!(self);
                c.app.on_eof(ts, h, &mut ctx);
            } else if res == -libc::ENOBUFS {
                // Ring empty: re-armed below once buffers are back.
                self.stats.recv_no_buffers += 1;
            } else if res != -libc::ECANCELED && c.app.state != State::TearingDown {
                let (host, stage) = (c.app.host.clone(), Stage::Open);
                c.app.fail(NetError::Io {
                    host,
                    stage,
                    op: "recv",
                    error: io::Error::from_raw_os_error(-res),
                });
            }
            if let (Some(b), Some(br)) = (bid, self.uring.bufring.as_mut()) {
                br.recycle(b);
            }
        }
        self.drive(slot, h)
    }

    fn on_timer<H: Handler>(&mut self, slot: u32, gen: u32, res: i32, h: &mut H) -> io::Result<()> {
        let Some(t) = self.timers.get_mut(slot as usize) else {
            self.stats.stale_cqes += 1;
            return Ok(());
        };
        if !t.busy || t.gen != gen {
            self.stats.stale_cqes += 1;
            return Ok(());
        }
        t.busy = false;
        self.free_timers.push(slot);
        let fired = res == -libc::ETIME && !t.cancelled;
        let (id, kind) = (t.id, t.kind);
        match kind {
            TimerKind::User { token } => {
                if fired {
                    let mut ctx = ctx!(self);
                    h.on_timer(&mut ctx, TimerId(id), token);
                }
            }
            TimerKind::Deadline { conn_slot, conn_id } => {
                let Some(c) = self
                    .conns
                    .get_mut(conn_slot as usize)
                    .and_then(|c| c.as_mut())
                else {
                    return Ok(());
                };
                if c.id() != conn_id || c.deadline.map(|d| d.1) != Some(id) {
                    return Ok(());
                }
                c.deadline = None;
                if fired {
                    c.app.on_deadline(&self.cfg);
                }
                return self.drive(conn_slot, h);
            }
        }
        Ok(())
    }
}

impl Drop for EventLoop {
    /// Cancels everything in flight and waits (bounded) for the kernel to
    /// let go of our memory; if it does not, leaks the buffers rather than
    /// free memory the kernel may still write.
    fn drop(&mut self) {
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.fd >= 0 {
                // SAFETY: plain syscall on our own socket.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
            }
            let targets = [
                (c.connect_armed, Op::Connect),
                (c.recv_armed, Op::Recv),
                (c.send_armed, Op::Send),
            ]
            .into_iter()
            .filter(|(a, _)| *a)
            .map(|(_, op)| user_data(op, c.gen, slot as u32))
            .collect::<Vec<_>>();
            for target in targets {
                // SAFETY: AsyncCancel references no memory.
                let _ = unsafe {
                    self.uring
                        .push(Sqe::Cancel { target }, user_data(Op::Cancel, 0, 0))
                };
            }
        }
        for slot in 0..self.timers.len() {
            let _ = self.cancel_timer_slot(slot as u32);
        }
        let guard = Box::new(Timespec::from(Duration::from_millis(20)));
        let mut cqes = Vec::new();
        for _ in 0..250 {
            if self.uring.inflight == 0 {
                break;
            }
            // A short timeout so the wait cannot hang on an op that never ends.
            // SAFETY: `guard` is leaked below unless the ring drained, which
            // includes this timeout's own completion.
            if unsafe {
                self.uring
                    .push(Sqe::Timer { ts: &*guard }, user_data(Op::Cancel, 0, 0))
            }
            .is_err()
            {
                break;
            }
            if self.uring.submit_and_wait().is_err() {
                break;
            }
            self.uring.reap(&mut cqes);
            for cqe in &cqes {
                let (op, _, slot) = decode_user_data(cqe.user_data());
                if let Some(b) = cqueue::buffer_select(cqe.flags()) {
                    if let Some(br) = self.uring.bufring.as_mut() {
                        br.recycle(b);
                    }
                }
                if op == Op::Timer as u8 {
                    if let Some(t) = self.timers.get_mut(slot as usize) {
                        t.busy = false;
                    }
                }
            }
        }
        for c in self.conns.iter().flatten() {
            if self.uring.inflight == 0 {
                close_fd(c.fd);
            }
        }
        if self.uring.inflight != 0 {
            // The kernel may still reference these: never free them.
            std::mem::forget(std::mem::take(&mut self.conns));
            std::mem::forget(std::mem::take(&mut self.timers));
            if let Some(br) = self.uring.bufring.take() {
                std::mem::forget(br);
            }
            std::mem::forget(guard);
        }
    }
}
