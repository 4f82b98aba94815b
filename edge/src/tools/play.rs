//! `edge play rtmp://... | http://HOST:PORT/APP/STREAM.flv [--clients N] [--duration S]`: a
//! player and load generator, over RTMP or HTTP-FLV.
//!
//! Each client connects, plays, and records: time from connect to its first keyframe,
//! bytes and frames received, and stalls (no media for more than 1 s, counted once per gap).
//! All clients stop together at the end of `duration`, so the totals cover one window.

use common::rtmp::chunk::msg_type;
use common::rtmp::client::RtmpClient;
use common::rtmp::media::{video_kind, MediaKind};
use common::rtmp::url::RtmpUrl;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// When each step of a client's start ended ([`ClientResult::steps`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps {
    pub gate: Option<Duration>,
    pub connected: Option<Duration>,
    pub playing: Option<Duration>,
}

impl Steps {
    /// The time spent in each step up to `first_frame`: queued at the gate, connecting,
    /// playing (play command to its answer), waiting for the first keyframe. None unless
    /// every step was reached.
    pub fn split(&self, first_frame: Duration) -> Option<[Duration; 4]> {
        let (g, c, p) = (self.gate?, self.connected?, self.playing?);
        Some([
            g,
            c.saturating_sub(g),
            p.saturating_sub(c),
            first_frame.saturating_sub(p),
        ])
    }
}

/// A gap in media longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PlayOptions {
    pub clients: usize,
    pub duration: Duration,
    /// Connections are spread over this long (0 = all at once).
    pub ramp: Duration,
    /// At most this many handshakes in flight.
    pub connect_concurrency: usize,
}

/// What one client saw.
#[derive(Debug, Clone, Default)]
pub struct ClientResult {
    pub error: Option<String>,
    pub first_frame: Option<Duration>,
    /// When each step before the first frame ended, from the client's start: the
    /// connect-concurrency gate passed, the connection set up (TCP, handshake and
    /// `connect(app)`; for HTTP-FLV the request sent), and play accepted (`play`'s
    /// `NetStream.Play.Start`; for HTTP-FLV the response head read). They split a slow
    /// first frame into the time spent in each step.
    pub steps: Steps,
    pub bytes: u64,
    pub frames: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub stalls: u64,
    /// The longest gap between two media messages, or from the last one to the end when
    /// the media stopped before it (no error).
    pub max_gap: Duration,
    /// The media stopped more than [`STALL`] before the end, without an error: the
    /// connection is open but nothing arrives any more (e.g. its proxy went away).
    pub media_stopped: bool,
    /// When the client stopped (an error, or the end of the run).
    pub ended: Option<Instant>,
    /// Media gaps longer than [`GAP_EVENT`]: when each began and how long it was (at most
    /// [`MAX_GAP_EVENTS`] kept, the longest win).
    pub gaps: Vec<(Instant, Duration)>,
}

/// A media gap at least this long is kept as an event (`edge play --events`).
pub const GAP_EVENT: Duration = Duration::from_millis(200);
/// At most this many gap events per client.
pub const MAX_GAP_EVENTS: usize = 16;

