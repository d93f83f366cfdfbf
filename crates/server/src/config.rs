//! `ringsocket.json`: the configuration file, its defaults and its validation.
//!
//! The shape is the original RingSocket's, so an existing RingSocket config loads
//! unchanged; its tuning keys that no longer apply are accepted and reported by
//! [`Config::ignored_keys`]. Every error names the file and the key path
//! (e.g. `apps[1].endpoints[0].url`).

use ringsocket_session::{AppIndex, EndpointIndex, Limits, Route, Routes, SessionConfig};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration path.
pub const DEFAULT_PATH: &str = "/etc/ringsocket.json";
/// Where a daemon logs when no syslog socket accepts its lines (`log_file`).
pub const DEFAULT_LOG_FILE: &str = "/var/log/ringsocket.log";

/// A configuration error: which file, which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{message}", file.display(), key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// The key path, e.g. `apps[1].endpoints[0].url`, when one key is at fault.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// `metrics`: where the metrics listener listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port, e.g. `127.0.0.1:9108` (port 0: any free port).
    pub addr: std::net::SocketAddr,
}

/// The whole configuration (the JSON root object).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening ports.
    pub ports: Vec<PortConfig>,
    /// TLS certificates for `wss://` ports.
    #[serde(default)]
    pub certs: Vec<CertConfig>,
    /// The app plugins and their endpoints.
    pub apps: Vec<AppConfig>,
    /// One of `error`, `warning`, `notice`, `info`, `debug`.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
    /// Worker threads; 0 means one per online CPU.
    #[serde(default)]
    pub worker_c: u16,
    /// The open-file limit to raise RLIMIT_NOFILE to; also caps connections.
    #[serde(default = "defaults::fd_alloc_c")]
    pub fd_alloc_c: u32,
    /// The largest message (payload bytes) accepted from a client or an app.
    #[serde(default = "defaults::max_ws_msg_size")]
    pub max_ws_msg_size: u64,
    /// Bytes of each worker→app ring (rounded up to a power of two).
    #[serde(default)]
    pub inbound_ring_buf_size: Option<u64>,
    /// Bytes of each app→worker ring (rounded up to a power of two).
    #[serde(default)]
    pub outbound_ring_buf_size: Option<u64>,
    /// Readiness events fetched per poll.
    #[serde(default = "defaults::epoll_buf_elem_c")]
    pub epoll_buf_elem_c: u32,
    /// Seconds to finish sending an HTTP error response before the socket is closed.
    #[serde(default = "defaults::shutdown_wait_http")]
    pub shutdown_wait_http: u32,
    /// Seconds to wait for the client's close frame after the server sent one.
    #[serde(default = "defaults::shutdown_wait_ws")]
    pub shutdown_wait_ws: u32,
    /// Seconds a client has to complete the HTTP upgrade.
    #[serde(default = "defaults::handshake_timeout")]
    pub handshake_timeout: u32,
    /// The largest HTTP upgrade request header section, in bytes (431 beyond).
    #[serde(default = "defaults::max_http_header_size")]
    pub max_http_header_size: u32,
    /// The largest body of a plain HTTP request to an app that serves HTTP (413 beyond).
    #[serde(default = "defaults::max_http_body_size")]
    pub max_http_body_size: u32,
    /// Seconds an app has to decide an upgrade (503 after) or answer a plain HTTP
    /// request (504 after).
    #[serde(default = "defaults::app_answer_timeout")]
    pub app_answer_timeout: u32,
    /// Bytes that may wait unsent for one client before it is closed with 1008.
    #[serde(default)]
    pub max_outbound_buf_size: Option<u64>,
    /// The user to run as once ports are bound and plugins loaded (when started as root).
    #[serde(default = "defaults::user")]
    pub user: String,
    /// The group to run as; empty means the user's primary group.
    #[serde(default)]
    pub group: String,
    /// Allow `user` to be root, so that plugins run as root.
    #[serde(default)]
    pub allow_root_apps: bool,
    /// Where the daemon writes its PID (not in `--foreground` mode).
    #[serde(default = "defaults::pid_file")]
    pub pid_file: PathBuf,
    /// Seconds a SIGTERM/SIGINT stop may take before the process exits anyway.
    #[serde(default = "defaults::shutdown_timeout")]
    pub shutdown_timeout: u32,
    /// Seconds a connection may be quiet before it is pinged; 0 turns pings off.
    #[serde(default = "defaults::ping_interval")]
    pub ping_interval: u32,
    /// Seconds a pinged connection has to send anything before it is dropped.
    #[serde(default = "defaults::pong_timeout")]
    pub pong_timeout: u32,
    /// Seconds without a data message either way before a connection is closed with
    /// 1001; 0 turns this off.
    #[serde(default)]
    pub idle_timeout: u32,
    /// Connections (open or upgrading) one IP address may hold; 0 means no limit.
    #[serde(default)]
    pub max_conns_per_ip: u32,
    /// Bytes all connections together may hold in buffers (partial messages, unsent
    /// output, input held back); beyond it the largest holders are dropped.
    #[serde(default)]
    pub max_buffered_bytes: Option<u64>,
    /// A file the daemon logs to when no syslog socket accepts its lines.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// The metrics listener (`/metrics`, `/health`, `/ready`, a status page); off when
    /// absent.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The daemon's control socket for `ringsocketctl`; `None`: the default path;
    /// empty: none.
    #[serde(default)]
    pub ctl_socket: Option<PathBuf>,
    /// The group whose members may use the control socket (besides root); empty: the
    /// group the daemon runs as.
    #[serde(default)]
    pub ctl_group: String,

    /// The file this configuration was read from.
    #[serde(skip)]
    pub path: PathBuf,

    /// What validation derived from the rest, for start-up to use.
    #[serde(skip)]
    plan: Plan,

    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    max_ws_frame_chain_size: Option<IgnoredAny>,
    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    worker_rbuf_size: Option<IgnoredAny>,
    /// RingSocket 1 tuning key, no longer used (rings do not grow).
    #[serde(default)]
    realloc_multiplier: Option<IgnoredAny>,
    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    owrefs_elem_c: Option<IgnoredAny>,
    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    update_queue_size: Option<IgnoredAny>,
}

