//! The RTMP wire layer shared by the edge server, its tools and the balancer's `rtmp_check`.
//!
//! - [`chunk`]: our chunk codec (see its docs for why it is not rml_rtmp's).
//! - [`command`]: building and reading AMF0 commands; the AMF0 encoding itself and the
//!   handshake are rml_rtmp's and rml_amf0's.
//! - [`conn`]: a connection's reading side (chunks -> messages, protocol control, acks) and
//!   writing side, plus the handshake over a socket.
//! - [`client`]: an async RTMP client: connect, then play or publish.
//! - [`media`]: what a media message is (keyframe, sequence header) from its first bytes.
//! - [`url`]: `rtmp://host:port/app/stream?query` parsing.

pub mod chunk;
pub mod client;
pub mod command;
pub mod conn;
pub mod media;
pub mod url;

pub use chunk::Message;
pub use conn::{RtmpError, RtmpReader, RtmpWriter};
