//! The edge's side towards origins: pulling a stream for its players. (A publish that an
//! edge forwards to its origin is a session's work: `session::forward`.)
//!
//! A pull starts with a stream's first player (the hub decides, once) and tries the origins
//! in order: connect, `play`, and the first `Play.Start` wins; a connect error, a timeout or a
//! refusal (`StreamNotFound`) moves to the next. While pulling, media goes into the hub as the
//! stream's source.
//!
//! - A stream that was never seen: after one full round of origins without one delivering,
//!   its players get `StreamNotFound` and close, and the answer is remembered for
//!   `guard::NotFound::TTL` so that a crowd of such plays costs the origins one lookup.
//! - A stream that played and dropped (upstream lost, or silent for `origin_timeout`): the
//!   pull retries every 100 ms growing to 400 ms while players stay connected, so it resumes
//!   within half a second of the origin answering again. An origin that refuses connections
//!   is probed by one pull at a time (`guard::OriginGate`), not by every stream at once.
//!
//! It ends `pull_idle_timeout` after the last player left. Origins and timeouts are read
//! from the config in force at each attempt, so a reload applies at the next connect.
//!
//! With a registry (`[cluster]`), each round asks it first where the stream is published
//! (bounded by `[cluster] timeout`) and tries that origin before the static list, which
//! stays the fallback (the registry has no entry, or does not answer). The pull watches the
//! stream's registrations: when they move to another origin, it leaves the current one and
//! follows at once, its players kept (the hub rebases timestamps across the change). An
//! origin (`mode = "local"`) pulls this way a stream published on another origin (relay),
//! never from itself; it does not register what it relays.

use crate::hub::Stream;
use crate::registry::entry::Choice;
use crate::registry::Lookup;
use crate::state::ClientKind;
use crate::state::ServerState;
use crate::Mode;
use common::rtmp::chunk::msg_type;
use common::rtmp::client::{is_command, RtmpClient};
use common::rtmp::command;
use common::rtmp::conn::RtmpError;
use common::rtmp::url::RtmpUrl;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn, Instrument};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(400);
const IDLE_CHECK: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The origins of a server, as the hub's [`crate::hub::Upstream`]: what a player of any
/// output hands the hub so that the stream's first player starts the pull.
pub struct Origins<'a>(pub &'a Arc<ServerState>);

impl crate::hub::Upstream for Origins<'_> {
    fn pull(&self, stream: Arc<Stream>, app: &str, name: &str) {
        start_pull(self.0.clone(), stream, app.to_string(), name.to_string());
    }
}

/// Starts the pull of `stream` (called once per pull lifetime, by the hub's decision).
pub fn start_pull(state: Arc<ServerState>, stream: Arc<Stream>, app: String, raw_name: String) {
    let span = tracing::info_span!(parent: None, "pull", stream = %stream.key);
    let st = state.clone();
    let handle = tokio::spawn(pull_loop(st, stream, app, raw_name).instrument(span));
    let mut pulls = state.pulls.lock().unwrap();
    pulls.retain(|h| !h.is_finished());
    pulls.push(handle.abort_handle());
}

/// Aborts every pull (server shutdown).
pub fn stop_all(state: &ServerState) {
    for h in state.pulls.lock().unwrap().drain(..) {
        h.abort();
    }
}

enum PullEnd {
    /// No player for `pull_idle_timeout`: the pull is over.
    Idle,
    /// The upstream ended after delivering media: retry soon, same origin first.
    Dropped(RtmpError),
    /// The stream's registration moved to this other origin: follow it now.
    Moved(String),
    /// A publisher on this origin takes the stream over (relay only): the pull ends.
    Yield,
}

/// Why one origin did not deliver.
enum Failed {
    /// The origin could not be reached (connect refused, unreachable, timeout).
    Unreachable(RtmpError),
    /// Another pull just found it unreachable: not tried this round.
    Gated,
    /// It answered, but without the stream (or with an error).
    Answered(RtmpError),
}

/// The origins of one round: the registry's choice first (when it has one), then the
/// static list from `first` on (an edge's; an origin has none), each once.
async fn round_origins(
    state: &ServerState,
    key: &str,
    first: usize,
    reasons: &mut Vec<String>,
    last_choice: &mut Option<String>,
) -> (Vec<(String, u16)>, usize) {
    let cfg = state.config();
    let mut list: Vec<(String, u16)> = Vec::new();
    match state.registry.lookup(key).await {
        Lookup::Found(c) => {
            if c.registrations > 1 && last_choice.as_deref() != Some(c.chosen.origin.as_str()) {
                warn!(
                    registrations = c.registrations,
                    chosen = %c.chosen.origin,
                    node = %c.chosen.node,
                    "stream registered by several origins (split publisher): pulling from the newest publish"
                );
            }
            *last_choice = Some(c.chosen.origin.clone());
            if let Ok(hp) = common::config::parse_host_port(&c.chosen.origin) {
                list.push(hp);
            }
        }
        Lookup::Failed(e) => reasons.push(format!("registry: {e}")),
        Lookup::Absent | Lookup::Off => {}
    }
    let from_registry = list.len();
    let statics = if cfg.mode == Mode::Remote {
        &cfg.origin[..]
    } else {
        &[]
    };
    for i in 0..statics.len() {
        let o = &statics[(first + i) % statics.len()];
        if !list.contains(o) {
            list.push(o.clone());
        }
    }
    (list, from_registry)
}

