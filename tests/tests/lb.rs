//! End-to-end tests of the balancer (PROXY dispatch) in front of real edges and simple TCP
//! backends, on loopback with free ports. Client addresses vary over 127.0.0.0/8.

use common::rtmp::client::RtmpClient;
use common::rtmp::conn::RtmpError;
use common::rtmp::url::RtmpUrl;
use edge::tools::play::{play_one, ClientResult};
use edgefleet_tests::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

fn lo(i: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, i])
}

fn vs_toml(
    vip: SocketAddr,
    algo: &str,
    extra: &str,
    servers: &[(SocketAddr, u32, &str)],
) -> String {
    let mut t = format!("[[virtual_server]]\naddress = \"{vip}\"\nlb_algo = \"{algo}\"\nlb_kind = \"PROXY\"\ndelay_loop = 0.5\n{extra}\n");
    for (a, w, more) in servers {
        t.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{a}\"\nweight = {w}\n{more}\n"
        ));
    }
    t
}

/// A server that accepts TCP and never says anything (held until the handle is dropped).
async fn silent_server() -> (SocketAddr, AbortOnDrop) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    (addr, AbortOnDrop(task))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn vip() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

async fn tally(
    vip: SocketAddr,
    n: usize,
    hold: bool,
    from: impl Fn(usize) -> IpAddr,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut held = Vec::new();
    for i in 0..n {
        let (id, s) = read_id(vip, from(i)).await;
        *counts.entry(id).or_insert(0) += 1;
        if hold {
            held.push(s);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_distributes_with_weights() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let (c, _tc) = id_server("c").await;

    let v = vip();
    let _lb = start_lb(&vs_toml(v, "rr", "", &[(a, 1, ""), (b, 1, ""), (c, 1, "")])).await;
    let t = tally(v, 30, false, |_| lo(1)).await;
    assert_eq!((t["a"], t["b"], t["c"]), (10, 10, 10), "rr {t:?}");

    let v = vip();
    let _lb = start_lb(&vs_toml(
        v,
        "wrr",
        "",
        &[(a, 1, ""), (b, 2, ""), (c, 3, "")],
    ))
    .await;
    let t = tally(v, 60, false, |_| lo(1)).await;
    assert_eq!((t["a"], t["b"], t["c"]), (10, 20, 30), "wrr {t:?}");

    // lc/wlc: connections held open spread by active count (wlc by weight).
    let v = vip();
    let _lb = start_lb(&vs_toml(v, "lc", "", &[(a, 1, ""), (b, 1, ""), (c, 1, "")])).await;
    let t = tally(v, 30, true, |_| lo(1)).await;
    assert_eq!((t["a"], t["b"], t["c"]), (10, 10, 10), "lc {t:?}");
    let v = vip();
    let _lb = start_lb(&vs_toml(v, "wlc", "", &[(a, 1, ""), (b, 3, "")])).await;
    let t = tally(v, 40, true, |_| lo(1)).await;
    assert_eq!((t["a"], t["b"]), (10, 30), "wlc {t:?}");

    // sh/mh: one client always lands on the same server; many clients spread by weight.
    for algo in ["sh", "mh"] {
        let v = vip();
        let _lb = start_lb(&vs_toml(v, algo, "", &[(a, 1, ""), (b, 1, ""), (c, 2, "")])).await;
        let t = tally(v, 10, false, |_| lo(7)).await;
        assert_eq!(t.len(), 1, "{algo}: one client, one server: {t:?}");
        let t = tally(v, 200, false, |i| lo(10 + i as u8)).await;
        assert_eq!(t.len(), 3, "{algo} {t:?}");
        let heavy = t["c"] as f64 / 200.0;
        assert!(
            (0.35..=0.65).contains(&heavy),
            "{algo}: weight 2 of 4 got {heavy} {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_choices_agree_between_two_balancers() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let (c, _tc) = id_server("c").await;
    let servers = [(a, 1, ""), (b, 1, ""), (c, 1, "")];
    let (v1, v2) = (vip(), vip());
    let _lb1 = start_lb(&vs_toml(v1, "mh", "", &servers)).await;
    let _lb2 = start_lb(&vs_toml(v2, "mh", "", &servers)).await;
    for i in 2..60u8 {
        let (x, _) = read_id(v1, lo(i)).await;
        let (y, _) = read_id(v2, lo(i)).await;
        assert_eq!(x, y, "client 127.0.0.{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_holds_within_timeout_and_expires_after() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let v = vip();
    let _lb = start_lb(&vs_toml(
        v,
        "rr",
        "persistence_timeout = 1",
        &[(a, 1, ""), (b, 1, "")],
    ))
    .await;
    let (first, s) = read_id(v, lo(1)).await;
    drop(s);
    for _ in 0..5 {
        let (id, s) = read_id(v, lo(1)).await;
        assert_eq!(id, first, "persistence broken within the timeout");
        drop(s);
    }
    // Another client is not tied to it.
    let (other, _s) = read_id(v, lo(2)).await;
    assert_ne!(
        other, first,
        "rr should give the second client the other server"
    );
    // A third client takes `first` again, so rr's next choice is the other server.
    let (third, _s3) = read_id(v, lo(3)).await;
    assert_eq!(third, first);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (later, _s) = read_id(v, lo(1)).await;
    assert_ne!(later, first, "persistence outlived persistence_timeout");
}

async fn play_for(url: &str, secs: f64) -> ClientResult {
    let url = RtmpUrl::parse(url).unwrap();
    play_one(
        &url,
        Instant::now() + Duration::from_secs_f64(secs),
        Arc::new(Semaphore::new(1)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_edge_is_skipped_and_rejoins() {
    init();
    if !have("ffprobe", "dead_edge_is_skipped_and_rejoins") {
        return;
    }
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let e1 = edge(&[origin.addr]).await;
    let e2 = edge(&[origin.addr]).await;
    let (a1, a2) = (e1.addr, e2.addr);
    let check = "[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\nretry = 0\ndelay_before_retry = 0.2";
    let v = vip();
    let lb = start_lb(&vs_toml(v, "rr", "", &[(a1, 1, check), (a2, 1, check)])).await;
    let via_lb = format!("rtmp://{v}/live/cam");

    // A viewer on e2 (rr: the first connection goes to e1, the second to e2).
    let warm = play_for(&via_lb, 0.5).await;
    assert!(warm.first_frame.is_some());
    let keeper = tokio::spawn({
        let u = via_lb.clone();
        async move { play_for(&u, 8.0).await }
    });
    assert!(
        wait_until(Duration::from_secs(5), || e2
            .hub
            .info("live/cam")
            .map(|i| i.players)
            == Some(1))
        .await
    );

    // e1 dies: within delay_loop + check time it is DOWN, and every new viewer plays.
    e1.stop().await;
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || rs_status(&lb, a1)["state"]
            == "DOWN")
        .await,
        "{}",
        rs_status(&lb, a1)
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "down after {:?}",
        killed.elapsed()
    );
    let before = rs_status(&lb, a1)["total"].as_u64().unwrap();
    for _ in 0..4 {
        let codecs = ffprobe_codecs(&via_lb).await.unwrap();
        assert_eq!(codecs, vec!["aac", "h264"]);
    }
    assert_eq!(
        rs_status(&lb, a1)["total"].as_u64().unwrap(),
        before,
        "a new viewer was sent to the dead edge"
    );

    // e1 comes back on the same port: it rejoins.
    let e1b = start(edge::EdgeConfig::edge(a1, &[origin.addr])).await;
    assert!(
        wait_until(Duration::from_secs(3), || rs_status(&lb, a1)["state"]
            == "UP")
        .await
    );
    let _r1 = play_for(&via_lb, 1.0).await;
    let _r2 = play_for(&via_lb, 1.0).await;
    assert!(
        rs_status(&lb, a1)["total"].as_u64().unwrap() > before,
        "the restarted edge got no viewer"
    );
    drop(e1b);

    let kept = keeper.await.unwrap();
    assert!(
        kept.error.is_none(),
        "viewer on the surviving edge: {:?}",
        kept.error
    );
    assert_eq!(kept.stalls, 0, "viewer on the surviving edge stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_connect_failure_tries_the_next_server() {
    init();
    let (a, _ta) = id_server("a").await;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let v = vip();
    // No checks: only the proxy's own connect failure can find the dead one.
    let lb = start_lb(&vs_toml(v, "rr", "", &[(dead, 1, ""), (a, 1, "")])).await;
    for _ in 0..6 {
        let (id, _) = read_id(v, lo(1)).await;
        assert_eq!(id, "a");
    }
    assert!(rs_status(&lb, dead)["connect_failures"].as_u64().unwrap() >= 1);
    // Without a check it stays UP (keepalived's rule): once something listens there again,
    // it gets connections without a reload.
    assert_eq!(rs_status(&lb, dead)["state"], "UP");
    let back = tokio::net::TcpListener::bind(dead).await.unwrap();
    let _srv = tokio::spawn(async move {
        while let Ok((mut s, _)) = back.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"back\n").await;
        }
    });
    let ids: Vec<String> = {
        let mut v2 = Vec::new();
        for _ in 0..4 {
            v2.push(read_id(v, lo(1)).await.0);
        }
        v2
    };
    assert!(ids.iter().any(|i| i == "back"), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_check_marks_down_an_edge_without_video() {
    init();
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let good = edge(&[origin.addr]).await;
    // Accepts RTMP, but has nothing for live/cam.
    let empty = origin_with(|_| {}).await;
    // Accepts TCP and says nothing.
    let (silent_addr, _hold) = silent_server().await;
    let check = "[virtual_server.real_server.rtmp_check]\nconnect_timeout = 1.5\nretry = 0\ndelay_before_retry = 0.2\nstream = \"live/cam\"";
    let v = vip();
    let lb = start_lb(&vs_toml(
        v,
        "rr",
        "",
        &[
            (good.addr, 1, check),
            (empty.addr, 1, check),
            (silent_addr, 1, check),
        ],
    ))
    .await;
    assert!(
        wait_until(Duration::from_secs(6), || rs_status(&lb, empty.addr)
            ["state"]
            == "DOWN"
            && rs_status(&lb, silent_addr)["state"] == "DOWN")
        .await,
        "{} {}",
        rs_status(&lb, empty.addr),
        rs_status(&lb, silent_addr)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rs_status(&lb, good.addr)["state"],
        "UP",
        "{}",
        rs_status(&lb, good.addr)
    );
    // Every viewer now reaches the good edge.
    for _ in 0..3 {
        let r = play_for(&format!("rtmp://{v}/live/cam"), 1.0).await;
        assert!(r.first_frame.is_some(), "{:?}", r.error);
    }
}

async fn publish_from(local: IpAddr, to: SocketAddr) -> Result<(), RtmpError> {
    let url = RtmpUrl::parse(&format!("rtmp://{to}/live/pp")).unwrap();
    let mut c = RtmpClient::connect_from(local, to, &url, Duration::from_secs(5)).await?;
    c.publish("pp", Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_gives_the_edge_the_client_address() {
    init();
    let origin = origin_with(|c| {
        c.proxy_protocol = true;
        c.publish.allow = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let v = vip();
    let _lb = start_lb(&vs_toml(
        v,
        "rr",
        "",
        &[(origin.addr, 1, "send_proxy = \"v2\"")],
    ))
    .await;
    // The lb connects from 127.0.0.1; only the real client address 127.0.0.2 is allowed.
    publish_from(lo(2), v)
        .await
        .expect("127.0.0.2 may publish through the lb");
    let e = publish_from(lo(3), v).await.unwrap_err();
    assert!(matches!(e, RtmpError::Refused { .. }), "{e}");
    // A client without the header, straight to the edge, is closed.
    let e = publish_from(lo(2), origin.addr).await.unwrap_err();
    assert!(!matches!(e, RtmpError::Refused { .. }), "{e}");
    // And a header where none is expected is refused.
    let plain = origin_with(|_| {}).await;
    let v2 = vip();
    let _lb2 = start_lb(&vs_toml(
        v2,
        "rr",
        "",
        &[(plain.addr, 1, "send_proxy = \"v2\"")],
    ))
    .await;
    assert!(publish_from(lo(1), v2).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_an_edge_without_dropping_viewers() {
    init();
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let e1 = edge(&[origin.addr]).await;
    let e2 = edge(&[origin.addr]).await;
    let e3 = edge(&[origin.addr]).await;
    let v = vip();
    let two = vs_toml(v, "rr", "", &[(e1.addr, 1, ""), (e2.addr, 1, "")]);
    let lb = start_lb(&two).await;
    let via_lb = format!("rtmp://{v}/live/cam");
    let viewers: Vec<_> = (0..4)
        .map(|_| {
            let u = via_lb.clone();
            tokio::spawn(async move { play_for(&u, 6.0).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let three = vs_toml(
        v,
        "rr",
        "",
        &[(e1.addr, 1, ""), (e2.addr, 1, ""), (e3.addr, 1, "")],
    );
    let cfg = lb::LbConfig::parse(&format!("admin_listen = \"127.0.0.1:0\"\n{three}")).unwrap();
    lb.balancer.apply(cfg).await.unwrap();
    for _ in 0..3 {
        let r = play_for(&via_lb, 0.5).await;
        assert!(r.first_frame.is_some());
    }
    assert!(
        rs_status(&lb, e3.addr)["total"].as_u64().unwrap() >= 1,
        "no new viewer reached the added edge"
    );
    for v in viewers {
        let r = v.await.unwrap();
        assert!(
            r.error.is_none(),
            "a viewer was disconnected by the reload: {:?}",
            r.error
        );
        assert_eq!(r.stalls, 0);
    }
    // A reload that removes an edge leaves its viewers alone too (checked by counters).
    let back = lb::LbConfig::parse(&format!("admin_listen = \"127.0.0.1:0\"\n{two}")).unwrap();
    lb.balancer.apply(back).await.unwrap();
    assert!(rs_status(&lb, e3.addr).is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_sorry_server() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let (sorry, _ts) = id_server("sorry").await;
    let v = vip();
    let extra = format!("sorry_server = \"{sorry}\"");
    let check = "[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.3\nretry = 0\ndelay_before_retry = 0.1";
    let lb = start_lb(&vs_toml(v, "rr", &extra, &[(a, 1, check), (b, 1, check)])).await;
    let vs = lb.balancer.find(v).unwrap();
    let rs_a = vs.server(a).unwrap();
    let (_id, held) = read_id(v, lo(1)).await; // goes to a
    vs.set_drained(&rs_a, true);
    for _ in 0..4 {
        assert_eq!(
            read_id(v, lo(1)).await.0,
            "b",
            "a drained server got a new connection"
        );
    }
    assert_eq!(
        rs_a.active.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "drain kept the established connection"
    );
    drop(held);
    vs.set_drained(&rs_a, false);
    assert_eq!(
        lb::admin::status(&lb.balancer)["virtual_servers"][0]["sorry"],
        0,
        "sorry server used while servers were up"
    );
    // Both real servers die: once checks mark them DOWN, the sorry server answers.
    _ta.abort();
    _tb.abort();
    assert!(
        wait_until(Duration::from_secs(3), || rs_status(&lb, a)["state"]
            == "DOWN"
            && rs_status(&lb, b)["state"] == "DOWN")
        .await
    );
    assert_eq!(read_id(v, lo(1)).await.0, "sorry");
}

/// keepalived's MISC_CHECK with a real /bin/sh script that tests for a file per server: the
/// server whose file goes is taken out (connections go to the other), and comes back with
/// it; with misc_dynamic, exit code 2 + N sets its weight to N (0: no new connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misc_check_takes_a_real_server_out_and_back() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let dir = std::env::temp_dir().join(format!("edgefleet-misc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (fa, fw) = (dir.join("a.ok"), dir.join("a.weight"));
    std::fs::write(&fa, "").unwrap();
    // Up while a.ok exists; a.weight, when present, holds the exit code (2 + weight).
    let script = format!(
        "test -e {fa} || exit 1; test -e {fw} && exit $(cat {fw}); exit 0",
        fa = fa.display(),
        fw = fw.display()
    );
    let check_a = format!(
        "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/sh -c '{script}'\"\nmisc_timeout = 2\nmisc_dynamic = true\nretry = 0\ndelay_before_retry = 0.1"
    );
    let check_b = "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/true\"\nretry = 0";
    let v = vip();
    let lb = start_lb(&vs_toml(v, "rr", "", &[(a, 1, &check_a), (b, 1, check_b)])).await;
    assert!(
        wait_until(Duration::from_secs(3), || rs_status(&lb, a)["checks"]
            .as_u64()
            .unwrap_or(0)
            > 0)
        .await
    );
    let seen = tally(v, 4, false, |_| lo(1)).await;
    assert_eq!(
        (seen.get("a"), seen.get("b")),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );
    std::fs::remove_file(&fa).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || rs_status(&lb, a)["state"]
            == "DOWN")
        .await,
        "{}",
        rs_status(&lb, a)
    );
    assert!(rs_status(&lb, a)["last_error"]
        .as_str()
        .unwrap()
        .contains("exited with 1"));
    let seen = tally(v, 4, false, |_| lo(1)).await;
    assert_eq!(
        seen.get("b"),
        Some(&4),
        "a DOWN server got connections: {seen:?}"
    );
    std::fs::write(&fa, "").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || rs_status(&lb, a)["state"]
            == "UP")
        .await,
        "{}",
        rs_status(&lb, a)
    );
    let seen = tally(v, 4, false, |_| lo(1)).await;
    assert_eq!(seen.get("a"), Some(&2), "a is back: {seen:?}");
    // misc_dynamic: exit 2 = up with weight 0 (quiesced).
    std::fs::write(&fw, "2").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || rs_status(&lb, a)["weight"] == 0).await,
        "{}",
        rs_status(&lb, a)
    );
    assert_eq!(rs_status(&lb, a)["state"], "UP");
    let seen = tally(v, 4, false, |_| lo(1)).await;
    assert_eq!(
        seen.get("b"),
        Some(&4),
        "weight 0 took no connection: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_algorithms_over_real_edges() {
    init();
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let edges = [
        edge(&[origin.addr]).await,
        edge(&[origin.addr]).await,
        edge(&[origin.addr]).await,
    ];
    for algo in ["wrr", "wlc"] {
        let v = vip();
        let servers: Vec<(SocketAddr, u32, &str)> = vec![
            (edges[0].addr, 1, ""),
            (edges[1].addr, 1, ""),
            (edges[2].addr, 2, ""),
        ];
        let _lb = start_lb(&vs_toml(v, algo, "", &servers)).await;
        let url = format!("rtmp://{v}/live/cam");
        // Eight viewers held open: weights 1:1:2 give 2, 2 and 4 of them.
        let mut viewers = Vec::new();
        for _ in 0..8 {
            let u = url.clone();
            viewers.push(tokio::spawn(async move { play_for(&u, 3.0).await }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let counts: Vec<usize> = edges
            .iter()
            .map(|e| e.hub.info("live/cam").map(|i| i.players).unwrap_or(0))
            .collect();
        assert_eq!(counts, vec![2, 2, 4], "{algo}: viewers per edge");
        for v in viewers {
            assert!(v.await.unwrap().first_frame.is_some());
        }
        assert!(
            wait_until(Duration::from_secs(8), || edges.iter().all(|e| e
                .hub
                .info("live/cam")
                .map(|i| i.players)
                .unwrap_or(0)
                == 0))
            .await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_virtual_server() {
    init();
    use tokio::io::AsyncReadExt;
    let (a, _ta) = id_server("a").await;
    let v = vip();
    let lb = start_lb(&vs_toml(v, "rr", "max_connections = 2", &[(a, 1, "")])).await;
    let (_, first) = read_id(v, lo(1)).await;
    let (_, second) = read_id(v, lo(1)).await;
    // The third is accepted and closed at once, and counted.
    let mut third = tokio::net::TcpStream::connect(v).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "a connection past max_connections was served");
    assert_eq!(
        lb::admin::status(&lb.balancer)["virtual_servers"][0]["refused"],
        1
    );
    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        read_id(v, lo(1)).await.0,
        "a",
        "capacity comes back when connections close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_check_sends_the_proxy_header_an_edge_expects() {
    init();
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let e = edge_with(&[origin.addr], |c| c.proxy_protocol = true).await;
    let check = "[virtual_server.real_server.rtmp_check]\nconnect_timeout = 2\nretry = 0\ndelay_before_retry = 0.2\nstream = \"live/cam\"";
    let v = vip();
    let with_header = format!("send_proxy = \"v2\"\n{check}");
    let lb = start_lb(&vs_toml(v, "rr", "", &[(e.addr, 1, &with_header)])).await;
    // The control: the same check without send_proxy is closed by that edge, so it is DOWN.
    let v2 = vip();
    let control = start_lb(&vs_toml(v2, "rr", "", &[(e.addr, 1, check)])).await;

    // Several checks have run (each plays live/cam), none failed, no flip.
    assert!(
        wait_until(Duration::from_secs(15), || rs_status(&lb, e.addr)["checks"]
            .as_u64()
            .unwrap_or(0)
            >= 3)
        .await,
        "{}",
        rs_status(&lb, e.addr)
    );
    let st = rs_status(&lb, e.addr);
    assert_eq!(st["state"], "UP", "{st}");
    assert_eq!(st["check_failures"], 0, "{st}");
    assert_eq!(st["flips"], 0, "{st}");
    assert!(
        wait_until(Duration::from_secs(10), || rs_status(&control, e.addr)
            ["state"]
            == "DOWN")
        .await,
        "without the header the check should fail: {}",
        rs_status(&control, e.addr)
    );

    // A viewer plays through the lb (its connection carries a PROXY header with its address).
    let r = play_for(&format!("rtmp://{v}/live/cam"), 1.0).await;
    assert!(r.first_frame.is_some(), "{:?}", r.error);
    assert_eq!(rs_status(&lb, e.addr)["state"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_sends_a_local_proxy_header_with_send_proxy() {
    init();
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rs = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let _srv = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
                let _ = tx.send(got).await;
            });
        }
    });
    let check = "send_proxy = \"v2\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 1\nretry = 0\ndelay_before_retry = 0.2";
    let lb = start_lb(&vs_toml(vip(), "rr", "", &[(rs, 1, check)])).await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a check within 5 s")
        .unwrap();
    assert_eq!(
        got,
        common::proxy_protocol::encode_v2_local(),
        "a tcp_check to a send_proxy server starts with a LOCAL PROXY v2 header, and sends nothing else"
    );
    assert_eq!(rs_status(&lb, rs)["state"], "UP");
    assert_eq!(rs_status(&lb, rs)["check_failures"], 0);
}

/// Sends `raw` to `addr` and reads until the server closes (at most `limit`): the bytes, and
/// whether it closed within the limit.
async fn exchange(addr: SocketAddr, raw: &str, limit: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, s.read_to_end(&mut got))
        .await
        .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_caps_idle_connections_and_still_serves_viewers_and_operators() {
    init();
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::AsyncReadExt;
    let (a, _ta) = id_server("a").await;
    let v = vip();
    let lb = start_lb(&vs_toml(v, "rr", "", &[(a, 1, "")])).await;
    let cap = lb::admin::server::MAX_CONNECTIONS as u64;
    // 200 connections that never send a byte (the default admin_timeout, 10 s, is longer
    // than this test needs, so only the cap closes them).
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(lb.admin_addr).await.unwrap());
    }
    assert!(
        wait_until(Duration::from_secs(5), || lb
            .admin
            .stats
            .evicted
            .load(Relaxed)
            >= 200 - cap)
        .await,
        "evicted {}",
        lb.admin.stats.evicted.load(Relaxed)
    );
    assert!(lb.admin.stats.active.load(Relaxed) <= cap);
    // The viewers' listener still accepts and proxies.
    let (id, _s) = read_id(v, lo(1)).await;
    assert_eq!(id, "a");
    // An operator's request is served: the oldest idle connection makes room for it.
    let (resp, closed) = exchange(
        lb.admin_addr,
        "GET /status HTTP/1.0\r\nHost: lb\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed && resp.starts_with("HTTP/1.0 200"), "{resp}");
    assert!(resp.contains("\"virtual_servers\""), "{resp}");
    let (metrics, _) = exchange(
        lb.admin_addr,
        "GET /metrics HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        metrics.contains("edgefleet_admin_connections_evicted_total "),
        "{metrics}"
    );
    // The oldest idle connections are the ones closed.
    let mut buf = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(2), idle[0].read(&mut buf)).await;
    assert!(
        matches!(first, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest idle connection is still open"
    );
    let newest = tokio::time::timeout(Duration::from_millis(200), idle[199].read(&mut buf)).await;
    assert!(newest.is_err(), "the newest idle connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_without_a_request_header_time_out() {
    init();
    use std::sync::atomic::Ordering::Relaxed;
    let (a, _ta) = id_server("a").await;
    let lb = start_lb(&format!(
        "admin_listen = \"127.0.0.1:0\"\nadmin_timeout = 1\n{}",
        vs_toml(vip(), "rr", "", &[(a, 1, "")])
    ))
    .await;
    let limit = Duration::from_secs(5);
    // Silent.
    let (got, closed) = exchange(lb.admin_addr, "", limit).await;
    assert!(
        closed,
        "a silent admin connection stayed open past {limit:?}"
    );
    assert!(!got.contains("200 OK"), "{got}");
    // A header that never ends.
    let (got, closed) =
        exchange(lb.admin_addr, "GET /status HTTP/1.1\r\nHost: lb\r\n", limit).await;
    assert!(closed, "a partial header kept the connection open: {got}");
    assert!(!got.contains("200 OK"), "{got}");
    // Keep-alive after a complete request: answered, then closed once idle.
    let (got, closed) = exchange(
        lb.admin_addr,
        "GET /status HTTP/1.1\r\nHost: lb\r\n\r\n",
        limit,
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        closed,
        "an idle keep-alive connection stayed open past {limit:?}"
    );
    assert!(lb.admin.stats.header_timeouts.load(Relaxed) >= 2);
}

/// An lb started from `toml` and driven by [`lb::run`], as `main` drives it: reloads go
/// through the channel (SIGHUP's), and the balancer stays reachable for status.
struct RunningLb {
    balancer: Arc<lb::Balancer>,
    reload: tokio::sync::mpsc::Sender<lb::LbConfig>,
    _stop: common::shutdown::Trigger,
}

async fn run_lb(toml: &str) -> (RunningLb, SocketAddr) {
    let running = start_lb(toml).await;
    let admin = running.admin_addr;
    let balancer = running.balancer.clone();
    let (trigger, shutdown) = common::shutdown::channel();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(lb::run(running, shutdown, rx));
    (
        RunningLb {
            balancer,
            reload: tx,
            _stop: trigger,
        },
        admin,
    )
}

impl RunningLb {
    async fn reload(&self, toml: &str) {
        let cfg = lb::LbConfig::parse(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        self.reload.send(cfg).await.unwrap();
    }

    fn vs0(&self) -> serde_json::Value {
        lb::admin::status(&self.balancer)["virtual_servers"][0].clone()
    }

    fn checks(&self) -> u64 {
        self.vs0()["real_servers"][0]["checks"].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_delay_loop_alone_retimes_the_checks() {
    init();
    let (a, _ta) = id_server("a").await;
    let v = vip();
    let check = "[virtual_server.real_server.tcp_check]\nconnect_timeout = 1";
    let conf = |delay: &str| {
        format!(
            "admin_listen = \"127.0.0.1:0\"\n[[virtual_server]]\naddress = \"{v}\"\ndelay_loop = {delay}\n[[virtual_server.real_server]]\naddress = \"{a}\"\n{check}\n"
        )
    };
    let (lb, _) = run_lb(&conf("30")).await;
    // One check at start, then none for 30 s.
    assert!(wait_until(Duration::from_secs(2), || lb.checks() == 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lb.checks(), 1, "checks ran faster than delay_loop = 30");
    lb.reload(&conf("0.2")).await;
    let reloaded = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || lb.checks() >= 6).await,
        "after a reload to delay_loop = 0.2, {} checks in {:?}",
        lb.checks(),
        reloaded.elapsed()
    );
    let rs = lb.vs0()["real_servers"][0].clone();
    assert_eq!(
        (rs["state"].as_str(), rs["flips"].as_u64()),
        (Some("UP"), Some(0)),
        "the retimed check kept the server's health: {rs}"
    );
    // And back: the fast checks stop.
    lb.reload(&conf("30")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = lb.checks();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        lb.checks() <= n + 1,
        "checks went on at 0.2 s after a reload to 30 s: {n} -> {}",
        lb.checks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_proxy_copy_applies_to_new_connections_of_a_running_virtual_server() {
    init();
    use tokio::io::AsyncReadExt;
    let (a, _ta) = id_server("a").await;
    let v = vip();
    let conf = |copy: &str| {
        format!(
            "admin_listen = \"127.0.0.1:0\"\nproxy_copy = \"{copy}\"\n{}",
            vs_toml(v, "rr", "", &[(a, 1, "")])
        )
    };
    let (lb, _) = run_lb(&conf("splice")).await;
    assert_eq!(lb.vs0()["proxy_copy"], "splice");
    let (id, mut before) = read_id(v, lo(1)).await;
    assert_eq!(id, "a");
    lb.reload(&conf("buffered")).await;
    assert!(
        wait_until(Duration::from_secs(3), || lb.vs0()["proxy_copy"]
            == "buffered")
        .await,
        "{}",
        lb.vs0()
    );
    // The listener stayed (no rebind): a new viewer gets through, the first one is untouched.
    let (id, _after) = read_id(v, lo(2)).await;
    assert_eq!(id, "a");
    assert_eq!(lb.vs0()["total"], 2);
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), before.read(&mut b))
            .await
            .is_err(),
        "the connection made before the reload was closed"
    );
}

/// `GET /status` on `admin`: the HTTP status line, or the connect error.
async fn admin_get(admin: SocketAddr) -> Result<String, std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await?;
    s.write_all(b"GET /status HTTP/1.0\r\nHost: lb\r\n\r\n")
        .await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .map_err(|_| std::io::Error::other("no answer within 5 s"))??;
    let text = String::from_utf8_lossy(&got);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_admin_listen_moves_the_admin_api_and_a_busy_address_keeps_it() {
    init();
    let (a, _ta) = id_server("a").await;
    let v = vip();
    let conf = |admin: SocketAddr, timeout: &str| {
        format!(
            "admin_listen = \"{admin}\"\nadmin_timeout = {timeout}\n{}",
            vs_toml(v, "rr", "", &[(a, 1, "")])
        )
    };
    let first: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (lb, admin) = run_lb(&conf(first, "10")).await;
    assert_eq!(admin, first);
    assert!(admin_get(first).await.unwrap().contains("200"));
    let second: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    lb.reload(&conf(second, "1")).await;
    assert!(
        wait_until(Duration::from_secs(3), || lb.balancer.config().admin_listen
            == second)
        .await
    );
    assert!(admin_get(second).await.unwrap().contains("200 OK"));
    assert!(
        admin_get(first).await.is_err(),
        "the old admin address still answers"
    );
    // admin_timeout = 1 is in force on the new listener: a silent connection is closed.
    let (_, closed) = exchange(second, "", Duration::from_secs(4)).await;
    assert!(
        closed,
        "a silent admin connection outlived admin_timeout = 1"
    );
    // An address in use: the reload is refused whole, the admin API stays where it is.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    lb.reload(&format!(
        "{}\n[[virtual_server.real_server]]\naddress = \"127.0.0.1:1\"\n",
        conf(taken, "1")
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(admin_get(second).await.unwrap().contains("200 OK"));
    let running = lb.balancer.config();
    assert_eq!(running.admin_listen, second);
    assert_eq!(
        running.virtual_servers[0].real_servers.len(),
        1,
        "a refused reload changed the real servers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_that_cannot_listen_is_tried_again_at_the_next_reload() {
    init();
    let (a, _ta) = id_server("a").await;
    let (b, _tb) = id_server("b").await;
    let v1 = vip();
    let one = vs_toml(v1, "rr", "", &[(a, 1, "")]);
    let lb = start_lb(&one).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let v2 = busy.local_addr().unwrap();
    let two = lb::LbConfig::parse(&format!(
        "admin_listen = \"127.0.0.1:0\"\n{one}\n{}",
        vs_toml(v2, "rr", "", &[(b, 1, "")])
    ))
    .unwrap();
    let err = lb
        .balancer
        .apply(two.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("virtual_server {v2}: cannot listen")),
        "{err}"
    );
    // The first virtual server serves on; the second is not taken for running.
    assert_eq!(read_id(v1, lo(1)).await.0, "a");
    assert_eq!(lb.balancer.config().virtual_servers.len(), 1);
    // The same config once the address is free: the second one starts.
    drop(busy);
    lb.balancer.apply(two).await.unwrap();
    assert_eq!(read_id(v2, lo(1)).await.0, "b");
    assert_eq!(lb.balancer.config().virtual_servers.len(), 2);
}

/// keepalived's HTTP_GET as `http_get`: a real edge's API answering the URL's status keeps it
/// UP (checked on the API port through `connect_port`, the RTMP port stays the forwarded
/// one); a URL answering another status, and a server that never answers, go DOWN with the
/// reason in the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_checks_a_url_and_its_status_code() {
    init();
    let origin = origin().await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let api = |c: &mut edge::config::EdgeConfig| c.api = Some("127.0.0.1:0".parse().unwrap());
    let good = edge_with(&[origin.addr], api).await;
    let wrong = edge_with(&[origin.addr], api).await;
    let (silent_addr, _hold) = silent_server().await;
    let check = |port: u16, path: &str| {
        format!("[virtual_server.real_server.http_get]\nconnect_timeout = 1\nretry = 0\ndelay_before_retry = 0.2\nconnect_port = {port}\n[[virtual_server.real_server.http_get.url]]\npath = \"{path}\"\nstatus_code = 200\n")
    };
    let good_check = check(good.api.unwrap().port(), "/api/v1/streams");
    let wrong_check = check(wrong.api.unwrap().port(), "/api/v1/nothing-here");
    let silent_check = check(silent_addr.port(), "/");
    let v = vip();
    let lb = start_lb(&vs_toml(
        v,
        "rr",
        "",
        &[
            (good.addr, 1, &good_check),
            (wrong.addr, 1, &wrong_check),
            (silent_addr, 1, &silent_check),
        ],
    ))
    .await;
    assert!(
        wait_until(Duration::from_secs(6), || rs_status(&lb, wrong.addr)
            ["state"]
            == "DOWN"
            && rs_status(&lb, silent_addr)["state"] == "DOWN")
        .await,
        "{} {}",
        rs_status(&lb, wrong.addr),
        rs_status(&lb, silent_addr)
    );
    let w = rs_status(&lb, wrong.addr);
    assert!(
        w["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("GET /api/v1/nothing-here: status 404, want 200"),
        "{w}"
    );
    let s = rs_status(&lb, silent_addr);
    assert!(
        s["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("no answer within"),
        "{s}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let g = rs_status(&lb, good.addr);
    assert_eq!(g["state"], "UP", "{g}");
    assert!(g["checks"].as_u64().unwrap_or(0) >= 2, "{g}");
    assert_eq!(g["check"], "http", "{g}");
    // Viewers reach the edge whose API answered.
    for _ in 0..3 {
        let r = play_for(&format!("rtmp://{v}/live/cam"), 1.0).await;
        assert!(r.first_frame.is_some(), "{:?}", r.error);
    }
}
