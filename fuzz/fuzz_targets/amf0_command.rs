//! Any bytes as an AMF0 command message (what a client sends before play/publish).
#![no_main]
use common::rtmp::chunk::{msg_type, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for type_id in [msg_type::COMMAND_AMF0, msg_type::COMMAND_AMF3] {
        let msg = Message {
            csid: 3,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: bytes::Bytes::copy_from_slice(data),
        };
        let _ = common::rtmp::command::parse_command(&msg);
    }
});
