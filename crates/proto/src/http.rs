//! Plain HTTP/1.1 requests (not upgrades) that an app answers, and the responses to
//! them and to upgrade requests an app refuses.
//!
//! The server owns the framing: it reads a body only by `Content-Length` (up to a
//! limit), and writes `Content-Length` and `Connection` itself, so that no app can
//! break the connection's message boundaries.

use crate::handshake::{has_token, split_target, HandshakeError, MAX_HEADERS};

/// A complete plain request's head, borrowing from the read buffer.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// The method, as sent (`GET`, `POST`, …).
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// Bytes of the head (request line and headers, up to the blank line).
    pub head_len: usize,
    /// Bytes of the body that follows (its `Content-Length`).
    pub body_len: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending its body.
    pub expects_continue: bool,
    /// A `HEAD` request: the response has no body.
    pub head_only: bool,
}

impl HttpRequest<'_> {
    /// Head and body together.
    pub fn total_len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// Parses a plain HTTP/1.0 or 1.1 request head from the start of `buf`; `Ok(None)`
/// while it is incomplete. A body over `max_body` bytes is refused up front.
///
/// # Errors
/// A [`HandshakeError`] with the status to answer: a malformed head (400), a body
/// without a length (411) or too large (413), an unknown `Expect` (417).
pub fn parse_http_request(
    buf: &[u8],
    max_body: usize,
) -> Result<Option<HttpRequest<'_>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HandshakeError::WrongHttpVersion),
        Err(_) => return Err(HandshakeError::Malformed("invalid request line or header")),
    };
    let method = req.method.ok_or(HandshakeError::Malformed("no method"))?;
    let target = req
        .path
        .ok_or(HandshakeError::Malformed("no request target"))?;
    let (path, query) = split_target(target)?;
    let http11 = req.version == Some(1);
    let (mut length, mut close, mut keep_alive_asked) = (None, false, false);
    let mut expects_continue = false;
    for header in req.headers.iter() {
        let name = header.name;
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HandshakeError::Malformed("header value is not UTF-8"))?;
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| HandshakeError::BadHeader("Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HandshakeError::BadHeader("Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HandshakeError::LengthRequired);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has_token(value, "close");
            keep_alive_asked |= has_token(value, "keep-alive");
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.trim().eq_ignore_ascii_case("100-continue") {
                return Err(HandshakeError::ExpectationFailed);
            }
            expects_continue = true;
        }
    }
    let body_len = length.unwrap_or(0);
    if body_len > max_body {
        return Err(HandshakeError::PayloadTooLarge);
    }
    Ok(Some(HttpRequest {
        method,
        path,
        query,
        head_len,
        body_len,
        keep_alive: !close && (http11 || keep_alive_asked),
        expects_continue: expects_continue && http11 && body_len > 0,
        head_only: method == "HEAD",
    }))
}

/// The interim response a client that sent `Expect: 100-continue` waits for.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response an app gives: status, its own header lines, and the body.
#[derive(Debug, Clone, Copy)]
pub struct HttpResponse<'a> {
    /// The status code (100–999; 1xx and 101 are not the app's to send).
    pub status: u16,
    /// Header lines, each ending in CRLF (checked with [`check_headers`]).
    pub headers: &'a [u8],
    /// The body.
    pub body: &'a [u8],
}

impl HttpResponse<'_> {
    /// Writes the whole response to `out`: the status line, `Content-Length`,
    /// `Connection: close` if `close`, the app's headers, and the body unless
    /// `head_only`.
    pub fn write(&self, close: bool, head_only: bool, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n{}",
            self.status,
            reason_phrase(self.status),
            self.body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        out.extend_from_slice(self.headers);
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(self.body);
        }
    }
}

/// Why an app's response headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A line is not `Name: value` with a token name and no control characters.
    #[error("header line {0} is not `Name: value`")]
    Malformed(usize),
    /// A header the server writes itself (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`, `Upgrade`).
    #[error("header {0} is the server's to write")]
    Reserved(String),
}

