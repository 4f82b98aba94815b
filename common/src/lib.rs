//! Pieces shared by the `edge` and `lb` binaries.
//!
//! - [`rtmp`]: the RTMP wire layer (chunk codec, handshake, commands) and an async client used
//!   by the edge's upstream pull, its `publish`/`play` tools and the balancer's `rtmp_check`.
//! - [`confblock`]: the keepalived / nginx block syntax the importers read.
//! - [`config`]: the error type every config validator returns (one line per problem, naming
//!   the key path) and parsers for the address forms both configs use.
//! - [`http`]: the command-line tools' HTTP client.
//! - [`shutdown`]: the one shutdown signal passed explicitly to every task.
//! - [`logging`]: tracing setup shared by both binaries.
//! - [`redact`]: secrets (query values) masked before they are logged.
//! - [`tomlout`]: the TOML the importers print (values by the toml crate, with comments).
//! - [`rlimit`]: raising the open-files limit at start.
//! - [`query`]: URL query strings (`?key=...&token=...`), read one way everywhere.
#![forbid(unsafe_code)]

pub mod confblock;
pub mod config;
pub mod http;
pub mod logging;
pub mod nets;
pub mod proxy_protocol;
pub mod query;
pub mod redact;
pub mod rlimit;
pub mod rtmp;
pub mod sd_notify;
pub mod shutdown;
pub mod signals;
pub mod tomlout;
