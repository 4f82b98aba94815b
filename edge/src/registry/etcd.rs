//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`)
//! and hyper's HTTP/1 client: what the registry needs and nothing more. Keys and values are
//! bytes, base64 in the JSON; int64 fields come back as strings.
//!
//! Chosen over the `etcd-client` crate because that one needs `protoc` at build time, and a
//! plain `cargo build` must work with only the Rust toolchain.
//!
//! Several endpoints: each request tries them in order from the last one that worked, and
//! remembers the one that answers. Every attempt is bounded by the client's timeout; errors
//! name the endpoint and what failed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Largest answer body read (a range of a stream's registrations is a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EtcdError {
    #[error("etcd at {endpoint}: {what}")]
    Endpoint { endpoint: String, what: String },
    #[error("no etcd endpoint answered: {0}")]
    AllFailed(String),
}

fn err(endpoint: &str, what: impl Into<String>) -> EtcdError {
    EtcdError::Endpoint {
        endpoint: endpoint.to_string(),
        what: what.into(),
    }
}

/// One key-value pair of a range answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub struct Etcd {
    /// "HOST:PORT" of each endpoint, in the configured order.
    endpoints: Vec<String>,
    /// The endpoint tried first: the last one that answered.
    current: AtomicUsize,
    timeout: Duration,
}

/// The end of the range of every key starting with `prefix` (etcd's `range_end`): the
/// prefix with its last byte that is not 0xff incremented.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff (or empty): all keys from the prefix on.
    vec![0]
}

impl Etcd {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Etcd {
        Etcd {
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The endpoint that answered last.
    pub fn current(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        self.endpoints.get(i).map(|s| s.as_str()).unwrap_or("")
    }

    /// POSTs `body` to `path` on each endpoint in turn; the first JSON answer wins.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(EtcdError::AllFailed("no endpoint configured".into()));
        }
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let ep = &self.endpoints[idx];
            match tokio::time::timeout(self.timeout, post(ep, path, body)).await {
                Ok(Ok(v)) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    // An answer that is an error (bad request, compacted...) is the same on
                    // every member: no point asking the next one.
                    if matches!(&e, Call::Answered(_)) {
                        self.current.store(idx, Ordering::Relaxed);
                        return Err(e.into_error(ep, path));
                    }
                    errors.push(e.into_error(ep, path).to_string());
                }
                Err(_) => errors.push(
                    err(
                        ep,
                        format!("{path}: no answer within {} ms", self.timeout.as_millis()),
                    )
                    .to_string(),
                ),
            }
        }
        if n == 1 {
            // One endpoint: its own error says it all.
            return Err(EtcdError::Endpoint {
                endpoint: self.endpoints[0].clone(),
                what: errors
                    .pop()
                    .unwrap_or_default()
                    .trim_start_matches(&format!("etcd at {}: ", self.endpoints[0]))
                    .to_string(),
            });
        }
        Err(EtcdError::AllFailed(errors.join("; ")))
    }

    /// Puts `key` = `value`, attached to `lease` when non-zero.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", &body).await.map(|_| ())
    }

    /// Every key starting with `prefix`, with its value.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<Vec<Kv>, EtcdError> {
        let body =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        let v = self.call("/v3/kv/range", &body).await?;
        parse_range(&v).map_err(|what| err(self.current(), format!("/v3/kv/range: {what}")))
    }

    pub async fn delete(&self, key: &[u8]) -> Result<(), EtcdError> {
        let body = json!({ "key": B64.encode(key) });
        self.call("/v3/kv/deleterange", &body).await.map(|_| ())
    }

    /// A new lease of `ttl` seconds: its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        int_field(&v, "ID").filter(|id| *id != 0).ok_or_else(|| {
            err(
                self.current(),
                format!("/v3/lease/grant: no lease ID in {v}"),
            )
        })
    }

    /// Refreshes `lease`: the TTL it has left (0 = the lease is gone: expired or revoked).
    pub async fn keepalive(&self, lease: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        // The gateway streams: {"result": {...}}; a lease it does not know has no TTL.
        let r = v.get("result").unwrap_or(&v);
        Ok(int_field(r, "TTL").unwrap_or(0))
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
            .map(|_| ())
    }

    /// Opens a watch of every key starting with `prefix` on the current endpoint (then the
    /// others); [`Watch::next`] returns at each batch of changes.
    pub async fn watch_prefix(&self, prefix: &[u8]) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
        }});
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n.max(1);
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let ep = &self.endpoints[idx];
            match tokio::time::timeout(self.timeout, open(ep, "/v3/watch", &body)).await {
                Ok(Ok(body)) => {
                    self.current.store(idx, Ordering::Relaxed);
                    let mut w = Watch {
                        endpoint: ep.clone(),
                        body,
                        buf: BytesMut::new(),
                    };
                    // The first message confirms the watch ("created": true).
                    match tokio::time::timeout(self.timeout, w.message()).await {
                        Ok(Ok(m)) if m.pointer("/result/created") == Some(&json!(true)) => {
                            return Ok(w)
                        }
                        Ok(Ok(m)) => errors.push(format!("{ep}: /v3/watch: not created: {m}")),
                        Ok(Err(e)) => errors.push(e.to_string()),
                        Err(_) => errors.push(format!("{ep}: /v3/watch: no confirmation")),
                    }
                }
                Ok(Err(e)) => errors.push(e.into_error(ep, "/v3/watch").to_string()),
                Err(_) => errors.push(format!("{ep}: /v3/watch: no answer")),
            }
        }
        Err(EtcdError::AllFailed(errors.join("; ")))
    }
}

