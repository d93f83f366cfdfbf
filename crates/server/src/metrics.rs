//! What the server's counts say, read at scrape time: a [`Snapshot`] (the JSON of
//! `/status.json` and `ringsocketctl status`) and the OpenMetrics text of `/metrics`;
//! and the metrics listener thread that serves both, `/health`, `/ready` and a status
//! page.

use crate::stats::{close_label, Latency, ServerStats, HANDSHAKE_STATUSES, LATENCY_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A latency histogram as read: cumulative counts by upper bound.
#[derive(Debug, Serialize)]
pub(crate) struct LatencySnapshot {
    /// Samples.
    pub(crate) count: u64,
    /// Their sum, in seconds.
    pub(crate) sum_s: f64,
    /// Per bucket (not cumulative), with its upper bound in seconds (`None`: +Inf).
    pub(crate) buckets: Vec<(Option<f64>, u64)>,
    /// The median's bucket bound, in microseconds (`None` without samples).
    pub(crate) p50_us: Option<f64>,
    /// The 99th percentile's bucket bound, in microseconds.
    pub(crate) p99_us: Option<f64>,
}

impl LatencySnapshot {
    fn of<'a>(histograms: impl Iterator<Item = &'a Latency>) -> LatencySnapshot {
        let mut counts = [0u64; LATENCY_BUCKETS];
        let mut sum_ns = 0;
        for h in histograms {
            sum_ns += h.add_to(&mut counts);
        }
        let count: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            counts.iter().enumerate().find_map(|(i, &c)| {
                seen += c;
                (count > 0 && seen >= rank)
                    .then(|| Latency::bound_s(i).map_or(f64::INFINITY, |s| s * 1e6))
            })
        };
        LatencySnapshot {
            count,
            sum_s: sum_ns as f64 * 1e-9,
            buckets: counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (Latency::bound_s(i), c))
                .collect(),
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
        }
    }
}

/// One endpoint's connections.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointSnapshot {
    /// Its URL as configured.
    pub(crate) url: String,
    /// Open now.
    pub(crate) connections: u64,
    /// Opened since start.
    pub(crate) opened: u64,
}

/// One ring's fill.
#[derive(Debug, Serialize)]
pub(crate) struct RingSnapshot {
    /// The worker at one end.
    pub(crate) worker: usize,
    /// `inbound` (worker → app) or `outbound` (app → worker).
    pub(crate) direction: &'static str,
    /// Bytes waiting.
    pub(crate) used: usize,
    /// Bytes it holds.
    pub(crate) capacity: usize,
}

/// One app's figures, summed over workers.
#[derive(Debug, Serialize)]
pub(crate) struct AppSnapshot {
    /// Its name.
    pub(crate) name: String,
    /// Its endpoints.
    pub(crate) endpoints: Vec<EndpointSnapshot>,
    /// Messages from clients.
    pub(crate) messages_in: u64,
    /// Their payload bytes.
    pub(crate) bytes_in: u64,
    /// Messages to clients (one per recipient).
    pub(crate) messages_out: u64,
    /// Their frame bytes.
    pub(crate) bytes_out: u64,
    /// Messages that found the inbound ring full.
    pub(crate) ring_full_inbound: u64,
    /// Sends that waited for a full outbound ring.
    pub(crate) ring_full_outbound: u64,
    /// Clients closed for exceeding `max_outbound_buf_size`.
    pub(crate) slow_consumer_closes: u64,
    /// Clients dropped to keep within `max_buffered_bytes`.
    pub(crate) memory_budget_closes: u64,
    /// Closes by code (only codes seen).
    pub(crate) closes: BTreeMap<String, u64>,
    /// Its rings.
    pub(crate) rings: Vec<RingSnapshot>,
    /// Socket read → app callback.
    pub(crate) read_to_callback: LatencySnapshot,
}

/// Everything `/status.json` and `ringsocketctl status` show.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    /// The server's version.
    pub(crate) version: &'static str,
    /// Seconds since start.
    pub(crate) uptime_s: f64,
    /// The configuration file.
    pub(crate) config_path: String,
    /// Worker threads.
    pub(crate) workers: usize,
    /// Serving (and not draining).
    pub(crate) ready: bool,
    /// Draining: new upgrades get 503.
    pub(crate) draining: bool,
    /// Open connections, all endpoints.
    pub(crate) connections: u64,
    /// Handshake answers by status.
    pub(crate) handshakes: BTreeMap<String, u64>,
    /// Per app.
    pub(crate) apps: Vec<AppSnapshot>,
    /// App send → socket write, all workers.
    pub(crate) send_to_write: LatencySnapshot,
}

