//! Signed, expiring play tokens (`[play] token_keys`): checked by every edge with no call
//! home, so a new edge needs no entry in a token server's list (seeds/003's pain).
//!
//! A token is `v1-EXPIRES-NET-SIGNATURE`, given as `?token=` on the play URL (RTMP: the stream
//! name's query, `rtmp://edge/live/cam?token=...`; HTTP-FLV and HLS: the request's query):
//!
//! - `EXPIRES`: Unix time in seconds after which it is refused;
//! - `NET`: empty, or the one client network that may use it, with `_` for `/`
//!   (`198.18.0.0_15`, `2001:db8::_32`; an address alone is its /32 or /128);
//! - `SIGNATURE`: lowercase hex of HMAC-SHA256(key, "v1\nAPP/STREAM\nEXPIRES\nNET").
//!
//! Any configured key may have signed it: rotation is adding the new key, moving the token
//! issuer to it, then removing the old key once its tokens expired — each step a reload.
//! Networks in `token_exempt` play without a token (the lb's health checks, the operator's
//! tools: an exemption by configuration, not by accident). A refusal says the same thing
//! whatever the reason and whether or not the stream exists; the reason goes to the log and to
//! `edgefleet_edge_refused_total{reason="play_token_*"}`.
//!
//! Pure logic: the clock is passed in.

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use std::net::IpAddr;

type HmacSha256 = Hmac<Sha256>;

/// The answer a refused player gets, the same for every reason.
pub const REFUSED: &str = "play token missing, expired or not valid for this stream";

/// Why a token was refused (for logs and metrics only, never for the player).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    Expired,
    Signature,
    Network,
}

impl TokenError {
    pub fn describe(self) -> &'static str {
        match self {
            TokenError::Missing => "no ?token=",
            TokenError::Malformed => "token not of the form v1-EXPIRES-NET-SIGNATURE",
            TokenError::Expired => "token expired",
            TokenError::Signature => "token signed by no configured key or for another stream",
            TokenError::Network => "token bound to another client network",
        }
    }
}

/// `[play]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlayConfig {
    /// Keys any of which may sign a token; empty = no token needed.
    pub token_keys: Vec<String>,
    /// Networks that play without a token.
    pub token_exempt: Vec<IpNet>,
}

impl PlayConfig {
    pub fn tokens_required(&self) -> bool {
        !self.token_keys.is_empty()
    }

    /// Whether `peer` may play `stream` (`APP/STREAM`) with `token` at `now_unix`.
    pub fn check(
        &self,
        stream: &str,
        token: Option<&str>,
        peer: IpAddr,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        if !self.tokens_required() || common::nets::in_networks(&self.token_exempt, peer) {
            return Ok(());
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let t = Token::parse(token).ok_or(TokenError::Malformed)?;
        let signed_by_a_key = self.token_keys.iter().any(|k| {
            mac(k, stream, t.expires_field, t.net_field)
                .verify_slice(&t.signature)
                .is_ok()
        });
        if !signed_by_a_key {
            return Err(TokenError::Signature);
        }
        if now_unix > t.expires {
            return Err(TokenError::Expired);
        }
        if let Some(net) = t.net {
            if !common::nets::in_networks(&[net], peer) {
                return Err(TokenError::Network);
            }
        }
        Ok(())
    }
}

fn mac(key: &str, stream: &str, expires: &str, net: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v1\n{stream}\n{expires}\n{net}").as_bytes());
    mac
}

/// A token for `stream` (`APP/STREAM`) valid until `expires` (Unix seconds), for clients in
/// `net` if given.
pub fn sign(key: &str, stream: &str, expires: u64, net: Option<IpNet>) -> String {
    let net_field = net
        .map(|n| n.to_string().replace('/', "_"))
        .unwrap_or_default();
    let sig = mac(key, stream, &expires.to_string(), &net_field)
        .finalize()
        .into_bytes();
    format!("v1-{expires}-{net_field}-{}", hex::encode(sig))
}

struct Token<'a> {
    expires: u64,
    expires_field: &'a str,
    net: Option<IpNet>,
    net_field: &'a str,
    signature: Vec<u8>,
}

