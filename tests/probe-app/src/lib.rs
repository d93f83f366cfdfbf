//! A test-only plugin. Each text message is a command; anything else is echoed.
//!
//! | command | effect |
//! |---|---|
//! | `id` | replies with the client's id |
//! | `to ID TEXT` | sends TEXT to client ID |
//! | `multi ID,ID,.. TEXT` | sends TEXT to each listed client |
//! | `all TEXT` | sends TEXT to every client |
//! | `except ID,ID,.. TEXT` | sends TEXT to every client but the listed ones |
//! | `close CODE` | closes the sender with CODE and reason "bye" |
//! | `closesend` | closes the sender with 4001, then tries to send it a message |
//! | `burst N SIZE` | sends the sender N binary messages of SIZE bytes, each starting with its index (u32 LE) |
//! | `timer MS` | after MS milliseconds, sends "tick N" to every client (N counts the timer callbacks) |
//! | `panic` / `error` | panics / returns an error (the client gets 1011) |
//! | `badsend` | tries a close code an app may not use and replies with the result |
//! | `info ID` | replies `info PEER ENDPOINT_ID` for client ID, or `info NotFound` |
//! | `write N` | writes N bytes (`a`..`z` repeating) with the in-place writer, sends them back |
//! | `wall TEXT` / `wexcept ID TEXT` | the writer's TEXT to every client / all but ID |
//! | `wmulti ID,ID,.. TEXT` | the writer's TEXT to each listed client |
//! | `post TEXT` | a new thread posts TEXT as an event; the event callback broadcasts `event TEXT` |
//! | `sub TOPIC` / `unsub TOPIC` | (un)subscribes the sender; replies `ok` or the error |
//! | `subid ID TOPIC` | subscribes client ID; replies `ok` or the error |
//! | `pub TOPIC TEXT` / `pubx TOPIC TEXT` | publishes TEXT to TOPIC (pubx: not to the sender) |
//! | `wpub TOPIC TEXT` | publishes TEXT to TOPIC through the in-place writer |
//! | `pubn TOPIC N` | publishes `N` messages `seq I` (I = 0..N) to TOPIC |
//! | `count TOPIC` | replies `count N`, the topic's subscriber count |
//! | `subn PREFIX N` | subscribes the sender to topics PREFIX0..PREFIX(N-1); replies `ok` |
//!
//! A binary message starting with `TYPD` is read with the typed reader: `TYPD, u32 BE n,
//! n bytes` replies `typed n`; any other length closes with 4900 (the SDK's typed error).
//!
//! Settings: `{"fail_init": true}` makes init fail; `{"read_delay_us": N}` sleeps N µs
//! in every read (a slow app, to fill the inbound ring); `{"log_close": true}` tells
//! every remaining client `closed ID CODE` when a client goes; `{"log_open": true}`
//! replies `open ID ENDPOINT PATH PROTOCOL` and then `meta TARGET|QUERY|PEER|UA|COOKIE`
//! to each new client; `{"periodic": [MIN_MS, INCR_MS, MAX_MS]}` starts a periodic timer
//! when the first client opens, which broadcasts `periodic N GAP_US` (GAP_US: microseconds
//! since the timer was started or last called, measured here, not by the client) and
//! returns Increase, three times, then Never;
//! `{"echo_writer": true}` echoes binary messages through the in-place writer;
//! `{"init_wait_file": PATH}` makes init wait (up to 60 s) until PATH exists (a slow
//! start, which a test ends when it likes).

use ringsocket_sdk::{
    App, ClientId, CloseCode, Context, Error, Kind, Message, OpenInfo, PeriodicTimer, TimerNext, To,
};
use std::time::{Duration, Instant};

/// The probe's state.
pub struct Probe {
    read_delay: Duration,
    log_close: bool,
    log_open: bool,
    /// Timer callbacks so far.
    ticks: u32,
    /// Echo binary messages through the in-place writer rather than `reply`.
    echo_writer: bool,
    /// Periodic timer callbacks so far.
    periodic_calls: u32,
    periodic: Option<PeriodicTimer>,
    /// When the periodic timer was started or last called; `None` until the first open.
    periodic_since: Option<Instant>,
}

fn ids(list: &str) -> Vec<ClientId> {
    list.split(',')
        .filter_map(|s| s.parse().ok())
        .map(ClientId)
        .collect()
}

