//! The `rs_t` behind every callback's handle, and the host API a plugin calls through
//! it: sending (a copied buffer, or a message written in place: see `writer.rs`),
//! closing, client metadata, timers, events and logging.
//!
//! Every host call validates its arguments and returns an `RS_ERR_*` rather than
//! trusting the plugin: NULL pointers with lengths, unknown kinds and targets, codes
//! an app may not send, clients that are not the app's.

use super::clients::Clients;
use super::events::EventQueue;
use super::ffi::plugin_slice;
use super::periodic::Periodic;
use super::topics::{AppTopics, MAX_TOPIC_LEN};
use super::ServerFacts;
use crate::config::AppConfig;
use crate::records::{ClientId, IdList, LargeMessage, Outbound, OutboundTx, Payload, Targets};
use crate::stats::{clock_ns, AppStats, Owned};
use crate::WorkerLink;
use ringsocket_abi as abi;
use ringsocket_proto::{CloseCode, MessageKind, RequestHead};
use ringsocket_records::Draft;
use ringsocket_ring::SleepState;
use rustc_hash::FxHashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which callback is running, for the host API's context checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callback {
    None,
    Init,
    Open,
    Read,
    Close,
    Timer,
    Event,
    /// The upgrade or http callback (v4).
    Request,
    /// The ping callback (v5).
    Ping,
    /// The control callback (v6).
    Control,
}

/// Where the message being written (`rs_w_*`) lives.
pub(crate) enum Written {
    /// Nothing written yet.
    Nothing,
    /// In place, in a record reserved in worker `worker`'s outbound ring.
    Draft { worker: usize, draft: Draft },
    /// In [`HostCtx::spill`] (too large for a reservation, or the ring was full).
    Spilled,
}

/// A request waiting for its app's answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    /// The client's address.
    pub(crate) peer: Option<std::net::SocketAddr>,
    /// The endpoint's id.
    pub(crate) endpoint_id: u16,
    /// An upgrade (else a plain request, which cannot be accepted).
    pub(crate) upgrade: bool,
}

/// Rounds an app may send without a latency sample before one is taken anyway.
const UNSAMPLED_ROUNDS: u32 = 256;

/// The most bytes of header lines a response may carry (the record gives them 16 bits).
const MAX_RESPONSE_HEADERS: usize = 16 * 1024;

/// The app thread's side of every host call. `repr(C)` with the ABI header first, so C
/// code reaches the API table and the writer's fields.
#[repr(C)]
pub(crate) struct HostCtx {
    pub(crate) header: abi::rs_header,
    pub(crate) name: String,
    pub(crate) outbound: Vec<OutboundTx>,
    pub(crate) workers: Vec<Arc<WorkerLink>>,
    pub(crate) sleep: Arc<SleepState>,
    /// Workers that got records since they were last woken.
    dirty: Vec<bool>,
    /// Per-worker scratch lists of ids (reused: no allocation per send).
    scratch: Vec<Vec<u64>>,
    pub(crate) current: ClientId,
    pub(crate) callback: Callback,
    /// The one-shot timer's deadline.
    pub(crate) timer: Option<Instant>,
    pub(crate) periodic: Option<Periodic>,
    pub(crate) max_msg: usize,
    /// The message being written.
    pub(crate) written: Written,
    /// A write failed (too big): the next `to` fails and discards the message.
    pub(crate) write_failed: bool,
    /// Heap room for a written message that left (or never got) its reservation.
    pub(crate) spill: Vec<u8>,
    pub(crate) clients: Clients,
    pub(crate) topics: AppTopics,
    /// Per worker, during a publish: whether it has subscribers (reused).
    publish_to: Vec<bool>,
    /// The request head of the client being opened, during its open callback.
    pub(crate) open_head: Option<(*const u8, usize)>,
    pub(crate) events: Arc<EventQueue>,
    pub(crate) conf: abi::rs_conf,
    /// Requests (upgrades to decide, plain requests to answer) asked and not yet
    /// answered or cancelled, with the client's address and endpoint id (an accepted
    /// upgrade's client is known from the accept on).
    pub(crate) requests: FxHashMap<ClientId, Waiting>,
    /// What `accept` attached to clients, from the accept until the client leaves.
    pub(crate) attached: FxHashMap<ClientId, u64>,
    /// The last upgrade or http callback returned non-zero.
    pub(crate) callback_failed: bool,
    /// This app thread's counts.
    pub(crate) stats: Owned<AppStats>,
    /// Whether to take latency samples (metrics on).
    pub(crate) sampling: bool,
    /// The clock, read this round for a worker's stamp: the round's sends are
    /// sampled with it (no clock read of their own).
    pub(crate) sample_clock: Option<u64>,
    /// Rounds that sent without a sample since the last one.
    unsampled_rounds: u32,
    /// What the running control callback replied so far.
    pub(crate) control_reply: Vec<u8>,
}

