//! The edge's configuration: TOML whose keys follow SRS (`listen`, `mode`, `origin`,
//! `max_connections`, `gop_cache`, `queue_length`, `chunk_size`, `mw_latency`), so an
//! srs.conf maps over key by key. Parsed with serde (unknown keys are errors), then validated
//! into [`EdgeConfig`] with one [`ConfigError`] per problem.

use common::config::{parse_host_port, parse_socket_addr, parse_table, ConfigError, ConfigErrors};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub mode: Option<String>,
    pub origin: Option<Vec<String>>,
    pub max_connections: Option<i64>,
    pub gop_cache: Option<bool>,
    pub queue_length: Option<f64>,
    pub chunk_size: Option<i64>,
    pub mw_latency: Option<i64>,
    pub sendfile: Option<bool>,
    pub handshake_timeout: Option<f64>,
    pub origin_timeout: Option<f64>,
    pub pull_idle_timeout: Option<f64>,
    pub max_message_size: Option<i64>,
    pub proxy_protocol: Option<bool>,
    pub set_real_ip_from: Option<Vec<String>>,
    pub send_buffer: Option<i64>,
    pub max_handshakes: Option<i64>,
    pub max_handshakes_per_ip: Option<i64>,
    pub max_queue_bytes: Option<i64>,
    pub max_queue_bytes_total: Option<i64>,
    pub log_level: Option<String>,
    pub grace_period: Option<f64>,
    pub dr_vip: Option<Vec<String>>,
    pub static_pull: Option<Vec<String>>,
    pub publish: Option<RawPublish>,
    pub play: Option<RawPlay>,
    pub http_hooks: Option<RawHooks>,
    pub api: Option<RawApi>,
    pub http: Option<RawHttp>,
    pub hls: Option<RawHls>,
    pub cluster: Option<RawCluster>,
}

/// `[cluster]`: the stream registry in etcd (issue 13). No SRS equivalent (SRS's `cluster`
/// block is `mode` and `origin`, at the top level here).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub registry: Option<Vec<String>>,
    pub lease_ttl: Option<i64>,
    pub prefix: Option<String>,
    pub advertise: Option<String>,
    pub node: Option<String>,
    pub timeout: Option<f64>,
}

/// `[http]` (SRS: `http_server` + `http_remux`): HTTP-FLV and HLS for browsers.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub crossdomain: Option<bool>,
    pub flv: Option<bool>,
}

/// `[hls]` (SRS: vhost `hls`): segmenting of every stream served over `[http]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHls {
    pub enabled: Option<bool>,
    pub hls_fragment: Option<f64>,
    pub hls_window: Option<f64>,
    pub hls_part: Option<f64>,
    pub hls_idle_timeout: Option<f64>,
}

/// `[api]` (SRS: `http_api`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    pub enabled: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub key: Option<String>,
}

/// `[play]`: who may play (signed play tokens; see `crate::token`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlay {
    pub token_keys: Option<Vec<String>>,
    pub token_exempt: Option<Vec<String>>,
}

/// `[http_hooks]` (SRS: `http_hooks`; nginx-rtmp: `on_publish`, `on_play`, `on_done`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub on_publish: Option<String>,
    pub on_play: Option<String>,
    pub on_done: Option<String>,
    pub timeout: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Origin: takes publishers, serves players.
    Local,
    /// Edge: pulls each stream from an origin on its first player's demand.
    Remote,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    pub listen: SocketAddr,
    pub mode: Mode,
    /// Upstreams as "HOST:PORT", tried in order.
    pub origin: Vec<(String, u16)>,
    pub max_connections: usize,
    pub gop_cache: bool,
    pub queue_length: Duration,
    pub chunk_size: usize,
    pub mw_latency: Duration,
    /// The merged writer feeds players from a memory file with sendfile (`hub::spool`).
    pub sendfile: bool,
    pub handshake_timeout: Duration,
    pub origin_timeout: Duration,
    pub pull_idle_timeout: Duration,
    pub max_message_size: usize,
    pub proxy_protocol: bool,
    /// Peers that must (and alone may) send a PROXY v2 header when `proxy_protocol` is on.
    pub set_real_ip_from: Vec<IpNet>,
    /// SO_SNDBUF of client sockets in bytes (0 = kernel autotuning).
    pub send_buffer: usize,
    /// Connections still in handshake (before play/publish), in total and per client address.
    pub max_handshakes: usize,
    pub max_handshakes_per_ip: usize,
    /// Bytes a stream's queue (ring + GOP cache) may hold, and all streams together.
    pub max_queue_bytes: usize,
    pub max_queue_bytes_total: usize,
    /// A tracing filter directive (`info`, `debug`, `edge=debug,warn`).
    pub log_level: String,
    /// SIGTERM: how long current viewers keep playing after the listener closed.
    pub grace_period: Duration,
    /// Virtual IPs an lb with `lb_kind = "DR"` forwards to this edge (`dr_vip`): checked at
    /// start and reload (on `lo`, ARP sysctls), never changed (that is `edge dr-setup`).
    pub dr_vip: Vec<std::net::Ipv4Addr>,
    /// Streams (`APP/STREAM`) an edge pulls from boot on and keeps pulled without viewers
    /// (warm mirrors: the first viewer gets a picture at once).
    pub static_pull: Vec<String>,
    pub publish: PublishConfig,
    /// `[play]`: play tokens required unless the client is in `token_exempt`.
    pub play: crate::token::PlayConfig,
    /// `[http_hooks]`: the site's service asked before a publish or play.
    pub http_hooks: crate::hooks::HooksConfig,
    /// The HTTP API's address (`[api] listen`), when enabled.
    pub api: Option<SocketAddr>,
    /// HTTP delivery (`[http]`), when enabled.
    pub http: Option<HttpConfig>,
    /// The stream registry (`[cluster]`), when configured.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd endpoints as "HOST:PORT" (from `http://HOST:PORT`), tried in order.
    pub registry: Vec<String>,
    /// The lease an origin's registrations live under: a dead origin's streams vanish this
    /// long after its last keepalive.
    pub lease_ttl: Duration,
    /// Key prefix of the registrations (`PREFIX APP/STREAM/NODE`).
    pub prefix: String,
    /// The RTMP address an origin registers (what edges connect to); `None` = the address
    /// the server listens on.
    pub advertise: Option<(String, u16)>,
    /// The name an origin registers under; `None` = its advertised address.
    pub node: Option<String>,
    /// Bound of one registry request: a lookup that takes longer falls back to `origin`.
    pub timeout: Duration,
}

