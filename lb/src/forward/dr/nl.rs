//! Reads a DR table's counters and connection table straight from the kernel over netlink
//! (`NETLINK_NETFILTER`, nf_tables dumps), without running `nft`.
//!
//! Why not `nft -j list ...`: every run is a process that loads its own cache of the table
//! (the Maglev map included) and prints JSON that lb parses again. Once a second, for
//! status and /metrics, that was most of what DR costs the lb at a few hundred viewers
//! (README, "Benchmark: direct routing"). A dump here is two or three syscalls and a walk of
//! the attributes: no process, no JSON, no cache.
//!
//! Writes stay with `nft -f` ([`super::nft`]): they are rare (a plan change) and one
//! transaction of nft's own syntax is easier to read and review than hand-built netlink
//! batches. Only the reads are here.
//!
//! Socket: netlink-sys; message and attribute framing: netlink-packet-core's buffers, which
//! check every length (a short or garbled reply is an error, never a panic).

use super::{DrError, Mac};
use netlink_packet_core::{
    NetlinkBuffer, NlaBuffer, NlasIterator, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_GETOBJ: u16 = 19;
const NFPROTO_NETDEV: u8 = 5;
const NFNETLINK_V0: u8 = 0;
/// nfgenmsg: family, version, resource id (big endian).
const NFGENMSG_LEN: usize = 4;

const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// A connection-table key: the viewer's address and port (`ip saddr . tcp sport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl std::fmt::Display for Flow {
    /// nft's element syntax, as `delete element` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} . {}", self.ip, self.port)
    }
}

/// A set element as the kernel stores it: key bytes and data bytes (empty for a set).
pub type Element = (Vec<u8>, Vec<u8>);

/// One netlink socket for the reads of a control loop (kept between reads).
pub struct Reader {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new() -> Result<Reader, DrError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)
            .map_err(|e| DrError::Nft(format!("netlink (nf_tables) socket: {e}")))?;
        sock.bind_auto()
            .map_err(|e| DrError::Nft(format!("netlink (nf_tables) bind: {e}")))?;
        // A 60-second timeout would stall the control loop; the kernel answers a dump at
        // once, so a reply missing for 2 s means something is wrong.
        let _ = set_recv_timeout(&sock, std::time::Duration::from_secs(2));
        Ok(Reader {
            sock,
            seq: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Named counters of a netdev table: name -> (packets, bytes).
    pub fn counters(&mut self, table: &str) -> Result<BTreeMap<String, (u64, u64)>, DrError> {
        let mut attrs = Vec::new();
        put_attr(&mut attrs, NFTA_OBJ_TABLE, &cstr(table));
        put_attr(&mut attrs, NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes());
        let mut out = BTreeMap::new();
        self.dump(NFT_MSG_GETOBJ, &attrs, |payload| {
            if let Some((name, c)) = parse_counter_obj(payload) {
                out.insert(name, c);
            }
        })?;
        Ok(out)
    }

    /// Elements of a set or map of a netdev table: key bytes and data bytes (empty for a set).
    pub fn elements(&mut self, table: &str, set: &str) -> Result<Vec<Element>, DrError> {
        let mut attrs = Vec::new();
        put_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        put_attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &cstr(set));
        let mut out = Vec::new();
        self.dump(NFT_MSG_GETSETELEM, &attrs, |payload| {
            parse_elements(payload, &mut out)
        })?;
        Ok(out)
    }

    /// The connection table: flow -> the MAC it is forwarded to.
    pub fn conn(&mut self, table: &str) -> Result<Vec<(Flow, Mac)>, DrError> {
        Ok(self
            .elements(table, "conn")?
            .iter()
            .filter_map(|(k, d)| Some((flow(k)?, mac(d)?)))
            .collect())
    }

    /// The flows of the closing set (a FIN or RST was seen).
    pub fn closing(&mut self, table: &str) -> Result<Vec<Flow>, DrError> {
        Ok(self
            .elements(table, "closing")?
            .iter()
            .filter_map(|(k, _)| flow(k))
            .collect())
    }

    /// Sends one dump request and hands every reply's payload (after nfgenmsg) to `each`.
    fn dump(&mut self, msg: u16, attrs: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), DrError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = request(msg, seq, attrs);
        self.sock
            .send_to(&req, &SocketAddr::new(0, 0), 0)
            .map_err(|e| DrError::Nft(format!("netlink send: {e}")))?;
        loop {
            self.buf.clear();
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|e| DrError::Nft(format!("netlink receive: {e}")))?;
            match walk_replies(&self.buf, seq, &mut each)? {
                Walk::Done => return Ok(()),
                Walk::More => continue,
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Walk {
    Done,
    More,
}

/// Walks the netlink messages of one datagram: `Done` at NLMSG_DONE, an error at
/// NLMSG_ERROR (errno named), `More` when the dump continues in the next datagram.
/// Messages of another sequence number (a late answer to an earlier request) are skipped.
fn walk_replies(mut data: &[u8], seq: u32, each: &mut impl FnMut(&[u8])) -> Result<Walk, DrError> {
    while !data.is_empty() {
        let nl = NetlinkBuffer::new_checked(data)
            .map_err(|e| DrError::Nft(format!("netlink: malformed reply: {e}")))?;
        let len = nl.length() as usize;
        let kind = nl.message_type();
        let this_seq = nl.sequence_number();
        let payload = nl.payload();
        if this_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(Walk::Done),
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    if code == 0 {
                        return Ok(Walk::Done);
                    }
                    return Err(DrError::Nft(format!(
                        "netlink: the kernel refused the dump: {}",
                        std::io::Error::from_raw_os_error(-code)
                    )));
                }
                _ => {
                    if let Some(p) = payload.get(NFGENMSG_LEN..) {
                        each(p);
                    }
                }
            }
        }
        let step = align4(len).min(data.len());
        if step == 0 {
            break;
        }
        data = &data[step..];
    }
    Ok(Walk::More)
}

