//! `tickring collect`: one exchange feed into one ring, on one pinned core.
//!
//! ```text
//!  hot thread (pinned, optionally SCHED_FIFO)          housekeeping thread (other cores)
//!  ─────────────────────────────────────────          ──────────────────────────────────
//!  net::EventLoop (one io_uring)                       ring heartbeat every 100 ms
//!    └ Hot: net::Handler                               sd_notify READY=1 / WATCHDOG=1
//!        frame ─▶ book::Pipeline ─▶ Out (feed::Sink)   /health /ready /metrics (http.rs)
//!                  ├ events ─▶ ring::Writer
//!                  └ books  ─▶ ring::books::BookWriter
//! ```
//!
//! The two threads share only [`Shared`]: counters written by one side and
//! read by the other, and the stop flag set by SIGTERM/SIGINT.

mod hot;
pub mod http;
pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{info, warn};

use crate::config::FeedSettings;
use crate::ring::books::BookWriter;
use crate::ring::{HeartbeatHandle, Writer, WriterOptions};
use metrics::{conn_state, get, set, Metrics};

/// Set by SIGTERM/SIGINT; the hot loop checks it on every tick.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, StdOrdering::Relaxed);
}

/// State shared by the hot and housekeeping threads.
pub struct Shared {
    pub settings: FeedSettings,
    pub metrics: Metrics,
    pub heartbeat: HeartbeatHandle,
    /// io_uring features in use, set once the loop exists.
    pub features: OnceLock<Vec<(&'static str, bool)>>,
    /// Set by the housekeeping thread from `Metrics::progress`: monotonic
    /// ns when the hot loop was last seen moving.
    pub last_progress_mono_ns: std::sync::atomic::AtomicI64,
}

impl http::Endpoint for Shared {
    fn ready(&self) -> (bool, String) {
        let m = &self.metrics;
        let st = get(&m.connection_state);
        if st != conn_state::SUBSCRIBED {
            return (
                false,
                format!("connection {}", conn_state::NAMES[st as usize]),
            );
        }
        let (books, valid) = (get(&m.books), get(&m.books_valid));
        if valid < books {
            return (false, format!("{valid} of {books} books valid"));
        }
        let now = crate::time::monotonic_ns();
        let stalled = now - self.last_progress_mono_ns.load(StdOrdering::Relaxed);
        if stalled > 2_000_000_000 {
            return (
                false,
                format!("hot loop stalled for {:.1} s", stalled as f64 / 1e9),
            );
        }
        let last = get(&m.last_message_mono_ns) as i64;
        if now - last > self.settings.silence_timeout.as_nanos() as i64 {
            return (
                false,
                "no message from the exchange within the silence timeout".into(),
            );
        }
        (true, String::new())
    }

    fn metrics(&self) -> String {
        let features = self.features.get().map(Vec::as_slice).unwrap_or(&[]);
        let (ready, _) = self.ready();
        self.metrics.render(
            &self.settings.ring_name,
            self.settings.exchange.name(),
            features,
            ready,
        )
    }
}

/// Options of `tickring collect` beyond the config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print the bound metrics address on stdout once listening (tests, demo).
    pub announce: bool,
}

/// Runs the collector until SIGTERM/SIGINT. Returns once the ring's writer
/// is marked stopped.
pub fn run(settings: FeedSettings, opts: RunOptions) -> anyhow::Result<()> {
    install_signal_handlers()?;
    // Pages are placed on the NUMA node of the CPU that first touches them,
    // and the writer prefaults the whole ring: do that from the hot core, so
    // the ring and book region sit on its node. The affinity goes back
    // before the other threads are spawned (they must not inherit it).
    let first_touch = FirstTouch::on_hot_core(settings.cpu.core);
    let wopts = WriterOptions {
        backing: settings.backing.clone(),
        capacity: settings.ring_capacity,
        lock_memory: settings.lock_memory,
    };
    let mut writer = Writer::create(&settings.ring_name, &wopts)
        .with_context(|| format!("opening ring {:?}", settings.ring_name))?;
    for w in writer.warnings() {
        warn!("{w}");
    }
    let mut ring_ids = Vec::with_capacity(settings.instruments.len());
    for inst in &settings.instruments {
        ring_ids.push(writer.register_instrument(inst)?);
    }
    let max_id = ring_ids.iter().copied().max().unwrap_or(0) as u32;
    let book_slots = crate::ring::books::entries_for(max_id + 1);
    let books = BookWriter::create(writer.path(), book_slots, settings.book_depth as u32)
        .with_context(|| {
            format!(
                "creating the book region beside {}",
                writer.path().display()
            )
        })?;
    drop(first_touch);
    info!(
        ring = %writer.path().display(),
        epoch = writer.epoch(),
        huge_pages = writer.huge_pages(),
        capacity = writer.capacity(),
        books = %books.path().display(),
        "ring open"
    );
    let memory_locked = settings.lock_memory
        && !writer
            .warnings()
            .iter()
            .any(|w| w.contains("could not lock"));
    let shared = Arc::new(Shared {
        metrics: Metrics::default(),
        heartbeat: writer.heartbeat_handle(),
        features: OnceLock::new(),
        last_progress_mono_ns: std::sync::atomic::AtomicI64::new(crate::time::monotonic_ns()),
        settings,
    });
    set(&shared.metrics.huge_pages, writer.huge_pages() as u64);
    set(&shared.metrics.memory_locked, memory_locked as u64);

    let hk_stop = Arc::new(AtomicBool::new(false));
    let http = match shared.settings.metrics_listen {
        Some(addr) => {
            let (local, h) = http::spawn(addr, shared.clone(), hk_stop.clone())
                .with_context(|| format!("listening for metrics on {addr}"))?;
            info!(%local, "metrics endpoint: /health /ready /metrics");
            if opts.announce {
                println!("metrics http://{local}");
            }
            Some(h)
        }
        None => None,
    };
    let hk = {
        let shared = shared.clone();
        let stop = hk_stop.clone();
        std::thread::Builder::new()
            .name("tickring-hk".into())
            .spawn(move || housekeeping(&shared, &stop))?
    };

    // The hot thread is this one: pin it after spawning the others so they
    // do not inherit its affinity.
    let pinned = pin_hot_thread(&shared.settings);
    set(&shared.metrics.pinned, pinned as u64);
    let result = hot::run(shared.clone(), writer, books, ring_ids);

    hk_stop.store(true, StdOrdering::Relaxed);
    let _ = hk.join();
    if let Some(h) = http {
        let _ = h.join();
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    result
}

fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only performs an atomic store, which is
        // async-signal-safe; no other handler is replaced that Rust relies on.
        unsafe { sigaction(sig, &act) }.with_context(|| format!("installing the {sig} handler"))?;
    }
    Ok(())
}

