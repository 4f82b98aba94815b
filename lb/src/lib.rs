//! EdgeFleet's balancer: owns the viewers' address and spreads connections over healthy
//! edges, as LVS + keepalived's health checker do.
//!
//! Layout:
//! - [`config`]: keepalived-shaped TOML, validated with one error per problem.
//! - [`dispatch`]: sans-I/O scheduling (rr, wrr, lc, wlc, sh, mh/Maglev) and persistence.
//! - [`health`]: check thresholds (sans-I/O) and the TCP / RTMP probes.
//! - [`state`]: the running state at the bottom (virtual and real servers, their scheduler,
//!   health and counters); the workers below read it, nothing in it reaches up.
//! - [`reload`]: a reload as data: the list of changes from the running config to a new one.
//! - [`balancer`]: the workers on the running state (forwarding methods, checks, VRRP
//!   instances), and carrying out a plan on them, at start and on reload.
//! - [`forward`]: the forwarding methods behind one seam: PROXY (wraps [`proxy`]) and DR
//!   (direct routing through an nftables netdev-ingress table).
//! - [`proxy`]: the userspace full-proxy dispatch and its splice/buffered copy.
//! - [`vrrp`]: VRRP v3/v2 ownership of the virtual IPs (keepalived-compatible).
//! - [`admin`]: `/metrics`, `/status`, drain/enable/weight, and `lb status`'s table.
//! - [`accept`]: backoff and throttled warnings shared by the accept loops.
//! - [`cli`]: the command line (clap), shared by `main.rs` and the man page.
#![forbid(unsafe_code)]

pub mod accept;
pub mod admin;
pub mod balancer;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod forward;
pub mod health;
pub mod import;
pub mod proxy;
pub mod reload;
pub mod script;
pub mod state;
pub mod vrrp;

pub use balancer::Balancer;
pub use config::LbConfig;

use common::shutdown::Shutdown;
use std::sync::Arc;

/// A started balancer: virtual servers listening, checks running, admin API up.
pub struct Running {
    pub balancer: Arc<Balancer>,
    /// Where the admin API listened at start (a reload may move it: [`admin::Admin::local_addr`]).
    pub admin_addr: std::net::SocketAddr,
    /// The admin endpoint (its counters, address, timeout, and the token a reload replaces).
    pub admin: Arc<admin::Admin>,
}

impl Running {
    pub fn stop(&self) {
        self.balancer.stop();
        self.admin.stop();
    }

    /// Graceful stop: VRRP masters hand over first.
    pub async fn shutdown(&self) {
        self.balancer.shutdown().await;
        self.admin.stop();
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
    balancer.apply(config).await?;
    let listener = std::net::TcpListener::bind(admin_listen)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_listen}: {e}"))?;
    let admin_addr = listener.local_addr()?;
    let admin = admin::serve(balancer.clone(), listener, opts)
        .map_err(|e| anyhow::anyhow!("admin_listen {admin_addr}: {e}"))?;
    Ok(Running {
        balancer,
        admin_addr,
        admin,
    })
}

/// Runs until `shutdown`; `reload` yields new configs (SIGHUP in `main`). A reload is planned
/// ([`reload::plan`]), each change logged, then carried out. It re-reads the admin token, and
/// binds a new `admin_listen` before anything changes: if either fails, the whole reload is
/// refused and the running config (admin address included) stays.
///
/// systemd (all no-ops outside it): `READY=1` after each reload, applied or refused (`main`
/// sends `RELOADING=1` when the SIGHUP arrives), `STOPPING=1` at shutdown, and `WATCHDOG=1`
/// every half `WatchdogSec=` from this loop — the one that applies reloads — after
/// [`Balancer::alive`] took the running state's locks: a wedged reload, a deadlocked
/// scheduler lock or a starved runtime stop the pings and systemd restarts lb.
pub async fn run(
    mut running: Running,
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
                apply_reload(&mut running, cfg).await;
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

/// Carries out one reload: the token and a new admin address first (either failing refuses
/// the reload whole), then every change logged, then the admin API's changes here and the
/// rest by [`Balancer::carry_out`].
async fn apply_reload(running: &mut Running, mut cfg: LbConfig) {
    let token = match admin::auth::load(&cfg) {
        Ok(t) => t.map(|(t, _)| t),
        Err(e) => {
            tracing::error!(problem = %e, "reload refused: the running configuration stays");
            return;
        }
    };
    let mut changes = reload::plan(&running.balancer.config(), &cfg);
    if let Some((old, new)) = reload::secret_change(running.admin.token().as_ref(), token.as_ref())
    {
        changes.push(reload::Change::Global {
            key: reload::GlobalKey::AdminToken,
            old,
            new,
        });
    }
    let has = |k: reload::GlobalKey| {
        changes
            .iter()
            .any(|c| matches!(c, reload::Change::Global { key, .. } if *key == k))
    };
    // Bound before anything changes: an address that cannot be had leaves all as it runs.
    let listener = match has(reload::GlobalKey::AdminListen) {
        false => None,
        true => match std::net::TcpListener::bind(cfg.admin_listen) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(admin_listen = %cfg.admin_listen, error = %e, serving = %running.admin.local_addr(), "reload refused: cannot listen on the new admin_listen {}; the running configuration stays, the admin API on its current address", cfg.admin_listen);
                return;
            }
        },
    };
    log_warnings(&cfg);
    for c in &changes {
        reload::log(c);
    }
    running.admin.set_token(token);
    if has(reload::GlobalKey::AdminTimeout) {
        running.admin.set_timeout(cfg.admin_timeout);
    }
    if let Some(l) = listener {
        match running.admin.rebind(l) {
            Ok(addr) => running.admin_addr = addr,
            Err(e) => {
                tracing::error!(admin_listen = %cfg.admin_listen, error = %e, "cannot serve the admin API on the new admin_listen {}; it stays on {}", cfg.admin_listen, running.admin.local_addr());
                // What runs is the old address: the next reload tries the new one again.
                cfg.admin_listen = running.balancer.config().admin_listen;
            }
        }
    }
    let n = changes.len();
    match running.balancer.carry_out(&changes, cfg).await {
        Ok(()) => tracing::info!(changes = n, "configuration reloaded"),
        Err(e) => tracing::error!(error = %e, "reload applied with errors"),
    }
}
