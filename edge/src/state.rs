//! The running server's state, at the bottom of the crate: the config in force (swapped
//! whole by a reload, read lock-free by every session), the hub, connection slots, refusal
//! counters and the admission memories of [`crate::guard`]. Sessions and pulls read it;
//! nothing here does I/O.

use crate::config::EdgeConfig;
use crate::guard::{KeyGuard, NotFound, OriginGate, Refusal, Refusals, Slots};
use crate::hub::Hub;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::warn;

/// State shared by all sessions and pulls of one server.
pub struct ServerState {
    config: ArcSwap<EdgeConfig>,
    pub hub: Arc<Hub>,
    next_id: AtomicU64,
    /// Running pulls, aborted at shutdown.
    pub pulls: Mutex<Vec<tokio::task::AbortHandle>>,
    pub slots: Arc<Slots>,
    pub refusals: Refusals,
    pub key_guard: Mutex<KeyGuard>,
    pub not_found: Mutex<NotFound>,
    pub origin_gate: Mutex<OriginGate>,
}

impl ServerState {
    pub fn new(config: EdgeConfig) -> ServerState {
        ServerState {
            hub: Hub::new(config.hub_options()),
            config: ArcSwap::from_pointee(config),
            next_id: AtomicU64::new(1),
            pulls: Default::default(),
            slots: Default::default(),
            refusals: Default::default(),
            key_guard: Default::default(),
            not_found: Default::default(),
            origin_gate: Default::default(),
        }
    }

    /// The config in force now (a reload swaps it; a session reads it where it uses it).
    pub fn config(&self) -> Arc<EdgeConfig> {
        self.config.load_full()
    }

    /// Puts a validated config in force: hub bounds at once, everything else at its next use.
    pub fn set_config(&self, config: EdgeConfig) {
        self.hub.set_options(config.hub_options());
        self.config.store(Arc::new(config));
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a refusal and logs it (at most once a second per reason, with the totals).
    pub fn refuse(&self, why: Refusal, peer: std::net::SocketAddr, detail: &str) {
        let total = self.refusals.count(why);
        if self.refusals.should_log(why, Instant::now()) {
            warn!(%peer, reason = %why, total, "connection refused: {detail}");
        }
    }
}
