//! systemd's notify protocol (`Type=notify`): `READY=1` once actually serving, `RELOADING=1`
//! around a reload, `STOPPING=1` at a drain, and `WATCHDOG=1` keepalives from the loop that
//! does the work (`WatchdogSec=`). Every call does nothing outside systemd.

use std::time::Duration;

/// Tells systemd the service is ready.
pub fn ready() {
    notify("READY=1");
}

/// Tells systemd a reload started (answer with [`ready`] when it is done).
pub fn reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// Tells systemd the service is stopping (draining).
pub fn stopping() {
    notify("STOPPING=1");
}

/// The watchdog keepalive: send it at least every [`watchdog_interval`].
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// Half of `WatchdogSec=` when systemd watches this process (as sd_watchdog_enabled says).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends one notification (`READY=1`, `STOPPING=1`, `STATUS=...`).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let text = path.to_string_lossy();
    if let Some(name) = text.strip_prefix('@') {
        // An abstract socket: "@name" stands for a leading NUL byte.
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
        return;
    }
    let _ = sock.send_to(state.as_bytes(), &path);
}
