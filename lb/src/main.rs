//! `lb`: the EdgeFleet balancer.
//!
//! - `lb --config FILE` runs (SIGHUP reloads FILE; SIGTERM/SIGINT stop).
//! - `lb --check --config FILE` validates: exit 0, or 64 with one line per problem.
//! - `lb status [--admin ADDR | --config FILE] [--token-file FILE]` prints an
//!   `ipvsadm -Ln`-like table. The admin token comes from `--token-file`, else
//!   `EDGEFLEET_LB_ADMIN_TOKEN`, else the config's `admin_token_file`.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::BodyExt;
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
        /// Send the admin token read from this file (default: EDGEFLEET_LB_ADMIN_TOKEN,
        /// then the config's admin_token_file).
        #[arg(long)]
        token_file: Option<PathBuf>,
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
        token_file,
    }) = cli.command
    {
        let loaded = match config.as_deref().map(load).transpose() {
            Ok(c) => c,
            Err(code) => return code,
        };
        let addr = match (admin, &loaded) {
            (Some(a), _) => a,
            (None, Some(c)) => c.admin_listen.to_string(),
            (None, None) => lb::config::DEFAULT_ADMIN.to_string(),
        };
        let token = match client_token(token_file.as_deref(), loaded.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("lb status: {e}");
                return ExitCode::from(64);
            }
        };
        return rt.block_on(status(&addr, json, token));
    }
    let Some(path) = cli.config else {
        eprintln!("lb: --config FILE is required (see lb --help)");
        return ExitCode::from(64);
    };
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The admin token source belongs to the config's validity: a non-loopback admin_listen
    // without one, or a token file other users can read, is refused here and by --check.
    if let Err(e) = lb::admin::auth::load(&config) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::from(64);
    }
    // What the config needs of this host (DR: nft, real servers on this L2 segment).
    let problems = lb::forward::preflight(&config);
    for p in &problems {
        eprintln!("{}: {p}", path.display());
    }
    if !problems.is_empty() {
        return ExitCode::from(64);
    }
    if cli.check {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    rt.block_on(serve(path, config))
}

async fn serve(path: PathBuf, config: LbConfig) -> ExitCode {
    // As HAProxy does: the soft open-files limit up to the hard one, so a flood meets lb's
    // own caps (max_connections, the admin cap) instead of EMFILE at the viewers' accept.
    match common::rlimit::raise_nofile_to_hard() {
        Some((before, now)) => tracing::info!(
            before,
            now,
            "open-files limit (soft RLIMIT_NOFILE): {before} -> {now}"
        ),
        None => tracing::warn!("cannot read the open-files limit (RLIMIT_NOFILE)"),
    }
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

/// The token `lb status` sends: `--token-file`, else the environment, else the config's
/// `admin_token_file` when this user can read it (it is the server's file).
fn client_token(
    file: Option<&std::path::Path>,
    config: Option<&LbConfig>,
) -> Result<Option<lb::admin::auth::Token>, lb::admin::auth::AuthError> {
    use lb::admin::auth::{read_token_file, Token, TOKEN_ENV};
    if let Some(f) = file {
        return read_token_file(f).map(Some);
    }
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .as_deref()
        .and_then(Token::new)
    {
        return Ok(Some(t));
    }
    Ok(config
        .and_then(|c| c.admin_token_file.as_deref())
        .and_then(|f| read_token_file(f).ok()))
}

/// GET /status through hyper's client: the body, or what went wrong.
async fn fetch_status(addr: &str, token: Option<&lb::admin::auth::Token>) -> Result<Bytes, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        format!("cannot reach the admin API at {addr}: {e} (is lb running? see admin_listen)")
    })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get("/status").header(hyper::header::HOST, addr);
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, t.header_value());
    }
    let req = req
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| format!("{addr}: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let code = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?
        .to_bytes();
    if !code.is_success() {
        return Err(format!(
            "{addr} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(body)
}

async fn status(addr: &str, json: bool, token: Option<lb::admin::auth::Token>) -> ExitCode {
    let body = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        fetch_status(addr, token.as_ref()),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("lb status: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("lb status: {addr} did not answer within 5 s");
            return ExitCode::from(1);
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
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
