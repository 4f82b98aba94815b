//! HLS / LL-HLS over HTTP: one packager per stream ([`crate::hls::Packager`], pure logic)
//! fed by a task that reads the hub like any player — so an HLS request alone starts the
//! pull on a cold edge, and the packager holds the pull while viewers fetch — and the
//! answers to `GET /APP/STREAM.m3u8[?_HLS_msn=N[&_HLS_part=M]]` and to the files it lists.
//!
//! - A playlist request waits (bounded) for the first part of a cold stream; a blocking
//!   reload waits until the asked part exists (answered within a moment of its completion)
//!   or answers 503 after three target durations; one asking too far ahead is a 400.
//! - A request for the preload-hinted part waits until it is complete.
//! - A packager ends `hls_idle_timeout` after the last request for it (then it no longer
//!   counts as a viewer of its pull), or with its stream.
//! - An HLS viewer, for the counts, is a client address that fetched within the last three
//!   target durations.

use super::{request::Route, Answer, Request};
use crate::config::HlsConfig;
use crate::hls::{parse_blocking_query, HlsOptions, Packager};
use crate::hub::PullFrom;
use crate::output::{Delivery, Stop};
use crate::state::ServerState;
use crate::upstream;
use common::rtmp::chunk::msg_type;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, Instrument};

/// How long a cold stream's first playlist request waits beyond `origin_timeout`.
const COLD_GRACE: Duration = Duration::from_secs(8);

/// Every stream being packaged, by hub key, and by the directory + file prefix its files
/// are requested under.
#[derive(Default)]
pub struct Registry {
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
}

pub struct HlsStream {
    key: String,
    /// `APP/DIR/PREFIX`: where its files are requested (`PREFIX-*.m4s`).
    file_stem: String,
    packager: Mutex<Packager>,
    /// Bumped after every push: waiters re-check their condition.
    version: watch::Sender<u64>,
    last_request: Mutex<Instant>,
    viewers: Mutex<HashMap<IpAddr, Instant>>,
    ended: Mutex<Option<String>>,
    target: Duration,
}

impl HlsStream {
    fn touch(&self, client: IpAddr) {
        let now = Instant::now();
        *self.last_request.lock().unwrap() = now;
        let mut v = self.viewers.lock().unwrap();
        v.insert(client, now);
        let keep = self.target * 3;
        v.retain(|_, t| now.duration_since(*t) <= keep);
    }

    /// Client addresses that fetched within the last three target durations.
    pub fn viewers(&self) -> usize {
        let now = Instant::now();
        let keep = self.target * 3;
        self.viewers
            .lock()
            .unwrap()
            .values()
            .filter(|t| now.duration_since(**t) <= keep)
            .count()
    }

    /// Waits until `ready` holds on the packager (true), the stream ends or `limit`
    /// passes (false).
    async fn wait(&self, limit: Duration, ready: impl Fn(&Packager) -> bool) -> bool {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if ready(&self.packager.lock().unwrap()) {
                return true;
            }
            if self.ended.lock().unwrap().is_some() {
                return false;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return ready(&self.packager.lock().unwrap()),
            }
        }
    }
}

/// The last segment of a stream name: what its files are named after.
fn leaf(stream: &str) -> &str {
    stream.rsplit('/').next().unwrap_or(stream)
}

impl Registry {
    fn by_file(&self, dir: &str, file: &str) -> Option<Arc<HlsStream>> {
        let map = self.streams.lock().unwrap();
        // The prefix is everything before one of the file's dashes.
        file.match_indices('-').find_map(|(i, _)| {
            let stem = format!("{dir}/{}", &file[..i]);
            map.values().find(|s| s.file_stem == stem).cloned()
        })
    }

