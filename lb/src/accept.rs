//! What the balancer's accept loops (virtual servers, admin) do when something goes wrong many
//! times a second: back off on accept errors, and log floods once in a while with a count.
//!
//! An accept that fails with EMFILE leaves the connection in the backlog, so the listener stays
//! readable and a loop that retries at once spins on one core. [`AcceptBackoff`] sleeps 5 ms
//! after the first failure, doubling to 1 s, back to 5 ms after a success. [`Throttle`] turns
//! "one warning per refused connection" into one per interval saying how many there were.
//! Sans-I/O: callers pass `now`; the loops own the sleeping and the logging.

use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one warning per this interval for one kind of repeated event.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts repeated events and says when to log them.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Counts one event; `Some(n)` when a log line is due, `n` being the events it stands for
    /// (this one and those not logged since the last line). The first event logs at once.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending = self.pending.saturating_add(1);
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(LOG_EVERY)
    }
}

/// Backoff and throttled logging of accept errors.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    log: Throttle,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            delay: FIRST_DELAY,
            log: Throttle::new(LOG_EVERY),
        }
    }
}

impl AcceptBackoff {
    pub fn success(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// One failed accept: how long to sleep before the next, and `Some(n)` when a warning
    /// for `n` failures is due.
    pub fn failure(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let d = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        (d, self.log.hit(now))
    }
}

/// Whether `e` says this process (EMFILE) or the system (ENFILE) is out of file descriptors.
pub fn is_local_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(c) if c == nix::errno::Errno::EMFILE as i32 || c == nix::errno::Errno::ENFILE as i32)
}

/// Why an accept failed, with a hint for the case an operator can fix.
pub fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(c) if c == nix::errno::Errno::EMFILE as i32 => {
            format!("{e} (the open-files limit RLIMIT_NOFILE is reached)")
        }
        Some(c) if c == nix::errno::Errno::ENFILE as i32 => {
            format!("{e} (the system-wide file table is full, fs.file-max)")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let t = Instant::now();
        let delays: Vec<_> = (0..10).map(|_| b.failure(t).0.as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.success();
        assert_eq!(b.failure(t).0, FIRST_DELAY);
    }

    #[test]
    fn throttle_logs_the_first_then_once_per_interval_with_the_count() {
        let mut th = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(th.hit(t0), Some(1));
        for i in 1..100 {
            assert_eq!(th.hit(t0 + Duration::from_millis(i * 50)), None);
        }
        assert_eq!(th.hit(t0 + Duration::from_secs(10)), Some(100));
        assert_eq!(th.hit(t0 + Duration::from_secs(11)), None);
        assert_eq!(th.hit(t0 + Duration::from_secs(25)), Some(2));
    }
}
