//! `rs-loadgen`: the load generator of ringsocket's benchmarks.
//!
//! One thread, one `mio` poll loop, loopback only, every run bounded in time. Scenarios:
//!
//! * `echo`: C connections keep W messages of S bytes in flight each; reports messages/s,
//!   MB/s, round-trip percentiles and the server's CPU time per message.
//! * `fanout`: C subscribers and one publisher on a broadcast endpoint; the publisher keeps
//!   W messages in flight (it hears its own broadcast); every subscriber checks the
//!   sequence numbers. Reports deliveries/s, delivery latency, server CPU per delivery and
//!   drops (which must be 0).
//! * `topics`: C subscribers spread over T topics (one group each of the `groups` app,
//!   which must acknowledge joins), and T publishers, one per topic, each keeping W
//!   messages in flight (paced by its topic's first subscriber); every subscriber checks
//!   its topic's sequence numbers. Reports as `fanout` does.
//! * `idle`: C idle connections spread over several 127.0.0.x source addresses; reports
//!   the server's RSS growth per connection.
//! * `handshakes`: C concurrent connect → upgrade → reset loops; reports upgrades/s.
//! * `push`: C clients of `apps/dsock` (each with its own JWT: user `uI`, channel
//!   `cI mod N`), spread over `--addr` and `--addr2` (a second node), and `--api-conns`
//!   keep-alive HTTP connections to `--api` sending `POST /send` to a user or a channel
//!   (`--target`), as fast as answers come or at `--rate`; reports API sends/s,
//!   deliveries/s, send → client latency and reorders (which must be 0).
//!
//! With `--raw` the echo scenario speaks plain TCP (no handshake, no framing): the floor.
//! Server figures come from `/proc/PID` of `--server-pid`. The result is one JSON line on
//! stdout; errors are counted by kind and summarised on stderr.

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Echo,
    Fanout,
    Topics,
    Idle,
    Handshakes,
    Push,
}

/// WebSocket load generator (loopback only).
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Server address (must be on 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Request path of the WebSocket endpoint.
    #[arg(long, default_value = "/echo")]
    path: String,
    /// Plain TCP echo, no WebSocket (the floor).
    #[arg(long)]
    raw: bool,
    /// Connections (subscribers for fanout).
    #[arg(long, short = 'c', default_value_t = 100)]
    conns: usize,
    /// Messages in flight per connection (per publisher for fanout).
    #[arg(long, short = 'w', default_value_t = 1)]
    inflight: usize,
    /// Topics (for `topics`: subscribers are spread evenly over them).
    #[arg(long, default_value_t = 10)]
    topics: usize,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 32)]
    size: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// The server's PID, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses to spread connections over (127.0.0.2 ...).
    #[arg(long, default_value_t = 1)]
    src_ips: u8,
    /// Give up after this many seconds whatever happens.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// `push`: the HTTP API's address.
    #[arg(long, default_value = "127.0.0.1:6241")]
    api: SocketAddr,
    /// `push`: a second node's client address (clients alternate between the two).
    #[arg(long)]
    addr2: Option<SocketAddr>,
    /// `push`: whom each send targets.
    #[arg(long, value_enum, default_value_t = push::Target::User)]
    target: push::Target,
    /// `push`: channels the clients are spread over.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// `push`: keep-alive HTTP connections sending.
    #[arg(long, default_value_t = 16)]
    api_conns: usize,
    /// `push`: sends per second in total (0: as fast as answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// `push`: the API token.
    #[arg(long, default_value = "bench")]
    token: String,
    /// `push`: the HS256 secret the clients' JWTs are signed with.
    #[arg(long, default_value = "bench")]
    jwt_secret: String,
    /// `push`: only connect the clients, then report the server's RSS per client (an
    /// idle authenticated connection); needs `--server-pid`.
    #[arg(long)]
    idle: bool,
}

mod push;

/// Counts of everything that went wrong, by kind.
#[derive(Default)]
struct Errors(BTreeMap<&'static str, u64>);

impl Errors {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "no errors".into();
        }
        self.0
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The server's CPU time so far: the sum over its threads of /proc schedstat run time.
fn server_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The server's resident set size in bytes.
fn server_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A masked client frame. The key is fixed: the point is the server's cost, and a
/// frame built once is copied for every send.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    ringsocket_proto::frame::encode_client_frame(
        true,
        opcode,
        payload,
        [0x3a, 0x91, 0x5c, 0x07],
        &mut frame,
    );
    frame
}

