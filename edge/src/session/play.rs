//! A player: subscribe to the hub (starting the edge's pull if it is the first), send the
//! stream's start (status, metadata, sequence headers, GOP), then the live ring.
//!
//! Writes are merged: after each write the player waits for the next tick of the server's
//! `mw_latency` clock (`output::Tick`, one for all players) and then sends every message
//! that arrived meanwhile in one `writev`, which is what keeps the cost per viewer low. A player that falls behind the ring skips to the next keyframe; one whose socket does
//! not take a write for `queue_length`, or that stays behind that long, is disconnected.
//! A stream that no origin has ends its players with `StreamNotFound`.
//!
//! While playing, `pause` stops the media (answered `NetStream.Pause.Notify`) and the unpause
//! resumes it at the next keyframe; `seek` is answered and the live stream goes on;
//! `deleteStream` / `closeStream` end the play and keep the connection.

use super::{Ended, Session, StreamName};
use crate::guard::Refusal;
use crate::hub::{PullFrom, SharedFrame};
use crate::output::fanout::{Encoding, Release, Sub};
use crate::output::{self, Delivery, Stop, WriteError};
use crate::state::ClientKind;
use crate::upstream;
use bytes::Bytes;
use common::rtmp::chunk::msg_type;
use common::rtmp::command::{self, user_control, Command};
use common::rtmp::conn::RtmpError;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

