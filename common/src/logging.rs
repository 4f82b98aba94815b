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

/// For tests: the same filter, written through libtest's capture, so a passing test's logs
/// stay out of the run's output and a failing test's logs are shown with it.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
