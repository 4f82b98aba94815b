//! The network side of VRRP, kept in one place: the raw IP-protocol-112 socket (TTL / hop
//! limit 255, multicast group 224.0.0.18 or ff02::12, or unicast peers), interface facts
//! (index, MAC, primary IPv4, link-local IPv6, link state; from pnet), virtual addresses added
//! and removed through netlink (rtnetlink; IPv6 ones with IFA_F_NODAD), gratuitous ARP sent on
//! the link layer (pnet) and, for IPv6, unsolicited Neighbor Advertisements (RFC 4861 7.2.6)
//! on a raw ICMPv6 socket. No `unsafe`: socket2, nix, rtnetlink and pnet carry it.

use super::packet::{MULTICAST, MULTICAST_V6, PROTO};
use futures_util::TryStreamExt;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, IoSliceMut, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;

/// What we need to know about an interface.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub primary: Option<Ipv4Addr>,
    /// The first fe80::/10 address (the source of IPv6 adverts, RFC 5798 5.1.2.1).
    pub link_local: Option<Ipv6Addr>,
    /// Administratively up and with carrier.
    pub running: bool,
}

pub fn iface(name: &str) -> Option<Iface> {
    let i = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)?;
    let primary = i.ips.iter().find_map(|n| match n.ip() {
        std::net::IpAddr::V4(v4) if n.prefix() < 32 => Some(v4),
        _ => None,
    });
    let link_local = i.ips.iter().find_map(|n| match n.ip() {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some(v6),
        _ => None,
    });
    Some(Iface {
        name: i.name.clone(),
        index: i.index,
        mac: i.mac.map(|m| m.octets()),
        primary,
        link_local,
        running: i.is_up() && i.is_running(),
    })
}

/// The VRRP socket of one instance.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    index: u32,
}

/// One received packet: IPv4 with its header; IPv6 the VRRP part alone, with what the
/// socket said beside it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    /// IPv6 only: the sender.
    pub src: Option<Ipv6Addr>,
    /// IPv6 only: the destination (IPV6_PKTINFO).
    pub dst: Option<Ipv6Addr>,
    /// IPv6 only: the hop limit (IPV6_HOPLIMIT).
    pub hop_limit: Option<u8>,
}

fn raw_error(e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("raw socket for VRRP (needs root or CAP_NET_RAW): {e}"),
    )
}

impl VrrpSocket {
    /// Opens the socket on `iface`; joins the VRRP group unless unicast.
    pub fn open(iface: &Iface, src: Option<Ipv4Addr>, multicast: bool) -> io::Result<VrrpSocket> {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(PROTO as i32)))
            .map_err(raw_error)?;
        s.bind_device(Some(iface.name.as_bytes()))?;
        s.set_ttl(255)?;
        s.set_multicast_ttl_v4(255)?;
        s.set_multicast_loop_v4(false)?;
        if let Some(ip) = src {
            s.bind(&SockAddr::from(SocketAddrV4::new(ip, 0)))?;
        }
        if multicast {
            let local = src.or(iface.primary).unwrap_or(Ipv4Addr::UNSPECIFIED);
            s.set_multicast_if_v4(&local)?;
            s.join_multicast_v4_n(
                &MULTICAST,
                &socket2::InterfaceIndexOrAddress::Index(iface.index),
            )?;
        }
        s.set_nonblocking(true)?;
        // `AsyncFd::new` is deprecated because a T that does not own its descriptor could
        // let it be closed while registered; a socket2::Socket owns it and AsyncFd owns the
        // Socket until drop, so the safe constructor is sound here.
        #[allow(deprecated)]
        let fd = AsyncFd::new(s)?;
        Ok(VrrpSocket {
            fd,
            v6: false,
            index: iface.index,
        })
    }

    /// The IPv6 socket: bound to `src` (the interface's link-local address, or
    /// `unicast_src_ip`), hop limit 255 both ways, the hop limit and destination of each
    /// received packet asked for; joins ff02::12 unless unicast. No IPV6_CHECKSUM: the
    /// checksum is computed and checked in `packet` (see there why).
    pub fn open_v6(iface: &Iface, src: Ipv6Addr, multicast: bool) -> io::Result<VrrpSocket> {
        use nix31::sys::socket::{setsockopt, sockopt};
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(PROTO as i32)))
            .map_err(raw_error)?;
        s.bind_device(Some(iface.name.as_bytes()))?;
        s.set_unicast_hops_v6(255)?;
        s.set_multicast_hops_v6(255)?;
        s.set_multicast_loop_v6(false)?;
        s.set_recv_hoplimit_v6(true)?;
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        let scope = if src.segments()[0] & 0xffc0 == 0xfe80 {
            iface.index
        } else {
            0
        };
        s.bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, scope)))
            .map_err(|e| io::Error::new(e.kind(), format!("binding to {src}: {e}")))?;
        if multicast {
            s.set_multicast_if_v6(iface.index)?;
            s.join_multicast_v6(&MULTICAST_V6, iface.index)?;
        }
        s.set_nonblocking(true)?;
        // See `open` on the deprecation.
        #[allow(deprecated)]
        let fd = AsyncFd::new(s)?;
        Ok(VrrpSocket {
            fd,
            v6: true,
            index: iface.index,
        })
    }

    pub async fn send(&self, payload: &[u8], dst: IpAddr) -> io::Result<()> {
        let addr = match dst {
            IpAddr::V4(d) => SockAddr::from(SocketAddrV4::new(d, 0)),
            IpAddr::V6(d) => {
                let scope = if d.is_multicast() || d.segments()[0] & 0xffc0 == 0xfe80 {
                    self.index
                } else {
                    0
                };
                SockAddr::from(SocketAddrV6::new(d, 0, 0, scope))
            }
        };
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send_to(payload, &addr)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one packet: IPv4 with its header; IPv6 without (the kernel strips it), the
    /// sender, destination and hop limit beside it.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = if self.v6 {
                guard.try_io(|s| recv_v6(s.get_ref(), buf))
            } else {
                guard.try_io(|s| {
                    let mut sock: &Socket = s.get_ref();
                    sock.read(buf).map(|len| Received {
                        len,
                        src: None,
                        dst: None,
                        hop_limit: None,
                    })
                })
            };
            match r {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_v6(s: &Socket, buf: &mut [u8]) -> io::Result<Received> {
    use nix31::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
    let mut cmsg = nix31::cmsg_space!(libc_in6_pktinfo, i32);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let mut got = Received {
        len: msg.bytes,
        src: msg.address.map(|a| a.ip()),
        dst: None,
        hop_limit: None,
    };
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv6HopLimit(h) => got.hop_limit = u8::try_from(h).ok(),
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    got.dst = Some(Ipv6Addr::from(i.ipi6_addr.s6_addr))
                }
                _ => {}
            }
        }
    }
    Ok(got)
}

