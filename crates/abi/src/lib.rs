//! ABI version 3 between the ringsocket server and its app plugins.
//!
//! This crate is the Rust mirror of `include/ringsocket.h` (the header C authors
//! include); a test compiles the header and checks that both agree on every constant,
//! size and field offset. A plugin exports one [`rs_app_descriptor`] under the symbol
//! [`DESCRIPTOR_SYMBOL`]; the server reads its first two fields ([`rs_app_descriptor::magic`],
//! [`rs_app_descriptor::abi_version`]) before anything else and refuses other versions.
//!
//! Versions are additive: version 2 appends fields to the end of version 1's structs and
//! changes none. A version-1 plugin (built with `include/ringsocket-v1/ringsocket.h`)
//! reads only the v1 prefix of what the server passes it, and the server reads only the
//! v1 prefix of its descriptor ([`V1_DESCRIPTOR_SIZE`]).
//!
//! It contains no code: the safe Rust API is `ringsocket-sdk`; the host side is
//! `ringsocket-server`.
#![deny(unsafe_code)] // one audited exception: `impl Sync for rs_app_descriptor`
#![allow(non_camel_case_types)] // the names mirror the C header

use std::ffi::{c_char, c_int, c_void};

/// `"RSAP"`: the first four bytes of every descriptor.
pub const RS_ABI_MAGIC: u32 = 0x5253_4150;
/// The ABI version this crate describes (2 added metadata, writers, timers and events;
/// 3 added topics; 4 added upgrade decisions and plain HTTP answers; 5 the ping
/// callback; 6 the control callback for `ringsocketctl app`).
pub const RS_ABI_VERSION: u32 = 6;
/// The oldest ABI version the server still loads.
pub const RS_ABI_MIN_VERSION: u32 = 1;
/// The size of a version-1 descriptor: the prefix of [`rs_app_descriptor`] up to and
/// including `destroy`.
pub const V1_DESCRIPTOR_SIZE: usize = std::mem::offset_of!(rs_app_descriptor, event);
/// The size of a version-2 or -3 descriptor: the prefix of [`rs_app_descriptor`] up
/// to and including `periodic_max_us`.
pub const V2_DESCRIPTOR_SIZE: usize = std::mem::offset_of!(rs_app_descriptor, upgrade);
/// The size of a version-4 descriptor: the prefix of [`rs_app_descriptor`] up to and
/// including `http`.
pub const V4_DESCRIPTOR_SIZE: usize = std::mem::offset_of!(rs_app_descriptor, ping);
/// The size of a version-5 descriptor: the prefix of [`rs_app_descriptor`] up to and
/// including `ping`.
pub const V5_DESCRIPTOR_SIZE: usize = std::mem::offset_of!(rs_app_descriptor, control);
/// The most reply bytes one control callback may give ([`rs_host_api::control_reply`]).
pub const RS_MAX_CONTROL_REPLY: usize = 1 << 20;
/// The symbol a plugin exports its descriptor under (NUL-terminated for `dlsym`).
pub const DESCRIPTOR_SYMBOL: &[u8] = b"ringsocket_plugin\0";
/// The symbol the original C RingSocket's apps export; used to explain a refusal.
pub const LEGACY_SYMBOL: &[u8] = b"ringsocket_app\0";

/// A binary message.
pub const RS_BIN: u32 = 0;
/// A text message (always valid UTF-8).
pub const RS_UTF8: u32 = 1;

/// Send to the client of the current open/read callback.
pub const RS_TO_CUR: u32 = 0;
/// Send to `ids[0]`.
pub const RS_TO_SINGLE: u32 = 1;
/// Send to every id in `ids`.
pub const RS_TO_MULTI: u32 = 2;
/// Send to every client of the app.
pub const RS_TO_EVERY: u32 = 3;
/// Send to every client of the app except those in `ids`.
pub const RS_TO_EVERY_EXCEPT: u32 = 4;

