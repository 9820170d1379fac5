//! [`Writer`] and [`Reader`]: the ring protocol on a mapped file.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use memmap2::{Mmap, MmapMut};

use super::file::{self, Backing, Geometry};
use super::layout::{self, writer_state, Header, InstrumentEntry};
use super::protocol::{self, Consumer, Producer, RingRef, Slot, SlotRead};
use super::RingError;
use crate::event::{Event, Exchange, StatusCode, NO_INSTRUMENT};
use crate::instrument::{Instrument, MAX_SYMBOL_LEN};
use crate::sync::Ordering;
use crate::time::now_ns;

/// How a writer creates or reopens its ring.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    pub backing: Backing,
    /// Slots in the ring; a power of two, at least 2.
    pub capacity: u64,
    /// Lock the mapping in memory (mlock). When RLIMIT_MEMLOCK forbids it,
    /// the writer goes on and reports a warning.
    pub lock_memory: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            backing: Backing::default(),
            capacity: 1 << 16,
            lock_memory: true,
        }
    }
}

/// Base address of a mapping and the header at its start.
#[derive(Clone, Copy)]
struct Base(NonNull<u8>);

impl Base {
    fn header(&self) -> &Header {
        // SAFETY: a `Base` is only built from a mapping that `file::validate`
        // accepted or that the writer just sized (>= MIN_HEADER_LEN bytes,
        // page-aligned); `Header` is ShmSafe. The owner of the `Base` keeps
        // the mapping alive for as long as the `Base` is used.
        unsafe { &*(self.0.as_ptr() as *const Header) }
    }

    fn entry_ptr(&self, id: u32) -> *mut InstrumentEntry {
        debug_assert!(id < layout::INSTRUMENT_CAPACITY);
        // SAFETY: the table lies within the validated file:
        // INSTRUMENTS_OFFSET + INSTRUMENT_CAPACITY * 64 <= slots_offset <= len.
        unsafe {
            self.0
                .as_ptr()
                .add(layout::INSTRUMENTS_OFFSET as usize)
                .cast::<InstrumentEntry>()
                .add(id as usize)
        }
    }

    /// # Safety
    /// `geo` must be the validated geometry of the mapping `self` points into,
    /// and the mapping must outlive the returned `RingRef`.
    unsafe fn ring(&self, geo: &Geometry) -> RingRef {
        // SAFETY: `validate` checked slots_offset + capacity * 64 <= len, the
        // offset is 4096-aligned, so the slots are in bounds and aligned.
        unsafe {
            let slots = NonNull::new_unchecked(self.0.as_ptr().add(geo.slots_offset as usize))
                .cast::<Slot>();
            let cursor = NonNull::from(&self.header().cursor.next);
            RingRef::new(slots, geo.capacity, cursor)
        }
    }
}

/// Lets another thread (the collector's housekeeping thread) keep the
/// writer's heartbeat fresh while the hot thread owns the [`Writer`].
#[derive(Clone)]
pub struct HeartbeatHandle {
    map: Arc<MmapMut>,
}

// SAFETY: the handle only performs an atomic store into the mapping it
// keeps alive through the Arc.
unsafe impl Send for HeartbeatHandle {}
// SAFETY: as above; concurrent `beat` calls are atomic stores.
unsafe impl Sync for HeartbeatHandle {}

impl HeartbeatHandle {
    /// Stamps the heartbeat with the current time.
    pub fn beat(&self) {
        let base = Base(NonNull::new(self.map.as_ptr() as *mut u8).expect("mapping is non-null"));
        // Relaxed: the heartbeat carries no data; readers only compare its age.
        base.header()
            .heartbeat
            .ns
            .store(now_ns() as u64, Ordering::Relaxed);
    }
}

/// The one writer of a ring. Dropping it marks the ring's writer as
/// stopped (readers then see [`Poll::WriterGone`] with [`GoneReason::Stopped`]).
pub struct Writer {
    map: Arc<MmapMut>,
    base: Base,
    producer: Producer,
    path: PathBuf,
    geometry: Geometry,
    huge: bool,
    epoch: u64,
    warnings: Vec<String>,
    /// Held for the writer's life: the flock that makes it the only writer.
    _lock: File,
}

// SAFETY: the raw pointers in `base` and `producer` point into `map`,
// which the Writer owns (through the Arc) and which moves with it.
unsafe impl Send for Writer {}

