//! Faults, crashes and concurrency never produce a wrong change, and every change made is
//! recorded: the invariants are checked against the emulator's state after each scenario.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::daemon::Daemon;
use crate::support::proxy::{Fault, FaultProxy, Rule, Throttle};
use crate::support::{
    audit_lines, audit_log_at_limit, audited, names, run, set, with_file_size_limit, Account, FULL,
};

const GROUP: &str = "ForceMFA";

/// A mixed account: `n` users, a third with virtual MFA, a sixth with hardware MFA, the rest
/// without; members and non-members of every kind. Returns the users that belong in the group.
async fn mixed(a: &Account, n: usize) -> BTreeSet<String> {
    let mut without = BTreeSet::new();
    for i in 0..n {
        let name = format!("u{i:03}");
        let mut u = a.user(&name).await;
        u = match i % 6 {
            0 | 1 => u.virtual_mfa().await,
            2 => u.hardware_mfa().await,
            _ => {
                without.insert(name.clone());
                u
            }
        };
        if i % 4 == 0 {
            u.member_of(GROUP).await;
        }
    }
    without
}

/// The invariant after any run, however it ended: nobody with MFA was added, nobody without MFA
/// was removed. `before` is the membership before the run, `without` the users without MFA.
fn assert_no_wrong_change(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    without: &BTreeSet<String>,
) {
    for added in after.difference(before) {
        assert!(without.contains(added), "{added} has MFA but was added");
    }
    for removed in before.difference(after) {
        assert!(
            !without.contains(removed),
            "{removed} has no MFA but was removed"
        );
    }
}

