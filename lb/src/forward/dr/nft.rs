//! The nftables backend of DR (docs/dr-datapath.md, verified there in the namespace lab):
//! one netdev-ingress table per virtual server, written by `nft -f -` in one transaction,
//! read back with `nft -j list`.
//!
//! The table: `ingress` (hook on the interface that reaches the real servers) drops and
//! counts fragments to the VIP, passes non-TCP, sends complete TCP headers to VIP:PORT to
//! `vs` and drops the rest (`drop_malformed`). `vs` follows the connection table `conn`
//! (flow -> MAC; 900 s, 120 s once a FIN/RST was seen, with the `closing` set keeping a
//! closed flow's last ACK from lengthening it again), sends SYNs to `sched`, and adopts a
//! mid-flow packet of an unknown flow through the Maglev map (a standby that just took the
//! VIP, or a restarted lb: the same server as before for mh/sh). `sched` picks for new
//! flows: `persist` (masked client -> MAC) first, then the algorithm's map (`maglev` keyed by
//! `jhash` for mh/sh, `seq` keyed by `numgen` for rr/wrr), then the sorry server. `fwd_out`
//! counts per real server (`rsctr`: MAC -> named counter) and forwards.
//!
//! A reprogram (health flip, weight, reload) flushes and refills chains and maps in the same
//! transaction: `conn` is never flushed, so established flows keep their server; a rejected
//! transaction leaves the previous table whole.

use super::{DrError, Mac};
use crate::config::Algo;
use crate::dispatch::maglev::{Maglev, M_DR as M};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

/// IPVS's timeouts: established TCP 900 s, FIN_WAIT/TIME_WAIT 120 s, SYN_RECV 60 s.
pub const ESTABLISHED: u64 = 900;
pub const CLOSING: u64 = 120;
pub const SYN: u64 = 60;
/// Flows the connection table holds; past it new flows are forwarded stateless (counted).
pub const CONN_SIZE: u32 = 65536;
/// Longest smooth-wrr sequence loaded for rr/wrr (weights are scaled down to fit).
const SEQ_MAX: u32 = 1024;

/// Datapath counters (named nft counters) and what /metrics calls them.
pub const COUNTERS: &[&str] = &[
    "drop_frag",
    "drop_malformed",
    "drop_no_server",
    "pass_nontcp",
    "new_conn",
    "hit_conn",
    "fin_rst",
    "adopted",
    "ct_full",
    "sorry",
];

/// One real server as the datapath sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanServer {
    pub addr: SocketAddr,
    pub mac: Mac,
    /// Effective weight for new flows: 0 when down, drained or quiesced.
    pub weight: u32,
}

/// Everything a table is rendered from; two lbs with the same config render the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub table: String,
    pub device: String,
    pub lb_mac: Mac,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub algo: Algo,
    pub seed: u32,
    /// Persistence: timeout and IPv4 prefix length.
    pub persistence: Option<(Duration, u8)>,
    /// Every real server whose MAC is known (weight 0 ones only count).
    pub servers: Vec<PlanServer>,
    /// Used only while no server has a weight.
    pub sorry: Option<Mac>,
}

impl Plan {
    pub fn available(&self) -> bool {
        self.servers.iter().any(|s| s.weight > 0)
    }
}

/// The table's name for a virtual server: `edgefleet-VIP-PORT`.
pub fn table_name(vs: SocketAddr) -> String {
    format!("edgefleet-{}-{}", vs.ip(), vs.port())
}

fn counter_name(mac: Mac) -> String {
    format!("rs_{}", mac.to_string().replace(':', ""))
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0))
}

/// Slots of the `seq` map for lc/wlc: the control loop shares them out by deficit (see
/// [`lc_turns`]) and rewrites only this map when the shares change.
pub const LC_SLOTS: u32 = 64;

