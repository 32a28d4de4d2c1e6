//! The benchmark: seeds an emulated IAM endpoint (AWS_ENDPOINT_URL, a moto_server) with N users,
//! then runs `forcemfa reconcile --dry-run` and the naive per-user scan (examples/naive_scan.rs)
//! side by side and prints, for each, wall time, API calls, calls per user and peak RSS.
//!
//! The mix: 20% of users lack MFA (and are already in the group: steady state, nothing to
//! change), a tenth of the others hold a hardware token, the rest a virtual device.
//!
//! Usage: bench [--users N] [--concurrency N,N..] [--skip-seed] [--forcemfa PATH] [--naive PATH]
//!              [--no-naive]
//!
//! `--concurrency` runs forcemfa once per value of `aws.max_concurrency` (default: 8, its
//! default, and 2, which suits a single-process emulator best).
// The benchmark reads its children's peak memory and limits.
#![allow(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::Instant;

use aws_sdk_iam::Client;
use futures::stream::{self, StreamExt};

const GROUP: &str = "ForceMFA";

struct Args {
    users: usize,
    concurrency: Vec<usize>,
    skip_seed: bool,
    forcemfa: String,
    naive: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        users: 2000,
        concurrency: vec![8, 2],
        skip_seed: false,
        forcemfa: "target/release/forcemfa".into(),
        naive: Some("target/release/examples/naive_scan".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--users" => {
                a.users = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--users takes a number")?;
            }
            "--concurrency" => {
                a.concurrency = it
                    .next()
                    .ok_or("--concurrency takes a list")?
                    .split(',')
                    .map(|v| v.trim().parse().map_err(|_| format!("bad concurrency {v}")))
                    .collect::<Result<_, _>>()?;
            }
            "--skip-seed" => a.skip_seed = true,
            "--forcemfa" => a.forcemfa = it.next().ok_or("--forcemfa takes a path")?,
            "--naive" => a.naive = Some(it.next().ok_or("--naive takes a path")?),
            "--no-naive" => a.naive = None,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// The kind of user `i`: 0 no MFA (one in five), 1 hardware (4 of every 50 users, a tenth of
/// those with MFA), 2 virtual.
fn kind(i: usize) -> u8 {
    if i.is_multiple_of(5) {
        0
    } else if matches!(i % 50, 1 | 6 | 11 | 16) {
        1
    } else {
        2
    }
}

async fn seed(iam: &Client, n: usize) -> Result<(), String> {
    iam.create_group()
        .group_name(GROUP)
        .send()
        .await
        .map_err(|e| format!("create group: {e}"))?;
    let results: Vec<Result<(), String>> = stream::iter(0..n)
        .map(|i| async move {
            let name = format!("user{i:05}");
            iam.create_user()
                .user_name(&name)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let serial = match kind(i) {
                0 => {
                    iam.add_user_to_group()
                        .group_name(GROUP)
                        .user_name(&name)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
                1 => format!("GAHT{i:08}"),
                _ => iam
                    .create_virtual_mfa_device()
                    .virtual_mfa_device_name(&name)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .virtual_mfa_device()
                    .map(|d| d.serial_number().to_string())
                    .ok_or("no serial")?,
            };
            iam.enable_mfa_device()
                .user_name(&name)
                .serial_number(serial)
                .authentication_code1("123456")
                .authentication_code2("654321")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

struct Measured {
    seconds: f64,
    peak_rss_kib: i64,
    stdout: String,
}

/// Runs a program to completion and measures its wall time and peak resident set size.
fn measure(program: &str, args: &[&str], env: &[(&str, String)]) -> Result<Measured, String> {
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout {
        use std::io::Read;
        out.read_to_string(&mut stdout).map_err(|e| e.to_string())?;
    }
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4 for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers are to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(format!("{program}: wait4 failed"));
    }
    Ok(Measured {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: usage.ru_maxrss,
        stdout,
    })
}

fn calls_in_report(report: &str) -> Result<(u64, u64), String> {
    let v: serde_json::Value = serde_json::from_str(report).map_err(|e| e.to_string())?;
    let account = &v["accounts"][0];
    if let Some(error) = account["error"].as_str() {
        return Err(format!("forcemfa: {error}"));
    }
    let calls = account["api_calls"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    Ok((calls, account["planned_changes"].as_u64().unwrap_or(0)))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let iam = Client::new(&sdk);
    if !args.skip_seed {
        let started = Instant::now();
        seed(&iam, args.users).await?;
        eprintln!(
            "seeded {} users in {:.1}s",
            args.users,
            started.elapsed().as_secs_f64()
        );
    }
    let n = args.users as f64;
    println!(
        "{:<22} {:>9} {:>10} {:>11} {:>14}",
        "", "wall (s)", "API calls", "calls/user", "peak RSS (MiB)"
    );

    let mut runs = Vec::new();
    for c in &args.concurrency {
        let env = [("FORCEMFA__AWS__MAX_CONCURRENCY", c.to_string())];
        let f = measure(
            &args.forcemfa,
            &["reconcile", "--dry-run", "--output", "json"],
            &env,
        )?;
        let (f_calls, planned) = calls_in_report(&f.stdout)?;
        println!(
            "{:<22} {:>9.2} {:>10} {:>11.3} {:>14.1}",
            format!("forcemfa (conc. {c})"),
            f.seconds,
            f_calls,
            f_calls as f64 / n,
            f.peak_rss_kib as f64 / 1024.0
        );
        if planned != 0 {
            eprintln!("note: the account is not in steady state: {planned} changes planned");
        }
        runs.push((*c, f.seconds, f_calls));
    }
    if let Some(naive) = &args.naive {
        let b = measure(naive, &[GROUP], &[])?;
        let v: serde_json::Value =
            serde_json::from_str(b.stdout.trim()).map_err(|e| e.to_string())?;
        let b_calls = v["api_calls"].as_u64().unwrap_or(0);
        println!(
            "{:<22} {:>9.2} {:>10} {:>11.3} {:>14.1}",
            "naive sequential scan",
            b.seconds,
            b_calls,
            b_calls as f64 / n,
            b.peak_rss_kib as f64 / 1024.0
        );
        for (c, seconds, calls) in &runs {
            println!(
                "forcemfa (conc. {c}) is {:.1}x faster and makes {:.1}x fewer calls",
                b.seconds / seconds,
                b_calls as f64 / (*calls).max(1) as f64
            );
        }
    }
    Ok(())
}
