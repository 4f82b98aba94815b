//! The RTMP chunk layer, both directions, written here instead of using rml_rtmp's
//! `ChunkDeserializer`/`ChunkSerializer` because those (0.8) keep one in-progress payload for
//! all chunk streams (interleaved messages break), can panic on a malformed header, put no bound
//! on the message length a peer claims, and serialise per session — while fan-out needs each
//! media message serialised once and shared by every player.
//!
//! [`ChunkDecoder`] is sans-I/O: it takes the bytes read so far and returns one whole message,
//! `Ok(None)` for "need more bytes", or an error that names the bad value. It never panics
//! and never allocates more than the bytes actually received (plus the configured limits).
//!
//! [`encode`] writes one message as a type-0 chunk followed by type-3 continuations. Every
//! message starts with a full header, so the bytes do not depend on what the receiver saw
//! before on that chunk stream: the same `Bytes` can be written to any number of players.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use thiserror::Error;

/// Chunk stream ids used when sending. Fixed per kind of message so nothing else shares them.
pub mod csid {
    pub const PROTOCOL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const VIDEO: u32 = 6;
    pub const DATA: u32 = 5;
}

/// RTMP message type ids.
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// The default chunk size of the protocol, before any Set Chunk Size.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// Largest chunk size we accept from a peer (the protocol allows 2^31 - 1).
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// More distinct chunk streams than any real client uses; bounds per-connection state.
const MAX_CHUNK_STREAMS: usize = 64;

/// One complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk stream {csid} continues (fmt {fmt}) with no previous header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("message of {length} bytes (type {type_id}) exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        length: usize,
        type_id: u8,
        limit: usize,
    },
    #[error("chunk stream {csid} changed its message length from {old} to {new} mid-message")]
    LengthChangedMidMessage { csid: u32, old: usize, new: usize },
    #[error("too many chunk streams (more than {MAX_CHUNK_STREAMS})")]
    TooManyChunkStreams,
    #[error("invalid chunk size {0} (allowed 1..={MAX_CHUNK_SIZE})")]
    InvalidChunkSize(u64),
}

#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    /// The timestamp field of the last header: the delta a type-3 chunk that starts a new
    /// message adds (after a type-0 header that is the absolute timestamp, as FFmpeg does).
    ts_field: u32,
    extended: bool,
    length: usize,
    type_id: u8,
    stream_id: u32,
    partial: Option<BytesMut>,
}

/// Decodes chunks into messages; see the module docs.
pub struct ChunkDecoder {
    chunk_size: usize,
    max_message_size: usize,
    streams: HashMap<u32, ChunkStream>,
}

