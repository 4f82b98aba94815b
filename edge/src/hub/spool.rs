//! A stream's encoded frames, written once into a memory file (an unnamed tmpfs file), so that the
//! merged writer can feed every attached player's socket from it with `sendfile`: the kernel
//! references the file's pages instead of copying each viewer's bytes out of user space (one
//! copy per frame per stream instead of one per frame per viewer; with a network card that
//! gathers, no copy at all on the way out). Measured with the writev floor's own loop
//! (tests/bench/floor.c, 1000 viewers of 275 KB/s): 0.6x the CPU of one writev per viewer.
//!
//! The file only grows: a frame's bytes are appended once ([`Spool::append`]) and never
//! written again, because a page the kernel has queued on a socket (or, on loopback, in the
//! reader's receive queue) is shared, not copied. Memory goes back by punching holes:
//! when a [`Span`] drops (its frame is gone from the ring and from every player), the pages
//! that no live span touches any more are released (`FALLOC_FL_PUNCH_HOLE`); the kernel
//! keeps a punched page alive for as long as a socket still holds it. A page that a live
//! span shares is never punched (punching part of a page zeroes it in place). So the file
//! holds what the ring holds, plus at most a page at each live span's ends.
//!
//! Knows nothing of sockets or protocols: it stores bytes and hands out their offsets.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use tracing::warn;

const PAGE: u64 = 4096;

/// One stream's memory file for one encoding.
pub struct Spool {
    file: File,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The file's length: where the next append goes.
    end: u64,
    /// Live spans, by start: their ends.
    live: BTreeMap<u64, u64>,
    /// Bytes of live spans (what the status shows), and pages released so far.
    live_bytes: u64,
    punched_pages: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().unwrap();
        f.debug_struct("Spool")
            .field("end", &s.end)
            .field("live_spans", &s.live.len())
            .field("live_bytes", &s.live_bytes)
            .finish()
    }
}

/// A frame's bytes in a spool: `start..end` of its file. Dropping it lets the spool release
/// the pages only it used.
#[derive(Debug)]
pub struct Span {
    spool: Arc<Spool>,
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.spool.release(self.start, self.end);
    }
}

impl Spool {
    /// A new, empty spool, or `None` where the kernel offers no memory file (then players are
    /// written with writev, as without a spool).
    pub fn new(name: &str) -> Option<Arc<Spool>> {
        match memory_file() {
            Ok(file) => Some(Arc::new(Spool {
                file,
                state: Mutex::default(),
            })),
            Err(e) => {
                warn!(stream = name, error = %e, "no memory file for sendfile: players are written with writev");
                None
            }
        }
    }

    /// The file, for `sendfile`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Appends `pieces` (one frame's encoding) and returns where they are, or `None` if the
    /// file took them not (out of memory): the caller writes that frame from memory.
    pub fn append(self: &Arc<Self>, pieces: &[Bytes]) -> Option<Span> {
        let len: u64 = pieces.iter().map(|b| b.len() as u64).sum();
        let mut s = self.state.lock().unwrap();
        let start = s.end;
        let mut done = 0u64;
        while done < len {
            let iov = remaining(pieces, done);
            match nix::sys::uio::pwritev(&self.file, &iov, (start + done) as nix::libc::off_t) {
                Ok(0) => return None,
                Ok(n) => done += n as u64,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    warn!(error = %e, "memory file write failed: this frame goes out with writev");
                    return None;
                }
            }
        }
        s.end = start + len;
        s.live.insert(start, start + len);
        s.live_bytes += len;
        Some(Span {
            spool: self.clone(),
            start,
            end: start + len,
        })
    }

    /// Bytes of the frames it holds now.
    pub fn live_bytes(&self) -> u64 {
        self.state.lock().unwrap().live_bytes
    }

    /// Pages released to the kernel so far.
    pub fn punched_pages(&self) -> u64 {
        self.state.lock().unwrap().punched_pages
    }

    /// A span's frame is gone: releases the pages of `start..end` that no live span shares.
    fn release(&self, start: u64, end: u64) {
        let mut s = self.state.lock().unwrap();
        if s.live.remove(&start).is_none() {
            return;
        }
        s.live_bytes -= end - start;
        // The free gap around the span: from the end of the live span before it to the start
        // of the one after it (or the file's end, whose page the next append continues).
        let gap_lo = s.live.range(..start).next_back().map_or(0, |(_, &e)| e);
        let gap_hi = s.live.range(end..).next().map_or(s.end, |(&st, _)| st);
        // Only pages this span touched can have become free; of those, the ones wholly in
        // the gap.
        let lo = (start / PAGE * PAGE).max(gap_lo.div_ceil(PAGE) * PAGE);
        let hi = (end.div_ceil(PAGE) * PAGE).min(gap_hi / PAGE * PAGE);
        if lo >= hi {
            return;
        }
        let mode = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(
            self.file.as_raw_fd(),
            mode,
            lo as nix::libc::off_t,
            (hi - lo) as nix::libc::off_t,
        ) {
            Ok(()) => s.punched_pages += (hi - lo) / PAGE,
            Err(e) => warn!(error = %e, "memory file: releasing pages failed"),
        }
    }
}