/// `[http]` and `[hls]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// `Access-Control-Allow-Origin: *` on every answer (SRS `crossdomain`), so a page from
    /// another origin can play.
    pub crossdomain: bool,
    /// `GET /APP/STREAM.flv`.
    pub flv: bool,
    /// `GET /APP/STREAM.m3u8` and its files, when `[hls] enabled`.
    pub hls: Option<HlsConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HlsConfig {
    /// Target segment duration (SRS `hls_fragment`); segments cut at keyframes.
    pub fragment: Duration,
    /// How much of the stream the playlist lists and memory holds (SRS `hls_window`).
    pub window: Duration,
    /// LL-HLS part target duration.
    pub part: Duration,
    /// A stream's packager stops (and stops counting as a viewer of its pull) when no HLS
    /// request came for this long.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    pub enabled: bool,
    pub allow: Vec<IpNet>,
    pub key: Option<String>,
}

pub use common::nets::in_networks;

impl PublishConfig {
    pub fn allows(&self, ip: IpAddr) -> bool {
        in_networks(&self.allow, ip)
    }

    /// Whether `offered` is the publish key, compared in constant time (a wrong key's
    /// timing says nothing about how much of it was right).
    pub fn key_matches(&self, offered: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.key, offered) {
            (None, _) => true,
            (Some(k), Some(o)) => bool::from(k.as_bytes().ct_eq(o.as_bytes())),
            (Some(_), None) => false,
        }
    }
}

impl EdgeConfig {
    /// The hub's options for this config.
    pub fn hub_options(&self) -> crate::hub::HubOptions {
        crate::hub::HubOptions {
            chunk_size: self.chunk_size,
            gop_cache: self.gop_cache,
            ring: crate::hub::ring::Limits {
                window: self.queue_length,
                // Far above what the time window holds at ~75 messages/s; a bound for
                // streams of many tiny messages.
                max_frames: ((self.queue_length.as_secs_f64() * 400.0) as usize).clamp(1024, 65536),
                max_bytes: self.max_queue_bytes,
            },
            max_total_bytes: self.max_queue_bytes_total,
            sendfile: self.sendfile,
        }
    }
}

/// Parses a list of "CIDR or IP" entries, one error per bad entry under `key[i]`.
fn networks(errs: &mut Vec<ConfigError>, key: &str, list: &[String]) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let parsed = a
            .parse::<IpNet>()
            .or_else(|_| a.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(n) => nets.push(n),
            Err(_) => errs.push(ConfigError::new(
                format!("{key}[{i}]"),
                format!("{a:?} is not a CIDR (like \"198.18.0.0/15\") or an IP address"),
            )),
        }
    }
    nets
}

fn loopback_nets() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}

impl EdgeConfig {
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        Self::parse(&source)
    }

    /// Every syntax error at once, then every unknown key, type and validation problem.
    pub fn parse(source: &str) -> Result<EdgeConfig, ConfigErrors> {
        Self::from_table(parse_table(source)?)
    }

    /// Every unknown or SRS-only key is reported at once (with what replaces it), SRS's
    /// habits (`listen = 1935`, one `origin` string) are accepted, then the rest is read.
    fn from_table(mut table: toml::Table) -> Result<EdgeConfig, ConfigErrors> {
        let mut errs = srs_habits(&mut table);
        let table_copy = table.clone();
        let raw: Result<RawConfig, _> = toml::Value::Table(table).try_into();
        match raw {
            Ok(raw) => match raw.validate() {
                Ok(c) if errs.is_empty() => Ok(c),
                Ok(_) => Err(ConfigErrors(errs)),
                Err(ConfigErrors(more)) => {
                    errs.extend(more);
                    Err(ConfigErrors(errs))
                }
            },
            Err(_) => {
                // Which keys have the wrong type: each alone, so every one is named at once.
                for (k, v) in &table_copy {
                    let mut one = toml::Table::new();
                    one.insert(k.clone(), v.clone());
                    if let Err(e) = toml::Value::Table(one).try_into::<RawConfig>() {
                        errs.push(ConfigError::new(
                            k.clone(),
                            e.message().trim().replace('\n', " "),
                        ));
                    }
                }
                Err(ConfigErrors(errs))
            }
        }
    }

    /// An origin on `listen` with everything else at its default (tests, demo).
    pub fn origin(listen: SocketAddr) -> EdgeConfig {
        RawConfig {
            listen: Some(listen.to_string()),
            mode: Some("local".into()),
            ..Default::default()
        }
        .validate()
        .expect("default origin config is valid")
    }

    /// An edge on `listen` pulling from `origins` (tests, demo).
    pub fn edge(listen: SocketAddr, origins: &[SocketAddr]) -> EdgeConfig {
        RawConfig {
            listen: Some(listen.to_string()),
            mode: Some("remote".into()),
            origin: Some(origins.iter().map(|o| o.to_string()).collect()),
            ..Default::default()
        }
        .validate()
        .expect("default edge config is valid")
    }
}