impl Writer {
    /// Creates ring `name`, or reopens it when a file of the same capacity
    /// and page size exists (readers then see a new epoch). Fails with
    /// [`RingError::Busy`] when another live process writes it.
    pub fn create(name: &str, opts: &WriterOptions) -> Result<Writer, RingError> {
        file::check_name(name)?;
        if !opts.capacity.is_power_of_two() || opts.capacity < 2 || opts.capacity > 1 << 32 {
            return Err(RingError::BadCapacity(opts.capacity));
        }
        let place = file::resolve_backing(&opts.backing, opts.capacity)?;
        let mut warnings: Vec<String> = place.warning.into_iter().collect();
        file::ensure_dir(&place.dir)?;
        let path = place.dir.join(format!("{name}.ring"));
        let lock_path = place.dir.join(format!("{name}.ring.lock"));
        let lock = file::open_rw_0640(&lock_path, false)?;
        match try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => {
                return Err(RingError::Busy {
                    pid: current_writer_pid(&path),
                    path,
                })
            }
            Err(e) => return Err(RingError::io("locking", &lock_path, e)),
        }

        let size = file::file_size_for(opts.capacity, place.page_size);
        let reused = match reopen(&path, opts.capacity, place.page_size) {
            Reopen::Reuse(map, geo) => Some((map, geo)),
            Reopen::Replace => None,
        };
        let fresh = reused.is_none();
        let (mut map, geometry) = match reused {
            Some(x) => x,
            None => create_file(&path, opts.capacity, place.page_size, size)?,
        };
        if opts.lock_memory {
            if let Err(e) = map.lock() {
                warnings.push(format!(
                    "could not lock the ring in memory ({e}); page faults may add latency: \
                     raise the memlock limit (ulimit -l, LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK"
                ));
            }
        }
        let base = Base(NonNull::new(map.as_mut_ptr()).expect("mapping is non-null"));
        let hdr = base.header();
        let now = now_ns();
        hdr.writer.pid.store(std::process::id(), Ordering::Relaxed);
        hdr.writer.opened_ns.store(now as u64, Ordering::Relaxed);
        hdr.heartbeat.ns.store(now as u64, Ordering::Relaxed);
        hdr.writer
            .state
            .store(writer_state::RUNNING, Ordering::Relaxed);
        let epoch = hdr.writer.epoch.load(Ordering::Relaxed) + 1;
        // Release: pairs with the Acquire epoch load in `Reader::poll`; a
        // reader that sees the new epoch sees this writer's pid and state.
        hdr.writer.epoch.store(epoch, Ordering::Release);

        // SAFETY: `geometry` was validated for this mapping, which the Writer
        // keeps alive (in `map`) as long as the producer exists.
        let ring = unsafe { base.ring(&geometry) };
        let mut next = ring.load_cursor();
        let stamp = Producer::new(ring, next).stamp_of(next);
        if stamp == protocol::done(next) {
            // The previous writer completed `next` but died before moving
            // the cursor: keep the event.
            next += 1;
            ring.cursor().store(next, Ordering::Release);
        }
        let mut producer = Producer::new(ring, next);
        if stamp == protocol::writing(next) {
            // The previous writer died in the middle of `next`. Readers
            // wait on that slot, so complete it with a status event saying
            // the feed was cut.
            let mut ev = Event::status(Exchange::Coinbase, NO_INSTRUMENT, StatusCode::Disconnected);
            ev.exchange = 0;
            ev.publish_ts = now;
            producer.publish(&ev);
        }

