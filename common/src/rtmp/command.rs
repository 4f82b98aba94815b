//! AMF0 commands and protocol-control payloads. AMF0 itself is rml_amf0's.

use super::chunk::{msg_type, Message};
use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;
use std::collections::HashMap;

/// Commands are small; a larger one is refused before AMF0 parsing (whose recursion depth
/// grows with nesting, so the size also bounds the stack it can use).
pub const MAX_COMMAND_SIZE: usize = 8 * 1024;

/// One AMF0 command (`connect`, `play`, `_result`, `onStatus`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// The first string argument (the stream name of `play`/`publish`).
    pub fn first_string_arg(&self) -> Option<&str> {
        match self.args.first() {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        }
    }

    /// A string property of the command object (`app`, `tcUrl`) or of the first argument
    /// object (`code` of an onStatus / _error info object).
    pub fn property(&self, key: &str) -> Option<&str> {
        for v in std::iter::once(&self.object).chain(self.args.iter()) {
            if let Amf0Value::Object(o) = v {
                if let Some(Amf0Value::Utf8String(s)) = o.get(key) {
                    return Some(s);
                }
            }
        }
        None
    }

    pub fn number_arg(&self, i: usize) -> Option<f64> {
        match self.args.get(i) {
            Some(Amf0Value::Number(n)) => Some(*n),
            _ => None,
        }
    }
}

/// Parses a command message (AMF0, or AMF3-flagged with AMF0 content as Flash sends).
pub fn parse_command(msg: &Message) -> Result<Command, String> {
    let mut data = &msg.payload[..];
    if data.len() > MAX_COMMAND_SIZE {
        return Err(format!(
            "command of {} bytes exceeds {MAX_COMMAND_SIZE}",
            data.len()
        ));
    }
    if msg.type_id == msg_type::COMMAND_AMF3 && data.first() == Some(&0) {
        data = &data[1..];
    }
    let mut cursor = std::io::Cursor::new(data);
    let values = rml_amf0::deserialize(&mut cursor).map_err(|e| format!("bad AMF0: {e}"))?;
    let mut it = values.into_iter();
    let name = match it.next() {
        Some(Amf0Value::Utf8String(s)) => s,
        other => return Err(format!("command name is not a string: {other:?}")),
    };
    let transaction_id = match it.next() {
        Some(Amf0Value::Number(n)) => n,
        _ => 0.0,
    };
    let object = it.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: it.collect(),
    })
}

/// Encodes an AMF0 command payload.
pub fn command(name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Bytes {
    let mut values = Vec::with_capacity(3 + args.len());
    values.push(Amf0Value::Utf8String(name.to_string()));
    values.push(Amf0Value::Number(txn));
    values.push(object);
    values.extend(args);
    amf0(&values)
}

/// Encodes AMF0 values (a data message payload).
pub fn amf0(values: &Vec<Amf0Value>) -> Bytes {
    // Serialising our own well-formed values cannot fail (no value is out of range).
    Bytes::from(rml_amf0::serialize(values).unwrap_or_default())
}

/// An AMF0 object from string keys.
pub fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<HashMap<_, _>>(),
    )
}

pub fn string(s: &str) -> Amf0Value {
    Amf0Value::Utf8String(s.to_string())
}

/// `onStatus(0, null, {level, code, description})`.
pub fn on_status(level: &str, code: &str, description: &str) -> Bytes {
    command(
        "onStatus",
        0.0,
        Amf0Value::Null,
        vec![object(&[
            ("level", string(level)),
            ("code", string(code)),
            ("description", string(description)),
        ])],
    )
}

fn u32_payload(v: u32) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

pub fn set_chunk_size(size: u32) -> Bytes {
    u32_payload(size)
}

pub fn window_ack_size(size: u32) -> Bytes {
    u32_payload(size)
}

pub fn acknowledgement(sequence: u32) -> Bytes {
    u32_payload(sequence)
}

/// Set Peer Bandwidth with limit type 2 (dynamic).
pub fn set_peer_bandwidth(size: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(5);
    b.put_u32(size);
    b.put_u8(2);
    b.freeze()
}

/// User control events we send or answer.
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

pub fn user_control(event: u16, value: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(6);
    b.put_u16(event);
    b.put_u32(value);
    b.freeze()
}

/// Encoded `@setDataFrame` string marker that publishers put before `onMetaData`.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// Removes a leading `@setDataFrame` from a publisher's data message, as servers do before
/// relaying it to players. Other payloads are returned unchanged (no AMF0 parse needed).
pub fn strip_set_data_frame(payload: &Bytes) -> Bytes {
    if payload.starts_with(SET_DATA_FRAME) {
        payload.slice(SET_DATA_FRAME.len()..)
    } else {
        payload.clone()
    }
}

/// Whether a data message is `onMetaData` (after stripping `@setDataFrame`).
pub fn is_on_metadata(payload: &[u8]) -> bool {
    payload.starts_with(b"\x02\x00\x0aonMetaData")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_roundtrip() {
        let payload = command(
            "play",
            4.0,
            Amf0Value::Null,
            vec![string("cam?key=1"), Amf0Value::Number(-2000.0)],
        );
        let msg = Message {
            csid: 3,
            timestamp: 0,
            type_id: msg_type::COMMAND_AMF0,
            stream_id: 1,
            payload,
        };
        let c = parse_command(&msg).unwrap();
        assert_eq!(c.name, "play");
        assert_eq!(c.transaction_id, 4.0);
        assert_eq!(c.first_string_arg(), Some("cam?key=1"));
        assert_eq!(c.number_arg(1), Some(-2000.0));
    }

    #[test]
    fn garbage_commands_are_errors() {
        for payload in [&b""[..], b"\x00\x00", b"\x03\x00\x01a\x03"] {
            let msg = Message {
                csid: 3,
                timestamp: 0,
                type_id: msg_type::COMMAND_AMF0,
                stream_id: 0,
                payload: Bytes::copy_from_slice(payload),
            };
            assert!(parse_command(&msg).is_err(), "{payload:?}");
        }
    }

    #[test]
    fn strips_set_data_frame() {
        let meta = amf0(&vec![string("@setDataFrame"), string("onMetaData")]);
        let stripped = strip_set_data_frame(&meta);
        assert!(is_on_metadata(&stripped));
    }
}
