//! ABI version 1 between the ringsocket server and its app plugins.
//!
//! This crate is the Rust mirror of `include/ringsocket.h` (the header C authors
//! include); a test compiles the header and checks that both agree on every constant,
//! size and field offset. A plugin exports one [`rs_app_descriptor`] under the symbol
//! [`DESCRIPTOR_SYMBOL`]; the server reads its first two fields ([`rs_app_descriptor::magic`],
//! [`rs_app_descriptor::abi_version`]) before anything else and refuses other versions.
//!
//! It contains no code: the safe Rust API is `ringsocket-sdk`; the host side is
//! `ringsocket-server`.
#![deny(unsafe_code)] // one audited exception: `impl Sync for rs_app_descriptor`
#![allow(non_camel_case_types)] // the names mirror the C header

use std::ffi::{c_char, c_int, c_void};

/// `"RSAP"`: the first four bytes of every descriptor.
pub const RS_ABI_MAGIC: u32 = 0x5253_4150;
/// The ABI version this crate describes.
pub const RS_ABI_VERSION: u32 = 1;
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

/// The layout every `rs_t` starts with.
#[repr(C)]
pub struct rs_header {
    /// The host's function table.
    pub api: *const rs_host_api,
}

/// What the open callback learns about a new client. Strings are not NUL-terminated.
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
}

// SAFETY: a descriptor is immutable data (a name pointer to static bytes and function
// pointers), so sharing it between threads is sound; it must be `Sync` to be a `static`.
#[allow(unsafe_code)]
unsafe impl Sync for rs_app_descriptor {}
