//! Property tests of the RTMP chunk codec (issue 14): on random messages, chunk sizes and
//! interleavings, what the decoder returns is what was sent.
//!
//! - `encode` then `ChunkDecoder::decode`, with the wire cut into random pieces: the same
//!   messages in the same order, and `encoded_len` is exact.
//! - A reference chunker written here from the RTMP specification (5.3) that uses every header
//!   type a peer may use — type 0, type 1 and 2 with timestamp deltas, type 3 for continuations
//!   and for a new message that repeats the previous header — including extended timestamps,
//!   and interleaves the chunks of several chunk streams at random: the decoder returns every
//!   message, in the order their last chunks arrive, with the timestamps the deltas add up to.
//! - Any prefix of a valid wire is "need more bytes", never an error.

use bytes::{BufMut, BytesMut};
use common::rtmp::chunk::{encode, encoded_len, ChunkDecoder, Message};
use proptest::prelude::*;

const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Msg {
    csid: u32,
    /// The timestamp delta from the previous message of the chunk stream (absolute for the
    /// first message of a chunk stream, which goes out with a type-0 header).
    delta: u32,
    type_id: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

fn csid() -> impl Strategy<Value = u32> {
    // One- two- and three-byte basic headers, from a small pool so that streams repeat.
    prop_oneof![
        Just(3u32),
        Just(4),
        Just(63),
        Just(64),
        Just(319),
        Just(320),
        Just(65599)
    ]
}

fn delta() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..100,
        1 => Just(0xff_ffff),
        1 => 0xff_ffffu32..=u32::MAX,
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        csid(),
        delta(),
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX)],
        prop::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(csid, delta, type_id, stream_id, payload)| Msg {
            csid,
            delta,
            type_id,
            stream_id,
            payload,
        })
}