/// Parses one unmasked server frame at the start of `buf`: (opcode, payload range, frame
/// length), or None if incomplete.
fn server_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    (buf.len() >= at + len).then_some((b0 & 0x0f, at..at + len, at + len))
}

fn upgrade_request(path: &str, host: &SocketAddr) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Upgrading,
    Open,
    Dead,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    state: State,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// When each in-flight message was queued (echo), oldest first.
    sent: VecDeque<Instant>,
    /// Next expected sequence number (fanout subscribers).
    expect_seq: u64,
    /// This connection's own upgrade request (else the load's).
    request: Option<Vec<u8>>,
}

impl Conn {
    /// A connection that is still connecting.
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            state: State::Connecting,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            sent: VecDeque::new(),
            expect_seq: 0,
            request: None,
        }
    }
}

fn connect(addr: SocketAddr, src: Option<IpAddr>, linger0: bool) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking(),
        None,
    )?;
    socket.set_tcp_nodelay(true)?;
    if linger0 {
        socket.set_linger(Some(Duration::ZERO))?;
    }
    if let Some(ip) = src {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

fn src_ip(i: usize, n: u8) -> Option<IpAddr> {
    (n > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % n as usize) as u8)))
}

/// The event loop shared by every scenario.
struct Load {
    args: Args,
    poll: Poll,
    conns: Vec<Conn>,
    errors: Errors,
    request: Vec<u8>,
    deadline: Instant,
}

impl Load {
    fn new(args: Args) -> Load {
        assert!(
            args.addr.ip().is_loopback(),
            "the load generator only talks to loopback addresses"
        );
        let request = upgrade_request(&args.path, &args.addr);
        let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
        Load {
            args,
            poll: Poll::new().expect("epoll"),
            conns: Vec::new(),
            errors: Errors::default(),
            request,
            deadline,
        }
    }

    fn open(&mut self, src: Option<IpAddr>, linger0: bool) -> Option<usize> {
        match connect(self.args.addr, src, linger0) {
            Ok(mut stream) => {
                let token = self.conns.len();
                self.poll
                    .registry()
                    .register(
                        &mut stream,
                        Token(token),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .ok()?;
                self.conns.push(Conn::new(stream));
                Some(token)
            }
            Err(e) => {
                self.errors.add(if e.kind() == ErrorKind::AddrNotAvailable {
                    "no source port"
                } else {
                    "connect failed"
                });
                None
            }
        }
    }

    /// Opens `n` connections, at most 256 still connecting at a time (to stay within the
    /// server's listen backlog), and waits until every one is upgraded (or connected,
    /// with --raw). Returns whether all of them made it.
    fn open_all(&mut self, n: usize) -> bool {
        let mut events = Events::with_capacity(1024);
        let first = self.conns.len();
        let mut started = 0;
        loop {
            let (mut open, mut dead) = (0, 0);
            for c in &self.conns[first..] {
                match c.state {
                    State::Open => open += 1,
                    State::Dead => dead += 1,
                    _ => {}
                }
            }
            if started == n && open + dead == n {
                return dead == 0;
            }
            let mut in_progress = started - open - dead;
            while started < n && in_progress < 256 {
                if self
                    .open(src_ip(started, self.args.src_ips), false)
                    .is_none()
                {
                    return false;
                }
                started += 1;
                in_progress += 1;
            }
            if Instant::now() > self.deadline {
                self.errors.add("timed out opening connections");
                return false;
            }
            self.poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .expect("poll");
            for ev in events.iter() {
                self.progress_open(ev.token().0);
            }
        }
    }

    /// Moves a connection through connect and upgrade.
    fn progress_open(&mut self, i: usize) {
        let raw = self.args.raw;
        let conn = &mut self.conns[i];
        if conn.state == State::Connecting {
            match conn.stream.peer_addr() {
                Ok(_) if raw => conn.state = State::Open,
                Ok(_) => {
                    conn.state = State::Upgrading;
                    let request = conn.request.as_deref().unwrap_or(&self.request);
                    let _ = conn.stream.write_all(request);
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(_) => {
                    conn.state = State::Dead;
                    self.errors.add("connect refused");
                    return;
                }
            }
        }
        if conn.state == State::Upgrading {
            let mut buf = [0u8; 1024];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        conn.state = State::Dead;
                        self.errors.add("closed during upgrade");
                        return;
                    }
                    Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        conn.state = State::Dead;
                        self.errors.add("reset during upgrade");
                        return;
                    }
                }
            }
            if let Some(end) = conn.inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                if conn.inbuf.starts_with(b"HTTP/1.1 101") {
                    conn.state = State::Open;
                    conn.inbuf.drain(..end + 4);
                } else {
                    conn.state = State::Dead;
                    self.errors.add("upgrade refused");
                }
            }
        }
    }

    /// Waits for events (10 ms at most) and advances the window: the time and whether it
    /// is inside the measured part, or None once the run's time is up.
    fn step(&mut self, events: &mut Events, window: &mut Window) -> Option<(Instant, bool)> {
        if Instant::now() > self.deadline {
            self.errors.add("timed out");
            return None;
        }
        self.poll
            .poll(events, Some(Duration::from_millis(10)))
            .expect("poll");
        let now = Instant::now();
        Some((now, window.tick(now, self.args.server_pid)))
    }

    /// Writes a connection's queued bytes until done or the socket would block.
    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while conn.out_pos < conn.out.len() {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    conn.state = State::Dead;
                    self.errors.add("write failed");
                    return;
                }
            }
        }
        conn.out.clear();
        conn.out_pos = 0;
    }

    /// Reads what a connection has; returns false if it died.
    fn fill(&mut self, i: usize) -> bool {
        let conn = &mut self.conns[i];
        let mut buf = [0u8; 65536];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conn.state = State::Dead;
                    self.errors.add("server closed the connection");
                    return false;
                }
                Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => {
                    conn.state = State::Dead;
                    self.errors.add("connection reset");
                    return false;
                }
            }
        }
    }
}

