//! The stream hub: which streams exist, who feeds each (a publisher or an upstream pull), and
//! the shared fan-out of its media to every player.
//!
//! Owns: per-stream GOP cache, the fan-out [`ring`] players read from, timestamp continuity
//! across source changes, player counting (which drives the edge's pull lifetime), the
//! end of a stream that no origin has, and keepalive traffic while a stream has no source.
//! Does not touch sockets: sessions feed it and read from it.
//!
//! Fan-out: every media message becomes one [`Frame`] (type, timestamp, payload: nothing of
//! any protocol), held once in the stream's ring as an `Arc<Frame>`; every player reads the
//! same frames through its own cursor, and each output (`crate::output`) encodes a frame
//! once per stream into the frame's own slot. Memory is bounded by the ring's bounds (time =
//! `queue_length`, bytes = `max_queue_bytes` per stream and `max_queue_bytes_total` per
//! server): a player that falls behind the ring skips to the next keyframe.

pub mod ring;
pub mod spool;

use bytes::Bytes;
use common::rtmp::chunk::msg_type;
use common::rtmp::command::{self, user_control};
use common::rtmp::media::{audio_codec, audio_kind, video_codec, video_kind, MediaKind};
use ring::{Budget, Limits, Read, Ring};
use spool::{Span, Spool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// A stream without media for this long gets a keepalive ping to its players, so that no
/// intermediary (a proxy's idle timer) cuts them while the edge waits for the source.
pub const KEEPALIVE_AFTER: Duration = Duration::from_secs(2);

/// Encodings a frame can carry besides its payload: one slot per output
/// (`crate::output::rtmp::SLOT`, `crate::output::flv::SLOT`).
pub const ENCODINGS: usize = 2;

/// One media or data message, shared by every player of every output.
#[derive(Debug)]
pub struct Frame {
    pub type_id: u8,
    pub timestamp: u32,
    pub kind: MediaKind,
    pub payload: Bytes,
    /// The frame as each output sends it, made by the first player that needs it and then
    /// shared: an output encodes a frame once per stream, never once per viewer.
    encoded: [OnceLock<Bytes>; ENCODINGS],
    /// Where each encoding is in the stream's spool (`spool`), once the merged writer put it
    /// there; `None` if the spool could not take it.
    spooled: [OnceLock<Option<Span>>; ENCODINGS],
}

impl Frame {
    pub fn new(type_id: u8, timestamp: u32, kind: MediaKind, payload: Bytes) -> Frame {
        Frame {
            type_id,
            timestamp,
            kind,
            payload,
            encoded: Default::default(),
            spooled: Default::default(),
        }
    }

    /// The frame in output `slot`'s encoding (made by `encode` the first time).
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Frame) -> Bytes) -> Bytes {
        self.encoded[slot].get_or_init(|| encode(self)).clone()
    }

    /// Where the frame's encoding `slot` is in its stream's spool, appended by `append` the
    /// first time; `None` if it is not there (the spool could not take it).
    pub fn spooled(&self, slot: usize, append: impl FnOnce() -> Option<Span>) -> Option<&Span> {
        self.spooled[slot].get_or_init(append).as_ref()
    }

    pub fn is_video_key(&self) -> bool {
        self.type_id == msg_type::VIDEO && self.kind == MediaKind::Keyframe
    }

    pub fn is_control(&self) -> bool {
        self.type_id == msg_type::USER_CONTROL
    }

    /// Bytes this frame holds, counted for the queue bounds: the payload and one full
    /// encoding (RTMP's chunks; FLV's tag adds 15 bytes around the shared payload).
    pub fn size(&self) -> usize {
        2 * self.payload.len() + 64
    }
}

pub type SharedFrame = Arc<Frame>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Chunk size RTMP players get this stream's frames in (fixed per stream at its creation,
    /// so that one encoding serves them all).
    pub chunk_size: usize,
    pub gop_cache: bool,
    /// Bounds of each stream's ring.
    pub ring: Limits,
    /// Bytes all rings together may hold.
    pub max_total_bytes: usize,
    /// Whether the merged writer feeds players from a memory file with sendfile (`spool`);
    /// fixed per stream at its creation.
    pub sendfile: bool,
}

