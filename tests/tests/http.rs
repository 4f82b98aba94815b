//! HTTP delivery end to end: HTTP-FLV and HLS from origins and edges (cold, chained, behind
//! lb), decoded by ffprobe/ffmpeg, and hostile HTTP that must leave viewers served.

use edgefleet_tests::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The head and the first `n` bytes of the body of a GET (which may never end: live FLV).
async fn get_prefix(addr: SocketAddr, path: &str, n: usize) -> Result<(String, Vec<u8>), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = exchange(addr, &req, Some(n)).await?;
    Ok((head, body[..n].to_vec()))
}

/// Sends `request` and reads the answer: its head and body, to the end or (`until`) the
/// first that many body bytes.
async fn exchange(
    addr: SocketAddr,
    request: &str,
    until: Option<usize>,
) -> Result<(String, Vec<u8>), String> {
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if let (Some(n), Some(end)) = (until, buf.windows(4).position(|w| w == b"\r\n\r\n")) {
                if buf.len() >= end + 4 + n {
                    break;
                }
            }
            let k = s.read(&mut chunk).await?;
            if k == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..k]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(Duration::from_secs(30), go).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out".into()),
    };
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no head in {:?}", String::from_utf8_lossy(&buf)));
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body = buf[end + 4..].to_vec();
    if until.is_some_and(|n| body.len() < n) {
        return Err(format!("closed early: {head}"));
    }
    Ok((head, body))
}

