//! The benchmark: seeds an emulated IAM endpoint (AWS_ENDPOINT_URL, a moto_server), puts the test
//! suite's fault proxy in front of it to give it the real endpoint's shape (a round-trip time on
//! every call, IAM's token-bucket throttling per account), and runs forcemfa beside the naive
//! per-user scan (examples/naive_scan.rs) and, with `--peers`, Cloud Custodian
//! (examples/custodian-force-mfa.yml). For each it prints wall time, calls, throttled answers,
//! calls per user and peak RSS; for forcemfa also the physical limit of the bucket and how far
//! from it the run was.
//!
//! One account (the default): N users, 20% of them without MFA, a tenth of the others with a
//! hardware token, the rest with a virtual device. With changes pending (the default) half of
//! those without MFA are not yet in the group and a twentieth of all users hold MFA and are in it:
//! 14% of the users change. Every run measures `forcemfa reconcile --dry-run`, `forcemfa
//! reconcile`, then each peer applying the same changes; the account is put back between tools.
//!
//! An organization (`--accounts N`): N member accounts of `--users` users each (50 by default),
//! reconciled with `forcemfa reconcile --dry-run` through OrganizationAccountAccessRole, once for
//! each value of `--parallel` (aws.max_accounts_in_parallel).
//!
//! Usage: bench [--users N] [--runs K] [--latency-ms MS] [--throttle RPS[,BURST]] [--steady]
//!              [--no-naive] [--peers] [--custodian PATH] [--skip-seed]
//!              [--accounts N] [--parallel P,P..] [--forcemfa PATH] [--naive PATH]
//!
//! `--throttle 20,40` throttles IAM calls (per signing key, that is per account) at 20 a second
//! after a burst of 40 (the burst is two seconds' worth when not given). forcemfa's settings come
//! from the environment as usual (e.g. FORCEMFA__AWS__RETRY_MODE=adaptive).
//!
//! The physical limit of a run under the bucket: the IAM calls it needed beyond the burst divided
//! by the rate, plus the round trips of its steps that cannot overlap (the caller's identity, the
//! pages of the slower bulk listing, a per-user read, a change), as the proxy measured them: the
//! emulator's own time is part of a round trip, and a page of 1,000 users takes it far longer
//! than the latency added.
// The benchmark reads its children's peak memory.
#![allow(unsafe_code)]

#[allow(dead_code)]
#[path = "../tests/integration/support/proxy.rs"]
mod proxy;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::Client;
use futures::stream::{self, StreamExt};

use proxy::{Counts, FaultProxy, Throttle};

const GROUP: &str = "ForceMFA";
/// The management account of moto's organization, left out of the benchmark's.
const MANAGEMENT_ACCOUNT: &str = "123456789012";
const MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

