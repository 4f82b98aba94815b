//! Any bytes as a received VRRP packet: IPv4 (IP header included) for v3 and v2 with PASS,
//! and IPv6 (the VRRP part alone, as a raw IPv6 socket returns it) for v3.
#![no_main]
use lb::vrrp::packet::{auth_bytes, parse, parse_v6, Expect, MULTICAST_V6};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;

fuzz_target!(|data: &[u8]| {
    for (version, pass) in [(3, None), (2, Some(auth_bytes("1111")))] {
        let _ = parse(data, &Expect { version, vrid: 51, auth_pass: pass, interval_s: 1 });
    }
    let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    let v3 = Expect { version: 3, vrid: 61, auth_pass: None, interval_s: 1 };
    let _ = parse_v6(data, src, MULTICAST_V6, Some(255), &v3);
});
