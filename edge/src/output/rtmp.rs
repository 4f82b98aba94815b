//! RTMP output: a frame as chunks on the player's message stream at the stream's chunk
//! size. The encoding for [`PLAY_STREAM_ID`] (what `createStream` gives every player) is
//! made once per stream and shared; a player on another stream id (rare: one that created
//! several streams) gets its own.

use crate::hub::Frame;
use bytes::Bytes;
use common::rtmp::chunk::{self, csid, msg_type};

/// The message stream id players are given by `createStream`, and the shared encoding's.
pub const PLAY_STREAM_ID: u32 = 1;
/// This output's slot in [`Frame::encoded`].
pub const SLOT: usize = 0;

fn csid_of(type_id: u8) -> u32 {
    match type_id {
        msg_type::AUDIO => csid::AUDIO,
        msg_type::VIDEO => csid::VIDEO,
        msg_type::USER_CONTROL => csid::PROTOCOL,
        _ => csid::DATA,
    }
}

fn encode_on(f: &Frame, stream_id: u32, chunk_size: usize) -> Bytes {
    // A user-control message (the keepalive ping) belongs to stream 0 whatever the player.
    let (stream_id, ts) = match f.is_control() {
        true => (0, 0),
        false => (stream_id, f.timestamp),
    };
    chunk::encode_to_bytes(
        csid_of(f.type_id),
        ts,
        f.type_id,
        stream_id,
        &f.payload,
        chunk_size,
    )
}

/// `f` as chunks for message stream `stream_id` at `chunk_size` (the stream's).
pub fn encode(f: &Frame, stream_id: u32, chunk_size: usize) -> Bytes {
    if stream_id == PLAY_STREAM_ID || f.is_control() {
        f.encoded(SLOT, |f| encode_on(f, PLAY_STREAM_ID, chunk_size))
    } else {
        encode_on(f, stream_id, chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::rtmp::media::MediaKind;

    #[test]
    fn one_encoding_is_shared_and_other_streams_get_their_own() {
        let f = Frame::new(
            msg_type::VIDEO,
            40,
            MediaKind::Frame,
            Bytes::from(vec![7u8; 300]),
        );
        let a = encode(&f, PLAY_STREAM_ID, 128);
        let b = encode(&f, PLAY_STREAM_ID, 128);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second player reuses the bytes");
        let c = encode(&f, 3, 128);
        assert_ne!(a, c);
        assert_eq!(a.len(), c.len());
    }
}
