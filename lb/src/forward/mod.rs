//! Forwarding methods: how a virtual server moves a viewer's packets to the real server the
//! scheduler and health checks chose. One module per method, all reading the same running
//! state ([`crate::state::VsRuntime`]: scheduler, health, weights, counters):
//!
//! - [`proxy`] (`lb_kind = "PROXY"`): the userspace full proxy of [`crate::proxy`].
//! - [`dr`] (`lb_kind = "DR"`): direct routing. lb programs an nftables netdev-ingress table
//!   that rewrites MACs in the kernel; replies go from the edge straight to the viewer.
//!
//! This room owns starting and stopping a method and the host checks a method needs
//! ([`preflight`]); it does not schedule, check health or count for the other rooms.

pub mod dr;
pub mod proxy;

use crate::config::{Kind, LbConfig};
use crate::state::VsRuntime;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Dr(#[from] dr::DrError),
}

/// A running forwarding method of one virtual server.
pub enum Forwarder {
    Proxy(proxy::ProxyForward),
    Dr(dr::DrForward),
}

impl Forwarder {
    /// Starts the method `vs`'s config names.
    pub async fn start(vs: Arc<VsRuntime>) -> Result<Forwarder, ForwardError> {
        let kind = vs.cfg.read().unwrap().kind;
        Ok(match kind {
            Kind::Proxy => Forwarder::Proxy(proxy::ProxyForward::start(vs).await?),
            Kind::Dr => Forwarder::Dr(dr::DrForward::start(vs).await?),
        })
    }

    /// Stops forwarding new packets/connections. PROXY: the listener closes, connections in
    /// flight finish. DR: the kernel table is removed.
    pub fn stop(&self) {
        match self {
            Forwarder::Proxy(p) => p.stop(),
            Forwarder::Dr(d) => d.stop(),
        }
    }

    pub fn dr_stats(&self) -> Option<dr::DrStats> {
        match self {
            Forwarder::Proxy(_) => None,
            Forwarder::Dr(d) => Some(d.stats()),
        }
    }
}

/// What a config needs of this host beyond its own validity, one problem per line with its
/// key path: for DR virtual servers the `nft` binary, and every real server (and sorry
/// server) on this host's own L2 segment. `lb --check` and `lb` at start report these.
pub fn preflight(config: &LbConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, vs) in config.virtual_servers.iter().enumerate() {
        if vs.kind == Kind::Dr {
            problems.extend(
                dr::preflight(vs)
                    .into_iter()
                    .map(|p| format!("virtual_server[{i}]{p}")),
            );
        }
    }
    problems
}
