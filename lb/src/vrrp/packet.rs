//! VRRP advertisements on the wire: version 3 (RFC 5798) and version 2 (RFC 3768), IPv4.
//!
//! [`parse`] validates everything keepalived validates about a received advert, each failure a
//! distinct [`Drop`] reason (counted in /metrics): IP TTL 255, version, type, length, VRID,
//! checksum (v3 over the IPv4 pseudo-header; v2 over the VRRP packet), v2 authentication and
//! advertisement interval. [`encode`] builds the VRRP part; the kernel adds the IP header.

use std::net::Ipv4Addr;

pub const PROTO: u8 = 112;
pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds (v3); v2 carries whole seconds, converted here.
    pub interval_cs: u16,
    pub addrs: Vec<Ipv4Addr>,
    /// IP source of the advert.
    pub src: Ipv4Addr,
}

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    Truncated,
    BadTtl,
    BadVersion,
    BadType,
    BadLength,
    OtherVrid,
    BadChecksum,
    BadAuth,
    IntervalMismatch,
}

impl Drop {
    pub fn name(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::BadTtl => "ttl",
            Drop::BadVersion => "version",
            Drop::BadType => "type",
            Drop::BadLength => "length",
            Drop::OtherVrid => "vrid",
            Drop::BadChecksum => "checksum",
            Drop::BadAuth => "auth",
            Drop::IntervalMismatch => "interval",
        }
    }

    pub const ALL: [Drop; 9] = [
        Drop::Truncated,
        Drop::BadTtl,
        Drop::BadVersion,
        Drop::BadType,
        Drop::BadLength,
        Drop::OtherVrid,
        Drop::BadChecksum,
        Drop::BadAuth,
        Drop::IntervalMismatch,
    ];
}

/// What a receiver expects (its own instance's settings).
#[derive(Debug, Clone)]
pub struct Expect {
    pub version: u8,
    pub vrid: u8,
    /// v2 PASS authentication (8 bytes, zero padded), if configured.
    pub auth_pass: Option<[u8; 8]>,
    /// v2: the advert interval must match ours (seconds).
    pub interval_s: u16,
}

