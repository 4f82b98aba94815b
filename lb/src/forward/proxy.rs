//! `lb_kind = "PROXY"`: the userspace full proxy ([`crate::proxy`]) as a forwarding method.

use crate::state::VsRuntime;
use std::sync::Arc;
use tokio::task::AbortHandle;

pub struct ProxyForward {
    accept: AbortHandle,
}

impl ProxyForward {
    /// Binds the virtual address and starts accepting.
    pub async fn start(vs: Arc<VsRuntime>) -> std::io::Result<ProxyForward> {
        Ok(ProxyForward {
            accept: crate::proxy::listen(vs).await?,
        })
    }

    pub fn stop(&self) {
        self.accept.abort();
    }
}
