//! `edge hls-load http://HOST:PORT/APP/STREAM.m3u8 --connections N --duration S
//! [--mode rate|live]`: an HLS load generator and an LL-HLS latency probe.
//!
//! - `rate`: N keep-alive HTTP/1.1 connections, each looping "GET the playlist (a plain
//!   reload), GET its newest complete segment" until the duration ends. Works against any HLS
//!   server (EdgeFleet's fMP4/LL-HLS, nginx-rtmp's MPEG-TS files).
//! - `live`: N LL-HLS players. Each asks for the next part with a blocking reload
//!   (`_HLS_msn`/`_HLS_part`), fetches it, and estimates its latency from the timestamps:
//!   `now - (publisher start + segment start ts + parts up to and including this one)`. With
//!   `edge publish --loop` the timestamps start at 0 and keep growing across loops
//!   (tools/publish.rs adds the clip's span + 33 ms per loop), so a wall clock taken when the
//!   publisher started is the zero of every segment name `STREAM-<ts>`.
//!
//! The HTTP client is the minimum for this job (GET, Content-Length bodies, keep-alive),
//! written here so that the loop costs little next to the server it measures. The playlist
//! helpers are pure and never panic; every network wait is bounded by a timeout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A response head larger than this is an error.
const MAX_HEAD: usize = 16 * 1024;
/// A playlist body larger than this is an error (segments are counted, not kept).
const MAX_PLAYLIST: u64 = 4 << 20;
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one plain request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an error before the next attempt, so a refused connection is no busy loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

/// `http://HOST:PORT/PATH[?QUERY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `HOST:PORT`, for connect and the Host header.
    pub authority: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() || auth.contains('@') {
            return Err(format!("{url}: no host (or user info, unsupported)"));
        }
        let authority = if auth.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(HttpUrl {
            authority,
            path: path.to_string(),
        })
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }
}

/// The request path of `uri` as listed in a playlist at `base` (a path): absolute URLs on the
/// same authority, absolute paths, and paths relative to the playlist's directory.
pub fn resolve(base: &HttpUrl, uri: &str) -> Result<String, String> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let u = HttpUrl::parse(uri)?;
        if u.authority != base.authority {
            return Err(format!("{uri}: another server than {}", base.authority));
        }
        return Ok(u.path);
    }
    if uri.starts_with('/') {
        return Ok(uri.to_string());
    }
    let base_path = base.path_only();
    let dir = match base_path.rfind('/') {
        Some(i) => &base_path[..=i],
        None => "/",
    };
    Ok(format!("{dir}{uri}"))
}

// ---------------------------------------------------------------------------------------------
// Playlists
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub uri: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub uri: String,
    pub duration_ms: u64,
    /// `#EXT-X-GAP`: listed, never served.
    pub gap: bool,
    /// The `#EXT-X-PART`s listed before it (only for recent segments).
    pub parts: Vec<Part>,
}

/// What the load generator needs of a media playlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Playlist {
    pub media_sequence: u64,
    pub target_duration_s: Option<u64>,
    pub part_hold_back_ms: Option<u64>,
    pub segments: Vec<Segment>,
    /// Parts listed after the last segment: the open segment's complete parts.
    pub open_parts: Vec<Part>,
    /// Whether any `#EXT-X-PART` was listed (LL-HLS).
    pub has_parts: bool,
}

/// Seconds (decimal, as HLS writes them) -> ms, `None` for anything else.
fn secs_to_ms(s: &str) -> Option<u64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| (v * 1000.0).round() as u64)
}

