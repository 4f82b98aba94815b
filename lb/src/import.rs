//! `lb import-keepalived`: a keepalived.conf turned into the lb TOML that does the same.
//!
//! Reads the tree of `common::confblock` (includes already spliced) and writes
//! `common::tomlout` sections; knows keepalived's keywords and lb's keys, nothing else.
//! What cannot be carried over becomes a `# keepalived: KEYWORD ARGS: why` comment (the
//! reasons of [`crate::config::keys`] where it has one) and is counted in
//! [`Import::skipped`], so `--strict` can refuse. A value that is not what keepalived
//! itself accepts (`priority high`) is an [`ImportError`] naming its file:line.

use crate::config::keys::keepalived_hint;
use common::confblock::{self, BlockError, Dialect, Directive, Pos};
use common::tomlout::{render, Section};
use std::path::Path;

/// The TOML, and the keywords it could not carry (each also a comment in it).
#[derive(Debug)]
pub struct Import {
    pub toml: String,
    pub skipped: Vec<String>,
}

/// One problem of the input, at its file:line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Syntax(#[from] BlockError),
    #[error("{pos}: {why}")]
    Value { pos: Pos, why: String },
}

/// Reads `path` (and its includes) and converts it.
pub fn keepalived_file(path: &Path) -> Result<Import, Vec<ImportError>> {
    let tree = confblock::load(path, Dialect::Keepalived)
        .map_err(|e| e.into_iter().map(ImportError::from).collect::<Vec<_>>())?;
    keepalived(&tree)
}

/// Converts text (includes are not followed: see [`keepalived_file`]).
pub fn keepalived_str(src: &str, name: &str) -> Result<Import, Vec<ImportError>> {
    let tree = confblock::parse(src.as_bytes(), name, Dialect::Keepalived)
        .map_err(|e| e.into_iter().map(ImportError::from).collect::<Vec<_>>())?;
    keepalived(&tree)
}

const ALGOS: &[&str] = &["rr", "wrr", "lc", "wlc", "sh", "mh"];

struct Cx {
    errs: Vec<ImportError>,
    skipped: Vec<String>,
}

impl Cx {
    fn bad(&mut self, d: &Directive, why: impl Into<String>) {
        self.errs.push(ImportError::Value {
            pos: d.pos.clone(),
            why: format!("{}: {}", d.text(), why.into()),
        });
    }

    fn skip(&mut self, s: &mut Section, d: &Directive, why: &str) {
        let what = if d.block.is_some() {
            format!("{} {{ ... }}", d.text())
        } else {
            d.text()
        };
        self.skip_text(s, &d.pos, &what, why);
    }

    fn skip_text(&mut self, s: &mut Section, pos: &Pos, what: &str, why: &str) {
        s.comment(&format!("keepalived: {what}: {why}"));
        self.skipped.push(format!("{pos}: {what}"));
    }

    /// A keyword lb has no use for: its hint from config::keys, else a generic reason.
    fn unsupported(&mut self, s: &mut Section, section: &str, d: &Directive) {
        let why =
            keepalived_hint(section, &d.name).unwrap_or("not supported by lb (no equivalent key)");
        self.skip(s, d, why);
    }

    fn one<'a>(&mut self, d: &'a Directive) -> Option<&'a str> {
        match d.args.as_slice() {
            [a] => Some(a),
            _ => {
                self.bad(d, "takes one value");
                None
            }
        }
    }

    fn int(&mut self, d: &Directive) -> Option<i64> {
        let a = self.one(d)?;
        match a.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(d, format!("{a:?} is not a whole number"));
                None
            }
        }
    }

    fn num(&mut self, d: &Directive) -> Option<f64> {
        let a = self.one(d)?;
        match a.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                self.bad(d, format!("{a:?} is not a number"));
                None
            }
        }
    }

    /// keepalived's `IP PORT` as lb's "IP:PORT" ("[IPv6]:PORT").
    fn ip_port(&mut self, d: &Directive, args: &[String]) -> Option<String> {
        match args {
            [ip, port] => {
                if ip.parse::<std::net::IpAddr>().is_err() || port.parse::<u16>().is_err() {
                    self.bad(d, "wants an IP address and a port, as `198.18.0.200 1935`");
                    return None;
                }
                Some(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                })
            }
            _ => {
                self.bad(d, "wants an IP address and a port, as `198.18.0.200 1935`");
                None
            }
        }
    }

    /// A list block (one entry per line): its lines, or an error without a block.
    fn list<'a>(&mut self, d: &'a Directive) -> &'a [Directive] {
        if d.block.is_none() {
            self.bad(d, "wants a { ... } block with one entry per line");
        }
        d.children()
    }
}

