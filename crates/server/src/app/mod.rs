//! App threads: one per app, parked on a futex, draining its inbound rings and its
//! event queue and calling the plugin's callbacks; and (in the submodules) the host API
//! those callbacks use.

mod api;
mod clients;
mod events;
mod ffi;
mod host;
mod periodic;
mod topics;
mod writer;

use crate::config::AppConfig;
use crate::control::AppCommand;
use crate::plugin::Plugin;
use crate::records::{ClientId, Inbound, InboundRx, Opened, Outbound, OutboundTx, Requested};
use crate::stats::{clock_ns, AppStats, Owned};
use crate::WorkerLink;
use clients::abi_addr;
use crossbeam_queue::SegQueue;
use host::{wake_worker, Callback, HostCtx, Waiting};
use periodic::Periodic;
use ringsocket_abi as abi;
use ringsocket_control::Recipients;
use ringsocket_proto::MessageKind;
use ringsocket_proto::{CloseCode, RequestHead};
use ringsocket_ring::SleepState;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Records handled from one ring (or events from the queue) before the others get a
/// turn.
const BATCH: usize = 256;

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
    /// The app thread's counts.
    pub(crate) stats: Owned<AppStats>,
    /// Requests from the control thread.
    pub(crate) commands: Arc<SegQueue<AppCommand>>,
}

/// Server-wide facts every app may read (`rs_get_conf`), and whether latencies are
/// sampled.
pub(crate) struct ServerFacts {
    pub(crate) max_msg: usize,
    pub(crate) app_count: usize,
    pub(crate) sampling: bool,
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
    commands: Arc<SegQueue<AppCommand>>,
}

// SAFETY: the raw state pointer and the HostCtx (with its raw pointers into the app's
// own rings and buffers) are only used by the app thread the whole struct is moved
// into; the plugin's state is the plugin's to keep thread-safe for that one thread.
unsafe impl Send for AppThread {}

impl AppThread {
    pub(crate) fn new(
        plugin: Arc<Plugin>,
        config: AppConfig,
        endpoints: Vec<EndpointInfo>,
        wiring: AppWiring,
        facts: &ServerFacts,
        stop: Arc<AtomicBool>,
    ) -> AppThread {
        let AppWiring {
            inbound,
            outbound,
            workers,
            sleep,
            stats,
            commands,
        } = wiring;
        let ctx = Box::new(HostCtx::new(
            &api::HOST_API,
            &config,
            facts,
            (outbound, workers),
            sleep,
            stats,
        ));
        AppThread {
            plugin,
            config,
            endpoints,
            ctx,
            inbound,
            state: std::ptr::null_mut(),
            stop,
            commands,
        }
    }

    fn rs(&mut self) -> *mut abi::rs_t {
        (&mut *self.ctx as *mut HostCtx).cast()
    }

