//! An HTTP/1.x request head, parsed (by `httparse`) and routed, without I/O. Anything that
//! is not a well-formed `GET`/`HEAD`/`OPTIONS` of a path this server serves is an
//! [`Refuse`] with the status to answer and why; no input panics (fuzz target `http_request`).

use percent_encoding::percent_decode_str;

/// Longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path as sent (still %-encoded), without the query.
    pub path: String,
    /// The query, without `?` (empty when none).
    pub query: String,
    pub keep_alive: bool,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// An answer to give instead of serving: status, reason, and whether the connection can go
/// on (it cannot when the request's end is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    pub status: u16,
    pub why: String,
    pub close: bool,
}

impl Refuse {
    pub fn new(status: u16, why: impl Into<String>) -> Refuse {
        Refuse {
            status,
            why: why.into(),
            close: false,
        }
    }

    fn closing(status: u16, why: impl Into<String>) -> Refuse {
        Refuse {
            status,
            why: why.into(),
            close: true,
        }
    }
}

/// What the bytes at the start of `buf` are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A request whose head took `.1` bytes.
    Request(Request, usize),
    /// A request refused; `.1` is the head's length (when the request could be delimited).
    Refused(Refuse, usize),
    /// The head is not complete yet.
    Partial,
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Parsed::Refused(
                Refuse::closing(431, format!("request head over {MAX_HEAD} bytes")),
                0,
            )
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(
                Refuse::closing(431, format!("more than {MAX_HEADERS} headers")),
                0,
            )
        }
        Err(e) => return Parsed::Refused(Refuse::closing(400, format!("bad request: {e}")), 0),
    };
    if len > MAX_HEAD {
        return Parsed::Refused(
            Refuse::closing(431, format!("request head over {MAX_HEAD} bytes")),
            0,
        );
    }
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut range = None;
    let mut body = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(value.into_owned());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
        {
            body = true;
        }
    }
    if body {
        // Nothing here takes a body; its end is not worth finding: answer and close.
        return Parsed::Refused(Refuse::closing(413, "request bodies are not accepted"), len);
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => {
            let mut r = Refuse::new(
                405,
                format!("method {other} not allowed (GET, HEAD, OPTIONS)"),
            );
            r.close = !keep_alive;
            return Parsed::Refused(r, len);
        }
    };
    let target = req.path.unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Parsed::Request(
        Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            keep_alive,
            range,
        },
        len,
    )
}