fn flag(v: &mut Section, key: &str) {
    v.set(key, true);
}

/// Converts a parsed keepalived.conf.
pub fn keepalived(tree: &[Directive]) -> Result<Import, Vec<ImportError>> {
    let mut cx = Cx {
        errs: Vec::new(),
        skipped: Vec::new(),
    };
    let mut top = Section::top();
    top.comment("lb config imported from keepalived.conf by `lb import-keepalived`");
    let mut sections = Vec::new();
    // keepalived speaks VRRPv2 unless told otherwise; lb's default is v3.
    let mut version = 2;
    for d in tree {
        if d.name == "global_defs" {
            for c in d.children() {
                if c.name == "vrrp_version" {
                    if let Some(n) = cx.int(c) {
                        version = n;
                    }
                }
            }
        }
    }
    for d in tree {
        match d.name.as_str() {
            "global_defs" => {
                let keys: Vec<&str> = d
                    .children()
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|n| *n != "vrrp_version")
                    .collect();
                if !keys.is_empty() {
                    let why = format!(
                        "{} (skipped here: {})",
                        keepalived_hint("", "global_defs").unwrap_or("not supported"),
                        keys.join(", ")
                    );
                    cx.skip(&mut top, d, &why);
                }
            }
            "vrrp_instance" => vrrp(&mut cx, d, version, &mut sections),
            "vrrp_script" => vrrp_script(&mut cx, d, &mut sections),
            "vrrp_sync_group" => sync_group(&mut cx, d, &mut sections),
            "virtual_server" => virtual_server(&mut cx, d, &mut top, &mut sections),
            _ => cx.unsupported(&mut top, "", d),
        }
    }
    if !cx.errs.is_empty() {
        return Err(cx.errs);
    }
    let mut all = vec![top];
    all.extend(sections);
    Ok(Import {
        toml: render(&all),
        skipped: cx.skipped,
    })
}

