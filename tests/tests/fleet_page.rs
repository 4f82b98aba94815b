//! The fleet page on lb's admin listener, in a real browser (headless Chromium): it shows
//! the real servers with their state (a drained one as DRAINED) and what each edge's API says
//! (viewers, streams). A screenshot is kept in target/test-artifacts/fleet-page.png.

use edgefleet_tests::*;
use std::net::SocketAddr;
use std::time::Duration;

fn chromium(profile: &TempDir, args: &[&str], url: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .args(args)
    .arg(url);
    c
}

/// Runs headless Chromium on `url` with `args`, a fresh profile per attempt: a start that hangs
/// (seen once in CI with the run's first Chromium) is killed at 40 s and tried once more.
async fn run_chromium(args: &[&str], url: &str) -> (bool, String, String) {
    let mut failed = String::new();
    for attempt in 1..=2 {
        let profile = TempDir::new("chromium");
        let (ok, out, err) =
            run_bounded(chromium(&profile, args, url), Duration::from_secs(40)).await;
        if ok {
            return (ok, out, failed + &err);
        }
        failed += &format!("attempt {attempt}: {err}\n");
        eprintln!("chromium attempt {attempt} failed: {err}");
    }
    (false, String::new(), failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_page_shows_real_servers_and_edges_in_a_browser() {
    common::logging::init_for_tests();
    if !have(
        "chromium",
        "the_fleet_page_shows_real_servers_and_edges_in_a_browser",
    ) {
        return;
    }
    let origin = origin().await;
    let with_api = |c: &mut edge::EdgeConfig| c.api = Some("127.0.0.1:0".parse().unwrap());
    let e1 = edge_with(&[origin.addr], with_api).await;
    let e2 = edge_with(&[origin.addr], with_api).await;
    let (_stop, _pub) = publish_clip(&origin.url("cam"));
    wait_published(&origin.hub, "cam").await;
    let vip = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let rs = |e: &Running| {
        format!(
            "[[virtual_server.real_server]]\naddress = \"{}\"\napi = \"{}\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 1\n",
            e.addr,
            e.api.unwrap()
        )
    };
    let lb = start_lb(&format!(
        "admin_listen = \"{admin}\"\n[[virtual_server]]\naddress = \"{vip}\"\ndelay_loop = 1\n{}{}",
        rs(&e1),
        rs(&e2)
    ))
    .await;
    // Three viewers through the VIP (rr: two on e1, one on e2), then e2 is drained.
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let url = common::rtmp::url::RtmpUrl::parse(&format!("rtmp://{vip}/live/cam")).unwrap();
        viewers.push(tokio::spawn(async move {
            edge::tools::play::play_one(
                &url,
                tokio::time::Instant::now() + Duration::from_secs(40),
                std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            )
            .await
        }));
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            e1.hub.info("live/cam").map(|i| i.players).unwrap_or(0)
                + e2.hub.info("live/cam").map(|i| i.players).unwrap_or(0)
                == 3
        })
        .await
    );
    let (code, _) = http_post(admin, &format!("/drain?vs={vip}&rs={}", e2.addr)).await;
    assert_eq!(code, 200);
    // The page's data: lb reads the edges' APIs while someone watches.
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let (_, body) = http(admin, "GET", "/fleet").await;
            if body.contains("live/cam")
                && body.contains(&e1.addr.to_string())
                && body.contains(&e2.addr.to_string())
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the fleet data never showed both edges");
    eprintln!("/fleet: {ready}");

    let url = format!("http://{admin}/");
    let (ok, dom, err) = run_chromium(&["--dump-dom", "--virtual-time-budget=6000"], &url).await;
    assert!(ok, "chromium failed: {err}");
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page never loaded its data:\n{dom}"
    );
    let row = |addr: SocketAddr| -> String {
        let i = dom
            .find(&format!("data-rs=\"{addr}\""))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{dom}"));
        dom[i..].split("</tr>").next().unwrap().to_string()
    };
    let r1 = row(e1.addr);
    let r2 = row(e2.addr);
    assert!(r1.contains("data-state=\"UP\""), "{r1}");
    assert!(r2.contains("data-state=\"DRAINED\""), "{r2}");
    assert!(r1.contains("live/cam (2,"), "e1's streams: {r1}");
    assert!(r2.contains("live/cam (1,"), "e2's streams: {r2}");

    let shot = artifacts_dir().join("fleet-page.png");
    let arg = format!("--screenshot={}", shot.display());
    let (ok, _, err) = run_chromium(
        &[
            &arg,
            "--window-size=1280,900",
            "--virtual-time-budget=6000",
            "--hide-scrollbars",
        ],
        &url,
    )
    .await;
    assert!(ok && shot.exists(), "no screenshot: {err}");
    eprintln!("screenshot: {}", shot.display());
    drop(lb);
    for v in viewers {
        v.abort();
    }
}

/// POST with an empty body (the admin's write actions).
async fn http_post(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "POST", path).await
}