/// An unnamed file in tmpfs (`O_TMPFILE` in /dev/shm): what `memfd_create` gives, opened with
/// std alone. (nix's `memfd_create` calls the glibc wrapper, which the release build cannot
/// link: it targets glibc 2.17, CentOS 7, and the wrapper came in 2.27.) Linux 3.11 or later.
fn memory_file() -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE)
        .mode(0o600)
        .open("/dev/shm")
}

/// `pieces` past their first `skip` bytes, as slices for one pwritev.
fn remaining(pieces: &[Bytes], mut skip: u64) -> Vec<IoSlice<'_>> {
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let n = p.len() as u64;
        if skip >= n {
            skip -= n;
            continue;
        }
        out.push(IoSlice::new(&p[skip as usize..]));
        skip = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::os::unix::fs::MetadataExt;

    fn read(spool: &Spool, span: &Span) -> Vec<u8> {
        let mut b = vec![0u8; (span.end - span.start) as usize];
        spool.file.read_exact_at(&mut b, span.start).unwrap();
        b
    }

    fn blocks(spool: &Spool) -> u64 {
        spool.file.metadata().unwrap().blocks()
    }

    #[test]
    fn spans_follow_each_other_and_read_back_as_written() {
        let spool = Spool::new("t").unwrap();
        let a = spool
            .append(&[Bytes::from_static(b"head"), Bytes::from_static(b"payload")])
            .unwrap();
        let b = spool.append(&[Bytes::from(vec![7u8; 10_000])]).unwrap();
        assert_eq!((a.start, a.end), (0, 11));
        assert_eq!((b.start, b.end), (11, 10_011));
        assert_eq!(read(&spool, &a), b"headpayload");
        assert_eq!(read(&spool, &b), vec![7u8; 10_000]);
        assert_eq!(spool.live_bytes(), 10_011);
    }

    #[test]
    fn pages_go_back_once_no_live_span_touches_them_and_shared_pages_stay() {
        let spool = Spool::new("t").unwrap();
        // A long-lived span (a sequence header) first, then frames that come and go.
        let pinned = spool.append(&[Bytes::from(vec![1u8; 100])]).unwrap();
        let frames: Vec<Span> = (0..50u8)
            .map(|i| spool.append(&[Bytes::from(vec![i; 9_000])]).unwrap())
            .collect();
        let last = spool.append(&[Bytes::from(vec![9u8; 3_000])]).unwrap();
        let before = blocks(&spool);
        drop(frames);
        // Everything but the first page (shared with the pinned span) and the pages of the
        // last span went back.
        assert!(spool.punched_pages() >= 108, "{}", spool.punched_pages());
        assert!(
            blocks(&spool) < before / 10,
            "{} -> {}",
            before,
            blocks(&spool)
        );
        assert_eq!(read(&spool, &pinned), vec![1u8; 100]);
        assert_eq!(read(&spool, &last), vec![9u8; 3_000]);
        // New frames still land after the end and read back whole.
        let next = spool.append(&[Bytes::from(vec![5u8; 5_000])]).unwrap();
        assert_eq!(next.start, last.end);
        assert_eq!(read(&spool, &next), vec![5u8; 5_000]);
        drop((pinned, last, next));
        assert_eq!(spool.live_bytes(), 0);
    }
}
