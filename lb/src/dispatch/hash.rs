//! A stable 64-bit hash (FNV-1a folded through a splitmix64 finaliser): the same on every
//! build and machine, so two balancers agree on `sh` and `mh` choices.

use std::net::{IpAddr, SocketAddr};

pub fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

pub fn hash_ip(ip: IpAddr, seed: u64) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets(), seed),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets(), seed),
            None => hash_bytes(&v6.octets(), seed),
        },
    }
}

pub fn hash_addr(addr: SocketAddr, seed: u64) -> u64 {
    hash_bytes(addr.to_string().as_bytes(), seed)
}
