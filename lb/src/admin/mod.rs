//! The admin HTTP endpoint (`admin_listen`, loopback by default):
//!
//! - `GET /metrics`: Prometheus text — per real server state, weight, active and total
//!   connections, bytes in/out, health flips and checks; per virtual server totals; the admin
//!   endpoint's own connections and refusals.
//! - `GET /`: the fleet page (see [`fleet`]); `GET /fleet`: its data from the edges' APIs.
//! - `GET /status`: the same as JSON (what `lb status` prints).
//! - `POST /drain?vs=VIP:PORT&rs=IP:PORT`: drained (no new connections, established ones
//!   stay), shown as `drained` apart from the weight; lasts until enable/weight or a restart.
//! - `POST /enable?vs=..&rs=..`: ends a drain, back to the configured weight.
//! - `POST /weight?vs=..&rs=..&value=N`: set a weight (ends a drain) until enable or a
//!   reload that changes the configured weight.
//!
//! Rooms: [`server`] is the HTTP side (limits, Origin and token checks, routing); [`auth`]
//! reads the token source and compares tokens; this file builds the status document, the
//! metrics and `lb status`'s table from the running [`Balancer`], and carries out actions.

pub mod auth;
pub mod fleet;
pub mod server;

pub use server::{serve, Admin, AdminOptions};

use crate::balancer::Balancer;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Carries out POST /drain, /enable or /weight; `Err` says what is wrong with the request.
pub(crate) fn admin_action(
    b: &Balancer,
    action: &str,
    q: &[(String, String)],
) -> Result<String, String> {
    let get = |k: &str| q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
    let vs_s = get("vs").ok_or("missing vs=VIP:PORT")?;
    let rs_s = get("rs").ok_or("missing rs=IP:PORT")?;
    let vs_a: SocketAddr = vs_s
        .parse()
        .map_err(|_| format!("vs={vs_s:?} is not IP:PORT"))?;
    let rs_a: SocketAddr = rs_s
        .parse()
        .map_err(|_| format!("rs={rs_s:?} is not IP:PORT"))?;
    let vs = b.find(vs_a).ok_or(format!("no virtual server {vs_a}"))?;
    let rs = vs
        .server(rs_a)
        .ok_or(format!("no real server {rs_a} in {vs_a}"))?;
    let active = rs.active.load(Ordering::Relaxed);
    let configured = rs.cfg.lock().unwrap().weight;
    match action {
        "/drain" => {
            let was = vs.set_drained(&rs, true);
            Ok(format!(
                "{vs_a} -> {rs_a}: {} (no new connections; {active} established stay; until enable or a restart)",
                if was { "already drained" } else { "drained" }
            ))
        }
        "/enable" => {
            let was = vs.set_drained(&rs, false);
            vs.set_weight_override(&rs, None);
            let mut msg = format!(
                "{vs_a} -> {rs_a}: enabled{} (configured weight {configured})",
                if was { ", drain ended" } else { "" }
            );
            if configured == 0 {
                msg.push_str(": the config's weight is 0, so it still takes no new connections");
            }
            Ok(msg)
        }
        _ => {
            let v = get("value").ok_or("missing value=N")?;
            let w: u32 = v
                .parse()
                .ok()
                .filter(|w| *w <= 65535)
                .ok_or(format!("value={v:?} is not a weight 0..=65535"))?;
            vs.set_weight_override(&rs, Some(w));
            let was = vs.set_drained(&rs, false);
            Ok(format!(
                "{vs_a} -> {rs_a}: weight {w}{} (until enable or a reload that changes its configured weight {configured})",
                if was { ", drain ended" } else { "" }
            ))
        }
    }
}

