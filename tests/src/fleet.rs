//! The direct-routing fleet of the namespace lab, shared by the DR tests (tests/tests/dr.rs)
//! and the chaos soak (tests/tests/chaos.rs): an origin with a looping publisher on .10, edges
//! on .11 and .12 that hold the VIP on `lo` (`edge dr-setup`), one or two lbs (.2, .3) and a
//! client host on .50, all on 198.18.0.0/24; and the helpers that start lbs, read their status
//! and play through the VIP.

use crate::lab::{self, bin, wait, Host, Lab};
use std::net::Ipv4Addr;
use std::time::Duration;

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

pub struct Fleet {
    pub lab: Lab,
    pub lb: Host,
    /// The second balancer of the failover test.
    pub lb2: Option<Host>,
    pub client: Host,
    pub edges: Vec<Host>,
    pub origin: Host,
}

pub fn available(test: &str) -> bool {
    lab::available(test) && crate::have("nft", test)
}

/// origin + publisher on .10, edges on .11 and .12 (VIP on lo), lb on .2 (VIP on eth0),
/// client on .50.
pub fn fleet() -> Fleet {
    fleet_of(false)
}

/// With `two_lbs`, a second balancer on .3 and no VIP set by hand: VRRP places it.
pub fn fleet_of(two_lbs: bool) -> Fleet {
    fleet_from(
        two_lbs,
        "listen = \"0.0.0.0:1935\"\nmode = \"local\"\n",
        &|origin: &Host| {
            // Listening on every address: the VIP (viewers) and its own (lb's health checks).
            format!(
                "listen = \"0.0.0.0:1935\"\nmode = \"remote\"\norigin = [\"{}:1935\"]\nmax_handshakes_per_ip = 1000\ndr_vip = [\"{VIP}\"]\n[http]\nlisten = \"0.0.0.0:8080\"\n",
                origin.ip
            )
        },
    )
}

/// The fleet with these origin and edge configs (the edges' from the origin host).
pub fn fleet_from(two_lbs: bool, origin_toml: &str, edge_toml: &dyn Fn(&Host) -> String) -> Fleet {
    let mut lab = Lab::create();
    let origin = lab.host("origin", 10);
    let lb = lab.host("lb", 2);
    let lb2 = two_lbs.then(|| lab.host("lb2", 3));
    let client = lab.host("client", 50);
    let o = lab.file("origin.toml", origin_toml);
    lab.spawn(
        &origin,
        "origin",
        &bin("edge"),
        &["--config", o.to_str().unwrap()],
        &[],
    );
    let mut f = Fleet {
        lab,
        lb,
        lb2,
        client,
        edges: Vec::new(),
        origin,
    };
    for n in [11, 12] {
        let toml = edge_toml(&f.origin);
        f.add_edge(n, &toml);
    }
    if f.lb2.is_none() {
        // One lb holds the VIP as a VRRP master would; with two, VRRP places it.
        f.lab
            .exec(
                &f.lb,
                &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "eth0"],
            )
            .expect("VIP on the lb");
    }
    std::thread::sleep(Duration::from_millis(300));
    f.start_publisher();
    f
}

impl Fleet {
    /// A new edge host `edgeK` (K = its index + 1, host address .`n`) holding the VIP on `lo`
    /// (`edge dr-setup`), running `edge` with `toml` as the program `edgeK`.
    pub fn add_edge(&mut self, n: u8, toml: &str) -> Host {
        let name = format!("edge{}", self.edges.len() + 1);
        let e = self.lab.host(&name, n);
        let edge_bin = bin("edge");
        let out = self
            .lab
            .exec(
                &e,
                &[
                    edge_bin.to_str().unwrap(),
                    "dr-setup",
                    "--vip",
                    &VIP.to_string(),
                ],
            )
            .expect("edge dr-setup");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("added 198.18.0.100/32 on lo"), "{text}");
        let cfg = self.lab.file(&format!("{name}.toml"), toml);
        self.lab.spawn(
            &e,
            &name,
            &edge_bin,
            &["--config", cfg.to_str().unwrap()],
            &[],
        );
        self.edges.push(e.clone());
        e
    }

    /// `edge publish --loop` of the test clip to the origin, as the program `publisher`.
    pub fn start_publisher(&self) {
        let clip = crate::clip_path();
        self.lab.spawn(
            &self.origin,
            "publisher",
            &bin("edge"),
            &[
                "publish",
                clip.to_str().unwrap(),
                "rtmp://127.0.0.1:1935/live/cam",
                "--loop",
            ],
            &[],
        );
    }
}

pub fn lb_config(algo: &str, edges: &[&Host]) -> String {
    let mut s = format!(
        "admin_listen = \"127.0.0.1:9180\"\n[[virtual_server]]\naddress = \"{VIP}:1935\"\nlb_algo = \"{algo}\"\nlb_kind = \"DR\"\ndelay_loop = 0.5\n"
    );
    for e in edges {
        s.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{}:1935\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\nretry = 0\ndelay_before_retry = 0.2\n",
            e.ip
        ));
    }
    s
}

pub fn start_lb(f: &Fleet, label: &str, cfg: &str) -> std::path::PathBuf {
    start_lb_on(f, &f.lb, label, cfg)
}