/// What a path asks for. `STREAM` may contain `/` (as RTMP stream names may).
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/APP/STREAM.flv`
    Flv { app: String, stream: String },
    /// `/APP/STREAM.m3u8`
    Playlist { app: String, stream: String },
    /// `/APP[/DIR...]/FILE.m4s` or `.mp4`: a file a playlist in the same directory lists
    /// (its name starts with the stream's last name segment: `hls::Registry` finds it).
    HlsFile { dir: String, file: String },
}

impl Route {
    /// The hub's key for the route's stream (`APP/STREAM`, as RTMP names it); for a file,
    /// its directory.
    pub fn key(&self) -> String {
        match self {
            Route::Flv { app, stream } | Route::Playlist { app, stream } => {
                format!("{app}/{stream}")
            }
            Route::HlsFile { dir, .. } => dir.clone(),
        }
    }
}

pub fn route(path: &str) -> Result<Route, Refuse> {
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Refuse::new(400, "path is not UTF-8 once %-decoded"))?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(Refuse::new(400, "control characters in the path"));
    }
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(Refuse::new(400, "path must start with /"));
    };
    if rest.is_empty() {
        return Err(Refuse::new(
            404,
            "not a stream: /APP/STREAM.flv or /APP/STREAM.m3u8",
        ));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err(Refuse::new(400, "empty, . or .. path segment"));
    }
    if segs.len() < 2 || rest.len() > 2048 {
        return Err(Refuse::new(
            404,
            "not a stream: /APP/STREAM.flv or /APP/STREAM.m3u8",
        ));
    }
    let app = segs[0].to_string();
    let tail = &segs[1..];
    let last = tail[tail.len() - 1];
    let name = |t: &[&str], ext: &str| -> String {
        let mut s = t.join("/");
        s.truncate(s.len() - ext.len());
        s
    };
    if last.ends_with(".flv") && last.len() > 4 {
        return Ok(Route::Flv {
            app,
            stream: name(tail, ".flv"),
        });
    }
    if last.ends_with(".m3u8") && last.len() > 5 {
        return Ok(Route::Playlist {
            app,
            stream: name(tail, ".m3u8"),
        });
    }
    if (last.ends_with(".m4s") || last.ends_with(".mp4")) && last.len() > 4 {
        return Ok(Route::HlsFile {
            dir: segs[..segs.len() - 1].join("/"),
            file: last.to_string(),
        });
    }
    Err(Refuse::new(
        404,
        "not a stream: /APP/STREAM.flv or /APP/STREAM.m3u8",
    ))
}

/// A range that no byte of the body satisfies (answered 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A `Range: bytes=...` header against a body of `len` bytes: `Ok(None)` for the whole
/// body (no header, or one this server ignores: several ranges), `Ok(Some(a..b))` for one
/// range, `Err(Unsatisfiable)` for one that cannot be satisfied (416).
pub fn byte_range(
    header: Option<&str>,
    len: usize,
) -> Result<Option<std::ops::Range<usize>>, Unsatisfiable> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let r = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: usize = b.parse().map_err(|_| Unsatisfiable)?;
            len.saturating_sub(n)..len
        }
        (false, _) => {
            let start: usize = a.parse().map_err(|_| Unsatisfiable)?;
            let end = match b.is_empty() {
                true => len,
                false => b
                    .parse::<usize>()
                    .map_err(|_| Unsatisfiable)?
                    .saturating_add(1)
                    .min(len),
            };
            start..end
        }
        (true, true) => return Err(Unsatisfiable),
    };
    if r.start >= r.end || r.start >= len {
        return Err(Unsatisfiable);
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Request {
        match parse(s.as_bytes()) {
            Parsed::Request(r, n) => {
                assert_eq!(n, s.len());
                r
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_what_players_send() {
        let r = req("GET /live/cam.m3u8?_HLS_msn=3&_HLS_part=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/live/cam.m3u8");
        assert_eq!(r.query, "_HLS_msn=3&_HLS_part=1");
        assert!(r.keep_alive);
        let r = req("HEAD /live/cam.flv HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let r = req("GET /a/b HTTP/1.1\r\nConnection: close\r\nRange: bytes=0-99\r\n\r\n");
        assert!(!r.keep_alive);
        assert_eq!(r.range.as_deref(), Some("bytes=0-99"));
        assert_eq!(
            parse(b"GET /live/cam.flv HTTP/1.1\r\nHost"),
            Parsed::Partial
        );
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let status = |s: &[u8]| match parse(s) {
            Parsed::Refused(r, _) => r.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"POST /x HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(
            status(b"GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            413
        );
        assert_eq!(status(b"\x16\x03\x01\x02\x00garbage\r\n\r\n"), 400);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(big.as_bytes()), 431);
        let many: String = (0..100).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn routes_streams_and_refuses_traversal() {
        assert_eq!(
            route("/live/cam.flv").unwrap(),
            Route::Flv {
                app: "live".into(),
                stream: "cam".into()
            }
        );
        assert_eq!(route("/live/a/b.m3u8").unwrap().key(), "live/a/b");
        assert_eq!(
            route("/live/a/cam-1234.0.m4s").unwrap(),
            Route::HlsFile {
                dir: "live/a".into(),
                file: "cam-1234.0.m4s".into()
            }
        );
        assert_eq!(route("/live/my%20cam.flv").unwrap().key(), "live/my cam");
        for bad in [
            "/live/../etc/passwd.flv",
            "/live/%2e%2e/x.flv",
            "/live//x.flv",
            "/live/%00.flv",
            "/%ff/x.flv",
        ] {
            assert_eq!(route(bad).unwrap_err().status, 400, "{bad}");
        }
        for missing in ["/", "/live", "/live/cam", "/live/.flv", "/favicon.ico"] {
            assert_eq!(route(missing).unwrap_err().status, 404, "{missing}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Ok(Some(0..4)));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some(5..10)));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some(8..10)));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(byte_range(Some("bytes=x-"), 10), Err(Unsatisfiable));
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), Ok(None));
    }
}
