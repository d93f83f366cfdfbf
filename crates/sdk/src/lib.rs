//! Safe Rust plugins for ringsocket.
//!
//! Implement [`App`] for your type and export it with [`export_app!`]; build the crate as
//! a `cdylib` and point an `apps[]` entry of `ringsocket.json` at the `.so`.
//!
//! ```
//! use ringsocket_sdk::{App, ClientId, Context, Message};
//!
//! struct Echo;
//!
//! impl App for Echo {
//!     fn init(_settings: &str) -> Result<Self, String> {
//!         Ok(Echo)
//!     }
//!     fn read(&mut self, ctx: &mut Context<'_>, _client: ClientId, msg: Message<'_>) -> Result<(), ringsocket_sdk::Error> {
//!         ctx.reply(msg)
//!     }
//! }
//!
//! ringsocket_sdk::export_app!("echo", Echo);
//! ```
//!
//! Every callback runs on the app's own thread. A callback that returns an error or
//! panics never unwinds into the server: the SDK catches it, the server closes that
//! client with 1011, and the app keeps serving everyone else.

use ringsocket_abi as abi;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

pub use ringsocket_abi;

/// A client's id: unique for the life of the server process, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ClientId(pub u64);

/// A message, borrowed from the server's ring for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    fn raw(self) -> (u32, &'a [u8]) {
        match self {
            Message::Text(t) => (abi::RS_UTF8, t.as_bytes()),
            Message::Binary(b) => (abi::RS_BIN, b),
        }
    }
}

/// Why a host call failed, or a callback's own failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The call is not allowed in this callback (e.g. `reply` in a timer).
    WrongCallback,
    /// The message is larger than the server's `max_ws_msg_size`.
    TooBig,
    /// An argument was invalid (e.g. a close code an app may not use).
    Invalid,
    /// The app's own failure; the current client is closed with 1011.
    App(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::WrongCallback => f.write_str("not allowed in this callback"),
            Error::TooBig => f.write_str("message larger than max_ws_msg_size"),
            Error::Invalid => f.write_str("invalid argument"),
            Error::App(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

fn check(code: c_int) -> Result<(), Error> {
    match code {
        abi::RS_OK => Ok(()),
        abi::RS_ERR_CONTEXT => Err(Error::WrongCallback),
        abi::RS_ERR_TOO_BIG => Err(Error::TooBig),
        _ => Err(Error::Invalid),
    }
}

/// What an app learns about a client when it connects.
#[derive(Debug, Clone, Copy)]
pub struct OpenInfo<'a> {
    /// The `endpoint_id` of the endpoint it connected to.
    pub endpoint_id: u16,
    /// The endpoint's path.
    pub url_path: &'a str,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<&'a str>,
}

/// The handle through which a callback talks to the server.
pub struct Context<'a> {
    raw: *mut abi::rs_t,
    api: &'a abi::rs_host_api,
}

impl<'a> Context<'a> {
    /// # Safety
    /// `raw` must be the live handle the server passed to the current callback.
    unsafe fn new(raw: *mut abi::rs_t) -> Self {
        // SAFETY: the server guarantees every rs_t starts with an rs_header whose api
        // pointer is valid for the life of the process.
        let api = unsafe { &*(*(raw as *const abi::rs_header)).api };
        Context { raw, api }
    }

