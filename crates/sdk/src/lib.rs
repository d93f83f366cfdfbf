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
//! Every callback runs on the app's own thread, one at a time, so the app's state is
//! simply `self`. A callback that returns an error or panics never unwinds into the
//! server: the SDK catches it, logs its text, and closes that client (1011, or the
//! 4900-series code of a message that failed to parse); the app keeps serving everyone
//! else. `docs/apps.md` is the full guide.

mod context;
mod error;
mod events;
mod message;
mod writer;

pub use context::{ClientInfo, Context, ServerConf, To};
pub use error::{CloseCode, Error};
pub use events::EventSender;
pub use message::{Kind, Message, Reader};
pub use ringsocket_abi;
pub use writer::Writer;

use ringsocket_abi as abi;
use std::ffi::{c_char, c_int, c_void};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// A client's id: never 0, and not reused until its worker has opened at least 2^31
/// more connections in the same slot (never, in practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ClientId(pub u64);

/// What an app learns about a client when it connects. Borrowed for the open callback.
pub struct OpenInfo<'a> {
    /// The `endpoint_id` of the endpoint it connected to.
    pub endpoint_id: u16,
    /// The endpoint's path.
    pub url_path: &'a str,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<&'a str>,
    /// The request target as sent, query included (`/chat?jwt=abc`).
    pub target: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The raw request head (request line and header lines).
    pub head: &'a str,
    /// What [`App::upgrade`] attached with [`Context::accept`] (0 if nothing).
    pub data: u64,
}

impl<'a> OpenInfo<'a> {
    /// Every request header as (name, value), in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        head_headers(self.head)
    }

    /// The value of request header `name` (any case), e.g. `Cookie`, `Authorization`,
    /// `User-Agent`, `X-Forwarded-For`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        head_header(self.head, name)
    }
}

/// A request an app decides ([`App::upgrade`]) or answers ([`App::http`]); answer with
/// [`Context::accept`] or [`Context::respond`], in the callback or later. Borrowed for
/// the callback.
pub struct Request<'a> {
    /// What the answer names; an accepted upgrade's client keeps it as its id.
    pub id: ClientId,
    /// The `endpoint_id` of the endpoint it came to.
    pub endpoint_id: u16,
    /// A WebSocket upgrade (else a plain HTTP request).
    pub is_upgrade: bool,
    /// The method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request target as sent, query included.
    pub target: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The raw request head (request line and header lines).
    pub head: &'a str,
    /// A plain request's body (empty for an upgrade).
    pub body: &'a [u8],
    /// The subprotocol an accepted upgrade gets, if any.
    pub subprotocol: Option<&'a str>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
}

impl<'a> Request<'a> {
    /// Every request header as (name, value), in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        head_headers(self.head)
    }

    /// The value of request header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        head_header(self.head, name)
    }

    /// The query parameters, percent-decoded, in order (`a=1&b=x%20y`).
    pub fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + 'a {
        self.query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
    }

    /// The first query parameter called `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The header lines of a request head as (name, value).
fn head_headers(head: &str) -> impl Iterator<Item = (&str, &str)> {
    head.split("\r\n").skip(1).filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name, value.trim()))
    })
}

/// The first header of `head` called `name` (any case).
fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head_headers(head)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; invalid
/// escapes stay as they are, and invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A periodic timer whose interval adapts (RingSocket's `RS_TIMER(cb, min, incr, max)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicTimer {
    /// First and smallest interval (and the interval again after any client traffic).
    pub min: Duration,
    /// What [`TimerNext::Increase`] adds.
    pub incr: Duration,
    /// The largest interval.
    pub max: Duration,
}

impl PeriodicTimer {
    const STOPPED: PeriodicTimer = PeriodicTimer {
        min: Duration::ZERO,
        incr: Duration::ZERO,
        max: Duration::ZERO,
    };
}

/// What a periodic timer callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerNext {
    /// Keep the interval.
    Hold,
    /// Back to the minimum.
    Min,
    /// Add the increment, up to the maximum.
    Increase,
    /// Jump to the maximum.
    Max,
    /// Stop (until [`Context::set_periodic`]).
    Never,
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