impl ClientResult {
    /// One JSON line for `edge play --events`: times in ms since `start` (the run's start).
    pub fn event_json(&self, client: usize, start: Instant) -> String {
        let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1000.0;
        let gaps: Vec<String> = self
            .gaps
            .iter()
            .map(|(at, len)| format!("[{:.0},{:.0}]", ms(*at), len.as_secs_f64() * 1000.0))
            .collect();
        format!(
            "{{\"client\":{client},\"end_ms\":{:.0},\"ok\":{},\"reason\":{},\"first_frame_ms\":{},\"frames\":{},\"bytes\":{},\"max_gap_ms\":{:.0},\"gaps\":[{}]}}",
            self.ended.map(ms).unwrap_or(0.0),
            self.error.is_none() && self.first_frame.is_some(),
            serde_json::to_string(self.error.as_deref().unwrap_or(if self.first_frame.is_some() { "end" } else { "no keyframe received" })).unwrap_or_default(),
            self.first_frame.map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "null".into()),
            self.frames,
            self.bytes,
            self.max_gap.as_secs_f64() * 1000.0,
            gaps.join(",")
        )
    }

    fn note_gap(&mut self, at: Instant, len: Duration) {
        if len < GAP_EVENT {
            return;
        }
        if self.gaps.len() < MAX_GAP_EVENTS {
            self.gaps.push((at, len));
        } else if let Some(min) = self.gaps.iter_mut().min_by_key(|g| g.1) {
            if min.1 < len {
                *min = (at, len);
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub clients: usize,
    pub ok: usize,
    pub failed: usize,
    pub first_frame_p50_ms: f64,
    pub first_frame_p99_ms: f64,
    /// Where the slowest 1 % of first frames spent their time, the mean of each step
    /// ([`Steps::split`]): queued, connecting, playing, waiting for the keyframe (ms).
    pub slowest_split_ms: [f64; 4],
    pub stalls: u64,
    /// The longest media gap of any client ([`ClientResult::max_gap`]).
    pub max_gap_ms: f64,
    /// Clients whose media stopped before the end without an error.
    pub media_stopped: usize,
    pub frames: u64,
    pub bytes: u64,
    pub mbit_per_s: f64,
    pub duration_s: f64,
    pub errors: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"clients\":{},\"ok\":{},\"failed\":{},\"first_frame_p50_ms\":{:.1},\"first_frame_p99_ms\":{:.1},\"slowest_split_ms\":{{\"queued\":{:.1},\"connect\":{:.1},\"play\":{:.1},\"keyframe\":{:.1}}},\"stalls\":{},\"max_gap_ms\":{:.1},\"media_stopped\":{},\"frames\":{},\"bytes\":{},\"mbit_per_s\":{:.2},\"duration_s\":{:.2},\"errors\":{}}}",
            self.clients, self.ok, self.failed, self.first_frame_p50_ms, self.first_frame_p99_ms,
            self.slowest_split_ms[0], self.slowest_split_ms[1], self.slowest_split_ms[2], self.slowest_split_ms[3],
            self.stalls, self.max_gap_ms, self.media_stopped, self.frames, self.bytes, self.mbit_per_s, self.duration_s,
            serde_json::to_string(&self.errors.iter().take(5).collect::<Vec<_>>()).unwrap_or_default()
        )
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "clients ok {}/{} (failed {}), first frame p50 {:.1} ms p99 {:.1} ms (slowest 1 %: queued {:.1}, connect {:.1}, play {:.1}, keyframe {:.1} ms), stalls {}, frames {}, {:.2} Mbit/s over {:.1} s",
            self.ok, self.clients, self.failed, self.first_frame_p50_ms, self.first_frame_p99_ms,
            self.slowest_split_ms[0], self.slowest_split_ms[1], self.slowest_split_ms[2], self.slowest_split_ms[3],
            self.stalls, self.frames, self.mbit_per_s, self.duration_s
        );
        for e in self.errors.iter().take(5) {
            s.push_str(&format!("\n  error: {e}"));
        }
        s
    }
}

/// What `edge play` plays.
#[derive(Debug, Clone)]
pub enum PlayUrl {
    Rtmp(RtmpUrl),
    /// `http://HOST:PORT/PATH` (HTTP-FLV).
    HttpFlv {
        host: String,
        path: String,
    },
}

impl PlayUrl {
    pub fn parse(url: &str) -> Result<PlayUrl, String> {
        if let Some(rest) = url.strip_prefix("http://") {
            let bad = || {
                format!("{url:?}: expected rtmp://HOST[:PORT]/APP/STREAM or http://HOST:PORT/APP/STREAM.flv")
            };
            let (host, path) = rest.split_once('/').ok_or_else(bad)?;
            let file = path.split('?').next().unwrap_or("");
            if host.is_empty() || !file.ends_with(".flv") {
                return Err(bad());
            }
            let host = if host.contains(':') {
                host.to_string()
            } else {
                format!("{host}:80")
            };
            return Ok(PlayUrl::HttpFlv {
                host,
                path: format!("/{path}"),
            });
        }
        RtmpUrl::parse(url)
            .map(PlayUrl::Rtmp)
            .map_err(|e| e.to_string())
    }
}

