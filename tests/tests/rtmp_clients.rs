//! RTMP conformance beyond our own client: every RTMP client stack Debian packages publishes
//! to an in-process origin and plays through an in-process edge. Each test asserts that the
//! client moved media AND that its own log holds no warning or error about the server:
//!
//! | stack | publish | play |
//! |---|---|---|
//! | GStreamer rtmp2 (plugins-bad, own RTMP code) | `rtmp2sink` | `rtmp2src` |
//! | GStreamer rtmp (plugins-bad, on librtmp) | `rtmpsink` | `rtmpsrc` |
//! | librtmp through python3-librtmp | `RTMPStream.write` | `RTMPStream.read` |
//! | ffmpeg (libavformat's own RTMP code) | `-f flv rtmp://` | `-i rtmp://` |
//! | VLC 3 (plays through libavformat) | — (VLC publishes through libavformat too: ffmpeg's row) | `cvlc` |
//!
//! rtmpdump (librtmp) plays in `edge.rs`. Every client runs with a time limit; a missing
//! client is a visible SKIP (a failure under `EDGEFLEET_REQUIRE_ALL=1`).

use edge::tools::play::{play_one, ClientResult};
use edgefleet_tests::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Debian's interpreter, where python3-librtmp is installed (a PATH python3 may be another).
const PYTHON: &str = "/usr/bin/python3";

fn init() {
    common::logging::init_for_tests();
}

async fn play_for(url: &str, secs: f64) -> ClientResult {
    let url = common::rtmp::url::RtmpUrl::parse(url).unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    play_one(&url, end, Arc::new(Semaphore::new(1))).await
}

fn have_gst(element: &str, test: &str) -> bool {
    have("gst-launch-1.0", test)
        && have_check(
            &format!("gst-inspect-1.0 {element}"),
            &format!("GStreamer element {element} (gstreamer1.0-plugins-bad/-good)"),
            test,
        )
}

fn have_python_librtmp(test: &str) -> bool {
    have_check(
        &format!("{PYTHON} -c 'import librtmp'"),
        "python3-librtmp",
        test,
    )
}

/// A GStreamer run with warnings on (`GST_DEBUG=2`), uncoloured.
fn gst(pipeline: &str) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.env("GST_DEBUG", "2")
        .env("GST_DEBUG_NO_COLOR", "1")
        .arg("-v")
        .args(pipeline.split_whitespace());
    cmd
}

/// The lines of a GStreamer log that are warnings or errors of its RTMP code (rtmp2sink,
/// rtmp2src, rtmpconnection, rtmpclient, rtmpsink, rtmpsrc, librtmp's `rtmp`), or the
/// pipeline's error about an element. Other elements' warnings (flvdemux on the clip's
/// end-of-sequence tag, flvmux) are not about the server.
fn gst_rtmp_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let level = l.contains(" WARN ") || l.contains(" ERROR ") || l.starts_with("ERROR");
            level && l.to_lowercase().contains("rtmp")
        })
        .collect()
}

/// How many buffers a `fakesink silent=false` named `name` printed (with `gst-launch -v`).
fn gst_buffers(stdout: &str, name: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.contains(&format!("({name}:sink)")) && l.contains("chain"))
        .count()
}

/// The committed clip fed through GStreamer's own FLV demuxer and muxer into `sink`.
fn gst_publish_pipeline(sink: &str, url: &str) -> String {
    format!(
        "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse ! mux.video \
         d.audio ! queue ! aacparse ! mux.audio flvmux name=mux streamable=true ! {sink} location={url}",
        clip_path().display()
    )
}

/// A GStreamer pipeline playing `url` with `src` until 300 buffers came.
fn gst_play_pipeline(src: &str, url: &str) -> String {
    format!(
        "{src} num-buffers=300 location={url} ! flvdemux name=d \
         d.video ! queue ! fakesink name=v silent=false d.audio ! queue ! fakesink name=a silent=false"
    )
}

