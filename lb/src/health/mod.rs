//! Health checks of real servers, with keepalived's semantics: one success = UP;
//! `retry + 1` consecutive failures = DOWN. A check runs every `delay_loop`; after a failure
//! of a server still UP it is retried after `delay_before_retry` instead.
//!
//! [`HealthState`] is the sans-I/O part (thresholds, flips, next delay); [`probe`] runs one
//! check (TCP connect, or an RTMP handshake + connect, optionally a play that must deliver
//! media). The task tying them together lives in `crate::balancer`.

use crate::config::{Check, CheckKind};
use common::rtmp::chunk::msg_type;
use common::rtmp::client::RtmpClient;
use common::rtmp::url::RtmpUrl;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A state change worth logging and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    up: bool,
    failures: u32,
    /// Consecutive failures that make a server DOWN: retry + 1.
    threshold: u32,
}

impl HealthState {
    /// Servers start UP, as in keepalived (a dead one is found by the first checks, and the
    /// proxy skips it on connect failure meanwhile).
    pub fn new(retry: u32) -> HealthState {
        HealthState {
            up: true,
            failures: 0,
            threshold: retry.saturating_add(1),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn success(&mut self) -> Option<Flip> {
        self.failures = 0;
        if self.up {
            None
        } else {
            self.up = true;
            Some(Flip::Up)
        }
    }

    pub fn failure(&mut self) -> Option<Flip> {
        self.failures = self.failures.saturating_add(1);
        if self.up && self.failures >= self.threshold {
            self.up = false;
            Some(Flip::Down)
        } else {
            None
        }
    }

    /// How long to wait before the next check.
    pub fn next_delay(&self, delay_loop: Duration, delay_before_retry: Duration) -> Duration {
        if self.up && self.failures > 0 {
            delay_before_retry
        } else {
            delay_loop
        }
    }
}

/// Runs one check of `addr`; `Err` says why it failed.
pub async fn probe(addr: SocketAddr, check: &Check) -> Result<(), String> {
    match &check.kind {
        CheckKind::Tcp => {
            match tokio::time::timeout(check.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("TCP connect: {e}")),
                Err(_) => Err(format!(
                    "TCP connect timed out after {:?}",
                    check.connect_timeout
                )),
            }
        }
        CheckKind::Rtmp { stream } => {
            let (app, name) = stream
                .clone()
                .unwrap_or_else(|| ("live".to_string(), String::new()));
            let url = RtmpUrl {
                host: addr.ip().to_string(),
                port: addr.port(),
                app,
                stream: name.clone(),
            };
            let t = check.connect_timeout;
            let run = async {
                let mut c = RtmpClient::connect(addr, &url, t)
                    .await
                    .map_err(|e| format!("RTMP connect: {e}"))?;
                if name.is_empty() {
                    return Ok(());
                }
                c.play(&name, t)
                    .await
                    .map_err(|e| format!("RTMP play {}: {e}", url.stream))?;
                loop {
                    let m = c
                        .read_message()
                        .await
                        .map_err(|e| format!("RTMP play {}: {e}", url.stream))?;
                    if m.type_id == msg_type::VIDEO || m.type_id == msg_type::AUDIO {
                        return Ok(());
                    }
                }
            };
            tokio::time::timeout(t, run)
                .await
                .map_err(|_| format!("RTMP check got no media within {t:?}"))?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_up_retry_plus_one_failures_down() {
        let mut h = HealthState::new(2);
        let (dl, dbr) = (Duration::from_secs(6), Duration::from_secs(1));
        assert_eq!(h.failure(), None);
        assert_eq!(h.next_delay(dl, dbr), dbr);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), Some(Flip::Down));
        assert_eq!(h.failure(), None, "a flip is reported once");
        assert_eq!(h.next_delay(dl, dbr), dl);
        assert_eq!(h.success(), Some(Flip::Up));
        assert_eq!(h.success(), None);
        // A success in between resets the count.
        h.failure();
        h.failure();
        h.success();
        assert_eq!(h.failure(), None);
    }
}
