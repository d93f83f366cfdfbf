//! The `push` scenario: `apps/dsock` clients, and backends sending through its HTTP API.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};

/// Whom each send targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// One user, round robin (one delivery per send).
    User,
    /// One channel, round robin (C / channels deliveries per send).
    Channel,
}

/// An HS256 JWT for client `i`: user `u{i}`, channel `c{i % channels}`.
fn jwt(i: usize, channels: usize, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = format!(
        r#"{{"sub":"u{i}","channels":["c{}"],"exp":4102444800}}"#,
        i % channels
    );
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// Opens client `i` to `addr` with its own JWT.
fn open_client(load: &mut Load, i: usize, addr: SocketAddr) -> bool {
    let Ok(mut stream) = connect(addr, src_ip(i, load.args.src_ips), false) else {
        load.errors.add("connect failed");
        return false;
    };
    let token = load.conns.len();
    if load
        .poll
        .registry()
        .register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )
        .is_err()
    {
        return false;
    }
    let path = format!(
        "/connect?jwt={}",
        jwt(i, load.args.channels, &load.args.jwt_secret)
    );
    let mut conn = Conn::new(stream);
    conn.request = Some(upgrade_request(&path, &addr));
    load.conns.push(conn);
    true
}

/// Opens the `n` clients, 256 at a time, alternating between the nodes.
fn open_clients(load: &mut Load, n: usize) -> bool {
    let addrs: Vec<SocketAddr> = std::iter::once(load.args.addr)
        .chain(load.args.addr2)
        .collect();
    let mut events = Events::with_capacity(1024);
    let mut started = 0;
    loop {
        let open = load.conns.iter().filter(|c| c.state == State::Open).count();
        let dead = load.conns.iter().filter(|c| c.state == State::Dead).count();
        if dead > 0 {
            return false;
        }
        if started == n && open == n {
            return true;
        }
        while started < n && started - open < 256 {
            if !open_client(load, started, addrs[started % addrs.len()]) {
                return false;
            }
            started += 1;
        }
        if Instant::now() > load.deadline {
            load.errors.add("timed out opening connections");
            return false;
        }
        load.poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            load.progress_open(ev.token().0);
        }
    }
}

/// With every client connected and idle: the server's RSS per client.
fn idle_clients(load: &mut Load, before: Option<u64>) -> String {
    let (Some(pid), Some(before)) = (load.args.server_pid, before) else {
        return fail(load, "push --idle needs --server-pid");
    };
    std::thread::sleep(Duration::from_secs(1));
    let after = server_rss(pid).unwrap_or(0);
    let open = load.conns.iter().filter(|c| c.state == State::Open).count();
    format!(
        "{{\"scenario\":\"push-idle\",\"clients\":{open},\"rss_before\":{before},\"rss_after\":{after},\
         \"rss_bytes_per_conn\":{:.1},\"errors\":{}}}",
        after.saturating_sub(before) as f64 / open.max(1) as f64,
        load.errors.total()
    )
}

/// One keep-alive HTTP connection to the API, one request in flight at a time.
struct ApiConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    /// When the request in flight was written.
    in_flight: Option<Instant>,
    connected: bool,
    /// Requests sent on it so far.
    sent: u64,
}

/// Tokens of the API connections start here (clients are 0..C).
const API_TOKEN: usize = 1 << 30;

/// The complete response at the start of `buf`: its status and length.
fn http_response(buf: &[u8]) -> Option<(u16, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= end + len).then_some((status, end + len))
}