    /// The stream's packager, started (with its feeding task) if it is not running.
    fn get_or_start(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        cfg: &HlsConfig,
        app: &str,
        stream: &str,
        raw: &str,
    ) -> Arc<HlsStream> {
        let key = format!("{app}/{stream}");
        let mut map = self.streams.lock().unwrap();
        if let Some(s) = map.get(&key) {
            if s.ended.lock().unwrap().is_none() {
                return s.clone();
            }
        }
        let opts = HlsOptions {
            fragment: cfg.fragment,
            window: cfg.window,
            part: cfg.part,
        };
        let dir = match stream.rsplit_once('/') {
            Some((d, _)) => format!("{app}/{d}"),
            None => app.to_string(),
        };
        let hs = Arc::new(HlsStream {
            key: key.clone(),
            file_stem: format!("{dir}/{}", crate::hls::file_prefix(leaf(stream))),
            packager: Mutex::new(Packager::with_name(opts, leaf(stream))),
            version: watch::channel(0).0,
            last_request: Mutex::new(Instant::now()),
            viewers: Default::default(),
            ended: Mutex::new(None),
            target: cfg.fragment,
        });
        map.insert(key.clone(), hs.clone());
        drop(map);
        let origins = upstream::Origins(state);
        // An origin relays a stream published elsewhere, as RTMP and HTTP-FLV plays do.
        let pull = state.pulls(&key).then_some(PullFrom {
            upstream: &origins,
            app,
            name: raw,
        });
        let player = state.hub.watch(&key, pull);
        let span = tracing::info_span!(parent: None, "hls", stream = %key);
        tokio::spawn(
            feed(
                state.clone(),
                self.clone(),
                hs.clone(),
                Delivery::new(player, state.config().queue_length),
                cfg.idle_timeout,
            )
            .instrument(span),
        );
        hs
    }

    fn remove(&self, hs: &Arc<HlsStream>) {
        let mut map = self.streams.lock().unwrap();
        if map.get(&hs.key).is_some_and(|s| Arc::ptr_eq(s, hs)) {
            map.remove(&hs.key);
        }
    }
}

/// Feeds the packager from the hub until the stream ends or nobody asked for
/// `idle_timeout`.
async fn feed(
    state: Arc<ServerState>,
    reg: Arc<Registry>,
    hs: Arc<HlsStream>,
    mut delivery: Delivery,
    idle: Duration,
) {
    info!("hls packaging started");
    let mut frames = delivery.initial();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let why = loop {
        if !frames.is_empty() {
            let mut p = hs.packager.lock().unwrap();
            for f in frames.drain(..) {
                if matches!(
                    f.type_id,
                    msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0
                ) {
                    p.push(f.type_id, f.timestamp, &f.payload);
                }
            }
            drop(p);
            hs.version.send_modify(|v| *v += 1);
        }
        tokio::select! {
            next = delivery.next(&mut frames) => match next {
                Ok(()) => {}
                Err(Stop::Ended(why)) => break format!("stream ended: {why}"),
                // The packager keeps up with any source; a stall here restarts at a keyframe.
                Err(Stop::Behind) => {}
            },
            _ = tick.tick() => {
                state.hls_viewers.lock().unwrap().insert(hs.key.clone(), hs.viewers());
                if hs.last_request.lock().unwrap().elapsed() >= idle {
                    break format!("no request for {idle:?} (hls_idle_timeout)");
                }
            }
        }
    };
    state.hls_viewers.lock().unwrap().remove(&hs.key);
    *hs.ended.lock().unwrap() = Some(why.clone());
    hs.version.send_modify(|v| *v += 1);
    reg.remove(&hs);
    info!(reason = %why, "hls packaging ended");
}

fn hls_config(state: &ServerState) -> Option<HlsConfig> {
    state.config().http.as_ref().and_then(|h| h.hls)
}

