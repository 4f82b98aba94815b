//! URL query strings (`key=s3cret&token=T`), the one reading every part of EdgeFleet uses:
//! the stream names of RTMP (`cam?key=...`), the HTTP players' URLs, the APIs' parameters.
//! Values are returned as written (no `%`-decoding): callers that need decoding do it, and
//! a value they check (a token, a key) is compared byte for byte.

use std::borrow::Cow;

/// The `key=value` pairs in order, empty segments (`a=1&&b=2`) skipped; a bare `key` reads
/// as `(key, "")`.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// The value of the first `key=value`; a bare `key` (no `=`) is not a value.
pub fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The query without any `key` parameter (bare or with a value) and without empty segments;
/// borrowed when nothing is removed.
pub fn without<'a>(query: &'a str, key: &str) -> Cow<'a, str> {
    let drop = |kv: &str| kv.is_empty() || kv.split_once('=').map_or(kv, |(k, _)| k) == key;
    if !query.split('&').any(drop) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|kv| !drop(kv)).collect();
    Cow::Owned(kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_as_written() {
        assert_eq!(param("key=s3cret&x=1", "key"), Some("s3cret"));
        assert_eq!(param("x=1&key=a=b", "key"), Some("a=b"));
        assert_eq!(param("key&x=1", "key"), None);
        assert_eq!(param("", "key"), None);
        assert_eq!(param("key=1&key=2", "key"), Some("1"));
        assert_eq!(param("key=", "key"), Some(""));
    }

    #[test]
    fn pairs_skip_empty_segments() {
        let all: Vec<_> = pairs("a=1&&b&c=").collect();
        assert_eq!(all, vec![("a", "1"), ("b", ""), ("c", "")]);
        assert_eq!(pairs("").count(), 0);
    }

    #[test]
    fn without_removes_every_copy_and_borrows_when_it_can() {
        assert_eq!(without("token=T&x=1", "token"), "x=1");
        assert_eq!(without("x=1&token=T&token&y=2", "token"), "x=1&y=2");
        assert_eq!(without("token=T", "token"), "");
        assert_eq!(without("a=1&&b=2", "token"), "a=1&b=2");
        assert!(matches!(without("x=1&y=2", "token"), Cow::Borrowed(_)));
        assert_eq!(without("tokens=1", "token"), "tokens=1");
    }
}
