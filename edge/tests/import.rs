//! `edge import-srs` as an operator runs it on the seed's origin.conf and edge.conf (SRS 2):
//! the output passes `edge --check` with the values carried over; what the edge has no use
//! for is one comment each and fails `--strict`; a malformed file names its line.

use edge::{EdgeConfig, Mode};
use std::process::{Command, Output};

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

fn seed(name: &str) -> String {
    format!(
        "{}/../tests/fixtures/seeds002/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn import(args: &[&str]) -> Output {
    Command::new(EDGE)
        .arg("import-srs")
        .args(args)
        .output()
        .unwrap()
}

fn tmp(name: &str, body: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefleet-edge-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Imports `file`, checks the output with `edge --check`, returns it parsed and as text.
fn import_and_check(file: &str) -> (EdgeConfig, String) {
    let out = import(&[file]);
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let path = tmp(
        &format!("{}.toml", file.rsplit('/').next().unwrap()),
        toml.as_bytes(),
    );
    let check = Command::new(EDGE)
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&check.stderr)
    );
    (EdgeConfig::parse(&toml).unwrap(), toml)
}

#[test]
fn the_seed_origin_and_edge_import_with_their_values() {
    let (c, toml) = import_and_check(&seed("edge.conf"));
    assert_eq!(c.mode, Mode::Remote);
    // The seed's origin (read from the verbatim seed: its deployment address stays there).
    let seed_text = std::fs::read_to_string(seed("edge.conf")).unwrap();
    let origin = seed_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("origin"))
        .map(|v| v.trim().trim_end_matches(';').to_string())
        .unwrap();
    let (host, port) = origin.rsplit_once(':').unwrap();
    assert_eq!(c.origin, [(host.to_string(), port.parse().unwrap())]);
    assert_eq!(c.listen, "0.0.0.0:1935".parse().unwrap());
    assert_eq!(c.max_connections, 1000);
    assert_eq!(toml.matches("# srs: ").count(), 2, "{toml}");
    assert!(
        toml.contains("# srs: pid objs/edge.pid: not needed"),
        "{toml}"
    );

    let (c, toml) = import_and_check(&seed("origin.conf"));
    assert_eq!(c.mode, Mode::Local);
    assert!(c.origin.is_empty());
    assert_eq!(c.max_connections, 1000);
    assert!(!c.gop_cache);
    assert_eq!(c.queue_length.as_secs(), 10);
    assert_eq!(c.mw_latency.as_millis(), 100);
    for k in [
        "pid objs/origin.pid",
        "srs_log_file ./objs/origin.log",
        "vhost min_latency on",
        "vhost mr { ... }",
        "vhost tcp_nodelay on",
    ] {
        assert_eq!(
            toml.matches(&format!("# srs: {k}: ")).count(),
            1,
            "{k}\n{toml}"
        );
    }
    // The publish default differs from SRS's: said once, not counted as left out.
    assert!(toml.contains("# srs: (no security block)"), "{toml}");

    let strict = import(&["--strict", &seed("origin.conf")]);
    assert_eq!(strict.status.code(), Some(2));
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(err.contains("5 directive(s) not carried over"), "{err}");
    assert!(err.contains("origin.conf:5: pid objs/origin.pid"), "{err}");
}

#[test]
fn malformed_files_name_the_line_and_never_panic() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "semi.conf",
            b"listen 1935;\n\nmax_connections 1000\n",
            "semi.conf:3: `max_connections 1000` is not ended by `;`",
        ),
        (
            "open.conf",
            b"vhost __defaultVhost__ {\n mode remote;\n",
            "open.conf:1: this block is not closed",
        ),
        (
            "value.conf",
            b"vhost __defaultVhost__ {\n gop_cache maybe;\n}\n",
            "value.conf:2: gop_cache maybe",
        ),
        (
            "binary.conf",
            b"\x00\x01\x02{;}\xff",
            "binary.conf:1: control byte",
        ),
        (
            "loop.conf",
            b"include loop.conf;\n",
            "loop.conf:1: include loop",
        ),
    ];
    for (name, body, want) in cases {
        let p = tmp(name, body);
        let out = import(&[p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
    }
}
