//! Listening sockets: one per worker per address, all with `SO_REUSEPORT` so the kernel
//! spreads connections across workers.

use crate::config::{Config, PortConfig};
use crate::StartError;
use socket2::{Domain, Socket, Type};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// One bound listening socket of one worker.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: std::net::TcpListener,
    /// The configured port number (routes are looked up by it).
    pub(crate) port: u16,
    /// Connections on it speak TLS.
    pub(crate) secure: bool,
}

/// What to bind for one port: each address with its IPV6_V6ONLY setting.
fn addresses(port: &PortConfig) -> Vec<(SocketAddr, bool)> {
    let n = port.port_number;
    if !port.ip_addrs.is_empty() {
        return port
            .ip_addrs
            .iter()
            .map(|ip| (SocketAddr::new(*ip, n), true))
            .collect();
    }
    let v4 = (SocketAddr::from((Ipv4Addr::UNSPECIFIED, n)), true);
    let v6 = (SocketAddr::from((Ipv6Addr::UNSPECIFIED, n)), true);
    if port.ipv4only {
        vec![v4]
    } else if port.ipv6only {
        vec![v6]
    } else if port.ipv4_is_embedded_in_ipv6 {
        vec![(v6.0, false)]
    } else {
        vec![v4, v6]
    }
}

fn bind(addr: SocketAddr, v6only: bool, device: &str) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6only)?;
    }
    if !device.is_empty() {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds every configured address once per worker; `result[w]` is worker `w`'s list.
///
/// # Errors
/// The first address that cannot be bound. When no address list is given, an IPv6
/// wildcard that the machine does not support is skipped with a warning.
pub(crate) fn bind_all(config: &Config, workers: usize) -> Result<Vec<Vec<Listener>>, StartError> {
    let mut result: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, port) in config.ports.iter().enumerate() {
        let addrs = addresses(port);
        let defaulted =
            port.ip_addrs.is_empty() && !port.ipv6only && !port.ipv4_is_embedded_in_ipv6;
        for (addr, v6only) in addrs {
            let mut bound = Vec::new();
            for _ in 0..workers {
                // Port 0 (tests): every worker must share the port the first one got.
                let addr = bound.first().map_or(addr, |l: &std::net::TcpListener| {
                    l.local_addr().unwrap_or(addr)
                });
                match bind(addr, v6only, &port.interface) {
                    Ok(l) => bound.push(l),
                    Err(e)
                        if defaulted
                            && addr.is_ipv6()
                            && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                    {
                        log::warn!(
                            "ports[{i}]: IPv6 is not available here; listening on IPv4 only"
                        );
                        break;
                    }
                    Err(source) => {
                        return Err(StartError::Listen {
                            addr: addr.to_string(),
                            port_index: i,
                            source,
                        })
                    }
                }
            }
            for (w, l) in bound.into_iter().enumerate() {
                result[w].push(Listener {
                    socket: l,
                    port: port.port_number,
                    secure: !port.is_unencrypted,
                });
            }
        }
    }
    Ok(result)
}