/// An origin with the clip published as live/cam, an edge on it and an edge on that edge, all
/// with `[http]`; the publisher runs while the last value lives.
async fn chain() -> (Running, Running, Running, common::shutdown::Trigger) {
    let origin = origin_with(with_http).await;
    let edge1 = edge_with(&[origin.addr], with_http).await;
    let edge2 = edge_with(&[edge1.addr], with_http).await;
    let publisher = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    (origin, edge1, edge2, publisher.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_from_a_cold_edge_and_a_chain_decodes_h264_and_aac() {
    common::logging::init_for_tests();
    let test = "http_flv_from_a_cold_edge_and_a_chain_decodes_h264_and_aac";
    if !have("ffprobe", test) || !have("ffmpeg", test) {
        return;
    }
    let (origin, edge1, edge2, _publisher) = chain().await;
    for (who, server) in [
        ("origin", &origin),
        ("cold edge", &edge1),
        ("edge -> edge", &edge2),
    ] {
        let url = server.http_url("cam", "flv");
        let codecs = ffprobe_codecs(&url)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        assert_eq!(codecs, ["aac", "h264"], "{who}: {url}");
        ffmpeg_decode(&url, 3)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        // The header names both tracks; CORS for pages of other origins.
        let (head, body) = get_prefix(server.http.unwrap(), "/live/cam.flv", 13)
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{who}: {head}");
        assert!(head.contains("Content-Type: video/x-flv"), "{head}");
        assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
        assert_eq!(&body[..5], b"FLV\x01\x05", "{who}: hasAudio + hasVideo");
    }
    // The edges' HTTP viewers count as viewers of one pull each.
    let info = edge1.hub.info("live/cam").expect("edge1 has the stream");
    assert!(info.pulling, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_header_names_only_the_tracks_sent() {
    common::logging::init_for_tests();
    let test = "http_flv_header_names_only_the_tracks_sent";
    if !have("ffmpeg", test) {
        return;
    }
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], with_http).await;
    // Audio only: a header announcing video would stall flv.js / mpegts.js.
    let _guard = ffmpeg_publish_with(&origin.url("radio"), &["-vn"]);
    wait_published(&origin.hub, "radio").await;
    for server in [&origin, &edge] {
        let (_, body) = get_prefix(server.http.unwrap(), "/live/radio.flv", 13)
            .await
            .unwrap();
        assert_eq!(&body[..5], b"FLV\x01\x04", "hasAudio only");
    }
    let codecs = ffprobe_codecs(&edge.http_url("radio", "flv"))
        .await
        .unwrap();
    assert_eq!(codecs, ["aac"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_streams_and_bad_paths_are_answered_not_hung() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], with_http).await;
    let o = origin.http.unwrap();
    let e = edge.http.unwrap();
    assert_eq!(http(o, "GET", "/live/nobody.flv").await.0, 404);
    let (code, body) = http(e, "GET", "/live/nobody.flv").await;
    assert_eq!(code, 404, "an edge whose origins lack the stream: {body}");
    assert_eq!(
        http(e, "GET", "/live/nobody.flv").await.0,
        404,
        "remembered"
    );
    for (path, want) in [
        ("/live/../../etc/passwd.flv", 400),
        ("/live/%2e%2e/x.m3u8", 400),
        ("/favicon.ico", 404),
        ("/", 404),
    ] {
        assert_eq!(http(o, "GET", path).await.0, want, "{path}");
    }
    assert_eq!(http(o, "POST", "/live/cam.flv").await.0, 405);
    let (code, _) = http(o, "OPTIONS", "/live/cam.m3u8").await;
    assert_eq!(code, 204, "CORS preflight");
}

/// Hostile HTTP (traversal, a 1 MB header, garbage, 20 000 pipelined requests, slowloris)
/// while an HTTP-FLV viewer and an RTMP viewer play: both go on receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_leaves_the_viewers_served() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let h = edge.http.unwrap();
    // A viewer of each kind, counting bytes.
    let flv_bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fb = flv_bytes.clone();
    let viewer = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(h).await.unwrap();
        s.write_all(b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    fb.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    let start = std::time::Instant::now();
    // Slowloris: heads that never end, one byte at a time.
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(h).await.unwrap();
            let t0 = std::time::Instant::now();
            for b in b"GET /live/cam.m3u8 HTTP/1.1\r\nX-a: "
                .iter()
                .cycle()
                .take(40)
            {
                if s.write_all(&[*b]).await.is_err() {
                    return t0.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
            t0.elapsed()
        }));
    }
    // A 1 MB header: 431 and closed, not buffered.
    {
        let mut s = tokio::net::TcpStream::connect(h).await.unwrap();
        let big = format!(
            "GET /live/cam.flv HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let _ = s.write_all(big.as_bytes()).await;
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    }
    // Garbage: 400 and closed.
    {
        let mut s = tokio::net::TcpStream::connect(h).await.unwrap();
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = s.write_all(&garbage).await;
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
        assert!(
            String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 400"),
            "{:?}",
            &resp[..resp.len().min(64)]
        );
    }
    // 20 000 pipelined requests on one connection, every one answered, in order.
    {
        let s = tokio::net::TcpStream::connect(h).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            let one = b"GET /live/../x.flv HTTP/1.1\r\nHost: x\r\n\r\nGET /live/none.m4s HTTP/1.1\r\nHost: x\r\n\r\n";
            let mut all = Vec::with_capacity(one.len() * 10_000);
            for _ in 0..10_000 {
                all.extend_from_slice(one);
            }
            all.extend_from_slice(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
            w.write_all(&all).await.unwrap();
            w
        });
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut resp))
            .await
            .expect("20 000 pipelined answers within a minute")
            .unwrap();
        let _w = writer.await.unwrap();
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(text.matches("HTTP/1.1 400").count(), 10_000);
        assert_eq!(text.matches("HTTP/1.1 404").count(), 10_001);
    }
    // The slow clients are cut by the head timeout (10 s), not served forever.
    for t in slow {
        let took = t.await.unwrap();
        assert!(
            took < Duration::from_secs(19),
            "a slowloris client lasted {took:?}"
        );
    }
    let before = flv_bytes.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = flv_bytes.load(std::sync::atomic::Ordering::Relaxed);
    // ~275 kB/s of clip: the viewer was served all along.
    let per_s = before as f64 / start.elapsed().as_secs_f64();
    assert!(
        per_s > 150_000.0,
        "the HTTP-FLV viewer got {before} bytes in {:?}",
        start.elapsed()
    );
    assert!(after > before, "the HTTP-FLV viewer still receives");
    viewer.abort();
    // And the edge still serves a new viewer.
    let url = edge.http_url("cam", "flv");
    if have("ffprobe", "hostile_http_leaves_the_viewers_served") {
        assert_eq!(ffprobe_codecs(&url).await.unwrap(), ["aac", "h264"]);
    }
}