async fn pull_loop(state: Arc<ServerState>, stream: Arc<Stream>, app: String, raw: String) {
    let mut first = 0;
    let mut retry = RETRY_MIN;
    // Failures are logged once, then every LOG_EVERY with a count: an outage of minutes
    // is a few lines, not one per retry.
    let mut failures = 0u64;
    let mut last_log: Option<Instant> = None;
    let mut watching = state.registry.watch(&stream.key);
    let mut last_choice: Option<String> = None;
    info!("pull requested by first player");
    loop {
        let cfg = state.config();
        if cfg.mode == Mode::Local && stream.info().has_source {
            // A relay whose stream is now published here: nothing to pull.
            info!("relay ended: the stream is published on this origin");
            stream.pull_ended();
            return;
        }
        let mut delivered = false;
        let mut follow = false;
        let mut reasons = Vec::new();
        let (origins, from_registry) =
            round_origins(&state, &stream.key, first, &mut reasons, &mut last_choice).await;
        if let Some(w) = watching.as_mut() {
            // What the round just read is the news so far.
            w.rx.mark_unchanged();
        }
        for (i, (host, port)) in origins.iter().enumerate() {
            let origin = format!("{host}:{port}");
            let w = watching.as_mut().map(|w| &mut w.rx);
            match pull_once(&state, &stream, host, *port, &app, &raw, w).await {
                Ok(PullEnd::Idle) => {
                    info!(%origin, "pull stopped: no players left");
                    return;
                }
                Ok(PullEnd::Yield) => {
                    info!(%origin, "relay ended: a publisher on this origin takes the stream over, players kept");
                    stream.pull_ended();
                    return;
                }
                Ok(PullEnd::Moved(to)) => {
                    info!(from = %origin, %to, "stream registration moved: following it, players kept");
                    state.registry.stats.moves.fetch_add(1, Ordering::Relaxed);
                    stream.count_reconnect();
                    delivered = true;
                    failures = 0;
                    last_log = None;
                    // No pause: the next round starts with the new registration.
                    follow = true;
                    break;
                }
                Ok(PullEnd::Dropped(e)) => {
                    warn!(%origin, error = %e, "upstream dropped; reconnecting, players kept");
                    stream.count_reconnect();
                    if i >= from_registry {
                        if let Some(idx) =
                            cfg.origin.iter().position(|o| o.0 == *host && o.1 == *port)
                        {
                            first = idx;
                        }
                    }
                    delivered = true;
                    failures = 0;
                    last_log = None;
                    break;
                }
                Err(Failed::Gated) => reasons.push(format!("{origin}: unreachable")),
                Err(Failed::Unreachable(e)) | Err(Failed::Answered(e)) => {
                    failures += 1;
                    state.totals.pulls_failed.fetch_add(1, Ordering::Relaxed);
                    if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        warn!(%origin, error = %e, failures, "origin failed; trying the next");
                        last_log = Some(Instant::now());
                    }
                    reasons.push(format!("{origin}: {e}"));
                }
            }
            if stream.stop_pull_if_idle(cfg.pull_idle_timeout, Instant::now()) {
                info!("pull stopped: no players left");
                return;
            }
        }
        if delivered {
            retry = RETRY_MIN;
        } else if !stream.ever_played() {
            state.totals.pulls_not_found.fetch_add(1, Ordering::Relaxed);
            // A stream nobody has: tell its players now rather than hold them forever.
            if reasons.is_empty() {
                reasons.push("not in the registry".into());
            }
            let reason = format!("no origin has {}: {}", stream.key, reasons.join("; "));
            info!(%reason, "pull ended: stream not found");
            state
                .not_found
                .lock()
                .unwrap()
                .insert(&stream.key, Instant::now());
            stream.end(reason);
            return;
        }
        let until = Instant::now() + if follow { Duration::ZERO } else { retry };
        while Instant::now() < until {
            if stream.stop_pull_if_idle(cfg.pull_idle_timeout, Instant::now()) {
                info!("pull stopped: no players left");
                return;
            }
            let pause = IDLE_CHECK.min(until - Instant::now());
            match watching.as_mut() {
                // A new registration ends the pause: the publisher is back somewhere.
                Some(w) => match tokio::time::timeout(pause, w.rx.changed()).await {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => tokio::time::sleep(pause).await,
                    Err(_) => {}
                },
                None => tokio::time::sleep(pause).await,
            }
        }
        if !delivered {
            retry = (retry * 2).min(RETRY_MAX);
        }
    }
}

