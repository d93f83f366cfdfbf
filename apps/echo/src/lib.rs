//! The echo app: every message goes back to its sender, unchanged.

use ringsocket_sdk::{App, ClientId, Context, Error, Message};

/// The app's (empty) state.
pub struct Echo;

impl App for Echo {
    fn init(_settings: &str) -> Result<Self, String> {
        Ok(Echo)
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

ringsocket_sdk::export_app!("echo", Echo);