    /// Runs the plugin's init callback with the app's settings, then starts the
    /// periodic timer it declares.
    ///
    /// # Errors
    /// A message naming the app and plugin path if init fails.
    pub(crate) fn init(&mut self) -> Result<(), String> {
        let callbacks = *self.plugin.callbacks();
        if let (Some(spec), Some(_)) = (callbacks.periodic_spec, callbacks.periodic) {
            self.ctx.periodic = Some(Periodic::start(spec, Instant::now()));
        }
        let Some(init) = callbacks.init else {
            return Ok(());
        };
        let settings = self.config.settings.to_string();
        self.ctx.callback = Callback::Init;
        let rs = self.rs();
        // SAFETY: calling the plugin's init with a live handle, `settings.len()` bytes
        // of JSON, and a pointer to our state slot, as the ABI specifies.
        let status = unsafe {
            init(
                rs,
                settings.as_ptr().cast(),
                settings.len(),
                &mut self.state,
            )
        };
        self.ctx.callback = Callback::None;
        self.ctx.header.app_state = self.state;
        self.ctx.wake_dirty_workers();
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
            let mut handled = self.drain_rings();
            handled += self.drain_events(BATCH);
            while let Some(command) = self.commands.pop() {
                self.command(command);
                handled += 1;
            }
            if handled > 0 {
                if let Some(p) = &mut self.ctx.periodic {
                    p.reset();
                }
            }
            self.ctx.wake_dirty_workers();
            if self.run_due_timers() {
                continue;
            }
            if handled == 0 {
                self.ctx.sleep.announce();
                if self.stop.load(Ordering::Acquire)
                    || !self.ctx.events.is_empty()
                    || !self.commands.is_empty()
                    || self.inbound.iter_mut().any(|c| !c.is_empty())
                {
                    self.ctx.sleep.withdraw();
                    continue;
                }
                let now = Instant::now();
                let due = [self.ctx.timer, self.ctx.periodic.map(|p| p.due())]
                    .into_iter()
                    .flatten()
                    .min();
                self.ctx
                    .sleep
                    .park(due.map(|t| t.saturating_duration_since(now)));
            }
        }
        // Nothing accepted is lost: the last events are delivered before destroy.
        self.ctx.events.close();
        while self.drain_events(usize::MAX) > 0 {}
        self.ctx.wake_dirty_workers();
        if let Some(destroy) = self.plugin.callbacks().destroy {
            // SAFETY: the state init produced, after the last callback, exactly once.
            unsafe { destroy(self.state) };
        }
    }

    /// Carries out a request from the control thread (off the message path).
    #[cold]
    fn command(&mut self, command: AppCommand) {
        match command {
            AppCommand::Send {
                to,
                kind,
                payload,
                reply,
            } => {
                let kind = match kind {
                    MessageKind::Text => abi::RS_UTF8,
                    MessageKind::Binary => abi::RS_BIN,
                };
                self.ctx.set_current(ClientId(0), 0, 0);
                let (target, ids, reached) = match to {
                    Recipients::Ids { mut ids } => {
                        ids.sort_unstable();
                        ids.dedup();
                        ids.retain(|&id| self.ctx.clients.contains(ClientId(id)));
                        let n = ids.len();
                        (abi::RS_TO_MULTI, ids, n)
                    }
                    Recipients::All { mut except } => {
                        except.sort_unstable();
                        except.dedup();
                        let known = except
                            .iter()
                            .filter(|&&id| self.ctx.clients.contains(ClientId(id)))
                            .count();
                        let n = self.ctx.clients.len() - known;
                        (abi::RS_TO_EVERY_EXCEPT, except, n)
                    }
                };
                let status = if reached == 0 {
                    abi::RS_OK
                } else {
                    self.ctx.send(target, &ids, kind, &payload, false)
                };
                self.ctx.wake_dirty_workers();
                let _ = reply.send(match status {
                    abi::RS_OK => Ok(reached as u64),
                    abi::RS_ERR_TOO_BIG => Err("the message is larger than max_ws_msg_size".into()),
                    code => Err(format!("the send failed with status {code}")),
                });
            }
            AppCommand::Command { args, reply } => {
                let _ = reply.send(self.control(&args));
            }
        }
    }

    /// Runs the control callback with `args`: its status and reply.
    fn control(&mut self, args: &[String]) -> Result<(i32, Vec<u8>), String> {
        let Some(control) = self.plugin.callbacks().control else {
            return Err(format!(
                "app {} takes no commands (it has no control callback)",
                self.config.name
            ));
        };
        let args: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| "an argument contains a NUL byte".to_string())?;
        let argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        self.ctx.set_current(ClientId(0), 0, 0);
        self.ctx.callback = Callback::Control;
        self.ctx.control_reply.clear();
        let rs = self.rs();
        // SAFETY: the control callback with a live handle, the app's state, and `argc`
        // NUL-terminated strings that live until it returns.
        let status = unsafe { control(rs, self.state, argv.len() as c_int, argv.as_ptr()) };
        self.ctx.callback = Callback::None;
        self.ctx.wake_dirty_workers();
        Ok((status, std::mem::take(&mut self.ctx.control_reply)))
    }

    /// Handles up to a batch of records from each inbound ring; returns how many.
    fn drain_rings(&mut self) -> usize {
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
                } = self;
                let app = Callee {
                    plugin,
                    state: *state,
                    endpoints,
                    config,
                };
                let done = inbound[w].pop_with(|rec| dispatch(ctx, app, rec)).is_none();
                if done {
                    break;
                }
                handled += 1;
            }
            if self.inbound[w].take_producer_waiting() {
                wake_worker(&self.ctx.workers[w]);
            }
        }
        handled
    }

    /// Delivers up to `limit` queued events to the event callback; returns how many.
    fn drain_events(&mut self, limit: usize) -> usize {
        let mut handled = 0;
        while handled < limit {
            let Some(event) = self.ctx.events.pop() else {
                break;
            };
            handled += 1;
            let Some(callback) = self.plugin.callbacks().event else {
                continue;
            };
            self.ctx.set_current(ClientId(0), 0, 0);
            self.ctx.callback = Callback::Event;
            let rs = self.rs();
            let data = event.bytes();
            // SAFETY: the event callback with a live handle, the app's state and the
            // event's bytes, which live until it returns.
            let status = unsafe { callback(rs, self.state, data.as_ptr(), data.len()) };
            self.ctx.callback = Callback::None;
            if status != 0 {
                log::warn!(
                    "app {}: event callback failed with status {status}",
                    self.config.name
                );
            }
        }
        handled
    }

    /// Runs the one-shot and periodic timers if due; returns whether one ran.
    fn run_due_timers(&mut self) -> bool {
        if self.ctx.timer.is_none() && self.ctx.periodic.is_none() {
            return false; // no clock read on the hot path of an app without timers
        }
        let now = Instant::now();
        let mut ran = false;
        if self.ctx.timer.is_some_and(|t| t <= now) {
            self.ctx.timer = None;
            if let Some(timer) = self.plugin.callbacks().timer {
                let status = self.call_timer(|rs, state| {
                    // SAFETY: the timer callback with a live handle and its state.
                    unsafe { timer(rs, state) }
                });
                if status != 0 {
                    log::warn!(
                        "app {}: timer callback failed with status {status}",
                        self.config.name
                    );
                }
            }
            ran = true;
        }
        if let Some(p) = self.ctx.periodic.filter(|p| p.due() <= now) {
            // Cleared while the callback runs, so that rs_set_periodic inside it wins.
            self.ctx.periodic = None;
            let periodic = self.plugin.callbacks().periodic;
            let decision = periodic.map_or(abi::RS_TIMER_NEVER, |cb| {
                self.call_timer(|rs, state| {
                    // SAFETY: the periodic callback with a live handle and its state.
                    unsafe { cb(rs, state) }
                })
            });
            if !(abi::RS_TIMER_MIN..=abi::RS_TIMER_NEVER).contains(&decision) {
                log::warn!(
                    "app {}: periodic timer callback failed with status {decision}",
                    self.config.name
                );
            }
            if self.ctx.periodic.is_none() {
                self.ctx.periodic = p.after_call(Instant::now(), decision);
            }
            ran = true;
        }
        if ran {
            self.ctx.wake_dirty_workers();
        }
        ran
    }

    fn call_timer(&mut self, call: impl FnOnce(*mut abi::rs_t, *mut c_void) -> c_int) -> c_int {
        self.ctx.set_current(ClientId(0), 0, 0);
        self.ctx.callback = Callback::Timer;
        let rs = self.rs();
        let status = call(rs, self.state);
        self.ctx.callback = Callback::None;
        status
    }
}