/// The status document (`GET /status`, `lb status`).
pub fn status(b: &Balancer) -> serde_json::Value {
    let vss: Vec<_> = b
        .virtual_servers()
        .iter()
        .map(|vs| {
            let cfg = vs.cfg.read().unwrap().clone();
            let dr = b.dr_stats(vs.address);
            let rss: Vec<_> = vs
                .servers
                .lock()
                .unwrap()
                .iter()
                .map(|r| {
                    let c = r.cfg.lock().unwrap().clone();
                    let up = r.is_up();
                    let mut j = json!({
                        "address": r.addr.to_string(),
                        "state": if up { "UP" } else { "DOWN" },
                        "weight": if up || c.inhibit_on_failure { r.weight() } else { 0 },
                        "configured_weight": c.weight,
                        "weight_override": *r.weight_override.lock().unwrap(),
                        "drained": r.is_drained(),
                        "inhibit_on_failure": c.inhibit_on_failure,
                        "active": r.active.load(Ordering::Relaxed),
                        "inactive": 0,
                        "total": r.total.load(Ordering::Relaxed),
                        "bytes_in": r.bytes_in.load(Ordering::Relaxed),
                        "bytes_out": r.bytes_out.load(Ordering::Relaxed),
                        "flips": r.flips.load(Ordering::Relaxed),
                        "connect_failures": r.connect_failures.load(Ordering::Relaxed),
                        "checks": r.checks.load(Ordering::Relaxed),
                        "check_failures": r.check_failures.load(Ordering::Relaxed),
                        "check": c.check.as_ref().map(|k| match k.kind { crate::config::CheckKind::Tcp => "tcp", crate::config::CheckKind::Rtmp { .. } => "rtmp", crate::config::CheckKind::Http { .. } => "http", crate::config::CheckKind::Misc { .. } => "misc" }),
                        "last_error": r.last_error.lock().unwrap().clone(),
                    });
                    if let Some(d) = dr.as_ref().map(|d| d.servers.get(&r.addr).cloned().unwrap_or_default()) {
                        // DR: flows from the kernel's connection table, packets forwarded.
                        j["active"] = json!(d.active);
                        j["inactive"] = json!(d.inactive);
                        j["forwarded_packets"] = json!(d.packets);
                        j["forwarded_bytes"] = json!(d.bytes);
                        j["mac"] = json!(d.mac.map(|m| m.to_string()));
                    }
                    j
                })
                .collect();
            json!({
                "address": vs.address.to_string(),
                "lb_algo": cfg.algo.name(),
                "lb_kind": cfg.kind.name(),
                // How new connections are copied (PROXY only; a reload applies it to them).
                "proxy_copy": (cfg.kind == crate::config::Kind::Proxy).then(|| vs.copy_mode().name()),
                "persistence_timeout": cfg.persistence.map(|p| p.timeout.as_secs()).unwrap_or(0),
                "sorry_server": cfg.sorry_server.map(|s| s.to_string()),
                "active": vs.stats.active.load(Ordering::Relaxed),
                "total": vs.stats.total.load(Ordering::Relaxed),
                "refused": vs.stats.refused.load(Ordering::Relaxed),
                "sorry": vs.stats.sorry.load(Ordering::Relaxed),
                "real_servers": rss,
                "dr": dr.map(|d| json!({
                    "device": d.device,
                    "table": d.table,
                    "programmed": d.programmed,
                    "packets": d.counters,
                    "last_error": d.last_error,
                })),
            })
        })
        .collect();
    let vrrps: Vec<_> = b
        .vrrp_instances()
        .iter()
        .map(|v| {
            let st = &v.stats;
            let drops: serde_json::Map<String, serde_json::Value> = crate::vrrp::packet::Drop::ALL
                .iter()
                .map(|r| (r.name().to_string(), json!(st.drop_count(*r))))
                .collect();
            json!({
                "name": v.cfg.name,
                "interface": v.cfg.interface,
                "virtual_router_id": v.cfg.vrid,
                "version": v.cfg.version,
                "state": v.state().map(|s| s.name()).unwrap_or("INIT"),
                "priority": st.priority.load(Ordering::Relaxed),
                "base_priority": v.cfg.priority,
                "master": st.master.lock().unwrap().map(|m| m.to_string()),
                "virtual_ipaddress": v.cfg.vips.iter().map(|(ip, p)| format!("{ip}/{p}")).collect::<Vec<_>>(),
                "transitions": st.transitions.load(Ordering::Relaxed),
                "adverts_sent": st.adverts_sent.load(Ordering::Relaxed),
                "adverts_received": st.adverts_received.load(Ordering::Relaxed),
                "drops": drops,
                "last_error": st.last_error.lock().unwrap().clone(),
                "track_script": v.scripts.iter().map(|s| {
                    let x = s.snapshot();
                    json!({
                        "name": s.name,
                        "state": if x.ok { "OK" } else { "FAILING" },
                        "weight": s.weight,
                        "runs": x.runs,
                        "failures": x.failures,
                        "flips": x.flips,
                        "last": x.last,
                    })
                }).collect::<Vec<_>>(),
                "sync_group": v.group.as_ref().map(|g| {
                    let g = g.lock().unwrap();
                    json!({
                        "name": g.cfg.name,
                        "state": g.state().map(|s| s.name()),
                    })
                }),
            })
        })
        .collect();
    json!({ "virtual_servers": vss, "vrrp_instances": vrrps })
}

