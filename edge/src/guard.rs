//! Admission bookkeeping, without I/O: connection slots (handshakes apart from established
//! sessions), refusals counted by reason, the back-off for publishers that keep sending a
//! wrong key, the brief memory of streams no origin has, and which origins just refused a
//! connection.
//!
//! Everything takes `now` from the caller, so the rules are tested on simulated time.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection or request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `max_connections` established sessions already.
    MaxConnections,
    /// `max_handshakes` connections already in handshake.
    Handshakes,
    /// `max_handshakes_per_ip` connections from this address already in handshake.
    HandshakesPerIp,
    /// A PROXY header from a peer outside `set_real_ip_from`, or none from a peer inside.
    ProxyHeader,
    /// A publisher that failed the key too often is refused for a while.
    PublishBlocked,
    /// Wrong or missing publish key.
    PublishKey,
    /// A play without the token `[play] token_keys` requires, by what was wrong with it.
    PlayTokenMissing,
    PlayTokenMalformed,
    PlayTokenExpired,
    PlayTokenSignature,
    PlayTokenNetwork,
    /// `[http_hooks] on_publish` / `on_play` refused (or did not answer in time).
    HookPublish,
    HookPlay,
}

impl Refusal {
    pub const ALL: [Refusal; 13] = [
        Refusal::MaxConnections,
        Refusal::Handshakes,
        Refusal::HandshakesPerIp,
        Refusal::ProxyHeader,
        Refusal::PublishBlocked,
        Refusal::PublishKey,
        Refusal::PlayTokenMissing,
        Refusal::PlayTokenMalformed,
        Refusal::PlayTokenExpired,
        Refusal::PlayTokenSignature,
        Refusal::PlayTokenNetwork,
        Refusal::HookPublish,
        Refusal::HookPlay,
    ];

    /// The refusal counted for a play token refused for `e`.
    pub fn of_token(e: crate::token::TokenError) -> Refusal {
        use crate::token::TokenError;
        match e {
            TokenError::Missing => Refusal::PlayTokenMissing,
            TokenError::Malformed => Refusal::PlayTokenMalformed,
            TokenError::Expired => Refusal::PlayTokenExpired,
            TokenError::Signature => Refusal::PlayTokenSignature,
            TokenError::Network => Refusal::PlayTokenNetwork,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::Handshakes => "max_handshakes",
            Refusal::HandshakesPerIp => "max_handshakes_per_ip",
            Refusal::ProxyHeader => "proxy_header",
            Refusal::PublishBlocked => "publish_blocked",
            Refusal::PublishKey => "publish_key",
            Refusal::PlayTokenMissing => "play_token_missing",
            Refusal::PlayTokenMalformed => "play_token_malformed",
            Refusal::PlayTokenExpired => "play_token_expired",
            Refusal::PlayTokenSignature => "play_token_signature",
            Refusal::PlayTokenNetwork => "play_token_network",
            Refusal::HookPublish => "hook_publish",
            Refusal::HookPlay => "hook_play",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Refusals counted by reason; logging them is rate-limited by [`Refusals::should_log`].
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; Refusal::ALL.len()],
    last_log: Mutex<HashMap<Refusal, Instant>>,
}

impl Refusals {
    /// Counts one refusal; returns the total for that reason.
    pub fn count(&self, why: Refusal) -> u64 {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self, why: Refusal) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }

    /// True at most once a second per reason: a flood is logged as a few lines with running
    /// totals, not one line per connection.
    pub fn should_log(&self, why: Refusal, now: Instant) -> bool {
        let mut last = self.last_log.lock().unwrap();
        match last.get(&why) {
            Some(t) if now.saturating_duration_since(*t) < Duration::from_secs(1) => false,
            _ => {
                last.insert(why, now);
                true
            }
        }
    }

    /// `reason=count` for every reason with a count, for logs and status.
    pub fn summary(&self) -> String {
        Refusal::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| format!("{}={}", r.name(), self.get(*r)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Connection slots: established sessions (`max_connections`) and connections still in
/// handshake (`max_handshakes`, `max_handshakes_per_ip`) are counted apart, so silent
/// connections can only take handshake slots, never a viewer's. The limits are passed at each
/// acquire, so a reload applies at once.
#[derive(Debug, Default)]
pub struct Slots {
    established: AtomicUsize,
    handshakes: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A handshake slot, released when dropped.
#[derive(Debug)]
pub struct HandshakeSlot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

/// An established session's slot, released when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    slots: Arc<Slots>,
}

impl Slots {
    pub fn established(&self) -> usize {
        self.established.load(Ordering::Relaxed)
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// A slot among all connections in handshake (before the client's address is known:
    /// a PROXY header may still name it).
    pub fn handshake(self: &Arc<Self>, max: usize) -> Result<HandshakeSlot, Refusal> {
        let mut cur = self.handshakes.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return Err(Refusal::Handshakes);
            }
            match self.handshakes.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(HandshakeSlot {
                        slots: self.clone(),
                        ip: None,
                    })
                }
                Err(v) => cur = v,
            }
        }
    }

