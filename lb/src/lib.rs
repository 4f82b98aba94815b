//! EdgeFleet's balancer: owns the viewers' address and spreads connections over healthy
//! edges, as LVS + keepalived's health checker do.
//!
//! Layout:
//! - [`config`]: keepalived-shaped TOML, validated with one error per problem.
//! - [`dispatch`]: sans-I/O scheduling (rr, wrr, lc, wlc, sh, mh/Maglev) and persistence.
//! - [`health`]: check thresholds (sans-I/O) and the TCP / RTMP probes.
//! - [`balancer`]: the running state; applies a config at start and on reload.
//! - [`forward`]: the forwarding methods behind one seam: PROXY (wraps [`proxy`]) and DR
//!   (direct routing through an nftables netdev-ingress table).
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
pub mod forward;
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
    /// The admin endpoint (its counters; the token a reload replaces).
    pub admin: Arc<admin::Admin>,
    admin_task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn stop(&self) {
        self.balancer.stop();
        self.admin_task.abort();
    }

    /// Graceful stop: VRRP masters hand over first.
    pub async fn shutdown(&self) {
        self.balancer.shutdown().await;
        self.admin_task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts everything `config` describes (admin on `admin_listen`; port 0 picks one). The
/// admin token comes from `admin_token_file` or `EDGEFLEET_LB_ADMIN_TOKEN`; a non-loopback
/// `admin_listen` without one is refused (see [`admin::auth`]).
pub async fn start(config: LbConfig) -> anyhow::Result<Running> {
    let token = admin::auth::load(&config)?;
    log_warnings(&config);
    match &token {
        Some((_, source)) => {
            tracing::info!(%source, "admin write actions need the bearer token")
        }
        None => tracing::info!(
            "admin API on loopback without a token: write actions are open to local users"
        ),
    }
    let admin_listen = config.admin_listen;
    let opts = admin::AdminOptions {
        timeout: config.admin_timeout,
        token: token.map(|(t, _)| t),
    };
    let problems = forward::preflight(&config);
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    // Tables of a previous lb that was killed would keep forwarding: remove them first.
    forward::dr::sweep_stale();
    let balancer = Balancer::new(config.clone());
    balancer.apply(config).await.map_err(anyhow::Error::msg)?;
    let listener = std::net::TcpListener::bind(admin_listen)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_listen}: {e}"))?;
    let admin_addr = listener.local_addr()?;
    let (admin, admin_task) = admin::serve(balancer.clone(), listener, opts)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_addr}: {e}"))?;
    Ok(Running {
        balancer,
        admin_addr,
        admin,
        admin_task,
    })
}

/// Runs until `shutdown`; `reload` yields new configs (SIGHUP in `main`). A reload re-reads
/// the admin token; if that fails, the whole reload is refused and the running one stays.
///
/// systemd (all no-ops outside it): `READY=1` after each reload, applied or refused (`main`
/// sends `RELOADING=1` when the SIGHUP arrives), `STOPPING=1` at shutdown, and `WATCHDOG=1`
/// every half `WatchdogSec=` from this loop — the one that applies reloads — after
/// [`Balancer::alive`] took the running state's locks: a wedged reload, a deadlocked
/// scheduler lock or a starved runtime stop the pings and systemd restarts lb.
pub async fn run(
    running: Running,
    mut shutdown: Shutdown,
    mut reload: tokio::sync::mpsc::Receiver<LbConfig>,
) {
    let watchdog = common::sd_notify::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.unwrap_or(std::time::Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.fired() => break,
            _ = tick.tick(), if watchdog.is_some() => {
                if running.balancer.alive() {
                    common::sd_notify::watchdog();
                }
            }
            Some(cfg) = reload.recv() => {
                apply_reload(&running, cfg).await;
                common::sd_notify::ready();
            }
        }
    }
    common::sd_notify::stopping();
    running.shutdown().await;
}

/// What `lb --check` prints as `warning:` lines (interfaces missing on this machine).
fn log_warnings(config: &LbConfig) {
    for w in config.warnings(config::interface_exists) {
        tracing::warn!(key = %w.key, "warning: {w}");
    }
}

async fn apply_reload(running: &Running, cfg: LbConfig) {
    let token = match admin::auth::load(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(problem = %e, "reload refused: the running configuration stays");
            return;
        }
    };
    {
        let old = running.balancer.config.read().unwrap();
        if old.admin_listen != cfg.admin_listen || old.admin_timeout != cfg.admin_timeout {
            tracing::warn!(admin_listen = %cfg.admin_listen, "admin_listen and admin_timeout change only with a restart; the admin API keeps its current ones");
        }
    }
    running.admin.set_token(token.map(|(t, _)| t));
    log_warnings(&cfg);
    match running.balancer.apply(cfg).await {
        Ok(()) => tracing::info!("configuration reloaded"),
        Err(e) => tracing::error!(error = %e, "reload applied with errors"),
    }
}
