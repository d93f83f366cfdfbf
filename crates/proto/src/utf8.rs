//! Incremental UTF-8 validation that fails on the first invalid byte, even when a code
//! point is split across reads or fragments.

use simdutf8::compat::from_utf8;

/// Validates a text message chunk by chunk, keeping at most three bytes of an unfinished
/// code point between chunks.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Returned when the bytes seen so far can never be valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// The length of the code point that starts with `lead`, or 0 if `lead` cannot start one.
fn code_point_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the message; `is_last` says the message ends with it.
    ///
    /// # Errors
    /// [`InvalidUtf8`] as soon as a byte makes the message invalid, or at the end of the
    /// message if it stops inside a code point.
    pub fn feed(&mut self, mut chunk: &[u8], is_last: bool) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let need = code_point_len(self.partial[0]);
            let take = (need - have).min(chunk.len());
            self.partial[have..have + take].copy_from_slice(&chunk[..take]);
            let filled = have + take;
            chunk = &chunk[take..];
            match from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    // Still a valid prefix of a code point; the chunk is used up.
                    self.partial_len = filled as u8;
                    return if is_last { Err(InvalidUtf8) } else { Ok(()) };
                }
            }
        }
        if let Err(e) = from_utf8(chunk) {
            if e.error_len().is_some() {
                return Err(InvalidUtf8);
            }
            let tail = &chunk[e.valid_up_to()..];
            self.partial[..tail.len()].copy_from_slice(tail);
            self.partial_len = tail.len() as u8;
        }
        if is_last && self.partial_len > 0 {
            return Err(InvalidUtf8);
        }
        Ok(())
    }

    /// Forgets any unfinished code point, ready for the next message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_validate(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut], false)?;
            start = cut;
        }
        v.feed(&bytes[start..], true)
    }

    #[test]
    fn every_split_of_valid_text_passes() {
        let text = "κόσμε a 𝄞 ü €".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(split_validate(text, &[i, j]), Ok(()), "{i} {j}");
            }
        }
    }

    #[test]
    fn fails_on_first_invalid_byte_across_chunks() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xce, 0xba, 0xe1], false), Ok(()));
        // 0xc0 can never continue 0xe1.
        assert_eq!(v.feed(&[0xc0], false), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4], false), Ok(()));
        assert_eq!(v.feed(&[0x90], false), Err(InvalidUtf8), "beyond U+10FFFF");
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xed, 0xa0], false), Err(InvalidUtf8), "surrogate");
    }

    #[test]
    fn truncated_code_point_fails_at_the_end() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xe2, 0x82], false), Ok(()));
        assert_eq!(v.feed(&[], true), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..64), a in 0usize..64, b in 0usize..64) {
            let (a, b) = (a.min(bytes.len()), b.min(bytes.len()));
            let (a, b) = (a.min(b), a.max(b));
            let expected = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(split_validate(&bytes, &[a, b]).is_ok(), expected);
        }
    }
}
