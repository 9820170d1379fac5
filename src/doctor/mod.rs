//! `tickring doctor`: checks a host against what its configured collectors
//! need, and says how to fix what is missing.
//!
//! Everything is read through a root directory ([`Options::root`], `/` on
//! the running system), so the same code checks the live host, a mounted
//! image, or the fake `/proc` + `/sys` + `/etc` trees the tests build. What
//! is *wanted* comes from the feed configs (`<config-dir>/feeds/*.toml`, the
//! same parse as `tickring validate` minus the checks that look at the
//! machine the doctor runs on): the collectors' hot, housekeeping and SQPOLL
//! cores, whether a feed asks for SCHED_FIFO, the ring directory and page
//! size, and the bytes of every ring and book region.
//!
//! # Severity
//!
//! A check **fails** when the collector cannot run as configured, or runs
//! without something its config explicitly demands:
//! - io_uring disabled (`kernel.io_uring_disabled = 2`, or `1` with no
//!   `kernel.io_uring_group`): the collector cannot create its ring;
//! - two collectors (or a collector and an SQPOLL thread) spinning on one
//!   core, or a configured core that is not online;
//! - two feeds writing one ring (the second cannot take the writer lock) or
//!   listening on one metrics address (the second cannot bind);
//! - `backing = "hugepages"` with no hugetlbfs of that page size at the ring
//!   directory, or too few free huge pages: the writer refuses to start;
//! - `lock_memory = true` (the default) and neither a memlock limit that
//!   covers the ring nor CAP_IPC_LOCK.
//!
//! A check **warns** on what costs latency but leaves the collector working:
//! huge pages missing with `backing = "auto"` (the ring falls back to
//! 4 KiB pages in /dev/shm), THP `always`, a governor other than
//! `performance`, hot cores not in `isolcpus` / `nohz_full` / `rcu_nocbs`, irqbalance free
//! to route interrupts onto hot cores, RT throttling while a feed asks for
//! SCHED_FIFO (the hot loop blocks in `io_uring_enter`, so throttling bites
//! only under load, but then it stalls it; a `busy_poll` loop never blocks
//! and is stalled every period), a clocksource that is not the
//! TSC (every timestamp may become a system call), a hot core on another
//! NUMA node than the NIC or short of huge pages on its own node, device
//! interrupts whose effective affinity includes a hot core, and a feed
//! without `[cpu] core`. A file that
//! exists but cannot be parsed is a warning naming the file: the doctor
//! cannot tell, so it does not claim a pass.
//!
//! A check is **skipped**, with the reason in `seen`, when it does not apply
//! (no cpufreq on a VM, a kernel without `io_uring_disabled`, no feed asking
//! for SCHED_FIFO, the NIC's NUMA node unknown); nothing is left out
//! silently. With no feed configs the doctor says so (a warning) and still
//! runs the host-wide checks.

mod checks;
pub mod feeds;
pub mod host;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use feeds::Feed;
pub use host::{parse_cpulist, parse_cpumask, CpuSet, Host, HostError};

/// Where to look.
#[derive(Clone, Debug)]
pub struct Options {
    /// Root of the host's file systems: `/proc`, `/sys`, `/etc`, `/dev` are
    /// read under it.
    pub root: PathBuf,
    /// The directory holding `feeds/*.toml` (used as given, not under
    /// `root`).
    pub config_dir: PathBuf,
}

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `hugepages.reserved`.
    pub name: String,
    pub status: Status,
    /// What the host has (or why the check does not apply).
    pub seen: String,
    /// What the configured collectors need.
    pub wanted: String,
    /// How to fix it; `None` when there is nothing to fix.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, seen: String, wanted: String) -> Check {
        Check {
            name: name.to_owned(),
            status,
            seen,
            wanted,
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        if self.status != Status::Pass && self.status != Status::Skip {
            self.fix = Some(fix.into());
        }
        self
    }
}

/// Counts per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// The whole report: `{"checks": [...], "summary": {...}}` in JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub summary: Summary,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
                Status::Skip => summary.skip += 1,
            }
        }
        Report { checks, summary }
    }

    /// True when any check failed.
    pub fn failed(&self) -> bool {
        self.summary.fail > 0
    }

    /// The check of that name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Why the doctor could not run at all (exit 2): the config, not the host.
#[derive(Debug)]
pub enum DoctorError {
    /// A feed config is invalid: file, key, problem.
    Config(crate::config::ConfigError),
    /// The root directory to read the host under does not exist.
    Root(PathBuf),
    /// The config directory exists but cannot be listed.
    ConfigDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for DoctorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoctorError::Config(e) => write!(f, "{e}"),
            DoctorError::Root(root) => write!(f, "{}: no such directory (--root)", root.display()),
            DoctorError::ConfigDir { dir, source } => {
                write!(f, "{}: cannot list: {source}", dir.display())
            }
        }
    }
}

impl std::error::Error for DoctorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DoctorError::Config(e) => Some(e),
            DoctorError::Root(_) => None,
            DoctorError::ConfigDir { source, .. } => Some(source),
        }
    }
}

/// Loads the feed configs and runs every check.
pub fn run(opts: &Options) -> Result<Report, DoctorError> {
    if !opts.root.is_dir() {
        return Err(DoctorError::Root(opts.root.clone()));
    }
    let feeds_dir = opts.config_dir.join("feeds");
    let feeds = feeds::load_feeds(&feeds_dir)?;
    let host = Host::new(&opts.root);
    Ok(Report::new(checks::run_all(&host, &feeds_dir, feeds)))
}