/// One listening port (`ports[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The TCP port.
    pub port_number: u16,
    /// `true` for plain `ws://`; `false` (the default) for TLS `wss://`.
    #[serde(default)]
    pub is_unencrypted: bool,
    /// Addresses to listen on; empty means all.
    #[serde(default)]
    pub ip_addrs: Vec<IpAddr>,
    /// A network interface to bind to (`SO_BINDTODEVICE`).
    #[serde(default)]
    pub interface: String,
    /// Listen on IPv4 only.
    #[serde(default)]
    pub ipv4only: bool,
    /// Listen on IPv6 only.
    #[serde(default)]
    pub ipv6only: bool,
    /// One dual-stack IPv6 socket that also accepts IPv4.
    #[serde(default)]
    pub ipv4_is_embedded_in_ipv6: bool,
}

/// A TLS certificate (`certs[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// The hostnames it serves (`*.` wildcards match one label).
    pub hostnames: Vec<String>,
    /// The PEM private key.
    pub privkey_path: PathBuf,
    /// The PEM certificate chain.
    pub pubchain_path: PathBuf,
}

/// An app plugin (`apps[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app's name (at most 32 characters), used in logs.
    pub name: String,
    /// The plugin's `.so`; relative paths are relative to the configuration file.
    pub app_path: PathBuf,
    /// The URLs it serves.
    pub endpoints: Vec<EndpointConfig>,
    /// Any JSON value, handed as text to the app's init callback.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// Don't call the app's open callback.
    #[serde(default)]
    pub no_open_cb: bool,
    /// Don't call the app's close callback.
    #[serde(default)]
    pub no_close_cb: bool,
    /// Events the app's queue holds for `rs_post_event` (posts beyond fail with
    /// `RS_ERR_FULL`).
    #[serde(default = "defaults::event_queue_len")]
    pub event_queue_len: u32,
    /// The largest event, in bytes.
    #[serde(default = "defaults::max_event_size")]
    pub max_event_size: u32,

    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    wbuf_size: Option<IgnoredAny>,
    /// RingSocket 1 tuning key, no longer used.
    #[serde(default)]
    update_queue_size: Option<IgnoredAny>,
}

