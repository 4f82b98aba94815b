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

#[test]
fn token_signs_what_the_edge_accepts_and_names_bad_arguments() {
    let dir = std::env::temp_dir().join(format!("edgefleet-edge-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("edge.toml");
    std::fs::write(
        &conf,
        "[play]\ntoken_keys = [\"old-key-0123456789abcdef\", \"new-key-fedcba9876543210\"]\n",
    )
    .unwrap();
    let out = Command::new(EDGE)
        .args([
            "token",
            "live/cam",
            "--ttl",
            "60",
            "--net",
            "198.18.0.0/15",
            "--config",
        ])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Signed with the last (newest) key, for that network.
    let play = edge::token::PlayConfig {
        token_keys: vec!["new-key-fedcba9876543210".into()],
        token_exempt: vec![],
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let peer = "198.18.3.4".parse().unwrap();
    assert_eq!(play.check("live/cam", Some(&token), peer, now), Ok(()));
    assert!(play
        .check("live/cam", Some(&token), peer, now + 61)
        .is_err());
    for (args, want) in [
        (vec!["token", "cam"], "is not APP/STREAM"),
        (
            vec!["token", "live/cam", "--net", "bogus"],
            "--net \"bogus\"",
        ),
        (vec!["token", "live/cam"], "EDGEFLEET_TOKEN_KEY"),
    ] {
        let out = Command::new(EDGE)
            .args(&args)
            .arg("--config")
            .arg(&conf)
            .env_remove("EDGEFLEET_TOKEN_KEY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if want == "EDGEFLEET_TOKEN_KEY" {
            // With the config it signs; without config or key it says what to give.
            assert!(out.status.success(), "{err}");
            let out = Command::new(EDGE)
                .args(&args)
                .env_remove("EDGEFLEET_TOKEN_KEY")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(64));
            assert!(String::from_utf8_lossy(&out.stderr).contains(want));
            continue;
        }
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let short = dir.join("short.toml");
    std::fs::write(
        &short,
        "[play]\ntoken_keys = [\"short\"]\ntoken_exempt = [\"x\"]\n",
    )
    .unwrap();
    let out = Command::new(EDGE)
        .args(["--check", "--config"])
        .arg(&short)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("play.token_keys[0]") && err.contains("at least 16"),
        "{err}"
    );
    assert!(err.contains("play.token_exempt[0]"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
