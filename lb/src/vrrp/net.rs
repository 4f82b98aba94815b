//! The network side of VRRP, kept in one place: the raw IP-protocol-112 socket (TTL 255,
//! multicast group 224.0.0.18 or unicast peers), interface facts (index, MAC, primary IPv4,
//! link state; from pnet), virtual addresses added and removed through netlink (rtnetlink),
//! and gratuitous ARP sent on the link layer (pnet). No `unsafe`: socket2, rtnetlink and
//! pnet carry it.

use super::packet::{MULTICAST, PROTO};
use futures_util::TryStreamExt;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use tokio::io::unix::AsyncFd;

/// What we need to know about an interface.
#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub primary: Option<Ipv4Addr>,
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
    Some(Iface {
        name: i.name.clone(),
        index: i.index,
        mac: i.mac.map(|m| m.octets()),
        primary,
        running: i.is_up() && i.is_running(),
    })
}

/// The VRRP socket of one instance.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
}

impl VrrpSocket {
    /// Opens the socket on `iface`; joins the VRRP group unless unicast.
    pub fn open(iface: &Iface, src: Option<Ipv4Addr>, multicast: bool) -> io::Result<VrrpSocket> {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(PROTO as i32))).map_err(
            |e| {
                io::Error::new(
                    e.kind(),
                    format!("raw socket for VRRP (needs root or CAP_NET_RAW): {e}"),
                )
            },
        )?;
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
        Ok(VrrpSocket { fd })
    }

    pub async fn send(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().send_to(payload, &addr)) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one IPv4 packet (IP header included).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| {
                let mut sock: &Socket = s.get_ref();
                sock.read(buf)
            }) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

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

    pub async fn add(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), String> {
        match self
            .handle
            .address()
            .add(index, ip.into(), prefix)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_eexist() => Ok(()),
            Err(e) => Err(format!("adding {ip}/{prefix}: {e}")),
        }
    }

    pub async fn remove(&self, index: u32, ip: Ipv4Addr) -> Result<(), String> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip.into())
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