        if fresh {
            // Now that the file is initialized, make it visible by name.
            let tmp = tmp_path(&path);
            fs::rename(&tmp, &path).map_err(|e| RingError::io("renaming into place", &tmp, e))?;
        }
        if matches!(opts.backing, Backing::Auto { .. }) {
            retire_stale_twin(name, &place.dir);
        }
        Ok(Writer {
            map: Arc::new(map),
            base,
            producer,
            path,
            geometry,
            huge: place.huge,
            epoch,
            warnings,
            _lock: lock,
        })
    }

    /// Publishes `ev` (its `ring_seq` is ignored and assigned); returns the
    /// ring sequence it got. Never blocks, never fails, never reads reader
    /// state: a reader that falls behind loses events, the writer does not wait.
    #[inline(always)]
    pub fn publish(&mut self, ev: &Event) -> u64 {
        self.producer.publish(ev)
    }

    /// The sequence the next publish will get (= events ever published).
    pub fn next_seq(&self) -> u64 {
        self.producer.next_seq()
    }

    /// Registers an instrument in the ring's table and returns its id. The
    /// same exchange and symbol always get the same id in one file; an
    /// instrument whose scales differ from the registered ones is refused
    /// (old events would be misread).
    pub fn register_instrument(&mut self, inst: &Instrument) -> Result<u16, RingError> {
        let hdr = self.base.header();
        let count = hdr.instruments.count.load(Ordering::Relaxed);
        for id in 0..count {
            // SAFETY: entries below `count` were fully written before count
            // was published, and only this (single) writer writes entries.
            let e = unsafe { &*self.base.entry_ptr(id) };
            if e.exchange == inst.exchange as u8 && entry_symbol(e) == inst.symbol.as_bytes() {
                if e.price_scale != inst.price_scale || e.qty_scale != inst.qty_scale {
                    return Err(RingError::Instrument(format!(
                        "{}: instrument {} is registered with price scale {} and quantity scale {}, \
                         not {} and {}; remove the ring file to change scales",
                        self.path.display(),
                        inst.qualified_name(),
                        e.price_scale,
                        e.qty_scale,
                        inst.price_scale,
                        inst.qty_scale
                    )));
                }
                return Ok(id as u16);
            }
        }
        if count >= layout::INSTRUMENT_CAPACITY || count >= NO_INSTRUMENT as u32 {
            return Err(RingError::Instrument(format!(
                "{}: instrument table is full ({} entries)",
                self.path.display(),
                layout::INSTRUMENT_CAPACITY
            )));
        }
        let mut entry = InstrumentEntry {
            symbol: [0; MAX_SYMBOL_LEN],
            symbol_len: inst.symbol.len() as u8,
            exchange: inst.exchange as u8,
            price_scale: inst.price_scale,
            qty_scale: inst.qty_scale,
            _reserved: [0; 28],
        };
        entry.symbol[..inst.symbol.len()].copy_from_slice(inst.symbol.as_bytes());
        // SAFETY: `count < INSTRUMENT_CAPACITY`, so the entry is inside the
        // table; readers do not read it until `count` is published below.
        unsafe { self.base.entry_ptr(count).write(entry) };
        // Release: pairs with the Acquire load in `Reader::instruments`.
        hdr.instruments.count.store(count + 1, Ordering::Release);
        Ok(count as u16)
    }

    /// A handle another thread can use to keep the heartbeat fresh.
    pub fn heartbeat_handle(&self) -> HeartbeatHandle {
        HeartbeatHandle {
            map: self.map.clone(),
        }
    }

    /// Stamps the heartbeat now (same as [`HeartbeatHandle::beat`]).
    pub fn heartbeat(&self) {
        self.heartbeat_handle().beat()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the ring is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge
    }

    pub fn page_size(&self) -> u64 {
        self.geometry.page_size
    }

    /// Things the writer could not do as asked but went on without (no
    /// huge pages, no mlock), each saying how to fix it. The caller logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Marks the writer as stopped cleanly. Also done on drop.
    pub fn close(self) {}
}

