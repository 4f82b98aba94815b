//! Scheduling: which real server gets a new connection. Sans-I/O: the caller passes `now`
//! and reports connections opening and closing; nothing here touches a socket or a clock.
//!
//! Semantics follow IPVS: a server is *available* when it is up and its weight is above 0
//! (weight 0 = quiesced: no new connections, existing ones untouched). `rr` cycles, `wrr`
//! and `wlc` honour weights, `lc`/`wlc` count active connections, `sh` and `mh` hash the
//! client address (`mh` = Maglev, identical across balancers). Persistence maps the client
//! address masked by the granularity to the server it last used, until `persistence_timeout`
//! after its last connection closed.

pub mod hash;
pub mod maglev;

use crate::config::{Algo, Persistence};
use maglev::Maglev;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    pub up: bool,
    pub active: u32,
    /// Smooth-wrr running score.
    current: i64,
}

impl Backend {
    pub fn available(&self) -> bool {
        self.up && self.weight > 0
    }
}

struct Template {
    backend: SocketAddr,
    active: u32,
    /// Set when `active` drops to 0.
    expires: Option<Instant>,
}

pub struct Scheduler {
    algo: Algo,
    persistence: Option<Persistence>,
    backends: Vec<Backend>,
    rr_next: usize,
    /// Tables rebuilt lazily after a change of membership, state or weight.
    maglev: Option<Maglev>,
    sh_table: Vec<usize>,
    dirty: bool,
    templates: HashMap<IpAddr, Template>,
    last_expire: Option<Instant>,
}

const SH_BUCKETS: usize = 256;
const SEED_SH: u64 = 0x7368_6173_6800_0001;

