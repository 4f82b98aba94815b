//! The stream registry in etcd (`[cluster] registry`, issue 13): which origin holds which
//! stream, so that an edge (or an origin asked for a stream it does not hold) pulls from the
//! right one.
//!
//! Owns: the etcd client ([`etcd`], the JSON gateway over hyper), this origin's
//! registrations and their lease, lookups and watches for pulls, and the registry's health
//! (a flip between reachable and not is logged once; errors are counted for the metrics).
//! Does not touch the hub or sessions: a publish registers through [`Registry::published`],
//! a pull asks [`Registry::lookup`] and [`Registry::watch`]. Without `[cluster]` every call
//! is a no-op and the server behaves as before (the static `origin` list alone).
//!
//! LIFECYCLE of an origin's registrations (the keeper task, one per configured registry):
//! - no lease -> grant(`lease_ttl`) -> leased; every registration is put under the lease.
//! - leased: a publish start or end wakes the keeper, which puts what is missing and deletes
//!   what ended; every `lease_ttl / 3` a keepalive. A keepalive answered with TTL 0 (the
//!   lease expired while etcd was unreachable) -> no lease (granted again, all put again).
//! - any error: health "down" (logged once), retried every 500 ms; registry errors never
//!   refuse or slow down a publish.
//! - a graceful stop revokes the lease (edges move at once); a crash leaves the keys until
//!   the lease expires.

pub mod entry;
pub mod etcd;

use crate::config::{ClusterConfig, EdgeConfig, Mode};
use entry::{Choice, Registration};
use etcd::Etcd;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::{info, warn, Instrument};

const RETRY: Duration = Duration::from_millis(500);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(2);

/// The registry as configured now.
struct Active {
    cfg: ClusterConfig,
    etcd: Etcd,
    mode: Mode,
    /// What this server registers as its RTMP address, and its node name.
    advertise: String,
    node: String,
}

/// Counters for the metrics and the API.
#[derive(Debug, Default)]
pub struct Stats {
    pub errors: AtomicU64,
    pub lookups: AtomicU64,
    /// Lookups that failed (the pull went on with the static list).
    pub fallbacks: AtomicU64,
    /// Pulls that followed a registration to another origin.
    pub moves: AtomicU64,
    /// Lookups that found a stream registered by more than one origin.
    pub splits: AtomicU64,
}

#[derive(Debug, Default)]
struct Health {
    up: Option<bool>,
    last_error: Option<String>,
}

/// What the API and metrics show of the registry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistryView {
    pub endpoints: Vec<String>,
    /// The endpoint that answered last.
    pub endpoint: String,
    /// `None` until the first request.
    pub up: Option<bool>,
    pub last_error: Option<String>,
    /// Streams this origin has registered now.
    pub registered: usize,
    pub errors: u64,
    pub lookups: u64,
    pub fallbacks: u64,
    pub moves: u64,
    pub splits: u64,
}

/// The answer of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No `[cluster]`.
    Off,
    /// Nobody (else) has registered the stream.
    Absent,
    Found(Choice),
    /// The registry did not answer (or answered nonsense): use the static list.
    Failed(String),
}

#[derive(Default)]
pub struct Registry {
    active: Mutex<Option<Arc<Active>>>,
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The keeper's lease, revoked at a stop.
    lease: Mutex<Option<i64>>,
    /// This origin's streams as they should be registered: stream key -> registration.
    desired: Mutex<BTreeMap<String, Registration>>,
    wake: Notify,
    health: Mutex<Health>,
    pub stats: Stats,
}

/// A publish's registration; dropping it deregisters the stream.
pub struct Published {
    registry: Arc<Registry>,
    key: String,
    published_ms: u64,
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut d = self.registry.desired.lock().unwrap();
        // A newer publish of the same stream (a reconnect that raced this one's end) keeps it.
        if d.get(&self.key).map(|r| r.published_ms) == Some(self.published_ms) {
            d.remove(&self.key);
        }
        drop(d);
        self.registry.wake.notify_one();
    }
}