impl<'a> Token<'a> {
    fn parse(s: &'a str) -> Option<Token<'a>> {
        let rest = s.strip_prefix("v1-")?;
        let (expires_field, rest) = rest.split_once('-')?;
        let (net_field, sig) = rest.rsplit_once('-')?;
        if expires_field.is_empty() || !expires_field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let expires = expires_field.parse().ok()?;
        let net = if net_field.is_empty() {
            None
        } else {
            let n = net_field.replace('_', "/");
            Some(
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .ok()?,
            )
        };
        if sig.len() != 64 {
            return None;
        }
        let signature = hex::decode(sig).ok()?;
        Some(Token {
            expires,
            expires_field,
            net,
            net_field,
            signature,
        })
    }
}

/// `text` (a playlist) with `?query` appended to every URI it lists — media lines and the
/// `URI="..."` attributes of tags — so that a player that fetched the playlist with a token
/// fetches its segments and parts with it.
pub fn playlist_with_query(text: &str, query: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push_str(line);
            out.push(if line.contains('?') { '&' } else { '?' });
            out.push_str(query);
        } else {
            let mut rest = line;
            while let Some(i) = rest.find("URI=\"") {
                let start = i + 5;
                let Some(len) = rest[start..].find('"') else {
                    break;
                };
                let uri = &rest[start..start + len];
                out.push_str(&rest[..start]);
                out.push_str(uri);
                out.push(if uri.contains('?') { '&' } else { '?' });
                out.push_str(query);
                rest = &rest[start + len..];
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef-old";
    const NEW: &str = "fedcba9876543210-new";

    fn cfg(keys: &[&str]) -> PlayConfig {
        PlayConfig {
            token_keys: keys.iter().map(|k| k.to_string()).collect(),
            token_exempt: vec!["127.0.0.0/8".parse().unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_signed_token_plays_its_stream_until_it_expires() {
        let c = cfg(&[KEY]);
        let t = sign(KEY, "live/cam", 1000, None);
        let peer = ip("198.18.0.9");
        assert_eq!(c.check("live/cam", Some(&t), peer, 999), Ok(()));
        assert_eq!(c.check("live/cam", Some(&t), peer, 1000), Ok(()));
        assert_eq!(
            c.check("live/cam", Some(&t), peer, 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            c.check("live/other", Some(&t), peer, 999),
            Err(TokenError::Signature)
        );
        assert_eq!(
            c.check("live/cam", None, peer, 999),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn rotation_accepts_old_and_new_keys_while_both_are_configured() {
        let both = cfg(&[KEY, NEW]);
        let only_new = cfg(&[NEW]);
        let old_t = sign(KEY, "live/cam", 50, None);
        let new_t = sign(NEW, "live/cam", 50, None);
        let peer = ip("198.18.0.9");
        assert_eq!(both.check("live/cam", Some(&old_t), peer, 1), Ok(()));
        assert_eq!(both.check("live/cam", Some(&new_t), peer, 1), Ok(()));
        assert_eq!(only_new.check("live/cam", Some(&new_t), peer, 1), Ok(()));
        assert_eq!(
            only_new.check("live/cam", Some(&old_t), peer, 1),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn a_token_bound_to_a_network_plays_only_there() {
        let c = cfg(&[KEY]);
        let net: IpNet = "198.18.4.0/24".parse().unwrap();
        let t = sign(KEY, "live/cam", 50, Some(net));
        assert!(t.contains("-198.18.4.0_24-"), "{t}");
        assert_eq!(c.check("live/cam", Some(&t), ip("198.18.4.7"), 1), Ok(()));
        assert_eq!(
            c.check("live/cam", Some(&t), ip("::ffff:198.18.4.7"), 1),
            Ok(())
        );
        assert_eq!(
            c.check("live/cam", Some(&t), ip("198.18.5.7"), 1),
            Err(TokenError::Network)
        );
        // The network is signed: changing it breaks the signature.
        let moved = t.replace("198.18.4.0_24", "198.18.5.0_24");
        assert_eq!(
            c.check("live/cam", Some(&moved), ip("198.18.5.7"), 1),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn exempt_networks_and_no_keys_need_no_token() {
        assert_eq!(
            cfg(&[KEY]).check("live/cam", None, ip("127.0.0.1"), 1),
            Ok(())
        );
        assert_eq!(
            cfg(&[]).check("live/cam", None, ip("198.18.0.1"), 1),
            Ok(())
        );
    }

    #[test]
    fn garbage_tokens_are_malformed_never_a_panic() {
        let c = cfg(&[KEY]);
        let peer = ip("198.18.0.9");
        let sig = "a".repeat(64);
        for bad in [
            "x".to_string(),
            "v1-".into(),
            "v1--".into(),
            "v1---".into(),
            format!("v1-abc--{sig}"),
            format!("v1-99999999999999999999999--{sig}"),
            format!("v1-5-not_a_net-{sig}"),
            format!("v1-5--{}", "zz".repeat(32)),
            "v1-5--abcd".into(),
            "v2-5--".into(),
            "v1-5-é-".into(),
        ] {
            assert_eq!(
                c.check("live/cam", Some(&bad), peer, 1),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // Well-formed but signed by nobody.
        assert_eq!(
            c.check("live/cam", Some(&format!("v1-5--{sig}")), peer, 1),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn playlist_uris_get_the_query() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"cam-init-1.mp4\"\n#EXT-X-PART:DURATION=0.5,URI=\"cam-2.0.m4s\"\n#EXTINF:2.0,\ncam-2.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-4.1.m4s\"\n";
        let out = playlist_with_query(text, "token=T");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"cam-init-1.mp4?token=T\"\n#EXT-X-PART:DURATION=0.5,URI=\"cam-2.0.m4s?token=T\"\n#EXTINF:2.0,\ncam-2.m4s?token=T\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-4.1.m4s?token=T\"\n"
        );
        assert_eq!(playlist_with_query("#X:URI=\"a", "q"), "#X:URI=\"a\n");
    }
}
