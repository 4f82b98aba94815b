//! The userspace full-proxy dispatch (`lb_kind = "PROXY"`): accept on the virtual address,
//! choose a real server, connect within `connect_timeout` — on failure count it against that
//! server and try the next choice (at most 3 tries), so a viewer is not refused because an
//! edge died between two checks — optionally send a PROXY v2 header, then copy both ways
//! (`proxy_copy`, read per connection from the running state, so a reload applies it to the
//! next connection).
//!
//! Another forwarding method (direct routing) plugs in beside this one: it takes the same
//! [`crate::state::VsRuntime`] (scheduler, health, counters) and only moves packets
//! differently.

pub mod copy;

use crate::accept::{AcceptBackoff, Throttle};
use crate::config::CopyMode;
use crate::state::VsRuntime;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn, Instrument};

const MAX_TRIES: usize = 3;

/// Binds the virtual address and spawns its accept loop.
pub async fn listen(vs: Arc<VsRuntime>) -> std::io::Result<AbortHandle> {
    let addr = vs.address;
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    // Accept on the VIP as soon as VRRP adds it, and bind it before that.
    let _ = socket2::SockRef::from(&sock).set_freebind(true);
    sock.bind(addr)?;
    let listener = sock.listen(4096)?;
    let span = tracing::info_span!(parent: None, "vs", vs = %addr);
    Ok(tokio::spawn(accept_loop(vs, listener).instrument(span)).abort_handle())
}

async fn accept_loop(vs: Arc<VsRuntime>, listener: TcpListener) {
    // A reload that changes max_connections resizes the semaphore: more permits at once,
    // fewer as established connections close (they are never cut).
    let mut max = vs.cfg.read().unwrap().max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let mut backoff = AcceptBackoff::default();
    let mut refusals = Throttle::new(crate::accept::LOG_EVERY);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => {
                backoff.success();
                a
            }
            Err(e) => {
                // EMFILE leaves the connection queued and the listener readable: sleep, or
                // this loop would spin on it.
                let (delay, log) = backoff.failure(std::time::Instant::now());
                if let Some(n) = log {
                    warn!(error = %crate::accept::describe(&e), failures = n, retry_in_ms = delay.as_millis() as u64, "accept failed; backing off");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let configured = vs.cfg.read().unwrap().max_connections;
        if configured != max {
            info!(from = max, to = configured, "max_connections changed");
            if configured > max {
                limit.add_permits(configured - max);
            } else {
                let (sem, fewer) = (limit.clone(), (max - configured) as u32);
                tokio::spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(fewer).await {
                        p.forget();
                    }
                });
            }
            max = configured;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            vs.stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = refusals.hit(std::time::Instant::now()) {
                warn!(%peer, max_connections = max, refused = n, "connections refused: max_connections reached (counted in edgefleet_vs_connections_refused_total)");
            }
            continue;
        };
        let vs = vs.clone();
        let mode = vs.copy_mode();
        tokio::spawn(async move {
            let _permit = permit;
            handle(vs, tcp, peer, mode).await;
        });
    }
}

async fn handle(vs: Arc<VsRuntime>, client: TcpStream, peer: SocketAddr, mode: CopyMode) {
    let _ = client.set_nodelay(true);
    let (connect_timeout, idle) = {
        let c = vs.cfg.read().unwrap();
        (c.connect_timeout, c.idle_timeout)
    };
    let mut exclude = Vec::new();
    for _ in 0..MAX_TRIES {
        let Some((addr, sorry)) = vs.pick(peer.ip(), &exclude) else {
            break;
        };
        let server = match tokio::time::timeout(connect_timeout, connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if crate::accept::is_local_exhaustion(&e) => {
                // Our own file descriptors ran out: the server is not at fault, so it is not
                // marked down for it (that would take healthy edges out under a flood).
                vs.stats.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = vs
                    .stats
                    .local_errors
                    .lock()
                    .unwrap()
                    .hit(std::time::Instant::now())
                {
                    warn!(%peer, rs = %addr, error = %crate::accept::describe(&e), refused = n, "connections refused: cannot open a socket to the real server");
                }
                return;
            }
            Ok(Err(e)) => {
                fail(&vs, addr, sorry, format!("proxy connect: {e}"));
                exclude.push(addr);
                continue;
            }
            Err(_) => {
                fail(
                    &vs,
                    addr,
                    sorry,
                    format!("proxy connect timed out after {connect_timeout:?}"),
                );
                exclude.push(addr);
                continue;
            }
        };
        let _ = server.set_nodelay(true);
        serve(&vs, client, server, peer, addr, sorry, mode, idle).await;
        return;
    }
    vs.stats.refused.fetch_add(1, Ordering::Relaxed);
    warn!(%peer, tried = exclude.len(), "connection refused: no real server available");
}

