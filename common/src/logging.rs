//! Tracing setup shared by the binaries: `RUST_LOG` wins, otherwise the config's level
//! (`info` until a config is loaded), which a reload may change.

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn env_filter() -> Option<EnvFilter> {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
}

/// Installs a stderr `fmt` subscriber. Safe to call more than once (later calls are no-ops),
/// so tests may call it freely.
pub fn init() {
    let from_env = env_filter();
    let pinned = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new("info")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person at a terminal, not in journald or a log file.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .is_ok();
    if installed && !pinned {
        let _ = LEVEL.set(handle);
    }
}

/// Whether `level` is a valid filter directive (`info`, `debug`, `edge=debug,warn`).
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("{level:?} is not a log level or filter ({e})"))
}

/// Applies the config's `log_level`. Returns false when it is not applied: `RUST_LOG` is set
/// (and wins), or logging was not set up by [`init`].
pub fn set_level(level: &str) -> bool {
    match (LEVEL.get(), EnvFilter::try_new(level)) {
        (Some(h), Ok(f)) => h.reload(f).is_ok(),
        _ => false,
    }
}

/// For tests: the same filter, written through libtest's capture, so a passing test's logs
/// stay out of the run's output and a failing test's logs are shown with it.
pub fn init_for_tests() {
    let filter = env_filter().unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
