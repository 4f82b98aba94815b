//! The stream hub: which streams exist, who feeds each (a publisher or an upstream pull), and
//! the shared fan-out of its media to every player.
//!
//! Owns: per-stream GOP cache, the broadcast ring players read from, timestamp continuity
//! across source changes, player counting (which drives the edge's pull lifetime).
//! Does not touch sockets: sessions feed it and read from it.
//!
//! Fan-out: every media message becomes one [`Frame`], encoded into RTMP chunks once
//! (`wire`) and handed to all players through a `tokio::sync::broadcast` ring as an
//! `Arc<Frame>`. A player that falls more than the ring behind gets `Lagged` and skips to the
//! next keyframe; the ring's size (from `queue_length`) bounds memory whatever players do.

use bytes::Bytes;
use common::rtmp::chunk::{self, csid, msg_type};
use common::rtmp::command;
use common::rtmp::media::{audio_kind, video_kind, MediaKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::broadcast;
use tracing::info;

/// The message stream id players are given by `createStream` and that `wire` is encoded for.
pub const PLAY_STREAM_ID: u32 = 1;
/// Frames kept in a GOP cache at most (a stream that never sends a keyframe stays bounded).
const GOP_MAX_FRAMES: usize = 4096;
const GOP_MAX_BYTES: usize = 32 * 1024 * 1024;

/// One media or data message, shared by every player.
#[derive(Debug)]
pub struct Frame {
    pub type_id: u8,
    pub timestamp: u32,
    pub kind: MediaKind,
    pub payload: Bytes,
    /// The message as chunks for stream id [`PLAY_STREAM_ID`] at the hub's chunk size.
    pub wire: Bytes,
}

impl Frame {
    pub fn csid(type_id: u8) -> u32 {
        match type_id {
            msg_type::AUDIO => csid::AUDIO,
            msg_type::VIDEO => csid::VIDEO,
            _ => csid::DATA,
        }
    }

    /// The frame's chunks for another message stream id (rare: a player that created more
    /// than one stream).
    pub fn encode_for(&self, stream_id: u32, chunk_size: usize) -> Bytes {
        chunk::encode_to_bytes(
            Self::csid(self.type_id),
            self.timestamp,
            self.type_id,
            stream_id,
            &self.payload,
            chunk_size,
        )
    }

    pub fn is_video_key(&self) -> bool {
        self.type_id == msg_type::VIDEO && self.kind == MediaKind::Keyframe
    }
}

pub type SharedFrame = Arc<Frame>;

#[derive(Debug, Clone)]
pub struct HubOptions {
    pub chunk_size: usize,
    pub gop_cache: bool,
    /// Broadcast ring capacity in messages.
    pub ring_capacity: usize,
}

/// What a test or status page can see of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub key: String,
    pub players: usize,
    pub has_source: bool,
    pub pulling: bool,
    pub frames_in: u64,
}

pub struct Hub {
    opts: HubOptions,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

pub struct Stream {
    pub key: String,
    hub: Weak<Hub>,
    tx: broadcast::Sender<SharedFrame>,
    inner: Mutex<StreamInner>,
}

#[derive(Default)]
struct StreamInner {
    /// Id of the session feeding the stream (publisher or pull), if any.
    source: Option<u64>,
    metadata: Option<SharedFrame>,
    video_seq: Option<SharedFrame>,
    audio_seq: Option<SharedFrame>,
    gop: Vec<SharedFrame>,
    gop_bytes: usize,
    players: usize,
    last_player_left: Option<Instant>,
    pulling: bool,
    frames_in: u64,
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
            opts,
            streams: Mutex::new(HashMap::new()),
        })
    }

    fn stream(self: &Arc<Self>, key: &str) -> Arc<Stream> {
        let mut map = self.streams.lock().unwrap();
        map.entry(key.to_string())
            .or_insert_with(|| {
                let (tx, _) = broadcast::channel(self.opts.ring_capacity);
                Arc::new(Stream {
                    key: key.to_string(),
                    hub: Arc::downgrade(self),
                    tx,
                    inner: Mutex::new(StreamInner::default()),
                })
            })
            .clone()
    }

    /// Removes a stream that nobody feeds, plays or pulls any more.
    fn maybe_remove(&self, key: &str) {
        let mut map = self.streams.lock().unwrap();
        if let Some(s) = map.get(key) {
            let i = s.inner.lock().unwrap();
            if i.source.is_none() && i.players == 0 && !i.pulling {
                drop(i);
                map.remove(key);
            }
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
                self.maybe_remove(key);
                return Err(HubError::AlreadyPublishing(key.to_string()));
            }
            i.source = Some(id);
            i.rebase_pending = i.last_out_ts.is_some();
        }
        Ok(Source {
            stream,
            id,
            chunk_size: self.opts.chunk_size,
            gop_cache: self.opts.gop_cache,
        })
    }

    /// Adds a player. With `may_pull` (edge mode), the first player of a stream that has
    /// neither a source nor a running pull marks it as pulling and gets `true` back: that
    /// caller starts the pull (decided under the stream's lock, so once per pull lifetime).
    pub fn subscribe(self: &Arc<Self>, key: &str, may_pull: bool) -> (Player, bool) {
        let stream = self.stream(key);
        let (rx, initial, start_pull) = {
            let mut i = stream.inner.lock().unwrap();
            i.players += 1;
            i.last_player_left = None;
            let mut initial: Vec<SharedFrame> = Vec::new();
            initial.extend(i.metadata.iter().cloned());
            initial.extend(i.video_seq.iter().cloned());
            initial.extend(i.audio_seq.iter().cloned());
            initial.extend(i.gop.iter().cloned());
            let start_pull = may_pull && i.source.is_none() && !i.pulling;
            if start_pull {
                i.pulling = true;
            }
            (stream.tx.subscribe(), initial, start_pull)
        };
        (
            Player {
                stream,
                rx,
                initial,
            },
            start_pull,
        )
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
        }
    }

    /// For the pull task: if no player has been here for `linger`, end the pull (atomically
    /// with respect to new subscribers) and return true.
    pub fn stop_pull_if_idle(&self, linger: std::time::Duration, now: Instant) -> bool {
        let mut i = self.inner.lock().unwrap();
        let idle = i.players == 0
            && i.last_player_left
                .map(|t| now.duration_since(t) >= linger)
                .unwrap_or(true);
        if idle {
            i.pulling = false;
            drop(i);
            if let Some(hub) = self.hub.upgrade() {
                hub.maybe_remove(&self.key);
            }
        }
        idle
    }
}

