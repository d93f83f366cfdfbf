//! What an app thread keeps about each of its connected clients: address and
//! endpoint, from the open record until the close callback has run.
//!
//! Idle connections are what a server holds most of, so an entry is 12 bytes for an
//! IPv4 client, kept where the client's id points (its worker's slot, see
//! [`ClientId`]): no table of ids. An IPv6 client's address lives in a second, smaller
//! map.

use crate::records::ClientId;
use ringsocket_abi as abi;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};

/// Marks an entry whose address is in the IPv6 map (255.255.255.255 is never a TCP peer).
const IN_V6_MAP: [u8; 4] = [0xff; 4];

/// One client: which generation of its slot (0: the slot is vacant), its IPv4 address
/// (or a marker), port (0: unknown) and endpoint id.
#[derive(Clone, Copy, Default)]
struct Entry {
    generation: u32,
    ip4: [u8; 4],
    port: u16,
    endpoint_id: u16,
}

/// The app's connected clients.
#[derive(Default)]
pub(crate) struct Clients {
    /// By worker, then by slot.
    slots: Vec<Vec<Entry>>,
    len: usize,
    ip6: FxHashMap<u64, [u8; 16]>,
}

impl Clients {
    /// The entry `client` would have (vacant or another generation's if it has none).
    fn slot(&self, client: ClientId) -> Option<&Entry> {
        self.slots.get(client.worker())?.get(client.slot())
    }

    /// `client`'s entry, if it is connected.
    fn entry(&self, client: ClientId) -> Option<&Entry> {
        self.slot(client)
            .filter(|e| e.generation == client.generation() && client.generation() != 0)
    }

    /// Records a client that opened.
    pub(crate) fn insert(&mut self, client: ClientId, peer: Option<SocketAddr>, endpoint_id: u16) {
        let (ip4, port) = match peer {
            Some(SocketAddr::V4(a)) => (a.ip().octets(), a.port()),
            Some(SocketAddr::V6(a)) => {
                self.ip6.insert(client.0, a.ip().octets());
                (IN_V6_MAP, a.port())
            }
            None => ([0; 4], 0),
        };
        if self.slots.len() <= client.worker() {
            self.slots.resize_with(client.worker() + 1, Vec::new);
        }
        let worker = &mut self.slots[client.worker()];
        if worker.len() <= client.slot() {
            worker.resize(client.slot() + 1, Entry::default());
        }
        let entry = &mut worker[client.slot()];
        if entry.generation == 0 {
            self.len += 1;
        }
        *entry = Entry {
            generation: client.generation(),
            ip4,
            port,
            endpoint_id,
        };
    }

    /// How many clients are connected.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `client` is connected (opened, not yet closed).
    pub(crate) fn contains(&self, client: ClientId) -> bool {
        self.entry(client).is_some()
    }

    /// Forgets a client whose close callback has run.
    pub(crate) fn remove(&mut self, client: ClientId) {
        let Some(&entry) = self.entry(client) else {
            return;
        };
        if entry.ip4 == IN_V6_MAP {
            self.ip6.remove(&client.0);
        }
        self.slots[client.worker()][client.slot()] = Entry::default();
        self.len -= 1;
    }

    /// What is known about `client`, if it is connected.
    pub(crate) fn get(&self, client: ClientId) -> Option<abi::rs_client_info> {
        let entry = self.entry(client)?;
        let mut peer = abi::rs_addr {
            family: abi::RS_ADDR_IPV4,
            port: entry.port,
            ip: [0; 16],
        };
        match (entry.port, self.ip6.get(&client.0)) {
            (0, _) => peer = abi::rs_addr::default(),
            (_, Some(ip6)) if entry.ip4 == IN_V6_MAP => {
                peer.family = abi::RS_ADDR_IPV6;
                peer.ip = *ip6;
            }
            _ => peer.ip[..4].copy_from_slice(&entry.ip4),
        }
        Some(abi::rs_client_info {
            peer,
            endpoint_id: entry.endpoint_id,
            reserved: [0; 3],
        })
    }

    /// The endpoint id of `client` (0 if unknown).
    pub(crate) fn endpoint_of(&self, client: ClientId) -> u16 {
        self.entry(client).map_or(0, |e| e.endpoint_id)
    }
}

/// A socket address in the ABI's form (all zero when unknown).
pub(crate) fn abi_addr(addr: Option<SocketAddr>) -> abi::rs_addr {
    let Some(addr) = addr else {
        return abi::rs_addr::default();
    };
    let mut out = abi::rs_addr {
        family: abi::RS_ADDR_IPV4,
        port: addr.port(),
        ip: [0; 16],
    };
    match addr.ip() {
        IpAddr::V4(ip) => out.ip[..4].copy_from_slice(&ip.octets()),
        IpAddr::V6(ip) => {
            out.family = abi::RS_ADDR_IPV6;
            out.ip = ip.octets();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_for_ipv4_ipv6_and_unknown_peers() {
        let mut c = Clients::default();
        let (a, b, n) = (
            ClientId::new(0, 1, 1),
            ClientId::new(1, 1, 1),
            ClientId::new(0, 3, 9),
        );
        let v4: SocketAddr = "10.0.0.7:4000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        c.insert(a, Some(v4), 7);
        c.insert(b, Some(v6), 9);
        c.insert(n, None, 1);
        assert_eq!(std::mem::size_of::<Entry>(), 12);
        let info = |id| c.get(id).unwrap();
        assert_eq!((info(a).peer, info(a).endpoint_id), (abi_addr(Some(v4)), 7));
        assert_eq!((info(b).peer, info(b).endpoint_id), (abi_addr(Some(v6)), 9));
        assert_eq!(info(n).peer, abi::rs_addr::default());
        c.remove(b);
        assert!(c.get(b).is_none() && c.ip6.is_empty());
        assert_eq!(c.endpoint_of(a), 7);
        assert_eq!(c.len(), 2);
        // Another generation of a's slot is another client.
        let a2 = ClientId::new(0, 1, 2);
        assert!(!c.contains(a2));
        c.remove(a2);
        assert!(c.contains(a));
        c.remove(a);
        c.insert(a2, Some(v4), 8);
        assert!(!c.contains(a) && c.contains(a2) && c.len() == 2);
    }
}
