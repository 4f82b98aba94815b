//! VRRP: two balancers (or an lb and a keepalived) own the viewers' virtual IP together.
//!
//! - [`packet`]: adverts on the wire (v3 over IPv4 or IPv6, v2 over IPv4), with every validity
//!   check counted.
//! - [`machine`]: the sans-I/O state machine (election, preemption, timers); family-blind.
//! - [`net`]: raw socket, netlink addresses, gratuitous ARP / unsolicited Neighbor
//!   Advertisements, interface state.
//!
//! An instance whose `virtual_ipaddress` are IPv6 speaks VRRPv3 over IPv6 (RFC 5798): adverts
//! to ff02::12 from the interface's link-local address (or `unicast_src_ip` to
//! `unicast_peer`s), hop limit 255, and announces a VIP it takes with unsolicited Neighbor
//! Advertisements instead of gratuitous ARP.
//!
//! This module runs one task per `[[vrrp_instance]]`: it feeds the machine, executes its
//! actions, tracks interfaces and the health of the virtual servers (when none of their real
//! servers is up the instance goes FAULT, or lowers its priority by `track_weight`, so a
//! balancer that still has healthy edges holds the VIP), and keeps the counters /metrics and
//! `lb status` show. The virtual servers' health comes through a [`Tracker`] given by whoever
//! starts the instance: this room does not reach into the balancer's running state.
//!
//! - [`track`]: keepalived's `vrrp_script`s (run by a task per tracked script, rise/fall
//!   counted sans-I/O) and the priority rule that turns what is tracked into (fault,
//!   priority) — fed to the machine as `set_fault` / `set_priority` every tick.
//! - [`sync`]: `vrrp_sync_group`, a coordinator shared by the group's instances; each tick an
//!   instance reports to it and takes the group's fault and hold back as inputs.

pub mod machine;
pub mod net;
pub mod packet;
pub mod sync;
pub mod track;

use crate::config::VrrpConfig;
use machine::{Action, Machine, Params, State};
use packet::{Drop as DropReason, Expect, MULTICAST_V6};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn, Instrument};

const TRACK_EVERY: Duration = Duration::from_millis(100);

/// What `track_virtual_servers` asks of the balancer, every [`TRACK_EVERY`]: `true` when it
/// has virtual servers and not one of them has a real server available.
pub type Tracker = Arc<dyn Fn() -> bool + Send + Sync>;

/// What /metrics and `lb status` show of an instance.
#[derive(Default)]
pub struct VrrpStats {
    pub state: Mutex<Option<State>>,
    pub priority: AtomicU64,
    pub master: Mutex<Option<IpAddr>>,
    pub transitions: AtomicU64,
    pub adverts_sent: AtomicU64,
    pub adverts_received: AtomicU64,
    pub drops: [AtomicU64; 9],
    pub last_error: Mutex<String>,
}

impl VrrpStats {
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.drops[i].load(Ordering::Relaxed)
    }

    fn count_drop(&self, reason: DropReason) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.drops[i].fetch_add(1, Ordering::Relaxed);
    }
}

pub struct VrrpRuntime {
    pub cfg: VrrpConfig,
    pub stats: VrrpStats,
    /// The tracked scripts' states, in `cfg.track_script` order.
    pub scripts: Vec<Arc<track::ScriptStatus>>,
    /// The sync group this instance is a member of.
    pub group: Option<sync::GroupHandle>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl VrrpRuntime {
    /// Starts the instance; `group`: the coordinator of its `vrrp_sync_group`, shared with
    /// the other members (see [`sync`]).
    pub fn start(
        cfg: VrrpConfig,
        all_down: Tracker,
        group: Option<sync::GroupHandle>,
    ) -> Arc<VrrpRuntime> {
        let (tx, rx) = oneshot::channel();
        let scripts = cfg
            .track_script
            .iter()
            .map(|t| Arc::new(track::ScriptStatus::new(t)))
            .collect();
        let rt = Arc::new(VrrpRuntime {
            cfg,
            stats: VrrpStats::default(),
            scripts,
            group,
            stop: Mutex::new(Some(tx)),
            task: Mutex::new(None),
        });
        let span = tracing::info_span!(parent: None, "vrrp", instance = %rt.cfg.name);
        let task = tokio::spawn(run(rt.clone(), all_down, rx).instrument(span));
        *rt.task.lock().unwrap() = Some(task);
        rt
    }

    /// Stops the instance: a master advertises priority 0 and removes its addresses.
    pub async fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let task = self.task.lock().unwrap().take();
        if let Some(t) = task {
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                warn!(instance = %self.cfg.name, "VRRP instance did not stop within 2 s");
            }
        }
    }

    /// Stops without waiting (drop paths).
    pub fn abort(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    pub fn state(&self) -> Option<State> {
        *self.stats.state.lock().unwrap()
    }
}