/// An HTTP virtual server on lb (PROXY forwarding, rr) in front of two edges' `[http]`:
/// HTTP-FLV decodes through the VIP, and a stopped edge is taken out by the health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_and_hls_through_lb() {
    common::logging::init_for_tests();
    let test = "http_flv_and_hls_through_lb";
    if !have("ffprobe", test) {
        return;
    }
    let origin = origin_with(with_http).await;
    let e1 = edge_with(&[origin.addr], with_http).await;
    let e2 = edge_with(&[origin.addr], with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let vip = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let rs = |a: SocketAddr| {
        format!("[[virtual_server.real_server]]\naddress = \"{a}\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 1\n")
    };
    let lb = start_lb(&format!(
        "[[virtual_server]]\naddress = \"{vip}\"\nlb_algo = \"rr\"\nlb_kind = \"PROXY\"\ndelay_loop = 0.5\n{}{}",
        rs(e1.http.unwrap()),
        rs(e2.http.unwrap())
    ))
    .await;
    for _ in 0..2 {
        let codecs = ffprobe_codecs(&format!("http://{vip}/live/cam.flv"))
            .await
            .unwrap();
        assert_eq!(codecs, ["aac", "h264"]);
    }
    // Both edges served one viewer each (rr) and pulled the stream once each.
    for e in [&e1, &e2] {
        assert!(
            wait_until(Duration::from_secs(5), || e.hub.info("live/cam").is_some()).await,
            "each edge got a viewer through the VIP"
        );
    }
    // HLS through the VIP without stickiness: playlist and segments may come from either
    // edge (rr per connection), which works because both cut the same segments.
    for e in [&e1, &e2] {
        assert_eq!(http(e.http.unwrap(), "GET", "/live/cam.m3u8").await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hls = format!("http://{vip}/live/cam.m3u8");
    let mut codecs = ffprobe_codecs(&hls).await.unwrap();
    codecs.dedup();
    assert_eq!(codecs, ["aac", "h264"]);
    ffmpeg_decode(&hls, 4).await.unwrap();
    let e2_http = e2.http.unwrap();
    e2.stop().await;
    assert!(
        wait_until(Duration::from_secs(6), || rs_status(&lb, e2_http)["state"]
            == "DOWN")
        .await,
        "{}",
        rs_status(&lb, e2_http)
    );
    for _ in 0..2 {
        let codecs = ffprobe_codecs(&format!("http://{vip}/live/cam.flv"))
            .await
            .unwrap();
        assert_eq!(
            codecs,
            ["aac", "h264"],
            "the remaining edge serves every viewer"
        );
    }
}

/// Plain `GET` of `path` on `addr` with HTTP/1.1 and Connection: close: (status, head, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    match exchange(addr, &req, None).await {
        Ok((head, body)) => {
            let code = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (code, head, body)
        }
        Err(e) => (0, e, Vec::new()),
    }
}

