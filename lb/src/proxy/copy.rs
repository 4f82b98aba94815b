//! Moving bytes between the viewer and the real server, both directions at once, with
//! half-close (EOF on one side shuts down writing on the other, the rest keeps flowing) and
//! an idle timeout (no byte either way for that long ends the connection).
//!
//! Every direction starts the same way: it reads into one 64 KiB scratch buffer per thread
//! and writes that out at once, so it holds no buffer of its own. Only what the destination
//! does not take at once (a slow viewer) is kept, in a buffer of the connection's own that
//! is freed when written. A read shorter than the scratch means the socket is drained: it
//! clears the socket's readiness itself instead of a second read that would fail with
//! EAGAIN (what tokio's own `poll_read` does).
//!
//! With `proxy_copy = "splice"` a direction whose one read brings [`SPLICE_AFTER`] bytes or
//! more moves to splice for the rest of its life: socket -> pipe -> socket inside the
//! kernel, no user-space copy. Bulk directions (the video to the viewer) splice; the small
//! ones (the viewer's acknowledgements and commands, a health check, a short connection)
//! never pay for a pipe. `buffered` never splices. `tests/bench/proxy` measures both.

use crate::config::CopyMode;
use futures_util::FutureExt;
use nix::fcntl::OFlag;
use nix::fcntl::{splice, SpliceFFlags};
use std::cell::RefCell;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for (F_SETPIPE_SZ; the default is 64 KiB, the usual maximum 1 MiB):
/// one splice moves up to this much, so a fast stream needs fewer calls and round trips.
const PIPE: usize = 1024 * 1024;
/// The per-thread scratch buffer every non-spliced read goes through.
const SCRATCH: usize = 64 * 1024;
/// A read of at least this many bytes moves its direction to splice (`proxy_copy =
/// "splice"`).
pub const SPLICE_AFTER: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

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
    let result = copy_loop(src, dst, mode == CopyMode::Splice, activity, start, counter).await;
    if result.is_ok() {
        // EOF from src: pass the half-close on.
        let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
    }
    result
}

fn touch(activity: &AtomicU64, start: Instant) {
    activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// What one read through the scratch buffer did.
enum Scratch {
    /// `src` has nothing now (its readiness is cleared).
    Empty,
    Eof,
    /// `n` bytes read; those `dst` did not take at once were appended to the pending
    /// buffer. `last`: the last before `src`'s EOF (its FIN had come before the read, and
    /// the read drained it), written with MSG_MORE so that the half-close that follows
    /// leaves in the same segment as the data.
    Read {
        n: usize,
        last: bool,
    },
}

/// One read from `src` into the thread's scratch buffer and one write of it to `dst`; what
/// `dst` does not take goes to `pending`. The buffer is never held across an await.
fn read_through(src: &TcpStream, dst: &TcpStream, pending: &mut Vec<u8>) -> io::Result<Scratch> {
    // Whether the peer's FIN is already in: then a short read below takes everything before
    // it. Known without a system call (the closed state tokio keeps from the last epoll
    // event); the caller has just seen `src` readable, so this never waits.
    let fin_before = src
        .ready(Interest::READABLE)
        .now_or_never()
        .and_then(Result::ok)
        .is_some_and(|r| r.is_read_closed());
    SCRATCH_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let mut got = 0;
        // A short read drains the socket: return WouldBlock from the closure so that tokio
        // clears the readiness seen before the read (a readiness that came after it is kept).
        let r = src.try_io(Interest::READABLE, || {
            let n = (&*socket2::SockRef::from(src)).read(&mut buf[..])?;
            if n > 0 && n < buf.len() {
                got = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match r {
            Ok(0) => return Ok(Scratch::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Scratch::Empty),
            Err(e) => return Err(e),
        };
        let last = fin_before && got > 0;
        // `pending` is empty here: the caller writes it out before the next read.
        let sent = if last {
            dst.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(dst).send_with_flags(&buf[..n], nix::libc::MSG_MORE)
            })
        } else {
            dst.try_write(&buf[..n])
        };
        let written = match sent {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[written..n]);
        Ok(Scratch::Read { n, last })
    })
}

