//! A reload as data: [`plan`] compares the config that runs with a new one, key by key, and
//! returns every change, each with when it takes effect. `balancer` carries out the changes
//! of virtual servers, real servers and VRRP instances
//! ([`crate::balancer::Balancer::carry_out`]); `lib` those of the admin API, and logs each
//! change as one line ([`log`]). No sockets here: tested below from configs alone.
//!
//! A virtual server is known by its `address`, a real server by its `address` within its
//! virtual server, a VRRP instance by its `name`: a change of one of those is a removal and
//! an addition. No key needs a restart of lb.

use crate::config::{Check, CheckKind, LbConfig, Persistence, RsConfig, VrrpConfig, VsConfig};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One change of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A top-level key.
    Global {
        key: GlobalKey,
        old: String,
        new: String,
    },
    VsAdded {
        vs: SocketAddr,
        what: String,
    },
    VsRemoved {
        vs: SocketAddr,
    },
    /// A key of a virtual server that stays.
    Vs {
        vs: SocketAddr,
        key: VsKey,
        old: String,
        new: String,
    },
    RsAdded {
        vs: SocketAddr,
        rs: SocketAddr,
    },
    RsRemoved {
        vs: SocketAddr,
        rs: SocketAddr,
    },
    /// A key of a real server that stays.
    Rs {
        vs: SocketAddr,
        rs: SocketAddr,
        key: RsKey,
        old: String,
        new: String,
    },
    VrrpAdded {
        name: String,
    },
    VrrpRemoved {
        name: String,
    },
    /// A key of a VRRP instance that stays (by name); any of them restarts the instance.
    Vrrp {
        name: String,
        key: &'static str,
        old: String,
        new: String,
    },
}

/// The top-level keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKey {
    AdminListen,
    AdminTimeout,
    AdminTokenFile,
    /// The token itself (from `admin_token_file` or the environment), which a reload re-reads
    /// even when the path stays; never shown, only set / changed / unset.
    AdminToken,
    ProxyCopy,
}

/// The keys of a virtual server (`address` is its identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsKey {
    Kind,
    Algo,
    PersistenceTimeout,
    PersistenceGranularity,
    DelayLoop,
    SorryServer,
    MaxConnections,
    IdleTimeout,
    ConnectTimeout,
    /// The order of the real servers that stay (sh and mh tables follow the list's order).
    RealServerOrder,
}

/// The keys of a real server (`address` is its identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RsKey {
    Weight,
    InhibitOnFailure,
    SendProxy,
    /// `tcp_check` / `rtmp_check` and every key in them.
    Check,
    Api,
}

impl GlobalKey {
    pub fn name(self) -> &'static str {
        match self {
            GlobalKey::AdminListen => "admin_listen",
            GlobalKey::AdminTimeout => "admin_timeout",
            GlobalKey::AdminTokenFile => "admin_token_file",
            GlobalKey::AdminToken => "admin token",
            GlobalKey::ProxyCopy => "proxy_copy",
        }
    }

    fn effect(self) -> &'static str {
        match self {
            GlobalKey::AdminListen => {
                "at once: the admin API moves to the new address (open admin connections finish)"
            }
            GlobalKey::AdminTimeout => "for new admin connections",
            GlobalKey::AdminTokenFile | GlobalKey::AdminToken => "for the next admin request",
            GlobalKey::ProxyCopy => "for new connections of every PROXY virtual server",
        }
    }
}

impl VsKey {
    pub fn name(self) -> &'static str {
        match self {
            VsKey::Kind => "lb_kind",
            VsKey::Algo => "lb_algo",
            VsKey::PersistenceTimeout => "persistence_timeout",
            VsKey::PersistenceGranularity => "persistence_granularity",
            VsKey::DelayLoop => "delay_loop",
            VsKey::SorryServer => "sorry_server",
            VsKey::MaxConnections => "max_connections",
            VsKey::IdleTimeout => "idle_timeout",
            VsKey::ConnectTimeout => "connect_timeout",
            VsKey::RealServerOrder => "real_server order",
        }
    }

    fn effect(self) -> &'static str {
        match self {
            VsKey::Kind => {
                "at once: the forwarding method switches (PROXY connections in flight finish)"
            }
            VsKey::Algo | VsKey::PersistenceTimeout | VsKey::PersistenceGranularity => {
                "at once for new connections (persistence entries start over)"
            }
            VsKey::DelayLoop => "at once: the checks restart on the new period",
            VsKey::SorryServer
            | VsKey::MaxConnections
            | VsKey::IdleTimeout
            | VsKey::ConnectTimeout => "for new connections",
            VsKey::RealServerOrder => "at once for new connections",
        }
    }
}

impl RsKey {
    pub fn name(self) -> &'static str {
        match self {
            RsKey::Weight => "weight",
            RsKey::InhibitOnFailure => "inhibit_on_failure",
            RsKey::SendProxy => "send_proxy",
            RsKey::Check => "check",
            RsKey::Api => "api",
        }
    }

    fn effect(self) -> &'static str {
        match self {
            RsKey::Weight => "at once (an admin weight override ends)",
            RsKey::InhibitOnFailure => "at once",
            RsKey::SendProxy => "for new connections and the next check",
            RsKey::Check => "at once: the check restarts and health starts over (UP)",
            RsKey::Api => "at the fleet page's next read",
        }
    }
}

