//! `drbench`: direct routing (`lb_kind = "DR"`) against the proxy and HAProxy, in the lab.
//!
//! One lab (bridge + origin .10 with a looping publisher, edges .11 and .12 holding the VIP
//! 198.18.0.100 on `lo` by `edge dr-setup`, a balancer host .2 holding the VIP on eth0, a
//! client .50) serves four runs of the same viewers (`edge play` of the 2.2 Mbit/s clip, two
//! processes of N/2): straight to the edges (baseline, no balancer), through lb DR, through
//! lb PROXY (`--threads 1`) and through HAProxy `mode tcp` (`nbthread 1`). Per run:
//!
//! - balancer CPU = its process's utime+stime (/proc/PID/stat) + the softirq time of the
//!   whole (shared) kernel above the baseline run (/proc/stat `softirq` delta of the run
//!   minus that of the baseline): packets forwarded by nftables, or a proxy's TCP stack, run
//!   in softirq on whichever core, and the lab shares one kernel, so a delta against the same
//!   viewers without a balancer is the attributable part. Scaled to 1000 viewers by
//!   proportion, as cores (CPU seconds per second). Also shown: all busy CPU above baseline.
//! - bytes through the balancer's eth0 (rx + tx, /sys/class/net) against the bytes the
//!   client's eth0 received.
//!
//! Then packets per second: a bounded flood of TCP ACKs of 1000 established-looking flows
//! (python3 raw socket, from 198.18.0.51) to the VIP through lb DR, and the same frames
//! straight to an edge (the lab's own limit: generator + veth + bridge); the edges drop them
//! at ingress and count them. The lb's cost per packet = busy CPU of the DR flood minus that
//! of the direct flood, per packet forwarded.
//!
//! Then a balancer failover under V viewers (default 50): two lbs DR (VRRP, advert_int 0.1,
//! `mh`), and two keepalived (advert_int 0.1) + HAProxy `mode tcp`; the master's link is cut
//! while they play. Viewers dropped = errors + media that stopped before the end; longest
//! stall = the longest gap between two media messages of any viewer (`edge play`'s
//! `max_gap_ms`); the VRRP takeover = cut until the backup holds the VIP.
//!
//! Needs root, iproute2, nft, python3, haproxy, keepalived. Every wait is bounded; the lab is
//! removed at the end, also on failure.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use edgefleet_tests::lab::{self, bin, wait, Host, Lab};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const FLOOD_SRC: &str = "198.18.0.51";

#[derive(Parser)]
#[command(about = "DR vs PROXY vs HAProxy: CPU, bytes, pps and failover in the netns lab")]
struct Args {
    /// Viewers of each CPU run (two `edge play` processes of half each).
    #[arg(long, default_value_t = 200)]
    viewers: usize,
    /// Seconds each CPU run plays.
    #[arg(long, default_value_t = 12)]
    duration: u64,
    /// Frames of the pps flood (each run).
    #[arg(long, default_value_t = 600_000)]
    flood: u64,
    /// Viewers of the failover runs.
    #[arg(long, default_value_t = 50)]
    failover_viewers: usize,
    /// Parts to run: cpu pps failover.
    #[arg(long, num_args = 1.., default_values_t = vec!["cpu".to_string(), "pps".to_string(), "failover".to_string()])]
    only: Vec<String>,
}

struct Fleet {
    lab: Lab,
    lb: Host,
    lb2: Option<Host>,
    client: Host,
    edges: Vec<Host>,
}

