//! VRRP in the network-namespace lab: two balancers (and keepalived) on a bridge, edges, an
//! origin and a client host, all on 198.18.0.0/24; the IPv6 tests (VRRPv3 over IPv6, lb with
//! lb and lb with keepalived) on 2001:2::/64 and the links' own link-local addresses. Needs
//! root; skipped with a printed reason otherwise (a failure under EDGEFLEET_REQUIRE_ALL=1).

use edgefleet_tests::lab::{self, bin, lab_ip, wait, Host, Lab};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);

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
    let mut lab = Lab::create();
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

fn lb_config(state: &str, prio: u8, extra: &str, backend: Ipv4Addr) -> String {
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
}

fn start_lb(f: &Fleet, host: &Host, label: &str, cfg: &str) {
    spawn_lb(&f.lab, host, label, cfg);
}

/// Runs `lb` with `cfg` (written to `<label>.toml`) on `host` as the program `label`.
fn spawn_lb(lab: &Lab, host: &Host, label: &str, cfg: &str) {
    let path = lab.file(&format!("{label}.toml"), cfg);
    lab.spawn(
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

/// `lb status --json` of the lb running on `host`.
fn lb_status(lab: &Lab, host: &Host) -> serde_json::Value {
    let lb = bin("lb");
    let out = lab.exec(
        host,
        &[
            lb.to_str().unwrap(),
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

fn status(f: &Fleet, host: &Host) -> serde_json::Value {
    lb_status(&f.lab, host)
}

#[test]
fn two_lbs_elect_fail_over_preempt_and_hand_over_on_stop() {
    let Some(f) = fleet("two_lbs_elect_fail_over_preempt_and_hand_over_on_stop") else {
        return;
    };
    start_lb(&f, &f.lb1, "lb1", &lb_config("BACKUP", 150, "", f.edge.ip));
    start_lb(&f, &f.lb2, "lb2", &lb_config("BACKUP", 100, "", f.edge.ip));
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
    assert!(took < Duration::from_millis(4200), "takeover took {took:?}");
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
        &lb_config("BACKUP", 150, "nopreempt = true", f.edge.ip),
    );
    start_lb(&f, &f.lb2, "lb2", &lb_config("BACKUP", 100, "", f.edge.ip));
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
    start_lb(&f, &f.lb1, "lb1", &lb_config("BACKUP", 150, "", dead.ip));
    start_lb(&f, &f.lb2, "lb2", &lb_config("BACKUP", 100, "", f.edge.ip));
    assert!(wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some());
    f.lab.kill("edge2");
    let took = wait(Duration::from_secs(5), || f.lab.has_addr(&f.lb2, VIP))
        .expect("the backup with healthy edges never took the VIP");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(status(&f, &f.lb1)["vrrp_instances"][0]["state"], "FAULT");
    client_plays(&f).expect("play through the backup's healthy edge");
    let _ = &mut f;
}

fn vrrp_state(lab: &Lab, host: &Host, instance: usize) -> serde_json::Value {
    lb_status(lab, host)["vrrp_instances"][instance].clone()
}

#[test]
fn malformed_adverts_are_ignored_and_counted() {
    let test = "malformed_adverts_are_ignored_and_counted";
    if !lab::available(test) {
        return;
    }
    let mut lab = Lab::create();
    let lb1 = lab.host("lb1", 2);
    let evil = lab.host("evil", 66);
    let cfg = format!(
        r#"admin_listen = "127.0.0.1:9180"
[[vrrp_instance]]
name = "V3"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 0.5
virtual_ipaddress = ["{VIP}/24"]
[[vrrp_instance]]
name = "V2"
state = "MASTER"
interface = "eth0"
virtual_router_id = 52
priority = 150
version = 2
advert_int = 1
virtual_ipaddress = ["198.18.0.101/24"]
[vrrp_instance.authentication]
auth_type = "PASS"
auth_pass = "s3cret"
"#
    );
    let path = lab.file("lb1.toml", &cfg);
    lab.spawn(
        &lb1,
        "lb1",
        &bin("lb"),
        &["--config", path.to_str().unwrap()],
        &[],
    );
    assert!(
        wait(Duration::from_secs(5), || lab.has_addr(&lb1, VIP)
            && lab.has_addr(&lb1, lab_ip(101)))
        .is_some(),
        "{}",
        lab.log("lb1")
    );
    let inject = |args: &[&str]| {
        let mut full = vec![
            bin("vrrpinject").to_str().unwrap().to_string(),
            "--src".into(),
            evil.ip.to_string(),
            "--count".into(),
            "20".into(),
            "--every-ms".into(),
            "50".into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        lab.exec(&evil, &refs).expect("inject");
    };
    // Each would win the election if it were accepted (priority 254 > 150).
    inject(&["--ttl", "64"]);
    inject(&["--bad-checksum"]);
    inject(&["--vrid", "77"]);
    inject(&[
        "--version",
        "2",
        "--vrid",
        "52",
        "--pass",
        "wrong",
        "--vip",
        "198.18.0.101",
    ]);
    inject(&["--version", "2", "--vrid", "52", "--vip", "198.18.0.101"]); // no auth at all
    std::thread::sleep(Duration::from_millis(300));
    let v3 = vrrp_state(&lab, &lb1, 0);
    let v2 = vrrp_state(&lab, &lb1, 1);
    assert_eq!(v3["state"], "MASTER", "{v3}");
    assert_eq!(v2["state"], "MASTER", "{v2}");
    assert!(v3["drops"]["ttl"].as_u64().unwrap() >= 20, "{v3}");
    assert!(v3["drops"]["checksum"].as_u64().unwrap() >= 20, "{v3}");
    assert!(v3["drops"]["vrid"].as_u64().unwrap() >= 20, "{v3}");
    assert!(v2["drops"]["auth"].as_u64().unwrap() >= 40, "{v2}");
    assert!(lab.has_addr(&lb1, VIP) && lab.has_addr(&lb1, lab_ip(101)));
    // Control: the same advert done right does make the instance step down.
    inject(&[
        "--version",
        "2",
        "--vrid",
        "52",
        "--pass",
        "s3cret",
        "--vip",
        "198.18.0.101",
    ]);
    assert_eq!(
        vrrp_state(&lab, &lb1, 1)["state"],
        "BACKUP",
        "a valid higher-priority advert was not honoured"
    );
    let metrics = lab.exec(&lb1, &["sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/9180; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"]);
    if let Ok(m) = metrics {
        let text = String::from_utf8_lossy(&m.stdout);
        assert!(
            text.contains("edgefleet_vrrp_adverts_dropped_total{instance=\"V3\",reason=\"ttl\"}"),
            "{text}"
        );
    }
}

fn keepalived_conf(name: &str, state: &str, prio: u8, version: u8) -> String {
    let auth = if version == 2 {
        "    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
    } else {
        ""
    };
    format!(
        "global_defs {{\n    router_id {name}\n    vrrp_version {version}\n    script_user root\n}}\nvrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int 1\n{auth}    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n"
    )
}

fn lb_vrrp_only(prio: u8, version: u8) -> String {
    let auth = if version == 2 {
        "[vrrp_instance.authentication]\nauth_type = \"PASS\"\nauth_pass = \"1111\"\n"
    } else {
        ""
    };
    format!(
        "admin_listen = \"127.0.0.1:9180\"\n[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"BACKUP\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 1\nversion = {version}\nvirtual_ipaddress = [\"{VIP}/24\"]\n{auth}"
    )
}

/// Samples which hosts hold the VIP every 20 ms in the background; returns the longest time
/// both held it at once when stopped.
struct Overlap {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl Overlap {
    fn start(a: &Host, b: &Host) -> Overlap {
        Overlap::start_for(a, b, VIP.into())
    }

    fn start_for(a: &Host, b: &Host, vip: IpAddr) -> Overlap {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (na, nb) = (a.ns.clone(), b.ns.clone());
        let s = stop.clone();
        let family = if vip.is_ipv6() { "-6" } else { "-4" };
        let thread = std::thread::spawn(move || {
            let has = |ns: &str| {
                std::process::Command::new("ip")
                    .args(["-n", ns, family, "-o", "addr", "show", "dev", "eth0"])
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .any(|w| w.starts_with(&format!("{vip}/")))
                    })
                    .unwrap_or(false)
            };
            let mut longest = Duration::ZERO;
            let mut since: Option<Instant> = None;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if has(&na) && has(&nb) {
                    let t = *since.get_or_insert_with(Instant::now);
                    longest = longest.max(t.elapsed());
                } else {
                    since = None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            longest
        });
        Overlap {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn mixed_pair(test: &str, version: u8) {
    if !lab::available(test) || !edgefleet_tests::have("keepalived", test) {
        return;
    }
    for lb_is_master in [true, false] {
        let mut lab = Lab::create();
        let ours = lab.host("lb", 2);
        let theirs = lab.host("ka", 3);
        let (lb_prio, ka_prio) = if lb_is_master { (150, 100) } else { (100, 150) };
        let lbc = lab.file("lb.toml", &lb_vrrp_only(lb_prio, version));
        let kac = lab.file(
            "keepalived.conf",
            &keepalived_conf("ka", "BACKUP", ka_prio, version),
        );
        let d = lab.dir.clone();
        let pid = |n: &str| d.join(n).to_string_lossy().into_owned();
        lab.spawn(
            &ours,
            "lb",
            &bin("lb"),
            &["--config", lbc.to_str().unwrap()],
            &[],
        );
        lab.spawn(
            &theirs,
            "keepalived",
            std::path::Path::new("/usr/sbin/keepalived"),
            &[
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
                kac.to_str().unwrap(),
                "-p",
                &pid("ka.pid"),
                "-r",
                &pid("ka-vrrp.pid"),
            ],
            &[],
        );
        let (master, backup) = if lb_is_master {
            (&ours, &theirs)
        } else {
            (&theirs, &ours)
        };
        let overlap = Overlap::start(&ours, &theirs);
        let ctx = || {
            format!(
                "v{version}, lb master: {lb_is_master}\nlb log:\n{}\nkeepalived log:\n{}",
                lab.log("lb"),
                lab.log("keepalived")
            )
        };
        assert!(
            wait(Duration::from_secs(10), || lab.has_addr(master, VIP)
                && !lab.has_addr(backup, VIP))
            .is_some(),
            "election: {}",
            ctx()
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            lab.has_addr(master, VIP) && !lab.has_addr(backup, VIP),
            "unstable election: {}",
            ctx()
        );
        lab.cut(master);
        assert!(
            wait(Duration::from_secs(6), || lab.has_addr(backup, VIP)).is_some(),
            "failover: {}",
            ctx()
        );
        lab.restore(master);
        assert!(
            wait(Duration::from_secs(10), || lab.has_addr(master, VIP)
                && !lab.has_addr(backup, VIP))
            .is_some(),
            "preempt back: {}",
            ctx()
        );
        std::thread::sleep(Duration::from_secs(2));
        let longest = overlap.finish();
        assert!(
            longest <= Duration::from_secs(1),
            "two masters for {longest:?}: {}",
            ctx()
        );
    }
}

#[test]
fn mixed_pair_with_keepalived_v3() {
    mixed_pair("mixed_pair_with_keepalived_v3", 3);
}

#[test]
fn mixed_pair_with_keepalived_v2_pass() {
    mixed_pair("mixed_pair_with_keepalived_v2_pass", 2);
}

#[test]
fn unicast_peers_elect_and_fail_over() {
    let Some(f) = fleet("unicast_peers_elect_and_fail_over") else {
        return;
    };
    let uni = |peer: &Host| format!("unicast_peer = [\"{}\"]", peer.ip);
    start_lb(
        &f,
        &f.lb1,
        "lb1",
        &lb_config("BACKUP", 150, &uni(&f.lb2), f.edge.ip),
    );
    start_lb(
        &f,
        &f.lb2,
        "lb2",
        &lb_config("BACKUP", 100, &uni(&f.lb1), f.edge.ip),
    );
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some(),
        "{}",
        f.lab.log("lb1")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !f.lab.has_addr(&f.lb2, VIP),
        "two masters with unicast adverts"
    );
    assert_eq!(
        status(&f, &f.lb2)["vrrp_instances"][0]["master"],
        f.lb1.ip.to_string()
    );
    f.lab.cut(&f.lb1);
    assert!(wait(Duration::from_secs(6), || f.lab.has_addr(&f.lb2, VIP)).is_some());
    client_plays(&f).expect("play through the unicast backup");
}

/// A `[[vrrp_script]]` that succeeds while `flag` exists (a real process, run every 0.2 s).
fn flag_script(name: &str, flag: &std::path::Path, weight: i32) -> String {
    format!(
        "[[vrrp_script]]\nname = \"{name}\"\nscript = \"/bin/test -e {}\"\ninterval = 0.2\ntimeout = 1\nweight = {weight}\nrise = 2\nfall = 2\n",
        flag.display()
    )
}

#[test]
fn a_failing_track_script_hands_the_vip_over_and_it_comes_back() {
    let Some(f) = fleet("a_failing_track_script_hands_the_vip_over_and_it_comes_back") else {
        return;
    };
    let flag = f.lab.file("edge.ok", "");
    // 150 - 80 = 70 < 100 while the script fails.
    let extra = format!(
        "track_script = [\"chk_edge\"]\n\n{}",
        flag_script("chk_edge", &flag, -80)
    );
    start_lb(
        &f,
        &f.lb1,
        "lb1",
        &lb_config("BACKUP", 150, &extra, f.edge.ip),
    );
    start_lb(&f, &f.lb2, "lb2", &lb_config("BACKUP", 100, "", f.edge.ip));
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)).is_some(),
        "lb1 never became master:\n{}",
        f.lab.log("lb1")
    );
    let v = vrrp_state(&f.lab, &f.lb1, 0);
    assert_eq!(v["track_script"][0]["state"], "OK", "{v}");
    std::fs::remove_file(&flag).unwrap();
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb2, VIP)
            && !f.lab.has_addr(&f.lb1, VIP))
        .is_some(),
        "the backup never took over from a master whose script fails:\n{}",
        f.lab.log("lb1")
    );
    let v = vrrp_state(&f.lab, &f.lb1, 0);
    assert_eq!(v["track_script"][0]["state"], "FAILING", "{v}");
    assert_eq!(v["priority"], 70, "{v}");
    assert_eq!(v["state"], "BACKUP", "{v}");
    client_plays(&f).expect("play through the backup");
    // The file is back: rise = 2 runs later lb1 is 150 again and preempts.
    std::fs::write(&flag, "").unwrap();
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb1, VIP)
            && !f.lab.has_addr(&f.lb2, VIP))
        .is_some(),
        "lb1 never preempted back:\n{}",
        f.lab.log("lb1")
    );
    assert_eq!(vrrp_state(&f.lab, &f.lb1, 0)["priority"], 150);
    assert!(f.lab.log("lb1").contains("vrrp_script failed"));
}

