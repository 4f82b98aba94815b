//! The accept loop and one client connection.
//!
//! A connection goes through: handshake (bounded by `handshake_timeout`) -> commands
//! (`connect`, `createStream`, ...) -> either publishing (feeds the hub, or is forwarded
//! upstream on an edge) or playing (reads the hub's ring). Anything malformed ends that one
//! connection with a logged reason; nothing here can take the server down.
//!
//! LIFECYCLE of a connection (the server closes it only on an error or a refusal):
//! - `Commands`: commands are answered the way FMS answers them (see
//!   [`Session::on_other_command`]) until `play` -> `Playing` or `publish` -> `Publishing`;
//!   a client gets `handshake_timeout` for this.
//! - `Playing` / `Publishing`: `deleteStream`, `closeStream` (and `FCUnpublish` for a
//!   publisher) end the stream, not the connection -> `Commands` again, where the client
//!   may play or publish anew or close. Clients (ffmpeg, librtmp, GStreamer) send these right
//!   before they close the socket: closing first made them report a connection error.
//! - Closed: by the client (EOF, reset), on bad input, on a refusal (bad name, key,
//!   not found), by the operator, at shutdown.

mod forward;
mod play;
mod publish;

use crate::config::{in_networks, EdgeConfig, Mode};
use crate::guard::{HandshakeSlot, Refusal, SessionSlot};
use crate::hub::Hub;
use crate::output::rtmp::PLAY_STREAM_ID;
use crate::reload::{self, Change};
pub use crate::state::ServerState;
use crate::state::{Client, ClientKind};
use bytes::BytesMut;
use common::rtmp::chunk::msg_type;
use common::rtmp::command::{self, Command};
use common::rtmp::conn::{handshake_server, RtmpError, RtmpReader, RtmpWriter};
use common::shutdown::Shutdown;
use rml_amf0::Amf0Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

/// Before a client publishes, nothing it may send is larger than this.
const PRE_PUBLISH_MAX_MESSAGE: usize = 64 * 1024;
const WINDOW_ACK_SIZE: u32 = 2_500_000;

/// A bound server, ready to [`EdgeServer::run`].
pub struct EdgeServer {
    listener: TcpListener,
    api: Option<TcpListener>,
    http: Option<TcpListener>,
    state: Arc<ServerState>,
    reloads: mpsc::Receiver<Request>,
    handle: EdgeHandle,
}

/// What a handle asks of the running server.
enum Request {
    /// A reload, answered with what changed or why nothing did.
    Reload {
        config: Box<EdgeConfig>,
        done: oneshot::Sender<Result<Vec<Change>, Vec<String>>>,
    },
    /// Stop accepting, let current sessions run for `grace_period`, then stop.
    Drain,
}

/// Talks to a running [`EdgeServer`]: reload its config, read its state.
#[derive(Clone)]
pub struct EdgeHandle {
    state: Arc<ServerState>,
    reloads: mpsc::Sender<Request>,
}

impl EdgeHandle {
    /// Validated config in, applied without dropping anyone: `Ok(changes)` (empty when the
    /// file did not change), or `Err(problems)` and the running config stays.
    pub async fn reload(&self, config: EdgeConfig) -> Result<Vec<Change>, Vec<String>> {
        let (done, answer) = oneshot::channel();
        self.reloads
            .send(Request::Reload {
                config: Box::new(config),
                done,
            })
            .await
            .map_err(|_| vec!["the server is not running".to_string()])?;
        answer
            .await
            .unwrap_or_else(|_| Err(vec!["the server stopped during the reload".to_string()]))
    }

    /// Starts the drain (SIGTERM): the listener closes at once, so health checks of the
    /// balancers fail and no new viewer comes; current sessions keep playing for
    /// `grace_period`, then the server stops (`run` returns).
    pub async fn drain(&self) {
        let _ = self.reloads.send(Request::Drain).await;
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }
}

/// Binds `addr` the way the server listens (SO_REUSEADDR, a deep backlog).
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

