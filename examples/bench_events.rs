//! The event-driven benchmark: how fast `forcemfa run` reacts to a burst of IAM events on its
//! queue, and what each event costs in IAM calls. Against an emulated endpoint
//! (AWS_ENDPOINT_URL, a moto_server serving IAM and SQS), for each run:
//!
//! 1. resets the emulator and seeds `--burst N` users (200 by default, at most 1,000), half of
//!    each, interleaved: `new-*` just created without MFA, `enrolled-*` members of the group who
//!    just enabled a virtual MFA device;
//! 2. runs `forcemfa reconcile --dry-run --output json` on the account as it stands, for the IAM
//!    calls a full run would make to settle it (the report's `api_calls`, STS left out);
//! 3. starts `forcemfa run` with its schedule far away (`0 0 1 1 *`, `run_on_start = false`), an
//!    audit log, and `[events]` at its defaults but for `queue_url`, and waits until it is idle
//!    (its first ReceiveMessage came back empty, after `events.wait`);
//! 4. puts one event per user on the queue (CreateUser or EnableMFADevice, shaped as EventBridge
//!    delivers CloudTrail's records), ten per SendMessageBatch;
//! 5. takes each user's change time from the audit log's `done` line and reports the delay from
//!    the send of its event: median, p99, max; the wall time from the first send to the last
//!    change; the batches the daemon took the events in (the audit log's distinct `run_id`s);
//!    the IAM calls, per event too, and the writes among them, from the daemon's
//!    `forcemfa_api_calls_total` (STS left out); and whether the burst cost no more IAM calls
//!    than the full run plus the burst's writes;
//! 6. once all is handled, creates `lone-user` (no MFA), waits 2 s and sends its one CreateUser
//!    event; then `lone-enrolled` (a member with a virtual MFA device), waits 2 s and sends its
//!    one EnableMFADevice event; for each, the delay from the send to its `done` line and the
//!    IAM calls it cost;
//! 7. then sends `--one-user N` events (50 by default, 0 skips this) for one more user, and
//!    reports how many times that user was read (GetUser), which is the number of
//!    reconciliations they cost, the writes, and the delay from the first send to the change;
//! 8. reports the daemon's peak RSS over the run;
//! 9. after the daemon has stopped, puts the burst's events on a fresh queue and times a
//!    receiver that does nothing but take them off, ten per ReceiveMessage, deleting each ten at
//!    once: the emulator's own share of the delay ("receiving alone"). moto_server's SQS checks
//!    every message of the queue for each message it hands out, so this grows with the square of
//!    the burst.
//!
//! `--latency-ms N` puts the test suite's fault proxy between forcemfa (the daemon and the dry
//! run) and the emulator, adding N ms to every request (IAM and SQS alike), as a distant
//! endpoint would.
//!
//! Usage: bench_events [--burst N] [--one-user N] [--runs N] [--latency-ms N] [--forcemfa PATH]
//!                     [--keep DIR]
//!
//! `--users N` is the same as `--burst N`. `--keep DIR` keeps each run's configuration, daemon
//! log and audit log in DIR/run-N.