/// The size of `struct in6_pktinfo` (16-byte address and interface index), for the control
/// buffer: named here to keep libc out of the dependencies.
#[allow(non_camel_case_types)]
type libc_in6_pktinfo = [u32; 5];

/// Adds and removes the virtual addresses through netlink.
pub struct Addresses {
    handle: rtnetlink::Handle,
}

impl Addresses {
    pub fn new() -> io::Result<Addresses> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Addresses { handle })
    }

    /// Adds `ip/prefix`; an IPv6 address with IFA_F_NODAD, so that it is usable at once
    /// (keepalived does the same: a VIP must not wait for duplicate address detection).
    pub async fn add(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), String> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            use rtnetlink::packet_route::address::{
                AddressAttribute, AddressFlags, AddressHeaderFlags,
            };
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_eexist() => Ok(()),
            Err(e) => Err(format!("adding {ip}/{prefix}: {e}")),
        }
    }

    pub async fn remove(&self, index: u32, ip: IpAddr) -> Result<(), String> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        while let Some(msg) = found
            .try_next()
            .await
            .map_err(|e| format!("listing addresses: {e}"))?
        {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| format!("removing {ip}: {e}"))?;
        }
        Ok(())
    }
}

/// Sends one unsolicited Neighbor Advertisement per address (RFC 4861 4.4, 7.2.6): to ff02::1,
/// hop limit 255, override flag set, the target the VIP, with its link-layer address option
/// (the interface's MAC). The kernel fills in the ICMPv6 checksum and picks the link-local
/// source for the link-scope destination.
pub fn unsolicited_na(iface: &Iface, vips: &[Ipv6Addr]) -> Result<(), String> {
    let mac = iface
        .mac
        .ok_or_else(|| format!("{} has no MAC address", iface.name))?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| format!("ICMPv6 socket for Neighbor Advertisements: {e}"))?;
    let setup = || -> io::Result<()> {
        s.bind_device(Some(iface.name.as_bytes()))?;
        s.set_multicast_hops_v6(255)?;
        s.set_multicast_if_v6(iface.index)?;
        s.set_multicast_loop_v6(false)
    };
    setup().map_err(|e| format!("ICMPv6 socket on {}: {e}", iface.name))?;
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let to = SockAddr::from(SocketAddrV6::new(all_nodes, 0, 0, iface.index));
    for ip in vips {
        s.send_to(&na_message(mac, *ip), &to)
            .map_err(|e| format!("sending Neighbor Advertisement for {ip}: {e}"))?;
    }
    Ok(())
}

/// The ICMPv6 Neighbor Advertisement (type 136), checksum left 0 for the kernel: override
/// flag, target `ip`, Target Link-Layer Address option carrying `mac`.
pub fn na_message(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136;
    m[4] = 0x20; // O(verride); not R(outer), not S(olicited)
    m[8..24].copy_from_slice(&ip.octets());
    m[24] = 2; // Target Link-Layer Address
    m[25] = 1; // in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

fn libc_eexist() -> i32 {
    17
}

/// Sends one gratuitous ARP request per address on the link layer.
pub fn garp(iface_name: &str, vips: &[Ipv4Addr]) -> Result<(), String> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface_name)
        .ok_or_else(|| format!("no interface {iface_name}"))?;
    let mac = iface
        .mac
        .ok_or_else(|| format!("{iface_name} has no MAC address"))?
        .octets();
    let (mut tx, _rx) = match pnet_datalink::channel(&iface, Default::default()) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err("unexpected datalink channel type".into()),
        Err(e) => return Err(format!("datalink channel on {iface_name}: {e}")),
    };
    for ip in vips {
        let frame = garp_frame(mac, *ip);
        match tx.send_to(&frame, None) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("sending gratuitous ARP for {ip}: {e}")),
            None => return Err("gratuitous ARP: no room in the send buffer".into()),
        }
    }
    Ok(())
}

/// An Ethernet broadcast ARP request where sender and target address are the VIP.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}
