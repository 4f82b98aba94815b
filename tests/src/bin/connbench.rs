//! `connbench`: short-connection rate through a TCP proxy (for tests/bench/proxy).
//!
//! - `connbench serve ADDR`: accepts, writes 1 byte, closes. Runs until killed.
//! - `connbench load ADDR [--concurrency N] [--duration S]`: N loops of connect, read the
//!   byte, close, for S seconds; prints `{"connections":N,"errors":N,"per_second":F}`.
//! - `connbench probe ADDR [--timeout-ms T] [--deadline S]`: connects every few ms until one
//!   connect succeeds; prints `{"success_unix_ms":N}` (failover measurements).
//!
//! Only loopback targets, or lab addresses in 198.18.0.0/15, are accepted.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Serve {
        addr: SocketAddr,
    },
    Probe {
        addr: SocketAddr,
        #[arg(long, default_value_t = 20)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 15.0)]
        deadline: f64,
    },
    Load {
        addr: SocketAddr,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

fn allowed(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback() || (v4.octets()[0] == 198 && v4.octets()[1] & 0xfe == 18)
        }
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Probe {
            addr,
            timeout_ms,
            deadline,
        } => {
            anyhow::ensure!(
                allowed(addr),
                "connbench only targets loopback or 198.18.0.0/15, not {addr}"
            );
            let end = Instant::now() + Duration::from_secs_f64(deadline.clamp(0.1, 120.0));
            while Instant::now() < end {
                let t = Duration::from_millis(timeout_ms.clamp(1, 5000));
                if let Ok(Ok(_)) =
                    tokio::time::timeout(t, tokio::net::TcpStream::connect(addr)).await
                {
                    let ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_millis();
                    println!("{{\"success_unix_ms\":{ms}}}");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::bail!("no successful connect to {addr} within {deadline} s")
        }
        Cmd::Serve { addr } => {
            let l = tokio::net::TcpListener::bind(addr).await?;
            loop {
                let (mut s, _) = l.accept().await?;
                tokio::spawn(async move {
                    let _ = s.write_all(b"x").await;
                });
            }
        }
        Cmd::Load {
            addr,
            concurrency,
            duration,
        } => {
            anyhow::ensure!(
                addr.ip().is_loopback(),
                "connbench only targets loopback, not {addr}"
            );
            let end = Instant::now() + Duration::from_secs_f64(duration.clamp(0.1, 600.0));
            let ok = Arc::new(AtomicU64::new(0));
            let err = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..concurrency.clamp(1, 4096))
                .map(|_| {
                    let (ok, err) = (ok.clone(), err.clone());
                    tokio::spawn(async move {
                        while Instant::now() < end {
                            let r = async {
                                let mut s = tokio::net::TcpStream::connect(addr).await?;
                                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                                let mut b = [0u8; 1];
                                s.read_exact(&mut b).await?;
                                Ok::<_, std::io::Error>(())
                            };
                            match tokio::time::timeout(Duration::from_secs(5), r).await {
                                Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                                _ => err.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            let secs = start.elapsed().as_secs_f64();
            let n = ok.load(Ordering::Relaxed);
            println!(
                "{{\"connections\":{n},\"errors\":{},\"per_second\":{:.1}}}",
                err.load(Ordering::Relaxed),
                n as f64 / secs
            );
            Ok(())
        }
    }
}
