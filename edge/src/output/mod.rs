//! Outputs: how a player's frames leave the edge. One protocol-neutral delivery loop
//! ([`Delivery`]: reading the hub, the lag policy, a stalled player's disconnect) and one
//! module per protocol that encodes a frame — once per stream, into the frame's own slot
//! (`hub::Frame::encoded`), never once per viewer:
//!
//! - [`rtmp`]: chunks at the stream's chunk size (RTMP players: `session::play`);
//! - [`flv`]: FLV tags around the shared payload (HTTP-FLV: `http::flv`).
//!
//! (HLS is not a per-viewer output: one packager per stream reads the hub like a player and
//! viewers fetch its files; see `http::hls`.)
//!
//! Owns no sockets beyond the writer it is handed; does not know the hub's internals.

pub mod fanout;
pub mod flv;
pub mod rtmp;

pub use fanout::{SharedWriter, Ticks};

use crate::hub::{Player, PlayerEvent, SharedFrame, Skipper};
use bytes::Bytes;
use std::io::IoSlice;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::warn;

/// At most this many messages go into one writev...
pub const MAX_BATCH: usize = 64;
/// ...and, past the first message, at most this many bytes: what a stalled player holds
/// (besides the kernel's socket buffer) is one batch.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Why a delivery stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The stream ended for good (no origin has it), with the reason.
    Ended(String),
    /// The player stayed behind the ring for longer than `queue_length`.
    Behind,
}

/// A player's delivery: what it reads from the hub, filtered by the lag policy (a player
/// that falls behind skips to the next keyframe) and by pause.
pub struct Delivery {
    pub player: Player,
    frames: Vec<SharedFrame>,
    skipper: Skipper,
    caught_up_at: Instant,
    queue_length: Duration,
    /// While set, media is dropped (control frames still go out).
    paused: bool,
}

impl Delivery {
    pub fn new(player: Player, queue_length: Duration) -> Delivery {
        Delivery {
            player,
            frames: Vec::new(),
            skipper: Skipper::default(),
            caught_up_at: Instant::now(),
            queue_length,
            paused: false,
        }
    }

    /// What the player sends first: metadata, sequence headers, the GOP so far.
    pub fn initial(&mut self) -> Vec<SharedFrame> {
        std::mem::take(&mut self.player.initial)
    }

    /// Pauses or resumes the media; a resume starts at the next keyframe.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.skipper.lagged(0);
        }
        self.paused = paused;
    }

    /// Waits for frames and appends to `out` those to send (at most one batch). Cancel-safe:
    /// the only wait is the hub's, and frames are taken only when it returns.
    pub async fn next(&mut self, out: &mut Vec<SharedFrame>) -> Result<(), Stop> {
        let event = self
            .player
            .next(&mut self.frames, MAX_BATCH, MAX_BATCH_BYTES)
            .await;
        self.admit(event, out, Instant::now())
    }

    /// Appends to `out` what is ready now (perhaps nothing; at most one batch), without
    /// waiting: the merged writer's read (`fanout`).
    pub fn take_ready(&mut self, out: &mut Vec<SharedFrame>, now: Instant) -> Result<(), Stop> {
        match self
            .player
            .try_next(&mut self.frames, MAX_BATCH, MAX_BATCH_BYTES)
        {
            Some(event) => self.admit(event, out, now),
            None => {
                self.caught_up_at = now;
                Ok(())
            }
        }
    }

    /// Reads on from `event` up to one batch and applies the lag policy and pause.
    fn admit(
        &mut self,
        mut event: PlayerEvent,
        out: &mut Vec<SharedFrame>,
        now: Instant,
    ) -> Result<(), Stop> {
        let mut ended = None;
        loop {
            match event {
                PlayerEvent::Frames(_) => {}
                PlayerEvent::Lagged(n) => {
                    warn!(
                        skipped = n,
                        "player fell behind: skipping to the next keyframe"
                    );
                    self.skipper.lagged(n);
                    self.player.stream.add_skipped(n);
                }
                PlayerEvent::Ended(reason) => {
                    ended = Some(reason);
                    break;
                }
            }
            let taken: usize = self.frames.iter().map(|f| f.size()).sum();
            if self.frames.len() >= MAX_BATCH || taken >= MAX_BATCH_BYTES {
                break;
            }
            let room = MAX_BATCH - self.frames.len();
            match self
                .player
                .try_next(&mut self.frames, room, MAX_BATCH_BYTES - taken)
            {
                Some(ev) => event = ev,
                None => {
                    self.caught_up_at = now;
                    break;
                }
            }
        }
        let dropped = self.skipper.dropped;
        for f in self.frames.drain(..) {
            if self.paused && !f.is_control() {
                continue;
            }
            if self.skipper.admit(&f) {
                out.push(f);
            }
        }
        if self.skipper.dropped > dropped {
            self.player
                .stream
                .add_skipped(self.skipper.dropped - dropped);
        }
        if let Some(reason) = ended {
            return Err(Stop::Ended(reason));
        }
        if now.saturating_duration_since(self.caught_up_at) > self.queue_length {
            return Err(Stop::Behind);
        }
        Ok(())
    }
}