impl Snapshot {
    /// Reads every thread's counts now.
    pub(crate) fn take(stats: &ServerStats) -> Snapshot {
        let mut handshakes = BTreeMap::new();
        for slot in 0..=HANDSHAKE_STATUSES.len() {
            let n: u64 = stats.workers.iter().map(|w| w.handshakes[slot].get()).sum();
            let status = HANDSHAKE_STATUSES
                .get(slot)
                .map_or("other".to_string(), u16::to_string);
            handshakes.insert(status, n);
        }
        let apps: Vec<AppSnapshot> = stats
            .apps
            .iter()
            .enumerate()
            .map(|(a, label)| {
                let sum = |f: &dyn Fn(&crate::stats::AppTraffic) -> u64| stats.app_sum(a, f);
                let endpoints = label
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(e, url)| EndpointSnapshot {
                        url: url.clone(),
                        connections: sum(&|t| t.endpoints[e].open.get()),
                        opened: sum(&|t| t.endpoints[e].opened.get()),
                    })
                    .collect();
                let mut closes = BTreeMap::new();
                for slot in 0..crate::stats::CLOSE_SLOTS {
                    let n = sum(&|t| t.closes[slot].get());
                    if n > 0 {
                        closes.insert(close_label(slot), n);
                    }
                }
                let rings = stats
                    .rings
                    .iter()
                    .filter(|r| r.app == a)
                    .map(|r| {
                        let (used, capacity) = r.observer.fill();
                        RingSnapshot {
                            worker: r.worker,
                            direction: r.direction,
                            used,
                            capacity,
                        }
                    })
                    .collect();
                AppSnapshot {
                    name: label.name.clone(),
                    endpoints,
                    messages_in: sum(&|t| t.messages_in.get()),
                    bytes_in: sum(&|t| t.bytes_in.get()),
                    messages_out: sum(&|t| t.messages_out.get()),
                    bytes_out: sum(&|t| t.bytes_out.get()),
                    ring_full_inbound: sum(&|t| t.ring_full.get()),
                    ring_full_outbound: stats.app_threads[a].ring_full.get(),
                    slow_consumer_closes: sum(&|t| t.slow_closes.get()),
                    memory_budget_closes: sum(&|t| t.budget_closes.get()),
                    closes,
                    rings,
                    read_to_callback: LatencySnapshot::of(std::iter::once(
                        &stats.app_threads[a].read_to_callback,
                    )),
                }
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: stats.started.elapsed().as_secs_f64(),
            config_path: stats.config_path.clone(),
            workers: stats.workers.len(),
            ready: stats.is_ready(),
            draining: stats.draining.load(Ordering::Relaxed),
            connections: apps
                .iter()
                .flat_map(|a| &a.endpoints)
                .map(|e| e.connections)
                .sum(),
            handshakes,
            apps,
            send_to_write: LatencySnapshot::of(stats.workers.iter().map(|w| &w.send_to_write)),
        }
    }
}

/// The OpenMetrics text of `snapshot`.
pub(crate) fn openmetrics(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// A snapshot as a prometheus-client collector.
#[derive(Debug)]
struct Scrape(Snapshot);

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Vec<(&str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        ConstCounter::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// Gauge values: with labels, or one without (`labels` empty).
type GaugeValues<'a> = [(Vec<(&'a str, String)>, f64)];

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &GaugeValues<'_>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(labels, v)] = values {
        if labels.is_empty() {
            return ConstGauge::new(*v).encode(metric);
        }
    }
    for (labels, v) in values {
        ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Vec<(&str, String)>, &LatencySnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in values {
        let buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(bound, n)| (bound.unwrap_or(f64::MAX), n))
            .collect();
        if labels.is_empty() {
            metric.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &buckets, None)?;
        } else {
            metric
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum_s, h.count, &buckets, None)?;
        }
    }
    Ok(())
}

