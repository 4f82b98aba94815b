//! What an instance tracks, and the priority it makes: `track_interface`, the virtual
//! servers' health (`track_virtual_servers`) and keepalived's `vrrp_script`s
//! (`track_script`).
//!
//! - [`ScriptTracker`]: sans-I/O rise/fall counting of one script, with its next run time
//!   (`poll_timeout`), fed each run's result with `now`. A script starts OK (keepalived
//!   without `init_fail`); `fall` failed runs in a row make it failed, `rise` successful runs
//!   in a row make it OK again.
//! - [`run_script`]: the thin task around it, which runs the command (`crate::script`) and
//!   publishes the state in a [`ScriptStatus`] the instance reads each tick.
//! - [`effective`]: base priority + weights -> (fault reason, priority), keepalived's rule: a
//!   failing script with weight 0 faults the instance, a failing one with a negative weight
//!   lowers the priority by it, a succeeding one with a positive weight raises it by it; the
//!   result is kept within 1..=254 (an owner at 255 is not moved by weights).

use crate::config::TrackScript;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Rise/fall state of one script.
#[derive(Debug, Clone)]
pub struct ScriptTracker {
    ok: bool,
    /// Consecutive runs that disagree with `ok`.
    against: u32,
    rise: u32,
    fall: u32,
    interval: Duration,
    next: Instant,
}

impl ScriptTracker {
    /// OK, first run due at `now`.
    pub fn new(rise: u32, fall: u32, interval: Duration, now: Instant) -> ScriptTracker {
        ScriptTracker {
            ok: true,
            against: 0,
            rise: rise.max(1),
            fall: fall.max(1),
            interval,
            next: now,
        }
    }

    pub fn ok(&self) -> bool {
        self.ok
    }

    /// When the next run is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// A run that started at `started` ended with `success`; returns the new state when it
    /// flipped. The next run is due an interval after this one started (a slow run delays
    /// the next one rather than bunching them up).
    pub fn handle_result(&mut self, success: bool, started: Instant, now: Instant) -> Option<bool> {
        self.next = (started + self.interval).max(now);
        if success == self.ok {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let need = if self.ok { self.fall } else { self.rise };
        if self.against >= need {
            self.ok = success;
            self.against = 0;
            Some(self.ok)
        } else {
            None
        }
    }
}

/// A script's state as the instance, `lb status` and /metrics read it.
#[derive(Debug)]
pub struct ScriptStatus {
    pub name: String,
    pub weight: i32,
    pub inner: Mutex<ScriptInner>,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptInner {
    pub ok: bool,
    /// How the last run ended ("exited with 1", "timed out ...").
    pub last: String,
    pub runs: u64,
    pub failures: u64,
    pub flips: u64,
}

impl ScriptStatus {
    pub fn new(t: &TrackScript) -> ScriptStatus {
        ScriptStatus {
            name: t.script.name.clone(),
            weight: t.weight,
            inner: Mutex::new(ScriptInner {
                ok: true,
                ..ScriptInner::default()
            }),
        }
    }

    pub fn ok(&self) -> bool {
        self.inner.lock().unwrap().ok
    }

    pub fn snapshot(&self) -> ScriptInner {
        self.inner.lock().unwrap().clone()
    }
}

/// Runs `t` every interval for as long as the task lives, feeding a [`ScriptTracker`].
/// Logs only flips (with the reason), as the health checks do.
pub async fn run_script(t: TrackScript, status: Arc<ScriptStatus>) {
    let s = &t.script;
    let mut tr = ScriptTracker::new(s.rise, s.fall, s.interval, Instant::now());
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(tr.poll_timeout())).await;
        let started = Instant::now();
        let exit = crate::script::run(&s.argv, s.timeout).await;
        let success = exit.success();
        let flip = tr.handle_result(success, started, Instant::now());
        let mut st = status.inner.lock().unwrap();
        st.runs += 1;
        if !success {
            st.failures += 1;
        }
        st.last = exit.to_string();
        st.ok = tr.ok();
        match flip {
            Some(true) => {
                st.flips += 1;
                info!(script = %s.name, "vrrp_script OK again");
            }
            Some(false) => {
                st.flips += 1;
                warn!(script = %s.name, command = %s.script, reason = %exit, "vrrp_script failed");
            }
            None => {}
        }
    }
}