pub(super) unsafe extern "C" fn host_send(
    rs: *mut abi::rs_t,
    target: u32,
    ids: *const u64,
    id_count: usize,
    kind: u32,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: `rs` comes from the plugin, which got it from us for this callback.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `id_count` readable ids and `len` readable bytes.
    let (ids, data) = unsafe {
        (
            plugin_slice(ids, id_count),
            plugin_slice(data.cast::<u8>(), len),
        )
    };
    match (ids, data) {
        (Some(ids), Some(data)) => ctx.send(target, ids, kind, data, false),
        _ => abi::RS_ERR_INVALID,
    }
}

pub(super) unsafe extern "C" fn host_close(
    rs: *mut abi::rs_t,
    client: u64,
    code: u16,
    reason: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `len` readable bytes.
    let reason = unsafe { plugin_slice(reason.cast::<u8>(), len) };
    match reason.map(std::str::from_utf8) {
        Some(Ok(reason)) if CloseCode(code).is_app_allowed() => {
            ctx.close_client(ClientId(client), CloseCode(code), reason)
        }
        _ => abi::RS_ERR_INVALID,
    }
}

pub(super) unsafe extern "C" fn host_set_timer(rs: *mut abi::rs_t, delay_us: u64) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    ctx.timer = Instant::now().checked_add(Duration::from_micros(delay_us));
    abi::RS_OK
}

pub(super) unsafe extern "C" fn host_current_client(rs: *const abi::rs_t) -> u64 {
    // SAFETY: as in host_send (read-only here).
    unsafe { (*rs.cast::<HostCtx>()).current.0 }
}

pub(super) unsafe extern "C" fn host_log(
    rs: *mut abi::rs_t,
    level: c_int,
    msg: *const c_char,
    len: usize,
) {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `len` readable bytes.
    let Some(msg) = (unsafe { plugin_slice(msg.cast::<u8>(), len) }) else {
        return;
    };
    let msg = String::from_utf8_lossy(msg);
    let level = match level {
        abi::RS_LOG_ERROR => log::Level::Error,
        abi::RS_LOG_WARN => log::Level::Warn,
        abi::RS_LOG_INFO => log::Level::Info,
        _ => log::Level::Debug,
    };
    log::log!(level, "app {}: {}", ctx.name, msg);
}

pub(super) unsafe extern "C" fn host_client_info(
    rs: *mut abi::rs_t,
    client: u64,
    out: *mut abi::rs_client_info,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    if out.is_null() {
        return abi::RS_ERR_INVALID;
    }
    match ctx.clients.get(ClientId(client)) {
        Some(info) => {
            // SAFETY: the plugin passes a writable rs_client_info (checked non-NULL).
            unsafe { out.write_unaligned(info) };
            abi::RS_OK
        }
        None => abi::RS_ERR_NOT_FOUND,
    }
}

pub(super) unsafe extern "C" fn host_header(
    rs: *mut abi::rs_t,
    name: *const c_char,
    name_len: usize,
    value_len: *mut usize,
) -> *const c_char {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `name_len` readable bytes.
    let name = unsafe { plugin_slice(name.cast::<u8>(), name_len) };
    let (Some(Ok(name)), Some((head, head_len))) = (name.map(std::str::from_utf8), ctx.open_head)
    else {
        return std::ptr::null();
    };
    // SAFETY: `open_head` is the open record's head, alive during the open callback
    // (it is reset when the callback returns).
    let head = RequestHead(unsafe { std::slice::from_raw_parts(head, head_len) });
    match head.header(name) {
        Some(value) => {
            if !value_len.is_null() {
                // SAFETY: the plugin passes a writable size_t (checked non-NULL).
                unsafe { value_len.write_unaligned(value.len()) };
            }
            value.as_ptr().cast()
        }
        None => std::ptr::null(),
    }
}

