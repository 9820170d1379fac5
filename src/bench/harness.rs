//! The one measuring harness every path of `tickring bench ring` goes
//! through, so that tickring and its peers are timed by the same code:
//!
//! - [`Tx`]/[`Rx`]: the sending and receiving ends of a path (the tickring
//!   ring, a Unix socket, rtrb, ...), reduced to "send this event" and
//!   "hand me what is there";
//! - [`write_paced`]/[`read_latency`]: one-way latency of single events on
//!   an idle path. The writer stamps each event with [`Clock::now`] just
//!   before sending, the reader stamps it right after receiving and records
//!   the difference; the writer sends the next event only after the reader
//!   acknowledged the previous one (through [`Ctl::ack`]) plus a random gap,
//!   so no event ever waits behind another: this is latency, not queueing;
//! - [`write_burst`]/[`read_count`]: events/s in a tight loop;
//! - [`Ctl`]: a few cache-line-padded words both sides share (in a mapped
//!   file when they are two processes, on the heap when two threads).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;
use serde::{Deserialize, Serialize};

use super::hist::{Clock, LatencyHist, LatencyResult};
use super::Placement;
use crate::event::Event;

/// Bench opcodes, carried in [`Event::status`] (the events of a benchmark
/// are not market data; no reader outside the benchmark sees them).
pub(crate) mod op {
    /// A latency sample sent before measuring starts (warms caches,
    /// connections and branch predictors); not recorded.
    pub const WARMUP: u16 = 1;
    /// A latency sample that is recorded.
    pub const SAMPLE: u16 = 2;
    /// Last event of a run: the reader reports and exits.
    pub const STOP: u16 = 3;
    /// An event of a throughput burst (counted, not timed).
    pub const BURST: u16 = 4;
}

/// The sending end of a measured path.
pub(crate) trait Tx {
    /// Sends one event, waiting (spinning) while a bounded path is full.
    /// Returns false when the path refused it (counted as a send error).
    fn send(&mut self, ev: &Event) -> bool;
}

/// What one [`Rx::poll_with`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// This many events were handed to the callback.
    Got(usize),
    Empty,
    /// The path dropped this many events (only lossy paths: the tickring
    /// ring overwrites, iceoryx2 with safe overflow replaces).
    Lost(u64),
    /// The sender is gone; nothing more will come.
    Closed,
}

/// The receiving end of a measured path. Never blocks: readers spin.
pub(crate) trait Rx {
    /// Hands every event available now (one or a batch) to `f`.
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled;
}

/// One cache line pair of its own (x86 prefetches lines in pairs), so the
/// ack the reader writes never shares a line with anything else.
#[repr(C, align(128))]
pub(crate) struct Padded(pub AtomicU64);

/// Words the writer and reader(s) of one run share. `repr(C)` because it
/// may sit in a file mapped by two processes built from the same binary.
#[repr(C)]
pub(crate) struct Ctl {
    /// `seq` of the last event the (first) reader received. Stored with
    /// Release by the reader; loaded with Acquire by the paced writer.
    pub ack: Padded,
    /// Set by the writer to tell readers in count mode to report and exit.
    pub stop: Padded,
}

impl Ctl {
    #[cfg(test)]
    pub(crate) fn new() -> Ctl {
        Ctl {
            ack: Padded(AtomicU64::new(0)),
            stop: Padded(AtomicU64::new(0)),
        }
    }

    pub(crate) fn reset(&self) {
        self.ack.0.store(0, Ordering::Relaxed);
        self.stop.0.store(0, Ordering::Relaxed);
    }
}

/// A [`Ctl`] in a small file mapped by two processes.
pub(crate) struct CtlMap {
    map: MmapMut,
}

