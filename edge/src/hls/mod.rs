//! HLS and Low-Latency HLS packaging of one RTMP stream, as pure logic: media messages in
//! ([`Packager::push`]), playlist and files out ([`Packager::playlist`], [`Packager::file`]).
//! No sockets, no clock, no tokio: time is the stream's own timestamps. The HTTP side (blocking
//! reloads, routing `/APP/STREAM-*.m4s` here) belongs to the caller; this room may not touch
//! the hub, sessions or the server.
//!
//! # Container: fMP4 (CMAF), not MPEG-TS
//! RTMP already carries what fMP4 stores: the AVCDecoderConfigurationRecord goes verbatim into
//! `avcC`, the AAC AudioSpecificConfig verbatim into `esds`, and AVCC (length-prefixed) NAL
//! units are the `mdat` sample format, so there is no Annex-B rewrite, no ADTS headers, no PES
//! or PCR timing. An LL-HLS part is simply one `moof`+`mdat`, and a segment is the
//! concatenation of its parts (they share the bytes). hls.js, Safari and ffmpeg read it. The
//! boxes are written here ([`mp4`], ~300 lines) rather than with `mp4-atom`: that crate models
//! `avcC` by its parsed fields and re-encodes them (we want the publisher's bytes verbatim so
//! every edge writes identical files), and its box structs changed shape from one minor
//! release to the next.
//!
//! Tracks: video is track 1 (timescale 90000, decode time = FLV timestamp x 90, composition
//! offset from the FLV CompositionTime), audio is track 2 (timescale = the AAC sample rate,
//! every frame 1024 samples, each part's `tfdt` = its first frame's timestamp x rate / 1000).
//! A stream with only one of them gets an init segment with only that track.
//!
//! # The segment rule (deterministic: the same names and numbers on every edge)
//! Let `F` = `fragment` in ms and `slot(ts) = floor(ts / F)` on the stream's timestamps.
//! - The *driver* track is video when an AVC sequence header was seen, else audio.
//! - A new segment starts at a driver frame `f` when `slot(f) > slot(current segment start)`
//!   and `f` is a keyframe (audio frames all count as keyframes), or - a keyframe-less or very
//!   long GOP - when `slot(f) >= slot(start) + 5` (a forced, non-independent cut).
//! - Its media sequence number is `slot(f)`; its file is `STREAM-<ts of f>.m4s`.
//! - A GOP longer than `F` skips numbers: each skipped number `n` is listed as an
//!   `#EXT-X-GAP` entry (`#EXTINF:0.001`, URI `STREAM-gap<n>.m4s`, never served) right after
//!   the long segment, which keeps its true duration. Numbers stay consecutive, and the rule
//!   still depends on timestamps alone.
//! - Parts: with `P` = `part` in ms and `S` the segment's first timestamp, a new part starts
//!   at the first driver frame with `floor((ts - S) / P)` greater than that of the current
//!   part's first frame, and at every segment start (so no sliver of a part at a segment's
//!   end when keyframes sit off the `P` grid). Part `i` of segment `STREAM-<t>` is `STREAM-<t>.<i>.m4s`; a part whose first driver
//!   frame is a keyframe is `INDEPENDENT=YES`. Non-driver frames join the open part in arrival
//!   order (the same on every edge, since they all get the origin's order).
//!
//! Why two edges agree: the decision at a driver frame depends only on its timestamp, its
//! keyframe flag and the slot of the current segment's start, and an edge that joins late
//! starts at a keyframe `K` whose slot is the slot of the other edge's current segment. So
//! from the late edge's first cut on, both cut at the same frames, number and name the same,
//! and (same input bytes, same part grid) write byte-identical files. The late edge's first
//! segment starts at `K`: if `K` was a boundary it is the same segment; if not it is a suffix
//! of the other edge's segment with the same number but a different name (`STREAM-<K.ts>`), so
//! a name never stands for two contents.
//!
//! Timestamps are u32 ms; they are extended to 64 bits across a wrap (49.7 days) so `tfdt`
//! keeps growing, but an edge that joins after a wrap counts from zero again (it cannot know
//! the epoch), so its names differ from an older edge's after the wrap. A small backward jump
//! of one track drops that frame; a driver jump backwards by more than 1 s, or forwards by
//! more than the window, starts a new timeline (below).
//!
//! # Memory
//! Closed segments older than `window` (by their end, against the newest closed segment) are
//! dropped, and a hard cap of [`MAX_BYTES`] drops the oldest first. Parts are slices of their
//! segment's bytes, so they cost nothing extra; they are listed for the segments that end in
//! the last three target durations. [`Packager::bytes`] reports the total.
//!
//! # Changes of source or codec config: `EXT-X-DISCONTINUITY`
//! A sequence header with different bytes, one for a track the init segment lacks, a driver
//! timestamp jump (see above) or [`Packager::reset`] (the caller's "source changed") ends the
//! timeline: the open segment is closed (its last frame lasts as long as the one before) and
//! stays listed. The next keyframe starts a new timeline: `#EXT-X-DISCONTINUITY` and a new
//! `#EXT-X-MAP` (`STREAM-init-<hash of its bytes>.mp4`, so a changed init never hides behind
//! an old name). Its numbers are `slot + offset`: the offset stays 0 while timestamps move on
//! (a failover to another origin of the same stream keeps every name and number), and becomes
//! `last msn + 1 - slot` when the new timeline would start at or behind the last number (a
//! republish from timestamp 0); its names are then `STREAM-o<offset>-<ts>`, unique. Edges that
//! saw the same change agree again; `#EXT-X-DISCONTINUITY-SEQUENCE` counts the timelines that
//! left the window. Only a flood no window bounds (the open segment over [`MAX_BYTES`]) drops
//! everything.
//!
//! LIFECYCLE: `Waiting` (no open segment; frames before the first driver keyframe are
//! dropped; closed segments of earlier timelines stay listed) -> first driver keyframe ->
//! `Packaging` (open segment + open part; cuts as above) -> `reset`, config change or
//! timestamp jump -> `Waiting` (the next start is a discontinuity).

