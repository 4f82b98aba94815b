//! `edge publish FILE.flv rtmp://HOST:PORT/APP/STREAM [--loop]`: publishes an FLV in real time,
//! like `ffmpeg -re [-stream_loop -1] -i FILE -c copy -f flv URL`.

use super::flv::{self, FlvTag};
use bytes::Bytes;
use common::rtmp::chunk::msg_type;
use common::rtmp::client::{is_command, RtmpClient};
use common::rtmp::command;
use common::rtmp::conn::RtmpError;
use common::rtmp::url::RtmpUrl;
use common::shutdown::Shutdown;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// Gap inserted between the last tag of a loop and the first of the next.
const LOOP_GAP_MS: u32 = 33;

/// Publishes `tags` to `url` in real time; with `looped`, until `shutdown`.
pub async fn publish(
    tags: &[FlvTag],
    url: &RtmpUrl,
    looped: bool,
    mut shutdown: Shutdown,
) -> Result<(), RtmpError> {
    let timeout = Duration::from_secs(10);
    let mut client = RtmpClient::connect_url(url, timeout).await?;
    client.publish(&url.stream, timeout).await?;
    info!(%url, "publishing");
    let first_ts = tags.first().map(|t| t.timestamp).unwrap_or(0);
    let span = tags
        .last()
        .map(|t| t.timestamp)
        .unwrap_or(0)
        .wrapping_sub(first_ts)
        + LOOP_GAP_MS;
    let start = Instant::now();
    let mut offset: u32 = 0;
    let mut sent_metadata = false;
    loop {
        for tag in tags {
            let rel = tag.timestamp.wrapping_sub(first_ts).wrapping_add(offset);
            if tag.type_id == msg_type::DATA_AMF0 {
                if sent_metadata {
                    continue;
                }
                sent_metadata = true;
                let mut payload = command::amf0(&vec![command::string("@setDataFrame")]).to_vec();
                payload.extend_from_slice(&tag.data);
                client.send_media(tag.type_id, rel, &payload).await?;
                continue;
            }
            let due = start + Duration::from_millis(rel as u64);
            // Wait until the tag is due, answering the server meanwhile.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    _ = shutdown.fired() => return Ok(()),
                    msg = client.reader.read_message() => {
                        let msg = msg?;
                        client.respond(&msg).await?;
                        if is_command(&msg) {
                            if let Ok(c) = command::parse_command(&msg) {
                                if c.property("level") == Some("error") {
                                    return Err(RtmpError::Refused {
                                        code: c.property("code").unwrap_or("").into(),
                                        description: c.property("description").unwrap_or("").into(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            client.send_media(tag.type_id, rel, &tag.data).await?;
        }
        if !looped {
            return Ok(());
        }
        offset = offset.wrapping_add(span);
    }
}

/// Reads an FLV file for [`publish`].
pub fn load(path: &std::path::Path) -> Result<Vec<FlvTag>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    flv::parse(Bytes::from(data)).map_err(|e| format!("{}: {e}", path.display()))
}
