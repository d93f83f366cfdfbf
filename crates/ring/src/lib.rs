//! Lock-free single-producer/single-consumer rings of variable-size records, and the
//! sleep/wake protocol that lets each side park without missing the other's news.
//!
//! * [`channel`] makes a bounded ring of bytes split into a [`Producer`] and a
//!   [`Consumer`]. A record is any byte string that fits; it is written in place by the
//!   producer ([`Producer::try_push_with`]) and read in place by the consumer
//!   ([`Consumer::pop_with`]), so nothing is allocated or copied twice.
//! * [`SleepState`] is the "I am about to sleep" word a consumer publishes before it
//!   parks (on a futex, or in `epoll_wait`) and that producers check after publishing.
//!
//! What it does not do: grow, block, or know what the records mean. A full ring makes
//! `try_push_with` return [`Full`]; the caller decides whether to wait or to stop reading.
//!
//! Memory orderings are documented where each atomic is touched; the crate is model
//! checked with `loom` (`RUSTFLAGS="--cfg loom" cargo test -p ringsocket-ring --release`).

mod buffer;
mod ring;
mod sleep;
mod sync;

pub use ring::{channel, Consumer, Full, Observer, Producer, Reservation, RECORD_OVERHEAD};
pub use sleep::SleepState;