mod codec;
mod mp4;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use codec::{Audio, Video};

/// A segment longer than this many fragment slots is cut at the next driver frame anyway.
const MAX_SEGMENT_SLOTS: u64 = 5;
/// Hard cap on the memory one packager holds, whatever the window says.
pub const MAX_BYTES: usize = 192 << 20;
/// A driver timestamp this far behind the last one starts a new timeline.
const BACKWARD_RESTART_MS: u64 = 1000;
/// Audio frames further than this from the video timeline are dropped.
const MAX_AUDIO_SKEW_MS: u64 = 10_000;
/// Timestamp wraps counted at most (2^20 x 49.7 days): keeps every product in u64.
const MAX_EPOCH: u64 = 1 << 20;

/// SRS-like keys: `hls_fragment`, `hls_window`, `hls_part`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsOptions {
    /// Segment slot length (SRS `hls_fragment`).
    pub fragment: Duration,
    /// How much media the playlist keeps (SRS `hls_window`).
    pub window: Duration,
    /// LL-HLS part target (`hls_part`).
    pub part: Duration,
}

impl Default for HlsOptions {
    fn default() -> Self {
        HlsOptions {
            fragment: Duration::from_secs(2),
            window: Duration::from_secs(20),
            part: Duration::from_millis(500),
        }
    }
}

/// What a stream name becomes at the start of its file names: characters outside
/// `[A-Za-z0-9._~-]` become `_` (URL-safe without escaping); empty is `stream`.
pub fn file_prefix(name: &str) -> String {
    let prefix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._~-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if prefix.is_empty() {
        "stream".into()
    } else {
        prefix
    }
}

