//! VRRP in the network-namespace lab: two balancers (and keepalived) on a bridge, edges, an
//! origin and a client host, all on 198.18.0.0/24. Needs root; skipped with a printed reason
//! otherwise (a failure under EDGEFLEET_REQUIRE_ALL=1).

use edgefleet_tests::lab::{self, bin, lab_ip, Host, Lab};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

struct Fleet {
    lab: Lab,
    lb1: Host,
    lb2: Host,
    client: Host,
    edge: Host,
}

/// origin + publisher on .10, an edge on .11, balancers on .2/.3, client on .50.
fn fleet(test: &str) -> Option<Fleet> {
    if !lab::available(test) {
        return None;
    }
    let mut lab = Lab::new();
    let origin = lab.host("origin", 10);
    let edge = lab.host("edge", 11);
    let lb1 = lab.host("lb1", 2);
    let lb2 = lab.host("lb2", 3);
    let client = lab.host("client", 50);
    // The publisher runs on the origin host and publishes over loopback (publish.allow's default).
    let o = lab.file(
        "origin.toml",
        "listen = \"0.0.0.0:1935\"\nmode = \"local\"\n",
    );
    let e = lab.file(
        "edge.toml",
        &format!(
            "listen = \"{}:1935\"\nmode = \"remote\"\norigin = [\"{}:1935\"]\n",
            edge.ip, origin.ip
        ),
    );
    let edge_bin = bin("edge");
    lab.spawn(
        &origin,
        "origin",
        &edge_bin,
        &["--config", o.to_str().unwrap()],
        &[],
    );
    lab.spawn(
        &edge,
        "edge",
        &edge_bin,
        &["--config", e.to_str().unwrap()],
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let clip = edgefleet_tests::clip_path();
    let url = "rtmp://127.0.0.1:1935/live/cam".to_string();
    lab.spawn(
        &origin,
        "publisher",
        &edge_bin,
        &["publish", clip.to_str().unwrap(), &url, "--loop"],
        &[],
    );
    Some(Fleet {
        lab,
        lb1,
        lb2,
        client,
        edge,
    })
}

fn lb_config(host: &Host, state: &str, prio: u8, extra: &str, backend: Ipv4Addr) -> String {
    format!(
        r#"admin_listen = "127.0.0.1:9180"
[[virtual_server]]
address = "{VIP}:1935"
lb_algo = "rr"
delay_loop = 0.5
[[virtual_server.real_server]]
address = "{backend}:1935"
[virtual_server.real_server.tcp_check]
connect_timeout = 0.5
retry = 0
delay_before_retry = 0.2

[[vrrp_instance]]
name = "VI_1"
state = "{state}"
interface = "eth0"
virtual_router_id = 51
priority = {prio}
advert_int = 1
virtual_ipaddress = ["{VIP}/24"]
{extra}
"#,
    )
    .replace("HOST", &host.ip.to_string())
}

fn start_lb(f: &Fleet, host: &Host, label: &str, cfg: &str) {
    let path = f.lab.file(&format!("{label}.toml"), cfg);
    f.lab.spawn(
        host,
        label,
        &bin("lb"),
        &["--config", path.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
}

/// Plays the stream through the VIP from the client host.
fn client_plays(f: &Fleet) -> Result<(), String> {
    let url = format!("rtmp://{VIP}:1935/live/cam");
    let out = f.lab.exec(
        &f.client,
        &[
            bin("edge").to_str().unwrap(),
            "play",
            &url,
            "--clients",
            "1",
            "--duration",
            "1.5",
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("clients ok 1/1") {
        Ok(())
    } else {
        Err(text.into_owned())
    }
}

fn status(f: &Fleet, host: &Host) -> serde_json::Value {
    let out = f.lab.exec(
        host,
        &[
            bin("lb").to_str().unwrap(),
            "status",
            "--json",
            "--admin",
            "127.0.0.1:9180",
        ],
    );
    out.ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn two_lbs_elect_fail_over_preempt_and_hand_over_on_stop() {
    let Some(f) = fleet("two_lbs_elect_fail_over_preempt_and_hand_over_on_stop") else {
        return;
    };
    start_lb(
        &f,
        &f.lb1,
        "lb1",
        &lb_config(&f.lb1, "BACKUP", 150, "", f.edge.ip),
    );
    start_lb(
        &f,
        &f.lb2,
        "lb2",
        &lb_config(&f.lb2, "BACKUP", 100, "", f.edge.ip),
    );
    // Election: the higher priority holds the VIP, the other does not.
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some(),
        "lb1 never became master:\n{}",
        f.lab.log("lb1")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!f.lab.has_addr(&f.lb2, VIP), "two masters");
    assert_eq!(status(&f, &f.lb1)["vrrp_instances"][0]["state"], "MASTER");
    assert_eq!(status(&f, &f.lb2)["vrrp_instances"][0]["state"], "BACKUP");
    assert_eq!(
        status(&f, &f.lb2)["vrrp_instances"][0]["master"],
        f.lb1.ip.to_string()
    );
    client_plays(&f).expect("play through the master");

    // Master's link cut: the backup owns the VIP and a new play succeeds through it.
    f.lab.cut(&f.lb1);
    let took = wait(Duration::from_secs(6), || f.lab.has_addr(&f.lb2, VIP))
        .expect("backup never took over");
    assert!(took < Duration::from_millis(3700), "takeover took {took:?}");
    client_plays(&f).expect("play through the new master");

    // Master back: it preempts.
    f.lab.restore(&f.lb1);
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)
            && !f.lab.has_addr(&f.lb2, VIP))
        .is_some(),
        "no preemption"
    );
    client_plays(&f).expect("play after preemption");

    // Master stopped cleanly: priority 0, the backup takes over within skew (~0.61 s) + margin.
    f.lab.signal("lb1", nix::sys::signal::Signal::SIGTERM);
    let took = wait(Duration::from_secs(5), || f.lab.has_addr(&f.lb2, VIP))
        .expect("no takeover after a clean stop");
    assert!(
        took < Duration::from_millis(1300),
        "takeover after clean stop took {took:?}"
    );
    assert!(f.lab.wait_exit("lb1", Duration::from_secs(3)));
    assert!(
        !f.lab.has_addr(&f.lb1, VIP),
        "the stopped master kept the VIP"
    );
}

#[test]
fn nopreempt_keeps_the_new_master() {
    let Some(f) = fleet("nopreempt_keeps_the_new_master") else {
        return;
    };
    start_lb(
        &f,
        &f.lb1,
        "lb1",
        &lb_config(&f.lb1, "BACKUP", 150, "nopreempt = true", f.edge.ip),
    );
    start_lb(
        &f,
        &f.lb2,
        "lb2",
        &lb_config(&f.lb2, "BACKUP", 100, "", f.edge.ip),
    );
    assert!(wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some());
    f.lab.cut(&f.lb1);
    assert!(wait(Duration::from_secs(6), || f.lab.has_addr(&f.lb2, VIP)).is_some());
    f.lab.restore(&f.lb1);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        f.lab.has_addr(&f.lb2, VIP),
        "nopreempt: lb2 should have kept the VIP"
    );
    assert!(!f.lab.has_addr(&f.lb1, VIP));
}

#[test]
fn backup_with_healthy_edges_takes_the_vip_when_the_masters_edges_die() {
    let Some(mut f) = fleet("backup_with_healthy_edges_takes_the_vip_when_the_masters_edges_die")
    else {
        return;
    };
    // lb1's only real server is a host with nothing listening once we kill it.
    let dead = f.lab.host("edge2", 12);
    let e2 = f.lab.file(
        "edge2.toml",
        &format!(
            "listen = \"{}:1935\"\nmode = \"remote\"\norigin = [\"{}:1935\"]\n",
            dead.ip,
            lab_ip(10)
        ),
    );
    f.lab.spawn(
        &dead,
        "edge2",
        &bin("edge"),
        &["--config", e2.to_str().unwrap()],
        &[],
    );
    start_lb(
        &f,
        &f.lb1,
        "lb1",
        &lb_config(&f.lb1, "BACKUP", 150, "", dead.ip),
    );
    start_lb(
        &f,
        &f.lb2,
        "lb2",
        &lb_config(&f.lb2, "BACKUP", 100, "", f.edge.ip),
    );
    assert!(wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some());
    f.lab.kill("edge2");
    let took = wait(Duration::from_secs(5), || f.lab.has_addr(&f.lb2, VIP))
        .expect("the backup with healthy edges never took the VIP");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(status(&f, &f.lb1)["vrrp_instances"][0]["state"], "FAULT");
    client_plays(&f).expect("play through the backup's healthy edge");
    let _ = &mut f;
}
