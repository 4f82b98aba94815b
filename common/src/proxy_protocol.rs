//! PROXY protocol v2 (haproxy's doc/proxy-protocol.txt): the balancer prepends a header so
//! the edge sees the viewer's real address.
//!
//! [`encode_v2`] builds the header (sent in one write, first on the stream); [`encode_v2_local`]
//! the LOCAL form a proxy sends on its own connections (health checks); [`parse_v2`] is
//! sans-I/O: `Ok(None)` for "need more bytes", `Ok(Some((header, len)))` once complete.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

pub const SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Largest header we accept (16-byte fixed part + addresses + TLVs).
const MAX_LEN: usize = 16 + 536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client and the address it connected to; `None` for a LOCAL command
    /// (health checks from the proxy itself) or an unsupported address family.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no PROXY protocol v2 signature (first bytes {0:02x?})")]
    NoSignature(Vec<u8>),
    #[error("unsupported PROXY protocol version/command byte {0:#04x}")]
    BadVersion(u8),
    #[error("PROXY header length {0} is too short for its address family or over {MAX_LEN}")]
    BadLength(usize),
}

/// Whether `buf` starts like a PROXY v2 header (enough to tell with the first bytes).
pub fn looks_like_v2(buf: &[u8]) -> bool {
    let n = buf.len().min(SIGNATURE.len());
    n > 0 && buf[..n] == SIGNATURE[..n]
}

/// A PROXY v2 header for a TCP connection from `src` to `dst`.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    let (src, dst) = match (src, dst) {
        (SocketAddr::V4(_), SocketAddr::V6(d)) => (
            SocketAddr::new(IpAddr::V6(to_v6(src.ip())), src.port()),
            SocketAddr::V6(d),
        ),
        (SocketAddr::V6(s), SocketAddr::V4(_)) => (
            SocketAddr::V6(s),
            SocketAddr::new(IpAddr::V6(to_v6(dst.ip())), dst.port()),
        ),
        other => other,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&to_v6(s).octets());
            out.extend_from_slice(&to_v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// A PROXY v2 header with the LOCAL command: the connection is the proxy's own (a health
/// check), so the receiver keeps the real connection endpoints (spec section 2.2).
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x20); // version 2, LOCAL
    out.push(0x00); // AF_UNSPEC, UNSPEC
    out.extend_from_slice(&0u16.to_be_bytes());
    out
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Parses a header at the start of `buf`.
pub fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if !looks_like_v2(buf) {
        return Err(ProxyError::NoSignature(buf[..buf.len().min(12)].to_vec()));
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 || (ver_cmd & 0x0f) > 1 {
        return Err(ProxyError::BadVersion(ver_cmd));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if 16 + len > MAX_LEN {
        return Err(ProxyError::BadLength(len));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let local = ver_cmd & 0x0f == 0;
    let addrs = match buf[13] {
        _ if local => None,
        0x11 => {
            if len < 12 {
                return Err(ProxyError::BadLength(len));
            }
            let s = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let d = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sp = u16::from_be_bytes([body[8], body[9]]);
            let dp = u16::from_be_bytes([body[10], body[11]]);
            Some((SocketAddr::new(s.into(), sp), SocketAddr::new(d.into(), dp)))
        }
        0x21 => {
            if len < 36 {
                return Err(ProxyError::BadLength(len));
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[..16]);
            d.copy_from_slice(&body[16..32]);
            let sp = u16::from_be_bytes([body[32], body[33]]);
            let dp = u16::from_be_bytes([body[34], body[35]]);
            let s = Ipv6Addr::from(s);
            let d = Ipv6Addr::from(d);
            let s = s.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(s));
            let d = d.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(d));
            Some((SocketAddr::new(s, sp), SocketAddr::new(d, dp)))
        }
        _ => None,
    };
    Ok(Some((ProxyHeader { addrs }, 16 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_v4_and_v6() {
        for (s, d) in [
            ("198.18.0.7:40000", "198.18.0.1:1935"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:1935"),
        ] {
            let (s, d): (SocketAddr, SocketAddr) = (s.parse().unwrap(), d.parse().unwrap());
            let h = encode_v2(s, d);
            for cut in 0..h.len() {
                assert_eq!(parse_v2(&h[..cut]).unwrap(), None, "prefix {cut}");
            }
            let mut with_data = h.clone();
            with_data.extend_from_slice(b"\x03rtmp");
            let (hdr, n) = parse_v2(&with_data).unwrap().unwrap();
            assert_eq!(n, h.len());
            assert_eq!(hdr.addrs, Some((s, d)));
        }
    }

    #[test]
    fn local_header_parses_without_addresses() {
        let h = encode_v2_local();
        assert_eq!(h.len(), 16);
        for cut in 0..h.len() {
            assert_eq!(parse_v2(&h[..cut]).unwrap(), None, "prefix {cut}");
        }
        assert_eq!(
            parse_v2(&h).unwrap(),
            Some((ProxyHeader { addrs: None }, 16))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            parse_v2(b"\x03abc"),
            Err(ProxyError::NoSignature(_))
        ));
        let mut h = encode_v2("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap());
        h[12] = 0x31;
        assert_eq!(parse_v2(&h), Err(ProxyError::BadVersion(0x31)));
        let mut h = encode_v2("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap());
        h[15] = 4;
        assert_eq!(parse_v2(&h), Err(ProxyError::BadLength(4)));
        h[14] = 0xff;
        assert!(matches!(parse_v2(&h), Err(ProxyError::BadLength(_))));
    }
}

/// Why [`read_source`] found no client address.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("closed before the first bytes")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A header where none may be, none where one must be, or a malformed one.
    #[error("{0}")]
    Refused(String),
}

/// Reads a connection's first bytes into `buf`: from a peer that is `expected` to send one
/// (a balancer in `set_real_ip_from`), a PROXY v2 header whose source is returned as the
/// client (and removed from `buf`); from any other peer, makes sure none is there (a forged
/// header, or a balancer not listed) and returns `peer`. What follows stays in `buf`.
pub async fn read_source<R: tokio::io::AsyncRead + Unpin>(
    tcp: &mut R,
    buf: &mut bytes::BytesMut,
    peer: SocketAddr,
    expected: bool,
) -> Result<SocketAddr, SourceError> {
    use tokio::io::AsyncReadExt;
    loop {
        if tcp.read_buf(buf).await? == 0 {
            return Err(SourceError::Closed);
        }
        if !expected {
            if looks_like_v2(buf) && buf.len() >= 12 {
                return Err(SourceError::Refused(format!(
                    "PROXY protocol header from {peer}, which may not send one (proxy_protocol = true and set_real_ip_from must include it)"
                )));
            }
            if looks_like_v2(buf) {
                continue;
            }
            return Ok(peer);
        }
        match parse_v2(buf) {
            Ok(None) => continue,
            Ok(Some((header, len))) => {
                let _ = buf.split_to(len);
                return Ok(header.addrs.map(|(src, _)| src).unwrap_or(peer));
            }
            Err(e) => {
                return Err(SourceError::Refused(format!(
                    "expected a PROXY protocol v2 header from {peer} (in set_real_ip_from): {e}"
                )))
            }
        }
    }
}
