//! Tracing setup shared by the binaries: `RUST_LOG` wins, otherwise `info`.

use tracing_subscriber::EnvFilter;

/// Installs a stderr `fmt` subscriber. Safe to call more than once (later calls are no-ops),
/// so tests may call it freely.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
