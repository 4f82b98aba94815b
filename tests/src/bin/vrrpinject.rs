//! `vrrpinject`: sends hand-made VRRP adverts — right or deliberately wrong (TTL, checksum,
//! VRID, password) — for the lab's robustness tests. Run inside a lab host with
//! `ip netns exec`; it refuses destinations outside 198.18.0.0/15 and 224.0.0.18 (IPv4), and
//! outside ff02::12, 2001:2::/48 and fe80::/10 (IPv6: VRRPv3 over IPv6, `--ttl` is then the
//! hop limit; the kernel builds the IPv6 header).

use clap::Parser;
use lb::vrrp::packet::{self, MULTICAST, MULTICAST_V6};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// IPv4, or IPv6 (then adverts go over IPv6).
    #[arg(long)]
    src: IpAddr,
    /// Default: the VRRP group of the source's family.
    #[arg(long)]
    dst: Option<IpAddr>,
    #[arg(long, default_value_t = 3)]
    version: u8,
    #[arg(long, default_value_t = 51)]
    vrid: u8,
    #[arg(long, default_value_t = 254)]
    priority: u8,
    #[arg(long, default_value_t = 255)]
    ttl: u8,
    /// Advert interval in centiseconds.
    #[arg(long, default_value_t = 100)]
    interval_cs: u16,
    #[arg(long)]
    pass: Option<String>,
    #[arg(long)]
    bad_checksum: bool,
    /// Virtual addresses listed in the advert.
    #[arg(long, default_value = "198.18.0.100")]
    vip: Vec<IpAddr>,
    #[arg(long, default_value_t = 5)]
    count: u32,
    #[arg(long, default_value_t = 100)]
    every_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    match (a.src, a.dst.unwrap_or(packet::group_of(a.src))) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => send_v4(&a, src, dst),
        (IpAddr::V6(src), IpAddr::V6(dst)) => send_v6(&a, src, dst),
        (s, d) => anyhow::bail!("--src {s} and --dst {d} are of different families"),
    }
}

fn outgoing<'a>(a: &Args, vips: &'a [IpAddr]) -> packet::Outgoing<'a> {
    packet::Outgoing {
        version: a.version,
        vrid: a.vrid,
        priority: a.priority,
        interval_cs: a.interval_cs,
        addrs: vips,
        auth_pass: a.pass.as_deref().map(packet::auth_bytes),
    }
}

fn send_v6(a: &Args, src: Ipv6Addr, dst: Ipv6Addr) -> anyhow::Result<()> {
    let link_local = |x: Ipv6Addr| x.segments()[0] & 0xffc0 == 0xfe80;
    let lab = |x: Ipv6Addr| x.segments()[0] == 0x2001 && x.segments()[1] == 2;
    anyhow::ensure!(
        dst == MULTICAST_V6 || link_local(dst) || lab(dst),
        "vrrpinject only sends to ff02::12, fe80::/10 or 2001:2::/48, not {dst}"
    );
    let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", a.iface))?
        .trim()
        .parse()?;
    let mut payload = packet::encode(&outgoing(a, &a.vip), src.into(), dst.into());
    if a.bad_checksum {
        payload[7] ^= 0x5a;
    }
    let s = Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(packet::PROTO as i32)),
    )?;
    s.bind_device(Some(a.iface.as_bytes()))?;
    s.set_multicast_hops_v6(a.ttl as u32)?;
    s.set_unicast_hops_v6(a.ttl as u32)?;
    s.set_multicast_if_v6(index)?;
    let scope = |x: Ipv6Addr| {
        if link_local(x) || x.is_multicast() {
            index
        } else {
            0
        }
    };
    s.bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, scope(src))))?;
    let to = SockAddr::from(SocketAddrV6::new(dst, 0, 0, scope(dst)));
    for _ in 0..a.count.min(10_000) {
        s.send_to(&payload, &to)?;
        std::thread::sleep(Duration::from_millis(a.every_ms.min(10_000)));
    }
    Ok(())
}

fn send_v4(a: &Args, src: Ipv4Addr, dst: Ipv4Addr) -> anyhow::Result<()> {
    let o = dst.octets();
    anyhow::ensure!(
        dst == MULTICAST || (o[0] == 198 && (o[1] & 0xfe) == 18),
        "vrrpinject only sends to 224.0.0.18 or 198.18.0.0/15, not {}",
        dst
    );
    let mut payload = packet::encode(&outgoing(a, &a.vip), src.into(), dst.into());
    if a.bad_checksum {
        payload[7] ^= 0x5a;
    }
    let mut pkt = packet::ipv4_header(src, dst, a.ttl, payload.len()).to_vec();
    pkt.extend_from_slice(&payload);
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?; // IPPROTO_RAW: header included
    s.bind_device(Some(a.iface.as_bytes()))?;
    s.set_multicast_if_v4(&src)?;
    let to = SockAddr::from(SocketAddrV4::new(dst, 0));
    for _ in 0..a.count.min(10_000) {
        s.send_to(&pkt, &to)?;
        std::thread::sleep(Duration::from_millis(a.every_ms.min(10_000)));
    }
    Ok(())
}
