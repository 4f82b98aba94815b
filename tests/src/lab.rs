//! The network-namespace lab: per test, a switch (a bridge inside its own namespace) and
//! hosts in their own namespaces joined to it by veth pairs, with addresses from
//! 198.18.0.0/24 (the benchmarking range) and no route or NAT to the outside. Programs run
//! inside hosts with `ip netns exec`; a host's link can be cut and restored; everything is
//! removed when the [`Lab`] is dropped — also when the test fails or panics — and labs left
//! by a killed test run are swept at the next start.
//!
//! IPv6: every host's eth0 has IPv6 on and duplicate address detection off (so its link-local
//! address is usable as soon as the link is up); [`Lab::add_ipv6`] gives it 2001:2::N/64
//! (RFC 5180's benchmarking range, `nodad`). Still no route to the outside.
//!
//! Names carry the test process id and a counter, so labs of tests running in parallel never
//! meet (each has its own switch; the same addresses in two labs do not collide).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The lab's subnet: 198.18.0.0/24.
pub fn lab_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, host)
}

/// The lab's IPv6 subnet: 2001:2::/64 (inside RFC 5180's 2001:2::/48).
pub fn lab_ip6(host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, host as u16)
}

/// Whether this kernel has IPv6 (for the IPv6 lab tests); prints a skip otherwise, or panics
/// under `EDGEFLEET_REQUIRE_ALL=1`.
pub fn ipv6_available(test: &str) -> bool {
    if Path::new("/proc/sys/net/ipv6").exists() {
        return true;
    }
    let w = "needs IPv6 in the kernel (/proc/sys/net/ipv6 is missing)";
    if crate::require_all() {
        panic!("{test}: {w}, required under EDGEFLEET_REQUIRE_ALL=1");
    }
    crate::skip(test, w);
    false
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// The switch-side end of the host's veth pair.
    switch_if: String,
}

pub struct Lab {
    pub id: String,
    switch_ns: String,
    hosts: Vec<Host>,
    children: Mutex<Vec<(String, Child)>>,
    pub dir: PathBuf,
}

fn run(args: &[&str]) -> Result<Output, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// Whether this process can build labs: root and `ip`. When it cannot, prints why and
/// returns false — or panics under `EDGEFLEET_REQUIRE_ALL=1`.
pub fn available(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let why = if !root {
        Some("needs root (network namespaces)")
    } else if run(&["ip", "-V"]).is_err() {
        Some("needs iproute2 (`ip`)")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) => {
            if crate::require_all() {
                panic!("{test}: {w}, required under EDGEFLEET_REQUIRE_ALL=1");
            }
            crate::skip(test, w);
            false
        }
    }
}

/// Deletes namespaces of labs whose test process is gone.
fn sweep_stale() {
    let Ok(out) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("ef") else {
            continue;
        };
        let pid: Option<i32> = rest.split('x').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
}

impl Lab {
    /// A new empty lab (just the switch). Call [`available`] first.
    pub fn create() -> Lab {
        sweep_stale();
        let id = format!(
            "ef{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let switch_ns = format!("{id}-sw");
        run(&["ip", "netns", "add", &switch_ns]).expect("create the switch namespace");
        let lab = Lab {
            dir: std::env::temp_dir().join(&id),
            id,
            switch_ns,
            hosts: Vec::new(),
            children: Mutex::new(Vec::new()),
        };
        std::fs::create_dir_all(&lab.dir).expect("lab temp dir");
        lab.ns_run(
            &lab.switch_ns,
            &["ip", "link", "add", "br0", "type", "bridge"],
        )
        .expect("bridge");
        lab.ns_run(&lab.switch_ns, &["ip", "link", "set", "br0", "up"])
            .expect("bridge up");
        lab
    }

    fn ns_run(&self, ns: &str, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Adds a host `name` with address 198.18.0.`n`/24 on its `eth0`.
    pub fn host(&mut self, name: &str, n: u8) -> Host {
        let idx = self.hosts.len();
        let ns = format!("{}-{name}", self.id);
        let host_if = format!("h{}{idx}", &self.id[2..].replace('x', ""));
        let switch_if = format!("s{}{idx}", &self.id[2..].replace('x', ""));
        let host_if: String = host_if.chars().take(15).collect();
        let switch_if: String = switch_if.chars().take(15).collect();
        let ip = lab_ip(n);
        run(&["ip", "netns", "add", &ns]).expect("host namespace");
        run(&[
            "ip",
            "link",
            "add",
            &host_if,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &switch_if,
            "netns",
            &self.switch_ns,
        ])
        .expect("veth pair");
        self.ns_run(&ns, &["ip", "link", "set", &host_if, "name", "eth0"])
            .unwrap();
        self.ns_run(
            &ns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )
        .unwrap();
        // IPv6 on, DAD off before the link comes up: the link-local address (VRRPv3 over IPv6
        // sends from it) is then usable at once. Best effort: a kernel without IPv6 has no
        // such keys, and IPv4 tests do not need them.
        for key in [
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.eth0.disable_ipv6=0",
            "net.ipv6.conf.eth0.accept_dad=0",
        ] {
            let _ = self.ns_run(&ns, &["sysctl", "-qw", key]);
        }
        self.ns_run(&ns, &["ip", "link", "set", "eth0", "up"])
            .unwrap();
        self.ns_run(&ns, &["ip", "link", "set", "lo", "up"])
            .unwrap();
        self.ns_run(
            &self.switch_ns,
            &["ip", "link", "set", &switch_if, "master", "br0"],
        )
        .unwrap();
        self.ns_run(&self.switch_ns, &["ip", "link", "set", &switch_if, "up"])
            .unwrap();
        let h = Host {
            name: name.to_string(),
            ns,
            ip,
            switch_if,
        };
        self.hosts.push(h.clone());
        h
    }

    /// Runs a command inside `host` and waits for it.
    pub fn exec(&self, host: &Host, args: &[&str]) -> Result<Output, String> {
        self.ns_run(&host.ns, args)
    }

    /// Starts a program inside `host`; its output goes to `<lab dir>/<label>.log`. It is
    /// killed when the lab is dropped or with [`Lab::kill`].
    pub fn spawn(
        &self,
        host: &Host,
        label: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) {
        let log = std::fs::File::create(self.dir.join(format!("{label}.log"))).expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns])
            .arg(program)
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        self.children
            .lock()
            .unwrap()
            .push((label.to_string(), child));
    }