impl EdgeServer {
    /// Binds `config.listen` (port 0 picks a free port: see [`EdgeServer::local_addr`]).
    pub async fn bind(config: EdgeConfig) -> std::io::Result<EdgeServer> {
        let listener = bind_listener(config.listen)?;
        let api = match config.api {
            Some(a) => Some(
                bind_listener(a)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("api.listen {a}: {e}")))?,
            ),
            None => None,
        };
        let http = match config.http.as_ref().map(|h| h.listen) {
            Some(a) => Some(
                bind_listener(a)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("http.listen {a}: {e}")))?,
            ),
            None => None,
        };
        let mut server = Self::from_listener(listener, config);
        server.api = api;
        server.http = http;
        Ok(server)
    }

    /// The HTTP-FLV / HLS listener's bound address, when `[http]` is configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The API's bound address, when `[api]` is configured.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Uses an already-bound listener (socket activation, tests).
    pub fn from_listener(listener: TcpListener, config: EdgeConfig) -> EdgeServer {
        let state = Arc::new(ServerState::new(config));
        let (tx, reloads) = mpsc::channel(4);
        EdgeServer {
            listener,
            api: None,
            http: None,
            handle: EdgeHandle {
                state: state.clone(),
                reloads: tx,
            },
            state,
            reloads,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.state.hub.clone()
    }

    pub fn handle(&self) -> EdgeHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` fires, then closes every connection and pull.
    pub async fn run(self, mut shutdown: Shutdown) {
        let EdgeServer {
            listener,
            api,
            http,
            state,
            mut reloads,
            handle,
        } = self;
        drop(handle);
        let mut api_task = api.map(|l| tokio::spawn(crate::api::serve(state.clone(), l)));
        let hls = Arc::new(crate::http::hls::Registry::default());
        let mut http_task =
            http.map(|l| tokio::spawn(crate::http::serve(state.clone(), hls.clone(), l)));
        {
            let cfg = state.config();
            info!(
                listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                mode = ?cfg.mode,
                origins = ?cfg.origin,
                "edge serving"
            );
        }
        let rtmp_addr = listener.local_addr().ok();
        if let Some(addr) = rtmp_addr {
            state.registry.configure(&state.config(), addr);
        }
        let mut static_pulls = std::collections::HashMap::new();
        sync_static_pulls(&state, &mut static_pulls);
        let mut sessions = JoinSet::new();
        let mut backoff = std::time::Duration::from_millis(5);
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(1));
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = common::sd_notify::watchdog_interval();
        let mut last_watchdog = std::time::Instant::now();
        let mut listener = Some(listener);
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            if drain_until.is_some() && sessions.is_empty() && state.http_conns.live() == 0 {
                info!("drained: no session left");
                break;
            }
            let accept = async {
                match &listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            let grace_over = async {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.fired() => break,
                _ = grace_over => {
                    info!(sessions = sessions.len(), "grace_period over: closing the remaining sessions");
                    break;
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = keepalive.tick() => {
                    let now = std::time::Instant::now();
                    state.hub.keepalive(now);
                    // From the loop that does the work: a stuck accept loop stops the pings
                    // and systemd restarts the server.
                    if watchdog.is_some_and(|w| now.duration_since(last_watchdog) >= w.min(std::time::Duration::from_secs(1))) {
                        common::sd_notify::watchdog();
                        last_watchdog = now;
                    }
                }
                Some(req) = reloads.recv() => match req {
                    Request::Reload { config, done } => {
                        common::sd_notify::reloading();
                        let result = match listener.as_mut() {
                            Some(l) => apply_reload(&state, l, &mut api_task, (&mut http_task, &hls), *config),
                            None => Err(vec!["the server is draining".to_string()]),
                        };
                        if result.as_ref().is_ok_and(|c| c.iter().any(|c| c.key == "static_pull")) {
                            sync_static_pulls(&state, &mut static_pulls);
                        }
                        let moved = result.as_ref().is_ok_and(|c| c.iter().any(|c| c.key == "cluster" || c.key == "listen"));
                        if let (true, Some(l)) = (moved, listener.as_ref()) {
                            if let Ok(addr) = l.local_addr() {
                                state.registry.configure(&state.config(), addr);
                            }
                        }
                        common::sd_notify::ready();
                        let _ = done.send(result);
                    }
                    Request::Drain => {
                        if drain_until.is_none() {
                            let grace = state.config().grace_period;
                            common::sd_notify::stopping();
                            listener = None;
                            if let Some(t) = http_task.take() {
                                t.abort();
                            }
                            drain_until = Some(tokio::time::Instant::now() + grace);
                            info!(
                                sessions = sessions.len(),
                                grace_period = ?grace,
                                "draining: listener closed, current sessions keep playing"
                            );
                        }
                    }
                },
                accepted = accept => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => { backoff = std::time::Duration::from_millis(5); a }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                            continue;
                        }
                    };
                    let cfg = state.config();
                    let mut slot = match state.slots.handshake(cfg.max_handshakes) {
                        Ok(s) => s,
                        Err(why) => {
                            state.refuse(why, peer, "too many connections in handshake");
                            drop(tcp);
                            continue;
                        }
                    };
                    // A peer that sends no PROXY header is the client itself: count it
                    // against its address now, so silent connections from one address are
                    // turned away at once. A balancer's connections are counted against the
                    // client its header names.
                    let trusted = cfg.proxy_protocol && in_networks(&cfg.set_real_ip_from, peer.ip());
                    if !trusted {
                        if let Err(why) = slot.bind_ip(peer.ip(), cfg.max_handshakes_per_ip) {
                            state.refuse(why, peer, "too many connections in handshake from this address");
                            drop(tcp);
                            continue;
                        }
                    }
                    let st = state.clone();
                    let id = st.next_id();
                    st.totals.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let span = tracing::info_span!("conn", id, %peer, client = tracing::field::Empty);
                    let fut = async move {
                        let entry = st.register(id, peer, "rtmp", ClientKind::Connecting);
                        let client = entry.client.clone();
                        let result = serve(st, tcp, peer, id, slot, trusted, client.clone()).await;
                        log_end(&client, result);
                    };
                    sessions.spawn(fut.instrument(span));
                }
            }
        }
        info!(
            connections = sessions.len(),
            "edge stopping: closing connections"
        );
        if let Some(t) = api_task {
            t.abort();
        }
        if let Some(t) = http_task {
            t.abort();
        }
        state.http_conns.close_all();
        for (_, t) in static_pulls.drain() {
            t.abort();
        }
        sessions.shutdown().await;
        crate::upstream::stop_all(&state);
        state.registry.stop().await;
    }
}

/// Starts a `static_pull` task for every listed stream that has none and stops those no
/// longer listed (their stream goes on for its viewers; the pull ends with the last one).
fn sync_static_pulls(
    state: &Arc<ServerState>,
    tasks: &mut std::collections::HashMap<String, tokio::task::JoinHandle<()>>,
) {
    let cfg = state.config();
    if cfg.mode != crate::Mode::Remote {
        return;
    }
    tasks.retain(|k, t| {
        let keep = cfg.static_pull.contains(k);
        if !keep {
            t.abort();
        }
        keep
    });
    for k in &cfg.static_pull {
        if !tasks.contains_key(k) {
            let span = tracing::info_span!(parent: None, "static_pull", stream = %k);
            let t = tokio::spawn(
                crate::upstream::keep_pulled(state.clone(), k.clone()).instrument(span),
            );
            tasks.insert(k.clone(), t);
        }
    }
}

/// One line per session end, with its reason and bytes. A viewer's ordinary hang-up (close,
/// reset, broken pipe) is a reason like any other, not an error; a connection that never got
/// to play or publish is logged only when it broke a rule (bad input, timeouts).
fn log_end(client: &Client, result: Result<(), RtmpError>) {
    let kind = *client.kind.lock().unwrap();
    let stream = client.stream.lock().unwrap().clone();
    let (reason, fault) = match &result {
        Ok(()) => ("closed by the server".to_string(), false),
        Err(RtmpError::Closed) => ("client closed".to_string(), false),
        Err(RtmpError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            (format!("client hung up ({e})"), false)
        }
        Err(e) => (e.to_string(), true),
    };
    let bytes_in = client.bytes_in.load(std::sync::atomic::Ordering::Relaxed);
    let bytes_out = client.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
    let secs = client.started.elapsed().as_secs_f64();
    if kind == ClientKind::Connecting {
        if fault {
            info!(%reason, bytes_in, "connection closed");
        } else {
            debug!(%reason, "connection closed");
        }
        return;
    }
    info!(
        kind = ?kind,
        %stream,
        %reason,
        bytes_in,
        bytes_out,
        seconds = format!("{secs:.1}"),
        "session ended"
    );
}

/// Carries out a reload: the plan first (nothing is touched if it says no), then a new
/// listener if `listen` changed, then the config swap.
fn apply_reload(
    state: &Arc<ServerState>,
    listener: &mut TcpListener,
    api_task: &mut Option<tokio::task::JoinHandle<()>>,
    (http_task, hls): (
        &mut Option<tokio::task::JoinHandle<()>>,
        &Arc<crate::http::hls::Registry>,
    ),
    new: EdgeConfig,
) -> Result<Vec<Change>, Vec<String>> {
    let old = state.config();
    let changes = reload::plan(&old, &new)?;
    // Bind everything new first: a failure leaves the running server untouched.
    let new_listener = match changes.iter().any(|c| c.key == "listen") {
        true => Some(
            bind_listener(new.listen)
                .map_err(|e| vec![format!("listen: cannot listen on {}: {e}", new.listen)])?,
        ),
        false => None,
    };
    let new_api = match (changes.iter().any(|c| c.key == "api.listen"), new.api) {
        (true, Some(a)) => {
            Some(Some(bind_listener(a).map_err(|e| {
                vec![format!("api.listen: cannot listen on {a}: {e}")]
            })?))
        }
        (true, None) => Some(None),
        (false, _) => None,
    };
    let (old_http, new_http) = (
        old.http.as_ref().map(|h| h.listen),
        new.http.as_ref().map(|h| h.listen),
    );
    let new_http_listener = match (old_http != new_http, new_http) {
        (true, Some(a)) => {
            Some(Some(bind_listener(a).map_err(|e| {
                vec![format!("http.listen: cannot listen on {a}: {e}")]
            })?))
        }
        (true, None) => Some(None),
        (false, _) => None,
    };
    if let Some(l) = new_listener {
        *listener = l;
    }
    if let Some(http) = new_http_listener {
        // Current HTTP viewers stay: their connections are their own tasks.
        if let Some(t) = http_task.take() {
            t.abort();
        }
        *http_task = http.map(|l| tokio::spawn(crate::http::serve(state.clone(), hls.clone(), l)));
    }
    if let Some(api) = new_api {
        if let Some(t) = api_task.take() {
            t.abort();
        }
        *api_task = api.map(|l| tokio::spawn(crate::api::serve(state.clone(), l)));
    }
    if changes.iter().any(|c| c.key == "log_level") && !common::logging::set_level(&new.log_level) {
        warn!("log_level not applied: RUST_LOG is set and wins");
    }
    if changes.iter().any(|c| c.key == "dr_vip") {
        let vips = new.dr_vip.clone();
        tokio::task::spawn_blocking(move || crate::tools::dr_setup::log_readiness(&vips));
    }
    state.set_config(new);
    Ok(changes)
}

/// What a client asked for once its commands are done.
pub(crate) struct Session {
    pub state: Arc<ServerState>,
    pub id: u64,
    pub peer: SocketAddr,
    pub reader: RtmpReader<OwnedReadHalf>,
    /// Shared with the merged writer while playing (`output::fanout`).
    pub writer: RtmpWriter<crate::output::SharedWriter>,
    pub app: String,
    pub tc_url: String,
    /// The config in force when the session started.
    pub config: Arc<EdgeConfig>,
    next_stream_id: u32,
    /// This session's place among `max_connections`, once it plays or publishes.
    slot: Option<SessionSlot>,
    /// What the API shows of this session (kind, stream, bytes); also its kick switch.
    pub client: Arc<Client>,
    /// The client sent `FCPublish` (FMLE style): it is told `onFCPublish` once publishing.
    pub fc_publish: bool,
}

impl Session {
    /// The hook call describing this session's `call` of `name`.
    pub(crate) fn hook_call<'a>(
        &'a self,
        call: &'a str,
        name: &'a StreamName,
    ) -> crate::hooks::Call<'a> {
        crate::hooks::Call {
            call,
            addr: self.peer.ip(),
            client_id: self.id,
            app: &self.app,
            name: &name.name,
            tc_url: &self.tc_url,
            query: &name.query,
        }
    }

    /// Asks `url` about `call` of `name`: the name to go on with (renamed or not), or the
    /// refusal's reason (counted and logged as `refusal`).
    pub(crate) async fn ask_hook(
        &self,
        url: &crate::hooks::HookUrl,
        call: &str,
        name: &StreamName,
        refusal: crate::guard::Refusal,
    ) -> Result<Option<StreamName>, ()> {
        let timeout = self.config.http_hooks.timeout;
        // Boxed: the HTTP call's state would otherwise size every player's play state.
        match Box::pin(crate::hooks::ask(url, timeout, &self.hook_call(call, name))).await {
            crate::hooks::Verdict::Allow => Ok(None),
            crate::hooks::Verdict::Rename(n) => {
                tracing::info!(from = %name.name, to = %n, hook = %url, "{call} renamed by the hook");
                Ok(Some(StreamName {
                    name: n,
                    query: name.query.clone(),
                }))
            }
            crate::hooks::Verdict::Refuse(why) => {
                self.state.refuse(
                    refusal,
                    self.peer,
                    &format!("{call} of {}: {why}", name.name),
                );
                Err(())
            }
        }
    }

    /// Sends `on_done` for `name`, if configured (in the background).
    pub(crate) fn hook_done(&self, name: &StreamName) {
        if let Some(url) = &self.config.http_hooks.on_done {
            crate::hooks::done(
                url.clone(),
                self.config.http_hooks.timeout,
                self.hook_call("done", name),
            );
        }
    }
}

/// How a play or publish ended.
pub(crate) enum Ended {
    /// The client ended the stream (`deleteStream`, `closeStream`, `FCUnpublish`) and keeps
    /// its connection: more commands may follow.
    ByClient(Box<Session>),
    /// The server ended it (a refusal, the stream gone): the connection closes.
    Close,
}

/// A stream name as sent in play/publish: `name?query`.
pub(crate) struct StreamName {
    pub name: String,
    pub query: String,
}

impl StreamName {
    pub fn parse(raw: &str) -> StreamName {
        let (name, query) = raw.split_once('?').unwrap_or((raw, ""));
        StreamName {
            name: name.to_string(),
            query: query.to_string(),
        }
    }

    /// `name?query` without the `key` parameter (a viewer's play token is not passed
    /// upstream: the pull outlives it, and the origin is not the viewer).
    pub fn without_param(&self, key: &str) -> String {
        let kept = common::query::without(&self.query, key);
        if kept.is_empty() {
            self.name.clone()
        } else {
            format!("{}?{kept}", self.name)
        }
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        common::query::param(&self.query, key)
    }

    /// What nginx-rtmp accepts, minus what could harm. nginx-rtmp takes any bytes as a name
    /// (`/`, `.`, `@`, `=`, spaces, quotes, any Unicode; even control characters, and an
    /// empty name) and silently truncates it at 255 bytes. We accept the same text, but:
    /// - no control characters (C0, DEL, C1; NUL among them): they would forge log lines
    ///   and garble an operator's terminal;
    /// - no empty name: it is an encoder whose URL lost its key (`rtmp://host/live`), and
    ///   every such encoder would share one stream;
    /// - no empty, `.` or `..` path segment (`/cam`, `a//b`, `a/`, `../x`): nothing maps a
    ///   name to a file today, but HLS or recording would, and these are the traversals;
    /// - at most [`StreamName::MAX_LEN`] bytes, and never truncated: two long names that
    ///   nginx-rtmp would merge stay apart here.
    pub fn is_valid(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= Self::MAX_LEN
            && !self.name.chars().any(|c| c.is_control())
            && self
                .name
                .split('/')
                .all(|seg| !matches!(seg, "" | "." | ".."))
    }

    /// Longest name accepted, in bytes (nginx-rtmp keeps 255 and drops the rest).
    pub const MAX_LEN: usize = 1024;
}