/// The app a record's callback goes to: its plugin, the state its init made, and
/// what it was configured with.
#[derive(Clone, Copy)]
struct Callee<'a> {
    plugin: &'a Plugin,
    state: *mut c_void,
    endpoints: &'a [EndpointInfo],
    config: &'a AppConfig,
}

/// Calls the callback an inbound record asks for. Inlined into the loop that drains
/// the ring, so that a message record is read in place rather than built and matched;
/// the other records are `dispatch_other`'s.
#[inline(always)]
fn dispatch(ctx: &mut HostCtx, app: Callee<'_>, record: Inbound<'_>) {
    let Inbound::Message {
        client,
        endpoint,
        kind,
        payload,
    } = record
    else {
        return dispatch_other(ctx, app, record);
    };
    let rs: *mut abi::rs_t = (ctx as *mut HostCtx).cast();
    let endpoint_id = app.endpoints[usize::from(endpoint.0)].endpoint_id;
    ctx.set_current(client, endpoint_id, kind as u32);
    // A large message's buffer is ours now, freed when `payload` drops.
    let data = payload.bytes();
    let status = match app.plugin.callbacks().read {
        Some(read) => {
            ctx.callback = Callback::Read;
            // SAFETY: read with a live handle; `data` stays alive until it returns.
            unsafe {
                read(
                    rs,
                    app.state,
                    client.0,
                    kind as u32,
                    data.as_ptr(),
                    data.len(),
                )
            }
        }
        None => 0,
    };
    callback_done(ctx, app.config, client, status);
}

