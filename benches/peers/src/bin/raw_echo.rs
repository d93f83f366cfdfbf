//! The floor: a plain TCP echo server on mio, no WebSocket framing. It reads what a
//! connection has and writes it straight back, one write per read.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

struct Conn {
    stream: TcpStream,
    unsent: Vec<u8>,
}

fn main() {
    let (port, _) = rs_peers::args();
    let mut poll = Poll::new().expect("epoll");
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into()).expect("bind");
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)
        .expect("register");
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    loop {
        poll.poll(&mut events, None).expect("poll");
        for ev in events.iter() {
            if ev.token() == Token(0) {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    poll.registry()
                        .register(
                            &mut stream,
                            Token(next),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("register");
                    conns.insert(
                        next,
                        Conn {
                            stream,
                            unsent: Vec::new(),
                        },
                    );
                    next += 1;
                }
                continue;
            }
            let key = ev.token().0;
            let Some(c) = conns.get_mut(&key) else {
                continue;
            };
            let mut dead = false;
            if ev.is_writable() && !c.unsent.is_empty() {
                match c.stream.write(&c.unsent) {
                    Ok(n) => {
                        c.unsent.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => dead = true,
                }
            }
            if ev.is_readable() {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            dead = true;
                            break;
                        }
                        Ok(n) => {
                            if c.unsent.is_empty() {
                                match c.stream.write(&buf[..n]) {
                                    Ok(w) => c.unsent.extend_from_slice(&buf[w..n]),
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                        c.unsent.extend_from_slice(&buf[..n])
                                    }
                                    Err(_) => dead = true,
                                }
                            } else {
                                c.unsent.extend_from_slice(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            dead = true;
                            break;
                        }
                    }
                }
            }
            if dead {
                conns.remove(&key);
            }
        }
    }
}
