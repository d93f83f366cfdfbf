//! The HTTP/1.1 upgrade request (RFC 6455 §4.2) and the server's responses to it.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The most headers a request may carry before it is refused with 431.
pub const MAX_HEADERS: usize = 48;
/// The most `Sec-WebSocket-Protocol` headers that are looked at.
const MAX_PROTOCOL_HEADERS: usize = 8;
/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused; [`HandshakeError::status`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request line or a header is not valid HTTP/1.1.
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// The method is not GET.
    #[error("method is not GET")]
    MethodNotAllowed,
    /// The request is not HTTP/1.1.
    #[error("HTTP version is not 1.1")]
    WrongHttpVersion,
    /// A header the upgrade needs is absent or wrong; the name says which.
    #[error("missing or invalid {0} header")]
    BadHeader(&'static str),
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The header section is larger than the configured limit or has too many headers.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// No endpoint is configured at the requested path.
    #[error("no endpoint at this path")]
    NotFound,
    /// The `Origin` header is not in the endpoint's allow-list.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The server has no room for another connection.
    #[error("server is at its connection limit")]
    Unavailable,
    /// A plain HTTP request's body has no `Content-Length` (chunked bodies are not read).
    #[error("a request body needs a Content-Length")]
    LengthRequired,
    /// A plain HTTP request's body is larger than the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// An `Expect` header other than `100-continue`.
    #[error("unsupported Expect header")]
    ExpectationFailed,
    /// The app did not decide an upgrade in time.
    #[error("the app did not answer in time")]
    AppTimeout,
    /// The app did not answer a plain HTTP request in time.
    #[error("the app did not answer in time")]
    GatewayTimeout,
}

impl HandshakeError {
    /// The HTTP status code and reason phrase to answer with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HandshakeError::Malformed(_)
            | HandshakeError::WrongHttpVersion
            | HandshakeError::BadHeader(_) => (400, "Bad Request"),
            HandshakeError::MethodNotAllowed => (405, "Method Not Allowed"),
            HandshakeError::UnsupportedVersion => (426, "Upgrade Required"),
            HandshakeError::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            HandshakeError::NotFound => (404, "Not Found"),
            HandshakeError::OriginNotAllowed => (403, "Forbidden"),
            HandshakeError::Unavailable | HandshakeError::AppTimeout => {
                (503, "Service Unavailable")
            }
            HandshakeError::LengthRequired => (411, "Length Required"),
            HandshakeError::PayloadTooLarge => (413, "Content Too Large"),
            HandshakeError::ExpectationFailed => (417, "Expectation Failed"),
            HandshakeError::GatewayTimeout => (504, "Gateway Timeout"),
        }
    }

    /// Whether the request was not a WebSocket upgrade at all (rather than a broken
    /// one): an endpoint whose app answers plain HTTP takes it.
    pub fn is_plain_http(&self) -> bool {
        matches!(
            self,
            HandshakeError::MethodNotAllowed
                | HandshakeError::WrongHttpVersion
                | HandshakeError::BadHeader("Upgrade")
        )
    }

    /// Writes the complete HTTP error response (status line, headers and a one-line
    /// plain-text body) to `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let (code, reason) = self.status();
        let body = format!("{self}\n");
        let extra = match self {
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            HandshakeError::MethodNotAllowed => "Allow: GET\r\n",
            _ => "",
        };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

/// A syntactically valid WebSocket upgrade request, borrowing from the read buffer.
#[derive(Debug, Clone)]
pub struct UpgradeRequest<'a> {
    /// The request path, without query string.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The `Host` header.
    pub host: &'a str,
    /// The `Origin` header, if sent.
    pub origin: Option<&'a str>,
    /// The validated `Sec-WebSocket-Key`.
    pub key: &'a str,
    protocol_headers: [Option<&'a str>; MAX_PROTOCOL_HEADERS],
}

impl<'a> UpgradeRequest<'a> {
    /// The subprotocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.protocol_headers
            .iter()
            .flatten()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// Picks the first protocol the client offered that `supported` contains.
    pub fn select_protocol<'s, S: AsRef<str>>(&self, supported: &'s [S]) -> Option<&'s str> {
        self.offered_protocols()
            .find_map(|offered| supported.iter().map(AsRef::as_ref).find(|s| *s == offered))
    }
}

