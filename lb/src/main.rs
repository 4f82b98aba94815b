//! `lb`: the EdgeFleet balancer (virtual servers, health checks, VRRP). Argument parsing only
//! until its issue lands.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lb", version, about = "EdgeFleet balancer")]
struct Cli {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("lb: not implemented yet");
    ExitCode::from(70)
}