/// Publishes with `client` (which must end by itself within `limit`) to an origin, plays it
/// through an edge with our own player meanwhile, and returns the client's (ok, stdout,
/// stderr).
async fn publish_with(
    stream: &str,
    client: impl FnOnce(&str) -> Command,
    limit: Duration,
) -> (bool, String, String) {
    let origin = origin().await;
    let edge = edge(&[origin.addr]).await;
    let cmd = client(&origin.url(stream));
    let run = tokio::spawn(run_bounded(cmd, limit));
    wait_published(&origin.hub, stream).await;
    let r = play_for(&edge.url(stream), 2.0).await;
    assert!(
        r.first_frame.is_some() && r.video_frames > 0 && r.audio_frames > 0,
        "the client's publish did not reach a player through the edge: {r:?}"
    );
    let out = run.await.unwrap();
    // The client ended its publish; the origin no longer has the stream.
    let key = format!("live/{stream}");
    assert!(
        wait_until(Duration::from_secs(5), || !origin.hub.has_source(&key)).await,
        "{key} still published after the client left"
    );
    out
}

/// An origin with the clip published in a loop (until the trigger is dropped) and an edge.
async fn live(stream: &str) -> (Running, Running, common::shutdown::Trigger) {
    let origin = origin().await;
    let edge = edge(&[origin.addr]).await;
    let (stop, _task) = publish_clip(&origin.url(stream));
    wait_published(&origin.hub, stream).await;
    (origin, edge, stop)
}

// --- GStreamer rtmp2 (its own RTMP code) -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gst_rtmp2sink_publishes() {
    init();
    let t = "gst_rtmp2sink_publishes";
    if !have_gst("rtmp2sink", t) {
        return;
    }
    let (ok, _out, err) = publish_with(
        "g2pub",
        |url| gst(&gst_publish_pipeline("rtmp2sink", url)),
        Duration::from_secs(30),
    )
    .await;
    let bad = gst_rtmp_complaints(&err);
    assert!(
        ok && bad.is_empty(),
        "rtmp2sink: ok={ok}\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gst_rtmp2src_plays() {
    init();
    let t = "gst_rtmp2src_plays";
    if !have_gst("rtmp2src", t) {
        return;
    }
    let (_o, edge, _p) = live("g2play").await;
    let cmd = gst(&gst_play_pipeline("rtmp2src", &edge.url("g2play")));
    let (ok, out, err) = run_bounded(cmd, Duration::from_secs(30)).await;
    let bad = gst_rtmp_complaints(&err);
    let (v, a) = (gst_buffers(&out, "v"), gst_buffers(&out, "a"));
    assert!(
        ok && bad.is_empty(),
        "rtmp2src: ok={ok}\n{}",
        bad.join("\n")
    );
    assert!(
        v > 50 && a > 50,
        "rtmp2src got {v} video and {a} audio buffers"
    );
}

// --- GStreamer rtmp (librtmp) ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gst_rtmpsink_publishes() {
    init();
    let t = "gst_rtmpsink_publishes";
    if !have_gst("rtmpsink", t) {
        return;
    }
    let (ok, _out, err) = publish_with(
        "g1pub",
        |url| gst(&gst_publish_pipeline("rtmpsink", url)),
        Duration::from_secs(30),
    )
    .await;
    let bad = gst_rtmp_complaints(&err);
    assert!(
        ok && bad.is_empty(),
        "rtmpsink: ok={ok}\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gst_rtmpsrc_plays() {
    init();
    let t = "gst_rtmpsrc_plays";
    if !have_gst("rtmpsrc", t) {
        return;
    }
    let (_o, edge, _p) = live("g1play").await;
    // librtmp's options follow the URL in one location; gst-launch joins its arguments and
    // honours the quotes.
    let location = format!("\"{} live=1\"", edge.url("g1play"));
    let cmd = gst(&gst_play_pipeline("rtmpsrc", &location));
    let (ok, out, err) = run_bounded(cmd, Duration::from_secs(30)).await;
    let bad = gst_rtmp_complaints(&err);
    let (v, a) = (gst_buffers(&out, "v"), gst_buffers(&out, "a"));
    assert!(ok && bad.is_empty(), "rtmpsrc: ok={ok}\n{}", bad.join("\n"));
    assert!(
        v > 50 && a > 50,
        "rtmpsrc got {v} video and {a} audio buffers"
    );
}

// --- librtmp through python3-librtmp -------------------------------------------------------

