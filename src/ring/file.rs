//! Where ring files live and how they are created, validated and mapped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut, MmapOptions};

use super::layout::{self, Header, SLOT_SIZE, VERSION};
use super::RingError;

/// Default directory of huge-page-backed rings.
pub const HUGEPAGE_DIR: &str = "/dev/hugepages/tickring";
/// Default directory of rings when no huge pages are available.
pub const SHM_DIR: &str = "/dev/shm/tickring";
/// The huge page size the ring asks for by default.
pub const DEFAULT_HUGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;
/// Small page size.
pub const SMALL_PAGE_SIZE: u64 = 4096;

const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// Where the writer puts the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Huge pages in [`HUGEPAGE_DIR`] when a hugetlbfs is mounted there with
    /// enough free pages of `page_size`; otherwise [`SHM_DIR`] with a
    /// warning that says why and how to fix it.
    Auto { page_size: u64 },
    /// Huge pages of `page_size` in this hugetlbfs directory, or an error.
    HugePages { dir: PathBuf, page_size: u64 },
    /// Ordinary shared memory (4 KiB pages) in this directory (a tmpfs such
    /// as /dev/shm, normally).
    Shm { dir: PathBuf },
}

impl Default for Backing {
    fn default() -> Self {
        Backing::Auto {
            page_size: DEFAULT_HUGE_PAGE_SIZE,
        }
    }
}

/// The decision [`resolve_backing`] took.
pub(crate) struct Placement {
    pub dir: PathBuf,
    pub page_size: u64,
    pub huge: bool,
    pub warning: Option<String>,
}

/// Validates a ring name: it becomes a file name.
pub fn check_name(name: &str) -> Result<(), RingError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RingError::BadName(name.to_owned()))
    }
}

/// Resolves a ring argument as a user types it: a path to a file, or a
/// bare name looked up in [`HUGEPAGE_DIR`] then [`SHM_DIR`].
pub fn find_ring(arg: &str) -> Result<PathBuf, RingError> {
    if arg.contains('/') {
        return Ok(PathBuf::from(arg));
    }
    check_name(arg)?;
    let file = format!("{arg}.ring");
    let candidates = [
        Path::new(HUGEPAGE_DIR).join(&file),
        Path::new(SHM_DIR).join(&file),
    ];
    for c in &candidates {
        if c.exists() {
            return Ok(c.clone());
        }
    }
    Err(RingError::NotFound {
        name: arg.to_owned(),
        looked_in: candidates.to_vec(),
    })
}

pub(crate) fn file_size_for(capacity: u64, page_size: u64) -> u64 {
    layout::bytes_needed(capacity).div_ceil(page_size) * page_size
}

fn statfs_magic(dir: &Path) -> io::Result<(i64, u64)> {
    let st = nix::sys::statfs::statfs(dir).map_err(io::Error::from)?;
    Ok((st.filesystem_type().0 as i64, st.block_size() as u64))
}

/// Free huge pages of `page_size` bytes, from sysfs.
fn free_huge_pages(page_size: u64) -> Option<u64> {
    let p = format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
        page_size / 1024
    );
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

pub(crate) fn resolve_backing(backing: &Backing, capacity: u64) -> Result<Placement, RingError> {
    match backing {
        Backing::Shm { dir } => Ok(Placement {
            dir: dir.clone(),
            page_size: SMALL_PAGE_SIZE,
            huge: false,
            warning: None,
        }),
        Backing::HugePages { dir, page_size } => {
            check_hugetlbfs(dir, *page_size, capacity).map_err(|why| RingError::HugePages {
                dir: dir.clone(),
                why,
            })?;
            Ok(Placement {
                dir: dir.clone(),
                page_size: *page_size,
                huge: true,
                warning: None,
            })
        }
        Backing::Auto { page_size } => {
            let dir = PathBuf::from(HUGEPAGE_DIR);
            match check_hugetlbfs(&dir, *page_size, capacity) {
                Ok(()) => Ok(Placement {
                    dir,
                    page_size: *page_size,
                    huge: true,
                    warning: None,
                }),
                Err(why) => {
                    let pages = file_size_for(capacity, *page_size) / page_size;
                    Ok(Placement {
                        dir: PathBuf::from(SHM_DIR),
                        page_size: SMALL_PAGE_SIZE,
                        huge: false,
                        warning: Some(format!(
                            "ring on 4 KiB pages in {SHM_DIR}, not huge pages: {why}; to fix, \
                             reserve at least {pages} more {} KiB huge pages \
                             (echo N > /proc/sys/vm/nr_hugepages) and mount hugetlbfs \
                             (mount -t hugetlbfs -o pagesize={}K,gid=<ring group>,mode=1770 none /dev/hugepages)",
                            page_size / 1024,
                            page_size / 1024
                        )),
                    })
                }
            }
        }
    }
}

/// Checks that a hugetlbfs of `page_size` is mounted at `dir` (or its
/// parent, when `dir` does not exist yet) with enough free pages.
fn check_hugetlbfs(dir: &Path, page_size: u64, capacity: u64) -> Result<(), String> {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    };
    let (magic, block) = statfs_magic(probe).map_err(|e| format!("{}: {e}", probe.display()))?;
    if magic != HUGETLBFS_MAGIC {
        return Err(format!("{} is not a hugetlbfs mount", probe.display()));
    }
    if block != page_size {
        return Err(format!(
            "{} has {} KiB pages, {} KiB were asked for",
            probe.display(),
            block / 1024,
            page_size / 1024
        ));
    }
    let need = file_size_for(capacity, page_size) / page_size;
    match free_huge_pages(page_size) {
        Some(free) if free >= need => Ok(()),
        Some(free) => Err(format!(
            "{need} huge pages of {} KiB needed, {free} free",
            page_size / 1024
        )),
        None => Err(format!(
            "no {} KiB huge page pool in /sys/kernel/mm/hugepages",
            page_size / 1024
        )),
    }
}

