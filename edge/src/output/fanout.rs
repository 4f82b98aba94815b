//! Merged writes from one place (`mw_latency` > 0): every interval, one writer task per
//! shard reads each attached player's new frames and tries one non-blocking writev on its
//! socket — what the writev floor (`tests/bench/floor.c`) does, and nothing per player
//! besides: no task woken, no timer, no waiter list touched per player and write.
//!
//! A player is attached ([`Tick::attach`]) while it keeps up. The writer hands it back to its
//! own session task ([`Attached::released`]) when the socket did not take a whole batch (the
//! session writes the rest within `queue_length`, the slow-viewer bound, and attaches
//! again), when the stream ended, when the player stayed behind, or on a socket error. A
//! session detaches its player ([`Attached::detach`]) before it writes anything itself (a
//! command's answer): the writer writes a player only under that player's own lock, and
//! detaching takes it, so the two never interleave bytes on one socket; a session waits for
//! at most one write, never for a whole tick (an earlier version held one lock per shard for
//! the tick, and a joining player's attach blocked its worker meanwhile).
//!
//! The players of one stream share a shard (by stream key), so its frames' reference counts
//! and encodings stay on one core; shards run on the runtime's workers in parallel.
//!
//! Sendfile: where the stream has a spool (`hub::spool`, `sendfile = true`, the default), a
//! frame's encoding is appended to the stream's memory file by the first player that writes
//! it, and a batch that is one run of that file goes out with one `sendfile` instead of a
//! writev: the kernel takes the file's pages by reference, so a frame is copied into the
//! kernel once per stream, not once per viewer. A batch that is not one run (a frame the
//! spool could not take, a player on another message stream id) goes out with writev, and so
//! does everything a session writes itself (a join's GOP, a slow player's rest): the bytes on
//! the wire are the same either way.
//!
//! Latency: a frame waits for the next tick, at most `mw_latency`; a joining player's start
//! (GOP cache) is written at once by its session, before it attaches.

use super::{Delivery, Stop, TryWriteVectored};
use crate::hub::spool::{Span, Spool};
use crate::hub::SharedFrame;
use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;

/// How an attached player's frames are put on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    /// RTMP chunks for message stream `stream_id` (`output::rtmp`).
    Rtmp { stream_id: u32, chunk_size: usize },
    /// FLV tags (`output::flv`).
    Flv,
}

impl Encoding {
    /// The frame slot whose encoding every player of this encoding shares (so the stream's
    /// spool can hold it), if any: a player on another message stream id has its own bytes.
    fn shared_slot(&self) -> Option<usize> {
        match *self {
            Encoding::Rtmp { stream_id, .. } if stream_id == super::rtmp::PLAY_STREAM_ID => {
                Some(super::rtmp::SLOT)
            }
            Encoding::Rtmp { .. } => None,
            Encoding::Flv => Some(super::flv::SLOT),
        }
    }

    pub fn encode(&self, f: &SharedFrame, out: &mut Vec<Bytes>) {
        match *self {
            Encoding::Rtmp {
                stream_id,
                chunk_size,
            } => out.push(super::rtmp::encode(f, stream_id, chunk_size)),
            Encoding::Flv => super::flv::encode(f, out),
        }
    }
}

/// Where an attached player's written bytes are counted (the API's per-client record).
pub trait Meter: Send + Sync {
    fn add_out(&self, n: u64);
}

/// A player as the writer holds it.
pub struct Sub {
    pub delivery: Delivery,
    writer: Arc<OwnedWriteHalf>,
    encoding: Encoding,
    meter: Arc<dyn Meter>,
    /// Bytes written since the counters were last told, and in how many writes: the writer
    /// tells them every [`METER_EVERY`] writes or bytes and when it lets the player go, not
    /// at each write (two more cache lines per viewer and tick otherwise).
    unmetered: u64,
    writes: u32,
}

/// How often an attached player's byte counters are brought up to date: every this many
/// writes (1.6 s at 100 ms) or bytes, whichever comes first.
const METER_EVERY: (u32, u64) = (16, 256 << 10);

