//! Secrets out of logs: publish keys and tokens travel in URL queries (`cam?key=SECRET`,
//! `rtmp://host/live?key=SECRET`), so every query value is masked before it is logged.

use std::borrow::Cow;

/// `s` with the value of every `name=value` after the first `?` replaced by `***`
/// (`cam?key=s3cret&x=1` -> `cam?key=***&x=***`; a bare `?token` -> `?***`).
pub fn query(s: &str) -> Cow<'_, str> {
    let Some((head, q)) = s.split_once('?') else {
        return Cow::Borrowed(s);
    };
    let masked: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None if kv.is_empty() => String::new(),
            None => "***".to_string(),
        })
        .collect();
    Cow::Owned(format!("{head}?{}", masked.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_query_value() {
        assert_eq!(query("cam"), "cam");
        assert_eq!(query("cam?key=s3cret"), "cam?key=***");
        assert_eq!(query("cam?key=s3cret&x=1"), "cam?key=***&x=***");
        assert_eq!(
            query("rtmp://h:1935/live?key=s3cret"),
            "rtmp://h:1935/live?key=***"
        );
        assert_eq!(query("cam?s3cret"), "cam?***");
        assert_eq!(query("cam?a=b?key=c"), "cam?a=***");
        assert!(!query("x?key=s3cret?more=s3cret").contains("s3cret"));
    }
}
