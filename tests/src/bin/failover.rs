//! `failover`: VRRP failover time of lb and of keepalived, side by side, in the lab.
//!
//! For each kind, advert interval and run: a master (priority 150) and a backup (100) of
//! that kind on a bridge with a client; both balancer hosts listen on 0.0.0.0:1935. The
//! master's link is cut at a varying phase of its advert cycle, and the time until a TCP
//! connect from the client to VIP:1935 succeeds (answered by the backup) is measured.
//! Prints a table (median and max per kind and interval) and the lb/keepalived ratio.
//! Needs root, iproute2 and keepalived. Bounded: every wait has a deadline.

use clap::Parser;
use edgefleet_tests::lab::{self, bin, wait, Host, Lab};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

#[derive(Parser)]
#[command(about = "VRRP failover time: lb vs keepalived in a network-namespace lab")]
struct Args {
    /// Runs per kind and interval.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Advert intervals in seconds.
    #[arg(long, num_args = 1.., default_values_t = vec![1.0, 0.1])]
    intervals: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Lb,
    Keepalived,
}

fn config(
    kind: Kind,
    lab: &Lab,
    name: &str,
    prio: u8,
    interval: f64,
) -> (std::path::PathBuf, Vec<String>) {
    match kind {
        Kind::Lb => {
            let c = format!(
                "admin_listen = \"127.0.0.1:9180\"\n[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = {interval}\nvirtual_ipaddress = [\"{VIP}/24\"]\n",
                if prio > 100 { "MASTER" } else { "BACKUP" }
            );
            let p = lab.file(&format!("{name}.toml"), &c);
            (
                bin("lb"),
                vec!["--config".into(), p.to_string_lossy().into_owned()],
            )
        }
        Kind::Keepalived => {
            let c = format!(
                "global_defs {{\n    router_id {name}\n    vrrp_version 3\n}}\nvrrp_instance VI_1 {{\n    state {}\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int {interval}\n    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n",
                if prio > 100 { "MASTER" } else { "BACKUP" }
            );
            let p = lab.file(&format!("{name}.conf"), &c);
            let pid = |s: &str| {
                lab.dir
                    .join(format!("{name}-{s}.pid"))
                    .to_string_lossy()
                    .into_owned()
            };
            (
                std::path::PathBuf::from("/usr/sbin/keepalived"),
                vec![
                    "-n".into(),
                    "-l".into(),
                    "-P".into(),
                    "-f".into(),
                    p.to_string_lossy().into_owned(),
                    "-p".into(),
                    pid("main"),
                    "-r".into(),
                    pid("vrrp"),
                ],
            )
        }
    }
}

fn one_run(kind: Kind, interval: f64, run: u32) -> Result<Duration, String> {
    let mut lab = Lab::create();
    let master: Host = lab.host("master", 2);
    let backup: Host = lab.host("backup", 3);
    let client = lab.host("client", 50);
    let cb = bin("connbench");
    for h in [&master, &backup] {
        lab.spawn(
            h,
            &format!("listen-{}", h.name),
            &cb,
            &["serve", "0.0.0.0:1935"],
            &[],
        );
        let (prog, args) = config(
            kind,
            &lab,
            &h.name,
            if h.name == "master" { 150 } else { 100 },
            interval,
        );
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        lab.spawn(h, &h.name, &prog, &refs, &[("RUST_LOG", "warn")]);
    }
    let elected = wait(Duration::from_secs(15), || {
        lab.has_addr(&master, VIP) && !lab.has_addr(&backup, VIP)
    });
    if elected.is_none() {
        return Err(format!(
            "{kind:?}: no stable master\n{}\n{}",
            lab.log("master"),
            lab.log("backup")
        ));
    }
    // Let the backup learn the master, then cut at a varying phase of the advert cycle.
    std::thread::sleep(Duration::from_secs_f64(
        interval * 4.0 + 0.5 + interval * (run as f64 * 0.37).fract(),
    ));
    let vip = format!("{VIP}:1935");
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    lab.cut(&master);
    let out = lab.exec(
        &client,
        &[
            cb.to_str().unwrap(),
            "probe",
            &vip,
            "--timeout-ms",
            "20",
            "--deadline",
            "20",
        ],
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("probe output: {e}"))?;
    let ms = v["success_unix_ms"].as_u64().ok_or("probe gave no time")? as u128;
    if !lab.has_addr(&backup, VIP) {
        return Err("the connect succeeded but the backup does not hold the VIP".into());
    }
    Ok(Duration::from_millis(
        (ms.saturating_sub(t0.as_millis())) as u64,
    ))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        lab::available("failover benchmark"),
        "the failover benchmark needs root and iproute2"
    );
    anyhow::ensure!(
        std::path::Path::new("/usr/sbin/keepalived").exists(),
        "keepalived is not installed (apt-get install keepalived)"
    );
    let mut rows = Vec::new();
    for &interval in &args.intervals {
        let mut medians = Vec::new();
        for kind in [Kind::Lb, Kind::Keepalived] {
            let mut times = Vec::new();
            for run in 0..args.runs.clamp(1, 50) {
                let t = one_run(kind, interval, run).map_err(anyhow::Error::msg)?;
                eprintln!(
                    "{kind:?} advert_int {interval}: run {} failover {} ms",
                    run + 1,
                    t.as_millis()
                );
                times.push(t);
            }
            times.sort();
            let median = times[times.len() / 2];
            let max = *times.last().unwrap();
            medians.push(median);
            rows.push(format!(
                "| {} | {interval} | {} | {} | {} |",
                if kind == Kind::Lb {
                    "EdgeFleet lb"
                } else {
                    "keepalived"
                },
                times.len(),
                median.as_millis(),
                max.as_millis()
            ));
        }
        let ratio = medians[0].as_secs_f64() / medians[1].as_secs_f64();
        rows.push(format!(
            "| lb / keepalived | {interval} | | {ratio:.2} | {} |",
            if ratio <= 1.1 {
                "PASS (<= 1.1)"
            } else {
                "FAIL (> 1.1)"
            }
        ));
    }
    println!("| balancer | advert_int s | runs | median ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