/// Top-level keys of the file (RawConfig's fields).
const KEYS: &[&str] = &[
    "listen",
    "mode",
    "origin",
    "max_connections",
    "gop_cache",
    "queue_length",
    "chunk_size",
    "mw_latency",
    "sendfile",
    "handshake_timeout",
    "origin_timeout",
    "pull_idle_timeout",
    "max_message_size",
    "proxy_protocol",
    "set_real_ip_from",
    "send_buffer",
    "max_handshakes",
    "max_handshakes_per_ip",
    "max_queue_bytes",
    "max_queue_bytes_total",
    "log_level",
    "grace_period",
    "dr_vip",
    "static_pull",
    "publish",
    "play",
    "http_hooks",
    "api",
    "http",
    "hls",
    "cluster",
];

/// srs.conf keys that mean nothing here, and what to do instead.
const SRS_ONLY: &[(&str, &str)] = &[
    ("pid", "not needed: systemd tracks the process (there is no pid file)"),
    ("daemon", "not needed: run in the foreground under systemd"),
    ("srs_log_file", "not needed: the log goes to stderr (journald under systemd)"),
    ("srs_log_tank", "not needed: the log goes to stderr (journald under systemd)"),
    ("srs_log_level", "use log_level"),
    ("vhost", "there are no vhosts: put the vhost's keys (mode, origin, gop_cache, queue_length, ...) at the top level"),
    ("tcp_nodelay", "not needed: always on"),
    ("http_api", "use [api] listen = \"127.0.0.1:1985\""),
    ("http_server", "use [http] listen = \"0.0.0.0:8080\" (HTTP-FLV and HLS)"),
    ("http_remux", "use [http] flv = true (GET /APP/STREAM.flv)"),
    ("mw_sleep", "use mw_latency (milliseconds)"),
    ("min_latency", "not needed: merged writes follow mw_latency"),
    ("ff_log_dir", "not needed: there is no transcoder"),
    ("max_connections_per_ip", "use max_handshakes_per_ip (connections still in handshake per address)"),
];

/// What srs.conf's top-level `key` becomes here, when known (`edge import-srs` reuses it).
pub fn srs_hint(key: &str) -> Option<&'static str> {
    SRS_ONLY.iter().find(|(k, _)| *k == key).map(|(_, h)| *h)
}

/// Accepts `listen = 1935` and `origin = "HOST:PORT"`; returns one error per key that is
/// unknown (with a suggestion) or only meaningful to SRS, and removes them.
fn srs_habits(table: &mut toml::Table) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    if let Some(toml::Value::Integer(port)) = table.get("listen") {
        let v = toml::Value::String(format!("0.0.0.0:{port}"));
        table.insert("listen".into(), v);
    }
    if let Some(toml::Value::String(one)) = table.get("origin") {
        let v = toml::Value::Array(vec![toml::Value::String(one.clone())]);
        table.insert("origin".into(), v);
    }
    // srs.conf's `cluster { mode remote; origin ...; }`: here these are top-level keys
    // ([cluster] is the registry).
    if let Some(toml::Value::Table(c)) = table.get_mut("cluster") {
        for k in ["mode", "origin"] {
            if c.remove(k).is_some() {
                errs.push(ConfigError::new(
                    format!("cluster.{k}"),
                    format!("srs.conf's cluster block: put {k} at the top level ([cluster] holds the stream registry)"),
                ));
            }
        }
    }
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        table.remove(&k);
        let why = match SRS_ONLY.iter().find(|(name, _)| *name == k) {
            Some((_, hint)) => format!("an srs.conf key: {hint}"),
            None => match KEYS.iter().find(|known| close(known, &k)) {
                Some(known) => format!("unknown key (did you mean `{known}`?)"),
                None => "unknown key (see the README's edge configuration reference)".into(),
            },
        };
        errs.push(ConfigError::new(k, why));
    }
    errs
}

/// Whether two keys are at most two edits apart (Levenshtein: a typo or a swap).
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

fn seconds(
    errs: &mut Vec<ConfigError>,
    key: &str,
    v: Option<f64>,
    default: f64,
    min: f64,
    max: f64,
) -> Duration {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) || v.is_nan() {
        errs.push(ConfigError::new(
            key,
            format!("{v} is out of range ({min}..={max} seconds)"),
        ));
        return Duration::from_secs_f64(default);
    }
    Duration::from_secs_f64(v)
}