impl Drop for Writer {
    fn drop(&mut self) {
        let hdr = self.base.header();
        hdr.heartbeat.ns.store(now_ns() as u64, Ordering::Relaxed);
        // Release: pairs with the Acquire state load in `Reader::writer_status`.
        hdr.writer
            .state
            .store(writer_state::STOPPED, Ordering::Release);
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

enum Reopen {
    Reuse(MmapMut, Geometry),
    Replace,
}

/// Opens an existing ring file for writing if it has the wanted geometry;
/// otherwise marks it retired (so its readers learn it is finished) and
/// asks for a new file.
fn reopen(path: &Path, capacity: u64, page_size: u64) -> Reopen {
    let Ok(f) = fs::OpenOptions::new().read(true).write(true).open(path) else {
        return Reopen::Replace;
    };
    let Ok(meta) = f.metadata() else {
        return Reopen::Replace;
    };
    let len = meta.len();
    if len < layout::MIN_HEADER_LEN {
        return Reopen::Replace;
    }
    let Ok(mut map) = file::map_rw(&f, path, len) else {
        return Reopen::Replace;
    };
    // SAFETY: the mapping is `len` bytes, page-aligned, and alive here.
    let geo = match unsafe { file::validate(map.as_ptr(), len, path) } {
        Ok(g) => g,
        Err(_) => return Reopen::Replace,
    };
    if geo.capacity == capacity && geo.page_size == page_size {
        return Reopen::Reuse(map, geo);
    }
    let base = Base(NonNull::new(map.as_mut_ptr()).expect("mapping is non-null"));
    // Release: pairs with the Acquire state load in `Reader::writer_status`.
    base.header()
        .writer
        .state
        .store(writer_state::RETIRED, Ordering::Release);
    Reopen::Replace
}

/// Writes a new ring file under a temporary name; the caller renames it
/// into place once the writer state is set.
fn create_file(
    path: &Path,
    capacity: u64,
    page_size: u64,
    size: u64,
) -> Result<(MmapMut, Geometry), RingError> {
    let tmp = tmp_path(path);
    let _ = fs::remove_file(&tmp);
    let f = file::open_rw_0640(&tmp, true)?;
    f.set_len(size)
        .map_err(|e| RingError::io("sizing", &tmp, e))?;
    let mut map = file::map_rw(&f, &tmp, size)?;
    let meta = layout::Meta {
        magic: layout::MAGIC,
        version: layout::VERSION,
        slot_size: layout::SLOT_SIZE,
        capacity,
        page_size,
        file_size: size,
        created_ns: now_ns(),
        instruments_offset: layout::INSTRUMENTS_OFFSET,
        instrument_capacity: layout::INSTRUMENT_CAPACITY,
        _reserved0: 0,
        slots_offset: layout::slots_offset(),
    };
    // SAFETY: the mapping is `size` >= MIN_HEADER_LEN bytes and page-aligned;
    // nobody else can see the file yet (it has a temporary name and we
    // hold the ring's lock), so a plain write is race-free.
    unsafe { (map.as_mut_ptr() as *mut layout::Meta).write(meta) };
    // SAFETY: just written above, same mapping.
    let geo = unsafe { file::validate(map.as_ptr(), size, &tmp) }?;
    Ok((map, geo))
}

/// Pid recorded in an existing ring file, for the "busy" message.
fn current_writer_pid(path: &Path) -> Option<u32> {
    Reader::open(path, &ReaderOptions::default())
        .ok()
        .map(|r| r.writer_status().pid)
}

/// With automatic placement a ring may have moved between the huge page and
/// the /dev/shm directory since its last run; a leftover file of the same
/// name in the other directory would shadow or confuse `find_ring`. Retire
/// and remove it unless a writer holds it.
fn retire_stale_twin(name: &str, used_dir: &Path) {
    for dir in [file::HUGEPAGE_DIR, file::SHM_DIR] {
        let dir = Path::new(dir);
        if dir == used_dir {
            continue;
        }
        let path = dir.join(format!("{name}.ring"));
        let lock_path = dir.join(format!("{name}.ring.lock"));
        if !path.exists() {
            continue;
        }
        let Ok(lock) = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock_path)
        else {
            continue;
        };
        if !matches!(try_lock_exclusive(&lock), Ok(true)) {
            continue;
        }
        let _ = reopen(&path, 0, 0);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(&lock_path);
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when another open file holds it.
/// The lock lives as long as the file stays open, and dies with the process.
fn try_lock_exclusive(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor we own (borrowed from a live File);
    // it has no memory effects.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn entry_symbol(e: &InstrumentEntry) -> &[u8] {
    &e.symbol[..(e.symbol_len as usize).min(MAX_SYMBOL_LEN)]
}

/// Where a new reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest event the ring still holds.
    #[default]
    Oldest,
    /// Only events published after the reader attached.
    Newest,
}

#[derive(Clone, Debug)]
pub struct ReaderOptions {
    pub start: StartAt,
    /// A writer whose pid is gone and whose heartbeat is older than this is
    /// reported as gone.
    pub stale_after: Duration,
    /// Lock the (read-only) mapping in memory; failures are ignored.
    pub lock_memory: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            start: StartAt::Oldest,
            stale_after: Duration::from_secs(2),
            lock_memory: false,
        }
    }
}

/// Why the writer is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// It closed the ring cleanly.
    Stopped,
    /// Its process is dead and its heartbeat stale (it crashed or was killed).
    Died { pid: u32 },
    /// A new writer replaced the file with one of another size; reopen it.
    Retired,
}

/// The result of one [`Reader::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    Event(Event),
    /// Nothing new; the writer is alive (or its death not yet noticed).
    Empty,
    /// The reader fell a full lap behind: exactly `lost` events were
    /// skipped. It continues half a lap behind the writer's cursor as it was
    /// when the reader noticed (a margin, so it is not overrun again at once).
    Overrun {
        lost: u64,
    },
    /// A new writer opened the ring (new epoch). Events continue in the
    /// same sequence; books should be rebuilt from the new writer's
    /// snapshots.
    WriterRestarted {
        epoch: u64,
    },
    /// The writer is gone; reported once, then polls return `Empty` until a
    /// new writer opens the ring (`WriterRestarted`).
    WriterGone(GoneReason),
}

