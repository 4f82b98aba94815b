//! Property tests of the VRRP state machine (issue 14) on simulated time: two or three
//! routers of one virtual router, random priorities, preempt settings, start times, version
//! and advert interval, a network that delivers every advert to every peer after a random
//! delay below a tenth of the advert interval, and a random schedule of faults, recoveries and
//! priority changes (what track_interface and track_script do).
//!
//! Invariants, checked at every event:
//! - two routers are never MASTER together for longer than one advert interval plus the
//!   network's largest delay (the time the lower one needs to hear the higher one);
//! - after the schedule, once the network has been quiet for the longest master-down interval:
//!   exactly one MASTER if any router is not faulted, none otherwise, and when every router
//!   preempts, it is the one with the highest (priority, address) among the non-faulted.

use lb::vrrp::machine::{Action, Machine, Params, State};
use lb::vrrp::packet::Advert;
use proptest::prelude::*;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Router {
    priority: u8,
    preempt: bool,
    start_as_master: bool,
    start_ms: u64,
}

#[derive(Debug, Clone)]
enum Change {
    Fault(bool),
    Priority(u8),
}

#[derive(Debug, Clone)]
struct Scenario {
    version: u8,
    advert_ms: u64,
    routers: Vec<Router>,
    /// (at ms, router index, change)
    changes: Vec<(u64, usize, Change)>,
    /// Delays in tenths of a percent of the advert interval's tenth, cycled.
    delays: Vec<u16>,
}

fn router() -> impl Strategy<Value = Router> {
    (
        prop_oneof![Just(100u8), Just(150), Just(254), Just(255), 1u8..=254],
        any::<bool>(),
        prop::bool::weighted(0.2),
        0u64..3000,
    )
        .prop_map(|(priority, preempt, start_as_master, start_ms)| Router {
            priority,
            preempt,
            start_as_master,
            start_ms,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(2u8), Just(3u8)],
        prop_oneof![Just(100u64), Just(1000u64), 50u64..2000],
        prop::collection::vec(router(), 2..=3),
        prop::collection::vec(
            (
                0u64..20_000,
                0usize..3,
                prop_oneof![
                    any::<bool>().prop_map(Change::Fault),
                    (1u8..=254).prop_map(Change::Priority)
                ],
            ),
            0..12,
        ),
        prop::collection::vec(0u16..1000, 1..32),
    )
        .prop_map(|(version, advert_ms, routers, changes, delays)| {
            // VRRPv2 counts the advert interval in whole seconds.
            let advert_ms = if version == 2 {
                (advert_ms / 1000).max(1) * 1000
            } else {
                advert_ms
            };
            let n = routers.len();
            Scenario {
                version,
                advert_ms,
                routers,
                changes: changes.into_iter().map(|(t, i, c)| (t, i % n, c)).collect(),
                delays,
            }
        })
}

/// Events at one instant run in the order they were scheduled (`seq`).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Deliver {
        to: usize,
        from: usize,
        priority: u8,
    },
    Start(usize),
    Change(usize),
    Timer(usize),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at_us: std::cmp::Reverse<u64>,
    seq: std::cmp::Reverse<u64>,
    kind: Kind,
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + i as u8)
}

struct Sim {
    base: Instant,
    sc: Scenario,
    m: Vec<Machine>,
    queue: BinaryHeap<Event>,
    seq: u64,
    delay_i: usize,
    max_delay_us: u64,
    /// When two or more routers became MASTER together (simulated µs), if they are now.
    both_since: Option<u64>,
    longest_overlap_us: u64,
    faulted: Vec<bool>,
}

