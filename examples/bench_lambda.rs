//! The Lambda benchmark: what the function costs from a cold start. Against an emulated endpoint
//! (AWS_ENDPOINT_URL, a moto_server) seeded as examples/bench.rs seeds it with changes pending
//! (N users, 20% of them without MFA, 14% of all to change), behind `cargo lambda watch
//! --only-lambda-apis` (the Lambda runtime API and the invoke API, on a free loopback port), it
//! starts `forcemfa-lambda` afresh for each run, as Lambda does a new execution environment, and
//! measures:
//!
//! - init: the `init_seconds` the function logs with `function ready` (its set-up, nearly all of
//!   what Lambda reports as the Init Duration), and the wall time from the spawn to that line;
//! - a cold dry run (`{"dry_run": true}`, the first invocation of the process), then two warm
//!   ones: the round trip of each invocation through the invoke API, and how much longer the
//!   cold one took than the warm ones of its process (run 1's dry runs plan the pending
//!   changes, the later runs' plan none, so only runs of one process compare);
//! - a scheduled invocation (an EventBridge `Scheduled Event`), which applies: the first run's
//!   makes the pending changes, the later runs' find nothing to change;
//! - the process's peak RSS after these invocations (VmHWM), before it is killed.
//!
//! Then a table of median, min and max, and the sizes of the zips scripts/package-lambda built.
//!
//! Usage: bench_lambda [--users N] [--runs K] [--function PATH]
//!
//! scripts/bench-lambda builds the binaries, starts moto_server and runs this.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_iam::Client;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

