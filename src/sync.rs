//! The one door through which atomics enter the crate.
//!
//! Under `--cfg loom` the ring's protocol runs on loom's model-checked
//! atomics; otherwise on `std`'s. Code that sits in shared memory uses
//! these re-exports only, so the loom model exercises the same orderings
//! that ship.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Busy-wait hint for spinning readers.
#[inline(always)]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