async fn serve(
    state: Arc<ServerState>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut slot: HandshakeSlot,
    trusted: bool,
    client_info: Arc<Client>,
) -> Result<(), RtmpError> {
    let _ = tcp.set_nodelay(true);
    let cfg = state.config();
    if cfg.send_buffer > 0 {
        // A bounded kernel queue makes a stalled player's writes block (and time out after
        // queue_length) within seconds, instead of after megabytes of autotuned buffer.
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(cfg.send_buffer);
    }
    let deadline = tokio::time::Instant::now() + cfg.handshake_timeout;
    let mut buf = BytesMut::with_capacity(2048);
    let client = match tokio::time::timeout_at(
        deadline,
        Box::pin(proxy_header(&mut tcp, &mut buf, peer, trusted)),
    )
    .await
    .map_err(|_| RtmpError::Timeout("waiting for the first bytes"))?
    {
        Err(RtmpError::Protocol(why)) => {
            state.refuse(Refusal::ProxyHeader, peer, &why);
            return Err(RtmpError::Protocol(why));
        }
        other => other?,
    };
    tracing::Span::current().record("client", tracing::field::display(client));
    if trusted {
        if let Err(why) = slot.bind_ip(client.ip(), cfg.max_handshakes_per_ip) {
            state.refuse(
                why,
                client,
                "too many connections in handshake from this address",
            );
            return Ok(());
        }
    }
    // Boxed here and below: what a step holds (the handshake's buffers, a hook call's
    // request) is freed when the step ends, instead of sizing every connection's task for
    // the largest step for its whole life.
    tokio::time::timeout_at(deadline, Box::pin(handshake_server(&mut tcp, &mut buf)))
        .await
        .map_err(|_| RtmpError::Timeout("in the handshake"))??;
    let (r, w) = tcp.into_split();
    let mut s = Session {
        state: state.clone(),
        id,
        peer: client,
        reader: RtmpReader::new(r, buf, PRE_PUBLISH_MAX_MESSAGE),
        writer: RtmpWriter::new(crate::output::SharedWriter::new(w)),
        app: String::new(),
        tc_url: String::new(),
        config: cfg.clone(),
        next_stream_id: PLAY_STREAM_ID,
        slot: None,
        client: client_info,
        fc_publish: false,
    };
    let mut next = tokio::time::timeout_at(deadline, Box::pin(s.negotiate()))
        .await
        .map_err(|_| RtmpError::Timeout("waiting for play or publish"))??;
    match state.slots.establish(slot, cfg.max_connections) {
        Ok(established) => s.slot = Some(established),
        Err(why) => {
            state.refuse(why, client, "max_connections reached");
            return Ok(());
        }
    }
    loop {
        let ended = match next {
            Next::Play(cmd, stream_id) => Box::pin(play::run(s, cmd, stream_id)).await?,
            Next::Publish(cmd, stream_id) => Box::pin(publish::run(s, cmd, stream_id)).await?,
        };
        s = match ended {
            Ended::ByClient(s) => *s,
            Ended::Close => return Ok(()),
        };
        // The stream is over, the connection is not: wait for the client to close it (what
        // clients do next) or to play or publish again, as long as a new connection may.
        s.fc_publish = false;
        let deadline = tokio::time::Instant::now() + s.config.handshake_timeout;
        next = tokio::time::timeout_at(deadline, Box::pin(s.negotiate()))
            .await
            .map_err(|_| RtmpError::Timeout("idle after its stream ended"))??;
    }
}