#[allow(dead_code)]
#[path = "../tests/integration/support/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "../tests/integration/support/queue.rs"]
mod queue;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use futures::stream::{self, StreamExt, TryStreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const GROUP: &str = "ForceMFA";
/// The emulator's account, which its credentials' GetCallerIdentity names.
const ACCOUNT_ID: &str = "123456789012";
/// How long one burst may take before the run is given up.
const DEADLINE: Duration = Duration::from_secs(180);
/// The most events `--burst` takes.
const MAX_BURST: usize = 1000;
/// How long the daemon is left idle before a lone event, so that it is handled on its own.
const LONE_PAUSE: Duration = Duration::from_secs(2);
/// STS's operations, which are not IAM calls.
const STS: [&str; 2] = ["GetCallerIdentity", "AssumeRole"];
/// The IAM operations that change the account.
const WRITES: [&str; 3] = [
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "DeleteVirtualMFADevice",
];

struct Args {
    /// Events in the burst, one per user.
    burst: usize,
    /// Events for one user, after the burst.
    one_user: usize,
    runs: usize,
    latency_ms: u64,
    forcemfa: String,
    /// Where to keep each run's configuration, daemon log and audit log (a temporary directory
    /// otherwise).
    keep: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        burst: 200,
        one_user: 50,
        runs: 3,
        latency_ms: 0,
        forcemfa: "target/release/forcemfa".into(),
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| {
        v.and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("{flag} takes a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--burst" | "--users" => a.burst = number(it.next(), &arg)? as usize,
            "--one-user" => a.one_user = number(it.next(), "--one-user")? as usize,
            "--runs" => a.runs = number(it.next(), "--runs")? as usize,
            "--latency-ms" => a.latency_ms = number(it.next(), "--latency-ms")?,
            "--forcemfa" => a.forcemfa = it.next().ok_or("--forcemfa takes a path")?,
            "--keep" => a.keep = Some(it.next().ok_or("--keep takes a directory")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(1..=MAX_BURST).contains(&a.burst) {
        return Err(format!(
            "--burst takes 1 to {MAX_BURST} events, not {}",
            a.burst
        ));
    }
    if a.runs == 0 {
        return Err("--runs must be more than 0".into());
    }
    Ok(a)
}

/// What happened to a user just before its event, and so what forcemfa must do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// CreateUser, no MFA: to be added.
    New,
    /// EnableMFADevice while in the group: to be removed.
    Enrolled,
}

impl Kind {
    /// The kinds alternate, so that a batch of events holds both.
    fn of(i: usize) -> Kind {
        [Kind::New, Kind::Enrolled][i % 2]
    }

    fn name(self, i: usize) -> String {
        let prefix = match self {
            Kind::New => "new",
            Kind::Enrolled => "enrolled",
        };
        format!("{prefix}-{i:04}")
    }

    fn event_name(self) -> &'static str {
        match self {
            Kind::New => "CreateUser",
            Kind::Enrolled => "EnableMFADevice",
        }
    }

    fn member_after(self) -> bool {
        self == Kind::New
    }
}

/// One seeded user and the request parameters of its event.
struct Seeded {
    name: String,
    kind: Kind,
    params: serde_json::Value,
}

impl Seeded {
    fn event(&self) -> Event {
        (
            self.name.clone(),
            self.kind.event_name(),
            self.params.clone(),
        )
    }
}

/// The user an event names, the event's name and its request parameters.
type Event = (String, &'static str, serde_json::Value);

struct Clients {
    iam: aws_sdk_iam::Client,
    sqs: aws_sdk_sqs::Client,
}

/// Creates `name` as `kind` says: without MFA, or in the group with a virtual MFA device.
async fn seed_user(iam: &aws_sdk_iam::Client, name: String, kind: Kind) -> Result<Seeded, String> {
    let e = |what: &str, e: &dyn std::fmt::Display| format!("seed {name}: {what}: {e}");
    iam.create_user()
        .user_name(&name)
        .send()
        .await
        .map_err(|x| e("CreateUser", &x))?;
    if kind == Kind::New {
        return Ok(Seeded {
            params: serde_json::json!({ "userName": name }),
            name,
            kind,
        });
    }
    iam.add_user_to_group()
        .group_name(GROUP)
        .user_name(&name)
        .send()
        .await
        .map_err(|x| e("AddUserToGroup", &x))?;
    let serial = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(&name)
        .send()
        .await
        .map_err(|x| e("CreateVirtualMFADevice", &x))?
        .virtual_mfa_device()
        .map(|d| d.serial_number().to_string())
        .ok_or_else(|| format!("seed {name}: no serial number"))?;
    iam.enable_mfa_device()
        .user_name(&name)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .map_err(|x| e("EnableMFADevice", &x))?;
    Ok(Seeded {
        params: serde_json::json!({ "userName": name, "serialNumber": serial }),
        name,
        kind,
    })
}

/// A fresh account: the group and `n` users, each just before its event.
async fn seed(c: &Clients, endpoint: &str, n: usize) -> Result<(Vec<Seeded>, String), String> {
    reset_emulator(endpoint)?;
    c.iam
        .create_group()
        .group_name(GROUP)
        .send()
        .await
        .map_err(|e| format!("CreateGroup: {e}"))?;
    let users = stream::iter(0..n)
        .map(|i| seed_user(&c.iam, Kind::of(i).name(i), Kind::of(i)))
        .buffered(16)
        .try_collect()
        .await?;
    let queue = create_queue(&c.sqs, "forcemfa-events").await?;
    Ok((users, queue))
}

/// A new queue named `name`: its URL.
async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| format!("CreateQueue: {e}"))?
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| "CreateQueue: no queue URL".to_string())
}

