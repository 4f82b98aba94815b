//! `registrybench`: what the stream registry (issue 13) costs and buys, on loopback with a
//! real etcd (run by `tests/bench/registry`).
//!
//! - Cold-edge first frame: for each sample a fresh edge (in this process, no pull yet)
//!   gets one player of a stream published on an origin; the time from the player's
//!   connect to its first video message. Edges alternate: static `origin = [ORIGIN]`, or
//!   `[cluster] registry` alone (a lookup in etcd before the pull). `mw_latency = 0` on the
//!   edges so that merged writes do not hide the difference.
//! - Move: a viewer on a registry-only edge; the publisher leaves origin B and publishes to
//!   origin A (then back); the time from the new publish being in place on its origin to
//!   the next media message at the viewer, which stays connected throughout.
//!
//! Prints markdown tables. Bounded: every wait has a deadline.

use clap::Parser;
use common::rtmp::chunk::msg_type;
use common::rtmp::client::RtmpClient;
use common::rtmp::url::RtmpUrl;
use edge::EdgeConfig;
use edgefleet_tests::etcd::Etcd;
use edgefleet_tests::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Stream registry: cold-edge first frame (registry vs static) and move time")]
struct Args {
    /// Cold-edge samples per kind.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Publisher moves.
    #[arg(long, default_value_t = 10)]
    moves: usize,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Connect, play, first video message.
async fn first_frame(url: &str) -> Result<Duration, String> {
    let url = RtmpUrl::parse(url).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut c = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    c.play(&url.stream, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = c.read_message().await.map_err(|e| e.to_string())?;
            if m.type_id == msg_type::VIDEO {
                return Ok(t0.elapsed());
            }
        }
    })
    .await
    .map_err(|_| "no video within 10 s".to_string())?
}

fn edge_config(etcd: &Etcd, origin: Option<std::net::SocketAddr>) -> EdgeConfig {
    let mut toml = "listen = \"127.0.0.1:0\"\nmode = \"remote\"\nmw_latency = 0\n".to_string();
    match origin {
        Some(o) => toml.push_str(&format!("origin = [\"{o}\"]\n")),
        None => toml.push_str(&format!(
            "[cluster]\nregistry = [\"http://{}\"]\n",
            etcd.endpoint()
        )),
    }
    EdgeConfig::parse(&toml).expect("bench edge config")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        std::process::Command::new("sh")
            .args(["-c", "command -v etcd"])
            .stdout(std::process::Stdio::null())
            .status()?
            .success(),
        "etcd is not installed (apt-get install etcd-server)"
    );
    let etcd = Etcd::start();
    etcd.ready().await;
    let cluster = etcd.cluster(5);
    let c2 = cluster.clone();
    let origin_b = origin_with(|c| c.cluster = Some(c2)).await;
    let c3 = cluster.clone();
    let origin_a = origin_with(|c| c.cluster = Some(c3)).await;

    // Cold-edge first frame.
    let (_stop, _pub) = publish_clip(&origin_b.url("cold"));
    wait_published(&origin_b.hub, "cold").await;
    anyhow::ensure!(
        etcd.wait_registered("live/cold", 1).await,
        "live/cold was not registered"
    );
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..args.samples.clamp(1, 10_000) * 2 {
        let kind = i % 2;
        let cfg = edge_config(&etcd, (kind == 0).then_some(origin_b.addr));
        let edge = start(cfg).await;
        let t = first_frame(&edge.url("cold"))
            .await
            .map_err(anyhow::Error::msg)?;
        times[kind].push(t);
        edge.stop().await;
    }
    println!("| cold edge, first video frame | samples | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    let mut p99 = [0.0; 2];
    for (kind, name) in [(0, "static origin"), (1, "registry lookup (etcd)")] {
        let t = &mut times[kind];
        t.sort();
        p99[kind] = pct(t, 0.99);
        println!(
            "| {name} | {} | {:.2} | {:.2} |",
            t.len(),
            pct(t, 0.5),
            pct(t, 0.99)
        );
    }
    println!(
        "\nregistry - static at p99: {:+.2} ms (target <= 20 ms: {})\n",
        p99[1] - p99[0],
        if p99[1] - p99[0] <= 20.0 {
            "PASS"
        } else {
            "FAIL"
        }
    );

    // Move: the publisher goes B -> A -> B ...
    let edge = start(edge_config(&etcd, None)).await;
    let origins = [&origin_b, &origin_a];
    let mut publisher = Some(publish_clip(&origins[0].url("move")));
    wait_published(&origins[0].hub, "move").await;
    anyhow::ensure!(etcd.wait_registered("live/move", 1).await);
    let last_media: Arc<Mutex<Option<Instant>>> = Arc::default();
    let closed: Arc<Mutex<Option<String>>> = Arc::default();
    let url = RtmpUrl::parse(&edge.url("move")).map_err(anyhow::Error::msg)?;
    let (lm, cl) = (last_media.clone(), closed.clone());
    let viewer = tokio::spawn(async move {
        let end = Instant::now() + Duration::from_secs(600);
        let mut c = match RtmpClient::connect_url(&url, Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => return *cl.lock().unwrap() = Some(e.to_string()),
        };
        if let Err(e) = c.play(&url.stream, Duration::from_secs(5)).await {
            return *cl.lock().unwrap() = Some(e.to_string());
        }
        while Instant::now() < end {
            match c.read_message().await {
                Ok(m) if matches!(m.type_id, msg_type::AUDIO | msg_type::VIDEO) => {
                    *lm.lock().unwrap() = Some(Instant::now())
                }
                Ok(_) => {}
                Err(e) => return *cl.lock().unwrap() = Some(e.to_string()),
            }
        }
    });
    let wait_media_after = |t: Instant| {
        let lm = last_media.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Some(m) = *lm.lock().unwrap() {
                    if m > t {
                        return Some(m - t);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }
    };
    anyhow::ensure!(
        wait_media_after(Instant::now()).await.is_some(),
        "no media before the moves"
    );
    let mut moves = Vec::new();
    for i in 0..args.moves.clamp(1, 1000) {
        let to = origins[(i + 1) % 2];
        drop(publisher.take());
        publisher = Some(publish_clip(&to.url("move")));
        wait_published(&to.hub, "move").await;
        let published = Instant::now();
        let Some(d) = wait_media_after(published).await else {
            anyhow::bail!("move {}: no media within 15 s", i + 1);
        };
        eprintln!(
            "move {}: media at the viewer {:.1} ms after the republish",
            i + 1,
            d.as_secs_f64() * 1000.0
        );
        moves.push(d);
        // Let it play a little on the new origin.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(e) = closed.lock().unwrap().clone() {
        anyhow::bail!("the viewer was disconnected: {e}");
    }
    viewer.abort();
    moves.sort();
    println!("| publisher moves to another origin | moves | p50 ms | max ms | viewer |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| republish -> media at the edge's viewer | {} | {:.1} | {:.1} | stayed connected |",
        moves.len(),
        pct(&moves, 0.5),
        moves.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "\nmax move: {:.1} ms (target < 1000 ms: {})",
        moves.last().unwrap().as_secs_f64() * 1000.0,
        if *moves.last().unwrap() < Duration::from_secs(1) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    Ok(())
}