/// The client behind a PROXY v2 header (`common::proxy_protocol::read_source`).
async fn proxy_header(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    expected: bool,
) -> Result<SocketAddr, RtmpError> {
    use common::proxy_protocol::{read_source, SourceError};
    read_source(tcp, buf, peer, expected)
        .await
        .map_err(|e| match e {
            SourceError::Closed => RtmpError::Closed,
            SourceError::Io(e) => RtmpError::Io(e),
            SourceError::Refused(why) => RtmpError::Protocol(why),
        })
}

enum Next {
    Play(Command, u32),
    Publish(Command, u32),
}

impl Session {
    /// Handles commands until the client asks to play or publish.
    async fn negotiate(&mut self) -> Result<Next, RtmpError> {
        loop {
            let msg = self.read().await?;
            if !common::rtmp::client::is_command(&msg) {
                continue;
            }
            let cmd = command::parse_command(&msg).map_err(RtmpError::Protocol)?;
            debug!(command = %cmd.name, "command");
            match cmd.name.as_str() {
                "connect" => self.on_connect(&cmd).await?,
                "play" => return Ok(Next::Play(cmd, msg.stream_id)),
                "publish" => return Ok(Next::Publish(cmd, msg.stream_id)),
                _ => self.on_other_command(&cmd).await?,
            }
        }
    }

