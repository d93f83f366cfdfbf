//! The in-place writer behind `rs_w_*` and `rs_to_*`.
//!
//! The first write of a message reserves a record in an outbound ring (the current
//! client's worker's, else worker 0's) and points the handle's `w_ptr`/`w_cap` at it, so
//! the plugin's inline writers append straight into the ring. `rs_to_*` then publishes
//! that record in place for its own worker, writing the header and ids around the
//! payload, and copies it into the other workers' rings (or shares one heap buffer when
//! it is large), exactly as a copied send would.
//!
//! A message that outgrows its reservation, or finds the ring full, moves once to a heap
//! buffer the app thread keeps ("spills"), and goes out as a copied send; so does a
//! message whose ring gets another record before it is sent (`HostCtx::push` evicts it).

use super::ffi::plugin_slice;
use super::host::{ctx, HostCtx, Written};
use ringsocket_abi as abi;
use std::ffi::c_int;

/// Ids a reservation leaves room for after the payload (more fall back to a copy).
const RESERVED_IDS: usize = 8;
/// A spill buffer larger than this is freed once its message is sent.
const SPILL_KEEP: usize = 256 * 1024;

pub(super) unsafe extern "C" fn host_w_reserve(rs: *mut abi::rs_t, additional: usize) -> c_int {
    // SAFETY: `rs` comes from the plugin, which got it from us for this callback.
    let ctx = unsafe { ctx(rs) };
    ctx.reserve_written(additional)
}

pub(super) unsafe extern "C" fn host_to(
    rs: *mut abi::rs_t,
    target: u32,
    ids: *const u64,
    id_count: usize,
    kind: u32,
) -> c_int {
    // SAFETY: as in host_w_reserve.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `id_count` readable ids.
    let Some(ids) = (unsafe { plugin_slice(ids, id_count) }) else {
        ctx.discard_written();
        return abi::RS_ERR_INVALID;
    };
    ctx.send_written(Recipients::Target(target, ids), kind)
}

pub(super) unsafe extern "C" fn host_to_topic(
    rs: *mut abi::rs_t,
    topic: *const std::ffi::c_void,
    topic_len: usize,
    except: u64,
    kind: u32,
) -> c_int {
    // SAFETY: as in host_w_reserve.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `topic_len` readable bytes.
    let Some(topic) = (unsafe { plugin_slice(topic.cast::<u8>(), topic_len) }) else {
        ctx.discard_written();
        return abi::RS_ERR_INVALID;
    };
    ctx.send_written(Recipients::Topic(topic, except), kind)
}

/// Who a written message goes to.
enum Recipients<'a> {
    /// An `RS_TO_*` target and its ids.
    Target(u32, &'a [u64]),
    /// A topic's subscribers but one client (0: none).
    Topic(&'a [u8], u64),
}

impl HostCtx {
    /// The bytes written so far (`w_len` clamped to what is really there).
    fn written_len(&self) -> usize {
        self.header.w_len.min(self.header.w_cap)
    }

    /// Makes room for `additional` more bytes of the message being written.
    pub(crate) fn reserve_written(&mut self, additional: usize) -> c_int {
        let len = self.written_len();
        let need = match len.checked_add(additional) {
            Some(need) if need <= self.max_msg => need,
            _ => {
                self.write_failed = true;
                return abi::RS_ERR_TOO_BIG;
            }
        };
        if need <= self.header.w_cap {
            return abi::RS_OK;
        }
        if matches!(self.written, Written::Nothing) {
            let w = self.preferred_worker();
            let ring = &mut self.outbound[w];
            if need <= ring.inline_max() {
                let room = ring.inline_max() + 8 * RESERVED_IDS;
                if let Some(draft) = ring.begin_draft(room) {
                    let (ptr, cap) = ring.draft_area(&draft);
                    self.written = Written::Draft { worker: w, draft };
                    self.header.w_ptr = ptr;
                    self.header.w_cap = cap - 8 * RESERVED_IDS;
                    return abi::RS_OK;
                }
            }
        }
        self.spill_written(need);
        abi::RS_OK
    }

    /// The worker whose ring a new message is written in: the current client's.
    fn preferred_worker(&self) -> usize {
        let w = self.current.worker();
        if self.current.0 != 0 && w < self.outbound.len() {
            w
        } else {
            0
        }
    }

    /// Moves the message being written to the spill buffer, with room for `need` bytes.
    fn spill_written(&mut self, need: usize) {
        let len = self.written_len();
        if matches!(self.written, Written::Spilled) && need <= self.spill.capacity() {
            return;
        }
        let mut bigger = Vec::new();
        let target = if matches!(self.written, Written::Spilled) {
            need.max(self.spill.capacity().saturating_mul(2))
                .min(self.max_msg)
        } else {
            need
        };
        let buffer = if self.spill.capacity() >= target {
            &mut self.spill
        } else {
            bigger.reserve_exact(target);
            &mut bigger
        };
        if len > 0 && buffer.as_ptr() != self.header.w_ptr.cast_const() {
            // SAFETY: `w_ptr` holds `len` written bytes (the draft's area or the old
            // spill buffer), and `buffer` has room for `target >= len` bytes; they are
            // distinct allocations (checked).
            unsafe { std::ptr::copy_nonoverlapping(self.header.w_ptr, buffer.as_mut_ptr(), len) };
        }
        if bigger.capacity() > 0 {
            self.spill = bigger;
        }
        // Dropping a draft abandons its reservation: nothing was published.
        self.written = Written::Spilled;
        self.header.w_ptr = self.spill.as_mut_ptr();
        self.header.w_cap = self.spill.capacity();
    }

    /// Another record is about to go into the draft's ring: move the draft out first.
    pub(crate) fn evict_draft(&mut self) {
        let len = self.written_len();
        self.spill_written(len.max(1));
    }

    /// Sends the written message and starts a new one.
    fn send_written(&mut self, to: Recipients<'_>, kind: u32) -> c_int {
        if self.write_failed {
            self.discard_written();
            return abi::RS_ERR_TOO_BIG;
        }
        if self.header.w_len > self.header.w_cap {
            self.discard_written();
            return abi::RS_ERR_INVALID;
        }
        let len = self.header.w_len;
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `w_ptr` holds `len <= w_cap` bytes the plugin wrote (in the
            // draft's reserved record or the spill buffer), which stay in place until
            // this send publishes or copies them (see HostCtx::send).
            unsafe { std::slice::from_raw_parts(self.header.w_ptr, len) }
        };
        let result = match to {
            Recipients::Target(target, ids) => self.send(target, ids, kind, data, true),
            Recipients::Topic(topic, except) => self.publish(topic, except, kind, data, true),
        };
        self.discard_written();
        result
    }

    /// Forgets the message being written (an unsent draft is abandoned).
    pub(crate) fn discard_written(&mut self) {
        self.written = Written::Nothing;
        self.write_failed = false;
        self.header.w_len = 0;
        self.header.w_cap = 0;
        self.header.w_ptr = std::ptr::null_mut();
        if self.spill.capacity() > SPILL_KEEP {
            self.spill = Vec::new();
        }
    }
}
