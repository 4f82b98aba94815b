//! Maglev consistent hashing (Eisenbud et al., NSDI'16), weighted as IPVS `mh` does: a
//! lookup table of M (prime) slots; each backend walks its own permutation of the slots
//! (offset = h1 % M, skip = h2 % (M - 1) + 1) and backends take turns claiming the next free
//! slot of their permutation, a backend of weight w taking w turns per round. Every balancer
//! with the same backend set builds the same table, so they pick the same backend for a
//! client without sharing state, and a backend change moves only ~1/N of the clients.

use super::hash::{hash_addr, hash_ip};
use std::net::{IpAddr, SocketAddr};

/// Table size of the userspace scheduler: prime, much larger than any backend count.
pub const M: usize = 65537;
/// Table size of the DR datapath's kernel map: prime, still > 100 x the backend counts an lb
/// has (balance within ~1 %), and 16 x smaller than [`M`], because `nft` loads the whole map
/// each time lb reads the table's counters (once a second) or reprograms it.
pub const M_DR: usize = 4099;
const SEED_OFFSET: u64 = 0x6d61_676c_6576_3031;
const SEED_SKIP: u64 = 0x6d61_676c_6576_3032;
const SEED_CLIENT: u64 = 0x6d61_676c_6576_3033;

pub struct Maglev {
    /// Index into the backend list given to [`Maglev::build`].
    table: Vec<u16>,
}

impl Maglev {
    /// Builds the table for `(address, weight)` backends (weight 0 ones take no slot).
    /// Returns `None` when no backend has a weight.
    pub fn build(backends: &[(SocketAddr, u32)]) -> Option<Maglev> {
        Self::build_sized(backends, M)
    }

    /// [`Maglev::build`] with `m` slots (a prime; the DR datapath uses [`M_DR`]).
    pub fn build_sized(backends: &[(SocketAddr, u32)], m: usize) -> Option<Maglev> {
        let live: Vec<(usize, u64, u64, u32)> = backends
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| *w > 0)
            .map(|(i, (a, w))| {
                let offset = hash_addr(*a, SEED_OFFSET) % m as u64;
                let skip = hash_addr(*a, SEED_SKIP) % (m as u64 - 1) + 1;
                (i, offset, skip, *w)
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        let g = live.iter().fold(0u32, |g, l| gcd(g, l.3));
        let mut next = vec![0u64; live.len()];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        'outer: loop {
            for (k, &(idx, offset, skip, w)) in live.iter().enumerate() {
                for _ in 0..(w / g) {
                    let mut slot = ((offset + next[k] * skip) % m as u64) as usize;
                    while table[slot] != u16::MAX {
                        next[k] += 1;
                        slot = ((offset + next[k] * skip) % m as u64) as usize;
                    }
                    table[slot] = idx as u16;
                    next[k] += 1;
                    filled += 1;
                    if filled == m {
                        break 'outer;
                    }
                }
            }
        }
        Some(Maglev { table })
    }

    /// The whole table: slot -> index into the backend list given to [`Maglev::build`]
    /// (the DR datapath loads it into the kernel, so the kernel's choice is this table's).
    pub fn slots(&self) -> &[u16] {
        &self.table
    }

    /// The backend index for a client address; `attempt` > 0 probes other slots (used when
    /// the first choice could not be reached).
    pub fn lookup(&self, client: IpAddr, attempt: u64) -> usize {
        let h =
            hash_ip(client, SEED_CLIENT).wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.table[(h % self.table.len() as u64) as usize] as usize
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u16) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| (SocketAddr::from(([198, 18, 0, 10 + i as u8], 1935)), 1))
            .collect()
    }

    fn client(i: u32) -> IpAddr {
        IpAddr::from([198, 19, (i >> 8) as u8, i as u8])
    }

    #[test]
    fn balanced_and_deterministic() {
        let b = backends(3);
        let m1 = Maglev::build(&b).unwrap();
        let m2 = Maglev::build(&b).unwrap();
        assert_eq!(m1.table, m2.table);
        let mut counts = [0usize; 3];
        for i in 0..M {
            counts[m1.table[i] as usize] += 1;
        }
        for c in counts {
            assert!(
                (c as f64 - M as f64 / 3.0).abs() < M as f64 * 0.02,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn the_dr_table_is_balanced_too() {
        let b = backends(40);
        let t = Maglev::build_sized(&b, M_DR).unwrap();
        assert_eq!(t.slots().len(), M_DR);
        let mut counts = [0usize; 40];
        for &i in t.slots() {
            counts[i as usize] += 1;
        }
        let ideal = M_DR as f64 / 40.0;
        for c in counts {
            assert!((c as f64 - ideal).abs() <= ideal * 0.05, "{counts:?}");
        }
    }

    #[test]
    fn weights_are_honoured() {
        let mut b = backends(2);
        b[1].1 = 3;
        let m = Maglev::build(&b).unwrap();
        let heavy = m.table.iter().filter(|&&i| i == 1).count();
        assert!((heavy as f64 / M as f64 - 0.75).abs() < 0.02, "{heavy}");
    }

    #[test]
    fn removing_a_backend_moves_few_clients() {
        let b = backends(5);
        let before = Maglev::build(&b).unwrap();
        let mut fewer = b.clone();
        fewer[4].1 = 0; // weight 0: out of the table, indices unchanged
        let after = Maglev::build(&fewer).unwrap();
        let moved = (0..10000)
            .filter(|&i| {
                let a = before.lookup(client(i), 0);
                a != 4 && a != after.lookup(client(i), 0)
            })
            .count();
        assert!(
            moved < 10000 / 20,
            "{moved} of the clients of surviving backends moved"
        );
    }
}