    /// Reads one message, sending any acknowledgement that fell due. Not cancel-safe: in a
    /// `select!`, use `self.reader.read_message()` and call [`Session::ack_if_due`] after.
    pub async fn read(&mut self) -> Result<common::rtmp::Message, RtmpError> {
        let msg = self.reader.read_message().await?;
        self.ack_if_due().await?;
        Ok(msg)
    }

    pub async fn ack_if_due(&mut self) -> Result<(), RtmpError> {
        if let Some(seq) = self.reader.take_ack() {
            self.writer
                .queue_control(msg_type::ACK, &command::acknowledgement(seq));
            self.writer.flush().await?;
        }
        Ok(())
    }

    async fn on_connect(&mut self, cmd: &Command) -> Result<(), RtmpError> {
        self.app = cmd
            .property("app")
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        // An app may carry a query (tcUrl ...?key=): keep only the name.
        if let Some((app, _)) = self.app.split_once('?') {
            self.app = app.to_string();
        }
        self.tc_url = cmd.property("tcUrl").unwrap_or("").to_string();
        if self.app.is_empty() || self.app.len() > 128 || self.app.chars().any(|c| c.is_control()) {
            return Err(RtmpError::Protocol(format!("bad app name {:?}", self.app)));
        }
        info!(app = %self.app, tc_url = %common::redact::query(&self.tc_url), "connect");
        let w = &mut self.writer;
        w.queue_control(
            msg_type::WINDOW_ACK_SIZE,
            &command::window_ack_size(WINDOW_ACK_SIZE),
        );
        w.queue_control(
            msg_type::SET_PEER_BANDWIDTH,
            &command::set_peer_bandwidth(WINDOW_ACK_SIZE),
        );
        w.queue_set_chunk_size(self.config.chunk_size as u32);
        let props = command::object(&[
            ("fmsVer", command::string("FMS/3,5,3,888")),
            ("capabilities", Amf0Value::Number(127.0)),
            ("mode", Amf0Value::Number(1.0)),
        ]);
        let info = command::object(&[
            ("level", command::string("status")),
            ("code", command::string("NetConnection.Connect.Success")),
            ("description", command::string("Connection succeeded.")),
            // AMF0 is all we speak: a client that asks for AMF3 (Flash) is told 0 and falls
            // back to AMF0.
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]);
        let reply = command::command("_result", cmd.transaction_id, props, vec![info]);
        w.queue_command(0, &reply);
        w.flush().await
    }

