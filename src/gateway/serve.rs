//! The listening socket (passed by systemd, or bound) and the accept loop.
//!
//! Socket activation: when systemd (or a test acting like it) passes a
//! listening socket (`LISTEN_FDS=1`, `LISTEN_PID=<our pid>`, fd 3), the
//! gateway serves it and ignores `listen`. On shutdown it stops accepting
//! at once but leaves the socket open in systemd's hands, so connection
//! attempts made while it restarts wait in the kernel's backlog for the
//! next process instead of being refused; connections already accepted
//! get `drain` to finish before they are told to close.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// Where the listening socket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenSource {
    /// Passed by the service manager (`LISTEN_FDS`).
    Activated,
    /// Bound by the gateway from the config's `listen`.
    Bound,
}

/// Why the gateway could not get its socket.
#[derive(Debug)]
pub enum ListenError {
    /// `LISTEN_FDS` was set but fd 3 is not a usable TCP listener.
    Passed(std::io::Error),
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::Passed(e) => write!(
                f,
                "the socket passed by the service manager (LISTEN_FDS) is not usable: {e}"
            ),
            ListenError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

// The Display already includes the cause.
impl std::error::Error for ListenError {}

/// Takes the socket systemd passed, if any (and clears `LISTEN_*` so child
/// processes do not inherit them). Must run before any thread is started:
/// it edits the environment.
pub fn take_activated() -> Result<Option<std::net::TcpListener>, ListenError> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    fds.take_tcp_listener(0).map_err(ListenError::Passed)
}

/// The passed socket, else a new one bound to `addr` (backlog 4096).
pub fn listener(
    passed: Option<std::net::TcpListener>,
    addr: SocketAddr,
) -> Result<(TcpListener, ListenSource), ListenError> {
    if let Some(l) = passed {
        l.set_nonblocking(true).map_err(ListenError::Passed)?;
        let l = TcpListener::from_std(l).map_err(ListenError::Passed)?;
        return Ok((l, ListenSource::Activated));
    }
    let bind = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let s = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        s.set_reuseaddr(true)?;
        s.bind(addr)?;
        s.listen(4096)
    };
    bind(addr)
        .map(|l| (l, ListenSource::Bound))
        .map_err(|source| ListenError::Bind { addr, source })
}

/// Live connections, to wait for them at shutdown.
#[derive(Default)]
pub struct ConnCount {
    n: AtomicUsize,
    zero: Notify,
}

impl ConnCount {
    pub fn enter(self: &Arc<Self>) -> ConnGuard {
        self.n.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self.clone())
    }

    pub fn get(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    /// Waits until no connection is left.
    pub async fn idle(&self) {
        loop {
            let notified = self.zero.notified();
            if self.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct ConnGuard(Arc<ConnCount>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// The router as a hyper service that notes when its connection got a
/// request: at shutdown a connection that has not yet delivered its first
/// request is given time to (it was accepted, so its client is waiting
/// for an answer), one that has is closed as soon as it is idle.
#[derive(Clone)]
struct Marked {
    inner: TowerToHyperService<Router>,
    seen: Arc<AtomicBool>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Marked {
    type Response = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Error;
    type Future = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Future;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.seen.store(true, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// Accepts and serves connections until `shutdown` turns true; then stops
/// accepting (dropping our handle of the socket) and closes connections as
/// they become idle: one that has not delivered a request yet gets up to
/// `drain` to do so. Returns once all are gone (`drain` + 5 s at the most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    conns: Arc<ConnCount>,
    drain: Duration,
) {
    let (close_tx, close_rx) = watch::channel(false);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = listener.accept() => {
                let (stream, _peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        eprintln!("tickring gateway: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let guard = conns.enter();
                let seen = Arc::new(AtomicBool::new(false));
                let svc = Marked {
                    inner: TowerToHyperService::new(app.clone()),
                    seen: seen.clone(),
                };
                let mut close = close_rx.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let builder = hyper::server::conn::http1::Builder::new();
                    let mut conn = pin!(builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades());
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = close.changed() => {}
                    }
                    let deadline = tokio::time::Instant::now() + drain;
                    while !seen.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        }
                    }
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(drain + Duration::from_secs(5), conn).await;
                });
            }
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    let _ = tokio::time::timeout(drain + Duration::from_secs(5), conns.idle()).await;
}
