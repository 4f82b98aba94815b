//! HTTP delivery (`[http] listen`; SRS: `http_server` + `http_remux`): live HTTP-FLV at
//! `GET /APP/STREAM.flv` and HLS / LL-HLS at `GET /APP/STREAM.m3u8` for browsers, from the
//! same hub (and the same pull) as RTMP.
//!
//! - [`request`]: parsing and routing, without I/O.
//! - [`flv`]: one HTTP-FLV viewer (the shared delivery loop of `crate::output`).
//! - [`hls`]: one packager per stream, and the answers to playlist and file requests.
//!
//! Connections share RTMP's limits: a handshake slot (`max_handshakes`, per address
//! `max_handshakes_per_ip`) until the first request head is read, then one of
//! `max_connections`. A head must arrive within [`HEAD_TIMEOUT`] (slow-header clients are
//! cut), be at most `request::MAX_HEAD` bytes (431), and parse (400); keep-alive and
//! pipelining are served in order, one answer at a time, so a client that does not read
//! stops being read. `proxy_protocol` / `set_real_ip_from` apply as to RTMP.

pub mod flv;
pub mod hls;
pub mod hls_plays;
pub mod play_hook;
pub mod request;

use crate::guard::Refusal;
use crate::state::ServerState;
use bytes::{Bytes, BytesMut};
use request::{Method, Parsed, Refuse, Request, Route};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

/// A request head (the first, or the next on a kept-alive connection) must be complete
/// within this long after the server starts waiting for it.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one answer (not a live FLV body) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts HTTP connections until dropped (aborted). Connections live in their own tasks,
/// kept in `state.http` so that a reload moving the listener keeps its viewers and the
/// server's end closes them.
pub async fn serve(state: Arc<ServerState>, hls: Arc<hls::Registry>, listener: TcpListener) {
    info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "http serving (HTTP-FLV, HLS)");
    let mut backoff = Duration::from_millis(5);
    // HLS viewers that left are found (and told to `on_done`) by this sweep.
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sweep.tick() => {
                state.hls_plays.sweep(&state.config().http_hooks, std::time::Instant::now());
                continue;
            }
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let cfg = state.config();
        let mut slot = match state.slots.handshake(cfg.max_handshakes) {
            Ok(s) => s,
            Err(why) => {
                state.refuse(why, peer, "too many connections in handshake (http)");
                continue;
            }
        };
        let trusted =
            cfg.proxy_protocol && crate::config::in_networks(&cfg.set_real_ip_from, peer.ip());
        if !trusted {
            if let Err(why) = slot.bind_ip(peer.ip(), cfg.max_handshakes_per_ip) {
                state.refuse(
                    why,
                    peer,
                    "too many connections in handshake from this address (http)",
                );
                continue;
            }
        }
        state
            .totals
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = state.next_id();
        let st = state.clone();
        let reg = hls.clone();
        let span = tracing::info_span!(parent: None, "http", id, %peer);
        let task = tokio::spawn(
            async move {
                match connection(st, reg, tcp, peer, id, slot, trusted).await {
                    Ok(()) => debug!("http connection closed"),
                    Err(e) => debug!(error = %e, "http connection ended"),
                }
            }
            .instrument(span),
        );
        state.http_conns.add(task.abort_handle());
    }
}

