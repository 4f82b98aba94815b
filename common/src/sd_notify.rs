//! systemd readiness (`Type=notify`): `READY=1` to `$NOTIFY_SOCKET` once actually serving.

/// Tells systemd the service is ready; does nothing outside systemd.
pub fn ready() {
    notify("READY=1");
}

/// Sends one notification (`READY=1`, `STOPPING=1`, `STATUS=...`).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    // Abstract sockets ("@name") are not reachable through a path; skip them quietly.
    if path.to_string_lossy().starts_with('@') {
        return;
    }
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = sock.send_to(state.as_bytes(), &path);
    }
}
