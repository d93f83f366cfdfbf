//! Writing a message in place into the outbound ring (`rs_w_*` in C).

use crate::{Context, Error, Kind, To};

/// A message being written in place: every write appends straight into the ring's
/// reserved record (a message larger than that moves to the heap once). Send it with
/// [`Writer::send`]; a writer dropped unsent leaves its bytes for the next writer of
/// the same callback, as RingSocket did (call [`Writer::send`] or write nothing).
pub struct Writer<'c, 'a> {
    ctx: &'c mut Context<'a>,
    /// A write failed: sending fails.
    failed: Option<Error>,
}

macro_rules! put_int {
    ($($name:ident, $be:ident: $t:ty;)*) => {$(
        /// Appends an integer in host byte order.
        pub fn $name(&mut self, v: $t) -> &mut Self {
            self.put(&v.to_ne_bytes())
        }
        /// Appends an integer in network byte order (big-endian).
        pub fn $be(&mut self, v: $t) -> &mut Self {
            self.put(&v.to_be_bytes())
        }
    )*};
}

impl<'c, 'a> Writer<'c, 'a> {
    pub(crate) fn new(ctx: &'c mut Context<'a>) -> Self {
        Writer { ctx, failed: None }
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        if let Err(e) = self.try_put(bytes) {
            self.failed.get_or_insert(e);
        }
        self
    }

    /// Appends a string's bytes.
    pub fn put_str(&mut self, s: &str) -> &mut Self {
        self.put(s.as_bytes())
    }

    put_int! {
        put_u8, put_u8_be: u8;
        put_u16, put_u16_be: u16;
        put_u32, put_u32_be: u32;
        put_u64, put_u64_be: u64;
        put_i8, put_i8_be: i8;
        put_i16, put_i16_be: i16;
        put_i32, put_i32_be: i32;
        put_i64, put_i64_be: i64;
    }

    /// Bytes written so far.
    pub fn len(&mut self) -> usize {
        self.ctx.header().w_len
    }

    /// Whether nothing is written yet.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    fn try_put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let h = self.ctx.header();
        if h.w_cap.saturating_sub(h.w_len) < bytes.len() {
            let (api, raw) = (self.ctx.api, self.ctx.raw);
            // SAFETY: live handle.
            crate::error::check(unsafe { (api.w_reserve)(raw, bytes.len()) })?;
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let h = self.ctx.header();
        // SAFETY: after w_reserve, `w_ptr` has room for `w_cap >= w_len + len` bytes,
        // which the server reserved for this message and nothing else touches.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), h.w_ptr.add(h.w_len), bytes.len()) };
        h.w_len += bytes.len();
        Ok(())
    }

    /// Sends what was written as one message of `kind` to `to`.
    ///
    /// # Errors
    /// The first write's error ([`Error::TooBig`]), or the send's (see
    /// [`Context::send`]). Either way the message is gone.
    pub fn send(self, to: To<'_>, kind: Kind) -> Result<(), Error> {
        let result = self.ctx.send_written(to, kind);
        match self.failed {
            Some(e) => Err(e),
            None => result,
        }
    }
}

impl std::io::Write for Writer<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.try_put(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
