//! The VRRP state machine of one instance (RFC 5798 section 6.4, RFC 3768), sans-I/O: the
//! driver feeds it adverts, timer expiries and health changes with the current time, and
//! executes the [`Action`]s it returns. It never reads a clock, so tests run on simulated
//! time.
//!
//! LIFECYCLE
//! - Init --start--> Master when `state = MASTER` (keepalived's behaviour) or priority 255;
//!   otherwise Backup with Master_Down_Timer = 3 x Master_Adver_Interval + Skew.
//! - Backup --Master_Down_Timer--> Master: advertise, add the VIPs, gratuitous ARP.
//! - Backup --advert(prio 0)--> Master_Down_Timer = Skew (fast takeover after a clean stop).
//! - Backup --advert(prio >= ours, or any prio while not preempting)--> stay; v3 adopts the
//!   master's interval; timer reset. Lower priority while preempting: ignored (we take over
//!   when the timer fires). Preemption waits `preempt_delay` after start; `nopreempt` never.
//! - Master --Adver_Timer--> advertise. --advert(prio 0)--> advertise at once.
//!   --advert(higher prio, or equal prio from a higher address)--> Backup: remove the VIPs.
//! - any --fault--> Fault (a master first advertises priority 0 and removes the VIPs);
//!   Fault --fault cleared--> Backup.
//! - Master --shutdown--> advertise priority 0, remove the VIPs.
//! - Sync group hold (`set_hold(true)`: another member of our `vrrp_sync_group` is BACKUP to a
//!   live master): Master --> Backup (the group follows the member that lost); a held Backup
//!   whose Master_Down_Timer fires re-arms it instead of taking over. Group FAULT comes in
//!   through `set_fault` like any other fault.

use super::packet::Advert;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    Send(u8),
    AddVips,
    RemoveVips,
    /// Announce the VIPs with gratuitous ARP (per garp_master_delay/repeat).
    Garp,
    /// The state changed (notify scripts, logs, metrics).
    Transition {
        from: State,
        to: State,
    },
}

#[derive(Debug, Clone)]
pub struct Params {
    pub version: u8,
    pub priority: u8,
    pub advert_int: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub start_as_master: bool,
    /// Our address in adverts (ties between equal priorities go to the higher address).
    pub primary_ip: IpAddr,
}

pub struct Machine {
    p: Params,
    state: State,
    priority: u8,
    master_adver: Duration,
    adver_at: Option<Instant>,
    down_at: Option<Instant>,
    started: Option<Instant>,
    master_ip: Option<IpAddr>,
    faulted: bool,
    held: bool,
}