/// Checks an app's header lines (`Name: value`, separated and optionally ended by
/// CRLF) and returns them normalised to end in CRLF.
///
/// # Errors
/// [`HeaderError`] for a malformed line or a header the server owns.
pub fn check_headers(headers: &[u8]) -> Result<Vec<u8>, HeaderError> {
    let mut out = Vec::with_capacity(headers.len() + 2);
    let text = headers.strip_suffix(b"\r\n").unwrap_or(headers);
    if text.is_empty() {
        return Ok(out);
    }
    for (i, line) in split_crlf(text).enumerate() {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeaderError::Malformed(i + 1))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name.is_empty() || !name.iter().all(token) {
            return Err(HeaderError::Malformed(i + 1));
        }
        // Control characters include a stray CR or LF: one line may not smuggle two.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeaderError::Malformed(i + 1));
        }
        let name = std::str::from_utf8(name).expect("token characters are ASCII");
        if [
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
        ]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
        {
            return Err(HeaderError::Reserved(name.to_string()));
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The lines of `text` separated by CRLF.
fn split_crlf(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.windows(2).position(|w| w == b"\r\n") {
            Some(at) => {
                rest = Some(&t[at + 2..]);
                Some(&t[..at])
            }
            None => rest.take(),
        }
    })
}

/// The reason phrase of a status code (RFC 9110's, or a generic one).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_with_a_body_and_keep_alive() {
        let req =
            b"POST /send?user=1&type=text HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nHello";
        let r = parse_http_request(req, 100).unwrap().unwrap();
        assert_eq!(
            (r.method, r.path, r.query),
            ("POST", "/send", Some("user=1&type=text"))
        );
        assert_eq!((r.head_len + r.body_len, r.keep_alive), (req.len(), true));
        assert!(!r.expects_continue && !r.head_only);
        let partial = &req[..20];
        assert!(parse_http_request(partial, 100).unwrap().is_none());
    }

    #[test]
    fn connection_rules_of_1_0_and_1_1() {
        let close = parse_http_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0);
        assert!(!close.unwrap().unwrap().keep_alive);
        let old = parse_http_request(b"GET / HTTP/1.0\r\n\r\n", 0)
            .unwrap()
            .unwrap();
        assert!(!old.keep_alive);
        let old_ka = parse_http_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0);
        assert!(old_ka.unwrap().unwrap().keep_alive);
    }

    #[test]
    fn bodies_the_server_refuses() {
        let big = b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            parse_http_request(big, 100).unwrap_err(),
            HandshakeError::PayloadTooLarge
        );
        assert_eq!(parse_http_request(big, 100).unwrap_err().status().0, 413);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse_http_request(chunked, 100).unwrap_err().status().0,
            411
        );
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse_http_request(two, 100).unwrap_err().status().0, 400);
        let expect = b"POST / HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(parse_http_request(expect, 100).unwrap_err().status().0, 417);
        let cont = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        assert!(
            parse_http_request(cont, 100)
                .unwrap()
                .unwrap()
                .expects_continue
        );
    }

    #[test]
    fn responses_carry_the_servers_framing() {
        let mut out = Vec::new();
        let r = HttpResponse {
            status: 200,
            headers: b"Content-Type: text/plain\r\n",
            body: b"pong",
        };
        r.write(false, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\npong"
        );
        out.clear();
        r.write(true, true, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n"
        );
    }

    #[test]
    fn app_headers_are_checked() {
        assert_eq!(check_headers(b"").unwrap(), b"");
        assert_eq!(check_headers(b"A: 1").unwrap(), b"A: 1\r\n");
        assert_eq!(
            check_headers(b"A: 1\r\nB-c: x y\r\n").unwrap(),
            b"A: 1\r\nB-c: x y\r\n"
        );
        assert_eq!(check_headers(b"A: 1\nB: 2"), Err(HeaderError::Malformed(1)));
        assert_eq!(check_headers(b"A 1"), Err(HeaderError::Malformed(1)));
        assert_eq!(
            check_headers(b"A: 1\r\nX: \x01"),
            Err(HeaderError::Malformed(2))
        );
        assert!(matches!(
            check_headers(b"content-length: 5"),
            Err(HeaderError::Reserved(_))
        ));
        assert!(matches!(
            check_headers(b"A: 1\r\nConnection: x"),
            Err(HeaderError::Reserved(_))
        ));
    }
}