fn integer(
    errs: &mut Vec<ConfigError>,
    key: &str,
    v: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        errs.push(ConfigError::new(
            key,
            format!("{v} is out of range ({min}..={max})"),
        ));
        return default;
    }
    v
}

impl RawConfig {
    pub fn validate(self) -> Result<EdgeConfig, ConfigErrors> {
        let mut errs = Vec::new();
        let listen = match parse_socket_addr(self.listen.as_deref().unwrap_or("0.0.0.0:1935")) {
            Ok(a) => a,
            Err(e) => {
                errs.push(ConfigError::new("listen", e));
                SocketAddr::from(([0, 0, 0, 0], 1935))
            }
        };
        let mode = match self.mode.as_deref().unwrap_or("local") {
            "local" => Mode::Local,
            "remote" => Mode::Remote,
            other => {
                errs.push(ConfigError::new(
                    "mode",
                    format!("{other:?} is not a mode: use \"local\" (origin) or \"remote\" (edge)"),
                ));
                Mode::Local
            }
        };
        let mut origin = Vec::new();
        for (i, o) in self.origin.iter().flatten().enumerate() {
            match parse_host_port(o) {
                Ok(hp) => origin.push(hp),
                Err(e) => errs.push(ConfigError::new(format!("origin[{i}]"), e)),
            }
        }
        let cluster = self
            .cluster
            .map(|c| validate_cluster(&mut errs, c, mode, listen));
        if mode == Mode::Remote
            && self.origin.as_ref().map(|o| o.is_empty()).unwrap_or(true)
            && cluster.is_none()
        {
            errs.push(ConfigError::new(
                "origin",
                "mode \"remote\" needs at least one origin \"HOST:PORT\" (or a [cluster] registry)",
            ));
        }
        if mode == Mode::Local && self.origin.as_ref().map(|o| !o.is_empty()).unwrap_or(false) {
            errs.push(ConfigError::new(
                "origin",
                "only used with mode = \"remote\"; remove it or set mode = \"remote\"",
            ));
        }
        let max_connections = integer(
            &mut errs,
            "max_connections",
            self.max_connections,
            1000,
            1,
            1_000_000,
        ) as usize;
        let queue_length = seconds(
            &mut errs,
            "queue_length",
            self.queue_length,
            10.0,
            1.0,
            300.0,
        );
        let chunk_size =
            integer(&mut errs, "chunk_size", self.chunk_size, 60000, 128, 65536) as usize;
        let mw_latency =
            Duration::from_millis(
                integer(&mut errs, "mw_latency", self.mw_latency, 100, 0, 2000) as u64,
            );
        let handshake_timeout = seconds(
            &mut errs,
            "handshake_timeout",
            self.handshake_timeout,
            10.0,
            0.1,
            300.0,
        );
        let origin_timeout = seconds(
            &mut errs,
            "origin_timeout",
            self.origin_timeout,
            5.0,
            0.1,
            300.0,
        );
        let pull_idle_timeout = seconds(
            &mut errs,
            "pull_idle_timeout",
            self.pull_idle_timeout,
            5.0,
            0.0,
            3600.0,
        );
        let max_message_size = integer(
            &mut errs,
            "max_message_size",
            self.max_message_size,
            8 << 20,
            1 << 16,
            (16 << 20) - 1,
        ) as usize;

        let send_buffer = integer(
            &mut errs,
            "send_buffer",
            self.send_buffer,
            256 * 1024,
            0,
            64 << 20,
        ) as usize;
        let max_handshakes = integer(
            &mut errs,
            "max_handshakes",
            self.max_handshakes,
            256,
            1,
            1_000_000,
        ) as usize;
        let max_handshakes_per_ip = integer(
            &mut errs,
            "max_handshakes_per_ip",
            self.max_handshakes_per_ip,
            16,
            1,
            1_000_000,
        ) as usize;
        let max_queue_bytes = integer(
            &mut errs,
            "max_queue_bytes",
            self.max_queue_bytes,
            64 << 20,
            1 << 20,
            1 << 34,
        ) as usize;
        let max_queue_bytes_total = integer(
            &mut errs,
            "max_queue_bytes_total",
            self.max_queue_bytes_total,
            2 << 30,
            1 << 20,
            1 << 40,
        ) as usize;
        let grace_period = seconds(
            &mut errs,
            "grace_period",
            self.grace_period,
            10.0,
            0.0,
            3600.0,
        );
        let log_level = self.log_level.unwrap_or_else(|| "info".into());
        if let Err(e) = common::logging::check_level(&log_level) {
            errs.push(ConfigError::new("log_level", e));
        }
        let proxy_protocol = self.proxy_protocol.unwrap_or(false);
        if self.set_real_ip_from.is_some() && !proxy_protocol {
            errs.push(ConfigError::new(
                "set_real_ip_from",
                "only used with proxy_protocol = true (the peers allowed to send a PROXY header)",
            ));
        }
        let set_real_ip_from = networks(
            &mut errs,
            "set_real_ip_from",
            &self.set_real_ip_from.unwrap_or_else(loopback_nets),
        );
        let api = self.api.map(|a| {
            let listen = a.listen.unwrap_or_else(|| "127.0.0.1:1985".into());
            parse_socket_addr(&listen).unwrap_or_else(|e| {
                errs.push(ConfigError::new("api.listen", e));
                SocketAddr::from(([127, 0, 0, 1], 1985))
            })
        });
        let hls_raw = self.hls;
        let rtmp_listen = listen;
        let http = match self.http {
            None => {
                if hls_raw.is_some() {
                    errs.push(ConfigError::new(
                        "hls",
                        "HLS is served over [http]: add [http] listen = \"0.0.0.0:8080\"",
                    ));
                }
                None
            }
            Some(h) => {
                let listen = h.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
                let listen = parse_socket_addr(&listen).unwrap_or_else(|e| {
                    errs.push(ConfigError::new("http.listen", e));
                    SocketAddr::from(([0, 0, 0, 0], 8080))
                });
                let raw = hls_raw.unwrap_or_default();
                let fragment = seconds(
                    &mut errs,
                    "hls.hls_fragment",
                    raw.hls_fragment,
                    2.0,
                    0.5,
                    60.0,
                );
                let window = seconds(
                    &mut errs,
                    "hls.hls_window",
                    raw.hls_window,
                    20.0,
                    2.0,
                    3600.0,
                );
                let part = seconds(&mut errs, "hls.hls_part", raw.hls_part, 0.5, 0.1, 5.0);
                let idle_timeout = seconds(
                    &mut errs,
                    "hls.hls_idle_timeout",
                    raw.hls_idle_timeout,
                    10.0,
                    1.0,
                    3600.0,
                );
                if window < fragment * 2 {
                    errs.push(ConfigError::new(
                        "hls.hls_window",
                        format!(
                            "{} s holds less than two segments of hls_fragment {} s: make it at least {}",
                            window.as_secs_f64(),
                            fragment.as_secs_f64(),
                            2.0 * fragment.as_secs_f64()
                        ),
                    ));
                }
                if part > fragment {
                    errs.push(ConfigError::new(
                        "hls.hls_part",
                        format!(
                            "{} s is longer than hls_fragment {} s (a part is a piece of a segment)",
                            part.as_secs_f64(),
                            fragment.as_secs_f64()
                        ),
                    ));
                }
                if listen == rtmp_listen && listen.port() != 0 {
                    errs.push(ConfigError::new(
                        "http.listen",
                        format!("{listen} is also `listen` (RTMP): give HTTP its own port"),
                    ));
                }
                Some(HttpConfig {
                    listen,
                    crossdomain: h.crossdomain.unwrap_or(true),
                    flv: h.flv.unwrap_or(true),
                    hls: raw.enabled.unwrap_or(true).then_some(HlsConfig {
                        fragment,
                        window,
                        part,
                        idle_timeout,
                    }),
                })
            }
        };
        let mut dr_vip = Vec::new();
        for (i, v) in self.dr_vip.unwrap_or_default().iter().enumerate() {
            match v.parse::<std::net::Ipv4Addr>() {
                Ok(ip) if !ip.is_unspecified() && !ip.is_loopback() => dr_vip.push(ip),
                _ => errs.push(ConfigError::new(
                    format!("dr_vip[{i}]"),
                    format!("{v:?} is not an IPv4 address (the virtual IP that lb forwards to this edge with lb_kind = \"DR\"; IPv6 DR does not exist yet)"),
                )),
            }
        }
        if let (false, IpAddr::V4(l)) = (dr_vip.is_empty(), listen.ip()) {
            if !l.is_unspecified() && !dr_vip.contains(&l) {
                errs.push(ConfigError::new(
                    "listen",
                    format!("{listen} cannot accept viewers sent to dr_vip {} (they arrive addressed to the VIP): listen on 0.0.0.0:{}", dr_vip[0], listen.port()),
                ));
            }
        }
        let mut static_pull = Vec::new();
        for (i, k) in self.static_pull.unwrap_or_default().into_iter().enumerate() {
            let ok = k.split_once('/').is_some_and(|(app, name)| {
                !app.is_empty()
                    && !name.is_empty()
                    && !k.chars().any(|c| c.is_control() || c == '?')
                    && k.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
            });
            if !ok {
                errs.push(ConfigError::new(
                    format!("static_pull[{i}]"),
                    format!("{k:?} is not \"APP/STREAM\" (like \"live/cam\")"),
                ));
            } else if !static_pull.contains(&k) {
                static_pull.push(k);
            }
        }
        if !static_pull.is_empty() && mode == Mode::Local {
            errs.push(ConfigError::new(
                "static_pull",
                "only used with mode = \"remote\" (an origin has its streams from publishers)",
            ));
        }
        let raw_pub = self.publish.unwrap_or_default();
        let allow = networks(
            &mut errs,
            "publish.allow",
            &raw_pub.allow.unwrap_or_else(loopback_nets),
        );
        if let Some(k) = &raw_pub.key {
            if k.is_empty() || k.contains(['&', '?', ' ']) {
                errs.push(ConfigError::new(
                    "publish.key",
                    "must be non-empty and contain no '&', '?' or spaces",
                ));
            }
        }
        let publish = PublishConfig {
            enabled: raw_pub.enabled.unwrap_or(mode == Mode::Local),
            allow,
            key: raw_pub.key,
        };
        let raw_play = self.play.unwrap_or_default();
        let token_keys = raw_play.token_keys.unwrap_or_default();
        for (i, k) in token_keys.iter().enumerate() {
            if k.len() < 16 {
                errs.push(ConfigError::new(
                    format!("play.token_keys[{i}]"),
                    format!(
                        "a key of {} bytes is too short to sign tokens: use at least 16 (e.g. `openssl rand -hex 32`)",
                        k.len()
                    ),
                ));
            } else if token_keys[..i].contains(k) {
                errs.push(ConfigError::new(
                    format!("play.token_keys[{i}]"),
                    "the same key twice",
                ));
            }
        }
        let token_exempt = networks(
            &mut errs,
            "play.token_exempt",
            &raw_play.token_exempt.unwrap_or_else(loopback_nets),
        );
        let play = crate::token::PlayConfig {
            token_keys,
            token_exempt,
        };
        let raw_hooks = self.http_hooks.unwrap_or_default();
        let mut hook = |key: &str, v: Option<String>| {
            v.and_then(|u| match crate::hooks::HookUrl::parse(&u) {
                Ok(h) => Some(h),
                Err(e) => {
                    errs.push(ConfigError::new(format!("http_hooks.{key}"), e));
                    None
                }
            })
        };
        let on_publish = hook("on_publish", raw_hooks.on_publish);
        let on_play = hook("on_play", raw_hooks.on_play);
        let on_done = hook("on_done", raw_hooks.on_done);
        let hook_timeout = raw_hooks.timeout.unwrap_or(3.0);
        if !(0.1..=30.0).contains(&hook_timeout) {
            errs.push(ConfigError::new(
                "http_hooks.timeout",
                format!("{hook_timeout} s is outside 0.1..=30 (a publisher or player waits for the hook that long)"),
            ));
        }
        let http_hooks = crate::hooks::HooksConfig {
            on_publish,
            on_play,
            on_done,
            timeout: Duration::from_secs_f64(hook_timeout.clamp(0.1, 30.0)),
        };
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(EdgeConfig {
            listen,
            mode,
            origin,
            max_connections,
            gop_cache: self.gop_cache.unwrap_or(true),
            queue_length,
            chunk_size,
            mw_latency,
            sendfile: self.sendfile.unwrap_or(true),
            handshake_timeout,
            origin_timeout,
            pull_idle_timeout,
            max_message_size,
            proxy_protocol,
            set_real_ip_from,
            send_buffer,
            max_handshakes,
            max_handshakes_per_ip,
            max_queue_bytes,
            max_queue_bytes_total,
            log_level,
            grace_period,
            dr_vip,
            static_pull,
            publish,
            play,
            http_hooks,
            api,
            http,
            cluster,
        })
    }
}

