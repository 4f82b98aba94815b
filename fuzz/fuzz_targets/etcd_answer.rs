//! Any bytes as an answer of etcd's JSON gateway to a range request (the registry's lookups)
//! and as a registration value: `parse_range`, `read_range` and `choose` answer with pairs,
//! registrations or errors naming what is wrong, never a panic; a chosen registration is one
//! that was read and never one of `myself`.
#![no_main]
use edge::registry::entry::{choose, read_range, Registration};
use edge::registry::etcd::parse_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Registration::parse("/edgefleet/streams/live/cam/n", data);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(kvs) = parse_range(&v) {
        let (regs, _errs) = read_range("/edgefleet/streams/live/cam/", &kvs);
        if let Some(c) = choose(&regs, &["127.0.0.1:1935"]) {
            assert!(c.chosen.origin != "127.0.0.1:1935", "chose myself");
            assert!(regs.iter().any(|r| r.origin == c.chosen.origin));
        }
    }
});