/// The answer to a playlist or file request.
pub(super) async fn answer(
    state: &Arc<ServerState>,
    reg: &Arc<Registry>,
    route: &Route,
    req: &Request,
    client: SocketAddr,
) -> Answer {
    let Some(cfg) = hls_config(state) else {
        return Answer::error(404, "HLS is off ([hls] enabled = false)");
    };
    match route {
        Route::Playlist { app, stream } => {
            playlist(state, reg, &cfg, app, stream, req, client).await
        }
        Route::HlsFile { dir, file } => {
            let hs = match reg.by_file(dir, file) {
                Some(hs) => hs,
                None => {
                    // A cold edge behind a balancer without stickiness gets a file request
                    // before any playlist request: start packaging the stream the name belongs
                    // to. The packager starts at the GOP cache's keyframe, so a file of the
                    // current segment or later (what an LL-HLS player asks for near the live
                    // edge) is cut here too, under the same name: wait for it, bounded. An
                    // older one is a 404 after the wait.
                    let Some((app, stream)) = stream_of_file(dir, file) else {
                        return Answer::error(404, format!("{file}: not a file of a stream"));
                    };
                    let key = format!("{app}/{stream}");
                    if !state.pulls(&key) && !state.hub.has_source(&key) {
                        return Answer::error(404, format!("{key} is not being published"));
                    }
                    let hs = reg.get_or_start(state, &cfg, &app, &stream, &stream);
                    hs.touch(client.ip());
                    let name = file.to_string();
                    let limit = state.config().origin_timeout.min(Duration::from_secs(5))
                        + cfg.fragment * 2;
                    if !hs.wait(limit, |p| p.file(&name).is_some()).await {
                        return Answer::error(
                            404,
                            format!("{file}: cut before this server packaged {key}"),
                        );
                    }
                    hs
                }
            };
            hs.touch(client.ip());
            file_answer(&hs, &cfg, file).await
        }
        Route::Flv { .. } => Answer::error(404, "not HLS"),
    }
}

/// The stream a file name (`STREAM-<ts>[.<i>].m4s`, `STREAM-o<n>-<ts>...`, `STREAM-gap<n>.m4s`,
/// `STREAM-init-<hash>.mp4`) in `dir` (`APP[/DIR...]`) belongs to, as (app, stream).
pub(super) fn stream_of_file(dir: &str, file: &str) -> Option<(String, String)> {
    let stem = file
        .strip_suffix(".m4s")
        .or_else(|| file.strip_suffix(".mp4"))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let name = if let Some((name, _)) = stem.rsplit_once("-init-") {
        name
    } else {
        let (rest, last) = stem.rsplit_once('-')?;
        let ts = last.split_once('.').map_or(last, |(t, _)| t);
        if last.strip_prefix("gap").is_some_and(digits) {
            rest
        } else if digits(ts) {
            // STREAM-o<n>-<ts>: a later timeline's names.
            match rest.rsplit_once('-') {
                Some((name, o)) if o.strip_prefix('o').is_some_and(digits) => name,
                _ => rest,
            }
        } else {
            return None;
        }
    };
    if name.is_empty() {
        return None;
    }
    let (app, sub) = dir
        .split_once('/')
        .map_or((dir, None), |(a, s)| (a, Some(s)));
    let stream = match sub {
        Some(s) => format!("{s}/{name}"),
        None => name.to_string(),
    };
    Some((app.to_string(), stream))
}

