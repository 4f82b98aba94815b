//! Moving bytes between the viewer and the real server, both directions at once, with
//! half-close (EOF on one side shuts down writing on the other, the rest keeps flowing) and
//! an idle timeout (no byte either way for that long ends the connection).
//!
//! Two ways, chosen by `proxy_copy`: `splice` moves data socket -> pipe -> socket inside the
//! kernel (no user-space copy, no per-connection buffer in our memory); `buffered` reads into
//! a 16 KiB buffer per direction and writes it out. `tests/bench/proxy` measures both.

use crate::config::CopyMode;
use nix::fcntl::OFlag;
use nix::fcntl::{splice, SpliceFFlags};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for (F_SETPIPE_SZ; the default is 64 KiB, the usual maximum 1 MiB):
/// one splice moves up to this much, so a fast stream needs fewer calls and round trips.
const PIPE: usize = 1024 * 1024;
const BUFFER: usize = 16 * 1024;

/// Byte counters a copy adds to as it goes (so /metrics sees long-lived connections grow).
pub struct Counters<'a> {
    pub to_server: &'a AtomicU64,
    pub to_client: &'a AtomicU64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their sending side.
    Closed,
    IdleTimeout,
}

/// Copies until both directions end, one fails, or the connection is idle for `idle`.
pub async fn bidirectional(
    client: &TcpStream,
    server: &TcpStream,
    mode: CopyMode,
    idle: Duration,
    counters: Counters<'_>,
) -> io::Result<End> {
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let up = one_way(client, server, mode, &activity, start, counters.to_server);
    let down = one_way(server, client, mode, &activity, start, counters.to_client);
    let watchdog = async {
        loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            let since = start.elapsed().saturating_sub(last);
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|_| End::Closed),
        _ = watchdog => Ok(End::IdleTimeout),
    }
}

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    mode: CopyMode,
    activity: &AtomicU64,
    start: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    let result = match mode {
        CopyMode::Splice => splice_loop(src, dst, activity, start, counter).await,
        CopyMode::Buffered => buffered_loop(src, dst, activity, start, counter).await,
    };
    if result.is_ok() {
        // EOF from src: pass the half-close on.
        let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
    }
    result
}

fn touch(activity: &AtomicU64, start: Instant) {
    activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
}

async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &AtomicU64,
    start: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    // The pipe is made when the first bytes are readable: a connection that closes at once
    // (health checks, short requests) costs no pipe.
    let mut pipe: Option<(OwnedFd, OwnedFd, usize)> = None;
    loop {
        // The pipe is empty here, so EAGAIN can only come from the socket.
        src.readable().await?;
        if pipe.is_none() {
            let (r, w): (OwnedFd, OwnedFd) =
                nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
                    .map_err(io::Error::from)?;
            let size = nix::fcntl::fcntl(
                w.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE as i32),
            )
            .map(|s| s as usize)
            .unwrap_or(64 * 1024);
            pipe = Some((r, w, size));
        }
        let (pipe_r, pipe_w, size) = pipe.as_ref().expect("pipe made above");
        let n = match src.try_io(Interest::READABLE, || {
            splice(src, None, pipe_w, None, *size, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe_r, None, dst, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        touch(activity, start);
    }
}

async fn buffered_loop(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &AtomicU64,
    start: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        touch(activity, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn both_modes_copy_and_half_close() {
        for mode in [CopyMode::Splice, CopyMode::Buffered] {
            // viewer <-> [client_side | proxy | server_side] <-> server
            let (mut viewer, client_side) = pair().await;
            let (server_side, mut server) = pair().await;
            let (to_s, to_c) = (AtomicU64::new(0), AtomicU64::new(0));
            let proxy = async {
                bidirectional(
                    &client_side,
                    &server_side,
                    mode,
                    Duration::from_secs(5),
                    Counters {
                        to_server: &to_s,
                        to_client: &to_c,
                    },
                )
                .await
            };
            let peers = async {
                let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
                viewer.write_all(&data).await.unwrap();
                viewer.shutdown().await.unwrap(); // half-close: server still answers
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, data);
                server.write_all(b"reply after half-close").await.unwrap();
                server.shutdown().await.unwrap();
                let mut reply = Vec::new();
                viewer.read_to_end(&mut reply).await.unwrap();
                assert_eq!(reply, b"reply after half-close");
            };
            let (r, ()) = tokio::join!(proxy, peers);
            assert_eq!(r.unwrap(), End::Closed, "{mode:?}");
            assert_eq!(to_s.load(Ordering::Relaxed), 300_000);
            assert_eq!(to_c.load(Ordering::Relaxed), 22);
        }
    }

    #[tokio::test]
    async fn idle_timeout_ends_the_copy() {
        let (_viewer, client_side) = pair().await;
        let (server_side, _server) = pair().await;
        let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
        let r = bidirectional(
            &client_side,
            &server_side,
            CopyMode::Splice,
            Duration::from_millis(200),
            Counters {
                to_server: &a,
                to_client: &b,
            },
        )
        .await;
        assert_eq!(r.unwrap(), End::IdleTimeout);
    }
}
