//! A publish on an edge with `publish.enabled`: relayed to the first origin that accepts it,
//! media passed through as it comes; the origin's refusal reaches the publisher.

use super::Session;
use common::rtmp::chunk::msg_type;
use common::rtmp::client::{is_command, RtmpClient};
use common::rtmp::command;
use common::rtmp::conn::RtmpError;
use common::rtmp::url::RtmpUrl;
use tracing::{info, warn};

/// An edge with `publish.enabled`: relays the client's publish to the first origin that
/// accepts it.
///
/// `Ok(Some(session))` when the client unpublished and keeps its connection (more commands
/// may follow, as with a local publish); `Ok(None)` when the publish was refused.
pub(crate) async fn forward_publish(
    mut s: Session,
    raw: &str,
    stream_id: u32,
) -> Result<Option<Session>, RtmpError> {
    let cfg = s.config.clone();
    let mut upstream = None;
    let mut refusal: Option<(String, String)> = None;
    for (host, port) in &cfg.origin {
        let url = RtmpUrl {
            host: host.clone(),
            port: *port,
            app: s.app.clone(),
            stream: raw.to_string(),
        };
        let attempt = async {
            let mut c = RtmpClient::connect_url(&url, cfg.origin_timeout).await?;
            c.publish(raw, cfg.origin_timeout).await?;
            Ok::<_, RtmpError>(c)
        };
        match attempt.await {
            Ok(c) => {
                info!(origin = %format!("{host}:{port}"), "publish forwarded");
                upstream = Some(c);
                break;
            }
            Err(e) => {
                warn!(origin = %format!("{host}:{port}"), error = %e, "origin refused the forwarded publish");
                // The first origin that answered with a reason is the one the publisher hears.
                if let (RtmpError::Refused { code, description }, None) = (&e, &refusal) {
                    refusal = Some((code.clone(), description.clone()));
                }
            }
        }
    }
    let Some(mut up) = upstream else {
        let (code, description) = refusal.unwrap_or_else(|| {
            (
                "NetStream.Publish.Rejected".to_string(),
                "no origin accepted the publish".to_string(),
            )
        });
        s.status(stream_id, "error", &code, &format!("origin: {description}"))
            .await?;
        return Ok(None);
    };
    s.reader.set_max_message_size(cfg.max_message_size);
    s.status(
        stream_id,
        "status",
        "NetStream.Publish.Start",
        "publishing (forwarded to origin)",
    )
    .await?;
    loop {
        tokio::select! {
            msg = s.reader.read_message() => {
                let msg = msg?;
                s.ack_if_due().await?;
                match msg.type_id {
                    msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                        up.send_media(msg.type_id, msg.timestamp, &msg.payload).await?;
                    }
                    _ if is_command(&msg) => {
                        let c = command::parse_command(&msg).map_err(RtmpError::Protocol)?;
                        match c.name.as_str() {
                            "deleteStream" | "closeStream" => return Ok(Some(s)),
                            "FCUnpublish" => {
                                s.on_other_command(&c).await?;
                                return Ok(Some(s));
                            }
                            _ => s.on_other_command(&c).await?,
                        }
                    }
                    _ => {}
                }
            }
            msg = up.reader.read_message() => {
                let msg = msg?;
                up.respond(&msg).await?;
            }
        }
    }
}