/// A ringsocket app. One value lives on the app's thread and is the app's state; the
/// server calls its methods one at a time, on that thread.
pub trait App: Sized + 'static {
    /// A periodic timer started right after [`App::init`], calling [`App::periodic`].
    const PERIODIC: Option<PeriodicTimer> = None;
    /// The app decides each upgrade request in [`App::upgrade`] before the 101;
    /// otherwise the server accepts every valid one at once (and the handshake costs
    /// nothing more).
    const DECIDES_UPGRADES: bool = false;
    /// The app answers plain HTTP requests on its endpoints in [`App::http`].
    const SERVES_HTTP: bool = false;
    /// The app hears of clients' pings and pongs in [`App::ping`].
    const REPORTS_PINGS: bool = false;
    /// The app takes operators' commands in [`App::control`] (`ringsocketctl app`).
    const TAKES_COMMANDS: bool = false;

    /// Builds the app from the `settings` JSON of its `apps[]` entry (`null` if none).
    ///
    /// # Errors
    /// A message saying why the app cannot start; the server refuses to start.
    fn init(settings: &str) -> Result<Self, String>;

    /// Runs once right after [`App::init`], with a context: start threads that post
    /// events ([`Context::event_sender`]), set timers.
    ///
    /// # Errors
    /// The server refuses to start.
    fn started(&mut self, _ctx: &mut Context<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// An upgrade request (with [`App::DECIDES_UPGRADES`]): answer with
    /// [`Context::accept`] or [`Context::respond`] (a refusal), now or later.
    ///
    /// # Errors
    /// Logged; an unanswered request then gets 500.
    fn upgrade(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        ctx.accept(req.id, 0)
    }

    /// A plain HTTP request (with [`App::SERVES_HTTP`]): answer with
    /// [`Context::respond`], now or later.
    ///
    /// # Errors
    /// Logged; an unanswered request then gets 500.
    fn http(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        ctx.respond(req.id, 404, "", b"")
    }

    /// A client completed the handshake.
    ///
    /// # Errors
    /// Closes the client ([`Error::close_code`]).
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
    /// Closes the client ([`Error::close_code`]: 4900–4902 for a message that did not
    /// parse, else 1011).
    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error>;

    /// A client sent a ping or a pong (with [`App::REPORTS_PINGS`]): it is alive.
    fn ping(&mut self, _ctx: &mut Context<'_>, _client: ClientId) {}

    /// An operator's command (with [`App::TAKES_COMMANDS`]): `args` are the words after
    /// `ringsocketctl app APP`. The text of `Ok` is printed (at most 1 MiB); so is that of
    /// `Err`, and `ringsocketctl` then exits with status 1.
    ///
    /// # Errors
    /// What to tell the operator.
    fn control(&mut self, _ctx: &mut Context<'_>, _args: &[&str]) -> Result<String, String> {
        Err("this app takes no commands".into())
    }

    /// A client is gone; `code` is its close code (1005: none given, 1006: abnormal).
    fn close(&mut self, _ctx: &mut Context<'_>, _client: ClientId, _code: CloseCode) {}

    /// The delay set with [`Context::set_timer`] has passed.
    fn timer(&mut self, _ctx: &mut Context<'_>) {}

    /// The periodic timer ([`App::PERIODIC`], [`Context::set_periodic`]) fired.
    fn periodic(&mut self, _ctx: &mut Context<'_>) -> TimerNext {
        TimerNext::Never
    }

    /// An event one of the app's threads posted with an [`EventSender`].
    ///
    /// # Errors
    /// Logged.
    fn event(&mut self, _ctx: &mut Context<'_>, _event: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// Runs a callback body, turning its error or panic into what the ABI expects. An error
/// from a message the app could not take closes the current client with its
/// 4900-series code; any other error, or a panic, is logged (with its text) and gets a
/// non-zero status, which closes the client with 1011.
#[inline(always)]
fn guard(rs: *mut abi::rs_t, what: &str, f: impl FnOnce() -> Result<(), Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        failed => failure(rs, what, failed),
    }
}

/// [`guard`]'s slow path: a callback failed or panicked.
#[cold]
#[inline(never)]
fn failure(
    rs: *mut abi::rs_t,
    what: &str,
    failed: std::thread::Result<Result<(), Error>>,
) -> c_int {
    let (status, text) = match failed {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => {
            let code = e.close_code();
            if code != CloseCode::INTERNAL_ERROR && !rs.is_null() {
                // SAFETY: `rs` is the live handle of the callback that just returned.
                let mut ctx = unsafe { Context::new(rs) };
                if let Some(client) = ctx.current_client() {
                    let reason: String = e.to_string().chars().take(100).collect();
                    if ctx.close(client, code, &reason).is_ok() {
                        return 0;
                    }
                }
            }
            (1, format!("{what} failed: {e}"))
        }
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
        let mut app = Box::new(A::init(settings).map_err(Error::App)?);
        // SAFETY: `rs` is the live handle.
        let mut ctx = unsafe { Context::new(rs) };
        app.started(&mut ctx)?;
        // SAFETY: `state` points at the server's state slot.
        unsafe { *state = Box::into_raw(app).cast() };
        Ok(())
    })
}

/// # Safety
/// `ptr..ptr+len` must be a live UTF-8 string, or `ptr` NULL (the server guarantees it).
unsafe fn raw_str<'a>(ptr: *const c_char, len: usize) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).ok()
}

unsafe extern "C" fn open_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    client: u64,
    info: *const abi::rs_open_info,
) -> c_int {
    guard(rs, "open callback", || {
        // SAFETY: the server passes a live v2 info whose strings are UTF-8 slices that
        // live until this callback returns.
        let info = unsafe { &*info };
        // SAFETY: as above, for each string.
        let (url_path, subprotocol, target, query, head) = unsafe {
            (
                raw_str(info.url_path, info.url_path_len).unwrap_or_default(),
                raw_str(info.subprotocol, info.subprotocol_len),
                raw_str(info.target, info.target_len).unwrap_or_default(),
                raw_str(info.query, info.query_len),
                raw_str(info.head, info.head_len).unwrap_or_default(),
            )
        };
        let info = OpenInfo {
            endpoint_id: info.endpoint_id,
            url_path,
            subprotocol,
            target,
            query,
            peer: context::socket_addr(&info.peer),
            head,
            data: info.data,
        };
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.open(&mut ctx, ClientId(client), &info)
    })
}

/// The upgrade and http callbacks.
unsafe extern "C" fn request_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    req: *const abi::rs_request,
) -> c_int {
    guard(rs, "request callback", || {
        // SAFETY: the server passes a live request whose strings are UTF-8 slices (the
        // body any bytes) that live until this callback returns.
        let r = unsafe { &*req };
        // SAFETY: as above, for each string.
        let (method, target, path, query, head, subprotocol) = unsafe {
            (
                raw_str(r.method, r.method_len).unwrap_or_default(),
                raw_str(r.target, r.target_len).unwrap_or_default(),
                raw_str(r.path, r.path_len).unwrap_or_default(),
                raw_str(r.query, r.query_len),
                raw_str(r.head, r.head_len).unwrap_or_default(),
                raw_str(r.subprotocol, r.subprotocol_len),
            )
        };
        let body = if r.body_len == 0 {
            &[][..]
        } else {
            // SAFETY: `body_len` live bytes at `body`.
            unsafe { std::slice::from_raw_parts(r.body, r.body_len) }
        };
        let request = Request {
            id: ClientId(r.request_id),
            endpoint_id: r.endpoint_id,
            is_upgrade: r.is_upgrade != 0,
            method,
            target,
            path,
            query,
            head,
            body,
            subprotocol,
            peer: context::socket_addr(&r.peer),
        };
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        if request.is_upgrade {
            app.upgrade(&mut ctx, &request)
        } else {
            app.http(&mut ctx, &request)
        }
    })
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
        app.close(&mut ctx, ClientId(client), CloseCode(code));
        Ok(())
    })
}