struct Driver {
    rt: Arc<VrrpRuntime>,
    sock: net::VrrpSocket,
    addrs: net::Addresses,
    iface: net::Iface,
    src: IpAddr,
}

impl Driver {
    fn vip_list(&self) -> Vec<IpAddr> {
        self.rt.cfg.vips.iter().map(|v| v.0).collect()
    }

    async fn exec(&self, m: &Machine, acts: Vec<Action>) {
        let cfg = &self.rt.cfg;
        for a in acts {
            match a {
                Action::Send(prio) => {
                    let interval_cs = (cfg.advert_int.as_millis() / 10) as u16;
                    let auth = cfg.auth_pass.as_deref().map(packet::auth_bytes);
                    let dsts: Vec<IpAddr> = if cfg.unicast_peer.is_empty() {
                        vec![packet::group_of(self.src)]
                    } else {
                        cfg.unicast_peer.clone()
                    };
                    for dst in dsts {
                        let vips = self.vip_list();
                        let out = packet::Outgoing {
                            version: cfg.version,
                            vrid: cfg.vrid,
                            priority: prio,
                            interval_cs,
                            addrs: &vips,
                            auth_pass: auth,
                        };
                        let p = packet::encode(&out, self.src, dst);
                        match self.sock.send(&p, dst).await {
                            Ok(()) => {
                                self.rt.stats.adverts_sent.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                *self.rt.stats.last_error.lock().unwrap() =
                                    format!("sending advert: {e}");
                            }
                        }
                    }
                }
                Action::AddVips => {
                    for (ip, prefix) in &cfg.vips {
                        if let Err(e) = self.addrs.add(self.iface.index, *ip, *prefix).await {
                            error!(error = %e, "cannot add virtual address");
                            *self.rt.stats.last_error.lock().unwrap() = e;
                        }
                    }
                }
                Action::RemoveVips => {
                    for (ip, _) in &cfg.vips {
                        if let Err(e) = self.addrs.remove(self.iface.index, *ip).await {
                            warn!(error = %e, "cannot remove virtual address");
                        }
                    }
                }
                Action::Garp => {
                    let (iface, vips) = (self.iface.clone(), self.vip_list());
                    let (repeat, delay) = (cfg.garp_master_repeat.max(1), cfg.garp_master_delay);
                    let rt = Arc::downgrade(&self.rt);
                    tokio::spawn(async move {
                        for round in 0..2 {
                            if round == 1 {
                                if delay.is_zero() {
                                    break;
                                }
                                tokio::time::sleep(delay).await;
                                let still = rt
                                    .upgrade()
                                    .map(|r| r.state() == Some(State::Master))
                                    .unwrap_or(false);
                                if !still {
                                    break;
                                }
                            }
                            for _ in 0..repeat {
                                let (i, v) = (iface.clone(), vips.clone());
                                match tokio::task::spawn_blocking(move || announce(&i, &v)).await {
                                    Ok(Err(e)) => {
                                        warn!(error = %e, "gratuitous ARP / unsolicited NA failed")
                                    }
                                    Err(e) => warn!(error = %e, "gratuitous ARP task failed"),
                                    Ok(Ok(())) => {}
                                }
                            }
                        }
                    });
                }
                Action::Transition { from, to } => {
                    self.rt.stats.transitions.fetch_add(1, Ordering::Relaxed);
                    *self.rt.stats.state.lock().unwrap() = Some(to);
                    info!(
                        from = from.name(),
                        to = to.name(),
                        priority = m.priority(),
                        "VRRP transition"
                    );
                    self.notify(to, m.priority());
                }
            }
        }
        *self.rt.stats.master.lock().unwrap() = m.master();
        self.rt
            .stats
            .priority
            .store(m.priority() as u64, Ordering::Relaxed);
    }

    /// Runs notify scripts as keepalived does: notify_STATE as written, and `notify` with
    /// the arguments INSTANCE NAME STATE PRIORITY.
    fn notify(&self, to: State, priority: u8) {
        let cfg = &self.rt.cfg;
        let specific = match to {
            State::Master => cfg.notify_master.clone(),
            State::Backup => cfg.notify_backup.clone(),
            State::Fault => cfg.notify_fault.clone(),
            State::Init => cfg.notify_stop.clone(),
        };
        let mut cmds = Vec::new();
        if let Some(s) = specific {
            cmds.push(s);
        }
        if let Some(g) = &cfg.notify {
            cmds.push(format!(
                "{g} INSTANCE {} {} {priority}",
                cfg.name,
                to.name()
            ));
        }
        spawn_notify(cmds);
    }
}

