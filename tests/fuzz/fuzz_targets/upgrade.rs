//! The HTTP upgrade parser on arbitrary bytes: it never panics, and a request it
//! accepts has a header section within the input and a valid key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsocket_proto::handshake::{accept_key, parse_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((req, len))) = parse_request(data) {
        assert!(len <= data.len());
        assert!(req.path.starts_with('/') || !req.path.is_empty());
        let _ = accept_key(req.key);
        let _ = req.offered_protocols().count();
    }
});
