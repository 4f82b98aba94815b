//! The command line of `edge`, here rather than in `main.rs` so that `cargo xtask dist`
//! renders the man page (clap_mangen) from the same definitions that parse the arguments.

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// The clap command of `edge` (for the man page and shell completions).
pub fn cli() -> clap::Command {
    Cli::command()
}

/// EdgeFleet RTMP server: origin (mode = "local") or pull edge (mode = "remote").
#[derive(Parser)]
#[command(name = "edge", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The TOML config (see edge/examples/ and README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Validate the config and exit: 0 if valid, else one line per problem.
    #[arg(long)]
    pub check: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the streams of a running edge (its [api] listener): viewers, source, bitrate.
    Status {
        /// The running edge's [api] listen address.
        #[arg(long)]
        api: Option<String>,
        /// Read [api] listen from this config instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the raw JSON of /api/v1/streams.
        #[arg(long)]
        json: bool,
    },
    /// Publish an FLV file in real time (like ffmpeg -re -i FILE -c copy -f flv URL).
    Publish {
        file: PathBuf,
        url: String,
        /// Loop the file forever.
        #[arg(long = "loop")]
        looped: bool,
    },
    /// Play a stream with one or many clients and print a summary.
    Play {
        url: String,
        /// Number of simultaneous clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Seconds to play (after the ramp).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds over which clients connect (default: clients / 500).
        #[arg(long)]
        ramp: Option<f64>,
        /// Print the summary as one JSON line on stdout (text goes to stderr).
        #[arg(long)]
        json: bool,
        /// Write one JSON line per client to FILE when the run ends: when it stopped, why,
        /// frames and bytes received, its longest media gap and its gaps over 200 ms.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// HLS load generator (rate) or LL-HLS latency probe (live) against URL.m3u8.
    HlsLoad {
        url: String,
        /// Keep-alive connections (rate) or players (live).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// rate: GET playlist + newest segment in a loop; live: LL-HLS blocking reloads
        /// part by part, with latency by timestamps.
        #[arg(long, value_enum, default_value_t = HlsMode::Rate)]
        mode: HlsMode,
        /// live: Unix time (ms) at which the publisher started at timestamp 0.
        #[arg(long)]
        publisher_start_unix_ms: Option<i64>,
        /// Print the summary as one JSON line on stdout (text goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Make this host a real server behind lb_kind = "DR": the VIP /32 on lo,
    /// arp_ignore=1 and arp_announce=2 on all and lo (needs root; idempotent).
    DrSetup {
        /// The virtual server's address (IPv4).
        #[arg(long)]
        vip: std::net::Ipv4Addr,
        /// Remove the address and set the sysctls back to 0.
        #[arg(long)]
        undo: bool,
    },
    /// Print a signed play token for a stream ([play] token_keys), for ?token= on its URLs.
    ///
    /// Signs with the last key of play.token_keys in --config (rotate by appending the new
    /// key, reloading every edge, then signing with it), or with $EDGEFLEET_TOKEN_KEY.
    Token {
        /// The stream, APP/STREAM (e.g. live/cam).
        stream: String,
        /// The config whose [play] token_keys holds the key.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Seconds from now until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Only clients in this network (CIDR or address) may use it.
        #[arg(long)]
        net: Option<String>,
    },
    /// Print the edge TOML equivalent of an srs.conf.
    ///
    /// Includes are followed. What cannot be carried over becomes a `# srs: DIRECTIVE: why`
    /// comment; exit 64 on a malformed file (each problem with its file:line).
    ImportSrs {
        /// The srs.conf.
        file: PathBuf,
        /// Exit 2 (after printing) if anything was left out.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum HlsMode {
    Rate,
    Live,
}

#[cfg(test)]
mod tests {
    /// clap's own check of the definitions (conflicting names, bad defaults), which parsing
    /// alone only trips over on the path that uses them.
    #[test]
    fn command_line_is_well_formed() {
        super::cli().debug_assert();
    }
}
