//! A test-only plugin that decides upgrades and answers plain HTTP requests (ABI v4).
//!
//! Upgrades, by the `token` query parameter:
//!
//! | token | answer |
//! |---|---|
//! | `good` | accepted at once, attaching 42 |
//! | `later` | accepted 20 ms later from the timer callback, attaching 7 |
//! | `never` | no answer (the server's `app_answer_timeout` answers 503) |
//! | `fail` | the callback fails (the server answers 500) |
//! | anything else | refused: 401 with a JSON body and `WWW-Authenticate` |
//!
//! An accepted client gets `open data=DATA id=ID`, then its messages echoed.
//!
//! Plain requests, by path:
//!
//! | path | answer |
//! |---|---|
//! | `/api/echo` | 200, JSON `{"method","path","query","body","x_test"}` |
//! | `/api/later` | 202 `later`, 20 ms later from the timer callback |
//! | `/api/never` | no answer (504 from the server) |
//! | `/api/fail` | the callback fails (500 from the server) |
//! | `/api/reserved` | tries a `Content-Length` header, is refused, answers 400 with the error |
//! | `/api/big?n=N` | 200 with N bytes |
//! | anything else | 404 |

use ringsocket_sdk::{App, ClientId, Context, Error, Message, OpenInfo, Request};
use std::time::Duration;

/// The gate's state: requests to answer from the timer callback.
pub struct Gate {
    /// Upgrades to accept later.
    accept_later: Vec<ClientId>,
    /// Plain requests to answer later.
    answer_later: Vec<ClientId>,
}

impl App for Gate {
    const DECIDES_UPGRADES: bool = true;
    const SERVES_HTTP: bool = true;

    fn init(_settings: &str) -> Result<Self, String> {
        Ok(Gate {
            accept_later: Vec::new(),
            answer_later: Vec::new(),
        })
    }

    fn upgrade(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        match req.query_param("token").as_deref() {
            Some("good") => ctx.accept(req.id, 42),
            Some("later") => {
                self.accept_later.push(req.id);
                ctx.set_timer(Duration::from_millis(20));
                Ok(())
            }
            Some("never") => Ok(()),
            Some("fail") => Err(Error::App("refusing to decide".into())),
            _ => ctx.respond(
                req.id,
                401,
                "Content-Type: application/json\r\nWWW-Authenticate: Bearer",
                br#"{"error":"bad token"}"#,
            ),
        }
    }

    fn http(&mut self, ctx: &mut Context<'_>, req: &Request<'_>) -> Result<(), Error> {
        match req.path {
            "/api/echo" => {
                let body = serde_json::json!({
                    "method": req.method,
                    "path": req.path,
                    "query": req.query,
                    "body": String::from_utf8_lossy(req.body),
                    "x_test": req.header("X-Test"),
                });
                ctx.respond(
                    req.id,
                    200,
                    "Content-Type: application/json",
                    body.to_string().as_bytes(),
                )
            }
            "/api/later" => {
                self.answer_later.push(req.id);
                ctx.set_timer(Duration::from_millis(20));
                Ok(())
            }
            "/api/never" => Ok(()),
            "/api/fail" => Err(Error::App("no answer".into())),
            "/api/reserved" => match ctx.respond(req.id, 200, "Content-Length: 5", b"hello") {
                Err(e) => ctx.respond(req.id, 400, "", e.to_string().as_bytes()),
                Ok(()) => Ok(()),
            },
            "/api/big" => {
                let n: usize = req
                    .query_param("n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                ctx.respond(req.id, 200, "", &body)
            }
            _ => ctx.respond(req.id, 404, "Content-Type: text/plain", b"no such path\n"),
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>) {
        for id in std::mem::take(&mut self.accept_later) {
            let _ = ctx.accept(id, 7);
        }
        for id in std::mem::take(&mut self.answer_later) {
            let _ = ctx.respond(id, 202, "", b"later");
        }
    }

    fn open(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        ctx.send_to(
            client,
            Message::Text(&format!("open data={} id={}", info.data, client.0)),
        )
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        _client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        ctx.reply(msg)
    }
}

ringsocket_sdk::export_app!("gate", Gate);