impl Change {
    /// The key's name as the config spells it (`delay_loop`, `real_server.weight`,
    /// `vrrp_instance.priority`; `virtual_server` for an addition or removal).
    pub fn key(&self) -> String {
        match self {
            Change::Global { key, .. } => key.name().to_string(),
            Change::VsAdded { .. } | Change::VsRemoved { .. } => "virtual_server".into(),
            Change::Vs { key, .. } => key.name().to_string(),
            Change::RsAdded { .. } | Change::RsRemoved { .. } => "real_server".into(),
            Change::Rs { key, .. } => format!("real_server.{}", key.name()),
            Change::VrrpAdded { .. } | Change::VrrpRemoved { .. } => "vrrp_instance".into(),
            Change::Vrrp { key, .. } => format!("vrrp_instance.{key}"),
        }
    }

    /// The value before ("-" for an addition).
    pub fn before(&self) -> String {
        match self {
            Change::Global { old, .. }
            | Change::Vs { old, .. }
            | Change::Rs { old, .. }
            | Change::Vrrp { old, .. } => old.clone(),
            Change::VsRemoved { vs } => vs.to_string(),
            Change::RsRemoved { rs, .. } => rs.to_string(),
            Change::VrrpRemoved { name } => name.clone(),
            Change::VsAdded { .. } | Change::RsAdded { .. } | Change::VrrpAdded { .. } => {
                "-".into()
            }
        }
    }

    /// The value after ("-" for a removal).
    pub fn after(&self) -> String {
        match self {
            Change::Global { new, .. }
            | Change::Vs { new, .. }
            | Change::Rs { new, .. }
            | Change::Vrrp { new, .. } => new.clone(),
            Change::VsAdded { vs, what } => format!("{vs} ({what})"),
            Change::RsAdded { rs, .. } => rs.to_string(),
            Change::VrrpAdded { name } => name.clone(),
            Change::VsRemoved { .. } | Change::RsRemoved { .. } | Change::VrrpRemoved { .. } => {
                "-".into()
            }
        }
    }

    /// When and how it takes effect.
    pub fn effect(&self) -> &'static str {
        match self {
            Change::Global { key, .. } => key.effect(),
            Change::Vs { key, .. } => key.effect(),
            Change::Rs { key, .. } => key.effect(),
            Change::VsAdded { .. } => "at once: it listens (PROXY) or is programmed (DR)",
            Change::VsRemoved { .. } => {
                "at once: no new connections; established PROXY connections continue"
            }
            Change::RsAdded { .. } => "at once: it takes new connections",
            Change::RsRemoved { .. } => {
                "at once: no new connections; its established ones continue"
            }
            Change::VrrpAdded { .. } => "at once",
            Change::VrrpRemoved { .. } => "at once (a master hands over first)",
            Change::Vrrp { .. } => "at once: the instance restarts (a master hands over first)",
        }
    }

    /// The virtual server it belongs to, if any.
    pub fn vs(&self) -> Option<SocketAddr> {
        match self {
            Change::VsAdded { vs, .. }
            | Change::VsRemoved { vs }
            | Change::Vs { vs, .. }
            | Change::RsAdded { vs, .. }
            | Change::RsRemoved { vs, .. }
            | Change::Rs { vs, .. } => Some(*vs),
            _ => None,
        }
    }

    /// The real server it belongs to, if any.
    pub fn rs(&self) -> Option<SocketAddr> {
        match self {
            Change::RsAdded { rs, .. } | Change::RsRemoved { rs, .. } | Change::Rs { rs, .. } => {
                Some(*rs)
            }
            _ => None,
        }
    }

    /// The VRRP instance it belongs to, if any.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Change::VrrpAdded { name }
            | Change::VrrpRemoved { name }
            | Change::Vrrp { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(vs) = self.vs() {
            write!(f, "virtual_server {vs} ")?;
        }
        if let Some(rs) = self.rs() {
            write!(f, "real_server {rs} ")?;
        }
        if let Some(name) = self.instance() {
            write!(f, "vrrp_instance {name} ")?;
        }
        write!(
            f,
            "{}: {} -> {} ({})",
            self.key(),
            self.before(),
            self.after(),
            self.effect()
        )
    }
}

/// Logs one change as a structured line (key, old, new, when it applies, and where).
pub fn log(c: &Change) {
    tracing::info!(
        key = %c.key(),
        old = %c.before(),
        new = %c.after(),
        effect = c.effect(),
        vs = c.vs().map(tracing::field::display),
        rs = c.rs().map(tracing::field::display),
        instance = c.instance(),
        "reload: changed"
    );
}