impl Machine {
    pub fn new(p: Params) -> Machine {
        let priority = p.priority;
        let master_adver = p.advert_int;
        Machine {
            p,
            state: State::Init,
            priority,
            master_adver,
            adver_at: None,
            down_at: None,
            started: None,
            master_ip: None,
            faulted: false,
            held: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The master as far as we know (ourselves when master).
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.p.primary_ip),
            State::Backup => self.master_ip,
            _ => None,
        }
    }

    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver
    }

    fn skew(&self) -> Duration {
        let k = (256 - self.priority as u32) as f64 / 256.0;
        if self.p.version == 3 {
            self.master_adver.mul_f64(k)
        } else {
            Duration::from_secs_f64(k)
        }
    }

    pub fn master_down_interval(&self) -> Duration {
        self.master_adver * 3 + self.skew()
    }

    /// The next instant [`Machine::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.adver_at,
            State::Backup => self.down_at,
            _ => None,
        }
    }

    fn go(&mut self, to: State, acts: &mut Vec<Action>) {
        let from = self.state;
        if from != to {
            self.state = to;
            acts.push(Action::Transition { from, to });
        }
    }

    fn become_master(&mut self, now: Instant, acts: &mut Vec<Action>) {
        acts.push(Action::Send(self.priority));
        acts.push(Action::AddVips);
        acts.push(Action::Garp);
        self.adver_at = Some(now + self.p.advert_int);
        self.down_at = None;
        self.master_ip = None;
        self.go(State::Master, acts);
    }

    fn become_backup(&mut self, now: Instant, acts: &mut Vec<Action>) {
        if self.state == State::Master {
            acts.push(Action::RemoveVips);
        }
        self.adver_at = None;
        self.down_at = Some(now + self.master_down_interval());
        self.go(State::Backup, acts);
    }

    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        self.started = Some(now);
        if self.faulted {
            self.go(State::Fault, &mut acts);
        } else if self.p.start_as_master || self.priority == 255 {
            self.become_master(now, &mut acts);
        } else {
            self.master_adver = self.p.advert_int;
            self.become_backup(now, &mut acts);
        }
        acts
    }

    fn preempting(&self, now: Instant) -> bool {
        self.p.preempt
            && self
                .started
                .map(|s| now.duration_since(s) >= self.p.preempt_delay)
                .unwrap_or(true)
    }

    pub fn handle_advert(&mut self, adv: &Advert, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    self.down_at = Some(now + self.skew());
                } else if !self.preempting(now) || adv.priority >= self.priority {
                    if self.p.version == 3 && adv.interval_cs > 0 {
                        self.master_adver = Duration::from_millis(adv.interval_cs as u64 * 10);
                    }
                    self.master_ip = Some(adv.src);
                    self.down_at = Some(now + self.master_down_interval());
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    acts.push(Action::Send(self.priority));
                    self.adver_at = Some(now + self.p.advert_int);
                } else if adv.priority > self.priority
                    || (adv.priority == self.priority && adv.src > self.p.primary_ip)
                {
                    if self.p.version == 3 && adv.interval_cs > 0 {
                        self.master_adver = Duration::from_millis(adv.interval_cs as u64 * 10);
                    }
                    self.master_ip = Some(adv.src);
                    self.become_backup(now, &mut acts);
                }
            }
            State::Init | State::Fault => {}
        }
        acts
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        match self.state {
            State::Backup if self.down_at.is_some_and(|t| now >= t) => {
                if self.held {
                    // The sync group waits for its other members' master to go.
                    self.master_ip = None;
                    self.down_at = Some(now + self.master_down_interval());
                } else {
                    self.become_master(now, &mut acts);
                }
            }
            State::Master if self.adver_at.is_some_and(|t| now >= t) => {
                acts.push(Action::Send(self.priority));
                let next = self.adver_at.unwrap_or(now) + self.p.advert_int;
                // After a stall, do not fire a burst of catch-up adverts.
                self.adver_at = Some(if next <= now {
                    now + self.p.advert_int
                } else {
                    next
                });
            }
            _ => {}
        }
        acts
    }

    /// Tracking changed our priority (base priority plus track weights).
    pub fn set_priority(&mut self, priority: u8, now: Instant) -> Vec<Action> {
        let priority = priority.max(1);
        let mut acts = Vec::new();
        if priority != self.priority {
            self.priority = priority;
            if self.state == State::Master {
                // Tell the backups at once, so a better one can preempt without waiting.
                acts.push(Action::Send(self.priority));
                self.adver_at = Some(now + self.p.advert_int);
            }
        }
        acts
    }

    pub fn set_fault(&mut self, fault: bool, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        if fault == self.faulted {
            return acts;
        }
        self.faulted = fault;
        if self.state == State::Init {
            return acts;
        }
        if fault {
            if self.state == State::Master {
                acts.push(Action::Send(0));
                acts.push(Action::RemoveVips);
            }
            self.adver_at = None;
            self.down_at = None;
            self.go(State::Fault, &mut acts);
        } else {
            self.master_adver = self.p.advert_int;
            self.become_backup(now, &mut acts);
        }
        acts
    }

    /// Whether we are BACKUP to a master whose adverts still arrive (what a sync group's
    /// other members wait on).
    pub fn sees_master(&self, now: Instant) -> bool {
        self.state == State::Backup
            && self.master_ip.is_some()
            && self.down_at.is_some_and(|t| now < t)
    }

    /// The sync group holds us back (see LIFECYCLE): a master steps down.
    pub fn set_hold(&mut self, hold: bool, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        if hold == self.held {
            return acts;
        }
        self.held = hold;
        if hold && self.state == State::Master {
            self.become_backup(now, &mut acts);
        }
        acts
    }

    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut acts = Vec::new();
        if self.state == State::Master {
            acts.push(Action::Send(0));
            acts.push(Action::RemoveVips);
        }
        self.adver_at = None;
        self.down_at = None;
        self.go(State::Init, &mut acts);
        acts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn params(prio: u8, ip: u8) -> Params {
        Params {
            version: 3,
            priority: prio,
            advert_int: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            start_as_master: false,
            primary_ip: Ipv4Addr::new(198, 18, 0, ip).into(),
        }
    }

    fn advert(prio: u8, ip: u8, interval_cs: u16) -> Advert {
        Advert {
            version: 3,
            vrid: 51,
            priority: prio,
            interval_cs,
            addrs: vec![],
            src: Ipv4Addr::new(198, 18, 0, ip).into(),
        }
    }

    /// Runs two machines against each other on simulated time, delivering adverts between
    /// them when `link` is up, for `secs` simulated seconds in 10 ms steps.
    struct Pair {
        m: [Machine; 2],
        now: Instant,
        link: bool,
        transitions: Vec<(usize, State, Instant)>,
    }

    impl Pair {
        fn new(a: Params, b: Params) -> Pair {
            let now = Instant::now();
            let mut p = Pair {
                m: [Machine::new(a), Machine::new(b)],
                now,
                link: true,
                transitions: vec![],
            };
            for i in 0..2 {
                let acts = p.m[i].start(now);
                p.apply(i, acts);
            }
            p
        }

        fn apply(&mut self, from: usize, acts: Vec<Action>) {
            for a in acts {
                match a {
                    Action::Send(prio) if self.link => {
                        let ip = match self.m[from].p.primary_ip {
                            IpAddr::V4(a) => a.octets()[3],
                            IpAddr::V6(a) => a.octets()[15],
                        };
                        let adv = advert(
                            prio,
                            ip,
                            (self.m[from].p.advert_int.as_millis() / 10) as u16,
                        );
                        let to = 1 - from;
                        let more = self.m[to].handle_advert(&adv, self.now);
                        self.apply(to, more);
                    }
                    Action::Transition { to, .. } => self.transitions.push((from, to, self.now)),
                    _ => {}
                }
            }
        }

        fn run(&mut self, secs: f64) {
            let end = self.now + Duration::from_secs_f64(secs);
            while self.now < end {
                self.now += Duration::from_millis(10);
                for i in 0..2 {
                    if self.m[i].poll_timeout().is_some_and(|t| t <= self.now) {
                        let acts = self.m[i].handle_timeout(self.now);
                        self.apply(i, acts);
                    }
                }
            }
        }

        fn states(&self) -> (State, State) {
            (self.m[0].state(), self.m[1].state())
        }
    }

    #[test]
    fn higher_priority_wins_the_election() {
        let mut p = Pair::new(params(100, 1), params(200, 2));
        p.run(5.0);
        assert_eq!(p.states(), (State::Backup, State::Master));
    }

    #[test]
    fn equal_priority_goes_to_the_higher_address() {
        // Both claim mastership at once (state = MASTER on both): the higher address stays.
        let (mut a, mut b) = (params(100, 1), params(100, 2));
        a.start_as_master = true;
        b.start_as_master = true;
        let mut p = Pair::new(a, b);
        p.run(5.0);
        assert_eq!(p.states(), (State::Backup, State::Master));
    }

    #[test]
    fn backup_takes_over_after_master_down_interval_and_master_preempts_back() {
        let mut a = params(200, 1);
        a.start_as_master = true;
        let mut p = Pair::new(a, params(100, 2));
        p.run(5.0);
        assert_eq!(p.states(), (State::Master, State::Backup));
        // Master down interval of the backup: 3 x 1 s + (256 - 100) / 256 s.
        assert_eq!(
            p.m[1].master_down_interval(),
            Duration::from_secs(3) + Duration::from_secs_f64(156.0 / 256.0)
        );
        p.link = false;
        let cut = p.now;
        p.run(5.0);
        let took = p
            .transitions
            .iter()
            .find(|t| t.0 == 1 && t.1 == State::Master)
            .unwrap()
            .2
            - cut;
        assert!(
            took <= Duration::from_millis(3620) && took >= Duration::from_millis(2600),
            "{took:?}"
        );
        p.link = true;
        p.run(3.0);
        assert_eq!(p.states(), (State::Master, State::Backup), "preempted back");
    }

    #[test]
    fn nopreempt_keeps_the_current_master() {
        let mut low = params(100, 2);
        low.start_as_master = true;
        let mut high = params(200, 1);
        high.preempt = false;
        let mut p = Pair::new(high, low);
        p.run(10.0);
        assert_eq!(p.states(), (State::Backup, State::Master));
    }

    #[test]
    fn preempt_delay_defers_preemption() {
        let mut low = params(100, 2);
        low.start_as_master = true;
        let mut high = params(200, 1);
        high.preempt_delay = Duration::from_secs(6);
        let mut p = Pair::new(high, low);
        p.run(5.0);
        assert_eq!(
            p.states(),
            (State::Backup, State::Master),
            "no preemption within the delay"
        );
        p.run(6.0);
        assert_eq!(p.states(), (State::Master, State::Backup));
    }

    #[test]
    fn priority_zero_on_shutdown_means_takeover_after_skew() {
        let mut a = params(200, 1);
        a.start_as_master = true;
        let mut p = Pair::new(a, params(100, 2));
        p.run(3.0);
        let acts = p.m[0].shutdown();
        assert_eq!(acts[0], Action::Send(0));
        assert!(acts.contains(&Action::RemoveVips));
        let stop = p.now;
        p.apply(0, acts);
        p.run(2.0);
        let took = p
            .transitions
            .iter()
            .find(|t| t.0 == 1 && t.1 == State::Master)
            .unwrap()
            .2
            - stop;
        // Skew = (256 - 100) / 256 x 1 s ~ 609 ms.
        assert!(took <= Duration::from_millis(620), "{took:?}");
    }

    #[test]
    fn v3_backup_adopts_the_masters_interval() {
        let mut m = Machine::new(params(100, 2));
        let now = Instant::now();
        m.start(now);
        m.handle_advert(&advert(200, 1, 10), now);
        assert_eq!(m.master_adver_interval(), Duration::from_millis(100));
        assert_eq!(
            m.poll_timeout(),
            Some(now + Duration::from_millis(300) + Duration::from_secs_f64(0.1 * 156.0 / 256.0))
        );
    }

    #[test]
    fn master_down_timer_tolerates_skew() {
        // Adverts arriving late by up to the skew never cause a takeover.
        let mut m = Machine::new(params(100, 2));
        let mut now = Instant::now();
        m.start(now);
        for _ in 0..50 {
            m.handle_advert(&advert(200, 1, 100), now);
            now += Duration::from_millis(3500);
            assert!(m.handle_timeout(now).is_empty());
        }
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn a_held_master_steps_down_and_a_held_backup_waits() {
        let mut p = params(200, 1);
        p.start_as_master = true;
        let mut m = Machine::new(p);
        let mut now = Instant::now();
        m.start(now);
        let acts = m.set_hold(true, now);
        assert!(acts.contains(&Action::RemoveVips), "{acts:?}");
        assert_eq!(m.state(), State::Backup);
        // No adverts: the timer fires and re-arms while held.
        for _ in 0..5 {
            now = m.poll_timeout().unwrap();
            assert!(m.handle_timeout(now).is_empty());
            assert_eq!(m.state(), State::Backup);
        }
        m.handle_advert(&advert(100, 2, 100), now);
        assert!(
            !m.sees_master(now),
            "a lower priority is ignored while preempting"
        );
        m.set_hold(false, now);
        now = m.poll_timeout().unwrap();
        m.handle_timeout(now);
        assert_eq!(m.state(), State::Master);
        // A backup to a higher priority sees its master until the adverts stop.
        let mut b = Machine::new(params(100, 2));
        b.start(now);
        b.handle_advert(&advert(200, 1, 100), now);
        assert!(b.sees_master(now));
        assert!(!b.sees_master(now + Duration::from_secs(4)));
    }

    #[test]
    fn fault_gives_up_mastership() {
        let mut p = params(200, 1);
        p.start_as_master = true;
        let mut m = Machine::new(p);
        let now = Instant::now();
        m.start(now);
        let acts = m.set_fault(true, now);
        assert_eq!(acts[0], Action::Send(0));
        assert_eq!(m.state(), State::Fault);
        assert_eq!(m.poll_timeout(), None);
        m.set_fault(false, now);
        assert_eq!(m.state(), State::Backup);
    }
}
