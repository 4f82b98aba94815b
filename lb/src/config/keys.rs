//! The keys a config may hold, checked before the typed parse so that every unknown key is
//! reported at once (serde's `deny_unknown_fields` stops at the first), each with its key
//! path — and keepalived's keys that mean nothing here with what replaces them or why they
//! are not needed, instead of a bare "unknown field".
//!
//! The key lists are the serde structs' own (`Raw*`'s field names and aliases, read through
//! [`fields_of`]), so this room cannot drift from the schema; `deny_unknown_fields` stays on
//! the structs as the backstop. This room only reads and prunes a `toml::Table`.

use super::track::{RawScript, RawSyncGroup};
use super::{RawAuth, RawCheck, RawConfig, RawRealServer, RawUrl, RawVirtualServer, RawVrrp};
use common::config::ConfigError;
use serde::de::{DeserializeOwned, Visitor};

/// What a keepalived key becomes here, per table (`""` = top level).
const KEEPALIVED: &[(&str, &str, &str)] = &[
    ("", "global_defs", "lb has no global_defs: its settings are top-level keys (admin_listen, admin_token_file, admin_timeout, proxy_copy); router_id, notification_email and smtp_* have no meaning here"),
    ("virtual_server", "nat_mask", "not needed: lb does not forward by NAT (lb_kind = \"PROXY\"), so there is no NAT netmask: remove it"),
    ("virtual_server", "lvs_sched", "is keepalived's other name for lb_algo: write lb_algo"),
    ("virtual_server", "lvs_method", "is keepalived's other name for lb_kind: write lb_kind = \"PROXY\""),
    ("virtual_server", "ha_suspend", "not needed: lb binds the virtual IP with IP_FREEBIND and checks run whether or not this balancer holds it: remove it"),
    ("virtual_server", "quorum", "not supported: a vrrp_instance's track_virtual_servers / track_weight act when no real server is up"),
    ("virtual_server", "quorum_up", "not supported: use notify_* on the vrrp_instance"),
    ("virtual_server", "quorum_down", "not supported: use notify_* on the vrrp_instance"),
    ("virtual_server", "hysteresis", "not supported (there is no quorum)"),
    ("virtual_server", "alpha", "not supported: real servers start UP (keepalived without alpha); a check's first failures mark one DOWN"),
    ("virtual_server", "omega", "not supported (there is no quorum)"),
    ("virtual_server", "virtualhost", "not supported: http_get sends Host: the checked address"),
    ("virtual_server", "persistence_engine", "not supported: persistence is by client address (persistence_timeout, persistence_granularity)"),
    ("virtual_server", "ops", "not needed: lb balances TCP connections, not UDP datagrams"),
    ("real_server", "HTTP_GET", "is written in lower case here: [virtual_server.real_server.http_get] with [[virtual_server.real_server.http_get.url]] path = \"/\", status_code = 200"),
    ("real_server", "SSL_GET", "lb has no HTTPS check: use tcp_check or rtmp_check"),
    ("real_server", "ssl_get", "lb has no HTTPS check: use tcp_check or rtmp_check"),
    ("real_server", "MISC_CHECK", "is written in lower case here: [virtual_server.real_server.misc_check] with misc_path (rtmp_check does what an RTMP MISC_CHECK script does without a script)"),
    ("real_server", "TCP_CHECK", "is written in lower case here: [virtual_server.real_server.tcp_check]"),
    ("real_server", "notify_up", "not supported: health flips are logged and counted (edgefleet_rs_check_flips_total)"),
    ("real_server", "notify_down", "not supported: health flips are logged and counted (edgefleet_rs_check_flips_total)"),
    ("real_server", "uthreshold", "not supported per real server: max_connections on the virtual_server caps its connections"),
    ("real_server", "lthreshold", "not supported (there is no uthreshold)"),
    ("url", "digest", "not supported: http_get compares status_code only (an edge's answers change with every request)"),
    ("check", "connect_ip", "not supported: a check connects to the real server's own address and port"),
    ("check", "bindto", "not supported: a check connects from the address the kernel chooses"),
    ("check", "bind_port", "not supported: a check connects from the port the kernel chooses"),
    ("check", "user", "not supported: a misc_check command runs as lb's own user"),
    ("vrrp_sync_group", "smtp_alert", "not supported: use notify_master / notify_backup / notify_fault / notify"),
    ("vrrp_sync_group", "global_tracking", "not needed: give each member its own track_* (the group follows any member's fault)"),
    ("vrrp_instance", "mcast_src_ip", "is keepalived's older name for unicast_src_ip: write unicast_src_ip"),
    ("vrrp_script", "user", "not supported: scripts run as lb's own user (give lb's unit a User= that may run them)"),
    ("vrrp_script", "init_fail", "not supported: a script starts OK and fails after `fall` failed runs"),
    ("vrrp_instance", "smtp_alert", "not supported: use notify_master / notify_backup / notify_fault / notify"),
    ("vrrp_instance", "dont_track_primary", "not supported: the link state of interface is always tracked"),
    ("vrrp_instance", "virtual_routes", "not supported: lb adds and removes addresses only (virtual_ipaddress)"),
    ("vrrp_instance", "virtual_ipaddress_excluded", "not supported: list every address in virtual_ipaddress (20 at most)"),
    ("vrrp_instance", "native_ipv6", "not supported: VRRP here is IPv4"),
    ("vrrp_instance", "garp_master_refresh", "not supported: gratuitous ARPs go out on becoming master (garp_master_repeat, garp_master_delay)"),
];

