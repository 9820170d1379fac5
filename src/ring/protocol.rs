//! The seqlock broadcast protocol, independent of where the memory lives.
//!
//! This module is the part of the ring that the loom model checks: it works
//! on a slice of [`Slot`]s and a cursor word, which in production sit in a
//! shared mapping ([`super::layout`]) and under `cfg(tickring_loom)` in a heap
//! allocation of loom atomics.
//!
//! ## Stamps
//!
//! Every slot has a `stamp` word. For ring sequence `s` (0-based):
//!
//! - `writing(s) = 2s + 1` while the writer is filling the slot with `s`;
//! - `done(s)    = 2s + 2` once the slot holds `s` completely;
//! - `0` if the slot was never written.
//!
//! Sequence `s` always goes to slot `s & mask`, so a slot's stamp only grows:
//! `done(s) < writing(s + capacity)`. A reader that wants `s` and loads a
//! stamp `st` knows: `st == done(s)` -> the event is there; `st < done(s)` ->
//! not written yet; `st > done(s)` -> overwritten (the reader fell a lap
//! behind).
//!
//! ## Orderings (each edge named by both halves)
//!
//! - **E1** `Producer::publish`: `stamp.store(writing(s), Relaxed)` then
//!   `fence(Release)` then the payload stores (Relaxed). Pairs with the
//!   `fence(Acquire)` in `Consumer::poll` that precedes the re-check of the
//!   stamp: if the reader's payload loads saw any store of the new
//!   occupant, the re-check sees `writing(s + capacity)` or later, so a
//!   torn copy is never returned.
//! - **E2** `Producer::publish`: `stamp.store(done(s), Release)` after the
//!   payload. Pairs with the `stamp.load(Acquire)` at the start of
//!   `Consumer::poll`: seeing `done(s)` makes the payload of `s` visible.
//! - **E3** `Producer::publish`: `cursor.store(s + 1, Release)` after E2.
//!   Pairs with the `cursor.load(Acquire)` in `Consumer::resync_position`
//!   and `Consumer::at_newest`/`at_oldest`: a reader that positions itself
//!   from the cursor finds every slot below it complete.
//!
//! The writer never reads anything a reader writes (readers write nothing
//! to shared memory at all), so adding readers cannot slow it down.

use std::ptr::NonNull;

use crate::event::{Event, PAYLOAD_WORDS};
use crate::sync::{fence, AtomicU64, Ordering};

/// One ring slot: a stamp word and the 56-byte event payload, one cache line.
#[repr(C, align(64))]
pub struct Slot {
    /// See the module docs: 0, `writing(s)` or `done(s)`.
    pub(crate) stamp: AtomicU64,
    pub(crate) words: [AtomicU64; PAYLOAD_WORDS],
}

#[cfg(not(tickring_loom))]
const _: () = assert!(std::mem::size_of::<Slot>() == 64);