fn fleet(two_lbs: bool, vip_on_lb: bool) -> Result<Fleet> {
    let mut lab = Lab::create();
    let origin = lab.host("origin", 10);
    let edges = vec![lab.host("edge1", 11), lab.host("edge2", 12)];
    let lb = lab.host("lb", 2);
    let lb2 = two_lbs.then(|| lab.host("lb2", 3));
    let client = lab.host("client", 50);
    let edge_bin = bin("edge");
    let o = lab.file(
        "origin.toml",
        "listen = \"0.0.0.0:1935\"\nmode = \"local\"\n",
    );
    lab.spawn(
        &origin,
        "origin",
        &edge_bin,
        &["--config", o.to_str().unwrap()],
        &[],
    );
    for (i, e) in edges.iter().enumerate() {
        lab.exec(
            e,
            &[
                edge_bin.to_str().unwrap(),
                "dr-setup",
                "--vip",
                &VIP.to_string(),
            ],
        )
        .map_err(|e| anyhow!("edge dr-setup: {e}"))?;
        let cfg = lab.file(
            &format!("edge{i}.toml"),
            &format!(
                "listen = \"0.0.0.0:1935\"\nmode = \"remote\"\norigin = [\"{}:1935\"]\nmax_handshakes_per_ip = 1000\n",
                origin.ip
            ),
        );
        lab.spawn(
            e,
            &format!("edge{}", i + 1),
            &edge_bin,
            &["--config", cfg.to_str().unwrap()],
            &[],
        );
    }
    if vip_on_lb {
        lab.exec(
            &lb,
            &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "eth0"],
        )
        .map_err(|e| anyhow!("VIP on the lb: {e}"))?;
    }
    for h in std::iter::once(&lb).chain(lb2.iter()) {
        lab.exec(h, &["sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"])
            .map_err(|e| anyhow!("sysctl: {e}"))?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let clip = edgefleet_tests::clip_path();
    lab.spawn(
        &origin,
        "publisher",
        &edge_bin,
        &[
            "publish",
            clip.to_str().unwrap(),
            "rtmp://127.0.0.1:1935/live/cam",
            "--loop",
        ],
        &[],
    );
    Ok(Fleet {
        lab,
        lb,
        lb2,
        client,
        edges,
    })
}

fn lb_config(kind: &str, edges: &[Host]) -> String {
    let mut s = format!(
        "admin_listen = \"127.0.0.1:9180\"\n[[virtual_server]]\naddress = \"{VIP}:1935\"\nlb_algo = \"mh\"\nlb_kind = \"{kind}\"\ndelay_loop = 0.5\n"
    );
    for e in edges {
        s.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{}:1935\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\nretry = 0\ndelay_before_retry = 0.2\n",
            e.ip
        ));
    }
    s
}

fn haproxy_config(edges: &[Host]) -> String {
    let mut s = format!(
        "global\n    nbthread 1\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nlisten v\n    bind {VIP}:1935\n    balance roundrobin\n"
    );
    for (i, e) in edges.iter().enumerate() {
        s.push_str(&format!("    server e{i} {}:1935\n", e.ip));
    }
    s
}

fn keepalived_config(name: &str, prio: u8) -> String {
    format!(
        "global_defs {{\n    router_id {name}\n    vrrp_version 3\n}}\nvrrp_instance VI_1 {{\n    state {}\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int 0.1\n    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n",
        if prio > 100 { "MASTER" } else { "BACKUP" }
    )
}

fn lb_vrrp_config(edges: &[Host], prio: u8) -> String {
    format!(
        "{}\n[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n",
        lb_config("DR", edges),
        if prio > 100 { "MASTER" } else { "BACKUP" }
    )
}

fn status(f: &Fleet, host: &Host) -> Value {
    f.lab
        .exec(
            host,
            &[
                bin("lb").to_str().unwrap(),
                "status",
                "--json",
                "--admin",
                "127.0.0.1:9180",
            ],
        )
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(Value::Null)
}

fn wait_programmed(f: &Fleet, host: &Host, label: &str) -> Result<()> {
    wait(Duration::from_secs(10), || {
        let st = status(f, host);
        let vs = &st["virtual_servers"][0];
        vs["dr"]["programmed"].as_u64().unwrap_or(0) > 0
            && vs["real_servers"]
                .as_array()
                .map(|a| a.iter().filter(|r| r["mac"].is_string()).count() == 2)
                .unwrap_or(false)
    })
    .map(|_| ())
    .ok_or_else(|| anyhow!("DR table never programmed:\n{}", f.lab.log(label)))
}

