//! The ring's byte storage: one zeroed allocation, handed out as slices of regions the
//! ring protocol gives to exactly one side at a time.
//!
//! Its pages are made resident when it is allocated: a ring is a fixed cost, so it shows
//! in the memory a server starts with rather than creeping into the figures of the
//! first connections and messages that pass through it, and no page fault ever lands on
//! the message path.
//!
//! Under `--cfg loom` every 8-byte word has a loom `UnsafeCell` that is "touched" on
//! each access, so loom reports any access the ring's orderings fail to order.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Every record starts at a multiple of this many bytes.
pub(crate) const ALIGN: usize = 8;

/// The smallest page size of the platforms served: every page of a buffer is touched at
/// least once when it is allocated.
#[cfg(not(loom))]
const PAGE: usize = 4096;

pub(crate) struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    #[cfg(loom)]
    words: Box<[loom::cell::UnsafeCell<()>]>,
}

impl Buffer {
    /// Allocates `len` zeroed bytes; `len` must be a non-zero multiple of [`ALIGN`].
    pub(crate) fn new(len: usize) -> Buffer {
        assert!(
            len > 0 && len.is_multiple_of(ALIGN),
            "ring buffer length must be a positive multiple of 8"
        );
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout);
        };
        #[cfg(not(loom))]
        for page in (0..len).step_by(PAGE) {
            // SAFETY: `page < len`: in bounds of the allocation, which nothing else
            // references yet. A volatile write of the zero already there makes the
            // kernel back the page (reading would only map the shared zero page).
            unsafe { ptr.as_ptr().add(page).write_volatile(0) };
        }
        Buffer {
            ptr,
            len,
            #[cfg(loom)]
            words: (0..len / ALIGN)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }

    /// Its length in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.len
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, ALIGN).expect("ring size fits in a Layout")
    }

    /// A shared view of `offset..offset + len`.
    ///
    /// # Safety
    /// The range must be in bounds, and no `&mut` to any of it may exist while the
    /// returned slice lives (the ring protocol gives the range to the consumer only).
    pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len);
        #[cfg(loom)]
        self.touch(offset, len, false);
        // SAFETY: in bounds and not mutably aliased, by this function's contract.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// An exclusive view of `offset..offset + len`.
    ///
    /// # Safety
    /// The range must be in bounds, and no other reference to any of it may exist while
    /// the returned slice lives (the ring protocol gives the range to the producer only).
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's contract, as with UnsafeCell
    pub(crate) unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len);
        #[cfg(loom)]
        self.touch(offset, len, true);
        // SAFETY: in bounds and exclusive, by this function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }

    #[cfg(loom)]
    fn touch(&self, offset: usize, len: usize, write: bool) {
        let end = (offset + len.max(1)).div_ceil(ALIGN);
        for word in &self.words[offset / ALIGN..end] {
            if write {
                word.with_mut(|_| ());
            } else {
                word.with(|_| ());
            }
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this same layout and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

// SAFETY: `Buffer` owns its allocation like a `Box<[u8]>`; which thread may touch which
// bytes is governed by the ring protocol through the `unsafe` accessors above.
unsafe impl Send for Buffer {}
// SAFETY: as above; shared access only hands out slices through `unsafe` fns whose
// contracts rule out overlapping mutable access.
unsafe impl Sync for Buffer {}