impl Sub {
    pub fn new(
        delivery: Delivery,
        writer: &SharedWriter,
        encoding: Encoding,
        meter: Arc<dyn Meter>,
    ) -> Sub {
        Sub {
            delivery,
            writer: writer.0.clone(),
            encoding,
            meter,
            unmetered: 0,
            writes: 0,
        }
    }

    /// Counts a batch of `n` bytes written to this player.
    fn count(&mut self, n: u64) {
        self.unmetered += n;
        self.writes += 1;
        if self.writes >= METER_EVERY.0 || self.unmetered >= METER_EVERY.1 {
            self.flush();
        }
    }

    /// Tells the counters what was written since they were last told.
    fn flush(&mut self) {
        if self.unmetered > 0 {
            self.meter.add_out(self.unmetered);
            self.delivery.player.stream.add_out(self.unmetered);
        }
        self.unmetered = 0;
        self.writes = 0;
    }
}

/// Why the writer handed a player back.
#[derive(Debug)]
pub enum Release {
    /// The socket took `written` bytes of `pending` (perhaps none): the rest goes out
    /// before anything else.
    Slow { pending: Vec<Bytes>, written: usize },
    /// The stream ended or the player stayed behind (after what was due was written).
    Stopped(Stop),
    /// The socket failed.
    Failed(std::io::Error),
}

/// An attached player, or nothing once it was handed back or detached. Each has its own
/// lock: the writer holds it for one player's write, a session to take its player back, so
/// a session never waits for more than one write, and never for the writer's whole tick.
type Slot = Mutex<Option<(Sub, oneshot::Sender<(Sub, Release)>)>>;

#[derive(Default)]
struct Shard {
    slots: Mutex<Vec<Arc<Slot>>>,
}

/// Reused by a shard's writer from tick to tick.
#[derive(Default)]
struct Scratch {
    frames: Vec<SharedFrame>,
    batch: Vec<Bytes>,
    slots: Vec<Arc<Slot>>,
}

impl Shard {
    /// One tick: every attached player gets what arrived for it since the last. A player
    /// attached during the tick is written from the next.
    fn write_all(&self, scratch: &mut Scratch) {
        {
            let mut slots = self.slots.lock().unwrap();
            slots.retain(|s| s.lock().unwrap().is_some());
            scratch.slots.extend(slots.iter().cloned());
        }
        let now = Instant::now();
        for slot in scratch.slots.drain(..) {
            let mut held = slot.lock().unwrap();
            let Some((sub, _)) = held.as_mut() else {
                continue;
            };
            if let Some(release) = write_one(sub, &mut scratch.frames, &mut scratch.batch, now) {
                if let Some((mut sub, done)) = held.take() {
                    sub.flush();
                    // A session that is gone has dropped its receiver: the player goes too.
                    let _ = done.send((sub, release));
                }
            }
        }
    }
}

