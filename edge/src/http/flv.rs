//! One HTTP-FLV viewer: `GET /APP/STREAM.flv`. The viewer is a hub player like an RTMP one
//! (on a cold edge it starts the pull), and the body is the FLV file header followed by the
//! stream's tags, live, until either side closes (no Content-Length: the body ends with the
//! connection, which every FLV player expects).
//!
//! The answer waits for the stream's tracks (its sequence headers, then the first media
//! frame) before the header goes out, because the header's `hasAudio` / `hasVideo` must name
//! exactly the tracks that follow. A stream that no origin has is a 404; one whose media
//! does not come within `origin_timeout` plus a few seconds is a 504.

use super::{response_head, Answer};
use crate::hub::{PullFrom, SharedFrame};
use crate::output::fanout::{Encoding, Release, Sub};
use crate::output::{self, flv, Delivery, Stop};
use crate::state::ClientKind;
use crate::upstream;
use bytes::Bytes;
use common::rtmp::chunk::msg_type;
use common::rtmp::media::MediaKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info};

/// What a viewer gets beyond `origin_timeout` to see the first media.
const FIRST_MEDIA_GRACE: Duration = Duration::from_secs(5);

/// Which tracks `frames` (a stream's start) shows, once it shows them all: both sequence
/// headers, or one of them and a media frame after it.
fn tracks(frames: &[SharedFrame]) -> Option<(bool, bool)> {
    let seq = |t| {
        frames
            .iter()
            .any(|f| f.type_id == t && f.kind == MediaKind::SequenceHeader)
    };
    let (audio, video) = (seq(msg_type::AUDIO), seq(msg_type::VIDEO));
    let media = frames.iter().any(|f| {
        matches!(f.type_id, msg_type::AUDIO | msg_type::VIDEO)
            && f.kind != MediaKind::SequenceHeader
    });
    ((audio && video) || ((audio || video) && media)).then_some((audio, video))
}