/// The right to feed a stream; dropping it ends the source (players stay and wait).
pub struct Source {
    stream: Arc<Stream>,
    id: u64,
    chunk_size: usize,
    gop_cache: bool,
}

impl Source {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Feeds one audio, video or data message. Data messages other than onMetaData are
    /// passed through without being cached.
    pub fn push(&self, type_id: u8, timestamp: u32, payload: Bytes) {
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
        let mut i = self.stream.inner.lock().unwrap();
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
        let wire = chunk::encode_to_bytes(
            Frame::csid(type_id),
            ts,
            type_id,
            PLAY_STREAM_ID,
            &payload,
            self.chunk_size,
        );
        let frame = Arc::new(Frame {
            type_id,
            timestamp: ts,
            kind,
            payload,
            wire,
        });
        i.frames_in += 1;
        match (type_id, kind) {
            (msg_type::DATA_AMF0, MediaKind::SequenceHeader) => i.metadata = Some(frame.clone()),
            (msg_type::VIDEO, MediaKind::SequenceHeader) => {
                i.video_seq = Some(frame.clone());
                i.gop.clear();
                i.gop_bytes = 0;
            }
            (msg_type::AUDIO, MediaKind::SequenceHeader) => i.audio_seq = Some(frame.clone()),
            (msg_type::DATA_AMF0, _) => {}
            _ if self.gop_cache => {
                if frame.is_video_key() {
                    i.gop.clear();
                    i.gop_bytes = 0;
                }
                // Audio before the first keyframe is useless to a joining player.
                if !i.gop.is_empty() || frame.is_video_key() {
                    i.gop_bytes += frame.payload.len();
                    i.gop.push(frame.clone());
                    if i.gop.len() > GOP_MAX_FRAMES || i.gop_bytes > GOP_MAX_BYTES {
                        i.gop.clear();
                        i.gop_bytes = 0;
                    }
                }
            }
            _ => {}
        }
        // Sent under the lock so a subscriber's snapshot and its ring position agree.
        let _ = self.stream.tx.send(frame);
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        {
            let mut i = self.stream.inner.lock().unwrap();
            if i.source == Some(self.id) {
                i.source = None;
                i.gop.clear();
                i.gop_bytes = 0;
                i.metadata = None;
                i.video_seq = None;
                i.audio_seq = None;
            }
        }
        info!(stream = %self.stream.key, "source ended");
        if let Some(hub) = self.stream.hub.upgrade() {
            hub.maybe_remove(&self.stream.key);
        }
    }
}

/// A player's policy after falling a ring behind: send nothing until the next keyframe (or
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
    /// The ring overwrote `n` messages this player had not read.
    pub fn lagged(&mut self, n: u64) {
        self.skipping = true;
        self.lost += n;
    }

    /// Whether `frame` is to be sent.
    pub fn admit(&mut self, frame: &Frame) -> bool {
        if self.skipping {
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

/// A player's view of a stream: what to send first, then the live ring.
pub struct Player {
    pub stream: Arc<Stream>,
    pub rx: broadcast::Receiver<SharedFrame>,
    /// Metadata, sequence headers and the GOP so far, to send before anything from `rx`.
    pub initial: Vec<SharedFrame>,
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
            hub.maybe_remove(&self.stream.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        Hub::new(HubOptions {
            chunk_size: 4096,
            gop_cache: true,
            ring_capacity: 64,
        })
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
    }

    #[test]
    fn timestamps_continue_across_sources() {
        let hub = hub();
        let (p, _) = hub.subscribe("live/b", false);
        let mut rx = p.stream.tx.subscribe();
        let s1 = hub.start_source("live/b", 1).unwrap();
        s1.push(msg_type::VIDEO, 5000, Bytes::from_static(&[0x17, 1]));
        drop(s1);
        let s2 = hub.start_source("live/b", 2).unwrap();
        s2.push(msg_type::VIDEO, 0, Bytes::from_static(&[0x17, 1]));
        assert_eq!(rx.try_recv().unwrap().timestamp, 5000);
        assert_eq!(rx.try_recv().unwrap().timestamp, 5040);
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
        loop {
            match p.rx.try_recv() {
                Ok(f) => {
                    if skipper.admit(&f) {
                        sent.push(f.timestamp / 10);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => skipper.lagged(n),
                Err(_) => break,
            }
        }
        assert_eq!(skipper.lost, 36, "the ring kept the last 64 of 100");
        // Messages 36..70 are dropped; the player resumes exactly at the keyframe at 70.
        assert_eq!(sent.first(), Some(&70));
        assert_eq!(sent, (70..100).collect::<Vec<_>>());
        assert_eq!(skipper.dropped, 34);
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
        assert!(stream.stop_pull_if_idle(std::time::Duration::ZERO, Instant::now()));
        drop(stream);
        assert!(hub.info("live/c").is_none());
    }
}
