//! The running state, at the bottom of lb: the config in force, one [`VsRuntime`] per virtual
//! server (scheduler, real servers with their health and counters, what its forwarding method
//! reads per connection) and one [`RsRuntime`] per real server.
//!
//! The workers above read and update it: the forwarding methods (`forward/`, `proxy/`) pick
//! and count through it, the health checks report into it, VRRP is handed a closure over
//! [`LbState::no_real_server_available`], the admin API renders it, and `balancer` changes it
//! when a reload plan (`reload`) says so. This room imports only config, dispatch, health and
//! the accept loops' log throttle: it starts no task, opens no socket, and never reaches into
//! `forward/`, `proxy/`, `vrrp/` or `admin/`.

use crate::accept::Throttle;
use crate::config::{CopyMode, LbConfig, RsConfig, VsConfig};
use crate::dispatch::Scheduler;
use crate::health::{Flip, HealthState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::task::AbortHandle;
use tracing::{info, warn};

/// Counters and state of one real server, kept across reloads while it stays configured.
pub struct RsRuntime {
    pub addr: SocketAddr,
    pub cfg: Mutex<RsConfig>,
    pub health: Mutex<HealthState>,
    /// Why the last check failed (for status), empty when it succeeded.
    pub last_error: Mutex<String>,
    /// Weight set through the admin API (`weight`); cleared by `enable` and by a reload
    /// that changes the configured weight.
    pub weight_override: Mutex<Option<u32>>,
    /// Weight set by a `misc_dynamic` check (exit code - 2); cleared when the check changes.
    pub dynamic_weight: Mutex<Option<u32>>,
    /// Drained by the operator (`drain`): no new connections whatever the weight, until
    /// `enable` or `weight`. Kept across reloads, not across restarts (the config's
    /// `weight = 0` is the persistent way), so status can tell the two apart.
    pub drained: AtomicBool,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub flips: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Health checks run, and those that failed (proxy connect failures are not counted).
    pub checks: AtomicU64,
    pub check_failures: AtomicU64,
    /// The running check task, if the server has a check (started by `balancer`).
    checker: Mutex<Option<AbortHandle>>,
}

impl RsRuntime {
    /// A server as configured: UP (as in keepalived), no counts, no check running yet.
    pub fn new(cfg: &RsConfig) -> RsRuntime {
        RsRuntime {
            addr: cfg.address,
            health: Mutex::new(HealthState::new(retry_of(cfg))),
            cfg: Mutex::new(cfg.clone()),
            last_error: Mutex::new(String::new()),
            weight_override: Mutex::new(None),
            dynamic_weight: Mutex::new(None),
            drained: AtomicBool::new(false),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            flips: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            check_failures: AtomicU64::new(0),
            checker: Mutex::new(None),
        }
    }

    /// The weight the scheduler uses: 0 while drained, else the admin override, else what a
    /// `misc_dynamic` check set, else the config's.
    pub fn weight(&self) -> u32 {
        if self.is_drained() {
            return 0;
        }
        let dynamic = *self.dynamic_weight.lock().unwrap();
        self.weight_override
            .lock()
            .unwrap()
            .or(dynamic)
            .unwrap_or(self.cfg.lock().unwrap().weight)
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.health.lock().unwrap().is_up()
    }

    /// Back to a fresh health state for the configured check (a reload changed the check).
    pub fn reset_health(&self) {
        let retry = retry_of(&self.cfg.lock().unwrap());
        *self.health.lock().unwrap() = HealthState::new(retry);
        *self.dynamic_weight.lock().unwrap() = None;
    }

    /// Records the check task now running for this server, stopping any previous one.
    pub fn set_checker(&self, task: AbortHandle) {
        if let Some(old) = self.checker.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    pub fn stop_checker(&self) {
        if let Some(h) = self.checker.lock().unwrap().take() {
            h.abort();
        }
    }
}

fn retry_of(cfg: &RsConfig) -> u32 {
    cfg.check.as_ref().map(|c| c.retry).unwrap_or(0)
}

#[derive(Default)]
pub struct VsStats {
    pub total: AtomicU64,
    pub active: AtomicU64,
    /// Connections refused: no server available and no sorry server, or max_connections.
    pub refused: AtomicU64,
    pub sorry: AtomicU64,
    /// Rate limit of the warning for connections refused because this process is out of
    /// file descriptors.
    pub local_errors: Mutex<Throttle>,
}

/// One virtual server's running state. Its forwarding method (a PROXY listener or a DR
/// datapath) is not in here: `balancer` holds it, and it reads this.
pub struct VsRuntime {
    pub address: SocketAddr,
    pub cfg: RwLock<VsConfig>,
    pub sched: Mutex<Scheduler>,
    pub servers: Mutex<Vec<Arc<RsRuntime>>>,
    pub stats: VsStats,
    /// How the PROXY method copies a new connection's bytes (the top-level `proxy_copy`,
    /// read per connection so a reload applies to the next one).
    copy: RwLock<CopyMode>,
    /// Woken when anything a datapath programs from changes (health, weight, membership,
    /// config), so DR re-renders its tables at once instead of at its next tick.
    pub changed: tokio::sync::Notify,
}

impl VsRuntime {
    /// A virtual server as configured, with no real servers yet (see [`VsRuntime::set_servers`]).
    pub fn new(cfg: &VsConfig, copy: CopyMode) -> VsRuntime {
        VsRuntime {
            address: cfg.address,
            cfg: RwLock::new(cfg.clone()),
            sched: Mutex::new(Scheduler::new(cfg.algo, cfg.persistence)),
            servers: Mutex::new(Vec::new()),
            stats: VsStats::default(),
            copy: RwLock::new(copy),
            changed: tokio::sync::Notify::new(),
        }
    }

    pub fn server(&self, addr: SocketAddr) -> Option<Arc<RsRuntime>> {
        self.servers
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.addr == addr)
            .cloned()
    }

    /// The copy mode for a connection accepted now.
    pub fn copy_mode(&self) -> CopyMode {
        *self.copy.read().unwrap()
    }

    pub fn set_copy_mode(&self, mode: CopyMode) {
        *self.copy.write().unwrap() = mode;
    }

    /// Chooses a real server, or the sorry server when none is available.
    pub fn pick(&self, client: IpAddr, exclude: &[SocketAddr]) -> Option<(SocketAddr, bool)> {
        let mut s = self.sched.lock().unwrap();
        if let Some(a) = s.pick(client, Instant::now(), exclude) {
            return Some((a, false));
        }
        if s.any_available() {
            return None; // all available ones were excluded (failed just now)
        }
        drop(s);
        self.cfg.read().unwrap().sorry_server.map(|a| (a, true))
    }

    pub fn connected(&self, addr: SocketAddr, client: IpAddr) {
        self.sched.lock().unwrap().connected(addr, client);
    }

    pub fn closed(&self, addr: SocketAddr, client: IpAddr) {
        self.sched
            .lock()
            .unwrap()
            .closed(addr, client, Instant::now());
    }

    /// Feeds one check result (or a proxy connect failure) into a server's health.
    pub fn report(&self, rs: &RsRuntime, result: Result<(), String>) {
        let flip = {
            let mut h = rs.health.lock().unwrap();
            match &result {
                Ok(()) => h.success(),
                Err(_) => h.failure(),
            }
        };
        *rs.last_error.lock().unwrap() = result.clone().err().unwrap_or_default();
        if let Some(f) = flip {
            rs.flips.fetch_add(1, Ordering::Relaxed);
            self.sched.lock().unwrap().set_up(rs.addr, f == Flip::Up);
            self.changed.notify_one();
            match (f, result) {
                (Flip::Up, _) => {
                    info!(vs = %self.address, rs = %rs.addr, "real server UP: check succeeded")
                }
                (Flip::Down, Err(why)) => {
                    warn!(vs = %self.address, rs = %rs.addr, reason = %why, "real server DOWN")
                }
                (Flip::Down, Ok(())) => {}
            }
        }
    }

    /// A `misc_dynamic` check's exit code set the weight (keepalived: code - 2).
    pub fn report_dynamic_weight(&self, rs: &RsRuntime, weight: u32) {
        let old = rs.dynamic_weight.lock().unwrap().replace(weight);
        if old != Some(weight) {
            info!(vs = %self.address, rs = %rs.addr, weight, "real server weight set by misc_dynamic check");
            self.sched.lock().unwrap().set_weight(rs.addr, rs.weight());
            self.changed.notify_one();
        }
    }

    /// Replaces the real servers (in config order) and gives the scheduler the new list
    /// with their weights and health.
    pub fn set_servers(&self, servers: Vec<Arc<RsRuntime>>) {
        *self.servers.lock().unwrap() = servers;
        self.sync_scheduler();
    }

    /// Gives the scheduler the current servers, weights and health, and wakes the datapath.
    pub fn sync_scheduler(&self) {
        let list: Vec<(SocketAddr, u32)> = self
            .servers
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.addr, r.weight()))
            .collect();
        let mut s = self.sched.lock().unwrap();
        s.set_backends(&list);
        for r in self.servers.lock().unwrap().iter() {
            s.set_up(r.addr, r.is_up());
        }
        self.changed.notify_one();
    }

    /// Admin: weight override (`None` = back to the configured weight).
    pub fn set_weight_override(&self, rs: &RsRuntime, w: Option<u32>) {
        *rs.weight_override.lock().unwrap() = w;
        self.sched.lock().unwrap().set_weight(rs.addr, rs.weight());
        self.changed.notify_one();
    }

    /// Admin: drain (`true`) or end the drain; returns whether it was drained before.
    pub fn set_drained(&self, rs: &RsRuntime, drained: bool) -> bool {
        let was = rs.drained.swap(drained, Ordering::Relaxed);
        self.sched.lock().unwrap().set_weight(rs.addr, rs.weight());
        // DR reprograms at once rather than at its next tick.
        self.changed.notify_one();
        was
    }

    /// Stops the checks of every real server (the virtual server is going away).
    pub fn stop_checkers(&self) {
        for r in self.servers.lock().unwrap().iter() {
            r.stop_checker();
        }
    }
}

