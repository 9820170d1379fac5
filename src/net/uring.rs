//! The io_uring instance: setup with kernel probing, the provided-buffer
//! ring, and the ONE function that pushes submission entries.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::NetConfig;

/// `IORING_ENTER_GETEVENTS` from <linux/io_uring.h> (io-uring keeps its
/// `sys` bindings private).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// What the kernel offers and which receive path the loop chose. Logged by
/// the caller at start and exported as metrics (each bool a 0/1 gauge).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `uname -r`.
    pub kernel: String,
    /// SQPOLL was requested by the config.
    pub sqpoll_requested: bool,
    /// SQPOLL is in use.
    pub sqpoll: bool,
    /// Why SQPOLL was requested but is not in use.
    pub sqpoll_error: Option<String>,
    /// `IORING_SETUP_COOP_TASKRUN` is in use (5.19+).
    pub coop_taskrun: bool,
    /// A provided-buffer ring is registered and used for receives.
    pub provided_buffers: bool,
    /// Why the buffer ring was wanted but could not be registered.
    pub provided_buffers_error: Option<String>,
    /// Multishot receive is in use (needs the buffer ring and 6.0+).
    pub multishot_recv: bool,
    /// `IORING_FEAT_FAST_POLL`: sockets are polled internally, no worker threads.
    pub fast_poll: bool,
    /// `IORING_FEAT_NODROP`: completions are never dropped on CQ overflow.
    pub nodrop: bool,
    /// `IORING_FEAT_SUBMIT_STABLE`: SQE data is consumed at submit.
    pub submit_stable: bool,
    /// `IORING_FEAT_EXT_ARG`: timeouts on wait.
    pub ext_arg: bool,
    /// Opcodes the probe reported (names of the ones this crate uses).
    pub ops: Vec<&'static str>,
}

impl Features {
    /// The receive path in one word: `multishot+bufring`, `bufring`, `plain`.
    pub fn recv_path(&self) -> &'static str {
        match (self.multishot_recv, self.provided_buffers) {
            (true, _) => "multishot+bufring",
            (false, true) => "bufring",
            (false, false) => "plain",
        }
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "io_uring on kernel {}: recv path {}, sqpoll {}, coop_taskrun {}, fast_poll {}, nodrop {}, ext_arg {}",
            self.kernel,
            self.recv_path(),
            if self.sqpoll {
                "on"
            } else if self.sqpoll_requested {
                "requested but unavailable"
            } else {
                "off"
            },
            self.coop_taskrun,
            self.fast_poll,
            self.nodrop,
            self.ext_arg
        )?;
        if let Some(e) = &self.sqpoll_error {
            write!(f, " (sqpoll: {e})")?;
        }
        if let Some(e) = &self.provided_buffers_error {
            write!(f, " (buffer ring: {e})")?;
        }
        Ok(())
    }
}

