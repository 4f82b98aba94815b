//! The balancer's configuration: TOML that mirrors keepalived.conf key by key
//! (`virtual_server`, `real_server`, `lb_algo`, `lb_kind`, `persistence_timeout`,
//! `persistence_granularity`, `delay_loop`, `sorry_server`, `weight`, `inhibit_on_failure`,
//! `TCP_CHECK` as `tcp_check`, `HTTP_GET` as `http_get`, `MISC_CHECK` as `misc_check`), plus
//! `rtmp_check`, which keepalived needs a MISC_CHECK script for; `vrrp_script`, `track_script`
//! and `vrrp_sync_group` are in [`track`]. Parsed with serde (unknown keys are errors), then validated with one error per
//! problem, each naming its key path (`virtual_server[0].real_server[1].weight`).
//!
//! Reading goes: TOML syntax (every syntax error at once, each with its line: see
//! `common::config::parse_table`) -> [`keys`] (every unknown key at once; keepalived's keys that mean nothing here
//! say what replaces them) -> typed parse -> validation (every problem at once).

pub mod keys;
pub mod track;

pub use track::{ScriptConfig, SyncGroupConfig, TrackScript};

use common::config::{parse_socket_addr, parse_toml, ConfigError, ConfigErrors};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin_listen: Option<String>,
    /// A file holding the admin API's bearer token (see `crate::admin::auth`).
    pub admin_token_file: Option<String>,
    pub admin_timeout: Option<f64>,
    pub proxy_copy: Option<String>,
    #[serde(default)]
    pub virtual_server: Vec<RawVirtualServer>,
    #[serde(default)]
    pub vrrp_instance: Vec<RawVrrp>,
    /// keepalived's `vrrp_script NAME { ... }`: see [`track`].
    #[serde(default)]
    pub vrrp_script: Vec<track::RawScript>,
    /// keepalived's `vrrp_sync_group NAME { group { ... } }`: see [`track`].
    #[serde(default)]
    pub vrrp_sync_group: Vec<track::RawSyncGroup>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVrrp {
    pub name: Option<String>,
    pub state: Option<String>,
    pub interface: Option<String>,
    pub virtual_router_id: Option<i64>,
    pub priority: Option<i64>,
    pub advert_int: Option<f64>,
    pub version: Option<i64>,
    pub nopreempt: Option<bool>,
    pub preempt_delay: Option<f64>,
    pub virtual_ipaddress: Option<Vec<String>>,
    pub authentication: Option<RawAuth>,
    pub unicast_src_ip: Option<String>,
    pub unicast_peer: Option<Vec<String>>,
    pub garp_master_delay: Option<f64>,
    pub garp_master_repeat: Option<i64>,
    pub track_interface: Option<Vec<String>>,
    pub track_virtual_servers: Option<bool>,
    pub track_weight: Option<i64>,
    /// Names of `[[vrrp_script]]`s, or `{ name = "...", weight = N }` (see [`track`]).
    pub track_script: Option<Vec<toml::Value>>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify_stop: Option<String>,
    pub notify: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub auth_type: Option<String>,
    pub auth_pass: Option<String>,
}

/// One validated VRRP instance (keepalived's vrrp_instance).
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpConfig {
    pub name: String,
    pub start_as_master: bool,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_int: Duration,
    pub version: u8,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    /// Addresses with their prefix length: all IPv4 or all IPv6 (then VRRPv3 over IPv6).
    pub vips: Vec<(IpAddr, u8)>,
    pub auth_pass: Option<String>,
    /// Of the instance's family.
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
    pub track_interface: Vec<String>,
    pub track_virtual_servers: bool,
    /// 0: FAULT when no tracked virtual server has a real server up; < 0: lower priority.
    pub track_weight: i32,
    /// The scripts it tracks, resolved from `track_script` (weights as they apply here).
    pub track_script: Vec<TrackScript>,
    /// The sync group it belongs to, whole (its members change state together).
    pub sync_group: Option<SyncGroupConfig>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify_stop: Option<String>,
    pub notify: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVirtualServer {
    pub address: Option<String>,
    /// keepalived's `protocol`: only "TCP" is accepted (and changes nothing).
    pub protocol: Option<String>,
    pub lb_algo: Option<String>,
    pub lb_kind: Option<String>,
    pub persistence_timeout: Option<i64>,
    pub persistence_granularity: Option<String>,
    pub delay_loop: Option<f64>,
    pub sorry_server: Option<String>,
    pub max_connections: Option<i64>,
    pub idle_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    #[serde(default)]
    pub real_server: Vec<RawRealServer>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRealServer {
    pub address: Option<String>,
    pub weight: Option<i64>,
    pub inhibit_on_failure: Option<bool>,
    pub send_proxy: Option<String>,
    pub tcp_check: Option<RawCheck>,
    pub rtmp_check: Option<RawCheck>,
    /// keepalived's HTTP_GET: `[virtual_server.real_server.http_get]` with `[[...url]]`.
    pub http_get: Option<RawCheck>,
    /// keepalived's MISC_CHECK: `[virtual_server.real_server.misc_check]` with `misc_path`.
    pub misc_check: Option<RawCheck>,
    /// The edge's HTTP API ("IP:PORT"), read by the fleet page; default the server's IP:1985.
    pub api: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub connect_timeout: Option<f64>,
    #[serde(alias = "nb_get_retry")]
    pub retry: Option<i64>,
    pub delay_before_retry: Option<f64>,
    /// rtmp_check only: "APP/NAME" to play; media must arrive within connect_timeout.
    pub stream: Option<String>,
    /// The port to check instead of the real server's (keepalived's name).
    pub connect_port: Option<i64>,
    /// http_get only: the URLs to fetch, each with the status it must answer.
    pub url: Option<Vec<RawUrl>>,
    /// misc_check only: the command to run (split into words as keepalived does).
    pub misc_path: Option<String>,
    /// misc_check only: seconds before the command is killed and fails (the delay_loop).
    pub misc_timeout: Option<f64>,
    /// misc_check only: exit codes 2..=255 set the weight to code - 2.
    pub misc_dynamic: Option<bool>,
    /// Seconds: the first check waits a random time up to this (keepalived's warmup).
    pub warmup: Option<f64>,
}

/// keepalived's `url { path ...; status_code ... }` of an HTTP_GET check.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUrl {
    pub path: Option<String>,
    pub status_code: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
    Mh,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Rr => "rr",
            Algo::Wrr => "wrr",
            Algo::Lc => "lc",
            Algo::Wlc => "wlc",
            Algo::Sh => "sh",
            Algo::Mh => "mh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Userspace full proxy.
    Proxy,
    /// Direct routing: frames to VIP:PORT get the real server's MAC and go back out; the
    /// real server (VIP on `lo`) answers the viewer itself. See `crate::forward::dr`.
    Dr,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Proxy => "PROXY",
            Kind::Dr => "DR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    Splice,
    Buffered,
}

impl CopyMode {
    /// As the config writes it (`proxy_copy`).
    pub fn name(self) -> &'static str {
        match self {
            CopyMode::Splice => "splice",
            CopyMode::Buffered => "buffered",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbConfig {
    pub admin_listen: SocketAddr,
    /// Bearer token for write actions; required when `admin_listen` is not loopback unless
    /// `EDGEFLEET_LB_ADMIN_TOKEN` is set. Read (and its mode checked) by `crate::admin::auth`.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// How long an admin connection may take to send a request header, idle keep-alive
    /// included; a connection lives at most `admin::server::LIFETIME_FACTOR` times this.
    pub admin_timeout: Duration,
    pub proxy_copy: CopyMode,
    pub virtual_servers: Vec<VsConfig>,
    pub vrrp_instances: Vec<VrrpConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VsConfig {
    pub address: SocketAddr,
    pub algo: Algo,
    pub kind: Kind,
    pub persistence: Option<Persistence>,
    pub delay_loop: Duration,
    pub sorry_server: Option<SocketAddr>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub real_servers: Vec<RsConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    pub timeout: Duration,
    /// Prefix length applied to IPv4 clients (IPv6: 128 unless the mask is given as /N).
    pub prefix_v4: u8,
    pub prefix_v6: u8,
}

impl Persistence {
    pub fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4)
                    & (u32::MAX
                        .checked_shl(32 - self.prefix_v4 as u32)
                        .unwrap_or(0));
                IpAddr::V4(Ipv4Addr::from(bits))
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.mask(IpAddr::V4(v4));
                }
                let m = u128::MAX
                    .checked_shl(128 - self.prefix_v6 as u32)
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RsConfig {
    pub address: SocketAddr,
    pub weight: u32,
    pub inhibit_on_failure: bool,
    pub send_proxy: bool,
    pub check: Option<Check>,
    /// The edge's HTTP API, for the fleet page.
    pub api: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub connect_timeout: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Checked instead of the real server's port (keepalived's `connect_port`).
    pub connect_port: Option<u16>,
    /// The first check waits up to this long (spread over the servers).
    pub warmup: Duration,
}

/// One URL of an `http_get` check: `GET path` must answer `status_code`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUrl {
    pub path: String,
    pub status_code: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Tcp,
    /// Handshake + connect; with a stream, play it and require media.
    Rtmp {
        stream: Option<(String, String)>,
    },
    /// HTTP/1.1 GET of each URL; every one must answer its status code (keepalived's HTTP_GET).
    Http {
        urls: Vec<HttpUrl>,
    },
    /// keepalived's MISC_CHECK: run a command; exit 0 = up, else down; with `dynamic`,
    /// 2..=255 = up with weight code - 2 (and 1 = down). Killed after `timeout`.
    Misc {
        argv: Vec<String>,
        timeout: Duration,
        dynamic: bool,
    },
}

impl CheckKind {
    /// The config key of this kind of check.
    pub fn key(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp_check",
            CheckKind::Rtmp { .. } => "rtmp_check",
            CheckKind::Http { .. } => "http_get",
            CheckKind::Misc { .. } => "misc_check",
        }
    }
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9180";

/// Added to the errors of the TOML reader, which stops at its first problem.
const FIRST_ONLY: &str =
    "(the TOML reader stops at its first error: fix this one and run lb --check again for any others)";

fn first_only(mut e: ConfigErrors) -> ConfigErrors {
    for x in &mut e.0 {
        x.why = format!("{} {FIRST_ONLY}", x.why);
    }
    e
}

impl LbConfig {
    pub fn load(path: &Path) -> Result<LbConfig, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        LbConfig::parse(&source)
    }

    /// Syntax, then every unknown key, then types, then every validation problem; see the
    /// module docs.
    pub fn parse(source: &str) -> Result<LbConfig, ConfigErrors> {
        // Every syntax error at once (common::config::parse_table reads on past each).
        let mut table = common::config::parse_table(source)?;
        let mut errs = keys::check(&mut table);
        let raw: RawConfig = if errs.is_empty() {
            // From the source, so that a type error comes with its line.
            parse_toml(source).map_err(first_only)?
        } else {
            match toml::Value::Table(table).try_into() {
                Ok(r) => r,
                Err(e) => {
                    let why = e.to_string().trim().replace('\n', " ");
                    errs.push(ConfigError::new("", format!("{why} {FIRST_ONLY}")));
                    return Err(ConfigErrors(errs));
                }
            }
        };
        match raw.validate() {
            Ok(c) if errs.is_empty() => Ok(c),
            Ok(_) => Err(ConfigErrors(errs)),
            Err(e) => {
                errs.extend(e.0);
                Err(ConfigErrors(errs))
            }
        }
    }
}

