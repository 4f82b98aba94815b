//! Any bytes from a peer during the RTMP handshake, both sides: our `handshake_server` and
//! `handshake_client` over an in-memory stream that then ends (a truncated handshake must be an
//! error, garbage must be an error or a completed handshake, never a panic or a hang), and
//! rml_rtmp's `Handshake` fed the same bytes cut at a fuzzer-chosen point.
#![no_main]
use bytes::BytesMut;
use common::rtmp::conn::{handshake_client, handshake_server};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, PeerType};
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let (cut, bytes) = match data.split_first() {
        Some((c, rest)) => (*c as usize * rest.len() / 255, rest),
        None => (0, data),
    };
    for client in [false, true] {
        let mut hs = Handshake::new(if client {
            PeerType::Client
        } else {
            PeerType::Server
        });
        if client && hs.generate_outbound_p0_and_p1().is_err() {
            continue;
        }
        if hs.process_bytes(&bytes[..cut]).is_ok() {
            let _ = hs.process_bytes(&bytes[cut..]);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for server in [true, false] {
            // Big enough for every answer (S0+S1+S2 is 3073 bytes), so nothing blocks on write.
            let (mut ours, mut peer) = tokio::io::duplex(1 << 16);
            peer.write_all(bytes).await.expect("duplex write");
            peer.shutdown().await.expect("duplex shutdown");
            let mut buf = BytesMut::new();
            let _ = if server {
                handshake_server(&mut ours, &mut buf).await
            } else {
                handshake_client(&mut ours, &mut buf).await
            };
        }
    });
});
