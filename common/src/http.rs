//! A small HTTP/1 client over hyper for the command-line tools (`lb status`, `edge status`):
//! one request to a loopback admin or API address, with bounded connect and answer times.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;

/// What is asked for, for error messages: `service` names it ("the admin API"), `hint`
/// says what to check when nothing answers ("is lb running? see admin_listen").
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub addr: &'a str,
    pub service: &'a str,
    pub hint: &'a str,
}

/// Sends `method path` to the target with `headers`; returns the status code and the body.
/// Errors name the service, the address and what failed.
pub async fn request(
    target: Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(u16, Bytes), String> {
    let a = send(
        target,
        method,
        path,
        headers,
        Bytes::new(),
        Duration::from_secs(10),
    )
    .await?;
    Ok((a.status, a.body))
}

/// An answer: status, `Location` (redirects), body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

/// [`request`] with a body and an overall bound: connecting (at most 5 s) and the answer
/// together take at most `limit`.
pub async fn send(
    target: Target<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    limit: Duration,
) -> Result<Answer, String> {
    let Target {
        addr,
        service,
        hint,
    } = target;
    let go = async {
        let tcp = tokio::time::timeout(
            limit.min(Duration::from_secs(5)),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| format!("{addr}: timed out connecting"))?
        .map_err(|e| format!("cannot reach {service} at {addr}: {e} ({hint})"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(http_body_util::Full::new(body))
            .map_err(|e| format!("{addr}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            location,
            body,
        })
    };
    tokio::time::timeout(limit, go)
        .await
        .map_err(|_| format!("{addr}: no answer within {} ms", limit.as_millis()))?
}

/// [`request`] for a GET that must succeed (2xx); other answers become an error with the
/// server's text.
pub async fn get(
    target: Target<'_>,
    path: &str,
    headers: &[(&str, String)],
) -> Result<Bytes, String> {
    success(target, request(target, "GET", path, headers).await?)
}

/// The body of a 2xx answer; any other answer is an error with the server's text.
pub fn success(target: Target<'_>, (code, body): (u16, Bytes)) -> Result<Bytes, String> {
    if !(200..300).contains(&code) {
        return Err(format!(
            "{} answered {code}: {}",
            target.addr,
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(body)
}