/// Pins the calling thread to the configured core and applies SCHED_FIFO;
/// failures are warnings (an unprivileged demo must still run).
/// The calling thread pinned to the hot core until dropped, then given its
/// previous affinity back. Best effort: if either step fails the thread
/// simply stays where it was (the hot thread is pinned later anyway).
struct FirstTouch(Option<nix::sched::CpuSet>);

impl FirstTouch {
    fn on_hot_core(core: Option<usize>) -> FirstTouch {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let Some(core) = core else {
            return FirstTouch(None);
        };
        let Ok(before) = sched_getaffinity(Pid::from_raw(0)) else {
            return FirstTouch(None);
        };
        let mut hot = CpuSet::new();
        if hot.set(core).is_err() || sched_setaffinity(Pid::from_raw(0), &hot).is_err() {
            return FirstTouch(None);
        }
        FirstTouch(Some(before))
    }
}

impl Drop for FirstTouch {
    fn drop(&mut self) {
        if let Some(before) = self.0.take() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &before);
        }
    }
}

fn pin_hot_thread(s: &FeedSettings) -> bool {
    let mut pinned = false;
    if let Some(core) = s.cpu.core {
        if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            info!(core, "hot thread pinned");
            pinned = true;
        } else {
            warn!(
                core,
                "could not pin the hot thread (cgroup cpuset or permissions?); running unpinned"
            );
        }
    }
    if let Some(prio) = s.cpu.sched_fifo_priority {
        let param = libc::sched_param {
            sched_priority: prio,
        };
        // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
        // valid, initialized sched_param.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if r == 0 {
            info!(priority = prio, "hot thread runs SCHED_FIFO");
        } else {
            warn!(
                priority = prio,
                error = %std::io::Error::last_os_error(),
                "could not set SCHED_FIFO (needs CAP_SYS_NICE and kernel.sched_rt_runtime_us); running SCHED_OTHER"
            );
        }
    }
    pinned
}

/// Heartbeat, systemd readiness and watchdog, progress tracking.
fn housekeeping(shared: &Shared, stop: &AtomicBool) {
    if let Some(core) = shared.settings.cpu.housekeeping_core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            warn!(core, "could not pin the housekeeping thread");
        }
    }
    let watchdog = {
        let mut usec = 0u64;
        if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
            Some(Duration::from_micros(usec / 2))
        } else {
            None
        }
    };
    let mut told_ready = false;
    let mut last_progress = u64::MAX;
    let mut last_wd = Instant::now();
    while !stop.load(StdOrdering::Relaxed) {
        shared.heartbeat.beat();
        let p = get(&shared.metrics.progress);
        let now = crate::time::monotonic_ns();
        let moved = p != last_progress;
        if moved {
            last_progress = p;
            shared
                .last_progress_mono_ns
                .store(now, StdOrdering::Relaxed);
        }
        let (ready, _) = http::Endpoint::ready(shared);
        if ready && !told_ready {
            told_ready = true;
            info!("ready: subscribed and every book valid");
            let _ = sd_notify::notify(
                false,
                &[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status("subscribed, books valid"),
                ],
            );
        }
        if let Some(every) = watchdog {
            // Only ping while the hot loop makes progress: a wedged loop
            // gets the service restarted by systemd.
            let stalled = now - shared.last_progress_mono_ns.load(StdOrdering::Relaxed);
            if last_wd.elapsed() >= every && stalled < every.as_nanos() as i64 {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                last_wd = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a stop was requested by a signal.
pub(crate) fn stop_requested() -> bool {
    STOP.load(StdOrdering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::FirstTouch;
    use nix::sched::sched_getaffinity;
    use nix::unistd::Pid;

    fn cpus() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect()
    }

    #[test]
    fn first_touch_pins_to_the_hot_core_and_gives_the_affinity_back() {
        let before = cpus();
        let core = *before.last().expect("some cpu allowed");
        {
            let _g = FirstTouch::on_hot_core(Some(core));
            assert_eq!(cpus(), vec![core]);
        }
        assert_eq!(cpus(), before);
        // No core configured: nothing changes.
        let _g = FirstTouch::on_hot_core(None);
        assert_eq!(cpus(), before);
    }
}
