//! App threads: one per app, parked on a futex, draining its inbound rings and calling
//! the plugin's callbacks; and the host API those callbacks use to send.

use crate::config::AppConfig;
use crate::plugin::Plugin;
use crate::records::{
    ClientId, IdList, Inbound, InboundRx, LargeMessage, Outbound, OutboundTx, Payload, Targets,
};
use crate::WorkerLink;
use ringsocket_abi as abi;
use ringsocket_proto::{CloseCode, MessageKind};
use ringsocket_ring::SleepState;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handled from one ring before the others get a turn.
const BATCH: usize = 256;

/// Which callback is running, for the host API's context checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    None,
    Init,
    Open,
    Read,
    Close,
    Timer,
}

/// The `rs_t` behind every callback's handle. `repr(C)` with the ABI header first, so
/// C code can reach the API table.
#[repr(C)]
pub(crate) struct HostCtx {
    header: abi::rs_header,
    name: String,
    outbound: Vec<OutboundTx>,
    workers: Vec<Arc<WorkerLink>>,
    sleep: Arc<SleepState>,
    /// Workers that got records since they were last woken.
    dirty: Vec<bool>,
    /// Per-worker scratch lists of ids (reused: no allocation per send).
    scratch: Vec<Vec<u64>>,
    current: ClientId,
    callback: Callback,
    timer: Option<Instant>,
    max_msg: usize,
}

static HOST_API: abi::rs_host_api = abi::rs_host_api {
    size: std::mem::size_of::<abi::rs_host_api>() as u32,
    send: host_send,
    close: host_close,
    set_timer: host_set_timer,
    current_client: host_current_client,
    log: host_log,
};

/// # Safety
/// `rs` must be the handle the server passed to the running callback.
unsafe fn ctx<'a>(rs: *mut abi::rs_t) -> &'a mut HostCtx {
    // SAFETY: every rs_t we hand out is a `*mut HostCtx` (repr(C), header first), owned
    // by the app thread that is running the callback; nothing else touches it meanwhile.
    unsafe { &mut *rs.cast::<HostCtx>() }
}

unsafe extern "C" fn host_send(
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
        (Some(ids), Some(data)) => ctx.send(target, ids, kind, data),
        _ => abi::RS_ERR_INVALID,
    }
}