/// The head of an upgrade request that [`parse_request`] accepted, kept as bytes and
/// read again on demand (an app asks for a header once per connection, if at all).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a>(pub &'a [u8]);

impl<'a> RequestHead<'a> {
    fn lines(self) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
    }

    /// The request target as sent (path and query; an absolute-form target whole).
    pub fn target(self) -> &'a str {
        let line = self.lines().next().unwrap_or_default();
        let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let target = parts.nth(1).unwrap_or_default();
        std::str::from_utf8(target).unwrap_or_default()
    }

    /// The target's query string (after `?`, before any `#`), if it has one.
    pub fn query(self) -> Option<&'a str> {
        let target = self.target();
        let target = target.split('#').next().unwrap_or(target);
        target.split_once('?').map(|(_, q)| q)
    }

    /// Every header as (name, value), the value trimmed, in the order sent.
    pub fn headers(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.lines().skip(1).filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (name, value) = line.split_once(':')?;
            Some((name, value.trim()))
        })
    }

    /// The value of the first header called `name` (ignoring ASCII case).
    pub fn header(self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Whether the comma-separated header `value` contains `token`, ignoring ASCII case.
pub(crate) fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parses an upgrade request from the start of `buf`.
///
/// Returns `Ok(None)` while the header section is incomplete, else the request and the
/// length of its header section (bytes after it belong to the WebSocket stream).
///
/// # Errors
/// A [`HandshakeError`] for anything that makes the request unacceptable, regardless
/// of routing ([`HandshakeError::NotFound`] and [`HandshakeError::OriginNotAllowed`] are
/// the caller's to decide).
pub fn parse_request(buf: &[u8]) -> Result<Option<(UpgradeRequest<'_>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HandshakeError::WrongHttpVersion),
        Err(_) => return Err(HandshakeError::Malformed("invalid request line or header")),
    };
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::WrongHttpVersion);
    }
    let target = req
        .path
        .ok_or(HandshakeError::Malformed("no request target"))?;
    let (path, query) = split_target(target)?;

    let (mut host, mut origin, mut key, mut version) = (None, None, None, None);
    let (mut upgrade, mut connection) = (false, false);
    let mut protocol_headers = [None; MAX_PROTOCOL_HEADERS];
    let mut protocol_count = 0;
    for header in req.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HandshakeError::Malformed("header value is not UTF-8"))?;
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            if host.replace(value).is_some() {
                return Err(HandshakeError::BadHeader("Host"));
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            if key.replace(value).is_some() {
                return Err(HandshakeError::BadHeader("Sec-WebSocket-Key"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if protocol_count == MAX_PROTOCOL_HEADERS {
                return Err(HandshakeError::BadHeader("Sec-WebSocket-Protocol"));
            }
            protocol_headers[protocol_count] = Some(value);
            protocol_count += 1;
        }
    }
    let host = host
        .filter(|h| !h.trim().is_empty())
        .ok_or(HandshakeError::BadHeader("Host"))?;
    if !upgrade {
        return Err(HandshakeError::BadHeader("Upgrade"));
    }
    if !connection {
        return Err(HandshakeError::BadHeader("Connection"));
    }
    let key = key
        .map(str::trim)
        .filter(|k| is_valid_key(k))
        .ok_or(HandshakeError::BadHeader("Sec-WebSocket-Key"))?;
    match version.map(str::trim) {
        Some("13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
        None => return Err(HandshakeError::BadHeader("Sec-WebSocket-Version")),
    }
    Ok(Some((
        UpgradeRequest {
            path,
            query,
            host,
            origin,
            key,
            protocol_headers,
        },
        len,
    )))
}

/// Splits an origin-form (`/a?b`) or absolute-form (`ws://h/a?b`) target into path and query.
pub(crate) fn split_target(target: &str) -> Result<(&str, Option<&str>), HandshakeError> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let rest = ["ws://", "wss://", "http://", "https://"]
            .iter()
            .find_map(|scheme| target.strip_prefix(scheme))
            .ok_or(HandshakeError::Malformed(
                "request target is neither a path nor an absolute URL",
            ))?;
        rest.find('/').map_or("/", |i| &rest[i..])
    };
    let path_and_query = path_and_query.split('#').next().unwrap_or(path_and_query);
    Ok(match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    })
}