/// lc/wlc in the datapath: how many of the [`LC_SLOTS`] turns each server gets, from its
/// effective weight (0 = no new flows), its open flows and the flows expected before the
/// next reading (`arriving`: the last interval's new flows). IPVS picks the least-loaded
/// server per connection; nftables cannot compare counters, so lb shares the turns the way
/// water fills vessels: it finds the level L at which `sum(max(0, w_i * L - flows_i))`
/// equals the arrivals, and gives each server turns in proportion to what it takes to reach
/// L. Equal loads give turns in proportion to the weights (wrr); an empty server beside busy
/// ones takes every new flow until it has caught up. `weighted` false (lc): every server
/// with a weight counts as weight 1.
pub fn lc_turns(servers: &[(u32, u64)], weighted: bool, arriving: u64) -> Vec<u32> {
    let w: Vec<f64> = servers
        .iter()
        .map(|&(w, _)| match (w, weighted) {
            (0, _) => 0.0,
            (w, true) => w as f64,
            (_, false) => 1.0,
        })
        .collect();
    let wsum: f64 = w.iter().sum();
    if wsum == 0.0 {
        return vec![0; servers.len()];
    }
    let flows: Vec<f64> = servers.iter().map(|s| s.1 as f64).collect();
    // At least one arrival per unit of weight, so equal loads still share by weight.
    let arriving = (arriving as f64).max(wsum);
    let need = |l: f64| -> f64 {
        w.iter()
            .zip(&flows)
            .map(|(&w, &f)| if w > 0.0 { (w * l - f).max(0.0) } else { 0.0 })
            .sum()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while need(hi) < arriving {
        hi *= 2.0;
    }
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        if need(mid) < arriving {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let take: Vec<f64> = w
        .iter()
        .zip(&flows)
        .map(|(&w, &f)| if w > 0.0 { (w * hi - f).max(0.0) } else { 0.0 })
        .collect();
    let total: f64 = take.iter().sum();
    let exact: Vec<f64> = take.iter().map(|t| t / total * LC_SLOTS as f64).collect();
    let mut turns: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
    let mut left = LC_SLOTS.saturating_sub(turns.iter().sum());
    // Largest remainders first; ties to the lower index.
    let mut order: Vec<usize> = (0..exact.len()).filter(|&i| take[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        turns[i] += 1;
        left -= 1;
    }
    turns
}

/// The turns spread evenly over the slots (smooth weighted round robin, no scaling):
/// `turns[i]` slots for server i, `sum(turns)` slots in all.
fn spread(turns: &[u32]) -> Vec<usize> {
    let sum: i64 = turns.iter().map(|&t| t as i64).sum();
    let mut current = vec![0i64; turns.len()];
    let mut seq = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..turns.len() {
            current[i] += turns[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        seq.push(best);
    }
    seq
}

/// The small transaction that replaces only the `seq` map with lc/wlc `turns` (one per
/// entry of `plan.servers`): rules, Maglev map and connection table stay as they are.
pub fn render_turns(plan: &Plan, turns: &[u32]) -> String {
    let t = &plan.table;
    let mut o = format!("flush map netdev {t} seq\n");
    let els: Vec<String> = spread(turns)
        .iter()
        .enumerate()
        .map(|(k, &i)| format!("{k} : {}", plan.servers[i].mac))
        .collect();
    if !els.is_empty() {
        let _ = writeln!(o, "add element netdev {t} seq {{ {} }}", els.join(", "));
    }
    o
}

/// Smooth weighted round robin over `weights` (index per turn), scaled to at most SEQ_MAX.
pub fn wrr_sequence(weights: &[u32]) -> Vec<usize> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    if total == 0 {
        return Vec::new();
    }
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
    let mut w: Vec<u64> = weights.iter().map(|&x| (x / g) as u64).collect();
    let sum: u64 = w.iter().sum();
    if sum > SEQ_MAX as u64 {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = (*x * SEQ_MAX as u64 / sum).max(1);
        }
    }
    spread(&w.iter().map(|&x| x as u32).collect::<Vec<_>>())
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The complete transaction that (re)programs `plan`'s table.
pub fn render(plan: &Plan) -> String {
    let t = &plan.table;
    let d = &plan.device;
    let (vip, port) = (plan.vip, plan.port);
    let mut o = String::with_capacity(64 * 1024);
    // Declarations: `table { ... }` adds what is missing and leaves what exists (conn and
    // the counters keep their contents).
    let _ = writeln!(o, "table netdev {t} {{");
    let _ = writeln!(o, "    map conn {{ type ipv4_addr . inet_service : ether_addr; size {CONN_SIZE}; flags dynamic,timeout; timeout {ESTABLISHED}s; }}");
    let _ = writeln!(o, "    set closing {{ type ipv4_addr . inet_service; size {CONN_SIZE}; flags dynamic,timeout; timeout {CLOSING}s; }}");
    let _ = writeln!(o, "    map persist {{ type ipv4_addr : ether_addr; size {CONN_SIZE}; flags dynamic,timeout; timeout 3600s; }}");
    let _ = writeln!(o, "    map maglev {{ type mark : ether_addr; }}");
    let _ = writeln!(o, "    map seq {{ type mark : ether_addr; }}");
    let _ = writeln!(o, "    map rsctr {{ type ether_addr : counter; }}");
    for c in COUNTERS {
        let _ = writeln!(o, "    counter {c} {{ }}");
    }
    let _ = writeln!(o, "    chain ingress {{ type filter hook ingress device \"{d}\" priority -500; policy accept; }}");
    for c in ["vs", "sched", "fwd_out"] {
        let _ = writeln!(o, "    chain {c} {{ }}");
    }
    let _ = writeln!(o, "}}");
    for c in ["ingress", "vs", "sched", "fwd_out"] {
        let _ = writeln!(o, "flush chain netdev {t} {c}");
    }
    for m in ["maglev", "seq", "rsctr"] {
        let _ = writeln!(o, "flush map netdev {t} {m}");
    }
    // Per-server counters, and the sorry server's (it is forwarded to like any server).
    let mut macs: Vec<Mac> = plan.servers.iter().map(|s| s.mac).collect();
    macs.extend(plan.sorry);
    macs.sort();
    macs.dedup();
    for m in &macs {
        let _ = writeln!(o, "add counter netdev {t} {}", counter_name(*m));
    }
    if !macs.is_empty() {
        let els: Vec<String> = macs
            .iter()
            .map(|m| format!("{m} : \"{}\"", counter_name(*m)))
            .collect();
        let _ = writeln!(o, "add element netdev {t} rsctr {{ {} }}", els.join(", "));
    }
    // The Maglev table over the servers with a weight: the same builder as the userspace
    // `mh`, so every lb with this config loads the same slots.
    let weights: Vec<(SocketAddr, u32)> = plan.servers.iter().map(|s| (s.addr, s.weight)).collect();
    if let Some(mg) = Maglev::build_sized(&weights, M) {
        let _ = write!(o, "add element netdev {t} maglev {{ ");
        for (slot, &i) in mg.slots().iter().enumerate() {
            if slot > 0 {
                o.push_str(", ");
            }
            let _ = write!(o, "{slot} : {}", plan.servers[i as usize].mac);
        }
        o.push_str(" }\n");
    }
    // rr: every available server once per turn; wrr: smooth weighted turns.
    let seq: Vec<usize> = match plan.algo {
        Algo::Rr => (0..plan.servers.len())
            .filter(|&i| plan.servers[i].weight > 0)
            .collect(),
        Algo::Wrr => wrr_sequence(&plan.servers.iter().map(|s| s.weight).collect::<Vec<_>>()),
        // lc/wlc start from equal loads; the control loop rewrites the turns from the
        // connection table (`render_turns`). Always LC_SLOTS long: the rule never changes.
        Algo::Lc | Algo::Wlc => spread(&lc_turns(
            &plan
                .servers
                .iter()
                .map(|s| (s.weight, 0))
                .collect::<Vec<_>>(),
            plan.algo == Algo::Wlc,
            0,
        )),
        _ => Vec::new(),
    };
    if !seq.is_empty() {
        let els: Vec<String> = seq
            .iter()
            .enumerate()
            .map(|(k, &i)| format!("{k} : {}", plan.servers[i].mac))
            .collect();
        let _ = writeln!(o, "add element netdev {t} seq {{ {} }}", els.join(", "));
    }
    let seq_len = seq.len();
    let seed = plan.seed;
    let flow_hash = format!("jhash ip saddr . tcp sport mod {M} seed 0x{seed:08x}");
    let (sched_key, sched_map) = match plan.algo {
        Algo::Sh => (
            format!("jhash ip saddr mod {M} seed 0x{seed:08x}"),
            "maglev",
        ),
        Algo::Rr | Algo::Wrr => (format!("numgen inc mod {}", seq_len.max(1)), "seq"),
        Algo::Lc | Algo::Wlc => (format!("numgen inc mod {LC_SLOTS}"), "seq"),
        _ => (flow_hash.clone(), "maglev"),
    };
    let adopt_key = if plan.algo == Algo::Sh {
        sched_key.clone()
    } else {
        flow_hash
    };
    let flow = "ip saddr . tcp sport";
    let r = |o: &mut String, chain: &str, rule: String| {
        let _ = writeln!(o, "add rule netdev {t} {chain} {rule}");
    };
    // ingress: only complete TCP headers to VIP:PORT are ours; fragments would be split
    // between a forwarded head and a tail for the lb's own stack, so they are dropped.
    r(&mut o, "ingress", format!("ip daddr {vip} ip protocol tcp ip frag-off & 0x3fff != 0 counter name \"drop_frag\" drop"));
    r(
        &mut o,
        "ingress",
        format!("ip daddr {vip} ip protocol != tcp counter name \"pass_nontcp\" accept"),
    );
    r(
        &mut o,
        "ingress",
        format!("ip daddr {vip} tcp dport {port} tcp doff >= 5 goto vs"),
    );
    r(
        &mut o,
        "ingress",
        format!("ip daddr {vip} tcp dport {port} counter name \"drop_malformed\" drop"),
    );
    // vs: known flows first. A lookup that misses ends its rule, so `update` (which would
    // create a missing entry with whatever MAC is set) never runs for an unknown flow.
    let persist_refresh = plan
        .persistence
        .map(|(t, p)| {
            format!(
                " update @persist {{ ip saddr & {} timeout {}s : ether daddr }}",
                mask(p),
                t.as_secs().max(1)
            )
        })
        .unwrap_or_default();
    r(&mut o, "vs", format!("ether saddr set {}", plan.lb_mac));
    r(&mut o, "vs", format!("{flow} @closing tcp flags & (syn|ack) != syn ether daddr set {flow} map @conn update @conn {{ {flow} timeout {CLOSING}s : ether daddr }} counter name \"fin_rst\" goto fwd_out"));
    r(&mut o, "vs", format!("tcp flags & (fin|rst) != 0 ether daddr set {flow} map @conn update @conn {{ {flow} timeout {CLOSING}s : ether daddr }} add @closing {{ {flow} }} counter name \"fin_rst\" goto fwd_out"));
    r(&mut o, "vs", format!("tcp flags & (syn|ack) != syn ether daddr set {flow} map @conn update @conn {{ {flow} timeout {ESTABLISHED}s : ether daddr }}{persist_refresh} counter name \"hit_conn\" goto fwd_out"));
    r(
        &mut o,
        "vs",
        "tcp flags & (syn|ack) == syn goto sched".to_string(),
    );
    r(&mut o, "vs", format!("meta mark set {adopt_key} ether daddr set meta mark map @maglev add @conn {{ {flow} timeout {ESTABLISHED}s : ether daddr }} counter name \"adopted\" goto fwd_out"));
    r(&mut o, "vs", format!("meta mark set {adopt_key} ether daddr set meta mark map @maglev counter name \"ct_full\" goto fwd_out"));
    if let Some(s) = plan.sorry {
        if !plan.available() {
            r(
                &mut o,
                "vs",
                format!("ether daddr set {s} counter name \"sorry\" goto fwd_out"),
            );
        }
    }
    r(
        &mut o,
        "vs",
        "counter name \"drop_no_server\" drop".to_string(),
    );
    // sched: a SYN. A reused tuple still in conn keeps its server.
    r(&mut o, "sched", format!("ether daddr set {flow} map @conn update @conn {{ {flow} timeout {SYN}s : ether daddr }} delete @closing {{ {flow} }} counter name \"new_conn\" goto fwd_out"));
    let persist_add = plan
        .persistence
        .map(|(t, p)| {
            r(&mut o, "sched", format!("ether daddr set ip saddr & {m} map @persist update @persist {{ ip saddr & {m} timeout {s}s : ether daddr }} add @conn {{ {flow} timeout {SYN}s : ether daddr }} counter name \"new_conn\" goto fwd_out", m = mask(p), s = t.as_secs().max(1)));
            format!(" update @persist {{ ip saddr & {} timeout {}s : ether daddr }}", mask(p), t.as_secs().max(1))
        })
        .unwrap_or_default();
    if plan.available() {
        r(&mut o, "sched", format!("meta mark set {sched_key} ether daddr set meta mark map @{sched_map}{persist_add} add @conn {{ {flow} timeout {SYN}s : ether daddr }} counter name \"new_conn\" goto fwd_out"));
        r(&mut o, "sched", format!("meta mark set {sched_key} ether daddr set meta mark map @{sched_map} counter name \"ct_full\" goto fwd_out"));
    } else if let Some(s) = plan.sorry {
        r(&mut o, "sched", format!("ether daddr set {s} add @conn {{ {flow} timeout {SYN}s : ether daddr }} counter name \"sorry\" goto fwd_out"));
        r(
            &mut o,
            "sched",
            format!("ether daddr set {s} counter name \"sorry\" goto fwd_out"),
        );
    }
    r(
        &mut o,
        "sched",
        "counter name \"drop_no_server\" drop".to_string(),
    );
    // fwd_out: count per real server (a MAC without a counter is forwarded uncounted).
    r(
        &mut o,
        "fwd_out",
        "counter name ether daddr map @rsctr".to_string(),
    );
    r(&mut o, "fwd_out", format!("fwd to \"{d}\""));
    o
}

/// Runs `nft` with `args`, feeding `stdin`; the stdout, or the error nft printed.
pub fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, DrError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            DrError::Nft(format!(
                "cannot run nft: {e} (lb_kind DR needs nftables: apt-get install nftables)"
            ))
        })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        // nft reads everything before it answers; a write error shows up as its exit status.
        let _ = w.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| DrError::Nft(format!("nft {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let short: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect();
        return Err(DrError::Nft(format!(
            "nft {}: {}",
            args.join(" "),
            short.join(" | ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Tables of this family whose name starts with `edgefleet-`.
pub fn parse_our_tables(json: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["table"]["name"].as_str())
        .filter(|n| n.starts_with("edgefleet-"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, i])
    }

    fn plan(algo: Algo, weights: &[u32]) -> Plan {
        Plan {
            table: table_name("198.18.0.100:1935".parse().unwrap()),
            device: "eth0".into(),
            lb_mac: mac(2),
            vip: Ipv4Addr::new(198, 18, 0, 100),
            port: 1935,
            algo,
            seed: 0xedf1,
            persistence: None,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| PlanServer {
                    addr: SocketAddr::from(([198, 18, 0, 11 + i as u8], 1935)),
                    mac: mac(3 + i as u8),
                    weight: w,
                })
                .collect(),
            sorry: None,
        }
    }

    #[test]
    fn mh_table_has_every_slot_and_the_flow_hash() {
        let text = render(&plan(Algo::Mh, &[1, 1]));
        assert!(text.starts_with("table netdev edgefleet-198.18.0.100-1935 {"));
        let maglev = text.lines().find(|l| l.contains(" maglev { 0 : ")).unwrap();
        assert_eq!(maglev.matches(" : 02:").count(), M);
        assert!(text.contains("meta mark set jhash ip saddr . tcp sport mod 4099 seed 0x0000edf1 ether daddr set meta mark map @maglev"));
        // conn is declared, never flushed: established flows survive a reprogram.
        assert!(!text.contains("flush map netdev edgefleet-198.18.0.100-1935 conn"));
        assert!(text.contains("tcp doff >= 5 goto vs"));
        // Same plan, same text: two lbs load the same table.
        assert_eq!(text, render(&plan(Algo::Mh, &[1, 1])));
    }

    #[test]
    fn drained_server_leaves_the_tables_but_keeps_its_counter() {
        let text = render(&plan(Algo::Mh, &[1, 0]));
        let maglev = text.lines().find(|l| l.contains(" maglev { 0 : ")).unwrap();
        assert!(!maglev.contains("02:00:00:00:00:04"));
        assert!(text.contains("02:00:00:00:00:04 : \"rs_020000000004\""));
    }

    #[test]
    fn none_up_uses_the_sorry_server_or_drops() {
        let mut p = plan(Algo::Rr, &[0, 0]);
        assert!(!render(&p).contains("@seq"));
        p.sorry = Some(mac(9));
        let text = render(&p);
        assert!(
            text.contains("ether daddr set 02:00:00:00:00:09 add @conn"),
            "{text}"
        );
    }

    #[test]
    fn rr_wrr_and_sh_keys() {
        let text = render(&plan(Algo::Wrr, &[1, 3]));
        assert!(text.contains("numgen inc mod 4 ether daddr set meta mark map @seq"));
        let text = render(&plan(Algo::Rr, &[1, 3]));
        assert!(text.contains("numgen inc mod 2 "));
        let text = render(&plan(Algo::Sh, &[1, 1]));
        assert!(text.contains("meta mark set jhash ip saddr mod 4099"));
        assert_eq!(wrr_sequence(&[5, 1, 1]).len(), 7);
        assert!(wrr_sequence(&[60000, 1]).len() <= SEQ_MAX as usize + 1);
    }

    #[test]
    fn persistence_is_consulted_first() {
        let mut p = plan(Algo::Rr, &[1, 1]);
        p.persistence = Some((Duration::from_secs(50), 24));
        let text = render(&p);
        assert!(text.contains("ether daddr set ip saddr & 255.255.255.0 map @persist"));
        assert!(
            text.contains("update @persist { ip saddr & 255.255.255.0 timeout 50s : ether daddr }")
        );
    }

    #[test]
    fn finds_our_tables_in_nft_json() {
        let tables = r#"{"nftables": [{"table": {"family": "netdev", "name": "edgefleet-198.18.0.100-1935"}}, {"table": {"family": "netdev", "name": "other"}}]}"#;
        assert_eq!(
            parse_our_tables(tables),
            vec!["edgefleet-198.18.0.100-1935"]
        );
        assert!(parse_our_tables("garbage").is_empty());
    }

    #[test]
    fn lc_turns_fill_the_least_loaded_first() {
        // Equal loads: turns by weight (wlc) or even (lc).
        assert_eq!(lc_turns(&[(1, 10), (1, 10)], true, 0), vec![32, 32]);
        assert_eq!(lc_turns(&[(1, 0), (3, 0)], true, 0), vec![16, 48]);
        assert_eq!(lc_turns(&[(1, 0), (3, 0)], false, 0), vec![32, 32]);
        // An empty server beside two busy ones takes every turn while it catches up...
        assert_eq!(
            lc_turns(&[(1, 100), (1, 100), (1, 0)], false, 50),
            vec![0, 0, 64]
        );
        // ...and shares once the arrivals would take it past the others.
        let t = lc_turns(&[(1, 100), (1, 100), (1, 0)], false, 400);
        assert_eq!(t.iter().sum::<u32>(), LC_SLOTS);
        assert!(t[2] > t[0] && t[0] > 0 && t[0] == t[1], "{t:?}");
        // Weight 0 (down, drained): no turns; nobody with a weight: none at all.
        assert_eq!(lc_turns(&[(0, 0), (1, 500)], true, 10), vec![0, 64]);
        assert_eq!(lc_turns(&[(0, 0), (0, 5)], true, 10), vec![0, 0]);
        // Any loads and weights: always LC_SLOTS turns, never a panic.
        for a in [0u64, 1, 7, 1000, u32::MAX as u64] {
            for w in [1u32, 2, 100, 65535] {
                let t = lc_turns(&[(w, a), (1, 3), (5, a / 2)], true, a);
                assert_eq!(t.iter().sum::<u32>(), LC_SLOTS, "{a} {w} {t:?}");
            }
        }
    }

    #[test]
    fn lc_programs_a_fixed_sequence_and_rewrites_only_it() {
        let p = plan(Algo::Wlc, &[1, 3]);
        let text = render(&p);
        assert!(
            text.contains(&format!("numgen inc mod {LC_SLOTS}")),
            "{text}"
        );
        let turns = render_turns(&p, &[60, 4]);
        assert!(turns.starts_with(&format!("flush map netdev {} seq\n", p.table)));
        assert_eq!(turns.matches(&p.servers[0].mac.to_string()).count(), 60);
        assert_eq!(turns.matches(&p.servers[1].mac.to_string()).count(), 4);
        assert!(!turns.contains("chain") && !turns.contains("maglev"));
    }
}