/// `[cluster]`: every endpoint `http://HOST:PORT`, bounds of the lease and the timeout, a
/// prefix that keeps the keys apart, and an address edges can reach.
fn validate_cluster(
    errs: &mut Vec<ConfigError>,
    c: RawCluster,
    mode: Mode,
    listen: SocketAddr,
) -> ClusterConfig {
    let list = c.registry.unwrap_or_default();
    if list.is_empty() {
        errs.push(ConfigError::new(
            "cluster.registry",
            "[cluster] needs at least one etcd endpoint, as in registry = [\"http://127.0.0.1:2379\"]",
        ));
    }
    let mut registry = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let key = format!("cluster.registry[{i}]");
        let Some(rest) = e.strip_prefix("http://") else {
            let why = if e.starts_with("https://") {
                format!("{e:?}: https is not supported (etcd's JSON gateway is reached over http:// on the fleet's own network)")
            } else {
                format!("{e:?} is not an etcd endpoint \"http://HOST:PORT\"")
            };
            errs.push(ConfigError::new(key, why));
            continue;
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        let explicit_port = hostport.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if hostport.contains(['/', '?', '@', ' ']) || !explicit_port {
            errs.push(ConfigError::new(
                key,
                format!("{e:?} is not \"http://HOST:PORT\" (a port, as in :2379, and no path)"),
            ));
            continue;
        }
        registry.push(hostport.to_string());
    }
    let lease_ttl = integer(errs, "cluster.lease_ttl", c.lease_ttl, 5, 2, 3600) as u64;
    let timeout = seconds(errs, "cluster.timeout", c.timeout, 0.5, 0.05, 10.0);
    let prefix = c.prefix.unwrap_or_else(|| "/edgefleet/streams/".into());
    if !prefix.starts_with('/')
        || !prefix.ends_with('/')
        || prefix.len() < 2
        || prefix.chars().any(|ch| ch.is_control())
    {
        errs.push(ConfigError::new(
            "cluster.prefix",
            format!("{prefix:?} must start and end with '/' (like \"/edgefleet/streams/\")"),
        ));
    }
    let advertise = c
        .advertise
        .as_deref()
        .and_then(|a| match parse_host_port(a) {
            Ok(hp) if hp.1 != 0 && a.contains(':') => Some(hp),
            _ => {
                errs.push(ConfigError::new(
                    "cluster.advertise",
                    format!("{a:?} is not the \"HOST:PORT\" edges reach this origin's RTMP at"),
                ));
                None
            }
        });
    if mode == Mode::Remote && (c.advertise.is_some() || c.node.is_some()) {
        errs.push(ConfigError::new(
            if c.advertise.is_some() {
                "cluster.advertise"
            } else {
                "cluster.node"
            },
            "only used with mode = \"local\" (an origin registers the streams published to it)",
        ));
    }
    if mode == Mode::Local && c.advertise.is_none() && listen.ip().is_unspecified() {
        errs.push(ConfigError::new(
            "cluster.advertise",
            format!("needed: listen {listen} is not an address edges can reach; set advertise = \"HOST:{}\"", listen.port()),
        ));
    }
    if let Some(n) = &c.node {
        if n.is_empty() || n.contains('/') || n.chars().any(|ch| ch.is_control() || ch == ' ') {
            errs.push(ConfigError::new(
                "cluster.node",
                format!("{n:?} must be a non-empty name without '/' or spaces"),
            ));
        }
    }
    ClusterConfig {
        registry,
        lease_ttl: Duration::from_secs(lease_ttl),
        prefix,
        advertise,
        node: c.node,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        EdgeConfig::parse(src)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn http_and_hls_keys_are_checked_with_what_to_do() {
        let c = EdgeConfig::parse("[http]\n").unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(h.crossdomain && h.flv);
        let hls = h.hls.unwrap();
        assert_eq!((hls.fragment.as_secs(), hls.window.as_secs()), (2, 20));
        assert_eq!(hls.part.as_millis(), 500);
        let off = EdgeConfig::parse("[http]\n[hls]\nenabled = false\n").unwrap();
        assert!(off.http.unwrap().hls.is_none());
        let e = errors("[hls]\nhls_fragment = 2\n");
        assert!(e[0].contains("[http] listen"), "{e:?}");
        let e = errors("[http]\n[hls]\nhls_fragment = 4\nhls_window = 6\n");
        assert!(
            e[0].contains("hls.hls_window") && e[0].contains("at least 8"),
            "{e:?}"
        );
        let e = errors("[http]\n[hls]\nhls_fragment = 1\nhls_part = 2\n");
        assert!(e[0].contains("hls.hls_part"), "{e:?}");
        let e = errors("listen = \"0.0.0.0:1935\"\n[http]\nlisten = \"0.0.0.0:1935\"\n");
        assert!(
            e[0].contains("http.listen") && e[0].contains("its own port"),
            "{e:?}"
        );
        let e = errors("[http]\nlisten = \"nowhere\"\nflv = 3\n");
        assert!(e.iter().any(|e| e.contains("http")), "{e:?}");
        let e = errors(
            "mode = \"remote\"\norigin = [\"o:1935\"]\nstatic_pull = [\"cam\", \"live/../x\"]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("static_pull[0]") && e[0].contains("APP/STREAM"),
            "{e:?}"
        );
        let e = errors("static_pull = [\"live/cam\"]\n");
        assert!(e[0].contains("mode = \"remote\""), "{e:?}");
    }

    #[test]
    fn cluster_keys_are_checked_naming_the_value() {
        let c = EdgeConfig::parse(
            "mode = \"remote\"\n[cluster]\nregistry = [\"http://127.0.0.1:2379\", \"http://etcd2.example:2379/\"]\n",
        )
        .unwrap();
        let k = c.cluster.unwrap();
        assert_eq!(k.registry, vec!["127.0.0.1:2379", "etcd2.example:2379"]);
        assert_eq!(k.lease_ttl, Duration::from_secs(5));
        assert_eq!(k.prefix, "/edgefleet/streams/");
        assert_eq!(k.timeout, Duration::from_millis(500));
        assert!(c.origin.is_empty(), "an edge may have the registry alone");
        let e = errors("listen = \"127.0.0.1:1935\"\n[cluster]\nregistry = [\"127.0.0.1:2379\", \"https://e:2379\", \"http://e\", \"http://e:2379/v3\"]\nlease_ttl = 0\nprefix = \"edgefleet\"\ntimeout = 30\n");
        assert_eq!(e.len(), 7, "{e:?}");
        for (key, value) in [
            ("cluster.registry[0]", "\"127.0.0.1:2379\""),
            ("cluster.registry[1]", "https is not supported"),
            ("cluster.registry[2]", "\"http://e\""),
            ("cluster.registry[3]", "\"http://e:2379/v3\""),
            ("cluster.lease_ttl", "0 is out of range"),
            ("cluster.prefix", "\"edgefleet\""),
            ("cluster.timeout", "30 is out of range"),
        ] {
            assert!(
                e.iter().any(|e| e.starts_with(key) && e.contains(value)),
                "{key} {value}: {e:?}"
            );
        }
        let e = errors("[cluster]\n");
        assert!(e[0].starts_with("cluster.registry:"), "{e:?}");
        let e = errors(
            "listen = \"0.0.0.0:1935\"\n[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\n",
        );
        assert!(e[0].starts_with("cluster.advertise: needed"), "{e:?}");
        let e = errors("[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nadvertise = \"origin-b\"\nnode = \"a/b\"\nzone = 1\n");
        assert!(e.iter().any(|e| e.contains("cluster")), "{e:?}");
        let e = errors("listen = \"127.0.0.1:1935\"\n[cluster]\nregistry = [\"http://127.0.0.1:2379\"]\nadvertise = \"origin-b\"\nnode = \"a/b\"\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("cluster.advertise") && e[0].contains("\"origin-b\""),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("cluster.node") && e[1].contains("\"a/b\""),
            "{e:?}"
        );
        // srs.conf's cluster block: what to do instead.
        let e = errors("[cluster]\nmode = \"remote\"\n");
        assert!(
            e[0].contains("cluster.mode") && e[0].contains("top level"),
            "{e:?}"
        );
    }

    #[test]
    fn examples_are_valid() {
        for f in ["examples/origin.toml", "examples/edge.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            EdgeConfig::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn defaults() {
        let c = EdgeConfig::parse("").unwrap();
        assert_eq!(c.mode, Mode::Local);
        assert!(c.publish.enabled);
        assert!(c.publish.allows("127.0.0.1".parse().unwrap()));
        assert!(c.publish.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.publish.allows("198.18.0.1".parse().unwrap()));
        let e = EdgeConfig::parse("mode = \"remote\"\norigin = [\"127.0.0.1:1935\"]").unwrap();
        assert!(!e.publish.enabled);
    }

    #[test]
    fn every_problem_is_named() {
        let errs = errors(
            "listen = \"1.2.3.4\"\nmode = \"remote\"\nmax_connections = 0\n[publish]\nallow = [\"bogus\"]\n",
        );
        assert!(errs.iter().any(|e| e.starts_with("listen:")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("origin:")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("max_connections:")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("publish.allow[0]:")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 4);
    }

    #[test]
    fn every_syntax_error_is_named_at_once() {
        let errs = errors("listen = \nmode = \"remote\"\norigin = [\"a:1\"\n[publish\n");
        assert!(errs.len() >= 2, "{errs:?}");
        assert!(errs[0].starts_with("line 1:"), "{errs:?}");
    }

    #[test]
    fn the_known_keys_are_the_schemas_fields() {
        // serde lists the fields in its unknown-field error: KEYS must be exactly those.
        let e = toml::from_str::<RawConfig>("zzz = 1")
            .unwrap_err()
            .to_string();
        let listed: Vec<&str> = e
            .split("expected one of ")
            .nth(1)
            .expect(&e)
            .split(',')
            .map(|k| k.trim().trim_matches('`'))
            .filter(|k| !k.is_empty())
            .collect();
        let mut a = listed.clone();
        let mut b = KEYS.to_vec();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn srs_habits_are_accepted_or_explained() {
        let c = EdgeConfig::parse("listen = 1935\nmode = \"remote\"\norigin = \"origin.example\"")
            .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(c.origin, vec![("origin.example".to_string(), 1935)]);
        let c = EdgeConfig::parse("listen = \"1936\"").unwrap();
        assert_eq!(c.listen.port(), 1936);
        // Every foreign or unknown key at once, each with what to do.
        let errs = errors("pid = \"/run/srs.pid\"\nsrs_log_file = \"x\"\ntcp_nodelay = true\nqueu_length = 3\nbogus = 1\n[vhost]\nx = 1\n");
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("pid: an srs.conf key: not needed")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("vhost: an srs.conf key: there are no vhosts")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("queu_length: unknown key (did you mean `queue_length`?)")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("bogus: unknown key")),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_and_mistyped_keys() {
        let errs = errors("listne = \"0.0.0.0:1935\"\n");
        assert!(
            errs[0].contains("listne: unknown key (did you mean `listen`?)"),
            "{errs:?}"
        );
        let errs = errors("gop_cache = \"yes\"\nmax_connections = \"many\"\n");
        assert!(errs[0].starts_with("gop_cache: invalid type"), "{errs:?}");
        assert!(
            errs[1].starts_with("max_connections: invalid type"),
            "{errs:?}"
        );
        let errs = errors("[publish]\nallow = 3\n");
        assert!(errs[0].starts_with("publish: invalid type"), "{errs:?}");
        let errs = errors("mode = \"edge\"\n");
        assert!(errs[0].contains("\"edge\" is not a mode"), "{errs:?}");
    }

    #[test]
    fn dr_vip_takes_ipv4_addresses_and_needs_a_listen_that_accepts_them() {
        let c = EdgeConfig::parse("dr_vip = [\"198.18.0.100\"]\n").unwrap();
        assert_eq!(c.dr_vip, vec![std::net::Ipv4Addr::new(198, 18, 0, 100)]);
        let c = EdgeConfig::parse("listen = \"198.18.0.100:1935\"\ndr_vip = [\"198.18.0.100\"]\n")
            .unwrap();
        assert_eq!(c.dr_vip.len(), 1);
        for bad in ["\"::1\"", "\"0.0.0.0\"", "\"127.0.0.1\"", "\"x\""] {
            let e = EdgeConfig::parse(&format!("dr_vip = [{bad}]\n"))
                .unwrap_err()
                .0[0]
                .to_string();
            assert!(e.contains("dr_vip[0]"), "{bad}: {e}");
        }
        let e = EdgeConfig::parse("listen = \"198.18.0.11:1935\"\ndr_vip = [\"198.18.0.100\"]\n")
            .unwrap_err()
            .0[0]
            .to_string();
        assert!(
            e.contains("listen: 198.18.0.11:1935 cannot accept viewers"),
            "{e}"
        );
    }
}