unsafe extern "C" fn ping_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    client: u64,
) -> c_int {
    guard(rs, "ping callback", || {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.ping(&mut ctx, ClientId(client));
        Ok(())
    })
}

unsafe extern "C" fn control_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let args: Vec<&str> = (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: the server passes `argc` NUL-terminated strings at `argv`, alive
            // until the callback returns.
            unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) }
                .to_str()
                .unwrap_or("")
        })
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.control(&mut ctx, &args)
    }));
    let (status, text) = match result {
        Ok(Ok(text)) => (0, text),
        Ok(Err(text)) => (1, text),
        Err(_) => (1, "the app's control callback panicked".to_string()),
    };
    // SAFETY: the live handle of this callback.
    let mut ctx = unsafe { Context::new(rs) };
    let max = abi::RS_MAX_CONTROL_REPLY;
    let text = &text.as_bytes()[..text.len().min(max)];
    let _ = ctx.control_reply(text);
    status
}

unsafe extern "C" fn timer_shim<A: App>(rs: *mut abi::rs_t, state: *mut c_void) -> c_int {
    guard(rs, "timer callback", || {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.timer(&mut ctx);
        Ok(())
    })
}

unsafe extern "C" fn periodic_shim<A: App>(rs: *mut abi::rs_t, state: *mut c_void) -> c_int {
    let mut next = TimerNext::Hold;
    let status = guard(rs, "periodic timer callback", || {
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        next = app.periodic(&mut ctx);
        Ok(())
    });
    if status != 0 {
        return -1;
    }
    match next {
        TimerNext::Hold => abi::RS_TIMER_HOLD,
        TimerNext::Min => abi::RS_TIMER_MIN,
        TimerNext::Increase => abi::RS_TIMER_INCR,
        TimerNext::Max => abi::RS_TIMER_MAX,
        TimerNext::Never => abi::RS_TIMER_NEVER,
    }
}