/// Why the loop could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// io_uring_setup failed (disabled by sysctl or seccomp, or too old).
    Ring(io::Error),
    /// The kernel lacks an opcode the transport needs.
    MissingOp { op: &'static str, kernel: String },
    /// A config value is out of range.
    Config(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Ring(e) => write!(
                f,
                "io_uring_setup failed: {e} (kernel.io_uring_disabled set, a seccomp filter, or a kernel before 5.6?)"
            ),
            SetupError::MissingOp { op, kernel } => write!(
                f,
                "io_uring on kernel {kernel} lacks {op}; tickring needs Linux 5.6 or newer"
            ),
            SetupError::Config(m) => write!(f, "network config: {m}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// What a submission is, encoded in the top byte of its `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Connect = 1,
    Recv = 2,
    Send = 3,
    Timer = 4,
    /// AsyncCancel / TimeoutRemove: nothing to do on completion.
    Cancel = 5,
}

/// `user_data` = op (8 bits) | generation (24 bits) | slot (32 bits).
#[inline]
pub(crate) fn user_data(op: Op, gen: u32, slot: u32) -> u64 {
    (op as u64) << 56 | u64::from(gen & 0xFF_FFFF) << 32 | u64::from(slot)
}

#[inline]
pub(crate) fn decode_user_data(ud: u64) -> (u8, u32, u32) {
    ((ud >> 56) as u8, (ud >> 32) as u32 & 0xFF_FFFF, ud as u32)
}

/// A submission, described by what it points at. The pointers are taken by
/// the caller from memory whose lifetime rule is stated on [`Uring::push`].
pub(crate) enum Sqe {
    Connect {
        fd: i32,
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    },
    /// Single-shot receive into a caller-owned buffer.
    Recv {
        fd: i32,
        buf: *mut u8,
        len: u32,
    },
    /// Single-shot receive into a buffer picked from the buffer ring.
    RecvSelect {
        fd: i32,
        len: u32,
    },
    /// Multishot receive from the buffer ring.
    RecvMulti {
        fd: i32,
    },
    Send {
        fd: i32,
        buf: *const u8,
        len: u32,
    },
    Timer {
        ts: *const types::Timespec,
    },
    TimerRemove {
        target: u64,
    },
    Cancel {
        target: u64,
    },
}

/// The buffer group id of the one buffer ring.
pub(crate) const BGID: u16 = 0;

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): `count` buffers of
/// `size` bytes the kernel picks from for receives.
pub(crate) struct BufRing {
    /// `count` ring entries, page-aligned (mmap). Shared with the kernel,
    /// which reads entries up to the tail we publish.
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    /// The buffers themselves, `count * size` bytes.
    bufs: *mut u8,
    bufs_bytes: usize,
    count: u16,
    size: u32,
    /// Our copy of the tail (free-running, wraps at 2^16).
    tail: u16,
}

impl BufRing {
    fn new(count: u16, size: u32) -> io::Result<BufRing> {
        let ring_bytes = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let bufs_bytes = usize::from(count) * size as usize;
        let map = |len: usize| -> io::Result<*mut u8> {
            // SAFETY: an anonymous private mapping with no address hint; the
            // result is checked for MAP_FAILED and owned by the BufRing,
            // which unmaps it in Drop.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(io::Error::last_os_error())
            } else {
                Ok(p.cast())
            }
        };
        let ring = map(ring_bytes)?.cast::<types::BufRingEntry>();
        let bufs = match map(bufs_bytes) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: `ring` was mapped just above with this length.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring,
            ring_bytes,
            bufs,
            bufs_bytes,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            br.put(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Writes buffer `bid` into the entry at the tail (not yet published).
    fn put(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: `idx < count` (count is a power of two), so the entry lies
        // inside the mapping; the kernel only reads entries before the
        // published tail, and this one is at or after it.
        let e = unsafe { &mut *self.ring.add(idx) };
        // SAFETY: `bid < count`, so the offset stays inside `bufs`.
        e.set_addr(unsafe { self.bufs.add(usize::from(bid) * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written by `put` visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's `resv` (the kernel ABI);
        // `BufRingEntry::tail` computes its address inside the mapping, and
        // a u16 there is 2-aligned. Release pairs with the kernel's
        // smp_load_acquire of the tail in io_ring_buffer_select.
        let tail = unsafe { &*types::BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Buffer `bid`'s first `len` bytes (what a receive CQE reported).
    pub(crate) fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.size as usize,
            "buffer id/len from the kernel out of range"
        );
        // SAFETY: in range (asserted); the kernel wrote these bytes before
        // posting the CQE and will not write the buffer again until we give
        // it back with `recycle`.
        unsafe {
            std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.size as usize), len)
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped by `new` with these lengths and
        // the ring is unregistered / the io_uring drained before the
        // BufRing is dropped (see `Uring`'s field order and EventLoop::drop).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.bufs.cast(), self.bufs_bytes);
        }
    }
}

/// The io_uring plus the buffer ring, with in-flight accounting.
pub(crate) struct Uring {
    // Field order matters: the ring (and its fd) drops before the buffer
    // ring memory it may reference.
    ring: IoUring,
    pub(crate) bufring: Option<BufRing>,
    pub(crate) features: Features,
    /// Submissions whose final completion has not been reaped yet.
    pub(crate) inflight: usize,
}

fn kernel_release() -> (String, (u32, u32)) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (rel, (major, minor))
}

impl Uring {
    pub(crate) fn new(cfg: &NetConfig) -> Result<Uring, SetupError> {
        if cfg.buf_count == 0 || !cfg.buf_count.is_power_of_two() || cfg.buf_count > 32768 {
            return Err(SetupError::Config(format!(
                "buf_count {} must be a power of two in 1..=32768",
                cfg.buf_count
            )));
        }
        if cfg.buf_size < 4096 {
            return Err(SetupError::Config(format!(
                "buf_size {} must be >= 4096",
                cfg.buf_size
            )));
        }
        let (kernel, version) = kernel_release();
        let mut f = Features {
            kernel: kernel.clone(),
            sqpoll_requested: cfg.sqpoll,
            ..Features::default()
        };
        let entries = cfg.sq_entries.max(8);
        let mut ring = None;
        if cfg.sqpoll {
            let mut b = IoUring::builder();
            b.setup_sqpoll(cfg.sqpoll_idle_ms);
            if let Some(cpu) = cfg.sqpoll_cpu {
                b.setup_sqpoll_cpu(cpu);
            }
            match b.build(entries) {
                Ok(r) => {
                    f.sqpoll = true;
                    ring = Some(r);
                }
                Err(e) => f.sqpoll_error = Some(e.to_string()),
            }
        }
        let ring = match ring {
            Some(r) => r,
            None => match IoUring::builder().setup_coop_taskrun().build(entries) {
                Ok(r) => {
                    f.coop_taskrun = true;
                    r
                }
                Err(_) => IoUring::new(entries).map_err(SetupError::Ring)?,
            },
        };
        let p = ring.params();
        f.fast_poll = p.is_feature_fast_poll();
        f.nodrop = p.is_feature_nodrop();
        f.submit_stable = p.is_feature_submit_stable();
        f.ext_arg = p.is_feature_ext_arg();

        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|_| SetupError::MissingOp {
                op: "IORING_REGISTER_PROBE",
                kernel: kernel.clone(),
            })?;
        let needed = [
            ("IORING_OP_CONNECT", opcode::Connect::CODE),
            ("IORING_OP_RECV", opcode::Recv::CODE),
            ("IORING_OP_SEND", opcode::Send::CODE),
            ("IORING_OP_TIMEOUT", opcode::Timeout::CODE),
            ("IORING_OP_TIMEOUT_REMOVE", opcode::TimeoutRemove::CODE),
            ("IORING_OP_ASYNC_CANCEL", opcode::AsyncCancel::CODE),
        ];
        for (name, code) in needed {
            if !probe.is_supported(code) {
                return Err(SetupError::MissingOp { op: name, kernel });
            }
            f.ops.push(name);
        }

        let mut bufring = None;
        if cfg.provided_buffers {
            match BufRing::new(cfg.buf_count, cfg.buf_size) {
                Ok(br) => {
                    // SAFETY: the ring memory is page-aligned, `buf_count`
                    // entries long, and owned by the BufRing stored next to
                    // the IoUring in this struct; it is dropped after the
                    // ring (field order), so it outlives the registration.
                    let reg = unsafe {
                        ring.submitter().register_buf_ring_with_flags(
                            br.ring as u64,
                            br.count,
                            BGID,
                            0,
                        )
                    };
                    match reg {
                        Ok(()) => bufring = Some(br),
                        Err(e) => f.provided_buffers_error = Some(e.to_string()),
                    }
                }
                Err(e) => f.provided_buffers_error = Some(format!("mmap: {e}")),
            }
        }
        f.provided_buffers = bufring.is_some();
        f.multishot_recv = cfg.multishot_recv && f.provided_buffers && version >= (6, 0);
        Ok(Uring {
            ring,
            bufring,
            features: f,
            inflight: 0,
        })
    }

    /// Pushes one submission; submits first when the queue is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid, and its memory must not be
    /// moved, freed or (for receive buffers) touched, until the completion
    /// of `ud` that ends the operation has been reaped (for multishot, the
    /// one without `IORING_CQE_F_MORE`). The loop keeps this by construction:
    /// * socket addresses and send/receive buffers are heap allocations
    ///   owned by the connection (`Box`, `Vec` never resized while an
    ///   operation uses it), and a connection is freed only when its
    ///   in-flight count is zero (`EventLoop::maybe_free`);
    /// * a timer's `Timespec` is boxed in its slot, which is reused only
    ///   after the timer's completion;
    /// * buffer-ring memory lives as long as `Uring` and is dropped after
    ///   the ring; `EventLoop::drop` cancels and drains every operation
    ///   before any of this memory is released (or leaks it if it cannot).
    pub(crate) unsafe fn push(&mut self, sqe: Sqe, ud: u64) -> io::Result<()> {
        use types::Fd;
        let entry: squeue::Entry = match sqe {
            Sqe::Connect { fd, addr, len } => opcode::Connect::new(Fd(fd), addr, len).build(),
            Sqe::Recv { fd, buf, len } => opcode::Recv::new(Fd(fd), buf, len).build(),
            Sqe::RecvSelect { fd, len } => opcode::Recv::new(Fd(fd), std::ptr::null_mut(), len)
                .buf_group(BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT),
            Sqe::RecvMulti { fd } => opcode::RecvMulti::new(Fd(fd), BGID).build(),
            Sqe::Send { fd, buf, len } => opcode::Send::new(Fd(fd), buf, len)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            Sqe::Timer { ts } => opcode::Timeout::new(ts).build(),
            Sqe::TimerRemove { target } => opcode::TimeoutRemove::new(target).build(),
            Sqe::Cancel { target } => opcode::AsyncCancel::new(target).build(),
        }
        .user_data(ud);
        loop {
            // SAFETY: the entry's pointers obey this function's contract
            // (see `# Safety`: the caller's memory outlives the operation).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            match pushed {
                Ok(()) => break,
                Err(_) => {
                    // Queue full: hand what is queued to the kernel and retry.
                    self.submit()?;
                }
            }
        }
        self.inflight += 1;
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // CQ overflowing: the caller reaps, then submits again.
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Submits and waits for at least one completion.
    pub(crate) fn submit_and_wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Busy polling: one `io_uring_enter` that submits what is queued and
    /// runs the kernel's pending task work without sleeping
    /// (`IORING_ENTER_GETEVENTS` with a minimum of 0), then a look at the
    /// completion queue; repeated until it holds an entry. The enter is
    /// what makes it fast: with COOP_TASKRUN the kernel does not interrupt
    /// this thread to post receive completions; its task work runs at the
    /// thread's next kernel entry, so spinning on the shared queue alone
    /// would see them late (at the next timer tick, at worst), not never.
    pub(crate) fn submit_and_poll(&mut self) -> io::Result<()> {
        loop {
            let to_submit = self.ring.submission().len() as u32;
            // SAFETY: no argument pointer is passed (`None`), and the
            // flags ask for nothing that touches user memory beyond the
            // rings this `IoUring` owns and keeps mapped.
            let r = unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    to_submit,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            };
            match r {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                    ) => {}
                Err(e) => return Err(e),
            }
            if !self.ring.completion().is_empty() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
    }

    /// Moves all available completions into `out` (cleared first). An entry
    /// that ends its operation (no `F_MORE`) lowers the in-flight count.
    pub(crate) fn reap(&mut self, out: &mut Vec<cqueue::Entry>) {
        out.clear();
        for cqe in self.ring.completion() {
            if !cqueue::more(cqe.flags()) {
                self.inflight -= 1;
            }
            out.push(cqe);
        }
    }
}