/// Writes all of `pending` to `dst`, then frees it.
async fn write_pending(dst: &TcpStream, pending: &mut Vec<u8>) -> io::Result<()> {
    let mut off = 0;
    while off < pending.len() {
        dst.writable().await?;
        match dst.try_write(&pending[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => off += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    *pending = Vec::new();
    Ok(())
}

/// A pipe for splicing and its capacity.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (r, w): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let size = nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE as i32),
        )
        .map(|s| s as usize)
        .unwrap_or(64 * 1024);
        Ok(Pipe { r, w, size })
    }
}

async fn copy_loop(
    src: &TcpStream,
    dst: &TcpStream,
    may_splice: bool,
    activity: &AtomicU64,
    start: Instant,
    counter: &AtomicU64,
) -> io::Result<()> {
    let mut pending = Vec::new();
    let mut pipe: Option<Pipe> = None;
    loop {
        src.readable().await?;
        let (n, last) = match &pipe {
            Some(p) => match splice_once(src, dst, p).await? {
                Some(0) => continue,
                Some(n) => (n, false),
                None => return Ok(()),
            },
            None => match read_through(src, dst, &mut pending)? {
                Scratch::Empty => continue,
                Scratch::Eof => return Ok(()),
                Scratch::Read { n, last } => {
                    if !pending.is_empty() {
                        write_pending(dst, &mut pending).await?;
                    }
                    if may_splice && !last && n >= SPLICE_AFTER {
                        // Without a pipe (descriptors ran out) the copy goes on through
                        // the scratch buffer.
                        pipe = Pipe::new().ok();
                    }
                    (n, last)
                }
            },
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        touch(activity, start);
        if last {
            return Ok(());
        }
    }
}

/// One splice from `src` into the (empty) pipe and out to `dst`: `Some(bytes)`, `Some(0)`
/// when `src` had nothing after all, `None` at EOF.
async fn splice_once(src: &TcpStream, dst: &TcpStream, p: &Pipe) -> io::Result<Option<usize>> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    // The pipe is empty here, so EAGAIN can only come from the socket.
    let n = match src.try_io(Interest::READABLE, || {
        splice(src, None, &p.w, None, p.size, flags).map_err(io::Error::from)
    }) {
        Ok(0) => return Ok(None),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(0)),
        Err(e) => return Err(e),
    };
    let mut left = n;
    while left > 0 {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || {
            splice(&p.r, None, dst, None, left, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => left -= m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(n))
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

    /// A destination that does not read for a while: the copy keeps what it could not write
    /// (the pending buffer, then the pipe for splice) and delivers every byte in order.
    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_in_order() {
        for mode in [CopyMode::Splice, CopyMode::Buffered] {
            let (mut viewer, client_side) = pair().await;
            let (server_side, mut server) = pair().await;
            let (to_s, to_c) = (AtomicU64::new(0), AtomicU64::new(0));
            let proxy = bidirectional(
                &client_side,
                &server_side,
                mode,
                Duration::from_secs(10),
                Counters {
                    to_server: &to_s,
                    to_client: &to_c,
                },
            );
            let data: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
            let peers = async {
                let send = async {
                    // Small writes first (the scratch path), then bulk (splice in that mode).
                    for chunk in data[..4096].chunks(100) {
                        server.write_all(chunk).await.unwrap();
                    }
                    server.write_all(&data[4096..]).await.unwrap();
                    server.shutdown().await.unwrap();
                };
                let recv = async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let mut got = Vec::new();
                    viewer.read_to_end(&mut got).await.unwrap();
                    got
                };
                let ((), got) = tokio::join!(send, recv);
                assert!(
                    got == data,
                    "{mode:?}: {} of {} bytes, or out of order",
                    got.len(),
                    data.len()
                );
                viewer.shutdown().await.unwrap();
            };
            let (r, ()) = tokio::join!(proxy, peers);
            assert_eq!(r.unwrap(), End::Closed, "{mode:?}");
            assert_eq!(to_c.load(Ordering::Relaxed), data.len() as u64);
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