impl Slot {
    #[cfg(any(tickring_loom, test))]
    pub(crate) fn new() -> Slot {
        Slot {
            stamp: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[inline(always)]
pub(crate) const fn writing(seq: u64) -> u64 {
    2 * seq + 1
}

#[inline(always)]
pub(crate) const fn done(seq: u64) -> u64 {
    2 * seq + 2
}

/// The slots and the write cursor of one ring, by address.
#[derive(Clone, Copy)]
pub(crate) struct RingRef {
    slots: NonNull<Slot>,
    /// `capacity - 1`; capacity is a power of two.
    mask: u64,
    cursor: NonNull<AtomicU64>,
}

// SAFETY: `RingRef` is an address plus a mask; everything it points to is
// accessed only through atomics, which are `Sync`. Whoever builds one
// (`RingRef::new`) guarantees the memory outlives every copy.
unsafe impl Send for RingRef {}

impl RingRef {
    /// # Safety
    ///
    /// - `slots` points to `capacity` initialized, 64-byte-aligned [`Slot`]s
    ///   and `cursor` to an initialized `AtomicU64`;
    /// - `capacity` is a power of two, at least 2;
    /// - both stay valid (mapped) for as long as this `RingRef` or any
    ///   `Producer`/`Consumer` built from it is used.
    pub(crate) unsafe fn new(
        slots: NonNull<Slot>,
        capacity: u64,
        cursor: NonNull<AtomicU64>,
    ) -> Self {
        debug_assert!(capacity.is_power_of_two() && capacity >= 2);
        RingRef {
            slots,
            mask: capacity - 1,
            cursor,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    #[inline(always)]
    fn slot(&self, seq: u64) -> &Slot {
        // SAFETY: `seq & mask < capacity`, so the pointer is inside the slot
        // array that `new`'s caller promised stays valid.
        unsafe { &*self.slots.as_ptr().add((seq & self.mask) as usize) }
    }

    #[inline(always)]
    pub(crate) fn cursor(&self) -> &AtomicU64 {
        // SAFETY: `new`'s caller promised the cursor stays valid.
        unsafe { self.cursor.as_ref() }
    }

    /// The next sequence the writer will publish (= number of events ever
    /// published). Acquire: pairs with E3, the Release store in
    /// `Producer::publish`.
    #[inline]
    pub(crate) fn load_cursor(&self) -> u64 {
        self.cursor().load(Ordering::Acquire)
    }
}

/// The writing side. There is exactly one per ring (the ring file's lock
/// enforces it across processes).
pub(crate) struct Producer {
    ring: RingRef,
    /// Next sequence to publish; always equal to the shared cursor between
    /// calls (the writer is the only one that stores it).
    next: u64,
}

impl Producer {
    pub(crate) fn new(ring: RingRef, next: u64) -> Producer {
        Producer { ring, next }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// Publishes one event; returns its ring sequence. Never waits, never
    /// reads reader state.
    #[inline(always)]
    pub(crate) fn publish(&mut self, ev: &Event) -> u64 {
        let seq = self.next;
        let slot = self.ring.slot(seq);
        let words = ev.payload_words();
        slot.stamp.store(writing(seq), Ordering::Relaxed);
        // E1: Release fence; pairs with the Acquire fence in `Consumer::poll`.
        fence(Ordering::Release);
        for (dst, w) in slot.words.iter().zip(words) {
            dst.store(w, Ordering::Relaxed);
        }
        // E2: Release; pairs with the Acquire stamp load in `Consumer::poll`.
        slot.stamp.store(done(seq), Ordering::Release);
        self.next = seq + 1;
        // E3: Release; pairs with the Acquire load in `RingRef::load_cursor`.
        self.ring.cursor().store(seq + 1, Ordering::Release);
        seq
    }

    /// Stamp currently in the slot that `seq` maps to (for start-up repair).
    pub(crate) fn stamp_of(&self, seq: u64) -> u64 {
        self.ring.slot(seq).stamp.load(Ordering::Acquire)
    }
}

/// What one attempt to read the next sequence found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SlotRead {
    Event(Event),
    /// The next sequence has not been published yet.
    Empty,
    /// The reader fell behind; it skipped `lost` events and now sits half a
    /// lap behind the writer's cursor as it was when the reader looked.
    Overrun {
        lost: u64,
    },
}

/// The reading side: a position and nothing shared. Any number of these may
/// exist, in any processes.
pub(crate) struct Consumer {
    ring: RingRef,
    /// Next sequence this reader wants. In range `0 ..= cursor` (a reader is
    /// never ahead of the writer).
    pos: u64,
}

impl Consumer {
    /// A consumer positioned at the oldest event the ring still holds.
    pub(crate) fn at_oldest(ring: RingRef) -> Consumer {
        let cursor = ring.load_cursor();
        Consumer {
            pos: cursor.saturating_sub(ring.capacity()),
            ring,
        }
    }

    /// A consumer that will see only events published from now on.
    pub(crate) fn at_newest(ring: RingRef) -> Consumer {
        Consumer {
            pos: ring.load_cursor(),
            ring,
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Tries to read the event at the reader's position.
    #[inline(always)]
    pub(crate) fn poll(&mut self) -> SlotRead {
        let seq = self.pos;
        let slot = self.ring.slot(seq);
        let want = done(seq);
        // E2: Acquire; pairs with the Release store of `done(seq)` in `Producer::publish`.
        let st = slot.stamp.load(Ordering::Acquire);
        if st == want {
            let mut words = [0u64; PAYLOAD_WORDS];
            for (w, src) in words.iter_mut().zip(slot.words.iter()) {
                *w = src.load(Ordering::Relaxed);
            }
            // E1: Acquire fence; pairs with the Release fence in `Producer::publish`.
            fence(Ordering::Acquire);
            let again = slot.stamp.load(Ordering::Relaxed);
            if again == want {
                self.pos = seq + 1;
                return SlotRead::Event(Event::from_words(seq, words));
            }
            // Overwritten while we copied: fall through to overrun handling.
        } else if st < want {
            return SlotRead::Empty;
        }
        self.resync_position()
    }

    /// Moves past events that were overwritten. Exactness: the reader
    /// either receives a sequence or counts it in exactly one `lost`,
    /// because `lost` is precisely the distance the position jumps.
    #[cold]
    fn resync_position(&mut self) -> SlotRead {
        let seq = self.pos;
        let cursor = self.ring.load_cursor();
        // Rejoin half a lap behind the writer. NB: rejoining at the oldest
        // retained event (cursor - capacity) puts the reader on the very
        // slot the writer overwrites next, so it is overrun again at once
        // and keeps stealing back the lines the writer is about to write:
        // `tickring bench ring --realtime 10` measured the tight-loop
        // publish cost at 16-27 ns with 1-4 lapped readers that way, and
        // 6.2-6.3 ns (vs 4.8 with none) with this half-lap margin, while the
        // reader received 62 M/s instead of 4.5-7 M/s. The stamp we saw
        // belongs to a sequence >= seq + capacity, so the writer had started
        // it; the cursor may lag by the one in flight, hence the `max` to
        // guarantee progress.
        let rejoin = cursor.saturating_sub(self.ring.capacity() / 2);
        let new_pos = rejoin.max(seq + 1);
        self.pos = new_pos;
        SlotRead::Overrun {
            lost: new_pos - seq,
        }
    }
}

/// An in-process ring on the heap: what the unit tests, Miri and the loom
/// model run the protocol on.
#[cfg(any(test, tickring_loom))]
pub(crate) struct HeapRing {
    slots: Box<[Slot]>,
    cursor: Box<AtomicU64>,
}

#[cfg(any(test, tickring_loom))]
impl HeapRing {
    pub(crate) fn new(capacity: usize) -> HeapRing {
        HeapRing {
            slots: (0..capacity).map(|_| Slot::new()).collect(),
            cursor: Box::new(AtomicU64::new(0)),
        }
    }

    /// The ring's slots and cursor. Callers keep the `HeapRing` alive (an
    /// `Arc` in every thread) while any producer or consumer built from the
    /// result is used.
    pub(crate) fn ring(&self) -> RingRef {
        // SAFETY: the pointers come from the boxed slice (provenance over
        // every slot) and the boxed cursor, which live as long as `self`;
        // capacity is the slice's length; callers outlive their use as
        // documented above.
        unsafe {
            RingRef::new(
                NonNull::new(self.slots.as_ptr() as *mut Slot).expect("non-empty"),
                self.slots.len() as u64,
                NonNull::from(&*self.cursor),
            )
        }
    }
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ev(n: u64) -> Event {
        Event {
            kind: EventKind::Trade as u8,
            price: n as i64,
            qty: -(n as i64),
            seq: n,
            ..Event::default()
        }
    }

    #[test]
    fn reader_sees_events_in_order_then_empty() {
        let heap = HeapRing::new(8);
        let mut p = Producer::new(heap.ring(), 0);
        let mut c = Consumer::at_oldest(heap.ring());
        assert_eq!(c.poll(), SlotRead::Empty);
        for n in 0..5 {
            assert_eq!(p.publish(&ev(n)), n);
        }
        for n in 0..5 {
            match c.poll() {
                SlotRead::Event(e) => {
                    assert_eq!(e.ring_seq, n);
                    assert_eq!(e.seq, n);
                }
                other => panic!("expected event {n}, got {other:?}"),
            }
        }
        assert_eq!(c.poll(), SlotRead::Empty);
    }

    #[test]
    fn lapped_reader_counts_exactly_what_it_lost() {
        let heap = HeapRing::new(4);
        let mut p = Producer::new(heap.ring(), 0);
        let mut c = Consumer::at_oldest(heap.ring());
        for n in 0..11 {
            p.publish(&ev(n));
        }
        // cursor 11, capacity 4: the reader rejoins half a lap behind the
        // cursor, at 9; 0..=8 are lost.
        assert_eq!(c.poll(), SlotRead::Overrun { lost: 9 });
        let mut got = vec![];
        while let SlotRead::Event(e) = c.poll() {
            got.push(e.seq);
        }
        assert_eq!(got, vec![9, 10]);
    }

    #[test]
    fn newest_skips_history_and_oldest_keeps_it() {
        let heap = HeapRing::new(4);
        let mut p = Producer::new(heap.ring(), 0);
        for n in 0..6 {
            p.publish(&ev(n));
        }
        let mut newest = Consumer::at_newest(heap.ring());
        let oldest = Consumer::at_oldest(heap.ring());
        assert_eq!(newest.position(), 6);
        assert_eq!(oldest.position(), 2);
        assert_eq!(newest.poll(), SlotRead::Empty);
        p.publish(&ev(6));
        assert!(matches!(newest.poll(), SlotRead::Event(e) if e.seq == 6));
    }

    #[test]
    fn accounting_is_exact_under_a_concurrent_writer() {
        let total: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };
        let heap = std::sync::Arc::new(HeapRing::new(64));
        // Attach before the writer starts, so every sequence is either
        // received or counted lost by this reader.
        let mut c = Consumer::at_oldest(heap.ring());
        assert_eq!(c.position(), 0);
        let writer_heap = heap.clone();
        let writer = std::thread::spawn(move || {
            let mut p = Producer::new(writer_heap.ring(), 0);
            for n in 0..total {
                p.publish(&ev(n));
            }
        });
        let (mut received, mut lost, mut last) = (0u64, 0u64, None::<u64>);
        // A hang guard, not a speed check: an accounting hole would spin forever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while received + lost < total {
            assert!(
                std::time::Instant::now() < deadline,
                "stuck at position {} with {received} received + {lost} lost",
                c.position()
            );
            match c.poll() {
                SlotRead::Event(e) => {
                    // Never torn: every word agrees with the sequence.
                    assert_eq!(e.seq, e.ring_seq);
                    assert_eq!(e.price, e.ring_seq as i64);
                    assert_eq!(e.qty, -(e.ring_seq as i64));
                    if let Some(l) = last {
                        assert!(e.ring_seq > l);
                    }
                    last = Some(e.ring_seq);
                    received += 1;
                }
                SlotRead::Overrun { lost: n } => lost += n,
                SlotRead::Empty => std::hint::spin_loop(),
            }
        }
        writer.join().unwrap();
        assert_eq!(received + lost, total);
        assert_eq!(c.position(), total);
    }
}

#[cfg(tickring_loom)]
mod loom_model {
    //! `RUSTFLAGS="--cfg tickring_loom" cargo test --lib ring::protocol::loom_model`
    use super::*;
    use crate::event::EventKind;
    use loom::sync::Arc;

    fn ev(n: u64) -> Event {
        // Every payload word depends on n, so a torn copy is detectable.
        Event {
            kind: EventKind::Trade as u8,
            exch_ts: n as i64,
            recv_ts: n as i64 + 1,
            publish_ts: n as i64 + 2,
            price: n as i64 + 3,
            qty: n as i64 + 4,
            seq: n,
            ..Event::default()
        }
    }

    fn check_untorn(e: &Event) {
        let n = e.ring_seq;
        assert_eq!(e.seq, n, "torn read: {e:?}");
        assert_eq!(e.exch_ts, n as i64, "torn read: {e:?}");
        assert_eq!(e.price, n as i64 + 3, "torn read: {e:?}");
        assert_eq!(e.qty, n as i64 + 4, "torn read: {e:?}");
    }

    /// A writer laps a 2-slot ring while a reader reads: every event the
    /// reader returns is whole and in order, and received + lost accounts
    /// for every sequence the reader passed.
    #[test]
    fn publish_read_overrun_and_torn_reads() {
        loom::model(|| {
            let heap = Arc::new(HeapRing::new(2));
            let w = heap.clone();
            let writer = loom::thread::spawn(move || {
                let mut p = Producer::new(w.ring(), 0);
                for n in 0..3 {
                    p.publish(&ev(n));
                }
            });
            let mut c = Consumer::at_oldest(heap.ring());
            // The writer may already have lapped the ring when we attach.
            let start = c.position();
            let (mut received, mut lost) = (0u64, 0u64);
            let mut last = None;
            for _ in 0..3 {
                match c.poll() {
                    SlotRead::Event(e) => {
                        check_untorn(&e);
                        assert!(last.is_none_or(|l| e.ring_seq > l));
                        last = Some(e.ring_seq);
                        received += 1;
                    }
                    SlotRead::Overrun { lost: n } => {
                        assert!(n >= 1);
                        lost += n;
                    }
                    SlotRead::Empty => {}
                }
            }
            writer.join().unwrap();
            assert_eq!(received + lost, c.position() - start);
            // After the writer finished, draining reaches the cursor exactly.
            loop {
                match c.poll() {
                    SlotRead::Event(e) => {
                        check_untorn(&e);
                        received += 1;
                    }
                    SlotRead::Overrun { lost: n } => lost += n,
                    SlotRead::Empty => break,
                }
            }
            assert_eq!(c.position(), 3);
            assert_eq!(received + lost, 3 - start);
        });
    }

    /// A reader attaching at the newest position while the writer runs
    /// never sees a sequence below where it attached.
    #[test]
    fn newest_never_goes_back() {
        loom::model(|| {
            let heap = Arc::new(HeapRing::new(2));
            let w = heap.clone();
            let writer = loom::thread::spawn(move || {
                let mut p = Producer::new(w.ring(), 0);
                for n in 0..2 {
                    p.publish(&ev(n));
                }
            });
            let mut c = Consumer::at_newest(heap.ring());
            let start = c.position();
            for _ in 0..2 {
                if let SlotRead::Event(e) = c.poll() {
                    check_untorn(&e);
                    assert!(e.ring_seq >= start);
                }
            }
            writer.join().unwrap();
        });
    }
}