pub(super) async fn run(mut s: Session, cmd: Command, stream_id: u32) -> Result<Ended, RtmpError> {
    let raw = cmd.first_string_arg().unwrap_or("").to_string();
    drop(cmd);
    let mut name = StreamName::parse(&raw);
    if !name.is_valid() {
        s.status(
            stream_id,
            "error",
            "NetStream.Play.StreamNotFound",
            "bad stream name",
        )
        .await?;
        return Err(RtmpError::Protocol(format!(
            "play of a bad stream name {:?}",
            common::redact::query(&raw)
        )));
    }
    // Before anything about the stream is looked at: a refusal says nothing of whether it
    // exists.
    let mut allowed = s
        .state
        .play_allowed(&s.stream_key(&name), name.param("token"), s.peer);
    if let (true, Some(url)) = (allowed, s.config.http_hooks.on_play.clone()) {
        match s.ask_hook(&url, "play", &name, Refusal::HookPlay).await {
            Ok(None) => {}
            Ok(Some(renamed)) => name = renamed,
            Err(()) => allowed = false,
        }
    }
    if !allowed {
        s.status(
            stream_id,
            "error",
            "NetStream.Play.Failed",
            crate::token::REFUSED,
        )
        .await?;
        return Ok(Ended::Close);
    }
    let key = s.stream_key(&name);
    let hub = s.state.hub.clone();
    let shown = common::redact::query(&raw).into_owned();
    // An origin with a registry relays a stream published elsewhere (seeds/003's SP->SP).
    // (Not when it is published here: that is an ordinary local play.)
    let pulls = s.state.pulls(&key);
    if !pulls && !hub.has_source(&key) {
        return Box::pin(not_found(
            s,
            stream_id,
            &key,
            &format!("{key} is not being published"),
        ))
        .await;
    }
    if pulls
        && s.state
            .not_found
            .lock()
            .unwrap()
            .contains(&key, Instant::now())
    {
        return Box::pin(not_found(
            s,
            stream_id,
            &key,
            &format!("{key} is on no origin"),
        ))
        .await;
    }
    let origins = upstream::Origins(&s.state);
    let upstream_name = name.without_param("token");
    let pull = pulls.then(|| PullFrom {
        upstream: &origins,
        app: &s.app,
        name: &upstream_name,
    });
    let player = hub.watch(&key, pull);
    info!(stream = %key, "play started");
    s.client.set(ClientKind::Play, &key);
    // The stream's frames are encoded at its own chunk size, which a reload may have made
    // differ from the one announced at connect.
    let chunk_size = player.stream.chunk_size;
    if chunk_size != s.config.chunk_size {
        s.writer.queue_set_chunk_size(chunk_size as u32);
    }

    let w = &mut s.writer;
    w.queue_control(
        msg_type::USER_CONTROL,
        &command::user_control(user_control::STREAM_BEGIN, stream_id),
    );
    for (code, desc) in [
        ("NetStream.Play.Reset", "Playing and resetting"),
        ("NetStream.Play.Start", "Started playing"),
    ] {
        w.queue_command(stream_id, &command::on_status("status", code, desc));
    }
    let access = command::amf0(&vec![
        command::string("|RtmpSampleAccess"),
        rml_amf0::Amf0Value::Boolean(true),
        rml_amf0::Amf0Value::Boolean(true),
    ]);
    w.queue(
        common::rtmp::chunk::csid::DATA,
        0,
        msg_type::DATA_AMF0,
        stream_id,
        &access,
    );
    w.flush().await?;

    let cfg = s.config.clone();
    let encoding = Encoding::Rtmp {
        stream_id,
        chunk_size,
    };
    let mut delivery = Delivery::new(player, cfg.queue_length);
    let mut batch: Vec<Bytes> = Vec::new();
    for f in delivery.initial() {
        encoding.encode(&f, &mut batch);
    }
    // Bytes of `batch` already on the wire (the merged writer's partial write).
    let mut written = 0;
    let mut frames: Vec<SharedFrame> = Vec::new();
    let mut ended: Option<String> = None;
    // mw_latency > 0: the player is written by its clock's shard writer while it keeps up.
    let tick = s.state.ticks.get(cfg.mw_latency);
    // Ok(true): the client ended the play and keeps its connection. The player (in
    // `delivery`) moves into this block and leaves the stream when it ends. The rare steps
    // (a partial write's rest, a command, the end) are boxed: a player's state for its
    // whole play is then only what waiting needs.
    let result: Result<bool, RtmpError> = async {
        loop {
            Box::pin(write_pending(&mut s, &delivery, &mut batch, &mut written)).await?;
            if let Some(reason) = ended.take() {
                Box::pin(ended_by_origin(&mut s, stream_id, &key, &reason)).await?;
                return Ok(false);
            }
            let msg = if let Some(tick) = &tick {
                // Until the writer hands the player back, or a message comes in (detached
                // first: the answer must not interleave with the writer's bytes).
                let sub = Sub::new(delivery, s.writer.get_ref(), encoding, s.client.clone());
                let mut attached = tick.attach(&key, sub);
                let (sub, release, msg) = tokio::select! {
                    (sub, release) = attached.released() => (sub, Some(release), None),
                    _ = s.client.kick.notified() => return Err(kicked()),
                    msg = s.reader.read_message() => {
                        let (sub, release) = attached.detach();
                        (sub, release, Some(msg))
                    }
                };
                delivery = sub.delivery;
                match release {
                    Some(Release::Slow {
                        pending,
                        written: n,
                    }) => {
                        batch = pending;
                        written = n;
                    }
                    Some(Release::Stopped(Stop::Ended(reason))) => ended = Some(reason),
                    Some(Release::Stopped(Stop::Behind)) => return Err(behind()),
                    Some(Release::Failed(e)) => return Err(RtmpError::Io(e)),
                    None => {}
                }
                let Some(msg) = msg else { continue };
                Box::pin(write_pending(&mut s, &delivery, &mut batch, &mut written)).await?;
                msg
            } else {
                // mw_latency = 0: every message is written as it comes, from here.
                tokio::select! {
                    next = delivery.next(&mut frames) => {
                        match next {
                            Ok(()) => {}
                            Err(Stop::Ended(reason)) => ended = Some(reason),
                            Err(Stop::Behind) => return Err(behind()),
                        }
                        for f in frames.drain(..) {
                            encoding.encode(&f, &mut batch);
                        }
                        continue;
                    }
                    _ = s.client.kick.notified() => return Err(kicked()),
                    msg = s.reader.read_message() => msg,
                }
            };
            let msg = msg?;
            if let Some(keep) =
                Box::pin(on_message(&mut s, &msg, &mut delivery, stream_id, &key)).await?
            {
                return Ok(keep);
            }
        }
    }
    .await;
    debug!(stream = %key, name = %shown, "play stopped");
    s.hook_done(&name);
    s.client
        .bytes_in
        .store(s.reader.bytes_in(), std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(true) => {
            info!(stream = %key, "play ended by the client");
            Ok(Ended::ByClient(Box::new(s)))
        }
        other => {
            let _ = s.writer.get_mut().shutdown().await;
            other.map(|_| Ended::Close)
        }
    }
}