pub(super) unsafe extern "C" fn host_set_periodic(
    rs: *mut abi::rs_t,
    min_us: u64,
    incr_us: u64,
    max_us: u64,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    let Some(spec) = crate::plugin::PeriodicSpec::from_micros(min_us, incr_us, max_us) else {
        ctx.periodic = None;
        return abi::RS_OK;
    };
    ctx.periodic = Some(Periodic::start(spec, Instant::now()));
    abi::RS_OK
}

pub(super) unsafe extern "C" fn host_event_handle(rs: *mut abi::rs_t) -> *mut abi::rs_event_handle {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    ctx.events.handle()
}

pub(super) unsafe extern "C" fn host_subscribe(
    rs: *mut abi::rs_t,
    client: u64,
    topic: *const c_void,
    topic_len: usize,
) -> c_int {
    // SAFETY: forwarded from the plugin, as `subscription` requires.
    unsafe { subscription(rs, client, topic, topic_len, true) }
}

pub(super) unsafe extern "C" fn host_unsubscribe(
    rs: *mut abi::rs_t,
    client: u64,
    topic: *const c_void,
    topic_len: usize,
) -> c_int {
    // SAFETY: forwarded from the plugin, as `subscription` requires.
    unsafe { subscription(rs, client, topic, topic_len, false) }
}

/// `host_subscribe` (`on`) and `host_unsubscribe`.
///
/// # Safety
/// `rs` is the plugin's live handle and `topic` points at `topic_len` readable bytes.
unsafe fn subscription(
    rs: *mut abi::rs_t,
    client: u64,
    topic: *const c_void,
    topic_len: usize,
    on: bool,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `topic_len` readable bytes.
    match unsafe { plugin_slice(topic.cast::<u8>(), topic_len) } {
        Some(topic) => ctx.subscription(ClientId(client), topic, on),
        None => abi::RS_ERR_INVALID,
    }
}

pub(super) unsafe extern "C" fn host_publish(
    rs: *mut abi::rs_t,
    topic: *const c_void,
    topic_len: usize,
    except: u64,
    kind: u32,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `topic_len` and `len` readable bytes.
    let (topic, data) = unsafe {
        (
            plugin_slice(topic.cast::<u8>(), topic_len),
            plugin_slice(data.cast::<u8>(), len),
        )
    };
    match (topic, data) {
        (Some(topic), Some(data)) => ctx.publish(topic, except, kind, data, false),
        _ => abi::RS_ERR_INVALID,
    }
}

pub(super) unsafe extern "C" fn host_topic_count(
    rs: *mut abi::rs_t,
    topic: *const c_void,
    topic_len: usize,
) -> i64 {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `topic_len` readable bytes.
    match unsafe { plugin_slice(topic.cast::<u8>(), topic_len) } {
        Some(topic) => i64::from(ctx.topics.count(topic)),
        None => i64::from(abi::RS_ERR_INVALID),
    }
}

pub(super) unsafe extern "C" fn host_accept(rs: *mut abi::rs_t, request: u64, data: u64) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    ctx.accept(ClientId(request), data)
}

pub(super) unsafe extern "C" fn host_respond(
    rs: *mut abi::rs_t,
    request: u64,
    status: u16,
    headers: *const c_char,
    headers_len: usize,
    body: *const c_void,
    body_len: usize,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    // SAFETY: the plugin passes `headers_len` and `body_len` readable bytes.
    let (headers, body) = unsafe {
        (
            plugin_slice(headers.cast::<u8>(), headers_len),
            plugin_slice(body.cast::<u8>(), body_len),
        )
    };
    match (headers, body) {
        (Some(headers), Some(body)) => ctx.respond(ClientId(request), status, headers, body),
        _ => abi::RS_ERR_INVALID,
    }
}