/// What a test or status page can see of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub key: String,
    pub players: usize,
    pub has_source: bool,
    pub pulling: bool,
    pub frames_in: u64,
    /// Bytes held by the stream's ring (GOP included).
    pub queued_bytes: usize,
    /// Media bytes received from sources, and written to players, in the stream's life.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Messages players lost or dropped to the lag policy.
    pub frames_skipped: u64,
    /// Times the pull lost its upstream and reconnected.
    pub reconnects: u64,
    pub video_codec: Option<&'static str>,
    pub audio_codec: Option<&'static str>,
    /// How long the current source has fed the stream.
    pub source_age: Option<Duration>,
    /// The stream's age.
    pub age: Duration,
}

/// What starts a stream's pull from an origin (the edge's `upstream`), injected so that
/// the hub does no I/O and knows nothing above it.
pub trait Upstream {
    /// Starts pulling `stream`, asked for as `name` (with its query) in `app`.
    fn pull(&self, stream: Arc<Stream>, app: &str, name: &str);
}

/// A player's request to pull the stream if nobody feeds it yet.
pub struct PullFrom<'a> {
    pub upstream: &'a dyn Upstream,
    pub app: &'a str,
    pub name: &'a str,
}

pub struct Hub {
    opts: Mutex<HubOptions>,
    budget: Arc<Budget>,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

pub struct Stream {
    pub key: String,
    created: Instant,
    bytes_out: std::sync::atomic::AtomicU64,
    frames_skipped: std::sync::atomic::AtomicU64,
    reconnects: std::sync::atomic::AtomicU64,
    /// Chunk size of this stream's RTMP encoding (`crate::output::rtmp`).
    pub chunk_size: usize,
    /// Whether this stream's encodings get a spool (`HubOptions::sendfile`).
    sendfile: bool,
    /// Each encoding's spool, made when the merged writer first asks for it (`None`: the
    /// kernel gave no memory file).
    spools: [OnceLock<Option<Arc<Spool>>>; ENCODINGS],
    hub: Weak<Hub>,
    budget: Arc<Budget>,
    changed: Notify,
    inner: Mutex<StreamInner>,
}

struct StreamInner {
    /// Id of the session feeding the stream (publisher or pull), if any.
    source: Option<u64>,
    metadata: Option<SharedFrame>,
    video_seq: Option<SharedFrame>,
    audio_seq: Option<SharedFrame>,
    ring: Ring,
    gop_cache: bool,
    players: usize,
    last_player_left: Option<Instant>,
    pulling: bool,
    frames_in: u64,
    bytes_in: u64,
    source_since: Option<Instant>,
    video_codec: Option<&'static str>,
    audio_codec: Option<&'static str>,
    last_push: Option<Instant>,
    /// Set when the stream ended for good (no origin has it): players are told and close.
    end: Option<String>,
    /// Output timestamps stay monotonic across source changes: out = in + offset.
    ts_offset: u32,
    last_out_ts: Option<u32>,
    rebase_pending: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(String),
}

impl Hub {
    pub fn new(opts: HubOptions) -> Arc<Hub> {
        Arc::new(Hub {
            budget: Arc::new(Budget::new(opts.max_total_bytes)),
            opts: Mutex::new(opts),
            streams: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> HubOptions {
        self.opts.lock().unwrap().clone()
    }

    /// Applies new options (a reload): bounds and GOP caching at once to every stream; the
    /// chunk size to streams created from now on.
    pub fn set_options(&self, opts: HubOptions) {
        self.budget.set_limit(opts.max_total_bytes);
        for s in self.streams.lock().unwrap().values() {
            let mut i = s.inner.lock().unwrap();
            i.ring.set_limits(opts.ring);
            i.gop_cache = opts.gop_cache;
            if !opts.gop_cache {
                i.ring.reset_gop();
            }
        }
        *self.opts.lock().unwrap() = opts;
    }

    /// Bytes held by every ring.
    pub fn queued_bytes(&self) -> usize {
        self.budget.used()
    }

    fn stream(self: &Arc<Self>, key: &str) -> Arc<Stream> {
        let opts = self.options();
        let mut map = self.streams.lock().unwrap();
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Stream {
                    key: key.to_string(),
                    created: Instant::now(),
                    bytes_out: Default::default(),
                    frames_skipped: Default::default(),
                    reconnects: Default::default(),
                    chunk_size: opts.chunk_size,
                    sendfile: opts.sendfile,
                    spools: Default::default(),
                    hub: Arc::downgrade(self),
                    budget: self.budget.clone(),
                    changed: Notify::new(),
                    inner: Mutex::new(StreamInner {
                        source: None,
                        metadata: None,
                        video_seq: None,
                        audio_seq: None,
                        ring: Ring::new(opts.ring),
                        gop_cache: opts.gop_cache,
                        players: 0,
                        last_player_left: None,
                        pulling: false,
                        frames_in: 0,
                        bytes_in: 0,
                        source_since: None,
                        video_codec: None,
                        audio_codec: None,
                        last_push: None,
                        end: None,
                        ts_offset: 0,
                        last_out_ts: None,
                        rebase_pending: false,
                    }),
                })
            })
            .clone()
    }