/// The host call succeeded.
pub const RS_OK: c_int = 0;
/// The host call is not allowed in this callback.
pub const RS_ERR_CONTEXT: c_int = -1;
/// The message is larger than `max_ws_msg_size`.
pub const RS_ERR_TOO_BIG: c_int = -2;
/// An argument is invalid.
pub const RS_ERR_INVALID: c_int = -3;
/// The app's event queue is full (v2).
pub const RS_ERR_FULL: c_int = -4;
/// The app has stopped and takes no more events (v2).
pub const RS_ERR_CLOSED: c_int = -5;
/// No such client (v2).
pub const RS_ERR_NOT_FOUND: c_int = -6;
/// The longest topic name in bytes (v3).
pub const RS_MAX_TOPIC_LEN: u32 = 255;

/// Periodic timer: back to the minimum interval (v2; RingSocket 1's numbering).
pub const RS_TIMER_MIN: c_int = 1;
/// Periodic timer: keep the interval.
pub const RS_TIMER_HOLD: c_int = 2;
/// Periodic timer: add the increment, up to the maximum.
pub const RS_TIMER_INCR: c_int = 3;
/// Periodic timer: jump to the maximum interval.
pub const RS_TIMER_MAX: c_int = 4;
/// Periodic timer: stop (until `set_periodic`).
pub const RS_TIMER_NEVER: c_int = 5;

/// [`rs_addr::family`] of an IPv4 address (v2).
pub const RS_ADDR_IPV4: u16 = 4;
/// [`rs_addr::family`] of an IPv6 address (v2).
pub const RS_ADDR_IPV6: u16 = 6;

/// Log level: error.
pub const RS_LOG_ERROR: c_int = 1;
/// Log level: warning.
pub const RS_LOG_WARN: c_int = 2;
/// Log level: info.
pub const RS_LOG_INFO: c_int = 3;
/// Log level: debug.
pub const RS_LOG_DEBUG: c_int = 4;

/// The opaque per-app-thread handle passed to every callback (`rs_t` in C). Its memory
/// starts with an [`rs_header`].
#[repr(C)]
pub struct rs_t {
    _private: [u8; 0],
}

/// The layout every `rs_t` starts with. The server writes every field but `w_len`,
/// which the plugin's in-place writers advance.
#[repr(C)]
pub struct rs_header {
    /// The host's function table.
    pub api: *const rs_host_api,
    /// v2: where the message being written lives (NULL before the first write).
    pub w_ptr: *mut u8,
    /// v2: bytes written so far.
    pub w_len: usize,
    /// v2: bytes that fit at `w_ptr` before `w_reserve` is needed.
    pub w_cap: usize,
    /// v2: the state init stored.
    pub app_state: *mut c_void,
    /// v2: the client of the current open/read/close callback, or 0.
    pub cur_client: u64,
    /// v2: the kind of the message being read.
    pub cur_kind: u32,
    /// v2: the endpoint of `cur_client`.
    pub cur_endpoint_id: u16,
    /// v2: the most detailed `RS_LOG_*` level the server logs.
    pub log_level: u8,
    /// Zero.
    pub reserved: u8,
}

/// A peer's IP address and port (v2).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rs_addr {
    /// [`RS_ADDR_IPV4`] or [`RS_ADDR_IPV6`].
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// Network byte order; IPv4 takes the first 4 bytes.
    pub ip: [u8; 16],
}

/// What the server keeps about a connected client (v2).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rs_client_info {
    /// The TCP peer.
    pub peer: rs_addr,
    /// The endpoint's `endpoint_id`.
    pub endpoint_id: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// What the open callback learns about a new client. Strings are not NUL-terminated
/// and live until the open callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rs_open_info {
    /// The endpoint's `endpoint_id` from the configuration.
    pub endpoint_id: u16,
    /// The endpoint path the client asked for.
    pub url_path: *const c_char,
    /// Length of `url_path`.
    pub url_path_len: usize,
    /// The negotiated subprotocol, or NULL.
    pub subprotocol: *const c_char,
    /// Length of `subprotocol`.
    pub subprotocol_len: usize,
    /// v2: the request target as sent, query included.
    pub target: *const c_char,
    /// Length of `target`.
    pub target_len: usize,
    /// v2: the query string after `?`, or NULL.
    pub query: *const c_char,
    /// Length of `query`.
    pub query_len: usize,
    /// v2: the raw request head (request line and header lines).
    pub head: *const c_char,
    /// Length of `head`.
    pub head_len: usize,
    /// v2: the client's address.
    pub peer: rs_addr,
    /// v4: what the upgrade callback attached with `accept` (0 if nothing).
    pub data: u64,
}