pub(super) unsafe extern "C" fn host_client_data(rs: *mut abi::rs_t, client: u64) -> u64 {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    ctx.attached.get(&ClientId(client)).copied().unwrap_or(0)
}

pub(super) unsafe extern "C" fn host_control_reply(
    rs: *mut abi::rs_t,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    if !matches!(ctx.callback, Callback::Control) {
        return abi::RS_ERR_CONTEXT;
    }
    // SAFETY: the plugin passes `len` readable bytes.
    let Some(data) = (unsafe { plugin_slice(data.cast::<u8>(), len) }) else {
        return abi::RS_ERR_INVALID;
    };
    if ctx.control_reply.len() + data.len() > abi::RS_MAX_CONTROL_REPLY {
        return abi::RS_ERR_TOO_BIG;
    }
    ctx.control_reply.extend_from_slice(data);
    abi::RS_OK
}

pub(super) unsafe extern "C" fn host_conf(rs: *const abi::rs_t) -> *const abi::rs_conf {
    // SAFETY: as in host_send (read-only here).
    unsafe { &(*rs.cast::<HostCtx>()).conf }
}

/// # Safety
/// `rs` must be the handle the server passed to the running callback.
pub(super) unsafe fn ctx<'a>(rs: *mut abi::rs_t) -> &'a mut HostCtx {
    // SAFETY: every rs_t we hand out is a `*mut HostCtx` (repr(C), header first), owned
    // by the app thread that is running the callback; nothing else touches it meanwhile.
    unsafe { &mut *rs.cast::<HostCtx>() }
}

impl HostCtx {
    /// A context for an app thread of the app `config`, sending to the workers'
    /// `outbound` rings and waking them through `workers` (its header's `api` set,
    /// nothing written yet).
    pub(crate) fn new(
        api: &'static abi::rs_host_api,
        config: &AppConfig,
        facts: &ServerFacts,
        (outbound, workers): (Vec<OutboundTx>, Vec<Arc<WorkerLink>>),
        sleep: Arc<SleepState>,
        stats: Owned<AppStats>,
    ) -> HostCtx {
        let conf = abi::rs_conf {
            size: std::mem::size_of::<abi::rs_conf>() as u32,
            worker_c: workers.len() as u16,
            app_c: facts.app_count as u16,
            max_ws_msg_size: facts.max_msg as u64,
            event_queue_len: config.event_queue_len,
            max_event_size: config.max_event_size,
        };
        let events = Arc::new(EventQueue::new(
            config.event_queue_len as usize,
            config.max_event_size as usize,
            sleep.clone(),
        ));
        let (name, max_msg) = (config.name.clone(), facts.max_msg);
        let n = workers.len();
        HostCtx {
            header: abi::rs_header {
                api,
                w_ptr: std::ptr::null_mut(),
                w_len: 0,
                w_cap: 0,
                app_state: std::ptr::null_mut(),
                cur_client: 0,
                cur_kind: 0,
                cur_endpoint_id: 0,
                log_level: log_level(),
                reserved: 0,
            },
            name,
            outbound,
            workers,
            sleep,
            dirty: vec![false; n],
            scratch: vec![Vec::new(); n],
            current: ClientId(0),
            callback: Callback::None,
            timer: None,
            periodic: None,
            max_msg,
            written: Written::Nothing,
            write_failed: false,
            spill: Vec::new(),
            clients: Clients::default(),
            topics: AppTopics::new(n),
            publish_to: vec![false; n],
            open_head: None,
            events,
            conf,
            requests: FxHashMap::default(),
            attached: FxHashMap::default(),
            callback_failed: false,
            stats,
            sampling: facts.sampling,
            sample_clock: None,
            unsampled_rounds: 0,
            control_reply: Vec::new(),
        }
    }

    /// Sets the client (and its endpoint and message kind) the coming callback is about.
    #[inline]
    pub(crate) fn set_current(&mut self, client: ClientId, endpoint_id: u16, kind: u32) {
        self.current = client;
        self.header.cur_client = client.0;
        self.header.cur_endpoint_id = endpoint_id;
        self.header.cur_kind = kind;
    }