async fn playlist(
    state: &Arc<ServerState>,
    reg: &Arc<Registry>,
    cfg: &HlsConfig,
    app: &str,
    stream: &str,
    req: &Request,
    client: SocketAddr,
) -> Answer {
    let key = format!("{app}/{stream}");
    let blocking = match parse_blocking_query(&req.query) {
        Ok(b) => b,
        Err(why) => return Answer::error(400, why),
    };
    let conf = state.config();
    let pulls = state.pulls(&key);
    if !pulls && !state.hub.has_source(&key) {
        return Answer::error(404, format!("{key} is not being published"));
    }
    if pulls
        && state
            .not_found
            .lock()
            .unwrap()
            .contains(&key, Instant::now())
    {
        return Answer::error(404, format!("{key} is on no origin"));
    }
    // The pull outlives the viewer's play token, and the origin is not the viewer.
    let upstream_query = common::query::without(&req.query, "token");
    let raw = match upstream_query.is_empty() {
        true => stream.to_string(),
        false => format!("{stream}?{upstream_query}"),
    };
    let hs = reg.get_or_start(state, cfg, app, stream, &raw);
    hs.touch(client.ip());
    let ready = match blocking {
        Some((msn, part)) => {
            if hs.packager.lock().unwrap().too_far_ahead(msn) {
                return Answer::error(
                    400,
                    format!("_HLS_msn={msn} is more than two segments ahead"),
                );
            }
            let limit = cfg.fragment * 3;
            let ok = match part {
                Some(part) => hs.wait(limit, |p| p.has_part(msn, part)).await,
                None => hs.wait(limit, |p| p.has_segment(msn)).await,
            };
            if !ok && hs.ended.lock().unwrap().is_none() {
                return Answer::error(
                    503,
                    format!("part {msn}.{part:?} not ready within {limit:?}"),
                );
            }
            ok
        }
        // A plain reload of a cold stream waits for one whole segment: players that do
        // not read parts (ffmpeg, older hls.js) need one to start.
        None => {
            hs.wait(conf.origin_timeout + COLD_GRACE + cfg.fragment * 2, |p| {
                p.playlist().is_some_and(|t| t.contains("#EXTINF"))
            })
            .await
        }
    };
    let text = hs.packager.lock().unwrap().playlist();
    // With play tokens, the segments and parts are fetched with the playlist's token.
    let text = match (
        conf.play.tokens_required(),
        common::query::param(&req.query, "token"),
    ) {
        (true, Some(t)) => {
            text.map(|p| crate::token::playlist_with_query(&p, &format!("token={t}")))
        }
        _ => text,
    };
    match (ready, text) {
        (_, Some(text)) => Answer {
            status: 200,
            content_type: "application/vnd.apple.mpegurl",
            cache_control: "no-cache",
            body: text.into(),
        },
        (_, None) => match hs.ended.lock().unwrap().clone() {
            Some(why) => Answer::error(404, why),
            None => Answer::error(504, format!("no media for {key} yet")),
        },
    }
}

async fn file_answer(hs: &HlsStream, cfg: &HlsConfig, file: &str) -> Answer {
    let found = hs.packager.lock().unwrap().file(file);
    let body = match found {
        Some(b) => Some(b),
        None => {
            // The preload hint: wait until that part is complete (or the hint moved on).
            let hinted = hs.packager.lock().unwrap().preload_hint().as_deref() == Some(file);
            if hinted {
                let name = file.to_string();
                hs.wait(cfg.fragment * 2, |p| {
                    p.file(&name).is_some() || p.preload_hint().as_deref() != Some(&name)
                })
                .await;
                hs.packager.lock().unwrap().file(file)
            } else {
                None
            }
        }
    };
    match body {
        Some(body) => Answer {
            status: 200,
            content_type: if file.ends_with(".mp4") {
                "video/mp4"
            } else {
                "video/iso.segment"
            },
            // Names derive from the media and never stand for two contents.
            cache_control: "max-age=3600",
            body,
        },
        None => Answer::error(
            404,
            format!("{file}: not in the playlist (expired or unknown)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::stream_of_file;

    #[test]
    fn a_file_name_tells_its_stream() {
        let s = |d, f| stream_of_file(d, f).map(|(a, s)| format!("{a}/{s}"));
        assert_eq!(s("live", "cam-2023.m4s").as_deref(), Some("live/cam"));
        assert_eq!(s("live", "cam-2023.3.m4s").as_deref(), Some("live/cam"));
        assert_eq!(
            s("live", "my-cam-o7-40.m4s").as_deref(),
            Some("live/my-cam")
        );
        assert_eq!(s("live", "cam-gap12.m4s").as_deref(), Some("live/cam"));
        assert_eq!(
            s("live/a", "cam-init-31724ac8.mp4").as_deref(),
            Some("live/a/cam")
        );
        assert_eq!(s("live", "cam.m4s"), None);
        assert_eq!(s("live", "-1.m4s"), None);
    }
}