impl ChunkDecoder {
    pub fn new(max_message_size: usize) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_size,
            streams: HashMap::new(),
        }
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        let size = (size & 0x7fff_ffff) as usize;
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size as u64));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Changes the largest message accepted from now on (raised once a client publishes).
    pub fn set_max_message_size(&mut self, limit: usize) {
        self.max_message_size = limit;
    }

    /// Applies an Abort message: drops the partial message of that chunk stream.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            s.partial = None;
        }
    }

    /// Consumes whole chunks from `buf` until one completes a message.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete chunk (nothing of a partial chunk is
    /// consumed). Set Chunk Size messages are returned like any other; the caller applies them
    /// with [`ChunkDecoder::set_chunk_size`] before decoding further.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.decode_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Message(m) => return Ok(Some(m)),
                Step::Continue => continue,
            }
        }
    }

    fn decode_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        let b = &buf[..];
        if b.is_empty() {
            return Ok(Step::NeedMore);
        }
        let fmt = b[0] >> 6;
        let (csid, mut pos) = match b[0] & 0x3f {
            0 => {
                if b.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                (64 + b[1] as u32, 2)
            }
            1 => {
                if b.len() < 3 {
                    return Ok(Step::NeedMore);
                }
                (64 + b[1] as u32 + ((b[2] as u32) << 8), 3)
            }
            n => (n as u32, 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        if b.len() < pos + header_len {
            return Ok(Step::NeedMore);
        }
        if fmt != 0 && !self.streams.contains_key(&csid) {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if fmt == 0 && !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS
        {
            return Err(ChunkError::TooManyChunkStreams);
        }
        let h = &b[pos..pos + header_len];
        let ts_field = if fmt < 3 { u24(h) } else { 0 };
        let (length, type_id) = if fmt < 2 {
            (u24(&h[3..]) as usize, Some(h[6]))
        } else {
            (0, None)
        };
        let stream_id = if fmt == 0 {
            Some(u32::from_le_bytes([h[7], h[8], h[9], h[10]]))
        } else {
            None
        };
        pos += header_len;

        let prev_extended = self.streams.get(&csid).map(|s| s.extended).unwrap_or(false);
        let extended = if fmt < 3 {
            ts_field == 0xff_ffff
        } else {
            prev_extended
        };
        let ext_ts = if extended {
            if b.len() < pos + 4 {
                return Ok(Step::NeedMore);
            }
            let v = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            pos += 4;
            Some(v)
        } else {
            None
        };

        // Work out the message this chunk belongs to without touching state yet, so that a
        // chunk whose payload has not fully arrived leaves everything as it was.
        let st = self.streams.get(&csid);
        let starting = st.map(|s| s.partial.is_none()).unwrap_or(true);
        let msg_len = if fmt < 2 {
            length
        } else {
            st.map(|s| s.length).unwrap_or(0)
        };
        if let (Some(s), false) = (st, starting) {
            if fmt < 2 && length != s.length {
                return Err(ChunkError::LengthChangedMidMessage {
                    csid,
                    old: s.length,
                    new: length,
                });
            }
        }
        if msg_len > self.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                length: msg_len,
                type_id: type_id.or(st.map(|s| s.type_id)).unwrap_or(0),
                limit: self.max_message_size,
            });
        }
        let have = st
            .and_then(|s| s.partial.as_ref())
            .map(|p| p.len())
            .unwrap_or(0);
        let take = (msg_len - have).min(self.chunk_size);
        if b.len() < pos + take {
            return Ok(Step::NeedMore);
        }

        // The chunk is complete: commit.
        let s = self.streams.entry(csid).or_default();
        if fmt < 3 {
            let field = ext_ts.unwrap_or(ts_field);
            s.ts_field = field;
            s.extended = extended;
        }
        if let Some(t) = type_id {
            s.type_id = t;
            s.length = length;
        }
        if let Some(id) = stream_id {
            s.stream_id = id;
        }
        if starting {
            s.timestamp = match fmt {
                0 => s.ts_field,
                _ => s.timestamp.wrapping_add(s.ts_field),
            };
        }
        buf.advance(pos);
        let data = buf.split_to(take);
        let partial = s.partial.take();
        let complete_len = have + take;
        if complete_len < s.length {
            let mut p = partial.unwrap_or_else(|| BytesMut::with_capacity(s.length.min(65536)));
            p.extend_from_slice(&data);
            s.partial = Some(p);
            return Ok(Step::Continue);
        }
        let payload = match partial {
            Some(mut p) => {
                p.extend_from_slice(&data);
                p.freeze()
            }
            None => data.freeze(),
        };
        Ok(Step::Message(Message {
            csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
            payload,
        }))
    }
}

enum Step {
    NeedMore,
    Continue,
    Message(Message),
}

