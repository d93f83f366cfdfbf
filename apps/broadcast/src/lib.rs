//! The broadcast app: every message a client sends goes to every client of the app,
//! the sender included.

use ringsocket_sdk::{App, ClientId, Context, Error, Message};

/// The app's (empty) state.
pub struct Broadcast;

impl App for Broadcast {
    fn init(_settings: &str) -> Result<Self, String> {
        Ok(Broadcast)
    }

    fn read(
        &mut self,
        ctx: &mut Context<'_>,
        _client: ClientId,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        ctx.broadcast(msg)
    }
}

ringsocket_sdk::export_app!("broadcast", Broadcast);
