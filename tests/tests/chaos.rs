//! The chaos soak (issue 14): seeds/002's fleet in the namespace lab — an origin with a
//! looping publisher, two edges, two lbs sharing the VIP by VRRP and dispatching by direct
//! routing — plays to 500 `edge play` viewers and four ffmpeg players (two over RTMP, two over
//! HTTP-FLV) while a schedule injects, one after another:
//!
//! 1. a burst of garbage connections to the VIP (random bytes, truncated and bad handshakes,
//!    malformed HTTP requests);
//! 2. SIGHUP x 20 to each edge; 3. SIGHUP x 20 to each lb;
//! 4. packet loss on one edge's link (`tc netem` where the kernel has it, else nftables'
//!    random drop: this machine class's kernel has no sch_netem);
//! 5. an edge added (lb config reloaded) and drained while new viewers arrive;
//! 6. the origin restarted (and its publisher);
//! 7. the master lb's link cut for 4 s and restored (the backup takes the VIP; the master
//!    takes it back by preemption);
//! 8. an edge SIGKILLed and restarted.
//!
//! Every viewer's end and media gaps (`edge play --events`, ffmpeg's exit) are attributed to
//! the fault during which they happened. The soak prints one table — viewers lost per fault
//! and how many of those were the failed component's own (the killed edge's players), the
//! longest media gap per fault, the RSS of every process before and after, the longest time
//! both lbs held the VIP while they could hear each other — and fails on any viewer lost
//! beyond the failed component's own, on RSS growth, and on two masters for longer than one
//! advert interval.
//!
//! `EDGEFLEET_SOAK_ROUNDS=N` runs the schedule N times (default 1, about two minutes).
//! Needs root, `nft`, `python3` and `ffmpeg`; skipped with a printed reason otherwise (a
//! failure under EDGEFLEET_REQUIRE_ALL=1). Every wait is bounded; the lab goes away even on
//! failure.

use edgefleet_tests::fleet::*;
use edgefleet_tests::lab::{bin, wait, Host};
use nix::sys::signal::Signal;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TEST: &str = "chaos_soak_loses_no_viewer_beyond_the_failed_component";
const VIEWERS: usize = 500;
/// The lbs' VRRP advert interval (s).
const ADVERT: f64 = 0.1;
/// A viewer's end or gap up to this long after a fault's end still belongs to it (s).
const GRACE: f64 = 3.0;
/// How long one round of the schedule takes at most (s); the viewers play this long per round.
const ROUND: f64 = 100.0;

/// One injected fault: when it ran (s since the soak's start) and how many viewers the failed
/// component itself had (they may be lost: the killed edge's).
struct Fault {
    name: String,
    start: f64,
    end: f64,
    own: u64,
}

/// A group of viewers started together (`edge play` or one ffmpeg).
struct Group {
    label: String,
    /// `edge play --events` file (None: an ffmpeg player).
    events: Option<PathBuf>,
    start: f64,
    /// When its viewers are due to stop (s since the soak's start).
    end: f64,
}

/// What one viewer did, on the soak's clock.
struct Viewer {
    group: String,
    /// Stopped before its group's end, or with an error.
    lost: Option<(f64, String)>,
    /// Media gaps: (start, length), both s.
    gaps: Vec<(f64, f64)>,
}

struct Soak {
    f: Fleet,
    t0: Instant,
    epoch0: f64,
    faults: Vec<Fault>,
    groups: Vec<Group>,
    lb_cfg: [PathBuf; 2],
    /// Wall-clock (epoch s) windows in which the lbs could not hear each other.
    cuts: Vec<(f64, f64)>,
    /// Processes restarted by the schedule (their RSS is not compared).
    restarted: Vec<String>,
    /// The edges (indices into `f.edges`) in the lbs' configs.
    in_lb: Vec<usize>,
}