/// One attempt on one origin. `Err` = this origin did not deliver (try the next).
async fn pull_once(
    state: &Arc<ServerState>,
    stream: &Arc<Stream>,
    host: &str,
    port: u16,
    app: &str,
    raw: &str,
    mut moved: Option<&mut tokio::sync::watch::Receiver<Option<Choice>>>,
) -> Result<PullEnd, Failed> {
    let cfg = state.config();
    let origin = format!("{host}:{port}");
    if !state
        .origin_gate
        .lock()
        .unwrap()
        .may_try(&origin, Instant::now())
    {
        return Err(Failed::Gated);
    }
    let url = RtmpUrl {
        host: host.to_string(),
        port,
        app: app.to_string(),
        stream: raw.to_string(),
    };
    let mut client = match RtmpClient::connect_url(&url, cfg.origin_timeout).await {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, RtmpError::Io(_) | RtmpError::Timeout(_)) {
                state
                    .origin_gate
                    .lock()
                    .unwrap()
                    .refused(&origin, Instant::now());
                return Err(Failed::Unreachable(e));
            }
            return Err(Failed::Answered(e));
        }
    };
    state.origin_gate.lock().unwrap().answered(&origin);
    client.reader.set_max_message_size(cfg.max_message_size);
    client
        .play(raw, cfg.origin_timeout)
        .await
        .map_err(Failed::Answered)?;
    let source = state
        .hub
        .start_source(&stream.key, state.next_id())
        .map_err(|e| Failed::Answered(RtmpError::Protocol(e.to_string())))?;
    state.not_found.lock().unwrap().remove(&stream.key);
    state.totals.pulls_started.fetch_add(1, Ordering::Relaxed);
    let entry = state.register(state.next_id(), client.peer, "rtmp", ClientKind::Pull);
    entry.client.set(ClientKind::Pull, &stream.key);
    info!(%origin, "pull started");
    let mut last_media = Instant::now();
    loop {
        let read = tokio::time::timeout(IDLE_CHECK, client.reader.read_message());
        // A registration change ends the wait at once (an origin whose publisher left
        // sends nothing: the move must not wait for IDLE_CHECK).
        let mut news = false;
        let mut watch_gone = false;
        let got = match moved.as_deref_mut() {
            Some(rx) => tokio::select! {
                r = read => r.ok(),
                c = rx.changed() => {
                    news = c.is_ok();
                    watch_gone = c.is_err();
                    None
                }
            },
            None => read.await.ok(),
        };
        if watch_gone {
            moved = None;
        }
        match got {
            Some(Ok(msg)) => {
                if let Err(e) = client.respond(&msg).await {
                    return Ok(PullEnd::Dropped(e));
                }
                match msg.type_id {
                    msg_type::AUDIO
                    | msg_type::VIDEO
                    | msg_type::DATA_AMF0
                    | msg_type::DATA_AMF3 => {
                        last_media = Instant::now();
                        entry
                            .client
                            .bytes_in
                            .store(client.reader.bytes_in(), Ordering::Relaxed);
                        source.push(msg.type_id, msg.timestamp, msg.payload);
                    }
                    _ if is_command(&msg) => {
                        if let Ok(c) = command::parse_command(&msg) {
                            if let Some(code) = c.property("code") {
                                info!(%code, "upstream status");
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(Err(e)) => return Ok(PullEnd::Dropped(e)),
            None => {}
        }
        if stream.stop_pull_if_idle(cfg.pull_idle_timeout, Instant::now()) {
            return Ok(PullEnd::Idle);
        }
        if state.relay_yield.lock().unwrap().remove(&stream.key) {
            return Ok(PullEnd::Yield);
        }
        if let Some(rx) = moved.as_deref_mut() {
            if news || rx.has_changed().unwrap_or(false) {
                let to = rx
                    .borrow_and_update()
                    .as_ref()
                    .map(|c| c.chosen.origin.clone());
                if let Some(to) = to.filter(|to| *to != origin) {
                    return Ok(PullEnd::Moved(to));
                }
            }
        }
        if last_media.elapsed() > cfg.origin_timeout {
            return Ok(PullEnd::Dropped(RtmpError::Timeout(
                "waiting for media from the origin",
            )));
        }
    }
}

/// `static_pull`: keeps `key` (`APP/STREAM`) pulled without viewers, as a hub player of its
/// own that takes what arrives and drops it (the GOP cache stays warm for the first viewer).
/// When the stream ends (no origin has it), retries after 1 s, doubling to 30 s.
pub async fn keep_pulled(state: Arc<ServerState>, key: String) {
    use crate::hub::{PlayerEvent, PullFrom};
    let Some((app, name)) = key.split_once('/') else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let origins = Origins(&state);
        let mut player = state.hub.watch(
            &key,
            Some(PullFrom {
                upstream: &origins,
                app,
                name,
            }),
        );
        info!(stream = %key, "static_pull: pulling without viewers");
        let mut sink = Vec::with_capacity(256);
        let why = loop {
            sink.clear();
            match player.next(&mut sink, 256, 8 << 20).await {
                PlayerEvent::Ended(why) => break why,
                PlayerEvent::Frames(_) => backoff = Duration::from_secs(1),
                PlayerEvent::Lagged(_) => {}
            }
        };
        drop(player);
        warn!(stream = %key, reason = %why, retry_in = ?backoff, "static_pull: the stream ended; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
