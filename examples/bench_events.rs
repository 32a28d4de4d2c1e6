//! The event-driven benchmark: how fast `forcemfa run` reacts to a burst of IAM events on its
//! queue, and what each event costs in IAM calls. Against an emulated endpoint
//! (AWS_ENDPOINT_URL, a moto_server serving IAM and SQS), for each run:
//!
//! 1. resets the emulator and seeds `--users N` users (200 by default), a third of each:
//!    `new-*` just created without MFA, `enrolled-*` who just enabled a device while still in
//!    the group, `lapsed-*` who just deactivated their only device and are not in the group;
//! 2. starts `forcemfa run` with its schedule far away (`0 0 1 1 *`, `run_on_start = false`), an
//!    audit log, and `[events]` at its defaults but for `queue_url`, and waits until it is idle
//!    (its first ReceiveMessage came back empty, after `events.wait`);
//! 3. puts one event per user on the queue (CreateUser, EnableMFADevice or DeactivateMFADevice,
//!    shaped as EventBridge delivers CloudTrail's records), ten per SendMessageBatch;
//! 4. takes each user's change time from the audit log's `done` line and reports the delay from
//!    the send of its event: median, p99, max; the wall time from the first send to the last
//!    change; the batches the daemon took the events in (the audit log's distinct `run_id`s);
//!    IAM calls per event from the daemon's `forcemfa_api_calls_total`; its peak RSS;
//! 5. then sends `--burst N` events (50 by default) for one more user, and reports how many times
//!    that user was read (GetUser), which is the number of reconciliations the burst cost, the
//!    writes, and the delay from the first send to the change.
//!
//! `--latency-ms N` puts the test suite's fault proxy between the daemon and the emulator, adding
//! N ms to every request (IAM and SQS alike), as a distant endpoint would.
//!
//! Usage: bench_events [--users N] [--burst N] [--runs N] [--latency-ms N] [--forcemfa PATH]
//!                     [--keep DIR]
//!
//! `--keep DIR` keeps each run's configuration, daemon log and audit log in DIR/run-N.

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

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::stream::{self, StreamExt, TryStreamExt};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const GROUP: &str = "ForceMFA";
/// The emulator's account, which its credentials' GetCallerIdentity names.
const ACCOUNT_ID: &str = "123456789012";
/// How long one burst may take before the run is given up.
const DEADLINE: Duration = Duration::from_secs(180);