/// Shared Python prelude: librtmp's log at INFO to stderr, each line with its level. librtmp
/// prints a stream's metadata at WARNING level ("Metadata:" and indented "key value" lines);
/// those are its way of showing metadata, not complaints, and are left out.
const PY_LOG: &str = r#"
import sys, time, librtmp
LEVELS = {1: "CRIT", 2: "ERROR", 3: "WARNING", 4: "INFO", 5: "DEBUG", 6: "DEBUG2"}
librtmp.librtmp.RTMP_LogSetLevel(4)
def log(level, msg):
    if msg == "Metadata:" or msg.startswith("  "):
        return
    sys.stderr.write("librtmp %s: %s\n" % (LEVELS.get(level, level), msg))
librtmp.add_log_callback(log)
"#;

/// Publishes the clip's first `secs` seconds at its own pace (`-re`).
const PY_PUBLISH: &str = r#"
url, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(path, "rb").read()
conn = librtmp.RTMP(url, live=True, timeout=10)
conn.connect()
stream = conn.create_stream(writeable=True)
start, pos, sent = time.monotonic(), 13, 0
while pos + 11 <= len(data):
    size = int.from_bytes(data[pos + 1:pos + 4], "big")
    ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
    end = pos + 11 + size + 4
    if ts / 1000.0 > secs:
        break
    delay = ts / 1000.0 - (time.monotonic() - start)
    if delay > 0:
        time.sleep(delay)
    stream.write(data[pos:end])
    sent, pos = sent + 1, end
stream.close()
print("tags", sent)
"#;

/// Reads `want` bytes of FLV (10 s at most).
const PY_PLAY: &str = r#"
url, want = sys.argv[1], int(sys.argv[2])
conn = librtmp.RTMP(url, live=True, timeout=10)
conn.connect()
stream = conn.create_stream()
got, end = 0, time.monotonic() + 10
while got < want and time.monotonic() < end:
    chunk = stream.read(65536)
    if not chunk:
        break
    got += len(chunk)
stream.close()
print("bytes", got)
"#;

/// librtmp's warnings, errors and criticals.
fn librtmp_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.starts_with("librtmp WARNING")
                || l.starts_with("librtmp ERROR")
                || l.starts_with("librtmp CRIT")
                || l.contains("Traceback")
                || l.contains("Error")
        })
        .collect()
}

