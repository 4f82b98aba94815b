//! `[http_hooks]` end to end (issue 14): a real HTTP hook service (a small server here that
//! decides by stream name) allows, renames and refuses publishes on an origin and plays on an
//! edge, a hook that does not answer in time refuses, `on_done` arrives when sessions end, and
//! play refusals read like every other play refusal and are counted in /metrics; HTTP-FLV and
//! HLS players are put to on_play too (once per FLV connection, once per HLS player).

use edgefleet_tests::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The hook service: answers each POST by its `name` field and records every form it got.
async fn hook_service() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break body.to_string();
                        }
                    }
                };
                log.lock().unwrap().push(body.clone());
                let name = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("name="))
                    .unwrap_or("")
                    .to_string();
                let answer = match name.as_str() {
                    "cam" | "cam2" => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
                    "alias" => {
                        "HTTP/1.1 302 Found\r\nLocation: cam2\r\nContent-Length: 0\r\n\r\n".into()
                    }
                    "tv" => {
                        "HTTP/1.1 302 Found\r\nLocation: cam\r\nContent-Length: 0\r\n\r\n".into()
                    }
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into()
                    }
                    _ => "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno".into(),
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn hooks(addr: SocketAddr) -> edge::hooks::HooksConfig {
    let url = |p: &str| Some(edge::hooks::HookUrl::parse(&format!("http://{addr}/{p}")).unwrap());
    edge::hooks::HooksConfig {
        on_publish: url("on_publish"),
        on_play: url("on_play"),
        on_done: url("on_done"),
        timeout: Duration::from_millis(800),
    }
}

