//! Any bytes as an HTTP request head (edge `[http]`): parsing, routing and ranges never
//! panic, and a parsed head never claims more bytes than it was given.
#![no_main]
use edge::http::request::{byte_range, parse, route, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Request(req, len) => {
            assert!(len <= data.len());
            let _ = route(&req.path);
            let _ = byte_range(req.range.as_deref(), data.len());
        }
        Parsed::Refused(_, len) => assert!(len <= data.len()),
        Parsed::Partial => {}
    }
});