impl App for Probe {
    /// `ringsocketctl app probe …`: `echo WORDS…` replies the words, `broadcast TEXT`
    /// sends TEXT to every client, `fail` fails, `panic` panics, `big` replies 2 MiB (cut
    /// to 1 MiB).
    const TAKES_COMMANDS: bool = true;

    fn control(&mut self, ctx: &mut Context<'_>, args: &[&str]) -> Result<String, String> {
        match args {
            ["echo", words @ ..] => Ok(words.join(" ")),
            ["broadcast", text] => ctx
                .broadcast(Message::Text(text))
                .map(|()| "sent".into())
                .map_err(|e| e.to_string()),
            ["fail"] => Err("failing as asked".into()),
            ["panic"] => panic!("panicking as asked"),
            ["big"] => Ok("x".repeat(2 << 20)),
            _ => Err(format!("unknown command {args:?}")),
        }
    }

    fn init(settings: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        if v["fail_init"].as_bool() == Some(true) {
            return Err("fail_init is set".into());
        }
        if let Some(path) = v["init_wait_file"].as_str() {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !std::path::Path::new(path).exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Probe {
            read_delay: Duration::from_micros(v["read_delay_us"].as_u64().unwrap_or(0)),
            log_close: v["log_close"].as_bool().unwrap_or(false),
            log_open: v["log_open"].as_bool().unwrap_or(false),
            ticks: 0,
            echo_writer: v["echo_writer"].as_bool().unwrap_or(false),
            periodic_calls: 0,
            periodic_since: None,
            periodic: v["periodic"].as_array().map(|ms| {
                let ms = |i: usize| Duration::from_millis(ms[i].as_u64().unwrap_or(10));
                PeriodicTimer {
                    min: ms(0),
                    incr: ms(1),
                    max: ms(2),
                }
            }),
        })
    }

    fn periodic(&mut self, ctx: &mut Context<'_>) -> TimerNext {
        self.periodic_calls += 1;
        let now = Instant::now();
        let gap = self.periodic_since.map_or(0, |t| (now - t).as_micros());
        self.periodic_since = Some(now);
        let msg = format!("periodic {} {gap}", self.periodic_calls);
        let _ = ctx.broadcast(Message::Text(&msg));
        if self.periodic_calls < 3 {
            TimerNext::Increase
        } else {
            TimerNext::Never
        }
    }

    fn event(&mut self, ctx: &mut Context<'_>, event: &[u8]) -> Result<(), Error> {
        let text = String::from_utf8_lossy(event);
        ctx.broadcast(Message::Text(&format!("event {text}")))
    }

