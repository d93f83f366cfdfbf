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
//!
//! Settings: `{"fail_init": true}` makes init fail; `{"read_delay_us": N}` sleeps N µs
//! in every read (a slow app, to fill the inbound ring); `{"log_close": true}` tells
//! every remaining client `closed ID CODE` when a client goes.

use ringsocket_sdk::{App, ClientId, Context, Error, Message, OpenInfo};
use std::time::Duration;

/// The probe's state.
pub struct Probe {
    read_delay: Duration,
    log_close: bool,
    log_open: bool,
    /// Timer callbacks so far.
    ticks: u32,
}

fn ids(list: &str) -> Vec<ClientId> {
    list.split(',')
        .filter_map(|s| s.parse().ok())
        .map(ClientId)
        .collect()
}

impl App for Probe {
    fn init(settings: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        if v["fail_init"].as_bool() == Some(true) {
            return Err("fail_init is set".into());
        }
        Ok(Probe {
            read_delay: Duration::from_micros(v["read_delay_us"].as_u64().unwrap_or(0)),
            log_close: v["log_close"].as_bool().unwrap_or(false),
            log_open: v["log_open"].as_bool().unwrap_or(false),
            ticks: 0,
        })
    }

    fn open(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        if self.log_open {
            let msg = format!(
                "open {} {} {} {}",
                client.0,
                info.endpoint_id,
                info.url_path,
                info.subprotocol.unwrap_or("-")
            );
            ctx.reply(Message::Text(&msg))?;
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
            "close" => ctx.close(client, arg.parse().unwrap_or(4000), "bye"),
            "closesend" => {
                ctx.close(client, 4001, "bye")?;
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
                let result = ctx.close(client, 1005, "");
                ctx.reply(Message::Text(&format!("{result:?}")))
            }
            _ => ctx.reply(msg),
        }
    }

    fn close(&mut self, ctx: &mut Context<'_>, client: ClientId, code: u16) {
        if self.log_close {
            let _ = ctx.broadcast(Message::Text(&format!("closed {} {code}", client.0)));
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>) {
        self.ticks += 1;
        let _ = ctx.broadcast(Message::Text(&format!("tick {}", self.ticks)));
    }
}

ringsocket_sdk::export_app!("probe", Probe);