/// What keepalived's `key` in `section` (`""` top level, `virtual_server`, `real_server`,
/// `check`, `url`, `vrrp_instance`, `vrrp_script`) becomes here, when this room knows (the importer's
/// comments reuse these).
pub fn keepalived_hint(section: &str, key: &str) -> Option<&'static str> {
    KEEPALIVED
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, why)| *why)
}

/// A serde `Deserializer` that only records the field names a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("field names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys (field names and aliases) serde accepts for `T`.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// Checks every table of `root` against the schema: each unknown key becomes an error (with
/// keepalived's meaning when it is one of its keys) and is removed, so the typed parse of
/// what is left can report its own problems too.
pub fn check(root: &mut toml::Table) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    prune(root, "", "", fields_of::<RawConfig>(), &mut errs);
    walk_array(root, "virtual_server", "", &mut errs, |vs, path, errs| {
        prune(
            vs,
            path,
            "virtual_server",
            fields_of::<RawVirtualServer>(),
            errs,
        );
        walk_array(vs, "real_server", path, errs, |rs, path, errs| {
            prune(rs, path, "real_server", fields_of::<RawRealServer>(), errs);
            for check in ["tcp_check", "rtmp_check", "http_get", "misc_check"] {
                if let Some(toml::Value::Table(t)) = rs.get_mut(check) {
                    let p = format!("{path}.{check}");
                    prune(t, &p, "check", fields_of::<RawCheck>(), errs);
                    walk_array(t, "url", &p, errs, |u, path, errs| {
                        prune(u, path, "url", fields_of::<RawUrl>(), errs);
                    });
                }
            }
        });
    });
    walk_array(root, "vrrp_instance", "", &mut errs, |v, path, errs| {
        prune(v, path, "vrrp_instance", fields_of::<RawVrrp>(), errs);
        if let Some(toml::Value::Table(t)) = v.get_mut("authentication") {
            let p = format!("{path}.authentication");
            prune(t, &p, "authentication", fields_of::<RawAuth>(), errs);
        }
    });
    walk_array(root, "vrrp_script", "", &mut errs, |v, path, errs| {
        prune(v, path, "vrrp_script", fields_of::<RawScript>(), errs);
    });
    walk_array(root, "vrrp_sync_group", "", &mut errs, |v, path, errs| {
        prune(
            v,
            path,
            "vrrp_sync_group",
            fields_of::<RawSyncGroup>(),
            errs,
        );
    });
    errs
}

/// Calls `f` on each table of the array `key` of `t` (other shapes are left to serde).
fn walk_array(
    t: &mut toml::Table,
    key: &str,
    path: &str,
    errs: &mut Vec<ConfigError>,
    mut f: impl FnMut(&mut toml::Table, &str, &mut Vec<ConfigError>),
) {
    if let Some(toml::Value::Array(items)) = t.get_mut(key) {
        for (i, item) in items.iter_mut().enumerate() {
            if let toml::Value::Table(tt) = item {
                let p = if path.is_empty() {
                    format!("{key}[{i}]")
                } else {
                    format!("{path}.{key}[{i}]")
                };
                f(tt, &p, errs);
            }
        }
    }
}

fn prune(
    t: &mut toml::Table,
    path: &str,
    section: &str,
    known: &[&str],
    errs: &mut Vec<ConfigError>,
) {
    let unknown: Vec<String> = t
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in unknown {
        t.remove(&k);
        let key = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let why = match KEEPALIVED
            .iter()
            .find(|(s, kk, _)| *s == section && *kk == k)
        {
            Some((_, _, why)) => format!("keepalived's {k}: {why}"),
            None => format!("unknown key (the keys here: {})", known.join(", ")),
        };
        errs.push(ConfigError::new(key, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_the_structs() {
        let vs = fields_of::<RawVirtualServer>();
        assert!(
            vs.contains(&"address") && vs.contains(&"real_server"),
            "{vs:?}"
        );
        // Aliases count: keepalived's nb_get_retry is accepted for retry.
        let c = fields_of::<RawCheck>();
        assert!(c.contains(&"retry") && c.contains(&"nb_get_retry"), "{c:?}");
        assert!(fields_of::<RawConfig>().contains(&"vrrp_instance"));
    }

    #[test]
    fn every_keepalived_hint_is_for_a_key_that_is_not_ours() {
        for (section, key, _) in KEEPALIVED {
            let known = match *section {
                "" => fields_of::<RawConfig>(),
                "virtual_server" => fields_of::<RawVirtualServer>(),
                "real_server" => fields_of::<RawRealServer>(),
                "check" => fields_of::<RawCheck>(),
                "url" => fields_of::<RawUrl>(),
                "vrrp_instance" => fields_of::<RawVrrp>(),
                "vrrp_script" => fields_of::<RawScript>(),
                "vrrp_sync_group" => fields_of::<RawSyncGroup>(),
                other => panic!("no section {other}"),
            };
            assert!(!known.contains(key), "{section}.{key} is a key of ours");
        }
    }
}
