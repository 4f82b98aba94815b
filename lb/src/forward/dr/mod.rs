//! `lb_kind = "DR"`: direct routing, as LVS-DR. Viewers' frames to VIP:PORT get the chosen
//! real server's MAC (and the lb's as source) and go back out of the same interface; the
//! real server holds the VIP on `lo` (`edge dr-setup`) and answers the viewer directly, so
//! the lb carries only the viewer -> edge direction (ACKs, for video).
//!
//! The packets never reach userspace: [`nft`] renders a netdev-ingress table from a [`Plan`]
//! (servers with their MACs and effective weights, algorithm, persistence, sorry server) and
//! loads it in one transaction. This module keeps the plan current — a task per virtual
//! server re-plans on every health flip, weight change or reload ([`VsRuntime::changed`])
//! and once a second (MACs from the neighbour table: at once after a change, every tick while
//! one is missing, else every [`NEIGH_EVERY`]), reprograms when the plan differs, removes the
//! flows of servers that went DOWN from the connection table (so they move; a drained
//! server's flows stay), and reads counters and the connection table every [`READ_EVERY`]
//! for status and /metrics — over netlink ([`nl`]), not by running `nft`: once a second a
//! process per read was most of what DR cost the lb. It owns its kernel table: removed
//! when the virtual server stops, and any `edgefleet-*` table left by a killed lb is
//! removed at start ([`sweep_stale`]).
//!
//! Not this room's: scheduling and health (`dispatch`, `health`) — it reads their result.

pub mod net;
pub mod nft;
pub mod nl;