/// Whether `key` is base64 of exactly 16 bytes (§4.2.1 item 5).
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

/// Computes `Sec-WebSocket-Accept` for a client key (§4.2.2 item 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Writes the `101 Switching Protocols` response to `out`.
pub fn write_accept_response(key: &str, protocol: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn request_head_gives_target_query_and_headers() {
        let head = RequestHead(GOOD.as_bytes());
        assert_eq!(head.target(), "/chat?x=1");
        assert_eq!(head.query(), Some("x=1"));
        assert_eq!(head.header("ORIGIN"), Some("http://example.com"));
        assert_eq!(head.header("cookie"), None);
        assert_eq!(head.headers().count(), 7);
        let bare = RequestHead(b"GET /a HTTP/1.1\r\nCookie:  s=1; t=2 \r\n\r\n");
        assert_eq!((bare.target(), bare.query()), ("/a", None));
        assert_eq!(bare.header("Cookie"), Some("s=1; t=2"));
    }

    #[test]
    fn rfc_example() {
        let (req, len) = parse_request(GOOD.as_bytes()).unwrap().unwrap();
        assert_eq!(len, GOOD.len());
        assert_eq!(
            (req.path, req.query, req.host),
            ("/chat", Some("x=1"), "example.com")
        );
        assert_eq!(req.origin, Some("http://example.com"));
        assert_eq!(accept_key(req.key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            req.offered_protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(req.select_protocol(&["superchat", "chat"]), Some("chat"));
        assert_eq!(req.select_protocol(&["other"]), None);
    }

    #[test]
    fn partial_until_blank_line() {
        for len in 0..GOOD.len() {
            assert!(
                matches!(parse_request(&GOOD.as_bytes()[..len]), Ok(None)),
                "{len}"
            );
        }
    }

    fn with(from: &str, to: &str) -> Result<(), HandshakeError> {
        parse_request(GOOD.replace(from, to).as_bytes()).map(|_| ())
    }

    #[test]
    fn each_rule_has_its_status() {
        assert_eq!(with("GET", "POST").unwrap_err().status().0, 405);
        assert_eq!(
            with("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost")
                .unwrap_err()
                .status()
                .0,
            400
        );
        assert_eq!(
            with("Host: example.com\r\n", ""),
            Err(HandshakeError::BadHeader("Host"))
        );
        assert_eq!(
            with("Upgrade: WebSocket", "Upgrade: h2c"),
            Err(HandshakeError::BadHeader("Upgrade"))
        );
        assert_eq!(
            with("keep-alive, Upgrade", "close"),
            Err(HandshakeError::BadHeader("Connection"))
        );
        assert_eq!(
            with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
            Err(HandshakeError::BadHeader("Sec-WebSocket-Key"))
        );
        assert_eq!(
            with("Version: 13", "Version: 8").unwrap_err().status().0,
            426
        );
        assert_eq!(with("GET /chat", "GET chat").unwrap_err().status().0, 400);
        let many = "X-A: b\r\n".repeat(MAX_HEADERS);
        assert_eq!(
            with("Host:", &format!("{many}Host:"))
                .unwrap_err()
                .status()
                .0,
            431
        );
    }

    #[test]
    fn absolute_form_target() {
        let absolute = GOOD.replace("GET /chat?x=1", "GET ws://example.com/chat");
        let (req, _) = parse_request(absolute.as_bytes()).unwrap().unwrap();
        assert_eq!(req.path, "/chat");
    }

    #[test]
    fn error_responses_are_complete() {
        let mut out = Vec::new();
        HandshakeError::UnsupportedVersion.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes, and mutations of a valid request, never panic the parser.
        #[test]
        fn arbitrary_requests_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400),
                                          at in 0usize..300, byte in any::<u8>()) {
            let _ = parse_request(&data);
            let mut good = tests_good().into_bytes();
            let at = at.min(good.len() - 1);
            good[at] = byte;
            if let Ok(Some((req, _))) = parse_request(&good) {
                let _ = req.select_protocol(&["chat"]);
                let mut out = Vec::new();
                write_accept_response(req.key, None, &mut out);
            }
        }
    }

    fn tests_good() -> String {
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
            .to_string()
    }
}