/// The value of `KEY=` in an attribute list (`A=1,URI="x",B=2`).
fn attr<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if name.trim() == key {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Parses a media playlist. Unknown tags are skipped; `Err` only when it is no playlist.
pub fn parse_playlist(text: &str) -> Result<Playlist, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("not a playlist (no #EXTM3U first)".into());
    }
    let mut p = Playlist::default();
    let mut pending_parts = Vec::new();
    let mut extinf: Option<u64> = None;
    let mut gap = false;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v
                .trim()
                .parse()
                .map_err(|_| format!("bad #EXT-X-MEDIA-SEQUENCE: {v}"))?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration_s = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.part_hold_back_ms = attr(v, "PART-HOLD-BACK").and_then(secs_to_ms);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            p.has_parts = true;
            let (Some(uri), Some(d)) = (attr(v, "URI"), attr(v, "DURATION").and_then(secs_to_ms))
            else {
                return Err(format!("#EXT-X-PART without URI or DURATION: {v}"));
            };
            pending_parts.push(Part {
                uri: uri.to_string(),
                duration_ms: d,
            });
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or("");
            extinf = Some(secs_to_ms(d).ok_or_else(|| format!("bad #EXTINF: {v}"))?);
        } else if line == "#EXT-X-GAP" {
            gap = true;
        } else if line.starts_with('#') {
            // Other tags: not needed here.
        } else {
            p.segments.push(Segment {
                uri: line.to_string(),
                duration_ms: extinf.take().unwrap_or(0),
                gap: std::mem::take(&mut gap),
                parts: std::mem::take(&mut pending_parts),
            });
        }
    }
    p.open_parts = pending_parts;
    Ok(p)
}

/// The part a player asks for next, as `(msn, part)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRef {
    pub msn: u64,
    pub part: u64,
}

/// A part found in a playlist, with where it ends in the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPart {
    pub at: PartRef,
    pub uri: String,
    /// Sum of the durations of parts 0..=this one.
    pub end_in_segment_ms: u64,
}

impl Playlist {
    /// The newest complete segment that is served (the last URI line not marked as a gap).
    pub fn newest_segment(&self) -> Option<&Segment> {
        self.segments.iter().rev().find(|s| !s.gap)
    }

    /// The number of the open segment: media sequence + listed segments.
    pub fn open_msn(&self) -> u64 {
        self.media_sequence
            .saturating_add(self.segments.len() as u64)
    }

    /// The part after the newest listed one (the live edge).
    pub fn next_part(&self) -> PartRef {
        PartRef {
            msn: self.open_msn(),
            part: self.open_parts.len() as u64,
        }
    }

    /// The parts of segment `msn` (the open one included), `None` if not listed.
    fn parts_of(&self, msn: u64) -> Option<&[Part]> {
        if msn == self.open_msn() {
            return Some(&self.open_parts);
        }
        let i = usize::try_from(msn.checked_sub(self.media_sequence)?).ok()?;
        self.segments.get(i).map(|s| s.parts.as_slice())
    }

    /// Finds part `want`; a part index past the last part of a closed segment means part 0
    /// of the next one (as a blocking reload reads it). `None` if not (or no longer) listed.
    pub fn find_part(&self, want: PartRef) -> Option<FoundPart> {
        let mut at = want;
        while at.msn <= self.open_msn() {
            let parts = self.parts_of(at.msn)?;
            let idx = usize::try_from(at.part).ok()?;
            if let Some(p) = parts.get(idx) {
                let end = parts[..=idx].iter().map(|p| p.duration_ms).sum();
                return Some(FoundPart {
                    at,
                    uri: p.uri.clone(),
                    end_in_segment_ms: end,
                });
            }
            if at.msn == self.open_msn() {
                return None;
            }
            // A closed segment listed without parts (too old, or a gap) cannot be skipped
            // past safely unless it is a gap.
            let closed = self
                .segments
                .get(usize::try_from(at.msn.checked_sub(self.media_sequence)?).ok()?)?;
            if parts.is_empty() && !closed.gap {
                return None;
            }
            at = PartRef {
                msn: at.msn + 1,
                part: 0,
            };
        }
        None
    }
}

/// The source timestamp (ms) a segment or part name starts at: `STREAM-<ts>.m4s`,
/// `STREAM-<ts>.<i>.m4s`, `STREAM-o<offset>-<ts>.m4s` (the digits after the last `-`).
pub fn segment_start_ts(uri: &str) -> Option<u64> {
    let name = uri.rsplit('/').next()?;
    let name = name.split('?').next()?;
    let stem = name.strip_suffix(".m4s")?;
    let after = stem.rsplit_once('-')?.1;
    let ts = after.split('.').next()?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect {addr}: {err}")]
    Connect { addr: String, err: std::io::Error },
    #[error("connect {0}: timed out")]
    ConnectTimeout(String),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: timed out after {ms} ms")]
    Timeout { path: String, ms: u128 },
    #[error("{path}: bad response: {why}")]
    Bad { path: String, why: String },
    #[error("{path}: status {status}")]
    Status { path: String, status: u16 },
}