/// One tracked script's state and weight, for [`effective`].
#[derive(Debug, Clone, Copy)]
pub struct ScriptInput<'a> {
    pub name: &'a str,
    pub ok: bool,
    pub weight: i32,
}

/// The instance's fault (why) and priority from its base priority and what it tracks:
/// `fault` from the interfaces, `vs_down` (`Some(track_weight)` when the tracked virtual
/// servers have no real server up) and the scripts. See the module docs.
pub fn effective(
    base: u8,
    mut fault: Option<String>,
    vs_down: Option<i32>,
    scripts: &[ScriptInput],
) -> (Option<String>, u8) {
    let mut delta: i32 = 0;
    let mut weighted = false;
    if let Some(w) = vs_down {
        if w == 0 {
            fault.get_or_insert_with(|| {
                "no real server of the tracked virtual servers is up".into()
            });
        } else {
            delta += w;
            weighted = true;
        }
    }
    for s in scripts {
        match (s.ok, s.weight) {
            (false, 0) => {
                fault.get_or_insert_with(|| format!("vrrp_script {} is failing", s.name));
            }
            (false, w) if w < 0 => {
                delta += w;
                weighted = true;
            }
            (true, w) if w > 0 => {
                delta += w;
                weighted = true;
            }
            _ => {}
        }
    }
    let priority = if weighted && base != 255 {
        (base as i32 + delta).clamp(1, 254) as u8
    } else {
        base
    };
    (fault, priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_fail_rise_successes_recover_on_simulated_time() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(2);
        let mut t = ScriptTracker::new(3, 2, iv, t0);
        assert!(t.ok());
        assert_eq!(t.poll_timeout(), t0, "first run at once");
        let mut now = t0;
        let mut run = |t: &mut ScriptTracker, ok: bool| {
            let started = t.poll_timeout();
            now = started + Duration::from_millis(10);
            t.handle_result(ok, started, now)
        };
        assert_eq!(run(&mut t, false), None, "one failure of fall 2");
        assert_eq!(run(&mut t, true), None, "a success resets the count");
        assert_eq!(run(&mut t, false), None);
        assert_eq!(run(&mut t, false), Some(false), "fall = 2 in a row");
        assert!(!t.ok());
        assert_eq!(run(&mut t, false), None, "a flip is reported once");
        assert_eq!(run(&mut t, true), None);
        assert_eq!(run(&mut t, true), None);
        assert_eq!(run(&mut t, true), Some(true), "rise = 3 in a row");
        // Runs every interval from their start: 8 runs from t0.
        assert_eq!(t.poll_timeout(), t0 + iv * 8);
        // A run slower than the interval: the next is due at once, not in a burst.
        let started = t.poll_timeout();
        let late = started + Duration::from_secs(5);
        t.handle_result(true, started, late);
        assert_eq!(t.poll_timeout(), late);
    }

    fn s(name: &str, ok: bool, weight: i32) -> ScriptInput<'_> {
        ScriptInput { name, ok, weight }
    }

    #[test]
    fn weights_as_keepalived() {
        assert_eq!(
            effective(100, None, None, &[s("a", true, -30)]),
            (None, 100)
        );
        assert_eq!(
            effective(100, None, None, &[s("a", false, -30)]),
            (None, 70)
        );
        assert_eq!(effective(100, None, None, &[s("a", true, 20)]), (None, 120));
        assert_eq!(
            effective(100, None, None, &[s("a", false, 20)]),
            (None, 100)
        );
        let (f, p) = effective(100, None, None, &[s("chk", false, 0)]);
        assert_eq!((f.as_deref(), p), (Some("vrrp_script chk is failing"), 100));
        assert_eq!(
            effective(100, None, None, &[s("chk", true, 0)]),
            (None, 100)
        );
        // Sums, clamped to 1..=254.
        assert_eq!(
            effective(
                100,
                None,
                Some(-50),
                &[s("a", false, -60), s("b", true, 10)]
            ),
            (None, 1)
        );
        assert_eq!(effective(250, None, None, &[s("a", true, 10)]), (None, 254));
        // The owner keeps 255.
        assert_eq!(
            effective(255, None, None, &[s("a", false, -10)]),
            (None, 255)
        );
        // An interface fault is kept as the reason.
        let (f, _) = effective(100, Some("interface eth0 is down".into()), Some(0), &[]);
        assert_eq!(f.as_deref(), Some("interface eth0 is down"));
    }
}
