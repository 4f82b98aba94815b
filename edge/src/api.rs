//! The edge's HTTP API (`[api] listen`, SRS's `http_api`): SRS-shaped JSON of streams and
//! clients, kicking a client, and Prometheus metrics.
//!
//! - `GET /api/v1/streams[?start=N&count=M]`, `GET /api/v1/streams/{id}`
//! - `GET /api/v1/clients[?start=N&count=M]`, `DELETE /api/v1/clients/{id}`
//! - `GET /api/v1/registry`: the stream registry's state (`[cluster]`; 404 without it)
//! - `GET /metrics`
//!
//! Reads only [`ServerState`] (a typed [`Snapshot`] that JSON, metrics and `edge status`
//! render); the one write is a client's kick switch. Bounded like the balancer's admin API:
//! a header read timeout, at most [`MAX_CONNECTIONS`] connections (the oldest goes first).

use crate::guard::Refusal;
use crate::state::{ClientKind, ServerState};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// API connections open at most; a new one past this closes the oldest.
pub const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an API connection lives (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Page size when `count` is not given (SRS: 10).
const DEFAULT_COUNT: usize = 10;
const MAX_COUNT: usize = 10_000;

/// One stream as the API shows it (SRS's field names where SRS has them).
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    pub id: String,
    pub name: String,
    pub app: String,
    /// Viewers: RTMP and HTTP-FLV players, and HLS viewers (client addresses that fetched
    /// within three target durations; the stream's HLS packager is not counted).
    pub clients: usize,
    pub hls_viewers: usize,
    pub live_ms: u64,
    pub frames: u64,
    pub recv_bytes: u64,
    pub send_bytes: u64,
    pub kbps: Kbps,
    pub publish: PublishView,
    pub pull: PullView,
    pub video: Option<Codec>,
    pub audio: Option<Codec>,
    pub frames_skipped: u64,
    pub reconnects: u64,
    pub queued_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kbps {
    /// Averages over the source's life (recv) and the stream's (send).
    pub recv_30s: u64,
    pub send_30s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishView {
    pub active: bool,
    pub cid: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullView {
    pub active: bool,
    /// The origin the pull reads from.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Codec {
    pub codec: &'static str,
}

/// One client as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub id: u64,
    pub stream: String,
    pub ip: String,
    pub port: u16,
    #[serde(rename = "type")]
    pub kind: ClientKind,
    pub publish: bool,
    pub protocol: &'static str,
    pub alive: f64,
    pub recv_bytes: u64,
    pub send_bytes: u64,
    pub kbps: Kbps,
}

/// Everything the API, the metrics and `edge status` show, taken at once.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub streams: Vec<StreamView>,
    pub clients: Vec<ClientView>,
    pub connections_total: u64,
    pub refused: Vec<(&'static str, u64)>,
    pub pulls_started: u64,
    pub pulls_failed: u64,
    pub pulls_not_found: u64,
    pub queued_bytes: usize,
    /// The stream registry (`[cluster]`), when configured.
    pub registry: Option<crate::registry::RegistryView>,
}

fn kbps(bytes: u64, secs: f64) -> u64 {
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 * 8.0 / 1000.0 / secs) as u64
    }
}