impl Sim {
    fn new(sc: Scenario) -> Sim {
        let base = Instant::now();
        let m = sc
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Machine::new(Params {
                    version: sc.version,
                    priority: r.priority,
                    advert_int: Duration::from_millis(sc.advert_ms),
                    preempt: r.preempt,
                    preempt_delay: Duration::ZERO,
                    start_as_master: r.start_as_master,
                    primary_ip: ip(i).into(),
                })
            })
            .collect();
        let n = sc.routers.len();
        let mut s = Sim {
            base,
            max_delay_us: sc.advert_ms * 100, // a tenth of the interval, in µs
            sc,
            m,
            queue: BinaryHeap::new(),
            seq: 0,
            delay_i: 0,
            both_since: None,
            longest_overlap_us: 0,
            faulted: vec![false; n],
        };
        for i in 0..n {
            let at = s.sc.routers[i].start_ms * 1000;
            s.push(at, Kind::Start(i));
        }
        for c in 0..s.sc.changes.len() {
            let at = s.sc.changes[c].0 * 1000;
            s.push(at, Kind::Change(c));
        }
        s
    }

    fn push(&mut self, at_us: u64, kind: Kind) {
        self.seq += 1;
        self.queue.push(Event {
            at_us: std::cmp::Reverse(at_us),
            seq: std::cmp::Reverse(self.seq),
            kind,
        });
    }

    fn at(&self, us: u64) -> Instant {
        self.base + Duration::from_micros(us)
    }

    /// Rounded up, so that a timer event never runs before the machine's deadline.
    fn us(&self, t: Instant) -> u64 {
        t.duration_since(self.base).as_nanos().div_ceil(1000) as u64
    }

    fn exec(&mut self, i: usize, now_us: u64, acts: Vec<Action>) {
        for a in acts {
            if let Action::Send(priority) = a {
                for to in 0..self.m.len() {
                    if to == i {
                        continue;
                    }
                    let d = self.sc.delays[self.delay_i % self.sc.delays.len()] as u64;
                    self.delay_i += 1;
                    let delay = d * self.max_delay_us / 1000;
                    self.push(
                        now_us + delay,
                        Kind::Deliver {
                            to,
                            from: i,
                            priority,
                        },
                    );
                }
            }
        }
        if let Some(t) = self.m[i].poll_timeout() {
            let at = self.us(t).max(now_us);
            self.push(at, Kind::Timer(i));
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.m.len())
            .filter(|i| self.m[*i].state() == State::Master)
            .collect()
    }

    /// Runs until `until_us`; checks the overlap invariant after every event.
    fn run(&mut self, until_us: u64) -> Result<(), String> {
        while let Some(ev) = self.queue.peek() {
            let now_us = ev.at_us.0;
            if now_us > until_us {
                break;
            }
            let ev = self.queue.pop().unwrap();
            let now = self.at(now_us);
            match ev.kind {
                Kind::Start(i) => {
                    let acts = self.m[i].start(now);
                    self.exec(i, now_us, acts);
                }
                Kind::Timer(i) => {
                    // Stale timers (the deadline moved) are harmless: the machine ignores them.
                    if self.m[i].poll_timeout().is_some_and(|t| t <= now) {
                        let acts = self.m[i].handle_timeout(now);
                        self.exec(i, now_us, acts);
                    }
                }
                Kind::Deliver { to, from, priority } => {
                    let adv = Advert {
                        version: self.sc.version,
                        vrid: 7,
                        priority,
                        interval_cs: (self.sc.advert_ms / 10) as u16,
                        addrs: vec![Ipv4Addr::new(198, 18, 0, 100).into()],
                        src: ip(from).into(),
                    };
                    let acts = self.m[to].handle_advert(&adv, now);
                    self.exec(to, now_us, acts);
                }
                Kind::Change(c) => {
                    let (_, i, change) = self.sc.changes[c].clone();
                    let acts = match change {
                        Change::Fault(f) => {
                            self.faulted[i] = f;
                            self.m[i].set_fault(f, now)
                        }
                        Change::Priority(p) => self.m[i].set_priority(p, now),
                    };
                    self.exec(i, now_us, acts);
                }
            }
            let two = self.masters().len() >= 2;
            match (two, self.both_since) {
                (true, None) => self.both_since = Some(now_us),
                (false, Some(since)) => {
                    self.longest_overlap_us = self.longest_overlap_us.max(now_us - since);
                    self.both_since = None;
                }
                _ => {}
            }
            if let Some(since) = self.both_since {
                let limit = self.sc.advert_ms * 1000 + self.max_delay_us;
                if now_us - since > limit {
                    return Err(format!(
                        "routers {:?} were all MASTER for {} µs (limit {limit} µs) at t={now_us} µs",
                        self.masters(),
                        now_us - since
                    ));
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_two_masters_for_long_and_one_master_at_rest(sc in scenario()) {
        let last_change = sc.changes.iter().map(|c| c.0).max().unwrap_or(0);
        let last_start = sc.routers.iter().map(|r| r.start_ms).max().unwrap_or(0);
        // Quiet for longer than any master-down interval (3 intervals + skew <= 1 interval
        // or 1 s) plus a few deliveries.
        let settle_ms = last_change.max(last_start) + 5 * sc.advert_ms + 2000;
        let mut sim = Sim::new(sc.clone());
        if let Err(e) = sim.run(settle_ms * 1000) {
            return Err(TestCaseError::fail(format!("{e}\nscenario: {sc:?}")));
        }
        let masters = sim.masters();
        let live: Vec<usize> = (0..sc.routers.len()).filter(|i| !sim.faulted[*i]).collect();
        if live.is_empty() {
            prop_assert!(masters.is_empty(), "masters {:?} though all faulted: {:?}", masters, sc);
        } else {
            prop_assert_eq!(masters.len(), 1, "masters at rest: {:?}; scenario {:?}", masters, sc);
            if sc.routers.iter().all(|r| r.preempt) {
                // RFC 5798 6.4.2: a backup yields to an equal priority, so with preempt the
                // master at rest has the highest priority (the address breaks ties only
                // between masters).
                let best = live.iter().map(|i| sim.m[*i].priority()).max().unwrap();
                prop_assert_eq!(
                    sim.m[masters[0]].priority(), best,
                    "not the highest priority; scenario {:?}", sc
                );
            }
        }
    }
}
