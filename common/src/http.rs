//! A small HTTP/1 client over hyper for the command-line tools (`lb status`, `edge status`):
//! one request to a loopback admin or API address, with bounded connect and answer times.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;

/// Sends `method path` to `addr` with `headers`; returns the status code and the body.
/// Errors name the address and what failed; `unreachable` is the hint shown when nothing
/// listens there.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    unreachable: &str,
) -> Result<(u16, Bytes), String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: timed out connecting"))?
        .map_err(|e| format!("cannot reach {addr}: {e} ({unreachable})"))?;
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
    addr: &str,
    path: &str,
    headers: &[(&str, String)],
    unreachable: &str,
) -> Result<Bytes, String> {
    let (code, body) = request(addr, "GET", path, headers, unreachable).await?;
    if !(200..300).contains(&code) {
        return Err(format!(
            "{addr} answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(body)
}
