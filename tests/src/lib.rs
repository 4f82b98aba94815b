//! Test support for EdgeFleet's end-to-end tests, the demo and the benchmarks: start origins
//! and edges in-process on free loopback ports, publish the test clip, run external peers
//! (ffmpeg, ffprobe, rtmpdump) with bounded time, and skip — or fail under
//! `EDGEFLEET_REQUIRE_ALL=1` — when a peer is missing.

use common::rtmp::url::RtmpUrl;
use common::shutdown::{self, Trigger};
use edge::hub::Hub;
use edge::tools::flv::FlvTag;
use edge::{EdgeConfig, EdgeServer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub mod etcd;
pub mod fleet;
pub mod lab;

/// The committed test clip (H.264 + AAC FLV, 1280x720, ~2.2 Mbit/s, 2 s GOP, 5 s).
pub const CLIP: &[u8] = include_bytes!("../media/clip.flv");

pub fn clip_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media/clip.flv")
}

pub fn clip_tags() -> Vec<FlvTag> {
    edge::tools::flv::parse(bytes::Bytes::from_static(CLIP)).expect("the test clip parses")
}

/// True when every prerequisite must be present (CI).
pub fn require_all() -> bool {
    std::env::var("EDGEFLEET_REQUIRE_ALL")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Reports a skipped test where a person sees it: straight to the process's stderr, past
/// libtest's capture (a passing test's `eprintln!` would be hidden), so a green run shows what
/// it did not test; `.ci/run` counts these lines in its closing line.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// Whether `program` is on PATH. Missing: a printed skip reason (false), or a panic under
/// `EDGEFLEET_REQUIRE_ALL=1`.
pub fn have(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if require_all() {
            panic!("{test}: {program} is required (EDGEFLEET_REQUIRE_ALL=1) but not installed");
        }
        skip(
            test,
            &format!("{program} is not installed (apt-get install it, or see .ci/run)"),
        );
    }
    found
}

