//! The workers above the running state ([`crate::state`]): each virtual server's forwarding
//! method, the health-check tasks and the VRRP instances. [`Balancer::carry_out`] takes a
//! reload plan ([`crate::reload::plan`]) and does what each change says — at start (a plan
//! from nothing) and on every reload — touching only what changed: established connections
//! are never cut, and a real server that stays keeps its health and counters.
//!
//! The admin API's own keys (`admin_listen`, `admin_timeout`, the token) are carried out by
//! `lib`, which owns the admin server; this room passes over them.

use crate::config::{LbConfig, VrrpConfig, VsConfig};
use crate::forward::{ForwardError, Forwarder};
use crate::health;
use crate::reload::{self, Change, GlobalKey, RsKey, VsKey};
use crate::state::{LbState, RsRuntime, VsRuntime};
use crate::vrrp::VrrpRuntime;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tracing::{info, Instrument};

/// A virtual server whose forwarding method did not start.
#[derive(Debug, thiserror::Error)]
#[error("virtual_server {vs}: {source}")]
pub struct StartError {
    pub vs: SocketAddr,
    #[source]
    pub source: ForwardError,
}

/// What a plan could not carry out (the rest of it was).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ApplyError(pub Vec<StartError>);

/// The running state and the workers on it; see the module docs.
pub struct Balancer {
    pub state: Arc<LbState>,
    /// Each virtual server's running forwarding method, by address.
    forwarders: Mutex<HashMap<SocketAddr, Forwarder>>,
    vrrps: Mutex<Vec<Arc<VrrpRuntime>>>,
    /// The coordinators of the running `vrrp_sync_group`s, by name.
    groups: Mutex<HashMap<String, crate::vrrp::sync::GroupHandle>>,
}

