//! Classifies FLV/RTMP audio and video payloads by their first bytes.

/// What a media message is, as far as caching and dropping decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// AVC/HEVC decoder configuration, or AAC AudioSpecificConfig: must precede frames.
    SequenceHeader,
    /// A video frame a decoder can start from.
    Keyframe,
    /// Any other frame: droppable.
    Frame,
}

/// Video tag: frame type in the high nibble (1 = key), codec id in the low one; for AVC (7)
/// and HEVC (12) the next byte is the packet type (0 = sequence header). Enhanced RTMP
/// (bit 7 set) carries the packet type in the low nibble.
pub fn video_kind(payload: &[u8]) -> MediaKind {
    let Some(&b0) = payload.first() else {
        return MediaKind::Frame;
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: frame type = (b0 >> 4) & 7, packet type = b0 & 0x0f.
        return match (b0 >> 4 & 7, b0 & 0x0f) {
            (_, 0) => MediaKind::SequenceHeader,
            (1, _) => MediaKind::Keyframe,
            _ => MediaKind::Frame,
        };
    }
    let frame_type = b0 >> 4;
    let codec = b0 & 0x0f;
    if (codec == 7 || codec == 12) && payload.get(1) == Some(&0) {
        return MediaKind::SequenceHeader;
    }
    if frame_type == 1 {
        MediaKind::Keyframe
    } else {
        MediaKind::Frame
    }
}

/// Audio tag: sound format in the high nibble; AAC (10) has a packet type byte (0 = config).
pub fn audio_kind(payload: &[u8]) -> MediaKind {
    match payload {
        [b0, 0, ..] if b0 >> 4 == 10 => MediaKind::SequenceHeader,
        _ => MediaKind::Frame,
    }
}

/// The video codec of a tag, by FLV codec id (or Enhanced RTMP FourCC).
pub fn video_codec(payload: &[u8]) -> Option<&'static str> {
    let b0 = *payload.first()?;
    if b0 & 0x80 != 0 {
        return Some(match payload.get(1..5)? {
            b"avc1" => "H264",
            b"hvc1" => "H265",
            b"av01" => "AV1",
            b"vp09" => "VP9",
            _ => "other",
        });
    }
    Some(match b0 & 0x0f {
        7 => "H264",
        12 => "H265",
        2 => "H263",
        4 | 5 => "VP6",
        _ => "other",
    })
}

/// The audio codec of a tag, by FLV sound format.
pub fn audio_codec(payload: &[u8]) -> Option<&'static str> {
    Some(match payload.first()? >> 4 {
        10 => "AAC",
        2 | 14 => "MP3",
        11 => "Speex",
        13 => "Opus",
        7 | 8 => "G711",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(video_kind(&[0x17, 0]), MediaKind::SequenceHeader);
        assert_eq!(video_kind(&[0x17, 1]), MediaKind::Keyframe);
        assert_eq!(video_kind(&[0x27, 1]), MediaKind::Frame);
        assert_eq!(video_kind(&[]), MediaKind::Frame);
        assert_eq!(audio_kind(&[0xaf, 0]), MediaKind::SequenceHeader);
        assert_eq!(audio_kind(&[0xaf, 1]), MediaKind::Frame);
        assert_eq!(audio_kind(&[0x2f]), MediaKind::Frame);
    }
}