/// A request an app decides (an upgrade) or answers (plain HTTP) (v4). Strings are
/// not NUL-terminated and live until the callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rs_request {
    /// `size_of::<rs_request>()` as the server built it.
    pub size: u32,
    /// The endpoint's `endpoint_id` from the configuration.
    pub endpoint_id: u16,
    /// 1 for an upgrade request, 0 for a plain HTTP request.
    pub is_upgrade: u16,
    /// The id the answer names (`accept`, `respond`); an accepted upgrade's client
    /// keeps it.
    pub request_id: u64,
    /// The method (`GET`, `POST`, …).
    pub method: *const c_char,
    /// Length of `method`.
    pub method_len: usize,
    /// The request target as sent, query included.
    pub target: *const c_char,
    /// Length of `target`.
    pub target_len: usize,
    /// The path, without the query string.
    pub path: *const c_char,
    /// Length of `path`.
    pub path_len: usize,
    /// The query string after `?`, or NULL.
    pub query: *const c_char,
    /// Length of `query`.
    pub query_len: usize,
    /// The raw request head (request line and header lines).
    pub head: *const c_char,
    /// Length of `head`.
    pub head_len: usize,
    /// The body (plain requests; empty for upgrades).
    pub body: *const u8,
    /// Length of `body`.
    pub body_len: usize,
    /// The negotiated subprotocol if the upgrade is accepted, or NULL.
    pub subprotocol: *const c_char,
    /// Length of `subprotocol`.
    pub subprotocol_len: usize,
    /// The client's address.
    pub peer: rs_addr,
}

/// The server's settings an app may read (v2).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rs_conf {
    /// `size_of::<rs_conf>()` as the server built it.
    pub size: u32,
    /// Worker threads.
    pub worker_c: u16,
    /// Apps loaded.
    pub app_c: u16,
    /// The largest message, either way.
    pub max_ws_msg_size: u64,
    /// Events an app's queue holds.
    pub event_queue_len: u32,
    /// The largest event.
    pub max_event_size: u32,
}

/// The thread-safe handle other threads of an app post events with (v2). The
/// server's handle starts with this.
#[repr(C)]
pub struct rs_event_handle {
    /// Queues an event (copied) for the app's event callback; never blocks.
    pub post: unsafe extern "C" fn(*mut rs_event_handle, *const c_void, usize) -> c_int,
}

/// `send(rs, target, ids, id_count, kind, data, len)`.
pub type rs_send_fn =
    unsafe extern "C" fn(*mut rs_t, u32, *const u64, usize, u32, *const c_void, usize) -> c_int;
/// `close(rs, client_id, code, reason, reason_len)`.
pub type rs_close_client_fn =
    unsafe extern "C" fn(*mut rs_t, u64, u16, *const c_char, usize) -> c_int;
/// `set_timer(rs, delay_us)`.
pub type rs_set_timer_fn = unsafe extern "C" fn(*mut rs_t, u64) -> c_int;
/// `current_client(rs)`.
pub type rs_current_client_fn = unsafe extern "C" fn(*const rs_t) -> u64;
/// `log(rs, level, msg, len)`.
pub type rs_log_fn = unsafe extern "C" fn(*mut rs_t, c_int, *const c_char, usize);

/// `w_reserve(rs, additional)`.
pub type rs_w_reserve_fn = unsafe extern "C" fn(*mut rs_t, usize) -> c_int;
/// `to(rs, target, ids, id_count, kind)`.
pub type rs_to_fn = unsafe extern "C" fn(*mut rs_t, u32, *const u64, usize, u32) -> c_int;
/// `client_info(rs, client_id, out)`.
pub type rs_client_info_fn = unsafe extern "C" fn(*mut rs_t, u64, *mut rs_client_info) -> c_int;
/// `header(rs, name, name_len, value_len) -> value`.
pub type rs_header_fn =
    unsafe extern "C" fn(*mut rs_t, *const c_char, usize, *mut usize) -> *const c_char;