    /// Sends `signal` to the program started as `label` (SIGKILL: and waits for it).
    pub fn signal(&self, label: &str, signal: nix::sys::signal::Signal) {
        let mut children = self.children.lock().unwrap();
        if let Some(pos) = children.iter().position(|(l, _)| l == label) {
            let pid = nix::unistd::Pid::from_raw(children[pos].1.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
            if signal == nix::sys::signal::Signal::SIGKILL {
                let (_, mut c) = children.remove(pos);
                let _ = c.wait();
            }
        }
    }

    /// Waits (bounded) for the program `label` to exit after a signal.
    pub fn wait_exit(&self, label: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let mut children = self.children.lock().unwrap();
            if let Some(pos) = children.iter().position(|(l, _)| l == label) {
                if let Ok(Some(_)) = children[pos].1.try_wait() {
                    children.remove(pos);
                    return true;
                }
            } else {
                return true;
            }
            drop(children);
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The process id of the program started as `label` (`ip netns exec` execs it, so this
    /// is the program itself), while it runs.
    pub fn pid(&self, label: &str) -> Option<u32> {
        let children = self.children.lock().unwrap();
        children
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, c)| c.id())
    }

    pub fn kill(&self, label: &str) {
        self.signal(label, nix::sys::signal::Signal::SIGKILL);
    }

    /// The log of the program started as `label`.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// Cuts the host's link (its switch port goes down: the host loses carrier).
    pub fn cut(&self, host: &Host) {
        self.ns_run(
            &self.switch_ns,
            &["ip", "link", "set", &host.switch_if, "down"],
        )
        .unwrap();
    }

    pub fn restore(&self, host: &Host) {
        self.ns_run(
            &self.switch_ns,
            &["ip", "link", "set", &host.switch_if, "up"],
        )
        .unwrap();
    }

    /// Whether `ip` is configured on the host's eth0.
    pub fn has_addr(&self, host: &Host, ip: Ipv4Addr) -> bool {
        self.exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .any(|w| w.split('/').next() == Some(&ip.to_string()))
            })
            .unwrap_or(false)
    }

    /// Gives the host 2001:2::`n`/64 on its eth0, without duplicate address detection.
    pub fn add_ipv6(&self, host: &Host, n: u8) -> Ipv6Addr {
        let ip = lab_ip6(n);
        self.exec(
            host,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{ip}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .expect("add the lab IPv6 address");
        ip
    }

    /// Whether the IPv6 address `ip` is configured on the host's eth0 (and not tentative).
    pub fn has_addr6(&self, host: &Host, ip: Ipv6Addr) -> bool {
        self.addrs6(host, "global")
            .iter()
            .any(|(a, tentative)| *a == ip && !tentative)
    }

    /// Whether `ip` (either family) is configured on the host's eth0.
    pub fn has_ip(&self, host: &Host, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.has_addr(host, a),
            IpAddr::V6(a) => self.has_addr6(host, a),
        }
    }

    /// The host's eth0 link-local address (the source of its VRRPv3-over-IPv6 adverts).
    pub fn link_local(&self, host: &Host) -> Option<Ipv6Addr> {
        self.addrs6(host, "link").first().map(|(a, _)| *a)
    }

    fn addrs6(&self, host: &Host, scope: &str) -> Vec<(Ipv6Addr, bool)> {
        let Ok(o) = self.exec(
            host,
            &[
                "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", scope,
            ],
        ) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip_while(|w| *w != "inet6");
                let a = w.nth(1)?.split('/').next()?.parse().ok()?;
                Some((a, l.contains("tentative")))
            })
            .collect()
    }

    /// Writes a file in the lab's directory and returns its path.
    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, body).expect("write lab file");
        p
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, mut c) in self.children.lock().unwrap().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch_ns]);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab {}: logs kept in {}", self.id, self.dir.display());
        }
    }
}

/// Polls `cond` every 10 ms for at most `limit`; returns how long it took to hold.
pub fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Path of a workspace binary built next to the running test (`target/<profile>/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --bins, or run cargo test --workspace)",
        p.display()
    );
    p
}
