//! Health checks of real servers, with keepalived's semantics: one success = UP;
//! `retry + 1` consecutive failures = DOWN. A check runs every `delay_loop`; after a failure
//! of a server still UP it is retried after `delay_before_retry` instead.
//!
//! [`HealthState`] is the sans-I/O part (thresholds, flips, next delay); [`probe`] runs one
//! check (TCP connect, or an RTMP handshake + connect, optionally a play that must deliver
//! media, an HTTP GET, or keepalived's MISC_CHECK command: [`misc_outcome`] reads its exit
//! status). The task tying them together lives in `crate::balancer`.
//!
//! A real server with `send_proxy = "v2"` expects a PROXY header first on every connection,
//! so the probe sends one too — the LOCAL form, which says "the proxy's own connection" and
//! leaves the edge its real endpoints — or the edge closes the check and it fails forever.

use crate::config::{Check, CheckKind, HttpUrl};
use common::rtmp::chunk::msg_type;
use common::rtmp::client::RtmpClient;
use common::rtmp::url::RtmpUrl;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
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

/// What a MISC_CHECK run says, as keepalived reads its exit status: 0 = up; without
/// `misc_dynamic` anything else = down; with it, 1 = down and 2..=255 = up with weight
/// code - 2 (`Ok(Some(weight))`). A run that could not start, was killed or timed out is down.
pub fn misc_outcome(exit: &crate::script::Exit, dynamic: bool) -> Result<Option<u32>, String> {
    use crate::script::Exit;
    match exit {
        Exit::Code(0) => Ok(None),
        Exit::Code(c @ 2..=255) if dynamic => Ok(Some(*c as u32 - 2)),
        other => Err(format!("MISC_CHECK {other}")),
    }
}

/// Runs one check of `addr`; `Err` says why it failed; `Ok(Some(w))`: a `misc_dynamic`
/// check set the weight to `w`. `send_proxy`: the server expects a PROXY v2 header first
/// (it gets a LOCAL one).
pub async fn probe_weight(
    addr: SocketAddr,
    check: &Check,
    send_proxy: bool,
) -> Result<Option<u32>, String> {
    if let CheckKind::Misc {
        argv,
        timeout,
        dynamic,
    } = &check.kind
    {
        let exit = crate::script::run(argv, *timeout).await;
        return misc_outcome(&exit, *dynamic);
    }
    probe(addr, check, send_proxy).await.map(|()| None)
}

/// Runs one check of `addr`; `Err` says why it failed. `send_proxy`: the server expects a
/// PROXY v2 header first (it gets a LOCAL one).
pub async fn probe(addr: SocketAddr, check: &Check, send_proxy: bool) -> Result<(), String> {
    let addr = match check.connect_port {
        Some(p) => SocketAddr::new(addr.ip(), p),
        None => addr,
    };
    let preamble = if send_proxy {
        common::proxy_protocol::encode_v2_local()
    } else {
        Vec::new()
    };
    match &check.kind {
        CheckKind::Tcp => {
            let t = check.connect_timeout;
            let run = async {
                let mut tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("TCP connect: {e}"))?;
                if !preamble.is_empty() {
                    tcp.write_all(&preamble)
                        .await
                        .map_err(|e| format!("TCP check: sending the PROXY header: {e}"))?;
                }
                Ok(())
            };
            tokio::time::timeout(t, run)
                .await
                .map_err(|_| format!("TCP connect timed out after {t:?}"))?
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
                let mut c = RtmpClient::connect_with_preamble(addr, &url, t, &preamble)
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
        CheckKind::Http { urls } => {
            let t = check.connect_timeout;
            let run = async {
                for u in urls {
                    http_get(addr, &preamble, u).await?;
                }
                Ok(())
            };
            tokio::time::timeout(t, run)
                .await
                .map_err(|_| format!("HTTP check got no answer within {t:?}"))?
        }
        CheckKind::Misc { .. } => Box::pin(probe_weight(addr, check, send_proxy))
            .await
            .map(|_| ()),
    }
}

