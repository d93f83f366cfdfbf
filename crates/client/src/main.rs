//! `ringsocket-client`: a WebSocket client for debugging and scripts. Each line of
//! standard input becomes a message; each message received goes to standard output,
//! one per line. It exits when the server closes (with a status that says how), when
//! `--count` messages have arrived, or after standard input ends and the close
//! handshake is done.

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

const AFTER_HELP: &str = "\
OUTPUT
    Text messages are written as they are, each followed by a newline; binary messages
    as their bytes, each followed by a newline (or, with --hex, as hex). Diagnostics and
    the close code go to standard error.

EXIT STATUS
    0  the connection closed normally (1000 or 1001 from the server, or our own close
       after standard input ended, or --count messages arrived)
    1  the server closed with another code (printed as `closed: CODE REASON`)
    2  the command line is wrong
    3  the connection could not be made or broke (refused, TLS, handshake, reset)

EXAMPLES
    echo hello | ringsocket-client ws://127.0.0.1:8080/echo
    ringsocket-client ws://127.0.0.1:8080/broadcast --count 10
    ringsocket-client wss://example.com/chat --ca ca.pem -H 'Cookie: session=abc'
    ringsocket-client ws://127.0.0.1:8080/groups --subprotocol v1 --ping 20";

/// A WebSocket client for debugging and scripts: standard input lines become text (or
/// binary) messages, received messages are written to standard output.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = AFTER_HELP)]
struct Args {
    /// `ws://HOST:PORT/PATH` or `wss://…`.
    url: String,
    /// Send each input line as a binary message (without its newline).
    #[arg(long)]
    binary: bool,
    /// Write received binary messages as hex.
    #[arg(long)]
    hex: bool,
    /// Ask for this subprotocol (repeat for more, in order of preference).
    #[arg(long, value_name = "NAME")]
    subprotocol: Vec<String>,
    /// An extra request header, `Name: value` (repeat for more).
    #[arg(long, short = 'H', value_name = "HEADER")]
    header: Vec<String>,
    /// Trust the CA certificates in this PEM file for wss:// (instead of the system's).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Do not check the server's certificate at all (debugging only).
    #[arg(long)]
    insecure: bool,
    /// Send a ping every this many seconds (pongs are reported on standard error).
    #[arg(long, value_name = "SECS")]
    ping: Option<f64>,
    /// Exit (closing with 1000) once this many messages have arrived.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Do not read standard input; only receive.
    #[arg(long)]
    no_input: bool,
}

/// The connection closed normally.
const EXIT_OK: u8 = 0;
/// The server closed with a code other than 1000/1001.
const EXIT_CLOSED: u8 = 1;
/// The connection could not be made, or broke.
const EXIT_BROKEN: u8 = 3;

/// Plain TCP or TLS under the WebSocket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ringsocket-client: {e}");
            ExitCode::from(EXIT_BROKEN)
        }
    }
}

/// Connects, upgrades, then relays until the end; returns the exit status.
fn run(args: &Args) -> Result<u8, String> {
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{}: {e}", args.url))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => {
            return Err(format!(
                "{}: the URL must start with ws:// or wss://",
                args.url
            ))
        }
    };
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    for h in &args.header {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H '{h}': expected 'Name: value'"))?;
        let name: tungstenite::http::HeaderName =
            name.trim().parse().map_err(|e| format!("-H '{h}': {e}"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| format!("-H '{h}': {e}"))?;
        request.headers_mut().append(name, value);
    }
    if !args.subprotocol.is_empty() {
        let value = HeaderValue::from_str(&args.subprotocol.join(", "))
            .map_err(|e| format!("--subprotocol: {e}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let tcp = TcpStream::connect((host.as_str(), port))
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        let config = tls_config(args)?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS: {e}"))?;
        Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        Stream::Plain(tcp)
    };
    let (mut ws, response) = tungstenite::client::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => format!(
            "the server refused the upgrade: {} {}",
            r.status(),
            r.body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .trim()
        ),
        other => format!("handshake: {other}"),
    })?;
    if let Some(p) = response.headers().get("Sec-WebSocket-Protocol") {
        eprintln!(
            "ringsocket-client: subprotocol {}",
            p.to_str().unwrap_or("?")
        );
    }
    // Short read timeouts let one thread both receive and send.
    ws.get_ref()
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    let input = if args.no_input {
        None
    } else {
        Some(stdin_lines())
    };
    relay(args, &mut ws, input)
}