/// Straight to the process's stderr, past libtest's capture: the soak's progress and table
/// show in a passing run (CI's log) too.
fn report(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn edge_toml(origin: &Host) -> String {
    format!(
        "listen = \"0.0.0.0:1935\"\nmode = \"remote\"\norigin = [\"{}:1935\"]\nmax_handshakes_per_ip = 1000\ndr_vip = [\"{VIP}\"]\n[http]\nlisten = \"0.0.0.0:8080\"\n[api]\nlisten = \"127.0.0.1:1985\"\n",
        origin.ip
    )
}

/// Both DR virtual servers (RTMP :1935 and HTTP :8080, by Maglev: a backup that takes the VIP
/// adopts the flows where the master sent them) over `edges`, and the VRRP instance.
fn lb_toml(edges: &[&Host], state: &str, prio: u8) -> String {
    let mut s = lb_config("mh", edges);
    s.push_str(&format!(
        "[[virtual_server]]\naddress = \"{VIP}:8080\"\nlb_algo = \"mh\"\nlb_kind = \"DR\"\ndelay_loop = 0.5\n"
    ));
    for e in edges {
        s.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{}:8080\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\nretry = 0\ndelay_before_retry = 0.2\n",
            e.ip
        ));
    }
    s.push_str(&format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{state}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = {ADVERT}\nvirtual_ipaddress = [\"{VIP}/24\"]\n"
    ));
    s
}

/// Garbage at the VIP from the client host: random bytes, truncated handshakes, a bad RTMP
/// version, a handshake followed by an oversized chunk header, malformed HTTP. Each socket is
/// closed after its bytes; bounded in count and time.
const GARBAGE: &str = r#"
import os, random, socket, sys, time
vip = sys.argv[1]
random.seed(14)
sent = 0
end = time.time() + 10
def send(port, data, wait=0.01):
    global sent
    try:
        s = socket.create_connection((vip, port), timeout=2)
        s.sendall(data)
        time.sleep(wait)
        s.close()
        sent += 1
    except OSError:
        pass