unsafe extern "C" fn event_shim<A: App>(
    rs: *mut abi::rs_t,
    state: *mut c_void,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(rs, "event callback", || {
        // SAFETY: the server passes `len` live bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        // SAFETY: `rs` is the live handle and `state` the app's.
        let (mut ctx, app) = unsafe { (Context::new(rs), app::<A>(state)) };
        app.event(&mut ctx, bytes)
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

const fn micros(d: Duration) -> u64 {
    let us = d.as_micros();
    if us > u64::MAX as u128 {
        u64::MAX
    } else {
        us as u64
    }
}

/// Builds the descriptor for `A`; use [`export_app!`] rather than calling this.
pub const fn descriptor<A: App>(name: &'static std::ffi::CStr) -> abi::rs_app_descriptor {
    let periodic = match A::PERIODIC {
        Some(p) => p,
        None => PeriodicTimer::STOPPED,
    };
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
        event: Some(event_shim::<A>),
        periodic: Some(periodic_shim::<A>),
        periodic_min_us: micros(periodic.min),
        periodic_incr_us: micros(periodic.incr),
        periodic_max_us: micros(periodic.max),
        upgrade: if A::DECIDES_UPGRADES {
            Some(request_shim::<A>)
        } else {
            None
        },
        http: if A::SERVES_HTTP {
            Some(request_shim::<A>)
        } else {
            None
        },
        ping: if A::REPORTS_PINGS {
            Some(ping_shim::<A>)
        } else {
            None
        },
        control: if A::TAKES_COMMANDS {
            Some(control_shim::<A>)
        } else {
            None
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let req = Request {
            id: ClientId(1),
            endpoint_id: 0,
            is_upgrade: false,
            method: "POST",
            target: "/send?user=a%20b&type=text&x=%zz&y=1+2&flag",
            path: "/send",
            query: Some("user=a%20b&type=text&x=%zz&y=1+2&flag"),
            head: "POST /send HTTP/1.1\r\nX-A: 1\r\n\r\n",
            body: b"",
            subprotocol: None,
            peer: None,
        };
        assert_eq!(req.query_param("user").as_deref(), Some("a b"));
        assert_eq!(req.query_param("x").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("y").as_deref(), Some("1 2"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("nope"), None);
        assert_eq!(req.header("x-a"), Some("1"));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