impl CtlMap {
    /// Creates (or opens) the file, sized for one `Ctl`. A new file is all
    /// zeros, which is `Ctl::new()`.
    pub(crate) fn open(path: &Path) -> std::io::Result<CtlMap> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = std::mem::size_of::<Ctl>() as u64;
        if f.metadata()?.len() < len {
            f.set_len(len)?;
        }
        // SAFETY: the file is private to this benchmark run (a fresh
        // directory under /dev/shm); it is only ever accessed through the
        // atomics of `Ctl`, by processes of this same binary.
        let map = unsafe { MmapMut::map_mut(&f)? };
        Ok(CtlMap { map })
    }

    pub(crate) fn ctl(&self) -> &Ctl {
        debug_assert!(self.map.len() >= std::mem::size_of::<Ctl>());
        // SAFETY: the mapping is page-aligned (so aligned for `Ctl`), at
        // least `size_of::<Ctl>()` bytes (set in `open`), lives as long as
        // `self`, and `Ctl` is `repr(C)` atomics only, valid for every bit
        // pattern (all zeros included) and shared only through atomics.
        unsafe { &*(self.map.as_ptr() as *const Ctl) }
    }
}

/// What a reader reports at the end of a run (a child process prints it
/// as one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ReaderReport {
    /// Latency percentiles (latency mode only).
    pub latency: Option<LatencyResult>,
    /// Events received (latency mode: all; count mode: up to the last
    /// clock reading, see [`read_count`]).
    pub received: u64,
    /// Count mode: every event received, including those after the last
    /// clock reading.
    #[serde(default)]
    pub total: u64,
    /// Events the path reported lost.
    pub lost: u64,
    /// Clock ticks at the first and last received burst event.
    pub first: u64,
    pub last: u64,
    /// Samples whose receive stamp was before their send stamp (TSC skew
    /// between cores); recorded as 0 ns.
    pub negative: u64,
}

impl ReaderReport {
    /// Events per second the reader received during a burst.
    pub(crate) fn rate(&self, clock: &Clock) -> Option<f64> {
        let ns = clock.ticks_to_ns(self.last.saturating_sub(self.first));
        (self.received > 1 && ns > 0.0).then(|| (self.received - 1) as f64 * 1e9 / ns)
    }
}

/// Reads paced samples until a STOP event (or the path closes) and
/// records each sample's one-way latency; acks every event.
pub(crate) fn read_latency<R: Rx>(rx: &mut R, clock: &Clock, ctl: &Ctl) -> ReaderReport {
    let mut hist = LatencyHist::new();
    let mut rep = ReaderReport::default();
    let stop = std::cell::Cell::new(false);
    let mut idle: u32 = 0;
    let mut on_event = |ev: &Event| {
        let now = clock.now();
        match ev.status {
            op::SAMPLE => {
                let sent = ev.publish_ts as u64;
                if now < sent {
                    rep.negative += 1;
                }
                hist.record_ticks(clock, now.saturating_sub(sent));
            }
            op::STOP => stop.set(true),
            _ => {}
        }
        rep.received += 1;
        // Release: pairs with the Acquire load in `write_paced`.
        ctl.ack.0.store(ev.seq, Ordering::Release);
    };
    loop {
        match rx.poll_with(&mut on_event) {
            Polled::Got(_) => {
                if stop.get() {
                    break;
                }
            }
            Polled::Empty => {
                idle = idle.wrapping_add(1);
                // A lost STOP (lossy paths) must not hang the reader.
                if idle % 4096 == 0 && ctl.stop.0.load(Ordering::Acquire) != 0 {
                    break;
                }
                std::hint::spin_loop();
            }
            Polled::Lost(n) => rep.lost += n,
            Polled::Closed => break,
        }
    }
    rep.latency = Some(hist.summary(""));
    rep
}