/// Prometheus text exposition of [`status`].
pub fn metrics(b: &Balancer) -> String {
    let st = status(b);
    let mut out = String::new();
    let vs_metrics = [
        (
            "edgefleet_vs_connections_active",
            "active",
            "gauge",
            "Connections open on the virtual server.",
        ),
        (
            "edgefleet_vs_connections_total",
            "total",
            "counter",
            "Connections dispatched by the virtual server.",
        ),
        (
            "edgefleet_vs_connections_refused_total",
            "refused",
            "counter",
            "Connections refused (no server available, max_connections).",
        ),
        (
            "edgefleet_vs_connections_sorry_total",
            "sorry",
            "counter",
            "Connections sent to the sorry server.",
        ),
    ];
    let rs_metrics = [
        (
            "edgefleet_rs_up",
            "state",
            "gauge",
            "1 when the real server's checks pass.",
        ),
        (
            "edgefleet_rs_weight",
            "weight",
            "gauge",
            "Effective weight (0 = drained, configured 0, or down).",
        ),
        (
            "edgefleet_rs_drained",
            "drained",
            "gauge",
            "1 while the operator has drained the real server (lb drain); a configured weight 0 is 0 here.",
        ),
        (
            "edgefleet_rs_connections_active",
            "active",
            "gauge",
            "Connections open to the real server.",
        ),
        (
            "edgefleet_rs_connections_total",
            "total",
            "counter",
            "Connections dispatched to the real server.",
        ),
        (
            "edgefleet_rs_bytes_in_total",
            "bytes_in",
            "counter",
            "Bytes from viewers to the real server.",
        ),
        (
            "edgefleet_rs_bytes_out_total",
            "bytes_out",
            "counter",
            "Bytes from the real server to viewers.",
        ),
        (
            "edgefleet_rs_check_flips_total",
            "flips",
            "counter",
            "Health state changes (UP<->DOWN).",
        ),
        (
            "edgefleet_rs_connect_failures_total",
            "connect_failures",
            "counter",
            "Proxy connects to the real server that failed.",
        ),
        (
            "edgefleet_rs_forwarded_packets_total",
            "forwarded_packets",
            "counter",
            "DR: packets from viewers forwarded to the real server.",
        ),
        (
            "edgefleet_rs_forwarded_bytes_total",
            "forwarded_bytes",
            "counter",
            "DR: bytes from viewers forwarded to the real server.",
        ),
        (
            "edgefleet_rs_checks_total",
            "checks",
            "counter",
            "Health checks run.",
        ),
        (
            "edgefleet_rs_check_failures_total",
            "check_failures",
            "counter",
            "Health checks that failed.",
        ),
    ];
    let empty = vec![];
    let vss = st["virtual_servers"].as_array().unwrap_or(&empty);
    for (name, key, kind, help) in vs_metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for vs in vss {
            let _ = writeln!(
                out,
                "{name}{{vs=\"{}\"}} {}",
                vs["address"].as_str().unwrap_or(""),
                vs[key]
            );
        }
    }
    for (name, key, kind, help) in rs_metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for vs in vss {
            for rs in vs["real_servers"].as_array().unwrap_or(&empty) {
                let v = if key == "state" {
                    u8::from(rs["state"] == "UP").to_string()
                } else if key == "drained" {
                    u8::from(rs["drained"] == true).to_string()
                } else if rs[key].is_null() {
                    continue; // a PROXY server has no DR counters
                } else {
                    rs[key].to_string()
                };
                let _ = writeln!(
                    out,
                    "{name}{{vs=\"{}\",rs=\"{}\"}} {v}",
                    vs["address"].as_str().unwrap_or(""),
                    rs["address"].as_str().unwrap_or("")
                );
            }
        }
    }
    // DR datapath: drops by reason, and every packet by the path it took.
    let _ = writeln!(out, "# HELP edgefleet_vs_dropped_packets_total DR: packets to the virtual server dropped, by reason.\n# TYPE edgefleet_vs_dropped_packets_total counter");
    for vs in vss {
        for (reason, counter) in [
            ("fragment", "drop_frag"),
            ("malformed", "drop_malformed"),
            ("no_server", "drop_no_server"),
        ] {
            if let Some(n) = vs["dr"]["packets"][counter].as_u64() {
                let _ = writeln!(
                    out,
                    "edgefleet_vs_dropped_packets_total{{vs=\"{}\",reason=\"{reason}\"}} {n}",
                    vs["address"].as_str().unwrap_or("")
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP edgefleet_vs_dr_packets_total DR: packets by the path they took (new_conn, hit_conn, fin_rst, adopted = mid-flow packet of an unknown flow, ct_full = connection table full, sorry, pass_nontcp = not TCP, passed to the stack).\n# TYPE edgefleet_vs_dr_packets_total counter");
    for vs in vss {
        if let Some(m) = vs["dr"]["packets"].as_object() {
            for (path, n) in m.iter().filter(|(k, _)| !k.starts_with("drop_")) {
                let _ = writeln!(
                    out,
                    "edgefleet_vs_dr_packets_total{{vs=\"{}\",path=\"{path}\"}} {n}",
                    vs["address"].as_str().unwrap_or("")
                );
            }
        }
    }
    let vrrps = st["vrrp_instances"].as_array().unwrap_or(&empty);
    let states = ["INIT", "BACKUP", "MASTER", "FAULT"];
    let _ = writeln!(out, "# HELP edgefleet_vrrp_state 1 for the instance's current state.\n# TYPE edgefleet_vrrp_state gauge");
    for v in vrrps {
        for s in states {
            let _ = writeln!(
                out,
                "edgefleet_vrrp_state{{instance=\"{}\",state=\"{s}\"}} {}",
                v["name"].as_str().unwrap_or(""),
                u8::from(v["state"] == s)
            );
        }
    }
    let vrrp_metrics = [
        (
            "edgefleet_vrrp_priority",
            "priority",
            "gauge",
            "Effective priority (base plus tracking).",
        ),
        (
            "edgefleet_vrrp_transitions_total",
            "transitions",
            "counter",
            "State transitions.",
        ),
        (
            "edgefleet_vrrp_adverts_sent_total",
            "adverts_sent",
            "counter",
            "Advertisements sent.",
        ),
        (
            "edgefleet_vrrp_adverts_received_total",
            "adverts_received",
            "counter",
            "Valid advertisements received.",
        ),
    ];
    for (name, key, kind, help) in vrrp_metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for v in vrrps {
            let _ = writeln!(
                out,
                "{name}{{instance=\"{}\"}} {}",
                v["name"].as_str().unwrap_or(""),
                v[key]
            );
        }
    }
    let _ = writeln!(out, "# HELP edgefleet_vrrp_adverts_dropped_total Received packets dropped, by reason.\n# TYPE edgefleet_vrrp_adverts_dropped_total counter");
    for v in vrrps {
        for r in crate::vrrp::packet::Drop::ALL {
            let _ = writeln!(
                out,
                "edgefleet_vrrp_adverts_dropped_total{{instance=\"{}\",reason=\"{}\"}} {}",
                v["name"].as_str().unwrap_or(""),
                r.name(),
                v["drops"][r.name()]
            );
        }
    }
    let _ = writeln!(out, "# HELP edgefleet_vrrp_script_ok 1 while a tracked vrrp_script is OK (after rise/fall), 0 while failing.\n# TYPE edgefleet_vrrp_script_ok gauge");
    let scripts = |v: &serde_json::Value| v["track_script"].as_array().cloned().unwrap_or_default();
    for v in vrrps {
        for t in scripts(v) {
            let _ = writeln!(
                out,
                "edgefleet_vrrp_script_ok{{instance=\"{}\",script=\"{}\"}} {}",
                v["name"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or(""),
                u8::from(t["state"] == "OK")
            );
        }
    }
    for (name, key, help) in [
        (
            "edgefleet_vrrp_script_runs_total",
            "runs",
            "Runs of a tracked vrrp_script.",
        ),
        (
            "edgefleet_vrrp_script_failures_total",
            "failures",
            "Failed runs (non-zero exit, timeout, cannot start).",
        ),
        (
            "edgefleet_vrrp_script_flips_total",
            "flips",
            "OK <-> failing changes after rise/fall.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for v in vrrps {
            for t in scripts(v) {
                let _ = writeln!(
                    out,
                    "{name}{{instance=\"{}\",script=\"{}\"}} {}",
                    v["name"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t[key]
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP edgefleet_vrrp_sync_group_state 1 for the sync group's current state (as its member sees it).\n# TYPE edgefleet_vrrp_sync_group_state gauge");
    for v in vrrps {
        if let Some(g) = v["sync_group"].as_object() {
            for s in ["BACKUP", "MASTER", "FAULT"] {
                let _ = writeln!(
                    out,
                    "edgefleet_vrrp_sync_group_state{{group=\"{}\",instance=\"{}\",state=\"{s}\"}} {}",
                    g["name"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or(""),
                    u8::from(g["state"] == s)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP edgefleet_vrrp_master_info The current master's address as a label.\n# TYPE edgefleet_vrrp_master_info gauge");
    for v in vrrps {
        if let Some(m) = v["master"].as_str() {
            let _ = writeln!(
                out,
                "edgefleet_vrrp_master_info{{instance=\"{}\",master=\"{m}\"}} 1",
                v["name"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// The State column: health, and `DRAINED` when the operator drained it (a configured
/// weight 0 shows as its weight only).
fn rs_state(rs: &serde_json::Value) -> String {
    let health = rs["state"].as_str().unwrap_or("?");
    if rs["drained"] == true {
        format!("{health},DRAINED")
    } else {
        health.to_string()
    }
}

/// Renders a status document as `ipvsadm -Ln` does.
pub fn render_table(st: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "EdgeFleet lb");
    let _ = writeln!(out, "Prot LocalAddress:Port Scheduler Flags");
    let _ = writeln!(
        out,
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn State"
    );
    let empty = vec![];
    for vs in st["virtual_servers"].as_array().unwrap_or(&empty) {
        let persist = vs["persistence_timeout"].as_u64().unwrap_or(0);
        let flags = if persist > 0 {
            format!(" persistent {persist}")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "TCP  {} {}{flags}",
            vs["address"].as_str().unwrap_or("?"),
            vs["lb_algo"].as_str().unwrap_or("?")
        );
        // ipvsadm's names: Masq, Route, Tunnel; ours: Proxy.
        let forward = if vs["lb_kind"] == "DR" {
            "Route"
        } else {
            "Proxy"
        };
        for rs in vs["real_servers"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<9} {}",
                rs["address"].as_str().unwrap_or("?"),
                forward,
                rs["weight"].to_string(),
                rs["active"].to_string(),
                rs["inactive"].to_string(),
                rs_state(rs),
            );
        }
        if let Some(s) = vs["sorry_server"].as_str() {
            let _ = writeln!(out, "  -> {s:<28} {forward:<7} (sorry server)");
        }
    }
    let vrrps = st["vrrp_instances"].as_array().unwrap_or(&empty);
    if !vrrps.is_empty() {
        let _ = writeln!(out, "VRRP");
        for v in vrrps {
            let _ = writeln!(
                out,
                "  {} vrid {} on {} v{}: {} priority {} (base {}), master {}, {} transitions, VIPs {}",
                v["name"].as_str().unwrap_or("?"),
                v["virtual_router_id"],
                v["interface"].as_str().unwrap_or("?"),
                v["version"],
                v["state"].as_str().unwrap_or("?"),
                v["priority"],
                v["base_priority"],
                v["master"].as_str().unwrap_or("-"),
                v["transitions"],
                v["virtual_ipaddress"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
            );
            if let Some(g) = v["sync_group"].as_object() {
                let _ = writeln!(
                    out,
                    "    sync group {}: {}",
                    g["name"].as_str().unwrap_or("?"),
                    g["state"].as_str().unwrap_or("-")
                );
            }
            for t in v["track_script"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "    script {}: {} (weight {}, {} runs, {} failed, last {})",
                    t["name"].as_str().unwrap_or("?"),
                    t["state"].as_str().unwrap_or("?"),
                    t["weight"],
                    t["runs"],
                    t["failures"],
                    match t["last"].as_str() {
                        Some("") | None => "-",
                        Some(l) => l,
                    }
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real instance (on an interface that does not exist here, so it stays FAULT and
    /// sends nothing) whose script runs: /metrics and /status show the script and group.
    #[tokio::test]
    async fn metrics_show_scripts_and_sync_groups() {
        let cfg = crate::LbConfig::parse(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"nope0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.100\"]\ntrack_script = [\"chk\"]\n[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/sh -c 'exit 3'\"\ninterval = 0.05\n[[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\"]\n",
        )
        .unwrap();
        let b = Balancer::new(cfg.clone());
        b.apply(cfg).await.unwrap();
        let mut m = String::new();
        for _ in 0..200 {
            m = metrics(&b);
            if m.contains("edgefleet_vrrp_script_ok{instance=\"VI_1\",script=\"chk\"} 0")
                && m.contains("edgefleet_vrrp_sync_group_state{group=\"G1\",instance=\"VI_1\",state=\"FAULT\"} 1")
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            m.contains("edgefleet_vrrp_script_ok{instance=\"VI_1\",script=\"chk\"} 0"),
            "{m}"
        );
        assert!(
            m.contains(
                "edgefleet_vrrp_sync_group_state{group=\"G1\",instance=\"VI_1\",state=\"FAULT\"} 1"
            ),
            "{m}"
        );
        assert!(
            m.contains("edgefleet_vrrp_script_failures_total{instance=\"VI_1\",script=\"chk\"}")
        );
        let st = status(&b);
        let t = &st["vrrp_instances"][0]["track_script"][0];
        assert_eq!(t["last"], "exited with 3", "{st}");
        assert_eq!(t["weight"], 0, "in a sync group");
        b.shutdown().await;
    }

    #[test]
    fn the_table_shows_scripts_and_the_sync_group() {
        let st = json!({
            "virtual_servers": [],
            "vrrp_instances": [{
                "name": "VI_1", "virtual_router_id": 51, "interface": "eth0", "version": 3,
                "state": "BACKUP", "priority": 70, "base_priority": 150, "master": "198.18.0.3",
                "transitions": 3, "virtual_ipaddress": ["198.18.0.100/24"],
                "sync_group": { "name": "G1", "state": "BACKUP" },
                "track_script": [{
                    "name": "chk_edge", "state": "FAILING", "weight": -80, "runs": 12,
                    "failures": 4, "flips": 1, "last": "exited with 1"
                }],
            }],
        });
        let t = render_table(&st);
        assert!(
            t.contains("VI_1 vrid 51 on eth0 v3: BACKUP priority 70 (base 150)"),
            "{t}"
        );
        assert!(t.contains("    sync group G1: BACKUP\n"), "{t}");
        assert!(
            t.contains("    script chk_edge: FAILING (weight -80, 12 runs, 4 failed, last exited with 1)\n"),
            "{t}"
        );
    }
}