/// `set_periodic(rs, min_us, incr_us, max_us)`.
pub type rs_set_periodic_fn = unsafe extern "C" fn(*mut rs_t, u64, u64, u64) -> c_int;
/// `event_handle(rs)`.
pub type rs_event_handle_fn = unsafe extern "C" fn(*mut rs_t) -> *mut rs_event_handle;
/// `conf(rs)`.
pub type rs_conf_fn = unsafe extern "C" fn(*const rs_t) -> *const rs_conf;

/// `subscribe(rs, client, topic, topic_len)` / `unsubscribe(...)` (v3).
pub type rs_subscribe_fn = unsafe extern "C" fn(*mut rs_t, u64, *const c_void, usize) -> c_int;
/// `publish(rs, topic, topic_len, except_client, kind, data, len)` (v3).
pub type rs_publish_fn =
    unsafe extern "C" fn(*mut rs_t, *const c_void, usize, u64, u32, *const c_void, usize) -> c_int;
/// `to_topic(rs, topic, topic_len, except_client, kind)` (v3).
pub type rs_to_topic_fn = unsafe extern "C" fn(*mut rs_t, *const c_void, usize, u64, u32) -> c_int;
/// `topic_count(rs, topic, topic_len)` (v3).
pub type rs_topic_count_fn = unsafe extern "C" fn(*mut rs_t, *const c_void, usize) -> i64;

/// `accept(rs, request_id, data)` (v4).
pub type rs_accept_fn = unsafe extern "C" fn(*mut rs_t, u64, u64) -> c_int;
/// `respond(rs, request_id, status, headers, headers_len, body, body_len)` (v4).
pub type rs_respond_fn =
    unsafe extern "C" fn(*mut rs_t, u64, u16, *const c_char, usize, *const c_void, usize) -> c_int;
/// `client_data(rs, client_id)` (v4).
pub type rs_client_data_fn = unsafe extern "C" fn(*mut rs_t, u64) -> u64;
/// `control_reply(rs, data, len)` (v6).
pub type rs_control_reply_fn = unsafe extern "C" fn(*mut rs_t, *const c_void, usize) -> c_int;

/// The functions the server offers a plugin.
#[repr(C)]
pub struct rs_host_api {
    /// `size_of::<rs_host_api>()` as the server built it.
    pub size: u32,
    /// Sends a message to the given targets.
    pub send: rs_send_fn,
    /// Closes a client with a code and reason.
    pub close: rs_close_client_fn,
    /// Arms the app's one-shot timer.
    pub set_timer: rs_set_timer_fn,
    /// The client of the current callback, or 0.
    pub current_client: rs_current_client_fn,
    /// Logs a message under the app's name.
    pub log: rs_log_fn,
    /// v2: makes room for `additional` more bytes of the message being written.
    pub w_reserve: rs_w_reserve_fn,
    /// v2: sends the message written so far and starts a new one.
    pub to: rs_to_fn,
    /// v2: a connected client's address and endpoint.
    pub client_info: rs_client_info_fn,
    /// v2: a request header of the client being opened.
    pub header: rs_header_fn,
    /// v2: (re)starts the periodic timer.
    pub set_periodic: rs_set_periodic_fn,
    /// v2: the app's event handle.
    pub event_handle: rs_event_handle_fn,
    /// v2: the server's settings.
    pub conf: rs_conf_fn,
    /// v3: subscribes a client to a topic.
    pub subscribe: rs_subscribe_fn,
    /// v3: ends a client's subscription to a topic.
    pub unsubscribe: rs_subscribe_fn,
    /// v3: sends a message to a topic's subscribers.
    pub publish: rs_publish_fn,
    /// v3: sends the written message to a topic's subscribers.
    pub to_topic: rs_to_topic_fn,
    /// v3: a topic's subscriber count.
    pub topic_count: rs_topic_count_fn,
    /// v4: accepts an upgrade request, attaching `data` to the client.
    pub accept: rs_accept_fn,
    /// v4: answers a request: refuses an upgrade, or responds to a plain request.
    pub respond: rs_respond_fn,
    /// v4: what `accept` attached to a client.
    pub client_data: rs_client_data_fn,
    /// v6: appends to the reply of the running control callback.
    pub control_reply: rs_control_reply_fn,
}