    fn open(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        // The timer starts with the first client, so that it sees every call.
        if self.periodic.is_some() && self.periodic_since.is_none() {
            self.periodic_since = Some(Instant::now());
            ctx.set_periodic(self.periodic);
        }
        if self.log_open {
            let msg = format!(
                "open {} {} {} {}",
                client.0,
                info.endpoint_id,
                info.url_path,
                info.subprotocol.unwrap_or("-")
            );
            ctx.reply(Message::Text(&msg))?;
            let meta = format!(
                "meta {}|{}|{}|{}|{}",
                info.target,
                info.query.unwrap_or("-"),
                info.peer.map_or("-".into(), |p| p.to_string()),
                info.header("user-agent").unwrap_or("-"),
                info.header("Cookie").unwrap_or("-"),
            );
            ctx.reply(Message::Text(&meta))?;
        }
        Ok(())
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        if !self.read_delay.is_zero() {
            std::thread::sleep(self.read_delay);
        }
        let Message::Text(text) = msg else {
            if msg.bytes().starts_with(b"TYPD") {
                let mut r = msg.binary()?;
                r.bytes(4)?;
                let n = r.u32_be()?;
                r.bytes(n as usize)?;
                r.finish()?;
                return ctx.reply(Message::Text(&format!("typed {n}")));
            }
            if self.echo_writer {
                let mut w = ctx.writer();
                w.put(msg.bytes());
                return w.send(To::Current, Kind::Binary);
            }
            return ctx.reply(msg);
        };
        let (cmd, rest) = text.split_once(' ').unwrap_or((text, ""));
        let (arg, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match cmd {
            "id" => ctx.reply(Message::Text(&client.0.to_string())),
            "to" => ctx.send_to(ClientId(arg.parse().unwrap_or(0)), Message::Text(tail)),
            "multi" => ctx.send_to_many(&ids(arg), Message::Text(tail)),
            "all" => ctx.broadcast(Message::Text(rest)),
            "except" => ctx.broadcast_except(&ids(arg), Message::Text(tail)),
            "close" => ctx.close(client, CloseCode(arg.parse().unwrap_or(4000)), "bye"),
            "closesend" => {
                ctx.close(client, CloseCode(4001), "bye")?;
                ctx.reply(Message::Text("sent after the close"))
            }
            "burst" => {
                let n: u32 = arg.parse().unwrap_or(0);
                let size: usize = tail.parse().unwrap_or(4).max(4);
                let mut buf = vec![0u8; size];
                for i in 0..n {
                    buf[..4].copy_from_slice(&i.to_le_bytes());
                    ctx.reply(Message::Binary(&buf))?;
                }
                Ok(())
            }
            "timer" => {
                ctx.set_timer(Duration::from_millis(arg.parse().unwrap_or(0)));
                Ok(())
            }
            "panic" => panic!("the probe was asked to panic"),
            "error" => Err(Error::App("the probe was asked to fail".into())),
            "badsend" => {
                let result = ctx.close(client, CloseCode(1005), "");
                ctx.reply(Message::Text(&format!("{result:?}")))
            }
            "info" => {
                let reply = match ctx.client_info(ClientId(arg.parse().unwrap_or(0))) {
                    Some(i) => format!(
                        "info {} {}",
                        i.peer.map_or("-".into(), |p| p.to_string()),
                        i.endpoint_id
                    ),
                    None => "info NotFound".into(),
                };
                ctx.reply(Message::Text(&reply))
            }
            "write" => {
                let n: usize = arg.parse().unwrap_or(0);
                let mut w = ctx.writer();
                for i in 0..n {
                    w.put_u8(b'a' + (i % 26) as u8);
                }
                w.send(To::Current, Kind::Text)
            }
            "wall" => {
                let mut w = ctx.writer();
                w.put_str(rest);
                w.send(To::Every, Kind::Text)
            }
            "wexcept" => {
                let except = [ClientId(arg.parse().unwrap_or(0))];
                let mut w = ctx.writer();
                w.put_str(tail);
                w.send(To::EveryExcept(&except), Kind::Text)
            }
            "wmulti" => {
                let to = ids(arg);
                let mut w = ctx.writer();
                w.put_str(tail);
                w.send(To::Clients(&to), Kind::Text)
            }
            "post" => {
                let sender = ctx.event_sender();
                let text = rest.to_string();
                std::thread::spawn(move || sender.post(text.as_bytes()))
                    .join()
                    .map_err(|_| Error::App("poster panicked".into()))?
            }
            "sub" | "unsub" => {
                let result = if cmd == "sub" {
                    ctx.subscribe(client, arg)
                } else {
                    ctx.unsubscribe(client, arg)
                };
                let reply = result.map_or_else(|e| format!("{e:?}"), |()| "ok".into());
                ctx.reply(Message::Text(&reply))
            }
            "subid" => {
                let result = ctx.subscribe(ClientId(arg.parse().unwrap_or(0)), tail);
                let reply = result.map_or_else(|e| format!("{e:?}"), |()| "ok".into());
                ctx.reply(Message::Text(&reply))
            }
            "pub" => ctx.publish(arg, None, Message::Text(tail)),
            "pubx" => ctx.publish(arg, Some(client), Message::Text(tail)),
            "wpub" => {
                let mut w = ctx.writer();
                w.put_str(tail);
                w.send(
                    To::Topic {
                        topic: arg.as_bytes(),
                        except: None,
                    },
                    Kind::Text,
                )
            }
            "pubn" => {
                for i in 0..tail.parse::<u32>().unwrap_or(0) {
                    ctx.publish(arg, None, Message::Text(&format!("seq {i}")))?;
                }
                Ok(())
            }
            "subn" => {
                for i in 0..tail.parse::<u32>().unwrap_or(0) {
                    ctx.subscribe(client, format!("{arg}{i}"))?;
                }
                ctx.reply(Message::Text("ok"))
            }
            "count" => {
                let n = ctx.topic_count(arg);
                ctx.reply(Message::Text(&format!("count {n}")))
            }
            _ => ctx.reply(msg),
        }
    }

    fn close(&mut self, ctx: &mut Context<'_>, client: ClientId, code: CloseCode) {
        if self.log_close {
            let _ = ctx.broadcast(Message::Text(&format!("closed {} {}", client.0, code.0)));
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>) {
        self.ticks += 1;
        let _ = ctx.broadcast(Message::Text(&format!("tick {}", self.ticks)));
    }
}

ringsocket_sdk::export_app!("probe", Probe);
