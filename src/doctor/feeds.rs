//! What the configured collectors need from the host, derived from the feed
//! configs in `<config-dir>/feeds/*.toml`.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, FeedFileConfig};
use crate::ring::{books, layout};
use crate::ring::{Backing, HUGEPAGE_DIR};

use super::DoctorError;

/// One collector as the doctor sees it.
#[derive(Clone, Debug)]
pub struct Feed {
    /// The systemd instance name: the file's stem (`kraken` for `kraken.toml`).
    pub name: String,
    pub file: PathBuf,
    pub ring_name: String,
    pub capacity: u64,
    pub backing: Backing,
    pub lock_memory: bool,
    /// `[cpu] core`: the hot loop's core.
    pub core: Option<usize>,
    pub housekeeping_core: Option<usize>,
    pub sched_fifo_priority: Option<i32>,
    /// `[io_uring] sqpoll_core` when SQPOLL is on: a kernel thread spins there.
    pub sqpoll_core: Option<usize>,
    pub sqpoll: bool,
    /// `[io_uring] busy_poll`: the hot loop never sleeps.
    pub busy_poll: bool,
    pub book_depth: u32,
    pub instruments: usize,
    /// `[metrics] listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Feed {
    /// Where the ring will live and with which page size, when huge pages
    /// are wanted: `(directory, page size, required)`. `required` is false
    /// for `auto` (the collector falls back to /dev/shm).
    pub fn huge_placement(&self) -> Option<(PathBuf, u64, bool)> {
        match &self.backing {
            Backing::Auto { page_size } => Some((PathBuf::from(HUGEPAGE_DIR), *page_size, false)),
            Backing::HugePages { dir, page_size } => Some((dir.clone(), *page_size, true)),
            Backing::Shm { .. } => None,
        }
    }

    /// The directory the ring file goes to (for `auto`: the huge page one;
    /// its fallback is /dev/shm/tickring).
    pub fn ring_dir(&self) -> PathBuf {
        match &self.backing {
            Backing::Auto { .. } => PathBuf::from(HUGEPAGE_DIR),
            Backing::HugePages { dir, .. } | Backing::Shm { dir } => dir.clone(),
        }
    }

    /// Bytes of the ring file on pages of `page` bytes (what the writer
    /// sizes it to, and what it `mlock`s).
    pub fn ring_bytes(&self, page: u64) -> u64 {
        round_up(layout::bytes_needed(self.capacity), page)
    }

    /// Bytes of the book region beside the ring (`ring::books`): one entry
    /// per instrument id, rounded to 64 ids, entries of `depth` levels.
    pub fn books_bytes(&self, page: u64) -> u64 {
        books_bytes(self.instruments, self.book_depth, page)
    }
}

/// What `ring::books::BookWriter::create` sizes the region to, with the
/// collector's number of entries; a unit test creates a real region.
pub(crate) fn books_bytes(instruments: usize, depth: u32, page: u64) -> u64 {
    // Instrument ids are u16: the count always fits.
    let entries = books::entries_for(instruments.min(u16::MAX as usize + 1) as u32);
    round_up(books::region_bytes(entries, depth), page)
}

pub(crate) fn round_up(bytes: u64, page: u64) -> u64 {
    bytes.div_ceil(page.max(1)) * page.max(1)
}

/// Loads every `*.toml` in `dir`, sorted by name. `Ok(None)` when the
/// directory does not exist.
pub fn load_feeds(dir: &Path) -> Result<Option<Vec<Feed>>, DoctorError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DoctorError::ConfigDir {
                dir: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DoctorError::ConfigDir {
            dir: dir.to_owned(),
            source,
        })?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    let mut feeds = Vec::new();
    for f in files {
        feeds.push(load_feed(&f).map_err(DoctorError::Config)?);
    }
    Ok(Some(feeds))
}

/// Keys whose check in `FeedFileConfig` looks at the machine the doctor
/// runs on (CPU count, a CA file's presence) rather than at the checked
/// host; the doctor checks cores against the root's sysfs itself.
const HOST_DEPENDENT: &[(&str, &str)] = &[
    ("", "tls_ca_file"),
    ("cpu", "core"),
    ("cpu", "housekeeping_core"),
    ("io_uring", "sqpoll_core"),
];

