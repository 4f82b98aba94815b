//! `edge`: the EdgeFleet RTMP server (origin or edge) and its tools.

use anyhow::Context;
use clap::Parser;
use common::rtmp::url::RtmpUrl;
use edge::cli::{Cli, Command, HlsMode};
use edge::tools::{hls_load, play, publish};
use edge::{EdgeConfig, EdgeHandle, EdgeServer};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `edge token`: the token on stdout; a bad argument or a config without keys exits 64.
fn token(stream: &str, config: Option<&std::path::Path>, ttl: u64, net: Option<&str>) -> ExitCode {
    let fail = |why: String| {
        eprintln!("edge token: {why}");
        ExitCode::from(64)
    };
    if !stream.contains('/') || stream.starts_with('/') || stream.contains('?') {
        return fail(format!(
            "stream {stream:?} is not APP/STREAM (e.g. live/cam)"
        ));
    }
    let key = match config {
        Some(path) => match EdgeConfig::load(path) {
            Ok(c) => match c.play.token_keys.last() {
                Some(k) => k.clone(),
                None => return fail(format!("{}: [play] token_keys is empty", path.display())),
            },
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => match std::env::var("EDGEFLEET_TOKEN_KEY") {
            Ok(k) if k.len() >= 16 => k,
            Ok(_) => return fail("EDGEFLEET_TOKEN_KEY is shorter than 16 bytes".into()),
            Err(_) => {
                return fail(
                    "give --config (with [play] token_keys) or set EDGEFLEET_TOKEN_KEY".into(),
                )
            }
        },
    };
    let net = match net {
        None => None,
        Some(n) => match n
            .parse::<ipnet::IpNet>()
            .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(n) => Some(n),
            Err(_) => return fail(format!("--net {n:?} is not a CIDR or an IP address")),
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("{}", edge::token::sign(&key, stream, now + ttl, net));
    ExitCode::SUCCESS
}

/// `edge import-srs`: the TOML on stdout, problems and skipped directives on stderr.
fn import_srs(file: &std::path::Path, strict: bool) -> ExitCode {
    match edge::import::srs_file(file) {
        Err(errs) => {
            for e in errs {
                eprintln!("edge import-srs: {e}");
            }
            ExitCode::from(64)
        }
        Ok(imp) => {
            print!("{}", imp.toml);
            if strict && !imp.skipped.is_empty() {
                for s in &imp.skipped {
                    eprintln!("edge import-srs: not carried over: {s}");
                }
                eprintln!(
                    "edge import-srs: --strict: {} directive(s) not carried over (see the # srs: comments)",
                    imp.skipped.len()
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
    }
}

/// One glibc malloc arena for the process, not one per thread that allocates: with two
/// worker threads, each viewer's few allocations (its session, its player) were spread over
/// two arenas whose free space neither could reuse for the other. Measured on
/// `tests/bench/fanout`, 1000 viewers: 10.8 KB of RSS per viewer against 14.6, the same CPU
/// (the hot path does not allocate). `MALLOC_ARENA_MAX` in the environment still wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a glibc tunable; called before any thread exists.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        }
    }
}

fn main() -> ExitCode {
    one_malloc_arena();
    common::logging::init();
    let cli = Cli::parse();
    if let Some(Command::ImportSrs { file, strict }) = &cli.command {
        return import_srs(file, *strict);
    }
    if let Some(Command::Token {
        stream,
        config,
        ttl,
        net,
    }) = &cli.command
    {
        return token(stream, config.as_deref(), *ttl, net.as_deref());
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Status { api, config, json }) => rt.block_on(run_status(api, config, json)),
        Some(Command::Publish { file, url, looped }) => rt.block_on(run_publish(file, url, looped)),
        // Handled before the runtime is built.
        Some(Command::ImportSrs { .. } | Command::Token { .. }) => ExitCode::from(64),
        Some(Command::DrSetup { vip, undo }) => match edge::tools::dr_setup::run(vip, undo) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edge dr-setup: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Play {
            url,
            clients,
            duration,
            ramp,
            json,
            events,
        }) => rt.block_on(run_play(url, clients, duration, ramp, json, events)),
        Some(Command::HlsLoad {
            url,
            connections,
            duration,
            mode,
            publisher_start_unix_ms,
            json,
        }) => rt.block_on(run_hls_load(
            url,
            connections,
            duration,
            mode,
            publisher_start_unix_ms,
            json,
        )),
        None => {
            let Some(path) = cli.config else {
                eprintln!("edge: --config FILE is required (see edge --help)");
                return ExitCode::from(64);
            };
            let config = match EdgeConfig::load(&path) {
                Ok(c) => c,
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("{}: {e}", path.display());
                    }
                    return ExitCode::from(64);
                }
            };
            if cli.check {
                println!("{}: ok", path.display());
                return ExitCode::SUCCESS;
            }
            rt.block_on(serve(config, path))
        }
    }
}

