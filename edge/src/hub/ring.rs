//! A stream's fan-out ring: the frames players read, bounded by time, count and bytes, and
//! the GOP cache as a position inside it (so a frame is held once, whoever refers to it).
//!
//! Sans-I/O: no locks, no clock, no sockets. The stream wraps it in its mutex and passes
//! `now`; players keep a cursor (a sequence number) and read batches from it.
//!
//! Bounds, applied on every push, oldest frames first:
//! - **time**: frames that arrived more than `window` before the newest go (the window is
//!   `queue_length`, so the ring holds `queue_length` x the stream's bitrate);
//! - **count**: at most `max_frames`;
//! - **bytes**: at most `max_bytes` for this stream, and the server-wide [`Budget`].
//!
//! Time and count never evict the current GOP (the frames since the last keyframe): a player
//! joining must get a decodable picture. Bytes do: past a byte bound the GOP is dropped and
//! comes back with the next keyframe. A player whose cursor fell behind the oldest frame is
//! told how many it lost ([`Read::Lagged`]) and its lag policy decides what follows.

use super::SharedFrame;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The server-wide ceiling on bytes held by every ring together.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The ring's bounds (from `queue_length`, `max_queue_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window: Duration,
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// `n` frames were appended to the output.
    Frames(usize),
    /// The cursor was `n` frames behind the oldest one kept; it now points at the oldest.
    Lagged(u64),
    /// Nothing new.
    Empty,
}

struct Entry {
    frame: SharedFrame,
    arrived: Instant,
    size: usize,
}

pub struct Ring {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    head: u64,
    bytes: usize,
    /// Sequence number of the current GOP's keyframe, while it is still in the ring.
    gop_start: Option<u64>,
    limits: Limits,
    /// Frames evicted by a byte bound (not by time or count): memory pressure, for logs.
    pub evicted_for_bytes: u64,
}