/// Tells the link the VIPs moved here: gratuitous ARP for IPv4, unsolicited Neighbor
/// Advertisements for IPv6.
fn announce(iface: &net::Iface, vips: &[IpAddr]) -> Result<(), String> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in vips {
        match ip {
            IpAddr::V4(a) => v4.push(*a),
            IpAddr::V6(a) => v6.push(*a),
        }
    }
    if !v4.is_empty() {
        net::garp(&iface.name, &v4)?;
    }
    if !v6.is_empty() {
        net::unsolicited_na(iface, &v6)?;
    }
    Ok(())
}

/// Runs notify commands through /bin/sh (they are shell lines, as keepalived's notify), without
/// waiting for them.
fn spawn_notify(cmds: Vec<String>) {
    for c in cmds {
        match tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&c)
            .kill_on_drop(false)
            .spawn()
        {
            Ok(mut child) => {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => warn!(script = %c, error = %e, "notify script failed to start"),
        }
    }
}

/// The group's notify scripts when the group's state changed: notify_STATE as written,
/// and `notify` with the arguments GROUP NAME STATE (keepalived's).
fn notify_group(g: &crate::config::SyncGroupConfig, to: State) {
    info!(group = %g.name, state = to.name(), "VRRP sync group transition");
    let specific = match to {
        State::Master => g.notify_master.clone(),
        State::Backup => g.notify_backup.clone(),
        State::Fault => g.notify_fault.clone(),
        State::Init => None,
    };
    let mut cmds: Vec<String> = specific.into_iter().collect();
    if let Some(n) = &g.notify {
        cmds.push(format!("{n} GROUP {} {}", g.name, to.name()));
    }
    spawn_notify(cmds);
}

/// Evaluates tracking: (fault, priority); see [`track::effective`].
fn track(
    cfg: &VrrpConfig,
    all_down: &Tracker,
    scripts: &[Arc<track::ScriptStatus>],
) -> (Option<String>, u8) {
    let mut fault = None;
    for name in std::iter::once(&cfg.interface).chain(cfg.track_interface.iter()) {
        match net::iface(name) {
            Some(i) if i.running => {}
            Some(_) => fault = Some(format!("interface {name} is down")),
            None => fault = Some(format!("interface {name} does not exist")),
        }
    }
    let vs_down = (cfg.track_virtual_servers && all_down()).then_some(cfg.track_weight);
    let inputs: Vec<track::ScriptInput> = scripts
        .iter()
        .map(|s| track::ScriptInput {
            name: &s.name,
            ok: s.ok(),
            weight: s.weight,
        })
        .collect();
    track::effective(cfg.priority, fault, vs_down, &inputs)
}

/// Aborts the script tasks when the instance's task ends (stopped, or aborted itself); their
/// running commands are killed with them (`kill_on_drop`).
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Leaves the sync group when the instance's task ends.
struct Membership(Option<sync::GroupHandle>, String);

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            if let Ok(mut g) = g.lock() {
                g.leave(&self.1);
            }
        }
    }
}

