//! What the registry holds, without I/O: key naming, the JSON of one registration, and the
//! choice among several registrations of one stream.
//!
//! Keys: `PREFIX APP/STREAM/NODE` (default prefix `/edgefleet/streams/`), one per origin
//! that publishes the stream, so that two origins holding it at once (a split publisher)
//! are both seen. Value: `{"origin": "HOST:PORT", "published_ms": MS, "node": "NODE"}`.

use serde::{Deserialize, Serialize};

/// One origin's registration of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The origin's RTMP address as edges reach it (`[cluster] advertise`).
    pub origin: String,
    /// When the publish started, in milliseconds since the Unix epoch.
    pub published_ms: u64,
    /// The registering server (`[cluster] node`).
    pub node: String,
}

/// The registration chosen for a stream, and how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub chosen: Registration,
    /// Registrations of the stream seen (more than one: a split publisher).
    pub registrations: usize,
}

/// The key prefix of every registration of stream `key` (`APP/STREAM`).
pub fn stream_prefix(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}/")
}

/// The key of `node`'s registration of stream `key`.
pub fn stream_key(prefix: &str, key: &str, node: &str) -> String {
    format!("{prefix}{key}/{node}")
}

impl Registration {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a value found under `key`; an error names the key and what is wrong.
    pub fn parse(key: &str, value: &[u8]) -> Result<Registration, String> {
        let r: Registration = serde_json::from_slice(value).map_err(|e| {
            format!(
                "{key}: not a registration ({e}): {:?}",
                String::from_utf8_lossy(&value[..value.len().min(120)])
            )
        })?;
        if common::config::parse_host_port(&r.origin).is_err() {
            return Err(format!("{key}: origin {:?} is not HOST:PORT", r.origin));
        }
        Ok(r)
    }
}

/// Reads the pairs of a stream's range (keys under `prefix`): the registrations, and one
/// error per value that is not one. Keys deeper than `prefix + NODE` belong to another
/// stream (`APP/STREAM/MORE`) and are skipped.
pub fn read_range(prefix: &str, kvs: &[super::etcd::Kv]) -> (Vec<Registration>, Vec<String>) {
    let mut regs = Vec::new();
    let mut errs = Vec::new();
    for kv in kvs {
        let key = String::from_utf8_lossy(&kv.key);
        let Some(node) = key.strip_prefix(prefix) else {
            continue;
        };
        if node.is_empty() || node.contains('/') {
            continue;
        }
        match Registration::parse(&key, &kv.value) {
            Ok(r) => regs.push(r),
            Err(e) => errs.push(e),
        }
    }
    (regs, errs)
}

/// The registration to pull from: the newest publish (a publisher that moved registers
/// later than the origin it left, which may still be registered until its lease expires),
/// ties broken by the smaller origin address so that every edge picks the same. `myself`
/// (an origin's own address or node) is never chosen: an origin must not relay from itself.
pub fn choose(regs: &[Registration], myself: &[&str]) -> Option<Choice> {
    let candidates: Vec<&Registration> = regs
        .iter()
        .filter(|r| !myself.contains(&r.origin.as_str()) && !myself.contains(&r.node.as_str()))
        .collect();
    let chosen = candidates
        .iter()
        .max_by(|a, b| {
            a.published_ms
                .cmp(&b.published_ms)
                .then_with(|| b.origin.cmp(&a.origin))
        })
        .map(|r| (*r).clone())?;
    Some(Choice {
        chosen,
        registrations: regs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::etcd::Kv;
    use super::*;

    fn reg(origin: &str, ms: u64) -> Registration {
        Registration {
            origin: origin.into(),
            published_ms: ms,
            node: origin.into(),
        }
    }

    #[test]
    fn newest_wins_ties_by_address_and_myself_never() {
        let a = reg("127.0.0.1:1001", 10);
        let b = reg("127.0.0.1:1002", 20);
        let c = reg("127.0.0.1:1000", 20);
        assert_eq!(choose(std::slice::from_ref(&a), &[]).unwrap().chosen, a);
        let two = choose(&[a.clone(), b.clone()], &[]).unwrap();
        assert_eq!((two.chosen, two.registrations), (b.clone(), 2));
        // Same publish time: the smaller address, whatever the order found.
        assert_eq!(choose(&[b.clone(), c.clone()], &[]).unwrap().chosen, c);
        assert_eq!(choose(&[c.clone(), b.clone()], &[]).unwrap().chosen, c);
        assert_eq!(
            choose(&[b.clone(), c.clone()], &["127.0.0.1:1000"])
                .unwrap()
                .chosen,
            b
        );
        assert_eq!(choose(&[a], &["127.0.0.1:1001"]), None);
        assert_eq!(choose(&[], &[]), None);
    }

    #[test]
    fn values_that_are_not_ours_are_named() {
        let p = stream_prefix("/edgefleet/streams/", "live/cam");
        let good = reg("127.0.0.1:1935", 5);
        let kvs = vec![
            Kv {
                key: format!("{p}n1").into_bytes(),
                value: good.to_json(),
            },
            Kv {
                key: format!("{p}n2").into_bytes(),
                value: b"garbage".to_vec(),
            },
            Kv {
                key: format!("{p}n3").into_bytes(),
                value: br#"{"origin":"no port here:x","published_ms":1,"node":"n3"}"#.to_vec(),
            },
            // live/cam/deeper's registration: another stream.
            Kv {
                key: format!("{p}deeper/n4").into_bytes(),
                value: good.to_json(),
            },
        ];
        let (regs, errs) = read_range(&p, &kvs);
        assert_eq!(regs, vec![good]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("/edgefleet/streams/live/cam/n2: not a registration"),
            "{errs:?}"
        );
        assert!(errs[1].contains("is not HOST:PORT"), "{errs:?}");
    }
}