unsafe extern "C" fn host_close(
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

/// A slice a plugin passed as pointer and length: `None` if the pointer is NULL with a
/// non-zero length, empty (whatever the pointer) for length 0.
///
/// # Safety
/// A non-NULL `ptr` must point at `len` readable, initialised `T`s that outlive `'a`.
unsafe fn plugin_slice<'a, T>(ptr: *const T, len: usize) -> Option<&'a [T]> {
    match (ptr.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: per this function's contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

unsafe extern "C" fn host_set_timer(rs: *mut abi::rs_t, delay_us: u64) -> c_int {
    // SAFETY: as in host_send.
    let ctx = unsafe { ctx(rs) };
    ctx.timer = Instant::now().checked_add(Duration::from_micros(delay_us));
    abi::RS_OK
}

unsafe extern "C" fn host_current_client(rs: *const abi::rs_t) -> u64 {
    // SAFETY: as in host_send (read-only here).
    unsafe { (*rs.cast::<HostCtx>()).current.0 }
}

unsafe extern "C" fn host_log(rs: *mut abi::rs_t, level: c_int, msg: *const c_char, len: usize) {
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

impl HostCtx {
    fn send(&mut self, target: u32, ids: &[u64], kind: u32, data: &[u8]) -> c_int {
        let kind = match kind {
            abi::RS_BIN => MessageKind::Binary,
            abi::RS_UTF8 => MessageKind::Text,
            _ => return abi::RS_ERR_INVALID,
        };
        if data.len() > self.max_msg {
            return abi::RS_ERR_TOO_BIG;
        }
        if kind == MessageKind::Text && std::str::from_utf8(data).is_err() {
            return abi::RS_ERR_INVALID;
        }
        // A large message is copied once into a buffer every worker shares.
        let mut shared = None;
        match target {
            abi::RS_TO_CUR => {
                if !matches!(self.callback, Callback::Open | Callback::Read) {
                    return abi::RS_ERR_CONTEXT;
                }
                let to = [self.current.0];
                let w = self.current.worker();
                self.push_message(w, kind, Targets::List(IdList::Ids(&to)), data, &mut shared);
            }
            abi::RS_TO_SINGLE | abi::RS_TO_MULTI => {
                if target == abi::RS_TO_SINGLE && ids.len() != 1 {
                    return abi::RS_ERR_INVALID;
                }
                return self.send_grouped(ids, false, kind, data, &mut shared);
            }
            abi::RS_TO_EVERY => {
                for w in 0..self.outbound.len() {
                    let to = Targets::AllExcept(IdList::Ids(&[]));
                    self.push_message(w, kind, to, data, &mut shared);
                }
            }
            abi::RS_TO_EVERY_EXCEPT => {
                return self.send_grouped(ids, true, kind, data, &mut shared)
            }
            _ => return abi::RS_ERR_INVALID,
        }
        abi::RS_OK
    }

    /// The payload of a message for worker `w`: inline, or a reference to `shared`
    /// (created from `data` on first use) when the message is large.
    #[inline]
    fn payload<'d>(&self, w: usize, data: &'d [u8], shared: &mut Option<Arc<[u8]>>) -> Payload<'d> {
        if data.len() <= self.outbound[w].inline_max() {
            return Payload::Inline(data);
        }
        let reference = shared.get_or_insert_with(|| Arc::from(data)).clone();
        Payload::Large(LargeMessage::shared(reference))
    }

    /// Queues one message record for worker `w`.
    fn push_message(
        &mut self,
        w: usize,
        kind: MessageKind,
        to: Targets<'_>,
        data: &[u8],
        shared: &mut Option<Arc<[u8]>>,
    ) {
        let payload = self.payload(w, data, shared);
        self.push(w, Outbound::Send { kind, to, payload });
    }

    /// Splits `ids` by owning worker and sends each worker one record: to the listed
    /// ids, or (`except`) to all but them. Without `except`, workers with no ids get
    /// nothing; with it, every worker gets one.
    fn send_grouped(
        &mut self,
        ids: &[u64],
        except: bool,
        kind: MessageKind,
        data: &[u8],
        shared: &mut Option<Arc<[u8]>>,
    ) -> c_int {
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
        for w in 0..workers {
            let mut list = std::mem::take(&mut self.scratch[w]);
            list.sort_unstable();
            list.dedup();
            if except || !list.is_empty() {
                let payload = self.payload(w, data, shared);
                let ids = IdList::Ids(&list);
                let to = if except {
                    Targets::AllExcept(ids)
                } else {
                    Targets::List(ids)
                };
                let record = Outbound::Send { kind, to, payload };
                if record.wire_len() > self.outbound[w].max_record_len() {
                    self.scratch[w] = list;
                    return abi::RS_ERR_TOO_BIG;
                }
                self.push(w, record);
            }
            self.scratch[w] = list;
        }
        abi::RS_OK
    }

    fn close_client(&mut self, client: ClientId, code: CloseCode, reason: &str) -> c_int {
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
    /// ring is full.
    fn push(&mut self, w: usize, record: Outbound<'_>) {
        self.dirty[w] = true;
        let Err(mut record) = self.outbound[w].try_push(record) else {
            return;
        };
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
    fn wake_dirty_workers(&mut self) {
        for (w, dirty) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                wake_worker(&self.workers[w]);
            }
        }
    }
}

fn wake_worker(link: &WorkerLink) {
    if link.sleep.wake_needed() {
        if let Err(e) = link.waker.wake() {
            log::error!("cannot wake a worker: {e}");
        }
    }
}

/// Static facts about one of the app's endpoints, for the open callback.
pub(crate) struct EndpointInfo {
    pub(crate) endpoint_id: u16,
    pub(crate) path: String,
    pub(crate) subprotocols: Vec<String>,
}

/// An app thread's ends of the rings and wakeups: one ring pair per worker.
pub(crate) struct AppWiring {
    pub(crate) inbound: Vec<InboundRx>,
    pub(crate) outbound: Vec<OutboundTx>,
    pub(crate) workers: Vec<Arc<WorkerLink>>,
    pub(crate) sleep: Arc<SleepState>,
}

/// Everything an app thread owns.
pub(crate) struct AppThread {
    plugin: Arc<Plugin>,
    config: AppConfig,
    endpoints: Vec<EndpointInfo>,
    ctx: Box<HostCtx>,
    inbound: Vec<InboundRx>,
    state: *mut c_void,
    stop: Arc<AtomicBool>,
}

// SAFETY: the raw state pointer and the HostCtx are only used by the app thread the
// whole struct is moved into; the plugin's state is the plugin's to keep thread-safe
// for that one thread.
unsafe impl Send for AppThread {}

impl AppThread {
    pub(crate) fn new(
        plugin: Arc<Plugin>,
        config: AppConfig,
        endpoints: Vec<EndpointInfo>,
        wiring: AppWiring,
        max_msg: usize,
        stop: Arc<AtomicBool>,
    ) -> AppThread {
        let n = wiring.workers.len();
        let ctx = Box::new(HostCtx {
            header: abi::rs_header { api: &HOST_API },
            name: config.name.clone(),
            outbound: wiring.outbound,
            workers: wiring.workers,
            sleep: wiring.sleep,
            dirty: vec![false; n],
            scratch: vec![Vec::new(); n],
            current: ClientId(0),
            callback: Callback::None,
            timer: None,
            max_msg,
        });
        AppThread {
            plugin,
            config,
            endpoints,
            ctx,
            inbound: wiring.inbound,
            state: std::ptr::null_mut(),
            stop,
        }
    }

    fn rs(&mut self) -> *mut abi::rs_t {
        (&mut *self.ctx as *mut HostCtx).cast()
    }

    /// Runs the plugin's init callback with the app's settings.
    ///
    /// # Errors
    /// A message naming the app and plugin path if init fails.
    pub(crate) fn init(&mut self) -> Result<(), String> {
        let Some(init) = self.plugin.descriptor().init else {
            return Ok(());
        };
        let settings = self.config.settings.to_string();
        self.ctx.callback = Callback::Init;
        let rs = self.rs();
        // SAFETY: calling the plugin's init with a live handle, `settings.len()` bytes
        // of JSON, and a pointer to our state slot, as ABI v1 specifies.
        let status = unsafe {
            init(
                rs,
                settings.as_ptr().cast(),
                settings.len(),
                &mut self.state,
            )
        };
        self.ctx.callback = Callback::None;
        if status != 0 {
            return Err(format!(
                "app '{}' ({}): init callback failed with status {status}",
                self.config.name,
                self.plugin.path.display()
            ));
        }
        Ok(())
    }

    /// The app thread's loop: runs until the server stops.
    pub(crate) fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            let mut handled = 0;
            for w in 0..self.inbound.len() {
                for _ in 0..BATCH {
                    let Self {
                        inbound,
                        ctx,
                        plugin,
                        state,
                        endpoints,
                        config,
                        ..
                    } = &mut self;
                    let done = inbound[w]
                        .pop_with(|rec| dispatch(ctx, plugin, *state, endpoints, config, rec))
                        .is_none();
                    if done {
                        break;
                    }
                    handled += 1;
                }
                if self.inbound[w].take_producer_waiting() {
                    wake_worker(&self.ctx.workers[w]);
                }
            }
            self.ctx.wake_dirty_workers();
            if self.ctx.timer.is_some_and(|t| t <= Instant::now()) {
                self.ctx.timer = None;
                self.call_timer();
                self.ctx.wake_dirty_workers();
                continue;
            }
            if handled == 0 {
                self.ctx.sleep.announce();
                if self.stop.load(Ordering::Acquire)
                    || self.inbound.iter_mut().any(|c| !c.is_empty())
                {
                    self.ctx.sleep.withdraw();
                    continue;
                }
                let timeout = self
                    .ctx
                    .timer
                    .map(|t| t.saturating_duration_since(Instant::now()));
                self.ctx.sleep.park(timeout);
            }
        }
        if let Some(destroy) = self.plugin.descriptor().destroy {
            // SAFETY: the state init produced, after the last callback, exactly once.
            unsafe { destroy(self.state) };
        }
    }

    fn call_timer(&mut self) {
        let Some(timer) = self.plugin.descriptor().timer else {
            return;
        };
        self.ctx.callback = Callback::Timer;
        let rs = self.rs();
        // SAFETY: calling the plugin's timer callback with a live handle and its state.
        let status = unsafe { timer(rs, self.state) };
        self.ctx.callback = Callback::None;
        if status != 0 {
            log::warn!(
                "app {}: timer callback failed with status {status}",
                self.config.name
            );
        }
    }
}

