//! The command line of `lb`, here rather than in `main.rs` so that `cargo xtask dist` renders
//! the man page (clap_mangen) from the same definitions that parse the arguments.

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// The clap command of `lb` (for the man page and shell completions).
pub fn cli() -> clap::Command {
    Cli::command()
}

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "EdgeFleet balancer",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The TOML config (see lb/examples/ and README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Validate the config and exit.
    #[arg(long)]
    pub check: bool,
    /// Worker threads (default: one per core). 1 runs every task on the main thread
    /// (tokio's current-thread scheduler: no work-stealing queues, no cross-thread wake-ups).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the running lb's admin API is, and the token to send.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The running lb's admin_listen address.
    #[arg(long)]
    pub admin: Option<String>,
    /// Read admin_listen (and admin_token_file) from this config instead.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Send the admin token read from this file (default: EDGEFLEET_LB_ADMIN_TOKEN,
    /// then the config's admin_token_file).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// One real server of one virtual server.
#[derive(clap::Args)]
pub struct Target {
    /// The virtual server, as in the config's address.
    #[arg(long, value_name = "VIP:PORT")]
    pub vs: std::net::SocketAddr,
    /// The real server.
    #[arg(long, value_name = "IP:PORT")]
    pub rs: std::net::SocketAddr,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the lb TOML equivalent of a keepalived.conf.
    ///
    /// Includes are followed. What cannot be carried over becomes a
    /// `# keepalived: KEYWORD: why` comment; exit 64 on a malformed file (each problem with
    /// its file:line).
    ImportKeepalived {
        /// The keepalived.conf.
        file: PathBuf,
        /// Exit 2 (after printing) if anything was left out.
        #[arg(long)]
        strict: bool,
    },
    /// Show virtual servers and real servers of a running lb.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drain a real server: no new connections, established ones stay. Lasts until
    /// `lb enable` (or `lb weight`) and through reloads, not through a restart: for that,
    /// set `weight = 0` in the config.
    Drain {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// End a drain and any `lb weight`: back to the configured weight.
    Enable {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a real server's weight (ends a drain) until `lb enable` or a reload that changes
    /// its configured weight.
    Weight {
        #[command(flatten)]
        target: Target,
        /// The weight, 0..=65535.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=65535))]
        value: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
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
