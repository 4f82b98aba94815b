//! Any bytes as a received VRRP packet (IP header included), for v3 and v2 with PASS.
#![no_main]
use lb::vrrp::packet::{auth_bytes, parse, Expect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (version, pass) in [(3, None), (2, Some(auth_bytes("1111")))] {
        let _ = parse(data, &Expect { version, vrid: 51, auth_pass: pass, interval_s: 1 });
    }
});