impl LbConfig {
    /// What is valid but will not work on this machine as it is now: a VRRP `interface` or
    /// `track_interface` that does not exist (it may appear later, so not an error).
    /// `--check` prints these as `warning:` lines and the running lb logs them.
    pub fn warnings(&self, interface_exists: impl Fn(&str) -> bool) -> Vec<ConfigError> {
        let mut out = Vec::new();
        // A check command that cannot run here is a failing check, not an error: the program
        // may be installed later (it is run afresh each time).
        let mut seen: Vec<&str> = Vec::new();
        for (i, v) in self.vrrp_instances.iter().enumerate() {
            for (j, t) in v.track_script.iter().enumerate() {
                if seen.contains(&t.script.name.as_str()) {
                    continue;
                }
                seen.push(&t.script.name);
                if let Some(why) = t.script.argv.first().and_then(|p| program_problem(p)) {
                    out.push(ConfigError::new(
                        format!("vrrp_instance[{i}].track_script[{j}]"),
                        format!(
                            "vrrp_script {:?}: {why}: the script fails until it can run",
                            t.script.name
                        ),
                    ));
                }
            }
        }
        for (i, vs) in self.virtual_servers.iter().enumerate() {
            for (j, rs) in vs.real_servers.iter().enumerate() {
                if let Some(Check {
                    kind: CheckKind::Misc { argv, .. },
                    ..
                }) = &rs.check
                {
                    if let Some(why) = argv.first().and_then(|p| program_problem(p)) {
                        out.push(ConfigError::new(
                            format!("virtual_server[{i}].real_server[{j}].misc_check.misc_path"),
                            format!(
                                "{why}: the check fails (the server goes DOWN) until it can run"
                            ),
                        ));
                    }
                }
            }
        }
        for (i, v) in self.vrrp_instances.iter().enumerate() {
            if !interface_exists(&v.interface) {
                out.push(ConfigError::new(
                    format!("vrrp_instance[{i}].interface"),
                    format!(
                        "interface {:?} does not exist on this machine (no /sys/class/net/{}): the instance waits for it, in FAULT",
                        v.interface, v.interface
                    ),
                ));
            }
            for (j, t) in v.track_interface.iter().enumerate() {
                if !interface_exists(t) {
                    out.push(ConfigError::new(
                        format!("vrrp_instance[{i}].track_interface[{j}]"),
                        format!(
                            "interface {t:?} does not exist on this machine (no /sys/class/net/{t}): the instance stays in FAULT until it appears"
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// Why `program` (a path: a bare name is looked up in PATH when run) cannot run here.
fn program_problem(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if !program.contains('/') {
        return None;
    }
    match std::fs::metadata(program) {
        Err(e) => Some(format!("{program}: {e}")),
        Ok(m) if !m.is_file() => Some(format!("{program} is not a file")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Some(format!("{program} is not executable"))
        }
        Ok(_) => None,
    }
}

/// Whether network interface `name` exists here (`/sys/class/net/NAME`).
pub fn interface_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && name != "."
        && name != ".."
        && Path::new("/sys/class/net").join(name).exists()
}

struct V<'a> {
    errs: &'a mut Vec<ConfigError>,
    path: String,
}

impl V<'_> {
    fn err(&mut self, key: &str, why: impl Into<String>) {
        let k = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        self.errs.push(ConfigError::new(k, why));
    }

    fn secs(&mut self, key: &str, v: Option<f64>, default: f64, min: f64, max: f64) -> Duration {
        let v = v.unwrap_or(default);
        if v.is_nan() || v < min || v > max {
            self.err(key, format!("{v} is out of range ({min}..={max} seconds)"));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(v)
    }

    fn int(&mut self, key: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            self.err(key, format!("{v} is out of range ({min}..={max})"));
            return default;
        }
        v
    }

    fn addr(&mut self, key: &str, v: Option<&str>) -> Option<SocketAddr> {
        match v {
            None => {
                self.err(key, "is required (\"IP:PORT\")");
                None
            }
            Some(s) => match parse_socket_addr(s) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(key, e);
                    None
                }
            },
        }
    }
}

fn parse_granularity(s: &str) -> Result<(u8, u8), String> {
    if let Some(p) = s.strip_prefix('/') {
        let n: u8 = p
            .parse()
            .map_err(|_| format!("{s:?} is not a prefix length like \"/24\""))?;
        if n > 128 {
            return Err(format!("{s:?}: prefix length over 128"));
        }
        return Ok((n.min(32), n));
    }
    let mask: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("{s:?} is not a netmask like \"255.255.255.0\" or \"/24\""))?;
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(format!("{s:?} is not a contiguous netmask"));
    }
    Ok((ones as u8, 128))
}

impl RawConfig {
    pub fn validate(self) -> Result<LbConfig, ConfigErrors> {
        let mut errs = Vec::new();
        let mut v = V {
            errs: &mut errs,
            path: String::new(),
        };
        let admin_listen = v
            .addr(
                "admin_listen",
                Some(self.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN)),
            )
            .unwrap_or_else(|| DEFAULT_ADMIN.parse().unwrap());
        let admin_token_file = match self.admin_token_file.as_deref() {
            Some("") => {
                v.err(
                    "admin_token_file",
                    "is empty: give the path of the token file",
                );
                None
            }
            other => other.map(std::path::PathBuf::from),
        };
        let admin_timeout = v.secs("admin_timeout", self.admin_timeout, 10.0, 0.1, 300.0);
        let proxy_copy = match self.proxy_copy.as_deref().unwrap_or("splice") {
            "splice" => CopyMode::Splice,
            "buffered" => CopyMode::Buffered,
            other => {
                v.err(
                    "proxy_copy",
                    format!("{other:?} is not \"splice\" or \"buffered\""),
                );
                CopyMode::Splice
            }
        };
        if self.virtual_server.is_empty() && self.vrrp_instance.is_empty() {
            v.err(
                "",
                "no [[virtual_server]] and no [[vrrp_instance]]: nothing to do",
            );
        }
        let mut vss = Vec::new();
        for (i, raw) in self.virtual_server.into_iter().enumerate() {
            let mut v = V {
                errs: &mut errs,
                path: format!("virtual_server[{i}]"),
            };
            if let Some(vs) = raw.validate(&mut v) {
                if vss.iter().any(|o: &VsConfig| o.address == vs.address) {
                    v.err(
                        "address",
                        format!("{} is used by another virtual_server", vs.address),
                    );
                }
                vss.push(vs);
            }
        }
        let has_vs = !vss.is_empty();
        let mut scripts: Vec<ScriptConfig> = Vec::new();
        for (i, raw) in self.vrrp_script.into_iter().enumerate() {
            let mut v = V {
                errs: &mut errs,
                path: format!("vrrp_script[{i}]"),
            };
            if let Some(s) = raw.validate(&mut v) {
                if !s.name.is_empty() && scripts.iter().any(|o| o.name == s.name) {
                    v.err(
                        "name",
                        format!("{:?} is used by another vrrp_script", s.name),
                    );
                }
                scripts.push(s);
            }
        }
        let mut vrrps: Vec<VrrpConfig> = Vec::new();
        for (i, raw) in self.vrrp_instance.into_iter().enumerate() {
            let mut v = V {
                errs: &mut errs,
                path: format!("vrrp_instance[{i}]"),
            };
            if let Some(c) = raw.validate(&mut v, has_vs, &scripts) {
                if vrrps.iter().any(|o| o.name == c.name) {
                    v.err(
                        "name",
                        format!("{:?} is used by another vrrp_instance", c.name),
                    );
                }
                // An IPv4 and an IPv6 instance may share a VRID: they are different routers
                // (RFC 5798 5.2.3; keepalived allows it).
                if vrrps.iter().any(|o| {
                    o.vrid == c.vrid && o.interface == c.interface && o.is_v6() == c.is_v6()
                }) {
                    v.err(
                        "virtual_router_id",
                        format!("{} is used by another instance on {}", c.vrid, c.interface),
                    );
                }
                vrrps.push(c);
            }
        }
        let names: Vec<String> = vrrps.iter().map(|c| c.name.clone()).collect();
        let mut groups: Vec<SyncGroupConfig> = Vec::new();
        for (i, raw) in self.vrrp_sync_group.into_iter().enumerate() {
            let mut v = V {
                errs: &mut errs,
                path: format!("vrrp_sync_group[{i}]"),
            };
            let Some(g) = raw.validate(&mut v, &names) else {
                continue;
            };
            if !g.name.is_empty() && groups.iter().any(|o| o.name == g.name) {
                v.err(
                    "name",
                    format!("{:?} is used by another vrrp_sync_group", g.name),
                );
            }
            for (j, m) in g.members.iter().enumerate() {
                if let Some(o) = groups.iter().find(|o| o.members.contains(m)) {
                    v.err(
                        &format!("group[{j}]"),
                        format!("{m:?} is already in vrrp_sync_group {:?}", o.name),
                    );
                }
            }
            groups.push(g);
        }
        for g in &groups {
            for c in vrrps.iter_mut().filter(|c| g.members.contains(&c.name)) {
                if c.sync_group.is_some() {
                    continue;
                }
                if !g.tracking_weight {
                    // keepalived: a sync group's members track with weight 0 (a failure
                    // faults the member and so the group) unless sync_group_tracking_weight.
                    for t in &mut c.track_script {
                        t.weight = 0;
                    }
                }
                c.sync_group = Some(g.clone());
            }
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(LbConfig {
            admin_listen,
            admin_token_file,
            admin_timeout,
            proxy_copy,
            virtual_servers: vss,
            vrrp_instances: vrrps,
        })
    }
}

impl RawVrrp {
    fn validate(self, v: &mut V, has_vs: bool, scripts: &[ScriptConfig]) -> Option<VrrpConfig> {
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty() {
            v.err("name", "is required (keepalived's vrrp_instance NAME)");
        }
        let start_as_master = match self.state.as_deref().unwrap_or("BACKUP") {
            "MASTER" => true,
            "BACKUP" => false,
            other => {
                v.err("state", format!("{other:?} is not MASTER or BACKUP"));
                false
            }
        };
        let interface = self.interface.clone().unwrap_or_default();
        if interface.is_empty() || interface.len() > 15 {
            v.err(
                "interface",
                "is required: the network interface name (at most 15 characters)",
            );
        }
        let vrid = v.int(
            "virtual_router_id",
            Some(self.virtual_router_id.unwrap_or(-1)),
            51,
            1,
            255,
        ) as u8;
        if self.virtual_router_id.is_none() {
            v.errs.pop();
            v.err(
                "virtual_router_id",
                "is required (1..=255, the same on both balancers)",
            );
        }
        let priority = v.int("priority", self.priority, 100, 1, 255) as u8;
        let version = v.int("version", self.version, 3, 2, 3) as u8;
        let advert_int = match self.advert_int {
            None => Duration::from_secs(1),
            Some(a) if version == 3 => {
                let cs = (a * 100.0).round();
                if !(1.0..=4095.0).contains(&cs) || ((a * 100.0) - cs).abs() > 1e-6 {
                    v.err(
                        "advert_int",
                        format!("{a} is not 0.01..=40.95 seconds in steps of 0.01 (VRRPv3)"),
                    );
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(cs as u64 * 10)
                }
            }
            Some(a) => {
                if a.fract() != 0.0 || !(1.0..=255.0).contains(&a) {
                    v.err(
                        "advert_int",
                        format!("{a} is not a whole number of seconds 1..=255 (VRRPv2)"),
                    );
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(a as u64)
                }
            }
        };
        let nopreempt = self.nopreempt.unwrap_or(false);
        let preempt_delay = v.secs("preempt_delay", self.preempt_delay, 0.0, 0.0, 1000.0);
        let mut vips = Vec::new();
        let raw_vips = self.virtual_ipaddress.clone().unwrap_or_default();
        if raw_vips.is_empty() {
            v.err(
                "virtual_ipaddress",
                "needs at least one address (\"198.18.0.100/24\" or \"198.18.0.100\")",
            );
        }
        for (i, a) in raw_vips.iter().enumerate() {
            let parsed = match a.split_once('/') {
                Some((ip, len)) => ip.parse::<IpAddr>().ok().and_then(|ip| {
                    let max = if ip.is_ipv6() { 128 } else { 32 };
                    len.parse::<u8>()
                        .ok()
                        .filter(|l| *l <= max)
                        .map(|l| (ip, l))
                }),
                None => a
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| (ip, if ip.is_ipv6() { 128 } else { 32 })),
            };
            match parsed {
                Some((ip, _)) if ip.is_multicast() || ip.is_unspecified() => v.err(
                    &format!("virtual_ipaddress[{i}]"),
                    format!("{a:?} is not a unicast address"),
                ),
                Some(p) => match vips.first() {
                    Some(&(first, _)) if IpAddr::is_ipv6(&first) != p.0.is_ipv6() => v.err(
                        &format!("virtual_ipaddress[{i}]"),
                        format!(
                            "instance {name:?}: {a:?} is {} but {first} is {}: an instance's \
                             addresses are all IPv4 or all IPv6 (as in keepalived); put the \
                             others in a second [[vrrp_instance]]",
                            family(p.0),
                            family(first)
                        ),
                    ),
                    _ => vips.push(p),
                },
                None => v.err(
                    &format!("virtual_ipaddress[{i}]"),
                    format!("{a:?} is not an IPv4 or IPv6 address or CIDR"),
                ),
            }
        }
        let v6 = vips.first().is_some_and(|(ip, _)| ip.is_ipv6());
        if v6 && version == 2 {
            v.err(
                "version",
                format!(
                    "instance {name:?}: 2 has no IPv6 (VRRPv2, RFC 3768, is IPv4 only) and \
                     virtual_ipaddress {} is IPv6: use version = 3",
                    vips[0].0
                ),
            );
        }
        if vips.len() > 20 {
            v.err("virtual_ipaddress", "at most 20 addresses per instance");
        }
        let auth_pass = match self.authentication {
            None => None,
            Some(a) => {
                if version != 2 {
                    v.err(
                        "authentication",
                        "is VRRPv2 only (as in keepalived): set version = 2 or remove it",
                    );
                }
                if a.auth_type.as_deref().unwrap_or("PASS") != "PASS" {
                    v.err(
                        "authentication.auth_type",
                        format!(
                            "{:?} is not supported: use \"PASS\"",
                            a.auth_type.unwrap_or_default()
                        ),
                    );
                }
                match a.auth_pass {
                    Some(p) if !p.is_empty() && p.len() <= 8 => Some(p),
                    _ => {
                        v.err("authentication.auth_pass", "is required, 1 to 8 characters");
                        None
                    }
                }
            }
        };
        let want = if v6 { "IPv6" } else { "IPv4" };
        let ip4 = |v: &mut V, key: &str, s: &str| -> Option<IpAddr> {
            match s.parse::<IpAddr>() {
                Ok(a) if a.is_ipv6() == v6 => Some(a),
                Ok(_) => {
                    v.err(
                        key,
                        format!(
                            "instance {name:?}: {s:?} is not {want}, the family of its \
                             virtual_ipaddress"
                        ),
                    );
                    None
                }
                Err(_) => {
                    v.err(key, format!("{s:?} is not an {want} address"));
                    None
                }
            }
        };
        let unicast_src_ip = self
            .unicast_src_ip
            .as_deref()
            .and_then(|s| ip4(v, "unicast_src_ip", s));
        let mut unicast_peer = Vec::new();
        for (i, p) in self
            .unicast_peer
            .clone()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(a) = ip4(v, &format!("unicast_peer[{i}]"), p) {
                unicast_peer.push(a);
            }
        }
        let garp_master_delay = v.secs(
            "garp_master_delay",
            self.garp_master_delay,
            5.0,
            0.0,
            3600.0,
        );
        let garp_master_repeat =
            v.int("garp_master_repeat", self.garp_master_repeat, 5, 0, 100) as u32;
        let track_weight = v.int("track_weight", self.track_weight, 0, -254, 0) as i32;
        let track_virtual_servers = self.track_virtual_servers.unwrap_or(has_vs);
        if track_virtual_servers && !has_vs {
            v.err(
                "track_virtual_servers",
                "there is no [[virtual_server]] to track",
            );
        }
        let track_script = track::track_scripts(v, self.track_script.clone(), scripts);
        if nopreempt && start_as_master {
            v.err("nopreempt", "needs state = \"BACKUP\" (as in keepalived)");
        }
        Some(VrrpConfig {
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
            track_interface: self.track_interface.unwrap_or_default(),
            track_virtual_servers,
            track_weight,
            track_script,
            sync_group: None,
            notify_master: self.notify_master,
            notify_backup: self.notify_backup,
            notify_fault: self.notify_fault,
            notify_stop: self.notify_stop,
            notify: self.notify,
        })
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    }
}