/// One connection: requests in order until the client closes, a refusal that cannot be
/// delimited, or an HTTP-FLV body (which lasts the connection).
async fn connection(
    state: Arc<ServerState>,
    hls: Arc<hls::Registry>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut slot: crate::guard::HandshakeSlot,
    trusted: bool,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let cfg = state.config();
    let mut buf = BytesMut::with_capacity(4096);
    let client = match tokio::time::timeout(
        HEAD_TIMEOUT,
        common::proxy_protocol::read_source(&mut tcp, &mut buf, peer, trusted),
    )
    .await
    {
        Err(_) => return Ok(()),
        Ok(Err(common::proxy_protocol::SourceError::Refused(why))) => {
            state.refuse(Refusal::ProxyHeader, peer, &why);
            return Ok(());
        }
        Ok(Err(_)) => return Ok(()),
        Ok(Ok(c)) => c,
    };
    if trusted {
        if let Err(why) = slot.bind_ip(client.ip(), cfg.max_handshakes_per_ip) {
            state.refuse(
                why,
                client,
                "too many connections in handshake from this address (http)",
            );
            return Ok(());
        }
    }
    let mut slot = Some(slot);
    // The connection's place among max_connections, held until it closes.
    let mut _established = None;
    loop {
        let req = match read_request(&mut tcp, &mut buf).await? {
            None => return Ok(()),
            Some(Ok(r)) => r,
            Some(Err(refuse)) => {
                debug!(status = refuse.status, why = %refuse.why, "request refused");
                let keep = !refuse.close;
                respond_error(&mut tcp, &refuse, cfg_cors(&state), keep).await?;
                if keep {
                    continue;
                }
                linger_close(tcp).await;
                return Ok(());
            }
        };
        if let Some(hs) = slot.take() {
            match state.slots.establish(hs, state.config().max_connections) {
                Ok(s) => _established = Some(s),
                Err(why) => {
                    state.refuse(why, client, "max_connections reached (http)");
                    let r = Refuse::new(503, "max_connections reached");
                    respond_error(&mut tcp, &r, cfg_cors(&state), false).await?;
                    return Ok(());
                }
            }
        }
        let keep = req.keep_alive;
        if req.method == Method::Options {
            // A CORS preflight: any origin may GET.
            let head = response_head(
                204,
                &[
                    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Range"),
                    ("Access-Control-Max-Age", "86400"),
                ],
                Some(0),
                cfg_cors(&state),
                keep,
            );
            write_all(&mut tcp, &[head]).await?;
        } else {
            let route = match request::route(&req.path) {
                Ok(r) => r,
                Err(refuse) => {
                    respond_error(&mut tcp, &refuse, cfg_cors(&state), keep).await?;
                    if keep {
                        continue;
                    }
                    return Ok(());
                }
            };
            if state.config().play.tokens_required() {
                // The same 403 whatever was wrong and whether or not the stream exists.
                let stream_key = match &route {
                    Route::HlsFile { dir, file } => {
                        hls::stream_of_file(dir, file).map(|(a, s)| format!("{a}/{s}"))
                    }
                    r => Some(r.key()),
                };
                let token = common::query::param(&req.query, "token");
                let allowed = match &stream_key {
                    Some(k) => state.play_allowed(k, token, client),
                    None => false,
                };
                if !allowed {
                    let refuse = Refuse::new(403, crate::token::REFUSED);
                    respond_error(&mut tcp, &refuse, cfg_cors(&state), keep).await?;
                    if keep {
                        continue;
                    }
                    return Ok(());
                }
            }
            let local = tcp.local_addr().unwrap_or(client);
            let (route, _done) =
                match Box::pin(play_hook::check(&state, route, &req, client, id, local)).await {
                    play_hook::Checked::Go(route, done) => (route, done),
                    play_hook::Checked::Redirect(location) => {
                        let head = response_head(
                            302,
                            &[("Location", &location), ("Cache-Control", "no-cache")],
                            Some(0),
                            cfg_cors(&state),
                            keep,
                        );
                        write_all(&mut tcp, &[head]).await?;
                        if keep {
                            continue;
                        }
                        return Ok(());
                    }
                    play_hook::Checked::Refused => {
                        let refuse = Refuse::new(403, crate::token::REFUSED);
                        respond_error(&mut tcp, &refuse, cfg_cors(&state), keep).await?;
                        if keep {
                            continue;
                        }
                        return Ok(());
                    }
                };
            match route {
                Route::Flv { app, stream } => {
                    // The body lasts the connection: the request buffer goes, and the play's
                    // state is boxed so that this task is not sized by the other steps.
                    drop(buf);
                    return Box::pin(flv::serve(state, tcp, client, id, &req, &app, &stream)).await;
                }
                route @ (Route::Playlist { .. } | Route::HlsFile { .. }) => {
                    let answer = Box::pin(hls::answer(&state, &hls, &route, &req, client)).await;
                    Box::pin(answer.write(&mut tcp, &req, cfg_cors(&state), keep)).await?;
                }
            }
        }
        if !keep {
            return Ok(());
        }
    }
}

/// Whether answers carry `Access-Control-Allow-Origin: *` (`[http] crossdomain`).
fn cfg_cors(state: &ServerState) -> bool {
    state.config().http.as_ref().is_none_or(|h| h.crossdomain)
}

