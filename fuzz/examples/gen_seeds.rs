//! Writes the committed seed corpora under `fuzz/seeds/<target>/`: real inputs for each parser,
//! built with the project's own encoders (chunk, command, PROXY v2, VRRP) or cut from the test
//! clip, plus a few edge cases. Every seed that should parse is checked against the parser here,
//! so a seed that silently stops being valid fails the generator instead of rotting.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds   # from the repository root
//! ```
//!
//! The output is deterministic (AMF0 objects are written with ordered keys here, not through
//! the project's HashMap-based `command::object`, and compared with it by value), so rerunning
//! it on unchanged code gives no diff.

use bytes::{Bytes, BytesMut};
use common::proxy_protocol::{encode_v2, parse_v2, SIGNATURE};
use common::rtmp::chunk::{self, csid, msg_type, ChunkDecoder, Message};
use common::rtmp::command::{self, parse_command, user_control, Command};
use lb::vrrp::packet::{self as vrrp, auth_bytes, ipv4_header, Expect, Outgoing, MULTICAST};
use rml_amf0::Amf0Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = fuzz.join("seeds");
    let clip = std::fs::read(fuzz.join("../tests/media/clip.flv")).expect("tests/media/clip.flv");
    let mut total = 0usize;
    for (target, files) in [
        ("flv", flv_seeds(&clip)),
        ("chunk_decoder", chunk_seeds(&clip)),
        ("amf0_command", amf0_seeds()),
        ("proxy_header", proxy_seeds()),
        ("vrrp_packet", vrrp_seeds()),
        ("conf_import", conf_seeds(fuzz)),
        ("hls_packager", hls_seeds(&clip)),
    ] {
        let dir = seeds.join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
        for (name, data) in &files {
            std::fs::write(dir.join(name), data).unwrap();
        }
        println!("{target}: {} seeds, {bytes} bytes", files.len());
        total += bytes;
    }
    println!("total {total} bytes in {}", seeds.display());
}

type Seeds = Vec<(String, Vec<u8>)>;

fn add(out: &mut Seeds, name: &str, data: impl Into<Vec<u8>>) {
    assert!(!out.iter().any(|(n, _)| n == name), "duplicate seed {name}");
    out.push((name.to_string(), data.into()));
}

// ---------------------------------------------------------------------------------------------
// HLS packager: the clip's messages as `type, ts u32, len u16, payload` records after three
// option bytes (fragment x 50 ms, window x 500 ms, part x 20 ms). Frames are cut to their
// first 48 bytes (the packager copies NAL units, it does not decode them) to keep seeds small.

