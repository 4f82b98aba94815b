//! The `edge` binary as an operator runs it: --check and its errors.

use std::process::Command;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

#[test]
fn check_accepts_the_examples_and_names_bad_keys() {
    for f in [
        "examples/origin.toml",
        "examples/edge.toml",
        "../vagrant/config/origin.toml",
        "../vagrant/config/edge.toml",
    ] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(EDGE)
            .args(["--check", "--config", &path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = std::env::temp_dir().join(format!("edgefleet-edge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "mode = \"remote\"\nqueue_length = -1\n[publish]\nallow = [\"nope\"]\n",
    )
    .unwrap();
    let out = Command::new(EDGE)
        .arg("--check")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(
        err.contains("origin:")
            && err.contains("queue_length:")
            && err.contains("publish.allow[0]:"),
        "{err}"
    );
    let out = Command::new(EDGE)
        .args(["--check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn tools_reject_bad_urls() {
    let out = Command::new(EDGE)
        .args(["play", "http://x/live/s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rtmp://"));
    let out = Command::new(EDGE)
        .args(["publish", "/nonexistent.flv", "rtmp://127.0.0.1:1/live/s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
