//! The core-to-core cache-line handoff floor: two threads pinned to the
//! writer and reader cores ping-pong one `AtomicU64`; half of a round trip
//! is the least any shared-memory path can take to move a value one way.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::harness::{spawn_placed, Padded};
use super::super::hist::{Clock, LatencyHist};
use super::super::Placement;

/// Value the pinging side stores to make the ponging thread exit.
const QUIT: u64 = u64::MAX;

/// Measures `measure_ns` of round trips after `warmup_ns`, with a random
/// pause of `gap_ns .. 2 * gap_ns` between them (like the other paths, so
/// the line starts each round in the same state). Records RTT / 2.
pub(crate) fn measure(
    clock: &Clock,
    reader: Placement,
    warmup_ns: f64,
    measure_ns: f64,
    gap_ns: f64,
) -> LatencyHist {
    let line = Padded(AtomicU64::new(0));
    let mut hist = LatencyHist::new();
    std::thread::scope(|s| {
        spawn_placed(s, reader, || {
            let mut expect = 1u64;
            loop {
                // Acquire: pairs with the Release store of `2k + 1` below.
                let v = line.0.load(Ordering::Acquire);
                if v == QUIT {
                    break;
                }
                if v == expect {
                    // Release: pairs with the Acquire spin of the pinger.
                    line.0.store(v + 1, Ordering::Release);
                    expect += 2;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let gap = clock.ns_to_ticks(gap_ns).max(1);
        let start = clock.now();
        let warm_end = start + clock.ns_to_ticks(warmup_ns);
        let end = warm_end + clock.ns_to_ticks(measure_ns);
        let mut rng = clock.now() | 1;
        let mut k = 0u64;
        loop {
            let t0 = clock.now();
            // At least one measured round trip, even on a starved core.
            if t0 >= end && hist.count() > 0 {
                break;
            }
            let ping = 2 * k + 1;
            // Release: pairs with the Acquire load of the ponging thread.
            line.0.store(ping, Ordering::Release);
            // Acquire: pairs with the Release store of `ping + 1`.
            while line.0.load(Ordering::Acquire) != ping + 1 {
                std::hint::spin_loop();
            }
            let t1 = clock.now();
            if t0 >= warm_end {
                hist.record_ns((clock.ticks_to_ns(t1 - t0) / 2.0).round() as u64);
            }
            k += 1;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let until = clock.now() + gap + rng % gap;
            while clock.now() < until {
                std::hint::spin_loop();
            }
        }
        line.0.store(QUIT, Ordering::Release);
    });
    hist
}

/// The same floor measured the way every other path is: one way, with
/// clock stamps taken on the two cores. The writer stores its send stamp
/// into the shared line, the reader spins until the line changes, stamps,
/// records the difference and acks through `ack`; the writer then waits a
/// random gap. On this kind of machine it comes out near twice the
/// round-trip half, because a one-way handoff pays for invalidating the
/// reader's copy before the reader can fetch the new value, while in a
/// ping-pong each side's store usually hits a line it just fetched.
pub(crate) fn measure_one_way(
    clock: &Clock,
    reader: Placement,
    warmup_ns: f64,
    measure_ns: f64,
    gap_ns: f64,
) -> LatencyHist {
    let line = Padded(AtomicU64::new(0));
    let ack = Padded(AtomicU64::new(0));
    let mut hist = LatencyHist::new();
    let gap = clock.ns_to_ticks(gap_ns).max(1);
    let start = clock.now();
    let warm_end = start + clock.ns_to_ticks(warmup_ns);
    let end = warm_end + clock.ns_to_ticks(measure_ns);
    std::thread::scope(|s| {
        let reader = spawn_placed(s, reader, || {
            let mut hist = LatencyHist::new();
            let mut last = 0u64;
            loop {
                // Acquire: pairs with the Release store of the stamp below.
                let v = line.0.load(Ordering::Acquire);
                if v == last {
                    std::hint::spin_loop();
                    continue;
                }
                let now = clock.now();
                if v == QUIT {
                    break;
                }
                last = v;
                if v >= warm_end {
                    hist.record_ticks(clock, now.saturating_sub(v));
                }
                // The stamp itself is the ack (a count would fall out of
                // step for good after one value the reader did not see).
                // Release: pairs with the Acquire spin of the writer.
                ack.0.store(v, Ordering::Release);
            }
            hist
        });
        let mut rng = clock.now() | 1;
        let mut measured = 0u64;
        loop {
            let t = clock.now();
            // At least one measured handoff, even on a starved core.
            if t >= end && measured > 0 {
                break;
            }
            if t >= warm_end {
                measured += 1;
            }
            // Release: pairs with the Acquire load of the reader.
            line.0.store(t, Ordering::Release);
            let timeout = t + clock.ns_to_ticks(50e6);
            // Acquire: pairs with the Release ack store of the reader.
            while ack.0.load(Ordering::Acquire) < t && clock.now() < timeout {
                std::hint::spin_loop();
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let until = clock.now() + gap + rng % gap;
            while clock.now() < until {
                std::hint::spin_loop();
            }
        }
        line.0.store(QUIT, Ordering::Release);
        hist = reader.join().unwrap_or_default();
    });
    hist
}