fn vrrp(cx: &mut Cx, d: &Directive, version: i64, out: &mut Vec<Section>) {
    let mut v = Section::array("vrrp_instance");
    match d.args.as_slice() {
        [name] => v.set("name", name.as_str()),
        _ => cx.bad(d, "wants one instance name, as `vrrp_instance VI_1 {`"),
    }
    let mut version = version;
    let mut interface: Option<String> = None;
    let mut auth: Option<toml::Table> = None;
    let mut auth_at: Option<&Directive> = None;
    for c in d.children() {
        let key = c.name.as_str();
        match key {
            "state" | "interface" | "unicast_src_ip" => {
                if let Some(a) = cx.one(c) {
                    v.set(key, a);
                    if key == "interface" {
                        interface = Some(a.to_string());
                    }
                }
            }
            "virtual_router_id" | "priority" | "garp_master_repeat" => {
                if let Some(n) = cx.int(c) {
                    v.set(key, n);
                }
            }
            "version" => {
                if let Some(n) = cx.int(c) {
                    version = n;
                }
            }
            "advert_int" | "preempt_delay" | "garp_master_delay" => {
                if let Some(n) = cx.num(c) {
                    v.set(key, n);
                }
            }
            "nopreempt" => flag(&mut v, "nopreempt"),
            // keepalived's default: nothing to write.
            "preempt" => {}
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                if c.args.is_empty() {
                    cx.bad(c, "wants the command to run");
                } else {
                    v.set(key, c.args.join(" "));
                }
            }
            "authentication" => {
                let mut t = toml::Table::new();
                for a in c.children() {
                    match a.name.as_str() {
                        "auth_type" | "auth_pass" => {
                            if let Some(x) = cx.one(a) {
                                t.insert(a.name.clone(), x.into());
                            }
                        }
                        _ => cx.unsupported(&mut v, "authentication", a),
                    }
                }
                auth = Some(t);
                auth_at = Some(c);
            }
            "virtual_ipaddress" => {
                let mut vips = Vec::new();
                for line in cx.list(c) {
                    let (addr, rest) = (&line.name, &line.args);
                    vips.push(toml::Value::from(addr.as_str()));
                    let mut i = 0;
                    while i < rest.len() {
                        let opt = rest[i].as_str();
                        let val = rest.get(i + 1).map(String::as_str).unwrap_or("");
                        match opt {
                            "dev" if Some(val) == interface.as_deref() => {}
                            "dev" => cx.skip_text(
                                &mut v,
                                &line.pos,
                                &format!("virtual_ipaddress {addr} dev {val}"),
                                &format!("lb adds every virtual address on the instance's interface ({}); give this address its own vrrp_instance on {val} if it must live there", interface.as_deref().unwrap_or("unset")),
                            ),
                            "label" => cx.skip_text(
                                &mut v,
                                &line.pos,
                                &format!("virtual_ipaddress {addr} label {val}"),
                                &format!("not supported: addresses are added without a label (the address itself, {addr}, is carried over)"),
                            ),
                            _ => {
                                cx.skip_text(
                                    &mut v,
                                    &line.pos,
                                    &format!("virtual_ipaddress {addr} {}", rest[i..].join(" ")),
                                    &format!("not supported: lb carries the address and its prefix only ({addr})"),
                                );
                                // The rest of the line is in that one comment.
                                break;
                            }
                        }
                        i += 2;
                    }
                }
                v.set("virtual_ipaddress", vips);
            }
            "unicast_peer" => {
                let peers: Vec<toml::Value> = cx
                    .list(c)
                    .iter()
                    .map(|p| toml::Value::from(p.name.as_str()))
                    .collect();
                v.set("unicast_peer", peers);
            }
            "track_interface" => {
                let mut ifs = Vec::new();
                for line in cx.list(c) {
                    ifs.push(toml::Value::from(line.name.as_str()));
                    if !line.args.is_empty() {
                        cx.skip_text(&mut v, &line.pos, &format!("track_interface {}", line.text()), "a tracked interface's weight is not supported: a tracked interface that goes down puts the instance in FAULT");
                    }
                }
                v.set("track_interface", ifs);
            }
            "track_script" => {
                let mut list = Vec::new();
                for line in cx.list(c) {
                    match line.args.as_slice() {
                        [] => list.push(toml::Value::from(line.name.as_str())),
                        [w, n] if w == "weight" => match n.parse::<i64>() {
                            Ok(n) => {
                                let mut t = toml::Table::new();
                                t.insert("name".into(), line.name.as_str().into());
                                t.insert("weight".into(), n.into());
                                list.push(toml::Value::Table(t));
                            }
                            Err(_) => cx.bad(line, format!("weight {n:?} is not a whole number")),
                        },
                        // keepalived 2.2's `weight N reverse`: the sign flips.
                        [w, n, r] if w == "weight" && r == "reverse" => match n.parse::<i64>() {
                            Ok(n) => {
                                let mut t = toml::Table::new();
                                t.insert("name".into(), line.name.as_str().into());
                                t.insert("weight".into(), (-n).into());
                                list.push(toml::Value::Table(t));
                                v.comment(&format!(
                                    "keepalived: track_script {} weight {n} reverse: carried over as weight {}",
                                    line.name, -n
                                ));
                            }
                            Err(_) => cx.bad(line, format!("weight {n:?} is not a whole number")),
                        },
                        _ => cx.bad(line, "wants a script name, optionally `weight N`"),
                    }
                }
                v.set("track_script", list);
            }
            "mcast_src_ip" => {
                if let Some(a) = cx.one(c) {
                    v.set("unicast_src_ip", a);
                    v.comment(&format!(
                        "keepalived: mcast_src_ip {a}: carried over as unicast_src_ip (lb's name for the source address)"
                    ));
                }
            }
            k if k.starts_with("garp_") => cx.unsupported(&mut v, "vrrp_instance", c),
            _ => cx.unsupported(&mut v, "vrrp_instance", c),
        }
    }
    v.set("version", version);
    match (auth, auth_at) {
        (Some(t), _) if version == 2 => v.set("authentication", toml::Value::Table(t)),
        // keepalived ignores authentication with VRRPv3 (RFC 5798 has none), and so does lb.
        (Some(_), Some(a)) => cx.skip(
            &mut v,
            a,
            "VRRPv3 has no authentication (keepalived ignores it with version 3): left out",
        ),
        _ => {}
    }
    out.push(v);
}

