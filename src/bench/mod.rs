//! Benchmarks behind `tickring bench ...` (and the criterion benches).
//!
//! - [`parse`]: `tickring bench parse`, adapter throughput next to serde_json;
//! - [`hist`]: the calibrated clock, the latency histogram and the result
//!   shape every benchmark prints (shared with `bench parse`, `bench e2e`,
//!   `bench gateway`);
//! - [`ring`]: `tickring bench ring`, the ring's one-way latency, burst
//!   throughput and writer cost, next to the core-to-core floor and to
//!   peer IPC paths ([`peers`]), all timed by one harness (`harness`).

pub mod e2e;
pub mod gateway;
mod harness;
pub mod hist;
pub mod parse;
mod peers;
pub mod ring;

use std::fmt;
use std::io;

/// Pins the calling thread to CPU `core`. Fails (with the reason) when
/// the core does not exist or the kernel refuses (cgroup cpuset, missing
/// permission); callers warn and go on unpinned.
///
/// NB: it does not consult `core_affinity::get_core_ids()`, which lists
/// only the cores of the *current* mask: once the writer thread is pinned
/// to core 0, its children would see nothing but core 0.
pub fn pin_current(core: usize) -> Result<(), String> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(format!(
            "sched_setaffinity to core {core} failed ({}); cpus online: {}",
            io::Error::last_os_error(),
            std::fs::read_to_string("/sys/devices/system/cpu/online")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into())
        ))
    }
}

/// Puts the calling thread in the real-time class `SCHED_RR` at `prio`
/// (1-99), so that ordinary processes on the same core cannot preempt it.
/// Threads of equal priority on one core take turns (round robin), which
/// is why RR and not FIFO: several readers may share the reader core. The
/// kernel's RT throttling (`sched_rt_runtime_us`, 95% by default) still
/// leaves the rest of the machine a share of the core.
pub fn set_realtime(prio: i32) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sched_setscheduler on pid 0 (the calling thread) with a
    // valid, initialized sched_param; it only changes scheduling state.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "SCHED_RR priority {prio}: {} (needs CAP_SYS_NICE or an RLIMIT_RTPRIO)",
            io::Error::last_os_error()
        ))
    }
}

/// Where and how one benchmark thread runs: pinned to a core, optionally
/// real-time. Child processes receive it in their spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub core: Option<usize>,
    pub rt_prio: Option<i32>,
}

impl Placement {
    /// Applies it to the calling thread; returns what could not be done.
    pub fn apply(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if let Some(c) = self.core {
            if let Err(e) = pin_current(c) {
                failed.push(format!("not pinned: {e}"));
            }
        }
        if let Some(p) = self.rt_prio {
            if let Err(e) = set_realtime(p) {
                failed.push(format!("not real-time: {e}"));
            }
        }
        failed
    }
}

/// Why a benchmark could not run at all. (A single path that fails is
/// reported as skipped in the results instead.)
#[derive(Debug)]
pub enum BenchError {
    /// A system call failed: `doing` what.
    Io { doing: String, source: io::Error },
    /// The ring could not be created or opened.
    Ring(crate::ring::RingError),
    /// A child process of the benchmark misbehaved.
    Child(String),
    /// Bad options: what is wrong.
    Config(String),
}

impl BenchError {
    pub(crate) fn io(doing: impl Into<String>, source: io::Error) -> BenchError {
        BenchError::Io {
            doing: doing.into(),
            source,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Io { doing, source } => write!(f, "{doing}: {source}"),
            BenchError::Ring(e) => write!(f, "{e}"),
            BenchError::Child(s) => write!(f, "benchmark child process: {s}"),
            BenchError::Config(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Io { source, .. } => Some(source),
            BenchError::Ring(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::ring::RingError> for BenchError {
    fn from(e: crate::ring::RingError) -> Self {
        BenchError::Ring(e)
    }
}