#[tokio::test]
async fn thirty_percent_throttling_still_converges_exactly() {
    let a = Account::with_group().await;
    let without = mixed(&a, 36).await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(&["Action="], Fault::Throttle).percent(30)]);
    let config = a.config("[aws]\nmax_backoff_secs = 1\n");

    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, without);
    assert!(proxy.faulted() >= 10, "faulted {}", proxy.faulted());
    let errors: u64 = run.account()["api_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        errors,
        proxy.faulted(),
        "{} {}",
        run.account()["api_errors"],
        run.account()["impact"]
    );
    eprintln!(
        "throttling: {} of {} requests faulted, converged in 1 run, 0 wrong changes",
        proxy.faulted(),
        run.account()["api_calls"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
}

/// Under a token bucket like IAM's, of a rate forcemfa is not told, and IAM's distance, the pacing
/// finds the rate: few calls are throttled, reads and writes alike, and the run converges.
#[tokio::test]
async fn under_iams_token_bucket_few_calls_are_throttled() {
    let a = Account::with_group().await;
    let without = mixed(&a, 90).await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_latency(Duration::from_millis(20));
    proxy.set_throttle(Some(Throttle {
        rate: 20.0,
        burst: 10.0,
    }));

    let run = a.forcemfa_via(&proxy.endpoint, &["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, without);
    let counts = proxy.counts();
    assert!(counts.iam >= 100, "{counts:?}");
    let reads = proxy.round_trips("ListMFADevices");
    assert!(!reads.is_empty());
    assert!(
        reads.iter().all(|d| *d >= Duration::from_millis(20)),
        "{reads:?}"
    );
    // The pacing starts above the bucket's rate and must find it: a handful of throttles, not
    // the dozens that sending at will costs.
    assert!(counts.throttled * 100 <= counts.iam * 15, "{counts:?}");
    let errors: u64 = run.account()["api_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, counts.throttled);
    eprintln!(
        "IAM's bucket (20/s, burst 10): {} of {} IAM requests throttled, converged in 1 run",
        counts.throttled, counts.iam
    );

    // The next run, its bucket full again, reads the converged account as lightly.
    proxy.reset();
    let run = a.forcemfa_via(&proxy.endpoint, &["reconcile", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.account()["planned_changes"], 0);
    let counts = proxy.counts();
    assert!(counts.throttled * 100 <= counts.iam * 15, "{counts:?}");
}

#[tokio::test]
async fn server_errors_and_dropped_connections_never_make_a_wrong_change() {
    let a = Account::with_group().await;
    let without = mixed(&a, 30).await;
    let before = a.members(GROUP).await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![
        Rule::new(&["Action=ListMFADevices"], Fault::ServerError).percent(40),
        Rule::new(&["Action=AddUserToGroup"], Fault::Drop).percent(50),
        Rule::new(&["Action=RemoveUserFromGroup"], Fault::DropAfterForward).percent(50),
    ]);
    let config = a.config("[aws]\nmax_attempts = 1\n");
    let path = config.to_str().unwrap();

    let run = a.forcemfa_via(
        &proxy.endpoint,
        &["reconcile", "--config", path, "--output", "json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert!(
        !acct["skipped"].as_array().unwrap().is_empty()
            || !acct["failed"].as_array().unwrap().is_empty()
    );
    assert_no_wrong_change(&before, &a.members(GROUP).await, &without);
    let faulted = proxy.faulted();
    assert!(faulted > 0);
    eprintln!(
        "5xx and drops: {faulted} requests faulted, {} users skipped, {} changes failed, 0 wrong changes; converged on the next run",
        acct["skipped"].as_array().unwrap().len(),
        acct["failed"].as_array().unwrap().len()
    );

    // Once the faults stop, the next run converges.
    proxy.set_rules(vec![]);
    let run = a.forcemfa_via(&proxy.endpoint, &["reconcile", "--config", path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, without);
}

#[tokio::test]
async fn answers_slower_than_the_operation_timeout_end_the_run_in_bounded_time() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=GetAccountAuthorizationDetails"],
        Fault::Delay(4000),
    )]);
    let config = a.config("[aws]\noperation_timeout_secs = 1\nmax_attempts = 2\n");
    let started = Instant::now();
    let run = a.reconcile_json_via(&proxy.endpoint, &config);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run.account()["error"].as_str().unwrap().to_string();
    assert!(error.contains("GetAccountAuthorizationDetails"), "{error}");
    assert!(
        error.to_lowercase().contains("timeout") || error.to_lowercase().contains("timed out"),
        "{error}"
    );
    assert!(a.members(GROUP).await.is_empty());
}

#[tokio::test]
async fn a_run_killed_midway_is_finished_by_the_next_one() {
    let a = Account::with_group().await;
    let mut expected = BTreeSet::new();
    for i in 0..150 {
        let name = format!("new{i:03}");
        a.user(&name).await;
        expected.insert(name);
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AddUserToGroup"],
        Fault::Delay(20),
    )]);
    let config = a.config("[aws]\nmax_concurrency = 2\n");
    let path = config.to_str().unwrap().to_string();

    let mut child = a
        .command(&proxy.endpoint, &["reconcile", "--config", &path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once some, not all, changes are made.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = a.members(GROUP).await.len();
        if n >= 10 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Requests the proxy was still holding land now; let them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let partial = a.members(GROUP).await.len();
    assert!(
        partial > 0 && partial < 150,
        "{partial} members after the kill"
    );

    let run = a.forcemfa(&["reconcile", "--config", &path, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&run.account()["added"]).len(), 150 - partial);
    assert_eq!(a.members(GROUP).await, expected);
}

#[tokio::test]
async fn two_processes_at_once_end_in_the_same_exact_state_without_flapping() {
    let a = Account::with_group().await;
    let without = mixed(&a, 60).await;
    let config = a.config("[aws]\nmax_concurrency = 4\n");
    let path = config.to_str().unwrap().to_string();

    let children: Vec<_> = (0..2)
        .map(|_| {
            a.command(&a.moto.endpoint, &["reconcile", "--config", &path])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        // Each exits 0, or 1 when the other made a change first (reported, not wrong).
        let code = c.wait().unwrap().code();
        assert!(matches!(code, Some(0 | 1)), "{code:?}");
    }
    assert_eq!(a.members(GROUP).await, without);

    // Nothing flaps: further runs find nothing to do.
    for _ in 0..2 {
        let run = a.forcemfa(&["reconcile", "--config", &path, "--output", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.account()["planned_changes"], 0);
    }
}

#[tokio::test]
async fn every_change_made_is_in_the_audit_log_and_dry_runs_add_nothing() {
    let a = Account::with_group().await;
    a.user("alice")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    a.user("carol").await;
    a.user("dave").await;
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!("audit_log = \"{}\"\n", log.display()));
    let path = config.to_str().unwrap();

    let dry = a.forcemfa(&["reconcile", "--config", path, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");

    let run = a.forcemfa(&["reconcile", "--config", path, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = run.report()["run_id"].as_str().unwrap().to_string();
    let lines = audit_lines(&log);
    for l in &lines {
        assert_eq!(l["run_id"], run_id.as_str());
        assert_eq!(l["account_id"], "123456789012");
        assert!(l["time"].as_str().is_some_and(|t| t.len() > 10));
        assert!(l["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    // Each change is written ahead (intent) and confirmed (done), in that order.
    for (user, action) in [("alice", "remove"), ("carol", "add"), ("dave", "add")] {
        let steps: Vec<&str> = lines
            .iter()
            .filter(|l| l["user"] == user && l["action"] == action)
            .map(|l| l["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["intent", "done"], "{user}");
    }
    assert_eq!(lines.len(), 6);
}

#[tokio::test]
async fn kill_9_at_any_point_leaves_every_change_made_in_the_audit_log() {
    let a = Account::with_group().await;
    let mut everyone = BTreeSet::new();
    for i in 0..150 {
        let name = format!("new{i:03}");
        a.user(&name).await;
        everyone.insert(name);
    }
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AddUserToGroup"],
        Fault::Delay(15),
    )]);
    let log = a.dir.path().join("audit.jsonl");
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\nmax_concurrency = 2\n",
        log.display()
    ));
    let path = config.to_str().unwrap().to_string();

    // Kill points spread over the apply phase (from its first audit line on), drawn from a seed
    // printed for replay.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    println!("kill -9 seed: {seed}");
    let mut state = seed;
    let mut kills = Vec::new();
    for round in 0..5 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after_ms = (state >> 33) % 600;
        let lines_before = audit_lines(&log).len();
        let mut child = a
            .command(&proxy.endpoint, &["reconcile", "--config", &path])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the apply phase: a first new audit line (or the run's end).
        let deadline = Instant::now() + Duration::from_secs(30);
        while audit_lines(&log).len() == lines_before
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        // Requests the proxy was still holding land now; let them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let members = a.members(GROUP).await;
        let lines = audit_lines(&log);
        let intended = audited(&lines, "add", "intent");
        let missing: Vec<_> = members.difference(&intended).collect();
        assert!(
            missing.is_empty(),
            "round {round} (killed {after_ms} ms into the apply): in the group but not in the audit log: {missing:?}"
        );
        // Nothing is confirmed that IAM did not do.
        let done = audited(&lines, "add", "done");
        assert!(done.is_subset(&members), "round {round}");
        kills.push((after_ms, members.len(), intended.len(), done.len()));
    }
    println!("kill -9 points (ms into the apply, members, intents, confirmed): {kills:?}");
    assert!(
        kills.iter().any(|k| k.1 > 0 && k.1 < 150),
        "no kill landed in the middle of the apply: {kills:?}"
    );

    let run = a.forcemfa(&["reconcile", "--config", &path, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, everyone);
    let lines = audit_lines(&log);
    assert_eq!(audited(&lines, "add", "intent"), everyone);
}

#[tokio::test]
async fn no_change_is_made_that_the_audit_log_cannot_record() {
    let a = Account::with_group().await;
    a.user("carol").await;
    // The audit log is as large as the file size limit allows: the intent cannot be written, so
    // nothing is sent.
    let log = a.dir.path().join("audit.jsonl");
    audit_log_at_limit(&log, FULL);
    let config = a.config(&format!("audit_log = \"{}\"\n", log.display()));
    let config = config.to_str().unwrap();
    let run = run(with_file_size_limit(
        &mut a.command(
            &a.moto.endpoint,
            &["reconcile", "--config", config, "--output", "json"],
        ),
        FULL,
    ));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let acct = run.account();
    assert!(names(&acct["added"]).is_empty(), "{acct}");
    assert!(a.members(GROUP).await.is_empty());
    assert_eq!(acct["failed"][0]["user"], "carol", "{acct}");
    assert!(
        acct["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("audit"),
        "{acct}"
    );
    assert!(acct["audit_errors"].to_string().contains("carol"), "{acct}");

    let config = a.config("audit_log = \"/nonexistent/dir/audit.jsonl\"\n");
    let run = a.forcemfa(&["reconcile", "--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("audit_log"), "{}", run.stderr);
}

#[tokio::test]
async fn the_service_counts_audit_write_failures() {
    let a = Account::with_group().await;
    a.user("carol").await;
    let log = a.dir.path().join("audit.jsonl");
    audit_log_at_limit(&log, FULL);
    let d = Daemon::start_with_file_size_limit(
        &a,
        &a.moto.endpoint,
        &format!("run_on_start = true\naudit_log = \"{}\"\n", log.display()),
        FULL,
    );
    d.wait_runs(1, 15).await;
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("forcemfa_audit_errors_total{account=\"123456789012\"} 1"),
        "{metrics}"
    );
    assert!(a.members(GROUP).await.is_empty());
}

#[tokio::test]
async fn a_full_disk_leaves_whole_lines_and_no_unrecorded_change() {
    let a = Account::with_group().await;
    let mut everyone = BTreeSet::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        a.user(name).await;
        everyone.insert(name.to_string());
    }
    let log = a.dir.path().join("audit.jsonl");
    std::fs::write(&log, "{\"earlier\":\"record\"}\n").unwrap();
    let config = a.config(&format!(
        "audit_log = \"{}\"\n[aws]\nmax_concurrency = 1\n",
        log.display()
    ));
    let path = config.to_str().unwrap().to_string();

    // The file may grow to about two and a half records: a later write stops part-way, as on a
    // full disk.
    let limit = 24 + 2 * 230 + 100;
    let mut cmd = a.command(
        &a.moto.endpoint,
        &["reconcile", "--config", &path, "--output", "json"],
    );
    let out = with_file_size_limit(&mut cmd, limit).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let acct = &report["accounts"][0];
    assert!(
        !acct["audit_errors"].as_array().unwrap().is_empty(),
        "{acct}"
    );

    let lines = audit_lines(&log);
    assert_eq!(lines[0]["earlier"], "record");
    let members = a.members(GROUP).await;
    assert!(
        members.len() < 5,
        "the disk filled before every change: {members:?}"
    );
    let intended = audited(&lines, "add", "intent");
    assert!(
        members.is_subset(&intended),
        "changed without a record: {members:?} vs {intended:?}"
    );
    println!(
        "full disk: {} of 5 added, {} audit lines kept, {} bytes",
        members.len(),
        lines.len(),
        std::fs::metadata(&log).unwrap().len()
    );

    // With room again, the next run finishes and its lines follow whole ones.
    let run = a.forcemfa(&["reconcile", "--config", &path, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(a.members(GROUP).await, everyone);
    let lines = audit_lines(&log);
    assert_eq!(audited(&lines, "add", "intent"), everyone);
}

#[tokio::test]
async fn secrets_never_appear_in_logs_or_reports() {
    let mut a = Account::with_group().await;
    a.user("bot").await;
    a.user("carol").await;
    a.sign_as("bot").await;
    let token_file = a.dir.path().join("token");
    std::fs::write(&token_file, "admin-token-s3cr3t\n").unwrap();
    let config = a.config(&format!(
        "[admin]\ntoken_file = \"{}\"\n[[accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/forcemfa\"\nexternal_id = \"external-id-s3cr3t\"\n",
        token_file.display()
    ));
    let other = a.other("222222222222").await;
    other.group(GROUP).await;
    let secret_key = a.secret_access_key();
    let config = config.to_str().unwrap();
    // At debug level, from forcemfa and the SDK alike, no secret at all.
    let run = a.forcemfa_with(
        &["reconcile", "--config", config, "--output", "json"],
        &[("RUST_LOG", "debug")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for secret in [&secret_key, "admin-token-s3cr3t", "external-id-s3cr3t"] {
        assert!(!run.stderr.contains(secret), "{secret} in the logs");
        assert!(!run.stdout.contains(secret), "{secret} in the report");
    }
    // At trace level the SDK dumps its configuration (the role's external id, which is not a
    // secret, among it), but never a credential or the admin token.
    let run = a.forcemfa_with(&["reconcile", "--config", config], &[("RUST_LOG", "trace")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for secret in [&secret_key, "admin-token-s3cr3t"] {
        assert!(!run.stderr.contains(secret), "{secret} in the trace logs");
    }
}

#[tokio::test]
async fn a_rotated_audit_log_is_reopened_on_sighup_and_loses_nothing() {
    let a = Account::with_group().await;
    a.user("before-rotation").await;
    let log = a.dir.path().join("audit.jsonl");
    let rotated = a.dir.path().join("audit.jsonl.1");
    let d = Daemon::start(
        &a,
        &a.moto.endpoint,
        &format!("run_on_start = true\naudit_log = \"{}\"\n", log.display()),
    );
    d.wait_runs(1, 15).await;

    // What logrotate does: rename the file, then tell the service to reload.
    std::fs::rename(&log, &rotated).unwrap();
    d.signal("HUP");
    assert!(
        crate::support::daemon::eventually(10, || async {
            !d.events("configuration reloaded").is_empty()
        })
        .await,
        "{}",
        d.stderr_text()
    );
    a.user("after-rotation").await;
    assert_eq!(d.post("/reconcile", None).0, 202);
    d.wait_runs(2, 15).await;

    let old = audit_lines(&rotated);
    let new = audit_lines(&log);
    assert_eq!(audited(&old, "add", "done"), set(&["before-rotation"]));
    assert_eq!(audited(&new, "add", "done"), set(&["after-rotation"]));
    assert_eq!(
        a.members(GROUP).await,
        set(&["after-rotation", "before-rotation"])
    );
}
