//! The edge's configuration: TOML whose keys follow SRS (`listen`, `mode`, `origin`,
//! `max_connections`, `gop_cache`, `queue_length`, `chunk_size`, `mw_latency`), so an
//! srs.conf maps over key by key. Parsed with serde (unknown keys are errors), then validated
//! into [`EdgeConfig`] with one [`ConfigError`] per problem.

use common::config::{
    load_toml, parse_host_port, parse_socket_addr, parse_toml, ConfigError, ConfigErrors,
};
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
    pub handshake_timeout: Option<f64>,
    pub origin_timeout: Option<f64>,
    pub pull_idle_timeout: Option<f64>,
    pub max_message_size: Option<i64>,
    pub proxy_protocol: Option<bool>,
    pub send_buffer: Option<i64>,
    pub publish: Option<RawPublish>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    pub enabled: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Origin: takes publishers, serves players.
    Local,
    /// Edge: pulls each stream from an origin on its first player's demand.
    Remote,
}

/// A validated configuration.
#[derive(Debug, Clone)]
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
    pub handshake_timeout: Duration,
    pub origin_timeout: Duration,
    pub pull_idle_timeout: Duration,
    pub max_message_size: usize,
    pub proxy_protocol: bool,
    /// SO_SNDBUF of client sockets in bytes (0 = kernel autotuning).
    pub send_buffer: usize,
    pub publish: PublishConfig,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub enabled: bool,
    pub allow: Vec<IpNet>,
    pub key: Option<String>,
}

impl PublishConfig {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

impl EdgeConfig {
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigErrors> {
        load_toml::<RawConfig>(path)?.validate()
    }

    pub fn parse(source: &str) -> Result<EdgeConfig, ConfigErrors> {
        let raw: RawConfig = parse_toml(source)?;
        raw.validate()
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
        if mode == Mode::Remote && self.origin.as_ref().map(|o| o.is_empty()).unwrap_or(true) {
            errs.push(ConfigError::new(
                "origin",
                "mode \"remote\" needs at least one origin \"HOST:PORT\"",
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
        let raw_pub = self.publish.unwrap_or_default();
        let mut allow = Vec::new();
        let allow_raw = raw_pub
            .allow
            .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()]);
        for (i, a) in allow_raw.iter().enumerate() {
            let parsed = a
                .parse::<IpNet>()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => allow.push(n),
                Err(_) => errs.push(ConfigError::new(
                    format!("publish.allow[{i}]"),
                    format!("{a:?} is not a CIDR (like \"198.18.0.0/15\") or an IP address"),
                )),
            }
        }
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
            handshake_timeout,
            origin_timeout,
            pull_idle_timeout,
            max_message_size,
            proxy_protocol: self.proxy_protocol.unwrap_or(false),
            send_buffer,
            publish,
        })
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
    fn unknown_and_mistyped_keys() {
        let errs = errors("listne = \"0.0.0.0:1935\"\n");
        assert!(errs[0].contains("unknown field `listne`"), "{errs:?}");
        let errs = errors("gop_cache = \"yes\"\n");
        assert!(errs[0].starts_with("line 1:"), "{errs:?}");
        let errs = errors("mode = \"edge\"\n");
        assert!(errs[0].contains("\"edge\" is not a mode"), "{errs:?}");
    }
}
