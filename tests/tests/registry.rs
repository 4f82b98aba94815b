//! The stream registry (issue 13) against a real etcd (Debian's etcd-server) started by each
//! test on loopback ports: origins register what is published to them, edges find streams
//! through it, follow a publisher that moves, origins relay, and an etcd outage costs no
//! viewer. Durations are printed, never asserted.

use edge::EdgeConfig;
use edgefleet_tests::etcd::Etcd;
use edgefleet_tests::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

/// An origin on loopback with the registry.
async fn origin_in(etcd: &Etcd) -> Running {
    let cluster = etcd.cluster(2);
    origin_with(|c| c.cluster = Some(cluster)).await
}

/// An edge with the registry and the static `origins` (possibly none).
async fn edge_in(etcd: &Etcd, origins: &[std::net::SocketAddr]) -> Running {
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\nmode = \"remote\"\norigin_timeout = 2\n[api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nregistry = [\"http://{}\"]\n",
        etcd.endpoint()
    );
    if !origins.is_empty() {
        let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
        toml = toml.replace(
            "origin_timeout",
            &format!("origin = [{}]\norigin_timeout", list.join(",")),
        );
    }
    start(EdgeConfig::parse(&toml).unwrap()).await
}

/// Waits (bounded) for media at the viewer after `t`; the time it took.
async fn media_after(seen: &Arc<Mutex<Seen>>, t: Instant) -> Option<Duration> {
    let ok = wait_until(Duration::from_secs(15), || {
        seen.lock().unwrap().last_media.is_some_and(|m| m > t)
    })
    .await;
    ok.then(|| {
        let g = seen.lock().unwrap();
        g.last_media.unwrap().saturating_duration_since(t)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_only_the_registry_follows_the_publisher_to_another_origin() {
    init();
    const T: &str = "an_edge_with_only_the_registry_follows_the_publisher_to_another_origin";
    if !have("etcd", T) {
        return;
    }
    let etcd = Etcd::start();
    etcd.ready().await;
    // Origin B is a process (killed with SIGKILL: no goodbye, its lease must expire);
    // origin A runs here.
    let mut b = EdgeProc::start(&format!(
        "[cluster]\nregistry = [\"http://{}\"]\nlease_ttl = 2\n",
        etcd.endpoint()
    ));
    let a = origin_in(&etcd).await;
    let (stop_b_pub, _b_pub) = publish_clip(&b.url("cam"));
    assert!(
        etcd.wait_registered("live/cam", 1).await,
        "B did not register live/cam:\n{}",
        b.log()
    );
    assert_eq!(etcd.registered("live/cam").await, vec![b.addr.to_string()]);

    let edge = edge_in(&etcd, &[]).await;
    let asked = Instant::now();
    let (seen, _viewer) = watch(&edge.url("cam"), Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(10), || media(&seen) > 20).await);
    let first = seen.lock().unwrap().first_media.unwrap() - asked;

    // B crashes; the publisher republishes to A.
    b.child.kill().unwrap();
    let _ = b.child.wait();
    drop(stop_b_pub);
    let (_stop_a_pub, _a_pub) = publish_clip(&a.url("cam"));
    wait_published(&a.hub, "cam").await;
    let republished = Instant::now();
    let resumed = media_after(&seen, republished).await;
    let closed = seen.lock().unwrap().closed.clone();
    assert!(closed.is_none(), "the viewer was cut: {closed:?}");
    let resumed = resumed.expect("media resumed at the viewer after the republish to A");
    eprintln!(
        "registry-only edge: first media {first:?} after play; republish on A -> media at the viewer {resumed:?}"
    );
    // B's registration goes with its lease (2 s): only A's stays.
    assert!(
        etcd.wait_registered("live/cam", 1).await,
        "{:?}",
        etcd.registered("live/cam").await
    );
    assert_eq!(etcd.registered("live/cam").await, vec![a.addr.to_string()]);
    let before = media(&seen);
    assert!(wait_until(Duration::from_secs(10), || media(&seen) > before + 20).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_relays_a_stream_published_on_another_origin() {
    init();
    const T: &str = "an_origin_relays_a_stream_published_on_another_origin";
    if !have("etcd", T) {
        return;
    }
    let etcd = Etcd::start();
    etcd.ready().await;
    let b = origin_in(&etcd).await;
    let cluster = etcd.cluster(2);
    let a = origin_with(|c| {
        c.cluster = Some(cluster);
        with_http(c);
    })
    .await;
    // The seed's edge: one fixed upstream (origin A), no registry.
    let edge = edge(&[a.addr]).await;
    let (stop_b, _pub) = publish_clip(&b.url("cam"));
    wait_published(&b.hub, "cam").await;
    assert!(etcd.wait_registered("live/cam", 1).await);

    let asked = Instant::now();
    let (seen, _viewer) = watch(&edge.url("cam"), Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || media(&seen) > 20).await,
        "{:?}",
        seen.lock().unwrap()
    );
    eprintln!(
        "edge -> origin A -> registry -> origin B: first media {:?} after play",
        seen.lock().unwrap().first_media.unwrap() - asked
    );
    let relayed = a.hub.info("live/cam").expect("A has the stream");
    assert!(relayed.pulling, "A pulls it: {relayed:?}");
    // A relays but does not register: B alone holds the stream.
    assert_eq!(etcd.registered("live/cam").await, vec![b.addr.to_string()]);

    // A stream nobody publishes: answered not found, not relayed in a loop.
    let (nobody, task) = watch(&a.url("nobody"), Duration::from_secs(10));
    let _ = task.await;
    {
        let g = nobody.lock().unwrap();
        assert!(g.closed.is_some() && g.media == 0, "{g:?}");
    }
    assert!(etcd.registered("live/nobody").await.is_empty());
    assert!(a.hub.info("live/nobody").is_none());

    // HTTP-FLV on origin A relays too (a stream A is not relaying yet); a stream nobody has
    // is a 404.
    let (_stop2, _pub2) = publish_clip(&b.url("flvcam"));
    assert!(etcd.wait_registered("live/flvcam", 1).await);
    assert!(a.hub.info("live/flvcam").is_none());
    let http = a.http.unwrap();
    let head = flv_head(http, "/live/flvcam.flv").await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("video/x-flv"),
        "{head}"
    );
    let (code, body) = edgefleet_tests::http(http, "GET", "/live/nobody.flv").await;
    assert_eq!(code, 404, "{body}");
    // And HLS: a playlist request on A for a stream only B has is packaged from the relay.
    let (_stop3, _pub3) = publish_clip(&b.url("hlscam"));
    assert!(etcd.wait_registered("live/hlscam", 1).await);
    let (code, playlist) = edgefleet_tests::http(http, "GET", "/live/hlscam.m3u8").await;
    assert_eq!(code, 200, "{playlist}");
    assert!(playlist.contains("#EXTINF"), "{playlist}");
    assert!(a.hub.info("live/hlscam").expect("A relays it").pulling);
    let (code, body) = edgefleet_tests::http(http, "GET", "/live/nobody.m3u8").await;
    assert_eq!(code, 404, "{body}");

    // The publisher moves from B to A, which is relaying the stream: it takes the stream
    // over from the relay, registers it, and the edge's viewer goes on.
    drop(stop_b);
    let (_stop_a, pub_a) = publish_clip(&a.url("cam"));
    let a_only = vec![a.addr.to_string()];
    let end = Instant::now() + Duration::from_secs(20);
    while etcd.registered("live/cam").await != a_only && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(etcd.registered("live/cam").await, a_only);
    assert!(
        !pub_a.is_finished(),
        "the publish to A ended: {:?}",
        pub_a.await
    );
    let registered = Instant::now();
    let resumed = media_after(&seen, registered).await;
    assert!(
        seen.lock().unwrap().closed.is_none(),
        "{:?}",
        seen.lock().unwrap()
    );
    eprintln!("publisher moved onto the relaying origin: media at the edge's viewer {resumed:?} after A registered it");
    assert!(resumed.is_some());
    assert!(!a.hub.info("live/cam").unwrap().pulling, "A still relays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_costs_no_viewer_and_lookups_recover() {
    init();
    const T: &str = "an_etcd_outage_costs_no_viewer_and_lookups_recover";
    if !have("etcd", T) {
        return;
    }
    let mut etcd = Etcd::start();
    etcd.ready().await;
    let registered = origin_in(&etcd).await;
    let listed = origin().await;
    // The edge knows `listed` statically and finds `registered` through the registry.
    let edge = edge_in(&etcd, &[listed.addr]).await;
    let (_s1, _p1) = publish_clip(&registered.url("cam"));
    assert!(etcd.wait_registered("live/cam", 1).await);
    let (seen, _viewer) = watch(&edge.url("cam"), Duration::from_secs(90));
    assert!(wait_until(Duration::from_secs(10), || media(&seen) > 20).await);

    // etcd goes away: the viewer keeps playing.
    etcd.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(media_after(&seen, stopped).await.is_some());
    assert!(seen.lock().unwrap().closed.is_none());
    // A new stream is found through the static list.
    let (_s2, _p2) = publish_clip(&listed.url("other"));
    wait_published(&listed.hub, "other").await;
    let asked = Instant::now();
    let (other, _v2) = watch(&edge.url("other"), Duration::from_secs(60));
    assert!(
        wait_until(Duration::from_secs(10), || media(&other) > 20).await,
        "{:?}",
        other.lock().unwrap()
    );
    eprintln!(
        "etcd down: first media of a statically listed stream {:?} after play",
        other.lock().unwrap().first_media.unwrap() - asked
    );
    // The API and the metrics say so.
    let api = edge.api.unwrap();
    let (code, body) = edgefleet_tests::http(api, "GET", "/api/v1/registry").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["registry"]["up"], false, "{v}");
    assert!(
        v["registry"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&etcd.endpoint())),
        "{v}"
    );
    assert!(v["registry"]["fallbacks"].as_u64() >= Some(1), "{v}");
    let (_, metrics) = edgefleet_tests::http(api, "GET", "/metrics").await;
    assert!(
        metrics.contains("edgefleet_edge_registry_up 0"),
        "{metrics}"
    );

    // etcd returns: a stream published on the registered origin during or after the outage
    // is found through the registry again, nothing restarted.
    etcd.spawn();
    etcd.ready().await;
    let (_s3, _p3) = publish_clip(&registered.url("third"));
    assert!(
        etcd.wait_registered("live/third", 1).await,
        "the origin did not register again after etcd returned"
    );
    let asked = Instant::now();
    let (third, _v3) = watch(&edge.url("third"), Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(10), || media(&third) > 20).await,
        "{:?}",
        third.lock().unwrap()
    );
    eprintln!(
        "etcd back: first media through the registry {:?} after play",
        third.lock().unwrap().first_media.unwrap() - asked
    );
    let (_, body) = edgefleet_tests::http(edge.api.unwrap(), "GET", "/api/v1/registry").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["registry"]["up"], true, "{v}");
    for s in [&seen, &other, &third] {
        assert!(
            s.lock().unwrap().closed.is_none(),
            "{:?}",
            s.lock().unwrap()
        );
    }
}

