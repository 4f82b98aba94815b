//! An async RTMP client: TCP connect, handshake, `connect`, then `play` or `publish`.
//!
//! Used by the edge's upstream pull and publish forwarding, by `edge play` / `edge publish`,
//! and by the balancer's `rtmp_check`. Every step is bounded by the caller's timeout.

use super::chunk::{msg_type, Message};
use super::command::{self, user_control, Command};
use super::conn::{handshake_client, RtmpError, RtmpReader, RtmpWriter};
use super::url::RtmpUrl;
use bytes::{Buf, BytesMut};
use rml_amf0::Amf0Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// What a client sends its chunks with.
pub const CLIENT_CHUNK_SIZE: u32 = 4096;
/// Largest message a client accepts (a 4K keyframe fits).
pub const CLIENT_MAX_MESSAGE: usize = 16 * 1024 * 1024 - 1;

pub struct RtmpClient {
    pub reader: RtmpReader<OwnedReadHalf>,
    pub writer: RtmpWriter<OwnedWriteHalf>,
    pub peer: SocketAddr,
    /// The message stream created for play/publish (0 before).
    pub stream_id: u32,
    next_txn: f64,
}

impl RtmpClient {
    /// Connects to `addr` and runs handshake + `connect(app)`, all within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        url: &RtmpUrl,
        timeout: Duration,
    ) -> Result<RtmpClient, RtmpError> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, url))
            .await
            .map_err(|_| RtmpError::Timeout("connecting"))?
    }

    /// Resolves the URL's host and connects to the first address that answers.
    pub async fn connect_url(url: &RtmpUrl, timeout: Duration) -> Result<RtmpClient, RtmpError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await?
            .collect();
        let mut last = RtmpError::Protocol(format!("{} resolves to no address", url.host));
        for addr in addrs {
            match Self::connect(addr, url, timeout).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// [`RtmpClient::connect`] from a chosen local address (tests of address-based rules).
    pub async fn connect_from(
        local: std::net::IpAddr,
        addr: SocketAddr,
        url: &RtmpUrl,
        timeout: Duration,
    ) -> Result<RtmpClient, RtmpError> {
        tokio::time::timeout(timeout, async {
            let sock = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            sock.bind(SocketAddr::new(local, 0))?;
            let tcp = sock.connect(addr).await?;
            Self::start(tcp, addr, url).await
        })
        .await
        .map_err(|_| RtmpError::Timeout("connecting"))?
    }

    /// Handshake + `connect(app)` on an already connected socket (after a PROXY header
    /// written by the caller, say).
    pub async fn from_tcp(tcp: TcpStream, url: &RtmpUrl) -> Result<RtmpClient, RtmpError> {
        let addr = tcp.peer_addr()?;
        Self::start(tcp, addr, url).await
    }

    /// [`RtmpClient::connect`] that first writes `preamble` on the stream (the balancer's
    /// health check sends a PROXY protocol header to an edge that expects one).
    pub async fn connect_with_preamble(
        addr: SocketAddr,
        url: &RtmpUrl,
        timeout: Duration,
        preamble: &[u8],
    ) -> Result<RtmpClient, RtmpError> {
        tokio::time::timeout(timeout, async {
            let mut tcp = TcpStream::connect(addr).await?;
            tokio::io::AsyncWriteExt::write_all(&mut tcp, preamble).await?;
            Self::start(tcp, addr, url).await
        })
        .await
        .map_err(|_| RtmpError::Timeout("connecting"))?
    }

    async fn connect_inner(addr: SocketAddr, url: &RtmpUrl) -> Result<RtmpClient, RtmpError> {
        let tcp = TcpStream::connect(addr).await?;
        Self::start(tcp, addr, url).await
    }

    async fn start(
        mut tcp: TcpStream,
        addr: SocketAddr,
        url: &RtmpUrl,
    ) -> Result<RtmpClient, RtmpError> {
        tcp.set_nodelay(true)?;
        let mut buf = BytesMut::with_capacity(4096);
        handshake_client(&mut tcp, &mut buf).await?;
        let (r, w) = tcp.into_split();
        let mut c = RtmpClient {
            reader: RtmpReader::new(r, buf, CLIENT_MAX_MESSAGE),
            writer: RtmpWriter::new(w),
            peer: addr,
            stream_id: 0,
            next_txn: 1.0,
        };
        c.writer.queue_set_chunk_size(CLIENT_CHUNK_SIZE);
        let txn = c.txn();
        let obj = command::object(&[
            ("app", command::string(&url.app)),
            ("type", command::string("nonprivate")),
            (
                "flashVer",
                command::string("FMLE/3.0 (compatible; EdgeFleet)"),
            ),
            ("tcUrl", command::string(&url.tc_url())),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
        ]);
        let payload = command::command("connect", txn, obj, vec![]);
        c.writer.queue_command(0, &payload);
        c.writer.flush().await?;
        c.await_result(txn, "connect").await?;
        Ok(c)
    }

    fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    /// Reads until the `_result`/`_error` of `txn`, answering pings on the way.
    async fn await_result(&mut self, txn: f64, what: &str) -> Result<Command, RtmpError> {
        loop {
            let msg = self.read_message().await?;
            if !is_command(&msg) {
                continue;
            }
            let cmd = command::parse_command(&msg).map_err(RtmpError::Protocol)?;
            if cmd.transaction_id != txn {
                continue;
            }
            match cmd.name.as_str() {
                "_result" => return Ok(cmd),
                "_error" => {
                    return Err(RtmpError::Refused {
                        code: cmd.property("code").unwrap_or(what).to_string(),
                        description: cmd.property("description").unwrap_or("").to_string(),
                    })
                }
                _ => continue,
            }
        }
    }

    /// Reads until an onStatus whose code is `ok_code` (Ok) or whose level is `error` (Err).
    async fn await_status(&mut self, ok_code: &str) -> Result<(), RtmpError> {
        loop {
            let msg = self.read_message().await?;
            if !is_command(&msg) {
                continue;
            }
            let cmd = command::parse_command(&msg).map_err(RtmpError::Protocol)?;
            if cmd.name != "onStatus" {
                continue;
            }
            let code = cmd.property("code").unwrap_or("");
            if code == ok_code {
                return Ok(());
            }
            if cmd.property("level") == Some("error") || code.ends_with("Failed") {
                return Err(RtmpError::Refused {
                    code: code.to_string(),
                    description: cmd.property("description").unwrap_or("").to_string(),
                });
            }
        }
    }

    async fn create_stream(&mut self) -> Result<(), RtmpError> {
        let txn = self.txn();
        let payload = command::command("createStream", txn, Amf0Value::Null, vec![]);
        self.writer.queue_command(0, &payload);
        self.writer.flush().await?;
        let result = self.await_result(txn, "createStream").await?;
        self.stream_id = result.number_arg(0).unwrap_or(1.0) as u32;
        Ok(())
    }

    /// `createStream` + `play(stream)`; returns once the server says Play.Start.
    pub async fn play(&mut self, stream: &str, timeout: Duration) -> Result<(), RtmpError> {
        tokio::time::timeout(timeout, async {
            self.writer.queue_control(
                msg_type::WINDOW_ACK_SIZE,
                &command::window_ack_size(2_500_000),
            );
            self.create_stream().await?;
            let payload = command::command(
                "play",
                0.0,
                Amf0Value::Null,
                vec![command::string(stream), Amf0Value::Number(-2000.0)],
            );
            self.writer.queue_command(self.stream_id, &payload);
            self.writer.queue_control(
                msg_type::USER_CONTROL,
                &set_buffer_length(self.stream_id, 3000),
            );
            self.writer.flush().await?;
            self.await_status("NetStream.Play.Start").await
        })
        .await
        .map_err(|_| RtmpError::Timeout("waiting for Play.Start"))?
    }

    /// `releaseStream`, `FCPublish`, `createStream`, `publish(stream, "live")`; returns once
    /// the server says Publish.Start.
    pub async fn publish(&mut self, stream: &str, timeout: Duration) -> Result<(), RtmpError> {
        tokio::time::timeout(timeout, async {
            let name = command::string(stream);
            let t = self.txn();
            let p = command::command("releaseStream", t, Amf0Value::Null, vec![name.clone()]);
            self.writer.queue_command(0, &p);
            let t = self.txn();
            let p = command::command("FCPublish", t, Amf0Value::Null, vec![name.clone()]);
            self.writer.queue_command(0, &p);
            self.create_stream().await?;
            let p = command::command(
                "publish",
                0.0,
                Amf0Value::Null,
                vec![name, command::string("live")],
            );
            self.writer.queue_command(self.stream_id, &p);
            self.writer.flush().await?;
            self.await_status("NetStream.Publish.Start").await
        })
        .await
        .map_err(|_| RtmpError::Timeout("waiting for Publish.Start"))?
    }

    /// The next message from the server; acknowledgements and ping responses are sent as
    /// they fall due. Not cancel-safe (it may be writing): in a `select!`, read with
    /// `self.reader.read_message()` (cancel-safe) and call [`RtmpClient::respond`] after.
    pub async fn read_message(&mut self) -> Result<Message, RtmpError> {
        let msg = self.reader.read_message().await?;
        self.respond(&msg).await?;
        Ok(msg)
    }

    /// Sends what `msg` calls for: an acknowledgement when one fell due, a ping response.
    pub async fn respond(&mut self, msg: &Message) -> Result<(), RtmpError> {
        let mut wrote = false;
        if let Some(seq) = self.reader.take_ack() {
            self.writer
                .queue_control(msg_type::ACK, &command::acknowledgement(seq));
            wrote = true;
        }
        if msg.type_id == msg_type::USER_CONTROL && msg.payload.len() >= 6 {
            let mut p = &msg.payload[..];
            if p.get_u16() == user_control::PING_REQUEST {
                let ts = p.get_u32();
                self.writer.queue_control(
                    msg_type::USER_CONTROL,
                    &command::user_control(user_control::PING_RESPONSE, ts),
                );
                wrote = true;
            }
        }
        if wrote {
            self.writer.flush().await?;
        }
        Ok(())
    }

    /// Sends one media or data message on the published stream.
    pub async fn send_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), RtmpError> {
        let csid = match type_id {
            msg_type::AUDIO => super::chunk::csid::AUDIO,
            msg_type::VIDEO => super::chunk::csid::VIDEO,
            _ => super::chunk::csid::DATA,
        };
        self.writer
            .queue(csid, timestamp, type_id, self.stream_id, payload);
        self.writer.flush().await
    }
}

pub fn is_command(msg: &Message) -> bool {
    msg.type_id == msg_type::COMMAND_AMF0 || msg.type_id == msg_type::COMMAND_AMF3
}

fn set_buffer_length(stream_id: u32, ms: u32) -> bytes::Bytes {
    let mut b = BytesMut::with_capacity(10);
    bytes::BufMut::put_u16(&mut b, user_control::SET_BUFFER_LENGTH);
    bytes::BufMut::put_u32(&mut b, stream_id);
    bytes::BufMut::put_u32(&mut b, ms);
    b.freeze()
}
