//! Address lists (`publish.allow`, `set_real_ip_from`, `token_exempt`): whether a client's
//! address is in one.

use ipnet::IpNet;
use std::net::IpAddr;

/// `ip` in any of `nets` (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn in_networks(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let nets: Vec<IpNet> = vec!["198.18.0.0/15".parse().unwrap()];
        assert!(in_networks(&nets, "198.19.1.1".parse().unwrap()));
        assert!(in_networks(&nets, "::ffff:198.18.0.1".parse().unwrap()));
        assert!(!in_networks(&nets, "2001:db8::1".parse().unwrap()));
        assert!(!in_networks(&[], "198.18.0.1".parse().unwrap()));
    }
}