/// Counts burst events until STOP, a closed path, or [`Ctl::stop`] once
/// drained. The
/// clock is read at the first event and then every 256 events (reading
/// it per event would slow the reader down).
pub(crate) fn read_count<R: Rx>(rx: &mut R, clock: &Clock, ctl: &Ctl) -> ReaderReport {
    let mut rep = ReaderReport::default();
    let stop = std::cell::Cell::new(false);
    let mut polls: u32 = 0;
    let mut received = 0u64;
    let mut on_event = |ev: &Event| {
        if ev.status == op::STOP {
            stop.set(true);
            return;
        }
        if received == 0 {
            rep.first = clock.now();
            rep.last = rep.first;
            rep.received = 1;
        }
        received += 1;
        if received % 256 == 0 {
            rep.last = clock.now();
            rep.received = received;
        }
        std::hint::black_box(ev);
    };
    loop {
        polls = polls.wrapping_add(1);
        match rx.poll_with(&mut on_event) {
            Polled::Got(_) => {}
            Polled::Empty => {
                // Only a drained reader looks at the flag: the STOP event
                // is the normal end, the flag is for a lossy path that
                // dropped it.
                if polls % 1024 == 0 && ctl.stop.0.load(Ordering::Acquire) != 0 {
                    break;
                }
                std::hint::spin_loop();
            }
            Polled::Lost(n) => rep.lost += n,
            Polled::Closed => break,
        }
        if stop.get() {
            break;
        }
    }
    // `received` counts every event; `rep.received` only up to the last
    // clock reading, so that received / (last - first) is a true rate.
    rep.total = received;
    rep
}

/// What the paced writer did.
#[derive(Clone, Debug, Default)]
pub(crate) struct PacedReport {
    /// Samples sent while measuring (warm-up excluded).
    pub samples: u64,
    /// Samples the reader did not ack within the timeout.
    pub timeouts: u64,
    pub send_errors: u64,
}

/// Pacing of [`write_paced`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pacing {
    /// Warm-up time before samples are recorded, ns.
    pub warmup_ns: f64,
    /// Measuring time, ns.
    pub measure_ns: f64,
    /// After each ack, wait a random time in `gap_ns .. 2 * gap_ns`.
    pub gap_ns: f64,
    /// Give up waiting for an ack after this long (a reader preempted on a
    /// busy machine); counted in `timeouts`.
    pub ack_timeout_ns: f64,
}

/// Sends single timestamped events on an idle path: stamp, send, wait for
/// the ack, wait a random gap, repeat; then sends STOP (and sets
/// [`Ctl::stop`], for paths that may lose the STOP event).
pub(crate) fn write_paced<T: Tx>(tx: &mut T, clock: &Clock, ctl: &Ctl, p: &Pacing) -> PacedReport {
    let mut rep = PacedReport::default();
    let mut rng = XorShift::new(clock.now() | 1);
    let gap = clock.ns_to_ticks(p.gap_ns).max(1);
    let timeout = clock.ns_to_ticks(p.ack_timeout_ns);
    let start = clock.now();
    let warm_end = start + clock.ns_to_ticks(p.warmup_ns);
    let end = warm_end + clock.ns_to_ticks(p.measure_ns);
    let mut ev = Event::default();
    let mut seq = 0u64;
    loop {
        let t = clock.now();
        // At least one measured sample, however long a busy machine kept
        // this thread off its core.
        if t >= end && rep.samples > 0 {
            break;
        }
        seq += 1;
        let measuring = t >= warm_end;
        ev.seq = seq;
        ev.status = if measuring { op::SAMPLE } else { op::WARMUP };
        ev.publish_ts = clock.now() as i64;
        if !tx.send(&ev) {
            rep.send_errors += 1;
            continue;
        }
        let sent = ev.publish_ts as u64;
        // While warming up, a path may still be connecting (iceoryx2
        // delivers only to subscribers it has seen): wait less, count nothing.
        let timeout = if measuring { timeout } else { timeout / 10 };
        // Acquire: pairs with the Release ack store in `read_latency`.
        while ctl.ack.0.load(Ordering::Acquire) < seq {
            if clock.now().wrapping_sub(sent) > timeout {
                if measuring {
                    rep.timeouts += 1;
                }
                break;
            }
            std::hint::spin_loop();
        }
        if measuring {
            rep.samples += 1;
        }
        let until = clock.now() + gap + rng.below(gap);
        while clock.now() < until {
            std::hint::spin_loop();
        }
    }
    ev.seq = seq + 1;
    ev.status = op::STOP;
    tx.send(&ev);
    // Release: pairs with the Acquire stop loads in the readers.
    ctl.stop.0.store(1, Ordering::Release);
    rep
}

