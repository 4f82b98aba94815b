//! A real etcd (Debian's etcd-server) on loopback ports for the registry tests and
//! benchmark: its own data directory, killed and removed when dropped (even on a failure).

use crate::{free_port, TempDir};
use edge::registry::etcd::Etcd as EtcdClient;
use edge::EdgeConfig;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

pub const PREFIX: &str = "/edgefleet/streams/";

/// An etcd on loopback with its own data directory; killed and removed when dropped.
pub struct Etcd {
    child: Option<Child>,
    port: u16,
    peer: u16,
    dir: TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let mut e = Etcd {
            child: None,
            port: free_port(),
            peer: free_port(),
            dir: TempDir::new("etcd"),
        };
        e.spawn();
        e
    }

    pub fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(self.dir.0.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--initial-advertise-peer-urls", &peer])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(vec![self.endpoint()], Duration::from_secs(2))
    }

    /// Waits (bounded) until etcd answers a range.
    pub async fn ready(&self) {
        let c = self.client();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match c.range_prefix(b"/").await {
                Ok(_) => return,
                Err(e) if Instant::now() > end => panic!(
                    "etcd did not answer within 20 s: {e}\n{}",
                    std::fs::read_to_string(self.dir.0.join("etcd.log")).unwrap_or_default()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `[cluster]` of a server using this etcd.
    pub fn cluster(&self, lease_ttl: u64) -> edge::config::ClusterConfig {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n[cluster]\nregistry = [\"http://{}\"]\nlease_ttl = {lease_ttl}\n",
            self.endpoint()
        );
        EdgeConfig::parse(&toml).unwrap().cluster.unwrap()
    }

    /// The nodes that registered stream `key`.
    pub async fn registered(&self, key: &str) -> Vec<String> {
        let prefix = format!("{PREFIX}{key}/");
        match self.client().range_prefix(prefix.as_bytes()).await {
            Ok(kvs) => kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits (bounded) until `key` has `n` registrations.
    pub async fn wait_registered(&self, key: &str, n: usize) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if self.registered(key).await.len() == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
