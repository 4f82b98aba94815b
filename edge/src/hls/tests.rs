use super::*;
use crate::tools::flv::{self, FlvTag};
use rand::{Rng, SeedableRng};

fn clip() -> Vec<FlvTag> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/media/clip.flv");
    flv::parse(Bytes::from(std::fs::read(path).unwrap())).unwrap()
}

fn is_config(t: &FlvTag) -> bool {
    t.data.len() > 1 && (t.type_id == 8 || t.type_id == 9) && t.data[1] == 0
}

/// The 5 s clip looped `loops` times, one loop every 6 s (keyframes at 23 + 2000 k ms within
/// a loop), sequence headers only at the start: a long live stream as an origin sends it.
fn looped(loops: u32) -> Vec<FlvTag> {
    let tags = clip();
    let mut out: Vec<FlvTag> = tags.iter().filter(|t| is_config(t)).cloned().collect();
    for l in 0..loops {
        for t in tags.iter().filter(|t| !is_config(t) && t.type_id != 18) {
            let mut t = t.clone();
            t.timestamp += l * 6000;
            out.push(t);
        }
    }
    out
}

/// What a late edge receives: the sequence headers, then the stream from `from_ms` on.
fn joined_at(stream: &[FlvTag], from_ms: u32) -> Vec<FlvTag> {
    let mut out: Vec<FlvTag> = stream.iter().filter(|t| is_config(t)).cloned().collect();
    out.extend(
        stream
            .iter()
            .filter(|t| !is_config(t) && t.timestamp >= from_ms)
            .cloned(),
    );
    out
}

fn feed(p: &mut Packager, tags: &[FlvTag]) {
    for t in tags {
        p.push(t.type_id, t.timestamp, &t.data);
    }
}

/// (msn, name) of every media segment line (not gaps) and all parts.
struct Listing {
    media_sequence: u64,
    target: u64,
    segments: Vec<(u64, String, f64)>,
    gaps: Vec<u64>,
    parts: Vec<String>,
    hint: String,
    maps: Vec<String>,
    discontinuities: usize,
}