pub(super) async fn serve(
    state: Arc<crate::state::ServerState>,
    mut tcp: TcpStream,
    client: SocketAddr,
    id: u64,
    req: &super::Request,
    app: &str,
    stream: &str,
) -> std::io::Result<()> {
    let cfg = state.config();
    let cors = super::cfg_cors(&state);
    let key = format!("{app}/{stream}");
    // The pull outlives the viewer's play token, and the origin is not the viewer.
    let upstream_query = common::query::without(&req.query, "token");
    let raw = if upstream_query.is_empty() {
        stream.to_string()
    } else {
        format!("{stream}?{upstream_query}")
    };
    let refuse = |status: u16, why: String| Answer::error(status, why);
    if !cfg.http.as_ref().is_some_and(|h| h.flv) {
        let a = refuse(404, "HTTP-FLV is off ([http] flv = false)".into());
        return a.write(&mut tcp, req, cors, false).await;
    }
    let hub = state.hub.clone();
    // An origin with a registry relays a stream published elsewhere (as RTMP plays do).
    let pulls = state.pulls(&key);
    if !pulls && !hub.has_source(&key) {
        let a = refuse(404, format!("{key} is not being published"));
        return a.write(&mut tcp, req, cors, false).await;
    }
    if pulls
        && state
            .not_found
            .lock()
            .unwrap()
            .contains(&key, Instant::now())
    {
        let a = refuse(404, format!("{key} is on no origin"));
        return a.write(&mut tcp, req, cors, false).await;
    }
    let entry = state.register(id, client, "http-flv", ClientKind::Play);
    entry.client.set(ClientKind::Play, &key);
    let origins = upstream::Origins(&state);
    let pull = pulls.then(|| PullFrom {
        upstream: &origins,
        app,
        name: &raw,
    });
    let player = hub.watch(&key, pull);
    let mut delivery = Delivery::new(player, cfg.queue_length);
    let mut start = delivery.initial();
    // The tracks first (a cold edge's pull delivers them within a moment).
    let deadline = tokio::time::Instant::now() + cfg.origin_timeout + FIRST_MEDIA_GRACE;
    let mut probe = [0u8; 512];
    let (has_audio, has_video) = loop {
        if let Some(t) = tracks(&start) {
            break t;
        }
        tokio::select! {
            next = delivery.next(&mut start) => match next {
                Ok(()) => {}
                Err(Stop::Ended(why)) => {
                    let a = refuse(404, why);
                    return a.write(&mut tcp, req, cors, false).await;
                }
                Err(Stop::Behind) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                let a = refuse(504, format!("no media for {key} within {:?}", deadline.duration_since(tokio::time::Instant::now()) + cfg.origin_timeout + FIRST_MEDIA_GRACE));
                return a.write(&mut tcp, req, cors, false).await;
            }
            n = tcp.read(&mut probe) => if matches!(n, Ok(0) | Err(_)) { return Ok(()) },
        }
    };
    let head = response_head(
        200,
        &[
            ("Content-Type", "video/x-flv"),
            ("Cache-Control", "no-cache"),
        ],
        None,
        cors,
        false,
    );
    if req.method == super::Method::Head {
        return super::write_all(&mut tcp, &[head]).await;
    }
    info!(stream = %key, %client, has_audio, has_video, "http-flv play started");
    let mut batch: Vec<Bytes> = vec![head, flv::header(has_audio, has_video)];
    for f in start.drain(..) {
        flv::encode(&f, &mut batch);
    }
    let mut frames: Vec<SharedFrame> = Vec::new();
    // mw_latency > 0: the viewer is written by its clock's shard writer while it keeps up
    // (`output::fanout`); its task then only watches the connection.
    let tick = state.ticks.get(cfg.mw_latency);
    let (mut r, w) = tcp.into_split();
    let mut w = output::SharedWriter::new(w);
    // Bytes of `batch` already on the wire (the merged writer's partial write).
    let mut written = 0;
    let why: String = 'play: loop {
        if !batch.is_empty() {
            match output::write_from(&mut w, &batch, written, cfg.queue_length).await {
                Ok(n) => {
                    entry.client.add_out(n);
                    delivery.player.stream.add_out(n);
                }
                Err(e) => break e.to_string(),
            }
            // Freed, not cleared: the start (a whole GOP) made it large, and with merged
            // writes the batches are the shard writer's.
            batch = Vec::new();
            written = 0;
        }
        if let Some(tick) = &tick {
            let sub = Sub::new(delivery, &w, Encoding::Flv, entry.client.clone());
            let mut attached = tick.attach(&key, sub);
            // A player sends nothing more; what it sends is read and ignored (the writer
            // goes on meanwhile), and its close ends the play.
            let (sub, release) = loop {
                tokio::select! {
                    back = attached.released() => break back,
                    _ = entry.client.kick.notified() => break 'play "disconnected by the operator".into(),
                    n = r.read(&mut probe) => match n {
                        Ok(0) => break 'play "client closed".into(),
                        Err(e) => break 'play format!("client: {e}"),
                        Ok(_) => continue,
                    },
                }
            };
            delivery = sub.delivery;
            match release {
                Release::Slow {
                    pending,
                    written: n,
                } => {
                    batch = pending;
                    written = n;
                }
                Release::Stopped(Stop::Ended(why)) => break format!("stream ended: {why}"),
                Release::Stopped(Stop::Behind) => break "player stayed behind queue_length".into(),
                Release::Failed(e) => break e.to_string(),
            }
            continue;
        }
        tokio::select! {
            next = delivery.next(&mut frames) => match next {
                Ok(()) => {}
                Err(Stop::Ended(why)) => break format!("stream ended: {why}"),
                Err(Stop::Behind) => break "player stayed behind queue_length".into(),
            },
            _ = entry.client.kick.notified() => break "disconnected by the operator".into(),
            // A player sends nothing more; what it sends is read and ignored, and its
            // close ends the play.
            n = r.read(&mut probe) => match n {
                Ok(0) => break "client closed".into(),
                Err(e) => break format!("client: {e}"),
                Ok(_) => continue,
            },
        }
        for f in frames.drain(..) {
            flv::encode(&f, &mut batch);
        }
    };
    info!(stream = %key, %client, reason = %why, bytes = entry.client.bytes_out.load(std::sync::atomic::Ordering::Relaxed), "http-flv play ended");
    debug!("http-flv done");
    Ok(())
}
