//! Any bytes as a sequence of RTMP media messages into one HLS packager: it never panics,
//! every accessor answers, memory stays bounded, and the playlist's files are all there.
//! Input: 3 option bytes (fragment, window, part), then records `type u8, timestamp u32 BE,
//! length u16 BE, payload` (the last one may be short).
#![no_main]
use bytes::Bytes;
use edge::hls::{HlsOptions, Packager, MAX_BYTES};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let opts = HlsOptions {
        fragment: Duration::from_millis(data[0] as u64 * 50),
        window: Duration::from_millis(data[1] as u64 * 500),
        part: Duration::from_millis(data[2] as u64 * 20),
    };
    let mut p = Packager::new(opts);
    let input = Bytes::copy_from_slice(&data[3..]);
    let mut pos = 0;
    while pos + 7 <= input.len() {
        let h = &input[pos..pos + 7];
        let ts = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        let len = u16::from_be_bytes([h[5], h[6]]) as usize;
        let end = (pos + 7 + len).min(input.len());
        p.push(h[0], ts, &input.slice(pos + 7..end));
        pos = end;
        assert!(p.bytes() <= 2 * MAX_BYTES);
        let (msn, part) = (ts as u64 / 1000, (len % 8) as u64);
        let _ = p.has_part(msn, part);
        let _ = p.has_segment(msn);
    }
    if let Some(pl) = p.playlist() {
        let mut gap = false;
        for line in pl.lines() {
            if line == "#EXT-X-GAP" {
                gap = true;
            } else if !line.starts_with('#') {
                // A gap entry's URI is never served; every other listed file exists.
                assert_eq!(p.file(line).is_some(), !gap, "{line}");
                gap = false;
            } else if let Some(uri) = line.split("URI=\"").nth(1) {
                let uri = uri.split('"').next().unwrap_or("");
                let hinted = line.starts_with("#EXT-X-PRELOAD-HINT");
                assert_eq!(p.file(uri).is_some(), !hinted, "{line}");
            }
        }
        let _ = p.preload_hint().map(|h| p.file(&h));
        // While waiting for a new timeline the current init is None, the listed ones are
        // served (checked above through their #EXT-X-MAP URIs).
        assert_eq!(p.init_segment().is_some(), p.preload_hint().is_some());
    }
    let _ = p.file("");
    let _ = p.file("stream-0.0.m4s");
    p.reset();
    assert!(p.preload_hint().is_none());
});
