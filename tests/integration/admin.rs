//! The admin listener under abuse: a flood of idle, half-sent connections must not starve health
//! checks, runs or memory.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::daemon::{eventually, http_raw, Daemon};
use crate::support::{raise_nofile, set, Account};

const NEVER: &str = "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n";
/// Idle connections opened at once: more than a service's default soft limit of open files.
const FLOOD: usize = 1_100;
/// The soft limit on open files that systemd and many container runtimes give a service.
const SERVICE_NOFILE: u64 = 1_024;
/// What the flood may add to the daemon's peak resident memory.
const MAX_GROWTH_KIB: u64 = 12 * 1024;

/// Connects and sends the start of a request whose headers never end.
fn half_sent(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    let padding = "a".repeat(1024);
    // The server may already have closed it; a flood does not care.
    let _ = write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: forcemfa\r\nX-Padding: {padding}"
    );
    Some(stream)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: forcemfa\r\nConnection: close\r\n\r\n")
}

fn post_with_token(token: &str) -> String {
    format!(
        "POST /reconcile HTTP/1.1\r\nHost: forcemfa\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// A daemon on `0.0.0.0` whose trigger needs the token `s3cret-admin-token`, with a soft limit of
/// `nofile` open files when given.
fn off_loopback_daemon(a: &Account, nofile: Option<u64>) -> Daemon {
    let token_file = a.dir.path().join("token");
    std::fs::write(&token_file, "s3cret-admin-token\n").unwrap();
    let config = format!(
        "{NEVER}[admin]\nlisten = \"0.0.0.0:{{port}}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    match nofile {
        Some(nofile) => Daemon::start_with_nofile(a, &a.moto.endpoint, &config, nofile),
        None => Daemon::start(a, &a.moto.endpoint, &config),
    }
}

/// Floods a daemon limited to `nofile` open files with idle, half-sent connections, and checks
/// that health checks, triggers, runs and memory are unaffected.
async fn under_flood(nofile: u64) {
    raise_nofile(FLOOD as u64 + 1_024);
    let a = Account::with_group().await;
    a.user("carol").await;
    let mut d = off_loopback_daemon(&a, Some(nofile));
    let wait = Duration::from_secs(10);
    assert_eq!(http_raw(d.admin, &get("/healthz"), wait).unwrap().0, 200);
    let (before_kib, _) = d.memory_kib();

    let started = Instant::now();
    let flood: Vec<TcpStream> = (0..FLOOD).filter_map(|_| half_sent(d.admin)).collect();
    let flood_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let health = http_raw(d.admin, &get("/healthz"), wait);
    let health_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let trigger = http_raw(d.admin, &post_with_token("s3cret-admin-token"), wait);
    let trigger_secs = started.elapsed().as_secs_f64();
    if !matches!(trigger, Ok((202, _))) {
        // Still measure whether a run can reach AWS at all.
        d.signal("USR1");
    }
    let ran = eventually(20, || async { d.runs() >= 1 }).await;
    let finished = d.events("run finished");
    let run = finished.first().cloned().unwrap_or_default();
    let (now_kib, peak_kib) = d.memory_kib();

    eprintln!(
        "limit {nofile} open files: {} of {FLOOD} idle connections opened in {flood_secs:.2}s; \
         /healthz: {health:?} in {health_secs:.2}s; trigger: {trigger:?} in {trigger_secs:.2}s; \
         run: exit_code {} account_errors {}; \
         VmRSS {before_kib} KiB before, {now_kib} KiB after, VmHWM {peak_kib} KiB",
        flood.len(),
        run["exit_code"],
        run["account_errors"],
    );
    assert!(flood.len() >= FLOOD - 10, "the flood itself failed");
    assert!(
        matches!(health, Ok((200, _))) && health_secs < 2.0,
        "/healthz under the flood: {health:?} after {health_secs:.2}s"
    );
    assert!(
        matches!(trigger, Ok((202, _))) && trigger_secs < 2.0,
        "POST /reconcile under the flood: {trigger:?} after {trigger_secs:.2}s"
    );
    assert!(ran, "no run finished:\n{}", d.stderr_text());
    assert_eq!(run["exit_code"], 0, "{run}\n{}", d.stderr_text());
    assert_eq!(a.members("ForceMFA").await, set(&["carol"]));
    assert!(
        peak_kib.saturating_sub(before_kib) < MAX_GROWTH_KIB,
        "the flood grew the daemon from {before_kib} KiB to a peak of {peak_kib} KiB"
    );

    drop(flood);
    assert_eq!(http_raw(d.admin, &get("/healthz"), wait).unwrap().0, 200);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn idle_connections_starve_neither_health_nor_runs_nor_memory() {
    under_flood(SERVICE_NOFILE).await;
}

#[tokio::test]
async fn with_few_open_files_idle_connections_still_leave_room_for_runs() {
    under_flood(128).await;
}

#[tokio::test]
async fn a_request_body_beyond_the_limit_is_refused_unread() {
    let a = Account::with_group().await;
    let mut d = off_loopback_daemon(&a, None);
    let wait = Duration::from_secs(10);
    let request = "POST /reconcile HTTP/1.1\r\nHost: forcemfa\r\nAuthorization: Bearer s3cret-admin-token\r\nContent-Length: 1048576\r\n\r\n";
    let (status, body) = http_raw(d.admin, request, wait).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(d.events("run requested").is_empty());
    // A small body is fine.
    let request = "POST /reconcile HTTP/1.1\r\nHost: forcemfa\r\nAuthorization: Bearer s3cret-admin-token\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    assert_eq!(http_raw(d.admin, request, wait).unwrap().0, 202);
    assert_eq!(d.stop().0, 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let a = Account::with_group().await;
    let mut d = off_loopback_daemon(&a, None);
    let wait = Duration::from_secs(10);
    for (authorization, expected) in [
        ("bearer s3cret-admin-token", 202),
        ("BEARER s3cret-admin-token", 202),
        ("Bearer   s3cret-admin-token", 202),
        ("Bearer s3cret-admin-token-not", 401),
        ("Basic s3cret-admin-token", 401),
        ("Bearers3cret-admin-token", 401),
    ] {
        let request = format!(
            "POST /reconcile HTTP/1.1\r\nHost: forcemfa\r\nAuthorization: {authorization}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = http_raw(d.admin, &request, wait).unwrap();
        assert_eq!(status, expected, "{authorization}: {body}");
    }
    assert_eq!(d.stop().0, 0);
}