/// A watch of one stream's registrations: the choice, updated within a round trip of each
/// change. The watching task ends when this is dropped.
pub struct Watching {
    pub rx: watch::Receiver<Option<Choice>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// Puts `config`'s `[cluster]` in force (start and reload): a new client, and on an
    /// origin a new keeper that registers every current stream under a fresh lease (the old
    /// lease is revoked, best effort). `listen` is the bound RTMP address, the default
    /// `advertise`.
    pub fn configure(self: &Arc<Self>, config: &EdgeConfig, listen: SocketAddr) {
        let old = self.active.lock().unwrap().take();
        if let Some(h) = self.keeper.lock().unwrap().take() {
            h.abort();
        }
        let lease = self.lease.lock().unwrap().take();
        if let Some(old) = old {
            tokio::spawn(async move { revoke(&old, lease).await });
        }
        *self.health.lock().unwrap() = Health::default();
        let Some(cfg) = config.cluster.clone() else {
            return;
        };
        let advertise = cfg
            .advertise
            .as_ref()
            .map(|(h, p)| format!("{h}:{p}"))
            .unwrap_or_else(|| listen.to_string());
        let node = cfg.node.clone().unwrap_or_else(|| advertise.clone());
        let active = Arc::new(Active {
            etcd: Etcd::new(cfg.registry.clone(), cfg.timeout),
            cfg,
            mode: config.mode,
            advertise,
            node,
        });
        info!(
            endpoints = ?active.cfg.registry,
            prefix = %active.cfg.prefix,
            advertise = %active.advertise,
            node = %active.node,
            "registry configured"
        );
        *self.active.lock().unwrap() = Some(active.clone());
        if active.mode == Mode::Local {
            let me = self.clone();
            let span = tracing::info_span!(parent: None, "registry");
            let task = tokio::spawn(async move { me.keep(active).await }.instrument(span));
            *self.keeper.lock().unwrap() = Some(task);
        }
    }

    /// Stops the keeper and revokes the lease (a graceful stop: edges move at once).
    pub async fn stop(&self) {
        if let Some(h) = self.keeper.lock().unwrap().take() {
            h.abort();
        }
        let active = self.active.lock().unwrap().take();
        let lease = self.lease.lock().unwrap().take();
        if let Some(a) = active {
            revoke(&a, lease).await;
        }
    }

    fn active(&self) -> Option<Arc<Active>> {
        self.active.lock().unwrap().clone()
    }

    /// Whether `[cluster]` is configured.
    pub fn is_on(&self) -> bool {
        self.active.lock().unwrap().is_some()
    }

    /// An origin's publish of `key` started: registered (in the background) until the
    /// returned guard is dropped. `None` without `[cluster]`.
    pub fn published(self: &Arc<Self>, key: &str) -> Option<Published> {
        let a = self.active()?;
        let published_ms = now_ms();
        let reg = Registration {
            origin: a.advertise.clone(),
            published_ms,
            node: a.node.clone(),
        };
        self.desired.lock().unwrap().insert(key.to_string(), reg);
        self.wake.notify_one();
        Some(Published {
            registry: self.clone(),
            key: key.to_string(),
            published_ms,
        })
    }

    fn ok(&self) {
        let mut h = self.health.lock().unwrap();
        if h.up != Some(true) {
            if h.up == Some(false) {
                info!("registry reachable again");
            }
            h.up = Some(true);
        }
    }

    fn failed(&self, what: &str, e: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock().unwrap();
        if h.up != Some(false) {
            warn!(error = %e, during = what, "registry unreachable: lookups fall back to the static origin list");
            h.up = Some(false);
        }
        h.last_error = Some(format!("{what}: {e}"));
    }

    /// Where stream `key` (`APP/STREAM`) is published, bounded by `[cluster] timeout`.
    pub async fn lookup(&self, key: &str) -> Lookup {
        let Some(a) = self.active() else {
            return Lookup::Off;
        };
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(a.cfg.timeout, resolve(&a, key)).await;
        let result = result.unwrap_or_else(|_| {
            Err(format!(
                "etcd at {}: no answer within {} ms",
                a.etcd.current(),
                a.cfg.timeout.as_millis()
            ))
        });
        match result {
            Ok((choice, bad)) => {
                self.ok();
                for b in bad {
                    warn!(stream = %key, error = %b, "registry: a registration that is not ours, ignored");
                }
                match choice {
                    Some(c) => {
                        if c.registrations > 1 {
                            self.stats.splits.fetch_add(1, Ordering::Relaxed);
                        }
                        Lookup::Found(c)
                    }
                    None => Lookup::Absent,
                }
            }
            Err(e) => {
                self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.failed("lookup", &e);
                Lookup::Failed(e)
            }
        }
    }

