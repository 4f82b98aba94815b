//! One RTMP connection's two sides over any async byte stream, and the handshake.
//!
//! [`RtmpReader`] turns bytes into messages with our [`ChunkDecoder`], applies the peer's
//! protocol-control messages to itself (Set Chunk Size, Abort, Window Acknowledgement Size)
//! and tells the owner when an Acknowledgement is due (cumulative byte count, as the spec
//! says — rml_rtmp's is not). [`RtmpWriter`] encodes with our chunk encoder.

use super::chunk::{self, csid, msg_type, ChunkDecoder, ChunkError, Message};
use super::command;
use bytes::{Buf, Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use std::io;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Error)]
pub enum RtmpError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("peer closed the connection")]
    Closed,
    #[error("refused: {code}: {description}")]
    Refused { code: String, description: String },
}

/// Runs the server side of the handshake, starting with any bytes already in `buf`. Bytes
/// the client sent after C2 are left in `buf`.
pub async fn handshake_server<S>(io: &mut S, buf: &mut BytesMut) -> Result<(), RtmpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    run_handshake(io, buf, Handshake::new(PeerType::Server), Vec::new()).await
}

/// Runs the client side of the handshake. Bytes after S2 stay in `buf`.
pub async fn handshake_client<S>(io: &mut S, buf: &mut BytesMut) -> Result<(), RtmpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| RtmpError::Handshake(format!("{e:?}")))?;
    run_handshake(io, buf, hs, c0c1).await
}

async fn run_handshake<S>(
    io: &mut S,
    buf: &mut BytesMut,
    mut hs: Handshake,
    first: Vec<u8>,
) -> Result<(), RtmpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !first.is_empty() {
        io.write_all(&first).await?;
    }
    // Bytes the caller already read (after a PROXY header, say) go first.
    let mut pending = buf.split();
    let mut tmp = [0u8; 4096];
    loop {
        let input: &[u8] = if !pending.is_empty() {
            &pending
        } else {
            let n = io.read(&mut tmp).await?;
            if n == 0 {
                return Err(RtmpError::Handshake(
                    "peer closed the connection mid-handshake".into(),
                ));
            }
            &tmp[..n]
        };
        let result = hs.process_bytes(input);
        pending.clear();
        match result.map_err(|e| RtmpError::Handshake(format!("{e:?}")))? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                if !response_bytes.is_empty() {
                    io.write_all(&response_bytes).await?;
                }
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                if !response_bytes.is_empty() {
                    io.write_all(&response_bytes).await?;
                }
                buf.extend_from_slice(&remaining_bytes);
                return Ok(());
            }
        }
    }
}

/// The reading side of a connection.
pub struct RtmpReader<R> {
    io: R,
    buf: BytesMut,
    decoder: ChunkDecoder,
    bytes_in: u64,
    ack_window: u64,
    acked: u64,
}

impl<R: AsyncRead + Unpin> RtmpReader<R> {
    /// `buf` holds bytes already read past the handshake (only they are kept, not the
    /// handshake's buffer).
    pub fn new(io: R, buf: BytesMut, max_message_size: usize) -> Self {
        RtmpReader {
            io,
            buf: BytesMut::from(&buf[..]),
            decoder: ChunkDecoder::new(max_message_size),
            bytes_in: 0,
            ack_window: 0,
            acked: 0,
        }
    }

    /// Bytes read from the peer so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    pub fn set_max_message_size(&mut self, limit: usize) {
        self.decoder.set_max_message_size(limit);
    }

    /// The sequence number to acknowledge, when the peer's window has been crossed since the
    /// last acknowledgement.
    pub fn take_ack(&mut self) -> Option<u32> {
        if self.ack_window > 0 && self.bytes_in - self.acked >= self.ack_window {
            self.acked = self.bytes_in;
            Some(self.bytes_in as u32)
        } else {
            None
        }
    }

    /// The next message, with protocol control (chunk size, abort, ack window) applied.
    /// Those control messages are returned too, for logging; `Err(Closed)` at a clean EOF.
    pub async fn read_message(&mut self) -> Result<Message, RtmpError> {
        loop {
            if let Some(msg) = self.decoder.decode(&mut self.buf)? {
                self.apply_control(&msg)?;
                return Ok(msg);
            }
            // Small reads until the peer has sent much: a player sends a few commands and
            // acknowledgements, and a thousand idle players should not hold 4 KiB each.
            let (low, grow) = match self.bytes_in < 65536 {
                true => (128, 512),
                false => (1024, 4096),
            };
            if self.buf.capacity() - self.buf.len() < low {
                self.buf.reserve(grow);
            }
            let n = self.io.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    RtmpError::Closed
                } else {
                    RtmpError::Protocol(format!(
                        "connection closed inside a chunk ({} bytes pending)",
                        self.buf.len()
                    ))
                });
            }
            self.bytes_in += n as u64;
        }
    }

    fn apply_control(&mut self, msg: &Message) -> Result<(), RtmpError> {
        let v = || {
            let mut p = &msg.payload[..];
            if p.len() >= 4 {
                Ok(p.get_u32())
            } else {
                Err(RtmpError::Protocol(format!(
                    "control message type {} too short ({} bytes)",
                    msg.type_id,
                    msg.payload.len()
                )))
            }
        };
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE => self.decoder.set_chunk_size(v()?)?,
            msg_type::ABORT => self.decoder.abort(v()?),
            msg_type::WINDOW_ACK_SIZE => self.ack_window = v()? as u64,
            _ => {}
        }
        Ok(())
    }
}

/// The writing side of a connection: encodes messages with our chunk size.
pub struct RtmpWriter<W> {
    io: W,
    chunk_size: usize,
    out: BytesMut,
}

impl<W: AsyncWrite + Unpin> RtmpWriter<W> {
    pub fn new(io: W) -> Self {
        RtmpWriter {
            io,
            chunk_size: chunk::DEFAULT_CHUNK_SIZE,
            out: BytesMut::new(),
        }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }

    pub fn get_ref(&self) -> &W {
        &self.io
    }

    /// Queues a Set Chunk Size and applies it to everything queued after it.
    pub fn queue_set_chunk_size(&mut self, size: u32) {
        self.queue(
            csid::PROTOCOL,
            0,
            msg_type::SET_CHUNK_SIZE,
            0,
            &command::set_chunk_size(size),
        );
        self.chunk_size = size as usize;
    }

    /// Queues one message; nothing is written until [`RtmpWriter::flush`].
    pub fn queue(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        chunk::encode(
            &mut self.out,
            csid,
            ts,
            type_id,
            stream_id,
            payload,
            self.chunk_size,
        );
    }

    /// Queues a command on the command chunk stream.
    pub fn queue_command(&mut self, stream_id: u32, payload: &Bytes) {
        self.queue(csid::COMMAND, 0, msg_type::COMMAND_AMF0, stream_id, payload);
    }

    pub fn queue_control(&mut self, type_id: u8, payload: &Bytes) {
        self.queue(csid::PROTOCOL, 0, type_id, 0, payload);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), RtmpError> {
        if !self.out.is_empty() {
            // Taken, not split: the buffer is freed once written (a player's writer is idle
            // after its start).
            let out = std::mem::take(&mut self.out);
            self.io.write_all(&out).await?;
        }
        Ok(())
    }

    /// Writes already-encoded chunks (encoded with this writer's chunk size).
    pub async fn write_raw(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        self.flush().await?;
        self.io.write_all(data).await?;
        Ok(())
    }
}
