//! What DR needs to know of the host's network, read through iproute2's JSON output
//! (`ip -j route get`, `ip -j neigh`): the interface and gateway of the route to a real
//! server, the interface's own MAC, and the real server's MAC from the neighbour table.

use super::{DrError, Mac};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The route the kernel would use to reach an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dev: String,
    /// Set when the address is not on a directly attached segment.
    pub gateway: Option<String>,
}

fn ip_json(args: &[&str]) -> Result<serde_json::Value, DrError> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DrError::Tool(format!("ip -j {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(DrError::Tool(format!(
            "ip -j {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if out.stdout.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| DrError::Tool(format!("ip -j {}: unreadable JSON: {e}", args.join(" "))))
}

/// `ip -j route get ADDR`.
pub fn route_get(addr: Ipv4Addr) -> Result<Route, DrError> {
    let v = ip_json(&["route", "get", &addr.to_string()])?;
    parse_route(&v).ok_or_else(|| DrError::Tool(format!("ip route get {addr}: no route")))
}

pub fn parse_route(v: &serde_json::Value) -> Option<Route> {
    let r = v.as_array()?.first()?;
    Some(Route {
        dev: r["dev"].as_str()?.to_string(),
        gateway: r["gateway"].as_str().map(str::to_string),
    })
}

/// The interface's own MAC (`/sys/class/net/DEV/address`).
pub fn link_mac(dev: &str) -> Result<Mac, DrError> {
    let path = format!("/sys/class/net/{dev}/address");
    let s = std::fs::read_to_string(&path).map_err(|e| DrError::Tool(format!("{path}: {e}")))?;
    s.trim()
        .parse()
        .map_err(|_| DrError::Tool(format!("{path}: {:?} is not a MAC", s.trim())))
}

/// Every neighbour on `dev` that has a link-layer address (any state but FAILED/INCOMPLETE).
pub fn neighbours(dev: &str) -> Result<Vec<(Ipv4Addr, Mac)>, DrError> {
    let v = ip_json(&["-4", "neigh", "show", "dev", dev])?;
    Ok(parse_neighbours(&v))
}

pub fn parse_neighbours(v: &serde_json::Value) -> Vec<(Ipv4Addr, Mac)> {
    let mut out = Vec::new();
    for n in v.as_array().into_iter().flatten() {
        let (Some(dst), Some(ll)) = (n["dst"].as_str(), n["lladdr"].as_str()) else {
            continue;
        };
        let failed = n["state"]
            .as_array()
            .map(|s| s.iter().any(|x| x == "FAILED" || x == "INCOMPLETE"))
            .unwrap_or(false);
        if let (false, Ok(ip), Ok(mac)) = (failed, dst.parse(), ll.parse()) {
            out.push((ip, mac));
        }
    }
    out
}

/// Makes the kernel resolve `addr`'s MAC: one empty UDP datagram to its discard port (the
/// kernel ARPs before sending; nothing listens there, and the TCP check does the same).
pub fn provoke_arp(addr: Ipv4Addr) {
    if let Ok(s) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        let _ = s.send_to(&[], (addr, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_neighbours_from_ip_json() {
        let direct: serde_json::Value = serde_json::from_str(
            r#"[{"dst":"198.18.0.11","dev":"eth0","prefsrc":"198.18.0.2","flags":[],"uid":0,"cache":[]}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_route(&direct),
            Some(Route {
                dev: "eth0".into(),
                gateway: None
            })
        );
        let via: serde_json::Value = serde_json::from_str(
            r#"[{"dst":"198.19.9.9","gateway":"198.18.0.1","dev":"eth0","prefsrc":"198.18.0.2"}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_route(&via).unwrap().gateway.as_deref(),
            Some("198.18.0.1")
        );
        let n: serde_json::Value = serde_json::from_str(
            r#"[{"dst":"198.18.0.11","lladdr":"02:00:00:00:00:03","state":["REACHABLE"]},
                {"dst":"198.18.0.12","state":["FAILED"]},
                {"dst":"198.18.0.13","lladdr":"02:00:00:00:00:05","state":["STALE"]}]"#,
        )
        .unwrap();
        let got = parse_neighbours(&n);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.to_string(), "02:00:00:00:00:03");
    }
}