    /// The session is established: trade the handshake slot for a session slot.
    pub fn establish(
        self: &Arc<Self>,
        hs: HandshakeSlot,
        max: usize,
    ) -> Result<SessionSlot, Refusal> {
        let mut cur = self.established.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return Err(Refusal::MaxConnections);
            }
            match self.established.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        drop(hs);
        Ok(SessionSlot {
            slots: self.clone(),
        })
    }
}

impl HandshakeSlot {
    /// Counts this handshake against the client's address (once it is known).
    pub fn bind_ip(&mut self, ip: IpAddr, max_per_ip: usize) -> Result<(), Refusal> {
        let mut map = self.slots.per_ip.lock().unwrap();
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            if *n == 0 {
                map.remove(&ip);
            }
            return Err(Refusal::HandshakesPerIp);
        }
        *n += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.slots.handshakes.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.slots.per_ip.lock().unwrap();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.slots.established.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Failures of the publish key by source address: after [`KeyGuard::SLOW_AFTER`] failures in
/// [`KeyGuard::WINDOW`], each answer is delayed (1 s more per failure, at most 5 s); after
/// [`KeyGuard::BLOCK_AFTER`], the source is refused outright for [`KeyGuard::BLOCK_FOR`]
/// without its key being looked at. A success forgets the source.
#[derive(Debug, Default)]
pub struct KeyGuard {
    sources: HashMap<IpAddr, KeyFailures>,
}

#[derive(Debug, Clone, Copy)]
struct KeyFailures {
    first: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

/// What to do with a publish attempt's key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Check the key.
    Check,
    /// Refuse without checking: blocked until then.
    Blocked(Instant),
}

impl KeyGuard {
    pub const WINDOW: Duration = Duration::from_secs(60);
    pub const SLOW_AFTER: u32 = 3;
    pub const BLOCK_AFTER: u32 = 10;
    pub const BLOCK_FOR: Duration = Duration::from_secs(600);
    /// Sources remembered at most (the oldest entries go first past this).
    pub const MAX_SOURCES: usize = 10_000;

    pub fn verdict(&mut self, ip: IpAddr, now: Instant) -> KeyVerdict {
        match self.sources.get(&ip).and_then(|f| f.blocked_until) {
            Some(until) if now < until => KeyVerdict::Blocked(until),
            Some(_) => {
                self.sources.remove(&ip);
                KeyVerdict::Check
            }
            None => KeyVerdict::Check,
        }
    }

    /// Records a failure; returns (failures in the window, delay before answering).
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> (u32, Duration) {
        if self.sources.len() >= Self::MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.sources
                .retain(|_, f| now.saturating_duration_since(f.first) < Self::WINDOW);
            if self.sources.len() >= Self::MAX_SOURCES {
                if let Some(oldest) = self.sources.iter().min_by_key(|(_, f)| f.first) {
                    let k = *oldest.0;
                    self.sources.remove(&k);
                }
            }
        }
        let f = self.sources.entry(ip).or_insert(KeyFailures {
            first: now,
            count: 0,
            blocked_until: None,
        });
        if now.saturating_duration_since(f.first) > Self::WINDOW && f.blocked_until.is_none() {
            f.first = now;
            f.count = 0;
        }
        f.count += 1;
        if f.count >= Self::BLOCK_AFTER {
            f.blocked_until = Some(now + Self::BLOCK_FOR);
        }
        let delay = if f.count > Self::SLOW_AFTER {
            Duration::from_secs(u64::from(f.count - Self::SLOW_AFTER).min(5))
        } else {
            Duration::ZERO
        };
        (f.count, delay)
    }

    pub fn succeeded(&mut self, ip: IpAddr) {
        self.sources.remove(&ip);
    }
}

/// Streams that a full round of origins answered "not found", remembered for
/// [`NotFound::TTL`], so a crowd of plays for a missing stream costs the origins one lookup.
#[derive(Debug, Default)]
pub struct NotFound {
    keys: HashMap<String, Instant>,
}

impl NotFound {
    pub const TTL: Duration = Duration::from_secs(2);
    pub const MAX_KEYS: usize = 10_000;

    pub fn insert(&mut self, key: &str, now: Instant) {
        if self.keys.len() >= Self::MAX_KEYS {
            self.keys.retain(|_, until| *until > now);
            if self.keys.len() >= Self::MAX_KEYS {
                self.keys.clear();
            }
        }
        self.keys.insert(key.to_string(), now + Self::TTL);
    }