/// What the header says about the writer right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterStatus {
    pub pid: u32,
    pub epoch: u64,
    /// Raw [`writer_state`] value.
    pub state: u32,
    pub heartbeat_ns: i64,
    pub heartbeat_age_ns: i64,
    pub opened_ns: i64,
    /// Whether the writer's pid exists on this host (false also when it is
    /// in another pid namespace).
    pub pid_alive: bool,
    /// `None` while the writer is alive.
    pub gone: Option<GoneReason>,
}

/// A ring's header, as `tickring stat` shows it.
#[derive(Clone, Debug)]
pub struct RingInfo {
    pub path: PathBuf,
    pub version: u32,
    pub slot_size: u32,
    pub capacity: u64,
    pub page_size: u64,
    pub file_size: u64,
    pub created_ns: i64,
    pub cursor: u64,
    pub writer: WriterStatus,
}

/// A reader of a ring, in any process. Holds a read-only mapping; polling
/// makes no syscall while events flow.
pub struct Reader {
    _map: Mmap,
    base: Base,
    consumer: Consumer,
    path: PathBuf,
    geometry: Geometry,
    epoch: u64,
    stale_after_ns: i64,
    idle_polls: u32,
    last_check_ns: i64,
    gone_reported: bool,
    instruments: Vec<Instrument>,
}

// SAFETY: the raw pointers in `base` and `consumer` point into `_map`,
// which the Reader owns and which moves with it.
unsafe impl Send for Reader {}

/// Empty polls between two looks at the clock for the liveness check.
const IDLE_POLLS_PER_CHECK: u32 = 256;
/// Minimum time between two liveness checks (each costs a `kill(pid, 0)`).
const CHECK_INTERVAL_NS: i64 = 50_000_000;

impl Reader {
    /// Opens and validates a ring file. The error names the file and what
    /// is wrong with it (too small, foreign magic, unknown version, sizes
    /// that do not match).
    pub fn open(path: &Path, opts: &ReaderOptions) -> Result<Reader, RingError> {
        let f = File::open(path).map_err(|e| RingError::io("opening", path, e))?;
        let len = f
            .metadata()
            .map_err(|e| RingError::io("reading the size of", path, e))?
            .len();
        if len < layout::MIN_HEADER_LEN {
            return Err(RingError::Invalid {
                path: path.to_owned(),
                what: format!(
                    "file is too small: {len} bytes, a ring header alone needs {}",
                    layout::MIN_HEADER_LEN
                ),
            });
        }
        let map = file::map_ro(&f, path, len)?;
        if opts.lock_memory {
            let _ = map.lock();
        }
        // SAFETY: the mapping is `len` bytes, page-aligned, owned by `map`.
        let geometry = unsafe { file::validate(map.as_ptr(), len, path) }?;
        let base = Base(NonNull::new(map.as_ptr() as *mut u8).expect("mapping is non-null"));
        // SAFETY: validated geometry of this mapping; `map` moves into the
        // Reader together with the consumer and outlives it.
        let ring = unsafe { base.ring(&geometry) };
        // Acquire: pairs with the Release epoch store in `Writer::create`.
        let epoch = base.header().writer.epoch.load(Ordering::Acquire);
        let consumer = match opts.start {
            StartAt::Oldest => Consumer::at_oldest(ring),
            StartAt::Newest => Consumer::at_newest(ring),
        };
        let mut r = Reader {
            _map: map,
            base,
            consumer,
            path: path.to_owned(),
            geometry,
            epoch,
            stale_after_ns: opts.stale_after.as_nanos().min(i64::MAX as u128) as i64,
            idle_polls: 0,
            last_check_ns: 0,
            gone_reported: false,
            instruments: Vec::new(),
        };
        r.refresh_instruments();
        Ok(r)
    }

    /// Reads what comes next. See [`Poll`].
    #[inline]
    pub fn poll(&mut self) -> Poll {
        // Acquire: pairs with the Release epoch store in `Writer::create`.
        let epoch = self.base.header().writer.epoch.load(Ordering::Acquire);
        if epoch != self.epoch {
            self.epoch = epoch;
            self.gone_reported = false;
            return Poll::WriterRestarted { epoch };
        }
        match self.consumer.poll() {
            SlotRead::Event(ev) => Poll::Event(ev),
            SlotRead::Overrun { lost } => Poll::Overrun { lost },
            SlotRead::Empty => self.idle(),
        }
    }