/// Segment URIs and the media sequence number of a playlist.
fn segments(playlist: &str) -> (u64, Vec<String>) {
    let msn = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let uris = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    (msn, uris)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_from_a_cold_edge_and_a_chain_decodes_h264_and_aac() {
    common::logging::init_for_tests();
    let test = "hls_from_a_cold_edge_and_a_chain_decodes_h264_and_aac";
    if !have("ffprobe", test) || !have("ffmpeg", test) {
        return;
    }
    let (origin, edge1, edge2, _publisher) = chain().await;
    for (who, server) in [
        ("cold edge", &edge1),
        ("edge -> edge", &edge2),
        ("origin", &origin),
    ] {
        let (code, head, body) = get(server.http.unwrap(), "/live/cam.m3u8").await;
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(code, 200, "{who}: {head}\n{text}");
        assert!(
            head.contains("Content-Type: application/vnd.apple.mpegurl"),
            "{head}"
        );
        assert!(head.contains("Access-Control-Allow-Origin: *"), "{head}");
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET="), "{text}");
        let url = server.http_url("cam", "m3u8");
        // (ffprobe lists an HLS input's streams once per program and once more.)
        let mut codecs = ffprobe_codecs(&url)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        codecs.dedup();
        assert_eq!(codecs, ["aac", "h264"], "{who}: {url}");
        ffmpeg_decode(&url, 3)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    assert_eq!(
        get(edge1.http.unwrap(), "/live/cam-0.m4s").await.0,
        404,
        "unknown segment"
    );
}

/// (msn of the open segment, its complete parts) from an LL-HLS playlist.
fn open_part(playlist: &str) -> (u64, u64) {
    let (first, uris) = segments(playlist);
    let after_last_segment = playlist
        .rsplit_once("#EXTINF")
        .map(|(_, rest)| rest.split_once('\n').map(|(_, r)| r).unwrap_or(""))
        .map(|rest| rest.split_once('\n').map(|(_, r)| r).unwrap_or(""))
        .unwrap_or(playlist);
    let parts = after_last_segment.matches("#EXT-X-PART:").count() as u64;
    (first + uris.len() as u64, parts)
}

/// LL-HLS: the playlist carries parts, PART-HOLD-BACK >= 3 x PART-TARGET, and a blocking
/// reload for the next part is answered once that part exists (within a part duration or
/// so), listing it; bad blocking queries are 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_blocking_reload_answers_when_the_part_appears() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let h = edge.http.unwrap();
    let (code, _, body) = get(h, "/live/cam.m3u8").await;
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let num = |key: &str| -> f64 {
        text.split(key)
            .nth(1)
            .and_then(|r| r.split([',', '\n']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {text}"))
    };
    let (target, hold) = (num("PART-TARGET="), num("PART-HOLD-BACK="));
    assert!(
        hold >= 3.0 * target,
        "PART-HOLD-BACK {hold} < 3 x PART-TARGET {target}"
    );
    assert!(
        text.contains("CAN-BLOCK-RELOAD=YES") && text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"),
        "{text}"
    );
    let mut waits = Vec::new();
    for _ in 0..6 {
        let (_, _, body) = get(h, "/live/cam.m3u8").await;
        let (msn, parts) = open_part(&String::from_utf8_lossy(&body));
        let t0 = std::time::Instant::now();
        let (code, _, body) = get(
            h,
            &format!("/live/cam.m3u8?_HLS_msn={msn}&_HLS_part={parts}"),
        )
        .await;
        let waited = t0.elapsed();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(code, 200, "{text}");
        let (m2, p2) = open_part(&text);
        assert!(
            (m2, p2) > (msn, parts),
            "the answer lists part {msn}.{parts}: now at {m2}.{p2}\n{text}"
        );
        waits.push(waited);
    }
    // The next part completes within about one part target of the request (plus a frame),
    // and the answer follows at once: every wait well under two part targets.
    let worst = waits.iter().max().unwrap();
    assert!(
        worst.as_secs_f64() < 2.0 * target + 0.3,
        "blocking reloads waited {waits:?} (PART-TARGET {target} s)"
    );
    let (code, _, _) = get(h, "/live/cam.m3u8?_HLS_part=1").await;
    assert_eq!(code, 400, "_HLS_part without _HLS_msn");
    let (code, _, _) = get(h, "/live/cam.m3u8?_HLS_msn=99999999").await;
    assert_eq!(code, 400, "too far ahead");
    let (code, _, _) = get(h, "/live/cam.m3u8?_HLS_msn=x").await;
    assert_eq!(code, 400);
}

/// The headline: two edges that start packaging the same stream 7 s apart list the same
/// segments under the same names and media sequence numbers, with byte-identical files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_started_7_s_apart_list_the_same_segments() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let a = edge_with(&[origin.addr], with_http).await;
    let b = edge_with(&[origin.addr], with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    // A viewer on each edge keeps its packager running (hls_idle_timeout).
    let viewer = |h: SocketAddr| async move {
        loop {
            assert_eq!(get(h, "/live/cam.m3u8").await.0, 200);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let va = tokio::spawn(viewer(a.http.unwrap()));
    tokio::time::sleep(Duration::from_secs(7)).await;
    let vb = tokio::spawn(viewer(b.http.unwrap()));
    // Let b close a few segments of its own.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let listed = |body: Vec<u8>| {
        let text = String::from_utf8_lossy(&body).into_owned();
        let (first, uris) = segments(&text);
        uris.into_iter()
            .enumerate()
            .map(|(i, u)| (first + i as u64, u))
            .collect::<Vec<_>>()
    };
    let (la, lb) = tokio::join!(
        get(a.http.unwrap(), "/live/cam.m3u8"),
        get(b.http.unwrap(), "/live/cam.m3u8")
    );
    let (la, lb) = (listed(la.2), listed(lb.2));
    va.abort();
    vb.abort();
    // A third, cold edge asked first for a file (a balancer without stickiness): 404, and it
    // starts packaging that stream, so the next requests find it.
    let c = edge_with(&[origin.addr], with_http).await;
    let (code, _, _) = get(c.http.unwrap(), &format!("/live/{}", la.last().unwrap().1)).await;
    assert_eq!(code, 404);
    assert!(
        wait_until(Duration::from_secs(5), || c
            .hub
            .info("live/cam")
            .is_some_and(|i| i.pulling))
        .await,
        "the file request started the pull"
    );
    let common: Vec<&(u64, String)> = lb.iter().filter(|e| la.contains(e)).collect();
    assert!(common.len() >= 2, "a: {la:?}\nb: {lb:?}");
    // Every name b lists that a lists too has the same number; b's names past its first
    // (possibly partial) segment are all in a's list.
    for (msn, uri) in &lb {
        if let Some((m, _)) = la.iter().find(|(_, u)| u == uri) {
            assert_eq!(m, msn, "{uri}");
        }
    }
    for e in lb.iter().skip(1).filter(|(_, u)| !u.contains("-gap")) {
        if la.last().is_some_and(|l| e.0 <= l.0) {
            assert!(la.contains(e), "{e:?} missing on a: {la:?}");
        }
    }
    for (_, uri) in common.iter().filter(|(_, u)| !u.contains("-gap")) {
        let fa = get(a.http.unwrap(), &format!("/live/{uri}")).await;
        let fb = get(b.http.unwrap(), &format!("/live/{uri}")).await;
        assert_eq!((fa.0, fb.0), (200, 200), "{uri}");
        assert!(
            fa.2 == fb.2,
            "{uri}: {} vs {} bytes differ",
            fa.2.len(),
            fb.2.len()
        );
    }
}

/// An HLS viewer counts as a viewer of the stream in the API and metrics (its packager does
/// not), and an HTTP-FLV viewer as a player.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_viewers_are_counted_in_the_api() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let edge = edge_with(&[origin.addr], |c| {
        with_http(c);
        c.api = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let h = edge.http.unwrap();
    assert_eq!(get(h, "/live/cam.m3u8").await.0, 200);
    let api = edge.api.unwrap();
    let counted = async {
        for _ in 0..50 {
            let (_, body) = http(api, "GET", "/api/v1/streams").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let s = &v["streams"][0];
            if s["hls_viewers"] == 1 && s["clients"] == 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        counted.await,
        "{}",
        http(api, "GET", "/api/v1/streams").await.1
    );
    let (_, metrics) = http(api, "GET", "/metrics").await;
    assert!(
        metrics.contains("edgefleet_stream_hls_viewers{"),
        "{metrics}"
    );
}

/// HEAD and byte ranges where players use them: a HEAD of the playlist has the head and no
/// body; a range of a segment is a 206 with exactly those bytes; one past the end a 416.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_ranges() {
    common::logging::init_for_tests();
    let origin = origin_with(with_http).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let h = origin.http.unwrap();
    let (code, _, body) = get(h, "/live/cam.m3u8").await;
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let seg = segments(&text).1.first().cloned().expect("a segment");
    let (code, _, whole) = get(h, &format!("/live/{seg}")).await;
    assert_eq!(code, 200);
    let raw = |req: String| async move { exchange(h, &req, None).await.unwrap() };
    let (head, body) =
        raw("HEAD /live/cam.m3u8 HTTP/1.1\r\nConnection: close\r\n\r\n".into()).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: "),
        "{head}"
    );
    assert!(body.is_empty(), "HEAD has no body");
    let (head, body) = raw(format!(
        "GET /live/{seg} HTTP/1.1\r\nRange: bytes=10-109\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(
        head.contains(&format!("Content-Range: bytes 10-109/{}", whole.len())),
        "{head}"
    );
    assert_eq!(body, whole[10..110]);
    let (head, _) = raw(format!(
        "GET /live/{seg} HTTP/1.1\r\nRange: bytes={}-\r\nConnection: close\r\n\r\n",
        whole.len()
    ))
    .await;
    assert!(head.starts_with("HTTP/1.1 416"), "{head}");
}