    /// Watches stream `key`'s registrations while a pull runs; `None` without `[cluster]`.
    pub fn watch(self: &Arc<Self>, key: &str) -> Option<Watching> {
        let a = self.active()?;
        let (tx, rx) = watch::channel(None);
        let me = self.clone();
        let key = key.to_string();
        let task = tokio::spawn(async move { me.watch_loop(a, key, tx).await }.in_current_span());
        Some(Watching {
            rx,
            task: task.abort_handle(),
        })
    }

    async fn watch_loop(&self, a: Arc<Active>, key: String, tx: watch::Sender<Option<Choice>>) {
        let prefix = entry::stream_prefix(&a.cfg.prefix, &key);
        let mut backoff = Duration::from_millis(250);
        loop {
            match a.etcd.watch_prefix(prefix.as_bytes()).await {
                Ok(mut w) => {
                    backoff = Duration::from_millis(250);
                    // Each change (and the start: what changed before the watch) reads
                    // the range again and publishes the choice when it differs.
                    loop {
                        if let Ok(Ok((c, _))) =
                            tokio::time::timeout(a.cfg.timeout, resolve(&a, &key)).await
                        {
                            self.ok();
                            tx.send_if_modified(|cur| {
                                let changed = *cur != c && c.is_some();
                                if changed {
                                    *cur = c;
                                }
                                changed
                            });
                        }
                        if let Err(e) = w.next().await {
                            self.failed("watch", &e.to_string());
                            break;
                        }
                    }
                }
                Err(e) => self.failed("watch", &e.to_string()),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(WATCH_RETRY_MAX);
        }
    }

    /// The keeper: this origin's registrations under a lease (see LIFECYCLE above).
    async fn keep(&self, a: Arc<Active>) {
        let ttl = a.cfg.lease_ttl;
        let every = (ttl / 3).max(Duration::from_millis(500));
        let mut lease: Option<i64> = None;
        // What is in etcd under the current lease: etcd key -> value.
        let mut synced: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut next_keepalive = Instant::now() + every;
        loop {
            let mut healthy = true;
            if lease.is_none() {
                match a.etcd.grant(ttl.as_secs()).await {
                    Ok(id) => {
                        lease = Some(id);
                        *self.lease.lock().unwrap() = Some(id);
                        synced.clear();
                        next_keepalive = Instant::now() + every;
                        info!(lease = id, ttl_s = ttl.as_secs(), "registry lease granted");
                    }
                    Err(e) => {
                        self.failed("lease grant", &e.to_string());
                        healthy = false;
                    }
                }
            }
            if let (Some(id), true) = (lease, healthy) {
                let want: BTreeMap<String, Vec<u8>> = self
                    .desired
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, r)| (entry::stream_key(&a.cfg.prefix, k, &a.node), r.to_json()))
                    .collect();
                for (k, v) in &want {
                    if synced.get(k) == Some(v) {
                        continue;
                    }
                    match a.etcd.put(k.as_bytes(), v, id).await {
                        Ok(()) => {
                            info!(key = %k, "stream registered");
                            synced.insert(k.clone(), v.clone());
                        }
                        Err(e) => {
                            self.failed("register", &e.to_string());
                            healthy = false;
                            break;
                        }
                    }
                }
                let gone: Vec<String> = synced
                    .keys()
                    .filter(|k| !want.contains_key(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    if !healthy {
                        break;
                    }
                    match a.etcd.delete(k.as_bytes()).await {
                        Ok(()) => {
                            info!(key = %k, "stream deregistered");
                            synced.remove(&k);
                        }
                        Err(e) => {
                            self.failed("deregister", &e.to_string());
                            healthy = false;
                        }
                    }
                }
            }
            if let (Some(id), true) = (lease, Instant::now() >= next_keepalive) {
                match a.etcd.keepalive(id).await {
                    Ok(left) if left > 0 => next_keepalive = Instant::now() + every,
                    Ok(_) => {
                        warn!(lease = id, "registry lease expired (etcd was unreachable longer than lease_ttl): registering again");
                        lease = None;
                        continue;
                    }
                    Err(e) => {
                        self.failed("lease keepalive", &e.to_string());
                        healthy = false;
                    }
                }
            }
            if healthy {
                self.ok();
            }
            let wait = if healthy {
                next_keepalive.saturating_duration_since(Instant::now())
            } else {
                RETRY
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// For the API and metrics; `None` without `[cluster]`.
    pub fn view(&self) -> Option<RegistryView> {
        let a = self.active()?;
        let h = self.health.lock().unwrap();
        Some(RegistryView {
            endpoints: a.cfg.registry.clone(),
            endpoint: a.etcd.current().to_string(),
            up: h.up,
            last_error: h.last_error.clone(),
            registered: self.desired.lock().unwrap().len(),
            errors: self.stats.errors.load(Ordering::Relaxed),
            lookups: self.stats.lookups.load(Ordering::Relaxed),
            fallbacks: self.stats.fallbacks.load(Ordering::Relaxed),
            moves: self.stats.moves.load(Ordering::Relaxed),
            splits: self.stats.splits.load(Ordering::Relaxed),
        })
    }
}

/// Reads stream `key`'s registrations and chooses one (never this server's own).
async fn resolve(a: &Active, key: &str) -> Result<(Option<Choice>, Vec<String>), String> {
    let prefix = entry::stream_prefix(&a.cfg.prefix, key);
    let kvs = a
        .etcd
        .range_prefix(prefix.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let (regs, bad) = entry::read_range(&prefix, &kvs);
    let myself: Vec<&str> = match a.mode {
        Mode::Local => vec![a.advertise.as_str(), a.node.as_str()],
        Mode::Remote => vec![],
    };
    Ok((entry::choose(&regs, &myself), bad))
}

/// Best effort at a stop or a registry change: revoking the lease removes every
/// registration under it at once (otherwise they expire with it).
async fn revoke(a: &Active, lease: Option<i64>) {
    if let Some(id) = lease {
        match a.etcd.revoke(id).await {
            Ok(()) => info!(
                lease = id,
                "registry lease revoked: this origin's streams deregistered"
            ),
            Err(e) => {
                warn!(lease = id, error = %e, "registry lease not revoked: its streams expire with it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn edge_with_registry(endpoint: &str) -> EdgeConfig {
        EdgeConfig::parse(&format!(
            "mode = \"remote\"\n[cluster]\nregistry = [\"http://{endpoint}\"]\ntimeout = 0.3\n"
        ))
        .unwrap()
    }

    /// A server that answers every request with `answer` (None: accepts and stays silent).
    async fn fake_etcd(answer: Option<&'static str>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for _ in 0..16 {
                let Ok((mut tcp, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tcp.read(&mut buf).await;
                    match answer {
                        Some(body) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = tcp.write_all(head.as_bytes()).await;
                            let _ = tcp.write_all(body.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(5)).await,
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_etcd_costs_a_lookup_its_timeout_and_no_more() {
        let ep = fake_etcd(None).await;
        let r = Arc::new(Registry::default());
        r.configure(&edge_with_registry(&ep), "127.0.0.1:1935".parse().unwrap());
        let t0 = Instant::now();
        let got = r.lookup("live/cam").await;
        let took = t0.elapsed();
        eprintln!("lookup against a silent etcd gave up after {took:?}");
        match got {
            Lookup::Failed(e) => assert!(e.contains(&ep) && e.contains("no answer"), "{e}"),
            other => panic!("{other:?}"),
        }
        let v = r.view().unwrap();
        assert_eq!((v.up, v.fallbacks), (Some(false), 1));
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_naming_what_is_wrong() {
        for (answer, says) in [
            ("hello", "not JSON"),
            (r#"{"kvs":[{"key":"%%%","value":"eA=="}]}"#, "not base64"),
            (r#"{"kvs":"nope"}"#, "kvs is not a list"),
        ] {
            let ep = fake_etcd(Some(answer)).await;
            let r = Arc::new(Registry::default());
            r.configure(&edge_with_registry(&ep), "127.0.0.1:1935".parse().unwrap());
            match r.lookup("live/cam").await {
                Lookup::Failed(e) => assert!(e.contains(&ep) && e.contains(says), "{answer}: {e}"),
                other => panic!("{answer}: {other:?}"),
            }
        }
        // A value that is not a registration: ignored (logged), the stream is not found.
        let ep = fake_etcd(Some(
            r#"{"header":{},"kvs":[{"key":"L2VkZ2VmbGVldC9zdHJlYW1zL2xpdmUvY2FtL24x","value":"Z2FyYmFnZQ=="}]}"#,
        ))
        .await;
        let r = Arc::new(Registry::default());
        r.configure(&edge_with_registry(&ep), "127.0.0.1:1935".parse().unwrap());
        assert_eq!(r.lookup("live/cam").await, Lookup::Absent);
    }
}
