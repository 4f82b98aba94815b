//! EdgeFleet's balancer: owns the viewers' address and spreads connections over healthy
//! edges, as LVS + keepalived's health checker do.
//!
//! Layout:
//! - [`config`]: keepalived-shaped TOML, validated with one error per problem.
//! - [`dispatch`]: sans-I/O scheduling (rr, wrr, lc, wlc, sh, mh/Maglev) and persistence.
//! - [`health`]: check thresholds (sans-I/O) and the TCP / RTMP probes.
//! - [`balancer`]: the running state; applies a config at start and on reload.
//! - [`proxy`]: the userspace full-proxy dispatch and its splice/buffered copy.
//! - [`vrrp`]: VRRP v3/v2 ownership of the virtual IPs (keepalived-compatible).
//! - [`admin`]: `/metrics`, `/status`, drain/enable/weight, and `lb status`'s table.
//! - [`accept`]: backoff and throttled warnings shared by the accept loops.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod balancer;
pub mod config;
pub mod dispatch;
pub mod health;
pub mod proxy;
pub mod vrrp;

pub use balancer::Balancer;
pub use config::LbConfig;

use common::shutdown::Shutdown;
use std::sync::Arc;

/// A started balancer: virtual servers listening, checks running, admin API up.
pub struct Running {
    pub balancer: Arc<Balancer>,
    pub admin_addr: std::net::SocketAddr,
    admin: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn stop(&self) {
        self.balancer.stop();
        self.admin.abort();
    }

    /// Graceful stop: VRRP masters hand over first.
    pub async fn shutdown(&self) {
        self.balancer.shutdown().await;
        self.admin.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts everything `config` describes (admin on `admin_listen`; port 0 picks one).
pub async fn start(config: LbConfig) -> anyhow::Result<Running> {
    let admin_listen = config.admin_listen;
    let balancer = Balancer::new(config.clone());
    balancer.apply(config).await.map_err(anyhow::Error::msg)?;
    let listener = std::net::TcpListener::bind(admin_listen)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_listen}: {e}"))?;
    let admin_addr = listener.local_addr()?;
    let admin = admin::serve(balancer.clone(), listener)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_addr}: {e}"))?;
    Ok(Running {
        balancer,
        admin_addr,
        admin,
    })
}

/// Runs until `shutdown`; `reload` yields new configs (SIGHUP in `main`).
pub async fn run(
    running: Running,
    mut shutdown: Shutdown,
    mut reload: tokio::sync::mpsc::Receiver<LbConfig>,
) {
    loop {
        tokio::select! {
            _ = shutdown.fired() => break,
            Some(cfg) = reload.recv() => {
                match running.balancer.apply(cfg).await {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload applied with errors"),
                }
            }
        }
    }
    running.shutdown().await;
}