const GROUP: &str = "ForceMFA";
/// The emulator's account.
const ACCOUNT_ID: &str = "123456789012";
/// The settings of the stack's full-run function (deploy/aws/forcemfa.json): a 15-minute
/// function, a run that ends well before it.
const FUNCTION_ENV: [(&str, &str); 7] = [
    ("FORCEMFA_FUNCTION_TIMEOUT", "900"),
    ("FORCEMFA_FUNCTION_TAKES", "runs"),
    ("FORCEMFA__RUN_TIMEOUT", "12m"),
    ("AWS_LAMBDA_FUNCTION_NAME", "_"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ("FORCEMFA_LOG_FORMAT", "json"),
];
/// How long a start or an invocation may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(300);
/// The zips of scripts/package-lambda.
const ZIPS: [&str; 2] = [
    "target/lambda/x86_64/forcemfa-lambda/bootstrap.zip",
    "target/lambda/arm64/forcemfa-lambda/bootstrap.zip",
];

struct Args {
    users: usize,
    runs: usize,
    function: String,
}

fn number(flag: &str, value: Option<String>) -> Result<usize, String> {
    value
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .ok_or(format!("{flag} takes a positive number"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        users: 500,
        runs: 3,
        function: "target/release/forcemfa-lambda".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--users" => a.users = number(&arg, it.next())?,
            "--runs" => a.runs = number(&arg, it.next())?,
            "--function" => a.function = it.next().ok_or("--function takes a path")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

// The seeding of examples/bench.rs with changes pending, copied: one user in five without MFA,
// 4 of every 50 with a hardware token, the rest with a virtual device; every other user without
// MFA not yet in the group, and one user in 25 holding MFA and in it.

#[derive(Clone, Copy)]
enum Mfa {
    None,
    Hardware,
    Virtual,
}

/// User `i`'s MFA, and whether it is in the group.
fn seed_of(i: usize) -> (Mfa, bool) {
    let mfa = if i.is_multiple_of(5) {
        Mfa::None
    } else if matches!(i % 50, 1 | 6 | 11 | 16) {
        Mfa::Hardware
    } else {
        Mfa::Virtual
    };
    let member = match mfa {
        Mfa::None => (i / 5).is_multiple_of(2),
        _ => i % 25 == 3,
    };
    (mfa, member)
}

/// The changes a full run makes to the seeded account.
fn pending_changes(n: usize) -> usize {
    (0..n)
        .filter(|&i| match seed_of(i) {
            (Mfa::None, member) => !member,
            (_, member) => member,
        })
        .count()
}

async fn seed_user(iam: &Client, i: usize) -> Result<(), String> {
    let name = format!("user{i:05}");
    let (mfa, member) = seed_of(i);
    let failed = |e: &dyn std::fmt::Display| format!("seeding {name}: {e}");
    iam.create_user()
        .user_name(&name)
        .send()
        .await
        .map_err(|e| failed(&e))?;
    if member {
        iam.add_user_to_group()
            .group_name(GROUP)
            .user_name(&name)
            .send()
            .await
            .map_err(|e| failed(&e))?;
    }
    let serial = match mfa {
        Mfa::None => return Ok(()),
        Mfa::Hardware => format!("GAHT{i:08}"),
        Mfa::Virtual => iam
            .create_virtual_mfa_device()
            .virtual_mfa_device_name(&name)
            .send()
            .await
            .map_err(|e| failed(&e))?
            .virtual_mfa_device()
            .map(|d| d.serial_number().to_string())
            .ok_or_else(|| failed(&"no serial"))?,
    };
    iam.enable_mfa_device()
        .user_name(&name)
        .serial_number(serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .map_err(|e| failed(&e))?;
    Ok(())
}

async fn seed_account(iam: &Client, n: usize) -> Result<(), String> {
    iam.create_group()
        .group_name(GROUP)
        .send()
        .await
        .map_err(|e| format!("create group: {e}"))?;
    stream::iter(0..n)
        .map(|i| seed_user(iam, i))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A child process, killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo lambda watch --only-lambda-apis` on a free loopback port, once it listens.
fn start_api() -> Result<(Killed, SocketAddr), String> {
    for _ in 0..5 {
        let port = free_port()?;
        let mut child = Killed(
            Command::new("cargo")
                .args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
                .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
                .arg(port.to_string())
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cargo lambda watch: {e}"))?,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if TcpStream::connect(addr).is_ok() {
                return Ok((child, addr));
            }
            if child.0.try_wait().ok().flatten().is_some() {
                break; // lost the port to someone else: try another
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err("cargo lambda watch did not listen".into())
}

/// One execution environment: the function process, its log lines as they come, its stdout.
struct Function {
    process: Killed,
    /// Held for as long as the process runs: its reader drains the stderr pipe into it, and
    /// stops, leaving the function blocked on a full pipe, once it is dropped.
    logs: mpsc::Receiver<Value>,
    stdout: tempfile::NamedTempFile,
}

impl Function {
    /// Starts the function and waits for its `function ready` line: its `init_seconds`, and the
    /// wall time from the spawn.
    fn start(program: &str, api: SocketAddr) -> Result<(Function, f64, f64), String> {
        let stdout = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let spawned = Instant::now();
        let mut child = Command::new(program)
            .envs(FUNCTION_ENV)
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://{api}/.rt"))
            // RUST_LOG would win over the function's level and could hide its ready line.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout.reopen().map_err(|e| e.to_string())?)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (send, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let function = Function {
            process: Killed(child),
            logs,
            stdout,
        };
        loop {
            let line = function
                .logs
                .recv_timeout(PATIENCE)
                .map_err(|_| format!("{program} logged no `function ready`"))?;
            if line["message"] == "function ready" {
                let init = line["init_seconds"]
                    .as_f64()
                    .ok_or(format!("no init_seconds in {line}"))?;
                return Ok((function, init, spawned.elapsed().as_secs_f64()));
            }
            if line["level"] == "ERROR" {
                return Err(format!("{program} failed to start: {line}"));
            }
        }
    }

    /// The process's peak resident set size, in MiB.
    fn peak_rss_mib(&self) -> Result<f64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .map_err(|e| format!("the function's /proc status: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .ok_or("no VmHWM in the function's /proc status".into())
    }

    /// The EMF lines written so far.
    fn metrics(&self) -> Vec<Value> {
        std::fs::read_to_string(self.stdout.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Invokes the function with `payload` through the invoke API: the report and the round trip.
fn invoke(api: SocketAddr, payload: &Value) -> Result<(Value, f64), String> {
    let body = payload.to_string();
    let request = format!(
        "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(api).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(PATIENCE))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("invoke: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("invocation answer: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let report: Value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    if head.split_whitespace().nth(1) != Some("200") || !report["error"].is_null() {
        return Err(format!("invocation of {payload} failed: {head}\n{report}"));
    }
    if let Some(e) = report["accounts"][0]["error"].as_str() {
        return Err(format!("invocation of {payload}: the account failed: {e}"));
    }
    Ok((report, seconds))
}

/// The changes a report planned: those it made, unless it was a dry run.
fn planned_changes(report: &Value) -> u64 {
    report["accounts"][0]["planned_changes"]
        .as_u64()
        .unwrap_or(0)
}

/// The event an EventBridge rule sends on its schedule.
fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": "2026-12-03T12:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:{ACCOUNT_ID}:rule/forcemfa-schedule")],
        "detail": {}
    })
}

/// The samples of one table row.
struct Row {
    label: String,
    samples: Vec<f64>,
}

impl Row {
    fn new(label: impl Into<String>) -> Row {
        Row {
            label: label.into(),
            samples: Vec::new(),
        }
    }

    fn print(&self, decimals: usize) {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        let Some((min, max)) = v.first().zip(v.last()) else {
            return;
        };
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        println!(
            "| {} | {n} | {median:.decimals$} | {min:.decimals$} | {max:.decimals$} |",
            self.label
        );
    }
}

/// What one execution environment measured.
struct ColdStart {
    init_seconds: f64,
    to_ready: f64,
    /// The dry runs' round trips, the cold one first, and the changes they planned.
    dry_runs: [f64; 3],
    planned: u64,
    /// The scheduled run's round trip and the changes it made.
    scheduled: f64,
    made: u64,
    peak_rss_mib: f64,
}

/// Starts the function afresh, invokes it, checks its metrics, and kills it.
fn cold_start(program: &str, api: SocketAddr) -> Result<ColdStart, String> {
    let (function, init_seconds, to_ready) = Function::start(program, api)?;
    let dry_run = json!({ "dry_run": true });
    let (report, cold) = invoke(api, &dry_run)?;
    let dry_runs = [cold, invoke(api, &dry_run)?.1, invoke(api, &dry_run)?.1];
    let (report_scheduled, scheduled) = invoke(api, &scheduled_event())?;
    if report_scheduled["accounts"][0]["applied"] != true {
        return Err(format!(
            "the scheduled run did not apply: {report_scheduled}"
        ));
    }
    let made = planned_changes(&report_scheduled);
    let peak_rss_mib = function.peak_rss_mib()?;
    // One EMF line, of the scheduled run: dry runs write none.
    let metrics = function.metrics();
    if metrics.len() != 1 || metrics[0]["Changes"] != made {
        return Err(format!(
            "expected one EMF line of {made} changes, got {metrics:?}"
        ));
    }
    Ok(ColdStart {
        init_seconds,
        to_ready,
        dry_runs,
        planned: planned_changes(&report),
        scheduled,
        made,
        peak_rss_mib,
    })
}

fn main() -> Result<(), String> {
    let args = args()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    runtime.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        seed_account(&Client::new(&sdk), args.users).await
    })?;
    let pending = pending_changes(args.users);
    eprintln!(
        "seeded {} users ({pending} changes pending) in {:.1}s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let (_api_process, api) = start_api()?;
    let mut init = Row::new("init: `init_seconds` logged (s)");
    let mut ready = Row::new("init: spawn to `function ready` (s)");
    let mut cold = Row::new("cold dry run, round trip (s)");
    let mut warm = Row::new("warm dry run, round trip (s)");
    // Run 1's dry runs plan the pending changes, the later runs' plan none: the cost of a cold
    // start is compared within one process.
    let mut penalty = Row::new("cold dry run minus its process's warm ones (s)");
    let mut applying = Row::new(format!("scheduled, applying {pending} changes (s)"));
    let mut settled = Row::new("scheduled, nothing to change (s)");
    let mut rss = Row::new("peak RSS after the invocations (MiB)");
    for run in 1..=args.runs {
        let m = cold_start(&args.function, api).map_err(|e| format!("run {run}: {e}"))?;
        let [cold_seconds, warm_1, warm_2] = m.dry_runs;
        init.samples.push(m.init_seconds);
        ready.samples.push(m.to_ready);
        cold.samples.push(cold_seconds);
        warm.samples.extend([warm_1, warm_2]);
        penalty.samples.push(cold_seconds - (warm_1 + warm_2) / 2.0);
        if m.made > 0 {
            applying.samples.push(m.scheduled);
        } else {
            settled.samples.push(m.scheduled);
        }
        rss.samples.push(m.peak_rss_mib);
        eprintln!(
            "run {run}: init {:.3}s ({:.3}s to ready), cold dry run {cold_seconds:.3}s ({} \
             planned), warm {warm_1:.3}s {warm_2:.3}s, scheduled {:.3}s ({} changes), peak RSS \
             {:.1} MiB",
            m.init_seconds, m.to_ready, m.planned, m.scheduled, m.made, m.peak_rss_mib,
        );
    }

    println!(
        "\nforcemfa-lambda, {} users, {} cold starts (`cargo lambda watch`, moto_server)",
        args.users, args.runs
    );
    println!("| measure | samples | median | min | max |");
    println!("| --- | --- | --- | --- | --- |");
    for row in [&init, &ready, &cold, &warm, &penalty, &applying, &settled] {
        row.print(3);
    }
    rss.print(1);
    for zip in ZIPS {
        if let Ok(meta) = std::fs::metadata(zip) {
            let size = meta.len();
            println!("{zip}: {size} bytes ({:.1} MiB)", size as f64 / 1048576.0);
        }
    }
    Ok(())
}