/// Two instances in one sync group on each balancer: VI_1 (.100) tracks a script on lb1,
/// VI_2 (.101) tracks nothing; when the script fails both addresses move to lb2, and both
/// come back when it succeeds again.
#[test]
fn a_sync_group_fails_over_together() {
    let Some(f) = fleet("a_sync_group_fails_over_together") else {
        return;
    };
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
    let flag = f.lab.file("group.ok", "");
    let cfg = |prio: u8, track: bool| {
        let mut c = String::from("admin_listen = \"127.0.0.1:9180\"\n");
        for (name, vrid, vip) in [("VI_1", 51, VIP), ("VI_2", 52, VIP2)] {
            c += &format!(
                "\n[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {prio}\nadvert_int = 1\nvirtual_ipaddress = [\"{vip}/24\"]\n"
            );
            if track && name == "VI_1" {
                // weight -80 counts as 0 in a sync group (keepalived): VI_1 goes FAULT.
                c += "track_script = [\"chk\"]\n";
            }
        }
        if track {
            c += &format!("\n{}", flag_script("chk", &flag, -80));
        }
        c += "\n[[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\", \"VI_2\"]\n";
        c
    };
    start_lb(&f, &f.lb1, "lb1", &cfg(150, true));
    start_lb(&f, &f.lb2, "lb2", &cfg(100, false));
    let both = |h: &Host| f.lab.has_addr(h, VIP) && f.lab.has_addr(h, VIP2);
    let none = |h: &Host| !f.lab.has_addr(h, VIP) && !f.lab.has_addr(h, VIP2);
    assert!(
        wait(Duration::from_secs(8), || both(&f.lb1) && none(&f.lb2)).is_some(),
        "lb1 never held both:\n{}",
        f.lab.log("lb1")
    );
    std::fs::remove_file(&flag).unwrap();
    assert!(
        wait(Duration::from_secs(8), || both(&f.lb2) && none(&f.lb1)).is_some(),
        "the group did not fail over together:\n{}\n{}",
        f.lab.log("lb1"),
        f.lab.log("lb2")
    );
    let s = status(&f, &f.lb1);
    assert_eq!(s["vrrp_instances"][0]["state"], "FAULT", "{s}");
    assert_eq!(s["vrrp_instances"][1]["state"], "FAULT", "{s}");
    assert!(
        wait(Duration::from_secs(3), || status(&f, &f.lb1)
            ["vrrp_instances"][1]["sync_group"]["state"]
            == "FAULT")
        .is_some(),
        "{}",
        status(&f, &f.lb1)
    );
    std::fs::write(&flag, "").unwrap();
    assert!(
        wait(Duration::from_secs(10), || both(&f.lb1) && none(&f.lb2)).is_some(),
        "the group did not come back together:\n{}",
        f.lab.log("lb1")
    );
    // The group's state follows its members' reports (each tracking tick).
    assert!(
        wait(Duration::from_secs(3), || status(&f, &f.lb1)
            ["vrrp_instances"][0]["sync_group"]["state"]
            == "MASTER")
        .is_some(),
        "{}",
        status(&f, &f.lb1)
    );
}