/// `init(rs, settings_json, settings_len, &state)`.
pub type rs_init_cb =
    unsafe extern "C" fn(*mut rs_t, *const c_char, usize, *mut *mut c_void) -> c_int;
/// `open(rs, state, client_id, info)`.
pub type rs_open_cb =
    unsafe extern "C" fn(*mut rs_t, *mut c_void, u64, *const rs_open_info) -> c_int;
/// `read(rs, state, client_id, kind, data, len)`.
pub type rs_read_cb =
    unsafe extern "C" fn(*mut rs_t, *mut c_void, u64, u32, *const u8, usize) -> c_int;
/// `close(rs, state, client_id, code)`.
pub type rs_close_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void, u64, u16) -> c_int;
/// `timer(rs, state)`.
pub type rs_timer_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void) -> c_int;
/// `destroy(state)`.
pub type rs_destroy_cb = unsafe extern "C" fn(*mut c_void);
/// `event(rs, state, data, len)` (v2).
pub type rs_event_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void, *const u8, usize) -> c_int;
/// `periodic(rs, state) -> RS_TIMER_*` (v2).
pub type rs_periodic_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void) -> c_int;
/// `ping(rs, state, client_id)` (v5).
pub type rs_ping_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void, u64) -> c_int;
/// `control(rs, state, argc, argv)` (v6): `argv` holds `argc` NUL-terminated strings.
pub type rs_control_cb =
    unsafe extern "C" fn(*mut rs_t, *mut c_void, c_int, *const *const c_char) -> c_int;
/// `upgrade(rs, state, request)` / `http(rs, state, request)` (v4).
pub type rs_request_cb = unsafe extern "C" fn(*mut rs_t, *mut c_void, *const rs_request) -> c_int;

/// The descriptor a plugin exports as `ringsocket_plugin`. Any callback may be absent.
#[repr(C)]
#[derive(Debug)]
pub struct rs_app_descriptor {
    /// [`RS_ABI_MAGIC`].
    pub magic: u32,
    /// [`RS_ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<rs_app_descriptor>()` as the plugin built it.
    pub size: u32,
    /// Zero.
    pub reserved: u32,
    /// A NUL-terminated name, informational.
    pub name: *const c_char,
    /// Runs once before any client connects; may set the state pointer.
    pub init: Option<rs_init_cb>,
    /// A client completed the handshake.
    pub open: Option<rs_open_cb>,
    /// A complete message from a client.
    pub read: Option<rs_read_cb>,
    /// A client is gone.
    pub close: Option<rs_close_cb>,
    /// The timer set with `set_timer` expired.
    pub timer: Option<rs_timer_cb>,
    /// Runs at shutdown after the last callback.
    pub destroy: Option<rs_destroy_cb>,
    /// v2: an event another thread posted.
    pub event: Option<rs_event_cb>,
    /// v2: the periodic timer; returns an `RS_TIMER_*`.
    pub periodic: Option<rs_periodic_cb>,
    /// v2: the periodic timer's first and smallest interval (0: not started).
    pub periodic_min_us: u64,
    /// v2: what `RS_TIMER_INCR` adds.
    pub periodic_incr_us: u64,
    /// v2: its largest interval.
    pub periodic_max_us: u64,
    /// v4: decides each upgrade request before the 101 (`accept`/`respond`, now or
    /// later); without it every valid upgrade is accepted at once.
    pub upgrade: Option<rs_request_cb>,
    /// v4: answers plain HTTP requests on the app's endpoints (`respond`, now or later).
    pub http: Option<rs_request_cb>,
    /// v5: a client sent a ping or a pong (it is alive); without it, they are not
    /// reported.
    pub ping: Option<rs_ping_cb>,
    /// v6: an operator's command (`ringsocketctl app APP CMD…`); replies through
    /// `control_reply`, returns 0 for success.
    pub control: Option<rs_control_cb>,
}

// SAFETY: a descriptor is immutable data (a name pointer to static bytes and function
// pointers), so sharing it between threads is sound; it must be `Sync` to be a `static`.
#[allow(unsafe_code)]
unsafe impl Sync for rs_app_descriptor {}