/// The next request head: `None` when the client closed between requests.
async fn read_request(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Result<Request, Refuse>>> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        match request::parse(buf) {
            Parsed::Request(r, n) => {
                let _ = buf.split_to(n);
                return Ok(Some(Ok(r)));
            }
            Parsed::Refused(r, n) => {
                let _ = buf.split_to(n.min(buf.len()));
                return Ok(Some(Err(r)));
            }
            Parsed::Partial => {}
        }
        let read = tokio::time::timeout_at(deadline, tcp.read_buf(buf)).await;
        match read {
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => {
                return Ok(Some(Err(Refuse {
                    status: 408,
                    why: format!("request head not complete within {HEAD_TIMEOUT:?}"),
                    close: true,
                })))
            }
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A response head. `len` None: the body lasts until the connection closes (live FLV).
pub(crate) fn response_head(
    status: u16,
    headers: &[(&str, &str)],
    len: Option<usize>,
    cors: bool,
    keep_alive: bool,
) -> Bytes {
    use std::fmt::Write;
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nServer: EdgeFleet\r\n",
        reason(status)
    );
    for (k, v) in headers {
        let _ = write!(h, "{k}: {v}\r\n");
    }
    if cors {
        h.push_str("Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Content-Length, Content-Range\r\n");
    }
    if let Some(n) = len {
        let _ = write!(h, "Content-Length: {n}\r\n");
    }
    h.push_str(match (keep_alive, len.is_some()) {
        (true, true) => "Connection: keep-alive\r\n\r\n",
        _ => "Connection: close\r\n\r\n",
    });
    Bytes::from(h)
}

async fn respond_error(
    tcp: &mut TcpStream,
    refuse: &Refuse,
    cors: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    let body = Bytes::from(format!("{}\n", refuse.why));
    let head = response_head(
        refuse.status,
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Cache-Control", "no-cache"),
        ],
        Some(body.len()),
        cors,
        keep_alive && !refuse.close,
    );
    write_all(tcp, &[head, body]).await
}

/// Closes after an answer to a request that was not read whole (a huge head, garbage): the
/// write side first, then what the client still sends is read and dropped for a moment, so
/// that the kernel does not answer it with a reset that would destroy the answer in flight.
async fn linger_close(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 16384];
    let mut left: usize = 4 << 20;
    let drain = async {
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

async fn write_all(tcp: &mut TcpStream, bufs: &[Bytes]) -> std::io::Result<()> {
    crate::output::write_batch(tcp, bufs, WRITE_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            crate::output::WriteError::Io(e) => e,
            stalled => std::io::Error::new(std::io::ErrorKind::TimedOut, stalled.to_string()),
        })?;
    let _ = tcp.flush().await;
    Ok(())
}

/// A complete answer (HLS playlists, files, errors): HEAD and byte ranges are served here.
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    pub body: Bytes,
}

impl Answer {
    pub fn error(status: u16, why: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            cache_control: "no-cache",
            body: Bytes::from(format!("{}\n", why.into())),
        }
    }

    async fn write(
        self,
        tcp: &mut TcpStream,
        req: &Request,
        cors: bool,
        keep_alive: bool,
    ) -> std::io::Result<()> {
        let mut status = self.status;
        let mut body = self.body;
        let mut content_range = None;
        if status == 200 {
            match request::byte_range(req.range.as_deref(), body.len()) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    content_range = Some(format!("bytes {}-{}/{}", r.start, r.end - 1, body.len()));
                    status = 206;
                    body = body.slice(r);
                }
                Err(request::Unsatisfiable) => {
                    content_range = Some(format!("bytes */{}", body.len()));
                    status = 416;
                    body = Bytes::new();
                }
            }
        }
        let mut headers = vec![
            ("Content-Type", self.content_type),
            ("Cache-Control", self.cache_control),
        ];
        if self.status == 200 {
            headers.push(("Accept-Ranges", "bytes"));
        }
        if let Some(cr) = &content_range {
            headers.push(("Content-Range", cr));
        }
        let head = response_head(status, &headers, Some(body.len()), cors, keep_alive);
        match req.method {
            Method::Head => write_all(tcp, &[head]).await,
            _ => write_all(tcp, &[head, body]).await,
        }
    }
}