// ---- VRRPv3 over IPv6 ----

fn lb_vrrp6(prio: u8, extra: &str) -> String {
    format!(
        "admin_listen = \"127.0.0.1:9180\"\n[[vrrp_instance]]\nname = \"VI_6\"\nstate = \"BACKUP\"\ninterface = \"eth0\"\nvirtual_router_id = 61\npriority = {prio}\nadvert_int = 1\nvirtual_ipaddress = [\"{VIP6}/64\"]\n{extra}"
    )
}

fn keepalived_conf6(prio: u8) -> String {
    format!(
        "global_defs {{\n    router_id ka6\n    script_user root\n}}\nvrrp_instance VI_6 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 61\n    priority {prio}\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP6}/64\n    }}\n}}\n"
    )
}

fn ipv6_lab(test: &str) -> bool {
    lab::available(test) && lab::ipv6_available(test)
}

/// Two hosts on the lab's IPv6 subnet (2001:2::2 and ::3).
fn v6_pair(a: &str, b: &str) -> (Lab, Host, Host) {
    let mut lab = Lab::create();
    let ha = lab.host(a, 2);
    let hb = lab.host(b, 3);
    lab.add_ipv6(&ha, 2);
    lab.add_ipv6(&hb, 3);
    (lab, ha, hb)
}

