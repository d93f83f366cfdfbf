//! Listening sockets: one per worker per address, all with `SO_REUSEPORT` so the kernel
//! spreads connections across workers.

use crate::config::{Config, PortConfig};
use crate::StartError;
use socket2::{Domain, Socket, Type};
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

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
pub(crate) fn bind_all(
    config: &Config,
    workers: usize,
) -> Result<(Vec<Vec<Listener>>, Vec<PortLock>), StartError> {
    let mut result: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut locks = Vec::new();
    for (i, port) in config.ports.iter().enumerate() {
        let addrs = addresses(port);
        let defaulted =
            port.ip_addrs.is_empty() && !port.ipv6only && !port.ipv4_is_embedded_in_ipv6;
        for (addr, v6only) in addrs {
            if addr.port() != 0 && !locks.iter().any(|l: &PortLock| l.port == addr.port()) {
                match PortLock::take(addr.port()) {
                    Ok(lock) => locks.push(lock),
                    Err(source) => {
                        return Err(StartError::Listen {
                            addr: addr.to_string(),
                            port_index: i,
                            source,
                        })
                    }
                }
            }
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
            if let Some(local) = bound.first().and_then(|l| l.local_addr().ok()) {
                log::info!("ports[{i}]: listening on {local}");
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
    Ok((result, locks))
}

/// Proof that no other ringsocket listens on an address: an abstract Unix socket named
/// after it, held for the life of the process (the kernel frees it at exit, however
/// the process ends). Without it, a second instance could bind the same port through
/// `SO_REUSEPORT` and silently take a share of the connections.
#[derive(Debug)]
pub(crate) struct PortLock {
    port: u16,
    _socket: std::os::unix::net::UnixListener,
}

impl PortLock {
    /// Takes the lock for TCP port `port` (whatever the address: two instances on one
    /// port would split its connections).
    fn take(port: u16) -> std::io::Result<PortLock> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringsocket-listen-port-{port}");
        let unix = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        match std::os::unix::net::UnixListener::bind_addr(&unix) {
            Ok(socket) => Ok(PortLock {
                port,
                _socket: socket,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(std::io::Error::new(
                e.kind(),
                "another ringsocket instance is already listening on this address",
            )),
            Err(e) => Err(e),
        }
    }
}

/// Connections per client IP address, shared by every worker without locks: a fixed
/// table of counters indexed by a hash of the address. Two addresses that share a
/// slot share its count, which can only make the limit stricter for them.
pub(crate) struct IpCounts {
    slots: Box<[AtomicU32]>,
    limit: u32,
    hasher: rustc_hash::FxBuildHasher,
}

impl IpCounts {
    const SLOTS: usize = 1 << 16;

    /// A table enforcing at most `limit` connections per address.
    pub(crate) fn new(limit: u32) -> IpCounts {
        IpCounts {
            slots: (0..Self::SLOTS).map(|_| AtomicU32::new(0)).collect(),
            limit,
            hasher: rustc_hash::FxBuildHasher,
        }
    }

    /// Counts one more connection from `ip`, unless it is at the limit. Returns the
    /// slot to release when the connection ends.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        // An IPv4-mapped IPv6 address counts as its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut h = self.hasher.build_hasher();
        ip.hash(&mut h);
        let slot = std::hash::Hasher::finish(&h) as usize % Self::SLOTS;
        // Relaxed: the counter guards no other memory; only its value matters.
        let counter = &self.slots[slot];
        if counter.fetch_add(1, Relaxed) >= self.limit {
            counter.fetch_sub(1, Relaxed);
            return None;
        }
        Some(IpSlot(
            std::num::NonZeroU32::MIN.saturating_add(slot as u32),
        ))
    }

    /// Counts one connection less in `slot`.
    pub(crate) fn release(&self, slot: IpSlot) {
        self.slots[slot.0.get() as usize - 1].fetch_sub(1, Relaxed);
    }
}

/// A connection's counter in [`IpCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpSlot(std::num::NonZeroU32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_counts_limit_each_address() {
        let counts = IpCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = counts.acquire(a).unwrap();
        let _s2 = counts.acquire(mapped).unwrap();
        assert_eq!(counts.acquire(a), None);
        assert!(counts.acquire(b).is_some());
        counts.release(s1);
        assert!(counts.acquire(a).is_some());
    }

    #[test]
    fn a_second_lock_on_an_address_is_refused() {
        let _first = PortLock::take(1).unwrap();
        let e = PortLock::take(1).unwrap_err();
        assert!(e.to_string().contains("already listening"), "{e}");
    }
}
