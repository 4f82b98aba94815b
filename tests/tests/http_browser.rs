//! HTTP delivery in a real browser: a page of another origin (so CORS counts) plays the edge's
//! HTTP-FLV with mpegts.js and its HLS / LL-HLS with hls.js (lowLatencyMode), in headless
//! Chromium (tests/browser/play.mjs). Screenshots: target/test-artifacts/browser-edge-*.png.

use edgefleet_tests::*;

/// A cold edge pulling from an origin, both with `[http]`, the test clip published; plays
/// `ext` from the edge in the browser for 3 s of media.
async fn edge_plays_in_a_browser(test: &str, kind: &str, ext: &str) {
    common::logging::init_for_tests();
    if !have_browser(test) {
        return;
    }
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let url = edge.http_url("cam", ext);
    let shot = artifacts_dir().join(format!("browser-edge-{kind}.png"));
    let v = browser_play_async(&url, kind, &shot, 3.0).await.unwrap();
    eprintln!("{kind}: {v}");
    assert_eq!(v["ok"], true, "{url} did not play in the browser: {v}");
    // The test clip is 1280x720.
    assert_eq!(v["videoWidth"], 1280, "{v}");
    assert_eq!(v["videoHeight"], 720, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_plays_the_edges_http_flv() {
    edge_plays_in_a_browser("a_browser_plays_the_edges_http_flv", "flv", "flv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_plays_the_edges_hls() {
    edge_plays_in_a_browser("a_browser_plays_the_edges_hls", "hls", "m3u8").await;
}