impl Snapshot {
    pub fn take(state: &ServerState) -> Snapshot {
        let clients: Vec<ClientView> = state
            .clients
            .list()
            .iter()
            .map(|c| {
                let kind = *c.kind.lock().unwrap();
                let alive = c.started.elapsed().as_secs_f64();
                let recv = c.bytes_in.load(Ordering::Relaxed);
                let send = c.bytes_out.load(Ordering::Relaxed);
                ClientView {
                    id: c.id,
                    stream: c.stream.lock().unwrap().clone(),
                    ip: c.peer.ip().to_string(),
                    port: c.peer.port(),
                    kind,
                    publish: kind == ClientKind::Publish,
                    protocol: c.protocol,
                    alive: (alive * 10.0).round() / 10.0,
                    recv_bytes: recv,
                    send_bytes: send,
                    kbps: Kbps {
                        recv_30s: kbps(recv, alive),
                        send_30s: kbps(send, alive),
                    },
                }
            })
            .collect();
        let streams = state
            .hub
            .list()
            .into_iter()
            .map(|s| {
                let (app, name) = s.key.split_once('/').unwrap_or(("", &s.key));
                let source = clients.iter().find(|c| {
                    c.stream == s.key && matches!(c.kind, ClientKind::Publish | ClientKind::Pull)
                });
                let live = s.source_age.unwrap_or_default();
                let hls = state.hls_viewers.lock().unwrap().get(&s.key).copied();
                StreamView {
                    id: s.key.clone(),
                    name: name.to_string(),
                    app: app.to_string(),
                    clients: s.players - usize::from(hls.is_some() && s.players > 0)
                        + hls.unwrap_or(0),
                    hls_viewers: hls.unwrap_or(0),
                    live_ms: live.as_millis() as u64,
                    frames: s.frames_in,
                    recv_bytes: s.bytes_in,
                    send_bytes: s.bytes_out,
                    kbps: Kbps {
                        recv_30s: kbps(
                            source.map(|c| c.recv_bytes).unwrap_or(0),
                            source.map(|c| c.alive).unwrap_or(0.0),
                        ),
                        send_30s: kbps(s.bytes_out, s.age.as_secs_f64()),
                    },
                    publish: PublishView {
                        active: source.is_some_and(|c| c.kind == ClientKind::Publish),
                        cid: source
                            .filter(|c| c.kind == ClientKind::Publish)
                            .map(|c| c.id),
                    },
                    pull: PullView {
                        active: s.pulling,
                        source: source
                            .filter(|c| c.kind == ClientKind::Pull)
                            .map(|c| format!("{}:{}", c.ip, c.port)),
                    },
                    video: s.video_codec.map(|codec| Codec { codec }),
                    audio: s.audio_codec.map(|codec| Codec { codec }),
                    frames_skipped: s.frames_skipped,
                    reconnects: s.reconnects,
                    queued_bytes: s.queued_bytes,
                }
            })
            .collect();
        Snapshot {
            streams,
            clients,
            connections_total: state.totals.connections.load(Ordering::Relaxed),
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.name(), state.refusals.get(*r)))
                .collect(),
            pulls_started: state.totals.pulls_started.load(Ordering::Relaxed),
            pulls_failed: state.totals.pulls_failed.load(Ordering::Relaxed),
            pulls_not_found: state.totals.pulls_not_found.load(Ordering::Relaxed),
            queued_bytes: state.hub.queued_bytes(),
            registry: state.registry.view(),
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut o = String::with_capacity(4096 + self.streams.len() * 1024);
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut o,
            "edgefleet_edge_connections_total",
            "counter",
            "Connections accepted.",
        );
        let _ = writeln!(
            o,
            "edgefleet_edge_connections_total {}",
            self.connections_total
        );
        family(
            &mut o,
            "edgefleet_edge_refused_total",
            "counter",
            "Connections and requests refused, by reason.",
        );
        for (reason, n) in &self.refused {
            let _ = writeln!(o, "edgefleet_edge_refused_total{{reason=\"{reason}\"}} {n}");
        }
        family(
            &mut o,
            "edgefleet_edge_clients",
            "gauge",
            "Clients now, by type (SRS: srs_clients).",
        );
        for kind in [
            ClientKind::Connecting,
            ClientKind::Play,
            ClientKind::Publish,
            ClientKind::Pull,
        ] {
            let n = self.clients.iter().filter(|c| c.kind == kind).count();
            let name = serde_json::to_value(kind).unwrap_or_default();
            let _ = writeln!(o, "edgefleet_edge_clients{{type={}}} {n}", name);
        }
        family(
            &mut o,
            "edgefleet_edge_streams",
            "gauge",
            "Streams now (SRS: srs_streams).",
        );
        let _ = writeln!(o, "edgefleet_edge_streams {}", self.streams.len());
        for (name, v, help) in [
            (
                "edgefleet_edge_pulls_started_total",
                self.pulls_started,
                "Pulls that got a stream from an origin.",
            ),
            (
                "edgefleet_edge_pulls_failed_total",
                self.pulls_failed,
                "Pull attempts an origin did not serve.",
            ),
            (
                "edgefleet_edge_pulls_not_found_total",
                self.pulls_not_found,
                "Streams no origin had (players told StreamNotFound).",
            ),
        ] {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(
            &mut o,
            "edgefleet_edge_queued_bytes",
            "gauge",
            "Bytes held by every stream's queue.",
        );
        let _ = writeln!(o, "edgefleet_edge_queued_bytes {}", self.queued_bytes);
        if let Some(r) = &self.registry {
            family(
                &mut o,
                "edgefleet_edge_registry_up",
                "gauge",
                "Whether the stream registry (etcd) answered the last request (0 before the first).",
            );
            let _ = writeln!(
                o,
                "edgefleet_edge_registry_up {}",
                u8::from(r.up == Some(true))
            );
            family(
                &mut o,
                "edgefleet_edge_registry_registered",
                "gauge",
                "Streams this origin has registered now.",
            );
            let _ = writeln!(o, "edgefleet_edge_registry_registered {}", r.registered);
            for (name, v, help) in [
                (
                    "edgefleet_edge_registry_errors_total",
                    r.errors,
                    "Registry requests that failed (lookups, watches, registrations, keepalives).",
                ),
                (
                    "edgefleet_edge_registry_lookups_total",
                    r.lookups,
                    "Registry lookups of a stream's origin.",
                ),
                (
                    "edgefleet_edge_registry_fallbacks_total",
                    r.fallbacks,
                    "Lookups that failed: the pull used the static origin list.",
                ),
                (
                    "edgefleet_edge_registry_moves_total",
                    r.moves,
                    "Pulls that followed a stream's registration to another origin.",
                ),
                (
                    "edgefleet_edge_registry_splits_total",
                    r.splits,
                    "Lookups that found a stream registered by more than one origin (split publisher).",
                ),
            ] {
                family(&mut o, name, "counter", help);
                let _ = writeln!(o, "{name} {v}");
            }
        }
        type Field = fn(&StreamView) -> u64;
        let per_stream: [(&str, &str, &str, Field); 9] = [
            (
                "edgefleet_stream_viewers",
                "gauge",
                "Viewers of the stream (RTMP, HTTP-FLV, HLS).",
                |s| s.clients as u64,
            ),
            (
                "edgefleet_stream_hls_viewers",
                "gauge",
                "HLS viewers: client addresses that fetched within three target durations.",
                |s| s.hls_viewers as u64,
            ),
            (
                "edgefleet_stream_receive_bytes_total",
                "counter",
                "Media bytes from the stream's sources (SRS: srs_receive_bytes_total).",
                |s| s.recv_bytes,
            ),
            (
                "edgefleet_stream_send_bytes_total",
                "counter",
                "Bytes written to the stream's players (SRS: srs_send_bytes_total).",
                |s| s.send_bytes,
            ),
            (
                "edgefleet_stream_frames_total",
                "counter",
                "Media messages received.",
                |s| s.frames,
            ),
            (
                "edgefleet_stream_frames_skipped_total",
                "counter",
                "Messages players lost or skipped to the lag policy.",
                |s| s.frames_skipped,
            ),
            (
                "edgefleet_stream_upstream_reconnects_total",
                "counter",
                "Times the pull lost its origin and reconnected.",
                |s| s.reconnects,
            ),
            (
                "edgefleet_stream_queued_bytes",
                "gauge",
                "Bytes the stream's queue holds.",
                |s| s.queued_bytes as u64,
            ),
            (
                "edgefleet_stream_source_up",
                "gauge",
                "1 while a publisher or pull feeds the stream.",
                |s| u64::from(s.publish.active || s.pull.source.is_some()),
            ),
        ];
        for (name, kind, help, get) in per_stream {
            family(&mut o, name, kind, help);
            for s in &self.streams {
                let _ = writeln!(
                    o,
                    "{name}{{stream=\"{}\",protocol=\"rtmp\"}} {}",
                    escape(&s.id),
                    get(s)
                );
            }
        }
        o
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn json<T: Serialize>(code: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn error(code: StatusCode, why: &str) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct E<'a> {
        code: u16,
        error: &'a str,
    }
    json(
        code,
        &E {
            code: code.as_u16(),
            error: why,
        },
    )
}

