//! A raw HTTP/1.1 client for the AdminServer and metrics tests: one request per connection
//! (`Connection: close`), over plain TCP or any other stream (TLS), the answer read to the end.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::raw::Stream;

/// (status, headers with lower-case names, body).
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Sends one request on `s` and reads the answer. The body is sent as far as the server takes
/// it (a server may answer, and close, before reading a body it refuses).
pub fn exchange(
    s: &mut dyn Stream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let _ = s.write_all(body);
    let _ = s.flush();
    let mut raw = Vec::new();
    // A TLS peer may end without close_notify once the answer is in.
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {raw:?}")))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    Ok((status, headers, body))
}

/// A plain-TCP request to `addr` (panics if no answer comes).
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(&mut s, method, target, headers, body).unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// `GET target`, with an `Authorization` header if given.
pub fn get(addr: SocketAddr, target: &str, auth: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    request(addr, "GET", target, &headers, b"")
}

/// A header's value.
pub fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A chunked body's bytes.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else { return out };
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16)
        else {
            return out;
        };
        if size == 0 || raw.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
}