/// Calls the callback an inbound record asks for.
fn dispatch(
    ctx: &mut HostCtx,
    plugin: &Plugin,
    state: *mut c_void,
    endpoints: &[EndpointInfo],
    config: &AppConfig,
    record: Inbound<'_>,
) {
    let d = plugin.descriptor();
    let rs: *mut abi::rs_t = (ctx as *mut HostCtx).cast();
    let (client, status) = match record {
        Inbound::Open {
            client,
            endpoint,
            protocol,
        } => {
            ctx.current = client;
            let status = match d.open.filter(|_| !config.no_open_cb) {
                Some(open) => {
                    let endpoint = &endpoints[usize::from(endpoint.0)];
                    let protocol = protocol.and_then(|i| endpoint.subprotocols.get(usize::from(i)));
                    let info = abi::rs_open_info {
                        endpoint_id: endpoint.endpoint_id,
                        url_path: endpoint.path.as_ptr().cast(),
                        url_path_len: endpoint.path.len(),
                        subprotocol: protocol.map_or(std::ptr::null(), |p| p.as_ptr().cast()),
                        subprotocol_len: protocol.map_or(0, |p| p.len()),
                    };
                    ctx.callback = Callback::Open;
                    // SAFETY: ABI v1 open: live handle, the plugin's state, a live info.
                    unsafe { open(rs, state, client.0, &info) }
                }
                None => 0,
            };
            (client, status)
        }
        Inbound::Message {
            client,
            kind,
            payload,
        } => {
            ctx.current = client;
            // A large message's buffer is ours now, freed when `payload` drops.
            let data = payload.bytes();
            let status = match d.read {
                Some(read) => {
                    ctx.callback = Callback::Read;
                    // SAFETY: ABI v1 read: `data` stays alive until we return.
                    unsafe { read(rs, state, client.0, kind as u32, data.as_ptr(), data.len()) }
                }
                None => 0,
            };
            (client, status)
        }
        Inbound::Close { client, code } => {
            ctx.current = client;
            if let Some(close) = d.close.filter(|_| !config.no_close_cb) {
                ctx.callback = Callback::Close;
                // SAFETY: ABI v1 close: live handle and state.
                unsafe { close(rs, state, client.0, code.0) };
            }
            ctx.callback = Callback::None;
            // Everything the app sends this client is in the ring now.
            ctx.push(client.worker(), Outbound::Closed { client });
            ctx.current = ClientId(0);
            return;
        }
    };
    ctx.callback = Callback::None;
    if status != 0 {
        log::warn!(
            "app {}: callback for client {} failed with status {status}; closing it with 1011",
            config.name,
            client.0
        );
        ctx.close_client(client, CloseCode::INTERNAL_ERROR, "app error");
    }
    ctx.current = ClientId(0);
}