/// `start` and `count` from a query string (SRS's pagination).
fn page(query: Option<&str>) -> Result<(usize, usize), String> {
    let mut start = 0;
    let mut count = DEFAULT_COUNT;
    for (k, v) in common::query::pairs(query.unwrap_or("")) {
        let n = || {
            v.parse::<usize>()
                .map_err(|_| format!("{k}={v:?} is not a number"))
        };
        match k {
            "start" => start = n()?,
            "count" => count = n()?.min(MAX_COUNT),
            _ => {}
        }
    }
    Ok((start, count))
}

fn paged<T: Clone>(all: &[T], query: Option<&str>) -> Result<Vec<T>, String> {
    let (start, count) = page(query)?;
    Ok(all.iter().skip(start).take(count).cloned().collect())
}

/// Answers one request.
pub fn handle(
    state: &ServerState,
    peer: SocketAddr,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/');
    let query = req.uri().query();
    let method = req.method();
    #[derive(Serialize)]
    struct Streams {
        code: u16,
        streams: Vec<StreamView>,
    }
    #[derive(Serialize)]
    struct Clients {
        code: u16,
        clients: Vec<ClientView>,
    }
    #[derive(Serialize)]
    struct Ok {
        code: u16,
    }
    match (method, path) {
        (&Method::GET, "/metrics") => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(Snapshot::take(state).metrics())))
            .expect("static response parts are valid"),
        (&Method::GET, "/api/v1/streams") => match paged(&Snapshot::take(state).streams, query) {
            Result::Ok(streams) => json(StatusCode::OK, &Streams { code: 0, streams }),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        },
        (&Method::GET, "/api/v1/clients") => match paged(&Snapshot::take(state).clients, query) {
            Result::Ok(clients) => json(StatusCode::OK, &Clients { code: 0, clients }),
            Err(e) => error(StatusCode::BAD_REQUEST, &e),
        },
        (&Method::GET, "/api/v1/registry") => match state.registry.view() {
            Some(registry) => json(
                StatusCode::OK,
                &serde_json::json!({ "code": 0, "registry": registry }),
            ),
            None => error(StatusCode::NOT_FOUND, "no [cluster] registry configured"),
        },
        (&Method::GET, p) if p.starts_with("/api/v1/streams/") => {
            let id = &p["/api/v1/streams/".len()..];
            match Snapshot::take(state)
                .streams
                .into_iter()
                .find(|s| s.id == id)
            {
                Some(s) => json(
                    StatusCode::OK,
                    &Streams {
                        code: 0,
                        streams: vec![s],
                    },
                ),
                None => error(StatusCode::NOT_FOUND, "no such stream"),
            }
        }
        (&Method::DELETE, p) if p.starts_with("/api/v1/clients/") => {
            let id = &p["/api/v1/clients/".len()..];
            let Some(client) = id.parse::<u64>().ok().and_then(|id| state.clients.get(id)) else {
                warn!(%peer, client = id, "kick refused: no such client");
                return error(StatusCode::NOT_FOUND, "no such client");
            };
            client.kick.notify_one();
            info!(%peer, client = client.id, stream = %client.stream.lock().unwrap(), "client kicked through the API");
            json(StatusCode::OK, &Ok { code: 0 })
        }
        (_, "/metrics" | "/api/v1/streams" | "/api/v1/clients") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(state: Arc<ServerState>, listener: TcpListener) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut open: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    let mut backoff = Duration::from_millis(5);
    info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "api serving");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Result::Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                warn!(error = %e, "api accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        open.retain(|h| !h.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
        }
        let st = state.clone();
        let task = tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = handle(&st, peer, &req);
                async move { Result::<_, std::convert::Infallible>::Ok(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
        open.push_back(task.abort_handle());
    }
}

/// `edge status`: GETs `path` from the API at `addr`.
pub async fn fetch(addr: &str, path: &str) -> Result<Bytes, String> {
    let target = common::http::Target {
        addr,
        service: "the edge API",
        hint: "is [api] listen set and the edge running?",
    };
    common::http::get(target, path, &[]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        assert_eq!(page(None).unwrap(), (0, DEFAULT_COUNT));
        assert_eq!(page(Some("start=5&count=2")).unwrap(), (5, 2));
        assert_eq!(page(Some("count=999999999")).unwrap().1, MAX_COUNT);
        assert!(page(Some("start=x")).unwrap_err().contains("start"));
        let v: Vec<u32> = (0..20).collect();
        assert_eq!(paged(&v, Some("start=18&count=5")).unwrap(), vec![18, 19]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("live/a\"b\\c\nd"), "live/a\\\"b\\\\c\\nd");
    }
}
