//! What every host function does with a (pointer, length) pair a plugin passes in.

/// A slice a plugin passed as pointer and length: `None` if the pointer is NULL with a
/// non-zero length, empty (whatever the pointer) for length 0.
///
/// # Safety
/// A non-NULL `ptr` must point at `len` readable, initialised `T`s that outlive `'a`.
pub(super) unsafe fn plugin_slice<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    match (ptr.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: per this function's contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}
