//! The admin API's HTTP side: accept loop, limits, origin and token checks, routing.
//!
//! A reload may move it (`admin_listen`: [`Admin::rebind`], the new address bound before the
//! old one closes; open connections finish) and retime it (`admin_timeout`, for new
//! connections: [`Admin::set_timeout`]); the counters, the connection cap and the token stay
//! with the [`Admin`].
//!
//! Limits, so the admin port cannot take the file descriptors the viewers' listeners need:
//! - a request header must arrive within `admin_timeout` of the connection opening or of the
//!   previous response (hyper's `header_read_timeout`, which also bounds idle keep-alive);
//! - a connection lives at most [`LIFETIME_FACTOR`] x `admin_timeout` whatever it does;
//! - at most [`MAX_CONNECTIONS`] are open: a new one past the cap closes the *oldest* one
//!   (counted, logged once per interval), so an operator's request is served even while idle
//!   or slow connections hold the port.
//!
//! Requests: a request with an `Origin` header other than the admin's own
//! (`http://ADDRESS:PORT` the connection reached) gets 403, reads included — a browser page
//! elsewhere has no business here. Write actions need the bearer token when one is configured
//! ([`super::auth`]); each is logged with the peer's address, refused ones at WARN.

use super::auth::Token;
use crate::accept::{AcceptBackoff, Throttle};
use crate::balancer::Balancer;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, ORIGIN, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// Admin connections open at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection is closed this many `admin_timeout`s after it opened, busy or not.
pub const LIFETIME_FACTOR: u32 = 6;

/// Counters of the admin endpoint itself (exported on `/metrics`).
#[derive(Default)]
pub struct AdminStats {
    pub active: AtomicU64,
    /// Closed because the cap was reached and they were the oldest.
    pub evicted: AtomicU64,
    /// Closed because no complete request header came within `admin_timeout`.
    pub header_timeouts: AtomicU64,
    /// Requests answered 401 (no or wrong token) and 403 (foreign Origin).
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
}

/// What the admin endpoint runs with.
pub struct AdminOptions {
    pub timeout: Duration,
    pub token: Option<Token>,
}

/// The running admin endpoint, shared by its connections.
pub struct Admin {
    balancer: Arc<Balancer>,
    pub stats: AdminStats,
    token: RwLock<Option<Token>>,
    /// `admin_timeout`, read as each connection opens.
    timeout: RwLock<Duration>,
    /// Open connections by accept order (the first is the oldest), each with its closer.
    open: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    /// The connection cap, shared by the accept loops of the old and new address after a
    /// rebind (the old one's connections still hold their slots).
    limit: Arc<Semaphore>,
    next_id: AtomicU64,
    fleet: Arc<super::fleet::Fleet>,
    /// The address served now and its accept loop; the fleet refresher.
    serving: Mutex<(SocketAddr, Option<AbortHandle>)>,
    refresher: Mutex<Option<AbortHandle>>,
}

impl Admin {
    /// Replaces the token (a reload that re-read the token source).
    pub fn set_token(&self, token: Option<Token>) {
        *self.token.write().unwrap() = token;
    }

    /// The token in force (compared with a reload's; never logged).
    pub fn token(&self) -> Option<Token> {
        self.token.read().unwrap().clone()
    }

    /// `admin_timeout` for connections opened from now on.
    pub fn set_timeout(&self, timeout: Duration) {
        *self.timeout.write().unwrap() = timeout;
    }

    pub fn timeout(&self) -> Duration {
        *self.timeout.read().unwrap()
    }

    /// The address the admin API listens on now.
    pub fn local_addr(&self) -> SocketAddr {
        self.serving.lock().unwrap().0
    }

    /// Moves the admin API to `listener` (bound by the caller, so a failure to bind leaves
    /// this one serving): the new accept loop starts, then the old one stops; connections
    /// already open on the old address finish as usual.
    pub fn rebind(
        self: &Arc<Self>,
        listener: std::net::TcpListener,
    ) -> std::io::Result<SocketAddr> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(self.clone(), listener)).abort_handle();
        let (old, old_task) = {
            let mut s = self.serving.lock().unwrap();
            std::mem::replace(&mut *s, (addr, Some(task)))
        };
        if let Some(t) = old_task {
            t.abort();
        }
        info!(admin = %addr, from = %old, "admin API listening on its new address");
        Ok(addr)
    }

    /// Stops accepting and refreshing the fleet page (open connections finish).
    pub fn stop(&self) {
        if let Some(t) = self.serving.lock().unwrap().1.take() {
            t.abort();
        }
        if let Some(t) = self.refresher.lock().unwrap().take() {
            t.abort();
        }
    }
}