/// `_HLS_msn` / `_HLS_part` of a playlist request: `Ok(None)` without them (a plain reload),
/// `Err` for what the spec answers with 400 (`_HLS_part` alone, a bad number). Other
/// parameters (`_HLS_skip`, cache busters) are ignored.
pub fn parse_blocking_query(query: &str) -> Result<Option<(u64, Option<u64>)>, String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let (mut msn, mut part) = (None, None);
    for (key, value) in common::query::pairs(query) {
        let slot = match key {
            "_HLS_msn" => &mut msn,
            "_HLS_part" => &mut part,
            _ => continue,
        };
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{key}={value:?} is not a non-negative integer"))?;
        if slot.replace(n).is_some() {
            return Err(format!("{key} given twice"));
        }
    }
    match (msn, part) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("_HLS_part without _HLS_msn".into()),
        (Some(m), p) => Ok(Some((m, p))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoCfg {
    avcc: Bytes,
    width: u16,
    height: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AudioCfg {
    asc: Bytes,
    info: codec::AacInfo,
}

struct Frame {
    ts: u64,
    cts_ms: i32,
    key: bool,
    data: Bytes,
}

/// The part being filled.
struct OpenPart {
    start: u64,
    pslot: u64,
    independent: bool,
    video: Vec<Frame>,
    audio: Vec<Frame>,
    bytes: usize,
}

struct Part {
    dur: u64,
    independent: bool,
    data: Bytes,
}

struct Segment {
    msn: u64,
    dur: u64,
    /// Media time at its end, counted across timelines (for the window and part listing).
    pos_end: u64,
    /// Discontinuity sequence number and init segment name of its timeline.
    dseq: u64,
    map: String,
    /// File name without `.m4s` (`STREAM-<ts>` or `STREAM-gap<msn>`).
    stem: String,
    gap: bool,
    parts: Vec<Part>,
    data: Bytes,
}

struct OpenSegment {
    msn: u64,
    slot: u64,
    start: u64,
    pos_start: u64,
    dseq: u64,
    map: String,
    stem: String,
    parts: Vec<Part>,
    part: OpenPart,
}

/// Whether the init segment has a video and an audio track.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Tracks {
    video: bool,
    audio: bool,
}

/// One stream's HLS state. See the module doc for the rules.
pub struct Packager {
    opts: HlsOptions,
    prefix: String,
    frag_ms: u64,
    part_ms: u64,
    window_ms: u64,
    video: Option<VideoCfg>,
    audio: Option<AudioCfg>,
    tracks: Option<Tracks>,
    init: Option<(String, Bytes)>,
    /// Init segments of earlier timelines still referenced by a listed segment.
    old_inits: Vec<(String, Bytes)>,
    /// Added to the slot for the msn: 0 until a timeline starts behind the last number.
    offset: u64,
    dseq: u64,
    disc_pending: bool,
    /// Media time at the end of the last closed segment.
    elapsed: u64,
    segs: VecDeque<Segment>,
    open: Option<OpenSegment>,
    closed_bytes: usize,
    last_video: Option<u64>,
    last_audio: Option<u64>,
    last_raw: Option<u32>,
    epoch: u64,
    ignored: u64,
    last_ignored: Option<&'static str>,
}

impl Packager {
    /// A packager whose files are named `stream-*`; see [`Packager::with_name`].
    pub fn new(opts: HlsOptions) -> Self {
        Self::with_name(opts, "stream")
    }

    /// A packager whose files are `NAME-init-*.mp4`, `NAME-<ts>.m4s`, `NAME-<ts>.<i>.m4s`, so
    /// that `/APP/NAME.m3u8` and its files sit side by side. Characters outside
    /// `[A-Za-z0-9._~-]` in `name` become `_` (URL-safe without escaping).
    pub fn with_name(opts: HlsOptions, name: &str) -> Self {
        let ms = |d: Duration| (d.as_millis().min(u64::MAX as u128) as u64).max(1);
        let frag_ms = ms(opts.fragment).max(100);
        let part_ms = ms(opts.part).clamp(50, frag_ms);
        let window_ms = ms(opts.window).max(frag_ms);
        let prefix = file_prefix(name);
        Packager {
            opts,
            prefix,
            frag_ms,
            part_ms,
            window_ms,
            video: None,
            audio: None,
            tracks: None,
            init: None,
            old_inits: Vec::new(),
            offset: 0,
            dseq: 0,
            disc_pending: false,
            elapsed: 0,
            segs: VecDeque::new(),
            open: None,
            closed_bytes: 0,
            last_video: None,
            last_audio: None,
            last_raw: None,
            epoch: 0,
            ignored: 0,
            last_ignored: None,
        }
    }

    pub fn options(&self) -> &HlsOptions {
        &self.opts
    }

    /// How many messages were ignored, and the reason for the last one (for a log line).
    pub fn ignored(&self) -> (u64, Option<&'static str>) {
        (self.ignored, self.last_ignored)
    }

    /// One media message as RTMP carries it (see the module doc). Never panics.
    pub fn push(&mut self, type_id: u8, timestamp_ms: u32, payload: &Bytes) {
        let ts = self.extend(timestamp_ms);
        let result = match type_id {
            8 => self.push_audio(ts, payload),
            9 => self.push_video(ts, payload),
            18 => Ok(()),
            _ => Err("not an audio, video or data message"),
        };
        if let Err(reason) = result {
            self.ignored += 1;
            self.last_ignored = Some(reason);
        }
    }

    /// A new source: closes the open segment, forgets the codec configs and the timestamp
    /// epoch; the next sequence headers and keyframe start a new timeline after an
    /// `#EXT-X-DISCONTINUITY` (the listed segments stay until the window drops them).
    pub fn reset(&mut self) {
        self.restart(true);
        self.video = None;
        self.audio = None;
        self.last_raw = None;
        self.epoch = 0;
    }

    /// The current timeline's init segment (`None` while waiting for a keyframe). Init
    /// segments of earlier timelines still listed are served by [`Packager::file`] under their
    /// `#EXT-X-MAP` names, like this one.
    pub fn init_segment(&self) -> Option<Bytes> {
        self.init.as_ref().map(|(_, b)| b.clone())
    }

    /// The current init segment's name, as `#EXT-X-MAP` lists it.
    pub fn init_name(&self) -> Option<&str> {
        self.init.as_ref().map(|(n, _)| n.as_str())
    }

    /// Memory held: init, closed segments (parts share their bytes) and the open segment.
    pub fn bytes(&self) -> usize {
        let init: usize = self
            .init
            .iter()
            .chain(&self.old_inits)
            .map(|(_, b)| b.len())
            .sum();
        let open = self.open.as_ref().map_or(0, |o| {
            o.parts.iter().map(|p| p.data.len()).sum::<usize>() + o.part.bytes
        });
        init + self.closed_bytes + open
    }

    /// A file listed in the playlist: the init, a segment or a part. `None` if unknown,
    /// expired, a gap, or a part not complete yet (the preload hint).
    pub fn file(&self, name: &str) -> Option<Bytes> {
        for (init_name, init) in self.init.iter().chain(&self.old_inits) {
            if name == init_name {
                return Some(init.clone());
            }
        }
        let stem = name.strip_suffix(".m4s")?;
        // `NAME-<ts>.<i>` is a part; a dot in NAME itself is never followed by digits only.
        let (seg_stem, part) = match stem.rsplit_once('.') {
            Some((s, i)) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => {
                (s, Some(i.parse::<usize>().ok()?))
            }
            _ => (stem, None),
        };
        if let Some(seg) = self.segs.iter().find(|s| s.stem == seg_stem && !s.gap) {
            return match part {
                None => Some(seg.data.clone()),
                Some(i) => seg.parts.get(i).map(|p| p.data.clone()),
            };
        }
        let open = self.open.as_ref().filter(|o| o.stem == seg_stem)?;
        open.parts.get(part?).map(|p| p.data.clone())
    }

    /// The name a player will ask for next (`#EXT-X-PRELOAD-HINT`). A caller blocking on it
    /// answers 404 once the hint has moved on without the file appearing (a segment cut
    /// started a new segment instead).
    pub fn preload_hint(&self) -> Option<String> {
        let open = self.open.as_ref()?;
        Some(format!("{}.{}.m4s", open.stem, open.parts.len()))
    }

    /// Whether part `part` of segment `msn` is complete, the test for a blocking reload
    /// (`_HLS_msn=msn&_HLS_part=part`). A part index past the last part of a closed segment
    /// means the first part of the next one; numbers older than the playlist are true.
    pub fn has_part(&self, msn: u64, part: u64) -> bool {
        let Some((open_msn, open_parts)) = self.next_msn() else {
            return false;
        };
        let (mut msn, mut part) = (msn, part);
        loop {
            if msn >= open_msn {
                return msn == open_msn && part < open_parts;
            }
            let Some(seg) = self.segs.iter().find(|s| s.msn == msn) else {
                // Older than the playlist: long complete.
                return msn < self.segs.front().map_or(open_msn, |s| s.msn);
            };
            if part < seg.parts.len() as u64 {
                return true;
            }
            msn += 1;
            part = 0;
        }
    }

    /// Whether a blocking reload asks for a segment too far ahead to wait for (the spec's
    /// "last Media Sequence Number plus two"): answer 400 at once. False before any segment
    /// (the caller waits with its own timeout).
    pub fn too_far_ahead(&self, msn: u64) -> bool {
        self.next_msn()
            .is_some_and(|(open, _)| msn > open.saturating_add(2))
    }

    /// The number of the segment being filled (or the one after the last closed one while
    /// waiting for a new timeline) and its complete parts.
    fn next_msn(&self) -> Option<(u64, u64)> {
        match (&self.open, self.segs.back()) {
            (Some(o), _) => Some((o.msn, o.parts.len() as u64)),
            (None, Some(s)) => Some((s.msn + 1, 0)),
            (None, None) => None,
        }
    }

    /// Whether segment `msn` is complete (a blocking reload with `_HLS_msn` alone).
    pub fn has_segment(&self, msn: u64) -> bool {
        self.next_msn().is_some_and(|(open, _)| msn < open)
    }

    /// The media playlist, `None` until the first part is complete.
    pub fn playlist(&self) -> Option<String> {
        let open = self.open.as_ref();
        let open_parts = open.map_or(0, |o| o.parts.len());
        if self.segs.is_empty() && open_parts == 0 {
            return None;
        }
        let longest = self.segs.iter().map(|s| s.dur).max().unwrap_or(0);
        let target = longest.max(self.frag_ms).div_ceil(1000);
        let part_s = self.part_ms as f64 / 1000.0;
        let (first, first_dseq, first_map) = match (self.segs.front(), open) {
            (Some(s), _) => (s.msn, s.dseq, &s.map),
            (None, Some(o)) => (o.msn, o.dseq, &o.map),
            (None, None) => return None,
        };
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:9");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
            3.0 * part_s
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_s:.3}");
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
        if first_dseq > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{first_dseq}");
        }
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{first_map}\"");
        let mut dseq = first_dseq;
        let mut timeline = |out: &mut String, seg_dseq: u64, map: &str| {
            if seg_dseq != dseq {
                dseq = seg_dseq;
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"{map}\"");
            }
        };
        let now = open.map_or(self.elapsed, |o| o.pos_start);
        let parts_from = now.saturating_sub(3 * target * 1000);
        for seg in &self.segs {
            timeline(&mut out, seg.dseq, &seg.map);
            if seg.gap {
                let _ = writeln!(out, "#EXT-X-GAP\n#EXTINF:0.001,\n{}.m4s", seg.stem);
                continue;
            }
            if seg.pos_end > parts_from {
                write_parts(&mut out, &seg.stem, &seg.parts);
            }
            let _ = writeln!(out, "#EXTINF:{:.3},\n{}.m4s", secs(seg.dur), seg.stem);
        }
        if let Some(open) = open {
            timeline(&mut out, open.dseq, &open.map);
            write_parts(&mut out, &open.stem, &open.parts);
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.{}.m4s\"",
                open.stem,
                open.parts.len()
            );
        }
        Some(out)
    }

    // ---- input ----

    /// u32 ms -> u64 ms across wraps (a straggler from before a wrap keeps the old epoch).
    fn extend(&mut self, raw: u32) -> u64 {
        const HALF: u32 = 1 << 31;
        if let Some(last) = self.last_raw {
            if raw < last && last - raw > HALF {
                // Capped so that a publisher flipping timestamps forever cannot overflow.
                self.epoch = (self.epoch + 1).min(MAX_EPOCH);
            } else if raw > last && raw - last > HALF && self.epoch > 0 {
                return ((self.epoch - 1) << 32) | raw as u64;
            }
        }
        self.last_raw = Some(raw);
        (self.epoch << 32) | raw as u64
    }

    fn push_video(&mut self, ts: u64, payload: &Bytes) -> Result<(), &'static str> {
        match codec::parse_video(payload)? {
            Video::Skip => Ok(()),
            Video::Config(avcc) => {
                let (width, height) = codec::avc_dimensions(&avcc).unwrap_or((0, 0));
                let cfg = VideoCfg {
                    avcc,
                    width,
                    height,
                };
                if self.video.as_ref() != Some(&cfg) {
                    self.video = Some(cfg);
                    self.restart(true);
                }
                Ok(())
            }
            Video::Frame { key, cts_ms, data } => {
                if self.video.is_none() {
                    return Err("video frame before the AVC sequence header");
                }
                if let Some(last) = self.last_video {
                    if ts < last {
                        if last - ts <= BACKWARD_RESTART_MS {
                            return Err("video timestamp went backwards");
                        }
                        self.restart(true);
                    }
                }
                if self.open.is_none() {
                    if !key {
                        return Err("waiting for a keyframe");
                    }
                    self.start(ts, key);
                } else {
                    self.on_driver(ts, key);
                }
                self.last_video = Some(ts);
                self.add(
                    true,
                    Frame {
                        ts,
                        cts_ms,
                        key,
                        data,
                    },
                );
                Ok(())
            }
        }
    }

    fn push_audio(&mut self, ts: u64, payload: &Bytes) -> Result<(), &'static str> {
        match codec::parse_audio(payload)? {
            Audio::Config(asc) => {
                let info = codec::parse_asc(&asc)?;
                let cfg = AudioCfg { asc, info };
                if self.audio.as_ref() != Some(&cfg) {
                    self.audio = Some(cfg);
                    self.restart(true);
                }
                Ok(())
            }
            Audio::Frame(data) => {
                if self.audio.is_none() {
                    return Err("audio frame before the AAC sequence header");
                }
                let driver = self.video.is_none();
                if !driver {
                    // Audio rides along the video timeline: a frame far from it is garbage and
                    // must not become the reference that makes every later frame "backwards".
                    if let Some(v) = self
                        .last_video
                        .filter(|&v| ts.abs_diff(v) > MAX_AUDIO_SKEW_MS)
                    {
                        let _ = v;
                        return Err("audio timestamp far from the video's");
                    }
                }
                if let Some(last) = self.last_audio {
                    if ts < last {
                        if !driver || last - ts <= BACKWARD_RESTART_MS {
                            return Err("audio timestamp went backwards");
                        }
                        self.restart(true);
                    }
                }
                if self.open.is_none() {
                    if !driver {
                        return Err("waiting for a video keyframe");
                    }
                    self.start(ts, true);
                } else if driver {
                    self.on_driver(ts, true);
                }
                self.last_audio = Some(ts);
                let frame = Frame {
                    ts,
                    cts_ms: 0,
                    key: true,
                    data,
                };
                self.add(false, frame);
                Ok(())
            }
        }
    }

    // ---- segmenting ----

    /// Back to `Waiting`, keeping the codec configs and the listed segments: the next start
    /// is a new timeline after an `#EXT-X-DISCONTINUITY`. With `close_open` the open segment
    /// is closed (its last frame gets the duration of the one before it) and kept, unless
    /// not even its first part is complete (a config arriving just after the first keyframe).
    fn restart(&mut self, close_open: bool) {
        if close_open {
            if let Some(open) = self.open.as_ref().filter(|o| !o.parts.is_empty()) {
                let video = self.tracks.is_some_and(|t| t.video);
                let frames = if video {
                    &open.part.video
                } else {
                    &open.part.audio
                };
                if let Some(last) = frames.last() {
                    let step = frames
                        .len()
                        .checked_sub(2)
                        .map(|i| last.ts.saturating_sub(frames[i].ts))
                        .filter(|&d| d > 0)
                        .unwrap_or(if video { 33 } else { 23 });
                    self.close_segment(last.ts.saturating_add(step));
                }
            }
        }
        self.open = None;
        if let Some(init) = self.init.take() {
            self.old_inits.push(init);
        }
        self.tracks = None;
        self.last_video = None;
        self.last_audio = None;
        self.disc_pending = !self.segs.is_empty();
        self.prune();
    }

    /// Drops everything (a flood no window bounds).
    fn clear_all(&mut self) {
        self.open = None;
        self.segs.clear();
        self.closed_bytes = 0;
        self.restart(false);
    }

    fn start(&mut self, ts: u64, key: bool) {
        let tracks = Tracks {
            video: self.video.is_some(),
            audio: self.audio.is_some(),
        };
        let v = self.video.as_ref().map(|v| mp4::VideoTrack {
            avcc: &v.avcc,
            width: v.width,
            height: v.height,
        });
        let a = self.audio.as_ref().map(|a| mp4::AudioTrack {
            asc: &a.asc,
            rate: a.info.rate,
            channels: a.info.channels,
        });
        let init = mp4::init_segment(v.as_ref(), a.as_ref());
        let name = format!("{}-init-{:08x}.mp4", self.prefix, fnv1a(&init));
        self.init = Some((name, init));
        self.tracks = Some(tracks);
        let slot = ts / self.frag_ms;
        if let Some(last) = self.segs.back() {
            // A timeline that starts behind the last number continues the numbering.
            if slot.saturating_add(self.offset) <= last.msn {
                self.offset = last.msn + 1 - slot;
            }
        }
        if std::mem::take(&mut self.disc_pending) {
            self.dseq += 1;
        }
        self.open = Some(self.new_segment(slot, ts, key));
    }

    fn new_segment(&self, slot: u64, ts: u64, key: bool) -> OpenSegment {
        OpenSegment {
            msn: slot.saturating_add(self.offset),
            slot,
            start: ts,
            pos_start: self.elapsed,
            dseq: self.dseq,
            map: self.init.as_ref().map_or(String::new(), |(n, _)| n.clone()),
            // A renumbered timeline has its own names, so they cannot meet an older one's.
            stem: if self.offset == 0 {
                format!("{}-{}", self.prefix, ts)
            } else {
                format!("{}-o{}-{}", self.prefix, self.offset, ts)
            },
            parts: Vec::new(),
            part: self.new_part(ts, ts, key),
        }
    }

    /// A part from `ts` in the segment that started at `seg_start`: the part grid runs from
    /// the segment's start, so every part but the last is one part target long.
    fn new_part(&self, seg_start: u64, ts: u64, key: bool) -> OpenPart {
        OpenPart {
            start: ts,
            pslot: ts.saturating_sub(seg_start) / self.part_ms,
            independent: key,
            video: Vec::new(),
            audio: Vec::new(),
            bytes: 0,
        }
    }

    /// The cut decisions at a driver frame, before it is added.
    fn on_driver(&mut self, ts: u64, key: bool) {
        let Some(open) = &self.open else { return };
        let slot = ts / self.frag_ms;
        let window_slots = self.window_ms / self.frag_ms + 1;
        if slot > open.slot + window_slots + MAX_SEGMENT_SLOTS {
            // A jump forward past the whole window: a new timeline, not thousands of gaps.
            self.restart(true);
            if key {
                self.start(ts, key);
            }
            return;
        }
        if slot > open.slot && (key || slot >= open.slot + MAX_SEGMENT_SLOTS) {
            self.close_segment(ts);
            let msn_next = slot.saturating_add(self.offset);
            let last = self.segs.back().map_or(msn_next, |s| s.msn);
            for msn in last + 1..msn_next {
                self.segs.push_back(Segment {
                    msn,
                    dur: 0,
                    pos_end: self.elapsed,
                    dseq: self.dseq,
                    map: self.init.as_ref().map_or(String::new(), |(n, _)| n.clone()),
                    stem: format!("{}-gap{msn}", self.prefix),
                    gap: true,
                    parts: Vec::new(),
                    data: Bytes::new(),
                });
            }
            self.open = Some(self.new_segment(slot, ts, key));
            self.prune();
        } else if ts.saturating_sub(open.start) / self.part_ms > open.part.pslot {
            let next = self.new_part(open.start, ts, key);
            let Some(open) = self.open.as_mut() else {
                return;
            };
            let done = std::mem::replace(&mut open.part, next);
            let part = self.encode_part(done, ts);
            if let Some(open) = self.open.as_mut() {
                open.parts.push(part);
            }
        }
    }

    fn add(&mut self, video: bool, frame: Frame) {
        let Some(tracks) = self.tracks else { return };
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if (video && !tracks.video) || (!video && !tracks.audio) {
            return;
        }
        open.part.bytes += frame.data.len();
        if video {
            open.part.video.push(frame);
        } else {
            open.part.audio.push(frame);
        }
        // A flood that the window cannot bound (huge frames, no cut): start over.
        if self.bytes() > MAX_BYTES {
            self.clear_all();
        }
    }

    fn close_segment(&mut self, end: u64) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let last = std::mem::replace(&mut open.part, self.new_part(end, end, false));
        let part = self.encode_part(last, end);
        open.parts.push(part);
        let mut all = BytesMut::with_capacity(open.parts.iter().map(|p| p.data.len()).sum());
        for p in &open.parts {
            all.extend_from_slice(&p.data);
        }
        let data = all.freeze();
        // Parts become slices of the segment: one copy of the media in memory.
        let mut pos = 0;
        for p in &mut open.parts {
            let len = p.data.len();
            p.data = data.slice(pos..pos + len);
            pos += len;
        }
        self.closed_bytes += data.len();
        let msn = match self.segs.back() {
            Some(prev) if prev.msn >= open.msn => prev.msn + 1,
            _ => open.msn,
        };
        let dur = end.saturating_sub(open.start);
        self.elapsed = open.pos_start.saturating_add(dur).max(self.elapsed);
        self.segs.push_back(Segment {
            msn,
            dur,
            pos_end: self.elapsed,
            dseq: open.dseq,
            map: open.map,
            stem: open.stem,
            gap: false,
            parts: open.parts,
            data,
        });
    }

    fn prune(&mut self) {
        let newest = self.elapsed;
        while let Some(front) = self.segs.front() {
            let expired = front.pos_end.saturating_add(self.window_ms) < newest;
            if !expired && self.closed_bytes <= MAX_BYTES / 2 {
                break;
            }
            self.closed_bytes -= front.data.len();
            self.segs.pop_front();
        }
        // Never start the playlist with a gap entry.
        while self.segs.front().is_some_and(|s| s.gap) {
            self.segs.pop_front();
        }
        let segs = &self.segs;
        self.old_inits
            .retain(|(name, _)| segs.iter().any(|s| &s.map == name));
    }

    fn encode_part(&self, p: OpenPart, end: u64) -> Part {
        let mut runs = Vec::with_capacity(2);
        if let Some(first) = p.video.first() {
            let samples = p
                .video
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let next = p.video.get(i + 1).map_or(end, |n| n.ts);
                    mp4::Sample {
                        duration: next
                            .saturating_sub(f.ts)
                            .saturating_mul(90)
                            .min(u32::MAX as u64) as u32,
                        cts: f.cts_ms.saturating_mul(90),
                        key: f.key,
                        data: &f.data,
                    }
                })
                .collect();
            runs.push(mp4::TrackRun {
                id: mp4::VIDEO_TRACK,
                base_time: first.ts.saturating_mul(90),
                samples,
            });
        }
        if let (Some(first), Some(cfg)) = (p.audio.first(), &self.audio) {
            let samples = p
                .audio
                .iter()
                .map(|f| mp4::Sample {
                    duration: cfg.info.frame,
                    cts: 0,
                    key: true,
                    data: &f.data,
                })
                .collect();
            runs.push(mp4::TrackRun {
                id: mp4::AUDIO_TRACK,
                base_time: (first.ts as u128 * cfg.info.rate as u128 / 1000) as u64,
                samples,
            });
        }
        // mfhd's number must grow from fragment to fragment: derive it from the timestamp
        // (not a counter) so that every edge writes the same bytes.
        let data = mp4::fragment((p.start as u32).wrapping_add(1), &runs);
        Part {
            dur: end.saturating_sub(p.start),
            independent: p.independent,
            data,
        }
    }
}

fn write_parts(out: &mut String, stem: &str, parts: &[Part]) {
    for (i, p) in parts.iter().enumerate() {
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={:.3},URI=\"{stem}.{i}.m4s\"{}",
            secs(p.dur),
            if p.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        );
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// FNV-1a, 32 bits: a stable short name for the init segment's bytes.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests;
