//! keepalived's `vrrp_sync_group`: the instances of a group change state together. Sans-I/O:
//! each member reports, every tracking tick, its own fault, its state and whether it is
//! BACKUP to a live master; [`SyncGroup::report`] answers what the group imposes on it.
//!
//! LIFECYCLE (of the group as its members see it)
//! - a member has a fault of its own -> every other member goes FAULT too ("sync group G:
//!   VI_1 is FAULT: ..."); when no member has a fault of its own, all leave FAULT together
//!   (to BACKUP, then the election as usual).
//! - a member is BACKUP to a live master -> the others are held: a MASTER steps down to
//!   BACKUP, a BACKUP does not take over when its Master_Down_Timer fires (see
//!   `machine`'s LIFECYCLE). So when one member loses its election, the group follows it to
//!   the peer, and comes back together when it wins again.
//! - the group's own state (for its notify_* scripts and status): FAULT when any member is,
//!   MASTER when all are, BACKUP when all are BACKUP (or some BACKUP, none MASTER); while
//!   members are on their way from one to the other the previous state holds.

use super::machine::State;
use crate::config::SyncGroupConfig;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Member {
    name: String,
    fault: Option<String>,
    state: Option<State>,
    sees_master: bool,
}

/// What the group imposes on a member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// FAULT because of another member (why).
    pub fault: Option<String>,
    /// Held back: another member is BACKUP to a live master.
    pub hold: bool,
}

#[derive(Debug)]
pub struct SyncGroup {
    pub cfg: SyncGroupConfig,
    members: Vec<Member>,
    state: Option<State>,
}

/// Shared by the group's instances.
pub type GroupHandle = Arc<Mutex<SyncGroup>>;

impl SyncGroup {
    pub fn new(cfg: SyncGroupConfig) -> SyncGroup {
        SyncGroup {
            cfg,
            members: Vec::new(),
            state: None,
        }
    }

    /// The group's state (None until every member has reported).
    pub fn state(&self) -> Option<State> {
        self.state
    }

    /// A member's report; returns what the group imposes on it, and the group's new state
    /// when this report changed it (the reporter runs the group's notify scripts).
    pub fn report(
        &mut self,
        name: &str,
        own_fault: Option<String>,
        state: State,
        sees_master: bool,
    ) -> (View, Option<State>) {
        match self.members.iter_mut().find(|m| m.name == name) {
            Some(m) => {
                m.fault = own_fault;
                m.state = Some(state);
                m.sees_master = sees_master;
            }
            None => self.members.push(Member {
                name: name.to_string(),
                fault: own_fault,
                state: Some(state),
                sees_master,
            }),
        }
        let others = || self.members.iter().filter(|m| m.name != name);
        let fault = others()
            .find_map(|m| m.fault.as_ref().map(|f| (m.name.clone(), f.clone())))
            .map(|(n, f)| format!("sync group {}: {n} is FAULT: {f}", self.cfg.name));
        let hold = others().any(|m| m.state == Some(State::Backup) && m.sees_master);
        let flip = self.update_state();
        (View { fault, hold }, flip)
    }

    /// A member stopped (its instance was removed or restarts): it no longer counts.
    pub fn leave(&mut self, name: &str) {
        self.members.retain(|m| m.name != name);
    }

