//! `lb import-keepalived` as an operator runs it: the seed's keepalived.conf (LVS-DR in front
//! of two SRS edges) imports into a config lb accepts, with its values carried over; what
//! cannot be carried over is one comment each and fails `--strict`; a malformed file is an
//! error naming its line.

use lb::config::{Algo, Kind};
use lb::LbConfig;
use std::process::{Command, Output};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/seeds002/keepalived.conf"
);
const UNSUPPORTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/keepalived-unsupported.conf"
);

/// The first argument of the seed's first `directive` line (or, for a block such as
/// `virtual_ipaddress {`, its first entry): the value the import must carry over, read from the
/// verbatim seed rather than repeated here (the seed's deployment addresses stay in the seed).
fn seed_arg(directive: &str) -> String {
    let text = std::fs::read_to_string(SEED).unwrap();
    let mut lines = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}'));
    lines
        .find(|l| l.split_whitespace().next() == Some(directive))
        .and_then(|l| match l.split_whitespace().nth(1) {
            Some("{") | None => lines.find(|l| !l.is_empty()).map(str::to_string),
            Some(v) => Some(v.to_string()),
        })
        .unwrap_or_else(|| panic!("no {directive} in the seed"))
}

fn import(args: &[&str]) -> Output {
    Command::new(LB)
        .arg("import-keepalived")
        .args(args)
        .output()
        .unwrap()
}