async fn rtmp_play(addr: SocketAddr, stream: &str) -> Result<(), String> {
    let url = common::rtmp::url::RtmpUrl::parse(&format!("rtmp://{addr}/live/{stream}")).unwrap();
    let mut c = common::rtmp::client::RtmpClient::connect_url(&url, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    c.play(&url.stream, Duration::from_secs(15))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_allow_rename_and_refuse_publishes_and_plays() {
    common::logging::init_for_tests();
    let (hook, seen) = hook_service().await;
    let origin = origin_with(|c| c.http_hooks = hooks(hook)).await;
    let edge = edge_with(&[origin.addr], |c| {
        c.http_hooks = hooks(hook);
        c.api = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;

    // Publishes: allowed (with the client's ?args passed on), renamed, refused, timed out.
    let (_stop, _cam) = publish_clip(&format!("{}?key=s3cret", origin.url("cam")));
    wait_published(&origin.hub, "cam").await;
    let (_stop2, _alias) = publish_clip(&origin.url("alias"));
    wait_published(&origin.hub, "cam2").await;
    for name in ["intruder", "slow"] {
        let (_s, h) = publish_clip(&origin.url(name));
        let r = tokio::time::timeout(Duration::from_secs(20), h)
            .await
            .expect("a refused publish ends")
            .unwrap();
        assert!(r.is_err(), "{name} must be refused");
        assert!(!origin.hub.has_source(&format!("live/{name}")), "{name}");
    }
    {
        let s = seen.lock().unwrap();
        assert!(
            s.iter().any(|f| f.starts_with("call=publish&")
                && f.contains("&name=cam&")
                && f.contains("&key=s3cret")
                && f.contains("&app=live&")),
            "{s:?}"
        );
    }

    // Plays on the edge: allowed, renamed (tv -> cam), refused, timed out; the refusals read
    // the same.
    rtmp_play(edge.addr, "cam").await.expect("cam plays");
    rtmp_play(edge.addr, "tv").await.expect("tv plays cam");
    let mut answers = std::collections::BTreeSet::new();
    for name in ["nosuch", "slow"] {
        let e = rtmp_play(edge.addr, name).await.expect_err(name);
        assert!(e.contains(edge::token::REFUSED), "{name}: {e}");
        answers.insert(e);
    }
    assert_eq!(answers.len(), 1, "{answers:?}");

    // on_done for the plays that ended.
    let done = edgefleet_tests::lab::wait(Duration::from_secs(10), || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|f| f.starts_with("call=done&") && f.contains("&name=cam&"))
            .count()
            >= 2
    });
    assert!(done.is_some(), "no on_done: {:?}", seen.lock().unwrap());

    let (code, metrics) = http(edge.api.unwrap(), "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("edgefleet_edge_refused_total{reason=\"hook_play\"} 2"),
        "{metrics}"
    );
}

/// A GET's status line and headers, and the first body bytes it could read in `wait` (an
/// HTTP-FLV body never ends: the connection is dropped after them).
async fn get_head(addr: SocketAddr, path: &str, wait: Duration) -> (u16, String, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let end = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.len() - head.len().min(buf.len());
    (status, head.to_string(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_play_covers_http_flv_and_hls_players() {
    common::logging::init_for_tests();
    let (hook, seen) = hook_service().await;
    let origin = origin().await;
    let edge = edge_with(&[origin.addr], |c| {
        with_http(c);
        c.http_hooks = hooks(hook);
        c.api = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let http_addr = edge.http.unwrap();
    let (_stop, _cam) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let calls = |what: &str, name: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|f| {
                f.starts_with(&format!("call={what}&")) && f.contains(&format!("&name={name}&"))
            })
            .count()
    };

    // HTTP-FLV: allowed (the body flows), renamed (tv serves cam), refused with the token
    // refusal's 403 and text, also for a stream that exists nowhere.
    let (code, _, body) = get_head(http_addr, "/live/cam.flv?x=1", Duration::from_secs(3)).await;
    assert_eq!(code, 200);
    assert!(body > 1000, "cam.flv sent {body} body bytes");
    let (code, _, body) = get_head(http_addr, "/live/tv.flv", Duration::from_secs(3)).await;
    assert_eq!(code, 200, "tv.flv is renamed to cam by the hook");
    assert!(body > 1000, "tv.flv sent {body} body bytes");
    let (code, head, _) = get_head(http_addr, "/live/nosuch.flv", Duration::from_secs(3)).await;
    assert_eq!(code, 403, "{head}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|f| f.starts_with("call=play&") && f.contains("&name=cam&") && f.contains("&x=1")),
        "the FLV play's ?args reach the hook: {:?}",
        seen.lock().unwrap()
    );
    // on_done once the FLV connections closed (cam, and tv under its new name).
    let done = edgefleet_tests::lab::wait(Duration::from_secs(10), || calls("done", "cam") >= 2);
    assert!(
        done.is_some(),
        "no on_done for FLV: {:?}",
        seen.lock().unwrap()
    );

    // HLS: the playlist is asked about once per player, its reloads are not.
    let before = calls("play", "cam");
    let mut ok = false;
    for _ in 0..40 {
        let (code, _, _) = get_head(http_addr, "/live/cam.m3u8", Duration::from_secs(3)).await;
        assert_ne!(code, 403);
        if code == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "cam.m3u8 never answered 200");
    for _ in 0..3 {
        let (code, _, _) = get_head(http_addr, "/live/cam.m3u8", Duration::from_secs(3)).await;
        assert_eq!(code, 200);
    }
    assert_eq!(
        calls("play", "cam"),
        before + 1,
        "one hook call per HLS player"
    );
    // A renamed playlist is a redirect to the new name; a refused one a 403, whose reloads
    // are refused without asking again.
    let (code, head, _) = get_head(http_addr, "/live/tv.m3u8?x=2", Duration::from_secs(3)).await;
    assert_eq!(code, 302, "{head}");
    assert!(
        head.contains("Location: /live/cam.m3u8?x=2"),
        "renamed HLS playlist: {head}"
    );
    for _ in 0..3 {
        let (code, head, _) =
            get_head(http_addr, "/live/nosuch.m3u8", Duration::from_secs(3)).await;
        assert_eq!(code, 403, "{head}");
    }
    assert_eq!(
        calls("play", "nosuch"),
        2,
        "one FLV and one HLS call for nosuch"
    );

    let (code, metrics) = http(edge.api.unwrap(), "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("edgefleet_edge_refused_total{reason=\"hook_play\"} 4"),
        "1 FLV and 3 HLS refusals: {metrics}"
    );
}
