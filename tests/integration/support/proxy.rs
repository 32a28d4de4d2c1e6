//! A fault-injecting HTTP proxy between forcemfa and moto_server: it forwards every request, except
//! those a rule matches, which it answers with an injected fault. It doubles as a scriptable fake
//! IAM endpoint: a rule can answer given actions with given bodies ([`Fault::Answer`]), or pass on
//! the emulator's real answer altered ([`Fault::Rewrite`]), so that tests can feed forcemfa broken
//! answers beside a working account.
//!
//! It can also give the emulator the shape of the real endpoint: a round-trip time on every request
//! ([`FaultProxy::set_latency`]), and IAM's throttling, a token bucket per signing key that answers
//! IAM's `Throttling` error when empty ([`FaultProxy::set_throttle`]). The benchmark
//! (examples/bench.rs) uses it for that.
//!
//! It runs on its own threads with blocking I/O, so that it keeps serving while a test waits for
//! the forcemfa process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to answer instead of forwarding.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 500 with IAM's `ServiceFailure` error.
    ServerError,
    /// HTTP 400 with IAM's `Throttling` error.
    Throttle,
    /// HTTP 403 with `AccessDenied` (a role that may not be assumed, a missing permission).
    AccessDenied,
    /// HTTP 404 with `NoSuchEntity` (a user deleted in the middle of a run).
    NoSuchEntity,
    /// Forwarded, after a pause of this many milliseconds.
    Delay(u64),
    /// The connection is closed without an answer; the request never reaches the server.
    Drop,
    /// The request reaches the server, but the connection is closed before its answer.
    DropAfterForward,
    /// This status and body, well framed, instead of forwarding.
    Answer { status: u16, body: String },
    /// Forwarded, and the server's answer body replaced by what this makes of it.
    Rewrite(fn(&str) -> String),
}

/// Requests whose form body contains every one of `needles` and none of `absent` get `fault`: the
/// first `times` of them only when `times` is set, and `percent` in every hundred when that is set.
#[derive(Debug, Clone)]
pub struct Rule {
    pub needles: Vec<String>,
    pub absent: Vec<String>,
    pub fault: Fault,
    pub times: Option<u64>,
    pub percent: Option<u64>,
    seen: u64,
}

impl Rule {
    pub fn new(needles: &[&str], fault: Fault) -> Rule {
        Rule {
            needles: needles
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            absent: Vec::new(),
            fault,
            times: None,
            percent: None,
            seen: 0,
        }
    }

    /// Faults `p` of every hundred matching requests, spread evenly (deterministic).
    pub fn percent(self, p: u64) -> Rule {
        Rule {
            percent: Some(p),
            ..self
        }
    }

    /// Matches only requests that contain none of `needles`.
    pub fn unless(self, needles: &[&str]) -> Rule {
        Rule {
            absent: needles
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            ..self
        }
    }

    /// Faults only the first `n` matching requests.
    pub fn times(self, n: u64) -> Rule {
        Rule {
            times: Some(n),
            ..self
        }
    }
}

/// IAM's throttling: every IAM request takes a token from the bucket of its signing key (one per
/// account for forcemfa, which signs with one set of credentials per account); an empty bucket
/// answers HTTP 400 with IAM's `Throttling` error. Other services (STS, Organizations) are not
/// throttled: their limits are their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Tokens added per second.
    pub rate: f64,
    /// Tokens the bucket holds; it starts full.
    pub burst: f64,
}

/// Requests seen, by kind, since the last [`FaultProxy::reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Those signed for IAM.
    pub iam: u64,
    /// IAM requests answered `Throttling` by the bucket.
    pub throttled: u64,
}