impl VrrpConfig {
    /// VRRPv3 over IPv6 (its virtual addresses are IPv6).
    pub fn is_v6(&self) -> bool {
        self.vips.first().is_some_and(|(ip, _)| ip.is_ipv6())
    }
}

impl RawVirtualServer {
    fn validate(self, v: &mut V) -> Option<VsConfig> {
        let address = v.addr("address", self.address.as_deref());
        let algo = match self.lb_algo.as_deref().unwrap_or("rr") {
            "rr" => Algo::Rr,
            "wrr" => Algo::Wrr,
            "lc" => Algo::Lc,
            "wlc" => Algo::Wlc,
            "sh" => Algo::Sh,
            "mh" => Algo::Mh,
            other => {
                v.err(
                    "lb_algo",
                    format!("{other:?} is not one of rr, wrr, lc, wlc, sh, mh"),
                );
                Algo::Rr
            }
        };
        match self.protocol.as_deref() {
            None | Some("TCP") => {}
            Some(other) => v.err(
                "protocol",
                format!("{other:?} is not supported: lb balances TCP (RTMP) only; write \"TCP\" or leave protocol out"),
            ),
        }
        let kind = match self.lb_kind.as_deref().unwrap_or("PROXY") {
            "PROXY" => Kind::Proxy,
            "DR" => Kind::Dr,
            k @ ("NAT" | "TUN") => {
                v.err(
                    "lb_kind",
                    format!(
                        "{k:?} does not exist here: the kinds are \"PROXY\" (a userspace full proxy: the edges need no route back through lb, nor a tunnel; with send_proxy = \"v2\" they see the viewer's address) and \"DR\" (direct routing, as LVS-DR: the edges hold the VIP on lo, see edge dr-setup)"
                    ),
                );
                Kind::Proxy
            }
            other => {
                v.err(
                    "lb_kind",
                    format!(
                        "{other:?} is not a forwarding method: the kinds are \"PROXY\" and \"DR\""
                    ),
                );
                Kind::Proxy
            }
        };
        let timeout = v.int(
            "persistence_timeout",
            self.persistence_timeout,
            0,
            0,
            31_536_000,
        );
        let (prefix_v4, prefix_v6) = match self.persistence_granularity.as_deref() {
            None => (32, 128),
            Some(g) => parse_granularity(g).unwrap_or_else(|e| {
                v.err("persistence_granularity", e);
                (32, 128)
            }),
        };
        let persistence = (timeout > 0).then(|| Persistence {
            timeout: Duration::from_secs(timeout as u64),
            prefix_v4,
            prefix_v6,
        });
        let delay_loop = v.secs("delay_loop", self.delay_loop, 60.0, 0.01, 86400.0);
        let sorry_server = self
            .sorry_server
            .as_deref()
            .and_then(|s| v.addr("sorry_server", Some(s)));
        let max_connections = v.int(
            "max_connections",
            self.max_connections,
            100_000,
            1,
            10_000_000,
        ) as usize;
        let idle_timeout = v.secs("idle_timeout", self.idle_timeout, 300.0, 0.1, 86400.0 * 7.0);
        let connect_timeout = v.secs("connect_timeout", self.connect_timeout, 3.0, 0.01, 300.0);
        if self.real_server.is_empty() {
            v.err(
                "real_server",
                "is empty: a virtual_server needs at least one [[virtual_server.real_server]]",
            );
        }
        let mut real_servers = Vec::new();
        let base = v.path.clone();
        for (j, rs) in self.real_server.into_iter().enumerate() {
            v.path = format!("{base}.real_server[{j}]");
            if let Some(rs) = rs.validate(v, delay_loop) {
                if real_servers
                    .iter()
                    .any(|o: &RsConfig| o.address == rs.address)
                {
                    v.err("address", format!("{} is listed twice", rs.address));
                }
                real_servers.push(rs);
            }
        }
        v.path = base;
        if kind == Kind::Dr {
            dr_rules(v, address, sorry_server, &real_servers);
        }
        Some(VsConfig {
            address: address?,
            algo,
            kind,
            persistence,
            delay_loop,
            sorry_server,
            max_connections,
            idle_timeout,
            connect_timeout,
            real_servers,
        })
    }
}