fn start_keepalived(lab: &Lab, host: &Host, conf: &std::path::Path) {
    let d = lab.dir.clone();
    let pid = |n: &str| d.join(n).to_string_lossy().into_owned();
    lab.spawn(
        host,
        "keepalived",
        std::path::Path::new("/usr/sbin/keepalived"),
        &[
            "-n",
            "-l",
            "-D",
            "-P",
            "-f",
            conf.to_str().unwrap(),
            "-p",
            &pid("ka.pid"),
            "-r",
            &pid("ka-vrrp.pid"),
        ],
        &[],
    );
}

/// Election, link cut, preemption back and a clean stop of the master, with one VIP
/// 2001:2::100/64: `stop_master` stops whichever program runs on the master.
fn v6_failover_cycle(
    lab: &Lab,
    master: &Host,
    backup: &Host,
    stop_master: &dyn Fn(),
    ctx: &dyn Fn() -> String,
) {
    let held = |h: &Host| lab.has_addr6(h, VIP6);
    let took = wait(Duration::from_secs(10), || held(master) && !held(backup));
    assert!(took.is_some(), "election: {}", ctx());
    println!("election: {:?}", took.unwrap());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        held(master) && !held(backup),
        "unstable election: {}",
        ctx()
    );
    lab.cut(master);
    let took = wait(Duration::from_secs(6), || held(backup));
    assert!(took.is_some(), "failover on link cut: {}", ctx());
    println!("failover after link cut: {:?}", took.unwrap());
    lab.restore(master);
    let took = wait(Duration::from_secs(10), || held(master) && !held(backup));
    assert!(took.is_some(), "preempt back: {}", ctx());
    println!("preempted back: {:?}", took.unwrap());
    std::thread::sleep(Duration::from_secs(2));
    stop_master();
    let took = wait(Duration::from_secs(5), || held(backup));
    assert!(
        took.is_some(),
        "takeover after the master stopped: {}",
        ctx()
    );
    println!("takeover after the master stopped: {:?}", took.unwrap());
    assert!(
        wait(Duration::from_secs(3), || !held(master)).is_some(),
        "the stopped master kept the VIP: {}",
        ctx()
    );
}

