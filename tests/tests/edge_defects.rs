//! Regression tests for the defects of issue 8 that lost viewers, locked them out or let
//! strangers in, each through the binary (a process) or its `run` function, with real
//! players and publishers on loopback.

use common::rtmp::chunk::msg_type;
use common::rtmp::client::RtmpClient;
use common::rtmp::conn::RtmpError;
use common::rtmp::url::RtmpUrl;
use edgefleet_tests::*;
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

async fn try_publish(url: &str) -> Result<RtmpClient, RtmpError> {
    let u = RtmpUrl::parse(url).unwrap();
    let mut c = RtmpClient::connect_url(&u, Duration::from_secs(5)).await?;
    c.publish(&u.stream, Duration::from_secs(10)).await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_edge_and_keeps_its_viewers() {
    init();
    let mut edge = EdgeProc::start("");
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    let (seen, _viewer) = watch(&edge.url("cam"), Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(10), || media(&seen) > 20).await);

    // A good reload: applied, listed key by key, nobody dropped.
    edge.write_config("max_connections = 500\n[publish]\nkey = \"k1-secret\"\n");
    edge.signal(Signal::SIGHUP);
    assert!(
        edge.wait_log("configuration reloaded", 1, Duration::from_secs(5))
            .await,
        "{}",
        edge.log()
    );
    let log = edge.log();
    assert!(
        log.contains("changed: max_connections: 1000 -> 500"),
        "{log}"
    );
    assert!(log.contains("publish.key: unset -> set"), "{log}");
    assert!(
        !log.contains("k1-secret"),
        "the key is never logged:\n{log}"
    );
    assert!(edge.alive(), "SIGHUP killed the edge");
    let before = media(&seen);
    assert!(wait_until(Duration::from_secs(5), || media(&seen) > before + 20).await);
    // The new publish rule is in force.
    assert!(try_publish(&edge.url("other")).await.is_err());
    assert!(try_publish(&edge.url("other?key=k1-secret")).await.is_ok());

    // A bad reload: every problem logged, the running config stays.
    edge.write_config("max_connections = 0\nqueue_length = -1\n");
    edge.signal(Signal::SIGHUP);
    assert!(
        edge.wait_log("the running configuration stays", 1, Duration::from_secs(5))
            .await,
        "{}",
        edge.log()
    );
    let log = edge.log();
    assert!(log.contains("reload refused: max_connections:"), "{log}");
    assert!(log.contains("reload refused: queue_length:"), "{log}");
    assert!(
        try_publish(&edge.url("third")).await.is_err(),
        "the key rule stays"
    );
    // A mode change is refused whole.
    edge.write_config("mode = \"remote\"\norigin = [\"127.0.0.1:1\"]\n");
    edge.signal(Signal::SIGHUP);
    assert!(
        edge.wait_log("the running configuration stays", 2, Duration::from_secs(5))
            .await
    );
    assert!(edge.log().contains("reload refused: mode:"));
    assert!(edge.alive());
    let before = media(&seen);
    assert!(wait_until(Duration::from_secs(5), || media(&seen) > before + 20).await);
    assert!(seen.lock().unwrap().closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_behind_lb_outlive_an_origin_outage_and_resume_at_once() {
    init();
    let port: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let origin = start(edge::EdgeConfig::origin(port)).await;
    let edge = edge_with(&[port], |c| c.origin_timeout = Duration::from_secs(1)).await;
    let vip = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = start_lb(&format!(
        "[[virtual_server]]\naddress = \"{vip}\"\nidle_timeout = 4\n[[virtual_server.real_server]]\naddress = \"{}\"\n",
        edge.addr
    ))
    .await;
    let (stop_pub, _pub) = publish_clip(&origin.url("out"));
    wait_published(&origin.hub, "out").await;
    let (seen, _viewer) = watch(&format!("rtmp://{vip}/live/out"), Duration::from_secs(40));
    assert!(wait_until(Duration::from_secs(10), || media(&seen) > 20).await);

    // The origin is gone for 2.5 x the lb's idle_timeout.
    drop(stop_pub);
    origin.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    {
        let g = seen.lock().unwrap();
        assert!(
            g.closed.is_none(),
            "viewer cut during the outage: {:?}",
            g.closed
        );
        assert!(g.pings >= 1, "no keepalive reached the viewer: {g:?}");
    }
    // The origin returns: the viewer's media resumes on the same connection.
    let origin2 = start(edge::EdgeConfig::origin(port)).await;
    let (_stop2, _pub2) = publish_clip(&origin2.url("out"));
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || origin2
            .hub
            .has_source("live/out"))
        .await
    );
    let published = Instant::now();
    let resumed = wait_until(Duration::from_secs(10), || {
        seen.lock()
            .unwrap()
            .last_media
            .is_some_and(|t| t > published)
    })
    .await;
    let g = seen.lock().unwrap();
    assert!(resumed && g.closed.is_none(), "{g:?}");
    let resume = g.last_media.unwrap().saturating_duration_since(published);
    eprintln!(
        "origin back -> published {:?}, published -> media at the viewer {:?}",
        published - back,
        resume
    );
    // Retries are 400 ms apart at most: the first one after the stream is back finds it.
    assert!(
        resume < Duration::from_millis(1500),
        "resume took {resume:?}"
    );
    drop(lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_no_origin_has_is_answered_and_costs_one_lookup() {
    init();
    let origin = origin().await;
    // Count the connections the origin gets through a counting relay.
    let (relay, lookups) = counting_relay(origin.addr).await;
    let edge = edge(&[relay]).await;
    let t0 = Instant::now();
    let (seen, task) = watch(&edge.url("ghost"), Duration::from_secs(10));
    let _ = task.await;
    let took = t0.elapsed();
    {
        let g = seen.lock().unwrap();
        assert!(
            g.statuses
                .iter()
                .any(|s| s == "NetStream.Play.StreamNotFound"),
            "{g:?}"
        );
        assert!(g.closed.is_some(), "the player is closed after the answer");
    }
    eprintln!("not-found answer after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A crowd of 200 plays of the same missing stream: the answer is remembered briefly.
    let before = lookups.load(std::sync::atomic::Ordering::Relaxed);
    let mut crowd = Vec::new();
    for _ in 0..200 {
        crowd.push(watch(&edge.url("ghost"), Duration::from_secs(10)).1);
    }
    for t in crowd {
        let _ = t.await;
    }
    let during = lookups.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("origin lookups for 200 plays of a missing stream: {during}");
    assert!(during <= 3, "{during} lookups");
    assert!(edge.hub.info("live/ghost").is_none(), "no pull left behind");
}

/// A TCP relay to `to` counting the connections it passes.
async fn counting_relay(to: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    (addr, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_forwarded_publish_gives_the_origins_reason() {
    init();
    let origin = origin_with(|c| c.publish.key = Some("origin-key".into())).await;
    let edge = edge_with(&[origin.addr], |c| c.publish.enabled = true).await;
    match try_publish(&edge.url("fwd")).await {
        Err(RtmpError::Refused { code, description }) => {
            assert_eq!(code, "NetStream.Publish.Rejected");
            assert!(
                description.contains("origin") && description.contains("key"),
                "{description}"
            );
        }
        Err(e) => panic!("refused without the origin's reason: {e}"),
        Ok(_) => panic!("published without the key"),
    }
    assert!(try_publish(&edge.url("fwd?key=origin-key")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_viewers_out() {
    init();
    common::rlimit::raise_nofile(8192);
    let edge = EdgeProc::start("max_handshakes_per_ip = 16\nhandshake_timeout = 30\n");
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    // 1000 connections from 127.0.0.1 that never say a word (the default max_connections).
    let mut silent = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = tokio::net::TcpStream::connect(edge.addr).await {
            silent.push(s);
        }
    }
    assert!(silent.len() >= 900, "{}", silent.len());
    // A viewer from another address plays at once.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(edge.addr).await.unwrap();
    let mut c = RtmpClient::from_tcp(tcp, &RtmpUrl::parse(&edge.url("cam")).unwrap())
        .await
        .expect("handshake from another address");
    c.play("cam", Duration::from_secs(5)).await.expect("play");
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = c.read_message().await?;
            if m.type_id == msg_type::VIDEO {
                return Ok::<_, RtmpError>(());
            }
        }
    })
    .await;
    assert!(matches!(got, Ok(Ok(()))), "viewer locked out: {got:?}");
    assert!(
        edge.wait_log("reason=max_handshakes_per_ip", 1, Duration::from_secs(5))
            .await,
        "{}",
        edge.log()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_proxy_header_does_not_pass_publish_allow() {
    init();
    // Only 127.0.0.2 (the "balancer") may send PROXY headers; publishing is for 198.18.0.5.
    let origin = origin_with(|c| {
        c.proxy_protocol = true;
        c.set_real_ip_from = vec!["127.0.0.2/32".parse().unwrap()];
        c.publish.allow = vec!["198.18.0.5/32".parse().unwrap()];
    })
    .await;
    let forged = proxy_v2_header("198.18.0.5:5000", &origin.addr.to_string());
    // From 127.0.0.1 with a header claiming 198.18.0.5: closed before the handshake.
    let mut tcp = tokio::net::TcpStream::connect(origin.addr).await.unwrap();
    tcp.write_all(&forged).await.unwrap();
    tcp.write_all(&[3u8; 1537]).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "forged header accepted: {r:?}"
    );
    // 127.0.0.1 without a header connects plainly (an operator is not locked out), but is
    // not 198.18.0.5, so it may not publish.
    assert!(try_publish(&origin.url("x")).await.is_err());
    // The balancer's header is believed.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut tcp = sock.connect(origin.addr).await.unwrap();
    tcp.write_all(&forged).await.unwrap();
    let u = RtmpUrl::parse(&origin.url("x")).unwrap();
    let mut c = RtmpClient::from_tcp(tcp, &u).await.unwrap();
    c.publish("x", Duration::from_secs(5))
        .await
        .expect("publish via the trusted balancer's header");
    // The balancer's address without a header: refused.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(origin.addr).await.unwrap();
    assert!(RtmpClient::from_tcp(tcp, &u).await.is_err());
}

/// A PROXY v2 header for a TCP/IPv4 connection from `src` to `dst`.
fn proxy_v2_header(src: &str, dst: &str) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    common::proxy_protocol::encode_v2(src, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_keys_stay_out_of_logs_and_wrong_keys_slow_down() {
    init();
    let edge = EdgeProc::start("[publish]\nkey = \"hunter2-secret\"\n");
    // `edge publish` with the right key, and with a wrong one: nobody logs either.
    let mut ok = tokio::process::Command::new(lab::bin("edge"));
    ok.arg("publish")
        .arg(clip_path())
        .arg(edge.url("cam?key=hunter2-secret"));
    let (_, _, out_ok) = run_bounded(ok, Duration::from_secs(15)).await;
    let mut bad = tokio::process::Command::new(lab::bin("edge"));
    bad.arg("publish")
        .arg(clip_path())
        .arg(edge.url("cam?key=wrong-secret-1"));
    let (refused, _, out_bad) = run_bounded(bad, Duration::from_secs(15)).await;
    assert!(!refused);
    assert!(out_bad.contains("key=***"), "{out_bad}");
    // Attempts 2..=4 from the same address: the 4th answer comes only after a delay.
    for i in 2..=3 {
        assert!(try_publish(&edge.url(&format!("cam?key=wrong-secret-{i}")))
            .await
            .is_err());
    }
    let t = Instant::now();
    assert!(try_publish(&edge.url("cam?key=wrong-secret-4"))
        .await
        .is_err());
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let log = edge.log();
    for text in [&log, &out_ok, &out_bad] {
        assert!(!text.contains("hunter2"), "a key leaked:\n{text}");
        assert!(!text.contains("wrong-secret"), "a key leaked:\n{text}");
    }
    assert!(log.contains("publish key wrong or missing"), "{log}");
    assert!(log.contains("failures=4"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frames_and_a_stalled_player_keep_the_origin_bounded() {
    init();
    // 8 MB frames into an origin with a 32 MiB per-stream bound and a player that never
    // reads: the origin's memory stays near the bound (it grew to 6 GB before).
    let edge = EdgeProc::start("max_queue_bytes = 33554432\nmax_queue_bytes_total = 67108864\n");
    let base = edge.rss_kib();
    let url = RtmpUrl::parse(&edge.url("huge")).unwrap();
    let mut publisher = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .unwrap();
    publisher
        .publish("huge", Duration::from_secs(5))
        .await
        .unwrap();
    // The stalled player: plays, then never reads again.
    let mut stalled = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .unwrap();
    stalled.play("huge", Duration::from_secs(5)).await.unwrap();
    let mut key = vec![0x27u8; 8 << 20];
    key[0] = 0x17;
    let inter = vec![0x27u8; 8 << 20];
    let mut peak = 0;
    let mut sent_frames = 0;
    let end = Instant::now() + Duration::from_secs(20);
    for i in 0..120u32 {
        let frame = if i % 10 == 0 { &key } else { &inter };
        let sent =
            tokio::time::timeout_at(end, publisher.send_media(msg_type::VIDEO, i * 40, frame))
                .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        sent_frames += 1;
        peak = peak.max(edge.rss_kib());
    }
    assert!(
        sent_frames >= 60,
        "only {sent_frames} frames of 8 MB went in"
    );
    let grown_mb = peak.saturating_sub(base) / 1024;
    eprintln!(
        "origin RSS: {} MB at start, {} MB peak under {sent_frames} frames of 8 MB",
        base / 1024,
        peak / 1024
    );
    // 64 MiB of queues, frames held twice (payload + chunks) within that, one 8 MB message
    // being read and one being written: far below a GB.
    assert!(grown_mb < 400, "origin grew by {grown_mb} MB");
    drop(stalled);
}
