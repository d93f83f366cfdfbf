//! Messages from clients, and typed reads of them.

use crate::Error;

/// A message, borrowed from the server's ring for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Text or binary, for messages written with [`crate::Writer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Binary.
    Binary,
    /// Text (must be valid UTF-8).
    Text,
}

impl<'a> Message<'a> {
    /// The ABI kind and the bytes.
    pub(crate) fn raw(self) -> (u32, &'a [u8]) {
        match self {
            Message::Text(t) => (ringsocket_abi::RS_UTF8, t.as_bytes()),
            Message::Binary(b) => (ringsocket_abi::RS_BIN, b),
        }
    }

    /// Its kind.
    pub fn kind(self) -> Kind {
        match self {
            Message::Text(_) => Kind::Text,
            Message::Binary(_) => Kind::Binary,
        }
    }

    /// Its bytes, whatever its kind.
    pub fn bytes(self) -> &'a [u8] {
        self.raw().1
    }

    /// The text of a text message; [`Error::WrongKind`] (close 4901) for binary.
    pub fn text(self) -> Result<&'a str, Error> {
        match self {
            Message::Text(t) => Ok(t),
            Message::Binary(_) => Err(Error::WrongKind),
        }
    }

    /// A zero-copy reader over a binary message; [`Error::WrongKind`] for text.
    pub fn binary(self) -> Result<Reader<'a>, Error> {
        match self {
            Message::Binary(b) => Ok(Reader(b)),
            Message::Text(_) => Err(Error::WrongKind),
        }
    }

    /// A text message parsed as JSON into `T`; [`Error::Parse`] (close 4900) if it
    /// does not parse, [`Error::WrongKind`] for binary.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        serde_json::from_str(self.text()?).map_err(|e| Error::Parse(e.to_string()))
    }

    /// A text message parsed as JSON into `T`, borrowing strings from the message.
    #[cfg(feature = "json")]
    pub fn json_borrowed<T: serde::Deserialize<'a>>(self) -> Result<T, Error> {
        serde_json::from_str(self.text()?).map_err(|e| Error::Parse(e.to_string()))
    }
}

/// Reads fields from the front of a binary message without copying it. Every read
/// past the end is [`Error::WrongSize`] (close 4900); [`Reader::finish`] checks that
/// nothing is left, as RingSocket's read macros did.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(&'a [u8]);

macro_rules! read_int {
    ($($name:ident, $be:ident: $t:ty;)*) => {$(
        /// The next integer, in host byte order.
        pub fn $name(&mut self) -> Result<$t, Error> {
            Ok(<$t>::from_ne_bytes(self.array()?))
        }
        /// The next integer, in network byte order (big-endian).
        pub fn $be(&mut self) -> Result<$t, Error> {
            Ok(<$t>::from_be_bytes(self.array()?))
        }
    )*};
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, borrowed.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(Error::WrongSize);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    read_int! {
        u8_, u8_be: u8;
        u16, u16_be: u16;
        u32, u32_be: u32;
        u64, u64_be: u64;
        i8_, i8_be: i8;
        i16, i16_be: i16;
        i32, i32_be: i32;
        i64, i64_be: i64;
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        self.u8_()
    }

    /// Everything left, borrowed.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.0.len()
    }

    /// [`Error::WrongSize`] unless the whole message was read.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::WrongSize)
        }
    }
}
