//! The running balancer: one [`VsRuntime`] per virtual server (scheduler, real servers with
//! their health and counters, the listener), the health-check tasks, and [`Balancer::apply`]
//! which takes a validated config — at start and on every reload — and changes only what
//! differs: real servers added or removed, weights, checks, algorithms; established
//! connections are never touched.

use crate::config::{Check, LbConfig, RsConfig, VsConfig};
use crate::dispatch::Scheduler;
use crate::health::{self, Flip, HealthState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;
use tokio::task::AbortHandle;
use tracing::{info, warn, Instrument};

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
    /// Drained by the operator (`drain`): no new connections whatever the weight, until
    /// `enable` or `weight`. Kept across reloads, not across restarts (the config's
    /// `weight = 0` is the persistent way), so status can tell the two apart.
    pub drained: std::sync::atomic::AtomicBool,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub flips: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Health checks run, and those that failed (proxy connect failures are not counted).
    pub checks: AtomicU64,
    pub check_failures: AtomicU64,
    checker: Mutex<Option<AbortHandle>>,
}

impl RsRuntime {
    /// The weight the scheduler uses: 0 while drained, else the override or the config's.
    pub fn weight(&self) -> u32 {
        if self.is_drained() {
            return 0;
        }
        self.weight_override
            .lock()
            .unwrap()
            .unwrap_or(self.cfg.lock().unwrap().weight)
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.health.lock().unwrap().is_up()
    }
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
    pub local_errors: Mutex<crate::accept::Throttle>,
}

pub struct VsRuntime {
    pub address: SocketAddr,
    pub cfg: RwLock<VsConfig>,
    pub sched: Mutex<Scheduler>,
    pub servers: Mutex<Vec<Arc<RsRuntime>>>,
    pub stats: VsStats,
    /// How this virtual server moves viewers' packets (PROXY listener or DR datapath).
    pub forward: Mutex<Option<crate::forward::Forwarder>>,
    /// Woken when anything a datapath programs from changes (health, weight, membership,
    /// config), so DR re-renders its tables at once instead of at its next tick.
    pub changed: tokio::sync::Notify,
}

impl VsRuntime {
    pub fn server(&self, addr: SocketAddr) -> Option<Arc<RsRuntime>> {
        self.servers
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.addr == addr)
            .cloned()
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

    fn sync_scheduler(&self) {
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

    /// What the DR datapath last read (counters, connection table); `None` for PROXY.
    pub fn dr_stats(&self) -> Option<crate::forward::dr::DrStats> {
        self.forward
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|f| f.dr_stats())
    }

    fn stop_forward(&self) {
        if let Some(f) = self.forward.lock().unwrap().take() {
            f.stop();
        }
    }

    /// Admin: drain (`true`) or end the drain; returns whether it was drained before.
    pub fn set_drained(&self, rs: &RsRuntime, drained: bool) -> bool {
        let was = rs.drained.swap(drained, Ordering::Relaxed);
        self.sched.lock().unwrap().set_weight(rs.addr, rs.weight());
        was
    }
}

/// Everything running; see the module docs.
pub struct Balancer {
    pub config: RwLock<LbConfig>,
    pub vss: Mutex<Vec<Arc<VsRuntime>>>,
    pub vrrps: Mutex<Vec<Arc<crate::vrrp::VrrpRuntime>>>,
}

