//! The shared-memory broadcast ring: one writer process, any number of
//! reader processes, no syscall and no copy through the kernel on either
//! side.
//!
//! - [`Writer::create`] places a ring file on huge pages (or `/dev/shm`),
//!   and publishes [`Event`]s with [`Writer::publish`]; it never waits and
//!   never looks at readers.
//! - [`Reader::open`] maps the file read-only and [`Reader::poll`]s it; each
//!   poll says one of: an event, nothing new, an overrun with the exact
//!   number of events lost, a writer restart, or a writer that is gone.
//!
//! The protocol and its memory orderings are in [`protocol`]; the byte
//! layout in [`layout`].

#[cfg(not(tickring_loom))]
pub mod books;
#[cfg(not(tickring_loom))]
mod file;
#[cfg(not(tickring_loom))]
pub mod layout;
pub(crate) mod protocol;

#[cfg(not(tickring_loom))]
mod handle;

#[cfg(not(tickring_loom))]
pub use file::{
    check_name, find_ring, Backing, DEFAULT_HUGE_PAGE_SIZE, HUGEPAGE_DIR, SHM_DIR, SMALL_PAGE_SIZE,
};
#[cfg(not(tickring_loom))]
pub use handle::*;

use std::io;
use std::path::{Path, PathBuf};

#[allow(unused_imports)]
use crate::event::Event;

/// Errors of opening or creating a ring. Each names the file involved.
#[derive(Debug)]
pub enum RingError {
    /// A system call failed: `doing` what, on which path.
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is not a ring this build can read: `what` says why.
    Invalid { path: PathBuf, what: String },
    /// A ring name that cannot be a file name.
    BadName(String),
    /// Capacity must be a power of two, at least 2.
    BadCapacity(u64),
    /// Huge pages were required and are not usable.
    HugePages { dir: PathBuf, why: String },
    /// Another live process is the writer of this ring.
    Busy { path: PathBuf, pid: Option<u32> },
    /// A bare ring name that is in none of the default directories.
    NotFound {
        name: String,
        looked_in: Vec<PathBuf>,
    },
    /// The instrument table is full or the instrument conflicts with one
    /// already registered under the same name.
    Instrument(String),
}

impl RingError {
    pub(crate) fn io(doing: &'static str, path: &Path, source: io::Error) -> RingError {
        RingError::Io {
            doing,
            path: path.to_owned(),
            source,
        }
    }
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Io { doing, path, source } => {
                write!(f, "{doing} {}: {source}", path.display())
            }
            RingError::Invalid { path, what } => write!(f, "{}: {what}", path.display()),
            RingError::BadName(n) => write!(
                f,
                "invalid ring name {n:?}: use 1-64 characters from A-Z a-z 0-9 - _ . (not starting with .)"
            ),
            RingError::BadCapacity(c) => {
                write!(f, "ring capacity {c} is not a power of two >= 2")
            }
            RingError::HugePages { dir, why } => {
                write!(f, "huge pages unusable in {}: {why}", dir.display())
            }
            RingError::Busy { path, pid } => match pid {
                Some(pid) => write!(f, "{} is already being written by pid {pid}", path.display()),
                None => write!(f, "{} is already being written by another process", path.display()),
            },
            RingError::NotFound { name, looked_in } => {
                write!(f, "no ring named {name:?} (looked for ")?;
                for (i, p) in looked_in.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{}", p.display())?;
                }
                f.write_str(")")
            }
            RingError::Instrument(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RingError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