/// Empties moto_server: every run starts from nothing.
fn reset_emulator(endpoint: &str) -> Result<(), String> {
    let addr = endpoint_addr(endpoint)?;
    let (status, _) = http(addr, "POST", "/moto-api/reset")?;
    if status != 200 {
        return Err(format!("resetting the emulator: HTTP {status}"));
    }
    Ok(())
}

fn endpoint_addr(endpoint: &str) -> Result<SocketAddr, String> {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("AWS_ENDPOINT_URL {endpoint} is not http://IP:PORT"))
}

/// Puts the events on the queue, ten per SendMessageBatch, four batches in flight. Returns, per
/// user named, when the batch carrying its (first) event was sent.
async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    events: &[Event],
) -> Result<HashMap<String, OffsetDateTime>, String> {
    let sent: Vec<Vec<(String, OffsetDateTime)>> = stream::iter(events.chunks(10))
        .map(|chunk| async move {
            let at = OffsetDateTime::now_utc();
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, event_name, params))| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(queue::iam_event_at(ACCOUNT_ID, event_name, params, at))
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("SendMessageBatch: {e}"))?;
            if !out.failed().is_empty() {
                return Err(format!("SendMessageBatch: {} failed", out.failed().len()));
            }
            Ok(chunk
                .iter()
                .map(|(user, _, _)| (user.clone(), at))
                .collect())
        })
        .buffered(4)
        .try_collect()
        .await?;
    let mut first = HashMap::new();
    for (user, at) in sent.into_iter().flatten() {
        first.entry(user).or_insert(at);
    }
    Ok(first)
}