/// Serves the admin API on `listener` until [`Admin::stop`].
pub fn serve(
    balancer: Arc<Balancer>,
    listener: std::net::TcpListener,
    opts: AdminOptions,
) -> std::io::Result<Arc<Admin>> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    info!(admin = %addr, timeout_s = opts.timeout.as_secs_f64(), max_connections = MAX_CONNECTIONS, token = opts.token.is_some(), "admin API listening");
    let admin = Arc::new(Admin {
        balancer,
        stats: AdminStats::default(),
        token: RwLock::new(opts.token),
        timeout: RwLock::new(opts.timeout),
        open: Mutex::new(BTreeMap::new()),
        limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        next_id: AtomicU64::new(0),
        fleet: Default::default(),
        serving: Mutex::new((addr, None)),
        refresher: Mutex::new(None),
    });
    let refresher = tokio::spawn(super::fleet::refresh(
        admin.balancer.clone(),
        admin.fleet.clone(),
    ));
    *admin.refresher.lock().unwrap() = Some(refresher.abort_handle());
    let accept = tokio::spawn(accept_loop(admin.clone(), listener));
    admin.serving.lock().unwrap().1 = Some(accept.abort_handle());
    Ok(admin)
}

async fn accept_loop(admin: Arc<Admin>, listener: TcpListener) {
    let limit = admin.limit.clone();
    let mut backoff = AcceptBackoff::default();
    let mut evictions = Throttle::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => {
                backoff.success();
                a
            }
            Err(e) => {
                let (delay, log) = backoff.failure(Instant::now());
                if let Some(n) = log {
                    warn!(error = %crate::accept::describe(&e), failures = n, retry_in_ms = delay.as_millis() as u64, "admin accept failed; backing off");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let oldest = admin.open.lock().unwrap().pop_first();
                if let Some((_, close)) = oldest {
                    let _ = close.send(());
                }
                admin.stats.evicted.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = evictions.hit(Instant::now()) {
                    warn!(%peer, max_connections = MAX_CONNECTIONS, closed = n, "admin connections at the cap: closed the oldest to serve new ones");
                }
                // The closed connection's task gives its permit back at once.
                match tokio::time::timeout(Duration::from_secs(1), limit.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => continue,
                }
            }
        };
        let id = admin.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (close_tx, close_rx) = oneshot::channel();
        admin.open.lock().unwrap().insert(id, close_tx);
        let admin = admin.clone();
        tokio::spawn(async move {
            admin.stats.active.fetch_add(1, Ordering::Relaxed);
            connection(&admin, tcp, peer, close_rx).await;
            admin.open.lock().unwrap().remove(&id);
            admin.stats.active.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn connection(
    admin: &Arc<Admin>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    close: oneshot::Receiver<()>,
) {
    let Ok(local) = tcp.local_addr() else { return };
    let a = admin.clone();
    let svc = hyper::service::service_fn(move |req| {
        let a = a.clone();
        async move { Ok::<_, std::convert::Infallible>(route(&a, peer, local, req)) }
    });
    let timeout = admin.timeout();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc);
    tokio::select! {
        r = conn => match r {
            Err(e) if e.is_timeout() => {
                admin.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "admin connection closed: no request header within admin_timeout");
            }
            Err(e) => debug!(%peer, error = %e, "admin connection closed"),
            Ok(()) => {}
        },
        _ = close => debug!(%peer, "admin connection closed: the oldest at the cap"),
        _ = tokio::time::sleep(timeout * LIFETIME_FACTOR) => {
            debug!(%peer, "admin connection closed: lifetime over");
        }
    }
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    common::query::pairs(req.uri().query().unwrap_or(""))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// `%XX` decoding of a query value (`lb drain` sends `%3A`, `%5B`, `%5D` for `[::1]:80`);
/// a malformed escape is left as it is, so the value's own check reports it.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `origin` is the admin's own: `http://` and the address the connection reached.
fn own_origin(origin: &[u8], local: SocketAddr) -> bool {
    let full = format!("http://{local}");
    if origin == full.as_bytes() {
        return true;
    }
    // Browsers leave out the default port.
    local.port() == 80 && origin == full.trim_end_matches(":80").as_bytes()
}

fn route(
    admin: &Admin,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if let Some(origin) = req.headers().get(ORIGIN) {
        if !own_origin(origin.as_bytes(), local) {
            admin.stats.forbidden.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, method = %req.method(), path, origin = ?origin, "admin request refused: cross-origin (Origin is not http://{local})");
            return reply(
                StatusCode::FORBIDDEN,
                "text/plain",
                format!("cross-origin requests are refused (Origin is not http://{local})\n"),
            );
        }
    }
    let b = &admin.balancer;
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut text = super::metrics(b);
            admin_metrics(&mut text, &admin.stats);
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        (&Method::GET, "/status") => reply(
            StatusCode::OK,
            "application/json",
            super::status(b).to_string(),
        ),
        (&Method::GET, "/") => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::fleet::PAGE.to_string(),
        ),
        (&Method::GET, "/fleet") => reply(
            StatusCode::OK,
            "application/json",
            admin.fleet.doc().to_string(),
        ),
        (&Method::POST, p @ ("/drain" | "/enable" | "/weight")) => {
            if let Some(token) = admin.token.read().unwrap().as_ref() {
                let presented = req
                    .headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| bearer(v.as_bytes()));
                let why = match presented {
                    None => Some("no bearer token (Authorization: Bearer TOKEN)"),
                    Some(t) if !token.matches(t) => Some("wrong bearer token"),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    admin.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
                    warn!(%peer, action = p, reason = why, "admin request refused");
                    let mut r = reply(StatusCode::UNAUTHORIZED, "text/plain", format!("{why}\n"));
                    r.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        hyper::header::HeaderValue::from_static("Bearer realm=\"lb admin\""),
                    );
                    return r;
                }
            }
            let q = query(&req);
            match super::admin_action(b, p, &q) {
                Ok(msg) => {
                    info!(%peer, action = p, result = %msg, "admin action");
                    reply(StatusCode::OK, "text/plain", format!("{msg}\n"))
                }
                Err(e) => {
                    warn!(%peer, action = p, reason = %e, "admin request refused");
                    reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n"))
                }
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /metrics, GET /status, POST /drain|/enable|/weight?vs=VIP:PORT&rs=IP:PORT[&value=N]\n".into(),
        ),
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