fn listing(pl: &str) -> Listing {
    let tag = |name: &str| {
        pl.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing in\n{pl}"))
            .to_string()
    };
    let media_sequence: u64 = tag("#EXT-X-MEDIA-SEQUENCE:").parse().unwrap();
    let target: u64 = tag("#EXT-X-TARGETDURATION:").parse().unwrap();
    let hint = pl
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI="))
        .unwrap_or("")
        .to_string();
    let maps = pl
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MAP:URI="))
        .map(|m| m.trim_matches('"').to_string())
        .collect();
    let discontinuities = pl.lines().filter(|l| *l == "#EXT-X-DISCONTINUITY").count();
    let (mut segments, mut gaps, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    let mut msn = media_sequence;
    let mut gap = false;
    let mut dur = 0.0;
    for line in pl.lines() {
        if line == "#EXT-X-GAP" {
            gap = true;
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            dur = d.trim_end_matches(',').parse().unwrap();
        } else if let Some(p) = line.strip_prefix("#EXT-X-PART:") {
            let uri = p.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
            parts.push(uri.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            if gap {
                gaps.push(msn);
            } else {
                segments.push((msn, line.to_string(), dur));
            }
            gap = false;
            msn += 1;
        }
    }
    Listing {
        media_sequence,
        target,
        segments,
        gaps,
        parts,
        hint: hint.trim_matches('"').to_string(),
        maps,
        discontinuities,
    }
}

#[test]
fn blocking_query() {
    assert_eq!(parse_blocking_query(""), Ok(None));
    assert_eq!(parse_blocking_query("?x=1"), Ok(None));
    assert_eq!(parse_blocking_query("_HLS_msn=5"), Ok(Some((5, None))));
    assert_eq!(
        parse_blocking_query("?_HLS_msn=5&_HLS_part=2&_HLS_skip=YES"),
        Ok(Some((5, Some(2))))
    );
    assert!(parse_blocking_query("_HLS_part=2").is_err());
    assert!(parse_blocking_query("_HLS_msn=-1").is_err());
    assert!(parse_blocking_query("_HLS_msn=1&_HLS_msn=2").is_err());
    assert!(parse_blocking_query("_HLS_msn").is_err());
}

#[test]
fn hls_playlist_tags_and_values() {
    let mut p = Packager::with_name(HlsOptions::default(), "cam");
    assert!(p.playlist().is_none());
    feed(&mut p, &looped(3));
    let pl = p.playlist().unwrap();
    assert!(pl.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n"), "{pl}");
    let hold: f64 = pl
        .split("PART-HOLD-BACK=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let part: f64 = pl
        .split("#EXT-X-PART-INF:PART-TARGET=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(part, 0.5);
    assert!(hold >= 3.0 * part, "{pl}");
    assert!(pl.contains("CAN-BLOCK-RELOAD=YES"));
    let init = p.init_name().unwrap().to_string();
    assert!(pl.contains(&format!("#EXT-X-MAP:URI=\"{init}\"")));
    assert!(init.starts_with("cam-init-") && init.ends_with(".mp4"));
    let l = listing(&pl);
    // Keyframes every 2 s at 23 + 2000 k, fragment 2 s: one segment per slot, named by it.
    assert!(l.gaps.is_empty(), "{pl}");
    assert!(l.segments.len() >= 5, "{pl}");
    for (i, (msn, name, dur)) in l.segments.iter().enumerate() {
        assert_eq!(*msn, l.media_sequence + i as u64);
        let ts: u64 = name
            .strip_prefix("cam-")
            .unwrap()
            .strip_suffix(".m4s")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ts / 2000, *msn, "msn = floor(ts / fragment)");
        assert!(dur.ceil() as u64 <= l.target);
        assert!(p.file(name).is_some());
    }
    assert!(pl.contains(",INDEPENDENT=YES"));
    assert!(
        p.file(&l.hint).is_none(),
        "the hinted part is not complete yet"
    );
    for part in &l.parts {
        assert!(p.file(part).is_some(), "{part}");
    }
    // A segment is the concatenation of its parts.
    let (_, name, _) = &l.segments[l.segments.len() - 1];
    let stem = name.strip_suffix(".m4s").unwrap();
    let mut cat = Vec::new();
    for i in 0.. {
        match p.file(&format!("{stem}.{i}.m4s")) {
            Some(b) => cat.extend_from_slice(&b),
            None => break,
        }
    }
    assert_eq!(cat, p.file(name).unwrap().to_vec());
    assert_eq!(
        pl.lines().last().unwrap(),
        format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", l.hint)
    );
    assert!(p.file("cam-999.m4s").is_none());
    assert!(p.file("../etc/passwd").is_none());
}

#[test]
fn hls_names_with_dots_and_unsafe_characters() {
    let mut p = Packager::with_name(HlsOptions::default(), "cam.2 hd/?");
    feed(&mut p, &looped(1));
    let l = listing(&p.playlist().unwrap());
    for (_, name, _) in &l.segments {
        assert!(name.starts_with("cam.2_hd__-"), "{name}");
        assert!(p.file(name).is_some(), "{name}");
    }
    for part in &l.parts {
        assert!(p.file(part).is_some(), "{part}");
    }
}

#[test]
fn hls_parts_cut_on_the_part_grid() {
    let mut p = Packager::new(HlsOptions::default());
    let stream: Vec<FlvTag> = looped(1)
        .into_iter()
        .filter(|t| t.timestamp < 4600)
        .collect();
    feed(&mut p, &stream);
    let pl = p.playlist().unwrap();
    assert!(pl.matches("#EXT-X-PART:").count() >= 8, "{pl}");
    for line in pl.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        let d: f64 = line
            .split("DURATION=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // 30 fps: a part is the frames of one 500 ms grid cell, give or take a frame.
        assert!(d > 0.0 && d <= 0.534, "{line}");
    }
}

#[test]
fn hls_window_bounds_segments_and_memory() {
    let opts = HlsOptions {
        window: Duration::from_secs(10),
        ..HlsOptions::default()
    };
    let mut p = Packager::new(opts);
    let stream = looped(40); // 240 s
    let mut peak = 0;
    for t in &stream {
        p.push(t.type_id, t.timestamp, &t.data);
        peak = peak.max(p.bytes());
    }
    let l = listing(&p.playlist().unwrap());
    assert!(l.segments.len() <= 7, "{} segments", l.segments.len());
    let total: usize = clip().iter().map(|t| t.data.len()).sum();
    // The clip is ~1.4 MB for 5 s: a 10 s window plus the open segment stays near 3 MB.
    assert!(peak < 4 * total, "peak {peak} vs clip {total}");
    assert!(p.bytes() > 0);
    // Expired segments are gone.
    let first = stream
        .iter()
        .find(|t| t.type_id == 9 && t.data[0] >> 4 == 1)
        .unwrap();
    assert!(p.file(&format!("stream-{}.m4s", first.timestamp)).is_none());
}

#[test]
fn hls_late_edge_lists_the_same_segments_byte_identical() {
    let stream = looped(5);
    let mut a = Packager::with_name(HlsOptions::default(), "s");
    feed(&mut a, &stream);
    let mut b = Packager::with_name(HlsOptions::default(), "s");
    feed(&mut b, &joined_at(&stream, 7000)); // joins 7 s later, first keyframe 8023 (a boundary)
    let (la, lb) = (
        listing(&a.playlist().unwrap()),
        listing(&b.playlist().unwrap()),
    );
    // Same tail: the playlists differ only by what edge A still holds from before B joined.
    let (pa, pb) = (a.playlist().unwrap(), b.playlist().unwrap());
    let tail = pb.split_once("#EXTINF").unwrap().1;
    assert!(pa.ends_with(tail), "{pa}\n---\n{pb}");
    assert!(la.media_sequence < lb.media_sequence);
    assert_eq!(a.init_segment(), b.init_segment());
    assert_eq!(la.hint, lb.hint);
    assert!(!lb.segments.is_empty());
    for (msn, name, _) in &lb.segments {
        assert!(la.segments.iter().any(|(m, n, _)| m == msn && n == name));
        assert_eq!(a.file(name), b.file(name), "{name}");
    }
    for part in &lb.parts {
        assert_eq!(a.file(part), b.file(part), "{part}");
    }
}

#[test]
fn hls_late_edge_mid_segment_first_segment_cannot_collide() {
    let opts = HlsOptions {
        fragment: Duration::from_secs(4),
        window: Duration::from_secs(60),
        ..HlsOptions::default()
    };
    let stream = looped(5);
    let mut a = Packager::with_name(opts.clone(), "s");
    feed(&mut a, &stream);
    let mut b = Packager::with_name(opts, "s");
    // First keyframe 10023: slot 2, whose segment on edge A starts at 8023.
    feed(&mut b, &joined_at(&stream, 9000));
    let (la, lb) = (
        listing(&a.playlist().unwrap()),
        listing(&b.playlist().unwrap()),
    );
    let (msn0, name0, _) = &lb.segments[0];
    assert_eq!(name0, "s-10023.m4s");
    assert_eq!(*msn0, 2);
    assert!(la
        .segments
        .iter()
        .any(|(m, n, _)| m == msn0 && n == "s-8023.m4s"));
    assert!(!la.segments.iter().any(|(_, n, _)| n == name0));
    assert!(lb.segments.len() >= 3);
    for (msn, name, _) in &lb.segments[1..] {
        assert!(
            la.segments.iter().any(|(m, n, _)| m == msn && n == name),
            "{name}"
        );
        assert_eq!(a.file(name), b.file(name), "{name}");
    }
}

#[test]
fn hls_long_gop_lists_gaps_with_consecutive_numbers() {
    // Keyframes every 2 s, fragment 1 s: slots 0, 2, 4, ... -> 1, 3, ... are gaps.
    let opts = HlsOptions {
        fragment: Duration::from_secs(1),
        part: Duration::from_millis(250),
        ..HlsOptions::default()
    };
    let mut p = Packager::new(opts.clone());
    let stream = looped(3);
    feed(&mut p, &stream);
    let pl = p.playlist().unwrap();
    let l = listing(&pl);
    assert!(!l.gaps.is_empty(), "{pl}");
    assert!(!pl.lines().nth(7).unwrap_or("").starts_with("#EXT-X-GAP"));
    for (msn, name, _) in &l.segments {
        let ts: u64 = name[7..name.len() - 4].parse().unwrap();
        assert_eq!(ts / 1000, *msn);
    }
    for g in &l.gaps {
        assert!(p.file(&format!("stream-gap{g}.m4s")).is_none());
        assert!(
            p.has_part(*g, 0),
            "a gap before the open segment is complete"
        );
    }
    // A late edge agrees on the numbering.
    let mut b = Packager::new(opts);
    feed(&mut b, &joined_at(&stream, 7000));
    let lb = listing(&b.playlist().unwrap());
    for (msn, name, _) in &lb.segments {
        assert!(l.segments.iter().any(|(m, n, _)| m == msn && n == name));
    }
    assert!(lb.gaps.iter().all(|g| l.gaps.contains(g)));
}

#[test]
fn hls_has_part_semantics() {
    let mut p = Packager::new(HlsOptions::default());
    assert!(!p.has_part(0, 0));
    feed(&mut p, &looped(2));
    let l = listing(&p.playlist().unwrap());
    let open = p.open.as_ref().unwrap();
    let (msn, n) = (open.msn, open.parts.len() as u64);
    assert!(n > 0);
    assert!(p.has_part(msn, n - 1));
    assert!(!p.has_part(msn, n));
    assert!(!p.has_part(msn + 1, 0));
    assert!(!p.has_segment(msn));
    assert!(!p.too_far_ahead(msn + 2) && p.too_far_ahead(msn + 3));
    let (last_closed, ..) = l.segments.last().unwrap();
    assert_eq!(*last_closed + 1, msn);
    assert!(p.has_segment(*last_closed));
    // Past the last part of a closed segment = part 0 of the next: true here...
    assert!(p.has_part(*last_closed, 99));
    assert!(p.has_part(0, 0), "older than the playlist");
    // ...and false when the next segment has no complete part yet.
    let mut q = Packager::new(HlsOptions::default());
    let stream = looped(1);
    let cut = stream
        .iter()
        .position(|t| t.type_id == 9 && t.timestamp == 2023)
        .unwrap();
    feed(&mut q, &stream[..=cut]);
    assert_eq!(q.open.as_ref().unwrap().msn, 1);
    assert!(q.open.as_ref().unwrap().parts.is_empty());
    assert!(!q.has_part(0, 99));
    assert!(q.has_part(0, 0));
    // The hinted part appears once complete.
    let hint = q.preload_hint().unwrap();
    assert_eq!(hint, "stream-2023.0.m4s");
    assert!(q.file(&hint).is_none());
    feed(&mut q, &stream[cut + 1..]);
    assert!(q.file(&hint).is_some());
}

#[test]
fn hls_audio_only_and_video_only() {
    let audio: Vec<FlvTag> = looped(2).into_iter().filter(|t| t.type_id == 8).collect();
    let mut p = Packager::new(HlsOptions::default());
    feed(&mut p, &audio);
    let l = listing(&p.playlist().unwrap());
    assert!(l.segments.len() >= 4, "audio cut by timestamp");
    let init = p.init_segment().unwrap();
    assert!(init.windows(4).any(|w| w == b"mp4a"));
    assert!(!init.windows(4).any(|w| w == b"avc1"));

    let video: Vec<FlvTag> = looped(2).into_iter().filter(|t| t.type_id == 9).collect();
    let mut p = Packager::new(HlsOptions::default());
    feed(&mut p, &video);
    assert!(listing(&p.playlist().unwrap()).segments.len() >= 4);
    let init = p.init_segment().unwrap();
    assert!(!init.windows(4).any(|w| w == b"mp4a"));
    assert!(init.windows(4).any(|w| w == b"avc1"));
}

#[test]
fn hls_keyframeless_stream_stays_bounded() {
    let mut p = Packager::new(HlsOptions::default());
    let stream = looped(1);
    feed(&mut p, &stream[..4]); // headers and the first keyframe
    let frame = stream
        .iter()
        .find(|t| t.type_id == 9 && t.data[0] >> 4 == 2)
        .unwrap()
        .data
        .clone();
    for i in 0..30 * 600u32 {
        p.push(9, 100 + i * 33, &frame);
    }
    let l = listing(&p.playlist().unwrap());
    assert!(l.segments.len() <= 12, "{}", l.segments.len());
    assert!(p.bytes() < 30 * 30 * frame.len() * 2);
}

#[test]
fn hls_reset_and_config_change_continue_after_a_discontinuity() {
    let stream = looped(2);
    let opts = HlsOptions {
        window: Duration::from_secs(60),
        ..HlsOptions::default()
    };
    let mut p = Packager::new(opts);
    feed(&mut p, &stream);
    let before = listing(&p.playlist().unwrap());
    let old_init = p.init_name().unwrap().to_string();
    // The source changed: the open segment is closed, the listed ones stay.
    p.reset();
    let after = listing(&p.playlist().unwrap());
    assert_eq!(after.segments.len(), before.segments.len() + 1);
    assert!(p.preload_hint().is_none());
    let last = after.segments.last().unwrap().0;
    assert!(!p.has_part(last, 99) && p.has_segment(last));
    // A republish restarts timestamps at 0: numbering continues after a discontinuity, with
    // names that cannot meet the old timeline's.
    feed(&mut p, &stream);
    let pl = p.playlist().unwrap();
    let l = listing(&pl);
    assert_eq!(l.discontinuities, 1, "{pl}");
    assert_eq!(
        l.maps,
        vec![old_init.clone(), old_init.clone()],
        "same config, same init"
    );
    let renamed: Vec<_> = l.segments.iter().filter(|s| s.1.contains("-o")).collect();
    assert!(!renamed.is_empty(), "{pl}");
    assert!(renamed[0].0 > last);
    let mut names: Vec<_> = l.segments.iter().map(|s| &s.1).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), l.segments.len(), "unique names");
    check_consistent(&p);
    // A changed AVC config: a new init segment after a second discontinuity.
    let mut cfg = stream
        .iter()
        .find(|t| t.type_id == 9 && is_config(t))
        .unwrap()
        .data
        .to_vec();
    let n = cfg.len() - 1;
    cfg[n] ^= 1;
    p.push(9, 20_000, &Bytes::from(cfg));
    for t in &stream {
        if !is_config(t) {
            p.push(t.type_id, t.timestamp + 20_000, &t.data);
        }
    }
    let l = listing(&p.playlist().unwrap());
    assert_eq!(l.discontinuities, 2);
    assert_ne!(l.maps.last().unwrap(), &old_init);
    assert_eq!(p.init_name(), Some(l.maps.last().unwrap().as_str()));
    check_consistent(&p);
    // Enough new media pushes the old timelines out of the window.
    for t in &looped(12) {
        if !is_config(t) {
            p.push(t.type_id, t.timestamp + 40_000, &t.data);
        }
    }
    let pl = p.playlist().unwrap();
    assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{pl}");
    assert_eq!(listing(&pl).discontinuities, 0);
    assert!(p.file(&old_init).is_none(), "unreferenced init dropped");
    check_consistent(&p);
}

#[test]
fn hls_two_edges_agree_after_a_republish() {
    let stream = looped(3);
    let (mut a, mut b) = (
        Packager::new(HlsOptions::default()),
        Packager::new(HlsOptions::default()),
    );
    feed(&mut a, &stream);
    feed(&mut b, &joined_at(&stream, 7000));
    // The publisher comes back with timestamps from 0; both edges are told at the same point.
    a.reset();
    b.reset();
    feed(&mut a, &stream);
    feed(&mut b, &stream);
    let (pa, pb) = (a.playlist().unwrap(), b.playlist().unwrap());
    let tail = |pl: &str| {
        pl.split_once("#EXT-X-DISCONTINUITY\n")
            .unwrap()
            .1
            .to_string()
    };
    assert_eq!(tail(&pa), tail(&pb));
    let l = listing(&pb);
    for (_, name, _) in l.segments.iter().filter(|s| s.1.contains("-o")) {
        assert_eq!(a.file(name), b.file(name), "{name}");
    }
}

#[test]
fn hls_timestamp_wrap_does_not_panic() {
    let mut p = Packager::new(HlsOptions::default());
    let stream = looped(3);
    let base = u32::MAX - 7000;
    for t in &stream {
        p.push(t.type_id, t.timestamp.wrapping_add(base), &t.data);
    }
    let l = listing(&p.playlist().unwrap());
    for w in l.segments.windows(2) {
        assert_eq!(w[0].0 + 1, w[1].0);
    }
    assert!(l
        .segments
        .iter()
        .any(|(m, ..)| *m > (u32::MAX as u64) / 2000));
}

#[test]
fn hls_timestamp_flipping_forever_does_not_overflow() {
    let stream = looped(1);
    let mut p = Packager::new(HlsOptions::default());
    feed(&mut p, &stream[..6]);
    let key = stream
        .iter()
        .find(|t| t.type_id == 9 && t.data[0] == 0x17 && t.data[1] == 1)
        .unwrap();
    // Every flip from high to low counts as a wrap.
    let flips = [u32::MAX - 5, 5, 1 << 31];
    for i in 0..3_300_000usize {
        p.extend(flips[i % 3]);
    }
    assert_eq!(p.epoch, MAX_EPOCH);
    for i in 0..3000usize {
        p.push(9, flips[i % 3], &key.data);
    }
    check_consistent(&p);
}

#[test]
fn hls_garbage_never_panics() {
    let stream = looped(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut playlists = 0;
    for round in 0..600 {
        let opts = HlsOptions {
            fragment: Duration::from_millis(rng.gen_range(0..5000)),
            window: Duration::from_millis(rng.gen_range(0..30000)),
            part: Duration::from_millis(rng.gen_range(0..3000)),
        };
        let mut p = Packager::new(opts);
        if round % 2 == 0 {
            // The real stream in order, with some messages mangled, dropped, duplicated or
            // moved in time: the packager must keep going and keep its playlist consistent.
            for t in &stream {
                let mut ts = t.timestamp;
                let mut data = t.data.to_vec();
                match rng.gen_range(0..40) {
                    0 => continue,
                    1 => ts = ts.wrapping_add(rng.gen_range(0..70_000)),
                    2 => ts = ts.wrapping_sub(rng.gen_range(0..3000)),
                    3 => data.truncate(rng.gen_range(0..=data.len())),
                    4 if !data.is_empty() => {
                        let i = rng.gen_range(0..data.len());
                        data[i] = rng.gen();
                    }
                    5 => p.push(t.type_id, ts, &t.data),
                    _ => {}
                }
                p.push(t.type_id, ts, &Bytes::from(data));
            }
            assert!(p.bytes() < MAX_BYTES);
            playlists += p.playlist().is_some() as u32;
            check_consistent(&p);
        }
        let mut ts = 0u32;
        for _ in 0..400 {
            let kind = [8u8, 9, 18, 0, 255][rng.gen_range(0..5)];
            ts = match rng.gen_range(0..10) {
                0 => rng.gen(),
                1 => ts.wrapping_sub(rng.gen_range(0..5000)),
                _ => ts.wrapping_add(rng.gen_range(0..100)),
            };
            let payload: Bytes = if rng.gen_bool(0.5) {
                // A real message, mangled.
                let t = &stream[rng.gen_range(0..stream.len())];
                let mut d = t.data.to_vec();
                let cut = rng.gen_range(0..=d.len());
                d.truncate(cut);
                for _ in 0..rng.gen_range(0..4) {
                    if !d.is_empty() {
                        let i = rng.gen_range(0..d.len());
                        d[i] = rng.gen();
                    }
                }
                d.into()
            } else {
                let n = rng.gen_range(0..40);
                let mut d: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                if let Some(first) = d.first_mut() {
                    *first = [0x17, 0x27, 0xaf, 0xa0, *first][rng.gen_range(0..5)];
                }
                d.into()
            };
            p.push(kind, ts, &payload);
            if round % 10 == 0 {
                let _ = p.playlist();
                let _ = p.bytes();
                let _ = p.has_part(rng.gen(), rng.gen());
                let _ = p.has_part(rng.gen_range(0..100), rng.gen_range(0..10));
                if let Some(h) = p.preload_hint() {
                    let _ = p.file(&h);
                }
            }
        }
        check_consistent(&p);
        let _ = p.init_segment();
        p.reset();
        check_consistent(&p);
    }
    assert!(
        playlists > 50,
        "only {playlists} rounds produced a playlist"
    );
}

/// Whatever came in, the playlist keeps its promises: every listed segment and part exists,
/// closed segments are complete, the init is there.
fn check_consistent(p: &Packager) {
    let Some(pl) = p.playlist() else { return };
    let l = listing(&pl);
    for (i, (msn, name, _)) in l.segments.iter().enumerate() {
        assert!(p.file(name).is_some(), "{name} listed but missing\n{pl}");
        assert_eq!(
            *msn,
            l.media_sequence + (i + l.gaps.iter().filter(|g| *g < msn).count()) as u64
        );
        assert!(p.has_segment(*msn));
    }
    for part in &l.parts {
        assert!(p.file(part).is_some(), "{part} listed but missing\n{pl}");
    }
    for m in &l.maps {
        assert!(p.file(m).is_some(), "init {m} listed but missing");
    }
    assert_eq!(l.maps.len(), l.discontinuities + 1);
    assert!(l.segments.iter().all(|s| s.2.ceil() as u64 <= l.target));
}

fn ffprobe_available(test: &str) -> bool {
    let ok = std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("EDGEFLEET_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("{test}: ffprobe missing and EDGEFLEET_REQUIRE_ALL=1");
        }
        println!("SKIP {test}: ffprobe not found");
    }
    ok
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefleet-hls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the playlist as `index.m3u8` and every file it lists, with their names.
fn write_all(p: &Packager, dir: &std::path::Path) -> String {
    let pl = p.playlist().unwrap();
    std::fs::write(dir.join("index.m3u8"), &pl).unwrap();
    let init = p.init_name().unwrap();
    std::fs::write(dir.join(init), p.init_segment().unwrap()).unwrap();
    let l = listing(&pl);
    for name in l.segments.iter().map(|s| &s.1).chain(&l.parts) {
        std::fs::write(dir.join(name), p.file(name).unwrap()).unwrap();
    }
    pl
}

fn ffprobe(args: &[&str]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg("ffprobe")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hls_ffprobe_decodes_init_plus_segment() {
    if !ffprobe_available("hls_ffprobe_decodes_init_plus_segment") {
        return;
    }
    let mut p = Packager::new(HlsOptions::default());
    feed(&mut p, &looped(2));
    let dir = temp_dir("seg");
    let pl = write_all(&p, &dir);
    let l = listing(&pl);
    let (_, seg, _) = &l.segments[1];
    let mut joined = p.init_segment().unwrap().to_vec();
    joined.extend_from_slice(&p.file(seg).unwrap());
    let path = dir.join("joined.mp4");
    std::fs::write(&path, joined).unwrap();
    let path = path.to_str().unwrap();
    let streams = ffprobe(&["-v", "error", "-show_streams", path]);
    assert!(streams.contains("codec_name=h264"), "{streams}");
    assert!(streams.contains("codec_name=aac"), "{streams}");
    assert!(streams.contains("width=1280") && streams.contains("height=720"));
    // Every frame decodes without an error message.
    let out = std::process::Command::new("timeout")
        .args(["60", "ffprobe", "-v", "error", "-show_frames", path])
        .output()
        .unwrap();
    assert!(out.status.success());
    let frames = String::from_utf8_lossy(&out.stdout);
    let video = frames.matches("media_type=video").count();
    let audio = frames.matches("media_type=audio").count();
    assert!(
        video >= 55 && audio >= 80,
        "{video} video, {audio} audio frames"
    );
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.trim().is_empty(), "{errors}");
    // EDGEFLEET_KEEP_HLS=1 keeps the files for a look with ffprobe or a player.
    if std::env::var_os("EDGEFLEET_KEEP_HLS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn hls_ffprobe_decodes_audio_only_and_video_only() {
    if !ffprobe_available("hls_ffprobe_decodes_audio_only_and_video_only") {
        return;
    }
    for (kind, codec) in [(8u8, "codec_name=aac"), (9, "codec_name=h264")] {
        let tags: Vec<FlvTag> = looped(1)
            .into_iter()
            .filter(|t| t.type_id == kind)
            .collect();
        let mut p = Packager::new(HlsOptions::default());
        feed(&mut p, &tags);
        let l = listing(&p.playlist().unwrap());
        let mut joined = p.init_segment().unwrap().to_vec();
        joined.extend_from_slice(&p.file(&l.segments[0].1).unwrap());
        let dir = temp_dir(&format!("only{kind}"));
        let path = dir.join("joined.mp4");
        std::fs::write(&path, joined).unwrap();
        let streams = ffprobe(&["-v", "error", "-show_streams", path.to_str().unwrap()]);
        assert!(streams.contains(codec), "{streams}");
        assert_eq!(streams.matches("[STREAM]").count(), 1, "{streams}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn hls_ffprobe_reads_the_playlist() {
    if !ffprobe_available("hls_ffprobe_reads_the_playlist") {
        return;
    }
    let mut p = Packager::new(HlsOptions::default());
    feed(&mut p, &looped(3));
    let dir = temp_dir("pl");
    write_all(&p, &dir);
    let index = dir.join("index.m3u8");
    let streams = ffprobe(&["-v", "error", "-show_streams", index.to_str().unwrap()]);
    assert!(streams.contains("codec_name=h264"), "{streams}");
    assert!(streams.contains("codec_name=aac"), "{streams}");
    let _ = std::fs::remove_dir_all(&dir);
}