/// What every connection's thread shares.
struct Shared {
    rules: Mutex<Vec<Rule>>,
    faulted: AtomicU64,
    requests: Mutex<Vec<String>>,
    /// How long each answer passed on took, from its request's arrival to its answer's last
    /// byte, by action.
    round_trips: Mutex<Vec<(String, Duration)>>,
    /// Added to every request, half before it is handled and half before its answer.
    latency: Mutex<Duration>,
    throttle: Mutex<Option<Throttle>>,
    /// Tokens and their last refill, by signing key.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    counts: Mutex<Counts>,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let shared = Arc::new(Shared {
            rules: Mutex::new(Vec::new()),
            faulted: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            round_trips: Mutex::new(Vec::new()),
            throttle: Mutex::new(None),
            buckets: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (shared, upstream) = (shared.clone(), upstream.clone());
                    std::thread::spawn(move || serve(conn, &upstream, &shared));
                }
            });
        }
        FaultProxy {
            endpoint,
            shared,
            stop,
        }
    }

    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().expect("rules") = rules;
    }

    /// Every request takes this much longer: half before it is handled, half before its answer.
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().expect("latency") = latency;
    }

    /// Throttles IAM requests as IAM does, or stops throttling; every bucket starts full.
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        *self.shared.throttle.lock().expect("throttle") = throttle;
        self.shared.buckets.lock().expect("buckets").clear();
    }

    /// Requests seen since the last reset.
    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().expect("counts")
    }

    /// Forgets the requests seen and fills every bucket again, as before a first request.
    pub fn reset(&self) {
        *self.shared.counts.lock().expect("counts") = Counts::default();
        self.shared.requests.lock().expect("requests").clear();
        self.shared.round_trips.lock().expect("round trips").clear();
        self.shared.buckets.lock().expect("buckets").clear();
    }

    /// The round trips of the `action` requests passed on and answered (not those throttled or
    /// faulted), in the order they were answered.
    pub fn round_trips(&self, action: &str) -> Vec<Duration> {
        self.shared
            .round_trips
            .lock()
            .expect("round trips")
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, d)| *d)
            .collect()
    }

    /// Requests answered with a fault so far.
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }

    /// How many requests so far contained every one of `needles`.
    pub fn requests_with(&self, needles: &[&str]) -> usize {
        self.shared
            .requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|body| needles.iter().all(|n| body.contains(n)))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// One HTTP/1.1 message: the head (start line and headers, with the blank line) and the body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

fn read_message(reader: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut head = Vec::new();
    let mut content_length: Option<usize> = None;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(v) = text.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok();
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut body = Vec::new();
    match content_length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).ok()?;
        }
        None if head.starts_with(b"HTTP/") => {
            reader.read_to_end(&mut body).ok()?;
        }
        None => {}
    }
    Some(Message { head, body })
}

/// A whole, well-framed HTTP answer.
fn http_answer(status: &str, body: &str) -> Vec<u8> {
    answer(status, "", body, "close")
}

/// IAM's answer: the status and body, stamped with a request id as IAM stamps every answer.
fn iam_answer(status: &str, body: &str, connection: &str) -> Vec<u8> {
    answer(
        status,
        &format!("x-amzn-RequestId: {REQUEST_ID}\r\n"),
        body,
        connection,
    )
}

/// An HTTP/1.1 answer: the status, `headers` (whole lines) and an XML body.
fn answer(status: &str, headers: &str, body: &str, connection: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: text/xml\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The answer that replaces the upstream's; `None` for faults that forward.
fn fault_response(fault: &Fault) -> Option<Vec<u8>> {
    let (status, kind, code) = match fault {
        Fault::ServerError => ("500 Internal Server Error", "Receiver", "ServiceFailure"),
        Fault::Throttle => ("400 Bad Request", "Sender", "Throttling"),
        Fault::AccessDenied => ("403 Forbidden", "Sender", "AccessDenied"),
        Fault::NoSuchEntity => ("404 Not Found", "Sender", "NoSuchEntity"),
        Fault::Answer { status, body } => {
            let reason = if *status == 200 { "OK" } else { "Status" };
            return Some(http_answer(&format!("{status} {reason}"), body));
        }
        Fault::Delay(_) | Fault::Drop | Fault::DropAfterForward | Fault::Rewrite(_) => return None,
    };
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>{REQUEST_ID}</RequestId></ErrorResponse>"
    );
    Some(iam_answer(status, &body, "close"))
}

/// The access key and the service a request is signed for (SigV4's `Credential=KEY/DATE/REGION/
/// SERVICE/aws4_request`).
fn signer(head: &[u8]) -> Option<(String, String)> {
    let head = String::from_utf8_lossy(head);
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))?;
    let credential = line.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let mut parts = credential.split('/');
    let key = parts.next()?.to_string();
    let service = parts.nth(2)?.to_string();
    Some((key, service))
}

