//! The few ISO-BMFF boxes fragmented MP4 (CMAF) needs, written by hand: the init segment
//! (ftyp + moov with one avc1/avcC and/or one mp4a/esds track, mvex/trex) and one fragment
//! (moof with a traf per track + mdat). Pure functions from values to bytes.

use bytes::Bytes;

pub(crate) const VIDEO_TRACK: u32 = 1;
pub(crate) const AUDIO_TRACK: u32 = 2;
pub(crate) const VIDEO_TIMESCALE: u32 = 90_000;

/// A box under construction: `start` is where its size field lives.
struct W {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl W {
    fn new() -> Self {
        W {
            buf: Vec::with_capacity(1024),
            open: Vec::new(),
        }
    }
    fn begin(&mut self, kind: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
    }
    fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.begin(kind);
        self.u32(((version as u32) << 24) | (flags & 0x00ff_ffff));
    }
    fn end(&mut self) {
        if let Some(start) = self.open.pop() {
            let size = (self.buf.len() - start) as u32;
            self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

pub(crate) struct VideoTrack<'a> {
    pub avcc: &'a [u8],
    pub width: u16,
    pub height: u16,
}

pub(crate) struct AudioTrack<'a> {
    pub asc: &'a [u8],
    pub rate: u32,
    pub channels: u16,
}

pub(crate) fn init_segment(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> Bytes {
    let mut w = W::new();
    w.begin(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"cmfc", b"iso5", b"mp41"] {
        w.bytes(brand);
    }
    w.end();
    w.begin(b"moov");
    w.full(b"mvhd", 0, 0);
    w.u32(0); // creation
    w.u32(0); // modification
    w.u32(1000); // timescale
    w.u32(0); // duration: unknown (fragmented)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24);
    w.u32(3); // next_track_ID
    w.end();
    if let Some(v) = video {
        trak(&mut w, VIDEO_TRACK, VIDEO_TIMESCALE, Some(v), None);
    }
    if let Some(a) = audio {
        trak(&mut w, AUDIO_TRACK, a.rate, None, Some(a));
    }
    w.begin(b"mvex");
    for (id, present) in [
        (VIDEO_TRACK, video.is_some()),
        (AUDIO_TRACK, audio.is_some()),
    ] {
        if present {
            w.full(b"trex", 0, 0);
            w.u32(id);
            w.u32(1); // sample description index
            w.u32(0);
            w.u32(0);
            w.u32(0);
            w.end();
        }
    }
    w.end();
    w.end();
    Bytes::from(w.buf)
}

fn trak(
    w: &mut W,
    id: u32,
    timescale: u32,
    video: Option<&VideoTrack>,
    audio: Option<&AudioTrack>,
) {
    w.begin(b"trak");
    w.full(b"tkhd", 0, 3); // enabled, in movie
    w.u32(0);
    w.u32(0);
    w.u32(id);
    w.u32(0);
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(if audio.is_some() { 1 } else { 0 }); // alternate group
    w.u16(if audio.is_some() { 0x0100 } else { 0 });
    w.u16(0);
    w.matrix();
    let (width, height) = video.map_or((0, 0), |v| (v.width as u32, v.height as u32));
    w.u32(width << 16);
    w.u32(height << 16);
    w.end();
    w.begin(b"mdia");
    w.full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(timescale);
    w.u32(0);
    w.u16(0x55c4); // 'und'
    w.u16(0);
    w.end();
    w.full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if video.is_some() { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video.is_some() {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.end();
    w.begin(b"minf");
    if video.is_some() {
        w.full(b"vmhd", 0, 1);
        w.zeros(8);
    } else {
        w.full(b"smhd", 0, 0);
        w.zeros(4);
    }
    w.end();
    w.begin(b"dinf");
    w.full(b"dref", 0, 0);
    w.u32(1);
    w.full(b"url ", 0, 1); // self-contained
    w.end();
    w.end();
    w.end();
    w.begin(b"stbl");
    w.full(b"stsd", 0, 0);
    w.u32(1);
    if let Some(v) = video {
        w.begin(b"avc1");
        w.zeros(6);
        w.u16(1); // data reference index
        w.zeros(16);
        w.u16(v.width);
        w.u16(v.height);
        w.u32(0x0048_0000);
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame count
        w.zeros(32); // compressor name
        w.u16(0x0018);
        w.u16(0xffff);
        w.begin(b"avcC");
        w.bytes(v.avcc);
        w.end();
        w.end();
    }
    if let Some(a) = audio {
        w.begin(b"mp4a");
        w.zeros(6);
        w.u16(1);
        w.zeros(8);
        w.u16(a.channels);
        w.u16(16);
        w.u32(0);
        w.u32(if a.rate <= 0xffff { a.rate << 16 } else { 0 });
        esds(w, a.asc);
        w.end();
    }
    w.end();
    for kind in [b"stts", b"stsc", b"stco"] {
        w.full(kind, 0, 0);
        w.u32(0);
        w.end();
    }
    w.full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

fn esds(w: &mut W, asc: &[u8]) {
    fn descr(w: &mut W, tag: u8, len: usize) {
        w.u8(tag);
        // Always the 4-byte length form: valid for any size and simple.
        let len = len as u32;
        w.u8(0x80 | ((len >> 21) & 0x7f) as u8);
        w.u8(0x80 | ((len >> 14) & 0x7f) as u8);
        w.u8(0x80 | ((len >> 7) & 0x7f) as u8);
        w.u8((len & 0x7f) as u8);
    }
    let asc = &asc[..asc.len().min(0x0fff_ffff)];
    let dsi = 5 + asc.len();
    let dcd = 13 + dsi;
    let sl = 5 + 1;
    w.full(b"esds", 0, 0);
    descr(w, 3, 3 + 5 + dcd + sl);
    w.u16(AUDIO_TRACK as u16);
    w.u8(0);
    descr(w, 4, dcd);
    w.u8(0x40); // MPEG-4 audio
    w.u8(0x15); // audio stream
    w.zeros(3); // buffer size
    w.u32(0); // max bitrate
    w.u32(0); // avg bitrate
    descr(w, 5, asc.len());
    w.bytes(asc);
    descr(w, 6, 1);
    w.u8(2);
    w.end();
}

/// One sample of a fragment, in its track's timescale.
pub(crate) struct Sample<'a> {
    pub duration: u32,
    pub cts: i32,
    pub key: bool,
    pub data: &'a [u8],
}

pub(crate) struct TrackRun<'a> {
    pub id: u32,
    pub base_time: u64,
    pub samples: Vec<Sample<'a>>,
}

/// moof (mfhd + a traf per non-empty run) + one mdat holding the runs' data in order.
pub(crate) fn fragment(sequence: u32, runs: &[TrackRun]) -> Bytes {
    let runs: Vec<&TrackRun> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let mut w = W::new();
    w.begin(b"moof");
    w.full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end();
    let mut offset_fields = Vec::new();
    for run in &runs {
        w.begin(b"traf");
        w.full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.u32(run.id);
        w.end();
        w.full(b"tfdt", 1, 0);
        w.u64(run.base_time);
        w.end();
        // data-offset, duration, size, flags, composition offset (signed: version 1)
        w.full(b"trun", 1, 0x01 | 0x100 | 0x200 | 0x400 | 0x800);
        w.u32(run.samples.len() as u32);
        offset_fields.push(w.buf.len());
        w.u32(0);
        for s in &run.samples {
            w.u32(s.duration);
            w.u32(s.data.len() as u32);
            w.u32(if s.key { 0x0200_0000 } else { 0x0101_0000 });
            w.u32(s.cts as u32);
        }
        w.end();
        w.end();
    }
    w.end(); // moof
    let moof_len = w.buf.len();
    let mut data_pos = moof_len + 8;
    for (run, field) in runs.iter().zip(offset_fields) {
        w.buf[field..field + 4].copy_from_slice(&(data_pos as u32).to_be_bytes());
        data_pos += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    w.begin(b"mdat");
    for run in &runs {
        for s in &run.samples {
            w.bytes(s.data);
        }
    }
    w.end();
    Bytes::from(w.buf)
}