/// What a burst writer did.
#[derive(Clone, Debug, Default)]
pub(crate) struct BurstReport {
    pub sent: u64,
    pub elapsed_ticks: u64,
    /// ns per send of each chunk, for a median that ignores chunks in
    /// which the writer was preempted.
    pub chunk_ns: Vec<f64>,
}

/// Events per timed chunk of a burst.
const CHUNK: u64 = 4096;

impl BurstReport {
    /// Median ns per send over the chunks.
    pub(crate) fn median_ns(&self) -> Option<f64> {
        let mut v = self.chunk_ns.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    /// Sends per second over the whole burst.
    pub(crate) fn rate(&self, clock: &Clock) -> Option<f64> {
        let ns = clock.ticks_to_ns(self.elapsed_ticks);
        (ns > 0.0).then(|| self.sent as f64 * 1e9 / ns)
    }
}

/// Sends events in a tight loop for `ns`, timing chunks of [`CHUNK`].
/// With `stop_after`, sends STOP and sets [`Ctl::stop`] at the end.
pub(crate) fn write_burst<T: Tx>(
    tx: &mut T,
    clock: &Clock,
    ctl: &Ctl,
    ns: f64,
    stop_after: bool,
) -> BurstReport {
    let mut rep = BurstReport::default();
    let start = clock.now();
    let end = start + clock.ns_to_ticks(ns);
    let mut ev = Event {
        status: op::BURST,
        ..Event::default()
    };
    let mut seq = 0u64;
    let mut t0 = start;
    loop {
        for _ in 0..CHUNK {
            seq += 1;
            ev.seq = seq;
            ev.price = seq as i64;
            tx.send(&ev);
        }
        let t1 = clock.now();
        rep.chunk_ns.push(clock.ticks_to_ns(t1 - t0) / CHUNK as f64);
        t0 = t1;
        if t1 >= end {
            break;
        }
    }
    rep.sent = seq;
    rep.elapsed_ticks = t0 - start;
    if stop_after {
        ev.seq = seq + 1;
        ev.status = op::STOP;
        tx.send(&ev);
        // Release: pairs with the Acquire stop loads in the readers.
        ctl.stop.0.store(1, Ordering::Release);
    }
    rep
}

/// The time one send takes when sends are spaced out (a feed's normal
/// regime, as opposed to a burst): stamps before and after each send,
/// then a random pause of `gap_ns .. 2 * gap_ns`. Includes one clock read.
pub(crate) fn send_cost_paced<T: Tx>(
    tx: &mut T,
    clock: &Clock,
    ns: f64,
    gap_ns: f64,
) -> LatencyHist {
    let mut hist = LatencyHist::new();
    let mut rng = XorShift::new(clock.now() | 1);
    let gap = clock.ns_to_ticks(gap_ns).max(1);
    let end = clock.now() + clock.ns_to_ticks(ns);
    let mut ev = Event {
        status: op::BURST,
        ..Event::default()
    };
    loop {
        ev.seq += 1;
        let t0 = clock.now();
        if t0 >= end {
            break;
        }
        tx.send(&ev);
        let t1 = clock.now();
        hist.record_ticks(clock, t1 - t0);
        let until = t1 + gap + rng.below(gap);
        while clock.now() < until {
            std::hint::spin_loop();
        }
    }
    hist
}

/// A tiny PRNG for pacing gaps (quality is irrelevant; it only breaks any
/// lock-step between writer and reader).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

/// Spawns the reader thread of an in-process path in `s` and returns once
/// that thread has applied `placement` (pinned, maybe real-time), so the
/// writer never starts timing while its reader still waits for a core.
/// NB: a new thread starts on its creator's core with its creator's
/// policy; under `--realtime` it would otherwise wait out the spinning
/// writer's round-robin slice (100 ms) before it could move.
pub(crate) fn spawn_placed<'scope, 'env, T, F>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    placement: Placement,
    f: F,
) -> std::thread::ScopedJoinHandle<'scope, T>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    let placed = std::sync::Arc::new(std::sync::Barrier::new(2));
    let mine = placed.clone();
    let h = s.spawn(move || {
        placement.apply();
        mine.wait();
        f()
    });
    // Blocking (not spinning) lets the new thread run on this core first.
    placed.wait();
    h
}

