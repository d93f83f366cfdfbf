//! Posting events to the app thread from the app's own threads.

use crate::error::check;
use crate::Error;
use ringsocket_abi as abi;

/// Posts events to the app's [`crate::App::event`] from any thread. Cheap to clone.
///
/// Posting never blocks: a full queue is [`Error::Full`] (try again later, or drop),
/// an event larger than `max_event_size` is [`Error::TooBig`], and once the server
/// has stopped the app, [`Error::Closed`]. The handle is valid until the app's state
/// is dropped (its destroy): stop and join the threads holding senders in your app's
/// `Drop`.
#[derive(Debug, Clone, Copy)]
pub struct EventSender(*mut abi::rs_event_handle);

// SAFETY: the ABI makes the event handle's `post` thread-safe, and the handle lives as
// long as the app (see the type's docs).
unsafe impl Send for EventSender {}
// SAFETY: as above: `post` takes the handle from any number of threads at once.
unsafe impl Sync for EventSender {}

impl EventSender {
    pub(crate) fn new(handle: *mut abi::rs_event_handle) -> Self {
        EventSender(handle)
    }

    /// Queues a copy of `event` for the app thread and wakes it.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::TooBig`] or [`Error::Closed`], as above.
    pub fn post(&self, event: &[u8]) -> Result<(), Error> {
        if self.0.is_null() {
            return Err(Error::Closed);
        }
        // SAFETY: the handle came from the server and is live (see the type's docs);
        // the pointer and length describe a live slice.
        check(unsafe { ((*self.0).post)(self.0, event.as_ptr().cast(), event.len()) })
    }
}
