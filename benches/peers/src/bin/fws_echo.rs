//! fastwebsockets peer: an echo server with its defaults (auto pong, auto close).
//! Replies are built as new unmasked frames: the crate's own echo example writes the
//! received (masked) frame back, which a server must not do.

use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use tokio::net::TcpListener;

fn main() {
    let (port, _) = rs_peers::args();
    rs_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                if !rs_peers::accept_upgrade(&mut stream).await {
                    return;
                }
                let mut ws = WebSocket::after_handshake(stream, Role::Server);
                loop {
                    let Ok(frame) = ws.read_frame().await else {
                        return;
                    };
                    match frame.opcode {
                        OpCode::Text | OpCode::Binary => {
                            let reply = Frame::new(true, frame.opcode, None, frame.payload);
                            if ws.write_frame(reply).await.is_err() {
                                return;
                            }
                        }
                        OpCode::Close => return,
                        _ => {}
                    }
                }
            });
        }
    });
}
