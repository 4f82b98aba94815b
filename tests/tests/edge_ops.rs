//! Operating an edge (issue 11): its HTTP API and metrics, `edge status`, the SIGTERM drain,
//! systemd notifications and the end-of-session log line, all through the binary.

use common::rtmp::client::RtmpClient;
use common::rtmp::url::RtmpUrl;
use edgefleet_tests::*;
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

/// A player that counts media messages in the background until it is closed or `limit`.
fn player(url: String, limit: Duration) -> tokio::task::JoinHandle<(u64, Option<String>)> {
    tokio::spawn(async move {
        let u = RtmpUrl::parse(&url).unwrap();
        let end = Instant::now() + limit;
        let mut c = match RtmpClient::connect_url(&u, Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => return (0, Some(e.to_string())),
        };
        if let Err(e) = c.play(&u.stream, Duration::from_secs(5)).await {
            return (0, Some(e.to_string()));
        }
        let mut media = 0;
        loop {
            match tokio::time::timeout_at(end, c.read_message()).await {
                Err(_) => return (media, None),
                Ok(Err(e)) => return (media, Some(e.to_string())),
                Ok(Ok(m)) if m.type_id == 8 || m.type_id == 9 => media += 1,
                Ok(Ok(_)) => {}
            }
        }
    })
}

fn api_config() -> (SocketAddr, String) {
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (
        api,
        format!("grace_period = 3\n[api]\nlisten = \"{api}\"\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_streams_and_clients_and_kicks_one() {
    init();
    let (api, toml) = api_config();
    let edge = EdgeProc::start(&toml);
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    let a = player(edge.url("cam"), Duration::from_secs(30));
    let b = player(edge.url("cam"), Duration::from_secs(8));
    let listed = wait_until(Duration::from_secs(10), || {
        // Two players, the publisher, and the codecs known.
        let edge_api = api;
        let v = futures_block(http(edge_api, "GET", "/api/v1/streams"));
        v.0 == 200 && v.1.contains("\"clients\":2") && v.1.contains("\"H264\"")
    })
    .await;
    assert!(listed, "{:?}", http(api, "GET", "/api/v1/streams").await);
    let (code, body) = http(api, "GET", "/api/v1/streams").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["id"], "live/cam");
    assert_eq!(s["app"], "live");
    assert_eq!(s["name"], "cam");
    assert_eq!(s["publish"]["active"], true);
    assert_eq!(s["audio"]["codec"], "AAC");
    assert!(s["recv_bytes"].as_u64().unwrap() > 0);

    let (code, body) = http(api, "GET", "/api/v1/clients?count=100").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let clients = v["clients"].as_array().unwrap();
    let plays: Vec<_> = clients.iter().filter(|c| c["type"] == "play").collect();
    assert_eq!(plays.len(), 2, "{body}");
    assert_eq!(clients.iter().filter(|c| c["type"] == "publish").count(), 1);
    assert!(plays
        .iter()
        .all(|c| c["ip"] == "127.0.0.1" && c["stream"] == "live/cam"));
    let (_, one) = http(api, "GET", "/api/v1/clients?start=0&count=1").await;
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["clients"].as_array().unwrap().len(), 1);

    // Kick the first player: it is closed, the other keeps playing.
    let victim = plays[0]["id"].as_u64().unwrap();
    let (code, _) = http(api, "DELETE", &format!("/api/v1/clients/{victim}")).await;
    assert_eq!(code, 200);
    let kicked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, body) = http(api, "GET", "/api/v1/clients?count=100").await;
            if !body.contains(&format!("\"id\":{victim},")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(kicked.is_ok(), "client {victim} still listed");
    let (media_b, err_b) = b.await.unwrap();
    let (media_a, err_a) = a.await.unwrap();
    // Which of the two was kicked depends on the order the API listed them.
    let (kicked_err, kept) = if err_a.is_some() {
        (err_a, (media_b, err_b))
    } else {
        (err_b, (media_a, err_a))
    };
    assert!(kicked_err.is_some(), "the kicked player was not closed");
    assert!(
        kept.0 > 50 && kept.1.is_none(),
        "the other player: {kept:?}"
    );
    assert!(edge.log().contains("client kicked through the API"));

    // Bad requests are answered, not crashed on.
    assert_eq!(http(api, "GET", "/api/v1/streams?start=x").await.0, 400);
    assert_eq!(http(api, "GET", "/nope").await.0, 404);
    assert_eq!(http(api, "DELETE", "/api/v1/clients/999999").await.0, 404);
    assert_eq!(http(api, "POST", "/metrics").await.0, 405);
    assert_eq!(http(api, "GET", "/api/v1/streams/live/nope").await.0, 404);
}