/// Whether the bucket of `key` has a token for one more request now (and takes it).
fn take_token(shared: &Shared, throttle: Throttle, key: &str) -> bool {
    let mut buckets = shared.buckets.lock().expect("buckets");
    let now = Instant::now();
    let (tokens, at) = buckets
        .entry(key.to_string())
        .or_insert((throttle.burst, now));
    *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * throttle.rate).min(throttle.burst);
    *at = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// IAM's `Throttling` error, on a connection that stays open.
fn throttling_answer() -> Vec<u8> {
    let body = format!("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>{REQUEST_ID}</RequestId></ErrorResponse>");
    iam_answer("400 Bad Request", &body, "keep-alive")
}

fn serve(conn: TcpStream, upstream: &str, shared: &Shared) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut client = write_half;
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_message(&mut reader) {
        let arrived = Instant::now();
        let body = String::from_utf8_lossy(&request.body).into_owned();
        if let Ok(mut seen) = shared.requests.lock() {
            seen.push(body.clone());
        }
        let latency = *shared.latency.lock().expect("latency");
        std::thread::sleep(latency / 2);
        let signer = signer(&request.head);
        let is_iam = signer.as_ref().is_some_and(|(_, service)| service == "iam");
        let throttle = *shared.throttle.lock().expect("throttle");
        let throttled = match (throttle, &signer) {
            (Some(throttle), Some((key, _))) if is_iam => !take_token(shared, throttle, key),
            _ => false,
        };
        if let Ok(mut counts) = shared.counts.lock() {
            counts.requests += 1;
            counts.iam += u64::from(is_iam);
            counts.throttled += u64::from(throttled);
        }
        if throttled {
            std::thread::sleep(latency / 2);
            if client.write_all(&throttling_answer()).is_err() {
                return;
            }
            continue;
        }
        let fault = shared
            .rules
            .lock()
            .map(|mut rules| {
                let rule = rules.iter_mut().find(|r| {
                    r.times != Some(0)
                        && r.needles.iter().all(|n| body.contains(n.as_str()))
                        && !r.absent.iter().any(|n| body.contains(n.as_str()))
                })?;
                if let Some(n) = rule.times.as_mut() {
                    *n -= 1;
                }
                rule.seen += 1;
                if let Some(p) = rule.percent {
                    // Request k is faulted when the running share of faults falls behind p%.
                    if (rule.seen * p) / 100 == ((rule.seen - 1) * p) / 100 {
                        return None;
                    }
                }
                Some(rule.fault.clone())
            })
            .unwrap_or(None);
        if let Some(fault) = &fault {
            match fault_response(fault) {
                Some(answer) => {
                    shared.faulted.fetch_add(1, Ordering::SeqCst);
                    let _ = client.write_all(&answer);
                    return;
                }
                None => match fault {
                    Fault::Delay(ms) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
                    Fault::Drop => {
                        shared.faulted.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    _ => {}
                },
            }
        }
        let Ok(mut up) = TcpStream::connect(upstream) else {
            return;
        };
        if up.write_all(&request.head).is_err() || up.write_all(&request.body).is_err() {
            return;
        }
        let Ok(up_read) = up.try_clone() else { return };
        let Some(response) = read_message(&mut BufReader::new(up_read)) else {
            return;
        };
        if matches!(fault, Some(Fault::DropAfterForward)) {
            shared.faulted.fetch_add(1, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(latency / 2);
        if let Some(Fault::Rewrite(rewrite)) = &fault {
            shared.faulted.fetch_add(1, Ordering::SeqCst);
            let status = String::from_utf8_lossy(&response.head)
                .lines()
                .next()
                .and_then(|l| l.split_once(' '))
                .map(|(_, s)| s.trim().to_string())
                .unwrap_or_else(|| "200 OK".to_string());
            let body = rewrite(&String::from_utf8_lossy(&response.body));
            let _ = client.write_all(&http_answer(&status, &body));
            return;
        }
        if client.write_all(&response.head).is_err() || client.write_all(&response.body).is_err() {
            return;
        }
        let action = body
            .split('&')
            .find_map(|p| p.strip_prefix("Action="))
            .unwrap_or_default()
            .to_string();
        if let Ok(mut round_trips) = shared.round_trips.lock() {
            round_trips.push((action, arrived.elapsed()));
        }
    }
}