/// What direct routing needs of addresses (one error per problem): IPv4 (the datapath
/// matches IPv4 only), real servers on the virtual server's port (DR cannot change a port:
/// the real server answers from VIP:PORT itself), no PROXY header (DR never touches the
/// stream). The L2 reachability checks need the host: `crate::forward::preflight`.
fn dr_rules(
    v: &mut V,
    address: Option<SocketAddr>,
    sorry: Option<SocketAddr>,
    real_servers: &[RsConfig],
) {
    let Some(address) = address else { return };
    if !address.is_ipv4() {
        v.err(
            "address",
            format!("{address}: lb_kind = \"DR\" supports IPv4 virtual servers only"),
        );
    }
    let base = v.path.clone();
    for (j, rs) in real_servers.iter().enumerate() {
        v.path = format!("{base}.real_server[{j}]");
        if !rs.address.is_ipv4() {
            v.err(
                "address",
                format!("{}: DR real servers are IPv4", rs.address),
            );
        }
        if rs.address.port() != address.port() {
            v.err(
                "address",
                format!(
                    "{}: with lb_kind = \"DR\" a real server listens on the virtual server's port {} (DR does not rewrite ports)",
                    rs.address,
                    address.port()
                ),
            );
        }
        if rs.send_proxy {
            v.err(
                "send_proxy",
                "is a PROXY-kind feature: with lb_kind = \"DR\" the edge sees the viewer's address itself",
            );
        }
    }
    v.path = base;
    if let Some(s) = sorry {
        if s.port() != address.port() || !s.is_ipv4() {
            v.err(
                "sorry_server",
                format!(
                    "{s}: with lb_kind = \"DR\" the sorry server is an IPv4 host on port {}",
                    address.port()
                ),
            );
        }
    }
}