impl Ring {
    pub fn new(limits: Limits) -> Ring {
        Ring {
            entries: VecDeque::new(),
            head: 0,
            bytes: 0,
            gop_start: None,
            limits,
            evicted_for_bytes: 0,
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Sequence number the next pushed frame gets (a new player's cursor).
    pub fn tail(&self) -> u64 {
        self.head + self.entries.len() as u64
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a frame. `starts_gop`: a video keyframe (the GOP cache restarts there);
    /// `gop`: whether a GOP is kept at all. Then applies the bounds.
    pub fn push(
        &mut self,
        frame: SharedFrame,
        size: usize,
        now: Instant,
        starts_gop: bool,
        gop: bool,
        budget: &Budget,
    ) {
        if starts_gop && gop {
            self.gop_start = Some(self.tail());
        }
        self.entries.push_back(Entry {
            frame,
            arrived: now,
            size,
        });
        self.bytes += size;
        budget.add(size);
        self.evict(now, budget);
    }

    /// Forgets the GOP (a new video sequence header, or the source ended).
    pub fn reset_gop(&mut self) {
        self.gop_start = None;
    }

    fn evict(&mut self, now: Instant, budget: &Budget) {
        while self.entries.len() > 1 {
            let front = &self.entries[0];
            let for_bytes = self.bytes > self.limits.max_bytes || budget.over();
            let protected = self.gop_start.is_some_and(|g| g <= self.head);
            let old = now.saturating_duration_since(front.arrived) > self.limits.window
                || self.entries.len() > self.limits.max_frames;
            if !(for_bytes || (old && !protected)) {
                break;
            }
            if for_bytes {
                self.evicted_for_bytes += 1;
            }
            self.pop_front(budget);
        }
    }

    fn pop_front(&mut self, budget: &Budget) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.size;
            budget.sub(e.size);
            self.head += 1;
            if self.gop_start.is_some_and(|g| g < self.head) {
                self.gop_start = None;
            }
        }
    }

    /// Removes every frame (the stream is gone).
    pub fn clear(&mut self, budget: &Budget) {
        while !self.entries.is_empty() {
            self.pop_front(budget);
        }
    }

    /// The current GOP, oldest first (a joining player's first picture).
    pub fn gop(&self) -> impl Iterator<Item = &SharedFrame> {
        let skip = self
            .gop_start
            .map(|g| (g - self.head) as usize)
            .unwrap_or(self.entries.len());
        self.entries
            .range(skip.min(self.entries.len())..)
            .map(|e| &e.frame)
    }

    /// Appends frames from `cursor` on to `out`, at most `max_frames` of them and, past the
    /// first, at most `max_bytes` in all; advances the cursor.
    pub fn read(
        &self,
        cursor: &mut u64,
        out: &mut Vec<SharedFrame>,
        max_frames: usize,
        max_bytes: usize,
    ) -> Read {
        if *cursor < self.head {
            let lost = self.head - *cursor;
            *cursor = self.head;
            return Read::Lagged(lost);
        }
        let start = (*cursor - self.head) as usize;
        let mut n = 0;
        let mut bytes = 0;
        // `range`, not `iter().skip()`: skipping walks every entry before the cursor (the
        // whole queue_length window for a player that keeps up), the range starts at it.
        for e in self.entries.range(start.min(self.entries.len())..) {
            if n == max_frames || (n > 0 && bytes + e.size > max_bytes) {
                break;
            }
            out.push(e.frame.clone());
            bytes += e.size;
            n += 1;
        }
        *cursor += n as u64;
        if n == 0 {
            Read::Empty
        } else {
            Read::Frames(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Frame;
    use super::*;
    use bytes::Bytes;
    use common::rtmp::media::MediaKind;
    use std::sync::Arc;

    fn frame(ts: u32, size: usize) -> SharedFrame {
        Arc::new(Frame::new(
            9,
            ts,
            MediaKind::Frame,
            Bytes::from(vec![0u8; size]),
        ))
    }

    fn limits(window_ms: u64, max_frames: usize, max_bytes: usize) -> Limits {
        Limits {
            window: Duration::from_millis(window_ms),
            max_frames,
            max_bytes,
        }
    }

    #[test]
    fn time_window_keeps_the_gop() {
        let budget = Budget::new(usize::MAX);
        let mut r = Ring::new(limits(1000, 1000, 1 << 30));
        let t0 = Instant::now();
        // A keyframe at 0 ms, then frames every 100 ms for 3 s: time alone would keep the
        // last second, but the GOP from 0 is protected.
        for i in 0..30u64 {
            let at = t0 + Duration::from_millis(i * 100);
            r.push(frame(i as u32, 10), 10, at, i == 0, true, &budget);
        }
        assert_eq!(r.len(), 30);
        assert_eq!(r.gop().count(), 30);
        // A new keyframe at 3 s: the old GOP is no longer protected, the window applies.
        r.push(
            frame(30, 10),
            10,
            t0 + Duration::from_secs(3),
            true,
            true,
            &budget,
        );
        assert_eq!(r.gop().count(), 1);
        assert!(r.len() <= 12, "{}", r.len());
        assert_eq!(budget.used(), r.bytes());
    }

    #[test]
    fn bytes_are_bounded_per_stream_and_per_server() {
        let budget = Budget::new(usize::MAX);
        let mut r = Ring::new(limits(60_000, 100_000, 1000));
        let now = Instant::now();
        for i in 0..100 {
            r.push(frame(i, 300), 300, now, i == 0, true, &budget);
            assert!(r.bytes() <= 1000);
        }
        assert_eq!(r.len(), 3);
        assert!(r.evicted_for_bytes > 0);
        // A server budget below the stream's own bound: the server's wins.
        let shared = Budget::new(500);
        let mut a = Ring::new(limits(60_000, 100_000, 1 << 20));
        let mut b = Ring::new(limits(60_000, 100_000, 1 << 20));
        for i in 0..10 {
            a.push(frame(i, 100), 100, now, false, true, &shared);
            b.push(frame(i, 100), 100, now, false, true, &shared);
        }
        assert!(shared.used() <= 600, "{}", shared.used());
        a.clear(&shared);
        b.clear(&shared);
        assert_eq!(shared.used(), 0);
    }

    #[test]
    fn a_single_frame_is_kept_whatever_its_size() {
        let budget = Budget::new(10);
        let mut r = Ring::new(limits(1, 1, 10));
        r.push(frame(0, 100), 100, Instant::now(), true, true, &budget);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn readers_lag_and_batch() {
        let budget = Budget::new(usize::MAX);
        let mut r = Ring::new(limits(60_000, 8, 1 << 20));
        let now = Instant::now();
        let mut cursor = r.tail();
        for i in 0..20 {
            r.push(frame(i, 10), 10, now, false, false, &budget);
        }
        let mut out = Vec::new();
        assert_eq!(r.read(&mut cursor, &mut out, 64, 1 << 20), Read::Lagged(12));
        assert_eq!(r.read(&mut cursor, &mut out, 3, 1 << 20), Read::Frames(3));
        assert_eq!(out[0].timestamp, 12);
        // The byte bound stops a batch after the first frame that reaches it.
        assert_eq!(r.read(&mut cursor, &mut out, 64, 15), Read::Frames(1));
        assert_eq!(r.read(&mut cursor, &mut out, 64, 1 << 20), Read::Frames(4));
        assert_eq!(r.read(&mut cursor, &mut out, 64, 1 << 20), Read::Empty);
        assert_eq!(cursor, r.tail());
    }
}