/// Per app, two values told apart by label `key`.
fn per_app_split<'a>(
    apps: &[AppSnapshot],
    key: &'a str,
    split: impl Fn(&AppSnapshot) -> [(&'static str, u64); 2],
) -> Vec<(Vec<(&'a str, String)>, u64)> {
    apps.iter()
        .flat_map(|a| {
            split(a).map(|(v, n)| (vec![("app", a.name.clone()), (key, v.to_string())], n))
        })
        .collect()
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut encoder;
        let app = |a: &AppSnapshot| vec![("app", a.name.clone())];
        let per_app = |f: &dyn Fn(&AppSnapshot) -> u64| -> Vec<(Vec<(&str, String)>, u64)> {
            s.apps.iter().map(|a| (app(a), f(a))).collect()
        };
        gauge(
            e,
            "ringsocket_up",
            "1 while the process serves",
            &[(vec![("version", s.version.to_string())], 1.0)],
        )?;
        gauge(
            e,
            "ringsocket_ready",
            "1 when serving and not draining (what /ready says)",
            &[(vec![], f64::from(u8::from(s.ready)))],
        )?;
        gauge(
            e,
            "ringsocket_uptime_seconds",
            "Seconds since start",
            &[(vec![], s.uptime_s)],
        )?;
        let endpoints = |f: &dyn Fn(&EndpointSnapshot) -> u64| {
            s.apps
                .iter()
                .flat_map(|a| {
                    a.endpoints.iter().map(move |ep| {
                        (
                            vec![("app", a.name.clone()), ("endpoint", ep.url.clone())],
                            f(ep),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        let open: Vec<_> = endpoints(&|ep| ep.connections)
            .into_iter()
            .map(|(l, v)| (l, v as f64))
            .collect();
        gauge(
            e,
            "ringsocket_connections",
            "Open WebSocket connections per endpoint",
            &open,
        )?;
        counter(
            e,
            "ringsocket_connections_opened",
            "WebSocket connections opened per endpoint",
            &endpoints(&|ep| ep.opened),
        )?;
        let handshakes: Vec<_> = s
            .handshakes
            .iter()
            .map(|(status, &n)| (vec![("status", status.clone())], n))
            .collect();
        counter(
            e,
            "ringsocket_handshakes",
            "Upgrade requests answered, by HTTP status (101: upgraded)",
            &handshakes,
        )?;
        counter(
            e,
            "ringsocket_messages_in",
            "Messages from clients per app",
            &per_app(&|a| a.messages_in),
        )?;
        counter(
            e,
            "ringsocket_messages_out",
            "Messages to clients per app (one per recipient)",
            &per_app(&|a| a.messages_out),
        )?;
        counter(
            e,
            "ringsocket_bytes_in",
            "Message payload bytes from clients per app",
            &per_app(&|a| a.bytes_in),
        )?;
        counter(
            e,
            "ringsocket_bytes_out",
            "Frame bytes queued to clients per app",
            &per_app(&|a| a.bytes_out),
        )?;
        let closes: Vec<_> = s
            .apps
            .iter()
            .flat_map(|a| {
                a.closes.iter().map(move |(code, &n)| {
                    (vec![("app", a.name.clone()), ("code", code.clone())], n)
                })
            })
            .collect();
        counter(
            e,
            "ringsocket_closes",
            "Connections closed per app, by close code (1006: lost)",
            &closes,
        )?;
        counter(
            e,
            "ringsocket_ring_full_stalls",
            "Times a ring was full: inbound, a client's reading paused; outbound, an app's send waited",
            &per_app_split(&s.apps, "direction", |a| {
                [
                    ("inbound", a.ring_full_inbound),
                    ("outbound", a.ring_full_outbound),
                ]
            }),
        )?;
        counter(
            e,
            "ringsocket_slow_consumer_closes",
            "Clients closed because they read too slowly (outbound_cap: 1008; memory_budget: 1013)",
            &per_app_split(&s.apps, "reason", |a| {
                [
                    ("outbound_cap", a.slow_consumer_closes),
                    ("memory_budget", a.memory_budget_closes),
                ]
            }),
        )?;
        let fill: Vec<_> = s
            .apps
            .iter()
            .flat_map(|a| {
                a.rings.iter().map(move |r| {
                    (
                        vec![
                            ("app", a.name.clone()),
                            ("worker", r.worker.to_string()),
                            ("direction", r.direction.to_string()),
                        ],
                        r.used as f64,
                    )
                })
            })
            .collect();
        gauge(
            e,
            "ringsocket_ring_used_bytes",
            "Bytes waiting in each ring",
            &fill,
        )?;
        let read: Vec<_> = s
            .apps
            .iter()
            .map(|a| (app(a), &a.read_to_callback))
            .collect();
        histogram(
            e,
            "ringsocket_read_to_callback",
            "Socket read to the app's callback, sampled once per worker loop round",
            &read,
        )?;
        histogram(
            e,
            "ringsocket_send_to_write",
            "An app's send to the socket write, sampled once per app round",
            &[(vec![], &s.send_to_write)],
        )?;
        Ok(())
    }
}

/// The status page (served at `/`; it polls `/status.json`).
const STATUS_PAGE: &str = include_str!("status.html");

/// Serves the metrics listener until `stop` is set.
pub(crate) fn serve(server: tiny_http::Server, stats: Arc<ServerStats>, stop: Arc<AtomicBool>) {
    use tiny_http::{Header, Response};
    let header =
        |v: &str| Header::from_bytes(&b"Content-Type"[..], v.as_bytes()).expect("a valid header");
    while !stop.load(Ordering::Acquire) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("metrics listener: {e}");
                continue;
            }
        };
        let path = request.url().split('?').next().unwrap_or("");
        let ready = stats.is_ready();
        let response = match path {
            "/metrics" => Response::from_string(openmetrics(Snapshot::take(&stats))).with_header(
                header("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            ),
            "/status.json" => {
                let json = serde_json::to_string(&Snapshot::take(&stats)).unwrap_or_default();
                Response::from_string(json).with_header(header("application/json"))
            }
            "/health" => Response::from_string("ok\n").with_header(header("text/plain")),
            "/ready" if ready => Response::from_string("ready\n").with_header(header("text/plain")),
            "/ready" => Response::from_string("not ready\n")
                .with_status_code(503)
                .with_header(header("text/plain")),
            "/" => {
                Response::from_string(STATUS_PAGE).with_header(header("text/html; charset=utf-8"))
            }
            _ => Response::from_string("not found\n")
                .with_status_code(404)
                .with_header(header("text/plain")),
        };
        let _ = request.respond(response);
    }
}