fn write_one(
    sub: &mut Sub,
    frames: &mut Vec<SharedFrame>,
    batch: &mut Vec<Bytes>,
    now: Instant,
) -> Option<Release> {
    let stop = sub.delivery.take_ready(frames, now).err();
    let spool = sub
        .encoding
        .shared_slot()
        .and_then(|slot| Some((slot, sub.delivery.player.stream.spool(slot)?.clone())));
    let mut run = Run::Empty;
    for f in frames.iter() {
        let from = batch.len();
        sub.encoding.encode(f, batch);
        if let Some((slot, spool)) = &spool {
            if batch.len() > from {
                run = run.then(spool, f.spooled(*slot, || spool.append(&batch[from..])));
            }
        }
    }
    let written = match (&spool, run) {
        (_, _) if batch.is_empty() => None,
        (Some((_, spool)), Run::At(start, end)) => {
            Some(try_sendfile(&sub.writer, spool, start, end))
        }
        _ => Some(sub.writer.try_write_vectored(&super::slices(batch))),
    };
    // Only now: a frame's span must live until the kernel holds its pages.
    frames.clear();
    if let Some(written) = written {
        let total: usize = batch.iter().map(|b| b.len()).sum();
        match written {
            Ok(n) if n == total => {
                sub.count(total as u64);
                batch.clear();
            }
            Ok(n) => {
                return Some(Release::Slow {
                    pending: std::mem::take(batch),
                    written: n,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Some(Release::Slow {
                    pending: std::mem::take(batch),
                    written: 0,
                })
            }
            Err(e) => {
                batch.clear();
                return Some(Release::Failed(e));
            }
        }
    }
    stop.map(Release::Stopped)
}

/// Where a batch is in its stream's spool while it is one run of it.
#[derive(Clone, Copy)]
enum Run {
    Empty,
    At(u64, u64),
    /// A frame is not in the spool, or not right after the one before.
    Broken,
}

impl Run {
    fn then(self, spool: &Arc<Spool>, span: Option<&Span>) -> Run {
        let Some(span) = span.filter(|s| Arc::ptr_eq(s.spool(), spool)) else {
            return Run::Broken;
        };
        match self {
            Run::Empty => Run::At(span.start, span.end),
            Run::At(start, end) if end == span.start => Run::At(start, span.end),
            _ => Run::Broken,
        }
    }
}

/// One non-blocking sendfile of `start..end` of `spool` to the player's socket: the bytes
/// taken, or `WouldBlock`. Straight on the socket, not through tokio's `try_io` (its
/// readiness bookkeeping was 5 % of the edge's CPU): a refused write leaves tokio's
/// readiness set, so the session's first wait for writability returns at once, its write
/// is refused again and that one clears it. One extra try, on the slow path only.
fn try_sendfile(w: &OwnedWriteHalf, spool: &Spool, start: u64, end: u64) -> std::io::Result<usize> {
    let tcp: &tokio::net::TcpStream = w.as_ref();
    let mut off = start as nix::libc::off64_t;
    loop {
        match nix::sys::sendfile::sendfile64(
            tcp,
            spool.fd(),
            Some(&mut off),
            (end - start) as usize,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

/// The merged-write clock of one `mw_latency` value and its writers.
pub struct Tick {
    shards: Vec<Arc<Shard>>,
}

impl Tick {
    /// Hands `sub` to the writer of `stream`'s shard: from the next tick on, its frames are
    /// written from there.
    pub fn attach(&self, stream: &str, sub: Sub) -> Attached {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        stream.hash(&mut h);
        let shard = &self.shards[(h.finish() % self.shards.len() as u64) as usize];
        let (done, rx) = oneshot::channel();
        let slot = Arc::new(Mutex::new(Some((sub, done))));
        shard.slots.lock().unwrap().push(slot.clone());
        Attached { slot, rx }
    }
}

/// A player attached to a writer; dropping it detaches (and drops) the player.
pub struct Attached {
    slot: Arc<Slot>,
    rx: oneshot::Receiver<(Sub, Release)>,
}

impl Attached {
    /// Resolves when the writer hands the player back, and why. Cancel-safe.
    pub async fn released(&mut self) -> (Sub, Release) {
        match (&mut self.rx).await {
            Ok(back) => back,
            // The writer never drops a slot without sending it; only a runtime shutting down
            // does (then nothing waits for this either).
            Err(_) => std::future::pending().await,
        }
    }

    /// Takes the player back now; once this returns, the writer no longer writes to its
    /// socket. With the release, if the writer had handed it back meanwhile.
    pub fn detach(mut self) -> (Sub, Option<Release>) {
        if let Some((mut sub, _)) = self.slot.lock().unwrap().take() {
            sub.flush();
            return (sub, None);
        }
        match self.rx.try_recv() {
            Ok((sub, release)) => (sub, Some(release)),
            Err(_) => unreachable!("a player is either in its slot or sent to its session"),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // The writer drops the emptied slot at its next tick.
        let taken = self.slot.lock().unwrap().take();
        if let Some((mut sub, _)) = taken {
            sub.flush();
        }
    }
}

/// The clocks in use, by interval; a clock's writers end when its last player drops it.
#[derive(Default)]
pub struct Ticks {
    clocks: Mutex<HashMap<Duration, Weak<Tick>>>,
}

impl Ticks {
    /// The clock of `interval`, started if none runs; `None` for 0 (every message is written
    /// at once by its player's task). Call from within the runtime.
    pub fn get(&self, interval: Duration) -> Option<Arc<Tick>> {
        if interval.is_zero() {
            return None;
        }
        let mut clocks = self.clocks.lock().unwrap();
        if let Some(t) = clocks.get(&interval).and_then(Weak::upgrade) {
            return Some(t);
        }
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let tick = Arc::new(Tick {
            shards: (0..workers.max(1)).map(|_| Arc::default()).collect(),
        });
        clocks.retain(|_, w| w.strong_count() > 0);
        clocks.insert(interval, Arc::downgrade(&tick));
        for shard in &tick.shards {
            let weak = Arc::downgrade(&tick);
            let shard = Arc::downgrade(shard);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut scratch = Scratch::default();
                loop {
                    every.tick().await;
                    let (Some(_tick), Some(shard)) = (weak.upgrade(), shard.upgrade()) else {
                        break;
                    };
                    shard.write_all(&mut scratch);
                }
            });
        }
        Some(tick)
    }
}

/// A connection's write half, shared by its session and the merged writer (each writes only
/// while the other does not: see the module doc).
#[derive(Clone)]
pub struct SharedWriter(Arc<OwnedWriteHalf>);

impl SharedWriter {
    pub fn new(w: OwnedWriteHalf) -> SharedWriter {
        SharedWriter(Arc::new(w))
    }
}

impl TryWriteVectored for SharedWriter {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
}

impl AsyncWrite for SharedWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let tcp: &tokio::net::TcpStream = (*self.0).as_ref();
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let tcp: &tokio::net::TcpStream = (*self.0).as_ref();
        Poll::Ready(socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ring::Limits;
    use crate::hub::{Frame, Hub, HubOptions};
    use common::rtmp::chunk::msg_type;
    use common::rtmp::media::MediaKind;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Default)]
    struct Count(AtomicU64);
    impl Meter for Count {
        fn add_out(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn hub() -> Arc<Hub> {
        Hub::new(HubOptions {
            chunk_size: 60000,
            gop_cache: true,
            ring: Limits {
                window: Duration::from_secs(30),
                max_frames: 100_000,
                max_bytes: 1 << 30,
            },
            max_total_bytes: 1 << 30,
            sendfile: true,
        })
    }

    /// A connected loopback pair: (the edge's write half, the viewer's socket).
    async fn pair(send_buffer: Option<usize>) -> (SharedWriter, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let viewer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (edge, _) = l.accept().await.unwrap();
        if let Some(n) = send_buffer {
            socket2::SockRef::from(&edge)
                .set_send_buffer_size(n)
                .unwrap();
            socket2::SockRef::from(&viewer)
                .set_recv_buffer_size(n)
                .unwrap();
        }
        let (_r, w) = edge.into_split();
        (SharedWriter::new(w), viewer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_sends_each_tick_and_a_detach_takes_the_player_back() {
        let hub = hub();
        let src = hub.start_source("live/a", 1).unwrap();
        let (player, _) = hub.subscribe("live/a", false);
        let ticks = Ticks::default();
        let tick = ticks.get(Duration::from_millis(10)).unwrap();
        let (w, mut viewer) = pair(None).await;
        let meter = Arc::new(Count::default());
        let sub = Sub::new(
            Delivery::new(player, Duration::from_secs(5)),
            &w,
            Encoding::Flv,
            meter.clone(),
        );
        let attached = tick.attach("live/a", sub);
        for i in 0..20u32 {
            src.push(msg_type::AUDIO, i * 20, Bytes::from(vec![0xaf, 1, i as u8]));
        }
        // 20 FLV tags of 3 bytes: 20 x (11 + 3 + 4).
        let want = 20 * 18;
        let mut got = vec![0u8; want];
        tokio::time::timeout(Duration::from_secs(5), viewer.read_exact(&mut got))
            .await
            .expect("the writer sent every tag within a few ticks")
            .unwrap();
        assert_eq!(got[0], msg_type::AUDIO);
        let (sub, release) = attached.detach();
        assert!(release.is_none(), "{release:?}");
        // Counted when the detach takes the player back.
        assert_eq!(meter.0.load(Ordering::Relaxed), want as u64);
        // Once detached, nothing more is written to the socket.
        src.push(msg_type::AUDIO, 999, Bytes::from(vec![0xaf, 1, 0]));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut more = [0u8; 1];
        assert!(viewer.try_read(&mut more).is_err(), "no byte after detach");
        drop(sub);
        assert_eq!(hub.info("live/a").unwrap().players, 0);
    }

    /// Viewers fed by sendfile from the spool get exactly the bytes writev would have sent:
    /// RTMP chunks (a first player and a second on another message stream id, which has no
    /// spool) and FLV tags, for frames of every size, while the ring drops old frames and the
    /// spool releases their pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sendfile_from_the_spool_sends_the_same_bytes_as_writev() {
        let hub = hub();
        let src = hub.start_source("live/s", 1).unwrap();
        let ticks = Ticks::default();
        let tick = ticks.get(Duration::from_millis(5)).unwrap();
        let encodings = [
            Encoding::Rtmp {
                stream_id: 1,
                chunk_size: 4096,
            },
            Encoding::Rtmp {
                stream_id: 3,
                chunk_size: 4096,
            },
            Encoding::Flv,
        ];
        let mut viewers = Vec::new();
        let mut attached = Vec::new();
        for enc in encodings {
            let (player, _) = hub.subscribe("live/s", false);
            let (w, viewer) = pair(None).await;
            let sub = Sub::new(
                Delivery::new(player, Duration::from_secs(5)),
                &w,
                enc,
                Arc::new(Count::default()),
            );
            attached.push(tick.attach("live/s", sub));
            viewers.push(viewer);
        }
        let mut want = vec![Vec::new(); encodings.len()];
        for i in 0..400u32 {
            let (t, len) = match i % 3 {
                0 => (msg_type::AUDIO, 7 + (i as usize * 13) % 400),
                _ => (msg_type::VIDEO, 100 + (i as usize * 7919) % 30_000),
            };
            let payload: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
            let f = Arc::new(Frame::new(
                t,
                i * 10,
                MediaKind::Frame,
                Bytes::from(payload.clone()),
            ));
            for (enc, w) in encodings.iter().zip(want.iter_mut()) {
                let mut out = Vec::new();
                enc.encode(&f, &mut out);
                w.extend(out.iter().flat_map(|b| b.iter().copied()));
            }
            src.push(t, i * 10, Bytes::from(payload));
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        for (viewer, want) in viewers.iter_mut().zip(&want) {
            let mut got = vec![0u8; want.len()];
            tokio::time::timeout(Duration::from_secs(10), viewer.read_exact(&mut got))
                .await
                .expect("every frame within a few ticks")
                .unwrap();
            assert!(got == *want, "the bytes differ from the encoding");
        }
        let stream = hub.subscribe("live/s", false).0.stream.clone();
        for slot in [crate::output::rtmp::SLOT, crate::output::flv::SLOT] {
            let spool = stream.spool(slot).expect("a spool");
            assert!(spool.live_bytes() > 0, "slot {slot} went through the spool");
        }
        drop(attached);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_that_does_not_read_is_handed_back_with_the_rest_of_its_batch() {
        let hub = hub();
        let src = hub.start_source("live/b", 1).unwrap();
        let (player, _) = hub.subscribe("live/b", false);
        let ticks = Ticks::default();
        let tick = ticks.get(Duration::from_millis(10)).unwrap();
        let (w, _viewer) = pair(Some(4096)).await;
        let sub = Sub::new(
            Delivery::new(player, Duration::from_secs(5)),
            &w,
            Encoding::Flv,
            Arc::new(Count::default()),
        );
        let mut attached = tick.attach("live/b", sub);
        let mut released = None;
        for i in 0..200u32 {
            src.push(msg_type::VIDEO, i * 40, Bytes::from(vec![0x27; 60_000]));
            tokio::select! {
                back = attached.released() => {
                    released = Some(back);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
        let (_sub, release) = released.expect("handed back before 12 MB were queued");
        match release {
            Release::Slow { pending, written } => {
                let total: usize = pending.iter().map(|b| b.len()).sum();
                assert!(written < total, "{written} of {total}");
            }
            other => panic!("expected Slow, got {other:?}"),
        }
    }
}