struct Args {
    users: usize,
    runs: usize,
    latency: Duration,
    throttle: Option<Throttle>,
    pending: bool,
    skip_seed: bool,
    forcemfa: String,
    naive: Option<String>,
    custodian: Option<String>,
    accounts: Option<usize>,
    parallel: Vec<usize>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    value
        .and_then(|v| v.trim().parse().ok())
        .ok_or(format!("{flag} takes a number"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        users: 0,
        runs: 1,
        latency: Duration::ZERO,
        throttle: None,
        pending: true,
        skip_seed: false,
        forcemfa: "target/release/forcemfa".into(),
        naive: Some("target/release/examples/naive_scan".into()),
        custodian: None,
        accounts: None,
        parallel: vec![4, 16, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--users" => a.users = number(&arg, it.next())?,
            "--runs" => a.runs = number(&arg, it.next())?,
            "--latency-ms" => a.latency = Duration::from_millis(number(&arg, it.next())?),
            "--throttle" => {
                let spec = it.next().ok_or("--throttle takes RPS[,BURST]")?;
                let mut parts = spec.split(',');
                let rate: f64 = number("--throttle", parts.next().map(str::to_string))?;
                let burst = match parts.next() {
                    Some(b) => number("--throttle", Some(b.to_string()))?,
                    None => 2.0 * rate,
                };
                a.throttle = Some(Throttle { rate, burst });
            }
            "--steady" => a.pending = false,
            "--skip-seed" => a.skip_seed = true,
            "--forcemfa" => a.forcemfa = it.next().ok_or("--forcemfa takes a path")?,
            "--naive" => a.naive = Some(it.next().ok_or("--naive takes a path")?),
            "--no-naive" => a.naive = None,
            "--peers" => {
                a.custodian
                    .get_or_insert_with(|| "target/bench-venv/bin/custodian".into());
            }
            "--custodian" => a.custodian = Some(it.next().ok_or("--custodian takes a path")?),
            "--accounts" => a.accounts = Some(number(&arg, it.next())?),
            "--parallel" => {
                a.parallel = it
                    .next()
                    .ok_or("--parallel takes a list")?
                    .split(',')
                    .map(|v| number("--parallel", Some(v.to_string())))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.users == 0 {
        a.users = if a.accounts.is_some() { 50 } else { 2000 };
    }
    Ok(a)
}

/// How user `i` is seeded: whether it holds MFA (and which kind) and whether it is in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seed {
    mfa: Mfa,
    member: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mfa {
    None,
    Hardware,
    Virtual,
}

/// One in five without MFA, 4 of every 50 with a hardware token, the rest with a virtual device.
/// In steady state exactly those without MFA are members; with changes pending, every other user
/// without MFA is not yet one, and one user in 25 holds MFA and is one.
fn seed_of(i: usize, pending: bool) -> Seed {
    let mfa = if i.is_multiple_of(5) {
        Mfa::None
    } else if matches!(i % 50, 1 | 6 | 11 | 16) {
        Mfa::Hardware
    } else {
        Mfa::Virtual
    };
    let member = match mfa {
        Mfa::None => !pending || (i / 5).is_multiple_of(2),
        _ => pending && i % 25 == 3,
    };
    Seed { mfa, member }
}

fn user_name(i: usize) -> String {
    format!("user{i:05}")
}

async fn seed_account(iam: &Client, n: usize, pending: bool) -> Result<(), String> {
    iam.create_group()
        .group_name(GROUP)
        .send()
        .await
        .map_err(|e| format!("create group: {e}"))?;
    let results: Vec<Result<(), String>> = stream::iter(0..n)
        .map(|i| async move {
            let name = user_name(i);
            let seed = seed_of(i, pending);
            iam.create_user()
                .user_name(&name)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if seed.member {
                iam.add_user_to_group()
                    .group_name(GROUP)
                    .user_name(&name)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let serial = match seed.mfa {
                Mfa::None => return Ok(()),
                Mfa::Hardware => format!("GAHT{i:08}"),
                Mfa::Virtual => iam
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

/// The group's members.
async fn members(iam: &Client) -> Result<std::collections::BTreeSet<String>, String> {
    let mut members = std::collections::BTreeSet::new();
    let mut pages = iam.get_group().group_name(GROUP).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("get group: {e}"))?;
        members.extend(page.users().iter().map(|u| u.user_name().to_string()));
    }
    Ok(members)
}

/// Whether the group holds exactly the users without MFA.
async fn converged(iam: &Client, n: usize) -> Result<bool, String> {
    let expected: std::collections::BTreeSet<String> = (0..n)
        .filter(|&i| seed_of(i, false).mfa == Mfa::None)
        .map(user_name)
        .collect();
    Ok(members(iam).await? == expected)
}

/// Puts the memberships back as seeded, after a tool made the pending changes.
async fn restore(iam: &Client, n: usize) -> Result<(), String> {
    let results: Vec<Result<(), String>> = stream::iter(0..n)
        .filter(|&i| std::future::ready(seed_of(i, true) != seed_of(i, false)))
        .map(|i| async move {
            let name = user_name(i);
            // A tool that did not make the change leaves nothing to undo.
            let failed = |e: &dyn ProvideErrorMetadata, shown: String| {
                (e.code() != Some("NoSuchEntity")).then_some(shown)
            };
            let failure = if seed_of(i, true).member {
                iam.add_user_to_group()
                    .group_name(GROUP)
                    .user_name(&name)
                    .send()
                    .await
                    .err()
                    .and_then(|e| failed(&e, e.to_string()))
            } else {
                iam.remove_user_from_group()
                    .group_name(GROUP)
                    .user_name(&name)
                    .send()
                    .await
                    .err()
                    .and_then(|e| failed(&e, e.to_string()))
            };
            match failure {
                Some(e) => Err(format!("restore {name}: {e}")),
                None => Ok(()),
            }
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

/// forcemfa's report: its accounts' errors, planned changes and IAM calls made.
struct Report {
    accounts: usize,
    errors: Vec<String>,
    planned: u64,
}

fn read_report(stdout: &str) -> Result<Report, String> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| format!("forcemfa's report: {e}"))?;
    let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
    let mut errors: Vec<String> = accounts
        .iter()
        .filter_map(|a| a["error"].as_str().map(str::to_string))
        .collect();
    if let Some(e) = v["error"].as_str() {
        errors.push(e.to_string());
    }
    Ok(Report {
        accounts: accounts.len(),
        errors,
        planned: accounts
            .iter()
            .map(|a| a["planned_changes"].as_u64().unwrap_or(0))
            .sum(),
    })
}

/// One tool's run: what it took and what the proxy saw.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    rss_mib: f64,
    counts: Counts,
    /// The physical limit of the run (under a bucket).
    limit: Option<f64>,
}

/// The physical limit of a run that made `counts` IAM calls, `sequential` seconds of which went
/// to round trips that cannot overlap.
fn physical_limit(args: &Args, counts: Counts, sequential: f64) -> Option<f64> {
    let t = args.throttle?;
    let accepted = (counts.iam - counts.throttled) as f64;
    Some((accepted - t.burst).max(0.0) / t.rate + sequential)
}

/// The round trips of a forcemfa run's steps that cannot overlap, as the proxy measured them
/// (the emulator's time included): the caller's identity, the pages of the slower bulk listing,
/// a per-user read, and a change when there are some.
fn sequential_round_trips(proxy: &FaultProxy, changes: bool) -> f64 {
    let seconds = |actions: &[&str]| -> Vec<f64> {
        actions
            .iter()
            .flat_map(|a| proxy.round_trips(a))
            .map(|d| d.as_secs_f64())
            .collect()
    };
    // A single call's quickest round trip, not one spent queued behind the run's other calls.
    let quickest = |actions: &[&str]| {
        seconds(actions)
            .into_iter()
            .reduce(f64::min)
            .unwrap_or_default()
    };
    // The two listings run side by side, but the emulator answers one call at a time, so the
    // later one's pages take the time of both.
    let listing = seconds(&["GetAccountAuthorizationDetails"])
        .iter()
        .sum::<f64>()
        .max(seconds(&["ListVirtualMFADevices"]).iter().sum());
    let change = if changes {
        quickest(&["AddUserToGroup", "RemoveUserFromGroup"])
    } else {
        0.0
    };
    quickest(&["GetCallerIdentity"]) + listing + quickest(&["ListMFADevices"]) + change
}

struct Row {
    label: String,
    samples: Vec<Sample>,
}

fn range(values: impl Iterator<Item = f64>, decimals: usize) -> String {
    let v: Vec<f64> = values.collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    let (a, b) = (format!("{lo:.decimals$}"), format!("{hi:.decimals$}"));
    if a == b {
        a
    } else {
        format!("{a} – {b}")
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn shape(args: &Args) -> String {
    let mut parts = Vec::new();
    match args.throttle {
        Some(t) => parts.push(format!(
            "IAM throttled at {} req/s (burst {})",
            t.rate, t.burst
        )),
        None => parts.push("no throttling".to_string()),
    }
    parts.push(format!("{} ms per call", args.latency.as_millis()));
    parts.join(", ")
}

fn print_table(title: &str, rows: &[Row], users: usize) {
    println!("\n{title}");
    println!(
        "| tool | wall (s) | calls | throttled | calls per user | peak RSS (MiB) | limit (s) | wall / limit |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let s = &row.samples;
        let limits = s.iter().filter_map(|x| x.limit);
        let has_limit = s.iter().all(|x| x.limit.is_some());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            range(s.iter().map(|x| x.seconds), 2),
            range(s.iter().map(|x| x.counts.requests as f64), 0),
            range(s.iter().map(|x| x.counts.throttled as f64), 0),
            range(s.iter().map(|x| x.counts.requests as f64 / users as f64), 3),
            range(s.iter().map(|x| x.rss_mib), 1),
            if has_limit {
                range(limits, 2)
            } else {
                "".into()
            },
            if has_limit {
                range(s.iter().map(|x| x.seconds / x.limit.unwrap_or(1.0)), 2)
            } else {
                "".into()
            },
        );
    }
}

/// Runs `program` through the proxy from a full bucket and samples it.
fn sample(
    proxy: &FaultProxy,
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<(Measured, Counts), String> {
    proxy.reset();
    let mut env = env.to_vec();
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint.clone()));
    let m = measure(program, args, &env)?;
    Ok((m, proxy.counts()))
}

async fn one_account(args: &Args, iam: &Client, proxy: &FaultProxy) -> Result<(), String> {
    let n = args.users;
    if !args.skip_seed {
        let started = Instant::now();
        seed_account(iam, n, args.pending).await?;
        eprintln!(
            "seeded {n} users in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    let changes = args.pending;
    let mut rows = vec![
        Row {
            label: "forcemfa reconcile --dry-run".into(),
            samples: vec![],
        },
        Row {
            label: "forcemfa reconcile".into(),
            samples: vec![],
        },
    ];
    if args.naive.is_some() {
        rows.push(Row {
            label: "naive sequential scan".into(),
            samples: vec![],
        });
    }
    if args.custodian.is_some() {
        rows.push(Row {
            label: "Cloud Custodian".into(),
            samples: vec![],
        });
    }
    let out_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/custodian-force-mfa.yml"
    );
    for run in 1..=args.runs {
        let mut row = 0;
        for dry_run in [true, false] {
            let mut cmd = vec!["reconcile", "--output", "json"];
            if dry_run {
                cmd.push("--dry-run");
            }
            let (m, counts) = sample(proxy, &args.forcemfa, &cmd, &[])?;
            let report = read_report(&m.stdout)?;
            if let Some(e) = report.errors.first() {
                return Err(format!("forcemfa: {e}"));
            }
            let sequential = sequential_round_trips(proxy, changes && !dry_run);
            push(
                &mut rows[row],
                &m,
                counts,
                physical_limit(args, counts, sequential),
            );
            eprintln!(
                "run {run}: {} {:.2}s, {} calls, {} throttled, {} changes planned",
                rows[row].label, m.seconds, counts.requests, counts.throttled, report.planned
            );
            row += 1;
        }
        settle(iam, n, changes, "forcemfa").await?;
        if let Some(naive) = &args.naive {
            let (m, counts) = sample(proxy, naive, &[GROUP, "--apply"], &[])?;
            push(&mut rows[row], &m, counts, None);
            eprintln!(
                "run {run}: naive {:.2}s, {} calls, {} throttled",
                m.seconds, counts.requests, counts.throttled
            );
            row += 1;
            settle(iam, n, changes, "the naive scan").await?;
        }
        if let Some(custodian) = &args.custodian {
            let dir = out_dir.path().to_str().unwrap_or(".");
            let cmd = [
                "run",
                "--region",
                "us-east-1",
                "--cache-period",
                "0",
                "-s",
                dir,
                policy,
            ];
            let (m, counts) = sample(proxy, custodian, &cmd, &[])?;
            push(&mut rows[row], &m, counts, None);
            eprintln!(
                "run {run}: custodian {:.2}s, {} calls, {} throttled",
                m.seconds, counts.requests, counts.throttled
            );
            settle(iam, n, changes, "Cloud Custodian").await?;
        }
    }
    let state = if changes {
        "changes pending"
    } else {
        "steady state"
    };
    print_table(
        &format!(
            "{n} users ({state}), {}, {} run(s):",
            shape(args),
            args.runs
        ),
        &rows,
        n,
    );
    let forcemfa = median(rows[1].samples.iter().map(|s| s.seconds));
    for row in &rows[2..] {
        println!(
            "forcemfa reconcile is {:.1}x faster than {} (medians)",
            median(row.samples.iter().map(|s| s.seconds)) / forcemfa,
            row.label
        );
    }
    Ok(())
}

fn push(row: &mut Row, m: &Measured, counts: Counts, limit: Option<f64>) {
    row.samples.push(Sample {
        seconds: m.seconds,
        rss_mib: m.peak_rss_kib as f64 / 1024.0,
        counts,
        limit,
    });
}

/// Checks that a tool converged the account, then puts it back as seeded.
async fn settle(iam: &Client, n: usize, changes: bool, tool: &str) -> Result<(), String> {
    if !converged(iam, n).await? {
        eprintln!("note: {tool} left the group inexact");
    }
    if changes {
        restore(iam, n).await?;
    }
    Ok(())
}

/// An IAM client in `account` of the same emulator, through sts:AssumeRole.
async fn client_in(sdk: &aws_config::SdkConfig, account: &str) -> Result<Client, String> {
    let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
        "arn:aws:iam::{account}:role/{MEMBER_ROLE}"
    ))
    .session_name("bench")
    .configure(sdk)
    .build()
    .await;
    let config = aws_sdk_iam::config::Builder::from(sdk)
        .credentials_provider(provider)
        .build();
    Ok(Client::from_conf(config))
}

async fn organization(
    args: &Args,
    sdk: &aws_config::SdkConfig,
    proxy: &FaultProxy,
    accounts: usize,
) -> Result<(), String> {
    let orgs = aws_sdk_organizations::Client::new(sdk);
    let mut ids = Vec::new();
    if args.skip_seed {
        let mut pages = orgs.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| format!("list accounts: {e}"))?;
            ids.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id())
                    .filter(|id| *id != MANAGEMENT_ACCOUNT)
                    .map(str::to_string),
            );
        }
    } else {
        let started = Instant::now();
        orgs.create_organization()
            .send()
            .await
            .map_err(|e| format!("create organization: {e}"))?;
        for i in 0..accounts {
            let out = orgs
                .create_account()
                .account_name(format!("member{i:03}"))
                .email(format!("member{i:03}@example.com"))
                .send()
                .await
                .map_err(|e| format!("create account: {e}"))?;
            let id = out
                .create_account_status()
                .and_then(|s| s.account_id())
                .ok_or("create account: no account id")?;
            ids.push(id.to_string());
        }
        let results: Vec<Result<(), String>> = stream::iter(ids.clone())
            .map(|id| async move {
                let iam = client_in(sdk, &id).await?;
                seed_account(&iam, args.users, args.pending).await
            })
            .buffer_unordered(4)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), String>>()?;
        eprintln!(
            "seeded {} accounts of {} users in {:.1}s",
            ids.len(),
            args.users,
            started.elapsed().as_secs_f64()
        );
    }
    let rate = args.throttle.map(|t| t.rate);
    println!(
        "\n{} accounts of {} users ({}), {}, forcemfa reconcile --dry-run, {} run(s) each:",
        ids.len(),
        args.users,
        if args.pending {
            "changes pending"
        } else {
            "steady state"
        },
        shape(args),
        args.runs
    );
    println!("| accounts in parallel | wall (s) | calls | throttled | peak RSS (MiB) | calls / (parallel x rate) (s) | wall / that |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let env = |p: usize| {
        vec![
            ("FORCEMFA__ORGANIZATION__ROLE_NAME", MEMBER_ROLE.to_string()),
            (
                "FORCEMFA__ORGANIZATION__EXCLUDE_ACCOUNTS",
                format!("[\"{MANAGEMENT_ACCOUNT}\"]"),
            ),
            ("FORCEMFA__AWS__MAX_ACCOUNTS_IN_PARALLEL", p.to_string()),
        ]
    };
    for &p in &args.parallel {
        let mut samples = Vec::new();
        for run in 1..=args.runs {
            let (m, counts) = sample(
                proxy,
                &args.forcemfa,
                &["reconcile", "--dry-run", "--output", "json"],
                &env(p),
            )?;
            let report = read_report(&m.stdout)?;
            if let Some(e) = report.errors.first() {
                return Err(format!("forcemfa: {e}"));
            }
            if report.accounts != ids.len() {
                return Err(format!(
                    "forcemfa reconciled {} accounts, not {}",
                    report.accounts,
                    ids.len()
                ));
            }
            eprintln!(
                "{p} in parallel, run {run}: {:.2}s, {} calls, {} throttled, {:.1} MiB",
                m.seconds,
                counts.requests,
                counts.throttled,
                m.peak_rss_kib as f64 / 1024.0
            );
            samples.push((m.seconds, m.peak_rss_kib as f64 / 1024.0, counts));
        }
        let model = |c: &Counts| rate.map(|r| (c.iam - c.throttled) as f64 / (p as f64 * r));
        println!(
            "| {p} | {} | {} | {} | {} | {} | {} |",
            range(samples.iter().map(|s| s.0), 2),
            range(samples.iter().map(|s| s.2.requests as f64), 0),
            range(samples.iter().map(|s| s.2.throttled as f64), 0),
            range(samples.iter().map(|s| s.1), 1),
            match rate {
                Some(_) => range(samples.iter().filter_map(|s| model(&s.2)), 2),
                None => String::new(),
            },
            match rate {
                Some(_) => range(
                    samples.iter().filter_map(|s| model(&s.2).map(|m| s.0 / m)),
                    2
                ),
                None => String::new(),
            },
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let moto = sdk
        .endpoint_url()
        .ok_or("AWS_ENDPOINT_URL names no emulator")?
        .to_string();
    let proxy = FaultProxy::start(&moto);
    proxy.set_latency(args.latency);
    proxy.set_throttle(args.throttle);
    match args.accounts {
        Some(n) => organization(&args, &sdk, &proxy, n).await,
        None => one_account(&args, &Client::new(&sdk), &proxy).await,
    }
}
