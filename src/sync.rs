//! The one door through which atomics enter the crate.
//!
//! Under `--cfg tickring_loom` the ring's protocol runs on loom's model-checked
//! atomics; otherwise on `std`'s. Code that sits in shared memory uses
//! these re-exports only, so the loom model exercises the same orderings
//! that ship. NB: the cfg is `tickring_loom`, not `loom`: RUSTFLAGS reach
//! every crate, and tokio built with `--cfg loom` drops its `net` module,
//! which breaks tokio-tungstenite.

#[cfg(tickring_loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(tickring_loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Busy-wait hint for spinning readers.
#[inline(always)]
pub fn spin_hint() {
    #[cfg(tickring_loom)]
    loom::thread::yield_now();
    #[cfg(not(tickring_loom))]
    std::hint::spin_loop();
}