/// A server running in this process; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    /// The HTTP API's address when the config has `[api]`.
    pub api: Option<SocketAddr>,
    /// The HTTP-FLV / HLS address when the config has `[http]`.
    pub http: Option<SocketAddr>,
    pub hub: Arc<Hub>,
    trigger: Trigger,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.addr)
    }

    pub fn rtmp_url(&self, stream: &str) -> RtmpUrl {
        RtmpUrl::parse(&self.url(stream)).unwrap()
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn stop(mut self) {
        self.trigger.fire();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a server with `config` (its `listen` may use port 0).
pub async fn start(config: EdgeConfig) -> Running {
    let server = EdgeServer::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let api = server.api_addr();
    let http = server.http_addr();
    let hub = server.hub();
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server.run(shutdown));
    Running {
        addr,
        api,
        http,
        hub,
        trigger,
        task: Some(task),
    }
}

/// An origin on a free loopback port, configured by `tweak`.
pub async fn origin_with(tweak: impl FnOnce(&mut EdgeConfig)) -> Running {
    let mut c = EdgeConfig::origin(loopback0());
    tweak(&mut c);
    start(c).await
}

pub async fn origin() -> Running {
    origin_with(|_| {}).await
}

/// `[http]` on a free loopback port, with the defaults of `[hls]` (for `origin_with` /
/// `edge_with`).
pub fn with_http(c: &mut EdgeConfig) {
    let mut h = EdgeConfig::parse("[http]\nlisten = \"127.0.0.1:0\"")
        .expect("http config")
        .http;
    if let Some(h) = h.as_mut() {
        h.listen = loopback0();
    }
    c.http = h;
}

impl Running {
    /// `http://ADDR/live/STREAM.EXT` on the server's `[http]` listener.
    pub fn http_url(&self, stream: &str, ext: &str) -> String {
        format!(
            "http://{}/live/{stream}.{ext}",
            self.http.expect("the server has [http]")
        )
    }
}

/// An edge on a free loopback port pulling from `origins`, configured by `tweak`.
pub async fn edge_with(origins: &[SocketAddr], tweak: impl FnOnce(&mut EdgeConfig)) -> Running {
    let mut c = EdgeConfig::edge(loopback0(), origins);
    tweak(&mut c);
    start(c).await
}

pub async fn edge(origins: &[SocketAddr]) -> Running {
    edge_with(origins, |_| {}).await
}

/// Publishes the test clip in a loop to `url` until the returned trigger is dropped/fired.
pub fn publish_clip(url: &str) -> (Trigger, JoinHandle<Result<(), String>>) {
    let url = RtmpUrl::parse(url).unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let tags = clip_tags();
    let task = tokio::spawn(async move {
        edge::tools::publish::publish(&tags, &url, true, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    (trigger, task)
}

/// Waits until `cond` holds, polling every 20 ms, for at most `limit`.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Waits until `hub` has a live source for live/`stream`.
pub async fn wait_published(hub: &Hub, stream: &str) {
    let key = format!("live/{stream}");
    assert!(
        wait_until(Duration::from_secs(20), || hub.has_source(&key)).await,
        "{key} was not published within 20 s"
    );
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ffmpeg -re -stream_loop -1 -i clip -c copy -f flv URL` in the background.
pub fn ffmpeg_publish(url: &str) -> ChildGuard {
    ffmpeg_publish_with(url, &[])
}

/// [`ffmpeg_publish`] with output options before `-c copy` (`-vn`: audio only).
pub fn ffmpeg_publish_with(url: &str, options: &[&str]) -> ChildGuard {
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(clip_path())
        .args(options)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    ChildGuard(child)
}

/// Runs a command with a time limit; returns (success, stdout, stderr).
pub async fn run_bounded(
    mut cmd: tokio::process::Command,
    limit: Duration,
) -> (bool, String, String) {
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (false, String::new(), e.to_string()),
        Err(_) => (false, String::new(), format!("timed out after {limit:?}")),
    }
}

/// The codec names ffprobe finds in `url` (e.g. ["h264", "aac"]).
pub async fn ffprobe_codecs(url: &str) -> Result<Vec<String>, String> {
    let mut cmd = tokio::process::Command::new("ffprobe");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        "10000000",
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        url,
    ]);
    let (ok, out, err) = run_bounded(cmd, Duration::from_secs(20)).await;
    if !ok {
        return Err(format!("ffprobe {url}: {err}"));
    }
    let mut codecs: Vec<String> = out
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    codecs.sort();
    Ok(codecs)
}

/// Decodes `seconds` of `url` with ffmpeg (video and audio) to null; Err with its stderr.
pub async fn ffmpeg_decode(url: &str, seconds: u32) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-v",
        "error",
        "-rw_timeout",
        "10000000",
        "-i",
        url,
        "-t",
    ])
    .arg(seconds.to_string())
    .args(["-f", "null", "-"]);
    let (ok, _, err) = run_bounded(cmd, Duration::from_secs(seconds as u64 + 20)).await;
    if ok && !err.contains("Error") {
        Ok(())
    } else {
        Err(format!("ffmpeg decode of {url} failed: {err}"))
    }
}

/// This process's resident set size in KiB (Linux).
pub fn rss_kib() -> u64 {
    rss_kib_of("self")
}

/// The resident set size in KiB of process `pid` ("self" for this one).
pub fn rss_kib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Starts an lb from TOML (its `admin_listen` defaults to a free loopback port here).
pub async fn start_lb(toml: &str) -> lb::Running {
    let toml = if toml.contains("admin_listen") {
        toml.to_string()
    } else {
        format!("admin_listen = \"127.0.0.1:0\"\n{toml}")
    };
    let cfg =
        lb::LbConfig::parse(&toml).unwrap_or_else(|e| panic!("bad test lb config: {e}\n{toml}"));
    lb::start(cfg).await.expect("lb starts")
}

/// A free loopback port (bound then released; tests use it at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP server that writes `id` and a newline to every connection, then keeps it open
/// until the peer closes. Returns its address.
pub async fn id_server(id: &'static str) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(format!("{id}\n").as_bytes()).await;
                let mut sink = [0u8; 1024];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Connects (from `local`, a loopback address) and reads the id line; keeps the stream.
pub async fn read_id(addr: SocketAddr, local: std::net::IpAddr) -> (String, tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    let mut s = sock.connect(addr).await.expect("connect through lb");
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    let read = async {
        loop {
            match s.read(&mut b).await {
                Ok(1) if b[0] != b'\n' => buf.push(b[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("id within 5 s");
    (String::from_utf8_lossy(&buf).into_owned(), s)
}

/// The status of real server `rs` in `running`'s first virtual server.
pub fn rs_status(running: &lb::Running, rs: SocketAddr) -> serde_json::Value {
    let st = lb::admin::status(&running.balancer);
    st["virtual_servers"][0]["real_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == rs.to_string())
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The `edge` binary running as its own process with a config file (for what only a process
/// shows: signals, its log, its memory). Killed when dropped.
pub struct EdgeProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edgefleet-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl EdgeProc {
    /// Starts `edge --config` with `toml` plus `listen` on a free loopback port, and waits
    /// until it accepts connections.
    pub fn start(toml: &str) -> EdgeProc {
        Self::start_with_env(toml, &[])
    }

    /// [`EdgeProc::start`] with more environment variables.
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> EdgeProc {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = TempDir::new("edgeproc");
        let config = dir.0.join("edge.toml");
        std::fs::write(&config, format!("listen = \"{addr}\"\n{toml}")).unwrap();
        let log = dir.0.join("edge.log");
        let child = Command::new(lab::bin("edge"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn edge");
        let p = EdgeProc {
            child,
            addr,
            config,
            log,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "edge did not listen:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the config file (the same `listen` is kept first).
    pub fn write_config(&self, toml: &str) {
        std::fs::write(&self.config, format!("listen = \"{}\"\n{toml}", self.addr)).unwrap();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits until the log contains `needle` (at least `count` times).
    pub async fn wait_log(&self, needle: &str, count: usize, limit: Duration) -> bool {
        wait_until(limit, || self.log().matches(needle).count() >= count).await
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(&self.pid().to_string())
    }
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request to `addr` with a raw socket (no client library between the test and
/// the server); returns (status, body). `(0, why)` when the connection fails.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(10), go).await {
        Ok(Ok(text)) => {
            let code = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            (code, body.to_string())
        }
        Ok(Err(e)) => (0, e.to_string()),
        Err(_) => (0, "timed out".into()),
    }
}

/// Where tests keep artifacts a person may want to look at (screenshots):
/// `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    let d = dir.join("test-artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}

/// Like [`have`], for a prerequisite that a shell command checks (a GStreamer element, a
/// Python module): `check` succeeding means present; otherwise a printed skip naming `what`,
/// or a panic under `EDGEFLEET_REQUIRE_ALL=1`.
pub fn have_check(check: &str, what: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(check)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if require_all() {
            panic!(
                "{test}: {what} is required (EDGEFLEET_REQUIRE_ALL=1) but missing ({check} failed)"
            );
        }
        skip(test, &format!("{what} is missing (see .ci/run)"));
    }
    found
}

/// tests/browser: the Node project whose `play.mjs` plays an HLS or HTTP-FLV URL in headless
/// Chromium (hls.js / mpegts.js through playwright-core); see tests/browser/README.md.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Whether the browser players can run: node, chromium and tests/browser/node_modules
/// (`npm ci --prefix tests/browser`). Missing: a printed `SKIP test: why` (false), or a panic
/// under `EDGEFLEET_REQUIRE_ALL=1`.
pub fn have_browser(test: &str) -> bool {
    let modules = browser_dir().join("node_modules");
    have("node", test)
        && have("chromium", test)
        && have_check(
            &format!(
                "test -f {m}/hls.js/dist/hls.min.js && test -f {m}/mpegts.js/dist/mpegts.js \
                 && test -d {m}/playwright-core",
                m = modules.display()
            ),
            "tests/browser/node_modules (npm ci --prefix tests/browser)",
            test,
        )
}

/// Plays `url` in headless Chromium for `seconds` of media: `node tests/browser/play.mjs URL
/// KIND SCREENSHOT SECONDS` with `kind` "hls" (hls.js, lowLatencyMode) or "flv" (mpegts.js,
/// live), bounded by 110 s (killed, with its browser, past that; play.mjs gives up at 105 s).
/// Returns play.mjs's JSON line
/// — `{"ok","kind","advanced","currentTime","videoWidth","videoHeight","frames","errors",
/// "latency_s"}` — whether or not it played: check `ok` (and `errors`). `Err` only when the
/// harness itself failed (no node, timed out, no JSON line). The URL must be on loopback.
///
/// Blocking: from a `#[tokio::test]` whose edge runs in the same process use
/// [`browser_play_async`], which keeps the runtime's threads free.
pub fn browser_play(
    url: &str,
    kind: &str,
    screenshot: &std::path::Path,
    seconds: f64,
) -> Result<serde_json::Value, String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    const LIMIT: Duration = Duration::from_secs(110);
    let mut child = Command::new("node")
        .arg(browser_dir().join("play.mjs"))
        .arg(url)
        .arg(kind)
        .arg(screenshot)
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills Chromium with it.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn node tests/browser/play.mjs: {e}"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < LIMIT => std::thread::sleep(Duration::from_millis(100)),
            _ => break None,
        }
    };
    if status.is_none() {
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!(
            "play.mjs {kind} {url}: timed out after {LIMIT:?} (killed)\nstdout: {out}\nstderr: {err}"
        ));
    };
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "play.mjs {kind} {url} ({status}): no JSON line ({e})\nstdout: {out}\nstderr: {err}"
        )
    })?;
    if v["ok"] != true && !err.trim().is_empty() {
        eprintln!("play.mjs {kind} {url} stderr:\n{err}");
    }
    if v["ok"].as_bool() != Some(status.success()) {
        return Err(format!(
            "play.mjs {kind} {url}: exit status {status} disagrees with {line}\nstderr: {err}"
        ));
    }
    Ok(v)
}