#[test]
fn two_lbs_over_ipv6() {
    let test = "two_lbs_over_ipv6";
    if !ipv6_lab(test) {
        return;
    }
    let (lab, lb1, lb2) = v6_pair("lb1", "lb2");
    // The new master's unsolicited Neighbor Advertisement, seen from the other host.
    let tcpdump = edgefleet_tests::have("tcpdump", test);
    if tcpdump {
        lab.spawn(
            &lb2,
            "tcpdump",
            std::path::Path::new("tcpdump"),
            &[
                "-l",
                "-nn",
                "-vv",
                "-i",
                "eth0",
                "-c",
                "1",
                "icmp6 and ip6[40] = 136",
            ],
            &[],
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    for (h, label, prio) in [(&lb1, "lb1", 150), (&lb2, "lb2", 100)] {
        spawn_lb(&lab, h, label, &lb_vrrp6(prio, ""));
    }
    let ctx = || format!("lb1 log:\n{}\nlb2 log:\n{}", lab.log("lb1"), lab.log("lb2"));
    let overlap = Overlap::start_for(&lb1, &lb2, VIP6.into());
    let held = |h: &Host| lab.has_addr6(h, VIP6);
    assert!(
        wait(Duration::from_secs(10), || held(&lb1) && !held(&lb2)).is_some(),
        "election: {}",
        ctx()
    );
    // lb status shows the v6 instance as a v4 one: state, the master (lb1's link-local
    // address: adverts come from it), the VIP, and no advert dropped.
    assert!(
        wait(Duration::from_secs(3), || {
            lb_status(&lab, &lb2)["vrrp_instances"][0]["state"] == "BACKUP"
        })
        .is_some(),
        "{}",
        ctx()
    );
    let st1 = lb_status(&lab, &lb1);
    let st2 = lb_status(&lab, &lb2);
    println!("lb2 status: {}", st2["vrrp_instances"][0]);
    assert_eq!(st1["vrrp_instances"][0]["state"], "MASTER", "{st1}");
    let ll1 = lab.link_local(&lb1).expect("lb1 link-local");
    assert_eq!(st2["vrrp_instances"][0]["master"], ll1.to_string(), "{st2}");
    assert!(
        st2["vrrp_instances"][0]
            .to_string()
            .contains(&format!("{VIP6}/64")),
        "{st2}"
    );
    if tcpdump {
        let na = format!("neighbor advertisement, length 32, tgt is {VIP6}, Flags [override]");
        assert!(
            wait(Duration::from_secs(8), || lab.log("tcpdump").contains(&na)).is_some(),
            "no unsolicited NA for the VIP:\n{}",
            lab.log("tcpdump")
        );
        let log = lab.log("tcpdump");
        let line = log.lines().find(|l| l.contains("hlim")).unwrap_or("");
        println!("NA seen: {line}");
        assert!(
            line.contains("hlim 255") && log.contains("[icmp6 sum ok]"),
            "{log}"
        );
    }
    let v2 = &st2["vrrp_instances"][0];
    assert!(v2["adverts_received"].as_u64().unwrap_or(0) > 0, "{st2}");
    for reason in ["checksum", "ttl", "length", "version"] {
        assert_eq!(v2["drops"][reason], 0, "{reason}: {st2}");
    }
    v6_failover_cycle(
        &lab,
        &lb1,
        &lb2,
        &|| lab.signal("lb1", nix::sys::signal::Signal::SIGTERM),
        &ctx,
    );
    let st2 = lb_status(&lab, &lb2);
    println!("lb2 status at the end: {}", st2["vrrp_instances"][0]);
    let longest = overlap.finish();
    assert!(
        longest <= Duration::from_secs(1),
        "two masters for {longest:?}: {}",
        ctx()
    );
}

#[test]
fn mixed_pair_with_keepalived_over_ipv6() {
    let test = "mixed_pair_with_keepalived_over_ipv6";
    if !ipv6_lab(test) || !edgefleet_tests::have("keepalived", test) {
        return;
    }
    for lb_is_master in [true, false] {
        let (lab, ours, theirs) = v6_pair("lb", "ka");
        let (lb_prio, ka_prio) = if lb_is_master { (150, 100) } else { (100, 150) };
        let lbc = lab.file("lb.toml", &lb_vrrp6(lb_prio, ""));
        let kac = lab.file("keepalived.conf", &keepalived_conf6(ka_prio));
        lab.spawn(
            &ours,
            "lb",
            &bin("lb"),
            &["--config", lbc.to_str().unwrap()],
            &[("RUST_LOG", "info")],
        );
        start_keepalived(&lab, &theirs, &kac);
        let (master, backup) = if lb_is_master {
            (&ours, &theirs)
        } else {
            (&theirs, &ours)
        };
        let overlap = Overlap::start_for(&ours, &theirs, VIP6.into());
        let ctx = || {
            format!(
                "lb master: {lb_is_master}\nlb log:\n{}\nkeepalived log:\n{}",
                lab.log("lb"),
                lab.log("keepalived")
            )
        };
        println!("lb is master: {lb_is_master}");
        let stop = || {
            if lb_is_master {
                lab.signal("lb", nix::sys::signal::Signal::SIGTERM);
            } else {
                lab.signal("keepalived", nix::sys::signal::Signal::SIGTERM);
            }
        };
        // Every advert keepalived sent passed our checks (hop limit, checksum over the IPv6
        // pseudo-header, length with 16-byte addresses); lb's view of the master agrees.
        assert!(
            wait(Duration::from_secs(10), || lab.has_addr6(master, VIP6)).is_some(),
            "election: {}",
            ctx()
        );
        std::thread::sleep(Duration::from_secs(3));
        let st = lb_status(&lab, &ours);
        println!("lb status: {}", st["vrrp_instances"][0]);
        let v = &st["vrrp_instances"][0];
        // (A keepalived that starts as backup under an lb master sends nothing: then its
        // staying backup is what shows it accepted lb's adverts.)
        if !lb_is_master {
            assert!(v["adverts_received"].as_u64().unwrap_or(0) > 0, "{st}");
        }
        for reason in ["checksum", "ttl", "length", "version"] {
            assert_eq!(v["drops"][reason], 0, "{reason}: {st}\n{}", ctx());
        }
        let want = if lb_is_master {
            ("MASTER", lab.link_local(&ours))
        } else {
            ("BACKUP", lab.link_local(&theirs))
        };
        assert_eq!(v["state"], want.0, "{st}");
        assert_eq!(v["master"], want.1.unwrap().to_string(), "{st}");
        v6_failover_cycle(&lab, master, backup, &stop, &ctx);
        if !lb_is_master {
            let st = lb_status(&lab, &ours);
            println!(
                "lb status after keepalived stopped: {}",
                st["vrrp_instances"][0]
            );
            assert_eq!(st["vrrp_instances"][0]["state"], "MASTER", "{st}");
        }
        let longest = overlap.finish();
        assert!(
            longest <= Duration::from_secs(1),
            "two masters for {longest:?}: {}",
            ctx()
        );
    }
}

#[test]
fn ipv6_adverts_with_a_wrong_hop_limit_or_checksum_are_dropped_and_counted() {
    let test = "ipv6_adverts_with_a_wrong_hop_limit_or_checksum_are_dropped_and_counted";
    if !ipv6_lab(test) {
        return;
    }
    let (lab, lb1, evil) = v6_pair("lb1", "evil");
    spawn_lb(&lab, &lb1, "lb1", &lb_vrrp6(150, ""));
    let src = lab.link_local(&evil).expect("link-local").to_string();
    let vip = VIP6.to_string();
    let injector = bin("vrrpinject");
    let inject = |args: &[&str]| {
        let mut full = vec![
            injector.to_str().unwrap(),
            "--src",
            &src,
            "--vrid",
            "61",
            "--vip",
            &vip,
        ];
        full.extend_from_slice(args);
        lab.exec(&evil, &full).expect("inject");
    };
    let drops = |reason: &str| {
        lb_status(&lab, &lb1)["vrrp_instances"][0]["drops"][reason]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait(Duration::from_secs(5), || {
            lb_status(&lab, &lb1)["vrrp_instances"][0]["state"] == "BACKUP"
        })
        .is_some(),
        "{}",
        lab.log("lb1")
    );
    // Each would win (priority 254 > 150) if it were accepted.
    inject(&["--ttl", "64", "--count", "5", "--every-ms", "20"]);
    inject(&["--bad-checksum", "--count", "5", "--every-ms", "20"]);
    inject(&["--version", "2", "--count", "5", "--every-ms", "20"]);
    assert!(
        wait(Duration::from_secs(3), || drops("ttl") >= 5
            && drops("checksum") >= 5
            && drops("version") >= 5)
        .is_some(),
        "{}\n{}",
        lb_status(&lab, &lb1),
        lab.log("lb1")
    );
    println!(
        "drops: ttl {} checksum {} version {}",
        drops("ttl"),
        drops("checksum"),
        drops("version")
    );
    // lb1 is master alone; a valid higher-priority advert from the same host takes it over.
    assert!(
        wait(Duration::from_secs(6), || lab.has_addr6(&lb1, VIP6)).is_some(),
        "{}",
        lab.log("lb1")
    );
    inject(&["--count", "5", "--every-ms", "100"]);
    let st = lb_status(&lab, &lb1);
    println!("after valid adverts: {}", st["vrrp_instances"][0]);
    assert_eq!(st["vrrp_instances"][0]["state"], "BACKUP", "{st}");
    assert_eq!(st["vrrp_instances"][0]["master"], src, "{st}");
    assert!(!lab.has_addr6(&lb1, VIP6), "a backup kept the VIP");
}

#[test]
fn two_lbs_over_ipv6_unicast() {
    let test = "two_lbs_over_ipv6_unicast";
    if !ipv6_lab(test) {
        return;
    }
    let (lab, lb1, lb2) = v6_pair("lb1", "lb2");
    let (a1, a2) = (lab::lab_ip6(2), lab::lab_ip6(3));
    for (h, label, prio, me, peer) in [(&lb1, "lb1", 150, a1, a2), (&lb2, "lb2", 100, a2, a1)] {
        let extra = format!("unicast_src_ip = \"{me}\"\nunicast_peer = [\"{peer}\"]\n");
        spawn_lb(&lab, h, label, &lb_vrrp6(prio, &extra));
    }
    let ctx = || format!("lb1 log:\n{}\nlb2 log:\n{}", lab.log("lb1"), lab.log("lb2"));
    assert!(
        wait(Duration::from_secs(10), || lab.has_addr6(&lb1, VIP6)
            && lb_status(&lab, &lb2)["vrrp_instances"][0]["master"]
                == a1.to_string())
        .is_some(),
        "election: {}",
        ctx()
    );
    let st2 = lb_status(&lab, &lb2);
    println!("lb2 status: {}", st2["vrrp_instances"][0]);
    assert_eq!(st2["vrrp_instances"][0]["drops"]["checksum"], 0, "{st2}");
    v6_failover_cycle(
        &lab,
        &lb1,
        &lb2,
        &|| lab.signal("lb1", nix::sys::signal::Signal::SIGTERM),
        &ctx,
    );
}

/// Viewers over IPv6 through a VIP that VRRPv3 over IPv6 places: two lbs with a proxy virtual
/// server on [2001:2::100]:1935 in front of the lab's edge (an IPv4 real server, checked over
/// TCP); the client host (2001:2::50) plays through the master, the master's link is cut, and a
/// new viewer plays through the backup that took the VIP.
#[test]
fn viewers_play_over_ipv6_through_a_vrrp_vip_and_after_a_failover() {
    let test = "viewers_play_over_ipv6_through_a_vrrp_vip_and_after_a_failover";
    if !ipv6_lab(test) {
        return;
    }
    let Some(f) = fleet(test) else { return };
    for (h, n) in [(&f.lb1, 2), (&f.lb2, 3), (&f.client, 50)] {
        f.lab.add_ipv6(h, n);
    }
    let vs = format!(
        "[[virtual_server]]\naddress = \"[{VIP6}]:1935\"\nlb_algo = \"rr\"\ndelay_loop = 0.5\n[[virtual_server.real_server]]\naddress = \"{}:1935\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\n",
        f.edge.ip
    );
    for (h, label, prio) in [(&f.lb1, "lb1", 150), (&f.lb2, "lb2", 100)] {
        start_lb(&f, h, label, &format!("{}{vs}", lb_vrrp6(prio, "")));
    }
    let ctx = || {
        format!(
            "lb1 log:\n{}\nlb2 log:\n{}",
            f.lab.log("lb1"),
            f.lab.log("lb2")
        )
    };
    let held = |h: &Host| f.lab.has_addr6(h, VIP6);
    assert!(
        wait(Duration::from_secs(10), || held(&f.lb1) && !held(&f.lb2)).is_some(),
        "election: {}",
        ctx()
    );
    let url = format!("rtmp://[{VIP6}]:1935/live/cam");
    let play = || -> String {
        f.lab
            .exec(
                &f.client,
                &[
                    bin("edge").to_str().unwrap(),
                    "play",
                    &url,
                    "--clients",
                    "3",
                    "--duration",
                    "1.5",
                ],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e)
    };
    // The edge pulls on the first viewer's demand and the check must pass first: retry a while.
    let mut out = String::new();
    let first = wait(Duration::from_secs(20), || {
        out = play();
        out.contains("clients ok 3/3")
    });
    assert!(
        first.is_some(),
        "no play through the IPv6 VIP: {out}\n{}",
        ctx()
    );
    println!("IPv6 VIP on lb1: {}", out.lines().next().unwrap_or(""));
    f.lab.cut(&f.lb1);
    assert!(
        wait(Duration::from_secs(8), || held(&f.lb2)).is_some(),
        "the backup never took the IPv6 VIP: {}",
        ctx()
    );
    let after = wait(Duration::from_secs(15), || {
        out = play();
        out.contains("clients ok 3/3")
    });
    assert!(
        after.is_some(),
        "no play through the backup after the failover: {out}\n{}",
        ctx()
    );
    println!(
        "IPv6 VIP on lb2 after the cut: {}",
        out.lines().next().unwrap_or("")
    );
}