fn tmp(name: &str, body: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefleet-lb-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn the_seed_keepalived_conf_imports_with_its_values() {
    let out = import(&[SEED]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let toml = String::from_utf8(out.stdout).unwrap();
    let c = LbConfig::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let v = &c.vrrp_instances[0];
    assert_eq!(v.name, "VI_1");
    assert!(v.start_as_master);
    assert_eq!(v.interface, "eth2");
    assert_eq!((v.vrid, v.priority, v.version), (51, 100, 2));
    assert_eq!(v.advert_int.as_secs(), 1);
    let vip: std::net::Ipv4Addr = seed_arg("virtual_ipaddress").parse().unwrap();
    assert_eq!(v.vips, [(std::net::IpAddr::from(vip), 32)]);
    assert_eq!(v.auth_pass.as_deref(), Some("1111"));
    let vs = &c.virtual_servers[0];
    assert_eq!(
        vs.address,
        std::net::SocketAddr::new(seed_arg("virtual_server").parse().unwrap(), 1935)
    );
    assert_eq!(vs.algo, Algo::Rr);
    assert_eq!(vs.kind, Kind::Dr);
    assert_eq!(vs.delay_loop.as_secs(), 6);
    assert_eq!(vs.persistence.as_ref().unwrap().timeout.as_secs(), 50);
    let rs: Vec<String> = vs
        .real_servers
        .iter()
        .map(|r| r.address.to_string())
        .collect();
    let text = std::fs::read_to_string(SEED).unwrap();
    let want: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("real_server "))
        .map(|l| {
            let mut w = l.split_whitespace();
            format!("{}:{}", w.next().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(want.len(), 2, "the seed has two real servers");
    assert_eq!(rs, want);
    for r in &vs.real_servers {
        assert_eq!(r.weight, 1);
        let ck = r.check.as_ref().unwrap();
        assert_eq!(ck.kind.key(), "tcp_check");
        assert_eq!((ck.connect_timeout.as_secs(), ck.retry), (3, 3));
        assert_eq!(ck.delay_before_retry.as_secs(), 3);
    }
    // global_defs and nat_mask mean nothing here: one comment each, and --strict says so.
    assert_eq!(toml.matches("# keepalived: ").count(), 2, "{toml}");
    assert!(toml.contains("# keepalived: nat_mask 255.255.255.0: not needed"));
    let strict = import(&["--strict", SEED]);
    assert_eq!(strict.status.code(), Some(2));
    assert_eq!(String::from_utf8(strict.stdout).unwrap(), toml);
}

#[test]
fn unsupported_keywords_are_one_comment_each_and_fail_strict() {
    let out = import(&[UNSUPPORTED]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    for k in [
        "user srs: not supported",
        "virtual_ipaddress 127.0.0.200/32 label lo:1: not supported",
        "lvs_method NAT: NAT does not exist here",
        "quorum 1: not supported",
        "digest 9b3a0c85a887a256d6939da88aabd8cd: not supported",
    ] {
        assert_eq!(
            toml.matches(&format!("# keepalived: {k}")).count(),
            1,
            "{k}\n{toml}"
        );
    }
    assert_eq!(toml.matches("# keepalived: ").count(), 5, "{toml}");
    // PROXY kind on loopback: `lb --check` accepts it on any host.
    let file = tmp("imported.toml", toml.as_bytes());
    let check = Command::new(LB)
        .args(["--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&check.stderr)
    );
    let c = LbConfig::parse(&toml).unwrap();
    let vs = &c.virtual_servers[0];
    assert_eq!((vs.kind, vs.algo), (Kind::Proxy, Algo::Wlc));
    assert_eq!(vs.persistence.as_ref().unwrap().prefix_v4, 24);
    assert_eq!(vs.sorry_server, Some("127.0.0.1:1936".parse().unwrap()));
    let rs = &vs.real_servers[0];
    assert!(rs.inhibit_on_failure);
    let ck = rs.check.as_ref().unwrap();
    assert_eq!(
        (ck.kind.key(), ck.connect_port, ck.retry),
        ("http_get", Some(1985), 2)
    );
    assert!(c.vrrp_instances[0].nopreempt);
    // vrrp_script + track_script carry over and run.
    let t = &c.vrrp_instances[0].track_script[0];
    assert_eq!(t.script.name, "chk_srs");
    assert_eq!(t.script.argv, ["/usr/local/bin/check_srs.sh"]);
    assert_eq!(t.script.interval.as_secs(), 2);

    let strict = import(&["--strict", UNSUPPORTED]);
    assert_eq!(strict.status.code(), Some(2));
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        err.contains("keepalived-unsupported.conf:5: user srs"),
        "{err}"
    );
    assert!(err.contains("5 keyword(s) not carried over"), "{err}");
}

#[test]
fn malformed_files_name_the_line_and_never_panic() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "unbalanced.conf",
            b"vrrp_instance VI_1 {\n state MASTER\n",
            "unbalanced.conf:1: this block is not closed",
        ),
        (
            "close.conf",
            b"global_defs {\n}\n}\n",
            "close.conf:3: `}` closes no block",
        ),
        (
            "quote.conf",
            b"vrrp_instance VI_1 {\n notify \"/bin/x\n}\n",
            "quote.conf:2: unterminated quoted string",
        ),
        (
            "value.conf",
            b"vrrp_instance VI_1 {\n interface eth0\n priority high\n}\n",
            "value.conf:3: priority high",
        ),
        (
            "binary.conf",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\n\xff\xfe{{",
            "binary.conf:1: control byte",
        ),
        (
            "loop.conf",
            b"include loop.conf\n",
            "loop.conf:1: include loop",
        ),
    ];
    for (name, body, want) in cases {
        let p = tmp(name, body);
        let out = import(&[p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let deep = tmp("deep.conf", "a {\n".repeat(100_000).as_bytes());
    let out = import(&[deep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deeper than"));
}

const TRACK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/keepalived-track.conf"
);

#[test]
fn scripts_sync_groups_and_misc_check_import_and_pass_check() {
    let out = import(&["--strict", TRACK]);
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "nothing is left out: {}\n{toml}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(toml.matches("# keepalived: ").count(), 0, "{toml}");
    let file = tmp("track.toml", toml.as_bytes());
    let check = Command::new(LB)
        .args(["--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&check.stderr)
    );
    let c = LbConfig::parse(&toml).unwrap();
    let [v1, v2] = &c.vrrp_instances[..] else {
        panic!("two instances: {toml}")
    };
    // sync_group_tracking_weight: the weights stay.
    assert_eq!(
        (v1.track_script[0].weight, v2.track_script[0].weight),
        (-60, -40)
    );
    let s = &v1.track_script[0].script;
    assert_eq!(s.argv, ["/bin/sh", "-c", "test -e /run/edgefleet/edge.ok"]);
    assert_eq!((s.rise, s.fall, s.timeout.as_secs()), (2, 2, 2));
    let g = v2.sync_group.as_ref().unwrap();
    assert!(g.tracking_weight);
    assert_eq!(g.members, ["VI_1", "VI_2"]);
    assert_eq!(
        g.notify_fault.as_deref(),
        Some("/usr/bin/logger group fault")
    );
    let ck = c.virtual_servers[0].real_servers[0].check.as_ref().unwrap();
    assert_eq!(ck.kind.key(), "misc_check");
    assert_eq!(ck.warmup.as_secs(), 3);
}
