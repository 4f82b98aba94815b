//! The HLS players' `on_play` verdicts, kept while a player keeps requesting
//! (`super::play_hook` asks the hook and fills them; the HTTP server's accept loop sweeps them).

use crate::hooks::{Call, HooksConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An allowed HLS viewer with no request for this long has left (`on_done`).
pub const HLS_IDLE: Duration = Duration::from_secs(30);
/// How long a refused HLS player's verdict is kept before the hook is asked again.
pub const REFUSAL_KEPT: Duration = Duration::from_secs(5);
/// At most this many HLS players' verdicts are kept; beyond it the hook is asked on every
/// request of a new player (nothing is dropped that is still in use).
pub(super) const MAX_KEPT: usize = 100_000;

/// One HLS player's verdict.
pub(super) struct Kept {
    pub(super) allowed: bool,
    pub(super) since: Instant,
    pub(super) last: Instant,
    pub(super) client_id: u64,
    pub(super) tc_url: String,
    pub(super) query: String,
}

/// The HLS players' verdicts, by (address, `APP/STREAM`).
#[derive(Default)]
pub struct HlsPlays {
    pub(super) kept: Mutex<HashMap<(IpAddr, String), Kept>>,
}

impl HlsPlays {
    /// Forgets idle viewers (sending their `on_done`) and old refusals.
    pub fn sweep(&self, hooks: &HooksConfig, now: Instant) {
        let mut left = Vec::new();
        self.kept.lock().unwrap().retain(|(ip, key), k| {
            let keep = if k.allowed {
                now.duration_since(k.last) < HLS_IDLE
            } else {
                now.duration_since(k.since) < REFUSAL_KEPT
            };
            if !keep && k.allowed {
                left.push((
                    *ip,
                    key.clone(),
                    k.client_id,
                    std::mem::take(&mut k.tc_url),
                    std::mem::take(&mut k.query),
                ));
            }
            keep
        });
        let Some(url) = &hooks.on_done else {
            return;
        };
        for (ip, key, client_id, tc_url, query) in left {
            let (app, name) = key.split_once('/').unwrap_or((&key, ""));
            crate::hooks::done(
                url.clone(),
                hooks.timeout,
                Call {
                    call: "done",
                    addr: ip,
                    client_id,
                    app,
                    name,
                    tc_url: &tc_url,
                    query: &query,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_idle_hls_viewer_gets_on_done_and_a_refusal_is_forgotten() {
        let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/on_done", hook.local_addr().unwrap());
        let hooks = HooksConfig {
            on_done: Some(crate::hooks::HookUrl::parse(&url).unwrap()),
            ..Default::default()
        };
        let plays = HlsPlays::default();
        let t0 = Instant::now();
        let kept = |allowed| Kept {
            allowed,
            since: t0,
            last: t0,
            client_id: 7,
            tc_url: "http://127.0.0.1:8080/live".into(),
            query: "x=1".into(),
        };
        {
            let mut k = plays.kept.lock().unwrap();
            k.insert(
                ("198.18.0.50".parse().unwrap(), "live/cam".into()),
                kept(true),
            );
            k.insert(
                ("198.18.0.51".parse().unwrap(), "live/no".into()),
                kept(false),
            );
        }
        // Within both bounds nothing goes; past REFUSAL_KEPT the refusal does, silently.
        plays.sweep(&hooks, t0 + Duration::from_secs(1));
        assert_eq!(plays.kept.lock().unwrap().len(), 2);
        plays.sweep(&hooks, t0 + REFUSAL_KEPT + Duration::from_secs(1));
        assert_eq!(plays.kept.lock().unwrap().len(), 1);
        // Past HLS_IDLE the viewer has left: on_done is posted.
        plays.sweep(&hooks, t0 + HLS_IDLE + Duration::from_secs(1));
        assert!(plays.kept.lock().unwrap().is_empty());
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), hook.accept())
            .await
            .expect("on_done is posted")
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("name=cam") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("call=done&addr=198.18.0.50&clientid=7&app=live&name=cam"),
            "{text}"
        );
        assert!(text.ends_with("&x=1"), "{text}");
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
}