fn play_sync(f: &Fleet, url: &str, clients: usize, secs: f64) -> Value {
    f.lab
        .exec(
            &f.client,
            &[
                "timeout",
                "60",
                bin("edge").to_str().unwrap(),
                "play",
                url,
                "--clients",
                &clients.to_string(),
                "--duration",
                &secs.to_string(),
                "--json",
            ],
        )
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(Value::Null)
}

fn wait_stream(f: &Fleet, url: &str) -> Result<()> {
    for _ in 0..30 {
        if play_sync(f, url, 1, 1.0)["ok"] == 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("no play of {url}")
}

fn play_bg(f: &Fleet, label: &str, url: &str, clients: usize, secs: f64) {
    f.lab.spawn(
        &f.client,
        label,
        &bin("edge"),
        &[
            "play",
            url,
            "--clients",
            &clients.to_string(),
            "--duration",
            &secs.to_string(),
            "--json",
        ],
        &[],
    );
}

fn summary(f: &Fleet, label: &str, limit: Duration) -> Result<Value> {
    if !f.lab.wait_exit(label, limit) {
        f.lab.kill(label);
        bail!("{label} did not finish");
    }
    f.lab
        .log(label)
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow!("{label}: no summary in\n{}", f.lab.log(label)))
}

/// (busy, softirq) ticks of all CPUs, from /proc/stat.
fn proc_stat() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 7 {
        return (0, 0);
    }
    let total: u64 = v.iter().take(8).sum();
    (total - v[3] - v[4], v[6])
}

/// (utime + stime, cutime + cstime) ticks of `pid`: the process itself, and its children
/// that it waited for (lb DR: the `nft`/`ip` runs of its control loop).
fn proc_cpu(pid: Option<u32>) -> (u64, u64) {
    let Some(pid) = pid else { return (0, 0) };
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the ")" field 3 (state) is index 0: field N is index N - 3.
    let n = |field: usize| -> u64 { f.get(field - 3).and_then(|x| x.parse().ok()).unwrap_or(0) };
    (n(14) + n(15), n(16) + n(17))
}

fn ticks_s(t: u64) -> f64 {
    t as f64 / 100.0
}

fn ifstat(f: &Fleet, host: &Host, what: &str) -> u64 {
    f.lab
        .exec(
            host,
            &["cat", &format!("/sys/class/net/eth0/statistics/{what}")],
        )
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Default, Clone)]
struct CpuRun {
    ok: u64,
    failed: u64,
    stalls: u64,
    mbit: f64,
    proc_s: f64,
    children_s: f64,
    softirq_s: f64,
    busy_s: f64,
    secs: f64,
    lb_bytes: u64,
    viewer_bytes: u64,
}

