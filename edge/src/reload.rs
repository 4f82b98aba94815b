//! A reload as data: [`plan`] compares the running config with a new one, key by key, and
//! returns every change with when it takes effect, or why the reload is refused. The server
//! then carries it out (`session::apply_reload`). Tested without sockets below.

use crate::config::EdgeConfig;
use std::fmt;

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub old: String,
    pub new: String,
    /// When it takes effect.
    pub effect: &'static str,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} ({})",
            self.key, self.old, self.new, self.effect
        )
    }
}

const NOW: &str = "at once";
const NEW_CONNECTIONS: &str = "for new connections";
const NEW_SESSIONS: &str = "for new plays and publishes";
const NEXT_PULL: &str = "at each pull's next connect to an origin";
const NEW_STREAMS: &str = "for streams created from now on";

/// The changes from `old` to `new`, or the reasons the reload cannot be applied (the
/// running config then stays whole).
pub fn plan(old: &EdgeConfig, new: &EdgeConfig) -> Result<Vec<Change>, Vec<String>> {
    // Destructured so that a key added to EdgeConfig and forgotten here fails to compile.
    let EdgeConfig {
        listen,
        mode,
        origin,
        max_connections,
        gop_cache,
        queue_length,
        chunk_size,
        mw_latency,
        sendfile,
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
    } = new;
    if *mode != old.mode {
        return Err(vec![format!(
            "mode: {:?} -> {:?} cannot change on a running server (restart it to switch between origin and edge)",
            old.mode, mode
        )]);
    }
    let mut changes = Vec::new();
    let mut diff = |key: &'static str, a: String, b: String, effect: &'static str| {
        if a != b {
            changes.push(Change {
                key,
                old: a,
                new: b,
                effect,
            });
        }
    };
    let hosts = |o: &[(String, u16)]| {
        o.iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let nets = |n: &[ipnet::IpNet]| {
        n.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    diff(
        "listen",
        old.listen.to_string(),
        listen.to_string(),
        "a new listener at once; established connections stay",
    );
    diff("origin", hosts(&old.origin), hosts(origin), NEXT_PULL);
    diff(
        "max_connections",
        old.max_connections.to_string(),
        max_connections.to_string(),
        NEW_CONNECTIONS,
    );
    diff(
        "gop_cache",
        old.gop_cache.to_string(),
        gop_cache.to_string(),
        NOW,
    );
    diff(
        "queue_length",
        format!("{:?}", old.queue_length),
        format!("{queue_length:?}"),
        NOW,
    );
    diff(
        "chunk_size",
        old.chunk_size.to_string(),
        chunk_size.to_string(),
        NEW_STREAMS,
    );
    diff(
        "mw_latency",
        format!("{:?}", old.mw_latency),
        format!("{mw_latency:?}"),
        NEW_SESSIONS,
    );
    diff(
        "sendfile",
        old.sendfile.to_string(),
        sendfile.to_string(),
        NEW_STREAMS,
    );
    diff(
        "handshake_timeout",
        format!("{:?}", old.handshake_timeout),
        format!("{handshake_timeout:?}"),
        NEW_CONNECTIONS,
    );
    diff(
        "origin_timeout",
        format!("{:?}", old.origin_timeout),
        format!("{origin_timeout:?}"),
        NEXT_PULL,
    );
    diff(
        "pull_idle_timeout",
        format!("{:?}", old.pull_idle_timeout),
        format!("{pull_idle_timeout:?}"),
        NEXT_PULL,
    );
    diff(
        "max_message_size",
        old.max_message_size.to_string(),
        max_message_size.to_string(),
        NEW_SESSIONS,
    );
    diff(
        "proxy_protocol",
        old.proxy_protocol.to_string(),
        proxy_protocol.to_string(),
        NEW_CONNECTIONS,
    );
    diff(
        "set_real_ip_from",
        nets(&old.set_real_ip_from),
        nets(set_real_ip_from),
        NEW_CONNECTIONS,
    );
    diff(
        "send_buffer",
        old.send_buffer.to_string(),
        send_buffer.to_string(),
        NEW_CONNECTIONS,
    );
    diff(
        "max_handshakes",
        old.max_handshakes.to_string(),
        max_handshakes.to_string(),
        NEW_CONNECTIONS,
    );
    diff(
        "max_handshakes_per_ip",
        old.max_handshakes_per_ip.to_string(),
        max_handshakes_per_ip.to_string(),
        NEW_CONNECTIONS,
    );
    diff(
        "max_queue_bytes",
        old.max_queue_bytes.to_string(),
        max_queue_bytes.to_string(),
        NOW,
    );
    diff(
        "max_queue_bytes_total",
        old.max_queue_bytes_total.to_string(),
        max_queue_bytes_total.to_string(),
        NOW,
    );
    diff("log_level", old.log_level.clone(), log_level.clone(), NOW);
    diff(
        "dr_vip",
        format!("{:?}", old.dr_vip),
        format!("{dr_vip:?}"),
        "checked now (on lo, ARP sysctls: edge dr-setup sets them)",
    );
    diff(
        "grace_period",
        format!("{:?}", old.grace_period),
        format!("{grace_period:?}"),
        "at the next SIGTERM",
    );
    diff(
        "api.listen",
        format!("{:?}", old.api),
        format!("{api:?}"),
        "at once (the API restarts on the new address)",
    );
    diff(
        "static_pull",
        format!("{:?}", old.static_pull),
        format!("{static_pull:?}"),
        "at once (streams added start pulling; removed ones keep playing for their viewers)",
    );
    diff(
        "http",
        format!("{:?}", old.http),
        format!("{http:?}"),
        "at once (the HTTP listener restarts; HLS keys apply to streams packaged from now on)",
    );
    diff(
        "cluster",
        format!("{:?}", old.cluster),
        format!("{cluster:?}"),
        "at once (an origin registers its streams in the new registry under a new lease; pulls look up from their next connect)",
    );
    diff(
        "publish.enabled",
        old.publish.enabled.to_string(),
        publish.enabled.to_string(),
        NEW_SESSIONS,
    );
    diff(
        "publish.allow",
        nets(&old.publish.allow),
        nets(&publish.allow),
        NEW_SESSIONS,
    );
    diff(
        "publish.key",
        // Never the key itself: reload logs are read by many.
        if old.publish.key.is_some() {
            "set"
        } else {
            "unset"
        }
        .into(),
        match (&old.publish.key, &publish.key) {
            (Some(a), Some(b)) if a != b => "changed".into(),
            (_, Some(_)) => "set".into(),
            (_, None) => "unset".into(),
        },
        NEW_SESSIONS,
    );
    diff(
        "play.token_keys",
        // Never the keys themselves: how many, and whether they changed.
        format!("{} key(s)", old.play.token_keys.len()),
        if old.play.token_keys == play.token_keys {
            format!("{} key(s)", play.token_keys.len())
        } else {
            format!("{} key(s), changed", play.token_keys.len())
        },
        NEW_SESSIONS,
    );
    let hook = |h: &Option<crate::hooks::HookUrl>| {
        h.as_ref().map_or("none".to_string(), |u| u.to_string())
    };
    diff(
        "http_hooks.on_publish",
        hook(&old.http_hooks.on_publish),
        hook(&http_hooks.on_publish),
        NEW_SESSIONS,
    );
    diff(
        "http_hooks.on_play",
        hook(&old.http_hooks.on_play),
        hook(&http_hooks.on_play),
        NEW_SESSIONS,
    );
    diff(
        "http_hooks.on_done",
        hook(&old.http_hooks.on_done),
        hook(&http_hooks.on_done),
        NEW_SESSIONS,
    );
    diff(
        "http_hooks.timeout",
        format!("{:?}", old.http_hooks.timeout),
        format!("{:?}", http_hooks.timeout),
        NEW_SESSIONS,
    );
    diff(
        "play.token_exempt",
        nets(&old.play.token_exempt),
        nets(&play.token_exempt),
        NEW_SESSIONS,
    );
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> EdgeConfig {
        let origin = if extra.contains("origin =") {
            ""
        } else {
            "origin = [\"127.0.0.1:1935\"]\n"
        };
        EdgeConfig::parse(&format!("mode = \"remote\"\n{origin}{extra}"))
            .unwrap_or_else(|e| panic!("{e}\n{extra}"))
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        assert_eq!(plan(&cfg(""), &cfg("")).unwrap(), vec![]);
    }

    #[test]
    fn every_key_is_in_the_plan() {
        let base = cfg("");
        // One line per key of the file, each changing only that key.
        let cases = [
            ("listen", "listen = \"127.0.0.1:1999\""),
            ("origin", "origin = [\"127.0.0.2:1935\"]"),
            ("max_connections", "max_connections = 5"),
            ("gop_cache", "gop_cache = false"),
            ("queue_length", "queue_length = 3"),
            ("chunk_size", "chunk_size = 4096"),
            ("mw_latency", "mw_latency = 350"),
            ("sendfile", "sendfile = false"),
            ("handshake_timeout", "handshake_timeout = 2"),
            ("origin_timeout", "origin_timeout = 2"),
            ("pull_idle_timeout", "pull_idle_timeout = 30"),
            ("max_message_size", "max_message_size = 1048576"),
            ("proxy_protocol", "proxy_protocol = true"),
            (
                "set_real_ip_from",
                "proxy_protocol = true\nset_real_ip_from = [\"198.18.0.0/15\"]",
            ),
            ("send_buffer", "send_buffer = 0"),
            ("max_handshakes", "max_handshakes = 7"),
            ("max_handshakes_per_ip", "max_handshakes_per_ip = 7"),
            ("max_queue_bytes", "max_queue_bytes = 2097152"),
            ("max_queue_bytes_total", "max_queue_bytes_total = 2097152"),
            ("log_level", "log_level = \"debug\""),
            ("grace_period", "grace_period = 30"),
            ("dr_vip", "dr_vip = [\"198.18.0.100\"]"),
            ("api.listen", "[api]\nlisten = \"127.0.0.1:19850\""),
            ("http", "[http]\nlisten = \"127.0.0.1:18080\""),
            ("static_pull", "static_pull = [\"live/cam\"]"),
            (
                "cluster",
                "[cluster]\nregistry = [\"http://127.0.0.1:2379\"]",
            ),
            ("publish.enabled", "[publish]\nenabled = true"),
            ("publish.allow", "[publish]\nallow = [\"198.18.0.1\"]"),
            ("publish.key", "[publish]\nkey = \"s3cret\""),
            (
                "play.token_keys",
                "[play]\ntoken_keys = [\"0123456789abcdef\"]",
            ),
            (
                "play.token_exempt",
                "[play]\ntoken_exempt = [\"198.18.0.0/15\"]",
            ),
        ];
        for (key, line) in cases {
            let keys: Vec<&str> = plan(&base, &cfg(line))
                .unwrap()
                .iter()
                .map(|c| c.key)
                .collect();
            assert!(keys.contains(&key), "{key}: {keys:?}");
            let unrelated: Vec<_> = keys
                .iter()
                .filter(|k| **k != key && !(key == "set_real_ip_from" && **k == "proxy_protocol"))
                .collect();
            assert!(unrelated.is_empty(), "{key}: also {unrelated:?}");
        }
    }

    #[test]
    fn a_key_never_shows_in_the_plan() {
        let a = cfg("[publish]\nkey = \"first-secret\"");
        let b = cfg("[publish]\nkey = \"second-secret\"");
        let shown: String = plan(&a, &b)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert!(shown.contains("publish.key: set -> changed"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn mode_change_is_refused() {
        let origin = EdgeConfig::parse("").unwrap();
        let errs = plan(&origin, &cfg("")).unwrap_err();
        assert!(errs[0].starts_with("mode:"), "{errs:?}");
    }
}
