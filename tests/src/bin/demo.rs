//! `cargo run --release --bin demo`: a whole EdgeFleet fleet in one process — an origin, two
//! edges pulling from it, a publisher looping the committed test clip, and an lb (PROXY, rr,
//! rtmp_check) on 127.0.0.1:1935 in front of the edges — with the URLs to play printed.
//! Needs nothing installed and no config written. Ctrl-C stops it.

use clap::Parser;
use edge::{EdgeConfig, EdgeServer};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "demo", about = "Run a demo EdgeFleet fleet on this machine")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    addr: IpAddr,
    /// Origin port; the edges take the next two.
    #[arg(long, default_value_t = 19350)]
    port: u16,
    /// Port of the balancer's virtual server (viewers connect here).
    #[arg(long, default_value_t = 1935)]
    lb_port: u16,
    /// Port of the balancer's HTTP virtual server (HTTP-FLV and HLS through the balancer).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Port of the balancer's admin API (`lb status --admin 127.0.0.1:PORT`).
    #[arg(long, default_value_t = 9180)]
    admin_port: u16,
    /// Stream name the publisher uses.
    #[arg(long, default_value = "demo")]
    stream: String,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
}

async fn bind(config: EdgeConfig, what: &str) -> anyhow::Result<EdgeServer> {
    let listen = config.listen;
    EdgeServer::bind(config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen} for the {what}: {e} (another demo running? try --port)"
        )
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    let args = Args::parse();
    let at = |p: u16| SocketAddr::new(args.addr, p);
    let origin = bind(EdgeConfig::origin(at(args.port)), "origin").await?;
    let origin_addr = origin.local_addr();
    // Each edge serves its HTTP API (streams, clients, /metrics) on port + 10 and + 11; the
    // balancer's fleet page reads them.
    // ... and HTTP-FLV / HLS on port + 20 and + 21, behind the balancer's HTTP virtual server.
    let with_api = |mut c: EdgeConfig, port: u16| {
        c.api = Some(at(port));
        edgefleet_tests::with_http(&mut c);
        if let Some(h) = c.http.as_mut() {
            h.listen = at(port + 10);
        }
        c
    };
    let edge1 = bind(
        with_api(
            EdgeConfig::edge(at(args.port + 1), &[origin_addr]),
            args.port + 10,
        ),
        "first edge",
    )
    .await?;
    let edge2 = bind(
        with_api(
            EdgeConfig::edge(at(args.port + 2), &[origin_addr]),
            args.port + 11,
        ),
        "second edge",
    )
    .await?;
    let apis = [edge1.api_addr(), edge2.api_addr()];
    let https = [edge1.http_addr(), edge2.http_addr()];
    let (e1, e2) = (edge1.local_addr(), edge2.local_addr());
    let hubs = [
        ("origin", origin.hub()),
        ("edge1", edge1.hub()),
        ("edge2", edge2.hub()),
    ];

    let (trigger, shutdown) = common::shutdown::channel();
    let mut tasks = vec![
        tokio::spawn(origin.run(trigger.subscribe())),
        tokio::spawn(edge1.run(trigger.subscribe())),
        tokio::spawn(edge2.run(trigger.subscribe())),
    ];
    let publish_url = format!("rtmp://{origin_addr}/live/{}", args.stream);
    let url = common::rtmp::url::RtmpUrl::parse(&publish_url).map_err(anyhow::Error::msg)?;
    let tags = edgefleet_tests::clip_tags();
    let pub_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // Retry until the origin takes it; it is in this process, so that is at once.
        loop {
            match edge::tools::publish::publish(&tags, &url, true, pub_shutdown.clone()).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "demo publisher: retrying in 1 s"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }));

    let vip = at(args.lb_port);
    let mut lb_toml = format!(
        "admin_listen = \"{}\"\n[[virtual_server]]\naddress = \"{vip}\"\nlb_algo = \"rr\"\nlb_kind = \"PROXY\"\ndelay_loop = 2\n",
        at(args.admin_port)
    );
    for (edge, api) in [(e1, apis[0]), (e2, apis[1])] {
        let api = api.map(|a| format!("api = \"{a}\"\n")).unwrap_or_default();
        lb_toml.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{edge}\"\n{api}[virtual_server.real_server.rtmp_check]\nconnect_timeout = 3\nretry = 1\ndelay_before_retry = 1\nstream = \"live/{}\"\n",
            args.stream
        ));
    }
    // HTTP: one viewer's requests stay on one edge for a while (persistence, as keepalived's
    // persistence_timeout): edges cut the same HLS segments, but one that starts packaging
    // now cannot serve the segments another cut before it started.
    let http_vip = at(args.http_port);
    lb_toml.push_str(&format!(
        "[[virtual_server]]\naddress = \"{http_vip}\"\nlb_algo = \"rr\"\nlb_kind = \"PROXY\"\ndelay_loop = 2\npersistence_timeout = 60\n"
    ));
    for h in https.iter().flatten() {
        lb_toml.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{h}\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 3\n"
        ));
    }
    let lb_config =
        lb::LbConfig::parse(&lb_toml).map_err(|e| anyhow::anyhow!("demo lb config: {e}"))?;
    let balancer = lb::start(lb_config).await.map_err(|e| {
        anyhow::anyhow!("{e:#} (another demo running? try --lb-port / --admin-port)")
    })?;

    println!();
    println!("EdgeFleet demo fleet is running:");
    println!("  origin  rtmp://{origin_addr}/live   (publisher: the test clip, looping)");
    println!("  edge1   rtmp://{e1}/live   (pulls from the origin on demand)");
    println!("  edge2   rtmp://{e2}/live");
    println!("  lb      rtmp://{vip}/live   (PROXY, rr, rtmp_check over edge1 and edge2)");
    println!("  lb      http://{http_vip}/live   (HTTP-FLV and HLS of edge1 and edge2)");
    println!();
    println!("Play it through the balancer, for example:");
    println!("  ffplay rtmp://{vip}/live/{}", args.stream);
    println!("  ffplay http://{http_vip}/live/{}.flv", args.stream);
    println!(
        "  ffplay http://{http_vip}/live/{}.m3u8   (LL-HLS; Safari or hls.js play it too)",
        args.stream
    );
    println!(
        "  cargo run --release --bin edge -- play rtmp://{vip}/live/{} --clients 100 --duration 10",
        args.stream
    );
    println!("Look at the balancer:");
    println!(
        "  cargo run --release --bin lb -- status --admin {}",
        balancer.admin_addr
    );
    println!("  curl -s http://{}/metrics", balancer.admin_addr);
    println!(
        "  the fleet page: http://{}/   (VRRP, real servers, viewers per edge)",
        balancer.admin_addr
    );
    if let Some(a) = apis[0] {
        println!("  cargo run --release --bin edge -- status --api {a}   (edge1's streams)");
    }
    println!();
    println!("Status every 10 s below; Ctrl-C stops.");

    let status = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            for (name, hub) in &hubs {
                for s in hub.list() {
                    tracing::info!(server = name, stream = %s.key, players = s.players, source = s.has_source, frames_in = s.frames_in, "status");
                }
            }
        }
    });
    match args.duration {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(d)) => {}
                _ = common::signals::terminated() => {}
            }
        }
        None => common::signals::terminated().await,
    }
    println!("stopping the demo fleet");
    trigger.fire();
    balancer.stop();
    status.abort();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}