    fn send(&mut self, target: u32, ids: &[ClientId], msg: Message<'_>) -> Result<(), Error> {
        let (kind, data) = msg.raw();
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
    /// [`Error::WrongCallback`] outside `open`/`read`, [`Error::TooBig`] past the size limit.
    pub fn reply(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.send(abi::RS_TO_CUR, &[], msg)
    }

    /// Sends to one client (silently dropped if it is gone).
    ///
    /// # Errors
    /// [`Error::TooBig`] past the size limit.
    pub fn send_to(&mut self, client: ClientId, msg: Message<'_>) -> Result<(), Error> {
        self.send(abi::RS_TO_SINGLE, &[client], msg)
    }

    /// Sends to each of `clients` (duplicates get it once).
    ///
    /// # Errors
    /// [`Error::TooBig`] past the size limit.
    pub fn send_to_many(&mut self, clients: &[ClientId], msg: Message<'_>) -> Result<(), Error> {
        self.send(abi::RS_TO_MULTI, clients, msg)
    }

    /// Sends to every client of this app.
    ///
    /// # Errors
    /// [`Error::TooBig`] past the size limit.
    pub fn broadcast(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.send(abi::RS_TO_EVERY, &[], msg)
    }

    /// Sends to every client of this app except those in `except`.
    ///
    /// # Errors
    /// [`Error::TooBig`] past the size limit.
    pub fn broadcast_except(&mut self, except: &[ClientId], msg: Message<'_>) -> Result<(), Error> {
        self.send(abi::RS_TO_EVERY_EXCEPT, except, msg)
    }

    /// Closes a client with `code` (1000, 1001, 1003, 1007–1009, 1011 or 3000–4999) and a
    /// reason (cut to 123 bytes).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a code an app may not send.
    pub fn close(&mut self, client: ClientId, code: u16, reason: &str) -> Result<(), Error> {
        // SAFETY: live handle; the reason pointer and length describe a live str.
        check(unsafe {
            (self.api.close)(
                self.raw,
                client.0,
                code,
                reason.as_ptr().cast(),
                reason.len(),
            )
        })
    }

    /// Calls [`App::timer`] once after `delay` (replacing any earlier timer).
    pub fn set_timer(&mut self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        // SAFETY: live handle. set_timer cannot fail for a valid handle.
        unsafe { (self.api.set_timer)(self.raw, micros) };
    }

    /// Logs `msg` through the server's logger under this app's name.
    pub fn log(&mut self, level: log_level::Level, msg: &str) {
        // SAFETY: live handle; the pointer and length describe a live str.
        unsafe { (self.api.log)(self.raw, level as c_int, msg.as_ptr().cast(), msg.len()) }
    }
}

/// Log levels for [`Context::log`].
pub mod log_level {
    /// How important a log line is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(i32)]
    pub enum Level {
        /// Something failed.
        Error = 1,
        /// Something is wrong but the app goes on.
        Warn = 2,
        /// Noteworthy.
        Info = 3,
        /// Detail for debugging.
        Debug = 4,
    }
}

/// A ringsocket app. One value lives on the app's thread; the server calls its methods
/// one at a time.
pub trait App: Sized + 'static {
    /// Builds the app from the `settings` JSON of its `apps[]` entry (`null` if none).
    ///
    /// # Errors
    /// A message saying why the app cannot start; the server refuses to start.
    fn init(settings: &str) -> Result<Self, String>;