/// A socket a batch can be tried on without waiting (a TCP stream, `SharedWriter`).
pub trait TryWriteVectored {
    /// One non-blocking writev: the bytes taken, or `WouldBlock`.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
}

impl TryWriteVectored for tokio::net::TcpStream {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_write_vectored(self, bufs)
    }
}

/// Writes `bufs` with writev within `timeout` (a player whose socket takes nothing for that
/// long is stalled) and returns the bytes written. The first writev is tried at once: a
/// player that keeps up takes the whole batch there, and no timer is armed for it; only a
/// partial or refused write waits, bounded by `timeout`.
pub async fn write_batch<W: AsyncWrite + TryWriteVectored + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
    timeout: Duration,
) -> Result<u64, WriteError> {
    write_from(w, bufs, 0, timeout).await
}

/// [`write_batch`] of what is left of `bufs` past the first `written` bytes (the rest of a
/// partial write); returns the batch's whole size.
pub async fn write_from<W: AsyncWrite + TryWriteVectored + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
    written: usize,
    timeout: Duration,
) -> Result<u64, WriteError> {
    if written > 0 {
        return write_rest(w, bufs, written, timeout).await;
    }
    let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    let done = match w.try_write_vectored(&slices(bufs)) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(WriteError::Io(e)),
    };
    if done as u64 == total {
        return Ok(total);
    }
    write_rest(w, bufs, done, timeout).await
}

/// The buffers of one writev (at most as many as [`write_batch`] takes at once).
pub fn slices(bufs: &[Bytes]) -> Vec<IoSlice<'_>> {
    bufs.iter()
        .take(MAX_BATCH * 3)
        .map(|b| IoSlice::new(b))
        .collect()
}

/// Writes what is left of `bufs` past the first `written` bytes, waiting for the socket,
/// within `timeout`, and returns the batch's whole size.
async fn write_rest<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
    written: usize,
    timeout: Duration,
) -> Result<u64, WriteError> {
    let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    tokio::time::timeout(timeout, write_all_vectored(w, bufs, written))
        .await
        .map_err(|_| WriteError::Stalled)?
        .map_err(WriteError::Io)?;
    Ok(total)
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the player's socket took nothing for queue_length")]
    Stalled,
    #[error(transparent)]
    Io(std::io::Error),
}

/// Writes all buffers past the first `skip` bytes with writev, resuming after partial
/// writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &[Bytes],
    mut skip: usize,
) -> std::io::Result<()> {
    let mut idx = 0;
    while idx < bufs.len() && bufs[idx].len() <= skip {
        skip -= bufs[idx].len();
        idx += 1;
    }
    let mut off = skip;
    while idx < bufs.len() {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity((bufs.len() - idx).min(MAX_BATCH));
        slices.push(IoSlice::new(&bufs[idx][off..]));
        for b in &bufs[idx + 1..] {
            if slices.len() == MAX_BATCH * 3 {
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
        while idx < bufs.len() && bufs[idx].len() == off {
            idx += 1;
            off = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory pipe takes nothing without waiting: every batch goes the slow way.
    impl TryWriteVectored for tokio::io::DuplexStream {
        fn try_write_vectored(&self, _: &[IoSlice<'_>]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::WouldBlock.into())
        }
    }

    #[tokio::test]
    async fn writes_every_buffer_in_order_through_partial_writes() {
        let bufs: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize * 37) % 500]))
            .collect();
        let want: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        // A pipe whose reader takes little at a time forces partial writes.
        let (mut a, mut b) = tokio::io::duplex(333);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        let n = write_batch(&mut a, &bufs, Duration::from_secs(5))
            .await
            .unwrap();
        drop(a);
        assert_eq!(n as usize, want.len());
        assert_eq!(reader.await.unwrap(), want);
    }
}