impl Balancer {
    /// A balancer with `config`'s top-level keys and nothing running yet: the first
    /// [`Balancer::apply`] of `config` starts its virtual servers and VRRP instances.
    pub fn new(config: LbConfig) -> Arc<Balancer> {
        let nothing = LbConfig {
            virtual_servers: Vec::new(),
            vrrp_instances: Vec::new(),
            ..config
        };
        Arc::new(Balancer {
            state: Arc::new(LbState::new(nothing)),
            forwarders: Mutex::new(HashMap::new()),
            vrrps: Mutex::new(Vec::new()),
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// The config that runs (what the next reload is planned from).
    pub fn config(&self) -> LbConfig {
        self.state.config.read().unwrap().clone()
    }

    pub fn virtual_servers(&self) -> Vec<Arc<VsRuntime>> {
        self.state.virtual_servers()
    }

    pub fn find(&self, vs: SocketAddr) -> Option<Arc<VsRuntime>> {
        self.state.find(vs)
    }

    pub fn vrrp_instances(&self) -> Vec<Arc<VrrpRuntime>> {
        self.vrrps.lock().unwrap().clone()
    }

    /// What the DR datapath of `vs` last read (counters, connection table); `None` for PROXY.
    pub fn dr_stats(&self, vs: SocketAddr) -> Option<crate::forward::dr::DrStats> {
        self.forwarders
            .lock()
            .unwrap()
            .get(&vs)
            .and_then(|f| f.dr_stats())
    }

    /// Plans from the config that runs to `new` and carries the plan out (first start, or a
    /// reload driven without the admin API's part: see `lib`).
    pub async fn apply(self: &Arc<Self>, new: LbConfig) -> Result<(), ApplyError> {
        let changes = reload::plan(&self.config(), &new);
        self.carry_out(&changes, new).await
    }

    /// Carries out `changes`, the plan from the running config to `new`. A forwarding method
    /// that cannot start (a listener that cannot bind) is returned and leaves the rest
    /// applied; its virtual server is left out of the config stored as running, so the next
    /// reload tries it again.
    pub async fn carry_out(
        self: &Arc<Self>,
        changes: &[Change],
        new: LbConfig,
    ) -> Result<(), ApplyError> {
        let mut failed = Vec::new();
        for c in changes {
            if let Change::VsRemoved { vs } = c {
                self.remove_vs(*vs);
            }
        }
        // One left out of the running config (its forwarding method failed to start at a
        // switch of lb_kind) and now gone from the new one: no plan line names it.
        for vs in self.state.virtual_servers() {
            if !new.virtual_servers.iter().any(|n| n.address == vs.address) {
                self.remove_vs(vs.address);
            }
        }
        for vs_cfg in &new.virtual_servers {
            let mine: Vec<&Change> = changes
                .iter()
                .filter(|c| c.vs() == Some(vs_cfg.address))
                .collect();
            if mine.is_empty() {
                continue;
            }
            if let Err(e) = self.change_vs(vs_cfg, &mine, &new).await {
                failed.push(e);
            }
        }
        let copy_changed = changes.iter().any(|c| {
            matches!(
                c,
                Change::Global {
                    key: GlobalKey::ProxyCopy,
                    ..
                }
            )
        });
        if copy_changed {
            for vs in self.state.virtual_servers() {
                vs.set_copy_mode(new.proxy_copy);
            }
        }
        self.change_vrrp(changes, &new.vrrp_instances).await;
        let mut running = new;
        running
            .virtual_servers
            .retain(|v| !failed.iter().any(|f: &StartError| f.vs == v.address));
        *self.state.config.write().unwrap() = running;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ApplyError(failed))
        }
    }

    /// Stops accepting and checking; connections in flight continue.
    fn remove_vs(&self, addr: SocketAddr) {
        let removed = {
            let mut vss = self.state.vss.lock().unwrap();
            let i = vss.iter().position(|v| v.address == addr);
            i.map(|i| vss.remove(i))
        };
        self.stop_forward(addr);
        if let Some(v) = removed {
            v.stop_checkers();
        }
    }

    fn stop_forward(&self, addr: SocketAddr) {
        let f = self.forwarders.lock().unwrap().remove(&addr);
        if let Some(f) = f {
            f.stop();
        }
    }

    async fn start_forward(&self, vs: &Arc<VsRuntime>) -> Result<(), StartError> {
        match Forwarder::start(vs.clone()).await {
            Ok(f) => {
                self.forwarders.lock().unwrap().insert(vs.address, f);
                Ok(())
            }
            Err(source) => Err(StartError {
                vs: vs.address,
                source,
            }),
        }
    }

    /// Carries out the changes of one virtual server of the new config. A forwarding method
    /// that does not start is returned; a virtual server that existed keeps its running state
    /// (and takes the rest of its changes) without one.
    async fn change_vs(
        self: &Arc<Self>,
        cfg: &VsConfig,
        changes: &[&Change],
        new: &LbConfig,
    ) -> Result<(), StartError> {
        let added = changes.iter().any(|c| matches!(c, Change::VsAdded { .. }));
        let Some(vs) = self.state.find(cfg.address) else {
            let vs = Arc::new(VsRuntime::new(cfg, new.proxy_copy));
            self.start_forward(&vs).await?;
            info!(vs = %cfg.address, algo = cfg.algo.name(), kind = cfg.kind.name(), servers = cfg.real_servers.len(), "virtual server started");
            self.state.vss.lock().unwrap().push(vs.clone());
            self.change_real_servers(&vs, cfg, changes);
            return Ok(());
        };
        // Added, yet running: its forwarding method failed to start at an earlier reload (so
        // the config stored as running left it out). What else changed is planned from the
        // config its running state holds.
        let rest = match added {
            true => reload::virtual_server_changes(&vs.cfg.read().unwrap(), cfg),
            false => Vec::new(),
        };
        let changes: Vec<&Change> = changes.iter().copied().chain(rest.iter()).collect();
        let kind_changed = changes.iter().any(|c| {
            matches!(
                c,
                Change::Vs {
                    key: VsKey::Kind,
                    ..
                }
            )
        });
        // Written first: the workers read it for their next connection or step, and a new
        // forwarding method starts from it.
        *vs.cfg.write().unwrap() = cfg.clone();
        vs.sched.lock().unwrap().set_algo(cfg.algo, cfg.persistence);
        let mut started = Ok(());
        if added || kind_changed {
            // The old method stops (PROXY connections in flight finish), the new one starts
            // on the same running state.
            self.stop_forward(cfg.address);
            started = self.start_forward(&vs).await;
        }
        self.change_real_servers(&vs, cfg, &changes);
        started
    }

    /// Real servers in the new config's order: those that stay keep their state (a weight
    /// change ends an admin override; a check change restarts the check with a fresh health
    /// state; a `delay_loop` change restarts every check on the new period), new ones start
    /// UP with their check, removed ones stop being checked (their connections continue).
    fn change_real_servers(&self, vs: &Arc<VsRuntime>, cfg: &VsConfig, changes: &[&Change]) {
        let retime = changes.iter().any(|c| {
            matches!(
                c,
                Change::Vs {
                    key: VsKey::DelayLoop,
                    ..
                }
            )
        });
        let keys_of = |rs: SocketAddr| -> HashSet<RsKey> {
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::Rs { rs: r, key, .. } if *r == rs => Some(*key),
                    _ => None,
                })
                .collect()
        };
        let old: Vec<Arc<RsRuntime>> = vs.servers.lock().unwrap().clone();
        let mut next = Vec::new();
        for rs_cfg in &cfg.real_servers {
            let r = match old.iter().find(|r| r.addr == rs_cfg.address) {
                Some(r) => {
                    let keys = keys_of(r.addr);
                    *r.cfg.lock().unwrap() = rs_cfg.clone();
                    if keys.contains(&RsKey::Weight) {
                        *r.weight_override.lock().unwrap() = None;
                    }
                    if keys.contains(&RsKey::Check) {
                        r.stop_checker();
                        r.reset_health();
                        start_checker(vs, r, cfg.delay_loop);
                    } else if retime {
                        start_checker(vs, r, cfg.delay_loop);
                    }
                    r.clone()
                }
                None => {
                    let r = Arc::new(RsRuntime::new(rs_cfg));
                    start_checker(vs, &r, cfg.delay_loop);
                    r
                }
            };
            next.push(r);
        }
        for r in &old {
            if !next.iter().any(|n| n.addr == r.addr) {
                r.stop_checker();
            }
        }
        vs.set_servers(next);
    }

    /// Stops removed and changed instances (a stopping master hands over with priority 0),
    /// then starts added and changed ones, in the new config's order.
    async fn change_vrrp(self: &Arc<Self>, changes: &[Change], wanted: &[VrrpConfig]) {
        let stop: HashSet<&str> = changes
            .iter()
            .filter(|c| matches!(c, Change::VrrpRemoved { .. } | Change::Vrrp { .. }))
            .filter_map(|c| c.instance())
            .collect();
        if stop.is_empty()
            && !changes
                .iter()
                .any(|c| matches!(c, Change::VrrpAdded { .. }))
        {
            return;
        }
        let current: Vec<_> = self.vrrps.lock().unwrap().clone();
        let mut kept = Vec::new();
        for rt in current {
            if stop.contains(rt.cfg.name.as_str()) {
                info!(instance = %rt.cfg.name, "VRRP instance removed or changed: stopping it");
                rt.shutdown().await;
            } else {
                kept.push(rt);
            }
        }
        let mut next = Vec::new();
        for w in wanted {
            match kept.iter().position(|k| k.cfg.name == w.name) {
                Some(i) => next.push(kept.swap_remove(i)),
                None => next.push(VrrpRuntime::start(
                    w.clone(),
                    self.tracker(),
                    self.group_of(w),
                )),
            }
        }
        *self.vrrps.lock().unwrap() = next;
        // Groups no instance names any more.
        self.groups.lock().unwrap().retain(|name, _| {
            wanted
                .iter()
                .any(|w| w.sync_group.as_ref().is_some_and(|g| &g.name == name))
        });
    }

    /// The coordinator of `cfg`'s sync group, shared by its members: a group whose config
    /// changed gets a new one (its members all restart, since each carries the group whole).
    fn group_of(&self, cfg: &VrrpConfig) -> Option<crate::vrrp::sync::GroupHandle> {
        let g = cfg.sync_group.as_ref()?;
        let mut groups = self.groups.lock().unwrap();
        if let Some(h) = groups.get(&g.name) {
            if h.lock().unwrap().cfg == *g {
                return Some(h.clone());
            }
        }
        let h = Arc::new(Mutex::new(crate::vrrp::sync::SyncGroup::new(g.clone())));
        groups.insert(g.name.clone(), h.clone());
        Some(h)
    }

    /// What VRRP's `track_virtual_servers` reads: the running state's health, through a weak
    /// reference (an instance outliving the balancer tracks nothing).
    fn tracker(&self) -> crate::vrrp::Tracker {
        let state = Arc::downgrade(&self.state);
        Arc::new(move || {
            state
                .upgrade()
                .is_some_and(|s| s.no_real_server_available())
        })
    }

    /// For the systemd watchdog: takes, one after the other, every lock the dispatch path
    /// and the admin API take. A deadlocked one blocks here (and the pings stop); a poisoned
    /// one (a panic while holding it) answers `false`.
    pub fn alive(&self) -> bool {
        self.vrrps.lock().is_ok() && self.forwarders.lock().is_ok() && self.state.alive()
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

    /// Stops listeners and checks (connections in flight finish on their own); VRRP
    /// instances are told to stop without waiting (use [`Balancer::shutdown`] to wait).
    pub fn stop(&self) {
        for v in self.vrrps.lock().unwrap().drain(..) {
            v.abort();
        }
        let forwarders: Vec<_> = self.forwarders.lock().unwrap().drain().collect();
        for (_, f) in forwarders {
            f.stop();
        }
        for v in self.state.vss.lock().unwrap().drain(..) {
            v.stop_checkers();
        }
    }
}