/// Measurement window bookkeeping.
struct Window {
    measure_from: Instant,
    measure_until: Instant,
    cpu_start: Option<u64>,
    cpu_end: Option<u64>,
    started: bool,
    ended: bool,
}

impl Window {
    fn new(warmup: f64, secs: f64) -> Window {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(warmup);
        Window {
            measure_from,
            measure_until: measure_from + Duration::from_secs_f64(secs),
            cpu_start: None,
            cpu_end: None,
            started: false,
            ended: false,
        }
    }

    /// Advances the window; returns true while inside the measured part.
    fn tick(&mut self, now: Instant, pid: Option<u32>) -> bool {
        if !self.started && now >= self.measure_from {
            self.started = true;
            self.cpu_start = pid.and_then(server_cpu_ns);
            self.measure_from = now;
        }
        if self.started && !self.ended && now >= self.measure_until {
            self.ended = true;
            self.cpu_end = pid.and_then(server_cpu_ns);
            self.measure_until = now;
        }
        self.started && !self.ended
    }

    fn secs(&self) -> f64 {
        (self.measure_until - self.measure_from).as_secs_f64()
    }

    fn cpu_ns(&self) -> Option<u64> {
        Some(self.cpu_end? - self.cpu_start?)
    }
}

fn percentile_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn echo(load: &mut Load) -> String {
    let n = load.args.conns;
    if !load.open_all(n) {
        return fail(load, "could not open every connection");
    }
    let payload = vec![0x5au8; load.args.size];
    let frame = if load.args.raw {
        payload.clone()
    } else {
        client_frame(2, &payload)
    };
    let now = Instant::now();
    for c in &mut load.conns {
        for _ in 0..load.args.inflight {
            c.out.extend_from_slice(&frame);
            c.sent.push_back(now);
        }
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut window = Window::new(load.args.warmup, load.args.secs);
    let mut events = Events::with_capacity(4096);
    let mut dirty = vec![false; n];
    for (i, d) in dirty.iter_mut().enumerate() {
        *d = true;
        load.flush(i);
    }
    while !window.ended {
        let Some((now, measuring)) = load.step(&mut events, &mut window) else {
            break;
        };
        for ev in events.iter() {
            let i = ev.token().0;
            if load.conns[i].state != State::Open {
                continue;
            }
            if ev.is_readable() && load.fill(i) {
                let size = load.args.size;
                let raw = load.args.raw;
                let c = &mut load.conns[i];
                let mut at = 0;
                loop {
                    let got = if raw {
                        (c.inbuf.len() - at >= size).then_some(size)
                    } else {
                        match server_frame(&c.inbuf[at..]) {
                            Some((_, payload, len)) if payload.len() == size => Some(len),
                            Some(_) => {
                                load.errors.add("unexpected frame");
                                Some(usize::MAX)
                            }
                            None => None,
                        }
                    };
                    let Some(len) = got else { break };
                    if len == usize::MAX {
                        c.state = State::Dead;
                        break;
                    }
                    at += len;
                    let sent = c.sent.pop_front().unwrap_or(now);
                    if measuring {
                        count += 1;
                        bytes += size as u64;
                        let _ = hist.record((now - sent).as_nanos().max(1) as u64);
                    }
                    c.out.extend_from_slice(&frame);
                    c.sent.push_back(now);
                }
                c.inbuf.drain(..at);
                dirty[i] = true;
            }
            if ev.is_writable() {
                dirty[i] = true;
            }
        }
        for (i, d) in dirty.iter_mut().enumerate() {
            if std::mem::take(d) && load.conns[i].state == State::Open {
                load.flush(i);
            }
        }
    }
    let secs = window.secs();
    let cpu = window.cpu_ns();
    format!(
        "{{\"scenario\":\"echo\",\"conns\":{n},\"inflight\":{},\"size\":{},\"raw\":{},\"secs\":{secs:.3},\"messages\":{count},\
         \"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.2},\"rtt_p50_us\":{:.1},\"rtt_p99_us\":{:.1},\"rtt_p999_us\":{:.1},\
         \"server_cpu_us_per_msg\":{},\"errors\":{}}}",
        load.args.inflight,
        load.args.size,
        load.args.raw,
        count as f64 / secs,
        bytes as f64 / secs / 1e6,
        percentile_us(&hist, 0.5),
        percentile_us(&hist, 0.99),
        percentile_us(&hist, 0.999),
        cpu.filter(|_| count > 0).map_or("null".into(), |c| format!("{:.4}", c as f64 / 1000.0 / count as f64)),
        load.errors.total()
    )
}

/// What subscribers received (fan-out scenarios): deliveries in the measured window,
/// their latencies, and gaps and reorderings in each subscriber's sequence numbers.
struct Received {
    hist: Histogram<u64>,
    deliveries: u64,
    drops: u64,
    reordered: u64,
}

impl Received {
    fn new() -> Received {
        Received {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
            deliveries: 0,
            drops: 0,
            reordered: 0,
        }
    }

    /// Takes the complete frames out of subscriber `c`'s input and accounts for them;
    /// returns how many there were.
    fn take(&mut self, c: &mut Conn, measuring: bool, now_ns: u64) -> u64 {
        let (mut at, mut got) = (0, 0);
        while let Some((_, range, len)) = server_frame(&c.inbuf[at..]) {
            let p = &c.inbuf[at + range.start..at + range.end];
            at += len;
            got += 1;
            let seq = u64::from_le_bytes(p[..8].try_into().unwrap_or_default());
            let sent_ns = u64::from_le_bytes(p[8..16].try_into().unwrap_or_default());
            if seq > c.expect_seq {
                self.drops += seq - c.expect_seq;
            } else if seq < c.expect_seq {
                self.reordered += 1;
            }
            c.expect_seq = seq + 1;
            if measuring {
                self.deliveries += 1;
                let _ = self.hist.record(now_ns.saturating_sub(sent_ns).max(1));
            }
        }
        c.inbuf.drain(..at);
        got
    }

    /// At the end: whatever an open subscriber never received of `published` is lost.
    fn count_missing(&mut self, c: &Conn, published: u64) {
        if c.state == State::Open && c.expect_seq < published {
            self.drops += published - c.expect_seq;
        }
    }

    /// The JSON fields the fan-out scenarios share (`secs` measured, `cpu_ns` of the server).
    fn json(&self, secs: f64, cpu_ns: Option<u64>) -> String {
        format!(
            "\"deliveries\":{},\"deliveries_per_sec\":{:.0},\"latency_p50_us\":{:.1},\
             \"latency_p99_us\":{:.1},\"server_cpu_us_per_delivery\":{},\"drops\":{},\"reordered\":{}",
            self.deliveries,
            self.deliveries as f64 / secs,
            percentile_us(&self.hist, 0.5),
            percentile_us(&self.hist, 0.99),
            cpu_ns
                .filter(|_| self.deliveries > 0)
                .map_or("null".into(), |c| format!("{:.4}", c as f64 / 1000.0 / self.deliveries as f64)),
            self.drops,
            self.reordered,
        )
    }
}

/// Queues a binary message of `size` bytes starting with its sequence number `seq`
/// (then incremented) and its send time in ns since `epoch`.
fn queue_stamped(c: &mut Conn, seq: &mut u64, size: usize, epoch: Instant) {
    let mut payload = vec![0u8; size];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
    c.out.extend_from_slice(&client_frame(2, &payload));
    *seq += 1;
}

/// Drops the complete frames in `c`'s input; returns how many there were.
fn skip_frames(c: &mut Conn) -> u64 {
    let (mut at, mut got) = (0, 0);
    while let Some((_, _, len)) = server_frame(&c.inbuf[at..]) {
        at += len;
        got += 1;
    }
    c.inbuf.drain(..at);
    got
}

fn fanout(load: &mut Load) -> String {
    let subscribers = load.args.conns;
    if !load.open_all(subscribers + 1) {
        return fail(load, "could not open every connection");
    }
    std::thread::sleep(Duration::from_millis(200));
    let publisher = subscribers; // the last connection
    let size = load.args.size.max(16);
    let epoch = Instant::now();
    let mut next_seq = 0u64;
    let send = |c: &mut Conn, seq: &mut u64| queue_stamped(c, seq, size, epoch);
    for _ in 0..load.args.inflight {
        send(&mut load.conns[publisher], &mut next_seq);
    }
    load.flush(publisher);
    let mut received = Received::new();
    let mut window = Window::new(load.args.warmup, load.args.secs);
    let mut events = Events::with_capacity(4096);
    let mut publishing = true;
    let mut drain_until = None;
    while let Some((now, measuring)) = load.step(&mut events, &mut window) {
        if window.ended && publishing {
            publishing = false;
            drain_until = Some(now + Duration::from_secs(2));
        }
        if drain_until.is_some_and(|d| now > d) {
            break;
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for ev in events.iter() {
            let i = ev.token().0;
            if load.conns[i].state != State::Open || !ev.is_readable() || !load.fill(i) {
                continue;
            }
            // The publisher hears its own broadcast: that paces it.
            let publisher_got = if i == publisher {
                skip_frames(&mut load.conns[i])
            } else {
                received.take(&mut load.conns[i], measuring, now_ns);
                0
            };
            if publishing {
                for _ in 0..publisher_got {
                    send(&mut load.conns[publisher], &mut next_seq);
                }
            }
        }
        load.flush(publisher);
        if !publishing {
            let all_in = load.conns[..subscribers]
                .iter()
                .all(|c| c.expect_seq >= next_seq || c.state != State::Open);
            if all_in {
                break;
            }
        }
    }
    for c in &load.conns[..subscribers] {
        received.count_missing(c, next_seq);
    }
    format!(
        "{{\"scenario\":\"fanout\",\"subscribers\":{subscribers},\"inflight\":{},\"size\":{size},\"secs\":{:.3},\
         \"published\":{next_seq},{},\"errors\":{}}}",
        load.args.inflight,
        window.secs(),
        received.json(window.secs(), window.cpu_ns()),
        load.errors.total()
    )
}

fn join_topics(load: &mut Load, subscribers: usize, topics: usize) -> bool {
    let total = load.conns.len();
    for i in 0..total {
        let t = if i < subscribers {
            i % topics
        } else {
            i - subscribers
        };
        let join = format!("SOCKETFORWARDER-NEW:t{t}");
        load.conns[i]
            .out
            .extend_from_slice(&client_frame(1, join.as_bytes()));
        load.flush(i);
    }
    let mut acked = vec![false; total];
    let mut left = total;
    let mut events = Events::with_capacity(4096);
    let deadline = Instant::now() + Duration::from_secs(30);
    while left > 0 && Instant::now() < deadline {
        let _ = load.poll.poll(&mut events, Some(Duration::from_millis(10)));
        for ev in events.iter() {
            let i = ev.token().0;
            if acked[i] || !ev.is_readable() || !load.fill(i) {
                continue;
            }
            let c = &mut load.conns[i];
            if let Some((_, _, len)) = server_frame(&c.inbuf) {
                c.inbuf.drain(..len);
                acked[i] = true;
                left -= 1;
            }
        }
    }
    left == 0
}

fn topics(load: &mut Load) -> String {
    let topics = load.args.topics.max(1);
    let subscribers = load.args.conns.max(topics);
    if !load.open_all(subscribers + topics) {
        return fail(load, "could not open every connection");
    }
    if !join_topics(load, subscribers, topics) {
        return fail(load, "not every join was acknowledged (is ack_join on?)");
    }
    let publisher = |t: usize| subscribers + t;
    let size = load.args.size.max(16);
    let epoch = Instant::now();
    let mut next_seq = vec![0u64; topics];
    let send = |c: &mut Conn, seq: &mut u64| queue_stamped(c, seq, size, epoch);
    for (t, seq) in next_seq.iter_mut().enumerate() {
        for _ in 0..load.args.inflight {
            send(&mut load.conns[publisher(t)], seq);
        }
        load.flush(publisher(t));
    }
    let mut received = Received::new();
    let mut window = Window::new(load.args.warmup, load.args.secs);
    let mut events = Events::with_capacity(4096);
    let mut publishing = true;
    let mut drain_until = None;
    while let Some((now, measuring)) = load.step(&mut events, &mut window) {
        if window.ended && publishing {
            publishing = false;
            drain_until = Some(now + Duration::from_secs(2));
        }
        if drain_until.is_some_and(|d| now > d) {
            break;
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for ev in events.iter() {
            let i = ev.token().0;
            if i >= subscribers
                || load.conns[i].state != State::Open
                || !ev.is_readable()
                || !load.fill(i)
            {
                continue;
            }
            let got = received.take(&mut load.conns[i], measuring, now_ns);
            // The topic's first subscriber paces its publisher.
            if publishing && i < topics {
                for _ in 0..got {
                    send(&mut load.conns[publisher(i)], &mut next_seq[i]);
                }
                load.flush(publisher(i));
            }
        }
        if !publishing {
            let all_in = load.conns[..subscribers]
                .iter()
                .enumerate()
                .all(|(i, c)| c.expect_seq >= next_seq[i % topics] || c.state != State::Open);
            if all_in {
                break;
            }
        }
    }
    for (i, c) in load.conns[..subscribers].iter().enumerate() {
        received.count_missing(c, next_seq[i % topics]);
    }
    let published: u64 = next_seq.iter().sum();
    format!(
        "{{\"scenario\":\"topics\",\"topics\":{topics},\"subscribers\":{subscribers},\"inflight\":{},\"size\":{size},\
         \"secs\":{:.3},\"published\":{published},{},\"errors\":{}}}",
        load.args.inflight,
        window.secs(),
        received.json(window.secs(), window.cpu_ns()),
        load.errors.total()
    )
}

fn idle(load: &mut Load) -> String {
    let Some(pid) = load.args.server_pid else {
        return fail(load, "idle needs --server-pid");
    };
    // A first upgrade answered means the server is running (listening alone does not:
    // a server may bind before it has set up), so `before` counts none of its set-up.
    if !load.open_all(1) {
        return fail(load, "could not open a first connection");
    }
    let before = server_rss(pid).unwrap_or(0);
    let n = load.args.conns.saturating_sub(1);
    let opened = load.open_all(n);
    std::thread::sleep(Duration::from_secs(1));
    let after = server_rss(pid).unwrap_or(0);
    let open = load.conns[1..]
        .iter()
        .filter(|c| c.state == State::Open)
        .count();
    if !opened || open == 0 {
        return fail(load, "could not open every connection");
    }
    // Still open? A server that dropped idle clients would not count.
    let mut events = Events::with_capacity(1024);
    let _ = load.poll.poll(&mut events, Some(Duration::from_millis(10)));
    format!(
        "{{\"scenario\":\"idle\",\"conns\":{open},\"rss_before\":{before},\"rss_after\":{after},\
         \"rss_bytes_per_conn\":{:.1},\"errors\":{}}}",
        after.saturating_sub(before) as f64 / open as f64,
        load.errors.total()
    )
}

fn handshakes(load: &mut Load) -> String {
    let concurrency = load.args.conns;
    let mut window = Window::new(load.args.warmup, load.args.secs);
    let mut events = Events::with_capacity(4096);
    let mut live = 0usize;
    let mut done = 0u64;
    let mut started = 0usize;
    // Reuse slots: a finished connection's slot is replaced by a fresh one.
    let mut free: Vec<usize> = Vec::new();
    // When each slot's connection started (connect to 101: the handshake latency).
    let mut began: Vec<Instant> = Vec::new();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    while !window.ended {
        if Instant::now() > load.deadline {
            load.errors.add("timed out");
            break;
        }
        while live < concurrency {
            let src = src_ip(started, load.args.src_ips);
            started += 1;
            let Ok(mut stream) = connect(load.args.addr, src, true) else {
                load.errors.add("connect failed");
                break;
            };
            let slot = free.pop().unwrap_or(load.conns.len());
            if load
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                break;
            }
            let conn = Conn::new(stream);
            if slot == load.conns.len() {
                load.conns.push(conn);
                began.push(Instant::now());
            } else {
                load.conns[slot] = conn;
                began[slot] = Instant::now();
            }
            live += 1;
        }
        load.poll
            .poll(&mut events, Some(Duration::from_millis(10)))
            .expect("poll");
        let measuring = window.tick(Instant::now(), load.args.server_pid);
        for ev in events.iter() {
            let i = ev.token().0;
            if matches!(load.conns[i].state, State::Open | State::Dead) {
                continue;
            }
            load.progress_open(i);
            if matches!(load.conns[i].state, State::Open | State::Dead) {
                if load.conns[i].state == State::Open && measuring {
                    done += 1;
                    let _ = latency.record(began[i].elapsed().as_nanos() as u64);
                }
                let _ = load.poll.registry().deregister(&mut load.conns[i].stream);
                // Dropping with SO_LINGER 0 resets the connection: no TIME_WAIT pile-up.
                load.conns[i].state = State::Dead;
                let placeholder = connect_placeholder();
                drop(std::mem::replace(&mut load.conns[i].stream, placeholder));
                free.push(i);
                live -= 1;
            }
        }
    }
    let secs = window.secs();
    format!(
        "{{\"scenario\":\"handshakes\",\"concurrency\":{concurrency},\"secs\":{secs:.3},\"upgrades\":{done},\
         \"upgrades_per_sec\":{:.0},\"upgrade_p50_us\":{:.1},\"upgrade_p99_us\":{:.1},\
         \"server_cpu_us_per_upgrade\":{},\"errors\":{}}}",
        done as f64 / secs,
        percentile_us(&latency, 0.5),
        percentile_us(&latency, 0.99),
        window.cpu_ns().filter(|_| done > 0).map_or("null".into(), |c| format!("{:.3}", c as f64 / 1000.0 / done as f64)),
        load.errors.total()
    )
}

/// A stream to put in a finished slot (an unconnected socket; never polled).
fn connect_placeholder() -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM.nonblocking(),
        None,
    )
    .expect("socket");
    TcpStream::from_std(socket.into())
}

fn fail(load: &Load, why: &str) -> String {
    format!(
        "{{\"scenario\":\"{:?}\",\"failed\":\"{why}\",\"errors\":{}}}",
        load.args.scenario,
        load.errors.total()
    )
}

fn main() {
    let args = Args::parse();
    raise_fd_limit();
    let mut load = Load::new(args);
    let result = match load.args.scenario {
        Scenario::Echo => echo(&mut load),
        Scenario::Fanout => fanout(&mut load),
        Scenario::Topics => topics(&mut load),
        Scenario::Idle => idle(&mut load),
        Scenario::Handshakes => handshakes(&mut load),
        Scenario::Push => push::push(&mut load),
    };
    println!("{result}");
    eprintln!("rs-loadgen: {}", load.errors.summary());
    if result.contains("\"failed\"") {
        std::process::exit(1);
    }
}