    /// A client completed the handshake.
    ///
    /// # Errors
    /// Closes the client with 1011.
    fn open(
        &mut self,
        _ctx: &mut Context<'_>,
        _client: ClientId,
        _info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// A complete message from a client.
    ///
    /// # Errors
    /// Closes the client with 1011.
    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error>;

    /// A client is gone; `code` is its close code (1005: none given, 1006: abnormal).
    fn close(&mut self, _ctx: &mut Context<'_>, _client: ClientId, _code: u16) {}

    /// The delay set with [`Context::set_timer`] has passed.
    fn timer(&mut self, _ctx: &mut Context<'_>) {}
}

/// Runs `f`, turning a panic or an error into the non-zero status the ABI expects.
/// Runs a callback body, turning its error or panic into a status code; the error's
/// text (or the panic message) reaches the server's log under the app's name.
fn guard(rs: *mut abi::rs_t, what: &str, f: impl FnOnce() -> Result<(), Error>) -> c_int {
    let (status, text) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => (1, format!("{what} failed: {e}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            (2, format!("{what} panicked: {msg}"))
        }
    };
    if !rs.is_null() {
        // SAFETY: `rs` is the live handle of the callback that just failed.
        let mut ctx = unsafe { Context::new(rs) };
        ctx.log(log_level::Level::Error, &text);
    }
    status
}

/// # Safety
/// `state` must be the pointer `init_shim::<A>` stored.
unsafe fn app<'s, A: App>(state: *mut c_void) -> &'s mut A {
    // SAFETY: the server passes back the pointer init stored: a live, exclusive Box<A>,
    // used from the app thread only.
    unsafe { &mut *state.cast::<A>() }
}

unsafe extern "C" fn init_shim<A: App>(
    rs: *mut abi::rs_t,
    settings: *const c_char,
    len: usize,
    state: *mut *mut c_void,
) -> c_int {
    guard(rs, "init", || {
        // SAFETY: the server passes `len` bytes of UTF-8 JSON at `settings`.
        let bytes = unsafe { std::slice::from_raw_parts(settings.cast::<u8>(), len) };
        let settings = std::str::from_utf8(bytes).map_err(|_| Error::Invalid)?;
        let app = A::init(settings).map_err(Error::App)?;
        // SAFETY: `state` points at the server's state slot.
        unsafe { *state = Box::into_raw(Box::new(app)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn open_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    client: u64,
    info: *const abi::rs_open_info,
) -> c_int {
    guard(rs, "open callback", || {
        // SAFETY: the server passes a live info whose strings are valid UTF-8 slices.
        let info = unsafe { &*info };
        // SAFETY: as above.
        let url_path = unsafe { raw_str(info.url_path, info.url_path_len) };
        let subprotocol =
            // SAFETY: as above.
            (!info.subprotocol.is_null()).then(|| unsafe { raw_str(info.subprotocol, info.subprotocol_len) });
        let info = OpenInfo {
            endpoint_id: info.endpoint_id,
            url_path,
            subprotocol,
        };
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.open(&mut ctx, ClientId(client), &info)
    })
}

/// # Safety
/// `ptr..ptr+len` must be a live UTF-8 string (the server guarantees it).
unsafe fn raw_str<'a>(ptr: *const c_char, len: usize) -> &'a str {
    // SAFETY: per this function's contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).unwrap_or_default()
}

unsafe extern "C" fn read_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    client: u64,
    kind: u32,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(rs, "read callback", || {
        // SAFETY: the server passes `len` live bytes at `data` (dangling-but-valid if 0).
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        let msg = if kind == abi::RS_UTF8 {
            Message::Text(std::str::from_utf8(bytes).map_err(|_| Error::Invalid)?)
        } else {
            Message::Binary(bytes)
        };
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.read(&mut ctx, ClientId(client), msg)
    })
}

unsafe extern "C" fn close_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    client: u64,
    code: u16,
) -> c_int {
    guard(rs, "close callback", || {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.close(&mut ctx, ClientId(client), code);
        Ok(())
    })
}

unsafe extern "C" fn timer_shim<A: App>(rs: *mut abi::rs_t, state: *mut c_void) -> c_int {
    guard(rs, "timer callback", || {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.timer(&mut ctx);
        Ok(())
    })
}

unsafe extern "C" fn destroy_shim<A: App>(state: *mut c_void) {
    if state.is_null() {
        return;
    }
    // SAFETY: `state` is the Box<A> init stored; the server calls destroy once, last.
    let app = unsafe { Box::from_raw(state.cast::<A>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(app)));
}

/// Builds the descriptor for `A`; use [`export_app!`] rather than calling this.
pub const fn descriptor<A: App>(name: &'static std::ffi::CStr) -> abi::rs_app_descriptor {
    abi::rs_app_descriptor {
        magic: abi::RS_ABI_MAGIC,
        abi_version: abi::RS_ABI_VERSION,
        size: std::mem::size_of::<abi::rs_app_descriptor>() as u32,
        reserved: 0,
        name: name.as_ptr(),
        init: Some(init_shim::<A>),
        open: Some(open_shim::<A>),
        read: Some(read_shim::<A>),
        close: Some(close_shim::<A>),
        timer: Some(timer_shim::<A>),
        destroy: Some(destroy_shim::<A>),
    }
}

/// Exports `$app` (a type implementing [`App`]) as this plugin's descriptor.
#[macro_export]
macro_rules! export_app {
    ($name:literal, $app:ty) => {
        /// The plugin descriptor ringsocket loads.
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static ringsocket_plugin: $crate::ringsocket_abi::rs_app_descriptor =
            $crate::descriptor::<$app>(
                match ::std::ffi::CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("app name contains a NUL byte"),
                },
            );
    };
}