/// Ends a callback about `client`: one that failed closes it with 1011.
#[inline(always)]
fn callback_done(ctx: &mut HostCtx, config: &AppConfig, client: ClientId, status: c_int) {
    ctx.callback = Callback::None;
    if status != 0 {
        callback_failed(ctx, config, client, status);
    }
    ctx.set_current(ClientId(0), 0, 0);
}

#[cold]
#[inline(never)]
fn callback_failed(ctx: &mut HostCtx, config: &AppConfig, client: ClientId, status: c_int) {
    log::warn!(
        "app {}: callback for client {} failed with status {status}; closing it with 1011",
        config.name,
        client.0
    );
    ctx.close_client(client, CloseCode::INTERNAL_ERROR, "app error");
}

/// [`dispatch`] of the records other than messages (off the message path).
#[cold]
#[inline(never)]
fn dispatch_other(ctx: &mut HostCtx, app: Callee<'_>, record: Inbound<'_>) {
    let Callee {
        plugin,
        state,
        endpoints,
        config,
    } = app;
    let callbacks = plugin.callbacks();
    let rs: *mut abi::rs_t = (ctx as *mut HostCtx).cast();
    let (client, status) = match record {
        Inbound::Open(opened) => {
            let Opened {
                client,
                endpoint,
                protocol,
                peer,
                head,
            } = *opened;
            let endpoint = &endpoints[usize::from(endpoint.0)];
            ctx.clients.insert(client, peer, endpoint.endpoint_id);
            let peer = abi_addr(peer);
            ctx.set_current(client, endpoint.endpoint_id, 0);
            let status = match callbacks.open.filter(|_| !config.no_open_cb) {
                Some(open) => {
                    let head = head.bytes();
                    let request = RequestHead(head);
                    let (target, query) = (request.target(), request.query());
                    let protocol = protocol.and_then(|i| endpoint.subprotocols.get(usize::from(i)));
                    let info = abi::rs_open_info {
                        endpoint_id: endpoint.endpoint_id,
                        url_path: endpoint.path.as_ptr().cast(),
                        url_path_len: endpoint.path.len(),
                        subprotocol: protocol.map_or(std::ptr::null(), |p| p.as_ptr().cast()),
                        subprotocol_len: protocol.map_or(0, |p| p.len()),
                        target: target.as_ptr().cast(),
                        target_len: target.len(),
                        query: query.map_or(std::ptr::null(), |q| q.as_ptr().cast()),
                        query_len: query.map_or(0, str::len),
                        head: head.as_ptr().cast(),
                        head_len: head.len(),
                        peer,
                        data: ctx.attached.get(&client).copied().unwrap_or(0),
                    };
                    ctx.open_head = Some((head.as_ptr(), head.len()));
                    ctx.callback = Callback::Open;
                    // SAFETY: open with a live handle, the plugin's state and an info
                    // whose strings live until it returns (a v1 plugin reads its prefix).
                    let status = unsafe { open(rs, state, client.0, &info) };
                    ctx.open_head = None;
                    status
                }
                None => 0,
            };
            (client, status)
        }
        Inbound::Message { .. } => unreachable!("messages are dispatched by dispatch"),
        Inbound::Request(requested) => {
            let client = requested.client;
            request(ctx, app, &requested);
            ctx.set_current(ClientId(0), 0, 0);
            if ctx.requests.contains_key(&client) && ctx.callback_failed {
                // The callback failed and left the request unanswered.
                ctx.respond(client, 500, b"Content-Type: text/plain\r\n", b"app error\n");
            }
            ctx.callback_failed = false;
            return;
        }
        Inbound::Stamp { at } => {
            // The message before it reached its callback just now; what that callback
            // sent is sampled with the same clock read.
            let now = clock_ns(Instant::now());
            ctx.stats.read_to_callback.record(now.saturating_sub(at));
            ctx.sample_clock = Some(now);
            return;
        }
        Inbound::Ping { client } => {
            let endpoint_id = ctx.clients.endpoint_of(client);
            ctx.set_current(client, endpoint_id, 0);
            if let (Some(ping), true) = (callbacks.ping, ctx.clients.contains(client)) {
                ctx.callback = Callback::Ping;
                // SAFETY: the ping callback with a live handle and state.
                let status = unsafe { ping(rs, state, client.0) };
                if status != 0 {
                    log::warn!(
                        "app {}: ping callback failed with status {status}",
                        config.name
                    );
                }
            }
            ctx.callback = Callback::None;
            ctx.set_current(ClientId(0), 0, 0);
            return;
        }
        Inbound::Close { client, .. } if !ctx.clients.contains(client) => {
            // A request that will not be answered (its client left or it timed out).
            ctx.requests.remove(&client);
            return;
        }
        Inbound::Close { client, code } => {
            let endpoint_id = ctx.clients.endpoint_of(client);
            ctx.set_current(client, endpoint_id, 0);
            if let Some(close) = callbacks.close.filter(|_| !config.no_close_cb) {
                ctx.callback = Callback::Close;
                // SAFETY: close with a live handle and state.
                unsafe { close(rs, state, client.0, code.0) };
            }
            ctx.callback = Callback::None;
            ctx.clients.remove(client);
            ctx.attached.remove(&client);
            ctx.topics.client_left(client, client.worker());
            // Everything the app sends this client is in the ring now.
            ctx.push(client.worker(), Outbound::Closed { client });
            ctx.set_current(ClientId(0), 0, 0);
            return;
        }
    };
    callback_done(ctx, config, client, status);
}