pub fn start_lb_on(f: &Fleet, host: &Host, label: &str, cfg: &str) -> std::path::PathBuf {
    let path = f.lab.file(&format!("{label}.toml"), cfg);
    f.lab.spawn(
        host,
        label,
        &bin("lb"),
        &["--config", path.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    path
}

pub fn status(f: &Fleet) -> serde_json::Value {
    status_of(f, &f.lb)
}

pub fn status_of(f: &Fleet, host: &Host) -> serde_json::Value {
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

pub fn status_table(f: &Fleet) -> String {
    f.lab
        .exec(
            &f.lb,
            &[
                bin("lb").to_str().unwrap(),
                "status",
                "--admin",
                "127.0.0.1:9180",
            ],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Waits until the DR table is programmed with `n` real servers whose MACs are known.
pub fn wait_programmed(f: &Fleet, label: &str, n: usize) {
    wait_programmed_on(f, &f.lb, label, n)
}

pub fn wait_programmed_on(f: &Fleet, host: &Host, label: &str, n: usize) {
    let ok = wait(Duration::from_secs(10), || {
        let st = status_of(f, host);
        let vs = &st["virtual_servers"][0];
        vs["dr"]["programmed"].as_u64().unwrap_or(0) > 0
            && vs["real_servers"]
                .as_array()
                .map(|a| a.iter().filter(|r| r["mac"].is_string()).count() == n)
                .unwrap_or(false)
    });
    assert!(
        ok.is_some(),
        "DR table never programmed with {n} servers: {:#}\n{}",
        status_of(f, host),
        f.lab.log(label)
    );
}

pub fn stat(f: &Fleet, host: &Host, what: &str) -> u64 {
    f.lab
        .exec(
            host,
            &["cat", &format!("/sys/class/net/eth0/statistics/{what}")],
        )
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// `edge play` from the client host through the VIP; the JSON summary.
pub fn play(f: &Fleet, clients: usize, secs: f64) -> serde_json::Value {
    let out = f
        .lab
        .exec(
            &f.client,
            &[
                bin("edge").to_str().unwrap(),
                "play",
                &format!("rtmp://{VIP}:1935/live/cam"),
                "--clients",
                &clients.to_string(),
                "--duration",
                &secs.to_string(),
                "--json",
            ],
        )
        .map_err(|e| serde_json::json!({ "error": e }));
    match out {
        Ok(o) => serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null),
        Err(e) => e,
    }
}

/// Starts `edge play` in the background as `label`; [`summary`] reads its result.
pub fn play_bg(f: &Fleet, label: &str, clients: usize, secs: f64) {
    f.lab.spawn(
        &f.client,
        label,
        &bin("edge"),
        &[
            "play",
            &format!("rtmp://{VIP}:1935/live/cam"),
            "--clients",
            &clients.to_string(),
            "--duration",
            &secs.to_string(),
            "--ramp",
            "0",
            "--json",
        ],
        &[],
    );
}

pub fn summary(f: &Fleet, label: &str, limit: Duration) -> serde_json::Value {
    assert!(
        f.lab.wait_exit(label, limit),
        "{label} did not finish: {}",
        f.lab.log(label)
    );
    f.lab
        .log(label)
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{label}: no summary in\n{}", f.lab.log(label)))
}

/// Plays until the stream is there (the edges pull on demand; the publisher starts first).
pub fn wait_stream(f: &Fleet) {
    for _ in 0..20 {
        if play(f, 1, 1.0)["ok"] == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "no play through the VIP: {:#}\nlb: {}",
        status(f),
        f.lab.log("lb")
    );
}

pub fn forwarded(st: &serde_json::Value, rs: usize) -> u64 {
    st["virtual_servers"][0]["real_servers"][rs]["forwarded_packets"]
        .as_u64()
        .unwrap_or(0)
}

/// Flows of real server `rs` in the connection table: open and closing (closed ones stay
/// 120 s, so the count does not drop when a short viewer ends).
pub fn flows(st: &serde_json::Value, rs: usize) -> u64 {
    let r = &st["virtual_servers"][0]["real_servers"][rs];
    r["active"].as_u64().unwrap_or(0) + r["inactive"].as_u64().unwrap_or(0)
}

/// POSTs `path` (`/drain`, `/undrain`...) for real server `rs` of the VIP's :1935 virtual
/// server to the admin API of the lb on `host`; the answer.
pub fn admin_post_on(f: &Fleet, host: &Host, path: &str, rs: &str) -> String {
    let cmd = format!("exec 3<>/dev/tcp/127.0.0.1/9180; printf 'POST {path}?vs={VIP}:1935&rs={rs} HTTP/1.0\\r\\nContent-Length: 0\\r\\n\\r\\n' >&3; cat <&3");
    f.lab
        .exec(host, &["bash", "-c", &cmd])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Starts the two lbs of a `fleet_of(true)` fleet — `lb` with `master_cfg`, `lb2` with
/// `backup_cfg` — and waits until `lb` holds the VIP, both have programmed `n` real servers,
/// and the stream plays through the VIP. The two config paths (a reload rewrites them).
pub fn start_lb_pair(
    f: &Fleet,
    master_cfg: &str,
    backup_cfg: &str,
    n: usize,
) -> [std::path::PathBuf; 2] {
    let lb2 = f.lb2.as_ref().expect("a fleet with two lbs");
    let paths = [
        start_lb_on(f, &f.lb, "lb", master_cfg),
        start_lb_on(f, lb2, "lb2", backup_cfg),
    ];
    assert!(
        wait(Duration::from_secs(8), || f.lab.has_addr(&f.lb, VIP)).is_some(),
        "lb never became master:\n{}",
        f.lab.log("lb")
    );
    wait_programmed_on(f, &f.lb, "lb", n);
    wait_programmed_on(f, lb2, "lb2", n);
    wait_stream(f);
    paths
}