struct Response {
    status: u16,
    body_len: u64,
    body: Vec<u8>,
    close: bool,
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    authority: String,
}

impl Conn {
    async fn connect(authority: &str) -> Result<Conn, ClientError> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
                Err(_) => return Err(ClientError::ConnectTimeout(authority.into())),
                Ok(Err(err)) => {
                    return Err(ClientError::Connect {
                        addr: authority.into(),
                        err,
                    })
                }
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
            authority: authority.into(),
        })
    }

    /// GET `path`; the body is kept when `keep` (up to [`MAX_PLAYLIST`]), else counted.
    async fn get(
        &mut self,
        path: &str,
        keep: bool,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        match tokio::time::timeout(timeout, self.get_inner(path, keep)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                path: path.into(),
                ms: timeout.as_millis(),
            }),
        }
    }

    async fn get_inner(&mut self, path: &str, keep: bool) -> Result<Response, ClientError> {
        let io = |err| ClientError::Io {
            path: path.into(),
            err,
        };
        let bad = |why: String| ClientError::Bad {
            path: path.into(),
            why,
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edge-hls-load\r\nAccept: */*\r\n\r\n",
            self.authority
        );
        self.stream.write_all(req.as_bytes()).await.map_err(io)?;
        // Head.
        let (status, length, close, head_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 48];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut length = None;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = Some(
                                v.parse::<u64>()
                                    .map_err(|_| bad(format!("Content-Length: {v}")))?,
                            );
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                            && !v.eq_ignore_ascii_case("identity")
                        {
                            return Err(bad(format!("Transfer-Encoding {v} is not supported")));
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = v.eq_ignore_ascii_case("close");
                        }
                    }
                    break (status, length, close, n);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(bad(format!("head over {MAX_HEAD} bytes")));
                    }
                }
                Err(e) => return Err(bad(e.to_string())),
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(bad("connection closed before the response head".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        self.buf.drain(..head_len);
        // Body: Content-Length, or (without it) until the server closes.
        let limit = length.unwrap_or(u64::MAX);
        if length.is_none() && !close {
            return Err(bad("no Content-Length on a keep-alive response".into()));
        }
        if keep && length.is_some_and(|l| l > MAX_PLAYLIST) {
            return Err(bad(format!("body of {} bytes kept in memory", limit)));
        }
        let mut body = Vec::new();
        let mut got: u64 = 0;
        let take = (self.buf.len() as u64).min(limit) as usize;
        if keep {
            body.extend_from_slice(&self.buf[..take]);
        }
        self.buf.drain(..take);
        got += take as u64;
        let mut chunk = vec![0u8; 64 * 1024];
        while got < limit {
            let want = ((limit - got) as usize).min(chunk.len());
            let n = self.stream.read(&mut chunk[..want]).await.map_err(io)?;
            if n == 0 {
                if length.is_none() {
                    break;
                }
                return Err(bad(format!("closed after {got} of {limit} body bytes")));
            }
            if keep {
                if got + n as u64 > MAX_PLAYLIST {
                    return Err(bad(format!("body over {MAX_PLAYLIST} bytes")));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            got += n as u64;
        }
        Ok(Response {
            status,
            body_len: got,
            body,
            close,
        })
    }
}

/// GET with a connection taken from `slot` (connecting first when empty); the connection goes
/// back unless the server closes it or an error happened. A non-200 status is an error.
async fn fetch(
    slot: &mut Option<Conn>,
    authority: &str,
    path: &str,
    keep: bool,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut conn = match slot.take() {
        Some(c) => c,
        None => Conn::connect(authority).await?,
    };
    let r = conn.get(path, keep, timeout).await?;
    if !r.close {
        *slot = Some(conn);
    }
    if r.status != 200 {
        return Err(ClientError::Status {
            path: path.into(),
            status: r.status,
        });
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// The `q` quantile (0..=1) of sorted values, 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.total_cmp(b));
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------------------
// rate mode
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct RateSummary {
    pub connections: usize,
    pub elapsed_s: f64,
    pub requests: u64,
    pub playlists: u64,
    pub segments: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl RateSummary {
    pub fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed_s.max(1e-9)
    }
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e6 / self.elapsed_s.max(1e-9)
    }
    pub fn to_text(&self) -> String {
        format!(
            "hls-load rate: {} connections, {:.1} s: {} requests ({} playlists, {} segments), \
             {:.1} requests/s, {:.1} Mbit/s, {} errors{}, latency p50 {:.2} ms p99 {:.2} ms",
            self.connections,
            self.elapsed_s,
            self.requests,
            self.playlists,
            self.segments,
            self.requests_per_s(),
            self.mbit_per_s(),
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.p50_ms,
            self.p99_ms
        )
    }
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "mode": "rate",
            "connections": self.connections,
            "elapsed_s": self.elapsed_s,
            "requests": self.requests,
            "playlists": self.playlists,
            "segments": self.segments,
            "bytes": self.bytes,
            "errors": self.errors,
            "first_error": self.first_error,
            "requests_per_s": self.requests_per_s(),
            "mbit_per_s": self.mbit_per_s(),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        })
        .to_string()
    }
}

#[derive(Default)]
struct RateWorker {
    playlists: u64,
    segments: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_ms: Vec<f64>,
}

impl RateWorker {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

async fn rate_worker(url: HttpUrl, deadline: Instant) -> RateWorker {
    let mut w = RateWorker::default();
    let mut conn: Option<Conn> = None;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let pl = match fetch(&mut conn, &url.authority, &url.path, true, REQUEST_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                w.error(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        w.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        w.playlists += 1;
        w.bytes += pl.body_len;
        let text = String::from_utf8_lossy(&pl.body);
        let seg_path = match parse_playlist(&text).and_then(|p| {
            let s = p
                .newest_segment()
                .ok_or_else(|| "playlist lists no segment".to_string())?;
            resolve(&url, &s.uri)
        }) {
            Ok(p) => p,
            Err(e) => {
                w.error(format!("{}: {e}", url.path));
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        if Instant::now() >= deadline {
            break;
        }
        let t1 = Instant::now();
        match fetch(&mut conn, &url.authority, &seg_path, false, REQUEST_TIMEOUT).await {
            Ok(r) => {
                w.latencies_ms.push(t1.elapsed().as_secs_f64() * 1000.0);
                w.segments += 1;
                w.bytes += r.body_len;
            }
            Err(e) => {
                w.error(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    w
}

/// `rate` mode: `connections` loops for `duration`.
pub async fn run_rate(url: &HttpUrl, connections: usize, duration: Duration) -> RateSummary {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(rate_worker(url.clone(), deadline)))
        .collect();
    let mut s = RateSummary {
        connections,
        ..Default::default()
    };
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok(w) => {
                s.playlists += w.playlists;
                s.segments += w.segments;
                s.bytes += w.bytes;
                s.errors += w.errors;
                if s.first_error.is_none() {
                    s.first_error = w.first_error;
                }
                lat.extend(w.latencies_ms);
            }
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert_with(|| format!("worker: {e}"));
            }
        }
    }
    s.elapsed_s = start.elapsed().as_secs_f64();
    s.requests = s.playlists + s.segments;
    sort(&mut lat);
    s.p50_ms = quantile(&lat, 0.5);
    s.p99_ms = quantile(&lat, 0.99);
    s
}

// ---------------------------------------------------------------------------------------------
// live mode
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct LiveSummary {
    pub clients: usize,
    pub elapsed_s: f64,
    pub parts: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Times a player lost its place (the part was no longer listed) and rejoined the edge.
    pub resyncs: u64,
    pub first_error: Option<String>,
    pub part_hold_back_ms: u64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_max_ms: f64,
}

impl LiveSummary {
    pub fn to_text(&self) -> String {
        let phb = self.part_hold_back_ms as f64;
        format!(
            "hls-load live: {} player(s), {:.1} s: {} parts, {} errors{}, {} resyncs; latency by \
             timestamps p50 {:.0} ms p95 {:.0} ms max {:.0} ms; with PART-HOLD-BACK {:.0} ms: \
             p50 {:.0} ms p95 {:.0} ms max {:.0} ms",
            self.clients,
            self.elapsed_s,
            self.parts,
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.resyncs,
            self.latency_p50_ms,
            self.latency_p95_ms,
            self.latency_max_ms,
            phb,
            self.latency_p50_ms + phb,
            self.latency_p95_ms + phb,
            self.latency_max_ms + phb,
        )
    }
    pub fn to_json(&self) -> String {
        let phb = self.part_hold_back_ms as f64;
        serde_json::json!({
            "mode": "live",
            "clients": self.clients,
            "elapsed_s": self.elapsed_s,
            "parts": self.parts,
            "bytes": self.bytes,
            "errors": self.errors,
            "resyncs": self.resyncs,
            "first_error": self.first_error,
            "part_hold_back_ms": self.part_hold_back_ms,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_max_ms": self.latency_max_ms,
            "held_p50_ms": self.latency_p50_ms + phb,
            "held_p95_ms": self.latency_p95_ms + phb,
            "held_max_ms": self.latency_max_ms + phb,
        })
        .to_string()
    }
}

#[derive(Default)]
struct LiveWorker {
    parts: u64,
    bytes: u64,
    errors: u64,
    resyncs: u64,
    first_error: Option<String>,
    part_hold_back_ms: u64,
    latencies_ms: Vec<f64>,
}

impl LiveWorker {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// The blocking-reload path for `at`.
fn blocking_path(url: &HttpUrl, at: PartRef) -> String {
    format!(
        "{}?_HLS_msn={}&_HLS_part={}",
        url.path_only(),
        at.msn,
        at.part
    )
}

async fn get_playlist(
    conn: &mut Option<Conn>,
    url: &HttpUrl,
    path: &str,
    timeout: Duration,
) -> Result<Playlist, String> {
    let r = fetch(conn, &url.authority, path, true, timeout)
        .await
        .map_err(|e| e.to_string())?;
    parse_playlist(&String::from_utf8_lossy(&r.body)).map_err(|e| format!("{path}: {e}"))
}

async fn live_worker(url: HttpUrl, deadline: Instant, publisher_start_ms: i64) -> LiveWorker {
    let mut w = LiveWorker::default();
    let mut conn: Option<Conn> = None;
    let mut next: Option<PartRef> = None;
    // A blocking reload waits at most three target durations on the server: allow that.
    let mut block_timeout = REQUEST_TIMEOUT;
    while Instant::now() < deadline {
        let Some(at) = next else {
            // Join (or rejoin) at the live edge with a plain reload.
            match get_playlist(&mut conn, &url, url.path_only(), REQUEST_TIMEOUT).await {
                Ok(p) if p.has_parts => {
                    w.part_hold_back_ms = p.part_hold_back_ms.unwrap_or(0);
                    let target = p.target_duration_s.unwrap_or(6).min(60);
                    block_timeout = Duration::from_secs(3 * target + 5);
                    next = Some(p.next_part());
                }
                Ok(_) => {
                    w.error(format!("{}: no #EXT-X-PART: not LL-HLS", url.path));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    w.error(e);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let p = match get_playlist(
            &mut conn,
            &url,
            &blocking_path(&url, at),
            block_timeout.min(left + Duration::from_secs(1)),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                if Instant::now() < deadline {
                    w.error(e);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
                next = None;
                continue;
            }
        };
        let Some(found) = p.find_part(at) else {
            w.resyncs += 1;
            next = None;
            continue;
        };
        let path = match resolve(&url, &found.uri) {
            Ok(p) => p,
            Err(e) => {
                w.error(e);
                next = None;
                continue;
            }
        };
        match fetch(&mut conn, &url.authority, &path, false, REQUEST_TIMEOUT).await {
            Ok(r) => {
                let now = unix_ms_now();
                w.parts += 1;
                w.bytes += r.body_len;
                if let Some(ts) = segment_start_ts(&found.uri) {
                    let end = publisher_start_ms
                        .saturating_add(ts as i64)
                        .saturating_add(found.end_in_segment_ms as i64);
                    w.latencies_ms.push(now.saturating_sub(end) as f64);
                }
                next = Some(PartRef {
                    msn: found.at.msn,
                    part: found.at.part + 1,
                });
            }
            Err(e) => {
                w.error(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
                next = None;
            }
        }
    }
    w
}

/// `live` mode: `clients` LL-HLS players for `duration`; `publisher_start_ms` is the Unix time
/// (ms) at which the publisher sent timestamp 0.
pub async fn run_live(
    url: &HttpUrl,
    clients: usize,
    duration: Duration,
    publisher_start_ms: i64,
) -> LiveSummary {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(live_worker(url.clone(), deadline, publisher_start_ms)))
        .collect();
    let mut s = LiveSummary {
        clients,
        ..Default::default()
    };
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok(w) => {
                s.parts += w.parts;
                s.bytes += w.bytes;
                s.errors += w.errors;
                s.resyncs += w.resyncs;
                s.part_hold_back_ms = s.part_hold_back_ms.max(w.part_hold_back_ms);
                if s.first_error.is_none() {
                    s.first_error = w.first_error;
                }
                lat.extend(w.latencies_ms);
            }
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert_with(|| format!("player: {e}"));
            }
        }
    }
    s.elapsed_s = start.elapsed().as_secs_f64();
    sort(&mut lat);
    s.latency_p50_ms = quantile(&lat, 0.5);
    s.latency_p95_ms = quantile(&lat, 0.95);
    s.latency_max_ms = lat.last().copied().unwrap_or(0.0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n\
        #EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:10\n\
        #EXT-X-MAP:URI=\"bench-init-0badf00d.mp4\"\n\
        #EXTINF:2.000,\nbench-20000.m4s\n\
        #EXT-X-PART:DURATION=0.500,URI=\"bench-22000.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.500,URI=\"bench-22000.1.m4s\"\n\
        #EXT-X-PART:DURATION=0.500,URI=\"bench-22000.2.m4s\"\n\
        #EXT-X-PART:DURATION=0.500,URI=\"bench-22000.3.m4s\"\n\
        #EXTINF:2.000,\nbench-22000.m4s\n\
        #EXT-X-GAP\n#EXTINF:0.001,\nbench-gap12.m4s\n\
        #EXT-X-PART:DURATION=0.467,URI=\"bench-26000.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.533,URI=\"bench-26000.1.m4s\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"bench-26000.2.m4s\"\n";

    #[test]
    fn parses_ll_hls() {
        let p = parse_playlist(LL).unwrap();
        assert_eq!(p.media_sequence, 10);
        assert_eq!(p.target_duration_s, Some(2));
        assert_eq!(p.part_hold_back_ms, Some(1500));
        assert!(p.has_parts);
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.segments[1].parts.len(), 4);
        assert!(p.segments[2].gap);
        assert_eq!(p.open_parts.len(), 2);
        assert_eq!(p.open_msn(), 13);
        assert_eq!(p.next_part(), PartRef { msn: 13, part: 2 });
        assert_eq!(p.newest_segment().unwrap().uri, "bench-22000.m4s");
    }

    #[test]
    fn finds_parts() {
        let p = parse_playlist(LL).unwrap();
        let f = p.find_part(PartRef { msn: 11, part: 2 }).unwrap();
        assert_eq!(f.uri, "bench-22000.2.m4s");
        assert_eq!(f.end_in_segment_ms, 1500);
        // Past the last part of 11: over the gap (12) to 13.0.
        let f = p.find_part(PartRef { msn: 11, part: 4 }).unwrap();
        assert_eq!(f.at, PartRef { msn: 13, part: 0 });
        assert_eq!(f.end_in_segment_ms, 467);
        let f = p.find_part(PartRef { msn: 13, part: 1 }).unwrap();
        assert_eq!(f.end_in_segment_ms, 1000);
        // Not yet there, too old (listed without parts), far ahead.
        assert_eq!(p.find_part(PartRef { msn: 13, part: 2 }), None);
        assert_eq!(p.find_part(PartRef { msn: 10, part: 0 }), None);
        assert_eq!(p.find_part(PartRef { msn: 3, part: 0 }), None);
        assert_eq!(
            p.find_part(PartRef {
                msn: u64::MAX,
                part: u64::MAX
            }),
            None
        );
    }

    #[test]
    fn parses_plain_hls() {
        let p = parse_playlist(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-TARGETDURATION:2\n\
             #EXTINF:2.000,\nbench-4.ts\n#EXTINF:2.000,\nbench-5.ts\n",
        )
        .unwrap();
        assert!(!p.has_parts);
        assert_eq!(p.newest_segment().unwrap().uri, "bench-5.ts");
        assert_eq!(p.newest_segment().unwrap().duration_ms, 2000);
        assert_eq!(p.open_msn(), 6);
    }

    #[test]
    fn bad_playlists_are_errors_not_panics() {
        assert!(parse_playlist("").is_err());
        assert!(parse_playlist("<html>").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXTINF:abc,\nx.ts\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXT-X-PART:DURATION=1,URI=\"x\n").is_err());
        assert!(parse_playlist("#EXTM3U\n#EXTINF:-1,\nx.ts\n").is_err());
        // Tolerated: an empty playlist, a URI without EXTINF, unknown tags.
        let p = parse_playlist("#EXTM3U\n#EXT-X-FOO\nx.ts\n").unwrap();
        assert_eq!(p.segments[0].duration_ms, 0);
        assert_eq!(parse_playlist("#EXTM3U").unwrap().newest_segment(), None);
        // Every prefix of a real playlist parses or fails, never panics.
        for i in 0..LL.len() {
            if LL.is_char_boundary(i) {
                let _ = parse_playlist(&LL[..i]).map(|p| p.find_part(p.next_part()));
            }
        }
    }

    #[test]
    fn attributes() {
        let a = "DURATION=0.500,URI=\"a,b=c.m4s\",INDEPENDENT=YES";
        assert_eq!(attr(a, "URI"), Some("a,b=c.m4s"));
        assert_eq!(attr(a, "INDEPENDENT"), Some("YES"));
        assert_eq!(attr(a, "DURATION"), Some("0.500"));
        assert_eq!(attr(a, "X"), None);
        assert_eq!(attr("URI=\"open", "URI"), None);
        assert_eq!(attr("", "URI"), None);
    }

    #[test]
    fn start_timestamps_from_names() {
        assert_eq!(segment_start_ts("bench-22000.m4s"), Some(22000));
        assert_eq!(segment_start_ts("bench-22000.3.m4s"), Some(22000));
        assert_eq!(segment_start_ts("/live/my-cam-o7-4000.1.m4s"), Some(4000));
        assert_eq!(segment_start_ts("bench-gap12.m4s"), None);
        assert_eq!(segment_start_ts("bench-5.ts"), None);
        assert_eq!(segment_start_ts("bench-.m4s"), None);
        assert_eq!(segment_start_ts("x"), None);
        assert_eq!(segment_start_ts("-99999999999999999999999.m4s"), None);
    }

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/live/bench.m3u8?x=1").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_only(), "/live/bench.m3u8");
        assert_eq!(resolve(&u, "bench-1.m4s").unwrap(), "/live/bench-1.m4s");
        assert_eq!(resolve(&u, "/hls/b.ts").unwrap(), "/hls/b.ts");
        assert_eq!(
            resolve(&u, "http://127.0.0.1:8080/a/b.ts").unwrap(),
            "/a/b.ts"
        );
        assert!(resolve(&u, "http://198.18.0.1:8080/a/b.ts").is_err());
        assert_eq!(HttpUrl::parse("http://h").unwrap().authority, "h:80");
        assert_eq!(HttpUrl::parse("http://h").unwrap().path, "/");
        assert!(HttpUrl::parse("https://h/").is_err());
        assert!(HttpUrl::parse("http:///x").is_err());
        assert_eq!(
            blocking_path(&u, PartRef { msn: 5, part: 2 }),
            "/live/bench.m3u8?_HLS_msn=5&_HLS_part=2"
        );
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
    }
}
