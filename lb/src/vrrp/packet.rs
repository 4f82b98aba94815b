//! VRRP advertisements on the wire: version 3 (RFC 5798) over IPv4 and IPv6, and version 2
//! (RFC 3768, IPv4 only).
//!
//! [`parse`] (IPv4, IP header included as a raw IPv4 socket returns it) and [`parse_v6`]
//! (IPv6: the VRRP part alone, as a raw IPv6 socket returns it, with the source, destination
//! and hop limit the socket reported beside it) validate everything keepalived validates about
//! a received advert, each failure a distinct [`Drop`] reason (counted in /metrics): TTL / hop
//! limit 255, version, type, length, VRID, checksum (v3 over the IPv4 or IPv6 pseudo-header;
//! v2 over the VRRP packet), v2 authentication and advertisement interval. [`encode`] builds
//! the VRRP part, checksum included, for either family; the kernel adds the IP header.
//!
//! The IPv6 checksum is computed and checked here rather than by the kernel (IPV6_CHECKSUM at
//! offset 6, which keepalived uses): the kernel would drop a bad one silently, and here it is
//! counted under `checksum` as for IPv4; the wire bytes are the same either way (RFC 5798
//! 5.2.8: the IPv6 pseudo-header of RFC 2460 8.1, next header 112).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO: u8 = 112;
pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// RFC 5798 5.1.2.2: the IPv6 VRRP group, link-local scope.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The VRRP group of the family of `ip`.
pub fn group_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(MULTICAST),
        IpAddr::V6(_) => IpAddr::V6(MULTICAST_V6),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds (v3); v2 carries whole seconds, converted here.
    pub interval_cs: u16,
    /// IPv4 or IPv6, as the advert's family.
    pub addrs: Vec<IpAddr>,
    /// IP source of the advert.
    pub src: IpAddr,
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

/// The pseudo-header of the v3 checksum: RFC 768's for IPv4 (12 bytes), RFC 2460 8.1's for
/// IPv6 (40 bytes: source, destination, 32-bit upper-layer length, 3 zero bytes, next header).
/// Mixed families (never built by this crate) give IPv4's with unspecified addresses.
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO]);
            p
        }
        (s, d) => {
            let v4 = |a: IpAddr| match a {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let mut p = vec![0u8; 12];
            p[..4].copy_from_slice(&v4(s).octets());
            p[4..8].copy_from_slice(&v4(d).octets());
            p[9] = PROTO;
            p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
            p
        }
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An advert to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds (v2 sends whole seconds).
    pub interval_cs: u16,
    /// All of one family, the family of the `src` and `dst` given to [`encode`].
    pub addrs: &'a [IpAddr],
    /// v2 PASS authentication.
    pub auth_pass: Option<[u8; 8]>,
}

/// Builds the VRRP payload. `src`/`dst` (IPv4 or IPv6) feed the v3 pseudo-header checksum.
pub fn encode(o: &Outgoing, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let Outgoing {
        version,
        vrid,
        priority,
        interval_cs,
        addrs,
        auth_pass,
    } = *o;
    let mut p = Vec::with_capacity(8 + 16 * addrs.len() + 8);
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
        p.extend_from_slice(&octets(a));
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
    parse_vrrp(&ip[ihl..total], src.into(), dst.into(), expect)
}

/// Parses a received IPv6 advert: `vrrp` is what a raw IPv6 socket returns (the VRRP part
/// alone); `src`, `dst` and `hop_limit` come beside it (the sender's address, IPV6_PKTINFO and
/// IPV6_HOPLIMIT). A missing hop limit is refused as a wrong one: 255 cannot be proven.
pub fn parse_v6(
    vrrp: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: Option<u8>,
    expect: &Expect,
) -> Result<Advert, Drop> {
    if vrrp.len() < 8 {
        return Err(Drop::Truncated);
    }
    if hop_limit != Some(255) {
        return Err(Drop::BadTtl);
    }
    parse_vrrp(vrrp, src.into(), dst.into(), expect)
}