impl RawRealServer {
    fn validate(self, v: &mut V, delay_loop: Duration) -> Option<RsConfig> {
        let address = v.addr("address", self.address.as_deref());
        let weight = v.int("weight", self.weight, 1, 0, 65535) as u32;
        let send_proxy = match self.send_proxy.as_deref() {
            None => false,
            Some("v2") => true,
            Some(other) => {
                v.err(
                    "send_proxy",
                    format!("{other:?} is not supported: use \"v2\""),
                );
                false
            }
        };
        let given: Vec<(&str, RawCheck)> = [
            ("tcp_check", self.tcp_check),
            ("rtmp_check", self.rtmp_check),
            ("http_get", self.http_get),
            ("misc_check", self.misc_check),
        ]
        .into_iter()
        .filter_map(|(k, c)| Some((k, c?)))
        .collect();
        let check = match given.len() {
            0 => None,
            1 => {
                let (key, c) = given.into_iter().next().expect("one");
                Some(c.validate(v, key, delay_loop))
            }
            _ => {
                v.err(
                    given[1].0,
                    format!(
                        "a real_server takes one check: tcp_check, rtmp_check, http_get or misc_check, not {}",
                        given.iter().map(|g| g.0).collect::<Vec<_>>().join(" and ")
                    ),
                );
                None
            }
        };
        let address = address?;
        let api = match self.api.as_deref() {
            None => SocketAddr::new(address.ip(), 1985),
            Some(_) => v
                .addr("api", self.api.as_deref())
                .unwrap_or(SocketAddr::new(address.ip(), 1985)),
        };
        Some(RsConfig {
            address,
            weight,
            inhibit_on_failure: self.inhibit_on_failure.unwrap_or(false),
            send_proxy,
            check,
            api,
        })
    }
}