async fn serve(config: EdgeConfig, path: PathBuf) -> ExitCode {
    if let Some((before, now)) = common::rlimit::raise_nofile_to_hard() {
        tracing::info!(before, now, "open files limit (soft RLIMIT_NOFILE)");
    }
    if !common::logging::set_level(&config.log_level) && config.log_level != "info" {
        tracing::info!(log_level = %config.log_level, "log_level not applied: RUST_LOG is set and wins");
    }
    let listen = config.listen;
    let dr_vip = config.dr_vip.clone();
    let server = match EdgeServer::bind(config)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edge: {e:#}");
            return ExitCode::from(1);
        }
    };
    let (trigger, shutdown) = common::shutdown::channel();
    let handle = server.handle();
    tokio::spawn(async move {
        // The first SIGTERM/SIGINT drains (grace_period), a second one stops at once.
        common::signals::terminated().await;
        tracing::info!("signal received: draining (signal again to stop at once)");
        handle.drain().await;
        common::signals::terminated().await;
        tracing::info!("second signal: stopping now");
        trigger.fire();
    });
    tokio::task::spawn_blocking(move || edge::tools::dr_setup::log_readiness(&dr_vip));
    tokio::spawn(reload_on_sighup(server.handle(), path));
    common::sd_notify::ready();
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

/// SIGHUP: read and validate the file again, then apply it (SRS admins reload with
/// `killall -1`, log rotation sends it too). A bad file is logged, problem by problem, and
/// the running config stays.
async fn reload_on_sighup(handle: EdgeHandle, path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload by signal is off");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading");
        let config = match EdgeConfig::load(&path) {
            Ok(c) => c,
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!(config = %path.display(), "reload refused: {e}");
                }
                tracing::warn!("the running configuration stays");
                continue;
            }
        };
        match handle.reload(config).await {
            Ok(changes) if changes.is_empty() => {
                tracing::info!("configuration reloaded: nothing changed")
            }
            Ok(changes) => {
                for c in &changes {
                    tracing::info!(key = c.key, "changed: {c}");
                }
                tracing::info!(changes = changes.len(), "configuration reloaded");
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!("reload refused: {p}");
                }
                tracing::warn!("the running configuration stays");
            }
        }
    }
}

async fn run_status(api: Option<String>, config: Option<PathBuf>, json: bool) -> ExitCode {
    let addr = match (api, config) {
        (Some(a), _) => a,
        (None, Some(path)) => match EdgeConfig::load(&path) {
            Ok(c) => match c.api {
                Some(a) => a.to_string(),
                None => {
                    eprintln!(
                        "edge status: {} has no [api] table: the API is off",
                        path.display()
                    );
                    return ExitCode::from(64);
                }
            },
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("{}: {e}", path.display());
                }
                return ExitCode::from(64);
            }
        },
        (None, None) => "127.0.0.1:1985".to_string(),
    };
    let body = match edge::api::fetch(&addr, "/api/v1/streams?count=10000").await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("edge status: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("edge status: {addr} answered something that is not JSON: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", status_table(&v));
    // With [cluster]: one line on the registry (the API answers 404 without it).
    if let Ok(r) = edge::api::fetch(&addr, "/api/v1/registry").await {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r) {
            print!("{}", registry_line(&v["registry"]));
        }
    }
    ExitCode::SUCCESS
}

/// `registry: up at HOST:PORT, ...` from /api/v1/registry.
fn registry_line(r: &serde_json::Value) -> String {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let state = match r["up"].as_bool() {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "not asked yet",
    };
    let mut line = format!(
        "registry: {state} at {} ({} endpoints), {} streams registered here, {} lookups, {} fallbacks, {} moves, {} splits, {} errors",
        r["endpoint"].as_str().unwrap_or("?"),
        r["endpoints"].as_array().map(|a| a.len()).unwrap_or(0),
        n("registered"),
        n("lookups"),
        n("fallbacks"),
        n("moves"),
        n("splits"),
        n("errors"),
    );
    if let Some(e) = r["last_error"].as_str() {
        line.push_str(&format!("; last error: {e}"));
    }
    line.push('\n');
    line
}