/// How a secret shows in a plan: whether it is there and whether it changed, never itself.
pub fn secret_change<T: PartialEq>(old: Option<&T>, new: Option<&T>) -> Option<(String, String)> {
    let shown = |s: Option<&T>| if s.is_some() { "set" } else { "unset" };
    match (old, new) {
        (Some(a), Some(b)) if a != b => Some(("set".into(), "changed".into())),
        (a, b) if a.is_some() != b.is_some() => Some((shown(a).into(), shown(b).into())),
        _ => None,
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

fn check_text(c: &Option<Check>) -> String {
    let Some(c) = c else {
        return "none".into();
    };
    let Check {
        kind,
        connect_timeout,
        retry,
        delay_before_retry,
        connect_port,
        warmup,
    } = c;
    let (name, stream) = match kind {
        CheckKind::Tcp => ("tcp_check", String::new()),
        CheckKind::Http { urls } => (
            "http_get",
            format!(
                "url {}, ",
                urls.iter()
                    .map(|u| format!("{} -> {}", common::redact::query(&u.path), u.status_code))
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        ),
        CheckKind::Misc {
            argv,
            timeout,
            dynamic,
        } => (
            "misc_check",
            format!(
                "misc_path {:?}, misc_timeout {}, misc_dynamic {dynamic}, ",
                argv.join(" "),
                secs(*timeout)
            ),
        ),
        CheckKind::Rtmp { stream: None } => ("rtmp_check", String::new()),
        CheckKind::Rtmp {
            stream: Some((app, name)),
        } => (
            "rtmp_check",
            // A stream name may carry a key in its query: masked.
            format!(
                "stream {}, ",
                common::redact::query(&format!("{app}/{name}"))
            ),
        ),
    };
    format!(
        "{name}({stream}connect_timeout {}, retry {retry}, delay_before_retry {}, connect_port {}, warmup {})",
        secs(*connect_timeout),
        secs(*delay_before_retry),
        opt(*connect_port),
        secs(*warmup)
    )
}

fn granularity(p: &Persistence) -> String {
    format!("/{} (IPv6 /{})", p.prefix_v4, p.prefix_v6)
}

/// The changes from `old` (what runs) to `new`, in the order they are carried out: top-level
/// keys, removed virtual servers, then each virtual server of `new` (added, or its keys and
/// real servers), then VRRP instances.
pub fn plan(old: &LbConfig, new: &LbConfig) -> Vec<Change> {
    // Destructured so that a key added to LbConfig and forgotten here fails to compile.
    let LbConfig {
        admin_listen,
        admin_token_file,
        admin_timeout,
        proxy_copy,
        virtual_servers,
        vrrp_instances,
    } = new;
    let mut out = Vec::new();
    let mut global = |key: GlobalKey, a: String, b: String| {
        if a != b {
            out.push(Change::Global {
                key,
                old: a,
                new: b,
            });
        }
    };
    global(
        GlobalKey::AdminListen,
        old.admin_listen.to_string(),
        admin_listen.to_string(),
    );
    global(
        GlobalKey::AdminTimeout,
        secs(old.admin_timeout),
        secs(*admin_timeout),
    );
    global(
        GlobalKey::AdminTokenFile,
        opt(old.admin_token_file.as_ref().map(|p| p.display())),
        opt(admin_token_file.as_ref().map(|p| p.display())),
    );
    global(
        GlobalKey::ProxyCopy,
        old.proxy_copy.name().into(),
        proxy_copy.name().into(),
    );
    for o in &old.virtual_servers {
        if !virtual_servers.iter().any(|n| n.address == o.address) {
            out.push(Change::VsRemoved { vs: o.address });
        }
    }
    for n in virtual_servers {
        match old.virtual_servers.iter().find(|o| o.address == n.address) {
            None => out.push(Change::VsAdded {
                vs: n.address,
                what: format!(
                    "{}, {}, {} real server(s)",
                    n.algo.name(),
                    n.kind.name(),
                    n.real_servers.len()
                ),
            }),
            Some(o) => out.extend(virtual_server_changes(o, n)),
        }
    }
    for o in &old.vrrp_instances {
        if !vrrp_instances.iter().any(|n| n.name == o.name) {
            out.push(Change::VrrpRemoved {
                name: o.name.clone(),
            });
        }
    }
    for n in vrrp_instances {
        match old.vrrp_instances.iter().find(|o| o.name == n.name) {
            None => out.push(Change::VrrpAdded {
                name: n.name.clone(),
            }),
            Some(o) => vrrp_instance(o, n, &mut out),
        }
    }
    out
}

/// The changes of one virtual server that stays (same address), in plan order.
pub fn virtual_server_changes(old: &VsConfig, new: &VsConfig) -> Vec<Change> {
    let mut changes = Vec::new();
    let out = &mut changes;
    let VsConfig {
        address: vs,
        algo,
        kind,
        persistence,
        delay_loop,
        sorry_server,
        max_connections,
        idle_timeout,
        connect_timeout,
        real_servers,
    } = new;
    let vs = *vs;
    let mut key = |key: VsKey, a: String, b: String| {
        if a != b {
            out.push(Change::Vs {
                vs,
                key,
                old: a,
                new: b,
            });
        }
    };
    key(VsKey::Kind, old.kind.name().into(), kind.name().into());
    key(VsKey::Algo, old.algo.name().into(), algo.name().into());
    let timeout = |p: &Option<Persistence>| opt(p.map(|p| secs(p.timeout)));
    key(
        VsKey::PersistenceTimeout,
        timeout(&old.persistence),
        timeout(persistence),
    );
    if let (Some(a), Some(b)) = (&old.persistence, persistence) {
        key(
            VsKey::PersistenceGranularity,
            granularity(a),
            granularity(b),
        );
    }
    key(VsKey::DelayLoop, secs(old.delay_loop), secs(*delay_loop));
    key(
        VsKey::SorryServer,
        opt(old.sorry_server),
        opt(*sorry_server),
    );
    key(
        VsKey::MaxConnections,
        old.max_connections.to_string(),
        max_connections.to_string(),
    );
    key(
        VsKey::IdleTimeout,
        secs(old.idle_timeout),
        secs(*idle_timeout),
    );
    key(
        VsKey::ConnectTimeout,
        secs(old.connect_timeout),
        secs(*connect_timeout),
    );
    // The servers that stay, in each list's order.
    let order = |list: &[RsConfig], other: &[RsConfig]| {
        list.iter()
            .filter(|r| other.iter().any(|o| o.address == r.address))
            .map(|r| r.address.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    key(
        VsKey::RealServerOrder,
        order(&old.real_servers, real_servers),
        order(real_servers, &old.real_servers),
    );
    for o in &old.real_servers {
        if !real_servers.iter().any(|n| n.address == o.address) {
            out.push(Change::RsRemoved { vs, rs: o.address });
        }
    }
    for n in real_servers {
        match old.real_servers.iter().find(|o| o.address == n.address) {
            None => out.push(Change::RsAdded { vs, rs: n.address }),
            Some(o) => real_server(vs, o, n, out),
        }
    }
    changes
}

fn real_server(vs: SocketAddr, old: &RsConfig, new: &RsConfig, out: &mut Vec<Change>) {
    let RsConfig {
        address: rs,
        weight,
        inhibit_on_failure,
        send_proxy,
        check,
        api,
    } = new;
    let rs = *rs;
    let mut key = |key: RsKey, a: String, b: String| {
        if a != b {
            out.push(Change::Rs {
                vs,
                rs,
                key,
                old: a,
                new: b,
            });
        }
    };
    key(RsKey::Weight, old.weight.to_string(), weight.to_string());
    key(
        RsKey::InhibitOnFailure,
        old.inhibit_on_failure.to_string(),
        inhibit_on_failure.to_string(),
    );
    let v2 = |b: bool| if b { "v2" } else { "none" }.to_string();
    key(RsKey::SendProxy, v2(old.send_proxy), v2(*send_proxy));
    key(RsKey::Api, old.api.to_string(), api.to_string());
    // Compared whole: two checks that print alike (rounding) still count as a change.
    if old.check != *check {
        out.push(Change::Rs {
            vs,
            rs,
            key: RsKey::Check,
            old: check_text(&old.check),
            new: check_text(check),
        });
    }
}

fn vrrp_instance(old: &VrrpConfig, new: &VrrpConfig, out: &mut Vec<Change>) {
    let VrrpConfig {
        name,
        start_as_master,
        interface,
        vrid,
        priority,
        advert_int,
        version,
        nopreempt,
        preempt_delay,
        vips,
        auth_pass,
        unicast_src_ip,
        unicast_peer,
        garp_master_delay,
        garp_master_repeat,
        track_interface,
        track_virtual_servers,
        track_weight,
        track_script,
        sync_group,
        notify_master,
        notify_backup,
        notify_fault,
        notify_stop,
        notify,
    } = new;
    let mut key = |key: &'static str, a: String, b: String| {
        if a != b {
            out.push(Change::Vrrp {
                name: name.clone(),
                key,
                old: a,
                new: b,
            });
        }
    };
    let state = |m: bool| if m { "MASTER" } else { "BACKUP" }.to_string();
    let list = |l: &[String]| l.join(",");
    let ips = |l: &[std::net::IpAddr]| {
        l.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let script = |s: &Option<String>| opt(s.as_ref());
    key("state", state(old.start_as_master), state(*start_as_master));
    key("interface", old.interface.clone(), interface.clone());
    key("virtual_router_id", old.vrid.to_string(), vrid.to_string());
    key("priority", old.priority.to_string(), priority.to_string());
    key("advert_int", secs(old.advert_int), secs(*advert_int));
    key("version", old.version.to_string(), version.to_string());
    key(
        "nopreempt",
        old.nopreempt.to_string(),
        nopreempt.to_string(),
    );
    key(
        "preempt_delay",
        secs(old.preempt_delay),
        secs(*preempt_delay),
    );
    let cidrs = |l: &[(std::net::IpAddr, u8)]| {
        l.iter()
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    key("virtual_ipaddress", cidrs(&old.vips), cidrs(vips));
    if let Some((a, b)) = secret_change(old.auth_pass.as_ref(), auth_pass.as_ref()) {
        key("authentication.auth_pass", a, b);
    }
    key(
        "unicast_src_ip",
        opt(old.unicast_src_ip),
        opt(*unicast_src_ip),
    );
    key("unicast_peer", ips(&old.unicast_peer), ips(unicast_peer));
    key(
        "garp_master_delay",
        secs(old.garp_master_delay),
        secs(*garp_master_delay),
    );
    key(
        "garp_master_repeat",
        old.garp_master_repeat.to_string(),
        garp_master_repeat.to_string(),
    );
    key(
        "track_interface",
        list(&old.track_interface),
        list(track_interface),
    );
    key(
        "track_virtual_servers",
        old.track_virtual_servers.to_string(),
        track_virtual_servers.to_string(),
    );
    key(
        "track_weight",
        old.track_weight.to_string(),
        track_weight.to_string(),
    );
    key(
        "notify_master",
        script(&old.notify_master),
        script(notify_master),
    );
    key(
        "notify_backup",
        script(&old.notify_backup),
        script(notify_backup),
    );
    key(
        "notify_fault",
        script(&old.notify_fault),
        script(notify_fault),
    );
    key("notify_stop", script(&old.notify_stop), script(notify_stop));
    key("notify", script(&old.notify), script(notify));
    // A changed vrrp_script (any of its keys) shows on every instance tracking it.
    let tracks = |l: &[crate::config::TrackScript]| {
        l.iter()
            .map(|t| {
                let s = &t.script;
                format!(
                    "{}({:?} every {} timeout {} rise {} fall {} weight {})",
                    s.name,
                    s.script,
                    secs(s.interval),
                    secs(s.timeout),
                    s.rise,
                    s.fall,
                    t.weight
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    key(
        "track_script",
        tracks(&old.track_script),
        tracks(track_script),
    );
    let group = |g: &Option<crate::config::SyncGroupConfig>| match g {
        None => "none".to_string(),
        Some(g) => format!(
            "{}[{}] notify {}/{}/{}/{} tracking_weight {}",
            g.name,
            g.members.join(","),
            opt(g.notify_master.as_ref()),
            opt(g.notify_backup.as_ref()),
            opt(g.notify_fault.as_ref()),
            opt(g.notify.as_ref()),
            g.tracking_weight
        ),
    };
    key("vrrp_sync_group", group(&old.sync_group), group(sync_group));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::fields_of;
    use crate::config::{
        RawAuth, RawCheck, RawConfig, RawRealServer, RawUrl, RawVirtualServer, RawVrrp,
    };

    const VS: &str = "127.0.0.1:1935";
    // On the virtual server's port, so that the base is valid with lb_kind = "DR" too.
    const RS: &str = "127.0.0.2:1935";
    const RS2: &str = "127.0.0.3:1935";
    const AUTH: &str = "authentication = { auth_type = \"PASS\", auth_pass = \"secret1\" }\n";

    /// A base config with every table, each key given its default or a plain value; a case
    /// replaces one line of it (or adds one).
    fn base() -> String {
        format!(
            r#"admin_listen = "127.0.0.1:9180"
admin_timeout = 10
proxy_copy = "splice"

[[virtual_server]]
address = "{VS}"
lb_algo = "rr"
lb_kind = "PROXY"
persistence_timeout = 50
persistence_granularity = "255.255.255.255"
delay_loop = 6
max_connections = 1000
idle_timeout = 300
connect_timeout = 3

[[virtual_server.real_server]]
address = "{RS}"
weight = 1
inhibit_on_failure = false
[virtual_server.real_server.tcp_check]
connect_timeout = 3
retry = 3
delay_before_retry = 3

[[virtual_server.real_server]]
address = "{RS2}"
weight = 1

[[vrrp_instance]]
name = "VI_1"
state = "BACKUP"
interface = "eth0"
virtual_router_id = 51
priority = 100
advert_int = 1
version = 2
{AUTH}preempt_delay = 0
virtual_ipaddress = ["198.18.0.100/24"]
unicast_src_ip = "198.18.0.2"
unicast_peer = ["198.18.0.3"]
garp_master_delay = 5
garp_master_repeat = 5
track_interface = ["eth0"]
track_virtual_servers = true
track_weight = 0
track_script = ["chk_a"]

[[vrrp_script]]
name = "chk_a"
script = "/bin/true"
interval = 2
timeout = 2
weight = -20
rise = 1
fall = 1
"#
        )
    }

    /// A sync group of VI_1 (added after the base's last line), with `more` keys.
    fn group(more: &str) -> String {
        format!("\n[[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\"]\n{more}")
    }

    const TCP_BLOCK: &str = "[virtual_server.real_server.tcp_check]\nconnect_timeout = 3\nretry = 3\ndelay_before_retry = 3\n";

    fn http_block(path: &str, more: &str) -> String {
        format!("[virtual_server.real_server.http_get]\nconnect_timeout = 3\nretry = 3\ndelay_before_retry = 3\n[[virtual_server.real_server.http_get.url]]\npath = \"{path}\"\n{more}")
    }

    fn parse(src: &str) -> LbConfig {
        LbConfig::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
    }

    /// `base()` with `from` replaced by `to` (which must be there once), or `to` added after
    /// the line `from` when `from` ends with a newline marker "+".
    fn with(from: &str, to: &str) -> LbConfig {
        let b = base();
        let src = match from.strip_suffix('+') {
            Some(anchor) => {
                assert!(b.contains(anchor), "no {anchor:?} in the base");
                b.replacen(anchor, &format!("{anchor}\n{to}"), 1)
            }
            None => {
                assert_eq!(
                    b.matches(from).count(),
                    1,
                    "{from:?} is not once in the base"
                );
                b.replacen(from, to, 1)
            }
        };
        parse(&src)
    }

    fn keys(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| c.key()).collect()
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let b = parse(&base());
        assert_eq!(plan(&b, &b), vec![]);
    }

    /// Every key of the file, changed alone from the base, shows in the plan under its name
    /// (and nothing else does); every key the schema has must be in this list, so a key added
    /// to the config without a case here fails this test (and one added to the typed config
    /// without a line in `plan` fails to compile).
    #[test]
    fn every_key_is_in_the_plan() {
        let b = parse(&base());
        let vs_line = format!("address = \"{VS}\"");
        // (section, TOML key, what to replace, with what, the plan keys expected)
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, String, String, Vec<&str>)> = vec![
            ("", "admin_listen", "admin_listen = \"127.0.0.1:9180\"".into(), "admin_listen = \"127.0.0.1:9181\"".into(), vec!["admin_listen"]),
            ("", "admin_timeout", "admin_timeout = 10".into(), "admin_timeout = 2.5".into(), vec!["admin_timeout"]),
            ("", "admin_token_file", "admin_timeout = 10+".into(), "admin_token_file = \"/etc/edgefleet/lb.token\"".into(), vec!["admin_token_file"]),
            ("", "proxy_copy", "proxy_copy = \"splice\"".into(), "proxy_copy = \"buffered\"".into(), vec!["proxy_copy"]),
            ("virtual_server", "address", vs_line.clone(), "address = \"127.0.0.1:1936\"".into(), vec!["virtual_server", "virtual_server"]),
            ("virtual_server", "lb_algo", "lb_algo = \"rr\"".into(), "lb_algo = \"wlc\"".into(), vec!["lb_algo"]),
            ("virtual_server", "lb_kind", "lb_kind = \"PROXY\"".into(), "lb_kind = \"DR\"".into(), vec!["lb_kind"]),
            ("virtual_server", "persistence_timeout", "persistence_timeout = 50".into(), "persistence_timeout = 60".into(), vec!["persistence_timeout"]),
            ("virtual_server", "persistence_granularity", "persistence_granularity = \"255.255.255.255\"".into(), "persistence_granularity = \"/24\"".into(), vec!["persistence_granularity"]),
            ("virtual_server", "delay_loop", "delay_loop = 6".into(), "delay_loop = 0.5".into(), vec!["delay_loop"]),
            ("virtual_server", "sorry_server", "delay_loop = 6+".into(), "sorry_server = \"127.0.0.1:19359\"".into(), vec!["sorry_server"]),
            ("virtual_server", "max_connections", "max_connections = 1000".into(), "max_connections = 10".into(), vec!["max_connections"]),
            ("virtual_server", "idle_timeout", "idle_timeout = 300".into(), "idle_timeout = 30".into(), vec!["idle_timeout"]),
            ("virtual_server", "connect_timeout", "connect_timeout = 3\n\n".into(), "connect_timeout = 1\n\n".into(), vec!["connect_timeout"]),
            ("virtual_server", "real_server", format!("[[virtual_server.real_server]]\naddress = \"{RS2}\"\nweight = 1\n"), String::new(), vec!["real_server"]),
            ("real_server", "address", format!("address = \"{RS}\""), "address = \"127.0.0.1:19353\"".into(), vec!["real_server", "real_server"]),
            ("real_server", "weight", "weight = 1\ninhibit".into(), "weight = 5\ninhibit".into(), vec!["real_server.weight"]),
            ("real_server", "inhibit_on_failure", "inhibit_on_failure = false".into(), "inhibit_on_failure = true".into(), vec!["real_server.inhibit_on_failure"]),
            ("real_server", "send_proxy", "inhibit_on_failure = false+".into(), "send_proxy = \"v2\"".into(), vec!["real_server.send_proxy"]),
            ("real_server", "api", "inhibit_on_failure = false+".into(), "api = \"127.0.0.1:1990\"".into(), vec!["real_server.api"]),
            ("real_server", "tcp_check", "[virtual_server.real_server.tcp_check]\nconnect_timeout = 3\nretry = 3\ndelay_before_retry = 3\n".into(), String::new(), vec!["real_server.check"]),
            ("real_server", "rtmp_check", "[virtual_server.real_server.tcp_check]".into(), "[virtual_server.real_server.rtmp_check]".into(), vec!["real_server.check"]),
            ("check", "connect_timeout", "connect_timeout = 3\nretry".into(), "connect_timeout = 2\nretry".into(), vec!["real_server.check"]),
            ("check", "retry", "\nretry = 3".into(), "\nretry = 1".into(), vec!["real_server.check"]),
            ("check", "nb_get_retry", "\nretry = 3".into(), "\nnb_get_retry = 2".into(), vec!["real_server.check"]),
            ("check", "delay_before_retry", "delay_before_retry = 3".into(), "delay_before_retry = 1".into(), vec!["real_server.check"]),
            ("check", "stream", "[virtual_server.real_server.tcp_check]".into(), "[virtual_server.real_server.rtmp_check]\nstream = \"live/probe\"".into(), vec!["real_server.check"]),
            ("real_server", "http_get", TCP_BLOCK.into(), http_block("/", ""), vec!["real_server.check"]),
            ("check", "url", TCP_BLOCK.into(), http_block("/api/v1/streams", ""), vec!["real_server.check"]),
            ("check", "connect_port", "delay_before_retry = 3+".into(), "connect_port = 1985".into(), vec!["real_server.check"]),
            ("url", "path", TCP_BLOCK.into(), http_block("/x", ""), vec!["real_server.check"]),
            ("url", "status_code", TCP_BLOCK.into(), http_block("/", "status_code = 204\n"), vec!["real_server.check"]),
            ("vrrp_instance", "name", "name = \"VI_1\"".into(), "name = \"VI_2\"".into(), vec!["vrrp_instance", "vrrp_instance"]),
            ("vrrp_instance", "state", "state = \"BACKUP\"".into(), "state = \"MASTER\"".into(), vec!["vrrp_instance.state"]),
            ("vrrp_instance", "interface", "interface = \"eth0\"".into(), "interface = \"eth1\"".into(), vec!["vrrp_instance.interface"]),
            ("vrrp_instance", "virtual_router_id", "virtual_router_id = 51".into(), "virtual_router_id = 52".into(), vec!["vrrp_instance.virtual_router_id"]),
            ("vrrp_instance", "priority", "priority = 100".into(), "priority = 150".into(), vec!["vrrp_instance.priority"]),
            ("vrrp_instance", "advert_int", "advert_int = 1".into(), "advert_int = 2".into(), vec!["vrrp_instance.advert_int"]),
            ("vrrp_instance", "version", format!("version = 2\n{AUTH}"), "version = 3\n".into(), vec!["vrrp_instance.version", "vrrp_instance.authentication.auth_pass"]),
            ("vrrp_instance", "nopreempt", "preempt_delay = 0+".into(), "nopreempt = true".into(), vec!["vrrp_instance.nopreempt"]),
            ("vrrp_instance", "preempt_delay", "preempt_delay = 0".into(), "preempt_delay = 10".into(), vec!["vrrp_instance.preempt_delay"]),
            ("vrrp_instance", "virtual_ipaddress", "virtual_ipaddress = [\"198.18.0.100/24\"]".into(), "virtual_ipaddress = [\"198.18.0.100/24\", \"198.18.0.101\"]".into(), vec!["vrrp_instance.virtual_ipaddress"]),
            ("vrrp_instance", "authentication", AUTH.into(), String::new(), vec!["vrrp_instance.authentication.auth_pass"]),
            ("vrrp_instance", "unicast_src_ip", "unicast_src_ip = \"198.18.0.2\"".into(), "unicast_src_ip = \"198.18.0.4\"".into(), vec!["vrrp_instance.unicast_src_ip"]),
            ("vrrp_instance", "unicast_peer", "unicast_peer = [\"198.18.0.3\"]".into(), "unicast_peer = [\"198.18.0.5\"]".into(), vec!["vrrp_instance.unicast_peer"]),
            ("vrrp_instance", "garp_master_delay", "garp_master_delay = 5".into(), "garp_master_delay = 1".into(), vec!["vrrp_instance.garp_master_delay"]),
            ("vrrp_instance", "garp_master_repeat", "garp_master_repeat = 5".into(), "garp_master_repeat = 2".into(), vec!["vrrp_instance.garp_master_repeat"]),
            ("vrrp_instance", "track_interface", "track_interface = [\"eth0\"]".into(), "track_interface = [\"eth0\", \"eth1\"]".into(), vec!["vrrp_instance.track_interface"]),
            ("vrrp_instance", "track_virtual_servers", "track_virtual_servers = true".into(), "track_virtual_servers = false".into(), vec!["vrrp_instance.track_virtual_servers"]),
            ("vrrp_instance", "track_weight", "track_weight = 0".into(), "track_weight = -20".into(), vec!["vrrp_instance.track_weight"]),
            ("vrrp_instance", "notify_master", "track_weight = 0+".into(), "notify_master = \"/bin/true master\"".into(), vec!["vrrp_instance.notify_master"]),
            ("vrrp_instance", "notify_backup", "track_weight = 0+".into(), "notify_backup = \"/bin/true backup\"".into(), vec!["vrrp_instance.notify_backup"]),
            ("vrrp_instance", "notify_fault", "track_weight = 0+".into(), "notify_fault = \"/bin/true fault\"".into(), vec!["vrrp_instance.notify_fault"]),
            ("vrrp_instance", "notify_stop", "track_weight = 0+".into(), "notify_stop = \"/bin/true stop\"".into(), vec!["vrrp_instance.notify_stop"]),
            ("vrrp_instance", "notify", "track_weight = 0+".into(), "notify = \"/bin/true\"".into(), vec!["vrrp_instance.notify"]),
            ("authentication", "auth_pass", "auth_pass = \"secret1\"".into(), "auth_pass = \"secret3\"".into(), vec!["vrrp_instance.authentication.auth_pass"]),
            ("vrrp_instance", "track_script", "track_script = [\"chk_a\"]".into(), "track_script = [{ name = \"chk_a\", weight = -30 }]".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "name", "track_script = [\"chk_a\"]\n\n[[vrrp_script]]\nname = \"chk_a\"".into(), "track_script = [\"chk_b\"]\n\n[[vrrp_script]]\nname = \"chk_b\"".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "script", "script = \"/bin/true\"".into(), "script = \"/bin/test -e /run/edge.ok\"".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "interval", "interval = 2".into(), "interval = 3".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "timeout", "timeout = 2".into(), "timeout = 1".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "weight", "weight = -20".into(), "weight = 10".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "rise", "rise = 1".into(), "rise = 2".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_script", "fall", "fall = 1".into(), "fall = 3".into(), vec!["vrrp_instance.track_script"]),
            ("vrrp_sync_group", "name", "fall = 1+".into(), group("sync_group_tracking_weight = true\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            ("vrrp_sync_group", "group", "fall = 1+".into(), group("sync_group_tracking_weight = true\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            ("vrrp_sync_group", "notify_master", "fall = 1+".into(), group("sync_group_tracking_weight = true\nnotify_master = \"/bin/true\"\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            ("vrrp_sync_group", "notify_backup", "fall = 1+".into(), group("sync_group_tracking_weight = true\nnotify_backup = \"/bin/true\"\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            ("vrrp_sync_group", "notify_fault", "fall = 1+".into(), group("sync_group_tracking_weight = true\nnotify_fault = \"/bin/true\"\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            ("vrrp_sync_group", "notify", "fall = 1+".into(), group("sync_group_tracking_weight = true\nnotify = \"/bin/true\"\n"), vec!["vrrp_instance.vrrp_sync_group"]),
            // Off (the default): the members' script weights count as 0, as keepalived's.
            ("vrrp_sync_group", "sync_group_tracking_weight", "fall = 1+".into(), group(""), vec!["vrrp_instance.vrrp_sync_group", "vrrp_instance.track_script"]),
            ("real_server", "misc_check", TCP_BLOCK.into(), "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/true\"\n".into(), vec!["real_server.check"]),
            ("check", "misc_path", TCP_BLOCK.into(), "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/false\"\n".into(), vec!["real_server.check"]),
            ("check", "misc_timeout", TCP_BLOCK.into(), "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/true\"\nmisc_timeout = 2\n".into(), vec!["real_server.check"]),
            ("check", "misc_dynamic", TCP_BLOCK.into(), "[virtual_server.real_server.misc_check]\nmisc_path = \"/bin/true\"\nmisc_dynamic = true\n".into(), vec!["real_server.check"]),
            ("check", "warmup", "delay_before_retry = 3+".into(), "warmup = 5".into(), vec!["real_server.check"]),
        ];
        // Keys that change nothing the balancer runs, with why.
        let inert: &[(&str, &str, &str)] = &[
            ("", "virtual_server", "a table: its keys are the cases"),
            ("", "vrrp_instance", "a table: its keys are the cases"),
            (
                "",
                "vrrp_script",
                "a table: its keys are the cases (carried by the instances tracking it)",
            ),
            (
                "",
                "vrrp_sync_group",
                "a table: its keys are the cases (carried by its members)",
            ),
            (
                "virtual_server",
                "protocol",
                "only \"TCP\" is accepted, which changes nothing",
            ),
            (
                "authentication",
                "auth_type",
                "only \"PASS\" is accepted, which changes nothing",
            ),
        ];
        for (section, key, from, to, want) in &cases {
            let changes = plan(&b, &with(from, to));
            let mut got = keys(&changes);
            got.sort();
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "{section}.{key}: {changes:#?}");
        }
        // An http_get differing only in a URL's path or status code is a change too.
        let h = |path: &str, more: &str| with(TCP_BLOCK, &http_block(path, more));
        assert_eq!(
            keys(&plan(&h("/a", ""), &h("/b", ""))),
            vec!["real_server.check"]
        );
        assert_eq!(
            keys(&plan(&h("/a", ""), &h("/a", "status_code = 204\n"))),
            vec!["real_server.check"]
        );
        let schema: [(&str, &[&str]); 9] = [
            (
                "vrrp_script",
                fields_of::<crate::config::track::RawScript>(),
            ),
            (
                "vrrp_sync_group",
                fields_of::<crate::config::track::RawSyncGroup>(),
            ),
            ("", fields_of::<RawConfig>()),
            ("virtual_server", fields_of::<RawVirtualServer>()),
            ("real_server", fields_of::<RawRealServer>()),
            ("check", fields_of::<RawCheck>()),
            ("url", fields_of::<RawUrl>()),
            ("vrrp_instance", fields_of::<RawVrrp>()),
            ("authentication", fields_of::<RawAuth>()),
        ];
        for (section, fields) in schema {
            for f in fields {
                let covered = cases.iter().any(|(s, k, ..)| *s == section && k == f)
                    || inert.iter().any(|(s, k, _)| *s == section && k == f);
                assert!(
                    covered,
                    "{section}.{f}: a config key without a case in every_key_is_in_the_plan (does a reload apply it? add it to reload::plan and a case here)"
                );
            }
        }
        // And the inert ones indeed change nothing.
        let tcp = with(&vs_line, &format!("{vs_line}\nprotocol = \"TCP\""));
        assert_eq!(plan(&b, &tcp), vec![]);
        let pass = with("auth_type = \"PASS\", ", "");
        assert_eq!(plan(&b, &pass), vec![]);
    }

    #[test]
    fn changes_say_where_what_and_when() {
        let b = parse(&base());
        let c = plan(&b, &with("delay_loop = 6", "delay_loop = 0.5"));
        assert_eq!(
            c,
            vec![Change::Vs {
                vs: VS.parse().unwrap(),
                key: VsKey::DelayLoop,
                old: "6s".into(),
                new: "0.5s".into(),
            }]
        );
        assert_eq!(
            c[0].to_string(),
            "virtual_server 127.0.0.1:1935 delay_loop: 6s -> 0.5s (at once: the checks restart on the new period)"
        );
        let c = plan(&b, &with("weight = 1\ninhibit", "weight = 5\ninhibit"));
        assert_eq!(
            c[0].to_string(),
            "virtual_server 127.0.0.1:1935 real_server 127.0.0.2:1935 real_server.weight: 1 -> 5 (at once (an admin weight override ends))"
        );
        let c = plan(
            &b,
            &with("proxy_copy = \"splice\"", "proxy_copy = \"buffered\""),
        );
        assert_eq!(
            c[0].to_string(),
            "proxy_copy: splice -> buffered (for new connections of every PROXY virtual server)"
        );
    }

    #[test]
    fn added_and_removed_come_in_order() {
        let b = parse(&base());
        let other = format!(
            "{}\n[[virtual_server]]\naddress = \"127.0.0.1:2935\"\n[[virtual_server.real_server]]\naddress = \"127.0.0.1:29351\"\n",
            base()
        );
        let two = parse(&other);
        let c = plan(&b, &two);
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0], Change::VsAdded { vs, what } if vs.port() == 2935 && what == "rr, PROXY, 1 real server(s)"),
            "{c:?}"
        );
        let back = plan(&two, &b);
        assert_eq!(
            back,
            vec![Change::VsRemoved {
                vs: "127.0.0.1:2935".parse().unwrap()
            }]
        );
        // A reordered list of the same servers.
        let swapped = base()
            .replace(RS, "SWAP")
            .replace(RS2, RS)
            .replace("SWAP", RS2);
        let c = plan(&b, &parse(&swapped));
        assert!(keys(&c).contains(&"real_server order".to_string()), "{c:?}");
    }

    #[test]
    fn secrets_never_show() {
        let b = parse(&base());
        let c = plan(
            &b,
            &with("auth_pass = \"secret1\"", "auth_pass = \"hunter2\""),
        );
        let shown: String = c.iter().map(|c| c.to_string()).collect();
        assert!(
            shown.contains("vrrp_instance.authentication.auth_pass: set -> changed"),
            "{shown}"
        );
        assert!(
            !shown.contains("secret1") && !shown.contains("hunter2"),
            "{shown}"
        );
        let c = plan(
            &b,
            &with(
                "[virtual_server.real_server.tcp_check]",
                "[virtual_server.real_server.rtmp_check]\nstream = \"live/probe?key=s3cret\"",
            ),
        );
        let shown: String = c.iter().map(|c| c.to_string()).collect();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            secret_change(Some(&1), None),
            Some(("set".into(), "unset".into()))
        );
        assert_eq!(
            secret_change(None, Some(&1)),
            Some(("unset".into(), "set".into()))
        );
        assert_eq!(secret_change(Some(&1), Some(&1)), None);
        assert_eq!(secret_change::<u8>(None, None), None);
    }

    #[test]
    fn a_start_is_a_plan_from_nothing() {
        let c = parse(&base());
        let nothing = LbConfig {
            virtual_servers: vec![],
            vrrp_instances: vec![],
            ..c.clone()
        };
        assert_eq!(
            keys(&plan(&nothing, &c)),
            vec!["virtual_server", "vrrp_instance"]
        );
    }
}
