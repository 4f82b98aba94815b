//! The `lb` binary as an operator runs it: --check, status, SIGHUP reload.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn tmp(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefleet-lb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    p
}

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn check_reports_every_problem_with_its_key() {
    let bad = tmp(
        "bad.toml",
        "[[virtual_server]]\naddress = \"127.0.0.1\"\nlb_algo = \"fastest\"\n[[virtual_server.real_server]]\naddress = \"127.0.0.1:1\"\nweight = -3\n",
    );
    let out = Command::new(LB)
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(err.contains("virtual_server[0].address"), "{err}");
    assert!(err.contains("virtual_server[0].lb_algo"), "{err}");
    assert!(
        err.contains("virtual_server[0].real_server[0].weight: -3"),
        "{err}"
    );

    let unknown = tmp(
        "unknown.toml",
        "admin_listen = \"127.0.0.1:0\"\nvirtual_servers = []\n",
    );
    let out = Command::new(LB)
        .args(["--check", "--config"])
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `virtual_servers`"));

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lb.toml");
    let out = Command::new(LB)
        .args(["--check", "--config", good])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    let out = Command::new(LB)
        .args(["status", "--json", "--admin", &admin.to_string()])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// One HTTP/1.0 request to the admin API: (status code, body).
fn http(admin: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: lb\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn servers(v: &serde_json::Value) -> usize {
    v["virtual_servers"][0]["real_servers"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0)
}

#[test]
fn sighup_reloads_and_a_bad_reload_keeps_the_running_config() {
    let (b1, b2) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (admin, vip) = (free(), free());
    let conf = |servers: &[SocketAddr]| {
        let mut t =
            format!("admin_listen = \"{admin}\"\n[[virtual_server]]\naddress = \"{vip}\"\n");
        for s in servers {
            t.push_str(&format!(
                "[[virtual_server.real_server]]\naddress = \"{s}\"\n"
            ));
        }
        t
    };
    let path = tmp("reload.toml", &conf(&[b1.local_addr().unwrap()]));
    let mut child = Command::new(LB)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let wait_for = |want: usize| {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if status(admin).map(|s| servers(&s)) == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    let result = std::panic::catch_unwind(|| {
        assert!(wait_for(1), "lb did not come up");
        let table = Command::new(LB)
            .args(["status", "--admin", &admin.to_string()])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&table.stdout).contains(&b1.local_addr().unwrap().to_string())
        );

        std::fs::write(
            &path,
            conf(&[b1.local_addr().unwrap(), b2.local_addr().unwrap()]),
        )
        .unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        assert!(wait_for(2), "SIGHUP did not add the second real server");

        // The admin API: drain, weight, enable, and errors that say what is wrong.
        let rs = b1.local_addr().unwrap();
        let q = format!("vs={vip}&rs={rs}");
        let (code, body) = http(admin, "POST", &format!("/drain?{q}"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            status(admin).unwrap()["virtual_servers"][0]["real_servers"][0]["weight"],
            0
        );
        let (code, _) = http(admin, "POST", &format!("/weight?{q}&value=7"));
        assert_eq!(code, 200);
        assert_eq!(
            status(admin).unwrap()["virtual_servers"][0]["real_servers"][0]["weight"],
            7
        );
        let (code, _) = http(admin, "POST", &format!("/enable?{q}"));
        assert_eq!(code, 200);
        assert_eq!(
            status(admin).unwrap()["virtual_servers"][0]["real_servers"][0]["weight"],
            1
        );
        let (code, body) = http(admin, "POST", &format!("/weight?{q}&value=-1"));
        assert_eq!(code, 400);
        assert!(body.contains("value=\"-1\""), "{body}");
        let (code, body) = http(admin, "POST", "/drain?vs=127.0.0.1:1&rs=127.0.0.1:2");
        assert_eq!(code, 400);
        assert!(body.contains("no virtual server 127.0.0.1:1"), "{body}");
        let (code, body) = http(admin, "GET", "/metrics");
        assert_eq!(code, 200);
        assert!(
            body.contains(&format!("edgefleet_rs_up{{vs=\"{vip}\",rs=\"{rs}\"}} 1")),
            "{body}"
        );

        std::fs::write(&path, "this is = not [valid").unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(wait_for(2), "a bad reload changed the running config");
    });
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    result.unwrap();
}