/// Standard input, line by line, from a thread of its own (`None` at its end).
fn stdin_lines() -> Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Moves messages both ways until the connection ends.
fn relay(
    args: &Args,
    ws: &mut WebSocket<Stream>,
    input: Option<Receiver<Option<Vec<u8>>>>,
) -> Result<u8, String> {
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    let mut closing = false;
    let mut input = input;
    let ping_every = args.ping.map(Duration::from_secs_f64);
    let mut next_ping = ping_every.map(|d| Instant::now() + d);
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                received += 1;
                let _ = writeln!(stdout, "{}", t.as_str());
            }
            Ok(Message::Binary(b)) => {
                received += 1;
                if args.hex {
                    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    let _ = writeln!(stdout, "{hex}");
                } else {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.write_all(b"\n");
                }
            }
            Ok(Message::Pong(p)) => {
                eprintln!("ringsocket-client: pong ({} bytes)", p.len());
            }
            Ok(Message::Close(frame)) => {
                let _ = stdout.flush();
                // tungstenite answers the close; let it finish.
                while ws.read().is_ok() {}
                return Ok(close_status(frame.as_ref(), closing));
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(EXIT_OK),
            Err(e) => {
                let _ = stdout.flush();
                return Err(format!("connection lost: {e}"));
            }
        }
        let _ = stdout.flush();
        if args.count.is_some_and(|n| received >= n) && !closing {
            closing = true;
            start_close(ws)?;
        }
        if let (Some(at), Some(every)) = (next_ping, ping_every) {
            if Instant::now() >= at && !closing {
                ws.send(Message::Ping(Vec::new().into()))
                    .map_err(|e| format!("ping: {e}"))?;
                next_ping = Some(at + every);
            }
        }
        if let Some(rx) = &input {
            loop {
                match rx.try_recv() {
                    Ok(Some(line)) if !closing => {
                        let msg = if args.binary {
                            Message::binary(line)
                        } else {
                            match String::from_utf8(line) {
                                Ok(text) => Message::text(text),
                                Err(_) => {
                                    eprintln!("ringsocket-client: skipping a line that is not UTF-8 (use --binary)");
                                    continue;
                                }
                            }
                        };
                        ws.send(msg).map_err(|e| format!("send: {e}"))?;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(TryRecvError::Disconnected) => {
                        input = None;
                        if !closing {
                            closing = true;
                            start_close(ws)?;
                        }
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
        }
    }
}

fn start_close(ws: &mut WebSocket<Stream>) -> Result<(), String> {
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .map_err(|e| format!("close: {e}"))
}

/// The exit status for the server's close frame (`we_closed`: it answers ours).
fn close_status(frame: Option<&CloseFrame>, we_closed: bool) -> u8 {
    let Some(frame) = frame else {
        eprintln!("closed: no code");
        return if we_closed { EXIT_OK } else { EXIT_CLOSED };
    };
    let code = u16::from(frame.code);
    eprintln!("closed: {code} {}", frame.reason.as_str());
    if we_closed || code == 1000 || code == 1001 {
        EXIT_OK
    } else {
        EXIT_CLOSED
    }
}

/// The TLS client configuration: `--ca`, `--insecure`, or the system's CA bundle.
fn tls_config(args: &Args) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    if args.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let bundle = args
        .ca
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", bundle.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", bundle.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificates", bundle.display()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `--insecure`: accepts any certificate (signatures are still checked, so the
/// handshake itself is sound; only who the server is goes unverified).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
