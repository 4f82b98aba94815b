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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("virtual_servers: unknown key (the keys here: admin_listen,"),
        "{err}"
    );

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

/// One HTTP/1.0 request with extra header lines (each "Name: value").
fn http_with(admin: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: lb\r\nContent-Length: 0\r\n{extra}\r\n"
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

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An lb process whose stderr goes to a file; killed (SIGTERM) when dropped.
struct Lb {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Lb {
    fn spawn(cmd: Command, name: &str) -> Lb {
        Self::spawn_logging(cmd, name, "info")
    }

    /// [`Lb::spawn`] with `filter` as `RUST_LOG`.
    fn spawn_logging(mut cmd: Command, name: &str, filter: &str) -> Lb {
        let log = tmp(&format!("{name}.log"), "");
        cmd.env_remove("EDGEFLEET_LB_ADMIN_TOKEN")
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Lb {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far, without terminal colour codes.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ parameters final-letter
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Waits until the log contains `what`.
    fn wait_log(&self, what: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn vs_conf(admin: &str, vip: SocketAddr, rs: SocketAddr, extra: &str) -> String {
    format!("admin_listen = \"{admin}\"\n{extra}\n[[virtual_server]]\naddress = \"{vip}\"\n[[virtual_server.real_server]]\naddress = \"{rs}\"\n")
}

#[test]
fn a_non_loopback_admin_needs_a_token_file_only_lb_can_read() {
    let port = free().port();
    let (vip, rs) = (free(), free());
    let run = |conf: &std::path::Path, check: bool, env: Option<&str>| {
        let mut c = Command::new(LB);
        if check {
            c.arg("--check");
        }
        c.arg("--config")
            .arg(conf)
            .env_remove("EDGEFLEET_LB_ADMIN_TOKEN");
        if let Some(t) = env {
            c.env("EDGEFLEET_LB_ADMIN_TOKEN", t);
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // 0.0.0.0 without a token: refused by --check and at start, naming admin_listen.
    let open = tmp(
        "open-admin.toml",
        &vs_conf(&format!("0.0.0.0:{port}"), vip, rs, ""),
    );
    for check in [true, false] {
        let (code, err) = run(&open, check, None);
        assert_eq!(code, Some(64), "check={check}: {err}");
        assert!(
            err.contains(&format!(
                "admin_listen = \"0.0.0.0:{port}\" is not a loopback address"
            )),
            "{err}"
        );
    }
    // The environment is a token source.
    let (code, err) = run(&open, true, Some("from-env"));
    assert_eq!(code, Some(0), "{err}");
    // A token file other users can read is refused, naming the file and its mode.
    let token = tmp("lb.token", "s3cret-token\n");
    set_mode(&token, 0o644);
    let with_file = tmp(
        "file-admin.toml",
        &vs_conf(
            &format!("0.0.0.0:{port}"),
            vip,
            rs,
            &format!("admin_token_file = \"{}\"", token.display()),
        ),
    );
    for check in [true, false] {
        let (code, err) = run(&with_file, check, None);
        assert_eq!(code, Some(64), "check={check}: {err}");
        assert!(
            err.contains(&format!("admin_token_file {}: mode 0644", token.display())),
            "{err}"
        );
    }
    set_mode(&token, 0o600);
    let (code, err) = run(&with_file, true, None);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn admin_writes_need_the_token_and_foreign_origins_are_refused() {
    let port = free().port();
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (vip, rs) = (free(), backend.local_addr().unwrap());
    let token = tmp("writes.token", "right-token\n");
    set_mode(&token, 0o600);
    // Bound on every address; the test only ever sends to 127.0.0.1.
    let conf = tmp(
        "writes.toml",
        &vs_conf(
            &format!("0.0.0.0:{port}"),
            vip,
            rs,
            &format!("admin_token_file = \"{}\"", token.display()),
        ),
    );
    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    let lb = Lb::spawn(cmd, "writes");
    assert!(lb.wait_log("admin API listening"), "{}", lb.log());
    let q = format!("/drain?vs={vip}&rs={rs}");

    let (code, body) = http_with(admin, "POST", &q, &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no bearer token"), "{body}");
    let (code, body) = http_with(admin, "POST", &q, &["Authorization: Bearer wrong-token"]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("wrong bearer token"), "{body}");
    assert_eq!(
        status(admin).unwrap()["virtual_servers"][0]["real_servers"][0]["weight"],
        1,
        "a refused drain changed the weight"
    );
    let (code, body) = http_with(admin, "POST", &q, &["Authorization: Bearer right-token"]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        status(admin).unwrap()["virtual_servers"][0]["real_servers"][0]["weight"],
        0
    );
    // A browser page elsewhere: refused, even with the token, reads too.
    let evil = "Origin: http://evil.example";
    let auth = "Authorization: Bearer right-token";
    let (code, _) = http_with(
        admin,
        "POST",
        &format!("/enable?vs={vip}&rs={rs}"),
        &[evil, auth],
    );
    assert_eq!(code, 403);
    let (code, _) = http_with(admin, "GET", "/status", &[evil]);
    assert_eq!(code, 403);
    let (code, _) = http_with(admin, "GET", "/status", &["Origin: null"]);
    assert_eq!(code, 403);
    // The admin's own origin is fine.
    let own = format!("Origin: http://{admin}");
    let (code, body) = http_with(
        admin,
        "POST",
        &format!("/enable?vs={vip}&rs={rs}"),
        &[&own, auth],
    );
    assert_eq!(code, 200, "{body}");

    // `lb status` sends the token from --token-file (the status read works without it too).
    let out = Command::new(LB)
        .args([
            "status",
            "--json",
            "--admin",
            &admin.to_string(),
            "--token-file",
        ])
        .arg(&token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Who asked, what, and the result; refusals at WARN with the reason.
    assert!(lb.wait_log("drained"), "{}", lb.log());
    let log = lb.log();
    let line = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no log line with {what:?}:\n{log}"))
            .to_string()
    };
    let done = line("drained");
    assert!(
        done.contains("INFO") && done.contains("peer=127.0.0.1:"),
        "{done}"
    );
    assert!(
        done.contains("action=\"/drain\"") || done.contains("action=/drain"),
        "{done}"
    );
    let refused = line("wrong bearer token");
    assert!(
        refused.contains("WARN") && refused.contains("peer=127.0.0.1:"),
        "{refused}"
    );
    let cross = line("cross-origin");
    assert!(
        cross.contains("WARN") && cross.contains("evil.example"),
        "{cross}"
    );
}

/// `lb` started under `ulimit` settings (bash's builtin).
fn lb_with_ulimit(ulimit: &str, conf: &std::path::Path) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
        .arg(LB)
        .arg("--config")
        .arg(conf);
    c
}

fn nofile_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_one_and_logged() {
    let (admin, vip, rs) = (free(), free(), free());
    let conf = tmp("rlimit.toml", &vs_conf(&admin.to_string(), vip, rs, ""));
    let lb = Lb::spawn(lb_with_ulimit("-S -n 1024", &conf), "rlimit");
    assert!(lb.wait_log("admin API listening"), "{}", lb.log());
    let (soft, hard) = nofile_limits(lb.pid());
    assert_eq!(soft, hard, "soft limit not raised to the hard one");
    let want = format!("open-files limit (soft RLIMIT_NOFILE): 1024 -> {hard}");
    assert!(lb.log().contains(&want), "no {want:?} in:\n{}", lb.log());
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name "(...)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    use std::io::Read;
    // A backend that says "a" and keeps each connection open.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let rs = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in backend.incoming().flatten() {
            let _ = s.write_all(b"a\n");
            held.push(s);
        }
    });
    let (admin, vip) = (free(), free());
    let conf = tmp(
        "emfile.toml",
        &vs_conf(&admin.to_string(), vip, rs, "admin_timeout = 60"),
    );
    // Soft and hard limit 64: lb cannot raise it, and runs out with a few dozen connections.
    let lb = Lb::spawn(lb_with_ulimit("-n 64", &conf), "emfile");
    assert!(lb.wait_log("admin API listening"), "{}", lb.log());
    assert!(lb.log().contains("64 -> 64"), "{}", lb.log());
    let connect = |to: SocketAddr, n: usize, into: &mut Vec<std::net::TcpStream>| {
        for _ in 0..n {
            if let Ok(s) = std::net::TcpStream::connect(to) {
                into.push(s);
            }
        }
    };
    // Viewers until lb cannot open sockets to the real server (those are refused, the real
    // server not blamed), then idle admin connections that take every descriptor left, then
    // viewers that stay queued: both accept loops now fail with EMFILE on every try.
    let mut flood = Vec::new();
    connect(vip, 60, &mut flood);
    std::thread::sleep(Duration::from_millis(300));
    connect(admin, 60, &mut flood);
    std::thread::sleep(Duration::from_millis(300));
    connect(vip, 10, &mut flood);
    assert!(
        lb.wait_log("RLIMIT_NOFILE is reached"),
        "no EMFILE warning:\n{}",
        lb.log()
    );
    // Out of descriptors with connections waiting, the loop sleeps instead of spinning: over
    // 3 s it uses well under a core (a spinning loop takes all of one).
    let before = cpu_seconds(lb.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(lb.pid()) - before;
    assert!(
        used < 1.5,
        "lb used {used:.2} CPU s in 3 s out of descriptors"
    );
    let warnings = lb.log().matches("accept failed; backing off").count();
    assert!(
        warnings <= 3,
        "{warnings} accept warnings in a few seconds:\n{}",
        lb.log()
    );
    // The viewers leave: a new one is served again, and the edge was not blamed.
    drop(flood);
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = String::new();
    while Instant::now() < end {
        if let Ok(mut s) = std::net::TcpStream::connect(vip) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 2];
            if s.read_exact(&mut b).is_ok() {
                got = String::from_utf8_lossy(&b).into_owned();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        got,
        "a\n",
        "no viewer served after the flood:\n{}",
        lb.log()
    );
    // The admin loop may still be in its backoff (up to a second) when the viewers have
    // gone, and the flood's admin connections are closed as lb accepts them: ask again
    // for a few seconds.
    let end = Instant::now() + Duration::from_secs(10);
    let st = loop {
        match status(admin) {
            Some(st) => break st,
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(300)),
            None => panic!("no status within 10 s after the flood:\n{}", lb.log()),
        }
    };
    assert_eq!(
        st["virtual_servers"][0]["real_servers"][0]["state"], "UP",
        "lb's own EMFILE marked the real server down: {st}"
    );
}

/// `lb ARGS...`: (exit code, stdout, stderr), without a token in the environment.
fn lb_cmd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(LB)
        .args(args)
        .env_remove("EDGEFLEET_LB_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the lb at `admin` answers `lb status`.
fn wait_status(admin: SocketAddr) -> Option<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Some(s) = status(admin) {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn drain_enable_and_weight_from_the_command_line() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (admin, vip, rs) = (free(), free(), backend.local_addr().unwrap());
    let token = tmp("cli-writes.token", "cli-token\n");
    set_mode(&token, 0o600);
    let conf_text = |weight: u32| {
        format!(
            "admin_listen = \"{admin}\"\nadmin_token_file = \"{}\"\n[[virtual_server]]\naddress = \"{vip}\"\n[[virtual_server.real_server]]\naddress = \"{rs}\"\nweight = {weight}\n",
            token.display()
        )
    };
    let conf = tmp("cli-writes.toml", &conf_text(1));
    let conf_s = conf.to_str().unwrap();
    let (vs_s, rs_s, admin_s) = (vip.to_string(), rs.to_string(), admin.to_string());
    let target = ["--vs", &vs_s, "--rs", &rs_s];
    let with = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd];
        a.extend_from_slice(&target);
        a.extend_from_slice(extra);
        lb_cmd(&a)
    };
    let rs0 = |st: &serde_json::Value| st["virtual_servers"][0]["real_servers"][0].clone();

    // Not running: the reason, exit 1.
    let (code, _, err) = with("drain", &["--admin", &admin_s]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot reach the admin API") && err.contains("is lb running?"),
        "{err}"
    );

    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    let mut lb = Lb::spawn(cmd, "cli-writes");
    assert!(
        wait_status(admin).is_some(),
        "lb did not come up:\n{}",
        lb.log()
    );

    // No token: the server's 401 and its reason, exit 1, nothing changed.
    let (code, out, err) = with("drain", &["--admin", &admin_s]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("401") && err.contains("no bearer token"),
        "{err}"
    );
    assert_eq!(rs0(&status(admin).unwrap())["drained"], false);

    // With the token: one line saying what happened.
    let token_s = token.to_str().unwrap();
    let (code, out, err) = with("drain", &["--admin", &admin_s, "--token-file", token_s]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&format!("{vip} -> {rs}: drained")), "{out}");
    let r = rs0(&status(admin).unwrap());
    assert_eq!(
        (
            r["drained"].clone(),
            r["weight"].clone(),
            r["configured_weight"].clone()
        ),
        (true.into(), 0.into(), 1.into()),
        "{r}"
    );
    let (_, table, _) = lb_cmd(&["status", "--admin", &admin_s]);
    let line = table
        .lines()
        .find(|l| l.contains(&rs_s))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with("UP,DRAINED"), "{table}");
    let (_, metrics) = http(admin, "GET", "/metrics");
    assert!(
        metrics.contains(&format!(
            "edgefleet_rs_drained{{vs=\"{vip}\",rs=\"{rs}\"}} 1"
        )),
        "{metrics}"
    );

    // A reload keeps the drain.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lb.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(lb.wait_log("configuration reloaded"), "{}", lb.log());
    assert_eq!(rs0(&status(admin).unwrap())["drained"], true);

    // The address and the token from --config; a weight ends the drain.
    let (code, out, err) = with("weight", &["--value", "3", "--config", conf_s]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("weight 3, drain ended"), "{out}");
    let r = rs0(&status(admin).unwrap());
    assert_eq!(
        (r["drained"].clone(), r["weight"].clone()),
        (false.into(), 3.into()),
        "{r}"
    );
    let (code, out, err) = with("enable", &["--config", conf_s]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("enabled (configured weight 1)"), "{out}");
    assert_eq!(rs0(&status(admin).unwrap())["weight"], 1);

    // Unknown servers: the server's reason.
    let (code, _, err) = lb_cmd(&[
        "drain",
        "--vs",
        &vs_s,
        "--rs",
        "127.0.0.1:1",
        "--config",
        conf_s,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("no real server 127.0.0.1:1 in {vip}")),
        "{err}"
    );
    let (code, _, err) = lb_cmd(&[
        "enable", "--vs", "[::1]:1", "--rs", &rs_s, "--config", conf_s,
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no virtual server [::1]:1"), "{err}");

    // A drain does not survive a restart; the config's weight 0 does, and is not "drained".
    let (code, _, err) = with("drain", &["--config", conf_s]);
    assert_eq!(code, Some(0), "{err}");
    drop(lb);
    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    lb = Lb::spawn(cmd, "cli-writes-restarted");
    let r = rs0(&wait_status(admin).unwrap_or_else(|| panic!("no restart:\n{}", lb.log())));
    assert_eq!(
        (r["drained"].clone(), r["weight"].clone()),
        (false.into(), 1.into()),
        "{r}"
    );
    drop(lb);
    std::fs::write(&conf, conf_text(0)).unwrap();
    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    let lb = Lb::spawn(cmd, "cli-writes-weight0");
    let r = rs0(&wait_status(admin).unwrap_or_else(|| panic!("no restart:\n{}", lb.log())));
    assert_eq!(
        (
            r["drained"].clone(),
            r["weight"].clone(),
            r["configured_weight"].clone()
        ),
        (false.into(), 0.into(), 0.into()),
        "{r}"
    );
    let (_, table, _) = lb_cmd(&["status", "--admin", &admin_s]);
    assert!(!table.contains("DRAINED"), "{table}");
    let (code, out, _) = with("enable", &["--config", conf_s]);
    assert_eq!(code, Some(0));
    assert!(out.contains("the config's weight is 0"), "{out}");
}

/// A socket standing in for systemd's notify socket.
struct Notify {
    sock: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Notify {
    fn bind(name: &str) -> Notify {
        let path = tmp(name, "");
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify { sock, path }
    }

    /// The messages that arrive within `d`.
    fn during(&self, d: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let end = Instant::now() + d;
        let mut buf = [0u8; 512];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        seen
    }

    /// Reads messages until one starts with `what` (within 10 s); returns those read.
    fn until(&self, what: &str) -> Result<Vec<String>, Vec<String>> {
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = m.starts_with(what);
                seen.push(m);
                if done {
                    return Ok(seen);
                }
            }
        }
        Err(seen)
    }
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let (admin, vip, rs) = (free(), free(), free());
    let conf = tmp("notify.toml", &vs_conf(&admin.to_string(), vip, rs, ""));
    let notify = Notify::bind("notify.sock");
    let mut cmd = Command::new(LB);
    cmd.arg("--config")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let lb = Lb::spawn(cmd, "notify");
    let pid = nix::unistd::Pid::from_raw(lb.pid() as i32);
    let seen = notify
        .until("READY=1")
        .unwrap_or_else(|s| panic!("no READY=1: {s:?}\n{}", lb.log()));
    assert!(
        !seen.iter().any(|m| m.starts_with("WATCHDOG")),
        "watchdog before READY: {seen:?}"
    );
    // WATCHDOG_USEC=200000: a ping every 100 ms.
    for _ in 0..3 {
        notify
            .until("WATCHDOG=1")
            .unwrap_or_else(|s| panic!("no WATCHDOG=1: {s:?}"));
    }

    // A reload: RELOADING=1 (with the monotonic time systemd wants), then READY=1.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let seen = notify
        .until("RELOADING=1")
        .unwrap_or_else(|s| panic!("no RELOADING=1: {s:?}"));
    assert!(
        seen.last().unwrap().contains("\nMONOTONIC_USEC="),
        "{seen:?}"
    );
    notify
        .until("READY=1")
        .unwrap_or_else(|s| panic!("no READY=1 after the reload: {s:?}"));
    assert!(lb.wait_log("configuration reloaded"), "{}", lb.log());
    // A refused reload answers READY=1 too (else systemctl reload hangs), and pings go on.
    std::fs::write(&conf, "not = [valid").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    notify
        .until("RELOADING=1")
        .unwrap_or_else(|s| panic!("no RELOADING=1: {s:?}"));
    notify
        .until("READY=1")
        .unwrap_or_else(|s| panic!("no READY=1 after a refused reload: {s:?}"));
    assert!(lb.wait_log("reload refused"), "{}", lb.log());
    notify
        .until("WATCHDOG=1")
        .unwrap_or_else(|s| panic!("no WATCHDOG=1 after reloads: {s:?}"));

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    notify
        .until("STOPPING=1")
        .unwrap_or_else(|s| panic!("no STOPPING=1: {s:?}"));
}

#[test]
fn no_watchdog_pings_without_watchdog_usec() {
    let (admin, vip, rs) = (free(), free(), free());
    let conf = tmp(
        "notify-nowd.toml",
        &vs_conf(&admin.to_string(), vip, rs, ""),
    );
    let notify = Notify::bind("notify-nowd.sock");
    let mut cmd = Command::new(LB);
    cmd.arg("--config")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_USEC");
    let lb = Lb::spawn(cmd, "notify-nowd");
    notify
        .until("READY=1")
        .unwrap_or_else(|s| panic!("no READY=1: {s:?}\n{}", lb.log()));
    // Outside a watchdog, nothing: 800 ms is eight intervals of the other test's one.
    let seen = notify.during(Duration::from_millis(800));
    assert!(!seen.iter().any(|m| m.contains("WATCHDOG")), "{seen:?}");
}

#[test]
fn missing_interfaces_are_warnings_at_check_and_in_the_log() {
    let (admin, vip, rs) = (free(), free(), free());
    let vrrp = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"nonexistent0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.100\"]\ntrack_interface = [\"lo\", \"nonexistent1\"]\n";
    let conf = tmp(
        "no-iface.toml",
        &format!("{}{vrrp}", vs_conf(&admin.to_string(), vip, rs, "")),
    );
    let (code, out, err) = lb_cmd(&["--check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(": ok"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains(
            "vrrp_instance[0].interface: interface \"nonexistent0\" does not exist on this machine"
        ),
        "{err}"
    );
    assert!(
        warnings[1].contains(
            "vrrp_instance[0].track_interface[1]: interface \"nonexistent1\" does not exist"
        ),
        "{err}"
    );
    assert!(!err.contains("\"lo\""), "lo exists: {err}");

    // The running lb logs the same (no root needed: VRRP waits for the interface).
    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    let lb = Lb::spawn(cmd, "no-iface");
    assert!(
        lb.wait_log(
            "warning: vrrp_instance[0].interface: interface \"nonexistent0\" does not exist"
        ),
        "{}",
        lb.log()
    );
    assert!(
        lb.wait_log("vrrp_instance[0].track_interface[1]"),
        "{}",
        lb.log()
    );
}

#[test]
fn check_explains_keepalived_keys_and_reports_them_all_at_once() {
    // The seed's keepalived virtual_server, translated key by key as a new user would.
    let conf = tmp(
        "keepalived.toml",
        concat!(
            "[[virtual_server]]\naddress = \"127.0.0.1:1935\"\nprotocol = \"TCP\"\n",
            "lb_algo = \"rr\"\nlb_kind = \"NAT\"\nnat_mask = \"255.255.255.0\"\n",
            "[[virtual_server.real_server]]\naddress = \"127.0.0.1:19351\"\nweight = 1\n",
            "[virtual_server.real_server.HTTP_GET]\nconnect_timeout = 3\n",
            "[[virtual_server]]\naddress = \"127.0.0.1:1936\"\nprotocol = \"UDP\"\nlb_kind = \"TUN\"\n",
            "[[virtual_server.real_server]]\naddress = \"127.0.0.1:19352\"\n",
        ),
    );
    let (code, _, err) = lb_cmd(&["--check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let has = |key: &str, what: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(": {key}: ")) && l.contains(what)),
            "no {key} line with {what:?}:\n{err}"
        )
    };
    has("virtual_server[0].nat_mask", "not needed");
    has(
        "virtual_server[0].real_server[0].HTTP_GET",
        "is written in lower case here: [virtual_server.real_server.http_get]",
    );
    has(
        "virtual_server[0].lb_kind",
        "\"NAT\" does not exist here: the kinds are \"PROXY\"",
    );
    has("virtual_server[1].lb_kind", "\"TUN\" does not exist here");
    has("virtual_server[1].protocol", "\"UDP\" is not supported");
    assert_eq!(
        lines.len(),
        5,
        "protocol = \"TCP\" is accepted silently:\n{err}"
    );

    // Syntax errors: every one at once, each with its line.
    let conf = tmp("syntax.toml", "[[virtual_server]\naddress = \n");
    let (code, _, err) = lb_cmd(&["--check", "--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.contains("line 1:") && err.contains("line 2:"), "{err}");
}

/// The lines of `log` that contain every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

#[test]
fn sighup_applies_admin_listen_delay_loop_and_proxy_copy_and_logs_each_change() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let rs = backend.local_addr().unwrap();
    // The backend accepts (and drops) checks and viewers alike.
    std::thread::spawn(move || {
        for c in backend.incoming() {
            drop(c);
        }
    });
    let (admin1, admin2, vip) = (free(), free(), free());
    let conf_text = |admin: SocketAddr, delay: &str, copy: &str| {
        format!(
            "admin_listen = \"{admin}\"\nproxy_copy = \"{copy}\"\n[[virtual_server]]\naddress = \"{vip}\"\ndelay_loop = {delay}\n[[virtual_server.real_server]]\naddress = \"{rs}\"\n[virtual_server.real_server.tcp_check]\nconnect_timeout = 1\n"
        )
    };
    let conf = tmp("reload-keys.toml", &conf_text(admin1, "30", "splice"));
    let mut cmd = Command::new(LB);
    cmd.arg("--config").arg(&conf);
    let lb = Lb::spawn_logging(cmd, "reload-keys", "info,lb::proxy=debug");
    let pid = nix::unistd::Pid::from_raw(lb.pid() as i32);
    let vs0 = |admin| status(admin).map(|s| s["virtual_servers"][0].clone());
    let st = wait_status(admin1).unwrap_or_else(|| panic!("lb did not come up:\n{}", lb.log()));
    assert_eq!(st["virtual_servers"][0]["proxy_copy"], "splice", "{st}");
    drop(std::net::TcpStream::connect(vip).unwrap());
    assert!(lb.wait_log("copy=\"splice\""), "{}", lb.log());
    std::thread::sleep(Duration::from_millis(1000));
    let checks = |admin| {
        vs0(admin)
            .and_then(|v| v["real_servers"][0]["checks"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(checks(admin1), 1, "delay_loop = 30 checked more than once");

    // One reload changing the three keys a restart used to be needed for.
    std::fs::write(&conf, conf_text(admin2, "0.2", "buffered")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(lb.wait_log("configuration reloaded"), "{}", lb.log());
    let st = wait_status(admin2)
        .unwrap_or_else(|| panic!("the admin API is not on {admin2}:\n{}", lb.log()));
    assert_eq!(st["virtual_servers"][0]["proxy_copy"], "buffered", "{st}");
    assert!(
        std::net::TcpStream::connect(admin1).is_err(),
        "the old admin address {admin1} still accepts"
    );
    let log = lb.log();
    for (key, old, new) in [
        ("admin_listen", admin1.to_string(), admin2.to_string()),
        ("delay_loop", "30s".into(), "0.2s".into()),
        ("proxy_copy", "splice".into(), "buffered".into()),
    ] {
        let want = [
            "reload: changed".to_string(),
            format!("key={key}"),
            format!("old={old}"),
            format!("new={new}"),
        ];
        let parts: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        assert_eq!(lines_with(&log, &parts).len(), 1, "{key}: {log}");
    }
    // New connections of the running virtual server are copied the new way.
    drop(std::net::TcpStream::connect(vip).unwrap());
    assert!(lb.wait_log("copy=\"buffered\""), "{}", lb.log());
    // The checks run every 0.2 s now.
    let end = Instant::now() + Duration::from_secs(5);
    while checks(admin2) < 6 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checks(admin2) >= 6,
        "{} checks:\n{}",
        checks(admin2),
        lb.log()
    );

    // A new admin address that is taken: the reload is refused, saying which address, and
    // the admin API (and everything else) stays as it runs.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap();
    std::fs::write(&conf, conf_text(taken, "5", "splice")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        lb.wait_log(&format!("cannot listen on the new admin_listen {taken}")),
        "{}",
        lb.log()
    );
    let st = status(admin2).expect("the admin API left its address after a refused reload");
    assert_eq!(st["virtual_servers"][0]["proxy_copy"], "buffered", "{st}");
}
