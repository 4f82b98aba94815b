//! `lb`: the EdgeFleet balancer.
//!
//! - `lb --config FILE` runs (SIGHUP reloads FILE; SIGTERM/SIGINT stop).
//! - `lb --check --config FILE` validates: exit 0, or 64 with one line per problem.
//! - `lb status [--admin ADDR | --config FILE] [--token-file FILE]` prints an
//!   `ipvsadm -Ln`-like table.
//! - `lb drain|enable --vs VIP:PORT --rs IP:PORT`, `lb weight ... --value N` (same admin
//!   options) change a real server of the running lb and print its one-line answer, or
//!   exit 1 with the reason (unknown server, 401, lb not running).
//! - `lb import-keepalived FILE [--strict]` prints the lb TOML of a keepalived.conf (what it
//!   cannot carry over as `# keepalived: ...` comments; `--strict`: exit 2 if there is any).
//!
//! The admin token comes from `--token-file`, else `EDGEFLEET_LB_ADMIN_TOKEN`, else the
//! config's `admin_token_file`.

use bytes::Bytes;
use clap::Parser;
use lb::cli::{AdminArgs, Cli, Command, Target};
use lb::LbConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// What a subcommand asks of the admin API.
struct AdminCall {
    name: &'static str,
    admin: AdminArgs,
    method: hyper::Method,
    path: String,
}

/// The admin call of a subcommand that makes one (a trait: [`Command`] lives in the library).
trait AdminCallOf {
    fn call(self) -> Option<(AdminCall, bool)>;
}

impl AdminCallOf for Command {
    fn call(self) -> Option<(AdminCall, bool)> {
        let write = |name, admin, action: &str, t: &Target, extra: String| AdminCall {
            name,
            admin,
            method: hyper::Method::POST,
            path: format!(
                "/{action}?vs={}&rs={}{extra}",
                query_value(&t.vs.to_string()),
                query_value(&t.rs.to_string())
            ),
        };
        Some(match self {
            Command::ImportKeepalived { .. } => return None,
            Command::Status { admin, json } => (
                AdminCall {
                    name: "lb status",
                    admin,
                    method: hyper::Method::GET,
                    path: "/status".into(),
                },
                json,
            ),
            Command::Drain { target, admin } => (
                write("lb drain", admin, "drain", &target, String::new()),
                false,
            ),
            Command::Enable { target, admin } => (
                write("lb enable", admin, "enable", &target, String::new()),
                false,
            ),
            Command::Weight {
                target,
                value,
                admin,
            } => (
                write(
                    "lb weight",
                    admin,
                    "weight",
                    &target,
                    format!("&value={value}"),
                ),
                false,
            ),
        })
    }
}

/// `lb import-keepalived`: the TOML on stdout, problems and skipped keywords on stderr.
fn import_keepalived(file: &std::path::Path, strict: bool) -> ExitCode {
    match lb::import::keepalived_file(file) {
        Err(errs) => {
            for e in errs {
                eprintln!("lb import-keepalived: {e}");
            }
            ExitCode::from(64)
        }
        Ok(imp) => {
            print!("{}", imp.toml);
            if strict && !imp.skipped.is_empty() {
                for s in &imp.skipped {
                    eprintln!("lb import-keepalived: not carried over: {s}");
                }
                eprintln!(
                    "lb import-keepalived: --strict: {} keyword(s) not carried over (see the # keepalived: comments)",
                    imp.skipped.len()
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
    }
}

/// An address as a query value: `:` `[` `]` percent-encoded.
fn query_value(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('[', "%5B")
        .replace(']', "%5D")
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
    if let Some(Command::ImportKeepalived { file, strict }) = &cli.command {
        return import_keepalived(file, *strict);
    }
    // One thread asked for: the current-thread scheduler, which runs every task on the
    // main thread with no work-stealing queues or cross-thread wake-ups to pay for.
    let mut builder = match cli.threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lb: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(cmd) = cli.command {
        let Some((call, json)) = cmd.call() else {
            return ExitCode::from(64);
        };
        let loaded = match call.admin.config.as_deref().map(load).transpose() {
            Ok(c) => c,
            Err(code) => return code,
        };
        let addr = match (&call.admin.admin, &loaded) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => c.admin_listen.to_string(),
            (None, None) => lb::config::DEFAULT_ADMIN.to_string(),
        };
        let token = match client_token(call.admin.token_file.as_deref(), loaded.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", call.name);
                return ExitCode::from(64);
            }
        };
        return rt.block_on(admin_command(call, &addr, json, token));
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
        // Valid, but not going to work here as it is (the running lb logs the same).
        for w in config.warnings(lb::config::interface_exists) {
            eprintln!("warning: {}: {w}", path.display());
        }
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
            // systemd: RELOADING=1 now, READY=1 once done — from `lb::run` when the config is
            // handed over, from here when it is refused.
            common::sd_notify::reloading();
            match LbConfig::load(&path) {
                Ok(c) => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading");
                    let _ = reload_tx.send(c).await;
                }
                Err(errs) => {
                    for e in &errs.0 {
                        tracing::error!(config = %path.display(), problem = %e, "reload refused: the running configuration stays");
                    }
                    common::sd_notify::ready();
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

/// One request to the admin API (common::http, hyper's client): the body of a 2xx answer,
/// or what went wrong (the server's reason for a refusal).
async fn request(
    addr: &str,
    method: hyper::Method,
    path: &str,
    token: Option<&lb::admin::auth::Token>,
) -> Result<Bytes, String> {
    let headers: Vec<(&str, String)> = token
        .map(|t| ("authorization", t.header_value()))
        .into_iter()
        .collect();
    let target = common::http::Target {
        addr,
        service: "the admin API",
        hint: "is lb running? see admin_listen",
    };
    let answer = common::http::request(target, method.as_str(), path, &headers).await?;
    common::http::success(target, answer)
}

/// Runs `lb status|drain|enable|weight` against the admin API at `addr`.
async fn admin_command(
    call: AdminCall,
    addr: &str,
    json: bool,
    token: Option<lb::admin::auth::Token>,
) -> ExitCode {
    let name = call.name;
    let body = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        request(addr, call.method, &call.path, token.as_ref()),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("{name}: {addr} did not answer within 5 s");
            return ExitCode::from(1);
        }
    };
    if name != "lb status" {
        println!("{}", String::from_utf8_lossy(&body).trim());
        return ExitCode::SUCCESS;
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{name}: {addr} answered something that is not lb status JSON: {e}");
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
