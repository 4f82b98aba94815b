//! `vrrpinject`: sends hand-made VRRP adverts — right or deliberately wrong (TTL, checksum,
//! VRID, password) — for the lab's robustness tests. Run inside a lab host with
//! `ip netns exec`; it refuses destinations outside 198.18.0.0/15 and 224.0.0.18.

use clap::Parser;
use lb::vrrp::packet::{self, MULTICAST};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "eth0")]
    iface: String,
    #[arg(long)]
    src: Ipv4Addr,
    #[arg(long, default_value_t = MULTICAST)]
    dst: Ipv4Addr,
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
    vip: Vec<Ipv4Addr>,
    #[arg(long, default_value_t = 5)]
    count: u32,
    #[arg(long, default_value_t = 100)]
    every_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let o = a.dst.octets();
    anyhow::ensure!(
        a.dst == MULTICAST || (o[0] == 198 && (o[1] & 0xfe) == 18),
        "vrrpinject only sends to 224.0.0.18 or 198.18.0.0/15, not {}",
        a.dst
    );
    let vips: Vec<std::net::IpAddr> = a.vip.iter().map(|v| (*v).into()).collect();
    let out = packet::Outgoing {
        version: a.version,
        vrid: a.vrid,
        priority: a.priority,
        interval_cs: a.interval_cs,
        addrs: &vips,
        auth_pass: a.pass.as_deref().map(packet::auth_bytes),
    };
    let mut payload = packet::encode(&out, a.src.into(), a.dst.into());
    if a.bad_checksum {
        payload[7] ^= 0x5a;
    }
    let mut pkt = packet::ipv4_header(a.src, a.dst, a.ttl, payload.len()).to_vec();
    pkt.extend_from_slice(&payload);
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?; // IPPROTO_RAW: header included
    s.bind_device(Some(a.iface.as_bytes()))?;
    s.set_multicast_if_v4(&a.src)?;
    let to = SockAddr::from(SocketAddrV4::new(a.dst, 0));
    for _ in 0..a.count.min(10_000) {
        s.send_to(&pkt, &to)?;
        std::thread::sleep(Duration::from_millis(a.every_ms.min(10_000)));
    }
    Ok(())
}