/// The VRRP part, after the IP layer's checks; `v` is at least 8 bytes.
fn parse_vrrp(v: &[u8], src: IpAddr, dst: IpAddr, expect: &Expect) -> Result<Advert, Drop> {
    let alen = if src.is_ipv6() { 16 } else { 4 };
    let version = v[0] >> 4;
    if version != expect.version {
        return Err(Drop::BadVersion);
    }
    if v[0] & 0x0f != 1 {
        return Err(Drop::BadType);
    }
    let count = v[3] as usize;
    let want = 8 + alen * count + if version == 2 { 8 } else { 0 };
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
        let data = &v[8 + alen * count..8 + alen * count + 8];
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
    let addrs = v[8..8 + alen * count]
        .chunks_exact(alen)
        .map(|c| match <[u8; 16]>::try_from(c) {
            Ok(a16) => IpAddr::V6(Ipv6Addr::from(a16)),
            Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
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
                addrs: &[VIP.into()],
                auth_pass: None,
            },
            SRC.into(),
            MULTICAST.into(),
        );
        let a = parse(&packet(&v, 255), &expect(3, None)).unwrap();
        assert_eq!((a.priority, a.interval_cs, a.src), (150, 100, SRC.into()));
        assert_eq!(a.addrs, vec![IpAddr::from(VIP)]);
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
                addrs: &[VIP.into()],
                auth_pass: None,
            },
            SRC.into(),
            MULTICAST.into(),
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
                addrs: &[VIP.into()],
                auth_pass: Some(auth_bytes("1111")),
            },
            SRC.into(),
            MULTICAST.into(),
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
                addrs: &[VIP.into()],
                auth_pass: Some(auth_bytes("1111")),
            },
            SRC.into(),
            MULTICAST.into(),
        );
        assert_eq!(
            parse(&packet(&slow, 255), &expect(2, Some("1111"))),
            Err(Drop::IntervalMismatch)
        );
    }

    /// An advert keepalived 2.2.7 sent in the lab (tcpdump -xx on the peer's eth0): VRRPv3
    /// over IPv6, vrid 61, priority 150, 1 s, VIP 2001:2::100, from the link-local address
    /// below to ff02::12 with hop limit 255. The kernel computed its checksum (keepalived sets
    /// IPV6_CHECKSUM), so this pins our pseudo-header to the kernel's.
    const KEEPALIVED_V6: [u8; 24] = [
        0x31, 0x3d, 0x96, 0x01, 0x00, 0x64, 0x29, 0x57, 0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    ];
    const KEEPALIVED_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x20ac, 0x94ff, 0xfe1a, 0x3c1e);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);

    fn expect6() -> Expect {
        Expect {
            version: 3,
            vrid: 61,
            auth_pass: None,
            interval_s: 1,
        }
    }

    #[test]
    fn v6_keepalived_packet_parses_and_encodes_byte_for_byte() {
        let a = parse_v6(
            &KEEPALIVED_V6,
            KEEPALIVED_SRC,
            MULTICAST_V6,
            Some(255),
            &expect6(),
        )
        .unwrap();
        assert_eq!(
            (a.version, a.vrid, a.priority, a.interval_cs),
            (3, 61, 150, 100)
        );
        assert_eq!(a.src, IpAddr::V6(KEEPALIVED_SRC));
        assert_eq!(a.addrs, vec![IpAddr::V6(VIP6)]);
        let ours = encode(
            &Outgoing {
                version: 3,
                vrid: 61,
                priority: 150,
                interval_cs: 100,
                addrs: &[VIP6.into()],
                auth_pass: None,
            },
            KEEPALIVED_SRC.into(),
            MULTICAST_V6.into(),
        );
        assert_eq!(ours, KEEPALIVED_V6);
    }

    #[test]
    fn v6_roundtrip_and_drops() {
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        let vips: Vec<IpAddr> = vec![
            VIP6.into(),
            Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1).into(),
        ];
        let out = Outgoing {
            version: 3,
            vrid: 61,
            priority: 254,
            interval_cs: 10,
            addrs: &vips,
            auth_pass: None,
        };
        let v = encode(&out, src.into(), MULTICAST_V6.into());
        assert_eq!(v.len(), 8 + 2 * 16);
        let e = expect6();
        let a = parse_v6(&v, src, MULTICAST_V6, Some(255), &e).unwrap();
        assert_eq!(
            (a.priority, a.interval_cs, a.addrs.clone()),
            (254, 10, vips.clone())
        );
        // RFC 5798 5.1.2.3: hop limit 255 only; unknown (no IPV6_HOPLIMIT) is refused too.
        assert_eq!(
            parse_v6(&v, src, MULTICAST_V6, Some(254), &e),
            Err(Drop::BadTtl)
        );
        assert_eq!(parse_v6(&v, src, MULTICAST_V6, None, &e), Err(Drop::BadTtl));
        // The pseudo-header covers source and destination.
        let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3);
        assert_eq!(
            parse_v6(&v, other, MULTICAST_V6, Some(255), &e),
            Err(Drop::BadChecksum)
        );
        assert_eq!(
            parse_v6(&v, src, VIP6, Some(255), &e),
            Err(Drop::BadChecksum)
        );
        let mut bad = v.clone();
        bad[9] ^= 1;
        assert_eq!(
            parse_v6(&bad, src, MULTICAST_V6, Some(255), &e),
            Err(Drop::BadChecksum)
        );
        // Addresses counted as 16 bytes each: a count beyond the data is a length error.
        let mut long = v.clone();
        long[3] = 3;
        assert_eq!(
            parse_v6(&long, src, MULTICAST_V6, Some(255), &e),
            Err(Drop::BadLength)
        );
        assert_eq!(
            parse_v6(&v[..7], src, MULTICAST_V6, Some(255), &e),
            Err(Drop::Truncated)
        );
        let mut v2 = v.clone();
        v2[0] = 0x21;
        assert_eq!(
            parse_v6(&v2, src, MULTICAST_V6, Some(255), &e),
            Err(Drop::BadVersion)
        );
        let mut vrid = e.clone();
        vrid.vrid = 62;
        assert_eq!(
            parse_v6(&v, src, MULTICAST_V6, Some(255), &vrid),
            Err(Drop::OtherVrid)
        );
        // Unicast: the checksum is over the peer's address as destination.
        let peer = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
        let me = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
        let u = encode(&out, me.into(), peer.into());
        assert!(parse_v6(&u, me, peer, Some(255), &e).is_ok());
        assert_eq!(
            parse_v6(&u, me, MULTICAST_V6, Some(255), &e),
            Err(Drop::BadChecksum)
        );
    }

    #[test]
    fn v6_garbage_never_panics() {
        let mut seed = 0x0fed_cba9_8765_4321u64;
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        for len in 0..300 {
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if p.len() > 4 {
                p[0] = 0x31;
                p[1] = 61;
            }
            let _ = parse_v6(&p, src, MULTICAST_V6, Some(255), &expect6());
        }
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
