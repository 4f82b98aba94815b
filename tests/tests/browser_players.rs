//! The browser players themselves (tests/browser/play.mjs: hls.js and mpegts.js in headless
//! Chromium), on known-good live streams that ffmpeg makes and tests/browser/fixture-server.mjs
//! serves with CORS — so an edge HTTP delivery test that fails in the browser points at the
//! edge, not at the harness. Screenshots: target/test-artifacts/browser-fixture-{hls,flv}.png.

use edgefleet_tests::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// fixture-server.mjs in its own process group, with its ffmpegs; the group is killed when
/// dropped.
struct Fixture {
    child: std::process::Child,
    hls: String,
    flv: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn fixture() -> Fixture {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("node")
        .arg(browser_dir().join("fixture-server.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("spawn node fixture-server.mjs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut f = Fixture {
        child,
        hls: String::new(),
        flv: String::new(),
    };
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("fixture-server.mjs said nothing in 30 s");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("fixture-server.mjs: {e}: {line}"));
    assert_eq!(
        v["ready"], true,
        "the fixture's HLS never got 3 segments: {v}"
    );
    f.hls = v["hls"].as_str().unwrap().to_string();
    f.flv = v["flv"].as_str().unwrap().to_string();
    f
}

/// One test, one fixture, one browser at a time: light enough for a loaded 2-core machine.
#[test]
fn the_browser_players_play_known_good_live_hls_and_http_flv_and_report_absent_ones() {
    let test = "the_browser_players_play_known_good_live_hls_and_http_flv_and_report_absent_ones";
    if !have_browser(test) || !have("ffmpeg", test) {
        return;
    }
    let f = fixture();
    for (kind, url) in [("hls", &f.hls), ("flv", &f.flv)] {
        let shot = artifacts_dir().join(format!("browser-fixture-{kind}.png"));
        let v = browser_play(url, kind, &shot, 3.0).unwrap();
        eprintln!("{kind}: {v}");
        assert_eq!(v["ok"], true, "{kind} did not play: {v}");
        assert_eq!(v["videoWidth"], 640, "{v}");
        assert_eq!(v["videoHeight"], 360, "{v}");
        assert!(v["advanced"].as_f64().unwrap() >= 3.0, "{v}");
        assert!(shot.exists(), "no screenshot at {}", shot.display());
    }
    for (kind, url) in [("hls", &f.hls), ("flv", &f.flv)] {
        let url = url.replace("/test.", "/absent.");
        let shot = artifacts_dir().join(format!("browser-fixture-absent-{kind}.png"));
        let v = browser_play(&url, kind, &shot, 1.0).unwrap();
        eprintln!("absent {kind}: {v}");
        assert_eq!(v["ok"], false, "{v}");
        let errors = v["errors"].to_string();
        assert!(
            errors.contains("404"),
            "{kind}: no 404 among the errors: {v}"
        );
    }
}
