//! A publisher: checks (enabled, `publish.allow`, `publish.key`), then feeds the hub — or,
//! on an edge with publishing enabled, forwards the publish to the origin.

use super::{Ended, Session, StreamName};
use crate::guard::{KeyGuard, KeyVerdict, Refusal};
use crate::state::ClientKind;
use crate::Mode;
use common::rtmp::chunk::msg_type;
use common::rtmp::command::{self, user_control, Command};
use common::rtmp::conn::RtmpError;
use std::time::Instant;
use tracing::{info, warn};

/// Ends with the connection kept ([`Ended::ByClient`]) when the client unpublishes, or
/// closed after a refusal.
pub(super) async fn run(mut s: Session, cmd: Command, stream_id: u32) -> Result<Ended, RtmpError> {
    let mut raw = cmd.first_string_arg().unwrap_or("").to_string();
    let mut name = StreamName::parse(&raw);
    let cfg = s.config.publish.clone();
    let ip = s.peer.ip();
    let refusal = if !name.is_valid() {
        Some((
            "NetStream.Publish.BadName",
            format!("bad stream name {:?}", common::redact::query(&raw)),
        ))
    } else if !cfg.enabled {
        Some((
            "NetStream.Publish.Rejected",
            "publishing is disabled on this server".to_string(),
        ))
    } else if !cfg.allows(ip) {
        Some((
            "NetStream.Publish.Rejected",
            format!("{ip} is not in publish.allow"),
        ))
    } else if cfg.key.is_some() {
        check_key(&mut s, &cfg, &name).await
    } else {
        None
    };
    if let Some((code, why)) = refusal {
        warn!(stream = %name.name, reason = %why, "publish refused");
        s.status(stream_id, "error", code, &why).await?;
        return Ok(Ended::Close);
    }
    if let Some(url) = s.config.http_hooks.on_publish.clone() {
        match s
            .ask_hook(&url, "publish", &name, Refusal::HookPublish)
            .await
        {
            Ok(None) => {}
            Ok(Some(renamed)) => {
                raw = match renamed.query.is_empty() {
                    true => renamed.name.clone(),
                    false => format!("{}?{}", renamed.name, renamed.query),
                };
                name = renamed;
            }
            Err(()) => {
                s.status(
                    stream_id,
                    "error",
                    "NetStream.Publish.Rejected",
                    "refused by the publish hook",
                )
                .await?;
                return Ok(Ended::Close);
            }
        }
    }
    let key = s.stream_key(&name);
    if s.mode() == Mode::Remote {
        s.client.set(ClientKind::Publish, &key);
        return super::forward::forward_publish(s, &raw, stream_id)
            .await
            .map(|kept| match kept {
                Some(s) => Ended::ByClient(Box::new(s)),
                None => Ended::Close,
            });
    }
    let source = match claim(&s, &key).await {
        Ok(src) => src,
        Err(e) => {
            warn!(stream = %key, "publish refused: already publishing");
            s.status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                &e.to_string(),
            )
            .await?;
            return Ok(Ended::Close);
        }
    };
    s.reader.set_max_message_size(s.config.max_message_size);
    s.writer.queue_control(
        msg_type::USER_CONTROL,
        &command::user_control(user_control::STREAM_BEGIN, stream_id),
    );
    s.status(
        stream_id,
        "status",
        "NetStream.Publish.Start",
        &format!("{key} is now published"),
    )
    .await?;
    if s.fc_publish {
        s.fc_status("onFCPublish", "NetStream.Publish.Start", &cmd);
        s.writer.flush().await?;
    }
    info!(stream = %key, "publish started");
    // Registered while it lasts (in the background: the registry never delays a publish).
    let registered = s.state.registry.published(&key);
    s.client.set(ClientKind::Publish, &key);
    let client = s.client.clone();
    let result = loop {
        let msg = tokio::select! {
            m = s.reader.read_message() => match m {
                Ok(m) => m,
                Err(e) => break Err(e),
            },
            _ = client.kick.notified() => {
                break Err(RtmpError::Protocol("disconnected by the operator".into()));
            }
        };
        if let Err(e) = s.ack_if_due().await {
            break Err(e);
        }
        client
            .bytes_in
            .store(s.reader.bytes_in(), std::sync::atomic::Ordering::Relaxed);
        match msg.type_id {
            msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                source.push(msg.type_id, msg.timestamp, msg.payload)
            }
            msg_type::AGGREGATE => {
                if let Err(e) = push_aggregate(&source, msg.timestamp, &msg.payload) {
                    break Err(RtmpError::Protocol(e));
                }
            }
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let c = command::parse_command(&msg).map_err(RtmpError::Protocol)?;
                match c.name.as_str() {
                    "deleteStream" | "closeStream" => break Ok(()),
                    "FCUnpublish" => {
                        s.on_other_command(&c).await?;
                        break Ok(());
                    }
                    _ => s.on_other_command(&c).await?,
                }
            }
            _ => {}
        }
    };
    info!(stream = %key, frames = source.stream().info().frames_in, "publish stopped");
    drop(registered);
    drop(source);
    s.hook_done(&name);
    result.map(|()| Ended::ByClient(Box::new(s)))
}

