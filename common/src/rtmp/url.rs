//! `rtmp://HOST[:PORT]/APP/STREAM[?QUERY]` as players and publishers write it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    /// Stream name including any `?query` (sent as-is in play/publish, as FFmpeg does).
    pub stream: String,
}

impl RtmpUrl {
    /// Errors show the URL with its query values masked (it may carry a publish key).
    pub fn parse(url: &str) -> Result<RtmpUrl, String> {
        let raw = url;
        let url = crate::redact::query(raw);
        let rest = raw
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("{url:?} does not start with rtmp://"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?} has no /APP/STREAM path"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?} has an invalid port {p:?}"))?;
                (h, port)
            }
            _ => (authority, 1935),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let (app, stream) = path.split_once('/').ok_or_else(|| {
            format!("{url:?} needs both an app and a stream: rtmp://HOST/APP/STREAM")
        })?;
        if app.is_empty() || stream.is_empty() {
            return Err(format!(
                "{url:?} needs both an app and a stream: rtmp://HOST/APP/STREAM"
            ));
        }
        Ok(RtmpUrl {
            host: host.to_string(),
            port,
            app: app.to_string(),
            stream: stream.to_string(),
        })
    }

    /// The tcUrl a client sends in `connect`.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// For logs: query values (publish keys, tokens) are masked.
impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            crate::redact::query(&self.tc_url()),
            crate::redact::query(&self.stream)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/cam?key=x").unwrap();
        assert_eq!(u.port, 1936);
        assert_eq!(u.app, "live");
        assert_eq!(u.stream, "cam?key=x");
        assert_eq!(RtmpUrl::parse("rtmp://h/live/s").unwrap().port, 1935);
        assert!(RtmpUrl::parse("http://h/live/s").is_err());
        assert!(RtmpUrl::parse("rtmp://h/live").is_err());
        assert!(RtmpUrl::parse("rtmp://h:99999/live/s").is_err());
        assert_eq!(u.to_string(), "rtmp://127.0.0.1:1936/live/cam?key=***");
    }
}