fn hls_record(out: &mut Vec<u8>, type_id: u8, ts: u32, payload: &[u8]) {
    out.push(type_id);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn hls_seeds(clip: &[u8]) -> Seeds {
    let (_, tags) = clip_tags(clip);
    let is_seq = |t: &ClipTag| (t.type_id == 8 || t.type_id == 9) && t.second == 0;
    let stream = |keep: &dyn Fn(&ClipTag) -> bool, opts: [u8; 3]| {
        let mut v = opts.to_vec();
        for t in tags.iter().filter(|t| keep(t)) {
            let body = tag_body(clip, t);
            let body = if is_seq(t) { body } else { &body[..body.len().min(48)] };
            hls_record(&mut v, t.type_id, t.timestamp, body);
        }
        v
    };
    let mut s = Seeds::new();
    add(&mut s, "clip_2s_10s_500ms.bin", stream(&|t| t.type_id != 18, [40, 20, 25]));
    add(&mut s, "clip_1s_parts.bin", stream(&|t| t.type_id != 18, [20, 10, 10]));
    add(&mut s, "audio_only.bin", stream(&|t| t.type_id == 8, [20, 10, 25]));
    add(&mut s, "video_only.bin", stream(&|t| t.type_id == 9, [40, 20, 25]));
    for (name, data) in &s {
        let opts = edge::hls::HlsOptions {
            fragment: std::time::Duration::from_millis(data[0] as u64 * 50),
            window: std::time::Duration::from_millis(data[1] as u64 * 500),
            part: std::time::Duration::from_millis(data[2] as u64 * 20),
        };
        let mut p = edge::hls::Packager::new(opts);
        let mut pos = 3;
        while pos + 7 <= data.len() {
            let len = u16::from_be_bytes([data[pos + 5], data[pos + 6]]) as usize;
            let ts = u32::from_be_bytes([data[pos + 1], data[pos + 2], data[pos + 3], data[pos + 4]]);
            p.push(data[pos], ts, &Bytes::copy_from_slice(&data[pos + 7..pos + 7 + len]));
            pos += 7 + len;
        }
        assert!(p.playlist().is_some(), "hls seed {name} makes no playlist");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// FLV: slices of tests/media/clip.flv.

/// One tag of the clip: its byte range including the 11-byte header and the 4-byte
/// PreviousTagSize that follows it.
#[derive(Clone, Copy, Debug)]
struct ClipTag {
    start: usize,
    end: usize,
    type_id: u8,
    timestamp: u32,
    first: u8,
    second: u8,
}

fn clip_tags(clip: &[u8]) -> (usize, Vec<ClipTag>) {
    assert_eq!(&clip[..3], b"FLV");
    let header = u32::from_be_bytes([clip[5], clip[6], clip[7], clip[8]]) as usize;
    let body = header + 4;
    let mut pos = body;
    let mut tags = Vec::new();
    while pos + 11 <= clip.len() {
        let len = u32::from_be_bytes([0, clip[pos + 1], clip[pos + 2], clip[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([clip[pos + 7], clip[pos + 4], clip[pos + 5], clip[pos + 6]]);
        let end = (pos + 11 + len + 4).min(clip.len());
        tags.push(ClipTag {
            start: pos,
            end,
            type_id: clip[pos] & 0x1f,
            timestamp: ts,
            first: *clip.get(pos + 11).unwrap_or(&0),
            second: *clip.get(pos + 12).unwrap_or(&0),
        });
        pos = end;
    }
    (body, tags)
}

/// The payload of a tag (what becomes an RTMP message body).
fn tag_body<'a>(clip: &'a [u8], t: &ClipTag) -> &'a [u8] {
    &clip[t.start + 11..t.end - 4]
}

/// An FLV file: the clip's header (and PreviousTagSize0), then the given tags.
fn flv_of(clip: &[u8], body: usize, tags: &[&ClipTag]) -> Vec<u8> {
    let mut v = clip[..body].to_vec();
    for t in tags {
        v.extend_from_slice(&clip[t.start..t.end]);
    }
    v
}

/// A hand-made tag (header + body + PreviousTagSize).
fn flv_tag(type_byte: u8, ts: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![type_byte];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    let t = ts.to_be_bytes();
    v.extend_from_slice(&[t[1], t[2], t[3], t[0]]);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(body);
    v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    v
}

fn flv_seeds(clip: &[u8]) -> Seeds {
    let (body, tags) = clip_tags(clip);
    let is_video_seq = |t: &&ClipTag| t.type_id == 9 && t.first == 0x17 && t.second == 0;
    let is_audio_seq = |t: &&ClipTag| t.type_id == 8 && t.first >> 4 == 10 && t.second == 0;
    let meta = tags.iter().find(|t| t.type_id == 18).expect("onMetaData");
    let vseq = tags.iter().find(is_video_seq).expect("AVC sequence header");
    let aseq = tags.iter().find(is_audio_seq).expect("AAC sequence header");
    let key = tags
        .iter()
        .find(|t| t.type_id == 9 && t.first == 0x17 && t.second == 1)
        .expect("keyframe");
    let inter = tags
        .iter()
        .filter(|t| t.type_id == 9 && t.first == 0x27 && t.second == 1)
        .min_by_key(|t| t.end - t.start)
        .expect("inter frame");
    let audio = tags
        .iter()
        .find(|t| t.type_id == 8 && t.second == 1)
        .expect("AAC frame");
    let eos = tags
        .iter()
        .find(|t| t.type_id == 9 && t.second == 2)
        .expect("AVC end of sequence");
    let head = &clip[..body];

    let mut s = Seeds::new();
    // Real slices of the clip.
    add(
        &mut s,
        "header_meta_seqheaders.flv",
        flv_of(clip, body, &[meta, vseq, aseq]),
    );
    add(&mut s, "keyframe.flv", flv_of(clip, body, &[key]));
    add(&mut s, "audio.flv", flv_of(clip, body, &[audio]));
    add(&mut s, "inter_frame.flv", flv_of(clip, body, &[inter]));
    add(&mut s, "end_of_sequence.flv", flv_of(clip, body, &[eos]));
    // The first dozen tags under 1 KB (sequence headers, audio, small video): real A/V order.
    let small: Vec<&ClipTag> = tags
        .iter()
        .filter(|t| t.end - t.start < 1024)
        .take(12)
        .collect();
    add(&mut s, "small_tags_mixed.flv", flv_of(clip, body, &small));
    add(&mut s, "first_4k.flv", &clip[..4096]);
    // Edge cases.
    add(&mut s, "header_only.flv", head);
    let mut trunc = flv_of(clip, body, &[meta, vseq]);
    trunc.extend_from_slice(&clip[aseq.start..aseq.end - 4 - 3]); // 3 bytes short of its body
    add(&mut s, "truncated_last_tag.flv", trunc);
    let mut big_header = head[..9].to_vec();
    big_header[8] = 13; // DataOffset 13: four bytes of header extension
    big_header.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
    big_header.extend_from_slice(&clip[meta.start..meta.end]);
    add(&mut s, "header_len_13.flv", big_header);
    let mut audio_only = head.to_vec();
    audio_only[4] = 0x04;
    audio_only.extend_from_slice(&clip[aseq.start..aseq.end]);
    audio_only.extend_from_slice(&clip[audio.start..audio.end]);
    add(&mut s, "audio_only_flags.flv", audio_only);
    let mut filtered = head.to_vec();
    filtered.extend(flv_tag(0x20 | 9, 0, tag_body(clip, vseq)));
    filtered.extend_from_slice(&clip[audio.start..audio.end]);
    add(&mut s, "filtered_tag.flv", filtered);
    let mut ext_ts = head.to_vec();
    ext_ts.extend(flv_tag(8, 0x0100_0017, tag_body(clip, audio)));
    add(&mut s, "extended_timestamp.flv", ext_ts);
    let mut zero = head.to_vec();
    zero.extend(flv_tag(18, 0, b""));
    add(&mut s, "empty_data_tag.flv", zero);
    let mut script = head.to_vec();
    script.extend(flv_tag(15, 0, b"\x02\x00\x04test"));
    add(&mut s, "unknown_tag_type.flv", script);

    // Checks: the real slices parse with the tags they were cut from.
    let parse = |d: &[u8]| edge::tools::flv::parse(Bytes::copy_from_slice(d));
    for (name, data) in &s {
        let r = parse(data);
        match name.as_str() {
            "header_only.flv" | "unknown_tag_type.flv" => assert!(r.is_err(), "{name}"),
            "header_meta_seqheaders.flv" => assert_eq!(r.unwrap().len(), 3),
            "truncated_last_tag.flv" => assert_eq!(r.unwrap().len(), 2),
            "filtered_tag.flv" => assert_eq!(r.unwrap().len(), 1),
            "extended_timestamp.flv" => assert_eq!(r.unwrap()[0].timestamp, 0x0100_0017),
            "keyframe.flv" => assert_eq!(r.unwrap()[0].timestamp, key.timestamp),
            _ => assert!(r.is_ok(), "{name}: {r:?}"),
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// AMF0 commands: written with ordered object keys, checked against the project's builders.

/// AMF0 values with ordered object properties (and ECMA arrays, which rml_amf0 reads as
/// objects but cannot write).
#[derive(Clone)]
enum V {
    N(f64),
    B(bool),
    S(&'static str),
    Null,
    Undef,
    Obj(Vec<(&'static str, V)>),
    Ecma(Vec<(&'static str, V)>),
    Arr(Vec<V>),
}

fn amf(out: &mut Vec<u8>, v: &V) {
    fn key(out: &mut Vec<u8>, k: &str) {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
    }
    match v {
        V::N(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_be_bytes());
        }
        V::B(b) => out.extend_from_slice(&[1, *b as u8]),
        V::S(s) => {
            out.push(2);
            key(out, s);
        }
        V::Null => out.push(5),
        V::Undef => out.push(6),
        V::Obj(props) | V::Ecma(props) => {
            if let V::Ecma(_) = v {
                out.push(8);
                out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            } else {
                out.push(3);
            }
            for (k, v) in props {
                key(out, k);
                amf(out, v);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
        V::Arr(items) => {
            out.push(0x0a);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                amf(out, i);
            }
        }
    }
}

/// The same value as rml_amf0 sees it (ECMA arrays come back as objects).
fn to_amf0(v: &V) -> Amf0Value {
    match v {
        V::N(n) => Amf0Value::Number(*n),
        V::B(b) => Amf0Value::Boolean(*b),
        V::S(s) => Amf0Value::Utf8String(s.to_string()),
        V::Null => Amf0Value::Null,
        V::Undef => Amf0Value::Undefined,
        V::Obj(p) | V::Ecma(p) => {
            let props: Vec<(&str, Amf0Value)> = p.iter().map(|(k, v)| (*k, to_amf0(v))).collect();
            command::object(&props)
        }
        V::Arr(items) => Amf0Value::StrictArray(items.iter().map(to_amf0).collect()),
    }
}

fn amf_all(values: &[V]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        amf(&mut out, v);
    }
    out
}

/// A command payload; checked to parse back to what `command::command` would have built.
fn cmd(name: &'static str, txn: f64, object: V, args: Vec<V>) -> Vec<u8> {
    let mut values = vec![V::S(name), V::N(txn), object.clone()];
    values.extend(args.iter().cloned());
    let bytes = amf_all(&values);
    let want = Command {
        name: name.to_string(),
        transaction_id: txn,
        object: to_amf0(&object),
        args: args.iter().map(to_amf0).collect(),
    };
    let reference = command::command(name, txn, to_amf0(&object), want.args.clone());
    let msg = command_msg(&bytes);
    assert_eq!(parse_command(&msg).unwrap(), want, "{name}");
    assert_eq!(
        parse_command(&command_msg(&reference)).unwrap(),
        want,
        "{name}"
    );
    if !matches!(object, V::Obj(_) | V::Ecma(_)) && !args.iter().any(has_map) {
        // No map anywhere: the byte order is fixed, so it must equal the project's encoding.
        assert_eq!(&reference[..], &bytes[..], "{name}");
    }
    bytes
}

fn has_map(v: &V) -> bool {
    match v {
        V::Obj(_) | V::Ecma(_) => true,
        V::Arr(items) => items.iter().any(has_map),
        _ => false,
    }
}

fn command_msg(payload: &[u8]) -> Message {
    Message {
        csid: 3,
        timestamp: 0,
        type_id: msg_type::COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// `connect` as the project's RtmpClient sends it (common/src/rtmp/client.rs).
fn connect_edgefleet() -> Vec<u8> {
    cmd(
        "connect",
        1.0,
        V::Obj(vec![
            ("app", V::S("live")),
            ("type", V::S("nonprivate")),
            ("flashVer", V::S("FMLE/3.0 (compatible; EdgeFleet)")),
            ("tcUrl", V::S("rtmp://127.0.0.1:1935/live")),
            ("fpad", V::B(false)),
            ("capabilities", V::N(15.0)),
            ("audioCodecs", V::N(4071.0)),
            ("videoCodecs", V::N(252.0)),
            ("videoFunction", V::N(1.0)),
        ]),
        vec![],
    )
}

/// `connect` as FFmpeg's librtmp-compatible client sends it when publishing.
fn connect_ffmpeg() -> Vec<u8> {
    cmd(
        "connect",
        1.0,
        V::Obj(vec![
            ("app", V::S("live")),
            ("type", V::S("nonprivate")),
            ("flashVer", V::S("FMLE/3.0 (compatible; Lavf61.7.100)")),
            ("tcUrl", V::S("rtmp://127.0.0.1:1935/live")),
        ]),
        vec![],
    )
}

/// `connect` as a Flash/rtmpdump player sends it, with an extra argument object.
fn connect_player() -> Vec<u8> {
    cmd(
        "connect",
        1.0,
        V::Obj(vec![
            ("app", V::S("live")),
            ("flashVer", V::S("LNX 10,0,32,18")),
            ("swfUrl", V::Undef),
            ("tcUrl", V::S("rtmp://edge.example:1935/live")),
            ("fpad", V::B(false)),
            ("capabilities", V::N(239.0)),
            ("audioCodecs", V::N(3575.0)),
            ("videoCodecs", V::N(252.0)),
            ("videoFunction", V::N(1.0)),
            ("pageUrl", V::Undef),
            ("objectEncoding", V::N(0.0)),
        ]),
        vec![V::Obj(vec![("token", V::S("abc123"))])],
    )
}

fn amf0_seeds() -> Seeds {
    let mut s = Seeds::new();
    add(&mut s, "connect_edgefleet.amf0", connect_edgefleet());
    add(&mut s, "connect_ffmpeg.amf0", connect_ffmpeg());
    add(&mut s, "connect_player.amf0", connect_player());
    // Flash sends commands as AMF3 messages (type 17) whose body is a 0 byte then AMF0.
    let mut amf3 = vec![0u8];
    amf3.extend(connect_ffmpeg());
    add(&mut s, "connect_amf3_prefixed.amf0", amf3);
    let name = || V::S("cam1?key=secret");
    add(
        &mut s,
        "create_stream.amf0",
        cmd("createStream", 4.0, V::Null, vec![]),
    );
    add(
        &mut s,
        "release_stream.amf0",
        cmd("releaseStream", 2.0, V::Null, vec![name()]),
    );
    add(
        &mut s,
        "fc_publish.amf0",
        cmd("FCPublish", 3.0, V::Null, vec![name()]),
    );
    add(
        &mut s,
        "publish_live.amf0",
        cmd("publish", 0.0, V::Null, vec![name(), V::S("live")]),
    );
    add(
        &mut s,
        "play.amf0",
        cmd("play", 0.0, V::Null, vec![V::S("cam1"), V::N(-2000.0)]),
    );
    add(
        &mut s,
        "play_start_duration_reset.amf0",
        cmd(
            "play",
            5.0,
            V::Null,
            vec![V::S("cam1"), V::N(-1.0), V::N(-1.0), V::B(true)],
        ),
    );
    add(
        &mut s,
        "get_stream_length.amf0",
        cmd("getStreamLength", 6.0, V::Null, vec![V::S("cam1")]),
    );
    add(
        &mut s,
        "fc_unpublish.amf0",
        cmd("FCUnpublish", 7.0, V::Null, vec![name()]),
    );
    add(
        &mut s,
        "delete_stream.amf0",
        cmd("deleteStream", 8.0, V::Null, vec![V::N(1.0)]),
    );
    add(
        &mut s,
        "close_stream.amf0",
        cmd("closeStream", 0.0, V::Null, vec![]),
    );
    add(
        &mut s,
        "check_bw.amf0",
        cmd("_checkbw", 9.0, V::Null, vec![]),
    );
    // What servers send back (the edge's upstream client parses these).
    add(
        &mut s,
        "result_connect.amf0",
        cmd(
            "_result",
            1.0,
            V::Obj(vec![
                ("fmsVer", V::S("FMS/3,0,1,123")),
                ("capabilities", V::N(31.0)),
            ]),
            vec![V::Obj(vec![
                ("level", V::S("status")),
                ("code", V::S("NetConnection.Connect.Success")),
                ("description", V::S("Connection succeeded.")),
                ("objectEncoding", V::N(0.0)),
            ])],
        ),
    );
    add(
        &mut s,
        "result_create_stream.amf0",
        cmd("_result", 4.0, V::Null, vec![V::N(1.0)]),
    );
    add(
        &mut s,
        "on_status_publish_start.amf0",
        cmd(
            "onStatus",
            0.0,
            V::Null,
            vec![V::Obj(vec![
                ("level", V::S("status")),
                ("code", V::S("NetStream.Publish.Start")),
                ("description", V::S("Start publishing")),
            ])],
        ),
    );
    add(
        &mut s,
        "error_play.amf0",
        cmd(
            "_error",
            5.0,
            V::Null,
            vec![V::Obj(vec![
                ("level", V::S("error")),
                ("code", V::S("NetStream.Play.StreamNotFound")),
                ("description", V::S("No such stream")),
            ])],
        ),
    );
    // Other AMF0 shapes the parser accepts: ECMA array, strict array, nesting, undefined.
    add(
        &mut s,
        "ecma_and_strict_array.amf0",
        cmd(
            "onMetaData",
            0.0,
            V::Ecma(vec![
                ("duration", V::N(5.0)),
                ("width", V::N(640.0)),
                ("height", V::N(360.0)),
                ("encoder", V::S("Lavf61.7.100")),
                ("stereo", V::B(true)),
            ]),
            vec![
                V::Arr(vec![V::N(1.0), V::S("two"), V::Null, V::Undef]),
                V::Obj(vec![(
                    "nested",
                    V::Obj(vec![("deeper", V::Arr(vec![V::B(false)]))]),
                )]),
            ],
        ),
    );
    // Edge cases: errors the parser must report, not panic on.
    add(&mut s, "empty.amf0", b"".to_vec());
    add(
        &mut s,
        "name_not_string.amf0",
        amf_all(&[V::N(1.0), V::S("connect")]),
    );
    add(&mut s, "name_only.amf0", amf_all(&[V::S("connect")]));
    add(
        &mut s,
        "truncated_object.amf0",
        connect_ffmpeg()[..40].to_vec(),
    );
    let mut unknown = amf_all(&[V::S("play"), V::N(0.0), V::Null]);
    unknown.push(0x0b); // AMF0 date: a marker rml_amf0 does not read
    unknown.extend_from_slice(&[0; 10]);
    add(&mut s, "unknown_marker_date.amf0", unknown);
    // Exactly MAX_COMMAND_SIZE bytes (accepted); one more is refused before parsing.
    let prefix = amf_all(&[V::S("play"), V::N(0.0), V::Null]);
    let pad = command::MAX_COMMAND_SIZE - prefix.len() - 3;
    let mut max = prefix;
    max.push(2);
    max.extend_from_slice(&(pad as u16).to_be_bytes());
    max.extend(std::iter::repeat_n(b'a', pad));
    assert_eq!(max.len(), command::MAX_COMMAND_SIZE);
    assert!(parse_command(&command_msg(&max)).is_ok());
    add(&mut s, "max_size_string.amf0", max);
    for (name, data) in &s {
        let r = parse_command(&command_msg(data));
        let want_ok = !matches!(
            name.as_str(),
            "empty.amf0"
                | "name_not_string.amf0"
                | "truncated_object.amf0"
                | "unknown_marker_date.amf0"
                | "connect_amf3_prefixed.amf0"
        );
        assert_eq!(r.is_ok(), want_ok, "{name}: {r:?}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// RTMP chunk streams, as a client writes them after the handshake.

struct Wire {
    out: BytesMut,
    chunk_size: usize,
}

impl Wire {
    fn new() -> Self {
        Wire {
            out: BytesMut::new(),
            chunk_size: chunk::DEFAULT_CHUNK_SIZE,
        }
    }
    fn msg(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        chunk::encode(
            &mut self.out,
            csid,
            ts,
            type_id,
            stream_id,
            payload,
            self.chunk_size,
        );
    }
    fn set_chunk_size(&mut self, size: u32) {
        self.msg(
            csid::PROTOCOL,
            0,
            msg_type::SET_CHUNK_SIZE,
            0,
            &command::set_chunk_size(size),
        );
        self.chunk_size = (size & 0x7fff_ffff) as usize;
    }
    fn command(&mut self, stream_id: u32, payload: &[u8]) {
        self.msg(csid::COMMAND, 0, msg_type::COMMAND_AMF0, stream_id, payload);
    }
    fn control(&mut self, type_id: u8, payload: &[u8]) {
        self.msg(csid::PROTOCOL, 0, type_id, 0, payload);
    }
    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    fn bytes(&self) -> Vec<u8> {
        self.out.to_vec()
    }
}

/// Decodes a seed the way the fuzz target does; returns the messages and the error, if any.
fn decode_all(data: &[u8]) -> (Vec<Message>, Option<String>, usize) {
    let mut d = ChunkDecoder::new(1 << 20);
    let mut buf = BytesMut::from(data);
    let mut msgs = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(m)) => {
                if m.type_id == msg_type::SET_CHUNK_SIZE && m.payload.len() >= 4 {
                    let p = &m.payload;
                    let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    if let Err(e) = d.set_chunk_size(n) {
                        return (msgs, Some(e.to_string()), buf.len());
                    }
                }
                msgs.push(m);
            }
            Ok(None) => return (msgs, None, buf.len()),
            Err(e) => return (msgs, Some(e.to_string()), buf.len()),
        }
    }
}

fn set_buffer_length(stream_id: u32, ms: u32) -> Vec<u8> {
    let mut v = user_control::SET_BUFFER_LENGTH.to_be_bytes().to_vec();
    v.extend_from_slice(&stream_id.to_be_bytes());
    v.extend_from_slice(&ms.to_be_bytes());
    v
}

fn chunk_seeds(clip: &[u8]) -> Seeds {
    let (_, tags) = clip_tags(clip);
    let find = |pred: &dyn Fn(&ClipTag) -> bool| *tags.iter().find(|t| pred(t)).unwrap();
    let meta = find(&|t| t.type_id == 18);
    let vseq = find(&|t| t.type_id == 9 && t.second == 0);
    let aseq = find(&|t| t.type_id == 8 && t.second == 0);
    let key = find(&|t| t.type_id == 9 && t.first == 0x17 && t.second == 1);
    // The first dozen media tags under 1 KB after the sequence headers (mostly AAC frames).
    let media: Vec<ClipTag> = tags
        .iter()
        .filter(|t| t.type_id != 18 && t.second != 0 && t.end - t.start < 1024)
        .take(12)
        .copied()
        .collect();
    let stream = "cam1?key=secret";
    let mut s = Seeds::new();

    // The project's own client: Set Chunk Size 4096 then connect (common/src/rtmp/client.rs).
    let mut w = Wire::new();
    w.set_chunk_size(4096);
    w.command(0, &connect_edgefleet());
    add(&mut s, "client_connect.rtmp", w.bytes());

    // connect at the default chunk size of 128: type-3 continuation chunks.
    let mut w = Wire::new();
    w.command(0, &connect_player());
    add(&mut s, "connect_chunk128.rtmp", w.bytes());

    // Publish: the whole command sequence, then metadata and sequence headers as `edge
    // publish` sends them (csid 5/6/4, stream id 1).
    let mut w = Wire::new();
    w.set_chunk_size(4096);
    w.command(0, &connect_ffmpeg());
    w.command(
        0,
        &command::command(
            "releaseStream",
            2.0,
            Amf0Value::Null,
            vec![command::string(stream)],
        ),
    );
    w.command(
        0,
        &command::command(
            "FCPublish",
            3.0,
            Amf0Value::Null,
            vec![command::string(stream)],
        ),
    );
    w.command(
        0,
        &command::command("createStream", 4.0, Amf0Value::Null, vec![]),
    );
    w.command(
        1,
        &command::command(
            "publish",
            0.0,
            Amf0Value::Null,
            vec![command::string(stream), command::string("live")],
        ),
    );
    add(&mut s, "publish_commands.rtmp", w.bytes());
    let mut w = Wire::new();
    w.set_chunk_size(4096);
    let mut set_data_frame = amf_all(&[V::S("@setDataFrame")]);
    set_data_frame.extend_from_slice(tag_body(clip, &meta));
    w.msg(csid::DATA, 0, msg_type::DATA_AMF0, 1, &set_data_frame);
    w.msg(csid::VIDEO, 0, msg_type::VIDEO, 1, tag_body(clip, &vseq));
    w.msg(csid::AUDIO, 0, msg_type::AUDIO, 1, tag_body(clip, &aseq));
    add(&mut s, "publish_metadata_seqheaders.rtmp", w.bytes());

    // Media at the default chunk size (type 0 + type 3 chunks), audio/video/data csids.
    let mut w = Wire::new();
    for t in &media {
        let c = if t.type_id == 8 {
            csid::AUDIO
        } else {
            csid::VIDEO
        };
        assert!(t.type_id == 8 || t.type_id == 9);
        w.msg(c, t.timestamp, t.type_id, 1, tag_body(clip, t));
    }
    add(&mut s, "media_chunk128.rtmp", w.bytes());

    // One real keyframe, at the client's chunk size.
    let mut w = Wire::new();
    w.set_chunk_size(4096);
    w.msg(
        csid::VIDEO,
        key.timestamp,
        msg_type::VIDEO,
        1,
        tag_body(clip, &key),
    );
    add(&mut s, "keyframe_chunk4096.rtmp", w.bytes());

    // Play: window ack size, createStream, play, Set Buffer Length (client.rs play()).
    let mut w = Wire::new();
    w.set_chunk_size(4096);
    w.command(0, &connect_player());
    w.control(
        msg_type::WINDOW_ACK_SIZE,
        &command::window_ack_size(2_500_000),
    );
    w.command(
        0,
        &command::command("createStream", 2.0, Amf0Value::Null, vec![]),
    );
    w.command(
        1,
        &command::command(
            "play",
            0.0,
            Amf0Value::Null,
            vec![command::string("cam1"), Amf0Value::Number(-2000.0)],
        ),
    );
    w.control(msg_type::USER_CONTROL, &set_buffer_length(1, 3000));
    add(&mut s, "play_commands.rtmp", w.bytes());

    // Protocol control messages a peer sends.
    let mut w = Wire::new();
    w.control(
        msg_type::WINDOW_ACK_SIZE,
        &command::window_ack_size(5_000_000),
    );
    w.control(
        msg_type::SET_PEER_BANDWIDTH,
        &command::set_peer_bandwidth(5_000_000),
    );
    w.control(msg_type::ACK, &command::acknowledgement(2_500_000));
    w.control(
        msg_type::USER_CONTROL,
        &command::user_control(user_control::STREAM_BEGIN, 1),
    );
    w.control(
        msg_type::USER_CONTROL,
        &command::user_control(user_control::PING_REQUEST, 12345),
    );
    w.control(
        msg_type::USER_CONTROL,
        &command::user_control(user_control::PING_RESPONSE, 12345),
    );
    w.control(msg_type::ABORT, &4u32.to_be_bytes());
    add(&mut s, "protocol_control.rtmp", w.bytes());

    // Extended timestamps: type 0 with 0xffffff and the 4-byte field, continuations repeat it.
    let mut w = Wire::new();
    w.msg(
        csid::AUDIO,
        0x0100_0000,
        media[0].type_id,
        1,
        tag_body(clip, &media[0]),
    );
    w.msg(
        csid::AUDIO,
        0xffff_fff0,
        media[1].type_id,
        1,
        tag_body(clip, &media[1]),
    );
    add(&mut s, "extended_timestamp.rtmp", w.bytes());

    // Interleaved chunk streams: audio and video chunks alternate (what FFmpeg does).
    let a = chunk::encode_to_bytes(csid::AUDIO, 23, msg_type::AUDIO, 1, &[0xaf; 300], 128);
    let v = chunk::encode_to_bytes(csid::VIDEO, 40, msg_type::VIDEO, 1, &[0x27; 300], 128);
    let split = |b: &[u8]| -> Vec<Vec<u8>> {
        let first = 1 + 11 + 128;
        let mut parts = vec![b[..first].to_vec()];
        parts.extend(b[first..].chunks(1 + 128).map(|c| c.to_vec()));
        parts
    };
    let mut w = Wire::new();
    for (pa, pv) in split(&a).iter().zip(split(&v).iter()) {
        w.raw(pa);
        w.raw(pv);
    }
    add(&mut s, "interleaved_csids.rtmp", w.bytes());

    // Compressed headers: type 0, then 1 (new length/type), 2 (delta only), 3 (new message
    // with the last delta), as FFmpeg writes them; and type 1/2 with an extended delta.
    let mut w = Wire::new();
    w.raw(&[0x04, 0, 0, 40, 0, 0, 2, 8, 1, 0, 0, 0, 0xaf, 0x01]);
    w.raw(&[0xc4, 0xaf, 0x01]);
    w.raw(&[0x44, 0, 0, 23, 0, 0, 3, 8, 0xaf, 0x01, 0x21]);
    w.raw(&[0x84, 0, 0, 10, 0xaf, 0x01, 0x22]);
    w.raw(&[0xc4, 0xaf, 0x01, 0x23]);
    w.raw(&[
        0x44, 0xff, 0xff, 0xff, 0, 0, 2, 8, 0x01, 0x00, 0x00, 0x00, 0xaf, 0x01,
    ]);
    w.raw(&[0x84, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x10, 0xaf, 0x01]);
    w.raw(&[0xc4, 0x00, 0x00, 0x00, 0x10, 0xaf, 0x01]);
    add(&mut s, "compressed_headers.rtmp", w.bytes());

    // A type-1 header for a 200-byte message: type-3 continuation within the message.
    let mut w = Wire::new();
    w.raw(&[0x06, 0, 0, 0, 0, 0, 5, 9, 1, 0, 0, 0, 0x17, 0, 0, 0, 0]);
    w.raw(&[0x46, 0, 0, 40, 0, 0, 200, 9]);
    w.raw(&[0x27; 128]);
    w.raw(&[0xc6]);
    w.raw(&[0x27; 72]);
    add(&mut s, "type1_then_continuation.rtmp", w.bytes());

    // Two- and three-byte basic headers (csid 64..319 and 320..65599).
    let mut w = Wire::new();
    w.msg(64, 0, msg_type::AUDIO, 1, &[0xaf; 200]);
    w.msg(319, 10, msg_type::VIDEO, 1, &[0x27; 20]);
    w.msg(320, 20, msg_type::AUDIO, 1, &[0xaf; 150]);
    w.msg(
        65599,
        30,
        msg_type::DATA_AMF0,
        1,
        &amf_all(&[V::S("onTextData")]),
    );
    add(&mut s, "wide_csids.rtmp", w.bytes());

    // Set Chunk Size mid-stream, with the high bit set (ignored), then a message using it.
    let mut w = Wire::new();
    w.msg(csid::VIDEO, 0, msg_type::VIDEO, 1, &[0x27; 300]);
    w.set_chunk_size(0x8000_0100);
    w.msg(csid::VIDEO, 40, msg_type::VIDEO, 1, &[0x27; 600]);
    w.set_chunk_size(1);
    w.msg(
        csid::AUDIO,
        50,
        msg_type::AUDIO,
        1,
        &[0xaf, 0x01, 0x21, 0x10],
    );
    add(&mut s, "set_chunk_size_midstream.rtmp", w.bytes());

    // Aggregate message (type 22) carrying two FLV-style sub-tags; zero-length message.
    let mut agg = flv_tag(8, 100, &[0xaf, 0x01, 0x21]);
    agg.extend(flv_tag(9, 120, &[0x27, 0x01, 0, 0, 0, 0x41]));
    let mut w = Wire::new();
    w.msg(csid::VIDEO, 100, msg_type::AGGREGATE, 1, &agg);
    w.msg(csid::DATA, 0, msg_type::DATA_AMF0, 1, b"");
    add(&mut s, "aggregate_and_empty.rtmp", w.bytes());

    // Edge cases the decoder must refuse with an error.
    add(&mut s, "type3_without_header.rtmp", vec![0xc5, 1, 2, 3]);
    let mut w = Wire::new();
    w.raw(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0]);
    add(&mut s, "message_too_large.rtmp", w.bytes());
    let mut w = Wire::new();
    w.raw(&[0x06, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0]);
    w.raw(&[0x27; 128]);
    w.raw(&[0x46, 0, 0, 0, 0, 0, 10, 9]);
    add(&mut s, "length_changed_mid_message.rtmp", w.bytes());
    let mut w = Wire::new();
    w.set_chunk_size(0);
    add(&mut s, "set_chunk_size_zero.rtmp", w.bytes());
    let mut w = Wire::new();
    for c in 3..=70u32 {
        w.msg(c, 0, msg_type::AUDIO, 1, &[0xaf]);
    }
    add(&mut s, "too_many_chunk_streams.rtmp", w.bytes());
    let full = chunk::encode_to_bytes(csid::VIDEO, 40, msg_type::VIDEO, 1, &[0x27; 300], 128);
    add(&mut s, "truncated_mid_chunk.rtmp", full[..200].to_vec());

    for (name, data) in &s {
        let (msgs, err, left) = decode_all(data);
        let want_err = matches!(
            name.as_str(),
            "type3_without_header.rtmp"
                | "message_too_large.rtmp"
                | "length_changed_mid_message.rtmp"
                | "set_chunk_size_zero.rtmp"
                | "too_many_chunk_streams.rtmp"
        );
        assert_eq!(err.is_some(), want_err, "{name}: {err:?}");
        if !want_err && name != "truncated_mid_chunk.rtmp" {
            assert!(
                !msgs.is_empty() && left == 0,
                "{name}: {} messages, {left} left",
                msgs.len()
            );
        }
        if name == "compressed_headers.rtmp" {
            let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
            assert_eq!(
                ts,
                vec![40, 80, 103, 113, 123, 0x0100_007b, 0x0100_008b, 0x0100_009b]
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol v2 headers (haproxy's doc/proxy-protocol.txt), as the balancer sends them and
// with the parts it does not send (LOCAL, UDP, UNIX, TLVs).

fn pp2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut v = SIGNATURE.to_vec();
    v.push(ver_cmd);
    v.push(fam);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn tlv(t: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn proxy_seeds() -> Seeds {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let tcp4 = encode_v2(sa("198.18.0.7:40000"), sa("198.18.0.1:1935"));
    let tcp6 = encode_v2(sa("[2001:db8::7]:40000"), sa("[2001:db8::1]:1935"));
    let mixed = encode_v2(sa("198.18.0.7:40000"), sa("[2001:db8::1]:1935"));
    let mut s = Seeds::new();
    add(&mut s, "tcp4.pp2", tcp4.clone());
    add(&mut s, "tcp6.pp2", tcp6.clone());
    add(&mut s, "tcp6_v4_mapped.pp2", mixed);
    // The header then the RTMP handshake's first byte, as an edge reads it.
    let mut then_rtmp = tcp4.clone();
    then_rtmp.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0]);
    add(&mut s, "tcp4_then_rtmp_c0c1.pp2", then_rtmp);
    // LOCAL (health checks from the proxy): no address, or addresses to be ignored.
    add(&mut s, "local.pp2", pp2(0x20, 0x00, b""));
    add(
        &mut s,
        "local_with_tcp4_addrs.pp2",
        pp2(0x20, 0x11, &tcp4[16..]),
    );
    // PROXY with UNSPEC, UDP4, UDP6 and UNIX families.
    add(&mut s, "proxy_unspec.pp2", pp2(0x21, 0x00, b""));
    add(&mut s, "udp4.pp2", pp2(0x21, 0x12, &tcp4[16..]));
    add(&mut s, "udp6.pp2", pp2(0x21, 0x22, &tcp6[16..]));
    let mut unix = vec![0u8; 216];
    unix[..18].copy_from_slice(b"/run/haproxy.sock\0");
    unix[108..126].copy_from_slice(b"/run/edge-rtmp.so\0");
    add(&mut s, "unix_stream.pp2", pp2(0x21, 0x31, &unix));
    // TLVs after the addresses: ALPN, AUTHORITY, CRC32C, UNIQUE_ID, SSL with sub-TLVs, NETNS,
    // NOOP padding (haproxy's send-proxy-v2-ssl-cn and friends).
    let mut body = tcp4[16..].to_vec();
    body.extend(tlv(0x01, b"rtmp"));
    body.extend(tlv(0x02, b"live.example.com"));
    body.extend(tlv(0x03, &[0x12, 0x34, 0x56, 0x78]));
    body.extend(tlv(0x05, b"0123456789abcdef"));
    let mut ssl = vec![0x07, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    ssl.extend(tlv(0x22, b"viewer.example"));
    ssl.extend(tlv(0x23, b"TLS_AES_128_GCM_SHA256"));
    body.extend(tlv(0x20, &ssl));
    body.extend(tlv(0x30, b"blue"));
    body.extend(tlv(0x04, &[0; 8]));
    add(&mut s, "tcp4_tlvs.pp2", pp2(0x21, 0x11, &body));
    let mut body6 = tcp6[16..].to_vec();
    body6.extend(tlv(0x05, b"req-42"));
    add(&mut s, "tcp6_unique_id.pp2", pp2(0x21, 0x21, &body6));
    // The largest header accepted (16 + 536) and one byte over.
    let mut max = tcp4[16..].to_vec();
    max.extend(tlv(0x04, &vec![0; 536 - 12 - 3]));
    add(&mut s, "tcp4_max_len.pp2", pp2(0x21, 0x11, &max));
    max.push(0);
    add(&mut s, "tcp4_over_max_len.pp2", pp2(0x21, 0x11, &max));
    // Errors: length too short for the family, bad version and command, partial headers.
    add(&mut s, "tcp4_short_len.pp2", pp2(0x21, 0x11, &tcp4[16..20]));
    add(&mut s, "tcp6_short_len.pp2", pp2(0x21, 0x21, &tcp4[16..]));
    add(&mut s, "version1_binary.pp2", pp2(0x11, 0x11, &tcp4[16..]));
    add(&mut s, "command_2.pp2", pp2(0x22, 0x11, &tcp4[16..]));
    add(&mut s, "partial_signature.pp2", SIGNATURE[..7].to_vec());
    add(&mut s, "partial_addresses.pp2", tcp6[..30].to_vec());
    // v1 (text) is not accepted: the edge only speaks v2, so these are NoSignature errors.
    add(
        &mut s,
        "v1_tcp4.txt",
        b"PROXY TCP4 198.18.0.7 198.18.0.1 40000 1935\r\n\x03".to_vec(),
    );
    add(
        &mut s,
        "v1_tcp6.txt",
        b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 1935\r\n".to_vec(),
    );
    add(&mut s, "v1_unknown.txt", b"PROXY UNKNOWN\r\n".to_vec());
    add(&mut s, "plain_rtmp_c0.bin", vec![0x03; 16]);

    for (name, data) in &s {
        let r = parse_v2(data);
        let ok = matches!(r, Ok(Some(_)));
        let want_ok = !(name.contains("over_max")
            || name.contains("short_len")
            || name.contains("version1")
            || name.contains("command_2")
            || name.contains("partial")
            || name.ends_with(".txt")
            || name.ends_with(".bin"));
        assert_eq!(ok, want_ok, "{name}: {r:?}");
        if name.starts_with("partial") {
            assert_eq!(r, Ok(None), "{name}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// VRRP adverts as received from a raw socket (IP header included). The fuzz target expects
// VRID 51, v3, or v2 with PASS "1111" and a 1 s interval.

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn advert(
    version: u8,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &[Ipv4Addr],
    pass: Option<&str>,
) -> Vec<u8> {
    let o = Outgoing {
        version,
        vrid,
        priority,
        interval_cs,
        addrs,
        auth_pass: pass.map(auth_bytes),
    };
    vrrp::encode(&o, SRC, MULTICAST)
}

fn ip(payload: &[u8], ttl: u8) -> Vec<u8> {
    let mut p = ipv4_header(SRC, MULTICAST, ttl, payload.len()).to_vec();
    p.extend_from_slice(payload);
    p
}

fn vrrp_seeds() -> Seeds {
    let vips = [
        VIP,
        Ipv4Addr::new(198, 18, 0, 101),
        Ipv4Addr::new(198, 18, 0, 102),
    ];
    let mut s = Seeds::new();
    // v3 (RFC 5798), what lb and keepalived (vrrp_version 3) send.
    add(
        &mut s,
        "v3_master.ip",
        ip(&advert(3, 51, 150, 100, &[VIP], None), 255),
    );
    add(
        &mut s,
        "v3_backup_three_vips.ip",
        ip(&advert(3, 51, 100, 100, &vips, None), 255),
    );
    add(
        &mut s,
        "v3_resign_priority0.ip",
        ip(&advert(3, 51, 0, 100, &[VIP], None), 255),
    );
    add(
        &mut s,
        "v3_owner_priority255_fast.ip",
        ip(&advert(3, 51, 255, 25, &[VIP], None), 255),
    );
    add(
        &mut s,
        "v3_no_vips.ip",
        ip(&advert(3, 51, 100, 100, &[], None), 255),
    );
    add(
        &mut s,
        "v3_max_interval.ip",
        ip(&advert(3, 51, 100, 0x0fff, &[VIP], None), 255),
    );
    // v2 (RFC 3768), with PASS authentication and without.
    add(
        &mut s,
        "v2_auth_pass.ip",
        ip(&advert(2, 51, 100, 100, &[VIP], Some("1111")), 255),
    );
    add(
        &mut s,
        "v2_auth_pass_three_vips.ip",
        ip(&advert(2, 51, 100, 100, &vips, Some("1111")), 255),
    );
    add(
        &mut s,
        "v2_no_auth.ip",
        ip(&advert(2, 51, 100, 100, &[VIP], None), 255),
    );
    add(
        &mut s,
        "v2_wrong_pass.ip",
        ip(&advert(2, 51, 100, 100, &[VIP], Some("2222")), 255),
    );
    add(
        &mut s,
        "v2_interval_3s.ip",
        ip(&advert(2, 51, 100, 300, &[VIP], Some("1111")), 255),
    );
    // IP-level variations: options (IHL 6), padding after the advert, TTL 64, short packets.
    let v3 = advert(3, 51, 150, 100, &[VIP], None);
    let mut opts = ipv4_header(SRC, MULTICAST, 255, v3.len() + 4).to_vec();
    opts[0] = 0x46;
    opts.extend_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert option
    opts.extend_from_slice(&v3);
    add(&mut s, "v3_ip_options.ip", opts);
    let mut padded = ip(&v3, 255);
    padded.extend_from_slice(&[0; 6]); // Ethernet minimum-frame padding past total length
    add(&mut s, "v3_trailing_padding.ip", padded);
    let mut longer = v3.clone();
    longer.extend_from_slice(&[0; 4]); // total length covers more than the count says
    add(&mut s, "v3_extra_bytes_in_total.ip", ip(&longer, 255));
    add(&mut s, "v3_ttl64.ip", ip(&v3, 64));
    add(
        &mut s,
        "v3_other_vrid.ip",
        ip(&advert(3, 52, 150, 100, &[VIP], None), 255),
    );
    let mut bad = v3.clone();
    bad[7] ^= 1;
    add(&mut s, "v3_bad_checksum.ip", ip(&bad, 255));
    let mut wrong_type = v3.clone();
    wrong_type[0] = 0x32;
    add(&mut s, "v3_type2.ip", ip(&wrong_type, 255));
    let mut count_over = v3.clone();
    count_over[3] = 4;
    add(&mut s, "v3_count_over_length.ip", ip(&count_over, 255));
    add(&mut s, "v3_truncated.ip", ip(&v3, 255)[..26].to_vec());
    add(
        &mut s,
        "ip_header_only.ip",
        ipv4_header(SRC, MULTICAST, 255, 0).to_vec(),
    );

    let e3 = Expect {
        version: 3,
        vrid: 51,
        auth_pass: None,
        interval_s: 1,
    };
    let e2 = Expect {
        version: 2,
        vrid: 51,
        auth_pass: Some(auth_bytes("1111")),
        interval_s: 1,
    };
    for (name, data) in &s {
        let ok3 = vrrp::parse(data, &e3).is_ok();
        let ok2 = vrrp::parse(data, &e2).is_ok();
        let want3 = matches!(
            name.as_str(),
            "v3_master.ip"
                | "v3_backup_three_vips.ip"
                | "v3_resign_priority0.ip"
                | "v3_owner_priority255_fast.ip"
                | "v3_no_vips.ip"
                | "v3_max_interval.ip"
                | "v3_ip_options.ip"
                | "v3_trailing_padding.ip"
                | "v3_extra_bytes_in_total.ip"
        );
        let want2 = matches!(
            name.as_str(),
            "v2_auth_pass.ip" | "v2_auth_pass_three_vips.ip"
        );
        assert_eq!((ok3, ok2), (want3, want2), "{name}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// keepalived.conf / srs.conf: the seed 002 configs the importers are tested on, and edge cases.

fn conf_seeds(fuzz: &Path) -> Seeds {
    use common::confblock::{parse, Dialect};
    let mut out = Seeds::new();
    for (name, file, dialect) in [
        (
            "keepalived.conf",
            "../tests/fixtures/seeds002/keepalived.conf",
            Dialect::Keepalived,
        ),
        (
            "origin.conf",
            "../tests/fixtures/seeds002/origin.conf",
            Dialect::Nginx,
        ),
        (
            "edge.conf",
            "../tests/fixtures/seeds002/edge.conf",
            Dialect::Nginx,
        ),
        (
            "unsupported.conf",
            "../lb/tests/fixtures/keepalived-unsupported.conf",
            Dialect::Keepalived,
        ),
    ] {
        let data = std::fs::read(fuzz.join(file)).expect(file);
        assert!(parse(&data, name, dialect).is_ok(), "{name} must parse");
        add(&mut out, name, data);
    }
    for (name, data) in [
        ("unclosed", &b"vrrp_instance VI_1 {\n state MASTER\n"[..]),
        ("stray_close", b"}\n}\n"),
        ("unterminated_quote", b"notify \"/bin/x\n"),
        (
            "deep",
            b"a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{a{",
        ),
        (
            "missing_semicolon",
            b"vhost __defaultVhost__ { mode remote }",
        ),
    ] {
        assert!(
            parse(data, name, Dialect::Keepalived).is_err()
                || parse(data, name, Dialect::Nginx).is_err(),
            "{name} must fail"
        );
        add(&mut out, name, data.to_vec());
    }
    out
}
