//! Any bytes as an HTTP request head (edge `[http]`): parsing, routing, byte ranges and the
//! LL-HLS blocking-reload query never panic, and a parsed head never claims more bytes than it
//! was given. The same bytes as a media playlist for `edge hls-load`'s parser, as a play token
//! (`?token=`: checked, never a panic) and as a playlist whose URIs get the token appended.
#![no_main]
use edge::hls::parse_blocking_query;
use edge::http::request::{byte_range, parse, route, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Request(req, len) => {
            assert!(len <= data.len());
            let _ = route(&req.path);
            let _ = byte_range(req.range.as_deref(), data.len());
            let _ = parse_blocking_query(&req.query);
            let _ = common::query::without(&req.query, "token");
        }
        Parsed::Refused(_, len) => assert!(len <= data.len()),
        Parsed::Partial => {}
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_blocking_query(text);
        let _ = edge::tools::hls_load::parse_playlist(text);
        let _ = edge::tools::hls_load::segment_start_ts(text);
        let play = edge::token::PlayConfig {
            token_keys: vec!["0123456789abcdef".into()],
            token_exempt: Vec::new(),
        };
        let peer = std::net::IpAddr::from([198, 18, 0, 1]);
        assert!(play.check("live/cam", Some(text), peer, 0).is_err() || text.starts_with("v1-"));
        let _ = edge::token::playlist_with_query(text, "token=t");
    }
});