/// Connects to a real server. A connect on this host (loopback, an edge beside the
/// balancer) is usually complete when `connect()` returns EINPROGRESS: that is checked at
/// once, so the copy starts without waiting an event-loop turn for writability; otherwise
/// it waits as usual.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let in_progress = match sock.connect(&addr.into()) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    // A peer address means the handshake is done.
    let done = !in_progress || sock.peer_addr().is_ok();
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    if done {
        return Ok(stream);
    }
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

fn fail(vs: &VsRuntime, addr: SocketAddr, sorry: bool, why: String) {
    debug!(rs = %addr, reason = %why, "connect to real server failed; trying the next");
    if !sorry {
        if let Some(rs) = vs.server(addr) {
            rs.connect_failures.fetch_add(1, Ordering::Relaxed);
            // Only a checked server can be marked down by it: its checks bring it back. A
            // server without a check is always up (keepalived), or one failed connect would
            // take it out until the next reload.
            if rs.cfg.lock().unwrap().check.is_some() {
                vs.report(&rs, Err(why));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    vs: &Arc<VsRuntime>,
    client: TcpStream,
    mut server: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
    sorry: bool,
    mode: CopyMode,
    idle: Duration,
) {
    let rs = if sorry { None } else { vs.server(addr) };
    let send_proxy = rs
        .as_ref()
        .map(|r| r.cfg.lock().unwrap().send_proxy)
        .unwrap_or(false);
    if send_proxy {
        // The address the viewer reached (the VIP), asked for only when a header needs it.
        let local = client.local_addr().unwrap_or(vs.address);
        let header = common::proxy_protocol::encode_v2(peer, local);
        if let Err(e) = server.write_all(&header).await {
            warn!(%peer, rs = %addr, error = %e, "could not send the PROXY header");
            return;
        }
    }
    vs.stats.total.fetch_add(1, Ordering::Relaxed);
    vs.stats.active.fetch_add(1, Ordering::Relaxed);
    if sorry {
        vs.stats.sorry.fetch_add(1, Ordering::Relaxed);
    }
    if !sorry {
        vs.connected(addr, peer.ip());
    }
    if let Some(r) = &rs {
        r.active.fetch_add(1, Ordering::Relaxed);
        r.total.fetch_add(1, Ordering::Relaxed);
    }
    debug!(%peer, rs = %addr, sorry, copy = mode.name(), "proxying");
    let zero = std::sync::atomic::AtomicU64::new(0);
    let zero2 = std::sync::atomic::AtomicU64::new(0);
    let counters = match &rs {
        Some(r) => copy::Counters {
            to_server: &r.bytes_in,
            to_client: &r.bytes_out,
        },
        None => copy::Counters {
            to_server: &zero,
            to_client: &zero2,
        },
    };
    match copy::bidirectional(&client, &server, mode, idle, counters).await {
        Ok(copy::End::IdleTimeout) => info!(%peer, rs = %addr, "closed: idle timeout"),
        Ok(copy::End::Closed) => debug!(%peer, rs = %addr, "closed"),
        Err(e) => debug!(%peer, rs = %addr, error = %e, "closed"),
    }
    if let Some(r) = &rs {
        r.active.fetch_sub(1, Ordering::Relaxed);
    }
    if !sorry {
        vs.closed(addr, peer.ip());
    }
    vs.stats.active.fetch_sub(1, Ordering::Relaxed);
}