/// `vrrp_script NAME { script ...; interval; timeout; weight; rise; fall }`.
fn vrrp_script(cx: &mut Cx, d: &Directive, out: &mut Vec<Section>) {
    let mut v = Section::array("vrrp_script");
    match d.args.as_slice() {
        [name] => v.set("name", name.as_str()),
        _ => cx.bad(d, "wants one script name, as `vrrp_script chk_edge {`"),
    }
    for c in d.children() {
        let key = c.name.as_str();
        match key {
            // keepalived joins the words of an unquoted script line.
            "script" => {
                if c.args.is_empty() {
                    cx.bad(c, "wants the command to run");
                } else {
                    v.set("script", c.args.join(" "));
                }
            }
            "interval" | "timeout" => {
                if let Some(n) = cx.num(c) {
                    v.set(key, n);
                }
            }
            "weight" => match c.args.as_slice() {
                [_] => {
                    if let Some(n) = cx.int(c) {
                        v.set("weight", n);
                    }
                }
                [n, r] if r == "reverse" => match n.parse::<i64>() {
                    Ok(n) => {
                        v.set("weight", -n);
                        v.comment(&format!(
                            "keepalived: weight {n} reverse: carried over as weight {}",
                            -n
                        ));
                    }
                    Err(_) => cx.bad(c, format!("{n:?} is not a whole number")),
                },
                _ => cx.bad(c, "takes one value"),
            },
            "rise" | "fall" => {
                if let Some(n) = cx.int(c) {
                    v.set(key, n);
                }
            }
            _ => cx.unsupported(&mut v, "vrrp_script", c),
        }
    }
    out.push(v);
}

/// `vrrp_sync_group NAME { group { VI_1 VI_2 } notify_* }`.
fn sync_group(cx: &mut Cx, d: &Directive, out: &mut Vec<Section>) {
    let mut v = Section::array("vrrp_sync_group");
    match d.args.as_slice() {
        [name] => v.set("name", name.as_str()),
        _ => cx.bad(d, "wants one group name, as `vrrp_sync_group G1 {`"),
    }
    for c in d.children() {
        let key = c.name.as_str();
        match key {
            "group" => {
                let members: Vec<toml::Value> = cx
                    .list(c)
                    .iter()
                    .flat_map(|l| std::iter::once(&l.name).chain(l.args.iter()))
                    .map(|n| toml::Value::from(n.as_str()))
                    .collect();
                v.set("group", members);
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify" => {
                if c.args.is_empty() {
                    cx.bad(c, "wants the command to run");
                } else {
                    v.set(key, c.args.join(" "));
                }
            }
            "sync_group_tracking_weight" => flag(&mut v, key),
            _ => cx.unsupported(&mut v, "vrrp_sync_group", c),
        }
    }
    out.push(v);
}

fn virtual_server(cx: &mut Cx, d: &Directive, top: &mut Section, out: &mut Vec<Section>) {
    if matches!(d.args.first().map(String::as_str), Some("fwmark" | "group")) {
        cx.skip(
            top,
            d,
            "not supported: a virtual_server here is one IP and port (no fwmark, no virtual_server_group)",
        );
        return;
    }
    let mut vs = Section::array("virtual_server");
    if let Some(a) = cx.ip_port(d, &d.args) {
        vs.set("address", a);
    }
    let mut real = Vec::new();
    for c in d.children() {
        let key = c.name.as_str();
        match key {
            "lb_algo" | "lvs_sched" => {
                if let Some(a) = cx.one(c) {
                    if ALGOS.contains(&a) {
                        vs.set("lb_algo", a);
                    } else {
                        cx.skip(
                            &mut vs,
                            c,
                            &format!(
                                "scheduler {a:?} is not supported: the algorithms here are {} (the default, rr, applies)",
                                ALGOS.join(", ")
                            ),
                        );
                    }
                }
            }
            "lb_kind" | "lvs_method" => match cx.one(c) {
                Some("DR") => vs.set("lb_kind", "DR"),
                Some(k @ ("NAT" | "TUN")) => {
                    vs.set("lb_kind", "PROXY");
                    cx.skip(
                        &mut vs,
                        c,
                        &format!("{k} does not exist here and became lb_kind = \"PROXY\": a userspace full proxy, so the edges need neither a route back through lb nor a tunnel (set send_proxy = \"v2\" on a real server for the viewer's address); lb_kind = \"DR\" is direct routing as LVS-DR (the edges hold the VIP on lo: edge dr-setup)"),
                    );
                }
                Some(other) => cx.bad(c, format!("{other:?} is not NAT, DR or TUN")),
                None => {}
            },
            "persistence_timeout" => {
                if let Some(n) = cx.int(c) {
                    vs.set(key, n);
                }
            }
            "persistence_granularity" => {
                if let Some(a) = cx.one(c) {
                    vs.set(key, a);
                }
            }
            "delay_loop" => {
                if let Some(n) = cx.num(c) {
                    vs.set(key, n);
                }
            }
            "sorry_server" => {
                if let Some(a) = cx.ip_port(c, &c.args) {
                    vs.set(key, a);
                }
            }
            "protocol" => match cx.one(c) {
                Some("TCP") => vs.set("protocol", "TCP"),
                Some(_) => cx.skip(
                    &mut vs,
                    c,
                    "not supported: lb balances TCP (RTMP) only; this virtual server becomes a TCP one",
                ),
                None => {}
            },
            "real_server" => real.push(c),
            _ => cx.unsupported(&mut vs, "virtual_server", c),
        }
    }
    let mut rss = Vec::new();
    for c in real {
        real_server(cx, c, &mut rss);
    }
    out.push(vs);
    out.extend(rss);
}

