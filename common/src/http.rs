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
    let Target {
        addr,
        service,
        hint,
    } = target;
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: timed out connecting"))?
        .map_err(|e| format!("cannot reach {service} at {addr}: {e} ({hint})"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
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
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| format!("{addr}: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .map_err(|_| format!("{addr}: no answer within 10 s"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?
        .to_bytes();
    Ok((code, body))
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
