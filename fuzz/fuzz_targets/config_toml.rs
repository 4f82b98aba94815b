//! Any text as lb.toml and as edge.toml: parsing and validation answer with a config or with
//! errors that name the key (and render), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = lb::LbConfig::parse(text) {
        assert!(!e.0.is_empty(), "an error without a problem");
        let _ = e.to_string();
    }
    if let Err(e) = edge::EdgeConfig::parse(text) {
        assert!(!e.0.is_empty(), "an error without a problem");
        let _ = e.to_string();
    }
});
