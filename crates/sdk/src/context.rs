//! The handle a callback talks to the server through.

use crate::error::check;
use crate::{ClientId, CloseCode, Error, EventSender, Kind, Message};
use ringsocket_abi as abi;
use std::ffi::c_int;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Who a message goes to.
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// The client of the current `open` or `read` callback.
    Current,
    /// One client.
    Client(ClientId),
    /// Each of these clients (duplicates get it once).
    Clients(&'a [ClientId]),
    /// Every client of the app.
    Every,
    /// Every client of the app but these.
    EveryExcept(&'a [ClientId]),
    /// Every subscriber of the topic (see [`Context::subscribe`]) but `except`.
    Topic {
        /// The topic's name (1 to 255 bytes).
        topic: &'a [u8],
        /// A subscriber to leave out (typically the sender).
        except: Option<ClientId>,
    },
}

impl To<'_> {
    fn raw(&self) -> (u32, &[ClientId]) {
        match self {
            To::Current => (abi::RS_TO_CUR, &[]),
            To::Client(c) => (abi::RS_TO_SINGLE, std::slice::from_ref(c)),
            To::Clients(c) => (abi::RS_TO_MULTI, c),
            To::Every => (abi::RS_TO_EVERY, &[]),
            To::EveryExcept(c) => (abi::RS_TO_EVERY_EXCEPT, c),
            To::Topic { .. } => unreachable!("topics are sent by publish"),
        }
    }
}

/// What the server keeps about a connected client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its address (the TCP peer; behind a proxy see `X-Forwarded-For` at open).
    pub peer: Option<SocketAddr>,
    /// The `endpoint_id` of the endpoint it connected to.
    pub endpoint_id: u16,
}

/// An ABI address as a socket address.
pub(crate) fn socket_addr(a: &abi::rs_addr) -> Option<SocketAddr> {
    let ip = match a.family {
        abi::RS_ADDR_IPV4 => IpAddr::V4(Ipv4Addr::new(a.ip[0], a.ip[1], a.ip[2], a.ip[3])),
        abi::RS_ADDR_IPV6 => IpAddr::V6(Ipv6Addr::from(a.ip)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, a.port))
}

/// The server's settings an app may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConf {
    /// Worker threads.
    pub workers: u16,
    /// Apps loaded.
    pub apps: u16,
    /// The largest message, either way.
    pub max_message: u64,
    /// Events this app's queue holds.
    pub event_queue_len: u32,
    /// The largest event.
    pub max_event_size: u32,
}

/// The handle through which a callback talks to the server. It lives for one callback.
pub struct Context<'a> {
    pub(crate) raw: *mut abi::rs_t,
    pub(crate) api: &'a abi::rs_host_api,
}

impl<'a> Context<'a> {
    /// # Safety
    /// `raw` must be the live handle the server passed to the current callback.
    pub(crate) unsafe fn new(raw: *mut abi::rs_t) -> Self {
        // SAFETY: the server guarantees every rs_t starts with an rs_header whose api
        // pointer is valid for the life of the process.
        let api = unsafe { &*(*(raw as *const abi::rs_header)).api };
        Context { raw, api }
    }

    pub(crate) fn header(&mut self) -> &mut abi::rs_header {
        // SAFETY: the handle starts with an rs_header the server owns and only this
        // callback's thread touches while it runs.
        unsafe { &mut *self.raw.cast::<abi::rs_header>() }
    }

    /// Sends a message (copied into the outbound ring) to `to`.
    ///
    /// # Errors
    /// [`Error::WrongCallback`] for [`To::Current`] outside `open`/`read`,
    /// [`Error::TooBig`] past the size limit.
    pub fn send(&mut self, to: To<'_>, msg: Message<'_>) -> Result<(), Error> {
        let (kind, data) = msg.raw();
        if let To::Topic { topic, except } = to {
            // SAFETY: live handle; the pointers and lengths describe live slices.
            return check(unsafe {
                (self.api.publish)(
                    self.raw,
                    topic.as_ptr().cast(),
                    topic.len(),
                    except.map_or(0, |c| c.0),
                    kind,
                    data.as_ptr().cast(),
                    data.len(),
                )
            });
        }
        let (target, ids) = to.raw();
        // SAFETY: `raw` is the live handle; the pointers and lengths describe live slices
        // (`ClientId` is `repr(transparent)` over u64).
        check(unsafe {
            (self.api.send)(
                self.raw,
                target,
                ids.as_ptr().cast(),
                ids.len(),
                kind,
                data.as_ptr().cast(),
                data.len(),
            )
        })
    }