fn real_server(cx: &mut Cx, d: &Directive, out: &mut Vec<Section>) {
    let mut rs = Section::array("virtual_server.real_server");
    if let Some(a) = cx.ip_port(d, &d.args) {
        rs.set("address", a);
    }
    let mut checks = Vec::new();
    for c in d.children() {
        match c.name.as_str() {
            "weight" => {
                if let Some(n) = cx.int(c) {
                    rs.set("weight", n);
                }
            }
            "inhibit_on_failure" => flag(&mut rs, "inhibit_on_failure"),
            "TCP_CHECK" | "HTTP_GET" | "MISC_CHECK" => {
                if checks.is_empty() {
                    checks.push(c);
                } else {
                    cx.skip(
                        &mut rs,
                        c,
                        "a real_server takes one check here: the first one is carried over",
                    );
                }
            }
            _ => cx.unsupported(&mut rs, "real_server", c),
        }
    }
    out.push(rs);
    for c in checks {
        let key = match c.name.as_str() {
            "TCP_CHECK" => "tcp_check",
            "MISC_CHECK" => "misc_check",
            _ => "http_get",
        };
        let mut ck = Section::table(&format!("virtual_server.real_server.{key}"));
        let mut urls = Vec::new();
        for o in c.children() {
            match o.name.as_str() {
                "connect_timeout" | "delay_before_retry" => {
                    if let Some(n) = cx.num(o) {
                        ck.set(&o.name, n);
                    }
                }
                "nb_get_retry" | "retry" => {
                    if let Some(n) = cx.int(o) {
                        ck.set("retry", n);
                    }
                }
                "connect_port" if key != "misc_check" => {
                    if let Some(n) = cx.int(o) {
                        ck.set("connect_port", n);
                    }
                }
                "warmup" => {
                    if let Some(n) = cx.num(o) {
                        ck.set("warmup", n);
                    }
                }
                "misc_timeout" if key == "misc_check" => {
                    if let Some(n) = cx.num(o) {
                        ck.set("misc_timeout", n);
                    }
                }
                "misc_path" if key == "misc_check" => {
                    if o.args.is_empty() {
                        cx.bad(o, "wants the command to run");
                    } else {
                        ck.set("misc_path", o.args.join(" "));
                    }
                }
                "misc_dynamic" if key == "misc_check" => flag(&mut ck, "misc_dynamic"),
                "url" if key == "http_get" => {
                    let mut u = Section::array(&format!("virtual_server.real_server.{key}.url"));
                    for x in o.children() {
                        match x.name.as_str() {
                            "path" => {
                                if let Some(p) = cx.one(x) {
                                    u.set("path", p);
                                }
                            }
                            "status_code" => {
                                if let Some(n) = cx.int(x) {
                                    u.set("status_code", n);
                                }
                            }
                            _ => cx.unsupported(&mut u, "url", x),
                        }
                    }
                    urls.push(u);
                }
                _ => cx.unsupported(&mut ck, "check", o),
            }
        }
        out.push(ck);
        out.extend(urls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;
    use crate::LbConfig;

    const SAMPLE: &str = "global_defs {\n router_id LVS_A\n}\nvrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 7\n priority 90\n advert_int 1\n nopreempt\n preempt_delay 5\n authentication {\n  auth_type PASS\n  auth_pass secret\n }\n virtual_ipaddress {\n  198.18.7.100/24 dev eth0 label eth0:1\n  198.18.7.101\n }\n unicast_src_ip 198.18.7.2\n unicast_peer {\n  198.18.7.3\n }\n track_interface {\n  eth1\n }\n notify_master \"/usr/local/bin/up.sh master\"\n garp_master_delay 2\n garp_master_refresh 60\n smtp_alert\n}\nvirtual_server 198.18.7.100 1935 {\n delay_loop 3\n lvs_sched wlc\n lvs_method NAT\n persistence_timeout 60\n persistence_granularity 255.255.255.0\n sorry_server 198.18.7.9 1936\n quorum 2\n real_server 198.18.7.11 1935 {\n  weight 3\n  inhibit_on_failure\n  HTTP_GET {\n   url {\n    path /api/v1/streams\n    status_code 200\n    digest abc\n   }\n   connect_port 1985\n   connect_timeout 2\n   retry 2\n   delay_before_retry 1\n  }\n  MISC_CHECK {\n   misc_path /bin/true\n  }\n }\n}\n";

    #[test]
    fn every_carried_key_lands_and_the_output_validates() {
        let imp = keepalived_str(SAMPLE, "k.conf").unwrap();
        let c = LbConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        let v = &c.vrrp_instances[0];
        assert_eq!(v.name, "VI_1");
        assert_eq!((v.vrid, v.priority, v.version), (7, 90, 2));
        assert!(v.nopreempt && !v.start_as_master);
        assert_eq!(v.preempt_delay.as_secs(), 5);
        assert_eq!(
            v.vips,
            [
                ("198.18.7.100".parse().unwrap(), 24),
                ("198.18.7.101".parse().unwrap(), 32)
            ]
        );
        assert_eq!(v.auth_pass.as_deref(), Some("secret"));
        assert_eq!(
            v.unicast_peer,
            ["198.18.7.3".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!(v.track_interface, ["eth1"]);
        assert_eq!(
            v.notify_master.as_deref(),
            Some("/usr/local/bin/up.sh master")
        );
        let vs = &c.virtual_servers[0];
        assert_eq!(vs.kind, Kind::Proxy);
        assert_eq!(vs.algo.name(), "wlc");
        let p = vs.persistence.as_ref().unwrap();
        assert_eq!((p.timeout.as_secs(), p.prefix_v4), (60, 24));
        assert_eq!(vs.sorry_server, Some("198.18.7.9:1936".parse().unwrap()));
        let rs = &vs.real_servers[0];
        assert_eq!(rs.weight, 3);
        assert!(rs.inhibit_on_failure);
        let ck = rs.check.as_ref().unwrap();
        assert_eq!(ck.connect_port, Some(1985));
        assert_eq!(ck.retry, 2);
        // One comment per keyword left out, each counted for --strict.
        for k in [
            "global_defs",
            "virtual_ipaddress 198.18.7.100/24 label eth0:1",
            "garp_master_refresh",
            "smtp_alert",
            "lvs_method NAT",
            "quorum 2",
            "digest abc",
            "MISC_CHECK",
        ] {
            assert_eq!(
                imp.toml.matches(&format!("# keepalived: {k}")).count(),
                1,
                "{k}:\n{}",
                imp.toml
            );
        }
        assert_eq!(imp.skipped.len(), 8, "{:?}", imp.skipped);
        assert!(imp.toml.contains("lb has no global_defs"), "{}", imp.toml);
    }

    #[test]
    fn scripts_sync_groups_and_misc_checks_carry_over() {
        let src = "vrrp_script chk_edge {\n script \"/usr/local/bin/chk_edge 198.18.7.11\"\n interval 2\n timeout 3\n weight -30\n rise 2\n fall 3\n user nobody\n}\nvrrp_script chk_b {\n script /bin/true\n}\nvrrp_sync_group G1 {\n group {\n  VI_1\n  VI_2\n }\n notify_master \"/usr/local/bin/g.sh master\"\n notify /usr/local/bin/g.sh\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  198.18.7.100\n }\n track_script {\n  chk_edge\n  chk_b weight 5\n }\n}\nvrrp_instance VI_2 {\n interface eth0\n virtual_router_id 8\n virtual_ipaddress {\n  198.18.7.101\n }\n track_script {\n  chk_edge\n }\n}\nvirtual_server 198.18.7.100 1935 {\n delay_loop 4\n real_server 198.18.7.11 1935 {\n  MISC_CHECK {\n   misc_path \"/usr/local/bin/chk_rtmp 198.18.7.11\"\n   misc_timeout 3\n   misc_dynamic\n   warmup 2\n   retry 1\n  }\n }\n}\n";
        let imp = keepalived_str(src, "k.conf").unwrap();
        let c = LbConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        let v1 = &c.vrrp_instances[0];
        assert_eq!(v1.track_script.len(), 2);
        let s = &v1.track_script[0].script;
        assert_eq!(s.argv, ["/usr/local/bin/chk_edge", "198.18.7.11"]);
        assert_eq!(
            (
                s.interval.as_secs(),
                s.timeout.as_secs(),
                s.weight,
                s.rise,
                s.fall
            ),
            (2, 3, -30, 2, 3)
        );
        let g = v1.sync_group.as_ref().unwrap();
        assert_eq!((g.name.as_str(), g.members.len()), ("G1", 2));
        assert_eq!(
            g.notify_master.as_deref(),
            Some("/usr/local/bin/g.sh master")
        );
        // In a sync group the weights count as 0, as keepalived's.
        assert!(v1.track_script.iter().all(|t| t.weight == 0));
        assert_eq!(c.vrrp_instances[1].sync_group.as_ref().unwrap().name, "G1");
        let ck = c.virtual_servers[0].real_servers[0].check.as_ref().unwrap();
        assert_eq!(
            ck.kind,
            crate::config::CheckKind::Misc {
                argv: vec!["/usr/local/bin/chk_rtmp".into(), "198.18.7.11".into()],
                timeout: std::time::Duration::from_secs(3),
                dynamic: true,
            }
        );
        assert_eq!((ck.warmup.as_secs(), ck.retry), (2, 1));
        // `user` is the one keyword left out.
        assert_eq!(imp.skipped.len(), 1, "{}", imp.toml);
        assert!(
            imp.toml
                .contains("# keepalived: user nobody: not supported"),
            "{}",
            imp.toml
        );
        assert!(
            imp.toml
                .contains("track_script = [\"chk_edge\", { name = \"chk_b\", weight = 5 }]"),
            "{}",
            imp.toml
        );
    }

    #[test]
    fn vrrp_v3_leaves_authentication_out() {
        let imp = keepalived_str(
            "global_defs {\n vrrp_version 3\n}\nvrrp_instance V {\n interface eth0\n virtual_router_id 1\n advert_int 0.5\n authentication {\n  auth_pass x\n }\n virtual_ipaddress {\n  198.18.7.1\n }\n}\n",
            "k.conf",
        )
        .unwrap();
        let c = LbConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        let v = &c.vrrp_instances[0];
        assert_eq!((v.version, v.advert_int.as_millis()), (3, 500));
        assert_eq!(v.auth_pass, None);
        assert_eq!(imp.skipped.len(), 1, "{}", imp.toml);
        assert!(
            imp.toml
                .contains("# keepalived: authentication { ... }: VRRPv3"),
            "{}",
            imp.toml
        );
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = keepalived_str(
            "vrrp_instance V {\n priority high\n}\nvirtual_server 1.2.3.4 {\n}\n",
            "k.conf",
        )
        .unwrap_err();
        let s: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("k.conf:2: priority high: "), "{s:?}");
        assert!(
            s[1].starts_with("k.conf:4: virtual_server 1.2.3.4: "),
            "{s:?}"
        );
        let e = keepalived_str("vrrp_instance V {\n", "k.conf").unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "k.conf:1: this block is not closed (a `}` is missing)"
        );
        // Never a panic, whatever the bytes.
        for s in [
            "}",
            "{",
            "virtual_server",
            "real_server 1 2 {",
            "\u{0}",
            "vrrp_instance {\n}\n",
            "virtual_server 1.1.1.1 1 {\n real_server {\n TCP_CHECK\n }\n}\n",
        ] {
            let _ = keepalived_str(s, "x");
        }
    }
}
