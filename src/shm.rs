//! What may live in shared memory.

/// A type that may be placed in memory shared between processes and viewed
/// through a reference into a mapping.
///
/// # Safety
///
/// Implementors guarantee that:
/// - the type is `#[repr(C)]` (or `#[repr(transparent)]` over such a type),
///   so its layout is the same in every build that shares the file;
/// - it contains no pointers, references, file descriptors or anything
///   else whose meaning is private to one process;
/// - every bit pattern (including all zeros, which is what a fresh file
///   holds) is a valid value, and it has no padding that a reader could
///   observe as uninitialized;
/// - it has no `Drop` glue: the memory outlives any one process;
/// - all fields that are written while other processes may read them are
///   atomics from [`crate::sync`].
pub unsafe trait ShmSafe: Sized {}