fn request(msg: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + NFGENMSG_LEN + attrs.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[NFPROTO_NETDEV, NFNETLINK_V0, 0, 0]);
    b.extend_from_slice(attrs);
    b
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn put_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

/// The attributes of `data` as (type without flags, value); stops at the first malformed one.
fn attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(data)
        .map_while(|a: Result<NlaBuffer<&[u8]>, _>| a.ok())
        .filter_map(|a| {
            let kind = a.kind() & netlink_packet_core::NLA_TYPE_MASK;
            let len = a.length() as usize;
            let whole: &[u8] = a.into_inner();
            Some((kind, whole.get(4..len)?))
        })
}

fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn parse_counter_obj(payload: &[u8]) -> Option<(String, (u64, u64))> {
    let mut name = None;
    let mut counter = None;
    let mut is_counter = false;
    for (kind, v) in attrs(payload) {
        match kind {
            NFTA_OBJ_NAME => {
                let s = v.split(|b| *b == 0).next().unwrap_or(&[]);
                name = std::str::from_utf8(s).ok().map(str::to_string);
            }
            NFTA_OBJ_TYPE => {
                is_counter = v
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    == Some(NFT_OBJECT_COUNTER)
            }
            NFTA_OBJ_DATA => {
                let (mut packets, mut bytes) = (0, 0);
                for (k, x) in attrs(v) {
                    match k {
                        NFTA_COUNTER_PACKETS => packets = be64(x).unwrap_or(0),
                        NFTA_COUNTER_BYTES => bytes = be64(x).unwrap_or(0),
                        _ => {}
                    }
                }
                counter = Some((packets, bytes));
            }
            _ => {}
        }
    }
    if !is_counter {
        return None;
    }
    Some((name?, counter.unwrap_or_default()))
}

fn data_value(nested: &[u8]) -> Option<Vec<u8>> {
    attrs(nested)
        .find(|(k, _)| *k == NFTA_DATA_VALUE)
        .map(|(_, v)| v.to_vec())
}

fn parse_elements(payload: &[u8], out: &mut Vec<Element>) {
    for (kind, list) in attrs(payload) {
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (k, elem) in attrs(list) {
            if k != NFTA_LIST_ELEM {
                continue;
            }
            let mut key = None;
            let mut data = Vec::new();
            for (a, v) in attrs(elem) {
                match a {
                    NFTA_SET_ELEM_KEY => key = data_value(v),
                    NFTA_SET_ELEM_DATA => data = data_value(v).unwrap_or_default(),
                    _ => {}
                }
            }
            if let Some(key) = key {
                out.push((key, data));
            }
        }
    }
}

/// `ipv4_addr . inet_service`: each part in a 32-bit register, the port big endian.
fn flow(key: &[u8]) -> Option<Flow> {
    let ip = Ipv4Addr::new(*key.first()?, *key.get(1)?, *key.get(2)?, *key.get(3)?);
    let port = u16::from_be_bytes([*key.get(4)?, *key.get(5)?]);
    Some(Flow { ip, port })
}