/// Calls the upgrade or http callback for a request; a request no callback takes is
/// answered by the server (an upgrade accepted, a plain request 404).
fn request(ctx: &mut HostCtx, app: Callee<'_>, requested: &Requested<'_>) {
    let Callee {
        plugin,
        state,
        endpoints,
        ..
    } = app;
    let callbacks = plugin.callbacks();
    let client = requested.client;
    let endpoint_id = endpoints[usize::from(requested.endpoint.0)].endpoint_id;
    let waiting = Waiting {
        peer: requested.peer,
        endpoint_id,
        upgrade: requested.upgrade.is_some(),
    };
    ctx.requests.insert(client, waiting);
    let callback = match requested.upgrade {
        Some(_) => callbacks.upgrade,
        None => callbacks.http,
    };
    let Some(callback) = callback else {
        match requested.upgrade {
            Some(_) => ctx.accept(client, 0),
            None => ctx.respond(client, 404, b"", b""),
        };
        return;
    };
    let endpoint = &endpoints[usize::from(requested.endpoint.0)];
    let (head, body) = (requested.head(), requested.body());
    let line = RequestHead(head);
    let (target, query) = (line.target(), line.query());
    let method = std::str::from_utf8(head.split(|&b| b == b' ').next().unwrap_or_default())
        .unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let protocol = requested
        .upgrade
        .flatten()
        .and_then(|i| endpoint.subprotocols.get(usize::from(i)));
    let str_ptr = |s: &str| s.as_ptr().cast::<std::ffi::c_char>();
    let info = abi::rs_request {
        size: std::mem::size_of::<abi::rs_request>() as u32,
        endpoint_id: endpoint.endpoint_id,
        is_upgrade: u16::from(requested.upgrade.is_some()),
        request_id: client.0,
        method: str_ptr(method),
        method_len: method.len(),
        target: str_ptr(target),
        target_len: target.len(),
        path: str_ptr(path),
        path_len: path.len(),
        query: query.map_or(std::ptr::null(), str_ptr),
        query_len: query.map_or(0, str::len),
        head: head.as_ptr().cast(),
        head_len: head.len(),
        body: body.as_ptr(),
        body_len: body.len(),
        subprotocol: protocol.map_or(std::ptr::null(), |p| str_ptr(p)),
        subprotocol_len: protocol.map_or(0, |p| p.len()),
        peer: abi_addr(requested.peer),
    };
    ctx.set_current(ClientId(0), endpoint.endpoint_id, 0);
    ctx.open_head = Some((head.as_ptr(), head.len()));
    ctx.callback = Callback::Request;
    let rs: *mut abi::rs_t = (ctx as *mut HostCtx).cast();
    // SAFETY: the callback with a live handle, the plugin's state and a request whose
    // pointers live until it returns.
    let status = unsafe { callback(rs, state, &info) };
    ctx.callback = Callback::None;
    ctx.open_head = None;
    if status != 0 {
        log::warn!(
            "app {}: {} callback failed with status {status}",
            ctx.name,
            if requested.upgrade.is_some() {
                "upgrade"
            } else {
                "http"
            }
        );
        ctx.callback_failed = true;
    }
}