    /// Sends to the client of the current `open` or `read` callback.
    ///
    /// # Errors
    /// As [`Context::send`].
    pub fn reply(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.send(To::Current, msg)
    }

    /// Sends to one client (silently dropped if it is gone).
    ///
    /// # Errors
    /// As [`Context::send`].
    pub fn send_to(&mut self, client: ClientId, msg: Message<'_>) -> Result<(), Error> {
        self.send(To::Client(client), msg)
    }

    /// Sends to each of `clients`.
    ///
    /// # Errors
    /// As [`Context::send`].
    pub fn send_to_many(&mut self, clients: &[ClientId], msg: Message<'_>) -> Result<(), Error> {
        self.send(To::Clients(clients), msg)
    }

    /// Sends to every client of this app.
    ///
    /// # Errors
    /// As [`Context::send`].
    pub fn broadcast(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.send(To::Every, msg)
    }

    /// Sends to every client of this app except those in `except`.
    ///
    /// # Errors
    /// As [`Context::send`].
    pub fn broadcast_except(&mut self, except: &[ClientId], msg: Message<'_>) -> Result<(), Error> {
        self.send(To::EveryExcept(except), msg)
    }

    /// Sends to every subscriber of `topic` but `except`: one record per worker with
    /// subscribers, one frame per worker.
    ///
    /// # Errors
    /// As [`Context::send`]; [`Error::Invalid`] for an empty or over-long topic.
    pub fn publish(
        &mut self,
        topic: impl AsRef<[u8]>,
        except: Option<ClientId>,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let topic = topic.as_ref();
        self.send(To::Topic { topic, except }, msg)
    }

    /// Subscribes a connected client to `topic` (1 to 255 bytes; again: no change).
    /// Its subscriptions end when it leaves.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a client that is not connected, [`Error::Invalid`] for a
    /// bad topic.
    pub fn subscribe(&mut self, client: ClientId, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        let topic = topic.as_ref();
        // SAFETY: live handle; the topic slice is live.
        check(unsafe {
            (self.api.subscribe)(self.raw, client.0, topic.as_ptr().cast(), topic.len())
        })
    }

    /// Ends a client's subscription to `topic` (none: no change).
    ///
    /// # Errors
    /// As [`Context::subscribe`].
    pub fn unsubscribe(&mut self, client: ClientId, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        let topic = topic.as_ref();
        // SAFETY: live handle; the topic slice is live.
        check(unsafe {
            (self.api.unsubscribe)(self.raw, client.0, topic.as_ptr().cast(), topic.len())
        })
    }