/// One URL an app serves (`apps[].endpoints[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// An id the app sees in its open callback.
    #[serde(default)]
    pub endpoint_id: u16,
    /// `ws://host[:port]/path` or `wss://...`.
    pub url: String,
    /// Origins allowed to connect; `"*"` allows any. A client that sends no `Origin`
    /// (not a browser) is always allowed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Subprotocols the app speaks, in the server's order of preference.
    #[serde(default)]
    pub subprotocols: Vec<String>,
}

mod defaults {
    pub(super) fn log_level() -> String {
        "notice".into()
    }
    pub(super) fn fd_alloc_c() -> u32 {
        10_000
    }
    pub(super) fn event_queue_len() -> u32 {
        4096
    }

    pub(super) fn max_event_size() -> u32 {
        64 * 1024
    }

    pub(super) fn max_ws_msg_size() -> u64 {
        16 << 20
    }
    pub(super) fn epoll_buf_elem_c() -> u32 {
        256
    }
    pub(super) fn shutdown_wait_http() -> u32 {
        15
    }
    pub(super) fn shutdown_wait_ws() -> u32 {
        30
    }
    pub(super) fn handshake_timeout() -> u32 {
        10
    }
    pub(super) fn max_http_header_size() -> u32 {
        8192
    }
    pub(super) fn max_http_body_size() -> u32 {
        1 << 20
    }
    pub(super) fn app_answer_timeout() -> u32 {
        10
    }
    pub(super) fn user() -> String {
        "ringsock".into()
    }
    pub(super) fn pid_file() -> std::path::PathBuf {
        "/run/ringsocket/ringsocket.pid".into()
    }
    pub(super) fn shutdown_timeout() -> u32 {
        10
    }
    pub(super) fn ping_interval() -> u32 {
        30
    }
    pub(super) fn pong_timeout() -> u32 {
        30
    }
}

/// A parsed `ws[s]://host[:port]/path` endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// `wss://`.
    pub secure: bool,
    /// The host part (informational: routing is by port and path).
    pub host: String,
    /// The port (80/443 by default).
    pub port: u16,
    /// The path, starting with `/`.
    pub path: String,
}