    /// Commands outside connect/play/publish, answered as FMS answers them (which is what
    /// librtmp, ffmpeg and GStreamer were written against):
    /// - `createStream` -> `_result(id)`; `getStreamLength` -> `_result(0)` (a live stream
    ///   has no length; ffmpeg and VLC warn "Unexpected reply" on anything but a number);
    ///   `releaseStream`, `FCPublish`, `FCUnpublish`, `_checkbw` -> `_result(undefined)`.
    /// - `FCPublish` also earns an `onFCPublish` once publishing starts, `FCUnpublish` an
    ///   `onFCUnpublish`, `FCSubscribe` an `onFCSubscribe` (librtmp sends it for live plays).
    /// - A `_result` goes only to a command that carries a transaction id: GStreamer sends
    ///   these with id 0 and warns about a response "without transaction".
    /// - Everything else (`receiveAudio`, `receiveVideo`, `deleteStream` and `closeStream`
    ///   outside a stream, `FCUnsubscribe`, unknown names) expects no answer and gets none.
    pub async fn on_other_command(&mut self, cmd: &Command) -> Result<(), RtmpError> {
        let reply = match cmd.name.as_str() {
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1).min(64);
                Some(Amf0Value::Number(id as f64))
            }
            "getStreamLength" => Some(Amf0Value::Number(0.0)),
            "FCPublish" => {
                self.fc_publish = true;
                Some(Amf0Value::Undefined)
            }
            "FCUnpublish" => {
                self.fc_status("onFCUnpublish", "NetStream.Unpublish.Success", cmd);
                Some(Amf0Value::Undefined)
            }
            "FCSubscribe" => {
                self.fc_status("onFCSubscribe", "NetStream.Play.Start", cmd);
                None
            }
            "releaseStream" | "_checkbw" => Some(Amf0Value::Undefined),
            _ => None,
        };
        if let (Some(arg), true) = (reply, cmd.transaction_id != 0.0) {
            let p = command::command("_result", cmd.transaction_id, Amf0Value::Null, vec![arg]);
            self.writer.queue_command(0, &p);
        }
        self.writer.flush().await
    }

    /// Queues an FMS-style `onFC*` status (`onFCPublish`, `onFCUnpublish`, `onFCSubscribe`)
    /// naming the stream of `cmd`, on stream 0 where the `FC*` command came.
    pub fn fc_status(&mut self, name: &str, code: &str, cmd: &Command) {
        let stream = StreamName::parse(cmd.first_string_arg().unwrap_or(""));
        let info = command::object(&[
            ("level", command::string("status")),
            ("code", command::string(code)),
            ("description", command::string(&stream.name)),
        ]);
        let p = command::command(name, 0.0, Amf0Value::Null, vec![info]);
        self.writer.queue_command(0, &p);
    }

    /// Sends `onStatus` on a message stream.
    pub async fn status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), RtmpError> {
        let p = command::on_status(level, code, description);
        self.writer.queue_command(stream_id, &p);
        self.writer.flush().await
    }

    pub fn stream_key(&self, name: &StreamName) -> String {
        format!("{}/{}", self.app, name.name)
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }
}