    #[cold]
    fn idle(&mut self) -> Poll {
        self.idle_polls = self.idle_polls.wrapping_add(1);
        if self.gone_reported || self.idle_polls % IDLE_POLLS_PER_CHECK != 0 {
            return Poll::Empty;
        }
        let now = crate::time::monotonic_ns();
        if now - self.last_check_ns < CHECK_INTERVAL_NS {
            return Poll::Empty;
        }
        self.last_check_ns = now;
        match self.writer_status().gone {
            Some(reason) => {
                self.gone_reported = true;
                Poll::WriterGone(reason)
            }
            None => Poll::Empty,
        }
    }

    /// The writer's state as the header tells it now (makes a `kill(pid, 0)`
    /// syscall; [`Reader::poll`] calls it only when idle, rate-limited).
    pub fn writer_status(&self) -> WriterStatus {
        let w = &self.base.header().writer;
        // Acquire: pairs with the Release state stores in `Writer::drop` and
        // `reopen` (retirement).
        let state = w.state.load(Ordering::Acquire);
        let pid = w.pid.load(Ordering::Relaxed);
        let hb = self.base.header().heartbeat.ns.load(Ordering::Relaxed) as i64;
        let age = now_ns() - hb;
        let pid_alive = pid != 0 && pid_exists(pid);
        let gone = match state {
            writer_state::STOPPED => Some(GoneReason::Stopped),
            writer_state::RETIRED => Some(GoneReason::Retired),
            writer_state::RUNNING if !pid_alive && age > self.stale_after_ns => {
                Some(GoneReason::Died { pid })
            }
            _ => None,
        };
        WriterStatus {
            pid,
            epoch: w.epoch.load(Ordering::Acquire),
            state,
            heartbeat_ns: hb,
            heartbeat_age_ns: age,
            opened_ns: w.opened_ns.load(Ordering::Relaxed) as i64,
            pid_alive,
            gone,
        }
    }

    /// The ring's header fields and the writer's state.
    pub fn info(&self) -> RingInfo {
        let m = &self.base.header().meta;
        RingInfo {
            path: self.path.clone(),
            version: m.version,
            slot_size: m.slot_size,
            capacity: self.geometry.capacity,
            page_size: self.geometry.page_size,
            file_size: self.geometry.file_size,
            created_ns: m.created_ns,
            cursor: self.cursor(),
            writer: self.writer_status(),
        }
    }

    /// Events ever published (the writer's next sequence).
    pub fn cursor(&self) -> u64 {
        // Acquire: pairs with E3 in `Producer::publish` (via RingRef::load_cursor).
        self.base.header().cursor.next.load(Ordering::Acquire)
    }

    /// The next sequence this reader will read.
    pub fn position(&self) -> u64 {
        self.consumer.position()
    }

    pub fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The instrument table as far as the writer has published it.
    pub fn instruments(&mut self) -> &[Instrument] {
        self.refresh_instruments();
        &self.instruments
    }

    /// Instrument `id`, re-reading the table if the id is new to this reader.
    pub fn instrument(&mut self, id: u16) -> Option<&Instrument> {
        if id as usize >= self.instruments.len() {
            self.refresh_instruments();
        }
        self.instruments.get(id as usize)
    }

    fn refresh_instruments(&mut self) {
        // Acquire: pairs with the Release count store in `Writer::register_instrument`.
        let count = self
            .base
            .header()
            .instruments
            .count
            .load(Ordering::Acquire)
            .min(layout::INSTRUMENT_CAPACITY);
        for id in self.instruments.len() as u32..count {
            // SAFETY: `id < count <= INSTRUMENT_CAPACITY`: inside the
            // validated table; entries below the published count are
            // immutable, and the Acquire load above makes them visible.
            let e = unsafe { self.base.entry_ptr(id).read() };
            let inst = Exchange::from_u8(e.exchange).and_then(|ex| {
                let sym = std::str::from_utf8(entry_symbol(&e)).ok()?;
                Instrument::new(ex, sym, e.price_scale, e.qty_scale).ok()
            });
            match inst {
                Some(i) => self.instruments.push(i),
                // A corrupt entry: stop here rather than shift every later id.
                None => break,
            }
        }
    }
}

fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}