/// [`browser_play`] on a blocking thread, for async tests.
pub async fn browser_play_async(
    url: &str,
    kind: &str,
    screenshot: &std::path::Path,
    seconds: f64,
) -> Result<serde_json::Value, String> {
    let (url, kind, shot) = (url.to_string(), kind.to_string(), screenshot.to_path_buf());
    tokio::task::spawn_blocking(move || browser_play(&url, &kind, &shot, seconds))
        .await
        .map_err(|e| format!("browser_play task: {e}"))?
}

/// What a background player saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub media: u64,
    pub first_media: Option<tokio::time::Instant>,
    pub pings: u64,
    pub last_media: Option<tokio::time::Instant>,
    pub closed: Option<String>,
    pub statuses: Vec<String>,
}

/// A player reading in the background until `limit` (`RtmpClient` answers pings): media
/// counts and times, pings, the status codes it got, and why it closed.
pub fn watch(
    url: &str,
    limit: Duration,
) -> (
    std::sync::Arc<std::sync::Mutex<Seen>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let url = common::rtmp::url::RtmpUrl::parse(url).unwrap();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let end = tokio::time::Instant::now() + limit;
        let mut c =
            match common::rtmp::client::RtmpClient::connect_url(&url, Duration::from_secs(5)).await
            {
                Ok(c) => c,
                Err(e) => {
                    s.lock().unwrap().closed = Some(format!("connect: {e}"));
                    return;
                }
            };
        if let Err(e) = c.play(&url.stream, Duration::from_secs(5)).await {
            s.lock().unwrap().closed = Some(format!("play: {e}"));
            return;
        }
        loop {
            match tokio::time::timeout_at(end, c.read_message()).await {
                Err(_) => return,
                Ok(Err(e)) => {
                    s.lock().unwrap().closed = Some(e.to_string());
                    return;
                }
                Ok(Ok(m)) => {
                    let mut g = s.lock().unwrap();
                    match m.type_id {
                        common::rtmp::chunk::msg_type::AUDIO
                        | common::rtmp::chunk::msg_type::VIDEO => {
                            g.media += 1;
                            g.last_media = Some(tokio::time::Instant::now());
                            g.first_media.get_or_insert(tokio::time::Instant::now());
                        }
                        common::rtmp::chunk::msg_type::USER_CONTROL
                            if m.payload.get(1) == Some(&6) =>
                        {
                            g.pings += 1
                        }
                        _ if common::rtmp::client::is_command(&m) => {
                            if let Ok(cmd) = common::rtmp::command::parse_command(&m) {
                                if let Some(code) = cmd.property("code") {
                                    g.statuses.push(code.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    });
    (seen, task)
}

pub fn media(seen: &std::sync::Arc<std::sync::Mutex<Seen>>) -> u64 {
    seen.lock().unwrap().media
}
