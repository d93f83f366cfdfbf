//! counter: a complete ringsocket app in Rust, from docs/apps.md.
//!
//! It greets each client by the name in its URL (`/counter?name=ann`) and its address,
//! answers every message with that client's message count (a JSON message
//! `{"add": N}` adds N at once; anything that is not valid JSON closes the client with
//! 4900), and every so often tells everyone the totals (a periodic timer that backs
//! off while nobody is connected).

use ringsocket_sdk::{
    App, ClientId, CloseCode, Context, Error, Kind, Message, OpenInfo, PeriodicTimer, TimerNext, To,
};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// One client's state.
struct Client {
    name: String,
    messages: u64,
}

/// The app's state: the SDK keeps it on the app thread and passes it to every callback.
pub struct Counter {
    clients: HashMap<ClientId, Client>,
    total: u64,
}

/// A JSON command.
#[derive(serde::Deserialize)]
struct Add {
    add: u64,
}

impl App for Counter {
    /// Every 50 ms while clients are connected; backing off up to 1 s while none are.
    const PERIODIC: Option<PeriodicTimer> = Some(PeriodicTimer {
        min: Duration::from_millis(50),
        incr: Duration::from_millis(50),
        max: Duration::from_secs(1),
    });

    fn init(_settings: &str) -> Result<Self, String> {
        Ok(Counter {
            clients: HashMap::new(),
            total: 0,
        })
    }

    fn open(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        info: &OpenInfo<'_>,
    ) -> Result<(), Error> {
        let name = info
            .query
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("name="))
            .unwrap_or("anonymous")
            .to_string();
        let peer = info.peer.map_or("?".to_string(), |p| p.ip().to_string());
        let port = info.peer.map_or(0, |p| p.port());
        let agent = info.header("User-Agent").unwrap_or("-");
        // Written in place into the outbound ring, then sent.
        let mut w = ctx.writer();
        write!(w, "hello {name} from {peer} port {port} ({agent})").map_err(|_| Error::TooBig)?;
        w.send(To::Current, Kind::Text)?;
        self.clients.insert(client, Client { name, messages: 0 });
        Ok(())
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let add = match msg {
            Message::Text(t) if t.starts_with('{') => msg.json::<Add>()?.add,
            _ => 1,
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return Err(Error::App(format!("unknown client {client:?}")));
        };
        c.messages += add;
        self.total += add;
        ctx.reply(Message::Text(&format!("count {}", c.messages)))
    }

    fn close(&mut self, ctx: &mut Context<'_>, client: ClientId, code: CloseCode) {
        if let Some(c) = self.clients.remove(&client) {
            let note = format!("{} left ({})", c.name, code.0);
            ctx.log(ringsocket_sdk::log_level::Level::Debug, &note);
        }
    }

    fn periodic(&mut self, ctx: &mut Context<'_>) -> TimerNext {
        if self.clients.is_empty() {
            return TimerNext::Increase;
        }
        let stats = format!("stats total={} clients={}", self.total, self.clients.len());
        let _ = ctx.broadcast(Message::Text(&stats));
        TimerNext::Min
    }
}

ringsocket_sdk::export_app!("counter", Counter);
