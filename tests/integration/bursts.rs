//! Bursts of events and more than one process acting on one account: a burst read from the
//! account's lists, two services sharing one queue, and a full run in one process that must not
//! apply a decision another process has since overtaken.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::support::daemon::{eventually, metric, Daemon};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::queue::{iam_event, Queue};
use crate::support::{audit_lines, set, Account, ACCOUNT_ID};

const GROUP: &str = "ForceMFA";

fn event(name: &str, user: &str) -> String {
    iam_event(ACCOUNT_ID, name, &serde_json::json!({ "userName": user }))
}

/// Sends the events ten to a SendMessageBatch, as a burst arrives.
async fn send_all(queue: &Queue, bodies: &[String]) {
    let sqs = queue.sqs.clone();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("an entry")
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send a batch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
}

fn events_config(queue: &Queue, extra: &str) -> String {
    format!(
        "{extra}\n[events]\nqueue_url = \"{}\"\nwait = \"1s\"\nbatch_window = \"200ms\"\nvisibility_timeout = \"30s\"\n",
        queue.url
    )
}

fn calls(d: &Daemon, operation: &str) -> f64 {
    metric(
        d,
        &format!("forcemfa_api_calls_total{{account=\"{ACCOUNT_ID}\",operation=\"{operation}\"}}"),
    )
}