fn mac(data: &[u8]) -> Option<Mac> {
    Some(Mac(data.get(..6)?.try_into().ok()?))
}

fn set_recv_timeout(sock: &Socket, t: std::time::Duration) -> std::io::Result<()> {
    // netlink-sys has no setter for SO_RCVTIMEO; socket2 sets it on the borrowed fd.
    socket2::SockRef::from(sock).set_read_timeout(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut b = Vec::new();
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(align4(b.len()), 0);
        b
    }

    fn nested(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_attr(&mut v, kind | netlink_packet_core::NLA_F_NESTED, inner);
        v
    }

    fn counter_reply(seq: u32, name: &str, packets: u64, bytes: u64) -> Vec<u8> {
        let mut p = vec![NFPROTO_NETDEV, 0, 0, 0];
        put_attr(&mut p, NFTA_OBJ_TABLE, &cstr("t"));
        put_attr(&mut p, NFTA_OBJ_NAME, &cstr(name));
        put_attr(&mut p, NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes());
        let mut data = Vec::new();
        put_attr(&mut data, NFTA_COUNTER_BYTES, &bytes.to_be_bytes());
        put_attr(&mut data, NFTA_COUNTER_PACKETS, &packets.to_be_bytes());
        p.extend(nested(NFTA_OBJ_DATA, &data));
        nlmsg((NFNL_SUBSYS_NFTABLES << 8) | 0x12, seq, &p)
    }

    #[test]
    fn counters_from_a_dump_and_its_end() {
        let mut dgram = counter_reply(7, "drop_frag", 10, 600);
        dgram.extend(counter_reply(7, "rs_020000000003", 5, 300));
        let mut seen = BTreeMap::new();
        let w = walk_replies(&dgram, 7, &mut |p| {
            if let Some((n, c)) = parse_counter_obj(p) {
                seen.insert(n, c);
            }
        })
        .unwrap();
        assert_eq!(w, Walk::More);
        assert_eq!(seen["drop_frag"], (10, 600));
        assert_eq!(seen["rs_020000000003"], (5, 300));
        let done = nlmsg(NLMSG_DONE, 7, &0i32.to_ne_bytes());
        assert_eq!(walk_replies(&done, 7, &mut |_| {}).unwrap(), Walk::Done);
    }

    #[test]
    fn conn_elements_decode_to_flows_and_macs() {
        let mut key = Vec::new();
        let mut kv = vec![198, 18, 0, 50];
        kv.extend_from_slice(&40000u16.to_be_bytes());
        kv.extend_from_slice(&[0, 0]);
        put_attr(&mut key, NFTA_DATA_VALUE, &kv);
        let mut data = Vec::new();
        put_attr(&mut data, NFTA_DATA_VALUE, &[2, 0, 0, 0, 0, 3]);
        let mut elem = nested(NFTA_SET_ELEM_KEY, &key);
        elem.extend(nested(NFTA_SET_ELEM_DATA, &data));
        let list = nested(NFTA_LIST_ELEM, &elem);
        let mut p = Vec::new();
        put_attr(&mut p, NFTA_SET_ELEM_LIST_TABLE, &cstr("t"));
        p.extend(nested(NFTA_SET_ELEM_LIST_ELEMENTS, &list));
        let mut out = Vec::new();
        parse_elements(&p, &mut out);
        assert_eq!(out.len(), 1);
        let f = flow(&out[0].0).unwrap();
        assert_eq!(f.to_string(), "198.18.0.50 . 40000");
        assert_eq!(mac(&out[0].1), Some(Mac([2, 0, 0, 0, 0, 3])));
    }

    #[test]
    fn errors_and_garbage_never_panic() {
        let err = nlmsg(NLMSG_ERROR, 3, &(-2i32).to_ne_bytes());
        let e = walk_replies(&err, 3, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("refused"), "{e}");
        // Another request's answer is skipped.
        assert_eq!(walk_replies(&err, 4, &mut |_| {}).unwrap(), Walk::More);
        for n in 0..64usize {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = walk_replies(&junk, 0, &mut |p| {
                let _ = parse_counter_obj(p);
                let mut v = Vec::new();
                parse_elements(p, &mut v);
            });
            let _ = parse_counter_obj(&junk);
            let mut v = Vec::new();
            parse_elements(&junk, &mut v);
            let _ = flow(&junk);
        }
        // A length field claiming more than the datagram.
        let mut lie = counter_reply(1, "x", 1, 1);
        lie[0] = 0xff;
        assert!(walk_replies(&lie, 1, &mut |_| {}).is_err());
    }
}