/// The config in force and the virtual servers running it.
pub struct LbState {
    /// What runs now: a reload plans from this to the new config, then stores what it
    /// applied (a virtual server whose forwarding method could not start is left out, so
    /// the next reload tries it again).
    pub config: RwLock<LbConfig>,
    pub vss: Mutex<Vec<Arc<VsRuntime>>>,
}

impl LbState {
    pub fn new(config: LbConfig) -> LbState {
        LbState {
            config: RwLock::new(config),
            vss: Mutex::new(Vec::new()),
        }
    }

    pub fn virtual_servers(&self) -> Vec<Arc<VsRuntime>> {
        self.vss.lock().unwrap().clone()
    }

    pub fn find(&self, vs: SocketAddr) -> Option<Arc<VsRuntime>> {
        self.vss
            .lock()
            .unwrap()
            .iter()
            .find(|v| v.address == vs)
            .cloned()
    }

    /// What VRRP tracks: there are virtual servers and not one has a real server available
    /// (with `track_virtual_servers` that makes an instance FAULT or lowers its priority).
    pub fn no_real_server_available(&self) -> bool {
        let vss = self.virtual_servers();
        !vss.is_empty()
            && !vss
                .iter()
                .any(|vs| vs.sched.lock().unwrap().any_available())
    }

    /// Takes, one after the other, the config lock and every lock of the dispatch path: a
    /// deadlocked one blocks here; a poisoned one (a panic while holding it) answers `false`.
    pub fn alive(&self) -> bool {
        if self.config.read().is_err() {
            return false;
        }
        let Ok(vss) = self.vss.lock().map(|v| v.clone()) else {
            return false;
        };
        vss.iter()
            .all(|vs| vs.cfg.read().is_ok() && vs.sched.lock().is_ok() && vs.servers.lock().is_ok())
    }
}