fn python(script: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-c").arg(format!("{PY_LOG}{script}")).args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_librtmp_publishes() {
    init();
    let t = "python_librtmp_publishes";
    if !have_python_librtmp(t) {
        return;
    }
    let (ok, out, err) = publish_with(
        "pypub",
        |url| {
            python(
                PY_PUBLISH,
                &[
                    url.to_string(),
                    clip_path().display().to_string(),
                    "3".into(),
                ],
            )
        },
        Duration::from_secs(30),
    )
    .await;
    let bad = librtmp_complaints(&err);
    assert!(ok && bad.is_empty(), "librtmp publish: ok={ok}\n{err}");
    assert!(out.starts_with("tags "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_librtmp_plays() {
    init();
    let t = "python_librtmp_plays";
    if !have_python_librtmp(t) {
        return;
    }
    let (_o, edge, _p) = live("pyplay").await;
    let cmd = python(PY_PLAY, &[edge.url("pyplay"), "1000000".into()]);
    let (ok, out, err) = run_bounded(cmd, Duration::from_secs(30)).await;
    let bad = librtmp_complaints(&err);
    assert!(ok && bad.is_empty(), "librtmp play: ok={ok}\n{err}");
    let got: u64 = out
        .trim()
        .strip_prefix("bytes ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(got >= 1_000_000, "librtmp read {got} bytes");
}

// --- ffmpeg (libavformat's RTMP) -----------------------------------------------------------

/// ffmpeg's warnings and errors (it prints nothing else at `-loglevel warning`), less the
/// FLV muxer's note that a network output cannot be rewound to patch the header.
fn ffmpeg_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Failed to update header with correct"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_without_warnings() {
    init();
    let t = "ffmpeg_publishes_without_warnings";
    if !have("ffmpeg", t) {
        return;
    }
    let (ok, _out, err) = publish_with(
        "ffpub",
        |url| {
            let mut cmd = Command::new("ffmpeg");
            cmd.args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "warning",
                "-re",
                "-i",
            ])
            .arg(clip_path())
            .args(["-t", "3", "-c", "copy", "-f", "flv", url]);
            cmd
        },
        Duration::from_secs(30),
    )
    .await;
    let bad = ffmpeg_complaints(&err);
    assert!(ok && bad.is_empty(), "ffmpeg publish: ok={ok}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_without_warnings() {
    init();
    let t = "ffmpeg_plays_without_warnings";
    if !have("ffmpeg", t) {
        return;
    }
    let (_o, edge, _p) = live("ffplay").await;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-stats"])
        .args(["-rw_timeout", "10000000", "-i", &edge.url("ffplay")])
        .args(["-t", "3", "-f", "null", "-"]);
    let (ok, _out, err) = run_bounded(cmd, Duration::from_secs(30)).await;
    // -stats lines ("frame= ... ") show the frames decoded; they are not complaints.
    let bad: Vec<&str> = ffmpeg_complaints(&err)
        .into_iter()
        .filter(|l| !l.contains("frame=") && !l.contains("size="))
        .collect();
    assert!(ok && bad.is_empty(), "ffmpeg play: ok={ok}\n{err}");
    let frames: u64 = err
        .rsplit("frame=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 30, "ffmpeg decoded {frames} frames:\n{err}");
}

// --- VLC 3 ---------------------------------------------------------------------------------

/// VLC's warnings and errors about the RTMP input: its own modules that read the network
/// (access, stream, demux, avformat) and libavformat's `[rtmp @ ...]` / `[flv @ ...]` lines.
/// The environment's (no PulseAudio, no D-Bus, no interface) and the TS muxer's note at
/// quit ("main mux warning: no more input streams") are not about the server.
fn vlc_complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let libav = (l.starts_with("[rtmp @") || l.starts_with("[flv @"))
                && !l.contains("Starting connection")
                && !l.contains("Successfully connected");
            // "[0000...] MODULE TYPE LEVEL: text": the module and type name the room.
            let header = l
                .split_once("] ")
                .and_then(|(_, rest)| rest.split_once(": "))
                .map(|(h, _)| h)
                .unwrap_or("");
            let words: Vec<&str> = header.split_whitespace().collect();
            let vlc = matches!(words.last(), Some(&"error") | Some(&"warning"))
                && words.iter().any(|w| {
                    ["access", "stream", "demux", "avformat", "rtmp", "input"].contains(w)
                });
            libav || vlc
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlc_plays() {
    init();
    let t = "vlc_plays";
    if !have("cvlc", t) {
        return;
    }
    let (_o, edge, _p) = live("vlcplay").await;
    let dir = TempDir::new("vlc");
    let out = dir.0.join("out.ts");
    // VLC refuses to run as root: drop to nobody, who must be able to write the output.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = if nix::unistd::geteuid().is_root() {
        if !have("setpriv", t) {
            return;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "cvlc",
        ]);
        c
    } else {
        Command::new("cvlc")
    };
    cmd.env("HOME", &dir.0)
        .args(["-I", "dummy", "-v", "--run-time", "4"])
        .arg("--sout")
        .arg(format!("#std{{access=file,mux=ts,dst={}}}", out.display()))
        .arg(edge.url("vlcplay"))
        .arg("vlc://quit");
    let (ok, _stdout, err) = run_bounded(cmd, Duration::from_secs(30)).await;
    let bad = vlc_complaints(&err);
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(ok && bad.is_empty(), "vlc: ok={ok}\n{}", bad.join("\n"));
    assert!(size > 200_000, "vlc wrote {size} bytes of MPEG-TS:\n{err}");
}

// --- The answers themselves, on the wire ---------------------------------------------------

use common::rtmp::client::{is_command, RtmpClient};
use common::rtmp::command::{self as cmd, Command as Amf0Command};
use rml_amf0::Amf0Value;

/// Reads until the server sends the command `name` (media and other commands skipped).
async fn next_command(c: &mut RtmpClient, name: &str) -> Amf0Command {
    let read = async {
        loop {
            let msg = c
                .read_message()
                .await
                .expect("the server keeps the connection");
            if is_command(&msg) {
                let got = cmd::parse_command(&msg).unwrap();
                if got.name == name {
                    return got;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| panic!("no {name} within 5 s"))
}

fn send(c: &mut RtmpClient, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
    let p = cmd::command(name, txn, Amf0Value::Null, args);
    c.writer.queue_command(stream_id, &p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_keeps_the_connection_and_it_may_publish_again() {
    init();
    let origin = origin().await;
    let url = origin.rtmp_url("again");
    let mut c = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .unwrap();
    c.publish("again", Duration::from_secs(5)).await.unwrap();
    let fc = next_command(&mut c, "onFCPublish").await;
    assert_eq!(fc.property("code"), Some("NetStream.Publish.Start"));
    assert!(origin.hub.has_source("live/again"));

    // What ffmpeg, librtmp and GStreamer send before they close: FCUnpublish, deleteStream.
    send(&mut c, 0, "FCUnpublish", 7.0, vec![cmd::string("again")]);
    let sid = c.stream_id as f64;
    send(&mut c, 0, "deleteStream", 0.0, vec![Amf0Value::Number(sid)]);
    c.writer.flush().await.unwrap();
    let un = next_command(&mut c, "onFCUnpublish").await;
    assert_eq!(un.property("code"), Some("NetStream.Unpublish.Success"));
    let res = next_command(&mut c, "_result").await;
    assert_eq!(res.transaction_id, 7.0);
    assert!(
        wait_until(Duration::from_secs(5), || !origin
            .hub
            .has_source("live/again"))
        .await,
        "the publish did not end"
    );

    // The same connection publishes again, and getStreamLength gets a number.
    c.publish("again", Duration::from_secs(5)).await.unwrap();
    assert!(origin.hub.has_source("live/again"));
    send(
        &mut c,
        0,
        "getStreamLength",
        9.0,
        vec![cmd::string("again")],
    );
    c.writer.flush().await.unwrap();
    let len = loop {
        let r = next_command(&mut c, "_result").await;
        if r.transaction_id == 9.0 {
            break r;
        }
    };
    assert_eq!(len.number_arg(0), Some(0.0), "{len:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_commands_are_answered_and_delete_stream_keeps_the_connection() {
    init();
    let (_o, edge, _p) = live("cmds").await;
    let url = edge.rtmp_url("cmds");
    let mut c = RtmpClient::connect_url(&url, Duration::from_secs(5))
        .await
        .unwrap();
    send(&mut c, 0, "FCSubscribe", 3.0, vec![cmd::string("cmds")]);
    c.writer.flush().await.unwrap();
    let sub = next_command(&mut c, "onFCSubscribe").await;
    assert_eq!(sub.property("code"), Some("NetStream.Play.Start"));
    c.play("cmds", Duration::from_secs(5)).await.unwrap();
    let sid = c.stream_id;

    send(
        &mut c,
        sid,
        "pause",
        0.0,
        vec![Amf0Value::Boolean(true), Amf0Value::Number(0.0)],
    );
    c.writer.flush().await.unwrap();
    let p = next_command(&mut c, "onStatus").await;
    assert_eq!(p.property("code"), Some("NetStream.Pause.Notify"));
    send(
        &mut c,
        sid,
        "pause",
        0.0,
        vec![Amf0Value::Boolean(false), Amf0Value::Number(0.0)],
    );
    c.writer.flush().await.unwrap();
    let p = next_command(&mut c, "onStatus").await;
    assert_eq!(p.property("code"), Some("NetStream.Unpause.Notify"));
    send(&mut c, sid, "seek", 0.0, vec![Amf0Value::Number(0.0)]);
    c.writer.flush().await.unwrap();
    let p = next_command(&mut c, "onStatus").await;
    assert_eq!(p.property("code"), Some("NetStream.Seek.Notify"));
    // Media resumes after the unpause.
    let media = async {
        loop {
            let m = c.read_message().await.unwrap();
            if m.type_id == common::rtmp::chunk::msg_type::VIDEO {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), media)
        .await
        .expect("video after the unpause");

    // deleteStream ends the play, not the connection: the same connection plays again.
    send(
        &mut c,
        0,
        "deleteStream",
        0.0,
        vec![Amf0Value::Number(sid as f64)],
    );
    c.writer.flush().await.unwrap();
    c.play("cmds", Duration::from_secs(5)).await.unwrap();
}
