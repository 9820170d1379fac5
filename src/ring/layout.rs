//! The ring file's byte layout (layout version 1).
//!
//! ```text
//! offset 0      Meta            (128 B)  immutable after creation
//! offset 128    WriterInfo      (128 B)  pid, state, epoch: written when a writer opens/closes
//! offset 256    Heartbeat       (128 B)  written every heartbeat interval
//! offset 384    CursorLine      (128 B)  written on every publish
//! offset 512    InstrumentsHdr  (128 B)  instrument count
//! offset 1024   InstrumentEntry[INSTRUMENT_CAPACITY] (64 B each)
//! slots_offset  Slot[capacity]  (64 B each), slots_offset a multiple of 4096
//! ```
//!
//! Each frequently written word has a 128-byte block of its own: 64 bytes
//! for the cache line plus the adjacent line that x86's spatial prefetcher
//! pulls in pairs. NB: these are hand-written `repr(C, align(128))` blocks
//! rather than `crossbeam_utils::CachePadded`, because the layout is a file
//! format shared between builds: `CachePadded` is not `repr(C)` and its
//! alignment differs by target.

use crate::instrument::MAX_SYMBOL_LEN;
use crate::shm::ShmSafe;
use crate::sync::{AtomicU32, AtomicU64};

use super::protocol::Slot;

/// `b"TICKRING"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TICKRING");
/// Layout version this build reads and writes.
pub const VERSION: u32 = 1;
/// Bytes per slot (one event, one cache line).
pub const SLOT_SIZE: u32 = 64;
/// Entries in the instrument table.
pub const INSTRUMENT_CAPACITY: u32 = 1024;
/// Where the instrument table starts.
pub const INSTRUMENTS_OFFSET: u64 = 1024;
/// Smallest file that can hold a header (used for the "too small" check).
pub const MIN_HEADER_LEN: u64 = 640;

/// Offset of the first slot for this layout version.
pub const fn slots_offset() -> u64 {
    let end = INSTRUMENTS_OFFSET + INSTRUMENT_CAPACITY as u64 * 64;
    end.div_ceil(4096) * 4096
}

/// Bytes needed for a ring of `capacity` slots before rounding to pages.
pub const fn bytes_needed(capacity: u64) -> u64 {
    slots_offset() + capacity * SLOT_SIZE as u64
}

/// Written once by the process that creates the file, before the file is
/// renamed into place; read-only afterwards.
#[repr(C, align(128))]
pub struct Meta {
    pub magic: u64,
    pub version: u32,
    pub slot_size: u32,
    /// Slots; a power of two.
    pub capacity: u64,
    /// Page size the file was sized and mapped with (4096 or the huge page size).
    pub page_size: u64,
    /// Total file size in bytes.
    pub file_size: u64,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: i64,
    pub instruments_offset: u64,
    pub instrument_capacity: u32,
    pub _reserved0: u32,
    pub slots_offset: u64,
}

/// Writer state values in [`WriterInfo::state`].
pub mod writer_state {
    /// No writer has opened the file yet.
    pub const NONE: u32 = 0;
    /// A writer opened the file and has not closed it.
    pub const RUNNING: u32 = 1;
    /// The writer closed the ring cleanly.
    pub const STOPPED: u32 = 2;
    /// A writer replaced this file with a new one of a different geometry;
    /// nothing will be written here again.
    pub const RETIRED: u32 = 3;
}

#[repr(C, align(128))]
pub struct WriterInfo {
    /// Pid of the current (or last) writer.
    pub pid: AtomicU32,
    /// One of [`writer_state`].
    pub state: AtomicU32,
    /// Incremented by every writer open.
    pub epoch: AtomicU64,
    /// When the current writer opened the ring, ns since the Unix epoch.
    pub opened_ns: AtomicU64,
}

#[repr(C, align(128))]
pub struct Heartbeat {
    /// Last heartbeat of the writer, ns since the Unix epoch.
    pub ns: AtomicU64,
}

#[repr(C, align(128))]
pub struct CursorLine {
    /// Next sequence to be published (= events ever published).
    pub next: AtomicU64,
}

#[repr(C, align(128))]
pub struct InstrumentsHdr {
    /// Entries `0..count` of the table are valid and immutable.
    pub count: AtomicU32,
}

/// The whole header block at offset 0.
#[repr(C)]
pub struct Header {
    pub meta: Meta,
    pub writer: WriterInfo,
    pub heartbeat: Heartbeat,
    pub cursor: CursorLine,
    pub instruments: InstrumentsHdr,
}

/// One instrument table entry; its index is the instrument id.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct InstrumentEntry {
    pub symbol: [u8; MAX_SYMBOL_LEN],
    pub symbol_len: u8,
    pub exchange: u8,
    pub price_scale: u8,
    pub qty_scale: u8,
    pub _reserved: [u8; 28],
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Meta>() == 128);
    assert!(size_of::<WriterInfo>() == 128);
    assert!(size_of::<Header>() == 640);
    assert!(MIN_HEADER_LEN == size_of::<Header>() as u64);
    assert!(offset_of!(Header, cursor) == 384);
    assert!(offset_of!(Header, instruments) == 512);
    assert!(size_of::<InstrumentEntry>() == 64);
    assert!(size_of::<Header>() as u64 <= INSTRUMENTS_OFFSET);
    assert!(slots_offset() % 4096 == 0);
};

// SAFETY: all of these are `repr(C)`, hold only integers and atomics of
// integers (valid for every bit pattern, all-zero included), contain no
// pointers or descriptors, have no Drop glue, and their explicit
// `_reserved` fields leave no implicit padding except the tail padding
// of the align(128) blocks, which nobody reads.
unsafe impl ShmSafe for Header {}
// SAFETY: as above: repr(C), integers only, no padding (32+1+1+1+1+28 = 64).
unsafe impl ShmSafe for InstrumentEntry {}
// SAFETY: repr(C, align(64)), eight AtomicU64, exactly 64 bytes, no padding.
unsafe impl ShmSafe for Slot {}
