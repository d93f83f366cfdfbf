//! What an app thread keeps about each of its connected clients: address and
//! endpoint, from the open record until the close callback has run.

use crate::records::ClientId;
use ringsocket_abi as abi;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};

/// The app's connected clients.
#[derive(Default)]
pub(crate) struct Clients {
    by_id: FxHashMap<u64, abi::rs_client_info>,
}

impl Clients {
    /// Records a client that opened.
    pub(crate) fn insert(&mut self, client: ClientId, info: abi::rs_client_info) {
        self.by_id.insert(client.0, info);
    }

    /// Forgets a client whose close callback has run.
    pub(crate) fn remove(&mut self, client: ClientId) {
        self.by_id.remove(&client.0);
    }

    /// What is known about `client`, if it is connected.
    pub(crate) fn get(&self, client: ClientId) -> Option<&abi::rs_client_info> {
        self.by_id.get(&client.0)
    }

    /// The endpoint id of `client` (0 if unknown).
    pub(crate) fn endpoint_of(&self, client: ClientId) -> u16 {
        self.get(client).map_or(0, |c| c.endpoint_id)
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