/// The 64 bytes of an event in memory order (for byte-stream paths).
pub(crate) fn event_to_bytes(ev: &Event) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..8].copy_from_slice(&ev.ring_seq.to_ne_bytes());
    for (i, w) in ev.payload_words().iter().enumerate() {
        b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

/// Inverse of [`event_to_bytes`].
pub(crate) fn event_from_bytes(b: &[u8; 64]) -> Event {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[8 * i..8 * i + 8]);
        u64::from_ne_bytes(w)
    };
    let words = std::array::from_fn(|i| word(i + 1));
    Event::from_words(word(0), words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// An in-memory path for testing the harness itself.
    struct Queue(std::rc::Rc<std::cell::RefCell<VecDeque<Event>>>);

    impl Tx for Queue {
        fn send(&mut self, ev: &Event) -> bool {
            self.0.borrow_mut().push_back(*ev);
            true
        }
    }

    impl Rx for Queue {
        fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
            match self.0.borrow_mut().pop_front() {
                Some(ev) => {
                    f(&ev);
                    Polled::Got(1)
                }
                None => Polled::Empty,
            }
        }
    }

    #[test]
    fn event_bytes_round_trip() {
        let ev = Event {
            ring_seq: 7,
            status: op::SAMPLE,
            publish_ts: -5,
            price: 123,
            seq: u64::MAX,
            ..Event::default()
        };
        assert_eq!(event_from_bytes(&event_to_bytes(&ev)), ev);
    }

    #[test]
    fn burst_then_count_sees_every_event_and_the_stop() {
        let q = std::rc::Rc::new(std::cell::RefCell::new(VecDeque::new()));
        let (mut tx, mut rx) = (Queue(q.clone()), Queue(q));
        let clock = Clock::monotonic();
        let ctl = Ctl::new();
        let w = write_burst(&mut tx, &clock, &ctl, 0.0, true);
        assert_eq!(w.sent, CHUNK);
        assert_eq!(w.chunk_ns.len(), 1);
        let r = read_count(&mut rx, &clock, &ctl);
        assert_eq!(r.total, CHUNK);
        assert_eq!(r.received, CHUNK);
        assert_eq!(r.lost, 0);
        assert!(r.last >= r.first);
    }

    #[test]
    fn latency_reader_records_only_samples_and_acks_each_event() {
        let q = std::rc::Rc::new(std::cell::RefCell::new(VecDeque::new()));
        let (mut tx, mut rx) = (Queue(q.clone()), Queue(q));
        let clock = Clock::monotonic();
        let ctl = Ctl::new();
        let mut ev = Event::default();
        for (seq, status) in [
            (1, op::WARMUP),
            (2, op::SAMPLE),
            (3, op::SAMPLE),
            (4, op::STOP),
        ] {
            ev.seq = seq;
            ev.status = status;
            ev.publish_ts = clock.now() as i64;
            tx.send(&ev);
        }
        let r = read_latency(&mut rx, &clock, &ctl);
        assert_eq!(r.received, 4);
        assert_eq!(r.latency.unwrap().count, 2);
        assert_eq!(ctl.ack.0.load(Ordering::Relaxed), 4);
    }
}