/// Runs a future to completion from a synchronous closure (the API is polled in a
/// `wait_until` condition).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_edge_status_show_the_stream() {
    init();
    let (api, toml) = api_config();
    let edge = EdgeProc::start(&toml);
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    let p = player(edge.url("cam"), Duration::from_secs(6));
    let shown = wait_until(Duration::from_secs(10), || {
        futures_block(http(api, "GET", "/metrics"))
            .1
            .contains("edgefleet_stream_viewers{stream=\"live/cam\",protocol=\"rtmp\"} 1")
    })
    .await;
    let (code, metrics) = http(api, "GET", "/metrics").await;
    assert!(shown && code == 200, "{metrics}");
    for needle in [
        "# TYPE edgefleet_edge_connections_total counter",
        "edgefleet_edge_refused_total{reason=\"max_handshakes_per_ip\"} 0",
        "edgefleet_edge_clients{type=\"play\"} 1",
        "edgefleet_edge_clients{type=\"publish\"} 1",
        "edgefleet_stream_source_up{stream=\"live/cam\",protocol=\"rtmp\"} 1",
        "edgefleet_stream_receive_bytes_total{stream=\"live/cam\"",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let mut cmd = tokio::process::Command::new(lab::bin("edge"));
    cmd.args(["status", "--api", &api.to_string()]);
    let (ok, out, err) = run_bounded(cmd, Duration::from_secs(10)).await;
    assert!(ok, "{err}");
    eprintln!("{out}");
    assert!(out.starts_with("STREAM"), "{out}");
    let row = out.lines().find(|l| l.starts_with("live/cam")).expect(&out);
    assert!(
        row.contains("publisher #") && row.contains("H264+AAC"),
        "{row}"
    );
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{row}");
    // `--config` finds the API from the file; without [api] it says so.
    let mut cmd = tokio::process::Command::new(lab::bin("edge"));
    cmd.arg("status").arg("--config").arg(&edge.config);
    assert!(run_bounded(cmd, Duration::from_secs(10)).await.0);
    let mut cmd = tokio::process::Command::new(lab::bin("edge"));
    cmd.args(["status", "--api", "127.0.0.1:1"]);
    let (ok, _, err) = run_bounded(cmd, Duration::from_secs(10)).await;
    assert!(!ok && err.contains("cannot reach the edge API"), "{err}");
    let _ = p.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_stops() {
    init();
    let (_, toml) = api_config();
    let mut edge = EdgeProc::start(&toml);
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    let p = player(edge.url("cam"), Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    edge.signal(Signal::SIGTERM);
    // The listener closes at once: a balancer's health check sees the edge down.
    let refused = wait_until(Duration::from_secs(2), || {
        std::net::TcpStream::connect(edge.addr).is_err()
    })
    .await;
    assert!(refused, "still accepting after SIGTERM");
    // The viewer keeps playing through the grace period (3 s), then the edge stops.
    let stopped = wait_until(Duration::from_secs(10), || !edge.alive()).await;
    let took = t0.elapsed();
    assert!(stopped, "not stopped after the grace period");
    assert!(
        took >= Duration::from_millis(2500),
        "stopped after {took:?}"
    );
    let (media, err) = p.await.unwrap();
    assert!(media > 60, "{media} media messages, {err:?}");
    let log = edge.log();
    assert!(log.contains("draining: listener closed"), "{log}");
    assert!(log.contains("grace_period over"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_session_end_and_no_error_for_a_hang_up() {
    init();
    let edge = EdgeProc::start("");
    let (_stop, _pub) = publish_clip(&edge.url("cam"));
    assert!(
        edge.wait_log("publish started", 1, Duration::from_secs(20))
            .await
    );
    let (media, _) = player(edge.url("cam"), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(media > 0);
    assert!(
        edge.wait_log("session ended", 1, Duration::from_secs(5))
            .await,
        "{}",
        edge.log()
    );
    let log = edge.log();
    let line = log.lines().find(|l| l.contains("session ended")).unwrap();
    for field in [
        "kind=Play",
        "stream=live/cam",
        "bytes_out=",
        "bytes_in=",
        "reason=",
    ] {
        assert!(line.contains(field), "{field}: {line}");
    }
    assert!(
        !line.contains("\u{1b}["),
        "no ANSI colours in a log file: {line}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    init();
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let edge = EdgeProc::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut heard = Vec::new();
    let recv_until = |want: &str, heard: &mut Vec<String>| {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 256];
        while std::time::Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                heard.push(m.clone());
                if m.starts_with(want) {
                    return true;
                }
            }
        }
        false
    };
    assert!(recv_until("READY=1", &mut heard), "{heard:?}");
    assert!(recv_until("WATCHDOG=1", &mut heard), "{heard:?}");
    edge.signal(Signal::SIGHUP);
    assert!(recv_until("RELOADING=1", &mut heard), "{heard:?}");
    assert!(heard.last().unwrap().contains("MONOTONIC_USEC="));
    assert!(recv_until("READY=1", &mut heard), "{heard:?}");
    edge.signal(Signal::SIGTERM);
    assert!(recv_until("STOPPING=1", &mut heard), "{heard:?}");
}

/// `dr_vip`: a bad value and a listen address that cannot take the VIP's viewers are
/// config errors naming the key; an edge started for DR on a host without `edge dr-setup`
/// says in its log what is missing and how to fix it (no root needed: it only reads).
#[test]
fn an_edge_started_for_dr_without_the_vip_on_lo_says_so() {
    let dir = TempDir::new("drvip");
    let check = |toml: &str| {
        let path = dir.0.join("check.toml");
        std::fs::write(&path, toml).unwrap();
        let out = std::process::Command::new(lab::bin("edge"))
            .args(["--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check("dr_vip = [\"bogus\"]\n");
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("dr_vip[0]: \"bogus\" is not an IPv4 address"),
        "{err}"
    );
    let (code, err) = check("listen = \"127.0.0.1:1935\"\ndr_vip = [\"198.18.0.123\"]\n");
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("listen: 127.0.0.1:1935 cannot accept viewers sent to dr_vip 198.18.0.123"),
        "{err}"
    );
    // Started for DR, the VIP not on lo: it serves, and its log says what is missing.
    let port = free_port();
    let path = dir.0.join("edge.toml");
    std::fs::write(
        &path,
        format!("listen = \"0.0.0.0:{port}\"\ndr_vip = [\"198.18.0.123\"]\n"),
    )
    .unwrap();
    let log = dir.0.join("edge.log");
    let mut child = ChildGuard(
        std::process::Command::new(lab::bin("edge"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("DR real server") || std::time::Instant::now() > end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains("DR real server not ready")
            && text.contains("198.18.0.123/32 is not on lo")
            && text.contains("run edge dr-setup --vip 198.18.0.123"),
        "{text}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let _ = child.0.kill();
}