for i in range(300):
    if time.time() > end:
        break
    k = i % 6
    if k == 0:
        send(1935, os.urandom(random.randint(1, 4000)))
    elif k == 1:
        send(1935, b"\x03" + os.urandom(random.randint(0, 1535)))
    elif k == 2:
        send(1935, b"\x09" + os.urandom(1536))
    elif k == 3:
        send(1935, b"\x03" + os.urandom(1536) + os.urandom(1536) + b"\x03\xff\xff\xff\xff\xff\xff\x14\x00\x00\x00\x00" + os.urandom(512))
    elif k == 4:
        send(8080, b"GET /" + os.urandom(random.randint(1, 3000)) + b" HTTP/1.1\r\n\r\n")
    else:
        send(8080, random.choice([b"GARBAGE\r\n\r\n", b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"GET /live/" + b"a" * 70000 + b".flv HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]))
print("sent", sent)
"#;

impl Soak {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn lbs(&self) -> [(&Host, &'static str); 2] {
        [
            (&self.f.lb, "lb"),
            (self.f.lb2.as_ref().expect("two lbs"), "lb2"),
        ]
    }

    /// Runs `body` as the fault `name`; `body` returns the failed component's own viewers.
    fn fault(&mut self, name: &str, body: impl FnOnce(&mut Soak) -> u64) {
        let start = self.now();
        report(&format!("chaos: {start:6.1} s  {name}"));
        let own = body(self);
        let end = self.now();
        self.faults.push(Fault {
            name: name.to_string(),
            start,
            end,
            own,
        });
        self.settle(name);
    }

    /// After a fault: the fleet is whole again (one lb holds the VIP, every edge UP on both)
    /// before the next one starts.
    fn settle(&self, after: &str) {
        let n = self.in_lb.len();
        let whole = wait(Duration::from_secs(20), || {
            self.lbs().iter().all(|(h, _)| {
                let st = status_of(&self.f, h);
                st["virtual_servers"][0]["real_servers"]
                    .as_array()
                    .is_some_and(|a| a.len() == n && a.iter().all(|r| r["state"] == "UP"))
            }) && self.f.lab.has_addr(&self.f.lb, VIP)
                != self
                    .f
                    .lab
                    .has_addr(self.f.lb2.as_ref().expect("two lbs"), VIP)
        });
        assert!(
            whole.is_some(),
            "the fleet did not settle after {after}: {:#}\n{:#}",
            status_of(&self.f, &self.f.lb),
            status_of(&self.f, self.f.lb2.as_ref().unwrap())
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    /// `edge play` of `url` by `clients` viewers until `end` (s on the soak's clock).
    fn viewers(&mut self, label: &str, url: &str, clients: usize, end: f64, ramp: f64) {
        let start = self.now();
        let events = self.f.lab.dir.join(format!("{label}.events"));
        self.f.lab.spawn(
            &self.f.client,
            label,
            &bin("edge"),
            &[
                "play",
                url,
                "--clients",
                &clients.to_string(),
                "--duration",
                &format!("{:.1}", end - start - ramp),
                "--ramp",
                &ramp.to_string(),
                "--events",
                events.to_str().unwrap(),
                "--json",
            ],
            &[],
        );
        self.groups.push(Group {
            label: label.to_string(),
            events: Some(events),
            start,
            end,
        });
    }

    /// One ffmpeg player of `url` until `end`, when `timeout` stops it (exit status 124: it
    /// was still playing); it prints its exit status and end time.
    fn ffmpeg(&mut self, label: &str, url: &str, end: f64) {
        let start = self.now();
        let secs = end - start;
        self.f.lab.spawn(
            &self.f.client,
            label,
            std::path::Path::new("bash"),
            &[
                "-c",
                &format!(
                    "timeout {secs:.1} ffmpeg -nostdin -loglevel error -rw_timeout 15000000 -i {url} -c copy -f null -; echo \"rc=$? end=$(date +%s.%N)\""
                ),
            ],
            &[],
        );
        self.groups.push(Group {
            label: label.to_string(),
            events: None,
            start,
            end,
        });
    }

    /// Viewers of the stream on `edge`, by its API.
    fn players_on(&self, edge: &Host) -> u64 {
        self.f
            .lab
            .exec(
                edge,
                &[
                    bin("edge").to_str().unwrap(),
                    "status",
                    "--api",
                    "127.0.0.1:1985",
                    "--json",
                ],
            )
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| {
                v["streams"].as_array().map(|a| {
                    a.iter()
                        .filter(|s| s["name"] == "cam")
                        .map(|s| s["clients"].as_u64().unwrap_or(0))
                        .sum()
                })
            })
            .unwrap_or(0)
    }

    fn players(&self) -> u64 {
        self.f.edges.iter().map(|e| self.players_on(e)).sum()
    }

    fn rss(&self) -> Vec<(String, u64)> {
        let mut labels = vec!["origin".to_string(), "lb".into(), "lb2".into()];
        labels.extend((1..=self.f.edges.len()).map(|i| format!("edge{i}")));
        labels
            .into_iter()
            .map(|l| {
                let kib = self
                    .f
                    .lab
                    .pid(&l)
                    .map(|p| edgefleet_tests::rss_kib_of(&p.to_string()))
                    .unwrap_or(0);
                (l, kib)
            })
            .collect()
    }

    fn rewrite_lbs(&self) {
        let edges: Vec<&Host> = self.in_lb.iter().map(|&i| &self.f.edges[i]).collect();
        for (i, (_, label)) in self.lbs().iter().enumerate() {
            let (state, prio) = if i == 0 {
                ("MASTER", 150)
            } else {
                ("BACKUP", 100)
            };
            std::fs::write(&self.lb_cfg[i], lb_toml(&edges, state, prio)).expect("lb config");
            self.f.lab.signal(label, Signal::SIGHUP);
        }
    }

    /// One round of the schedule; the viewers are due to stop at `until`.
    fn round(&mut self, round: usize, until: f64) {
        let r = |name: &str| format!("r{round} {name}");
        self.fault(&r("garbage burst"), |s| {
            let out =
                s.f.lab
                    .exec(&s.f.client, &["python3", "-c", GARBAGE, &VIP.to_string()])
                    .expect("garbage burst");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("sent"), "{text}");
            0
        });
        self.fault(&r("edge SIGHUP x 20 each"), |s| {
            for _ in 0..20 {
                for i in 0..s.f.edges.len() {
                    s.f.lab.signal(&format!("edge{}", i + 1), Signal::SIGHUP);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            0
        });
        self.fault(&r("lb SIGHUP x 20 each"), |s| {
            for _ in 0..20 {
                for label in ["lb", "lb2"] {
                    s.f.lab.signal(label, Signal::SIGHUP);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            0
        });
        let lossy = self.f.edges[1].clone();
        let how = if self
            .f
            .lab
            .exec(
                &lossy,
                &[
                    "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "20ms", "5ms",
                    "loss", "1%",
                ],
            )
            .is_ok()
        {
            "netem delay 20 ms +-5 ms, loss 1 %"
        } else {
            "loss 2 % by nft: no netem in this kernel"
        };
        self.fault(&r(&format!("edge2 link: {how}")), |s| {
            if how.starts_with("loss") {
                let rules = "add table inet chaos\nadd chain inet chaos in { type filter hook input priority 0; }\nadd chain inet chaos out { type filter hook output priority 0; }\nadd rule inet chaos in iifname eth0 numgen random mod 100 < 2 drop\nadd rule inet chaos out oifname eth0 numgen random mod 100 < 2 drop\n";
                let path = s.f.lab.file("loss.nft", rules);
                s.f.lab
                    .exec(&lossy, &["nft", "-f", path.to_str().unwrap()])
                    .expect("nft loss rules");
            }
            std::thread::sleep(Duration::from_secs(8));
            if how.starts_with("loss") {
                let _ = s.f.lab.exec(&lossy, &["nft", "delete", "table", "inet", "chaos"]);
            } else {
                let _ = s
                    .f
                    .lab
                    .exec(&lossy, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
            }
            0
        });
        self.fault(&r("edge added, new viewers, drained"), |s| {
            let n = 11 + s.f.edges.len() as u8;
            let toml = edge_toml(&s.f.origin);
            let added = s.f.add_edge(n, &toml);
            let label = format!("edge{}", s.f.edges.len());
            s.in_lb.push(s.f.edges.len() - 1);
            s.rewrite_lbs();
            for (h, lb) in s.lbs() {
                wait_programmed_on(&s.f, h, lb, s.in_lb.len());
            }
            let joiners = format!("r{round}-joiners");
            let before = s.players();
            s.viewers(
                &joiners,
                &format!("rtmp://{VIP}:1935/live/cam"),
                60,
                s.now() + 14.0,
                1.0,
            );
            let all_in = wait(Duration::from_secs(15), || s.players() >= before + 60);
            let held = s.players_on(&added);
            assert!(
                all_in.is_some() && held > 0,
                "the 60 new viewers: {} of them in, {held} on the added edge {label}: {:#}",
                s.players().saturating_sub(before),
                status_of(&s.f, &s.f.lb)
            );
            let rs = format!("{}:1935", added.ip);
            for (h, _) in s.lbs() {
                let out = admin_post_on(&s.f, h, "/drain", &rs);
                assert!(out.contains("drained"), "{out}");
            }
            std::thread::sleep(Duration::from_millis(1500));
            let late = format!("r{round}-after-drain");
            let end = s.now() + 4.0;
            s.viewers(&late, &format!("rtmp://{VIP}:1935/live/cam"), 10, end, 0.0);
            std::thread::sleep(Duration::from_secs(5));
            let now_held = s.players_on(&added);
            assert!(
                now_held <= held,
                "the drained edge took new viewers: {held} -> {now_held}"
            );
            report(&format!(
                "chaos: the added edge {label} holds {now_held} viewers, drained"
            ));
            // Its viewers leave (their group ends), then it leaves the lbs' configs and stops:
            // the lbs do not share their connection tables (keepalived's lvs_sync_daemon is
            // not done), so a takeover during a drain would adopt the drained edge's flows
            // elsewhere.
            assert!(
                s.f.lab.wait_exit(&joiners, Duration::from_secs(40)),
                "{joiners} did not finish"
            );
            let empty = wait(Duration::from_secs(10), || s.players_on(&added) == 0);
            assert!(
                empty.is_some(),
                "the drained edge kept {} viewers",
                s.players_on(&added)
            );
            s.in_lb.pop();
            s.rewrite_lbs();
            for (h, lb) in s.lbs() {
                wait_programmed_on(&s.f, h, lb, s.in_lb.len());
            }
            s.f.lab.signal(&label, Signal::SIGTERM);
            assert!(
                s.f.lab.wait_exit(&label, Duration::from_secs(15)),
                "the removed edge did not stop"
            );
            0
        });
        self.fault(&r("origin restart"), |s| {
            s.f.lab.signal("origin", Signal::SIGTERM);
            assert!(
                s.f.lab.wait_exit("origin", Duration::from_secs(10)),
                "the origin did not stop on SIGTERM"
            );
            s.f.lab.kill("publisher");
            std::thread::sleep(Duration::from_secs(1));
            let o = s.f.lab.dir.join("origin.toml");
            s.f.lab.spawn(
                &s.f.origin,
                "origin",
                &bin("edge"),
                &["--config", o.to_str().unwrap()],
                &[],
            );
            std::thread::sleep(Duration::from_millis(500));
            s.f.start_publisher();
            // Media again at every edge's viewers: wait until a new viewer plays.
            let back = wait(Duration::from_secs(20), || play(&s.f, 1, 1.0)["ok"] == 1);
            assert!(
                back.is_some(),
                "no play after the origin restart:\n{}",
                s.f.lab.log("origin")
            );
            if !s.restarted.iter().any(|r| r == "origin") {
                s.restarted.push("origin".into());
            }
            0
        });
        self.fault(&r("master lb link cut 4 s"), |s| {
            let cut = epoch();
            s.f.lab.cut(&s.f.lb);
            let lb2 = s.f.lb2.clone().unwrap();
            let took = wait(Duration::from_secs(5), || s.f.lab.has_addr(&lb2, VIP));
            assert!(took.is_some(), "the backup never took the VIP");
            std::thread::sleep(Duration::from_secs(4));
            s.f.lab.restore(&s.f.lb);
            let restored = epoch();
            let back = wait(Duration::from_secs(10), || {
                s.f.lab.has_addr(&s.f.lb, VIP) && !s.f.lab.has_addr(&lb2, VIP)
            });
            assert!(back.is_some(), "the master never took the VIP back");
            s.cuts.push((cut, restored));
            0
        });
        self.fault(&r("edge1 SIGKILL and restart"), |s| {
            let own = s.players_on(&s.f.edges[0]);
            s.f.lab.kill("edge1");
            std::thread::sleep(Duration::from_secs(2));
            let cfg = s.f.lab.dir.join("edge1.toml");
            s.f.lab.spawn(
                &s.f.edges[0],
                "edge1",
                &bin("edge"),
                &["--config", cfg.to_str().unwrap()],
                &[],
            );
            if !s.restarted.iter().any(|r| r == "edge1") {
                s.restarted.push("edge1".into());
            }
            // Its replacements: as many new viewers as it lost, to the end.
            let again = format!("r{round}-replacing");
            if own > 0 {
                s.viewers(
                    &again,
                    &format!("rtmp://{VIP}:1935/live/cam"),
                    own as usize,
                    until,
                    1.0,
                );
            }
            own
        });
    }

    /// Every viewer of every group, on the soak's clock.
    fn viewers_seen(&self) -> Vec<Viewer> {
        let mut out = Vec::new();
        for g in &self.groups {
            let log = self.f.lab.log(&g.label);
            match &g.events {
                Some(path) => {
                    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
                        panic!("{}: no events ({e}):\n{log}", g.label);
                    });
                    for line in text.lines() {
                        let v: serde_json::Value = serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("{}: bad event {line}: {e}", g.label));
                        let at =
                            |ms: &serde_json::Value| g.start + ms.as_f64().unwrap_or(0.0) / 1e3;
                        let end = at(&v["end_ms"]);
                        let ok = v["ok"] == true && end >= g.end - 1.5;
                        out.push(Viewer {
                            group: g.label.clone(),
                            lost: (!ok)
                                .then(|| (end, v["reason"].as_str().unwrap_or("?").to_string())),
                            gaps: v["gaps"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .map(|g2| (at(&g2[0]), g2[1].as_f64().unwrap_or(0.0) / 1e3))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        });
                    }
                }
                None => {
                    let rc = log
                        .split("rc=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .unwrap_or("?")
                        .to_string();
                    let end = log
                        .split("end=")
                        .nth(1)
                        .and_then(|r| r.trim().parse::<f64>().ok())
                        .map(|e| e - self.epoch0)
                        .unwrap_or(0.0);
                    let ok = rc == "124" && end >= g.end - 1.5;
                    out.push(Viewer {
                        group: g.label.clone(),
                        lost: (!ok).then(|| (end, format!("ffmpeg rc={rc}: {}", log.trim()))),
                        gaps: Vec::new(),
                    });
                }
            }
        }
        out
    }

    /// The fault that `t` belongs to: the last one started by then, if `t` is within its
    /// window plus [`GRACE`].
    fn fault_at(&self, t: f64) -> Option<usize> {
        self.faults
            .iter()
            .rposition(|f| t >= f.start - 0.2)
            .filter(|&i| t <= self.faults[i].end + GRACE)
    }
}

/// The VIP's presence on each lb from `ip -ts monitor address`: intervals (epoch s).
fn vip_intervals(log: &str, end: f64) -> Vec<(f64, f64)> {
    let vip = format!("inet {VIP}/");
    let mut out = Vec::new();
    let mut since: Option<f64> = None;
    for line in log.lines() {
        if !line.contains(&vip) {
            continue;
        }
        let Some(t) = line
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(parse_ts)
        else {
            continue;
        };
        if line.contains("Deleted") {
            if let Some(s) = since.take() {
                out.push((s, t));
            }
        } else if since.is_none() {
            since = Some(t);
        }
    }
    if let Some(s) = since {
        out.push((s, end));
    }
    out
}

/// `2026-12-02T17:25:01.578427` (UTC: the monitor runs with TZ=UTC) as epoch seconds.
fn parse_ts(ts: &str) -> Option<f64> {
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days as f64 * 86400.0 + h * 3600.0 + min * 60.0 + s)
}

/// The longest time both lbs held the VIP at once outside the `cuts` (s).
fn longest_two_masters(a: &[(f64, f64)], b: &[(f64, f64)], cuts: &[(f64, f64)]) -> f64 {
    let mut longest: f64 = 0.0;
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (mut s, e) = (a0.max(b0), a1.min(b1));
            if e <= s {
                continue;
            }
            // The part after a cut's restore is what counts (during a cut each side is alone).
            for &(c0, c1) in cuts {
                if s >= c0 && s < c1 {
                    s = c1;
                }
            }
            longest = longest.max(e - s);
        }
    }
    longest
}

#[test]
fn chaos_soak_loses_no_viewer_beyond_the_failed_component() {
    if !available(TEST)
        || !edgefleet_tests::have("python3", TEST)
        || !edgefleet_tests::have("ffmpeg", TEST)
    {
        return;
    }
    let rounds: usize = std::env::var("EDGEFLEET_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1);
    let f = fleet_from(
        true,
        // A 3 s drain on SIGTERM (10 s by default) keeps the origin's restart short.
        "listen = \"0.0.0.0:1935\"\nmode = \"local\"\ngrace_period = 3\n",
        &edge_toml,
    );
    let lb2 = f.lb2.clone().unwrap();
    for (h, label) in [(&f.lb, "mon-lb"), (&lb2, "mon-lb2")] {
        f.lab.spawn(
            h,
            label,
            std::path::Path::new("ip"),
            &["-ts", "monitor", "address"],
            &[("TZ", "UTC")],
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let edges: Vec<&Host> = f.edges.iter().collect();
    let lb_cfg = start_lb_pair(
        &f,
        &lb_toml(&edges, "MASTER", 150),
        &lb_toml(&edges, "BACKUP", 100),
        2,
    );
    let mut s = Soak {
        f,
        t0: Instant::now(),
        epoch0: epoch(),
        faults: Vec::new(),
        groups: Vec::new(),
        lb_cfg,
        cuts: Vec::new(),
        restarted: Vec::new(),
        in_lb: vec![0, 1],
    };
    let until = 25.0 + ROUND * rounds as f64;
    // ffmpeg first (its connections were seen to arrive late under load), then the viewers.
    for (i, url) in [
        format!("rtmp://{VIP}:1935/live/cam"),
        format!("rtmp://{VIP}:1935/live/cam"),
        format!("http://{VIP}:8080/live/cam.flv"),
        format!("http://{VIP}:8080/live/cam.flv"),
    ]
    .iter()
    .enumerate()
    {
        s.ffmpeg(&format!("ffmpeg{i}"), url, until);
    }
    s.viewers(
        "viewers",
        &format!("rtmp://{VIP}:1935/live/cam"),
        VIEWERS,
        until,
        5.0,
    );
    let total = VIEWERS as u64 + 4;
    let all_in = wait(Duration::from_secs(40), || s.players() >= total);
    assert!(
        all_in.is_some(),
        "not {total} viewers on the edges: {} (edge1 {}, edge2 {})\n{}",
        s.players(),
        s.players_on(&s.f.edges[0]),
        s.players_on(&s.f.edges[1]),
        s.f.lab.log("viewers")
    );
    report(&format!(
        "chaos: {total} viewers in after {:.1} s ({} on edge1, {} on edge2)",
        s.now(),
        s.players_on(&s.f.edges[0]),
        s.players_on(&s.f.edges[1])
    ));
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = s.rss();
    for round in 1..=rounds {
        let due = 25.0 + ROUND * round as f64;
        s.round(round, until);
        assert!(
            s.now() < due,
            "round {round} overran its {ROUND} s ({:.1} s)",
            s.now()
        );
    }
    let rss_after = s.rss();
    // Wait for every group to finish (each prints its summary or its exit).
    let left = until - s.now();
    for g in &s.groups {
        let limit = Duration::from_secs_f64((g.end - s.now()).max(0.0) + 45.0);
        assert!(
            s.f.lab.wait_exit(&g.label, limit),
            "{} did not finish:\n{}",
            g.label,
            s.f.lab.log(&g.label)
        );
    }
    report(&format!(
        "chaos: the viewers played {left:.0} s more after the last fault"
    ));
    let end = epoch();
    let seen = s.viewers_seen();

    // Per fault: viewers lost, own, longest gap.
    let mut lost = vec![0u64; s.faults.len()];
    let mut gap = vec![0f64; s.faults.len()];
    let (mut quiet_lost, mut quiet_gap) = (Vec::new(), 0f64);
    for v in &seen {
        if let Some((t, why)) = &v.lost {
            match s.fault_at(*t) {
                Some(i) => lost[i] += 1,
                None => quiet_lost.push(format!("{} at {t:.1} s: {why}", v.group)),
            }
        }
        for &(at, len) in &v.gaps {
            match s.fault_at(at) {
                Some(i) => gap[i] = gap[i].max(len),
                None => quiet_gap = quiet_gap.max(len),
            }
        }
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "chaos soak: {} viewers ({VIEWERS} edge play RTMP, 2 ffmpeg RTMP, 2 ffmpeg HTTP-FLV, then joiners and replacements), {rounds} round(s), {:.0} s",
        seen.len(),
        s.now()
    );
    let _ = writeln!(
        table,
        "{:<52} {:>13} {:>5} {:>4} {:>6} {:>14}",
        "fault", "window (s)", "lost", "own", "beyond", "longest gap ms"
    );
    let mut beyond_total = 0;
    for (i, f) in s.faults.iter().enumerate() {
        let beyond = lost[i].saturating_sub(f.own);
        beyond_total += beyond;
        let _ = writeln!(
            table,
            "{:<52} {:>6.1}-{:<6.1} {:>5} {:>4} {:>6} {:>14.0}",
            f.name,
            f.start,
            f.end,
            lost[i],
            f.own,
            beyond,
            gap[i] * 1e3
        );
    }
    let _ = writeln!(
        table,
        "{:<52} {:>13} {:>5} {:>4} {:>6} {:>14.0}",
        "between faults",
        "",
        quiet_lost.len(),
        0,
        quiet_lost.len(),
        quiet_gap * 1e3
    );
    let mut rss_bad = Vec::new();
    let _ = writeln!(table, "RSS KiB (before the faults -> after):");
    for (label, after) in &rss_after {
        let before = rss_before.iter().find(|(l, _)| l == label).map(|(_, k)| *k);
        let restarted = s.restarted.contains(label);
        let note = match (before, restarted) {
            (_, true) => "restarted by the schedule".to_string(),
            (None, _) if *after == 0 => "added and removed by the schedule".to_string(),
            (None, _) => "started by the schedule".to_string(),
            (Some(b), false) => {
                // Flat: within a quarter and 8 MiB of where it was (allocator noise, the
                // joiners' and replacements' sessions).
                if *after > b + b / 4 + 8192 {
                    rss_bad.push(format!("{label}: {b} -> {after} KiB"));
                    "GREW".to_string()
                } else {
                    "flat".to_string()
                }
            }
        };
        let _ = writeln!(
            table,
            "  {label:<8} {:>8} -> {after:>8}  {note}",
            before.map(|b| b.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    let a = vip_intervals(&s.f.lab.log("mon-lb"), end);
    let b = vip_intervals(&s.f.lab.log("mon-lb2"), end);
    let two = longest_two_masters(&a, &b, &s.cuts);
    let _ = writeln!(
        table,
        "VRRP: the VIP moved {} times; both lbs held it at once for at most {:.0} ms while they could hear each other (advert_int {:.0} ms)",
        a.len() + b.len(),
        two * 1e3,
        ADVERT * 1e3
    );
    report(&table);
    assert!(
        !a.is_empty(),
        "no VIP seen on lb:\n{}",
        s.f.lab.log("mon-lb")
    );
    assert!(
        quiet_lost.is_empty(),
        "viewers lost outside any fault: {quiet_lost:#?}\n{table}"
    );
    assert_eq!(
        beyond_total, 0,
        "viewers lost beyond the failed component's own:\n{table}"
    );
    assert!(rss_bad.is_empty(), "RSS grew: {rss_bad:?}\n{table}");
    assert!(
        two <= ADVERT,
        "two masters for {:.0} ms\n{table}",
        two * 1e3
    );
}
