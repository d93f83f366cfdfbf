//! The record formats carried by the rings: worker→app ("inbound") and app→worker
//! ("outbound"). Every record starts with a fixed little-endian header.

/// Worker→app records: a client opened, sent a message, or closed.
pub(crate) mod inbound {
    /// A client completed the handshake. `a` = endpoint index in the app, `b` =
    /// negotiated subprotocol index + 1 (0: none).
    pub(crate) const OPEN: u8 = 1;
    /// A complete message; `msg_kind` is `RS_BIN` or `RS_UTF8`; the payload follows.
    pub(crate) const READ: u8 = 2;
    /// The client is gone; `a` = its close code.
    pub(crate) const CLOSE: u8 = 3;
    /// Header length: kind u8, msg_kind u8, a u16, b u32, client u64.
    pub(crate) const HEADER: usize = 16;

    /// A decoded inbound header.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Header {
        pub(crate) kind: u8,
        pub(crate) msg_kind: u8,
        pub(crate) a: u16,
        pub(crate) b: u32,
        pub(crate) client: u64,
    }

    impl Header {
        pub(crate) fn write(&self, out: &mut [u8]) {
            out[0] = self.kind;
            out[1] = self.msg_kind;
            out[2..4].copy_from_slice(&self.a.to_le_bytes());
            out[4..8].copy_from_slice(&self.b.to_le_bytes());
            out[8..16].copy_from_slice(&self.client.to_le_bytes());
        }

        pub(crate) fn read(rec: &[u8]) -> Header {
            Header {
                kind: rec[0],
                msg_kind: rec[1],
                a: u16::from_le_bytes([rec[2], rec[3]]),
                b: u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]),
                client: super::read_u64(&rec[8..16]),
            }
        }
    }
}

/// App→worker records: send a message to clients, or close one.
pub(crate) mod outbound {
    /// Send the payload as one frame of `msg_kind` to the targets.
    pub(crate) const SEND: u8 = 1;
    /// Close `ids[0]`; the payload is the close code (u16 BE) and reason.
    pub(crate) const CLOSE: u8 = 2;
    /// The app has handled the CLOSE record of `ids[0]`: everything it will ever send
    /// that client is already in the ring, so the worker may send the close frame.
    pub(crate) const CLOSED: u8 = 3;
    /// The targets are exactly the listed ids.
    pub(crate) const TO_LIST: u8 = 1;
    /// The targets are every client of the app except the listed ids (sorted).
    pub(crate) const TO_ALL_EXCEPT: u8 = 2;
    /// Header length: op u8, msg_kind u8, target u8, flags u8, id_count u32.
    pub(crate) const HEADER: usize = 8;

    /// A decoded outbound record.
    pub(crate) struct Record<'a> {
        pub(crate) op: u8,
        pub(crate) msg_kind: u8,
        pub(crate) target: u8,
        /// `indirect::SEND_SHARED` or 0.
        pub(crate) flags: u8,
        pub(crate) ids: &'a [u8],
        pub(crate) payload: &'a [u8],
    }

    impl<'a> Record<'a> {
        /// The record's length for `id_count` ids and `payload_len` bytes.
        pub(crate) fn len(id_count: usize, payload_len: usize) -> usize {
            HEADER + 8 * id_count + payload_len
        }

        #[allow(clippy::too_many_arguments)] // one argument per record field
        pub(crate) fn write(
            out: &mut [u8],
            op: u8,
            msg_kind: u8,
            target: u8,
            flags: u8,
            ids: &[u64],
            payloads: &[&[u8]],
        ) {
            out[0] = op;
            out[1] = msg_kind;
            out[2] = target;
            out[3] = flags;
            out[4..8].copy_from_slice(&(ids.len() as u32).to_le_bytes());
            let mut at = HEADER;
            for id in ids {
                out[at..at + 8].copy_from_slice(&id.to_le_bytes());
                at += 8;
            }
            for payload in payloads {
                out[at..at + payload.len()].copy_from_slice(payload);
                at += payload.len();
            }
        }

        pub(crate) fn read(rec: &'a [u8]) -> Record<'a> {
            let count = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]) as usize;
            let (ids, payload) = rec[HEADER..].split_at(8 * count);
            Record {
                op: rec[0],
                msg_kind: rec[1],
                target: rec[2],
                flags: rec[3],
                ids,
                payload,
            }
        }

        /// The target ids.
        pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + 'a {
            self.ids.chunks_exact(8).map(super::read_u64)
        }

        /// Whether `id` is in the (sorted) id list.
        pub(crate) fn lists(&self, id: u64) -> bool {
            let n = self.ids.len() / 8;
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let v = super::read_u64(&self.ids[mid * 8..mid * 8 + 8]);
                match v.cmp(&id) {
                    std::cmp::Ordering::Equal => return true,
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                }
            }
            false
        }
    }
}

fn read_u64(b: &[u8]) -> u64 {
    let mut le = [0; 8];
    le.copy_from_slice(b);
    u64::from_le_bytes(le)
}

/// The worker that owns a client id (its low 8 bits).
pub(crate) fn worker_of(client: u64) -> usize {
    (client & 0xff) as usize
}