    /// Removes `stream` from the map when nobody feeds, plays or pulls it any more.
    fn maybe_remove(&self, stream: &Arc<Stream>) {
        let mut map = self.streams.lock().unwrap();
        let Some(s) = map.get(&stream.key) else {
            return;
        };
        if !Arc::ptr_eq(s, stream) {
            return;
        }
        let i = s.inner.lock().unwrap();
        if i.source.is_none() && i.players == 0 && !i.pulling {
            drop(i);
            map.remove(&stream.key);
        }
    }

    pub fn info(&self, key: &str) -> Option<StreamInfo> {
        let map = self.streams.lock().unwrap();
        map.get(key).map(|s| s.info())
    }

    pub fn list(&self) -> Vec<StreamInfo> {
        let map = self.streams.lock().unwrap();
        let mut v: Vec<_> = map.values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    pub fn has_source(&self, key: &str) -> bool {
        self.info(key).map(|i| i.has_source).unwrap_or(false)
    }

    /// Claims the stream for a source (publisher or pull session `id`).
    pub fn start_source(self: &Arc<Self>, key: &str, id: u64) -> Result<Source, HubError> {
        let stream = self.stream(key);
        {
            let mut i = stream.inner.lock().unwrap();
            if i.source.is_some() {
                drop(i);
                self.maybe_remove(&stream);
                return Err(HubError::AlreadyPublishing(key.to_string()));
            }
            i.source = Some(id);
            i.source_since = Some(Instant::now());
            i.rebase_pending = i.last_out_ts.is_some();
        }
        Ok(Source { stream, id })
    }

    /// Adds a player. With `may_pull` (edge mode), the first player of a stream that has
    /// neither a source nor a running pull marks it as pulling and gets `true` back: that
    /// caller starts the pull (decided under the stream's lock, so once per pull lifetime).
    pub fn subscribe(self: &Arc<Self>, key: &str, may_pull: bool) -> (Player, bool) {
        let stream = self.stream(key);
        let (cursor, initial, start_pull) = {
            let mut i = stream.inner.lock().unwrap();
            i.players += 1;
            i.last_player_left = None;
            let mut initial: Vec<SharedFrame> = Vec::new();
            initial.extend(i.metadata.iter().cloned());
            initial.extend(i.video_seq.iter().cloned());
            initial.extend(i.audio_seq.iter().cloned());
            initial.extend(
                i.ring
                    .gop()
                    .filter(|f| {
                        matches!(f.type_id, msg_type::AUDIO | msg_type::VIDEO)
                            && f.kind != MediaKind::SequenceHeader
                    })
                    .cloned(),
            );
            let start_pull = may_pull && i.source.is_none() && !i.pulling;
            if start_pull {
                i.pulling = true;
            }
            (i.ring.tail(), initial, start_pull)
        };
        (
            Player {
                stream,
                cursor,
                initial,
            },
            start_pull,
        )
    }

    /// Adds a player of any output; on an edge (`pull` given), the stream's first player
    /// has `upstream` start the pull (once per pull lifetime: see [`Hub::subscribe`]).
    pub fn watch(self: &Arc<Self>, key: &str, pull: Option<PullFrom<'_>>) -> Player {
        let (player, start) = self.subscribe(key, pull.is_some());
        if let (true, Some(p)) = (start, pull) {
            p.upstream.pull(player.stream.clone(), p.app, p.name);
        }
        player
    }

    /// Sends a keepalive to the players of every stream that has had no media for
    /// [`KEEPALIVE_AFTER`] (its source is gone or silent). Called every second or so.
    pub fn keepalive(&self, now: Instant) {
        let streams: Vec<Arc<Stream>> = self.streams.lock().unwrap().values().cloned().collect();
        for s in streams {
            s.keepalive(now);
        }
    }
}

impl Stream {
    pub fn info(&self) -> StreamInfo {
        let i = self.inner.lock().unwrap();
        StreamInfo {
            key: self.key.clone(),
            players: i.players,
            has_source: i.source.is_some(),
            pulling: i.pulling,
            frames_in: i.frames_in,
            queued_bytes: i.ring.bytes(),
            bytes_in: i.bytes_in,
            bytes_out: self.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
            frames_skipped: self
                .frames_skipped
                .load(std::sync::atomic::Ordering::Relaxed),
            reconnects: self.reconnects.load(std::sync::atomic::Ordering::Relaxed),
            video_codec: i.video_codec,
            audio_codec: i.audio_codec,
            source_age: i.source.and(i.source_since).map(|t| t.elapsed()),
            age: self.created.elapsed(),
        }
    }