#[cfg(test)]
mod stream_name_tests {
    use super::StreamName;

    /// Names nginx-rtmp 1.2 (Debian's libnginx-mod-rtmp) was seen to accept for publish and
    /// play, published with librtmp and played back under the same name.
    const NGINX_ACCEPTS: &[&str] = &[
        "cam",
        "cam-1_2.3",
        "a/b",
        "a/b/c",
        "a.flv",
        "mp4:a.mp4",
        "user@host",
        "k=v",
        "a b",
        "a%20b",
        "a+b",
        "a#b",
        "a;b",
        "a,b",
        "a:b",
        "a\\b",
        "a'b",
        "a\"b",
        "a<b>",
        "a|b",
        "a*b",
        "a~b",
        "a!b",
        "a$b",
        "a(b)",
        "a[b]",
        "a{b}",
        " ",
        ".hidden",
        "é",
        "カメラ",
        "😀",
    ];

    /// Accepted by nginx-rtmp, refused here (see `is_valid`).
    const REFUSED: &[&str] = &[
        "", "a\tb", "a\u{1}b", "a\u{7f}b", "a\u{85}b", "a\0b", "/abs", "x/", "a//b", ".", "..",
        "../etc", "a/../b", "a/./b",
    ];

    #[test]
    fn accepts_what_nginx_rtmp_accepts() {
        for name in NGINX_ACCEPTS {
            assert!(StreamName::parse(name).is_valid(), "{name:?} refused");
            let with_key = format!("{name}?key=s3cret");
            let parsed = StreamName::parse(&with_key);
            assert!(parsed.is_valid(), "{with_key:?} refused");
            assert_eq!(parsed.name, *name);
            assert_eq!(parsed.param("key"), Some("s3cret"));
        }
        // nginx-rtmp truncates at 255 bytes; we keep up to MAX_LEN whole.
        for len in [255, 256, 300, StreamName::MAX_LEN] {
            assert!(
                StreamName::parse(&"x".repeat(len)).is_valid(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn refuses_what_could_harm() {
        for name in REFUSED {
            assert!(!StreamName::parse(name).is_valid(), "{name:?} accepted");
        }
        assert!(!StreamName::parse(&"x".repeat(StreamName::MAX_LEN + 1)).is_valid());
        assert!(
            !StreamName::parse("?key=1").is_valid(),
            "empty name with a query"
        );
    }
}