/// Plays `url` with `opts.clients` clients and summarises.
pub async fn run(url: &RtmpUrl, opts: &PlayOptions) -> Summary {
    run_url(&PlayUrl::Rtmp(url.clone()), opts).await
}

/// Plays `url` (RTMP or HTTP-FLV) with `opts.clients` clients and summarises.
pub async fn run_url(url: &PlayUrl, opts: &PlayOptions) -> Summary {
    run_url_events(url, opts).await.0
}

/// [`run_url`], plus one JSON line per client ([`ClientResult::event_json`]).
pub async fn run_url_events(url: &PlayUrl, opts: &PlayOptions) -> (Summary, Vec<String>) {
    let start = Instant::now();
    let end = start + opts.ramp + opts.duration;
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        let at = if opts.clients > 1 {
            start + opts.ramp.mul_f64(i as f64 / opts.clients as f64)
        } else {
            start
        };
        let url = url.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mut r = match &url {
                PlayUrl::Rtmp(u) => play_one(u, end, gate).await,
                PlayUrl::HttpFlv { host, path } => play_one_flv(host, path, end, gate).await,
            };
            r.ended.get_or_insert_with(Instant::now);
            r
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.unwrap_or_else(|e| ClientResult {
            error: Some(format!("client task failed: {e}")),
            ..Default::default()
        }));
    }
    let events = results
        .iter()
        .enumerate()
        .map(|(i, r)| r.event_json(i, start))
        .collect();
    (summarize(&results, start.elapsed()), events)
}

pub fn summarize(results: &[ClientResult], elapsed: Duration) -> Summary {
    let mut firsts: Vec<f64> = results
        .iter()
        .filter_map(|r| r.first_frame.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    firsts.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if firsts.is_empty() {
            return 0.0;
        }
        let i = ((firsts.len() as f64 * p).ceil() as usize).clamp(1, firsts.len()) - 1;
        firsts[i]
    };
    let ok = results
        .iter()
        .filter(|r| r.error.is_none() && r.first_frame.is_some())
        .count();
    let p99 = pct(0.99);
    let slow: Vec<[Duration; 4]> = results
        .iter()
        .filter_map(|r| {
            let f = r.first_frame?;
            if f.as_secs_f64() * 1000.0 >= p99 {
                r.steps.split(f)
            } else {
                None
            }
        })
        .collect();
    let mut slowest_split_ms = [0.0; 4];
    for split in &slow {
        for (sum, d) in slowest_split_ms.iter_mut().zip(split) {
            *sum += d.as_secs_f64() * 1000.0 / slow.len() as f64;
        }
    }
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    Summary {
        clients: results.len(),
        ok,
        failed: results.len() - ok,
        first_frame_p50_ms: pct(0.50),
        first_frame_p99_ms: p99,
        slowest_split_ms,
        stalls: results.iter().map(|r| r.stalls).sum(),
        max_gap_ms: results
            .iter()
            .map(|r| r.max_gap.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max),
        media_stopped: results.iter().filter(|r| r.media_stopped).count(),
        frames: results.iter().map(|r| r.frames).sum(),
        bytes,
        mbit_per_s: bytes as f64 * 8.0 / elapsed.as_secs_f64().max(0.001) / 1e6,
        duration_s: elapsed.as_secs_f64(),
        errors: results
            .iter()
            .filter_map(|r| {
                r.error.clone().or_else(|| {
                    r.first_frame
                        .is_none()
                        .then(|| "no keyframe received".to_string())
                })
            })
            .collect(),
    }
}

/// Counts one media message into `r` (first keyframe, gaps, stalls).
fn count_media(
    r: &mut ClientResult,
    last_media: &mut Option<Instant>,
    t0: Instant,
    type_id: u8,
    payload: &[u8],
) {
    let now = Instant::now();
    if let Some(prev) = *last_media {
        if now - prev > STALL {
            r.stalls += 1;
        }
        r.max_gap = r.max_gap.max(now - prev);
        r.note_gap(prev, now - prev);
    }
    *last_media = Some(now);
    r.frames += 1;
    r.bytes += payload.len() as u64;
    if type_id == msg_type::VIDEO {
        r.video_frames += 1;
        if r.first_frame.is_none() && video_kind(payload) == MediaKind::Keyframe {
            r.first_frame = Some(now - t0);
        }
    } else {
        r.audio_frames += 1;
    }
}