/// Internet checksum (RFC 1071).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                None => odd = Some(b),
                Some(hi) => sum += u16::from_be_bytes([hi, b]) as u32,
            }
        }
    }
    if let Some(hi) = odd {
        sum += u16::from_be_bytes([hi, 0]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// An advert to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds (v2 sends whole seconds).
    pub interval_cs: u16,
    pub addrs: &'a [Ipv4Addr],
    /// v2 PASS authentication.
    pub auth_pass: Option<[u8; 8]>,
}

/// Builds the VRRP payload. `src`/`dst` feed the v3 pseudo-header checksum.
pub fn encode(o: &Outgoing, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let Outgoing {
        version,
        vrid,
        priority,
        interval_cs,
        addrs,
        auth_pass,
    } = *o;
    let mut p = Vec::with_capacity(8 + 4 * addrs.len() + 8);
    p.push((version << 4) | 1);
    p.push(vrid);
    p.push(priority);
    p.push(addrs.len() as u8);
    if version == 2 {
        p.push(if auth_pass.is_some() { 1 } else { 0 });
        p.push(((interval_cs / 100).max(1)) as u8);
    } else {
        p.extend_from_slice(&(interval_cs & 0x0fff).to_be_bytes());
    }
    p.extend_from_slice(&[0, 0]);
    for a in addrs {
        p.extend_from_slice(&a.octets());
    }
    if version == 2 {
        p.extend_from_slice(&auth_pass.unwrap_or([0; 8]));
    }
    let sum = if version == 3 {
        checksum(&[&pseudo_header(src, dst, p.len()), &p])
    } else {
        checksum(&[&p])
    };
    p[6..8].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Parses a received IPv4 packet (IP header included, as a raw socket returns it).
pub fn parse(ip: &[u8], expect: &Expect) -> Result<Advert, Drop> {
    if ip.len() < 20 {
        return Err(Drop::Truncated);
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if ihl < 20 || ip.len() < ihl + 8 || total > ip.len() || total < ihl + 8 {
        return Err(Drop::Truncated);
    }
    if ip[8] != 255 {
        return Err(Drop::BadTtl);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let v = &ip[ihl..total];
    let version = v[0] >> 4;
    if version != expect.version {
        return Err(Drop::BadVersion);
    }
    if v[0] & 0x0f != 1 {
        return Err(Drop::BadType);
    }
    let count = v[3] as usize;
    let want = 8 + 4 * count + if version == 2 { 8 } else { 0 };
    if v.len() < want {
        return Err(Drop::BadLength);
    }
    let v = &v[..want];
    if v[1] != expect.vrid {
        return Err(Drop::OtherVrid);
    }
    let ok = if version == 3 {
        checksum(&[&pseudo_header(src, dst, v.len()), v]) == 0
    } else {
        checksum(&[v]) == 0
    };
    if !ok {
        return Err(Drop::BadChecksum);
    }
    let interval_cs = if version == 3 {
        u16::from_be_bytes([v[4], v[5]]) & 0x0fff
    } else {
        if v[5] as u16 != expect.interval_s {
            return Err(Drop::IntervalMismatch);
        }
        let auth_type = v[4];
        let data = &v[8 + 4 * count..8 + 4 * count + 8];
        match expect.auth_pass {
            Some(pass) => {
                if auth_type != 1 || data != pass {
                    return Err(Drop::BadAuth);
                }
            }
            None => {
                if auth_type != 0 {
                    return Err(Drop::BadAuth);
                }
            }
        }
        v[5] as u16 * 100
    };
    let addrs = (0..count)
        .map(|i| {
            let o = 8 + 4 * i;
            Ipv4Addr::new(v[o], v[o + 1], v[o + 2], v[o + 3])
        })
        .collect();
    Ok(Advert {
        version,
        vrid: v[1],
        priority: v[2],
        interval_cs,
        addrs,
        src,
    })
}

/// Pads a PASS password to the 8 bytes on the wire.
pub fn auth_bytes(pass: &str) -> [u8; 8] {
    let mut a = [0u8; 8];
    for (i, b) in pass.bytes().take(8).enumerate() {
        a[i] = b;
    }
    a
}

/// An IPv4 header for tests and fault injection (the kernel builds real ones).
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[8] = ttl;
    h[9] = PROTO;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    fn packet(payload: &[u8], ttl: u8) -> Vec<u8> {
        let mut p = ipv4_header(SRC, MULTICAST, ttl, payload.len()).to_vec();
        p.extend_from_slice(payload);
        p
    }

    fn expect(version: u8, pass: Option<&str>) -> Expect {
        Expect {
            version,
            vrid: 51,
            auth_pass: pass.map(auth_bytes),
            interval_s: 1,
        }
    }

    #[test]
    fn v3_roundtrip_and_drops() {
        let v = encode(
            &Outgoing {
                version: 3,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addrs: &[VIP],
                auth_pass: None,
            },
            SRC,
            MULTICAST,
        );
        let a = parse(&packet(&v, 255), &expect(3, None)).unwrap();
        assert_eq!((a.priority, a.interval_cs, a.src), (150, 100, SRC));
        assert_eq!(a.addrs, vec![VIP]);
        assert_eq!(parse(&packet(&v, 64), &expect(3, None)), Err(Drop::BadTtl));
        let mut bad = v.clone();
        bad[7] ^= 1;
        assert_eq!(
            parse(&packet(&bad, 255), &expect(3, None)),
            Err(Drop::BadChecksum)
        );
        let other = encode(
            &Outgoing {
                version: 3,
                vrid: 52,
                priority: 150,
                interval_cs: 100,
                addrs: &[VIP],
                auth_pass: None,
            },
            SRC,
            MULTICAST,
        );
        assert_eq!(
            parse(&packet(&other, 255), &expect(3, None)),
            Err(Drop::OtherVrid)
        );
        assert_eq!(
            parse(&packet(&v, 255), &expect(2, None)),
            Err(Drop::BadVersion)
        );
        assert_eq!(
            parse(&packet(&v[..6], 255), &expect(3, None)),
            Err(Drop::Truncated)
        );
        // A checksum computed without the pseudo-header (v3_checksum_as_v2) is refused.
        let mut v2sum = v.clone();
        v2sum[6] = 0;
        v2sum[7] = 0;
        let s = checksum(&[&v2sum]);
        v2sum[6..8].copy_from_slice(&s.to_be_bytes());
        assert_eq!(
            parse(&packet(&v2sum, 255), &expect(3, None)),
            Err(Drop::BadChecksum)
        );
    }

    #[test]
    fn v2_auth_and_interval() {
        let v = encode(
            &Outgoing {
                version: 2,
                vrid: 51,
                priority: 100,
                interval_cs: 100,
                addrs: &[VIP],
                auth_pass: Some(auth_bytes("1111")),
            },
            SRC,
            MULTICAST,
        );
        let a = parse(&packet(&v, 255), &expect(2, Some("1111"))).unwrap();
        assert_eq!((a.version, a.interval_cs), (2, 100));
        assert_eq!(
            parse(&packet(&v, 255), &expect(2, Some("2222"))),
            Err(Drop::BadAuth)
        );
        assert_eq!(
            parse(&packet(&v, 255), &expect(2, None)),
            Err(Drop::BadAuth)
        );
        let slow = encode(
            &Outgoing {
                version: 2,
                vrid: 51,
                priority: 100,
                interval_cs: 300,
                addrs: &[VIP],
                auth_pass: Some(auth_bytes("1111")),
            },
            SRC,
            MULTICAST,
        );
        assert_eq!(
            parse(&packet(&slow, 255), &expect(2, Some("1111"))),
            Err(Drop::IntervalMismatch)
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..200 {
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = parse(&p, &expect(3, None));
            if p.len() > 20 {
                p[0] = 0x45;
                p[8] = 255;
                let _ = parse(&p, &expect(2, Some("x")));
            }
        }
    }
}
