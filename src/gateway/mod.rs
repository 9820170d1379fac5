//! The gateway: serves the rings of this host to the network.
//!
//! `tickring gateway --config /etc/tickring/gateway.toml`
//!
//! ```text
//!  ring files ──▶ one reader thread per ring (hub::Worker, no async)
//!                  │ renders each event to JSON once, try_send into each
//!                  │ subscribed client's bounded queue (never waits)
//!                  ▼
//!  tokio runtime: one task per WebSocket client (stream.rs) draining its
//!  queue into its socket; REST handlers (rest.rs) reading the rings' shared
//!  state; the accept loop (serve.rs) on a socket systemd may pass.
//! ```
//!
//! Endpoints: `GET /v1/stream` (WebSocket), `/v1/instruments`,
//! `/v1/book/{exchange}/{symbol}?depth=N`, `/v1/feeds`, `/v1/status`,
//! `/health`, `/ready`, `/metrics`, and the status page at `/`.

pub mod config;
pub mod hub;
pub mod metrics;
pub mod pattern;
pub mod rest;
pub mod serve;
pub mod stream;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use config::{GatewayFile, GatewaySettings};
use hub::{Hub, RingLocation, WorkerOptions};
use metrics::Metrics;
pub use serve::{ListenError, ListenSource};

/// What every handler shares.
pub struct App {
    pub settings: GatewaySettings,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Turns true when the gateway stops.
    pub shutdown: watch::Receiver<bool>,
    pub started: Instant,
}

/// Why the gateway stopped with an error.
#[derive(Debug)]
pub enum GatewayError {
    Listen(ListenError),
    /// The async runtime or a reader thread could not be started.
    Start(std::io::Error),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Listen(e) => e.fmt(f),
            GatewayError::Start(e) => write!(f, "cannot start the gateway: {e}"),
        }
    }
}

// The Display of each variant already includes its cause.
impl std::error::Error for GatewayError {}

/// Runs the gateway until SIGTERM or SIGINT, then shuts down cleanly:
/// stop accepting (a passed socket stays with systemd), close WebSocket
/// clients with 1001, let HTTP requests in flight finish, stop the readers.
///
/// `passed` is the socket from [`serve::take_activated`], which must be
/// called before any thread exists.
pub fn run(
    settings: GatewaySettings,
    passed: Option<std::net::TcpListener>,
) -> Result<(), GatewayError> {
    if let Some((soft, hard)) = raise_nofile_limit() {
        if soft < settings.max_clients as u64 + 64 {
            eprintln!(
                "tickring gateway: warning: open files limit is {soft} (hard {hard}); \
                 max_clients = {} needs about {}: raise LimitNOFILE=",
                settings.max_clients,
                settings.max_clients + 64
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gateway-io")
        .build()
        .map_err(GatewayError::Start)?;
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new(
        metrics.clone(),
        WorkerOptions {
            idle_sleep: settings.idle_sleep,
        },
    );
    for r in &settings.rings {
        hub.add_ring(&r.name, RingLocation::Configured(r.arg.clone()), true)
            .map_err(GatewayError::Start)?;
    }
    let result = rt.block_on(serve_until_signal(settings, hub.clone(), metrics, passed));
    hub.shutdown();
    result
}

async fn serve_until_signal(
    settings: GatewaySettings,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    passed: Option<std::net::TcpListener>,
) -> Result<(), GatewayError> {
    let (listener, source) =
        serve::listener(passed, settings.listen).map_err(GatewayError::Listen)?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    eprintln!(
        "tickring gateway: listening on {local} ({})",
        match source {
            ListenSource::Activated => "socket passed by the service manager",
            ListenSource::Bound => "bound from the config",
        }
    );
    let (tx, rx) = watch::channel(false);
    if !settings.ring_dirs.is_empty() {
        let dirs = settings.ring_dirs.clone();
        let hub = hub.clone();
        let mut stop = rx.clone();
        tokio::spawn(async move {
            loop {
                let h = hub.clone();
                let d = dirs.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for dir in &d {
                        hub::discover(&h, dir);
                    }
                })
                .await;
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
    let drain = settings.drain;
    let app = Arc::new(App {
        settings,
        hub,
        metrics: metrics.clone(),
        shutdown: rx.clone(),
        started: Instant::now(),
    });
    let router = rest::router(app.clone());
    let conns = Arc::new(serve::ConnCount::default());
    let server = tokio::spawn(serve::serve(listener, router, rx.clone(), conns, drain));
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    wait_for_signal().await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = tx.send(true);
    let _ = server.await;
    // WebSocket clients were sent 1001; give them a moment to go.
    let deadline = Instant::now() + Duration::from_secs(6);
    while metrics.clients.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(app);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Raises the soft open-files limit to the hard one (each client is a
/// socket). Returns the limits now in force.
pub fn raise_nofile_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we pass; no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim = want;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some((lim.rlim_cur as u64, lim.rlim_max as u64))
}
