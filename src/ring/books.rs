//! Per-instrument order-book snapshots in a second shared region, so a
//! reader that joins late gets a consistent book without a round trip.
//!
//! The file `<name>.books` sits beside `<name>.ring`. Each instrument id of
//! the ring has one fixed-size entry holding the top `depth` levels of each
//! side and the ring sequence the snapshot reflects: a reader that copies a
//! snapshot with `ring_seq = R` and then applies the ring's book events with
//! `ring_seq >= R` has the exact book.
//!
//! Each entry is a seqlock with the same edges as the ring's slots
//! (see [`super::protocol`]):
//!
//! - **B1** `BookWriter::publish`: `stamp.store(odd, Relaxed)`, then
//!   `fence(Release)`, then the words (Relaxed). Pairs with the
//!   `fence(Acquire)` in `BookReader::read` before its re-check.
//! - **B2** `BookWriter::publish`: `stamp.store(even, Release)` after the
//!   words. Pairs with the `stamp.load(Acquire)` at the start of
//!   `BookReader::read`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use memmap2::{Mmap, MmapMut};

use super::file;
use super::RingError;
use crate::shm::ShmSafe;
use crate::sync::{fence, AtomicU64, Ordering};

/// `b"TICKBOOK"` as a little-endian u64.
pub const BOOKS_MAGIC: u64 = u64::from_le_bytes(*b"TICKBOOK");
pub const BOOKS_VERSION: u32 = 1;
/// Largest depth a snapshot region supports.
pub const MAX_DEPTH: u32 = 1000;

/// Header of a book region (offset 0, 128 bytes).
#[repr(C, align(128))]
struct BooksHeader {
    magic: u64,
    version: u32,
    /// Levels kept per side.
    depth: u32,
    /// Instrument entries.
    capacity: u32,
    _reserved0: u32,
    /// Bytes per entry (a multiple of 64).
    entry_size: u64,
    file_size: u64,
}

// SAFETY: repr(C), integers only, explicit reserved field; every bit pattern
// is valid; no pointers, no Drop. Written once before the file is renamed
// into place, read-only afterwards.
unsafe impl ShmSafe for BooksHeader {}

const HEADER_SIZE: u64 = 128;
/// Words before the levels in an entry: stamp, ring_seq, exch_seq, ts,
/// flags, bid count, ask count, reserved.
const ENTRY_META_WORDS: u64 = 8;

fn entry_size(depth: u32) -> u64 {
    ((ENTRY_META_WORDS + 4 * depth as u64) * 8).div_ceil(64) * 64
}

/// Instrument entries a writer with `instruments` instruments (ids from 0)
/// gives its region: rounded up to 64, so ids registered later fit.
pub fn entries_for(instruments: u32) -> u32 {
    instruments.max(1).div_ceil(64) * 64
}

/// Bytes of a region of `capacity` entries of `depth` levels, before
/// rounding to whole pages of the file system it lives on.
pub fn region_bytes(capacity: u32, depth: u32) -> u64 {
    HEADER_SIZE + capacity as u64 * entry_size(depth)
}

/// What a snapshot reflects, besides its levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Ring sequence of the first event *not* reflected (the ring's next
    /// sequence when the snapshot was taken).
    pub ring_seq: u64,
    /// The exchange's sequence of the last applied update (0 when none).
    pub exch_seq: u64,
    /// When the snapshot was taken, ns since the Unix epoch.
    pub ts: i64,
    /// Whether the book was valid (synced, checksums passing).
    pub valid: bool,
}

/// A consistent copy of one instrument's book.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookSnapshot {
    /// The ring sequence the snapshot reflects: every book event with a
    /// lower ring sequence is included, none with this or a higher one.
    pub ring_seq: u64,
    /// The exchange's sequence of the last applied update (0 when none).
    pub exch_seq: u64,
    /// When the snapshot was taken, ns since the Unix epoch.
    pub ts: i64,
    /// Whether the book was valid (synced, checksums passing) at that time.
    pub valid: bool,
    /// Best first: (price, qty) at the instrument's scales.
    pub bids: Vec<(i64, i64)>,
    /// Best first.
    pub asks: Vec<(i64, i64)>,
}

/// Path of the book region that belongs to a ring file.
pub fn books_path(ring_path: &Path) -> PathBuf {
    ring_path.with_extension("books")
}