    pub fn contains(&mut self, key: &str, now: Instant) -> bool {
        match self.keys.get(key) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.keys.remove(key);
                false
            }
            None => false,
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.keys.remove(key);
    }
}

/// Origins that refused a connection just now: while one is marked, pulls of other streams
/// wait for the next probe instead of each connecting, so a dead origin sees about one
/// connection attempt per [`OriginGate::PROBE_EVERY`] whatever the number of streams.
#[derive(Debug, Default)]
pub struct OriginGate {
    down: HashMap<String, Instant>,
}

impl OriginGate {
    pub const PROBE_EVERY: Duration = Duration::from_millis(250);

    /// Whether a pull may try `origin` now; a `true` while it is down claims the next probe.
    pub fn may_try(&mut self, origin: &str, now: Instant) -> bool {
        match self.down.get_mut(origin) {
            None => true,
            Some(last) if now.saturating_duration_since(*last) >= Self::PROBE_EVERY => {
                *last = now;
                true
            }
            Some(_) => false,
        }
    }

    pub fn refused(&mut self, origin: &str, now: Instant) {
        self.down.entry(origin.to_string()).or_insert(now);
    }

    pub fn answered(&mut self, origin: &str) {
        self.down.remove(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_do_not_take_viewer_slots() {
        let slots = Arc::new(Slots::default());
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut hs = slots.handshake(10).unwrap();
            hs.bind_ip(ip, 3).unwrap();
            held.push(hs);
        }
        let mut fourth = slots.handshake(10).unwrap();
        assert_eq!(fourth.bind_ip(ip, 3), Err(Refusal::HandshakesPerIp));
        drop(fourth);
        assert_eq!(slots.handshakes(), 3);
        // Another address still gets in and becomes a viewer.
        let mut hs = slots.handshake(10).unwrap();
        hs.bind_ip("198.18.0.10".parse().unwrap(), 3).unwrap();
        let viewer = slots.establish(hs, 1).unwrap();
        assert_eq!((slots.handshakes(), slots.established()), (3, 1));
        let hs = slots.handshake(10).unwrap();
        assert_eq!(slots.establish(hs, 1).err(), Some(Refusal::MaxConnections));
        drop(viewer);
        drop(held);
        assert_eq!((slots.handshakes(), slots.established()), (0, 0));
        assert!(slots.per_ip.lock().unwrap().is_empty());
        let _a = slots.handshake(1).unwrap();
        assert_eq!(slots.handshake(1).err(), Some(Refusal::Handshakes));
    }

    #[test]
    fn wrong_keys_slow_down_then_block() {
        let mut g = KeyGuard::default();
        let ip: IpAddr = "198.18.0.7".parse().unwrap();
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..KeyGuard::BLOCK_AFTER)
            .map(|i| g.failed(ip, t0 + Duration::from_secs(i as u64)).1)
            .collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], Duration::from_secs(1));
        assert_eq!(delays[9], Duration::from_secs(5));
        let t = t0 + Duration::from_secs(20);
        assert!(matches!(g.verdict(ip, t), KeyVerdict::Blocked(_)));
        assert_eq!(
            g.verdict("198.18.0.8".parse().unwrap(), t),
            KeyVerdict::Check
        );
        assert_eq!(g.verdict(ip, t + KeyGuard::BLOCK_FOR), KeyVerdict::Check);
        // Failures far apart never add up to a block.
        let mut g = KeyGuard::default();
        for i in 0..30 {
            g.failed(ip, t0 + KeyGuard::WINDOW * 2 * i);
        }
        assert_eq!(g.verdict(ip, t0 + KeyGuard::WINDOW * 61), KeyVerdict::Check);
    }

    #[test]
    fn not_found_is_remembered_briefly() {
        let mut nf = NotFound::default();
        let t0 = Instant::now();
        nf.insert("live/x", t0);
        assert!(nf.contains("live/x", t0 + Duration::from_millis(1900)));
        assert!(!nf.contains("live/x", t0 + NotFound::TTL));
        assert!(!nf.contains("live/y", t0));
    }

    #[test]
    fn a_dead_origin_gets_one_probe_per_interval() {
        let mut g = OriginGate::default();
        let t0 = Instant::now();
        assert!(g.may_try("o:1935", t0));
        g.refused("o:1935", t0);
        let tries = (0..100)
            .filter(|i| g.may_try("o:1935", t0 + Duration::from_millis(*i * 10)))
            .count();
        assert_eq!(tries, 3, "1 s of 100 pulls: probes at 250, 500, 750 ms");
        g.answered("o:1935");
        assert!(g.may_try("o:1935", t0));
    }
}