/// The basic header as the specification (5.3.1.1) writes it — on purpose not the codec's own
/// `put_basic_header`, so that the reference chunker does not share the code under test.
fn basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8((fmt << 6) | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

/// What the chunker remembers of a chunk stream's last header, as a peer's would.
#[derive(Clone, Copy)]
struct Last {
    fmt: u8,
    field: u32,
    len: usize,
    type_id: u8,
    stream_id: u32,
}

/// Chunks of one message, as byte strings, using the most compact header the previous
/// message of its chunk stream allows when `compress` says so. Returns the chunks and the
/// message's absolute timestamp.
fn chunk_message(
    m: &Msg,
    last: &mut std::collections::HashMap<u32, (Last, u32)>,
    compress: u8,
    chunk_size: usize,
) -> (Vec<BytesMut>, u32) {
    let prev = last.get(&m.csid).copied();
    let (fmt, ts) = match prev {
        None => (0u8, m.delta),
        Some((l, ts)) => {
            let same_shape = l.len == m.payload.len() && l.type_id == m.type_id;
            let fmt = if l.stream_id != m.stream_id {
                0
            } else if compress % 4 == 3 && same_shape && l.fmt != 0 && l.field == m.delta {
                3
            } else if compress % 4 >= 2 && same_shape {
                2
            } else if compress % 4 >= 1 {
                1
            } else {
                0
            };
            (fmt, ts.wrapping_add(m.delta))
        }
    };
    // Type 0 carries the absolute timestamp, types 1 and 2 the delta; type 3 repeats the
    // previous header's (a delta here: only after a type 1 or 2 with the same delta).
    let field = if fmt == 0 { ts } else { m.delta };
    let extended = if fmt == 3 {
        prev.map(|(l, _)| l.field >= 0xff_ffff).unwrap_or(false)
    } else {
        field >= 0xff_ffff
    };
    let mut chunks = Vec::new();
    let mut first = BytesMut::new();
    basic_header(&mut first, fmt, m.csid);
    if fmt < 3 {
        first.put_uint(if extended { 0xff_ffff } else { field } as u64, 3);
    }
    if fmt < 2 {
        first.put_uint(m.payload.len() as u64, 3);
        first.put_u8(m.type_id);
    }
    if fmt == 0 {
        first.put_u32_le(m.stream_id);
    }
    if extended {
        first.put_u32(field);
    }
    let mut pieces = m.payload.chunks(chunk_size);
    if let Some(p) = pieces.next() {
        first.put_slice(p);
    }
    chunks.push(first);
    for p in pieces {
        let mut c = BytesMut::new();
        basic_header(&mut c, 3, m.csid);
        if extended {
            c.put_u32(field);
        }
        c.put_slice(p);
        chunks.push(c);
    }
    if fmt < 3 {
        last.insert(
            m.csid,
            (
                Last {
                    fmt,
                    field,
                    len: m.payload.len(),
                    type_id: m.type_id,
                    stream_id: m.stream_id,
                },
                ts,
            ),
        );
    } else if let Some((l, _)) = prev {
        last.insert(m.csid, (l, ts));
    }
    (chunks, ts)
}

/// Feeds `wire` to a decoder in pieces cut at `cuts` (fractions of the length); returns the
/// messages, panicking on a decode error.
fn decode_all(wire: &[u8], chunk_size: usize, cuts: &[u16]) -> Vec<Message> {
    let mut d = ChunkDecoder::new(MAX_MESSAGE);
    d.set_chunk_size(chunk_size as u32).unwrap();
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| *c as usize * wire.len() / u16::MAX as usize)
        .collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&wire[at..p]);
        at = p;
        while let Some(m) = d.decode(&mut buf).expect("valid wire must decode") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_gives_the_messages_back(
        msgs in prop::collection::vec(msg(), 1..12),
        chunk_size in prop_oneof![1usize..8, 60usize..200, Just(4096usize)],
        cuts in prop::collection::vec(any::<u16>(), 0..20),
    ) {
        let mut wire = BytesMut::new();
        for m in &msgs {
            let before = wire.len();
            encode(&mut wire, m.csid, m.delta, m.type_id, m.stream_id, &m.payload, chunk_size);
            prop_assert_eq!(wire.len() - before, encoded_len(m.csid, m.delta, m.payload.len(), chunk_size));
        }
        let got = decode_all(&wire, chunk_size, &cuts);
        prop_assert_eq!(got.len(), msgs.len());
        for (g, m) in got.iter().zip(&msgs) {
            prop_assert_eq!(g.csid, m.csid);
            prop_assert_eq!(g.timestamp, m.delta);
            prop_assert_eq!(g.type_id, m.type_id);
            prop_assert_eq!(g.stream_id, m.stream_id);
            prop_assert_eq!(&g.payload[..], &m.payload[..]);
        }
    }

    #[test]
    fn interleaved_chunks_with_compressed_headers_decode_in_completion_order(
        msgs in prop::collection::vec((msg(), any::<u8>()), 1..16),
        chunk_size in prop_oneof![1usize..8, 100usize..300],
        schedule in prop::collection::vec(any::<u16>(), 0..400),
        cuts in prop::collection::vec(any::<u16>(), 0..20),
    ) {
        // Messages of one chunk stream go out in order, one at a time; streams interleave.
        let mut last = std::collections::HashMap::new();
        let mut queues: std::collections::BTreeMap<u32, std::collections::VecDeque<(Vec<BytesMut>, Msg, u32)>> =
            Default::default();
        for (m, compress) in &msgs {
            let (chunks, ts) = chunk_message(m, &mut last, *compress, chunk_size);
            queues.entry(m.csid).or_default().push_back((chunks, m.clone(), ts));
        }
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        let mut pick = schedule.into_iter().chain(std::iter::repeat(0));
        let mut progress: std::collections::HashMap<u32, usize> = Default::default();
        while !queues.is_empty() {
            let keys: Vec<u32> = queues.keys().copied().collect();
            let csid = keys[pick.next().unwrap() as usize % keys.len()];
            let q = queues.get_mut(&csid).unwrap();
            let (chunks, m, ts) = q.front().unwrap();
            let i = progress.entry(csid).or_insert(0);
            wire.extend_from_slice(&chunks[*i]);
            *i += 1;
            if *i == chunks.len() {
                expected.push((m.clone(), *ts));
                *i = 0;
                q.pop_front();
                if q.is_empty() {
                    queues.remove(&csid);
                }
            }
        }
        let got = decode_all(&wire, chunk_size, &cuts);
        prop_assert_eq!(got.len(), expected.len());
        for (g, (m, ts)) in got.iter().zip(&expected) {
            prop_assert_eq!(g.csid, m.csid);
            prop_assert_eq!(g.timestamp, *ts);
            prop_assert_eq!(g.type_id, m.type_id);
            prop_assert_eq!(g.stream_id, m.stream_id);
            prop_assert_eq!(&g.payload[..], &m.payload[..]);
        }
    }

    #[test]
    fn every_prefix_of_a_valid_wire_needs_more_and_never_errs(
        m in msg(),
        chunk_size in 1usize..300,
        cut in any::<u16>(),
    ) {
        let mut wire = BytesMut::new();
        encode(&mut wire, m.csid, m.delta, m.type_id, m.stream_id, &m.payload, chunk_size);
        let n = cut as usize * (wire.len() - 1) / u16::MAX as usize;
        let mut d = ChunkDecoder::new(MAX_MESSAGE);
        d.set_chunk_size(chunk_size as u32).unwrap();
        let mut buf = BytesMut::from(&wire[..n]);
        prop_assert!(matches!(d.decode(&mut buf), Ok(None)));
        buf.extend_from_slice(&wire[n..]);
        let got = d.decode(&mut buf).unwrap().expect("the whole wire is a message");
        prop_assert_eq!(&got.payload[..], &m.payload[..]);
    }
}
