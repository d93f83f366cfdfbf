//! The ringsocket runtime: everything between the configuration file and the sockets.
//!
//! ```text
//!            ┌───────────── worker 0 (mio poll) ─────────────┐
//!  clients ──┤ accept · HTTP upgrade · frames · write buffers├──┐
//!            └──────▲────────────────────────────────────────┘  │ inbound ring (SPSC)
//!                   │ outbound ring (SPSC) + eventfd wake        ▼   + futex wake
//!            ┌──────┴──────── app thread (one per app) ───────────────┐
//!            │ pops records, calls the plugin's callbacks, pushes sends│
//!            └────────────────────────────────────────────────────────┘
//! ```
//!
//! [`Server::prepare`] binds every listener and loads every plugin (the privileged
//! part); [`Prepared::start`] runs each app's init on its own thread and then starts the
//! workers; [`Running::stop`] closes every client with 1001 and joins the threads.
//! The protocol itself lives in `ringsocket-proto`, the rings in `ringsocket-ring`.

pub mod config;
pub mod control;
pub mod plugin;

mod app;
mod listener;
mod metrics;
mod small_map;
mod stats;
mod tls;
mod worker;

use config::{Config, Plan};
use plugin::{Plugin, PluginError};
use records::{inbound_ring, outbound_ring};
use ringsocket_records as records;
use ringsocket_ring::SleepState;
use stats::{AppLabel, RingGauge, ServerStats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr} (ports[{port_index}]): {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Index in `ports`.
        port_index: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A plugin was refused.
    #[error("apps[{app_index}] ({name}): {source}")]
    Plugin {
        /// Index in `apps`.
        app_index: usize,
        /// The app's name.
        name: String,
        /// What is wrong with the plugin.
        source: PluginError,
    },
    /// An app's init callback failed.
    #[error("{0}")]
    AppInit(String),
    /// A TLS certificate or key cannot be used.
    #[error("{key}: {file}: {reason}")]
    Tls {
        /// The configuration key naming the file.
        key: String,
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The metrics listener could not be set up.
    #[error("metrics.addr: cannot listen on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS refused a thread, poll instance or eventfd.
    #[error("cannot start {what}: {source}")]
    Os {
        /// What was being created.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How a worker wakes up: its sleep flag and the eventfd registered with its poll.
pub(crate) struct WorkerLink {
    pub(crate) sleep: SleepState,
    pub(crate) waker: mio::Waker,
}

/// Stack size of app threads.
const APP_STACK_SIZE: usize = 8 << 20;

/// Entry point of the runtime.
#[derive(Debug)]
pub struct Server;

/// A server whose sockets are bound and plugins loaded, not yet running.
pub struct Prepared {
    config: Config,
    tls: Option<Arc<rustls::ServerConfig>>,
    listeners: Vec<Vec<listener::Listener>>,
    port_locks: Vec<listener::PortLock>,
    plugins: Vec<Arc<Plugin>>,
    metrics: Option<std::net::TcpListener>,
}

/// A running server.
pub struct Running {
    _port_locks: Vec<listener::PortLock>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    apps: Vec<JoinHandle<()>>,
    worker_links: Vec<Arc<WorkerLink>>,
    app_sleeps: Vec<Arc<SleepState>>,
    stats: Arc<ServerStats>,
    metrics: Option<(std::net::SocketAddr, JoinHandle<()>)>,
    control: control::Control,
}

impl Server {
    /// Binds every listener (one per worker per address, with `SO_REUSEPORT`) and loads
    /// every plugin. Nothing runs yet.
    ///
    /// # Errors
    /// [`StartError::Listen`] or [`StartError::Plugin`].
    pub fn prepare(mut config: Config) -> Result<Prepared, StartError> {
        let tls = tls::server_config(&config)?;
        let (listeners, port_locks) = listener::bind_all(&config, config.plan().workers)?;
        let mut plugins = Vec::new();
        for (i, app) in config.apps.iter().enumerate() {
            let plugin = Plugin::load(&app.app_path).map_err(|source| StartError::Plugin {
                app_index: i,
                name: app.name.clone(),
                source,
            })?;
            log::info!("app {}: loaded {}", app.name, app.app_path.display());
            plugins.push(Arc::new(plugin));
        }
        for (i, plugin) in plugins.iter().enumerate() {
            let callbacks = plugin.callbacks();
            let (upgrade, http) = (callbacks.upgrade.is_some(), callbacks.http.is_some());
            config.set_app_answers(i, upgrade, http);
        }
        let metrics =
            match &config.metrics {
                Some(m) => Some(std::net::TcpListener::bind(m.addr).map_err(|source| {
                    StartError::Metrics {
                        addr: m.addr.to_string(),
                        source,
                    }
                })?),
                None => None,
            };
        Ok(Prepared {
            config,
            listeners,
            port_locks,
            plugins,
            tls,
            metrics,
        })
    }
}

impl Prepared {
    /// The local address of each listener of the first worker (useful with port 0).
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.first().map_or_else(Vec::new, |l| {
            l.iter()
                .filter_map(|l| l.socket.local_addr().ok())
                .collect()
        })
    }

    /// The metrics listener's address, if it is on (useful with port 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Creates the rings, runs every app's init on its own thread, then starts the
    /// workers.
    ///
    /// # Errors
    /// [`StartError::AppInit`] if an init callback fails, [`StartError::Os`] if a thread
    /// or poll cannot be created.
    pub fn start(self) -> Result<Running, StartError> {
        let Prepared {
            config,
            listeners,
            port_locks,
            plugins,
            tls,
            metrics,
        } = self;
        let plan = Arc::new(config.plan().clone());
        let workers = listeners.len();
        let labels = config
            .apps
            .iter()
            .map(|a| AppLabel {
                name: a.name.clone(),
                endpoints: a.endpoints.iter().map(|e| e.url.clone()).collect(),
            })
            .collect();
        let mut stats = ServerStats::new(
            workers,
            labels,
            metrics.is_some(),
            config.path.display().to_string(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let os = |what| move |source| StartError::Os { what, source };

        let mut polls = Vec::new();
        let mut links = Vec::new();
        for _ in 0..workers {
            let poll = mio::Poll::new().map_err(os("a poll instance"))?;
            let waker = mio::Waker::new(poll.registry(), mio::Token(usize::MAX))
                .map_err(os("an eventfd waker"))?;
            links.push(Arc::new(WorkerLink {
                sleep: SleepState::new(),
                waker,
            }));
            polls.push(poll);
        }

        // Worker w's ends of every app's rings: inboxes[w][a], outboxes[w][a].
        let mut inboxes: Vec<Vec<worker::AppInbox>> = (0..workers).map(|_| Vec::new()).collect();
        let mut outboxes: Vec<Vec<records::OutboundRx>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut app_threads = Vec::new();
        let mut app_sleeps = Vec::new();
        let mut app_commands = Vec::new();
        for (a, app) in config.apps.iter().enumerate() {
            let sleep = Arc::new(SleepState::new());
            let commands = Arc::new(crossbeam_queue::SegQueue::new());
            app_commands.push(control::AppCommands {
                queue: commands.clone(),
                sleep: sleep.clone(),
            });
            let (mut inbound, mut outbound) = (Vec::new(), Vec::new());
            for w in 0..workers {
                let (in_tx, in_rx) = inbound_ring(plan.inbound_ring, plan.large_in_flight);
                let (out_tx, out_rx) = outbound_ring(plan.outbound_ring, plan.large_in_flight);
                for (direction, observer) in [
                    ("inbound", in_tx.observer()),
                    ("outbound", out_tx.observer()),
                ] {
                    stats.rings.push(RingGauge {
                        worker: w,
                        app: a,
                        direction,
                        observer,
                    });
                }
                inbound.push(in_rx);
                outbound.push(out_tx);
                let traffic = stats.traffic[w][a].clone();
                let mut inbox = worker::AppInbox::new(in_tx, sleep.clone(), traffic);
                inbox.reports_pings = plugins[a].callbacks().ping.is_some();
                inboxes[w].push(inbox);
                outboxes[w].push(out_rx);
            }
            let wiring = app::AppWiring {
                inbound,
                outbound,
                workers: links.clone(),
                sleep: sleep.clone(),
                stats: stats.app_threads[a].clone(),
                commands,
            };
            app_threads.push(app::AppThread::new(
                plugins[a].clone(),
                app.clone(),
                endpoints_of(&plan, a, app),
                wiring,
                &app::ServerFacts {
                    max_msg: plan.max_app_message,
                    app_count: config.apps.len(),
                    sampling: stats.sampling,
                },
                stop.clone(),
            ));
            app_sleeps.push(sleep);
        }

        // Serving /health (and /ready: 503) while the apps' init callbacks run.
        let stats = Arc::new(stats);
        let metrics = match metrics {
            Some(listener) => Some(start_metrics(listener, &stats, &stop)?),
            None => None,
        };
        let app_handles = match start_apps(&config, app_threads, &stop, &app_sleeps) {
            Ok(handles) => handles,
            Err(e) => {
                if let Some((_, handle)) = metrics {
                    let _ = handle.join(); // start_apps set `stop`
                }
                return Err(e);
            }
        };
        let ip_counts = (plan.max_conns_per_ip > 0)
            .then(|| Arc::new(listener::IpCounts::new(plan.max_conns_per_ip)));
        let mut worker_handles = Vec::new();
        let mut worker_commands = Vec::new();
        let per_worker = polls.into_iter().zip(listeners).zip(inboxes).zip(outboxes);
        for (index, (((poll, worker_listeners), inboxes), outboxes)) in per_worker.enumerate() {
            let setup = worker::WorkerSetup {
                index,
                poll,
                link: links[index].clone(),
                listeners: worker_listeners,
                inboxes,
                outboxes,
                tls: tls.clone(),
                plan: plan.clone(),
                ip_counts: ip_counts.clone(),
                stop: stop.clone(),
                counts: stats.workers[index].clone(),
                sampling: stats.sampling,
                commands: {
                    let (queue, commands) = control::worker_queue();
                    worker_commands.push(control::WorkerCommands {
                        queue,
                        link: links[index].clone(),
                    });
                    commands
                },
            };
            let handle = std::thread::Builder::new()
                .name(format!("rs-worker-{index}"))
                .spawn(move || abort_on_panic("worker", move || worker::run(setup)))
                .map_err(os("a worker thread"))?;
            worker_handles.push(handle);
        }
        stats.ready.store(true, Ordering::Relaxed);
        log::info!(
            "serving with {workers} workers and {} apps",
            config.apps.len()
        );
        let control = control::Control {
            stats: stats.clone(),
            workers: worker_commands.into(),
            apps: app_commands.into(),
        };
        Ok(Running {
            _port_locks: port_locks,
            stop,
            workers: worker_handles,
            apps: app_handles,
            worker_links: links,
            app_sleeps,
            stats,
            metrics,
            control,
        })
    }
}

/// Starts the metrics listener's thread on `listener`.
fn start_metrics(
    listener: std::net::TcpListener,
    stats: &Arc<ServerStats>,
    stop: &Arc<AtomicBool>,
) -> Result<(std::net::SocketAddr, JoinHandle<()>), StartError> {
    let os = |source| StartError::Os {
        what: "the metrics listener",
        source,
    };
    let addr = listener.local_addr().map_err(os)?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| os(std::io::Error::other(e.to_string())))?;
    let (stats, stop) = (stats.clone(), stop.clone());
    let handle = std::thread::Builder::new()
        .name("rs-metrics".into())
        .spawn(move || metrics::serve(server, stats, stop))
        .map_err(os)?;
    log::info!("metrics on http://{addr}/metrics");
    Ok((addr, handle))
}

/// What app `a`'s open callback reports of each of its endpoints, from the plan's
/// routes (indexed by endpoint).
fn endpoints_of(plan: &Plan, a: usize, app: &config::AppConfig) -> Vec<app::EndpointInfo> {
    let mut endpoints: Vec<app::EndpointInfo> = app
        .endpoints
        .iter()
        .map(|e| app::EndpointInfo {
            endpoint_id: e.endpoint_id,
            path: String::new(),
            subprotocols: e.subprotocols.clone(),
        })
        .collect();
    for route in plan.session.routes.iter().filter(|r| r.app.index() == a) {
        endpoints[usize::from(route.endpoint.0)].path = route.path.clone();
    }
    endpoints
}

/// Runs every app's init on its own thread, then lets the threads run. If an init
/// fails, the others are stopped and the failure returned.
fn start_apps(
    config: &Config,
    app_threads: Vec<app::AppThread>,
    stop: &Arc<AtomicBool>,
    app_sleeps: &[Arc<SleepState>],
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut app_handles = Vec::new();
    let mut init_results = Vec::new();
    for (a, mut thread) in app_threads.into_iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("rs-app-{}", config.apps[a].name))
            // A C thread's usual 8 MiB: plugins (RingSocket 1's read macros among them)
            // may keep large arrays on the stack. Only touched pages cost memory.
            .stack_size(APP_STACK_SIZE)
            .spawn(move || {
                abort_on_panic("app thread", move || {
                    let result = thread.init();
                    let ok = result.is_ok();
                    let _ = tx.send(result);
                    if ok {
                        thread.run();
                    }
                })
            })
            .map_err(|source| StartError::Os {
                what: "an app thread",
                source,
            })?;
        app_handles.push(handle);
        init_results.push(rx);
    }
    for rx in init_results {
        let result = rx
            .recv()
            .unwrap_or_else(|_| Err("an app thread died during init".into()));
        if let Err(e) = result {
            stop.store(true, Ordering::Release);
            for s in app_sleeps {
                s.unpark();
            }
            return Err(StartError::AppInit(e));
        }
    }
    Ok(app_handles)
}

/// Runs a server thread's body; a panic there is a bug in ringsocket, and a process
/// with a dead worker or app thread would silently stop serving some clients, so it is
/// logged and the process aborts (a supervisor such as systemd restarts it).
fn abort_on_panic(what: &str, body: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        log::error!("a {what} panicked; aborting");
        std::process::abort();
    }
}

impl Running {
    /// A handle for operating the server from other threads (`ringsocketctl`'s
    /// commands).
    pub fn control(&self) -> control::Control {
        self.control.clone()
    }

    /// The metrics listener's address, if it is on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// Stops the server: workers close every client with 1001 (waiting for the close
    /// handshakes up to `shutdown_timeout` seconds), then the app threads run
    /// their last callbacks and `destroy`, and every thread is joined.
    pub fn stop(self) {
        self.stats.ready.store(false, Ordering::Relaxed);
        self.stop.store(true, Ordering::Release);
        for link in &self.worker_links {
            let _ = link.waker.wake();
        }
        for handle in self.workers {
            let _ = handle.join();
        }
        for s in &self.app_sleeps {
            s.unpark();
        }
        for handle in self.apps {
            let _ = handle.join();
        }
        if let Some((_, handle)) = self.metrics {
            let _ = handle.join();
        }
    }
}