/// Writes what `batch` holds past its first `written` bytes (a start, or the rest of a
/// partial write), within `queue_length`, and counts it.
async fn write_pending(
    s: &mut Session,
    delivery: &Delivery,
    batch: &mut Vec<Bytes>,
    written: &mut usize,
) -> Result<(), RtmpError> {
    if batch.is_empty() {
        return Ok(());
    }
    let timeout = s.config.queue_length;
    let n = output::write_from(s.writer.get_mut(), batch, *written, timeout)
        .await
        .map_err(write_error)?;
    s.client.add_out(n);
    delivery.player.stream.add_out(n);
    // Freed, not cleared: the start (a whole GOP) made it large, and with merged writes
    // the batches are the shard writer's.
    *batch = Vec::new();
    *written = 0;
    Ok(())
}

/// Tells a player that its stream ended for good (no origin has it) and lets it read that.
async fn ended_by_origin(
    s: &mut Session,
    stream_id: u32,
    key: &str,
    reason: &str,
) -> Result<(), RtmpError> {
    s.status(stream_id, "error", "NetStream.Play.StreamNotFound", reason)
        .await?;
    info!(stream = %key, %reason, "play ended: stream not found");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

fn write_error(e: WriteError) -> RtmpError {
    match e {
        WriteError::Stalled => RtmpError::Timeout("writing to a stalled player"),
        WriteError::Io(e) => RtmpError::Io(e),
    }
}

fn kicked() -> RtmpError {
    RtmpError::Protocol("disconnected by the operator".into())
}

fn behind() -> RtmpError {
    RtmpError::Timeout("catching up: player stayed behind queue_length")
}

/// A message from a playing client: `Some(true)` when it ends the play and keeps the
/// connection (`deleteStream`, `closeStream`); pause, seek and other commands are answered.
async fn on_message(
    s: &mut Session,
    msg: &common::rtmp::chunk::Message,
    delivery: &mut Delivery,
    stream_id: u32,
    key: &str,
) -> Result<Option<bool>, RtmpError> {
    s.ack_if_due().await?;
    if !common::rtmp::client::is_command(msg) {
        return Ok(None);
    }
    let Ok(c) = command::parse_command(msg) else {
        return Ok(None);
    };
    match c.name.as_str() {
        "deleteStream" | "closeStream" => return Ok(Some(true)),
        "pause" => {
            let pause = matches!(c.args.first(), Some(rml_amf0::Amf0Value::Boolean(true)));
            // Live goes on meanwhile: an unpause resumes at a keyframe.
            delivery.set_paused(pause);
            let (code, desc) = match pause {
                true => ("NetStream.Pause.Notify", "Paused live"),
                false => ("NetStream.Unpause.Notify", "Unpaused live"),
            };
            debug!(stream = %key, paused = pause, "pause");
            s.status(stream_id, "status", code, desc).await?;
        }
        "seek" => {
            s.status(
                stream_id,
                "status",
                "NetStream.Seek.Notify",
                "live: the stream goes on",
            )
            .await?;
        }
        _ => s.on_other_command(&c).await?,
    }
    Ok(None)
}

/// Answers a play with `StreamNotFound` and closes after a moment (so the client reads it).
async fn not_found(
    mut s: Session,
    stream_id: u32,
    key: &str,
    why: &str,
) -> Result<Ended, RtmpError> {
    s.status(stream_id, "error", "NetStream.Play.StreamNotFound", why)
        .await?;
    info!(stream = %key, "play refused: {why}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(Ended::Close)
}