    /// Sends `data` as one message of `kind` to `target` (an `RS_TO_*` with its ids).
    /// With `in_place`, `data` is the written message and the draft (if any) becomes
    /// the record of its own worker.
    pub(crate) fn send(
        &mut self,
        target: u32,
        ids: &[u64],
        kind: u32,
        data: &[u8],
        in_place: bool,
    ) -> c_int {
        let kind = match self.check_message(kind, data) {
            Ok(kind) => kind,
            Err(code) => return code,
        };
        // One recipient, one worker: no grouping.
        let id = match target {
            abi::RS_TO_CUR => {
                if !matches!(self.callback, Callback::Open | Callback::Read) {
                    return abi::RS_ERR_CONTEXT;
                }
                self.current
            }
            abi::RS_TO_SINGLE => match ids {
                [id] => ClientId(*id),
                _ => return abi::RS_ERR_INVALID,
            },
            _ => return self.send_to_many(target, ids, kind, data, in_place),
        };
        let w = id.worker();
        if id.0 == 0 || w >= self.outbound.len() {
            return abi::RS_OK; // no such client: dropped, like a gone one
        }
        if !in_place && data.len() <= self.outbound[w].inline_max() {
            self.push_to_one(w, kind, id, data);
            return abi::RS_OK;
        }
        let to = Targets::list(IdList::Ids(std::slice::from_ref(&id.0)));
        let result = self.deliver(w, to, kind, data, in_place, &mut None);
        result.err().unwrap_or(abi::RS_OK)
    }

    /// [`HostCtx::send`] to every client, a list of them or every client but a list.
    #[inline(never)]
    fn send_to_many(
        &mut self,
        target: u32,
        ids: &[u64],
        kind: MessageKind,
        data: &[u8],
        in_place: bool,
    ) -> c_int {
        let mut shared = None;
        let result = match target {
            abi::RS_TO_EVERY => self.each_worker(in_place, |ctx, w| {
                let to = Targets::all_except(IdList::Ids(&[]));
                ctx.deliver(w, to, kind, data, in_place, &mut shared)
            }),
            abi::RS_TO_MULTI | abi::RS_TO_EVERY_EXCEPT => {
                let except = target == abi::RS_TO_EVERY_EXCEPT;
                self.group_by_worker(ids);
                self.each_worker(in_place, |ctx, w| {
                    if !except && ctx.scratch[w].is_empty() {
                        return Ok(());
                    }
                    let list = std::mem::take(&mut ctx.scratch[w]);
                    let ids = IdList::Ids(&list);
                    let to = if except {
                        Targets::all_except(ids)
                    } else {
                        Targets::list(ids)
                    };
                    let result = ctx.deliver(w, to, kind, data, in_place, &mut shared);
                    ctx.scratch[w] = list;
                    result
                })
            }
            _ => Err(abi::RS_ERR_INVALID),
        };
        result.err().unwrap_or(abi::RS_OK)
    }

    /// The kind of a message an app sends, if the message may be sent.
    #[inline]
    fn check_message(&self, kind: u32, data: &[u8]) -> Result<MessageKind, c_int> {
        let kind = match kind {
            abi::RS_BIN => MessageKind::Binary,
            abi::RS_UTF8 => MessageKind::Text,
            _ => return Err(abi::RS_ERR_INVALID),
        };
        if data.len() > self.max_msg {
            return Err(abi::RS_ERR_TOO_BIG);
        }
        if kind == MessageKind::Text && std::str::from_utf8(data).is_err() {
            return Err(abi::RS_ERR_INVALID);
        }
        Ok(kind)
    }