/// The `edge status` table from /api/v1/streams.
fn status_table(v: &serde_json::Value) -> String {
    let mut rows = vec![[
        "STREAM".to_string(),
        "VIEWERS".into(),
        "SOURCE".into(),
        "IN kbps".into(),
        "OUT kbps".into(),
        "LIVE".into(),
        "SKIPPED".into(),
        "RECONNECTS".into(),
        "CODECS".into(),
    ]];
    for s in v["streams"].as_array().into_iter().flatten() {
        let source = if s["publish"]["active"].as_bool() == Some(true) {
            format!("publisher #{}", s["publish"]["cid"])
        } else if let Some(src) = s["pull"]["source"].as_str() {
            format!("pull {src}")
        } else if s["pull"]["active"].as_bool() == Some(true) {
            "pull (connecting)".into()
        } else {
            "none".into()
        };
        let live_ms = s["live_ms"].as_u64().unwrap_or(0);
        let live = if live_ms == 0 {
            "-".to_string()
        } else {
            let t = live_ms / 1000;
            format!("{}h{:02}m{:02}s", t / 3600, t / 60 % 60, t % 60)
        };
        let codecs = [&s["video"]["codec"], &s["audio"]["codec"]]
            .iter()
            .filter_map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("+");
        rows.push([
            s["id"].as_str().unwrap_or("?").to_string(),
            s["clients"].to_string(),
            source,
            s["kbps"]["recv_30s"].to_string(),
            s["kbps"]["send_30s"].to_string(),
            live,
            s["frames_skipped"].to_string(),
            s["reconnects"].to_string(),
            if codecs.is_empty() {
                "-".into()
            } else {
                codecs
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no streams)\n");
    }
    out
}

async fn run_publish(file: PathBuf, url: String, looped: bool) -> ExitCode {
    let url = match RtmpUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("edge publish: {e}");
            return ExitCode::from(64);
        }
    };
    let tags = match publish::load(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("edge publish: {e}");
            return ExitCode::from(1);
        }
    };
    let (trigger, shutdown) = common::shutdown::channel();
    tokio::spawn(async move {
        common::signals::terminated().await;
        trigger.fire();
    });
    match publish::publish(&tags, &url, looped, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The URL prints with its query values masked (a publish key stays out of logs).
            eprintln!("edge publish: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_play(
    url: String,
    clients: usize,
    duration: f64,
    ramp: Option<f64>,
    json: bool,
    events: Option<PathBuf>,
) -> ExitCode {
    let url = match play::PlayUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("edge play: {e}");
            return ExitCode::from(64);
        }
    };
    if clients == 0 || !(0.0..=86400.0).contains(&duration) {
        eprintln!("edge play: --clients must be >= 1 and --duration within 0..=86400");
        return ExitCode::from(64);
    }
    common::rlimit::raise_nofile(clients as u64 * 2 + 256);
    let opts = play::PlayOptions {
        clients,
        duration: Duration::from_secs_f64(duration),
        ramp: Duration::from_secs_f64(ramp.unwrap_or(clients as f64 / 500.0).clamp(0.0, 600.0)),
        connect_concurrency: 128,
    };
    let (summary, lines) = play::run_url_events(&url, &opts).await;
    if let Some(path) = &events {
        let mut body = lines.join("\n");
        body.push('\n');
        if let Err(e) = std::fs::write(path, body) {
            eprintln!("edge play: --events {}: {e}", path.display());
            return ExitCode::from(74);
        }
    }
    if json {
        eprintln!("{}", summary.to_text());
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary.to_text());
    }
    if summary.ok == summary.clients {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run_hls_load(
    url: String,
    connections: usize,
    duration: f64,
    mode: HlsMode,
    publisher_start: Option<i64>,
    json: bool,
) -> ExitCode {
    let url = match hls_load::HttpUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("edge hls-load: {e}");
            return ExitCode::from(64);
        }
    };
    if !(1..=100_000).contains(&connections) || !(0.0..=86400.0).contains(&duration) {
        eprintln!(
            "edge hls-load: --connections must be 1..=100000 and --duration within 0..=86400"
        );
        return ExitCode::from(64);
    }
    common::rlimit::raise_nofile(connections as u64 * 2 + 256);
    let duration = Duration::from_secs_f64(duration);
    let (text, line, ok) = match mode {
        HlsMode::Rate => {
            let s = hls_load::run_rate(&url, connections, duration).await;
            (s.to_text(), s.to_json(), s.requests > 0)
        }
        HlsMode::Live => {
            let Some(start) = publisher_start else {
                eprintln!("edge hls-load: --mode live needs --publisher-start-unix-ms");
                return ExitCode::from(64);
            };
            let s = hls_load::run_live(&url, connections, duration, start).await;
            (s.to_text(), s.to_json(), s.parts > 0)
        }
    };
    if json {
        eprintln!("{text}");
        println!("{line}");
    } else {
        println!("{text}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
