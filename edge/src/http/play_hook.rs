//! `[http_hooks] on_play` and `on_done` for the HTTP players, as for RTMP's (`crate::hooks`).
//!
//! - **HTTP-FLV**: one connection is one play, so the hook is asked once per connection
//!   before anything about the stream is looked at; a rename serves the renamed stream, and
//!   `on_done` is sent when the connection ends.
//! - **HLS**: a player is a run of requests (playlist reloads, parts, segments) from one
//!   address. The hook is asked at the first request of an address for a stream, and its
//!   verdict is kept while that address keeps requesting: an allowed viewer idle for
//!   [`HLS_IDLE`] has left, and gets its `on_done`; a refusal is kept for [`REFUSAL_KEPT`],
//!   so a refused player's reloads do not each become a call. A rename answers the playlist
//!   with a `302` to the renamed stream's playlist (players follow it, and take the files
//!   from there); a file is never renamed (a player fetches the playlist first).
//!
//! A refusal answers `403` with the same text as a refused play token and is counted as
//! `hook_play`, whether or not the stream exists.

use super::hls_plays::{HlsPlays, Kept, MAX_KEPT, REFUSAL_KEPT};
use super::request::{Request, Route};
use crate::guard::Refusal;
use crate::hooks::{Call, HookUrl, Verdict};
use crate::state::ServerState;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What a renamed stream's name is escaped for in a `Location` header.
const NAME: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

/// What the request goes on with.
pub(super) enum Checked {
    /// Serve this route (the request's, or the renamed stream's FLV).
    Go(Route, Option<Box<Done>>),
    /// Answer `302` with this location (a renamed HLS playlist).
    Redirect(String),
    /// Answer `403`.
    Refused,
}

/// `on_done` of an HTTP-FLV play, sent when dropped (the connection ended).
pub(super) struct Done {
    url: HookUrl,
    timeout: Duration,
    addr: IpAddr,
    client_id: u64,
    app: String,
    name: String,
    tc_url: String,
    query: String,
}

impl Drop for Done {
    fn drop(&mut self) {
        crate::hooks::done(
            self.url.clone(),
            self.timeout,
            Call {
                call: "done",
                addr: self.addr,
                client_id: self.client_id,
                app: &self.app,
                name: &self.name,
                tc_url: &self.tc_url,
                query: &self.query,
            },
        );
    }
}

/// The request's play, put to `on_play` when one is configured.
pub(super) async fn check(
    state: &ServerState,
    route: Route,
    req: &Request,
    client: SocketAddr,
    id: u64,
    local: SocketAddr,
) -> Checked {
    let cfg = state.config();
    let Some(url) = cfg.http_hooks.on_play.clone() else {
        return Checked::Go(route, None);
    };
    let timeout = cfg.http_hooks.timeout;
    let (app, stream) = match &route {
        Route::Flv { app, stream } | Route::Playlist { app, stream } => {
            (app.clone(), stream.clone())
        }
        Route::HlsFile { dir, file } => match super::hls::stream_of_file(dir, file) {
            Some(s) => s,
            // Not a file of any stream: the HLS answer says so (404), nothing to ask about.
            None => return Checked::Go(route, None),
        },
    };
    let tc_url = format!("http://{local}/{app}");
    let ask = |name: String| {
        let (url, tc_url, app) = (url.clone(), tc_url.clone(), app.clone());
        async move {
            let call = Call {
                call: "play",
                addr: client.ip(),
                client_id: id,
                app: &app,
                name: &name,
                tc_url: &tc_url,
                query: &req.query,
            };
            Box::pin(crate::hooks::ask(&url, timeout, &call)).await
        }
    };
    let refused = |why: &str| {
        state.refuse(
            Refusal::HookPlay,
            client,
            &format!("play of {app}/{stream}: {why}"),
        );
        Checked::Refused
    };
    if let Route::Flv { .. } = route {
        return match ask(stream.clone()).await {
            Verdict::Refuse(why) => refused(&why),
            verdict => {
                let name = match verdict {
                    Verdict::Rename(n) => {
                        tracing::info!(from = %stream, to = %n, hook = %url, "play renamed by the hook");
                        n
                    }
                    _ => stream.clone(),
                };
                let done = cfg.http_hooks.on_done.clone().map(|url| {
                    Box::new(Done {
                        url,
                        timeout,
                        addr: client.ip(),
                        client_id: id,
                        app: app.clone(),
                        name: name.clone(),
                        tc_url: tc_url.clone(),
                        query: req.query.clone(),
                    })
                });
                Checked::Go(Route::Flv { app, stream: name }, done)
            }
        };
    }
    // HLS: the kept verdict, or the hook's.
    let now = Instant::now();
    let plays: &HlsPlays = &state.hls_plays;
    let key = (client.ip(), format!("{app}/{stream}"));
    if let Some(k) = plays.kept.lock().unwrap().get_mut(&key) {
        if k.allowed {
            k.last = now;
            return Checked::Go(route, None);
        }
        if now.duration_since(k.since) < REFUSAL_KEPT {
            return refused("refused by the hook a moment ago");
        }
    }
    let verdict = ask(stream.clone()).await;
    let keep = |stream: &str, allowed: bool| {
        let mut kept = plays.kept.lock().unwrap();
        if kept.len() < MAX_KEPT {
            kept.insert(
                (client.ip(), format!("{app}/{stream}")),
                Kept {
                    allowed,
                    since: now,
                    last: now,
                    client_id: id,
                    tc_url: tc_url.clone(),
                    query: req.query.clone(),
                },
            );
        }
    };
    match verdict {
        Verdict::Allow => {
            keep(&stream, true);
            Checked::Go(route, None)
        }
        Verdict::Rename(n) => match route {
            Route::Playlist { .. } => {
                tracing::info!(from = %stream, to = %n, hook = %url, "HLS play renamed by the hook");
                keep(&n, true);
                let query = if req.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", req.query)
                };
                // The name may hold anything but `/` and `?`: escaped for the header.
                let n_url = percent_encoding::utf8_percent_encode(&n, NAME);
                Checked::Redirect(format!("/{app}/{n_url}.m3u8{query}"))
            }
            _ => {
                keep(&stream, false);
                refused("the hook renamed a file's stream: only a playlist is renamed")
            }
        },
        Verdict::Refuse(why) => {
            keep(&stream, false);
            refused(&why)
        }
    }
}
