//! The edge under hostile or broken clients: a player that never reads, garbage bytes,
//! truncated handshakes, absurd chunk headers, connection floods. Each must end only its own
//! connection, with a logged reason, while a normal player keeps playing.

use bytes::{BufMut, BytesMut};
use common::rtmp::chunk::{self, csid, msg_type};
use common::rtmp::command;
use common::rtmp::conn::handshake_client;
use edge::tools::play::{play_one, ClientResult};
use edgefleet_tests::*;
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

fn init() {
    common::logging::init_for_tests();
}

fn spawn_player(url: String, secs: f64) -> tokio::task::JoinHandle<ClientResult> {
    tokio::spawn(async move {
        let url = common::rtmp::url::RtmpUrl::parse(&url).unwrap();
        play_one(
            &url,
            Instant::now() + Duration::from_secs_f64(secs),
            Arc::new(Semaphore::new(1)),
        )
        .await
    })
}

/// A TCP connection that has done the RTMP handshake and nothing else.
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    handshake_client(&mut tcp, &mut buf).await.unwrap();
    tcp
}

/// Waits until the server closes `tcp` (EOF or reset), draining what it sent.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = vec![0u8; 65536];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, tcp.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn command_chunks(
    name: &str,
    txn: f64,
    object: rml_amf0::Amf0Value,
    args: Vec<rml_amf0::Amf0Value>,
    stream_id: u32,
) -> BytesMut {
    let payload = command::command(name, txn, object, args);
    let mut out = BytesMut::new();
    chunk::encode(
        &mut out,
        csid::COMMAND,
        0,
        msg_type::COMMAND_AMF0,
        stream_id,
        &payload,
        128,
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_player_does_not_delay_others() {
    init();
    let origin = origin_with(|c| c.queue_length = Duration::from_secs(2)).await;
    let (_stop, _pub) = publish_clip(&origin.url("stall"));
    wait_published(&origin.hub, "stall").await;
    let rss_before = rss_kib();

    // A player with a tiny receive window that asks to play and then never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(origin.addr).await.unwrap();
    let mut buf = BytesMut::new();
    handshake_client(&mut stalled, &mut buf).await.unwrap();
    let mut out = command_chunks(
        "connect",
        1.0,
        command::object(&[("app", command::string("live"))]),
        vec![],
        0,
    );
    out.extend_from_slice(&command_chunks(
        "createStream",
        2.0,
        rml_amf0::Amf0Value::Null,
        vec![],
        0,
    ));
    out.extend_from_slice(&command_chunks(
        "play",
        0.0,
        rml_amf0::Amf0Value::Null,
        vec![command::string("stall")],
        1,
    ));
    stalled.write_all(&out).await.unwrap();

    let normal = spawn_player(origin.url("stall"), 6.0);
    assert!(
        wait_until(Duration::from_secs(3), || origin
            .hub
            .info("live/stall")
            .map(|i| i.players)
            == Some(2))
        .await
    );
    let r = normal.await.unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        r.stalls, 0,
        "the normal player stalled because of the stalled one"
    );
    // ~2.2 Mbit/s clip: 30 video + ~43 audio frames a second for ~6 s.
    assert!(
        r.frames > 300,
        "the normal player got only {} frames",
        r.frames
    );
    // The stalled player was disconnected after queue_length (2 s) of blocked writes.
    assert!(
        wait_until(Duration::from_secs(5), || origin
            .hub
            .info("live/stall")
            .map(|i| i.players)
            == Some(0))
        .await,
        "the stalled player was never disconnected"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB with one stalled player"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    init();
    let origin = origin_with(|c| {
        c.max_connections = 40;
        c.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let (_stop, _pub) = publish_clip(&origin.url("bad"));
    wait_published(&origin.hub, "bad").await;
    let normal = spawn_player(origin.url("bad"), 9.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = origin.addr;

    // Random bytes instead of a handshake.
    let mut garbage = vec![0u8; 4096];
    rand::thread_rng().fill_bytes(&mut garbage);
    garbage[0] = 0x07; // never a valid RTMP version byte
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(&garbage).await;
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "garbage: not closed"
    );

    // Random bytes after a valid handshake.
    let mut tcp = handshaken(addr).await;
    rand::thread_rng().fill_bytes(&mut garbage);
    let _ = tcp.write_all(&garbage).await;
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "post-handshake garbage: not closed"
    );

    // A truncated handshake: C0 and half of C1, then silence.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[3u8; 700]).await.unwrap();
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "truncated handshake: not timed out"
    );

    // A chunk header claiming a 16 MB message.
    let mut tcp = handshaken(addr).await;
    let mut hdr = BytesMut::new();
    hdr.put_u8(0x06);
    hdr.put_slice(&[0, 0, 0, 0xff, 0xff, 0xff, msg_type::VIDEO, 1, 0, 0, 0]);
    hdr.put_slice(&[0x17; 128]);
    tcp.write_all(&hdr).await.unwrap();
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "16 MB message: not closed"
    );

    // An absurd Set Chunk Size.
    let mut tcp = handshaken(addr).await;
    let mut m = BytesMut::new();
    chunk::encode(
        &mut m,
        csid::PROTOCOL,
        0,
        msg_type::SET_CHUNK_SIZE,
        0,
        &0x7fff_ffffu32.to_be_bytes(),
        128,
    );
    tcp.write_all(&m).await.unwrap();
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "huge chunk size: not closed"
    );

    // A deeply nested AMF0 command (recursion bomb) within the command size limit.
    let mut tcp = handshaken(addr).await;
    let mut bomb = vec![0x02, 0x00, 0x07];
    bomb.extend_from_slice(b"connect");
    bomb.extend_from_slice(&[0x00, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    while bomb.len() < command::MAX_COMMAND_SIZE - 8 {
        bomb.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    let mut m = BytesMut::new();
    chunk::encode(
        &mut m,
        csid::COMMAND,
        0,
        msg_type::COMMAND_AMF0,
        0,
        &bomb,
        128,
    );
    tcp.write_all(&m).await.unwrap();
    assert!(
        closed_within(&mut tcp, Duration::from_secs(3)).await,
        "AMF0 bomb: not closed"
    );

    // A flood past max_connections, every connection silent.
    let mut flood = Vec::new();
    for _ in 0..80 {
        if let Ok(t) = TcpStream::connect(addr).await {
            flood.push(t);
        }
    }
    let mut closed = 0;
    for t in flood.iter_mut() {
        if closed_within(t, Duration::from_secs(4)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        flood.len(),
        "every flood connection is refused or timed out"
    );

    let r = normal.await.unwrap();
    assert!(
        r.error.is_none(),
        "the normal player was disturbed: {:?}",
        r.error
    );
    assert_eq!(r.stalls, 0, "the normal player stalled");
    // And the server still takes new players.
    let again = spawn_player(origin.url("bad"), 2.0).await.unwrap();
    assert!(
        again.first_frame.is_some(),
        "no new player after the abuse: {:?}",
        again.error
    );
}