pub fn push(load: &mut Load) -> String {
    let n = load.args.conns;
    let rss_before = load.args.server_pid.and_then(server_rss);
    if !open_clients(load, n) {
        return fail(load, "could not open every client");
    }
    if load.args.idle {
        return idle_clients(load, rss_before);
    }
    let epoch = Instant::now();
    let mut api: Vec<ApiConn> = Vec::new();
    for j in 0..load.args.api_conns.max(1) {
        let Ok(mut stream) = connect(load.args.api, None, false) else {
            return fail(load, "could not reach the API");
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        load.poll
            .registry()
            .register(&mut stream, Token(API_TOKEN + j), interest)
            .expect("register");
        api.push(ApiConn {
            stream,
            inbuf: Vec::new(),
            in_flight: None,
            connected: false,
            sent: 0,
        });
    }
    let (target, channels, rate) = (load.args.target, load.args.channels.max(1), load.args.rate);
    let token = load.args.token.clone();
    let mut seq = 0u64;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let (mut sends_ok, mut http_errors, mut deliveries, mut reorders) = (0u64, 0u64, 0u64, 0u64);
    // Per client: the last sequence number it got.
    let mut last_seq: Vec<Option<u64>> = vec![None; n];
    let mut window = Window::new(load.args.warmup, load.args.secs);
    let mut events = Events::with_capacity(4096);
    let start = Instant::now();
    // Sends one request on API connection `j`, if the rate allows.
    // Connection `j` sends to channels j, j + api_conns, ... in turn (with as many
    // connections as channels: always to its own channel).
    let api_conns = api.len();
    let send = |c: &mut ApiConn, j: usize, seq: &mut u64| -> bool {
        if rate > 0 && *seq >= (start.elapsed().as_secs_f64() * rate as f64) as u64 {
            return false;
        }
        let target = match target {
            Target::User => format!("user=u{}", *seq as usize % n),
            Target::Channel => {
                let round = c.sent as usize * api_conns;
                format!("channel=c{}", (j + round) % channels)
            }
        };
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        body[8..].copy_from_slice(&seq.to_le_bytes());
        let head = format!(
            "POST /send?token={token}&{target}&type=binary HTTP/1.1\r\nHost: bench\r\nContent-Length: 16\r\n\r\n"
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        // Small enough to go out in one write on an idle keep-alive connection.
        if c.stream.write_all(&request).is_err() {
            return false;
        }
        c.in_flight = Some(Instant::now());
        c.sent += 1;
        *seq += 1;
        true
    };
    while let Some((_, measuring)) = load.step(&mut events, &mut window) {
        if window.ended {
            break;
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if t >= API_TOKEN {
                let c = &mut api[t - API_TOKEN];
                if !c.connected && c.stream.peer_addr().is_ok() {
                    c.connected = true;
                }
                let mut buf = [0u8; 65536];
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            load.errors.add("the API closed a connection");
                            break;
                        }
                        Ok(k) => c.inbuf.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            load.errors.add("API connection reset");
                            break;
                        }
                    }
                }
                while let Some((status, len)) = http_response(&c.inbuf) {
                    c.inbuf.drain(..len);
                    c.in_flight = None;
                    if status == 200 {
                        if measuring {
                            sends_ok += 1;
                        }
                    } else {
                        http_errors += 1;
                    }
                }
                continue;
            }
            if load.conns[t].state != State::Open || !load.fill(t) {
                continue;
            }
            let conn = &mut load.conns[t];
            let mut at = 0;
            while let Some((opcode, range, len)) = server_frame(&conn.inbuf[at..]) {
                let payload = &conn.inbuf[at + range.start..at + range.end];
                if opcode == 2 && payload.len() == 16 {
                    let sent = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    let s = u64::from_le_bytes(payload[8..].try_into().unwrap());
                    if last_seq[t].is_some_and(|l| s <= l) {
                        reorders += 1;
                    }
                    last_seq[t] = Some(s);
                    if measuring {
                        deliveries += 1;
                        let now_ns = epoch.elapsed().as_nanos() as u64;
                        let _ = latency.record(now_ns.saturating_sub(sent).max(1));
                    }
                }
                at += len;
            }
            conn.inbuf.drain(..at);
        }
        for (j, c) in api.iter_mut().enumerate() {
            if c.connected && c.in_flight.is_none() {
                send(c, j, &mut seq);
            }
        }
    }
    let secs = window.secs();
    format!(
        "{{\"scenario\":\"push\",\"target\":\"{target:?}\",\"clients\":{n},\"nodes\":{},\"api_conns\":{},\
         \"rate\":{rate},\"secs\":{secs:.3},\"sends\":{sends_ok},\"sends_per_sec\":{:.0},\"deliveries_per_sec\":{:.0},\
         \"latency_p50_us\":{:.1},\"latency_p99_us\":{:.1},\"latency_p999_us\":{:.1},\
         \"server_cpu_us_per_send\":{},\"server_cpu_us_per_delivery\":{},\"reorders\":{reorders},\"http_errors\":{http_errors},\"errors\":{}}}",
        1 + usize::from(load.args.addr2.is_some()),
        api.len(),
        sends_ok as f64 / secs,
        deliveries as f64 / secs,
        percentile_us(&latency, 0.5),
        percentile_us(&latency, 0.99),
        percentile_us(&latency, 0.999),
        window
            .cpu_ns()
            .filter(|_| sends_ok > 0)
            .map_or("null".into(), |c| format!("{:.3}", c as f64 / 1000.0 / sends_ok as f64)),
        window
            .cpu_ns()
            .filter(|_| deliveries > 0)
            .map_or("null".into(), |c| format!("{:.3}", c as f64 / 1000.0 / deliveries as f64)),
        load.errors.total()
    )
}