/// The configuration of the daemon, which the dry run reads too.
fn write_config(dir: &Path, queue: &str) -> Result<PathBuf, String> {
    let config = dir.join("forcemfa.toml");
    let audit = dir.join("audit.jsonl");
    std::fs::write(
        &config,
        format!(
            "group = \"{GROUP}\"\nschedule = \"0 0 1 1 *\"\nrun_on_start = false\n\
             audit_log = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [events]\nqueue_url = \"{queue}\"\n",
            audit.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(config)
}

/// What one full run over the account would do, from `forcemfa reconcile --dry-run`.
struct FullRun {
    /// IAM calls, STS left out.
    iam_calls: u64,
    /// Users it would add or remove.
    planned: usize,
}

fn full_run(forcemfa: &str, config: &Path, endpoint: &str) -> Result<FullRun, String> {
    let out = Command::new(forcemfa)
        .args(["reconcile", "--dry-run", "--output", "json", "--config"])
        .arg(config)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("FORCEMFA_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{forcemfa}: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "forcemfa reconcile --dry-run ({}) printed no JSON report: {e}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !out.status.success() {
        eprintln!(
            "note: forcemfa reconcile --dry-run exited with {}",
            out.status
        );
    }
    let accounts = report["accounts"]
        .as_array()
        .ok_or("the dry run's report has no accounts")?;
    let mut result = FullRun {
        iam_calls: 0,
        planned: 0,
    };
    for account in accounts {
        let calls = account["api_calls"]
            .as_object()
            .ok_or("the dry run's report has no api_calls")?;
        result.iam_calls += calls
            .iter()
            .filter(|(op, _)| !STS.contains(&op.as_str()))
            .filter_map(|(_, n)| n.as_u64())
            .sum::<u64>();
        for list in ["added", "removed"] {
            result.planned += account[list].as_array().map_or(0, Vec::len);
        }
    }
    Ok(result)
}

/// A `forcemfa run` process, its admin listener and its files.
struct Daemon {
    child: Child,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Daemon {
    fn start(forcemfa: &str, config: &Path, dir: &Path, endpoint: &str) -> Result<Daemon, String> {
        let stderr = dir.join("daemon.log");
        let log = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        let child = Command::new(forcemfa)
            .args(["run", "--config"])
            .arg(config)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("FORCEMFA_LOG_FORMAT", "json")
            // Its own log level (info), as deployed.
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{forcemfa}: {e}"))?;
        let mut daemon = Daemon {
            child,
            admin: ([127, 0, 0, 1], 0).into(),
            stderr,
        };
        let started = Instant::now();
        loop {
            if let Some(addr) = daemon.bound_address() {
                daemon.admin = addr;
                break;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!("forcemfa run exited ({status}):\n{}", daemon.log()));
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err(format!("forcemfa run did not start:\n{}", daemon.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Idle and listening: its first ReceiveMessage came back empty after `events.wait`
        // (20 s), and the next one waits.
        while !daemon.get("/readyz")?.contains("events queue: readable") {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "the events queue never became readable:\n{}",
                    daemon.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The admin listener's address, from the `forcemfa started` log line.
    fn bound_address(&self) -> Option<SocketAddr> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("\"forcemfa started\""))?;
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        line["listen"].as_str()?.parse().ok()
    }

    fn get(&self, path: &str) -> Result<String, String> {
        let (status, body) = http(self.admin, "GET", path)?;
        match status {
            200 | 503 => Ok(body),
            _ => Err(format!("GET {path}: HTTP {status}")),
        }
    }

    fn metrics(&self) -> Result<Metrics, String> {
        Ok(Metrics::parse(&self.get("/metrics")?))
    }

    /// Waits until `n` more events than `before` counted are handled, and returns the metrics
    /// then.
    fn handled(&self, what: &str, before: &Metrics, n: usize) -> Result<Metrics, String> {
        wait_for(what, || {
            Ok(self.metrics()?.handled >= before.handled + n as u64)
        })?;
        self.metrics()
    }

    /// Its peak resident set size so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("the daemon's /proc status: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in the daemon's /proc status".to_string())
    }

    /// SIGTERM, and waits for the exit.
    fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "forcemfa run exited with {status}:\n{}",
                self.log()
            ));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A GET or POST with no body, answered in full: status code and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The series of the daemon's metrics this benchmark reads.
#[derive(Default)]
struct Metrics {
    /// IAM calls by operation (the STS calls left out).
    iam_calls: BTreeMap<String, u64>,
    handled: u64,
    received: u64,
    delay_sum: f64,
    delay_count: u64,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or_default();
            if let Some(labels) = series.strip_prefix("forcemfa_api_calls_total{") {
                let op = labels
                    .split("operation=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default();
                if !STS.contains(&op) {
                    *m.iam_calls.entry(op.to_string()).or_default() += value as u64;
                }
            } else if series == "forcemfa_events_total{outcome=\"handled\"}" {
                m.handled = value as u64;
            } else if series == "forcemfa_events_received_total" {
                m.received = value as u64;
            } else if series == "forcemfa_event_delay_seconds_sum" {
                m.delay_sum = value;
            } else if series == "forcemfa_event_delay_seconds_count" {
                m.delay_count = value as u64;
            }
        }
        m
    }

    /// IAM calls by operation made since `earlier`.
    fn calls_since(&self, earlier: &Metrics) -> Calls {
        let by_operation = self
            .iam_calls
            .iter()
            .map(|(op, n)| {
                (
                    op.clone(),
                    n - earlier.iam_calls.get(op).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Calls { by_operation }
    }
}

/// IAM calls by operation.
#[derive(Default)]
struct Calls {
    by_operation: BTreeMap<String, u64>,
}

impl Calls {
    fn total(&self) -> u64 {
        self.by_operation.values().sum()
    }

    fn of(&self, op: &str) -> u64 {
        self.by_operation.get(op).copied().unwrap_or(0)
    }

    fn writes(&self) -> u64 {
        WRITES.iter().map(|op| self.of(op)).sum()
    }
}

impl std::fmt::Display for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let ops: Vec<String> = self
            .by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        f.write_str(&ops.join(", "))
    }
}

/// A change acknowledged by IAM, from the audit log's `done` line.
struct Change {
    at: OffsetDateTime,
    /// The batch of events (one reconciliation of the account) that made it.
    run_id: String,
}

/// Each user's change in the audit log.
fn changes(audit: &Path) -> HashMap<String, Change> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "done")
        .filter_map(|v| {
            let at = OffsetDateTime::parse(v["time"].as_str()?, &Rfc3339).ok()?;
            let run_id = v["run_id"].as_str()?.to_string();
            Some((v["user"].as_str()?.to_string(), Change { at, run_id }))
        })
        .collect()
}

/// Polls `check` every 20 ms until it holds; an error after DEADLINE.
fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let started = Instant::now();
    while !check()? {
        if started.elapsed() > DEADLINE {
            return Err(format!("{what}: not within {}s", DEADLINE.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

async fn members(iam: &aws_sdk_iam::Client) -> Result<Vec<String>, String> {
    let pages: Vec<_> = iam
        .get_group()
        .group_name(GROUP)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| format!("GetGroup: {e}"))?;
    Ok(pages
        .iter()
        .flat_map(|p| p.users().iter().map(|u| u.user_name().to_string()))
        .collect())
}

/// The `q` quantile of sorted values, by nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Where one run's files go: DIR/run-N with `--keep DIR`, a temporary directory otherwise.
struct RunDir {
    path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl RunDir {
    fn new(keep: Option<&Path>, run: usize) -> Result<RunDir, String> {
        match keep {
            Some(keep) => {
                let path = keep.join(format!("run-{run}"));
                std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::fs::remove_file(path.join("audit.jsonl")).ok();
                Ok(RunDir {
                    path,
                    _temporary: None,
                })
            }
            None => {
                let temporary = tempfile::tempdir().map_err(|e| e.to_string())?;
                Ok(RunDir {
                    path: temporary.path().to_path_buf(),
                    _temporary: Some(temporary),
                })
            }
        }
    }
}

/// One event for one user, sent to an idle daemon.
struct Lone {
    /// From the send to the user's `done` line.
    delay: f64,
    calls: Calls,
}

/// Events for one user, close together.
struct OneUser {
    events: u64,
    /// The times the user was read: the reconciliations the events cost.
    get_user: u64,
    writes: u64,
    /// From the send of the first event to the user's change.
    delay: f64,
}

struct RunResult {
    /// The seconds the emulator takes to hand out the burst's messages to a receiver doing
    /// nothing else.
    floor: f64,
    events: usize,
    /// The batches the daemon took the events off the queue in.
    batches: usize,
    median: f64,
    p99: f64,
    max: f64,
    wall: f64,
    calls: Calls,
    full_run: FullRun,
    daemon_delay_mean: f64,
    lone_user: Lone,
    lone_enrolled: Lone,
    one_user: Option<OneUser>,
    peak_rss_kib: u64,
}

impl RunResult {
    /// Whether the burst cost no more IAM calls than a full run would, plus the burst's writes
    /// (which a dry run does not make).
    fn within_full_run(&self) -> bool {
        self.calls.total() <= self.full_run.iam_calls + self.calls.writes()
    }
}

/// Everything a phase after the burst needs.
struct Running<'a> {
    c: &'a Clients,
    daemon: &'a Daemon,
    queue: &'a str,
    audit: &'a Path,
}

impl Running<'_> {
    /// Seeds `name` as `kind`, leaves the daemon idle for LONE_PAUSE, then sends the user's one
    /// event.
    async fn lone(&self, name: &str, kind: Kind) -> Result<(Seeded, Lone), String> {
        let user = seed_user(&self.c.iam, name.to_string(), kind).await?;
        tokio::time::sleep(LONE_PAUSE).await;
        let before = self.daemon.metrics()?;
        let sent = enqueue(&self.c.sqs, self.queue, &[user.event()]).await?[name];
        wait_for(&format!("{name} changed"), || {
            Ok(changes(self.audit).contains_key(name))
        })?;
        let after = self
            .daemon
            .handled(&format!("the event for {name} handled"), &before, 1)?;
        let delay = (changes(self.audit)[name].at - sent).as_seconds_f64();
        let lone = Lone {
            delay,
            calls: after.calls_since(&before),
        };
        Ok((user, lone))
    }

    /// Sends `n` events for one more user, close together.
    async fn one_user(&self, n: usize) -> Result<OneUser, String> {
        let name = "burst-user";
        self.c
            .iam
            .create_user()
            .user_name(name)
            .send()
            .await
            .map_err(|e| format!("CreateUser {name}: {e}"))?;
        let names = ["CreateUser", "TagUser", "CreateLoginProfile", "UntagUser"];
        let events: Vec<Event> = (0..n)
            .map(|i| {
                (
                    name.to_string(),
                    names[i % names.len()],
                    serde_json::json!({ "userName": name }),
                )
            })
            .collect();
        let before = self.daemon.metrics()?;
        let sent = enqueue(&self.c.sqs, self.queue, &events).await?[name];
        let after = self
            .daemon
            .handled("the events for one user handled", &before, n)?;
        let delay = changes(self.audit)
            .get(name)
            .map(|c| (c.at - sent).as_seconds_f64())
            .ok_or("the one user was not changed")?;
        let calls = after.calls_since(&before);
        Ok(OneUser {
            events: after.handled - before.handled,
            get_user: calls.of("GetUser"),
            writes: calls.writes(),
            delay,
        })
    }
}

/// The emulator's own share of the delay: the seconds a receiver doing nothing else takes to get
/// the same events off a fresh queue, ten per ReceiveMessage, deleting each ten at once.
async fn receive_floor(sqs: &aws_sdk_sqs::Client, events: &[Event]) -> Result<f64, String> {
    let queue = create_queue(sqs, "forcemfa-floor").await?;
    enqueue(sqs, &queue, events).await?;
    let started = Instant::now();
    let mut received = 0;
    while received < events.len() {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| format!("ReceiveMessage: {e}"))?;
        let entries: Vec<DeleteMessageBatchRequestEntry> = out
            .messages()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return Err(format!(
                "the floor's queue ran dry after {received} messages"
            ));
        }
        received += entries.len();
        sqs.delete_message_batch()
            .queue_url(&queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("DeleteMessageBatch: {e}"))?;
    }
    let floor = started.elapsed().as_secs_f64();
    sqs.delete_queue()
        .queue_url(&queue)
        .send()
        .await
        .map_err(|e| format!("DeleteQueue: {e}"))?;
    Ok(floor)
}

async fn one_run(
    args: &Args,
    run: usize,
    c: &Clients,
    endpoint: &str,
    daemon_endpoint: &str,
) -> Result<RunResult, String> {
    let seeding = Instant::now();
    let (mut users, queue) = seed(c, endpoint, args.burst).await?;
    eprintln!(
        "run {run}: seeded {} users in {:.1}s",
        users.len(),
        seeding.elapsed().as_secs_f64()
    );
    let dir = RunDir::new(args.keep.as_deref(), run)?;
    let audit = dir.path.join("audit.jsonl");
    let config = write_config(&dir.path, &queue)?;

    let full_run = full_run(&args.forcemfa, &config, daemon_endpoint)?;
    eprintln!(
        "run {run}: a full run (dry run) would make {} IAM calls and {} changes",
        full_run.iam_calls, full_run.planned
    );

    let daemon = Daemon::start(&args.forcemfa, &config, &dir.path, daemon_endpoint)?;
    let idle = daemon.metrics()?;

    // The burst: one event per user, in the order seeded (the kinds interleaved).
    let events: Vec<Event> = users.iter().map(Seeded::event).collect();
    let started = OffsetDateTime::now_utc();
    let sent = enqueue(&c.sqs, &queue, &events).await?;
    wait_for("every user changed", || {
        Ok(changes(&audit).len() >= users.len())
    })?;
    let after_burst = daemon.handled("every event handled", &idle, users.len())?;
    let changed = changes(&audit);

    let mut delays: Vec<f64> = users
        .iter()
        .map(|u| (changed[&u.name].at - sent[&u.name]).as_seconds_f64())
        .collect();
    delays.sort_by(f64::total_cmp);
    let last = users
        .iter()
        .map(|u| changed[&u.name].at)
        .max()
        .unwrap_or(started);
    let batches: HashSet<&str> = users
        .iter()
        .map(|u| changed[&u.name].run_id.as_str())
        .collect();
    let batches = batches.len();
    let burst_events = users.len();

    let running = Running {
        c,
        daemon: &daemon,
        queue: &queue,
        audit: &audit,
    };
    let (user, lone_user) = running.lone("lone-user", Kind::New).await?;
    users.push(user);
    let (user, lone_enrolled) = running.lone("lone-enrolled", Kind::Enrolled).await?;
    users.push(user);

    let members = members(&c.iam).await?;
    let wrong: Vec<&str> = users
        .iter()
        .filter(|u| members.contains(&u.name) != u.kind.member_after())
        .map(|u| u.name.as_str())
        .collect();
    if !wrong.is_empty() {
        return Err(format!("{} users not as expected: {wrong:?}", wrong.len()));
    }

    let one_user = match args.one_user {
        0 => None,
        n => Some(running.one_user(n).await?),
    };

    let last_metrics = daemon.metrics()?;
    let sent_in_all = (burst_events + 2 + args.one_user) as u64;
    if last_metrics.received != sent_in_all {
        eprintln!(
            "note: {} messages received for {sent_in_all} sent (redeliveries?)",
            last_metrics.received
        );
    }
    let peak_rss_kib = daemon.peak_rss_kib()?;
    daemon.stop()?;
    let floor = receive_floor(&c.sqs, &events).await?;

    Ok(RunResult {
        floor,
        events: burst_events,
        batches,
        median: quantile(&delays, 0.5),
        p99: quantile(&delays, 0.99),
        max: quantile(&delays, 1.0),
        wall: (last - started).as_seconds_f64(),
        calls: after_burst.calls_since(&idle),
        full_run,
        daemon_delay_mean: (after_burst.delay_sum - idle.delay_sum)
            / (after_burst.delay_count - idle.delay_count).max(1) as f64,
        lone_user,
        lone_enrolled,
        one_user,
        peak_rss_kib,
    })
}

fn sdk_clients(sdk: &aws_config::SdkConfig) -> Clients {
    Clients {
        iam: aws_sdk_iam::Client::new(sdk),
        sqs: aws_sdk_sqs::Client::new(sdk),
    }
}

fn print_tables(args: &Args, results: &[RunResult]) {
    println!(
        "| run | events | batches | delay median (s) | p99 (s) | max (s) | wall (s) | IAM calls | per event | full-run calls | writes | burst calls ≤ full-run calls + writes? | peak RSS (MiB) | receiving alone (s) |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {:.2} | {} | {} | {} | {:.1} | {:.2} |",
            i + 1,
            r.events,
            r.batches,
            r.median,
            r.p99,
            r.max,
            r.wall,
            r.calls.total(),
            r.calls.total() as f64 / r.events as f64,
            r.full_run.iam_calls,
            r.calls.writes(),
            if r.within_full_run() { "yes" } else { "no" },
            r.peak_rss_kib as f64 / 1024.0,
            r.floor
        );
    }
    println!();
    println!(
        "| run | lone CreateUser: delay (s) | IAM calls | lone EnableMFADevice: delay (s) | IAM calls | {} events for one user: events, GetUser, writes, delay (s) |",
        args.one_user
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, r) in results.iter().enumerate() {
        let one_user = match &r.one_user {
            Some(o) => format!("{}, {}, {}, {:.2}", o.events, o.get_user, o.writes, o.delay),
            None => "skipped".to_string(),
        };
        println!(
            "| {} | {:.3} | {} | {:.3} | {} | {one_user} |",
            i + 1,
            r.lone_user.delay,
            r.lone_user.calls.total(),
            r.lone_enrolled.delay,
            r.lone_enrolled.calls.total(),
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "AWS_ENDPOINT_URL must name the emulator".to_string())?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = sdk_clients(&sdk);
    let proxy = (args.latency_ms > 0).then(|| {
        let proxy = proxy::FaultProxy::start(&endpoint);
        proxy.set_latency(Duration::from_millis(args.latency_ms));
        proxy
    });
    let daemon_endpoint = proxy
        .as_ref()
        .map_or(endpoint.clone(), |p| p.endpoint.clone());

    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = one_run(&args, run, &clients, &endpoint, &daemon_endpoint).await?;
        eprintln!(
            "run {run}: IAM calls of the burst of {}: {}; forcemfa_event_delay_seconds mean {:.3}s",
            r.events, r.calls, r.daemon_delay_mean
        );
        eprintln!(
            "run {run}: IAM calls of the lone CreateUser: {}; of the lone EnableMFADevice: {}",
            r.lone_user.calls, r.lone_enrolled.calls
        );
        results.push(r);
    }
    print_tables(&args, &results);
    if let Some(p) = &proxy {
        eprintln!(
            "every request of forcemfa was held {} ms ({} requests)",
            args.latency_ms,
            p.counts().requests
        );
    }
    Ok(())
}