impl Balancer {
    pub fn new(config: LbConfig) -> Arc<Balancer> {
        Arc::new(Balancer {
            config: RwLock::new(config),
            vss: Mutex::new(Vec::new()),
            vrrps: Mutex::new(Vec::new()),
        })
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

    /// Applies `new` (first start or reload). Listeners of new virtual servers are bound
    /// here; a bind failure is returned and leaves the rest applied.
    pub async fn apply(self: &Arc<Self>, new: LbConfig) -> Result<(), String> {
        let mut errors = Vec::new();
        let copy_mode = new.proxy_copy;
        // Removed virtual servers: stop accepting and checking; connections continue.
        {
            let mut vss = self.vss.lock().unwrap();
            vss.retain(|v| {
                let keep = new.virtual_servers.iter().any(|n| n.address == v.address);
                if !keep {
                    info!(vs = %v.address, "virtual server removed");
                    v.stop_forward();
                    for r in v.servers.lock().unwrap().iter() {
                        stop_checker(r);
                    }
                }
                keep
            });
        }
        for vs_cfg in &new.virtual_servers {
            let existing = self.find(vs_cfg.address);
            let vs = match existing {
                Some(v) if v.cfg.read().unwrap().kind != vs_cfg.kind => {
                    // A change of forwarding method: the old one stops (PROXY connections in
                    // flight finish), the new one starts on the same running state.
                    info!(vs = %vs_cfg.address, kind = vs_cfg.kind.name(), "lb_kind changed: switching the forwarding method");
                    v.stop_forward();
                    *v.cfg.write().unwrap() = vs_cfg.clone();
                    match crate::forward::Forwarder::start(v.clone(), copy_mode).await {
                        Ok(f) => *v.forward.lock().unwrap() = Some(f),
                        Err(e) => errors.push(format!("virtual_server {}: {e}", vs_cfg.address)),
                    }
                    v
                }
                Some(v) => v,
                None => {
                    let v = Arc::new(VsRuntime {
                        address: vs_cfg.address,
                        cfg: RwLock::new(vs_cfg.clone()),
                        sched: Mutex::new(Scheduler::new(vs_cfg.algo, vs_cfg.persistence)),
                        servers: Mutex::new(Vec::new()),
                        stats: VsStats::default(),
                        forward: Mutex::new(None),
                        changed: tokio::sync::Notify::new(),
                    });
                    match crate::forward::Forwarder::start(v.clone(), copy_mode).await {
                        Ok(f) => *v.forward.lock().unwrap() = Some(f),
                        Err(e) => {
                            errors.push(format!("virtual_server {}: {e}", vs_cfg.address));
                            continue;
                        }
                    }
                    info!(vs = %vs_cfg.address, algo = vs_cfg.algo.name(), kind = vs_cfg.kind.name(), servers = vs_cfg.real_servers.len(), "virtual server started");
                    self.vss.lock().unwrap().push(v.clone());
                    v
                }
            };
            *vs.cfg.write().unwrap() = vs_cfg.clone();
            vs.sched
                .lock()
                .unwrap()
                .set_algo(vs_cfg.algo, vs_cfg.persistence);
            self.apply_real_servers(&vs, vs_cfg);
        }
        self.apply_vrrp(&new.vrrp_instances).await;
        *self.config.write().unwrap() = new;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Starts new VRRP instances, restarts changed ones, stops removed ones (a stopping
    /// master hands over with priority 0).
    async fn apply_vrrp(self: &Arc<Self>, wanted: &[crate::config::VrrpConfig]) {
        let current: Vec<_> = self.vrrps.lock().unwrap().clone();
        let mut keep = Vec::new();
        for rt in current {
            if wanted.iter().any(|w| *w == rt.cfg) {
                keep.push(rt);
            } else {
                info!(instance = %rt.cfg.name, "VRRP instance removed or changed: stopping it");
                rt.shutdown().await;
            }
        }
        for w in wanted {
            if !keep.iter().any(|k| k.cfg == *w) {
                keep.push(crate::vrrp::VrrpRuntime::start(
                    w.clone(),
                    Arc::downgrade(self),
                ));
            }
        }
        *self.vrrps.lock().unwrap() = keep;
    }

    /// For the systemd watchdog: takes, one after the other, every lock the dispatch path
    /// and the admin API take. A deadlocked one blocks here (and the pings stop); a poisoned
    /// one (a panic while holding it) answers `false`.
    pub fn alive(&self) -> bool {
        if self.config.read().is_err() || self.vrrps.lock().is_err() {
            return false;
        }
        let Ok(vss) = self.vss.lock().map(|v| v.clone()) else {
            return false;
        };
        vss.iter()
            .all(|vs| vs.cfg.read().is_ok() && vs.sched.lock().is_ok() && vs.servers.lock().is_ok())
    }

    pub fn vrrp_instances(&self) -> Vec<Arc<crate::vrrp::VrrpRuntime>> {
        self.vrrps.lock().unwrap().clone()
    }

    /// Graceful stop: VRRP masters hand over (priority 0, addresses removed), then listeners
    /// and checks stop.
    pub async fn shutdown(&self) {
        let vrrps: Vec<_> = self.vrrps.lock().unwrap().drain(..).collect();
        for v in vrrps {
            v.shutdown().await;
        }
        self.stop();
    }

    fn apply_real_servers(&self, vs: &Arc<VsRuntime>, vs_cfg: &VsConfig) {
        let mut next: Vec<Arc<RsRuntime>> = Vec::new();
        let old: Vec<Arc<RsRuntime>> = vs.servers.lock().unwrap().clone();
        for rs_cfg in &vs_cfg.real_servers {
            match old.iter().find(|r| r.addr == rs_cfg.address) {
                Some(r) => {
                    let prev = r.cfg.lock().unwrap().clone();
                    if prev.weight != rs_cfg.weight {
                        *r.weight_override.lock().unwrap() = None;
                        info!(vs = %vs.address, rs = %r.addr, from = prev.weight, to = rs_cfg.weight, "weight changed");
                    }
                    *r.cfg.lock().unwrap() = rs_cfg.clone();
                    if prev.check != rs_cfg.check {
                        stop_checker(r);
                        *r.health.lock().unwrap() =
                            HealthState::new(rs_cfg.check.as_ref().map(|c| c.retry).unwrap_or(0));
                        start_checker(vs, r, rs_cfg.check.clone(), vs_cfg);
                    }
                    next.push(r.clone());
                }
                None => {
                    let r = Arc::new(RsRuntime {
                        addr: rs_cfg.address,
                        cfg: Mutex::new(rs_cfg.clone()),
                        health: Mutex::new(HealthState::new(
                            rs_cfg.check.as_ref().map(|c| c.retry).unwrap_or(0),
                        )),
                        last_error: Mutex::new(String::new()),
                        weight_override: Mutex::new(None),
                        drained: std::sync::atomic::AtomicBool::new(false),
                        active: AtomicU64::new(0),
                        total: AtomicU64::new(0),
                        bytes_in: AtomicU64::new(0),
                        bytes_out: AtomicU64::new(0),
                        flips: AtomicU64::new(0),
                        connect_failures: AtomicU64::new(0),
                        checks: AtomicU64::new(0),
                        check_failures: AtomicU64::new(0),
                        checker: Mutex::new(None),
                    });
                    if !old.is_empty() {
                        info!(vs = %vs.address, rs = %r.addr, "real server added");
                    }
                    start_checker(vs, &r, rs_cfg.check.clone(), vs_cfg);
                    next.push(r);
                }
            }
        }
        for r in &old {
            if !next.iter().any(|n| n.addr == r.addr) {
                info!(vs = %vs.address, rs = %r.addr, active = r.active.load(Ordering::Relaxed), "real server removed (its connections continue)");
                stop_checker(r);
            }
        }
        *vs.servers.lock().unwrap() = next;
        vs.sync_scheduler();
    }

    /// Stops listeners and checks (connections in flight finish on their own); VRRP
    /// instances are told to stop without waiting (use [`Balancer::shutdown`] to wait).
    pub fn stop(&self) {
        for v in self.vrrps.lock().unwrap().drain(..) {
            v.abort();
        }
        for v in self.vss.lock().unwrap().drain(..) {
            v.stop_forward();
            for r in v.servers.lock().unwrap().iter() {
                stop_checker(r);
            }
        }
    }
}

fn stop_checker(r: &RsRuntime) {
    if let Some(h) = r.checker.lock().unwrap().take() {
        h.abort();
    }
}

fn start_checker(
    vs: &Arc<VsRuntime>,
    rs: &Arc<RsRuntime>,
    check: Option<Check>,
    vs_cfg: &VsConfig,
) {
    let Some(check) = check else {
        return; // no check table: always up, as in keepalived
    };
    let weak: Weak<VsRuntime> = Arc::downgrade(vs);
    let rs2 = rs.clone();
    let delay_loop = vs_cfg.delay_loop;
    let span = tracing::info_span!(parent: None, "check", vs = %vs.address, rs = %rs.addr);
    let task = tokio::spawn(
        async move {
            loop {
                // Read each time: a reload may change send_proxy without touching the check.
                let send_proxy = rs2.cfg.lock().unwrap().send_proxy;
                let result = health::probe(rs2.addr, &check, send_proxy).await;
                rs2.checks.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    rs2.check_failures.fetch_add(1, Ordering::Relaxed);
                }
                let Some(vs) = weak.upgrade() else { return };
                vs.report(&rs2, result);
                let delay = rs2
                    .health
                    .lock()
                    .unwrap()
                    .next_delay(delay_loop, check.delay_before_retry);
                drop(vs);
                tokio::time::sleep(delay).await;
            }
        }
        .instrument(span),
    );
    *rs.checker.lock().unwrap() = Some(task.abort_handle());
}