    /// Sends `data` to every subscriber of `topic` but `except` (if not 0): one record
    /// per worker that has subscribers. With `in_place`, as in [`HostCtx::send`].
    pub(crate) fn publish(
        &mut self,
        topic: &[u8],
        except: u64,
        kind: u32,
        data: &[u8],
        in_place: bool,
    ) -> c_int {
        let kind = match self.check_message(kind, data) {
            Ok(kind) => kind,
            Err(code) => return code,
        };
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return abi::RS_ERR_INVALID;
        }
        let Some((id, per_worker)) = self.topics.find(topic) else {
            return abi::RS_OK; // no subscribers anywhere
        };
        for (flag, &n) in self.publish_to.iter_mut().zip(per_worker) {
            *flag = n > 0;
        }
        let except = [except];
        let except = IdList::Ids(if except[0] == 0 { &[] } else { &except });
        let mut shared = None;
        let result = self.each_worker(in_place, |ctx, w| {
            if !ctx.publish_to[w] {
                return Ok(());
            }
            let to = Targets::topic(id, except);
            ctx.deliver(w, to, kind, data, in_place, &mut shared)
        });
        result.err().unwrap_or(abi::RS_OK)
    }

    /// Subscribes (or with `on` false, unsubscribes) `client` to `topic`.
    pub(crate) fn subscription(&mut self, client: ClientId, topic: &[u8], on: bool) -> c_int {
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return abi::RS_ERR_INVALID;
        }
        if self.clients.get(client).is_none() {
            return abi::RS_ERR_NOT_FOUND;
        }
        let w = client.worker();
        let changed = if on {
            self.topics.subscribe(client, w, topic)
        } else {
            self.topics.unsubscribe(client, w, topic)
        };
        if let Some(topic) = changed {
            let record = if on {
                Outbound::Subscribe { client, topic }
            } else {
                Outbound::Unsubscribe { client, topic }
            };
            self.push(w, record);
        }
        abi::RS_OK
    }

    /// Runs `each` for every worker, the draft's own worker last: the others copy from
    /// the draft's bytes, which must stay unpublished (and so untouched) until then.
    fn each_worker(
        &mut self,
        in_place: bool,
        mut each: impl FnMut(&mut Self, usize) -> Result<(), c_int>,
    ) -> Result<(), c_int> {
        let draft_worker = match (&self.written, in_place) {
            (Written::Draft { worker, .. }, true) => Some(*worker),
            _ => None,
        };
        let others = (0..self.outbound.len()).filter(|&w| Some(w) != draft_worker);
        for w in others.chain(draft_worker) {
            each(self, w)?;
        }
        Ok(())
    }

    /// Sorts `ids` into the per-worker scratch lists (each sorted, without duplicates;
    /// ids of no worker are dropped).
    fn group_by_worker(&mut self, ids: &[u64]) {
        let workers = self.outbound.len();
        for list in &mut self.scratch {
            list.clear();
        }
        for &id in ids {
            let w = ClientId(id).worker();
            if id != 0 && w < workers {
                self.scratch[w].push(id);
            }
        }
        for list in &mut self.scratch {
            if list.len() > 1 {
                list.sort_unstable();
                list.dedup();
            }
        }
    }

    /// Hands worker `w` a message for `to`: in place into the draft, when the draft is
    /// that worker's, else as a copied (or shared large) record.
    #[inline(always)]
    fn deliver(
        &mut self,
        w: usize,
        to: Targets<'_>,
        kind: MessageKind,
        data: &[u8],
        in_place: bool,
        shared: &mut Option<Arc<[u8]>>,
    ) -> Result<(), c_int> {
        let mut data = data;
        if in_place && matches!(self.written, Written::Draft { worker, .. } if worker == w) {
            let Written::Draft { draft, .. } =
                std::mem::replace(&mut self.written, Written::Nothing)
            else {
                unreachable!("matched above")
            };
            match self.outbound[w].finish_draft(draft, kind, to, data.len()) {
                Ok(()) => {
                    self.dirty[w] = true;
                    return Ok(());
                }
                // The ids do not fit after the payload: copy it out of the abandoned
                // reservation before the ring reuses that room.
                Err(_) => data = self.spill_copy(data),
            }
        }
        let ids = to.ids;
        let payload = self.payload(w, data, shared);
        let record = Outbound::Send { kind, to, payload };
        // One id always fits (a payload is at most a quarter of a record); a long list
        // of ids may not.
        if ids.len() > 1 && record.wire_len() > self.outbound[w].max_record_len() {
            return Err(abi::RS_ERR_TOO_BIG);
        }
        self.push(w, record);
        Ok(())
    }

    /// Copies `data` into the spill buffer and returns the copy (a view that stays valid
    /// until the spill buffer is next written).
    fn spill_copy<'s>(&mut self, data: &[u8]) -> &'s [u8] {
        self.spill.clear();
        self.spill.extend_from_slice(data);
        // SAFETY: the spill buffer is only written by the writer, which cannot run
        // before this send returns; the view does not outlive the send.
        unsafe { std::slice::from_raw_parts(self.spill.as_ptr(), self.spill.len()) }
    }

    /// The payload of a message for worker `w`: inline, or a reference to `shared`
    /// (created from `data` on first use) when the message is large.
    #[inline(always)]
    fn payload<'d>(&self, w: usize, data: &'d [u8], shared: &mut Option<Arc<[u8]>>) -> Payload<'d> {
        if data.len() <= self.outbound[w].inline_max() {
            return Payload::Inline(data);
        }
        let reference = shared.get_or_insert_with(|| Arc::from(data)).clone();
        Payload::Large(LargeMessage::shared(reference))
    }

    /// Accepts the waiting upgrade request `request`, attaching `data` (if not 0). From
    /// here the app knows the client as connected: it can send to it, subscribe it,
    /// and gets exactly one close for it (without an open if it left before the 101).
    pub(crate) fn accept(&mut self, request: ClientId, data: u64) -> c_int {
        let Some(&waiting) = self.requests.get(&request) else {
            return abi::RS_ERR_NOT_FOUND;
        };
        if !waiting.upgrade {
            return abi::RS_ERR_INVALID; // a plain request is answered, not accepted
        }
        self.requests.remove(&request);
        self.clients
            .insert(request, waiting.peer, waiting.endpoint_id);
        if data != 0 {
            self.attached.insert(request, data);
        }
        self.push(request.worker(), Outbound::Accept { client: request });
        abi::RS_OK
    }

    /// Answers the waiting request `request` (a refused upgrade or a plain request's
    /// response).
    pub(crate) fn respond(
        &mut self,
        request: ClientId,
        status: u16,
        headers: &[u8],
        body: &[u8],
    ) -> c_int {
        if !(200..=599).contains(&status) || body.len() > u32::MAX as usize {
            return abi::RS_ERR_INVALID;
        }
        let headers = match ringsocket_proto::http::check_headers(headers) {
            Ok(h) if h.len() <= MAX_RESPONSE_HEADERS => h,
            Ok(_) => return abi::RS_ERR_TOO_BIG,
            Err(e) => {
                log::warn!("app {}: response refused: {e}", self.name);
                return abi::RS_ERR_INVALID;
            }
        };
        if self.requests.remove(&request).is_none() {
            return abi::RS_ERR_NOT_FOUND;
        }
        let headers_len = headers.len() as u32;
        let mut bytes = headers;
        bytes.extend_from_slice(body);
        let w = request.worker();
        let inline_max = self.outbound[w].inline_max();
        let record = |bytes| Outbound::Respond {
            client: request,
            status,
            bytes,
            headers_len,
        };
        if bytes.len() <= inline_max {
            self.push(w, record(Payload::Inline(&bytes)));
        } else {
            self.push(w, record(Payload::Large(LargeMessage::owned(bytes))));
        }
        abi::RS_OK
    }

    /// Queues a close frame for `client`.
    pub(crate) fn close_client(
        &mut self,
        client: ClientId,
        code: CloseCode,
        reason: &str,
    ) -> c_int {
        let w = client.worker();
        if client.0 == 0 || w >= self.outbound.len() {
            return abi::RS_ERR_INVALID;
        }
        let mut payload = [0u8; 125];
        let n = ringsocket_proto::close::encode_close_payload(code, reason, &mut payload);
        self.push(
            w,
            Outbound::Close {
                client,
                frame_payload: &payload[..n],
            },
        );
        abi::RS_OK
    }

    /// Appends one record to worker `w`'s ring, waiting (parked, not spinning) while the
    /// ring is full. A message being written in place in that ring moves out first.
    #[inline(always)]
    pub(crate) fn push(&mut self, w: usize, record: Outbound<'_>) {
        self.before_push(w);
        if let Err(record) = self.outbound[w].try_push(record) {
            self.push_when_room(w, record);
        }
    }

    /// What goes before any record is pushed to worker `w`'s ring: a message being
    /// written in place there moves out, and the worker is marked to be woken.
    #[inline(always)]
    fn before_push(&mut self, w: usize) {
        if matches!(self.written, Written::Draft { worker, .. } if worker == w) {
            self.evict_draft();
        }
        self.dirty[w] = true;
    }

    /// [`HostCtx::push`] of an inline message to one client, through the ring's
    /// shortcut for it (the record is only built if the ring is full).
    #[inline]
    fn push_to_one(&mut self, w: usize, kind: MessageKind, id: ClientId, data: &[u8]) {
        self.before_push(w);
        if self.outbound[w].try_push_to_one(kind, id, data).is_err() {
            let to = Targets::list(IdList::Ids(std::slice::from_ref(&id.0)));
            let payload = Payload::Inline(data);
            self.push_when_room(w, Outbound::Send { kind, to, payload });
        }
    }

    /// [`HostCtx::push`] into a full ring: parks until the worker frees room.
    #[cold]
    #[inline(never)]
    fn push_when_room(&mut self, w: usize, mut record: Outbound<'_>) {
        self.stats.ring_full.add(1);
        loop {
            // Full: ask the worker to tell us when it frees room, make sure it is awake
            // to do so, and sleep until then.
            self.outbound[w].set_waiting();
            record = match self.outbound[w].try_push(record) {
                Ok(()) => return,
                Err(r) => r,
            };
            wake_worker(&self.workers[w]);
            self.sleep.announce();
            record = match self.outbound[w].try_push(record) {
                Ok(()) => {
                    self.sleep.withdraw();
                    return;
                }
                Err(r) => r,
            };
            self.sleep.park(None);
        }
    }

    /// Wakes every worker that got records since the last call (if it sleeps).
    /// With metrics on, a sampled round's records end with a stamp for each such
    /// worker (app send → socket write; a full ring skips the sample). A round is
    /// sampled when it handled a worker's stamp (whose clock read it reuses), or else
    /// every [`UNSAMPLED_ROUNDS`]th round (an app that sends on its own, from timers or
    /// events).
    pub(crate) fn wake_dirty_workers(&mut self) {
        let mut at = if self.sampling {
            self.sample_clock.take()
        } else {
            None
        };
        let mut sent = false;
        for w in 0..self.dirty.len() {
            if !std::mem::take(&mut self.dirty[w]) {
                continue;
            }
            sent = true;
            if self.sampling && at.is_none() && self.unsampled_rounds >= UNSAMPLED_ROUNDS {
                at = Some(clock_ns(Instant::now()));
            }
            let drafting = matches!(self.written, Written::Draft { worker, .. } if worker == w);
            if let (Some(at), false) = (at, drafting) {
                // A full ring skips the sample rather than wait.
                let _ = self.outbound[w].try_push(Outbound::Stamp { at });
            }
            wake_worker(&self.workers[w]);
        }
        if sent {
            self.unsampled_rounds = if at.is_some() {
                0
            } else {
                self.unsampled_rounds + 1
            };
        }
    }
}

/// Wakes a worker if it sleeps.
pub(crate) fn wake_worker(link: &WorkerLink) {
    if link.sleep.wake_needed() {
        if let Err(e) = link.waker.wake() {
            log::error!("cannot wake a worker: {e}");
        }
    }
}

/// The most detailed `RS_LOG_*` level the logger passes.
fn log_level() -> u8 {
    match log::max_level() {
        log::LevelFilter::Off | log::LevelFilter::Error => abi::RS_LOG_ERROR as u8,
        log::LevelFilter::Warn => abi::RS_LOG_WARN as u8,
        log::LevelFilter::Info => abi::RS_LOG_INFO as u8,
        _ => abi::RS_LOG_DEBUG as u8,
    }
}