/// One GET of an `http_get` check (HTTP/1.1 through hyper, a connection per URL, as
/// keepalived): the status must be the URL's `status_code`; the body is not read.
async fn http_get(addr: SocketAddr, preamble: &[u8], u: &HttpUrl) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("HTTP check: TCP connect: {e}"))?;
    if !preamble.is_empty() {
        tcp.write_all(preamble)
            .await
            .map_err(|e| format!("HTTP check: sending the PROXY header: {e}"))?;
    }
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP check GET {}: {e}", u.path))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("GET")
        .uri(u.path.as_str())
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "edgefleet-lb-check")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("HTTP check GET {}: {e}", u.path))?;
    let resp = send.send_request(req).await;
    conn.abort();
    let code = resp
        .map_err(|e| format!("HTTP check GET {}: {e}", u.path))?
        .status()
        .as_u16();
    if code != u.status_code {
        return Err(format!(
            "HTTP check GET {}: status {code}, want {}",
            u.path, u.status_code
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Exit;

    #[test]
    fn misc_exit_codes_as_keepalived() {
        assert_eq!(misc_outcome(&Exit::Code(0), false), Ok(None));
        assert!(misc_outcome(&Exit::Code(1), false).is_err());
        assert!(misc_outcome(&Exit::Code(7), false).is_err());
        assert_eq!(misc_outcome(&Exit::Code(0), true), Ok(None));
        assert!(misc_outcome(&Exit::Code(1), true).is_err());
        assert_eq!(misc_outcome(&Exit::Code(2), true), Ok(Some(0)));
        assert_eq!(misc_outcome(&Exit::Code(12), true), Ok(Some(10)));
        assert_eq!(misc_outcome(&Exit::Code(255), true), Ok(Some(253)));
        let e = misc_outcome(&Exit::TimedOut(Duration::from_secs(1)), true).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(misc_outcome(&Exit::CannotStart("x: not found".into()), false).is_err());
        assert!(misc_outcome(&Exit::Signal(9), true).is_err());
    }

    fn misc(script: &str, dynamic: bool) -> Check {
        Check {
            kind: CheckKind::Misc {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                timeout: Duration::from_millis(500),
                dynamic,
            },
            connect_timeout: Duration::from_secs(1),
            retry: 0,
            delay_before_retry: Duration::from_secs(1),
            connect_port: None,
            warmup: Duration::ZERO,
        }
    }

    /// A real /bin/sh check that tests for a file: the server goes down when the file goes,
    /// and up when it is back; a hanging check is killed at misc_timeout and fails.
    #[tokio::test]
    async fn misc_check_takes_a_server_out_and_back() {
        let dir = std::env::temp_dir().join(format!("lb-misc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("up");
        std::fs::write(&flag, b"").unwrap();
        let check = misc(&format!("test -e {}", flag.display()), false);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut h = HealthState::new(check.retry);
        let step = || async { probe_weight(addr, &check, false).await };
        assert_eq!(step().await, Ok(None));
        assert_eq!(h.success(), None);
        std::fs::remove_file(&flag).unwrap();
        let r = step().await;
        assert!(r.as_ref().unwrap_err().contains("exited with 1"), "{r:?}");
        assert_eq!(h.failure(), Some(Flip::Down));
        std::fs::write(&flag, b"").unwrap();
        assert_eq!(step().await, Ok(None));
        assert_eq!(h.success(), Some(Flip::Up));
        let _ = std::fs::remove_dir_all(&dir);
        let hang = misc("sleep 30", false);
        let started = std::time::Instant::now();
        let r = probe_weight(addr, &hang, false).await;
        assert!(r.unwrap_err().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            probe_weight(addr, &misc("exit 5", true), false).await,
            Ok(Some(3))
        );
    }

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