fn u24(b: &[u8]) -> u32 {
    ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let v = csid.clamp(320, 65599) - 64;
            out.put_u8((fmt << 6) | 1);
            out.put_u8((v & 0xff) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

/// The number of bytes [`encode`] writes for a payload of `len` bytes.
pub fn encoded_len(csid: u32, timestamp: u32, len: usize, chunk_size: usize) -> usize {
    let basic = match csid {
        2..=63 => 1,
        64..=319 => 2,
        _ => 3,
    };
    let ext = if timestamp >= 0xff_ffff { 4 } else { 0 };
    let chunks = len.div_ceil(chunk_size).max(1);
    basic + 11 + ext + (chunks - 1) * (basic + ext) + len
}

/// Appends one message as chunks: a type-0 header, then type-3 continuations.
pub fn encode(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    let chunk_size = chunk_size.max(1);
    out.reserve(encoded_len(csid, timestamp, payload.len(), chunk_size));
    let extended = timestamp >= 0xff_ffff;
    put_basic_header(out, 0, csid);
    let field = if extended { 0xff_ffff } else { timestamp };
    out.put_uint(field as u64, 3);
    out.put_uint(payload.len() as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for c in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(c);
    }
}

/// [`encode`] into a fresh buffer.
pub fn encode_to_bytes(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Bytes {
    let mut out = BytesMut::new();
    encode(
        &mut out, csid, timestamp, type_id, stream_id, payload, chunk_size,
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(ts: u32, len: usize, chunk: usize) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let wire = encode_to_bytes(6, ts, msg_type::VIDEO, 1, &payload, chunk);
        assert_eq!(wire.len(), encoded_len(6, ts, len, chunk));
        let mut d = ChunkDecoder::new(1 << 20);
        d.set_chunk_size(chunk as u32).unwrap();
        // Feed one byte at a time: every prefix must be "need more", never an error.
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in wire.iter() {
            buf.put_u8(*b);
            if let Some(m) = d.decode(&mut buf).unwrap() {
                got = Some(m);
            }
        }
        let m = got.expect("message decoded");
        assert_eq!(m.timestamp, ts);
        assert_eq!(m.stream_id, 1);
        assert_eq!(m.type_id, msg_type::VIDEO);
        assert_eq!(&m.payload[..], &payload[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn roundtrips() {
        roundtrip(0, 0, 128);
        roundtrip(40, 100, 128);
        roundtrip(40, 1000, 128);
        roundtrip(0xff_ffff, 1000, 128);
        roundtrip(0xffff_fff0, 70000, 4096);
        roundtrip(7, 256, 128);
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Two messages on different chunk streams, chunks interleaved.
        let a: Vec<u8> = vec![1; 200];
        let v: Vec<u8> = vec![2; 200];
        let wa = encode_to_bytes(4, 10, msg_type::AUDIO, 1, &a, 128);
        let wv = encode_to_bytes(6, 20, msg_type::VIDEO, 1, &v, 128);
        let (a1, a2) = wa.split_at(1 + 11 + 128);
        let (v1, v2) = wv.split_at(1 + 11 + 128);
        let mut buf = BytesMut::new();
        for part in [a1, v1, a2, v2] {
            buf.extend_from_slice(part);
        }
        let mut d = ChunkDecoder::new(1 << 20);
        let m1 = d.decode(&mut buf).unwrap().unwrap();
        let m2 = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!((m1.type_id, m1.payload.len()), (msg_type::AUDIO, 200));
        assert_eq!((m2.type_id, m2.payload.len()), (msg_type::VIDEO, 200));
    }

    #[test]
    fn compressed_headers_follow_ffmpeg() {
        // type 0 at ts 40, then a type-3 starting a new message: delta = 40 (FFmpeg's rule).
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0x04, 0, 0, 40, 0, 0, 2, 8, 1, 0, 0, 0, 0xaa, 0xbb]);
        buf.extend_from_slice(&[0xc4, 0xcc, 0xdd]);
        // type 1: delta 23, len 1, type 8
        buf.extend_from_slice(&[0x44, 0, 0, 23, 0, 0, 1, 8, 0xee]);
        // type 2: delta 10
        buf.extend_from_slice(&[0x84, 0, 0, 10, 0xff]);
        let mut d = ChunkDecoder::new(1 << 20);
        let ts: Vec<u32> = std::iter::from_fn(|| d.decode(&mut buf).unwrap())
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, vec![40, 80, 103, 113]);
    }

    #[test]
    fn rejects_bad_input_with_errors_not_panics() {
        let mut d = ChunkDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&[0xc5u8, 1, 2, 3][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 })
        ));
        let mut d = ChunkDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&[0x03u8, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ChunkError::MessageTooLarge {
                length: 0xff_ffff,
                ..
            })
        ));
        assert!(d.set_chunk_size(0).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut d = ChunkDecoder::new(1 << 16);
            let mut buf = BytesMut::new();
            for _ in 0..(seed % 300) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.put_u8(seed as u8);
            }
            while let Ok(Some(m)) = d.decode(&mut buf) {
                if m.type_id == msg_type::SET_CHUNK_SIZE && m.payload.len() >= 4 {
                    let _ = d.set_chunk_size(u32::from_be_bytes([
                        m.payload[0],
                        m.payload[1],
                        m.payload[2],
                        m.payload[3],
                    ]));
                }
            }
        }
    }
}
