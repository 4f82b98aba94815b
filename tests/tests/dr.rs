//! Direct routing (`lb_kind = "DR"`) in the network-namespace lab: an origin with a looping
//! publisher, two edges that each hold the VIP on `lo` (`edge dr-setup`), an lb holding the
//! VIP on its eth0 (as a VRRP master would), and a client host, all on 198.18.0.0/24. The lb
//! only rewrites MACs in its nftables table; the edges answer the viewers directly.
//!
//! Needs root and `nft` (nftables); skipped with a printed reason otherwise (a failure under
//! EDGEFLEET_REQUIRE_ALL=1). Every wait is bounded; the lab goes away even on failure.

use edgefleet_tests::fleet::*;
use edgefleet_tests::lab::{bin, wait, Host, Lab};
use std::time::Duration;

/// HTTP delivery by direct routing: a second DR virtual server on the VIP's port 8080 in
/// front of the edges' `[http]`: HTTP-FLV viewers play through the VIP (answers straight from
/// the edges), and ffprobe reads the HLS through it.
#[test]
fn http_flv_and_hls_play_through_a_dr_virtual_server() {
    let test = "http_flv_and_hls_play_through_a_dr_virtual_server";
    if !available(test) || !edgefleet_tests::have("ffprobe", test) {
        return;
    }
    let f = fleet();
    let mut cfg = lb_config("rr", &[&f.edges[0], &f.edges[1]]);
    cfg.push_str(&format!(
        "[[virtual_server]]\naddress = \"{VIP}:8080\"\nlb_algo = \"rr\"\nlb_kind = \"DR\"\ndelay_loop = 0.5\n"
    ));
    for e in &f.edges {
        cfg.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{}:8080\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 0.5\n",
            e.ip
        ));
    }
    start_lb(&f, "lb", &cfg);
    wait_programmed(&f, "lb", 2);
    let both = wait(Duration::from_secs(10), || {
        status(&f)["virtual_servers"][1]["dr"]["programmed"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    assert!(both.is_some(), "the :8080 DR table: {:#}", status(&f));
    wait_stream(&f);
    let out = f
        .lab
        .exec(
            &f.client,
            &[
                bin("edge").to_str().unwrap(),
                "play",
                &format!("http://{VIP}:8080/live/cam.flv"),
                "--clients",
                "10",
                "--duration",
                "4",
                "--json",
            ],
        )
        .expect("edge play over HTTP-FLV");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(s["ok"], 10, "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s["stalls"], 0, "{s}");
    let st = status(&f);
    let http_vs = st["virtual_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["address"].as_str().is_some_and(|a| a.ends_with(":8080")))
        .cloned()
        .unwrap_or_default();
    let forwarded: u64 = http_vs["real_servers"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| r["forwarded_packets"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert!(
        forwarded > 0,
        "the HTTP virtual server forwarded nothing: {st:#}"
    );
    // Both edges packaging (as with viewers on each): then any edge answers any request.
    for e in &f.edges {
        let warm = f.lab.exec(
            &f.client,
            &[
                "ffprobe",
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                &format!("http://{}:8080/live/cam.m3u8", e.ip),
            ],
        );
        assert!(warm.is_ok(), "{warm:?}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let out = f
        .lab
        .exec(
            &f.client,
            &[
                "ffprobe",
                "-v",
                "error",
                "-rw_timeout",
                "10000000",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
                &format!("http://{VIP}:8080/live/cam.m3u8"),
            ],
        )
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h264") && text.contains("aac"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn viewers_play_through_dr_and_the_lb_carries_a_small_share_of_the_bytes() {
    let test = "viewers_play_through_dr_and_the_lb_carries_a_small_share_of_the_bytes";
    if !available(test) {
        return;
    }
    let f = fleet();
    start_lb(&f, "lb", &lb_config("mh", &[&f.edges[0], &f.edges[1]]));
    wait_programmed(&f, "lb", 2);
    wait_stream(&f);

    let (lb0, c0) = (stat(&f, &f.lb, "rx_bytes"), stat(&f, &f.client, "rx_bytes"));
    play_bg(&f, "viewers", 20, 6.0);
    std::thread::sleep(Duration::from_secs(4));
    // While they play: the table shows them as open flows of the edges, Forward Route.
    let st = status(&f);
    let active: u64 = st["virtual_servers"][0]["real_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["active"].as_u64().unwrap_or(0))
        .sum();
    assert!(active >= 20, "ActiveConn {active} < 20: {st:#}");
    let table = status_table(&f);
    assert!(table.contains("Route"), "{table}");
    // The edges were set up with `edge dr-setup` and say so (dr_vip in their config).
    for e in ["edge1", "edge2"] {
        let log = f.lab.log(e);
        assert!(log.contains("DR real server ready"), "{e}:\n{log}");
    }
    let s = summary(&f, "viewers", Duration::from_secs(30));
    let (lb1, c1) = (stat(&f, &f.lb, "rx_bytes"), stat(&f, &f.client, "rx_bytes"));
    assert_eq!(s["ok"], 20, "{s}\n{}", f.lab.log("viewers"));
    assert_eq!(s["stalls"], 0, "{s}");
    let viewers = c1 - c0;
    let through_lb = lb1 - lb0;
    let share = through_lb as f64 / viewers as f64;
    println!(
        "DR byte share: lb eth0 received {through_lb} bytes while the viewers received {viewers} ({:.3} %)",
        share * 100.0
    );
    assert!(viewers > 10_000_000, "viewers got only {viewers} bytes");
    assert!(
        share < 0.05,
        "the lb carried {:.2} % of the bytes",
        share * 100.0
    );
    // Both edges served: the Maglev map spread the flows, each edge answered directly.
    let st = status(&f);
    assert!(
        forwarded(&st, 0) > 0 && forwarded(&st, 1) > 0,
        "one edge got nothing: {st:#}"
    );
    let metrics = f
        .lab
        .exec(
            &f.lb,
            &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9180; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for m in [
        "edgefleet_rs_forwarded_packets_total{",
        "edgefleet_rs_forwarded_bytes_total{",
        "edgefleet_vs_dropped_packets_total{vs=\"198.18.0.100:1935\",reason=\"fragment\"} 0",
    ] {
        assert!(metrics.contains(m), "{m} missing from\n{metrics}");
    }

    // Another player: ffmpeg through the same VIP, when installed.
    if edgefleet_tests::have("ffmpeg", test) {
        let out = f
            .lab
            .exec(
                &f.client,
                &[
                    "timeout",
                    "20",
                    "ffmpeg",
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-i",
                    &format!("rtmp://{VIP}:1935/live/cam"),
                    "-t",
                    "2",
                    "-c",
                    "copy",
                    "-f",
                    "null",
                    "-",
                ],
            )
            .map_err(|e| e.to_string());
        assert!(out.is_ok(), "ffmpeg through DR: {out:?}");
    }
}

#[test]
fn an_edge_added_by_reload_moves_no_existing_viewer() {
    let test = "an_edge_added_by_reload_moves_no_existing_viewer";
    if !available(test) {
        return;
    }
    let f = fleet();
    let path = start_lb(&f, "lb", &lb_config("mh", &[&f.edges[0]]));
    wait_programmed(&f, "lb", 1);
    wait_stream(&f);
    play_bg(&f, "first", 12, 9.0);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&path, lb_config("mh", &[&f.edges[0], &f.edges[1]])).unwrap();
    f.lab.signal("lb", nix::sys::signal::Signal::SIGHUP);
    wait_programmed(&f, "lb", 2);
    // New viewers reach the added edge (about half of the Maglev slots moved to it)...
    let s = play(&f, 16, 2.0);
    assert_eq!(s["ok"], 16, "{s}");
    let st = status(&f);
    assert!(
        forwarded(&st, 1) > 0,
        "no flow reached the new edge: {st:#}"
    );
    // ...while every viewer that was playing kept its connection and its media: a flow moved
    // to edge2 would get an RST there (it has no such connection) and fail.
    let s = summary(&f, "first", Duration::from_secs(30));
    assert_eq!(s["ok"], 12, "{s}\n{}", f.lab.log("first"));
    assert_eq!(s["stalls"], 0, "{s}");
}

/// Crafted frames from the client to the lb's MAC: fragments, UDP, TCP headers cut short,
/// mid-flow TCP of unknown flows (adopted: forwarded by the Maglev map, as a standby does
/// after a failover; the edge answers RST), garbage; each kind five times.
const CRAFT: &str = r#"
import os, socket, struct, sys
vip, port, lbmac = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
eth = lbmac + src + b"\x08\x00"
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
def ip(proto, payload, frag=0, tot=None):
    tot = tot if tot is not None else 20 + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, 1234, frag, 64, proto, 0,
                    socket.inet_aton("198.18.0.50"), socket.inet_aton(vip))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
syn = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 0x50, 0x02, 1024, 0, 0)
for i in range(5):
    ack = struct.pack("!HHIIBBHHH", 40100 + i, port, 7, 7, 0x50, 0x10, 1024, 0, 0)
    s.send(eth + ip(6, syn + b"x" * 16, frag=0x2000))   # first fragment (MF)
    s.send(eth + ip(6, b"y" * 24, frag=0x0003))         # later fragment
    s.send(eth + ip(6, syn[:8]))                        # TCP header cut to 8 bytes
    s.send(eth + ip(17, struct.pack("!HHHH", 40000, port, 12, 0) + b"abcd"))  # UDP
    s.send(eth + ip(6, ack))                            # ACK of a flow nobody knows
    s.send(eth + os.urandom(40))                        # garbage "IPv4"
    s.send(eth[:14])                                    # runt
print("sent")
"#;

#[test]
fn bad_input_to_the_vip_is_counted_and_lb_survives() {
    let test = "bad_input_to_the_vip_is_counted_and_lb_survives";
    if !available(test) || !edgefleet_tests::have("python3", test) {
        return;
    }
    let f = fleet();
    start_lb(&f, "lb", &lb_config("mh", &[&f.edges[0], &f.edges[1]]));
    wait_programmed(&f, "lb", 2);
    let lb_mac = f
        .lab
        .exec(&f.lb, &["cat", "/sys/class/net/eth0/address"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap();
    let out = f
        .lab
        .exec(
            &f.client,
            &["python3", "-c", CRAFT, &VIP.to_string(), "1935", &lb_mac],
        )
        .expect("crafted frames");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent"));
    let counted = wait(Duration::from_secs(5), || {
        let p = &status(&f)["virtual_servers"][0]["dr"]["packets"];
        p["drop_frag"].as_u64().unwrap_or(0) >= 10
            && p["pass_nontcp"].as_u64().unwrap_or(0) >= 5
            && p["drop_malformed"].as_u64().unwrap_or(0) >= 5
            && p["adopted"].as_u64().unwrap_or(0) >= 5
    });
    let st = status(&f);
    assert!(
        counted.is_some(),
        "bad input not counted as expected: {:#}",
        st["virtual_servers"][0]["dr"]
    );
    // lb is alive and still forwards.
    wait_stream(&f);
    let s = play(&f, 4, 1.5);
    assert_eq!(s["ok"], 4, "{s}");
}

fn tables(f: &Fleet) -> String {
    f.lab
        .exec(&f.lb, &["nft", "list", "tables", "netdev"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn a_killed_lb_leaves_a_table_the_next_start_removes() {
    let test = "a_killed_lb_leaves_a_table_the_next_start_removes";
    if !available(test) {
        return;
    }
    let f = fleet();
    // rr with persistence here (the other tests use mh): every flow of the one client host
    // goes to the edge its first flow got.
    let cfg = lb_config("rr", &[&f.edges[0], &f.edges[1]]).replace(
        "delay_loop = 0.5",
        "delay_loop = 0.5\npersistence_timeout = 50",
    );
    start_lb(&f, "lb", &cfg);
    wait_programmed(&f, "lb", 2);
    f.lab.kill("lb");
    assert!(
        tables(&f).contains("edgefleet-198.18.0.100-1935"),
        "{}",
        tables(&f)
    );
    start_lb(&f, "lb-again", &cfg);
    wait_programmed(&f, "lb-again", 2);
    assert!(
        f.lab.log("lb-again").contains("removed a stale DR table"),
        "{}",
        f.lab.log("lb-again")
    );
    wait_stream(&f);
    let p = play(&f, 6, 1.0);
    assert_eq!(p["ok"], 6, "{p}");
    let st = wait(Duration::from_secs(3), || {
        let st = status(&f);
        flows(&st, 0) + flows(&st, 1) >= 7
    })
    .map(|_| status(&f))
    .unwrap_or_else(|| status(&f));
    assert!(
        (flows(&st, 0) == 0) != (flows(&st, 1) == 0),
        "persistence: one client's flows on both edges: {st:#}"
    );
    // A clean stop removes the table.
    f.lab.signal("lb-again", nix::sys::signal::Signal::SIGTERM);
    assert!(f.lab.wait_exit("lb-again", Duration::from_secs(5)));
    assert!(
        !tables(&f).contains("edgefleet-"),
        "table left after a clean stop: {}",
        tables(&f)
    );
}

#[test]
fn check_names_a_real_server_behind_a_gateway() {
    let test = "check_names_a_real_server_behind_a_gateway";
    if !available(test) {
        return;
    }
    let mut lab = Lab::create();
    let lb = lab.host("lb", 2);
    // A route through a lab address: 198.19.0.0/24 behind 198.18.0.1 (nothing is sent).
    lab.exec(
        &lb,
        &["ip", "route", "add", "198.19.0.0/24", "via", "198.18.0.1"],
    )
    .unwrap();
    let cfg = lab.file(
        "lb.toml",
        &format!("[[virtual_server]]\naddress = \"{VIP}:1935\"\nlb_kind = \"DR\"\nlb_algo = \"mh\"\n[[virtual_server.real_server]]\naddress = \"198.18.0.11:1935\"\n[[virtual_server.real_server]]\naddress = \"198.19.0.7:1935\"\n"),
    );
    let out = lab
        .exec(
            &lb,
            &[
                bin("lb").to_str().unwrap(),
                "--check",
                "--config",
                cfg.to_str().unwrap(),
            ],
        )
        .unwrap_err();
    assert!(
        out.contains("virtual_server[0].real_server[1].address: 198.19.0.7:1935 is reached through the gateway 198.18.0.1"),
        "{out}"
    );
    assert!(!out.contains("real_server[0]"), "{out}");
}

#[test]
fn two_lbs_share_the_vip_and_viewers_survive_a_master_link_cut() {
    let test = "two_lbs_share_the_vip_and_viewers_survive_a_master_link_cut";
    if !available(test) {
        return;
    }
    let f = fleet_of(true);
    let lb2 = f.lb2.clone().unwrap();
    let vrrp = |state: &str, prio: u8| {
        format!(
            "{}\n[[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{state}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n",
            lb_config("mh", &[&f.edges[0], &f.edges[1]])
        )
    };
    start_lb_pair(&f, &vrrp("MASTER", 150), &vrrp("BACKUP", 100), 2);
    // 50 viewers: 46 `edge play` clients and, when installed, 4 ffmpeg players (else 50
    // `edge play` clients). Each ffmpeg plays 20 s of media and reports its exit status and
    // how long it ran (it must outlast the cut).
    let ffmpegs = if edgefleet_tests::have("ffmpeg", test) {
        4
    } else {
        0
    };
    for i in 0..ffmpegs {
        f.lab.spawn(
            &f.client,
            &format!("ffmpeg{i}"),
            std::path::Path::new("bash"),
            &[
                "-c",
                &format!(
                    "s=$(date +%s%N); timeout 60 ffmpeg -nostdin -loglevel error -i rtmp://{VIP}:1935/live/cam -t 20 -c copy -f null -; rc=$?; echo \"rc=$rc ms=$(( ($(date +%s%N) - s) / 1000000 ))\""
                ),
            ],
            &[],
        );
    }
    let open_flows = |f: &Fleet| {
        status_of(f, &f.lb)["virtual_servers"][0]["real_servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["active"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    // ffmpeg first: under CI load its connections were seen to arrive ~15 s after it was
    // started (twice; no datapath counter moved, `edge play` connecting at the same moment
    // was at once — noted), so the `edge play` viewers start once ffmpeg's are in.
    let ffmpeg_in = wait(Duration::from_secs(25), || open_flows(&f) >= ffmpegs as u64);
    assert!(
        ffmpeg_in.is_some(),
        "ffmpeg players never connected: {:#}",
        status_of(&f, &f.lb)
    );
    println!(
        "DR failover: ffmpeg players on the master after {:?}",
        ffmpeg_in.unwrap()
    );
    play_bg(&f, "viewers", 50 - ffmpegs, 10.0);
    // Every viewer playing through the master first.
    let all_in = wait(Duration::from_secs(6), || open_flows(&f) >= 50);
    assert!(
        all_in.is_some(),
        "not 50 viewers on the master: {:#}",
        status_of(&f, &f.lb)
    );
    std::thread::sleep(Duration::from_secs(2));
    f.lab.cut(&f.lb);
    let took = wait(Duration::from_secs(5), || f.lab.has_addr(&lb2, VIP))
        .expect("the backup never took the VIP");
    println!("DR failover: backup holds the VIP {took:?} after the cut");
    // A new viewer right after the takeover plays through the backup.
    let t0 = std::time::Instant::now();
    let fresh = play(&f, 1, 1.0);
    println!(
        "DR failover: a new viewer after the takeover: {fresh} in {:?}",
        t0.elapsed()
    );
    assert_eq!(fresh["ok"], 1, "no new viewer through the backup: {fresh}");
    // The backup has no entry for these flows: their next packets are adopted through the
    // same Maglev table, i.e. sent to the edge the master chose, and the viewers go on.
    let s = summary(&f, "viewers", Duration::from_secs(30));
    // Every viewer's flow is in the backup's connection table after the failover (adopted,
    // or already known to it: a flow whose packets reached the backup before the VIP
    // settled is not "adopted" again). lb reads its table once a second: poll a few times.
    let (mut adopted, mut known) = (0, 0);
    for _ in 0..10 {
        let st2 = status_of(&f, &lb2);
        adopted = st2["virtual_servers"][0]["dr"]["packets"]["adopted"]
            .as_u64()
            .unwrap_or(0);
        known = flows(&st2, 0) + flows(&st2, 1);
        if adopted >= (50 - ffmpegs) as u64 && known >= 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("DR failover: the backup adopted {adopted} flows and knows {known}");
    assert_eq!(s["ok"], 50 - ffmpegs, "{s}\n{}", f.lab.log("viewers"));
    assert_eq!(s["stalls"], 0, "{s}");
    println!(
        "DR failover: longest media gap of any edge play viewer {} ms",
        s["max_gap_ms"]
    );
    for i in 0..ffmpegs {
        let label = format!("ffmpeg{i}");
        assert!(
            f.lab.wait_exit(&label, Duration::from_secs(60)),
            "{label} did not finish"
        );
        let log = f.lab.log(&label);
        let ms: u64 = log
            .split("ms=")
            .nth(1)
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            log.contains("rc=0") && ms > 4000,
            "{label} did not play through the failover: {log}"
        );
    }
    assert!(
        adopted >= (50 - ffmpegs) as u64 && known >= 50,
        "the backup adopted {adopted} flows and knows {known}"
    );
}

#[test]
fn a_drained_edge_keeps_its_viewers_and_gets_no_new_ones() {
    let test = "a_drained_edge_keeps_its_viewers_and_gets_no_new_ones";
    if !available(test) {
        return;
    }
    let f = fleet();
    start_lb(&f, "lb", &lb_config("mh", &[&f.edges[0], &f.edges[1]]));
    wait_programmed(&f, "lb", 2);
    wait_stream(&f);
    play_bg(&f, "first", 12, 9.0);
    // Wait for the 12 flows in the connection table (read once a second).
    let seen = wait(Duration::from_secs(5), || {
        let st = status(&f);
        st["virtual_servers"][0]["real_servers"][0]["active"]
            .as_u64()
            .unwrap_or(0)
            + st["virtual_servers"][0]["real_servers"][1]["active"]
                .as_u64()
                .unwrap_or(0)
            >= 12
    });
    let before = status(&f);
    assert!(seen.is_some(), "{before:#}");
    let (edge1, edge2) = (flows(&before, 0), flows(&before, 1));
    assert!(edge1 > 0, "no first viewer on edge1: {before:#}");
    let programmed = before["virtual_servers"][0]["dr"]["programmed"]
        .as_u64()
        .unwrap();
    let out = admin_post(&f, "/drain", "198.18.0.11:1935");
    assert!(out.contains("drained"), "{out}");
    // Let the reprogram land, then ten more viewers: all on edge2.
    assert!(wait(Duration::from_secs(5), || {
        status(&f)["virtual_servers"][0]["dr"]["programmed"].as_u64() > Some(programmed)
    })
    .is_some());
    play_bg(&f, "second", 10, 3.0);
    let spread = wait(Duration::from_secs(6), || {
        flows(&status(&f), 1) >= edge2 + 10
    });
    let st = status(&f);
    assert!(spread.is_some(), "new viewers not all on edge2: {st:#}");
    assert_eq!(
        flows(&st, 0),
        edge1,
        "edge1 got new flows after the drain: {st:#}"
    );
    assert_eq!(st["virtual_servers"][0]["real_servers"][0]["weight"], 0);
    let s = summary(&f, "second", Duration::from_secs(30));
    assert_eq!(s["ok"], 10, "{s}");
    // The drained edge's viewers played on to the end.
    let s = summary(&f, "first", Duration::from_secs(30));
    assert_eq!(s["ok"], 12, "{s}\n{}", f.lab.log("first"));
    assert_eq!(s["stalls"], 0, "{s}");
}

#[test]
fn a_killed_edge_loses_only_its_viewers_and_new_ones_go_to_the_other() {
    let test = "a_killed_edge_loses_only_its_viewers_and_new_ones_go_to_the_other";
    if !available(test) {
        return;
    }
    let f = fleet();
    start_lb(&f, "lb", &lb_config("mh", &[&f.edges[0], &f.edges[1]]));
    wait_programmed(&f, "lb", 2);
    wait_stream(&f);
    play_bg(&f, "first", 16, 8.0);
    let active = |st: &serde_json::Value, rs: usize| {
        st["virtual_servers"][0]["real_servers"][rs]["active"]
            .as_u64()
            .unwrap_or(0)
    };
    let seen = wait(Duration::from_secs(5), || {
        let st = status(&f);
        active(&st, 0) + active(&st, 1) >= 16
    });
    let before = status(&f);
    assert!(seen.is_some(), "{before:#}");
    let (on_edge1, on_edge2) = (active(&before, 0), active(&before, 1));
    assert!(on_edge1 > 0 && on_edge2 > 0, "mh spread: {before:#}");
    let programmed = before["virtual_servers"][0]["dr"]["programmed"]
        .as_u64()
        .unwrap();
    f.lab.kill("edge1");
    // Its health check fails within delay_loop + connect_timeout: DOWN, and the datapath is
    // reprogrammed without it (new viewers arriving between the two still hash to it).
    let down = wait(Duration::from_secs(5), || {
        let st = status(&f);
        st["virtual_servers"][0]["real_servers"][0]["state"] == "DOWN"
            && st["virtual_servers"][0]["dr"]["programmed"].as_u64() > Some(programmed)
    });
    assert!(down.is_some(), "edge1 not DOWN: {:#}", status(&f));
    // The reprogram follows the flip at once or at the next tick (1 s); a SYN that arrives
    // before it still hashes to the dead edge and is refused (the player retries): DR cannot
    // retry another edge for it as the proxy does.
    std::thread::sleep(Duration::from_millis(1200));
    // New viewers all play, on edge2.
    play_bg(&f, "second", 8, 3.0);
    let s = summary(&f, "second", Duration::from_secs(30));
    assert_eq!(s["ok"], 8, "{s}\n{}", f.lab.log("second"));
    // Of the first viewers, exactly those on edge2 played to the end, without a stall; those
    // on the killed edge failed (a reset, not a hang).
    let s = summary(&f, "first", Duration::from_secs(30));
    assert_eq!(
        s["ok"].as_u64(),
        Some(on_edge2),
        "{s}\n{}",
        f.lab.log("first")
    );
    assert_eq!(s["failed"].as_u64(), Some(on_edge1), "{s}");
    assert_eq!(s["stalls"], 0, "{s}");
}

/// How many times the lb programmed its DR table.
fn programmed(f: &Fleet) -> u64 {
    status(f)["virtual_servers"][0]["dr"]["programmed"]
        .as_u64()
        .unwrap_or(0)
}

/// Posts an admin request on the lb host (`/drain` or `/enable` of a real server).
fn admin_post(f: &Fleet, path: &str, rs: &str) -> String {
    admin_post_on(f, &f.lb, path, rs)
}

#[test]
fn wlc_sends_new_viewers_to_the_least_loaded_edge() {
    let test = "wlc_sends_new_viewers_to_the_least_loaded_edge";
    if !available(test) {
        return;
    }
    let f = fleet();
    start_lb(&f, "lb", &lb_config("wlc", &[&f.edges[0], &f.edges[1]]));
    wait_programmed(&f, "lb", 2);
    wait_stream(&f);
    // edge2 drained: the first ten viewers all go to edge1.
    let p0 = programmed(&f);
    assert!(admin_post(&f, "/drain", "198.18.0.12:1935").contains("drained"));
    assert!(wait(Duration::from_secs(5), || programmed(&f) > p0).is_some());
    play_bg(&f, "first", 10, 12.0);
    assert!(
        wait(Duration::from_secs(6), || flows(&status(&f), 0) >= 10).is_some(),
        "{:#}",
        status(&f)
    );
    // edge2 back: it has no viewer, so wlc gives it the next ones (rr would split 5/5).
    let p1 = programmed(&f);
    let out = admin_post(&f, "/enable", "198.18.0.12:1935");
    assert!(out.contains("200"), "{out}");
    assert!(wait(Duration::from_secs(5), || programmed(&f) > p1).is_some());
    // One reading (once a second) shares out the turns by load.
    std::thread::sleep(Duration::from_millis(2500));
    let before = status(&f);
    let (e1, e2) = (flows(&before, 0), flows(&before, 1));
    assert_eq!(e2, 0, "{before:#}");
    play_bg(&f, "second", 10, 4.0);
    assert!(
        wait(Duration::from_secs(6), || {
            let st = status(&f);
            flows(&st, 0) + flows(&st, 1) >= e1 + e2 + 10
        })
        .is_some(),
        "{:#}",
        status(&f)
    );
    let st = status(&f);
    let to_edge2 = flows(&st, 1) - e2;
    assert!(
        to_edge2 >= 8,
        "wlc sent only {to_edge2} of 10 new viewers to the empty edge: {st:#}"
    );
    assert_eq!(st["virtual_servers"][0]["lb_algo"], "wlc", "{st:#}");
    let s = summary(&f, "second", Duration::from_secs(30));
    assert_eq!(s["ok"], 10, "{s}");
    let s = summary(&f, "first", Duration::from_secs(30));
    assert_eq!(s["ok"], 10, "{s}");
}

#[test]
fn persistence_and_the_sorry_server_work_in_dr() {
    let test = "persistence_and_the_sorry_server_work_in_dr";
    if !available(test) {
        return;
    }
    let f = fleet();
    // The origin stands in as the sorry server: on the segment, on the port, VIP on lo.
    let out = f
        .lab
        .exec(
            &f.origin,
            &[
                bin("edge").to_str().unwrap(),
                "dr-setup",
                "--vip",
                &VIP.to_string(),
            ],
        )
        .expect("dr-setup on the origin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = lb_config("rr", &[&f.edges[0], &f.edges[1]]).replace(
        "delay_loop = 0.5\n",
        &format!(
            "delay_loop = 0.5\npersistence_timeout = 60\nsorry_server = \"{}:1935\"\n",
            f.origin.ip
        ),
    );
    start_lb(&f, "lb", &cfg);
    wait_programmed(&f, "lb", 2);
    wait_stream(&f);
    // Persistence: every connection of this client goes to the edge its first one got (rr
    // alone would alternate).
    let s = play(&f, 6, 2.0);
    assert_eq!(s["ok"], 6, "{s}");
    let st = status(&f);
    let (e1, e2) = (flows(&st, 0), flows(&st, 1));
    assert!(
        e1.min(e2) == 0 && e1.max(e2) >= 6,
        "persistence did not hold: edge1 {e1}, edge2 {e2} flows: {st:#}"
    );
    // Both edges drained: new viewers go to the sorry server and play.
    let p0 = programmed(&f);
    for e in &f.edges {
        assert!(admin_post(&f, "/drain", &format!("{}:1935", e.ip)).contains("drained"));
    }
    assert!(wait(Duration::from_secs(5), || programmed(&f) > p0).is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let s = play(&f, 3, 2.0);
    assert_eq!(
        s["ok"],
        3,
        "sorry server did not serve: {s}\n{:#}",
        status(&f)
    );
    let st = status(&f);
    assert!(
        st["virtual_servers"][0]["dr"]["packets"]["sorry"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{st:#}"
    );
    let sessions = f.lab.log("origin").matches("play started").count();
    assert!(
        sessions >= 3,
        "origin saw {sessions} plays:\n{}",
        f.lab.log("origin")
    );
    // Edges back: the sorry server takes no more new viewers.
    let sorry_before = st["virtual_servers"][0]["dr"]["packets"]["sorry"]
        .as_u64()
        .unwrap_or(0);
    let p1 = programmed(&f);
    for e in &f.edges {
        assert!(admin_post(&f, "/enable", &format!("{}:1935", e.ip)).contains("200"));
    }
    assert!(wait(Duration::from_secs(5), || programmed(&f) > p1).is_some());
    std::thread::sleep(Duration::from_millis(1500));
    let (b1, b2) = {
        let st = status(&f);
        (flows(&st, 0), flows(&st, 1))
    };
    let s = play(&f, 3, 2.0);
    assert_eq!(s["ok"], 3, "{s}");
    let st = status(&f);
    assert!(flows(&st, 0) + flows(&st, 1) >= b1 + b2 + 3, "{st:#}");
    let sorry_after = st["virtual_servers"][0]["dr"]["packets"]["sorry"]
        .as_u64()
        .unwrap_or(0);
    // The sorry server's own flows may still send a few packets (closing); no new ones.
    assert!(
        sorry_after - sorry_before < 50,
        "sorry kept taking flows: {st:#}"
    );
}

/// seeds/002's own keepalived.conf, edge.conf and origin.conf (tests/fixtures/seeds002),
/// imported by `lb import-keepalived` and `edge import-srs`, with only their addresses moved
/// into the lab (the seed's VIP, real servers and origin to 198.18.0.x, eth2 to eth0) and the
/// admin API named: the lb takes the VIP by VRRP and forwards by DR to the edges, which pull
/// from the origin, and viewers play through the VIP.
#[test]
fn the_seeds_configs_imported_run_in_the_lab() {
    let test = "the_seeds_configs_imported_run_in_the_lab";
    if !available(test) {
        return;
    }
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seeds002");
    let import = |tool: &str, sub: &str, file: &str| -> String {
        let out = std::process::Command::new(bin(tool))
            .args([sub, fixtures.join(file).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {sub} {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let seed = std::fs::read_to_string(fixtures.join("keepalived.conf")).unwrap();
    let seed_vip = seed
        .split("virtual_ipaddress {")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the seed's VIP")
        .to_string();
    let seed_rs: Vec<String> = seed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("real_server "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(seed_rs.len(), 2);
    let edge_conf = std::fs::read_to_string(fixtures.join("edge.conf")).unwrap();
    let seed_origin = edge_conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("origin"))
        .and_then(|r| r.trim().trim_end_matches(';').split(':').next())
        .expect("the seed edge's origin")
        .to_string();

    let origin_toml = import("edge", "import-srs", "origin.conf");
    let edge_toml = import("edge", "import-srs", "edge.conf");
    let lb_toml = import("lb", "import-keepalived", "keepalived.conf");
    let f = fleet_from(true, &origin_toml, &|origin: &Host| {
        edge_toml.replace(&seed_origin, &origin.ip.to_string())
    });
    let mut lb_lab = lb_toml
        .replace(&seed_vip, &VIP.to_string())
        .replace(&seed_rs[0], &f.edges[0].ip.to_string())
        .replace(&seed_rs[1], &f.edges[1].ip.to_string())
        .replace("\"eth2\"", "\"eth0\"");
    lb_lab.insert_str(0, "admin_listen = \"127.0.0.1:9180\"\n");
    // Every seed address was moved: nothing of the seed's network is left.
    for a in seed_rs.iter().chain([&seed_vip, &seed_origin]) {
        assert!(!lb_lab.contains(a.as_str()), "{a} left in\n{lb_lab}");
    }
    println!("the seed's keepalived.conf, imported, in the lab:\n{lb_lab}");
    start_lb(&f, "lb", &lb_lab);
    assert!(
        wait(Duration::from_secs(10), || f.lab.has_addr(&f.lb, VIP)).is_some(),
        "the imported VRRP instance never held the VIP:\n{}",
        f.lab.log("lb")
    );
    // The seed's checks run every 6 s (delay_loop 6): allow a few rounds.
    let ok = wait(Duration::from_secs(30), || {
        let st = status(&f);
        st["virtual_servers"][0]["real_servers"]
            .as_array()
            .map(|a| a.iter().filter(|r| r["mac"].is_string()).count() == 2)
            .unwrap_or(false)
    });
    assert!(
        ok.is_some(),
        "the seed's real servers never came up: {:#}\n{}",
        status(&f),
        f.lab.log("lb")
    );
    wait_stream(&f);
    let s = play(&f, 10, 3.0);
    assert_eq!(s["ok"], 10, "{s}");
    assert_eq!(s["stalls"], 0, "{s}");
    let st = status(&f);
    assert_eq!(
        st["vrrp_instances"][0]["state"].as_str(),
        Some("MASTER"),
        "{st:#}"
    );
}