/// An open watch: a streamed answer of one JSON message per line.
pub struct Watch {
    endpoint: String,
    body: hyper::body::Incoming,
    buf: BytesMut,
}

impl Watch {
    /// Waits for the next batch of changes (its events are not needed: the caller reads
    /// the range again). An error = the watch is over.
    pub async fn next(&mut self) -> Result<(), EtcdError> {
        loop {
            let m = self.message().await?;
            let r = m.get("result").unwrap_or(&m);
            if r.get("canceled") == Some(&json!(true)) {
                return Err(err(&self.endpoint, format!("/v3/watch canceled: {r}")));
            }
            if r.get("events").is_some() {
                return Ok(());
            }
            // Progress notifications and the like: keep waiting.
        }
    }

    async fn message(&mut self) -> Result<Value, EtcdError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let line = &line[..nl];
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return serde_json::from_slice::<Value>(line).map_err(|e| {
                    err(
                        &self.endpoint,
                        format!("/v3/watch: not JSON ({e}): {}", shown(line)),
                    )
                });
            }
            if self.buf.len() > MAX_BODY {
                return Err(err(&self.endpoint, "/v3/watch: a message over 1 MiB"));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => return Err(err(&self.endpoint, format!("/v3/watch: {e}"))),
                None => return Err(err(&self.endpoint, "/v3/watch: the stream ended")),
            }
        }
    }
}

/// How one request failed.
enum Call {
    /// Not reached, or the connection broke.
    Transport(String),
    /// It answered with an error or with something that is not etcd's JSON.
    Answered(String),
}

impl Call {
    fn into_error(self, ep: &str, path: &str) -> EtcdError {
        match self {
            Call::Transport(w) | Call::Answered(w) => err(ep, format!("{path}: {w}")),
        }
    }
}

