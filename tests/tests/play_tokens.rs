//! Play tokens (`[play] token_keys`, issue 14) end to end on an edge that pulls from an
//! origin: RTMP (our client and ffprobe), HTTP-FLV and HLS (playlist, its segments) play with a
//! signed token and are refused without one, with an expired one, one for another stream or
//! another network — with the same answer whether or not the stream exists — and every refusal
//! is counted by reason in /metrics. A rotation by reload accepts old and new keys.

use common::rtmp::client::RtmpClient;
use common::rtmp::url::RtmpUrl;
use edge::token::{sign, PlayConfig};
use edgefleet_tests::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OLD: &str = "old-key-0123456789abcdef";
const NEW: &str = "new-key-fedcba9876543210";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The status line's code and the head of a GET, without waiting for a live body's end.
async fn head_of(addr: SocketAddr, path: &str) -> (u16, String) {
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let head = match tokio::time::timeout(Duration::from_secs(15), go).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return (0, e.to_string()),
        Err(_) => return (0, "timed out".into()),
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head)
}

/// `play` over RTMP: Ok once Play.Start came, else the error text.
async fn rtmp_play(addr: SocketAddr, stream: &str) -> Result<(), String> {
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/live/{stream}")).unwrap();
    let mut c = RtmpClient::connect_url(&url, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    c.play(&url.stream, Duration::from_secs(15))
        .await
        .map_err(|e| e.to_string())
}

fn metric(text: &str, reason: &str) -> u64 {
    let prefix = format!("edgefleet_edge_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_rtmp_flv_and_hls_and_every_refusal_looks_the_same() {
    common::logging::init_for_tests();
    let origin = origin().await;
    let edge = edge_with(&[origin.addr], |c| {
        with_http(c);
        c.api = Some("127.0.0.1:0".parse().unwrap());
        // No exemption: the test's loopback client must show a token like any viewer.
        c.play = PlayConfig {
            token_keys: vec![OLD.into()],
            token_exempt: vec![],
        };
    })
    .await;
    let (_stop, _publisher) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let web = edge.http.unwrap();
    let good = sign(OLD, "live/cam", now() + 600, None);

    // RTMP.
    rtmp_play(edge.addr, &format!("cam?token={good}"))
        .await
        .expect("a signed token plays");
    let refusals = [
        ("cam".to_string(), "play_token_missing"),
        ("cam?token=v1-x".to_string(), "play_token_malformed"),
        (
            format!("cam?token={}", sign(OLD, "live/cam", now() - 1, None)),
            "play_token_expired",
        ),
        (
            format!("cam?token={}", sign(OLD, "live/other", now() + 600, None)),
            "play_token_signature",
        ),
        (
            format!("cam?token={}", sign(NEW, "live/cam", now() + 600, None)),
            "play_token_signature",
        ),
        (
            format!(
                "cam?token={}",
                sign(
                    OLD,
                    "live/cam",
                    now() + 600,
                    Some("198.18.9.0/24".parse().unwrap())
                )
            ),
            "play_token_network",
        ),
        // A stream that does not exist is refused in the same words.
        ("nosuch".to_string(), "play_token_missing"),
    ];
    let mut answers = std::collections::BTreeSet::new();
    for (stream, reason) in &refusals {
        let e = rtmp_play(edge.addr, stream)
            .await
            .expect_err(&format!("{stream} must be refused ({reason})"));
        assert!(e.contains(edge::token::REFUSED), "{stream}: {e}");
        answers.insert(e);
    }
    assert_eq!(answers.len(), 1, "refusals differ: {answers:?}");
    // A real player with a token: ffprobe (stream name query as ffmpeg sends it).
    if have(
        "ffprobe",
        "tokens_gate_rtmp_flv_and_hls_and_every_refusal_looks_the_same",
    ) {
        let codecs = ffprobe_codecs(&format!("{}?token={good}", edge.url("cam")))
            .await
            .expect("ffprobe plays with a token");
        assert!(codecs.contains(&"h264".to_string()), "{codecs:?}");
    }

    // HTTP-FLV.
    let (code, head) = head_of(web, &format!("/live/cam.flv?token={good}")).await;
    assert_eq!(code, 200, "{head}");
    for path in [
        "/live/cam.flv".to_string(),
        "/live/nosuch.flv".to_string(),
        format!(
            "/live/cam.flv?token={}",
            sign(OLD, "live/cam", now() - 5, None)
        ),
    ] {
        let (code, body) = http(web, "GET", &path).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains(edge::token::REFUSED), "{path}: {body}");
    }

    // HLS: the playlist lists its files with the token; each file needs it.
    let (code, playlist) = http(web, "GET", &format!("/live/cam.m3u8?token={good}")).await;
    assert_eq!(code, 200, "{playlist}");
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(!uris.is_empty(), "{playlist}");
    assert!(
        uris.iter().all(|u| u.ends_with(&format!("?token={good}"))),
        "{playlist}"
    );
    assert!(
        playlist.contains(&format!(".mp4?token={good}\"")),
        "the init section: {playlist}"
    );
    let seg = uris[0];
    let (code, _) = http(web, "GET", &format!("/live/{seg}")).await;
    assert_eq!(code, 200, "{seg}");
    let bare = seg.split('?').next().unwrap();
    let (code, body) = http(web, "GET", &format!("/live/{bare}")).await;
    assert_eq!(code, 403, "a segment without the token: {body}");
    let (code, _) = http(web, "GET", "/live/cam.m3u8").await;
    assert_eq!(code, 403);

    let (code, metrics) = http(edge.api.unwrap(), "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(metric(&metrics, "play_token_missing") >= 5, "{metrics}");
    for reason in [
        "play_token_malformed",
        "play_token_expired",
        "play_token_signature",
        "play_token_network",
    ] {
        assert!(metric(&metrics, reason) >= 1, "{reason}: {metrics}");
    }
    eprintln!(
        "refusals: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("edgefleet_edge_refused_total{reason=\"play_token"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_by_reload_accepts_old_and_new_then_only_new() {
    common::logging::init_for_tests();
    let origin = origin().await;
    let config = |keys: &str| {
        format!(
            "mode = \"remote\"\norigin = [\"{}\"]\n[play]\ntoken_keys = [{keys}]\ntoken_exempt = []\n",
            origin.addr
        )
    };
    let edge = EdgeProc::start(&config(&format!("\"{OLD}\"")));
    let (_stop, _publisher) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let addr = edge.addr;
    let old_t = sign(OLD, "live/cam", now() + 600, None);
    let new_t = sign(NEW, "live/cam", now() + 600, None);
    rtmp_play(addr, &format!("cam?token={old_t}"))
        .await
        .expect("old key before rotation");
    rtmp_play(addr, &format!("cam?token={new_t}"))
        .await
        .expect_err("new key not yet");

    let reload = |keys: String| {
        edge.write_config(&config(&keys));
        edge.signal(nix::sys::signal::Signal::SIGHUP);
    };
    reload(format!("\"{OLD}\", \"{NEW}\""));
    let both = lab::wait(Duration::from_secs(10), || {
        edge.log().contains("play.token_keys")
    });
    assert!(both.is_some(), "no reload logged:\n{}", edge.log());
    rtmp_play(addr, &format!("cam?token={old_t}"))
        .await
        .expect("old key during rotation");
    rtmp_play(addr, &format!("cam?token={new_t}"))
        .await
        .expect("new key during rotation");
    assert!(
        !edge.log().contains(OLD) && !edge.log().contains(NEW),
        "a key in the log"
    );

    reload(format!("\"{NEW}\""));
    // One line per reload ends it (a change's own line names its key twice, as the field
    // and in the message, so counting the key raced the second reload).
    let done = lab::wait(Duration::from_secs(10), || {
        edge.log().matches("configuration reloaded").count() >= 2
    });
    assert!(done.is_some(), "second reload not logged:\n{}", edge.log());
    rtmp_play(addr, &format!("cam?token={old_t}"))
        .await
        .expect_err("old key after rotation");
    rtmp_play(addr, &format!("cam?token={new_t}"))
        .await
        .expect("new key after rotation");
}
