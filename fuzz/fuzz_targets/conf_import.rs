//! Any bytes as a keepalived.conf or an srs.conf: the block parser (both dialects) and both
//! importers never panic, and what an importer prints is always TOML.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use common::confblock::{parse, Dialect};
    let _ = parse(data, "fuzz.conf", Dialect::Nginx);
    if let Ok(tree) = parse(data, "fuzz.conf", Dialect::Keepalived) {
        if let Ok(imp) = lb::import::keepalived(&tree) {
            imp.toml
                .parse::<toml::Table>()
                .expect("keepalived import is TOML");
        }
    }
    if let Ok(tree) = parse(data, "fuzz.conf", Dialect::Nginx) {
        if let Ok(imp) = edge::import::srs(&tree) {
            imp.toml.parse::<toml::Table>().expect("srs import is TOML");
        }
    }
});