async fn run(rt: Arc<VrrpRuntime>, all_down: Tracker, mut stop: oneshot::Receiver<()>) {
    let cfg = rt.cfg.clone();
    let _membership = Membership(rt.group.clone(), cfg.name.clone());
    let _scripts = Tasks(
        cfg.track_script
            .iter()
            .zip(&rt.scripts)
            .map(|(t, st)| {
                let span = tracing::info_span!("vrrp_script", script = %t.script.name);
                tokio::spawn(track::run_script(t.clone(), st.clone()).instrument(span))
            })
            .collect(),
    );
    // Wait for the interface (it may come up after lb), then open the socket.
    let driver = loop {
        let attempt = (|| {
            let iface = net::iface(&cfg.interface)
                .ok_or_else(|| format!("interface {} does not exist", cfg.interface))?;
            let multicast = cfg.unicast_peer.is_empty();
            let (src, sock) = if cfg.is_v6() {
                // RFC 5798 5.1.2.1: the source of IPv6 adverts is the link-local address.
                let src = match cfg.unicast_src_ip {
                    Some(IpAddr::V6(a)) => a,
                    _ => iface.link_local.ok_or_else(|| {
                        format!("interface {} has no IPv6 link-local address", cfg.interface)
                    })?,
                };
                let sock =
                    net::VrrpSocket::open_v6(&iface, src, multicast).map_err(|e| e.to_string())?;
                (IpAddr::V6(src), sock)
            } else {
                let ip4 = match cfg.unicast_src_ip {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                };
                let src = ip4
                    .or(iface.primary)
                    .ok_or_else(|| format!("interface {} has no IPv4 address", cfg.interface))?;
                let sock =
                    net::VrrpSocket::open(&iface, ip4, multicast).map_err(|e| e.to_string())?;
                (IpAddr::V4(src), sock)
            };
            let addrs = net::Addresses::new().map_err(|e| format!("netlink: {e}"))?;
            Ok::<_, String>(Driver {
                rt: rt.clone(),
                sock,
                addrs,
                iface,
                src,
            })
        })();
        match attempt {
            Ok(d) => break d,
            Err(e) => {
                if let Some(g) = &rt.group {
                    let flip = g
                        .lock()
                        .unwrap()
                        .report(&cfg.name, Some(e.clone()), State::Fault, false)
                        .1;
                    if let Some(to) = flip {
                        notify_group(&g.lock().unwrap().cfg, to);
                    }
                }
                if *rt.stats.last_error.lock().unwrap() != e {
                    error!(error = %e, "VRRP instance cannot start; retrying every second");
                    *rt.stats.last_error.lock().unwrap() = e;
                    *rt.stats.state.lock().unwrap() = Some(State::Fault);
                }
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        }
    };
    let mut m = Machine::new(Params {
        version: cfg.version,
        priority: cfg.priority,
        advert_int: cfg.advert_int,
        preempt: !cfg.nopreempt,
        preempt_delay: cfg.preempt_delay,
        start_as_master: cfg.start_as_master,
        primary_ip: driver.src,
    });
    let expect = Expect {
        version: cfg.version,
        vrid: cfg.vrid,
        auth_pass: cfg.auth_pass.as_deref().map(packet::auth_bytes),
        interval_s: cfg.advert_int.as_secs().max(1) as u16,
    };
    let std_now = std::time::Instant::now;
    let (fault, prio) = track(&cfg, &all_down, &rt.scripts);
    let mut fault_reason = fault.clone();
    m.set_priority(prio, std_now());
    m.set_fault(fault.is_some(), std_now());
    if let Some(f) = &fault {
        warn!(reason = %f, "VRRP instance starts in FAULT");
    }
    info!(vrid = cfg.vrid, priority = cfg.priority, interface = %cfg.interface, src = %driver.src, version = cfg.version, "VRRP instance started");
    let acts = m.start(std_now());
    driver.exec(&m, acts).await;
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(TRACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = m.poll_timeout().map(Instant::from_std);
        tokio::select! {
            _ = &mut stop => {
                let acts = m.shutdown();
                driver.exec(&m, acts).await;
                info!("VRRP instance stopped");
                return;
            }
            r = driver.sock.recv(&mut buf) => {
                let got = match r {
                    Ok(got) => got,
                    Err(e) => {
                        warn!(error = %e, "VRRP receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let data = &buf[..got.len];
                let parsed = match (got.src, driver.src) {
                    (Some(from), IpAddr::V6(_)) => packet::parse_v6(
                        data,
                        from,
                        got.dst.unwrap_or(MULTICAST_V6),
                        got.hop_limit,
                        &expect,
                    ),
                    (None, IpAddr::V6(_)) => Err(DropReason::Truncated),
                    (_, IpAddr::V4(_)) => packet::parse(data, &expect),
                };
                match parsed {
                    Ok(adv) if adv.src == driver.src => {}
                    Ok(adv) => {
                        rt.stats.adverts_received.fetch_add(1, Ordering::Relaxed);
                        if adv.addrs.len() != cfg.vips.len() {
                            tracing::debug!(from = %adv.src, "advert lists other addresses than ours (accepted, as keepalived)");
                        }
                        let acts = m.handle_advert(&adv, std_now());
                        driver.exec(&m, acts).await;
                    }
                    Err(DropReason::OtherVrid) => rt.stats.count_drop(DropReason::OtherVrid),
                    Err(reason) => {
                        rt.stats.count_drop(reason);
                        tracing::debug!(reason = reason.name(), "advert dropped");
                    }
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                let acts = m.handle_timeout(std_now());
                driver.exec(&m, acts).await;
            }
            _ = tick.tick() => {
                let (own, prio) = track(&cfg, &all_down, &rt.scripts);
                let now = std_now();
                let (fault, hold) = match &rt.group {
                    None => (own, false),
                    Some(g) => {
                        let (view, flip) = g.lock().unwrap().report(
                            &cfg.name,
                            own.clone(),
                            m.state(),
                            m.sees_master(now),
                        );
                        if let Some(to) = flip {
                            notify_group(&g.lock().unwrap().cfg, to);
                        }
                        (own.or(view.fault), view.hold)
                    }
                };
                if fault != fault_reason {
                    match &fault {
                        Some(f) => warn!(reason = %f, "VRRP fault"),
                        None => info!("VRRP fault cleared"),
                    }
                    fault_reason = fault.clone();
                }
                let mut acts = m.set_priority(prio, now);
                acts.extend(m.set_fault(fault.is_some(), now));
                acts.extend(m.set_hold(hold, now));
                if !acts.is_empty() {
                    driver.exec(&m, acts).await;
                }
            }
        }
    }
}