    /// The spool of encoding `slot` (made now if this is the first ask), or `None` when the
    /// stream is written without (`sendfile` off, or no memory file).
    pub fn spool(&self, slot: usize) -> Option<&Arc<Spool>> {
        if !self.sendfile {
            return None;
        }
        self.spools[slot]
            .get_or_init(|| Spool::new(&self.key))
            .as_ref()
    }

    /// A player wrote `n` bytes of this stream.
    pub fn add_out(&self, n: u64) {
        self.bytes_out
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// A player lost or dropped `n` messages to the lag policy.
    pub fn add_skipped(&self, n: u64) {
        self.frames_skipped
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// The pull lost its upstream and goes on reconnecting.
    pub fn count_reconnect(&self) {
        self.reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the stream had media from a source at some point (a pull that drops is then
    /// waited for; a stream never seen is answered "not found").
    pub fn ever_played(&self) -> bool {
        self.inner.lock().unwrap().last_out_ts.is_some()
    }

    /// For the pull task: if no player has been here for `linger`, end the pull (atomically
    /// with respect to new subscribers) and return true.
    pub fn stop_pull_if_idle(self: &Arc<Self>, linger: Duration, now: Instant) -> bool {
        let mut i = self.inner.lock().unwrap();
        let idle = i.players == 0
            && i.last_player_left
                .map(|t| now.duration_since(t) >= linger)
                .unwrap_or(true);
        if idle {
            i.pulling = false;
            drop(i);
            if let Some(hub) = self.hub.upgrade() {
                hub.maybe_remove(self);
            }
        }
        idle
    }

    /// The pull ends and the stream goes on: another source (a publisher on this origin)
    /// feeds it now.
    pub fn pull_ended(self: &Arc<Self>) {
        self.inner.lock().unwrap().pulling = false;
        if let Some(hub) = self.hub.upgrade() {
            hub.maybe_remove(self);
        }
    }

    /// Ends the stream for good: its players are told `reason` and close, the pull stops,
    /// and the stream leaves the hub at once (a later player starts afresh).
    pub fn end(self: &Arc<Self>, reason: String) {
        {
            let mut i = self.inner.lock().unwrap();
            i.pulling = false;
            i.end = Some(reason);
        }
        if let Some(hub) = self.hub.upgrade() {
            let mut map = hub.streams.lock().unwrap();
            if map.get(&self.key).is_some_and(|s| Arc::ptr_eq(s, self)) {
                map.remove(&self.key);
            }
        }
        self.changed.notify_waiters();
    }

    fn keepalive(&self, now: Instant) {
        let mut i = self.inner.lock().unwrap();
        let quiet = i
            .last_push
            .map(|t| now.saturating_duration_since(t) >= KEEPALIVE_AFTER)
            .unwrap_or(true);
        if i.players == 0 || !quiet || i.end.is_some() {
            return;
        }
        // A user-control PingRequest: RTMP players answer it (PingResponse) or ignore it, and
        // it moves bytes both ways through any proxy.
        let stamp = i.ring.tail() as u32;
        let payload = command::user_control(user_control::PING_REQUEST, stamp);
        let frame = Arc::new(Frame::new(
            msg_type::USER_CONTROL,
            0,
            MediaKind::Frame,
            payload,
        ));
        let size = frame.size();
        i.last_push = Some(now);
        i.ring.push(frame, size, now, false, false, &self.budget);
        drop(i);
        self.changed.notify_waiters();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let i = self.inner.get_mut().unwrap();
        i.ring.clear(&self.budget);
    }
}

/// The right to feed a stream; dropping it ends the source (players stay and wait).
pub struct Source {
    stream: Arc<Stream>,
    id: u64,
}

impl Source {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Feeds one audio, video or data message. Data messages other than onMetaData are
    /// passed through without being cached.
    pub fn push(&self, type_id: u8, timestamp: u32, payload: Bytes) {
        self.push_at(type_id, timestamp, payload, Instant::now())
    }

    pub fn push_at(&self, type_id: u8, timestamp: u32, payload: Bytes, now: Instant) {
        let (kind, payload) = match type_id {
            msg_type::VIDEO => (video_kind(&payload), payload),
            msg_type::AUDIO => (audio_kind(&payload), payload),
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                let p = command::strip_set_data_frame(&payload);
                let kind = if command::is_on_metadata(&p) {
                    MediaKind::SequenceHeader
                } else {
                    MediaKind::Frame
                };
                (kind, p)
            }
            _ => return,
        };
        let type_id = if type_id == msg_type::DATA_AMF3 {
            msg_type::DATA_AMF0
        } else {
            type_id
        };
        let stream = &self.stream;
        let mut i = stream.inner.lock().unwrap();
        if i.rebase_pending {
            let last = i.last_out_ts.unwrap_or(0);
            i.ts_offset = last.wrapping_add(40).wrapping_sub(timestamp);
            i.rebase_pending = false;
        }
        let ts = if type_id == msg_type::DATA_AMF0 && kind == MediaKind::SequenceHeader {
            // Metadata is timeless: a player joining later gets it at its own start.
            0
        } else {
            timestamp.wrapping_add(i.ts_offset)
        };
        if type_id != msg_type::DATA_AMF0 {
            i.last_out_ts = Some(ts);
        }
        let frame = Arc::new(Frame::new(type_id, ts, kind, payload));
        i.frames_in += 1;
        i.bytes_in += frame.payload.len() as u64;
        i.last_push = Some(now);
        match (type_id, kind) {
            (msg_type::DATA_AMF0, MediaKind::SequenceHeader) => i.metadata = Some(frame.clone()),
            (msg_type::VIDEO, MediaKind::SequenceHeader) => {
                i.video_codec = video_codec(&frame.payload);
                i.video_seq = Some(frame.clone());
                i.ring.reset_gop();
            }
            (msg_type::AUDIO, MediaKind::SequenceHeader) => {
                i.audio_codec = audio_codec(&frame.payload);
                i.audio_seq = Some(frame.clone());
            }
            (msg_type::VIDEO, _) if i.video_codec.is_none() => {
                i.video_codec = video_codec(&frame.payload)
            }
            (msg_type::AUDIO, _) if i.audio_codec.is_none() => {
                i.audio_codec = audio_codec(&frame.payload)
            }
            _ => {}
        }
        let size = frame.size();
        let starts_gop = frame.is_video_key();
        let gop = i.gop_cache;
        let evicted = i.ring.evicted_for_bytes;
        i.ring
            .push(frame, size, now, starts_gop, gop, &stream.budget);
        let pressure = i.ring.evicted_for_bytes > evicted && evicted == 0;
        drop(i);
        if pressure {
            warn!(
                stream = %stream.key,
                frame_bytes = size,
                "queue byte bound reached (max_queue_bytes / max_queue_bytes_total): oldest frames dropped, slow players skip to the next keyframe"
            );
        }
        stream.changed.notify_waiters();
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        {
            let mut i = self.stream.inner.lock().unwrap();
            if i.source == Some(self.id) {
                i.source = None;
                i.ring.reset_gop();
                i.metadata = None;
                i.video_seq = None;
                i.audio_seq = None;
            }
        }
        info!(stream = %self.stream.key, "source ended");
        if let Some(hub) = self.stream.hub.upgrade() {
            hub.maybe_remove(&self.stream);
        }
    }
}

/// A player's policy after falling behind the ring: send nothing until the next keyframe (or
/// sequence header), so the decoder restarts cleanly instead of on a broken reference chain.
#[derive(Debug, Default)]
pub struct Skipper {
    skipping: bool,
    /// Messages lost to lag, in total.
    pub lost: u64,
    /// Messages dropped while waiting for a keyframe, in total.
    pub dropped: u64,
}

impl Skipper {
    /// The ring dropped `n` messages this player had not read.
    pub fn lagged(&mut self, n: u64) {
        self.skipping = true;
        self.lost += n;
    }

    /// Whether `frame` is to be sent.
    pub fn admit(&mut self, frame: &Frame) -> bool {
        if self.skipping && !frame.is_control() {
            if frame.is_video_key() || frame.kind == MediaKind::SequenceHeader {
                self.skipping = false;
            } else {
                self.dropped += 1;
                return false;
            }
        }
        true
    }
}

/// What [`Player::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum PlayerEvent {
    /// Frames were appended to the output.
    Frames(usize),
    /// The player was `n` frames behind the ring and lost them.
    Lagged(u64),
    /// The stream ended for good, with the reason.
    Ended(String),
}

/// A player's view of a stream: what to send first, then the live ring.
pub struct Player {
    pub stream: Arc<Stream>,
    cursor: u64,
    /// Metadata, sequence headers and the GOP so far, to send before anything else.
    pub initial: Vec<SharedFrame>,
}

impl Player {
    /// Takes what is ready without waiting: at most `max_frames`, and past the first frame
    /// at most `max_bytes`. `None` when nothing is.
    pub fn try_next(
        &mut self,
        out: &mut Vec<SharedFrame>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Option<PlayerEvent> {
        let i = self.stream.inner.lock().unwrap();
        match i.ring.read(&mut self.cursor, out, max_frames, max_bytes) {
            Read::Frames(n) => Some(PlayerEvent::Frames(n)),
            Read::Lagged(n) => Some(PlayerEvent::Lagged(n)),
            Read::Empty => i.end.clone().map(PlayerEvent::Ended),
        }
    }

    /// Waits until frames are ready (or the stream ended). Cancel-safe: frames are taken
    /// only when it returns.
    pub async fn next(
        &mut self,
        out: &mut Vec<SharedFrame>,
        max_frames: usize,
        max_bytes: usize,
    ) -> PlayerEvent {
        // Frames are usually there already (a player waits for the merged-write tick, not
        // for each frame): take them without touching the stream's waiter list.
        if let Some(ev) = self.try_next(out, max_frames, max_bytes) {
            return ev;
        }
        let stream = self.stream.clone();
        loop {
            let notified = stream.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(ev) = self.try_next(out, max_frames, max_bytes) {
                return ev;
            }
            notified.await;
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        {
            let mut i = self.stream.inner.lock().unwrap();
            i.players -= 1;
            if i.players == 0 {
                i.last_player_left = Some(Instant::now());
            }
        }
        if let Some(hub) = self.stream.hub.upgrade() {
            hub.maybe_remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with(max_frames: usize, max_bytes: usize, total: usize) -> Arc<Hub> {
        Hub::new(HubOptions {
            chunk_size: 4096,
            gop_cache: true,
            ring: Limits {
                window: Duration::from_secs(10),
                max_frames,
                max_bytes,
            },
            max_total_bytes: total,
            sendfile: true,
        })
    }

    fn hub() -> Arc<Hub> {
        hub_with(64, 1 << 30, usize::MAX)
    }

    fn drain(p: &mut Player) -> Vec<SharedFrame> {
        let mut out = Vec::new();
        while let Some(PlayerEvent::Frames(_)) = p.try_next(&mut out, 1000, usize::MAX) {}
        out
    }

    #[test]
    fn gop_cache_and_second_publisher() {
        let hub = hub();
        let src = hub.start_source("live/a", 1).unwrap();
        assert_eq!(
            hub.start_source("live/a", 2).err(),
            Some(HubError::AlreadyPublishing("live/a".into()))
        );
        src.push(msg_type::VIDEO, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0]));
        src.push(msg_type::AUDIO, 0, Bytes::from_static(&[0xaf, 0, 1]));
        src.push(msg_type::VIDEO, 40, Bytes::from_static(&[0x27, 1, 0]));
        src.push(msg_type::VIDEO, 80, Bytes::from_static(&[0x17, 1, 0]));
        src.push(msg_type::AUDIO, 90, Bytes::from_static(&[0xaf, 1, 2]));
        let (p, pull) = hub.subscribe("live/a", true);
        assert!(!pull, "no pull while published");
        let ts: Vec<u32> = p.initial.iter().map(|f| f.timestamp).collect();
        // Both sequence headers, then the GOP from the last keyframe.
        assert_eq!(ts, vec![0, 0, 80, 90]);
        assert_eq!(hub.info("live/a").unwrap().players, 1);
        drop(src);
        assert!(!hub.has_source("live/a"));
        drop(p);
        assert!(hub.info("live/a").is_none());
        assert_eq!(hub.queued_bytes(), 0, "a removed stream frees its ring");
    }

    #[test]
    fn timestamps_continue_across_sources() {
        let hub = hub();
        let (mut p, _) = hub.subscribe("live/b", false);
        let s1 = hub.start_source("live/b", 1).unwrap();
        s1.push(msg_type::VIDEO, 5000, Bytes::from_static(&[0x17, 1]));
        drop(s1);
        let s2 = hub.start_source("live/b", 2).unwrap();
        s2.push(msg_type::VIDEO, 0, Bytes::from_static(&[0x17, 1]));
        let ts: Vec<u32> = drain(&mut p).iter().map(|f| f.timestamp).collect();
        assert_eq!(ts, vec![5000, 5040]);
    }

    #[test]
    fn a_lagging_player_resumes_at_the_next_keyframe() {
        let hub = hub(); // ring of 64 messages
        let (mut p, _) = hub.subscribe("live/lag", false);
        let src = hub.start_source("live/lag", 1).unwrap();
        // 100 messages while the player reads nothing: keyframes at 0, 70 and 90.
        for i in 0..100u32 {
            let key = i == 0 || i == 70 || i == 90;
            let payload: &'static [u8] = if key {
                &[0x17, 1]
            } else if i % 2 == 0 {
                &[0x27, 1]
            } else {
                &[0xaf, 1]
            };
            src.push(
                if payload[0] == 0xaf {
                    msg_type::AUDIO
                } else {
                    msg_type::VIDEO
                },
                i * 10,
                Bytes::from_static(payload),
            );
        }
        let mut skipper = Skipper::default();
        let mut sent = Vec::new();
        let mut out = Vec::new();
        loop {
            match p.try_next(&mut out, 1000, usize::MAX) {
                Some(PlayerEvent::Frames(_)) => {
                    for f in out.drain(..) {
                        if skipper.admit(&f) {
                            sent.push(f.timestamp / 10);
                        }
                    }
                }
                Some(PlayerEvent::Lagged(n)) => skipper.lagged(n),
                _ => break,
            }
        }
        assert_eq!(skipper.lost, 36, "the ring kept the last 64 of 100");
        // Messages 36..70 are dropped; the player resumes exactly at the keyframe at 70.
        assert_eq!(sent.first(), Some(&70));
        assert_eq!(sent, (70..100).collect::<Vec<_>>());
        assert_eq!(skipper.dropped, 34);
    }

    #[test]
    fn huge_frames_stay_within_the_byte_bounds() {
        // A publisher of 1 MB frames with a player that never reads: the stream holds at
        // most its max_queue_bytes, the server its total.
        let hub = hub_with(100_000, 8 << 20, 12 << 20);
        let (_stalled, _) = hub.subscribe("live/big", false);
        let src = hub.start_source("live/big", 1).unwrap();
        let big = Bytes::from(vec![0x27u8; 1 << 20]);
        for i in 0..200u32 {
            src.push(msg_type::VIDEO, i * 33, big.clone());
            assert!(hub.info("live/big").unwrap().queued_bytes <= 8 << 20);
        }
        let src2 = hub.start_source("live/big2", 2).unwrap();
        let (_p2, _) = hub.subscribe("live/big2", false);
        for i in 0..200u32 {
            src2.push(msg_type::VIDEO, i * 33, big.clone());
            src.push(msg_type::VIDEO, i * 33, big.clone());
            assert!(
                hub.queued_bytes() <= (12 << 20) + (4 << 20),
                "{}",
                hub.queued_bytes()
            );
        }
    }

    #[test]
    fn an_ended_stream_tells_its_players_and_leaves_the_hub() {
        let hub = hub();
        let (mut p, pull) = hub.subscribe("live/none", true);
        assert!(pull);
        p.stream.end("not found".into());
        assert!(hub.info("live/none").is_none());
        let mut out = Vec::new();
        assert_eq!(
            p.try_next(&mut out, 10, 1000),
            Some(PlayerEvent::Ended("not found".into()))
        );
        // A later player starts afresh, with its own pull.
        let (_q, pull) = hub.subscribe("live/none", true);
        assert!(pull);
        drop(p);
        assert!(
            hub.info("live/none").is_some(),
            "the old player's exit keeps the new stream"
        );
    }

    #[test]
    fn keepalive_only_while_quiet() {
        let hub = hub();
        let (mut p, _) = hub.subscribe("live/ka", false);
        let t0 = Instant::now();
        hub.keepalive(t0);
        let out = drain(&mut p);
        assert_eq!(out.len(), 1, "no media yet: one ping");
        assert!(out[0].is_control());
        let src = hub.start_source("live/ka", 1).unwrap();
        src.push_at(msg_type::VIDEO, 0, Bytes::from_static(&[0x17, 1]), t0);
        hub.keepalive(t0 + Duration::from_secs(1));
        assert_eq!(
            drain(&mut p).len(),
            1,
            "the frame, no ping while media flows"
        );
        hub.keepalive(t0 + KEEPALIVE_AFTER);
        assert!(drain(&mut p)[0].is_control());
    }

    #[test]
    fn pull_requested_once() {
        let hub = hub();
        let (a, pull_a) = hub.subscribe("live/c", true);
        let (b, pull_b) = hub.subscribe("live/c", true);
        assert!(pull_a && !pull_b);
        drop(a);
        drop(b);
        let s = hub.info("live/c").unwrap();
        assert!(s.pulling && s.players == 0);
        let stream = hub.stream("live/c");
        assert!(stream.stop_pull_if_idle(Duration::ZERO, Instant::now()));
        drop(stream);
        assert!(hub.info("live/c").is_none());
    }
}