struct Args {
    users: usize,
    burst: usize,
    runs: usize,
    latency_ms: u64,
    forcemfa: String,
    /// Where to keep each run's configuration, daemon log and audit log (a temporary directory
    /// otherwise).
    keep: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        users: 200,
        burst: 50,
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
            "--users" => a.users = number(it.next(), "--users")? as usize,
            "--burst" => a.burst = number(it.next(), "--burst")? as usize,
            "--runs" => a.runs = number(it.next(), "--runs")? as usize,
            "--latency-ms" => a.latency_ms = number(it.next(), "--latency-ms")?,
            "--forcemfa" => a.forcemfa = it.next().ok_or("--forcemfa takes a path")?,
            "--keep" => a.keep = Some(it.next().ok_or("--keep takes a directory")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.users == 0 || a.runs == 0 {
        return Err("--users and --runs must be more than 0".into());
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
    /// DeactivateMFADevice of the only device, not in the group: to be added.
    Lapsed,
}

impl Kind {
    fn of(i: usize) -> Kind {
        [Kind::New, Kind::Enrolled, Kind::Lapsed][i % 3]
    }

    fn name(self, i: usize) -> String {
        let prefix = match self {
            Kind::New => "new",
            Kind::Enrolled => "enrolled",
            Kind::Lapsed => "lapsed",
        };
        format!("{prefix}-{i:04}")
    }

    fn event_name(self) -> &'static str {
        match self {
            Kind::New => "CreateUser",
            Kind::Enrolled => "EnableMFADevice",
            Kind::Lapsed => "DeactivateMFADevice",
        }
    }

    fn member_after(self) -> bool {
        self != Kind::Enrolled
    }
}

/// One seeded user and the request parameters of its event.
struct Seeded {
    name: String,
    kind: Kind,
    params: serde_json::Value,
}

struct Clients {
    iam: aws_sdk_iam::Client,
    sqs: aws_sdk_sqs::Client,
}

async fn seed_user(iam: &aws_sdk_iam::Client, i: usize) -> Result<Seeded, String> {
    let kind = Kind::of(i);
    let name = kind.name(i);
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
    if kind == Kind::Enrolled {
        iam.add_user_to_group()
            .group_name(GROUP)
            .user_name(&name)
            .send()
            .await
            .map_err(|x| e("AddUserToGroup", &x))?;
    }
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
    if kind == Kind::Lapsed {
        iam.deactivate_mfa_device()
            .user_name(&name)
            .serial_number(&serial)
            .send()
            .await
            .map_err(|x| e("DeactivateMFADevice", &x))?;
    }
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
        .map(|i| seed_user(&c.iam, i))
        .buffered(16)
        .try_collect()
        .await?;
    let queue = c
        .sqs
        .create_queue()
        .queue_name("forcemfa-events")
        .send()
        .await
        .map_err(|e| format!("CreateQueue: {e}"))?
        .queue_url()
        .ok_or("CreateQueue: no queue URL")?
        .to_string();
    Ok((users, queue))
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
    events: &[(String, &'static str, serde_json::Value)],
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

/// A `forcemfa run` process, its admin listener and its files.
struct Daemon {
    child: Child,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Daemon {
    fn start(forcemfa: &str, dir: &Path, endpoint: &str, queue: &str) -> Result<Daemon, String> {
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
        let stderr = dir.join("daemon.log");
        let log = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        let child = Command::new(forcemfa)
            .args(["run", "--config"])
            .arg(&config)
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
    /// IAM calls by operation (the STS and SQS calls left out).
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
                if !["GetCallerIdentity", "AssumeRole"].contains(&op) {
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

    fn iam_total(&self) -> u64 {
        self.iam_calls.values().sum()
    }

    fn calls(&self, op: &str) -> u64 {
        self.iam_calls.get(op).copied().unwrap_or(0)
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

struct RunResult {
    events: usize,
    /// The batches the daemon took the events off the queue in.
    batches: usize,
    median: f64,
    p99: f64,
    max: f64,
    wall: f64,
    iam_calls: u64,
    by_operation: BTreeMap<String, u64>,
    daemon_delay_mean: f64,
    burst_events: u64,
    /// From the send of the burst's first event to its user's change.
    burst_delay: f64,
    burst_get_user: u64,
    burst_writes: u64,
    peak_rss_kib: u64,
}

async fn one_run(
    args: &Args,
    run: usize,
    c: &Clients,
    endpoint: &str,
    daemon_endpoint: &str,
) -> Result<RunResult, String> {
    let seeding = Instant::now();
    let (users, queue) = seed(c, endpoint, args.users).await?;
    eprintln!(
        "run {run}: seeded {} users in {:.1}s",
        users.len(),
        seeding.elapsed().as_secs_f64()
    );
    let temporary = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = match &args.keep {
        Some(keep) => {
            let dir = keep.join(format!("run-{run}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::remove_file(dir.join("audit.jsonl")).ok();
            dir
        }
        None => temporary.path().to_path_buf(),
    };
    let audit = dir.join("audit.jsonl");
    let daemon = Daemon::start(&args.forcemfa, &dir, daemon_endpoint, &queue)?;

    // The burst: one event per user, in the order seeded (the kinds interleaved).
    let events: Vec<(String, &'static str, serde_json::Value)> = users
        .iter()
        .map(|u| (u.name.clone(), u.kind.event_name(), u.params.clone()))
        .collect();
    let started = OffsetDateTime::now_utc();
    let sent = enqueue(&c.sqs, &queue, &events).await?;
    wait_for("every user changed", || {
        Ok(changes(&audit).len() >= users.len())
    })?;
    wait_for("every event handled", || {
        Ok(daemon.metrics()?.handled >= users.len() as u64)
    })?;
    let after_burst = daemon.metrics()?;
    let changed = changes(&audit);

    let members = members(&c.iam).await?;
    let wrong: Vec<&str> = users
        .iter()
        .filter(|u| members.contains(&u.name) != u.kind.member_after())
        .map(|u| u.name.as_str())
        .collect();
    if !wrong.is_empty() {
        return Err(format!("{} users not as expected: {wrong:?}", wrong.len()));
    }
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
    let batches: HashSet<&str> = changed.values().map(|c| c.run_id.as_str()).collect();
    let batches = batches.len();

    // Many events for one user, close together.
    let name = "burst-user";
    c.iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .map_err(|e| format!("CreateUser {name}: {e}"))?;
    let names = ["CreateUser", "TagUser", "CreateLoginProfile", "UntagUser"];
    let burst: Vec<(String, &'static str, serde_json::Value)> = (0..args.burst)
        .map(|i| {
            (
                name.to_string(),
                names[i % names.len()],
                serde_json::json!({ "userName": name }),
            )
        })
        .collect();
    let burst_sent = enqueue(&c.sqs, &queue, &burst).await?[name];
    let expected = (users.len() + args.burst) as u64;
    wait_for("the burst for one user handled", || {
        Ok(daemon.metrics()?.handled >= expected)
    })?;
    let after = daemon.metrics()?;
    let burst_delay = changes(&audit)
        .get(name)
        .map(|c| (c.at - burst_sent).as_seconds_f64())
        .ok_or("the burst's user was not changed")?;
    let peak_rss_kib = daemon.peak_rss_kib()?;
    if after.received != expected {
        eprintln!(
            "note: {} messages received for {expected} sent (redeliveries?)",
            after.received
        );
    }
    daemon.stop()?;

    Ok(RunResult {
        events: users.len(),
        batches,
        median: quantile(&delays, 0.5),
        p99: quantile(&delays, 0.99),
        max: quantile(&delays, 1.0),
        wall: (last - started).as_seconds_f64(),
        iam_calls: after_burst.iam_total(),
        by_operation: after_burst.iam_calls.clone(),
        daemon_delay_mean: after_burst.delay_sum / after_burst.delay_count.max(1) as f64,
        burst_events: after.handled - after_burst.handled,
        burst_delay,
        burst_get_user: after.calls("GetUser") - after_burst.calls("GetUser"),
        burst_writes: (after.calls("AddUserToGroup") + after.calls("RemoveUserFromGroup"))
            - (after_burst.calls("AddUserToGroup") + after_burst.calls("RemoveUserFromGroup")),
        peak_rss_kib,
    })
}

fn sdk_clients(sdk: &aws_config::SdkConfig) -> Clients {
    Clients {
        iam: aws_sdk_iam::Client::new(sdk),
        sqs: aws_sdk_sqs::Client::new(sdk),
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

    println!(
        "| run | events | batches | delay median (s) | p99 (s) | max (s) | wall (s) | IAM calls | per event | burst of {}: events, GetUser, writes, delay (s) | peak RSS (MiB) |",
        args.burst
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in 1..=args.runs {
        let r = one_run(&args, run, &clients, &endpoint, &daemon_endpoint).await?;
        println!(
            "| {run} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {:.2} | {}, {}, {}, {:.2} | {:.1} |",
            r.events,
            r.batches,
            r.median,
            r.p99,
            r.max,
            r.wall,
            r.iam_calls,
            r.iam_calls as f64 / r.events as f64,
            r.burst_events,
            r.burst_get_user,
            r.burst_writes,
            r.burst_delay,
            r.peak_rss_kib as f64 / 1024.0
        );
        let ops: Vec<String> = r
            .by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        eprintln!(
            "run {run}: IAM calls of the burst of {}: {}; forcemfa_event_delay_seconds mean {:.3}s",
            r.events,
            ops.join(", "),
            r.daemon_delay_mean
        );
    }
    if let Some(p) = &proxy {
        eprintln!(
            "every request of the daemon was held {} ms ({} requests)",
            args.latency_ms,
            p.counts().requests
        );
    }
    Ok(())
}