fn admin_metrics(out: &mut String, s: &AdminStats) {
    let rows = [
        (
            "edgefleet_admin_connections_active",
            "gauge",
            "Admin API connections open.",
            &s.active,
        ),
        (
            "edgefleet_admin_connections_evicted_total",
            "counter",
            "Admin connections closed because the connection cap was reached (oldest first).",
            &s.evicted,
        ),
        (
            "edgefleet_admin_header_timeouts_total",
            "counter",
            "Admin connections closed for sending no complete request header within admin_timeout.",
            &s.header_timeouts,
        ),
        (
            "edgefleet_admin_requests_unauthorized_total",
            "counter",
            "Admin write requests refused with 401 (no or wrong bearer token).",
            &s.unauthorized,
        ),
        (
            "edgefleet_admin_requests_forbidden_total",
            "counter",
            "Admin requests refused with 403 (foreign Origin).",
            &s.forbidden,
        ),
    ];
    for (name, kind, help, v) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_bearer_values() {
        let local: SocketAddr = "127.0.0.1:9180".parse().unwrap();
        assert!(own_origin(b"http://127.0.0.1:9180", local));
        assert!(!own_origin(b"http://127.0.0.1:9181", local));
        assert!(!own_origin(b"http://evil.example:9180", local));
        assert!(!own_origin(b"null", local));
        assert!(!own_origin(b"https://127.0.0.1:9180", local));
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(own_origin(b"http://[::1]", v6));
        assert!(own_origin(b"http://[::1]:80", v6));
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
        assert_eq!(bearer(b""), None);
        assert_eq!(percent_decode("%5B%3a%3A1%5D%3A80"), "[::1]:80");
        assert_eq!(percent_decode("127.0.0.1:1"), "127.0.0.1:1");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%ff"), "%zz\u{fffd}");
    }
}