/// Sends the request and returns the answer's body, once its head says 200.
async fn open(ep: &str, path: &str, body: &Value) -> Result<hyper::body::Incoming, Call> {
    let tcp = tokio::net::TcpStream::connect(ep)
        .await
        .map_err(|e| Call::Transport(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| Call::Transport(e.to_string()))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header(hyper::header::HOST, ep)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .map_err(|e| Call::Transport(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| Call::Transport(e.to_string()))?;
    let code = resp.status().as_u16();
    if code != 200 {
        let text = read_body(resp.into_body()).await.unwrap_or_default();
        return Err(Call::Answered(format!("answered {code}: {}", shown(&text))));
    }
    Ok(resp.into_body())
}

async fn post(ep: &str, path: &str, body: &Value) -> Result<Value, Call> {
    let body = open(ep, path, body).await?;
    let bytes = read_body(body).await.map_err(Call::Transport)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Call::Answered(format!("not JSON ({e}): {}", shown(&bytes))))?;
    // A gateway error can come in a 200 of a stream: {"error": {...}}.
    if let Some(e) = v.get("error") {
        return Err(Call::Answered(format!("error {e}")));
    }
    Ok(v)
}

async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Ok(d) = f.into_data() {
            out.extend_from_slice(&d);
        }
        if out.len() > MAX_BODY {
            return Err("an answer over 1 MiB".into());
        }
    }
    Ok(out.freeze())
}

/// The start of an answer for an error message.
fn shown(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(200)]);
    s.trim().to_string()
}

/// An int64 field, as the gateway writes them (a string) or as a number.
fn int_field(v: &Value, name: &str) -> Option<i64> {
    match v.get(name)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The pairs of a `/v3/kv/range` answer; an error names what is malformed.
pub fn parse_range(v: &Value) -> Result<Vec<Kv>, String> {
    let Some(kvs) = v.get("kvs") else {
        // No key in the range: etcd leaves `kvs` out.
        return if v.get("header").is_some() {
            Ok(Vec::new())
        } else {
            Err(format!(
                "not a range answer: {}",
                shown(v.to_string().as_bytes())
            ))
        };
    };
    let Some(list) = kvs.as_array() else {
        return Err(format!("kvs is not a list: {kvs}"));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, kv) in list.iter().enumerate() {
        let field = |name: &str| -> Result<Vec<u8>, String> {
            match kv.get(name) {
                // An empty value is left out of the JSON.
                None if name == "value" => Ok(Vec::new()),
                None => Err(format!("kvs[{i}] has no {name}")),
                Some(Value::String(s)) => B64
                    .decode(s)
                    .map_err(|e| format!("kvs[{i}].{name} is not base64 ({e}): {s:?}")),
                Some(other) => Err(format!("kvs[{i}].{name} is not a string: {other}")),
            }
        };
        out.push(Kv {
            key: field("key")?,
            value: field("value")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn range_answers_are_read_and_bad_ones_named() {
        let v: Value = serde_json::from_str(
            r#"{"header":{"revision":"5"},"kvs":[{"key":"L2Ev","value":"eA==","lease":"7"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(
            parse_range(&v).unwrap(),
            vec![Kv {
                key: b"/a/".to_vec(),
                value: b"x".to_vec()
            }]
        );
        let empty: Value = serde_json::from_str(r#"{"header":{"revision":"5"}}"#).unwrap();
        assert_eq!(parse_range(&empty).unwrap(), vec![]);
        for (bad, says) in [
            (
                r#"{"kvs":[{"key":"!!!","value":"eA=="}]}"#,
                "kvs[0].key is not base64",
            ),
            (r#"{"kvs":[{"value":"eA=="}]}"#, "kvs[0] has no key"),
            (r#"{"kvs":{"key":1}}"#, "kvs is not a list"),
            (r#"{"kvs":[{"key":3}]}"#, "kvs[0].key is not a string"),
            (r#"[1,2]"#, "not a range answer"),
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            let e = parse_range(&v).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn int64_fields_as_strings_or_numbers() {
        let v = json!({"ID": "694d77aa9e38260f", "TTL": "5", "n": 3});
        assert_eq!(int_field(&v, "TTL"), Some(5));
        assert_eq!(int_field(&v, "n"), Some(3));
        assert_eq!(int_field(&v, "ID"), None);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named() {
        // A port with nothing listening: bind, note, close.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let etcd = Etcd::new(vec![dead.clone()], Duration::from_millis(500));
        let e = etcd.range_prefix(b"/x/").await.unwrap_err().to_string();
        assert!(e.contains(&dead) && e.contains("cannot connect"), "{e}");
    }
}
