//! Any bytes into the chunk decoder: errors are fine, panics and runaway memory are not.
#![no_main]
use bytes::BytesMut;
use common::rtmp::chunk::{msg_type, ChunkDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = ChunkDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(m)) = d.decode(&mut buf) {
        if m.type_id == msg_type::SET_CHUNK_SIZE && m.payload.len() >= 4 {
            let n = u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
            if d.set_chunk_size(n).is_err() {
                break;
            }
        }
    }
});
