//! Any bytes as an FLV file for `edge publish`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edge::tools::flv::parse(bytes::Bytes::copy_from_slice(data));
});