/// Starts (or restarts) the check task of `rs`, every `delay_loop`; no check table: always
/// up, as in keepalived.
fn start_checker(vs: &Arc<VsRuntime>, rs: &Arc<RsRuntime>, delay_loop: Duration) {
    let Some(check) = rs.cfg.lock().unwrap().check.clone() else {
        rs.stop_checker();
        return;
    };
    let weak: Weak<VsRuntime> = Arc::downgrade(vs);
    let rs2 = rs.clone();
    let span = tracing::info_span!(parent: None, "check", vs = %vs.address, rs = %rs.addr);
    let task = tokio::spawn(
        async move {
            if !check.warmup.is_zero() {
                // keepalived's warmup: a random first delay up to it, so the servers' first
                // checks do not all run at once (spread by the address, no RNG needed).
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&rs2.addr, &mut h);
                let frac = (std::hash::Hasher::finish(&h) % 1000) as f64 / 1000.0;
                tokio::time::sleep(check.warmup.mul_f64(frac)).await;
            }
            loop {
                // Read each time: a reload may change send_proxy without touching the check.
                let send_proxy = rs2.cfg.lock().unwrap().send_proxy;
                let result = health::probe_weight(rs2.addr, &check, send_proxy).await;
                rs2.checks.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    rs2.check_failures.fetch_add(1, Ordering::Relaxed);
                }
                let Some(vs) = weak.upgrade() else { return };
                if let Ok(Some(w)) = result {
                    vs.report_dynamic_weight(&rs2, w);
                }
                vs.report(&rs2, result.map(|_| ()));
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
    rs.set_checker(task.abort_handle());
}
