//! Clocks used on the data path.

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, through the vDSO: no
/// syscall). Event timestamps and the writer heartbeat use this clock so
/// that they compare across processes and with exchange timestamps.
#[inline]
pub fn now_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Nanoseconds of CLOCK_MONOTONIC, for intervals inside one process.
#[inline]
pub fn monotonic_ns() -> i64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

#[inline]
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    // Both clocks exist on every Linux kernel, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}