impl RawCheck {
    fn validate(self, v: &mut V, key: &str, delay_loop: Duration) -> Check {
        let rtmp = key == "rtmp_check";
        let http = key == "http_get";
        let misc = key == "misc_check";
        let connect_timeout = v.secs(
            &format!("{key}.connect_timeout"),
            self.connect_timeout,
            5.0,
            0.01,
            300.0,
        );
        let retry = v.int(&format!("{key}.retry"), self.retry, 1, 0, 1000) as u32;
        let delay_before_retry = v.secs(
            &format!("{key}.delay_before_retry"),
            self.delay_before_retry,
            1.0,
            0.0,
            3600.0,
        );
        let kind = if rtmp {
            let stream = match self.stream.as_deref() {
                None => None,
                Some(s) => match s.split_once('/') {
                    Some((app, name)) if !app.is_empty() && !name.is_empty() => {
                        Some((app.to_string(), name.to_string()))
                    }
                    _ => {
                        v.err(
                            &format!("{key}.stream"),
                            format!("{s:?} is not \"APP/NAME\""),
                        );
                        None
                    }
                },
            };
            CheckKind::Rtmp { stream }
        } else {
            if self.stream.is_some() {
                v.err(&format!("{key}.stream"), "only rtmp_check plays a stream");
            }
            if http {
                let raw = self.url.clone().unwrap_or_default();
                if raw.is_empty() {
                    v.err(
                        &format!("{key}.url"),
                        "http_get needs at least one [[...http_get.url]] with a path (keepalived's url { path ... })",
                    );
                }
                let urls = raw
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        let path = u.path.clone().unwrap_or_default();
                        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            v.err(
                                &format!("{key}.url[{i}].path"),
                                format!("{path:?} is not an absolute path without spaces (\"/api/v1/streams\")"),
                            );
                        }
                        let status_code =
                            v.int(&format!("{key}.url[{i}].status_code"), u.status_code, 200, 100, 599) as u16;
                        HttpUrl { path, status_code }
                    })
                    .collect();
                CheckKind::Http { urls }
            } else if misc {
                let path = self.misc_path.clone().unwrap_or_default();
                let argv = match track::split_words(&path) {
                    Ok(a) => a,
                    Err(e) => {
                        v.err(
                            &format!("{key}.misc_path"),
                            format!("{path:?} {e}: give the command to run, as \"/usr/local/bin/chk_rtmp 198.18.0.11\""),
                        );
                        Vec::new()
                    }
                };
                let timeout = v.secs(
                    &format!("{key}.misc_timeout"),
                    self.misc_timeout,
                    delay_loop.as_secs_f64().min(3600.0),
                    0.01,
                    3600.0,
                );
                CheckKind::Misc {
                    argv,
                    timeout,
                    dynamic: self.misc_dynamic.unwrap_or(false),
                }
            } else {
                CheckKind::Tcp
            }
        };
        if !misc {
            for (k, given) in [
                ("misc_path", self.misc_path.is_some()),
                ("misc_timeout", self.misc_timeout.is_some()),
                ("misc_dynamic", self.misc_dynamic.is_some()),
            ] {
                if given {
                    v.err(&format!("{key}.{k}"), "only misc_check runs a command");
                }
            }
        } else if self.connect_port.is_some() {
            v.err(
                &format!("{key}.connect_port"),
                "misc_check connects nowhere itself: pass the port to the command",
            );
        }
        let warmup = v.secs(&format!("{key}.warmup"), self.warmup, 0.0, 0.0, 3600.0);
        if self.url.is_some() && !http {
            v.err(&format!("{key}.url"), "only http_get fetches URLs");
        }
        let connect_port = self.connect_port.map(|_| {
            v.int(
                &format!("{key}.connect_port"),
                self.connect_port,
                0,
                1,
                65535,
            ) as u16
        });
        Check {
            kind,
            connect_timeout,
            retry,
            delay_before_retry,
            connect_port,
            warmup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        LbConfig::parse(src)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const GOOD: &str = r#"
[[virtual_server]]
address = "127.0.0.1:1935"
lb_algo = "rr"
lb_kind = "PROXY"
persistence_timeout = 50
persistence_granularity = "255.255.255.0"
delay_loop = 6

[[virtual_server.real_server]]
address = "127.0.0.1:19351"
weight = 1
[virtual_server.real_server.tcp_check]
connect_timeout = 3
nb_get_retry = 3
delay_before_retry = 3
"#;

    #[test]
    fn seed_config_maps_over() {
        let c = LbConfig::parse(GOOD).unwrap();
        let vs = &c.virtual_servers[0];
        assert_eq!(vs.algo, Algo::Rr);
        assert_eq!(vs.persistence.unwrap().prefix_v4, 24);
        assert_eq!(vs.real_servers[0].check.as_ref().unwrap().retry, 3);
        assert_eq!(c.admin_listen, DEFAULT_ADMIN.parse().unwrap());
    }

    #[test]
    fn examples_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lb.toml");
        LbConfig::load(&path).unwrap_or_else(|e| panic!("examples/lb.toml: {e}"));
    }

    #[test]
    fn bad_configs_name_their_keys() {
        let e = errors(&GOOD.replace("lb_algo = \"rr\"", "lb_algo = \"rr\"\nbogus = 1"));
        assert!(
            e[0].starts_with("virtual_server[0].bogus: unknown key (the keys here: address,"),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("address = \"127.0.0.1:19351\"", "address = \"127.0.0.1\""));
        assert!(
            e[0].starts_with("virtual_server[0].real_server[0].address:"),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("weight = 1", "weight = -1"));
        assert!(
            e[0].starts_with("virtual_server[0].real_server[0].weight: -1 is out of range"),
            "{e:?}"
        );
        let e = errors("[[virtual_server]]\naddress = \"127.0.0.1:1935\"\n");
        assert!(
            e[0].starts_with("virtual_server[0].real_server: is empty"),
            "{e:?}"
        );
        let e = errors(&GOOD.replace("\"rr\"", "\"fastest\""));
        assert!(e[0].contains("\"fastest\" is not one of"), "{e:?}");
        let e = errors(&GOOD.replace("\"255.255.255.0\"", "\"255.0.255.0\""));
        assert!(e[0].contains("not a contiguous netmask"), "{e:?}");
        let e = errors(&GOOD.replace("\"PROXY\"", "\"TUN\""));
        assert!(e[0].starts_with("virtual_server[0].lb_kind"), "{e:?}");
        let e = errors(&format!(
            "admin_timeout = 0\nadmin_token_file = \"\"\n{GOOD}"
        ));
        assert!(e[0].starts_with("admin_token_file: is empty"), "{e:?}");
        assert!(
            e[1].starts_with("admin_timeout: 0 is out of range"),
            "{e:?}"
        );
    }

    #[test]
    fn keepalived_keys_say_what_replaces_them_all_at_once() {
        // Accepted: protocol = "TCP" changes nothing.
        LbConfig::parse(&GOOD.replace(
            "lb_kind = \"PROXY\"",
            "lb_kind = \"PROXY\"\nprotocol = \"TCP\"",
        ))
        .unwrap();
        let src = GOOD
            .replace(
                "lb_kind = \"PROXY\"",
                "lb_kind = \"NAT\"\nprotocol = \"UDP\"\nnat_mask = \"255.255.255.0\"\nbogus = 1",
            )
            .replace("weight = 1", "weight = 70000\nnotify_down = \"/bin/true\"")
            .replace(
                "connect_timeout = 3",
                "connect_timeout = 3\nconnect_ip = \"198.18.0.1\"",
            );
        let e = errors(&format!("[global_defs]\nrouter_id = \"LVS_1\"\n{src}"));
        let find = |k: &str| {
            e.iter()
                .find(|x| x.starts_with(k))
                .unwrap_or_else(|| panic!("no {k} in {e:#?}"))
                .clone()
        };
        assert!(find("global_defs: keepalived's global_defs:").contains("top-level keys"));
        assert!(
            find("virtual_server[0].nat_mask: keepalived's nat_mask: not needed").contains("NAT")
        );
        assert!(find("virtual_server[0].bogus: unknown key").contains("lb_algo"));
        assert!(
            find("virtual_server[0].real_server[0].notify_down: keepalived's")
                .contains("not supported")
        );
        assert!(
            find("virtual_server[0].real_server[0].tcp_check.connect_ip: keepalived's")
                .contains("own address")
        );
        // And the validation problems of the rest, in the same pass.
        assert!(find("virtual_server[0].protocol: \"UDP\" is not supported").contains("TCP"));
        assert!(
            find("virtual_server[0].lb_kind: \"NAT\" does not exist here").contains("\"PROXY\"")
        );
        assert!(
            find("virtual_server[0].real_server[0].weight: 70000 is out of range")
                .contains("65535")
        );
        assert_eq!(e.len(), 8, "{e:#?}");
        let e = errors(&GOOD.replace("\"PROXY\"", "\"TUN\""));
        assert!(
            e[0].contains("\"TUN\" does not exist here: the kinds are \"PROXY\""),
            "{e:?}"
        );
        // Syntax: every error at once, each with its line.
        let e = errors("admin_listen = \n[[virtual_server]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("line 1:") && e[1].starts_with("line 2:"),
            "{e:?}"
        );
        // A type error, with its line, also the first only.
        let e = errors(&GOOD.replace("weight = 1", "weight = \"heavy\""));
        assert!(
            e[0].contains("line 12") && e[0].contains("stops at its first error"),
            "{e:?}"
        );
    }

    #[test]
    fn http_get_takes_urls_with_status_codes() {
        let tcp = "[virtual_server.real_server.tcp_check]";
        assert!(GOOD.contains(tcp));
        let http = GOOD.replace(
            tcp,
            "[virtual_server.real_server.http_get]\nconnect_port = 1985",
        ) + "[[virtual_server.real_server.http_get.url]]\npath = \"/api/v1/streams\"\n";
        let c = LbConfig::parse(&http).unwrap();
        let check = c.virtual_servers[0].real_servers[0].check.clone().unwrap();
        assert_eq!(check.connect_port, Some(1985));
        assert_eq!(
            check.kind,
            CheckKind::Http {
                urls: vec![HttpUrl {
                    path: "/api/v1/streams".into(),
                    status_code: 200
                }]
            }
        );
        let e = errors(&GOOD.replace(tcp, "[virtual_server.real_server.http_get]"));
        assert!(
            e.iter().any(|x| x.starts_with(
                "virtual_server[0].real_server[0].http_get.url: http_get needs at least one"
            )),
            "{e:?}"
        );
        let bad = GOOD.replace(tcp, "[virtual_server.real_server.http_get]")
            + "[[virtual_server.real_server.http_get.url]]\npath = \"no slash\"\nstatus_code = 999\ndigest = \"abc\"\n";
        let e = errors(&bad);
        for want in [
            "virtual_server[0].real_server[0].http_get.url[0].path: \"no slash\" is not an absolute path",
            "virtual_server[0].real_server[0].http_get.url[0].status_code",
            "virtual_server[0].real_server[0].http_get.url[0].digest: keepalived's digest",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want}: {e:?}");
        }
        let e = errors(&GOOD.replace(
            tcp,
            &format!("{tcp}\nstream = \"a/b\"\n[virtual_server.real_server.http_get]"),
        ));
        assert!(
            e.iter()
                .any(|x| x.contains("a real_server takes one check")),
            "{e:?}"
        );
    }

    #[test]
    fn dr_is_accepted_with_its_rules() {
        let dr = GOOD
            .replace("\"PROXY\"", "\"DR\"")
            .replace("127.0.0.1:19351", "127.0.0.2:1935");
        let c = LbConfig::parse(&dr).unwrap();
        assert_eq!(c.virtual_servers[0].kind, Kind::Dr);
        let e = errors(&GOOD.replace("\"PROXY\"", "\"DR\""));
        assert!(
            e[0].starts_with("virtual_server[0].real_server[0].address: 127.0.0.1:19351: with lb_kind = \"DR\" a real server listens on the virtual server's port 1935"),
            "{e:?}"
        );
        for algo in ["lc", "wlc", "sh", "mh", "wrr"] {
            let c = LbConfig::parse(&dr.replace("\"rr\"", &format!("\"{algo}\""))).unwrap();
            assert_eq!(c.virtual_servers[0].algo.name(), algo);
        }
        let e = errors(&dr.replace("weight = 1", "weight = 1\nsend_proxy = \"v2\""));
        assert!(
            e[0].starts_with("virtual_server[0].real_server[0].send_proxy"),
            "{e:?}"
        );
    }

    #[test]
    fn vrrp_only_config_is_valid() {
        let c = LbConfig::parse(
            "[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"MASTER\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nadvert_int = 1\nversion = 2\nvirtual_ipaddress = [\"198.18.0.100\"]\n[vrrp_instance.authentication]\nauth_type = \"PASS\"\nauth_pass = \"1111\"\n",
        )
        .unwrap();
        let v = &c.vrrp_instances[0];
        assert_eq!((v.vrid, v.version, v.vips[0].1), (51, 2, 32));
        assert!(c.virtual_servers.is_empty());
        assert!(!v.track_virtual_servers);
    }

    #[test]
    fn bad_vrrp_configs() {
        let base = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.100/24\"]\n";
        let e = errors(&format!("{base}advert_int = 0.005\n"));
        assert!(e[0].starts_with("vrrp_instance[0].advert_int"), "{e:?}");
        let e = errors(&format!("{base}version = 2\nadvert_int = 0.5\n"));
        assert!(e[0].contains("whole number"), "{e:?}");
        let e = errors(&format!(
            "{base}[vrrp_instance.authentication]\nauth_pass = \"x\"\n"
        ));
        assert!(e[0].contains("VRRPv2 only"), "{e:?}");
        let e = errors(&format!("{base}priority = 300\n"));
        assert!(e[0].starts_with("vrrp_instance[0].priority"), "{e:?}");
        let e = errors(&base.replace("virtual_router_id = 51\n", ""));
        assert!(
            e[0].starts_with("vrrp_instance[0].virtual_router_id: is required"),
            "{e:?}"
        );
    }

    #[test]
    fn vrrp_over_ipv6() {
        let base =
            "[[vrrp_instance]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n";
        let c = LbConfig::parse(&format!(
            "{base}virtual_ipaddress = [\"2001:2::100/64\", \"2001:2::101\"]\nunicast_src_ip = \"2001:2::2\"\nunicast_peer = [\"2001:2::3\"]\n"
        ))
        .unwrap();
        let v = &c.vrrp_instances[0];
        assert!(v.is_v6());
        assert_eq!(v.version, 3);
        assert_eq!(
            v.vips,
            vec![
                ("2001:2::100".parse().unwrap(), 64),
                ("2001:2::101".parse().unwrap(), 128)
            ]
        );
        assert_eq!(v.unicast_peer, vec!["2001:2::3".parse::<IpAddr>().unwrap()]);
        // An IPv4 and an IPv6 instance may share VRID and interface.
        let both = format!(
            "{base}virtual_ipaddress = [\"2001:2::100/64\"]\n{}",
            base.replace("VI_6", "VI_4") + "virtual_ipaddress = [\"198.18.0.100/24\"]\n"
        );
        let c = LbConfig::parse(&both).unwrap();
        assert_eq!(
            c.vrrp_instances
                .iter()
                .map(|v| v.is_v6())
                .collect::<Vec<_>>(),
            vec![true, false]
        );
        let e = errors(&format!(
            "{base}virtual_ipaddress = [\"198.18.0.100/24\", \"2001:2::100/64\"]\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("vrrp_instance[0].virtual_ipaddress[1]: instance \"VI_6\": \"2001:2::100/64\" is IPv6 but 198.18.0.100 is IPv4"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}virtual_ipaddress = [\"2001:2::100/64\"]\nversion = 2\n"
        ));
        assert!(
            e[0].starts_with("vrrp_instance[0].version: instance \"VI_6\": 2 has no IPv6"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}virtual_ipaddress = [\"2001:2::100/64\"]\nunicast_peer = [\"198.18.0.3\"]\n"
        ));
        assert!(
            e[0].starts_with(
                "vrrp_instance[0].unicast_peer[0]: instance \"VI_6\": \"198.18.0.3\" is not IPv6"
            ),
            "{e:?}"
        );
        let e = errors(&format!(
            "{base}virtual_ipaddress = [\"198.18.0.100\"]\nunicast_src_ip = \"2001:2::2\"\n"
        ));
        assert!(
            e[0].starts_with(
                "vrrp_instance[0].unicast_src_ip: instance \"VI_6\": \"2001:2::2\" is not IPv4"
            ),
            "{e:?}"
        );
        for bad in ["2001:2::100/129", "ff02::12", "::", "2001:2::zz"] {
            let e = errors(&format!("{base}virtual_ipaddress = [\"{bad}\"]\n"));
            assert!(
                e[0].starts_with("vrrp_instance[0].virtual_ipaddress[0]"),
                "{bad}: {e:?}"
            );
        }
        let e = errors(&format!(
            "{base}virtual_ipaddress = [\"2001:2::100\"]\n{base}virtual_ipaddress = [\"2001:2::101\"]\n"
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("virtual_router_id: 51 is used by another instance")),
            "{e:?}"
        );
    }

    #[test]
    fn scripts_groups_and_misc_checks_are_validated_with_their_keys() {
        let vrrp = |name: &str, vrid: u8, more: &str| {
            format!("[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\nvirtual_ipaddress = [\"198.18.0.10{vrid}\"]\n{more}\n")
        };
        let good = format!(
            "{}{}[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/test -e '/run/a b'\"\nweight = -20\n\n[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_2\"]\nsync_group_tracking_weight = true\n",
            vrrp("VI_1", 1, "track_script = [\"chk\", ]"),
            vrrp("VI_2", 2, "track_script = [{ name = \"chk\", weight = 15 }]"),
        );
        let c = LbConfig::parse(&good).unwrap();
        let t = &c.vrrp_instances[0].track_script[0];
        assert_eq!(t.script.argv, ["/bin/test", "-e", "/run/a b"]);
        assert_eq!(
            (t.weight, t.script.interval, t.script.timeout, t.script.rise),
            (-20, Duration::from_secs(1), Duration::from_secs(1), 1)
        );
        assert_eq!(c.vrrp_instances[1].track_script[0].weight, 15);
        assert_eq!(c.vrrp_instances[1].sync_group.as_ref().unwrap().name, "G");
        let bad = format!(
            "{}{}[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/x 'open\"\nweight = 300\nrise = 0\nuser = \"nobody\"\n\n[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_9\"]\n",
            vrrp("VI_1", 1, "track_script = [\"nope\", { name = \"chk\", weight = \"x\" }, 5]"),
            vrrp("VI_2", 2, ""),
        );
        let e = errors(&bad);
        for want in [
            "vrrp_script[0].user: keepalived's user: not supported",
            "vrrp_script[0].script: \"/bin/x 'open\" a ' quote is not closed",
            "vrrp_script[0].weight: 300 is out of range (-253..=253)",
            "vrrp_script[0].rise: 0 is out of range",
            "vrrp_instance[0].track_script[0]: no [[vrrp_script]] is named \"nope\"",
            "vrrp_instance[0].track_script[1].weight: \"x\" is not a whole number",
            "vrrp_instance[0].track_script[2]: 5 is not a script name",
            "vrrp_sync_group[0].group[1]: no [[vrrp_instance]] is named \"VI_9\"",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want}: {e:#?}");
        }
        let twice = format!(
            "{}{}[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\"]\n[[vrrp_sync_group]]\nname = \"H\"\ngroup = [\"VI_1\"]\n",
            vrrp("VI_1", 1, ""),
            vrrp("VI_2", 2, "")
        );
        let e = errors(&twice);
        assert!(
            e[0].starts_with(
                "vrrp_sync_group[1].group[0]: \"VI_1\" is already in vrrp_sync_group \"G\""
            ),
            "{e:?}"
        );
        // misc_check.
        let tcp = "[virtual_server.real_server.tcp_check]";
        let c = LbConfig::parse(&GOOD.replace(
            tcp,
            "[virtual_server.real_server.misc_check]\nmisc_path = \"/usr/local/bin/chk 127.0.0.1\"\nmisc_dynamic = true\nwarmup = 2\n",
        ).replace("connect_timeout = 3\n", ""))
        .unwrap();
        let ck = c.virtual_servers[0].real_servers[0].check.clone().unwrap();
        assert_eq!(
            ck.kind,
            CheckKind::Misc {
                argv: vec!["/usr/local/bin/chk".into(), "127.0.0.1".into()],
                timeout: Duration::from_secs(6),
                dynamic: true
            },
            "misc_timeout defaults to the delay_loop"
        );
        assert_eq!(ck.warmup, Duration::from_secs(2));
        let e = errors(&GOOD.replace(
            tcp,
            "[virtual_server.real_server.misc_check]\nmisc_path = \"\"\nmisc_timeout = 0\nconnect_port = 80\n",
        ));
        for want in [
            "virtual_server[0].real_server[0].misc_check.misc_path: \"\" is empty",
            "virtual_server[0].real_server[0].misc_check.misc_timeout: 0 is out of range",
            "virtual_server[0].real_server[0].misc_check.connect_port: misc_check connects nowhere",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want}: {e:#?}");
        }
        let e = errors(&GOOD.replace(tcp, &format!("{tcp}\nmisc_path = \"/bin/true\"")));
        assert!(
            e.iter().any(|x| x.starts_with(
                "virtual_server[0].real_server[0].tcp_check.misc_path: only misc_check runs a command"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn missing_interfaces_are_warnings_with_their_key() {
        let c = LbConfig::parse("[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth9\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.100\"]\ntrack_interface = [\"eth0\", \"bond7\"]\n").unwrap();
        let w: Vec<String> = c
            .warnings(|n| n == "eth0")
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("vrrp_instance[0].interface: interface \"eth9\" does not exist"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("vrrp_instance[0].track_interface[1]: interface \"bond7\""),
            "{w:?}"
        );
        assert!(c.warnings(|_| true).is_empty());
        let plain = std::env::temp_dir().join(format!("lb-plain-{}", std::process::id()));
        std::fs::write(&plain, "not a program").unwrap();
        let c = LbConfig::parse(&format!("{}track_script = [\"a\", \"b\", \"c\"]\n[[vrrp_script]]\nname = \"a\"\nscript = \"/nonexistent/chk\"\n[[vrrp_script]]\nname = \"b\"\nscript = \"{}\"\n[[vrrp_script]]\nname = \"c\"\nscript = \"/bin/true\"\n", "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"lo\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.100\"]\n", plain.display())).unwrap();
        let w: Vec<String> = c.warnings(|_| true).iter().map(|e| e.to_string()).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "vrrp_instance[0].track_script[0]: vrrp_script \"a\": /nonexistent/chk:"
            ),
            "{w:?}"
        );
        assert!(
            w[1].ends_with("is not executable: the script fails until it can run"),
            "{w:?}"
        );
        let _ = std::fs::remove_file(&plain);
        assert!(interface_exists("lo"));
        assert!(!interface_exists("../lo") && !interface_exists("..") && !interface_exists(""));
    }

    #[test]
    fn masks() {
        let p = Persistence {
            timeout: Duration::from_secs(1),
            prefix_v4: 24,
            prefix_v6: 64,
        };
        assert_eq!(
            p.mask("198.18.3.7".parse().unwrap()),
            "198.18.3.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            p.mask("2001:db8::1".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        let p = Persistence {
            timeout: Duration::from_secs(1),
            prefix_v4: 0,
            prefix_v6: 0,
        };
        assert_eq!(
            p.mask("198.18.3.7".parse().unwrap()),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
    }
}
