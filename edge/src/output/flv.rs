//! FLV output (HTTP-FLV): the file header, then each frame as an FLV tag. A tag is its
//! 11-byte header, the frame's payload as the hub holds it, and the 4-byte size of the tag
//! before it: head and tail are made once per stream (15 bytes in the frame's slot) and the
//! payload is never copied — a player writes the three with one writev.
//!
//! The header's `hasAudio` / `hasVideo` flags must match the tracks that follow (flv.js and
//! mpegts.js wait for a track that the header announced), so they are taken from what the
//! stream has when the player starts: its sequence headers and codecs.

use crate::hub::Frame;
use bytes::{BufMut, Bytes, BytesMut};
use common::rtmp::chunk::msg_type;

/// This output's slot in [`Frame::encoded`].
pub const SLOT: usize = 1;

/// The FLV file header and the first PreviousTagSize (0).
pub fn header(has_audio: bool, has_video: bool) -> Bytes {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// Whether a frame becomes a tag (audio, video, script data); control frames do not.
pub fn carries(f: &Frame) -> bool {
    matches!(
        f.type_id,
        msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0
    )
}

fn head_and_tail(f: &Frame) -> Bytes {
    let len = f.payload.len().min(0xFF_FFFF) as u32;
    let ts = f.timestamp;
    let mut b = BytesMut::with_capacity(15);
    b.put_u8(f.type_id);
    b.put_slice(&len.to_be_bytes()[1..]);
    b.put_slice(&ts.to_be_bytes()[1..]);
    b.put_u8((ts >> 24) as u8);
    b.put_slice(&[0, 0, 0]);
    b.put_u32(len + 11);
    b.freeze()
}

/// Appends `f` as an FLV tag (three buffers) to `out`; nothing for a frame that is no tag.
pub fn encode(f: &Frame, out: &mut Vec<Bytes>) {
    if !carries(f) || f.payload.len() > 0xFF_FFFF {
        return;
    }
    let ht = f.encoded(SLOT, head_and_tail);
    out.push(ht.slice(..11));
    out.push(f.payload.clone());
    out.push(ht.slice(11..));
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::rtmp::media::MediaKind;

    #[test]
    fn a_tag_is_header_payload_and_previous_size() {
        let f = Frame::new(
            msg_type::VIDEO,
            0x0123_4567,
            MediaKind::Keyframe,
            Bytes::from_static(b"\x17\x01abc"),
        );
        let mut out = Vec::new();
        encode(&f, &mut out);
        let tag: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(
            tag,
            [
                &[9u8, 0, 0, 5, 0x23, 0x45, 0x67, 0x01, 0, 0, 0][..],
                b"\x17\x01abc",
                &[0, 0, 0, 16]
            ]
            .concat()
        );
        let control = Frame::new(msg_type::USER_CONTROL, 0, MediaKind::Frame, Bytes::new());
        let mut none = Vec::new();
        encode(&control, &mut none);
        assert!(none.is_empty());
        assert_eq!(header(true, false)[4], 4);
        assert_eq!(header(false, true)[4], 1);
    }
}