/// Runs the viewers (two processes of half each, to `urls[0]` and `urls[1]`) and measures.
fn cpu_run(f: &Fleet, label: &str, urls: [&str; 2], pid: Option<u32>, a: &Args) -> Result<CpuRun> {
    let half = a.viewers.div_ceil(2);
    let (b0, s0) = proc_stat();
    let p0 = proc_cpu(pid);
    let lb0 = ifstat(f, &f.lb, "rx_bytes") + ifstat(f, &f.lb, "tx_bytes");
    let c0 = ifstat(f, &f.client, "rx_bytes");
    let t0 = Instant::now();
    play_bg(f, &format!("{label}-a"), urls[0], half, a.duration as f64);
    play_bg(f, &format!("{label}-b"), urls[1], half, a.duration as f64);
    let limit = Duration::from_secs(a.duration + 60);
    let sa = summary(f, &format!("{label}-a"), limit)?;
    let sb = summary(f, &format!("{label}-b"), limit)?;
    let secs = t0.elapsed().as_secs_f64();
    let (b1, s1) = proc_stat();
    let p1 = proc_cpu(pid);
    if std::env::var_os("DRBENCH_DEBUG").is_some() {
        eprintln!(
            "{label}: pid {pid:?} cpu {p0:?} -> {p1:?}: {}",
            pid.map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
                .unwrap_or_default()
        );
    }
    let lb1 = ifstat(f, &f.lb, "rx_bytes") + ifstat(f, &f.lb, "tx_bytes");
    let c1 = ifstat(f, &f.client, "rx_bytes");
    let n = |k: &str| sa[k].as_u64().unwrap_or(0) + sb[k].as_u64().unwrap_or(0);
    let r = CpuRun {
        ok: n("ok"),
        failed: n("failed"),
        stalls: n("stalls"),
        mbit: sa["mbit_per_s"].as_f64().unwrap_or(0.0) + sb["mbit_per_s"].as_f64().unwrap_or(0.0),
        proc_s: ticks_s(p1.0.saturating_sub(p0.0)),
        children_s: ticks_s(p1.1.saturating_sub(p0.1)),
        softirq_s: ticks_s(s1 - s0),
        busy_s: ticks_s(b1 - b0),
        secs,
        lb_bytes: lb1 - lb0,
        viewer_bytes: c1 - c0,
    };
    eprintln!(
        "{label}: ok {}/{} stalls {} {:.0} Mbit/s, proc {:.2} s, children {:.2} s, softirq {:.2} s, busy {:.2} s over {:.1} s, lb if {} B, viewers {} B",
        r.ok, r.ok + r.failed, r.stalls, r.mbit, r.proc_s, r.children_s, r.softirq_s, r.busy_s, r.secs, r.lb_bytes, r.viewer_bytes
    );
    Ok(r)
}

