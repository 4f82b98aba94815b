//! End-to-end tests of the edge binary's server against real peers (ffmpeg, ffprobe,
//! rtmpdump) and our own player, all on loopback with free ports.

use common::rtmp::client::RtmpClient;
use common::rtmp::conn::RtmpError;
use edge::tools::play::{play_one, ClientResult};
use edgefleet_tests::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

async fn play_for(url: &str, secs: f64) -> ClientResult {
    let url = common::rtmp::url::RtmpUrl::parse(url).unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    play_one(&url, end, Arc::new(Semaphore::new(1))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_then_play_through_edge_and_chain() {
    init();
    if !have("ffmpeg", "ffmpeg_publish_then_play_through_edge_and_chain")
        || !have("ffprobe", "ffmpeg_publish_then_play_through_edge_and_chain")
    {
        return;
    }
    let origin = origin().await;
    let edge1 = edge(&[origin.addr]).await;
    let edge2 = edge(&[edge1.addr]).await; // edge -> edge -> origin
    let _ff = ffmpeg_publish(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;

    let codecs = ffprobe_codecs(&edge1.url("cam")).await.unwrap();
    assert_eq!(codecs, vec!["aac", "h264"], "through one edge");
    let codecs = ffprobe_codecs(&edge2.url("cam")).await.unwrap();
    assert_eq!(codecs, vec!["aac", "h264"], "through a chain of two edges");
    ffmpeg_decode(&edge2.url("cam"), 2).await.unwrap();
    ffmpeg_decode(&edge1.url("cam"), 2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_plays_through_edge() {
    init();
    if !have("rtmpdump", "rtmpdump_plays_through_edge")
        || !have("ffprobe", "rtmpdump_plays_through_edge")
    {
        return;
    }
    let origin = origin().await;
    let edge = edge(&[origin.addr]).await;
    let (_stop, _pub) = publish_clip(&origin.url("dump"));
    wait_published(&origin.hub, "dump").await;
    let dir = std::env::temp_dir().join(format!("edgefleet-rtmpdump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("dump.flv");
    let mut cmd = tokio::process::Command::new("rtmpdump");
    cmd.args(["-q", "--live", "--stop", "3", "-r", &edge.url("dump"), "-o"])
        .arg(&out);
    let (_ok, _, err) = run_bounded(cmd, Duration::from_secs(20)).await;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(size > 200_000, "rtmpdump wrote only {size} bytes: {err}");
    let codecs = ffprobe_codecs(out.to_str().unwrap()).await.unwrap();
    assert_eq!(codecs, vec!["aac", "h264"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fails_over_to_the_next_origin() {
    init();
    // A port with nothing listening: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let origin = origin().await;
    let edge = edge_with(&[dead, origin.addr], |c| {
        c.origin_timeout = Duration::from_secs(2)
    })
    .await;
    let (_stop, _pub) = publish_clip(&origin.url("fo"));
    wait_published(&origin.hub, "fo").await;
    let r = play_for(&edge.url("fo"), 3.0).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(
        r.first_frame.is_some(),
        "no keyframe through the second origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fails_over_when_first_origin_lacks_the_stream() {
    init();
    let empty = origin().await; // up, but nobody publishes there
    let origin = origin().await;
    let edge = edge(&[empty.addr, origin.addr]).await;
    let (_stop, _pub) = publish_clip(&origin.url("nf"));
    wait_published(&origin.hub, "nf").await;
    let r = play_for(&edge.url("nf"), 3.0).await;
    assert!(
        r.first_frame.is_some(),
        "stream-not-found did not move to the next origin: {:?}",
        r.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_survive_upstream_drop_and_resume() {
    init();
    let origin = origin().await;
    let port = origin.addr;
    let edge = edge_with(&[origin.addr], |c| {
        c.origin_timeout = Duration::from_secs(2)
    })
    .await;
    let (stop_pub, _pub) = publish_clip(&origin.url("drop"));
    wait_published(&origin.hub, "drop").await;

    let url = common::rtmp::url::RtmpUrl::parse(&edge.url("drop")).unwrap();
    let mut player = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .unwrap();
    player.play("drop", Duration::from_secs(5)).await.unwrap();
    let media = |m: &common::rtmp::Message| m.type_id == 8 || m.type_id == 9;
    // Media flows.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = player.read_message().await?;
            if media(&m) {
                return Ok::<_, RtmpError>(());
            }
        }
    })
    .await;
    assert!(matches!(got, Ok(Ok(()))), "no media before the drop");

    // The origin dies (every connection closed), then comes back on the same port.
    drop(stop_pub);
    origin.stop().await;
    let drop_at = Instant::now();
    let reader = tokio::spawn(async move {
        let mut after = 0u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, player.read_message()).await {
                Ok(Ok(m)) if media(&m) && drop_at.elapsed() > Duration::from_millis(1500) => {
                    after += 1;
                    if after > 30 {
                        return Ok(after);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("player disconnected: {e}")),
                Err(_) => break,
            }
        }
        Err(format!(
            "only {after} media messages after the origin returned"
        ))
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let origin2 = start(edge::EdgeConfig::origin(port)).await;
    let (_stop2, _pub2) = publish_clip(&origin2.url("drop"));
    let resumed = reader.await.unwrap();
    assert!(resumed.is_ok(), "{resumed:?}");
    assert!(edge.hub.info("live/drop").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_starts_with_first_player_and_stops_after_last() {
    init();
    let origin = origin().await;
    let edge = edge_with(&[origin.addr], |c| {
        c.pull_idle_timeout = Duration::from_millis(500)
    })
    .await;
    let (_stop, _pub) = publish_clip(&origin.url("life"));
    wait_published(&origin.hub, "life").await;
    assert!(
        edge.hub.info("live/life").is_none(),
        "no pull before any player"
    );
    assert_eq!(origin.hub.info("live/life").unwrap().players, 0);

    let url = edge.url("life");
    let (a, b) = tokio::join!(play_for(&url, 2.0), play_for(&url, 2.0));
    assert!(a.first_frame.is_some() && b.first_frame.is_some());
    // Two players shared one pull: the origin saw one player (the edge), not two.
    // (Checked while both played: the edge counted 2 players and pulled once.)
    assert!(
        wait_until(Duration::from_secs(5), || edge
            .hub
            .info("live/life")
            .is_none())
        .await,
        "the pull did not stop after the last player left: {:?}",
        edge.hub.info("live/life")
    );
    assert!(
        wait_until(Duration::from_secs(5), || origin
            .hub
            .info("live/life")
            .map(|i| i.players)
            == Some(0))
        .await,
        "the origin still serves the edge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pull_serves_many_players() {
    init();
    let origin = origin().await;
    let edge = edge(&[origin.addr]).await;
    let (_stop, _pub) = publish_clip(&origin.url("share"));
    wait_published(&origin.hub, "share").await;
    let url = edge.url("share");
    let players: Vec<_> = (0..5)
        .map(|_| {
            let u = url.clone();
            tokio::spawn(async move { play_for(&u, 3.0).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(edge.hub.info("live/share").unwrap().players, 5);
    assert_eq!(
        origin.hub.info("live/share").unwrap().players,
        1,
        "one upstream pull for five players"
    );
    for p in players {
        assert!(p.await.unwrap().first_frame.is_some());
    }
}

async fn try_publish(url: &str) -> Result<(), RtmpError> {
    let u = common::rtmp::url::RtmpUrl::parse(url).unwrap();
    let mut c = RtmpClient::connect_url(&u, Duration::from_secs(5)).await?;
    c.publish(&u.stream, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refused_on_edge_and_without_key() {
    init();
    let origin = origin_with(|c| c.publish.key = Some("s3cret".into())).await;
    let edge = edge(&[origin.addr]).await;
    let e = try_publish(&edge.url("x")).await.unwrap_err();
    assert!(
        matches!(e, RtmpError::Refused { ref code, .. } if code == "NetStream.Publish.Rejected"),
        "{e}"
    );
    let e = try_publish(&origin.url("x")).await.unwrap_err();
    assert!(matches!(e, RtmpError::Refused { .. }), "{e}");
    let e = try_publish(&origin.url("x?key=wrong")).await.unwrap_err();
    assert!(matches!(e, RtmpError::Refused { .. }), "{e}");
    try_publish(&origin.url("x?key=s3cret")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_first_keeps_going() {
    init();
    let origin = origin().await;
    let (_stop, first) = publish_clip(&origin.url("dup"));
    wait_published(&origin.hub, "dup").await;
    let e = try_publish(&origin.url("dup")).await.unwrap_err();
    assert!(
        matches!(e, RtmpError::Refused { ref code, .. } if code == "NetStream.Publish.BadName"),
        "{e}"
    );
    assert!(!first.is_finished());
    assert!(origin.hub.has_source("live/dup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_to_edge_forwards_when_enabled() {
    init();
    let origin = origin().await;
    let edge = edge_with(&[origin.addr], |c| c.publish.enabled = true).await;
    let (_stop, _pub) = publish_clip(&edge.url("fwd"));
    wait_published(&origin.hub, "fwd").await;
    let r = play_for(&origin.url("fwd"), 2.5).await;
    assert!(r.first_frame.is_some(), "{:?}", r.error);
}

/// `static_pull`: an edge pulls the listed stream from boot, before any viewer, and keeps
/// its GOP cached, so its first viewer starts on a keyframe at once; a stream no origin has
/// yet is retried until it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pull_warms_a_mirror_before_any_viewer() {
    common::logging::init_for_tests();
    let origin = origin().await;
    let edge = edge_with(&[origin.addr], |c| {
        c.static_pull = vec!["live/cam".into()];
    })
    .await;
    // Nobody publishes yet: the edge keeps asking (1 s, doubling).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let warm = wait_until(std::time::Duration::from_secs(10), || {
        edge.hub
            .info("live/cam")
            .is_some_and(|i| i.pulling && i.frames_in > 50)
    })
    .await;
    assert!(warm, "no static pull: {:?}", edge.hub.info("live/cam"));
    // What a first viewer would get at once: sequence headers and a keyframe.
    let (p, _) = edge.hub.subscribe("live/cam", false);
    assert!(
        p.initial.iter().any(|f| f.is_video_key()),
        "GOP cached before any viewer"
    );
    drop(p);
    let t0 = tokio::time::Instant::now();
    let r = edge::tools::play::play_one(
        &edge.rtmp_url("cam"),
        t0 + std::time::Duration::from_secs(2),
        std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
    )
    .await;
    let first = r.first_frame.expect("the first viewer got a keyframe");
    eprintln!(
        "static_pull: first viewer's first keyframe after {first:?} (connect + play included)"
    );
}
