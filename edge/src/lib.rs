//! EdgeFleet's RTMP server: an origin (`mode = "local"`) that takes publishers, or an edge
//! (`mode = "remote"`) that pulls each stream from an origin on its first player's demand and
//! fans it out.
//!
//! Layout:
//! - [`config`]: the SRS-style TOML, validated with one error per problem; [`reload`]: the
//!   plan of a reload (what changed, when it applies), computed without I/O.
//! - [`state`]: the running server's state (config in force, hub, slots, counters), at the
//!   bottom; [`guard`]: admission rules (slots, key failures, not-found memory, origin probes).
//! - [`hub`]: streams, sources, GOP cache and the shared fan-out ring (no sockets), media
//!   frames protocol-neutral.
//! - [`output`]: the delivery loop every player shares (lag policy, stalls, writev) and the
//!   per-protocol encodings of a frame (RTMP chunks, FLV tags), each made once per stream.
//! - [`session`]: the accept loop and one RTMP client connection (publisher, player, or a
//!   publish forwarded to the origin).
//! - [`upstream`]: the edge's pull from origins (failover, not-found answers, fast resume,
//!   idle stop); it reads [`state`] and feeds [`hub`], and imports nothing from [`session`].
//! - [`registry`]: the stream registry in etcd (`[cluster]`): an origin registers what is
//!   published to it under a lease; pulls look up and watch where a stream is.
//! - [`hls`]: HLS / LL-HLS packaging of one stream (fMP4 segments and parts, playlist), no I/O.
//! - [`http`]: HTTP-FLV and HLS / LL-HLS for browsers (`[http] listen`).
//! - [`api`]: the HTTP API (SRS-shaped JSON of streams and clients, kicks, /metrics).
//! - [`cli`]: the command line (clap), shared by `main.rs` and the man page.
//! - [`tools`]: `edge publish` (an FLV in real time) and `edge play` (player/load generator).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod guard;
pub mod hls;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod import;
pub mod output;
pub mod registry;
pub mod reload;
pub mod session;
pub mod state;
pub mod token;
pub mod tools;
pub mod upstream;

pub use config::{EdgeConfig, Mode};
pub use session::{EdgeHandle, EdgeServer};
