//! Reads an FLV file into its tags (what `edge publish` sends).

use bytes::Bytes;

/// One FLV tag: an RTMP message type (8 audio, 9 video, 18 data), its timestamp, its body.
#[derive(Debug, Clone)]
pub struct FlvTag {
    pub type_id: u8,
    pub timestamp: u32,
    pub data: Bytes,
}

/// Parses a whole FLV file. A truncated last tag is dropped (a file still being written);
/// anything else malformed is an error naming the byte offset.
pub fn parse(data: Bytes) -> Result<Vec<FlvTag>, String> {
    if data.len() < 9 || &data[..3] != b"FLV" {
        return Err("not an FLV file (no FLV signature)".into());
    }
    let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    if header_len < 9 || header_len > data.len() {
        return Err(format!("bad FLV header length {header_len}"));
    }
    let mut pos = header_len + 4; // skip PreviousTagSize0
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let h = &data[pos..pos + 11];
        let filtered = h[0] & 0x20 != 0;
        let type_id = h[0] & 0x1f;
        let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        let ts = ((h[7] as u32) << 24) | ((h[4] as u32) << 16) | ((h[5] as u32) << 8) | h[6] as u32;
        let end = pos + 11 + len;
        if end > data.len() {
            break;
        }
        match type_id {
            8 | 9 | 18 if !filtered => tags.push(FlvTag {
                type_id,
                timestamp: ts,
                data: data.slice(pos + 11..end),
            }),
            8 | 9 | 18 => {}
            other => return Err(format!("unknown FLV tag type {other} at byte {pos}")),
        }
        pos = end + 4;
    }
    if tags.is_empty() {
        return Err("FLV file holds no audio, video or data tag".into());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_test_clip() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/media/clip.flv");
        let tags = parse(Bytes::from(std::fs::read(path).unwrap())).unwrap();
        assert!(tags.iter().any(|t| t.type_id == 9));
        assert!(tags.iter().any(|t| t.type_id == 8));
        assert_eq!(tags[0].type_id, 18);
        assert!(tags.last().unwrap().timestamp > 4000);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(Bytes::from_static(b"hello")).is_err());
        assert!(parse(Bytes::from_static(
            b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
        ))
        .is_err());
    }
}