/// Address of one entry's words.
struct Entries {
    base: NonNull<u8>,
    capacity: u32,
    depth: u32,
    entry_size: u64,
}

impl Entries {
    fn words(&self, id: u16) -> Option<&[AtomicU64]> {
        if id as u32 >= self.capacity {
            return None;
        }
        let n = (self.entry_size / 8) as usize;
        // SAFETY: `id < capacity`, and the file (validated or just created)
        // holds HEADER_SIZE + capacity * entry_size bytes; entries are
        // 64-aligned (HEADER_SIZE and entry_size are multiples of 64) and
        // consist of AtomicU64 words, valid for any bit pattern. The owner
        // keeps the mapping alive while `self` is used.
        unsafe {
            let p = self
                .base
                .as_ptr()
                .add((HEADER_SIZE + id as u64 * self.entry_size) as usize)
                .cast::<AtomicU64>();
            Some(std::slice::from_raw_parts(p, n))
        }
    }
}

/// The collector's side: publishes snapshots.
pub struct BookWriter {
    _map: MmapMut,
    entries: Entries,
    path: PathBuf,
}

// SAFETY: the pointer in `entries` points into `_map`, owned and moved
// together with it.
unsafe impl Send for BookWriter {}

impl BookWriter {
    /// Creates (or recreates) the book region beside `ring_path` for
    /// `capacity` instruments and `depth` levels per side. Snapshots do not
    /// survive a writer restart: the collector republishes them once its
    /// books are synced.
    pub fn create(ring_path: &Path, capacity: u32, depth: u32) -> Result<BookWriter, RingError> {
        if depth == 0 || depth > MAX_DEPTH {
            return Err(RingError::Invalid {
                path: books_path(ring_path),
                what: format!("book depth {depth} is not in 1..={MAX_DEPTH}"),
            });
        }
        let path = books_path(ring_path);
        let esize = entry_size(depth);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let f = file::open_rw_0640(&tmp, true)?;
        // Whole pages of the file system the region lives on: beside a ring
        // on hugetlbfs (whose block size is the huge page size), ftruncate
        // refuses any other length with EINVAL.
        let page = nix::sys::statfs::fstatfs(&f)
            .map(|st| st.block_size() as u64)
            .unwrap_or(4096)
            .max(4096);
        let size = region_bytes(capacity, depth).div_ceil(page) * page;
        f.set_len(size)
            .map_err(|e| RingError::io("sizing", &tmp, e))?;
        let mut map = file::map_rw(&f, &tmp, size)?;
        let hdr = BooksHeader {
            magic: BOOKS_MAGIC,
            version: BOOKS_VERSION,
            depth,
            capacity,
            _reserved0: 0,
            entry_size: esize,
            file_size: size,
        };
        // SAFETY: the mapping is >= 4096 bytes and page-aligned; the file has
        // a temporary name, so nobody else maps it yet.
        unsafe { (map.as_mut_ptr() as *mut BooksHeader).write(hdr) };
        std::fs::rename(&tmp, &path).map_err(|e| RingError::io("renaming into place", &tmp, e))?;
        let entries = Entries {
            base: NonNull::new(map.as_mut_ptr()).expect("mapping is non-null"),
            capacity,
            depth,
            entry_size: esize,
        };
        Ok(BookWriter {
            _map: map,
            entries,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn depth(&self) -> u32 {
        self.entries.depth
    }

    /// Publishes instrument `id`'s top of book (levels best first). Levels
    /// beyond the region's depth are ignored. Returns false when `id` is
    /// beyond the region.
    pub fn publish(
        &mut self,
        id: u16,
        meta: SnapshotMeta,
        bids: impl IntoIterator<Item = (i64, i64)>,
        asks: impl IntoIterator<Item = (i64, i64)>,
    ) -> bool {
        let SnapshotMeta {
            ring_seq,
            exch_seq,
            ts,
            valid,
        } = meta;
        let depth = self.entries.depth as usize;
        let Some(w) = self.entries.words(id) else {
            return false;
        };
        let stamp = w[0].load(Ordering::Relaxed);
        let odd = stamp | 1;
        w[0].store(odd, Ordering::Relaxed);
        // B1: Release fence; pairs with the Acquire fence in `BookReader::read`.
        fence(Ordering::Release);
        w[1].store(ring_seq, Ordering::Relaxed);
        w[2].store(exch_seq, Ordering::Relaxed);
        w[3].store(ts as u64, Ordering::Relaxed);
        w[4].store(valid as u64, Ordering::Relaxed);
        let levels = &w[ENTRY_META_WORDS as usize..];
        let mut nb = 0;
        for (i, (p, q)) in bids.into_iter().take(depth).enumerate() {
            levels[2 * i].store(p as u64, Ordering::Relaxed);
            levels[2 * i + 1].store(q as u64, Ordering::Relaxed);
            nb = i + 1;
        }
        let asks_at = 2 * depth;
        let mut na = 0;
        for (i, (p, q)) in asks.into_iter().take(depth).enumerate() {
            levels[asks_at + 2 * i].store(p as u64, Ordering::Relaxed);
            levels[asks_at + 2 * i + 1].store(q as u64, Ordering::Relaxed);
            na = i + 1;
        }
        w[5].store(nb as u64, Ordering::Relaxed);
        w[6].store(na as u64, Ordering::Relaxed);
        // B2: Release; pairs with the Acquire stamp load in `BookReader::read`.
        w[0].store(odd + 1, Ordering::Release);
        true
    }
}

/// A reader of a book region (read-only mapping).
pub struct BookReader {
    _map: Mmap,
    entries: Entries,
}

// SAFETY: the pointer in `entries` points into `_map`, owned and moved
// together with it.
unsafe impl Send for BookReader {}

impl BookReader {
    /// Opens the book region beside `ring_path`, refusing files this build
    /// does not understand (the error names the file and the mismatch).
    pub fn open(ring_path: &Path) -> Result<BookReader, RingError> {
        let path = books_path(ring_path);
        let f = File::open(&path).map_err(|e| RingError::io("opening", &path, e))?;
        let len = f
            .metadata()
            .map_err(|e| RingError::io("reading the size of", &path, e))?
            .len();
        let bad = |what: String| RingError::Invalid {
            path: path.clone(),
            what,
        };
        if len < HEADER_SIZE {
            return Err(bad(format!("file is too small: {len} bytes")));
        }
        let map = file::map_ro(&f, &path, len)?;
        // SAFETY: >= HEADER_SIZE bytes, page-aligned; the header is ShmSafe
        // and immutable once the file has its name.
        let h = unsafe { &*(map.as_ptr() as *const BooksHeader) };
        if h.magic != BOOKS_MAGIC {
            return Err(bad(format!(
                "not a tickring book region: magic {:#018x}",
                h.magic
            )));
        }
        if h.version != BOOKS_VERSION {
            return Err(bad(format!(
                "unknown book region version {} (this build reads {BOOKS_VERSION})",
                h.version
            )));
        }
        if h.depth == 0 || h.depth > MAX_DEPTH || h.entry_size != entry_size(h.depth) {
            return Err(bad(format!(
                "depth {} / entry size {} do not match",
                h.depth, h.entry_size
            )));
        }
        let need = HEADER_SIZE + h.capacity as u64 * h.entry_size;
        if h.file_size != len || need > len {
            return Err(bad(format!(
                "size mismatch: file {len} bytes, header says {}, {} entries need {need}",
                h.file_size, h.capacity
            )));
        }
        let entries = Entries {
            base: NonNull::new(map.as_ptr() as *mut u8).expect("mapping is non-null"),
            capacity: h.capacity,
            depth: h.depth,
            entry_size: h.entry_size,
        };
        Ok(BookReader { _map: map, entries })
    }

    pub fn depth(&self) -> u32 {
        self.entries.depth
    }

    /// A consistent snapshot of instrument `id`, or `None` if it was never
    /// published (or `id` is beyond the region). Retries while the writer
    /// is mid-update; gives up with `None` after a million failed tries
    /// (a writer that died mid-update leaves the entry odd forever).
    pub fn read(&self, id: u16) -> Option<BookSnapshot> {
        let w = self.entries.words(id)?;
        let depth = self.entries.depth as usize;
        for _ in 0..1_000_000 {
            // B2: Acquire; pairs with the Release stamp store in `BookWriter::publish`.
            let s1 = w[0].load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                crate::sync::spin_hint();
                continue;
            }
            let mut snap = BookSnapshot {
                ring_seq: w[1].load(Ordering::Relaxed),
                exch_seq: w[2].load(Ordering::Relaxed),
                ts: w[3].load(Ordering::Relaxed) as i64,
                valid: w[4].load(Ordering::Relaxed) != 0,
                ..BookSnapshot::default()
            };
            let nb = (w[5].load(Ordering::Relaxed) as usize).min(depth);
            let na = (w[6].load(Ordering::Relaxed) as usize).min(depth);
            let levels = &w[ENTRY_META_WORDS as usize..];
            snap.bids = (0..nb)
                .map(|i| {
                    (
                        levels[2 * i].load(Ordering::Relaxed) as i64,
                        levels[2 * i + 1].load(Ordering::Relaxed) as i64,
                    )
                })
                .collect();
            snap.asks = (0..na)
                .map(|i| {
                    (
                        levels[2 * depth + 2 * i].load(Ordering::Relaxed) as i64,
                        levels[2 * depth + 2 * i + 1].load(Ordering::Relaxed) as i64,
                    )
                })
                .collect();
            // B1: Acquire fence; pairs with the Release fence in `BookWriter::publish`.
            fence(Ordering::Acquire);
            if w[0].load(Ordering::Relaxed) == s1 {
                return Some(snap);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring path in a fresh /dev/shm directory, removed on drop (also
    /// when the test fails).
    struct TmpRing(PathBuf);

    impl TmpRing {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TmpRing {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    fn tmp_ring(tag: &str) -> TmpRing {
        let d = PathBuf::from(format!(
            "/dev/shm/tickring-unit-{}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TmpRing(d.join("x.ring"))
    }

    #[test]
    fn snapshot_round_trips_and_respects_depth() {
        let tmp = tmp_ring("books");
        let ring = tmp.path();
        let mut w = BookWriter::create(ring, 4, 3).unwrap();
        let r = BookReader::open(ring).unwrap();
        assert_eq!(r.read(0), None);
        let meta = SnapshotMeta {
            ring_seq: 42,
            exch_seq: 7,
            ts: 99,
            valid: true,
        };
        assert!(w.publish(1, meta, [(100, 1), (99, 2), (98, 3), (97, 4)], [(101, 5)]));
        let s = r.read(1).unwrap();
        assert_eq!(s.ring_seq, 42);
        assert_eq!(s.exch_seq, 7);
        assert!(s.valid);
        assert_eq!(s.bids, vec![(100, 1), (99, 2), (98, 3)]);
        assert_eq!(s.asks, vec![(101, 5)]);
        assert!(!w.publish(4, meta, [], []));
        assert_eq!(r.read(4), None);
    }

    #[test]
    fn concurrent_reads_are_never_torn() {
        let tmp = tmp_ring("torn");
        let ring = tmp.path();
        let mut w = BookWriter::create(ring, 1, 5).unwrap();
        let r = BookReader::open(ring).unwrap();
        w.publish(0, SnapshotMeta::default(), [(1, 1)], [(2, 1)]);
        let n: i64 = if cfg!(miri) { 200 } else { 200_000 };
        let writer = std::thread::spawn(move || {
            for k in 1..=n {
                // Every level of version k carries k, so a mix is visible.
                let meta = SnapshotMeta {
                    ring_seq: k as u64,
                    exch_seq: k as u64,
                    ts: k,
                    valid: true,
                };
                w.publish(
                    0,
                    meta,
                    (0..5).map(|_| (k, k)),
                    (0..(k % 5 + 1)).map(|_| (k, -k)),
                );
                // A collector publishes once per frame, not back to back.
                for _ in 0..50 {
                    std::hint::spin_loop();
                }
            }
        });
        let mut last = 0;
        while last < n as u64 {
            // `read` gives up (None) after a million tries against a
            // writer that is always mid-update; a loaded host can do that
            // to a tight test writer, so try again.
            let Some(s) = r.read(0) else {
                continue;
            };
            let k = s.ring_seq as i64;
            assert!(s.ring_seq >= last);
            last = s.ring_seq;
            if k > 0 {
                assert!(s.bids.iter().all(|&l| l == (k, k)), "{s:?}");
                assert_eq!(s.asks.len() as i64, k % 5 + 1);
                assert!(s.asks.iter().all(|&l| l == (k, -k)), "{s:?}");
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn foreign_file_is_refused() {
        let tmp = tmp_ring("foreign");
        let ring = tmp.path();
        std::fs::write(books_path(ring), vec![7u8; 4096]).unwrap();
        let e = BookReader::open(ring).err().unwrap().to_string();
        assert!(
            e.contains("not a tickring book region") && e.contains("x.books"),
            "{e}"
        );
    }
}
