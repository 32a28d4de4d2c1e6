//! A small HTTP client for the daemon's admin listener: `forcemfa trigger` and
//! `forcemfa healthcheck` (container images carry no curl).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::token::Token;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The address to reach a listener bound to `listen`: a wildcard bind is reached on loopback.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// Sends one request and returns the status and body.
pub async fn call(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: Option<&Token>,
) -> Result<(StatusCode, String), String> {
    tokio::time::timeout(TIMEOUT, call_inner(method, addr, path, token))
        .await
        .map_err(|_| format!("no answer from {addr} within {}s", TIMEOUT.as_secs()))?
}

async fn call_inner(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: Option<&Token>,
) -> Result<(StatusCode, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request to {addr}{path}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer from {addr}: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}