/// A burst naming 40 users is read from the account's lists (no ListGroupsForUser), with the
/// same decisions as one by one; a lone event after it is still read on its own.
#[tokio::test]
async fn a_burst_is_read_from_the_accounts_lists_and_a_lone_event_on_its_own() {
    let a = Account::with_group().await;
    let mut bodies = Vec::new();
    for i in 0..20 {
        let new = format!("new-{i:02}");
        a.user(&new).await;
        bodies.push(event("CreateUser", &new));
        let enrolled = format!("enrolled-{i:02}");
        a.user(&enrolled)
            .await
            .member_of(GROUP)
            .await
            .virtual_mfa()
            .await;
        bodies.push(event("EnableMFADevice", &enrolled));
    }
    a.user("exempt-bot").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let d = Daemon::start(
        &a,
        &a.moto.endpoint,
        &events_config(
            &queue,
            "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n[exempt]\nusers = [\"exempt-bot\"]\n",
        ),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_all(&queue, &bodies).await;
    let handled = eventually(30, || async {
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") >= 40.0
    })
    .await;
    assert!(handled, "{}", d.stderr_text());
    let expected: Vec<String> = (0..20).map(|i| format!("new-{i:02}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(a.members(GROUP).await, set(&expected));
    // No user read one by one (that would call ListGroupsForUser); a GetUser is only the check
    // of an add made over a second after its batch was read.
    assert_eq!(calls(&d, "ListGroupsForUser"), 0.0, "{}", d.stderr_text());
    assert!(calls(&d, "GetUser") <= 20.0);
    // Only the users holding no virtual device are asked for their devices, and the adds once
    // more at most, when their read is over a second old by the time they are made.
    assert!(calls(&d, "ListMFADevices") <= 40.0, "{}", d.stderr_text());
    assert!(!d
        .events("named users read from the account's lists")
        .is_empty());

    // A lone event: one user read on its own, four calls at most.
    a.user("late")
        .await
        .virtual_mfa()
        .await
        .member_of(GROUP)
        .await;
    let before: f64 = [
        "GetUser",
        "ListGroupsForUser",
        "ListMFADevices",
        "RemoveUserFromGroup",
    ]
    .iter()
    .map(|op| calls(&d, op))
    .sum();
    let iam_before = total_iam_calls(&d);
    queue.send(&event("EnableMFADevice", "late")).await;
    let handled = eventually(15, || async {
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") >= 41.0
    })
    .await;
    assert!(handled, "{}", d.stderr_text());
    assert!(!a.members(GROUP).await.contains("late"));
    let after: f64 = [
        "GetUser",
        "ListGroupsForUser",
        "ListMFADevices",
        "RemoveUserFromGroup",
    ]
    .iter()
    .map(|op| calls(&d, op))
    .sum();
    assert_eq!(after - before, 4.0);
    assert_eq!(total_iam_calls(&d) - iam_before, 4.0, "{}", d.stderr_text());
}

/// Starts `forcemfa reconcile` with `config_text` through a proxy that holds its read of alice's
/// access keys (the impact of her add) `hold_ms`, and waits until that read is held: the full
/// run has read the account and planned, and applies nothing until the hold ends.
async fn held_full_run(
    a: &Account,
    config_text: &str,
    hold_ms: u64,
) -> (FaultProxy, std::process::Child) {
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=ListAccessKeys", "UserName=alice"],
        Fault::Delay(hold_ms),
    )]);
    let config = a.dir.path().join("full-run.toml");
    std::fs::write(&config, config_text).unwrap();
    let full_run = a
        .command(
            &proxy.endpoint,
            &[
                "reconcile",
                "--config",
                config.to_str().unwrap(),
                "--output",
                "json",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the full run");
    let held = eventually(15, || async {
        proxy.requests_with(&["Action=ListAccessKeys", "UserName=alice"]) > 0
    })
    .await;
    assert!(held, "the full run never read alice's keys");
    (proxy, full_run)
}

fn total_iam_calls(d: &Daemon) -> f64 {
    let (_, text) = d.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with("forcemfa_api_calls_total{"))
        .filter(|l| !l.contains("GetCallerIdentity"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A full run (`forcemfa reconcile`) reads alice and carol without MFA and bob with it; while it
/// is slowed down, alice enrols a device, bob loses his, carol is tagged exempt, and a service on
/// the events queue handles the events. When the full run then applies, a read of each user just
/// before the change shows it stale: none is made, all are listed as superseded, and the run
/// succeeds.
#[tokio::test]
async fn a_full_run_leaves_out_what_another_process_decided_since_its_read() {
    let a = Account::with_group().await;
    a.user("alice").await;
    a.user("carol").await;
    let bob = a.user("bob").await.member_of(GROUP).await;
    let bob_serial = format!("arn:aws:iam::{ACCOUNT_ID}:mfa/bob-phone");
    let _ = bob.virtual_mfa().await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let service = Daemon::start(
        &a,
        &a.moto.endpoint,
        &events_config(&queue, "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n"),
    );

    // The full run holds its impact read of alice for 5 s.
    let (_proxy, full_run) = held_full_run(
        &a,
        "group = \"ForceMFA\"\n[exempt]\ntags = { forcemfa = \"exempt\" }\n",
        5000,
    )
    .await;

    // Meanwhile: alice enrols, bob's device is deactivated, and the service handles both events.
    let _ = a.existing("alice").virtual_mfa().await;
    a.iam
        .deactivate_mfa_device()
        .user_name("bob")
        .serial_number(&bob_serial)
        .send()
        .await
        .expect("deactivate bob's device");
    a.iam
        .tag_user()
        .user_name("carol")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("forcemfa")
                .value("exempt")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("tag carol exempt");
    queue.send(&event("EnableMFADevice", "alice")).await;
    queue.send(&event("DeactivateMFADevice", "bob")).await;
    let handled = eventually(10, || async {
        metric(&service, "forcemfa_events_total{outcome=\"handled\"}") >= 2.0
    })
    .await;
    assert!(handled, "{}", service.stderr_text());
    assert_eq!(a.members(GROUP).await, set(&["bob"]));

    let out = full_run.wait_with_output().expect("the full run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        a.members(GROUP).await,
        set(&["bob"]),
        "a stale change was applied:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let account = &report["accounts"][0];
    assert_eq!(account["added"], serde_json::json!([]));
    assert_eq!(account["removed"], serde_json::json!([]));
    let superseded: BTreeMap<String, (String, String)> = account["superseded"]
        .as_array()
        .expect("superseded")
        .iter()
        .map(|s| {
            (
                s["user"].as_str().unwrap().to_string(),
                (
                    s["action"].as_str().unwrap().to_string(),
                    s["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(
        superseded["alice"],
        (
            "add".to_string(),
            "a read just before it shows an MFA device".to_string()
        )
    );
    assert_eq!(
        superseded["carol"],
        (
            "add".to_string(),
            "a read just before it shows the user exempt".to_string()
        )
    );
    assert_eq!(
        superseded["bob"],
        (
            "remove".to_string(),
            "a read just before it shows no MFA device".to_string()
        )
    );
    // Left out, never attempted: no audit line, and a log line that says why.
    assert!(stderr.contains("membership change left out"), "{stderr}");
}

/// Two services share one queue (a rolling update, or two replicas) during a burst that flips
/// 100 users: 50 new users without MFA to add, 50 members who enrolled to remove. Both start with
/// a full run while the burst arrives, two events per user, so that both may handle any user.
/// Afterwards the group is exact, the queue is empty, and no user was changed in both directions
/// by the two.
#[tokio::test]
async fn two_services_on_one_queue_converge_during_a_burst() {
    let a = Account::with_group().await;
    let mut expected = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..50 {
        let new = format!("new-{i:02}");
        a.user(&new).await;
        bodies.push(event("CreateUser", &new));
        bodies.push(event("TagUser", &new));
        expected.push(new);
        let enrolled = format!("enrolled-{i:02}");
        a.user(&enrolled)
            .await
            .member_of(GROUP)
            .await
            .virtual_mfa()
            .await;
        bodies.push(event("EnableMFADevice", &enrolled));
        bodies.push(event("TagUser", &enrolled));
    }
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    let second_dir = tempfile::tempdir().unwrap();
    let audit = |dir: &std::path::Path| dir.join("audit.jsonl");
    // Every call is slowed by 20 ms, so that the start-up runs are under way when the burst
    // arrives.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_latency(Duration::from_millis(20));
    let config = |dir: &std::path::Path| {
        events_config(
            &queue,
            &format!(
                "schedule = \"0 0 1 1 *\"\nrun_on_start = true\naudit_log = \"{}\"\n",
                audit(dir).display()
            ),
        )
    };
    let first = Daemon::start(&a, &proxy.endpoint, &config(a.dir.path()));
    let second = Daemon::start_in(
        &a,
        second_dir.path(),
        &proxy.endpoint,
        &config(second_dir.path()),
    );
    send_all(&queue, &bodies).await;

    let handled = |d: &Daemon| metric(d, "forcemfa_events_total{outcome=\"handled\"}");
    let drained = eventually(90, || async {
        first.runs() >= 1
            && second.runs() >= 1
            && handled(&first) + handled(&second) >= 200.0
            && queue.len().await == 0
    })
    .await;
    assert!(
        drained,
        "first:\n{}\nsecond:\n{}",
        first.stderr_text(),
        second.stderr_text()
    );
    // Both took part.
    assert!(handled(&first) > 0.0 && handled(&second) > 0.0);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(a.members(GROUP).await, set(&expected));
    assert_eq!(queue.len().await, 0);

    // Per user, the directions the two changed it in.
    let mut directions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in [audit(a.dir.path()), audit(second_dir.path())] {
        for line in audit_lines(&path) {
            if line["outcome"] == "done" {
                directions
                    .entry(line["user"].as_str().unwrap().to_string())
                    .or_default()
                    .push(line["action"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(directions.len(), 100, "{directions:?}");
    for (user, actions) in &directions {
        assert!(
            !(actions.iter().any(|a| a == "add") && actions.iter().any(|a| a == "remove")),
            "{user} was changed in both directions: {actions:?}"
        );
    }
}

/// A full run asked for during a burst starts at once, without waiting for the burst; an event
/// that arrives while the full run reads is handled before the run ends.
#[tokio::test]
async fn a_burst_and_a_full_run_go_on_side_by_side() {
    let a = Account::with_group().await;
    let mut bodies = Vec::new();
    for i in 0..60 {
        let user = format!("new-{i:02}");
        a.user(&user).await;
        bodies.push(event("CreateUser", &user));
    }
    a.user("late").await;
    let queue = Queue::create(&a.moto.endpoint, "forcemfa-events").await;
    // Every call takes 40 ms more: the burst and the run each last seconds.
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_latency(Duration::from_millis(40));
    let d = Daemon::start(
        &a,
        &proxy.endpoint,
        &events_config(&queue, "schedule = \"0 0 1 1 *\"\nrun_on_start = false\n"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_all(&queue, &bodies).await;
    let busy = eventually(15, || async {
        !d.events("named users read from the account's lists")
            .is_empty()
            || calls(&d, "GetUser") > 0.0
    })
    .await;
    assert!(busy, "{}", d.stderr_text());
    let asked = std::time::Instant::now();
    let (status, _) = d.post("/reconcile", None);
    assert_eq!(status, 202);
    let started = eventually(5, || async { !d.events("run started").is_empty() }).await;
    assert!(started, "{}", d.stderr_text());
    let waited = asked.elapsed();
    assert!(
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") < 60.0,
        "the burst was over before the run started: the test shows nothing"
    );
    assert!(
        waited < Duration::from_secs(2),
        "the run started {waited:?} after it was asked for"
    );
    // While the run reads, one more event.
    queue.send(&event("CreateUser", "late")).await;
    d.wait_runs(1, 60).await;
    let handled = eventually(30, || async {
        metric(&d, "forcemfa_events_total{outcome=\"handled\"}") >= 61.0
    })
    .await;
    assert!(handled, "{}", d.stderr_text());
    let mut expected: Vec<String> = (0..60).map(|i| format!("new-{i:02}")).collect();
    expected.push("late".to_string());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(a.members(GROUP).await, set(&expected));
}

/// The same race with a single change: the full run checks it with a read of the user alone
/// (GetUser and ListMFADevices), not the account's lists.
#[tokio::test]
async fn a_lone_stale_add_is_checked_with_a_read_of_its_user() {
    let a = Account::with_group().await;
    a.user("alice").await;
    let (proxy, full_run) = held_full_run(&a, "group = \"ForceMFA\"\n", 3000).await;
    let _ = a.existing("alice").virtual_mfa().await;
    let lists_before = proxy.requests_with(&["Action=GetAccountAuthorizationDetails"]);
    let out = full_run.wait_with_output().expect("the full run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(a.members(GROUP).await.is_empty(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let superseded = &report["accounts"][0]["superseded"];
    assert_eq!(superseded[0]["user"], "alice", "{report}");
    assert_eq!(
        superseded[0]["reason"],
        "a read just before it shows an MFA device"
    );
    assert_eq!(
        proxy.requests_with(&["Action=GetAccountAuthorizationDetails"]),
        lists_before,
        "one change is checked one by one, without the lists"
    );
    assert_eq!(
        proxy.requests_with(&["Action=GetUser", "UserName=alice"]),
        1
    );
}