/// Creates `dir` (and parents) if missing; new directories get mode 0750 so
/// that the writer's group can reach the rings inside.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), RingError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| RingError::io("creating directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o750))
        .map_err(|e| RingError::io("setting mode 0750 on", dir, e))
}

/// Opens (creating if needed) a file with mode 0640.
pub(crate) fn open_rw_0640(path: &Path, create_new: bool) -> Result<File, RingError> {
    let mut oo = OpenOptions::new();
    oo.read(true).write(true).mode(0o640);
    if create_new {
        oo.create_new(true);
    } else {
        oo.create(true);
    }
    let f = oo
        .open(path)
        .map_err(|e| RingError::io("opening", path, e))?;
    // The umask may have narrowed the mode; the group must be able to read.
    f.set_permissions(fs::Permissions::from_mode(0o640))
        .map_err(|e| RingError::io("setting mode 0640 on", path, e))?;
    Ok(f)
}

/// Maps a ring file read-write for the writer, prefaulted.
pub(crate) fn map_rw(file: &File, path: &Path, len: u64) -> Result<MmapMut, RingError> {
    // SAFETY: the mapping is of a ring file, which by protocol is only
    // written through atomics (slots, cursor, writer info) or before it is
    // published (meta, instrument entries below the published count). Rust
    // never sees a `&mut` to bytes another process may write concurrently:
    // all shared accesses go through raw pointers and atomics.
    unsafe {
        MmapOptions::new()
            .len(len as usize)
            .populate()
            .map_mut(file)
    }
    .map_err(|e| RingError::io("mapping", path, e))
}

/// Maps a ring file read-only for a reader, prefaulted.
pub(crate) fn map_ro(file: &File, path: &Path, len: u64) -> Result<Mmap, RingError> {
    // SAFETY: as in `map_rw`; a reader's mapping is PROT_READ, so this
    // process cannot corrupt the ring, and the shared words it reads are
    // read with atomic loads.
    unsafe { MmapOptions::new().len(len as usize).populate().map(file) }
        .map_err(|e| RingError::io("mapping", path, e))
}

/// What the header of a mapped file says, once validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub capacity: u64,
    pub page_size: u64,
    pub file_size: u64,
    pub slots_offset: u64,
}

/// Checks that `base[..len]` holds a ring this build understands.
///
/// # Safety
///
/// `base` must point to at least `len` readable bytes, 128-aligned (a
/// mapping start is page-aligned), which stay mapped during the call.
pub(crate) unsafe fn validate(
    base: *const u8,
    len: u64,
    path: &Path,
) -> Result<Geometry, RingError> {
    let bad = |what: String| RingError::Invalid {
        path: path.to_owned(),
        what,
    };
    if len < layout::MIN_HEADER_LEN {
        return Err(bad(format!(
            "file is too small: {len} bytes, a ring header alone needs {}",
            layout::MIN_HEADER_LEN
        )));
    }
    // SAFETY: `base` is 128-aligned and at least size_of::<Header>() bytes
    // are mapped (checked just above); `Header` is ShmSafe, so any bytes
    // form a valid value.
    let hdr = unsafe { &*(base as *const Header) };
    let m = &hdr.meta;
    if m.magic != layout::MAGIC {
        return Err(bad(format!(
            "not a tickring ring: magic is {:#018x}, expected {:#018x}",
            m.magic,
            layout::MAGIC
        )));
    }
    if m.version != VERSION {
        return Err(bad(format!(
            "unknown layout version {} (this build reads version {VERSION})",
            m.version
        )));
    }
    if m.slot_size != SLOT_SIZE {
        return Err(bad(format!(
            "slot size is {} bytes, this build uses {SLOT_SIZE}",
            m.slot_size
        )));
    }
    if !m.capacity.is_power_of_two() || m.capacity < 2 {
        return Err(bad(format!(
            "capacity {} is not a power of two >= 2",
            m.capacity
        )));
    }
    if m.instruments_offset != layout::INSTRUMENTS_OFFSET
        || m.instrument_capacity != layout::INSTRUMENT_CAPACITY
        || m.slots_offset != layout::slots_offset()
    {
        return Err(bad(format!(
            "header offsets (instruments at {}, {} entries, slots at {}) do not match layout version {VERSION}",
            m.instruments_offset, m.instrument_capacity, m.slots_offset
        )));
    }
    let need = m
        .capacity
        .checked_mul(SLOT_SIZE as u64)
        .and_then(|b| b.checked_add(m.slots_offset))
        .ok_or_else(|| bad(format!("capacity {} overflows the file size", m.capacity)))?;
    if m.file_size != len || need > len {
        return Err(bad(format!(
            "size mismatch: the file is {len} bytes, its header says {} bytes and \
             {} slots of {SLOT_SIZE} bytes need {need}",
            m.file_size, m.capacity
        )));
    }
    Ok(Geometry {
        capacity: m.capacity,
        page_size: m.page_size,
        file_size: m.file_size,
        slots_offset: m.slots_offset,
    })
}