use crate::config::{Algo, VsConfig};
use crate::state::VsRuntime;
use nft::{Plan, PlanServer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;
use tracing::{info, warn, Instrument};

/// How often counters and the connection table are read (status and /metrics show this
/// cached reading: walking a large table on every scrape would cost too much).
pub const READ_EVERY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_secs(1);
/// How often the neighbour table is read when every MAC is known and nothing changed (a
/// health flip, a weight change or a reload reads it at once; a missing MAC every tick).
pub const NEIGH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DrError {
    #[error("{0}")]
    Nft(String),
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Setup(String),
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            *b = u8::from_str_radix(parts.next().ok_or(())?, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

/// What the datapath of one virtual server last reported.
#[derive(Debug, Clone, Default)]
pub struct DrStats {
    pub device: String,
    pub table: String,
    /// Per real server: MAC (once known), packets/bytes forwarded, flows open / closing.
    pub servers: HashMap<SocketAddr, RsDr>,
    /// Datapath counters by name (`nft::COUNTERS`): packets.
    pub counters: BTreeMap<String, u64>,
    pub programmed: u64,
    pub last_error: String,
}

#[derive(Debug, Clone, Default)]
pub struct RsDr {
    pub mac: Option<Mac>,
    pub packets: u64,
    pub bytes: u64,
    pub active: u64,
    pub inactive: u64,
}

pub struct DrForward {
    stats: Arc<Mutex<DrStats>>,
    task: AbortHandle,
    table: String,
    /// Held by every step that writes the table, and set by [`DrForward::stop`]: a step
    /// already running when the task is aborted would otherwise recreate the table after
    /// stop removed it.
    stopped: Arc<Mutex<bool>>,
}

impl DrForward {
    /// Programs the table once (so a start or reload reports a datapath that cannot be
    /// loaded), then keeps it current.
    pub async fn start(vs: Arc<VsRuntime>) -> Result<DrForward, DrError> {
        let table = nft::table_name(vs.address);
        let stats = Arc::new(Mutex::new(DrStats {
            table: table.clone(),
            ..DrStats::default()
        }));
        let mut state = State {
            vs: Arc::downgrade(&vs),
            stats: stats.clone(),
            macs: HashMap::new(),
            device: None,
            last: None,
            last_read: None,
            last_neigh: None,
            reader: None,
            turns: None,
            last_new_conn: None,
            errors: crate::accept::Throttle::new(crate::accept::LOG_EVERY),
            stopped: Arc::new(Mutex::new(false)),
        };
        let stopped = state.stopped.clone();
        drop(vs);
        let first = tokio::task::spawn_blocking(move || {
            let r = state.step(true);
            (state, r)
        })
        .await
        .map_err(|e| DrError::Setup(format!("DR setup task: {e}")))?;
        let (mut state, result) = first;
        result?;
        let span = tracing::info_span!(parent: None, "dr", table = %table);
        let task = tokio::spawn(
            async move {
                loop {
                    let Some(vs) = state.vs.upgrade() else { return };
                    let changed = tokio::time::timeout(TICK, vs.changed.notified())
                        .await
                        .is_ok();
                    drop(vs);
                    let (s, r) = match tokio::task::spawn_blocking(move || {
                        let r = state.step(changed);
                        (state, r)
                    })
                    .await
                    {
                        Ok(x) => x,
                        Err(_) => return,
                    };
                    state = s;
                    if let Err(e) = r {
                        state.stats.lock().unwrap().last_error = e.to_string();
                        if let Some(n) = state.errors.hit(std::time::Instant::now()) {
                            warn!(error = %e, failures = n, "DR datapath update failed; the previous table stays");
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok(DrForward {
            stats,
            task: task.abort_handle(),
            table,
            stopped,
        })
    }

    pub fn stats(&self) -> DrStats {
        self.stats.lock().unwrap().clone()
    }

    /// Removes the kernel table: no more forwarding for this virtual server.
    pub fn stop(&self) {
        self.task.abort();
        let mut stopped = self.stopped.lock().unwrap();
        *stopped = true;
        match nft::nft(&["delete", "table", "netdev", &self.table], None) {
            Ok(_) => info!(table = %self.table, "DR table removed"),
            Err(e) => warn!(table = %self.table, error = %e, "could not remove the DR table"),
        }
    }
}

/// The planning loop's memory between steps (runs on a blocking thread: it spawns `ip` and
/// `nft`).
struct State {
    vs: Weak<VsRuntime>,
    stats: Arc<Mutex<DrStats>>,
    /// Last known MAC per real server address; kept when the neighbour entry ages out.
    macs: HashMap<Ipv4Addr, Mac>,
    device: Option<(String, Mac)>,
    last: Option<Plan>,
    last_read: Option<Instant>,
    /// When the neighbour table was last read (MACs change rarely: see [`NEIGH_EVERY`]).
    last_neigh: Option<Instant>,
    reader: Option<nl::Reader>,
    /// lc/wlc: the turns the `seq` map holds, and the `new_conn` counter at the last reading.
    turns: Option<Vec<u32>>,
    last_new_conn: Option<u64>,
    errors: crate::accept::Throttle,
    stopped: Arc<Mutex<bool>>,
}

/// The seed of the kernel's jhash: from the virtual server's address, so every lb with this
/// virtual server uses the same one (and two virtual servers differ).
pub fn seed(vs: SocketAddr) -> u32 {
    crate::dispatch::hash::hash_bytes(vs.to_string().as_bytes(), 0x6466_6472) as u32
}

impl State {
    /// One round; `changed`: woken by a health flip, weight change or reload (not the tick).
    fn step(&mut self, changed: bool) -> Result<(), DrError> {
        let stopped = self.stopped.clone();
        let stopped = stopped.lock().unwrap();
        if *stopped {
            return Ok(());
        }
        let Some(vs) = self.vs.upgrade() else {
            return Ok(());
        };
        let cfg = vs.cfg.read().unwrap().clone();
        let servers: Vec<(SocketAddr, bool, u32)> = vs
            .servers
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.addr, r.is_up(), r.weight()))
            .collect();
        drop(vs);
        // After a change (a reload may move the real servers), ask the routes again: a table
        // hooks one device, so another one means a new table (its flows were on the old
        // segment's edges anyway).
        if changed && self.device.is_some() {
            let now = device_for(&cfg)?;
            if let Some((old, _)) = self.device.as_ref().filter(|(d, _)| *d != now) {
                warn!(from = %old, to = %now, "DR: the real servers moved to another interface; rebuilding the table there");
                let _ = nft::nft(
                    &["delete", "table", "netdev", &nft::table_name(cfg.address)],
                    None,
                );
                self.device = None;
                self.last = None;
                self.macs.clear();
            }
        }
        let (dev, lb_mac) = match &self.device {
            Some(d) => d.clone(),
            None => {
                let dev = device_for(&cfg)?;
                let mac = net::link_mac(&dev)?;
                info!(device = %dev, lb_mac = %mac, "DR: hooking the real servers' interface");
                self.device = Some((dev.clone(), mac));
                self.stats.lock().unwrap().device = dev.clone();
                (dev, mac)
            }
        };
        // MACs: the neighbour table, and a nudge for the ones still missing.
        let mut wanted: Vec<Ipv4Addr> = servers.iter().filter_map(|s| v4(s.0)).collect();
        wanted.extend(cfg.sorry_server.and_then(v4));
        let missing = wanted.iter().any(|ip| !self.macs.contains_key(ip));
        let neigh_due = changed
            || missing
            || self
                .last_neigh
                .map(|t| t.elapsed() >= NEIGH_EVERY)
                .unwrap_or(true);
        if neigh_due {
            self.last_neigh = Some(Instant::now());
        }
        if let Some(Ok(neigh)) = neigh_due.then(|| net::neighbours(&dev)) {
            for (ip, mac) in neigh {
                if wanted.contains(&ip) && self.macs.get(&ip) != Some(&mac) {
                    info!(rs = %ip, %mac, "DR: real server MAC learned");
                    self.macs.insert(ip, mac);
                }
            }
        }
        for ip in &wanted {
            if !self.macs.contains_key(ip) {
                net::provoke_arp(*ip);
            }
        }
        let plan = Plan {
            table: nft::table_name(cfg.address),
            device: dev.clone(),
            lb_mac,
            vip: v4(cfg.address).unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: cfg.address.port(),
            algo: cfg.algo,
            seed: seed(cfg.address),
            persistence: cfg.persistence.map(|p| (p.timeout, p.prefix_v4)),
            servers: servers
                .iter()
                .filter_map(|&(addr, up, w)| {
                    let mac = *self.macs.get(&v4(addr)?)?;
                    Some(PlanServer {
                        addr,
                        mac,
                        weight: if up { w } else { 0 },
                    })
                })
                .collect(),
            sorry: cfg
                .sorry_server
                .and_then(v4)
                .and_then(|ip| self.macs.get(&ip).copied()),
        };
        if self.last.as_ref() != Some(&plan) {
            let t0 = Instant::now();
            nft::nft(&["-f", "-"], Some(&nft::render(&plan)))?;
            let shrunk = self
                .last
                .as_ref()
                .map(|l| lost_servers(l, &plan))
                .unwrap_or_default();
            // Back from the sorry server: hit_conn refreshed its flows' clients into the
            // persistence map, pointing at it.
            let sorry_over = self
                .last
                .as_ref()
                .map(|l| !l.available() && l.sorry.is_some() && plan.available())
                .unwrap_or(false);
            if (!shrunk.is_empty() || sorry_over) && plan.persistence.is_some() {
                // A persistence entry must not send a client to a server that left the tables.
                let _ = nft::nft(&["flush", "map", "netdev", &plan.table, "persist"], None);
            }
            info!(
                servers = plan.servers.iter().filter(|s| s.weight > 0).count(),
                known = plan.servers.len(),
                configured = servers.len(),
                algo = plan.algo.name(),
                ms = t0.elapsed().as_millis() as u64,
                "DR table programmed"
            );
            self.stats.lock().unwrap().programmed += 1;
            self.turns = None;
            self.last = Some(plan.clone());
        }
        // A real server that goes DOWN keeps its established flows in the connection table
        // (LVS's default, expire_nodest_conn = 0): a check that fails once on a lossy link
        // moves no viewer, and a dead edge's host answers its viewers' next packets with a
        // reset. Only new flows follow the reprogrammed map.
        if self
            .last_read
            .map(|t| t.elapsed() >= READ_EVERY)
            .unwrap_or(true)
        {
            self.last_read = Some(Instant::now());
            self.read(&plan, &servers)?;
            if matches!(plan.algo, Algo::Lc | Algo::Wlc) && plan.available() {
                self.share_turns(&plan)?;
            }
        }
        self.stats.lock().unwrap().last_error.clear();
        Ok(())
    }

    /// The netlink reader, opened on first use and again after a failed read.
    fn reader(&mut self) -> Result<&mut nl::Reader, DrError> {
        if self.reader.is_none() {
            self.reader = Some(nl::Reader::new()?);
        }
        Ok(self.reader.as_mut().expect("just set"))
    }

    fn read(&mut self, plan: &Plan, servers: &[(SocketAddr, bool, u32)]) -> Result<(), DrError> {
        let r = self.read_tables(&plan.table);
        if r.is_err() {
            self.reader = None;
        }
        let (counters, conn, closing) = r?;
        let mut by_mac: HashMap<Mac, (u64, u64)> = HashMap::new();
        for (k, mac) in &conn {
            let e = by_mac.entry(*mac).or_default();
            if closing.contains(k) {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
        let mut st = self.stats.lock().unwrap();
        st.servers.clear();
        for (addr, _, _) in servers {
            let mac = v4(*addr).and_then(|ip| self.macs.get(&ip).copied());
            let mut r = RsDr {
                mac,
                ..RsDr::default()
            };
            if let Some(m) = mac {
                let (p, b) = counters
                    .get(&format!("rs_{}", m.to_string().replace(':', "")))
                    .copied()
                    .unwrap_or_default();
                let (a, i) = by_mac.get(&m).copied().unwrap_or_default();
                (r.packets, r.bytes, r.active, r.inactive) = (p, b, a, i);
            }
            st.servers.insert(*addr, r);
        }
        st.counters = nft::COUNTERS
            .iter()
            .map(|c| (c.to_string(), counters.get(*c).map(|x| x.0).unwrap_or(0)))
            .collect();
        Ok(())
    }
}

impl State {
    /// lc/wlc: shares the `seq` map's turns by the flows each server has open now (the
    /// reading just taken) and the flows that arrived since the last one; rewrites only
    /// that map, and only when the turns change.
    fn share_turns(&mut self, plan: &Plan) -> Result<(), DrError> {
        let (loads, new_conn) = {
            let st = self.stats.lock().unwrap();
            let loads: Vec<(u32, u64)> = plan
                .servers
                .iter()
                .map(|s| {
                    let open = st.servers.get(&s.addr).map(|r| r.active).unwrap_or(0);
                    (s.weight, open)
                })
                .collect();
            (loads, st.counters.get("new_conn").copied().unwrap_or(0))
        };
        let arriving = self
            .last_new_conn
            .map(|n| new_conn.saturating_sub(n))
            .unwrap_or(0);
        self.last_new_conn = Some(new_conn);
        let turns = nft::lc_turns(&loads, plan.algo == Algo::Wlc, arriving);
        if self.turns.as_ref() == Some(&turns) {
            return Ok(());
        }
        nft::nft(&["-f", "-"], Some(&nft::render_turns(plan, &turns)))?;
        tracing::debug!(?turns, ?loads, arriving, "DR: lc turns shared out");
        self.turns = Some(turns);
        Ok(())
    }
}

type Tables = (
    BTreeMap<String, (u64, u64)>,
    Vec<(nl::Flow, Mac)>,
    HashSet<nl::Flow>,
);

impl State {
    fn read_tables(&mut self, table: &str) -> Result<Tables, DrError> {
        let reader = self.reader()?;
        let counters = reader.counters(table)?;
        let conn = reader.conn(table)?;
        let closing = reader.closing(table)?.into_iter().collect();
        Ok((counters, conn, closing))
    }
}

fn v4(a: SocketAddr) -> Option<Ipv4Addr> {
    match a.ip() {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    }
}

/// Servers with a weight in `old` and none in `new`.
fn lost_servers(old: &Plan, new: &Plan) -> Vec<Mac> {
    old.servers
        .iter()
        .filter(|o| o.weight > 0)
        .filter(|o| !new.servers.iter().any(|n| n.mac == o.mac && n.weight > 0))
        .map(|o| o.mac)
        .collect()
}

/// The interface every real server (and the sorry server) is reached on, directly.
fn device_for(cfg: &VsConfig) -> Result<String, DrError> {
    let mut dev: Option<String> = None;
    let targets = cfg
        .real_servers
        .iter()
        .map(|r| r.address)
        .chain(cfg.sorry_server);
    for a in targets {
        let ip = v4(a).ok_or_else(|| DrError::Setup(format!("{a}: DR real servers are IPv4")))?;
        let r = net::route_get(ip)?;
        if let Some(gw) = r.gateway {
            return Err(DrError::Setup(format!(
                "{a} is reached through the gateway {gw} on {}: DR needs every real server on this host's own L2 segment (a route without a gateway)",
                r.dev
            )));
        }
        match &dev {
            None => dev = Some(r.dev),
            Some(d) if *d != r.dev => {
                return Err(DrError::Setup(format!(
                    "{a} is on {} but another real server is on {d}: the real servers of a DR virtual server share one interface",
                    r.dev
                )))
            }
            _ => {}
        }
    }
    dev.ok_or_else(|| DrError::Setup("no real server".into()))
}

/// Host checks of one DR virtual server (`lb --check` and start); each problem starts with
/// its key path below the virtual server (`.real_server[1]: ...`).
pub fn preflight(cfg: &VsConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if nft::nft(&["--version"], None).is_err() {
        problems.push(
            ".lb_kind: \"DR\" needs the nft binary (nftables), which is not installed: apt-get install nftables"
                .to_string(),
        );
    }
    let mut dev: Option<(String, String)> = None;
    let targets: Vec<(String, SocketAddr)> = cfg
        .real_servers
        .iter()
        .enumerate()
        .map(|(j, r)| (format!(".real_server[{j}].address"), r.address))
        .chain(cfg.sorry_server.map(|s| (".sorry_server".to_string(), s)))
        .collect();
    for (key, a) in targets {
        let Some(ip) = v4(a) else { continue };
        match net::route_get(ip) {
            Err(e) => problems.push(format!("{key}: {a}: cannot find the route to it: {e}")),
            Ok(r) => {
                if let Some(gw) = &r.gateway {
                    problems.push(format!(
                        "{key}: {a} is reached through the gateway {gw} on {}: with lb_kind = \"DR\" every real server must be on this host's own L2 segment (a route without a gateway)",
                        r.dev
                    ));
                    continue;
                }
                match &dev {
                    None => dev = Some((r.dev, a.to_string())),
                    Some((d, other)) if *d != r.dev => problems.push(format!(
                        "{key}: {a} is on {} but {other} is on {d}: the real servers of a DR virtual server share one interface",
                        r.dev
                    )),
                    _ => {}
                }
            }
        }
    }
    problems
}

/// Removes every `edgefleet-*` netdev table (left by an lb that was killed: the kernel
/// keeps a table until someone deletes it). Nothing to do without `nft`.
pub fn sweep_stale() {
    let Ok(json) = nft::nft(&["-j", "list", "tables", "netdev"], None) else {
        return;
    };
    for t in nft::parse_our_tables(&json) {
        match nft::nft(&["delete", "table", "netdev", &t], None) {
            Ok(_) => {
                warn!(table = %t, "removed a stale DR table (an earlier lb did not stop cleanly)")
            }
            Err(e) => warn!(table = %t, error = %e, "could not remove a stale DR table"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "02:0A:00:00:00:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:0a:00:00:00:ff");
        assert!("02:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:00:01".parse::<Mac>().is_err());
        assert!("zz:00:00:00:00:00".parse::<Mac>().is_err());
    }

    #[test]
    fn seed_is_per_virtual_server_and_stable() {
        let a = seed("198.18.0.100:1935".parse().unwrap());
        assert_eq!(a, seed("198.18.0.100:1935".parse().unwrap()));
        assert_ne!(a, seed("198.18.0.100:1936".parse().unwrap()));
    }
}
