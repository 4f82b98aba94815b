//! `lb`: the EdgeFleet balancer.
//!
//! - `lb --config FILE` runs (SIGHUP reloads FILE; SIGTERM/SIGINT stop).
//! - `lb --check --config FILE` validates: exit 0, or 64 with one line per problem.
//! - `lb status [--admin ADDR | --config FILE]` prints an `ipvsadm -Ln`-like table.

use clap::{Parser, Subcommand};
use lb::LbConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "EdgeFleet balancer",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The TOML config (see lb/examples/ and README).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show virtual servers and real servers of a running lb.
    Status {
        /// The running lb's admin_listen address.
        #[arg(long)]
        admin: Option<String>,
        /// Read admin_listen from this config instead.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &std::path::Path) -> Result<LbConfig, ExitCode> {
    LbConfig::load(path).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{}: {e}", path.display());
        }
        ExitCode::from(64)
    })
}

fn main() -> ExitCode {
    common::logging::init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lb: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Status {
        admin,
        config,
        json,
    }) = cli.command
    {
        let addr = match (admin, config) {
            (Some(a), _) => a,
            (None, Some(path)) => match load(&path) {
                Ok(c) => c.admin_listen.to_string(),
                Err(code) => return code,
            },
            (None, None) => lb::config::DEFAULT_ADMIN.to_string(),
        };
        return rt.block_on(status(&addr, json));
    }
    let Some(path) = cli.config else {
        eprintln!("lb: --config FILE is required (see lb --help)");
        return ExitCode::from(64);
    };
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cli.check {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    rt.block_on(serve(path, config))
}

async fn serve(path: PathBuf, config: LbConfig) -> ExitCode {
    let running = match lb::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lb: {e:#}");
            return ExitCode::from(1);
        }
    };
    let (trigger, shutdown) = common::shutdown::channel();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        common::signals::terminated().await;
        tracing::info!("signal received: shutting down");
        trigger.fire();
    });
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match LbConfig::load(&path) {
                Ok(c) => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading");
                    let _ = reload_tx.send(c).await;
                }
                Err(errs) => {
                    for e in &errs.0 {
                        tracing::error!(config = %path.display(), problem = %e, "reload refused: the running configuration stays");
                    }
                }
            }
        }
    });
    common::sd_notify::ready();
    lb::run(running, shutdown, reload_rx).await;
    ExitCode::SUCCESS
}

async fn status(addr: &str, json: bool) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut resp = Vec::new();
        tcp.read_to_end(&mut resp).await?;
        Ok::<_, std::io::Error>(resp)
    };
    let resp = match tokio::time::timeout(std::time::Duration::from_secs(5), fetch).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("lb status: cannot reach the admin API at {addr}: {e} (is lb running? see admin_listen)");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("lb status: {addr} did not answer within 5 s");
            return ExitCode::from(1);
        }
    };
    let text = String::from_utf8_lossy(&resp);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let value: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lb status: {addr} answered something that is not lb status JSON: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{value:#}");
    } else {
        print!("{}", lb::admin::render_table(&value));
    }
    ExitCode::SUCCESS
}