    /// How many clients subscribe to `topic`, on all workers.
    pub fn topic_count(&mut self, topic: impl AsRef<[u8]>) -> usize {
        let topic = topic.as_ref();
        // SAFETY: live handle; the topic slice is live.
        let n = unsafe { (self.api.topic_count)(self.raw, topic.as_ptr().cast(), topic.len()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Starts a message written in place into the outbound ring: write it with the
    /// [`crate::Writer`]'s methods (or `std::io::Write`), then [`crate::Writer::send`] it.
    pub fn writer(&mut self) -> crate::Writer<'_, 'a> {
        crate::Writer::new(self)
    }

    /// Closes a client with `code` (one [`CloseCode::is_sendable`]) and a reason (cut
    /// to 123 bytes).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a code an app may not send.
    pub fn close(&mut self, client: ClientId, code: CloseCode, reason: &str) -> Result<(), Error> {
        // SAFETY: live handle; the reason pointer and length describe a live str.
        check(unsafe {
            (self.api.close)(
                self.raw,
                client.0,
                code.0,
                reason.as_ptr().cast(),
                reason.len(),
            )
        })
    }

    /// Accepts the upgrade request `request` ([`App::upgrade`](crate::App::upgrade)),
    /// now or later: the 101 goes out and [`App::open`](crate::App::open) follows with
    /// [`OpenInfo::data`](crate::OpenInfo::data) set to `data`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the request no longer waits (the client left, or it took
    /// longer than `app_answer_timeout`).
    pub fn accept(&mut self, request: ClientId, data: u64) -> Result<(), Error> {
        // SAFETY: live handle.
        check(unsafe { (self.api.accept)(self.raw, request.0, data) })
    }

    /// Answers the request `request`, now or later: a plain HTTP request's response
    /// ([`App::http`](crate::App::http)) or an upgrade's refusal (the connection then
    /// closes). `headers` are `Name: value` lines separated by CRLF (the server writes
    /// `Content-Length` and `Connection` itself).
    ///
    /// # Errors
    /// [`Error::NotFound`] if the request no longer waits; [`Error::Invalid`] for a
    /// status outside 200–599 or malformed or reserved headers.
    pub fn respond(
        &mut self,
        request: ClientId,
        status: u16,
        headers: &str,
        body: &[u8],
    ) -> Result<(), Error> {
        // SAFETY: live handle; the pointers and lengths describe live slices.
        check(unsafe {
            (self.api.respond)(
                self.raw,
                request.0,
                status,
                headers.as_ptr().cast(),
                headers.len(),
                body.as_ptr().cast(),
                body.len(),
            )
        })
    }

    /// Appends to the running control callback's reply (see [`crate::App::control`]).
    pub(crate) fn control_reply(&mut self, text: &[u8]) -> Result<(), Error> {
        // SAFETY: live handle; `text` is readable for its length.
        check(unsafe { (self.api.control_reply)(self.raw, text.as_ptr().cast(), text.len()) })
    }

    /// What [`Context::accept`] attached to a connected client (0 if nothing).
    pub fn client_data(&mut self, client: ClientId) -> u64 {
        // SAFETY: live handle.
        unsafe { (self.api.client_data)(self.raw, client.0) }
    }

    /// The client of the current `open`, `read` or `close` callback.
    pub fn current_client(&mut self) -> Option<ClientId> {
        let id = self.header().cur_client;
        (id != 0).then_some(ClientId(id))
    }

    /// What the server keeps about a connected client of this app.
    pub fn client_info(&mut self, client: ClientId) -> Option<ClientInfo> {
        let mut out = abi::rs_client_info::default();
        // SAFETY: live handle; `out` is a writable rs_client_info.
        let status = unsafe { (self.api.client_info)(self.raw, client.0, &mut out) };
        (status == abi::RS_OK).then(|| ClientInfo {
            peer: socket_addr(&out.peer),
            endpoint_id: out.endpoint_id,
        })
    }

    /// The server's settings.
    pub fn conf(&mut self) -> ServerConf {
        // SAFETY: live handle; conf returns a pointer to the server's settings, valid
        // for the life of the app thread.
        let c = unsafe { &*(self.api.conf)(self.raw) };
        ServerConf {
            workers: c.worker_c,
            apps: c.app_c,
            max_message: c.max_ws_msg_size,
            event_queue_len: c.event_queue_len,
            max_event_size: c.max_event_size,
        }
    }

    /// Calls [`crate::App::timer`] once after `delay` (replacing any earlier timer).
    pub fn set_timer(&mut self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        // SAFETY: live handle. set_timer cannot fail for a valid handle.
        unsafe { (self.api.set_timer)(self.raw, micros) };
    }

    /// (Re)starts the periodic timer ([`crate::App::periodic`]): first after `timer.min`,
    /// then as the callback's [`crate::TimerNext`] says. `None` stops it.
    pub fn set_periodic(&mut self, timer: Option<crate::PeriodicTimer>) {
        let t = timer.unwrap_or(crate::PeriodicTimer::STOPPED);
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // SAFETY: live handle.
        unsafe { (self.api.set_periodic)(self.raw, us(t.min), us(t.incr), us(t.max)) };
    }

    /// A handle the app's other threads post events with ([`crate::App::event`]).
    pub fn event_sender(&mut self) -> EventSender {
        // SAFETY: live handle; the server returns the app's event handle.
        EventSender::new(unsafe { (self.api.event_handle)(self.raw) })
    }

    /// Logs `msg` through the server's logger under this app's name.
    pub fn log(&mut self, level: crate::log_level::Level, msg: &str) {
        // SAFETY: live handle; the pointer and length describe a live str.
        unsafe { (self.api.log)(self.raw, level as c_int, msg.as_ptr().cast(), msg.len()) }
    }

    /// Sends the written message (for the writer).
    pub(crate) fn send_written(&mut self, to: To<'_>, kind: Kind) -> Result<(), Error> {
        let kind = match kind {
            Kind::Binary => abi::RS_BIN,
            Kind::Text => abi::RS_UTF8,
        };
        if let To::Topic { topic, except } = to {
            // SAFETY: live handle; the topic slice is live.
            return check(unsafe {
                (self.api.to_topic)(
                    self.raw,
                    topic.as_ptr().cast(),
                    topic.len(),
                    except.map_or(0, |c| c.0),
                    kind,
                )
            });
        }
        let (target, ids) = to.raw();
        // SAFETY: live handle; the ids slice is live.
        check(unsafe { (self.api.to)(self.raw, target, ids.as_ptr().cast(), ids.len(), kind) })
    }
}