/// Builds the client id of a worker's `seq`-th connection: never 0, never reused.
pub(crate) fn client_id(worker: usize, seq: u64) -> u64 {
    (seq << 8) | worker as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_round_trip_and_lookup() {
        let ids = [3u64, 9, 270, 1 << 40];
        let mut buf = vec![0; outbound::Record::len(ids.len(), 5)];
        outbound::Record::write(
            &mut buf,
            outbound::SEND,
            1,
            outbound::TO_ALL_EXCEPT,
            0,
            &ids,
            &[b"he", b"llo"],
        );
        let rec = outbound::Record::read(&buf);
        assert_eq!(
            (rec.op, rec.msg_kind, rec.target, rec.payload),
            (outbound::SEND, 1, outbound::TO_ALL_EXCEPT, &b"hello"[..])
        );
        assert_eq!(rec.ids().collect::<Vec<_>>(), ids);
        for id in ids {
            assert!(rec.lists(id));
        }
        for id in [0, 4, 271, u64::MAX] {
            assert!(!rec.lists(id));
        }
    }

    #[test]
    fn inbound_round_trip() {
        let h = inbound::Header {
            kind: inbound::CLOSE,
            msg_kind: 0,
            a: 1006,
            b: 7,
            client: client_id(3, 99),
        };
        let mut buf = [0; inbound::HEADER];
        h.write(&mut buf);
        assert_eq!(inbound::Header::read(&buf), h);
        assert_eq!(worker_of(h.client), 3);
    }
}

/// Large payloads cross the rings as a pointer to a heap buffer instead of inline, so
/// rings stay small whatever `max_ws_msg_size` is. Worker→app: the `Vec` a message was
/// assembled in moves to the app thread, which frees it after the read callback.
/// App→worker: one shared `Arc<[u8]>` per message, with one reference per worker.
pub(crate) mod indirect {
    use std::sync::Arc;

    /// `inbound::Header::b` of a READ record whose payload is an encoded `Vec`.
    pub(crate) const READ_VEC: u32 = 1;
    /// The flags byte of an outbound SEND record whose payload is an encoded `Arc<[u8]>`.
    pub(crate) const SEND_SHARED: u8 = 1;
    /// Bytes of an encoded `Vec` (pointer, length, capacity).
    pub(crate) const VEC_LEN: usize = 24;
    /// Bytes of an encoded `Arc<[u8]>` (pointer, length).
    pub(crate) const SHARED_LEN: usize = 16;

    /// The payload size above which a ring of `max_record_len` carries messages
    /// indirectly: a quarter of the largest record, and at most 64 KiB (copying more
    /// than that costs more than an allocation).
    pub(crate) fn threshold(max_record_len: usize) -> usize {
        (max_record_len / 4).min(64 * 1024)
    }

    /// Encodes `v`'s parts. The caller must `mem::forget(v)` once the record carrying
    /// them is published (and keep `v` otherwise).
    pub(crate) fn vec_parts(v: &Vec<u8>) -> [u8; VEC_LEN] {
        let mut out = [0u8; VEC_LEN];
        out[..8].copy_from_slice(&(v.as_ptr() as u64).to_le_bytes());
        out[8..16].copy_from_slice(&(v.len() as u64).to_le_bytes());
        out[16..].copy_from_slice(&(v.capacity() as u64).to_le_bytes());
        out
    }

    /// Takes back a `Vec` from its encoded parts.
    ///
    /// # Safety
    /// `bytes` must be [`vec_parts`] of a `Vec<u8>` that was then forgotten, and this
    /// must be the only call for it.
    pub(crate) unsafe fn take_vec(bytes: &[u8]) -> Vec<u8> {
        let word = |i: usize| {
            u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes")) as usize
        };
        // SAFETY: per this function's contract the parts describe a live, forgotten
        // Vec<u8> from the global allocator, whose ownership we take exactly once.
        unsafe { Vec::from_raw_parts(word(0) as *mut u8, word(1), word(2)) }
    }

    /// Encodes one reference to `shared` (the caller gives it up).
    pub(crate) fn shared_parts(shared: Arc<[u8]>) -> [u8; SHARED_LEN] {
        let len = shared.len();
        let ptr = Arc::into_raw(shared) as *const u8;
        let mut out = [0u8; SHARED_LEN];
        out[..8].copy_from_slice(&(ptr as u64).to_le_bytes());
        out[8..].copy_from_slice(&(len as u64).to_le_bytes());
        out
    }

    /// Takes back one reference encoded by [`shared_parts`].
    ///
    /// # Safety
    /// `bytes` must come from [`shared_parts`], and each encoding is taken back once.
    pub(crate) unsafe fn take_shared(bytes: &[u8]) -> Arc<[u8]> {
        let ptr = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize as *const u8;
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        // SAFETY: per this function's contract, this is a reference Arc::into_raw gave up.
        unsafe { Arc::from_raw(std::ptr::slice_from_raw_parts(ptr, len)) }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips() {
            let v = vec![1u8, 2, 3];
            let parts = vec_parts(&v);
            std::mem::forget(v);
            // SAFETY: parts of a forgotten Vec, taken once.
            assert_eq!(unsafe { take_vec(&parts) }, [1, 2, 3]);
            let shared: Arc<[u8]> = Arc::from(&b"abc"[..]);
            let parts = [shared_parts(shared.clone()), shared_parts(shared.clone())];
            for p in &parts {
                // SAFETY: each encoded reference is taken once.
                assert_eq!(&*unsafe { take_shared(p) }, b"abc");
            }
            assert_eq!(Arc::strong_count(&shared), 1);
        }
    }
}
