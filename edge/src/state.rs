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
    pub clients: Clients,
    pub totals: Totals,
    /// Live HTTP connections (`crate::http`).
    pub http_conns: Connections,
    /// HLS viewers per stream key, for streams being packaged (`crate::http::hls` writes it
    /// every second; the API reads it).
    pub hls_viewers: Mutex<std::collections::HashMap<String, usize>>,
    /// The stream registry (`[cluster]`): configured by the server at start and reload.
    pub registry: Arc<crate::registry::Registry>,
    /// Streams whose relay pull (an origin pulling from another origin) must give way to a
    /// publisher that arrived here (`session::publish`; `upstream` reads it).
    pub relay_yield: Mutex<std::collections::HashSet<String>>,
    /// The HLS players' `on_play` verdicts (`crate::http::hls_plays`).
    pub hls_plays: crate::http::hls_plays::HlsPlays,
    /// The merged-write clocks players wait on (`crate::output::Ticks`).
    pub ticks: crate::output::Ticks,
}

/// Server-wide counters (Prometheus totals).
#[derive(Debug, Default)]
pub struct Totals {
    pub connections: AtomicU64,
    pub pulls_started: AtomicU64,
    pub pulls_failed: AtomicU64,
    pub pulls_not_found: AtomicU64,
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
            clients: Default::default(),
            totals: Default::default(),
            http_conns: Default::default(),
            hls_viewers: Default::default(),
            hls_plays: Default::default(),
            registry: Default::default(),
            relay_yield: Default::default(),
            ticks: Default::default(),
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

impl ServerState {
    /// Whether a play of `key` here pulls it: always on an edge; on an origin with a
    /// registry, when it is published elsewhere (seeds/003's SP->SP relay). An origin with no
    /// registry, or that holds the stream, pulls nothing.
    pub fn pulls(&self, key: &str) -> bool {
        match self.config().mode {
            crate::Mode::Remote => true,
            crate::Mode::Local => self.registry.is_on() && !self.hub.has_source(key),
        }
    }

    /// Whether `peer` may play `stream` (`APP/STREAM`) with `token` (`[play] token_keys`,
    /// see `crate::token`); a refusal is counted by reason and logged (rate-limited).
    pub fn play_allowed(
        &self,
        stream: &str,
        token: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match self.config().play.check(stream, token, peer.ip(), now) {
            Ok(()) => true,
            Err(e) => {
                self.refuse(
                    Refusal::of_token(e),
                    peer,
                    &format!("play of {stream}: {}", e.describe()),
                );
                false
            }
        }
    }
}

/// What a connection is doing, for the API and the end-of-session log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Connected, not yet playing or publishing.
    Connecting,
    Play,
    Publish,
    /// The edge's own pull from an origin.
    Pull,
}

/// One connection (or pull) as the API lists it. Counters are updated by its session.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub peer: std::net::SocketAddr,
    pub started: Instant,
    pub protocol: &'static str,
    pub kind: Mutex<ClientKind>,
    pub stream: Mutex<String>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Notified to disconnect this client (`DELETE /api/v1/clients/{id}`).
    pub kick: tokio::sync::Notify,
}

impl Client {
    pub fn set(&self, kind: ClientKind, stream: &str) {
        *self.kind.lock().unwrap() = kind;
        *self.stream.lock().unwrap() = stream.to_string();
    }

    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
}

impl crate::output::fanout::Meter for Client {
    fn add_out(&self, n: u64) {
        Client::add_out(self, n)
    }
}

/// Every live client, by id. Entries leave when their [`ClientEntry`] is dropped.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<std::collections::BTreeMap<u64, Arc<Client>>>,
}

/// A client's registration, removed when dropped.
pub struct ClientEntry {
    pub client: Arc<Client>,
    state: std::sync::Weak<ServerState>,
}

impl Clients {
    pub fn list(&self) -> Vec<Arc<Client>> {
        self.map.lock().unwrap().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.map.lock().unwrap().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ServerState {
    /// Registers a connection (or pull) for the API.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        peer: std::net::SocketAddr,
        protocol: &'static str,
        kind: ClientKind,
    ) -> ClientEntry {
        let client = Arc::new(Client {
            id,
            peer,
            started: Instant::now(),
            protocol,
            kind: Mutex::new(kind),
            stream: Mutex::new(String::new()),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            kick: tokio::sync::Notify::new(),
        });
        self.clients.map.lock().unwrap().insert(id, client.clone());
        ClientEntry {
            client,
            state: Arc::downgrade(self),
        }
    }
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        if let Some(st) = self.state.upgrade() {
            st.clients.map.lock().unwrap().remove(&self.client.id);
        }
    }
}

/// HTTP connections alive (a reload that moves the listener keeps them; the server's end
/// and a drain's end close them).
#[derive(Debug, Default)]
pub struct Connections {
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Connections {
    pub fn add(&self, h: tokio::task::AbortHandle) {
        let mut t = self.tasks.lock().unwrap();
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    pub fn live(&self) -> usize {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| !h.is_finished())
            .count()
    }

    pub fn close_all(&self) {
        for h in self.tasks.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}
