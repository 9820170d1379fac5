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
