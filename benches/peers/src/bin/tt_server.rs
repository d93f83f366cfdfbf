//! tokio-tungstenite peer: `tt_server --port N [--broadcast] [--tuned]`.
//!
//! Default: `accept_async` with tungstenite's default configuration, and one `send` (a
//! write and a flush) per message: what a user writes first. `--tuned`: a 4 KiB read
//! buffer, and every message that is ready is fed before one flush, its best case.
//! `--broadcast`: every message a client sends goes to every client, like ringsocket's
//! broadcast app: by default through a tokio broadcast channel with one writer task per
//! client; with `--tuned` one hub task owns every client's sink, feeds each message to
//! all of them and flushes each once per batch (tokio-tungstenite's best case).

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let (port, args) = rs_peers::args();
    let tuned = args.iter().any(|a| a == "--tuned");
    let fanout = args.iter().any(|a| a == "--broadcast");
    rs_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let (tx, _) = broadcast::channel::<Message>(65536);
        let tx = Arc::new(tx);
        let hub = (fanout && tuned).then(spawn_hub);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            let hub = hub.clone();
            tokio::spawn(async move {
                let config = tuned.then(|| WebSocketConfig::default().read_buffer_size(4096));
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, config).await
                else {
                    return;
                };
                if let Some(hub) = hub {
                    hub_conn(ws, hub).await;
                } else if fanout {
                    broadcast_conn(ws, tx, tuned).await;
                } else {
                    echo_conn(ws, tuned).await;
                }
            });
        }
    });
}

async fn echo_conn(mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, tuned: bool) {
    while let Some(Ok(msg)) = ws.next().await {
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        if !tuned {
            if ws.send(msg).await.is_err() {
                return;
            }
            continue;
        }
        if ws.feed(msg).await.is_err() {
            return;
        }
        // Feed everything that is ready, then flush once.
        while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
            if (msg.is_text() || msg.is_binary()) && ws.feed(msg).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

async fn broadcast_conn(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tx: Arc<broadcast::Sender<Message>>,
    tuned: bool,
) {
    let (mut sink, mut stream) = ws.split();
    let mut rx = tx.subscribe();
    let writer = tokio::spawn(async move {
        while let Ok(msg) = rx.recv().await {
            if !tuned {
                if sink.send(msg).await.is_err() {
                    return;
                }
                continue;
            }
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_text() || msg.is_binary() {
            let _ = tx.send(msg);
        }
    }
    writer.abort();
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    Message,
>;

enum HubEvent {
    Join(Sink),
    Message(Message),
}

/// The tuned broadcast: one task owns every sink.
fn spawn_hub() -> tokio::sync::mpsc::UnboundedSender<HubEvent> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<HubEvent>();
    tokio::spawn(async move {
        let mut sinks: Vec<Sink> = Vec::new();
        while let Some(event) = rx.recv().await {
            let mut pending = Some(event);
            let mut fed = false;
            // Feed this event and everything else already queued, then flush once.
            while let Some(event) = pending.take().or_else(|| rx.try_recv().ok()) {
                match event {
                    HubEvent::Join(sink) => sinks.push(sink),
                    HubEvent::Message(msg) => {
                        fed = true;
                        let mut dead = Vec::new();
                        for (i, sink) in sinks.iter_mut().enumerate() {
                            if sink.feed(msg.clone()).await.is_err() {
                                dead.push(i);
                            }
                        }
                        for i in dead.into_iter().rev() {
                            drop(sinks.swap_remove(i));
                        }
                    }
                }
            }
            if fed {
                for sink in sinks.iter_mut() {
                    let _ = sink.flush().await;
                }
            }
        }
    });
    tx
}

async fn hub_conn(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    hub: tokio::sync::mpsc::UnboundedSender<HubEvent>,
) {
    let (sink, mut stream) = ws.split();
    if hub.send(HubEvent::Join(sink)).is_err() {
        return;
    }
    while let Some(Ok(msg)) = stream.next().await {
        if (msg.is_text() || msg.is_binary()) && hub.send(HubEvent::Message(msg)).is_err() {
            return;
        }
    }
}