fn cpu_part(a: &Args) -> Result<Vec<CpuRun>> {
    let f = fleet(false, true)?;
    let vip = format!("rtmp://{VIP}:1935/live/cam");
    let e1 = format!("rtmp://{}:1935/live/cam", f.edges[0].ip);
    let e2 = format!("rtmp://{}:1935/live/cam", f.edges[1].ip);
    wait_stream(&f, &e1)?;
    wait_stream(&f, &e2)?;
    let base = cpu_run(&f, "base", [&e1, &e2], None, a)?;
    let mut runs = vec![base];
    for kind in ["DR", "PROXY", "haproxy"] {
        let label = format!("bal-{kind}");
        if kind == "haproxy" {
            let cfg = f.lab.file("haproxy.cfg", &haproxy_config(&f.edges));
            f.lab.spawn(
                &f.lb,
                &label,
                std::path::Path::new("/usr/sbin/haproxy"),
                &["-db", "-f", cfg.to_str().unwrap()],
                &[],
            );
        } else {
            let cfg = f
                .lab
                .file(&format!("{label}.toml"), &lb_config(kind, &f.edges));
            f.lab.spawn(
                &f.lb,
                &label,
                &bin("lb"),
                &["--config", cfg.to_str().unwrap(), "--threads", "1"],
                &[("RUST_LOG", "warn"), ("TOKIO_WORKER_THREADS", "1")],
            );
            if kind == "DR" {
                wait_programmed(&f, &f.lb, &label)?;
            }
        }
        wait_stream(&f, &vip).with_context(|| f.lab.log(&label))?;
        std::thread::sleep(Duration::from_secs(1));
        let r = cpu_run(&f, &label, [&vip, &vip], f.lab.pid(&label), a)?;
        runs.push(r);
        f.lab.signal(&label, Signal::SIGTERM);
        if !f.lab.wait_exit(&label, Duration::from_secs(10)) {
            f.lab.kill(&label);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok(runs)
}

/// A bounded flood of ACK frames (1000 flows) to `dst_mac` for the VIP, from FLOOD_SRC.
const GEN: &str = r#"
import socket, struct, sys, time
mac, vip, count, limit = bytes.fromhex(sys.argv[1].replace(":", "")), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
frames = []
for i in range(1000):
    tcp = struct.pack("!HHIIBBHHH", 20000 + i, 1935, 1000, 1000, 0x50, 0x10, 4096, 0, 0)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i, 0x4000, 64, 6, 0, socket.inet_aton(sys.argv[5]), socket.inet_aton(vip))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    frames.append(mac + src + b"\x08\x00" + h + tcp + b"\0" * 6)
t0 = time.monotonic(); n = 0; send = s.send
while n < count:
    for fr in frames:
        send(fr)
    n += len(frames)
    if time.monotonic() - t0 > limit:
        break
print(n, time.monotonic() - t0)
"#;

fn sink(f: &Fleet, e: &Host) -> Result<()> {
    let rules = format!(
        "table netdev efsink {{\n counter c {{ }}\n chain in {{\n  type filter hook ingress device \"eth0\" priority -500; policy accept;\n  ip saddr {FLOOD_SRC} counter name c drop\n }}\n}}\n"
    );
    let p = f.lab.file(&format!("sink-{}.nft", e.name), &rules);
    f.lab
        .exec(e, &["nft", "-f", p.to_str().unwrap()])
        .map_err(|e| anyhow!("sink: {e}"))?;
    Ok(())
}

fn sunk(f: &Fleet) -> u64 {
    f.edges
        .iter()
        .map(|e| {
            let out = f
                .lab
                .exec(e, &["nft", "list", "counter", "netdev", "efsink", "c"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.split("packets ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn mac(f: &Fleet, h: &Host) -> String {
    f.lab
        .exec(h, &["cat", "/sys/class/net/eth0/address"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

struct PpsRun {
    sent: u64,
    forwarded: u64,
    secs: f64,
    busy_s: f64,
    softirq_s: f64,
}

fn flood(f: &Fleet, dst_mac: &str, a: &Args) -> Result<PpsRun> {
    let before = sunk(f);
    let (b0, s0) = proc_stat();
    let out = f
        .lab
        .exec(
            &f.client,
            &[
                "timeout",
                "60",
                "python3",
                "-c",
                GEN,
                dst_mac,
                &VIP.to_string(),
                &a.flood.to_string(),
                "20",
                FLOOD_SRC,
            ],
        )
        .map_err(|e| anyhow!("flood: {e}"))?;
    std::thread::sleep(Duration::from_millis(200));
    let (b1, s1) = proc_stat();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let sent: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let secs: f64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let r = PpsRun {
        sent,
        forwarded: sunk(f) - before,
        secs,
        busy_s: ticks_s(b1 - b0),
        softirq_s: ticks_s(s1 - s0),
    };
    eprintln!(
        "flood to {dst_mac}: sent {} in {:.2} s, arrived {}, busy {:.2} s, softirq {:.2} s",
        r.sent, r.secs, r.forwarded, r.busy_s, r.softirq_s
    );
    Ok(r)
}

fn pps_part(a: &Args) -> Result<(PpsRun, PpsRun)> {
    let f = fleet(false, true)?;
    for e in &f.edges {
        sink(&f, e)?;
    }
    let cfg = f.lab.file("lb.toml", &lb_config("DR", &f.edges));
    f.lab.spawn(
        &f.lb,
        "lb",
        &bin("lb"),
        &["--config", cfg.to_str().unwrap()],
        &[("RUST_LOG", "warn")],
    );
    wait_programmed(&f, &f.lb, "lb")?;
    // Alternately, twice each; the sums are reported.
    let (edge_mac, lb_mac) = (mac(&f, &f.edges[0]), mac(&f, &f.lb));
    let sum = |runs: [PpsRun; 2]| PpsRun {
        sent: runs[0].sent + runs[1].sent,
        forwarded: runs[0].forwarded + runs[1].forwarded,
        secs: runs[0].secs + runs[1].secs,
        busy_s: runs[0].busy_s + runs[1].busy_s,
        softirq_s: runs[0].softirq_s + runs[1].softirq_s,
    };
    let d1 = flood(&f, &edge_mac, a)?;
    let r1 = flood(&f, &lb_mac, a)?;
    let d2 = flood(&f, &edge_mac, a)?;
    let r2 = flood(&f, &lb_mac, a)?;
    Ok((sum([r1, r2]), sum([d1, d2])))
}

struct FailRun {
    viewers: u64,
    dropped: u64,
    max_gap_ms: f64,
    takeover_ms: f64,
}

fn failover_part(kind: &str, a: &Args) -> Result<FailRun> {
    let f = fleet(true, false)?;
    let lb2 = f.lb2.clone().unwrap();
    for (h, label, prio) in [(&f.lb, "m", 150u8), (&lb2, "b", 100u8)] {
        if kind == "DR" {
            let cfg = f
                .lab
                .file(&format!("{label}.toml"), &lb_vrrp_config(&f.edges, prio));
            f.lab.spawn(
                h,
                label,
                &bin("lb"),
                &["--config", cfg.to_str().unwrap()],
                &[("RUST_LOG", "info")],
            );
        } else {
            let kc = f
                .lab
                .file(&format!("{label}.conf"), &keepalived_config(label, prio));
            let pid = |s: &str| {
                f.lab
                    .dir
                    .join(format!("{label}-{s}.pid"))
                    .to_string_lossy()
                    .into_owned()
            };
            f.lab.spawn(
                h,
                label,
                std::path::Path::new("/usr/sbin/keepalived"),
                &[
                    "-n",
                    "-l",
                    "-P",
                    "-f",
                    kc.to_str().unwrap(),
                    "-p",
                    &pid("main"),
                    "-r",
                    &pid("vrrp"),
                ],
                &[],
            );
            let hc = f
                .lab
                .file(&format!("{label}-haproxy.cfg"), &haproxy_config(&f.edges));
            f.lab.spawn(
                h,
                &format!("{label}-haproxy"),
                std::path::Path::new("/usr/sbin/haproxy"),
                &["-db", "-f", hc.to_str().unwrap()],
                &[],
            );
        }
    }
    wait(Duration::from_secs(10), || {
        f.lab.has_addr(&f.lb, VIP) && !f.lab.has_addr(&lb2, VIP)
    })
    .ok_or_else(|| anyhow!("{kind}: no stable master\n{}", f.lab.log("m")))?;
    if kind == "DR" {
        wait_programmed(&f, &f.lb, "m")?;
        wait_programmed(&f, &lb2, "b")?;
    }
    let vip = format!("rtmp://{VIP}:1935/live/cam");
    wait_stream(&f, &vip)?;
    play_bg(&f, "viewers", &vip, a.failover_viewers, 12.0);
    std::thread::sleep(Duration::from_secs(4));
    let t0 = Instant::now();
    f.lab.cut(&f.lb);
    let takeover = wait(Duration::from_secs(5), || f.lab.has_addr(&lb2, VIP))
        .map(|_| t0.elapsed())
        .ok_or_else(|| anyhow!("{kind}: the backup never took the VIP"))?;
    let s = summary(&f, "viewers", Duration::from_secs(60))?;
    let r = FailRun {
        viewers: s["clients"].as_u64().unwrap_or(0),
        dropped: s["failed"].as_u64().unwrap_or(0) + s["media_stopped"].as_u64().unwrap_or(0),
        max_gap_ms: s["max_gap_ms"].as_f64().unwrap_or(0.0),
        takeover_ms: takeover.as_secs_f64() * 1000.0,
    };
    eprintln!("failover {kind}: {s} takeover {:.0} ms", r.takeover_ms);
    Ok(r)
}

fn pass(b: bool) -> &'static str {
    if b {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    anyhow::ensure!(lab::available("drbench"), "drbench needs root and iproute2");
    for p in ["/usr/sbin/nft", "/usr/sbin/haproxy", "/usr/sbin/keepalived"] {
        anyhow::ensure!(std::path::Path::new(p).exists(), "{p} is not installed");
    }
    anyhow::ensure!(a.viewers >= 2 && a.viewers <= 2000, "--viewers 2..=2000");
    anyhow::ensure!(a.duration >= 3 && a.duration <= 120, "--duration 3..=120");
    anyhow::ensure!(a.flood <= 20_000_000, "--flood at most 20 000 000");
    let has = |p: &str| a.only.iter().any(|o| o == p);
    let cpu = if has("cpu") {
        Some(cpu_part(&a)?)
    } else {
        None
    };
    let pps = if has("pps") {
        Some(pps_part(&a)?)
    } else {
        None
    };
    let fail = if has("failover") {
        Some((failover_part("DR", &a)?, failover_part("keepalived", &a)?))
    } else {
        None
    };

    println!("| measurement | lb DR | lb PROXY | HAProxy | reference |");
    println!("|---|---:|---:|---:|---:|");
    let mut checks = Vec::new();
    if let Some(runs) = &cpu {
        let base = &runs[0];
        let cols = &runs[1..];
        let row = |name: &str, f: &dyn Fn(&CpuRun) -> String, reference: String| {
            println!(
                "| {name} | {} | {} | {} | {reference} |",
                f(&cols[0]),
                f(&cols[1]),
                f(&cols[2])
            );
        };
        let v = a.viewers.div_ceil(2) * 2;
        row(
            &format!("{v} viewers ({} s): ok/failed, stalls", a.duration),
            &|r| format!("{}/{}, {}", r.ok, r.failed, r.stalls),
            format!("{}/{}, {} (no balancer)", base.ok, base.failed, base.stalls),
        );
        row(
            "viewers' Mbit/s",
            &|r| format!("{:.0}", r.mbit),
            format!("{:.0}", base.mbit),
        );
        let per_k = |cpu_s: f64, r: &CpuRun| cpu_s / r.secs / (r.ok.max(1) as f64) * 1000.0;
        let extra_softirq =
            |r: &CpuRun| (r.softirq_s - base.softirq_s * r.secs / base.secs).max(0.0);
        row(
            "balancer process CPU s (utime+stime)",
            &|r| format!("{:.2}", r.proc_s),
            "-".into(),
        );
        row(
            "its child processes' CPU s (lb DR: `nft`/`ip` runs of the control loop)",
            &|r| format!("{:.2}", r.children_s),
            "-".into(),
        );
        row(
            "softirq CPU s, whole kernel",
            &|r| format!("{:.2}", r.softirq_s),
            format!("{:.2} (baseline)", base.softirq_s),
        );
        row(
            "softirq above baseline s",
            &|r| format!("{:.2}", extra_softirq(r)),
            "-".into(),
        );
        let cost = |r: &CpuRun| per_k(r.proc_s + r.children_s + extra_softirq(r), r);
        row(
            "balancer cores per 1000 viewers (process + children + softirq above baseline)",
            &|r| format!("{:.3}", cost(r)),
            "-".into(),
        );
        let datapath = |r: &CpuRun| per_k(extra_softirq(r), r);
        row(
            "forwarding alone: softirq above baseline, cores per 1000 viewers",
            &|r| format!("{:.3}", datapath(r)),
            "-".into(),
        );
        row(
            "all busy CPU above baseline, cores per 1000 viewers",
            &|r| {
                format!(
                    "{:.3}",
                    per_k((r.busy_s - base.busy_s * r.secs / base.secs).max(0.0), r)
                )
            },
            format!(
                "{:.3} busy cores per 1000 (baseline)",
                per_k(base.busy_s, base)
            ),
        );
        let share = |r: &CpuRun| r.lb_bytes as f64 / r.viewer_bytes.max(1) as f64 * 100.0;
        row(
            "balancer eth0 bytes (rx+tx) / viewer bytes, %",
            &|r| format!("{:.2}", share(r)),
            "-".into(),
        );
        let dr = &cols[0];
        let ratio = cost(dr) / cost(&cols[1]).max(1e-9);
        checks.push(format!(
            "- bytes: the lb's eth0 carried {:.2} % of the viewers' bytes in DR (target < 5 %: {})",
            share(dr),
            pass(share(dr) < 5.0)
        ));
        checks.push(format!(
            "- CPU: DR {:.3} vs PROXY {:.3} cores per 1000 viewers = {ratio:.2} x (target <= 0.3: {}); HAProxy {:.3}",
            cost(dr),
            cost(&cols[1]),
            pass(ratio <= 0.3),
            cost(&cols[2])
        ));
        checks.push(format!(
            "- CPU, forwarding alone (softirq above baseline, no process time): DR {:.3} vs PROXY {:.3} = {:.2} x",
            datapath(dr),
            datapath(&cols[1]),
            datapath(dr) / datapath(&cols[1]).max(1e-9)
        ));
    }
    if let Some((dr, direct)) = &pps {
        let per_core = |extra: f64| {
            if extra > 0.0 {
                format!("{:.2}", dr.forwarded as f64 / extra / 1e6)
            } else {
                "n/a (no CPU above the direct run)".into()
            }
        };
        println!(
            "| DR flood: ACKs forwarded kpps (sent / arrived) | {:.0} ({}/{}) | - | - | {:.0} straight to an edge ({}/{}) |",
            dr.forwarded as f64 / dr.secs.max(1e-3) / 1e3,
            dr.sent,
            dr.forwarded,
            direct.forwarded as f64 / direct.secs.max(1e-3) / 1e3,
            direct.sent,
            direct.forwarded
        );
        println!(
            "| DR flood: busy CPU s (all cores) | {:.2} | - | - | {:.2} |",
            dr.busy_s, direct.busy_s
        );
        println!(
            "| DR flood: softirq CPU s (all cores) | {:.2} | - | - | {:.2} |",
            dr.softirq_s, direct.softirq_s
        );
        println!(
            "| DR: Mpps one core forwards (packets / busy CPU s above the direct flood) | {} | - | - | {:.2} Mpps per busy core, whole lab path (generator included) |",
            per_core(dr.busy_s - direct.busy_s),
            direct.forwarded as f64 / direct.busy_s.max(1e-3) / 1e6
        );
        println!(
            "| DR: Mpps one core forwards (packets / softirq CPU s above the direct flood) | {} | - | - | {:.2} Mpps per softirq core, direct path |",
            per_core(dr.softirq_s - direct.softirq_s),
            direct.forwarded as f64 / direct.softirq_s.max(1e-3) / 1e6
        );
    }
    if let Some((dr, ka)) = &fail {
        println!(
            "| failover ({} viewers, master's link cut): viewers dropped | {} | - | {} (keepalived + HAProxy) | |",
            dr.viewers, dr.dropped, ka.dropped
        );
        println!(
            "| failover: longest media gap of any viewer, ms | {:.0} | - | {:.0} | |",
            dr.max_gap_ms, ka.max_gap_ms
        );
        println!(
            "| failover: VRRP takeover (cut -> backup holds the VIP), ms | {:.0} | - | {:.0} | |",
            dr.takeover_ms, ka.takeover_ms
        );
        checks.push(format!(
            "- failover: {} of {} viewers dropped through lb DR (target 0: {}); keepalived + HAProxy dropped {} of {}",
            dr.dropped,
            dr.viewers,
            pass(dr.dropped == 0),
            ka.dropped,
            ka.viewers
        ));
        checks.push(format!(
            "- stall: longest gap {:.0} ms vs takeover {:.0} ms + 500 (target: {})",
            dr.max_gap_ms,
            dr.takeover_ms,
            pass(dr.max_gap_ms <= dr.takeover_ms + 500.0)
        ));
    }
    println!();
    println!("Method: balancer CPU = its process's utime+stime + its waited-for children's cutime+cstime (/proc/PID/stat) + the softirq time of all CPUs (/proc/stat) above a baseline run of the same viewers straight to the edges (scaled to the run's length); per 1000 viewers by proportion. The lab shares one kernel and 2 cores with the load generator and everything else running.");
    println!();
    for c in checks {
        println!("{c}");
    }
    Ok(())
}