/// Media that stopped before the end is a stall too.
fn count_end(r: &mut ClientResult, last_media: Option<Instant>, end: Instant) {
    let now = Instant::now().min(end);
    r.ended = Some(now);
    if let Some(prev) = last_media {
        if end.saturating_duration_since(prev) > STALL && r.error.is_none() {
            r.stalls += 1;
            r.media_stopped = true;
            r.max_gap = r.max_gap.max(end.saturating_duration_since(prev));
            r.note_gap(prev, end.saturating_duration_since(prev));
        }
    }
}

/// One HTTP-FLV client until `end`: GET, a 200 head, then FLV tags.
pub async fn play_one_flv(
    host: &str,
    path: &str,
    end: Instant,
    gate: Arc<Semaphore>,
) -> ClientResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut r = ClientResult::default();
    let t0 = Instant::now();
    let conn = {
        let _permit = gate.acquire().await;
        r.steps.gate = Some(t0.elapsed());
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut s = tokio::net::TcpStream::connect(host).await?;
            let _ = s.set_nodelay(true);
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edge-play\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            Ok::<_, std::io::Error>(s)
        })
        .await
    };
    let mut s = match conn {
        Ok(Ok(s)) => {
            r.steps.connected = Some(t0.elapsed());
            s
        }
        Ok(Err(e)) => {
            r.error = Some(format!("connect {host}: {e}"));
            return r;
        }
        Err(_) => {
            r.error = Some(format!("connect {host}: timed out"));
            return r;
        }
    };
    let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
    let mut head_done = false;
    let mut file_header = false;
    let mut last_media: Option<Instant> = None;
    loop {
        // Whole tags out of the buffer.
        loop {
            if !head_done {
                let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    break;
                };
                let head = String::from_utf8_lossy(&buf[..at]).into_owned();
                if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                    r.error = Some(head.lines().next().unwrap_or("no status").to_string());
                    return r;
                }
                let _ = buf.split_to(at + 4);
                head_done = true;
                r.steps.playing = Some(t0.elapsed());
                continue;
            }
            if !file_header {
                if buf.len() < 13 {
                    break;
                }
                if &buf[..3] != b"FLV" {
                    r.error = Some("the body is not FLV".into());
                    return r;
                }
                let _ = buf.split_to(13);
                file_header = true;
                continue;
            }
            if buf.len() < 11 {
                break;
            }
            let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 11 + len + 4 {
                break;
            }
            let tag = buf.split_to(11 + len + 4);
            let type_id = tag[0] & 0x1f;
            if type_id == msg_type::VIDEO || type_id == msg_type::AUDIO {
                count_media(&mut r, &mut last_media, t0, type_id, &tag[11..11 + len]);
            }
        }
        match tokio::time::timeout_at(end, s.read_buf(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                r.error = Some("closed by the server".into());
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                r.error = Some(e.to_string());
                break;
            }
        }
    }
    count_end(&mut r, last_media, end);
    r
}

/// One client until `end`.
pub async fn play_one(url: &RtmpUrl, end: Instant, gate: Arc<Semaphore>) -> ClientResult {
    let mut r = ClientResult::default();
    let t0 = Instant::now();
    let client = {
        let _permit = gate.acquire().await;
        r.steps.gate = Some(t0.elapsed());
        let timeout = Duration::from_secs(10);
        match RtmpClient::connect_url(url, timeout).await {
            Ok(mut c) => {
                r.steps.connected = Some(t0.elapsed());
                match c.play(&url.stream, timeout).await {
                    Ok(()) => {
                        r.steps.playing = Some(t0.elapsed());
                        Ok(c)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let mut last_media: Option<Instant> = None;
    loop {
        let msg = match tokio::time::timeout_at(end, client.read_message()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                r.error = Some(e.to_string());
                break;
            }
            Ok(Ok(m)) => m,
        };
        if msg.type_id != msg_type::VIDEO && msg.type_id != msg_type::AUDIO {
            continue;
        }
        count_media(&mut r, &mut last_media, t0, msg.type_id, &msg.payload);
    }
    count_end(&mut r, last_media, end);
    r
}
