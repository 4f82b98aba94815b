//! `edge dr-setup --vip IP [--undo]`: prepares this host to be a real server behind an `lb`
//! with `lb_kind = "DR"` (LVS-DR's real-server setup): the VIP as a /32 on `lo`, so the
//! kernel accepts the frames lb forwards and answers the viewer from the VIP itself, and
//! `arp_ignore = 1` / `arp_announce = 2` on `all` and `lo`, so this host never answers ARP
//! for the VIP (the lb owns it on the segment) nor uses it as an ARP source.
//!
//! Idempotent: what is already in place is left and reported. `--undo` removes the address
//! and sets the two sysctls back to the kernel defaults (0). Needs root (CAP_NET_ADMIN).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DrSetupError {
    #[error("edge dr-setup changes addresses and sysctls: run it as root (CAP_NET_ADMIN)")]
    NotRoot,
    #[error("{what}: {why}")]
    Failed { what: String, why: String },
}

/// The sysctls the setup writes, with the value it wants.
pub const SYSCTLS: [(&str, &str, u8); 4] = [
    ("all", "arp_ignore", 1),
    ("all", "arp_announce", 2),
    ("lo", "arp_ignore", 1),
    ("lo", "arp_announce", 2),
];

fn failed(what: impl Into<String>, why: impl ToString) -> DrSetupError {
    DrSetupError::Failed {
        what: what.into(),
        why: why.to_string(),
    }
}

/// Whether `vip`/32 is on `lo` (`ip -j -4 addr show dev lo`).
fn on_lo(vip: Ipv4Addr) -> Result<bool, DrSetupError> {
    let out = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", "lo"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed("ip addr show dev lo", e))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v.as_array().into_iter().flatten().any(|l| {
        l["addr_info"].as_array().into_iter().flatten().any(|a| {
            a["local"].as_str() == Some(&vip.to_string()) && a["prefixlen"].as_u64() == Some(32)
        })
    }))
}

fn ip(args: &[&str]) -> Result<(), DrSetupError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("ip {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(failed(
            format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(())
}

fn sysctl(dev: &str, key: &str, value: u8) -> Result<bool, DrSetupError> {
    let path = format!("/proc/sys/net/ipv4/conf/{dev}/{key}");
    let now = std::fs::read_to_string(&path).map_err(|e| failed(&path, e))?;
    if now.trim() == value.to_string() {
        return Ok(false);
    }
    std::fs::write(&path, format!("{value}\n")).map_err(|e| failed(&path, e))?;
    Ok(true)
}

/// What is missing on this host for `vip` (read only, no root needed): one line per problem,
/// each naming the fix. Empty when the host is ready to be a DR real server for `vip`.
pub fn missing(vip: Ipv4Addr) -> Vec<String> {
    let mut out = Vec::new();
    match on_lo(vip) {
        Ok(true) => {}
        Ok(false) => out.push(format!(
            "{vip}/32 is not on lo: the kernel drops the viewers' packets that lb forwards (run edge dr-setup --vip {vip})"
        )),
        Err(e) => out.push(format!("cannot tell whether {vip}/32 is on lo: {e}")),
    }
    // The kernel applies the larger of `all` and the interface's value: `all` covers every
    // interface, which is what dr-setup sets.
    for (key, want) in [("arp_ignore", 1u8), ("arp_announce", 2u8)] {
        let path = format!("/proc/sys/net/ipv4/conf/all/{key}");
        match std::fs::read_to_string(&path).map(|v| v.trim().parse::<u8>()) {
            Ok(Ok(v)) if v >= want => {}
            Ok(Ok(v)) => out.push(format!(
                "net.ipv4.conf.all.{key} = {v} (want {want}): this host would answer ARP for the VIP and steal it from lb (run edge dr-setup --vip {vip})"
            )),
            _ => out.push(format!("cannot read {path}")),
        }
    }
    out
}

/// Logs, at start and after a reload that changed `dr_vip`, whether this host is ready for
/// each DR VIP.
pub fn log_readiness(vips: &[Ipv4Addr]) {
    for vip in vips {
        let problems = missing(*vip);
        if problems.is_empty() {
            tracing::info!(dr_vip = %vip, "DR real server ready: VIP on lo, ARP sysctls set");
        }
        for p in problems {
            tracing::warn!(dr_vip = %vip, "DR real server not ready: {p}");
        }
    }
}

/// Applies (or with `undo` reverses) the setup; returns one line per thing done or found.
pub fn run(vip: Ipv4Addr, undo: bool) -> Result<Vec<String>, DrSetupError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DrSetupError::NotRoot);
    }
    let mut done = Vec::new();
    let cidr = format!("{vip}/32");
    match (undo, on_lo(vip)?) {
        (false, false) => {
            ip(&["addr", "add", &cidr, "dev", "lo"])?;
            done.push(format!("added {cidr} on lo"));
        }
        (false, true) => done.push(format!("{cidr} already on lo")),
        (true, true) => {
            ip(&["addr", "del", &cidr, "dev", "lo"])?;
            done.push(format!("removed {cidr} from lo"));
        }
        (true, false) => done.push(format!("{cidr} not on lo")),
    }
    for (dev, key, want) in SYSCTLS {
        let value = if undo { 0 } else { want };
        let changed = sysctl(dev, key, value)?;
        done.push(format!(
            "net.ipv4.conf.{dev}.{key} = {value}{}",
            if changed { "" } else { " (already)" }
        ));
    }
    Ok(done)
}