/// Reads a feed config: the same parse (unknown keys refused, every value
/// checked) as `tickring validate`, minus the host-dependent checks.
pub fn load_feed(path: &Path) -> Result<Feed, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        problem: format!("cannot read: {e}"),
    })?;
    let raw: FeedFileConfig = match toml::from_str(&text) {
        Ok(raw) => raw,
        // The same failure again, through the parser that names the key.
        Err(e) => {
            return Err(FeedFileConfig::parse(path, &text)
                .err()
                .unwrap_or_else(|| ConfigError {
                    file: path.to_owned(),
                    key: String::new(),
                    problem: e.message().to_owned(),
                }))
        }
    };
    let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        problem: e.message().to_owned(),
    })?;
    for (table, key) in HOST_DEPENDENT {
        if table.is_empty() {
            value.remove(*key);
        } else if let Some(toml::Value::Table(t)) = value.get_mut(*table) {
            t.remove(*key);
        }
    }
    let scrubbed = toml::to_string(&value).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        problem: format!("cannot re-serialise for checking: {e}"),
    })?;
    let s = FeedFileConfig::parse(path, &scrubbed)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Feed {
        name,
        file: path.to_owned(),
        ring_name: s.ring_name,
        capacity: s.ring_capacity,
        backing: s.backing,
        lock_memory: s.lock_memory,
        core: raw.cpu.core,
        housekeeping_core: raw.cpu.housekeeping_core,
        sched_fifo_priority: raw.cpu.sched_fifo_priority,
        sqpoll: raw.io_uring.sqpoll,
        busy_poll: raw.io_uring.busy_poll,
        sqpoll_core: raw
            .io_uring
            .sqpoll_core
            .filter(|_| raw.io_uring.sqpoll)
            .map(|c| c as usize),
        book_depth: s.book_depth as u32,
        instruments: s.instruments.len(),
        metrics_listen: s.metrics_listen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::books::BookWriter;
    use crate::ring::{Writer, WriterOptions};

    #[test]
    fn size_formulas_match_the_files_the_writers_create() {
        let dir =
            std::env::temp_dir().join(format!("tickring-doctor-sizes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let block = nix::sys::statfs::statfs(&dir).unwrap().block_size() as u64;
        let page = block.max(4096);
        let opts = WriterOptions {
            backing: Backing::Shm { dir: dir.clone() },
            capacity: 1024,
            lock_memory: false,
        };
        let w = Writer::create("sizes", &opts).unwrap();
        let ring_len = std::fs::metadata(w.path()).unwrap().len();
        assert_eq!(
            ring_len,
            round_up(layout::bytes_needed(1024), crate::ring::SMALL_PAGE_SIZE)
        );
        for (n, depth) in [(2usize, 10u32), (70, 100)] {
            let slots = (n as u32).div_ceil(64) * 64;
            let b = BookWriter::create(w.path(), slots, depth).unwrap();
            let len = std::fs::metadata(b.path()).unwrap().len();
            assert_eq!(
                len,
                books_bytes(n, depth, page),
                "{n} instruments, depth {depth}"
            );
        }
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_dependent_keys_do_not_refuse_a_config() {
        let dir = std::env::temp_dir().join(format!("tickring-doctor-feed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("big.toml");
        std::fs::write(
            &f,
            "exchange = \"kraken\"\nsymbols = [\"BTC/USD\"]\ntls_ca_file = \"/nonexistent.pem\"\n\
             [ring]\nname = \"big\"\n[cpu]\ncore = 60\nhousekeeping_core = 61\n",
        )
        .unwrap();
        let feed = load_feed(&f).unwrap();
        assert_eq!((feed.core, feed.housekeeping_core), (Some(60), Some(61)));
        assert_eq!(feed.name, "big");
        std::fs::write(&f, "exchange = \"kraken\"\nsymbols = [\"BTC/USD\"]\n[ring]\nname = \"big\"\ncapacity = 1000\n").unwrap();
        let e = load_feed(&f).unwrap_err();
        assert_eq!(e.key, "ring.capacity");
        std::fs::write(&f, "exchange = \"kraken\"\nsymbols = [\"BTC/USD\"]\n[ring]\nname = \"big\"\n[cpu]\ncores = 3\n").unwrap();
        let e = load_feed(&f).unwrap_err();
        assert!(e.problem.contains("cores"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
