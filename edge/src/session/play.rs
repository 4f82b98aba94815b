//! A player: subscribe to the hub (starting the edge's pull if it is the first), send the
//! stream's start (status, metadata, sequence headers, GOP), then the live ring.
//!
//! Writes are merged: after each write the player sleeps `mw_latency` and then sends every
//! message that arrived meanwhile in one `writev`, which is what keeps the cost per viewer
//! low. A player that falls a ring behind skips to the next keyframe; one whose socket does
//! not take a write for `queue_length`, or that stays behind that long, is disconnected.

use super::{Session, StreamName};
use crate::hub::{SharedFrame, Skipper, PLAY_STREAM_ID};
use crate::upstream;
use crate::Mode;
use bytes::Bytes;
use common::rtmp::chunk::msg_type;
use common::rtmp::command::{self, user_control, Command};
use common::rtmp::conn::RtmpError;
use std::io::IoSlice;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{info, warn};

/// At most this many messages go into one writev.
const MAX_BATCH: usize = 64;

pub(super) async fn run(mut s: Session, cmd: Command, stream_id: u32) -> Result<(), RtmpError> {
    let raw = cmd.first_string_arg().unwrap_or("").to_string();
    let name = StreamName::parse(&raw);
    if !name.is_valid() {
        s.status(
            stream_id,
            "error",
            "NetStream.Play.StreamNotFound",
            "bad stream name",
        )
        .await?;
        return Err(RtmpError::Protocol(format!(
            "play of a bad stream name {raw:?}"
        )));
    }
    let key = s.stream_key(&name);
    let hub = s.state.hub.clone();
    if s.mode() == Mode::Local && !hub.has_source(&key) {
        s.status(
            stream_id,
            "error",
            "NetStream.Play.StreamNotFound",
            &format!("{key} is not being published"),
        )
        .await?;
        info!(stream = %key, "play refused: not published");
        // Give the client a moment to read the status before the close.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        return Ok(());
    }
    let (mut player, start_pull) = hub.subscribe(&key, s.mode() == Mode::Remote);
    if start_pull {
        upstream::start_pull(
            s.state.clone(),
            player.stream.clone(),
            s.app.clone(),
            raw.clone(),
        );
    }
    info!(stream = %key, "play started");

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

    let state = s.state.clone();
    let cfg = &state.config;
    let chunk_size = cfg.chunk_size;
    let wire = |f: &SharedFrame| -> Bytes {
        if stream_id == PLAY_STREAM_ID {
            f.wire.clone()
        } else {
            f.encode_for(stream_id, chunk_size)
        }
    };
    let mut batch: Vec<Bytes> = player.initial.iter().map(wire).collect();
    player.initial = Vec::new();
    let mut skipper = Skipper::default();
    let mut caught_up_at = Instant::now();
    let result: Result<(), RtmpError> = async {
        loop {
            if !batch.is_empty() {
                let write = write_all_vectored(s.writer.get_mut(), &batch);
                tokio::time::timeout(cfg.queue_length, write)
                    .await
                    .map_err(|_| RtmpError::Timeout("writing to a stalled player"))??;
                batch.clear();
                if !cfg.mw_latency.is_zero() {
                    tokio::time::sleep(cfg.mw_latency).await;
                }
            }
            // Wait for the next message, reading the client's commands meanwhile.
            let first = tokio::select! {
                r = player.rx.recv() => r,
                msg = s.reader.read_message() => {
                    let msg = msg?;
                    s.ack_if_due().await?;
                    if common::rtmp::client::is_command(&msg) {
                        if let Ok(c) = command::parse_command(&msg) {
                            match c.name.as_str() {
                                "deleteStream" | "closeStream" => return Ok(()),
                                _ => s.on_other_command(&c).await?,
                            }
                        }
                    }
                    continue;
                }
            };
            let mut next = Some(first);
            while let Some(r) = next.take() {
                match r {
                    Ok(f) => {
                        if skipper.admit(&f) {
                            batch.push(wire(&f));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        warn!(
                            skipped = n,
                            "player fell behind: skipping to the next keyframe"
                        );
                        skipper.lagged(n);
                    }
                    Err(RecvError::Closed) => return Ok(()),
                }
                continue_try(&mut next, &mut player.rx, &mut caught_up_at, batch.len());
            }
            if caught_up_at.elapsed() > cfg.queue_length {
                return Err(RtmpError::Timeout(
                    "catching up: player stayed behind queue_length",
                ));
            }
        }
    }
    .await;
    info!(stream = %key, "play stopped");
    let _ = s.writer.get_mut().shutdown().await;
    result
}

/// Takes the next ready message if the batch has room; notes when the ring is drained.
fn continue_try(
    next: &mut Option<Result<SharedFrame, RecvError>>,
    rx: &mut tokio::sync::broadcast::Receiver<SharedFrame>,
    caught_up_at: &mut Instant,
    batched: usize,
) {
    if batched >= MAX_BATCH {
        return;
    }
    *next = match rx.try_recv() {
        Ok(f) => Some(Ok(f)),
        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        Err(TryRecvError::Empty) => {
            *caught_up_at = Instant::now();
            None
        }
    };
}

/// Writes all buffers with writev, resuming after partial writes.
async fn write_all_vectored<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
) -> std::io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    while idx < bufs.len() {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity((bufs.len() - idx).min(MAX_BATCH));
        slices.push(IoSlice::new(&bufs[idx][off..]));
        for b in &bufs[idx + 1..] {
            if slices.len() == MAX_BATCH {
                break;
            }
            slices.push(IoSlice::new(b));
        }
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}