/// The stream for this publisher. On an origin that relays `key` from another origin (the
/// registry's relay), the publisher here takes over: the relay is asked to give way, and the
/// claim is retried for up to a second.
async fn claim(s: &Session, key: &str) -> Result<crate::hub::Source, crate::hub::HubError> {
    let first = s.state.hub.start_source(key, s.id);
    let relaying = s.state.registry.is_on() && s.state.hub.info(key).is_some_and(|i| i.pulling);
    if first.is_ok() || !relaying {
        return first;
    }
    s.state.relay_yield.lock().unwrap().insert(key.to_string());
    let end = Instant::now() + std::time::Duration::from_secs(1);
    let result = loop {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        match s.state.hub.start_source(key, s.id) {
            Ok(src) => {
                info!(stream = %key, "publish takes the stream over from this origin's relay");
                break Ok(src);
            }
            Err(e) if Instant::now() >= end => break Err(e),
            Err(_) => {}
        }
    };
    s.state.relay_yield.lock().unwrap().remove(key);
    result
}

/// The publish key, compared in constant time; a source that keeps failing is slowed down
/// (each answer delayed) and then refused for a while without its key being looked at
/// (`guard::KeyGuard`). Returns the refusal, if any.
async fn check_key(
    s: &mut Session,
    cfg: &crate::config::PublishConfig,
    name: &StreamName,
) -> Option<(&'static str, String)> {
    let ip = s.peer.ip();
    let now = Instant::now();
    let verdict = s.state.key_guard.lock().unwrap().verdict(ip, now);
    if let KeyVerdict::Blocked(until) = verdict {
        s.state.refuse(
            Refusal::PublishBlocked,
            s.peer,
            "too many wrong publish keys",
        );
        let secs = until.saturating_duration_since(now).as_secs();
        return Some((
            "NetStream.Publish.Rejected",
            format!("too many wrong keys from {ip}: refused for {secs} s more"),
        ));
    }
    if cfg.key_matches(name.param("key")) {
        s.state.key_guard.lock().unwrap().succeeded(ip);
        return None;
    }
    let (failures, delay) = s.state.key_guard.lock().unwrap().failed(ip, now);
    let total = s.state.refusals.count(Refusal::PublishKey);
    warn!(
        failures,
        total,
        delay_ms = delay.as_millis() as u64,
        "publish key wrong or missing"
    );
    if failures >= KeyGuard::BLOCK_AFTER {
        warn!(%ip, failures, "publish source blocked for {} s", KeyGuard::BLOCK_FOR.as_secs());
    }
    tokio::time::sleep(delay).await;
    Some((
        "NetStream.Publish.Rejected",
        "missing or wrong ?key= for this stream".to_string(),
    ))
}

/// Splits an aggregate message (type 22: FLV tags back to back) into its messages.
fn push_aggregate(
    source: &crate::hub::Source,
    msg_ts: u32,
    data: &bytes::Bytes,
) -> Result<(), String> {
    let mut pos = 0;
    // Sub-message timestamps are shifted so the first one equals the aggregate's.
    let mut offset: Option<u32> = None;
    while pos + 11 <= data.len() {
        let h = &data[pos..pos + 11];
        let type_id = h[0] & 0x1f;
        let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        let ts = ((h[7] as u32) << 24) | ((h[4] as u32) << 16) | ((h[5] as u32) << 8) | h[6] as u32;
        let end = pos + 11 + len;
        if end + 4 > data.len() {
            return Err(format!("aggregate message truncated at byte {pos}"));
        }
        let off = *offset.get_or_insert(msg_ts.wrapping_sub(ts));
        source.push(type_id, ts.wrapping_add(off), data.slice(pos + 11..end));
        pos = end + 4;
    }
    Ok(())
}