impl Scheduler {
    pub fn new(algo: Algo, persistence: Option<Persistence>) -> Scheduler {
        Scheduler {
            algo,
            persistence,
            backends: Vec::new(),
            rr_next: 0,
            maglev: None,
            sh_table: Vec::new(),
            dirty: true,
            templates: HashMap::new(),
            last_expire: None,
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Replaces the server list (reload): servers kept by address keep their state.
    pub fn set_backends(&mut self, list: &[(SocketAddr, u32)]) {
        let old = std::mem::take(&mut self.backends);
        self.backends = list
            .iter()
            .map(|&(addr, weight)| {
                let prev = old.iter().find(|b| b.addr == addr);
                Backend {
                    addr,
                    weight,
                    up: prev.map(|p| p.up).unwrap_or(true),
                    active: prev.map(|p| p.active).unwrap_or(0),
                    current: 0,
                }
            })
            .collect();
        self.rr_next = 0;
        self.dirty = true;
    }

    pub fn set_algo(&mut self, algo: Algo, persistence: Option<Persistence>) {
        if self.algo != algo || self.persistence != persistence {
            self.algo = algo;
            self.persistence = persistence;
            self.templates.clear();
            self.dirty = true;
        }
    }

    pub fn set_up(&mut self, addr: SocketAddr, up: bool) {
        if let Some(b) = self.backends.iter_mut().find(|b| b.addr == addr) {
            if b.up != up {
                b.up = up;
                self.dirty = true;
            }
        }
    }

    pub fn set_weight(&mut self, addr: SocketAddr, weight: u32) {
        if let Some(b) = self.backends.iter_mut().find(|b| b.addr == addr) {
            if b.weight != weight {
                b.weight = weight;
                self.dirty = true;
            }
        }
    }

    pub fn any_available(&self) -> bool {
        self.backends.iter().any(|b| b.available())
    }

    fn rebuild(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let weights: Vec<(SocketAddr, u32)> = self
            .backends
            .iter()
            .map(|b| (b.addr, if b.available() { b.weight } else { 0 }))
            .collect();
        match self.algo {
            Algo::Mh => self.maglev = Maglev::build(&weights),
            Algo::Sh => {
                // Buckets dealt out in weight-proportional turns, as IPVS sh does.
                self.sh_table.clear();
                let total: u32 = weights.iter().map(|w| w.1).sum();
                if total > 0 {
                    let mut turns: Vec<u32> = weights.iter().map(|w| w.1).collect();
                    while self.sh_table.len() < SH_BUCKETS {
                        for (i, t) in turns.iter_mut().enumerate() {
                            if *t > 0 && self.sh_table.len() < SH_BUCKETS {
                                self.sh_table.push(i);
                                *t -= 1;
                            }
                        }
                        if turns.iter().all(|t| *t == 0) {
                            turns = weights.iter().map(|w| w.1).collect();
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Chooses a server for `client`, skipping `exclude` (servers that just failed to
    /// connect). `None`: no available server (the caller may use the sorry server).
    pub fn pick(
        &mut self,
        client: IpAddr,
        now: Instant,
        exclude: &[SocketAddr],
    ) -> Option<SocketAddr> {
        self.expire(now);
        self.rebuild();
        let usable = |b: &Backend| b.available() && !exclude.contains(&b.addr);
        if let Some(p) = &self.persistence {
            let key = p.mask(client);
            if let Some(t) = self.templates.get(&key) {
                let alive = t.active > 0 || t.expires.map(|e| e > now).unwrap_or(true);
                if alive {
                    if let Some(b) = self.backends.iter().find(|b| b.addr == t.backend) {
                        if usable(b) {
                            return Some(b.addr);
                        }
                    }
                }
            }
        }
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        match self.algo {
            Algo::Rr => {
                for k in 0..n {
                    let i = (self.rr_next + k) % n;
                    if usable(&self.backends[i]) {
                        self.rr_next = (i + 1) % n;
                        return Some(self.backends[i].addr);
                    }
                }
                None
            }
            Algo::Wrr => {
                // Smooth weighted round robin: even interleaving, exact proportions.
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in 0..n {
                    if !usable(&self.backends[i]) {
                        continue;
                    }
                    let b = &mut self.backends[i];
                    b.current += b.weight as i64;
                    total += b.weight as i64;
                    if best
                        .map(|j| self.backends[j].current < self.backends[i].current)
                        .unwrap_or(true)
                    {
                        best = Some(i);
                    }
                }
                let i = best?;
                self.backends[i].current -= total;
                Some(self.backends[i].addr)
            }
            Algo::Lc | Algo::Wlc => {
                let weighted = self.algo == Algo::Wlc;
                let mut best: Option<usize> = None;
                for k in 0..n {
                    // Start after the last choice so ties rotate instead of piling on one.
                    let i = (self.rr_next + k) % n;
                    let b = &self.backends[i];
                    if !usable(b) {
                        continue;
                    }
                    let better = match best {
                        None => true,
                        Some(j) => {
                            let o = &self.backends[j];
                            if weighted {
                                (b.active as u64) * (o.weight as u64)
                                    < (o.active as u64) * (b.weight as u64)
                            } else {
                                b.active < o.active
                            }
                        }
                    };
                    if better {
                        best = Some(i);
                    }
                }
                let i = best?;
                self.rr_next = (i + 1) % n;
                Some(self.backends[i].addr)
            }
            Algo::Sh => {
                if self.sh_table.is_empty() {
                    return None;
                }
                let h = hash::hash_ip(client, SEED_SH) as usize;
                for k in 0..SH_BUCKETS {
                    let i = self.sh_table[(h + k) % SH_BUCKETS];
                    if usable(&self.backends[i]) {
                        return Some(self.backends[i].addr);
                    }
                }
                None
            }
            Algo::Mh => {
                let m = self.maglev.as_ref()?;
                for attempt in 0..(n as u64 * 4 + 4) {
                    let i = m.lookup(client, attempt);
                    if i < n && usable(&self.backends[i]) {
                        return Some(self.backends[i].addr);
                    }
                }
                None
            }
        }
    }

    /// A connection to `addr` for `client` is established.
    pub fn connected(&mut self, addr: SocketAddr, client: IpAddr) {
        if let Some(b) = self.backends.iter_mut().find(|b| b.addr == addr) {
            b.active += 1;
        }
        if let Some(p) = &self.persistence {
            let t = self.templates.entry(p.mask(client)).or_insert(Template {
                backend: addr,
                active: 0,
                expires: None,
            });
            if t.backend != addr && t.active == 0 {
                t.backend = addr;
            }
            if t.backend == addr {
                t.active += 1;
                t.expires = None;
            }
        }
    }

    /// A connection to `addr` for `client` ended at `now`.
    pub fn closed(&mut self, addr: SocketAddr, client: IpAddr, now: Instant) {
        if let Some(b) = self.backends.iter_mut().find(|b| b.addr == addr) {
            b.active = b.active.saturating_sub(1);
        }
        if let Some(p) = self.persistence {
            if let Some(t) = self.templates.get_mut(&p.mask(client)) {
                if t.backend == addr {
                    t.active = t.active.saturating_sub(1);
                    if t.active == 0 {
                        t.expires = Some(now + p.timeout);
                    }
                }
            }
        }
    }

    /// Drops persistence templates past their timeout (at most once a second).
    fn expire(&mut self, now: Instant) {
        if self.persistence.is_none() {
            return;
        }
        if self
            .last_expire
            .map(|t| now.duration_since(t).as_secs() < 1)
            .unwrap_or(false)
        {
            return;
        }
        self.last_expire = Some(now);
        self.templates
            .retain(|_, t| t.active > 0 || t.expires.map(|e| e > now).unwrap_or(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, i], 1935))
    }

    fn client(i: u32) -> IpAddr {
        IpAddr::from([198, 19, (i >> 8) as u8, i as u8])
    }

    fn sched(algo: Algo, weights: &[u32]) -> Scheduler {
        let mut s = Scheduler::new(algo, None);
        let list: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (addr(i as u8 + 1), *w))
            .collect();
        s.set_backends(&list);
        s
    }

    fn counts(s: &mut Scheduler, n: u32, hold: bool) -> Vec<usize> {
        let now = Instant::now();
        let mut c = vec![0; s.backends().len()];
        for i in 0..n {
            let a = s.pick(client(i), now, &[]).unwrap();
            c[(a.ip()
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap())
                - 1] += 1;
            if hold {
                s.connected(a, client(i));
            }
        }
        c
    }

    #[test]
    fn rr_and_wrr() {
        assert_eq!(
            counts(&mut sched(Algo::Rr, &[1, 1, 1]), 300, false),
            vec![100, 100, 100]
        );
        assert_eq!(
            counts(&mut sched(Algo::Wrr, &[1, 2, 3]), 600, false),
            vec![100, 200, 300]
        );
        // Smooth: the heavy server is never picked many times in a row.
        let mut s = sched(Algo::Wrr, &[5, 1, 1]);
        let seq: Vec<_> = (0..7)
            .map(|i| s.pick(client(i), Instant::now(), &[]).unwrap())
            .collect();
        assert!(
            seq.windows(4).all(|w| w.iter().any(|a| *a != addr(1))),
            "{seq:?}"
        );
    }

    #[test]
    fn lc_and_wlc_balance_active_connections() {
        assert_eq!(
            counts(&mut sched(Algo::Lc, &[1, 1, 1]), 300, true),
            vec![100, 100, 100]
        );
        assert_eq!(
            counts(&mut sched(Algo::Wlc, &[1, 3]), 400, true),
            vec![100, 300]
        );
    }

    #[test]
    fn sh_and_mh_are_sticky_and_weighted() {
        for algo in [Algo::Sh, Algo::Mh] {
            let mut s = sched(algo, &[1, 1, 2]);
            let c = counts(&mut s, 4000, false);
            assert!((c[2] as f64 / 4000.0 - 0.5).abs() < 0.08, "{algo:?} {c:?}");
            let now = Instant::now();
            for i in 0..100 {
                assert_eq!(s.pick(client(i), now, &[]), s.pick(client(i), now, &[]));
            }
        }
    }

    #[test]
    fn mh_agrees_across_instances() {
        let mut a = sched(Algo::Mh, &[1, 1, 1, 1]);
        let mut b = sched(Algo::Mh, &[1, 1, 1, 1]);
        let now = Instant::now();
        for i in 0..1000 {
            assert_eq!(a.pick(client(i), now, &[]), b.pick(client(i), now, &[]));
        }
    }

    #[test]
    fn down_and_quiesced_servers_get_nothing() {
        for algo in [Algo::Rr, Algo::Wrr, Algo::Lc, Algo::Wlc, Algo::Sh, Algo::Mh] {
            let mut s = sched(algo, &[1, 1, 1]);
            s.set_up(addr(1), false);
            s.set_weight(addr(2), 0);
            let c = counts(&mut s, 200, false);
            assert_eq!(c, vec![0, 0, 200], "{algo:?}");
            s.set_up(addr(3), false);
            assert_eq!(s.pick(client(1), Instant::now(), &[]), None, "{algo:?}");
            assert!(!s.any_available());
        }
    }

    #[test]
    fn exclude_skips_a_failed_server() {
        for algo in [Algo::Rr, Algo::Wrr, Algo::Lc, Algo::Wlc, Algo::Sh, Algo::Mh] {
            let mut s = sched(algo, &[1, 1]);
            let first = s.pick(client(7), Instant::now(), &[]).unwrap();
            let second = s.pick(client(7), Instant::now(), &[first]).unwrap();
            assert_ne!(first, second, "{algo:?}");
        }
    }

    #[test]
    fn persistence_holds_then_expires() {
        let p = Persistence {
            timeout: Duration::from_secs(50),
            prefix_v4: 24,
            prefix_v6: 128,
        };
        let mut s = Scheduler::new(Algo::Rr, Some(p));
        s.set_backends(&[(addr(1), 1), (addr(2), 1)]);
        let t0 = Instant::now();
        let c = client(5);
        let first = s.pick(c, t0, &[]).unwrap();
        s.connected(first, c);
        // Same /24, while connected and within the timeout after the close: same server.
        let neighbour = IpAddr::from([198, 19, 0, 99]);
        assert_eq!(s.pick(neighbour, t0, &[]), Some(first));
        s.closed(first, c, t0 + Duration::from_secs(10));
        assert_eq!(s.pick(c, t0 + Duration::from_secs(59), &[]), Some(first));
        // After the timeout the template is gone: rr moves on.
        let later = t0 + Duration::from_secs(61);
        let next = s.pick(c, later, &[]).unwrap();
        assert_ne!(next, first);
        // A down server breaks persistence at once.
        s.connected(next, c);
        s.set_up(next, false);
        assert_eq!(s.pick(c, later, &[]), Some(first));
    }
}