impl EndpointUrl {
    /// Parses an endpoint URL.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn parse(url: &str) -> Result<EndpointUrl, String> {
        // http(s):// names the same endpoint, for apps that answer plain HTTP there.
        let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "'{url}' does not start with ws://, wss://, http:// or https://"
            ));
        };
        let (authority, path) = rest
            .find('/')
            .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        if path.contains(['?', '#']) {
            return Err(format!(
                "'{url}' has a query or fragment; endpoints are paths"
            ));
        }
        if path.contains('*') && !(path.ends_with("/*") && path.matches('*').count() == 1) {
            return Err(format!(
                "'{url}' has a '*' that is not a final '/*' (every path under a prefix)"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{url}' has an unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("'{url}' has no host"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("'{url}' has an invalid port '{p}'"))?,
            None if secure => 443,
            None => 80,
        };
        Ok(EndpointUrl {
            secure,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

impl Config {
    /// Reads, parses and validates the configuration at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and the offending key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in errors and to
    /// resolve relative `app_path`s.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and the offending key.
    pub fn from_json(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let stripped = json_comments::StripComments::new(text.as_bytes());
        let mut de = serde_json::Deserializer::from_reader(stripped);
        let mut config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                file: path.to_path_buf(),
                key: (key != ".").then_some(key),
                message: inner.to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: None,
            message: e.to_string(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        for app in &mut config.apps {
            if app.app_path.is_relative() {
                app.app_path = base.join(&app.app_path);
            }
        }
        config.plan = config.validate().map_err(|(key, message)| ConfigError {
            file: path.to_path_buf(),
            key: Some(key),
            message,
        })?;
        config.path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(config)
    }

    /// Keys from RingSocket 1 that this config sets but ringsocket no longer uses.
    pub fn ignored_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let root = [
            (
                "max_ws_frame_chain_size",
                self.max_ws_frame_chain_size.is_some(),
            ),
            ("worker_rbuf_size", self.worker_rbuf_size.is_some()),
            ("realloc_multiplier", self.realloc_multiplier.is_some()),
            ("owrefs_elem_c", self.owrefs_elem_c.is_some()),
            ("update_queue_size", self.update_queue_size.is_some()),
        ];
        keys.extend(
            root.iter()
                .filter(|(_, set)| *set)
                .map(|(k, _)| k.to_string()),
        );
        for (i, app) in self.apps.iter().enumerate() {
            if app.wbuf_size.is_some() {
                keys.push(format!("apps[{i}].wbuf_size"));
            }
            if app.update_queue_size.is_some() {
                keys.push(format!("apps[{i}].update_queue_size"));
            }
        }
        keys
    }

    /// The worker count: `worker_c`, or the number of online CPUs if it is 0.
    pub fn workers(&self) -> usize {
        match self.worker_c {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
            n => usize::from(n),
        }
    }

    /// Bytes that may wait unsent for one client.
    pub fn outbound_cap(&self) -> u64 {
        self.max_outbound_buf_size
            .unwrap_or(self.max_ws_msg_size.saturating_mul(2).max(1 << 20))
    }

    /// The app and endpoint (indices) serving `path` on `port`, if any.
    pub fn route(&self, port: u16, path: &str) -> Option<(usize, usize)> {
        self.plan
            .session
            .routes
            .find(port, path)
            .map(|r| (r.app.index(), usize::from(r.endpoint.0)))
    }

    /// What the validated configuration means for start-up: routes and limits.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Checks every key and derives the [`Plan`] from them.
    fn validate(&self) -> Result<Plan, (String, String)> {
        self.validate_root_keys()?;
        let port_encryption = self.validate_ports()?;
        self.validate_certs()?;
        let routes = self.validate_apps(&port_encryption)?;
        Ok(self.derive_plan(routes))
    }

    /// The root keys: required lists, the log level, limits and timeouts.
    fn validate_root_keys(&self) -> Result<(), (String, String)> {
        let err = |key: String, msg: String| Err((key, msg));
        if self.ports.is_empty() {
            return err("ports".into(), "at least one port is required".into());
        }
        if self.apps.is_empty() {
            return err("apps".into(), "at least one app is required".into());
        }
        if self.apps.len() > usize::from(u16::MAX) {
            return err("apps".into(), "more than 65535 apps".into());
        }
        if !matches!(
            self.log_level.as_str(),
            "error" | "warning" | "notice" | "info" | "debug"
        ) {
            return err(
                "log_level".into(),
                format!(
                    "'{}' is not one of error, warning, notice, info, debug",
                    self.log_level
                ),
            );
        }
        if usize::from(self.worker_c) > MAX_WORKERS {
            return err(
                "worker_c".into(),
                format!(
                    "{} is more than the maximum of {MAX_WORKERS}",
                    self.worker_c
                ),
            );
        }
        if self.fd_alloc_c < 64 {
            return err(
                "fd_alloc_c".into(),
                format!("{} is less than the minimum of 64", self.fd_alloc_c),
            );
        }
        if !(125..=MAX_MSG).contains(&self.max_ws_msg_size) {
            return err(
                "max_ws_msg_size".into(),
                format!("{} is outside 125..={MAX_MSG}", self.max_ws_msg_size),
            );
        }
        for (key, value) in [
            ("inbound_ring_buf_size", self.inbound_ring_buf_size),
            ("outbound_ring_buf_size", self.outbound_ring_buf_size),
        ] {
            if let Some(v) = value {
                if !(MIN_RING..=MAX_RING).contains(&v) {
                    return err(
                        key.into(),
                        format!("{v} is outside {MIN_RING}..={MAX_RING}"),
                    );
                }
            }
        }
        if let Some(cap) = self.max_outbound_buf_size {
            if cap < self.max_ws_msg_size + 14 {
                return err(
                    "max_outbound_buf_size".into(),
                    format!("{cap} is less than max_ws_msg_size + 14 (one whole frame)"),
                );
            }
        }
        if self.max_http_body_size > 1 << 30 {
            return err(
                "max_http_body_size".into(),
                format!("{} is more than 1 GiB", self.max_http_body_size),
            );
        }
        if self.epoll_buf_elem_c == 0 || self.epoll_buf_elem_c > 65536 {
            return err(
                "epoll_buf_elem_c".into(),
                "must be between 1 and 65536".into(),
            );
        }
        for (key, v) in [
            ("handshake_timeout", self.handshake_timeout),
            ("app_answer_timeout", self.app_answer_timeout),
            ("shutdown_wait_http", self.shutdown_wait_http),
            ("shutdown_wait_ws", self.shutdown_wait_ws),
        ] {
            if v == 0 || v > 3600 {
                return err(key.into(), format!("{v} is outside 1..=3600 seconds"));
            }
        }
        for (key, v, min) in [
            ("ping_interval", self.ping_interval, 0),
            ("pong_timeout", self.pong_timeout, 1),
            ("idle_timeout", self.idle_timeout, 0),
        ] {
            if v < min || v > 86_400 {
                return err(key.into(), format!("{v} is outside {min}..=86400 seconds"));
            }
        }
        if let Some(budget) = self.max_buffered_bytes {
            let min = self.outbound_cap().saturating_mul(2);
            if budget < min {
                return err(
                    "max_buffered_bytes".into(),
                    format!("{budget} is less than 2 × max_outbound_buf_size ({min})"),
                );
            }
        }
        if !(256..=1 << 20).contains(&self.max_http_header_size) {
            return err(
                "max_http_header_size".into(),
                "must be between 256 and 1048576".into(),
            );
        }
        Ok(())
    }

    /// `ports[]`; returns each port number with whether it is unencrypted.
    fn validate_ports(&self) -> Result<HashMap<u16, bool>, (String, String)> {
        let err = |key: String, msg: String| Err((key, msg));
        let mut port_numbers = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            if port_numbers
                .insert(port.port_number, port.is_unencrypted)
                .is_some()
            {
                return err(
                    format!("ports[{i}].port_number"),
                    format!("port {} is listed twice", port.port_number),
                );
            }
            let families = [port.ipv4only, port.ipv6only, port.ipv4_is_embedded_in_ipv6]
                .iter()
                .filter(|b| **b)
                .count();
            if families > 1 {
                return err(
                    format!("ports[{i}]"),
                    "ipv4only, ipv6only and ipv4_is_embedded_in_ipv6 are mutually exclusive".into(),
                );
            }
            if (families > 0 || !port.interface.is_empty()) && !port.ip_addrs.is_empty() {
                return err(format!("ports[{i}].ip_addrs"), "cannot be combined with interface, ipv4only, ipv6only or ipv4_is_embedded_in_ipv6".into());
            }
        }
        Ok(port_numbers)
    }

    /// `certs[]`: hostnames given and unique.
    fn validate_certs(&self) -> Result<(), (String, String)> {
        let err = |key: String, msg: String| Err((key, msg));
        let mut hostnames = HashSet::new();
        for (i, cert) in self.certs.iter().enumerate() {
            if cert.hostnames.is_empty() {
                return err(
                    format!("certs[{i}].hostnames"),
                    "at least one hostname is required".into(),
                );
            }
            for (j, h) in cert.hostnames.iter().enumerate() {
                if !hostnames.insert(h.to_ascii_lowercase()) {
                    return err(
                        format!("certs[{i}].hostnames[{j}]"),
                        format!("'{h}' is listed twice"),
                    );
                }
            }
        }
        Ok(())
    }

    /// `apps[]` and their endpoints; returns the routes.
    fn validate_apps(&self, port_numbers: &HashMap<u16, bool>) -> Result<Routes, (String, String)> {
        let err = |key: String, msg: String| Err((key, msg));
        let mut routes = HashSet::new();
        let mut route_table = Vec::new();
        let mut names = HashSet::new();
        for (a, app) in self.apps.iter().enumerate() {
            if app.name.is_empty() || app.name.chars().count() > 32 {
                return err(
                    format!("apps[{a}].name"),
                    "must be 1 to 32 characters".into(),
                );
            }
            if !names.insert(&app.name) {
                return err(
                    format!("apps[{a}].name"),
                    format!("'{}' is used by another app", app.name),
                );
            }
            if !(1..=1 << 20).contains(&app.event_queue_len) {
                return err(
                    format!("apps[{a}].event_queue_len"),
                    format!("{} is outside 1..=1048576", app.event_queue_len),
                );
            }
            if app.max_event_size as usize > EVENT_QUEUE_BYTES {
                return err(
                    format!("apps[{a}].max_event_size"),
                    format!(
                        "{} is more than the {} bytes an event queue holds",
                        app.max_event_size, EVENT_QUEUE_BYTES
                    ),
                );
            }
            if app.endpoints.len() > usize::from(u16::MAX) {
                return err(
                    format!("apps[{a}].endpoints"),
                    "more than 65535 endpoints".into(),
                );
            }
            if app.endpoints.is_empty() {
                return err(
                    format!("apps[{a}].endpoints"),
                    "at least one endpoint is required".into(),
                );
            }
            for (e, ep) in app.endpoints.iter().enumerate() {
                let key = format!("apps[{a}].endpoints[{e}].url");
                let url = EndpointUrl::parse(&ep.url).map_err(|m| (key.clone(), m))?;
                match port_numbers.get(&url.port) {
                    None => return err(key, format!("port {} is not in ports", url.port)),
                    Some(&unencrypted) if unencrypted == url.secure => {
                        let (want, is) = if url.secure {
                            ("wss", "unencrypted")
                        } else {
                            ("ws", "encrypted (is_unencrypted is false)")
                        };
                        return err(
                            key,
                            format!("a {want}:// URL on port {}, which is {is}", url.port),
                        );
                    }
                    Some(_) => {}
                }
                if url.secure && self.certs.is_empty() {
                    return err(key, "a wss:// URL needs at least one entry in certs".into());
                }
                if !routes.insert((url.port, url.path.clone())) {
                    return err(
                        key,
                        format!(
                            "port {} path {} is served by another endpoint",
                            url.port, url.path
                        ),
                    );
                }
                if ep.subprotocols.len() > usize::from(u16::MAX - 1) {
                    return err(
                        format!("apps[{a}].endpoints[{e}].subprotocols"),
                        "too many subprotocols".into(),
                    );
                }
                route_table.push(Route {
                    port: url.port,
                    path: url.path.clone(),
                    app: AppIndex(a as u16),
                    endpoint: EndpointIndex(e as u16),
                    allowed_origins: ep.allowed_origins.clone(),
                    subprotocols: ep.subprotocols.clone(),
                    decides_upgrades: false,
                    serves_http: false,
                });
                for (p, proto) in ep.subprotocols.iter().enumerate() {
                    if proto.is_empty()
                        || !proto
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
                    {
                        return err(
                            format!("apps[{a}].endpoints[{e}].subprotocols[{p}]"),
                            format!("'{proto}' is not an HTTP token"),
                        );
                    }
                }
            }
        }
        Ok(Routes::new(route_table))
    }

    /// Marks app `app`'s routes with what its plugin's callbacks decide.
    pub(crate) fn set_app_answers(
        &mut self,
        app: usize,
        decides_upgrades: bool,
        serves_http: bool,
    ) {
        self.plan.session.routes.set_app_answers(
            AppIndex(app as u16),
            decides_upgrades,
            serves_http,
        );
    }

    /// Every number start-up needs, derived from the validated keys in one place.
    fn derive_plan(&self, routes: Routes) -> Plan {
        let workers = self.workers();
        let secs = |s: u32| Duration::from_secs(s.into());
        let nonzero = |s: u32| (s > 0).then(|| secs(s));
        let out_cap = usize::try_from(self.outbound_cap()).unwrap_or(usize::MAX);
        let limits = Limits {
            max_message: self.max_ws_msg_size,
            max_header: self.max_http_header_size as usize,
            out_cap,
            handshake_timeout: secs(self.handshake_timeout),
            http_wait: secs(self.shutdown_wait_http),
            ws_wait: secs(self.shutdown_wait_ws),
            ping_interval: nonzero(self.ping_interval),
            pong_timeout: secs(self.pong_timeout),
            idle_timeout: nonzero(self.idle_timeout),
            max_http_body: self.max_http_body_size as usize,
            app_answer_timeout: secs(self.app_answer_timeout),
        };
        // Files that are not connections: listeners, polls, eventfds, plugins, logs.
        let listeners: usize = self.ports.len() * 2 * workers;
        let reserved = listeners + 4 * workers + 2 * self.apps.len() + 32;
        let conn_fds = (self.fd_alloc_c as usize)
            .saturating_sub(reserved)
            .max(workers);
        let budget = self.max_buffered_bytes.map_or(DEFAULT_BUFFERED, |b| {
            usize::try_from(b).unwrap_or(usize::MAX)
        });
        Plan {
            workers,
            session: SessionConfig {
                routes,
                limits,
                draining: false,
            },
            // A worker names its connections by slot (see `ClientId`).
            max_conns_per_worker: conn_fds
                .div_ceil(workers)
                .clamp(1, crate::records::ClientId::SLOTS),
            max_conns_per_ip: self.max_conns_per_ip,
            buffered_per_worker: (budget / workers).max(2 * out_cap),
            // A request head up to the limit must fit whole, and a frame header plus a
            // control frame always does.
            read_buf: (self.max_http_header_size as usize + 1).max(MIN_READ_BUF),
            poll_events: self.epoll_buf_elem_c as usize,
            stop_wait: secs(self.shutdown_timeout),
            inbound_ring: ring_size(self.inbound_ring_buf_size),
            outbound_ring: ring_size(self.outbound_ring_buf_size),
            max_app_message: self.max_ws_msg_size as usize,
            // Large messages in flight through each ring (two per app and worker):
            // together at most a quarter of a worker's budget, but at least one whole
            // message.
            large_in_flight: (budget / workers / (8 * self.apps.len()).max(1))
                .max(self.max_ws_msg_size as usize),
        }
    }
}

/// What a validated configuration means for the runtime: the routes, and every limit
/// derived from the keys (in [`Config::plan`], computed once at load time).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Worker threads.
    pub workers: usize,
    /// The routes and per-connection limits every worker enforces.
    pub session: SessionConfig,
    /// Connections one worker may hold (its share of `fd_alloc_c`, less the files
    /// that are not connections); beyond it new clients get 503.
    pub max_conns_per_worker: usize,
    /// Connections one IP address may hold; 0 means no limit.
    pub max_conns_per_ip: u32,
    /// Bytes one worker's connections may hold in buffers together (its share of
    /// `max_buffered_bytes`).
    pub buffered_per_worker: usize,
    /// Bytes of each worker's read buffer: a whole request head up to
    /// `max_http_header_size` fits.
    pub read_buf: usize,
    /// Readiness events fetched per poll.
    pub poll_events: usize,
    /// How long a graceful stop may wait for close handshakes.
    pub stop_wait: Duration,
    /// Bytes of each worker→app ring.
    pub inbound_ring: usize,
    /// Bytes of each app→worker ring.
    pub outbound_ring: usize,
    /// The largest message an app may send.
    pub max_app_message: usize,
    /// Bytes of large messages (those that cross a ring as a pointer) each ring may
    /// carry at a time; beyond it the producer waits (a worker stops reading that
    /// app's clients, an app's send blocks).
    pub large_in_flight: usize,
}

/// The smallest read buffer.
const MIN_READ_BUF: usize = 256 * 1024;
/// The default `max_buffered_bytes`: 1 GiB, e.g. 10 000 connections holding 100 KiB
/// each.
const DEFAULT_BUFFERED: usize = 1 << 30;

/// The most worker threads (client ids carry the worker index in 8 bits).
pub const MAX_WORKERS: usize = 255;
/// The largest `max_ws_msg_size`.
const MAX_MSG: u64 = 1 << 30;
/// The smallest ring.
const MIN_RING: u64 = 4096;
/// The largest ring.
const MAX_RING: u64 = 1 << 30;
/// The default size of each ring. Messages larger than a quarter of a ring (and than
/// 64 KiB) cross it as a pointer to a heap buffer, so the ring size does not depend on
/// `max_ws_msg_size`.
const DEFAULT_RING: u64 = 1 << 20;

/// Heap bytes of queued events one app holds at once (`apps[].max_event_size` is at most
/// this).
pub(crate) const EVENT_QUEUE_BYTES: usize = 16 << 20;

fn ring_size(configured: Option<u64>) -> usize {
    configured.unwrap_or(DEFAULT_RING).next_power_of_two() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json, Path::new("/etc/test.json"))
    }

    const MINIMAL: &str = r#"{"ports":[{"port_number":8080,"is_unencrypted":true}],
        "apps":[{"name":"echo","app_path":"libecho.so","endpoints":[{"url":"ws://localhost:8080/echo"}]}]}"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.max_ws_msg_size, 16 << 20);
        assert_eq!(c.apps[0].app_path, Path::new("/etc/libecho.so"));
        assert_eq!(c.route(8080, "/echo"), Some((0, 0)));
        assert_eq!(c.route(8080, "/other"), None);
        assert_eq!(c.plan().inbound_ring, 1 << 20);
        assert_eq!(c.plan().read_buf, 256 * 1024);
        assert_eq!(
            c.plan().session.limits.ping_interval,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let bad_url = MINIMAL.replace("ws://localhost:8080/echo", "http://x/echo");
        let e = load(&bad_url).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/test.json: apps[0].endpoints[0].url: "),
            "{e}"
        );
        let e = load(&MINIMAL.replace("\"port_number\":8080", "\"port_number\":\"x\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ports[0].port_number"), "{e}");
        let e = load(&MINIMAL.replace("\"is_unencrypted\"", "\"bogus\":1,\"is_unencrypted\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ports[0]") && e.contains("bogus"), "{e}");
        let e = load(&MINIMAL.replace("\"ports\"", "\"max_ws_msg_size\":5,\"ports\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_ws_msg_size: 5 is outside"), "{e}");
        let e = load(&MINIMAL.replace("8080/echo", "9000/echo"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 9000 is not in ports"), "{e}");
        for (json, key) in [
            (
                "\"pong_timeout\":0,",
                "pong_timeout: 0 is outside 1..=86400",
            ),
            (
                "\"ping_interval\":90000,",
                "ping_interval: 90000 is outside",
            ),
            (
                "\"max_buffered_bytes\":1000,",
                "max_buffered_bytes: 1000 is less than",
            ),
            ("\"max_conns_per_ip\":-1,", "max_conns_per_ip"),
        ] {
            let e = load(&MINIMAL.replace("\"ports\"", &format!("{json}\"ports\"")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
        for (json, key) in [
            (
                "\"event_queue_len\":0,",
                "apps[0].event_queue_len: 0 is outside 1..=1048576",
            ),
            (
                "\"max_event_size\":99999999,",
                "apps[0].max_event_size: 99999999 is more than",
            ),
        ] {
            let e = load(&MINIMAL.replace("\"endpoints\"", &format!("{json}\"endpoints\"")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
        let e = Config::load(Path::new("/nonexistent/rs.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/rs.json: cannot read"), "{e}");
    }

    #[test]
    fn legacy_keys_and_comments_are_accepted() {
        let json = MINIMAL.replace(
            "\"ports\"",
            "// a comment\n\"realloc_multiplier\":1.5,\"worker_rbuf_size\":1000,\"ports\"",
        );
        let c = load(&json).unwrap();
        assert_eq!(c.ignored_keys(), ["worker_rbuf_size", "realloc_multiplier"]);
    }

    #[test]
    fn endpoint_urls() {
        let u = EndpointUrl::parse("wss://[::1]/a/b").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.path.as_str()),
            (true, "::1", 443, "/a/b")
        );
        assert_eq!(EndpointUrl::parse("ws://h:81").unwrap().path, "/");
        assert!(EndpointUrl::parse("ws://h:x/").is_err());
        assert!(EndpointUrl::parse("ws:///p").is_err());
        // http(s):// names the same endpoints; a final /* takes a whole prefix.
        let u = EndpointUrl::parse("http://h:6241/api/*").unwrap();
        assert_eq!((u.secure, u.port, u.path.as_str()), (false, 6241, "/api/*"));
        assert!(EndpointUrl::parse("https://h/").unwrap().secure);
        assert!(EndpointUrl::parse("ws://h/a*").is_err());
        assert!(EndpointUrl::parse("ws://h/*/x").is_err());
        assert!(EndpointUrl::parse("ftp://h/").is_err());
    }
}
