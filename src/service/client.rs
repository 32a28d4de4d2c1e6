//! A small HTTP client for the daemon's admin listener: `forcemfa trigger` (and its wait for the
//! run's report) and `forcemfa healthcheck` (container images carry no curl).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{header, HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::admin::{EXIT_CODE_HEADER, RUN_HEADER};
use super::token::Token;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the admin listener gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer from {addr} within {}s", TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("request to {addr}{path}: {source}")]
    Send {
        addr: SocketAddr,
        path: String,
        source: hyper::Error,
    },
    #[error("reading the answer from {addr}: {source}")]
    Read {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// Why no report of the run asked for came.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the report of run {0} carries no exit code")]
    NoExitCode(u64),
    #[error("HTTP {}: {body}", status.as_u16())]
    Refused { status: StatusCode, body: String },
    #[error("run {run} has not finished within {}s", timeout.as_secs())]
    NotFinished { run: u64, timeout: Duration },
}

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

/// One answer of the admin listener.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, without surrounding white space.
    pub body: String,
}

impl Answer {
    /// A header's value parsed as a number; `None` when it is absent or not one.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }
}

/// Sends one request (asking for the `accept` media type, when given) and returns the answer.
pub async fn call(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: Option<&Token>,
    accept: Option<&str>,
) -> Result<Answer, CallError> {
    tokio::time::timeout(TIMEOUT, call_inner(method, addr, path, token, accept))
        .await
        .map_err(|_| CallError::Timeout { addr })?
}

async fn call_inner(
    method: Method,
    addr: SocketAddr,
    path: &str,
    token: Option<&Token>,
    accept: Option<&str>,
) -> Result<Answer, CallError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| CallError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| CallError::Handshake { addr, source })?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let request = request.body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|source| CallError::Send {
            addr,
            path: path.to_string(),
            source,
        })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|source| CallError::Read { addr, source })?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).trim().to_string(),
    })
}

/// How often `trigger --wait` asks for the report.
const POLL: Duration = Duration::from_millis(500);

/// The number of the run that serves a request, from `POST /reconcile`'s answer.
pub fn requested_run(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body).ok()?["run"].as_u64()
}

/// Polls `GET /report` until the report of run `run` (or of a later one, which served the
/// request too) is there; returns its exit code and its body in the `accept` format. Gives up
/// after `timeout`, or at once when the listener refuses the request or cannot be reached: a
/// restarted service numbers its runs afresh, so its reports would answer for other requests.
pub async fn wait_for_report(
    addr: SocketAddr,
    token: Option<&Token>,
    run: u64,
    accept: &str,
    timeout: Duration,
) -> Result<(u8, String), WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = call(Method::GET, addr, "/report", token, Some(accept)).await?;
        match answer.status {
            StatusCode::OK if answer.number(RUN_HEADER).is_some_and(|n| n >= run) => {
                let code = answer
                    .number(EXIT_CODE_HEADER)
                    .and_then(|c| u8::try_from(c).ok())
                    .ok_or(WaitError::NoExitCode(run))?;
                return Ok((code, answer.body));
            }
            // An earlier run's report, or none yet.
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE => {}
            status => {
                return Err(WaitError::Refused {
                    status,
                    body: answer.body,
                })
            }
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(WaitError::NotFinished { run, timeout });
        }
        tokio::time::sleep(POLL).await;
    }
}