    fn update_state(&mut self) -> Option<State> {
        let all = self
            .cfg
            .members
            .iter()
            .map(|n| {
                self.members
                    .iter()
                    .find(|m| &m.name == n)
                    .and_then(|m| m.state)
            })
            .collect::<Option<Vec<State>>>()?;
        let next = if all.contains(&State::Fault) {
            State::Fault
        } else if all.iter().all(|s| *s == State::Master) {
            State::Master
        } else if !all.contains(&State::Master) && all.contains(&State::Backup) {
            State::Backup
        } else {
            return None;
        };
        if self.state == Some(next) {
            return None;
        }
        self.state = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::machine::{Action, Machine, Params};
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    fn cfg() -> SyncGroupConfig {
        SyncGroupConfig {
            name: "G1".into(),
            members: vec!["VI_1".into(), "VI_2".into()],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
            tracking_weight: false,
        }
    }

    #[test]
    fn one_fault_faults_the_group_and_recovery_brings_it_back() {
        let mut g = SyncGroup::new(cfg());
        assert_eq!(
            g.report("VI_1", None, State::Master, false),
            (View::default(), None)
        );
        assert_eq!(
            g.report("VI_2", None, State::Master, false).1,
            Some(State::Master)
        );
        // VI_1's script fails: VI_1 is FAULT of its own, VI_2 is told to follow.
        let (v1, flip) = g.report(
            "VI_1",
            Some("vrrp_script chk is failing".into()),
            State::Fault,
            false,
        );
        assert_eq!(v1.fault, None, "its own fault is not the group's");
        assert_eq!(flip, Some(State::Fault));
        let (v2, _) = g.report("VI_2", None, State::Master, false);
        assert_eq!(
            v2.fault.as_deref(),
            Some("sync group G1: VI_1 is FAULT: vrrp_script chk is failing")
        );
        g.report("VI_2", None, State::Fault, false);
        // Recovery: nobody has a fault of its own any more.
        assert_eq!(g.report("VI_1", None, State::Fault, false).0.fault, None);
        assert_eq!(g.report("VI_2", None, State::Fault, false).0.fault, None);
        g.report("VI_1", None, State::Backup, false);
        assert_eq!(
            g.report("VI_2", None, State::Backup, false).1,
            Some(State::Backup)
        );
        g.leave("VI_2");
        assert_eq!(g.report("VI_1", None, State::Backup, false).1, None);
    }

    /// Two members on simulated time, driven as the instance task drives them: when VI_1
    /// loses its election (a peer advertises a higher priority), VI_2 (master, no peer of
    /// its own above it) steps down and stays down while VI_1 sees its master; when the
    /// peer's adverts stop, both are masters again.
    #[test]
    fn the_group_follows_a_member_that_loses_its_election() {
        let mk = |ip| {
            Machine::new(Params {
                version: 3,
                priority: 150,
                advert_int: Duration::from_secs(1),
                preempt: true,
                preempt_delay: Duration::ZERO,
                start_as_master: true,
                primary_ip: Ipv4Addr::new(198, 18, 0, ip).into(),
            })
        };
        let mut g = SyncGroup::new(cfg());
        let mut m = [mk(1), mk(1)];
        let names = ["VI_1", "VI_2"];
        let mut now = Instant::now();
        for x in &mut m {
            x.start(now);
        }
        let peer = |prio| crate::vrrp::packet::Advert {
            version: 3,
            vrid: 1,
            priority: prio,
            interval_cs: 100,
            addrs: vec![],
            src: Ipv4Addr::new(198, 18, 0, 9).into(),
        };
        let mut removed = [false, false];
        let t0 = now;
        let peer_gone = t0 + Duration::from_secs(10);
        while now < t0 + Duration::from_secs(20) {
            now += Duration::from_millis(100);
            // A peer above VI_1 only, for the first 10 s.
            if now < peer_gone {
                let acts = m[0].handle_advert(&peer(200), now);
                removed[0] |= acts.contains(&Action::RemoveVips);
            }
            for i in 0..2 {
                if m[i].poll_timeout().is_some_and(|t| t <= now) {
                    m[i].handle_timeout(now);
                }
                let (v, _) = g.report(names[i], None, m[i].state(), m[i].sees_master(now));
                let acts = m[i].set_hold(v.hold, now);
                removed[i] |= acts.contains(&Action::RemoveVips);
            }
            if now > t0 + Duration::from_secs(1) && now < peer_gone {
                assert_eq!(
                    (m[0].state(), m[1].state()),
                    (State::Backup, State::Backup),
                    "the group followed VI_1 to the peer"
                );
            }
        }
        assert!(removed[0] && removed[1], "both gave up their addresses");
        assert_eq!((m[0].state(), m[1].state()), (State::Master, State::Master));
    }
}