/// The head of an HTTP-FLV answer (and the start of its body), read within 10 s.
async fn flv_head(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !String::from_utf8_lossy(&got).contains("\r\n\r\nFLV") {
        match tokio::time::timeout_at(end, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn bad_registry_values_are_refused_naming_them() {
    for (toml, says) in [
        (
            "[cluster]\nregistry = [\"etcd.example:2379\"]\n",
            "cluster.registry[0]: \"etcd.example:2379\"",
        ),
        (
            "[cluster]\nregistry = [\"http://etcd.example\"]\n",
            "cluster.registry[0]: \"http://etcd.example\"",
        ),
        (
            "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nlease_ttl = 1\n",
            "cluster.lease_ttl: 1 is out of range",
        ),
        (
            "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\ntimeout = -1\n",
            "cluster.timeout: -1 is out of range",
        ),
        (
            "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nprefix = \"streams\"\n",
            "cluster.prefix: \"streams\"",
        ),
        (
            "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nadvertise = \"origin.example\"\n",
            "cluster.advertise: \"origin.example\"",
        ),
        ("[cluster]\nregistry = []\n", "cluster.registry:"),
        (
            "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nttl = 5\n",
            "cluster: unknown field `ttl`",
        ),
    ] {
        let toml = format!("listen = \"127.0.0.1:1935\"\n{toml}");
        let e = EdgeConfig::parse(&toml).unwrap_err().to_string();
        assert!(e.contains(says), "{toml}\n-> {e}");
    }
}
