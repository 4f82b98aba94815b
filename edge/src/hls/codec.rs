//! FLV AUDIODATA / VIDEODATA bodies (as RTMP carries them) read into what the packager needs:
//! AVC sequence headers and NAL-unit frames, AAC AudioSpecificConfig and raw frames. Every
//! function takes bytes from the network, returns `Err(reason)` for anything it cannot use and
//! never panics.

use bytes::Bytes;

/// One video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Video {
    /// AVCPacketType 0: the AVCDecoderConfigurationRecord, verbatim (goes into `avcC`).
    Config(Bytes),
    /// AVCPacketType 1: length-prefixed NAL units (AVCC) of one access unit.
    Frame { key: bool, cts_ms: i32, data: Bytes },
    /// AVCPacketType 2 or an info/command frame: nothing to package.
    Skip,
}

/// One audio message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audio {
    /// AACPacketType 0: the AudioSpecificConfig, verbatim (goes into `esds`).
    Config(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    Frame(Bytes),
}

pub(crate) fn parse_video(p: &Bytes) -> Result<Video, &'static str> {
    let b0 = *p.first().ok_or("empty video message")?;
    if b0 & 0x80 != 0 {
        return Err("enhanced-RTMP video (HEVC/AV1/VP9) is not packaged, only AVC");
    }
    let frame_type = b0 >> 4;
    if b0 & 0x0f != 7 {
        return Err("video codec is not AVC (FLV CodecID != 7)");
    }
    if frame_type == 5 {
        return Ok(Video::Skip);
    }
    if p.len() < 5 {
        return Err("truncated AVC video header");
    }
    let raw = ((p[2] as u32) << 16) | ((p[3] as u32) << 8) | p[4] as u32;
    // SI24: sign-extend the 24-bit composition time.
    let cts_ms = ((raw << 8) as i32) >> 8;
    match p[1] {
        0 => {
            let cfg = p.slice(5..);
            if cfg.len() < 7 || cfg[0] != 1 {
                return Err("bad AVCDecoderConfigurationRecord");
            }
            Ok(Video::Config(cfg))
        }
        1 => {
            let data = p.slice(5..);
            if data.is_empty() {
                return Err("empty AVC frame");
            }
            Ok(Video::Frame {
                key: frame_type == 1,
                cts_ms,
                data,
            })
        }
        2 => Ok(Video::Skip),
        _ => Err("unknown AVCPacketType"),
    }
}

pub(crate) fn parse_audio(p: &Bytes) -> Result<Audio, &'static str> {
    let b0 = *p.first().ok_or("empty audio message")?;
    if b0 >> 4 != 10 {
        return Err("audio codec is not AAC (FLV SoundFormat != 10)");
    }
    if p.len() < 2 {
        return Err("truncated AAC audio header");
    }
    match p[1] {
        0 => Ok(Audio::Config(p.slice(2..))),
        1 if p.len() > 2 => Ok(Audio::Frame(p.slice(2..))),
        1 => Err("empty AAC frame"),
        _ => Err("unknown AACPacketType"),
    }
}

/// What the init segment needs from an AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AacInfo {
    pub rate: u32,
    pub channels: u16,
    /// Samples per frame at `rate`: 1024, or 2048 when the ASC signals SBR explicitly
    /// (its sampling frequency is then the output rate).
    pub frame: u32,
}

pub(crate) fn parse_asc(asc: &[u8]) -> Result<AacInfo, &'static str> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let mut r = Bits::new(asc);
    let mut aot = r.read(5).ok_or("truncated AudioSpecificConfig")?;
    if aot == 31 {
        aot = 32 + r.read(6).ok_or("truncated AudioSpecificConfig")?;
    }
    let idx = r.read(4).ok_or("truncated AudioSpecificConfig")?;
    let rate = if idx == 15 {
        r.read(24).ok_or("truncated AudioSpecificConfig")?
    } else {
        *RATES
            .get(idx as usize)
            .ok_or("reserved AAC sampling frequency index")?
    };
    let channels = r.read(4).ok_or("truncated AudioSpecificConfig")? as u16;
    if rate == 0 {
        return Err("AAC sampling frequency 0");
    }
    let frame = if aot == 5 || aot == 29 { 2048 } else { 1024 };
    Ok(AacInfo {
        rate,
        channels: channels.max(1),
        frame,
    })
}

/// Width and height from the first SPS of an AVCDecoderConfigurationRecord; `None` if it
/// cannot be read (the `avc1` box then says 0x0, which decoders ignore in favour of the SPS).
pub(crate) fn avc_dimensions(avcc: &[u8]) -> Option<(u16, u16)> {
    if avcc.len() < 8 || avcc[5] & 0x1f == 0 {
        return None;
    }
    let len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
    let nal = avcc.get(8..8 + len)?;
    // Drop the NAL header and emulation-prevention bytes (00 00 03).
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits::new(&rbsp);
    let profile = r.read(8)?;
    r.read(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.read(1)?;
        }
        r.ue()?;
        r.ue()?;
        r.read(1)?;
        if r.read(1)? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.read(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.read(1)?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.read(1)?;
    let w_mbs = r.ue()? as u64 + 1;
    let h_map = r.ue()? as u64 + 1;
    let frame_mbs_only = r.read(1)? as u64;
    if frame_mbs_only == 0 {
        r.read(1)?;
    }
    r.read(1)?;
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if r.read(1)? == 1 {
        cl = r.ue()? as u64;
        cr = r.ue()? as u64;
        ct = r.ue()? as u64;
        cb = r.ue()? as u64;
    }
    let (sub_w, sub_h) = match chroma {
        0 | 3 => (1, 1),
        1 => (2, 2),
        _ => (2, 1),
    };
    let crop_x = sub_w * (cl + cr);
    let crop_y = sub_h * (2 - frame_mbs_only) * (ct + cb);
    let w = (w_mbs * 16).checked_sub(crop_x)?;
    let h = ((2 - frame_mbs_only) * h_map * 16).checked_sub(crop_y)?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// An MSB-first bit reader that returns `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1) as u32;
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.read(zeros)?;
        Some(((1u64 << zeros) - 1 + rest as u64).min(u32::MAX as u64) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc_lc_44100_mono() {
        let info = parse_asc(&[0x12, 0x08]).unwrap();
        assert_eq!((info.rate, info.channels, info.frame), (44100, 1, 1024));
        assert!(parse_asc(&[]).is_err());
        assert!(parse_asc(&[0x17, 0x80]).is_err()); // index 15 without the 24 bits
    }

    #[test]
    fn video_headers() {
        assert!(parse_video(&Bytes::new()).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x17, 1])).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x12, 1, 0, 0, 0, 1])).is_err());
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 9])).unwrap(),
            Video::Frame {
                key: false,
                cts_ms: -2,
                data: Bytes::from_static(&[9])
            }
        );
    }
}
