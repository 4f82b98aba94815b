//! Any bytes as a PROXY protocol v2 header.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, len))) = common::proxy_protocol::parse_v2(data) {
        assert!(len <= data.len());
    }
});
